/* Egress: delivers Outbound messages from stream SB_OUT to the channel APIs.
 *
 * Threads and data flow (see docs/egress.md):
 *   consumer thread  -- durable pull consumer `egress` on SB_OUT, shared by every router copy:
 *                       take up to (pipeline room) messages, decode, check the sent-ledger
 *                       (JetStream KV bucket SB_EGRESS_SENT, keyed by Outbound.message_id),
 *                       open the sealed Recipient, decide the provider window, render the
 *                       API call (+ Idempotency-Key: <message_id>), then post the job to
 *                       the loop. Immediate outcomes (duplicate, window closed, bad input)
 *                       are settled right here.
 *   loop thread      -- the async HTTP client's libuv loop (core): per-channel rate limit
 *                       (channels.<ch>.rate_per_s, a timer holds what is over it), at most
 *                       router.egress_concurrency calls in flight, libcurl multi.
 *   completion thread-- judges each answer (HTTP status + the channel's parse_response):
 *                       2xx -> ledger write, then Event EVENT_DELIVERY on sb.ev.delivery, then
 *                       ack; 429/5xx/transport -> nak with exponential back-off (full jitter
 *                       above router.egress_backoff_ms, up to egress_backoff_max_ms, at least
 *                       the provider's Retry-After) until router.egress_max_attempts, then a
 *                       failed-delivery Event; other 4xx -> Event EVENT_DELIVERY_FAILED on
 *                       sb.ev.delivery_failed with the HTTP status and the provider's own error
 *                       code, ack. It also tells JetStream (+WPI) that slow jobs are alive. */
#ifndef SB_ROUTER_EGRESS_H
#define SB_ROUTER_EGRESS_H

#include <stddef.h>
#include <stdint.h>

#include "channel.h"
#include "sb/bus.h"
#include "sb/config.h"
#include "sb/seal.h"

#define SB_EGRESS_LEDGER_BUCKET "SB_EGRESS_SENT"

typedef struct sb_egress sb_egress_t;

typedef struct sb_egress_opts {
    const sb_config_t *cfg;        /* borrowed; outlives the egress */
    sb_bus_t *bus;                 /* borrowed */
    sb_channel_t *const *channels; /* the enabled channels, borrowed */
    size_t nchannels;
    uint8_t recipient_pk[SB_SEAL_KEY_BYTES];
    uint8_t recipient_sk[SB_SEAL_KEY_BYTES];
    uint8_t id_secret[SB_SEAL_KEY_BYTES]; /* hashes provider message ids in events */
    const char *sink_base; /* "http://127.0.0.1:<port>/_sink": the fallback API base */
} sb_egress_opts_t;

/* The API base egress uses for ch: router.channel_api_base + "/<channel>" when set, else the
 * channel's own base, else sink_base + "/<channel>". Heap string, caller frees. */
char *sb_egress_api_base(const sb_config_t *cfg, const sb_channel_t *ch, const char *sink_base);

/* Checks the egress settings that depend on each other (egress_max_attempts <=
 * nats.max_deliver, backoff <= backoff_max). SB_E_CONFIG with a message naming the keys. */
SB_MUST_CHECK sb_result_t sb_egress_check_config(const sb_config_t *cfg, char *err, size_t errlen);

/* The nak delay of a failed attempt (1-based) in ms: uniform in [base_ms, min(max_ms,
 * base_ms * 2^(attempt-1))] drawn with rnd, then at least retry_after_ms (-1: none). */
int64_t sb_egress_backoff_ms(int64_t base_ms, int64_t max_ms, uint64_t attempt,
                             int64_t retry_after_ms, uint64_t rnd);

/* Starts the egress threads (the consumer binds itself, retrying while NATS is down). Key
 * material in opts is copied. SB_E_CONFIG when sb_egress_check_config fails. The caller owns
 * *out. */
SB_MUST_CHECK sb_result_t sb_egress_start(sb_egress_t **out, const sb_egress_opts_t *opts);
/* Stops fetching, lets calls in flight finish (each bounded by router.egress_timeout_ms),
 * hands back what was waiting (nak without delay), settles everything, joins and frees. */
void sb_egress_stop(sb_egress_t *eg);

#endif
