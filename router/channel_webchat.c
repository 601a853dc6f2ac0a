/* The web-chat widget channel, our own contract `webchat.v1` (reference §A7).
 *
 * Ingress: the widget backend POSTs events signed with Standard Webhooks: `webhook-id`,
 * `webhook-timestamp` (Unix s, within channels.webchat.max_skew_s of now) and
 * `webhook-signature: v1,<base64 HMAC-SHA256(key, id "." timestamp "." raw body)>`, where key is
 * the base64 after the secret's `whsec_` prefix; several space-separated signatures may be
 * sent and several secrets configured (rotation). Events: session.started (consent snapshot),
 * message.created (text, postback, attachment), receipt.read. We are our own client, so bad
 * input gets a 4xx (400 invalid JSON, 422 bad event) instead of quarantine; a verified body
 * that is not a webchat.v1 event at all (no "schema") is acknowledged with nothing published.
 *
 * Egress: POST <base>/messages with a message.created event authored by bot or agent, signed
 * the same way with the same secret. Replies to the browser widget's own sessions (account
 * "browser", see webchat_browser.h) are delivered live instead by the deliver op
 * (webchat_live.c). */
#include "channel_webchat.h"

#include "channel.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sb/seal.h"
#include "webchat_live.h"

#define WC_MAX_SIG_HEADER 2048
#define WC_MAX_SIGS 8

typedef struct wc_priv {
    uint8_t keys[SB_CHAN_MAX_SECRETS][SB_WEBCHAT_MAX_KEY];
    size_t keylens[SB_CHAN_MAX_SECRETS];
    size_t nkeys;
    int64_t max_skew_s;
} wc_priv_t;

static bool wc_enabled(const sb_config_t *cfg)
{
    return cfg->webchat.enabled;
}

static size_t wc_max_body(const sb_config_t *cfg)
{
    return (size_t)cfg->webchat.max_body_bytes;
}

static const char *wc_api_base(const sb_config_t *cfg)
{
    return cfg->webchat.callback_url ? cfg->webchat.callback_url : "";
}

static const char *const wc_required[] = {"channels.webchat.signing_secret", NULL};

sb_result_t sb_webchat_decode_secret(const char *s, uint8_t *key, size_t *keylen)
{
    const char *b64 = s;
    if (strncmp(s, "whsec_", 6) == 0) b64 += 6;
    if (sb_seal_base64_decode(key, SB_WEBCHAT_MAX_KEY, keylen, b64, strlen(b64)) != SB_OK ||
        *keylen == 0)
        return SB_E_CONFIG;
    return SB_OK;
}

cJSON *sb_webchat_message_object(const sb_outbound_t *o, int64_t fallback_ms)
{
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "schema", "webchat.v1");
    cJSON_AddStringToObject(root, "type", "message.created");
    cJSON_AddStringToObject(root, "id", o->message_id);
    char at[32];
    sb_chan_format_rfc3339(o->created_at_ms > 0 ? o->created_at_ms : fallback_ms, at, sizeof at);
    cJSON_AddStringToObject(root, "occurred_at", at);
    const char *author = "bot";
    if (o->author == SWITCHBOARD__V1__AUTHOR__AUTHOR_AGENT)
        author = "agent";
    else if (o->author == SWITCHBOARD__V1__AUTHOR__AUTHOR_SYSTEM)
        author = "system";
    cJSON_AddStringToObject(root, "author", author);
    cJSON *msg = cJSON_AddObjectToObject(root, "message");
    cJSON_AddStringToObject(msg, "kind", "text");
    cJSON_AddStringToObject(msg, "text", o->text ? o->text : "");
    if (o->n_buttons > 0) {
        cJSON *buttons = cJSON_AddArrayToObject(msg, "buttons");
        for (size_t i = 0; i < o->n_buttons; i++) {
            cJSON *b = cJSON_CreateObject();
            cJSON_AddStringToObject(b, "id", o->buttons[i]->id ? o->buttons[i]->id : "");
            cJSON_AddStringToObject(b, "title", o->buttons[i]->title ? o->buttons[i]->title : "");
            cJSON_AddItemToArray(buttons, b);
        }
    }
    if (o->in_reply_to && *o->in_reply_to)
        cJSON_AddStringToObject(msg, "in_reply_to", o->in_reply_to);
    if (o->locale && *o->locale) cJSON_AddStringToObject(msg, "locale", o->locale);
    return root;
}

