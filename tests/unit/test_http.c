/* Unit tests of the HTTP server (core/src/http.c) and client (core/src/httpclient.c) over real
 * loopback sockets, no NATS. Each test starts a server on 127.0.0.1:0 on its own thread, talks
 * to it with raw sockets (for exact bytes: pipelining, limits, malformed input) or with
 * sb_http_client, then stops it and checks that the loop closed cleanly. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sb/http.h"
#include "sb/httpclient.h"
#include "sb/log.h"
#include "sb/metrics.h"
#include "sb/util.h"

/* --- a server on a thread ----------------------------------------------------------------- */

typedef struct fixture {
    sb_http_server_t *srv;
    pthread_t th;
    sb_result_t run_rc;
    int port;
    pthread_t loop_thread;
} fixture_t;

static void *run_thread(void *arg)
{
    fixture_t *f = arg;
    f->loop_thread = pthread_self();
    f->run_rc = sb_http_server_run(f->srv);
    return NULL;
}

static fixture_t *fx_create(const sb_http_limits_t *limits)
{
    fixture_t *f = sb_xcalloc(1, sizeof *f);
    assert_int_equal(sb_http_server_create(&f->srv, "127.0.0.1:0", limits), SB_OK);
    f->port = sb_http_server_port(f->srv);
    assert_true(f->port > 0);
    return f;
}

static void fx_start(fixture_t *f)
{
    f->run_rc = SB_E_INTERNAL;
    assert_int_equal(pthread_create(&f->th, NULL, run_thread, f), 0);
}

static void fx_stop(fixture_t *f)
{
    sb_http_server_stop(f->srv);
    assert_int_equal(pthread_join(f->th, NULL), 0);
    assert_int_equal(f->run_rc, SB_OK);
    sb_http_server_destroy(f->srv);
    free(f);
}

/* --- handlers ----------------------------------------------------------------------------- */

static void h_hello(sb_http_request_t *req)
{
    sb_http_respond_text(req, 200, "hello");
}

static void h_echo(sb_http_request_t *req)
{
    sb_http_respond(req, 200, "application/octet-stream", NULL, req->body, req->body_len);
}

/* Answers with the path and a query parameter, so prefix routing is visible. */
static void h_api(sb_http_request_t *req)
{
    char v[64] = "";
    char out[256];
    if (!sb_http_query_param(req, "q", v, sizeof v)) snprintf(v, sizeof v, "-");
    const char *hdr = sb_http_header(req, "x-test");
    snprintf(out, sizeof out, "%s|%s|%s|%s", req->method, req->path, v, hdr ? hdr : "-");
    sb_http_respond_text(req, 200, out);
}

static void h_retry(sb_http_request_t *req)
{
    const char *extra[] = {"Retry-After: 7", "Bad\r\nInjected: yes", NULL};
    sb_http_respond(req, 503, "text/plain", extra, "busy", 4);
}

static void h_big(sb_http_request_t *req)
{
    char *body = sb_xmalloc(100000);
    memset(body, 'x', 100000);
    sb_http_respond(req, 200, "text/plain", NULL, body, 100000);
    free(body);
}

typedef struct defer_ctx {
    pthread_t worker;
    char answer[32];
} defer_ctx_t;

static void defer_work(void *ctx)
{
    defer_ctx_t *d = ctx;
    d->worker = pthread_self();
    usleep(20000); /* the loop stays free meanwhile */
    snprintf(d->answer, sizeof d->answer, "deferred");
}

static void defer_done(sb_http_request_t *req, void *ctx)
{
    defer_ctx_t *d = ctx;
    sb_http_respond_text(req, 200, d->answer);
}

static void h_defer(sb_http_request_t *req)
{
    sb_http_defer(req, defer_work, defer_done, req->route_ctx);
}

static void add_routes(fixture_t *f, defer_ctx_t *d)
{
    sb_http_server_route(f->srv, "GET", "/hello", 0, h_hello, NULL);
    sb_http_server_route(f->srv, "POST", "/echo", 1024, h_echo, NULL);
    sb_http_server_route(f->srv, NULL, "/api/", 1024, h_api, NULL);
    sb_http_server_route(f->srv, "GET", "/retry", 0, h_retry, NULL);
    sb_http_server_route(f->srv, "GET", "/big", 0, h_big, NULL);
    sb_http_server_route(f->srv, "GET", "/defer", 0, h_defer, d);
}

