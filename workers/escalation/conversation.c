/* The escalation engine (see conversation.h for the flow). A message is handled in three steps:
 *   1. compute, inside a read transaction of the vault: dedup check, state, contact key,
 *      transcript; the outputs (packed protobufs with subject and msg_id) and the writes (an
 *      esc_batch_t) are built, nothing is changed yet;
 *   2. publish the outputs, in order, each with its deterministic msg_id;
 *   3. commit the writes in one transaction.
 * Only one thread writes the vault, so the state read in 1 is still current in 3.
 * Logs carry the conversation id (a keyed hash, truncated), sizes and outcomes: never text,
 * names, phone numbers or provider ids. */
#include "conversation.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sb/bus.h"
#include "sb/ids.h"
#include "sb/log.h"
#include "sb/util.h"

#define MOD "escalation"
#define MAX_OUTPUTS 12
#define SEALED_CONTACT_MAX (64u * 1024u)
#define COMMAND_ID_MAX 96 /* leaves room for "agent:" in a turn's message id */
#define NOTICE_MAX 64
#define MASK_MAX 256

struct esc_engine {
    esc_vault_t *vault;
    esc_policy_t policy;
    uint8_t contact_pk[SB_SEAL_KEY_BYTES];
    uint8_t contact_sk[SB_SEAL_KEY_BYTES];
    uint8_t recipient_pk[SB_SEAL_KEY_BYTES];
    esc_publish_fn publish;
    void *publish_ctx;
};

/* ---- metrics ---- */

static void count_message(const char *outcome)
{
    char labels[96];
    snprintf(labels, sizeof(labels), "outcome=\"%s\"", outcome);
    sb_metric_inc(sb_metrics_counter("sb_escalation_messages_total",
                                     "Classifications handled by outcome", labels));
}

static const char *reason_name(int r)
{
    static const char *const names[] = {
        "unspecified",       "explicit_request",   "low_confidence",  "ambiguous",
        "repeated_fallback", "negative_sentiment", "sentiment_trend", "policy_intent",
        "keyword",           "off_hours",          "no_agent",        "sla_breach"};
    if (r < 0 || (size_t)r >= sizeof(names) / sizeof(names[0])) return "unspecified";
    return names[r];
}

static void count_reason(int r)
{
    char labels[96];
    snprintf(labels, sizeof(labels), "reason=\"%s\"", reason_name(r));
    sb_metric_inc(sb_metrics_counter("sb_escalation_escalations_total",
                                     "Escalations to humans by reason", labels));
}

static const char *verb_name(int v)
{
    switch (v) {
    case SWITCHBOARD__V1__AGENT_VERB__VERB_CLAIM:
        return "claim";
    case SWITCHBOARD__V1__AGENT_VERB__VERB_REPLY:
        return "reply";
    case SWITCHBOARD__V1__AGENT_VERB__VERB_TRANSFER:
        return "transfer";
    case SWITCHBOARD__V1__AGENT_VERB__VERB_RESOLVE:
        return "resolve";
    case SWITCHBOARD__V1__AGENT_VERB__VERB_RELEASE:
        return "release";
    default:
        return "unknown";
    }
}

static void count_command(int verb, const char *outcome)
{
    char labels[128];
    snprintf(labels, sizeof(labels), "verb=\"%s\",outcome=\"%s\"", verb_name(verb), outcome);
    sb_metric_inc(sb_metrics_counter("sb_escalation_commands_total",
                                     "Agent commands by verb and outcome", labels));
}

/* ---- engine ---- */

sb_result_t esc_engine_create(esc_engine_t **out, const esc_engine_config_t *cfg)
{
    if (!out || !cfg || !cfg->vault || !cfg->contact_pk || !cfg->contact_sk || !cfg->recipient_pk ||
        !cfg->publish || cfg->policy.partitions == 0 || !sb_bus_is_token(cfg->policy.default_team))
        return SB_E_INVALID;
    esc_engine_t *e = sb_xcalloc(1, sizeof(*e));
    e->vault = cfg->vault;
    e->policy = cfg->policy;
    memcpy(e->contact_pk, cfg->contact_pk, SB_SEAL_KEY_BYTES);
    memcpy(e->contact_sk, cfg->contact_sk, SB_SEAL_KEY_BYTES);
    memcpy(e->recipient_pk, cfg->recipient_pk, SB_SEAL_KEY_BYTES);
    e->publish = cfg->publish;
    e->publish_ctx = cfg->publish_ctx;
    *out = e;
    return SB_OK;
}

void esc_engine_destroy(esc_engine_t *e)
{
    if (!e) return;
    sb_seal_wipe(e->contact_sk, sizeof(e->contact_sk));
    free(e);
}

/* ---- decision rules ---- */

bool esc_is_fallback_intent(const char *intent)
{
    static const char *const fallbacks[] = {"", "fallback", "unknown", "none", "out_of_scope"};
    if (!intent) return true;
    for (size_t i = 0; i < sizeof(fallbacks) / sizeof(fallbacks[0]); i++)
        if (strcmp(intent, fallbacks[i]) == 0) return true;
    return false;
}

size_t esc_decide(const esc_policy_t *p, const sb_classification_t *c, uint32_t fallbacks,
                  int out[ESC_MAX_REASONS])
{
    size_t n = 0;
    const char *intent = c->intent ? c->intent : "";
    if (strcmp(intent, "human_handoff") == 0) {
        out[n++] = SWITCHBOARD__V1__ESCALATION_REASON__REASON_EXPLICIT_REQUEST;
        return n;
    }
    bool by_rule = c->rule && c->rule[0];
    if (!by_rule) {
        if (c->confidence < p->confidence_threshold)
            out[n++] = SWITCHBOARD__V1__ESCALATION_REASON__REASON_LOW_CONFIDENCE;
        /* a margin means something only when there was a runner-up */
        else if (c->n_top >= 2 && c->margin < p->ambiguity_margin)
            out[n++] = SWITCHBOARD__V1__ESCALATION_REASON__REASON_AMBIGUOUS;
    }
    if (p->max_fallbacks > 0 && fallbacks >= p->max_fallbacks)
        out[n++] = SWITCHBOARD__V1__ESCALATION_REASON__REASON_REPEATED_FALLBACK;
    return n;
}

static bool is_owner(const esc_state_t *s, const char *agent)
{
    return s->state == ESC_STATE_ASSIGNED && strcmp(s->agent_id, agent) == 0;
}

