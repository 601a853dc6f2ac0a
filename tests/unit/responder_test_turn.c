/* Unit tests of the responder's reading of a BotTurn: which turns are refused, which locale,
 * intent, button payload and flags reach the answer choice, and the intent codes put in
 * events. Publishing is covered by tests/integration/test_responder.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "responder.h"

static void test_check_turn(void **state)
{
    (void)state;
    sb_bot_turn_t t = SWITCHBOARD__V1__BOT_TURN__INIT;
    const char *why = NULL;
    t.turn_id = "abc123";
    t.conversation_id = "c0ffee";
    t.channel = "webchat";
    assert_int_equal(sb_responder_check_turn(&t, &why), SB_OK);

    t.channel = "web.chat";
    assert_int_equal(sb_responder_check_turn(&t, &why), SB_E_INVALID);
    assert_string_equal(why, "bad channel");
    t.channel = "";
    assert_int_equal(sb_responder_check_turn(&t, &why), SB_E_INVALID);
    t.channel = "webchat";

    t.turn_id = "";
    assert_int_equal(sb_responder_check_turn(&t, &why), SB_E_INVALID);
    assert_string_equal(why, "bad turn_id");
    t.turn_id = "has space";
    assert_int_equal(sb_responder_check_turn(&t, &why), SB_E_INVALID);
    char long_id[SB_RESPONDER_MAX_ID + 2];
    memset(long_id, 'a', sizeof long_id - 1);
    long_id[sizeof long_id - 1] = '\0';
    t.turn_id = long_id;
    assert_int_equal(sb_responder_check_turn(&t, NULL), SB_E_INVALID);
    long_id[SB_RESPONDER_MAX_ID] = '\0';
    assert_int_equal(sb_responder_check_turn(&t, NULL), SB_OK);

    t.conversation_id = "";
    assert_int_equal(sb_responder_check_turn(&t, &why), SB_E_INVALID);
    assert_string_equal(why, "bad conversation_id");
}

static void test_request_locale_order(void **state)
{
    (void)state;
    sb_bot_turn_t t = SWITCHBOARD__V1__BOT_TURN__INIT;
    sb_classification_t c = SWITCHBOARD__V1__CLASSIFICATION__INIT;
    sb_envelope_t e = SWITCHBOARD__V1__ENVELOPE__INIT;
    sb_answer_request_t req;

    /* No classification at all: nothing but defaults. */
    sb_responder_request(&t, &req);
    assert_null(req.intent);
    assert_null(req.locale);
    assert_false(req.unsupported);

    t.classification = &c;
    c.envelope = &e;
    e.locale_hint = "fr-BE";
    sb_responder_request(&t, &req);
    assert_string_equal(req.locale, "fr-BE");
    c.language = "nl";
    sb_responder_request(&t, &req);
    assert_string_equal(req.locale, "nl");
    t.locale = "en";
    sb_responder_request(&t, &req);
    assert_string_equal(req.locale, "en");
}

static void test_request_fields(void **state)
{
    (void)state;
    sb_bot_turn_t t = SWITCHBOARD__V1__BOT_TURN__INIT;
    sb_classification_t c = SWITCHBOARD__V1__CLASSIFICATION__INIT;
    sb_envelope_t e = SWITCHBOARD__V1__ENVELOPE__INIT;
    sb_answer_request_t req;

    t.classification = &c;
    c.envelope = &e;
    c.intent = "greeting";
    t.first_bot_message = 1;
    t.escalated = 1;
    t.resumed_after_agent = 1;
    e.kind = SWITCHBOARD__V1__MESSAGE_KIND__KIND_TEXT;
    e.button_payload = "intent:opening_hours";
    sb_responder_request(&t, &req);
    assert_string_equal(req.intent, "greeting");
    assert_true(req.first_bot_message);
    assert_true(req.escalated);
    assert_true(req.resumed_after_agent);
    /* A payload only counts on a button reply. */
    assert_null(req.button_payload);
    e.kind = SWITCHBOARD__V1__MESSAGE_KIND__KIND_BUTTON_REPLY;
    sb_responder_request(&t, &req);
    assert_string_equal(req.button_payload, "intent:opening_hours");

    e.kind = SWITCHBOARD__V1__MESSAGE_KIND__KIND_UNSUPPORTED;
    sb_responder_request(&t, &req);
    assert_true(req.unsupported);

    c.intent = "";
    sb_responder_request(&t, &req);
    assert_null(req.intent);
}

static void test_intent_code(void **state)
{
    (void)state;
    char code[SB_ANSWERS_MAX_INTENT + 1];
    sb_responder_intent_code("order_status", code, sizeof code);
    assert_string_equal(code, "order_status");
    sb_responder_intent_code("", code, sizeof code);
    assert_string_equal(code, "none");
    sb_responder_intent_code(NULL, code, sizeof code);
    assert_string_equal(code, "none");
    sb_responder_intent_code("Call me at +31 6 1234", code, sizeof code);
    assert_string_equal(code, "invalid");
    char longname[100];
    memset(longname, 'a', 99);
    longname[99] = '\0';
    sb_responder_intent_code(longname, code, sizeof code);
    assert_string_equal(code, "invalid");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_check_turn),
        cmocka_unit_test(test_request_locale_order),
        cmocka_unit_test(test_request_fields),
        cmocka_unit_test(test_intent_code),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
