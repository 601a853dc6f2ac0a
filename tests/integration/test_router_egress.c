/* Router egress: Outbound messages published on sb.out.<channel> reach the channel API.
 *
 * A real nats-server, the real router with router.channel_api_base pointing at the harness
 * sink (SB_CHANNEL_API_BASE), and Outbounds whose Recipient is sealed to the harness's
 * recipient key. Checked at the sink: the URL, the bearer token (WhatsApp), the Standard
 * Webhooks signature (webchat, verified here), the Idempotency-Key and the JSON. Then the
 * retry contract: 503 twice then 200 is delivered once after the retries; 400 fails at once
 * with an Event on sb.ev.delivery_failed; a provider that keeps failing is given up after
 * router.egress_max_attempts; a Recipient that does not open never reaches the sink. Last,
 * without any API base, the router's built-in sink records the call (GET /_sink). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "harness.h"
#include "sb/codec.h"
#include "sb/httpclient.h"
#include "sb/seal.h"
#include "sb/util.h"

#define WAIT_MS 20000
#define MAX_ATTEMPTS 3
#define WA_TOKEN "egress-test-token"
#define WA_ACCOUNT "109000000000042"

typedef struct eg {
    sb_harness_t h;
    sb_sink_t *sink;
    int sink_port;
    uint8_t wc_key[32];
    char wc_secret[80];
} eg_t;

static const char *jstr(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* The value of header name in a sink request's "Name: value\n" lines (static buffer). */
static const char *header(const sb_sink_request_t *r, const char *name)
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

static void publish_outbound(eg_t *t, const char *channel, const char *message_id,
                             const char *address, const char *text, bool bad_seal)
{
    sb_recipient_t rc = SWITCHBOARD__V1__RECIPIENT__INIT;
    rc.channel = (char *)channel;
    rc.address = (char *)address;
    rc.account_id = (char *)WA_ACCOUNT;
    rc.session_id = (char *)"wcs_egress_1";
    uint8_t *plain = NULL;
    size_t plen = 0;
    assert_int_equal(SB_CODEC_PACK(&rc, &plain, &plen), SB_OK);
    uint8_t *sealed = sb_xmalloc(plen + SB_SEAL_BOX_OVERHEAD);
    uint8_t other_pk[32], other_sk[32];
    sb_seal_box_keypair(other_pk, other_sk);
    assert_int_equal(sb_seal_box(sealed, plain, plen, bad_seal ? other_pk : t->h.recipient_pk),
                     SB_OK);

    sb_outbound_t o = SWITCHBOARD__V1__OUTBOUND__INIT;
    o.message_id = (char *)message_id;
    o.conversation_id = (char *)"0123456789abcdef0123456789abcdef";
    o.partition = 3;
    o.channel = (char *)channel;
    o.sealed_recipient.data = sealed;
    o.sealed_recipient.len = plen + SB_SEAL_BOX_OVERHEAD;
    o.author = SWITCHBOARD__V1__AUTHOR__AUTHOR_BOT;
    o.text = (char *)text;
    o.created_at_ms = 1772442900000LL;
    Switchboard__V1__Button b1 = SWITCHBOARD__V1__BUTTON__INIT, b2 = SWITCHBOARD__V1__BUTTON__INIT;
    b1.id = (char *)"track";
    b1.title = (char *)"Track parcel";
    b2.id = (char *)"agent";
    b2.title = (char *)"Talk to an agent";
    Switchboard__V1__Button *buttons[] = {&b1, &b2};
    o.buttons = buttons;
    o.n_buttons = 2;
    uint8_t *data = NULL;
    size_t len = 0;
    assert_int_equal(SB_CODEC_PACK(&o, &data, &len), SB_OK);
    char subject[64];
    snprintf(subject, sizeof subject, "sb.out.%s", channel);
    assert_int_equal(sb_bus_publish(t->h.bus, subject, data, len, message_id, NULL), SB_OK);
    free(data);
    free(sealed);
    free(plain);
}

