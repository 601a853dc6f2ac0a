/* Fuzz driver for the Telegram channel (router/channel_telegram.c) and the Envelope builder
 * (router/ingress.c). The input is a webhook body (one Update), checked against the secret
 * token (must refuse, never crash) and then parsed as if authentic. Invariants: parse always
 * answers and never rejects (Telegram retries any non-2xx: unusable input is quarantined); at
 * most one item, keyed tg:<bot_id>:<update_id>, with a sender, a chat (session) and the bot
 * as account, a phone only on contact items and only in E.164 form, each building an Envelope
 * whose message_id is the keyed hash of its dedup key (or refused as invalid). The input as
 * outbound text and button must render valid JSON of at most 4096 characters of text, with
 * callback_data of at most 64 bytes, and a reply's provider id must only ever be read from a
 * JSON answer. libFuzzer entry point; replayed over tests/fixtures/channels/telegram. */
#include <cjson/cJSON.h>
#include <ctype.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "channel.h"
#include "ingress.h"
#include "sb/codec.h"
#include "sb/ids.h"
#include "sb/redact.h"
#include "sb/seal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static sb_channel_t *ch;
static sb_ingress_keys_t keys;

static void init(void)
{
    if (ch) return;
    if (sb_seal_init() != SB_OK || sb_redact_init() != SB_OK) abort();
    sb_config_t cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.telegram.enabled = true;
    cfg.telegram.secret_token = (char *)"sb-router-test_tg-Secret_0777";
    cfg.telegram.bot_id = (char *)"7000000777";
    cfg.telegram.bot_token = (char *)"7000000777:fuzz-token";
    cfg.telegram.api_base = (char *)"";
    cfg.telegram.max_body_bytes = 1 << 20;
    char err[256];
    if (sb_channel_create(&sb_channel_telegram, &cfg, &ch, err, sizeof err) != SB_OK) abort();
    memset(keys.id_secret, 9, sizeof keys.id_secret);
    uint8_t sk[SB_SEAL_KEY_BYTES];
    sb_seal_box_keypair(keys.contact_pk, sk);
    keys.partitions = 8;
}

static void check_item(const sb_chan_item_t *it)
{
    if (!it->dedup_key || !it->sender_id || !it->session_id || !it->account_id) abort();
    if (strncmp(it->dedup_key, "tg:7000000777:", 14) != 0) abort();
    if (strcmp(it->account_id, "7000000777") != 0) abort();
    if (it->phone) {
        if (it->kind != SB_CHAN_CONTACT || it->phone[0] != '+') abort();
        for (const char *p = it->phone + 1; *p; p++)
            if (!isdigit((unsigned char)*p)) abort();
    }
    if (it->kind == SB_CHAN_STATUS && !it->has_status) abort();
    sb_ingress_msg_t m = {0};
    sb_result_t rc = sb_ingress_build(&keys, "telegram", it, 0, 1, &m);
    if (rc == SB_E_INVALID) return;
    if (rc != SB_OK) abort();
    char want[SB_SEAL_HASH_HEX];
    sb_ids_message(want, keys.id_secret, it->dedup_key);
    if (strcmp(want, m.message_id) != 0) abort();
    sb_envelope_t *env = NULL;
    if (SB_CODEC_UNPACK(switchboard__v1__envelope__descriptor, m.data, m.len, &env) != SB_OK)
        abort();
    if (strcmp(env->message_id, want) != 0) abort();
    SB_CODEC_FREE(env);
    sb_ingress_msg_free(&m);
}

static void render_text(const uint8_t *data, size_t size)
{
    char *text = sb_xstrndup((const char *)data, size);
    sb_recipient_t rc = SWITCHBOARD__V1__RECIPIENT__INIT;
    rc.address = (char *)"100000042";
    rc.session_id = (char *)"-1001000000042";
    rc.in_reply_to = text; /* whatever it is, it is quoted only when it names this chat */
    sb_outbound_t o = SWITCHBOARD__V1__OUTBOUND__INIT;
    o.message_id = (char *)"out:fuzz";
    o.text = text;
    Switchboard__V1__Button b = SWITCHBOARD__V1__BUTTON__INIT;
    Switchboard__V1__Button *bp[1] = {&b};
    b.id = text; /* short ids become callback_data, long ones a numbered list */
    b.title = (char *)"Choose";
    o.buttons = bp;
    o.n_buttons = 1;
    sb_chan_send_t send = {.out = &o, .rcpt = &rc, .api_base = "http://127.0.0.1", .now_s = 1};
    sb_chan_http_t req = {0};
    if (sb_channel_telegram.render(ch, &send, &req) != SB_OK) abort();
    cJSON *j = cJSON_ParseWithLength(req.body.data, req.body.len);
    if (!j) abort();
    const cJSON *t = cJSON_GetObjectItem(j, "text");
    if (!cJSON_IsString(t) || sb_chan_utf8_len(t->valuestring) > 4096) abort();
    const cJSON *rows =
        cJSON_GetObjectItem(cJSON_GetObjectItem(j, "reply_markup"), "inline_keyboard");
    const cJSON *cd =
        cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetArrayItem(rows, 0), 0), "callback_data");
    if (cd && (!cJSON_IsString(cd) || strlen(cd->valuestring) > 64)) abort();
    cJSON_Delete(j);
    sb_chan_http_free(&req);
    free(text);
}

static void response(const uint8_t *data, size_t size)
{
    char *body = sb_xstrndup((const char *)data, size);
    sb_chan_response_t res = {.ok = true, .retry_after_ms = -1};
    sb_channel_telegram.parse_response(ch, 200, body, strlen(body), &res);
    for (const char *p = res.error; *p; p++)
        if (!isalnum((unsigned char)*p) && !strchr("_.-", *p)) abort();
    if (res.retry_after_ms < -1) abort();
    free(body);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    init();
    if (size > (1u << 20)) return 0;
    /* The input's first line as a secret: only the exact token passes. */
    const char *nl = memchr(data, '\n', size);
    char *hdr = sb_xstrndup((const char *)data, nl ? (size_t)(nl - (const char *)data) : size);
    sb_http_header_t h[1] = {{"X-Telegram-Bot-Api-Secret-Token", hdr}};
    sb_http_request_t req = {.method = "POST",
                             .path = "/v1/ingress/telegram/7000000777",
                             .query = "",
                             .target = "/v1/ingress/telegram/7000000777",
                             .headers = h,
                             .nheaders = 1,
                             .body = data,
                             .body_len = size};
    const char *reason = NULL;
    sb_result_t v = sb_channel_telegram.verify(ch, &req, 0, &reason);
    if (v == SB_OK && strcmp(hdr, "sb-router-test_tg-Secret_0777") != 0) abort();
    if (v != SB_OK && (v != SB_E_AUTH || !reason)) abort();
    free(hdr);

    sb_chan_batch_t b = {0};
    if (sb_channel_telegram.parse(ch, data, size, &b) != SB_OK) abort();
    if (b.reject_status != 0 || b.nitems > 1) abort();
    if ((b.quarantine || b.nitems == 0) && !b.reason) abort();
    for (size_t i = 0; i < b.nitems; i++)
        check_item(&b.items[i]);
    sb_chan_batch_free(&b);

    render_text(data, size);
    response(data, size);
    return 0;
}
