/* Unit tests of the Facebook Messenger channel (router/channel_messenger.c over router/meta.c):
 * X-Hub-Signature-256 on the raw bytes (the legacy sha1 header alone is not enough), the GET
 * hub.* handshake, every messaging event kind into normalized items with the documented dedup
 * keys (fb:<mid>, fb-st:<psid>:<state>:<watermark>), batches of entries x events, our own
 * echoes ignored (loop guard), quarantine of authentic but unusable bodies, each item's
 * Envelope, and the exact Send API calls (text, quick replies, numbered list, HUMAN_AGENT tag,
 * cut text) and the reading of Graph answers. Table-driven over the router's own fixtures
 * (tests/fixtures/channels/messenger) and, when present, $SB_SHARED_DIR/channels/messenger. */
#include "router_channel_test.h"

/* One Messenger config: the app secret(s) and verify token under test. */
static void fill_cfg(sb_config_t *cfg, const char *secret, const char *token)
{
    cfg->messenger.enabled = true;
    cfg->messenger.app_secret = (char *)secret;
    cfg->messenger.verify_token = (char *)token;
    cfg->messenger.access_token = (char *)"EAApage-token";
    cfg->messenger.api_base = (char *)"https://graph.example.org/v19.0/";
    cfg->messenger.max_body_bytes = 3 << 20;
}

static void make_cfg(sb_config_t *cfg, const cJSON *secrets, const fx_case_t *fc)
{
    fill_cfg(cfg, fx_case_secret(fc, secrets, "app_secret"), fx_str(secrets, "verify_token"));
}

static fx_channel_t messenger = {
    .ops = &sb_channel_messenger, .own_cases = 20, .shared_cases = 11, .make_cfg = make_cfg};

static sb_channel_t *make_channel(const char *secret, const char *token)
{
    sb_config_t cfg;
    memset(&cfg, 0, sizeof cfg);
    fill_cfg(&cfg, secret, token);
    return fx_channel_create(&sb_channel_messenger, &cfg);
}

static void test_config(void **state)
{
    (void)state;
    sb_config_t cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.messenger.app_secret = (char *)" ";
    cfg.messenger.max_body_bytes = 1024;
    sb_channel_t *ch = NULL;
    char err[256];
    assert_int_equal(sb_channel_create(&sb_channel_messenger, &cfg, &ch, err, sizeof err),
                     SB_E_CONFIG);
    assert_non_null(strstr(err, "channels.messenger.app_secret"));
    assert_ptr_equal(sb_channel_find("messenger"), &sb_channel_messenger);
    assert_string_equal(sb_channel_messenger.ingress_path, "/v1/ingress/messenger");
}

static void test_verify(void **state)
{
    (void)state;
    const char *body = "{\"object\":\"page\",\"entry\":[]}";
    char sig[80];
    fx_meta_sign(sig, sizeof sig, "s3cret", body);
    const char *reason = NULL;
    sb_channel_t *ch = make_channel("s3cret", "tok");
    fx_req_t r;
    fx_req_init(&r, body, strlen(body), "X-Hub-Signature-256", sig, NULL);
    assert_int_equal(sb_channel_messenger.verify(ch, &r.req, 0, &reason), SB_OK);
    /* One byte less: refused. */
    r.req.body_len--;
    assert_int_equal(sb_channel_messenger.verify(ch, &r.req, 0, &reason), SB_E_AUTH);
    assert_string_equal(reason, "bad_signature");
    r.req.body_len++;
    /* Only the legacy sha1 header: not accepted (we verify SHA-256 only). */
    fx_req_init(&r, body, strlen(body), "X-Hub-Signature",
                "sha1=0000000000000000000000000000000000000000", NULL);
    assert_int_equal(sb_channel_messenger.verify(ch, &r.req, 0, &reason), SB_E_AUTH);
    assert_string_equal(reason, "missing_signature");
    /* A wrong legacy header next to a right sha256 one does not matter. */
    fx_req_init(&r, body, strlen(body), "X-Hub-Signature", "sha1=bad", "X-Hub-Signature-256", sig,
                NULL);
    assert_int_equal(sb_channel_messenger.verify(ch, &r.req, 0, &reason), SB_OK);
    fx_req_init(&r, body, strlen(body), "X-Hub-Signature-256", "sha256=abc", NULL);
    assert_int_equal(sb_channel_messenger.verify(ch, &r.req, 0, &reason), SB_E_AUTH);
    assert_string_equal(reason, "malformed_signature");
    sb_channel_destroy(ch);
    /* Rotation: a list of app secrets. */
    ch = make_channel("new-secret s3cret", "tok");
    fx_req_init(&r, body, strlen(body), "X-Hub-Signature-256", sig, NULL);
    assert_int_equal(sb_channel_messenger.verify(ch, &r.req, 0, &reason), SB_OK);
    sb_channel_destroy(ch);
}

