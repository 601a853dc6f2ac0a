/* Unit tests of the asynchronous HTTP client (core/src/httpclient.c: curl multi on a libuv loop
 * thread) over real loopback sockets. A core HTTP server on its own thread plays the provider:
 * GET /x?status=<n>&delay=<ms>&retry=<s>&size=<bytes> answers after delay ms (on a pool
 * thread, so several answers can be pending at once) and counts how many requests it holds at
 * the same time. Each test checks outcomes (statuses, bodies, error codes, callback thread,
 * ordering, overlap) and that everything is released at destroy. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sb/http.h"
#include "sb/httpclient.h"
#include "sb/util.h"

typedef struct server {
    sb_http_server_t *srv;
    pthread_t th;
    int port;
    atomic_int holding;
    atomic_int max_holding;
} server_t;

typedef struct held {
    server_t *s;
    int status, delay_ms, retry_s;
    size_t size;
} held_t;

static int qint(const sb_http_request_t *req, const char *name, int def)
{
    char buf[32];
    return sb_http_query_param(req, name, buf, sizeof buf) ? atoi(buf) : def;
}

static void hold_work(void *ctx)
{
    held_t *h = ctx;
    int now = atomic_fetch_add(&h->s->holding, 1) + 1;
    int max = atomic_load(&h->s->max_holding);
    while (now > max && !atomic_compare_exchange_weak(&h->s->max_holding, &max, now)) {
    }
    if (h->delay_ms > 0) usleep((useconds_t)h->delay_ms * 1000);
    atomic_fetch_sub(&h->s->holding, 1);
}

static void hold_done(sb_http_request_t *req, void *ctx)
{
    held_t *h = ctx;
    char retry[48];
    const char *extra[] = {retry, NULL};
    snprintf(retry, sizeof retry, "Retry-After: %d", h->retry_s);
    char *body = sb_xmalloc(h->size + 1);
    memset(body, 'x', h->size);
    body[h->size] = '\0';
    sb_http_respond(req, h->status, "text/plain", h->retry_s > 0 ? extra : NULL, body, h->size);
    free(body);
    free(h);
}

static void on_req(sb_http_request_t *req)
{
    held_t *h = sb_xcalloc(1, sizeof *h);
    h->s = req->route_ctx;
    h->status = qint(req, "status", 200);
    h->delay_ms = qint(req, "delay", 0);
    h->retry_s = qint(req, "retry", 0);
    h->size = (size_t)qint(req, "size", 2);
    sb_http_defer(req, hold_work, hold_done, h);
}

static void *server_thread(void *arg)
{
    server_t *s = arg;
    assert_int_equal(sb_http_server_run(s->srv), SB_OK);
    return NULL;
}

static server_t *server_start(void)
{
    server_t *s = sb_xcalloc(1, sizeof *s);
    sb_http_limits_t lim = {.max_header_bytes = 16384, .max_headers = 64};
    assert_int_equal(sb_http_server_create(&s->srv, "127.0.0.1:0", &lim), SB_OK);
    sb_http_server_route(s->srv, NULL, "/", 1 << 20, on_req, s);
    s->port = sb_http_server_port(s->srv);
    assert_int_equal(pthread_create(&s->th, NULL, server_thread, s), 0);
    return s;
}

static void server_stop(server_t *s)
{
    sb_http_server_stop(s->srv);
    pthread_join(s->th, NULL);
    sb_http_server_destroy(s->srv);
    free(s);
}

/* --- a batch of requests started from the loop thread ------------------------------------- */

#define MAXR 16

typedef struct batch {
    sb_http_async_t *a;
    char urls[MAXR][160];
    size_t n;
    long timeout_ms;
    size_t max_response;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    size_t done;
    sb_result_t rc[MAXR];
    long status[MAXR];
    long retry_after[MAXR];
    size_t body_len[MAXR];
    bool on_loop[MAXR];
    sb_result_t send_rc;
} batch_t;

typedef struct slot {
    batch_t *b;
    size_t i;
} slot_t;

static slot_t slots[MAXR];

static void on_done(void *ctx, sb_http_async_result_t *res)
{
    slot_t *sl = ctx;
    batch_t *b = sl->b;
    pthread_mutex_lock(&b->mu);
    b->rc[sl->i] = res->rc;
    b->status[sl->i] = res->resp.status;
    b->retry_after[sl->i] = res->resp.retry_after_s;
    b->body_len[sl->i] = res->resp.body.len;
    b->on_loop[sl->i] = sb_http_async_on_loop(b->a);
    b->done++;
    pthread_cond_broadcast(&b->cv);
    pthread_mutex_unlock(&b->mu);
}

