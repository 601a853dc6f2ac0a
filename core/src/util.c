/* Shared helpers every module links: the aborting allocator, clocks, a growable byte buffer,
 * a bounded whole-file reader and a host:port parser. No dependency beyond libc. */
#include "sb/util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static _Noreturn void oom(size_t n)
{
    /* No allocation here: the heap is what just failed. */
    char msg[96];
    int len = snprintf(msg, sizeof msg, "fatal: out of memory allocating %zu bytes\n", n);
    if (len > 0) {
        ssize_t w = write(STDERR_FILENO, msg, (size_t)len);
        (void)w;
    }
    abort();
}

void *sb_xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) oom(n);
    return p;
}

void *sb_xcalloc(size_t count, size_t n)
{
    void *p = calloc(count ? count : 1, n ? n : 1);
    if (!p) oom(count * n);
    return p;
}

void *sb_xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q) oom(n);
    return q;
}

char *sb_xstrdup(const char *s)
{
    return sb_xstrndup(s, strlen(s));
}

char *sb_xstrndup(const char *s, size_t n)
{
    size_t len = strnlen(s, n);
    char *p = sb_xmalloc(len + 1);
    memcpy(p, s, len);
    p[len] = '\0';
    return p;
}

static char *xvasprintf(const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n < 0) n = 0; /* encoding error: return an empty string rather than garbage */
    char *p = sb_xmalloc((size_t)n + 1);
    if (n == 0)
        p[0] = '\0';
    else
        vsnprintf(p, (size_t)n + 1, fmt, ap);
    return p;
}

char *sb_xasprintf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *p = xvasprintf(fmt, ap);
    va_end(ap);
    return p;
}

int64_t sb_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

uint64_t sb_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Ensures room for n more bytes plus a NUL, so data is always a valid C string. */
static void buf_reserve(sb_buf_t *b, size_t n)
{
    if (n > SIZE_MAX - b->len - 1) oom(SIZE_MAX);
    size_t need = b->len + n + 1;
    if (need <= b->cap) return;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    b->data = sb_xrealloc(b->data, cap);
    b->cap = cap;
}

void sb_buf_append(sb_buf_t *b, const void *p, size_t n)
{
    buf_reserve(b, n);
    if (n) memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
}

void sb_buf_appendf(sb_buf_t *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    va_list ap2;
    va_copy(ap2, ap);
    /* Most lines fit a small stack buffer: format once there, again only when longer. */
    char small[256];
    int n = vsnprintf(small, sizeof small, fmt, ap2);
    va_end(ap2);
    if (n > 0) {
        buf_reserve(b, (size_t)n);
        if ((size_t)n < sizeof small)
            memcpy(b->data + b->len, small, (size_t)n + 1);
        else
            vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
        b->len += (size_t)n;
    } else {
        buf_reserve(b, 0);
        b->data[b->len] = '\0';
    }
    va_end(ap);
}

void sb_buf_free(sb_buf_t *b)
{
    free(b->data);
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}

sb_result_t sb_read_file(const char *path, size_t max, char **out, size_t *out_len)
{
    sb_result_t rc = SB_E_IO;
    char *data = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        rc = (errno == ENOENT || errno == ENOTDIR) ? SB_E_NOT_FOUND : SB_E_IO;
        goto out;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) goto close_fd;
    if (S_ISDIR(st.st_mode)) goto close_fd;
    if (S_ISREG(st.st_mode) && (uint64_t)st.st_size > (uint64_t)max) {
        rc = SB_E_TOO_LARGE;
        goto close_fd;
    }
    /* Read in chunks rather than trusting st_size: pipes and /proc files report 0, and a
     * file may grow while we read it. Never hold more than max + 1 bytes. */
    size_t cap = (S_ISREG(st.st_mode) && st.st_size > 0) ? (size_t)st.st_size + 1 : 4096;
    if (cap > max + 1) cap = max + 1;
    data = sb_xmalloc(cap + 1);
    size_t len = 0;
    for (;;) {
        if (len == cap) {
            if (cap > max) {
                rc = SB_E_TOO_LARGE;
                goto free_data;
            }
            cap = cap > max / 2 ? max + 1 : cap * 2;
            data = sb_xrealloc(data, cap + 1);
        }
        ssize_t r = read(fd, data + len, cap - len);
        if (r < 0) {
            if (errno == EINTR) continue;
            goto free_data;
        }
        if (r == 0) break;
        len += (size_t)r;
    }
    if (len > max) {
        rc = SB_E_TOO_LARGE;
        goto free_data;
    }
    data[len] = '\0';
    *out = data;
    if (out_len) *out_len = len;
    data = NULL;
    rc = SB_OK;