static void test_handshake(void **state)
{
    (void)state;
    sb_channel_t *ch = make_channel("s", "verify me");
    fx_req_t r;
    fx_req_init(&r, "", 0, NULL);
    r.req.method = "GET";
    r.req.path = "/v1/ingress/messenger";
    char body[512];
    r.req.query = "hub.mode=subscribe&hub.challenge=77&hub.verify_token=verify+me";
    assert_int_equal(sb_channel_messenger.handshake(ch, &r.req, body, sizeof body), 200);
    assert_string_equal(body, "77");
    r.req.query = "hub.mode=subscribe&hub.challenge=77&hub.verify_token=verify";
    assert_int_equal(sb_channel_messenger.handshake(ch, &r.req, body, sizeof body), 403);
    assert_string_equal(body, "");
    r.req.query = "hub.mode=unsubscribe&hub.challenge=77&hub.verify_token=verify+me";
    assert_int_equal(sb_channel_messenger.handshake(ch, &r.req, body, sizeof body), 403);
    sb_channel_destroy(ch);
}

static void parse_str(const char *body, sb_chan_batch_t *b)
{
    sb_channel_t *ch = make_channel("s", "t");
    fx_parse(ch, body, b);
    sb_channel_destroy(ch);
}

#define FB_HEAD "{\"object\":\"page\",\"entry\":[{\"id\":\"106\",\"time\":1,\"messaging\":["
#define FB_TAIL "]}]}"
#define EV(x)                                                                                      \
    "{\"sender\":{\"id\":\"7001\"},\"recipient\":{\"id\":\"106\"},\"timestamp\":1772442900012," x  \
    "}"