static void start_all(void *ctx)
{
    batch_t *b = ctx;
    for (size_t i = 0; i < b->n; i++) {
        slots[i] = (slot_t){b, i};
        const char *hdr[] = {"X-Test: 1", NULL};
        sb_http_async_request_t req = {.method = "POST",
                                       .url = b->urls[i],
                                       .headers = hdr,
                                       .body = "{}",
                                       .len = 2,
                                       .timeout_ms = b->timeout_ms,
                                       .max_response = b->max_response};
        sb_result_t rc = sb_http_async_send(b->a, &req, on_done, &slots[i]);
        if (rc != SB_OK) b->send_rc = rc;
    }
}

static void batch_run(batch_t *b)
{
    pthread_mutex_init(&b->mu, NULL);
    pthread_cond_init(&b->cv, NULL);
    assert_int_equal(sb_http_async_post(b->a, start_all, b), SB_OK);
    pthread_mutex_lock(&b->mu);
    for (int i = 0; i < 300 && b->done < b->n; i++) {
        pthread_mutex_unlock(&b->mu);
        usleep(50 * 1000);
        pthread_mutex_lock(&b->mu);
    }
    pthread_mutex_unlock(&b->mu);
    assert_int_equal(b->send_rc, SB_OK);
    assert_int_equal(b->done, b->n);
    pthread_cond_destroy(&b->cv);
    pthread_mutex_destroy(&b->mu);
}

static void test_concurrent_requests(void **state)
{
    (void)state;
    server_t *s = server_start();
    sb_http_async_t *a = NULL;
    assert_int_equal(sb_http_async_create(&a, "test"), SB_OK);
    batch_t b = {.a = a, .n = 8, .timeout_ms = 10000, .max_response = 4096};
    for (size_t i = 0; i < b.n; i++)
        snprintf(b.urls[i], sizeof b.urls[i], "http://127.0.0.1:%d/x?delay=300&size=%zu", s->port,
                 i + 1);
    batch_run(&b);
    for (size_t i = 0; i < b.n; i++) {
        assert_int_equal(b.rc[i], SB_OK);
        assert_int_equal(b.status[i], 200);
        assert_int_equal(b.body_len[i], i + 1);
        assert_true(b.on_loop[i]);
    }
    /* They were in flight together: the server held several at once. */
    assert_true(atomic_load(&s->max_holding) >= 4);
    sb_http_async_destroy(a);
    server_stop(s);
}

static void test_statuses_and_errors(void **state)
{
    (void)state;
    server_t *s = server_start();
    sb_http_async_t *a = NULL;
    assert_int_equal(sb_http_async_create(&a, "test"), SB_OK);
    int closed_port = sb_http_server_port(s->srv) == 1 ? 2 : 1; /* nothing listens on 1 */
    batch_t b = {.a = a, .n = 5, .timeout_ms = 1000, .max_response = 100};
    snprintf(b.urls[0], sizeof b.urls[0], "http://127.0.0.1:%d/x?status=429&retry=7", s->port);
    snprintf(b.urls[1], sizeof b.urls[1], "http://127.0.0.1:%d/x?status=503", s->port);
    snprintf(b.urls[2], sizeof b.urls[2], "http://127.0.0.1:%d/x?size=5000", s->port);
    snprintf(b.urls[3], sizeof b.urls[3], "http://127.0.0.1:%d/x?delay=3000", s->port);
    snprintf(b.urls[4], sizeof b.urls[4], "http://127.0.0.1:%d/x", closed_port);
    batch_run(&b);
    assert_int_equal(b.rc[0], SB_OK);
    assert_int_equal(b.status[0], 429);
    assert_int_equal(b.retry_after[0], 7);
    assert_int_equal(b.rc[1], SB_OK);
    assert_int_equal(b.status[1], 503);
    assert_int_equal(b.retry_after[1], -1);
    assert_int_equal(b.rc[2], SB_E_TOO_LARGE);
    assert_int_equal(b.rc[3], SB_E_TIMEOUT);
    assert_int_equal(b.rc[4], SB_E_UNAVAILABLE);
    assert_int_equal(b.status[4], 0);
    sb_http_async_destroy(a);
    server_stop(s);
}

