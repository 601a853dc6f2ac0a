/* Unit tests for the classifier's model and training data (workers/classifier/model.c,
 * dataset.c): TSV and YAML (Rasa-like) loading with errors that name file:line, bounds on
 * lines and names, deterministic training (same seed → identical bytes), save/load round trip
 * with identical predictions, corrupted or truncated model files rejected, the rejection
 * threshold chosen from validation + out-of-scope validation, and calibration; the hidden
 * layer and the example memory survive a round trip, a memory index out of range is refused
 * even under a valid checksum, the stratified carve-out of validation examples, and replacing
 * the calibration after a refit. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nlu.h"
#include "nlu_internal.h"
#include "sb/util.h"

static char tmpdir[256];

static int setup(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/sbnlu-model-XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

static const char *write_file(const char *name, const char *content)
{
    static char path[512];
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(content, 1, strlen(content), f), strlen(content));
    assert_int_equal(fclose(f), 0);
    return path;
}

static const char *small_tsv = "# a comment\n"
                               "hi there\tgreeting\n"
                               "hello\tgreeting\n"
                               "good morning\tgreeting\n"
                               "hey\tgreeting\r\n"
                               "\n"
                               "where is my order\torder_status\n"
                               "my package has not arrived\torder_status\n"
                               "track my parcel\torder_status\n"
                               "status of my order please\torder_status\n"
                               "when are you open\topening_hours\n"
                               "what are your opening hours\topening_hours\n"
                               "are you open on sunday\topening_hours\n"
                               "what time do you close\topening_hours\n";

static void load_small(sb_nlu_dataset_t *ds)
{
    char err[256];
    memset(ds, 0, sizeof *ds);
    const char *p = write_file("small.tsv", small_tsv);
    assert_int_equal(sb_nlu_dataset_load(ds, p, err, sizeof err), SB_OK);
}

static void test_tsv(void **state)
{
    (void)state;
    sb_nlu_dataset_t ds;
    load_small(&ds);
    assert_int_equal(ds.n, 12);
    assert_int_equal(ds.nlabels, 3);
    assert_string_equal(ds.labels[0], "greeting");
    assert_string_equal(ds.ex[3].text, "hey"); /* CR stripped */
    assert_string_equal(ds.labels[ds.ex[3].label], "greeting");
    assert_int_equal(sb_nlu_dataset_label(&ds, "opening_hours"), 2);
    assert_int_equal(sb_nlu_dataset_label(&ds, "nope"), -1);
    sb_nlu_dataset_free(&ds);

    char err[256];
    memset(&ds, 0, sizeof ds);
    const char *p = write_file("bad1.tsv", "hi\tgreeting\nno tab here\n");
    assert_int_equal(sb_nlu_dataset_load(&ds, p, err, sizeof err), SB_E_INVALID);
    assert_non_null(strstr(err, "bad1.tsv:2:"));
    sb_nlu_dataset_free(&ds);
    p = write_file("bad2.tsv", "hi\tgreeting\nhello\tbad intent!\n");
    assert_int_equal(sb_nlu_dataset_load(&ds, p, err, sizeof err), SB_E_INVALID);
    assert_non_null(strstr(err, "bad2.tsv:2:"));
    sb_nlu_dataset_free(&ds);
    p = write_file("bad3.tsv", "\tgreeting\n");
    assert_int_equal(sb_nlu_dataset_load(&ds, p, err, sizeof err), SB_E_INVALID);
    assert_non_null(strstr(err, "bad3.tsv:1:"));
    sb_nlu_dataset_free(&ds);
    /* a line beyond the bound */
    char *big = malloc(SB_NLU_MAX_LINE + 64);
    memset(big, 'a', SB_NLU_MAX_LINE + 10);
    strcpy(big + SB_NLU_MAX_LINE + 10, "\tgreeting\n");
    p = write_file("bad4.tsv", big);
    free(big);
    assert_int_equal(sb_nlu_dataset_load(&ds, p, err, sizeof err), SB_E_TOO_LARGE);
    assert_non_null(strstr(err, "bad4.tsv:1:"));
    sb_nlu_dataset_free(&ds);
    /* missing file */
    assert_int_not_equal(sb_nlu_dataset_load(&ds, "/nonexistent/x.tsv", err, sizeof err), SB_OK);
    assert_non_null(strstr(err, "/nonexistent/x.tsv"));
    /* binary content */
    p = write_file("bin.tsv", "a\tb\n");
    FILE *f = fopen(p, "wb");
    fwrite("a\0b\tc\n", 1, 6, f);
    fclose(f);
    assert_int_equal(sb_nlu_dataset_load(&ds, p, err, sizeof err), SB_E_INVALID);
    sb_nlu_dataset_free(&ds);
}

