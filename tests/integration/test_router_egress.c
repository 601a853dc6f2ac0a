/* Router egress: Outbound messages published on sb.out.<channel> reach the channel API exactly
 * once, with the retry, idempotency, window and rate rules of docs/egress.md.
 *
 * A real nats-server, the real router with router.channel_api_base pointing at a scripted
 * provider that this test runs (a core HTTP server on its own thread): it records every
 * request with its arrival time, answers 200 with a WhatsApp-like body by default, and can be
 * told, per Idempotency-Key, to answer the next N requests with a status, a body, a
 * Retry-After, or after a delay (deferred on a pool thread, so that many answers can be
 * pending at once; it counts how many it holds at the same time).
 *
 * Checked: the rendered requests (URL, bearer, Standard Webhooks signature, JSON); 503 then
 * 200 is sent twice and delivered once, the retry no sooner than egress_backoff_ms; 429 with
 * Retry-After: 2 is retried no sooner than 2 s later; 400 with a Graph error body fails at
 * once with the HTTP status and the provider's code; a provider that keeps failing is given
 * up after egress_max_attempts; the same Outbound published twice is sent once (the
 * sent-ledger); WhatsApp outside the 24-hour window sends the configured template; a rate
 * limit of 5/s spreads 10 messages over more than 1.5 s; a slow provider sees several calls
 * at once but never more than egress_concurrency; a router killed (SIGKILL) after the
 * provider's 200 and the ledger write but before the ack does not send again after a
 * restart; without a template a closed window fails with "window_closed" and sends nothing;
 * egress_max_attempts above nats.max_deliver stops the router at start-up. Timing checks are
 * loose lower bounds only. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "sb/codec.h"
#include "sb/http.h"
#include "sb/httpclient.h"
#include "sb/seal.h"
#include "sb/util.h"

#define WAIT_MS 20000
#define MAX_ATTEMPTS 3
#define BACKOFF_MS 300
#define CONCURRENCY 6
#define WC_RATE 5
#define WA_TOKEN "egress-test-token"
#define WA_ACCOUNT "109000000000042"
#define TEMPLATE "reengage_v1"
#define CONV "0123456789abcdef0123456789abcdef"

/* --- the scripted provider ---------------------------------------------------------------- */

typedef struct rec {
    char method[8];
    char *path;
    char *body;
    size_t body_len;
    char *headers;  /* "name: value\n" lines */
    char key[128];  /* Idempotency-Key */
    uint64_t at_ns; /* arrival, monotonic */
} rec_t;

typedef struct rule {
    char key[128];
    int n; /* requests left */
    int status;
    char body[512];
    int retry_after_s; /* 0: no header */
    int delay_ms;
} rule_t;

#define MAX_RULES 32

typedef struct prov {
    sb_http_server_t *srv;
    pthread_t th;
    int port;
    pthread_mutex_t mu;
    rec_t **recs;
    size_t n, cap;
    rule_t rules[MAX_RULES];
    size_t nrules;
    unsigned long seq;
    atomic_int holding, max_holding;
} prov_t;

typedef struct answer {
    prov_t *p;
    int status;
    char body[512];
    int retry_after_s;
    int delay_ms;
} answer_t;

static void hold(void *ctx)
{
    answer_t *a = ctx;
    int now = atomic_fetch_add(&a->p->holding, 1) + 1;
    int max = atomic_load(&a->p->max_holding);
    while (now > max && !atomic_compare_exchange_weak(&a->p->max_holding, &max, now)) {
    }
    usleep((useconds_t)a->delay_ms * 1000);
    atomic_fetch_sub(&a->p->holding, 1);
}

static void reply(sb_http_request_t *req, void *ctx)
{
    answer_t *a = ctx;
    char ra[48];
    snprintf(ra, sizeof ra, "Retry-After: %d", a->retry_after_s);
    const char *extra[] = {ra, NULL};
    sb_http_respond(req, a->status, "application/json", a->retry_after_s > 0 ? extra : NULL,
                    a->body, strlen(a->body));
    free(a);
}

static void on_provider(sb_http_request_t *req)
{
    prov_t *p = req->route_ctx;
    rec_t *r = sb_xcalloc(1, sizeof *r);
    r->at_ns = sb_mono_ns();
    snprintf(r->method, sizeof r->method, "%s", req->method);
    r->path = sb_xstrdup(req->target);
    r->body = sb_xstrndup((const char *)req->body, req->body_len);
    r->body_len = req->body_len;
    sb_buf_t hb = {0};
    for (size_t i = 0; i < req->nheaders; i++)
        sb_buf_appendf(&hb, "%s: %s\n", req->headers[i].name, req->headers[i].value);
    sb_buf_append(&hb, "", 1);
    r->headers = hb.data;
    const char *key = sb_http_header(req, "Idempotency-Key");
    snprintf(r->key, sizeof r->key, "%s", key ? key : "");

    answer_t *a = sb_xcalloc(1, sizeof *a);
    a->p = p;
    a->status = 200;
    pthread_mutex_lock(&p->mu);
    p->seq++;
    snprintf(a->body, sizeof a->body,
             "{\"messaging_product\":\"whatsapp\",\"messages\":[{\"id\":"
             "\"wamid.test%lu\"}]}",
             p->seq);
    for (size_t i = 0; i < p->nrules; i++) {
        rule_t *u = &p->rules[i];
        if (u->n > 0 && strcmp(u->key, r->key) == 0) {
            u->n--;
            a->status = u->status;
            a->retry_after_s = u->retry_after_s;
            a->delay_ms = u->delay_ms;
            if (u->body[0]) snprintf(a->body, sizeof a->body, "%s", u->body);
            break;
        }
    }
    if (p->n == p->cap) {
        p->cap = p->cap ? p->cap * 2 : 64;
        p->recs = sb_xrealloc(p->recs, p->cap * sizeof *p->recs);
    }
    p->recs[p->n++] = r;
    pthread_mutex_unlock(&p->mu);
    if (a->delay_ms > 0)
        sb_http_defer(req, hold, reply, a);
    else
        reply(req, a);
}