static void test_parse_edges(void **state)
{
    (void)state;
    sb_chan_batch_t b;
    const char *quarantined[] = {
        "",
        "[]",
        "{\"object\":\"instagram\",\"entry\":[]}",
        "{\"object\":\"page\",\"entry\":{}}",
        "{\"object\":\"page\",\"entry\":[1]}",
        "{\"object\":\"page\",\"entry\":[{\"id\":\"106\",\"messaging\":{}}]}",
        FB_HEAD "1" FB_TAIL,
        FB_HEAD EV("\"message\":{\"text\":\"no mid\"}") FB_TAIL,
        FB_HEAD EV("\"message\":\"x\"") FB_TAIL,
        FB_HEAD EV("\"message\":{\"mid\":\"m1\",\"text\":7}") FB_TAIL,
        FB_HEAD EV("\"message\":{\"mid\":\"m1\",\"quick_reply\":{}}") FB_TAIL,
        FB_HEAD EV("\"postback\":{\"title\":\"no payload\"}") FB_TAIL,
        FB_HEAD EV("\"delivery\":{\"mids\":[\"m1\"]}") FB_TAIL,
        FB_HEAD EV("\"read\":{\"watermark\":-5}") FB_TAIL,
        FB_HEAD EV("\"delivery\":{\"watermark\":5,\"mids\":[7]}") FB_TAIL,
        FB_HEAD EV("\"message\":{\"mid\":\"m1\",\"attachments\":[{\"type\":\"location\","
                   "\"payload\":{\"coordinates\":{\"lat\":95,\"long\":1}}}]}") FB_TAIL,
        /* A message without a timestamp cannot be ordered. */
        FB_HEAD "{\"sender\":{\"id\":\"7001\"},\"recipient\":{\"id\":\"106\"},\"message\":{"
                "\"mid\":\"m1\",\"text\":\"x\"}}" FB_TAIL,
    };
    sb_channel_t *ch = make_channel("s", "t");
    fx_parse_quarantined(ch, quarantined, sizeof quarantined / sizeof quarantined[0]);
    sb_channel_destroy(ch);

    /* A batch: two entries, an echo between two customer events, an event we do not route
     * (reaction) and a legacy postback without mid. Order is kept; the echo is counted. */
    parse_str(
        "{\"object\":\"page\",\"entry\":[{\"id\":\"106\",\"messaging\":[" EV(
            "\"message\":{\"mid\":"
            "\"m1\",\"text\":"
            "\"hello\",\"reply_"
            "to\":{\"mid\":\"m0\"}"
            "}") ","
                 "{\"sender\":{"
                 "\"id\":\"106\"},"
                 "\"recipient\":{"
                 "\"id\":\"7001\"}"
                 ",\"timestamp\":"
                 "5,"
                 "\"message\":{"
                 "\"mid\":\"m9\","
                 "\"is_echo\":"
                 "true,\"text\":"
                 "\"ours\"}}," EV("\"reaction\""
                                  ":{\"mid\":"
                                  "\"m9\","
                                  "\"action\":"
                                  "\"react\","
                                  "\"emoji\":"
                                  "\"x\"}") "]}"
                                            ","
                                            "{"
                                            "\""
                                            "id"
                                            "\""
                                            ":"
                                            "\""
                                            "10"
                                            "7"
                                            "\""
                                            ","
                                            "\""
                                            "me"
                                            "ss"
                                            "ag"
                                            "in"
                                            "g"
                                            "\""
                                            ":"
                                            "[" EV("\"postback\":{\"payload\":\"MENU\",\"title\":"
                                                   "\"Menu\"}") "]},"
                                                                "{\"id\":\"108\",\"standby\":[" EV(
                                                                    "\"message\":{\"mid\":\"m5\","
                                                                    "\"text\":\"x\"}") "]}]}",
        &b);
    assert_false(b.quarantine);
    assert_int_equal(b.nitems, 2);
    assert_int_equal(b.nignored, 1);
    assert_int_equal(b.items[0].kind, SB_CHAN_TEXT);
    assert_string_equal(b.items[0].dedup_key, "fb:m1");
    assert_string_equal(b.items[0].in_reply_to, "m0");
    assert_string_equal(b.items[0].account_id, "106");
    assert_int_equal(b.items[0].occurred_at_ms, 1772442900012LL);
    assert_int_equal(b.items[1].kind, SB_CHAN_BUTTON_REPLY);
    assert_string_equal(b.items[1].dedup_key, "fb-pb:7001:1772442900012");
    assert_string_equal(b.items[1].account_id, "107");
    assert_string_equal(b.items[1].button_payload, "MENU");
    assert_null(b.items[1].provider_message_id);
    sb_chan_batch_free(&b);

    /* Only an echo: nothing to publish, nothing to quarantine. */
    parse_str(FB_HEAD "{\"sender\":{\"id\":\"106\"},\"recipient\":{\"id\":\"7001\"},"
                      "\"message\":{\"is_echo\":true}}" FB_TAIL,
              &b);
    assert_false(b.quarantine);
    assert_int_equal(b.nitems, 0);
    assert_int_equal(b.nignored, 1);
    assert_string_equal(b.reason, "own echo (loop guard)");
    sb_chan_batch_free(&b);

    /* Edits, legacy locations, files with a caption, unsupported attachments. */
    parse_str(
        FB_HEAD EV("\"message_edit\":{\"mid\":\"m1\",\"text\":\"fixed\",\"num_edit\":2}") "," EV(
            "\"message\":{\"mid\":\"m2\",\"attachments\":[{\"type\":\"location\","
            "\"title\":\"Pin\",\"payload\":{\"coordinates\":{\"lat\":48.1,\"long\":"
            "11.5}}}]}") "," EV("\"message\":{\"mid\":\"m3\",\"text\":\"see\",\"attachments\":[{"
                                "\"type\":"
                                "\"file\",\"payload\":{\"url\":\"https://cdn/x.pdf\"}}]}") "," EV("\"message\":{\"mid\":\"m4\",\"attachments\":[{\"type\":\"fallback\","
                                                                                                  "\"payload\":{}}]}") "," EV("\"read\":{\"watermark\":1772442990000}")
            FB_TAIL,
        &b);
    assert_false(b.quarantine);
    assert_int_equal(b.nitems, 5);
    assert_int_equal(b.items[0].kind, SB_CHAN_EDIT);
    assert_string_equal(b.items[0].dedup_key, "fb-edit:m1:2");
    assert_string_equal(b.items[0].provider_message_id, "m1");
    assert_string_equal(b.items[0].text, "fixed");
    assert_int_equal(b.items[1].kind, SB_CHAN_LOCATION);
    assert_true(fabs(b.items[1].location.latitude - 48.1) < 1e-9);
    assert_string_equal(b.items[1].location.name, "Pin");
    assert_int_equal(b.items[2].kind, SB_CHAN_MEDIA);
    assert_string_equal(b.items[2].media.type, "file");
    assert_string_equal(b.items[2].media.ref, "https://cdn/x.pdf");
    assert_string_equal(b.items[2].media.caption, "see");
    assert_int_equal(b.items[3].kind, SB_CHAN_UNSUPPORTED);
    assert_int_equal(b.items[4].kind, SB_CHAN_STATUS);
    assert_string_equal(b.items[4].dedup_key, "fb-st:7001:read:1772442990000");
    assert_int_equal(b.items[4].status.nrefs, 0);
    assert_int_equal(b.items[4].occurred_at_ms, 1772442900012LL);
    sb_chan_batch_free(&b);

    /* A bad event quarantines the body but keeps the good ones. */
    parse_str(
        FB_HEAD EV(
            "\"message\":{\"mid\":\"m1\",\"text\":\"ok\"}") ","
                                                            "{\"recipient\":{\"id\":\"106\"},"
                                                            "\"message\":{\"mid\":\"m2\"}}" FB_TAIL,
        &b);
    assert_true(b.quarantine);
    assert_int_equal(b.nitems, 1);
    assert_string_equal(b.reason, "messaging[] event without sender.id");
    sb_chan_batch_free(&b);
}

