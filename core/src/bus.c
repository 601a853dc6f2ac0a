/* The bus: Switchboard's only door to NATS JetStream; <nats/nats.h> is included nowhere else.
 *
 * Data flow. sb_bus_connect opens one reconnecting nats.c connection and a JetStream context on
 * it. Producers call sb_bus_publish, which sends one message (with Nats-Msg-Id for
 * deduplication) as a request and waits for the stream's PubAck. Consumers create a pull
 * subscription bound to a durable consumer (sb_bus_pull_create) and call sb_bus_pull_fetch in
 * their own loop: each fetched message is handed to the handler on the caller's thread, and the
 * handler's verdict becomes AckSync (done), Term (poison) or a delayed Nak (retry later).
 * nats.c status codes are converted to sb_result_t here, once, and never leave this file. */
#include "sb/bus.h"

#include <ctype.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <nats/nats.h>

#include "sb/log.h"
#include "sb/metrics.h"
#include "sb/util.h"

#define MOD "bus"
#define PENDING_BUCKETS 4096u   /* chains of the in-flight async publish table (power of 2) */
#define ASYNC_MAX_PENDING 65536 /* nats.c's own bound on async publishes in flight */
#define ASYNC_STALL_MS 5        /* beyond it, refuse rather than block the caller's loop */
#define NS_PER_S INT64_C(1000000000)
#define MAX_URLS 16
#define RECONNECT_WAIT_MS 250
#define RECONNECT_BUF_BYTES (8 * 1024 * 1024)
#define CONNECT_TIMEOUT_MS 2000
#define API_WAIT_MS 5000
#define MAX_ACK_PENDING 1000
#define NAK_BASE_MS 100
#define NAK_MAX_MS 30000
#define EPHEMERAL_INACTIVE_S 60
#define CLOSE_WAIT_S 5

struct sb_bus {
    natsConnection *nc;
    jsCtx *js;
    sb_config_nats_t cfg; /* copy; cfg.url owned */
    char *name;
    atomic_bool connected;
    atomic_bool closing;
    /* nats.c runs connection callbacks on its own thread, also after natsConnection_Close
     * returns: destroy waits for the closed callback (the last one) before freeing. */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool closed_cb_done;
    /* Asynchronous publishes in flight, by message (see sb_bus_publish_async). */
    pthread_mutex_t pmu;
    struct pending **pending; /* PENDING_BUCKETS chains */
    size_t npending;
    sb_metric_t *m_published, *m_publish_errors, *m_publish_seconds;
};

static void on_publish_ack(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae, void *closure);
static void fail_pending(sb_bus_t *bus);

struct sb_bus_pull {
    sb_bus_t *bus;
    natsSubscription *sub;
    char *stream;
    char *consumer; /* durable name, or the server-chosen ephemeral name */
    bool ephemeral;
};

struct sb_bus_sub {
    natsSubscription *sub;
    sb_bus_handler_fn handler;
    void *ctx;
};

static const struct {
    const char *name;
    const char *subjects;
} streams[] = {
    {SB_STREAM_IN, "sb.in.>"},       {SB_STREAM_NLU, "sb.nlu.>"},
    {SB_STREAM_BOT, "sb.bot.>"},     {SB_STREAM_ESC, "sb.esc.>"},
    {SB_STREAM_AGENT, "sb.agent.>"}, {SB_STREAM_OUT, "sb.out.>"},
    {SB_STREAM_EVENTS, "sb.ev.>"},   {SB_STREAM_QUARANTINE, "sb.quarantine.>"},
};
#define NSTREAMS (sizeof streams / sizeof streams[0])

/* --- metrics ------------------------------------------------------------------------------ */

static sb_metric_t *m_connected(void)
{
    return sb_metrics_gauge("sb_bus_connected", "1 while connected to a NATS server", NULL);
}

static void count_consumed(const char *outcome)
{
    char labels[48];
    snprintf(labels, sizeof labels, "outcome=\"%s\"", outcome);
    sb_metric_inc(sb_metrics_counter(
        "sb_bus_consumed_total", "Messages handled from pull consumers, by ack outcome", labels));
}

/* The text of the last nats.c error on this thread (never contains payload bytes). */
static const char *nats_err_text(natsStatus s)
{
    natsStatus last = NATS_OK;
    const char *txt = nats_GetLastError(&last);
    if (txt != NULL && txt[0] != '\0' && last == s) return txt;
    return natsStatus_GetText(s);
}

/* --- connection --------------------------------------------------------------------------- */

static void set_connected(sb_bus_t *bus, bool up)
{
    atomic_store(&bus->connected, up);
    sb_metric_set(m_connected(), up ? 1.0 : 0.0);
}

static void on_connected(natsConnection *nc, void *closure)
{
    (void)nc;
    sb_bus_t *bus = closure;
    set_connected(bus, true);
    SB_INFO(MOD, "connected name=%s", bus->name);
}

static void on_disconnected(natsConnection *nc, void *closure)
{
    (void)nc;
    sb_bus_t *bus = closure;
    set_connected(bus, false);
    if (!atomic_load(&bus->closing))
        SB_WARN(MOD, "disconnected name=%s reconnecting=true", bus->name);
}

static void on_reconnected(natsConnection *nc, void *closure)
{
    (void)nc;
    sb_bus_t *bus = closure;
    set_connected(bus, true);
    SB_INFO(MOD, "reconnected name=%s", bus->name);
}

static void on_closed(natsConnection *nc, void *closure)
{
    (void)nc;
    sb_bus_t *bus = closure;
    set_connected(bus, false);
    SB_DEBUG(MOD, "closed name=%s", bus->name);
    pthread_mutex_lock(&bus->mu);
    bus->closed_cb_done = true;
    pthread_cond_broadcast(&bus->cv);
    pthread_mutex_unlock(&bus->mu); /* the last touch: destroy may free bus from here on */
}

static void on_async_error(natsConnection *nc, natsSubscription *sub, natsStatus err, void *closure)
{
    (void)nc;
    (void)sub;
    sb_bus_t *bus = closure;
    SB_WARN(MOD, "async error name=%s status=\"%s\"", bus->name, natsStatus_GetText(err));
}

