/* Configuration: one static table (`table` below) declares every key with its type, place in
 * sb_config_t, default, bounds, environment alias, secret flag and help. Everything else is
 * derived from it:
 *
 *   defaults (table) -> raw[]                     one string per key
 *   YAML file        -> raw[]                     libcyaml, schema built from the table
 *   environment      -> raw[]                     alias first, then SB_<KEY>
 *   raw[]            -> sb_config_t               parse + bounds/format checks, naming the key
 *
 * The libcyaml schema is built at run time from the dotted key names: every section becomes a
 * nested mapping and every leaf an optional string, so libcyaml rejects unknown keys and wrong
 * shapes (a scalar where a mapping belongs) and the table does types and bounds. The same table
 * prints the effective configuration (secrets hidden) and the Markdown reference in
 * docs/configuration.md. sodium.h is not included here (seal owns it), so secrets are wiped
 * with a volatile loop. */
#include "sb/config.h"

#include <cyaml/cyaml.h>
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "sb/util.h"

#define CONFIG_FILE_MAX (1024u * 1024u) /* a config file is small; bound it before reading */
#define VALUE_MAX 4096u                 /* longest value from the file or the environment */

typedef enum { T_STRING, T_INT, T_DOUBLE, T_BOOL } ktype_t;

/* A format check for a string value: returns NULL if fine, else a phrase such as
 * "is not one of debug, info, warn, error". */
typedef const char *(*check_fn)(const char *v);

typedef struct entry {
    const char *key; /* dotted: section.sub.name */
    ktype_t type;
    size_t off;      /* offsetof(sb_config_t, ...) */
    const char *def; /* default, as it would be written in YAML */
    int64_t imin, imax;
    double dmin, dmax;
    const char *alias; /* extra environment variable, checked before SB_<KEY> */
    bool secret;
    check_fn check;
    const char *rule; /* bounds column for string keys with a check */
    const char *help;
} entry_t;

static const char *check_log_level(const char *v);
static const char *check_key32(const char *v);
static const char *check_token(const char *v);
static const char *check_hostport(const char *v);
static const char *check_hostport_or_empty(const char *v);

#define OFF(f) offsetof(sb_config_t, f)
#define STR(k, f, d, al, sec, chk, rl, h)                                                          \
    {                                                                                              \
        .key = k, .type = T_STRING, .off = OFF(f), .def = d, .alias = al, .secret = sec,           \
        .check = chk, .rule = rl, .help = h                                                        \
    }
#define INT(k, f, d, lo, hi, al, h)                                                                \
    {                                                                                              \
        .key = k, .type = T_INT, .off = OFF(f), .def = #d, .imin = lo, .imax = hi, .alias = al,    \
        .help = h                                                                                  \
    }
#define DBL(k, f, d, lo, hi, al, h)                                                                \
    {                                                                                              \
        .key = k, .type = T_DOUBLE, .off = OFF(f), .def = #d, .dmin = lo, .dmax = hi, .alias = al, \
        .help = h                                                                                  \
    }
#define BOOL(k, f, d, al, h)                                                                       \
    {                                                                                              \
        .key = k, .type = T_BOOL, .off = OFF(f), .def = d, .alias = al, .help = h                  \
    }

#define KEY32 "base64 of 32 bytes"

