/* Unit tests of the Slack channel (router/channel_slack.c): v0 signatures over "v0:" ts ":"
 * body with the replay window checked on the injected clock (edges, both directions,
 * rotation), Slack's published vector, url_verification answered with the challenge, events
 * (DM text, mentions in threads, edits, file shares, our own echoes), interactivity
 * (block_actions) and slash commands, system events, quarantine, the Envelope of each item,
 * and the rendered chat.postMessage call (URL, bearer token, exact JSON body with an actions
 * block) with its response parser (Slack's "ok":false errors with HTTP 200). Table-driven over
 * the router's own fixtures (tests/fixtures/channels/slack) and, when present,
 * $SB_SHARED_DIR/channels/slack. */
#include "router_channel_test.h"

/* One Slack config: the signing secret(s) under test. */
static void fill_cfg(sb_config_t *cfg, const char *secret)
{
    cfg->slack.enabled = true;
    cfg->slack.signing_secret = (char *)secret;
    cfg->slack.bot_token = (char *)"xoxb-1234-test";
    cfg->slack.api_base = (char *)"https://slack.example/api/";
    cfg->slack.max_skew_s = 300;
    cfg->slack.max_body_bytes = 1 << 20;
}

static void make_cfg(sb_config_t *cfg, const cJSON *secrets, const fx_case_t *fc)
{
    fill_cfg(cfg, fx_case_secret(fc, secrets, "signing_secret"));
}

static fx_channel_t slack = {
    .ops = &sb_channel_slack, .own_cases = 29, .shared_cases = 11, .make_cfg = make_cfg};

static sb_channel_t *make_channel(const char *secret)
{
    sb_config_t cfg;
    memset(&cfg, 0, sizeof cfg);
    fill_cfg(&cfg, secret);
    return fx_channel_create(&sb_channel_slack, &cfg);
}

static void sign(char *out, size_t n, const char *secret, const char *ts, const char *body)
{
    sb_seal_part_t parts[4] = {{"v0:", 3}, {ts, strlen(ts)}, {":", 1}, {body, strlen(body)}};
    uint8_t mac[32];
    sb_seal_hmac_sha256(mac, secret, strlen(secret), parts, 4);
    char hex[65];
    sb_seal_hex_encode(hex, mac, 32);
    snprintf(out, n, "v0=%s", hex);
}

static void test_verify(void **state)
{
    (void)state;
    /* Slack's published vector, on its own. */
    const char *vbody =
        "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id="
        "G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-"
        "collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%"
        "2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121."
        "803a0bc887a14d10d2c447fce8b6703c";
    const char *vsig = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";
    sb_channel_t *ch = make_channel("8f742231b10e8888abcd99yyyzzz85a5");
    fx_req_t r;
    const char *reason = NULL;
    fx_req_init(&r, vbody, strlen(vbody), "X-Slack-Request-Timestamp", "1531420618",
                "X-Slack-Signature", vsig, NULL);
    assert_int_equal(sb_channel_slack.verify(ch, &r.req, 1531420618 + 300, &reason), SB_OK);
    assert_int_equal(sb_channel_slack.verify(ch, &r.req, 1531420618 - 300, &reason), SB_OK);
    assert_int_equal(sb_channel_slack.verify(ch, &r.req, 1531420618 + 301, &reason), SB_E_AUTH);
    assert_string_equal(reason, "stale");
    assert_int_equal(sb_channel_slack.verify(ch, &r.req, 1531420618 - 301, &reason), SB_E_AUTH);
    assert_string_equal(reason, "stale");
    /* One byte less of body; another timestamp header. */
    r.req.body_len--;
    assert_int_equal(sb_channel_slack.verify(ch, &r.req, 1531420618, &reason), SB_E_AUTH);
    assert_string_equal(reason, "bad_signature");
    r.req.body_len++;
    r.h[0].value = "1531420619";
    assert_int_equal(sb_channel_slack.verify(ch, &r.req, 1531420618, &reason), SB_E_AUTH);
    r.h[0].value = "1531420618";
    /* Malformed headers. */
    const char *bad_sig[] = {"",
                             "v0=",
                             "v1=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503",
                             "a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503",
                             "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b5",
                             "v0=z2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"};
    for (size_t i = 0; i < sizeof bad_sig / sizeof bad_sig[0]; i++) {
        r.h[1].value = bad_sig[i];
        assert_int_equal(sb_channel_slack.verify(ch, &r.req, 1531420618, &reason), SB_E_AUTH);
    }
    r.h[1].value = vsig;
    const char *bad_ts[] = {"", "abc", "-1531420618", "1531420618.5", "15314206180000000"};
    for (size_t i = 0; i < sizeof bad_ts / sizeof bad_ts[0]; i++) {
        r.h[0].value = bad_ts[i];
        assert_int_equal(sb_channel_slack.verify(ch, &r.req, 1531420618, &reason), SB_E_AUTH);
    }
    /* Upper-case hex is accepted (the decoder is case-insensitive). */
    char upper[80];
    snprintf(upper, sizeof upper, "%s", vsig);
    for (char *p = upper + 3; *p; p++)
        if (*p >= 'a' && *p <= 'f') *p = (char)(*p - 32);
    r.h[0].value = "1531420618";
    r.h[1].value = upper;
    assert_int_equal(sb_channel_slack.verify(ch, &r.req, 1531420618, &reason), SB_OK);
    r.req.nheaders = 1;
    assert_int_equal(sb_channel_slack.verify(ch, &r.req, 1531420618, &reason), SB_E_AUTH);
    assert_string_equal(reason, "missing_signature");
    sb_channel_destroy(ch);

    /* Rotation: two secrets, either signs. */
    const char *body = "{\"type\":\"url_verification\",\"challenge\":\"c\"}";
    char s_old[80], s_new[80];
    sign(s_old, sizeof s_old, "old-secret", "1772442900", body);
    sign(s_new, sizeof s_new, "new-secret", "1772442900", body);
    ch = make_channel("new-secret old-secret");
    fx_req_init(&r, body, strlen(body), "X-Slack-Request-Timestamp", "1772442900",
                "X-Slack-Signature", s_old, NULL);
    assert_int_equal(sb_channel_slack.verify(ch, &r.req, 1772442900, &reason), SB_OK);
    r.h[1].value = s_new;
    assert_int_equal(sb_channel_slack.verify(ch, &r.req, 1772442900, &reason), SB_OK);
    sb_channel_destroy(ch);
    ch = make_channel("new-secret");
    r.h[1].value = s_old;
    assert_int_equal(sb_channel_slack.verify(ch, &r.req, 1772442900, &reason), SB_E_AUTH);
    sb_channel_destroy(ch);
}