/* --- a raw client ------------------------------------------------------------------------- */

typedef struct rawconn {
    int fd;
    char buf[262144];
    size_t len;
} rawconn_t;

typedef struct rawresp {
    int status;
    char headers[4096];
    char body[131072];
    size_t body_len;
} rawresp_t;

static rawconn_t *raw_connect(int port)
{
    rawconn_t *c = sb_xcalloc(1, sizeof *c);
    c->fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(c->fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(c->fd, (struct sockaddr *)&sa, sizeof sa), 0);
    return c;
}

static void raw_send(rawconn_t *c, const char *data, size_t n)
{
    while (n > 0) {
        ssize_t w = send(c->fd, data, n, MSG_NOSIGNAL);
        if (w <= 0) return; /* the server may have closed: the response tells */
        data += w;
        n -= (size_t)w;
    }
}

static void raw_sends(rawconn_t *c, const char *s)
{
    raw_send(c, s, strlen(s));
}

/* Reads more bytes (waits up to 5 s). Returns false on EOF/timeout. */
static bool raw_fill(rawconn_t *c)
{
    struct pollfd p = {.fd = c->fd, .events = POLLIN};
    if (poll(&p, 1, 5000) <= 0) return false;
    if (c->len == sizeof c->buf) return false;
    ssize_t r = recv(c->fd, c->buf + c->len, sizeof c->buf - c->len, 0);
    if (r <= 0) return false;
    c->len += (size_t)r;
    return true;
}

/* Reads one response (Content-Length framed). False when the connection ended first. */
static bool raw_read(rawconn_t *c, rawresp_t *out)
{
    memset(out, 0, sizeof *out);
    char *end;
    for (;;) {
        end = memmem(c->buf, c->len, "\r\n\r\n", 4);
        if (end != NULL) break;
        if (!raw_fill(c)) return false;
    }
    size_t hlen = (size_t)(end - c->buf) + 4;
    assert_true(hlen < sizeof out->headers);
    memcpy(out->headers, c->buf, hlen);
    out->headers[hlen] = '\0';
    assert_int_equal(sscanf(out->headers, "HTTP/1.1 %d", &out->status), 1);
    const char *cl = strcasestr(out->headers, "\r\nContent-Length:");
    size_t blen = cl != NULL ? strtoul(cl + 17, NULL, 10) : 0;
    while (c->len < hlen + blen)
        if (!raw_fill(c)) return false;
    assert_true(blen < sizeof out->body);
    memcpy(out->body, c->buf + hlen, blen);
    out->body[blen] = '\0';
    out->body_len = blen;
    memmove(c->buf, c->buf + hlen + blen, c->len - hlen - blen);
    c->len -= hlen + blen;
    return true;
}

/* True when the server closed the connection (EOF within 5 s). */
static bool raw_closed(rawconn_t *c)
{
    for (;;) {
        struct pollfd p = {.fd = c->fd, .events = POLLIN};
        if (poll(&p, 1, 5000) <= 0) return false;
        char tmp[4096];
        ssize_t r = recv(c->fd, tmp, sizeof tmp, 0);
        if (r <= 0) return true;
    }
}

static void raw_close(rawconn_t *c)
{
    close(c->fd);
    free(c);
}

/* --- tests -------------------------------------------------------------------------------- */

