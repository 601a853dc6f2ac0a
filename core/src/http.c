/* HTTP server: the only home of libuv loop setup and of libhttp-parser.
 *
 * Data flow. Each server owns one uv loop, run by the thread that calls sb_http_server_run.
 * A connection's bytes go from uv_read_start into a per-connection input buffer and through an
 * http_parser (HTTP_REQUEST). Header and body callbacks copy into a request object while
 * checking the limits (header bytes and count: 431; body above the route's max_body: 413). When
 * a message completes the parser is paused and the request is dispatched to its route; reading
 * stops until the handler answers with sb_http_respond (now, or later from an sb_http_defer
 * done callback), so pipelined requests are answered in order and the input never grows beyond
 * one read. After a keep-alive response the parser resumes on the bytes left over.
 *
 * Timers: one per connection. Before a request starts it is the idle timeout (request timeout
 * for a fresh connection); from the first byte of a request until it is complete, the request
 * timeout (408 on expiry); while a handler works, none; after a closing response, a short
 * linger during which input is read and discarded so that the client sees the response before
 * the close instead of a reset.
 *
 * Shutdown: sb_http_server_stop (uv_async, any thread) or sb_service_stopping() (polled every
 * 100 ms) stops accepting, closes idle connections, lets requests in progress answer (for at
 * most 5 s) and closes every handle; memory is freed only in close callbacks.
 *
 * Streaming (sb_http_stream_start, for server-sent events): the handler's answer is the header
 * block without a Content-Length; the connection then stays in C_STREAM, reading and dropping
 * input so that the client's close is seen at once, and the caller writes chunks from the loop
 * thread until either side ends it. Other threads reach the loop with sb_http_server_post (a
 * locked queue drained by the same uv_async that carries the stop request).
 *
 * The libuv thread pool serves sb_http_defer. It is sized by UV_THREADPOOL_SIZE, which is set
 * to 16 at the first sb_http_server_create unless the environment already sets it (the pool is
 * created at its first use, which is always later). */
#include "sb/http.h"

#include <netdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include <http_parser.h>
#include <uv.h>

#include "sb/log.h"
#include "sb/metrics.h"
#include "sb/service.h"
#include "sb/util.h"

#define MOD "http"
#define READ_BUF 65536
#define STOP_POLL_MS 100
#define STOP_GRACE_MS 5000
#define LINGER_MS 1000
#define NOROUTE_MAX_BODY 0
#define METHOD_MAX 24
#define STREAM_MAX_DISCARD 65536

typedef struct conn conn_t;
typedef struct req req_t;

typedef struct route {
    char *method; /* NULL: any */
    char *path;
    size_t path_len;
    bool prefix;
    size_t max_body;
    sb_http_handler_fn handler;
    void *ctx;
} route_t;

typedef struct every {
    uv_timer_t timer;
    void (*fn)(void *ctx);
    void *ctx;
    struct every *next;
} every_t;

typedef struct ops_ctx {
    bool (*ready)(void *ctx);
    void *ctx;
} ops_ctx_t;

typedef enum conn_state {
    C_IDLE,    /* between requests (or before the first one) */
    C_RECV,    /* a request is arriving */
    C_BUSY,    /* a complete request is with its handler; not reading */
    C_CLOSING, /* a closing response was written; draining input until EOF or linger */
    C_STREAM,  /* a streaming response is open; input is read and discarded */
} conn_state_t;

typedef enum hstate { H_NONE, H_FIELD, H_VALUE } hstate_t;

struct req {
    sb_http_request_t pub; /* first: handlers see &pub, we cast back */
    conn_t *conn;          /* NULL once the client went away */
    sb_http_server_t *srv;
    char method[METHOD_MAX];
    sb_buf_t target;
    sb_buf_t hbuf; /* name\0value\0name\0value\0... */
    size_t *hoff;  /* pairs of offsets into hbuf */
    size_t nh, hcap;
    hstate_t hstate;
    sb_http_header_t *headers;
    char *path;
    char *query;
    sb_buf_t body;
    size_t max_body;
    const route_t *route;
    int early_status; /* 404 / 405 decided at headers complete */
    bool keep_alive;
    bool head;
    uint64_t t0;
};

struct conn {
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_shutdown_t shut;
    sb_http_server_t *srv;
    http_parser parser;
    conn_state_t state;
    req_t *cur;  /* being received */
    req_t *busy; /* with its handler */
    sb_buf_t in;
    size_t in_off;
    size_t header_bytes;
    int fail_status; /* set by a parser callback that rejects the request */
    bool reading;
    bool processing;
    bool closing;
    int open_handles;
    sb_http_stream_t *stream; /* C_STREAM: the caller's handle */
    size_t discarded;         /* C_STREAM: bytes the client sent and we dropped */
    char peer[64];            /* the client's address, "" when unknown */
    conn_t *prev, *next;
    char rbuf[READ_BUF];
};

struct sb_http_server {
    uv_loop_t loop;
    uv_tcp_t listener;
    uv_async_t async;
    uv_timer_t poll;
    uv_timer_t grace;
    bool listening;
    bool grace_started;
    sb_http_limits_t limits;
    route_t *routes;
    size_t nroutes;
    ops_ctx_t *ops;
    every_t *everies;
    conn_t *conns;
    size_t nconns;
    int port;
    bool stopping;
    bool ran;
    bool closed;
    atomic_bool stop_requested;
    pthread_mutex_t async_mu; /* async_alive and the post queue */
    bool async_alive;
    struct post *posts, **posts_tail;
    size_t nstreams;
};

typedef struct post {
    void (*fn)(void *ctx);
    void *ctx;
    struct post *next;
} post_t;

struct sb_http_stream {
    conn_t *c;
    sb_http_stream_close_fn on_close;
    void *ctx;
    size_t max_queued;
    bool ending; /* over: no more writes */
};