/* Requests at the sink that carry Idempotency-Key: message_id. */
static size_t sends_of(eg_t *t, const char *message_id)
{
    size_t n = sb_sink_wait(t->sink, 0, 0), k = 0;
    for (size_t i = 0; i < n; i++) {
        const char *v = header(sb_sink_get(t->sink, i), "Idempotency-Key");
        if (v && strcmp(v, message_id) == 0) k++;
    }
    return k;
}

static size_t wait_sends(eg_t *t, const char *message_id, size_t want)
{
    size_t n = 0;
    for (int i = 0; i < WAIT_MS / 50; i++) {
        n = sends_of(t, message_id);
        if (n >= want) break;
        sb_sink_wait(t->sink, sb_sink_wait(t->sink, 0, 0) + 1, 50);
    }
    return n;
}

typedef struct ev_find {
    const char *message_id;
    sb_event_t *found;
    size_t count;
} ev_find_t;

static void on_event(void *ctx, const char *subject, const void *data, size_t len)
{
    ev_find_t *f = ctx;
    assert_string_equal(subject, "sb.ev.delivery_failed");
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

/* The delivery_failed event of message_id, waiting for it; the caller frees it. */
static sb_event_t *failed_event(eg_t *t, const char *message_id, size_t *count)
{
    for (int i = 0; i < WAIT_MS / 100; i++) {
        ev_find_t f = {.message_id = message_id};
        size_t n = 0;
        assert_int_equal(sb_harness_read_stream(&t->h, SB_STREAM_EVENTS, "sb.ev.delivery_failed",
                                                on_event, &f, &n),
                         SB_OK);
        if (f.found) {
            if (count) *count = f.count;
            return f.found;
        }
        usleep(100 * 1000);
    }
    return NULL;
}

static size_t failed_count(eg_t *t)
{
    return sb_harness_wait_stream(&t->h, SB_STREAM_EVENTS, "sb.ev.delivery_failed", (size_t)-1, 0);
}

static int setup(void **state)
{
    eg_t *t = sb_xcalloc(1, sizeof *t);
    assert_int_equal(sb_seal_init(), SB_OK);
    assert_int_equal(sb_harness_start_nats(&t->h), SB_OK);
    assert_int_equal(sb_sink_start(&t->sink, &t->sink_port), SB_OK);
    sb_seal_random(t->wc_key, sizeof t->wc_key);
    char b64[64];
    sb_seal_base64_encode(b64, t->wc_key, sizeof t->wc_key);
    snprintf(t->wc_secret, sizeof t->wc_secret, "whsec_%s", b64);
    char base[64];
    snprintf(base, sizeof base, "http://127.0.0.1:%d/", t->sink_port);
    setenv("SB_CHANNEL_API_BASE", base, 1);
    unsetenv("SB_TEST_NOW");
    char *extra = sb_xasprintf("router:\n  egress_max_attempts: %d\n"
                               "channels:\n  webchat:\n    signing_secret: \"%s\"\n"
                               "  whatsapp:\n    app_secret: \"egress-app-secret\"\n"
                               "    verify_token: \"egress-verify\"\n"
                               "    access_token: \"%s\"\n",
                               MAX_ATTEMPTS, t->wc_secret, WA_TOKEN);
    assert_int_equal(sb_harness_write_config(&t->h, extra), SB_OK);
    free(extra);
    assert_true(sb_harness_spawn(&t->h, "switchboard-router", NULL) > 0);
    char ready[128];
    snprintf(ready, sizeof ready, "%s/readyz", t->h.router_url);
    assert_int_equal(sb_harness_wait_http(ready, WAIT_MS), SB_OK);
    *state = t;
    return 0;
}

static int teardown(void **state)
{
    eg_t *t = *state;
    sb_harness_stop(&t->h);
    sb_sink_stop(t->sink);
    unsetenv("SB_CHANNEL_API_BASE");
    free(t);
    return 0;
}

static const sb_sink_request_t *last_send(eg_t *t, const char *message_id)
{
    const sb_sink_request_t *found = NULL;
    size_t n = sb_sink_wait(t->sink, 0, 0);
    for (size_t i = 0; i < n; i++) {
        const sb_sink_request_t *r = sb_sink_get(t->sink, i);
        const char *v = header(r, "Idempotency-Key");
        if (v && strcmp(v, message_id) == 0) found = r;
    }
    assert_non_null(found);
    return found;
}

static void test_whatsapp_send(void **state)
{
    eg_t *t = *state;
    publish_outbound(t, "whatsapp", "out:wa-1", "15550109876", "Your parcel ships today.", false);
    assert_int_equal(wait_sends(t, "out:wa-1", 1), 1);
    const sb_sink_request_t *r = last_send(t, "out:wa-1");
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
    assert_string_equal(jstr(cJSON_GetObjectItem(cJSON_GetArrayItem(btns, 1), "reply"), "title"),
                        "Talk to an agent");
    cJSON_Delete(j);
}

static void test_webchat_send_signed(void **state)
{
    eg_t *t = *state;
    publish_outbound(t, "webchat", "out:wc-1", "wcv_visitor_7", "Hello from the bot", false);
    assert_int_equal(wait_sends(t, "out:wc-1", 1), 1);
    const sb_sink_request_t *r = last_send(t, "out:wc-1");
    assert_string_equal(r->path, "/webchat/messages");
    char id[128], ts[32], sig[128];
    snprintf(id, sizeof id, "%s", header(r, "webhook-id"));
    snprintf(ts, sizeof ts, "%s", header(r, "webhook-timestamp"));
    snprintf(sig, sizeof sig, "%s", header(r, "webhook-signature"));
    assert_string_equal(id, "out:wc-1");
    /* Recompute the Standard Webhooks signature over the received bytes. */
    uint8_t mac[32];
    sb_seal_part_t parts[] = {
        {id, strlen(id)}, {".", 1}, {ts, strlen(ts)}, {".", 1}, {r->body, r->body_len}};
    sb_seal_hmac_sha256(mac, t->wc_key, sizeof t->wc_key, parts, 5);
    char b64[64], want[80];
    sb_seal_base64_encode(b64, mac, sizeof mac);
    snprintf(want, sizeof want, "v1,%s", b64);
    assert_string_equal(sig, want);
    long long ts_v = atoll(ts);
    assert_true(ts_v > 1700000000LL);
    cJSON *j = cJSON_ParseWithLength(r->body, r->body_len);
    assert_non_null(j);
    assert_string_equal(jstr(j, "schema"), "webchat.v1");
    assert_string_equal(jstr(j, "type"), "message.created");
    assert_string_equal(jstr(j, "id"), "out:wc-1");
    assert_string_equal(jstr(j, "author"), "bot");
    assert_string_equal(jstr(j, "session_id"), "wcs_egress_1");
    assert_string_equal(jstr(cJSON_GetObjectItem(j, "visitor"), "id"), "wcv_visitor_7");
    const cJSON *msg = cJSON_GetObjectItem(j, "message");
    assert_string_equal(jstr(msg, "text"), "Hello from the bot");
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(msg, "buttons")), 2);
    cJSON_Delete(j);
}