/* Splits the comma-separated url list into trimmed strings inside buf. Returns the count. */
static int split_urls(char *buf, const char **urls, int max)
{
    int n = 0;
    char *save = NULL;
    for (char *tok = strtok_r(buf, ",", &save); tok != NULL && n < max;
         tok = strtok_r(NULL, ",", &save)) {
        while (isspace((unsigned char)*tok))
            tok++;
        char *end = tok + strlen(tok);
        while (end > tok && isspace((unsigned char)end[-1]))
            *--end = '\0';
        if (*tok != '\0') urls[n++] = tok;
    }
    return n;
}

sb_result_t sb_bus_connect(sb_bus_t **out, const sb_config_nats_t *cfg, const char *name,
                           bool wait_connected)
{
    sb_result_t rc = SB_E_UNAVAILABLE;
    natsOptions *opts = NULL;
    natsStatus s;
    jsOptions jo;
    const char *urls[MAX_URLS];
    char *urlbuf = NULL;

    if (out == NULL || cfg == NULL || cfg->url == NULL || cfg->url[0] == '\0') return SB_E_INVALID;

    sb_bus_t *bus = sb_xcalloc(1, sizeof *bus);
    bus->cfg = *cfg;
    bus->cfg.url = sb_xstrdup(cfg->url);
    bus->name = sb_xstrdup(name != NULL ? name : "switchboard");
    atomic_init(&bus->connected, false);
    atomic_init(&bus->closing, false);
    pthread_mutex_init(&bus->mu, NULL);
    pthread_mutex_init(&bus->pmu, NULL);
    bus->pending = sb_xcalloc(PENDING_BUCKETS, sizeof *bus->pending);
    bus->m_published =
        sb_metrics_counter("sb_bus_published_total", "Messages acknowledged by JetStream", NULL);
    bus->m_publish_errors = sb_metrics_counter(
        "sb_bus_publish_errors_total", "Publishes that JetStream did not acknowledge", NULL);
    bus->m_publish_seconds =
        sb_metrics_histogram("sb_bus_publish_seconds", "Time from publish to JetStream ack", NULL,
                             sb_metrics_latency_buckets, sb_metrics_latency_nbuckets);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&bus->cv, &ca);
    pthread_condattr_destroy(&ca);
    set_connected(bus, false);

    urlbuf = sb_xstrdup(cfg->url);
    int nurls = split_urls(urlbuf, urls, MAX_URLS);
    if (nurls == 0) {
        SB_ERROR(MOD, "no nats url configured");
        rc = SB_E_CONFIG;
        goto fail;
    }

    s = natsOptions_Create(&opts);
    if (s == NATS_OK) s = natsOptions_SetServers(opts, urls, nurls);
    if (s == NATS_OK) s = natsOptions_SetName(opts, bus->name);
    if (s == NATS_OK) s = natsOptions_SetAllowReconnect(opts, true);
    if (s == NATS_OK) s = natsOptions_SetMaxReconnect(opts, -1);
    if (s == NATS_OK) s = natsOptions_SetReconnectWait(opts, RECONNECT_WAIT_MS);
    if (s == NATS_OK) s = natsOptions_SetReconnectBufSize(opts, RECONNECT_BUF_BYTES);
    if (s == NATS_OK) s = natsOptions_SetTimeout(opts, CONNECT_TIMEOUT_MS);
    if (s == NATS_OK) s = natsOptions_SetDisconnectedCB(opts, on_disconnected, bus);
    if (s == NATS_OK) s = natsOptions_SetReconnectedCB(opts, on_reconnected, bus);
    if (s == NATS_OK) s = natsOptions_SetClosedCB(opts, on_closed, bus);
    if (s == NATS_OK) s = natsOptions_SetErrorHandler(opts, on_async_error, bus);
    if (s == NATS_OK && !wait_connected)
        s = natsOptions_SetRetryOnFailedConnect(opts, true, on_connected, bus);
    if (s != NATS_OK) {
        SB_ERROR(MOD, "nats options status=\"%s\"", nats_err_text(s));
        rc = SB_E_CONFIG;
        goto fail;
    }

    s = natsConnection_Connect(&bus->nc, opts);
    if (s == NATS_OK) {
        set_connected(bus, true);
        SB_INFO(MOD, "connected name=%s servers=%d", bus->name, nurls);
    } else if (s == NATS_NOT_YET_CONNECTED && !wait_connected) {
        SB_WARN(MOD, "nats not reachable yet name=%s retrying=true", bus->name);
    } else {
        SB_ERROR(MOD, "connect failed name=%s status=\"%s\"", bus->name, nats_err_text(s));
        bus->nc = NULL;
        goto fail;
    }

    jsOptions_Init(&jo);
    jo.Wait = API_WAIT_MS;
    jo.PublishAsync.AckHandler = on_publish_ack;
    jo.PublishAsync.AckHandlerClosure = bus;
    jo.PublishAsync.MaxPending = ASYNC_MAX_PENDING;
    jo.PublishAsync.StallWait = ASYNC_STALL_MS;
    s = natsConnection_JetStream(&bus->js, bus->nc, &jo);
    if (s != NATS_OK) {
        SB_ERROR(MOD, "jetstream context status=\"%s\"", nats_err_text(s));
        rc = SB_E_INTERNAL;
        goto fail;
    }

    natsOptions_Destroy(opts);
    free(urlbuf);
    *out = bus;
    return SB_OK;

fail:
    natsOptions_Destroy(opts);
    free(urlbuf);
    sb_bus_destroy(bus);
    return rc;
}