static http_parser_settings parser_settings;
static pthread_once_t settings_once = PTHREAD_ONCE_INIT;

static void process_input(conn_t *c);
static void conn_close(conn_t *c);
static void begin_stop(sb_http_server_t *srv);

/* --- metrics ------------------------------------------------------------------------------ */

static void count_response(int status, uint64_t t0)
{
    char labels[32];
    snprintf(labels, sizeof labels, "code=\"%d\"", status);
    sb_metric_inc(
        sb_metrics_counter("sb_http_requests_total", "HTTP requests answered, by status", labels));
    if (t0 != 0)
        sb_metric_observe(sb_metrics_histogram(
                              "sb_http_request_seconds", "Time from first request byte to response",
                              NULL, sb_metrics_latency_buckets, sb_metrics_latency_nbuckets),
                          (double)(sb_mono_ns() - t0) / 1e9);
}

static void gauge_connections(double delta)
{
    sb_metric_add(sb_metrics_gauge("sb_http_connections", "Open HTTP connections", NULL), delta);
}

/* --- requests ----------------------------------------------------------------------------- */

static req_t *req_new(conn_t *c)
{
    req_t *r = sb_xcalloc(1, sizeof *r);
    r->conn = c;
    r->srv = c->srv;
    r->t0 = sb_mono_ns();
    return r;
}

static void req_free(req_t *r)
{
    if (r == NULL) return;
    sb_buf_free(&r->target);
    sb_buf_free(&r->hbuf);
    sb_buf_free(&r->body);
    free(r->hoff);
    free(r->headers);
    free(r->path);
    free(r->query);
    free(r);
}

const char *sb_http_header(const sb_http_request_t *req, const char *name)
{
    if (req == NULL || name == NULL) return NULL;
    for (size_t i = 0; i < req->nheaders; i++)
        if (strcasecmp(req->headers[i].name, name) == 0) return req->headers[i].value;
    return NULL;
}

bool sb_http_peer(const sb_http_request_t *req, char *buf, size_t n)
{
    const req_t *r = (const req_t *)req;
    if (r == NULL || buf == NULL || n == 0 || r->conn == NULL || r->conn->peer[0] == '\0')
        return false;
    size_t len = strlen(r->conn->peer);
    if (len + 1 > n) return false;
    memcpy(buf, r->conn->peer, len + 1);
    return true;
}

static int hexval(char ch)
{
    if (ch >= '0' && ch <= '9') return ch - '0';
    if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
    return -1;
}

/* Percent-decodes s[0..n) into out (size cap, NUL-terminated). False if malformed or long. */
static bool pct_decode(const char *s, size_t n, char *out, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (ch == '+') {
            ch = ' ';
        } else if (ch == '%') {
            if (i + 2 >= n) return false;
            int hi = hexval(s[i + 1]), lo = hexval(s[i + 2]);
            if (hi < 0 || lo < 0) return false;
            ch = (char)(hi * 16 + lo);
            i += 2;
        }
        if (o + 1 >= cap) return false;
        out[o++] = ch;
    }
    out[o] = '\0';
    return true;
}

bool sb_http_query_param(const sb_http_request_t *req, const char *name, char *buf, size_t n)
{
    if (req == NULL || name == NULL || buf == NULL || n == 0 || req->query == NULL) return false;
    const char *p = req->query;
    char key[256];
    while (*p != '\0') {
        const char *amp = strchr(p, '&');
        size_t plen = amp != NULL ? (size_t)(amp - p) : strlen(p);
        const char *eq = memchr(p, '=', plen);
        size_t klen = eq != NULL ? (size_t)(eq - p) : plen;
        if (pct_decode(p, klen, key, sizeof key) && strcmp(key, name) == 0) {
            if (eq == NULL) {
                buf[0] = '\0';
                return true;
            }
            return pct_decode(eq + 1, plen - klen - 1, buf, n);
        }
        if (amp == NULL) break;
        p = amp + 1;
    }
    return false;
}

/* --- writing responses -------------------------------------------------------------------- */

typedef struct wreq {
    uv_write_t w;
    conn_t *c;
    char *data;
} wreq_t;

static void on_write(uv_write_t *w, int status)
{
    wreq_t *wr = (wreq_t *)w;
    conn_t *c = wr->c;
    free(wr->data);
    free(wr);
    if (status < 0 && !c->closing) {
        SB_DEBUG(MOD, "write failed err=%s", uv_err_name(status));
        conn_close(c);
    }
}

/* Queues len bytes (takes ownership of data). */
static void conn_write(conn_t *c, char *data, size_t len)
{
    if (c->closing) {
        free(data);
        return;
    }
    wreq_t *wr = sb_xcalloc(1, sizeof *wr);
    wr->c = c;
    wr->data = data;
    uv_buf_t b = uv_buf_init(data, (unsigned int)len);
    int rc = uv_write(&wr->w, (uv_stream_t *)&c->tcp, &b, 1, on_write);
    if (rc < 0) {
        free(data);
        free(wr);
        conn_close(c);
    }
}

static bool header_line_ok(const char *h)
{
    const char *colon = strchr(h, ':');
    if (colon == NULL || colon == h) return false;
    for (const char *p = h; *p != '\0'; p++)
        if (*p == '\r' || *p == '\n') return false;
    return true;
}

