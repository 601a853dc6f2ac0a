/* Unit tests of the pure parts of router egress: the provider window decision
 * (sb_chan_window_decide) for WhatsApp- and Messenger-like policies, the retry back-off
 * bounds, the Meta Graph response parser, the error-token sanitizer, and the start-up check
 * of dependent settings. No I/O. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "channel.h"
#include "egress.h"

#define H (3600LL * 1000)
#define NOW (1772442900000LL)

static sb_outbound_t outbound(int64_t last_ms, Switchboard__V1__Author author)
{
    sb_outbound_t o = SWITCHBOARD__V1__OUTBOUND__INIT;
    o.message_id = (char *)"out:x";
    o.last_customer_message_ms = last_ms;
    o.author = author;
    return o;
}

static void test_window_whatsapp(void **state)
{
    (void)state;
    sb_chan_window_policy_t wa = {
        .free_ms = SB_CHAN_WINDOW_24H_MS, .template_name = "reengage", .template_language = "en"};
    const Switchboard__V1__Author bot = SWITCHBOARD__V1__AUTHOR__AUTHOR_BOT;
    const Switchboard__V1__Author agent = SWITCHBOARD__V1__AUTHOR__AUTHOR_AGENT;
    sb_outbound_t o = outbound(NOW - 23 * H, bot);
    assert_int_equal(sb_chan_window_decide(&wa, &o, NOW), SB_CHAN_WINDOW_OPEN);
    o = outbound(NOW - 24 * H, bot); /* the boundary is still inside */
    assert_int_equal(sb_chan_window_decide(&wa, &o, NOW), SB_CHAN_WINDOW_OPEN);
    o = outbound(NOW - 24 * H - 1, bot);
    assert_int_equal(sb_chan_window_decide(&wa, &o, NOW), SB_CHAN_WINDOW_TEMPLATE);
    o = outbound(NOW - 48 * H, agent); /* no agent extension on WhatsApp */
    assert_int_equal(sb_chan_window_decide(&wa, &o, NOW), SB_CHAN_WINDOW_TEMPLATE);
    o = outbound(0, bot); /* unknown: the provider judges */
    assert_int_equal(sb_chan_window_decide(&wa, &o, NOW), SB_CHAN_WINDOW_OPEN);
    o = outbound(NOW - 48 * H, bot);
    o.template_name = (char *)"order_update"; /* a template may always be sent */
    assert_int_equal(sb_chan_window_decide(&wa, &o, NOW), SB_CHAN_WINDOW_OPEN);

    sb_chan_window_policy_t bare = {.free_ms = SB_CHAN_WINDOW_24H_MS};
    o = outbound(NOW - 25 * H, bot);
    assert_int_equal(sb_chan_window_decide(&bare, &o, NOW), SB_CHAN_WINDOW_CLOSED);
    sb_chan_window_policy_t none = {0};
    o = outbound(NOW - 1000 * H, bot);
    assert_int_equal(sb_chan_window_decide(&none, &o, NOW), SB_CHAN_WINDOW_OPEN);
    assert_string_equal(sb_chan_window_name(SB_CHAN_WINDOW_CLOSED), "closed");
}

static void test_window_messenger(void **state)
{
    (void)state;
    sb_chan_window_policy_t m = {.free_ms = SB_CHAN_WINDOW_24H_MS,
                                 .agent_tag_ms = SB_CHAN_WINDOW_7D_MS};
    const Switchboard__V1__Author bot = SWITCHBOARD__V1__AUTHOR__AUTHOR_BOT;
    const Switchboard__V1__Author agent = SWITCHBOARD__V1__AUTHOR__AUTHOR_AGENT;
    sb_outbound_t o = outbound(NOW - 2 * H, agent);
    assert_int_equal(sb_chan_window_decide(&m, &o, NOW), SB_CHAN_WINDOW_OPEN);
    o = outbound(NOW - 30 * H, agent);
    assert_int_equal(sb_chan_window_decide(&m, &o, NOW), SB_CHAN_WINDOW_HUMAN_AGENT);
    o = outbound(NOW - 7 * 24 * H, agent);
    assert_int_equal(sb_chan_window_decide(&m, &o, NOW), SB_CHAN_WINDOW_HUMAN_AGENT);
    o = outbound(NOW - 7 * 24 * H - 1, agent);
    assert_int_equal(sb_chan_window_decide(&m, &o, NOW), SB_CHAN_WINDOW_CLOSED);
    o = outbound(NOW - 30 * H, bot); /* the tag is for humans only */
    assert_int_equal(sb_chan_window_decide(&m, &o, NOW), SB_CHAN_WINDOW_CLOSED);
}

