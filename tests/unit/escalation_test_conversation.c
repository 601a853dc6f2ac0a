/* Unit tests of the escalation engine without NATS: a real vault (LMDB in a temp dir), sealed
 * contacts made with test keys, and a publisher that records what would go on the bus. They
 * cover the decision rules, the agent state machine for every verb (including the rejects),
 * dedup of messages and commands, the masks, and that a failed publish commits nothing. */
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

#include "conversation.h"
#include "sb/codec.h"
#include "sb/ids.h"
#include "sb/seal.h"
#include "sb/util.h"
#include "vault.h"

#define T0_MS 1800000000000LL
#define MAX_PUB 64
#define CONV "c0ffee00c0ffee00c0ffee00c0ffee00"
#define CONTACT "0123456789abcdef0123456789abcdef"

static const char *const NAME = "Ana Flores";
static const char *const PHONE = "+1 555 123 4576";
static const char *const EMAIL = "ana.flores@example.com";
static const char *const SENDER = "15551234576";

typedef struct pub {
    char subject[256];
    char msg_id[256];
    uint8_t *data;
    size_t len;
} pub_t;

typedef struct fx {
    char dir[256];
    char lmdb[300];
    esc_vault_t *v;
    esc_engine_t *e;
    uint8_t contact_pk[32], contact_sk[32], recipient_pk[32], recipient_sk[32];
    pub_t pubs[MAX_PUB];
    size_t npubs;
    int fail_after; /* publishes that succeed before failures start; -1 = never fail */
    int published;
    int seq;
} fx_t;

static sb_result_t capture(void *ctx, const char *subject, const uint8_t *data, size_t len,
                           const char *msg_id)
{
    fx_t *f = ctx;
    if (f->fail_after >= 0 && f->published >= f->fail_after) return SB_E_UNAVAILABLE;
    f->published++;
    assert_true(f->npubs < MAX_PUB);
    pub_t *p = &f->pubs[f->npubs++];
    snprintf(p->subject, sizeof(p->subject), "%s", subject);
    snprintf(p->msg_id, sizeof(p->msg_id), "%s", msg_id);
    p->data = sb_xmalloc(len ? len : 1);
    memcpy(p->data, data, len);
    p->len = len;
    return SB_OK;
}

static void clear_pubs(fx_t *f)
{
    for (size_t i = 0; i < f->npubs; i++)
        free(f->pubs[i].data);
    f->npubs = 0;
}

static void rm_rf(const char *path)
{
    DIR *d = opendir(path);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
            char p[1024];
            snprintf(p, sizeof(p), "%s/%s", path, e->d_name);
            rm_rf(p);
        }
        closedir(d);
        rmdir(path);
    } else {
        unlink(path);
    }
}

static esc_policy_t default_policy(void)
{
    esc_policy_t p = {.confidence_threshold = 0.45,
                      .ambiguity_margin = 0.05,
                      .max_fallbacks = 2,
                      .transcript_turns = 10,
                      .partitions = 8};
    esc_set_id(p.default_team, "support");
    return p;
}

