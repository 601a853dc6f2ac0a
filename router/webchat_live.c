/* The live-reply hub of the browser widget and its egress hook (see webchat_live.h).
 *
 * Threads: the NATS callback only copies the message and posts it to the loop
 * (sb_http_server_post); everything else (rings, streams, the keepalive timer) lives on the
 * loop thread, so none of it is locked. sb_webchat_live_deliver runs on the egress thread and
 * touches only the bus. */
#include "webchat_live.h"

#include <cjson/cJSON.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "channel_webchat.h"
#include "sb/log.h"
#include "sb/metrics.h"
#include "sb/util.h"
#include "webchat_session.h"

#define MOD "webchat"
#define NBUCKETS 4096
#define MAX_EVENT_ID 64
#define MAX_CONV_ID 64
#define FLUSH_MS 2000
#define STREAM_MAX_QUEUED (1024 * 1024) /* a replay of the whole ring fits */

typedef struct event {
    char id[MAX_EVENT_ID + 1];
    char *frame; /* the whole SSE frame: "id: ..\nevent: message\ndata: ..\n\n" */
    size_t len;
} event_t;

typedef struct client client_t;

typedef struct conv {
    char id[MAX_CONV_ID + 1];
    event_t *ring; /* cap slots (grown up to keep); oldest at head */
    size_t head, count, cap;
    size_t bytes;
    client_t *clients;
    size_t nclients;
    struct conv *hnext;               /* hash chain */
    struct conv *lru_prev, *lru_next; /* most recent at live->lru_head */
} conv_t;

struct client {
    struct sb_webchat_live *live;
    sb_http_stream_t *st;
    conv_t *conv;
    int64_t expires_s;
    uint64_t opened_ms;
    client_t *cprev, *cnext; /* in conv */
    client_t *aprev, *anext; /* in live->all */
};

struct sb_webchat_live {
    sb_bus_t *bus;
    sb_http_server_t *srv;
    sb_webchat_live_opts_t o;
    sb_bus_sub_t *sub;
    conv_t *buckets[NBUCKETS];
    conv_t *lru_head, *lru_tail;
    size_t nconvs;
    size_t bytes;
    client_t *all;
    size_t nclients;
    atomic_int in_callback;
    atomic_bool closing;
    sb_metric_t *m_events, *m_dropped, *m_streams, *m_replayed;
};

/* The process's hub, for the channel's deliver op (egress thread reads it). */
static _Atomic(sb_webchat_live_t *) the_hub;

/* ---- small helpers ---- */

static bool conv_id_ok(const char *s, size_t n)
{
    if (n < 16 || n > MAX_CONV_ID) return false;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f'))) return false;
    }
    return true;
}

static bool event_id_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > MAX_EVENT_ID) return false;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
              ch == '_' || ch == '-' || ch == ':' || ch == '.'))
            return false;
    }
    return true;
}

static size_t bucket_of(const char *id)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a: ids are keyed hashes already */
    for (const char *p = id; *p; p++)
        h = (h ^ (uint8_t)*p) * 1099511628211ULL;
    return (size_t)(h % NBUCKETS);
}

/* ---- conversations ---- */

/* The i-th kept reply of c, oldest first. */
static event_t *slot(const conv_t *c, size_t i)
{
    return &c->ring[(c->head + i) % c->cap];
}

static void lru_unlink(sb_webchat_live_t *l, conv_t *c)
{
    if (c->lru_prev)
        c->lru_prev->lru_next = c->lru_next;
    else
        l->lru_head = c->lru_next;
    if (c->lru_next)
        c->lru_next->lru_prev = c->lru_prev;
    else
        l->lru_tail = c->lru_prev;
    c->lru_prev = c->lru_next = NULL;
}

static void lru_front(sb_webchat_live_t *l, conv_t *c)
{
    if (l->lru_head == c) return;
    if (c->lru_prev || c->lru_next || l->lru_tail == c) lru_unlink(l, c);
    c->lru_next = l->lru_head;
    if (l->lru_head) l->lru_head->lru_prev = c;
    l->lru_head = c;
    if (!l->lru_tail) l->lru_tail = c;
}

