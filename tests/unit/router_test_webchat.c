/* Unit tests of the webchat channel (router/channel_webchat.c): Standard Webhooks verification
 * on the raw bytes with an injected clock, parsing of every webchat.v1 event into normalized
 * items, 400/422 for bad input, the Envelope built from each item, and the signed outbound
 * message. Table-driven over the router's own fixtures (tests/fixtures/channels/webchat, made
 * by scripts/make-fixtures) and, when present, the shared set ($SB_SHARED_DIR/channels). */
#include "router_channel_test.h"

#include <unistd.h>

/* One webchat config: the signing secret(s) under test. */
static void fill_cfg(sb_config_t *cfg, const char *secret)
{
    cfg->webchat.enabled = true;
    cfg->webchat.signing_secret = (char *)secret;
    cfg->webchat.max_skew_s = 300;
    cfg->webchat.max_body_bytes = 65536;
    cfg->webchat.callback_url = (char *)"https://widget.example.org/hooks/";
}

static void make_cfg(sb_config_t *cfg, const cJSON *secrets, const fx_case_t *fc)
{
    fill_cfg(cfg, fx_case_secret(fc, secrets, "signing_secret"));
}

static fx_channel_t webchat = {
    .ops = &sb_channel_webchat, .own_cases = 15, .shared_cases = 8, .make_cfg = make_cfg};

static sb_channel_t *make_channel(const char *secret)
{
    sb_config_t cfg;
    memset(&cfg, 0, sizeof cfg);
    fill_cfg(&cfg, secret);
    return fx_channel_create(&sb_channel_webchat, &cfg);
}

/* "whsec_" + base64 of a fixed 32-byte key. */
static void test_secret(char *out, size_t n, uint8_t key[32], uint8_t fill)
{
    memset(key, fill, 32);
    char b64[64];
    sb_seal_base64_encode(b64, key, 32);
    snprintf(out, n, "whsec_%s", b64);
}

static void sign(char *out, size_t n, const uint8_t key[32], const char *id, const char *ts,
                 const char *body)
{
    uint8_t mac[32];
    sb_seal_part_t parts[] = {
        {id, strlen(id)}, {".", 1}, {ts, strlen(ts)}, {".", 1}, {body, strlen(body)}};
    sb_seal_hmac_sha256(mac, key, 32, parts, 5);
    char b64[64];
    sb_seal_base64_encode(b64, mac, 32);
    snprintf(out, n, "v1,%s", b64);
}

