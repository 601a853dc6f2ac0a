/* Fuzz driver for the Slack channel (router/channel_slack.c) and the Envelope builder
 * (router/ingress.c). The input is a request body (Events API JSON, or a form: interactivity
 * `payload=` or a slash command), verified against a fixed signature and timestamp (must
 * refuse, never crash), then parsed as if authentic. Invariants: parse always answers and
 * never rejects (Slack retries non-2xx: unusable input is quarantined); at most 10 items, each
 * with an "sl:", "sl-act:", "sl-cmd:" or "sl-sys:" dedup key and a sender, building an
 * Envelope whose message_id is the keyed hash of its key; a reply body is only ever the
 * url_verification challenge (printable, at most 256 bytes) or empty. The input as outbound
 * text must render valid JSON. libFuzzer entry point; replayed over
 * tests/fixtures/channels/slack. */
#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
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
    cfg.slack.enabled = true;
    cfg.slack.signing_secret = (char *)"sb-router-test-slack-signing-0001";
    cfg.slack.bot_token = (char *)"xoxb-fuzz";
    cfg.slack.api_base = (char *)"";
    cfg.slack.max_skew_s = 300;
    cfg.slack.max_body_bytes = 1 << 20;
    char err[256];
    if (sb_channel_create(&sb_channel_slack, &cfg, &ch, err, sizeof err) != SB_OK) abort();
    memset(keys.id_secret, 5, sizeof keys.id_secret);
    uint8_t sk[SB_SEAL_KEY_BYTES];
    sb_seal_box_keypair(keys.contact_pk, sk);
    keys.partitions = 8;
}

static void check_item(const sb_chan_item_t *it)
{
    if (!it->dedup_key || !it->sender_id) abort();
    const char *k = it->dedup_key;
    bool act = strncmp(k, "sl-act:", 7) == 0, cmd = strncmp(k, "sl-cmd:", 7) == 0;
    if (!act && !cmd && strncmp(k, "sl:", 3) != 0 && strncmp(k, "sl-sys:", 7) != 0) abort();
    if (act != (it->kind == SB_CHAN_BUTTON_REPLY)) abort();
    if (cmd != (it->kind == SB_CHAN_COMMAND)) abort();
    if (cmd && (!it->button_payload || it->button_payload[0] != '/')) abort();
    sb_ingress_msg_t m = {0};
    sb_result_t rc = sb_ingress_build(&keys, "slack", it, 0, 1, &m);
    if (rc == SB_E_INVALID) return;
    if (rc != SB_OK) abort();
    char want[SB_SEAL_HASH_HEX];
    sb_ids_message(want, keys.id_secret, it->dedup_key);
    if (strcmp(want, m.message_id) != 0) abort();
    sb_ingress_msg_free(&m);
}

static void render_text(const uint8_t *data, size_t size)
{
    char *text = sb_xstrndup((const char *)data, size);
    sb_recipient_t rc = SWITCHBOARD__V1__RECIPIENT__INIT;
    rc.address = (char *)"U0TESTUSR01";
    rc.session_id = (char *)"D0TESTIM001";
    sb_outbound_t o = SWITCHBOARD__V1__OUTBOUND__INIT;
    o.message_id = (char *)"out:fuzz";
    o.text = text;
    Switchboard__V1__Button b = SWITCHBOARD__V1__BUTTON__INIT;
    Switchboard__V1__Button *bp[1] = {&b};
    b.id = (char *)"id";
    b.title = text; /* any title: cut to 75 characters */
    o.buttons = bp;
    o.n_buttons = 1;
    sb_chan_send_t send = {.out = &o, .rcpt = &rc, .api_base = "http://127.0.0.1", .now_s = 1};
    sb_chan_http_t req = {0};
    if (sb_channel_slack.render(ch, &send, &req) == SB_OK) {
        cJSON *j = cJSON_ParseWithLength(req.body.data, req.body.len);
        if (!j) abort();
        cJSON_Delete(j);
        sb_chan_http_free(&req);
    }
    free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    init();
    if (size > (1u << 20)) return 0;
    sb_http_header_t h[2] = {
        {"X-Slack-Request-Timestamp", "1772442900"},
        {"X-Slack-Signature",
         "v0=3087cb8e9e2694b29633f0678a3d1bb5c7a0707b28c02c5656f5c386b47f9380"}};
    sb_http_request_t req = {.method = "POST",
                             .path = "/v1/ingress/slack/events",
                             .query = "",
                             .target = "/v1/ingress/slack/events",
                             .headers = h,
                             .nheaders = 2,
                             .body = data,
                             .body_len = size};
    const char *reason = NULL;
    sb_result_t v = sb_channel_slack.verify(ch, &req, 1772442901, &reason);
    if (v != SB_OK && (v != SB_E_AUTH || !reason)) abort();

    sb_chan_batch_t b = {0};
    if (sb_channel_slack.parse(ch, data, size, &b) != SB_OK) abort();
    if (b.reject_status != 0 || b.nitems > 10) abort();
    if ((b.quarantine || b.nitems == 0) && !b.reason && !b.nignored && !b.reply_body) abort();
    if (b.reply_body) {
        size_t n = strlen(b.reply_body);
        if (n > 256) abort();
        for (size_t i = 0; i < n; i++)
            if (b.reply_body[i] < 0x21 || b.reply_body[i] > 0x7e) abort();
    }
    for (size_t i = 0; i < b.nitems; i++)
        check_item(&b.items[i]);
    sb_chan_batch_free(&b);

    render_text(data, size);
    return 0;
}
