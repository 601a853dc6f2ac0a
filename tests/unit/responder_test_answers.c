/* Unit tests of the responder's answers file: loading the shipped demo file, every validation
 * error (naming intent and field), locale fallback, and the choice of the answer for a turn
 * (intent, button payload, fallback, handoff, unsupported, disclosure and resumed prefixes). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "answers.h"
#include "sb/util.h"

/* The special entries every valid file needs; tests append their own entries. */
#define BASE                                                                                       \
    "answers:\n"                                                                                   \
    "  - intent: _disclosure\n"                                                                    \
    "    text: {en: 'You talk to a bot.', nl: 'Je praat met een bot.'}\n"                          \
    "  - intent: _fallback\n"                                                                      \
    "    text: {en: 'Sorry?', fr: 'Pardon ?'}\n"                                                   \
    "    buttons:\n"                                                                               \
    "      - id: 'escalate:human'\n"                                                               \
    "        title: {en: 'Talk to a person', fr: 'Parler à quelqu''un'}\n"                        \
    "  - intent: _handoff\n"                                                                       \
    "    text: {en: 'Connecting you.', nl: 'Ik verbind je door.'}\n"

#define GREETING                                                                                   \
    "  - intent: greeting\n"                                                                       \
    "    text: {en: 'Hello!', nl: 'Hallo!', fr: 'Bonjour !'}\n"                                    \
    "    buttons:\n"                                                                               \
    "      - id: 'intent:opening_hours'\n"                                                         \
    "        title: {en: 'Opening hours', nl: 'Openingstijden'}\n"                                 \
    "  - intent: opening_hours\n"                                                                  \
    "    text: {en: 'We open at 9.'}\n"

static sb_answers_t *parse_ok(const char *yaml)
{
    sb_answers_t *a = NULL;
    char err[512] = "";
    sb_result_t r = sb_answers_parse(&a, yaml, strlen(yaml), err, sizeof err);
    if (r != SB_OK) fprintf(stderr, "unexpected error: %s\n", err);
    assert_int_equal(r, SB_OK);
    assert_non_null(a);
    return a;
}

/* Asserts that yaml is refused and that the message contains each of the given fragments. */
static void parse_fails(const char *yaml, const char *frag1, const char *frag2)
{
    sb_answers_t *a = NULL;
    char err[512] = "";
    sb_result_t r = sb_answers_parse(&a, yaml, strlen(yaml), err, sizeof err);
    if (r == SB_OK || !strstr(err, frag1) || (frag2 && !strstr(err, frag2)))
        fprintf(stderr, "error was: \"%s\" (want \"%s\" and \"%s\")\n", err, frag1,
                frag2 ? frag2 : "");
    assert_int_not_equal(r, SB_OK);
    assert_null(a);
    assert_non_null(strstr(err, frag1));
    if (frag2) assert_non_null(strstr(err, frag2));
}

static void choose(const sb_answers_t *a, const sb_answer_request_t *req, sb_answer_t *ans)
{
    sb_answers_choose(a, req, ans);
    assert_non_null(ans->text);
    assert_non_null(ans->intent);
}

static bool has_button(const sb_answer_t *ans, const char *id)
{
    for (size_t i = 0; i < ans->nbuttons; i++)
        if (strcmp(ans->buttons[i].id, id) == 0) return true;
    return false;
}

/* ---- the shipped demo file --------------------------------------------------------------- */