esc_cmd_outcome_t esc_transition(esc_state_t *s, const sb_agent_command_t *cmd, int64_t now_ms,
                                 const char **why)
{
    const char *agent = cmd->agent_id ? cmd->agent_id : "";
    const char *reason = NULL;
    esc_cmd_outcome_t o = ESC_CMD_REJECTED;
    if (strlen(agent) == 0 || strlen(agent) > ESC_ID_MAX) {
        reason = "bad_agent";
        goto out;
    }
    if (s->state == ESC_STATE_BOT) {
        reason = "not_escalated";
        goto out;
    }
    switch (cmd->verb) {
    case SWITCHBOARD__V1__AGENT_VERB__VERB_CLAIM:
        if (s->state == ESC_STATE_ASSIGNED) {
            if (strcmp(s->agent_id, agent) == 0)
                o = ESC_CMD_NOOP;
            else
                reason = "owned_by_other";
            break;
        }
        s->state = ESC_STATE_ASSIGNED;
        esc_set_id(s->agent_id, agent);
        s->assigned_at_ms = now_ms;
        o = ESC_CMD_APPLIED;
        break;
    case SWITCHBOARD__V1__AGENT_VERB__VERB_REPLY:
        if (!is_owner(s, agent)) {
            reason = "not_owner";
            break;
        }
        o = ESC_CMD_APPLIED;
        break;
    case SWITCHBOARD__V1__AGENT_VERB__VERB_RESOLVE:
        if (!is_owner(s, agent)) {
            reason = "not_owner";
            break;
        }
        s->state = ESC_STATE_BOT;
        s->agent_id[0] = '\0';
        s->resume_pending = true;
        s->consecutive_fallbacks = 0;
        o = ESC_CMD_APPLIED;
        break;
    case SWITCHBOARD__V1__AGENT_VERB__VERB_RELEASE:
        if (!is_owner(s, agent)) {
            reason = "not_owner";
            break;
        }
        s->state = ESC_STATE_QUEUED;
        s->agent_id[0] = '\0';
        s->assigned_at_ms = 0;
        o = ESC_CMD_APPLIED;
        break;
    case SWITCHBOARD__V1__AGENT_VERB__VERB_TRANSFER: {
        if (!(s->state == ESC_STATE_QUEUED || is_owner(s, agent))) {
            reason = "not_owner";
            break;
        }
        const char *team = cmd->team && cmd->team[0] ? cmd->team : s->team;
        const char *to = cmd->to_agent_id ? cmd->to_agent_id : "";
        if (!sb_bus_is_token(team) || strlen(team) > ESC_ID_MAX) {
            reason = "bad_team";
            break;
        }
        if (strlen(to) > ESC_ID_MAX) {
            reason = "bad_agent";
            break;
        }
        if (strcmp(team, s->team) == 0 && to[0] == '\0') {
            reason = "same_team";
            break;
        }
        char newteam[ESC_ID_MAX + 1];
        esc_set_id(newteam, team);
        memcpy(s->team, newteam, sizeof(newteam));
        if (to[0]) {
            s->state = ESC_STATE_ASSIGNED;
            esc_set_id(s->agent_id, to);
            s->assigned_at_ms = now_ms;
        } else {
            s->state = ESC_STATE_QUEUED;
            s->agent_id[0] = '\0';
            s->assigned_at_ms = 0;
        }
        o = ESC_CMD_APPLIED;
        break;
    }
    default:
        reason = "bad_verb";
        break;
    }
out:
    if (o == ESC_CMD_REJECTED && why) *why = reason ? reason : "rejected";
    return o;
}

/* ---- masks ---- */

static void append(char *out, size_t n, size_t *len, const char *s, size_t slen)
{
    if (*len + slen + 1 > n) slen = n > *len + 1 ? n - *len - 1 : 0;
    memcpy(out + *len, s, slen);
    *len += slen;
    out[*len] = '\0';
}

void esc_mask_name(char *out, size_t n, const char *name)
{
    size_t len = 0;
    if (n == 0) return;
    out[0] = '\0';
    bool word_start = true, first_word = true;
    for (const unsigned char *p = (const unsigned char *)(name ? name : ""); *p; p++) {
        if (isspace(*p)) {
            word_start = true;
            continue;
        }
        bool cp_start = (*p & 0xC0) != 0x80;
        if (word_start) {
            if (!first_word) append(out, n, &len, " ", 1);
            first_word = false;
            word_start = false;
            /* keep the first code point whole */
            size_t cl = 1;
            while (p[cl] && (p[cl] & 0xC0) == 0x80)
                cl++;
            append(out, n, &len, (const char *)p, cl);
            p += cl - 1;
            continue;
        }
        if (cp_start) append(out, n, &len, "*", 1);
    }
}

void esc_mask_phone(char *out, size_t n, const char *phone)
{
    if (n == 0) return;
    out[0] = '\0';
    char digits[64];
    size_t nd = 0;
    bool plus = false;
    for (const char *p = phone ? phone : ""; *p; p++) {
        if (*p == '+' && nd == 0) plus = true;
        if (isdigit((unsigned char)*p) && nd < sizeof(digits)) digits[nd++] = *p;
    }
    if (nd == 0) return;
    size_t keep_head = nd >= 10 ? 4 : nd >= 6 ? 2 : 0;
    size_t keep_tail = nd >= 6 ? 2 : 0;
    for (size_t i = keep_head; i + keep_tail < nd; i++)
        digits[i] = '*';
    /* groups from the right: 4, then 3s; the rest first ("1 555 *** **76") */
    size_t bounds[32], nb = 0, end = nd;
    if (end > 4) {
        bounds[nb++] = end - 4;
        end -= 4;
        while (end > 3 && nb < 31) {
            bounds[nb++] = end - 3;
            end -= 3;
        }
    }
    size_t len = 0;
    if (plus || nd >= 11) append(out, n, &len, "+", 1);
    for (size_t i = 0; i < nd; i++) {
        for (size_t b = 0; b < nb; b++)
            if (bounds[b] == i && i > 0) append(out, n, &len, " ", 1);
        append(out, n, &len, &digits[i], 1);
    }
}

void esc_mask_email(char *out, size_t n, const char *email)
{
    if (n == 0) return;
    out[0] = '\0';
    const char *e = email ? email : "";
    const char *at = strrchr(e, '@');
    if (!at || at == e) return;
    size_t len = 0;
    append(out, n, &len, e, 1);
    append(out, n, &len, "***@", 4);
    const char *dom = at + 1;
    const char *dot = strrchr(dom, '.');
    size_t dlen = dot ? (size_t)(dot - dom) : strlen(dom);
    if (dlen > 0) {
        append(out, n, &len, dom, 1);
        for (size_t i = 1; i < dlen; i++)
            append(out, n, &len, "*", 1);
    }
    if (dot) append(out, n, &len, dot, strlen(dot));
}

void esc_mask_contact(char *out, size_t n, const char *name, const char *phone, const char *email)
{
    if (n == 0) return;
    out[0] = '\0';
    char part[MASK_MAX];
    size_t len = 0;
    void (*fns[3])(char *, size_t, const char *) = {esc_mask_name, esc_mask_phone, esc_mask_email};
    const char *in[3] = {name, phone, email};
    for (int i = 0; i < 3; i++) {
        fns[i](part, sizeof(part), in[i]);
        if (!part[0]) continue;
        if (len) append(out, n, &len, ", ", 2);
        append(out, n, &len, part, strlen(part));
    }
}

/* ---- outputs ---- */

typedef struct output {
    char subject[256];
    char msg_id[256];
    uint8_t *data;
    size_t len;
} output_t;

typedef struct outputs {
    output_t o[MAX_OUTPUTS];
    size_t n;
} outputs_t;

static void outputs_free(outputs_t *os)
{
    for (size_t i = 0; i < os->n; i++)
        free(os->o[i].data);
    os->n = 0;
}

