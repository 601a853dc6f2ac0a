/* Fuzz target of the WhatsApp channel (router/channel_whatsapp.c) through the shared channel
 * driver (fuzz_channel.c, which also checks every item's Envelope and the hub.* handshake).
 * WhatsApp's own invariants: parse never rejects (Meta retries any 4xx for days: unusable
 * input is quarantined); at most SB_CHAN_MAX_ITEMS items, each with a "wa:" or "wa-st:" dedup
 * key (statuses, and only they, carrying one status ref) and an account; the input as
 * outbound text and button title always renders valid JSON. Replayed over
 * tests/fixtures/channels/whatsapp. */
#include "fuzz_channel.h"

static void configure(sb_config_t *cfg)
{
    cfg->whatsapp.enabled = true;
    cfg->whatsapp.app_secret = (char *)"sb-router-test-app-secret-0001";
    cfg->whatsapp.verify_token = (char *)"sb-router-test-verify-token";
    cfg->whatsapp.access_token = (char *)"fuzz";
    cfg->whatsapp.api_base = (char *)"";
    cfg->whatsapp.max_body_bytes = 3 << 20;
}

static void check_item(const sb_chan_item_t *it)
{
    if (!it->account_id) abort();
    bool status = fuzz_has_prefix(it->dedup_key, "wa-st:");
    if (!status && !fuzz_has_prefix(it->dedup_key, "wa:")) abort();
    if (status != (it->kind == SB_CHAN_STATUS)) abort();
    if (status && (!it->has_status || it->status.nrefs != 1)) abort();
}

static void check_render(sb_result_t rc, const sb_chan_http_t *req)
{
    if (rc != SB_OK) abort();
    cJSON_Delete(fuzz_json_body(req));
}

static const fuzz_channel_t whatsapp = {
    .ops = &sb_channel_whatsapp,
    .configure = configure,
    .headers = {{"X-Hub-Signature-256",
                 "sha256=72b3c4775b2556816ed49eb45c9f1c3cdf8266ae7a5d1afc2c0d8aa4a6e7ddc9"}},
    .max_items = SB_CHAN_MAX_ITEMS,
    .check_item = check_item,
    .address = "15550100000",
    .account_id = "109000000000042",
    .check_render = check_render,
};

const fuzz_channel_t *const fuzz_channels[] = {&whatsapp, NULL};
