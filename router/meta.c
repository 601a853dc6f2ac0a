/* Meta's shared channel machinery (see meta.h): the private state and the ops of every Meta
 * channel (app-secret signatures, the hub.* handshake, Graph answers), and the Messenger
 * Platform `entry[].messaging[]` format, Send API and window of Messenger and Instagram
 * (reference §A2, §A3).
 *
 * Parsing: the body must be {"object": <messaging->object>, "entry": [...]}; each entry's id is our
 * Page / Instagram account (the item's account), each messaging[] element is one event whose
 * kind is the key present: message, message_edit, postback, delivery, read (others skipped).
 * Dedup keys: <p>:<mid> for messages and postbacks, <p>-st:<psid>:<state>:<watermark> for
 * watermark receipts, <p>-st:<mid>:read for Instagram's per-message reads, <p>-edit:<mid>:<n>
 * and <p>-del:<mid> for edits and deletions. All Meta times are milliseconds.
 *
 * Sending (Messenger and Instagram): the Send API at <base>/me/messages with the page token as
 * a bearer header (never in the URL, so that no URL of ours carries a secret). */
#include "meta.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sb/seal.h"

#define META_MAX_CHALLENGE 256
#define META_MAX_PAYLOAD 1024 /* quick-reply / postback payloads: Meta allows 1000 */
#define META_MAX_TITLE 256

sb_result_t sb_meta_create(sb_channel_t *ch, const char *app_secrets, const char *verify_token,
                           const char *access_token, const sb_meta_messaging_t *messaging,
                           char *err, size_t errlen)
{
    sb_meta_channel_t *p = sb_xcalloc(1, sizeof *p);
    if (sb_chan_secrets_init(&p->app_secrets, app_secrets) == 0) {
        snprintf(err, errlen, "channels.%s.app_secret: not set", ch->ops->name);
        free(p);
        return SB_E_CONFIG;
    }
    p->verify_token = sb_xstrdup(verify_token ? verify_token : "");
    p->access_token = sb_xstrdup(access_token ? access_token : "");
    p->messaging = messaging;
    ch->priv = p;
    return SB_OK;
}

void sb_meta_destroy(sb_channel_t *ch)
{
    sb_meta_channel_t *p = ch->priv;
    if (!p) return;
    sb_chan_secrets_close(&p->app_secrets);
    sb_chan_wipe_free(p->verify_token);
    sb_chan_wipe_free(p->access_token);
    free(p);
    ch->priv = NULL;
}

sb_result_t sb_meta_verify(const sb_channel_t *ch, const sb_http_request_t *req, int64_t now_s,
                           const char **reason)
{
    (void)now_s; /* Meta signs no timestamp: replay protection is TLS + dedup on the ids */
    const sb_meta_channel_t *p = ch->priv;
    const char *h = sb_http_header(req, "X-Hub-Signature-256");
    if (!h || !*h) {
        *reason = "missing_signature";
        return SB_E_AUTH;
    }
    uint8_t got[32];
    if (!sb_chan_hex_mac(h, "sha256=", got)) {
        *reason = "malformed_signature";
        return SB_E_AUTH;
    }
    sb_seal_part_t part = {req->body, req->body_len};
    if (!sb_chan_secrets_hmac_sha256(&p->app_secrets, &part, 1, got)) {
        *reason = "bad_signature";
        return SB_E_AUTH;
    }
    return SB_OK;
}

int sb_meta_handshake(const sb_channel_t *ch, const sb_http_request_t *req, char *body,
                      size_t bodylen)
{
    const sb_meta_channel_t *p = ch->priv;
    char mode[32], token[256], challenge[META_MAX_CHALLENGE + 1];
    body[0] = '\0';
    if (!sb_http_query_param(req, "hub.mode", mode, sizeof mode) ||
        !sb_http_query_param(req, "hub.verify_token", token, sizeof token) ||
        !sb_http_query_param(req, "hub.challenge", challenge, sizeof challenge))
        return 403;
    bool match =
        sb_chan_secret_equal(token, strlen(token), p->verify_token, strlen(p->verify_token));
    sb_seal_wipe(token, sizeof token);
    if (strcmp(mode, "subscribe") != 0 || !match || !*p->verify_token || !challenge[0] ||
        strlen(challenge) >= bodylen)
        return 403;
    snprintf(body, bodylen, "%s", challenge);
    return 200;
}

