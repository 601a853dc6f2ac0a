/* The intent model: a linear softmax over hashed features (optionally with a small hidden
 * layer beside it), an example memory whose nearest neighbours vote, their trainer and their
 * file format.
 *
 * Features (tokenize.c) are weighted by their inverse document frequency in the training data
 * and L2-normalized over all of a message's features, known or not, exactly the same way in
 * training and prediction (weigh()).
 *
 * Training: every example is featurized once; buckets seen at least min_count times become
 * rows, numbered in bucket order; weights W[row][label] and biases are learned with AdaGrad
 * on the cross-entropy plus an L2 penalty on the rows a step touches, with feature dropout,
 * for a fixed number of epochs over a permutation drawn from the seed (same data and seed,
 * same bytes). Out-of-scope training examples (--oos-train) are pulled towards the uniform
 * distribution (outlier exposure). Labels whose gradient is negligible for an example are
 * skipped, which keeps a 150-intent model trainable in seconds. Several members trained with
 * different seeds are averaged (for a linear model, averaging the logits; hidden layers are
 * put side by side). The example memory keeps every training example as a unit tf-idf vector
 * of its word uni/bigrams, inverted by row; at prediction its k nearest examples vote and the
 * vote is mixed into the probabilities with a share chosen on validation (0 drops it). Then,
 * on validation, the temperature is fitted (NLL) and, with out-of-scope validation, chosen
 * together with the memory's share and the rejection threshold to maximize (in-scope
 * accuracy + out-of-scope recall) / 2; the stored threshold is the median of the best cuts on
 * bootstrap resamples of the validation rows.
 *
 * Word sums: for the most frequent words of the training data the model also stores the sum of
 * their char n-gram rows, weighted as prediction weighs them, and the squared norm those
 * n-grams add to a message; a known word then costs one row instead of ~10 (same scores up to
 * rounding, ~25 % less prediction time).
 *
 * Prediction: bucket ids → rows through an open-addressing table built at load (prefetched,
 * the model is larger than the caches); scores = bias + Σ value · W[row] with an AVX2 kernel
 * when the CPU has it (+ W2 · relu(b1 + Σ value · E[row]) with a hidden layer); softmax with
 * the temperature; the memory's vote mixed in; top-k and margin.
 *
 * File (all little-endian): "SBNLUMDL", u32 format version (4; 1 to 3 are still read),
 * feature config (u32 char range and flags: 1 bigrams, 2 accents stripped, 4 stems, 8 idf,
 * [v4] 16 the hidden layer reads every feature; f32 weights), u32 nlabels, u32 nrows, u32
 * quantized, [v2: u32 hidden, u32 memory examples, u32 memory rows, u32 memory postings, u32 k, f32
 * share], [v3: u32 word sums], f32 temperature, f32 threshold, labels (u8 length + bytes), f32
 * bias[nlabels], u32 keys[nrows] (ascending bucket ids), with idf: f32 idf_unk + f32 idf[nrows],
 * then either f32 W[nrows][nlabels] or f32 scale[nrows] + i8 W[nrows][nlabels]; with a hidden layer
 * f32 b1[hidden], f32 W2[hidden][nlabels], and E like W; with a memory u32 label[examples], u32
 * rows[], f32 idf[], u32 offsets[rows + 1], u32 example[postings], f32 value[postings]; with word
 * sums u64 keys[sums] (ascending), f32 squared norm[sums] and the sums like W; and a u64 FNV-1a of
 * everything before it. The model version is that checksum in hex. Every count and index is checked
 * at load. */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nlu_internal.h"
#include "sb/util.h"

#define MODEL_MAGIC "SBNLUMDL"
/* 4 added feature flag 16 (the hidden layer reads every feature), 3 the word sums, 2 the
 * hidden layer; 1 to 3 are still read */
#define MODEL_FORMAT 4u
#define MAX_HIDDEN 1024u
#define HIDDEN_MIN_PER_INTENT                                                                      \
    50                       /* examples per intent, on average, for the automatic hidden layer */
#define KNN_TOLERANCE 0.003f /* validation gain needed to move the memory's share */
#define EMPTY_KEY 0xffffffffu

/* key → count (or row), open addressing; keys are bucket ids or 64-bit word keys, any value
 * but COUNTER_EMPTY. */
#define COUNTER_EMPTY UINT64_MAX
typedef struct counter {
    uint64_t *keys;
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

static inline uint32_t counter_hash(uint64_t key)
{
    return nlu_mix32((uint32_t)key ^ (uint32_t)(key >> 32));
}

static uint32_t *counter_slot(counter_t *c, uint64_t key);

static void counter_grow(counter_t *c)
{
    counter_t old = *c;
    counter_init(c, (old.mask + 1) * 2);
    for (uint32_t i = 0; i <= old.mask; i++)
        if (old.keys[i] != COUNTER_EMPTY) *counter_slot(c, old.keys[i]) = old.vals[i];
    free(old.keys);
    free(old.vals);
}

static uint32_t *counter_slot(counter_t *c, uint64_t key)
{
    if ((uint64_t)(c->n + 1) * 2 > (uint64_t)c->mask + 1) counter_grow(c);
    uint32_t i = counter_hash(key) & c->mask;
    while (c->keys[i] != COUNTER_EMPTY && c->keys[i] != key)
        i = (i + 1) & c->mask;
    if (c->keys[i] == COUNTER_EMPTY) {
        c->keys[i] = key;
        c->vals[i] = 0;
        c->n++;
    }
    return &c->vals[i];
}

static const uint32_t *counter_find(const counter_t *c, uint64_t key)
{
    uint32_t i = counter_hash(key) & c->mask;
    while (c->keys[i] != COUNTER_EMPTY) {
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

struct sb_nlu_model {
    sb_nlu_featcfg_t feat;
    uint32_t nlabels;
    char **labels;
    uint32_t nrows;
    uint32_t *keys;    /* ascending bucket ids */
    uint32_t tab_mask; /* lookup: bucket → row */
    uint32_t *tab;     /* pairs (bucket, row): one cache line per probe */
    bool quant;
    float *wf;        /* nrows * nlabels, when !quant */
    int8_t *wq;       /* nrows * nlabels, when quant */
    float *scale;     /* nrows, when quant */
    float *bias;      /* nlabels */
    float *idf;       /* nrows, when feat.idf */
    float idf_unk;    /* weight of a feature never seen in training */
    uint32_t hidden;  /* hidden units, 0 = linear only */
    bool hidden_all;  /* the hidden layer reads every feature, not only the word ones */
    uint32_t ne_rows; /* rows with embeddings: the features the hidden layer reads */
    uint32_t *e_rows; /* ne_rows ascending model rows */
    int32_t *e_slot;  /* nrows: embedding of a row, or -1 (built at load) */
    float *ef;        /* nrows * hidden, when !quant */
    int8_t *eq;       /* nrows * hidden, when quant */
    float *escale;    /* nrows, when quant */
    float *b1;        /* hidden */
    float *w2;        /* hidden * nlabels */
    /* the example memory: training examples as idf-weighted word uni/bigram vectors,
     * inverted by model row; its k nearest neighbours vote beside the softmax */
    uint32_t knn_n;      /* remembered examples, 0 = none */
    uint32_t knn_k;      /* neighbours that vote */
    float knn_weight;    /* share of the vote in the final probabilities */
    uint32_t knn_nkeys;  /* indexed rows */
    uint32_t knn_npost;  /* postings */
    uint32_t *knn_label; /* knn_n */
    uint32_t *knn_rows;  /* knn_nkeys, ascending model rows */
    float *knn_idf;      /* knn_nkeys */
    uint32_t *knn_off;   /* knn_nkeys + 1 */
    uint32_t *knn_ex;    /* knn_npost: example of each posting */
    float *knn_val;      /* knn_npost: its weight in that example's unit vector */
    int32_t *knn_slot;   /* nrows: index into knn_rows, or -1 (built at load) */
    /* word sums: for the words of the training data, the sum of their char n-gram rows
     * (weighted as prediction weighs them), so that a known word costs one row, not ~10 */
    uint32_t nsums;
    uint64_t *sum_keys; /* nsums ascending word keys (nlu_word_key) */
    float *sum_ss;      /* nsums: squared norm the word's n-grams add to a message */
    float *sumf;        /* nsums * nlabels, when !quant */
    int8_t *sumq;       /* nsums * nlabels, when quant */
    float *sum_scale;   /* nsums, when quant */
    counter_t sum_map;  /* lookup: word key → sum index, built at load */
    float temperature;
    float threshold;
    char version[17];
};

/* ---- small helpers ---------------------------------------------------------------------- */

/* e^x for x <= 0 (relative error ~2e-7): range reduction by ln 2 and a degree-6
 * polynomial, branch-free so that the compiler vectorizes the softmax loop. Only IEEE
 * multiply and add (no fused operations), so every build computes the same bits. */
static inline float exp_neg(float x)
{
    x = x < -87.0f ? -87.0f : x;
    float t = x * 1.44269504088896341f;
    float k = (t + 12582912.0f) - 12582912.0f; /* round to nearest integer */
    float r = x - k * 0.693145751953125f;      /* ln 2, high part */
    r = r - k * 1.428606765330187045e-06f;     /* ln 2, low part */
    float p =
        1.0f +
        r * (1.0f + r * (0.5f + r * (0.16666667f +
                                     r * (0.041666668f + r * (0.008333334f + r * 0.0013888889f)))));
    int32_t e = ((int32_t)k + 127) * (1 << 23);
    float sc;
    memcpy(&sc, &e, sizeof sc);
    return p * sc;
}

/* Sums 8 lane partial sums in a fixed order (shared by the C and AVX2 versions, so that both
 * give the same bits). */
static inline float lanes_sum(const float l[8])
{
    return ((l[0] + l[1]) + (l[2] + l[3])) + ((l[4] + l[5]) + (l[6] + l[7]));
}

/* z[i] = e^((z[i] - mx) · inv); returns their sum: lane partial sums over whole blocks of 8,
 * then the rest in order. */
static float exp_shifted_c(float *z, size_t n, float mx, float inv)
{
    float lane[8] = {0}, tail = 0;
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (size_t k = 0; k < 8; k++) {
            z[i + k] = exp_neg((z[i + k] - mx) * inv);
            lane[k] += z[i + k];
        }
    for (; i < n; i++) {
        z[i] = exp_neg((z[i] - mx) * inv);
        tail += z[i];
    }
    return lanes_sum(lane) + tail;
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

/* The same operations as exp_neg, eight at a time (bit-identical results). */
__attribute__((target("avx2"))) static float exp_shifted_avx2(float *z, size_t n, float mx,
                                                              float inv)
{
    __m256 acc = _mm256_setzero_ps();
    const __m256 vmx = _mm256_set1_ps(mx), vinv = _mm256_set1_ps(inv);
    const __m256 lo = _mm256_set1_ps(-87.0f), l2e = _mm256_set1_ps(1.44269504088896341f);
    const __m256 magic = _mm256_set1_ps(12582912.0f);
    const __m256 ln2h = _mm256_set1_ps(0.693145751953125f);
    const __m256 ln2l = _mm256_set1_ps(1.428606765330187045e-06f);
    const __m256 one = _mm256_set1_ps(1.0f), c2 = _mm256_set1_ps(0.5f);
    const __m256 c3 = _mm256_set1_ps(0.16666667f), c4 = _mm256_set1_ps(0.041666668f);
    const __m256 c5 = _mm256_set1_ps(0.008333334f), c6 = _mm256_set1_ps(0.0013888889f);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 x = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(z + i), vmx), vinv);
        x = _mm256_blendv_ps(x, lo, _mm256_cmp_ps(x, lo, _CMP_LT_OQ));
        __m256 t = _mm256_mul_ps(x, l2e);
        __m256 k = _mm256_sub_ps(_mm256_add_ps(t, magic), magic);
        __m256 r = _mm256_sub_ps(x, _mm256_mul_ps(k, ln2h));
        r = _mm256_sub_ps(r, _mm256_mul_ps(k, ln2l));
        __m256 p = _mm256_add_ps(c5, _mm256_mul_ps(r, c6));
        p = _mm256_add_ps(c4, _mm256_mul_ps(r, p));
        p = _mm256_add_ps(c3, _mm256_mul_ps(r, p));
        p = _mm256_add_ps(c2, _mm256_mul_ps(r, p));
        p = _mm256_add_ps(one, _mm256_mul_ps(r, p));
        p = _mm256_add_ps(one, _mm256_mul_ps(r, p));
        __m256i e =
            _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvttps_epi32(k), _mm256_set1_epi32(127)), 23);
        __m256 v = _mm256_mul_ps(p, _mm256_castsi256_ps(e));
        _mm256_storeu_ps(z + i, v);
        acc = _mm256_add_ps(acc, v);
    }
    float lane[8];
    _mm256_storeu_ps(lane, acc);
    return lanes_sum(lane) + exp_shifted_c(z + i, n - i, mx, inv);
}