static conv_t *conv_find(sb_webchat_live_t *l, const char *id)
{
    for (conv_t *c = l->buckets[bucket_of(id)]; c; c = c->hnext)
        if (strcmp(c->id, id) == 0) return c;
    return NULL;
}

static void conv_free(sb_webchat_live_t *l, conv_t *c)
{
    conv_t **pp = &l->buckets[bucket_of(c->id)];
    while (*pp && *pp != c)
        pp = &(*pp)->hnext;
    if (*pp) *pp = c->hnext;
    lru_unlink(l, c);
    for (size_t i = 0; i < c->count; i++)
        free(slot(c, i)->frame);
    l->bytes -= c->bytes;
    l->nconvs--;
    free(c->ring);
    free(c);
}

/* Drops least recently used conversations without open streams while over a bound. */
static void evict(sb_webchat_live_t *l)
{
    conv_t *c = l->lru_tail;
    while (c && (l->nconvs > l->o.max_conversations || l->bytes > l->o.max_bytes)) {
        conv_t *prev = c->lru_prev;
        if (c->nclients == 0) conv_free(l, c);
        c = prev;
    }
}

static conv_t *conv_get(sb_webchat_live_t *l, const char *id)
{
    conv_t *c = conv_find(l, id);
    if (!c) {
        c = sb_xcalloc(1, sizeof *c);
        snprintf(c->id, sizeof c->id, "%s", id);
        size_t b = bucket_of(id);
        c->hnext = l->buckets[b];
        l->buckets[b] = c;
        l->nconvs++;
    }
    lru_front(l, c);
    return c;
}

static bool ring_has(const conv_t *c, const char *id)
{
    for (size_t i = 0; i < c->count; i++)
        if (strcmp(slot(c, i)->id, id) == 0) return true;
    return false;
}

static void ring_push(sb_webchat_live_t *l, conv_t *c, const char *id, char *frame, size_t len)
{
    if (c->count == c->cap && c->cap < l->o.keep) {
        /* Grow (conversations with few replies stay small), oldest first again. */
        size_t cap = c->cap ? c->cap * 2 : 4;
        if (cap > l->o.keep) cap = l->o.keep;
        event_t *ring = sb_xcalloc(cap, sizeof *ring);
        for (size_t i = 0; i < c->count; i++)
            ring[i] = *slot(c, i);
        free(c->ring);
        c->ring = ring;
        c->cap = cap;
        c->head = 0;
    }
    if (c->count == c->cap) {
        event_t *old = slot(c, 0);
        c->bytes -= old->len;
        l->bytes -= old->len;
        free(old->frame);
        c->head = (c->head + 1) % c->cap;
        c->count--;
    }
    event_t *e = slot(c, c->count);
    snprintf(e->id, sizeof e->id, "%s", id);
    e->frame = frame;
    e->len = len;
    c->count++;
    c->bytes += len;
    l->bytes += len;
}

/* ---- streams ---- */

static void client_unlink(sb_webchat_live_t *l, client_t *cl)
{
    conv_t *c = cl->conv;
    if (cl->cprev)
        cl->cprev->cnext = cl->cnext;
    else
        c->clients = cl->cnext;
    if (cl->cnext) cl->cnext->cprev = cl->cprev;
    c->nclients--;
    if (cl->aprev)
        cl->aprev->anext = cl->anext;
    else
        l->all = cl->anext;
    if (cl->anext) cl->anext->aprev = cl->aprev;
    l->nclients--;
    sb_metric_add(l->m_streams, -1);
}

static void on_stream_closed(sb_http_stream_t *st, void *ctx)
{
    (void)st;
    client_t *cl = ctx;
    client_unlink(cl->live, cl);
    free(cl);
}

