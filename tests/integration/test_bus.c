/* The bus (core/src/bus.c) against a real nats-server with JetStream: idempotent stream
 * creation (also by concurrent creators and with changed limits), publish with duplicate
 * detection by Nats-Msg-Id, pull consumers whose handler verdicts become ack / nak-with-delay /
 * term, two bindings of one durable sharing work without loss or double handling, core
 * subscriptions, and publishing while the server is down and after it came back on the same
 * port and store. Each test has its own server and store. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "sb/bus.h"
#include "sb/config.h"
#include "sb/log.h"
#include "sb/util.h"

#define ACK_WAIT_S 1

/* Another connection with the default limits (those of h->bus). */
static sb_bus_t *connect_default(sb_harness_t *h)
{
    sb_config_t cfg;
    char err[256];
    assert_int_equal(sb_config_load(&cfg, NULL, err, sizeof err), SB_OK);
    sb_config_nats_t n = cfg.nats;
    n.url = h->nats_url;
    sb_bus_t *bus = NULL;
    assert_int_equal(sb_bus_connect(&bus, &n, "test-default", true), SB_OK);
    sb_config_free(&cfg);
    return bus;
}

/* A second connection with a short ack wait, so that "not redelivered" is observable within
 * a test: a message that was not acked would come back after ACK_WAIT_S. */
static sb_bus_t *connect_short_ackwait(sb_harness_t *h)
{
    sb_config_t cfg;
    char err[256];
    assert_int_equal(sb_config_load(&cfg, NULL, err, sizeof err), SB_OK);
    sb_config_nats_t n = cfg.nats;
    n.url = h->nats_url;
    n.ack_wait_s = ACK_WAIT_S;
    n.publish_timeout_ms = 2000;
    sb_bus_t *bus = NULL;
    assert_int_equal(sb_bus_connect(&bus, &n, "test-bus", true), SB_OK);
    sb_config_free(&cfg);
    return bus;
}

static int setup(void **state)
{
    sb_harness_t *h = sb_xcalloc(1, sizeof *h);
    assert_int_equal(sb_harness_start_nats(h), SB_OK);
    *state = h;
    return 0;
}

static int teardown(void **state)
{
    sb_harness_t *h = *state;
    sb_harness_stop(h);
    free(h);
    return 0;
}

/* --- recording handler -------------------------------------------------------------------- */

#define MAX_SEEN 256

typedef struct seen {
    pthread_mutex_t mu;
    size_t n;
    char data[MAX_SEEN][32];
    uint64_t delivered[MAX_SEEN];
    uint64_t seq[MAX_SEEN];
    sb_result_t verdict; /* what the handler answers */
} seen_t;

static sb_result_t record(void *ctx, const sb_bus_msg_t *m)
{
    seen_t *s = ctx;
    pthread_mutex_lock(&s->mu);
    if (s->n < MAX_SEEN) {
        size_t len = m->len < 31 ? m->len : 31;
        memcpy(s->data[s->n], m->data, len);
        s->data[s->n][len] = '\0';
        s->delivered[s->n] = m->num_delivered;
        s->seq[s->n] = m->stream_seq;
        s->n++;
    }
    sb_result_t v = s->verdict;
    pthread_mutex_unlock(&s->mu);
    return v;
}

static void seen_init(seen_t *s, sb_result_t verdict)
{
    memset(s, 0, sizeof *s);
    pthread_mutex_init(&s->mu, NULL);
    s->verdict = verdict;
}

static void publish_ok(sb_bus_t *bus, const char *subject, const char *text, const char *id)
{
    bool dup = true;
    assert_int_equal(sb_bus_publish(bus, subject, text, strlen(text), id, &dup), SB_OK);
    assert_false(dup);
}

/* --- tests -------------------------------------------------------------------------------- */