static void test_yaml(void **state)
{
    (void)state;
    char err[256];
    sb_nlu_dataset_t ds = {0};
    const char *p = write_file("nlu.yml", "version: \"3.1\"\n"
                                          "nlu:\n"
                                          "- intent: greet\n"
                                          "  examples: |\n"
                                          "    - hi\n"
                                          "    - hello there\n"
                                          "\n"
                                          "    - good morning\n"
                                          "- synonym: nyc\n"
                                          "  examples: |\n"
                                          "    - new york\n"
                                          "- intent: order_status\n"
                                          "  examples: |\n"
                                          "    - where is my order to [Amsterdam](city)\n"
                                          "    - track order [12345]{\"entity\": \"id\"}\n");
    assert_int_equal(sb_nlu_dataset_load(&ds, p, err, sizeof err), SB_OK);
    assert_int_equal(ds.n, 5);
    assert_int_equal(ds.nlabels, 2);
    assert_string_equal(ds.ex[1].text, "hello there");
    assert_string_equal(ds.ex[3].text, "where is my order to Amsterdam");
    assert_string_equal(ds.ex[4].text, "track order 12345");
    assert_string_equal(ds.labels[ds.ex[4].label], "order_status");
    sb_nlu_dataset_free(&ds);

    p = write_file("bad.yml", "nlu:\n- intent: greet\n  examples: |\n    hi without dash\n");
    assert_int_equal(sb_nlu_dataset_load(&ds, p, err, sizeof err), SB_E_INVALID);
    assert_non_null(strstr(err, "bad.yml"));
    assert_non_null(strstr(err, "greet"));
    sb_nlu_dataset_free(&ds);
    p = write_file("bad2.yml", "nlu: [unclosed\n");
    assert_int_equal(sb_nlu_dataset_load(&ds, p, err, sizeof err), SB_E_INVALID);
    assert_non_null(strstr(err, "bad2.yml"));
    sb_nlu_dataset_free(&ds);
    p = write_file("bad3.yaml", "nlu:\n- intent: \"not valid!\"\n  examples: |\n    - x\n");
    assert_int_equal(sb_nlu_dataset_load(&ds, p, err, sizeof err), SB_E_INVALID);
    assert_non_null(strstr(err, "bad3.yaml:2:"));
    sb_nlu_dataset_free(&ds);
}

static sb_nlu_model_t *train_small(uint64_t seed, bool quantize)
{
    sb_nlu_dataset_t ds;
    load_small(&ds);
    sb_nlu_train_opts_t o;
    sb_nlu_train_opts_default(&o);
    o.seed = seed;
    o.quantize = quantize;
    sb_nlu_model_t *m = NULL;
    char err[256];
    assert_int_equal(sb_nlu_train(&m, &ds, &o, NULL, err, sizeof err), SB_OK);
    sb_nlu_dataset_free(&ds);
    return m;
}

static void test_determinism(void **state)
{
    (void)state;
    for (int q = 0; q < 2; q++) {
        sb_nlu_model_t *a = train_small(7, q), *b = train_small(7, q), *c = train_small(8, q);
        uint8_t *ba, *bb, *bc;
        size_t la, lb, lc;
        sb_nlu_model_serialize(a, &ba, &la);
        sb_nlu_model_serialize(b, &bb, &lb);
        sb_nlu_model_serialize(c, &bc, &lc);
        assert_int_equal(la, lb);
        assert_memory_equal(ba, bb, la);
        assert_string_equal(sb_nlu_model_version(a), sb_nlu_model_version(b));
        /* another seed visits examples in another order: other weights, other version */
        assert_true(la != lc || memcmp(ba, bc, la) != 0);
        assert_string_not_equal(sb_nlu_model_version(a), sb_nlu_model_version(c));
        free(ba);
        free(bb);
        free(bc);
        sb_nlu_model_destroy(a);
        sb_nlu_model_destroy(b);
        sb_nlu_model_destroy(c);
    }
}