void sb_meta_parse_response(const sb_channel_t *ch, long status, const char *body, size_t len,
                            sb_chan_response_t *res)
{
    (void)ch;
    (void)status;
    sb_chan_graph_parse_response(body, len, res);
}

void sb_meta_window_policy(const sb_config_t *cfg, sb_chan_window_policy_t *out)
{
    (void)cfg;
    out->free_ms = SB_CHAN_WINDOW_24H_MS;
    out->agent_tag_ms = SB_CHAN_WINDOW_7D_MS;
}

/* ---- parse ---- */

/* A non-negative integer JSON number (Meta's ms times and watermarks); false otherwise. */
static bool get_ms(const cJSON *obj, const char *key, int64_t *out)
{
    return sb_chan_json_int(obj, key, 0, 1000000000000000LL, out);
}

/* What one messaging[] event became. */
enum ev_result { EV_ITEM, EV_IGNORED, EV_SKIPPED, EV_BAD };

typedef struct ev_ctx {
    const sb_meta_messaging_t *spec;
    const char *account; /* entry.id (or recipient.id) */
    const char *sender;  /* sender.id */
    bool has_ts;
    int64_t ts_ms;
    const char *reason; /* why EV_BAD */
} ev_ctx_t;

static void base_item(const ev_ctx_t *c, sb_chan_item_t *it)
{
    it->sender_id = sb_xstrdup(c->sender);
    it->account_id = c->account ? sb_xstrdup(c->account) : NULL;
    it->occurred_at_ms = c->has_ts ? c->ts_ms : 0;
}

static bool is_media_type(const char *t)
{
    static const char *const media[] = {"image", "audio", "video", "file", NULL};
    for (size_t i = 0; media[i]; i++)
        if (strcmp(t, media[i]) == 0) return true;
    return false;
}

static enum ev_result parse_attachment(ev_ctx_t *c, const cJSON *att, const char *text,
                                       sb_chan_item_t *it)
{
    const char *type = sb_chan_json_str(att, "type", 64);
    const cJSON *payload = sb_chan_json_obj(att, "payload");
    if (!type) {
        c->reason = "attachment without type";
        return EV_BAD;
    }
    if (strcmp(type, "location") == 0) {
        /* Legacy location attachments: payload.coordinates.{lat,long}. */
        const cJSON *co = sb_chan_json_obj(payload, "coordinates");
        if (!sb_chan_json_location(co, "lat", "long", it)) {
            c->reason = "unreadable location";
            return EV_BAD;
        }
        it->location.name = sb_chan_json_dup(att, "title", 1024);
        return EV_ITEM;
    }
    const char *url = sb_chan_json_str(payload, "url", 4096);
    if (!is_media_type(type) || !url) {
        /* fallback, template, share, story_mention, reels...: answered politely. */
        it->kind = SB_CHAN_UNSUPPORTED;
        return EV_ITEM;
    }
    /* The URL is an expiring CDN link: a reference only, fetched (if ever) on demand. */
    it->kind = SB_CHAN_MEDIA;
    it->has_media = true;
    it->media.type = sb_xstrdup(type);
    it->media.ref = sb_xstrdup(url);
    it->media.caption = text ? sb_xstrdup(text) : NULL;
    return EV_ITEM;
}