static void test_demo_file_loads_and_covers_the_demo(void **state)
{
    (void)state;
    const char *src = getenv("SB_SOURCE_DIR");
    char path[1024], err[512] = "";
    sb_answers_t *a = NULL;
    snprintf(path, sizeof path, "%s/config/answers.yaml", src ? src : ".");
    sb_result_t r = sb_answers_load(&a, path, err, sizeof err);
    if (r != SB_OK) fprintf(stderr, "%s\n", err);
    assert_int_equal(r, SB_OK);

    static const char *const intents[] = {"greeting",      "goodbye",      "thanks",
                                          "opening_hours", "order_status", "change_billing_address",
                                          "human_handoff", "return_item",  "delivery_time"};
    for (size_t i = 0; i < sizeof intents / sizeof intents[0]; i++) {
        char en_text[4096];
        for (int l = 0; l < SB_LOCALE_COUNT; l++) {
            sb_answer_request_t req = {.intent = intents[i],
                                       .locale = sb_locale_name((sb_locale_t)l)};
            sb_answer_t ans;
            choose(a, &req, &ans);
            assert_int_equal(ans.outcome, SB_ANSWER_ANSWERED);
            assert_string_equal(ans.intent, intents[i]);
            /* Every demo intent is really translated, not falling back to English. */
            assert_int_equal(ans.locale, l);
            if (l == SB_LOCALE_EN)
                snprintf(en_text, sizeof en_text, "%s", ans.text);
            else
                assert_string_not_equal(ans.text, en_text);
            for (size_t b = 0; b < ans.nbuttons; b++)
                assert_true(strlen(ans.buttons[b].title) > 0);
            sb_answer_clear(&ans);
        }
    }

    /* The greeting offers opening hours, order status and a person. */
    sb_answer_request_t req = {.intent = "greeting", .locale = "en"};
    sb_answer_t ans;
    choose(a, &req, &ans);
    assert_true(has_button(&ans, "intent:opening_hours"));
    assert_true(has_button(&ans, "intent:order_status"));
    assert_true(has_button(&ans, "escalate:human"));
    sb_answer_clear(&ans);

    /* The disclosure says "bot" in every language. */
    for (int l = 0; l < SB_LOCALE_COUNT; l++) {
        sb_answer_request_t first = {.intent = "greeting",
                                     .locale = sb_locale_name((sb_locale_t)l),
                                     .first_bot_message = true};
        choose(a, &first, &ans);
        assert_true(strstr(ans.text, "bot") || strstr(ans.text, "robot"));
        sb_answer_clear(&ans);
    }
    sb_answers_destroy(a);
}

static void test_missing_file_is_an_error(void **state)
{
    (void)state;
    sb_answers_t *a = NULL;
    char err[512] = "";
    assert_int_not_equal(sb_answers_load(&a, "/nonexistent/answers.yaml", err, sizeof err), SB_OK);
    assert_null(a);
    assert_non_null(strstr(err, "/nonexistent/answers.yaml"));
}

/* ---- validation -------------------------------------------------------------------------- */

static void test_minimal_file_is_valid(void **state)
{
    (void)state;
    sb_answers_t *a = parse_ok(BASE GREETING);
    assert_int_equal(sb_answers_count(a), 5);
    assert_true(sb_answers_has(a, "greeting"));
    assert_true(sb_answers_has(a, "_fallback"));
    assert_false(sb_answers_has(a, "thanks"));
    assert_string_equal(sb_answers_intent(a, 0), "_disclosure");
    assert_null(sb_answers_intent(a, 99));
    sb_answers_destroy(a);
}

static void test_missing_en_text(void **state)
{
    (void)state;
    parse_fails(BASE "  - intent: greeting\n"
                     "    text: {nl: 'Hallo!'}\n",
                "intent 'greeting'", "'text.en' is missing");
    parse_fails(BASE "  - intent: greeting\n", "intent 'greeting'", "'text.en' is missing");
}

static void test_missing_en_title(void **state)
{
    (void)state;
    parse_fails(BASE "  - intent: greeting\n"
                     "    text: {en: 'Hi'}\n"
                     "    buttons:\n"
                     "      - id: 'intent:x'\n"
                     "        title: {nl: 'Hoi'}\n",
                "intent 'greeting'", "'buttons[0].title.en' is missing");
}

static void test_too_many_buttons(void **state)
{
    (void)state;
    sb_buf_t y = {0};
    sb_buf_appendf(&y, "%s  - intent: menu\n    text: {en: 'Pick one'}\n    buttons:\n", BASE);
    for (int i = 0; i < 11; i++)
        sb_buf_appendf(&y, "      - id: 'intent:i%d'\n        title: {en: 'Option %d'}\n", i, i);
    parse_fails(y.data, "intent 'menu'", "11 buttons (max 10)");
    sb_buf_free(&y);
}

