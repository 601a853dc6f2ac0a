/* HTTP client: the only file that includes <curl/curl.h>.
 *
 * Blocking client: one libcurl easy handle per client, reused between calls so that
 * connections stay alive. A call resets the handle's options (not its connection cache), sets
 * method, headers, body and timeout (setup_easy, shared with the async client), and collects
 * the response body into a bounded buffer: the write callback refuses the bytes beyond
 * max_response, which aborts the transfer (SB_E_TOO_LARGE). The header callback picks up
 * Retry-After. libcurl codes become sb_result_t here (finish_xfer) and nowhere else.
 *
 * Async client: a libuv loop on its own thread and one curl multi handle. libcurl tells us
 * which sockets to watch (CURLMOPT_SOCKETFUNCTION -> one uv_poll per socket) and when to call
 * it back (CURLMOPT_TIMERFUNCTION -> one uv_timer); uv events feed curl_multi_socket_action,
 * and finished transfers (curl_multi_info_read) call their done callback on the loop thread.
 * Each request has its own easy handle; the multi handle keeps the connection cache, so
 * connections are reused across requests. Other threads reach the loop only through a
 * mutex-protected queue and uv_async_send (sb_http_async_post). Stopping refuses new posts,
 * runs the queued ones, fires pending timers at once, waits for transfers in flight, then
 * closes every handle (memory freed in close callbacks) and checks that the loop closed. */
#include "sb/httpclient.h"

#include <ctype.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <curl/curl.h>
#include <uv.h>

#include "sb/log.h"

#define MOD "httpclient"

struct sb_http_client {
    CURL *curl;
};

typedef struct xfer {
    sb_buf_t *body;
    size_t max;
    bool too_large;
    long retry_after_s;
} xfer_t;

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static CURLcode global_rc = CURLE_OK;

static void global_init(void)
{
    global_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

sb_result_t sb_http_client_create(sb_http_client_t **out)
{
    if (out == NULL) return SB_E_INVALID;
    pthread_once(&global_once, global_init);
    if (global_rc != CURLE_OK) return SB_E_INTERNAL;
    CURL *curl = curl_easy_init();
    if (curl == NULL) return SB_E_INTERNAL;
    sb_http_client_t *c = sb_xcalloc(1, sizeof *c);
    c->curl = curl;
    *out = c;
    return SB_OK;
}

void sb_http_client_destroy(sb_http_client_t *c)
{
    if (c == NULL) return;
    curl_easy_cleanup(c->curl);
    free(c);
}

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    xfer_t *x = userdata;
    size_t n = size * nmemb;
    if (n > x->max || x->body->len > x->max - n) {
        x->too_large = true;
        return 0; /* aborts the transfer with CURLE_WRITE_ERROR */
    }
    sb_buf_append(x->body, ptr, n);
    return n;
}

/* Retry-After: either delta-seconds or an HTTP date. */
static long parse_retry_after(const char *v, size_t n)
{
    char buf[64];
    while (n > 0 && isspace((unsigned char)*v))
        v++, n--;
    while (n > 0 && isspace((unsigned char)v[n - 1]))
        n--;
    if (n == 0 || n >= sizeof buf) return -1;
    memcpy(buf, v, n);
    buf[n] = '\0';
    bool digits = true;
    for (size_t i = 0; i < n; i++)
        if (!isdigit((unsigned char)buf[i])) digits = false;
    if (digits) {
        if (n > 9) return 999999999L;
        return strtol(buf, NULL, 10);
    }
    time_t when = curl_getdate(buf, NULL);
    if (when < 0) return -1;
    time_t now = time(NULL);
    return when > now ? (long)(when - now) : 0;
}

static size_t on_header(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    xfer_t *x = userdata;
    size_t n = size * nmemb;
    static const char name[] = "retry-after:";
    if (n >= 5 && strncmp(ptr, "HTTP/", 5) == 0) {
        x->retry_after_s = -1; /* a new response (after 100 Continue): forget the old one */
    } else if (n > sizeof name - 1 && strncasecmp(ptr, name, sizeof name - 1) == 0) {
        x->retry_after_s = parse_retry_after(ptr + sizeof name - 1, n - (sizeof name - 1));
    }
    return n;
}

/* Sets every option of one request on h (reset or fresh). *hl receives the header list the
 * caller frees after the transfer; x receives the body and Retry-After. */
