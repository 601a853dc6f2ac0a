/* Configuration: one table (core/src/config.c) declares every key with its type, default,
 * bounds, environment override and secret flag; that one table drives YAML parsing (libcyaml),
 * defaults, validation, --print-config and the reference in docs/configuration.md.
 * Every service loads the same file and reads the sections it needs. */
#ifndef SB_CONFIG_H
#define SB_CONFIG_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "result.h"

typedef struct sb_config_nats {
    char *url; /* nats://host:port[,nats://...] */
    int64_t publish_timeout_ms;
    int64_t partitions; /* P: conversation partitions */
    int64_t stream_max_age_s;
    int64_t duplicate_window_s;
    int64_t replicas;
    int64_t ack_wait_s;
    int64_t max_deliver;
    int64_t fetch_batch;
} sb_config_nats_t;

typedef struct sb_config_keys {
    char *id_secret;            /* base64, 32 bytes: keys the pseudonymous id hashes */
    char *contact_public_key;   /* base64 X25519: router seals contacts to it */
    char *contact_secret_key;   /* base64: escalation opens sealed contacts */
    char *recipient_public_key; /* base64: escalation/responder seal reply recipients to egress */
    char *recipient_secret_key; /* base64: router egress opens them */
    char *master_key;           /* base64, 32 bytes: wraps per-contact data keys */
    int64_t master_key_id;
} sb_config_keys_t;

typedef struct sb_config_webchat {
    bool enabled;
    char *signing_secret; /* whsec_<base64> */
    int64_t max_skew_s;
    char *callback_url; /* where replies are POSTed; empty = the API base */
    int64_t max_body_bytes;
    int64_t rate_per_s;
    char *allowed_origins; /* space-separated origins the widget may be embedded on */
    int64_t session_ttl_s; /* lifetime of a browser session token */
} sb_config_webchat_t;

typedef struct sb_config_whatsapp {
    bool enabled;
    char *app_secret;
    char *verify_token;
    char *access_token;
    char *api_base; /* e.g. https://graph.facebook.com/v19.0 */
    int64_t max_body_bytes;
    int64_t rate_per_s;
    char *window_template; /* template sent when the 24-hour window is closed */
    char *template_language;
} sb_config_whatsapp_t;

/* Messenger and Instagram share one shape (Meta Graph webhooks + Send API). */
typedef struct sb_config_meta {
    bool enabled;
    char *app_secret;
    char *verify_token;
    char *access_token; /* page access token */
    char *api_base;
    int64_t max_body_bytes;
    int64_t rate_per_s;
} sb_config_meta_t;

typedef struct sb_config_telegram {
    bool enabled;
    char *secret_token; /* X-Telegram-Bot-Api-Secret-Token */
    char *bot_token;    /* for the Bot API (sendMessage) */
    char *bot_id;       /* numeric bot id: the ingress path and dedup keys carry it */
    char *api_base;
    int64_t max_body_bytes;
    int64_t rate_per_s;
} sb_config_telegram_t;

typedef struct sb_config_slack {
    bool enabled;
    char *signing_secret;
    char *bot_token;
    char *api_base;
    int64_t max_skew_s;
    int64_t max_body_bytes;
    int64_t rate_per_s;
} sb_config_slack_t;

typedef struct sb_config_twilio {
    bool enabled;
    char *auth_token;
    char *account_sid;
    char *public_base_url; /* the scheme://host Twilio calls: signatures cover the full URL */
    char *from;            /* sender: a number, "whatsapp:+1..." or a messaging service sid */
    char *api_base;
    int64_t max_body_bytes;
    int64_t rate_per_s;
} sb_config_twilio_t;

typedef struct sb_config_router {
    char *http_listen; /* host:port */
    int64_t max_header_bytes;
    int64_t max_headers;
    int64_t request_timeout_ms;
    int64_t max_connections;
    char *channel_api_base; /* when set, every channel's API calls go here (tests, make run) */
    int64_t egress_timeout_ms;
    int64_t egress_max_attempts;
    int64_t sink_keep;          /* requests kept by the built-in sink for /_sink */
    int64_t egress_concurrency; /* outbound API calls in flight at once */
    int64_t egress_backoff_ms;  /* first retry delay; doubles per attempt, with jitter */
    int64_t egress_backoff_max_ms;
} sb_config_router_t;

typedef struct sb_config_store {
    int64_t map_size_mb;
    int64_t max_map_size_mb;
    int64_t transcript_retention_days;
    int64_t dedup_retention_days;
} sb_config_store_t;

typedef struct sb_config_classifier {
    char *model;          /* path to the model file */
    char *shadow_model;   /* optional second model compared on live traffic */
    char *rules;          /* optional YAML of keyword rules */
    char *metrics_listen; /* host:port for /metrics, /healthz; empty = off */
} sb_config_classifier_t;

typedef struct sb_config_escalation {
    double confidence_threshold;
    double ambiguity_margin;
    char *default_team;
    int64_t transcript_turns;
    int64_t max_fallbacks;
    char *metrics_listen;
} sb_config_escalation_t;

typedef struct sb_config_responder {
    char *answers; /* path to the answers YAML */
    char *metrics_listen;
} sb_config_responder_t;

typedef struct sb_config {
    char *log_level;
    char *data_dir; /* LMDB, JetStream store, models live under it */
    sb_config_nats_t nats;
    sb_config_keys_t keys;
    sb_config_router_t router;
    sb_config_webchat_t webchat;
    sb_config_whatsapp_t whatsapp;
    sb_config_meta_t messenger;
    sb_config_meta_t instagram;
    sb_config_telegram_t telegram;
    sb_config_slack_t slack;
    sb_config_twilio_t twilio;
    sb_config_store_t store;
    sb_config_classifier_t classifier;
    sb_config_escalation_t escalation;
    sb_config_responder_t responder;
} sb_config_t;

/* Loads defaults, then the YAML file at path (NULL: defaults only), then environment overrides,
 * then validates every value against its bounds. On error writes a message naming the key to
 * err and returns SB_E_CONFIG; *cfg is then left freed. Caller frees with sb_config_free. */
SB_MUST_CHECK sb_result_t sb_config_load(sb_config_t *cfg, const char *path, char *err,
                                         size_t errlen);
/* Checks that each dotted key in keys (NULL-terminated) is set to a non-empty value. */
SB_MUST_CHECK sb_result_t sb_config_require(const sb_config_t *cfg, const char *const *keys,
                                            char *err, size_t errlen);
/* Prints the effective configuration as YAML with secrets shown as "(hidden)". */
void sb_config_print(const sb_config_t *cfg, FILE *out);
/* Prints the reference table (key, type, default, bounds, env, secret, help) as Markdown. */
void sb_config_print_reference(FILE *out);
/* The dotted name of the i-th key in table order, or NULL past the last one (docs, tests,
 * `config get`-style tools). Any thread. */
const char *sb_config_key_name(size_t i);
void sb_config_free(sb_config_t *cfg);

#endif
