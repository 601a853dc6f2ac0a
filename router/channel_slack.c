/* The Slack channel: Events API, interactivity and slash commands in, chat.postMessage out
 * (reference §A5).
 *
 * Routes: everything under the prefix route /v1/ingress/slack/: the Events API Request URL
 * (/v1/ingress/slack/events), the Interactivity Request URL and the slash commands' Request URL
 * (/v1/ingress/slack/commands, or the same events URL: the body tells them apart).
 *
 * Ingress: `X-Slack-Signature: v0=<hex HMAC-SHA256(signing secret, "v0:" ts ":" raw body)>`
 * with ts = X-Slack-Request-Timestamp, refused when |now - ts| > channels.slack.max_skew_s
 * (300 s) before any MAC; several space-separated signing secrets may be configured
 * (rotation). Bodies:
 *   - JSON `url_verification`: answered with the challenge as text/plain, nothing published;
 *   - JSON `event_callback`: a `message` (or `app_mention`) event from a person becomes text,
 *     a `file_share` one media item per file (the first with the text; file ids are the media
 *     refs, downloads need the bot token), `message_changed` an edit; messages with bot_id,
 *     subtype bot_message, or from our own bot user (authorizations[0].user_id) are our
 *     echoes and dropped (loop guard); `app_uninstalled` / `tokens_revoked` become system
 *     items; other events are acknowledged with nothing published. Dedup key `sl:<event_id>`
 *     (Slack keeps event_id across its retries, X-Slack-Retry-Num), later files
 *     `sl:<event_id>/<n>`. Message identity (provider_message_id) is `<channel>:<ts>`;
 *   - JSON `app_rate_limited`: a system item (the operational alert), dedup
 *     `sl-sys:app_rate_limited:<team>:<minute_rate_limited>`;
 *   - form `payload=<JSON>` of type `block_actions`: a button reply per the first action
 *     (payload = the button's value, title = its text), dedup `sl-act:<trigger_id>`, id
 *     `<channel>:<message_ts>:<action_id>`; other interactivity types are acknowledged only;
 *   - form slash command (`command=`): a command item (button_payload = "/cmd", text = the
 *     arguments), dedup `sl-cmd:<trigger_id>`.
 * The sender is the Slack user id, the account the workspace (team id) and the session the
 * Slack channel id (D..., C...), which is where replies go. Interactivity and commands are
 * answered with an empty 200 (Slack shows nothing; the reply comes by chat.postMessage).
 * Authentic but unreadable bodies are quarantined (Slack retries non-2xx three times).
 *
 * Egress: POST <base>/chat.postMessage with `Authorization: Bearer <bot token>` and JSON
 * {channel, text, blocks?}: the channel is the Recipient's session (else the user id, which
 * Slack turns into the app's DM); buttons become an actions block of up to 25 buttons
 * (action_id "sb_btn_<n>", value = the button id, text cut to 75 characters) under a
 * plain-text section, more than 25 a numbered list in the text. Slack answers errors with
 * HTTP 200 and "ok":false: parse_response reads `ok` and `error`. */
#include "channel.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "form.h"
#include "sb/seal.h"

#define SL_MAX_FORM_PARAMS 200 /* slash command and interactivity forms carry ~15 pairs */
#define SL_MAX_CHALLENGE 256   /* url_verification challenges are ~48 characters */
#define SL_MAX_FILES 10        /* files of one file_share message that become items */
#define SL_MAX_BUTTONS 25      /* elements of one actions block */
#define SL_MAX_BUTTON_TEXT 75  /* characters of a button's text */
#define SL_MAX_BUTTON_VALUE 2000
#define SL_MAX_SECTION 3000 /* characters of a section block's text */

typedef struct sl_priv {
    sb_chan_secrets_t secrets; /* signing secrets */
    char *bot_token;
    int64_t max_skew_s;
} sl_priv_t;

static bool sl_enabled(const sb_config_t *cfg)
{
    return cfg->slack.enabled;
}

static size_t sl_max_body(const sb_config_t *cfg)
{
    return (size_t)cfg->slack.max_body_bytes;
}

static const char *sl_api_base(const sb_config_t *cfg)
{
    return cfg->slack.api_base ? cfg->slack.api_base : "";
}

static int64_t sl_rate(const sb_config_t *cfg)
{
    return cfg->slack.rate_per_s;
}

