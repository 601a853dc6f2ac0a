/* Unit tests of the Twilio channel (router/channel_twilio.c) and the form parser it stands on
 * (router/form.c): X-Twilio-Signature over public_base_url + the request target and the sorted
 * decoded parameters (empty values, repeated names, query strings, the default-port variant,
 * token rotation), the bodySHA256 variant for JSON bodies, 400 for undecodable forms before
 * any MAC, Twilio's published vectors, normalization of SMS / MMS / WhatsApp messages and
 * statuses, quarantine, and the rendered Messages API call (URL, Basic auth, exact form body,
 * buttons as a numbered list) with its response parser. Table-driven over the router's own
 * fixtures (tests/fixtures/channels/twilio) and, when present, $SB_SHARED_DIR/channels/twilio:
 * each case's exact `url` is what the verifier must check against: its path and query are the
 * request target, its origin the channel's public_base_url (so url_mismatch_http_vs_https,
 * whose url is the http:// one a proxy-fooled verifier would rebuild, fails as it must). */
#include "form.h"
#include "router_channel_test.h"

/* One Twilio config: the auth token(s) and the public base URL under test. */
static void fill_cfg(sb_config_t *cfg, const char *token, const char *base)
{
    cfg->twilio.enabled = true;
    cfg->twilio.auth_token = (char *)token;
    cfg->twilio.public_base_url = (char *)base;
    cfg->twilio.account_sid = (char *)"AC00000000000000000000000000test1";
    cfg->twilio.from = (char *)"+15550100088";
    cfg->twilio.api_base = (char *)"https://api.twilio.example/2010-04-01/";
    cfg->twilio.max_body_bytes = 1 << 20;
}

/* A case's public_base_url is the origin of its signed `url`. */
static void make_cfg(sb_config_t *cfg, const cJSON *secrets, const fx_case_t *fc)
{
    if (!fc->origin[0]) fail_msg("%s: a Twilio case needs its signed url", fc->label);
    fill_cfg(cfg, fx_case_secret(fc, secrets, "auth_token"), fc->origin);
}

/* Twilio's own expectations of a parsed case: bodies that publish nothing say why, items
 * carry no event time (Twilio sends none: ingress stamps the receive time), and a case's
 * response_body (TwiML) is answered as text/xml. */
static void check_batch(const fx_case_t *fc, const sb_chan_batch_t *b)
{
    if (b->nitems == 0) assert_non_null(b->reason);
    const char *kind = fx_str(fc->expect, "kind");
    if (kind && strcmp(kind, "signature_ok") == 0) assert_int_equal(b->nitems, 0);
    for (size_t i = 0; i < b->nitems; i++)
        if (b->items[i].occurred_at_ms != 0) fail_msg("%s: occurred_at set", fc->label);
    if (fx_str(fc->expect, "response_body")) {
        assert_non_null(b->reply_body);
        if (!strstr(b->reply_body, "<Response/>")) fail_msg("%s: reply", fc->label);
        assert_string_equal(b->reply_type, "text/xml");
    }
}

static fx_channel_t twilio = {.ops = &sb_channel_twilio,
                              .own_cases = 29,
                              .shared_cases = 13,
                              .make_cfg = make_cfg,
                              .check_batch = check_batch};

static sb_channel_t *make_channel(const char *token, const char *base)
{
    sb_config_t cfg;
    memset(&cfg, 0, sizeof cfg);
    fill_cfg(&cfg, token, base);
    return fx_channel_create(&sb_channel_twilio, &cfg);
}

/* ---- the form parser ---- */