static const char *probes[] = {"hello!",
                               "where's my order?",
                               "open on sunday?",
                               "track my order",
                               "hey good morning",
                               "what time do you open",
                               "completely unrelated words",
                               ""};

/* l, loaded from m's bytes, answers every probe exactly as m does (label, confidence, margin,
 * top intents in order, probabilities summing to at most 1), finds the order question and
 * answers text with intent. */
static void assert_same_answers(const sb_nlu_model_t *m, const sb_nlu_model_t *l, sb_nlu_work_t *w,
                                const char *text, const char *intent)
{
    assert_string_equal(sb_nlu_model_version(l), sb_nlu_model_version(m));
    for (size_t i = 0; i < sizeof probes / sizeof probes[0]; i++) {
        sb_nlu_prediction_t pm, pl;
        sb_nlu_model_predict(m, w, probes[i], strlen(probes[i]), NULL, &pm);
        sb_nlu_model_predict(l, w, probes[i], strlen(probes[i]), NULL, &pl);
        assert_int_equal(pm.label, pl.label);
        assert_true(pm.confidence == pl.confidence);
        assert_true(pm.margin == pl.margin);
        assert_string_equal(pm.top[0].intent, pl.top[0].intent);
        assert_true(pm.ntop < 2 || pm.top[0].confidence >= pm.top[1].confidence);
        assert_true(pm.margin >= 0 && pm.margin <= 1);
        float sum = 0;
        for (size_t k = 0; k < pm.ntop; k++)
            sum += pm.top[k].confidence;
        assert_true(sum <= 1.0001f && pm.confidence > 0.0f);
    }
    sb_nlu_prediction_t p;
    sb_nlu_model_predict(l, w, "where is my order", 17, NULL, &p);
    assert_string_equal(p.top[0].intent, "order_status");
    sb_nlu_model_predict(l, w, text, strlen(text), NULL, &p);
    assert_string_equal(p.top[0].intent, intent);
}

static void test_round_trip(void **state)
{
    (void)state;
    for (int q = 0; q < 2; q++) {
        sb_nlu_model_t *m = train_small(3, q);
        char path[512], err[256];
        snprintf(path, sizeof path, "%s/m%d.model", tmpdir, q);
        assert_int_equal(sb_nlu_model_save(m, path, err, sizeof err), SB_OK);
        sb_nlu_model_t *l = NULL;
        assert_int_equal(sb_nlu_model_load(&l, path, err, sizeof err), SB_OK);
        assert_int_equal(sb_nlu_model_nlabels(l), 3);
        assert_int_equal(sb_nlu_model_rows(l), sb_nlu_model_rows(m));
        sb_nlu_work_t *w = sb_nlu_work_create();
        assert_same_answers(m, l, w, "hello", "greeting");
        sb_nlu_prediction_t p;
        sb_nlu_model_predict(m, w, "hello", 5, NULL, &p);
        assert_int_equal(p.ntop, 3);
        sb_nlu_work_destroy(w);
        sb_nlu_model_destroy(l);
        sb_nlu_model_destroy(m);
    }
}

