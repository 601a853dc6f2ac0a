/* Unit tests of the Instagram messaging channel (router/channel_instagram.c over router/meta.c):
 * X-Hub-Signature-256 and the hub.* handshake (Meta's shared code, checked here through this
 * channel's own route and config), object "instagram" only, per-message reads
 * (ig-st:<mid>:read), deletions, echoes ignored, quarantine of the wrong shape, each item's
 * Envelope, and the exact Send API calls (no messaging_type, quick replies, HUMAN_AGENT tag,
 * text cut at 1000 bytes). Table-driven over the router's own fixtures
 * (tests/fixtures/channels/instagram) and, when present, $SB_SHARED_DIR/channels/instagram. */
#include "router_channel_test.h"

/* One Instagram config: the app secret(s) and verify token under test. */
static void fill_cfg(sb_config_t *cfg, const char *secret, const char *token)
{
    cfg->instagram.enabled = true;
    cfg->instagram.app_secret = (char *)secret;
    cfg->instagram.verify_token = (char *)token;
    cfg->instagram.access_token = (char *)"IGpage-token";
    cfg->instagram.api_base = (char *)"https://graph.example.org/v19.0";
    cfg->instagram.max_body_bytes = 3 << 20;
}

static void make_cfg(sb_config_t *cfg, const cJSON *secrets, const fx_case_t *fc)
{
    fill_cfg(cfg, fx_case_secret(fc, secrets, "app_secret"), fx_str(secrets, "verify_token"));
}

static fx_channel_t instagram = {
    .ops = &sb_channel_instagram, .own_cases = 18, .shared_cases = 8, .make_cfg = make_cfg};

static sb_channel_t *make_channel(void)
{
    sb_config_t cfg;
    memset(&cfg, 0, sizeof cfg);
    fill_cfg(&cfg, "s3cret", "tok");
    return fx_channel_create(&sb_channel_instagram, &cfg);
}

static void test_verify_handshake(void **state)
{
    (void)state;
    sb_channel_t *ch = make_channel();
    const char *body = "{\"object\":\"instagram\",\"entry\":[]}";
    char sig[80];
    fx_meta_sign(sig, sizeof sig, "s3cret", body);
    const char *reason = NULL;
    fx_req_t r;
    fx_req_init(&r, body, strlen(body), "X-Hub-Signature-256", sig, NULL);
    assert_int_equal(sb_channel_instagram.verify(ch, &r.req, 0, &reason), SB_OK);
    sig[10] = sig[10] == 'a' ? 'b' : 'a';
    assert_int_equal(sb_channel_instagram.verify(ch, &r.req, 0, &reason), SB_E_AUTH);
    assert_string_equal(reason, "bad_signature");
    fx_req_init(&r, "", 0, NULL);
    r.req.method = "GET";
    r.req.query = "hub.mode=subscribe&hub.challenge=c1&hub.verify_token=tok";
    char out[64];
    assert_int_equal(sb_channel_instagram.handshake(ch, &r.req, out, sizeof out), 200);
    assert_string_equal(out, "c1");
    r.req.query = "hub.mode=subscribe&hub.challenge=c1&hub.verify_token=to";
    assert_int_equal(sb_channel_instagram.handshake(ch, &r.req, out, sizeof out), 403);
    sb_channel_destroy(ch);
}

static void parse_str(const char *body, sb_chan_batch_t *b)
{
    sb_channel_t *ch = make_channel();
    fx_parse(ch, body, b);
    sb_channel_destroy(ch);
}

static void test_parse(void **state)
{
    (void)state;
    sb_chan_batch_t b;
    /* A Messenger body on the Instagram route is not ours. */
    parse_str("{\"object\":\"page\",\"entry\":[]}", &b);
    assert_true(b.quarantine);
    assert_string_equal(b.reason, "wrong object");
    sb_chan_batch_free(&b);
    /* Keys carry the ig prefixes. */
    parse_str("{\"object\":\"instagram\",\"entry\":[{\"id\":\"178\",\"messaging\":[{\"sender\":{"
              "\"id\":\"53\"},\"recipient\":{\"id\":\"178\"},\"timestamp\":1000,\"message\":{"
              "\"mid\":\"aW1\",\"text\":\"hi\"}},{\"sender\":{\"id\":\"53\"},\"recipient\":{\"id\":"
              "\"178\"},\"timestamp\":2000,\"read\":{\"mid\":\"aW0\"}}]}]}",
              &b);
    assert_int_equal(b.nitems, 2);
    assert_string_equal(b.items[0].dedup_key, "ig:aW1");
    assert_string_equal(b.items[1].dedup_key, "ig-st:aW0:read");
    assert_int_equal(b.items[1].status.nrefs, 1);
    assert_string_equal(b.items[1].status.refs[0], "aW0");
    sb_chan_batch_free(&b);
}

