/* What the three Meta channels (WhatsApp Cloud API, Messenger, Instagram) share: the app
 * secret(s) and verify token, `X-Hub-Signature-256` verification on the raw bytes, the GET
 * hub.* subscription handshake, and the Messenger Platform's `entry[].messaging[]` webhook
 * format that Messenger (object "page") and Instagram (object "instagram") both use.
 *
 *   channel_whatsapp.c  --verify/handshake-->  meta.c
 *   channel_messenger.c --verify/handshake/parse-->  meta.c
 *   channel_instagram.c --verify/handshake/parse-->  meta.c
 *
 * Everything here is pure (no I/O, no clock, no globals) and may be called from any thread;
 * an sb_meta_auth_t is immutable after sb_meta_auth_init. */
#ifndef SB_ROUTER_META_H
#define SB_ROUTER_META_H

#include <stddef.h>
#include <stdint.h>

#include "channel.h"

/* One Meta app's webhook credentials. Embedded in a channel's private state. */
typedef struct sb_meta_auth {
    char *secrets[SB_CHAN_MAX_SECRETS]; /* app secrets (current + previous, for rotation) */
    size_t nsecrets;
    char *verify_token; /* "" = nobody can subscribe */
} sb_meta_auth_t;

/* Initialises a from a space-separated list of app secrets and the verify token (NULL = "").
 * SB_E_CONFIG when no secret is set, with err naming secret_key (never a value); a is then
 * left closed. Copies everything; close with sb_meta_auth_close. */
SB_MUST_CHECK sb_result_t sb_meta_auth_init(sb_meta_auth_t *a, const char *secret_key,
                                            const char *secrets, const char *verify_token,
                                            char *err, size_t errlen);
/* Wipes and frees the secrets; safe on a zeroed or already closed a. */
void sb_meta_auth_close(sb_meta_auth_t *a);

/* Verifies `X-Hub-Signature-256: sha256=<hex HMAC-SHA256(app secret, raw body)>` over
 * req->body (hex in either case; every configured secret is tried, in constant time). The
 * legacy `X-Hub-Signature: sha1=` header is ignored. SB_OK, or SB_E_AUTH with *reason one of
 * "missing_signature", "malformed_signature", "bad_signature". */
SB_MUST_CHECK sb_result_t sb_meta_verify(const sb_meta_auth_t *a, const sb_http_request_t *req,
                                         const char **reason);
/* Answers GET ?hub.mode=subscribe&hub.verify_token=<token>&hub.challenge=<c>: 200 with the
 * challenge written to body (NUL-terminated) when the token matches (constant time), else 403
 * with body "". */
int sb_meta_handshake(const sb_meta_auth_t *a, const sb_http_request_t *req, char *body,
                      size_t bodylen);

/* A channel on the Messenger Platform webhook format. */
typedef struct sb_meta_messaging {
    const char *object; /* the notification's "object": "page", "instagram" */
    const char *prefix; /* dedup-key prefix: "fb" (fb:<mid>, fb-st:...), "ig" */
} sb_meta_messaging_t;

/* Parses an authentic `entry[] x messaging[]` body into out (zeroed by the caller): messages
 * (text, quick replies, attachments, legacy location), postbacks, message edits and deletes,
 * delivery and read receipts. Our own echoes (is_echo) are counted in out->nignored, never
 * published. Events of other kinds (reactions, referrals, opt-ins, standby) are skipped.
 * Unreadable events or a body that is not a notification of spec->object quarantine the raw
 * bytes (the readable items are kept). Always SB_OK. */
SB_MUST_CHECK sb_result_t sb_meta_parse_messaging(const sb_meta_messaging_t *spec,
                                                  const uint8_t *body, size_t len,
                                                  sb_chan_batch_t *out);

/* How a Messenger Platform channel sends (Send API, reference §A2.4, §A3.3). */
typedef struct sb_meta_send_spec {
    const char *messaging_type; /* inside the window: "RESPONSE" (Messenger), NULL = omitted
                                   (Instagram) */
    size_t max_text;            /* longer texts are cut (with "…"): Messenger 2000 characters,
                                   Instagram 1000 bytes */
    bool max_text_in_bytes;
    bool metadata; /* message.metadata = the Outbound's message id (it comes back on the echo) */
} sb_meta_send_spec_t;

#define SB_META_MAX_QUICK_REPLIES 13
#define SB_META_MAX_QR_TITLE 20 /* characters */
#define SB_META_MAX_QR_PAYLOAD 1000

/* Renders `POST <api_base>/me/messages` with `Authorization: Bearer <page token>` and
 * {"recipient":{"id":<address>}, "messaging_type", "message":{"text", "quick_replies"}}:
 * buttons become quick replies when 1..13 fit (title <= 20 characters, payload <= 1000 bytes),
 * else a numbered list in the text; send->window HUMAN_AGENT adds
 * `"messaging_type":"MESSAGE_TAG","tag":"HUMAN_AGENT"`. SB_E_INVALID without an address,
 * with nothing to say, or for window TEMPLATE (Meta messaging has no templates here).
 * *req written only on success. Pure; any thread. */
SB_MUST_CHECK sb_result_t sb_meta_render_send(const sb_meta_send_spec_t *spec,
                                              const char *access_token, const sb_chan_send_t *send,
                                              sb_chan_http_t *req);

#endif
