/* Integration test of switchboard-escalation alone: a real nats-server, the real binary, and
 * this test playing the classifier (Classifications with contacts sealed to the harness key on
 * sb.nlu.<p>) and the console (AgentCommands on sb.agent.<verb>.<p>). It follows one
 * conversation: a bot turn whose recipient opens only with the egress key; "human_handoff" → an
 * Escalation on sb.esc.support.<conv>; claim + reply → an Outbound authored by the agent; a
 * customer message while assigned goes to the agent and not to the bot; resolve → the bot
 * answers again; the same Classification redelivered is recorded once. At the end no file under
 * the data directory holds the customer's name, phone, e-mail, provider ids or message texts,
 * and no file under the test directory (JetStream store, logs) holds the contact's PII. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "sb/codec.h"
#include "sb/httpclient.h"
#include "sb/ids.h"
#include "sb/seal.h"
#include "sb/store.h"
#include "sb/util.h"

#define WAIT_MS 30000
#define CHANNEL "whatsapp"
#define ACCOUNT "15550009999"

static const char *const NAME = "Quintessa Marbleworth";
static const char *const PHONE = "+44 7700 900461";
static const char *const SENDER = "447700900461";
static const char *const EMAIL = "quintessa.marbleworth@example.org";
static const char *const ORIGINAL = "quintessa.private@example.net"; /* a redacted original */
static const char *const WAMID = "wamid.HBgMNDQ3NzAwOTAwNDYxFQIAEhgUM0";
static const char *const TEXT1 =
    "Hello, my address is [EMAIL_1] and the parcel xylophone42 is late";
static const char *const TEXT2 = "I want to talk to a human zebracorn";
static const char *const TEXT3 = "are you still there quokkaphone";
static const char *const TEXT4 = "what are your opening hours narwhalbus";
static const char *const AGENT_TEXT = "Hi, Alice from support here";

typedef struct it {
    sb_harness_t h;
    int metrics_port;
    char conv[SB_SEAL_HASH_HEX];
    char contact[SB_SEAL_HASH_HEX];
    uint32_t p;
    sb_http_client_t *client;
} it_t;

/* ---- collecting stream contents ---- */

typedef struct msgs {
    uint8_t *data[64];
    size_t len[64];
    char subject[64][256];
    size_t n;
} msgs_t;

static void collect(void *ctx, const char *subject, const void *data, size_t len)
{
    msgs_t *m = ctx;
    if (m->n >= 64) return;
    m->data[m->n] = sb_xmalloc(len ? len : 1);
    memcpy(m->data[m->n], data, len);
    m->len[m->n] = len;
    snprintf(m->subject[m->n], sizeof(m->subject[m->n]), "%s", subject);
    m->n++;
}

static void msgs_free(msgs_t *m)
{
    for (size_t i = 0; i < m->n; i++)
        free(m->data[i]);
    m->n = 0;
}

static void read_all(it_t *t, const char *stream, const char *filter, msgs_t *m)
{
    memset(m, 0, sizeof(*m));
    size_t count = 0;
    assert_int_equal(sb_harness_read_stream(&t->h, stream, filter, collect, m, &count), SB_OK);
}

static void wait_count(it_t *t, const char *stream, const char *filter, size_t n)
{
    size_t got = sb_harness_wait_stream(&t->h, stream, filter, n, WAIT_MS);
    if (got < n) fail_msg("%s %s: %zu messages, expected %zu", stream, filter, got, n);
}

/* ---- inputs ---- */

static void publish(it_t *t, const char *subject, const ProtobufCMessage *msg, const char *msg_id)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    assert_int_equal(sb_codec_pack(msg, &buf, &len), SB_OK);
    assert_int_equal(sb_bus_publish(t->h.bus, subject, buf, len, msg_id, NULL), SB_OK);
    free(buf);
}