static void *prov_thread(void *arg)
{
    prov_t *p = arg;
    if (sb_http_server_run(p->srv) != SB_OK) fprintf(stderr, "provider loop did not close\n");
    return NULL;
}

static prov_t *prov_start(void)
{
    prov_t *p = sb_xcalloc(1, sizeof *p);
    pthread_mutex_init(&p->mu, NULL);
    sb_http_limits_t lim = {.max_header_bytes = 65536, .max_headers = 128};
    assert_int_equal(sb_http_server_create(&p->srv, "127.0.0.1:0", &lim), SB_OK);
    sb_http_server_route(p->srv, NULL, "/", 1 << 20, on_provider, p);
    p->port = sb_http_server_port(p->srv);
    assert_int_equal(pthread_create(&p->th, NULL, prov_thread, p), 0);
    return p;
}

static void prov_stop(prov_t *p)
{
    sb_http_server_stop(p->srv);
    pthread_join(p->th, NULL);
    sb_http_server_destroy(p->srv);
    for (size_t i = 0; i < p->n; i++) {
        free(p->recs[i]->path);
        free(p->recs[i]->body);
        free(p->recs[i]->headers);
        free(p->recs[i]);
    }
    free(p->recs);
    pthread_mutex_destroy(&p->mu);
    free(p);
}

static void prov_rule(prov_t *p, const char *key, int n, int status, const char *body,
                      int retry_after_s, int delay_ms)
{
    pthread_mutex_lock(&p->mu);
    assert_true(p->nrules < MAX_RULES);
    rule_t *u = &p->rules[p->nrules++];
    snprintf(u->key, sizeof u->key, "%s", key);
    u->n = n;
    u->status = status;
    snprintf(u->body, sizeof u->body, "%s", body ? body : "");
    u->retry_after_s = retry_after_s;
    u->delay_ms = delay_ms;
    pthread_mutex_unlock(&p->mu);
}

/* The requests carrying Idempotency-Key key, in arrival order (at most max). */
static size_t prov_find(prov_t *p, const char *key, const rec_t **out, size_t max)
{
    size_t k = 0;
    pthread_mutex_lock(&p->mu);
    for (size_t i = 0; i < p->n; i++)
        if (strcmp(p->recs[i]->key, key) == 0) {
            if (k < max) out[k] = p->recs[i];
            k++;
        }
    pthread_mutex_unlock(&p->mu);
    return k;
}

static size_t sends_of(prov_t *p, const char *key)
{
    return prov_find(p, key, NULL, 0);
}

static size_t wait_sends(prov_t *p, const char *key, size_t want, int timeout_ms)
{
    size_t n = 0;
    for (int i = 0; i <= timeout_ms / 20; i++) {
        n = sends_of(p, key);
        if (n >= want) break;
        usleep(20 * 1000);
    }
    return n;
}

static const rec_t *last_send(prov_t *p, const char *key)
{
    const rec_t *r[64];
    size_t n = prov_find(p, key, r, 64);
    assert_true(n > 0 && n <= 64);
    return r[n - 1];
}

/* --- fixture ------------------------------------------------------------------------------ */

typedef struct eg {
    sb_harness_t h;
    prov_t *prov;
    uint8_t wc_key[32];
    char wc_secret[80];
    pid_t router;
} eg_t;

