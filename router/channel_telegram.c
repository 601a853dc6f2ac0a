/* The Telegram Bot API channel (reference §A4).
 *
 * Ingress: POST /v1/ingress/telegram/<bot_id> (a prefix route; the id in the path must be
 * channels.telegram.bot_id). Telegram signs nothing: authenticity is the
 * `X-Telegram-Bot-Api-Secret-Token` header, equal to the secret_token given to setWebhook,
 * compared in constant time (several may be configured for rotation); missing or wrong -> 401.
 * A body is one Update: update_id plus one field. message -> text, command (/start <args>:
 * button_payload "/start", text "<args>"), media (the largest photo size or the file's file_id;
 * fetched, if ever, through getFile), location, contact (the number only when the user shared
 * their own: it goes to the sealed Contact, never to text); edited_message -> edit;
 * callback_query (inline button) -> button_reply; my_chat_member in a private chat -> status
 * blocked_by_user / unblocked, elsewhere -> system. Every item's dedup key is
 * tg:<bot_id>:<update_id>; message ids are only unique per chat, so provider ids are
 * "<chat_id>:<message_id>" ("cbq:<id>" for button taps, whose webhook answer carries the
 * answerCallbackQuery call that stops the client's spinner). The chat to answer goes into
 * session_id. Unreadable updates are quarantined with 200 (Telegram retries any non-2xx).
 *
 * Egress: POST <base>/bot<token>/sendMessage {chat_id, text (cut at 4096 characters),
 * reply_markup.inline_keyboard (one button per row; callback_data <= 64 bytes, else a numbered
 * list)}. The bot token is part of that URL: neither this file nor egress logs URLs. */
#include "channel.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TG_PATH "/v1/ingress/telegram/"
#define TG_MAX_SECRET 256
#define TG_MAX_TEXT 4096        /* characters, after entity parsing */
#define TG_MAX_CALLBACK_DATA 64 /* bytes */
#define TG_MAX_BUTTONS 100      /* inline keyboard */
#define TG_MAX_BOT_ID 20

typedef struct tg_priv {
    sb_chan_secrets_t secrets; /* webhook secret tokens */
    char *bot_token;           /* only ever in the URL of a rendered call */
    char bot_id[TG_MAX_BOT_ID + 1];
} tg_priv_t;

static bool tg_enabled(const sb_config_t *cfg)
{
    return cfg->telegram.enabled;
}

static size_t tg_max_body(const sb_config_t *cfg)
{
    return (size_t)cfg->telegram.max_body_bytes;
}

static const char *tg_api_base(const sb_config_t *cfg)
{
    return cfg->telegram.api_base ? cfg->telegram.api_base : "";
}

static int64_t tg_rate_per_s(const sb_config_t *cfg)
{
    return cfg->telegram.rate_per_s;
}

static const char *const tg_required[] = {"channels.telegram.secret_token",
                                          "channels.telegram.bot_id", NULL};

static void tg_destroy(sb_channel_t *ch)
{
    tg_priv_t *p = ch->priv;
    if (!p) return;
    sb_chan_secrets_close(&p->secrets);
    sb_chan_wipe_free(p->bot_token);
    free(p);
    ch->priv = NULL;
}

static bool all_of(const char *s, const char *extra, bool digits_only)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (isdigit(c)) continue;
        if (digits_only) return false;
        if (!isalpha(c) && !strchr(extra, c)) return false;
    }
    return true;
}