static void send_frame(client_t *cl, const char *frame, size_t len)
{
    /* A client too far behind is closed by the server (on_stream_closed follows). */
    sb_result_t rc = sb_http_stream_write(cl->st, frame, len);
    if (rc != SB_OK) SB_DEBUG(MOD, "stream write refused result=%s", sb_result_str(rc));
}

void sb_webchat_live_attach(sb_webchat_live_t *l, sb_http_request_t *req,
                            const char *conversation_id, const char *last_event_id,
                            int64_t expires_s, const char *const *extra_headers)
{
    if (!conv_id_ok(conversation_id, strlen(conversation_id))) {
        sb_http_respond_json(req, 400, "{\"error\":\"bad conversation\"}");
        return;
    }
    if (l->nclients >= l->o.max_streams) {
        static const char *const retry[] = {"Retry-After: 5", NULL};
        sb_http_respond(req, 503, "application/json", retry, "{\"error\":\"busy\"}", 16);
        return;
    }
    const char *base[] = {"Cache-Control: no-store", "X-Accel-Buffering: no",
                          "X-Content-Type-Options: nosniff"};
    const char *headers[16];
    size_t nh = 0;
    for (size_t i = 0; i < sizeof base / sizeof base[0]; i++)
        headers[nh++] = base[i];
    for (size_t i = 0; extra_headers && extra_headers[i] && nh < 15; i++)
        headers[nh++] = extra_headers[i];
    headers[nh] = NULL;

    client_t *cl = sb_xcalloc(1, sizeof *cl);
    cl->live = l;
    cl->expires_s = expires_s;
    cl->opened_ms = (uint64_t)sb_now_ms();
    cl->st = sb_http_stream_start(req, 200, "text/event-stream; charset=utf-8", headers,
                                  STREAM_MAX_QUEUED, on_stream_closed, cl);
    if (!cl->st) {
        free(cl);
        return;
    }
    conv_t *c = conv_get(l, conversation_id);
    cl->conv = c;
    cl->cnext = c->clients;
    if (c->clients) c->clients->cprev = cl;
    c->clients = cl;
    c->nclients++;
    cl->anext = l->all;
    if (l->all) l->all->aprev = cl;
    l->all = cl;
    l->nclients++;
    sb_metric_add(l->m_streams, 1);

    /* Too many tabs on one conversation: the oldest stream goes (the widget reconnects). */
    if (c->nclients > l->o.max_per_conv) {
        client_t *oldest = c->clients;
        for (client_t *x = c->clients; x; x = x->cnext)
            if (x->opened_ms <= oldest->opened_ms && x != cl) oldest = x;
        if (oldest != cl) sb_http_stream_end(oldest->st);
    }

    static const char hello[] = "retry: 3000\n: switchboard webchat.v1\n\n";
    send_frame(cl, hello, sizeof hello - 1);
    size_t from = 0;
    if (last_event_id && *last_event_id) {
        for (size_t i = 0; i < c->count; i++)
            if (strcmp(slot(c, i)->id, last_event_id) == 0) from = i + 1;
    }
    for (size_t i = from; i < c->count; i++) {
        const event_t *e = slot(c, i);
        send_frame(cl, e->frame, e->len);
        sb_metric_inc(l->m_replayed);
    }
    evict(l);
}

/* ---- from NATS to the loop ---- */

typedef struct incoming {
    sb_webchat_live_t *live;
    char conv[MAX_CONV_ID + 1];
    size_t len;
    char data[]; /* len bytes + NUL */
} incoming_t;