/* Keys of one section must stay together: printing nests them by walking the table in order. */
static const entry_t table[] = {
    STR("log_level", log_level, "info", "SB_LOG_LEVEL", false, check_log_level,
        "debug, info, warn, error", "minimum level of log lines written to stderr"),
    STR("data_dir", data_dir, "./var", "SB_DATA_DIR", false, NULL, NULL,
        "directory under which LMDB, the JetStream store and models live"),

    STR("nats.url", nats.url, "nats://127.0.0.1:4222", "SB_NATS_URL", false, NULL, NULL,
        "NATS server URL(s), comma-separated"),
    INT("nats.publish_timeout_ms", nats.publish_timeout_ms, 5000, 100, 60000, NULL,
        "how long a JetStream publish waits for its ack"),
    INT("nats.partitions", nats.partitions, 8, 1, 1024, "SB_PARTITIONS",
        "conversation partitions P; every service of a deployment must agree"),
    INT("nats.stream_max_age_s", nats.stream_max_age_s, 604800, 60, 31536000, NULL,
        "how long streams keep messages"),
    INT("nats.duplicate_window_s", nats.duplicate_window_s, 120, 1, 86400, NULL,
        "JetStream duplicate window for Nats-Msg-Id"),
    INT("nats.replicas", nats.replicas, 1, 1, 5, NULL, "stream replicas (3 in a cluster)"),
    INT("nats.ack_wait_s", nats.ack_wait_s, 30, 1, 3600, NULL,
        "consumer ack wait before redelivery"),
    INT("nats.max_deliver", nats.max_deliver, 20, 1, 1000, NULL,
        "deliveries of one message before it is given up"),
    INT("nats.fetch_batch", nats.fetch_batch, 64, 1, 1024, NULL,
        "messages fetched per pull request"),

    STR("keys.id_secret", keys.id_secret, "", NULL, true, check_key32, KEY32,
        "BLAKE2b key for pseudonymous conversation and contact ids (router)"),
    STR("keys.contact_public_key", keys.contact_public_key, "", NULL, false, check_key32, KEY32,
        "X25519 public key the router seals contacts to"),
    STR("keys.contact_secret_key", keys.contact_secret_key, "", NULL, true, check_key32, KEY32,
        "X25519 secret key that opens sealed contacts (escalation)"),
    STR("keys.recipient_public_key", keys.recipient_public_key, "", NULL, false, check_key32, KEY32,
        "X25519 public key reply recipients are sealed to (escalation, responder)"),
    STR("keys.recipient_secret_key", keys.recipient_secret_key, "", NULL, true, check_key32, KEY32,
        "X25519 secret key that opens reply recipients (router egress)"),
    STR("keys.master_key", keys.master_key, "", NULL, true, check_key32, KEY32,
        "wraps the per-contact data keys in the escalation store"),
    INT("keys.master_key_id", keys.master_key_id, 1, 1, 4294967295LL, NULL,
        "id of master_key, stored with every wrapped key so the master key can rotate"),

    STR("router.http_listen", router.http_listen, "127.0.0.1:8080", "SB_HTTP_LISTEN", false,
        check_hostport, "host:port", "address of the webhook, console and health HTTP server"),
    INT("router.max_header_bytes", router.max_header_bytes, 16384, 1024, 1048576, NULL,
        "largest total size of request headers"),
    INT("router.max_headers", router.max_headers, 64, 8, 1024, NULL, "most headers in one request"),
    INT("router.request_timeout_ms", router.request_timeout_ms, 10000, 100, 600000, NULL,
        "time to receive a whole request"),
    INT("router.max_connections", router.max_connections, 4096, 1, 1000000, NULL,
        "concurrent HTTP connections"),
    STR("router.channel_api_base", router.channel_api_base, "", "SB_CHANNEL_API_BASE", false, NULL,
        NULL,
        "when set, every channel's API calls go to <base>/<channel>/...; empty = each "
        "channel's own api_base (the router's built-in sink under make run)"),
    INT("router.egress_timeout_ms", router.egress_timeout_ms, 10000, 100, 600000, NULL,
        "timeout of one outbound channel API call"),
    INT("router.egress_max_attempts", router.egress_max_attempts, 8, 1, 100, NULL,
        "attempts of one outbound message before it is given up"),
    INT("router.sink_keep", router.sink_keep, 100, 0, 10000, NULL,
        "requests kept by the built-in sink for /_sink"),
    INT("router.egress_concurrency", router.egress_concurrency, 64, 1, 10000, NULL,
        "outbound channel API calls in flight at once"),
    INT("router.egress_backoff_ms", router.egress_backoff_ms, 500, 10, 600000, NULL,
        "first retry delay of a failed send; doubles per attempt, with jitter"),
    INT("router.egress_backoff_max_ms", router.egress_backoff_max_ms, 60000, 100, 3600000, NULL,
        "longest retry delay (a provider's Retry-After may ask for more)"),

    BOOL("channels.webchat.enabled", webchat.enabled, "true", NULL, "accept the web widget"),
    STR("channels.webchat.signing_secret", webchat.signing_secret, "", NULL, true, NULL, NULL,
        "whsec_<base64> secret that signs web-chat webhooks"),
    INT("channels.webchat.max_skew_s", webchat.max_skew_s, 300, 1, 86400, NULL,
        "largest accepted age of a signed timestamp"),
    STR("channels.webchat.callback_url", webchat.callback_url, "", NULL, false, NULL, NULL,
        "where replies are POSTed; empty = the channel API base"),
    INT("channels.webchat.max_body_bytes", webchat.max_body_bytes, 65536, 1024, 1048576, NULL,
        "largest webhook body"),
    INT("channels.webchat.rate_per_s", webchat.rate_per_s, 0, 0, 100000, NULL,
        "outbound messages per second (0 = unlimited)"),
    STR("channels.webchat.allowed_origins", webchat.allowed_origins, "", NULL, false, NULL, NULL,
        "space-separated origins (https://shop.example.com) allowed to embed the widget"),
    INT("channels.webchat.session_ttl_s", webchat.session_ttl_s, 900, 60, 86400, NULL,
        "lifetime of a browser session token (refreshed while in use)"),

    BOOL("channels.whatsapp.enabled", whatsapp.enabled, "true", NULL,
         "accept WhatsApp Cloud API webhooks"),
    STR("channels.whatsapp.app_secret", whatsapp.app_secret, "", NULL, true, NULL, NULL,
        "Meta app secret (X-Hub-Signature-256)"),
    STR("channels.whatsapp.verify_token", whatsapp.verify_token, "", NULL, true, NULL, NULL,
        "token of the webhook verification handshake"),
    STR("channels.whatsapp.access_token", whatsapp.access_token, "", NULL, true, NULL, NULL,
        "Graph API bearer token for sending"),
    STR("channels.whatsapp.api_base", whatsapp.api_base, "https://graph.facebook.com/v19.0", NULL,
        false, NULL, NULL, "Graph API base URL"),
    INT("channels.whatsapp.max_body_bytes", whatsapp.max_body_bytes, 3407872, 1024, 16777216, NULL,
        "largest webhook body"),
    INT("channels.whatsapp.rate_per_s", whatsapp.rate_per_s, 80, 0, 100000, NULL,
        "outbound messages per second per number (0 = unlimited)"),
    STR("channels.whatsapp.window_template", whatsapp.window_template, "", NULL, false, NULL, NULL,
        "approved template sent instead of free text outside the 24-hour window"),
    STR("channels.whatsapp.template_language", whatsapp.template_language, "en", NULL, false, NULL,
        NULL, "language code of window_template"),

    BOOL("channels.messenger.enabled", messenger.enabled, "false", NULL,
         "accept Facebook Messenger webhooks"),
    STR("channels.messenger.app_secret", messenger.app_secret, "", NULL, true, NULL, NULL,
        "Meta app secret (X-Hub-Signature-256)"),
    STR("channels.messenger.verify_token", messenger.verify_token, "", NULL, true, NULL, NULL,
        "token of the webhook verification handshake"),
    STR("channels.messenger.access_token", messenger.access_token, "", NULL, true, NULL, NULL,
        "page access token for the Send API"),
    STR("channels.messenger.api_base", messenger.api_base, "https://graph.facebook.com/v19.0", NULL,
        false, NULL, NULL, "Graph API base URL"),
    INT("channels.messenger.max_body_bytes", messenger.max_body_bytes, 3407872, 1024, 16777216,
        NULL, "largest webhook body"),
    INT("channels.messenger.rate_per_s", messenger.rate_per_s, 40, 0, 100000, NULL,
        "outbound messages per second (0 = unlimited)"),

    BOOL("channels.instagram.enabled", instagram.enabled, "false", NULL,
         "accept Instagram messaging webhooks"),
    STR("channels.instagram.app_secret", instagram.app_secret, "", NULL, true, NULL, NULL,
        "Meta app secret (X-Hub-Signature-256)"),
    STR("channels.instagram.verify_token", instagram.verify_token, "", NULL, true, NULL, NULL,
        "token of the webhook verification handshake"),
    STR("channels.instagram.access_token", instagram.access_token, "", NULL, true, NULL, NULL,
        "access token for the Instagram Send API"),
    STR("channels.instagram.api_base", instagram.api_base, "https://graph.facebook.com/v19.0", NULL,
        false, NULL, NULL, "Graph API base URL"),
    INT("channels.instagram.max_body_bytes", instagram.max_body_bytes, 3407872, 1024, 16777216,
        NULL, "largest webhook body"),
    INT("channels.instagram.rate_per_s", instagram.rate_per_s, 40, 0, 100000, NULL,
        "outbound messages per second (0 = unlimited)"),

    BOOL("channels.telegram.enabled", telegram.enabled, "false", NULL,
         "accept Telegram Bot API webhooks"),
    STR("channels.telegram.secret_token", telegram.secret_token, "", NULL, true, NULL, NULL,
        "secret_token given to setWebhook (X-Telegram-Bot-Api-Secret-Token)"),
    STR("channels.telegram.bot_token", telegram.bot_token, "", NULL, true, NULL, NULL,
        "bot token for the Bot API (sendMessage)"),
    STR("channels.telegram.bot_id", telegram.bot_id, "", NULL, false, NULL, NULL,
        "numeric bot id: webhooks arrive on /v1/ingress/telegram/<bot_id>"),
    STR("channels.telegram.api_base", telegram.api_base, "https://api.telegram.org", NULL, false,
        NULL, NULL, "Bot API base URL"),
    INT("channels.telegram.max_body_bytes", telegram.max_body_bytes, 1048576, 1024, 16777216, NULL,
        "largest webhook body"),
    INT("channels.telegram.rate_per_s", telegram.rate_per_s, 30, 0, 100000, NULL,
        "outbound messages per second (0 = unlimited)"),

    BOOL("channels.slack.enabled", slack.enabled, "false", NULL,
         "accept Slack Events API and interactivity requests"),
    STR("channels.slack.signing_secret", slack.signing_secret, "", NULL, true, NULL, NULL,
        "Slack signing secret (X-Slack-Signature v0)"),
    STR("channels.slack.bot_token", slack.bot_token, "", NULL, true, NULL, NULL,
        "bot token (xoxb-...) for chat.postMessage"),
    STR("channels.slack.api_base", slack.api_base, "https://slack.com/api", NULL, false, NULL, NULL,
        "Web API base URL"),
    INT("channels.slack.max_skew_s", slack.max_skew_s, 300, 1, 86400, NULL,
        "largest accepted age of X-Slack-Request-Timestamp"),
    INT("channels.slack.max_body_bytes", slack.max_body_bytes, 1048576, 1024, 16777216, NULL,
        "largest request body"),
    INT("channels.slack.rate_per_s", slack.rate_per_s, 1, 0, 100000, NULL,
        "outbound messages per second per channel (0 = unlimited)"),

    BOOL("channels.twilio.enabled", twilio.enabled, "false", NULL,
         "accept Twilio Messaging webhooks (SMS, MMS, WhatsApp via Twilio)"),
    STR("channels.twilio.auth_token", twilio.auth_token, "", NULL, true, NULL, NULL,
        "Twilio auth token (X-Twilio-Signature, and basic auth for sending)"),
    STR("channels.twilio.account_sid", twilio.account_sid, "", NULL, false, NULL, NULL,
        "Twilio account SID (AC...)"),
    STR("channels.twilio.public_base_url", twilio.public_base_url, "", NULL, false, NULL, NULL,
        "scheme://host[:port] Twilio calls; the signature covers this exact URL"),
    STR("channels.twilio.from", twilio.from, "", NULL, false, NULL, NULL,
        "sender: +E.164 number, whatsapp:+E.164, or a messaging service SID (MG...)"),
    STR("channels.twilio.api_base", twilio.api_base, "https://api.twilio.com/2010-04-01", NULL,
        false, NULL, NULL, "REST API base URL"),
    INT("channels.twilio.max_body_bytes", twilio.max_body_bytes, 1048576, 1024, 16777216, NULL,
        "largest webhook body"),
    INT("channels.twilio.rate_per_s", twilio.rate_per_s, 1, 0, 100000, NULL,
        "outbound messages per second per sender (0 = unlimited)"),

    INT("store.map_size_mb", store.map_size_mb, 64, 1, 1048576, NULL, "initial LMDB map size"),
    INT("store.max_map_size_mb", store.max_map_size_mb, 65536, 1, 4194304, NULL,
        "the map grows up to this size, then writes fail with full"),
    INT("store.transcript_retention_days", store.transcript_retention_days, 30, 1, 3650, NULL,
        "transcripts are deleted this long after the last activity"),
    INT("store.dedup_retention_days", store.dedup_retention_days, 8, 1, 365, NULL,
        "how long message ids are remembered for deduplication"),

    STR("classifier.model", classifier.model, "", NULL, false, NULL, NULL,
        "model file; empty = <data_dir>/models/demo.model"),
    STR("classifier.shadow_model", classifier.shadow_model, "", NULL, false, NULL, NULL,
        "optional second model classifying the same messages; an EVENT_SHADOW compares them"),
    STR("classifier.rules", classifier.rules, "", NULL, false, NULL, NULL,
        "optional YAML of keyword rules"),
    STR("classifier.metrics_listen", classifier.metrics_listen, "", NULL, false,
        check_hostport_or_empty, "host:port or empty",
        "host:port for /metrics and /healthz; empty = off"),

    DBL("escalation.confidence_threshold", escalation.confidence_threshold, 0.45, 0, 1, NULL,
        "below this intent confidence the conversation goes to a human"),
    DBL("escalation.ambiguity_margin", escalation.ambiguity_margin, 0.05, 0, 1, NULL,
        "top two intents closer than this count as ambiguous"),
    STR("escalation.default_team", escalation.default_team, "support", NULL, false, check_token,
        "[A-Za-z0-9_-]+", "team that gets escalations no rule routes elsewhere"),
    INT("escalation.transcript_turns", escalation.transcript_turns, 10, 1, 100, NULL,
        "turns of history sent with an escalation or a bot turn"),
    INT("escalation.max_fallbacks", escalation.max_fallbacks, 2, 1, 100, NULL,
        "consecutive fallbacks before escalating"),
    STR("escalation.metrics_listen", escalation.metrics_listen, "", NULL, false,
        check_hostport_or_empty, "host:port or empty",
        "host:port for /metrics and /healthz; empty = off"),

    STR("responder.answers", responder.answers, "config/answers.yaml", NULL, false, NULL, NULL,
        "the business team's answers YAML"),
    STR("responder.metrics_listen", responder.metrics_listen, "", NULL, false,
        check_hostport_or_empty, "host:port or empty",
        "host:port for /metrics and /healthz; empty = off"),
};

