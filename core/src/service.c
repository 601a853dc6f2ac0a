/* Service bootstrap shared by every binary.
 *
 * Flow: sb_service_init parses the flags, starts logging, initialises libsodium, loads the
 * configuration (file, then environment), checks the keys this service needs, hardens the
 * process (no core dumps: memory holds PII and keys; SIGPIPE ignored) and installs the
 * SIGINT/SIGTERM handlers that set the stop flag every loop polls through
 * sb_service_stopping(). sb_service_connect then opens the bus, retrying in the background
 * while NATS is not up yet, and creates the standard streams once it is. */
#include "sb/service.h"

#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <pthread.h>

#include "sb/http.h"
#include "sb/log.h"
#include "sb/seal.h"
#include "sb/util.h"

#define MOD "service"
#define DEFAULT_CONFIG "config/local.yaml"
#define STREAMS_RETRY_MS 500
#define STREAMS_WAIT_MS 30000

static atomic_bool stop_flag = false;

static void on_signal(int sig)
{
    (void)sig;
    atomic_store(&stop_flag, true);
}

static atomic_bool reload_flag;

static void on_hangup(int sig)
{
    (void)sig;
    atomic_store(&reload_flag, true);
}

bool sb_service_take_reload(void)
{
    return atomic_exchange(&reload_flag, false);
}

bool sb_service_stopping(void)
{
    return atomic_load(&stop_flag);
}

void sb_service_request_stop(void)
{
    atomic_store(&stop_flag, true);
}

static void install_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sa.sa_handler = on_hangup;
    sa.sa_flags = SA_RESTART;
    sigaction(SIGHUP, &sa, NULL);
    sa.sa_flags = 0;
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL);
}

static void harden(void)
{
    struct rlimit rl = {0, 0};
    if (setrlimit(RLIMIT_CORE, &rl) != 0) SB_WARN(MOD, "cannot disable core dumps");
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) SB_WARN(MOD, "cannot clear dumpable flag");
}

static void print_usage(const char *name, const char *usage, FILE *out)
{
    fprintf(out,
            "usage: switchboard-%s [--config PATH] [--log-level LEVEL] [--print-config] "
            "[--help]%s%s\n"
            "  --config PATH       configuration file (default: $SB_CONFIG, else %s if present)\n"
            "  --log-level LEVEL   debug, info, warn or error (overrides log_level)\n"
            "  --print-config      print the effective configuration (secrets hidden) and exit\n"
            "  --help              this text\n",
            name, usage != NULL ? "\n" : "", usage != NULL ? usage : "", DEFAULT_CONFIG);
}

int sb_service_init(sb_service_t *svc, const char *name, int argc, char **argv,
                    const char *const *required, const char *usage)
{
    const char *config_path = NULL;
    const char *log_level = NULL;
    bool print_config = false;
    char err[512];

    memset(svc, 0, sizeof *svc);
    svc->name = name;
    sb_log_init(name, SB_LOG_INFO);

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            print_usage(name, usage, stdout);
            return -1;
        } else if (strcmp(a, "--print-config") == 0) {
            print_config = true;
        } else if (strcmp(a, "--config") == 0 && i + 1 < argc) {
            config_path = argv[++i];
        } else if (strncmp(a, "--config=", 9) == 0) {
            config_path = a + 9;
        } else if (strcmp(a, "--log-level") == 0 && i + 1 < argc) {
            log_level = argv[++i];
        } else if (strncmp(a, "--log-level=", 12) == 0) {
            log_level = a + 12;
        } else if (strcmp(a, "--config") == 0 || strcmp(a, "--log-level") == 0) {
            fprintf(stderr, "switchboard-%s: %s needs a value\n", name, a);
            return 2;
        } else {
            /* Service-specific arguments are the service's business (see usage). */
            continue;
        }
    }
    if (log_level != NULL && sb_log_level_parse(log_level) < 0) {
        fprintf(stderr, "switchboard-%s: --log-level: unknown level (debug, info, warn, error)\n",
                name);
        return 2;
    }
    if (config_path == NULL) {
        const char *env = getenv("SB_CONFIG");
        if (env != NULL && env[0] != '\0')
            config_path = env;
        else if (access(DEFAULT_CONFIG, R_OK) == 0)
            config_path = DEFAULT_CONFIG;
    }

    if (sb_seal_init() != SB_OK) {
        fprintf(stderr, "switchboard-%s: libsodium failed to initialise\n", name);
        return 1;
    }
    if (sb_config_load(&svc->cfg, config_path, err, sizeof err) != SB_OK) {
        fprintf(stderr, "switchboard-%s: %s\n", name, err);
        return 2;
    }
    if (log_level != NULL) {
        free(svc->cfg.log_level);
        svc->cfg.log_level = sb_xstrdup(log_level);
    }
    if (print_config) {
        sb_config_print(&svc->cfg, stdout);
        sb_config_free(&svc->cfg);
        return -1;
    }
    if (required != NULL && sb_config_require(&svc->cfg, required, err, sizeof err) != SB_OK) {
        fprintf(stderr, "switchboard-%s: %s\n", name, err);
        sb_config_free(&svc->cfg);
        return 2;
    }
    int lvl = sb_log_level_parse(svc->cfg.log_level);
    sb_log_init(name, lvl >= 0 ? (sb_log_level_t)lvl : SB_LOG_INFO);
    harden();
    install_signals();
    SB_INFO(MOD, "starting config=%s", config_path != NULL ? config_path : "(defaults)");
    return 0;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
        if (sb_service_stopping()) return;
    }
}

