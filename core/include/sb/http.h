/* HTTP server: the only home of libuv loop setup and libhttp-parser. One loop on the main
 * thread; keep-alive; header, body and time limits checked before anything is buffered beyond
 * them; routes by method + path prefix, each with its own body limit. A handler may answer
 * later (after work on a pool thread) via sb_http_defer. */
#ifndef SB_HTTP_H
#define SB_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "result.h"

typedef struct sb_http_server sb_http_server_t;
typedef struct sb_http_request sb_http_request_t;

typedef struct sb_http_limits {
    size_t max_header_bytes;     /* all header lines together; 431 beyond */
    size_t max_headers;          /* number of header fields; 431 beyond */
    uint64_t request_timeout_ms; /* whole request must arrive within it; 408 beyond */
    uint64_t idle_timeout_ms;    /* keep-alive idle close */
    size_t max_connections;      /* further accepts are closed at once */
} sb_http_limits_t;

typedef struct sb_http_header {
    const char *name;  /* NUL-terminated, as received */
    const char *value; /* NUL-terminated */
} sb_http_header_t;

/* A parsed request. Everything it points to is owned by the server and valid until
 * sb_http_respond is called for it. Fields are read-only for handlers. */
struct sb_http_request {
    const char *method; /* "GET", "POST", ... */
    const char *path;   /* without the query, not percent-decoded */
    const char *query;  /* after '?', "" when none */
    const char *target; /* the request target as received (path?query) */
    const sb_http_header_t *headers;
    size_t nheaders;
    const uint8_t *body; /* body_len bytes, plus a NUL after them for convenience */
    size_t body_len;
    void *route_ctx; /* the ctx given to sb_http_server_route */
};

/* Case-insensitive header lookup; NULL when absent. */
const char *sb_http_header(const sb_http_request_t *req, const char *name);
/* Finds query parameter name (percent-decoded into buf of size n); false when absent or too
 * long. */
bool sb_http_query_param(const sb_http_request_t *req, const char *name, char *buf, size_t n);

/* A route handler runs on the loop thread. It must call sb_http_respond exactly once, now or
 * later (from a done callback of sb_http_defer). */
typedef void (*sb_http_handler_fn)(sb_http_request_t *req);

/* Creates a server listening on listen ("host:port"); NULL listen = no socket, the loop still
 * runs so that signals and deferred work are handled. Owned by the caller; only the thread
 * that calls sb_http_server_run may touch it afterwards (except sb_http_server_stop). */
SB_MUST_CHECK sb_result_t sb_http_server_create(sb_http_server_t **out, const char *listen,
                                                const sb_http_limits_t *limits);
/* Adds a route: requests whose method equals method (NULL: any) and whose path equals path,
 * or starts with it when path ends in '/', go to handler. Bodies above max_body are answered
 * 413 without calling it. First match wins. */
void sb_http_server_route(sb_http_server_t *srv, const char *method, const char *path,
                          size_t max_body, sb_http_handler_fn handler, void *ctx);
/* Adds /healthz (200 while running), /readyz (200 when ready(ctx) is true, else 503) and
 * /metrics (Prometheus text of the process registry). ready may be NULL (always ready). */
void sb_http_server_ops_routes(sb_http_server_t *srv, bool (*ready)(void *ctx), void *ctx);
/* The bound port (useful with port 0). */
int sb_http_server_port(const sb_http_server_t *srv);
/* Runs the loop until SIGINT/SIGTERM or sb_http_server_stop; closes every handle and returns
 * SB_OK when the loop closed cleanly. */
SB_MUST_CHECK sb_result_t sb_http_server_run(sb_http_server_t *srv);
/* Asks the loop to stop; any thread, async-signal-unsafe. */
void sb_http_server_stop(sb_http_server_t *srv);
void sb_http_server_destroy(sb_http_server_t *srv);

/* Calls fn(ctx) every interval_ms on the loop thread until the server stops. */
void sb_http_server_every(sb_http_server_t *srv, uint64_t interval_ms, void (*fn)(void *ctx),
                          void *ctx);

/* Answers req: status, content type (NULL: none), extra headers as "Name: value" strings
 * (NULL-terminated list or NULL), and body (copied). Loop thread only. */
void sb_http_respond(sb_http_request_t *req, int status, const char *content_type,
                     const char *const *extra_headers, const void *body, size_t len);
/* Shorthand for a small text/plain or JSON answer. */
void sb_http_respond_text(sb_http_request_t *req, int status, const char *text);
void sb_http_respond_json(sb_http_request_t *req, int status, const char *json);

/* Runs work(ctx) on a pool thread (it may block: NATS publish, disk), then done(req, ctx) on
 * the loop thread, which must respond. req stays valid meanwhile even if the client
 * disconnects (then the response is dropped). */
void sb_http_defer(sb_http_request_t *req, void (*work)(void *ctx),
                   void (*done)(sb_http_request_t *req, void *ctx), void *ctx);

#endif