#define NKEYS (sizeof table / sizeof table[0])

/* ---- small helpers ------------------------------------------------------------------------ */

static void wipe(void *p, size_t n)
{
    volatile unsigned char *v = p;
    while (n--)
        *v++ = 0;
}

static void wipe_free(char *s)
{
    if (!s) return;
    wipe(s, strlen(s));
    free(s);
}

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || errlen == 0) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static const entry_t *find_entry(const char *key)
{
    for (size_t i = 0; i < NKEYS; i++)
        if (strcmp(table[i].key, key) == 0) return &table[i];
    return NULL;
}

/* SB_ + upper(key) with '.' -> '_'. */
static void env_name(const entry_t *e, char *buf, size_t len)
{
    size_t o = 0;
    const char *pfx = "SB_";
    for (const char *p = pfx; *p && o + 1 < len; p++)
        buf[o++] = *p;
    for (const char *p = e->key; *p && o + 1 < len; p++)
        buf[o++] = *p == '.' ? '_' : (char)toupper((unsigned char)*p);
    buf[o] = '\0';
}

static const char *type_name(ktype_t t)
{
    switch (t) {
    case T_STRING:
        return "string";
    case T_INT:
        return "int";
    case T_DOUBLE:
        return "double";
    case T_BOOL:
        return "bool";
    }
    return "?";
}