sb_result_t sb_service_connect(sb_service_t *svc, bool ensure_streams)
{
    sb_result_t rc = sb_bus_connect(&svc->bus, &svc->cfg.nats, svc->name, false);
    if (rc != SB_OK) return rc;
    if (!ensure_streams) return SB_OK;
    for (long waited = 0; waited <= STREAMS_WAIT_MS; waited += STREAMS_RETRY_MS) {
        if (sb_service_stopping()) return SB_E_UNAVAILABLE;
        if (sb_bus_is_connected(svc->bus)) {
            rc = sb_bus_ensure_streams(svc->bus);
            if (rc == SB_OK) return SB_OK;
            if (rc == SB_E_CONFIG)
                return rc; /* the server refused our limits: retrying won't help */
        }
        sleep_ms(STREAMS_RETRY_MS);
    }
    SB_ERROR(MOD, "streams not ready after wait_ms=%d", STREAMS_WAIT_MS);
    return SB_E_UNAVAILABLE;
}

void sb_service_close(sb_service_t *svc)
{
    if (svc == NULL) return;
    sb_bus_destroy(svc->bus);
    svc->bus = NULL;
    sb_config_free(&svc->cfg);
}

/* The work thread: when work ends (stop requested, or a fatal error inside it), the ops
 * server stops too. */
typedef struct run_ctx {
    void *(*work)(void *ctx);
    void *ctx;
} run_ctx_t;

static void *run_work(void *arg)
{
    run_ctx_t *rc = arg;
    rc->work(rc->ctx);
    sb_service_request_stop();
    return NULL;
}

sb_result_t sb_service_run(sb_service_t *svc, const char *listen, const char *listen_key,
                           bool (*ready)(void *ctx), void *(*work)(void *ctx), void *ctx)
{
    if (svc == NULL || work == NULL) return SB_E_INVALID;
    if (listen == NULL || listen[0] == '\0') {
        work(ctx);
        return SB_OK;
    }
    const sb_http_limits_t limits = {
        .max_header_bytes = 8192,
        .max_headers = 64,
        .request_timeout_ms = 10000,
        .idle_timeout_ms = 30000,
        .max_connections = 64,
    };
    sb_http_server_t *srv = NULL;
    sb_result_t r = sb_http_server_create(&srv, listen, &limits);
    if (r != SB_OK) {
        SB_ERROR("service", "cannot listen key=%s listen=%s result=\"%s\"",
                 listen_key ? listen_key : "-", listen, sb_result_str(r));
        return r;
    }
    sb_http_server_ops_routes(srv, ready, ctx);
    pthread_t thread;
    run_ctx_t rc = {work, ctx};
    if (pthread_create(&thread, NULL, run_work, &rc) != 0) {
        SB_ERROR("service", "cannot start the work thread");
        sb_http_server_destroy(srv);
        return SB_E_INTERNAL;
    }
    SB_INFO("service", "ops endpoints listen=%s", listen);
    r = sb_http_server_run(srv);
    sb_service_request_stop();
    pthread_join(thread, NULL);
    sb_http_server_destroy(srv);
    return r;
}

void *sb_service_consume(void *arg)
{
    sb_service_consumer_t *c = arg;
    sb_bus_pull_t *pull = NULL;
    int failures = 0;
    int batch = c->svc->cfg.nats.fetch_batch > 0 ? (int)c->svc->cfg.nats.fetch_batch : 32;
    while (!sb_service_stopping()) {
        if (sb_service_take_reload() && c->on_reload) c->on_reload(c->reload_ctx);
        if (!pull) {
            sb_result_t r = sb_bus_ensure_streams(c->svc->bus);
            if (r == SB_OK)
                r = sb_bus_pull_create(c->svc->bus, c->stream, c->durable, c->filter, &pull);
            if (r != SB_OK) {
                if (failures++ % 30 == 0)
                    SB_WARN(MOD,
                            "consumer not bound yet, retrying stream=%s durable=%s result=\"%s\"",
                            c->stream, c->durable, sb_result_str(r));
                sb_sleep_ms(1000);
                continue;
            }
            failures = 0;
            atomic_store(&c->ready, true);
            SB_INFO(MOD, "consuming stream=%s durable=%s filter=%s", c->stream, c->durable,
                    c->filter ? c->filter : "-");
        }
        int handled = 0;
        /* fetch returns as soon as a message is there; the wait bounds the stop latency */
        sb_result_t r = sb_bus_pull_fetch(pull, batch, 1000, c->handler, c->ctx, &handled);
        if (r != SB_OK) {
            atomic_store(&c->ready, false);
            if (failures++ % 30 == 0)
                SB_WARN(MOD, "fetch failed, retrying durable=%s result=\"%s\"", c->durable,
                        sb_result_str(r));
            sb_sleep_ms(500);
        } else {
            if (failures) atomic_store(&c->ready, true);
            failures = 0;
        }
    }
    atomic_store(&c->ready, false);
    sb_bus_pull_destroy(pull);
    return NULL;
}

bool sb_service_consumer_ready(void *arg)
{
    sb_service_consumer_t *c = arg;
    return atomic_load(&c->ready) && sb_bus_is_connected(c->svc->bus);
}
