/* switchboard-router: webhook ingress and channel API egress.
 *
 * Start-up: flags and config (sb_service_init), the keys and each enabled channel's secrets,
 * the channels, the bus with the standard streams, then one HTTP server on router.http_listen
 * carrying the channel webhooks, /healthz /readyz /metrics, and the built-in sink; the egress
 * thread consumes SB_OUT; with the webchat channel, the browser widget's API and files
 * (webchat_browser.h) and the live-reply hub (webchat_live.h). /readyz is true while the bus is
 * connected and the streams exist: the stream check is a blocking JetStream request, so a small
 * thread refreshes a cached answer every two seconds and the loop only reads it. Shutdown
 * (SIGINT/SIGTERM): the server stops (answering requests in progress), then the readiness and
 * egress threads are joined, then the bus is closed. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "channel.h"
#include "egress.h"
#include "ingress.h"
#include "sb/http.h"
#include "sb/log.h"
#include "sb/redact.h"
#include "sb/seal.h"
#include "sb/service.h"
#include "sink.h"
#include "webchat_browser.h"
#include "webchat_live.h"

#define MOD "router"
#define READY_INTERVAL_MS 2000
#define SINK_MAX_BODY (1024 * 1024)

typedef struct router {
    sb_service_t svc;
    sb_channel_t *channels[8];
    size_t nchannels;
    atomic_bool streams_ok;
    atomic_bool stop_ready;
    pthread_t ready_thread;
} router_t;

static bool is_ready(void *ctx)
{
    router_t *r = ctx;
    return sb_bus_is_connected(r->svc.bus) && atomic_load(&r->streams_ok);
}

static void *ready_loop(void *arg)
{
    router_t *r = arg;
    while (!atomic_load(&r->stop_ready) && !sb_service_stopping()) {
        bool ok = false;
        if (sb_bus_is_connected(r->svc.bus)) {
            ok = sb_bus_has_streams(r->svc.bus);
            if (!ok) ok = sb_bus_ensure_streams(r->svc.bus) == SB_OK; /* e.g. a fresh server */
        }
        if (ok != atomic_load(&r->streams_ok))
            SB_INFO(MOD, "readiness changed ready=%s", ok ? "true" : "false");
        atomic_store(&r->streams_ok, ok);
        for (int i = 0;
             i < READY_INTERVAL_MS / 100 && !atomic_load(&r->stop_ready) && !sb_service_stopping();
             i++)
            usleep(100 * 1000);
    }
    return NULL;
}

static int load_key(const char *name, const char *b64, uint8_t key[SB_SEAL_KEY_BYTES])
{
    if (sb_seal_key_from_base64(key, b64) != SB_OK) {
        fprintf(stderr, "switchboard-router: %s: expected base64 of 32 bytes\n", name);
        return 2;
    }
    return 0;
}

/* "http://<listen host, or 127.0.0.1 for a wildcard>:<bound port>/_sink" */
static char *sink_base(const sb_config_t *cfg, int port)
{
    char host[256] = "127.0.0.1";
    int p = 0;
    if (sb_parse_hostport(cfg->router.http_listen, host, sizeof host, &p) != SB_OK ||
        host[0] == '\0' || strcmp(host, "0.0.0.0") == 0 || strcmp(host, "::") == 0 ||
        strcmp(host, "[::]") == 0)
        snprintf(host, sizeof host, "127.0.0.1");
    bool v6 = strchr(host, ':') != NULL && host[0] != '[';
    return sb_xasprintf("http://%s%s%s:%d/_sink", v6 ? "[" : "", host, v6 ? "]" : "", port);
}

