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
    lx->hash = sb_xcalloc(size, sizeof *lx->hash);
    lx->len = sb_xcalloc(size, sizeof *lx->len);
    for (size_t i = 0; i < n; i++) {
        const char *w = entries[i].word;
        size_t wl = strlen(w);
        uint32_t full = nlu_lex_hash(w, wl), h = full & lx->mask;
        while (lx->slots[h] && strcmp(lx->slots[h]->word, w) != 0)
            h = (h + 1) & lx->mask;
        /* later duplicates are ignored: the first entry of a word wins */
        if (!lx->slots[h]) {
            lx->slots[h] = &entries[i];
            lx->hash[h] = full;
            lx->len[h] = (uint32_t)wl;
        }
    }
}

void nlu_lex_free(nlu_lex_t *lx)
{
    free(lx->slots);
    free(lx->hash);
    free(lx->len);
    memset(lx, 0, sizeof *lx);
}

const nlu_lex_entry_t *nlu_lex_find_h(const nlu_lex_t *lx, const char *s, size_t n, uint32_t full)
{
    if (!lx->slots || n == 0 || n > 40) return NULL;
    uint32_t h = full & lx->mask;
    while (lx->slots[h]) {
        if (lx->hash[h] == full && lx->len[h] == n && memcmp(lx->slots[h]->word, s, n) == 0)
            return lx->slots[h];
        h = (h + 1) & lx->mask;
    }
    return NULL;
}

const nlu_lex_entry_t *nlu_lex_find(const nlu_lex_t *lx, const char *s, size_t n)
{
    if (n == 0 || n > 40) return NULL;
    return nlu_lex_find_h(lx, s, n, nlu_lex_hash(s, n));
}