static sb_result_t setup_easy(CURL *h, const char *method, const char *url,
                              const char *const *headers, const void *body, size_t len,
                              long timeout_ms, xfer_t *x, struct curl_slist **hl)
{
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
    if (timeout_ms > 0) {
        curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, timeout_ms);
        curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, timeout_ms);
    }
    if (strcmp(method, "GET") == 0) {
        curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
    } else if (strcmp(method, "HEAD") == 0) {
        curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
    } else {
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    }
    if (body != NULL || strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0 ||
        strcmp(method, "PATCH") == 0) {
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, body != NULL ? (const char *)body : "");
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    }
    for (size_t i = 0; headers != NULL && headers[i] != NULL; i++) {
        struct curl_slist *nl = curl_slist_append(*hl, headers[i]);
        if (nl == NULL) return SB_E_INTERNAL;
        *hl = nl;
    }
    /* No "Expect: 100-continue" round trip: our bodies are small and servers answer at once. */
    struct curl_slist *nl = curl_slist_append(*hl, "Expect:");
    if (nl == NULL) return SB_E_INTERNAL;
    *hl = nl;
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, *hl);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, x);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, x);
    return SB_OK;
}

/* Turns a finished transfer into a result: on SB_OK out takes the body from x. */
static sb_result_t finish_xfer(CURL *h, CURLcode cc, xfer_t *x, long timeout_ms,
                               size_t max_response, sb_http_client_response_t *out)
{
    long status = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    if (cc == CURLE_OK) {
        out->status = status;
        out->retry_after_s = x->retry_after_s;
        if (x->body->len > 0) {
            sb_buf_append(x->body, "", 1);
            x->body->len--;
        }
        out->body = *x->body;
        *x->body = (sb_buf_t){0};
        return SB_OK;
    }
    if (x->too_large) {
        SB_DEBUG(MOD, "response too large max=%zu", max_response);
        out->status = status;
        return SB_E_TOO_LARGE;
    }
    if (cc == CURLE_OPERATION_TIMEDOUT) {
        SB_DEBUG(MOD, "request timed out timeout_ms=%ld", timeout_ms);
        return SB_E_TIMEOUT;
    }
    SB_DEBUG(MOD, "request failed curl=\"%s\"", curl_easy_strerror(cc));
    return cc == CURLE_URL_MALFORMAT || cc == CURLE_UNSUPPORTED_PROTOCOL ? SB_E_INVALID
                                                                         : SB_E_UNAVAILABLE;
}

sb_result_t sb_http_client_do(sb_http_client_t *c, const char *method, const char *url,
                              const char *const *headers, const void *body, size_t len,
                              long timeout_ms, size_t max_response, sb_http_client_response_t *out)
{
    struct curl_slist *hl = NULL;
    sb_buf_t buf = {0};
    xfer_t x = {.body = &buf, .max = max_response, .retry_after_s = -1};

    if (c == NULL || method == NULL || url == NULL || out == NULL || (body == NULL && len > 0))
        return SB_E_INVALID;
    out->status = 0;
    out->body = (sb_buf_t){0};
    out->retry_after_s = -1;

    CURL *h = c->curl;
    curl_easy_reset(h); /* options only: the connection cache survives */
    sb_result_t rc = setup_easy(h, method, url, headers, body, len, timeout_ms, &x, &hl);
    if (rc == SB_OK) {
        CURLcode cc = curl_easy_perform(h);
        sb_http_client_response_t r = {.status = 0, .retry_after_s = -1};
        rc = finish_xfer(h, cc, &x, timeout_ms, max_response, &r);
        if (rc == SB_OK) *out = r;
    }
    curl_slist_free_all(hl);
    sb_buf_free(&buf);
    return rc;
}

/* ---- asynchronous client ---------------------------------------------------------------- */

typedef struct post {
    sb_http_async_fn fn;
    void *ctx;
    struct post *next;
} post_t;

typedef struct atimer {
    uv_timer_t t;
    sb_http_async_t *a;
    sb_http_async_fn fn;
    void *ctx;
    struct atimer *prev, *next;
} atimer_t;

typedef struct sock {
    uv_poll_t poll;
    curl_socket_t fd;
    sb_http_async_t *a;
} sock_t;

typedef struct areq {
    sb_http_async_t *a;
    CURL *easy;
    struct curl_slist *hl;
    sb_buf_t buf;
    xfer_t x;
    void *body; /* our copy of the request body */
    long timeout_ms;
    size_t max_response;
    sb_http_async_done_fn done;
    void *ctx;
    uint64_t t0;
} areq_t;