static void parse(const char *body, sb_chan_batch_t *b)
{
    sb_channel_t *ch = make_channel("s");
    fx_parse(ch, body, b);
    sb_channel_destroy(ch);
}

static void test_parse_edges(void **state)
{
    (void)state;
    sb_chan_batch_t b;
    /* The challenge comes back as text/plain; nothing is published. */
    parse("{\"token\":\"x\",\"challenge\":\"abc-123_XYZ\",\"type\":\"url_verification\"}", &b);
    assert_int_equal(b.nitems, 0);
    assert_false(b.quarantine);
    assert_string_equal(b.reply_body, "abc-123_XYZ");
    assert_string_equal(b.reply_type, "text/plain");
    sb_chan_batch_free(&b);
    /* A challenge that is not a printable token is not echoed. */
    parse("{\"challenge\":\"<script>\\n\",\"type\":\"url_verification\"}", &b);
    assert_true(b.quarantine);
    assert_null(b.reply_body);
    sb_chan_batch_free(&b);
    /* Interactivity and commands are acknowledged with an empty body. */
    parse("payload=%7B%22type%22%3A%22shortcut%22%7D", &b);
    assert_int_equal(b.nitems, 0);
    assert_false(b.quarantine);
    assert_string_equal(b.reply_body, "");
    sb_chan_batch_free(&b);
    parse("command=%2Fhelp&user_id=U1&trigger_id=1.2.3&team_id=T1&channel_id=D1&text=", &b);
    assert_int_equal(b.nitems, 1);
    assert_int_equal(b.items[0].kind, SB_CHAN_COMMAND);
    assert_string_equal(b.items[0].button_payload, "/help");
    assert_null(b.items[0].text);
    assert_string_equal(b.items[0].session_id, "D1");
    assert_string_equal(b.items[0].dedup_key, "sl-cmd:1.2.3");
    sb_chan_batch_free(&b);
    parse("command=help&user_id=U1&trigger_id=1.2.3", &b); /* not a /command */
    assert_true(b.quarantine);
    sb_chan_batch_free(&b);
    /* Loop guard: a bot_message subtype and a message from our own app. */
    parse("{\"type\":\"event_callback\",\"event_id\":\"Ev1\",\"api_app_id\":\"A1\",\"event\":"
          "{\"type\":\"message\",\"subtype\":\"bot_message\",\"text\":\"x\",\"ts\":\"1.1\","
          "\"channel\":\"D1\"}}",
          &b);
    assert_int_equal(b.nitems, 0);
    assert_int_equal(b.nignored, 1);
    sb_chan_batch_free(&b);
    parse("{\"type\":\"event_callback\",\"event_id\":\"Ev1\",\"api_app_id\":\"A1\",\"event\":"
          "{\"type\":\"message\",\"app_id\":\"A1\",\"user\":\"U9\",\"text\":\"x\",\"ts\":\"1.1\","
          "\"channel\":\"D1\"}}",
          &b);
    assert_int_equal(b.nignored, 1);
    sb_chan_batch_free(&b);
    /* A person's message: ids, time from ts, unescaped text. */
    parse("{\"type\":\"event_callback\",\"event_id\":\"Ev2\",\"team_id\":\"T1\",\"event\":"
          "{\"type\":\"message\",\"user\":\"U1\",\"text\":\"a &lt;b&gt; &amp;amp;\","
          "\"ts\":\"1772442900.123456\",\"channel\":\"D1\"}}",
          &b);
    assert_int_equal(b.nitems, 1);
    assert_int_equal(b.items[0].kind, SB_CHAN_TEXT);
    assert_string_equal(b.items[0].text, "a <b> &amp;");
    assert_int_equal(b.items[0].occurred_at_ms, 1772442900123);
    assert_string_equal(b.items[0].provider_message_id, "D1:1772442900.123456");
    assert_string_equal(b.items[0].account_id, "T1");
    assert_string_equal(b.items[0].session_id, "D1");
    sb_chan_batch_free(&b);
    /* Broken shapes: quarantined. */
    const char *broken[] = {
        "{\"type\":\"event_callback\",\"event\":{\"type\":\"message\"}}", /* no event_id */
        "{\"type\":\"event_callback\",\"event_id\":\"Ev3\",\"event\":{\"type\":\"message\","
        "\"user\":\"U1\",\"text\":\"x\",\"ts\":\"soon\",\"channel\":\"D1\"}}",
        "{\"type\":\"app_rate_limited\",\"team_id\":\"T1\"}",
        "payload=%7B%22type%22%3A%22block_actions%22%7D",
        "[1,2]",
        "",
    };
    for (size_t i = 0; i < sizeof broken / sizeof broken[0]; i++) {
        parse(broken[i], &b);
        if (!b.quarantine) fail_msg("broken[%zu] not quarantined", i);
        assert_int_equal(b.nitems, 0);
        sb_chan_batch_free(&b);
    }
}