static void test_ten_buttons_are_fine(void **state)
{
    (void)state;
    sb_buf_t y = {0};
    sb_buf_appendf(&y, "%s  - intent: menu\n    text: {en: 'Pick one'}\n    buttons:\n", BASE);
    for (int i = 0; i < 10; i++)
        sb_buf_appendf(&y, "      - id: 'intent:i%d'\n        title: {en: 'Option %d'}\n", i, i);
    sb_answers_t *a = parse_ok(y.data);
    sb_answer_request_t req = {.intent = "menu"};
    sb_answer_t ans;
    choose(a, &req, &ans);
    assert_int_equal(ans.nbuttons, 10);
    sb_answer_clear(&ans);
    sb_answers_destroy(a);
    sb_buf_free(&y);
}

static void test_title_too_long(void **state)
{
    (void)state;
    /* 20 characters of UTF-8 with accents are fine (more than 20 bytes). */
    sb_answers_t *a = parse_ok(BASE "  - intent: x\n"
                                    "    text: {en: 'x'}\n"
                                    "    buttons:\n"
                                    "      - id: 'a'\n"
                                    "        title: {en: 'éééééééééééééééééééé'}\n");
    sb_answers_destroy(a);
    parse_fails(BASE "  - intent: x\n"
                     "    text: {en: 'x'}\n"
                     "    buttons:\n"
                     "      - id: 'a'\n"
                     "        title: {en: 'ok', fr: 'Horaires d''ouverture!'}\n",
                "intent 'x'", "'buttons[0].title.fr' has 21 characters (max 20)");
}

static void test_id_too_long(void **state)
{
    (void)state;
    char id[300];
    memset(id, 'a', 257);
    id[257] = '\0';
    char *y = sb_xasprintf("%s  - intent: x\n    text: {en: 'x'}\n    buttons:\n"
                           "      - id: '%s'\n        title: {en: 'ok'}\n",
                           BASE, id);
    parse_fails(y, "intent 'x'", "'buttons[0].id'");
    free(y);
    id[256] = '\0';
    y = sb_xasprintf("%s  - intent: x\n    text: {en: 'x'}\n    buttons:\n"
                     "      - id: '%s'\n        title: {en: 'ok'}\n",
                     BASE, id);
    sb_answers_destroy(parse_ok(y));
    free(y);
}

static void test_text_too_long(void **state)
{
    (void)state;
    char *big = sb_xmalloc(4098);
    memset(big, 'x', 4097);
    big[4097] = '\0';
    char *y = sb_xasprintf("%s  - intent: x\n    text: {en: 'ok', nl: '%s'}\n", BASE, big);
    parse_fails(y, "intent 'x'", "'text.nl' has 4097 characters (max 4096)");
    free(y);
    /* Fits alone but not behind the disclosure. */
    big[4090] = '\0';
    y = sb_xasprintf("%s  - intent: x\n    text: {en: '%s'}\n", BASE, big);
    parse_fails(y, "intent 'x'", "too long once _disclosure");
    free(y);
    free(big);
}

static void test_required_specials(void **state)
{
    (void)state;
    parse_fails("answers:\n"
                "  - intent: _disclosure\n    text: {en: 'bot'}\n"
                "  - intent: _handoff\n    text: {en: 'human'}\n",
                "intent '_fallback'", "missing");
    parse_fails("answers:\n"
                "  - intent: _fallback\n    text: {en: 'what?'}\n"
                "    buttons: [{id: 'escalate:human', title: {en: 'Person'}}]\n"
                "  - intent: _handoff\n    text: {en: 'human'}\n",
                "intent '_disclosure'", "missing");
    parse_fails("answers:\n"
                "  - intent: _disclosure\n    text: {en: 'bot'}\n"
                "  - intent: _fallback\n    text: {en: 'what?'}\n"
                "    buttons: [{id: 'escalate:human', title: {en: 'Person'}}]\n",
                "intent '_handoff'", "missing");
}

static void test_fallback_must_offer_a_human(void **state)
{
    (void)state;
    parse_fails("answers:\n"
                "  - intent: _disclosure\n    text: {en: 'bot'}\n"
                "  - intent: _fallback\n    text: {en: 'what?'}\n"
                "  - intent: _handoff\n    text: {en: 'human'}\n",
                "intent '_fallback'", "escalate:human");
}