static const char *const sl_required[] = {"channels.slack.signing_secret", NULL};

static void sl_destroy(sb_channel_t *ch)
{
    sl_priv_t *p = ch->priv;
    if (!p) return;
    sb_chan_secrets_close(&p->secrets);
    sb_chan_wipe_free(p->bot_token);
    free(p);
    ch->priv = NULL;
}

static sb_result_t sl_create(sb_channel_t *ch, const sb_config_t *cfg, char *err, size_t errlen)
{
    sl_priv_t *p = sb_xcalloc(1, sizeof *p);
    ch->priv = p;
    size_t nsecrets = sb_chan_secrets_init(&p->secrets, cfg->slack.signing_secret);
    p->bot_token = sb_xstrdup(cfg->slack.bot_token ? cfg->slack.bot_token : "");
    p->max_skew_s = cfg->slack.max_skew_s > 0 ? cfg->slack.max_skew_s : 300;
    if (nsecrets == 0) {
        snprintf(err, errlen, "channels.slack.signing_secret: not set");
        sl_destroy(ch);
        return SB_E_CONFIG;
    }
    return SB_OK;
}

/* ---- verify ---- */

static sb_result_t sl_verify(const sb_channel_t *ch, const sb_http_request_t *req, int64_t now_s,
                             const char **reason)
{
    const sl_priv_t *p = ch->priv;
    const char *ts = sb_http_header(req, "X-Slack-Request-Timestamp");
    const char *sig = sb_http_header(req, "X-Slack-Signature");
    if (!ts || !*ts || !sig || !*sig) {
        *reason = "missing_signature";
        return SB_E_AUTH;
    }
    int64_t t = 0;
    if (sb_chan_parse_unix(ts, &t) != SB_OK) {
        *reason = "malformed_timestamp";
        return SB_E_AUTH;
    }
    /* The window first: a replayed old request costs no MAC. */
    if (t > now_s + p->max_skew_s || t < now_s - p->max_skew_s) {
        *reason = "stale";
        return SB_E_AUTH;
    }
    uint8_t got[32];
    if (!sb_chan_hex_mac(sig, "v0=", got)) {
        *reason = "malformed_signature";
        return SB_E_AUTH;
    }
    sb_seal_part_t parts[4] = {{"v0:", 3}, {ts, strlen(ts)}, {":", 1}, {req->body, req->body_len}};
    if (!sb_chan_secrets_hmac_sha256(&p->secrets, parts, 4, got)) {
        *reason = "bad_signature";
        return SB_E_AUTH;
    }
    return SB_OK;
}

/* ---- parse ---- */

/* Slack ids (U..., D..., T..., F..., event ids): letters, digits, '.', '_', '-' (1..128). */
static bool is_id(const char *s)
{
    size_t n = 0;
    if (!s) return false;
    for (; s[n]; n++)
        if (!(isalnum((unsigned char)s[n]) || s[n] == '.' || s[n] == '_' || s[n] == '-'))
            return false;
    return n >= 1 && n <= 128;
}

static const char *id_of(const cJSON *obj, const char *key)
{
    const char *v = sb_chan_json_str(obj, key, 128);
    return is_id(v) ? v : NULL;
}

/* "1772442900.000100" (Unix seconds with a fraction) -> ms; false when not such a string. */
static bool ts_ms(const char *ts, int64_t *out)
{
    if (!ts) return false;
    const char *dot = strchr(ts, '.');
    size_t ilen = dot ? (size_t)(dot - ts) : strlen(ts);
    if (ilen == 0 || ilen > 12) return false;
    int64_t s = 0, ms = 0;
    for (size_t i = 0; i < ilen; i++) {
        if (!isdigit((unsigned char)ts[i])) return false;
        s = s * 10 + (ts[i] - '0');
    }
    if (dot) {
        size_t k = 0;
        for (const char *q = dot + 1; *q; q++, k++) {
            if (!isdigit((unsigned char)*q) || k >= 9) return false;
            if (k < 3) ms = ms * 10 + (*q - '0');
        }
        for (; k < 3; k++)
            ms *= 10;
    }
    *out = s * 1000 + ms;
    return true;
}