static void test_batch_limit(void **state)
{
    (void)state;
    sb_buf_t body = {0};
    sb_buf_appendf(&body, "%s", FB_HEAD);
    for (int i = 0; i < SB_CHAN_MAX_ITEMS + 3; i++)
        sb_buf_appendf(&body, "%s" EV("\"message\":{\"mid\":\"m%d\",\"text\":\"x\"}"), i ? "," : "",
                       i);
    sb_buf_appendf(&body, "%s", FB_TAIL);
    sb_buf_append(&body, "", 1);
    sb_chan_batch_t b;
    parse_str(body.data, &b);
    assert_int_equal(b.nitems, SB_CHAN_MAX_ITEMS);
    assert_true(b.quarantine);
    sb_chan_batch_free(&b);
    sb_buf_free(&body);
}

static sb_result_t do_render(sb_channel_t *ch, const sb_outbound_t *o, const sb_recipient_t *rc,
                             sb_chan_window_t w, sb_chan_http_t *req)
{
    return fx_render(ch, o, rc, "https://graph.example.org/v19.0", w, req);
}

static void test_render(void **state)
{
    (void)state;
    sb_channel_t *ch = make_channel("s", "t");
    sb_recipient_t rc = SWITCHBOARD__V1__RECIPIENT__INIT;
    rc.channel = (char *)"messenger";
    rc.address = (char *)"7000000000000001";
    rc.account_id = (char *)"106000000000007";
    sb_outbound_t o = SWITCHBOARD__V1__OUTBOUND__INIT;
    o.message_id = (char *)"out:1";
    o.channel = (char *)"messenger";
    o.text = (char *)"We ship to Austria.";
    sb_chan_http_t req;

    /* Text inside the window: RESPONSE, the page token as a bearer header only. */
    assert_int_equal(do_render(ch, &o, &rc, SB_CHAN_WINDOW_OPEN, &req), SB_OK);
    assert_string_equal(req.method, "POST");
    assert_string_equal(req.url, "https://graph.example.org/v19.0/me/messages");
    assert_null(strstr(req.url, "EAApage-token"));
    assert_string_equal(req.headers[0], "Content-Type: application/json");
    assert_string_equal(req.headers[1], "Authorization: Bearer EAApage-token");
    assert_null(req.headers[2]);
    fx_body_is(&req, "{\"recipient\":{\"id\":\"7000000000000001\"},\"messaging_type\":\"RESPONSE\","
                     "\"message\":{\"text\":\"We ship to Austria.\",\"metadata\":\"out:1\"}}");
    sb_chan_http_free(&req);

    /* Buttons as quick replies. */
    Switchboard__V1__Button b[14];
    Switchboard__V1__Button *bp[14];
    char ids[14][8], titles[14][8];
    for (int i = 0; i < 14; i++) {
        switchboard__v1__button__init(&b[i]);
        snprintf(ids[i], sizeof ids[i], "B%d", i);
        snprintf(titles[i], sizeof titles[i], "Opt %d", i);
        b[i].id = ids[i];
        b[i].title = titles[i];
        bp[i] = &b[i];
    }
    b[0].title = (char *)"Track my order";
    b[0].id = (char *)"QR_TRACK";
    b[1].title = (char *)"Größe";
    b[1].id = (char *)"QR_SIZE";
    o.buttons = bp;
    o.n_buttons = 2;
    assert_int_equal(do_render(ch, &o, &rc, SB_CHAN_WINDOW_OPEN, &req), SB_OK);
    fx_body_is(&req, "{\"recipient\":{\"id\":\"7000000000000001\"},\"messaging_type\":\"RESPONSE\","
                     "\"message\":{\"text\":\"We ship to Austria.\",\"quick_replies\":["
                     "{\"content_type\":\"text\",\"title\":\"Track my order\",\"payload\":"
                     "\"QR_TRACK\"},{\"content_type\":\"text\",\"title\":\"Größe\",\"payload\":"
                     "\"QR_SIZE\"}],\"metadata\":\"out:1\"}}");
    sb_chan_http_free(&req);

    /* Thirteen fit; fourteen become a numbered list. */
    o.n_buttons = 13;
    assert_int_equal(do_render(ch, &o, &rc, SB_CHAN_WINDOW_OPEN, &req), SB_OK);
    cJSON *j = cJSON_ParseWithLength(req.body.data, req.body.len);
    assert_int_equal(
        cJSON_GetArraySize(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "message"), "quick_replies")),
        13);
    cJSON_Delete(j);
    sb_chan_http_free(&req);
    o.n_buttons = 14;
    assert_int_equal(do_render(ch, &o, &rc, SB_CHAN_WINDOW_OPEN, &req), SB_OK);
    j = cJSON_ParseWithLength(req.body.data, req.body.len);
    const cJSON *m = cJSON_GetObjectItem(j, "message");
    assert_null(cJSON_GetObjectItem(m, "quick_replies"));
    const char *t = fx_str(m, "text");
    assert_non_null(strstr(t, "We ship to Austria.\n\n1. Track my order\n2. Größe\n3. Opt 2"));
    assert_non_null(strstr(t, "\n14. Opt 13"));
    cJSON_Delete(j);
    sb_chan_http_free(&req);

    /* A title above 20 characters: the list as well. */
    o.n_buttons = 2;
    b[1].title = (char *)"Talk to a human agent now";
    assert_int_equal(do_render(ch, &o, &rc, SB_CHAN_WINDOW_OPEN, &req), SB_OK);
    fx_body_is(&req, "{\"recipient\":{\"id\":\"7000000000000001\"},\"messaging_type\":\"RESPONSE\","
                     "\"message\":{\"text\":\"We ship to Austria.\\n\\n1. Track my order\\n2. Talk "
                     "to a human agent now\",\"metadata\":\"out:1\"}}");
    sb_chan_http_free(&req);

    /* An agent's late reply: the HUMAN_AGENT tag instead of RESPONSE. */
    o.n_buttons = 0;
    o.author = SWITCHBOARD__V1__AUTHOR__AUTHOR_AGENT;
    assert_int_equal(do_render(ch, &o, &rc, SB_CHAN_WINDOW_HUMAN_AGENT, &req), SB_OK);
    fx_body_is(&req, "{\"recipient\":{\"id\":\"7000000000000001\"},\"messaging_type\":"
                     "\"MESSAGE_TAG\",\"tag\":\"HUMAN_AGENT\",\"message\":{\"text\":\"We ship to "
                     "Austria.\",\"metadata\":\"out:1\"}}");
    sb_chan_http_free(&req);

    /* Texts above 2000 characters are cut on a character boundary. */
    char *longtext = sb_xmalloc(2 * 2100 + 1);
    for (int i = 0; i < 2100; i++)
        memcpy(longtext + 2 * i, "\xc3\xa4", 2); /* ä */
    longtext[2 * 2100] = '\0';
    o.text = longtext;
    assert_int_equal(do_render(ch, &o, &rc, SB_CHAN_WINDOW_OPEN, &req), SB_OK);
    j = cJSON_ParseWithLength(req.body.data, req.body.len);
    t = fx_str(cJSON_GetObjectItem(j, "message"), "text");
    assert_int_equal(sb_chan_utf8_len(t), 2000);
    assert_non_null(strstr(t, "\xe2\x80\xa6"));
    cJSON_Delete(j);
    sb_chan_http_free(&req);
    free(longtext);

    /* Refused: no recipient, nothing to say, a template window (Messenger has none). */
    o.text = (char *)"hi";
    assert_int_equal(do_render(ch, &o, &rc, SB_CHAN_WINDOW_TEMPLATE, &req), SB_E_INVALID);
    o.text = (char *)"";
    assert_int_equal(do_render(ch, &o, &rc, SB_CHAN_WINDOW_OPEN, &req), SB_E_INVALID);
    o.text = (char *)"hi";
    rc.address = (char *)"";
    assert_int_equal(do_render(ch, &o, &rc, SB_CHAN_WINDOW_OPEN, &req), SB_E_INVALID);
    sb_channel_destroy(ch);
}