static void test_backoff(void **state)
{
    (void)state;
    /* Attempt 1: exactly the base; later attempts within [base, min(max, base*2^(n-1))]. */
    assert_int_equal(sb_egress_backoff_ms(500, 60000, 1, -1, 12345), 500);
    for (uint64_t r = 0; r < 2000; r += 7) {
        int64_t d2 = sb_egress_backoff_ms(500, 60000, 2, -1, r * 2654435761u);
        assert_true(d2 >= 500 && d2 <= 1000);
        int64_t d5 = sb_egress_backoff_ms(500, 60000, 5, -1, r * 2654435761u);
        assert_true(d5 >= 500 && d5 <= 8000);
        int64_t d40 = sb_egress_backoff_ms(500, 60000, 40, -1, r * 2654435761u);
        assert_true(d40 >= 500 && d40 <= 60000);
    }
    /* Full jitter: both ends of the range are reachable. */
    assert_int_equal(sb_egress_backoff_ms(500, 60000, 3, -1, 0), 500);
    assert_int_equal(sb_egress_backoff_ms(500, 60000, 3, -1, 1500), 2000);
    /* Retry-After wins when longer, never shortens. */
    assert_int_equal(sb_egress_backoff_ms(500, 1000, 1, 2000, 0), 2000);
    assert_int_equal(sb_egress_backoff_ms(500, 1000, 1, 100, 0), 500);
}

static void test_graph_response(void **state)
{
    (void)state;
    sb_chan_response_t r;
    memset(&r, 0, sizeof r);
    r.ok = true;
    const char *ok = "{\"messaging_product\":\"whatsapp\",\"contacts\":[{\"input\":\"1\",\"wa_id\":"
                     "\"1\"}],\"messages\":[{\"id\":\"wamid.HBgLMTU1NTAx\"}]}";
    sb_chan_graph_parse_response(ok, strlen(ok), &r);
    assert_true(r.ok);
    assert_string_equal(r.provider_id, "wamid.HBgLMTU1NTAx");

    memset(&r, 0, sizeof r);
    const char *mess = "{\"recipient_id\":\"1254477777772919\",\"message_id\":\"m_AG5Hz2U\"}";
    sb_chan_graph_parse_response(mess, strlen(mess), &r);
    assert_string_equal(r.provider_id, "m_AG5Hz2U");

    memset(&r, 0, sizeof r);
    const char *bad = "{\"error\":{\"message\":\"(#131047) Re-engagement message\",\"code\":131047,"
                      "\"error_subcode\":2494010}}";
    sb_chan_graph_parse_response(bad, strlen(bad), &r);
    assert_false(r.ok);
    assert_false(r.retry);
    assert_int_equal(r.error_code, 131047);
    assert_string_equal(r.error, "131047.2494010");

    memset(&r, 0, sizeof r);
    const char *throttled = "{\"error\":{\"message\":\"rate\",\"code\":130429}}";
    sb_chan_graph_parse_response(throttled, strlen(throttled), &r);
    assert_true(r.retry);
    assert_string_equal(r.error, "130429");

    memset(&r, 0, sizeof r);
    sb_chan_graph_parse_response("not json", 8, &r); /* never fails, changes nothing */
    assert_string_equal(r.provider_id, "");
    assert_int_equal(r.error_code, 0);
}

static void test_error_token_sanitized(void **state)
{
    (void)state;
    sb_chan_response_t r;
    memset(&r, 0, sizeof r);
    sb_chan_response_set_error(&r, "channel_not_found");
    assert_string_equal(r.error, "channel_not_found");
    sb_chan_response_set_error(&r, "Bad Request: chat not found"); /* free text: dropped */
    assert_string_equal(r.error, "");
    char long_tok[200];
    memset(long_tok, 'a', sizeof long_tok - 1);
    long_tok[sizeof long_tok - 1] = '\0';
    sb_chan_response_set_error(&r, long_tok);
    assert_int_equal(strlen(r.error), sizeof r.error - 1);
    char long_id[SB_CHAN_MAX_ID + 10];
    memset(long_id, 'x', sizeof long_id - 1);
    long_id[sizeof long_id - 1] = '\0';
    sb_chan_response_set_id(&r, long_id);
    assert_string_equal(r.provider_id, "");
    sb_chan_response_set_id(&r, "1234:99");
    assert_string_equal(r.provider_id, "1234:99");
}

static void test_check_config(void **state)
{
    (void)state;
    sb_config_t cfg;
    char err[256];
    assert_int_equal(sb_config_load(&cfg, NULL, err, sizeof err), SB_OK);
    assert_int_equal(sb_egress_check_config(&cfg, err, sizeof err), SB_OK);
    cfg.nats.max_deliver = 3;
    cfg.router.egress_max_attempts = 5;
    assert_int_equal(sb_egress_check_config(&cfg, err, sizeof err), SB_E_CONFIG);
    assert_non_null(strstr(err, "router.egress_max_attempts"));
    assert_non_null(strstr(err, "nats.max_deliver"));
    cfg.router.egress_max_attempts = 3;
    assert_int_equal(sb_egress_check_config(&cfg, err, sizeof err), SB_OK);
    cfg.router.egress_backoff_ms = 5000;
    cfg.router.egress_backoff_max_ms = 1000;
    assert_int_equal(sb_egress_check_config(&cfg, err, sizeof err), SB_E_CONFIG);
    assert_non_null(strstr(err, "router.egress_backoff_max_ms"));
    sb_config_free(&cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_window_whatsapp),
        cmocka_unit_test(test_window_messenger),
        cmocka_unit_test(test_backoff),
        cmocka_unit_test(test_graph_response),
        cmocka_unit_test(test_error_token_sanitized),
        cmocka_unit_test(test_check_config),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