static float exp_shifted(float *z, size_t n, float mx, float inv)
{
    if (__builtin_cpu_supports("avx2")) return exp_shifted_avx2(z, n, mx, inv);
    return exp_shifted_c(z, n, mx, inv);
}
#else
#define exp_shifted exp_shifted_c
#endif

/* e^((z - max z) / temperature) in place; returns the sum (the softmax divides by it). */
static float softmax_unnormalized(float *z, size_t n, float temperature)
{
    float inv = temperature > 0 ? 1.0f / temperature : 1.0f;
    float mx = z[0];
    for (size_t i = 1; i < n; i++)
        mx = z[i] > mx ? z[i] : mx;
    return exp_shifted(z, n, mx, inv);
}

void nlu_softmax(float *z, size_t n, float temperature)
{
    if (n == 0) return;
    float sum = softmax_unnormalized(z, n, temperature);
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
    m->tab = sb_xmalloc((size_t)size * 2 * sizeof *m->tab);
    memset(m->tab, 0xff, (size_t)size * 2 * sizeof *m->tab);
    for (uint32_t r = 0; r < m->nrows; r++) {
        uint32_t k = m->keys[r], i = nlu_mix32(k) & m->tab_mask;
        while (m->tab[2 * i] != EMPTY_KEY)
            i = (i + 1) & m->tab_mask;
        m->tab[2 * i] = k;
        m->tab[2 * i + 1] = r;
    }
}

static inline int64_t lookup_row(const sb_nlu_model_t *m, uint32_t key)
{
    uint32_t i = nlu_mix32(key) & m->tab_mask;
    for (;;) {
        uint32_t k = m->tab[2 * i];
        if (k == key) return m->tab[2 * i + 1];
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
    free(m->tab);
    free(m->wf);
    free(m->wq);
    free(m->scale);
    free(m->bias);
    free(m->idf);
    free(m->ef);
    free(m->eq);
    free(m->escale);
    free(m->b1);
    free(m->w2);
    free(m->e_rows);
    free(m->e_slot);
    free(m->knn_label);
    free(m->knn_rows);
    free(m->knn_idf);
    free(m->knn_off);
    free(m->knn_ex);
    free(m->knn_val);
    free(m->knn_slot);
    free(m->sum_keys);
    free(m->sum_ss);
    free(m->sumf);
    free(m->sumq);
    free(m->sum_scale);
    counter_free(&m->sum_map);
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

/* Weights the features by idf (rows[f] < 0: unknown, weight idf_unk), L2-normalizes them over
 * all features, known or not, and keeps the known ones in rows/vals (compacted in place).
 * Returns how many were kept. Shared by training and prediction so both see the same
 * vectors. */
static size_t weigh(int32_t *rows, float *vals, size_t nf, const float *idf, float idf_unk,
                    size_t *nword, double extra_ss, float *inv_out)
{
    size_t nw = *nword, kw = 0;
    double ss = extra_ss;
    for (size_t f = 0; f < nf; f++) {
        if (idf) vals[f] *= rows[f] >= 0 ? idf[rows[f]] : idf_unk;
        ss += (double)vals[f] * vals[f];
    }
    float inv = ss > 0 ? (float)(1.0 / sqrt(ss)) : 0.0f;
    if (inv_out) *inv_out = inv;
    size_t k = 0;
    for (size_t f = 0; f < nf; f++) {
        if (rows[f] < 0) continue;
        rows[k] = rows[f];
        vals[k] = vals[f] * inv;
        k++;
        if (f < nw) kw = k;
    }
    *nword = kw;
    return k;
}

/* z += Σ vals[f] · W[rows[f]]: the hot loop of prediction. The portable version is what
 * the compiler makes of plain C; on x86-64 CPUs with AVX2 (checked once at run time) a
 * hand-vectorized version keeps 32 labels in registers across all features. Both multiply
 * then add (no fused multiply-add), so they give bit-identical scores. */
static void accumulate_q_c(float *restrict z, uint32_t L, const int8_t *restrict wq,
                           const float *restrict scale, const int32_t *rows, const float *vals,
                           size_t nf)
{
    for (size_t f = 0; f < nf; f++) {
        size_t r = (size_t)rows[f];
        const int8_t *restrict q = wq + r * L;
        float c = vals[f] * scale[r];
        for (uint32_t j = 0; j < L; j++)
            z[j] += c * (float)q[j];
    }
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

__attribute__((target("avx2"))) static void
accumulate_q_avx2(float *restrict z, uint32_t L, const int8_t *restrict wq,
                  const float *restrict scale, const int32_t *rows, const float *vals, size_t nf)
{
    uint32_t j0 = 0;
    for (; j0 + 32 <= L; j0 += 32) {
        __m256 a0 = _mm256_loadu_ps(z + j0), a1 = _mm256_loadu_ps(z + j0 + 8);
        __m256 a2 = _mm256_loadu_ps(z + j0 + 16), a3 = _mm256_loadu_ps(z + j0 + 24);
        for (size_t f = 0; f < nf; f++) {
            size_t r = (size_t)rows[f];
            const int8_t *q = wq + r * L + j0;
            __m256 c = _mm256_set1_ps(vals[f] * scale[r]);
            __m256i b = _mm256_loadu_si256((const __m256i *)q);
            __m128i lo = _mm256_castsi256_si128(b), hi = _mm256_extracti128_si256(b, 1);
            __m256 w0 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(lo));
            __m256 w1 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(lo, 8)));
            __m256 w2 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(hi));
            __m256 w3 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(hi, 8)));
            a0 = _mm256_add_ps(a0, _mm256_mul_ps(c, w0));
            a1 = _mm256_add_ps(a1, _mm256_mul_ps(c, w1));
            a2 = _mm256_add_ps(a2, _mm256_mul_ps(c, w2));
            a3 = _mm256_add_ps(a3, _mm256_mul_ps(c, w3));
        }
        _mm256_storeu_ps(z + j0, a0);
        _mm256_storeu_ps(z + j0 + 8, a1);
        _mm256_storeu_ps(z + j0 + 16, a2);
        _mm256_storeu_ps(z + j0 + 24, a3);
    }
    for (; j0 + 8 <= L; j0 += 8) {
        __m256 a0 = _mm256_loadu_ps(z + j0);
        for (size_t f = 0; f < nf; f++) {
            size_t r = (size_t)rows[f];
            __m256 c = _mm256_set1_ps(vals[f] * scale[r]);
            __m128i b = _mm_loadl_epi64((const __m128i *)(wq + r * L + j0));
            a0 = _mm256_add_ps(a0, _mm256_mul_ps(c, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(b))));
        }
        _mm256_storeu_ps(z + j0, a0);
    }
    for (size_t f = 0; f < nf && j0 < L; f++) {
        size_t r = (size_t)rows[f];
        float c = vals[f] * scale[r];
        for (uint32_t j = j0; j < L; j++)
            z[j] += c * (float)wq[r * L + j];
    }
}

static void accumulate_q(float *restrict z, uint32_t L, const int8_t *restrict wq,
                         const float *restrict scale, const int32_t *rows, const float *vals,
                         size_t nf)
{
    if (__builtin_cpu_supports("avx2"))
        accumulate_q_avx2(z, L, wq, scale, rows, vals, nf);
    else
        accumulate_q_c(z, L, wq, scale, rows, vals, nf);
}
#else
#define accumulate_q accumulate_q_c
#endif

#if defined(__x86_64__) && defined(__GNUC__)
/* z += Σ vals[f] · wf[rows[f]] for float rows (the hidden layer's output weights), eight labels
 * at a time; multiply then add, like the portable loop, so both give the same bits. */
__attribute__((target("avx2"))) static void accumulate_f_avx2(float *restrict z, uint32_t L,
                                                              const float *restrict wf,
                                                              const int32_t *rows,
                                                              const float *vals, size_t nf)
{
    /* 32 labels stay in registers across all rows (the portable loop's order per label) */
    uint32_t j0 = 0;
    for (; j0 + 32 <= L; j0 += 32) {
        __m256 a0 = _mm256_loadu_ps(z + j0), a1 = _mm256_loadu_ps(z + j0 + 8);
        __m256 a2 = _mm256_loadu_ps(z + j0 + 16), a3 = _mm256_loadu_ps(z + j0 + 24);
        for (size_t f = 0; f < nf; f++) {
            const float *wr = wf + (size_t)rows[f] * L + j0;
            __m256 c = _mm256_set1_ps(vals[f]);
            a0 = _mm256_add_ps(a0, _mm256_mul_ps(c, _mm256_loadu_ps(wr)));
            a1 = _mm256_add_ps(a1, _mm256_mul_ps(c, _mm256_loadu_ps(wr + 8)));
            a2 = _mm256_add_ps(a2, _mm256_mul_ps(c, _mm256_loadu_ps(wr + 16)));
            a3 = _mm256_add_ps(a3, _mm256_mul_ps(c, _mm256_loadu_ps(wr + 24)));
        }
        _mm256_storeu_ps(z + j0, a0);
        _mm256_storeu_ps(z + j0 + 8, a1);
        _mm256_storeu_ps(z + j0 + 16, a2);
        _mm256_storeu_ps(z + j0 + 24, a3);
    }
    for (; j0 + 8 <= L; j0 += 8) {
        __m256 a0 = _mm256_loadu_ps(z + j0);
        for (size_t f = 0; f < nf; f++)
            a0 = _mm256_add_ps(a0, _mm256_mul_ps(_mm256_set1_ps(vals[f]),
                                                 _mm256_loadu_ps(wf + (size_t)rows[f] * L + j0)));
        _mm256_storeu_ps(z + j0, a0);
    }
    for (size_t f = 0; f < nf && j0 < L; f++)
        for (uint32_t j = j0; j < L; j++)
            z[j] += vals[f] * wf[(size_t)rows[f] * L + j];
}
#endif

static void accumulate_f_c(float *restrict z, uint32_t L, const float *restrict wf,
                           const int32_t *rows, const float *vals, size_t nf)
{
    for (size_t f = 0; f < nf; f++) {
        const float *restrict wr = wf + (size_t)rows[f] * L;
        float c = vals[f];
        for (uint32_t j = 0; j < L; j++)
            z[j] += c * wr[j];
    }
}

static void accumulate_f(float *restrict z, uint32_t L, const float *restrict wf,
                         const int32_t *rows, const float *vals, size_t nf)
{
#if defined(__x86_64__) && defined(__GNUC__)
    if (__builtin_cpu_supports("avx2")) {
        accumulate_f_avx2(z, L, wf, rows, vals, nf);
        return;
    }
#endif
    accumulate_f_c(z, L, wf, rows, vals, nf);
}

static int32_t find_sum(const void *ctx, uint64_t key)
{
    const uint32_t *s = counter_find(&((const sb_nlu_model_t *)ctx)->sum_map, key);
    return s ? (int32_t)*s : -1;
}

static void sums_build_map(sb_nlu_model_t *m)
{
    counter_init(&m->sum_map, pow2_at_least((uint64_t)m->nsums * 2 + 2));
    for (uint32_t s = 0; s < m->nsums; s++)
        *counter_slot(&m->sum_map, m->sum_keys[s]) = s;
}