/* ---- format checks ------------------------------------------------------------------------ */

static const char *check_log_level(const char *v)
{
    static const char *const names[] = {"debug", "info", "warn", "error"};
    for (size_t i = 0; i < 4; i++)
        if (strcmp(v, names[i]) == 0) return NULL;
    return "is not one of debug, info, warn, error";
}

/* Original base64 with padding (what sb_seal_key_from_base64 accepts), decoding to exactly 32
 * bytes, unused trailing bits zero. Empty means "not configured". */
static const char *check_key32(const char *v)
{
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t n = strlen(v);
    if (n == 0) return NULL;
    /* 32 bytes = 43 characters carrying 258 bits (last 2 zero) and one '=' */
    if (n != 44 || v[43] != '=') return "is not base64 of 32 bytes";
    for (size_t i = 0; i < 43; i++)
        if (!v[i] || !strchr(alphabet, v[i])) return "is not base64 of 32 bytes";
    size_t last = (size_t)(strchr(alphabet, v[42]) - alphabet);
    if (last & 3u) return "is not base64 of 32 bytes";
    return NULL;
}

static const char *check_token(const char *v)
{
    if (!*v) return "is empty; use [A-Za-z0-9_-]+";
    for (const char *p = v; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '_' && *p != '-')
            return "is not a subject token [A-Za-z0-9_-]+";
    return NULL;
}

static const char *check_hostport(const char *v)
{
    char host[256];
    int port;
    if (sb_parse_hostport(v, host, sizeof host, &port) != SB_OK) return "is not host:port";
    return NULL;
}

