/* Tokenizer and feature hashing: the one place where message text becomes numbers.
 *
 * text ─► bound to SB_NLU_MAX_TEXT ─► ASCII fast path (lower-case) or utf8proc (NFKC, case
 * fold, lump look-alike punctuation, strip controls and ignorables, optionally strip accents)
 * ─► tokens: words, numbers, codes, URLs, e-mails, redaction placeholders ("[EMAIL_1]"),
 * emoji and a few emoticons ─► features: word unigrams, word bigrams (with sentence
 * boundaries), char n-grams of "<word>", optional stems, each FNV-1a hashed with a per-kind
 * seed into 2^hash_bits buckets, values L2-normalized. Train and predict share this code, so a
 * model always sees features made the same way. */
#include <stdlib.h>
#include <string.h>
#include <math.h>

#include <libstemmer.h>
#include <utf8proc.h>

#include "nlu_internal.h"
#include "sb/util.h"

const char *const nlu_lang_codes[NLU_NLANGS] = {"en", "nl", "fr", "de", "es"};
static const char *const stemmer_names[NLU_NLANGS] = {"english", "dutch", "french", "german",
                                                      "spanish"};

int nlu_lang_index(const char *code)
{
    if (!code || !code[0] || !code[1]) return -1;
    if (code[2] != '\0' && code[2] != '-' && code[2] != '_') return -1;
    char c0 = (char)(code[0] | 0x20), c1 = (char)(code[1] | 0x20);
    for (int i = 0; i < NLU_NLANGS; i++)
        if (nlu_lang_codes[i][0] == c0 && nlu_lang_codes[i][1] == c1) return i;
    return -1;
}

void nlu_errf(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || errlen == 0) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

bool nlu_tok_is(const sb_nlu_token_t *t, const char *s)
{
    size_t n = strlen(s);
    return t->len == n && memcmp(t->s, s, n) == 0;
}

uint32_t sb_nlu_hash(const void *data, size_t n, uint32_t seed)
{
    const uint8_t *p = data;
    uint32_t h = 2166136261u ^ seed;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 16777619u;
    }
    return h;
}

uint64_t sb_nlu_hash64(const void *data, size_t n, uint64_t seed)
{
    const uint8_t *p = data;
    uint64_t h = 14695981039346656037ull ^ seed;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 1099511628211ull;
    }
    return h;
}

sb_nlu_work_t *sb_nlu_work_create(void)
{
    sb_nlu_work_t *w = sb_xcalloc(1, sizeof *w);
    return w;
}

void sb_nlu_work_destroy(sb_nlu_work_t *w)
{
    if (!w) return;
    nlu_langid_work_free(w);
    for (int i = 0; i < NLU_NLANGS; i++)
        if (w->stemmers[i]) sb_stemmer_delete(w->stemmers[i]);
    free(w->raw);
    free(w->cps);
    free(w->norm);
    free(w->toks);
    free(w->fids);
    free(w->fvals);
    free(w->frows);
    free(w->scores);
    free(w->hidden);
    free(w->wb);
    free(w->knn_sims);
    free(w->knn_touched);
    free(w->knn_kd);
    free(w->sums);
    free(w->sum_vals);
    free(w);
}

float *nlu_work_scores(sb_nlu_work_t *w, size_t n)
{
    if (w->scores_cap < n) {
        w->scores = sb_xrealloc(w->scores, n * sizeof *w->scores);
        w->scores_cap = n;
    }
    return w->scores;
}

float *nlu_work_hidden(sb_nlu_work_t *w, size_t n)
{
    if (w->hidden_cap < 2 * n) {
        w->hidden = sb_xrealloc(w->hidden, 2 * n * sizeof *w->hidden);
        w->hidden_cap = 2 * n;
    }
    return w->hidden;
}

void sb_nlu_featcfg_default(sb_nlu_featcfg_t *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->hash_bits = 22;
    cfg->char_min = 3;
    cfg->char_max = 4;
    cfg->word_bigrams = true;
    cfg->strip_accents = true;
    cfg->stem = false;
    cfg->idf = true;
    cfg->char_weight = 0.5f;
    cfg->bigram_weight = 0.7f;
}

/* ---- normalization ---------------------------------------------------------------------- */

