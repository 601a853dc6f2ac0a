/* Egress: Outbound messages on SB_OUT become channel API calls (the contract and the three
 * threads are described in egress.h and docs/egress.md).
 *
 * A job is one fetched Outbound on its way out. Its life: the consumer thread creates it
 * (decode, ledger check, recipient, window, render) and counts it in the pipeline; the loop
 * thread queues it behind its channel's rate limit and the concurrency limit, sends it and
 * records the answer; the completion thread judges the answer, writes the ledger, publishes
 * the event, settles the JetStream message and frees the job. Only the loop thread touches a
 * job between post and completion; the in-flight list (under mu) lets the completion thread
 * send +WPI for jobs that take long (rate-limit waits, slow providers), so that AckWait never
 * hands a message in flight to another router copy. */
#include "egress.h"

#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "ingress.h"
#include "sb/codec.h"
#include "sb/httpclient.h"
#include "sb/log.h"
#include "sb/metrics.h"
#include "sb/service.h"

#define MOD "egress"
#define DURABLE "egress"
#define FETCH_MAX 64
#define FETCH_TIMEOUT_MS 500
#define MAX_RESPONSE (64 * 1024)
#define MAX_SEALED (64 * 1024)
#define LEDGER_VALUE_MAX 128
#define LEDGER_MIN_TTL_S 86400
#define NAK_UNAVAILABLE_MS 1000 /* ledger or bus away: try again soon */

enum { EG_SENT, EG_RETRIED, EG_FAILED, EG_DEDUP, EG_WINDOW, EG_COUNT };
static const char *const eg_names[EG_COUNT] = {"sent", "retried", "failed", "deduplicated",
                                               "window_closed"};

typedef struct job job_t;

typedef struct eg_chan {
    sb_channel_t *ch;
    char *api_base;
    sb_metric_t *outcomes[EG_COUNT];
    sb_metric_t *seconds;
    /* Loop thread only: the rate limit, GCRA (a token bucket): sends are spaced interval_ns
     * apart on average, and a burst of up to rate/10 sends (at least 1) may go at once, so a
     * quiet channel adds no delay while any second stays within rate + rate/10. */
    uint64_t interval_ns;  /* 0 = unlimited */
    uint64_t tolerance_ns; /* (burst - 1) * interval_ns */
    uint64_t next_ns;      /* theoretical arrival time of the next send */
    job_t *wait_head, *wait_tail;
    bool timer_armed;
} eg_chan_t;

enum { J_PENDING, J_ANSWERED, J_CANCELED };

struct job {
    sb_egress_t *eg;
    eg_chan_t *c;
    sb_bus_delivery_t *d;
    uint64_t attempt; /* = deliveries so far, 1 on first */
    sb_outbound_t *o;
    sb_chan_http_t req;
    char ledger_key[SB_SEAL_HASH_HEX];
    uint64_t last_wpi_ns;
    /* The answer (loop thread writes, completion thread reads after the hand-over). */
    int state;
    sb_result_t net_rc;
    long status;
    long retry_after_s;
    sb_buf_t body;
    double seconds;
    size_t slot;          /* conv_inflight slot while in flight */
    job_t *next;          /* wait / ready / completion queue */
    job_t *iprev, *inext; /* in-flight list, under mu */
};

struct sb_egress {
    sb_egress_opts_t o;
    eg_chan_t *chans;
    size_t nchans;
    int64_t max_attempts;
    int64_t ledger_ttl_s;
    sb_http_async_t *loop;
    sb_bus_pull_t *pull; /* bound by the consumer thread, destroyed last */
    sb_bus_kv_t *ledger; /* idem */
    pthread_t fetch_thread, done_thread;
    bool fetch_started, done_started;
    atomic_bool stop;
    const char *crash_hook; /* SB_TEST_EGRESS_CRASH (tests only) */
    sb_metric_t *inflight_gauge;

    pthread_mutex_t mu;
    pthread_cond_t cv;
    size_t pipeline; /* jobs posted and not yet settled */
    size_t pipeline_max;
    job_t *done_head, *done_tail;
    job_t *inflight;
    bool loop_gone; /* the loop was destroyed: no completion will arrive any more */

