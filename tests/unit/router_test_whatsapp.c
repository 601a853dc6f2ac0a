/* Unit tests of the WhatsApp Cloud API channel (router/channel_whatsapp.c): X-Hub-Signature-256
 * verification on the raw bytes (case-insensitive hex, rotation), the GET hub.* handshake,
 * parsing of messages, statuses and batches into normalized items, quarantine of authentic but
 * unreadable bodies, the Envelope of each item, and the rendered Graph API calls (text,
 * buttons, numbered list, template). Table-driven over the router's own fixtures
 * (tests/fixtures/channels/whatsapp) and, when present, $SB_SHARED_DIR/channels/whatsapp. */
#include "router_channel_test.h"

/* One WhatsApp config: the app secret(s) and verify token under test. */
static void fill_cfg(sb_config_t *cfg, const char *secret, const char *token)
{
    cfg->whatsapp.enabled = true;
    cfg->whatsapp.app_secret = (char *)secret;
    cfg->whatsapp.verify_token = (char *)token;
    cfg->whatsapp.access_token = (char *)"EAAtest-token";
    cfg->whatsapp.api_base = (char *)"https://graph.example.org/v19.0/";
    cfg->whatsapp.max_body_bytes = 3 << 20;
}

static void make_cfg(sb_config_t *cfg, const cJSON *secrets, const fx_case_t *fc)
{
    fill_cfg(cfg, fx_case_secret(fc, secrets, "app_secret"), fx_str(secrets, "verify_token"));
}

static fx_channel_t whatsapp = {
    .ops = &sb_channel_whatsapp, .own_cases = 25, .shared_cases = 22, .make_cfg = make_cfg};

static sb_channel_t *make_channel(const char *secret, const char *token)
{
    sb_config_t cfg;
    memset(&cfg, 0, sizeof cfg);
    fill_cfg(&cfg, secret, token);
    return fx_channel_create(&sb_channel_whatsapp, &cfg);
}

static void test_verify(void **state)
{
    (void)state;
    const char *body = "{\"object\":\"whatsapp_business_account\",\"entry\":[]}";
    char sig[80], upper[80];
    fx_meta_sign(sig, sizeof sig, "s3cret", body);
    const char *reason = NULL;

    sb_channel_t *ch = make_channel("s3cret", "tok");
    fx_req_t r;
    fx_req_init(&r, body, strlen(body), "x-hub-signature-256", sig, NULL);
    assert_int_equal(sb_channel_whatsapp.verify(ch, &r.req, 0, &reason), SB_OK);
    /* Upper-case hex. */
    snprintf(upper, sizeof upper, "sha256=");
    for (size_t i = 7; sig[i]; i++)
        upper[i] = (char)((sig[i] >= 'a' && sig[i] <= 'f') ? sig[i] - 32 : sig[i]);
    upper[strlen(sig)] = '\0';
    r.h[0].value = upper;
    assert_int_equal(sb_channel_whatsapp.verify(ch, &r.req, 0, &reason), SB_OK);
    /* The body one byte shorter. */
    r.h[0].value = sig;
    r.req.body_len--;
    assert_int_equal(sb_channel_whatsapp.verify(ch, &r.req, 0, &reason), SB_E_AUTH);
    assert_string_equal(reason, "bad_signature");
    r.req.body_len++;
    /* Malformed headers. */
    const char *bad[] = {"sha256=", "sha256=zz", "72b3c4775b2556816ed49eb45c9f1c3cdf8266ae",
                         "sha1=abc", "SHA256=00"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        r.h[0].value = bad[i];
        assert_int_equal(sb_channel_whatsapp.verify(ch, &r.req, 0, &reason), SB_E_AUTH);
    }
    /* Non-hex characters of the right length. */
    char nonhex[80];
    snprintf(nonhex, sizeof nonhex, "%s", sig);
    nonhex[10] = 'g';
    r.h[0].value = nonhex;
    assert_int_equal(sb_channel_whatsapp.verify(ch, &r.req, 0, &reason), SB_E_AUTH);
    assert_string_equal(reason, "malformed_signature");
    /* No header. */
    r.req.nheaders = 0;
    assert_int_equal(sb_channel_whatsapp.verify(ch, &r.req, 0, &reason), SB_E_AUTH);
    assert_string_equal(reason, "missing_signature");
    sb_channel_destroy(ch);

    /* Rotation: the previous secret still verifies while both are configured. */
    ch = make_channel("n3w-secret s3cret", "tok");
    r.req.nheaders = 1;
    r.h[0].value = sig;
    assert_int_equal(sb_channel_whatsapp.verify(ch, &r.req, 0, &reason), SB_OK);
    sb_channel_destroy(ch);
    ch = make_channel("n3w-secret", "tok");
    assert_int_equal(sb_channel_whatsapp.verify(ch, &r.req, 0, &reason), SB_E_AUTH);
    sb_channel_destroy(ch);
}

