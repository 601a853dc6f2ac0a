/* Small shared helpers: the one allocator that aborts on out-of-memory, time, and strings. */
#ifndef SB_UTIL_H
#define SB_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Allocation never fails silently: out of memory aborts the process with a message. */
void *sb_xmalloc(size_t n);
void *sb_xcalloc(size_t count, size_t n);
void *sb_xrealloc(void *p, size_t n);
char *sb_xstrdup(const char *s);
char *sb_xstrndup(const char *s, size_t n);
/* printf into a new heap string; caller frees. */
char *sb_xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Wall clock in milliseconds / seconds since the epoch. Any thread. */
int64_t sb_now_ms(void);
/* Sleeps ms milliseconds (resumes after signals until the time has passed). */
void sb_sleep_ms(long ms);
/* Monotonic clock in nanoseconds, for measuring durations. */
uint64_t sb_mono_ns(void);

/* Growable byte buffer. Zero-initialise, append, free with sb_buf_free. */
typedef struct sb_buf {
    char *data;
    size_t len;
    size_t cap;
} sb_buf_t;
void sb_buf_append(sb_buf_t *b, const void *p, size_t n);
void sb_buf_appendf(sb_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void sb_buf_free(sb_buf_t *b);

/* Text checks shared by every place that accepts text from outside (console replies, answers
 * files, browser messages). Control characters other than those allowed by flags, and DEL,
 * are refused. */
#define SB_UTF8_ALLOW_TAB 1u
#define SB_UTF8_ALLOW_NEWLINE 2u /* '\n' */
#define SB_UTF8_ALLOW_CR 4u      /* '\r' */
/* True when n bytes at s are valid UTF-8 (no overlongs, surrogates or code points above
 * U+10FFFF) with no refused control character; *chars (may be NULL) gets the number of code
 * points. */
bool sb_utf8_check(const char *s, size_t n, unsigned flags, size_t *chars);

/* Reads a whole file up to max bytes into a new NUL-terminated heap buffer. */
#include "result.h"
SB_MUST_CHECK sb_result_t sb_read_file(const char *path, size_t max, char **out, size_t *out_len);

/* Parses "host:port" into its parts. host is written into hostbuf (size hostlen). */
SB_MUST_CHECK sb_result_t sb_parse_hostport(const char *s, char *hostbuf, size_t hostlen,
                                            int *port);

#endif
