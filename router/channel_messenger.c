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

#include <stdlib.h>
#include <string.h>

#include "sb/seal.h"

typedef struct fb_priv {
    sb_meta_auth_t auth;
    char *access_token; /* page access token; only ever in a header */
} fb_priv_t;

static const sb_meta_messaging_t fb_messaging = {.object = "page", .prefix = "fb"};
static const sb_meta_send_spec_t fb_send = {
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

static void fb_destroy(sb_channel_t *ch)
{
    fb_priv_t *p = ch->priv;
    if (!p) return;
    sb_meta_auth_close(&p->auth);
    if (p->access_token) {
        sb_seal_wipe(p->access_token, strlen(p->access_token));
        free(p->access_token);
    }
    free(p);
    ch->priv = NULL;
}

static sb_result_t fb_create(sb_channel_t *ch, const sb_config_t *cfg, char *err, size_t errlen)
{
    fb_priv_t *p = sb_xcalloc(1, sizeof *p);
    sb_result_t rc =
        sb_meta_auth_init(&p->auth, "channels.messenger.app_secret", cfg->messenger.app_secret,
                          cfg->messenger.verify_token, err, errlen);
    if (rc != SB_OK) {
        free(p);
        return rc;
    }
    p->access_token = sb_xstrdup(cfg->messenger.access_token ? cfg->messenger.access_token : "");
    ch->priv = p;
    return SB_OK;
}

static sb_result_t fb_verify(const sb_channel_t *ch, const sb_http_request_t *req, int64_t now_s,
                             const char **reason)
{
    (void)now_s; /* Meta signs no timestamp: replay protection is TLS + dedup on the mid */
    const fb_priv_t *p = ch->priv;
    return sb_meta_verify(&p->auth, req, reason);
}

static int fb_handshake(const sb_channel_t *ch, const sb_http_request_t *req, char *body,
                        size_t bodylen)
{
    const fb_priv_t *p = ch->priv;
    return sb_meta_handshake(&p->auth, req, body, bodylen);
}

static sb_result_t fb_parse(const sb_channel_t *ch, const uint8_t *body, size_t len,
                            sb_chan_batch_t *out)
{
    (void)ch;
    return sb_meta_parse_messaging(&fb_messaging, body, len, out);
}

static sb_result_t fb_render(const sb_channel_t *ch, const sb_chan_send_t *send,
                             sb_chan_http_t *req)
{
    const fb_priv_t *p = ch->priv;
    return sb_meta_render_send(&fb_send, p->access_token, send, req);
}

static void fb_parse_response(const sb_channel_t *ch, long status, const char *body, size_t len,
                              sb_chan_response_t *res)
{
    (void)ch;
    (void)status;
    sb_chan_graph_parse_response(body, len, res);
}

static void fb_window_policy(const sb_config_t *cfg, sb_chan_window_policy_t *out)
{
    (void)cfg;
    /* Standard messaging: 24 h after the customer's last message; a human agent may answer
     * with the HUMAN_AGENT tag up to 7 days after it. No templates. */
    out->free_ms = SB_CHAN_WINDOW_24H_MS;
    out->agent_tag_ms = SB_CHAN_WINDOW_7D_MS;
}

const sb_channel_ops_t sb_channel_messenger = {
    .name = "messenger",
    .ingress_path = "/v1/ingress/messenger",
    .enabled = fb_enabled,
    .required_keys = fb_required,
    .max_body = fb_max_body,
    .api_base = fb_api_base,
    .create = fb_create,
    .destroy = fb_destroy,
    .verify = fb_verify,
    .handshake = fb_handshake,
    .parse = fb_parse,
    .render = fb_render,
    .parse_response = fb_parse_response,
    .window_policy = fb_window_policy,
    .rate_per_s = fb_rate_per_s,
};