static void test_form(void **state)
{
    (void)state;
    sb_form_t f;
    const char *body = "b=2&a=x+y%2Bz&empty=&novalue&&a=%e2%82%ac&c=%41%62";
    assert_int_equal(sb_form_parse((const uint8_t *)body, strlen(body), 10, SB_FORM_UTF8, &f),
                     SB_OK);
    assert_int_equal(f.n, 6);
    assert_string_equal(sb_form_get(&f, "a"), "x y+z"); /* the first of two */
    assert_string_equal(sb_form_get(&f, "empty"), "");
    assert_string_equal(sb_form_get(&f, "novalue"), "");
    assert_string_equal(sb_form_get(&f, "c"), "Ab");
    assert_null(sb_form_get(&f, "missing"));
    sb_form_sort(&f);
    const char *order[][2] = {{"a", "x y+z"}, {"a", "\xe2\x82\xac"}, {"b", "2"},
                              {"c", "Ab"},    {"empty", ""},         {"novalue", ""}};
    for (size_t i = 0; i < 6; i++) {
        assert_string_equal(f.params[i].name, order[i][0]);
        assert_string_equal(f.params[i].value, order[i][1]);
    }
    sb_form_free(&f);

    /* Errors: bad escapes anywhere, invalid UTF-8 (when asked), too many pairs. */
    const char *bad[] = {"a=%",      "a=%4",        "a=%ZZ", "%G0=1", "a=%E2%82",
                         "a=%C0%80", "a=%ED%A0%80", "a=%00", "a=%FF"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(
            sb_form_parse((const uint8_t *)bad[i], strlen(bad[i]), 10, SB_FORM_UTF8, &f),
            SB_E_INVALID);
    assert_int_equal(sb_form_parse((const uint8_t *)"a=%FF", 5, 10, 0, &f), SB_OK);
    assert_int_equal(f.n, 1);
    assert_int_equal((unsigned char)f.params[0].value[0], 0xFF);
    sb_form_free(&f);
    assert_int_equal(sb_form_parse((const uint8_t *)"a=1&b=2&c=3", 11, 2, 0, &f), SB_E_INVALID);
    assert_int_equal(sb_form_parse((const uint8_t *)"", 0, 2, 0, &f), SB_OK);
    assert_int_equal(f.n, 0);
    sb_form_free(&f);

    /* Encoding round trip. */
    sb_buf_t out = {0};
    sb_form_append(&out, "Body", "Hi & bye: 100% / ok? \xc3\xa9*~");
    sb_form_append(&out, "To", "whatsapp:+447700900123");
    assert_string_equal(out.data, "Body=Hi+%26+bye%3A+100%25+%2F+ok%3F+%C3%A9*~&To=whatsapp%3A%"
                                  "2B447700900123");
    assert_int_equal(sb_form_parse((const uint8_t *)out.data, out.len, 10, SB_FORM_UTF8, &f),
                     SB_OK);
    assert_string_equal(sb_form_get(&f, "Body"), "Hi & bye: 100% / ok? \xc3\xa9*~");
    sb_form_free(&f);
    sb_buf_free(&out);
}

/* ---- verification details ---- */

static void tw_sign(char *out, const char *token, const char *url, const char *const *pairs,
                    size_t n)
{
    sb_seal_part_t parts[32];
    parts[0].data = url;
    parts[0].len = strlen(url);
    for (size_t i = 0; i < n; i++) {
        parts[1 + i].data = pairs[i];
        parts[1 + i].len = strlen(pairs[i]);
    }
    uint8_t mac[20];
    assert_int_equal(sb_seal_hmac_sha1(mac, token, strlen(token), parts, 1 + n), SB_OK);
    sb_seal_base64_encode(out, mac, 20);
}

static void test_verify(void **state)
{
    (void)state;
    /* Sorted name+value concatenation of this body: */
    const char *body = "To=%2B15550100088&From=%2B15550104455&MessageSid=SM1&Body=hi+there";
    const char *sorted[] = {"Bodyhi there", "From+15550104455", "MessageSidSM1", "To+15550100088"};
    const char *url = "https://router.test.example/v1/ingress/twilio/messages";
    char sig[40], old_sig[40], port_sig[40];
    tw_sign(sig, "new-token", url, sorted, 4);
    tw_sign(old_sig, "old-token", url, sorted, 4);
    tw_sign(port_sig, "new-token", "https://router.test.example:443/v1/ingress/twilio/messages",
            sorted, 4);

    /* Rotation: both tokens; a trailing '/' in the base does not matter. */
    sb_channel_t *ch = make_channel("new-token old-token", "https://router.test.example/");
    fx_req_t r;
    const char *reason = NULL;
    fx_req_init(&r, body, strlen(body), "X-Twilio-Signature", sig, NULL);
    r.req.path = "/v1/ingress/twilio/messages";
    r.req.target = r.req.path;
    assert_int_equal(sb_channel_twilio.verify(ch, &r.req, 0, &reason), SB_OK);
    r.h[0].value = old_sig;
    assert_int_equal(sb_channel_twilio.verify(ch, &r.req, 0, &reason), SB_OK);
    r.h[0].value = port_sig;
    assert_int_equal(sb_channel_twilio.verify(ch, &r.req, 0, &reason), SB_OK);
    /* Another target (the query is part of the URL). */
    r.h[0].value = sig;
    r.req.target = "/v1/ingress/twilio/messages?x=1";
    assert_int_equal(sb_channel_twilio.verify(ch, &r.req, 0, &reason), SB_E_AUTH);
    assert_string_equal(reason, "bad_signature");
    r.req.target = r.req.path;
    /* One parameter more than signed. */
    char *more = sb_xasprintf("%s&Extra=", body);
    r.req.body = (const uint8_t *)more;
    r.req.body_len = strlen(more);
    assert_int_equal(sb_channel_twilio.verify(ch, &r.req, 0, &reason), SB_E_AUTH);
    free(more);
    /* Undecodable form: 400 (SB_E_INVALID) even though the signature is fine otherwise. */
    r.req.body = (const uint8_t *)"To=%2";
    r.req.body_len = 5;
    assert_int_equal(sb_channel_twilio.verify(ch, &r.req, 0, &reason), SB_E_INVALID);
    assert_string_equal(reason, "bad_form_encoding");
    /* Malformed and missing headers. */
    r.req.body = (const uint8_t *)body;
    r.req.body_len = strlen(body);
    const char *bad[] = {"", "abc", "AAAA", "RSOYDt4T1cUTdK1PDd93/VVr8B8",
                         "!!!!!!!!!!!!!!!!!!!!!!!!!!!="};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        r.h[0].value = bad[i];
        assert_int_equal(sb_channel_twilio.verify(ch, &r.req, 0, &reason), SB_E_AUTH);
    }
    r.req.nheaders = 0;
    assert_int_equal(sb_channel_twilio.verify(ch, &r.req, 0, &reason), SB_E_AUTH);
    assert_string_equal(reason, "missing_signature");
    sb_channel_destroy(ch);

    /* The http:// base does not accept an https signature, and vice versa. */
    ch = make_channel("new-token", "http://router.test.example");
    r.req.nheaders = 1;
    r.h[0].value = sig;
    assert_int_equal(sb_channel_twilio.verify(ch, &r.req, 0, &reason), SB_E_AUTH);
    sb_channel_destroy(ch);

    /* Config: a base URL without a scheme is refused, naming the key. */
    sb_config_t cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.twilio.auth_token = (char *)"t";
    cfg.twilio.public_base_url = (char *)"router.test.example";
    cfg.twilio.max_body_bytes = 1024;
    sb_channel_t *bad_ch = NULL;
    char err[256];
    assert_int_equal(sb_channel_create(&sb_channel_twilio, &cfg, &bad_ch, err, sizeof err),
                     SB_E_CONFIG);
    assert_non_null(strstr(err, "channels.twilio.public_base_url"));
    cfg.twilio.public_base_url = (char *)"https://router.test.example";
    cfg.twilio.auth_token = (char *)"";
    assert_int_equal(sb_channel_create(&sb_channel_twilio, &cfg, &bad_ch, err, sizeof err),
                     SB_E_CONFIG);
    assert_non_null(strstr(err, "channels.twilio.auth_token"));
}

