/* Egress: the thread that turns Outbound messages on SB_OUT into channel API calls (see
 * egress.h for the retry contract). The thread owns its HTTP client and pull consumer; the
 * channels and the bus are shared read-only with the ingress side. */
#include "egress.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sb/codec.h"
#include "sb/httpclient.h"
#include "sb/log.h"
#include "sb/metrics.h"
#include "sb/service.h"

#include <cjson/cJSON.h>

#define MOD "egress"
#define DURABLE "egress"
#define FETCH_MAX 16
#define FETCH_TIMEOUT_MS 1000
#define MAX_RESPONSE (64 * 1024)
#define MAX_SEALED (64 * 1024)

enum { EG_SENT, EG_RETRIED, EG_FAILED, EG_COUNT };
static const char *const eg_names[EG_COUNT] = {"sent", "retried", "failed"};

typedef struct eg_chan {
    sb_channel_t *ch;
    char *api_base;
    sb_metric_t *outcomes[EG_COUNT];
    sb_metric_t *seconds;
} eg_chan_t;

struct sb_egress {
    sb_egress_opts_t o;
    eg_chan_t *chans;
    size_t nchans;
    sb_http_client_t *client;
    pthread_t thread;
    atomic_bool stop;
};

char *sb_egress_api_base(const sb_config_t *cfg, const sb_channel_t *ch, const char *sink_base)
{
    const char *name = ch->ops->name;
    const char *global = cfg->router.channel_api_base;
    if (global && *global) {
        size_t n = strlen(global);
        while (n > 0 && global[n - 1] == '/')
            n--;
        return sb_xasprintf("%.*s/%s", (int)n, global, name);
    }
    if (ch->api_base && *ch->api_base) return sb_xstrdup(ch->api_base);
    return sb_xasprintf("%s/%s", sink_base, name);
}

static eg_chan_t *find_chan(sb_egress_t *eg, const char *name)
{
    for (size_t i = 0; i < eg->nchans; i++)
        if (name && strcmp(eg->chans[i].ch->ops->name, name) == 0) return &eg->chans[i];
    return NULL;
}

/* Publishes the delivery-failed event; SB_OK means the Outbound may be acked. */
static sb_result_t publish_failed(sb_egress_t *eg, const sb_outbound_t *o, const char *detail,
                                  long status)
{
    sb_event_t ev = SWITCHBOARD__V1__EVENT__INIT;
    char *event_id = sb_xasprintf("dlf:%s", o->message_id ? o->message_id : "");
    ev.event_id = event_id;
    ev.type = SWITCHBOARD__V1__EVENT_TYPE__EVENT_DELIVERY_FAILED;
    ev.conversation_id = o->conversation_id;
    ev.channel = o->channel;
    ev.at_ms = sb_now_ms();
    ev.detail = (char *)detail;
    ev.error_code = status;
    ev.partition = o->partition;
    ev.message_id = o->message_id;
    ev.intent = o->intent;
    ev.agent_id = o->agent_id;
    uint8_t *data = NULL;
    size_t len = 0;
    sb_result_t rc = SB_CODEC_PACK(&ev, &data, &len);
    if (rc == SB_OK)
        rc = sb_bus_publish(eg->o.bus, "sb.ev.delivery_failed", data, len, event_id, NULL);
    free(data);
    free(event_id);
    if (rc != SB_OK) return SB_E_UNAVAILABLE; /* redeliver: the event must not be lost */
    return SB_OK;
}

static void count(eg_chan_t *c, int outcome)
{
    if (c) sb_metric_inc(c->outcomes[outcome]);
}

/* Fails the message for good: event, metric, log, ack. */
static sb_result_t give_up(sb_egress_t *eg, eg_chan_t *c, const sb_outbound_t *o,
                           const char *detail, long status)
{
    sb_result_t rc = publish_failed(eg, o, detail, status);
    if (rc != SB_OK) return rc;
    count(c, EG_FAILED);
    SB_WARN(MOD, "delivery failed channel=%s message_id=%s detail=%s status=%ld",
            o->channel ? o->channel : "-", o->message_id ? o->message_id : "-", detail, status);
    return SB_OK;
}

