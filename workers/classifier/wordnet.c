/* English word table from WordNet 3.0 (data/wordnet/en.wordnet.tsv, made by
 * scripts/convert-wordnet, compiled in): form → lemma and the synsets of its first senses.
 * Regular inflections are reduced by morphy-style suffix rules against the table. Built once
 * (pthread_once), then read lock-free by any thread. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "lexicon.h"
#include "nlu_internal.h"
#include "sb/util.h"

extern const unsigned char nlu_wordnet_en[];
extern const size_t nlu_wordnet_en_len;

static pthread_once_t wn_once = PTHREAD_ONCE_INIT;
static nlu_lex_t wn_lex;
static nlu_lex_entry_t *wn_entries;
static nlu_wn_entry_t *wn_info; /* wn_info[e.flags] */
static char *wn_text;
static uint32_t *wn_ids;
static uint32_t wn_maxid;
static uint32_t *wn_syn_off; /* wn_maxid + 2: synset id → range of wn_syn */
static const char **wn_syn;  /* the lemmas of each synset */

static void wn_build(void)
{
    size_t len = nlu_wordnet_en_len;
    wn_text = sb_xmalloc(len + 1); /* parsed in place; lives as long as the process */
    memcpy(wn_text, nlu_wordnet_en, len);
    wn_text[len] = '\0';
    size_t lines = 0, nums = 0;
    for (size_t i = 0; i < len; i++) {
        if (wn_text[i] == '\n') lines++;
        if (wn_text[i] == ' ' || wn_text[i] == '\t') nums++;
    }
    wn_entries = sb_xcalloc(lines + 1, sizeof *wn_entries);
    wn_info = sb_xcalloc(lines + 1, sizeof *wn_info);
    wn_ids = sb_xcalloc(nums + 1, sizeof *wn_ids);
    size_t n = 0, ni = 0;
    for (char *p = wn_text, *end = wn_text + len; p < end;) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl) nl = end;
        *nl = '\0';
        char *t1 = strchr(p, '\t'), *t2 = t1 ? strchr(t1 + 1, '\t') : NULL;
        if (*p != '#' && t1 && t2) {
            *t1 = *t2 = '\0';
            nlu_wn_entry_t *e = &wn_info[n];
            e->lemma = t1 + 1;
            e->lemma_len = (uint32_t)strlen(e->lemma);
            e->ids = wn_ids + ni;
            for (char *q = t2 + 1; *q;) {
                char *qe;
                unsigned long v = strtoul(q, &qe, 10);
                if (qe == q) break;
                wn_ids[ni++] = (uint32_t)v;
                e->nids++;
                q = qe;
                while (*q == ' ')
                    q++;
            }
            wn_entries[n].word = p;
            wn_entries[n].flags = (uint32_t)n;
            n++;
        }
        p = nl + 1;
    }
    nlu_lex_build(&wn_lex, wn_entries, n);
    for (size_t i = 0; i < ni; i++)
        if (wn_ids[i] > wn_maxid) wn_maxid = wn_ids[i];
    wn_syn_off = sb_xcalloc((size_t)wn_maxid + 2, sizeof *wn_syn_off);
    wn_syn = sb_xcalloc(ni + 1, sizeof *wn_syn);
    for (int pass = 0; pass < 2; pass++) {
        for (size_t i = 0; i < n; i++) {
            const nlu_wn_entry_t *e = &wn_info[i];
            if (strcmp(e->lemma, wn_entries[i].word) != 0) continue;
            for (uint32_t k = 0; k < e->nids; k++) {
                if (pass == 0)
                    wn_syn_off[e->ids[k] + 1]++;
                else
                    wn_syn[wn_syn_off[e->ids[k]]++] = e->lemma;
            }
        }
        if (pass == 0)
            for (uint32_t k = 0; k <= wn_maxid; k++)
                wn_syn_off[k + 1] += wn_syn_off[k];
        else
            for (uint32_t k = wn_maxid + 1; k > 0; k--)
                wn_syn_off[k] = wn_syn_off[k - 1];
    }
    wn_syn_off[0] = 0;
}

/* Function words and auxiliaries whose WordNet senses are rare nouns (have → harbor, still →
 * silence, will → testament): never replaced. */