void sb_nlu_model_logits(const sb_nlu_model_t *m, sb_nlu_work_t *w, const char *lang, float *z)
{
    const uint32_t *ids;
    const float *fv;
    size_t nf = m->nsums ? nlu_work_featurize_summed(w, &m->feat, lang, find_sum, m, &ids, &fv)
                         : sb_nlu_work_featurize(w, &m->feat, lang, &ids, &fv);
    size_t ns = m->nsums ? w->nsums : 0;
    int32_t *rows = w->frows;
    float *vals = w->fvals; /* the work's own feature values, reweighted in place */
    const uint32_t L = m->nlabels;
    /* The model is larger than the caches and each feature touches a random row, so the
     * lookups and rows are prefetched a pass ahead of their use. */
    for (size_t f = 0; f < nf; f++)
        __builtin_prefetch(&m->tab[2 * (nlu_mix32(ids[f]) & m->tab_mask)]);
    size_t row_bytes = m->quant ? L : L * sizeof(float);
    for (size_t f = 0; f < nf; f++) {
        int64_t r = lookup_row(m, ids[f]);
        rows[f] = (int32_t)r;
        if (r < 0) continue;
        const char *base = m->quant ? (const char *)(m->wq + (size_t)r * L)
                                    : (const char *)(m->wf + (size_t)r * L);
        for (size_t o = 0; o < row_bytes; o += 64)
            __builtin_prefetch(base + o);
        if (m->hidden && (m->hidden_all || (size_t)f < w->nwf) && m->e_slot[r] >= 0) {
            size_t e = (size_t)m->e_slot[r];
            const char *eb = m->quant ? (const char *)(m->eq + e * m->hidden)
                                      : (const char *)(m->ef + e * m->hidden);
            size_t eb_bytes = m->quant ? m->hidden : m->hidden * sizeof(float);
            for (size_t o = 0; o < eb_bytes; o += 64)
                __builtin_prefetch(eb + o);
        }
    }
    double sum_ss = 0;
    for (size_t s = 0; s < ns; s++) {
        size_t i = (size_t)w->sums[s];
        sum_ss += m->sum_ss[i];
        const char *base =
            m->quant ? (const char *)(m->sumq + i * L) : (const char *)(m->sumf + i * L);
        for (size_t o = 0; o < row_bytes; o += 64)
            __builtin_prefetch(base + o);
    }
    size_t nwk = w->nwf;
    float inv = 0;
    nf = weigh(rows, vals, nf, m->idf, m->idf_unk, &nwk, sum_ss, &inv);
    memcpy(z, m->bias, L * sizeof *z);
    if (m->quant)
        accumulate_q(z, L, m->wq, m->scale, rows, vals, nf);
    else
        accumulate_f(z, L, m->wf, rows, vals, nf);
    if (ns) {
        /* a sum stands for its word's n-grams, already idf-weighted: it gets the message's norm */
        for (size_t s = 0; s < ns; s++)
            w->sum_vals[s] = inv;
        if (m->quant)
            accumulate_q(z, L, m->sumq, m->sum_scale, w->sums, w->sum_vals, ns);
        else
            accumulate_f(z, L, m->sumf, w->sums, w->sum_vals, ns);
    }
    if (m->hidden) {
        /* h = relu(b1 + Σ v · E[row]); z += Σ_{h>0} h · W2[unit] */
        const uint32_t H = m->hidden;
        if (m->hidden_all) nwk = nf;
        float *h = nlu_work_hidden(w, H + nwk);
        int32_t *units = (int32_t *)(h + H);
        int32_t *erows = (int32_t *)(h + 2 * H);
        float *evals = h + 2 * H + nwk;
        memcpy(h, m->b1, H * sizeof *h);
        /* the hidden layer reads the word features (the first nwk), or all of them */
        size_t ne = 0;
        for (size_t f = 0; f < nwk; f++) {
            int32_t e = m->e_slot[rows[f]];
            if (e < 0) continue;
            erows[ne] = e;
            evals[ne++] = vals[f];
        }
        if (m->quant)
            accumulate_q(h, H, m->eq, m->escale, erows, evals, ne);
        else
            accumulate_f(h, H, m->ef, erows, evals, ne);
        /* the active units, compacted without branches (about half are active, at random) */
        size_t np = 0;
        for (uint32_t q = 0; q < H; q++) {
            float v = h[q];
            units[np] = (int32_t)q;
            h[np] = v;
            np += v > 0;
        }
        accumulate_f(z, L, m->w2, units, h, np);
    }
}

/* ---- the example memory -------------------------------------------------------------- */

static void e_build_slots(sb_nlu_model_t *m)
{
    m->e_slot = sb_xmalloc((m->nrows ? m->nrows : 1) * sizeof *m->e_slot);
    for (uint32_t r = 0; r < m->nrows; r++)
        m->e_slot[r] = -1;
    for (uint32_t k = 0; k < m->ne_rows; k++)
        m->e_slot[m->e_rows[k]] = (int32_t)k;
}

static void knn_build_slots(sb_nlu_model_t *m)
{
    m->knn_slot = sb_xmalloc((m->nrows ? m->nrows : 1) * sizeof *m->knn_slot);
    for (uint32_t r = 0; r < m->nrows; r++)
        m->knn_slot[r] = -1;
    for (uint32_t k = 0; k < m->knn_nkeys; k++)
        m->knn_slot[m->knn_rows[k]] = (int32_t)k;
}

static int cmp_i32(const void *a, const void *b)
{
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return x < y ? -1 : x > y;
}

/* The distinct model rows of the word features of w's tokens that the memory indexes, in
 * slots[] (knn slot numbers, sorted). Returns how many. */
static size_t knn_query_slots(const sb_nlu_model_t *m, sb_nlu_work_t *w, int32_t *slots)
{
    uint32_t *b;
    size_t nb = nlu_word_buckets(w, &m->feat, &b), n = 0;
    for (size_t i = 0; i < nb; i++) {
        int64_t r = lookup_row(m, b[i]);
        if (r >= 0 && m->knn_slot[r] >= 0) slots[n++] = m->knn_slot[r];
    }
    qsort(slots, n, sizeof *slots, cmp_i32);
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (k == 0 || slots[k - 1] != slots[i]) slots[k++] = slots[i];
    return k;
}

/* The vote of the k nearest remembered examples (cosine of the word vectors) for the tokens of
 * w, per label into kd[nlabels] (summing to 1). False when no example shares a word. */
static bool knn_vote(const sb_nlu_model_t *m, sb_nlu_work_t *w, float *kd)
{
    if (m->knn_n == 0) return false;
    if (w->knn_cap < m->knn_n) {
        free(w->knn_sims);
        free(w->knn_touched);
        w->knn_sims = sb_xcalloc(m->knn_n, sizeof *w->knn_sims);
        w->knn_touched = sb_xmalloc(m->knn_n * sizeof *w->knn_touched);
        w->knn_cap = m->knn_n;
    }
    int32_t *slots = (int32_t *)nlu_work_hidden(w, 2 * w->ntoks + 2);
    size_t ns = knn_query_slots(m, w, slots);
    double ss = 0;
    for (size_t i = 0; i < ns; i++)
        ss += (double)m->knn_idf[slots[i]] * m->knn_idf[slots[i]];
    if (ns == 0 || ss <= 0) return false;
    float inv = (float)(1.0 / sqrt(ss));
    float *sims = w->knn_sims;
    uint32_t *touched = w->knn_touched, nt = 0;
    for (size_t i = 0; i < ns; i++) {
        uint32_t k = (uint32_t)slots[i];
        float q = m->knn_idf[k] * inv;
        for (uint32_t p = m->knn_off[k]; p < m->knn_off[k + 1]; p++) {
            uint32_t e = m->knn_ex[p];
            if (sims[e] == 0.0f) touched[nt++] = e;
            sims[e] += q * m->knn_val[p];
        }
    }
    enum { MAXK = 64 };
    uint32_t best[MAXK];
    float bs[MAXK];
    uint32_t K = m->knn_k < MAXK ? m->knn_k : MAXK, nb = 0;
    for (uint32_t t = 0; t < nt; t++) {
        uint32_t e = touched[t];
        float v = sims[e];
        sims[e] = 0.0f;
        if (nb == K && v <= bs[K - 1]) continue;
        uint32_t pos = nb < K ? nb++ : K - 1;
        while (pos > 0 && (bs[pos - 1] < v || (bs[pos - 1] == v && best[pos - 1] > e))) {
            bs[pos] = bs[pos - 1];
            best[pos] = best[pos - 1];
            pos--;
        }
        bs[pos] = v;
        best[pos] = e;
    }
    double tot = 0;
    memset(kd, 0, m->nlabels * sizeof *kd);
    for (uint32_t i = 0; i < nb; i++) {
        kd[m->knn_label[best[i]]] += bs[i];
        tot += bs[i];
    }
    if (tot <= 0) return false;
    for (uint32_t j = 0; j < m->nlabels; j++)
        kd[j] = (float)(kd[j] / tot);
    return true;
}

/* p = (1 - a) · p + a · vote, when the memory has a vote for w's tokens. */
static void knn_mix(const sb_nlu_model_t *m, sb_nlu_work_t *w, float *p)
{
    if (m->knn_n == 0 || m->knn_weight <= 0) return;
    if (w->knn_kd_cap < m->nlabels) {
        w->knn_kd = sb_xrealloc(w->knn_kd, m->nlabels * sizeof *w->knn_kd);
        w->knn_kd_cap = m->nlabels;
    }
    if (!knn_vote(m, w, w->knn_kd)) return;
    const float a = m->knn_weight;
    for (uint32_t j = 0; j < m->nlabels; j++)
        p[j] = (1.0f - a) * p[j] + a * w->knn_kd[j];
}

/* Top-k of the probabilities p / sum (p unnormalized when sum != 1). */
static void fill_prediction(const sb_nlu_model_t *m, const float *p, float sum,
                            sb_nlu_prediction_t *out)
{
    memset(out, 0, sizeof *out);
    out->label = -1;
    /* top-k by insertion into a short sorted list: one pass over the labels, most of which
     * fail the first comparison with the k-th value kept in a register */
    size_t k = m->nlabels < SB_NLU_TOPK ? m->nlabels : SB_NLU_TOPK;
    int chosen[SB_NLU_TOPK];
    float val[SB_NLU_TOPK];
    size_t have = 0;
    float kth = -1.0f;
    for (uint32_t j = 0; j < m->nlabels; j++) {
        if ((j & 7) == 0 && j + 8 <= m->nlabels) {
            /* a block of 8 whose largest value cannot enter is skipped with one branch */
            float bm = p[j];
            for (uint32_t q = 1; q < 8; q++)
                bm = p[j + q] > bm ? p[j + q] : bm;
            if (bm <= kth) {
                j += 7;
                continue;
            }
        }
        float v = p[j];
        if (v <= kth) continue;
        size_t pos = have < k ? have++ : k - 1;
        while (pos > 0 && val[pos - 1] < v) {
            chosen[pos] = chosen[pos - 1];
            val[pos] = val[pos - 1];
            pos--;
        }
        chosen[pos] = (int)j;
        val[pos] = v;
        if (have == k) kth = val[k - 1];
    }
    for (size_t t = 0; t < k; t++) {
        out->top[t].intent = m->labels[chosen[t]];
        out->top[t].confidence = val[t] / sum;
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
    if (m->knn_n && m->knn_weight > 0) {
        nlu_softmax(z, m->nlabels, m->temperature);
        knn_mix(m, w, z);
        fill_prediction(m, z, 1.0f, out);
    } else {
        /* only the k best need dividing by the sum */
        float sum = softmax_unnormalized(z, m->nlabels, m->temperature);
        fill_prediction(m, z, sum, out);
    }
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
    o->epochs = 8;
    o->lr = 0.2f;
    o->l2 = 1e-5f;
    o->dropout = 0.2f;
    o->ensemble = 3;
    o->oos_weight = 3.0f;
    o->min_count = 1;
    o->quantize = true;
    o->word_sums = true;
    o->calibrate = true;
    o->knn_k = 10;
    o->knn_weight = 0.3f;
    o->hidden = 64;
    o->hidden_auto = true;
    o->hidden_lr = 0.05f;
    o->augment_p = 0.5f;
    o->threshold = 0.0f;
    sb_nlu_featcfg_default(&o->feat);
}

/* Bucket → count table used while collecting features. */
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
    uint32_t *nword; /* word features at the front of each example */
} csr_t;

static void csr_free(csr_t *c)
{
    free(c->off);
    free(c->rows);
    free(c->vals);
    free(c->label);
    free(c->nword);
}

/* Appends the examples of src to dst. */
static void csr_append(csr_t *dst, const csr_t *src)
{
    size_t nnz = dst->off[dst->n], add = src->off[src->n];
    dst->off = sb_xrealloc(dst->off, (dst->n + src->n + 1) * sizeof *dst->off);
    dst->label = sb_xrealloc(dst->label, (dst->n + src->n + 1) * sizeof *dst->label);
    dst->nword = sb_xrealloc(dst->nword, (dst->n + src->n + 1) * sizeof *dst->nword);
    dst->rows = sb_xrealloc(dst->rows, (nnz + add + 1) * sizeof *dst->rows);
    dst->vals = sb_xrealloc(dst->vals, (nnz + add + 1) * sizeof *dst->vals);
    memcpy(dst->rows + nnz, src->rows, add * sizeof *dst->rows);
    memcpy(dst->vals + nnz, src->vals, add * sizeof *dst->vals);
    for (size_t i = 0; i < src->n; i++) {
        dst->label[dst->n + i] = src->label[i];
        dst->nword[dst->n + i] = src->nword[i];
        dst->off[dst->n + i + 1] = nnz + src->off[i + 1];
    }
    dst->n += src->n;
}

/* Negative log-likelihood of the gold intents of the validation logits at temperature t. */
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

