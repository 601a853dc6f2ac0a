/* HTTP client: the only home of libcurl. Blocking calls for egress threads, tests and
 * benchmarks; one client per thread, connections kept alive between calls. */
#ifndef SB_HTTPCLIENT_H
#define SB_HTTPCLIENT_H

#include <stddef.h>

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

#endif