static sb_result_t wc_create(sb_channel_t *ch, const sb_config_t *cfg, char *err, size_t errlen)
{
    wc_priv_t *p = sb_xcalloc(1, sizeof *p);
    p->max_skew_s = cfg->webchat.max_skew_s;
    char *store = NULL;
    const char *tok[SB_CHAN_MAX_SECRETS];
    size_t n = sb_chan_split_secrets(cfg->webchat.signing_secret, &store, tok, SB_CHAN_MAX_SECRETS);
    sb_result_t rc = SB_OK;
    for (size_t i = 0; i < n; i++) {
        if (sb_webchat_decode_secret(tok[i], p->keys[i], &p->keylens[i]) != SB_OK) {
            snprintf(err, errlen,
                     "channels.webchat.signing_secret: expected whsec_<base64> (secret %zu)",
                     i + 1);
            rc = SB_E_CONFIG;
            break;
        }
    }
    p->nkeys = n;
    sb_seal_wipe(store, strlen(store));
    free(store);
    if (rc == SB_OK && n == 0) {
        snprintf(err, errlen, "channels.webchat.signing_secret: not set");
        rc = SB_E_CONFIG;
    }
    if (rc != SB_OK) {
        sb_seal_wipe(p, sizeof *p);
        free(p);
        return rc;
    }
    ch->priv = p;
    return SB_OK;
}

static void wc_destroy(sb_channel_t *ch)
{
    if (ch->priv) sb_seal_wipe(ch->priv, sizeof(wc_priv_t));
    free(ch->priv);
    ch->priv = NULL;
}

static void sign(uint8_t mac[32], const uint8_t *key, size_t keylen, const char *id, const char *ts,
                 const void *body, size_t len)
{
    sb_seal_part_t parts[5] = {
        {id, strlen(id)}, {".", 1}, {ts, strlen(ts)}, {".", 1}, {body, len},
    };
    sb_seal_hmac_sha256(mac, key, keylen, parts, 5);
}

static sb_result_t wc_verify(const sb_channel_t *ch, const sb_http_request_t *req, int64_t now_s,
                             const char **reason)
{
    const wc_priv_t *p = ch->priv;
    const char *id = sb_http_header(req, "webhook-id");
    const char *ts = sb_http_header(req, "webhook-timestamp");
    const char *sigs = sb_http_header(req, "webhook-signature");
    if (!id || !ts || !sigs || !*id || !*sigs) {
        *reason = "missing_signature";
        return SB_E_AUTH;
    }
    int64_t t = 0;
    if (strlen(id) > SB_CHAN_MAX_ID || strlen(sigs) > WC_MAX_SIG_HEADER ||
        sb_chan_parse_unix(ts, &t) != SB_OK) {
        *reason = "malformed_signature";
        return SB_E_AUTH;
    }
    /* Replay window first: a stale delivery is refused whatever its MAC. */
    if (t < now_s - p->max_skew_s || t > now_s + p->max_skew_s) {
        *reason = "stale_timestamp";
        return SB_E_AUTH;
    }
    uint8_t macs[SB_CHAN_MAX_SECRETS][32];
    for (size_t k = 0; k < p->nkeys; k++)
        sign(macs[k], p->keys[k], p->keylens[k], id, ts, req->body, req->body_len);

    bool ok = false;
    const char *s = sigs;
    for (int nsig = 0; *s && nsig < WC_MAX_SIGS; nsig++) {
        while (*s == ' ')
            s++;
        const char *e = s;
        while (*e && *e != ' ')
            e++;
        size_t len = (size_t)(e - s);
        if (len > 3 && strncmp(s, "v1,", 3) == 0) {
            uint8_t got[64];
            size_t glen = 0;
            if (sb_seal_base64_decode(got, sizeof got, &glen, s + 3, len - 3) == SB_OK &&
                glen == 32) {
                /* Compare against every key without an early exit. */
                for (size_t k = 0; k < p->nkeys; k++)
                    ok |= sb_seal_equal(got, macs[k], 32);
            }
        }
        s = e;
    }
    sb_seal_wipe(macs, sizeof macs);
    if (!ok) {
        *reason = "bad_signature";
        return SB_E_AUTH;
    }
    return SB_OK;
}

/* ---- parse ---- */

static void reject(sb_chan_batch_t *out, int status, const char *reason)
{
    sb_chan_batch_free(out);
    out->reject_status = status;
    out->reason = reason;
}

static bool parse_session(const cJSON *ev, sb_chan_item_t *it)
{
    const cJSON *sess = sb_chan_json_obj(ev, "session");
    it->kind = SB_CHAN_SESSION;
    it->sender_id = sb_chan_json_dup(sess, "visitor_id", SB_CHAN_MAX_ID);
    it->session_id = sb_chan_json_dup(sess, "id", SB_CHAN_MAX_ID);
    if (!it->session_id) it->session_id = sb_chan_json_dup(ev, "session_id", SB_CHAN_MAX_ID);
    it->locale = sb_chan_json_dup(sess, "locale", 64);
    if (!it->sender_id) return false;
    const cJSON *consent = sb_chan_json_obj(ev, "consent");
    if (consent) {
        it->has_consent = true;
        it->consent_notice_version = sb_chan_json_dup(consent, "notice_version", 128);
        it->ai_disclosure_shown =
            cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(consent, "ai_disclosure_shown"));
        const cJSON *purposes = sb_chan_json_obj(consent, "purposes");
        it->consent_support_chat =
            cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(purposes, "support_chat"));
    }
    return true;
}

