/* The fuzz driver of every channel (fuzz_channel.c), and what a channel's own file
 * (fuzz_<name>.c) declares for it.
 *
 * One input (skipped above the channel's configured body bound, as the route refuses it) goes
 * through each channel listed in fuzz_channels[]:
 *   verify  the input as a webhook body with a fixed signature (or, for a secret token, the
 *           input's first line as that token): it must refuse, never crash; refusals carry a
 *           reason;
 *   parse   as if authentic: always SB_OK; at most max_items items; a rejection only where
 *           the channel may reject, and then without items; a batch that is quarantined,
 *           rejected or publishes nothing says why (reason); every item has a dedup key and
 *           a sender, passes the channel's own check_item and builds an Envelope whose
 *           message_id is the keyed hash of its dedup key (or is refused as invalid);
 *   handshake (channels that have one): a raw "GET <target> HTTP/1.1" input may only ever be
 *           answered 200 with the hub.challenge it carried, else 403;
 *   render  the input as the text (and a button) of an outbound message: the channel's
 *           check_render judges the rendered call;
 *   extra   anything else the channel's parsers promise (check_extra).
 * libFuzzer entry point (LLVMFuzzerTestOneInput); replay_main.c replays the corpus as a test. */
#ifndef SB_FUZZ_CHANNEL_H
#define SB_FUZZ_CHANNEL_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "channel.h"

typedef struct fuzz_channel {
    const sb_channel_ops_t *ops;
    /* Fills the channel's section of a zeroed config (called once). Inputs above the body
     * bound it configures are skipped, as the route refuses them. */
    void (*configure)(sb_config_t *cfg);

    /* ---- verify ---- */
    const char *path;               /* the webhook's path (NULL: ops->ingress_path) */
    int64_t now_s;                  /* verify's clock */
    sb_http_header_t headers[3];    /* the signature headers ({NULL} ends them) */
    bool secret_from_input;         /* headers[0] carries the input's first line instead */
    bool verify_refuses_unreadable; /* verify may answer SB_E_INVALID (Twilio's broken forms) */
    /* Optional: further rules on verify's answer v to req. */
    void (*check_verify)(const uint8_t *data, size_t size, const sb_http_request_t *req,
                         sb_result_t v);

    /* ---- parse ---- */
    size_t max_items;
    bool may_reject;         /* parse may answer reject_status (400/422) */
    bool ack_without_reason; /* an ignored echo or a reply body of its own may stand for the
                                reason of an empty batch (Slack) */
    /* Optional: the channel's own rules on the whole batch. */
    void (*check_batch)(const uint8_t *data, size_t size, const sb_chan_batch_t *b);
    /* The channel's own rules on one item (dedup-key scheme, required fields). */
    void (*check_item)(const sb_chan_item_t *it);

    /* ---- render ---- */
    const char *address, *account_id, *session_id; /* the outbound message's recipient */
    /* Optional: adjusts the outbound message o (text and one button titled with the input). */
    void (*prepare)(sb_outbound_t *o, sb_recipient_t *rc, char *text);
    /* Judges render's answer rc and, when SB_OK, the rendered call req. */
    void (*check_render)(sb_result_t rc, const sb_chan_http_t *req);

    /* Optional: further properties of the channel's parsers over the input. */
    void (*check_extra)(const sb_channel_t *ch, const uint8_t *data, size_t size);
} fuzz_channel_t;

/* The channels a fuzz target drives, NULL-terminated; defined by fuzz_<name>.c. */
extern const fuzz_channel_t *const fuzz_channels[];

/* req's body parsed as JSON, or abort(); free with cJSON_Delete. */
cJSON *fuzz_json_body(const sb_chan_http_t *req);
/* True when s starts with prefix. */
bool fuzz_has_prefix(const char *s, const char *prefix);

#endif