void sb_bus_destroy(sb_bus_t *bus)
{
    if (bus == NULL) return;
    bool done = true;
    atomic_store(&bus->closing, true);
    if (bus->js != NULL) {
        /* Let acks of publishes in flight arrive, then fail whatever is left. */
        jsPubOptions po;
        jsPubOptions_Init(&po);
        po.MaxWait = 2000;
        if (js_PublishAsyncComplete(bus->js, &po) != NATS_OK)
            SB_WARN(MOD, "async publishes still in flight at close name=%s", bus->name);
    }
    fail_pending(bus);
    jsCtx_Destroy(bus->js);
    if (bus->nc != NULL) {
        natsConnection_Close(bus->nc);
        struct timespec deadline;
        clock_gettime(CLOCK_MONOTONIC, &deadline);
        deadline.tv_sec += CLOSE_WAIT_S;
        pthread_mutex_lock(&bus->mu);
        while (!bus->closed_cb_done)
            if (pthread_cond_timedwait(&bus->cv, &bus->mu, &deadline) != 0) break;
        done = bus->closed_cb_done;
        pthread_mutex_unlock(&bus->mu);
        natsConnection_Destroy(bus->nc);
    }
    set_connected(bus, false);
    if (!done) {
        /* A callback may still come: leaking a few bytes beats a use after free. */
        SB_WARN(MOD, "close callback did not arrive name=%s", bus->name);
        return;
    }
    pthread_cond_destroy(&bus->cv);
    pthread_mutex_destroy(&bus->mu);
    pthread_mutex_destroy(&bus->pmu);
    free(bus->pending);
    free(bus->cfg.url);
    free(bus->name);
    free(bus);
}

bool sb_bus_is_connected(const sb_bus_t *bus)
{
    if (bus == NULL || bus->nc == NULL) return false;
    return natsConnection_Status(bus->nc) == NATS_CONN_STATUS_CONNECTED;
}

/* --- streams ------------------------------------------------------------------------------ */

static void stream_config(const sb_bus_t *bus, size_t i, jsStreamConfig *sc, const char **subj)
{
    jsStreamConfig_Init(sc);
    *subj = streams[i].subjects;
    sc->Name = streams[i].name;
    sc->Subjects = subj;
    sc->SubjectsLen = 1;
    sc->Retention = js_LimitsPolicy;
    sc->Storage = js_FileStorage;
    sc->Discard = js_DiscardOld;
    sc->MaxAge = bus->cfg.stream_max_age_s * NS_PER_S;
    sc->Duplicates = bus->cfg.duplicate_window_s * NS_PER_S;
    sc->Replicas = bus->cfg.replicas > 0 ? bus->cfg.replicas : 1;
}

/* True when the live config already has what we would set. */
static bool stream_matches(const jsStreamConfig *have, const jsStreamConfig *want)
{
    if (have == NULL) return false;
    if (have->SubjectsLen != 1 || have->Subjects == NULL || have->Subjects[0] == NULL ||
        strcmp(have->Subjects[0], want->Subjects[0]) != 0)
        return false;
    return have->MaxAge == want->MaxAge && have->Duplicates == want->Duplicates &&
           have->Replicas == want->Replicas && have->Retention == want->Retention &&
           have->Storage == want->Storage;
}

static sb_result_t ensure_stream(sb_bus_t *bus, size_t i)
{
    jsStreamConfig sc;
    const char *subj;
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    sb_result_t rc = SB_E_UNAVAILABLE;

    stream_config(bus, i, &sc, &subj);
    for (int attempt = 0; attempt < 3; attempt++) {
        natsStatus s = js_GetStreamInfo(&si, bus->js, sc.Name, NULL, &jerr);
        if (s == NATS_OK) {
            if (stream_matches(si->Config, &sc)) {
                rc = SB_OK;
                goto done;
            }
            jsStreamInfo_Destroy(si);
            si = NULL;
            s = js_UpdateStream(&si, bus->js, &sc, NULL, &jerr);
            if (s == NATS_OK) {
                SB_INFO(MOD, "stream updated stream=%s", sc.Name);
                rc = SB_OK;
                goto done;
            }
            SB_ERROR(MOD, "stream update failed stream=%s err_code=%d status=\"%s\"", sc.Name,
                     (int)jerr, nats_err_text(s));
            rc = SB_E_CONFIG;
            goto done;
        }
        if (s != NATS_NOT_FOUND && jerr != JSStreamNotFoundErr) {
            SB_WARN(MOD, "stream info failed stream=%s err_code=%d status=\"%s\"", sc.Name,
                    (int)jerr, nats_err_text(s));
            rc = SB_E_UNAVAILABLE;
            goto done;
        }
        s = js_AddStream(&si, bus->js, &sc, NULL, &jerr);
        if (s == NATS_OK) {
            SB_INFO(MOD, "stream created stream=%s subjects=%s", sc.Name, subj);
            rc = SB_OK;
            goto done;
        }
        /* A concurrent creator won the race: look again (and update if needed). */
        if (jerr == JSStreamNameExistErr) continue;
        SB_ERROR(MOD, "stream create failed stream=%s err_code=%d status=\"%s\"", sc.Name,
                 (int)jerr, nats_err_text(s));
        rc = (jerr != 0) ? SB_E_CONFIG : SB_E_UNAVAILABLE;
        goto done;
    }
done:
    jsStreamInfo_Destroy(si);
    return rc;
}

sb_result_t sb_bus_ensure_streams(sb_bus_t *bus)
{
    if (bus == NULL || bus->js == NULL) return SB_E_INVALID;
    if (!sb_bus_is_connected(bus)) return SB_E_UNAVAILABLE;
    for (size_t i = 0; i < NSTREAMS; i++) {
        sb_result_t rc = ensure_stream(bus, i);
        if (rc != SB_OK) return rc;
    }
    return SB_OK;
}

bool sb_bus_has_streams(sb_bus_t *bus)
{
    if (bus == NULL || bus->js == NULL || !sb_bus_is_connected(bus)) return false;
    for (size_t i = 0; i < NSTREAMS; i++) {
        jsStreamInfo *si = NULL;
        natsStatus s = js_GetStreamInfo(&si, bus->js, streams[i].name, NULL, NULL);
        jsStreamInfo_Destroy(si);
        if (s != NATS_OK) return false;
    }
    return true;
}