/* Publishes a Classification of the test conversation; nats_msg_id NULL = the message id. */
static void send_cls(it_t *t, const char *msg_id, const char *text, const char *intent,
                     float confidence, const char *nats_msg_id)
{
    sb_contact_t ct = SWITCHBOARD__V1__CONTACT__INIT;
    Switchboard__V1__Redaction red = SWITCHBOARD__V1__REDACTION__INIT;
    Switchboard__V1__Redaction *reds[1] = {&red};
    red.placeholder = (char *)"[EMAIL_1]";
    red.original = (char *)ORIGINAL;
    ct.channel = (char *)CHANNEL;
    ct.sender_id = (char *)SENDER;
    ct.display_name = (char *)NAME;
    ct.phone = (char *)PHONE;
    ct.email = (char *)EMAIL;
    ct.provider_message_id = (char *)WAMID;
    ct.account_id = (char *)ACCOUNT;
    ct.n_redactions = 1;
    ct.redactions = reds;
    uint8_t *plain = NULL;
    size_t plen = 0;
    assert_int_equal(SB_CODEC_PACK(&ct, &plain, &plen), SB_OK);
    uint8_t *sealed = sb_xmalloc(plen + SB_SEAL_BOX_OVERHEAD);
    assert_int_equal(sb_seal_box(sealed, plain, plen, t->h.contact_pk), SB_OK);
    free(plain);

    sb_envelope_t env = SWITCHBOARD__V1__ENVELOPE__INIT;
    env.message_id = (char *)msg_id;
    env.channel = (char *)CHANNEL;
    env.conversation_id = t->conv;
    env.contact_id = t->contact;
    env.partition = t->p;
    env.received_at_ms = sb_now_ms();
    env.kind = SWITCHBOARD__V1__MESSAGE_KIND__KIND_TEXT;
    env.text = (char *)text;
    env.sealed_contact.data = sealed;
    env.sealed_contact.len = plen + SB_SEAL_BOX_OVERHEAD;
    sb_classification_t c = SWITCHBOARD__V1__CLASSIFICATION__INIT;
    c.envelope = &env;
    c.language = (char *)"en";
    c.intent = (char *)intent;
    c.confidence = confidence;
    c.margin = 0.6f;
    char subject[64];
    snprintf(subject, sizeof(subject), "sb.nlu.%u", t->p);
    publish(t, subject, (const ProtobufCMessage *)&c, nats_msg_id ? nats_msg_id : msg_id);
    free(sealed);
}

static void send_cmd(it_t *t, const char *cmd_id, int verb, const char *verb_name,
                     const char *agent, const char *text)
{
    sb_agent_command_t c = SWITCHBOARD__V1__AGENT_COMMAND__INIT;
    c.command_id = (char *)cmd_id;
    c.verb = (Switchboard__V1__AgentVerb)verb;
    c.conversation_id = t->conv;
    c.partition = t->p;
    c.agent_id = (char *)agent;
    c.text = (char *)(text ? text : "");
    c.at_ms = sb_now_ms();
    char subject[64];
    snprintf(subject, sizeof(subject), "sb.agent.%s.%u", verb_name, t->p);
    publish(t, subject, (const ProtobufCMessage *)&c, cmd_id);
}

static sb_recipient_t *open_recipient(it_t *t, const ProtobufCBinaryData *sealed)
{
    assert_true(sealed->len > SB_SEAL_BOX_OVERHEAD);
    size_t n = sealed->len - SB_SEAL_BOX_OVERHEAD;
    uint8_t *plain = sb_xmalloc(n);
    assert_int_equal(
        sb_seal_box_open(plain, sealed->data, sealed->len, t->h.recipient_pk, t->h.recipient_sk),
        SB_OK);
    sb_recipient_t *r = NULL;
    assert_int_equal(SB_CODEC_UNPACK(switchboard__v1__recipient__descriptor, plain, n, &r), SB_OK);
    free(plain);
    return r;
}

static sb_bot_turn_t *bot_turn_at(it_t *t, size_t i)
{
    msgs_t m;
    read_all(t, "SB_BOT", "sb.bot.>", &m);
    assert_true(m.n > i);
    sb_bot_turn_t *bt = NULL;
    assert_int_equal(
        SB_CODEC_UNPACK(switchboard__v1__bot_turn__descriptor, m.data[i], m.len[i], &bt), SB_OK);
    msgs_free(&m);
    return bt;
}

static sb_escalation_t *escalation_at(it_t *t, const char *filter, size_t i)
{
    msgs_t m;
    read_all(t, "SB_ESC", filter, &m);
    assert_true(m.n > i);
    sb_escalation_t *e = NULL;
    assert_int_equal(
        SB_CODEC_UNPACK(switchboard__v1__escalation__descriptor, m.data[i], m.len[i], &e), SB_OK);
    msgs_free(&m);
    return e;
}

