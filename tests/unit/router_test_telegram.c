/* Unit tests of the Telegram Bot API channel (router/channel_telegram.c): the
 * X-Telegram-Bot-Api-Secret-Token check (missing, wrong, longer, rotation) and the bot id of the
 * path, the config checks, every Update kind into normalized items (text, commands, button taps
 * with their titles, media, location, contact cards, edits, blocked/unblocked, group events,
 * loop guard) with the tg:<bot_id>:<update_id> dedup key, quarantine of unreadable updates,
 * each item's Envelope, the exact sendMessage calls (chat id, inline keyboard, numbered list,
 * quoting in groups, cut text) and the reading of Bot API answers. Table-driven over the
 * router's own fixtures (tests/fixtures/channels/telegram) and, when present,
 * $SB_SHARED_DIR/channels/telegram. */
#include "router_channel_test.h"

static sb_result_t try_channel(const char *secret, const char *bot_id, const char *token,
                               sb_channel_t **ch, char *err, size_t n)
{
    sb_config_t cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.telegram.enabled = true;
    cfg.telegram.secret_token = (char *)secret;
    cfg.telegram.bot_id = (char *)bot_id;
    cfg.telegram.bot_token = (char *)token;
    cfg.telegram.api_base = (char *)"https://api.example.org";
    cfg.telegram.max_body_bytes = 1 << 20;
    return sb_channel_create(&sb_channel_telegram, &cfg, ch, err, n);
}

static sb_channel_t *make_channel(const char *secret, const char *token)
{
    sb_channel_t *ch = NULL;
    char err[256];
    assert_int_equal(try_channel(secret, "7000000001", token, &ch, err, sizeof err), SB_OK);
    return ch;
}

static char bot_buf[32];

static void make_cfg(sb_config_t *cfg, const cJSON *secrets, const fx_case_t *fc)
{
    const cJSON *bot = cJSON_GetObjectItemCaseSensitive(secrets, "bot_id");
    assert_true(cJSON_IsNumber(bot));
    snprintf(bot_buf, sizeof bot_buf, "%.0f", bot->valuedouble);
    cfg->telegram.enabled = true;
    cfg->telegram.secret_token = (char *)fx_case_secret(fc, secrets, "secret_token");
    cfg->telegram.bot_id = bot_buf;
    cfg->telegram.bot_token = (char *)"7000000001:test-bot-token";
    cfg->telegram.api_base = (char *)"";
    cfg->telegram.max_body_bytes = 1 << 20;
}

static fx_channel_t telegram = {
    .ops = &sb_channel_telegram, .own_cases = 28, .shared_cases = 12, .make_cfg = make_cfg};