static sb_result_t tg_create(sb_channel_t *ch, const sb_config_t *cfg, char *err, size_t errlen)
{
    tg_priv_t *p = sb_xcalloc(1, sizeof *p);
    ch->priv = p;
    bool secrets_ok = sb_chan_secrets_init(&p->secrets, cfg->telegram.secret_token) > 0;
    for (size_t i = 0; i < p->secrets.n; i++) {
        /* setWebhook accepts 1-256 characters of A-Z a-z 0-9 _ - */
        const char *tok = p->secrets.v[i];
        if (strlen(tok) > TG_MAX_SECRET || !all_of(tok, "_-", false)) secrets_ok = false;
    }
    const char *bot = cfg->telegram.bot_id ? cfg->telegram.bot_id : "";
    const char *token = cfg->telegram.bot_token ? cfg->telegram.bot_token : "";
    p->bot_token = sb_xstrdup(token);
    if (!secrets_ok) {
        snprintf(err, errlen,
                 "channels.telegram.secret_token: 1-256 characters of A-Z a-z 0-9 _ - expected");
        goto fail;
    }
    if (!*bot || strlen(bot) > TG_MAX_BOT_ID || !all_of(bot, "", true)) {
        snprintf(err, errlen, "channels.telegram.bot_id: the numeric bot id expected");
        goto fail;
    }
    /* The token goes into the URL path: "<bot id>:<secret>" of letters, digits, '_' and '-'. */
    if (!all_of(token, ":_-", false)) {
        snprintf(err, errlen, "channels.telegram.bot_token: unexpected characters");
        goto fail;
    }
    snprintf(p->bot_id, sizeof p->bot_id, "%s", bot);
    return SB_OK;
fail:
    tg_destroy(ch);
    return SB_E_CONFIG;
}

static sb_result_t tg_verify(const sb_channel_t *ch, const sb_http_request_t *req, int64_t now_s,
                             const char **reason)
{
    (void)now_s; /* nothing signed, no timestamp: replay protection is TLS + the update_id */
    const tg_priv_t *p = ch->priv;
    const char *h = sb_http_header(req, "X-Telegram-Bot-Api-Secret-Token");
    if (!h || !*h) {
        *reason = "missing_secret_token";
        return SB_E_AUTH;
    }
    bool ok = false;
    for (size_t i = 0; i < p->secrets.n; i++)
        ok |= sb_chan_secret_equal(h, strlen(h), p->secrets.v[i], strlen(p->secrets.v[i]));
    if (!ok) {
        *reason = "bad_secret_token";
        return SB_E_AUTH;
    }
    /* One endpoint per bot: the path names the bot whose secret was just checked. */
    const char *path = req->path ? req->path : "";
    size_t plen = strlen(TG_PATH);
    if (strncmp(path, TG_PATH, plen) != 0 || strcmp(path + plen, p->bot_id) != 0) {
        *reason = "unknown_bot";
        return SB_E_AUTH;
    }
    return SB_OK;
}

/* ---- parse ---- */

/* An integral JSON number within +-2^53 (Telegram ids fit in 52 bits). */
static bool get_int(const cJSON *obj, const char *key, int64_t *out)
{
    return sb_chan_json_int(obj, key, -(1LL << 53), 1LL << 53, out);
}

enum up_result { UP_ITEM, UP_IGNORED, UP_SKIPPED, UP_BAD };

typedef struct up_ctx {
    const tg_priv_t *p;
    int64_t update_id;
    const char *reason; /* why UP_BAD */
    char *reply;        /* the webhook answer's body (heap), or NULL */
} up_ctx_t;

static void base_item(const up_ctx_t *c, sb_chan_item_t *it, int64_t from, int64_t chat)
{
    it->dedup_key = sb_xasprintf("tg:%s:%lld", c->p->bot_id, (long long)c->update_id);
    it->sender_id = sb_xasprintf("%lld", (long long)from);
    it->session_id = sb_xasprintf("%lld", (long long)chat);
    it->account_id = sb_xstrdup(c->p->bot_id);
}

/* "First Last" of a User object, or NULL. */
static char *user_name(const cJSON *u)
{
    const char *first = sb_chan_json_str(u, "first_name", 256);
    const char *last = sb_chan_json_str(u, "last_name", 256);
    if (first && last) return sb_xasprintf("%s %s", first, last);
    return first ? sb_xstrdup(first) : last ? sb_xstrdup(last) : NULL;
}

