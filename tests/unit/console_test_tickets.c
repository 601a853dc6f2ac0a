/* Unit tests of the console's ticket table: numbering per conversation, what is printed for a
 * new escalation and for updates (customer message, assignment, resolution), no duplicate
 * transcript lines, refusal of unusable escalations, and terminal-safe output. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "tickets.h"

typedef struct fixture {
    sb_escalation_t esc;
    Switchboard__V1__TranscriptLine lines[4];
    Switchboard__V1__TranscriptLine *linep[4];
    Switchboard__V1__EscalationReason reasons[2];
} fixture_t;

static void make(fixture_t *f, const char *conversation)
{
    sb_escalation_t e = SWITCHBOARD__V1__ESCALATION__INIT;
    f->esc = e;
    f->esc.escalation_id = "esc1";
    f->esc.conversation_id = (char *)conversation;
    f->esc.partition = 3;
    f->esc.channel = "webchat";
    f->esc.team = "support";
    f->esc.state = "queued";
    f->esc.language = "en";
    f->esc.intent = "human_handoff";
    f->esc.confidence = 0.93f;
    f->esc.masked_contact = "A** F******, +1 555 *** **76";
    f->reasons[0] = SWITCHBOARD__V1__ESCALATION_REASON__REASON_EXPLICIT_REQUEST;
    f->reasons[1] = SWITCHBOARD__V1__ESCALATION_REASON__REASON_LOW_CONFIDENCE;
    f->esc.reasons = f->reasons;
    f->esc.n_reasons = 2;
    for (int i = 0; i < 4; i++) {
        Switchboard__V1__TranscriptLine l = SWITCHBOARD__V1__TRANSCRIPT_LINE__INIT;
        f->lines[i] = l;
        f->linep[i] = &f->lines[i];
    }
    f->lines[0].at_ms = 1000;
    f->lines[0].text = "Where is my order [EMAIL_1]?";
    f->lines[1].at_ms = 2000;
    f->lines[1].author = SWITCHBOARD__V1__AUTHOR__AUTHOR_BOT;
    f->lines[1].text = "You can follow your order with the tracking link.";
    f->lines[2].at_ms = 3000;
    f->lines[2].text = "I want to talk to a human";
    f->esc.transcript = f->linep;
    f->esc.n_transcript = 3;
}

static void test_new_escalation_is_shown_whole(void **state)
{
    (void)state;
    sb_tickets_t t = {0};
    fixture_t f;
    sb_buf_t out = {0};
    unsigned num = 0;
    make(&f, "c0ffee01");
    assert_int_equal(sb_tickets_apply(&t, &f.esc, 8, &out, &num), SB_OK);
    assert_int_equal(num, 1);
    assert_non_null(strstr(out.data, "new escalation #1"));
    assert_non_null(strstr(out.data, "#1 webchat | team support | queued"));
    assert_non_null(strstr(out.data, "explicit_request, low_confidence"));
    assert_non_null(strstr(out.data, "human_handoff (0.93)"));
    assert_non_null(strstr(out.data, "A** F******, +1 555 *** **76"));
    assert_non_null(strstr(out.data, "customer: Where is my order [EMAIL_1]?"));
    assert_non_null(strstr(out.data, "bot: You can follow"));
    assert_non_null(strstr(out.data, "customer: I want to talk to a human"));
    assert_non_null(strstr(out.data, "claim 1"));
    const sb_ticket_t *tk = sb_tickets_get(&t, 1);
    assert_non_null(tk);
    assert_string_equal(tk->conversation_id, "c0ffee01");
    assert_int_equal(tk->partition, 3);
    assert_int_equal(tk->nlines, 3);
    assert_null(sb_tickets_get(&t, 2));
    assert_null(sb_tickets_get(&t, 0));
    sb_buf_free(&out);

    /* A second conversation is #2. */
    make(&f, "c0ffee02");
    assert_int_equal(sb_tickets_apply(&t, &f.esc, 8, &out, &num), SB_OK);
    assert_int_equal(num, 2);
    sb_buf_free(&out);
    sb_tickets_render_list(&t, &out);
    assert_non_null(strstr(out.data, "#1 "));
    assert_non_null(strstr(out.data, "#2 "));
    assert_non_null(strstr(out.data, "3 lines"));
    sb_buf_free(&out);
    sb_tickets_free(&t);
}