sb_result_t sb_bus_stream_count(sb_bus_t *bus, const char *stream, const char *filter,
                                uint64_t *out)
{
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    jsOptions o;
    sb_result_t rc = SB_E_UNAVAILABLE;

    if (bus == NULL || bus->js == NULL || stream == NULL || out == NULL) return SB_E_INVALID;
    jsOptions_Init(&o);
    if (filter != NULL && filter[0] != '\0') o.Stream.Info.SubjectsFilter = filter;
    natsStatus s = js_GetStreamInfo(&si, bus->js, stream, &o, &jerr);
    if (s != NATS_OK) {
        rc = (s == NATS_NOT_FOUND || jerr == JSStreamNotFoundErr) ? SB_E_NOT_FOUND
                                                                  : SB_E_UNAVAILABLE;
        goto done;
    }
    uint64_t n = 0;
    if (filter == NULL || filter[0] == '\0') {
        n = si->State.Msgs;
    } else if (si->State.Subjects != NULL) {
        for (int i = 0; i < si->State.Subjects->Count; i++)
            n += si->State.Subjects->List[i].Msgs;
    }
    *out = n;
    rc = SB_OK;
done:
    jsStreamInfo_Destroy(si);
    return rc;
}

/* --- publish ------------------------------------------------------------------------------ */

sb_result_t sb_bus_publish(sb_bus_t *bus, const char *subject, const void *data, size_t len,
                           const char *msg_id, bool *duplicate)
{
    sb_result_t rc = SB_E_UNAVAILABLE;
    natsMsg *msg = NULL;
    jsPubAck *pa = NULL;
    jsErrCode jerr = 0;
    jsPubOptions po;
    natsStatus s;
    uint64_t t0 = sb_mono_ns();

    if (bus == NULL || bus->js == NULL || subject == NULL || (data == NULL && len > 0) ||
        len > INT32_MAX)
        return SB_E_INVALID;

    /* While disconnected nats.c would buffer the message and send it after a reconnect, long
     * after we told the caller it failed: refuse at once instead, so callers answer 503. */
    if (!sb_bus_is_connected(bus)) {
        SB_WARN(MOD, "publish refused subject=%s reason=not_connected", subject);
        goto done;
    }

    s = natsMsg_Create(&msg, subject, NULL, (const char *)data, (int)len);
    if (s == NATS_OK && msg_id != NULL && msg_id[0] != '\0')
        s = natsMsgHeader_Set(msg, "Nats-Msg-Id", msg_id);
    if (s != NATS_OK) {
        SB_ERROR(MOD, "publish message build failed subject=%s status=\"%s\"", subject,
                 nats_err_text(s));
        rc = SB_E_INTERNAL;
        goto done;
    }
    jsPubOptions_Init(&po);
    po.MaxWait = bus->cfg.publish_timeout_ms > 0 ? bus->cfg.publish_timeout_ms : 5000;
    s = js_PublishMsg(&pa, bus->js, msg, &po, &jerr);
    if (s != NATS_OK) {
        SB_WARN(MOD, "publish failed subject=%s bytes=%zu err_code=%d status=\"%s\"", subject, len,
                (int)jerr, nats_err_text(s));
        rc = SB_E_UNAVAILABLE;
        goto done;
    }
    if (duplicate != NULL) *duplicate = pa->Duplicate;
    rc = SB_OK;

done:
    if (rc == SB_OK) {
        sb_metric_inc(bus->m_published);
        sb_metric_observe(bus->m_publish_seconds, (double)(sb_mono_ns() - t0) / 1e9);
    } else {
        sb_metric_inc(bus->m_publish_errors);
    }
    jsPubAck_Destroy(pa);
    natsMsg_Destroy(msg);
    return rc;
}

/* --- asynchronous publish ------------------------------------------------------------------
 * js_PublishMsgAsync hands the message to nats.c, which sends it with others in one write and
 * calls on_publish_ack (on its own thread) when JetStream answers, or with an error after
 * MaxWait. The handler owns the message and destroys it, so its address identifies the
 * publish until then: the pending table maps it to the caller's callback. */
typedef struct pending {
    struct pending *next;
    natsMsg *msg;
    sb_bus_publish_cb_fn cb;
    void *ctx;
    uint64_t t0;
} pending_t;

static size_t pending_bucket(const natsMsg *msg)
{
    uintptr_t v = (uintptr_t)msg;
    v ^= v >> 17;
    v *= 0x9e3779b97f4a7c15ull;
    return (size_t)(v >> 40) & (PENDING_BUCKETS - 1);
}

/* Removes and returns the entry of msg, or NULL. */
static pending_t *pending_take(sb_bus_t *bus, const natsMsg *msg)
{
    pthread_mutex_lock(&bus->pmu);
    pending_t **pp = &bus->pending[pending_bucket(msg)];
    while (*pp && (*pp)->msg != msg)
        pp = &(*pp)->next;
    pending_t *p = *pp;
    if (p) {
        *pp = p->next;
        bus->npending--;
    }
    pthread_mutex_unlock(&bus->pmu);
    return p;
}

static void on_publish_ack(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae, void *closure)
{
    (void)js;
    sb_bus_t *bus = closure;
    pending_t *p = pending_take(bus, msg);
    natsMsg_Destroy(msg);
    if (p == NULL) return; /* failed by sb_bus_destroy already */
    bool ok = pa != NULL && pae == NULL;
    if (ok) {
        sb_metric_inc(bus->m_published);
        sb_metric_observe(bus->m_publish_seconds, (double)(sb_mono_ns() - p->t0) / 1e9);
    } else {
        sb_metric_inc(bus->m_publish_errors);
        SB_WARN(MOD, "async publish failed err_code=%d status=\"%s\"", pae ? (int)pae->ErrCode : 0,
                pae ? nats_err_text(pae->Err) : "no ack");
    }
    p->cb(p->ctx, ok ? SB_OK : SB_E_UNAVAILABLE, ok && pa->Duplicate);
    free(p);
}

/* Fails every publish still in flight (bus closing). */
static void fail_pending(sb_bus_t *bus)
{
    for (size_t b = 0; b < PENDING_BUCKETS; b++) {
        for (;;) {
            pthread_mutex_lock(&bus->pmu);
            pending_t *p = bus->pending[b];
            if (p) {
                bus->pending[b] = p->next;
                bus->npending--;
            }
            pthread_mutex_unlock(&bus->pmu);
            if (!p) break;
            sb_metric_inc(bus->m_publish_errors);
            p->cb(p->ctx, SB_E_UNAVAILABLE, false);
            free(p);
        }
    }
}

