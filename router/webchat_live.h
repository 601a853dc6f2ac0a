/* Live replies for the browser widget: the SSE hub of each router and the egress hook that
 * feeds every hub.
 *
 * Data flow:
 *   egress thread (any router copy): an Outbound for webchat whose opened Recipient is a browser
 *     session (account_id SB_WEBCHAT_BROWSER_ACCOUNT) -> the webchat channel's deliver op ->
 *     sb_webchat_live_deliver -> the webchat.v1 message.created JSON on the core NATS subject
 *     sb.webchat.live.<conversation id> (a keyed hash already on the bus; never a raw session
 *     or visitor id) -> SB_OK, the Outbound is acked.
 *   every router: a core subscription on sb.webchat.live.> (nats.c thread) -> posted to the
 *     loop thread -> kept in the conversation's ring (the last N replies, deduplicated by
 *     event id = Outbound message id) -> written as an SSE event to every stream open on that
 *     conversation, whichever router instance holds it.
 *   GET /v1/webchat/stream (webchat_browser.c, after the token check) -> sb_webchat_live_attach:
 *     replays the ring after Last-Event-ID (all of it when the id is unknown: the widget drops
 *     ids it has), then streams live; a comment line every keepalive keeps proxies open; the
 *     stream ends when the token it was opened with expires (the widget reconnects with a
 *     fresh one).
 *
 * Memory is bounded: replies per conversation, conversations, total bytes (least recently
 * used conversations without open streams go first) and open streams. One hub per process. */
#ifndef SB_ROUTER_WEBCHAT_LIVE_H
#define SB_ROUTER_WEBCHAT_LIVE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "channel.h"
#include "sb/bus.h"
#include "sb/http.h"

#define SB_WEBCHAT_LIVE_SUBJECTS "sb.webchat.live.>"
#define SB_WEBCHAT_LIVE_MAX_EVENT (64 * 1024) /* bytes of one live event */

typedef struct sb_webchat_live sb_webchat_live_t;

typedef struct sb_webchat_live_opts {
    size_t keep;              /* replies kept per conversation for replay (0: 50) */
    size_t max_conversations; /* conversations kept (0: 10000) */
    size_t max_bytes;         /* bytes of kept replies (0: 16 MiB) */
    size_t max_streams;       /* open SSE streams (0: 1000); beyond: 503 */
    size_t max_per_conv;      /* open streams per conversation (0: 8); beyond: oldest closed */
    uint64_t keepalive_ms;    /* comment line interval (0: 15000) */
} sb_webchat_live_opts_t;

/* Creates the hub and subscribes it to SB_WEBCHAT_LIVE_SUBJECTS on bus (retried on the
 * keepalive timer while that fails). bus and srv are borrowed and must outlive the hub; it
 * also becomes the process's publisher for sb_webchat_live_deliver. Loop thread, before
 * sb_http_server_run. The caller owns *out. */
SB_MUST_CHECK sb_result_t sb_webchat_live_create(sb_webchat_live_t **out, sb_bus_t *bus,
                                                 sb_http_server_t *srv,
                                                 const sb_webchat_live_opts_t *opts);
/* Answers req with the SSE stream of conversation_id (32 hex): the kept replies after
 * last_event_id (NULL or unknown: all kept), then live ones, until the client leaves, now
 * passes expires_s, or the server stops. extra_headers (CORS) go on the response. Loop
 * thread. */
void sb_webchat_live_attach(sb_webchat_live_t *live, sb_http_request_t *req,
                            const char *conversation_id, const char *last_event_id,
                            int64_t expires_s, const char *const *extra_headers);
/* Unsubscribes (waiting for a callback in progress) and frees. Call after the server stopped
 * (its streams are closed then), before the bus is destroyed. Safe with NULL. */
void sb_webchat_live_destroy(sb_webchat_live_t *live);

/* Open streams and conversations kept (tests, metrics). Loop thread. */
size_t sb_webchat_live_streams(const sb_webchat_live_t *live);

/* ---- the egress side ---- */

/* True when rcpt is a browser session of the widget (not a widget backend's session). */
bool sb_webchat_live_is_browser(const sb_recipient_t *rcpt);
/* The webchat.v1 message.created event of o as the browser receives it (author bot, agent or
 * system; text; buttons), without any recipient data. Heap string; NULL when o has no
 * message id. Any thread. */
char *sb_webchat_live_event_json(const sb_outbound_t *o, int64_t now_ms);
/* The webchat channel's deliver op (channel.h): for a browser recipient, publishes the event on
 * sb.webchat.live.<conversation> through the hub's bus and writes the Outbound message id to
 * provider_id; SB_E_NOT_FOUND for any other recipient (egress then renders the HTTP
 * callback) or when no hub exists in this process; SB_E_UNAVAILABLE when NATS did not take
 * it (retry); SB_E_INVALID when o cannot be shown. Egress thread; blocks at most a flush. */
SB_MUST_CHECK sb_result_t sb_webchat_live_deliver(const sb_channel_t *ch,
                                                  const sb_chan_send_t *send, char *provider_id);

#endif