static void write_response(conn_t *c, int status, const char *ctype, const char *const *extra,
                           const void *body, size_t len, bool keep, bool head)
{
    sb_buf_t b = {0};
    const char *reason = http_status_str((enum http_status)status);
    if (reason == NULL || reason[0] == '<') reason = "Unknown";
    sb_buf_appendf(&b, "HTTP/1.1 %d %s\r\n", status, reason);
    if (ctype != NULL) sb_buf_appendf(&b, "Content-Type: %s\r\n", ctype);
    sb_buf_appendf(&b, "Content-Length: %zu\r\n", len);
    sb_buf_appendf(&b, "Connection: %s\r\n", keep ? "keep-alive" : "close");
    for (size_t i = 0; extra != NULL && extra[i] != NULL; i++) {
        if (!header_line_ok(extra[i])) {
            SB_WARN(MOD, "response header dropped reason=invalid");
            continue;
        }
        sb_buf_appendf(&b, "%s\r\n", extra[i]);
    }
    sb_buf_append(&b, "\r\n", 2);
    if (!head && len > 0) sb_buf_append(&b, body, len);
    conn_write(c, b.data, b.len);
}

/* --- connection lifecycle ----------------------------------------------------------------- */

static void on_conn_closed(uv_handle_t *h)
{
    conn_t *c = h->data;
    if (--c->open_handles > 0) return;
    sb_buf_free(&c->in);
    free(c);
}

static void conn_close(conn_t *c)
{
    if (c->closing) return;
    c->closing = true;
    sb_http_server_t *srv = c->srv;
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        srv->conns = c->next;
    if (c->next != NULL) c->next->prev = c->prev;
    srv->nconns--;
    gauge_connections(-1);

    req_free(c->cur);
    c->cur = NULL;
    if (c->busy != NULL) {
        c->busy->conn = NULL; /* its handler still owns it; the answer will be dropped */
        c->busy = NULL;
    }
    if (c->stream != NULL) {
        sb_http_stream_t *st = c->stream;
        c->stream = NULL;
        st->c = NULL;
        srv->nstreams--;
        st->on_close(st, st->ctx);
        free(st);
    }
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->timer, on_conn_closed);
    uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
}

static void on_timer(uv_timer_t *t);

static void timer_set(conn_t *c, uint64_t ms)
{
    if (c->closing) return;
    if (ms == 0) {
        uv_timer_stop(&c->timer);
        return;
    }
    uv_timer_start(&c->timer, on_timer, ms, 0);
}

static void on_shutdown(uv_shutdown_t *s, int status)
{
    (void)s;
    (void)status;
    /* Nothing: the linger timer or the client's EOF closes the connection. */
}

/* After a closing response: send FIN once the writes are out, keep reading (discarding) so
 * that unread request bytes do not turn the close into a reset, and close on EOF or linger. */
static void begin_linger(conn_t *c)
{
    if (c->closing || c->state == C_CLOSING) return;
    c->state = C_CLOSING;
    req_free(c->cur);
    c->cur = NULL;
    if (uv_shutdown(&c->shut, (uv_stream_t *)&c->tcp, on_shutdown) < 0) {
        conn_close(c);
        return;
    }
    timer_set(c, LINGER_MS);
}

static void fail(conn_t *c, int status)
{
    char body[64];
    const char *what = status == 400   ? "bad request"
                       : status == 404 ? "not found"
                       : status == 405 ? "method not allowed"
                       : status == 408 ? "request timeout"
                       : status == 413 ? "payload too large"
                       : status == 431 ? "request header fields too large"
                                       : "error";
    int n = snprintf(body, sizeof body, "{\"error\":\"%s\"}", what);
    SB_DEBUG(MOD, "request rejected status=%d", status);
    count_response(status, c->cur != NULL ? c->cur->t0 : 0);
    write_response(c, status, "application/json", NULL, body, (size_t)n, false, false);
    begin_linger(c);
}

static void on_timer(uv_timer_t *t)
{
    conn_t *c = t->data;
    switch (c->state) {
    case C_RECV:
        fail(c, 408);
        break;
    case C_BUSY:
        break;
    case C_IDLE:
    case C_CLOSING:
    case C_STREAM: /* only armed to close a stream that fell behind */
        conn_close(c);
        break;
    }
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    conn_t *c = h->data;
    *buf = uv_buf_init(c->rbuf, sizeof c->rbuf);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    (void)buf;
    conn_t *c = s->data;
    if (nread == 0) return;
    if (nread < 0) {
        conn_close(c);
        return;
    }
    if (c->state == C_CLOSING) return; /* lingering: discard */
    if (c->state == C_STREAM) {
        /* Nothing is expected from a streaming client; a flood ends the stream. */
        c->discarded += (size_t)nread;
        if (c->discarded > STREAM_MAX_DISCARD) conn_close(c);
        return;
    }
    sb_buf_append(&c->in, c->rbuf, (size_t)nread);
    process_input(c);
}

static void set_reading(conn_t *c, bool on)
{
    if (c->closing || c->reading == on) return;
    if (on) {
        if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) < 0) {
            conn_close(c);
            return;
        }
    } else {
        uv_read_stop((uv_stream_t *)&c->tcp);
    }
    c->reading = on;
}

/* --- parser callbacks --------------------------------------------------------------------- */

static int reject(conn_t *c, int status)
{
    c->fail_status = status;
    return -1;
}

static int count_header_bytes(conn_t *c, size_t n)
{
    c->header_bytes += n;
    if (c->header_bytes > c->srv->limits.max_header_bytes) return reject(c, 431);
    return 0;
}

static int on_message_begin(http_parser *p)
{
    conn_t *c = p->data;
    req_free(c->cur);
    c->cur = req_new(c);
    c->header_bytes = 0;
    c->fail_status = 0;
    c->state = C_RECV;
    timer_set(c, c->srv->limits.request_timeout_ms);
    return 0;
}

static int on_url(http_parser *p, const char *at, size_t len)
{
    conn_t *c = p->data;
    if (count_header_bytes(c, len) != 0) return -1;
    sb_buf_append(&c->cur->target, at, len);
    return 0;
}