sb_result_t sb_bus_publish_async(sb_bus_t *bus, const char *subject, const void *data, size_t len,
                                 const char *msg_id, sb_bus_publish_cb_fn cb, void *ctx)
{
    natsMsg *msg = NULL;
    jsPubOptions po;
    natsStatus s;

    if (bus == NULL || bus->js == NULL || subject == NULL || cb == NULL ||
        (data == NULL && len > 0) || len > INT32_MAX)
        return SB_E_INVALID;
    if (!sb_bus_is_connected(bus) || atomic_load(&bus->closing)) {
        sb_metric_inc(bus->m_publish_errors);
        return SB_E_UNAVAILABLE;
    }
    s = natsMsg_Create(&msg, subject, NULL, (const char *)data, (int)len);
    if (s == NATS_OK && msg_id != NULL && msg_id[0] != '\0')
        s = natsMsgHeader_Set(msg, "Nats-Msg-Id", msg_id);
    if (s != NATS_OK) {
        natsMsg_Destroy(msg);
        return SB_E_INTERNAL;
    }
    pending_t *p = sb_xcalloc(1, sizeof *p);
    p->msg = msg;
    p->cb = cb;
    p->ctx = ctx;
    p->t0 = sb_mono_ns();
    /* Registered before sending: the ack may arrive before js_PublishMsgAsync returns. */
    pthread_mutex_lock(&bus->pmu);
    size_t b = pending_bucket(msg);
    p->next = bus->pending[b];
    bus->pending[b] = p;
    bus->npending++;
    pthread_mutex_unlock(&bus->pmu);

    jsPubOptions_Init(&po);
    po.MaxWait = bus->cfg.publish_timeout_ms > 0 ? bus->cfg.publish_timeout_ms : 5000;
    natsMsg *send = msg;
    s = js_PublishMsgAsync(bus->js, &send, &po);
    if (s != NATS_OK) {
        /* Not taken by nats.c (e.g. stalled at MaxPending): undo, unless an ack raced in. */
        pending_t *mine = pending_take(bus, msg);
        if (mine == NULL) return SB_OK; /* the handler already ran and called cb */
        free(mine);
        natsMsg_Destroy(send);
        sb_metric_inc(bus->m_publish_errors);
        SB_WARN(MOD, "async publish refused subject=%s status=\"%s\"", subject, nats_err_text(s));
        return SB_E_UNAVAILABLE;
    }
    return SB_OK;
}

/* --- pull consumers ----------------------------------------------------------------------- */

static sb_result_t bind_pull(sb_bus_t *bus, const char *stream, const char *consumer,
                             const char *filter, const char *durable, sb_bus_pull_t **out)
{
    jsSubOptions so;
    jsErrCode jerr = 0;
    natsSubscription *sub = NULL;

    jsSubOptions_Init(&so);
    so.Stream = stream;
    so.Consumer = consumer;
    natsStatus s = js_PullSubscribe(&sub, bus->js, filter, durable, NULL, &so, &jerr);
    if (s != NATS_OK) {
        SB_ERROR(MOD, "pull subscribe failed stream=%s consumer=%s err_code=%d status=\"%s\"",
                 stream, consumer, (int)jerr, nats_err_text(s));
        return SB_E_UNAVAILABLE;
    }
    sb_bus_pull_t *p = sb_xcalloc(1, sizeof *p);
    p->bus = bus;
    p->sub = sub;
    p->stream = sb_xstrdup(stream);
    p->consumer = sb_xstrdup(consumer);
    *out = p;
    return SB_OK;
}

sb_result_t sb_bus_pull_create(sb_bus_t *bus, const char *stream, const char *durable,
                               const char *filter, sb_bus_pull_t **out)
{
    jsConsumerConfig cc;
    jsConsumerInfo *ci = NULL;
    jsErrCode jerr = 0;
    natsStatus s;

    if (bus == NULL || bus->js == NULL || stream == NULL || durable == NULL || out == NULL ||
        !sb_bus_is_token(durable))
        return SB_E_INVALID;
    if (filter != NULL && filter[0] == '\0') filter = NULL;

    jsConsumerConfig_Init(&cc);
    cc.Durable = durable;
    cc.AckPolicy = js_AckExplicit;
    cc.AckWait = (bus->cfg.ack_wait_s > 0 ? bus->cfg.ack_wait_s : 30) * NS_PER_S;
    cc.MaxDeliver = bus->cfg.max_deliver > 0 ? bus->cfg.max_deliver : -1;
    cc.FilterSubject = filter;
    cc.DeliverPolicy = js_DeliverAll;
    cc.MaxAckPending = MAX_ACK_PENDING;

    s = js_AddConsumer(&ci, bus->js, stream, &cc, NULL, &jerr);
    if (s != NATS_OK) {
        if (jerr == JSConsumerNameExistErr || jerr == JSConsumerExistingActiveErr) {
            /* It exists with another config (limits changed): bring it in line; a failure
             * here is not fatal, the existing consumer still works. */
            jsConsumerInfo_Destroy(ci);
            ci = NULL;
            if (js_UpdateConsumer(&ci, bus->js, stream, &cc, NULL, &jerr) != NATS_OK)
                SB_WARN(MOD, "consumer exists with other config stream=%s durable=%s", stream,
                        durable);
        } else {
            SB_ERROR(MOD, "consumer create failed stream=%s durable=%s err_code=%d status=\"%s\"",
                     stream, durable, (int)jerr, nats_err_text(s));
            jsConsumerInfo_Destroy(ci);
            return jerr == JSStreamNotFoundErr ? SB_E_NOT_FOUND : SB_E_UNAVAILABLE;
        }
    }
    jsConsumerInfo_Destroy(ci);
    return bind_pull(bus, stream, durable, filter, durable, out);
}

