/* `switchboard tail`: a live, one-line-per-message view of the bus for operators and the demo.
 * It subscribes (core NATS, nothing is consumed or acked) to sb.> or a given subject and
 * prints what each hop carries. Only what is already on the bus is shown: ids are hashes and
 * text is redacted; the sealed contact and recipient stay sealed. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "sb/bus.h"
#include "sb/codec.h"
#include "sb/service.h"
#include "sb/util.h"

/* First 8 characters of a hash id: enough to follow a conversation by eye. */
#define short_id(id) 8, ((id) ? (id) : "")

/* Prints text on one line, truncated, with control characters replaced. */
static void put_text(sb_buf_t *b, const char *text)
{
    size_t n = 0;
    sb_buf_append(b, "\"", 1);
    for (const char *p = text ? text : ""; *p && n < 72; p++, n++) {
        char c = (unsigned char)*p < 0x20 ? ' ' : *p;
        sb_buf_append(b, &c, 1);
    }
    sb_buf_append(b, text && strlen(text) > 72 ? "...\"" : "\"", text && strlen(text) > 72 ? 4 : 1);
}

static void describe(sb_buf_t *b, const char *subject, const void *data, size_t len)
{
    if (strncmp(subject, "sb.in.", 6) == 0) {
        sb_envelope_t *e = NULL;
        if (SB_CODEC_UNPACK(switchboard__v1__envelope__descriptor, data, len, &e) != SB_OK)
            goto bad;
        sb_buf_appendf(b, "envelope kind=%d conv=%.*s msg=%.*s text=", e->kind,
                       short_id(e->conversation_id), short_id(e->message_id));
        put_text(b, e->text);
        if (e->button_payload && *e->button_payload)
            sb_buf_appendf(b, " button=%s", e->button_payload);
        SB_CODEC_FREE(e);
    } else if (strncmp(subject, "sb.nlu.", 7) == 0) {
        sb_classification_t *c = NULL;
        if (SB_CODEC_UNPACK(switchboard__v1__classification__descriptor, data, len, &c) != SB_OK)
            goto bad;
        sb_buf_appendf(b,
                       "classification intent=%s confidence=%.2f lang=%s sentiment=%.2f "
                       "model=%s conv=%.*s",
                       c->intent, c->confidence, c->language, c->sentiment, c->model_version,
                       short_id(c->envelope ? c->envelope->conversation_id : NULL));
        SB_CODEC_FREE(c);
    } else if (strncmp(subject, "sb.bot.", 7) == 0) {
        sb_bot_turn_t *t = NULL;
        if (SB_CODEC_UNPACK(switchboard__v1__bot_turn__descriptor, data, len, &t) != SB_OK)
            goto bad;
        sb_buf_appendf(
            b, "bot-turn conv=%.*s intent=%s first=%d escalated=%d", short_id(t->conversation_id),
            t->classification ? t->classification->intent : "", t->first_bot_message, t->escalated);
        SB_CODEC_FREE(t);
    } else if (strncmp(subject, "sb.esc.", 7) == 0) {
        sb_escalation_t *e = NULL;
        if (SB_CODEC_UNPACK(switchboard__v1__escalation__descriptor, data, len, &e) != SB_OK)
            goto bad;
        sb_buf_appendf(b, "escalation state=%s team=%s conv=%.*s reasons=%zu lines=%zu", e->state,
                       e->team, short_id(e->conversation_id), e->n_reasons, e->n_transcript);
        SB_CODEC_FREE(e);
    } else if (strncmp(subject, "sb.agent.", 9) == 0) {
        sb_agent_command_t *a = NULL;
        if (SB_CODEC_UNPACK(switchboard__v1__agent_command__descriptor, data, len, &a) != SB_OK)
            goto bad;
        sb_buf_appendf(b, "agent-command verb=%d agent=%s conv=%.*s", a->verb, a->agent_id,
                       short_id(a->conversation_id));
        SB_CODEC_FREE(a);
    } else if (strncmp(subject, "sb.out.", 7) == 0) {
        sb_outbound_t *o = NULL;
        if (SB_CODEC_UNPACK(switchboard__v1__outbound__descriptor, data, len, &o) != SB_OK)
            goto bad;
        sb_buf_appendf(b, "outbound author=%s conv=%.*s buttons=%zu text=",
                       o->author == SWITCHBOARD__V1__AUTHOR__AUTHOR_AGENT ? "agent" : "bot",
                       short_id(o->conversation_id), o->n_buttons);
        put_text(b, o->text);
        SB_CODEC_FREE(o);
    } else if (strncmp(subject, "sb.ev.", 6) == 0) {
        sb_event_t *e = NULL;
        if (SB_CODEC_UNPACK(switchboard__v1__event__descriptor, data, len, &e) != SB_OK) goto bad;
        sb_buf_appendf(b, "event type=%d conv=%.*s detail=%s", e->type,
                       short_id(e->conversation_id), e->detail);
        SB_CODEC_FREE(e);
    } else {
        sb_buf_appendf(b, "bytes=%zu", len);
    }
    return;
bad:
    sb_buf_appendf(b, "undecodable bytes=%zu", len);
}

static sb_result_t on_msg(void *ctx, const sb_bus_msg_t *m)
{
    (void)ctx;
    sb_buf_t b = {0};
    int64_t now = sb_now_ms();
    sb_buf_appendf(&b, "%02lld:%02lld:%02lld.%03lld %-36s ", (long long)(now / 3600000 % 24),
                   (long long)(now / 60000 % 60), (long long)(now / 1000 % 60),
                   (long long)(now % 1000), m->subject);
    describe(&b, m->subject, m->data, m->len);
    sb_buf_append(&b, "\n", 1);
    fwrite(b.data, 1, b.len, stdout);
    fflush(stdout);
    sb_buf_free(&b);
    return SB_OK;
}

int sb_cli_tail(int argc, char **argv)
{
    const char *subject = "sb.>";
    char *args[64];
    int nargs = 0;
    for (int i = 0; i < argc && nargs < 63; i++) {
        if (i > 0 && argv[i][0] != '-' && strcmp(argv[i - 1], "--config") != 0 &&
            strcmp(argv[i - 1], "--log-level") != 0) {
            subject = argv[i];
            continue;
        }
        args[nargs++] = argv[i];
    }
    args[nargs] = NULL;
    sb_service_t svc;
    int rc = sb_service_init(&svc, "tail", nargs, args, NULL, "switchboard tail [SUBJECT]");
    if (rc != 0) return rc < 0 ? 0 : rc;
    sb_result_t r = sb_service_connect(&svc, false);
    sb_bus_sub_t *sub = NULL;
    if (r == SB_OK) r = sb_bus_subscribe(svc.bus, subject, on_msg, NULL, &sub);
    if (r != SB_OK) {
        fprintf(stderr, "tail: %s\n", sb_result_str(r));
        sb_service_close(&svc);
        return 1;
    }
    while (!sb_service_stopping())
        usleep(100 * 1000);
    sb_bus_sub_destroy(sub);
    sb_service_close(&svc);
    return 0;
}