static int on_header_field(http_parser *p, const char *at, size_t len)
{
    conn_t *c = p->data;
    req_t *r = c->cur;
    if (count_header_bytes(c, len) != 0) return -1;
    if (r->hstate != H_FIELD) {
        if (r->hstate == H_VALUE) sb_buf_append(&r->hbuf, "", 1);
        if (r->nh + 1 > c->srv->limits.max_headers) return reject(c, 431);
        if (r->nh == r->hcap) {
            r->hcap = r->hcap ? r->hcap * 2 : 16;
            r->hoff = sb_xrealloc(r->hoff, r->hcap * 2 * sizeof *r->hoff);
        }
        r->hoff[2 * r->nh] = r->hbuf.len;
        r->hoff[2 * r->nh + 1] = SIZE_MAX;
        r->nh++;
        r->hstate = H_FIELD;
    }
    sb_buf_append(&r->hbuf, at, len);
    return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t len)
{
    conn_t *c = p->data;
    req_t *r = c->cur;
    if (count_header_bytes(c, len) != 0) return -1;
    if (r->hstate == H_NONE) return reject(c, 400);
    if (r->hstate == H_FIELD) {
        sb_buf_append(&r->hbuf, "", 1);
        r->hoff[2 * (r->nh - 1) + 1] = r->hbuf.len;
        r->hstate = H_VALUE;
    }
    sb_buf_append(&r->hbuf, at, len);
    return 0;
}

static const route_t *find_route(const sb_http_server_t *srv, const char *method, const char *path,
                                 bool *path_known)
{
    *path_known = false;
    for (size_t i = 0; i < srv->nroutes; i++) {
        const route_t *rt = &srv->routes[i];
        bool match =
            rt->prefix ? strncmp(path, rt->path, rt->path_len) == 0 : strcmp(path, rt->path) == 0;
        if (!match) continue;
        *path_known = true;
        if (rt->method == NULL || strcmp(rt->method, method) == 0 ||
            (strcmp(method, "HEAD") == 0 && strcmp(rt->method, "GET") == 0))
            return rt;
    }
    return NULL;
}

static int on_headers_complete(http_parser *p)
{
    conn_t *c = p->data;
    req_t *r = c->cur;
    sb_http_server_t *srv = c->srv;

    /* Headers: terminate the last string, then point into the (now stable) buffer. */
    if (r->hstate == H_FIELD) {
        sb_buf_append(&r->hbuf, "", 1);
        r->hoff[2 * (r->nh - 1) + 1] = r->hbuf.len;
    }
    sb_buf_append(&r->hbuf, "", 1);
    r->headers = sb_xcalloc(r->nh ? r->nh : 1, sizeof *r->headers);
    for (size_t i = 0; i < r->nh; i++) {
        r->headers[i].name = r->hbuf.data + r->hoff[2 * i];
        size_t vo = r->hoff[2 * i + 1];
        r->headers[i].value = vo == SIZE_MAX ? "" : r->hbuf.data + vo;
    }

    sb_buf_append(&r->target, "", 1);
    r->target.len--;
    const char *target = r->target.data;
    const char *q = strchr(target, '?');
    r->path = q != NULL ? sb_xstrndup(target, (size_t)(q - target)) : sb_xstrdup(target);
    r->query = sb_xstrdup(q != NULL ? q + 1 : "");
    snprintf(r->method, sizeof r->method, "%s", http_method_str((enum http_method)p->method));
    r->head = strcmp(r->method, "HEAD") == 0;

    r->pub.method = r->method;
    r->pub.path = r->path;
    r->pub.query = r->query;
    r->pub.target = target;
    r->pub.headers = r->headers;
    r->pub.nheaders = r->nh;

    bool has_body =
        (p->flags & F_CHUNKED) || ((p->flags & F_CONTENTLENGTH) && p->content_length > 0);
    bool known = false;
    r->route = find_route(srv, r->method, r->path, &known);
    if (r->route == NULL) {
        r->early_status = known ? 405 : 404;
        r->max_body = NOROUTE_MAX_BODY;
        /* Do not read a body nobody wants: answer now and close. */
        if (has_body) return reject(c, r->early_status);
    } else {
        r->max_body = r->route->max_body;
    }
    if ((p->flags & F_CONTENTLENGTH) && p->content_length > r->max_body) return reject(c, 413);

    const char *expect = sb_http_header(&r->pub, "Expect");
    if (expect != NULL && strcasecmp(expect, "100-continue") == 0 && p->http_major == 1 &&
        p->http_minor >= 1) {
        static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
        conn_write(c, sb_xstrdup(cont), sizeof cont - 1);
    }
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
    conn_t *c = p->data;
    req_t *r = c->cur;
    if (len > r->max_body || r->body.len > r->max_body - len) return reject(c, 413);
    sb_buf_append(&r->body, at, len);
    return 0;
}

static int on_message_complete(http_parser *p)
{
    conn_t *c = p->data;
    req_t *r = c->cur;
    r->keep_alive = http_should_keep_alive(p) != 0;
    sb_buf_append(&r->body, "", 1);
    r->body.len--;
    r->pub.body = (const uint8_t *)r->body.data;
    r->pub.body_len = r->body.len;
    /* Stop here: the next pipelined request is parsed after this one is answered. */
    http_parser_pause(p, 1);
    return 0;
}

static void init_settings(void)
{
    /* Once per process, before the pool's first use (uv_queue_work creates it lazily). */
    if (getenv("UV_THREADPOOL_SIZE") == NULL) setenv("UV_THREADPOOL_SIZE", "16", 0);
    http_parser_settings_init(&parser_settings);
    parser_settings.on_message_begin = on_message_begin;
    parser_settings.on_url = on_url;
    parser_settings.on_header_field = on_header_field;
    parser_settings.on_header_value = on_header_value;
    parser_settings.on_headers_complete = on_headers_complete;
    parser_settings.on_body = on_body;
    parser_settings.on_message_complete = on_message_complete;
}