sb_result_t sb_bus_pull_create_ephemeral(sb_bus_t *bus, const char *stream, const char *filter,
                                         sb_bus_pull_t **out)
{
    jsConsumerConfig cc;
    jsConsumerInfo *ci = NULL;
    jsErrCode jerr = 0;
    sb_result_t rc;

    if (bus == NULL || bus->js == NULL || stream == NULL || out == NULL) return SB_E_INVALID;
    if (filter != NULL && filter[0] == '\0') filter = NULL;

    jsConsumerConfig_Init(&cc);
    cc.AckPolicy = js_AckExplicit;
    cc.AckWait = 30 * NS_PER_S;
    cc.FilterSubject = filter;
    cc.DeliverPolicy = js_DeliverAll;
    cc.MaxAckPending = MAX_ACK_PENDING;
    cc.InactiveThreshold = EPHEMERAL_INACTIVE_S * NS_PER_S;
    natsStatus s = js_AddConsumer(&ci, bus->js, stream, &cc, NULL, &jerr);
    if (s != NATS_OK) {
        SB_ERROR(MOD, "ephemeral consumer failed stream=%s err_code=%d status=\"%s\"", stream,
                 (int)jerr, nats_err_text(s));
        jsConsumerInfo_Destroy(ci);
        return jerr == JSStreamNotFoundErr ? SB_E_NOT_FOUND : SB_E_UNAVAILABLE;
    }
    rc = bind_pull(bus, stream, ci->Name, filter, NULL, out);
    if (rc == SB_OK) {
        (*out)->ephemeral = true;
    } else {
        (void)js_DeleteConsumer(bus->js, stream, ci->Name, NULL, NULL);
    }
    jsConsumerInfo_Destroy(ci);
    return rc;
}

sb_result_t sb_bus_pull_pending(sb_bus_pull_t *pull, uint64_t *out)
{
    jsConsumerInfo *ci = NULL;
    if (pull == NULL || out == NULL) return SB_E_INVALID;
    natsStatus s = js_GetConsumerInfo(&ci, pull->bus->js, pull->stream, pull->consumer, NULL, NULL);
    if (s != NATS_OK) return SB_E_UNAVAILABLE;
    *out = ci->NumPending;
    jsConsumerInfo_Destroy(ci);
    return SB_OK;
}

static int64_t nak_delay_ms(uint64_t delivered)
{
    int64_t d = NAK_BASE_MS;
    for (uint64_t i = 1; i < delivered && d < NAK_MAX_MS; i++)
        d *= 2;
    return d < NAK_MAX_MS ? d : NAK_MAX_MS;
}

static void settle(sb_bus_pull_t *pull, natsMsg *m, const sb_bus_msg_t *bm, sb_result_t verdict)
{
    natsStatus s;
    if (pull->ephemeral) {
        /* Readers of an ephemeral view only move it forward; nobody else sees these acks. */
        (void)natsMsg_Ack(m, NULL);
        return;
    }
    switch (verdict) {
    case SB_OK:
    case SB_E_DUPLICATE:
        s = natsMsg_AckSync(m, NULL, NULL);
        if (s != NATS_OK)
            SB_WARN(MOD, "ack failed stream=%s seq=%" PRIu64 " status=\"%s\"", pull->stream,
                    bm->stream_seq, nats_err_text(s));
        count_consumed("ack");
        break;
    case SB_E_INVALID:
        SB_WARN(MOD, "message terminated stream=%s consumer=%s seq=%" PRIu64 " subject=%s",
                pull->stream, pull->consumer, bm->stream_seq, bm->subject);
        s = natsMsg_Term(m, NULL);
        if (s != NATS_OK)
            SB_WARN(MOD, "term failed stream=%s seq=%" PRIu64 " status=\"%s\"", pull->stream,
                    bm->stream_seq, nats_err_text(s));
        count_consumed("term");
        break;
    default:
        s = natsMsg_NakWithDelay(m, nak_delay_ms(bm->num_delivered), NULL);
        if (s != NATS_OK)
            SB_WARN(MOD, "nak failed stream=%s seq=%" PRIu64 " status=\"%s\"", pull->stream,
                    bm->stream_seq, nats_err_text(s));
        SB_DEBUG(MOD, "message nak stream=%s seq=%" PRIu64 " delivered=%" PRIu64 " verdict=\"%s\"",
                 pull->stream, bm->stream_seq, bm->num_delivered, sb_result_str(verdict));
        count_consumed("nak");
        break;
    }
}

sb_result_t sb_bus_pull_fetch(sb_bus_pull_t *pull, int max, int timeout_ms,
                              sb_bus_handler_fn handler, void *ctx, int *handled)
{
    natsMsgList list = {0};
    jsErrCode jerr = 0;

    if (pull == NULL || handler == NULL || max <= 0) return SB_E_INVALID;
    if (timeout_ms <= 0) timeout_ms = 1;

    natsStatus s = natsSubscription_Fetch(&list, pull->sub, max, timeout_ms, &jerr);
    if (s == NATS_TIMEOUT) {
        if (handled != NULL) *handled = 0;
        return SB_OK;
    }
    if (s != NATS_OK) {
        SB_WARN(MOD, "fetch failed stream=%s consumer=%s err_code=%d status=\"%s\"", pull->stream,
                pull->consumer, (int)jerr, nats_err_text(s));
        natsMsgList_Destroy(&list);
        return SB_E_UNAVAILABLE;
    }

    int n = 0;
    for (int i = 0; i < list.Count; i++) {
        natsMsg *m = list.Msgs[i];
        jsMsgMetaData *meta = NULL;
        sb_bus_msg_t bm = {
            .subject = natsMsg_GetSubject(m),
            .data = natsMsg_GetData(m),
            .len = (size_t)natsMsg_GetDataLength(m),
            .num_delivered = 1,
        };
        if (natsMsg_GetMetaData(&meta, m) == NATS_OK) {
            bm.num_delivered = meta->NumDelivered;
            bm.stream_seq = meta->Sequence.Stream;
        }
        jsMsgMetaData_Destroy(meta);
        sb_result_t verdict = handler(ctx, &bm);
        settle(pull, m, &bm, verdict);
        n++;
    }
    natsMsgList_Destroy(&list);
    if (handled != NULL) *handled = n;
    return SB_OK;
}

/* --- manual settling ---------------------------------------------------------------------- */

