/* Responder turn handling: one BotTurn in (borrowed from the pull loop), one Outbound and one
 * Event out, each published with a deterministic Nats-Msg-Id so that a redelivered turn is
 * harmless. Only ids, sizes, intents and outcomes are logged: never the text. */
#include "responder.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sb/log.h"
#include "sb/metrics.h"
#include "sb/util.h"

#define MOD "responder"

sb_result_t sb_responder_init(sb_responder_t *r, sb_bus_t *bus, const char *path, char *err,
                              size_t errlen)
{
    sb_answers_t *a = NULL;
    sb_result_t rc = sb_answers_load(&a, path, err, errlen);
    if (rc != SB_OK) return rc;
    r->bus = bus;
    r->answers = a;
    r->answers_path = path;
    return SB_OK;
}

void sb_responder_close(sb_responder_t *r)
{
    if (!r) return;
    sb_answers_destroy(r->answers);
    r->answers = NULL;
}

sb_result_t sb_responder_reload(sb_responder_t *r, char *err, size_t errlen)
{
    sb_answers_t *a = NULL;
    sb_result_t rc = sb_answers_load(&a, r->answers_path, err, errlen);
    if (rc != SB_OK) return rc;
    sb_answers_destroy(r->answers);
    r->answers = a;
    return SB_OK;
}

/* Ids are hashes and short codes: printable ASCII without spaces, bounded. */
static bool is_id(const char *s, size_t max)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > max) return false;
    for (size_t i = 0; i < n; i++)
        if (s[i] <= ' ' || s[i] >= 0x7f) return false;
    return true;
}

sb_result_t sb_responder_check_turn(const sb_bot_turn_t *turn, const char **why)
{
    const char *w = NULL;
    if (!is_id(turn->turn_id, SB_RESPONDER_MAX_ID))
        w = "bad turn_id";
    else if (!is_id(turn->conversation_id, SB_RESPONDER_MAX_ID))
        w = "bad conversation_id";
    else if (strlen(turn->channel) > SB_RESPONDER_MAX_CHANNEL || !sb_bus_is_token(turn->channel))
        w = "bad channel";
    if (!w) return SB_OK;
    if (why) *why = w;
    return SB_E_INVALID;
}

static const char *nonempty(const char *s)
{
    return (s && s[0]) ? s : NULL;
}

void sb_responder_request(const sb_bot_turn_t *turn, sb_answer_request_t *req)
{
    const sb_classification_t *c = turn->classification;
    const sb_envelope_t *e = c ? c->envelope : NULL;

    memset(req, 0, sizeof *req);
    req->intent = c ? nonempty(c->intent) : NULL;
    req->locale = nonempty(turn->locale);
    if (!req->locale && c) req->locale = nonempty(c->language);
    if (!req->locale && e) req->locale = nonempty(e->locale_hint);
    if (e && e->kind == SWITCHBOARD__V1__MESSAGE_KIND__KIND_BUTTON_REPLY)
        req->button_payload = nonempty(e->button_payload);
    req->unsupported = e && e->kind == SWITCHBOARD__V1__MESSAGE_KIND__KIND_UNSUPPORTED;
    req->first_bot_message = turn->first_bot_message;
    req->resumed_after_agent = turn->resumed_after_agent;
    req->escalated = turn->escalated;
}

void sb_responder_intent_code(const char *intent, char *out, size_t n)
{
    size_t len = intent ? strlen(intent) : 0;
    bool ok = len > 0 && len <= SB_ANSWERS_MAX_INTENT;
    for (size_t i = 0; ok && i < len; i++) {
        char c = intent[i];
        ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
    }
    snprintf(out, n, "%s", len == 0 ? "none" : ok ? intent : "invalid");
}

static void count_turn(const char *outcome)
{
    char labels[64];
    snprintf(labels, sizeof labels, "outcome=\"%s\"", outcome);
    sb_metric_inc(sb_metrics_counter("sb_responder_turns_total",
                                     "BotTurns handled by the responder, by outcome", labels));
}

/* Publishes the KPI event of this answer. Deterministic id, so a redelivered turn adds none. */
static sb_result_t publish_event(sb_responder_t *R, const sb_bot_turn_t *turn,
                                 const sb_answer_t *ans, const char *out_id)
{
    sb_event_t ev = SWITCHBOARD__V1__EVENT__INIT;
    const sb_classification_t *c = turn->classification;
    bool fallback = ans->outcome == SB_ANSWER_FALLBACK;
    const char *kind = fallback ? "fallback" : "bot_reply";
    char code[SB_ANSWERS_MAX_INTENT + 1], subject[64];
    char *event_id = sb_xasprintf("ev:responder:%s:%s", kind, turn->turn_id);
    uint8_t *buf = NULL;
    size_t len = 0;
    sb_result_t r;

    sb_responder_intent_code(c ? c->intent : NULL, code, sizeof code);
    ev.event_id = event_id;
    ev.type = fallback ? SWITCHBOARD__V1__EVENT_TYPE__EVENT_FALLBACK
                       : SWITCHBOARD__V1__EVENT_TYPE__EVENT_BOT_REPLY;
    ev.conversation_id = turn->conversation_id;
    ev.channel = turn->channel;
    ev.at_ms = sb_now_ms();
    ev.partition = turn->partition;
    ev.message_id = (char *)out_id;
    ev.confidence = c ? c->confidence : 0;
    /* The event's intent is what the bot answered; a fallback's detail is what it could not. */
    ev.intent = (char *)ans->intent;
    ev.detail = fallback ? code : (char *)sb_answer_outcome_name(ans->outcome);

    r = sb_bus_subject(subject, sizeof subject, "sb.ev.%s", kind);
    if (r != SB_OK) goto out;
    r = SB_CODEC_PACK(&ev, &buf, &len);
    if (r != SB_OK) goto out;
    r = sb_bus_publish(R->bus, subject, buf, len, event_id, NULL);
    if (r == SB_E_DUPLICATE) r = SB_OK;
out:
    free(buf);
    free(event_id);
    return r;
}