free_data:
    free(data);
close_fd:
    close(fd);
out:
    return rc;
}

sb_result_t sb_parse_hostport(const char *s, char *hostbuf, size_t hostlen, int *port)
{
    if (!s || !hostbuf || hostlen == 0) return SB_E_INVALID;
    const char *host;
    size_t hlen;
    const char *p;
    if (s[0] == '[') {
        const char *end = strchr(s, ']');
        if (!end || end[1] != ':') return SB_E_INVALID;
        host = s + 1;
        hlen = (size_t)(end - host);
        p = end + 2;
    } else {
        const char *colon = strrchr(s, ':');
        if (!colon) return SB_E_INVALID;
        host = s;
        hlen = (size_t)(colon - s);
        /* A bare IPv6 address without brackets is ambiguous. */
        if (memchr(host, ':', hlen)) return SB_E_INVALID;
        p = colon + 1;
    }
    if (hlen == 0 || hlen >= hostlen) return SB_E_INVALID;
    for (size_t i = 0; i < hlen; i++) {
        unsigned char c = (unsigned char)host[i];
        if (c <= ' ' || c == '/' || c == '[' || c == ']' || c >= 0x7f) return SB_E_INVALID;
    }
    if (*p == '\0' || strlen(p) > 5) return SB_E_INVALID;
    long v = 0;
    for (const char *q = p; *q; q++) {
        if (*q < '0' || *q > '9') return SB_E_INVALID;
        v = v * 10 + (*q - '0');
    }
    if (v > 65535) return SB_E_INVALID;
    memcpy(hostbuf, host, hlen);
    hostbuf[hlen] = '\0';
    *port = (int)v;
    return SB_OK;
}

bool sb_utf8_check(const char *s, size_t n, unsigned flags, size_t *chars)
{
    const unsigned char *p = (const unsigned char *)s, *end = p + n;
    size_t count = 0;
    while (p < end) {
        unsigned c = *p;
        size_t len;
        uint32_t cp;
        if (c < 0x80) {
            bool allowed = (c == '\t' && (flags & SB_UTF8_ALLOW_TAB)) ||
                           (c == '\n' && (flags & SB_UTF8_ALLOW_NEWLINE)) ||
                           (c == '\r' && (flags & SB_UTF8_ALLOW_CR));
            if ((c < 0x20 && !allowed) || c == 0x7f) return false;
            len = 1;
            cp = c;
        } else if ((c & 0xe0) == 0xc0) {
            len = 2;
            cp = c & 0x1f;
        } else if ((c & 0xf0) == 0xe0) {
            len = 3;
            cp = c & 0x0f;
        } else if ((c & 0xf8) == 0xf0) {
            len = 4;
            cp = c & 0x07;
        } else {
            return false;
        }
        if ((size_t)(end - p) < len) return false;
        for (size_t i = 1; i < len; i++) {
            if ((p[i] & 0xc0) != 0x80) return false;
            cp = (cp << 6) | (p[i] & 0x3f);
        }
        if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
            cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        p += len;
        count++;
    }
    if (chars) *chars = count;
    return true;
}

void sb_sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}
