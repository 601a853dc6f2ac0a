/* The WhatsApp Business Cloud API channel (Meta; reference §A1).
 *
 * Ingress: POST bodies signed `X-Hub-Signature-256: sha256=<hex HMAC-SHA256(app secret, raw
 * body)>` (hex accepted in either case; several app secrets may be configured for rotation).
 * A body is entry[] x changes[] x (messages[] | statuses[]); each message or status becomes one
 * item with dedup key `wa:<wamid>` or `wa-st:<wamid>:<status>`. Items that cannot be read make
 * the whole raw body go to quarantine (the readable ones are still published), because Meta
 * retries any non-2xx for up to 7 days. GET answers the hub.* subscription handshake.
 * The private state, signatures, the handshake and the reading of Graph answers are Meta's
 * shared code (meta.c).
 *
 * Egress: POST <base>/<phone_number_id>/messages with a bearer token: text, up to three reply
 * buttons (titles <= 20 characters) as an interactive message, more as a numbered text list,
 * or an approved template when the Outbound names one. */
#include "channel.h"
#include "meta.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WA_MAX_BUTTONS 3
#define WA_MAX_BUTTON_TITLE 20
#define WA_MAX_TEXT 4096

static bool wa_enabled(const sb_config_t *cfg)
{
    return cfg->whatsapp.enabled;
}

static size_t wa_max_body(const sb_config_t *cfg)
{
    return (size_t)cfg->whatsapp.max_body_bytes;
}

static const char *wa_api_base(const sb_config_t *cfg)
{
    return cfg->whatsapp.api_base ? cfg->whatsapp.api_base : "";
}

static const char *const wa_required[] = {"channels.whatsapp.app_secret",
                                          "channels.whatsapp.verify_token", NULL};

static sb_result_t wa_create(sb_channel_t *ch, const sb_config_t *cfg, char *err, size_t errlen)
{
    const sb_config_whatsapp_t *c = &cfg->whatsapp;
    return sb_meta_create(ch, c->app_secret, c->verify_token, c->access_token, NULL, err, errlen);
}

/* ---- parse ---- */

/* The timestamp of an item: a string (or number) of Unix seconds. */
static bool get_time(const cJSON *obj, int64_t *ms)
{
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(obj, "timestamp");
    int64_t s = 0;
    if (cJSON_IsString(t)) {
        if (sb_chan_parse_unix(t->valuestring, &s) != SB_OK) return false;
    } else if (cJSON_IsNumber(t) && t->valuedouble >= 0 && t->valuedouble < 1e12) {
        s = (int64_t)t->valuedouble;
    } else {
        return false;
    }
    *ms = s * 1000;
    return true;
}

/* The profile name of the sender from value.contacts[]. */
static char *contact_name(const cJSON *contacts, const char *wa_id, const char *user_id)
{
    const cJSON *c;
    int n = cJSON_GetArraySize(contacts);
    cJSON_ArrayForEach(c, contacts)
    {
        const char *w = sb_chan_json_str(c, "wa_id", SB_CHAN_MAX_ID);
        const char *u = sb_chan_json_str(c, "user_id", SB_CHAN_MAX_ID);
        bool match = (wa_id && w && strcmp(w, wa_id) == 0) ||
                     (user_id && u && strcmp(u, user_id) == 0) || n == 1;
        if (match) return sb_chan_json_dup(sb_chan_json_obj(c, "profile"), "name", 256);
    }
    return NULL;
}

static void set_sender(sb_chan_item_t *it, const char *wa_id, const char *user_id)
{
    /* Key users on the phone (wa_id) when present, else on the business-scoped user id. */
    if (wa_id)
        it->sender_id = sb_xstrdup(wa_id);
    else if (user_id)
        it->sender_id = sb_xasprintf("bsuid:%s", user_id);
    if (wa_id) it->phone = sb_xasprintf("+%s", wa_id);
}

static bool is_media_type(const char *t)
{
    static const char *const media[] = {"image", "video", "audio", "document", "sticker", NULL};
    for (size_t i = 0; media[i]; i++)
        if (strcmp(t, media[i]) == 0) return true;
    return false;
}