static void test_retry_then_delivered_once(void **state)
{
    eg_t *t = *state;
    size_t failed_before = failed_count(t);
    sb_sink_fail_next(t->sink, 503, 2);
    publish_outbound(t, "whatsapp", "out:wa-retry", "15550109876", "retry me", false);
    assert_int_equal(wait_sends(t, "out:wa-retry", 3), 3);
    /* Delivered: no further attempt and no failure event. Give a redelivery time to show. */
    size_t n = sb_sink_wait(t->sink, 0, 0);
    assert_int_equal(sb_sink_wait(t->sink, n + 1, 1500), n);
    assert_int_equal(sends_of(t, "out:wa-retry"), 3);
    assert_int_equal(failed_count(t), failed_before);
}

static void test_rejected_fails_at_once(void **state)
{
    eg_t *t = *state;
    sb_sink_fail_next(t->sink, 400, 1);
    publish_outbound(t, "whatsapp", "out:wa-400", "15550109876", "bad request", false);
    size_t count = 0;
    sb_event_t *ev = failed_event(t, "out:wa-400", &count);
    assert_non_null(ev);
    assert_int_equal(count, 1);
    assert_int_equal(ev->type, SWITCHBOARD__V1__EVENT_TYPE__EVENT_DELIVERY_FAILED);
    assert_int_equal(ev->error_code, 400);
    assert_string_equal(ev->detail, "rejected");
    assert_string_equal(ev->channel, "whatsapp");
    assert_string_equal(ev->conversation_id, "0123456789abcdef0123456789abcdef");
    assert_int_equal(ev->partition, 3);
    SB_CODEC_FREE(ev);
    /* Not retried. */
    size_t n = sb_sink_wait(t->sink, 0, 0);
    assert_int_equal(sb_sink_wait(t->sink, n + 1, 1500), n);
    assert_int_equal(sends_of(t, "out:wa-400"), 1);
}