/* ---- egress ---- */

static cJSON *render(sb_channel_t *ch, const sb_outbound_t *o, const sb_recipient_t *rc,
                     sb_chan_http_t *req)
{
    return fx_render_json(ch, o, rc, "https://slack.example/api", req);
}

static void test_render(void **state)
{
    (void)state;
    sb_channel_t *ch = make_channel("s");
    sb_outbound_t o = SWITCHBOARD__V1__OUTBOUND__INIT;
    sb_recipient_t rc = SWITCHBOARD__V1__RECIPIENT__INIT;
    o.message_id = (char *)"out:1";
    o.text = (char *)"We open at 9.";
    rc.address = (char *)"U0TESTUSR01";
    rc.session_id = (char *)"D0TESTIM001";
    sb_chan_http_t req = {0};
    cJSON *j = render(ch, &o, &rc, &req);
    assert_string_equal(req.method, "POST");
    assert_string_equal(req.url, "https://slack.example/api/chat.postMessage");
    assert_string_equal(req.headers[0], "Content-Type: application/json; charset=utf-8");
    assert_string_equal(req.headers[1], "Authorization: Bearer xoxb-1234-test");
    assert_string_equal(req.body.data,
                        "{\"channel\":\"D0TESTIM001\",\"text\":\"We open at 9.\",\"unfurl_links\":"
                        "false}");
    cJSON_Delete(j);
    sb_chan_http_free(&req);

    /* Buttons: a section with the text and an actions block. */
    Switchboard__V1__Button b1 = SWITCHBOARD__V1__BUTTON__INIT, b2 = SWITCHBOARD__V1__BUTTON__INIT;
    Switchboard__V1__Button *bs[30];
    b1.id = (char *)"faq:hours";
    b1.title = (char *)"Opening hours";
    b2.id = (char *)"escalate:human";
    b2.title = (char *)"Talk to a human";
    bs[0] = &b1;
    bs[1] = &b2;
    o.text = (char *)"How can I help?";
    o.buttons = bs;
    o.n_buttons = 2;
    j = render(ch, &o, &rc, &req);
    assert_string_equal(
        req.body.data,
        "{\"channel\":\"D0TESTIM001\",\"text\":\"How can I "
        "help?\",\"blocks\":[{\"type\":\"section\","
        "\"text\":{\"type\":\"plain_text\",\"text\":\"How can I help?\"}},{\"type\":\"actions\","
        "\"block_id\":\"sb_buttons\",\"elements\":[{\"type\":\"button\",\"text\":{\"type\":"
        "\"plain_text\",\"text\":\"Opening hours\"},\"action_id\":\"sb_btn_1\",\"value\":\"faq:"
        "hours\"},{\"type\":\"button\",\"text\":{\"type\":\"plain_text\",\"text\":\"Talk to a "
        "human\"},\"action_id\":\"sb_btn_2\",\"value\":\"escalate:human\"}]}],\"unfurl_links\":"
        "false}");
    cJSON_Delete(j);
    sb_chan_http_free(&req);

    /* No session: the user id (Slack opens the app's DM). Long titles are cut to 75. */
    char title[200];
    memset(title, 'x', sizeof title - 1);
    title[sizeof title - 1] = '\0';
    b1.title = title;
    rc.session_id = (char *)"";
    j = render(ch, &o, &rc, &req);
    assert_string_equal(cJSON_GetObjectItem(j, "channel")->valuestring, "U0TESTUSR01");
    const cJSON *el = cJSON_GetArrayItem(
        cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(j, "blocks"), 1), "elements"),
        0);
    assert_int_equal(strlen(cJSON_GetObjectItem(el, "text")->child->next->valuestring), 75);
    cJSON_Delete(j);
    sb_chan_http_free(&req);

    /* More than 25 buttons: a numbered list in the text, no blocks. */
    for (size_t i = 0; i < 30; i++)
        bs[i] = &b2;
    o.n_buttons = 30;
    j = render(ch, &o, &rc, &req);
    assert_null(cJSON_GetObjectItem(j, "blocks"));
    const char *t = cJSON_GetObjectItem(j, "text")->valuestring;
    assert_non_null(strstr(t, "How can I help?\n\n1. Talk to a human\n2. Talk to a human"));
    assert_non_null(strstr(t, "\n30. Talk to a human"));
    cJSON_Delete(j);
    sb_chan_http_free(&req);

    /* Nowhere to send, or nothing to send. */
    sb_chan_send_t send = {.out = &o, .rcpt = &rc, .api_base = "https://slack.example/api"};
    rc.address = (char *)"";
    assert_int_equal(sb_channel_slack.render(ch, &send, &req), SB_E_INVALID);
    rc.address = (char *)"U1 \"x\"";
    assert_int_equal(sb_channel_slack.render(ch, &send, &req), SB_E_INVALID);
    rc.address = (char *)"T0TEST00001"; /* a workspace: the sender of system items */
    assert_int_equal(sb_channel_slack.render(ch, &send, &req), SB_E_INVALID);
    rc.address = (char *)"U1";
    o.n_buttons = 0;
    o.text = (char *)"";
    assert_int_equal(sb_channel_slack.render(ch, &send, &req), SB_E_INVALID);
    sb_channel_destroy(ch);
}

