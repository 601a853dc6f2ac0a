/* switchboard-escalation: the worker that owns the conversation store. The main thread runs
 * the core HTTP server (/metrics, /healthz, /readyz on escalation.metrics_listen, or no socket
 * when it is empty) until SIGINT/SIGTERM; one worker thread does everything else, because it is
 * the store's only writer: it binds the durable pull consumers `escalation` (SB_NLU, sb.nlu.>)
 * and `escalation-agent` (SB_AGENT, sb.agent.>), fetches from them in alternation with short
 * timeouts, hands each message to the engine (conversation.c), which publishes its outputs and
 * commits its writes before the bus acks, and runs the retention sweep on a timer. */
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
#define FETCH_TIMEOUT_MS 100
#define RETRY_MS 500
#define SWEEP_INTERVAL_MS 60000
#define SWEEP_BATCH 1000
#define SWEEP_MAX_BATCHES 20 /* per tick, so consumers are never starved for long */
#define OLDEST_SCAN 1000

typedef struct app {
    sb_service_t svc;
    esc_vault_t *vault;
    esc_engine_t *engine;
    sb_http_server_t *http;
    atomic_bool ready;
    sb_metric_t *m_map, *m_deleted, *m_oldest;
} app_t;

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

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
    return esc_engine_on_classification(a->engine, msg->data, msg->len, sb_now_ms());
}

static sb_result_t on_agent(void *ctx, const sb_bus_msg_t *msg)
{
    app_t *a = ctx;
    return esc_engine_on_command(a->engine, msg->data, msg->len, sb_now_ms());
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

static void *worker_main(void *arg)
{
    app_t *a = arg;
    sb_bus_pull_t *nlu = NULL, *agent = NULL;
    int batch = (int)a->svc.cfg.nats.fetch_batch;
    if (batch < 1) batch = 1;
    uint64_t next_sweep = 0;

    while (!sb_service_stopping()) {
        /* retention runs whether NATS is up or not */
        uint64_t now = sb_mono_ns() / 1000000u;
        if (now >= next_sweep) {
            sweep(a);
            next_sweep = now + SWEEP_INTERVAL_MS;
        }
        if (!nlu || !agent) {
            sb_result_t r = SB_OK;
            if (!sb_bus_is_connected(a->svc.bus)) {
                sleep_ms(RETRY_MS);
                continue;
            }
            if (!sb_bus_has_streams(a->svc.bus)) r = sb_bus_ensure_streams(a->svc.bus);
            if (r == SB_OK && !nlu)
                r = sb_bus_pull_create(a->svc.bus, SB_STREAM_NLU, "escalation", "sb.nlu.>", &nlu);
            if (r == SB_OK && !agent)
                r = sb_bus_pull_create(a->svc.bus, SB_STREAM_AGENT, "escalation-agent",
                                       "sb.agent.>", &agent);
            if (r != SB_OK) {
                SB_WARN(MOD, "consumers not ready result=%s", sb_result_str(r));
                sleep_ms(RETRY_MS);
                continue;
            }
            SB_INFO(MOD, "consuming durable=escalation durable=escalation-agent");
            atomic_store(&a->ready, true);
        }
        int handled = 0;
        sb_result_t r1 = sb_bus_pull_fetch(nlu, batch, FETCH_TIMEOUT_MS, on_nlu, a, &handled);
        sb_result_t r2 = sb_bus_pull_fetch(agent, batch, FETCH_TIMEOUT_MS, on_agent, a, &handled);
        bool up = r1 == SB_OK && r2 == SB_OK;
        atomic_store(&a->ready, up && sb_bus_is_connected(a->svc.bus));
        if (!up) sleep_ms(RETRY_MS / 2);
    }
    atomic_store(&a->ready, false);
    sb_bus_pull_destroy(nlu);
    sb_bus_pull_destroy(agent);
    sb_http_server_stop(a->http);
    return NULL;
}

static bool is_ready(void *ctx)
{
    app_t *a = ctx;
    return atomic_load(&a->ready) && sb_bus_is_connected(a->svc.bus);
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
    pthread_t worker;
    bool worker_started = false;

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
    if (pthread_create(&worker, NULL, worker_main, &a) != 0) {
        SB_ERROR(MOD, "cannot start the worker thread");
        goto out;
    }
    worker_started = true;
    SB_INFO(MOD, "running metrics_listen=%s team=%s partitions=%lld", listen ? listen : "-",
            cfg->escalation.default_team, (long long)cfg->nats.partitions);
    r = sb_http_server_run(a.http);
    if (r != SB_OK) SB_WARN(MOD, "http loop ended result=%s", sb_result_str(r));
    status = 0;
out:
    sb_service_request_stop();
    if (worker_started) pthread_join(worker, NULL);
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
