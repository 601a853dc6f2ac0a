/* The intent model: a linear softmax over hashed features, its trainer and its file format.
 *
 * Training: every example is featurized once (tokenize.c); buckets seen at least min_count
 * times become rows, numbered in bucket order; weights W[row][label] and biases are learned
 * with AdaGrad on the cross-entropy plus an L2 penalty on the rows a step touches, for a fixed
 * number of epochs over a permutation drawn from the seed (so the same data and seed give the
 * same bytes). Labels whose gradient is negligible for an example are skipped, which keeps a
 * 150-intent model trainable in seconds. Then the temperature is fitted on the validation set
 * (NLL, golden-section search) and the rejection threshold chosen on validation + out-of-scope
 * validation to maximize (in-scope accuracy + out-of-scope recall) / 2.
 *
 * Prediction: bucket ids → rows through an open-addressing table built at load; scores =
 * bias + Σ value · W[row]; softmax with the temperature; top-k and margin.
 *
 * File (all little-endian): "SBNLUMDL", u32 format version, feature config, u32 nlabels, u32
 * nrows, u32 quantized, f32 temperature, f32 threshold, labels (u8 length + bytes), f32
 * bias[nlabels], u32 keys[nrows] (ascending bucket ids), then either f32 W[nrows][nlabels] or
 * f32 scale[nrows] + i8 W[nrows][nlabels], and a u64 FNV-1a of everything before it. The model
 * version is that checksum in hex. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nlu_internal.h"
#include "sb/util.h"

#define MODEL_MAGIC "SBNLUMDL"
#define MODEL_FORMAT 1u
#define EMPTY_KEY 0xffffffffu

struct sb_nlu_model {
    sb_nlu_featcfg_t feat;
    uint32_t nlabels;
    char **labels;
    uint32_t nrows;
    uint32_t *keys;    /* ascending bucket ids */
    uint32_t tab_mask; /* lookup: bucket → row */
    uint32_t *tab_keys;
    uint32_t *tab_rows;
    bool quant;
    float *wf;    /* nrows * nlabels, when !quant */
    int8_t *wq;   /* nrows * nlabels, when quant */
    float *scale; /* nrows, when quant */
    float *bias;  /* nlabels */
    float temperature;
    float threshold;
    char version[17];
};

/* ---- small helpers ---------------------------------------------------------------------- */

void nlu_softmax(float *z, size_t n, float temperature)
{
    if (n == 0) return;
    float inv = temperature > 0 ? 1.0f / temperature : 1.0f;
    float mx = z[0];
    for (size_t i = 1; i < n; i++)
        if (z[i] > mx) mx = z[i];
    float sum = 0;
    for (size_t i = 0; i < n; i++) {
        z[i] = expf((z[i] - mx) * inv);
        sum += z[i];
    }
    for (size_t i = 0; i < n; i++)
        z[i] /= sum;
}

/* splitmix64: the deterministic random source of training. */
static uint64_t rng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static void shuffle(uint32_t *a, size_t n, uint64_t *rng)
{
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)(rng_next(rng) % i);
        uint32_t t = a[i - 1];
        a[i - 1] = a[j];
        a[j] = t;
    }
}

static uint32_t pow2_at_least(uint64_t n)
{
    uint32_t p = 16;
    while (p < n && p < 0x80000000u)
        p <<= 1;
    return p;
}

/* ---- lookup table ----------------------------------------------------------------------- */

static void build_table(sb_nlu_model_t *m)
{
    uint32_t size = pow2_at_least((uint64_t)m->nrows * 2 + 1);
    m->tab_mask = size - 1;
    m->tab_keys = sb_xmalloc((size_t)size * sizeof *m->tab_keys);
    m->tab_rows = sb_xmalloc((size_t)size * sizeof *m->tab_rows);
    memset(m->tab_keys, 0xff, (size_t)size * sizeof *m->tab_keys);
    for (uint32_t r = 0; r < m->nrows; r++) {
        uint32_t k = m->keys[r], i = nlu_mix32(k) & m->tab_mask;
        while (m->tab_keys[i] != EMPTY_KEY)
            i = (i + 1) & m->tab_mask;
        m->tab_keys[i] = k;
        m->tab_rows[i] = r;
    }
}

static inline int64_t lookup_row(const sb_nlu_model_t *m, uint32_t key)
{
    uint32_t i = nlu_mix32(key) & m->tab_mask;
    for (;;) {
        uint32_t k = m->tab_keys[i];
        if (k == key) return m->tab_rows[i];
        if (k == EMPTY_KEY) return -1;
        i = (i + 1) & m->tab_mask;
    }
}

void sb_nlu_model_destroy(sb_nlu_model_t *m)
{
    if (!m) return;
    for (uint32_t i = 0; i < m->nlabels; i++)
        free(m->labels[i]);
    free(m->labels);
    free(m->keys);
    free(m->tab_keys);
    free(m->tab_rows);
    free(m->wf);
    free(m->wq);
    free(m->scale);
    free(m->bias);
    free(m);
}