/* The temperature minimizing the validation NLL (golden-section search on log t in [-3, 3]). */
static float fit_temperature(const float *logits, const uint32_t *gold, size_t n, uint32_t L)
{
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

/* Picks the threshold maximizing (in-scope accuracy + oos recall) / 2 over the scored
 * validation rows (sorted here). With only ~100 out-of-scope rows the raw objective is a
 * staircase with a wide, noisy plateau, so it is averaged over a window of neighbouring cuts
 * (±2.5 % of the rows) before taking the maximum: the threshold lands in the middle of the
 * plateau rather than on its noisiest step. *objective receives the raw objective there,
 * *smoothed (may be NULL) the averaged one. */
static float choose_threshold(scored_t *s, size_t n_in, size_t n_oos, float *objective,
                              float *smoothed)
{
    size_t n = n_in + n_oos;
    qsort(s, n, sizeof *s, cmp_scored);
    double *obj = sb_xmalloc((n + 1) * sizeof *obj);
    size_t correct_total = 0;
    for (size_t i = 0; i < n; i++)
        if (s[i].correct == 1) correct_total++;
    /* obj[c]: reject the c lowest rows */
    size_t rej_oos = 0, rej_correct = 0;
    for (size_t c = 0; c <= n; c++) {
        if (c > 0) {
            if (s[c - 1].correct == -1)
                rej_oos++;
            else if (s[c - 1].correct == 1)
                rej_correct++;
        }
        double acc = (double)(correct_total - rej_correct) / (double)n_in;
        double rec = (double)rej_oos / (double)n_oos;
        obj[c] = (acc + rec) / 2;
    }
    size_t k = n / 40 > 0 ? n / 40 : 1, best_c = 0;
    double best = -1;
    for (size_t c = 0; c <= n; c++) {
        /* a cut between equal confidences cannot be a threshold */
        if (c > 0 && c < n && s[c].conf == s[c - 1].conf) continue;
        size_t lo = c > k ? c - k : 0, hi = c + k < n ? c + k : n;
        double sum = 0;
        for (size_t q = lo; q <= hi; q++)
            sum += obj[q];
        double sm = sum / (double)(hi - lo + 1);
        if (sm > best) {
            best = sm;
            best_c = c;
        }
    }
    float t;
    if (best_c == 0)
        t = 0.0f;
    else if (best_c == n)
        t = (s[n - 1].conf + 1.0f) / 2;
    else
        t = (s[best_c - 1].conf + s[best_c].conf) / 2;
    *objective = (float)obj[best_c];
    if (smoothed) *smoothed = (float)best;
    free(obj);
    return t;
}

/* (in-scope accuracy + out-of-scope recall) / 2 of the scored rows at threshold th. */
static float objective_at(const scored_t *s, size_t n_in, size_t n_oos, float th)
{
    size_t right = 0, rejected = 0;
    for (size_t i = 0; i < n_in + n_oos; i++) {
        if (s[i].correct == -1)
            rejected += s[i].conf < th;
        else
            right += s[i].correct == 1 && s[i].conf >= th;
    }
    return (float)(((double)right / (double)(n_in ? n_in : 1) +
                    (double)rejected / (double)(n_oos ? n_oos : 1)) /
                   2);
}

static int cmp_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return x < y ? -1 : x > y;
}

/* The median of the thresholds choose_threshold picks on 64 bootstrap resamples (drawn from
 * seed) of the scored rows, in-scope and out-of-scope resampled separately; fallback when
 * there is nothing to resample. */
static float bagged_threshold(const scored_t *s, size_t n_in, size_t n_oos, uint64_t seed,
                              float fallback)
{
    enum { BAGS = 64 };
    if (n_in == 0 || n_oos == 0) return fallback;
    scored_t *b = sb_xmalloc((n_in + n_oos) * sizeof *b);
    float th[BAGS];
    uint64_t rng = seed ^ 0xb0075742a9c3e1d5ull;
    for (int k = 0; k < BAGS; k++) {
        for (size_t i = 0; i < n_in; i++)
            b[i] = s[rng_next(&rng) % n_in];
        for (size_t i = 0; i < n_oos; i++)
            b[n_in + i] = s[n_in + rng_next(&rng) % n_oos];
        float ob;
        th[k] = choose_threshold(b, n_in, n_oos, &ob, NULL);
    }
    qsort(th, BAGS, sizeof th[0], cmp_float);
    free(b);
    return (th[BAGS / 2 - 1] + th[BAGS / 2]) / 2;
}

/* Forgets the example memory (its chosen share is 0). */
static void knn_drop(sb_nlu_model_t *m)
{
    free(m->knn_label);
    free(m->knn_rows);
    free(m->knn_idf);
    free(m->knn_off);
    free(m->knn_ex);
    free(m->knn_val);
    free(m->knn_slot);
    m->knn_label = m->knn_rows = m->knn_off = m->knn_ex = NULL;
    m->knn_idf = m->knn_val = NULL;
    m->knn_slot = NULL;
    m->knn_n = m->knn_nkeys = m->knn_npost = m->knn_k = 0;
    m->knn_weight = 0;
}

/* Scores the validation rows (in-scope first, then out-of-scope) at temperature t. */
static void score_rows(const sb_nlu_model_t *m, const float *vlog, const float *kdv,
                       const uint32_t *gold, size_t nv, size_t no, float t, float *z, scored_t *sc)
{
    const uint32_t L = m->nlabels;
    const float a = m->knn_n ? m->knn_weight : 0.0f;
    for (size_t i = 0; i < nv + no; i++) {
        memcpy(z, vlog + i * L, L * sizeof *z);
        nlu_softmax(z, L, t);
        /* the example memory's vote, as prediction mixes it (rows without one are NaN) */
        if (a > 0 && !isnan(kdv[i * L]))
            for (uint32_t j = 0; j < L; j++)
                z[j] = (1.0f - a) * z[j] + a * kdv[i * L + j];
        uint32_t am = 0;
        for (uint32_t j = 1; j < L; j++)
            if (z[j] > z[am]) am = j;
        /* a model trained with an explicit out-of-scope intent rejects by label */
        bool oos_label =
            strcmp(m->labels[am], "oos") == 0 || strcmp(m->labels[am], SB_NLU_OUT_OF_SCOPE) == 0;
        sc[i].conf = oos_label ? 0.0f : z[am];
        sc[i].correct = i >= nv ? -1 : am == gold[i] ? 1 : 0;
    }
}

/* Tokenizes t and extracts its raw features (the language is detected when stems need it). */
static size_t train_features(const sb_nlu_featcfg_t *feat, const sb_nlu_langid_t *li,
                             sb_nlu_work_t *w, const char *t, const uint32_t **ids,
                             const float **vals)
{
    const char *lang = NULL;
    sb_nlu_work_tokenize(w, t, strlen(t), true, NULL);
    if (feat->stem) lang = sb_nlu_langid_detect(li, w, t, strlen(t), NULL);
    if (!feat->strip_accents) sb_nlu_work_tokenize(w, t, strlen(t), false, NULL);
    return sb_nlu_work_featurize(w, feat, lang, ids, vals);
}

/* Featurizes ds into x with rows from the counter map (buckets not in it are unknown), idf
 * weighted and normalized exactly as prediction does. label_map maps ds label indexes to model
 * labels (-1: example skipped). */
static void featurize_set(const sb_nlu_dataset_t *ds, const int *label_map,
                          const sb_nlu_featcfg_t *feat, const counter_t *rowmap, const float *idf,
                          float idf_unk, const sb_nlu_langid_t *li, csr_t *x, sb_nlu_work_t *w)
{
    memset(x, 0, sizeof *x);
    size_t cap = 1024, nnz = 0;
    x->off = sb_xmalloc((ds->n + 1) * sizeof *x->off);
    x->label = sb_xmalloc((ds->n + 1) * sizeof *x->label);
    x->nword = sb_xmalloc((ds->n + 1) * sizeof *x->nword);
    x->rows = sb_xmalloc(cap * sizeof *x->rows);
    x->vals = sb_xmalloc(cap * sizeof *x->vals);
    x->off[0] = 0;
    for (size_t i = 0; i < ds->n; i++) {
        int lab = label_map ? label_map[ds->ex[i].label] : (int)ds->ex[i].label;
        if (lab < 0) continue;
        const uint32_t *ids;
        const float *fv;
        size_t nf = train_features(feat, li, w, ds->ex[i].text, &ids, &fv);
        int32_t *rows = w->frows;
        float *vals = w->fvals;
        for (size_t f = 0; f < nf; f++) {
            const uint32_t *row = counter_find(rowmap, ids[f]);
            rows[f] = row ? (int32_t)*row : -1;
        }
        size_t nwk = w->nwf;
        nf = weigh(rows, vals, nf, idf, idf_unk, &nwk, 0.0, NULL);
        if (nnz + nf > cap) {
            while (nnz + nf > cap)
                cap *= 2;
            x->rows = sb_xrealloc(x->rows, cap * sizeof *x->rows);
            x->vals = sb_xrealloc(x->vals, cap * sizeof *x->vals);
        }
        for (size_t f = 0; f < nf; f++) {
            x->rows[nnz] = (uint32_t)rows[f];
            x->vals[nnz] = vals[f];
            nnz++;
        }
        x->label[x->n] = (uint32_t)lab;
        x->nword[x->n] = (uint32_t)nwk;
        x->n++;
        x->off[x->n] = nnz;
    }
}

/* Logits of text t as prediction computes them (language detected when stems need it). */
static void text_logits(const sb_nlu_model_t *m, const sb_nlu_langid_t *li, sb_nlu_work_t *w,
                        const char *t, float *z)
{
    const char *lang = NULL;
    sb_nlu_work_tokenize(w, t, strlen(t), true, NULL);
    if (m->feat.stem) lang = sb_nlu_langid_detect(li, w, t, strlen(t), NULL);
    if (!m->feat.strip_accents) sb_nlu_work_tokenize(w, t, strlen(t), false, NULL);
    sb_nlu_model_logits(m, w, lang, z);
}

/* The hidden part of one member under training (all NULL when hidden is 0). */
typedef struct hid_part {
    uint32_t H;
    bool all;  /* it reads every feature, not only the word features */
    float *E;  /* nrows * H: feature embeddings */
    float *b1; /* H */
    float *W2; /* H * L: hidden unit -> label logits */
} hid_part_t;

/* The AdaGrad step of the weight rows of a training example's features, for the labels whose
 * gradient z[j] is not negligible (|z[j]| > skip, listed in active): the trainer's hottest
 * loop. */
static void update_rows_sparse(float *W, float *G, uint32_t L, const uint32_t *krow,
                               const float *kval, size_t nk, const float *z, const uint32_t *active,
                               uint32_t na, float lr, float l2)
{
    const float eps = 1e-8f;
    for (size_t f = 0; f < nk; f++) {
        float *wr = W + (size_t)krow[f] * L;
        float *gr = G + (size_t)krow[f] * L;
        float v = kval[f];
        for (uint32_t a = 0; a < na; a++) {
            uint32_t j = active[a];
            float g = v * z[j] + l2 * wr[j];
            gr[j] += g * g;
            wr[j] -= lr * g / (sqrtf(gr[j]) + eps);
        }
    }
}

#if defined(__x86_64__) && defined(__GNUC__)
/* The same step for all labels eight at a time, each lane kept only where |z[j]| > skip: when
 * many labels are active this is several times faster than the scalar loop, and every kept
 * value goes through the same IEEE operations in the same order, so the bits are the same. */
__attribute__((target("avx2"))) static void
update_rows_dense_avx2(float *W, float *G, uint32_t L, const uint32_t *krow, const float *kval,
                       size_t nk, const float *z, float lr, float l2, float skip)
{
    const __m256 vl2 = _mm256_set1_ps(l2), vlr = _mm256_set1_ps(lr);
    const __m256 veps = _mm256_set1_ps(1e-8f), vskip = _mm256_set1_ps(skip);
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    uint32_t L8 = L & ~7u;
    for (size_t f = 0; f < nk; f++) {
        float *wr = W + (size_t)krow[f] * L;
        float *gr = G + (size_t)krow[f] * L;
        const float v = kval[f];
        const __m256 vv = _mm256_set1_ps(v);
        for (uint32_t j = 0; j < L8; j += 8) {
            __m256 zj = _mm256_loadu_ps(z + j);
            __m256 act = _mm256_cmp_ps(_mm256_and_ps(zj, absmask), vskip, _CMP_GT_OQ);
            if (_mm256_movemask_ps(act) == 0) continue;
            __m256 w = _mm256_loadu_ps(wr + j), g2 = _mm256_loadu_ps(gr + j);
            __m256 g = _mm256_add_ps(_mm256_mul_ps(vv, zj), _mm256_mul_ps(vl2, w));
            __m256 ng2 = _mm256_add_ps(g2, _mm256_mul_ps(g, g));
            __m256 step =
                _mm256_div_ps(_mm256_mul_ps(vlr, g), _mm256_add_ps(_mm256_sqrt_ps(ng2), veps));
            _mm256_storeu_ps(gr + j, _mm256_blendv_ps(g2, ng2, act));
            _mm256_storeu_ps(wr + j, _mm256_blendv_ps(w, _mm256_sub_ps(w, step), act));
        }
        for (uint32_t j = L8; j < L; j++) {
            if (!(fabsf(z[j]) > skip)) continue;
            float g = v * z[j] + l2 * wr[j];
            gr[j] += g * g;
            wr[j] -= lr * g / (sqrtf(gr[j]) + 1e-8f);
        }
    }
}
#endif

