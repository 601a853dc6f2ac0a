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

#endif
