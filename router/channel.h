/* The channel interface: the one shape every messaging channel of the router takes (webchat and
 * whatsapp now; messenger, instagram, telegram, slack and twilio later).
 *
 * Data flow through a channel:
 *   ingress: raw HTTP request --verify()--> authentic bytes --parse()--> sb_chan_batch_t of
 *            normalized items (plain C, all PII still in the clear) --> ingress.c turns each
 *            item into an Envelope with a sealed Contact and publishes it;
 *   GET:     handshake() answers a provider's subscription check (WhatsApp hub.*);
 *   egress:  Outbound + opened Recipient + window decision (sb_chan_window_decide) --render()-->
 *            method, URL, headers and JSON body that egress.c sends with the async HTTP
 *            client; the provider's answer --parse_response()--> ok / retry / error code and
 *            the provider's message id (see "Egress" below).
 *
 * Channels are pure: no I/O, no clock (the caller passes "now"), no global state, so that unit
 * tests drive them with fixtures and a fixed clock. Every function here may be called from any
 * thread; a channel is immutable after sb_channel_create.
 *
 * The clock: verify() takes now_s. The router passes sb_router_now_s() (below), which is the
 * wall clock unless the environment variable SB_TEST_NOW is set (tests only): either Unix
 * seconds ("1772442901"), or an absolute path to a file holding Unix seconds, re-read on every
 * call, so an integration test can move one running router's clock per fixture case. */
#ifndef SB_ROUTER_CHANNEL_H
#define SB_ROUTER_CHANNEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sb/codec.h"
#include "sb/config.h"
#include "sb/http.h"
#include "sb/result.h"
#include "sb/seal.h"
#include "sb/util.h"

/* Bounds on what one webhook may carry, checked before anything is copied. */
#define SB_CHAN_MAX_ITEMS 1000 /* items in one batch (Meta: up to 1000 updates) */
#define SB_CHAN_MAX_ID 512     /* provider ids, dedup keys, session ids */
#define SB_CHAN_MAX_TEXT 65536 /* message text and captions (the redactor's bound) */
#define SB_CHAN_MAX_REFS 100   /* message ids one status refers to */
#define SB_CHAN_MAX_SECRETS 4  /* rotation: space-separated secrets in one config value */

/* What an inbound item is (mapped 1:1 to the protobuf MessageKind by ingress.c). */
typedef enum sb_chan_kind {
    SB_CHAN_TEXT = 1,
    SB_CHAN_BUTTON_REPLY,
    SB_CHAN_MEDIA,
    SB_CHAN_LOCATION,
    SB_CHAN_STATUS,
    SB_CHAN_SESSION,
    SB_CHAN_UNSUPPORTED,
    SB_CHAN_CONTACT, /* a shared contact card: the number goes to phone (sealed), never text */
    SB_CHAN_COMMAND, /* "/start ref": button_payload = the command ("/start"), text = its
                        arguments ("ref", redacted like any text) */
    SB_CHAN_EDIT,    /* the customer edited an earlier message (provider_message_id = that
                        message's id; text = the new text); never a second inbound turn */
    SB_CHAN_SYSTEM,  /* a provider operational event (rate limited, app uninstalled, ...) */
} sb_chan_kind_t;

typedef struct sb_chan_media {
    char *type; /* image, audio, video, document, sticker, file */
    char *ref;  /* provider media id or URL */
    char *mime;
    char *sha256;
    uint64_t size; /* 0 when unknown */
    char *caption; /* in the clear here; redacted by ingress */
    char *filename;
} sb_chan_media_t;

typedef struct sb_chan_location {
    double latitude, longitude;
    char *name, *address;
} sb_chan_location_t;

typedef struct sb_chan_status {
    char *state; /* sent, delivered, read, failed */
    char **refs; /* raw provider ids of our messages it is about */
    size_t nrefs;
    int64_t error_code;
    char *error_title;
} sb_chan_status_t;

/* One normalized inbound item. Every char * is a heap string owned by the item (NULL when the
 * field is absent); free the whole batch with sb_chan_batch_free. */
