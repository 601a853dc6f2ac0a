/* Unit tests of the Instagram messaging channel (router/channel_instagram.c over router/meta.c):
 * X-Hub-Signature-256 and the hub.* handshake (Meta's shared code, checked here through this
 * channel's own route and config), object "instagram" only, per-message reads
 * (ig-st:<mid>:read), deletions, echoes ignored, quarantine of the wrong shape, each item's
 * Envelope, and the exact Send API calls (no messaging_type, quick replies, HUMAN_AGENT tag,
 * text cut at 1000 bytes). Table-driven over the router's own fixtures
 * (tests/fixtures/channels/instagram) and, when present, $SB_SHARED_DIR/channels/instagram. */
#include "router_manifest.h"

static fx_keys_t keys;
static char secret_buf[256], token_buf[256];

static int setup(void **state)
{
    (void)state;
    assert_int_equal(sb_seal_init(), SB_OK);
    assert_int_equal(sb_redact_init(), SB_OK);
    fx_keys_init(&keys);
    return 0;
}

static void make_cfg(sb_config_t *cfg, const cJSON *secrets, const char *override)
{
    const char *s = override ? override : fx_str(secrets, "app_secret");
    assert_non_null(s);
    snprintf(secret_buf, sizeof secret_buf, "%s", s);
    snprintf(token_buf, sizeof token_buf, "%s", fx_str(secrets, "verify_token"));
    cfg->instagram.enabled = true;
    cfg->instagram.app_secret = secret_buf;
    cfg->instagram.verify_token = token_buf;
    cfg->instagram.access_token = (char *)"test-ig-token";
    cfg->instagram.api_base = (char *)"";
    cfg->instagram.max_body_bytes = 3 << 20;
}

static sb_channel_t *make_channel(void)
{
    sb_config_t cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.instagram.enabled = true;
    cfg.instagram.app_secret = (char *)"s3cret";
    cfg.instagram.verify_token = (char *)"tok";
    cfg.instagram.access_token = (char *)"IGpage-token";
    cfg.instagram.api_base = (char *)"https://graph.example.org/v19.0";
    cfg.instagram.max_body_bytes = 3 << 20;
    sb_channel_t *ch = NULL;
    char err[256];
    assert_int_equal(sb_channel_create(&sb_channel_instagram, &cfg, &ch, err, sizeof err), SB_OK);
    return ch;
}

static void test_own_manifest(void **state)
{
    (void)state;
    char *dir = fx_dir("SB_SOURCE_DIR", "tests/fixtures/channels/instagram");
    assert_non_null(dir);
    size_t n = fx_run_manifest(&sb_channel_instagram, dir, make_cfg, &keys);
    assert_true(n >= 18);
    free(dir);
}

static void test_shared_manifest(void **state)
{
    (void)state;
    char *dir = fx_dir("SB_SHARED_DIR", "channels/instagram");
    cJSON *m = dir ? fx_load_manifest(dir) : NULL;
    if (!m) {
        printf("SKIP: shared fixtures not found ($SB_SHARED_DIR/channels/instagram)\n");
        free(dir);
        skip();
    }
    cJSON_Delete(m);
    assert_int_equal(fx_run_manifest(&sb_channel_instagram, dir, make_cfg, &keys), 8);
    free(dir);
}

static void test_verify_handshake(void **state)
{
    (void)state;
    sb_channel_t *ch = make_channel();
    const char *body = "{\"object\":\"instagram\",\"entry\":[]}";
    uint8_t mac[32];
    sb_seal_part_t part = {body, strlen(body)};
    sb_seal_hmac_sha256(mac, "s3cret", 6, &part, 1);
    char hex[65], sig[80];
    sb_seal_hex_encode(hex, mac, 32);
    snprintf(sig, sizeof sig, "sha256=%s", hex);
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
    memset(b, 0, sizeof *b);
    assert_int_equal(sb_channel_instagram.parse(ch, (const uint8_t *)body, strlen(body), b), SB_OK);
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
    char *body = sb_xstrndup(req.body.data, req.body.len);
    assert_string_equal(body, "{\"recipient\":{\"id\":\"5300000000000001\"},\"message\":{\"text\":"
                              "\"Back in stock in S, M and L.\"}}");
    free(body);
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
    body = sb_xstrndup(req.body.data, req.body.len);
    assert_string_equal(body, "{\"recipient\":{\"id\":\"5300000000000001\"},\"messaging_type\":"
                              "\"MESSAGE_TAG\",\"tag\":\"HUMAN_AGENT\",\"message\":{\"text\":"
                              "\"Back in stock in S, M and L.\",\"quick_replies\":[{"
                              "\"content_type\":\"text\",\"title\":\"Sizes\",\"payload\":"
                              "\"QR_SIZES\"}]}}");
    free(body);
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
        cmocka_unit_test(test_own_manifest),     cmocka_unit_test(test_shared_manifest),
        cmocka_unit_test(test_verify_handshake), cmocka_unit_test(test_parse),
        cmocka_unit_test(test_render),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