static void test_published_vector(void **state)
{
    (void)state;
    /* Standard Webhooks' own test vector. */
    sb_channel_t *ch = make_channel("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
    const char *body = "{\"test\": 2432232314}";
    fx_req_t r;
    fx_req_init(&r, body, strlen(body), "webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek",
                "webhook-timestamp", "1614265330", "webhook-signature",
                "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=", NULL);
    const char *reason = NULL;
    assert_int_equal(sb_channel_webchat.verify(ch, &r.req, 1614265330, &reason), SB_OK);
    /* One byte more in the body breaks it. */
    r.req.body_len--;
    assert_int_equal(sb_channel_webchat.verify(ch, &r.req, 1614265330, &reason), SB_E_AUTH);
    assert_string_equal(reason, "bad_signature");
    sb_channel_destroy(ch);
}

static void test_window_and_headers(void **state)
{
    (void)state;
    char secret[128], sig[128];
    uint8_t key[32];
    test_secret(secret, sizeof secret, key, 0x42);
    sb_channel_t *ch = make_channel(secret);
    const char *body = "{\"schema\":\"webchat.v1\"}";
    sign(sig, sizeof sig, key, "evt_1", "1000000", body);
    fx_req_t r;
    fx_req_init(&r, body, strlen(body), "Webhook-Id", "evt_1", "WEBHOOK-TIMESTAMP", "1000000",
                "webhook-signature", sig, NULL);
    const char *reason = NULL;
    /* Exactly at the edges of the 300 s window: accepted; one second beyond: refused. */
    assert_int_equal(sb_channel_webchat.verify(ch, &r.req, 1000300, &reason), SB_OK);
    assert_int_equal(sb_channel_webchat.verify(ch, &r.req, 999700, &reason), SB_OK);
    assert_int_equal(sb_channel_webchat.verify(ch, &r.req, 1000301, &reason), SB_E_AUTH);
    assert_string_equal(reason, "stale_timestamp");
    assert_int_equal(sb_channel_webchat.verify(ch, &r.req, 999699, &reason), SB_E_AUTH);
    assert_string_equal(reason, "stale_timestamp");

    /* Missing headers. */
    for (size_t skip_i = 0; skip_i < 3; skip_i++) {
        fx_req_t m;
        fx_req_init(&m, body, strlen(body), NULL);
        for (size_t i = 0; i < 3; i++) {
            if (i == skip_i) continue;
            m.h[m.req.nheaders++] = r.h[i];
        }
        assert_int_equal(sb_channel_webchat.verify(ch, &m.req, 1000000, &reason), SB_E_AUTH);
        assert_string_equal(reason, "missing_signature");
    }
    /* A timestamp that is not a number. */
    r.h[1].value = "10000x0";
    assert_int_equal(sb_channel_webchat.verify(ch, &r.req, 1000000, &reason), SB_E_AUTH);
    assert_string_equal(reason, "malformed_signature");
    sb_channel_destroy(ch);
}

static void test_several_signatures_and_rotation(void **state)
{
    (void)state;
    char s1[128], s2[128], both[300], sig1[128], sig2[128], sigs[400];
    uint8_t k1[32], k2[32];
    test_secret(s1, sizeof s1, k1, 0x01);
    test_secret(s2, sizeof s2, k2, 0x02);
    const char *body = "{}";
    sign(sig1, sizeof sig1, k1, "id", "500", body);
    sign(sig2, sizeof sig2, k2, "id", "500", body);
    const char *reason = NULL;

    /* One secret configured; several signatures sent, the valid one last. */
    sb_channel_t *ch = make_channel(s1);
    snprintf(sigs, sizeof sigs, "v1,AAAA v2,xyz %s", sig1);
    fx_req_t r;
    fx_req_init(&r, body, 2, "webhook-id", "id", "webhook-timestamp", "500", "webhook-signature",
                sigs, NULL);
    assert_int_equal(sb_channel_webchat.verify(ch, &r.req, 500, &reason), SB_OK);
    /* Only a signature by another key: refused. */
    r.h[2].value = sig2;
    assert_int_equal(sb_channel_webchat.verify(ch, &r.req, 500, &reason), SB_E_AUTH);
    /* A signature with the wrong version prefix is not a v1 signature. */
    char v2[140];
    snprintf(v2, sizeof v2, "v2,%s", sig1 + 3);
    r.h[2].value = v2;
    assert_int_equal(sb_channel_webchat.verify(ch, &r.req, 500, &reason), SB_E_AUTH);
    sb_channel_destroy(ch);

    /* Two secrets configured (rotation): either verifies. */
    snprintf(both, sizeof both, "%s %s", s1, s2);
    ch = make_channel(both);
    r.h[2].value = sig2;
    assert_int_equal(sb_channel_webchat.verify(ch, &r.req, 500, &reason), SB_OK);
    r.h[2].value = sig1;
    assert_int_equal(sb_channel_webchat.verify(ch, &r.req, 500, &reason), SB_OK);
    sb_channel_destroy(ch);
}

static void test_bad_secret_config(void **state)
{
    (void)state;
    sb_config_t cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.webchat.signing_secret = (char *)"whsec_!!notbase64!!";
    cfg.webchat.max_body_bytes = 1024;
    sb_channel_t *ch = NULL;
    char err[256] = "";
    assert_int_equal(sb_channel_create(&sb_channel_webchat, &cfg, &ch, err, sizeof err),
                     SB_E_CONFIG);
    assert_non_null(strstr(err, "channels.webchat.signing_secret"));
    assert_null(strstr(err, "notbase64")); /* never the value */
    cfg.webchat.signing_secret = (char *)"";
    assert_int_equal(sb_channel_create(&sb_channel_webchat, &cfg, &ch, err, sizeof err),
                     SB_E_CONFIG);
}

static void parse_str(const char *body, sb_chan_batch_t *b)
{
    sb_channel_t *ch = make_channel("whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=");
    fx_parse(ch, body, b);
    sb_channel_destroy(ch);
}

static void test_parse_edges(void **state)
{
    (void)state;
    sb_chan_batch_t b;
    const struct {
        const char *body;
        int status;
    } cases[] = {
        {"", 400},
        {"{", 400},
        {"{} x", 400},
        {"\"webchat.v1\"", 400},
        {"{\"schema\":\"webchat.v2\",\"type\":\"message.created\"}", 422},
        {"{\"schema\":\"webchat.v1\",\"type\":\"message.created\",\"id\":\"a\","
         "\"occurred_at\":\"yesterday\"}",
         422},
        {"{\"schema\":\"webchat.v1\",\"type\":\"message.created\","
         "\"occurred_at\":\"2026-03-02T09:15:00Z\"}",
         422},
        {"{\"schema\":\"webchat.v1\",\"type\":\"message.created\",\"id\":\"a\","
         "\"occurred_at\":\"2026-03-02T09:15:00Z\",\"visitor\":{\"id\":\"v\"},"
         "\"message\":{\"kind\":\"text\"}}",
         422},
        {"{\"schema\":\"webchat.v1\",\"type\":\"receipt.read\",\"id\":\"a\","
         "\"occurred_at\":\"2026-03-02T09:15:00Z\",\"session_id\":\"s\","
         "\"receipt\":{\"message_ids\":[]}}",
         422},
        {"{\"schema\":\"webchat.v1\",\"type\":\"session.started\",\"id\":\"a\","
         "\"occurred_at\":\"2026-03-02T09:15:00Z\",\"session\":{\"id\":\"s\"}}",
         422},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        parse_str(cases[i].body, &b);
        if (b.reject_status != cases[i].status)
            fail_msg("case %zu: %d, expected %d", i, b.reject_status, cases[i].status);
        assert_int_equal(b.nitems, 0);
        sb_chan_batch_free(&b);
    }
    /* Time zones and fractions in occurred_at. */
    parse_str("{\"schema\":\"webchat.v1\",\"type\":\"message.created\",\"id\":\"a\","
              "\"occurred_at\":\"2026-03-02T10:15:00.250+01:00\",\"visitor\":{\"id\":\"v\"},"
              "\"message\":{\"kind\":\"text\",\"text\":\"hi\"}}",
              &b);
    assert_int_equal(b.nitems, 1);
    assert_int_equal(b.items[0].occurred_at_ms, 1772442900250LL);
    assert_string_equal(b.items[0].account_id, "webchat");
    sb_chan_batch_free(&b);
}

static void test_rfc3339(void **state)
{
    (void)state;
    int64_t ms = 0;
    assert_int_equal(sb_chan_parse_rfc3339("1970-01-01T00:00:00Z", &ms), SB_OK);
    assert_int_equal(ms, 0);
    assert_int_equal(sb_chan_parse_rfc3339("2000-02-29T23:59:59.5Z", &ms), SB_OK);
    assert_int_equal(ms, 951868799500LL);
    assert_int_equal(sb_chan_parse_rfc3339("2026-03-02T04:15:00-05:00", &ms), SB_OK);
    assert_int_equal(ms, 1772442900000LL);
    assert_int_not_equal(sb_chan_parse_rfc3339("2026-13-02T04:15:00Z", &ms), SB_OK);
    assert_int_not_equal(sb_chan_parse_rfc3339("2026-03-02 04:15:00Z", &ms), SB_OK);
    assert_int_not_equal(sb_chan_parse_rfc3339("2026-03-02T04:15:00", &ms), SB_OK);
    char buf[32];
    sb_chan_format_rfc3339(1772442900000LL, buf, sizeof buf);
    assert_string_equal(buf, "2026-03-02T09:15:00Z");
}

static void test_render(void **state)
{
    (void)state;
    char secret[128];
    uint8_t key[32];
    test_secret(secret, sizeof secret, key, 0x77);
    sb_channel_t *ch = make_channel(secret);

    sb_recipient_t rc = SWITCHBOARD__V1__RECIPIENT__INIT;
    rc.channel = (char *)"webchat";
    rc.address = (char *)"wcv_visitor_9";
    rc.session_id = (char *)"wcs_session_9";
    sb_outbound_t o = SWITCHBOARD__V1__OUTBOUND__INIT;
    o.message_id = (char *)"out:abc123";
    o.channel = (char *)"webchat";
    o.author = SWITCHBOARD__V1__AUTHOR__AUTHOR_AGENT;
    o.text = (char *)"Hello \"there\"";
    o.created_at_ms = 1772442900000LL;
    Switchboard__V1__Button b1 = SWITCHBOARD__V1__BUTTON__INIT, b2 = SWITCHBOARD__V1__BUTTON__INIT;
    b1.id = (char *)"yes";
    b1.title = (char *)"Yes";
    b2.id = (char *)"no";
    b2.title = (char *)"No";
    Switchboard__V1__Button *buttons[] = {&b1, &b2};
    o.buttons = buttons;
    o.n_buttons = 2;

    sb_chan_http_t req = {0};
    sb_chan_send_t send = {.out = &o,
                           .rcpt = &rc,
                           .api_base = "https://widget.example.org/hooks",
                           .now_s = 1772442950};
    assert_int_equal(sb_channel_webchat.render(ch, &send, &req), SB_OK);
    assert_string_equal(req.method, "POST");
    assert_string_equal(req.url, "https://widget.example.org/hooks/messages");
    cJSON *j = cJSON_ParseWithLength(req.body.data, req.body.len);
    assert_non_null(j);
    assert_string_equal(fx_str(j, "schema"), "webchat.v1");
    assert_string_equal(fx_str(j, "type"), "message.created");
    assert_string_equal(fx_str(j, "id"), "out:abc123");
    assert_string_equal(fx_str(j, "session_id"), "wcs_session_9");
    assert_string_equal(fx_str(j, "author"), "agent");
    assert_string_equal(fx_str(j, "occurred_at"), "2026-03-02T09:15:00Z");
    assert_string_equal(fx_str(cJSON_GetObjectItem(j, "visitor"), "id"), "wcv_visitor_9");
    const cJSON *msg = cJSON_GetObjectItem(j, "message");
    assert_string_equal(fx_str(msg, "kind"), "text");
    assert_string_equal(fx_str(msg, "text"), "Hello \"there\"");
    const cJSON *btns = cJSON_GetObjectItem(msg, "buttons");
    assert_int_equal(cJSON_GetArraySize(btns), 2);
    assert_string_equal(fx_str(cJSON_GetArrayItem(btns, 1), "id"), "no");
    assert_string_equal(fx_str(cJSON_GetArrayItem(btns, 1), "title"), "No");
    cJSON_Delete(j);

    /* The rendered headers verify with the same channel: a round trip of the signature. */
    fx_req_t r;
    fx_req_init(&r, req.body.data, req.body.len, NULL);
    char names[8][64];
    for (size_t i = 0; req.headers[i]; i++) {
        const char *colon = strchr(req.headers[i], ':');
        assert_non_null(colon);
        snprintf(names[i], sizeof names[i], "%.*s", (int)(colon - req.headers[i]), req.headers[i]);
        r.h[r.req.nheaders].name = names[i];
        r.h[r.req.nheaders].value = colon + 2;
        r.req.nheaders++;
    }
    assert_string_equal(sb_http_header(&r.req, "webhook-id"), "out:abc123");
    assert_string_equal(sb_http_header(&r.req, "webhook-timestamp"), "1772442950");
    const char *reason = NULL;
    assert_int_equal(sb_channel_webchat.verify(ch, &r.req, 1772442950, &reason), SB_OK);
    sb_chan_http_free(&req);

    /* The bot is the default author; no address, no send. */
    o.author = SWITCHBOARD__V1__AUTHOR__AUTHOR_BOT;
    o.n_buttons = 0;
    send.api_base = "http://x";
    send.now_s = 1;
    assert_int_equal(sb_channel_webchat.render(ch, &send, &req), SB_OK);
    assert_non_null(strstr(req.body.data, "\"author\":\"bot\""));
    assert_null(strstr(req.body.data, "buttons"));
    sb_chan_http_free(&req);
    rc.address = (char *)"";
    assert_int_equal(sb_channel_webchat.render(ch, &send, &req), SB_E_INVALID);
    sb_channel_destroy(ch);
}

static void test_clock_hook(void **state)
{
    (void)state;
    setenv("SB_TEST_NOW", "1772442901", 1);
    assert_int_equal(sb_router_now_s(), 1772442901);
    char path[] = "/tmp/sb-router-clock-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "1614265331\n", 11), 11);
    close(fd);
    setenv("SB_TEST_NOW", path, 1);
    assert_int_equal(sb_router_now_s(), 1614265331);
    unlink(path);
    /* A file that vanished, or garbage: the wall clock. */
    assert_true(sb_router_now_s() > 1700000000);
    setenv("SB_TEST_NOW", "soon", 1);
    assert_true(sb_router_now_s() > 1700000000);
    unsetenv("SB_TEST_NOW");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_prestate(fx_test_own_manifest, &webchat),
        cmocka_unit_test_prestate(fx_test_shared_manifest, &webchat),
        cmocka_unit_test(test_published_vector),
        cmocka_unit_test(test_window_and_headers),
        cmocka_unit_test(test_several_signatures_and_rotation),
        cmocka_unit_test(test_bad_secret_config),
        cmocka_unit_test(test_parse_edges),
        cmocka_unit_test(test_rfc3339),
        cmocka_unit_test(test_render),
        cmocka_unit_test(test_clock_hook),
    };
    return cmocka_run_group_tests(tests, fx_setup, NULL);
}