/* Slack escapes exactly &, < and > in message text; put them back. */
static char *unescape(const char *s)
{
    sb_buf_t b = {0};
    for (const char *p = s; *p;) {
        if (strncmp(p, "&amp;", 5) == 0) {
            sb_buf_append(&b, "&", 1), p += 5;
        } else if (strncmp(p, "&lt;", 4) == 0) {
            sb_buf_append(&b, "<", 1), p += 4;
        } else if (strncmp(p, "&gt;", 4) == 0) {
            sb_buf_append(&b, ">", 1), p += 4;
        } else {
            sb_buf_append(&b, p, 1), p++;
        }
    }
    sb_buf_append(&b, "", 1);
    return b.data;
}

static char *media_type(const char *mime)
{
    static const char *const types[] = {"image", "video", "audio", NULL};
    for (size_t i = 0; types[i]; i++) {
        size_t n = strlen(types[i]);
        if (mime && strncmp(mime, types[i], n) == 0 && mime[n] == '/') return sb_xstrdup(types[i]);
    }
    return sb_xstrdup("file");
}

/* The fields every item from one message event shares. */
static void common(sb_chan_item_t *it, const char *user, const char *team, const char *channel,
                   const char *ts)
{
    it->sender_id = sb_xstrdup(user);
    if (team) it->account_id = sb_xstrdup(team);
    if (channel) it->session_id = sb_xstrdup(channel);
    if (channel && ts) it->provider_message_id = sb_xasprintf("%s:%s", channel, ts);
    int64_t ms = 0;
    if (ts_ms(ts, &ms)) it->occurred_at_ms = ms;
}

/* True when ev was written by a bot, by this app, or by our own bot user. */
static bool is_echo(const cJSON *ev, const char *app_id, const char *bot_user)
{
    const char *subtype = sb_chan_json_str(ev, "subtype", 64);
    const char *user = sb_chan_json_str(ev, "user", 128);
    const char *ev_app = sb_chan_json_str(ev, "app_id", 128);
    if (sb_chan_json_str(ev, "bot_id", 128)) return true;
    if (subtype && strcmp(subtype, "bot_message") == 0) return true;
    if (bot_user && user && strcmp(user, bot_user) == 0) return true;
    if (app_id && ev_app && strcmp(ev_app, app_id) == 0) return true;
    return false;
}

static void parse_message(const cJSON *root, const cJSON *ev, const char *event_id,
                          sb_chan_batch_t *out, size_t *cap)
{
    const char *app_id = sb_chan_json_str(root, "api_app_id", 128);
    const char *bot_user = sb_chan_json_str(
        cJSON_GetArrayItem(sb_chan_json_arr(root, "authorizations"), 0), "user_id", 128);
    const char *team = id_of(ev, "team") ? id_of(ev, "team") : id_of(root, "team_id");
    const char *channel = id_of(ev, "channel");
    const char *subtype = sb_chan_json_str(ev, "subtype", 64);
    const cJSON *msg = ev; /* the message itself; for message_changed the new version */
    if (subtype && strcmp(subtype, "message_changed") == 0) msg = sb_chan_json_obj(ev, "message");
    if (!msg) {
        sb_chan_batch_quarantine(out, "message_changed without message");
        return;
    }
    if (is_echo(ev, app_id, bot_user) || (msg != ev && is_echo(msg, app_id, bot_user))) {
        out->nignored++;
        return;
    }
    if (subtype && strcmp(subtype, "file_share") != 0 && strcmp(subtype, "message_changed") != 0 &&
        strcmp(subtype, "thread_broadcast") != 0) {
        /* joins, topic changes, deletions...: nothing a customer said */
        out->reason = "message subtype not handled";
        return;
    }
    const char *user = id_of(msg, "user");
    const char *ts = sb_chan_json_str(msg, "ts", 64);
    const char *text = sb_chan_json_str(msg, "text", SB_CHAN_MAX_TEXT);
    int64_t ms = 0;
    if (!user || !channel || !ts_ms(ts, &ms)) {
        sb_chan_batch_quarantine(out, "message event without user, channel or ts");
        return;
    }
    const cJSON *files = sb_chan_json_arr(msg, "files");
    if (subtype && strcmp(subtype, "file_share") == 0 && cJSON_GetArraySize(files) > 0) {
        int n = cJSON_GetArraySize(files);
        for (int i = 0; i < n && i < SL_MAX_FILES; i++) {
            const cJSON *file = cJSON_GetArrayItem(files, i);
            const char *fid = id_of(file, "id");
            if (!fid) {
                sb_chan_batch_quarantine(out, "file without id");
                continue;
            }
            sb_chan_item_t *it = sb_chan_batch_slot(out, cap);
            if (!it) return;
            common(it, user, team, channel, ts);
            it->kind = SB_CHAN_MEDIA;
            it->dedup_key =
                i == 0 ? sb_xasprintf("sl:%s", event_id) : sb_xasprintf("sl:%s/%d", event_id, i);
            if (i == 0 && text) it->text = unescape(text);
            it->has_media = true;
            it->media.ref = sb_xstrdup(fid);
            const char *mime = sb_chan_json_str(file, "mimetype", 128);
            if (mime) it->media.mime = sb_xstrdup(mime);
            it->media.type = media_type(mime);
            it->media.filename = sb_chan_json_dup(file, "name", 256);
            const cJSON *size = cJSON_GetObjectItemCaseSensitive(file, "size");
            if (cJSON_IsNumber(size) && size->valuedouble >= 0 && size->valuedouble < 1e15)
                it->media.size = (uint64_t)size->valuedouble;
            out->nitems++;
        }
        return;
    }
    sb_chan_item_t *it = sb_chan_batch_slot(out, cap);
    if (!it) return;
    common(it, user, team, channel, ts);
    it->dedup_key = sb_xasprintf("sl:%s", event_id);
    if (msg != ev) {
        it->kind = SB_CHAN_EDIT;
        if (text) it->text = unescape(text);
    } else if (text) {
        it->kind = SB_CHAN_TEXT;
        it->text = unescape(text);
    } else {
        it->kind = SB_CHAN_UNSUPPORTED; /* e.g. blocks only, a huddle, a list */
    }
    const char *thread = sb_chan_json_str(msg, "thread_ts", 64);
    if (thread && strcmp(thread, ts) != 0) it->in_reply_to = sb_xasprintf("%s:%s", channel, thread);
    out->nitems++;
}