static void on_loop_event(void *ctx)
{
    incoming_t *in = ctx;
    sb_webchat_live_t *l = in->live;
    cJSON *j = cJSON_ParseWithLength(in->data, in->len);
    const cJSON *idj = j ? cJSON_GetObjectItemCaseSensitive(j, "id") : NULL;
    if (!cJSON_IsString(idj) || !event_id_ok(idj->valuestring) || strchr(in->data, '\n') ||
        strchr(in->data, '\r')) {
        sb_metric_inc(l->m_dropped);
        SB_WARN(MOD, "live event dropped reason=malformed bytes=%zu", in->len);
        goto out;
    }
    conv_t *c = conv_get(l, in->conv);
    if (ring_has(c, idj->valuestring)) goto out; /* a redelivered Outbound */
    sb_buf_t f = {0};
    sb_buf_appendf(&f, "id: %s\nevent: message\ndata: ", idj->valuestring);
    sb_buf_append(&f, in->data, in->len);
    sb_buf_append(&f, "\n\n", 2);
    ring_push(l, c, idj->valuestring, f.data, f.len);
    sb_metric_inc(l->m_events);
    for (client_t *cl = c->clients, *next; cl; cl = next) {
        next = cl->cnext;
        send_frame(cl, f.data, f.len);
    }
    SB_DEBUG(MOD, "live event conversation=%s event_id=%s streams=%zu", c->id, idj->valuestring,
             c->nclients);
    evict(l);
out:
    cJSON_Delete(j);
    free(in);
}

static sb_result_t on_nats(void *ctx, const sb_bus_msg_t *msg)
{
    sb_webchat_live_t *l = ctx;
    atomic_fetch_add(&l->in_callback, 1);
    if (atomic_load(&l->closing)) goto out;
    const char *prefix = "sb.webchat.live.";
    size_t plen = strlen(prefix);
    const char *subj = msg->subject ? msg->subject : "";
    if (strncmp(subj, prefix, plen) != 0 || !conv_id_ok(subj + plen, strlen(subj + plen)) ||
        msg->len == 0 || msg->len > SB_WEBCHAT_LIVE_MAX_EVENT) {
        SB_WARN(MOD, "live message ignored bytes=%zu", msg->len);
        goto out;
    }
    incoming_t *in = sb_xmalloc(sizeof *in + msg->len + 1);
    in->live = l;
    snprintf(in->conv, sizeof in->conv, "%s", subj + plen);
    in->len = msg->len;
    memcpy(in->data, msg->data, msg->len);
    in->data[msg->len] = '\0';
    if (!sb_http_server_post(l->srv, on_loop_event, in)) free(in); /* stopping */
out:
    atomic_fetch_sub(&l->in_callback, 1);
    return SB_OK;
}

static void try_subscribe(sb_webchat_live_t *l)
{
    if (l->sub) return;
    sb_result_t rc = sb_bus_subscribe(l->bus, SB_WEBCHAT_LIVE_SUBJECTS, on_nats, l, &l->sub);
    if (rc != SB_OK) {
        l->sub = NULL;
        SB_WARN(MOD, "live subscription failed, retrying error=\"%s\"", sb_result_str(rc));
        return;
    }
    SB_INFO(MOD, "live subscription subject=%s", SB_WEBCHAT_LIVE_SUBJECTS);
}

static void on_tick(void *ctx)
{
    sb_webchat_live_t *l = ctx;
    try_subscribe(l);
    int64_t now_s = sb_router_now_s();
    static const char ping[] = ": ping\n\n";
    for (client_t *cl = l->all, *next; cl; cl = next) {
        next = cl->anext;
        if (now_s > cl->expires_s)
            sb_http_stream_end(cl->st); /* its token expired: reconnect with a fresh one */
        else
            send_frame(cl, ping, sizeof ping - 1);
    }
}