static void test_config(void **state)
{
    (void)state;
    sb_channel_t *ch = NULL;
    char err[256];
    const struct {
        const char *secret, *bot, *token, *key;
    } bad[] = {
        {"", "7000000001", "t", "channels.telegram.secret_token"},
        {"has space?", "7000000001", "t", "channels.telegram.secret_token"},
        {"ok_secret", "", "t", "channels.telegram.bot_id"},
        {"ok_secret", "70000x", "t", "channels.telegram.bot_id"},
        {"ok_secret", "7000000001", "a/b", "channels.telegram.bot_token"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = '\0';
        if (try_channel(bad[i].secret, bad[i].bot, bad[i].token, &ch, err, sizeof err) !=
            SB_E_CONFIG)
            fail_msg("case %zu accepted", i);
        if (!strstr(err, bad[i].key)) fail_msg("case %zu: %s", i, err);
        assert_null(strstr(err, bad[i].secret[0] ? bad[i].secret : "\x01"));
    }
    /* A secret of 257 characters is refused, 256 accepted. */
    char longsec[258];
    memset(longsec, 'a', 257);
    longsec[257] = '\0';
    assert_int_equal(try_channel(longsec, "1", "t", &ch, err, sizeof err), SB_E_CONFIG);
    longsec[256] = '\0';
    assert_int_equal(try_channel(longsec, "1", "t", &ch, err, sizeof err), SB_OK);
    sb_channel_destroy(ch);
    assert_string_equal(sb_channel_telegram.ingress_path, "/v1/ingress/telegram/");
    assert_null(sb_channel_telegram.handshake);
}

static void test_verify(void **state)
{
    (void)state;
    sb_channel_t *ch = make_channel("old_Secret-1 new_Secret-2", "t");
    const char *body = "{\"update_id\":1}";
    const char *reason = NULL;
    fx_req_t r;
    fx_req_init(&r, body, strlen(body), "x-telegram-bot-api-secret-token", "new_Secret-2", NULL);
    r.req.path = "/v1/ingress/telegram/7000000001";
    assert_int_equal(sb_channel_telegram.verify(ch, &r.req, 0, &reason), SB_OK);
    r.h[0].value = "old_Secret-1"; /* rotation: both work while both are configured */
    assert_int_equal(sb_channel_telegram.verify(ch, &r.req, 0, &reason), SB_OK);
    const char *wrong[] = {"old_Secret-", "old_Secret-11", "OLD_SECRET-1", " old_Secret-1",
                           "old_Secret-1 new_Secret-2"};
    for (size_t i = 0; i < sizeof wrong / sizeof wrong[0]; i++) {
        r.h[0].value = wrong[i];
        assert_int_equal(sb_channel_telegram.verify(ch, &r.req, 0, &reason), SB_E_AUTH);
        assert_string_equal(reason, "bad_secret_token");
    }
    r.h[0].value = "";
    assert_int_equal(sb_channel_telegram.verify(ch, &r.req, 0, &reason), SB_E_AUTH);
    assert_string_equal(reason, "missing_secret_token");
    r.req.nheaders = 0;
    assert_int_equal(sb_channel_telegram.verify(ch, &r.req, 0, &reason), SB_E_AUTH);
    assert_string_equal(reason, "missing_secret_token");
    /* The right secret on another bot's path, or on the bare prefix. */
    r.req.nheaders = 1;
    r.h[0].value = "new_Secret-2";
    const char *paths[] = {"/v1/ingress/telegram/7000000002", "/v1/ingress/telegram/",
                           "/v1/ingress/telegram/7000000001/x", "/v1/ingress/telegram/70000000011"};
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
        r.req.path = paths[i];
        assert_int_equal(sb_channel_telegram.verify(ch, &r.req, 0, &reason), SB_E_AUTH);
        assert_string_equal(reason, "unknown_bot");
    }
    sb_channel_destroy(ch);
}

static void parse_str(const char *body, sb_chan_batch_t *b)
{
    sb_channel_t *ch = make_channel("s", "t");
    fx_parse(ch, body, b);
    sb_channel_destroy(ch);
}

#define FROM "\"from\":{\"id\":42,\"is_bot\":false,\"first_name\":\"Dana\"}"
#define CHAT "\"chat\":{\"id\":42,\"type\":\"private\"}"

