/* Browser sessions of the web-chat widget: the short-lived session token and the rate limiter.
 *
 * Data flow. POST /v1/webchat/session (webchat_browser.c) mints a session id and a visitor id
 * and hands the browser a token that binds them to the page's origin, the visitor's locale,
 * whether the consent notice was accepted, and an expiry (channels.webchat.session_ttl_s).
 * Every later browser call (messages, the live stream, a refresh) presents the token; nothing
 * about the session is stored server-side, so any router copy accepts it.
 *
 * Token: "v1." hex(payload) "." hex(HMAC-SHA256(k, "v1." hex(payload))), payload the claims
 * joined by '\n'. k = HMAC-SHA256(secret, "switchboard webchat session token v1") for each
 * secret of channels.webchat.signing_secret (whsec_<base64>, space-separated for rotation):
 * tokens are issued with the first and accepted with any. Hex keeps the token URL-safe (it
 * travels in the query string of the SSE request, which EventSource cannot give headers).
 *
 * The limiter is a bounded table of token buckets keyed by a keyed hash of the key (a client
 * address or a session id): no raw address is kept, memory does not grow with traffic. */
#ifndef SB_ROUTER_WEBCHAT_SESSION_H
#define SB_ROUTER_WEBCHAT_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sb/result.h"

/* Account id of browser sessions on the bus (server-to-server events carry "webchat"): egress
 * uses it to tell a reply for the browser widget from one for a widget backend. */
#define SB_WEBCHAT_BROWSER_ACCOUNT "browser"
#define SB_WEBCHAT_MAX_TOKEN 1024   /* bytes of a token */
#define SB_WEBCHAT_MAX_ORIGIN 200   /* bytes of a bound origin */
#define SB_WEBCHAT_ID_LEN 36        /* "wcb_" / "wcv_" + 32 hex */
#define SB_WEBCHAT_MAX_LOCALE 16    /* BCP 47 tag, letters digits '-' */
#define SB_WEBCHAT_RESUME_S (86400) /* an expired token may resume its session this long */

typedef struct sb_webchat_claims {
    char session_id[SB_WEBCHAT_ID_LEN + 1]; /* "wcb_<32 hex>" */
    char visitor_id[SB_WEBCHAT_ID_LEN + 1]; /* "wcv_<32 hex>" */
    char origin[SB_WEBCHAT_MAX_ORIGIN + 1]; /* "https://shop.example.com" */
    char locale[SB_WEBCHAT_MAX_LOCALE + 1]; /* "" when unknown */
    int64_t issued_s;
    int64_t expires_s;
    bool consent; /* the visitor accepted the notice (and saw the bot disclosure) */
} sb_webchat_claims_t;

typedef struct sb_webchat_tokens sb_webchat_tokens_t;

/* Derives the token keys from secrets (the channels.webchat.signing_secret value). On error
 * writes a message naming the key (never its value) to err. The caller owns *out. */
SB_MUST_CHECK sb_result_t sb_webchat_tokens_create(sb_webchat_tokens_t **out, const char *secrets,
                                                   char *err, size_t errlen);
/* Wipes and frees. Safe with NULL. */
void sb_webchat_tokens_destroy(sb_webchat_tokens_t *t);

/* Fills c with a fresh random session id and visitor id (everything else untouched). */
void sb_webchat_claims_new_ids(sb_webchat_claims_t *c);
/* True if origin is a plausible serialized origin ("http(s)://host[:port]", no path, at most
 * SB_WEBCHAT_MAX_ORIGIN bytes, no whitespace or control characters). */
bool sb_webchat_origin_ok(const char *origin);
/* True if locale is "" or 1..SB_WEBCHAT_MAX_LOCALE of [A-Za-z0-9-]. */
bool sb_webchat_locale_ok(const char *locale);

/* Writes the token for c (NUL-terminated) into out of size outlen (SB_WEBCHAT_MAX_TOKEN is
 * enough). SB_E_INVALID when a claim is malformed. Any thread (t is read-only). */
SB_MUST_CHECK sb_result_t sb_webchat_token_issue(const sb_webchat_tokens_t *t,
                                                 const sb_webchat_claims_t *c, char *out,
                                                 size_t outlen);
/* Checks token at now_s: SB_OK and *out when its MAC verifies under any key and it expired at
 * most max_expired_s ago (0: it must still be valid); SB_E_TIMEOUT when it verifies but is
 * older; SB_E_AUTH when malformed or not ours. *out is written only on SB_OK. Constant time
 * in the MAC comparison. Any thread. */
SB_MUST_CHECK sb_result_t sb_webchat_token_verify(const sb_webchat_tokens_t *t, const char *token,
                                                  int64_t now_s, int64_t max_expired_s,
                                                  sb_webchat_claims_t *out);

/* ---- rate limits ---- */

typedef struct sb_webchat_limiter sb_webchat_limiter_t;

/* A table of at most slots buckets (rounded up to a power of two), each refilled with
 * rate_per_s tokens a second up to burst. The caller owns the result. */
sb_webchat_limiter_t *sb_webchat_limiter_create(size_t slots, double rate_per_s, double burst);
void sb_webchat_limiter_destroy(sb_webchat_limiter_t *l);
/* Takes one token from key's bucket at now_ms: true when there was one. A key not seen before
 * starts full; when the table is full the least recently used bucket of the key's
 * neighbourhood is recycled. Not thread-safe: one thread (the loop) per limiter. */
bool sb_webchat_limiter_allow(sb_webchat_limiter_t *l, const char *key, uint64_t now_ms);

#endif