static const char *check_hostport_or_empty(const char *v)
{
    return *v ? check_hostport(v) : NULL;
}

/* ---- value parsing ------------------------------------------------------------------------ */

static bool parse_int(const char *s, int64_t *out)
{
    const char *p = s;
    if (*p == '+' || *p == '-') p++;
    if (!*p) return false;
    for (const char *q = p; *q; q++)
        if (!isdigit((unsigned char)*q)) return false;
    errno = 0;
    long long v = strtoll(s, NULL, 10);
    if (errno == ERANGE) return false;
    *out = (int64_t)v;
    return true;
}

static bool parse_double(const char *s, double *out)
{
    if (!*s || isspace((unsigned char)*s)) return false;
    char *end = NULL;
    errno = 0;
    double v = strtod(s, &end);
    if (errno == ERANGE || !end || *end || !isfinite(v)) return false;
    *out = v;
    return true;
}

static bool parse_bool(const char *s, bool *out)
{
    static const char *const yes[] = {"true", "yes", "on", "1"};
    static const char *const no[] = {"false", "no", "off", "0"};
    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *out = true;
            return true;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *out = false;
            return true;
        }
    }
    return false;
}

/* Where a raw value came from, for error messages. */
typedef struct raw {
    char *v[NKEYS];
    char src[NKEYS][128]; /* "" = default or file; else "environment SB_..." */
} raw_t;

static void raw_free(raw_t *r)
{
    for (size_t i = 0; i < NKEYS; i++) {
        wipe_free(r->v[i]);
        r->v[i] = NULL;
    }
}

static void raw_set(raw_t *r, size_t i, const char *v, const char *src)
{
    wipe_free(r->v[i]);
    r->v[i] = sb_xstrdup(v);
    snprintf(r->src[i], sizeof r->src[i], "%s", src);
}

/* ---- libcyaml schema from the table ------------------------------------------------------- */

static cyaml_schema_field_t *build_fields(const char *prefix, size_t plen);

/* Fills f as a mapping field for section name (prefix + name + "."). */
static void build_section(cyaml_schema_field_t *f, const char *prefix, size_t plen,
                          const char *name, size_t nlen)
{
    char *sub = sb_xmalloc(plen + nlen + 2);
    memcpy(sub, prefix, plen);
    memcpy(sub + plen, name, nlen);
    sub[plen + nlen] = '.';
    sub[plen + nlen + 1] = '\0';
    f->key = sb_xstrndup(name, nlen);
    /* Not a pointer: the section's leaves write straight into the one flat raw array, so the
     * mapping sits at offset 0 and each leaf's offset is its table index. */
    f->data_offset = 0;
    f->value.type = CYAML_MAPPING;
    f->value.flags = CYAML_FLAG_OPTIONAL;
    f->value.data_size = (uint32_t)(NKEYS * sizeof(char *));
    f->value.mapping.fields = build_fields(sub, plen + nlen + 1);
    free(sub);
}

/* The fields of the mapping whose keys start with prefix, in table order, ending with a
 * NULL key. Sections appear once, at the position of their first key. */
static cyaml_schema_field_t *build_fields(const char *prefix, size_t plen)
{
    cyaml_schema_field_t *fields = sb_xcalloc(NKEYS + 1, sizeof *fields);
    size_t n = 0;
    for (size_t i = 0; i < NKEYS; i++) {
        const char *k = table[i].key;
        if (strncmp(k, prefix, plen) != 0) continue;
        const char *rest = k + plen;
        const char *dot = strchr(rest, '.');
        size_t nlen = dot ? (size_t)(dot - rest) : strlen(rest);
        bool seen = false;
        for (size_t j = 0; j < n; j++)
            if (strlen(fields[j].key) == nlen && strncmp(fields[j].key, rest, nlen) == 0)
                seen = true;
        if (seen) continue;
        cyaml_schema_field_t *f = &fields[n++];
        if (dot) {
            build_section(f, prefix, plen, rest, nlen);
            continue;
        }
        f->key = sb_xstrdup(rest);
        f->data_offset = (uint32_t)(i * sizeof(char *));
        f->value.type = CYAML_STRING;
        f->value.flags = CYAML_FLAG_OPTIONAL | CYAML_FLAG_POINTER;
        f->value.data_size = sizeof(char);
        f->value.string.min = 0;
        f->value.string.max = VALUE_MAX;
    }
    return fields;
}

static void free_fields(cyaml_schema_field_t *fields)
{
    for (cyaml_schema_field_t *f = fields; f->key; f++) {
        if (f->value.type == CYAML_MAPPING)
            free_fields((cyaml_schema_field_t *)f->value.mapping.fields);
        free((char *)f->key);
    }
    free(fields);
}

/* libcyaml reports why it rejected a document through its log callback; keep the messages so
 * the error can name the key ("Unexpected key: x") and its section path. */
typedef struct cy_log {
    char text[1024];
    size_t len;
} cy_log_t;

static void cy_log_fn(cyaml_log_t level, void *ctx, const char *fmt, va_list args)
{
    cy_log_t *l = ctx;
    if (level < CYAML_LOG_ERROR) return;
    /* Each message is cut short so a long value cannot push the backtrace out of the buffer. */
    char tmp[160];
    int n = vsnprintf(tmp, sizeof tmp, fmt, args);
    if (n < 0) return;
    size_t len = strnlen(tmp, sizeof tmp);
    if (len == 0 || tmp[len - 1] != '\n') {
        if (len == sizeof tmp - 1) len--;
        tmp[len++] = '\n';
    }
    if (l->len + len >= sizeof l->text) return;
    memcpy(l->text + l->len, tmp, len);
    l->len += len;
    l->text[l->len] = '\0';
    wipe(tmp, sizeof tmp);
}