static void test_corrupt(void **state)
{
    (void)state;
    sb_nlu_model_t *m = train_small(3, true), *l = NULL;
    uint8_t *b;
    size_t n;
    char err[256];
    sb_nlu_model_serialize(m, &b, &n);
    assert_int_equal(sb_nlu_model_parse(&l, b, n, err, sizeof err), SB_OK);
    sb_nlu_model_destroy(l);
    l = NULL;
    /* every single flipped byte is caught (checksum or header checks) */
    for (size_t i = 0; i < n; i += n / 97 + 1) {
        b[i] ^= 0x40;
        assert_int_equal(sb_nlu_model_parse(&l, b, n, err, sizeof err), SB_E_INVALID);
        assert_null(l);
        b[i] ^= 0x40;
    }
    /* every truncation is rejected */
    for (size_t k = 0; k < n; k += n / 53 + 1) {
        assert_int_equal(sb_nlu_model_parse(&l, b, k, err, sizeof err), SB_E_INVALID);
        assert_null(l);
    }
    /* garbage and an empty file */
    assert_int_equal(
        sb_nlu_model_parse(&l, (const uint8_t *)"hello world, not a model", 24, err, sizeof err),
        SB_E_INVALID);
    assert_non_null(strstr(err, "magic"));
    const char *p = write_file("empty.model", "");
    assert_int_not_equal(sb_nlu_model_load(&l, p, err, sizeof err), SB_OK);
    assert_non_null(strstr(err, "empty.model"));
    free(b);
    sb_nlu_model_destroy(m);
}

static void test_threshold_and_calibration(void **state)
{
    (void)state;
    sb_nlu_dataset_t ds, val = {0}, oos = {0};
    load_small(&ds);
    char err[256];
    const char *vp = write_file("val.tsv", "hello there\tgreeting\n"
                                           "hi!\tgreeting\n"
                                           "where is my package\torder_status\n"
                                           "track order\torder_status\n"
                                           "when do you open\topening_hours\n"
                                           "opening hours sunday\topening_hours\n"
                                           "a label the model never saw\tother_intent\n");
    assert_int_equal(sb_nlu_dataset_load(&val, vp, err, sizeof err), SB_OK);
    const char *op = write_file("oos.tsv", "what is the capital of peru\toos\n"
                                           "play some jazz music\toos\n"
                                           "how tall is mount everest\toos\n"
                                           "tell me a joke\toos\n");
    assert_int_equal(sb_nlu_dataset_load(&oos, op, err, sizeof err), SB_OK);
    sb_nlu_train_opts_t o;
    sb_nlu_train_opts_default(&o);
    o.val = &val;
    o.oos_val = &oos;
    sb_nlu_train_report_t rep;
    sb_nlu_model_t *m = NULL;
    assert_int_equal(sb_nlu_train(&m, &ds, &o, &rep, err, sizeof err), SB_OK);
    assert_true(rep.val_accuracy > 0.8f);
    assert_true(rep.temperature > 0.0f);
    assert_true(rep.threshold > 0.0f && rep.threshold < 1.0f);
    assert_true(sb_nlu_model_threshold(m) == rep.threshold);
    assert_true(rep.val_objective >= 0.75f);
    /* the threshold separates: in-scope validation accepted more often than out-of-scope */
    sb_nlu_work_t *w = sb_nlu_work_create();
    int acc_in = 0, acc_oos = 0;
    for (size_t i = 0; i < 6; i++) {
        sb_nlu_prediction_t p;
        sb_nlu_model_predict(m, w, val.ex[i].text, strlen(val.ex[i].text), NULL, &p);
        acc_in += p.confidence >= rep.threshold;
    }
    for (size_t i = 0; i < oos.n; i++) {
        sb_nlu_prediction_t p;
        sb_nlu_model_predict(m, w, oos.ex[i].text, strlen(oos.ex[i].text), NULL, &p);
        acc_oos += p.confidence >= rep.threshold;
    }
    assert_true((double)acc_in / 6 > (double)acc_oos / (double)oos.n);
    sb_nlu_work_destroy(w);
    sb_nlu_model_destroy(m);
    /* without out-of-scope data the given threshold is stored */
    o.oos_val = NULL;
    o.threshold = 0.25f;
    assert_int_equal(sb_nlu_train(&m, &ds, &o, &rep, err, sizeof err), SB_OK);
    assert_true(sb_nlu_model_threshold(m) == 0.25f);
    assert_true(rep.val_objective < 0);
    sb_nlu_model_destroy(m);
    /* nothing to train on */
    sb_nlu_dataset_t empty = {0};
    assert_int_equal(sb_nlu_train(&m, &empty, &o, &rep, err, sizeof err), SB_E_INVALID);
    sb_nlu_dataset_free(&ds);
    sb_nlu_dataset_free(&val);
    sb_nlu_dataset_free(&oos);
}