static sb_result_t add_output(outputs_t *os, const char *subject, const char *msg_id,
                              const ProtobufCMessage *msg)
{
    SB_REQUIRE(os->n < MAX_OUTPUTS);
    output_t *o = &os->o[os->n];
    if (strlen(subject) >= sizeof(o->subject) || strlen(msg_id) >= sizeof(o->msg_id))
        return SB_E_TOO_LARGE;
    sb_result_t r = sb_codec_pack(msg, &o->data, &o->len);
    if (r != SB_OK) return r;
    strcpy(o->subject, subject);
    strcpy(o->msg_id, msg_id);
    os->n++;
    return SB_OK;
}

static const char *event_kind(Switchboard__V1__EventType t)
{
    static const char *const kinds[] = {
        "unspecified",      "message_in",          "bot_reply",   "escalated",
        "claimed",          "agent_reply",         "transferred", "resolved",
        "released",         "handed_back",         "fallback",    "delivery",
        "delivery_failed",  "quarantined",         "consent",     "csat",
        "command_rejected", "conversation_started"};
    if ((size_t)t >= sizeof(kinds) / sizeof(kinds[0])) return "unspecified";
    return kinds[t];
}

/* Publishes ev (type set here) on sb.ev.<kind> with msg_id/event_id "ev:<kind>:<idbase>". */
static sb_result_t add_event(outputs_t *os, sb_event_t *ev, Switchboard__V1__EventType type,
                             const char *idbase)
{
    char id[256], subject[128];
    int w = snprintf(id, sizeof(id), "ev:%s:%s", event_kind(type), idbase);
    if (w < 0 || (size_t)w >= sizeof(id)) return SB_E_TOO_LARGE;
    sb_result_t r = sb_bus_subject(subject, sizeof(subject), "sb.ev.%s", event_kind(type));
    if (r != SB_OK) return r;
    ev->type = type;
    ev->event_id = id;
    r = add_output(os, subject, id, (const ProtobufCMessage *)ev);
    ev->event_id = (char *)protobuf_c_empty_string;
    return r;
}

static void event_for(sb_event_t *ev, const esc_state_t *s, int64_t now_ms)
{
    switchboard__v1__event__init(ev);
    ev->conversation_id = (char *)s->conversation_id;
    ev->channel = (char *)s->channel;
    ev->at_ms = now_ms;
    ev->team = (char *)s->team;
    ev->agent_id = (char *)s->agent_id;
    ev->partition = s->partition;
}

static const char *state_name(esc_conv_state_t s)
{
    return s == ESC_STATE_QUEUED ? "queued" : s == ESC_STATE_ASSIGNED ? "assigned" : "bot";
}

/* An Escalation for consoles on sb.esc.<team>.<conversation>. */
typedef struct esc_view {
    const esc_state_t *s;
    const char *team;  /* subject team (NULL: s->team) */
    const char *state; /* queued, assigned, customer_message, resolved, transferred */
    const esc_turn_t *turns;
    size_t nturns;
    const char *masked;
    const char *intent;
    float confidence;
    const char *msg_id;
    int64_t now_ms;
} esc_view_t;

static sb_result_t add_escalation(outputs_t *os, const esc_view_t *v)
{
    const esc_state_t *s = v->s;
    const char *team = v->team ? v->team : s->team;
    char subject[320];
    sb_result_t r =
        sb_bus_subject(subject, sizeof(subject), "sb.esc.%s.%s", team, s->conversation_id);
    if (r != SB_OK) return r;
    sb_escalation_t m = SWITCHBOARD__V1__ESCALATION__INIT;
    Switchboard__V1__EscalationReason reasons[ESC_MAX_REASONS];
    Switchboard__V1__TranscriptLine *lines = sb_xcalloc(v->nturns ? v->nturns : 1, sizeof(*lines));
    Switchboard__V1__TranscriptLine **lp = sb_xcalloc(v->nturns ? v->nturns : 1, sizeof(*lp));
    for (size_t i = 0; i < v->nturns; i++) {
        switchboard__v1__transcript_line__init(&lines[i]);
        lines[i].at_ms = v->turns[i].at_ms;
        lines[i].author = (Switchboard__V1__Author)v->turns[i].author;
        lines[i].text = v->turns[i].text ? v->turns[i].text : (char *)"";
        lines[i].intent = v->turns[i].intent ? v->turns[i].intent : (char *)"";
        lines[i].confidence = v->turns[i].confidence;
        lp[i] = &lines[i];
    }
    for (size_t i = 0; i < s->nreasons; i++)
        reasons[i] = (Switchboard__V1__EscalationReason)s->reasons[i];
    m.escalation_id = (char *)s->escalation_id;
    m.conversation_id = (char *)s->conversation_id;
    m.partition = s->partition;
    m.channel = (char *)s->channel;
    m.team = (char *)team;
    m.n_reasons = s->nreasons;
    m.reasons = reasons;
    m.n_transcript = v->nturns;
    m.transcript = lp;
    m.masked_contact = (char *)(v->masked ? v->masked : "");
    m.language = (char *)s->language;
    m.intent = (char *)(v->intent ? v->intent : s->last_intent);
    m.confidence = v->intent ? v->confidence : s->last_confidence;
    m.created_at_ms = v->now_ms;
    m.state = (char *)v->state;
    m.agent_id = (char *)s->agent_id;
    r = add_output(os, subject, v->msg_id, (const ProtobufCMessage *)&m);
    free(lp);
    free(lines);
    return r;
}

/* ---- sealing ---- */

static sb_result_t seal_recipient(const esc_engine_t *e, const sb_recipient_t *rcp, uint8_t **out,
                                  size_t *out_len)
{
    uint8_t *plain = NULL;
    size_t plen = 0;
    sb_result_t r = SB_CODEC_PACK(rcp, &plain, &plen);
    if (r != SB_OK) return r;
    uint8_t *sealed = sb_xmalloc(plen + SB_SEAL_BOX_OVERHEAD);
    r = sb_seal_box(sealed, plain, plen, e->recipient_pk);
    sb_seal_wipe(plain, plen);
    free(plain);
    if (r != SB_OK) {
        free(sealed);
        return r;
    }
    *out = sealed;
    *out_len = plen + SB_SEAL_BOX_OVERHEAD;
    return SB_OK;
}

static sb_result_t open_contact(const esc_engine_t *e, const ProtobufCBinaryData *sealed,
                                sb_contact_t **out)
{
    if (sealed->len <= SB_SEAL_BOX_OVERHEAD || sealed->len > SEALED_CONTACT_MAX)
        return SB_E_INVALID;
    size_t n = sealed->len - SB_SEAL_BOX_OVERHEAD;
    uint8_t *plain = sb_xmalloc(n);
    sb_result_t r =
        sb_seal_box_open(plain, sealed->data, sealed->len, e->contact_pk, e->contact_sk);
    if (r == SB_OK) r = SB_CODEC_UNPACK(switchboard__v1__contact__descriptor, plain, n, out);
    sb_seal_wipe(plain, n);
    free(plain);
    return r == SB_OK ? SB_OK : SB_E_INVALID;
}

/* ---- validation ---- */

/* An id from the bus: 1..max printable ASCII characters without spaces. */
static bool is_id(const char *s, size_t max)
{
    if (!s || !s[0]) return false;
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++, n++)
        if (*p <= ' ' || *p >= 0x7f || n >= max) return false;
    return true;
}