/* --- dispatch ----------------------------------------------------------------------------- */

static void dispatch(conn_t *c)
{
    req_t *r = c->cur;
    c->cur = NULL;
    c->busy = r;
    c->state = C_BUSY;
    timer_set(c, 0);
    if (c->parser.upgrade) r->keep_alive = false;
    if (r->early_status != 0) {
        char body[48];
        int n = snprintf(body, sizeof body, "{\"error\":\"%s\"}",
                         r->early_status == 404 ? "not found" : "method not allowed");
        sb_http_respond(&r->pub, r->early_status, "application/json", NULL, body, (size_t)n);
        return;
    }
    r->pub.route_ctx = r->route->ctx;
    r->route->handler(&r->pub);
}

static void process_input(conn_t *c)
{
    if (c->processing) return; /* the outer call continues where we are */
    c->processing = true;
    while (!c->closing && (c->state == C_IDLE || c->state == C_RECV)) {
        size_t avail = c->in.len - c->in_off;
        if (avail == 0) break;
        size_t n = http_parser_execute(&c->parser, &parser_settings, c->in.data + c->in_off, avail);
        c->in_off += n;
        enum http_errno e = HTTP_PARSER_ERRNO(&c->parser);
        if (e == HPE_PAUSED) {
            http_parser_pause(&c->parser, 0);
            dispatch(c);
            continue;
        }
        if (e != HPE_OK) {
            int status = c->fail_status != 0        ? c->fail_status
                         : e == HPE_HEADER_OVERFLOW ? 431
                                                    : 400;
            fail(c, status);
            break;
        }
        if (c->parser.upgrade) { /* bytes after an upgrade are not HTTP */
            fail(c, 400);
            break;
        }
    }
    if (!c->closing) {
        /* Keep only what was not parsed yet (a pipelined request behind a busy one). */
        if (c->in_off == c->in.len) {
            c->in.len = 0;
        } else if (c->in_off > 0) {
            memmove(c->in.data, c->in.data + c->in_off, c->in.len - c->in_off);
            c->in.len -= c->in_off;
        }
        c->in_off = 0;
        set_reading(c, c->state != C_BUSY);
    }
    c->processing = false;
}

void sb_http_respond(sb_http_request_t *req, int status, const char *content_type,
                     const char *const *extra_headers, const void *body, size_t len)
{
    req_t *r = (req_t *)req;
    if (r == NULL) return;
    count_response(status, r->t0);
    conn_t *c = r->conn;
    if (c == NULL || c->closing) {
        req_free(r);
        return;
    }
    SB_REQUIRE(c->busy == r);
    bool keep = r->keep_alive && !c->srv->stopping;
    write_response(c, status, content_type, extra_headers, body, len, keep, r->head);
    c->busy = NULL;
    req_free(r);
    if (!keep) {
        begin_linger(c);
        return;
    }
    c->state = C_IDLE;
    timer_set(c, c->srv->limits.idle_timeout_ms);
    process_input(c);
}

void sb_http_respond_text(sb_http_request_t *req, int status, const char *text)
{
    sb_http_respond(req, status, "text/plain; charset=utf-8", NULL, text,
                    text != NULL ? strlen(text) : 0);
}

void sb_http_respond_json(sb_http_request_t *req, int status, const char *json)
{
    sb_http_respond(req, status, "application/json", NULL, json, json != NULL ? strlen(json) : 0);
}

/* --- deferred work ------------------------------------------------------------------------ */

typedef struct defer {
    uv_work_t w;
    req_t *r;
    void (*work)(void *ctx);
    void (*done)(sb_http_request_t *req, void *ctx);
    void *ctx;
} defer_t;

static void on_work(uv_work_t *w)
{
    defer_t *d = (defer_t *)w;
    d->work(d->ctx);
}

static void on_after_work(uv_work_t *w, int status)
{
    (void)status;
    defer_t *d = (defer_t *)w;
    d->done(&d->r->pub, d->ctx);
    free(d);
}

void sb_http_defer(sb_http_request_t *req, void (*work)(void *ctx),
                   void (*done)(sb_http_request_t *req, void *ctx), void *ctx)
{
    req_t *r = (req_t *)req;
    SB_REQUIRE(r != NULL && work != NULL && done != NULL);
    defer_t *d = sb_xcalloc(1, sizeof *d);
    d->r = r;
    d->work = work;
    d->done = done;
    d->ctx = ctx;
    int rc = uv_queue_work(&r->srv->loop, &d->w, on_work, on_after_work);
    SB_REQUIRE(rc == 0);
}

/* --- accepting ---------------------------------------------------------------------------- */

static void on_reject_closed(uv_handle_t *h)
{
    free(h);
}

