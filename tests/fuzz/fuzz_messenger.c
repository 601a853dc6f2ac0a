/* Fuzz target of the Meta messaging channels (router/channel_messenger.c and
 * router/channel_instagram.c over router/meta.c) through the shared channel driver
 * (fuzz_channel.c, which also checks every item's Envelope and the hub.* handshake): the same
 * input goes through both channels. Their own invariants: parse never rejects (Meta retries any
 * 4xx: unusable input is quarantined); at most SB_CHAN_MAX_ITEMS items, each with a dedup key
 * of its channel's prefix (fb / ig) and an account, status items (and only they) carrying a
 * status; the input as outbound text and button title always renders valid JSON within the
 * text limit (Messenger 2000 characters, Instagram 1000 bytes). Replayed over
 * tests/fixtures/channels/{messenger,instagram}. */
#include "fuzz_channel.h"

static void configure(sb_config_t *cfg)
{
    sb_config_meta_t m = {.enabled = true,
                          .app_secret = (char *)"sb-router-test-meta-app-secret-01",
                          .verify_token = (char *)"sb-router-test-verify-token-meta",
                          .access_token = (char *)"fuzz",
                          .api_base = (char *)"",
                          .max_body_bytes = 3 << 20};
    cfg->messenger = m;
    cfg->instagram = m;
}

static void check_item(const sb_chan_item_t *it, const char *prefix)
{
    char st[8];
    snprintf(st, sizeof st, "%s-st:", prefix);
    if (!it->account_id || !fuzz_has_prefix(it->dedup_key, prefix)) abort();
    bool status = fuzz_has_prefix(it->dedup_key, st);
    if (status != (it->kind == SB_CHAN_STATUS)) abort();
    if (status != it->has_status) abort();
    if (it->status.nrefs > SB_CHAN_MAX_REFS + 1) abort();
}

static void check_fb_item(const sb_chan_item_t *it)
{
    check_item(it, "fb");
}

static void check_ig_item(const sb_chan_item_t *it)
{
    check_item(it, "ig");
}

/* Bodies with a NUL stop early; the limit holds for what was sent. */
static void check_render(sb_result_t rc, const sb_chan_http_t *req, size_t max, bool bytes)
{
    if (rc != SB_OK) abort();
    cJSON *j = fuzz_json_body(req);
    const cJSON *t = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "message"), "text");
    if (!cJSON_IsString(t) ||
        (bytes ? strlen(t->valuestring) : sb_chan_utf8_len(t->valuestring)) > max)
        abort();
    cJSON_Delete(j);
}

static void check_fb_render(sb_result_t rc, const sb_chan_http_t *req)
{
    check_render(rc, req, 2000, false);
}

static void check_ig_render(sb_result_t rc, const sb_chan_http_t *req)
{
    check_render(rc, req, 1000, true);
}

static const fuzz_channel_t messenger = {
    .ops = &sb_channel_messenger,
    .configure = configure,
    .headers = {{"X-Hub-Signature-256",
                 "sha256=cd6e69f5c40b50834443e041e9b936e9c312efe359f344d3cd17d10c93e9b848"}},
    .max_items = SB_CHAN_MAX_ITEMS,
    .check_item = check_fb_item,
    .address = "7000000000000001",
    .check_render = check_fb_render,
};

static const fuzz_channel_t instagram = {
    .ops = &sb_channel_instagram,
    .configure = configure,
    .headers = {{"X-Hub-Signature-256",
                 "sha256=cd6e69f5c40b50834443e041e9b936e9c312efe359f344d3cd17d10c93e9b848"}},
    .max_items = SB_CHAN_MAX_ITEMS,
    .check_item = check_ig_item,
    .address = "7000000000000001",
    .check_render = check_ig_render,
};

const fuzz_channel_t *const fuzz_channels[] = {&messenger, &instagram, NULL};