static bool is_conversation_id(const char *s)
{
    return s && strlen(s) <= ESC_ID_MAX && sb_bus_is_token(s) && is_id(s, ESC_ID_MAX);
}

static char *short_id(char out[13], const char *id)
{
    snprintf(out, 13, "%s", id ? id : "");
    return out;
}

/* ---- classifications ---- */

typedef struct cls_job {
    esc_engine_t *e;
    const sb_classification_t *c;
    const sb_envelope_t *env;
    const sb_contact_t *contact; /* NULL for statuses */
    int64_t now;
    outputs_t out;
    esc_batch_t batch;
    const char *outcome;
    int reasons[ESC_MAX_REASONS];
    size_t nreasons;
} cls_job_t;

static const char *turn_text(const sb_envelope_t *env, char *buf, size_t n)
{
    if (env->text && env->text[0]) return env->text;
    if (env->button_title && env->button_title[0]) return env->button_title;
    if (env->n_attachments > 0 && env->attachments[0]) {
        const Switchboard__V1__Attachment *a = env->attachments[0];
        if (a->caption && a->caption[0]) return a->caption;
        snprintf(buf, n, "[%s]", a->type && a->type[0] ? a->type : "media");
        return buf;
    }
    if (env->kind == SWITCHBOARD__V1__MESSAGE_KIND__KIND_LOCATION) return "[location]";
    if (env->kind == SWITCHBOARD__V1__MESSAGE_KIND__KIND_UNSUPPORTED) return "[unsupported]";
    return "";
}

static sb_result_t cls_status(cls_job_t *j, const esc_state_t *s)
{
    const sb_envelope_t *env = j->env;
    const char *st = env->status && env->status->state ? env->status->state : "";
    static const char *const known[] = {"sent", "delivered", "read", "failed"};
    const char *detail = "other";
    for (size_t i = 0; i < 4; i++)
        if (strcmp(st, known[i]) == 0) detail = known[i];
    sb_event_t ev;
    event_for(&ev, s, j->now);
    ev.team = (char *)"";
    ev.agent_id = (char *)"";
    ev.detail = (char *)detail;
    ev.message_id = env->message_id;
    ev.error_code = env->status ? env->status->error_code : 0;
    j->outcome = "status";
    return add_event(&j->out, &ev,
                     strcmp(detail, "failed") == 0
                         ? SWITCHBOARD__V1__EVENT_TYPE__EVENT_DELIVERY_FAILED
                         : SWITCHBOARD__V1__EVENT_TYPE__EVENT_DELIVERY,
                     env->message_id);
}

static sb_result_t cls_session(cls_job_t *j, const esc_state_t *s)
{
    const sb_envelope_t *env = j->env;
    char notice[NOTICE_MAX + 1];
    snprintf(notice, sizeof(notice), "%s",
             env->consent_notice_version ? env->consent_notice_version : "");
    char method[ESC_ID_MAX + 16];
    snprintf(method, sizeof(method), "%s_session", s->channel);
    Switchboard__V1__ConsentRecord rec = SWITCHBOARD__V1__CONSENT_RECORD__INIT;
    rec.contact_id = (char *)s->contact_id;
    rec.conversation_id = (char *)s->conversation_id;
    rec.channel = (char *)s->channel;
    rec.support_chat = env->consent_support_chat;
    rec.notice_version = notice;
    rec.ai_disclosure_shown = env->ai_disclosure_shown;
    rec.at_ms = env->received_at_ms > 0 ? env->received_at_ms : j->now;
    rec.message_id = env->message_id;
    rec.method = method;
    sb_result_t r = esc_vault_put_consent(j->e->vault, &j->batch, &rec);
    if (r != SB_OK) return r;
    sb_event_t ev;
    event_for(&ev, s, j->now);
    ev.team = (char *)"";
    ev.agent_id = (char *)"";
    ev.detail = (char *)(env->consent_support_chat ? "granted" : "not_granted");
    ev.message_id = env->message_id;
    j->outcome = "session";
    return add_event(&j->out, &ev, SWITCHBOARD__V1__EVENT_TYPE__EVENT_CONSENT, env->message_id);
}

static sb_result_t add_bot_turn(cls_job_t *j, esc_state_t *s, bool escalated, uint32_t fallbacks)
{
    const sb_envelope_t *env = j->env;
    const sb_contact_t *ct = j->contact;
    sb_recipient_t rcp = SWITCHBOARD__V1__RECIPIENT__INIT;
    rcp.channel = (char *)s->channel;
    rcp.address = ct->sender_id;
    rcp.account_id = ct->account_id;
    rcp.session_id = ct->session_id;
    rcp.in_reply_to = ct->provider_message_id;
    uint8_t *sealed = NULL;
    size_t sealed_len = 0;
    sb_result_t r = seal_recipient(j->e, &rcp, &sealed, &sealed_len);
    if (r != SB_OK) return r;

    /* the bot gets the classification without the sealed contact it cannot open anyway */
    sb_classification_t c = *j->c;
    sb_envelope_t envc = *env;
    envc.sealed_contact.data = NULL;
    envc.sealed_contact.len = 0;
    c.envelope = &envc;

    sb_bot_turn_t bt = SWITCHBOARD__V1__BOT_TURN__INIT;
    bt.turn_id = env->message_id;
    bt.conversation_id = s->conversation_id;
    bt.partition = s->partition;
    bt.channel = s->channel;
    bt.classification = &c;
    bt.first_bot_message = !s->first_bot_message_sent;
    bt.fallback_count = fallbacks;
    bt.sealed_recipient.data = sealed;
    bt.sealed_recipient.len = sealed_len;
    bt.created_at_ms = j->now;
    bt.resumed_after_agent = s->resume_pending;
    bt.escalated = escalated;
    const char *locale = j->c->language && j->c->language[0] ? j->c->language
                         : s->language[0]                    ? s->language
                         : env->locale_hint                  ? env->locale_hint
                                                             : "";
    bt.locale = (char *)locale;

    char subject[64], msg_id[256];
    r = sb_bus_subject(subject, sizeof(subject), "sb.bot.%u", (unsigned)s->partition);
    if (r == SB_OK) {
        snprintf(msg_id, sizeof(msg_id), "bot:%s", env->message_id);
        r = add_output(&j->out, subject, msg_id, (const ProtobufCMessage *)&bt);
    }
    free(sealed);
    if (r == SB_OK) {
        s->first_bot_message_sent = true;
        s->resume_pending = false;
    }
    return r;
}

/* Builds "masked" for a contact as the console shows it. */
static void mask_of(char out[MASK_MAX], const char *name, const char *phone, const char *email)
{
    esc_mask_contact(out, MASK_MAX, name, phone, email);
}