static void on_connection(uv_stream_t *listener, int status)
{
    sb_http_server_t *srv = listener->data;
    if (status < 0) {
        SB_WARN(MOD, "accept failed err=%s", uv_err_name(status));
        return;
    }
    if (srv->stopping) return;
    if (srv->nconns >= srv->limits.max_connections) {
        uv_tcp_t *t = sb_xcalloc(1, sizeof *t);
        uv_tcp_init(&srv->loop, t);
        if (uv_accept(listener, (uv_stream_t *)t) == 0)
            SB_WARN(MOD, "connection refused reason=max_connections limit=%zu",
                    srv->limits.max_connections);
        uv_close((uv_handle_t *)t, on_reject_closed);
        return;
    }
    conn_t *c = sb_xcalloc(1, sizeof *c);
    c->srv = srv;
    uv_tcp_init(&srv->loop, &c->tcp);
    c->tcp.data = c;
    uv_timer_init(&srv->loop, &c->timer);
    c->timer.data = c;
    c->open_handles = 2;
    if (uv_accept(listener, (uv_stream_t *)&c->tcp) != 0) {
        c->closing = true;
        uv_close((uv_handle_t *)&c->timer, on_conn_closed);
        uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    struct sockaddr_storage ss;
    int sslen = sizeof ss;
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &sslen) == 0) {
        if (ss.ss_family == AF_INET6)
            (void)uv_ip6_name((struct sockaddr_in6 *)&ss, c->peer, sizeof c->peer);
        else if (ss.ss_family == AF_INET)
            (void)uv_ip4_name((struct sockaddr_in *)&ss, c->peer, sizeof c->peer);
    }
    http_parser_init(&c->parser, HTTP_REQUEST);
    c->parser.data = c;
    c->state = C_IDLE;
    c->next = srv->conns;
    if (srv->conns != NULL) srv->conns->prev = c;
    srv->conns = c;
    srv->nconns++;
    gauge_connections(1);
    timer_set(c, srv->limits.request_timeout_ms);
    set_reading(c, true);
}

/* --- server ------------------------------------------------------------------------------- */

/* Takes the queued posts (under the lock) and runs them in order. Loop thread. */
static void run_posts(sb_http_server_t *srv)
{
    pthread_mutex_lock(&srv->async_mu);
    post_t *p = srv->posts;
    srv->posts = NULL;
    srv->posts_tail = &srv->posts;
    pthread_mutex_unlock(&srv->async_mu);
    while (p != NULL) {
        post_t *next = p->next;
        p->fn(p->ctx);
        free(p);
        p = next;
    }
}

static void on_async(uv_async_t *a)
{
    sb_http_server_t *srv = a->data;
    run_posts(srv);
    if (atomic_load(&srv->stop_requested)) begin_stop(srv);
}

static void on_poll(uv_timer_t *t)
{
    sb_http_server_t *srv = t->data;
    if (atomic_load(&srv->stop_requested) || sb_service_stopping()) begin_stop(srv);
}

static void on_grace(uv_timer_t *t)
{
    sb_http_server_t *srv = t->data;
    while (srv->conns != NULL)
        conn_close(srv->conns);
}

static void on_noop_closed(uv_handle_t *h)
{
    (void)h;
}

static void on_every_closed(uv_handle_t *h)
{
    free(h->data);
}

static void on_every(uv_timer_t *t)
{
    every_t *e = t->data;
    e->fn(e->ctx);
}

static void begin_stop(sb_http_server_t *srv)
{
    if (srv->stopping) return;
    srv->stopping = true;
    if (srv->listening) uv_close((uv_handle_t *)&srv->listener, on_noop_closed);
    pthread_mutex_lock(&srv->async_mu);
    srv->async_alive = false;
    pthread_mutex_unlock(&srv->async_mu);
    run_posts(srv); /* nothing can be queued any more */
    uv_close((uv_handle_t *)&srv->async, on_noop_closed);
    uv_close((uv_handle_t *)&srv->poll, on_noop_closed);
    for (every_t *e = srv->everies; e != NULL;) {
        every_t *next = e->next;
        uv_close((uv_handle_t *)&e->timer, on_every_closed);
        e = next;
    }
    srv->everies = NULL;
    /* Idle connections close now; a request with its handler closes after its answer. */
    for (conn_t *c = srv->conns; c != NULL;) {
        conn_t *next = c->next;
        if (c->state != C_BUSY) conn_close(c);
        c = next;
    }
    uv_timer_start(&srv->grace, on_grace, STOP_GRACE_MS, 0);
    uv_unref((uv_handle_t *)&srv->grace); /* only live connections keep the loop running */
    srv->grace_started = true;
}

/* Closes what is left and the loop itself. Loop thread. */
static sb_result_t finish(sb_http_server_t *srv)
{
    if (srv->closed) return SB_OK;
    begin_stop(srv);
    uv_run(&srv->loop, UV_RUN_DEFAULT);
    uv_close((uv_handle_t *)&srv->grace, on_noop_closed);
    uv_run(&srv->loop, UV_RUN_DEFAULT);
    srv->closed = true;
    int rc = uv_loop_close(&srv->loop);
    if (rc != 0) {
        SB_ERROR(MOD, "loop did not close cleanly err=%s", uv_err_name(rc));
        return SB_E_INTERNAL;
    }
    return SB_OK;
}

static sb_result_t bind_listen(sb_http_server_t *srv, const char *listen)
{
    char host[256];
    char portstr[8];
    int port = 0;
    struct addrinfo hints = {0}, *ai = NULL;

    if (sb_parse_hostport(listen, host, sizeof host, &port) != SB_OK) {
        SB_ERROR(MOD, "invalid listen address listen=%s", listen);
        return SB_E_CONFIG;
    }
    snprintf(portstr, sizeof portstr, "%d", port);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    const char *h = (strcmp(host, "*") == 0) ? NULL : host;
    int gai = getaddrinfo(h, portstr, &hints, &ai);
    if (gai != 0 || ai == NULL) {
        SB_ERROR(MOD, "cannot resolve listen address listen=%s err=\"%s\"", listen,
                 gai_strerror(gai));
        return SB_E_CONFIG;
    }
    uv_tcp_init(&srv->loop, &srv->listener);
    srv->listener.data = srv;
    srv->listening = true;
    int rc = uv_tcp_bind(&srv->listener, ai->ai_addr, 0);
    freeaddrinfo(ai);
    if (rc == 0) rc = uv_listen((uv_stream_t *)&srv->listener, 511, on_connection);
    if (rc != 0) {
        SB_ERROR(MOD, "cannot listen listen=%s err=%s", listen, uv_err_name(rc));
        return SB_E_IO;
    }
    struct sockaddr_storage ss;
    int len = sizeof ss;
    if (uv_tcp_getsockname(&srv->listener, (struct sockaddr *)&ss, &len) == 0) {
        if (ss.ss_family == AF_INET6)
            srv->port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
        else
            srv->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
    }
    SB_INFO(MOD, "listening addr=%s port=%d", host, srv->port);
    return SB_OK;
}

