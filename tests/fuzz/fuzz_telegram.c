/* Fuzz target of the Telegram channel (router/channel_telegram.c) through the shared channel
 * driver (fuzz_channel.c, which also checks every item's Envelope). The input's first line is
 * sent as the secret token: only the exact token passes. Telegram's own invariants: parse
 * never rejects (Telegram retries any non-2xx: unusable input is quarantined); at most one
 * item, keyed tg:<bot_id>:<update_id>, with a chat (session) and the bot as account, a phone
 * only on contact items and only in E.164 form; the input as outbound text and button id
 * renders valid JSON of at most 4096 characters of text with callback_data of at most 64
 * bytes; a Bot API answer yields only an error token of [A-Za-z0-9_.-] and a sane retry
 * delay. Replayed over tests/fixtures/channels/telegram. */
#include <ctype.h>

#include "fuzz_channel.h"

#define SECRET "sb-router-test_tg-Secret_0777"

static void configure(sb_config_t *cfg)
{
    cfg->telegram.enabled = true;
    cfg->telegram.secret_token = (char *)SECRET;
    cfg->telegram.bot_id = (char *)"7000000777";
    cfg->telegram.bot_token = (char *)"7000000777:fuzz-token";
    cfg->telegram.api_base = (char *)"";
    cfg->telegram.max_body_bytes = 1 << 20;
}

static void check_verify(const uint8_t *data, size_t size, const sb_http_request_t *req,
                         sb_result_t v)
{
    (void)data;
    (void)size;
    if (v == SB_OK && strcmp(req->headers[0].value, SECRET) != 0) abort();
}

static void check_item(const sb_chan_item_t *it)
{
    if (!it->session_id || !it->account_id) abort();
    if (!fuzz_has_prefix(it->dedup_key, "tg:7000000777:")) abort();
    if (strcmp(it->account_id, "7000000777") != 0) abort();
    if (it->phone) {
        if (it->kind != SB_CHAN_CONTACT || it->phone[0] != '+') abort();
        for (const char *p = it->phone + 1; *p; p++)
            if (!isdigit((unsigned char)*p)) abort();
    }
    if (it->kind == SB_CHAN_STATUS && !it->has_status) abort();
}

/* Whatever the input is, it is quoted only when it names this chat; short ids become
 * callback_data, long ones a numbered list. */
static void prepare(sb_outbound_t *o, sb_recipient_t *rc, char *text)
{
    rc->in_reply_to = text;
    o->buttons[0]->id = text;
    o->buttons[0]->title = (char *)"Choose";
}

static void check_render(sb_result_t rc, const sb_chan_http_t *req)
{
    if (rc != SB_OK) abort();
    cJSON *j = fuzz_json_body(req);
    const cJSON *t = cJSON_GetObjectItem(j, "text");
    if (!cJSON_IsString(t) || sb_chan_utf8_len(t->valuestring) > 4096) abort();
    const cJSON *rows =
        cJSON_GetObjectItem(cJSON_GetObjectItem(j, "reply_markup"), "inline_keyboard");
    const cJSON *cd =
        cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetArrayItem(rows, 0), 0), "callback_data");
    if (cd && (!cJSON_IsString(cd) || strlen(cd->valuestring) > 64)) abort();
    cJSON_Delete(j);
}

/* The input as a Bot API answer. */
static void check_response(const sb_channel_t *ch, const uint8_t *data, size_t size)
{
    char *body = sb_xstrndup((const char *)data, size);
    sb_chan_response_t res = {.ok = true, .retry_after_ms = -1};
    ch->ops->parse_response(ch, 200, body, strlen(body), &res);
    for (const char *p = res.error; *p; p++)
        if (!isalnum((unsigned char)*p) && !strchr("_.-", *p)) abort();
    if (res.retry_after_ms < -1) abort();
    free(body);
}

static const fuzz_channel_t telegram = {
    .ops = &sb_channel_telegram,
    .configure = configure,
    .path = "/v1/ingress/telegram/7000000777",
    .headers = {{"X-Telegram-Bot-Api-Secret-Token", NULL}},
    .secret_from_input = true,
    .check_verify = check_verify,
    .max_items = 1,
    .check_item = check_item,
    .address = "100000042",
    .session_id = "-1001000000042",
    .prepare = prepare,
    .check_render = check_render,
    .check_extra = check_response,
};

const fuzz_channel_t *const fuzz_channels[] = {&telegram, NULL};