static void norm_reserve(sb_nlu_work_t *w, size_t n)
{
    if (w->norm_cap < n + 1) {
        w->norm_cap = n + 1;
        w->norm = sb_xrealloc(w->norm, w->norm_cap);
    }
}

/* Length of the valid UTF-8 sequence at p (max n bytes), or 0 if invalid. */
static size_t utf8_seq_len(const uint8_t *p, size_t n)
{
    uint8_t c = p[0];
    size_t len;
    uint32_t cp;
    if (c < 0x80) return 1;
    if (c >= 0xc2 && c <= 0xdf) {
        len = 2;
        cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if (len > n) return 0;
    for (size_t i = 1; i < len; i++) {
        if ((p[i] & 0xc0) != 0x80) return 0;
        cp = (cp << 6) | (p[i] & 0x3f);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
        (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return len;
}

/* Normalizes text into w->norm. */
static void normalize(sb_nlu_work_t *w, const char *text, size_t len, bool strip_accents)
{
    if (len > SB_NLU_MAX_TEXT) {
        len = SB_NLU_MAX_TEXT;
        /* do not cut a code point in half */
        while (len > 0 && ((uint8_t)text[len] & 0xc0) == 0x80)
            len--;
    }
    bool ascii = true;
    for (size_t i = 0; i < len; i++)
        if ((uint8_t)text[i] >= 0x80) {
            ascii = false;
            break;
        }
    if (ascii) {
        norm_reserve(w, len);
        for (size_t i = 0; i < len; i++) {
            char c = text[i];
            if (c >= 'A' && c <= 'Z')
                c = (char)(c + 32);
            else if ((uint8_t)c < 0x20 || c == 0x7f)
                c = ' ';
            w->norm[i] = c;
        }
        w->norm[len] = '\0';
        w->norm_len = len;
        return;
    }
    /* Invalid sequences become spaces so utf8proc never rejects the text. */
    if (w->raw_cap < len + 1) {
        w->raw_cap = len + 1;
        w->raw = sb_xrealloc(w->raw, w->raw_cap);
    }
    size_t rn = 0;
    for (size_t i = 0; i < len;) {
        size_t k = utf8_seq_len((const uint8_t *)text + i, len - i);
        if (k == 0) {
            w->raw[rn++] = ' ';
            i++;
        } else {
            memcpy(w->raw + rn, text + i, k);
            rn += k;
            i += k;
        }
    }
    w->raw[rn] = '\0';
    utf8proc_option_t opts = UTF8PROC_STABLE | UTF8PROC_COMPAT | UTF8PROC_COMPOSE |
                             UTF8PROC_CASEFOLD | UTF8PROC_IGNORE | UTF8PROC_STRIPCC | UTF8PROC_LUMP;
    if (strip_accents) opts |= UTF8PROC_STRIPMARK;
    utf8proc_ssize_t n = utf8proc_decompose((const utf8proc_uint8_t *)w->raw, (utf8proc_ssize_t)rn,
                                            w->cps, (utf8proc_ssize_t)w->cps_cap, opts);
    if (n >= 0 && (size_t)n + 1 > w->cps_cap) {
        w->cps_cap = (size_t)n + 1;
        w->cps = sb_xrealloc(w->cps, w->cps_cap * sizeof *w->cps);
        n = utf8proc_decompose((const utf8proc_uint8_t *)w->raw, (utf8proc_ssize_t)rn, w->cps,
                               (utf8proc_ssize_t)w->cps_cap, opts);
    }
    if (n >= 0) n = utf8proc_reencode(w->cps, n, opts);
    if (n < 0) {
        /* cannot happen for valid UTF-8; keep the sanitized text rather than fail */
        norm_reserve(w, rn);
        memcpy(w->norm, w->raw, rn + 1);
        w->norm_len = rn;
        return;
    }
    norm_reserve(w, (size_t)n);
    memcpy(w->norm, w->cps, (size_t)n);
    w->norm[n] = '\0';
    w->norm_len = (size_t)n;
}

const char *sb_nlu_work_normalized(const sb_nlu_work_t *w, size_t *len)
{
    if (len) *len = w->norm_len;
    return w->norm ? w->norm : "";
}

/* ---- tokens ----------------------------------------------------------------------------- */

enum cls { C_SEP, C_ALPHA, C_DIGIT, C_SYM, C_APOS };

/* Class of the code point at p; *cl receives its byte length. */
static enum cls char_class(const char *p, size_t n, size_t *cl)
{
    uint8_t c = (uint8_t)p[0];
    if (c < 0x80) {
        *cl = 1;
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) return C_ALPHA;
        if (c >= '0' && c <= '9') return C_DIGIT;
        if (c == '\'') return C_APOS;
        return C_SEP;
    }
    utf8proc_int32_t cp;
    utf8proc_ssize_t k = utf8proc_iterate((const utf8proc_uint8_t *)p, (utf8proc_ssize_t)n, &cp);
    if (k <= 0) {
        *cl = 1;
        return C_SEP;
    }
    *cl = (size_t)k;
    switch (utf8proc_category(cp)) {
    case UTF8PROC_CATEGORY_LU:
    case UTF8PROC_CATEGORY_LL:
    case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_LO:
    case UTF8PROC_CATEGORY_MN:
    case UTF8PROC_CATEGORY_MC:
    case UTF8PROC_CATEGORY_ME:
        return C_ALPHA;
    case UTF8PROC_CATEGORY_ND:
        return C_DIGIT;
    case UTF8PROC_CATEGORY_SO:
        return C_SYM;
    default:
        return C_SEP;
    }
}

static void push_tok(sb_nlu_work_t *w, const char *s, size_t len, sb_nlu_tok_kind_t kind)
{
    if (w->ntoks == w->toks_cap) {
        w->toks_cap = w->toks_cap ? w->toks_cap * 2 : 64;
        w->toks = sb_xrealloc(w->toks, w->toks_cap * sizeof *w->toks);
    }
    w->toks[w->ntoks++] = (sb_nlu_token_t){.s = s, .len = (uint32_t)len, .kind = kind};
}

static bool is_space_byte(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* "[email_3]" (already case-folded) at p: returns its length and the class token. */
static size_t match_placeholder(const char *p, const char *end, const char **cls)
{
    if (*p != '[') return 0;
    const char *q = p + 1;
    const char *name = q;
    while (q < end && ((*q >= 'a' && *q <= 'z') || *q == '_'))
        q++;
    size_t nlen = (size_t)(q - name);
    if (nlen == 0) return 0;
    while (q < end && *q >= '0' && *q <= '9')
        q++;
    if (q >= end || *q != ']') return 0;
    /* the name part is "email_" etc. when digits followed */
    static const struct {
        const char *name;
        const char *cls;
    } known[] = {{"email", "<email>"}, {"phone", "<phone>"}, {"card", "<card>"},
                 {"iban", "<iban>"},   {"url", "<url>"},     {"name", "<name>"}};
    size_t base = nlen;
    if (base > 0 && name[base - 1] == '_') base--;
    *cls = "<placeholder>";
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (strlen(known[i].name) == base && memcmp(known[i].name, name, base) == 0)
            *cls = known[i].cls;
    return (size_t)(q + 1 - p);
}

static bool starts_with(const char *p, const char *end, const char *s)
{
    size_t n = strlen(s);
    return (size_t)(end - p) >= n && memcmp(p, s, n) == 0;
}

/* ":)", ":-)", ";)", ":d", ":p", "(:" → ":)"; ":(", ":-(", ":[" → ":(" when followed by a
 * space, punctuation or the end. Returns the class token and its byte length in *len. */
static const char *match_emoticon(const char *p, const char *end, size_t *len)
{
    const char *q = p, *r = NULL;
    if (*q == '(' && q + 1 < end && (q[1] == ':' || q[1] == ';')) {
        q += 2;
        r = ":)";
    } else if (*q == ':' || *q == ';') {
        q++;
        if (q < end && *q == '-') q++;
        if (q >= end) return NULL;
        if (*q == ')' || *q == 'd' || *q == ']' || *q == 'p')
            r = ":)";
        else if (*q == '(' || *q == '[')
            r = ":(";
        else
            return NULL;
        q++;
    } else {
        return NULL;
    }
    if (q < end && ((*q >= 'a' && *q <= 'z') || (*q >= '0' && *q <= '9'))) return NULL;
    *len = (size_t)(q - p);
    return r;
}

/* Tokenizes w->norm. */
static void split(sb_nlu_work_t *w)
{
    const char *p = w->norm, *end = w->norm + w->norm_len;
    w->ntoks = 0;
    while (p < end) {
        if (is_space_byte(*p)) {
            p++;
            continue;
        }
        /* whitespace-delimited chunk for URL / e-mail detection */
        const char *ce = p;
        bool at = false;
        while (ce < end && !is_space_byte(*ce)) {
            if (*ce == '@') at = true;
            ce++;
        }
        const char *cls;
        size_t k = match_placeholder(p, end, &cls);
        if (k) {
            push_tok(w, cls, strlen(cls), SB_NLU_TOK_PLACEHOLDER);
            p += k;
            continue;
        }
        if (starts_with(p, ce, "http://") || starts_with(p, ce, "https://") ||
            starts_with(p, ce, "www.")) {
            push_tok(w, "<url>", 5, SB_NLU_TOK_URL);
            p = ce;
            continue;
        }
        if (at) {
            const char *a = memchr(p, '@', (size_t)(ce - p));
            if (a > p && memchr(a, '.', (size_t)(ce - a)) && a + 1 < ce && a[1] != '.') {
                push_tok(w, "<email>", 7, SB_NLU_TOK_EMAIL);
                p = ce;
                continue;
            }
        }
        /* a few ASCII emoticons carry sentiment */
        size_t ek;
        const char *emo = match_emoticon(p, end, &ek);
        if (emo) {
            push_tok(w, emo, 2, SB_NLU_TOK_EMOJI);
            p += ek;
            continue;
        }
        size_t cl;
        enum cls c = char_class(p, (size_t)(end - p), &cl);
        if (c == C_SYM) {
            push_tok(w, p, cl, SB_NLU_TOK_EMOJI);
            p += cl;
            continue;
        }
        if (c != C_ALPHA && c != C_DIGIT) {
            p += cl;
            continue;
        }
        /* a run of letters and digits; '.' or ',' between digits stay inside a number */
        const char *s = p;
        size_t ndig = 0, nalpha = 0, lead_digits_end = 0;
        bool digits_then_alpha = true; /* shape [0-9]+[a-z]+ */
        bool seen_alpha = false;
        while (p < end) {
            c = char_class(p, (size_t)(end - p), &cl);
            if (c == C_DIGIT) {
                if (seen_alpha) digits_then_alpha = false;
                ndig++;
                if (!seen_alpha) lead_digits_end = (size_t)(p + cl - s);
            } else if (c == C_ALPHA) {
                seen_alpha = true;
                nalpha++;
            } else if ((*p == '.' || *p == ',') && ndig > 0 && !seen_alpha && p + 1 < end &&
                       p[1] >= '0' && p[1] <= '9') {
                /* 12.50, 1,000 */
            } else {
                break;
            }
            p += cl;
        }
        size_t len = (size_t)(p - s);
        if (nalpha == 0) {
            push_tok(w, "<num>", 5, SB_NLU_TOK_NUMBER);
        } else if (ndig == 0) {
            push_tok(w, s, len, SB_NLU_TOK_WORD);
        } else if (digits_then_alpha && lead_digits_end > 0) {
            /* "10am", "3rd": a number and a word */
            push_tok(w, "<num>", 5, SB_NLU_TOK_NUMBER);
            push_tok(w, s + lead_digits_end, len - lead_digits_end, SB_NLU_TOK_WORD);
        } else if (ndig >= 3) {
            push_tok(w, "<code>", 6, SB_NLU_TOK_CODE);
        } else {
            push_tok(w, s, len, SB_NLU_TOK_WORD);
        }
    }
}

size_t sb_nlu_work_tokenize(sb_nlu_work_t *w, const char *text, size_t len, bool strip_accents,
                            const sb_nlu_token_t **toks)
{
    normalize(w, text ? text : "", text ? len : 0, strip_accents);
    split(w);
    if (toks) *toks = w->toks;
    return w->ntoks;
}

/* ---- features --------------------------------------------------------------------------- */

enum {
    SEED_WORD = 0x57u,
    SEED_BIGRAM = 0x42u,
    SEED_CHAR = 0x43u,
    SEED_STEM = 0x53u,
    SEED_WSUM = 0x5355u
};

/* Bucket ids keep the low hash_bits bits of a feature's hash. */
static uint32_t bucket_mask(const sb_nlu_featcfg_t *cfg)
{
    return cfg->hash_bits >= 32 ? 0xffffffffu : ((1u << cfg->hash_bits) - 1u);
}

static void push_feat(sb_nlu_work_t *w, uint32_t h, float v, uint32_t mask)
{
    if (w->nf == w->fcap) {
        w->fcap = w->fcap ? w->fcap * 2 : 256;
        w->fids = sb_xrealloc(w->fids, w->fcap * sizeof *w->fids);
        w->fvals = sb_xrealloc(w->fvals, w->fcap * sizeof *w->fvals);
        w->frows = sb_xrealloc(w->frows, w->fcap * sizeof *w->frows);
    }
    w->fids[w->nf] = nlu_mix32(h) & mask;
    w->fvals[w->nf] = v;
    w->nf++;
}

/* Char n-grams of "<word>" counted in code points (none when cfg has no n-gram range). */
static void char_ngrams(sb_nlu_work_t *w, const sb_nlu_token_t *t, const sb_nlu_featcfg_t *cfg,
                        uint32_t mask)
{
    enum { MAXCP = 64 };
    char buf[4 * MAXCP + 2];
    uint32_t off[MAXCP + 3]; /* byte offset of each code point in buf, plus the end */
    if (t->len > 4 * MAXCP || cfg->char_max == 0 || cfg->char_max < cfg->char_min) return;
    size_t bl = 0, ncp = 0;
    buf[bl] = '<';
    off[ncp++] = (uint32_t)bl++;
    for (size_t i = 0; i < t->len && ncp < MAXCP + 1;) {
        off[ncp++] = (uint32_t)bl;
        size_t k = 1;
        uint8_t c = (uint8_t)t->s[i];
        if (c >= 0xf0)
            k = 4;
        else if (c >= 0xe0)
            k = 3;
        else if (c >= 0xc0)
            k = 2;
        if (i + k > t->len) k = t->len - i;
        memcpy(buf + bl, t->s + i, k);
        bl += k;
        i += k;
    }
    off[ncp++] = (uint32_t)bl;
    buf[bl++] = '>';
    off[ncp] = (uint32_t)bl; /* end sentinel */
    for (size_t n = cfg->char_min; n <= cfg->char_max; n++) {
        if (n > ncp) break;
        for (size_t i = 0; i + n <= ncp; i++) {
            uint32_t a = off[i], b = off[i + n];
            push_feat(w, sb_nlu_hash(buf + a, b - a, SEED_CHAR), cfg->char_weight, mask);
        }
    }
}

static struct sb_stemmer *stemmer_for(sb_nlu_work_t *w, const char *lang)
{
    int li = nlu_lang_index(lang);
    if (li < 0) return NULL;
    if (!w->stemmer_tried[li]) {
        w->stemmer_tried[li] = true;
        w->stemmers[li] = sb_stemmer_new(stemmer_names[li], "UTF_8");
    }
    return w->stemmers[li];
}

size_t nlu_word_buckets(sb_nlu_work_t *w, const sb_nlu_featcfg_t *cfg, uint32_t **out)
{
    uint32_t mask = bucket_mask(cfg);
    size_t need = 2 * w->ntoks + 2;
    if (w->wb_cap < need) {
        w->wb_cap = need;
        w->wb = sb_xrealloc(w->wb, need * sizeof *w->wb);
    }
    size_t n = 0;
    uint32_t prev = sb_nlu_hash("<s>", 3, SEED_WORD);
    for (size_t i = 0; i < w->ntoks; i++) {
        const sb_nlu_token_t *t = &w->toks[i];
        uint32_t h = sb_nlu_hash(t->s, t->len, SEED_WORD);
        w->wb[n++] = nlu_mix32(h) & mask;
        if (cfg->word_bigrams) {
            uint32_t pair[2] = {prev, h};
            w->wb[n++] = nlu_mix32(sb_nlu_hash(pair, sizeof pair, SEED_BIGRAM)) & mask;
        }
        prev = h;
    }
    if (cfg->word_bigrams && w->ntoks > 0) {
        uint32_t pair[2] = {prev, sb_nlu_hash("</s>", 4, SEED_WORD)};
        w->wb[n++] = nlu_mix32(sb_nlu_hash(pair, sizeof pair, SEED_BIGRAM)) & mask;
    }
    *out = w->wb;
    return n;
}

uint64_t nlu_word_key(const sb_nlu_token_t *t)
{
    return sb_nlu_hash64(t->s, t->len, SEED_WSUM);
}

void nlu_work_char_features(sb_nlu_work_t *w, const sb_nlu_token_t *t, const sb_nlu_featcfg_t *cfg)
{
    uint32_t mask = bucket_mask(cfg);
    w->nf = 0;
    char_ngrams(w, t, cfg, mask);
}

static void push_sum(sb_nlu_work_t *w, int32_t s)
{
    if (w->nsums == w->sums_cap) {
        w->sums_cap = w->sums_cap ? w->sums_cap * 2 : 64;
        w->sums = sb_xrealloc(w->sums, w->sums_cap * sizeof *w->sums);
        w->sum_vals = sb_xrealloc(w->sum_vals, w->sums_cap * sizeof *w->sum_vals);
    }
    w->sums[w->nsums++] = s; /* its value, the message's norm, is set by the model */
}

/* The features of the tokens; with find_sum, a word the model has a char n-gram sum for goes
 * to w->sums instead of its n-grams, and the values are left raw (the model normalizes). */
static size_t featurize(sb_nlu_work_t *w, const sb_nlu_featcfg_t *cfg, const char *lang,
                        nlu_find_sum_fn find_sum, const void *ctx, const uint32_t **ids,
                        const float **vals)
{
    uint32_t mask = bucket_mask(cfg);
    w->nf = 0;
    w->nsums = 0;
    struct sb_stemmer *st = cfg->stem ? stemmer_for(w, lang) : NULL;
    uint32_t prev = sb_nlu_hash("<s>", 3, SEED_WORD);
    /* word features first (the hidden layer reads only those: w->nwf of them) */
    for (size_t i = 0; i < w->ntoks; i++) {
        const sb_nlu_token_t *t = &w->toks[i];
        uint32_t h = sb_nlu_hash(t->s, t->len, SEED_WORD);
        push_feat(w, h, 1.0f, mask);
        if (cfg->word_bigrams) {
            uint32_t pair[2] = {prev, h};
            push_feat(w, sb_nlu_hash(pair, sizeof pair, SEED_BIGRAM), cfg->bigram_weight, mask);
        }
        prev = h;
    }
    if (cfg->word_bigrams && w->ntoks > 0) {
        uint32_t pair[2] = {prev, sb_nlu_hash("</s>", 4, SEED_WORD)};
        push_feat(w, sb_nlu_hash(pair, sizeof pair, SEED_BIGRAM), cfg->bigram_weight, mask);
    }
    w->nwf = w->nf;
    for (size_t i = 0; i < w->ntoks; i++) {
        const sb_nlu_token_t *t = &w->toks[i];
        if (t->kind != SB_NLU_TOK_WORD) continue;
        int32_t sum = find_sum ? find_sum(ctx, nlu_word_key(t)) : -1;
        if (sum >= 0)
            push_sum(w, sum);
        else
            char_ngrams(w, t, cfg, mask);
        if (st) {
            const sb_symbol *s = sb_stemmer_stem(st, (const sb_symbol *)t->s, (int)t->len);
            int sl = sb_stemmer_length(st);
            if (s && sl > 0 && ((uint32_t)sl != t->len || memcmp(s, t->s, (size_t)sl) != 0))
                push_feat(w, sb_nlu_hash(s, (size_t)sl, SEED_STEM), 1.0f, mask);
        }
    }
    double ss = 0;
    for (size_t i = 0; i < w->nf && !find_sum; i++)
        ss += (double)w->fvals[i] * w->fvals[i];
    if (ss > 0) {
        float inv = (float)(1.0 / sqrt(ss));
        for (size_t i = 0; i < w->nf; i++)
            w->fvals[i] *= inv;
    }
    *ids = w->fids;
    *vals = w->fvals;
    return w->nf;
}

size_t sb_nlu_work_featurize(sb_nlu_work_t *w, const sb_nlu_featcfg_t *cfg, const char *lang,
                             const uint32_t **ids, const float **vals)
{
    return featurize(w, cfg, lang, NULL, NULL, ids, vals);
}

size_t nlu_work_featurize_summed(sb_nlu_work_t *w, const sb_nlu_featcfg_t *cfg, const char *lang,
                                 nlu_find_sum_fn find_sum, const void *ctx, const uint32_t **ids,
                                 const float **vals)
{
    return featurize(w, cfg, lang, find_sum, ctx, ids, vals);
}