static void set_user(sb_chan_item_t *it, const cJSON *from)
{
    it->sender_name = user_name(from);
    it->locale = sb_chan_json_dup(from, "language_code", 35);
}

/* A shared phone number in E.164 form ("+" and 5-15 digits), or NULL. */
static char *e164(const char *raw)
{
    char buf[20];
    size_t n = 0;
    for (const char *s = raw; *s; s++) {
        if (*s == '+' && s == raw) continue;
        if (*s == ' ' || *s == '-') continue;
        if (!isdigit((unsigned char)*s) || n >= 15) return NULL;
        buf[n++] = *s;
    }
    if (n < 5) return NULL;
    return sb_xasprintf("+%.*s", (int)n, buf);
}

static enum up_result parse_media(const cJSON *m, sb_chan_item_t *it)
{
    static const struct {
        const char *key, *type;
    } kinds[] = {{"document", "document"}, {"video", "video"}, {"animation", "video"},
                 {"video_note", "video"},  {"audio", "audio"}, {"voice", "audio"},
                 {"sticker", "sticker"}};
    const cJSON *photo = sb_chan_json_arr(m, "photo");
    const cJSON *file = NULL;
    const char *type = NULL;
    if (photo) {
        /* PhotoSize[] in ascending size: the last is the original. */
        file = cJSON_GetArrayItem(photo, cJSON_GetArraySize(photo) - 1);
        type = "image";
    }
    for (size_t i = 0; !file && i < sizeof kinds / sizeof kinds[0]; i++) {
        file = sb_chan_json_obj(m, kinds[i].key);
        type = kinds[i].type;
    }
    if (!file) return UP_SKIPPED; /* not media */
    it->kind = SB_CHAN_MEDIA;
    it->has_media = true;
    it->media.type = sb_xstrdup(type);
    it->media.ref = sb_chan_json_dup(file, "file_id", SB_CHAN_MAX_ID);
    it->media.mime = sb_chan_json_dup(file, "mime_type", 128);
    it->media.filename = sb_chan_json_dup(file, "file_name", 256);
    int64_t size = 0;
    if (get_int(file, "file_size", &size) && size > 0) it->media.size = (uint64_t)size;
    it->media.caption = sb_chan_json_dup(m, "caption", SB_CHAN_MAX_TEXT);
    return it->media.ref ? UP_ITEM : UP_BAD;
}

/* "/start@our_bot ref" -> button_payload "/start", text "ref". */
static void parse_command(const char *text, sb_chan_item_t *it)
{
    size_t n = strcspn(text, " \t\n");
    size_t at = strcspn(text, "@");
    it->kind = SB_CHAN_COMMAND;
    it->button_payload = sb_xstrndup(text, at < n ? at : n);
    const char *args = text + n;
    while (*args == ' ' || *args == '\t' || *args == '\n')
        args++;
    if (*args) it->text = sb_xstrdup(args);
}

static bool starts_with_command(const cJSON *m, const char *text)
{
    const cJSON *e0 = cJSON_GetArrayItem(sb_chan_json_arr(m, "entities"), 0);
    int64_t off = -1;
    const char *type = sb_chan_json_str(e0, "type", 32);
    return text[0] == '/' && type && strcmp(type, "bot_command") == 0 &&
           get_int(e0, "offset", &off) && off == 0;
}