static void test_subjects(void **state)
{
    (void)state;
    char buf[64];
    assert_int_equal(sb_bus_subject(buf, sizeof buf, "sb.in.%d.%s", 3, "webchat"), SB_OK);
    assert_string_equal(buf, "sb.in.3.webchat");
    assert_int_equal(sb_bus_subject(buf, sizeof buf, "sb.in.%s", ">"), SB_OK);
    assert_int_equal(sb_bus_subject(buf, sizeof buf, "sb.in.%s", "a b"), SB_E_INVALID);
    assert_string_equal(buf, "");
    assert_int_equal(sb_bus_subject(buf, sizeof buf, "sb.in.%s", ""), SB_E_INVALID);
    assert_int_equal(sb_bus_subject(buf, sizeof buf, "sb.%s.x", "*"), SB_E_INVALID);
    assert_int_equal(sb_bus_subject(buf, sizeof buf, "sb.%s.x", ">"), SB_E_INVALID);
    assert_int_equal(sb_bus_subject(buf, sizeof buf, "sb.in.%s", "a>"), SB_E_INVALID);
    assert_int_equal(sb_bus_subject(buf, 8, "sb.in.%s", "toolong"), SB_E_TOO_LARGE);
    assert_true(sb_bus_is_token("webchat"));
    assert_true(sb_bus_is_token("c-1_x"));
    assert_false(sb_bus_is_token("a.b"));
    assert_false(sb_bus_is_token(""));
    assert_false(sb_bus_is_token("a\tb"));
    assert_false(sb_bus_is_token(">"));
    assert_false(sb_bus_is_token(NULL));
}

typedef struct ensure_arg {
    sb_harness_t *h;
    sb_result_t rc;
} ensure_arg_t;

static void *ensure_thread(void *arg)
{
    ensure_arg_t *a = arg;
    sb_bus_t *bus = connect_short_ackwait(a->h);
    a->rc = sb_bus_ensure_streams(bus);
    sb_bus_destroy(bus);
    return NULL;
}

static void test_ensure_streams(void **state)
{
    sb_harness_t *h = *state;
    assert_true(sb_bus_has_streams(h->bus));
    /* Again, twice at once from two connections: idempotent, nobody fails. */
    ensure_arg_t a = {h, SB_E_INTERNAL}, b = {h, SB_E_INTERNAL};
    pthread_t ta, tb;
    assert_int_equal(pthread_create(&ta, NULL, ensure_thread, &a), 0);
    assert_int_equal(pthread_create(&tb, NULL, ensure_thread, &b), 0);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    assert_int_equal(a.rc, SB_OK);
    assert_int_equal(b.rc, SB_OK);

    /* Changed limits update the existing streams; the stored messages stay. */
    publish_ok(h->bus, "sb.ev.test", "kept", "ev-1");
    sb_config_t cfg;
    char err[256];
    assert_int_equal(sb_config_load(&cfg, NULL, err, sizeof err), SB_OK);
    sb_config_nats_t n = cfg.nats;
    n.url = h->nats_url;
    n.duplicate_window_s = 60;
    sb_bus_t *bus = NULL;
    assert_int_equal(sb_bus_connect(&bus, &n, "test-update", true), SB_OK);
    assert_int_equal(sb_bus_ensure_streams(bus), SB_OK);
    assert_true(sb_bus_has_streams(bus));
    uint64_t count = 0;
    assert_int_equal(sb_bus_stream_count(bus, SB_STREAM_EVENTS, NULL, &count), SB_OK);
    assert_int_equal(count, 1);
    sb_bus_destroy(bus);
    sb_config_free(&cfg);

    assert_int_equal(sb_bus_stream_count(h->bus, "NO_SUCH_STREAM", NULL, &count), SB_E_NOT_FOUND);
}

typedef struct collect {
    char subjects[8][64];
    char data[8][32];
    size_t n;
} collect_t;