static void add_system(sb_chan_batch_t *out, size_t *cap, const char *what, const char *team,
                       const char *app, int64_t at_s, char *dedup)
{
    sb_chan_item_t *it = sb_chan_batch_slot(out, cap);
    if (!it) {
        free(dedup);
        return;
    }
    it->kind = SB_CHAN_SYSTEM;
    it->dedup_key = dedup;
    /* The workspace is the "sender" of an operational event, the app its account. */
    it->sender_id = sb_xstrdup(team);
    if (app) it->account_id = sb_xstrdup(app);
    it->button_payload = sb_xstrdup(what); /* the event's name, as for commands */
    it->occurred_at_ms = at_s * 1000;
    out->nitems++;
}

static void parse_event_callback(const cJSON *root, sb_chan_batch_t *out, size_t *cap)
{
    const char *event_id = id_of(root, "event_id");
    const cJSON *ev = sb_chan_json_obj(root, "event");
    const char *type = sb_chan_json_str(ev, "type", 64);
    if (!event_id || !type) {
        sb_chan_batch_quarantine(out, "event_callback without event_id or event.type");
        return;
    }
    if (strcmp(type, "message") == 0 || strcmp(type, "app_mention") == 0) {
        parse_message(root, ev, event_id, out, cap);
        return;
    }
    if (strcmp(type, "app_uninstalled") == 0 || strcmp(type, "tokens_revoked") == 0) {
        const char *team = id_of(root, "team_id");
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(root, "event_time");
        if (!team) {
            sb_chan_batch_quarantine(out, "system event without team_id");
            return;
        }
        add_system(out, cap, type, team, id_of(root, "api_app_id"),
                   cJSON_IsNumber(t) && t->valuedouble > 0 ? (int64_t)t->valuedouble : 0,
                   sb_xasprintf("sl:%s", event_id));
        return;
    }
    out->reason = "event type not handled";
}

static void set_reply(sb_chan_batch_t *out, const char *body, const char *type)
{
    out->reply_body = sb_xstrdup(body);
    out->reply_type = type;
}