static int setup(void **state)
{
    assert_int_equal(sb_seal_init(), SB_OK);
    fx_t *f = sb_xcalloc(1, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "/tmp/sb-esc-conv-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->lmdb, sizeof(f->lmdb), "%s/lmdb", f->dir);
    uint8_t master[32];
    sb_seal_random(master, sizeof(master));
    esc_vault_config_t vc = {.dir = f->lmdb,
                             .map_size = 1 << 20,
                             .max_map_size = 64 << 20,
                             .master_key = master,
                             .master_key_id = 1,
                             .transcript_retention_s = 30 * 86400,
                             .dedup_retention_s = 8 * 86400};
    assert_int_equal(esc_vault_open(&f->v, &vc), SB_OK);
    sb_seal_box_keypair(f->contact_pk, f->contact_sk);
    sb_seal_box_keypair(f->recipient_pk, f->recipient_sk);
    f->fail_after = -1;
    esc_engine_config_t ec = {.vault = f->v,
                              .policy = default_policy(),
                              .contact_pk = f->contact_pk,
                              .contact_sk = f->contact_sk,
                              .recipient_pk = f->recipient_pk,
                              .publish = capture,
                              .publish_ctx = f};
    assert_int_equal(esc_engine_create(&f->e, &ec), SB_OK);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx_t *f = *state;
    clear_pubs(f);
    esc_engine_destroy(f->e);
    esc_vault_close(f->v);
    rm_rf(f->dir);
    free(f);
    return 0;
}

/* ---- building inputs ---- */

typedef struct cls_opts {
    const char *msg_id;
    const char *text;
    const char *intent;
    float confidence;
    float margin;
    int ntop;
    const char *rule;
    int kind;
    bool bad_seal;
    bool no_contact;
} cls_opts_t;

/* A packed Classification for conversation CONV with a contact sealed to the engine's key. */
static uint8_t *make_cls(fx_t *f, const cls_opts_t *o, size_t *len)
{
    sb_contact_t ct = SWITCHBOARD__V1__CONTACT__INIT;
    ct.channel = (char *)"webchat";
    ct.sender_id = (char *)SENDER;
    ct.display_name = (char *)NAME;
    ct.phone = (char *)PHONE;
    ct.email = (char *)EMAIL;
    ct.provider_message_id = (char *)"wamid.RAWPROVIDERID";
    ct.account_id = (char *)"acct-1";
    ct.session_id = (char *)"sess-1";
    uint8_t *plain = NULL;
    size_t plen = 0;
    assert_int_equal(SB_CODEC_PACK(&ct, &plain, &plen), SB_OK);
    uint8_t *sealed = sb_xmalloc(plen + SB_SEAL_BOX_OVERHEAD);
    uint8_t other_pk[32], other_sk[32];
    sb_seal_box_keypair(other_pk, other_sk);
    assert_int_equal(sb_seal_box(sealed, plain, plen, o->bad_seal ? other_pk : f->contact_pk),
                     SB_OK);
    free(plain);

    sb_envelope_t env = SWITCHBOARD__V1__ENVELOPE__INIT;
    env.message_id = (char *)o->msg_id;
    env.channel = (char *)"webchat";
    env.conversation_id = (char *)CONV;
    env.contact_id = (char *)CONTACT;
    env.received_at_ms = T0_MS + (f->seq++) * 1000;
    env.kind =
        o->kind ? (Switchboard__V1__MessageKind)o->kind : SWITCHBOARD__V1__MESSAGE_KIND__KIND_TEXT;
    env.text = (char *)(o->text ? o->text : "");
    if (!o->no_contact) {
        env.sealed_contact.data = sealed;
        env.sealed_contact.len = plen + SB_SEAL_BOX_OVERHEAD;
    }
    Switchboard__V1__DeliveryStatus st = SWITCHBOARD__V1__DELIVERY_STATUS__INIT;
    st.state = (char *)"delivered";
    if (env.kind == SWITCHBOARD__V1__MESSAGE_KIND__KIND_STATUS) env.status = &st;
    if (env.kind == SWITCHBOARD__V1__MESSAGE_KIND__KIND_SESSION) {
        env.consent_support_chat = true;
        env.consent_notice_version = (char *)"2026-01";
    }

    sb_classification_t c = SWITCHBOARD__V1__CLASSIFICATION__INIT;
    c.envelope = &env;
    c.language = (char *)"en";
    c.intent = (char *)(o->intent ? o->intent : "greeting");
    c.confidence = o->confidence;
    c.margin = o->margin;
    c.rule = (char *)(o->rule ? o->rule : "");
    Switchboard__V1__IntentScore s1 = SWITCHBOARD__V1__INTENT_SCORE__INIT,
                                 s2 = SWITCHBOARD__V1__INTENT_SCORE__INIT;
    Switchboard__V1__IntentScore *tops[2] = {&s1, &s2};
    s1.intent = c.intent;
    s1.confidence = c.confidence;
    s2.intent = (char *)"other";
    s2.confidence = c.confidence - c.margin;
    c.n_top = (size_t)o->ntop;
    c.top = tops;
    uint8_t *out = NULL;
    assert_int_equal(SB_CODEC_PACK(&c, &out, len), SB_OK);
    free(sealed);
    return out;
}

static sb_result_t send_cls(fx_t *f, const cls_opts_t *o)
{
    size_t len = 0;
    uint8_t *b = make_cls(f, o, &len);
    sb_result_t r = esc_engine_on_classification(f->e, b, len, T0_MS + f->seq * 1000);
    free(b);
    return r;
}

static sb_result_t send_text(fx_t *f, const char *msg_id, const char *text, const char *intent,
                             float confidence)
{
    cls_opts_t o = {.msg_id = msg_id,
                    .text = text,
                    .intent = intent,
                    .confidence = confidence,
                    .margin = 0.5f,
                    .ntop = 2};
    return send_cls(f, &o);
}

static sb_result_t send_cmd(fx_t *f, const char *cmd_id, int verb, const char *agent,
                            const char *text, const char *team)
{
    sb_agent_command_t c = SWITCHBOARD__V1__AGENT_COMMAND__INIT;
    c.command_id = (char *)cmd_id;
    c.verb = (Switchboard__V1__AgentVerb)verb;
    c.conversation_id = (char *)CONV;
    c.agent_id = (char *)(agent ? agent : "");
    c.text = (char *)(text ? text : "");
    c.team = (char *)(team ? team : "");
    c.at_ms = T0_MS;
    uint8_t *b = NULL;
    size_t len = 0;
    assert_int_equal(SB_CODEC_PACK(&c, &b, &len), SB_OK);
    sb_result_t r = esc_engine_on_command(f->e, b, len, T0_MS + (f->seq++) * 1000);
    free(b);
    return r;
}

/* ---- reading outputs ---- */

static const pub_t *find_pub(fx_t *f, const char *subject_prefix)
{
    for (size_t i = 0; i < f->npubs; i++)
        if (strncmp(f->pubs[i].subject, subject_prefix, strlen(subject_prefix)) == 0)
            return &f->pubs[i];
    return NULL;
}

static size_t count_pubs(fx_t *f, const char *subject_prefix)
{
    size_t n = 0;
    for (size_t i = 0; i < f->npubs; i++)
        if (strncmp(f->pubs[i].subject, subject_prefix, strlen(subject_prefix)) == 0) n++;
    return n;
}

static char *bot_subject(char *buf, size_t n)
{
    snprintf(buf, n, "sb.bot.%u", sb_ids_partition(CONV, 8));
    return buf;
}

static sb_bot_turn_t *get_bot_turn(fx_t *f)
{
    char subj[32];
    const pub_t *p = find_pub(f, bot_subject(subj, sizeof(subj)));
    if (!p) return NULL;
    sb_bot_turn_t *bt = NULL;
    assert_int_equal(SB_CODEC_UNPACK(switchboard__v1__bot_turn__descriptor, p->data, p->len, &bt),
                     SB_OK);
    return bt;
}

static sb_escalation_t *get_escalation(fx_t *f, const char *team)
{
    char subj[128];
    snprintf(subj, sizeof(subj), "sb.esc.%s.%s", team, CONV);
    const pub_t *p = find_pub(f, subj);
    if (!p) return NULL;
    sb_escalation_t *e = NULL;
    assert_int_equal(SB_CODEC_UNPACK(switchboard__v1__escalation__descriptor, p->data, p->len, &e),
                     SB_OK);
    return e;
}

static sb_event_t *get_event(fx_t *f, const char *kind)
{
    char subj[64];
    snprintf(subj, sizeof(subj), "sb.ev.%s", kind);
    for (size_t i = 0; i < f->npubs; i++) {
        if (strcmp(f->pubs[i].subject, subj) != 0) continue;
        sb_event_t *ev = NULL;
        assert_int_equal(SB_CODEC_UNPACK(switchboard__v1__event__descriptor, f->pubs[i].data,
                                         f->pubs[i].len, &ev),
                         SB_OK);
        return ev;
    }
    return NULL;
}

static sb_recipient_t *open_recipient(fx_t *f, const ProtobufCBinaryData *sealed)
{
    assert_true(sealed->len > SB_SEAL_BOX_OVERHEAD);
    size_t n = sealed->len - SB_SEAL_BOX_OVERHEAD;
    uint8_t *plain = sb_xmalloc(n);
    assert_int_equal(
        sb_seal_box_open(plain, sealed->data, sealed->len, f->recipient_pk, f->recipient_sk),
        SB_OK);
    sb_recipient_t *r = NULL;
    assert_int_equal(SB_CODEC_UNPACK(switchboard__v1__recipient__descriptor, plain, n, &r), SB_OK);
    free(plain);
    return r;
}

/* ---- pure rules ---- */

static void test_decide(void **state)
{
    (void)state;
    esc_policy_t p = default_policy();
    sb_classification_t c = SWITCHBOARD__V1__CLASSIFICATION__INIT;
    Switchboard__V1__IntentScore s1 = SWITCHBOARD__V1__INTENT_SCORE__INIT;
    Switchboard__V1__IntentScore *tops[2] = {&s1, &s1};
    int out[ESC_MAX_REASONS];

    c.intent = (char *)"opening_hours";
    c.confidence = 0.9f;
    assert_int_equal(esc_decide(&p, &c, 0, out), 0);
    /* no runner-up: a zero margin means nothing */
    c.margin = 0;
    assert_int_equal(esc_decide(&p, &c, 0, out), 0);
    c.top = tops;
    c.n_top = 2;
    c.margin = 0.01f;
    assert_int_equal(esc_decide(&p, &c, 0, out), 1);
    assert_int_equal(out[0], SWITCHBOARD__V1__ESCALATION_REASON__REASON_AMBIGUOUS);
    c.margin = 0.3f;
    c.confidence = 0.2f;
    assert_int_equal(esc_decide(&p, &c, 0, out), 1);
    assert_int_equal(out[0], SWITCHBOARD__V1__ESCALATION_REASON__REASON_LOW_CONFIDENCE);
    /* a business rule decided: not second-guessed on confidence */
    c.rule = (char *)"billing_keywords";
    assert_int_equal(esc_decide(&p, &c, 0, out), 0);
    c.rule = (char *)"";
    c.confidence = 0.9f;
    assert_int_equal(esc_decide(&p, &c, 1, out), 0);
    assert_int_equal(esc_decide(&p, &c, 2, out), 1);
    assert_int_equal(out[0], SWITCHBOARD__V1__ESCALATION_REASON__REASON_REPEATED_FALLBACK);
    /* asking for a human always works, whatever the confidence or the rule */
    c.intent = (char *)"human_handoff";
    c.confidence = 0.01f;
    c.rule = (char *)"builtin_human_en";
    assert_int_equal(esc_decide(&p, &c, 0, out), 1);
    assert_int_equal(out[0], SWITCHBOARD__V1__ESCALATION_REASON__REASON_EXPLICIT_REQUEST);
    c.rule = (char *)"";
    assert_int_equal(esc_decide(&p, &c, 0, out), 1);
    assert_int_equal(out[0], SWITCHBOARD__V1__ESCALATION_REASON__REASON_EXPLICIT_REQUEST);

    assert_true(esc_is_fallback_intent(""));
    assert_true(esc_is_fallback_intent("out_of_scope"));
    assert_true(esc_is_fallback_intent("fallback"));
    assert_false(esc_is_fallback_intent("greeting"));
}

static esc_state_t mk_state(esc_conv_state_t st, const char *agent)
{
    esc_state_t s;
    memset(&s, 0, sizeof(s));
    esc_set_id(s.conversation_id, CONV);
    esc_set_id(s.team, "support");
    s.state = st;
    esc_set_id(s.agent_id, agent ? agent : "");
    return s;
}

static esc_cmd_outcome_t run(esc_state_t *s, int verb, const char *agent, const char *team,
                             const char *to, const char **why)
{
    sb_agent_command_t c = SWITCHBOARD__V1__AGENT_COMMAND__INIT;
    c.verb = (Switchboard__V1__AgentVerb)verb;
    c.agent_id = (char *)agent;
    c.team = (char *)(team ? team : "");
    c.to_agent_id = (char *)(to ? to : "");
    *why = NULL;
    return esc_transition(s, &c, T0_MS, why);
}

static void test_transitions(void **state)
{
    (void)state;
    const char *why;
    enum {
        CLAIM = SWITCHBOARD__V1__AGENT_VERB__VERB_CLAIM,
        REPLY = SWITCHBOARD__V1__AGENT_VERB__VERB_REPLY,
        TRANSFER = SWITCHBOARD__V1__AGENT_VERB__VERB_TRANSFER,
        RESOLVE = SWITCHBOARD__V1__AGENT_VERB__VERB_RESOLVE,
        RELEASE = SWITCHBOARD__V1__AGENT_VERB__VERB_RELEASE
    };

    /* nothing applies to a conversation of the bot */
    int verbs[] = {CLAIM, REPLY, TRANSFER, RESOLVE, RELEASE};
    for (size_t i = 0; i < 5; i++) {
        esc_state_t s = mk_state(ESC_STATE_BOT, NULL);
        assert_int_equal(run(&s, verbs[i], "a1", "billing", NULL, &why), ESC_CMD_REJECTED);
        assert_string_equal(why, "not_escalated");
        assert_int_equal(s.state, ESC_STATE_BOT);
    }

    /* claim */
    esc_state_t s = mk_state(ESC_STATE_QUEUED, NULL);
    assert_int_equal(run(&s, CLAIM, "a1", NULL, NULL, &why), ESC_CMD_APPLIED);
    assert_int_equal(s.state, ESC_STATE_ASSIGNED);
    assert_string_equal(s.agent_id, "a1");
    assert_int_equal(s.assigned_at_ms, T0_MS);
    assert_int_equal(run(&s, CLAIM, "a1", NULL, NULL, &why), ESC_CMD_NOOP);
    assert_int_equal(run(&s, CLAIM, "a2", NULL, NULL, &why), ESC_CMD_REJECTED);
    assert_string_equal(why, "owned_by_other");
    assert_string_equal(s.agent_id, "a1");

    /* reply: the owner only */
    assert_int_equal(run(&s, REPLY, "a1", NULL, NULL, &why), ESC_CMD_APPLIED);
    assert_int_equal(run(&s, REPLY, "a2", NULL, NULL, &why), ESC_CMD_REJECTED);
    assert_string_equal(why, "not_owner");
    esc_state_t q = mk_state(ESC_STATE_QUEUED, NULL);
    assert_int_equal(run(&q, REPLY, "a1", NULL, NULL, &why), ESC_CMD_REJECTED);
    assert_string_equal(why, "not_owner");

    /* release: owner → queued */
    assert_int_equal(run(&s, RELEASE, "a2", NULL, NULL, &why), ESC_CMD_REJECTED);
    assert_int_equal(run(&s, RELEASE, "a1", NULL, NULL, &why), ESC_CMD_APPLIED);
    assert_int_equal(s.state, ESC_STATE_QUEUED);
    assert_string_equal(s.agent_id, "");
    assert_int_equal(run(&s, RELEASE, "a1", NULL, NULL, &why), ESC_CMD_REJECTED);

    /* transfer: anyone while queued, the owner when assigned; to a valid team */
    assert_int_equal(run(&s, TRANSFER, "a1", "bad team", NULL, &why), ESC_CMD_REJECTED);
    assert_string_equal(why, "bad_team");
    assert_int_equal(run(&s, TRANSFER, "a1", "support", NULL, &why), ESC_CMD_REJECTED);
    assert_string_equal(why, "same_team");
    assert_int_equal(run(&s, TRANSFER, "a1", "billing", NULL, &why), ESC_CMD_APPLIED);
    assert_string_equal(s.team, "billing");
    assert_int_equal(s.state, ESC_STATE_QUEUED);
    assert_int_equal(run(&s, CLAIM, "b1", NULL, NULL, &why), ESC_CMD_APPLIED);
    assert_int_equal(run(&s, TRANSFER, "a1", "support", NULL, &why), ESC_CMD_REJECTED);
    assert_string_equal(why, "not_owner");
    assert_int_equal(run(&s, TRANSFER, "b1", "", "b2", &why), ESC_CMD_APPLIED);
    assert_int_equal(s.state, ESC_STATE_ASSIGNED);
    assert_string_equal(s.agent_id, "b2");
    assert_string_equal(s.team, "billing");

    /* resolve: owner → bot, and the bot is told it resumes */
    assert_int_equal(run(&s, RESOLVE, "b1", NULL, NULL, &why), ESC_CMD_REJECTED);
    assert_int_equal(run(&s, RESOLVE, "b2", NULL, NULL, &why), ESC_CMD_APPLIED);
    assert_int_equal(s.state, ESC_STATE_BOT);
    assert_true(s.resume_pending);
    assert_string_equal(s.agent_id, "");

    /* an unknown verb or no agent */
    esc_state_t u = mk_state(ESC_STATE_QUEUED, NULL);
    assert_int_equal(run(&u, 42, "a1", NULL, NULL, &why), ESC_CMD_REJECTED);
    assert_string_equal(why, "bad_verb");
    assert_int_equal(run(&u, CLAIM, "", NULL, NULL, &why), ESC_CMD_REJECTED);
    assert_string_equal(why, "bad_agent");
}

static void test_masks(void **state)
{
    (void)state;
    char out[128];
    esc_mask_name(out, sizeof(out), "Ana Flores");
    assert_string_equal(out, "A** F*****");
    esc_mask_name(out, sizeof(out), "  Zoë   Ångström ");
    assert_string_equal(out, "Z** Å*******");
    esc_mask_phone(out, sizeof(out), "+1 555 123 4576");
    assert_string_equal(out, "+1 555 *** **76");
    esc_mask_phone(out, sizeof(out), "15551234576");
    assert_string_equal(out, "+1 555 *** **76");
    esc_mask_phone(out, sizeof(out), "1234");
    assert_string_equal(out, "****");
    esc_mask_email(out, sizeof(out), "ana.flores@example.com");
    assert_string_equal(out, "a***@e******.com");
    esc_mask_email(out, sizeof(out), "not an address");
    assert_string_equal(out, "");
    esc_mask_contact(out, sizeof(out), NAME, PHONE, "");
    assert_string_equal(out, "A** F*****, +1 555 *** **76");
    esc_mask_contact(out, 8, NAME, PHONE, EMAIL); /* bounded */
    assert_int_equal(strlen(out), 7);
}

/* ---- the engine ---- */

static void test_bot_turn_with_sealed_recipient(void **state)
{
    fx_t *f = *state;
    assert_int_equal(send_text(f, "m1", "hello there", "greeting", 0.9f), SB_OK);
    sb_bot_turn_t *bt = get_bot_turn(f);
    assert_non_null(bt);
    char subj[32];
    assert_string_equal(find_pub(f, bot_subject(subj, sizeof(subj)))->msg_id, "bot:m1");
    assert_true(bt->first_bot_message);
    assert_false(bt->escalated);
    assert_false(bt->resumed_after_agent);
    assert_string_equal(bt->turn_id, "m1");
    assert_string_equal(bt->conversation_id, CONV);
    assert_string_equal(bt->locale, "en");
    assert_string_equal(bt->classification->intent, "greeting");
    assert_int_equal(bt->classification->envelope->sealed_contact.len, 0);
    sb_recipient_t *r = open_recipient(f, &bt->sealed_recipient);
    assert_string_equal(r->address, SENDER);
    assert_string_equal(r->channel, "webchat");
    assert_string_equal(r->account_id, "acct-1");
    assert_string_equal(r->session_id, "sess-1");
    assert_string_equal(r->in_reply_to, "wamid.RAWPROVIDERID");
    SB_CODEC_FREE(r);
    SB_CODEC_FREE(bt);
    sb_event_t *ev = get_event(f, "message_in");
    assert_non_null(ev);
    assert_string_equal(ev->event_id, "ev:message_in:m1");
    SB_CODEC_FREE(ev);
    ev = get_event(f, "conversation_started");
    assert_non_null(ev);
    SB_CODEC_FREE(ev);
    assert_int_equal(count_pubs(f, "sb.esc."), 0);

    /* the second bot message of the conversation is not the first any more */
    clear_pubs(f);
    assert_int_equal(send_text(f, "m2", "opening hours?", "opening_hours", 0.8f), SB_OK);
    bt = get_bot_turn(f);
    assert_false(bt->first_bot_message);
    SB_CODEC_FREE(bt);
    assert_null(get_event(f, "conversation_started"));
}

static void test_duplicate_message(void **state)
{
    fx_t *f = *state;
    size_t len = 0;
    cls_opts_t o = {.msg_id = "dup1", .text = "hi", .intent = "greeting", .confidence = 0.9f};
    uint8_t *b = make_cls(f, &o, &len);
    assert_int_equal(esc_engine_on_classification(f->e, b, len, T0_MS), SB_OK);
    size_t n = f->npubs;
    assert_true(n > 0);
    assert_int_equal(esc_engine_on_classification(f->e, b, len, T0_MS + 5), SB_E_DUPLICATE);
    assert_int_equal(f->npubs, n);
    free(b);
}

static void test_publish_failure_commits_nothing(void **state)
{
    fx_t *f = *state;
    size_t len = 0;
    cls_opts_t o = {.msg_id = "pf1", .text = "hi", .intent = "greeting", .confidence = 0.9f};
    uint8_t *b = make_cls(f, &o, &len);
    f->fail_after = 1; /* the first output goes out, the second fails */
    assert_int_equal(esc_engine_on_classification(f->e, b, len, T0_MS), SB_E_UNAVAILABLE);
    assert_int_equal(f->npubs, 1);
    char first_id[256];
    snprintf(first_id, sizeof(first_id), "%s", f->pubs[0].msg_id);
    /* redelivery: not a duplicate (nothing was committed), same msg_ids again */
    f->fail_after = -1;
    clear_pubs(f);
    assert_int_equal(esc_engine_on_classification(f->e, b, len, T0_MS), SB_OK);
    assert_string_equal(f->pubs[0].msg_id, first_id);
    sb_bot_turn_t *bt = get_bot_turn(f);
    assert_true(bt->first_bot_message);
    SB_CODEC_FREE(bt);
    assert_int_equal(esc_engine_on_classification(f->e, b, len, T0_MS), SB_E_DUPLICATE);
    free(b);
}

static void test_invalid_inputs(void **state)
{
    fx_t *f = *state;
    assert_int_equal(esc_engine_on_classification(f->e, "\xff\xff\xff", 3, T0_MS), SB_E_INVALID);
    cls_opts_t o = {.msg_id = "bad1", .text = "hi", .intent = "greeting", .bad_seal = true};
    assert_int_equal(send_cls(f, &o), SB_E_INVALID);
    cls_opts_t n = {.msg_id = "bad2", .text = "hi", .intent = "greeting", .no_contact = true};
    assert_int_equal(send_cls(f, &n), SB_E_INVALID);
    cls_opts_t m = {.msg_id = "has space", .text = "hi", .intent = "greeting"};
    assert_int_equal(send_cls(f, &m), SB_E_INVALID);
    assert_int_equal(f->npubs, 0);
    /* a command without an agent, with an unknown verb, or undecodable */
    assert_int_equal(send_cmd(f, "c1", SWITCHBOARD__V1__AGENT_VERB__VERB_CLAIM, "", NULL, NULL),
                     SB_E_INVALID);
    assert_int_equal(send_cmd(f, "c2", 9, "a1", NULL, NULL), SB_E_INVALID);
    assert_int_equal(esc_engine_on_command(f->e, "\xff\xff", 2, T0_MS), SB_E_INVALID);
    assert_int_equal(f->npubs, 0);
}

static void test_handoff_escalates_with_transcript(void **state)
{
    fx_t *f = *state;
    assert_int_equal(send_text(f, "m1", "where is my order [ORDER_1]", "order_status", 0.9f),
                     SB_OK);
    clear_pubs(f);
    assert_int_equal(send_text(f, "m2", "I want to talk to a human", "human_handoff", 1.0f), SB_OK);
    sb_escalation_t *e = get_escalation(f, "support");
    assert_non_null(e);
    char subj[128];
    snprintf(subj, sizeof(subj), "sb.esc.support.%s", CONV);
    assert_string_equal(find_pub(f, subj)->msg_id, "esc:m2");
    assert_string_equal(e->state, "queued");
    assert_string_equal(e->team, "support");
    assert_int_equal(e->n_reasons, 1);
    assert_int_equal(e->reasons[0], SWITCHBOARD__V1__ESCALATION_REASON__REASON_EXPLICIT_REQUEST);
    assert_int_equal(e->n_transcript, 2);
    assert_string_equal(e->transcript[0]->text, "where is my order [ORDER_1]");
    assert_string_equal(e->transcript[1]->text, "I want to talk to a human");
    assert_string_equal(e->masked_contact, "A** F*****, +1 555 *** **76, a***@e******.com");
    assert_string_equal(e->language, "en");
    assert_string_equal(e->intent, "human_handoff");
    assert_string_equal(e->escalation_id, "m2");
    SB_CODEC_FREE(e);
    sb_event_t *ev = get_event(f, "escalated");
    assert_non_null(ev);
    assert_int_equal(ev->n_reasons, 1);
    assert_string_equal(ev->team, "support");
    SB_CODEC_FREE(ev);
    /* the bot acknowledges the handoff */
    sb_bot_turn_t *bt = get_bot_turn(f);
    assert_non_null(bt);
    assert_true(bt->escalated);
    SB_CODEC_FREE(bt);
    /* nothing on the bus carries the contact in the clear */
    for (size_t i = 0; i < f->npubs; i++) {
        assert_null(memmem(f->pubs[i].data, f->pubs[i].len, "Flores", 6));
        assert_null(memmem(f->pubs[i].data, f->pubs[i].len, SENDER, strlen(SENDER)));
        assert_null(memmem(f->pubs[i].data, f->pubs[i].len, EMAIL, strlen(EMAIL)));
    }
}

static void test_low_confidence_and_fallbacks_escalate(void **state)
{
    fx_t *f = *state;
    assert_int_equal(send_text(f, "m1", "blorp", "greeting", 0.1f), SB_OK);
    sb_escalation_t *e = get_escalation(f, "support");
    assert_non_null(e);
    assert_int_equal(e->reasons[0], SWITCHBOARD__V1__ESCALATION_REASON__REASON_LOW_CONFIDENCE);
    SB_CODEC_FREE(e);

    /* a fresh conversation store: two fallbacks in a row */
    teardown(state);
    setup(state);
    f = *state;
    assert_int_equal(send_text(f, "f1", "qwe", "out_of_scope", 0.9f), SB_OK);
    sb_bot_turn_t *bt = get_bot_turn(f);
    assert_int_equal(bt->fallback_count, 1);
    SB_CODEC_FREE(bt);
    assert_int_equal(count_pubs(f, "sb.esc."), 0);
    clear_pubs(f);
    assert_int_equal(send_text(f, "f2", "rty", "out_of_scope", 0.9f), SB_OK);
    e = get_escalation(f, "support");
    assert_non_null(e);
    assert_int_equal(e->reasons[0], SWITCHBOARD__V1__ESCALATION_REASON__REASON_REPEATED_FALLBACK);
    SB_CODEC_FREE(e);
}

static void test_agent_flow(void **state)
{
    fx_t *f = *state;
    enum {
        CLAIM = SWITCHBOARD__V1__AGENT_VERB__VERB_CLAIM,
        REPLY = SWITCHBOARD__V1__AGENT_VERB__VERB_REPLY,
        TRANSFER = SWITCHBOARD__V1__AGENT_VERB__VERB_TRANSFER,
        RESOLVE = SWITCHBOARD__V1__AGENT_VERB__VERB_RESOLVE,
        RELEASE = SWITCHBOARD__V1__AGENT_VERB__VERB_RELEASE
    };
    /* commands on an unknown conversation are rejected, not dropped */
    assert_int_equal(send_cmd(f, "c0", CLAIM, "alice", NULL, NULL), SB_OK);
    sb_event_t *ev = get_event(f, "command_rejected");
    assert_non_null(ev);
    assert_string_equal(ev->detail, "unknown_conversation");
    SB_CODEC_FREE(ev);
    clear_pubs(f);

    assert_int_equal(send_text(f, "m1", "hi", "greeting", 0.9f), SB_OK);
    assert_int_equal(send_text(f, "m2", "human please", "human_handoff", 1.0f), SB_OK);
    clear_pubs(f);

    /* claim */
    assert_int_equal(send_cmd(f, "c1", CLAIM, "alice", NULL, NULL), SB_OK);
    sb_escalation_t *e = get_escalation(f, "support");
    assert_string_equal(e->state, "assigned");
    assert_string_equal(e->agent_id, "alice");
    assert_int_equal(e->n_transcript, 2);
    SB_CODEC_FREE(e);
    ev = get_event(f, "claimed");
    assert_non_null(ev);
    assert_string_equal(ev->agent_id, "alice");
    SB_CODEC_FREE(ev);
    clear_pubs(f);
    /* the same command again is a duplicate; another agent's claim is rejected */
    assert_int_equal(send_cmd(f, "c1", CLAIM, "alice", NULL, NULL), SB_E_DUPLICATE);
    assert_int_equal(f->npubs, 0);
    assert_int_equal(send_cmd(f, "c2", CLAIM, "bob", NULL, NULL), SB_OK);
    ev = get_event(f, "command_rejected");
    assert_string_equal(ev->detail, "owned_by_other");
    SB_CODEC_FREE(ev);
    assert_int_equal(count_pubs(f, "sb.esc."), 0);
    clear_pubs(f);
    assert_int_equal(send_cmd(f, "c3", REPLY, "bob", "I am bob", NULL), SB_OK);
    assert_int_equal(count_pubs(f, "sb.out."), 0);
    ev = get_event(f, "command_rejected");
    assert_string_equal(ev->detail, "not_owner");
    SB_CODEC_FREE(ev);
    clear_pubs(f);

    /* the owner's reply becomes an Outbound to the customer's address */
    assert_int_equal(send_cmd(f, "c4", REPLY, "alice", "Hello, Alice here", NULL), SB_OK);
    const pub_t *p = find_pub(f, "sb.out.webchat");
    assert_non_null(p);
    assert_string_equal(p->msg_id, "agent:c4");
    sb_outbound_t *ob = NULL;
    assert_int_equal(SB_CODEC_UNPACK(switchboard__v1__outbound__descriptor, p->data, p->len, &ob),
                     SB_OK);
    assert_int_equal(ob->author, SWITCHBOARD__V1__AUTHOR__AUTHOR_AGENT);
    assert_string_equal(ob->agent_id, "alice");
    assert_string_equal(ob->text, "Hello, Alice here");
    assert_string_equal(ob->message_id, "agent:c4");
    sb_recipient_t *r = open_recipient(f, &ob->sealed_recipient);
    assert_string_equal(r->address, SENDER);
    assert_string_equal(r->session_id, "sess-1");
    SB_CODEC_FREE(r);
    SB_CODEC_FREE(ob);
    ev = get_event(f, "agent_reply");
    assert_non_null(ev);
    assert_string_equal(ev->detail, "first_response");
    assert_true(ev->value_ms > 0);
    SB_CODEC_FREE(ev);
    clear_pubs(f);
    assert_int_equal(send_cmd(f, "c4b", REPLY, "alice", "second", NULL), SB_OK);
    ev = get_event(f, "agent_reply");
    assert_int_equal(ev->value_ms, 0);
    SB_CODEC_FREE(ev);
    clear_pubs(f);

    /* the customer writes while assigned: no BotTurn, the console gets the line */
    assert_int_equal(send_text(f, "m3", "thanks, and my invoice?", "billing", 0.9f), SB_OK);
    char subj[32];
    assert_int_equal(count_pubs(f, bot_subject(subj, sizeof(subj))), 0);
    e = get_escalation(f, "support");
    assert_string_equal(e->state, "customer_message");
    assert_int_equal(e->n_transcript, 1);
    assert_string_equal(e->transcript[0]->text, "thanks, and my invoice?");
    assert_string_equal(e->agent_id, "alice");
    SB_CODEC_FREE(e);
    clear_pubs(f);

    /* release → queued, transfer → billing, claim there */
    assert_int_equal(send_cmd(f, "c5", RELEASE, "alice", NULL, NULL), SB_OK);
    e = get_escalation(f, "support");
    assert_string_equal(e->state, "queued");
    /* the transcript has the agent's lines too, in order */
    assert_int_equal(e->n_transcript, 5);
    assert_int_equal(e->transcript[2]->author, SWITCHBOARD__V1__AUTHOR__AUTHOR_AGENT);
    assert_string_equal(e->transcript[2]->text, "Hello, Alice here");
    SB_CODEC_FREE(e);
    clear_pubs(f);
    assert_int_equal(send_cmd(f, "c6", TRANSFER, "alice", NULL, "billing"), SB_OK);
    e = get_escalation(f, "billing");
    assert_non_null(e);
    assert_string_equal(e->state, "queued");
    assert_string_equal(e->team, "billing");
    SB_CODEC_FREE(e);
    e = get_escalation(f, "support");
    assert_non_null(e);
    assert_string_equal(e->state, "transferred");
    SB_CODEC_FREE(e);
    ev = get_event(f, "transferred");
    assert_string_equal(ev->team, "billing");
    SB_CODEC_FREE(ev);
    clear_pubs(f);
    assert_int_equal(send_cmd(f, "c7", CLAIM, "bob", NULL, NULL), SB_OK);
    e = get_escalation(f, "billing");
    assert_string_equal(e->state, "assigned");
    SB_CODEC_FREE(e);
    clear_pubs(f);

    /* resolve: consoles update, the bot answers the next message and knows it resumes */
    assert_int_equal(send_cmd(f, "c8", RESOLVE, "alice", NULL, NULL), SB_OK);
    ev = get_event(f, "command_rejected");
    assert_string_equal(ev->detail, "not_owner");
    SB_CODEC_FREE(ev);
    clear_pubs(f);
    assert_int_equal(send_cmd(f, "c9", RESOLVE, "bob", NULL, NULL), SB_OK);
    e = get_escalation(f, "billing");
    assert_string_equal(e->state, "resolved");
    SB_CODEC_FREE(e);
    ev = get_event(f, "resolved");
    assert_non_null(ev);
    SB_CODEC_FREE(ev);
    clear_pubs(f);
    assert_int_equal(send_text(f, "m4", "one more question", "opening_hours", 0.9f), SB_OK);
    sb_bot_turn_t *bt = get_bot_turn(f);
    assert_non_null(bt);
    assert_true(bt->resumed_after_agent);
    assert_false(bt->first_bot_message);
    assert_false(bt->escalated);
    SB_CODEC_FREE(bt);
    clear_pubs(f);
    assert_int_equal(send_text(f, "m5", "and another", "opening_hours", 0.9f), SB_OK);
    bt = get_bot_turn(f);
    assert_false(bt->resumed_after_agent);
    SB_CODEC_FREE(bt);
    /* commands on a conversation of the bot are rejected */
    clear_pubs(f);
    assert_int_equal(send_cmd(f, "c10", REPLY, "bob", "late", NULL), SB_OK);
    ev = get_event(f, "command_rejected");
    assert_string_equal(ev->detail, "not_escalated");
    SB_CODEC_FREE(ev);
}

static void test_status_and_session(void **state)
{
    fx_t *f = *state;
    cls_opts_t st = {
        .msg_id = "s1", .kind = SWITCHBOARD__V1__MESSAGE_KIND__KIND_STATUS, .no_contact = true};
    assert_int_equal(send_cls(f, &st), SB_OK);
    assert_int_equal(f->npubs, 1);
    sb_event_t *ev = get_event(f, "delivery");
    assert_non_null(ev);
    assert_string_equal(ev->detail, "delivered");
    SB_CODEC_FREE(ev);
    assert_int_equal(send_cls(f, &st), SB_E_DUPLICATE);
    clear_pubs(f);

    cls_opts_t se = {.msg_id = "s2", .kind = SWITCHBOARD__V1__MESSAGE_KIND__KIND_SESSION};
    assert_int_equal(send_cls(f, &se), SB_OK);
    assert_int_equal(f->npubs, 1);
    ev = get_event(f, "consent");
    assert_non_null(ev);
    assert_string_equal(ev->detail, "granted");
    SB_CODEC_FREE(ev);
    clear_pubs(f);

    /* neither is a turn: the first real message is still the first bot message */
    assert_int_equal(send_text(f, "m1", "hi", "greeting", 0.9f), SB_OK);
    sb_bot_turn_t *bt = get_bot_turn(f);
    assert_true(bt->first_bot_message);
    SB_CODEC_FREE(bt);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decide),
        cmocka_unit_test(test_transitions),
        cmocka_unit_test(test_masks),
        cmocka_unit_test_setup_teardown(test_bot_turn_with_sealed_recipient, setup, teardown),
        cmocka_unit_test_setup_teardown(test_duplicate_message, setup, teardown),
        cmocka_unit_test_setup_teardown(test_publish_failure_commits_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_invalid_inputs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_handoff_escalates_with_transcript, setup, teardown),
        cmocka_unit_test_setup_teardown(test_low_confidence_and_fallbacks_escalate, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_agent_flow, setup, teardown),
        cmocka_unit_test_setup_teardown(test_status_and_session, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
