/* Logs: every line is built in one buffer and written to stderr with one write(), so lines
 * from concurrent threads never interleave. Format:
 *   ts=2026-11-21T08:00:00.123Z level=info service=router module=bus msg="connected url=..."
 * Callers pass ids, sizes and outcomes only: never a body, a secret or PII. */
#include "sb/log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define LINE_MAX_BYTES 2048

static char service_name[64] = "switchboard";
static atomic_int min_level = SB_LOG_INFO;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

void sb_log_init(const char *service, sb_log_level_t level)
{
    if (service) snprintf(service_name, sizeof service_name, "%s", service);
    atomic_store(&min_level, (int)level);
}

int sb_log_level_parse(const char *s)
{
    if (!s) return -1;
    for (int i = 0; i < 4; i++)
        if (strcmp(s, level_names[i]) == 0) return i;
    return -1;
}

/* Writes the "ts=... level=... service=... module=... msg=\"" prefix; returns its length. */
static size_t format_prefix(char *line, size_t cap, const char *level, const char *module)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    int n = snprintf(line, cap,
                     "ts=%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ level=%s service=%s module=%s msg=\"",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                     ts.tv_nsec / 1000000, level, service_name, module ? module : "-");
    if (n < 0) return 0;
    return (size_t)n < cap ? (size_t)n : cap - 1;
}

/* Finishes a line: escapes quotes/newlines in the message part so one event stays one line,
 * closes the quote, adds '\n' and writes it at once. */
static void emit(char *line, size_t prefix_len, const char *msg)
{
    char out[LINE_MAX_BYTES + 8];
    size_t o = 0;
    memcpy(out, line, prefix_len);
    o = prefix_len;
    for (const char *p = msg; *p && o < LINE_MAX_BYTES - 4; p++) {
        unsigned char c = (unsigned char)*p;
        if (c == '"' || c == '\\') {
            out[o++] = '\\';
            out[o++] = (char)c;
        } else if (c == '\n') {
            out[o++] = '\\';
            out[o++] = 'n';
        } else if (c < 0x20) {
            out[o++] = ' ';
        } else {
            out[o++] = (char)c;
        }
    }
    out[o++] = '"';
    out[o++] = '\n';
    size_t off = 0;
    while (off < o) {
        ssize_t w = write(STDERR_FILENO, out + off, o - off);
        if (w <= 0) break;
        off += (size_t)w;
    }
}

void sb_log(sb_log_level_t level, const char *module, const char *fmt, ...)
{
    if ((int)level < atomic_load(&min_level)) return;
    if ((int)level < 0 || (int)level > SB_LOG_ERROR) level = SB_LOG_ERROR;
    char prefix[256];
    size_t plen = format_prefix(prefix, sizeof prefix, level_names[level], module);
    char msg[LINE_MAX_BYTES];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    emit(prefix, plen, msg);
}

_Noreturn void sb__log_abort(const char *file, int line, const char *what)
{
    char prefix[256];
    size_t plen = format_prefix(prefix, sizeof prefix, "error", "abort");
    char msg[512];
    snprintf(msg, sizeof msg, "invariant failed: %s at %s:%d", what, file, line);
    emit(prefix, plen, msg);
    abort();
}