static bool is_stopword(const char *s, size_t n)
{
    static const char *const words[] = {
        "about",  "again", "also",   "been",  "being", "could",  "does",   "doing",   "done",
        "from",   "have",  "having", "here",  "into",  "just",   "like",   "made",    "make",
        "many",   "more",  "most",   "much",  "must",  "need",   "only",   "over",    "please",
        "really", "same",  "should", "some",  "still", "such",   "than",   "that",    "them",
        "then",   "there", "these",  "they",  "this",  "those",  "very",   "want",    "well",
        "were",   "what",  "when",   "where", "which", "while",  "will",   "with",    "would",
        "your",   "going", "gone",   "back",  "even",  "ever",   "haven",  "hasn",    "hadn",
        "didn",   "doesn", "wasn",   "aren",  "weren", "wouldn", "couldn", "shouldn", "cannot"};
    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++)
        if (strlen(words[i]) == n && memcmp(words[i], s, n) == 0) return true;
    return false;
}

static uint64_t rnd(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

size_t nlu_wordnet_augment(const char *text, double p, uint64_t *rng, char *out, size_t cap,
                           bool (*known)(void *ctx, const char *w, size_t n), void *ctx)
{
    pthread_once(&wn_once, wn_build);
    size_t o = 0, changed = 0;
    char low[40];
    for (const char *q = text; *q && o + 1 < cap;) {
        if (!((*q >= 'a' && *q <= 'z') || (*q >= 'A' && *q <= 'Z'))) {
            out[o++] = *q++;
            continue;
        }
        const char *b = q;
        while ((*q >= 'a' && *q <= 'z') || (*q >= 'A' && *q <= 'Z'))
            q++;
        size_t n = (size_t)(q - b);
        const char *rep = b;
        size_t rl = n;
        if (n >= 4 && n < sizeof low) {
            for (size_t i = 0; i < n; i++)
                low[i] = (char)(b[i] | 0x20);
            const nlu_wn_entry_t *e = is_stopword(low, n) ? NULL : nlu_wordnet_lookup(low, n);
            if (e && e->nids > 0 && (double)(rnd(rng) >> 11) * 0x1.0p-53 < p) {
                /* a synonym drawn among the other lemmas of the word's synsets (those known
                 * to the caller when it asks) */
                const char *cand[64];
                uint32_t nc = 0;
                for (uint32_t k = 0; k < e->nids; k++)
                    for (uint32_t a = wn_syn_off[e->ids[k]]; a < wn_syn_off[e->ids[k] + 1]; a++) {
                        const char *c = wn_syn[a];
                        if (nc < 64 && strcmp(c, e->lemma) != 0 &&
                            (!known || known(ctx, c, strlen(c))))
                            cand[nc++] = c;
                    }
                if (nc > 0) {
                    rep = cand[rnd(rng) % nc];
                    rl = strlen(rep);
                    changed++;
                }
            }
        }
        if (o + rl + 1 >= cap) break;
        memcpy(out + o, rep, rl);
        o += rl;
    }
    out[o] = '\0';
    return changed;
}

static const nlu_wn_entry_t *find(const char *s, size_t n)
{
    const nlu_lex_entry_t *e = nlu_lex_find(&wn_lex, s, n);
    return e ? &wn_info[e->flags] : NULL;
}

static bool is_vowel(char c)
{
    return c == 'a' || c == 'e' || c == 'i' || c == 'o' || c == 'u';
}

const nlu_wn_entry_t *nlu_wordnet_lookup(const char *s, size_t n)
{
    static const struct {
        const char *suf, *rep;
    } rules[] = {{"ies", "y"},   {"ses", "s"},   {"xes", "x"}, {"zes", "z"}, {"ches", "ch"},
                 {"shes", "sh"}, {"men", "man"}, {"es", "e"},  {"es", ""},   {"s", ""},
                 {"ed", "e"},    {"ed", ""},     {"ing", "e"}, {"ing", ""},  {"er", ""},
                 {"est", ""},    {"er", "e"},    {"est", "e"}};
    pthread_once(&wn_once, wn_build);
    if (n < 2 || n > 32) return NULL;
    const nlu_wn_entry_t *e = find(s, n);
    if (e || n < 4) return e;
    char buf[40];
    for (size_t i = 0; i < sizeof rules / sizeof rules[0]; i++) {
        size_t sl = strlen(rules[i].suf), rl = strlen(rules[i].rep);
        if (n <= sl + 1 || memcmp(s + n - sl, rules[i].suf, sl) != 0) continue;
        size_t bl = n - sl;
        memcpy(buf, s, bl);
        memcpy(buf + bl, rules[i].rep, rl);
        if ((e = find(buf, bl + rl))) return e;
        /* stopped → stop, bigger → big: an undoubled final consonant */
        if (rl == 0 && bl >= 3 && buf[bl - 1] == buf[bl - 2] && !is_vowel(buf[bl - 1]) && sl >= 2 &&
            (e = find(buf, bl - 1)))
            return e;
    }
    return NULL;
}
