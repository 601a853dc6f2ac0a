/* The browser side of the web chat: the HTTP API the widget (router/widget/widget.js) talks to,
 * and the widget's static files.
 *
 *   OPTIONS /v1/webchat/...        CORS preflight: allowed origins only
 *   POST /v1/webchat/session       a session token (new, or re-issued for the Bearer token the
 *                                  browser kept) + the consent notice and bot disclosure
 *   POST /v1/webchat/consent       the visitor accepted the notice: session.started with the
 *                                  consent snapshot goes through ingress; a token with consent
 *   POST /v1/webchat/messages      text (<= 8 KiB) or a button tap (postback) -> one item ->
 *                                  ingress (sb_ingress_publish_item) -> 200 after the ack
 *   GET  /v1/webchat/stream        SSE of the bot's and agents' replies (webchat_live.c)
 *   GET  /widget/<file>            widget.js, widget.css, demo.html, demo.css, favicon.svg
 *
 * Every API call needs an Origin in channels.webchat.allowed_origins, or the router's own
 * origin (scheme://Host: the demo page); the token is bound to the origin it was issued for.
 * Rate limits (token buckets, 429 + Retry-After beyond): session creation and stream opens
 * per client address, messages per client address and per session (constants below; the
 * limits hold per router copy). Browser items carry account_id SB_WEBCHAT_BROWSER_ACCOUNT, so
 * the conversation id is H("webchat", "browser", visitor id) and egress knows to answer live. */
#ifndef SB_ROUTER_WEBCHAT_BROWSER_H
#define SB_ROUTER_WEBCHAT_BROWSER_H

#include <stddef.h>
#include <stdint.h>

#include "ingress.h"
#include "sb/config.h"
#include "sb/http.h"
#include "sb/seal.h"
#include "webchat_live.h"

#define SB_WEBCHAT_MAX_TEXT 8192 /* bytes of one visitor message */
#define SB_WEBCHAT_NOTICE_VERSION "webchat-notice-1"
#define SB_WEBCHAT_IP_SESSION_RATE 1.0 /* new sessions per second per address... */
#define SB_WEBCHAT_IP_SESSION_BURST 20 /* ...after a burst of this many */
#define SB_WEBCHAT_IP_STREAM_RATE 2.0  /* stream (re)connects per second per address */
#define SB_WEBCHAT_IP_STREAM_BURST 30
#define SB_WEBCHAT_IP_MSG_RATE 10.0 /* messages per second per address (a shared NAT) */
#define SB_WEBCHAT_IP_MSG_BURST 60
#define SB_WEBCHAT_SESSION_MSG_RATE 1.0 /* messages per second per session */
#define SB_WEBCHAT_SESSION_MSG_BURST 10

typedef struct sb_webchat_browser sb_webchat_browser_t;

typedef struct sb_webchat_browser_opts {
    const sb_config_t *cfg;   /* borrowed: channels.webchat.*, store retention for the notice */
    sb_ingress_t *ing;        /* borrowed: the one publish path */
    sb_webchat_live_t *live;  /* borrowed: the SSE hub (or sb_webchat_browser_set_live) */
    const uint8_t *id_secret; /* keys.id_secret (copied) for conversation ids */
} sb_webchat_browser_opts_t;

/* Reads the allowed origins and derives the token keys. On error writes a message naming the
 * config key to err. The caller owns *out. */
SB_MUST_CHECK sb_result_t sb_webchat_browser_create(sb_webchat_browser_t **out,
                                                    const sb_webchat_browser_opts_t *opts,
                                                    char *err, size_t errlen);
/* Sets the SSE hub (borrowed) when it did not exist yet at create. Before add_routes. */
void sb_webchat_browser_set_live(sb_webchat_browser_t *wb, sb_webchat_live_t *live);
/* Adds the routes above to srv. Loop thread, before sb_http_server_run. */
void sb_webchat_browser_add_routes(sb_webchat_browser_t *wb, sb_http_server_t *srv);
/* Frees after the server stopped. Safe with NULL. */
void sb_webchat_browser_destroy(sb_webchat_browser_t *wb);

#endif