typedef struct sb_chan_item {
    sb_chan_kind_t kind;
    char *dedup_key;           /* "wa:<wamid>", "wa-st:<wamid>:<status>", "wc:<event id>" */
    char *provider_message_id; /* raw provider id of this item (NULL for statuses) */
    char *sender_id;           /* provider user id: wa_id, "bsuid:<id>", visitor id */
    char *sender_name;
    char *phone; /* E.164 with '+' when the channel gives one */
    char *email;
    char *account_id; /* the business's number/page/widget the item was sent to */
    char *session_id;
    int64_t occurred_at_ms; /* provider's timestamp */
    char *text;             /* in the clear here; redacted by ingress */
    char *button_payload, *button_title;
    char *in_reply_to; /* raw provider id of the message replied to */
    char *locale;
    bool has_media;
    sb_chan_media_t media;
    bool has_location;
    sb_chan_location_t location;
    bool has_status;
    sb_chan_status_t status;
    bool has_consent; /* session items: the consent snapshot */
    bool consent_support_chat;
    bool ai_disclosure_shown;
    char *consent_notice_version;
} sb_chan_item_t;

/* What parse() made of an authentic body. */
typedef struct sb_chan_batch {
    sb_chan_item_t *items; /* nitems usable items to publish, in body order */
    size_t nitems;
    bool quarantine;        /* part or all of the body was authentic but unusable: its raw
                               bytes go to sb.quarantine.<channel>, the provider gets 200 */
    int reject_status;      /* 0, or 400/422: answer it and publish nothing (our own clients
                               only, who do not retry-storm) */
    size_t nignored;        /* authentic items dropped on purpose: our own echoes coming back
                               (loop guard). Answered 200; ingress reports outcome "ignored"
                               when nothing else was published */
    const char *reason;     /* static text without PII: why quarantined / rejected / empty */
    char *reply_body;       /* NULL, or the body of the 200 answer instead of {"ok":true}
                               (heap, owned; "" = empty): Slack's url_verification challenge,
                               Twilio's empty TwiML, Slack's empty interactivity ack */
    const char *reply_type; /* static content type of reply_body (NULL: none) */
} sb_chan_batch_t;

/* An HTTP call rendered for egress. Owned; free with sb_chan_http_free. */
typedef struct sb_chan_http {
    const char *method; /* static */
    char *url;
    char **headers; /* NULL-terminated "Name: value" list */
    sb_buf_t body;
} sb_chan_http_t;

/* ---- Egress: provider windows, the render input, the provider's answer ----
 * (the sb_chan_window_* and sb_chan_response_* helpers are implemented in egress.c)
 *
 * Per Outbound, egress (egress.c) does: window = sb_chan_window_decide(&ch->window, out, now)
 * -> CLOSED: no send, failed-delivery event "window_closed"; otherwise render(ch, &send, &req)
 * -> HTTP through the async client (rate limit, concurrency) -> parse_response(ch, status,
 * body, &res) refines the verdict that egress pre-filled from the HTTP status -> sent (event
 * with the hashed provider id), retried (JetStream redelivery with back-off) or failed (event
 * with the HTTP status and the provider's own error code). */

/* A channel's customer-service window rules, filled once from config by the window_policy op
 * (strings copied by sb_channel_create). All zero/NULL: the channel has no window. */
typedef struct sb_chan_window_policy {
    int64_t free_ms;               /* free-form messages allowed this long after the customer's last
                                      message (WhatsApp, Messenger, Instagram: 24 h); 0 = no window */
    int64_t agent_tag_ms;          /* agent replies (AUTHOR_AGENT) allowed with a human-agent tag up
                                      to this long after it (Messenger/Instagram HUMAN_AGENT: 7 days);
                                      0 = none */
    const char *template_name;     /* outside the window, send this approved template instead
                                      (WhatsApp); NULL/"" = none */
    const char *template_language; /* its language code ("en") */
} sb_chan_window_policy_t;

