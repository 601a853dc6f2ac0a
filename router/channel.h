/* The channel interface: the one shape every messaging channel of the router takes (webchat and
 * whatsapp now; messenger, instagram, telegram, slack and twilio later).
 *
 * Data flow through a channel:
 *   ingress: raw HTTP request --verify()--> authentic bytes --parse()--> sb_chan_batch_t of
 *            normalized items (plain C, all PII still in the clear) --> ingress.c turns each
 *            item into an Envelope with a sealed Contact and publishes it;
 *   GET:     handshake() answers a provider's subscription check (WhatsApp hub.*);
 *   egress:  Outbound + opened Recipient --render()--> method, URL, headers and JSON body that
 *            egress.c sends with the HTTP client.
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
    bool quarantine;    /* part or all of the body was authentic but unusable: its raw
                           bytes go to sb.quarantine.<channel>, the provider gets 200 */
    int reject_status;  /* 0, or 400/422: answer it and publish nothing (our own clients
                           only, who do not retry-storm) */
    size_t nignored;    /* authentic items dropped on purpose: our own echoes coming back
                           (loop guard). Answered 200; ingress reports outcome "ignored"
                           when nothing else was published */
    const char *reason; /* static text without PII: why quarantined / rejected / empty */
} sb_chan_batch_t;

/* An HTTP call rendered for egress. Owned; free with sb_chan_http_free. */
typedef struct sb_chan_http {
    const char *method; /* static */
    char *url;
    char **headers; /* NULL-terminated "Name: value" list */
    sb_buf_t body;
} sb_chan_http_t;

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
     * static label without secrets ("missing_signature", "bad_signature", "stale", ...).
     * Comparisons are constant time. */
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
    /* Renders the API call that delivers out to rcpt, with api_base (no trailing '/') and the
     * signing time now_s. SB_E_INVALID when the recipient or message cannot be sent on this
     * channel; *req is written only on success. */
    SB_MUST_CHECK sb_result_t (*render)(const sb_channel_t *ch, const sb_outbound_t *out,
                                        const sb_recipient_t *rcpt, const char *api_base,
                                        int64_t now_s, sb_chan_http_t *req);
} sb_channel_ops_t;

/* A configured channel. Immutable after sb_channel_create; any thread may use it. */
struct sb_channel {
    const sb_channel_ops_t *ops;
    size_t max_body;
    char *api_base; /* the channel's own API base ("" when none) */
    void *priv;     /* the channel's secrets; wiped by destroy */
};

/* The table of every channel the router knows, NULL-terminated. */
extern const sb_channel_ops_t *const sb_channel_table[];
extern const sb_channel_ops_t sb_channel_webchat;
extern const sb_channel_ops_t sb_channel_whatsapp;

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
/* Counts UTF-8 characters (code points) of s. */
size_t sb_chan_utf8_len(const char *s);
/* Appends a NULL-terminated header list entry "Name: value" to req->headers. */
void sb_chan_http_add_header(sb_chan_http_t *req, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Constant-time equality of two strings of any length (HMAC under a random process key, so
 * neither content nor length leaks through timing). */
SB_MUST_CHECK bool sb_chan_secret_equal(const char *a, size_t alen, const char *b, size_t blen);

/* cJSON helpers (cJSON is included only by the channel sources). */
struct cJSON;
/* Parses len bytes as JSON; NULL when malformed. The caller frees with cJSON_Delete. */
struct cJSON *sb_chan_json_parse(const uint8_t *body, size_t len);
/* The string member key of obj, or NULL when absent, not a string, empty or longer than max. */
const char *sb_chan_json_str(const struct cJSON *obj, const char *key, size_t max);
/* A heap copy of sb_chan_json_str, or NULL. */
char *sb_chan_json_dup(const struct cJSON *obj, const char *key, size_t max);
/* The object / array member key of obj, or NULL. */
const struct cJSON *sb_chan_json_obj(const struct cJSON *obj, const char *key);
const struct cJSON *sb_chan_json_arr(const struct cJSON *obj, const char *key);

#endif