static void on_collect(void *ctx, const char *subject, const void *data, size_t len)
{
    collect_t *c = ctx;
    if (c->n >= 8) return;
    snprintf(c->subjects[c->n], sizeof c->subjects[c->n], "%s", subject);
    snprintf(c->data[c->n], sizeof c->data[c->n], "%.*s", (int)len, (const char *)data);
    c->n++;
}

static void test_publish_dedup(void **state)
{
    sb_harness_t *h = *state;
    bool dup = true;
    assert_int_equal(sb_bus_publish(h->bus, "sb.in.0.test", "first", 5, "m-1", &dup), SB_OK);
    assert_false(dup);
    /* Same id inside the window: stored once, reported as a duplicate. */
    assert_int_equal(sb_bus_publish(h->bus, "sb.in.0.test", "first", 5, "m-1", &dup), SB_OK);
    assert_true(dup);
    assert_int_equal(sb_bus_publish(h->bus, "sb.in.1.test", "second", 6, "m-2", &dup), SB_OK);
    assert_false(dup);
    /* Without an id nothing is deduplicated. */
    assert_int_equal(sb_bus_publish(h->bus, "sb.in.1.other", "x", 1, NULL, NULL), SB_OK);
    assert_int_equal(sb_bus_publish(h->bus, "sb.in.1.other", "x", 1, NULL, NULL), SB_OK);

    uint64_t n = 0;
    assert_int_equal(sb_bus_stream_count(h->bus, SB_STREAM_IN, "sb.in.*.test", &n), SB_OK);
    assert_int_equal(n, 2);
    assert_int_equal(sb_bus_stream_count(h->bus, SB_STREAM_IN, NULL, &n), SB_OK);
    assert_int_equal(n, 4);
    assert_int_equal(sb_harness_wait_stream(h, SB_STREAM_IN, "sb.in.*.test", 2, 1000), 2);

    collect_t c = {0};
    size_t count = 0;
    assert_int_equal(
        sb_harness_read_stream(h, SB_STREAM_IN, "sb.in.*.test", on_collect, &c, &count), SB_OK);
    assert_int_equal(count, 2);
    assert_int_equal(c.n, 2);
    assert_string_equal(c.subjects[0], "sb.in.0.test");
    assert_string_equal(c.data[0], "first");
    assert_string_equal(c.subjects[1], "sb.in.1.test");
    assert_string_equal(c.data[1], "second");

    /* Reading did not consume anything: a durable still gets everything. */
    sb_bus_pull_t *pull = NULL;
    assert_int_equal(sb_bus_pull_create(h->bus, SB_STREAM_IN, "dedup", "sb.in.*.test", &pull),
                     SB_OK);
    seen_t s;
    seen_init(&s, SB_OK);
    int handled = 0;
    int total = 0;
    for (int i = 0; i < 10 && total < 2; i++) {
        assert_int_equal(sb_bus_pull_fetch(pull, 10, 1000, record, &s, &handled), SB_OK);
        total += handled;
    }
    assert_int_equal(total, 2);
    sb_bus_pull_destroy(pull);

    /* Invalid arguments are refused, not sent. */
    assert_int_equal(sb_bus_publish(h->bus, NULL, "x", 1, NULL, NULL), SB_E_INVALID);
}