static void test_updates_show_only_what_changed(void **state)
{
    (void)state;
    sb_tickets_t t = {0};
    fixture_t f;
    sb_buf_t out = {0};
    make(&f, "c0ffee01");
    assert_int_equal(sb_tickets_apply(&t, &f.esc, 8, &out, NULL), SB_OK);
    sb_buf_free(&out);

    /* Assigned: one line, no transcript repeated. */
    f.esc.state = "assigned";
    f.esc.agent_id = "alice";
    assert_int_equal(sb_tickets_apply(&t, &f.esc, 8, &out, NULL), SB_OK);
    assert_string_equal(out.data, "#1 assigned to alice\n");
    sb_buf_free(&out);

    /* A new customer message carries the transcript again plus the new line. */
    f.esc.state = "customer_message";
    f.lines[3].at_ms = 4000;
    f.lines[3].text = "Are you there?";
    f.esc.n_transcript = 4;
    assert_int_equal(sb_tickets_apply(&t, &f.esc, 8, &out, NULL), SB_OK);
    assert_string_equal(out.data, "#1 customer: Are you there?\n");
    sb_buf_free(&out);
    assert_int_equal(sb_tickets_get(&t, 1)->nlines, 4);

    /* The same message delivered again prints nothing new. */
    sb_buf_t again = {0};
    assert_int_equal(sb_tickets_apply(&t, &f.esc, 8, &again, NULL), SB_OK);
    assert_int_equal(again.len, 0);
    sb_buf_free(&again);

    f.esc.state = "resolved";
    assert_int_equal(sb_tickets_apply(&t, &f.esc, 8, &out, NULL), SB_OK);
    assert_non_null(strstr(out.data, "#1 resolved"));
    sb_buf_free(&out);
    assert_string_equal(sb_tickets_get(&t, 1)->state, "resolved");

    f.esc.state = "queued";
    assert_int_equal(sb_tickets_apply(&t, &f.esc, 8, &out, NULL), SB_OK);
    assert_non_null(strstr(out.data, "#1 queued again"));
    sb_buf_free(&out);
    assert_int_equal(t.n, 1);
    sb_tickets_free(&t);
}

static void test_refuses_unusable_escalations(void **state)
{
    (void)state;
    sb_tickets_t t = {0};
    fixture_t f;
    sb_buf_t out = {0};
    make(&f, "");
    assert_int_equal(sb_tickets_apply(&t, &f.esc, 8, &out, NULL), SB_E_INVALID);
    make(&f, "has space");
    assert_int_equal(sb_tickets_apply(&t, &f.esc, 8, &out, NULL), SB_E_INVALID);
    make(&f, "c0ffee01");
    f.esc.partition = 8;
    assert_int_equal(sb_tickets_apply(&t, &f.esc, 8, &out, NULL), SB_E_INVALID);
    make(&f, "c0ffee01");
    f.esc.channel = "";
    assert_int_equal(sb_tickets_apply(&t, &f.esc, 8, &out, NULL), SB_E_INVALID);
    assert_int_equal(t.n, 0);
    assert_int_equal(out.len, 0);
    sb_tickets_free(&t);
}

static void test_output_is_terminal_safe(void **state)
{
    (void)state;
    sb_tickets_t t = {0};
    fixture_t f;
    sb_buf_t out = {0};
    make(&f, "c0ffee01");
    f.lines[0].text = "evil \x1b]0;owned\x07 and \x1b[2J clear \xc2\x9b"
                      "31m c1 \xff bad";
    f.lines[1].text = "line one\nline two";
    f.esc.masked_contact = "J\x1b[1m**";
    f.esc.n_transcript = 2;
    assert_int_equal(sb_tickets_apply(&t, &f.esc, 8, &out, NULL), SB_OK);
    for (size_t i = 0; i < out.len; i++) {
        unsigned char ch = (unsigned char)out.data[i];
        assert_true(ch >= 0x20 || ch == '\n');
        assert_true(ch != 0x7f);
        if (ch == 0xc2 && i + 1 < out.len) assert_true((unsigned char)out.data[i + 1] >= 0xa0);
    }
    assert_non_null(strstr(out.data, "owned"));
    assert_non_null(strstr(out.data, "? bad"));
    assert_non_null(strstr(out.data, "line one\n      line two"));
    sb_buf_free(&out);
    sb_tickets_free(&t);
}

static void test_transcript_is_bounded(void **state)
{
    (void)state;
    sb_tickets_t t = {0};
    fixture_t f;
    sb_buf_t out = {0};
    make(&f, "c0ffee01");
    assert_int_equal(sb_tickets_apply(&t, &f.esc, 8, &out, NULL), SB_OK);
    f.esc.state = "customer_message";
    f.esc.n_transcript = 1;
    for (int i = 0; i < 2 * SB_TICKET_MAX_LINES; i++) {
        f.lines[0].at_ms = 10000 + i;
        f.lines[0].text = "again";
        assert_int_equal(sb_tickets_apply(&t, &f.esc, 8, &out, NULL), SB_OK);
    }
    const sb_ticket_t *tk = sb_tickets_get(&t, 1);
    assert_int_equal(tk->nlines, SB_TICKET_MAX_LINES);
    assert_int_equal(tk->lines[SB_TICKET_MAX_LINES - 1].at_ms, 10000 + 2 * SB_TICKET_MAX_LINES - 1);
    sb_buf_free(&out);
    sb_tickets_free(&t);
}

static void test_reason_names(void **state)
{
    (void)state;
    assert_string_equal(sb_tickets_reason_name(1), "explicit_request");
    assert_string_equal(sb_tickets_reason_name(11), "sla_breach");
    assert_string_equal(sb_tickets_reason_name(99), "other");
    assert_string_equal(sb_tickets_reason_name(-1), "other");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_new_escalation_is_shown_whole),
        cmocka_unit_test(test_updates_show_only_what_changed),
        cmocka_unit_test(test_refuses_unusable_escalations),
        cmocka_unit_test(test_output_is_terminal_safe),
        cmocka_unit_test(test_transcript_is_bounded),
        cmocka_unit_test(test_reason_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