static const char *jstr(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* The value of header name in a "Name: value\n" list (static buffer). */
static const char *header(const rec_t *r, const char *name)
{
    static char val[512];
    size_t n = strlen(name);
    for (const char *p = r->headers; p && *p;) {
        const char *eol = strchr(p, '\n');
        size_t len = eol ? (size_t)(eol - p) : strlen(p);
        if (len > n + 1 && strncasecmp(p, name, n) == 0 && p[n] == ':') {
            const char *v = p + n + 1;
            while (*v == ' ')
                v++;
            snprintf(val, sizeof val, "%.*s", (int)(len - (size_t)(v - p)), v);
            return val;
        }
        p = eol ? eol + 1 : p + len;
    }
    return NULL;
}

typedef struct out_opts {
    const char *channel, *message_id, *address, *text, *nats_msg_id;
    const char *conversation; /* NULL: CONV */
    bool bad_seal, no_buttons;
    int64_t last_customer_ms; /* 0: unknown */
} out_opts_t;

static void publish(eg_t *t, const out_opts_t *a)
{
    sb_recipient_t rc = SWITCHBOARD__V1__RECIPIENT__INIT;
    rc.channel = (char *)a->channel;
    rc.address = (char *)a->address;
    rc.account_id = (char *)WA_ACCOUNT;
    rc.session_id = (char *)"wcs_egress_1";
    uint8_t *plain = NULL;
    size_t plen = 0;
    assert_int_equal(SB_CODEC_PACK(&rc, &plain, &plen), SB_OK);
    uint8_t *sealed = sb_xmalloc(plen + SB_SEAL_BOX_OVERHEAD);
    uint8_t other_pk[32], other_sk[32];
    sb_seal_box_keypair(other_pk, other_sk);
    assert_int_equal(sb_seal_box(sealed, plain, plen, a->bad_seal ? other_pk : t->h.recipient_pk),
                     SB_OK);

    sb_outbound_t o = SWITCHBOARD__V1__OUTBOUND__INIT;
    o.message_id = (char *)a->message_id;
    o.conversation_id = (char *)(a->conversation ? a->conversation : CONV);
    o.partition = 3;
    o.channel = (char *)a->channel;
    o.sealed_recipient.data = sealed;
    o.sealed_recipient.len = plen + SB_SEAL_BOX_OVERHEAD;
    o.author = SWITCHBOARD__V1__AUTHOR__AUTHOR_BOT;
    o.text = (char *)a->text;
    o.created_at_ms = sb_now_ms();
    o.last_customer_message_ms = a->last_customer_ms;
    Switchboard__V1__Button b1 = SWITCHBOARD__V1__BUTTON__INIT, b2 = SWITCHBOARD__V1__BUTTON__INIT;
    b1.id = (char *)"track";
    b1.title = (char *)"Track parcel";
    b2.id = (char *)"agent";
    b2.title = (char *)"Talk to an agent";
    Switchboard__V1__Button *buttons[] = {&b1, &b2};
    if (!a->no_buttons) {
        o.buttons = buttons;
        o.n_buttons = 2;
    }
    uint8_t *data = NULL;
    size_t len = 0;
    assert_int_equal(SB_CODEC_PACK(&o, &data, &len), SB_OK);
    char subject[64];
    snprintf(subject, sizeof subject, "sb.out.%s", a->channel);
    assert_int_equal(sb_bus_publish(t->h.bus, subject, data, len,
                                    a->nats_msg_id ? a->nats_msg_id : a->message_id, NULL),
                     SB_OK);
    free(data);
    free(sealed);
    free(plain);
}

static void publish_simple(eg_t *t, const char *channel, const char *message_id, const char *text)
{
    out_opts_t a = {.channel = channel,
                    .message_id = message_id,
                    .address = strcmp(channel, "webchat") == 0 ? "wcv_visitor_7" : "15550109876",
                    .text = text};
    publish(t, &a);
}

/* --- events ------------------------------------------------------------------------------- */

typedef struct ev_find {
    const char *message_id;
    sb_event_t *found;
    size_t count;
} ev_find_t;

static void on_event(void *ctx, const char *subject, const void *data, size_t len)
{
    (void)subject;
    ev_find_t *f = ctx;
    sb_event_t *ev = NULL;
    assert_int_equal(SB_CODEC_UNPACK(switchboard__v1__event__descriptor, data, len, &ev), SB_OK);
    if (strcmp(ev->message_id, f->message_id) == 0) {
        f->count++;
        if (f->found) SB_CODEC_FREE(f->found);
        f->found = ev;
    } else {
        SB_CODEC_FREE(ev);
    }
}

/* The event of message_id on subject, waiting up to wait_ms; the caller frees it. */
static sb_event_t *find_event(eg_t *t, const char *subject, const char *message_id, size_t *count,
                              int wait_ms)
{
    for (int i = 0; i <= wait_ms / 100; i++) {
        ev_find_t f = {.message_id = message_id};
        size_t n = 0;
        assert_int_equal(sb_harness_read_stream(&t->h, SB_STREAM_EVENTS, subject, on_event, &f, &n),
                         SB_OK);
        if (f.found || i == wait_ms / 100) {
            if (count) *count = f.count;
            return f.found;
        }
        usleep(100 * 1000);
    }
    return NULL;
}

/* --- metrics ------------------------------------------------------------------------------ */

/* The value of one metric series (exact name with labels) at the router's /metrics, or -1. */
static double metric(eg_t *t, const char *series)
{
    sb_http_client_t *c = NULL;
    assert_int_equal(sb_http_client_create(&c), SB_OK);
    char url[128];
    snprintf(url, sizeof url, "%s/metrics", t->h.router_url);
    sb_http_client_response_t resp = {0};
    double v = -1;
    if (sb_http_client_do(c, "GET", url, NULL, NULL, 0, 5000, 4 << 20, &resp) == SB_OK &&
        resp.status == 200 && resp.body.data) {
        size_t n = strlen(series);
        for (const char *p = resp.body.data; p && *p;) {
            if (strncmp(p, series, n) == 0 && p[n] == ' ') {
                v = strtod(p + n + 1, NULL);
                break;
            }
            p = strchr(p, '\n');
            if (p) p++;
        }
    }
    sb_buf_free(&resp.body);
    sb_http_client_destroy(c);
    return v;
}

static double wait_metric(eg_t *t, const char *series, double want, int timeout_ms)
{
    double v = -1;
    for (int i = 0; i <= timeout_ms / 100; i++) {
        v = metric(t, series);
        if (v >= want) break;
        usleep(100 * 1000);
    }
    return v;
}

/* --- router lifecycle --------------------------------------------------------------------- */

static void write_config(eg_t *t, const char *template_name)
{
    char *extra = sb_xasprintf(
        "nats:\n  ack_wait_s: 3\n  max_deliver: 10\n"
        "router:\n  egress_max_attempts: %d\n  egress_backoff_ms: %d\n"
        "  egress_backoff_max_ms: 1000\n  egress_concurrency: %d\n  egress_timeout_ms: 5000\n"
        "channels:\n  webchat:\n    signing_secret: \"%s\"\n    rate_per_s: %d\n"
        "  whatsapp:\n    app_secret: \"egress-app-secret\"\n"
        "    verify_token: \"egress-verify\"\n"
        "    access_token: \"%s\"\n    rate_per_s: 0\n"
        "    window_template: \"%s\"\n    template_language: \"de\"\n",
        MAX_ATTEMPTS, BACKOFF_MS, CONCURRENCY, t->wc_secret, WC_RATE, WA_TOKEN, template_name);
    assert_int_equal(sb_harness_write_config(&t->h, extra), SB_OK);
    free(extra);
}

static void start_router(eg_t *t)
{
    t->router = sb_harness_spawn(&t->h, "switchboard-router", NULL);
    assert_true(t->router > 0);
    char ready[128];
    snprintf(ready, sizeof ready, "%s/readyz", t->h.router_url);
    assert_int_equal(sb_harness_wait_http(ready, WAIT_MS), SB_OK);
}

static void stop_router(eg_t *t)
{
    sb_harness_kill(&t->h, t->router);
    t->router = 0;
}

static int setup(void **state)
{
    eg_t *t = sb_xcalloc(1, sizeof *t);
    assert_int_equal(sb_seal_init(), SB_OK);
    assert_int_equal(sb_harness_start_nats(&t->h), SB_OK);
    t->prov = prov_start();
    sb_seal_random(t->wc_key, sizeof t->wc_key);
    char b64[64];
    sb_seal_base64_encode(b64, t->wc_key, sizeof t->wc_key);
    snprintf(t->wc_secret, sizeof t->wc_secret, "whsec_%s", b64);
    char base[64];
    snprintf(base, sizeof base, "http://127.0.0.1:%d/", t->prov->port);
    setenv("SB_CHANNEL_API_BASE", base, 1);
    unsetenv("SB_TEST_NOW");
    unsetenv("SB_TEST_EGRESS_CRASH");
    write_config(t, TEMPLATE);
    start_router(t);
    *state = t;
    return 0;
}

static int teardown(void **state)
{
    eg_t *t = *state;
    sb_harness_stop(&t->h);
    prov_stop(t->prov);
    unsetenv("SB_CHANNEL_API_BASE");
    unsetenv("SB_TEST_EGRESS_CRASH");
    free(t);
    return 0;
}

/* --- tests -------------------------------------------------------------------------------- */

static void test_whatsapp_send_and_event(void **state)
{
    eg_t *t = *state;
    publish_simple(t, "whatsapp", "out:wa-1", "Your parcel ships today.");
    assert_int_equal(wait_sends(t->prov, "out:wa-1", 1, WAIT_MS), 1);
    const rec_t *r = last_send(t->prov, "out:wa-1");
    assert_string_equal(r->method, "POST");
    assert_string_equal(r->path, "/whatsapp/" WA_ACCOUNT "/messages");
    assert_string_equal(header(r, "Authorization"), "Bearer " WA_TOKEN);
    assert_string_equal(header(r, "Content-Type"), "application/json");
    cJSON *j = cJSON_ParseWithLength(r->body, r->body_len);
    assert_non_null(j);
    assert_string_equal(jstr(j, "messaging_product"), "whatsapp");
    assert_string_equal(jstr(j, "to"), "15550109876");
    assert_string_equal(jstr(j, "type"), "interactive");
    const cJSON *ia = cJSON_GetObjectItem(j, "interactive");
    assert_string_equal(jstr(cJSON_GetObjectItem(ia, "body"), "text"), "Your parcel ships today.");
    const cJSON *btns = cJSON_GetObjectItem(cJSON_GetObjectItem(ia, "action"), "buttons");
    assert_int_equal(cJSON_GetArraySize(btns), 2);
    cJSON_Delete(j);

    /* The delivery event carries the keyed hash of the provider's id, never the id. */
    sb_event_t *ev = find_event(t, "sb.ev.delivery", "out:wa-1", NULL, WAIT_MS);
    assert_non_null(ev);
    assert_int_equal(ev->type, SWITCHBOARD__V1__EVENT_TYPE__EVENT_DELIVERY);
    assert_string_equal(ev->state, "sent");
    assert_string_equal(ev->channel, "whatsapp");
    assert_string_equal(ev->conversation_id, CONV);
    assert_int_equal(ev->http_status, 200);
    char want[SB_SEAL_HASH_HEX];
    const char *parts[3] = {"pmid", "whatsapp", "wamid.test1"};
    sb_seal_keyed_hash_hex(want, t->h.id_secret, parts, 3);
    assert_string_equal(ev->provider_message_ref, want);
    SB_CODEC_FREE(ev);
    assert_true(wait_metric(t, "sb_router_egress_total{channel=\"whatsapp\",outcome=\"sent\"}", 1,
                            WAIT_MS) >= 1);
}

static void test_webchat_send_signed(void **state)
{
    eg_t *t = *state;
    publish_simple(t, "webchat", "out:wc-1", "Hello from the bot");
    assert_int_equal(wait_sends(t->prov, "out:wc-1", 1, WAIT_MS), 1);
    const rec_t *r = last_send(t->prov, "out:wc-1");
    assert_string_equal(r->path, "/webchat/messages");
    char id[128], ts[32], sig[128];
    snprintf(id, sizeof id, "%s", header(r, "webhook-id"));
    snprintf(ts, sizeof ts, "%s", header(r, "webhook-timestamp"));
    snprintf(sig, sizeof sig, "%s", header(r, "webhook-signature"));
    assert_string_equal(id, "out:wc-1");
    uint8_t mac[32];
    sb_seal_part_t parts[] = {
        {id, strlen(id)}, {".", 1}, {ts, strlen(ts)}, {".", 1}, {r->body, r->body_len}};
    sb_seal_hmac_sha256(mac, t->wc_key, sizeof t->wc_key, parts, 5);
    char b64[64], want[80];
    sb_seal_base64_encode(b64, mac, sizeof mac);
    snprintf(want, sizeof want, "v1,%s", b64);
    assert_string_equal(sig, want);
    cJSON *j = cJSON_ParseWithLength(r->body, r->body_len);
    assert_non_null(j);
    assert_string_equal(jstr(j, "schema"), "webchat.v1");
    assert_string_equal(jstr(j, "id"), "out:wc-1");
    assert_string_equal(jstr(cJSON_GetObjectItem(j, "visitor"), "id"), "wcv_visitor_7");
    assert_string_equal(jstr(cJSON_GetObjectItem(j, "message"), "text"), "Hello from the bot");
    cJSON_Delete(j);
}

static void test_503_then_200_delivered_once(void **state)
{
    eg_t *t = *state;
    prov_rule(t->prov, "out:wa-503", 1, 503, "{}", 0, 0);
    publish_simple(t, "whatsapp", "out:wa-503", "retry me");
    assert_int_equal(wait_sends(t->prov, "out:wa-503", 2, WAIT_MS), 2);
    const rec_t *r[4];
    assert_int_equal(prov_find(t->prov, "out:wa-503", r, 4), 2);
    /* The retry waited at least the configured first back-off. */
    assert_true(r[1]->at_ns - r[0]->at_ns >= (uint64_t)BACKOFF_MS * 1000000ull);
    sb_event_t *ev = find_event(t, "sb.ev.delivery", "out:wa-503", NULL, WAIT_MS);
    assert_non_null(ev);
    SB_CODEC_FREE(ev);
    /* Delivered: nothing more, and no failure. */
    assert_int_equal(wait_sends(t->prov, "out:wa-503", 3, 1500), 2);
    assert_null(find_event(t, "sb.ev.delivery_failed", "out:wa-503", NULL, 0));
    assert_true(metric(t, "sb_router_egress_total{channel=\"whatsapp\",outcome=\"retried\"}") >= 1);
}

static void test_429_retry_after(void **state)
{
    eg_t *t = *state;
    prov_rule(t->prov, "out:wa-429", 1, 429, "{}", 2, 0);
    publish_simple(t, "whatsapp", "out:wa-429", "slow down");
    assert_int_equal(wait_sends(t->prov, "out:wa-429", 2, WAIT_MS), 2);
    const rec_t *r[4];
    assert_int_equal(prov_find(t->prov, "out:wa-429", r, 4), 2);
    /* Retry-After: 2 outweighs the 300 ms back-off. */
    assert_true(r[1]->at_ns - r[0]->at_ns >= 2000ull * 1000000ull);
    sb_event_t *ev = find_event(t, "sb.ev.delivery", "out:wa-429", NULL, WAIT_MS);
    assert_non_null(ev);
    SB_CODEC_FREE(ev);
}

static void test_400_fails_with_provider_code(void **state)
{
    eg_t *t = *state;
    prov_rule(t->prov, "out:wa-400", 1, 400,
              "{\"error\":{\"message\":\"(#131047) Re-engagement message\",\"type\":"
              "\"OAuthException\",\"code\":131047,\"error_subcode\":2494010,"
              "\"fbtrace_id\":\"AbCdEf\"}}",
              0, 0);
    publish_simple(t, "whatsapp", "out:wa-400", "bad request");
    size_t count = 0;
    sb_event_t *ev = find_event(t, "sb.ev.delivery_failed", "out:wa-400", &count, WAIT_MS);
    assert_non_null(ev);
    assert_int_equal(count, 1);
    assert_int_equal(ev->type, SWITCHBOARD__V1__EVENT_TYPE__EVENT_DELIVERY_FAILED);
    assert_string_equal(ev->detail, "rejected");
    assert_string_equal(ev->state, "failed");
    assert_int_equal(ev->http_status, 400);
    assert_int_equal(ev->error_code, 131047);
    assert_string_equal(ev->provider_error, "131047.2494010");
    assert_string_equal(ev->channel, "whatsapp");
    assert_int_equal(ev->partition, 3);
    SB_CODEC_FREE(ev);
    /* Not retried. */
    assert_int_equal(wait_sends(t->prov, "out:wa-400", 2, 1500), 1);
}

static void test_gives_up_after_max_attempts(void **state)
{
    eg_t *t = *state;
    prov_rule(t->prov, "out:wa-down", 100, 503, "{}", 0, 0);
    publish_simple(t, "whatsapp", "out:wa-down", "nobody home");
    sb_event_t *ev = find_event(t, "sb.ev.delivery_failed", "out:wa-down", NULL, WAIT_MS);
    assert_non_null(ev);
    assert_string_equal(ev->detail, "attempts_exhausted");
    assert_int_equal(ev->http_status, 503);
    SB_CODEC_FREE(ev);
    assert_int_equal(sends_of(t->prov, "out:wa-down"), MAX_ATTEMPTS);
    assert_int_equal(wait_sends(t->prov, "out:wa-down", MAX_ATTEMPTS + 1, 1500), MAX_ATTEMPTS);
}

static void test_unopenable_recipient(void **state)
{
    eg_t *t = *state;
    out_opts_t a = {.channel = "whatsapp",
                    .message_id = "out:wa-badseal",
                    .address = "15550109876",
                    .text = "lost",
                    .bad_seal = true};
    publish(t, &a);
    sb_event_t *ev = find_event(t, "sb.ev.delivery_failed", "out:wa-badseal", NULL, WAIT_MS);
    assert_non_null(ev);
    assert_string_equal(ev->detail, "bad_recipient");
    SB_CODEC_FREE(ev);
    assert_int_equal(sends_of(t->prov, "out:wa-badseal"), 0);
}

static void test_published_twice_sent_once(void **state)
{
    eg_t *t = *state;
    double before =
        metric(t, "sb_router_egress_total{channel=\"whatsapp\",outcome=\"deduplicated\"}");
    if (before < 0) before = 0;
    /* Two stream messages (different Nats-Msg-Id) for one Outbound: the ledger stops the
     * second; a third with the same Nats-Msg-Id as the first is dropped by JetStream. */
    out_opts_t a = {.channel = "whatsapp",
                    .message_id = "out:wa-twice",
                    .address = "15550109876",
                    .text = "once only",
                    .nats_msg_id = "twice-1"};
    publish(t, &a);
    assert_int_equal(wait_sends(t->prov, "out:wa-twice", 1, WAIT_MS), 1);
    sb_event_t *ev = find_event(t, "sb.ev.delivery", "out:wa-twice", NULL, WAIT_MS);
    assert_non_null(ev);
    SB_CODEC_FREE(ev);
    a.nats_msg_id = "twice-2";
    publish(t, &a);
    a.nats_msg_id = "twice-1";
    publish(t, &a);
    assert_true(wait_metric(t,
                            "sb_router_egress_total{channel=\"whatsapp\",outcome=\"deduplicated\"}",
                            before + 1, WAIT_MS) >= before + 1);
    assert_int_equal(wait_sends(t->prov, "out:wa-twice", 2, 1000), 1);
    size_t count = 0;
    ev = find_event(t, "sb.ev.delivery", "out:wa-twice", &count, 0);
    assert_non_null(ev);
    assert_int_equal(count, 1); /* the repeated event was dropped by its Nats-Msg-Id */
    SB_CODEC_FREE(ev);
}

static void test_whatsapp_window(void **state)
{
    eg_t *t = *state;
    int64_t now = sb_now_ms();
    /* Outside the 24 h window: the configured template instead of the text. */
    out_opts_t a = {.channel = "whatsapp",
                    .message_id = "out:wa-late",
                    .address = "15550109876",
                    .text = "Sorry for the delay",
                    .last_customer_ms = now - 25LL * 3600 * 1000};
    publish(t, &a);
    /* Inside it: free-form. */
    out_opts_t b = a;
    b.message_id = "out:wa-intime";
    b.last_customer_ms = now - 23LL * 3600 * 1000;
    b.no_buttons = true;
    publish(t, &b);
    assert_int_equal(wait_sends(t->prov, "out:wa-late", 1, WAIT_MS), 1);
    assert_int_equal(wait_sends(t->prov, "out:wa-intime", 1, WAIT_MS), 1);
    const rec_t *r = last_send(t->prov, "out:wa-late");
    cJSON *j = cJSON_ParseWithLength(r->body, r->body_len);
    assert_non_null(j);
    assert_string_equal(jstr(j, "type"), "template");
    const cJSON *tpl = cJSON_GetObjectItem(j, "template");
    assert_string_equal(jstr(tpl, "name"), TEMPLATE);
    assert_string_equal(jstr(cJSON_GetObjectItem(tpl, "language"), "code"), "de");
    assert_null(strstr(r->body, "Sorry for the delay"));
    cJSON_Delete(j);
    r = last_send(t->prov, "out:wa-intime");
    j = cJSON_ParseWithLength(r->body, r->body_len);
    assert_non_null(j);
    assert_string_equal(jstr(j, "type"), "text");
    assert_string_equal(jstr(cJSON_GetObjectItem(j, "text"), "body"), "Sorry for the delay");
    cJSON_Delete(j);
}

static void test_rate_limit_spreads(void **state)
{
    eg_t *t = *state;
    char ids[10][32];
    for (int i = 0; i < 10; i++) {
        snprintf(ids[i], sizeof ids[i], "out:wc-rate-%d", i);
        publish_simple(t, "webchat", ids[i], "paced");
    }
    uint64_t first = UINT64_MAX, last = 0;
    for (int i = 0; i < 10; i++) {
        assert_int_equal(wait_sends(t->prov, ids[i], 1, WAIT_MS), 1);
        const rec_t *r = last_send(t->prov, ids[i]);
        if (r->at_ns < first) first = r->at_ns;
        if (r->at_ns > last) last = r->at_ns;
    }
    /* 10 messages at 5/s: nine gaps of 200 ms, nominally 1.8 s; none was dropped. */
    assert_true(last - first >= 1500ull * 1000000ull);
    for (int i = 0; i < 10; i++)
        assert_int_equal(sends_of(t->prov, ids[i]), 1);
}

static void test_concurrency_with_slow_provider(void **state)
{
    eg_t *t = *state;
    enum { N = 14 };
    char ids[N][32], convs[N][40];
    atomic_store(&t->prov->max_holding, 0);
    for (int i = 0; i < N; i++) {
        snprintf(ids[i], sizeof ids[i], "out:wa-slow-%d", i);
        snprintf(convs[i], sizeof convs[i], "c0ffee%026d", i); /* one conversation each */
        prov_rule(t->prov, ids[i], 1, 200, "", 0, 700);
    }
    for (int i = 0; i < N; i++) {
        out_opts_t a = {.channel = "whatsapp",
                        .message_id = ids[i],
                        .address = "15550109876",
                        .text = "slow",
                        .conversation = convs[i]};
        publish(t, &a);
    }
    for (int i = 0; i < N; i++)
        assert_int_equal(wait_sends(t->prov, ids[i], 1, WAIT_MS), 1);
    for (int i = 0; i < N; i++) {
        sb_event_t *ev = find_event(t, "sb.ev.delivery", ids[i], NULL, WAIT_MS);
        assert_non_null(ev);
        SB_CODEC_FREE(ev);
    }
    int max = atomic_load(&t->prov->max_holding);
    assert_true(max >= 3);           /* several calls in flight at once */
    assert_true(max <= CONCURRENCY); /* never more than router.egress_concurrency */
    for (int i = 0; i < N; i++)
        assert_int_equal(sends_of(t->prov, ids[i]), 1);
}

static void test_one_conversation_in_order(void **state)
{
    eg_t *t = *state;
    enum { N = 4 };
    char ids[N][32];
    atomic_store(&t->prov->max_holding, 0);
    for (int i = 0; i < N; i++) {
        snprintf(ids[i], sizeof ids[i], "out:wa-order-%d", i);
        prov_rule(t->prov, ids[i], 1, 200, "", 0, 300);
    }
    for (int i = 0; i < N; i++)
        publish_simple(t, "whatsapp", ids[i], "in order");
    for (int i = 0; i < N; i++)
        assert_int_equal(wait_sends(t->prov, ids[i], 1, WAIT_MS), 1);
    /* One conversation: one call at a time, in publish order. */
    assert_int_equal(atomic_load(&t->prov->max_holding), 1);
    for (int i = 1; i < N; i++)
        assert_true(last_send(t->prov, ids[i])->at_ns > last_send(t->prov, ids[i - 1])->at_ns);
}

static void test_killed_after_send_not_sent_again(void **state)
{
    eg_t *t = *state;
    stop_router(t);
    /* This router kills itself (SIGKILL) right after the provider's 200 and the ledger
     * write, before the event and the ack: the message stays in SB_OUT. */
    setenv("SB_TEST_EGRESS_CRASH", "after_ledger", 1);
    start_router(t);
    unsetenv("SB_TEST_EGRESS_CRASH");
    pid_t crashing = t->router;
    publish_simple(t, "whatsapp", "out:wa-crash", "exactly once");
    assert_int_equal(wait_sends(t->prov, "out:wa-crash", 1, WAIT_MS), 1);
    int status = 0;
    pid_t w = 0;
    for (int i = 0; i < 100 && w == 0; i++) {
        w = waitpid(crashing, &status, WNOHANG);
        if (w == 0) usleep(50 * 1000);
    }
    assert_int_equal(w, crashing);
    assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    sb_harness_kill(&t->h, crashing); /* forget it */
    assert_null(find_event(t, "sb.ev.delivery", "out:wa-crash", NULL, 0));

    /* After AckWait the message comes back to the new router: the ledger says sent. */
    start_router(t);
    assert_true(wait_metric(t,
                            "sb_router_egress_total{channel=\"whatsapp\",outcome=\"deduplicated\"}",
                            1, WAIT_MS) >= 1);
    sb_event_t *ev = find_event(t, "sb.ev.delivery", "out:wa-crash", NULL, WAIT_MS);
    assert_non_null(ev);
    assert_int_equal(ev->http_status, 200);
    assert_int_equal(strlen(ev->provider_message_ref), 32);
    SB_CODEC_FREE(ev);
    assert_int_equal(sends_of(t->prov, "out:wa-crash"), 1);
}

static void test_window_closed_without_template(void **state)
{
    eg_t *t = *state;
    stop_router(t);
    write_config(t, ""); /* no window template */
    start_router(t);
    out_opts_t a = {.channel = "whatsapp",
                    .message_id = "out:wa-closed",
                    .address = "15550109876",
                    .text = "too late",
                    .last_customer_ms = sb_now_ms() - 30LL * 3600 * 1000};
    publish(t, &a);
    sb_event_t *ev = find_event(t, "sb.ev.delivery_failed", "out:wa-closed", NULL, WAIT_MS);
    assert_non_null(ev);
    assert_string_equal(ev->detail, "window_closed");
    assert_int_equal(ev->http_status, 0);
    SB_CODEC_FREE(ev);
    assert_int_equal(sends_of(t->prov, "out:wa-closed"), 0);
    assert_true(
        metric(t, "sb_router_egress_total{channel=\"whatsapp\",outcome=\"window_closed\"}") >= 1);
}

static void test_builtin_sink(void **state)
{
    eg_t *t = *state;
    /* Without any API base the router's own /_sink/ records the call (make run). */
    stop_router(t);
    unsetenv("SB_CHANNEL_API_BASE");
    char *extra = sb_xasprintf("channels:\n  webchat:\n    signing_secret: \"%s\"\n"
                               "  whatsapp:\n    app_secret: \"s\"\n    verify_token: \"v\"\n"
                               "    access_token: \"%s\"\n    api_base: \"\"\n",
                               t->wc_secret, WA_TOKEN);
    assert_int_equal(sb_harness_write_config(&t->h, extra), SB_OK);
    free(extra);
    start_router(t);
    publish_simple(t, "whatsapp", "out:wa-local", "to the built-in sink");

    sb_http_client_t *c = NULL;
    assert_int_equal(sb_http_client_create(&c), SB_OK);
    char url[128];
    snprintf(url, sizeof url, "%s/_sink", t->h.router_url);
    bool seen = false;
    for (int i = 0; i < WAIT_MS / 100 && !seen; i++) {
        sb_http_client_response_t resp = {0};
        assert_int_equal(sb_http_client_do(c, "GET", url, NULL, NULL, 0, 5000, 1 << 20, &resp),
                         SB_OK);
        assert_int_equal(resp.status, 200);
        cJSON *j = cJSON_ParseWithLength(resp.body.data, resp.body.len);
        assert_non_null(j);
        const cJSON *r;
        cJSON_ArrayForEach(r, cJSON_GetObjectItem(j, "requests"))
        {
            if (strcmp(jstr(r, "path"), "/_sink/whatsapp/" WA_ACCOUNT "/messages") == 0) {
                const cJSON *body = cJSON_GetObjectItem(r, "json");
                assert_string_equal(jstr(body, "messaging_product"), "whatsapp");
                seen = true;
            }
        }
        cJSON_Delete(j);
        sb_buf_free(&resp.body);
        if (!seen) usleep(100 * 1000);
    }
    sb_http_client_destroy(c);
    assert_true(seen);
    assert_int_equal(sends_of(t->prov, "out:wa-local"), 0);
}

static void test_attempts_above_max_deliver_refused(void **state)
{
    eg_t *t = *state;
    stop_router(t);
    char *extra = sb_xasprintf("nats:\n  max_deliver: 3\nrouter:\n  egress_max_attempts: 5\n"
                               "channels:\n  webchat:\n    signing_secret: \"%s\"\n",
                               t->wc_secret);
    assert_int_equal(sb_harness_write_config(&t->h, extra), SB_OK);
    free(extra);
    pid_t pid = sb_harness_spawn(&t->h, "switchboard-router", NULL);
    assert_true(pid > 0);
    int status = 0;
    pid_t w = 0;
    for (int i = 0; i < 200 && w == 0; i++) {
        w = waitpid(pid, &status, WNOHANG);
        if (w == 0) usleep(50 * 1000);
    }
    assert_int_equal(w, pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 2);
    sb_harness_kill(&t->h, pid);
}

int main(void)
{
    setenv("UV_THREADPOOL_SIZE", "32", 1); /* the slow provider holds many answers at once */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_whatsapp_send_and_event),
        cmocka_unit_test(test_webchat_send_signed),
        cmocka_unit_test(test_503_then_200_delivered_once),
        cmocka_unit_test(test_429_retry_after),
        cmocka_unit_test(test_400_fails_with_provider_code),
        cmocka_unit_test(test_gives_up_after_max_attempts),
        cmocka_unit_test(test_unopenable_recipient),
        cmocka_unit_test(test_published_twice_sent_once),
        cmocka_unit_test(test_whatsapp_window),
        cmocka_unit_test(test_rate_limit_spreads),
        cmocka_unit_test(test_concurrency_with_slow_provider),
        cmocka_unit_test(test_one_conversation_in_order),
        cmocka_unit_test(test_killed_after_send_not_sent_again),
        cmocka_unit_test(test_window_closed_without_template),
        cmocka_unit_test(test_builtin_sink),
        cmocka_unit_test(test_attempts_above_max_deliver_refused),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