static enum up_result parse_message(up_ctx_t *c, const cJSON *m, bool edited, sb_chan_item_t *it)
{
    int64_t mid = 0, chat = 0, from = 0, date = 0;
    const cJSON *fromv = sb_chan_json_obj(m, "from");
    if (!cJSON_IsObject(m) || !get_int(m, "message_id", &mid) ||
        !get_int(sb_chan_json_obj(m, "chat"), "id", &chat) || !get_int(m, "date", &date) ||
        date < 0) {
        c->reason = "unreadable message";
        return UP_BAD;
    }
    if (!get_int(fromv, "id", &from)) {
        c->reason = "message without from.id";
        return UP_BAD;
    }
    /* Bots (ours included, in groups) never talk to the bot: loop guard. */
    if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(fromv, "is_bot"))) return UP_IGNORED;
    base_item(c, it, from, chat);
    set_user(it, fromv);
    it->provider_message_id = sb_xasprintf("%lld:%lld", (long long)chat, (long long)mid);
    it->occurred_at_ms = date * 1000;
    int64_t reply = 0;
    if (get_int(sb_chan_json_obj(m, "reply_to_message"), "message_id", &reply))
        it->in_reply_to = sb_xasprintf("%lld:%lld", (long long)chat, (long long)reply);

    const cJSON *textv = cJSON_GetObjectItemCaseSensitive(m, "text");
    if (textv && (!cJSON_IsString(textv) || strlen(textv->valuestring) > SB_CHAN_MAX_TEXT)) {
        c->reason = "unreadable text";
        return UP_BAD;
    }
    const char *text = sb_chan_json_str(m, "text", SB_CHAN_MAX_TEXT);
    if (edited) {
        /* The same message_id as the original: a correction, not a second turn. */
        int64_t edit = 0;
        if (get_int(m, "edit_date", &edit) && edit > 0) it->occurred_at_ms = edit * 1000;
        it->kind = SB_CHAN_EDIT;
        it->text = text ? sb_xstrdup(text) : sb_chan_json_dup(m, "caption", SB_CHAN_MAX_TEXT);
        return UP_ITEM;
    }
    if (text) {
        if (starts_with_command(m, text)) {
            parse_command(text, it);
        } else {
            it->kind = SB_CHAN_TEXT;
            it->text = sb_xstrdup(text);
        }
        return UP_ITEM;
    }
    enum up_result r = parse_media(m, it);
    if (r == UP_BAD) c->reason = "media without file_id";
    if (r != UP_SKIPPED) return r;
    const cJSON *loc = sb_chan_json_obj(m, "location");
    if (loc) {
        if (!sb_chan_json_location(loc, "latitude", "longitude", it)) {
            c->reason = "unreadable location";
            return UP_BAD;
        }
        const cJSON *venue = sb_chan_json_obj(m, "venue");
        it->location.name = sb_chan_json_dup(venue, "title", 1024);
        it->location.address = sb_chan_json_dup(venue, "address", 1024);
        return UP_ITEM;
    }
    const cJSON *contact = sb_chan_json_obj(m, "contact");
    if (contact) {
        const char *phone = sb_chan_json_str(contact, "phone_number", 64);
        if (!phone) {
            c->reason = "contact without phone_number";
            return UP_BAD;
        }
        it->kind = SB_CHAN_CONTACT;
        /* Only the user's own number (request_contact) is theirs to give; a third person's
         * card is acknowledged without keeping their number (data minimisation). */
        int64_t uid = 0;
        if (get_int(contact, "user_id", &uid) && uid == from) it->phone = e164(phone);
        return UP_ITEM;
    }
    /* poll, dice, game, story, ...: answered politely. */
    it->kind = SB_CHAN_UNSUPPORTED;
    return UP_ITEM;
}

/* The text of the inline button whose callback_data is data, or NULL. */
static char *button_title(const cJSON *msg, const char *data)
{
    const cJSON *rows = sb_chan_json_arr(sb_chan_json_obj(msg, "reply_markup"), "inline_keyboard");
    const cJSON *row, *b;
    cJSON_ArrayForEach(row, rows)
    {
        cJSON_ArrayForEach(b, row)
        {
            const char *d = sb_chan_json_str(b, "callback_data", TG_MAX_CALLBACK_DATA);
            if (d && strcmp(d, data) == 0) return sb_chan_json_dup(b, "text", 256);
        }
    }
    return NULL;
}

