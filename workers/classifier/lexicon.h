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
    uint32_t mask;
} nlu_lex_t;

/* Builds lx over entries[0..n) (borrowed). Call once (pthread_once) before any lookup. */
void nlu_lex_build(nlu_lex_t *lx, const nlu_lex_entry_t *entries, size_t n);
/* The entry of the n-byte word s, or NULL. Any thread after the build. */
const nlu_lex_entry_t *nlu_lex_find(const nlu_lex_t *lx, const char *s, size_t n);

#endif