static void test_window_and_response(void **state)
{
    (void)state;
    sb_channel_t *ch = make_channel("s", "t");
    /* 24 h free, HUMAN_AGENT to 7 days, no template. */
    assert_int_equal(ch->window.free_ms, SB_CHAN_WINDOW_24H_MS);
    assert_int_equal(ch->window.agent_tag_ms, SB_CHAN_WINDOW_7D_MS);
    sb_outbound_t o = SWITCHBOARD__V1__OUTBOUND__INIT;
    int64_t now = 1772442900000LL;
    o.last_customer_message_ms = now - 2 * 24 * 3600 * 1000LL;
    o.author = SWITCHBOARD__V1__AUTHOR__AUTHOR_AGENT;
    assert_int_equal(sb_chan_window_decide(&ch->window, &o, now), SB_CHAN_WINDOW_HUMAN_AGENT);
    o.author = SWITCHBOARD__V1__AUTHOR__AUTHOR_BOT;
    assert_int_equal(sb_chan_window_decide(&ch->window, &o, now), SB_CHAN_WINDOW_CLOSED);

    sb_chan_response_t res = {.ok = true, .retry_after_ms = -1};
    const char *ok = "{\"recipient_id\":\"7000000000000001\",\"message_id\":\"m_SENT1\"}";
    sb_channel_messenger.parse_response(ch, 200, ok, strlen(ok), &res);
    assert_true(res.ok);
    assert_string_equal(res.provider_id, "m_SENT1");
    sb_chan_response_t bad = {.ok = false, .retry_after_ms = -1};
    const char *err = "{\"error\":{\"message\":\"(#10) This message is sent outside of allowed "
                      "window.\",\"type\":\"OAuthException\",\"code\":10,\"error_subcode\":"
                      "2018278}}";
    sb_channel_messenger.parse_response(ch, 400, err, strlen(err), &bad);
    assert_false(bad.ok);
    assert_false(bad.retry);
    assert_int_equal(bad.error_code, 10);
    assert_string_equal(bad.error, "10.2018278");
    sb_channel_destroy(ch);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_prestate(fx_test_own_manifest, &messenger),
        cmocka_unit_test_prestate(fx_test_shared_manifest, &messenger),
        cmocka_unit_test(test_config),
        cmocka_unit_test(test_verify),
        cmocka_unit_test(test_handshake),
        cmocka_unit_test(test_parse_edges),
        cmocka_unit_test(test_batch_limit),
        cmocka_unit_test(test_render),
        cmocka_unit_test(test_window_and_response),
    };
    return cmocka_run_group_tests(tests, fx_setup, NULL);
}