/* ---- parse edges ---- */

static void parse(const char *body, sb_chan_batch_t *b)
{
    sb_channel_t *ch = make_channel("t", "https://router.test.example");
    fx_parse(ch, body, b);
    sb_channel_destroy(ch);
}

static void test_parse_edges(void **state)
{
    (void)state;
    sb_chan_batch_t b;
    /* Legacy: an SMS with the channel prefix-less To; status with an odd state. */
    parse("MessageSid=SM1&MessageStatus=Delivered%21&To=%2B1", &b);
    assert_true(b.quarantine);
    sb_chan_batch_free(&b);
    parse("MessageSid=SM1&Body=hi", &b); /* no From */
    assert_true(b.quarantine);
    sb_chan_batch_free(&b);
    parse("MessageSid=SM..1&From=%2B1&Body=hi", &b); /* not a sid */
    assert_true(b.quarantine);
    sb_chan_batch_free(&b);
    parse("MessageSid=SM1&From=%2B1&NumMedia=11&Body=hi", &b); /* above 10 */
    assert_true(b.quarantine);
    sb_chan_batch_free(&b);
    parse("MessageSid=SM1&From=%2B1&Latitude=91&Longitude=0", &b);
    assert_true(b.quarantine);
    sb_chan_batch_free(&b);
    parse("{\"a\":", &b);
    assert_true(b.quarantine);
    sb_chan_batch_free(&b);
    parse("MessageSid=SM1&Body=%ZZ", &b);
    assert_int_equal(b.reject_status, 400);
    sb_chan_batch_free(&b);
    /* A plain SMS: sender without prefix, account kept, text, TwiML answer. */
    parse("MessageSid=SM1&From=%2B15550104455&To=%2B15550100088&Body=ok", &b);
    assert_int_equal(b.nitems, 1);
    assert_string_equal(b.items[0].sender_id, "+15550104455");
    assert_string_equal(b.items[0].phone, "+15550104455");
    assert_string_equal(b.items[0].account_id, "+15550100088");
    assert_string_equal(b.items[0].text, "ok");
    assert_string_equal(b.items[0].dedup_key, "tw:SM1");
    assert_non_null(strstr(b.reply_body, "<Response/>"));
    sb_chan_batch_free(&b);
    /* Messenger via Twilio: a non-phone address has no phone. */
    parse("MessageSid=SM2&From=messenger%3A123&To=messenger%3A999&Body=ok", &b);
    assert_int_equal(b.nitems, 1);
    assert_string_equal(b.items[0].sender_id, "123");
    assert_null(b.items[0].phone);
    sb_chan_batch_free(&b);
}