static sb_result_t cls_turn(cls_job_t *j, sb_store_txn_t *txn, esc_state_t *s, bool is_new)
{
    esc_engine_t *e = j->e;
    const sb_envelope_t *env = j->env;
    const sb_classification_t *c = j->c;
    const sb_contact_t *ct = j->contact;
    uint8_t key[SB_SEAL_KEY_BYTES];
    esc_turn_t *hist = NULL;
    size_t nhist = 0;
    uint8_t *rcp_plain = NULL, *rcp_enc = NULL;
    size_t rcp_plain_len = 0, rcp_enc_len = 0;

    sb_result_t r = esc_vault_contact_key(e->vault, txn, s->contact_id, &j->batch, j->now, key);
    if (r != SB_OK) goto out;
    r = esc_vault_put_contact(e->vault, txn, &j->batch, s->contact_id, key, ct, j->now);
    if (r != SB_OK) goto out;

    /* the reply address, kept encrypted for agent replies (no in_reply_to: that is per message) */
    sb_recipient_t rcp = SWITCHBOARD__V1__RECIPIENT__INIT;
    rcp.channel = s->channel;
    rcp.address = ct->sender_id;
    rcp.account_id = ct->account_id;
    rcp.session_id = ct->session_id;
    r = SB_CODEC_PACK(&rcp, &rcp_plain, &rcp_plain_len);
    if (r != SB_OK) goto out;
    r = esc_vault_encrypt_field(&rcp_enc, &rcp_enc_len, key, "conversations", s->conversation_id,
                                strlen(s->conversation_id), "recipient", rcp_plain, rcp_plain_len);
    if (r != SB_OK) goto out;
    esc_state_set_recipient(s, rcp_enc, rcp_enc_len);

    char tbuf[ESC_ID_MAX + 8];
    esc_turn_t turn = {0};
    turn.at_ms = env->received_at_ms > 0 ? env->received_at_ms : j->now;
    turn.author = SWITCHBOARD__V1__AUTHOR__AUTHOR_UNSPECIFIED;
    turn.text = (char *)turn_text(env, tbuf, sizeof(tbuf));
    turn.intent = c->intent;
    turn.confidence = c->confidence;
    turn.message_id = env->message_id;
    turn.agent_id = (char *)"";
    turn.kind = (int)env->kind;
    turn.language = c->language;
    if (strlen(turn.text) > ESC_TEXT_MAX) {
        r = SB_E_INVALID;
        goto out;
    }
    r = esc_vault_put_turn(e->vault, &j->batch, s->conversation_id, s->contact_id, key, &turn);
    if (r != SB_OK) goto out;

    s->last_activity_ms = j->now;
    if (c->language && c->language[0] && strlen(c->language) <= ESC_ID_MAX)
        esc_set_id(s->language, c->language);
    esc_set_id(s->last_intent, strlen(c->intent ? c->intent : "") <= ESC_ID_MAX ? c->intent : "");
    s->last_confidence = c->confidence;
    s->turns++;

    char masked[MASK_MAX];
    mask_of(masked, ct->display_name, ct->phone, ct->email);

    sb_event_t ev;
    if (s->state == ESC_STATE_BOT) {
        bool fb = esc_is_fallback_intent(c->intent);
        uint32_t fallbacks = fb ? s->consecutive_fallbacks + 1 : 0;
        j->nreasons = esc_decide(&e->policy, c, fallbacks, j->reasons);
        if (j->nreasons > 0) {
            s->state = ESC_STATE_QUEUED;
            esc_set_id(s->team, e->policy.default_team);
            s->agent_id[0] = '\0';
            s->escalated_at_ms = j->now;
            s->assigned_at_ms = 0;
            s->first_response_at_ms = 0;
            esc_set_id(s->escalation_id, env->message_id);
            memcpy(s->reasons, j->reasons, sizeof(j->reasons));
            s->nreasons = j->nreasons;
            s->consecutive_fallbacks = 0;

            /* the transcript: the turns before this one, and this one */
            size_t want = e->policy.transcript_turns ? e->policy.transcript_turns : 1;
            size_t unreadable = 0;
            r = esc_vault_last_turns(e->vault, txn, s->conversation_id, key, want - 1, &hist,
                                     &nhist, &unreadable);
            if (r != SB_OK) goto out;
            hist = sb_xrealloc(hist, (nhist + 1) * sizeof(*hist));
            memset(&hist[nhist], 0, sizeof(hist[nhist]));
            hist[nhist].at_ms = turn.at_ms;
            hist[nhist].text = sb_xstrdup(turn.text);
            hist[nhist].intent = sb_xstrdup(turn.intent ? turn.intent : "");
            hist[nhist].confidence = turn.confidence;
            nhist++;

            char msg_id[256];
            snprintf(msg_id, sizeof(msg_id), "esc:%s", env->message_id);
            esc_view_t view = {.s = s,
                               .state = "queued",
                               .turns = hist,
                               .nturns = nhist,
                               .masked = masked,
                               .intent = c->intent,
                               .confidence = c->confidence,
                               .msg_id = msg_id,
                               .now_ms = j->now};
            r = add_escalation(&j->out, &view);
            if (r != SB_OK) goto out;
            Switchboard__V1__EscalationReason evr[ESC_MAX_REASONS];
            for (size_t i = 0; i < j->nreasons; i++)
                evr[i] = (Switchboard__V1__EscalationReason)j->reasons[i];
            event_for(&ev, s, j->now);
            ev.n_reasons = j->nreasons;
            ev.reasons = evr;
            ev.intent = c->intent;
            ev.confidence = c->confidence;
            ev.message_id = env->message_id;
            ev.state = (char *)"queued";
            r = add_event(&j->out, &ev, SWITCHBOARD__V1__EVENT_TYPE__EVENT_ESCALATED,
                          env->message_id);
            if (r != SB_OK) goto out;
            r = add_bot_turn(j, s, true, fallbacks);
            if (r != SB_OK) goto out;
            j->outcome = "escalated";
        } else {
            s->consecutive_fallbacks = fallbacks;
            /* EVENT_FALLBACK is the responder's: it knows whether it had an answer */
            r = add_bot_turn(j, s, false, fallbacks);
            if (r != SB_OK) goto out;
            j->outcome = "bot";
        }
    } else {
        /* an agent (or a queue) has it: the bot stays silent, the console gets the line */
        esc_turn_t line = turn;
        char msg_id[256];
        snprintf(msg_id, sizeof(msg_id), "esc:%s", env->message_id);
        esc_view_t view = {.s = s,
                           .state = "customer_message",
                           .turns = &line,
                           .nturns = 1,
                           .masked = masked,
                           .intent = c->intent,
                           .confidence = c->confidence,
                           .msg_id = msg_id,
                           .now_ms = j->now};
        r = add_escalation(&j->out, &view);
        if (r != SB_OK) goto out;
        j->outcome = "to_agent";
    }

    event_for(&ev, s, j->now);
    ev.intent = c->intent;
    ev.confidence = c->confidence;
    ev.message_id = env->message_id;
    ev.state = (char *)state_name(s->state);
    ev.detail = (char *)j->outcome;
    r = add_event(&j->out, &ev, SWITCHBOARD__V1__EVENT_TYPE__EVENT_MESSAGE_IN, env->message_id);
    if (r != SB_OK) goto out;
    if (is_new) {
        event_for(&ev, s, j->now);
        ev.message_id = env->message_id;
        r = add_event(&j->out, &ev, SWITCHBOARD__V1__EVENT_TYPE__EVENT_CONVERSATION_STARTED,
                      env->message_id);
        if (r != SB_OK) goto out;
    }
    r = esc_vault_put_state(e->vault, &j->batch, s);
out:
    sb_seal_wipe(key, sizeof(key));
    esc_turns_free(hist, nhist);
    if (rcp_plain) sb_seal_wipe(rcp_plain, rcp_plain_len);
    free(rcp_plain);
    free(rcp_enc);
    return r;
}

