/* Fuzz driver for the classifier's text path (workers/classifier): any bytes go through
 * tokenize → featurize → language id → rules → model → sentiment, and through the model file
 * parser. Invariants: tokens are non-empty and lie inside the normalized text (or are class
 * tokens), the normalized text is bounded, NUL-terminated and valid UTF-8, feature ids fit the
 * hash width and values are L2-normalized, the language is one of the five, confidence,
 * margin and sentiment are in range, and the model parser rejects garbage without crashing.
 * libFuzzer entry point; replayed over the corpus by replay_main.c in ordinary test runs. */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "nlu.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static sb_nlu_t nlu;
static sb_nlu_work_t *work;

static void init_once(void)
{
    if (work) return;
    sb_nlu_dataset_t ds = {0};
    static const char *const ex[][2] = {{"hi there", "greeting"},
                                        {"hello", "greeting"},
                                        {"where is my order", "order_status"},
                                        {"waar is mijn pakket", "order_status"},
                                        {"où est ma commande", "order_status"}};
    for (size_t i = 0; i < sizeof ex / sizeof ex[0]; i++)
        if (sb_nlu_dataset_add(&ds, ex[i][0], strlen(ex[i][0]), ex[i][1]) != SB_OK) abort();
    sb_nlu_train_opts_t o;
    sb_nlu_train_opts_default(&o);
    o.epochs = 2;
    if (sb_nlu_train(&nlu.model, &ds, &o, NULL, NULL, 0) != SB_OK) abort();
    sb_nlu_dataset_free(&ds);
    if (sb_nlu_rules_load(&nlu.rules, NULL, NULL, 0) != SB_OK) abort();
    if (sb_nlu_langid_create(&nlu.langid, NULL) != SB_OK) {
        /* fingerprints missing: the word lists alone still run */
    }
    nlu.apply_threshold = true;
    work = sb_nlu_work_create();
}

static bool valid_utf8(const char *s, size_t n)
{
    const uint8_t *p = (const uint8_t *)s;
    for (size_t i = 0; i < n;) {
        uint8_t c = p[i];
        size_t k = c < 0x80 ? 1 : c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc2 ? 2 : 0;
        if (k == 0 || i + k > n) return false;
        for (size_t j = 1; j < k; j++)
            if ((p[i + j] & 0xc0) != 0x80) return false;
        i += k;
    }
    return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    init_once();
    const char *text = (const char *)data;
    const sb_nlu_token_t *toks;
    size_t n = sb_nlu_work_tokenize(work, text, size, true, &toks);
    size_t nl;
    const char *norm = sb_nlu_work_normalized(work, &nl);
    if (norm[nl] != '\0' || strlen(norm) > nl) abort();
    /* NFKC can expand a little beyond the input bound, never without limit */
    if (nl > 18u * SB_NLU_MAX_TEXT) abort();
    if (!valid_utf8(norm, nl)) abort();
    for (size_t i = 0; i < n; i++) {
        if (toks[i].len == 0) abort();
        bool inside = toks[i].s >= norm && toks[i].s + toks[i].len <= norm + nl;
        if (!inside && toks[i].s[0] != '<' && toks[i].s[0] != ':') abort();
    }
    const uint32_t *ids;
    const float *vals;
    const sb_nlu_featcfg_t *cfg = sb_nlu_model_featcfg(nlu.model);
    size_t nf = sb_nlu_work_featurize(work, cfg, "en", &ids, &vals);
    double ss = 0;
    for (size_t i = 0; i < nf; i++) {
        if (ids[i] >> cfg->hash_bits) abort();
        if (!isfinite(vals[i])) abort();
        ss += (double)vals[i] * vals[i];
    }
    if (nf > 0 && fabs(ss - 1.0) > 1e-3) abort();

    sb_nlu_result_t r;
    sb_nlu_classify(&nlu, work, text, size, "nl-BE", &r);
    static const char *const langs[] = {"en", "nl", "fr", "de", "es"};
    bool known = false;
    for (size_t i = 0; i < 5; i++)
        known = known || strcmp(r.language, langs[i]) == 0;
    if (!known) abort();
    if (!(r.confidence >= 0.0f && r.confidence <= 1.0f)) abort();
    if (!(r.margin >= 0.0f && r.margin <= 1.0f)) abort();
    if (!(r.sentiment >= -1.0f && r.sentiment <= 1.0f)) abort();
    if (r.ntop > SB_NLU_TOPK) abort();

    /* the same bytes as a button payload and as a model file */
    char payload[80];
    size_t pl = size < sizeof payload - 1 ? size : sizeof payload - 1;
    memcpy(payload, data, pl);
    payload[pl] = '\0';
    sb_nlu_classify_button(&nlu, work, payload, payload, NULL, &r);
    sb_nlu_model_t *m = NULL;
    char err[200];
    if (sb_nlu_model_parse(&m, data, size, err, sizeof err) == SB_OK) sb_nlu_model_destroy(m);
    return 0;
}
