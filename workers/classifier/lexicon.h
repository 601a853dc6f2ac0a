/* Word lists (internal to sbnlu): an open-addressing table over a static array of entries.
 * The entries must outlive the table (they are static arrays). */
#ifndef SB_NLU_LEXICON_H
#define SB_NLU_LEXICON_H

#include "nlu_internal.h"

typedef struct nlu_lex_entry {
    const char *word; /* normalized: case-folded, accents stripped */
    float value;      /* sentiment score, or a bit set of languages */
    uint32_t flags;
} nlu_lex_entry_t;

typedef struct nlu_lex {
    const nlu_lex_entry_t **slots;
    uint32_t *hash; /* per slot: the word's hash, so that most probes skip the compare */
    uint32_t *len;  /* per slot: the word's length */
    uint32_t mask;
} nlu_lex_t;

/* The hash nlu_lex_find uses, for callers that look one word up in several tables. */
static inline uint32_t nlu_lex_hash(const char *s, size_t n)
{
    return nlu_mix32(sb_nlu_hash(s, n, 0));
}

/* Builds lx over entries[0..n) (borrowed). Call once (pthread_once) before any lookup. */
void nlu_lex_build(nlu_lex_t *lx, const nlu_lex_entry_t *entries, size_t n);
/* Frees the table (not the entries). */
void nlu_lex_free(nlu_lex_t *lx);
/* The entry of the n-byte word s, or NULL. Any thread after the build. */
const nlu_lex_entry_t *nlu_lex_find(const nlu_lex_t *lx, const char *s, size_t n);
/* The same with h = nlu_lex_hash(s, n) computed by the caller. */
const nlu_lex_entry_t *nlu_lex_find_h(const nlu_lex_t *lx, const char *s, size_t n, uint32_t h);

#endif