static sb_result_t cls_compute(sb_store_txn_t *txn, void *ctx)
{
    cls_job_t *j = ctx;
    esc_engine_t *e = j->e;
    const sb_envelope_t *env = j->env;
    bool seen = false;
    sb_result_t r = esc_vault_is_seen(e->vault, txn, ESC_DEDUP_MESSAGE, env->message_id, &seen);
    if (r != SB_OK) return r;
    if (seen) return SB_E_DUPLICATE;

    esc_state_t s;
    bool is_new = false;
    r = esc_vault_get_state(e->vault, txn, env->conversation_id, &s);
    if (r == SB_E_NOT_FOUND) {
        memset(&s, 0, sizeof(s));
        esc_set_id(s.conversation_id, env->conversation_id);
        esc_set_id(s.team, e->policy.default_team);
        s.state = ESC_STATE_BOT;
        s.created_at_ms = j->now;
        is_new = true;
        r = SB_OK;
    }
    if (r != SB_OK) return r;
    s.partition = sb_ids_partition(env->conversation_id, e->policy.partitions);
    if (esc_copy_id(s.channel, env->channel) != SB_OK ||
        esc_copy_id(s.contact_id, env->contact_id) != SB_OK) {
        esc_state_clear(&s);
        return SB_E_INVALID;
    }

    switch (env->kind) {
    case SWITCHBOARD__V1__MESSAGE_KIND__KIND_STATUS:
    case SWITCHBOARD__V1__MESSAGE_KIND__KIND_SYSTEM: /* provider events: facts, not turns */
        r = cls_status(j, &s);
        break;
    case SWITCHBOARD__V1__MESSAGE_KIND__KIND_SESSION:
        r = cls_session(j, &s);
        break;
    default:
        r = cls_turn(j, txn, &s, is_new);
        break;
    }
    esc_state_clear(&s);
    if (r == SB_OK)
        esc_vault_mark_seen(e->vault, &j->batch, ESC_DEDUP_MESSAGE, env->message_id, j->now);
    return r;
}

static sb_result_t publish_all(esc_engine_t *e, const outputs_t *os)
{
    for (size_t i = 0; i < os->n; i++) {
        sb_result_t r = e->publish(e->publish_ctx, os->o[i].subject, os->o[i].data, os->o[i].len,
                                   os->o[i].msg_id);
        if (r != SB_OK) {
            SB_WARN(MOD, "publish failed output=%zu of=%zu result=%s", i + 1, os->n,
                    sb_result_str(r));
            return SB_E_UNAVAILABLE;
        }
    }
    return SB_OK;
}

static bool envelope_ok(const sb_envelope_t *env)
{
    if (!env || !is_id(env->message_id, ESC_ID_MAX) || !is_conversation_id(env->conversation_id))
        return false;
    if (!env->channel || !sb_bus_is_token(env->channel) || strlen(env->channel) > ESC_ID_MAX)
        return false;
    if (env->kind == SWITCHBOARD__V1__MESSAGE_KIND__KIND_STATUS) return true;
    return is_id(env->contact_id, ESC_ID_MAX);
}

sb_result_t esc_engine_on_classification(esc_engine_t *e, const void *data, size_t len,
                                         int64_t now_ms)
{
    sb_classification_t *c = NULL;
    sb_contact_t *contact = NULL;
    cls_job_t j;
    memset(&j, 0, sizeof(j));
    char cid[13];
    sb_result_t r = SB_CODEC_UNPACK(switchboard__v1__classification__descriptor, data, len, &c);
    if (r != SB_OK) {
        SB_WARN(MOD, "undecodable classification bytes=%zu", len);
        r = SB_E_INVALID;
        count_message("invalid");
        return r;
    }
    if (!envelope_ok(c->envelope)) {
        SB_WARN(MOD, "classification with a bad envelope bytes=%zu", len);
        r = SB_E_INVALID;
        count_message("invalid");
        goto done;
    }
    const sb_envelope_t *env = c->envelope;
    short_id(cid, env->conversation_id);
    bool needs_contact = env->kind != SWITCHBOARD__V1__MESSAGE_KIND__KIND_STATUS &&
                         env->kind != SWITCHBOARD__V1__MESSAGE_KIND__KIND_SESSION &&
                         env->kind != SWITCHBOARD__V1__MESSAGE_KIND__KIND_SYSTEM;
    if (env->sealed_contact.len > 0 && env->kind != SWITCHBOARD__V1__MESSAGE_KIND__KIND_STATUS) {
        r = open_contact(e, &env->sealed_contact, &contact);
        if (r != SB_OK) {
            SB_WARN(MOD, "sealed contact does not open conv=%s bytes=%zu", cid,
                    (size_t)env->sealed_contact.len);
            count_message("invalid");
            goto done;
        }
    } else if (needs_contact) {
        SB_WARN(MOD, "customer message without a sealed contact conv=%s", cid);
        r = SB_E_INVALID;
        count_message("invalid");
        goto done;
    }
    if (needs_contact && (!contact->sender_id || !contact->sender_id[0])) {
        SB_WARN(MOD, "sealed contact without a sender conv=%s", cid);
        r = SB_E_INVALID;
        count_message("invalid");
        goto done;
    }

    j.e = e;
    j.c = c;
    j.env = env;
    j.contact = contact;
    j.now = now_ms;
    r = esc_vault_read(e->vault, cls_compute, &j);
    if (r == SB_E_DUPLICATE) {
        SB_DEBUG(MOD, "duplicate message conv=%s", cid);
        count_message("duplicate");
        goto done;
    }
    if (r != SB_OK) {
        SB_WARN(MOD, "message not handled conv=%s result=%s", cid, sb_result_str(r));
        count_message(r == SB_E_INVALID ? "invalid" : "error");
        goto done;
    }
    r = publish_all(e, &j.out);
    if (r != SB_OK) {
        count_message("unavailable");
        goto done;
    }
    r = esc_vault_commit(e->vault, &j.batch);
    if (r != SB_OK) {
        SB_ERROR(MOD, "store commit failed conv=%s result=%s", cid, sb_result_str(r));
        count_message("error");
        goto done;
    }
    count_message(j.outcome ? j.outcome : "ok");
    for (size_t i = 0; i < j.nreasons; i++)
        count_reason(j.reasons[i]);
    if (j.nreasons > 0)
        SB_INFO(MOD, "escalated conv=%s team=%s reasons=%zu first=%s", cid, e->policy.default_team,
                j.nreasons, reason_name(j.reasons[0]));
    else
        SB_DEBUG(MOD, "message conv=%s outcome=%s outputs=%zu", cid, j.outcome, j.out.n);
done:
    outputs_free(&j.out);
    esc_batch_free(&j.batch);
    if (contact) SB_CODEC_FREE(contact);
    SB_CODEC_FREE(c);
    return r;
}

/* ---- agent commands ---- */

typedef struct cmd_job {
    esc_engine_t *e;
    const sb_agent_command_t *cmd;
    int64_t now;
    outputs_t out;
    esc_batch_t batch;
    const char *outcome; /* applied, noop, rejected */
    const char *why;
} cmd_job_t;

