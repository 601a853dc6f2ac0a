/* Service bootstrap shared by every binary: flags (--config, --print-config, --help), logging,
 * libsodium, configuration with per-service required keys, the bus connection and the stop
 * flag set by SIGINT/SIGTERM. */
#ifndef SB_SERVICE_H
#define SB_SERVICE_H

#include <stdatomic.h>
#include <stdbool.h>

#include "bus.h"
#include "config.h"

typedef struct sb_service {
    const char *name; /* "router", "classifier", ... */
    sb_config_t cfg;
    sb_bus_t *bus; /* connected by sb_service_connect */
} sb_service_t;

/* Parses argv and loads the configuration. Returns 0 to go on, or an exit status (> 0 on
 * error, or -1 when a flag such as --print-config or --help was served and the process should
 * exit 0). required: NULL-terminated dotted keys that must be set for this service. */
int sb_service_init(sb_service_t *svc, const char *name, int argc, char **argv,
                    const char *const *required, const char *usage);
/* Connects the bus (retrying in the background when NATS is not up yet) and, with
 * ensure_streams, creates the standard streams once connected (waits up to 30 s). */
SB_MUST_CHECK sb_result_t sb_service_connect(sb_service_t *svc, bool ensure_streams);
/* True once SIGINT/SIGTERM arrived (installs handlers in sb_service_init). Any thread. */
bool sb_service_stopping(void);
/* True once after each SIGHUP (the handler is installed by sb_service_init): the worker
 * reloads its files (model, answers) at a safe point. Any thread. */
bool sb_service_take_reload(void);
/* Marks the service as stopping (as a signal would). */
void sb_service_request_stop(void);
/* Runs work(ctx) until the service stops. With listen ("host:port") set, this thread serves
 * /healthz, /readyz (ready(ctx); NULL = always ready) and /metrics there while work runs on a
 * thread of its own; with listen NULL or empty, work runs on this thread. work returns when
 * sb_service_stopping() becomes true. listen_key names the config key in the error when the
 * port cannot be bound. Returns SB_OK after a clean stop. */
SB_MUST_CHECK sb_result_t sb_service_run(sb_service_t *svc, const char *listen,
                                         const char *listen_key, bool (*ready)(void *ctx),
                                         void *(*work)(void *ctx), void *ctx);
/* One worker's pull loop: bind the durable (retrying every second while NATS or the stream
 * is not there), then fetch batches of nats.fetch_batch and hand each message to handler
 * (acked by its verdict, see sb_bus_pull_fetch) until the service stops. After a SIGHUP,
 * on_reload (may be NULL) runs between two batches, on this thread. ready is true while
 * bound and fetching (for /readyz). */
typedef struct sb_service_consumer {
    sb_service_t *svc;
    const char *stream, *durable, *filter;
    sb_bus_handler_fn handler;
    void *ctx;
    void (*on_reload)(void *reload_ctx);
    void *reload_ctx;
    atomic_bool ready;
} sb_service_consumer_t;
/* Runs the loop of c (an sb_service_consumer_t *) until the service stops; returns NULL, so
 * it can be sb_service_run's work. */
void *sb_service_consume(void *c);
/* /readyz of a consumer: bound, fetching and connected. */
bool sb_service_consumer_ready(void *c);

void sb_service_close(sb_service_t *svc);

#endif