sb_result_t sb_http_server_create(sb_http_server_t **out, const char *listen,
                                  const sb_http_limits_t *limits)
{
    if (out == NULL) return SB_E_INVALID;
    pthread_once(&settings_once, init_settings);

    sb_http_server_t *srv = sb_xcalloc(1, sizeof *srv);
    srv->limits = (sb_http_limits_t){
        .max_header_bytes = 16 * 1024,
        .max_headers = 64,
        .request_timeout_ms = 10000,
        .idle_timeout_ms = 60000,
        .max_connections = 1024,
    };
    if (limits != NULL) {
        if (limits->max_header_bytes) srv->limits.max_header_bytes = limits->max_header_bytes;
        if (limits->max_headers) srv->limits.max_headers = limits->max_headers;
        if (limits->request_timeout_ms) srv->limits.request_timeout_ms = limits->request_timeout_ms;
        if (limits->idle_timeout_ms) srv->limits.idle_timeout_ms = limits->idle_timeout_ms;
        if (limits->max_connections) srv->limits.max_connections = limits->max_connections;
    }
    atomic_init(&srv->stop_requested, false);
    pthread_mutex_init(&srv->async_mu, NULL);
    srv->posts_tail = &srv->posts;
    int rc = uv_loop_init(&srv->loop);
    if (rc != 0) {
        SB_ERROR(MOD, "loop init failed err=%s", uv_err_name(rc));
        pthread_mutex_destroy(&srv->async_mu);
        free(srv);
        return SB_E_INTERNAL;
    }
    uv_async_init(&srv->loop, &srv->async, on_async);
    srv->async.data = srv;
    srv->async_alive = true;
    uv_timer_init(&srv->loop, &srv->poll);
    srv->poll.data = srv;
    uv_timer_start(&srv->poll, on_poll, STOP_POLL_MS, STOP_POLL_MS);
    uv_timer_init(&srv->loop, &srv->grace);
    srv->grace.data = srv;

    if (listen != NULL) {
        sb_result_t r = bind_listen(srv, listen);
        if (r != SB_OK) {
            sb_http_server_destroy(srv);
            return r;
        }
    }
    *out = srv;
    return SB_OK;
}

void sb_http_server_route(sb_http_server_t *srv, const char *method, const char *path,
                          size_t max_body, sb_http_handler_fn handler, void *ctx)
{
    SB_REQUIRE(srv != NULL && path != NULL && handler != NULL);
    srv->routes = sb_xrealloc(srv->routes, (srv->nroutes + 1) * sizeof *srv->routes);
    route_t *rt = &srv->routes[srv->nroutes++];
    rt->method = method != NULL ? sb_xstrdup(method) : NULL;
    rt->path = sb_xstrdup(path);
    rt->path_len = strlen(path);
    rt->prefix = rt->path_len > 0 && path[rt->path_len - 1] == '/';
    rt->max_body = max_body;
    rt->handler = handler;
    rt->ctx = ctx;
}

static void handle_healthz(sb_http_request_t *req)
{
    sb_http_respond_text(req, 200, "ok");
}

static void handle_readyz(sb_http_request_t *req)
{
    ops_ctx_t *o = req->route_ctx;
    bool ready = o->ready == NULL || o->ready(o->ctx);
    sb_http_respond_text(req, ready ? 200 : 503, ready ? "ready" : "not ready");
}

static void handle_metrics(sb_http_request_t *req)
{
    sb_buf_t b = {0};
    sb_metrics_render(&b);
    sb_http_respond(req, 200, "text/plain; version=0.0.4", NULL, b.data, b.len);
    sb_buf_free(&b);
}

void sb_http_server_ops_routes(sb_http_server_t *srv, bool (*ready)(void *ctx), void *ctx)
{
    SB_REQUIRE(srv != NULL && srv->ops == NULL);
    srv->ops = sb_xcalloc(1, sizeof *srv->ops);
    srv->ops->ready = ready;
    srv->ops->ctx = ctx;
    sb_http_server_route(srv, "GET", "/healthz", 0, handle_healthz, NULL);
    sb_http_server_route(srv, "GET", "/readyz", 0, handle_readyz, srv->ops);
    sb_http_server_route(srv, "GET", "/metrics", 0, handle_metrics, NULL);
}

int sb_http_server_port(const sb_http_server_t *srv)
{
    return srv != NULL ? srv->port : 0;
}

sb_result_t sb_http_server_run(sb_http_server_t *srv)
{
    if (srv == NULL || srv->ran) return SB_E_INVALID;
    srv->ran = true;
    if (atomic_load(&srv->stop_requested)) begin_stop(srv);
    uv_run(&srv->loop, UV_RUN_DEFAULT);
    sb_result_t rc = finish(srv);
    SB_INFO(MOD, "server stopped port=%d", srv->port);
    return rc;
}

void sb_http_server_stop(sb_http_server_t *srv)
{
    if (srv == NULL) return;
    atomic_store(&srv->stop_requested, true);
    pthread_mutex_lock(&srv->async_mu);
    if (srv->async_alive) uv_async_send(&srv->async);
    pthread_mutex_unlock(&srv->async_mu);
}

void sb_http_server_destroy(sb_http_server_t *srv)
{
    if (srv == NULL) return;
    if (!srv->closed) (void)finish(srv);
    for (size_t i = 0; i < srv->nroutes; i++) {
        free(srv->routes[i].method);
        free(srv->routes[i].path);
    }
    free(srv->routes);
    free(srv->ops);
    pthread_mutex_destroy(&srv->async_mu);
    free(srv);
}