struct sb_bus_delivery {
    sb_bus_pull_t *pull;
    natsMsg *m;
    sb_bus_msg_t bm;
};

sb_result_t sb_bus_pull_take(sb_bus_pull_t *pull, int max, int timeout_ms, sb_bus_delivery_t **out,
                             int *n)
{
    natsMsgList list = {0};
    jsErrCode jerr = 0;

    if (pull == NULL || out == NULL || n == NULL || max <= 0) return SB_E_INVALID;
    if (timeout_ms <= 0) timeout_ms = 1;
    *n = 0;
    natsStatus s = natsSubscription_Fetch(&list, pull->sub, max, timeout_ms, &jerr);
    if (s == NATS_TIMEOUT) return SB_OK;
    if (s != NATS_OK) {
        SB_WARN(MOD, "fetch failed stream=%s consumer=%s err_code=%d status=\"%s\"", pull->stream,
                pull->consumer, (int)jerr, nats_err_text(s));
        natsMsgList_Destroy(&list);
        return SB_E_UNAVAILABLE;
    }
    int k = 0;
    for (int i = 0; i < list.Count; i++) {
        natsMsg *m = list.Msgs[i];
        if (k >= max) {
            /* More than asked for (cannot happen with Fetch): hand it back at once. */
            (void)natsMsg_Nak(m, NULL);
            natsMsg_Destroy(m);
            list.Msgs[i] = NULL;
            continue;
        }
        sb_bus_delivery_t *d = sb_xcalloc(1, sizeof *d);
        d->pull = pull;
        d->m = m;
        d->bm.subject = natsMsg_GetSubject(m);
        d->bm.data = natsMsg_GetData(m);
        d->bm.len = (size_t)natsMsg_GetDataLength(m);
        d->bm.num_delivered = 1;
        jsMsgMetaData *meta = NULL;
        if (natsMsg_GetMetaData(&meta, m) == NATS_OK) {
            d->bm.num_delivered = meta->NumDelivered;
            d->bm.stream_seq = meta->Sequence.Stream;
        }
        jsMsgMetaData_Destroy(meta);
        list.Msgs[i] = NULL; /* owned by the delivery now */
        out[k++] = d;
    }
    natsMsgList_Destroy(&list);
    *n = k;
    return SB_OK;
}

const sb_bus_msg_t *sb_bus_delivery_msg(const sb_bus_delivery_t *d)
{
    return &d->bm;
}

sb_result_t sb_bus_delivery_in_progress(sb_bus_delivery_t *d)
{
    if (d == NULL) return SB_E_INVALID;
    return natsMsg_InProgress(d->m, NULL) == NATS_OK ? SB_OK : SB_E_UNAVAILABLE;
}

sb_result_t sb_bus_delivery_settle(sb_bus_delivery_t *d, sb_result_t verdict, int64_t delay_ms)
{
    if (d == NULL) return SB_OK;
    natsStatus s = NATS_OK;
    sb_bus_pull_t *pull = d->pull;
    switch (verdict) {
    case SB_OK:
    case SB_E_DUPLICATE:
        s = natsMsg_AckSync(d->m, NULL, NULL);
        count_consumed("ack");
        break;
    case SB_E_INVALID:
        SB_WARN(MOD, "message terminated stream=%s consumer=%s seq=%" PRIu64 " subject=%s",
                pull->stream, pull->consumer, d->bm.stream_seq, d->bm.subject);
        s = natsMsg_Term(d->m, NULL);
        count_consumed("term");
        break;
    default:
        s = natsMsg_NakWithDelay(d->m, delay_ms >= 0 ? delay_ms : nak_delay_ms(d->bm.num_delivered),
                                 NULL);
        count_consumed("nak");
        break;
    }
    if (s != NATS_OK)
        SB_WARN(MOD, "settle failed stream=%s seq=%" PRIu64 " verdict=\"%s\" status=\"%s\"",
                pull->stream, d->bm.stream_seq, sb_result_str(verdict), nats_err_text(s));
    natsMsg_Destroy(d->m);
    free(d);
    return s == NATS_OK ? SB_OK : SB_E_UNAVAILABLE;
}

void sb_bus_pull_destroy(sb_bus_pull_t *pull)
{
    if (pull == NULL) return;
    natsSubscription_Destroy(pull->sub);
    if (pull->ephemeral && sb_bus_is_connected(pull->bus))
        (void)js_DeleteConsumer(pull->bus->js, pull->stream, pull->consumer, NULL, NULL);
    free(pull->stream);
    free(pull->consumer);
    free(pull);
}

/* --- key-value buckets -------------------------------------------------------------------- */

struct sb_bus_kv {
    kvStore *kv;
};

sb_result_t sb_bus_kv_open(sb_bus_t *bus, const char *bucket, int64_t ttl_s, sb_bus_kv_t **out)
{
    if (bus == NULL || bus->js == NULL || bucket == NULL || out == NULL || !sb_bus_is_token(bucket))
        return SB_E_INVALID;
    kvStore *kv = NULL;
    natsStatus s = js_KeyValue(&kv, bus->js, bucket);
    if (s == NATS_NOT_FOUND) {
        kvConfig kc;
        kvConfig_Init(&kc);
        kc.Bucket = bucket;
        kc.History = 1;
        kc.TTL = ttl_s > 0 ? ttl_s * NS_PER_S : 0;
        kc.StorageType = js_FileStorage;
        kc.Replicas = bus->cfg.replicas > 0 ? (int)bus->cfg.replicas : 1;
        s = js_CreateKeyValue(&kv, bus->js, &kc);
        if (s != NATS_OK) {
            /* Another process may have created it in between. */
            natsStatus s2 = js_KeyValue(&kv, bus->js, bucket);
            if (s2 == NATS_OK) s = NATS_OK;
        }
    }
    if (s != NATS_OK) {
        SB_WARN(MOD, "kv bucket not bound bucket=%s status=\"%s\"", bucket, nats_err_text(s));
        return SB_E_UNAVAILABLE;
    }
    sb_bus_kv_t *k = sb_xcalloc(1, sizeof *k);
    k->kv = kv;
    *out = k;
    return SB_OK;
}

