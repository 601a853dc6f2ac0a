/* Logs: one line per event, key=value, with time, level, service and module. Never a message
 * body, a secret or PII: callers log ids (hashes), sizes and outcomes only. Thread-safe. */
#ifndef SB_LOG_H
#define SB_LOG_H

typedef enum sb_log_level { SB_LOG_DEBUG, SB_LOG_INFO, SB_LOG_WARN, SB_LOG_ERROR } sb_log_level_t;

/* Sets the service name printed on every line and the minimum level. Call once at start. */
void sb_log_init(const char *service, sb_log_level_t min_level);
/* Parses "debug", "info", "warn", "error". Returns -1 if unknown. */
int sb_log_level_parse(const char *s);
/* Writes `ts=... level=... service=... module=<module> msg="<fmt...>"` to stderr. fmt should
 * itself be key=value pairs after a short message, e.g. sb_log(SB_LOG_INFO, "bus",
 * "connected url=%s", url). */
void sb_log(sb_log_level_t level, const char *module, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define SB_DEBUG(mod, ...) sb_log(SB_LOG_DEBUG, mod, __VA_ARGS__)
#define SB_INFO(mod, ...) sb_log(SB_LOG_INFO, mod, __VA_ARGS__)
#define SB_WARN(mod, ...) sb_log(SB_LOG_WARN, mod, __VA_ARGS__)
#define SB_ERROR(mod, ...) sb_log(SB_LOG_ERROR, mod, __VA_ARGS__)

/* Broken invariants abort; bad input never does. */
#define SB_REQUIRE(cond)                                                                           \
    do {                                                                                           \
        if (!(cond)) sb__log_abort(__FILE__, __LINE__, #cond);                                     \
    } while (0)
_Noreturn void sb__log_abort(const char *file, int line, const char *what);

#endif