static void test_render(void **state)
{
    (void)state;
    sb_channel_t *ch = make_channel();
    sb_recipient_t rc = SWITCHBOARD__V1__RECIPIENT__INIT;
    rc.channel = (char *)"instagram";
    rc.address = (char *)"5300000000000001";
    rc.account_id = (char *)"17841400000000042";
    sb_outbound_t o = SWITCHBOARD__V1__OUTBOUND__INIT;
    o.message_id = (char *)"out:7";
    o.text = (char *)"Back in stock in S, M and L.";
    sb_chan_send_t send = {.out = &o,
                           .rcpt = &rc,
                           .api_base = "https://graph.example.org/v19.0",
                           .now_s = 1,
                           .window = SB_CHAN_WINDOW_OPEN};
    sb_chan_http_t req = {0};
    assert_int_equal(sb_channel_instagram.render(ch, &send, &req), SB_OK);
    assert_string_equal(req.url, "https://graph.example.org/v19.0/me/messages");
    assert_string_equal(req.headers[1], "Authorization: Bearer IGpage-token");
    fx_body_is(&req, "{\"recipient\":{\"id\":\"5300000000000001\"},\"message\":{\"text\":"
                     "\"Back in stock in S, M and L.\"}}");
    sb_chan_http_free(&req);

    /* Quick replies, and an agent's late answer with the HUMAN_AGENT tag. */
    Switchboard__V1__Button b = SWITCHBOARD__V1__BUTTON__INIT;
    Switchboard__V1__Button *bp[1] = {&b};
    b.id = (char *)"QR_SIZES";
    b.title = (char *)"Sizes";
    o.buttons = bp;
    o.n_buttons = 1;
    send.window = SB_CHAN_WINDOW_HUMAN_AGENT;
    assert_int_equal(sb_channel_instagram.render(ch, &send, &req), SB_OK);
    fx_body_is(&req, "{\"recipient\":{\"id\":\"5300000000000001\"},\"messaging_type\":"
                     "\"MESSAGE_TAG\",\"tag\":\"HUMAN_AGENT\",\"message\":{\"text\":"
                     "\"Back in stock in S, M and L.\",\"quick_replies\":[{"
                     "\"content_type\":\"text\",\"title\":\"Sizes\",\"payload\":"
                     "\"QR_SIZES\"}]}}");
    sb_chan_http_free(&req);

    /* 1000 bytes at most, cut between characters. */
    char *longtext = sb_xmalloc(1501);
    for (int i = 0; i < 500; i++)
        memcpy(longtext + 3 * i, "\xe2\x82\xac", 3); /* € */
    longtext[1500] = '\0';
    o.text = longtext;
    o.n_buttons = 0;
    send.window = SB_CHAN_WINDOW_OPEN;
    assert_int_equal(sb_channel_instagram.render(ch, &send, &req), SB_OK);
    cJSON *j = cJSON_ParseWithLength(req.body.data, req.body.len);
    const char *t = fx_str(cJSON_GetObjectItem(j, "message"), "text");
    assert_true(strlen(t) <= 1000);
    assert_int_equal(strlen(t), 999); /* 332 euro signs and the ellipsis */
    cJSON_Delete(j);
    sb_chan_http_free(&req);
    free(longtext);
    assert_int_equal(ch->window.free_ms, SB_CHAN_WINDOW_24H_MS);
    assert_int_equal(ch->window.agent_tag_ms, SB_CHAN_WINDOW_7D_MS);
    sb_channel_destroy(ch);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_prestate(fx_test_own_manifest, &instagram),
        cmocka_unit_test_prestate(fx_test_shared_manifest, &instagram),
        cmocka_unit_test(test_verify_handshake),
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_render),
    };
    return cmocka_run_group_tests(tests, fx_setup, NULL);
}
