/* What the three Meta channels (WhatsApp Cloud API, Messenger, Instagram) share: their private
 * state (app secrets, verify token, access token), `X-Hub-Signature-256` verification on the
 * raw bytes, the GET hub.* subscription handshake and the reading of Graph answers; and for
 * the two Messenger Platform channels (Messenger, object "page"; Instagram, object
 * "instagram") all of the rest: the `entry[].messaging[]` webhook format, the Send API and the
 * window rules. A Meta channel's ops are these functions; its own file keeps its config, its
 * messaging spec and (WhatsApp) its own parse and render.
 *
 *   channel_whatsapp.c  --create/destroy/verify/handshake/parse_response-->  meta.c
 *   channel_messenger.c --create (spec "page", "fb"), every other op-->  meta.c
 *   channel_instagram.c --create (spec "instagram", "ig"), every other op-->  meta.c
 *
 * Everything here is pure (no I/O, no clock, no globals) and may be called from any thread. */
#ifndef SB_ROUTER_META_H
#define SB_ROUTER_META_H

#include <stddef.h>
#include <stdint.h>

#include "channel.h"

/* A Messenger Platform channel: its webhook format (parse) and its Send API (render). */
typedef struct sb_meta_messaging {
    const char *object;         /* the notification's "object": "page", "instagram" */
    const char *prefix;         /* dedup-key prefix: "fb" (fb:<mid>, fb-st:...), "ig" */
    const char *messaging_type; /* inside the window: "RESPONSE" (Messenger), NULL = omitted
                                   (Instagram) */
    size_t max_text;            /* longer texts are cut (with "…"): Messenger 2000 characters,
                                   Instagram 1000 bytes */
    bool max_text_in_bytes;
    bool metadata; /* message.metadata = the Outbound's message id (it comes back on the echo) */
} sb_meta_messaging_t;

/* A Meta channel's private state (ch->priv): one Meta app's webhook credentials and the token
 * it sends with. Immutable after sb_meta_create. */
typedef struct sb_meta_channel {
    sb_chan_secrets_t app_secrets;        /* current + previous, for rotation */
    char *verify_token;                   /* "" = nobody can subscribe */
    char *access_token;                   /* only ever in an Authorization header */
    const sb_meta_messaging_t *messaging; /* Messenger Platform channels; NULL for WhatsApp */
} sb_meta_channel_t;

/* The create op of a Meta channel: reads a space-separated list of app secrets, the verify
 * token and the access token (NULL = "") into a new sb_meta_channel_t at ch->priv, with
 * messaging (static, NULL for WhatsApp) for sb_meta_parse and sb_meta_render. SB_E_CONFIG
 * when no app secret is set, with err naming channels.<ch->ops->name>.app_secret (never a
 * value); ch->priv is then left NULL. Copies everything. */
SB_MUST_CHECK sb_result_t sb_meta_create(sb_channel_t *ch, const char *app_secrets,
                                         const char *verify_token, const char *access_token,
                                         const sb_meta_messaging_t *messaging, char *err,
                                         size_t errlen);

/* The ops every Meta channel shares (see sb_channel_ops_t for their contracts); ch->priv is
 * an sb_meta_channel_t made by sb_meta_create. Pure; any thread. */

/* Wipes and frees ch->priv. */
void sb_meta_destroy(sb_channel_t *ch);
/* Verifies `X-Hub-Signature-256: sha256=<hex HMAC-SHA256(app secret, raw body)>` over
 * req->body (hex in either case; every configured secret is tried, in constant time). The
 * legacy `X-Hub-Signature: sha1=` header is ignored. Meta signs no timestamp, so now_s is not
 * used (replay protection is TLS + dedup on the provider ids). SB_OK, or SB_E_AUTH with
 * *reason one of "missing_signature", "malformed_signature", "bad_signature". */
SB_MUST_CHECK sb_result_t sb_meta_verify(const sb_channel_t *ch, const sb_http_request_t *req,
                                         int64_t now_s, const char **reason);
/* Answers GET ?hub.mode=subscribe&hub.verify_token=<token>&hub.challenge=<c>: 200 with the
 * challenge written to body (NUL-terminated) when the token matches (constant time), else 403
 * with body "". */
int sb_meta_handshake(const sb_channel_t *ch, const sb_http_request_t *req, char *body,
                      size_t bodylen);
/* Reads a Graph send answer with sb_chan_graph_parse_response (the status is pre-filled). */
void sb_meta_parse_response(const sb_channel_t *ch, long status, const char *body, size_t len,
                            sb_chan_response_t *res);

/* ---- Messenger Platform channels (messaging set) ---- */

/* Parses an authentic `entry[] x messaging[]` body into out (zeroed by the caller): messages
 * (text, quick replies, attachments, legacy location), postbacks, message edits and deletes,
 * delivery and read receipts. Our own echoes (is_echo) are counted in out->nignored, never
 * published. Events of other kinds (reactions, referrals, opt-ins, standby) are skipped.
 * Unreadable events or a body that is not a notification of messaging->object quarantine the
 * raw bytes (the readable items are kept). Always SB_OK. */
SB_MUST_CHECK sb_result_t sb_meta_parse(const sb_channel_t *ch, const uint8_t *body, size_t len,
                                        sb_chan_batch_t *out);

#define SB_META_MAX_QUICK_REPLIES 13
#define SB_META_MAX_QR_TITLE 20 /* characters */
#define SB_META_MAX_QR_PAYLOAD 1000

/* Renders `POST <api_base>/me/messages` with `Authorization: Bearer <page token>` and
 * {"recipient":{"id":<address>}, "messaging_type", "message":{"text", "quick_replies"}}:
 * buttons become quick replies when 1..13 fit (title <= 20 characters, payload <= 1000 bytes),
 * else a numbered list in the text; send->window HUMAN_AGENT adds
 * `"messaging_type":"MESSAGE_TAG","tag":"HUMAN_AGENT"`. SB_E_INVALID without an address,
 * with nothing to say, or for window TEMPLATE (Meta messaging has no templates here).
 * *req written only on success. */
SB_MUST_CHECK sb_result_t sb_meta_render(const sb_channel_t *ch, const sb_chan_send_t *send,
                                         sb_chan_http_t *req);
/* Standard messaging: free-form for 24 h after the customer's last message; a human agent
 * may answer with the HUMAN_AGENT tag up to 7 days after it. No templates. */
void sb_meta_window_policy(const sb_config_t *cfg, sb_chan_window_policy_t *out);

#endif