struct sb_http_async {
    char name[32];
    uv_loop_t loop;
    uv_async_t wake;
    uv_timer_t curl_timer;
    CURLM *multi;
    pthread_t thread;
    pthread_mutex_t mu;
    post_t *head, *tail; /* under mu */
    bool refuse_posts;   /* under mu: destroy has begun */
    atomic_bool stopping;
    bool handles_closed; /* loop thread */
    size_t active;       /* loop thread */
    atimer_t *timers;    /* loop thread: pending timers */
    pthread_t loop_tid;
    atomic_bool loop_tid_set;
};

static void check_done(sb_http_async_t *a);
static void maybe_finish(sb_http_async_t *a);

static void on_sock_closed(uv_handle_t *h)
{
    free(h->data);
}

static void on_poll(uv_poll_t *p, int status, int events)
{
    sock_t *sk = p->data;
    int flags = 0;
    if (status < 0) {
        flags = CURL_CSELECT_ERR;
    } else {
        if (events & UV_READABLE) flags |= CURL_CSELECT_IN;
        if (events & UV_WRITABLE) flags |= CURL_CSELECT_OUT;
    }
    int running = 0;
    curl_multi_socket_action(sk->a->multi, sk->fd, flags, &running);
    check_done(sk->a);
}

static int on_curl_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
    (void)easy;
    sb_http_async_t *a = userp;
    sock_t *sk = socketp;
    if (what == CURL_POLL_REMOVE) {
        if (sk != NULL) {
            uv_poll_stop(&sk->poll);
            uv_close((uv_handle_t *)&sk->poll, on_sock_closed);
            curl_multi_assign(a->multi, fd, NULL);
        }
        return 0;
    }
    if (sk == NULL) {
        sk = sb_xcalloc(1, sizeof *sk);
        sk->fd = fd;
        sk->a = a;
        if (uv_poll_init_socket(&a->loop, &sk->poll, fd) != 0) {
            free(sk);
            return -1;
        }
        sk->poll.data = sk;
        curl_multi_assign(a->multi, fd, sk);
    }
    int events = 0;
    if (what == CURL_POLL_IN || what == CURL_POLL_INOUT) events |= UV_READABLE;
    if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT) events |= UV_WRITABLE;
    uv_poll_start(&sk->poll, events, on_poll);
    return 0;
}

static void on_curl_timer_fire(uv_timer_t *t)
{
    sb_http_async_t *a = t->data;
    int running = 0;
    curl_multi_socket_action(a->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    check_done(a);
}

static int on_curl_timer(CURLM *multi, long timeout_ms, void *userp)
{
    (void)multi;
    sb_http_async_t *a = userp;
    if (timeout_ms < 0) {
        uv_timer_stop(&a->curl_timer);
    } else {
        /* 0 means "as soon as possible": not from inside this callback, so on the next turn. */
        uv_timer_start(&a->curl_timer, on_curl_timer_fire, (uint64_t)timeout_ms, 0);
    }
    return 0;
}

static void areq_free(areq_t *r)
{
    if (r->easy != NULL) curl_easy_cleanup(r->easy);
    curl_slist_free_all(r->hl);
    sb_buf_free(&r->buf);
    free(r->body);
    free(r);
}

/* Reaps finished transfers and calls their done callbacks. */
static void check_done(sb_http_async_t *a)
{
    CURLMsg *m;
    int left = 0;
    while ((m = curl_multi_info_read(a->multi, &left)) != NULL) {
        if (m->msg != CURLMSG_DONE) continue;
        CURL *easy = m->easy_handle;
        CURLcode cc = m->data.result;
        areq_t *r = NULL;
        curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&r);
        curl_multi_remove_handle(a->multi, easy);
        sb_http_async_result_t res = {.resp = {.status = 0, .retry_after_s = -1}};
        res.rc = finish_xfer(easy, cc, &r->x, r->timeout_ms, r->max_response, &res.resp);
        res.seconds = (double)(sb_mono_ns() - r->t0) / 1e9;
        a->active--;
        r->done(r->ctx, &res);
        sb_buf_free(&res.resp.body);
        areq_free(r);
    }
    maybe_finish(a);
}