static enum up_result parse_callback(up_ctx_t *c, const cJSON *q, sb_chan_item_t *it)
{
    const cJSON *fromv = sb_chan_json_obj(q, "from");
    const char *id = sb_chan_json_str(q, "id", 128);
    int64_t from = 0;
    if (!id || !get_int(fromv, "id", &from)) {
        c->reason = "callback_query without id/from";
        return UP_BAD;
    }
    /* callback_data is whatever the client sends: only our own short keys are accepted. */
    const cJSON *datav = cJSON_GetObjectItemCaseSensitive(q, "data");
    if (datav && (!cJSON_IsString(datav) || strlen(datav->valuestring) > TG_MAX_CALLBACK_DATA)) {
        c->reason = "callback data not a string of <= 64 bytes";
        return UP_BAD;
    }
    const cJSON *msg = sb_chan_json_obj(q, "message");
    int64_t chat = from, mid = 0;
    bool has_msg =
        get_int(sb_chan_json_obj(msg, "chat"), "id", &chat) && get_int(msg, "message_id", &mid);
    if (!has_msg) chat = from; /* inline-mode message: answer in the private chat */
    base_item(c, it, from, chat);
    set_user(it, fromv);
    it->provider_message_id = sb_xasprintf("cbq:%s", id);
    /* Every tap must be answered or the user's client keeps a spinner on the button. The
     * webhook's own answer can carry that Bot API call: no token, no second request, and
     * nothing depends on its result. */
    cJSON *ack = cJSON_CreateObject();
    cJSON_AddStringToObject(ack, "method", "answerCallbackQuery");
    cJSON_AddStringToObject(ack, "callback_query_id", id);
    c->reply = cJSON_PrintUnformatted(ack);
    cJSON_Delete(ack);
    if (has_msg) it->in_reply_to = sb_xasprintf("%lld:%lld", (long long)chat, (long long)mid);
    const char *data = sb_chan_json_str(q, "data", TG_MAX_CALLBACK_DATA);
    if (!data) {
        it->kind = SB_CHAN_UNSUPPORTED; /* game_short_name and the like */
        return UP_ITEM;
    }
    it->kind = SB_CHAN_BUTTON_REPLY;
    it->button_payload = sb_xstrdup(data);
    it->button_title = button_title(msg, data);
    return UP_ITEM;
}

static enum up_result parse_member(up_ctx_t *c, const cJSON *u, sb_chan_item_t *it)
{
    const cJSON *chatv = sb_chan_json_obj(u, "chat");
    int64_t chat = 0, from = 0, date = 0;
    const char *state = sb_chan_json_str(sb_chan_json_obj(u, "new_chat_member"), "status", 32);
    const char *old = sb_chan_json_str(sb_chan_json_obj(u, "old_chat_member"), "status", 32);
    if (!get_int(chatv, "id", &chat) || !get_int(sb_chan_json_obj(u, "from"), "id", &from) ||
        !get_int(u, "date", &date) || !state) {
        c->reason = "unreadable my_chat_member";
        return UP_BAD;
    }
    base_item(c, it, from, chat);
    it->occurred_at_ms = date * 1000;
    it->has_status = true;
    const char *type = sb_chan_json_str(chatv, "type", 32);
    if (type && strcmp(type, "private") == 0) {
        /* The closest thing to a delivery status Telegram has: the user blocked the bot
         * (sends now fail with 403) or unblocked it. */
        it->kind = SB_CHAN_STATUS;
        bool blocked = strcmp(state, "kicked") == 0;
        if (!blocked && !(old && strcmp(old, "kicked") == 0)) return UP_SKIPPED;
        it->status.state = sb_xstrdup(blocked ? "blocked_by_user" : "unblocked");
        return UP_ITEM;
    }
    /* The bot was added to / removed from a group or channel. */
    it->kind = SB_CHAN_SYSTEM;
    it->status.state = sb_xasprintf("chat_member_%s", state);
    return UP_ITEM;
}