static void test_bad_names_and_shapes(void **state)
{
    (void)state;
    parse_fails(BASE "  - intent: _typo\n    text: {en: 'x'}\n", "intent '_typo'",
                "unknown special");
    parse_fails(BASE "  - intent: Greeting\n    text: {en: 'x'}\n", "field 'intent'", "Greeting");
    parse_fails(BASE GREETING "  - intent: greeting\n    text: {en: 'again'}\n",
                "intent 'greeting'", "appears twice");
    parse_fails(BASE "  - intent: _disclosure2\n    text: {en: 'x'}\n", "_disclosure2", NULL);
    parse_fails(BASE "  - intent: _resumed\n    text: {en: 'x'}\n"
                     "    buttons: [{id: 'a', title: {en: 'b'}}]\n",
                "intent '_resumed'", "'buttons' is not allowed");
    parse_fails(BASE "  - intent: x\n    text: {en: ''}\n", "intent 'x'", "'text.en' is empty");
    /* Unknown keys (a typo, or a locale we do not have) are refused by the schema. */
    parse_fails(BASE "  - intent: x\n    txt: {en: 'x'}\n", "not a valid answers file", "txt");
    parse_fails(BASE "  - intent: x\n    text: {en: 'x', de: 'y'}\n", "not a valid answers file",
                "de");
    parse_fails("answers: [\n", "not a valid answers file", NULL);
    parse_fails("", "not a valid answers file", NULL);
    parse_fails("answers: []\n", "not a valid answers file", NULL);
    parse_fails(BASE "  - intent: x\n    text: {en: \"bad \\x01 control\"}\n", "intent 'x'",
                "control");
}

/* ---- locales ----------------------------------------------------------------------------- */

static void test_locale_parse(void **state)
{
    (void)state;
    bool found;
    assert_int_equal(sb_locale_parse("nl", &found), SB_LOCALE_NL);
    assert_true(found);
    assert_int_equal(sb_locale_parse("FR", &found), SB_LOCALE_FR);
    assert_int_equal(sb_locale_parse("nl-BE", &found), SB_LOCALE_NL);
    assert_true(found);
    assert_int_equal(sb_locale_parse("fr_CA", NULL), SB_LOCALE_FR);
    assert_int_equal(sb_locale_parse("de", &found), SB_LOCALE_EN);
    assert_false(found);
    assert_int_equal(sb_locale_parse("nld", &found), SB_LOCALE_EN);
    assert_false(found);
    assert_int_equal(sb_locale_parse("", &found), SB_LOCALE_EN);
    assert_int_equal(sb_locale_parse(NULL, &found), SB_LOCALE_EN);
    assert_false(found);
    assert_string_equal(sb_locale_name(SB_LOCALE_FR), "fr");
}

static void test_unknown_locale_falls_back_to_en(void **state)
{
    (void)state;
    sb_answers_t *a = parse_ok(BASE GREETING);
    sb_answer_t ans;
    sb_answer_request_t req = {.intent = "greeting", .locale = "de"};
    choose(a, &req, &ans);
    assert_int_equal(ans.locale, SB_LOCALE_EN);
    assert_string_equal(ans.text, "Hello!");
    assert_string_equal(ans.buttons[0].title, "Opening hours");
    sb_answer_clear(&ans);

    /* No locale at all: English. */
    sb_answer_request_t none = {.intent = "greeting"};
    choose(a, &none, &ans);
    assert_string_equal(ans.text, "Hello!");
    sb_answer_clear(&ans);

    /* Dutch text and Dutch button titles; a missing French title falls back to English. */
    sb_answer_request_t nl = {.intent = "greeting", .locale = "nl-NL"};
    choose(a, &nl, &ans);
    assert_int_equal(ans.locale, SB_LOCALE_NL);
    assert_string_equal(ans.text, "Hallo!");
    assert_string_equal(ans.buttons[0].title, "Openingstijden");
    sb_answer_clear(&ans);
    sb_answer_request_t fr = {.intent = "greeting", .locale = "fr"};
    choose(a, &fr, &ans);
    assert_string_equal(ans.text, "Bonjour !");
    assert_string_equal(ans.buttons[0].title, "Opening hours");
    sb_answer_clear(&ans);

    /* An entry without Dutch is answered wholly in English, disclosure included. */
    sb_answer_request_t nl2 = {
        .intent = "opening_hours", .locale = "nl", .first_bot_message = true};
    choose(a, &nl2, &ans);
    assert_int_equal(ans.locale, SB_LOCALE_EN);
    assert_string_equal(ans.text, "You talk to a bot.\n\nWe open at 9.");
    sb_answer_clear(&ans);
    sb_answers_destroy(a);
}