/* ---- egress ---- */

static sb_result_t render(sb_channel_t *ch, const sb_outbound_t *o, const sb_recipient_t *rc,
                          sb_chan_http_t *req)
{
    return fx_render(ch, o, rc, "https://api.twilio.example/2010-04-01", SB_CHAN_WINDOW_OPEN, req);
}

static void test_render(void **state)
{
    (void)state;
    sb_channel_t *ch = make_channel("tok-primary tok-old", "https://router.test.example");
    sb_outbound_t o = SWITCHBOARD__V1__OUTBOUND__INIT;
    sb_recipient_t rc = SWITCHBOARD__V1__RECIPIENT__INIT;
    o.message_id = (char *)"out:1";
    o.text = (char *)"We open at 9 & close at 5.";
    rc.address = (char *)"+15550104455";
    rc.account_id = (char *)"+15550100088";
    sb_chan_http_t req = {0};
    assert_int_equal(render(ch, &o, &rc, &req), SB_OK);
    assert_string_equal(req.method, "POST");
    assert_string_equal(req.url, "https://api.twilio.example/2010-04-01/Accounts/"
                                 "AC00000000000000000000000000test1/Messages.json");
    /* base64("AC00000000000000000000000000test1:tok-primary") */
    assert_string_equal(req.headers[0],
                        "Authorization: Basic "
                        "QUMwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMHRlc3QxOnRvay1wcmltYXJ5");
    assert_string_equal(req.headers[1], "Content-Type: application/x-www-form-urlencoded");
    assert_string_equal(req.body.data,
                        "To=%2B15550104455&From=%2B15550100088&Body=We+open+at+9+%26+close+at+5."
                        "&StatusCallback=https%3A%2F%2Frouter.test.example%2Fv1%2Fingress%2F"
                        "twilio%2Fstatus");
    sb_chan_http_free(&req);

    /* WhatsApp via Twilio, with buttons: the prefix comes back on To, buttons as a list. */
    Switchboard__V1__Button b1 = SWITCHBOARD__V1__BUTTON__INIT, b2 = SWITCHBOARD__V1__BUTTON__INIT;
    Switchboard__V1__Button *bs[2] = {&b1, &b2};
    b1.id = (char *)"faq:hours";
    b1.title = (char *)"Opening hours";
    b2.id = (char *)"escalate:human";
    b2.title = (char *)"Talk to a human";
    o.text = (char *)"How can I help?";
    o.buttons = bs;
    o.n_buttons = 2;
    rc.address = (char *)"+447700900555";
    rc.account_id = (char *)"whatsapp:+15550100088";
    assert_int_equal(render(ch, &o, &rc, &req), SB_OK);
    assert_string_equal(req.body.data,
                        "To=whatsapp%3A%2B447700900555&From=whatsapp%3A%2B15550100088"
                        "&Body=How+can+I+help%3F%0A%0A1.+Opening+hours%0A2.+Talk+to+a+human"
                        "&StatusCallback=https%3A%2F%2Frouter.test.example%2Fv1%2Fingress%2F"
                        "twilio%2Fstatus");
    sb_chan_http_free(&req);

    /* No account on the recipient: the configured sender; a messaging service sid. */
    rc.account_id = (char *)"";
    o.n_buttons = 0;
    o.text = (char *)"x";
    rc.address = (char *)"+15550104455";
    assert_int_equal(render(ch, &o, &rc, &req), SB_OK);
    assert_non_null(strstr(req.body.data, "&From=%2B15550100088&"));
    sb_chan_http_free(&req);
    rc.account_id = (char *)"MG0123456789abcdef0123456789abcdef";
    assert_int_equal(render(ch, &o, &rc, &req), SB_OK);
    assert_non_null(strstr(req.body.data, "&MessagingServiceSid=MG0123456789abcdef"));
    assert_null(strstr(req.body.data, "From="));
    sb_chan_http_free(&req);

    /* Long text is cut to 1600 characters. */
    char *long_text = sb_xmalloc(2001);
    memset(long_text, 'a', 2000);
    long_text[2000] = '\0';
    o.text = long_text;
    assert_int_equal(render(ch, &o, &rc, &req), SB_OK);
    sb_form_t f;
    assert_int_equal(sb_form_parse((const uint8_t *)req.body.data, req.body.len, 10, 0, &f), SB_OK);
    assert_int_equal(sb_chan_utf8_len(sb_form_get(&f, "Body")), 1600);
    sb_form_free(&f);
    sb_chan_http_free(&req);
    free(long_text);

    /* Nothing to send, or nobody to send it to. */
    o.text = (char *)"";
    assert_int_equal(render(ch, &o, &rc, &req), SB_E_INVALID);
    o.text = (char *)"x";
    rc.address = (char *)"";
    assert_int_equal(render(ch, &o, &rc, &req), SB_E_INVALID);
    sb_channel_destroy(ch);
}