static bool parse_message(const cJSON *m, const cJSON *contacts, const char *account,
                          sb_chan_item_t *it)
{
    const char *id = sb_chan_json_str(m, "id", SB_CHAN_MAX_ID);
    const char *from = sb_chan_json_str(m, "from", SB_CHAN_MAX_ID);
    const char *from_user = sb_chan_json_str(m, "from_user_id", SB_CHAN_MAX_ID);
    const char *type = sb_chan_json_str(m, "type", 64);
    if (!id || (!from && !from_user) || !type || !account) return false;
    if (!get_time(m, &it->occurred_at_ms)) return false;
    it->provider_message_id = sb_xstrdup(id);
    it->dedup_key = sb_xasprintf("wa:%s", id);
    it->account_id = sb_xstrdup(account);
    set_sender(it, from, from_user);
    it->sender_name = contact_name(contacts, from, from_user);
    it->in_reply_to = sb_chan_json_dup(sb_chan_json_obj(m, "context"), "id", SB_CHAN_MAX_ID);

    if (strcmp(type, "text") == 0) {
        it->kind = SB_CHAN_TEXT;
        it->text = sb_chan_json_dup(sb_chan_json_obj(m, "text"), "body", SB_CHAN_MAX_TEXT);
        return it->text != NULL;
    }
    if (strcmp(type, "interactive") == 0) {
        const cJSON *ia = sb_chan_json_obj(m, "interactive");
        const char *itype = sb_chan_json_str(ia, "type", 64);
        if (!itype) return false;
        const cJSON *reply = NULL;
        if (strcmp(itype, "button_reply") == 0 || strcmp(itype, "list_reply") == 0)
            reply = sb_chan_json_obj(ia, itype);
        if (!reply) {
            it->kind = SB_CHAN_UNSUPPORTED; /* flows and other interactive answers */
            return true;
        }
        it->kind = SB_CHAN_BUTTON_REPLY;
        it->button_payload = sb_chan_json_dup(reply, "id", 1024);
        it->button_title = sb_chan_json_dup(reply, "title", 256);
        return it->button_payload != NULL;
    }
    if (strcmp(type, "button") == 0) {
        const cJSON *b = sb_chan_json_obj(m, "button");
        it->kind = SB_CHAN_BUTTON_REPLY;
        it->button_payload = sb_chan_json_dup(b, "payload", 1024);
        it->button_title = sb_chan_json_dup(b, "text", 256);
        return it->button_payload != NULL;
    }
    if (is_media_type(type)) {
        const cJSON *md = sb_chan_json_obj(m, type);
        it->kind = SB_CHAN_MEDIA;
        it->has_media = true;
        it->media.type = sb_xstrdup(type);
        it->media.ref = sb_chan_json_dup(md, "id", SB_CHAN_MAX_ID);
        it->media.mime = sb_chan_json_dup(md, "mime_type", 128);
        it->media.sha256 = sb_chan_json_dup(md, "sha256", 128);
        it->media.caption = sb_chan_json_dup(md, "caption", SB_CHAN_MAX_TEXT);
        it->media.filename = sb_chan_json_dup(md, "filename", 256);
        return it->media.ref != NULL;
    }
    if (strcmp(type, "location") == 0) {
        const cJSON *loc = sb_chan_json_obj(m, "location");
        if (!sb_chan_json_location(loc, "latitude", "longitude", it)) return false;
        it->location.name = sb_chan_json_dup(loc, "name", 1024);
        it->location.address = sb_chan_json_dup(loc, "address", 1024);
        return true;
    }
    /* unsupported, reaction, contacts, order, system, ...: acknowledged and published so the
     * bot can tell the customer it cannot read them. */
    it->kind = SB_CHAN_UNSUPPORTED;
    return true;
}

static bool parse_status(const cJSON *s, const char *account, sb_chan_item_t *it)
{
    const char *id = sb_chan_json_str(s, "id", SB_CHAN_MAX_ID);
    const char *state = sb_chan_json_str(s, "status", 32);
    const char *rcpt = sb_chan_json_str(s, "recipient_id", SB_CHAN_MAX_ID);
    const char *rcpt_user = sb_chan_json_str(s, "recipient_user_id", SB_CHAN_MAX_ID);
    if (!id || !state || (!rcpt && !rcpt_user) || !account) return false;
    if (!get_time(s, &it->occurred_at_ms)) return false;
    it->kind = SB_CHAN_STATUS;
    it->dedup_key = sb_xasprintf("wa-st:%s:%s", id, state);
    it->account_id = sb_xstrdup(account);
    set_sender(it, rcpt, rcpt_user);
    it->has_status = true;
    it->status.state = sb_xstrdup(state);
    it->status.refs = sb_xcalloc(1, sizeof(char *));
    it->status.refs[0] = sb_xstrdup(id);
    it->status.nrefs = 1;
    const cJSON *errs = sb_chan_json_arr(s, "errors");
    const cJSON *e0 = cJSON_GetArrayItem(errs, 0);
    if (cJSON_IsObject(e0)) {
        const cJSON *code = cJSON_GetObjectItemCaseSensitive(e0, "code");
        if (cJSON_IsNumber(code)) it->status.error_code = (int64_t)code->valuedouble;
        it->status.error_title = sb_chan_json_dup(e0, "title", 256);
    }
    return true;
}