static enum up_result parse_update(up_ctx_t *c, const cJSON *root, sb_chan_item_t *it)
{
    const cJSON *x;
    if ((x = cJSON_GetObjectItemCaseSensitive(root, "message")))
        return parse_message(c, x, false, it);
    if ((x = cJSON_GetObjectItemCaseSensitive(root, "edited_message")))
        return parse_message(c, x, true, it);
    if ((x = sb_chan_json_obj(root, "callback_query"))) return parse_callback(c, x, it);
    if ((x = sb_chan_json_obj(root, "my_chat_member"))) return parse_member(c, x, it);
    /* channel posts, inline queries, polls, reactions, join requests: not routed. */
    return UP_SKIPPED;
}

static sb_result_t tg_parse(const sb_channel_t *ch, const uint8_t *body, size_t len,
                            sb_chan_batch_t *out)
{
    cJSON *root = sb_chan_json_parse(body, len);
    size_t cap = 0;
    up_ctx_t c = {.p = ch->priv};
    if (!cJSON_IsObject(root)) {
        sb_chan_batch_quarantine(out, root ? "update not an object" : "body is not JSON");
        goto done;
    }
    if (!get_int(root, "update_id", &c.update_id) || c.update_id < 0) {
        sb_chan_batch_quarantine(out, "missing update_id");
        goto done;
    }
    sb_chan_item_t *it = sb_chan_batch_slot(out, &cap);
    switch (parse_update(&c, root, it)) {
    case UP_ITEM:
        out->nitems++;
        if (c.reply) {
            out->reply_body = c.reply;
            out->reply_type = "application/json";
            c.reply = NULL;
        }
        goto done;
    case UP_IGNORED:
        out->nignored++;
        out->reason = "message from a bot (loop guard)";
        break;
    case UP_SKIPPED:
        out->reason = "update type not routed";
        break;
    case UP_BAD:
        sb_chan_batch_quarantine(out, c.reason);
        break;
    }
    sb_chan_item_free(it);
done:
    free(c.reply);
    cJSON_Delete(root);
    return SB_OK;
}

/* ---- render ---- */

/* A chat id: an optional '-' and 1..20 digits. */
static bool is_chat_id(const char *s)
{
    if (!s) return false;
    if (*s == '-') s++;
    size_t n = strlen(s);
    return n > 0 && n <= 20 && all_of(s, "", true);
}

static bool buttons_fit(const sb_outbound_t *o)
{
    if (o->n_buttons == 0 || o->n_buttons > TG_MAX_BUTTONS) return false;
    for (size_t i = 0; i < o->n_buttons; i++) {
        const char *t = o->buttons[i]->title ? o->buttons[i]->title : "";
        const char *id = o->buttons[i]->id ? o->buttons[i]->id : "";
        if (!*t || !*id || strlen(id) > TG_MAX_CALLBACK_DATA) return false;
    }
    return true;
}