/* Transcript and masked contact of s for a console view (empty when the key is gone). */
static sb_result_t load_view(esc_engine_t *e, sb_store_txn_t *txn, const esc_state_t *s,
                             esc_turn_t **turns, size_t *nturns, char masked[MASK_MAX])
{
    uint8_t key[SB_SEAL_KEY_BYTES];
    masked[0] = '\0';
    *turns = NULL;
    *nturns = 0;
    sb_result_t r = esc_vault_contact_key(e->vault, txn, s->contact_id, NULL, 0, key);
    if (r == SB_E_NOT_FOUND) return SB_OK;
    if (r != SB_OK) return r;
    r = esc_vault_last_turns(e->vault, txn, s->conversation_id, key, e->policy.transcript_turns,
                             turns, nturns, NULL);
    if (r == SB_OK) {
        esc_contact_t ct = {0};
        if (esc_vault_get_contact(e->vault, txn, s->contact_id, key, &ct) == SB_OK) {
            mask_of(masked, ct.display_name, ct.phone, ct.email);
            esc_contact_free(&ct);
        }
    }
    sb_seal_wipe(key, sizeof(key));
    return r;
}

static sb_result_t cmd_view(cmd_job_t *j, sb_store_txn_t *txn, const esc_state_t *s,
                            const char *team, const char *state, const char *suffix)
{
    esc_turn_t *turns = NULL;
    size_t n = 0;
    char masked[MASK_MAX];
    bool with_transcript = strcmp(state, "resolved") != 0 && strcmp(state, "transferred") != 0;
    sb_result_t r = with_transcript ? load_view(j->e, txn, s, &turns, &n, masked) : SB_OK;
    if (!with_transcript) masked[0] = '\0';
    if (r != SB_OK) return r;
    char msg_id[256];
    snprintf(msg_id, sizeof(msg_id), "esc:cmd:%s%s", j->cmd->command_id, suffix);
    esc_view_t view = {.s = s,
                       .team = team,
                       .state = state,
                       .turns = turns,
                       .nturns = n,
                       .masked = masked,
                       .msg_id = msg_id,
                       .now_ms = j->now};
    r = add_escalation(&j->out, &view);
    esc_turns_free(turns, n);
    return r;
}

static sb_result_t cmd_reply(cmd_job_t *j, sb_store_txn_t *txn, esc_state_t *s)
{
    esc_engine_t *e = j->e;
    const sb_agent_command_t *cmd = j->cmd;
    uint8_t key[SB_SEAL_KEY_BYTES];
    char *rcp_plain = NULL;
    size_t rcp_len = 0;
    sb_recipient_t *rcp = NULL;
    uint8_t *sealed = NULL;
    size_t sealed_len = 0;
    sb_result_t r = esc_vault_contact_key(e->vault, txn, s->contact_id, NULL, 0, key);
    if (r == SB_E_NOT_FOUND) {
        j->outcome = "rejected";
        j->why = "no_contact";
        return SB_OK;
    }
    if (r != SB_OK) return r;
    if (!s->recipient ||
        esc_vault_decrypt_field(&rcp_plain, &rcp_len, key, "conversations", s->conversation_id,
                                strlen(s->conversation_id), "recipient", s->recipient,
                                s->recipient_len) != SB_OK ||
        SB_CODEC_UNPACK(switchboard__v1__recipient__descriptor, rcp_plain, rcp_len, &rcp) !=
            SB_OK) {
        j->outcome = "rejected";
        j->why = "no_recipient";
        r = SB_OK;
        goto out;
    }
    r = seal_recipient(e, rcp, &sealed, &sealed_len);
    if (r != SB_OK) goto out;

    char msg_id[256], subject[160];
    snprintf(msg_id, sizeof(msg_id), "agent:%s", cmd->command_id);
    sb_outbound_t ob = SWITCHBOARD__V1__OUTBOUND__INIT;
    ob.message_id = msg_id;
    ob.conversation_id = s->conversation_id;
    ob.partition = s->partition;
    ob.channel = s->channel;
    ob.sealed_recipient.data = sealed;
    ob.sealed_recipient.len = sealed_len;
    ob.author = SWITCHBOARD__V1__AUTHOR__AUTHOR_AGENT;
    ob.agent_id = cmd->agent_id;
    ob.text = cmd->text;
    ob.n_buttons = cmd->n_buttons;
    ob.buttons = cmd->buttons;
    ob.created_at_ms = j->now;
    ob.last_customer_message_ms = s->last_activity_ms; /* set by customer turns only */
    ob.locale = s->language;
    r = sb_bus_subject(subject, sizeof(subject), "sb.out.%s", s->channel);
    if (r == SB_OK) r = add_output(&j->out, subject, msg_id, (const ProtobufCMessage *)&ob);
    if (r != SB_OK) goto out;

    /* the agent's line joins the transcript, encrypted like the customer's */
    esc_turn_t turn = {0};
    turn.at_ms = j->now;
    turn.author = SWITCHBOARD__V1__AUTHOR__AUTHOR_AGENT;
    turn.text = cmd->text;
    turn.message_id = msg_id;
    turn.agent_id = cmd->agent_id;
    turn.kind = SWITCHBOARD__V1__MESSAGE_KIND__KIND_TEXT;
    r = esc_vault_put_turn(e->vault, &j->batch, s->conversation_id, s->contact_id, key, &turn);
    if (r != SB_OK) goto out;

    sb_event_t ev;
    event_for(&ev, s, j->now);
    ev.message_id = msg_id;
    if (s->first_response_at_ms == 0) {
        s->first_response_at_ms = j->now;
        ev.value_ms = s->escalated_at_ms > 0 ? j->now - s->escalated_at_ms : 0;
        ev.detail = (char *)"first_response";
    }
    r = add_event(&j->out, &ev, SWITCHBOARD__V1__EVENT_TYPE__EVENT_AGENT_REPLY, cmd->command_id);
out:
    sb_seal_wipe(key, sizeof(key));
    if (rcp_plain) {
        sb_seal_wipe(rcp_plain, rcp_len);
        free(rcp_plain);
    }
    if (rcp) SB_CODEC_FREE(rcp);
    free(sealed);
    return r;
}

