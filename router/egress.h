/* Egress: delivers Outbound messages from stream SB_OUT to the channel APIs.
 *
 * One thread with a durable pull consumer `egress` on SB_OUT (shared by every router copy):
 * decode the Outbound, open its sealed Recipient with keys.recipient_secret_key, render the
 * API call with the channel, send it with the blocking HTTP client (Idempotency-Key = the
 * Outbound message_id). 2xx acks; 429, 5xx and transport errors nak so that JetStream
 * redelivers with back-off, until router.egress_max_attempts deliveries, then an Event
 * EVENT_DELIVERY_FAILED goes to sb.ev.delivery_failed and the message is acked; any other
 * status fails at once the same way. Keep egress_max_attempts <= nats.max_deliver. */
#ifndef SB_ROUTER_EGRESS_H
#define SB_ROUTER_EGRESS_H

#include <stddef.h>

#include "channel.h"
#include "sb/bus.h"
#include "sb/config.h"
#include "sb/seal.h"

typedef struct sb_egress sb_egress_t;

typedef struct sb_egress_opts {
    const sb_config_t *cfg;        /* borrowed; outlives the egress */
    sb_bus_t *bus;                 /* borrowed */
    sb_channel_t *const *channels; /* the enabled channels, borrowed */
    size_t nchannels;
    uint8_t recipient_pk[SB_SEAL_KEY_BYTES];
    uint8_t recipient_sk[SB_SEAL_KEY_BYTES];
    const char *sink_base; /* "http://127.0.0.1:<port>/_sink": the fallback API base */
} sb_egress_opts_t;

/* The API base egress uses for ch: router.channel_api_base + "/<channel>" when set, else the
 * channel's own base, else sink_base + "/<channel>". Heap string, caller frees. */
char *sb_egress_api_base(const sb_config_t *cfg, const sb_channel_t *ch, const char *sink_base);

/* Starts the egress thread (it binds the consumer itself, retrying while NATS is down). Key
 * material in opts is copied. The caller owns *out. */
SB_MUST_CHECK sb_result_t sb_egress_start(sb_egress_t **out, const sb_egress_opts_t *opts);
/* Asks the thread to stop, joins it (at most one fetch timeout plus one send) and frees. */
void sb_egress_stop(sb_egress_t *eg);

#endif