    /* Loop thread only. */
    job_t *ready_head, *ready_tail;
    size_t sending;
    size_t concurrency;
    const char **conv_inflight; /* concurrency slots: conversation of each call in flight */
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

sb_result_t sb_egress_check_config(const sb_config_t *cfg, char *err, size_t errlen)
{
    const sb_config_router_t *r = &cfg->router;
    if (cfg->nats.max_deliver > 0 && r->egress_max_attempts > cfg->nats.max_deliver) {
        snprintf(err, errlen,
                 "router.egress_max_attempts (%lld) must not exceed nats.max_deliver (%lld): "
                 "JetStream would drop the message before egress reports it failed",
                 (long long)r->egress_max_attempts, (long long)cfg->nats.max_deliver);
        return SB_E_CONFIG;
    }
    if (r->egress_backoff_ms > r->egress_backoff_max_ms) {
        snprintf(err, errlen,
                 "router.egress_backoff_ms (%lld) must not exceed router.egress_backoff_max_ms "
                 "(%lld)",
                 (long long)r->egress_backoff_ms, (long long)r->egress_backoff_max_ms);
        return SB_E_CONFIG;
    }
    return SB_OK;
}

int64_t sb_egress_backoff_ms(int64_t base_ms, int64_t max_ms, uint64_t attempt,
                             int64_t retry_after_ms, uint64_t rnd)
{
    if (base_ms < 1) base_ms = 1;
    if (max_ms < base_ms) max_ms = base_ms;
    int64_t cap = base_ms;
    for (uint64_t i = 1; i < attempt && cap < max_ms; i++)
        cap = cap > max_ms / 2 ? max_ms : cap * 2;
    if (cap > max_ms) cap = max_ms;
    int64_t d = base_ms + (int64_t)(rnd % (uint64_t)(cap - base_ms + 1));
    if (retry_after_ms > d) d = retry_after_ms;
    return d;
}

static eg_chan_t *find_chan(sb_egress_t *eg, const char *name)
{
    for (size_t i = 0; i < eg->nchans; i++)
        if (name && strcmp(eg->chans[i].ch->ops->name, name) == 0) return &eg->chans[i];
    return NULL;
}

static void count(eg_chan_t *c, int outcome)
{
    if (c) sb_metric_inc(c->outcomes[outcome]);
}

static const char *s_or(const char *s, const char *def)
{
    return s && *s ? s : def;
}

/* ---- events -------------------------------------------------------------------------------- */

typedef struct verdict {
    const char *detail; /* reason code */
    long http_status;   /* 0: none */
    int64_t error_code; /* provider's numeric code */
    const char *error;  /* provider's token ("" none) */
    const char *ref;    /* keyed hash of the provider's message id ("" none) */
} verdict_t;

/* Publishes the delivery (sent) or delivery-failed event of o, with a deterministic id so that
 * a repeat (after a crash, from the ledger) is dropped by JetStream. */
static sb_result_t publish_event(sb_egress_t *eg, const sb_outbound_t *o, bool sent,
                                 const verdict_t *v)
{
    sb_event_t ev = SWITCHBOARD__V1__EVENT__INIT;
    char *event_id = sb_xasprintf("%s:%s", sent ? "dlv" : "dlf", s_or(o->message_id, ""));
    int64_t now = sb_now_ms();
    ev.event_id = event_id;
    ev.type = sent ? SWITCHBOARD__V1__EVENT_TYPE__EVENT_DELIVERY
                   : SWITCHBOARD__V1__EVENT_TYPE__EVENT_DELIVERY_FAILED;
    ev.conversation_id = o->conversation_id;
    ev.channel = o->channel;
    ev.at_ms = now;
    ev.state = (char *)(sent ? "sent" : "failed");
    ev.detail = (char *)v->detail;
    ev.error_code = v->error_code;
    ev.http_status = (int32_t)v->http_status;
    ev.provider_error = (char *)s_or(v->error, "");
    ev.provider_message_ref = (char *)s_or(v->ref, "");
    ev.partition = o->partition;
    ev.message_id = o->message_id;
    ev.intent = o->intent;
    ev.agent_id = o->agent_id;
    if (sent && o->created_at_ms > 0 && now >= o->created_at_ms)
        ev.value_ms = now - o->created_at_ms; /* time from the answer to the provider's 2xx */
    uint8_t *data = NULL;
    size_t len = 0;
    sb_result_t rc = SB_CODEC_PACK(&ev, &data, &len);
    if (rc == SB_OK)
        rc = sb_bus_publish(eg->o.bus, sent ? "sb.ev.delivery" : "sb.ev.delivery_failed", data, len,
                            event_id, NULL);
    free(data);
    free(event_id);
    return rc == SB_OK ? SB_OK : SB_E_UNAVAILABLE;
}

/* Fails o for good: event, metric, log. SB_OK means the message may be acked. */
static sb_result_t give_up(sb_egress_t *eg, eg_chan_t *c, const sb_outbound_t *o,
                           const verdict_t *v, int outcome, uint64_t attempt)
{
    if (publish_event(eg, o, false, v) != SB_OK) return SB_E_UNAVAILABLE;
    count(c, outcome);
    SB_WARN(MOD,
            "delivery failed channel=%s message_id=%s detail=%s status=%ld provider_error=%s "
            "attempt=%" PRIu64,
            s_or(o->channel, "-"), s_or(o->message_id, "-"), v->detail, v->http_status,
            s_or(v->error, "-"), attempt);
    return SB_OK;
}

/* ---- the sent-ledger ----------------------------------------------------------------------- */

/* KV keys allow [-/_=.a-zA-Z0-9]: the key is a hash of the message id. */
static void ledger_key(char out[SB_SEAL_HASH_HEX], const char *message_id)
{
    uint8_t h[32];
    sb_seal_sha256(h, message_id, strlen(message_id));
    sb_seal_hex_encode(out, h, (SB_SEAL_HASH_HEX - 1) / 2);
}

/* ---- settling ------------------------------------------------------------------------------ */

static void job_free(job_t *j)
{
    sb_chan_http_free(&j->req);
    sb_buf_free(&j->body);
    SB_CODEC_FREE(j->o);
    free(j);
}

static void settle(sb_egress_t *eg, sb_bus_delivery_t *d, sb_result_t verdict, int64_t delay_ms)
{
    (void)eg;
    (void)sb_bus_delivery_settle(d, verdict, delay_ms);
}

/* The nak delay of a retry of attempt with the provider's minimum wait. */
static int64_t retry_delay(sb_egress_t *eg, uint64_t attempt, int64_t retry_after_ms)
{
    uint64_t rnd = 0;
    sb_seal_random(&rnd, sizeof rnd);
    return sb_egress_backoff_ms(eg->o.cfg->router.egress_backoff_ms,
                                eg->o.cfg->router.egress_backoff_max_ms, attempt, retry_after_ms,
                                rnd);
}

/* A send went through: ledger, crash hook (tests), event, ack. */
static void settle_sent(sb_egress_t *eg, job_t *j, long status, const char *provider_id)
{
    const sb_outbound_t *o = j->o;
    char ref[SB_SEAL_HASH_HEX] = "";
    if (provider_id && *provider_id)
        sb_ingress_provider_hash(ref, eg->o.id_secret, j->c->ch->ops->name, provider_id);
    char rec[LEDGER_VALUE_MAX];
    snprintf(rec, sizeof rec, "v1 %lld %ld %s", (long long)sb_now_ms(), status, *ref ? ref : "-");
    if (eg->crash_hook && strcmp(eg->crash_hook, "before_ledger") == 0) raise(SIGKILL);
    if (!eg->ledger || sb_bus_kv_put(eg->ledger, j->ledger_key, rec, strlen(rec)) != SB_OK)
        SB_WARN(MOD, "ledger write failed channel=%s message_id=%s: a redelivery would send again",
                o->channel, o->message_id);
    if (eg->crash_hook && strcmp(eg->crash_hook, "after_ledger") == 0) raise(SIGKILL);
    count(j->c, EG_SENT);
    SB_INFO(MOD, "sent channel=%s message_id=%s status=%ld bytes=%zu attempt=%" PRIu64, o->channel,
            o->message_id, status, j->req.body.len, j->attempt);
    verdict_t v = {.detail = "sent", .http_status = status, .ref = ref};
    if (publish_event(eg, o, true, &v) != SB_OK) {
        /* The ledger has it: the redelivery publishes the event and sends nothing. */
        settle(eg, j->d, SB_E_UNAVAILABLE, NAK_UNAVAILABLE_MS);
        return;
    }
    settle(eg, j->d, SB_OK, 0);
}

/* A failed attempt that may be retried: nak with back-off, or give up after the last one. */
static void settle_retry(sb_egress_t *eg, job_t *j, const verdict_t *v, int64_t retry_after_ms)
{
    if (j->attempt >= (uint64_t)eg->max_attempts) {
        verdict_t g = *v;
        g.detail = "attempts_exhausted";
        sb_result_t rc = give_up(eg, j->c, j->o, &g, EG_FAILED, j->attempt);
        settle(eg, j->d, rc == SB_OK ? SB_OK : SB_E_UNAVAILABLE,
               rc == SB_OK ? 0 : NAK_UNAVAILABLE_MS);
        return;
    }
    int64_t delay = retry_delay(eg, j->attempt, retry_after_ms);
    count(j->c, EG_RETRIED);
    SB_WARN(MOD,
            "send will be retried channel=%s message_id=%s status=%ld provider_error=%s "
            "attempt=%" PRIu64 " delay_ms=%lld error=\"%s\"",
            j->o->channel, j->o->message_id, v->http_status, s_or(v->error, "-"), j->attempt,
            (long long)delay, v->detail);
    settle(eg, j->d, SB_E_UNAVAILABLE, delay);
}

static void settle_failed(sb_egress_t *eg, job_t *j, const verdict_t *v, int outcome)
{
    sb_result_t rc = give_up(eg, j->c, j->o, v, outcome, j->attempt);
    settle(eg, j->d, rc == SB_OK ? SB_OK : SB_E_UNAVAILABLE, rc == SB_OK ? 0 : NAK_UNAVAILABLE_MS);
}

static bool transient(long status)
{
    return status == 0 || status == 408 || status == 425 || status == 429 || status >= 500;
}

/* Judges an answered job (completion thread). */
static void judge(sb_egress_t *eg, job_t *j)
{
    sb_metric_observe(j->c->seconds, j->seconds);
    long status = j->net_rc == SB_OK || j->net_rc == SB_E_TOO_LARGE ? j->status : 0;
    sb_chan_response_t res;
    memset(&res, 0, sizeof res);
    res.ok = j->net_rc == SB_OK && status >= 200 && status < 300;
    if (j->net_rc == SB_E_TOO_LARGE && status >= 200 && status < 300) res.ok = true;
    res.retry = !res.ok && (j->net_rc != SB_OK || transient(status));
    res.retry_after_ms = j->retry_after_s >= 0 ? (int64_t)j->retry_after_s * 1000 : -1;
    if (j->net_rc == SB_OK && j->c->ch->ops->parse_response) {
        if (j->body.len == 0) sb_buf_append(&j->body, "", 1), j->body.len = 0;
        j->c->ch->ops->parse_response(j->c->ch, status, j->body.data ? j->body.data : "",
                                      j->body.len, &res);
    }
    if (res.ok) {
        settle_sent(eg, j, status, res.provider_id);
        return;
    }
    verdict_t v = {.detail = j->net_rc == SB_OK ? "rejected" : sb_result_str(j->net_rc),
                   .http_status = status,
                   .error_code = res.error_code,
                   .error = res.error};
    if (res.retry) {
        settle_retry(eg, j, &v, res.retry_after_ms);
        return;
    }
    v.detail = "rejected";
    settle_failed(eg, j, &v, EG_FAILED);
}

/* ---- the loop side (loop thread only) ------------------------------------------------------ */

static void complete(job_t *j, int state)
{
    sb_egress_t *eg = j->eg;
    j->state = state;
    pthread_mutex_lock(&eg->mu);
    j->next = NULL;
    if (eg->done_tail)
        eg->done_tail->next = j;
    else
        eg->done_head = j;
    eg->done_tail = j;
    pthread_cond_broadcast(&eg->cv);
    pthread_mutex_unlock(&eg->mu);
}

static void ready_pump(sb_egress_t *eg);

static void on_answer(void *ctx, sb_http_async_result_t *res)
{
    job_t *j = ctx;
    sb_egress_t *eg = j->eg;
    eg->sending--;
    eg->conv_inflight[j->slot] = NULL;
    sb_metric_set(eg->inflight_gauge, (double)eg->sending);
    j->net_rc = res->rc;
    j->status = res->resp.status;
    j->retry_after_s = res->resp.retry_after_s;
    j->seconds = res->seconds;
    j->body = res->resp.body;
    res->resp.body = (sb_buf_t){0};
    complete(j, J_ANSWERED);
    ready_pump(eg);
}

/* True when a call of j's conversation is in flight: replies of one conversation go out one at
 * a time, in order (when nothing fails; a retry can still reorder, see docs/egress.md). */
static bool conv_busy(const sb_egress_t *eg, const job_t *j)
{
    const char *conv = j->o->conversation_id;
    if (!conv || !*conv) return false;
    for (size_t i = 0; i < eg->concurrency; i++)
        if (eg->conv_inflight[i] && strcmp(eg->conv_inflight[i], conv) == 0) return true;
    return false;
}

static void ready_pump(sb_egress_t *eg)
{
    bool stopping = sb_http_async_stopping(eg->loop);
    job_t *prev = NULL;
    job_t *j = eg->ready_head;
    while (j && (stopping || eg->sending < eg->concurrency)) {
        job_t *next = j->next;
        if (!stopping && conv_busy(eg, j)) {
            prev = j; /* waits for its conversation's call; later ones may go */
            j = next;
            continue;
        }
        if (prev)
            prev->next = next;
        else
            eg->ready_head = next;
        if (eg->ready_tail == j) eg->ready_tail = prev;
        j->next = NULL;
        if (stopping) {
            complete(j, J_CANCELED);
            j = next;
            continue;
        }
        sb_http_async_request_t r = {.method = j->req.method,
                                     .url = j->req.url,
                                     .headers = (const char *const *)j->req.headers,
                                     .body = j->req.body.data,
                                     .len = j->req.body.len,
                                     .timeout_ms = (long)eg->o.cfg->router.egress_timeout_ms,
                                     .max_response = MAX_RESPONSE};
        sb_result_t rc = sb_http_async_send(eg->loop, &r, on_answer, j);
        if (rc != SB_OK) {
            j->net_rc = rc;
            complete(j, rc == SB_E_UNAVAILABLE ? J_CANCELED : J_ANSWERED);
            j = next;
            continue;
        }
        for (size_t i = 0; i < eg->concurrency; i++) {
            if (!eg->conv_inflight[i]) {
                eg->conv_inflight[i] = j->o->conversation_id;
                j->slot = i;
                break;
            }
        }
        eg->sending++;
        sb_metric_set(eg->inflight_gauge, (double)eg->sending);
        j = next;
    }
}

static void chan_pump(eg_chan_t *c, sb_egress_t *eg);

typedef struct chan_timer {
    eg_chan_t *c;
    sb_egress_t *eg;
} chan_timer_t;

static void on_rate_timer(void *ctx)
{
    chan_timer_t *t = ctx;
    t->c->timer_armed = false;
    chan_pump(t->c, t->eg);
    free(t);
}

/* Moves the jobs of c that the rate limit allows now to the ready queue; arms a timer for the
 * rest. Over-limit jobs wait, they are never dropped. */
static void chan_pump(eg_chan_t *c, sb_egress_t *eg)
{
    bool stopping = sb_http_async_stopping(eg->loop);
    while (c->wait_head) {
        uint64_t now = sb_mono_ns();
        if (!stopping && c->interval_ns > 0 && now + c->tolerance_ns < c->next_ns) {
            if (!c->timer_armed) {
                chan_timer_t *t = sb_xcalloc(1, sizeof *t);
                t->c = c;
                t->eg = eg;
                c->timer_armed = true;
                uint64_t ms = (c->next_ns - c->tolerance_ns - now + 999999) / 1000000;
                sb_http_async_after(eg->loop, ms, on_rate_timer, t);
            }
            break;
        }
        job_t *j = c->wait_head;
        c->wait_head = j->next;
        if (!c->wait_head) c->wait_tail = NULL;
        j->next = NULL;
        if (c->interval_ns > 0) c->next_ns = (now > c->next_ns ? now : c->next_ns) + c->interval_ns;
        if (eg->ready_tail)
            eg->ready_tail->next = j;
        else
            eg->ready_head = j;
        eg->ready_tail = j;
    }
    ready_pump(eg);
}

static void job_start(void *ctx)
{
    job_t *j = ctx;
    eg_chan_t *c = j->c;
    j->next = NULL;
    if (c->wait_tail)
        c->wait_tail->next = j;
    else
        c->wait_head = j;
    c->wait_tail = j;
    chan_pump(c, j->eg);
}

/* ---- the consumer side --------------------------------------------------------------------- */

static bool stopping(sb_egress_t *eg)
{
    return atomic_load(&eg->stop) || sb_service_stopping();
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

static void free_recipient(sb_recipient_t *rcpt)
{
    if (!rcpt) return;
    /* The recipient holds the customer's address: wipe before freeing. */
    if (rcpt->address) sb_seal_wipe(rcpt->address, strlen(rcpt->address));
    SB_CODEC_FREE(rcpt);
}

/* The ledger says it was sent: publish the sent event again (a no-op when the first one made
 * it: same Nats-Msg-Id) and ack. */
static void settle_duplicate(sb_egress_t *eg, job_t *j, const char *rec, size_t len)
{
    char buf[LEDGER_VALUE_MAX + 1];
    snprintf(buf, sizeof buf, "%.*s", (int)len, rec);
    long long at = 0;
    long status = 0;
    char ref[SB_SEAL_HASH_HEX + 1] = "";
    if (sscanf(buf, "v1 %lld %ld %32s", &at, &status, ref) < 2) status = 0;
    if (strcmp(ref, "-") == 0) ref[0] = '\0';
    count(j->c, EG_DEDUP);
    SB_INFO(MOD, "already sent channel=%s message_id=%s attempt=%" PRIu64 ": not sending again",
            j->o->channel, j->o->message_id, j->attempt);
    verdict_t v = {.detail = "sent", .http_status = status, .ref = ref};
    sb_result_t rc = publish_event(eg, j->o, true, &v);
    settle(eg, j->d, rc == SB_OK ? SB_OK : SB_E_UNAVAILABLE, rc == SB_OK ? 0 : NAK_UNAVAILABLE_MS);
}

/* Prepares one delivery; returns true when the job went to the loop (the pipeline then owns
 * it), false when it was settled here. */
static bool prepare(sb_egress_t *eg, sb_bus_delivery_t *d)
{
    const sb_bus_msg_t *msg = sb_bus_delivery_msg(d);
    job_t *j = sb_xcalloc(1, sizeof *j);
    j->eg = eg;
    j->d = d;
    j->attempt = msg->num_delivered ? msg->num_delivered : 1;
    sb_recipient_t *rcpt = NULL;
    bool posted = false;
    if (SB_CODEC_UNPACK(switchboard__v1__outbound__descriptor, msg->data, msg->len, &j->o) !=
        SB_OK) {
        SB_WARN(MOD, "undecodable outbound seq=%" PRIu64 " size=%zu", msg->stream_seq, msg->len);
        settle(eg, d, SB_E_INVALID, 0); /* poison: terminated, never redelivered */
        goto out;
    }
    const sb_outbound_t *o = j->o;
    j->c = find_chan(eg, o->channel);
    if (!j->c || !o->message_id || !*o->message_id) {
        verdict_t v = {.detail = j->c ? "bad_message" : "unknown_channel"};
        settle_failed(eg, j, &v, EG_FAILED);
        goto out;
    }
    eg_chan_t *c = j->c;

    /* Sent before (a redelivery after a crash, or the same Outbound published twice)? */
    ledger_key(j->ledger_key, o->message_id);
    if (eg->ledger) {
        char rec[LEDGER_VALUE_MAX];
        size_t rlen = 0;
        sb_result_t lr = sb_bus_kv_get(eg->ledger, j->ledger_key, rec, sizeof rec, &rlen);
        if (lr == SB_OK) {
            settle_duplicate(eg, j, rec, rlen);
            goto out;
        }
        if (lr != SB_E_NOT_FOUND) {
            /* Cannot tell: never risk a second send. */
            SB_WARN(MOD, "ledger unavailable message_id=%s: retry later", o->message_id);
            settle(eg, d, SB_E_UNAVAILABLE, NAK_UNAVAILABLE_MS);
            goto out;
        }
    }

    if (open_recipient(eg, o, &rcpt) != SB_OK) {
        verdict_t v = {.detail = "bad_recipient"};
        settle_failed(eg, j, &v, EG_FAILED);
        goto out;
    }
    sb_chan_send_t send = {.out = o,
                           .rcpt = rcpt,
                           .api_base = c->api_base,
                           .now_s = sb_router_now_s(),
                           .window =
                               sb_chan_window_decide(&c->ch->window, o, sb_router_now_s() * 1000),
                           .template_name = c->ch->window.template_name,
                           .template_language = c->ch->window.template_language};
    if (send.window == SB_CHAN_WINDOW_CLOSED) {
        verdict_t v = {.detail = "window_closed"};
        settle_failed(eg, j, &v, EG_WINDOW);
        goto out;
    }
    if (send.window != SB_CHAN_WINDOW_OPEN)
        SB_INFO(MOD, "window channel=%s message_id=%s window=%s", o->channel, o->message_id,
                sb_chan_window_name(send.window));

    if (c->ch->ops->deliver) {
        char pid[SB_CHAN_MAX_ID] = "";
        sb_result_t dr = c->ch->ops->deliver(c->ch, &send, pid);
        if (dr == SB_OK) {
            settle_sent(eg, j, 200, pid);
            goto out;
        }
        if (dr == SB_E_UNAVAILABLE) {
            verdict_t v = {.detail = "unavailable"};
            settle_retry(eg, j, &v, -1);
            goto out;
        }
        if (dr != SB_E_NOT_FOUND) {
            verdict_t v = {.detail = "rejected"};
            settle_failed(eg, j, &v, EG_FAILED);
            goto out;
        }
    }
    if (c->ch->ops->render(c->ch, &send, &j->req) != SB_OK) {
        verdict_t v = {.detail = "render"};
        settle_failed(eg, j, &v, EG_FAILED);
        goto out;
    }
    /* The idempotency key lets a provider that honours it (and our own widget backend) drop a
     * resend after a lost answer; see docs/egress.md for who does. */
    sb_chan_http_add_header(&j->req, "Idempotency-Key: %s", o->message_id);
    free_recipient(rcpt);
    rcpt = NULL;

    j->last_wpi_ns = sb_mono_ns();
    pthread_mutex_lock(&eg->mu);
    eg->pipeline++;
    j->inext = eg->inflight;
    if (eg->inflight) eg->inflight->iprev = j;
    eg->inflight = j;
    pthread_mutex_unlock(&eg->mu);
    if (sb_http_async_post(eg->loop, job_start, j) != SB_OK) {
        /* Stopping: hand it to the completion thread as canceled. */
        j->state = J_CANCELED;
        pthread_mutex_lock(&eg->mu);
        j->next = NULL;
        if (eg->done_tail)
            eg->done_tail->next = j;
        else
            eg->done_head = j;
        eg->done_tail = j;
        pthread_cond_broadcast(&eg->cv);
        pthread_mutex_unlock(&eg->mu);
    }
    posted = true;
out:
    free_recipient(rcpt);
    if (!posted) job_free(j);
    return posted;
}

static void *fetch_run(void *arg)
{
    sb_egress_t *eg = arg;
    sb_bus_delivery_t *batch[FETCH_MAX];
    while (!stopping(eg)) {
        if (!eg->pull || !eg->ledger) {
            sb_result_t rc = SB_OK;
            if (!eg->ledger)
                rc = sb_bus_kv_open(eg->o.bus, SB_EGRESS_LEDGER_BUCKET, eg->ledger_ttl_s,
                                    &eg->ledger);
            if (rc == SB_OK && !eg->pull)
                rc = sb_bus_pull_create(eg->o.bus, SB_STREAM_OUT, DURABLE, "sb.out.>", &eg->pull);
            if (rc != SB_OK) {
                SB_WARN(MOD, "consumer or ledger not bound yet error=\"%s\"", sb_result_str(rc));
                for (int i = 0; i < 10 && !stopping(eg); i++)
                    usleep(100 * 1000);
                continue;
            }
            SB_INFO(MOD, "consuming stream=%s durable=%s ledger=%s concurrency=%zu", SB_STREAM_OUT,
                    DURABLE, SB_EGRESS_LEDGER_BUCKET, eg->concurrency);
        }
        pthread_mutex_lock(&eg->mu);
        while (eg->pipeline >= eg->pipeline_max && !stopping(eg)) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += 200 * 1000000L;
            if (ts.tv_nsec >= 1000000000L) ts.tv_sec++, ts.tv_nsec -= 1000000000L;
            pthread_cond_timedwait(&eg->cv, &eg->mu, &ts);
        }
        size_t room = eg->pipeline_max - eg->pipeline;
        pthread_mutex_unlock(&eg->mu);
        if (stopping(eg)) break;
        int want = room < FETCH_MAX ? (int)room : FETCH_MAX;
        int n = 0;
        sb_result_t rc = sb_bus_pull_take(eg->pull, want, FETCH_TIMEOUT_MS, batch, &n);
        if (rc != SB_OK) {
            /* NATS away: back off a little; the consumer survives reconnects. */
            for (int i = 0; i < 5 && !stopping(eg); i++)
                usleep(100 * 1000);
            continue;
        }
        for (int i = 0; i < n; i++)
            (void)prepare(eg, batch[i]);
    }
    return NULL;
}

/* ---- the completion side ------------------------------------------------------------------- */

static void finish(sb_egress_t *eg, job_t *j)
{
    pthread_mutex_lock(&eg->mu);
    if (j->iprev)
        j->iprev->inext = j->inext;
    else
        eg->inflight = j->inext;
    if (j->inext) j->inext->iprev = j->iprev;
    pthread_mutex_unlock(&eg->mu);

    if (j->state == J_CANCELED) {
        /* Shutting down before it was sent: another copy (or our restart) takes it. */
        settle(eg, j->d, SB_E_UNAVAILABLE, 0);
    } else {
        judge(eg, j);
    }
    job_free(j);
    pthread_mutex_lock(&eg->mu);
    eg->pipeline--;
    pthread_cond_broadcast(&eg->cv);
    pthread_mutex_unlock(&eg->mu);
}

/* +WPI for jobs in flight longer than half of AckWait (completion thread). */
static void keep_alive(sb_egress_t *eg, uint64_t every_ns)
{
    uint64_t now = sb_mono_ns();
    pthread_mutex_lock(&eg->mu);
    for (job_t *j = eg->inflight; j; j = j->inext) {
        if (now - j->last_wpi_ns >= every_ns) {
            j->last_wpi_ns = now;
            if (sb_bus_delivery_in_progress(j->d) != SB_OK)
                SB_DEBUG(MOD, "in-progress signal failed message_id=%s",
                         j->o && j->o->message_id ? j->o->message_id : "-");
        }
    }
    pthread_mutex_unlock(&eg->mu);
}

static void *done_run(void *arg)
{
    sb_egress_t *eg = arg;
    int64_t ack_wait_ms = (eg->o.cfg->nats.ack_wait_s > 0 ? eg->o.cfg->nats.ack_wait_s : 30) * 1000;
    uint64_t every_ns = (uint64_t)(ack_wait_ms / 2) * 1000000ull;
    uint64_t last_keep = sb_mono_ns();
    pthread_mutex_lock(&eg->mu);
    for (;;) {
        while (!eg->done_head && !(eg->loop_gone && eg->pipeline == 0)) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_sec += 1;
            pthread_cond_timedwait(&eg->cv, &eg->mu, &ts);
            if (sb_mono_ns() - last_keep >= every_ns / 2) break;
        }
        job_t *list = eg->done_head;
        eg->done_head = eg->done_tail = NULL;
        bool finished = !list && eg->loop_gone && eg->pipeline == 0;
        pthread_mutex_unlock(&eg->mu);
        while (list) {
            job_t *next = list->next;
            finish(eg, list);
            list = next;
        }
        if (sb_mono_ns() - last_keep >= every_ns / 2) {
            keep_alive(eg, every_ns);
            last_keep = sb_mono_ns();
        }
        pthread_mutex_lock(&eg->mu);
        if (finished) break;
    }
    pthread_mutex_unlock(&eg->mu);
    return NULL;
}