static void parse_list(sb_chan_batch_t *out, size_t *cap, const cJSON *arr, bool statuses,
                       const cJSON *contacts, const char *account)
{
    const cJSON *x;
    cJSON_ArrayForEach(x, arr)
    {
        sb_chan_item_t *it = sb_chan_batch_slot(out, cap);
        if (!it) {
            sb_chan_batch_quarantine(out, "too many items");
            return;
        }
        bool ok = statuses ? parse_status(x, account, it) : parse_message(x, contacts, account, it);
        if (ok) {
            out->nitems++;
        } else {
            sb_chan_item_free(it); /* the slot is reused by the next item */
            sb_chan_batch_quarantine(out, statuses ? "unreadable status" : "unreadable message");
        }
    }
}

static sb_result_t wa_parse(const sb_channel_t *ch, const uint8_t *body, size_t len,
                            sb_chan_batch_t *out)
{
    (void)ch;
    cJSON *root = sb_chan_json_parse(body, len);
    const char *object = sb_chan_json_str(root, "object", 64);
    const cJSON *entries = sb_chan_json_arr(root, "entry");
    if (!root) {
        sb_chan_batch_quarantine(out, "body is not JSON");
        goto done;
    }
    if (!object || strcmp(object, "whatsapp_business_account") != 0 || !entries) {
        sb_chan_batch_quarantine(out, "not a whatsapp_business_account notification");
        goto done;
    }
    size_t cap = 0;
    const cJSON *entry;
    cJSON_ArrayForEach(entry, entries)
    {
        const cJSON *changes = sb_chan_json_arr(entry, "changes");
        if (!changes) {
            sb_chan_batch_quarantine(out, "entry without changes");
            continue;
        }
        const cJSON *change;
        cJSON_ArrayForEach(change, changes)
        {
            const char *field = sb_chan_json_str(change, "field", 64);
            const cJSON *value = sb_chan_json_obj(change, "value");
            if (!field || !value) {
                sb_chan_batch_quarantine(out, "change without field/value");
                continue;
            }
            if (strcmp(field, "messages") != 0) continue; /* other subscriptions: not ours */
            const char *account =
                sb_chan_json_str(sb_chan_json_obj(value, "metadata"), "phone_number_id", 64);
            const cJSON *contacts = sb_chan_json_arr(value, "contacts");
            const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(value, "messages");
            const cJSON *sts = cJSON_GetObjectItemCaseSensitive(value, "statuses");
            if ((msgs && !cJSON_IsArray(msgs)) || (sts && !cJSON_IsArray(sts))) {
                sb_chan_batch_quarantine(out, "messages/statuses not an array");
                continue;
            }
            parse_list(out, &cap, msgs, false, contacts, account);
            parse_list(out, &cap, sts, true, contacts, account);
        }
    }
    if (!out->quarantine && out->nitems == 0) out->reason = "no messages or statuses";
done:
    cJSON_Delete(root);
    return SB_OK;
}

/* ---- render ---- */

/* The account id goes into the URL path: letters, digits, '-', '_' only. */
static bool is_path_token(const char *s)
{
    size_t n = 0;
    for (; s[n]; n++) {
        char c = s[n];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              c == '-' || c == '_'))
            return false;
    }
    return n > 0 && n <= 64;
}

