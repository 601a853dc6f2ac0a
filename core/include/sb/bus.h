/* The bus: Switchboard's only door to NATS JetStream (nats.c is included nowhere else).
 * A reconnecting connection; idempotent creation of the standard streams and durable pull
 * consumers; publish with Nats-Msg-Id that waits for the JetStream ack; a pull loop that acks a
 * message only after its handler (and so the handler's own publishes) succeeded. */
#ifndef SB_BUS_H
#define SB_BUS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "result.h"

typedef struct sb_bus sb_bus_t;
typedef struct sb_bus_pull sb_bus_pull_t;

/* Stream names and the subjects they hold (see docs/architecture.md). */
#define SB_STREAM_IN "SB_IN"                 /* sb.in.<p>.<channel>           */
#define SB_STREAM_NLU "SB_NLU"               /* sb.nlu.<p>                    */
#define SB_STREAM_BOT "SB_BOT"               /* sb.bot.<p>                    */
#define SB_STREAM_ESC "SB_ESC"               /* sb.esc.<team>.<conversation>  */
#define SB_STREAM_AGENT "SB_AGENT"           /* sb.agent.<verb>.<p>           */
#define SB_STREAM_OUT "SB_OUT"               /* sb.out.<channel>              */
#define SB_STREAM_EVENTS "SB_EVENTS"         /* sb.ev.<kind>                  */
#define SB_STREAM_QUARANTINE "SB_QUARANTINE" /* sb.quarantine.<channel>       */

/* Connects to cfg->url (comma-separated list) with endless reconnects. name is the client
 * name shown by the server. With wait_connected false, the connection is retried in the
 * background and the call returns SB_OK at once. The caller owns *out. Any thread. */
SB_MUST_CHECK sb_result_t sb_bus_connect(sb_bus_t **out, const sb_config_nats_t *cfg,
                                         const char *name, bool wait_connected);
/* Drains nothing, closes and frees. Safe with NULL. */
void sb_bus_destroy(sb_bus_t *bus);
/* True while connected to a server. Any thread. */
bool sb_bus_is_connected(const sb_bus_t *bus);

/* Creates or updates the eight standard streams with the limits from the config given at
 * connect. Idempotent. Blocking: never call it on a libuv loop thread. */
SB_MUST_CHECK sb_result_t sb_bus_ensure_streams(sb_bus_t *bus);
/* True when all standard streams exist (a JetStream request; blocking). */
bool sb_bus_has_streams(sb_bus_t *bus);

/* Publishes data to subject and waits for the JetStream ack (up to publish_timeout_ms).
 * msg_id (may be NULL) goes in Nats-Msg-Id so the stream drops duplicates within its window;
 * *duplicate (may be NULL) tells whether it was one. Returns SB_E_UNAVAILABLE when NATS or
 * JetStream did not ack. Blocking; any thread but a libuv loop thread. data is borrowed. */
SB_MUST_CHECK sb_result_t sb_bus_publish(sb_bus_t *bus, const char *subject, const void *data,
                                         size_t len, const char *msg_id, bool *duplicate);

/* Called exactly once per accepted sb_bus_publish_async: result SB_OK (and whether it was a
 * duplicate) once JetStream acknowledged, SB_E_UNAVAILABLE when it refused or did not answer
 * within publish_timeout_ms (or the bus was destroyed first). Runs on a nats.c thread: keep it
 * short and hand the result to your own thread (e.g. sb_http_server_post). */
typedef void (*sb_bus_publish_cb_fn)(void *ctx, sb_result_t result, bool duplicate);

/* Publishes like sb_bus_publish but does not wait: the JetStream ack arrives later through cb.
 * Many publishes are in flight at once over one connection, which is what lets one loop
 * thread keep up with a webhook burst. SB_OK means cb will be called; any other result means
 * it will not (not connected: SB_E_UNAVAILABLE). Never blocks for a network round trip, so it
 * may be called from a libuv loop thread. data is copied. */
SB_MUST_CHECK sb_result_t sb_bus_publish_async(sb_bus_t *bus, const char *subject, const void *data,
                                               size_t len, const char *msg_id,
                                               sb_bus_publish_cb_fn cb, void *ctx);

/* A delivered message, borrowed for the duration of the handler call. */
typedef struct sb_bus_msg {
    const char *subject;
    const void *data;
    size_t len;
    uint64_t num_delivered; /* 1 on first delivery */
    uint64_t stream_seq;
} sb_bus_msg_t;

/* A handler's verdict decides the ack: SB_OK or SB_E_DUPLICATE ack (AckSync); SB_E_INVALID
 * terminates the message (poison: logged and counted, never redelivered); anything else naks
 * it with a back-off so it is redelivered. */
typedef sb_result_t (*sb_bus_handler_fn)(void *ctx, const sb_bus_msg_t *msg);

/* Creates (idempotently) a durable pull consumer `durable` on `stream` with `filter` (NULL =
 * all subjects) and binds to it. Several processes binding the same durable share the work.
 * Blocking. The caller owns *out and frees it with sb_bus_pull_destroy. */
SB_MUST_CHECK sb_result_t sb_bus_pull_create(sb_bus_t *bus, const char *stream, const char *durable,
                                             const char *filter, sb_bus_pull_t **out);
/* Fetches up to max messages, waiting at most timeout_ms for the first, and calls handler
 * once per message on this thread, acking/naking each by its verdict. *handled (may be NULL)
 * receives how many were delivered. A timeout with nothing to do is SB_OK with *handled = 0. */
SB_MUST_CHECK sb_result_t sb_bus_pull_fetch(sb_bus_pull_t *pull, int max, int timeout_ms,
                                            sb_bus_handler_fn handler, void *ctx, int *handled);