static enum ev_result parse_message(ev_ctx_t *c, const cJSON *m, sb_chan_item_t *it)
{
    const char *p = c->spec->prefix;
    /* Our own sends come back on message_echoes / messages: never route them (loop). */
    if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(m, "is_echo"))) return EV_IGNORED;
    const char *mid = sb_chan_json_str(m, "mid", SB_CHAN_MAX_ID);
    if (!mid) {
        c->reason = "message without mid";
        return EV_BAD;
    }
    if (!c->has_ts) {
        c->reason = "message without timestamp";
        return EV_BAD;
    }
    base_item(c, it);
    it->provider_message_id = sb_xstrdup(mid);
    if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(m, "is_deleted"))) {
        /* Instagram: the customer unsent a message. */
        it->kind = SB_CHAN_EDIT;
        it->dedup_key = sb_xasprintf("%s-del:%s", p, mid);
        return EV_ITEM;
    }
    it->dedup_key = sb_xasprintf("%s:%s", p, mid);
    it->in_reply_to = sb_chan_json_dup(sb_chan_json_obj(m, "reply_to"), "mid", SB_CHAN_MAX_ID);
    const cJSON *textv = cJSON_GetObjectItemCaseSensitive(m, "text");
    if (textv && (!cJSON_IsString(textv) || strlen(textv->valuestring) > SB_CHAN_MAX_TEXT)) {
        c->reason = "unreadable text";
        return EV_BAD;
    }
    const char *text = sb_chan_json_str(m, "text", SB_CHAN_MAX_TEXT);
    const cJSON *qr = sb_chan_json_obj(m, "quick_reply");
    if (qr) {
        it->kind = SB_CHAN_BUTTON_REPLY;
        it->button_payload = sb_chan_json_dup(qr, "payload", META_MAX_PAYLOAD);
        it->button_title = text ? sb_xstrndup(text, strnlen(text, META_MAX_TITLE)) : NULL;
        if (!it->button_payload) {
            c->reason = "quick reply without payload";
            return EV_BAD;
        }
        return EV_ITEM;
    }
    const cJSON *atts = cJSON_GetObjectItemCaseSensitive(m, "attachments");
    if (atts && !cJSON_IsArray(atts)) {
        c->reason = "attachments not an array";
        return EV_BAD;
    }
    const cJSON *att0 = cJSON_GetArrayItem(atts, 0);
    if (att0) return parse_attachment(c, att0, text, it);
    if (text) {
        it->kind = SB_CHAN_TEXT;
        it->text = sb_xstrdup(text);
        return EV_ITEM;
    }
    /* is_unsupported, or a message with nothing we can read. */
    it->kind = SB_CHAN_UNSUPPORTED;
    return EV_ITEM;
}

static enum ev_result parse_edit(ev_ctx_t *c, const cJSON *e, sb_chan_item_t *it)
{
    const char *mid = sb_chan_json_str(e, "mid", SB_CHAN_MAX_ID);
    int64_t n = 0;
    if (!mid || !get_ms(e, "num_edit", &n)) {
        c->reason = "message_edit without mid/num_edit";
        return EV_BAD;
    }
    base_item(c, it);
    it->kind = SB_CHAN_EDIT;
    it->provider_message_id = sb_xstrdup(mid);
    it->dedup_key = sb_xasprintf("%s-edit:%s:%lld", c->spec->prefix, mid, (long long)n);
    it->text = sb_chan_json_dup(e, "text", SB_CHAN_MAX_TEXT);
    return EV_ITEM;
}

static enum ev_result parse_postback(ev_ctx_t *c, const cJSON *pb, sb_chan_item_t *it)
{
    const char *payload = sb_chan_json_str(pb, "payload", META_MAX_PAYLOAD);
    const char *mid = sb_chan_json_str(pb, "mid", SB_CHAN_MAX_ID);
    if (!payload || (!mid && !c->has_ts)) {
        c->reason = "postback without payload";
        return EV_BAD;
    }
    base_item(c, it);
    it->kind = SB_CHAN_BUTTON_REPLY;
    it->button_payload = sb_xstrdup(payload);
    it->button_title = sb_chan_json_dup(pb, "title", META_MAX_TITLE);
    if (mid) {
        it->provider_message_id = sb_xstrdup(mid);
        it->dedup_key = sb_xasprintf("%s:%s", c->spec->prefix, mid);
    } else {
        /* Postbacks before Graph v11 carry no mid: the tap is identified by who and when. */
        it->dedup_key =
            sb_xasprintf("%s-pb:%s:%lld", c->spec->prefix, c->sender, (long long)c->ts_ms);
    }
    return EV_ITEM;
}

