/* HTTP client: the only home of libcurl. Two flavours:
 *  - blocking calls (sb_http_client_*) for tests, benchmarks and tools; one client per
 *    thread, connections kept alive between calls;
 *  - an asynchronous client (sb_http_async_*): libcurl's multi interface driven by
 *    uv_poll/uv_timer handles on a libuv loop that runs on a thread of its own, created here.
 *    Other threads hand work to the loop with sb_http_async_post; requests, timers and their
 *    callbacks then live on the loop thread. Router egress uses it. */
#ifndef SB_HTTPCLIENT_H
#define SB_HTTPCLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "result.h"
#include "util.h"

typedef struct sb_http_client sb_http_client_t;

typedef struct sb_http_client_response {
    long status;        /* 0 when no response arrived */
    sb_buf_t body;      /* NUL-terminated when non-empty; caller frees with sb_buf_free */
    long retry_after_s; /* from Retry-After (seconds form), -1 when absent */
} sb_http_client_response_t;

SB_MUST_CHECK sb_result_t sb_http_client_create(sb_http_client_t **out);
void sb_http_client_destroy(sb_http_client_t *c);

/* Sends one request. headers: NULL-terminated "Name: value" list or NULL. The response body is
 * read up to max_response bytes (SB_E_TOO_LARGE beyond). Transport failures (refused,
 * timeout) return SB_E_UNAVAILABLE / SB_E_TIMEOUT with out->status 0. Any HTTP status is
 * SB_OK: the caller judges it. The caller frees out->body. */
SB_MUST_CHECK sb_result_t sb_http_client_do(sb_http_client_t *c, const char *method,
                                            const char *url, const char *const *headers,
                                            const void *body, size_t len, long timeout_ms,
                                            size_t max_response, sb_http_client_response_t *out);

/* ---- Asynchronous client ---- */

typedef struct sb_http_async sb_http_async_t;

/* One request. Everything is copied by sb_http_async_send. */
typedef struct sb_http_async_request {
    const char *method;
    const char *url;
    const char *const *headers; /* NULL-terminated "Name: value" list, or NULL */
    const void *body;
    size_t len;
    long timeout_ms;     /* whole transfer, connect included; 0 = none */
    size_t max_response; /* response body bound: beyond it SB_E_TOO_LARGE */
} sb_http_async_request_t;

/* The outcome of one request, handed to its done callback. rc: SB_OK when a response arrived
 * (any status; resp filled as by sb_http_client_do), SB_E_TOO_LARGE (resp.status is the
 * status seen), SB_E_TIMEOUT, SB_E_UNAVAILABLE (refused, reset, DNS, or canceled at
 * shutdown), SB_E_INVALID (bad URL). The callback may take resp.body (set it to {0});
 * whatever it leaves is freed after it returns. */
typedef struct sb_http_async_result {
    sb_result_t rc;
    sb_http_client_response_t resp;
    double seconds; /* from the start of the transfer to its end */
} sb_http_async_result_t;

typedef void (*sb_http_async_fn)(void *ctx);
typedef void (*sb_http_async_done_fn)(void *ctx, sb_http_async_result_t *res);

/* Creates the loop and its thread (named name for logs). The caller owns *out and frees it with
 * sb_http_async_destroy. Any thread. */
SB_MUST_CHECK sb_result_t sb_http_async_create(sb_http_async_t **out, const char *name);
/* Queues fn(ctx) to run on the loop thread, in order of posting. Any thread. Returns
 * SB_E_UNAVAILABLE (fn will not run) once sb_http_async_destroy has begun. */
SB_MUST_CHECK sb_result_t sb_http_async_post(sb_http_async_t *a, sb_http_async_fn fn, void *ctx);
/* Loop thread: runs fn(ctx) once after delay_ms. While the client stops, pending and new
 * timers fire at once (fn sees sb_http_async_stopping() true). */
void sb_http_async_after(sb_http_async_t *a, uint64_t delay_ms, sb_http_async_fn fn, void *ctx);
/* Loop thread: starts req; done(ctx, res) runs later on the loop thread exactly once. Returns
 * SB_E_UNAVAILABLE (done is not called) while the client stops, SB_E_INVALID for a bad
 * request, SB_E_INTERNAL when libcurl refuses. */
SB_MUST_CHECK sb_result_t sb_http_async_send(sb_http_async_t *a, const sb_http_async_request_t *req,
                                             sb_http_async_done_fn done, void *ctx);
/* Loop thread: transfers in flight. */
size_t sb_http_async_active(const sb_http_async_t *a);
/* True once sb_http_async_destroy has begun. Any thread. */
bool sb_http_async_stopping(const sb_http_async_t *a);
/* True on the loop thread of a. */
bool sb_http_async_on_loop(const sb_http_async_t *a);
/* Stops and frees: refuses new posts, runs the ones queued, fires pending timers at once,
 * lets transfers in flight finish (each bounded by its timeout_ms), closes every handle and
 * joins the thread. Any thread but the loop's. Safe with NULL. */
void sb_http_async_destroy(sb_http_async_t *a);

#endif