static void test_parse_edges(void **state)
{
    (void)state;
    sb_chan_batch_t b;
    const char *quarantined[] = {
        "",
        "[]",
        "{\"update_id\":\"1\"}",
        "{\"update_id\":-1}",
        "{\"update_id\":1.5}",
        "{\"update_id\":1,\"message\":[]}",
        "{\"update_id\":1,\"message\":{\"message_id\":1," CHAT ",\"date\":5}}",
        "{\"update_id\":1,\"message\":{\"message_id\":1," FROM "," CHAT "}}",
        "{\"update_id\":1,\"message\":{\"message_id\":1," FROM "," CHAT ",\"date\":5,\"text\":3}}",
        "{\"update_id\":1,\"message\":{\"message_id\":1," FROM "," CHAT ",\"date\":5,\"photo\":[{"
        "\"width\":1}]}}",
        "{\"update_id\":1,\"message\":{\"message_id\":1," FROM "," CHAT ",\"date\":5,\"location\":"
        "{\"latitude\":91,\"longitude\":0}}}",
        "{\"update_id\":1,\"message\":{\"message_id\":1," FROM "," CHAT ",\"date\":5,\"contact\":"
        "{\"first_name\":\"x\"}}}",
        "{\"update_id\":1,\"callback_query\":{\"id\":\"9\"}}",
        "{\"update_id\":1,\"callback_query\":{\"id\":\"9\"," FROM ",\"data\":7}}",
        "{\"update_id\":1,\"my_chat_member\":{" CHAT "," FROM "}}",
    };
    sb_channel_t *ch = make_channel("s", "t");
    fx_parse_quarantined(ch, quarantined, sizeof quarantined / sizeof quarantined[0]);
    sb_channel_destroy(ch);

    /* A command without arguments, a bare update, a callback without a message. */
    parse_str("{\"update_id\":7,\"message\":{\"message_id\":3," FROM "," CHAT ",\"date\":5,"
              "\"text\":\"/help\",\"entities\":[{\"offset\":0,\"length\":5,\"type\":"
              "\"bot_command\"}]}}",
              &b);
    assert_int_equal(b.nitems, 1);
    assert_int_equal(b.items[0].kind, SB_CHAN_COMMAND);
    assert_string_equal(b.items[0].button_payload, "/help");
    assert_null(b.items[0].text);
    assert_string_equal(b.items[0].dedup_key, "tg:7000000001:7");
    assert_string_equal(b.items[0].session_id, "42");
    assert_string_equal(b.items[0].account_id, "7000000001");
    sb_chan_batch_free(&b);
    parse_str("{\"update_id\":8}", &b);
    assert_false(b.quarantine);
    assert_int_equal(b.nitems, 0);
    sb_chan_batch_free(&b);
    parse_str("{\"update_id\":9,\"callback_query\":{\"id\":\"77\"," FROM ",\"inline_message_id\":"
              "\"AAA\",\"chat_instance\":\"1\",\"data\":\"topic:x\"}}",
              &b);
    assert_int_equal(b.nitems, 1);
    assert_int_equal(b.items[0].kind, SB_CHAN_BUTTON_REPLY);
    assert_string_equal(b.items[0].provider_message_id, "cbq:77");
    assert_string_equal(b.items[0].session_id, "42");
    assert_null(b.items[0].in_reply_to);
    assert_null(b.items[0].button_title);
    sb_chan_batch_free(&b);
    /* A member update that is neither a block nor an unblock: nothing to route. */
    parse_str("{\"update_id\":10,\"my_chat_member\":{" CHAT "," FROM ",\"date\":5,"
              "\"old_chat_member\":{\"status\":\"member\"},\"new_chat_member\":{\"status\":"
              "\"member\"}}}",
              &b);
    assert_false(b.quarantine);
    assert_int_equal(b.nitems, 0);
    sb_chan_batch_free(&b);
    /* Our own bot in a group: the loop guard. */
    parse_str("{\"update_id\":11,\"message\":{\"message_id\":3,\"from\":{\"id\":7000000001,"
              "\"is_bot\":true,\"first_name\":\"Bot\"}," CHAT ",\"date\":5,\"text\":\"hi\"}}",
              &b);
    assert_int_equal(b.nitems, 0);
    assert_int_equal(b.nignored, 1);
    sb_chan_batch_free(&b);
}

static sb_result_t do_render(sb_channel_t *ch, const sb_outbound_t *o, const sb_recipient_t *rc,
                             sb_chan_http_t *req)
{
    return fx_render(ch, o, rc, "https://api.example.org", SB_CHAN_WINDOW_OPEN, req);
}

