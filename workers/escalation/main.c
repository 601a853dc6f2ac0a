/* switchboard-escalation: the worker that owns the conversation store. The main thread runs
 * the core HTTP server (/metrics, /healthz, /readyz on escalation.metrics_listen, or no socket
 * when it is empty) until SIGINT/SIGTERM. Two consumer threads bind the durable pull consumers
 * `escalation` (SB_NLU, sb.nlu.>) and `escalation-agent` (SB_AGENT, sb.agent.>) with the
 * shared pull loop (sb_service_consume) and hand each message to the engine (conversation.c)
 * under one mutex, so the store has one writer at a time; the engine publishes its outputs and
 * commits its writes before the bus acks. A third thread runs the retention sweep on a timer,
 * under the same mutex. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "conversation.h"
#include "sb/bus.h"
#include "sb/http.h"
#include "sb/log.h"
#include "sb/metrics.h"
#include "sb/seal.h"
#include "sb/service.h"
#include "sb/util.h"
#include "vault.h"

#define MOD "escalation"
#define NCONSUMERS 2
#define SWEEP_INTERVAL_MS 60000
#define SWEEP_BATCH 1000
#define SWEEP_MAX_BATCHES 20 /* per tick, so consumers are never starved for long */
#define OLDEST_SCAN 1000

typedef struct app {
    sb_service_t svc;
    esc_vault_t *vault;
    esc_engine_t *engine;
    sb_http_server_t *http;
    pthread_mutex_t lock; /* serializes every store writer: handlers and the sweep */
    /* One thread per durable, each blocking in its own fetch (sb_service_consume), so a
     * message on one stream never waits for the other's; their handlers take lock. */
    sb_service_consumer_t consumers[NCONSUMERS];
    sb_metric_t *m_map, *m_deleted, *m_oldest;
} app_t;

static sb_result_t publish_bus(void *ctx, const char *subject, const uint8_t *data, size_t len,
                               const char *msg_id)
{
    app_t *a = ctx;
    sb_result_t r = sb_bus_publish(a->svc.bus, subject, data, len, msg_id, NULL);
    return r == SB_E_DUPLICATE ? SB_OK : r;
}

static sb_result_t on_nlu(void *ctx, const sb_bus_msg_t *msg)
{
    app_t *a = ctx;
    pthread_mutex_lock(&a->lock);
    sb_result_t r = esc_engine_on_classification(a->engine, msg->data, msg->len, sb_now_ms());
    pthread_mutex_unlock(&a->lock);
    return r;
}

static sb_result_t on_agent(void *ctx, const sb_bus_msg_t *msg)
{
    app_t *a = ctx;
    pthread_mutex_lock(&a->lock);
    sb_result_t r = esc_engine_on_command(a->engine, msg->data, msg->len, sb_now_ms());
    pthread_mutex_unlock(&a->lock);
    return r;
}

/* One retention tick: bounded batches, then the figures for metrics and the log. */
static void sweep(app_t *a)
{
    int64_t now_s = sb_now_ms() / 1000;
    size_t total = 0;
    bool more = false;
    for (int i = 0; i < SWEEP_MAX_BATCHES; i++) {
        size_t deleted = 0;
        sb_result_t r = esc_vault_sweep(a->vault, now_s, SWEEP_BATCH, &deleted, &more);
        if (r != SB_OK) {
            SB_ERROR(MOD, "retention sweep failed result=%s", sb_result_str(r));
            break;
        }
        total += deleted;
        if (!more) break;
    }
    int64_t oldest = 0;
    if (esc_vault_oldest_age(a->vault, now_s, OLDEST_SCAN, &oldest) != SB_OK) oldest = -1;
    sb_metric_add(a->m_deleted, (double)total);
    if (oldest >= 0) sb_metric_set(a->m_oldest, (double)oldest);
    sb_metric_set(a->m_map, (double)sb_store_map_size(esc_vault_store(a->vault)));
    if (total > 0 || more)
        SB_INFO(MOD, "retention sweep deleted=%zu more=%s oldest_s=%lld", total,
                more ? "yes" : "no", (long long)oldest);
    else
        SB_DEBUG(MOD, "retention sweep deleted=0 oldest_s=%lld", (long long)oldest);
}

