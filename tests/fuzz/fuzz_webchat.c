/* Fuzz driver for the webchat channel (router/channel_webchat.c) and the Envelope builder
 * (router/ingress.c). The input is a webhook body: it is verified (must refuse, never crash),
 * then parsed as if authentic. Invariants: parse always answers; a rejection is 400 or 422 and
 * carries no item; an item has a "wc:" dedup key and a sender; every item either builds an
 * Envelope whose message_id is the keyed hash of its dedup key or is refused as invalid. The
 * input is also rendered as the text of an outbound message, whose body must be valid JSON.
 * libFuzzer entry point; replayed over tests/fixtures/channels/webchat by replay_main.c. */
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
    cfg.webchat.enabled = true;
    cfg.webchat.signing_secret = (char *)"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    cfg.webchat.max_skew_s = 300;
    cfg.webchat.max_body_bytes = 65536;
    cfg.webchat.callback_url = (char *)"";
    char err[256];
    if (sb_channel_create(&sb_channel_webchat, &cfg, &ch, err, sizeof err) != SB_OK) abort();
    memset(keys.id_secret, 7, sizeof keys.id_secret);
    uint8_t sk[SB_SEAL_KEY_BYTES];
    sb_seal_box_keypair(keys.contact_pk, sk);
    keys.partitions = 8;
}

static void check_item(const sb_chan_item_t *it)
{
    if (!it->dedup_key || strncmp(it->dedup_key, "wc:", 3) != 0) abort();
    if (!it->sender_id || !it->account_id) abort();
    sb_ingress_msg_t m = {0};
    sb_result_t rc = sb_ingress_build(&keys, "webchat", it, 0, 1, &m);
    if (rc == SB_E_INVALID) return; /* e.g. text that is not UTF-8: quarantined upstream */
    if (rc != SB_OK) abort();
    char want[SB_SEAL_HASH_HEX];
    sb_ids_message(want, keys.id_secret, it->dedup_key);
    if (strcmp(want, m.message_id) != 0) abort();
    sb_envelope_t *env = NULL;
    if (SB_CODEC_UNPACK(switchboard__v1__envelope__descriptor, m.data, m.len, &env) != SB_OK)
        abort();
    if (strcmp(env->message_id, want) != 0 || env->partition >= 8) abort();
    SB_CODEC_FREE(env);
    sb_ingress_msg_free(&m);
}

static void render_text(const uint8_t *data, size_t size)
{
    char *text = sb_xstrndup((const char *)data, size);
    sb_recipient_t rc = SWITCHBOARD__V1__RECIPIENT__INIT;
    rc.address = (char *)"wcv_fuzz";
    sb_outbound_t o = SWITCHBOARD__V1__OUTBOUND__INIT;
    o.message_id = (char *)"out:fuzz";
    o.text = text;
    sb_chan_http_t req = {0};
    if (sb_channel_webchat.render(
            ch,
            &(sb_chan_send_t){.out = &o, .rcpt = &rc, .api_base = "http://127.0.0.1/x", .now_s = 1},
            &req) == SB_OK) {
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
    if (size > 65536) return 0; /* the route's bound */
    sb_http_header_t h[3] = {
        {"webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek"},
        {"webhook-timestamp", "1614265330"},
        {"webhook-signature", "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="}};
    sb_http_request_t req = {.method = "POST",
                             .path = "/",
                             .query = "",
                             .target = "/",
                             .headers = h,
                             .nheaders = 3,
                             .body = data,
                             .body_len = size};
    const char *reason = NULL;
    sb_result_t v = sb_channel_webchat.verify(ch, &req, 1614265330, &reason);
    if (v != SB_OK && (v != SB_E_AUTH || !reason)) abort();

    sb_chan_batch_t b = {0};
    if (sb_channel_webchat.parse(ch, data, size, &b) != SB_OK) abort();
    if (b.reject_status != 0 && b.reject_status != 400 && b.reject_status != 422) abort();
    if (b.reject_status && (b.nitems || !b.reason)) abort();
    if (b.nitems > 1 || b.quarantine) abort();
    for (size_t i = 0; i < b.nitems; i++)
        check_item(&b.items[i]);
    sb_chan_batch_free(&b);

    render_text(data, size);
    return 0;
}