static void test_parse_response(void **state)
{
    (void)state;
    sb_channel_t *ch = make_channel("t", "https://router.test.example");
    sb_chan_response_t res = {.ok = true, .retry_after_ms = -1};
    const char *ok = "{\"sid\":\"SMaaaabbbbccccddddeeeeffff00001111\",\"status\":\"queued\"}";
    sb_channel_twilio.parse_response(ch, 201, ok, strlen(ok), &res);
    assert_true(res.ok);
    assert_string_equal(res.provider_id, "SMaaaabbbbccccddddeeeeffff00001111");

    const char *err = "{\"code\":21211,\"message\":\"The 'To' number +1555 is not valid\","
                      "\"more_info\":\"https://www.twilio.com/docs/errors/21211\",\"status\":400}";
    sb_chan_response_t res2 = {.ok = false, .retry_after_ms = -1};
    sb_channel_twilio.parse_response(ch, 400, err, strlen(err), &res2);
    assert_false(res2.ok);
    assert_false(res2.retry);
    assert_int_equal(res2.error_code, 21211);
    assert_string_equal(res2.error, "21211");
    assert_string_equal(res2.provider_id, "");

    const char *busy = "{\"code\":20429,\"message\":\"Too Many Requests\",\"status\":429}";
    sb_chan_response_t res3 = {.ok = false, .retry = true, .retry_after_ms = -1};
    sb_channel_twilio.parse_response(ch, 429, busy, strlen(busy), &res3);
    assert_true(res3.retry);
    /* Not JSON: the status decides alone. */
    sb_chan_response_t res4 = {.ok = false, .retry = true, .retry_after_ms = -1};
    sb_channel_twilio.parse_response(ch, 502, "<html>", 6, &res4);
    assert_true(res4.retry);
    assert_int_equal(res4.error_code, 0);
    sb_channel_destroy(ch);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_prestate(fx_test_own_manifest, &twilio),
        cmocka_unit_test_prestate(fx_test_shared_manifest, &twilio),
        cmocka_unit_test(test_form),
        cmocka_unit_test(test_verify),
        cmocka_unit_test(test_parse_edges),
        cmocka_unit_test(test_render),
        cmocka_unit_test(test_parse_response),
    };
    return cmocka_run_group_tests(tests, fx_setup, NULL);
}