/* The retention sweep's own thread: a tick every SWEEP_INTERVAL_MS under a->lock, whether
 * NATS is up or not; it wakes every 100 ms to notice a stop. */
static void *sweeper_main(void *arg)
{
    app_t *a = arg;
    while (!sb_service_stopping()) {
        pthread_mutex_lock(&a->lock);
        sweep(a);
        pthread_mutex_unlock(&a->lock);
        for (int waited = 0; waited < SWEEP_INTERVAL_MS && !sb_service_stopping(); waited += 100)
            sb_sleep_ms(100);
    }
    return NULL;
}

/* Ready when both consumers are bound and fetching. */
static bool is_ready(void *ctx)
{
    app_t *a = ctx;
    for (size_t i = 0; i < NCONSUMERS; i++)
        if (!sb_service_consumer_ready(&a->consumers[i])) return false;
    return true;
}

static sb_result_t load_key(uint8_t key[SB_SEAL_KEY_BYTES], const char *b64, const char *name)
{
    sb_result_t r = sb_seal_key_from_base64(key, b64);
    if (r != SB_OK) SB_ERROR(MOD, "bad key name=%s (base64 of 32 bytes expected)", name);
    return r;
}

int main(int argc, char **argv)
{
    static const char *const required[] = {"keys.contact_secret_key", "keys.contact_public_key",
                                           "keys.recipient_public_key", "keys.master_key", NULL};
    static app_t a;
    int rc = sb_service_init(&a.svc, "escalation", argc, argv, required, NULL);
    if (rc != 0) return rc < 0 ? 0 : rc;
    const sb_config_t *cfg = &a.svc.cfg;
    int status = 1;
    uint8_t contact_pk[SB_SEAL_KEY_BYTES], contact_sk[SB_SEAL_KEY_BYTES];
    uint8_t recipient_pk[SB_SEAL_KEY_BYTES], master[SB_SEAL_KEY_BYTES];
    char *lmdb_dir = NULL;
    static const struct {
        const char *stream, *durable, *filter;
        sb_bus_handler_fn handler;
    } durables[NCONSUMERS] = {
        {SB_STREAM_NLU, "escalation", "sb.nlu.>", on_nlu},
        {SB_STREAM_AGENT, "escalation-agent", "sb.agent.>", on_agent},
    };
    pthread_t threads[NCONSUMERS + 1]; /* the consumers, then the sweeper */
    size_t nthreads = 0;
    for (size_t i = 0; i < NCONSUMERS; i++) {
        sb_service_consumer_t *c = &a.consumers[i];
        c->svc = &a.svc;
        c->stream = durables[i].stream;
        c->durable = durables[i].durable;
        c->filter = durables[i].filter;
        c->handler = durables[i].handler;
        c->ctx = &a;
        atomic_init(&c->ready, false);
    }
    pthread_mutex_init(&a.lock, NULL);

    if (load_key(contact_pk, cfg->keys.contact_public_key, "keys.contact_public_key") != SB_OK ||
        load_key(contact_sk, cfg->keys.contact_secret_key, "keys.contact_secret_key") != SB_OK ||
        load_key(recipient_pk, cfg->keys.recipient_public_key, "keys.recipient_public_key") !=
            SB_OK ||
        load_key(master, cfg->keys.master_key, "keys.master_key") != SB_OK)
        goto out;

    lmdb_dir = sb_xasprintf("%s/lmdb", cfg->data_dir);
    esc_vault_config_t vc = {
        .dir = lmdb_dir,
        .map_size = (size_t)cfg->store.map_size_mb << 20,
        .max_map_size = (size_t)cfg->store.max_map_size_mb << 20,
        .master_key = master,
        .master_key_id = (uint32_t)cfg->keys.master_key_id,
        .transcript_retention_s = cfg->store.transcript_retention_days * 86400,
        .dedup_retention_s = cfg->store.dedup_retention_days * 86400,
    };
    sb_result_t r = esc_vault_open(&a.vault, &vc);
    if (r != SB_OK) {
        SB_ERROR(MOD, "cannot open the store dir=%s result=%s", lmdb_dir, sb_result_str(r));
        goto out;
    }

    esc_engine_config_t ec = {
        .vault = a.vault,
        .policy =
            {
                .confidence_threshold = cfg->escalation.confidence_threshold,
                .ambiguity_margin = cfg->escalation.ambiguity_margin,
                .max_fallbacks = (uint32_t)cfg->escalation.max_fallbacks,
                .transcript_turns = (uint32_t)cfg->escalation.transcript_turns,
                .partitions = (uint32_t)cfg->nats.partitions,
            },
        .contact_pk = contact_pk,
        .contact_sk = contact_sk,
        .recipient_pk = recipient_pk,
        .publish = publish_bus,
        .publish_ctx = &a,
    };
    esc_set_id(ec.policy.default_team, cfg->escalation.default_team);
    r = esc_engine_create(&a.engine, &ec);
    if (r != SB_OK) {
        SB_ERROR(MOD, "cannot start the engine result=%s", sb_result_str(r));
        goto out;
    }

    a.m_map = sb_metrics_gauge("sb_store_map_bytes", "LMDB map size in bytes", NULL);
    a.m_deleted = sb_metrics_counter("sb_retention_deleted_total",
                                     "Records deleted by the retention sweep", NULL);
    a.m_oldest = sb_metrics_gauge("sb_retention_oldest_seconds",
                                  "Age of the oldest record kept in the store", NULL);
    sb_metric_set(a.m_map, (double)sb_store_map_size(esc_vault_store(a.vault)));

    const char *listen = cfg->escalation.metrics_listen && cfg->escalation.metrics_listen[0]
                             ? cfg->escalation.metrics_listen
                             : NULL;
    sb_http_limits_t limits = {.max_header_bytes = 16384,
                               .max_headers = 64,
                               .request_timeout_ms = 10000,
                               .idle_timeout_ms = 30000,
                               .max_connections = 64};
    r = sb_http_server_create(&a.http, listen, &limits);
    if (r != SB_OK) {
        SB_ERROR(MOD, "cannot listen for metrics listen=%s result=%s", listen ? listen : "-",
                 sb_result_str(r));
        goto out;
    }
    sb_http_server_ops_routes(a.http, is_ready, &a);

    /* the worker binds the consumers itself, so /healthz answers while NATS comes up */
    r = sb_service_connect(&a.svc, false);
    if (r != SB_OK) {
        SB_ERROR(MOD, "cannot create the bus connection result=%s", sb_result_str(r));
        goto out;
    }
    for (size_t i = 0; i < NCONSUMERS; i++) {
        if (pthread_create(&threads[nthreads], NULL, sb_service_consume, &a.consumers[i]) != 0) {
            SB_ERROR(MOD, "cannot start a consumer thread durable=%s", a.consumers[i].durable);
            goto out;
        }
        nthreads++;
    }
    if (pthread_create(&threads[nthreads], NULL, sweeper_main, &a) != 0) {
        SB_ERROR(MOD, "cannot start the retention thread");
        goto out;
    }
    nthreads++;
    SB_INFO(MOD, "running metrics_listen=%s team=%s partitions=%lld", listen ? listen : "-",
            cfg->escalation.default_team, (long long)cfg->nats.partitions);
    r = sb_http_server_run(a.http);
    if (r != SB_OK) SB_WARN(MOD, "http loop ended result=%s", sb_result_str(r));
    status = 0;
out:
    sb_service_request_stop();
    for (size_t i = 0; i < nthreads; i++)
        pthread_join(threads[i], NULL);
    sb_http_server_destroy(a.http);
    esc_engine_destroy(a.engine);
    esc_vault_close(a.vault);
    sb_seal_wipe(contact_sk, sizeof(contact_sk));
    sb_seal_wipe(master, sizeof(master));
    free(lmdb_dir);
    sb_service_close(&a.svc);
    SB_INFO(MOD, "stopped status=%d", status);
    return status;
}