/* The window decision for one Outbound. */
typedef enum sb_chan_window {
    SB_CHAN_WINDOW_OPEN = 0,    /* free-form allowed (inside the window, or no window) */
    SB_CHAN_WINDOW_HUMAN_AGENT, /* outside the free window, agent reply within agent_tag_ms:
                                   Meta `messaging_type: MESSAGE_TAG, tag: HUMAN_AGENT` */
    SB_CHAN_WINDOW_TEMPLATE,    /* outside the window: send the policy's template instead */
    SB_CHAN_WINDOW_CLOSED,      /* nothing may be sent: egress fails it "window_closed" and
                                   never calls render */
} sb_chan_window_t;

/* Decides the window of out at now_ms under policy p (pure; any thread):
 *   - no window (p->free_ms == 0), or out->template_name set while the policy has a template
 *     (a template may always be sent), or out->last_customer_message_ms unknown (0: older
 *     producers; the provider then judges) -> OPEN;
 *   - now - last <= free_ms -> OPEN;
 *   - author AGENT and now - last <= agent_tag_ms -> HUMAN_AGENT;
 *   - a template configured -> TEMPLATE;
 *   - else CLOSED. */
sb_chan_window_t sb_chan_window_decide(const sb_chan_window_policy_t *p, const sb_outbound_t *out,
                                       int64_t now_ms);
/* "open", "human_agent", "template", "closed". */
const char *sb_chan_window_name(sb_chan_window_t w);

/* Everything render needs for one send. Borrowed for the duration of the call. */
typedef struct sb_chan_send {
    const sb_outbound_t *out;
    const sb_recipient_t *rcpt; /* opened Recipient: address, account, session (PII) */
    const char *api_base;       /* the API base to use, no trailing '/' */
    int64_t now_s;              /* signing time */
    sb_chan_window_t window;    /* never CLOSED: OPEN, HUMAN_AGENT or TEMPLATE */
    const char *template_name;  /* window == TEMPLATE: the template to send and its language */
    const char *template_language;
} sb_chan_send_t;

/* What a provider's answer means. Egress pre-fills it from the HTTP status (ok = 2xx;
 * retry = 408, 425, 429, 5xx or no response; retry_after_ms from the Retry-After header or
 * -1; codes empty), then the channel's parse_response refines it from the body. */
typedef struct sb_chan_response {
    bool ok;                          /* the provider accepted the message */
    bool retry;                       /* not ok, but transient: redeliver with back-off */
    int64_t retry_after_ms;           /* provider's minimum wait before a retry, -1 when none */
    int64_t error_code;               /* the provider's numeric error code (WhatsApp/Messenger
                                         error.code, Telegram error_code, Twilio code), 0 when none */
    char error[64];                   /* the provider's error code as a short token ("131047",
                                         "channel_not_found"): [A-Za-z0-9_.-] only, never free text
                                         (descriptions may quote user data); "" when none */
    char provider_id[SB_CHAN_MAX_ID]; /* raw provider id of the sent message (wamid, mid,
                                         "<chat>:<message_id>", ts, sid); "" when unknown.
                                         Egress only ever publishes its keyed hash. */
} sb_chan_response_t;

/* Copies s into a response's error token, keeping [A-Za-z0-9_.-] and cutting at 63 bytes; a
 * token with other characters becomes "" (it may be free text). */
void sb_chan_response_set_error(sb_chan_response_t *res, const char *s);
/* Copies a provider message id (NULL or longer than SB_CHAN_MAX_ID - 1: "" ). */
void sb_chan_response_set_id(sb_chan_response_t *res, const char *id);
/* parse_response for Meta Graph send APIs (WhatsApp, Messenger, Instagram): the provider id
 * from messages[0].id or message_id; error.code (+ error_subcode as the token when present,
 * else the code) on failure; Graph's throttling and temporary codes (1, 2, 4, 17, 32, 613,
 * 80007, 130429, 131056, 133004) are retried whatever the HTTP status. */
void sb_chan_graph_parse_response(const char *body, size_t len, sb_chan_response_t *res);

#define SB_CHAN_WINDOW_24H_MS (24LL * 3600 * 1000)
#define SB_CHAN_WINDOW_7D_MS (7LL * 24 * 3600 * 1000)

typedef struct sb_channel sb_channel_t;