static bool parse_message(const cJSON *ev, sb_chan_item_t *it)
{
    const cJSON *visitor = sb_chan_json_obj(ev, "visitor");
    it->sender_id = sb_chan_json_dup(visitor, "id", SB_CHAN_MAX_ID);
    it->sender_name = sb_chan_json_dup(visitor, "display_name", 256);
    it->email = sb_chan_json_dup(visitor, "email", 320);
    it->locale = sb_chan_json_dup(visitor, "locale", 64);
    it->provider_message_id = sb_chan_json_dup(ev, "id", SB_CHAN_MAX_ID);
    const cJSON *msg = sb_chan_json_obj(ev, "message");
    const char *kind = sb_chan_json_str(msg, "kind", 32);
    if (!it->sender_id || !kind) return false;
    if (strcmp(kind, "text") == 0) {
        it->kind = SB_CHAN_TEXT;
        it->text = sb_chan_json_dup(msg, "text", SB_CHAN_MAX_TEXT);
        return it->text != NULL;
    }
    if (strcmp(kind, "postback") == 0) {
        const cJSON *pb = sb_chan_json_obj(msg, "postback");
        it->kind = SB_CHAN_BUTTON_REPLY;
        it->button_payload = sb_chan_json_dup(pb, "payload", 1024);
        it->button_title = sb_chan_json_dup(pb, "title", 256);
        it->in_reply_to = sb_chan_json_dup(pb, "in_reply_to", SB_CHAN_MAX_ID);
        return it->button_payload != NULL;
    }
    if (strcmp(kind, "attachment") == 0) {
        const cJSON *att = sb_chan_json_obj(msg, "attachment");
        it->kind = SB_CHAN_MEDIA;
        it->has_media = true;
        it->media.mime = sb_chan_json_dup(att, "content_type", 128);
        it->media.ref = sb_chan_json_dup(att, "url", 2048);
        it->media.sha256 = sb_chan_json_dup(att, "sha256", 128);
        it->media.filename = sb_chan_json_dup(att, "filename", 256);
        it->media.caption = sb_chan_json_dup(msg, "text", SB_CHAN_MAX_TEXT);
        const cJSON *size = cJSON_GetObjectItemCaseSensitive(att, "size");
        if (cJSON_IsNumber(size) && size->valuedouble > 0 && size->valuedouble < 1e15)
            it->media.size = (uint64_t)size->valuedouble;
        const char *mime = it->media.mime ? it->media.mime : "";
        const char *type = "file";
        if (strncmp(mime, "image/", 6) == 0)
            type = "image";
        else if (strncmp(mime, "audio/", 6) == 0)
            type = "audio";
        else if (strncmp(mime, "video/", 6) == 0)
            type = "video";
        it->media.type = sb_xstrdup(type);
        return it->media.ref != NULL;
    }
    /* A kind this router does not know yet: published so that the bot can say so. */
    it->kind = SB_CHAN_UNSUPPORTED;
    return true;
}

static bool parse_receipt(const cJSON *ev, sb_chan_item_t *it)
{
    const cJSON *receipt = sb_chan_json_obj(ev, "receipt");
    const cJSON *ids = sb_chan_json_arr(receipt, "message_ids");
    int n = cJSON_GetArraySize(ids);
    if (n <= 0 || n > SB_CHAN_MAX_REFS) return false;
    it->kind = SB_CHAN_STATUS;
    it->has_status = true;
    it->status.state = sb_xstrdup("read");
    it->status.refs = sb_xcalloc((size_t)n, sizeof(char *));
    const cJSON *id;
    cJSON_ArrayForEach(id, ids)
    {
        if (!cJSON_IsString(id) || !id->valuestring[0] || strlen(id->valuestring) > SB_CHAN_MAX_ID)
            return false;
        it->status.refs[it->status.nrefs++] = sb_xstrdup(id->valuestring);
    }
    /* A receipt names the session, not always the visitor: the session keys it then. */
    const cJSON *visitor = sb_chan_json_obj(ev, "visitor");
    it->sender_id = sb_chan_json_dup(visitor, "id", SB_CHAN_MAX_ID);
    if (!it->sender_id && it->session_id)
        it->sender_id = sb_xasprintf("session:%s", it->session_id);
    return it->sender_id != NULL;
}

