/* Fuzz driver for the Meta messaging channels (router/channel_messenger.c,
 * router/channel_instagram.c over router/meta.c) and the Envelope builder (router/ingress.c).
 * The input is a webhook body, verified (must refuse, never crash) and then parsed as if
 * authentic by both channels. Invariants: parse always answers and never rejects (Meta retries
 * any 4xx: unusable input is quarantined); at most SB_CHAN_MAX_ITEMS items, each with a dedup
 * key of its channel's prefix (fb / ig), a sender and an account, status items (and only they)
 * carrying a status, each building an Envelope whose message_id is the keyed hash of its dedup
 * key (or refused as invalid). A raw GET request line goes to the hub.* handshake, which may
 * only ever echo the hub.challenge it was given. The input as outbound text and button title
 * must render valid JSON within the text limits. libFuzzer entry point; replayed over
 * tests/fixtures/channels/{messenger,instagram}. */
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

static sb_channel_t *fb, *ig;
static sb_ingress_keys_t keys;

static void init(void)
{
    if (fb) return;
    if (sb_seal_init() != SB_OK || sb_redact_init() != SB_OK) abort();
    sb_config_t cfg;
    memset(&cfg, 0, sizeof cfg);
    sb_config_meta_t m = {.enabled = true,
                          .app_secret = (char *)"sb-router-test-meta-app-secret-01",
                          .verify_token = (char *)"sb-router-test-verify-token-meta",
                          .access_token = (char *)"fuzz",
                          .api_base = (char *)"",
                          .max_body_bytes = 3 << 20};
    cfg.messenger = m;
    cfg.instagram = m;
    char err[256];
    if (sb_channel_create(&sb_channel_messenger, &cfg, &fb, err, sizeof err) != SB_OK ||
        sb_channel_create(&sb_channel_instagram, &cfg, &ig, err, sizeof err) != SB_OK)
        abort();
    memset(keys.id_secret, 9, sizeof keys.id_secret);
    uint8_t sk[SB_SEAL_KEY_BYTES];
    sb_seal_box_keypair(keys.contact_pk, sk);
    keys.partitions = 8;
}

static bool has_prefix(const char *s, const char *p)
{
    return strncmp(s, p, strlen(p)) == 0;
}

static void check_item(const sb_chan_item_t *it, const char *channel, const char *p)
{
    if (!it->dedup_key || !it->sender_id || !it->account_id) abort();
    char st[8], any[8];
    snprintf(st, sizeof st, "%s-st:", p);
    snprintf(any, sizeof any, "%s", p);
    if (!has_prefix(it->dedup_key, any)) abort();
    bool status = has_prefix(it->dedup_key, st);
    if (status != (it->kind == SB_CHAN_STATUS)) abort();
    if (status != it->has_status) abort();
    if (it->status.nrefs > SB_CHAN_MAX_REFS + 1) abort();
    sb_ingress_msg_t m = {0};
    sb_result_t rc = sb_ingress_build(&keys, channel, it, 0, 1, &m);
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

static void parse(const sb_channel_t *ch, const char *p, const uint8_t *data, size_t size)
{
    sb_chan_batch_t b = {0};
    if (ch->ops->parse(ch, data, size, &b) != SB_OK) abort();
    if (b.reject_status != 0 || b.nitems > SB_CHAN_MAX_ITEMS) abort();
    if ((b.quarantine || b.nitems == 0) && !b.reason) abort();
    for (size_t i = 0; i < b.nitems; i++)
        check_item(&b.items[i], ch->ops->name, p);
    sb_chan_batch_free(&b);
}

static void handshake(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data;
    const char *end = memchr(s, '\n', size);
    size_t line = end ? (size_t)(end - s) : size;
    if (line < 4 || line > 4096 || memcmp(s, "GET ", 4) != 0) return;
    char *target = sb_xstrndup(s + 4, line - 4);
    char *sp = strchr(target, ' ');
    if (sp) *sp = '\0';
    char *q = strchr(target, '?');
    sb_http_request_t req = {
        .method = "GET", .path = target, .query = q ? q + 1 : "", .target = target};
    char body[512], challenge[512];
    int st = sb_channel_messenger.handshake(fb, &req, body, sizeof body);
    if (st != 200 && st != 403) abort();
    if (st == 200) {
        if (!sb_http_query_param(&req, "hub.challenge", challenge, sizeof challenge)) abort();
        if (strcmp(body, challenge) != 0) abort();
    }
    free(target);
}

static void render_text(const sb_channel_t *ch, const uint8_t *data, size_t size, size_t max,
                        bool bytes)
{
    char *text = sb_xstrndup((const char *)data, size);
    sb_recipient_t rc = SWITCHBOARD__V1__RECIPIENT__INIT;
    rc.address = (char *)"7000000000000001";
    sb_outbound_t o = SWITCHBOARD__V1__OUTBOUND__INIT;
    o.message_id = (char *)"out:fuzz";
    o.text = text;
    Switchboard__V1__Button b = SWITCHBOARD__V1__BUTTON__INIT;
    Switchboard__V1__Button *bp[1] = {&b};
    b.id = (char *)"id";
    b.title = text; /* short titles become quick replies, long ones a numbered list */
    o.buttons = bp;
    o.n_buttons = 1;
    sb_chan_send_t send = {.out = &o, .rcpt = &rc, .api_base = "http://127.0.0.1", .now_s = 1};
    sb_chan_http_t req = {0};
    if (ch->ops->render(ch, &send, &req) != SB_OK) abort();
    cJSON *j = cJSON_ParseWithLength(req.body.data, req.body.len);
    if (!j) abort();
    const cJSON *t = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "message"), "text");
    /* Bodies with a NUL stop early; the limit holds for what was sent. */
    if (!cJSON_IsString(t) ||
        (bytes ? strlen(t->valuestring) : sb_chan_utf8_len(t->valuestring)) > max)
        abort();
    cJSON_Delete(j);
    sb_chan_http_free(&req);
    free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    init();
    if (size > (3u << 20)) return 0;
    sb_http_header_t h[1] = {
        {"X-Hub-Signature-256",
         "sha256=cd6e69f5c40b50834443e041e9b936e9c312efe359f344d3cd17d10c93e9b848"}};
    sb_http_request_t req = {.method = "POST",
                             .path = "/",
                             .query = "",
                             .target = "/",
                             .headers = h,
                             .nheaders = 1,
                             .body = data,
                             .body_len = size};
    const char *reason = NULL;
    sb_result_t v = sb_channel_messenger.verify(fb, &req, 0, &reason);
    if (v != SB_OK && (v != SB_E_AUTH || !reason)) abort();

    parse(fb, "fb", data, size);
    parse(ig, "ig", data, size);
    handshake(data, size);
    render_text(fb, data, size, 2000, false);
    render_text(ig, data, size, 1000, true);
    return 0;
}