int main(int argc, char **argv)
{
    static const char *const required[] = {"keys.id_secret", "keys.contact_public_key",
                                           "keys.recipient_public_key", "keys.recipient_secret_key",
                                           NULL};
    router_t r;
    memset(&r, 0, sizeof r);
    atomic_init(&r.streams_ok, false);
    atomic_init(&r.stop_ready, false);
    int status = sb_service_init(&r.svc, "router", argc, argv, required, NULL);
    if (status != 0) return status < 0 ? 0 : status;
    const sb_config_t *cfg = &r.svc.cfg;
    char err[512];
    sb_http_server_t *srv = NULL;
    sb_ingress_t *ing = NULL;
    sb_router_sink_t *sink = NULL;
    sb_egress_t *eg = NULL;
    sb_webchat_live_t *live = NULL;
    sb_webchat_browser_t *wb = NULL;
    char *sbase = NULL;
    bool ready_started = false;
    status = 1;

    sb_ingress_keys_t keys = {.partitions = (uint32_t)cfg->nats.partitions};
    sb_egress_opts_t eopts = {.cfg = cfg};
    if (load_key("keys.id_secret", cfg->keys.id_secret, keys.id_secret) ||
        load_key("keys.contact_public_key", cfg->keys.contact_public_key, keys.contact_pk) ||
        load_key("keys.recipient_public_key", cfg->keys.recipient_public_key, eopts.recipient_pk) ||
        load_key("keys.recipient_secret_key", cfg->keys.recipient_secret_key, eopts.recipient_sk)) {
        status = 2;
        goto out;
    }
    if (sb_redact_init() != SB_OK) {
        SB_ERROR(MOD, "redaction patterns failed to compile");
        goto out;
    }
    for (size_t i = 0; sb_channel_table[i]; i++) {
        const sb_channel_ops_t *ops = sb_channel_table[i];
        if (!ops->enabled(cfg)) continue;
        SB_REQUIRE(r.nchannels < sizeof r.channels / sizeof r.channels[0]);
        if (sb_config_require(cfg, ops->required_keys, err, sizeof err) != SB_OK ||
            sb_channel_create(ops, cfg, &r.channels[r.nchannels], err, sizeof err) != SB_OK) {
            fprintf(stderr, "switchboard-router: %s\n", err);
            status = 2;
            goto out;
        }
        r.nchannels++;
    }
    if (sb_egress_check_config(cfg, err, sizeof err) != SB_OK) {
        fprintf(stderr, "switchboard-router: %s\n", err);
        status = 2;
        goto out;
    }
    if (getenv("SB_TEST_NOW") && *getenv("SB_TEST_NOW"))
        SB_WARN(MOD, "test clock SB_TEST_NOW is set: signature windows use it, not the wall clock");

    sb_result_t rc = sb_service_connect(&r.svc, true);
    if (rc == SB_E_CONFIG || !r.svc.bus) {
        SB_ERROR(MOD, "bus failed error=\"%s\"", sb_result_str(rc));
        goto out;
    }
    if (rc != SB_OK) SB_WARN(MOD, "streams not ready yet; webhooks answer 503 until they are");
    atomic_store(&r.streams_ok, rc == SB_OK);

    sb_http_limits_t limits = {
        .max_header_bytes = (size_t)cfg->router.max_header_bytes,
        .max_headers = (size_t)cfg->router.max_headers,
        .request_timeout_ms = (uint64_t)cfg->router.request_timeout_ms,
        .idle_timeout_ms = 60000,
        .max_connections = (size_t)cfg->router.max_connections,
    };
    rc = sb_http_server_create(&srv, cfg->router.http_listen, &limits);
    if (rc != SB_OK) {
        SB_ERROR(MOD, "cannot listen listen=%s error=\"%s\"", cfg->router.http_listen,
                 sb_result_str(rc));
        goto out;
    }
    ing = sb_ingress_create(&keys, r.svc.bus);
    for (size_t i = 0; i < r.nchannels; i++) {
        sb_ingress_add_routes(ing, srv, r.channels[i]);
        SB_INFO(MOD, "channel enabled channel=%s path=%s max_body=%zu", r.channels[i]->ops->name,
                r.channels[i]->ops->ingress_path, r.channels[i]->max_body);
    }
    sink = sb_router_sink_create((size_t)cfg->router.sink_keep);
    sb_router_sink_add_routes(sink, srv, SINK_MAX_BODY);
    sb_http_server_ops_routes(srv, is_ready, &r);

    sbase = sink_base(cfg, sb_http_server_port(srv));
    eopts.bus = r.svc.bus;
    eopts.channels = r.channels;
    eopts.nchannels = r.nchannels;
    eopts.sink_base = sbase;
    memcpy(eopts.id_secret, keys.id_secret, sizeof eopts.id_secret);
    rc = sb_egress_start(&eg, &eopts);
    if (rc != SB_OK) {
        SB_ERROR(MOD, "egress failed to start error=\"%s\"", sb_result_str(rc));
        if (rc == SB_E_CONFIG) status = 2;
        goto out;
    }
    if (pthread_create(&r.ready_thread, NULL, ready_loop, &r) != 0) {
        SB_ERROR(MOD, "readiness thread failed to start");
        goto out;
    }
    ready_started = true;
    if (cfg->webchat.enabled) {
        /* The browser widget, last: once the live hub subscribes, the loop must run. */
        sb_webchat_browser_opts_t wopts = {.cfg = cfg, .ing = ing, .id_secret = keys.id_secret};
        if (sb_webchat_browser_create(&wb, &wopts, err, sizeof err) != SB_OK) {
            fprintf(stderr, "switchboard-router: %s\n", err);
            status = 2;
            goto out;
        }
        if (sb_webchat_live_create(&live, r.svc.bus, srv, NULL) != SB_OK) goto out;
        sb_webchat_browser_set_live(wb, live);
        sb_webchat_browser_add_routes(wb, srv);
    }
    SB_INFO(MOD, "listening listen=%s port=%d channels=%zu", cfg->router.http_listen,
            sb_http_server_port(srv), r.nchannels);
    rc = sb_http_server_run(srv);
    status = rc == SB_OK ? 0 : 1;
    SB_INFO(MOD, "stopping");

out:
    sb_service_request_stop(); /* every thread polls it */
    if (ready_started) {
        atomic_store(&r.stop_ready, true);
        pthread_join(r.ready_thread, NULL);
    }
    sb_egress_stop(eg);
    sb_webchat_live_destroy(live); /* the server has stopped: no stream is open */
    sb_http_server_destroy(srv);
    sb_webchat_browser_destroy(wb);
    sb_ingress_destroy(ing);
    sb_router_sink_destroy(sink);
    for (size_t i = 0; i < r.nchannels; i++)
        sb_channel_destroy(r.channels[i]);
    free(sbase);
    sb_seal_wipe(&keys, sizeof keys);
    sb_seal_wipe(&eopts, sizeof eopts);
    sb_service_close(&r.svc);
    SB_INFO(MOD, "stopped status=%d", status);
    return status;
}
