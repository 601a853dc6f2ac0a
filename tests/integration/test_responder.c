/* switchboard-responder against a real nats-server: BotTurns published on sb.bot.<p> come back
 * as Outbounds on SB_OUT with the right text, buttons, locale and copied sealed recipient; the
 * first bot message carries the disclosure, an unknown intent the fallback with the human
 * button, an escalated turn the handoff text; the same turn delivered twice yields one
 * Outbound; an undecodable turn is dropped without stopping the service; events land on
 * sb.ev.bot_reply / sb.ev.fallback; SIGHUP reloads the answers file and refuses a bad one.
 * One nats-server and one responder process for the whole group; each test uses its own
 * conversation ids. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "sb/codec.h"
#include "sb/httpclient.h"
#include "sb/ids.h"
#include "sb/util.h"

#define WAIT_MS 20000
#define PARTITIONS 8

typedef struct fixture {
    sb_harness_t h;
    pid_t responder;
    int metrics_port;
    char answers_path[PATH_MAX + 32];
    char metrics_url[64];
} fixture_t;

/* ---- helpers ----------------------------------------------------------------------------- */

static bool copy_file(const char *from, const char *to)
{
    char *data = NULL;
    size_t len = 0;
    if (sb_read_file(from, 1 << 20, &data, &len) != SB_OK) return false;
    FILE *f = fopen(to, "w");
    bool ok = f && fwrite(data, 1, len, f) == len;
    if (f && fclose(f) != 0) ok = false;
    free(data);
    return ok;
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fputs(text, f) >= 0, 1);
    assert_int_equal(fclose(f), 0);
}

/* The value of one metric line (exact name with labels) in /metrics, or -1. */
static double metric(fixture_t *f, const char *series)
{
    sb_http_client_t *c = NULL;
    sb_http_client_response_t resp;
    double v = -1;
    char url[96];
    snprintf(url, sizeof url, "%s/metrics", f->metrics_url);
    if (sb_http_client_create(&c) != SB_OK) return -1;
    if (sb_http_client_do(c, "GET", url, NULL, NULL, 0, 2000, 1 << 20, &resp) == SB_OK) {
        if (resp.status == 200 && resp.body.data) {
            const char *p = resp.body.data;
            size_t n = strlen(series);
            while ((p = strstr(p, series)) != NULL) {
                if ((p == resp.body.data || p[-1] == '\n') && p[n] == ' ') {
                    v = strtod(p + n + 1, NULL);
                    break;
                }
                p += n;
            }
        }
        sb_buf_free(&resp.body);
    }
    sb_http_client_destroy(c);
    return v;
}

static bool wait_metric(fixture_t *f, const char *series, double want)
{
    for (int i = 0; i < WAIT_MS / 100; i++) {
        if (metric(f, series) >= want) return true;
        usleep(100 * 1000);
    }
    return false;
}

typedef struct turn_spec {
    const char *turn_id;
    const char *conversation;
    const char *intent;
    const char *language;
    const char *locale;
    bool first;
    bool escalated;
    bool resumed;
    Switchboard__V1__MessageKind kind;
    const char *button_payload;
} turn_spec_t;

static const uint8_t sealed[] = {0xde, 0xad, 0xbe, 0xef, 0x00, 0x01, 0x02};

static void publish_turn(fixture_t *f, const turn_spec_t *s, const char *msg_id)
{
    sb_envelope_t e = SWITCHBOARD__V1__ENVELOPE__INIT;
    sb_classification_t c = SWITCHBOARD__V1__CLASSIFICATION__INIT;
    sb_bot_turn_t t = SWITCHBOARD__V1__BOT_TURN__INIT;
    uint32_t p = sb_ids_partition(s->conversation, PARTITIONS);
    char subject[64];
    uint8_t *buf = NULL;
    size_t len = 0;

    e.message_id = (char *)s->turn_id;
    e.channel = "webchat";
    e.conversation_id = (char *)s->conversation;
    e.partition = p;
    e.kind = s->kind ? s->kind : SWITCHBOARD__V1__MESSAGE_KIND__KIND_TEXT;
    e.text = "redacted text";
    if (s->button_payload) e.button_payload = (char *)s->button_payload;
    c.envelope = &e;
    c.intent = (char *)(s->intent ? s->intent : "");
    c.language = (char *)(s->language ? s->language : "");
    c.confidence = 0.9f;
    t.turn_id = (char *)s->turn_id;
    t.conversation_id = (char *)s->conversation;
    t.partition = p;
    t.channel = "webchat";
    t.classification = &c;
    t.first_bot_message = s->first;
    t.escalated = s->escalated;
    t.resumed_after_agent = s->resumed;
    t.locale = (char *)(s->locale ? s->locale : "");
    t.sealed_recipient.data = (uint8_t *)sealed;
    t.sealed_recipient.len = sizeof sealed;
    t.created_at_ms = sb_now_ms();

    assert_int_equal(SB_CODEC_PACK(&t, &buf, &len), SB_OK);
    snprintf(subject, sizeof subject, "sb.bot.%u", p);
    assert_int_equal(sb_bus_publish(f->h.bus, subject, buf, len, msg_id, NULL), SB_OK);
    free(buf);
}

