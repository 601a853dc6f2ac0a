/* Internals shared by the files of sbnlu (not part of its contract): the work area layout,
 * the language table and small helpers. */
#ifndef SB_NLU_INTERNAL_H
#define SB_NLU_INTERNAL_H

#include <stdarg.h>

#include "nlu.h"

/* The languages Switchboard identifies, in a fixed order (index = language id). */
enum { NLU_LANG_EN, NLU_LANG_NL, NLU_LANG_FR, NLU_LANG_DE, NLU_LANG_ES, NLU_NLANGS };
extern const char *const nlu_lang_codes[NLU_NLANGS];
/* Index of an ISO 639-1 code (also accepts "en-GB", "fr_BE"), or -1. */
int nlu_lang_index(const char *code);

struct sb_stemmer;
struct nlu_langid_scratch;

struct sb_nlu_work {
    char *raw; /* sanitized copy of the input (valid UTF-8) */
    size_t raw_cap;
    int32_t *cps; /* utf8proc code point buffer */
    size_t cps_cap;
    char *norm; /* normalized text, NUL-terminated */
    size_t norm_len, norm_cap;
    sb_nlu_token_t *toks;
    size_t ntoks, toks_cap;
    uint32_t *fids; /* features */
    float *fvals;
    int32_t *frows; /* model row of each feature (model.c), -1 when unknown */
    size_t nf, fcap;
    size_t nwf;    /* the first nwf features are word unigrams and bigrams */
    float *scores; /* per-label scratch for prediction */
    size_t scores_cap;
    float *hidden; /* hidden-layer scratch (model.c): 2 * units floats */
    size_t hidden_cap;
    uint32_t *wb; /* word unigram and bigram buckets (nlu_word_buckets) */
    size_t wb_cap;
    float *knn_sims; /* similarity to each remembered example, zero between calls */
    uint32_t *knn_touched;
    size_t knn_cap;
    float *knn_kd; /* neighbour vote per label */
    size_t knn_kd_cap;
    int32_t *sums; /* the model's char n-gram sums of the words (nlu_work_featurize_summed) */
    float *sum_vals;
    size_t nsums, sums_cap;
    struct nlu_langid_scratch *langid_scratch; /* n-gram scratch of langid.c */
    struct sb_stemmer *stemmers[NLU_NLANGS];
    bool stemmer_tried[NLU_NLANGS];
};

/* A word of the WordNet table (wordnet.c): its lemma and the synsets of its first senses. */
typedef struct nlu_wn_entry {
    const char *lemma;
    uint32_t lemma_len;
    uint32_t nids;
    const uint32_t *ids;
} nlu_wn_entry_t;
/* The entry of the n-byte folded English word s (inflections reduced), or NULL. Any thread. */
const nlu_wn_entry_t *nlu_wordnet_lookup(const char *s, size_t n);
/* Copies text into out[cap] with each English word that has synsets replaced, with
 * probability p, by another lemma of one of them for which known (may be NULL) is true (rng:
 * a splitmix64 state). Returns how many words were replaced. */
size_t nlu_wordnet_augment(const char *text, double p, uint64_t *rng, char *out, size_t cap,
                           bool (*known)(void *ctx, const char *w, size_t n), void *ctx);

/* Ensures w->scores holds n floats and returns it. */
float *nlu_work_scores(sb_nlu_work_t *w, size_t n);
/* The buckets of the word unigrams and bigrams (as sb_nlu_work_featurize hashes them) of the
 * last tokenize call: *out (owned by w) receives them, possibly repeated. Returns the count. */
size_t nlu_word_buckets(sb_nlu_work_t *w, const sb_nlu_featcfg_t *cfg, uint32_t **out);
/* The key of a word's char n-gram sum in a model (64-bit hash of the token). */
uint64_t nlu_word_key(const sb_nlu_token_t *t);
/* Replaces w's features with the char n-grams of token t alone (raw values). */
void nlu_work_char_features(sb_nlu_work_t *w, const sb_nlu_token_t *t, const sb_nlu_featcfg_t *cfg);
/* The index of the model's char n-gram sum for word key, or -1. */
typedef int32_t (*nlu_find_sum_fn)(const void *ctx, uint64_t key);
/* sb_nlu_work_featurize, except that a word for which find_sum gives a sum contributes that
 * sum (its index in w->sums, w->nsums of them) instead of its char n-grams, and that the
 * values are left unnormalized: the caller adds the sums' squared norms and normalizes. */
size_t nlu_work_featurize_summed(sb_nlu_work_t *w, const sb_nlu_featcfg_t *cfg, const char *lang,
                                 nlu_find_sum_fn find_sum, const void *ctx, const uint32_t **ids,
                                 const float **vals);
/* Ensures w->hidden holds 2 * n floats and returns it. */
float *nlu_work_hidden(sb_nlu_work_t *w, size_t n);
/* Number of entries loaded from the sentiment lexicon of lang (en, nl, fr; else 0). */
size_t nlu_sentiment_lexicon_size(const char *lang);
/* Frees the language-id scratch of w (langid.c). */
void nlu_langid_work_free(sb_nlu_work_t *w);

/* snprintf into err when err is non-NULL. */
void nlu_errf(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Murmur3 finalizer: spreads FNV's bits before masking to a bucket. */
static inline uint32_t nlu_mix32(uint32_t h)
{
    h ^= h >> 16;
    h *= 0x85ebca6bu;
    h ^= h >> 13;
    h *= 0xc2b2ae35u;
    h ^= h >> 16;
    return h;
}

/* True when token t equals the NUL-terminated string s. */
bool nlu_tok_is(const sb_nlu_token_t *t, const char *s);

/* Softmax of n logits divided by temperature, in place. */
void nlu_softmax(float *z, size_t n, float temperature);

#endif