static void update_rows(float *W, float *G, uint32_t L, const uint32_t *krow, const float *kval,
                        size_t nk, const float *z, const uint32_t *active, uint32_t na, float lr,
                        float l2, float skip)
{
#if defined(__x86_64__) && defined(__GNUC__)
    /* dense when at least a sixth of the labels are active: early in training, where the
     * scalar loop spends most of its time; well-trained examples keep the short list */
    if (na * 6 >= L && __builtin_cpu_supports("avx2")) {
        update_rows_dense_avx2(W, G, L, krow, kval, nk, z, lr, l2, skip);
        return;
    }
#else
    (void)skip;
#endif
    update_rows_sparse(W, G, L, krow, kval, nk, z, active, na, lr, l2);
}

/* Trains one softmax model on x from zero weights with AdaGrad: epochs over a permutation
 * drawn from seed, L2 on the rows a step touches, optional feature dropout, out-of-scope rows
 * (label L) pulled towards the uniform distribution. Writes W[nrows * L] and bias[L]. With a
 * hidden part, the logits also get W2 · relu(b1 + Σ v·E[row]) (a small hidden layer beside
 * the linear one, trained jointly; E starts random, W2 at zero). */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
__attribute__((target_clones("avx2", "default")))
#endif
static void
train_member(const csr_t *x, uint32_t L, size_t nrows, const sb_nlu_train_opts_t *o, uint64_t seed,
             float *W, float *bias, hid_part_t *hp)
{
    size_t nw = nrows * L;
    memset(W, 0, nw * sizeof *W);
    memset(bias, 0, L * sizeof *bias);
    float *G = sb_xcalloc(nw ? nw : 1, sizeof *G);
    float *Gb = sb_xcalloc(L, sizeof *Gb);
    float *z = sb_xmalloc(L * sizeof *z);
    uint32_t *perm = sb_xmalloc((x->n ? x->n : 1) * sizeof *perm);
    uint32_t *active = sb_xmalloc(L * sizeof *active);
    size_t maxf = 1;
    for (size_t i = 0; i < x->n; i++) {
        perm[i] = (uint32_t)i;
        if (x->off[i + 1] - x->off[i] > maxf) maxf = x->off[i + 1] - x->off[i];
    }
    uint32_t *krow = sb_xmalloc(maxf * sizeof *krow);
    float *kval = sb_xmalloc(maxf * sizeof *kval);
    uint64_t rng = seed;
    const uint32_t H = hp ? hp->H : 0;
    float *GE = NULL, *Gb1 = NULL, *GW2 = NULL, *h = NULL, *gh = NULL;
    if (H) {
        size_t ne = nrows * H;
        GE = sb_xcalloc(ne ? ne : 1, sizeof *GE);
        Gb1 = sb_xcalloc(H, sizeof *Gb1);
        GW2 = sb_xcalloc((size_t)H * L, sizeof *GW2);
        h = sb_xmalloc(H * sizeof *h);
        gh = sb_xmalloc(H * sizeof *gh);
        memset(hp->b1, 0, H * sizeof *hp->b1);
        memset(hp->W2, 0, (size_t)H * L * sizeof *hp->W2);
        /* small random embeddings: the inputs are L2-normalized, so a row scale of ~1
         * gives hidden pre-activations of order one */
        float a = o->hidden_init > 0 ? o->hidden_init : 0.5f;
        for (size_t q = 0; q < ne; q++) {
            double u = (double)(rng_next(&rng) >> 11) / 9007199254740992.0;
            hp->E[q] = (float)((2.0 * u - 1.0) * a);
        }
    }
    const float lr = o->lr, l2 = o->l2, eps = 1e-8f;
    const float skip = 1e-4f; /* gradients below it are skipped (see below) */
    const float hlr = o->hidden_lr > 0 ? o->hidden_lr : lr;
    const float drop = o->dropout > 0 && o->dropout < 0.9f ? o->dropout : 0.0f;
    const uint64_t drop_cut = (uint64_t)((double)drop * 18446744073709551615.0);
    const float keep_scale = 1.0f / (1.0f - drop);
    const float ow = o->oos_weight > 0 ? o->oos_weight : 1.0f, u = 1.0f / (float)L;
    for (uint32_t ep = 0; ep < o->epochs; ep++) {
        shuffle(perm, x->n, &rng);
        double loss = 0;
        for (size_t k = 0; k < x->n; k++) {
            size_t i = perm[k];
            uint32_t y = x->label[i];
            size_t nk = 0, nkw = 0;
            if (k + 1 < x->n) {
                /* the weights are larger than the caches: the next example's rows are
                 * fetched while this one is computed */
                size_t i2 = perm[k + 1];
                for (size_t f = x->off[i2]; f < x->off[i2 + 1]; f++) {
                    const char *row = (const char *)(W + (size_t)x->rows[f] * L);
                    const char *grow = (const char *)(G + (size_t)x->rows[f] * L);
                    for (size_t b = 0; b < (size_t)L * sizeof *W; b += 64) {
                        __builtin_prefetch(row + b);
                        __builtin_prefetch(grow + b);
                    }
                }
            }
            for (size_t f = x->off[i]; f < x->off[i + 1]; f++) {
                if (drop > 0 && rng_next(&rng) < drop_cut) continue;
                krow[nk] = x->rows[f];
                kval[nk] = drop > 0 ? x->vals[f] * keep_scale : x->vals[f];
                nk++;
                if ((H && hp->all) || f < x->off[i] + x->nword[i]) nkw = nk;
            }
            memcpy(z, bias, L * sizeof *z);
            for (size_t f = 0; f < nk; f++) {
                const float *wr = W + (size_t)krow[f] * L;
                float c = kval[f];
                for (uint32_t j = 0; j < L; j++)
                    z[j] += c * wr[j];
            }
            if (H) {
                memcpy(h, hp->b1, H * sizeof *h);
                for (size_t f = 0; f < nkw; f++) {
                    const float *er = hp->E + (size_t)krow[f] * H;
                    float c = kval[f];
                    for (uint32_t q = 0; q < H; q++)
                        h[q] += c * er[q];
                }
                for (uint32_t q = 0; q < H; q++) {
                    if (h[q] <= 0) {
                        h[q] = 0;
                        continue;
                    }
                    const float *w2 = hp->W2 + (size_t)q * L;
                    float c = h[q];
                    for (uint32_t j = 0; j < L; j++)
                        z[j] += c * w2[j];
                }
            }
            nlu_softmax(z, L, 1.0f);
            if (y < L) {
                loss += -log((double)z[y] + 1e-12);
                z[y] -= 1.0f; /* gradient of the loss w.r.t. the logits */
            } else {
                /* cross-entropy to the uniform distribution, weighted */
                for (uint32_t j = 0; j < L; j++) {
                    loss += -log((double)z[j] + 1e-12) / L;
                    z[j] = ow * (z[j] - u);
                }
            }
            /* labels whose gradient is negligible are skipped: most of them, once trained */
            uint32_t na = 0;
            for (uint32_t j = 0; j < L; j++)
                if (fabsf(z[j]) > skip) active[na++] = j;
            if (H) {
                /* back through W2 (before it moves), then W2's own step */
                for (uint32_t q = 0; q < H; q++) {
                    gh[q] = 0;
                    if (h[q] <= 0) continue;
                    float *w2 = hp->W2 + (size_t)q * L;
                    float *g2 = GW2 + (size_t)q * L;
                    float s = 0, hq = h[q];
                    for (uint32_t a = 0; a < na; a++) {
                        uint32_t j = active[a];
                        s += z[j] * w2[j];
                        float g = hq * z[j] + l2 * w2[j];
                        g2[j] += g * g;
                        w2[j] -= hlr * g / (sqrtf(g2[j]) + eps);
                    }
                    gh[q] = s;
                    Gb1[q] += s * s;
                    hp->b1[q] -= hlr * s / (sqrtf(Gb1[q]) + eps);
                }
                /* every unit of the rows a step touches (inactive ones only decay), so
                 * that the loop vectorizes */
                for (size_t f = 0; f < nkw; f++) {
                    float *restrict er = hp->E + (size_t)krow[f] * H;
                    float *restrict gr = GE + (size_t)krow[f] * H;
                    float v = kval[f];
                    for (uint32_t q = 0; q < H; q++) {
                        float g = v * gh[q] + l2 * er[q];
                        gr[q] += g * g;
                        er[q] -= hlr * g / (sqrtf(gr[q]) + eps);
                    }
                }
            }
            for (uint32_t a = 0; a < na; a++) {
                uint32_t j = active[a];
                float g = z[j];
                Gb[j] += g * g;
                bias[j] -= lr * g / (sqrtf(Gb[j]) + eps);
            }
            update_rows(W, G, L, krow, kval, nk, z, active, na, lr, l2, skip);
        }
        if (o->verbose)
            fprintf(stderr, "epoch %u loss %.4f\n", ep + 1, loss / (double)(x->n ? x->n : 1));
    }
    free(G);
    free(Gb);
    free(z);
    free(perm);
    free(active);
    free(krow);
    free(kval);
    free(GE);
    free(Gb1);
    free(GW2);
    free(h);
    free(gh);
}

/* A key of the lower-cased ASCII word s for a counter_t. */
static uint32_t vocab_key(const char *s, size_t n)
{
    char low[64];
    if (n > sizeof low) n = sizeof low;
    for (size_t i = 0; i < n; i++)
        low[i] = (char)tolower((unsigned char)s[i]);
    return nlu_mix32(sb_nlu_hash(low, n, 0x76u));
}

static bool vocab_known(void *ctx, const char *w, size_t n)
{
    return counter_find((const counter_t *)ctx, vocab_key(w, n)) != NULL;
}

/* Tokenizes t as prediction will (accents stripped for language id, then as the model
 * wants), leaving the tokens in w. */
static void tokenize_like_model(const sb_nlu_featcfg_t *feat, sb_nlu_work_t *w, const char *t)
{
    sb_nlu_work_tokenize(w, t, strlen(t), feat->strip_accents, NULL);
}

/* Builds m's example memory from ds (examples whose label is not a model label are left
 * out): each example's distinct word uni/bigram rows, binary tf · idf, unit length, inverted
 * by row. Rows in more than max(20, n/100) examples are not indexed: they say little about
 * which examples are close and would make every lookup long (on BANKING77, n/30 → n/100
 * costs 0.04 points of validation accuracy and a quarter of the memory's time). */