static void test_render(void **state)
{
    (void)state;
    sb_channel_t *ch = make_channel("s", "7000000001:AAtest-Token_x");
    sb_recipient_t rc = SWITCHBOARD__V1__RECIPIENT__INIT;
    rc.channel = (char *)"telegram";
    rc.address = (char *)"100000042";
    rc.account_id = (char *)"7000000001";
    rc.session_id = (char *)"100000042";
    rc.in_reply_to = (char *)"100000042:501";
    sb_outbound_t o = SWITCHBOARD__V1__OUTBOUND__INIT;
    o.message_id = (char *)"out:1";
    o.text = (char *)"Wir helfen gern.";
    sb_chan_http_t req;

    /* A private chat: no quote. The token is in the URL (never logged), not in a header. */
    assert_int_equal(do_render(ch, &o, &rc, &req), SB_OK);
    assert_string_equal(req.method, "POST");
    assert_string_equal(req.url,
                        "https://api.example.org/bot7000000001:AAtest-Token_x/sendMessage");
    assert_string_equal(req.headers[0], "Content-Type: application/json");
    assert_null(req.headers[1]);
    fx_body_is(&req, "{\"chat_id\":100000042,\"text\":\"Wir helfen gern.\"}");
    sb_chan_http_free(&req);

    /* Buttons: an inline keyboard, one button per row. */
    Switchboard__V1__Button b[3];
    Switchboard__V1__Button *bp[3];
    const char *ids[3] = {"topic:billing", "escalate:human", "x"};
    const char *titles[3] = {"Rechnung", "Mit einem Menschen sprechen", "Anderes"};
    for (int i = 0; i < 3; i++) {
        switchboard__v1__button__init(&b[i]);
        b[i].id = (char *)ids[i];
        b[i].title = (char *)titles[i];
        bp[i] = &b[i];
    }
    o.buttons = bp;
    o.n_buttons = 2;
    assert_int_equal(do_render(ch, &o, &rc, &req), SB_OK);
    fx_body_is(&req, "{\"chat_id\":100000042,\"text\":\"Wir helfen gern.\",\"reply_markup\":{"
                     "\"inline_keyboard\":[[{\"text\":\"Rechnung\",\"callback_data\":"
                     "\"topic:billing\"}],[{\"text\":\"Mit einem Menschen sprechen\","
                     "\"callback_data\":\"escalate:human\"}]]}}");
    sb_chan_http_free(&req);

    /* callback_data above 64 bytes cannot be a button: the numbered list. */
    char id65[66];
    memset(id65, 'k', 65);
    id65[65] = '\0';
    b[2].id = id65;
    o.n_buttons = 3;
    assert_int_equal(do_render(ch, &o, &rc, &req), SB_OK);
    fx_body_is(&req, "{\"chat_id\":100000042,\"text\":\"Wir helfen gern.\\n\\n1. Rechnung\\n2. Mit "
                     "einem Menschen sprechen\\n3. Anderes\"}");
    sb_chan_http_free(&req);
    id65[64] = '\0'; /* exactly 64 bytes fit */
    assert_int_equal(do_render(ch, &o, &rc, &req), SB_OK);
    assert_non_null(strstr(req.body.data, "inline_keyboard"));
    sb_chan_http_free(&req);

    /* A group: the answer goes to the group and quotes the customer's message. */
    o.n_buttons = 0;
    rc.session_id = (char *)"-1001000000042";
    rc.in_reply_to = (char *)"-1001000000042:77";
    assert_int_equal(do_render(ch, &o, &rc, &req), SB_OK);
    fx_body_is(&req,
               "{\"chat_id\":-1001000000042,\"text\":\"Wir helfen gern.\",\"reply_parameters\":{"
               "\"message_id\":77,\"allow_sending_without_reply\":true}}");
    sb_chan_http_free(&req);
    /* A quote from another chat, or a button tap's id, is not a message to quote. */
    rc.in_reply_to = (char *)"100000042:77";
    assert_int_equal(do_render(ch, &o, &rc, &req), SB_OK);
    assert_null(strstr(req.body.data, "reply_parameters"));
    sb_chan_http_free(&req);
    rc.in_reply_to = (char *)"cbq:4382000000000000001";
    assert_int_equal(do_render(ch, &o, &rc, &req), SB_OK);
    assert_null(strstr(req.body.data, "reply_parameters"));
    sb_chan_http_free(&req);

    /* 4096 characters at most. */
    char *longtext = sb_xmalloc(5001);
    memset(longtext, 'a', 5000);
    longtext[5000] = '\0';
    o.text = longtext;
    assert_int_equal(do_render(ch, &o, &rc, &req), SB_OK);
    cJSON *j = cJSON_ParseWithLength(req.body.data, req.body.len);
    assert_int_equal(sb_chan_utf8_len(fx_str(j, "text")), 4096);
    cJSON_Delete(j);
    sb_chan_http_free(&req);
    free(longtext);

    /* Refused: a chat id that is not a number, nothing to say. */
    o.text = (char *)"hi";
    rc.session_id = (char *)"";
    rc.address = (char *)"@channel";
    assert_int_equal(do_render(ch, &o, &rc, &req), SB_E_INVALID);
    rc.address = (char *)"42";
    o.text = (char *)"";
    assert_int_equal(do_render(ch, &o, &rc, &req), SB_E_INVALID);
    sb_channel_destroy(ch);

    /* No bot token configured: nothing can be sent. */
    ch = make_channel("s", "");
    o.text = (char *)"hi";
    assert_int_equal(do_render(ch, &o, &rc, &req), SB_E_INVALID);
    sb_channel_destroy(ch);
}