/* ---- choosing ---------------------------------------------------------------------------- */

static void test_choose_by_intent(void **state)
{
    (void)state;
    sb_answers_t *a = parse_ok(BASE GREETING);
    sb_answer_t ans;
    sb_answer_request_t req = {.intent = "greeting", .locale = "en"};
    choose(a, &req, &ans);
    assert_int_equal(ans.outcome, SB_ANSWER_ANSWERED);
    assert_string_equal(ans.intent, "greeting");
    assert_string_equal(ans.text, "Hello!");
    assert_int_equal(ans.nbuttons, 1);
    assert_string_equal(ans.buttons[0].id, "intent:opening_hours");
    sb_answer_clear(&ans);
    assert_null(ans.text);
    sb_answers_destroy(a);
}

static void test_fallback_cases(void **state)
{
    (void)state;
    sb_answers_t *a = parse_ok(BASE GREETING);
    static const char *const intents[] = {"no_such_intent", "",         NULL,
                                          "out_of_scope",   "_handoff", "_disclosure"};
    for (size_t i = 0; i < sizeof intents / sizeof intents[0]; i++) {
        sb_answer_t ans;
        sb_answer_request_t req = {.intent = intents[i], .locale = "fr"};
        choose(a, &req, &ans);
        assert_int_equal(ans.outcome, SB_ANSWER_FALLBACK);
        assert_string_equal(ans.intent, "_fallback");
        assert_string_equal(ans.text, "Pardon ?");
        assert_true(has_button(&ans, "escalate:human"));
        assert_string_equal(ans.buttons[0].title, "Parler à quelqu'un");
        sb_answer_clear(&ans);
    }
    sb_answers_destroy(a);
}

static void test_disclosure_only_on_first_message(void **state)
{
    (void)state;
    sb_answers_t *a = parse_ok(BASE GREETING);
    sb_answer_t ans;
    sb_answer_request_t first = {.intent = "greeting", .locale = "nl", .first_bot_message = true};
    choose(a, &first, &ans);
    assert_string_equal(ans.text, "Je praat met een bot.\n\nHallo!");
    sb_answer_clear(&ans);

    sb_answer_request_t later = {.intent = "greeting", .locale = "nl"};
    choose(a, &later, &ans);
    assert_string_equal(ans.text, "Hallo!");
    sb_answer_clear(&ans);

    /* The first message being a fallback still discloses (English: _disclosure has no fr). */
    sb_answer_request_t fb = {.intent = "???", .locale = "fr", .first_bot_message = true};
    choose(a, &fb, &ans);
    assert_string_equal(ans.text, "You talk to a bot.\n\nPardon ?");
    sb_answer_clear(&ans);
    sb_answers_destroy(a);
}

static void test_handoff(void **state)
{
    (void)state;
    sb_answers_t *a = parse_ok(BASE GREETING);
    sb_answer_t ans;
    sb_answer_request_t req = {.intent = "greeting", .locale = "nl", .escalated = true};
    choose(a, &req, &ans);
    assert_int_equal(ans.outcome, SB_ANSWER_HANDOFF);
    assert_string_equal(ans.intent, "_handoff");
    assert_string_equal(ans.text, "Ik verbind je door.");
    assert_int_equal(ans.nbuttons, 0);
    sb_answer_clear(&ans);

    sb_answer_request_t first = {.locale = "en", .escalated = true, .first_bot_message = true};
    choose(a, &first, &ans);
    assert_string_equal(ans.text, "You talk to a bot.\n\nConnecting you.");
    sb_answer_clear(&ans);
    sb_answers_destroy(a);
}

