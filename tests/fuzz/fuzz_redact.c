/* Fuzz driver for core/src/redact.c: any bytes go to sb_redact, which must either refuse them
 * cleanly (invalid UTF-8, too large) or return a NUL-terminated text in which every
 * placeholder is well-formed and present, and every recorded original came from the input and
 * occurs fewer times in the output than in the input (it was replaced at least once).
 * libFuzzer entry point; replayed over the corpus by replay_main.c in ordinary test runs. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sb/redact.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static size_t count_occurrences(const char *hay, size_t hlen, const char *needle)
{
    size_t n = strlen(needle), c = 0;
    if (n == 0 || n > hlen) return 0;
    for (size_t i = 0; i + n <= hlen; i++)
        if (memcmp(hay + i, needle, n) == 0) c++;
    return c;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (sb_redact_init() != SB_OK) abort();
    sb_redacted_t r;
    sb_result_t rc = sb_redact((const char *)data, size, &r);
    if (rc == SB_E_INVALID || rc == SB_E_TOO_LARGE) return 0;
    if (rc != SB_OK) abort();
    if (r.text == NULL || r.text[r.len] != '\0') abort();
    for (size_t i = 0; i < r.nitems; i++) {
        const char *ph = r.items[i].placeholder, *orig = r.items[i].original;
        size_t pl = strlen(ph);
        if (pl < 5 || ph[0] != '[' || ph[pl - 1] != ']') abort();
        if (count_occurrences(r.text, r.len, ph) == 0) abort();
        if (orig == NULL || orig[0] == '\0') abort();
        /* the original occurs in the input; the output holds fewer copies of it */
        size_t in = count_occurrences((const char *)data, size, orig);
        size_t out = count_occurrences(r.text, r.len, orig);
        if (in == 0 || out >= in) abort();
    }
    sb_redacted_free(&r);
    return 0;
}