/* delivery{mids?, watermark} and read{watermark} (Messenger), read{mid} (Instagram). */
static enum ev_result parse_receipt(ev_ctx_t *c, const cJSON *r, const char *state,
                                    sb_chan_item_t *it)
{
    const char *p = c->spec->prefix;
    int64_t wm = 0;
    bool has_wm = get_ms(r, "watermark", &wm);
    const char *mid = sb_chan_json_str(r, "mid", SB_CHAN_MAX_ID);
    const cJSON *mids = cJSON_GetObjectItemCaseSensitive(r, "mids");
    if ((!has_wm && !mid) || (mids && !cJSON_IsArray(mids))) {
        c->reason = "receipt without watermark or mid";
        return EV_BAD;
    }
    base_item(c, it);
    it->kind = SB_CHAN_STATUS;
    it->has_status = true;
    it->status.state = sb_xstrdup(state);
    if (has_wm) {
        /* Everything we sent at or before the watermark: delivery events carry no timestamp,
         * so the watermark is the time. */
        it->dedup_key = sb_xasprintf("%s-st:%s:%s:%lld", p, c->sender, state, (long long)wm);
        if (!c->has_ts) it->occurred_at_ms = wm;
    } else {
        it->dedup_key = sb_xasprintf("%s-st:%s:%s", p, mid, state);
    }
    size_t n = mids ? (size_t)cJSON_GetArraySize(mids) : 0;
    if (n > SB_CHAN_MAX_REFS) n = SB_CHAN_MAX_REFS;
    if (!has_wm || n > 0) {
        it->status.refs = sb_xcalloc(n + 1, sizeof *it->status.refs);
        if (!has_wm) it->status.refs[it->status.nrefs++] = sb_xstrdup(mid);
        for (size_t i = 0; i < n; i++) {
            const cJSON *x = cJSON_GetArrayItem(mids, (int)i);
            if (!cJSON_IsString(x) || !x->valuestring[0] ||
                strlen(x->valuestring) > SB_CHAN_MAX_ID) {
                c->reason = "unreadable mids";
                return EV_BAD;
            }
            it->status.refs[it->status.nrefs++] = sb_xstrdup(x->valuestring);
        }
    }
    return EV_ITEM;
}

static enum ev_result parse_event(ev_ctx_t *c, const cJSON *ev, sb_chan_item_t *it)
{
    if (!cJSON_IsObject(ev)) {
        c->reason = "messaging[] element not an object";
        return EV_BAD;
    }
    c->sender = sb_chan_json_str(sb_chan_json_obj(ev, "sender"), "id", SB_CHAN_MAX_ID);
    const char *rcpt = sb_chan_json_str(sb_chan_json_obj(ev, "recipient"), "id", SB_CHAN_MAX_ID);
    if (!c->account) c->account = rcpt;
    c->has_ts = get_ms(ev, "timestamp", &c->ts_ms);
    const cJSON *msg = cJSON_GetObjectItemCaseSensitive(ev, "message");
    /* An echo's sender is our own Page: recognise it before asking for a customer. */
    if (cJSON_IsObject(msg) && cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(msg, "is_echo")))
        return EV_IGNORED;
    if (!c->sender) {
        c->reason = "messaging[] event without sender.id";
        return EV_BAD;
    }
    if (!c->account) {
        c->reason = "messaging[] event without our account id";
        return EV_BAD;
    }
    const cJSON *x;
    if (msg) {
        if (!cJSON_IsObject(msg)) {
            c->reason = "message not an object";
            return EV_BAD;
        }
        return parse_message(c, msg, it);
    }
    if ((x = sb_chan_json_obj(ev, "message_edit"))) return parse_edit(c, x, it);
    if ((x = sb_chan_json_obj(ev, "postback"))) return parse_postback(c, x, it);
    if ((x = sb_chan_json_obj(ev, "delivery"))) return parse_receipt(c, x, "delivered", it);
    if ((x = sb_chan_json_obj(ev, "read"))) return parse_receipt(c, x, "read", it);
    /* reaction, referral, optin, account_linking, handover, policy events: not routed. */
    return EV_SKIPPED;
}

sb_result_t sb_meta_parse(const sb_channel_t *ch, const uint8_t *body, size_t len,
                          sb_chan_batch_t *out)
{
    const sb_meta_messaging_t *spec = ((const sb_meta_channel_t *)ch->priv)->messaging;
    cJSON *root = sb_chan_json_parse(body, len);
    const char *object = sb_chan_json_str(root, "object", 64);
    const cJSON *entries = cJSON_GetObjectItemCaseSensitive(root, "entry");
    size_t cap = 0, skipped = 0;
    if (!root) {
        sb_chan_batch_quarantine(out, "body is not JSON");
        goto done;
    }
    if (!object || strcmp(object, spec->object) != 0) {
        sb_chan_batch_quarantine(out, "wrong object");
        goto done;
    }
    if (!cJSON_IsArray(entries)) {
        sb_chan_batch_quarantine(out, "entry must be an array");
        goto done;
    }
    const cJSON *entry;
    cJSON_ArrayForEach(entry, entries)
    {
        if (!cJSON_IsObject(entry)) {
            sb_chan_batch_quarantine(out, "entry element not an object");
            continue;
        }
        const cJSON *events = cJSON_GetObjectItemCaseSensitive(entry, "messaging");
        if (!events) continue; /* standby (another app owns the thread), changes: not ours */
        if (!cJSON_IsArray(events)) {
            sb_chan_batch_quarantine(out, "messaging must be an array");
            continue;
        }
        const char *account = sb_chan_json_str(entry, "id", SB_CHAN_MAX_ID);
        const cJSON *ev;
        cJSON_ArrayForEach(ev, events)
        {
            sb_chan_item_t *it = sb_chan_batch_slot(out, &cap);
            if (!it) {
                sb_chan_batch_quarantine(out, "too many items");
                goto done;
            }
            ev_ctx_t c = {.spec = spec, .account = account};
            switch (parse_event(&c, ev, it)) {
            case EV_ITEM:
                out->nitems++;
                continue;
            case EV_IGNORED:
                out->nignored++;
                break;
            case EV_SKIPPED:
                skipped++;
                break;
            case EV_BAD:
                sb_chan_batch_quarantine(out, c.reason);
                break;
            }
            sb_chan_item_free(it); /* the slot is reused by the next event */
        }
    }
    if (!out->quarantine && out->nitems == 0)
        out->reason = out->nignored ? "own echo (loop guard)"
                      : skipped     ? "no routable events"
                                    : "no messaging events";
done:
    cJSON_Delete(root);
    return SB_OK;
}