static void test_pull_ack_nak_term(void **state)
{
    sb_harness_t *h = *state;
    sb_bus_t *bus = connect_short_ackwait(h);
    sb_bus_pull_t *pull = NULL;
    assert_int_equal(sb_bus_pull_create(bus, SB_STREAM_NLU, "worker", "sb.nlu.>", &pull), SB_OK);
    /* Creating it again (a second copy of the service starting) is fine. */
    sb_bus_pull_t *again = NULL;
    assert_int_equal(sb_bus_pull_create(bus, SB_STREAM_NLU, "worker", "sb.nlu.>", &again), SB_OK);
    sb_bus_pull_destroy(again);

    seen_t s;
    int handled = -1;

    /* Nothing there: a timeout is SB_OK with nothing handled. */
    seen_init(&s, SB_OK);
    assert_int_equal(sb_bus_pull_fetch(pull, 5, 200, record, &s, &handled), SB_OK);
    assert_int_equal(handled, 0);

    /* Ack: handled once, and not redelivered after the ack wait. */
    publish_ok(bus, "sb.nlu.0", "acked", "n-1");
    assert_int_equal(sb_bus_pull_fetch(pull, 5, 5000, record, &s, &handled), SB_OK);
    assert_int_equal(handled, 1);
    assert_string_equal(s.data[0], "acked");
    assert_int_equal(s.delivered[0], 1);
    assert_true(s.seq[0] > 0);
    assert_int_equal(sb_bus_pull_fetch(pull, 5, (ACK_WAIT_S + 1) * 1000, record, &s, &handled),
                     SB_OK);
    assert_int_equal(handled, 0);

    /* Unavailable: nak'd with a short delay and delivered again, num_delivered 2. */
    publish_ok(bus, "sb.nlu.1", "retry", "n-2");
    seen_init(&s, SB_E_UNAVAILABLE);
    assert_int_equal(sb_bus_pull_fetch(pull, 5, 5000, record, &s, &handled), SB_OK);
    assert_int_equal(handled, 1);
    assert_int_equal(s.delivered[0], 1);
    s.verdict = SB_OK;
    assert_int_equal(sb_bus_pull_fetch(pull, 5, 5000, record, &s, &handled), SB_OK);
    assert_int_equal(handled, 1);
    assert_string_equal(s.data[1], "retry");
    assert_int_equal(s.delivered[1], 2);
    assert_int_equal(s.seq[1], s.seq[0]);

    /* Invalid: terminated, never delivered again (not even after the ack wait). */
    publish_ok(bus, "sb.nlu.2", "poison", "n-3");
    seen_init(&s, SB_E_INVALID);
    assert_int_equal(sb_bus_pull_fetch(pull, 5, 5000, record, &s, &handled), SB_OK);
    assert_int_equal(handled, 1);
    assert_string_equal(s.data[0], "poison");
    s.verdict = SB_OK;
    assert_int_equal(sb_bus_pull_fetch(pull, 5, (ACK_WAIT_S + 1) * 1000, record, &s, &handled),
                     SB_OK);
    assert_int_equal(handled, 0);

    /* Duplicate counts as done. */
    publish_ok(bus, "sb.nlu.3", "dup", "n-4");
    seen_init(&s, SB_E_DUPLICATE);
    assert_int_equal(sb_bus_pull_fetch(pull, 5, 5000, record, &s, &handled), SB_OK);
    assert_int_equal(handled, 1);
    assert_int_equal(sb_bus_pull_fetch(pull, 5, (ACK_WAIT_S + 1) * 1000, record, &s, &handled),
                     SB_OK);
    assert_int_equal(handled, 0);

    sb_bus_pull_destroy(pull);

    /* A copy of the service started with other limits binds to the existing durable. */
    assert_int_equal(sb_bus_pull_create(h->bus, SB_STREAM_NLU, "worker", "sb.nlu.>", &again),
                     SB_OK);
    sb_bus_pull_destroy(again);

    /* A durable on a stream that does not exist. */
    assert_int_equal(sb_bus_pull_create(bus, "NO_SUCH_STREAM", "worker", NULL, &pull),
                     SB_E_NOT_FOUND);
    assert_int_equal(sb_bus_pull_create(bus, SB_STREAM_NLU, "bad.name", NULL, &pull), SB_E_INVALID);
    sb_bus_destroy(bus);
}

#define SPLIT_N 100

typedef struct split {
    sb_bus_t *bus;
    pthread_mutex_t *mu;
    int *hits; /* per message number */
    int *total;
    int mine;
} split_t;