static sb_result_t wa_render(const sb_channel_t *ch, const sb_chan_send_t *send,
                             sb_chan_http_t *req)
{
    const sb_meta_channel_t *p = ch->priv;
    const sb_outbound_t *o = send->out;
    const sb_recipient_t *rcpt = send->rcpt;
    const char *api_base = send->api_base;
    if (!rcpt->address || !*rcpt->address || !rcpt->account_id || !*rcpt->account_id ||
        !is_path_token(rcpt->account_id))
        return SB_E_INVALID;
    const char *to = rcpt->address;
    if (strncmp(to, "bsuid:", 6) == 0) to += 6;
    const char *text = o->text ? o->text : "";

    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "messaging_product", "whatsapp");
    cJSON_AddStringToObject(root, "recipient_type", "individual");
    if (to != rcpt->address)
        cJSON_AddStringToObject(root, "recipient_user_id", to);
    else
        cJSON_AddStringToObject(root, "to", to);
    if (rcpt->in_reply_to && *rcpt->in_reply_to) {
        cJSON *ctx = cJSON_AddObjectToObject(root, "context");
        cJSON_AddStringToObject(ctx, "message_id", rcpt->in_reply_to);
    }

    bool buttons_fit = o->n_buttons > 0 && o->n_buttons <= WA_MAX_BUTTONS;
    for (size_t i = 0; buttons_fit && i < o->n_buttons; i++) {
        const char *t = o->buttons[i]->title ? o->buttons[i]->title : "";
        const char *id = o->buttons[i]->id ? o->buttons[i]->id : "";
        if (!*t || !*id || sb_chan_utf8_len(t) > WA_MAX_BUTTON_TITLE || strlen(id) > 256)
            buttons_fit = false;
    }

    if (send->window == SB_CHAN_WINDOW_TEMPLATE && send->template_name && *send->template_name) {
        /* The 24-hour window is closed: only an approved template may go out (a free-form
         * message would fail with 131047). The configured re-engagement template has no
         * parameters: the reply text is not sent. */
        cJSON_AddStringToObject(root, "type", "template");
        cJSON *tpl = cJSON_AddObjectToObject(root, "template");
        cJSON_AddStringToObject(tpl, "name", send->template_name);
        cJSON *lang = cJSON_AddObjectToObject(tpl, "language");
        cJSON_AddStringToObject(
            lang, "code",
            send->template_language && *send->template_language ? send->template_language : "en");
    } else if (o->template_name && *o->template_name) {
        cJSON_AddStringToObject(root, "type", "template");
        cJSON *tpl = cJSON_AddObjectToObject(root, "template");
        cJSON_AddStringToObject(tpl, "name", o->template_name);
        cJSON *lang = cJSON_AddObjectToObject(tpl, "language");
        cJSON_AddStringToObject(lang, "code", o->locale && *o->locale ? o->locale : "en");
    } else if (buttons_fit) {
        cJSON_AddStringToObject(root, "type", "interactive");
        cJSON *ia = cJSON_AddObjectToObject(root, "interactive");
        cJSON_AddStringToObject(ia, "type", "button");
        cJSON *b = cJSON_AddObjectToObject(ia, "body");
        cJSON_AddStringToObject(b, "text", *text ? text : "-");
        cJSON *action = cJSON_AddObjectToObject(ia, "action");
        cJSON *arr = cJSON_AddArrayToObject(action, "buttons");
        for (size_t i = 0; i < o->n_buttons; i++) {
            cJSON *btn = cJSON_CreateObject();
            cJSON_AddStringToObject(btn, "type", "reply");
            cJSON *reply = cJSON_AddObjectToObject(btn, "reply");
            cJSON_AddStringToObject(reply, "id", o->buttons[i]->id);
            cJSON_AddStringToObject(reply, "title", o->buttons[i]->title);
            cJSON_AddItemToArray(arr, btn);
        }
    } else {
        /* Plain text; buttons that do not fit WhatsApp's limits become a numbered list. */
        char *list = sb_chan_button_list(text, o);
        cJSON_AddStringToObject(root, "type", "text");
        cJSON *tx = cJSON_AddObjectToObject(root, "text");
        cJSON_AddStringToObject(tx, "body", list);
        cJSON_AddBoolToObject(tx, "preview_url", false);
        free(list);
    }
    return sb_chan_http_post_json(root, sb_xasprintf("%s/%s/messages", api_base, rcpt->account_id),
                                  "application/json", p->access_token, req);
}

/* 24 h customer-service window; outside it the configured template (if any). */
static void wa_window_policy(const sb_config_t *cfg, sb_chan_window_policy_t *out)
{
    out->free_ms = SB_CHAN_WINDOW_24H_MS;
    out->agent_tag_ms = 0;
    out->template_name = cfg->whatsapp.window_template;
    out->template_language = cfg->whatsapp.template_language;
}

static int64_t wa_rate_per_s(const sb_config_t *cfg)
{
    return cfg->whatsapp.rate_per_s;
}

const sb_channel_ops_t sb_channel_whatsapp = {
    .name = "whatsapp",
    .ingress_path = "/v1/ingress/whatsapp",
    .enabled = wa_enabled,
    .required_keys = wa_required,
    .max_body = wa_max_body,
    .api_base = wa_api_base,
    .create = wa_create,
    .destroy = sb_meta_destroy,
    .verify = sb_meta_verify,
    .handshake = sb_meta_handshake,
    .parse = wa_parse,
    .render = wa_render,
    .parse_response = sb_meta_parse_response,
    .window_policy = wa_window_policy,
    .rate_per_s = wa_rate_per_s,
};