sb_result_t sb_responder_handle(void *ctx, const sb_bus_msg_t *msg)
{
    sb_responder_t *R = ctx;
    sb_bot_turn_t *turn = NULL;
    sb_answer_t ans = {0};
    sb_answer_request_t req;
    sb_outbound_t out = SWITCHBOARD__V1__OUTBOUND__INIT;
    Switchboard__V1__Button btns[SB_ANSWERS_MAX_BUTTONS];
    Switchboard__V1__Button *btnp[SB_ANSWERS_MAX_BUTTONS];
    char subject[64], labels[160];
    char *out_id = NULL;
    uint8_t *buf = NULL;
    size_t len = 0;
    bool dup = false;
    const char *why = "undecodable";
    sb_result_t r;

    r = SB_CODEC_UNPACK(switchboard__v1__bot_turn__descriptor, msg->data, msg->len, &turn);
    if (r == SB_OK) r = sb_responder_check_turn(turn, &why);
    if (r != SB_OK) {
        SB_WARN(MOD, "turn refused reason=\"%s\" seq=%llu bytes=%zu", why,
                (unsigned long long)msg->stream_seq, msg->len);
        count_turn("invalid");
        r = SB_E_INVALID;
        goto out;
    }

    sb_responder_request(turn, &req);
    sb_answers_choose(R->answers, &req, &ans);

    out_id = sb_xasprintf("out:%s", turn->turn_id);
    out.message_id = out_id;
    out.conversation_id = turn->conversation_id;
    out.partition = turn->partition;
    out.channel = turn->channel;
    out.sealed_recipient = turn->sealed_recipient;
    out.author = SWITCHBOARD__V1__AUTHOR__AUTHOR_BOT;
    out.text = ans.text;
    out.in_reply_to = turn->turn_id;
    out.created_at_ms = sb_now_ms();
    out.last_customer_message_ms = turn->classification && turn->classification->envelope
                                       ? turn->classification->envelope->received_at_ms
                                       : turn->created_at_ms;
    out.locale = (char *)sb_locale_name(ans.locale);
    out.intent = (char *)ans.intent;
    for (size_t i = 0; i < ans.nbuttons; i++) {
        Switchboard__V1__Button b = SWITCHBOARD__V1__BUTTON__INIT;
        b.id = (char *)ans.buttons[i].id;
        b.title = (char *)ans.buttons[i].title;
        btns[i] = b;
        btnp[i] = &btns[i];
    }
    out.n_buttons = ans.nbuttons;
    out.buttons = ans.nbuttons ? btnp : NULL;

    r = sb_bus_subject(subject, sizeof subject, "sb.out.%s", turn->channel);
    if (r != SB_OK) {
        r = SB_E_INVALID;
        goto out;
    }
    r = SB_CODEC_PACK(&out, &buf, &len);
    if (r != SB_OK) goto out;
    r = sb_bus_publish(R->bus, subject, buf, len, out_id, &dup);
    if (r == SB_E_DUPLICATE) {
        dup = true;
        r = SB_OK;
    }
    if (r != SB_OK) {
        SB_WARN(MOD, "outbound not acked turn=%s result=\"%s\"", turn->turn_id, sb_result_str(r));
        count_turn("unavailable");
        r = SB_E_UNAVAILABLE;
        goto out;
    }
    r = publish_event(R, turn, &ans, out_id);
    if (r != SB_OK) {
        SB_WARN(MOD, "event not acked turn=%s result=\"%s\"", turn->turn_id, sb_result_str(r));
        count_turn("unavailable");
        r = SB_E_UNAVAILABLE;
        goto out;
    }

    /* Labels come from the answers file (a bounded, known set), never from customer text. */
    snprintf(labels, sizeof labels, "intent=\"%s\",outcome=\"%s\"", ans.intent,
             sb_answer_outcome_name(ans.outcome));
    sb_metric_inc(sb_metrics_counter("sb_responder_answers_total",
                                     "Answers sent by the responder, by answer entry and outcome",
                                     labels));
    count_turn(dup ? "duplicate" : "ok");
    SB_INFO(MOD,
            "answered turn=%s conversation=%s channel=%s intent=%s outcome=%s locale=%s "
            "buttons=%zu bytes=%zu duplicate=%d",
            turn->turn_id, turn->conversation_id, turn->channel, ans.intent,
            sb_answer_outcome_name(ans.outcome), sb_locale_name(ans.locale), ans.nbuttons,
            strlen(ans.text), dup);
    r = SB_OK;

out:
    free(buf);
    free(out_id);
    sb_answer_clear(&ans);
    if (turn) SB_CODEC_FREE(turn);
    return r;
}