const char *sb_nlu_model_version(const sb_nlu_model_t *m)
{
    return m->version;
}
size_t sb_nlu_model_nlabels(const sb_nlu_model_t *m)
{
    return m->nlabels;
}
const char *sb_nlu_model_label(const sb_nlu_model_t *m, size_t i)
{
    return i < m->nlabels ? m->labels[i] : NULL;
}
size_t sb_nlu_model_rows(const sb_nlu_model_t *m)
{
    return m->nrows;
}
float sb_nlu_model_threshold(const sb_nlu_model_t *m)
{
    return m->threshold;
}
float sb_nlu_model_temperature(const sb_nlu_model_t *m)
{
    return m->temperature;
}
const sb_nlu_featcfg_t *sb_nlu_model_featcfg(const sb_nlu_model_t *m)
{
    return &m->feat;
}

/* ---- prediction ------------------------------------------------------------------------- */

void sb_nlu_model_logits(const sb_nlu_model_t *m, sb_nlu_work_t *w, const char *lang, float *z)
{
    const uint32_t *ids;
    const float *vals;
    size_t nf = sb_nlu_work_featurize(w, &m->feat, lang, &ids, &vals);
    const uint32_t L = m->nlabels;
    memcpy(z, m->bias, L * sizeof *z);
    for (size_t f = 0; f < nf; f++) {
        int64_t r = lookup_row(m, ids[f]);
        if (r < 0) continue;
        if (m->quant) {
            const int8_t *q = m->wq + (size_t)r * L;
            float c = vals[f] * m->scale[r];
            for (uint32_t j = 0; j < L; j++)
                z[j] += c * (float)q[j];
        } else {
            const float *wr = m->wf + (size_t)r * L;
            float c = vals[f];
            for (uint32_t j = 0; j < L; j++)
                z[j] += c * wr[j];
        }
    }
}

static void fill_prediction(const sb_nlu_model_t *m, const float *p, sb_nlu_prediction_t *out)
{
    memset(out, 0, sizeof *out);
    out->label = -1;
    /* top-k by repeated selection: k is small */
    size_t k = m->nlabels < SB_NLU_TOPK ? m->nlabels : SB_NLU_TOPK;
    int chosen[SB_NLU_TOPK];
    for (size_t t = 0; t < k; t++) {
        int best = -1;
        for (uint32_t j = 0; j < m->nlabels; j++) {
            bool used = false;
            for (size_t u = 0; u < t; u++)
                if (chosen[u] == (int)j) used = true;
            if (used) continue;
            if (best < 0 || p[j] > p[best]) best = (int)j;
        }
        chosen[t] = best;
        out->top[t].intent = m->labels[best];
        out->top[t].confidence = p[best];
    }
    out->ntop = k;
    if (k > 0) {
        out->label = chosen[0];
        out->confidence = out->top[0].confidence;
        out->margin =
            k > 1 ? out->top[0].confidence - out->top[1].confidence : out->top[0].confidence;
    }
}

void sb_nlu_model_predict_tokens(const sb_nlu_model_t *m, sb_nlu_work_t *w, const char *lang,
                                 sb_nlu_prediction_t *out)
{
    float *z = nlu_work_scores(w, m->nlabels);
    sb_nlu_model_logits(m, w, lang, z);
    nlu_softmax(z, m->nlabels, m->temperature);
    fill_prediction(m, z, out);
}

void sb_nlu_model_predict(const sb_nlu_model_t *m, sb_nlu_work_t *w, const char *text, size_t len,
                          const char *lang, sb_nlu_prediction_t *out)
{
    sb_nlu_work_tokenize(w, text, len, m->feat.strip_accents, NULL);
    sb_nlu_model_predict_tokens(m, w, lang, out);
}

/* ---- training --------------------------------------------------------------------------- */

void sb_nlu_train_opts_default(sb_nlu_train_opts_t *o)
{
    memset(o, 0, sizeof *o);
    o->seed = 1;
    o->epochs = 12;
    o->lr = 0.5f;
    o->l2 = 1e-5f;
    o->min_count = 1;
    o->quantize = true;
    o->calibrate = true;
    o->threshold = 0.0f;
    sb_nlu_featcfg_default(&o->feat);
}

/* Bucket → count table used while collecting features. */
typedef struct counter {
    uint32_t *keys;
    uint32_t *vals;
    uint32_t mask, n;
} counter_t;

static void counter_init(counter_t *c, uint32_t size)
{
    c->mask = size - 1;
    c->n = 0;
    c->keys = sb_xmalloc((size_t)size * sizeof *c->keys);
    c->vals = sb_xcalloc(size, sizeof *c->vals);
    memset(c->keys, 0xff, (size_t)size * sizeof *c->keys);
}

static uint32_t *counter_slot(counter_t *c, uint32_t key);