/* ---- render ---- */

static bool quick_replies_fit(const sb_outbound_t *o)
{
    if (o->n_buttons == 0 || o->n_buttons > SB_META_MAX_QUICK_REPLIES) return false;
    for (size_t i = 0; i < o->n_buttons; i++) {
        const char *t = o->buttons[i]->title ? o->buttons[i]->title : "";
        const char *id = o->buttons[i]->id ? o->buttons[i]->id : "";
        if (!*t || !*id || sb_chan_utf8_len(t) > SB_META_MAX_QR_TITLE ||
            strlen(id) > SB_META_MAX_QR_PAYLOAD)
            return false;
    }
    return true;
}

sb_result_t sb_meta_render(const sb_channel_t *ch, const sb_chan_send_t *send, sb_chan_http_t *req)
{
    const sb_meta_channel_t *p = ch->priv;
    const sb_meta_messaging_t *spec = p->messaging;
    const sb_outbound_t *o = send->out;
    const sb_recipient_t *rcpt = send->rcpt;
    const char *text = o->text ? o->text : "";
    if (!rcpt->address || !*rcpt->address || strlen(rcpt->address) > SB_CHAN_MAX_ID ||
        send->window == SB_CHAN_WINDOW_TEMPLATE || send->window == SB_CHAN_WINDOW_CLOSED ||
        (!*text && o->n_buttons == 0))
        return SB_E_INVALID;

    bool qr = quick_replies_fit(o);
    char *body_text = qr ? sb_xstrdup(*text ? text : "-") : sb_chan_button_list(text, o);
    char *cut = sb_chan_utf8_truncate(body_text, spec->max_text, spec->max_text_in_bytes);
    free(body_text);

    cJSON *root = cJSON_CreateObject();
    cJSON *r = cJSON_AddObjectToObject(root, "recipient");
    cJSON_AddStringToObject(r, "id", rcpt->address);
    if (send->window == SB_CHAN_WINDOW_HUMAN_AGENT) {
        /* An agent's late reply (24 h - 7 d after the customer's last message). */
        cJSON_AddStringToObject(root, "messaging_type", "MESSAGE_TAG");
        cJSON_AddStringToObject(root, "tag", "HUMAN_AGENT");
    } else if (spec->messaging_type) {
        cJSON_AddStringToObject(root, "messaging_type", spec->messaging_type);
    }
    cJSON *m = cJSON_AddObjectToObject(root, "message");
    cJSON_AddStringToObject(m, "text", cut);
    free(cut);
    if (qr) {
        cJSON *arr = cJSON_AddArrayToObject(m, "quick_replies");
        for (size_t i = 0; i < o->n_buttons; i++) {
            cJSON *b = cJSON_CreateObject();
            cJSON_AddStringToObject(b, "content_type", "text");
            cJSON_AddStringToObject(b, "title", o->buttons[i]->title);
            cJSON_AddStringToObject(b, "payload", o->buttons[i]->id);
            cJSON_AddItemToArray(arr, b);
        }
    }
    if (spec->metadata && o->message_id && *o->message_id && strlen(o->message_id) <= 1000)
        cJSON_AddStringToObject(m, "metadata", o->message_id);
    return sb_chan_http_post_json(root, sb_xasprintf("%s/me/messages", send->api_base),
                                  "application/json", p->access_token, req);
}