static int handshake(sb_channel_t *ch, const char *query, char *body, size_t n)
{
    fx_req_t r;
    fx_req_init(&r, "", 0, NULL);
    r.req.method = "GET";
    r.req.path = "/v1/ingress/whatsapp";
    r.req.query = query;
    return sb_channel_whatsapp.handshake(ch, &r.req, body, n);
}

static void test_handshake(void **state)
{
    (void)state;
    sb_channel_t *ch = make_channel("s", "my token");
    char body[512];
    assert_int_equal(handshake(ch,
                               "hub.mode=subscribe&hub.challenge=12345&hub.verify_token=my+token",
                               body, sizeof body),
                     200);
    assert_string_equal(body, "12345");
    assert_int_equal(handshake(ch,
                               "hub.verify_token=my%20token&hub.challenge=abc&hub.mode=subscribe",
                               body, sizeof body),
                     200);
    assert_string_equal(body, "abc");
    const char *bad[] = {
        "hub.mode=subscribe&hub.challenge=1&hub.verify_token=my+toke",
        "hub.mode=subscribe&hub.challenge=1&hub.verify_token=my+tokenn",
        "hub.mode=subscribe&hub.challenge=1&hub.verify_token=",
        "hub.mode=Subscribe&hub.challenge=1&hub.verify_token=my+token",
        "hub.mode=subscribe&hub.verify_token=my+token",
        "hub.mode=subscribe&hub.challenge=&hub.verify_token=my+token",
        "hub.challenge=1&hub.verify_token=my+token",
        "",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        body[0] = 'x';
        if (handshake(ch, bad[i], body, sizeof body) != 403) fail_msg("case %zu not 403", i);
        assert_string_equal(body, "");
    }
    sb_channel_destroy(ch);
    /* No verify token configured: nobody can subscribe. */
    ch = make_channel("s", "");
    assert_int_equal(
        handshake(ch, "hub.mode=subscribe&hub.challenge=1&hub.verify_token=", body, sizeof body),
        403);
    sb_channel_destroy(ch);
}

static void parse_str(const char *body, sb_chan_batch_t *b)
{
    sb_channel_t *ch = make_channel("s", "t");
    fx_parse(ch, body, b);
    sb_channel_destroy(ch);
}

#define WA_HEAD                                                                                    \
    "{\"object\":\"whatsapp_business_account\",\"entry\":[{\"id\":\"1\",\"changes\":[{"            \
    "\"field\":\"messages\",\"value\":{\"metadata\":{\"phone_number_id\":\"42\"},"
#define WA_TAIL "}}]}]}"

