/* Integration test harness: a real nats-server with JetStream on 127.0.0.1 and a free port, a
 * temporary data directory, a generated configuration with fresh keys, the real service
 * binaries started as child processes, and a local HTTP sink that plays the channel APIs and
 * records what it receives. Everything is torn down by sb_harness_stop. */
#ifndef SB_HARNESS_H
#define SB_HARNESS_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "sb/bus.h"
#include "sb/result.h"
#include "sb/seal.h"

#define SB_HARNESS_MAX_PROCS 16

typedef struct sb_harness {
    char dir[PATH_MAX]; /* temporary root; data_dir = dir/data */
    char data_dir[PATH_MAX];
    char config_path[PATH_MAX];
    int nats_port;
    char nats_url[64];
    pid_t nats_pid;
    pid_t procs[SB_HARNESS_MAX_PROCS];
    int nprocs;
    int router_port;     /* chosen by sb_harness_write_config */
    char router_url[64]; /* http://127.0.0.1:<router_port> */
    /* Generated key material (raw), so tests can open sealed parts. */
    uint8_t contact_pk[SB_SEAL_KEY_BYTES], contact_sk[SB_SEAL_KEY_BYTES];
    uint8_t recipient_pk[SB_SEAL_KEY_BYTES], recipient_sk[SB_SEAL_KEY_BYTES];
    uint8_t id_secret[SB_SEAL_KEY_BYTES], master_key[SB_SEAL_KEY_BYTES];
    sb_bus_t *bus; /* connected by sb_harness_start_nats */
} sb_harness_t;

/* Creates the temp dir, starts nats-server -js on a free port with its store under dir, waits
 * until it accepts connections, and connects h->bus (streams created). */
SB_MUST_CHECK sb_result_t sb_harness_start_nats(sb_harness_t *h);
/* A TCP port on 127.0.0.1 that was free a moment ago. */
int sb_harness_free_port(void);
/* Writes h->config_path: nats url, data_dir, router listen on a free port, fresh keys, and
 * extra_yaml (top-level sections; may be NULL). A section of extra_yaml that the harness also
 * writes (nats, router, keys) is merged into it, a key given in extra_yaml replacing the
 * generated one (router_port/router_url then no longer apply if it sets router.http_listen);
 * top-level log_level and data_dir in extra_yaml replace the generated ones; everything else
 * is appended verbatim. */
SB_MUST_CHECK sb_result_t sb_harness_write_config(sb_harness_t *h, const char *extra_yaml);
/* Starts SB_BIN_DIR/<binary> --config <config_path> [args...] (args NULL-terminated or NULL);
 * stdout and stderr go to dir/<binary>.log. The child's environment is the test's minus the
 * SB_* variables that would override the file (SB_CONFIG, SB_NATS_URL, SB_DATA_DIR,
 * SB_HTTP_LISTEN, SB_LOG_LEVEL, keys); the child is killed if the test process dies. Call it
 * from the test's main thread. Returns the pid or -1. */
pid_t sb_harness_spawn(sb_harness_t *h, const char *binary, const char *const *args);
/* Polls GET url until it answers 200, up to timeout_ms. */
SB_MUST_CHECK sb_result_t sb_harness_wait_http(const char *url, int timeout_ms);
/* SIGTERM to one child and waits for it (SIGKILL after 5 s). */
void sb_harness_kill(sb_harness_t *h, pid_t pid);
/* Stops nats-server (SIGTERM, waits), keeping its port and store; h->bus stays and keeps
 * trying to reconnect. */
void sb_harness_stop_nats(sb_harness_t *h);
/* Starts nats-server again on the same port and store after sb_harness_stop_nats and waits
 * until it accepts TCP connections (JetStream may need a moment longer: retry publishes). */
SB_MUST_CHECK sb_result_t sb_harness_restart_nats(sb_harness_t *h);
/* Copies the last max_bytes of dir/<name>.log to stderr (name: a binary or "nats-server"),
 * for diagnosing a failed test. */
void sb_harness_dump_log(const sb_harness_t *h, const char *name, size_t max_bytes);
/* Stops every child and nats-server, removes dir unless SB_KEEP_TEST_DIR is set. */
void sb_harness_stop(sb_harness_t *h);

/* The channel-API sink: an HTTP server on its own thread that answers every request with
 * status (default 200) and body "{}" and records it. */
typedef struct sb_sink sb_sink_t;
typedef struct sb_sink_request {
    char method[8];
    char *path; /* with query */
    char *body; /* NUL-terminated */
    size_t body_len;
    char *headers; /* "Name: value\n" lines */
} sb_sink_request_t;
SB_MUST_CHECK sb_result_t sb_sink_start(sb_sink_t **out, int *port);
/* Status answered to the next n requests (then back to 200), e.g. 503 to test retries. */
void sb_sink_fail_next(sb_sink_t *s, int status, int n);
/* Waits until at least count requests arrived (timeout_ms), returns how many there are. */
size_t sb_sink_wait(sb_sink_t *s, size_t count, int timeout_ms);
/* Request i (0-based), valid until sb_sink_stop. */
const sb_sink_request_t *sb_sink_get(sb_sink_t *s, size_t i);
void sb_sink_stop(sb_sink_t *s);

/* Reads a whole JetStream stream subject filter from the start: calls fn for each message
 * currently stored on subjects matching filter (uses an ephemeral ordered read; no ack). */
typedef void (*sb_harness_msg_fn)(void *ctx, const char *subject, const void *data, size_t len);
SB_MUST_CHECK sb_result_t sb_harness_read_stream(sb_harness_t *h, const char *stream,
                                                 const char *filter, sb_harness_msg_fn fn,
                                                 void *ctx, size_t *count);
/* Waits until at least count messages are stored on filter in stream (timeout_ms). */
size_t sb_harness_wait_stream(sb_harness_t *h, const char *stream, const char *filter, size_t count,
                              int timeout_ms);

#endif
