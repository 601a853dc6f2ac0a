/* Fuzz target of the Slack channel (router/channel_slack.c) through the shared channel driver
 * (fuzz_channel.c, which also checks every item's Envelope). The input is a request body
 * (Events API JSON, or a form: interactivity `payload=` or a slash command) with a fixed
 * signature and timestamp. Slack's own invariants: parse never rejects (Slack retries non-2xx:
 * unusable input is quarantined); at most 10 items, each with an "sl:", "sl-act:", "sl-cmd:"
 * or "sl-sys:" dedup key matching its kind (button replies, commands starting with '/'); a
 * reply body is only ever the url_verification challenge (printable, at most 256 bytes) or
 * empty; the input as outbound text and button title renders valid JSON when it renders.
 * Replayed over tests/fixtures/channels/slack. */
#include "fuzz_channel.h"

static void configure(sb_config_t *cfg)
{
    cfg->slack.enabled = true;
    cfg->slack.signing_secret = (char *)"sb-router-test-slack-signing-0001";
    cfg->slack.bot_token = (char *)"xoxb-fuzz";
    cfg->slack.api_base = (char *)"";
    cfg->slack.max_skew_s = 300;
    cfg->slack.max_body_bytes = 1 << 20;
}

static void check_batch(const uint8_t *data, size_t size, const sb_chan_batch_t *b)
{
    (void)data;
    (void)size;
    if (!b->reply_body) return;
    size_t n = strlen(b->reply_body);
    if (n > 256) abort();
    for (size_t i = 0; i < n; i++)
        if (b->reply_body[i] < 0x21 || b->reply_body[i] > 0x7e) abort();
}

static void check_item(const sb_chan_item_t *it)
{
    const char *k = it->dedup_key;
    bool act = fuzz_has_prefix(k, "sl-act:"), cmd = fuzz_has_prefix(k, "sl-cmd:");
    if (!act && !cmd && !fuzz_has_prefix(k, "sl:") && !fuzz_has_prefix(k, "sl-sys:")) abort();
    if (act != (it->kind == SB_CHAN_BUTTON_REPLY)) abort();
    if (cmd != (it->kind == SB_CHAN_COMMAND)) abort();
    if (cmd && (!it->button_payload || it->button_payload[0] != '/')) abort();
}

/* Any title is cut to 75 characters. */
static void check_render(sb_result_t rc, const sb_chan_http_t *req)
{
    if (rc == SB_OK) cJSON_Delete(fuzz_json_body(req));
}

static const fuzz_channel_t slack = {
    .ops = &sb_channel_slack,
    .configure = configure,
    .path = "/v1/ingress/slack/events",
    .now_s = 1772442901,
    .headers = {{"X-Slack-Request-Timestamp", "1772442900"},
                {"X-Slack-Signature",
                 "v0=3087cb8e9e2694b29633f0678a3d1bb5c7a0707b28c02c5656f5c386b47f9380"}},
    .max_items = 10,
    .ack_without_reason = true,
    .check_batch = check_batch,
    .check_item = check_item,
    .address = "U0TESTUSR01",
    .session_id = "D0TESTIM001",
    .check_render = check_render,
};

const fuzz_channel_t *const fuzz_channels[] = {&slack, NULL};