void sb_bus_pull_destroy(sb_bus_pull_t *pull);

/* Manual settling, for consumers that finish a message later or on another thread (router
 * egress hands messages to an event loop and settles them when the HTTP call completes).
 * A delivery owns one fetched message until it is settled. nats.c acks are thread-safe:
 * deliveries may be settled from any thread but a libuv loop thread (AckSync blocks). */
typedef struct sb_bus_delivery sb_bus_delivery_t;
/* Fetches up to max (<= cap of out) messages like sb_bus_pull_fetch, waiting at most
 * timeout_ms for the first, without settling them: out[0..*n) receive owned deliveries. A
 * timeout with nothing is SB_OK with *n = 0. Blocking. */
SB_MUST_CHECK sb_result_t sb_bus_pull_take(sb_bus_pull_t *pull, int max, int timeout_ms,
                                           sb_bus_delivery_t **out, int *n);
/* The message of d; valid until d is settled. */
const sb_bus_msg_t *sb_bus_delivery_msg(const sb_bus_delivery_t *d);
/* Tells the server the message is still being worked on (+WPI: restarts AckWait). */
SB_MUST_CHECK sb_result_t sb_bus_delivery_in_progress(sb_bus_delivery_t *d);
/* Settles and frees d by verdict (as sb_bus_handler_fn): SB_OK / SB_E_DUPLICATE ack (AckSync,
 * blocking), SB_E_INVALID terminates, anything else naks with delay_ms (< 0: the bus's
 * own back-off by delivery count). Returns whether the server took the ack/nak (an ack that
 * was lost means a redelivery later). NULL d: no-op. */
sb_result_t sb_bus_delivery_settle(sb_bus_delivery_t *d, sb_result_t verdict, int64_t delay_ms);

/* Key-value buckets (JetStream KV) for small shared state that must survive restarts and be
 * seen by every copy of a service (e.g. the egress sent-ledger). Keys: [-/_=.a-zA-Z0-9]+. */
typedef struct sb_bus_kv sb_bus_kv_t;
/* Binds bucket, creating it (history 1, entries expire after ttl_s, replicas from the nats
 * config, file storage) when missing. Blocking. The caller owns *out. */
SB_MUST_CHECK sb_result_t sb_bus_kv_open(sb_bus_t *bus, const char *bucket, int64_t ttl_s,
                                         sb_bus_kv_t **out);
/* Reads key into buf (size n): SB_OK with *len, SB_E_NOT_FOUND when absent (or deleted),
 * SB_E_TOO_LARGE when the value does not fit, SB_E_UNAVAILABLE when NATS did not answer.
 * Blocking; any thread but a loop thread. */
SB_MUST_CHECK sb_result_t sb_bus_kv_get(sb_bus_kv_t *kv, const char *key, void *buf, size_t n,
                                        size_t *len);
/* Writes key = data (waits for the JetStream ack). Blocking. */
SB_MUST_CHECK sb_result_t sb_bus_kv_put(sb_bus_kv_t *kv, const char *key, const void *data,
                                        size_t len);
void sb_bus_kv_close(sb_bus_kv_t *kv);

/* Creates an ephemeral pull consumer on stream (filter NULL = all subjects) that starts at the
 * first stored message, for readers that must not disturb the durable consumers of workers
 * (tests, CLI inspection). Fetching acks each message without waiting, whatever the handler
 * says. The consumer is deleted by sb_bus_pull_destroy (or by the server after 60 s idle).
 * Blocking. The caller owns *out. */
SB_MUST_CHECK sb_result_t sb_bus_pull_create_ephemeral(sb_bus_t *bus, const char *stream,
                                                       const char *filter, sb_bus_pull_t **out);
/* Number of stored messages this consumer has not been delivered yet. Blocking. */
SB_MUST_CHECK sb_result_t sb_bus_pull_pending(sb_bus_pull_t *pull, uint64_t *out);
/* Number of messages currently stored in stream on subjects matching filter (NULL = all).
 * SB_E_NOT_FOUND when the stream does not exist. Blocking. */
SB_MUST_CHECK sb_result_t sb_bus_stream_count(sb_bus_t *bus, const char *stream, const char *filter,
                                              uint64_t *out);

/* Core (non-JetStream) publish for live views: no stream stores it, subscribers that are
 * connected at that moment get it. Waits until the server has received it (a flush of at most
 * timeout_ms); SB_E_UNAVAILABLE when disconnected or the flush fails. Blocking; any thread but
 * a libuv loop thread. data is borrowed. */
SB_MUST_CHECK sb_result_t sb_bus_publish_core(sb_bus_t *bus, const char *subject, const void *data,
                                              size_t len, int timeout_ms);

/* Core (non-JetStream) subscription for live views and tests: handler runs on a nats.c
 * thread; its verdict is ignored. */
typedef struct sb_bus_sub sb_bus_sub_t;
SB_MUST_CHECK sb_result_t sb_bus_subscribe(sb_bus_t *bus, const char *subject,
                                           sb_bus_handler_fn handler, void *ctx,
                                           sb_bus_sub_t **out);
void sb_bus_sub_destroy(sb_bus_sub_t *sub);

/* Subject builders: write into buf (size n), return SB_E_TOO_LARGE if it does not fit.
 * Tokens are checked: no '.', '*', '>' or whitespace inside a token. A lone '>' as the last
 * token is accepted so that filters ("sb.in.>") can be built too; on SB_E_INVALID or
 * SB_E_TOO_LARGE buf holds "". */
SB_MUST_CHECK sb_result_t sb_bus_subject(char *buf, size_t n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* True if s is a valid single subject token. */
bool sb_bus_is_token(const char *s);

#endif