static void test_parse_response(void **state)
{
    (void)state;
    sb_channel_t *ch = make_channel("s");
    const char *ok = "{\"ok\":true,\"channel\":\"D0TESTIM001\",\"ts\":\"1772442999.000100\","
                     "\"message\":{\"text\":\"hi\"}}";
    sb_chan_response_t res = {.ok = true, .retry_after_ms = -1};
    sb_channel_slack.parse_response(ch, 200, ok, strlen(ok), &res);
    assert_true(res.ok);
    assert_string_equal(res.provider_id, "D0TESTIM001:1772442999.000100");

    /* Errors come with HTTP 200: the body decides. */
    const char *nf = "{\"ok\":false,\"error\":\"channel_not_found\"}";
    sb_chan_response_t r2 = {.ok = true, .retry_after_ms = -1};
    sb_channel_slack.parse_response(ch, 200, nf, strlen(nf), &r2);
    assert_false(r2.ok);
    assert_false(r2.retry);
    assert_string_equal(r2.error, "channel_not_found");
    assert_string_equal(r2.provider_id, "");

    const char *rl = "{\"ok\":false,\"error\":\"ratelimited\"}";
    sb_chan_response_t r3 = {.ok = false, .retry = true, .retry_after_ms = 30000};
    sb_channel_slack.parse_response(ch, 429, rl, strlen(rl), &r3);
    assert_false(r3.ok);
    assert_true(r3.retry);
    assert_int_equal(r3.retry_after_ms, 30000);
    assert_string_equal(r3.error, "ratelimited");

    /* Free text is never copied into the token. */
    const char *odd = "{\"ok\":false,\"error\":\"bad thing: user@example.org\"}";
    sb_chan_response_t r4 = {.ok = true, .retry_after_ms = -1};
    sb_channel_slack.parse_response(ch, 200, odd, strlen(odd), &r4);
    assert_false(r4.ok);
    assert_string_equal(r4.error, "not_ok");
    sb_channel_destroy(ch);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_prestate(fx_test_own_manifest, &slack),
        cmocka_unit_test_prestate(fx_test_shared_manifest, &slack),
        cmocka_unit_test(test_verify),
        cmocka_unit_test(test_parse_edges),
        cmocka_unit_test(test_render),
        cmocka_unit_test(test_parse_response),
    };
    return cmocka_run_group_tests(tests, fx_setup, NULL);
}