static sb_result_t on_split(void *ctx, const sb_bus_msg_t *m)
{
    split_t *sp = ctx;
    char buf[16];
    snprintf(buf, sizeof buf, "%.*s", (int)(m->len < 15 ? m->len : 15), (const char *)m->data);
    int i = atoi(buf);
    usleep(1000); /* give the other binding a chance to fetch meanwhile */
    pthread_mutex_lock(sp->mu);
    if (i >= 0 && i < SPLIT_N) sp->hits[i]++;
    (*sp->total)++;
    sp->mine++;
    pthread_mutex_unlock(sp->mu);
    return SB_OK;
}

static void *split_thread(void *arg)
{
    split_t *sp = arg;
    sb_bus_pull_t *pull = NULL;
    if (sb_bus_pull_create(sp->bus, SB_STREAM_OUT, "egress-test", "sb.out.>", &pull) != SB_OK)
        return NULL;
    uint64_t deadline = sb_mono_ns() + 60ull * 1000000000ull;
    for (;;) {
        pthread_mutex_lock(sp->mu);
        int total = *sp->total;
        pthread_mutex_unlock(sp->mu);
        if (total >= SPLIT_N || sb_mono_ns() > deadline) break;
        int handled = 0;
        if (sb_bus_pull_fetch(pull, 10, 300, on_split, sp, &handled) != SB_OK) usleep(10000);
    }
    sb_bus_pull_destroy(pull);
    return NULL;
}

static void test_two_bindings_share_work(void **state)
{
    sb_harness_t *h = *state;
    for (int i = 0; i < SPLIT_N; i++) {
        char text[16], id[16];
        snprintf(text, sizeof text, "%d", i);
        snprintf(id, sizeof id, "out-%d", i);
        publish_ok(h->bus, "sb.out.webchat", text, id);
    }
    pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    int hits[SPLIT_N] = {0};
    int total = 0;
    sb_bus_t *bus2 = connect_default(h);
    split_t a = {h->bus, &mu, hits, &total, 0}, b = {bus2, &mu, hits, &total, 0};
    pthread_t ta, tb;
    assert_int_equal(pthread_create(&ta, NULL, split_thread, &a), 0);
    assert_int_equal(pthread_create(&tb, NULL, split_thread, &b), 0);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    sb_bus_destroy(bus2);

    fprintf(stderr, "split: binding A handled %d, binding B handled %d\n", a.mine, b.mine);
    assert_int_equal(total, SPLIT_N);
    for (int i = 0; i < SPLIT_N; i++)
        assert_int_equal(hits[i], 1);
}

typedef struct live {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int n;
    char last[32];
} live_t;

static sb_result_t on_live(void *ctx, const sb_bus_msg_t *m)
{
    live_t *l = ctx;
    pthread_mutex_lock(&l->mu);
    snprintf(l->last, sizeof l->last, "%.*s", (int)(m->len < 31 ? m->len : 31),
             (const char *)m->data);
    l->n++;
    pthread_cond_broadcast(&l->cv);
    pthread_mutex_unlock(&l->mu);
    return SB_OK;
}

static void test_core_subscription(void **state)
{
    sb_harness_t *h = *state;
    live_t l = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
    sb_bus_sub_t *sub = NULL;
    sb_bus_t *other = connect_short_ackwait(h);
    assert_int_equal(sb_bus_subscribe(h->bus, "sb.esc.support.>", on_live, &l, &sub), SB_OK);
    /* The subscription must have reached the server before the publish: retry until seen. */
    for (int i = 0; i < 50; i++) {
        char id[16];
        snprintf(id, sizeof id, "esc-%d", i);
        assert_int_equal(sb_bus_publish(other, "sb.esc.support.c1", "live", 4, id, NULL), SB_OK);
        pthread_mutex_lock(&l.mu);
        int n = l.n;
        pthread_mutex_unlock(&l.mu);
        if (n > 0) break;
        usleep(100000);
    }
    pthread_mutex_lock(&l.mu);
    assert_true(l.n > 0);
    assert_string_equal(l.last, "live");
    pthread_mutex_unlock(&l.mu);
    sb_bus_sub_destroy(sub);
    sb_bus_destroy(other);
}