static sb_result_t open_recipient(sb_egress_t *eg, const sb_outbound_t *o, sb_recipient_t **out)
{
    size_t clen = o->sealed_recipient.len;
    if (clen <= SB_SEAL_BOX_OVERHEAD || clen > MAX_SEALED) return SB_E_INVALID;
    uint8_t *plain = sb_xmalloc(clen - SB_SEAL_BOX_OVERHEAD);
    sb_result_t rc = sb_seal_box_open(plain, o->sealed_recipient.data, clen, eg->o.recipient_pk,
                                      eg->o.recipient_sk);
    if (rc == SB_OK)
        rc = SB_CODEC_UNPACK(switchboard__v1__recipient__descriptor, plain,
                             clen - SB_SEAL_BOX_OVERHEAD, out);
    sb_seal_wipe(plain, clen - SB_SEAL_BOX_OVERHEAD);
    free(plain);
    return rc == SB_OK ? SB_OK : SB_E_INVALID;
}

static bool transient(long status)
{
    return status == 0 || status == 408 || status == 425 || status == 429 || status >= 500;
}

static sb_result_t on_outbound(void *ctx, const sb_bus_msg_t *msg)
{
    sb_egress_t *eg = ctx;
    sb_outbound_t *o = NULL;
    sb_recipient_t *rcpt = NULL;
    sb_chan_http_t req = {0};
    sb_http_client_response_t resp = {0};
    sb_result_t rc =
        SB_CODEC_UNPACK(switchboard__v1__outbound__descriptor, msg->data, msg->len, &o);
    if (rc != SB_OK) {
        SB_WARN(MOD, "undecodable outbound seq=%llu size=%zu", (unsigned long long)msg->stream_seq,
                msg->len);
        return SB_E_INVALID; /* poison: terminated, never redelivered */
    }
    eg_chan_t *c = find_chan(eg, o->channel);
    if (!c) {
        rc = give_up(eg, NULL, o, "unknown_channel", 0);
        goto out;
    }
    if (!o->message_id || !*o->message_id || open_recipient(eg, o, &rcpt) != SB_OK) {
        rc = give_up(eg, c, o, "bad_recipient", 0);
        goto out;
    }
    sb_chan_send_t send = {.out = o,
                           .rcpt = rcpt,
                           .api_base = c->api_base,
                           .now_s = sb_router_now_s(),
                           .window = sb_chan_window_decide(&c->ch->window, o, sb_now_ms()),
                           .template_name = c->ch->window.template_name,
                           .template_language = c->ch->window.template_language};
    if (send.window == SB_CHAN_WINDOW_CLOSED) {
        rc = give_up(eg, c, o, "window_closed", 0);
        goto out;
    }
    if (c->ch->ops->render(c->ch, &send, &req) != SB_OK) {
        rc = give_up(eg, c, o, "render", 0);
        goto out;
    }
    /* The idempotency key lets a provider (or our sink) drop a resend after a lost answer. */
    sb_chan_http_add_header(&req, "Idempotency-Key: %s", o->message_id);

    uint64_t t0 = sb_mono_ns();
    sb_result_t sent = sb_http_client_do(
        eg->client, req.method, req.url, (const char *const *)req.headers, req.body.data,
        req.body.len, (long)eg->o.cfg->router.egress_timeout_ms, MAX_RESPONSE, &resp);
    sb_metric_observe(c->seconds, (double)(sb_mono_ns() - t0) / 1e9);
    long status = sent == SB_OK ? resp.status : 0;
    if (sent == SB_E_TOO_LARGE) status = 200 <= resp.status && resp.status < 300 ? resp.status : 0;
    if (status >= 200 && status < 300) {
        count(c, EG_SENT);
        SB_INFO(MOD, "sent channel=%s message_id=%s status=%ld bytes=%zu attempt=%llu", o->channel,
                o->message_id, status, req.body.len, (unsigned long long)msg->num_delivered);
        rc = SB_OK;
        goto out;
    }
    if (transient(status)) {
        if (msg->num_delivered >= (uint64_t)eg->o.cfg->router.egress_max_attempts) {
            rc = give_up(eg, c, o, "attempts_exhausted", status);
            goto out;
        }
        count(c, EG_RETRIED);
        SB_WARN(MOD,
                "send will be retried channel=%s message_id=%s status=%ld attempt=%llu "
                "error=\"%s\"",
                o->channel, o->message_id, status, (unsigned long long)msg->num_delivered,
                sent == SB_OK ? "-" : sb_result_str(sent));
        rc = SB_E_UNAVAILABLE;
        goto out;
    }
    rc = give_up(eg, c, o, "rejected", status);
out:
    sb_buf_free(&resp.body);
    sb_chan_http_free(&req);
    if (rcpt) {
        /* The recipient holds the customer's address: wipe before freeing. */
        if (rcpt->address) sb_seal_wipe(rcpt->address, strlen(rcpt->address));
        SB_CODEC_FREE(rcpt);
    }
    SB_CODEC_FREE(o);
    return rc;
}