static void test_routes_and_errors(void **state)
{
    (void)state;
    fixture_t *f = fx_create(NULL);
    defer_ctx_t d = {0};
    add_routes(f, &d);
    fx_start(f);

    rawconn_t *c = raw_connect(f->port);
    rawresp_t r;
    raw_sends(c, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_true(raw_read(c, &r));
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "hello");
    assert_non_null(strstr(r.headers, "Connection: keep-alive"));

    raw_sends(c, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nabcde");
    assert_true(raw_read(c, &r));
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "abcde");

    raw_sends(c, "PUT /api/v1/items?q=a%20b+c&z=1 HTTP/1.1\r\nHost: x\r\nX-Test: yes\r\n"
                 "Content-Length: 0\r\n\r\n");
    assert_true(raw_read(c, &r));
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "PUT|/api/v1/items|a b c|yes");

    raw_sends(c, "GET /nope HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_true(raw_read(c, &r));
    assert_int_equal(r.status, 404);
    assert_string_equal(r.body, "{\"error\":\"not found\"}");

    raw_sends(c, "DELETE /hello HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_true(raw_read(c, &r));
    assert_int_equal(r.status, 405);

    /* Extra headers are passed through, and one with CR/LF inside is dropped. */
    raw_sends(c, "GET /retry HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_true(raw_read(c, &r));
    assert_int_equal(r.status, 503);
    assert_non_null(strstr(r.headers, "\r\nRetry-After: 7\r\n"));
    assert_null(strstr(r.headers, "Injected"));

    /* HTTP/1.0 without keep-alive: answered, then closed. */
    raw_sends(c, "GET /hello HTTP/1.0\r\n\r\n");
    assert_true(raw_read(c, &r));
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.headers, "Connection: close"));
    assert_true(raw_closed(c));
    raw_close(c);
    fx_stop(f);
}