static void test_parse_edges(void **state)
{
    (void)state;
    sb_chan_batch_t b;
    const char *quarantined[] = {
        "",
        "null",
        "[]",
        "{\"object\":\"whatsapp_business_account\"}",
        "{\"object\":\"whatsapp_business_account\",\"entry\":{}}",
        WA_HEAD "\"messages\":{}" WA_TAIL,
        WA_HEAD "\"messages\":[{\"from\":\"1\",\"id\":\"w\",\"timestamp\":\"1\"}]" WA_TAIL,
        WA_HEAD "\"messages\":[{\"from\":\"1\",\"id\":\"w\",\"timestamp\":\"-1\",\"type\":"
                "\"text\",\"text\":{\"body\":\"x\"}}]" WA_TAIL,
        WA_HEAD "\"messages\":[{\"from\":\"1\",\"id\":\"w\",\"timestamp\":\"1\",\"type\":"
                "\"location\",\"location\":{\"latitude\":91,\"longitude\":0}}]" WA_TAIL,
        WA_HEAD "\"statuses\":[{\"id\":\"w\",\"status\":\"read\",\"timestamp\":\"1\"}]" WA_TAIL,
        /* Messages without the business number: no conversation to key them on. */
        "{\"object\":\"whatsapp_business_account\",\"entry\":[{\"changes\":[{\"field\":"
        "\"messages\",\"value\":{\"messages\":[{\"from\":\"1\",\"id\":\"w\",\"timestamp\":\"1\","
        "\"type\":\"text\",\"text\":{\"body\":\"x\"}}]}}]}]}",
        /* A lone surrogate escape is not text. */
        WA_HEAD "\"messages\":[{\"from\":\"1\",\"id\":\"w\",\"timestamp\":\"1\",\"type\":"
                "\"text\",\"text\":{\"body\":\"\\ud83d\"}}]" WA_TAIL,
    };
    sb_channel_t *ch = make_channel("s", "t");
    fx_parse_quarantined(ch, quarantined, sizeof quarantined / sizeof quarantined[0]);
    sb_channel_destroy(ch);
    /* A numeric timestamp and a text without contacts; the phone goes to E.164. */
    parse_str(WA_HEAD "\"messages\":[{\"from\":\"15550001111\",\"id\":\"w1\",\"timestamp\":"
                      "1772442900,\"type\":\"text\",\"text\":{\"body\":\"hi\"}}]" WA_TAIL,
              &b);
    assert_int_equal(b.nitems, 1);
    assert_false(b.quarantine);
    assert_int_equal(b.items[0].occurred_at_ms, 1772442900000LL);
    assert_string_equal(b.items[0].phone, "+15550001111");
    assert_null(b.items[0].sender_name);
    assert_string_equal(b.items[0].account_id, "42");
    sb_chan_batch_free(&b);
    /* An interactive answer of a kind we do not read (flows): unsupported, not quarantined. */
    parse_str(WA_HEAD "\"messages\":[{\"from\":\"1\",\"id\":\"w2\",\"timestamp\":\"1\",\"type\":"
                      "\"interactive\",\"interactive\":{\"type\":\"nfm_reply\"}}]" WA_TAIL,
              &b);
    assert_int_equal(b.nitems, 1);
    assert_int_equal(b.items[0].kind, SB_CHAN_UNSUPPORTED);
    sb_chan_batch_free(&b);
    /* Statuses and messages in one change keep body order: messages first, then statuses. */
    parse_str(WA_HEAD "\"messages\":[{\"from\":\"1\",\"id\":\"m\",\"timestamp\":\"1\",\"type\":"
                      "\"text\",\"text\":{\"body\":\"a\"}}],\"statuses\":[{\"id\":\"s\",\"status\":"
                      "\"delivered\",\"timestamp\":\"2\",\"recipient_id\":\"1\"}]" WA_TAIL,
              &b);
    assert_int_equal(b.nitems, 2);
    assert_int_equal(b.items[0].kind, SB_CHAN_TEXT);
    assert_int_equal(b.items[1].kind, SB_CHAN_STATUS);
    assert_string_equal(b.items[1].dedup_key, "wa-st:s:delivered");
    assert_null(b.items[1].provider_message_id);
    sb_chan_batch_free(&b);
}