/* Trains the small set with a hidden layer and/or the example memory. */
static sb_nlu_model_t *train_sums(uint32_t hidden, float knn_weight, bool quantize, bool sums)
{
    sb_nlu_dataset_t ds;
    load_small(&ds);
    sb_nlu_train_opts_t o;
    sb_nlu_train_opts_default(&o);
    o.word_sums = sums;
    o.hidden = hidden;
    o.hidden_auto = false; /* (the set is far below the automatic choice's size) */
    o.knn_weight = knn_weight;
    o.quantize = quantize;
    sb_nlu_model_t *m = NULL;
    char err[256];
    assert_int_equal(sb_nlu_train(&m, &ds, &o, NULL, err, sizeof err), SB_OK);
    sb_nlu_dataset_free(&ds);
    return m;
}

static sb_nlu_model_t *train_opts(uint32_t hidden, float knn_weight, bool quantize)
{
    return train_sums(hidden, knn_weight, quantize, true);
}

static void test_hidden_and_memory_round_trip(void **state)
{
    (void)state;
    size_t plain_len = 0;
    for (int v = 0; v < 4; v++) {
        uint32_t hidden = v & 1 ? 8 : 0;
        float knn = v & 2 ? 0.4f : 0.0f;
        sb_nlu_model_t *m = train_opts(hidden, knn, v != 3), *l = NULL;
        uint8_t *b;
        size_t n;
        char err[256];
        sb_nlu_model_serialize(m, &b, &n);
        if (v == 0) plain_len = n;
        if (v == 2) assert_true(n > plain_len); /* the memory is stored */
        assert_int_equal(sb_nlu_model_parse(&l, b, n, err, sizeof err), SB_OK);
        sb_nlu_work_t *w = sb_nlu_work_create();
        assert_same_answers(m, l, w, "what are your opening hours", "opening_hours");
        if (knn > 0) {
            /* a training sentence itself: its own memory entries vote for it */
            sb_nlu_prediction_t q;
            sb_nlu_model_predict(l, w, "track my parcel", 15, NULL, &q);
            assert_string_equal(q.top[0].intent, "order_status");
        }
        sb_nlu_work_destroy(w);
        free(b);
        sb_nlu_model_destroy(l);
        sb_nlu_model_destroy(m);
    }
}

static uint32_t rd32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static void wr32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

/* Recomputes the trailing checksum, as a forger would. */
static void reseal(uint8_t *b, size_t n)
{
    uint64_t h = sb_nlu_hash64(b, n - 8, 0);
    wr32(b + n - 8, (uint32_t)h);
    wr32(b + n - 4, (uint32_t)(h >> 32));
}

static void test_memory_checked(void **state)
{
    (void)state;
    sb_nlu_model_t *m = train_opts(0, 0.4f, true), *l = NULL;
    uint8_t *b;
    size_t n;
    char err[256];
    sb_nlu_model_serialize(m, &b, &n);
    /* header: magic, format, 6 feature words, labels, rows, quantized, hidden units, hidden
     * rows, then the memory's example, key and posting counts */
    uint32_t kn = rd32(b + 56), kp = rd32(b + 64);
    assert_true(kn == 12 && kp > 0);
    /* then the word sums: keys, squared norms, scales and int8 rows */
    uint32_t labels = rd32(b + 36), ns = rd32(b + 76);
    assert_int_equal(rd32(b + 44), 1); /* quantized */
    assert_true(ns > 0);
    size_t sums = (size_t)ns * (8 + 4 + 4 + labels);
    /* the first posting's example index (after it: kp values, the sums and the checksum) */
    uint8_t *ex0 = b + n - 8 - sums - (size_t)kp * 4 - (size_t)kp * 4;
    uint32_t keep = rd32(ex0);
    assert_true(keep < kn);
    wr32(ex0, kn); /* one past the last example */
    reseal(b, n);
    assert_int_equal(sb_nlu_model_parse(&l, b, n, err, sizeof err), SB_E_INVALID);
    assert_non_null(strstr(err, "memory"));
    assert_null(l);
    wr32(ex0, keep);
    reseal(b, n);
    assert_int_equal(sb_nlu_model_parse(&l, b, n, err, sizeof err), SB_OK);
    sb_nlu_model_destroy(l);
    free(b);
    sb_nlu_model_destroy(m);
}