static bool stopping(sb_egress_t *eg)
{
    return atomic_load(&eg->stop) || sb_service_stopping();
}

static void *run(void *arg)
{
    sb_egress_t *eg = arg;
    sb_bus_pull_t *pull = NULL;
    while (!stopping(eg)) {
        if (!pull) {
            sb_result_t rc =
                sb_bus_pull_create(eg->o.bus, SB_STREAM_OUT, DURABLE, "sb.out.>", &pull);
            if (rc != SB_OK) {
                pull = NULL;
                SB_WARN(MOD, "consumer not bound yet error=\"%s\"", sb_result_str(rc));
                for (int i = 0; i < 10 && !stopping(eg); i++)
                    usleep(100 * 1000);
                continue;
            }
            SB_INFO(MOD, "consuming stream=%s durable=%s", SB_STREAM_OUT, DURABLE);
        }
        int handled = 0;
        sb_result_t rc =
            sb_bus_pull_fetch(pull, FETCH_MAX, FETCH_TIMEOUT_MS, on_outbound, eg, &handled);
        if (rc != SB_OK && rc != SB_E_TIMEOUT) {
            /* NATS away: back off a little; the consumer survives reconnects. */
            for (int i = 0; i < 5 && !stopping(eg); i++)
                usleep(100 * 1000);
        }
    }
    sb_bus_pull_destroy(pull);
    return NULL;
}

sb_result_t sb_egress_start(sb_egress_t **out, const sb_egress_opts_t *opts)
{
    sb_egress_t *eg = sb_xcalloc(1, sizeof *eg);
    eg->o = *opts;
    eg->o.sink_base = NULL; /* only used below */
    atomic_init(&eg->stop, false);
    sb_result_t rc = sb_http_client_create(&eg->client);
    if (rc != SB_OK) goto fail;
    eg->nchans = opts->nchannels;
    eg->chans = sb_xcalloc(eg->nchans ? eg->nchans : 1, sizeof *eg->chans);
    for (size_t i = 0; i < eg->nchans; i++) {
        eg_chan_t *c = &eg->chans[i];
        c->ch = opts->channels[i];
        c->api_base = sb_egress_api_base(opts->cfg, c->ch, opts->sink_base);
        char labels[128];
        for (int k = 0; k < EG_COUNT; k++) {
            snprintf(labels, sizeof labels, "channel=\"%s\",outcome=\"%s\"", c->ch->ops->name,
                     eg_names[k]);
            c->outcomes[k] = sb_metrics_counter("sb_router_egress_total",
                                                "Outbound sends by channel and outcome", labels);
        }
        snprintf(labels, sizeof labels, "channel=\"%s\"", c->ch->ops->name);
        c->seconds =
            sb_metrics_histogram("sb_router_egress_seconds", "Duration of one channel API call",
                                 labels, sb_metrics_latency_buckets, sb_metrics_latency_nbuckets);
        const char *g = opts->cfg->router.channel_api_base;
        SB_INFO(MOD, "channel=%s api_base=%s", c->ch->ops->name,
                g && *g ? "router.channel_api_base"
                        : (*c->ch->api_base ? "channel" : "built-in sink"));
    }
    if (pthread_create(&eg->thread, NULL, run, eg) != 0) {
        rc = SB_E_INTERNAL;
        goto fail;
    }
    *out = eg;
    return SB_OK;
fail:
    for (size_t i = 0; i < eg->nchans; i++)
        free(eg->chans[i].api_base);
    free(eg->chans);
    sb_http_client_destroy(eg->client);
    sb_seal_wipe(eg, sizeof *eg);
    free(eg);
    return rc;
}