/* ---- start / stop -------------------------------------------------------------------------- */

static void free_chans(sb_egress_t *eg)
{
    for (size_t i = 0; i < eg->nchans; i++)
        free(eg->chans[i].api_base);
    free(eg->chans);
    eg->chans = NULL;
}

sb_result_t sb_egress_start(sb_egress_t **out, const sb_egress_opts_t *opts)
{
    char err[256];
    if (sb_egress_check_config(opts->cfg, err, sizeof err) != SB_OK) {
        SB_ERROR(MOD, "%s", err);
        return SB_E_CONFIG;
    }
    sb_egress_t *eg = sb_xcalloc(1, sizeof *eg);
    eg->o = *opts;
    eg->o.sink_base = NULL; /* only used below */
    const sb_config_t *cfg = opts->cfg;
    atomic_init(&eg->stop, false);
    pthread_mutex_init(&eg->mu, NULL);
    pthread_cond_init(&eg->cv, NULL);
    eg->max_attempts = cfg->router.egress_max_attempts > 0 ? cfg->router.egress_max_attempts : 1;
    if (cfg->nats.max_deliver > 0 && cfg->nats.max_deliver < eg->max_attempts)
        eg->max_attempts = cfg->nats.max_deliver;
    eg->concurrency =
        cfg->router.egress_concurrency > 0 ? (size_t)cfg->router.egress_concurrency : 1;
    /* Room for jobs waiting on a rate limit besides those in flight; JetStream's
     * MaxAckPending (1000) is the outer bound. */
    eg->pipeline_max = eg->concurrency * 4 < 64 ? 64 : eg->concurrency * 4;
    if (eg->pipeline_max > 1000) eg->pipeline_max = 1000;
    /* Every Outbound that can still be delivered is younger than the stream's max age. */
    eg->ledger_ttl_s = cfg->nats.stream_max_age_s > LEDGER_MIN_TTL_S ? cfg->nats.stream_max_age_s
                                                                     : LEDGER_MIN_TTL_S;
    const char *hook = getenv("SB_TEST_EGRESS_CRASH");
    if (hook && *hook) {
        eg->crash_hook = hook;
        SB_WARN(MOD,
                "test hook SB_TEST_EGRESS_CRASH=%s is set: the router kills itself after "
                "its first successful send",
                hook);
    }
    eg->inflight_gauge =
        sb_metrics_gauge("sb_router_egress_inflight", "Channel API calls in flight", NULL);
    eg->conv_inflight = sb_xcalloc(eg->concurrency, sizeof *eg->conv_inflight);
    sb_result_t rc = sb_http_async_create(&eg->loop, "egress");
    if (rc != SB_OK) goto fail;
    eg->nchans = opts->nchannels;
    eg->chans = sb_xcalloc(eg->nchans ? eg->nchans : 1, sizeof *eg->chans);
    for (size_t i = 0; i < eg->nchans; i++) {
        eg_chan_t *c = &eg->chans[i];
        c->ch = opts->channels[i];
        c->api_base = sb_egress_api_base(cfg, c->ch, opts->sink_base);
        c->interval_ns = c->ch->rate_per_s > 0 ? 1000000000ull / (uint64_t)c->ch->rate_per_s : 0;
        uint64_t burst = c->ch->rate_per_s >= 20 ? (uint64_t)c->ch->rate_per_s / 10 : 1;
        c->tolerance_ns = (burst - 1) * c->interval_ns;
        char labels[128];
        for (int k = 0; k < EG_COUNT; k++) {
            snprintf(labels, sizeof labels, "channel=\"%s\",outcome=\"%s\"", c->ch->ops->name,
                     eg_names[k]);
            c->outcomes[k] = sb_metrics_counter("sb_router_egress_total",
                                                "Outbound messages by channel and outcome", labels);
        }
        snprintf(labels, sizeof labels, "channel=\"%s\"", c->ch->ops->name);
        c->seconds =
            sb_metrics_histogram("sb_router_egress_seconds", "Duration of one channel API call",
                                 labels, sb_metrics_latency_buckets, sb_metrics_latency_nbuckets);
        const char *g = cfg->router.channel_api_base;
        SB_INFO(MOD, "channel=%s api_base=%s rate_per_s=%lld window=%s", c->ch->ops->name,
                g && *g ? "router.channel_api_base"
                        : (*c->ch->api_base ? "channel" : "built-in sink"),
                (long long)c->ch->rate_per_s,
                c->ch->window.free_ms <= 0 ? "none"
                                           : (c->ch->window.template_name ? "template" : "closes"));
    }
    if (pthread_create(&eg->done_thread, NULL, done_run, eg) != 0) {
        rc = SB_E_INTERNAL;
        goto fail;
    }
    eg->done_started = true;
    if (pthread_create(&eg->fetch_thread, NULL, fetch_run, eg) != 0) {
        rc = SB_E_INTERNAL;
        goto fail;
    }
    eg->fetch_started = true;
    *out = eg;
    return SB_OK;
fail:
    sb_egress_stop(eg);
    return rc;
}

void sb_egress_stop(sb_egress_t *eg)
{
    if (!eg) return;
    atomic_store(&eg->stop, true);
    pthread_mutex_lock(&eg->mu);
    pthread_cond_broadcast(&eg->cv);
    pthread_mutex_unlock(&eg->mu);
    if (eg->fetch_started) pthread_join(eg->fetch_thread, NULL);
    /* Calls in flight finish; waiting jobs come back canceled. */
    sb_http_async_destroy(eg->loop);
    pthread_mutex_lock(&eg->mu);
    eg->loop_gone = true;
    pthread_cond_broadcast(&eg->cv);
    pthread_mutex_unlock(&eg->mu);
    if (eg->done_started) pthread_join(eg->done_thread, NULL);
    sb_bus_pull_destroy(eg->pull);
    sb_bus_kv_close(eg->ledger);
    free_chans(eg);
    free(eg->conv_inflight);
    pthread_cond_destroy(&eg->cv);
    pthread_mutex_destroy(&eg->mu);
    sb_seal_wipe(eg->o.recipient_sk, sizeof eg->o.recipient_sk);
    sb_seal_wipe(eg->o.id_secret, sizeof eg->o.id_secret);
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
    }
    memcpy(res->error, s, n);
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