/* A model with word sums scores like the same model without them (the sums only regroup the
 * char n-gram rows of known words), on known and unknown words, quantized or not; a sum with a
 * negative norm is refused at load. */
static void test_word_sums(void **state)
{
    (void)state;
    for (int q = 0; q < 2; q++) {
        sb_nlu_model_t *with = train_sums(0, 0, q, true), *without = train_sums(0, 0, q, false);
        sb_nlu_work_t *w = sb_nlu_work_create();
        size_t L = sb_nlu_model_nlabels(with);
        float *a = malloc(L * sizeof *a), *c = malloc(L * sizeof *c);
        const char *texts[] = {"where's my order?", "hello there", "zzqx unknownword order",
                               "can I return shoes", ""};
        for (size_t t = 0; t < sizeof texts / sizeof texts[0]; t++) {
            sb_nlu_work_tokenize(w, texts[t], strlen(texts[t]), true, NULL);
            sb_nlu_model_logits(with, w, NULL, a);
            sb_nlu_work_tokenize(w, texts[t], strlen(texts[t]), true, NULL);
            sb_nlu_model_logits(without, w, NULL, c);
            for (size_t j = 0; j < L; j++)
                assert_float_equal(a[j], c[j], q ? 0.02 : 1e-4);
        }
        uint8_t *b;
        size_t n, nw;
        uint8_t *bw;
        sb_nlu_model_serialize(with, &b, &n);
        sb_nlu_model_serialize(without, &bw, &nw);
        uint32_t ns = rd32(b + 76);
        assert_true(ns > 0);
        assert_int_equal(rd32(bw + 76), 0);
        assert_true(n > nw);
        /* the first sum's squared norm, after the keys */
        size_t rows = (size_t)ns * L * (q ? 1 : 4) + (q ? (size_t)ns * 4 : 0);
        uint8_t *ss0 = b + n - 8 - rows - (size_t)ns * 4;
        uint32_t keep = rd32(ss0);
        wr32(ss0, 0xbf800000u); /* -1.0f */
        reseal(b, n);
        sb_nlu_model_t *l = NULL;
        char err[256];
        assert_int_equal(sb_nlu_model_parse(&l, b, n, err, sizeof err), SB_E_INVALID);
        assert_non_null(strstr(err, "word sums"));
        wr32(ss0, keep);
        reseal(b, n);
        assert_int_equal(sb_nlu_model_parse(&l, b, n, err, sizeof err), SB_OK);
        sb_nlu_model_destroy(l);
        free(b);
        free(bw);
        free(a);
        free(c);
        sb_nlu_work_destroy(w);
        sb_nlu_model_destroy(with);
        sb_nlu_model_destroy(without);
    }
}

/* --hidden-chars: the hidden layer gets embeddings for the char n-gram rows too (more rows
 * with embeddings, header flag 16, format 4), no word sums are stored (the layer needs each
 * n-gram), the model round-trips exactly, and a format 3 file claiming the flag is refused. */