/* Turns libcyaml's log, e.g.
 *   Load: Expecting MAPPING, got event: SCALAR
 *   Load: Backtrace:
 *     in mapping field 'url' (line: 2, column: 3)
 *     in mapping field 'nats' (line: 2, column: 3)
 * into one line naming the dotted key: "nats.url: Expecting MAPPING, got event: SCALAR (line 2,
 * column 3)", or "nats.x: unknown key" for a key the table does not have. */
static void describe_cyaml_error(const cy_log_t *l, cyaml_err_t cerr, char *out, size_t outlen)
{
    const char *msg = l->text;
    if (strncmp(msg, "Load: ", 6) == 0) msg += 6;
    size_t mlen = strcspn(msg, "\n");
    /* Some messages end with the offending value (": SSSS..."), which may be a secret: keep
     * only the part before the first ": " unless the message is one whose tail is known to be
     * a key, an event name or libyaml's own text. */
    static const char *const safe[] = {
        "Expecting ", "libyaml: ", "Mapping field already seen: ", "Unexpected key: "};
    bool keep = false;
    for (size_t i = 0; i < sizeof safe / sizeof safe[0]; i++)
        if (strncmp(msg, safe[i], strlen(safe[i])) == 0) keep = true;
    if (!keep) {
        const char *colon = strstr(msg, ": ");
        if (colon && (size_t)(colon - msg) < mlen) mlen = (size_t)(colon - msg);
    }
    if (mlen == 0) {
        msg = cyaml_strerror(cerr);
        mlen = strlen(msg);
    }
    /* The backtrace lists the enclosing mapping fields innermost first. */
    const char *parts[8];
    size_t plens[8], np = 0;
    int line = 0, col = 0;
    for (const char *p = strstr(l->text, "mapping field '"); p && np < 8;
         p = strstr(p, "mapping field '")) {
        p += strlen("mapping field '");
        parts[np] = p;
        plens[np] = strcspn(p, "'");
        if (np == 0) {
            const char *loc = strstr(p, "(line: ");
            if (loc && sscanf(loc, "(line: %d, column: %d)", &line, &col) != 2) line = 0;
        }
        np++;
    }
    const char *uk = NULL;
    size_t uklen = 0;
    if (cerr == CYAML_ERR_INVALID_KEY && strncmp(msg, "Unexpected key: ", 16) == 0) {
        uk = msg + 16;
        uklen = mlen - 16;
    }
    size_t o = 0;
    out[0] = '\0';
    for (size_t i = np; i-- > 0;) {
        int n = snprintf(out + o, outlen - o, "%.*s%s", (int)plens[i], parts[i],
                         (i > 0 || uk) ? "." : ": ");
        if (n < 0 || (size_t)n >= outlen - o) return;
        o += (size_t)n;
    }
    if (uk) {
        snprintf(out + o, outlen - o, "%.*s: unknown key", (int)uklen, uk);
        return;
    }
    int n = snprintf(out + o, outlen - o, "%.*s", (int)mlen, msg);
    if (n < 0 || (size_t)n >= outlen - o) return;
    o += (size_t)n;
    if (line > 0) snprintf(out + o, outlen - o, " (line %d, column %d)", line, col);
}

static sb_result_t load_file(raw_t *raw, const char *path, char *err, size_t errlen)
{
    sb_result_t rc = SB_E_CONFIG;
    char *text = NULL;
    size_t len = 0;
    sb_result_t r = sb_read_file(path, CONFIG_FILE_MAX, &text, &len);
    if (r != SB_OK) {
        if (r == SB_E_TOO_LARGE)
            set_err(err, errlen, "config: %s: larger than %u bytes", path, CONFIG_FILE_MAX);
        else
            set_err(err, errlen, "config: %s: cannot read (%s)", path, sb_result_str(r));
        goto out;
    }
    /* A file of comments only (or nothing) is a valid, empty configuration; libcyaml would
     * reject a document with no top-level mapping. */
    bool blank = true;
    for (const char *line = text; *line && blank;) {
        const char *p = line + strspn(line, " \t\r");
        size_t n = strcspn(p, "\n");
        if (n > 0 && *p != '#' && !(n == 3 && strncmp(p, "---", 3) == 0)) blank = false;
        line = p + n + (p[n] == '\n');
    }
    if (blank) {
        rc = SB_OK;
        goto free_text;
    }

    cyaml_schema_field_t *top = build_fields("", 0);
    cyaml_schema_value_t schema = {
        .type = CYAML_MAPPING,
        .flags = CYAML_FLAG_POINTER,
        .data_size = (uint32_t)(NKEYS * sizeof(char *)),
        .mapping.fields = top,
    };
    cy_log_t log = {.len = 0};
    cyaml_config_t cc = {
        .log_fn = cy_log_fn,
        .log_ctx = &log,
        .mem_fn = cyaml_mem,
        .log_level = CYAML_LOG_ERROR,
        .flags = CYAML_CFG_NO_ALIAS,
    };
    char **values = NULL;
    cyaml_err_t cerr =
        cyaml_load_data((const uint8_t *)text, len, &cc, &schema, (cyaml_data_t **)&values, NULL);
    if (cerr != CYAML_OK) {
        char why[384];
        describe_cyaml_error(&log, cerr, why, sizeof why);
        set_err(err, errlen, "config: %s: %s", path, why);
        goto free_schema;
    }
    if (values) {
        for (size_t i = 0; i < NKEYS; i++) {
            if (!values[i]) continue;
            raw_set(raw, i, values[i], "");
            /* values may hold secrets: wipe libcyaml's copies before it frees them */
            wipe(values[i], strlen(values[i]));
        }
        cyaml_free(&cc, &schema, values, 0);
    }
    rc = SB_OK;
free_schema:
    wipe(&log, sizeof log);
    free_fields(top);
free_text:
    wipe(text, len);
    free(text);
out:
    return rc;
}