static void parse_json(const cJSON *root, sb_chan_batch_t *out, size_t *cap)
{
    const char *type = sb_chan_json_str(root, "type", 64);
    if (!type) {
        sb_chan_batch_quarantine(out, "JSON without type");
        return;
    }
    if (strcmp(type, "url_verification") == 0) {
        const char *c = sb_chan_json_str(root, "challenge", SL_MAX_CHALLENGE);
        bool printable = c != NULL;
        for (const char *q = c; q && *q; q++)
            if (*q < 0x21 || *q > 0x7e) printable = false;
        if (!printable) {
            sb_chan_batch_quarantine(out, "url_verification without a usable challenge");
            return;
        }
        set_reply(out, c, "text/plain");
        out->reason = "url_verification";
        return;
    }
    if (strcmp(type, "event_callback") == 0) {
        parse_event_callback(root, out, cap);
        return;
    }
    if (strcmp(type, "app_rate_limited") == 0) {
        const char *team = id_of(root, "team_id");
        const cJSON *minute = cJSON_GetObjectItemCaseSensitive(root, "minute_rate_limited");
        if (!team || !cJSON_IsNumber(minute) || minute->valuedouble < 0 ||
            minute->valuedouble > 1e12) {
            sb_chan_batch_quarantine(out, "app_rate_limited without team_id/minute");
            return;
        }
        int64_t m = (int64_t)minute->valuedouble;
        add_system(out, cap, "app_rate_limited", team, id_of(root, "api_app_id"), m,
                   sb_xasprintf("sl-sys:app_rate_limited:%s:%lld", team, (long long)m));
        return;
    }
    out->reason = "envelope type not handled";
}

static void parse_block_actions(const cJSON *pl, sb_chan_batch_t *out, size_t *cap)
{
    const char *trigger = id_of(pl, "trigger_id");
    const char *user = id_of(sb_chan_json_obj(pl, "user"), "id");
    const char *team = id_of(sb_chan_json_obj(pl, "team"), "id");
    const cJSON *container = sb_chan_json_obj(pl, "container");
    const char *channel = id_of(sb_chan_json_obj(pl, "channel"), "id");
    if (!channel) channel = id_of(container, "channel_id");
    const char *msg_ts = sb_chan_json_str(container, "message_ts", 64);
    const cJSON *action = cJSON_GetArrayItem(sb_chan_json_arr(pl, "actions"), 0);
    const char *action_id = sb_chan_json_str(action, "action_id", 255);
    const char *value = sb_chan_json_str(action, "value", SL_MAX_BUTTON_VALUE);
    if (!trigger || !user || !cJSON_IsObject(action) || !action_id) {
        sb_chan_batch_quarantine(out, "block_actions without trigger_id, user or action");
        return;
    }
    sb_chan_item_t *it = sb_chan_batch_slot(out, cap);
    if (!it) return;
    it->kind = SB_CHAN_BUTTON_REPLY;
    it->dedup_key = sb_xasprintf("sl-act:%s", trigger);
    it->sender_id = sb_xstrdup(user);
    if (team) it->account_id = sb_xstrdup(team);
    if (channel) it->session_id = sb_xstrdup(channel);
    if (channel && msg_ts) {
        it->provider_message_id = sb_xasprintf("%s:%s:%s", channel, msg_ts, action_id);
        it->in_reply_to = sb_xasprintf("%s:%s", channel, msg_ts);
    }
    it->button_payload = sb_xstrdup(value ? value : action_id);
    it->button_title = sb_chan_json_dup(sb_chan_json_obj(action, "text"), "text", 256);
    int64_t ms = 0;
    if (ts_ms(sb_chan_json_str(action, "action_ts", 64), &ms)) it->occurred_at_ms = ms;
    out->nitems++;
}