/* Polls /metrics until it has a line starting with `line`, up to WAIT_MS. */
static bool metrics_has(it_t *t, const char *line)
{
    char url[96];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/metrics", t->metrics_port);
    uint64_t deadline = sb_mono_ns() + (uint64_t)WAIT_MS * 1000000u;
    while (sb_mono_ns() < deadline) {
        sb_http_client_response_t resp = {0};
        if (sb_http_client_do(t->client, "GET", url, NULL, NULL, 0, 5000, 1 << 20, &resp) ==
                SB_OK &&
            resp.status == 200 && resp.body.data) {
            bool found = strstr(resp.body.data, line) != NULL;
            sb_buf_free(&resp.body);
            if (found) return true;
        } else {
            sb_buf_free(&resp.body);
        }
        usleep(100 * 1000);
    }
    return false;
}

/* ---- looking at the data left behind ---- */

/* Path of the first file under dir containing needle (caller frees), or NULL. */
static char *find_in_dir(const char *dir, const char *needle)
{
    DIR *d = opendir(dir);
    if (!d) return NULL;
    char *found = NULL;
    struct dirent *e;
    while (!found && (e = readdir(d)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char *p = sb_xasprintf("%s/%s", dir, e->d_name);
        struct stat st;
        if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode)) {
            found = find_in_dir(p, needle);
        } else if (lstat(p, &st) == 0 && S_ISREG(st.st_mode)) {
            char *data = NULL;
            size_t len = 0;
            if (sb_read_file(p, 1u << 30, &data, &len) == SB_OK) {
                if (memmem(data, len, needle, strlen(needle)) != NULL) found = sb_xstrdup(p);
                free(data);
            }
        }
        free(p);
    }
    closedir(d);
    return found;
}

typedef struct turn_count {
    const char *conv;
    sb_store_db_t turns;
    size_t n;
} turn_count_t;

static sb_result_t count_turns(sb_store_txn_t *txn, void *ctx)
{
    turn_count_t *tc = ctx;
    size_t clen = strlen(tc->conv);
    sb_store_cursor_t *c = NULL;
    sb_result_t r = sb_store_cursor_open(txn, tc->turns, &c);
    if (r != SB_OK) return r;
    sb_store_val_t k, v;
    r = sb_store_cursor_seek(c, tc->conv, clen, &k, &v);
    while (r == SB_OK && k.len > clen && memcmp(k.data, tc->conv, clen) == 0 &&
           ((const uint8_t *)k.data)[clen] == 0) {
        tc->n++;
        r = sb_store_cursor_next(c, &k, &v);
    }
    sb_store_cursor_close(c);
    return r == SB_E_NOT_FOUND || r == SB_OK ? SB_OK : r;
}

/* ---- the test ---- */

static int setup(void **state)
{
    it_t *t = sb_xcalloc(1, sizeof(*t));
    assert_int_equal(sb_harness_start_nats(&t->h), SB_OK);
    t->metrics_port = sb_harness_free_port();
    char *extra = sb_xasprintf("escalation:\n  metrics_listen: \"127.0.0.1:%d\"\n"
                               "  default_team: support\n",
                               t->metrics_port);
    assert_int_equal(sb_harness_write_config(&t->h, extra), SB_OK);
    free(extra);
    sb_ids_conversation(t->conv, t->h.id_secret, CHANNEL, ACCOUNT, SENDER);
    sb_ids_contact(t->contact, t->h.id_secret, CHANNEL, SENDER);
    t->p = sb_ids_partition(t->conv, 8);
    assert_int_equal(sb_http_client_create(&t->client), SB_OK);
    assert_true(sb_harness_spawn(&t->h, "switchboard-escalation", NULL) > 0);
    char url[96];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/readyz", t->metrics_port);
    assert_int_equal(sb_harness_wait_http(url, WAIT_MS), SB_OK);
    *state = t;
    return 0;
}

static int teardown(void **state)
{
    it_t *t = *state;
    sb_http_client_destroy(t->client);
    sb_harness_stop(&t->h);
    free(t);
    return 0;
}

