/* A tiny immutable string → value table for the word lists of language id and sentiment.
 * Built once from a static array (pthread_once), then read lock-free by any thread. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "lexicon.h"
#include "sb/util.h"

void nlu_lex_build(nlu_lex_t *lx, const nlu_lex_entry_t *entries, size_t n)
{
    uint32_t size = 64;
    while (size < n * 2 + 1)
        size <<= 1;
    lx->mask = size - 1;
    lx->slots = sb_xcalloc(size, sizeof *lx->slots);
    for (size_t i = 0; i < n; i++) {
        const char *w = entries[i].word;
        size_t wl = strlen(w);
        uint32_t h = nlu_mix32(sb_nlu_hash(w, wl, 0)) & lx->mask;
        while (lx->slots[h] && strcmp(lx->slots[h]->word, w) != 0)
            h = (h + 1) & lx->mask;
        /* later duplicates are ignored: the first entry of a word wins */
        if (!lx->slots[h]) lx->slots[h] = &entries[i];
    }
}

const nlu_lex_entry_t *nlu_lex_find(const nlu_lex_t *lx, const char *s, size_t n)
{
    if (!lx->slots || n == 0 || n > 40) return NULL;
    uint32_t h = nlu_mix32(sb_nlu_hash(s, n, 0)) & lx->mask;
    while (lx->slots[h]) {
        const char *w = lx->slots[h]->word;
        if (strncmp(w, s, n) == 0 && w[n] == '\0') return lx->slots[h];
        h = (h + 1) & lx->mask;
    }
    return NULL;
}