static void counter_grow(counter_t *c)
{
    counter_t old = *c;
    counter_init(c, (old.mask + 1) * 2);
    for (uint32_t i = 0; i <= old.mask; i++)
        if (old.keys[i] != EMPTY_KEY) *counter_slot(c, old.keys[i]) = old.vals[i];
    free(old.keys);
    free(old.vals);
}

static uint32_t *counter_slot(counter_t *c, uint32_t key)
{
    if ((uint64_t)(c->n + 1) * 2 > (uint64_t)c->mask + 1) counter_grow(c);
    uint32_t i = nlu_mix32(key) & c->mask;
    while (c->keys[i] != EMPTY_KEY && c->keys[i] != key)
        i = (i + 1) & c->mask;
    if (c->keys[i] == EMPTY_KEY) {
        c->keys[i] = key;
        c->vals[i] = 0;
        c->n++;
    }
    return &c->vals[i];
}

static const uint32_t *counter_find(const counter_t *c, uint32_t key)
{
    uint32_t i = nlu_mix32(key) & c->mask;
    while (c->keys[i] != EMPTY_KEY) {
        if (c->keys[i] == key) return &c->vals[i];
        i = (i + 1) & c->mask;
    }
    return NULL;
}

static void counter_free(counter_t *c)
{
    free(c->keys);
    free(c->vals);
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* Examples as rows and values (compressed sparse rows). */
typedef struct csr {
    size_t n;
    size_t *off; /* n + 1 */
    uint32_t *rows;
    float *vals;
    uint32_t *label;
} csr_t;

static void csr_free(csr_t *c)
{
    free(c->off);
    free(c->rows);
    free(c->vals);
    free(c->label);
}

/* Logits of example i of x with float weights W. */
static void train_logits(const float *W, const float *bias, uint32_t L, const csr_t *x, size_t i,
                         float *z)
{
    memcpy(z, bias, L * sizeof *z);
    for (size_t f = x->off[i]; f < x->off[i + 1]; f++) {
        const float *wr = W + (size_t)x->rows[f] * L;
        float c = x->vals[f];
        for (uint32_t j = 0; j < L; j++)
            z[j] += c * wr[j];
    }
}

/* Negative log-likelihood of val logits at temperature t. */
static double nll_at(const float *logits, const uint32_t *gold, size_t n, uint32_t L, double t)
{
    double total = 0;
    for (size_t i = 0; i < n; i++) {
        const float *z = logits + i * L;
        double mx = z[0];
        for (uint32_t j = 1; j < L; j++)
            if (z[j] > mx) mx = z[j];
        double s = 0;
        for (uint32_t j = 0; j < L; j++)
            s += exp((z[j] - mx) / t);
        total += -((z[gold[i]] - mx) / t - log(s));
    }
    return total / (double)(n ? n : 1);
}

static float fit_temperature(const float *logits, const uint32_t *gold, size_t n, uint32_t L)
{
    /* golden-section search on log t in [-3, 3] */
    double a = -3.0, b = 3.0, g = (sqrt(5.0) - 1) / 2;
    double c = b - g * (b - a), d = a + g * (b - a);
    double fc = nll_at(logits, gold, n, L, exp(c)), fd = nll_at(logits, gold, n, L, exp(d));
    for (int it = 0; it < 40; it++) {
        if (fc < fd) {
            b = d;
            d = c;
            fd = fc;
            c = b - g * (b - a);
            fc = nll_at(logits, gold, n, L, exp(c));
        } else {
            a = c;
            c = d;
            fc = fd;
            d = a + g * (b - a);
            fd = nll_at(logits, gold, n, L, exp(d));
        }
    }
    return (float)exp((a + b) / 2);
}

typedef struct scored {
    float conf;
    int correct; /* in-scope: 1 if argmax right; oos: -1 */
} scored_t;

static int cmp_scored(const void *a, const void *b)
{
    float x = ((const scored_t *)a)->conf, y = ((const scored_t *)b)->conf;
    return x < y ? -1 : x > y;
}

/* Picks the threshold maximizing (in-scope accuracy + oos recall) / 2. */
static float choose_threshold(scored_t *s, size_t n_in, size_t n_oos, float *objective)
{
    size_t n = n_in + n_oos;
    qsort(s, n, sizeof *s, cmp_scored);
    /* threshold below s[0]: accept all */
    size_t correct_total = 0;
    for (size_t i = 0; i < n; i++)
        if (s[i].correct == 1) correct_total++;
    size_t rej_oos = 0, rej_correct = 0;
    double best = ((double)correct_total / (double)n_in + 0.0) / 2;
    float best_t = 0.0f;
    for (size_t i = 0; i < n; i++) {
        /* reject s[0..i] */
        if (s[i].correct == -1)
            rej_oos++;
        else if (s[i].correct == 1)
            rej_correct++;
        if (i + 1 < n && s[i + 1].conf == s[i].conf) continue;
        double acc = (double)(correct_total - rej_correct) / (double)n_in;
        double rec = (double)rej_oos / (double)n_oos;
        double obj = (acc + rec) / 2;
        if (obj > best) {
            best = obj;
            float hi = i + 1 < n ? s[i + 1].conf : 1.0f;
            best_t = (s[i].conf + hi) / 2;
        }
    }
    *objective = (float)best;
    return best_t;
}

/* Featurizes ds into x with rows from the counter map (buckets not in it are dropped).
 * label_map maps ds label indexes to model labels (-1: example skipped). */
static void featurize_set(const sb_nlu_dataset_t *ds, const int *label_map,
                          const sb_nlu_featcfg_t *feat, const counter_t *rowmap, csr_t *x,
                          sb_nlu_work_t *w)
{
    memset(x, 0, sizeof *x);
    size_t cap = 1024, nnz = 0;
    x->off = sb_xmalloc((ds->n + 1) * sizeof *x->off);
    x->label = sb_xmalloc((ds->n + 1) * sizeof *x->label);
    x->rows = sb_xmalloc(cap * sizeof *x->rows);
    x->vals = sb_xmalloc(cap * sizeof *x->vals);
    x->off[0] = 0;
    for (size_t i = 0; i < ds->n; i++) {
        int lab = label_map ? label_map[ds->ex[i].label] : (int)ds->ex[i].label;
        if (lab < 0) continue;
        const char *t = ds->ex[i].text;
        sb_nlu_work_tokenize(w, t, strlen(t), feat->strip_accents, NULL);
        const uint32_t *ids;
        const float *vals;
        size_t nf = sb_nlu_work_featurize(w, feat, NULL, &ids, &vals);
        for (size_t f = 0; f < nf; f++) {
            const uint32_t *row = counter_find(rowmap, ids[f]);
            if (!row) continue;
            if (nnz == cap) {
                cap *= 2;
                x->rows = sb_xrealloc(x->rows, cap * sizeof *x->rows);
                x->vals = sb_xrealloc(x->vals, cap * sizeof *x->vals);
            }
            x->rows[nnz] = *row;
            x->vals[nnz] = vals[f];
            nnz++;
        }
        x->label[x->n] = (uint32_t)lab;
        x->n++;
        x->off[x->n] = nnz;
    }
}

static void finish_version(sb_nlu_model_t *m);

sb_result_t sb_nlu_train(sb_nlu_model_t **out, const sb_nlu_dataset_t *train,
                         const sb_nlu_train_opts_t *opts, sb_nlu_train_report_t *report, char *err,
                         size_t errlen)
{
    sb_result_t rc = SB_OK;
    uint64_t t0 = sb_mono_ns();
    sb_nlu_model_t *m = NULL;
    sb_nlu_work_t *w = sb_nlu_work_create();
    counter_t counts = {0}, rowmap = {0};
    csr_t x = {0}, xv = {0}, xo = {0};
    float *W = NULL, *G = NULL, *Gb = NULL, *z = NULL, *vlog = NULL;
    uint32_t *perm = NULL, *keys = NULL;
    int *vmap = NULL;
    scored_t *sc = NULL;
    const sb_nlu_featcfg_t *feat = &opts->feat;

    if (train->n == 0 || train->nlabels == 0) {
        nlu_errf(err, errlen, "no training examples");
        rc = SB_E_INVALID;
        goto done;
    }
    if (train->nlabels > SB_NLU_MAX_LABELS) {
        nlu_errf(err, errlen, "too many intents (%zu, max %u)", train->nlabels, SB_NLU_MAX_LABELS);
        rc = SB_E_TOO_LARGE;
        goto done;
    }
    if (feat->hash_bits < 16 || feat->hash_bits > 30 || feat->char_max > 6 ||
        (feat->char_max > 0 && (feat->char_min < 1 || feat->char_min > feat->char_max))) {
        nlu_errf(err, errlen, "invalid feature configuration");
        rc = SB_E_INVALID;
        goto done;
    }
    const uint32_t L = (uint32_t)train->nlabels;

    /* 1. count buckets: in how many examples each appears */
    counter_init(&counts, 1u << 16);
    for (size_t i = 0; i < train->n; i++) {
        const char *t = train->ex[i].text;
        sb_nlu_work_tokenize(w, t, strlen(t), feat->strip_accents, NULL);
        const uint32_t *ids;
        const float *vals;
        size_t nf = sb_nlu_work_featurize(w, feat, NULL, &ids, &vals);
        for (size_t f = 0; f < nf; f++)
            (*counter_slot(&counts, ids[f]))++;
    }
    /* 2. rows: buckets with count >= min_count, in bucket order */
    size_t nkeys = 0;
    keys = sb_xmalloc(((size_t)counts.n + 1) * sizeof *keys);
    for (uint32_t i = 0; i <= counts.mask; i++)
        if (counts.keys[i] != EMPTY_KEY && counts.vals[i] >= opts->min_count)
            keys[nkeys++] = counts.keys[i];
    qsort(keys, nkeys, sizeof *keys, cmp_u32);
    if (nkeys > SB_NLU_MAX_ROWS) {
        nlu_errf(err, errlen, "too many features (%zu); raise min_count", nkeys);
        rc = SB_E_TOO_LARGE;
        goto done;
    }
    counter_init(&rowmap, pow2_at_least((uint64_t)nkeys * 2 + 2));
    for (size_t r = 0; r < nkeys; r++)
        *counter_slot(&rowmap, keys[r]) = (uint32_t)r;
    counter_free(&counts);
    memset(&counts, 0, sizeof counts);
    featurize_set(train, NULL, feat, &rowmap, &x, w);

    /* 3. AdaGrad */
    size_t nw = nkeys * L;
    W = sb_xcalloc(nw ? nw : 1, sizeof *W);
    G = sb_xcalloc(nw ? nw : 1, sizeof *G);
    float bias[SB_NLU_MAX_LABELS] = {0};
    Gb = sb_xcalloc(L, sizeof *Gb);
    z = sb_xmalloc(L * sizeof *z);
    perm = sb_xmalloc(x.n * sizeof *perm);
    for (size_t i = 0; i < x.n; i++)
        perm[i] = (uint32_t)i;
    uint64_t rng = opts->seed;
    const float lr = opts->lr, l2 = opts->l2, eps = 1e-8f;
    uint32_t active[SB_NLU_MAX_LABELS];
    for (uint32_t ep = 0; ep < opts->epochs; ep++) {
        shuffle(perm, x.n, &rng);
        double loss = 0;
        for (size_t k = 0; k < x.n; k++) {
            size_t i = perm[k];
            uint32_t y = x.label[i];
            train_logits(W, bias, L, &x, i, z);
            nlu_softmax(z, L, 1.0f);
            loss += -log((double)z[y] + 1e-12);
            z[y] -= 1.0f; /* gradient of the loss w.r.t. the logits */
            uint32_t na = 0;
            for (uint32_t j = 0; j < L; j++)
                if (fabsf(z[j]) > 1e-4f) active[na++] = j;
            for (uint32_t a = 0; a < na; a++) {
                uint32_t j = active[a];
                float g = z[j];
                Gb[j] += g * g;
                bias[j] -= lr * g / (sqrtf(Gb[j]) + eps);
            }
            for (size_t f = x.off[i]; f < x.off[i + 1]; f++) {
                float *wr = W + (size_t)x.rows[f] * L;
                float *gr = G + (size_t)x.rows[f] * L;
                float v = x.vals[f];
                for (uint32_t a = 0; a < na; a++) {
                    uint32_t j = active[a];
                    float g = v * z[j] + l2 * wr[j];
                    gr[j] += g * g;
                    wr[j] -= lr * g / (sqrtf(gr[j]) + eps);
                }
            }
        }
        if (opts->verbose)
            fprintf(stderr, "epoch %u loss %.4f\n", ep + 1, loss / (double)(x.n ? x.n : 1));
    }
    free(G);
    G = NULL;

    /* 4. the model */
    m = sb_xcalloc(1, sizeof *m);
    m->feat = *feat;
    m->nlabels = L;
    m->labels = sb_xcalloc(L, sizeof *m->labels);
    for (uint32_t j = 0; j < L; j++)
        m->labels[j] = sb_xstrdup(train->labels[j]);
    m->nrows = (uint32_t)nkeys;
    m->keys = keys;
    keys = NULL;
    m->bias = sb_xmalloc(L * sizeof *m->bias);
    memcpy(m->bias, bias, L * sizeof *m->bias);
    m->temperature = 1.0f;
    m->threshold = opts->threshold;
    m->quant = opts->quantize;
    if (m->quant) {
        m->scale = sb_xmalloc((nkeys ? nkeys : 1) * sizeof *m->scale);
        m->wq = sb_xmalloc(nw ? nw : 1);
        for (size_t r = 0; r < nkeys; r++) {
            float mx = 0;
            for (uint32_t j = 0; j < L; j++)
                mx = fmaxf(mx, fabsf(W[r * L + j]));
            float s = mx > 0 ? mx / 127.0f : 1.0f;
            m->scale[r] = s;
            for (uint32_t j = 0; j < L; j++) {
                long q = lrintf(W[r * L + j] / s);
                if (q > 127) q = 127;
                if (q < -127) q = -127;
                m->wq[r * L + j] = (int8_t)q;
            }
        }
        free(W);
        W = NULL;
    } else {
        m->wf = W;
        W = NULL;
    }
    build_table(m);

    /* 5. calibration and threshold on validation (scored with the final, maybe quantized,
     * model, exactly as it will predict) */
    float val_acc = -1, objective = -1;
    size_t n_in = 0, n_oos = 0;
    if (opts->val && opts->val->n > 0) {
        vmap = sb_xmalloc(opts->val->nlabels * sizeof *vmap);
        for (size_t j = 0; j < opts->val->nlabels; j++)
            vmap[j] = sb_nlu_dataset_label(train, opts->val->labels[j]);
        size_t nv = 0;
        for (size_t i = 0; i < opts->val->n; i++)
            if (vmap[opts->val->ex[i].label] >= 0) nv++;
        vlog = sb_xmalloc((nv ? nv : 1) * L * sizeof *vlog);
        uint32_t *gold = sb_xmalloc((nv ? nv : 1) * sizeof *gold);
        size_t k = 0, correct = 0;
        for (size_t i = 0; i < opts->val->n; i++) {
            int lab = vmap[opts->val->ex[i].label];
            if (lab < 0) continue;
            const char *t = opts->val->ex[i].text;
            sb_nlu_work_tokenize(w, t, strlen(t), feat->strip_accents, NULL);
            sb_nlu_model_logits(m, w, NULL, vlog + k * L);
            gold[k] = (uint32_t)lab;
            uint32_t am = 0;
            for (uint32_t j = 1; j < L; j++)
                if (vlog[k * L + j] > vlog[k * L + am]) am = j;
            if (am == (uint32_t)lab) correct++;
            k++;
        }
        if (nv > 0) {
            val_acc = (float)correct / (float)nv;
            if (opts->calibrate) m->temperature = fit_temperature(vlog, gold, nv, L);
        }
        n_in = nv;
        if (opts->oos_val && opts->oos_val->n > 0 && nv > 0) {
            n_oos = opts->oos_val->n;
            sc = sb_xmalloc((n_in + n_oos) * sizeof *sc);
            for (size_t i = 0; i < nv; i++) {
                memcpy(z, vlog + i * L, L * sizeof *z);
                nlu_softmax(z, L, m->temperature);
                uint32_t am = 0;
                for (uint32_t j = 1; j < L; j++)
                    if (z[j] > z[am]) am = j;
                sc[i].conf = z[am];
                sc[i].correct = am == gold[i] ? 1 : 0;
            }
            for (size_t i = 0; i < n_oos; i++) {
                const char *t = opts->oos_val->ex[i].text;
                sb_nlu_work_tokenize(w, t, strlen(t), feat->strip_accents, NULL);
                sb_nlu_model_logits(m, w, NULL, z);
                nlu_softmax(z, L, m->temperature);
                uint32_t am = 0;
                for (uint32_t j = 1; j < L; j++)
                    if (z[j] > z[am]) am = j;
                /* a model trained with an explicit out-of-scope intent rejects by label */
                bool oos_label = strcmp(m->labels[am], "oos") == 0 ||
                                 strcmp(m->labels[am], SB_NLU_OUT_OF_SCOPE) == 0;
                sc[nv + i].conf = oos_label ? 0.0f : z[am];
                sc[nv + i].correct = -1;
            }
            m->threshold = choose_threshold(sc, n_in, n_oos, &objective);
        }
        free(gold);
    }
    finish_version(m);

    if (report) {
        report->examples = x.n;
        report->labels = L;
        report->rows = m->nrows;
        report->temperature = m->temperature;
        report->threshold = m->threshold;
        report->val_accuracy = val_acc;
        report->val_objective = objective;
        report->seconds = (double)(sb_mono_ns() - t0) / 1e9;
    }
    *out = m;
    m = NULL;
done:
    sb_nlu_model_destroy(m);
    sb_nlu_work_destroy(w);
    counter_free(&counts);
    counter_free(&rowmap);
    csr_free(&x);
    csr_free(&xv);
    csr_free(&xo);
    free(W);
    free(G);
    free(Gb);
    free(z);
    free(vlog);
    free(perm);
    free(keys);
    free(vmap);
    free(sc);
    return rc;
}

/* ---- file format ------------------------------------------------------------------------ */

static void put_u32(sb_buf_t *b, uint32_t v)
{
    uint8_t p[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    sb_buf_append(b, p, 4);
}

static void put_f32(sb_buf_t *b, float f)
{
    uint32_t v;
    memcpy(&v, &f, 4);
    put_u32(b, v);
}

static void put_u64(sb_buf_t *b, uint64_t v)
{
    put_u32(b, (uint32_t)v);
    put_u32(b, (uint32_t)(v >> 32));
}

static void serialize_body(const sb_nlu_model_t *m, sb_buf_t *b)
{
    sb_buf_append(b, MODEL_MAGIC, 8);
    put_u32(b, MODEL_FORMAT);
    put_u32(b, m->feat.hash_bits);
    put_u32(b, m->feat.char_min);
    put_u32(b, m->feat.char_max);
    put_u32(b, (m->feat.word_bigrams ? 1u : 0u) | (m->feat.strip_accents ? 2u : 0u) |
                   (m->feat.stem ? 4u : 0u));
    put_f32(b, m->feat.char_weight);
    put_f32(b, m->feat.bigram_weight);
    put_u32(b, m->nlabels);
    put_u32(b, m->nrows);
    put_u32(b, m->quant ? 1u : 0u);
    put_f32(b, m->temperature);
    put_f32(b, m->threshold);
    for (uint32_t j = 0; j < m->nlabels; j++) {
        uint8_t n = (uint8_t)strlen(m->labels[j]);
        sb_buf_append(b, &n, 1);
        sb_buf_append(b, m->labels[j], n);
    }
    for (uint32_t j = 0; j < m->nlabels; j++)
        put_f32(b, m->bias[j]);
    for (uint32_t r = 0; r < m->nrows; r++)
        put_u32(b, m->keys[r]);
    size_t nw = (size_t)m->nrows * m->nlabels;
    if (m->quant) {
        for (uint32_t r = 0; r < m->nrows; r++)
            put_f32(b, m->scale[r]);
        sb_buf_append(b, m->wq, nw);
    } else {
        for (size_t i = 0; i < nw; i++)
            put_f32(b, m->wf[i]);
    }
}

static void finish_version(sb_nlu_model_t *m)
{
    sb_buf_t b = {0};
    serialize_body(m, &b);
    uint64_t h = sb_nlu_hash64(b.data, b.len, 0);
    snprintf(m->version, sizeof m->version, "%016llx", (unsigned long long)h);
    sb_buf_free(&b);
}

void sb_nlu_model_serialize(const sb_nlu_model_t *m, uint8_t **out, size_t *len)
{
    sb_buf_t b = {0};
    serialize_body(m, &b);
    put_u64(&b, sb_nlu_hash64(b.data, b.len, 0));
    *out = (uint8_t *)b.data;
    *len = b.len;
}

sb_result_t sb_nlu_model_save(const sb_nlu_model_t *m, const char *path, char *err, size_t errlen)
{
    sb_result_t rc = SB_OK;
    uint8_t *data = NULL;
    size_t len = 0;
    char *tmp = sb_xasprintf("%s.tmp.%ld", path, (long)getpid());
    FILE *f = NULL;
    sb_nlu_model_serialize(m, &data, &len);
    f = fopen(tmp, "wb");
    if (!f) {
        nlu_errf(err, errlen, "%s: cannot create: %s", tmp, strerror(errno));
        rc = SB_E_IO;
        goto done;
    }
    if (fwrite(data, 1, len, f) != len || fflush(f) != 0 || fsync(fileno(f)) != 0) {
        nlu_errf(err, errlen, "%s: write failed: %s", tmp, strerror(errno));
        rc = SB_E_IO;
        goto done;
    }
    if (fclose(f) != 0) {
        f = NULL;
        nlu_errf(err, errlen, "%s: close failed: %s", tmp, strerror(errno));
        rc = SB_E_IO;
        goto done;
    }
    f = NULL;
    if (rename(tmp, path) != 0) {
        nlu_errf(err, errlen, "%s: rename failed: %s", path, strerror(errno));
        rc = SB_E_IO;
        goto done;
    }
done:
    if (f) fclose(f);
    if (rc != SB_OK) unlink(tmp);
    free(tmp);
    free(data);
    return rc;
}

/* Bounded reader over the file bytes. */
typedef struct rd {
    const uint8_t *p;
    size_t n, off;
    bool bad;
} rd_t;

static uint32_t get_u32(rd_t *r)
{
    if (r->bad || r->n - r->off < 4) {
        r->bad = true;
        return 0;
    }
    const uint8_t *p = r->p + r->off;
    r->off += 4;
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static float get_f32(rd_t *r)
{
    uint32_t v = get_u32(r);
    float f;
    memcpy(&f, &v, 4);
    return f;
}

static const uint8_t *get_bytes(rd_t *r, size_t n)
{
    if (r->bad || r->n - r->off < n) {
        r->bad = true;
        return NULL;
    }
    const uint8_t *p = r->p + r->off;
    r->off += n;
    return p;
}

sb_result_t sb_nlu_model_parse(sb_nlu_model_t **out, const uint8_t *data, size_t len, char *err,
                               size_t errlen)
{
    sb_result_t rc = SB_E_INVALID;
    sb_nlu_model_t *m = NULL;
    if (len < 8 + 8 || memcmp(data, MODEL_MAGIC, 8) != 0) {
        nlu_errf(err, errlen, "not a Switchboard model (bad magic)");
        goto done;
    }
    const uint8_t *t = data + len - 8;
    uint64_t want = (uint64_t)t[0] | ((uint64_t)t[1] << 8) | ((uint64_t)t[2] << 16) |
                    ((uint64_t)t[3] << 24) | ((uint64_t)t[4] << 32) | ((uint64_t)t[5] << 40) |
                    ((uint64_t)t[6] << 48) | ((uint64_t)t[7] << 56);
    uint64_t have = sb_nlu_hash64(data, len - 8, 0);
    if (want != have) {
        nlu_errf(err, errlen, "model checksum mismatch (truncated or corrupted file)");
        goto done;
    }
    rd_t r = {.p = data, .n = len - 8, .off = 8};
    uint32_t fmt = get_u32(&r);
    if (fmt != MODEL_FORMAT) {
        nlu_errf(err, errlen, "unsupported model format version %u (this build reads %u)", fmt,
                 MODEL_FORMAT);
        goto done;
    }
    m = sb_xcalloc(1, sizeof *m);
    m->feat.hash_bits = get_u32(&r);
    m->feat.char_min = get_u32(&r);
    m->feat.char_max = get_u32(&r);
    uint32_t flags = get_u32(&r);
    m->feat.word_bigrams = flags & 1u;
    m->feat.strip_accents = flags & 2u;
    m->feat.stem = flags & 4u;
    m->feat.char_weight = get_f32(&r);
    m->feat.bigram_weight = get_f32(&r);
    uint32_t L = get_u32(&r), R = get_u32(&r), quant = get_u32(&r);
    m->temperature = get_f32(&r);
    m->threshold = get_f32(&r);
    if (r.bad || m->feat.hash_bits < 16 || m->feat.hash_bits > 30 || m->feat.char_max > 6 ||
        (m->feat.char_max > 0 && (m->feat.char_min < 1 || m->feat.char_min > m->feat.char_max)) ||
        (flags & ~7u) || !isfinite(m->feat.char_weight) || !isfinite(m->feat.bigram_weight) ||
        L == 0 || L > SB_NLU_MAX_LABELS || R > SB_NLU_MAX_ROWS || quant > 1 ||
        !(m->temperature > 0.0f && m->temperature < 1e6f) ||
        !(m->threshold >= 0.0f && m->threshold <= 1.0f)) {
        nlu_errf(err, errlen, "model header out of bounds");
        goto done;
    }
    m->labels = sb_xcalloc(L, sizeof *m->labels);
    m->nlabels = L;
    for (uint32_t j = 0; j < L; j++) {
        const uint8_t *n = get_bytes(&r, 1);
        const uint8_t *s = n ? get_bytes(&r, *n) : NULL;
        if (!s) {
            nlu_errf(err, errlen, "model truncated in labels");
            goto done;
        }
        m->labels[j] = sb_xstrndup((const char *)s, *n);
        if (strlen(m->labels[j]) != *n || !sb_nlu_is_label(m->labels[j])) {
            nlu_errf(err, errlen, "model label %u is not a valid intent name", j);
            goto done;
        }
    }
    /* the rest has a known size: check it before allocating */
    size_t nw = (size_t)R * L;
    size_t need = (size_t)L * 4 + (size_t)R * 4 + (quant ? (size_t)R * 4 + nw : nw * 4);
    if (r.n - r.off != need) {
        nlu_errf(err, errlen, "model size does not match its header");
        goto done;
    }
    m->bias = sb_xmalloc(L * sizeof *m->bias);
    for (uint32_t j = 0; j < L; j++)
        m->bias[j] = get_f32(&r);
    m->nrows = R;
    m->keys = sb_xmalloc((R ? R : 1) * sizeof *m->keys);
    uint32_t kmax = (1u << m->feat.hash_bits) - 1u;
    for (uint32_t i = 0; i < R; i++) {
        m->keys[i] = get_u32(&r);
        if (m->keys[i] > kmax || (i > 0 && m->keys[i] <= m->keys[i - 1])) {
            nlu_errf(err, errlen, "model feature keys not ascending");
            goto done;
        }
    }
    m->quant = quant;
    bool finite = true;
    for (uint32_t j = 0; j < L; j++)
        finite = finite && isfinite(m->bias[j]);
    if (quant) {
        m->scale = sb_xmalloc((R ? R : 1) * sizeof *m->scale);
        for (uint32_t i = 0; i < R; i++) {
            m->scale[i] = get_f32(&r);
            finite = finite && isfinite(m->scale[i]);
        }
        m->wq = sb_xmalloc(nw ? nw : 1);
        memcpy(m->wq, get_bytes(&r, nw), nw);
    } else {
        m->wf = sb_xmalloc((nw ? nw : 1) * sizeof *m->wf);
        for (size_t i = 0; i < nw; i++) {
            m->wf[i] = get_f32(&r);
            finite = finite && isfinite(m->wf[i]);
        }
    }
    if (r.bad || !finite) {
        nlu_errf(err, errlen, "model weights invalid");
        goto done;
    }
    build_table(m);
    snprintf(m->version, sizeof m->version, "%016llx", (unsigned long long)have);
    *out = m;
    m = NULL;
    rc = SB_OK;
done:
    sb_nlu_model_destroy(m);
    return rc;
}

sb_result_t sb_nlu_model_load(sb_nlu_model_t **out, const char *path, char *err, size_t errlen)
{
    char *data = NULL;
    size_t len = 0;
    sb_result_t rc = sb_read_file(path, SB_NLU_MAX_FILE, &data, &len);
    if (rc != SB_OK) {
        nlu_errf(err, errlen, "%s: cannot read model: %s", path, sb_result_str(rc));
        return rc;
    }
    char sub[200] = "";
    rc = sb_nlu_model_parse(out, (const uint8_t *)data, len, sub, sizeof sub);
    if (rc != SB_OK) nlu_errf(err, errlen, "%s: %s", path, sub);
    free(data);
    return rc;
}