typedef struct sb_channel_ops {
    const char *name;         /* subject token and metric label: "webchat", "whatsapp" */
    const char *ingress_path; /* POST (and GET handshake) route of the router */
    /* True when cfg enables the channel. */
    bool (*enabled)(const sb_config_t *cfg);
    /* Config keys (dotted) that must be set when the channel is enabled; NULL-terminated. */
    const char *const *required_keys;
    /* Largest accepted webhook body, from cfg. */
    size_t (*max_body)(const sb_config_t *cfg);
    /* The channel's own API base for egress from cfg ("" when none). */
    const char *(*api_base)(const sb_config_t *cfg);
    /* Reads and checks the channel's secrets from cfg into ch->priv. On error writes a
     * message naming the key (never its value) to err. */
    SB_MUST_CHECK sb_result_t (*create)(sb_channel_t *ch, const sb_config_t *cfg, char *err,
                                        size_t errlen);
    void (*destroy)(sb_channel_t *ch);
    /* Authenticates req on its raw bytes at time now_s: SB_OK, or SB_E_AUTH with *reason a
     * static label without secrets ("missing_signature", "bad_signature", "stale", ...),
     * or SB_E_INVALID with *reason when the request cannot even be read to be verified
     * (Twilio: a form body with broken %XX; answered 400). Comparisons are constant time. */
    SB_MUST_CHECK sb_result_t (*verify)(const sb_channel_t *ch, const sb_http_request_t *req,
                                        int64_t now_s, const char **reason);
    /* Optional (NULL): answers a GET subscription check. Returns the HTTP status and writes
     * the text/plain body (NUL-terminated) to body. */
    int (*handshake)(const sb_channel_t *ch, const sb_http_request_t *req, char *body,
                     size_t bodylen);
    /* Parses an authentic body of len bytes into *out (zeroed by the caller). Always SB_OK:
     * malformed input is reported inside the batch (quarantine or reject_status). */
    SB_MUST_CHECK sb_result_t (*parse)(const sb_channel_t *ch, const uint8_t *body, size_t len,
                                       sb_chan_batch_t *out);
    /* ---- egress ---- */
    /* Renders the API call that delivers send->out to send->rcpt at send->api_base, honouring
     * send->window (TEMPLATE: send send->template_name instead of the text; HUMAN_AGENT: the
     * Meta human-agent tag). SB_E_INVALID when the recipient or message cannot be sent on
     * this channel; *req is written only on success. Pure; any thread. Egress adds
     * `Idempotency-Key: <out->message_id>` itself. */
    SB_MUST_CHECK sb_result_t (*render)(const sb_channel_t *ch, const sb_chan_send_t *send,
                                        sb_chan_http_t *req);
    /* Optional (NULL: the HTTP status alone decides): refines *res, pre-filled from status,
     * with the provider's body (len bytes, NUL-terminated, possibly empty or not JSON):
     * provider message id on success, error code/token on failure, and ok/retry where the
     * body overrides the status (Slack answers errors with 200 and "ok":false; Telegram's
     * parameters.retry_after). Never fails; must not copy free text into res. Any thread. */
    void (*parse_response)(const sb_channel_t *ch, long status, const char *body, size_t len,
                           sb_chan_response_t *res);
    /* Optional (NULL: no window): the channel's window rules from cfg (strings borrowed from
     * cfg; sb_channel_create copies them into ch->window). */
    void (*window_policy)(const sb_config_t *cfg, sb_chan_window_policy_t *out);
    /* Optional (NULL: unlimited): channels.<name>.rate_per_s from cfg; 0 = unlimited. */
    int64_t (*rate_per_s)(const sb_config_t *cfg);
    /* Optional (NULL: every send is rendered and sent over HTTP): delivers in-process instead
     * (e.g. the web chat's own SSE sessions). Called by egress on its consumer thread, never
     * on a loop thread; may block briefly. SB_OK = delivered (provider_id may be filled, size
     * SB_CHAN_MAX_ID); SB_E_UNAVAILABLE = retry later; anything else = failed for good. When
     * it returns SB_E_NOT_FOUND egress falls back to render + HTTP (e.g. no live session). */
    SB_MUST_CHECK sb_result_t (*deliver)(const sb_channel_t *ch, const sb_chan_send_t *send,
                                         char *provider_id);
} sb_channel_ops_t;