void sb_egress_stop(sb_egress_t *eg)
{
    if (!eg) return;
    atomic_store(&eg->stop, true);
    pthread_join(eg->thread, NULL);
    for (size_t i = 0; i < eg->nchans; i++)
        free(eg->chans[i].api_base);
    free(eg->chans);
    sb_http_client_destroy(eg->client);
    sb_seal_wipe(eg->o.recipient_sk, sizeof eg->o.recipient_sk);
    free(eg);
}

/* ---- channel egress helpers (declared in channel.h) ---- */

sb_chan_window_t sb_chan_window_decide(const sb_chan_window_policy_t *p, const sb_outbound_t *o,
                                       int64_t now_ms)
{
    bool has_template = p->template_name && *p->template_name;
    if (p->free_ms <= 0) return SB_CHAN_WINDOW_OPEN;
    if (o->template_name && *o->template_name && has_template) return SB_CHAN_WINDOW_OPEN;
    if (o->last_customer_message_ms <= 0) return SB_CHAN_WINDOW_OPEN;
    int64_t age = now_ms - o->last_customer_message_ms;
    if (age <= p->free_ms) return SB_CHAN_WINDOW_OPEN;
    if (p->agent_tag_ms > 0 && o->author == SWITCHBOARD__V1__AUTHOR__AUTHOR_AGENT &&
        age <= p->agent_tag_ms)
        return SB_CHAN_WINDOW_HUMAN_AGENT;
    if (has_template) return SB_CHAN_WINDOW_TEMPLATE;
    return SB_CHAN_WINDOW_CLOSED;
}

const char *sb_chan_window_name(sb_chan_window_t w)
{
    switch (w) {
    case SB_CHAN_WINDOW_OPEN:
        return "open";
    case SB_CHAN_WINDOW_HUMAN_AGENT:
        return "human_agent";
    case SB_CHAN_WINDOW_TEMPLATE:
        return "template";
    case SB_CHAN_WINDOW_CLOSED:
        return "closed";
    }
    return "unknown";
}

void sb_chan_response_set_error(sb_chan_response_t *res, const char *s)
{
    res->error[0] = '\0';
    if (!s) return;
    size_t n = 0;
    for (; s[n] && n < sizeof res->error - 1; n++) {
        char ch = s[n];
        if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
              ch == '_' || ch == '.' || ch == '-'))
            return; /* may be free text: keep nothing */
        res->error[n] = ch;
    }
    res->error[n] = '\0';
}

void sb_chan_response_set_id(sb_chan_response_t *res, const char *id)
{
    res->provider_id[0] = '\0';
    if (!id || strlen(id) >= sizeof res->provider_id) return;
    snprintf(res->provider_id, sizeof res->provider_id, "%s", id);
}

void sb_chan_graph_parse_response(const char *body, size_t len, sb_chan_response_t *res)
{
    cJSON *j = sb_chan_json_parse((const uint8_t *)body, len);
    if (!j) return;
    const cJSON *msgs = sb_chan_json_arr(j, "messages");
    const cJSON *first = msgs ? cJSON_GetArrayItem(msgs, 0) : NULL;
    const char *id = first ? sb_chan_json_str(first, "id", SB_CHAN_MAX_ID - 1) : NULL;
    if (!id) id = sb_chan_json_str(j, "message_id", SB_CHAN_MAX_ID - 1);
    if (id) sb_chan_response_set_id(res, id);
    const cJSON *err = sb_chan_json_obj(j, "error");
    const cJSON *code = err ? cJSON_GetObjectItemCaseSensitive(err, "code") : NULL;
    if (cJSON_IsNumber(code)) {
        static const int64_t transient[] = {1, 2, 4, 17, 32, 613, 80007, 130429, 131056, 133004};
        int64_t c = (int64_t)code->valuedouble;
        char tok[32];
        res->error_code = c;
        res->ok = false;
        const cJSON *sub = cJSON_GetObjectItemCaseSensitive(err, "error_subcode");
        if (cJSON_IsNumber(sub))
            snprintf(tok, sizeof tok, "%lld.%lld", (long long)c, (long long)sub->valuedouble);
        else
            snprintf(tok, sizeof tok, "%lld", (long long)c);
        sb_chan_response_set_error(res, tok);
        for (size_t i = 0; i < sizeof transient / sizeof transient[0]; i++)
            if (c == transient[i]) res->retry = true;
    }
    cJSON_Delete(j);
}