static void test_batch_limit(void **state)
{
    (void)state;
    /* More items than SB_CHAN_MAX_ITEMS: the first ones are kept, the body is quarantined. */
    sb_buf_t body = {0};
    sb_buf_appendf(&body, "%s\"statuses\":[", WA_HEAD);
    for (int i = 0; i < SB_CHAN_MAX_ITEMS + 5; i++)
        sb_buf_appendf(&body,
                       "%s{\"id\":\"w%d\",\"status\":\"read\",\"timestamp\":\"1\","
                       "\"recipient_id\":\"1\"}",
                       i ? "," : "", i);
    sb_buf_appendf(&body, "]%s", WA_TAIL);
    sb_buf_append(&body, "", 1);
    sb_chan_batch_t b;
    parse_str(body.data, &b);
    assert_int_equal(b.nitems, SB_CHAN_MAX_ITEMS);
    assert_true(b.quarantine);
    sb_chan_batch_free(&b);
    sb_buf_free(&body);
}

static cJSON *render(sb_channel_t *ch, const sb_outbound_t *o, const sb_recipient_t *rc,
                     sb_chan_http_t *req)
{
    return fx_render_json(ch, o, rc, "https://graph.example.org/v19.0", req);
}

static void test_render(void **state)
{
    (void)state;
    sb_channel_t *ch = make_channel("s", "t");
    sb_recipient_t rc = SWITCHBOARD__V1__RECIPIENT__INIT;
    rc.channel = (char *)"whatsapp";
    rc.address = (char *)"15550109876";
    rc.account_id = (char *)"109000000000042";
    sb_outbound_t o = SWITCHBOARD__V1__OUTBOUND__INIT;
    o.message_id = (char *)"out:1";
    o.channel = (char *)"whatsapp";
    o.text = (char *)"Your order ships today.";
    sb_chan_http_t req;

    /* Plain text. */
    cJSON *j = render(ch, &o, &rc, &req);
    assert_string_equal(req.method, "POST");
    assert_string_equal(req.url, "https://graph.example.org/v19.0/109000000000042/messages");
    bool auth = false;
    for (size_t i = 0; req.headers[i]; i++)
        if (strcmp(req.headers[i], "Authorization: Bearer EAAtest-token") == 0) auth = true;
    assert_true(auth);
    assert_string_equal(fx_str(j, "messaging_product"), "whatsapp");
    assert_string_equal(fx_str(j, "to"), "15550109876");
    assert_string_equal(fx_str(j, "type"), "text");
    assert_string_equal(fx_str(cJSON_GetObjectItem(j, "text"), "body"), "Your order ships today.");
    assert_null(cJSON_GetObjectItem(j, "context"));
    cJSON_Delete(j);
    sb_chan_http_free(&req);

    /* Up to three short buttons: an interactive button message, quoting the customer. */
    Switchboard__V1__Button b[4];
    Switchboard__V1__Button *bp[4];
    const char *titles[4] = {"Track parcel", "Talk to an agent", "Änderungen", "Something else"};
    const char *ids[4] = {"track", "agent", "change", "other"};
    for (int i = 0; i < 4; i++) {
        switchboard__v1__button__init(&b[i]);
        b[i].id = (char *)ids[i];
        b[i].title = (char *)titles[i];
        bp[i] = &b[i];
    }
    o.buttons = bp;
    o.n_buttons = 3;
    rc.in_reply_to = (char *)"wamid.QUOTED";
    j = render(ch, &o, &rc, &req);
    assert_string_equal(fx_str(j, "type"), "interactive");
    assert_string_equal(fx_str(cJSON_GetObjectItem(j, "context"), "message_id"), "wamid.QUOTED");
    const cJSON *ia = cJSON_GetObjectItem(j, "interactive");
    assert_string_equal(fx_str(ia, "type"), "button");
    assert_string_equal(fx_str(cJSON_GetObjectItem(ia, "body"), "text"), "Your order ships today.");
    const cJSON *btns = cJSON_GetObjectItem(cJSON_GetObjectItem(ia, "action"), "buttons");
    assert_int_equal(cJSON_GetArraySize(btns), 3);
    const cJSON *b2 = cJSON_GetArrayItem(btns, 2);
    assert_string_equal(fx_str(b2, "type"), "reply");
    assert_string_equal(fx_str(cJSON_GetObjectItem(b2, "reply"), "id"), "change");
    assert_string_equal(fx_str(cJSON_GetObjectItem(b2, "reply"), "title"), "Änderungen");
    cJSON_Delete(j);
    sb_chan_http_free(&req);

    /* Four buttons: a numbered text list. */
    o.n_buttons = 4;
    rc.in_reply_to = NULL;
    j = render(ch, &o, &rc, &req);
    assert_string_equal(fx_str(j, "type"), "text");
    assert_string_equal(fx_str(cJSON_GetObjectItem(j, "text"), "body"),
                        "Your order ships today.\n\n1. Track parcel\n2. Talk to an agent\n"
                        "3. Änderungen\n4. Something else");
    cJSON_Delete(j);
    sb_chan_http_free(&req);

    /* A title above 20 characters also falls back to the list. */
    o.n_buttons = 2;
    b[1].title = (char *)"Talk to a human agent now";
    j = render(ch, &o, &rc, &req);
    assert_string_equal(fx_str(j, "type"), "text");
    cJSON_Delete(j);
    sb_chan_http_free(&req);

    /* A template, with the locale as its language; a BSUID recipient. */
    o.n_buttons = 0;
    o.template_name = (char *)"order_update";
    o.locale = (char *)"de";
    rc.address = (char *)"bsuid:US.1349";
    j = render(ch, &o, &rc, &req);
    assert_string_equal(fx_str(j, "type"), "template");
    assert_null(cJSON_GetObjectItem(j, "to"));
    assert_string_equal(fx_str(j, "recipient_user_id"), "US.1349");
    const cJSON *tpl = cJSON_GetObjectItem(j, "template");
    assert_string_equal(fx_str(tpl, "name"), "order_update");
    assert_string_equal(fx_str(cJSON_GetObjectItem(tpl, "language"), "code"), "de");
    cJSON_Delete(j);
    sb_chan_http_free(&req);

    /* No account to send from, or one that would break out of the URL path: refused. */
    rc.account_id = (char *)"";
    assert_int_equal(
        sb_channel_whatsapp.render(
            ch, &(sb_chan_send_t){.out = &o, .rcpt = &rc, .api_base = "http://x", .now_s = 1},
            &req),
        SB_E_INVALID);
    rc.account_id = (char *)"../me";
    assert_int_equal(
        sb_channel_whatsapp.render(
            ch, &(sb_chan_send_t){.out = &o, .rcpt = &rc, .api_base = "http://x", .now_s = 1},
            &req),
        SB_E_INVALID);
    sb_channel_destroy(ch);
}

