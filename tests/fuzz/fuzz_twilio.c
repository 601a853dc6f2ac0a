/* Fuzz driver for the Twilio channel (router/channel_twilio.c), the form parser it stands on
 * (router/form.c) and the Envelope builder (router/ingress.c). The input is a webhook body:
 * verified against a fixed signature (must refuse, or answer "unreadable" for a body the form
 * parser rejects, never crash), then parsed as if authentic. Invariants: a body the strict form
 * parser accepts is never rejected by parse, one it refuses is rejected with 400 (unless it is
 * JSON); at most 10 items (one per media), each with a "tw:" / "tw-st:" dedup key matching its
 * kind, a sender, and an Envelope whose message_id is the keyed hash of the key; sorting keeps
 * every pair; form-encoding any pair and parsing it back gives the pair again. The input as an
 * outbound text must render a form body that decodes to a Body of at most 1600 characters.
 * libFuzzer entry point; replayed over tests/fixtures/channels/twilio. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "channel.h"
#include "form.h"
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
    cfg.twilio.enabled = true;
    cfg.twilio.auth_token = (char *)"sb-router-test-twilio-token-001";
    cfg.twilio.public_base_url = (char *)"https://router.test.example";
    cfg.twilio.account_sid = (char *)"AC00000000000000000000000000test1";
    cfg.twilio.from = (char *)"+15550100088";
    cfg.twilio.api_base = (char *)"";
    cfg.twilio.max_body_bytes = 1 << 20;
    char err[256];
    if (sb_channel_create(&sb_channel_twilio, &cfg, &ch, err, sizeof err) != SB_OK) abort();
    memset(keys.id_secret, 7, sizeof keys.id_secret);
    uint8_t sk[SB_SEAL_KEY_BYTES];
    sb_seal_box_keypair(keys.contact_pk, sk);
    keys.partitions = 8;
}

static void check_item(const sb_chan_item_t *it)
{
    if (!it->dedup_key || !it->sender_id) abort();
    bool status = strncmp(it->dedup_key, "tw-st:", 6) == 0;
    if (!status && strncmp(it->dedup_key, "tw:", 3) != 0) abort();
    if (status != (it->kind == SB_CHAN_STATUS)) abort();
    if (status && (!it->has_status || it->status.nrefs != 1)) abort();
    if (it->kind == SB_CHAN_MEDIA && (!it->has_media || !it->media.ref || !it->media.type)) abort();
    sb_ingress_msg_t m = {0};
    sb_result_t rc = sb_ingress_build(&keys, "twilio", it, 0, 1, &m);
    if (rc == SB_E_INVALID) return;
    if (rc != SB_OK) abort();
    char want[SB_SEAL_HASH_HEX];
    sb_ids_message(want, keys.id_secret, it->dedup_key);
    if (strcmp(want, m.message_id) != 0) abort();
    sb_ingress_msg_free(&m);
}

static void form_round_trip(const uint8_t *data, size_t size)
{
    sb_form_t f;
    if (sb_form_parse(data, size, 1000, 0, &f) != SB_OK) return;
    size_t n = f.n;
    sb_form_sort(&f);
    if (f.n != n) abort();
    for (size_t i = 1; i < f.n; i++)
        if (strcmp(f.params[i - 1].name, f.params[i].name) > 0 &&
            memchr(f.params[i - 1].name, '\0', f.params[i - 1].name_len) == NULL &&
            memchr(f.params[i].name, '\0', f.params[i].name_len) == NULL)
            abort();
    for (size_t i = 0; i < f.n && i < 4; i++) {
        /* strings with an embedded NUL encode only up to it */
        if (strlen(f.params[i].name) != f.params[i].name_len ||
            strlen(f.params[i].value) != f.params[i].value_len)
            continue;
        sb_buf_t enc = {0};
        sb_form_append(&enc, f.params[i].name, f.params[i].value);
        sb_form_t back;
        if (sb_form_parse((const uint8_t *)enc.data, enc.len, 2, 0, &back) != SB_OK) abort();
        if (f.params[i].name_len == 0 && f.params[i].value_len == 0) {
            /* "=" is a pair with an empty name: kept */
        }
        if (back.n != 1 || strcmp(back.params[0].name, f.params[i].name) != 0 ||
            strcmp(back.params[0].value, f.params[i].value) != 0)
            abort();
        sb_form_free(&back);
        sb_buf_free(&enc);
    }
    sb_form_free(&f);
}