sb_result_t sb_bus_kv_get(sb_bus_kv_t *kv, const char *key, void *buf, size_t n, size_t *len)
{
    if (kv == NULL || key == NULL || len == NULL || (buf == NULL && n > 0)) return SB_E_INVALID;
    kvEntry *e = NULL;
    natsStatus s = kvStore_Get(&e, kv->kv, key);
    if (s == NATS_NOT_FOUND) return SB_E_NOT_FOUND;
    if (s != NATS_OK) {
        SB_WARN(MOD, "kv get failed status=\"%s\"", nats_err_text(s));
        return SB_E_UNAVAILABLE;
    }
    sb_result_t rc = SB_OK;
    if (kvEntry_Operation(e) != kvOp_Put) {
        rc = SB_E_NOT_FOUND;
    } else {
        int vlen = kvEntry_ValueLen(e);
        if (vlen < 0 || (size_t)vlen > n) {
            rc = SB_E_TOO_LARGE;
        } else {
            if (vlen > 0) memcpy(buf, kvEntry_Value(e), (size_t)vlen);
            *len = (size_t)vlen;
        }
    }
    kvEntry_Destroy(e);
    return rc;
}

sb_result_t sb_bus_kv_put(sb_bus_kv_t *kv, const char *key, const void *data, size_t len)
{
    if (kv == NULL || key == NULL || (data == NULL && len > 0) || len > INT32_MAX)
        return SB_E_INVALID;
    uint64_t rev = 0;
    natsStatus s = kvStore_Put(&rev, kv->kv, key, data, (int)len);
    if (s != NATS_OK) {
        SB_WARN(MOD, "kv put failed status=\"%s\"", nats_err_text(s));
        return SB_E_UNAVAILABLE;
    }
    return SB_OK;
}

void sb_bus_kv_close(sb_bus_kv_t *kv)
{
    if (kv == NULL) return;
    kvStore_Destroy(kv->kv);
    free(kv);
}

/* --- core subscriptions ------------------------------------------------------------------- */

sb_result_t sb_bus_publish_core(sb_bus_t *bus, const char *subject, const void *data, size_t len,
                                int timeout_ms)
{
    if (bus == NULL || bus->nc == NULL || subject == NULL || (data == NULL && len > 0) ||
        len > INT32_MAX)
        return SB_E_INVALID;
    if (!sb_bus_is_connected(bus)) return SB_E_UNAVAILABLE;
    natsStatus s = natsConnection_Publish(bus->nc, subject, data, (int)len);
    if (s == NATS_OK) s = natsConnection_FlushTimeout(bus->nc, timeout_ms > 0 ? timeout_ms : 2000);
    if (s != NATS_OK) {
        SB_WARN(MOD, "core publish failed subject=%s bytes=%zu status=\"%s\"", subject, len,
                nats_err_text(s));
        return SB_E_UNAVAILABLE;
    }
    return SB_OK;
}

static void on_core_msg(natsConnection *nc, natsSubscription *sub, natsMsg *m, void *closure)
{
    (void)nc;
    (void)sub;
    sb_bus_sub_t *s = closure;
    sb_bus_msg_t bm = {
        .subject = natsMsg_GetSubject(m),
        .data = natsMsg_GetData(m),
        .len = (size_t)natsMsg_GetDataLength(m),
        .num_delivered = 1,
    };
    (void)s->handler(s->ctx, &bm);
    natsMsg_Destroy(m);
}

sb_result_t sb_bus_subscribe(sb_bus_t *bus, const char *subject, sb_bus_handler_fn handler,
                             void *ctx, sb_bus_sub_t **out)
{
    if (bus == NULL || bus->nc == NULL || subject == NULL || handler == NULL || out == NULL)
        return SB_E_INVALID;
    sb_bus_sub_t *s = sb_xcalloc(1, sizeof *s);
    s->handler = handler;
    s->ctx = ctx;
    natsStatus st = natsConnection_Subscribe(&s->sub, bus->nc, subject, on_core_msg, s);
    if (st != NATS_OK) {
        SB_ERROR(MOD, "subscribe failed subject=%s status=\"%s\"", subject, nats_err_text(st));
        free(s);
        return SB_E_UNAVAILABLE;
    }
    *out = s;
    return SB_OK;
}

void sb_bus_sub_destroy(sb_bus_sub_t *sub)
{
    if (sub == NULL) return;
    /* Unsubscribe first so that no callback runs after this returns... */
    (void)natsSubscription_Unsubscribe(sub->sub);
    /* ...except one that was already running: it may still hold sub->ctx. */
    natsSubscription_Destroy(sub->sub);
    free(sub);
}

/* --- subjects ----------------------------------------------------------------------------- */

#define MAX_TOKEN 256

static bool token_ok(const char *s, size_t n)
{
    if (n == 0 || n > MAX_TOKEN) return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= ' ' || c == 0x7f || c == '.' || c == '*' || c == '>') return false;
    }
    return true;
}

bool sb_bus_is_token(const char *s)
{
    return s != NULL && token_ok(s, strlen(s));
}

sb_result_t sb_bus_subject(char *buf, size_t n, const char *fmt, ...)
{
    if (buf == NULL || n == 0 || fmt == NULL) return SB_E_INVALID;
    va_list ap;
    va_start(ap, fmt);
    int w = vsnprintf(buf, n, fmt, ap);
    va_end(ap);
    if (w < 0) return SB_E_INVALID;
    if ((size_t)w >= n) {
        buf[0] = '\0';
        return SB_E_TOO_LARGE;
    }
    const char *p = buf;
    for (;;) {
        const char *dot = strchr(p, '.');
        size_t len = dot != NULL ? (size_t)(dot - p) : strlen(p);
        /* A lone final '>' is allowed so that the builder also makes filters. */
        bool last_wild = dot == NULL && len == 1 && p[0] == '>' && p != buf;
        if (!last_wild && !token_ok(p, len)) {
            buf[0] = '\0';
            return SB_E_INVALID;
        }
        if (dot == NULL) break;
        p = dot + 1;
    }
    return SB_OK;
}