static void test_conversation_through_the_worker(void **state)
{
    it_t *t = *state;
    char esc_filter[128], bot_filter[] = "sb.bot.>";
    snprintf(esc_filter, sizeof(esc_filter), "sb.esc.support.%s", t->conv);

    /* 1. a normal message: a BotTurn whose recipient only egress can open */
    send_cls(t, "it-m1", TEXT1, "order_status", 0.92f, NULL);
    wait_count(t, "SB_BOT", bot_filter, 1);
    sb_bot_turn_t *bt = bot_turn_at(t, 0);
    assert_string_equal(bt->conversation_id, t->conv);
    assert_string_equal(bt->turn_id, "it-m1");
    assert_true(bt->first_bot_message);
    assert_false(bt->escalated);
    sb_recipient_t *r = open_recipient(t, &bt->sealed_recipient);
    assert_string_equal(r->address, SENDER);
    assert_string_equal(r->account_id, ACCOUNT);
    assert_string_equal(r->in_reply_to, WAMID);
    assert_string_equal(r->channel, CHANNEL);
    SB_CODEC_FREE(r);
    /* the contact key cannot open it */
    uint8_t junk[4096];
    assert_true(bt->sealed_recipient.len < sizeof(junk));
    assert_int_not_equal(sb_seal_box_open(junk, bt->sealed_recipient.data, bt->sealed_recipient.len,
                                          t->h.contact_pk, t->h.contact_sk),
                         SB_OK);
    SB_CODEC_FREE(bt);

    /* 2. asking for a human: an Escalation for the support team, the bot acknowledges */
    send_cls(t, "it-m2", TEXT2, "human_handoff", 1.0f, NULL);
    wait_count(t, "SB_ESC", esc_filter, 1);
    sb_escalation_t *e = escalation_at(t, esc_filter, 0);
    assert_string_equal(e->state, "queued");
    assert_string_equal(e->team, "support");
    assert_int_equal(e->n_reasons, 1);
    assert_int_equal(e->reasons[0], SWITCHBOARD__V1__ESCALATION_REASON__REASON_EXPLICIT_REQUEST);
    assert_int_equal(e->n_transcript, 2);
    assert_string_equal(e->transcript[0]->text, TEXT1);
    assert_string_equal(e->transcript[1]->text, TEXT2);
    assert_string_equal(e->masked_contact, "Q******** M**********, +44 77* *** **61, "
                                           "q***@e******.org");
    SB_CODEC_FREE(e);
    wait_count(t, "SB_BOT", bot_filter, 2);
    bt = bot_turn_at(t, 1);
    assert_true(bt->escalated);
    SB_CODEC_FREE(bt);

    /* 3. claim + reply: an Outbound authored by the agent, addressed to the customer */
    send_cmd(t, "it-c1", SWITCHBOARD__V1__AGENT_VERB__VERB_CLAIM, "claim", "alice", NULL);
    send_cmd(t, "it-c2", SWITCHBOARD__V1__AGENT_VERB__VERB_REPLY, "reply", "alice", AGENT_TEXT);
    wait_count(t, "SB_OUT", "sb.out." CHANNEL, 1);
    msgs_t m;
    read_all(t, "SB_OUT", "sb.out.>", &m);
    assert_int_equal(m.n, 1);
    sb_outbound_t *ob = NULL;
    assert_int_equal(
        SB_CODEC_UNPACK(switchboard__v1__outbound__descriptor, m.data[0], m.len[0], &ob), SB_OK);
    msgs_free(&m);
    assert_int_equal(ob->author, SWITCHBOARD__V1__AUTHOR__AUTHOR_AGENT);
    assert_string_equal(ob->agent_id, "alice");
    assert_string_equal(ob->text, AGENT_TEXT);
    assert_string_equal(ob->message_id, "agent:it-c2");
    assert_string_equal(ob->conversation_id, t->conv);
    r = open_recipient(t, &ob->sealed_recipient);
    assert_string_equal(r->address, SENDER);
    SB_CODEC_FREE(r);
    SB_CODEC_FREE(ob);
    wait_count(t, "SB_ESC", esc_filter, 2); /* the claim told the consoles */
    e = escalation_at(t, esc_filter, 1);
    assert_string_equal(e->state, "assigned");
    assert_string_equal(e->agent_id, "alice");
    SB_CODEC_FREE(e);

    /* 4. the customer writes while assigned: to the agent, not to the bot. The message's last
     * output is its EVENT_MESSAGE_IN, so once three are there the handler is done. */
    send_cls(t, "it-m3", TEXT3, "greeting", 0.9f, NULL);
    wait_count(t, "SB_EVENTS", "sb.ev.message_in", 3);
    wait_count(t, "SB_ESC", esc_filter, 3);
    e = escalation_at(t, esc_filter, 2);
    assert_string_equal(e->state, "customer_message");
    assert_int_equal(e->n_transcript, 1);
    assert_string_equal(e->transcript[0]->text, TEXT3);
    SB_CODEC_FREE(e);
    read_all(t, "SB_BOT", bot_filter, &m);
    assert_int_equal(m.n, 2);
    msgs_free(&m);

    /* 5. resolve: the consoles learn it, and the next message gets the bot again */
    send_cmd(t, "it-c3", SWITCHBOARD__V1__AGENT_VERB__VERB_RESOLVE, "resolve", "alice", NULL);
    wait_count(t, "SB_ESC", esc_filter, 4);
    e = escalation_at(t, esc_filter, 3);
    assert_string_equal(e->state, "resolved");
    SB_CODEC_FREE(e);
    send_cls(t, "it-m4", TEXT4, "opening_hours", 0.9f, NULL);
    wait_count(t, "SB_BOT", bot_filter, 3);
    bt = bot_turn_at(t, 2);
    assert_string_equal(bt->turn_id, "it-m4");
    assert_true(bt->resumed_after_agent);
    assert_false(bt->escalated);
    assert_false(bt->first_bot_message);
    SB_CODEC_FREE(bt);

    /* 6. the same Classification again, past JetStream's dedup (another Nats-Msg-Id): the
     * worker's own dedup table drops it */
    send_cls(t, "it-m4", TEXT4, "opening_hours", 0.9f, "it-m4-redelivered");
    assert_true(metrics_has(t, "sb_escalation_messages_total{outcome=\"duplicate\"} 1"));
    assert_true(metrics_has(t, "sb_escalation_escalations_total{reason=\"explicit_request\"} 1"));
    read_all(t, "SB_BOT", bot_filter, &m);
    assert_int_equal(m.n, 3);
    msgs_free(&m);

    /* stop the worker; its store must hold each turn once: 4 customer turns + 1 agent reply */
    for (int i = 0; i < t->h.nprocs; i++)
        sb_harness_kill(&t->h, t->h.procs[i]);
    t->h.nprocs = 0;
    char lmdb[PATH_MAX + 8];
    snprintf(lmdb, sizeof(lmdb), "%s/lmdb", t->h.data_dir);
    static const char *const dbs[] = {"conversations", "turns", "contacts", "contact_keys",
                                      "consent",       "dedup", "expiry",   "agents",
                                      "queues",        NULL};
    sb_store_t *st = NULL;
    assert_int_equal(sb_store_open(&st, lmdb, dbs, 1 << 20, 1u << 30), SB_OK);
    turn_count_t tc = {.conv = t->conv};
    assert_int_equal(sb_store_db(st, "turns", &tc.turns), SB_OK);
    assert_int_equal(sb_store_read(st, count_turns, &tc), SB_OK);
    sb_store_close(st);
    assert_int_equal(tc.n, 5);

    /* 7. nothing readable left behind */
    const char *everywhere[] = {NAME,          "Marbleworth", PHONE,    SENDER,
                                "7700 900461", EMAIL,         ORIGINAL, WAMID};
    const char *data_only[] = {TEXT1,         TEXT2,       TEXT3,         TEXT4,       AGENT_TEXT,
                               "xylophone42", "zebracorn", "quokkaphone", "narwhalbus"};
    for (size_t i = 0; i < sizeof(everywhere) / sizeof(everywhere[0]); i++) {
        char *where = find_in_dir(t->h.dir, everywhere[i]);
        if (where) fail_msg("PII item %zu found in %s", i, where);
    }
    for (size_t i = 0; i < sizeof(data_only) / sizeof(data_only[0]); i++) {
        char *where = find_in_dir(t->h.data_dir, data_only[i]);
        if (where) fail_msg("message text item %zu found in %s", i, where);
    }
    /* the check is able to find things: the conversation id is in the store in the clear */
    char *where = find_in_dir(t->h.data_dir, t->conv);
    assert_non_null(where);
    free(where);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_conversation_through_the_worker, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