static void test_publish_while_server_down(void **state)
{
    sb_harness_t *h = *state;
    sb_bus_t *bus = connect_short_ackwait(h); /* publish timeout 2000 ms */
    publish_ok(bus, "sb.bot.0", "before", "b-1");

    sb_harness_stop_nats(h);
    for (int i = 0; i < 100 && sb_bus_is_connected(bus); i++)
        usleep(50000);
    assert_false(sb_bus_is_connected(bus));

    uint64_t t0 = sb_mono_ns();
    assert_int_equal(sb_bus_publish(bus, "sb.bot.0", "during", 6, "b-2", NULL), SB_E_UNAVAILABLE);
    /* A generous bound: the point is "fails instead of hanging", not a latency figure. */
    assert_true(sb_mono_ns() - t0 < 2000ull * 1000000ull + 5000ull * 1000000ull);

    assert_int_equal(sb_harness_restart_nats(h), SB_OK);
    sb_result_t rc = SB_E_UNAVAILABLE;
    for (int i = 0; i < 100 && rc != SB_OK; i++) {
        rc = sb_bus_publish(bus, "sb.bot.0", "after", 5, "b-3", NULL);
        if (rc != SB_OK) usleep(100000);
    }
    assert_int_equal(rc, SB_OK);
    assert_true(sb_bus_is_connected(bus));

    /* Same store: the message from before the restart is still there, the failed one is not. */
    collect_t c = {0};
    size_t count = 0;
    assert_int_equal(sb_harness_read_stream(h, SB_STREAM_BOT, "sb.bot.0", on_collect, &c, &count),
                     SB_OK);
    assert_int_equal(count, 2);
    assert_string_equal(c.data[0], "before");
    assert_string_equal(c.data[1], "after");
    sb_bus_destroy(bus);
}

static void test_connect_in_background(void **state)
{
    (void)state;
    /* Nothing listens on this port yet: connect returns at once and keeps trying. */
    int port = sb_harness_free_port();
    char url[64];
    snprintf(url, sizeof url, "nats://127.0.0.1:%d", port);
    sb_config_t cfg;
    char err[256];
    assert_int_equal(sb_config_load(&cfg, NULL, err, sizeof err), SB_OK);
    sb_config_nats_t n = cfg.nats;
    n.url = url;
    sb_bus_t *bus = NULL;
    assert_int_equal(sb_bus_connect(&bus, &n, "test-bg", true), SB_E_UNAVAILABLE);
    assert_int_equal(sb_bus_connect(&bus, &n, "test-bg", false), SB_OK);
    assert_false(sb_bus_is_connected(bus));
    assert_int_equal(sb_bus_publish(bus, "sb.ev.x", "x", 1, NULL, NULL), SB_E_UNAVAILABLE);
    assert_int_equal(sb_bus_ensure_streams(bus), SB_E_UNAVAILABLE);
    sb_bus_destroy(bus);
    sb_config_free(&cfg);
}

int main(void)
{
    sb_log_init("test_bus", SB_LOG_WARN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_subjects),
        cmocka_unit_test_setup_teardown(test_ensure_streams, setup, teardown),
        cmocka_unit_test_setup_teardown(test_publish_dedup, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pull_ack_nak_term, setup, teardown),
        cmocka_unit_test_setup_teardown(test_two_bindings_share_work, setup, teardown),
        cmocka_unit_test_setup_teardown(test_core_subscription, setup, teardown),
        cmocka_unit_test_setup_teardown(test_publish_while_server_down, setup, teardown),
        cmocka_unit_test(test_connect_in_background),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