/* Environment: the alias first, then SB_<KEY>. An empty variable sets an empty string for
 * string keys and is ignored for the others (compose files often pass unset variables as ""). */
static sb_result_t load_env(raw_t *raw, char *err, size_t errlen)
{
    for (size_t i = 0; i < NKEYS; i++) {
        const entry_t *e = &table[i];
        char generic[96];
        env_name(e, generic, sizeof generic);
        const char *name = e->alias;
        const char *v = name ? getenv(name) : NULL;
        if (!v) {
            name = generic;
            v = getenv(name);
        }
        if (!v) continue;
        if (!*v && e->type != T_STRING) continue;
        if (strlen(v) > VALUE_MAX) {
            set_err(err, errlen, "config: %s: value of %s is longer than %u bytes", e->key, name,
                    VALUE_MAX);
            return SB_E_CONFIG;
        }
        char src[128];
        snprintf(src, sizeof src, " (from %s)", name);
        raw_set(raw, i, v, src);
    }
    return SB_OK;
}

/* Converts and checks one raw value into cfg. */
static sb_result_t apply(sb_config_t *cfg, size_t i, const char *v, const char *src, char *err,
                         size_t errlen)
{
    const entry_t *e = &table[i];
    void *dst = (char *)cfg + e->off;
    switch (e->type) {
    case T_STRING: {
        const char *why = e->check ? e->check(v) : NULL;
        if (why) {
            if (e->secret)
                set_err(err, errlen, "config: %s: the value %s%s", e->key, why, src);
            else
                set_err(err, errlen, "config: %s: \"%s\" %s%s", e->key, v, why, src);
            return SB_E_CONFIG;
        }
        char **s = dst;
        wipe_free(*s);
        *s = sb_xstrdup(v);
        return SB_OK;
    }
    case T_INT: {
        int64_t x;
        if (!parse_int(v, &x)) {
            set_err(err, errlen, "config: %s: \"%s\" is not an integer%s", e->key, v, src);
            return SB_E_CONFIG;
        }
        if (x < e->imin) {
            set_err(err, errlen, "config: %s: %lld is below the minimum %lld%s", e->key,
                    (long long)x, (long long)e->imin, src);
            return SB_E_CONFIG;
        }
        if (x > e->imax) {
            set_err(err, errlen, "config: %s: %lld is above the maximum %lld%s", e->key,
                    (long long)x, (long long)e->imax, src);
            return SB_E_CONFIG;
        }
        *(int64_t *)dst = x;
        return SB_OK;
    }
    case T_DOUBLE: {
        double x;
        if (!parse_double(v, &x)) {
            set_err(err, errlen, "config: %s: \"%s\" is not a number%s", e->key, v, src);
            return SB_E_CONFIG;
        }
        if (x < e->dmin) {
            set_err(err, errlen, "config: %s: %g is below the minimum %g%s", e->key, x, e->dmin,
                    src);
            return SB_E_CONFIG;
        }
        if (x > e->dmax) {
            set_err(err, errlen, "config: %s: %g is above the maximum %g%s", e->key, x, e->dmax,
                    src);
            return SB_E_CONFIG;
        }
        *(double *)dst = x;
        return SB_OK;
    }
    case T_BOOL: {
        bool b;
        if (!parse_bool(v, &b)) {
            set_err(err, errlen, "config: %s: \"%s\" is not true or false%s", e->key, v, src);
            return SB_E_CONFIG;
        }
        *(bool *)dst = b;
        return SB_OK;
    }
    }
    return SB_E_INTERNAL;
}

/* ---- public API --------------------------------------------------------------------------- */

sb_result_t sb_config_load(sb_config_t *cfg, const char *path, char *err, size_t errlen)
{
    sb_result_t rc;
    raw_t raw;
    memset(&raw, 0, sizeof raw);
    memset(cfg, 0, sizeof *cfg);
    if (err && errlen) err[0] = '\0';

    for (size_t i = 0; i < NKEYS; i++)
        raw_set(&raw, i, table[i].def, " (default)");
    if (path) {
        rc = load_file(&raw, path, err, errlen);
        if (rc != SB_OK) goto fail;
    }
    rc = load_env(&raw, err, errlen);
    if (rc != SB_OK) goto fail;
    for (size_t i = 0; i < NKEYS; i++) {
        rc = apply(cfg, i, raw.v[i], raw.src[i], err, errlen);
        if (rc != SB_OK) goto fail;
    }
    if (cfg->store.map_size_mb > cfg->store.max_map_size_mb) {
        set_err(err, errlen, "config: store.map_size_mb: %lld is above store.max_map_size_mb %lld",
                (long long)cfg->store.map_size_mb, (long long)cfg->store.max_map_size_mb);
        rc = SB_E_CONFIG;
        goto fail;
    }
    raw_free(&raw);
    return SB_OK;
fail:
    raw_free(&raw);
    sb_config_free(cfg);
    return rc == SB_OK ? SB_E_CONFIG : rc;
}

