/* Fuzz target of the webchat channel (router/channel_webchat.c) through the shared channel
 * driver (fuzz_channel.c, which also checks every item's Envelope). The input is a webhook
 * body with Standard Webhooks' own test vector as its signature. Webchat's own invariants:
 * a rejection is 400 or 422 (our own clients: they get told), nothing is ever quarantined;
 * at most one item, with a "wc:" dedup key and an account; the input as the text of an
 * outbound message renders valid JSON when it renders. Replayed over
 * tests/fixtures/channels/webchat. */
#include "fuzz_channel.h"

static void configure(sb_config_t *cfg)
{
    cfg->webchat.enabled = true;
    cfg->webchat.signing_secret = (char *)"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    cfg->webchat.max_skew_s = 300;
    cfg->webchat.max_body_bytes = 65536;
    cfg->webchat.callback_url = (char *)"";
}

static void check_batch(const uint8_t *data, size_t size, const sb_chan_batch_t *b)
{
    (void)data;
    (void)size;
    if (b->reject_status != 0 && b->reject_status != 400 && b->reject_status != 422) abort();
    if (b->quarantine) abort();
}

static void check_item(const sb_chan_item_t *it)
{
    if (!fuzz_has_prefix(it->dedup_key, "wc:") || !it->account_id) abort();
}

/* The web chat has no buttons to fuzz: the text alone. */
static void prepare(sb_outbound_t *o, sb_recipient_t *rc, char *text)
{
    (void)rc;
    (void)text;
    o->n_buttons = 0;
}

static void check_render(sb_result_t rc, const sb_chan_http_t *req)
{
    if (rc == SB_OK) cJSON_Delete(fuzz_json_body(req));
}

static const fuzz_channel_t webchat = {
    .ops = &sb_channel_webchat,
    .configure = configure,
    .now_s = 1614265330,
    .headers = {{"webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek"},
                {"webhook-timestamp", "1614265330"},
                {"webhook-signature", "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="}},
    .max_items = 1,
    .may_reject = true,
    .check_batch = check_batch,
    .check_item = check_item,
    .address = "wcv_fuzz",
    .prepare = prepare,
    .check_render = check_render,
};

const fuzz_channel_t *const fuzz_channels[] = {&webchat, NULL};