static sb_result_t wc_parse(const sb_channel_t *ch, const uint8_t *body, size_t len,
                            sb_chan_batch_t *out)
{
    (void)ch;
    cJSON *ev = sb_chan_json_parse(body, len);
    if (!ev || !cJSON_IsObject(ev)) {
        reject(out, 400, "invalid JSON");
        goto done;
    }
    const cJSON *schema = cJSON_GetObjectItemCaseSensitive(ev, "schema");
    if (!schema) {
        /* Authentic, but not an event of ours (e.g. the Standard Webhooks test vector). */
        out->reason = "not a webchat event";
        goto done;
    }
    if (!cJSON_IsString(schema) || strcmp(schema->valuestring, "webchat.v1") != 0) {
        reject(out, 422, "unknown schema");
        goto done;
    }
    const char *type = sb_chan_json_str(ev, "type", 64);
    const char *occurred = sb_chan_json_str(ev, "occurred_at", 64);
    const char *id = sb_chan_json_str(ev, "id", SB_CHAN_MAX_ID);
    if (!type || !occurred) {
        reject(out, 422, "missing type/occurred_at");
        goto done;
    }
    int64_t at_ms = 0;
    if (sb_chan_parse_rfc3339(occurred, &at_ms) != SB_OK) {
        reject(out, 422, "bad occurred_at");
        goto done;
    }
    if (!id) {
        reject(out, 422, "missing id");
        goto done;
    }
    out->items = sb_xcalloc(1, sizeof *out->items);
    out->nitems = 1;
    sb_chan_item_t *it = &out->items[0];
    it->occurred_at_ms = at_ms;
    it->dedup_key = sb_xasprintf("wc:%s", id);
    it->account_id = sb_xstrdup("webchat");
    it->session_id = sb_chan_json_dup(ev, "session_id", SB_CHAN_MAX_ID);
    bool ok;
    if (strcmp(type, "session.started") == 0)
        ok = parse_session(ev, it);
    else if (strcmp(type, "message.created") == 0)
        ok = parse_message(ev, it);
    else if (strcmp(type, "receipt.read") == 0)
        ok = parse_receipt(ev, it);
    else {
        reject(out, 422, "unknown type");
        goto done;
    }
    if (!ok) reject(out, 422, "missing or invalid field");
done:
    cJSON_Delete(ev);
    return SB_OK;
}

/* ---- render ---- */

static sb_result_t wc_render(const sb_channel_t *ch, const sb_chan_send_t *send,
                             sb_chan_http_t *req)
{
    const wc_priv_t *p = ch->priv;
    const sb_outbound_t *o = send->out;
    const sb_recipient_t *rcpt = send->rcpt;
    const char *api_base = send->api_base;
    int64_t now_s = send->now_s;
    if (!rcpt->address || !*rcpt->address || !o->message_id || !*o->message_id || p->nkeys == 0)
        return SB_E_INVALID;
    cJSON *root = sb_webchat_message_object(o, now_s * 1000);
    if (rcpt->session_id && *rcpt->session_id)
        cJSON_AddStringToObject(root, "session_id", rcpt->session_id);
    cJSON *visitor = cJSON_AddObjectToObject(root, "visitor");
    cJSON_AddStringToObject(visitor, "id", rcpt->address);
    sb_chan_http_t r;
    sb_result_t rc = sb_chan_http_post_json(root, sb_xasprintf("%s/messages", api_base),
                                            "application/json", NULL, &r);
    if (rc != SB_OK) return rc;
    char ts[24];
    snprintf(ts, sizeof ts, "%lld", (long long)now_s);
    uint8_t mac[32];
    sign(mac, p->keys[0], p->keylens[0], o->message_id, ts, r.body.data, r.body.len);
    char b64[64];
    sb_seal_base64_encode(b64, mac, sizeof mac);
    sb_seal_wipe(mac, sizeof mac);
    sb_chan_http_add_header(&r, "webhook-id: %s", o->message_id);
    sb_chan_http_add_header(&r, "webhook-timestamp: %s", ts);
    sb_chan_http_add_header(&r, "webhook-signature: v1,%s", b64);
    *req = r;
    return SB_OK;
}

static int64_t wc_rate_per_s(const sb_config_t *cfg)
{
    return cfg->webchat.rate_per_s;
}

const sb_channel_ops_t sb_channel_webchat = {
    .name = "webchat",
    .ingress_path = "/v1/ingress/webchat/events",
    .enabled = wc_enabled,
    .required_keys = wc_required,
    .max_body = wc_max_body,
    .api_base = wc_api_base,
    .create = wc_create,
    .destroy = wc_destroy,
    .verify = wc_verify,
    .handshake = NULL,
    .parse = wc_parse,
    .render = wc_render,
    .rate_per_s = wc_rate_per_s,
    /* Replies to browser sessions go live over SSE (webchat_live.c), not to the callback. */
    .deliver = sb_webchat_live_deliver,
};
