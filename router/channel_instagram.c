/* The Instagram messaging channel (Meta Graph webhooks, object "instagram"; reference §A3).
 *
 * Ingress: POST /v1/ingress/instagram signed `X-Hub-Signature-256: sha256=<hex HMAC-SHA256(app
 * secret, raw body)>` (the legacy sha1 header is ignored; several app secrets may be configured
 * for rotation); GET answers the hub.* subscription handshake. A body is entry[] x messaging[];
 * every event becomes one item (meta.c): text, quick replies and postbacks
 * (button_reply), attachments (media: type + CDN URL, never downloaded here), deletions (edit),
 * per-message reads (status; ig-st:<mid>:read). Dedup keys ig:<mid>. Instagram has no
 * delivery receipts.
 * Our own echoes (is_echo) are answered 200 and never published (loop guard); authentic but
 * unusable bodies are quarantined with 200, because Meta retries non-2xx and disables the
 * webhook after an hour of failures.
 *
 * Egress: POST <base>/me/messages with the page token as a bearer header (meta.c): text (cut
 * at 1000 bytes), buttons as up to 13 quick replies (titles <= 20 characters) or a numbered list,
 * and the HUMAN_AGENT tag for agent replies between 24 hours and 7 days after the customer's
 * last message (egress's window decision). Graph answers are read by
 * sb_chan_graph_parse_response. */
#include "channel.h"
#include "meta.h"

static const sb_meta_messaging_t ig_messaging = {
    .object = "instagram",
    .prefix = "ig",
    .messaging_type = NULL,
    .max_text = 1000,
    .max_text_in_bytes = true,
    .metadata = false,
};

static bool ig_enabled(const sb_config_t *cfg)
{
    return cfg->instagram.enabled;
}

static size_t ig_max_body(const sb_config_t *cfg)
{
    return (size_t)cfg->instagram.max_body_bytes;
}

static const char *ig_api_base(const sb_config_t *cfg)
{
    return cfg->instagram.api_base ? cfg->instagram.api_base : "";
}

static int64_t ig_rate_per_s(const sb_config_t *cfg)
{
    return cfg->instagram.rate_per_s;
}

static const char *const ig_required[] = {"channels.instagram.app_secret",
                                          "channels.instagram.verify_token", NULL};

static sb_result_t ig_create(sb_channel_t *ch, const sb_config_t *cfg, char *err, size_t errlen)
{
    const sb_config_meta_t *c = &cfg->instagram;
    return sb_meta_create(ch, c->app_secret, c->verify_token, c->access_token, &ig_messaging, err,
                          errlen);
}

const sb_channel_ops_t sb_channel_instagram = {
    .name = "instagram",
    .ingress_path = "/v1/ingress/instagram",
    .enabled = ig_enabled,
    .required_keys = ig_required,
    .max_body = ig_max_body,
    .api_base = ig_api_base,
    .create = ig_create,
    .destroy = sb_meta_destroy,
    .verify = sb_meta_verify,
    .handshake = sb_meta_handshake,
    .parse = sb_meta_parse,
    .render = sb_meta_render,
    .parse_response = sb_meta_parse_response,
    .window_policy = sb_meta_window_policy,
    .rate_per_s = ig_rate_per_s,
};