sb_result_t sb_config_require(const sb_config_t *cfg, const char *const *keys, char *err,
                              size_t errlen)
{
    for (const char *const *k = keys; k && *k; k++) {
        const entry_t *e = find_entry(*k);
        if (!e) {
            set_err(err, errlen, "config: %s: no such key", *k);
            return SB_E_CONFIG;
        }
        if (e->type != T_STRING) continue;
        const char *v = *(char *const *)((const char *)cfg + e->off);
        if (!v || !*v) {
            char generic[96];
            env_name(e, generic, sizeof generic);
            set_err(err, errlen, "config: %s: is required but empty (set it in the file or %s)",
                    e->key, e->alias ? e->alias : generic);
            return SB_E_CONFIG;
        }
    }
    return SB_OK;
}

/* Shortest %g form that reads back as the same double, so printed YAML round-trips. */
static void format_double(char *buf, size_t len, double v)
{
    for (int prec = 6; prec <= 17; prec++) {
        snprintf(buf, len, "%.*g", prec, v);
        if (strtod(buf, NULL) == v) return;
    }
}

static void print_yaml_string(FILE *out, const char *s)
{
    fputc('"', out);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(out, "\\%c", *p);
        else if (*p == '\n')
            fputs("\\n", out);
        else if (*p == '\t')
            fputs("\\t", out);
        else if (*p < 0x20 || *p == 0x7f)
            fprintf(out, "\\x%02x", *p);
        else
            fputc(*p, out);
    }
    fputc('"', out);
}

/* Number of leading dotted components a and b share (sections only, not the leaf). */
static size_t common_sections(const char *a, const char *b)
{
    size_t n = 0;
    for (;;) {
        const char *da = strchr(a, '.'), *db = strchr(b, '.');
        if (!da || !db) return n;
        if (da - a != db - b || strncmp(a, b, (size_t)(da - a)) != 0) return n;
        n++;
        a = da + 1;
        b = db + 1;
    }
}

void sb_config_print(const sb_config_t *cfg, FILE *out)
{
    const char *prev = "";
    for (size_t i = 0; i < NKEYS; i++) {
        const entry_t *e = &table[i];
        size_t keep = common_sections(prev, e->key);
        /* open the sections this key needs beyond those still open */
        const char *p = e->key;
        size_t depth = 0;
        for (const char *dot; (dot = strchr(p, '.')); p = dot + 1, depth++) {
            if (depth >= keep) fprintf(out, "%*s%.*s:\n", (int)(2 * depth), "", (int)(dot - p), p);
        }
        fprintf(out, "%*s%s: ", (int)(2 * depth), "", p);
        const void *src = (const char *)cfg + e->off;
        char num[64];
        switch (e->type) {
        case T_STRING: {
            const char *s = *(char *const *)src;
            if (!s) s = "";
            if (e->secret && *s)
                fputs("\"(hidden)\"", out);
            else
                print_yaml_string(out, s);
            break;
        }
        case T_INT:
            fprintf(out, "%lld", (long long)*(const int64_t *)src);
            break;
        case T_DOUBLE:
            format_double(num, sizeof num, *(const double *)src);
            fputs(num, out);
            break;
        case T_BOOL:
            fputs(*(const bool *)src ? "true" : "false", out);
            break;
        }
        fputc('\n', out);
        prev = e->key;
    }
}

/* Markdown cell text: pipes escaped so they do not split the cell. */
static void print_cell(FILE *out, const char *s)
{
    for (; *s; s++) {
        if (*s == '|') fputc('\\', out);
        fputc(*s, out);
    }
}

void sb_config_print_reference(FILE *out)
{
    fputs("| key | type | default | bounds | environment | secret | description |\n", out);
    fputs("| --- | --- | --- | --- | --- | --- | --- |\n", out);
    for (size_t i = 0; i < NKEYS; i++) {
        const entry_t *e = &table[i];
        char generic[96];
        env_name(e, generic, sizeof generic);
        fprintf(out, "| `%s` | %s | ", e->key, type_name(e->type));
        if (*e->def)
            fprintf(out, "`%s`", e->def);
        else
            fputs("\"\"", out);
        fputs(" | ", out);
        switch (e->type) {
        case T_INT:
            fprintf(out, "%lld .. %lld", (long long)e->imin, (long long)e->imax);
            break;
        case T_DOUBLE:
            fprintf(out, "%g .. %g", e->dmin, e->dmax);
            break;
        case T_BOOL:
            fputs("true, false", out);
            break;
        case T_STRING:
            if (e->rule) print_cell(out, e->rule);
            break;
        }
        fputs(" | ", out);
        if (e->alias && strcmp(e->alias, generic) != 0)
            fprintf(out, "`%s`, `%s`", e->alias, generic);
        else
            fprintf(out, "`%s`", generic);
        fprintf(out, " | %s | ", e->secret ? "yes" : "");
        print_cell(out, e->help);
        fputs(" |\n", out);
    }
}

const char *sb_config_key_name(size_t i)
{
    return i < NKEYS ? table[i].key : NULL;
}

void sb_config_free(sb_config_t *cfg)
{
    if (!cfg) return;
    for (size_t i = 0; i < NKEYS; i++) {
        if (table[i].type != T_STRING) continue;
        char **s = (char **)((char *)cfg + table[i].off);
        wipe_free(*s);
        *s = NULL;
    }
    wipe(cfg, sizeof *cfg);
}