void sb_http_server_every(sb_http_server_t *srv, uint64_t interval_ms, void (*fn)(void *ctx),
                          void *ctx)
{
    SB_REQUIRE(srv != NULL && fn != NULL && interval_ms > 0);
    if (srv->stopping) return;
    every_t *e = sb_xcalloc(1, sizeof *e);
    e->fn = fn;
    e->ctx = ctx;
    uv_timer_init(&srv->loop, &e->timer);
    e->timer.data = e;
    uv_timer_start(&e->timer, on_every, interval_ms, interval_ms);
    e->next = srv->everies;
    srv->everies = e;
}

bool sb_http_server_post(sb_http_server_t *srv, void (*fn)(void *ctx), void *ctx)
{
    SB_REQUIRE(srv != NULL && fn != NULL);
    post_t *p = sb_xcalloc(1, sizeof *p);
    p->fn = fn;
    p->ctx = ctx;
    pthread_mutex_lock(&srv->async_mu);
    bool ok = srv->async_alive;
    if (ok) {
        *srv->posts_tail = p;
        srv->posts_tail = &p->next;
        uv_async_send(&srv->async);
    }
    pthread_mutex_unlock(&srv->async_mu);
    if (!ok) free(p);
    return ok;
}

/* --- streaming responses ------------------------------------------------------------------ */

sb_http_stream_t *sb_http_stream_start(sb_http_request_t *req, int status, const char *content_type,
                                       const char *const *extra_headers, size_t max_queued,
                                       sb_http_stream_close_fn on_close, void *ctx)
{
    req_t *r = (req_t *)req;
    SB_REQUIRE(r != NULL && on_close != NULL);
    count_response(status, r->t0);
    conn_t *c = r->conn;
    if (c == NULL || c->closing || c->srv->stopping) {
        if (c != NULL && !c->closing) {
            /* Stopping: a plain answer, then the usual close. */
            c->busy = NULL;
            static const char stopping[] = "{\"error\":\"stopping\"}";
            write_response(c, 503, "application/json", NULL, stopping, sizeof stopping - 1, false,
                           r->head);
            req_free(r);
            begin_linger(c);
            return NULL;
        }
        req_free(r);
        return NULL;
    }
    SB_REQUIRE(c->busy == r);
    sb_buf_t b = {0};
    const char *reason = http_status_str((enum http_status)status);
    if (reason == NULL || reason[0] == '<') reason = "Unknown";
    sb_buf_appendf(&b, "HTTP/1.1 %d %s\r\n", status, reason);
    if (content_type != NULL) sb_buf_appendf(&b, "Content-Type: %s\r\n", content_type);
    sb_buf_appendf(&b, "Connection: close\r\n");
    for (size_t i = 0; extra_headers != NULL && extra_headers[i] != NULL; i++) {
        if (!header_line_ok(extra_headers[i])) {
            SB_WARN(MOD, "response header dropped reason=invalid");
            continue;
        }
        sb_buf_appendf(&b, "%s\r\n", extra_headers[i]);
    }
    sb_buf_append(&b, "\r\n", 2);
    conn_write(c, b.data, b.len);
    c->busy = NULL;
    req_free(r);
    if (c->closing) return NULL; /* the write failed at once */

    sb_http_stream_t *st = sb_xcalloc(1, sizeof *st);
    st->c = c;
    st->on_close = on_close;
    st->ctx = ctx;
    st->max_queued = max_queued > 0 ? max_queued : 256 * 1024;
    c->stream = st;
    c->state = C_STREAM;
    c->discarded = 0;
    c->srv->nstreams++;
    timer_set(c, 0);
    set_reading(c, true); /* to notice the client leaving */
    return st;
}

sb_result_t sb_http_stream_write(sb_http_stream_t *s, const void *data, size_t len)
{
    if (s == NULL || s->c == NULL || s->ending || s->c->closing) return SB_E_UNAVAILABLE;
    conn_t *c = s->c;
    size_t queued = uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp);
    if (queued + len > s->max_queued) {
        /* A client this far behind is not reading: close it from the timer, not from here. */
        s->ending = true;
        SB_DEBUG(MOD, "stream closed reason=slow_client queued=%zu", queued);
        uv_timer_start(&c->timer, on_timer, 1, 0);
        return SB_E_FULL;
    }
    if (len == 0) return SB_OK;
    wreq_t *wr = sb_xcalloc(1, sizeof *wr);
    wr->c = c;
    wr->data = sb_xmalloc(len);
    memcpy(wr->data, data, len);
    uv_buf_t b = uv_buf_init(wr->data, (unsigned int)len);
    if (len > UINT32_MAX || uv_write(&wr->w, (uv_stream_t *)&c->tcp, &b, 1, on_write) < 0) {
        free(wr->data);
        free(wr);
        s->ending = true;
        uv_timer_start(&c->timer, on_timer, 1, 0); /* close from the loop, not from here */
        return SB_E_UNAVAILABLE;
    }
    return SB_OK;
}

void sb_http_stream_end(sb_http_stream_t *s)
{
    if (s == NULL || s->c == NULL || s->ending) return;
    conn_t *c = s->c;
    s->ending = true;
    /* FIN after the queued writes; on_close on the client's EOF or after the linger. */
    c->state = C_CLOSING;
    if (uv_shutdown(&c->shut, (uv_stream_t *)&c->tcp, on_shutdown) < 0)
        uv_timer_start(&c->timer, on_timer, 1, 0);
    else
        uv_timer_start(&c->timer, on_timer, LINGER_MS, 0);
}

size_t sb_http_server_streams(const sb_http_server_t *srv)
{
    return srv != NULL ? srv->nstreams : 0;
}