/* A configured channel. Immutable after sb_channel_create; any thread may use it. */
struct sb_channel {
    const sb_channel_ops_t *ops;
    size_t max_body;
    char *api_base;                 /* the channel's own API base ("" when none) */
    void *priv;                     /* the channel's secrets; wiped by destroy */
    sb_chan_window_policy_t window; /* from ops->window_policy, strings owned */
    int64_t rate_per_s;             /* from ops->rate_per_s; 0 = unlimited */
};

/* The table of every channel the router knows, NULL-terminated. */
extern const sb_channel_ops_t *const sb_channel_table[];
extern const sb_channel_ops_t sb_channel_webchat;
extern const sb_channel_ops_t sb_channel_whatsapp;
extern const sb_channel_ops_t sb_channel_messenger;
extern const sb_channel_ops_t sb_channel_instagram;
extern const sb_channel_ops_t sb_channel_telegram;
extern const sb_channel_ops_t sb_channel_slack;
extern const sb_channel_ops_t sb_channel_twilio;

/* The ops of channel name, or NULL. */
const sb_channel_ops_t *sb_channel_find(const char *name);
/* Creates ch for ops from cfg (whether or not cfg enables it). The caller owns *out and frees
 * it with sb_channel_destroy. On error err names the config key. */
SB_MUST_CHECK sb_result_t sb_channel_create(const sb_channel_ops_t *ops, const sb_config_t *cfg,
                                            sb_channel_t **out, char *err, size_t errlen);
void sb_channel_destroy(sb_channel_t *ch);

/* Frees everything one item owns and zeroes it. */
void sb_chan_item_free(sb_chan_item_t *it);
/* Frees everything the batch owns and zeroes it. Safe on a zeroed batch. */
void sb_chan_batch_free(sb_chan_batch_t *b);
/* Frees everything req owns and zeroes it. */
void sb_chan_http_free(sb_chan_http_t *req);
/* Appends a zeroed item slot to b (growing b->items; *cap is the slot capacity, 0 at first)
 * and returns it, or NULL when b already holds SB_CHAN_MAX_ITEMS. The slot counts only once
 * the caller increments b->nitems; otherwise the next call reuses it (free it first). */
sb_chan_item_t *sb_chan_batch_slot(sb_chan_batch_t *b, size_t *cap);
/* Marks b for quarantine; the first reason (static, no PII) is kept. */
void sb_chan_batch_quarantine(sb_chan_batch_t *b, const char *reason);

/* The router's clock in Unix seconds (see the top of this file for SB_TEST_NOW). Any thread. */
int64_t sb_router_now_s(void);

/* ---- Helpers shared by channel implementations (channels.c) ---- */

/* Parses RFC 3339 "YYYY-MM-DDTHH:MM:SS[.frac](Z|+HH:MM|-HH:MM)" into ms since the epoch. */
SB_MUST_CHECK sb_result_t sb_chan_parse_rfc3339(const char *s, int64_t *out_ms);
/* Formats ms since the epoch as "YYYY-MM-DDTHH:MM:SSZ" (buf of at least 21 bytes). */
void sb_chan_format_rfc3339(int64_t ms, char *buf, size_t n);
/* Parses a decimal Unix-seconds string (1..12 digits) into seconds. */
SB_MUST_CHECK sb_result_t sb_chan_parse_unix(const char *s, int64_t *out_s);
/* Splits a space-separated secret list: at most max tokens into tok (pointers into a heap copy
 * *store that the caller frees). Returns the number found. */
size_t sb_chan_split_secrets(const char *list, char **store, const char **tok, size_t max);
/* A channel's configured secrets (the current one and, while it rotates, the previous ones),
 * each a heap copy. Embedded in a channel's private state. */
typedef struct sb_chan_secrets {
    char *v[SB_CHAN_MAX_SECRETS];
    size_t n;
} sb_chan_secrets_t;
/* Fills s (overwritten) with copies of the space-separated list (NULL = none); returns s->n,
 * 0 when the list holds no secret. Release with sb_chan_secrets_close. */