static void test_hidden_chars(void **state)
{
    (void)state;
    for (int q = 0; q < 2; q++) {
        sb_nlu_dataset_t ds;
        load_small(&ds);
        sb_nlu_train_opts_t o;
        sb_nlu_train_opts_default(&o);
        o.hidden = 8;
        o.hidden_auto = false;
        o.quantize = q;
        sb_nlu_model_t *words = NULL, *chars = NULL, *l = NULL;
        char err[256];
        assert_int_equal(sb_nlu_train(&words, &ds, &o, NULL, err, sizeof err), SB_OK);
        o.hidden_chars = true;
        assert_int_equal(sb_nlu_train(&chars, &ds, &o, NULL, err, sizeof err), SB_OK);
        sb_nlu_dataset_free(&ds);
        uint8_t *b, *bw;
        size_t n, nw;
        sb_nlu_model_serialize(chars, &b, &n);
        sb_nlu_model_serialize(words, &bw, &nw);
        assert_int_equal(rd32(b + 8), 4);
        assert_int_equal(rd32(b + 24) & 16u, 16u);
        assert_int_equal(rd32(bw + 24) & 16u, 0);
        assert_int_equal(rd32(b + 48), 8 * o.ensemble); /* hidden units of all members */
        uint32_t rows = rd32(b + 40), er = rd32(b + 52), er_words = rd32(bw + 52);
        assert_true(er_words > 0 && er > er_words && er <= rows);
        assert_int_equal(rd32(b + 76), 0); /* no word sums */
        assert_true(rd32(bw + 76) > 0);    /* (the words-only model has them) */
        assert_int_equal(sb_nlu_model_parse(&l, b, n, err, sizeof err), SB_OK);
        sb_nlu_work_t *w = sb_nlu_work_create();
        assert_same_answers(chars, l, w, "what are your opening hours", "opening_hours");
        sb_nlu_model_destroy(l);
        l = NULL;
        /* an older format cannot carry the flag */
        wr32(b + 8, 3);
        reseal(b, n);
        assert_int_equal(sb_nlu_model_parse(&l, b, n, err, sizeof err), SB_E_INVALID);
        assert_non_null(strstr(err, "header"));
        assert_null(l);
        sb_nlu_work_destroy(w);
        free(b);
        free(bw);
        sb_nlu_model_destroy(words);
        sb_nlu_model_destroy(chars);
    }
}

static void test_split(void **state)
{
    (void)state;
    sb_nlu_dataset_t ds = {0}, tr, va, tr2, va2;
    char text[32];
    for (int i = 0; i < 40; i++) {
        const char *label = i < 20 ? "a" : i < 30 ? "b" : i < 33 ? "c" : "d";
        snprintf(text, sizeof text, "example %d", i);
        assert_int_equal(sb_nlu_dataset_add(&ds, text, strlen(text), label), SB_OK);
    }
    sb_nlu_dataset_split(&ds, 0.1f, 5, &tr, &va);
    assert_int_equal(tr.n + va.n, ds.n);
    /* a: 2 of 20, b: 1 of 10, c (3 examples) stays whole, d: 1 of 7 */
    size_t per[4] = {0};
    for (size_t i = 0; i < va.n; i++)
        per[va.labels[va.ex[i].label][0] - 'a']++;
    assert_int_equal(per[0], 2);
    assert_int_equal(per[1], 1);
    assert_int_equal(per[2], 0);
    assert_int_equal(per[3], 1);
    assert_int_equal(tr.nlabels, 4);
    /* no example in both, order kept */
    for (size_t i = 0; i < va.n; i++)
        for (size_t j = 0; j < tr.n; j++)
            assert_string_not_equal(va.ex[i].text, tr.ex[j].text);
    for (size_t j = 1; j < tr.n; j++)
        assert_true(atoi(tr.ex[j].text + 8) > atoi(tr.ex[j - 1].text + 8));
    /* same seed, same split; another seed, another one */
    sb_nlu_dataset_split(&ds, 0.1f, 5, &tr2, &va2);
    assert_int_equal(va2.n, va.n);
    for (size_t i = 0; i < va.n; i++)
        assert_string_equal(va2.ex[i].text, va.ex[i].text);
    sb_nlu_dataset_free(&tr2);
    sb_nlu_dataset_free(&va2);
    bool differs = false;
    for (uint64_t seed = 6; seed < 10 && !differs; seed++) {
        sb_nlu_dataset_split(&ds, 0.1f, seed, &tr2, &va2);
        for (size_t i = 0; i < va.n && i < va2.n; i++)
            differs = differs || strcmp(va2.ex[i].text, va.ex[i].text) != 0;
        sb_nlu_dataset_free(&tr2);
        sb_nlu_dataset_free(&va2);
    }
    assert_true(differs);
    sb_nlu_dataset_free(&tr);
    sb_nlu_dataset_free(&va);
    sb_nlu_dataset_free(&ds);
}