static void knn_build(sb_nlu_model_t *m, const sb_nlu_dataset_t *ds, const sb_nlu_train_opts_t *o,
                      sb_nlu_work_t *w)
{
    if (o->knn_weight <= 0 || o->knn_k == 0 || ds->n == 0 || m->nrows == 0) return;
    const size_t n = ds->n;
    size_t cap = 4096, nnz = 0;
    uint32_t *er = sb_xmalloc(cap * sizeof *er);
    size_t *eoff = sb_xmalloc((n + 1) * sizeof *eoff);
    uint32_t *df = sb_xcalloc(m->nrows, sizeof *df);
    int32_t *tmp = NULL;
    size_t tmp_cap = 0;
    eoff[0] = 0;
    for (size_t i = 0; i < n; i++) {
        tokenize_like_model(&m->feat, w, ds->ex[i].text);
        uint32_t *b;
        size_t nb = nlu_word_buckets(w, &m->feat, &b), k = 0;
        if (tmp_cap < nb) {
            tmp_cap = nb * 2;
            tmp = sb_xrealloc(tmp, tmp_cap * sizeof *tmp);
        }
        for (size_t q = 0; q < nb; q++) {
            int64_t r = lookup_row(m, b[q]);
            if (r >= 0) tmp[k++] = (int32_t)r;
        }
        qsort(tmp, k, sizeof *tmp, cmp_i32);
        for (size_t q = 0; q < k; q++) {
            if (q > 0 && tmp[q] == tmp[q - 1]) continue;
            if (nnz == cap) {
                cap *= 2;
                er = sb_xrealloc(er, cap * sizeof *er);
            }
            er[nnz++] = (uint32_t)tmp[q];
            df[tmp[q]]++;
        }
        eoff[i + 1] = nnz;
    }
    uint32_t dfcap = (uint32_t)(n / 100 > 20 ? n / 100 : 20);
    uint32_t nkeys = 0;
    for (uint32_t r = 0; r < m->nrows; r++)
        if (df[r] > 0 && df[r] <= dfcap) nkeys++;
    m->knn_nkeys = nkeys;
    m->knn_rows = sb_xmalloc((nkeys ? nkeys : 1) * sizeof *m->knn_rows);
    m->knn_idf = sb_xmalloc((nkeys ? nkeys : 1) * sizeof *m->knn_idf);
    m->knn_off = sb_xcalloc(nkeys + 1, sizeof *m->knn_off);
    for (uint32_t r = 0, k = 0; r < m->nrows; r++)
        if (df[r] > 0 && df[r] <= dfcap) {
            m->knn_rows[k] = r;
            m->knn_idf[k] = (float)(log(((double)n + 1.0) / ((double)df[r] + 1.0)) + 1.0);
            k++;
        }
    knn_build_slots(m);
    for (size_t q = 0; q < nnz; q++)
        if (m->knn_slot[er[q]] >= 0) m->knn_off[m->knn_slot[er[q]] + 1]++;
    for (uint32_t k = 0; k < nkeys; k++)
        m->knn_off[k + 1] += m->knn_off[k];
    m->knn_npost = m->knn_off[nkeys];
    m->knn_ex = sb_xmalloc((m->knn_npost ? m->knn_npost : 1) * sizeof *m->knn_ex);
    m->knn_val = sb_xmalloc((m->knn_npost ? m->knn_npost : 1) * sizeof *m->knn_val);
    m->knn_label = sb_xmalloc(n * sizeof *m->knn_label);
    uint32_t *fill = sb_xmalloc((nkeys ? nkeys : 1) * sizeof *fill);
    memcpy(fill, m->knn_off, (nkeys ? nkeys : 1) * sizeof *fill);
    for (size_t i = 0; i < n; i++) {
        m->knn_label[i] = ds->ex[i].label;
        double ss = 0;
        for (size_t q = eoff[i]; q < eoff[i + 1]; q++) {
            int32_t k = m->knn_slot[er[q]];
            if (k >= 0) ss += (double)m->knn_idf[k] * m->knn_idf[k];
        }
        float inv = ss > 0 ? (float)(1.0 / sqrt(ss)) : 0.0f;
        for (size_t q = eoff[i]; q < eoff[i + 1]; q++) {
            int32_t k = m->knn_slot[er[q]];
            if (k < 0) continue;
            m->knn_ex[fill[k]] = (uint32_t)i;
            m->knn_val[fill[k]] = m->knn_idf[k] * inv;
            fill[k]++;
        }
    }
    m->knn_n = (uint32_t)n;
    m->knn_k = o->knn_k;
    m->knn_weight = o->knn_weight;
    free(fill);
    free(er);
    free(eoff);
    free(df);
    free(tmp);
}

/* int8 with one scale per row: q = round(w / scale), scale = max |w| / 127. */
static void quantize_rows(const float *w, size_t rows, uint32_t cols, int8_t *q, float *scale);

/* New int8 rows and scales for the float rows w (rows × cols). */
static void quantize_new(const float *w, size_t rows, uint32_t cols, int8_t **q, float **scale)
{
    *scale = sb_xmalloc((rows ? rows : 1) * sizeof **scale);
    size_t n = rows * cols;
    *q = sb_xmalloc(n ? n : 1);
    quantize_rows(w, rows, cols, *q, *scale);
}

static void quantize_rows(const float *w, size_t rows, uint32_t cols, int8_t *q, float *scale)
{
    for (size_t r = 0; r < rows; r++) {
        float mx = 0;
        for (uint32_t j = 0; j < cols; j++)
            mx = fmaxf(mx, fabsf(w[r * cols + j]));
        float s = mx > 0 ? mx / 127.0f : 1.0f;
        scale[r] = s;
        for (uint32_t j = 0; j < cols; j++) {
            long v = lrintf(w[r * cols + j] / s);
            if (v > 127) v = 127;
            if (v < -127) v = -127;
            q[r * cols + j] = (int8_t)v;
        }
    }
}

typedef struct wfreq {
    uint64_t key;
    uint32_t count;
} wfreq_t;