/* Collects the Outbounds (or Events) stored on a stream. */
typedef struct collected {
    ProtobufCMessage *msgs[256];
    size_t n;
    const ProtobufCMessageDescriptor *desc;
} collected_t;

static void on_msg(void *ctx, const char *subject, const void *data, size_t len)
{
    collected_t *col = ctx;
    ProtobufCMessage *m = NULL;
    (void)subject;
    if (col->n < 256 && sb_codec_unpack(col->desc, data, len, &m) == SB_OK) col->msgs[col->n++] = m;
}

static void collect(fixture_t *f, const char *stream, const char *filter,
                    const ProtobufCMessageDescriptor *desc, collected_t *col)
{
    memset(col, 0, sizeof *col);
    col->desc = desc;
    assert_int_equal(sb_harness_read_stream(&f->h, stream, filter, on_msg, col, NULL), SB_OK);
}

static void release(collected_t *col)
{
    for (size_t i = 0; i < col->n; i++)
        sb_codec_free(col->msgs[i]);
    col->n = 0;
}

/* Waits for the Outbound answering turn_id and returns a copy (caller frees). Also counts
 * how many Outbounds answer it. */
static sb_outbound_t *wait_outbound(fixture_t *f, const char *turn_id, size_t *copies)
{
    char want[128];
    snprintf(want, sizeof want, "out:%s", turn_id);
    for (int i = 0; i < WAIT_MS / 100; i++) {
        collected_t col;
        collect(f, "SB_OUT", "sb.out.>", &switchboard__v1__outbound__descriptor, &col);
        sb_outbound_t *found = NULL;
        size_t n = 0;
        for (size_t k = 0; k < col.n; k++) {
            sb_outbound_t *o = (sb_outbound_t *)col.msgs[k];
            if (strcmp(o->message_id, want) != 0) continue;
            n++;
            if (!found) {
                found = o;
                col.msgs[k] = NULL;
            }
        }
        for (size_t k = 0; k < col.n; k++)
            if (col.msgs[k]) sb_codec_free(col.msgs[k]);
        if (found) {
            if (copies) *copies = n;
            return found;
        }
        usleep(100 * 1000);
    }
    sb_harness_dump_log(&f->h, "switchboard-responder", 4000);
    fail_msg("no Outbound for turn %s", turn_id);
    return NULL;
}

static bool has_button(const sb_outbound_t *o, const char *id, const char *title)
{
    for (size_t i = 0; i < o->n_buttons; i++)
        if (strcmp(o->buttons[i]->id, id) == 0 &&
            (!title || strcmp(o->buttons[i]->title, title) == 0))
            return true;
    return false;
}

/* ---- setup ------------------------------------------------------------------------------- */