static sb_result_t cmd_compute(sb_store_txn_t *txn, void *ctx)
{
    cmd_job_t *j = ctx;
    esc_engine_t *e = j->e;
    const sb_agent_command_t *cmd = j->cmd;
    bool seen = false;
    sb_result_t r = esc_vault_is_seen(e->vault, txn, ESC_DEDUP_COMMAND, cmd->command_id, &seen);
    if (r != SB_OK) return r;
    if (seen) return SB_E_DUPLICATE;

    esc_state_t s;
    r = esc_vault_get_state(e->vault, txn, cmd->conversation_id, &s);
    if (r == SB_E_NOT_FOUND) {
        j->outcome = "rejected";
        j->why = "unknown_conversation";
        memset(&s, 0, sizeof(s));
        esc_set_id(s.conversation_id, cmd->conversation_id);
        r = SB_OK;
        goto reject;
    }
    if (r != SB_OK) return r;

    char old_team[ESC_ID_MAX + 1];
    memcpy(old_team, s.team, sizeof(old_team));
    const char *why = NULL;
    esc_cmd_outcome_t o = esc_transition(&s, cmd, j->now, &why);
    sb_event_t ev;
    if (o == ESC_CMD_REJECTED) {
        j->outcome = "rejected";
        j->why = why;
        goto reject;
    }
    if (o == ESC_CMD_NOOP) {
        j->outcome = "noop";
        goto done;
    }
    j->outcome = "applied";
    switch (cmd->verb) {
    case SWITCHBOARD__V1__AGENT_VERB__VERB_CLAIM:
        r = cmd_view(j, txn, &s, NULL, "assigned", "");
        if (r != SB_OK) break;
        event_for(&ev, &s, j->now);
        ev.value_ms = s.escalated_at_ms > 0 ? j->now - s.escalated_at_ms : 0;
        ev.state = (char *)"assigned";
        r = add_event(&j->out, &ev, SWITCHBOARD__V1__EVENT_TYPE__EVENT_CLAIMED, cmd->command_id);
        break;
    case SWITCHBOARD__V1__AGENT_VERB__VERB_REPLY:
        if ((!cmd->text || !cmd->text[0]) && cmd->n_buttons == 0) {
            j->outcome = "rejected";
            j->why = "empty_reply";
            break;
        }
        if (cmd->text && strlen(cmd->text) > ESC_TEXT_MAX) {
            j->outcome = "rejected";
            j->why = "too_long";
            break;
        }
        r = cmd_reply(j, txn, &s);
        break;
    case SWITCHBOARD__V1__AGENT_VERB__VERB_RESOLVE:
        r = cmd_view(j, txn, &s, NULL, "resolved", "");
        if (r != SB_OK) break;
        event_for(&ev, &s, j->now);
        ev.agent_id = cmd->agent_id;
        ev.value_ms = s.escalated_at_ms > 0 ? j->now - s.escalated_at_ms : 0;
        ev.state = (char *)"bot";
        r = add_event(&j->out, &ev, SWITCHBOARD__V1__EVENT_TYPE__EVENT_RESOLVED, cmd->command_id);
        if (r == SB_OK && cmd->csat >= 1 && cmd->csat <= 5) {
            event_for(&ev, &s, j->now);
            ev.agent_id = cmd->agent_id;
            ev.value_ms = cmd->csat;
            r = add_event(&j->out, &ev, SWITCHBOARD__V1__EVENT_TYPE__EVENT_CSAT, cmd->command_id);
        }
        s.nreasons = 0;
        break;
    case SWITCHBOARD__V1__AGENT_VERB__VERB_RELEASE:
        r = cmd_view(j, txn, &s, NULL, "queued", "");
        if (r != SB_OK) break;
        event_for(&ev, &s, j->now);
        ev.agent_id = cmd->agent_id;
        ev.state = (char *)"queued";
        r = add_event(&j->out, &ev, SWITCHBOARD__V1__EVENT_TYPE__EVENT_RELEASED, cmd->command_id);
        break;
    case SWITCHBOARD__V1__AGENT_VERB__VERB_TRANSFER:
        if (strcmp(old_team, s.team) != 0) {
            r = cmd_view(j, txn, &s, old_team, "transferred", ":from");
            if (r != SB_OK) break;
        }
        r = cmd_view(j, txn, &s, NULL, state_name(s.state), "");
        if (r != SB_OK) break;
        event_for(&ev, &s, j->now);
        ev.agent_id = cmd->agent_id;
        ev.state = (char *)state_name(s.state);
        ev.detail = old_team;
        r = add_event(&j->out, &ev, SWITCHBOARD__V1__EVENT_TYPE__EVENT_TRANSFERRED,
                      cmd->command_id);
        break;
    default:
        break;
    }
    if (r != SB_OK) goto done;
    if (strcmp(j->outcome, "rejected") == 0) goto reject;
    r = esc_vault_put_state(e->vault, &j->batch, &s);
    goto done;
reject:
    /* nothing changes; the console learns why from the event */
    outputs_free(&j->out);
    event_for(&ev, &s, j->now);
    ev.agent_id = cmd->agent_id;
    ev.detail = (char *)j->why;
    ev.state = (char *)(s.conversation_id[0] && s.team[0] ? state_name(s.state) : "");
    r = add_event(&j->out, &ev, SWITCHBOARD__V1__EVENT_TYPE__EVENT_COMMAND_REJECTED,
                  cmd->command_id);
done:
    esc_state_clear(&s);
    if (r == SB_OK)
        esc_vault_mark_seen(e->vault, &j->batch, ESC_DEDUP_COMMAND, cmd->command_id, j->now);
    return r;
}

sb_result_t esc_engine_on_command(esc_engine_t *e, const void *data, size_t len, int64_t now_ms)
{
    sb_agent_command_t *cmd = NULL;
    cmd_job_t j;
    memset(&j, 0, sizeof(j));
    char cid[13];
    sb_result_t r = SB_CODEC_UNPACK(switchboard__v1__agent_command__descriptor, data, len, &cmd);
    if (r != SB_OK) {
        SB_WARN(MOD, "undecodable agent command bytes=%zu", len);
        count_command(0, "invalid");
        return SB_E_INVALID;
    }
    if (!is_id(cmd->command_id, COMMAND_ID_MAX) || !is_conversation_id(cmd->conversation_id) ||
        !is_id(cmd->agent_id, ESC_ID_MAX) || cmd->verb < SWITCHBOARD__V1__AGENT_VERB__VERB_CLAIM ||
        cmd->verb > SWITCHBOARD__V1__AGENT_VERB__VERB_RELEASE) {
        SB_WARN(MOD, "malformed agent command verb=%s bytes=%zu", verb_name(cmd->verb), len);
        count_command(cmd->verb, "invalid");
        r = SB_E_INVALID;
        goto done;
    }
    short_id(cid, cmd->conversation_id);
    j.e = e;
    j.cmd = cmd;
    j.now = now_ms;
    r = esc_vault_read(e->vault, cmd_compute, &j);
    if (r == SB_E_DUPLICATE) {
        count_command(cmd->verb, "duplicate");
        goto done;
    }
    if (r != SB_OK) {
        SB_WARN(MOD, "agent command not handled conv=%s verb=%s result=%s", cid,
                verb_name(cmd->verb), sb_result_str(r));
        count_command(cmd->verb, "error");
        goto done;
    }
    r = publish_all(e, &j.out);
    if (r != SB_OK) {
        count_command(cmd->verb, "unavailable");
        goto done;
    }
    r = esc_vault_commit(e->vault, &j.batch);
    if (r != SB_OK) {
        SB_ERROR(MOD, "store commit failed conv=%s result=%s", cid, sb_result_str(r));
        count_command(cmd->verb, "error");
        goto done;
    }
    count_command(cmd->verb, j.outcome);
    SB_INFO(MOD, "agent command conv=%s verb=%s outcome=%s%s%s", cid, verb_name(cmd->verb),
            j.outcome, j.why ? " why=" : "", j.why ? j.why : "");
done:
    outputs_free(&j.out);
    esc_batch_free(&j.batch);
    SB_CODEC_FREE(cmd);
    return r;
}
