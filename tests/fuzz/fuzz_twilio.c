/* Fuzz target of the Twilio channel (router/channel_twilio.c) and the form parser it stands on
 * (router/form.c) through the shared channel driver (fuzz_channel.c, which also checks every
 * item's Envelope). The input is a webhook body with a fixed signature. Twilio's own
 * invariants: verify refuses, or answers "unreadable" (SB_E_INVALID) exactly for a body that
 * is neither JSON nor a form the strict parser accepts, which parse then rejects with 400 (and
 * only that); at most 10 items (one per media), each with a "tw:" / "tw-st:" dedup key matching
 * its kind; sorting keeps every pair; form-encoding any pair and parsing it back gives the
 * pair again. The input as outbound text renders a form body that decodes to a Body of at
 * most 1600 characters, sent to the WhatsApp address. Replayed over
 * tests/fixtures/channels/twilio. */
#include "form.h"
#include "fuzz_channel.h"

static void configure(sb_config_t *cfg)
{
    cfg->twilio.enabled = true;
    cfg->twilio.auth_token = (char *)"sb-router-test-twilio-token-001";
    cfg->twilio.public_base_url = (char *)"https://router.test.example";
    cfg->twilio.account_sid = (char *)"AC00000000000000000000000000test1";
    cfg->twilio.from = (char *)"+15550100088";
    cfg->twilio.api_base = (char *)"";
    cfg->twilio.max_body_bytes = 1 << 20;
}

/* The body reads as a form (the strict parser verify and parse use). */
static bool is_form(const uint8_t *data, size_t size)
{
    sb_form_t strict;
    bool ok = sb_form_parse(data, size, 1000, SB_FORM_UTF8, &strict) == SB_OK;
    if (ok) sb_form_free(&strict);
    return ok;
}

/* The body starts (after white space) like JSON. */
static bool is_json(const uint8_t *data, size_t size)
{
    for (size_t i = 0; i < size; i++) {
        if (data[i] == ' ' || data[i] == '\t' || data[i] == '\r' || data[i] == '\n') continue;
        return data[i] == '{' || data[i] == '[';
    }
    return false;
}

static void check_verify(const uint8_t *data, size_t size, const sb_http_request_t *req,
                         sb_result_t v)
{
    (void)req;
    /* verify reads forms like parse */
    if (!is_json(data, size) && (v == SB_E_INVALID) == is_form(data, size)) abort();
}

static void check_batch(const uint8_t *data, size_t size, const sb_chan_batch_t *b)
{
    bool readable = is_json(data, size) || is_form(data, size);
    if (b->reject_status != (readable ? 0 : 400)) abort();
}

static void check_item(const sb_chan_item_t *it)
{
    bool status = fuzz_has_prefix(it->dedup_key, "tw-st:");
    if (!status && !fuzz_has_prefix(it->dedup_key, "tw:")) abort();
    if (status != (it->kind == SB_CHAN_STATUS)) abort();
    if (status && (!it->has_status || it->status.nrefs != 1)) abort();
    if (it->kind == SB_CHAN_MEDIA && (!it->has_media || !it->media.ref || !it->media.type)) abort();
}

static void check_render(sb_result_t rc, const sb_chan_http_t *req)
{
    if (rc != SB_OK) return;
    sb_form_t f;
    if (sb_form_parse((const uint8_t *)req->body.data, req->body.len, 10, 0, &f) != SB_OK) abort();
    const char *body = sb_form_get(&f, "Body");
    if (!body || sb_chan_utf8_len(body) > 1600) abort();
    if (strcmp(sb_form_get(&f, "To"), "whatsapp:+15550104455") != 0) abort();
    sb_form_free(&f);
}

/* Sorting keeps every pair in order; encoding a pair and parsing it back gives it again. */
static void check_form_round_trip(const sb_channel_t *ch, const uint8_t *data, size_t size)
{
    (void)ch;
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
        /* strings with an embedded NUL encode only up to it; "=" is a pair with an empty
         * name, kept */
        if (strlen(f.params[i].name) != f.params[i].name_len ||
            strlen(f.params[i].value) != f.params[i].value_len)
            continue;
        sb_buf_t enc = {0};
        sb_form_append(&enc, f.params[i].name, f.params[i].value);
        sb_form_t back;
        if (sb_form_parse((const uint8_t *)enc.data, enc.len, 2, 0, &back) != SB_OK) abort();
        if (back.n != 1 || strcmp(back.params[0].name, f.params[i].name) != 0 ||
            strcmp(back.params[0].value, f.params[i].value) != 0)
            abort();
        sb_form_free(&back);
        sb_buf_free(&enc);
    }
    sb_form_free(&f);
}

static const fuzz_channel_t twilio = {
    .ops = &sb_channel_twilio,
    .configure = configure,
    .path = "/v1/ingress/twilio/messages",
    .headers = {{"X-Twilio-Signature", "3eggNqzZh8VWTjsyrzTa27fLJ2k="}},
    .verify_refuses_unreadable = true,
    .check_verify = check_verify,
    .max_items = 10,
    .may_reject = true,
    .check_batch = check_batch,
    .check_item = check_item,
    .address = "+15550104455",
    .account_id = "whatsapp:+15550100088",
    .check_render = check_render,
    .check_extra = check_form_round_trip,
};

const fuzz_channel_t *const fuzz_channels[] = {&twilio, NULL};