static int setup(void **state)
{
    fixture_t *f = sb_xcalloc(1, sizeof *f);
    const char *src = getenv("SB_SOURCE_DIR");
    char demo[PATH_MAX], yaml[2 * PATH_MAX];
    assert_non_null(src);
    assert_int_equal(sb_harness_start_nats(&f->h), SB_OK);

    /* A copy of the demo answers, so that the SIGHUP test can edit it. */
    snprintf(demo, sizeof demo, "%s/config/answers.yaml", src);
    snprintf(f->answers_path, sizeof f->answers_path, "%s/answers.yaml", f->h.dir);
    assert_true(copy_file(demo, f->answers_path));

    f->metrics_port = sb_harness_free_port();
    snprintf(f->metrics_url, sizeof f->metrics_url, "http://127.0.0.1:%d", f->metrics_port);
    snprintf(yaml, sizeof yaml,
             "responder:\n  answers: \"%s\"\n  metrics_listen: \"127.0.0.1:%d\"\n", f->answers_path,
             f->metrics_port);
    assert_int_equal(sb_harness_write_config(&f->h, yaml), SB_OK);
    f->responder = sb_harness_spawn(&f->h, "switchboard-responder", NULL);
    assert_true(f->responder > 0);

    char ready[96];
    snprintf(ready, sizeof ready, "%s/readyz", f->metrics_url);
    if (sb_harness_wait_http(ready, WAIT_MS) != SB_OK) {
        sb_harness_dump_log(&f->h, "switchboard-responder", 4000);
        fail_msg("responder never became ready");
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    sb_harness_stop(&f->h);
    free(f);
    return 0;
}

/* ---- tests ------------------------------------------------------------------------------- */

static void test_first_message_discloses_in_locale(void **state)
{
    fixture_t *f = *state;
    turn_spec_t s = {.turn_id = "t-first-1",
                     .conversation = "conv-a",
                     .intent = "greeting",
                     .language = "nl",
                     .first = true};
    publish_turn(f, &s, "bot:t-first-1");
    sb_outbound_t *o = wait_outbound(f, "t-first-1", NULL);

    assert_string_equal(o->conversation_id, "conv-a");
    assert_int_equal(o->partition, sb_ids_partition("conv-a", PARTITIONS));
    assert_string_equal(o->channel, "webchat");
    assert_int_equal(o->author, SWITCHBOARD__V1__AUTHOR__AUTHOR_BOT);
    assert_string_equal(o->in_reply_to, "t-first-1");
    assert_string_equal(o->locale, "nl");
    assert_string_equal(o->intent, "greeting");
    assert_int_equal(o->sealed_recipient.len, sizeof sealed);
    assert_memory_equal(o->sealed_recipient.data, sealed, sizeof sealed);
    /* Disclosure first (Dutch), then the greeting. */
    assert_non_null(strstr(o->text, "je chat met een bot"));
    assert_non_null(strstr(o->text, "Hallo! Waarmee kan ik je helpen?"));
    assert_true(strstr(o->text, "bot") < strstr(o->text, "Hallo!"));
    assert_int_equal(o->n_buttons, 3);
    assert_true(has_button(o, "intent:opening_hours", "Openingstijden"));
    assert_true(has_button(o, "intent:order_status", "Bestelstatus"));
    assert_true(has_button(o, "escalate:human", "Met een medewerker"));
    SB_CODEC_FREE(o);

    /* BotTurn.locale wins over the classifier's language; unknown locales fall back to en. */
    turn_spec_t fr = {.turn_id = "t-first-2",
                      .conversation = "conv-a",
                      .intent = "opening_hours",
                      .language = "nl",
                      .locale = "fr"};
    publish_turn(f, &fr, "bot:t-first-2");
    o = wait_outbound(f, "t-first-2", NULL);
    assert_string_equal(o->locale, "fr");
    assert_non_null(strstr(o->text, "Notre service client"));
    SB_CODEC_FREE(o);
    turn_spec_t de = {.turn_id = "t-first-3",
                      .conversation = "conv-a",
                      .intent = "opening_hours",
                      .language = "de"};
    publish_turn(f, &de, "bot:t-first-3");
    o = wait_outbound(f, "t-first-3", NULL);
    assert_string_equal(o->locale, "en");
    assert_non_null(strstr(o->text, "Our customer service"));
    SB_CODEC_FREE(o);
}

static void test_later_message_has_no_disclosure(void **state)
{
    fixture_t *f = *state;
    turn_spec_t s = {.turn_id = "t-later-1",
                     .conversation = "conv-b",
                     .intent = "opening_hours",
                     .language = "en"};
    publish_turn(f, &s, "bot:t-later-1");
    sb_outbound_t *o = wait_outbound(f, "t-later-1", NULL);
    assert_true(strncmp(o->text, "Our customer service is open", 28) == 0);
    assert_null(strstr(o->text, "bot"));
    assert_true(has_button(o, "escalate:human", "Talk to a person"));
    SB_CODEC_FREE(o);

    /* A tapped intent button answers that intent. */
    turn_spec_t b = {.turn_id = "t-later-2",
                     .conversation = "conv-b",
                     .intent = "greeting",
                     .kind = SWITCHBOARD__V1__MESSAGE_KIND__KIND_BUTTON_REPLY,
                     .button_payload = "intent:order_status"};
    publish_turn(f, &b, "bot:t-later-2");
    o = wait_outbound(f, "t-later-2", NULL);
    assert_string_equal(o->intent, "order_status");
    SB_CODEC_FREE(o);
}

static void test_fallback_offers_a_human(void **state)
{
    fixture_t *f = *state;
    turn_spec_t s = {
        .turn_id = "t-fb-1", .conversation = "conv-c", .intent = "no_idea", .language = "en"};
    publish_turn(f, &s, "bot:t-fb-1");
    sb_outbound_t *o = wait_outbound(f, "t-fb-1", NULL);
    assert_string_equal(o->intent, "_fallback");
    assert_non_null(strstr(o->text, "didn't understand"));
    assert_true(has_button(o, "escalate:human", "Talk to a person"));
    SB_CODEC_FREE(o);

    turn_spec_t empty = {.turn_id = "t-fb-2", .conversation = "conv-c", .language = "fr"};
    publish_turn(f, &empty, "bot:t-fb-2");
    o = wait_outbound(f, "t-fb-2", NULL);
    assert_string_equal(o->intent, "_fallback");
    assert_true(has_button(o, "escalate:human", "Parler à quelqu'un"));
    SB_CODEC_FREE(o);

    /* The KPI event says what could not be answered; the normal answers get bot_reply. */
    collected_t col;
    bool found = false;
    for (int i = 0; i < WAIT_MS / 100 && !found; i++) {
        collect(f, "SB_EVENTS", "sb.ev.fallback", &switchboard__v1__event__descriptor, &col);
        for (size_t k = 0; k < col.n; k++) {
            sb_event_t *e = (sb_event_t *)col.msgs[k];
            if (strcmp(e->message_id, "out:t-fb-1") == 0) {
                assert_int_equal(e->type, SWITCHBOARD__V1__EVENT_TYPE__EVENT_FALLBACK);
                assert_string_equal(e->detail, "no_idea");
                assert_string_equal(e->conversation_id, "conv-c");
                found = true;
            }
        }
        release(&col);
        if (!found) usleep(100 * 1000);
    }
    assert_true(found);
    collect(f, "SB_EVENTS", "sb.ev.bot_reply", &switchboard__v1__event__descriptor, &col);
    found = false;
    for (size_t k = 0; k < col.n; k++) {
        sb_event_t *e = (sb_event_t *)col.msgs[k];
        if (strcmp(e->message_id, "out:t-fb-1") == 0) fail_msg("fallback counted as bot_reply");
        if (e->type == SWITCHBOARD__V1__EVENT_TYPE__EVENT_BOT_REPLY) found = true;
    }
    release(&col);
    assert_true(found);
}

static void test_escalated_turn_gets_handoff(void **state)
{
    fixture_t *f = *state;
    turn_spec_t s = {.turn_id = "t-esc-1",
                     .conversation = "conv-d",
                     .intent = "human_handoff",
                     .language = "en",
                     .escalated = true};
    publish_turn(f, &s, "bot:t-esc-1");
    sb_outbound_t *o = wait_outbound(f, "t-esc-1", NULL);
    assert_string_equal(o->intent, "_handoff");
    assert_non_null(strstr(o->text, "I'm connecting you with a colleague"));
    SB_CODEC_FREE(o);
}

static void test_same_turn_twice_one_outbound(void **state)
{
    fixture_t *f = *state;
    turn_spec_t s = {
        .turn_id = "t-dup-1", .conversation = "conv-e", .intent = "thanks", .language = "en"};
    publish_turn(f, &s, "bot:t-dup-1");
    sb_outbound_t *o = wait_outbound(f, "t-dup-1", NULL);
    SB_CODEC_FREE(o);
    double dups = metric(f, "sb_responder_turns_total{outcome=\"duplicate\"}");

    /* The same turn again, past SB_BOT's own dedup (another msg id): the responder answers it,
     * and JetStream drops its Outbound as a duplicate. Garbage in between is dropped. */
    publish_turn(f, &s, "bot:t-dup-1:redelivered");
    assert_int_equal(sb_bus_publish(f->h.bus, "sb.bot.0", "\x0a\xff\xff", 3, "garbage-1", NULL),
                     SB_OK);
    assert_true(wait_metric(f, "sb_responder_turns_total{outcome=\"duplicate\"}",
                            (dups < 0 ? 0 : dups) + 1));
    assert_true(wait_metric(f, "sb_responder_turns_total{outcome=\"invalid\"}", 1));

    /* A later turn is still answered, and there is exactly one Outbound for t-dup-1. */
    turn_spec_t next = {.turn_id = "t-dup-2", .conversation = "conv-e", .intent = "goodbye"};
    publish_turn(f, &next, "bot:t-dup-2");
    o = wait_outbound(f, "t-dup-2", NULL);
    SB_CODEC_FREE(o);
    size_t copies = 0;
    o = wait_outbound(f, "t-dup-1", &copies);
    assert_int_equal(copies, 1);
    SB_CODEC_FREE(o);
    assert_true(metric(f, "sb_responder_answers_total{intent=\"thanks\",outcome=\"answered\"}") >=
                2);
}

static void test_sighup_reloads_answers(void **state)
{
    fixture_t *f = *state;
    /* A broken file is refused and the old answers stay. */
    write_text(f->answers_path, "answers:\n  - intent: greeting\n    text: {nl: 'x'}\n");
    assert_int_equal(kill(f->responder, SIGHUP), 0);
    assert_true(wait_metric(f, "sb_responder_reloads_total{outcome=\"error\"}", 1));
    turn_spec_t s = {.turn_id = "t-hup-1", .conversation = "conv-f", .intent = "greeting"};
    publish_turn(f, &s, "bot:t-hup-1");
    sb_outbound_t *o = wait_outbound(f, "t-hup-1", NULL);
    assert_string_equal(o->text, "Hello! How can I help you today?");
    SB_CODEC_FREE(o);

    /* A good file replaces them. */
    write_text(f->answers_path, "answers:\n"
                                "  - intent: _disclosure\n    text: {en: 'I am a bot.'}\n"
                                "  - intent: _fallback\n    text: {en: 'Pardon?'}\n"
                                "    buttons: [{id: 'escalate:human', title: {en: 'Person'}}]\n"
                                "  - intent: _handoff\n    text: {en: 'Colleague coming.'}\n"
                                "  - intent: greeting\n    text: {en: 'Howdy!'}\n");
    assert_int_equal(kill(f->responder, SIGHUP), 0);
    assert_true(wait_metric(f, "sb_responder_reloads_total{outcome=\"ok\"}", 1));
    turn_spec_t s2 = {.turn_id = "t-hup-2", .conversation = "conv-f", .intent = "greeting"};
    publish_turn(f, &s2, "bot:t-hup-2");
    o = wait_outbound(f, "t-hup-2", NULL);
    assert_string_equal(o->text, "Howdy!");
    SB_CODEC_FREE(o);
}

static void test_bad_answers_file_stops_service(void **state)
{
    fixture_t *f = *state;
    char bad[PATH_MAX + 32], log[PATH_MAX + 64];
    snprintf(bad, sizeof bad, "%s/bad-answers.yaml", f->h.dir);
    write_text(bad, "answers:\n"
                    "  - intent: _disclosure\n    text: {en: 'bot'}\n"
                    "  - intent: order_status\n    text: {fr: 'Votre commande'}\n");
    /* Environment overrides the file (SB_<SECTION>_<KEY>). */
    assert_int_equal(setenv("SB_RESPONDER_ANSWERS", bad, 1), 0);
    pid_t pid = sb_harness_spawn(&f->h, "switchboard-responder", NULL);
    unsetenv("SB_RESPONDER_ANSWERS");
    assert_true(pid > 0);
    int status = 0;
    pid_t r = 0;
    for (int i = 0; i < WAIT_MS / 50 && r == 0; i++) {
        r = waitpid(pid, &status, WNOHANG);
        if (r == 0) usleep(50 * 1000);
    }
    for (int i = 0; i < f->h.nprocs; i++)
        if (f->h.procs[i] == pid) f->h.procs[i] = f->h.procs[--f->h.nprocs];
    assert_int_equal(r, pid);
    assert_true(WIFEXITED(status));
    assert_int_not_equal(WEXITSTATUS(status), 0);

    char *text = NULL;
    size_t len = 0;
    snprintf(log, sizeof log, "%s/switchboard-responder.log", f->h.dir);
    assert_int_equal(sb_read_file(log, 1 << 22, &text, &len), SB_OK);
    assert_non_null(strstr(text, "intent 'order_status'"));
    assert_non_null(strstr(text, "text.en"));
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_first_message_discloses_in_locale),
        cmocka_unit_test(test_later_message_has_no_disclosure),
        cmocka_unit_test(test_fallback_offers_a_human),
        cmocka_unit_test(test_escalated_turn_gets_handoff),
        cmocka_unit_test(test_same_turn_twice_one_outbound),
        cmocka_unit_test(test_sighup_reloads_answers),
        cmocka_unit_test(test_bad_answers_file_stops_service),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
