/* The Facebook Messenger channel (Meta Graph webhooks, object "page"; reference §A2).
 *
 * Ingress: POST /v1/ingress/messenger signed `X-Hub-Signature-256: sha256=<hex HMAC-SHA256(app
 * secret, raw body)>` (the legacy sha1 header is ignored; several app secrets may be configured
 * for rotation); GET answers the hub.* subscription handshake. A body is entry[] x messaging[];
 * every event becomes one item (meta.c): text, quick replies and postbacks
 * (button_reply), attachments (media: type + CDN URL, never downloaded here; legacy location),
 * edits, delivery and read watermarks (status; fb-st:<psid>:<state>:<watermark>). Dedup keys
 * fb:<mid>.
 * Our own echoes (is_echo) are answered 200 and never published (loop guard); authentic but
 * unusable bodies are quarantined with 200, because Meta retries non-2xx and disables the
 * webhook after an hour of failures.
 *
 * Egress: POST <base>/me/messages with the page token as a bearer header (meta.c): text (cut
 * at 2000 characters), buttons as up to 13 quick replies (titles <= 20 characters) or a numbered
 * list, and the HUMAN_AGENT tag for agent replies between 24 hours and 7 days after the customer's
 * last message (egress's window decision). Graph answers are read by
 * sb_chan_graph_parse_response. */
#include "channel.h"
#include "meta.h"

static const sb_meta_messaging_t fb_messaging = {
    .object = "page",
    .prefix = "fb",
    .messaging_type = "RESPONSE",
    .max_text = 2000,
    .max_text_in_bytes = false,
    .metadata = true,
};

static bool fb_enabled(const sb_config_t *cfg)
{
    return cfg->messenger.enabled;
}

static size_t fb_max_body(const sb_config_t *cfg)
{
    return (size_t)cfg->messenger.max_body_bytes;
}

static const char *fb_api_base(const sb_config_t *cfg)
{
    return cfg->messenger.api_base ? cfg->messenger.api_base : "";
}

static int64_t fb_rate_per_s(const sb_config_t *cfg)
{
    return cfg->messenger.rate_per_s;
}

static const char *const fb_required[] = {"channels.messenger.app_secret",
                                          "channels.messenger.verify_token", NULL};

static sb_result_t fb_create(sb_channel_t *ch, const sb_config_t *cfg, char *err, size_t errlen)
{
    const sb_config_meta_t *c = &cfg->messenger;
    return sb_meta_create(ch, c->app_secret, c->verify_token, c->access_token, &fb_messaging, err,
                          errlen);
}

const sb_channel_ops_t sb_channel_messenger = {
    .name = "messenger",
    .ingress_path = "/v1/ingress/messenger",
    .enabled = fb_enabled,
    .required_keys = fb_required,
    .max_body = fb_max_body,
    .api_base = fb_api_base,
    .create = fb_create,
    .destroy = sb_meta_destroy,
    .verify = sb_meta_verify,
    .handshake = sb_meta_handshake,
    .parse = sb_meta_parse,
    .render = sb_meta_render,
    .parse_response = sb_meta_parse_response,
    .window_policy = sb_meta_window_policy,
    .rate_per_s = fb_rate_per_s,
};