static void test_gives_up_after_max_attempts(void **state)
{
    eg_t *t = *state;
    sb_sink_fail_next(t->sink, 503, 100);
    publish_outbound(t, "webchat", "out:wc-down", "wcv_visitor_7", "nobody home", false);
    sb_event_t *ev = failed_event(t, "out:wc-down", NULL);
    sb_sink_fail_next(t->sink, 200, 0);
    assert_non_null(ev);
    assert_int_equal(ev->error_code, 503);
    assert_string_equal(ev->detail, "attempts_exhausted");
    SB_CODEC_FREE(ev);
    assert_int_equal(sends_of(t, "out:wc-down"), MAX_ATTEMPTS);
}

static void test_unopenable_recipient(void **state)
{
    eg_t *t = *state;
    publish_outbound(t, "whatsapp", "out:wa-badseal", "15550109876", "lost", true);
    sb_event_t *ev = failed_event(t, "out:wa-badseal", NULL);
    assert_non_null(ev);
    assert_string_equal(ev->detail, "bad_recipient");
    SB_CODEC_FREE(ev);
    assert_int_equal(sends_of(t, "out:wa-badseal"), 0);
}

static void test_builtin_sink(void **state)
{
    eg_t *t = *state;
    /* A second router without any API base: its own /_sink/ records the call. It shares the
     * durable consumer, so the first router is stopped first. */
    for (int i = 0; i < t->h.nprocs; i++)
        sb_harness_kill(&t->h, t->h.procs[i]);
    unsetenv("SB_CHANNEL_API_BASE");
    char *extra = sb_xasprintf("channels:\n  webchat:\n    signing_secret: \"%s\"\n"
                               "  whatsapp:\n    app_secret: \"s\"\n    verify_token: \"v\"\n"
                               "    access_token: \"%s\"\n    api_base: \"\"\n",
                               t->wc_secret, WA_TOKEN);
    /* The new config has new keys: seal to the ones the new router will load. */
    assert_int_equal(sb_harness_write_config(&t->h, extra), SB_OK);
    free(extra);
    assert_true(sb_harness_spawn(&t->h, "switchboard-router", NULL) > 0);
    char url[128];
    snprintf(url, sizeof url, "%s/readyz", t->h.router_url);
    assert_int_equal(sb_harness_wait_http(url, WAIT_MS), SB_OK);
    publish_outbound(t, "whatsapp", "out:wa-local", "15550109876", "to the built-in sink", false);

    sb_http_client_t *c = NULL;
    assert_int_equal(sb_http_client_create(&c), SB_OK);
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
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_whatsapp_send),
        cmocka_unit_test(test_webchat_send_signed),
        cmocka_unit_test(test_retry_then_delivered_once),
        cmocka_unit_test(test_rejected_fails_at_once),
        cmocka_unit_test(test_gives_up_after_max_attempts),
        cmocka_unit_test(test_unopenable_recipient),
        cmocka_unit_test(test_builtin_sink),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