static sb_result_t tg_render(const sb_channel_t *ch, const sb_chan_send_t *send,
                             sb_chan_http_t *req)
{
    const tg_priv_t *p = ch->priv;
    const sb_outbound_t *o = send->out;
    const sb_recipient_t *rcpt = send->rcpt;
    const char *text = o->text ? o->text : "";
    /* The chat to answer is the one the customer wrote in (session_id); in a private chat it
     * is the user id itself. */
    const char *chat = rcpt->session_id && *rcpt->session_id ? rcpt->session_id : rcpt->address;
    if (!is_chat_id(chat) || !*p->bot_token || (!*text && o->n_buttons == 0)) return SB_E_INVALID;

    bool fit = buttons_fit(o);
    char *full = fit ? sb_xstrdup(*text ? text : "-") : sb_chan_button_list(text, o);
    char *cut = sb_chan_utf8_truncate(full, TG_MAX_TEXT, false);
    free(full);

    cJSON *root = cJSON_CreateObject();
    cJSON_AddItemToObject(root, "chat_id", cJSON_CreateRaw(chat));
    cJSON_AddStringToObject(root, "text", cut);
    free(cut);
    /* In a group the reply quotes the customer's message, so that it is clear whom the bot
     * answers; in a private chat a quote on every answer would only be noise. */
    const char *q = rcpt->in_reply_to;
    size_t clen = strlen(chat);
    bool group = rcpt->address && strcmp(rcpt->address, chat) != 0;
    if (group && q && strncmp(q, chat, clen) == 0 && q[clen] == ':' && is_chat_id(q + clen + 1) &&
        q[clen + 1] != '-') {
        cJSON *rp = cJSON_AddObjectToObject(root, "reply_parameters");
        cJSON_AddItemToObject(rp, "message_id", cJSON_CreateRaw(q + clen + 1));
        cJSON_AddBoolToObject(rp, "allow_sending_without_reply", true);
    }
    if (fit) {
        cJSON *markup = cJSON_AddObjectToObject(root, "reply_markup");
        cJSON *rows = cJSON_AddArrayToObject(markup, "inline_keyboard");
        for (size_t i = 0; i < o->n_buttons; i++) {
            cJSON *row = cJSON_CreateArray();
            cJSON *b = cJSON_CreateObject();
            cJSON_AddStringToObject(b, "text", o->buttons[i]->title);
            cJSON_AddStringToObject(b, "callback_data", o->buttons[i]->id);
            cJSON_AddItemToArray(row, b);
            cJSON_AddItemToArray(rows, row);
        }
    }
    return sb_chan_http_post_json(
        root, sb_xasprintf("%s/bot%s/sendMessage", send->api_base, p->bot_token),
        "application/json", NULL, req);
}

/* {"ok":true,"result":{"message_id":N,"chat":{"id":C}}} or {"ok":false,"error_code":N,
 * "description":"...","parameters":{"retry_after":S}} (the description is free text: never
 * copied). */
static void tg_parse_response(const sb_channel_t *ch, long status, const char *body, size_t len,
                              sb_chan_response_t *res)
{
    (void)ch;
    (void)status;
    cJSON *root = sb_chan_json_parse((const uint8_t *)body, len);
    if (!cJSON_IsObject(root)) goto done;
    const cJSON *okv = cJSON_GetObjectItemCaseSensitive(root, "ok");
    if (cJSON_IsTrue(okv)) {
        const cJSON *result = sb_chan_json_obj(root, "result");
        int64_t mid = 0, chat = 0;
        if (get_int(result, "message_id", &mid) &&
            get_int(sb_chan_json_obj(result, "chat"), "id", &chat)) {
            char id[64];
            snprintf(id, sizeof id, "%lld:%lld", (long long)chat, (long long)mid);
            sb_chan_response_set_id(res, id);
        }
        goto done;
    }
    if (!cJSON_IsFalse(okv)) goto done;
    res->ok = false;
    int64_t code = 0, after = 0;
    if (get_int(root, "error_code", &code)) {
        res->error_code = code;
        char tok[24];
        snprintf(tok, sizeof tok, "%lld", (long long)code);
        sb_chan_response_set_error(res, tok);
        /* 429 (flood control) and server errors are transient; 400/403 (blocked) are not. */
        res->retry = code == 429 || code >= 500;
    }
    if (get_int(sb_chan_json_obj(root, "parameters"), "retry_after", &after) && after >= 0 &&
        after < 86400) {
        res->retry_after_ms = after * 1000;
        res->retry = true;
    }
done:
    cJSON_Delete(root);
}

const sb_channel_ops_t sb_channel_telegram = {
    .name = "telegram",
    .ingress_path = TG_PATH, /* prefix route: TG_PATH<bot_id> */
    .enabled = tg_enabled,
    .required_keys = tg_required,
    .max_body = tg_max_body,
    .api_base = tg_api_base,
    .create = tg_create,
    .destroy = tg_destroy,
    .verify = tg_verify,
    .handshake = NULL,
    .parse = tg_parse,
    .render = tg_render,
    .parse_response = tg_parse_response,
    .window_policy = NULL,
    .rate_per_s = tg_rate_per_s,
};