static void render_text(const uint8_t *data, size_t size)
{
    char *text = sb_xstrndup((const char *)data, size);
    sb_recipient_t rc = SWITCHBOARD__V1__RECIPIENT__INIT;
    rc.address = (char *)"+15550104455";
    rc.account_id = (char *)"whatsapp:+15550100088";
    sb_outbound_t o = SWITCHBOARD__V1__OUTBOUND__INIT;
    o.message_id = (char *)"out:fuzz";
    o.text = text;
    Switchboard__V1__Button b = SWITCHBOARD__V1__BUTTON__INIT;
    Switchboard__V1__Button *bp[1] = {&b};
    b.id = (char *)"id";
    b.title = text;
    o.buttons = bp;
    o.n_buttons = 1;
    sb_chan_send_t send = {.out = &o, .rcpt = &rc, .api_base = "http://127.0.0.1", .now_s = 1};
    sb_chan_http_t req = {0};
    if (sb_channel_twilio.render(ch, &send, &req) == SB_OK) {
        sb_form_t f;
        if (sb_form_parse((const uint8_t *)req.body.data, req.body.len, 10, 0, &f) != SB_OK)
            abort();
        const char *body = sb_form_get(&f, "Body");
        if (!body || sb_chan_utf8_len(body) > 1600) abort();
        if (strcmp(sb_form_get(&f, "To"), "whatsapp:+15550104455") != 0) abort();
        sb_form_free(&f);
        sb_chan_http_free(&req);
    }
    free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    init();
    if (size > (1u << 20)) return 0;
    sb_http_header_t h[1] = {{"X-Twilio-Signature", "3eggNqzZh8VWTjsyrzTa27fLJ2k="}};
    sb_http_request_t req = {.method = "POST",
                             .path = "/v1/ingress/twilio/messages",
                             .query = "",
                             .target = "/v1/ingress/twilio/messages",
                             .headers = h,
                             .nheaders = 1,
                             .body = data,
                             .body_len = size};
    const char *reason = NULL;
    sb_result_t v = sb_channel_twilio.verify(ch, &req, 0, &reason);
    if (v != SB_OK && ((v != SB_E_AUTH && v != SB_E_INVALID) || !reason)) abort();

    sb_form_t strict;
    bool form_ok = sb_form_parse(data, size, 1000, SB_FORM_UTF8, &strict) == SB_OK;
    if (form_ok) sb_form_free(&strict);
    bool json = false;
    for (size_t i = 0; i < size; i++) {
        if (data[i] == ' ' || data[i] == '\t' || data[i] == '\r' || data[i] == '\n') continue;
        json = data[i] == '{' || data[i] == '[';
        break;
    }
    if (!json && (v == SB_E_INVALID) == form_ok) abort(); /* verify reads forms like parse */

    sb_chan_batch_t b = {0};
    if (sb_channel_twilio.parse(ch, data, size, &b) != SB_OK) abort();
    if (!json && !form_ok && b.reject_status != 400) abort();
    if ((json || form_ok) && b.reject_status != 0) abort();
    if (b.nitems > 10) abort();
    if ((b.quarantine || b.nitems == 0) && !b.reason) abort();
    for (size_t i = 0; i < b.nitems; i++)
        check_item(&b.items[i]);
    sb_chan_batch_free(&b);

    form_round_trip(data, size);
    render_text(data, size);
    return 0;
}