static void test_parse_response(void **state)
{
    (void)state;
    sb_channel_t *ch = make_channel("s", "t");
    sb_chan_response_t res = {.ok = true, .retry_after_ms = -1};
    const char *ok = "{\"ok\":true,\"result\":{\"message_id\":601,\"from\":{\"id\":7000000001,"
                     "\"is_bot\":true},\"chat\":{\"id\":100000042,\"type\":\"private\"},\"date\":1,"
                     "\"text\":\"hi\"}}";
    sb_channel_telegram.parse_response(ch, 200, ok, strlen(ok), &res);
    assert_true(res.ok);
    assert_string_equal(res.provider_id, "100000042:601");

    sb_chan_response_t flood = {.ok = false, .retry = true, .retry_after_ms = -1};
    const char *e429 =
        "{\"ok\":false,\"error_code\":429,\"description\":\"Too Many Requests: retry "
        "after 7\",\"parameters\":{\"retry_after\":7}}";
    sb_channel_telegram.parse_response(ch, 429, e429, strlen(e429), &flood);
    assert_false(flood.ok);
    assert_true(flood.retry);
    assert_int_equal(flood.retry_after_ms, 7000);
    assert_int_equal(flood.error_code, 429);
    assert_string_equal(flood.error, "429");

    sb_chan_response_t blocked = {.ok = false, .retry_after_ms = -1};
    const char *e403 = "{\"ok\":false,\"error_code\":403,\"description\":\"Forbidden: bot was "
                       "blocked by the user\"}";
    sb_channel_telegram.parse_response(ch, 403, e403, strlen(e403), &blocked);
    assert_false(blocked.ok);
    assert_false(blocked.retry);
    assert_int_equal(blocked.error_code, 403);
    assert_string_equal(blocked.error, "403");
    assert_string_equal(blocked.provider_id, "");

    /* Not JSON: the HTTP status alone decides. */
    sb_chan_response_t plain = {.ok = false, .retry = true, .retry_after_ms = -1};
    sb_channel_telegram.parse_response(ch, 502, "<html>", 6, &plain);
    assert_true(plain.retry);
    assert_int_equal(plain.error_code, 0);
    sb_channel_destroy(ch);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_prestate(fx_test_own_manifest, &telegram),
        cmocka_unit_test_prestate(fx_test_shared_manifest, &telegram),
        cmocka_unit_test(test_config),
        cmocka_unit_test(test_verify),
        cmocka_unit_test(test_parse_edges),
        cmocka_unit_test(test_render),
        cmocka_unit_test(test_parse_response),
    };
    return cmocka_run_group_tests(tests, fx_setup, NULL);
}