static void test_resumed_and_unsupported(void **state)
{
    (void)state;
    sb_answer_t ans;
    /* Without _resumed / _unsupported entries: no prefix, and the fallback answers. */
    sb_answers_t *a = parse_ok(BASE GREETING);
    sb_answer_request_t r1 = {.intent = "greeting", .resumed_after_agent = true};
    choose(a, &r1, &ans);
    assert_string_equal(ans.text, "Hello!");
    sb_answer_clear(&ans);
    sb_answer_request_t u1 = {.intent = "greeting", .unsupported = true};
    choose(a, &u1, &ans);
    assert_int_equal(ans.outcome, SB_ANSWER_FALLBACK);
    assert_string_equal(ans.intent, "_fallback");
    sb_answer_clear(&ans);
    sb_answers_destroy(a);

    a = parse_ok(BASE GREETING "  - intent: _resumed\n    text: {en: 'Bot again.'}\n"
                               "  - intent: _unsupported\n    text: {en: 'Cannot read it.'}\n");
    choose(a, &r1, &ans);
    assert_string_equal(ans.text, "Bot again.\n\nHello!");
    sb_answer_clear(&ans);
    sb_answer_request_t both = {
        .intent = "greeting", .resumed_after_agent = true, .first_bot_message = true};
    choose(a, &both, &ans);
    assert_string_equal(ans.text, "You talk to a bot.\n\nBot again.\n\nHello!");
    sb_answer_clear(&ans);
    choose(a, &u1, &ans);
    assert_int_equal(ans.outcome, SB_ANSWER_UNSUPPORTED);
    assert_string_equal(ans.text, "Cannot read it.");
    sb_answer_clear(&ans);
    sb_answers_destroy(a);
}

static void test_button_payload_selects_intent(void **state)
{
    (void)state;
    sb_answers_t *a = parse_ok(BASE GREETING);
    sb_answer_t ans;
    sb_answer_request_t req = {.intent = "greeting", .button_payload = "intent:opening_hours"};
    choose(a, &req, &ans);
    assert_string_equal(ans.intent, "opening_hours");
    sb_answer_clear(&ans);
    /* A payload naming nothing we know falls back to the classified intent... */
    sb_answer_request_t unknown = {.intent = "greeting", .button_payload = "intent:nope"};
    choose(a, &unknown, &ans);
    assert_string_equal(ans.intent, "greeting");
    sb_answer_clear(&ans);
    /* ...and a payload can never select a special entry. */
    sb_answer_request_t special = {.intent = "x", .button_payload = "intent:_handoff"};
    choose(a, &special, &ans);
    assert_string_equal(ans.intent, "_fallback");
    sb_answer_clear(&ans);
    sb_answers_destroy(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_demo_file_loads_and_covers_the_demo),
        cmocka_unit_test(test_missing_file_is_an_error),
        cmocka_unit_test(test_minimal_file_is_valid),
        cmocka_unit_test(test_missing_en_text),
        cmocka_unit_test(test_missing_en_title),
        cmocka_unit_test(test_too_many_buttons),
        cmocka_unit_test(test_ten_buttons_are_fine),
        cmocka_unit_test(test_title_too_long),
        cmocka_unit_test(test_id_too_long),
        cmocka_unit_test(test_text_too_long),
        cmocka_unit_test(test_required_specials),
        cmocka_unit_test(test_fallback_must_offer_a_human),
        cmocka_unit_test(test_bad_names_and_shapes),
        cmocka_unit_test(test_locale_parse),
        cmocka_unit_test(test_unknown_locale_falls_back_to_en),
        cmocka_unit_test(test_choose_by_intent),
        cmocka_unit_test(test_fallback_cases),
        cmocka_unit_test(test_disclosure_only_on_first_message),
        cmocka_unit_test(test_handoff),
        cmocka_unit_test(test_resumed_and_unsupported),
        cmocka_unit_test(test_button_payload_selects_intent),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