/* --- posts and timers --------------------------------------------------------------------- */

typedef struct order {
    sb_http_async_t *a;
    pthread_mutex_t mu;
    int seen[8];
    int n;
    bool all_on_loop;
    uint64_t t0, fired_ns;
    bool fired_stopping;
} order_t;

typedef struct step {
    order_t *o;
    int k;
} step_t;

static void record(void *ctx)
{
    step_t *st = ctx;
    pthread_mutex_lock(&st->o->mu);
    st->o->seen[st->o->n++] = st->k;
    if (!sb_http_async_on_loop(st->o->a)) st->o->all_on_loop = false;
    pthread_mutex_unlock(&st->o->mu);
}

static void on_timer(void *ctx)
{
    order_t *o = ctx;
    pthread_mutex_lock(&o->mu);
    o->fired_ns = sb_mono_ns();
    o->fired_stopping = sb_http_async_stopping(o->a);
    pthread_mutex_unlock(&o->mu);
}

static void arm_timer(void *ctx)
{
    order_t *o = ctx;
    o->t0 = sb_mono_ns();
    sb_http_async_after(o->a, 200, on_timer, o);
}

static void arm_long_timer(void *ctx)
{
    order_t *o = ctx;
    sb_http_async_after(o->a, 3600 * 1000, on_timer, o);
}

static void test_posts_and_timers(void **state)
{
    (void)state;
    order_t o = {.all_on_loop = true};
    pthread_mutex_init(&o.mu, NULL);
    assert_int_equal(sb_http_async_create(&o.a, "test"), SB_OK);
    assert_false(sb_http_async_on_loop(o.a));
    step_t steps[5];
    for (int k = 0; k < 5; k++) {
        steps[k] = (step_t){&o, k};
        assert_int_equal(sb_http_async_post(o.a, record, &steps[k]), SB_OK);
    }
    assert_int_equal(sb_http_async_post(o.a, arm_timer, &o), SB_OK);
    for (int i = 0; i < 100; i++) {
        pthread_mutex_lock(&o.mu);
        bool fired = o.fired_ns != 0;
        pthread_mutex_unlock(&o.mu);
        if (fired) break;
        usleep(20 * 1000);
    }
    assert_int_equal(o.n, 5);
    for (int k = 0; k < 5; k++)
        assert_int_equal(o.seen[k], k);
    assert_true(o.all_on_loop);
    assert_true(o.fired_ns != 0);
    assert_true(o.fired_ns - o.t0 >= 190ull * 1000 * 1000); /* not before its delay */
    assert_false(o.fired_stopping);

    /* A timer an hour away fires at once when the client stops. */
    o.fired_ns = 0;
    assert_int_equal(sb_http_async_post(o.a, arm_long_timer, &o), SB_OK);
    usleep(50 * 1000);
    sb_http_async_destroy(o.a);
    assert_true(o.fired_ns != 0);
    assert_true(o.fired_stopping);
    pthread_mutex_destroy(&o.mu);
}

/* Destroy waits for a transfer in flight: its callback runs before destroy returns. */
static void test_destroy_finishes_in_flight(void **state)
{
    (void)state;
    server_t *s = server_start();
    sb_http_async_t *a = NULL;
    assert_int_equal(sb_http_async_create(&a, "test"), SB_OK);
    batch_t b = {.a = a, .n = 1, .timeout_ms = 5000, .max_response = 100};
    pthread_mutex_init(&b.mu, NULL);
    pthread_cond_init(&b.cv, NULL);
    snprintf(b.urls[0], sizeof b.urls[0], "http://127.0.0.1:%d/x?delay=300&status=202", s->port);
    assert_int_equal(sb_http_async_post(a, start_all, &b), SB_OK);
    usleep(100 * 1000);
    sb_http_async_destroy(a);
    assert_int_equal(b.done, 1);
    assert_int_equal(b.rc[0], SB_OK);
    assert_int_equal(b.status[0], 202);
    pthread_cond_destroy(&b.cv);
    pthread_mutex_destroy(&b.mu);
    server_stop(s);
}

int main(void)
{
    setenv("UV_THREADPOOL_SIZE", "16", 1); /* the server holds several answers at once */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_concurrent_requests),
        cmocka_unit_test(test_statuses_and_errors),
        cmocka_unit_test(test_posts_and_timers),
        cmocka_unit_test(test_destroy_finishes_in_flight),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