sb_result_t sb_http_async_send(sb_http_async_t *a, const sb_http_async_request_t *req,
                               sb_http_async_done_fn done, void *ctx)
{
    if (a == NULL || req == NULL || done == NULL || req->method == NULL || req->url == NULL ||
        (req->body == NULL && req->len > 0))
        return SB_E_INVALID;
    if (atomic_load(&a->stopping)) return SB_E_UNAVAILABLE;
    areq_t *r = sb_xcalloc(1, sizeof *r);
    r->a = a;
    r->done = done;
    r->ctx = ctx;
    r->timeout_ms = req->timeout_ms;
    r->max_response = req->max_response;
    r->x = (xfer_t){.body = &r->buf, .max = req->max_response, .retry_after_s = -1};
    if (req->body != NULL) {
        r->body = sb_xmalloc(req->len ? req->len : 1);
        memcpy(r->body, req->body, req->len);
    }
    r->easy = curl_easy_init();
    sb_result_t rc = r->easy ? SB_OK : SB_E_INTERNAL;
    if (rc == SB_OK)
        rc = setup_easy(r->easy, req->method, req->url, req->headers, r->body, req->len,
                        req->timeout_ms, &r->x, &r->hl);
    if (rc == SB_OK) {
        curl_easy_setopt(r->easy, CURLOPT_PRIVATE, (char *)r);
        r->t0 = sb_mono_ns();
        if (curl_multi_add_handle(a->multi, r->easy) != CURLM_OK) rc = SB_E_INTERNAL;
    }
    if (rc != SB_OK) {
        areq_free(r);
        return rc;
    }
    a->active++;
    return SB_OK;
}

size_t sb_http_async_active(const sb_http_async_t *a)
{
    return a->active;
}

bool sb_http_async_stopping(const sb_http_async_t *a)
{
    return atomic_load(&((sb_http_async_t *)a)->stopping);
}

bool sb_http_async_on_loop(const sb_http_async_t *a)
{
    return atomic_load(&((sb_http_async_t *)a)->loop_tid_set) &&
           pthread_equal(pthread_self(), a->loop_tid);
}

static void on_timer_closed(uv_handle_t *h)
{
    free(h->data);
}

static void timer_unlink(atimer_t *t)
{
    sb_http_async_t *a = t->a;
    if (t->prev)
        t->prev->next = t->next;
    else
        a->timers = t->next;
    if (t->next) t->next->prev = t->prev;
    t->prev = t->next = NULL;
}

static void on_atimer(uv_timer_t *h)
{
    atimer_t *t = h->data;
    sb_http_async_t *a = t->a;
    timer_unlink(t);
    uv_close((uv_handle_t *)&t->t, on_timer_closed);
    t->fn(t->ctx);
    maybe_finish(a);
}

void sb_http_async_after(sb_http_async_t *a, uint64_t delay_ms, sb_http_async_fn fn, void *ctx)
{
    atimer_t *t = sb_xcalloc(1, sizeof *t);
    t->a = a;
    t->fn = fn;
    t->ctx = ctx;
    uv_timer_init(&a->loop, &t->t);
    t->t.data = t;
    t->next = a->timers;
    if (a->timers) a->timers->prev = t;
    a->timers = t;
    uv_timer_start(&t->t, on_atimer, atomic_load(&a->stopping) ? 0 : delay_ms, 0);
}

static void run_posts(sb_http_async_t *a)
{
    for (;;) {
        pthread_mutex_lock(&a->mu);
        post_t *p = a->head;
        a->head = a->tail = NULL;
        pthread_mutex_unlock(&a->mu);
        if (p == NULL) break;
        while (p != NULL) {
            post_t *next = p->next;
            p->fn(p->ctx);
            free(p);
            p = next;
        }
    }
}

static void on_handle_closed(uv_handle_t *h)
{
    (void)h;
}

/* While stopping: once nothing is queued, pending or in flight, close the loop's own handles
 * so that uv_run returns. */
static void maybe_finish(sb_http_async_t *a)
{
    if (!atomic_load(&a->stopping) || a->handles_closed) return;
    run_posts(a);
    if (a->active > 0 || a->timers != NULL) return;
    pthread_mutex_lock(&a->mu);
    bool empty = a->head == NULL;
    pthread_mutex_unlock(&a->mu);
    if (!empty) return;
    a->handles_closed = true;
    uv_timer_stop(&a->curl_timer);
    uv_close((uv_handle_t *)&a->curl_timer, on_handle_closed);
    uv_close((uv_handle_t *)&a->wake, on_handle_closed);
}