static void parse_form(const sb_form_t *f, sb_chan_batch_t *out, size_t *cap)
{
    const char *payload = sb_form_get(f, "payload");
    const char *command = sb_form_get(f, "command");
    if (payload) {
        set_reply(out, "", NULL); /* interactivity: an empty 200 within 3 s */
        cJSON *pl = sb_chan_json_parse((const uint8_t *)payload, strlen(payload));
        const char *type = sb_chan_json_str(pl, "type", 64);
        if (!type)
            sb_chan_batch_quarantine(out, "interactivity payload is not a typed JSON object");
        else if (strcmp(type, "block_actions") == 0)
            parse_block_actions(pl, out, cap);
        else
            out->reason = "interactivity type not handled";
        cJSON_Delete(pl);
        return;
    }
    if (command && *command) {
        set_reply(out, "", NULL); /* slash command: an empty 200 shows nothing */
        const char *trigger = sb_form_get(f, "trigger_id");
        const char *user = sb_form_get(f, "user_id");
        if (!is_id(trigger) || !is_id(user) || command[0] != '/' || strlen(command) > 64) {
            sb_chan_batch_quarantine(out, "slash command without trigger_id, user_id or command");
            return;
        }
        const char *team = sb_form_get(f, "team_id");
        const char *channel = sb_form_get(f, "channel_id");
        const char *text = sb_form_get(f, "text");
        if (text && strlen(text) > SB_CHAN_MAX_TEXT) {
            sb_chan_batch_quarantine(out, "slash command text too long");
            return;
        }
        sb_chan_item_t *it = sb_chan_batch_slot(out, cap);
        if (!it) return;
        it->kind = SB_CHAN_COMMAND;
        it->dedup_key = sb_xasprintf("sl-cmd:%s", trigger);
        it->sender_id = sb_xstrdup(user);
        if (is_id(team)) it->account_id = sb_xstrdup(team);
        if (is_id(channel)) it->session_id = sb_xstrdup(channel);
        it->button_payload = sb_xstrdup(command);
        if (text && *text) it->text = sb_xstrdup(text);
        out->nitems++;
        return;
    }
    sb_chan_batch_quarantine(out, "form without payload or command");
}

static sb_result_t sl_parse(const sb_channel_t *ch, const uint8_t *body, size_t len,
                            sb_chan_batch_t *out)
{
    (void)ch;
    size_t cap = 0;
    size_t i = 0;
    while (i < len && (body[i] == ' ' || body[i] == '\t' || body[i] == '\r' || body[i] == '\n'))
        i++;
    if (i < len && body[i] == '{') {
        cJSON *root = sb_chan_json_parse(body, len);
        if (!root)
            sb_chan_batch_quarantine(out, "body is not JSON");
        else
            parse_json(root, out, &cap);
        cJSON_Delete(root);
        return SB_OK;
    }
    sb_form_t f = {0};
    if (len == 0 || sb_form_parse(body, len, SL_MAX_FORM_PARAMS, SB_FORM_UTF8, &f) != SB_OK) {
        sb_chan_batch_quarantine(out, "body is neither JSON nor a form");
        return SB_OK;
    }
    parse_form(&f, out, &cap);
    sb_form_free(&f);
    return SB_OK;
}

/* ---- egress ---- */

/* A heap copy of s cut to max UTF-8 characters. */
static char *cut(const char *s, size_t max)
{
    size_t chars = 0, i = 0;
    for (; s[i]; i++) {
        if (((unsigned char)s[i] & 0xC0) != 0x80) {
            if (chars == max) break;
            chars++;
        }
    }
    return sb_xstrndup(s, i);
}

static cJSON *plain_text(const char *s)
{
    cJSON *t = cJSON_CreateObject();
    cJSON_AddStringToObject(t, "type", "plain_text");
    cJSON_AddStringToObject(t, "text", s);
    return t;
}