sb_result_t sb_webchat_live_create(sb_webchat_live_t **out, sb_bus_t *bus, sb_http_server_t *srv,
                                   const sb_webchat_live_opts_t *opts)
{
    if (!out || !bus || !srv) return SB_E_INVALID;
    sb_webchat_live_t *l = sb_xcalloc(1, sizeof *l);
    l->bus = bus;
    l->srv = srv;
    if (opts) l->o = *opts;
    if (!l->o.keep) l->o.keep = 50;
    if (!l->o.max_conversations) l->o.max_conversations = 10000;
    if (!l->o.max_bytes) l->o.max_bytes = 16u << 20;
    if (!l->o.max_streams) l->o.max_streams = 1000;
    if (!l->o.max_per_conv) l->o.max_per_conv = 8;
    if (!l->o.keepalive_ms) l->o.keepalive_ms = 15000;
    atomic_init(&l->in_callback, 0);
    atomic_init(&l->closing, false);
    l->m_events = sb_metrics_counter("sb_router_webchat_live_events_total",
                                     "Live replies received for browser sessions", NULL);
    l->m_dropped = sb_metrics_counter("sb_router_webchat_live_dropped_total",
                                      "Live messages dropped as malformed", NULL);
    l->m_replayed = sb_metrics_counter("sb_router_webchat_live_replayed_total",
                                       "Kept replies replayed to a (re)connecting stream", NULL);
    l->m_streams = sb_metrics_gauge("sb_router_webchat_streams", "Open browser SSE streams", NULL);
    try_subscribe(l);
    sb_http_server_every(srv, l->o.keepalive_ms, on_tick, l);
    atomic_store(&the_hub, l);
    *out = l;
    return SB_OK;
}

void sb_webchat_live_destroy(sb_webchat_live_t *l)
{
    if (!l) return;
    sb_webchat_live_t *expected = l;
    atomic_compare_exchange_strong(&the_hub, &expected, NULL);
    atomic_store(&l->closing, true);
    sb_bus_sub_destroy(l->sub);
    /* A callback that started before the unsubscribe may still run: wait for it. */
    while (atomic_load(&l->in_callback) > 0)
        usleep(1000);
    /* Streams are closed by the server's stop; any left would point at freed memory. */
    SB_REQUIRE(l->nclients == 0);
    for (size_t b = 0; b < NBUCKETS; b++)
        while (l->buckets[b])
            conv_free(l, l->buckets[b]);
    free(l);
}

size_t sb_webchat_live_streams(const sb_webchat_live_t *l)
{
    return l ? l->nclients : 0;
}

/* ---- egress side ---- */

bool sb_webchat_live_is_browser(const sb_recipient_t *rcpt)
{
    return rcpt && rcpt->account_id && strcmp(rcpt->account_id, SB_WEBCHAT_BROWSER_ACCOUNT) == 0;
}

char *sb_webchat_live_event_json(const sb_outbound_t *o, int64_t now_ms)
{
    if (!o || !o->message_id || !event_id_ok(o->message_id)) return NULL;
    cJSON *root = sb_webchat_message_object(o, now_ms);
    char *json = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return json;
}

sb_result_t sb_webchat_live_deliver(const sb_channel_t *ch, const sb_chan_send_t *send,
                                    char *provider_id)
{
    (void)ch;
    const sb_outbound_t *o = send ? send->out : NULL;
    if (!o || !sb_webchat_live_is_browser(send->rcpt)) return SB_E_NOT_FOUND;
    sb_webchat_live_t *l = atomic_load(&the_hub);
    if (!l) return SB_E_NOT_FOUND;
    const char *conv = o->conversation_id ? o->conversation_id : "";
    if (!conv_id_ok(conv, strlen(conv))) return SB_E_INVALID;
    char *json = sb_webchat_live_event_json(o, sb_now_ms());
    if (!json) return SB_E_INVALID;
    sb_result_t rc = SB_E_INVALID;
    size_t len = strlen(json);
    char subject[128];
    if (len <= SB_WEBCHAT_LIVE_MAX_EVENT &&
        sb_bus_subject(subject, sizeof subject, "sb.webchat.live.%s", conv) == SB_OK) {
        rc = sb_bus_publish_core(l->bus, subject, json, len, FLUSH_MS);
        if (rc == SB_OK && provider_id)
            snprintf(provider_id, SB_CHAN_MAX_ID, "%s", o->message_id);
        else if (rc != SB_OK)
            rc = SB_E_UNAVAILABLE;
    }
    free(json);
    SB_INFO(MOD, "live delivery conversation=%s message_id=%s bytes=%zu result=%s", conv,
            o->message_id, len, sb_result_str(rc));
    return rc;
}