static void on_wake(uv_async_t *w)
{
    sb_http_async_t *a = w->data;
    run_posts(a);
    if (atomic_load(&a->stopping)) {
        /* Pending timers fire now; their callbacks see sb_http_async_stopping(). */
        for (atimer_t *t = a->timers; t != NULL; t = t->next)
            uv_timer_start(&t->t, on_atimer, 0, 0);
        maybe_finish(a);
    }
}

static void *loop_thread(void *arg)
{
    sb_http_async_t *a = arg;
    a->loop_tid = pthread_self();
    atomic_store(&a->loop_tid_set, true);
    uv_run(&a->loop, UV_RUN_DEFAULT);
    /* Close whatever is left (nothing, normally) and check the loop closes cleanly. */
    int rc = uv_loop_close(&a->loop);
    if (rc != 0)
        SB_ERROR(MOD, "async loop did not close cleanly name=%s err=%s", a->name, uv_err_name(rc));
    return NULL;
}

sb_result_t sb_http_async_create(sb_http_async_t **out, const char *name)
{
    if (out == NULL) return SB_E_INVALID;
    pthread_once(&global_once, global_init);
    if (global_rc != CURLE_OK) return SB_E_INTERNAL;
    sb_http_async_t *a = sb_xcalloc(1, sizeof *a);
    snprintf(a->name, sizeof a->name, "%s", name ? name : "http-async");
    atomic_init(&a->stopping, false);
    atomic_init(&a->loop_tid_set, false);
    pthread_mutex_init(&a->mu, NULL);
    if (uv_loop_init(&a->loop) != 0) {
        pthread_mutex_destroy(&a->mu);
        free(a);
        return SB_E_INTERNAL;
    }
    a->multi = curl_multi_init();
    if (a->multi == NULL) {
        (void)uv_loop_close(&a->loop);
        pthread_mutex_destroy(&a->mu);
        free(a);
        return SB_E_INTERNAL;
    }
    curl_multi_setopt(a->multi, CURLMOPT_SOCKETFUNCTION, on_curl_socket);
    curl_multi_setopt(a->multi, CURLMOPT_SOCKETDATA, a);
    curl_multi_setopt(a->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer);
    curl_multi_setopt(a->multi, CURLMOPT_TIMERDATA, a);
    uv_async_init(&a->loop, &a->wake, on_wake);
    a->wake.data = a;
    uv_timer_init(&a->loop, &a->curl_timer);
    a->curl_timer.data = a;
    if (pthread_create(&a->thread, NULL, loop_thread, a) != 0) {
        uv_close((uv_handle_t *)&a->wake, NULL);
        uv_close((uv_handle_t *)&a->curl_timer, NULL);
        uv_run(&a->loop, UV_RUN_DEFAULT);
        (void)uv_loop_close(&a->loop);
        curl_multi_cleanup(a->multi);
        pthread_mutex_destroy(&a->mu);
        free(a);
        return SB_E_INTERNAL;
    }
    *out = a;
    return SB_OK;
}

sb_result_t sb_http_async_post(sb_http_async_t *a, sb_http_async_fn fn, void *ctx)
{
    if (a == NULL || fn == NULL) return SB_E_INVALID;
    post_t *p = sb_xcalloc(1, sizeof *p);
    p->fn = fn;
    p->ctx = ctx;
    pthread_mutex_lock(&a->mu);
    if (a->refuse_posts) {
        pthread_mutex_unlock(&a->mu);
        free(p);
        return SB_E_UNAVAILABLE;
    }
    if (a->tail)
        a->tail->next = p;
    else
        a->head = p;
    a->tail = p;
    /* Under the lock: the wake handle is closed only after refuse_posts is set and the
     * queue drained, so it is alive here. */
    uv_async_send(&a->wake);
    pthread_mutex_unlock(&a->mu);
    return SB_OK;
}

void sb_http_async_destroy(sb_http_async_t *a)
{
    if (a == NULL) return;
    SB_REQUIRE(!sb_http_async_on_loop(a));
    pthread_mutex_lock(&a->mu);
    a->refuse_posts = true;
    atomic_store(&a->stopping, true);
    uv_async_send(&a->wake);
    pthread_mutex_unlock(&a->mu);
    pthread_join(a->thread, NULL);
    curl_multi_cleanup(a->multi);
    pthread_mutex_destroy(&a->mu);
    free(a);
}