static void test_set_calibration(void **state)
{
    (void)state;
    sb_nlu_model_t *m = train_small(3, true), *l = NULL;
    char before[17], err[256];
    snprintf(before, sizeof before, "%s", sb_nlu_model_version(m));
    sb_nlu_model_set_calibration(m, 1.5f, 0.3f);
    assert_true(sb_nlu_model_temperature(m) == 1.5f);
    assert_true(sb_nlu_model_threshold(m) == 0.3f);
    assert_string_not_equal(sb_nlu_model_version(m), before);
    uint8_t *b;
    size_t n;
    sb_nlu_model_serialize(m, &b, &n);
    assert_int_equal(sb_nlu_model_parse(&l, b, n, err, sizeof err), SB_OK);
    assert_string_equal(sb_nlu_model_version(l), sb_nlu_model_version(m));
    assert_true(sb_nlu_model_threshold(l) == 0.3f);
    free(b);
    sb_nlu_model_destroy(l);
    sb_nlu_model_destroy(m);
}

static bool know_nothing(void *ctx, const char *w, size_t n)
{
    (void)ctx;
    (void)w;
    (void)n;
    return false;
}

/* The WordNet table: inflections reduced to lemmas, synonym copies, and training with them
 * (--augment) is deterministic, keeps the memory of the real examples only and learns. */
static void test_wordnet_augment(void **state)
{
    (void)state;
    const nlu_wn_entry_t *e = nlu_wordnet_lookup("arrived", 7);
    assert_non_null(e);
    assert_int_equal(e->lemma_len, 6);
    assert_memory_equal(e->lemma, "arrive", 6);
    assert_true(e->nids > 0);
    e = nlu_wordnet_lookup("came", 4);
    assert_non_null(e);
    assert_memory_equal(e->lemma, "come", 4);
    assert_null(nlu_wordnet_lookup("xyzzyq", 6));
    char buf[256];
    uint64_t rng = 1;
    const char *t = "My card has not arrived yet";
    assert_true(nlu_wordnet_augment(t, 1.0, &rng, buf, sizeof buf, NULL, NULL) >= 1);
    assert_string_not_equal(buf, t);
    assert_int_equal(nlu_wordnet_augment(t, 1.0, &rng, buf, sizeof buf, know_nothing, NULL), 0);
    assert_string_equal(buf, t);
    assert_int_equal(nlu_wordnet_augment(t, 0.0, &rng, buf, sizeof buf, NULL, NULL), 0);
    assert_string_equal(buf, t);

    sb_nlu_dataset_t ds;
    load_small(&ds);
    sb_nlu_train_opts_t o;
    sb_nlu_train_opts_default(&o);
    o.augment = 2;
    sb_nlu_model_t *a = NULL, *b = NULL;
    char err[256];
    assert_int_equal(sb_nlu_train(&a, &ds, &o, NULL, err, sizeof err), SB_OK);
    assert_int_equal(sb_nlu_train(&b, &ds, &o, NULL, err, sizeof err), SB_OK);
    assert_string_equal(sb_nlu_model_version(a), sb_nlu_model_version(b));
    sb_nlu_work_t *w = sb_nlu_work_create();
    sb_nlu_prediction_t p;
    sb_nlu_model_predict(a, w, "my parcel has not arrived", 25, "en", &p);
    assert_string_equal(p.top[0].intent, "order_status");
    sb_nlu_work_destroy(w);
    sb_nlu_model_destroy(a);
    sb_nlu_model_destroy(b);
    sb_nlu_dataset_free(&ds);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tsv),
        cmocka_unit_test(test_yaml),
        cmocka_unit_test(test_determinism),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_corrupt),
        cmocka_unit_test(test_threshold_and_calibration),
        cmocka_unit_test(test_hidden_and_memory_round_trip),
        cmocka_unit_test(test_hidden_chars),
        cmocka_unit_test(test_memory_checked),
        cmocka_unit_test(test_word_sums),
        cmocka_unit_test(test_split),
        cmocka_unit_test(test_set_calibration),
        cmocka_unit_test(test_wordnet_augment),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