size_t sb_chan_secrets_init(sb_chan_secrets_t *s, const char *list);
/* Wipes and frees every secret of s and zeroes it; safe on a zeroed or closed s. */
void sb_chan_secrets_close(sb_chan_secrets_t *s);
/* True when mac (32 bytes) is the HMAC-SHA256 of parts under one of the secrets of s. Every
 * secret is tried and compared in constant time. */
SB_MUST_CHECK bool sb_chan_secrets_hmac_sha256(const sb_chan_secrets_t *s,
                                               const sb_seal_part_t *parts, size_t nparts,
                                               const uint8_t mac[32]);
/* True when s is prefix followed by exactly 64 hex digits (either case), decoded into mac: the
 * "sha256=<hex>" / "v0=<hex>" form of an HMAC-SHA256 signature header. */
SB_MUST_CHECK bool sb_chan_hex_mac(const char *s, const char *prefix, uint8_t mac[32]);
/* Wipes and frees a heap string holding a secret (NULL: nothing). */
void sb_chan_wipe_free(char *s);
/* Counts UTF-8 characters (code points) of s. */
size_t sb_chan_utf8_len(const char *s);
/* A heap copy of s cut to at most max UTF-8 characters (bytes when in_bytes), never inside a
 * character; a cut copy ends in "…" (counted in max). */
char *sb_chan_utf8_truncate(const char *s, size_t max, bool in_bytes);
/* Buttons down-rendered into text: a heap string "<text>\n\n1. <title>\n2. <title>..." (just
 * the list when text is empty; just text when there are no buttons), for channels or messages
 * whose buttons do not fit the provider's limits. */
char *sb_chan_button_list(const char *text, const sb_outbound_t *o);
/* Appends a NULL-terminated header list entry "Name: value" to req->headers. */
void sb_chan_http_add_header(sb_chan_http_t *req, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
struct cJSON;
/* Renders `POST url` with root printed as the body, header `Content-Type: <content_type>` and,
 * when bearer is not NULL, `Authorization: Bearer <bearer>` (callers add further headers to
 * *req afterwards). Takes root (a cJSON tree) and url (heap) in every case. SB_E_INTERNAL when
 * root cannot be printed; *req is written only on success. */
SB_MUST_CHECK sb_result_t sb_chan_http_post_json(struct cJSON *root, char *url,
                                                 const char *content_type, const char *bearer,
                                                 sb_chan_http_t *req);
/* Constant-time equality of two strings of any length (HMAC under a random process key, so
 * neither content nor length leaks through timing). */
SB_MUST_CHECK bool sb_chan_secret_equal(const char *a, size_t alen, const char *b, size_t blen);

/* cJSON helpers (cJSON is included only by the channel sources). */
/* Parses len bytes as JSON; NULL when malformed. The caller frees with cJSON_Delete. */
struct cJSON *sb_chan_json_parse(const uint8_t *body, size_t len);
/* The string member key of obj, or NULL when absent, not a string, empty or longer than max. */
const char *sb_chan_json_str(const struct cJSON *obj, const char *key, size_t max);
/* A heap copy of sb_chan_json_str, or NULL. */
char *sb_chan_json_dup(const struct cJSON *obj, const char *key, size_t max);
/* The integral JSON number member key of obj within [min, max] into *out; false when absent,
 * not a number, fractional or out of range. */
SB_MUST_CHECK bool sb_chan_json_int(const struct cJSON *obj, const char *key, int64_t min,
                                    int64_t max, int64_t *out);
/* Makes it a location item at the JSON numbers obj[lat_key], obj[lon_key] when they lie within
 * ±90 / ±180 degrees; false (it untouched) when they do not. */
SB_MUST_CHECK bool sb_chan_json_location(const struct cJSON *obj, const char *lat_key,
                                         const char *lon_key, sb_chan_item_t *it);
/* The object / array member key of obj, or NULL. */
const struct cJSON *sb_chan_json_obj(const struct cJSON *obj, const char *key);
const struct cJSON *sb_chan_json_arr(const struct cJSON *obj, const char *key);

#endif