static void test_keepalive_and_pipelining(void **state)
{
    (void)state;
    fixture_t *f = fx_create(NULL);
    defer_ctx_t d = {0};
    add_routes(f, &d);
    fx_start(f);

    rawconn_t *c = raw_connect(f->port);
    rawresp_t r;
    /* Three requests in one write, the first answered later from the pool: answers must
     * come back in request order. */
    raw_sends(c, "GET /defer HTTP/1.1\r\nHost: x\r\n\r\n"
                 "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\none"
                 "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_true(raw_read(c, &r));
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "deferred");
    assert_true(raw_read(c, &r));
    assert_string_equal(r.body, "one");
    assert_true(raw_read(c, &r));
    assert_string_equal(r.body, "hello");
    /* And the connection is still usable. */
    raw_sends(c, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_true(raw_read(c, &r));
    assert_int_equal(r.status, 200);
    raw_close(c);
    fx_stop(f);
}

static void test_deferred_runs_on_pool_thread(void **state)
{
    (void)state;
    fixture_t *f = fx_create(NULL);
    defer_ctx_t d = {0};
    add_routes(f, &d);
    fx_start(f);

    sb_http_client_t *cl = NULL;
    assert_int_equal(sb_http_client_create(&cl), SB_OK);
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/defer", f->port);
    sb_http_client_response_t resp;
    assert_int_equal(sb_http_client_do(cl, "GET", url, NULL, NULL, 0, 5000, 1024, &resp), SB_OK);
    assert_int_equal(resp.status, 200);
    assert_string_equal(resp.body.data, "deferred");
    sb_buf_free(&resp.body);
    assert_false(pthread_equal(d.worker, f->loop_thread));
    sb_http_client_destroy(cl);
    fx_stop(f);
}

static void test_body_limits(void **state)
{
    (void)state;
    fixture_t *f = fx_create(NULL);
    defer_ctx_t d = {0};
    add_routes(f, &d);
    fx_start(f);
    rawresp_t r;

    /* Declared too large: refused from the headers, before any body byte. */
    rawconn_t *c = raw_connect(f->port);
    raw_sends(c, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n");
    assert_true(raw_read(c, &r));
    assert_int_equal(r.status, 413);
    assert_non_null(strstr(r.headers, "Connection: close"));
    assert_true(raw_closed(c));
    raw_close(c);

    /* Chunked: refused when the streamed body passes the limit. */
    c = raw_connect(f->port);
    raw_sends(c, "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n");
    char chunk[700];
    memset(chunk, 'a', sizeof chunk);
    for (int i = 0; i < 3; i++) {
        raw_sends(c, "2bc\r\n");
        raw_send(c, chunk, sizeof chunk);
        raw_sends(c, "\r\n");
    }
    raw_sends(c, "0\r\n\r\n");
    assert_true(raw_read(c, &r));
    assert_int_equal(r.status, 413);
    assert_true(raw_closed(c));
    raw_close(c);

    /* A chunked body within the limit is reassembled. */
    c = raw_connect(f->port);
    raw_sends(c, "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                 "3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n");
    assert_true(raw_read(c, &r));
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "abcde");
    raw_close(c);

    /* A body sent to an unknown path is not read: 404 and close. */
    c = raw_connect(f->port);
    raw_sends(c, "POST /nope HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n0123456789");
    assert_true(raw_read(c, &r));
    assert_int_equal(r.status, 404);
    assert_true(raw_closed(c));
    raw_close(c);
    fx_stop(f);
}

static void test_header_limits_and_malformed(void **state)
{
    (void)state;
    sb_http_limits_t lim = {.max_header_bytes = 2048, .max_headers = 8};
    fixture_t *f = fx_create(&lim);
    defer_ctx_t d = {0};
    add_routes(f, &d);
    fx_start(f);
    rawresp_t r;

    rawconn_t *c = raw_connect(f->port);
    sb_buf_t b = {0};
    sb_buf_appendf(&b, "GET /hello HTTP/1.1\r\n");
    for (int i = 0; i < 20; i++)
        sb_buf_appendf(&b, "X-H%d: v\r\n", i);
    sb_buf_appendf(&b, "\r\n");
    raw_send(c, b.data, b.len);
    sb_buf_free(&b);
    assert_true(raw_read(c, &r));
    assert_int_equal(r.status, 431);
    assert_true(raw_closed(c));
    raw_close(c);

    c = raw_connect(f->port);
    sb_buf_appendf(&b, "GET /hello HTTP/1.1\r\nX-Long: ");
    for (int i = 0; i < 3000; i++)
        sb_buf_append(&b, "y", 1);
    sb_buf_appendf(&b, "\r\n\r\n");
    raw_send(c, b.data, b.len);
    sb_buf_free(&b);
    assert_true(raw_read(c, &r));
    assert_int_equal(r.status, 431);
    raw_close(c);

    c = raw_connect(f->port);
    raw_sends(c, "THIS IS NOT HTTP\r\n\r\n");
    assert_true(raw_read(c, &r));
    assert_int_equal(r.status, 400);
    assert_true(raw_closed(c));
    raw_close(c);

    c = raw_connect(f->port);
    raw_sends(c, "POST /echo HTTP/1.1\r\nContent-Length: abc\r\n\r\n");
    assert_true(raw_read(c, &r));
    assert_int_equal(r.status, 400);
    raw_close(c);
    fx_stop(f);
}

static void test_request_timeout(void **state)
{
    (void)state;
    sb_http_limits_t lim = {.request_timeout_ms = 200, .idle_timeout_ms = 200};
    fixture_t *f = fx_create(&lim);
    defer_ctx_t d = {0};
    add_routes(f, &d);
    fx_start(f);
    rawresp_t r;

    rawconn_t *c = raw_connect(f->port);
    raw_sends(c, "GET /hello HTTP/1.1\r\nHost: x\r\n"); /* never finished */
    assert_true(raw_read(c, &r));
    assert_int_equal(r.status, 408);
    assert_true(raw_closed(c));
    raw_close(c);

    /* An idle keep-alive connection is closed without a response. */
    c = raw_connect(f->port);
    raw_sends(c, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_true(raw_read(c, &r));
    assert_int_equal(r.status, 200);
    assert_true(raw_closed(c));
    assert_int_equal(c->len, 0);
    raw_close(c);
    fx_stop(f);
}

static void test_max_connections(void **state)
{
    (void)state;
    sb_http_limits_t lim = {.max_connections = 1};
    fixture_t *f = fx_create(&lim);
    defer_ctx_t d = {0};
    add_routes(f, &d);
    fx_start(f);
    rawresp_t r;

    rawconn_t *a = raw_connect(f->port);
    raw_sends(a, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_true(raw_read(a, &r)); /* a is now surely accepted */
    rawconn_t *b = raw_connect(f->port);
    assert_true(raw_closed(b));
    raw_close(b);
    raw_sends(a, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_true(raw_read(a, &r));
    assert_int_equal(r.status, 200);
    raw_close(a);
    fx_stop(f);
}

static bool ready_flag;
static bool is_ready(void *ctx)
{
    (void)ctx;
    return ready_flag;
}

static void test_ops_routes(void **state)
{
    (void)state;
    fixture_t *f = fx_create(NULL);
    sb_http_server_ops_routes(f->srv, is_ready, NULL);
    sb_metric_inc(sb_metrics_counter("sb_test_http_marker_total", "marker", NULL));
    fx_start(f);

    sb_http_client_t *cl = NULL;
    assert_int_equal(sb_http_client_create(&cl), SB_OK);
    char url[96];
    sb_http_client_response_t resp;

    snprintf(url, sizeof url, "http://127.0.0.1:%d/healthz", f->port);
    assert_int_equal(sb_http_client_do(cl, "GET", url, NULL, NULL, 0, 5000, 1024, &resp), SB_OK);
    assert_int_equal(resp.status, 200);
    assert_string_equal(resp.body.data, "ok");
    sb_buf_free(&resp.body);

    snprintf(url, sizeof url, "http://127.0.0.1:%d/readyz", f->port);
    ready_flag = false;
    assert_int_equal(sb_http_client_do(cl, "GET", url, NULL, NULL, 0, 5000, 1024, &resp), SB_OK);
    assert_int_equal(resp.status, 503);
    sb_buf_free(&resp.body);
    ready_flag = true;
    assert_int_equal(sb_http_client_do(cl, "GET", url, NULL, NULL, 0, 5000, 1024, &resp), SB_OK);
    assert_int_equal(resp.status, 200);
    assert_string_equal(resp.body.data, "ready");
    sb_buf_free(&resp.body);

    snprintf(url, sizeof url, "http://127.0.0.1:%d/metrics", f->port);
    assert_int_equal(sb_http_client_do(cl, "GET", url, NULL, NULL, 0, 5000, 1 << 20, &resp), SB_OK);
    assert_int_equal(resp.status, 200);
    assert_non_null(strstr(resp.body.data, "sb_test_http_marker_total 1"));
    assert_non_null(strstr(resp.body.data, "sb_http_requests_total{code=\"200\"}"));
    sb_buf_free(&resp.body);

    sb_http_client_destroy(cl);
    fx_stop(f);
}

static void test_client(void **state)
{
    (void)state;
    fixture_t *f = fx_create(NULL);
    defer_ctx_t d = {0};
    add_routes(f, &d);
    fx_start(f);

    sb_http_client_t *cl = NULL;
    assert_int_equal(sb_http_client_create(&cl), SB_OK);
    char url[96];
    sb_http_client_response_t resp;

    /* A POST with headers and a body larger than curl's 100-continue threshold. */
    char body[1000];
    memset(body, 'b', sizeof body);
    const char *hdrs[] = {"Content-Type: text/plain", NULL};
    snprintf(url, sizeof url, "http://127.0.0.1:%d/echo", f->port);
    assert_int_equal(sb_http_client_do(cl, "POST", url, hdrs, body, sizeof body, 5000, 4096, &resp),
                     SB_OK);
    assert_int_equal(resp.status, 200);
    assert_int_equal(resp.body.len, sizeof body);
    assert_memory_equal(resp.body.data, body, sizeof body);
    sb_buf_free(&resp.body);

    snprintf(url, sizeof url, "http://127.0.0.1:%d/retry", f->port);
    assert_int_equal(sb_http_client_do(cl, "GET", url, NULL, NULL, 0, 5000, 1024, &resp), SB_OK);
    assert_int_equal(resp.status, 503);
    assert_int_equal(resp.retry_after_s, 7);
    sb_buf_free(&resp.body);

    snprintf(url, sizeof url, "http://127.0.0.1:%d/big", f->port);
    assert_int_equal(sb_http_client_do(cl, "GET", url, NULL, NULL, 0, 5000, 1000, &resp),
                     SB_E_TOO_LARGE);
    assert_int_equal(resp.status, 0);

    /* The same client keeps working after an aborted transfer. */
    snprintf(url, sizeof url, "http://127.0.0.1:%d/hello", f->port);
    assert_int_equal(sb_http_client_do(cl, "GET", url, NULL, NULL, 0, 5000, 1024, &resp), SB_OK);
    assert_int_equal(resp.status, 200);
    assert_int_equal(resp.retry_after_s, -1);
    sb_buf_free(&resp.body);
    fx_stop(f);

    /* Nobody listens any more: a transport error, not an HTTP status. */
    assert_int_equal(sb_http_client_do(cl, "GET", url, NULL, NULL, 0, 2000, 1024, &resp),
                     SB_E_UNAVAILABLE);
    assert_int_equal(resp.status, 0);
    sb_http_client_destroy(cl);
}

static void test_stop_before_run_and_destroy_unrun(void **state)
{
    (void)state;
    /* Stop requested before run: run returns at once, cleanly. */
    fixture_t *f = fx_create(NULL);
    sb_http_server_stop(f->srv);
    assert_int_equal(sb_http_server_run(f->srv), SB_OK);
    sb_http_server_destroy(f->srv);
    free(f);

    /* Created, never run: destroy closes everything. */
    sb_http_server_t *srv = NULL;
    assert_int_equal(sb_http_server_create(&srv, "127.0.0.1:0", NULL), SB_OK);
    sb_http_server_route(srv, "GET", "/hello", 0, h_hello, NULL);
    sb_http_server_destroy(srv);

    /* No socket at all. */
    assert_int_equal(sb_http_server_create(&srv, NULL, NULL), SB_OK);
    assert_int_equal(sb_http_server_port(srv), 0);
    sb_http_server_destroy(srv);

    assert_int_equal(sb_http_server_create(&srv, "not-an-address", NULL), SB_E_CONFIG);
}

static atomic_int ticks;
static void tick(void *ctx)
{
    (void)ctx;
    atomic_fetch_add(&ticks, 1);
}

static void test_every_and_stop_with_open_connection(void **state)
{
    (void)state;
    fixture_t *f = fx_create(NULL);
    defer_ctx_t d = {0};
    add_routes(f, &d);
    sb_http_server_every(f->srv, 10, tick, NULL);
    fx_start(f);
    for (int i = 0; i < 500 && atomic_load(&ticks) < 3; i++)
        usleep(10000);
    assert_true(atomic_load(&ticks) >= 3);

    /* An idle keep-alive connection does not hold the shutdown back. */
    rawconn_t *c = raw_connect(f->port);
    rawresp_t r;
    raw_sends(c, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_true(raw_read(c, &r));
    fx_stop(f);
    assert_true(raw_closed(c));
    raw_close(c);
}

/* --- streaming ---------------------------------------------------------------------------- */

typedef struct stream_ctx {
    sb_http_server_t *srv;
    sb_http_stream_t *st; /* loop thread only */
    atomic_int closes;
    atomic_int peer_ok;
    atomic_int posted;
    char post_text[32];
} stream_ctx_t;

static void stream_closed(sb_http_stream_t *st, void *ctx)
{
    stream_ctx_t *s = ctx;
    assert_ptr_equal(st, s->st);
    s->st = NULL;
    atomic_fetch_add(&s->closes, 1);
}

static void h_stream(sb_http_request_t *req)
{
    stream_ctx_t *s = req->route_ctx;
    char peer[64];
    if (sb_http_peer(req, peer, sizeof peer) && strcmp(peer, "127.0.0.1") == 0)
        atomic_store(&s->peer_ok, 1);
    const char *extra[] = {"Cache-Control: no-store", NULL};
    s->st = sb_http_stream_start(req, 200, "text/event-stream", extra, 4096, stream_closed, s);
    assert_non_null(s->st);
    assert_int_equal(sb_http_stream_write(s->st, "data: one\n\n", 11), SB_OK);
}

/* Runs on the loop thread via sb_http_server_post. */
static void post_write(void *ctx)
{
    stream_ctx_t *s = ctx;
    if (s->st) {
        assert_int_equal(sb_http_stream_write(s->st, s->post_text, strlen(s->post_text)), SB_OK);
        if (strcmp(s->post_text, "data: end\n\n") == 0) sb_http_stream_end(s->st);
    }
    atomic_fetch_add(&s->posted, 1);
}

static void post_flood(void *ctx)
{
    stream_ctx_t *s = ctx;
    char chunk[1024];
    memset(chunk, 'x', sizeof chunk);
    sb_result_t rc = SB_OK;
    /* The client does not read: the queue fills and the stream is refused, then closed. */
    for (int i = 0; i < 100000 && s->st && rc == SB_OK; i++)
        rc = sb_http_stream_write(s->st, chunk, sizeof chunk);
    if (s->st) assert_int_equal(rc, SB_E_FULL);
    atomic_fetch_add(&s->posted, 1);
}

static void wait_int(atomic_int *v, int want)
{
    for (int i = 0; i < 500 && atomic_load(v) < want; i++)
        usleep(10000);
    assert_int_equal(atomic_load(v), want);
}

static void test_stream(void **state)
{
    (void)state;
    fixture_t *f = fx_create(NULL);
    stream_ctx_t s = {.srv = f->srv};
    sb_http_server_route(f->srv, "GET", "/events", 0, h_stream, &s);
    fx_start(f);

    /* 1. Headers at once, chunks later from another thread, then the server ends it. */
    rawconn_t *c = raw_connect(f->port);
    raw_sends(c, "GET /events HTTP/1.1\r\nHost: x\r\n\r\n");
    while (!memmem(c->buf, c->len, "data: one\n\n", 11))
        assert_true(raw_fill(c));
    assert_non_null(strstr(c->buf, "HTTP/1.1 200"));
    assert_non_null(strcasestr(c->buf, "Content-Type: text/event-stream"));
    assert_null(strcasestr(c->buf, "Content-Length"));
    assert_int_equal(atomic_load(&s.peer_ok), 1);
    snprintf(s.post_text, sizeof s.post_text, "data: two\n\n");
    assert_true(sb_http_server_post(f->srv, post_write, &s));
    wait_int(&s.posted, 1);
    snprintf(s.post_text, sizeof s.post_text, "data: end\n\n");
    assert_true(sb_http_server_post(f->srv, post_write, &s));
    wait_int(&s.posted, 2);
    while (raw_fill(c))
        ;
    assert_non_null(memmem(c->buf, c->len, "data: two\n\ndata: end\n\n", 22));
    raw_close(c);
    wait_int(&s.closes, 1);

    /* 2. The client leaves: on_close runs once. */
    c = raw_connect(f->port);
    raw_sends(c, "GET /events HTTP/1.1\r\nHost: x\r\n\r\n");
    while (!memmem(c->buf, c->len, "data: one\n\n", 11))
        assert_true(raw_fill(c));
    raw_close(c);
    wait_int(&s.closes, 2);

    /* 3. A client that does not read is cut off once max_queued is exceeded. */
    c = raw_connect(f->port);
    int small = 4096;
    assert_int_equal(setsockopt(c->fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small), 0);
    raw_sends(c, "GET /events HTTP/1.1\r\nHost: x\r\n\r\n");
    while (!memmem(c->buf, c->len, "data: one\n\n", 11))
        assert_true(raw_fill(c));
    assert_true(sb_http_server_post(f->srv, post_flood, &s));
    wait_int(&s.posted, 3);
    wait_int(&s.closes, 3);
    raw_close(c);

    /* 4. The server stops with a stream open: on_close runs, the client sees EOF. */
    c = raw_connect(f->port);
    raw_sends(c, "GET /events HTTP/1.1\r\nHost: x\r\n\r\n");
    while (!memmem(c->buf, c->len, "data: one\n\n", 11))
        assert_true(raw_fill(c));
    fx_stop(f);
    assert_int_equal(atomic_load(&s.closes), 4);
    assert_true(raw_closed(c));
    raw_close(c);
}

int main(void)
{
    sb_log_init("test_http", SB_LOG_WARN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_routes_and_errors),
        cmocka_unit_test(test_keepalive_and_pipelining),
        cmocka_unit_test(test_deferred_runs_on_pool_thread),
        cmocka_unit_test(test_body_limits),
        cmocka_unit_test(test_header_limits_and_malformed),
        cmocka_unit_test(test_request_timeout),
        cmocka_unit_test(test_max_connections),
        cmocka_unit_test(test_ops_routes),
        cmocka_unit_test(test_client),
        cmocka_unit_test(test_stop_before_run_and_destroy_unrun),
        cmocka_unit_test(test_every_and_stop_with_open_connection),
        cmocka_unit_test(test_stream),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