static sb_result_t sl_render(const sb_channel_t *ch, const sb_chan_send_t *send,
                             sb_chan_http_t *req)
{
    const sl_priv_t *p = ch->priv;
    const sb_outbound_t *o = send->out;
    const sb_recipient_t *rcpt = send->rcpt;
    const char *channel = rcpt->session_id && *rcpt->session_id ? rcpt->session_id : rcpt->address;
    /* Conversations (C..., G...), DMs (D...) and users (U..., W...): never a workspace (T...),
     * which is the "sender" of system items. */
    if (!is_id(channel) || !strchr("CDGUW", channel[0]) || !p->bot_token[0]) return SB_E_INVALID;
    const char *text = o->text ? o->text : "";
    bool buttons = o->n_buttons > 0 && o->n_buttons <= SL_MAX_BUTTONS;
    for (size_t i = 0; buttons && i < o->n_buttons; i++) {
        const char *id = o->buttons[i]->id ? o->buttons[i]->id : "";
        const char *title = o->buttons[i]->title ? o->buttons[i]->title : "";
        if (!*id || !*title || strlen(id) > SL_MAX_BUTTON_VALUE) buttons = false;
    }

    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "channel", channel);
    if (buttons) {
        cJSON_AddStringToObject(root, "text", *text ? text : "-"); /* notifications */
        cJSON *blocks = cJSON_AddArrayToObject(root, "blocks");
        /* The text in plain-text sections of at most 3000 characters each. */
        for (const char *rest = text; *rest;) {
            char *part = cut(rest, SL_MAX_SECTION);
            cJSON *sec = cJSON_CreateObject();
            cJSON_AddStringToObject(sec, "type", "section");
            cJSON_AddItemToObject(sec, "text", plain_text(part));
            cJSON_AddItemToArray(blocks, sec);
            rest += strlen(part);
            free(part);
            if (cJSON_GetArraySize(blocks) >= 49) break; /* 50 blocks, one for the buttons */
        }
        cJSON *actions = cJSON_CreateObject();
        cJSON_AddStringToObject(actions, "type", "actions");
        cJSON_AddStringToObject(actions, "block_id", "sb_buttons");
        cJSON *elems = cJSON_AddArrayToObject(actions, "elements");
        for (size_t i = 0; i < o->n_buttons; i++) {
            cJSON *b = cJSON_CreateObject();
            char action_id[32];
            snprintf(action_id, sizeof action_id, "sb_btn_%zu", i + 1);
            char *title = cut(o->buttons[i]->title, SL_MAX_BUTTON_TEXT);
            cJSON_AddStringToObject(b, "type", "button");
            cJSON_AddItemToObject(b, "text", plain_text(title));
            cJSON_AddStringToObject(b, "action_id", action_id);
            cJSON_AddStringToObject(b, "value", o->buttons[i]->id);
            cJSON_AddItemToArray(elems, b);
            free(title);
        }
        cJSON_AddItemToArray(blocks, actions);
    } else {
        /* No buttons, or more than one actions block holds: a numbered list in the text. */
        char *list = sb_chan_button_list(text, o);
        if (!*list) {
            free(list);
            cJSON_Delete(root);
            return SB_E_INVALID; /* Slack refuses an empty message */
        }
        cJSON_AddStringToObject(root, "text", list);
        free(list);
    }
    cJSON_AddBoolToObject(root, "unfurl_links", false);
    return sb_chan_http_post_json(root, sb_xasprintf("%s/chat.postMessage", send->api_base),
                                  "application/json; charset=utf-8", p->bot_token, req);
}

/* Slack's Web API answers {"ok":true,"channel":"D..","ts":"..."} or {"ok":false,"error":".."},
 * both usually with HTTP 200. */
static void sl_parse_response(const sb_channel_t *ch, long status, const char *body, size_t len,
                              sb_chan_response_t *res)
{
    (void)ch;
    (void)status;
    cJSON *j = sb_chan_json_parse((const uint8_t *)body, len);
    if (!j) return; /* no body to read: the HTTP status decides */
    const cJSON *ok = cJSON_GetObjectItemCaseSensitive(j, "ok");
    if (cJSON_IsTrue(ok) && res->ok) {
        const char *channel = sb_chan_json_str(j, "channel", 128);
        const char *ts = sb_chan_json_str(j, "ts", 64);
        if (is_id(channel) && ts) {
            char id[SB_CHAN_MAX_ID];
            snprintf(id, sizeof id, "%s:%s", channel, ts);
            sb_chan_response_set_id(res, id);
        }
    } else if (cJSON_IsFalse(ok)) {
        static const char *const transient[] = {
            "ratelimited",     "internal_error",    "fatal_error", "service_unavailable",
            "request_timeout", "team_added_to_org", NULL};
        const char *err = sb_chan_json_str(j, "error", 63);
        for (const char *q = err; q && *q; q++)
            if (!(isalnum((unsigned char)*q) || *q == '_' || *q == '.' || *q == '-'))
                err = "not_ok"; /* free text, not one of Slack's error codes */
        res->ok = false;
        res->retry = res->retry && status != 200; /* a 200 with ok:false is Slack's verdict */
        sb_chan_response_set_error(res, err ? err : "not_ok");
        for (size_t i = 0; err && transient[i]; i++)
            if (strcmp(err, transient[i]) == 0) res->retry = true;
    }
    cJSON_Delete(j);
}

const sb_channel_ops_t sb_channel_slack = {
    .name = "slack",
    .ingress_path = "/v1/ingress/slack/",
    .enabled = sl_enabled,
    .required_keys = sl_required,
    .max_body = sl_max_body,
    .api_base = sl_api_base,
    .create = sl_create,
    .destroy = sl_destroy,
    .verify = sl_verify,
    .parse = sl_parse,
    .render = sl_render,
    .parse_response = sl_parse_response,
    .rate_per_s = sl_rate,
};