static int cmp_wfreq(const void *a, const void *b)
{
    const wfreq_t *x = a, *y = b;
    if (x->count != y->count) return x->count > y->count ? -1 : 1;
    return x->key < y->key ? -1 : x->key > y->key;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* The word sums (see struct sb_nlu_model) of the most frequent words of the training sets, at
 * most max(1024, rows / 4) of them: Σ value · idf · W[row] over each word's char n-grams and
 * the squared norm those n-grams add, computed from the float weights W, exactly as weigh()
 * and the accumulation treat them one by one. Needs m's feature configuration, idf and rows
 * (rowmap: bucket → row); leaves float sums in m->sumf (quantized by the caller). */
static void sums_build(sb_nlu_model_t *m, const float *W, const counter_t *rowmap,
                       const sb_nlu_dataset_t *const *sets, size_t nsets, sb_nlu_work_t *w)
{
    const uint32_t L = m->nlabels;
    if (m->feat.char_max == 0 || m->feat.char_max < m->feat.char_min) return;
    counter_t wc;
    counter_init(&wc, 1u << 12);
    for (size_t d = 0; d < nsets; d++)
        for (size_t i = 0; sets[d] && i < sets[d]->n; i++) {
            tokenize_like_model(&m->feat, w, sets[d]->ex[i].text);
            for (size_t t = 0; t < w->ntoks; t++) {
                uint64_t key = nlu_word_key(&w->toks[t]);
                /* (a word hashing to the empty mark simply keeps its n-grams) */
                if (w->toks[t].kind == SB_NLU_TOK_WORD && key != COUNTER_EMPTY)
                    (*counter_slot(&wc, key))++;
            }
        }
    if (wc.n == 0) goto done;
    wfreq_t *fr = sb_xmalloc((size_t)wc.n * sizeof *fr);
    size_t n = 0;
    for (uint32_t i = 0; i <= wc.mask; i++)
        if (wc.keys[i] != COUNTER_EMPTY) fr[n++] = (wfreq_t){wc.keys[i], wc.vals[i]};
    qsort(fr, n, sizeof *fr, cmp_wfreq);
    size_t cap = m->nrows / 4 > 1024 ? m->nrows / 4 : 1024;
    if (n > cap) n = cap;
    m->nsums = (uint32_t)n;
    m->sum_keys = sb_xmalloc(n * sizeof *m->sum_keys);
    for (size_t i = 0; i < n; i++)
        m->sum_keys[i] = fr[i].key;
    free(fr);
    qsort(m->sum_keys, n, sizeof *m->sum_keys, cmp_u64);
    sums_build_map(m);
    m->sum_ss = sb_xcalloc(n, sizeof *m->sum_ss);
    m->sumf = sb_xcalloc(n * L, sizeof *m->sumf);
    bool *done = sb_xcalloc(n, sizeof *done);
    for (size_t d = 0; d < nsets; d++)
        for (size_t i = 0; sets[d] && i < sets[d]->n; i++) {
            tokenize_like_model(&m->feat, w, sets[d]->ex[i].text);
            for (size_t t = 0; t < w->ntoks; t++) {
                const sb_nlu_token_t *tok = &w->toks[t];
                if (tok->kind != SB_NLU_TOK_WORD) continue;
                int32_t s = find_sum(m, nlu_word_key(tok));
                if (s < 0 || done[s]) continue;
                done[s] = true;
                nlu_work_char_features(w, tok, &m->feat);
                double ss = 0;
                float *agg = m->sumf + (size_t)s * L;
                for (size_t f = 0; f < w->nf; f++) {
                    const uint32_t *row = counter_find(rowmap, w->fids[f]);
                    float v = w->fvals[f];
                    if (m->idf) v *= row ? m->idf[*row] : m->idf_unk;
                    ss += (double)v * v;
                    if (!row) continue;
                    const float *wr = W + (size_t)*row * L;
                    for (uint32_t j = 0; j < L; j++)
                        agg[j] += v * wr[j];
                }
                m->sum_ss[s] = (float)ss;
            }
        }
    free(done);
done:
    counter_free(&wc);
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
    float *W = NULL, *z = NULL, *vlog = NULL, *kdv = NULL, *Eall = NULL, *b1all = NULL,
          *W2all = NULL;
    uint32_t *keys = NULL;
    int *vmap = NULL;
    scored_t *sc = NULL;
    const sb_nlu_featcfg_t *feat = &opts->feat;
    float *idf = NULL;
    sb_nlu_langid_t *li = NULL;
    sb_nlu_dataset_t aug = {0};

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
    if (feat->stem && sb_nlu_langid_create(&li, NULL) != SB_OK) {
        /* without fingerprints the word lists still pick each example's stemmer */
    }

    /* the linear part (and the hidden layer) learn from fit: the examples plus, with
     * --augment, copies whose words are replaced by WordNet synonyms; the memory keeps train */
    const sb_nlu_dataset_t *fit = train;
    if (opts->augment > 0) {
        uint64_t rng = opts->seed ^ 0x6a09e667f3bcc909ull;
        char buf[8192];
        /* synonyms are drawn among the words of the examples: WordNet's senses are broad
         * ("in" → "inch"), the training data's own words keep the copies in the domain */
        counter_t vocab = {0};
        counter_init(&vocab, 1u << 14);
        for (size_t i = 0; i < train->n; i++)
            for (const char *q = train->ex[i].text; *q;) {
                if (!isalpha((unsigned char)*q)) {
                    q++;
                    continue;
                }
                const char *b = q;
                while (isalpha((unsigned char)*q))
                    q++;
                (*counter_slot(&vocab, vocab_key(b, (size_t)(q - b))))++;
            }
        for (size_t i = 0; i < train->n; i++) {
            const char *t = train->ex[i].text;
            if (sb_nlu_dataset_add(&aug, t, strlen(t), train->labels[train->ex[i].label]) != SB_OK)
                break;
        }
        for (uint32_t c = 0; c < opts->augment; c++)
            for (size_t i = 0; i < train->n; i++)
                if (nlu_wordnet_augment(train->ex[i].text, opts->augment_p, &rng, buf, sizeof buf,
                                        vocab_known, &vocab) > 0 &&
                    sb_nlu_dataset_add(&aug, buf, strlen(buf), train->labels[train->ex[i].label]) !=
                        SB_OK)
                    break;
        fit = &aug;
        counter_free(&vocab);
    }
    /* 1. count buckets: in how many examples each appears */
    counter_init(&counts, 1u << 16);
    for (size_t i = 0; i < fit->n; i++) {
        const char *t = fit->ex[i].text;
        const uint32_t *ids;
        const float *vals;
        size_t nf = train_features(feat, li, w, t, &ids, &vals);
        for (size_t f = 0; f < nf; f++)
            (*counter_slot(&counts, ids[f]))++;
    }
    /* 2. rows: buckets with count >= min_count, in bucket order */
    size_t nkeys = 0;
    keys = sb_xmalloc(((size_t)counts.n + 1) * sizeof *keys);
    for (uint32_t i = 0; i <= counts.mask; i++)
        if (counts.keys[i] != COUNTER_EMPTY && counts.vals[i] >= opts->min_count)
            keys[nkeys++] = (uint32_t)counts.keys[i];
    qsort(keys, nkeys, sizeof *keys, cmp_u32);
    if (nkeys > SB_NLU_MAX_ROWS) {
        nlu_errf(err, errlen, "too many features (%zu); raise min_count", nkeys);
        rc = SB_E_TOO_LARGE;
        goto done;
    }
    /* idf = log((N + 1) / (count + 1)) + 1, counted over feature occurrences */
    float idf_unk = (float)(log((double)fit->n + 1.0) + 1.0);
    if (feat->idf) {
        idf = sb_xmalloc((nkeys ? nkeys : 1) * sizeof *idf);
        for (size_t r = 0; r < nkeys; r++) {
            double c = *counter_find(&counts, keys[r]);
            idf[r] = (float)(log(((double)fit->n + 1.0) / (c + 1.0)) + 1.0);
            if (idf[r] < 0.1f) idf[r] = 0.1f;
        }
    }
    counter_init(&rowmap, pow2_at_least((uint64_t)nkeys * 2 + 2));
    for (size_t r = 0; r < nkeys; r++)
        *counter_slot(&rowmap, keys[r]) = (uint32_t)r;
    counter_free(&counts);
    memset(&counts, 0, sizeof counts);
    featurize_set(fit, NULL, feat, &rowmap, idf, idf_unk, li, &x, w);
    if (opts->oos_train && opts->oos_train->n > 0) {
        /* out-of-scope examples get the label L: "no intent", a uniform target */
        int *omap = sb_xmalloc(opts->oos_train->nlabels * sizeof *omap);
        for (size_t j = 0; j < opts->oos_train->nlabels; j++)
            omap[j] = (int)L;
        featurize_set(opts->oos_train, omap, feat, &rowmap, idf, idf_unk, li, &xo, w);
        free(omap);
        csr_append(&x, &xo);
    }

    /* 3. AdaGrad, once per ensemble member; the members' weights are averaged, which for a
     * linear model is averaging their logits: one model file, no cost at prediction */
    size_t nw = nkeys * L;
    W = sb_xcalloc(nw ? nw : 1, sizeof *W);
    z = sb_xmalloc(L * sizeof *z);
    float bias[SB_NLU_MAX_LABELS] = {0};
    uint32_t members = opts->ensemble > 0 ? opts->ensemble : 1;
    /* the members' hidden layers side by side: concatenating them, with W2 divided by the
     * member count, averages their logits exactly like averaging the linear weights does */
    /* a hidden layer needs data: with the automatic choice, small sets train without it */
    const uint32_t Hm =
        opts->hidden_auto && train->n < (size_t)HIDDEN_MIN_PER_INTENT * L ? 0 : opts->hidden;
    const uint32_t Ht = Hm * members;
    if (Ht) {
        Eall = sb_xcalloc(nkeys > 0 ? nkeys * Ht : 1, sizeof *Eall);
        b1all = sb_xcalloc(Ht, sizeof *b1all);
        W2all = sb_xcalloc((size_t)Ht * L, sizeof *W2all);
    }
    {
        float *Wk = members > 1 ? sb_xmalloc((nw ? nw : 1) * sizeof *Wk) : W;
        float bk[SB_NLU_MAX_LABELS];
        hid_part_t hp = {.H = Hm, .all = opts->hidden_chars};
        if (Hm) {
            hp.E = sb_xmalloc((nkeys > 0 ? nkeys * Hm : 1) * sizeof *hp.E);
            hp.b1 = sb_xmalloc(Hm * sizeof *hp.b1);
            hp.W2 = sb_xmalloc((size_t)Hm * L * sizeof *hp.W2);
        }
        for (uint32_t k = 0; k < members; k++) {
            train_member(&x, L, nkeys, opts, opts->seed + k * 0x9e3779b97f4a7c15ull, Wk, bk,
                         Hm ? &hp : NULL);
            if (members > 1)
                for (size_t q = 0; q < nw; q++)
                    W[q] += Wk[q] / (float)members;
            for (uint32_t j = 0; j < L; j++)
                bias[j] += bk[j] / (float)members;
            for (size_t r = 0; Hm && r < nkeys; r++)
                memcpy(Eall + r * Ht + (size_t)k * Hm, hp.E + r * Hm, Hm * sizeof *hp.E);
            for (uint32_t q = 0; q < Hm; q++) {
                b1all[k * Hm + q] = hp.b1[q];
                for (uint32_t j = 0; j < L; j++)
                    W2all[((size_t)k * Hm + q) * L + j] = hp.W2[(size_t)q * L + j] / (float)members;
            }
        }
        if (Wk != W) free(Wk);
        free(hp.E);
        free(hp.b1);
        free(hp.W2);
    }

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
    m->idf = idf;
    idf = NULL;
    m->idf_unk = feat->idf ? idf_unk : 1.0f;
    m->hidden = Ht;
    m->hidden_all = Ht && opts->hidden_chars;
    /* (a hidden layer that reads the char n-grams needs them one by one: no sums then) */
    if (opts->word_sums && !m->hidden_all) {
        const sb_nlu_dataset_t *sets[] = {train, opts->oos_train};
        sums_build(m, W, &rowmap, sets, 2, w);
    }
    m->quant = opts->quantize;
    if (m->quant) {
        quantize_new(W, nkeys, L, &m->wq, &m->scale);
        free(W);
        W = NULL;
        if (m->nsums) {
            quantize_new(m->sumf, m->nsums, L, &m->sumq, &m->sum_scale);
            free(m->sumf);
            m->sumf = NULL;
        }
    } else {
        m->wf = W;
        W = NULL;
    }
    if (m->hidden) {
        const uint32_t H = m->hidden;
        m->b1 = b1all;
        b1all = NULL;
        m->w2 = W2all;
        W2all = NULL;
        /* embeddings are kept for the rows the hidden layer reads: the word features' or,
         * with hidden_chars, every row */
        bool *reads = sb_xcalloc(nkeys ? nkeys : 1, sizeof *reads);
        for (size_t i = 0; i < x.n; i++)
            for (size_t f = x.off[i]; f < (m->hidden_all ? x.off[i + 1] : x.off[i] + x.nword[i]);
                 f++)
                reads[x.rows[f]] = true;
        uint32_t ner = 0;
        for (size_t r = 0; r < nkeys; r++)
            ner += reads[r];
        m->ne_rows = ner;
        m->e_rows = sb_xmalloc((ner ? ner : 1) * sizeof *m->e_rows);
        float *Ew = sb_xmalloc((ner ? (size_t)ner * H : 1) * sizeof *Ew);
        for (size_t r = 0, k = 0; r < nkeys; r++)
            if (reads[r]) {
                m->e_rows[k] = (uint32_t)r;
                memcpy(Ew + k * H, Eall + r * H, H * sizeof *Ew);
                k++;
            }
        free(reads);
        if (m->quant) {
            quantize_new(Ew, ner, H, &m->eq, &m->escale);
            free(Ew);
        } else {
            m->ef = Ew;
        }
        e_build_slots(m);
    }
    build_table(m);
    knn_build(m, train, opts, w);

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
        size_t no = opts->oos_val && nv > 0 ? opts->oos_val->n : 0;
        /* logits of the in-scope rows, then of the out-of-scope rows (gold = L) */
        vlog = sb_xmalloc((nv + no ? nv + no : 1) * L * sizeof *vlog);
        kdv = sb_xmalloc((nv + no ? nv + no : 1) * L * sizeof *kdv);
        uint32_t *gold = sb_xmalloc((nv + no ? nv + no : 1) * sizeof *gold);
        size_t k = 0, correct = 0;
        for (size_t i = 0; i < opts->val->n; i++) {
            int lab = vmap[opts->val->ex[i].label];
            if (lab < 0) continue;
            text_logits(m, li, w, opts->val->ex[i].text, vlog + k * L);
            if (!knn_vote(m, w, kdv + k * L)) kdv[k * L] = NAN;
            gold[k] = (uint32_t)lab;
            uint32_t am = 0;
            for (uint32_t j = 1; j < L; j++)
                if (vlog[k * L + j] > vlog[k * L + am]) am = j;
            if (am == (uint32_t)lab) correct++;
            k++;
        }
        for (size_t i = 0; i < no; i++) {
            text_logits(m, li, w, opts->oos_val->ex[i].text, vlog + k * L);
            if (!knn_vote(m, w, kdv + k * L)) kdv[k * L] = NAN;
            gold[k++] = L;
        }
        if (nv > 0) {
            val_acc = (float)correct / (float)nv;
            if (opts->calibrate) m->temperature = fit_temperature(vlog, gold, nv, L);
        }
        n_in = nv;
        n_oos = no;
        sc = sb_xmalloc((n_in + n_oos ? n_in + n_oos : 1) * sizeof *sc);
        /* The example memory's share of the vote is chosen here too (0 drops the memory): it
         * helps where intents are told apart by near-paraphrases and may blur the line between
         * in-scope and out-of-scope questions. The trained share stays unless validation is clearly
         * (KNN_TOLERANCE) better with another one, because a few hundred validation rows cannot
         * tell shares a few tenths of a percent apart and the memory helps on most sets of
         * paraphrases. */
        float kgrid[] = {opts->knn_weight, 0.0f, 0.15f, 0.3f, 0.45f};
        size_t nk = m->knn_n && opts->calibrate ? sizeof kgrid / sizeof kgrid[0] : 1;
        float best_sm = -1, best_t = m->temperature, best_th = m->threshold;
        float best_a = m->knn_n ? m->knn_weight : 0.0f;
        float kept_sm = -1, kept_t = best_t, kept_th = best_th;
        for (size_t kg = 0; kg < nk; kg++) {
            if (kg > 0 && kgrid[kg] == kgrid[0]) continue;
            if (m->knn_n) m->knn_weight = kgrid[kg];
            if (no == 0) {
                /* no out-of-scope validation: accuracy */
                score_rows(m, vlog, kdv, gold, nv, 0, m->temperature, z, sc);
                size_t right = 0;
                for (size_t i = 0; i < nv; i++)
                    right += sc[i].correct == 1;
                float acc = nv ? (float)right / (float)nv : 0;
                if (opts->verbose)
                    fprintf(stderr, "memory share %.2f: validation accuracy %.4f\n",
                            (double)m->knn_weight, (double)acc);
                if (kg == 0) kept_sm = acc;
                if (acc > best_sm + 1e-6f) {
                    best_sm = acc;
                    best_a = m->knn_weight;
                }
                continue;
            }
            /* The temperature changes which messages look unsure (a low one looks only at the
             * two best intents, a higher one at the whole distribution), so with out-of-scope
             * validation it is chosen together with the threshold, for the best objective. */
            static const float grid[] = {0.0f, 0.5f, 0.75f, 1.0f, 1.25f, 1.5f, 2.0f, 3.0f};
            for (size_t g = 0; g < sizeof grid / sizeof grid[0]; g++) {
                float t = grid[g] > 0 ? grid[g] : m->temperature;
                if (!opts->calibrate && g > 0) break;
                float ob, sm;
                score_rows(m, vlog, kdv, gold, nv, no, t, z, sc);
                float th = choose_threshold(sc, n_in, n_oos, &ob, &sm);
                if (opts->verbose)
                    fprintf(stderr,
                            "memory share %.2f temperature %.2f: threshold %.4f objective %.4f "
                            "smoothed %.4f\n",
                            (double)m->knn_weight, (double)t, (double)th, (double)ob, (double)sm);
                if (kg == 0 && sm > kept_sm + 1e-6f) {
                    kept_sm = sm;
                    kept_t = t;
                    kept_th = th;
                }
                if (sm > best_sm + 1e-6f) {
                    best_sm = sm;
                    best_t = t;
                    best_th = th;
                    best_a = m->knn_weight;
                }
            }
        }
        if (m->knn_n && nk > 1 && kept_sm >= best_sm - KNN_TOLERANCE) {
            best_a = kgrid[0];
            best_t = kept_t;
            best_th = kept_th;
        }
        if (m->knn_n) m->knn_weight = best_a;
        if (no > 0) {
            /* ~100 out-of-scope questions make the best cut a noisy estimate: the threshold
             * is the median of the cuts chosen on bootstrap resamples of the validation rows
             * (bagging), which moves much less from one seed or sample to the next */
            m->temperature = best_t;
            score_rows(m, vlog, kdv, gold, nv, no, best_t, z, sc);
            m->threshold = bagged_threshold(sc, n_in, n_oos, opts->seed, best_th);
            objective = objective_at(sc, n_in, n_oos, m->threshold);
            if (opts->verbose)
                fprintf(stderr,
                        "temperature %.2f: best cut %.4f, bagged threshold %.4f, objective %.4f\n",
                        (double)best_t, (double)best_th, (double)m->threshold, (double)objective);
        }
        if (m->knn_n && m->knn_weight <= 0) knn_drop(m);
        free(gold);
    }
    finish_version(m);

    if (report) {
        report->examples = x.n - (fit->n - train->n); /* the synonym copies not counted */
        report->labels = L;
        report->rows = m->nrows;
        report->hidden = m->hidden;
        report->temperature = m->temperature;
        report->threshold = m->threshold;
        report->val_accuracy = val_acc;
        report->val_objective = objective;
        report->knn_weight = m->knn_n ? m->knn_weight : 0.0f;
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
    free(z);
    free(vlog);
    free(keys);
    free(vmap);
    free(sc);
    free(idf);
    free(kdv);
    free(Eall);
    free(b1all);
    free(W2all);
    sb_nlu_dataset_free(&aug);
    sb_nlu_langid_destroy(li);
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

/* A matrix of n rows × cols: f32 scale[n] + i8 values when quantized, else f32 values. */
static void put_rows(sb_buf_t *b, bool quant, size_t n, size_t cols, const float *scale,
                     const int8_t *q, const float *f)
{
    if (quant) {
        for (size_t i = 0; i < n; i++)
            put_f32(b, scale[i]);
        sb_buf_append(b, q, n * cols);
    } else {
        for (size_t i = 0; i < n * cols; i++)
            put_f32(b, f[i]);
    }
}

static void serialize_body(const sb_nlu_model_t *m, sb_buf_t *b)
{
    sb_buf_append(b, MODEL_MAGIC, 8);
    put_u32(b, MODEL_FORMAT);
    put_u32(b, m->feat.hash_bits);
    put_u32(b, m->feat.char_min);
    put_u32(b, m->feat.char_max);
    put_u32(b, (m->feat.word_bigrams ? 1u : 0u) | (m->feat.strip_accents ? 2u : 0u) |
                   (m->feat.stem ? 4u : 0u) | (m->feat.idf ? 8u : 0u) | (m->hidden_all ? 16u : 0u));
    put_f32(b, m->feat.char_weight);
    put_f32(b, m->feat.bigram_weight);
    put_u32(b, m->nlabels);
    put_u32(b, m->nrows);
    put_u32(b, m->quant ? 1u : 0u);
    put_u32(b, m->hidden);
    put_u32(b, m->ne_rows);
    put_u32(b, m->knn_n);
    put_u32(b, m->knn_nkeys);
    put_u32(b, m->knn_npost);
    put_u32(b, m->knn_k);
    put_f32(b, m->knn_weight);
    put_u32(b, m->nsums);
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
    if (m->feat.idf) {
        put_f32(b, m->idf_unk);
        for (uint32_t r = 0; r < m->nrows; r++)
            put_f32(b, m->idf[r]);
    }
    put_rows(b, m->quant, m->nrows, m->nlabels, m->scale, m->wq, m->wf);
    if (m->hidden) {
        for (uint32_t q = 0; q < m->hidden; q++)
            put_f32(b, m->b1[q]);
        for (size_t i = 0; i < (size_t)m->hidden * m->nlabels; i++)
            put_f32(b, m->w2[i]);
        for (uint32_t k = 0; k < m->ne_rows; k++)
            put_u32(b, m->e_rows[k]);
        put_rows(b, m->quant, m->ne_rows, m->hidden, m->escale, m->eq, m->ef);
    }
    if (m->knn_n) {
        for (uint32_t i = 0; i < m->knn_n; i++)
            put_u32(b, m->knn_label[i]);
        for (uint32_t k = 0; k < m->knn_nkeys; k++)
            put_u32(b, m->knn_rows[k]);
        for (uint32_t k = 0; k < m->knn_nkeys; k++)
            put_f32(b, m->knn_idf[k]);
        for (uint32_t k = 0; k <= m->knn_nkeys; k++)
            put_u32(b, m->knn_off[k]);
        for (uint32_t p = 0; p < m->knn_npost; p++)
            put_u32(b, m->knn_ex[p]);
        for (uint32_t p = 0; p < m->knn_npost; p++)
            put_f32(b, m->knn_val[p]);
    }
    for (uint32_t i = 0; i < m->nsums; i++)
        put_u64(b, m->sum_keys[i]);
    for (uint32_t i = 0; i < m->nsums; i++)
        put_f32(b, m->sum_ss[i]);
    put_rows(b, m->quant, m->nsums, m->nlabels, m->sum_scale, m->sumq, m->sumf);
}

void sb_nlu_model_set_calibration(sb_nlu_model_t *m, float temperature, float threshold)
{
    m->temperature = temperature;
    m->threshold = threshold;
    finish_version(m);
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

/* Reads what put_rows wrote into new arrays (*scale and *q, or *f); false when a value is not
 * finite. The caller has checked that the bytes are there. */
static bool get_rows(rd_t *r, bool quant, size_t n, size_t cols, float **scale, int8_t **q,
                     float **f)
{
    bool finite = true;
    size_t nv = n * cols;
    if (quant) {
        *scale = sb_xmalloc((n ? n : 1) * sizeof **scale);
        for (size_t i = 0; i < n; i++) {
            (*scale)[i] = get_f32(r);
            finite = finite && isfinite((*scale)[i]);
        }
        *q = sb_xmalloc(nv ? nv : 1);
        const uint8_t *src = get_bytes(r, nv);
        if (src) memcpy(*q, src, nv);
    } else {
        *f = sb_xmalloc((nv ? nv : 1) * sizeof **f);
        for (size_t i = 0; i < nv; i++) {
            (*f)[i] = get_f32(r);
            finite = finite && isfinite((*f)[i]);
        }
    }
    return finite;
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
    if (fmt < 1 || fmt > MODEL_FORMAT) {
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
    m->feat.idf = flags & 8u;
    m->hidden_all = flags & 16u;
    m->feat.char_weight = get_f32(&r);
    m->feat.bigram_weight = get_f32(&r);
    uint32_t L = get_u32(&r), R = get_u32(&r), quant = get_u32(&r);
    uint32_t H = fmt >= 2 ? get_u32(&r) : 0;
    uint32_t ER = fmt >= 2 ? get_u32(&r) : 0;
    uint32_t KN = 0, KK = 0, KP = 0, Kk = 0;
    float Kw = 0;
    if (fmt >= 2) {
        KN = get_u32(&r);
        KK = get_u32(&r);
        KP = get_u32(&r);
        Kk = get_u32(&r);
        Kw = get_f32(&r);
    }
    uint32_t NS = fmt >= 3 ? get_u32(&r) : 0;
    m->temperature = get_f32(&r);
    m->threshold = get_f32(&r);
    if (r.bad || m->feat.hash_bits < 16 || m->feat.hash_bits > 30 || m->feat.char_max > 6 ||
        (m->feat.char_max > 0 && (m->feat.char_min < 1 || m->feat.char_min > m->feat.char_max)) ||
        (flags & ~(fmt >= 4 ? 31u : 15u)) || ((flags & 16u) && (H == 0 || NS != 0)) ||
        !isfinite(m->feat.char_weight) || !isfinite(m->feat.bigram_weight) || L == 0 ||
        L > SB_NLU_MAX_LABELS || R > SB_NLU_MAX_ROWS || quant > 1 || H > MAX_HIDDEN || ER > R ||
        (H == 0 && ER != 0) || KN > SB_NLU_MAX_EXAMPLES || KK > R || KP > (uint64_t)KN * 1024 ||
        Kk > 64 || (KN > 0 && Kk == 0) || !(Kw >= 0.0f && Kw <= 1.0f) ||
        !(m->temperature > 0.0f && m->temperature < 1e6f) ||
        !(m->threshold >= 0.0f && m->threshold <= 1.0f) || NS > SB_NLU_MAX_ROWS) {
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
    size_t need = (size_t)L * 4 + (size_t)R * 4 + (quant ? (size_t)R * 4 + nw : nw * 4) +
                  (m->feat.idf ? 4 + (size_t)R * 4 : 0);
    size_t ne = (size_t)ER * H;
    if (H)
        need += (size_t)H * 4 + (size_t)H * L * 4 + (size_t)ER * 4 +
                (quant ? (size_t)ER * 4 + ne : ne * 4);
    if (KN) need += (size_t)KN * 4 + (size_t)KK * 8 + ((size_t)KK + 1) * 4 + (size_t)KP * 8;
    size_t nsw = (size_t)NS * L;
    need += (size_t)NS * 12 + (quant ? (size_t)NS * 4 + nsw : nsw * 4);
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
    m->idf_unk = 1.0f;
    if (m->feat.idf) {
        m->idf_unk = get_f32(&r);
        bool ok = m->idf_unk > 0.0f && m->idf_unk < 1e6f;
        m->idf = sb_xmalloc((R ? R : 1) * sizeof *m->idf);
        for (uint32_t i = 0; i < R; i++) {
            m->idf[i] = get_f32(&r);
            ok = ok && m->idf[i] > 0.0f && m->idf[i] < 1e6f;
        }
        if (!ok) {
            nlu_errf(err, errlen, "model feature weights out of bounds");
            goto done;
        }
    }
    m->quant = quant;
    bool finite = true;
    for (uint32_t j = 0; j < L; j++)
        finite = finite && isfinite(m->bias[j]);
    finite = get_rows(&r, quant, R, L, &m->scale, &m->wq, &m->wf) && finite;
    m->hidden = H;
    if (H) {
        m->b1 = sb_xmalloc(H * sizeof *m->b1);
        for (uint32_t q = 0; q < H; q++) {
            m->b1[q] = get_f32(&r);
            finite = finite && isfinite(m->b1[q]);
        }
        m->w2 = sb_xmalloc((size_t)H * L * sizeof *m->w2);
        for (size_t i = 0; i < (size_t)H * L; i++) {
            m->w2[i] = get_f32(&r);
            finite = finite && isfinite(m->w2[i]);
        }
        m->ne_rows = ER;
        m->e_rows = sb_xmalloc((ER ? ER : 1) * sizeof *m->e_rows);
        bool ok = true;
        for (uint32_t k = 0; k < ER; k++) {
            m->e_rows[k] = get_u32(&r);
            ok = ok && m->e_rows[k] < R && (k == 0 || m->e_rows[k] > m->e_rows[k - 1]);
        }
        if (!ok) {
            nlu_errf(err, errlen, "model hidden layer rows invalid");
            goto done;
        }
        finite = get_rows(&r, quant, ER, H, &m->escale, &m->eq, &m->ef) && finite;
    }
    if (KN) {
        /* every index is checked here so that prediction can trust them */
        bool ok = true;
        m->knn_label = sb_xmalloc((size_t)KN * sizeof *m->knn_label);
        for (uint32_t i = 0; i < KN; i++) {
            m->knn_label[i] = get_u32(&r);
            ok = ok && m->knn_label[i] < L;
        }
        m->knn_rows = sb_xmalloc((KK ? KK : 1) * sizeof *m->knn_rows);
        for (uint32_t k = 0; k < KK; k++) {
            m->knn_rows[k] = get_u32(&r);
            ok = ok && m->knn_rows[k] < R && (k == 0 || m->knn_rows[k] > m->knn_rows[k - 1]);
        }
        m->knn_idf = sb_xmalloc((KK ? KK : 1) * sizeof *m->knn_idf);
        for (uint32_t k = 0; k < KK; k++) {
            m->knn_idf[k] = get_f32(&r);
            ok = ok && m->knn_idf[k] > 0.0f && m->knn_idf[k] < 1e6f;
        }
        m->knn_off = sb_xmalloc(((size_t)KK + 1) * sizeof *m->knn_off);
        for (uint32_t k = 0; k <= KK; k++) {
            m->knn_off[k] = get_u32(&r);
            ok = ok && (k == 0 ? m->knn_off[0] == 0 : m->knn_off[k] >= m->knn_off[k - 1]);
        }
        ok = ok && m->knn_off[KK] == KP;
        m->knn_ex = sb_xmalloc((KP ? KP : 1) * sizeof *m->knn_ex);
        for (uint32_t p = 0; p < KP; p++) {
            m->knn_ex[p] = get_u32(&r);
            ok = ok && m->knn_ex[p] < KN;
        }
        m->knn_val = sb_xmalloc((KP ? KP : 1) * sizeof *m->knn_val);
        for (uint32_t p = 0; p < KP; p++) {
            m->knn_val[p] = get_f32(&r);
            ok = ok && m->knn_val[p] > 0.0f && m->knn_val[p] <= 1.0001f;
        }
        if (!ok) {
            nlu_errf(err, errlen, "model example memory invalid");
            goto done;
        }
        m->knn_n = KN;
        m->knn_nkeys = KK;
        m->knn_npost = KP;
        m->knn_k = Kk;
        m->knn_weight = Kw;
    }
    if (NS) {
        bool ok = true;
        m->sum_keys = sb_xmalloc((size_t)NS * sizeof *m->sum_keys);
        for (uint32_t i = 0; i < NS; i++) {
            uint64_t lo = get_u32(&r);
            m->sum_keys[i] = lo | (uint64_t)get_u32(&r) << 32;
            ok = ok && m->sum_keys[i] != COUNTER_EMPTY &&
                 (i == 0 || m->sum_keys[i] > m->sum_keys[i - 1]);
        }
        m->sum_ss = sb_xmalloc((size_t)NS * sizeof *m->sum_ss);
        for (uint32_t i = 0; i < NS; i++) {
            m->sum_ss[i] = get_f32(&r);
            ok = ok && m->sum_ss[i] >= 0.0f && m->sum_ss[i] < 1e12f;
        }
        finite = get_rows(&r, quant, NS, L, &m->sum_scale, &m->sumq, &m->sumf) && finite;
        if (!ok) {
            nlu_errf(err, errlen, "model word sums invalid");
            goto done;
        }
        m->nsums = NS;
    }
    if (r.bad || !finite) {
        nlu_errf(err, errlen, "model weights invalid");
        goto done;
    }
    build_table(m);
    if (m->nsums) sums_build_map(m);
    if (m->knn_n) knn_build_slots(m);
    if (m->hidden) e_build_slots(m);
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
