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

/* The client's address as text ("127.0.0.1", "::1"), NUL-terminated into buf of size n; false
 * when unknown (the connection is gone, or buf is too small). Loop thread (or a pool thread
 * inside sb_http_defer work for its own request). */
bool sb_http_peer(const sb_http_request_t *req, char *buf, size_t n);
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

/* Runs fn(ctx) once on the loop thread, soon. Any thread. Returns false when the server is
 * stopping (fn will not run; ctx stays the caller's). Posts still queued when the server
 * stops run during the stop, before any connection is closed. */
SB_MUST_CHECK bool sb_http_server_post(sb_http_server_t *srv, void (*fn)(void *ctx), void *ctx);

/* ---- Streaming responses (server-sent events, long downloads) ----
 * sb_http_stream_start answers req with the status line and headers now, without a
 * Content-Length (the body ends when the connection closes), and returns a stream the caller
 * writes chunks to later from the loop thread. While streaming, the connection keeps reading
 * so that a client that goes away is noticed at once; whatever the client sends is discarded.
 * on_close(stream, ctx) runs exactly once on the loop thread when the stream is over: the
 * client closed or a write failed, the client fell more than max_queued bytes behind, the
 * server is stopping, or after sb_http_stream_end. It never runs from inside an
 * sb_http_stream_* call, and the stream is freed when it returns: drop every pointer to it
 * there. All of these are loop thread only. */
typedef struct sb_http_stream sb_http_stream_t;
typedef void (*sb_http_stream_close_fn)(sb_http_stream_t *stream, void *ctx);
/* Starts streaming the answer to req (which is answered by this call, as by sb_http_respond).
 * Returns NULL when the client is already gone (on_close is then never called). */
sb_http_stream_t *sb_http_stream_start(sb_http_request_t *req, int status, const char *content_type,
                                       const char *const *extra_headers, size_t max_queued,
                                       sb_http_stream_close_fn on_close, void *ctx);
/* Queues len bytes (copied). SB_E_FULL when the client is more than max_queued bytes behind
 * (the stream is then closed soon), SB_E_UNAVAILABLE when it is already closing. */
SB_MUST_CHECK sb_result_t sb_http_stream_write(sb_http_stream_t *s, const void *data, size_t len);
/* Ends the stream after the queued bytes are sent; on_close follows. Idempotent. */
void sb_http_stream_end(sb_http_stream_t *s);
/* Open streams of the server (for metrics and tests). Loop thread. */
size_t sb_http_server_streams(const sb_http_server_t *srv);

#endif