static void test_ingress_ids(void **state)
{
    (void)state;
    /* Provider ids on the bus are keyed hashes; the quarantine id depends on the body. */
    char a[SB_SEAL_HASH_HEX], b[SB_SEAL_HASH_HEX];
    sb_ingress_provider_hash(a, fx_keys.ik.id_secret, "whatsapp", "wamid.X");
    sb_ingress_provider_hash(b, fx_keys.ik.id_secret, "webchat", "wamid.X");
    assert_int_equal(strlen(a), 32);
    assert_string_not_equal(a, b);
    sb_ingress_quarantine_id(a, fx_keys.ik.id_secret, "whatsapp", "body1", 5);
    sb_ingress_quarantine_id(b, fx_keys.ik.id_secret, "whatsapp", "body2", 5);
    assert_string_not_equal(a, b);
    sb_ingress_quarantine_id(b, fx_keys.ik.id_secret, "whatsapp", "body1", 5);
    assert_string_equal(a, b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_prestate(fx_test_own_manifest, &whatsapp),
        cmocka_unit_test_prestate(fx_test_shared_manifest, &whatsapp),
        cmocka_unit_test(test_verify),
        cmocka_unit_test(test_handshake),
        cmocka_unit_test(test_parse_edges),
        cmocka_unit_test(test_batch_limit),
        cmocka_unit_test(test_render),
        cmocka_unit_test(test_ingress_ids),
    };
    return cmocka_run_group_tests(tests, fx_setup, NULL);
}
