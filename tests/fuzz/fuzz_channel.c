/* The fuzz driver body every channel shares (see fuzz_channel.h): one input through verify,
 * parse with the Envelope of every item, the handshake and render of each channel in
 * fuzz_channels[], with the invariants all channels keep; each channel's own rules come from
 * its fuzz_<name>.c. Aborts on a broken invariant. */
#include "fuzz_channel.h"

#include "ingress.h"
#include "sb/codec.h"
#include "sb/ids.h"
#include "sb/redact.h"
#include "sb/seal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_CHANNELS 4

static sb_channel_t *channels[MAX_CHANNELS];
static sb_ingress_keys_t keys;

static void init(void)
{
    if (channels[0]) return;
    if (sb_seal_init() != SB_OK || sb_redact_init() != SB_OK) abort();
    for (size_t i = 0; fuzz_channels[i]; i++) {
        if (i == MAX_CHANNELS) abort();
        sb_config_t cfg;
        memset(&cfg, 0, sizeof cfg);
        fuzz_channels[i]->configure(&cfg);
        char err[256];
        if (sb_channel_create(fuzz_channels[i]->ops, &cfg, &channels[i], err, sizeof err) != SB_OK)
            abort();
    }
    memset(keys.id_secret, 7, sizeof keys.id_secret);
    uint8_t sk[SB_SEAL_KEY_BYTES];
    sb_seal_box_keypair(keys.contact_pk, sk);
    keys.partitions = 8;
}

cJSON *fuzz_json_body(const sb_chan_http_t *req)
{
    cJSON *j = cJSON_ParseWithLength(req->body.data, req->body.len);
    if (!j) abort();
    return j;
}

bool fuzz_has_prefix(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

static void verify(const fuzz_channel_t *fc, const sb_channel_t *ch, const uint8_t *data,
                   size_t size)
{
    sb_http_header_t h[3];
    size_t n = 0;
    for (; n < 3 && fc->headers[n].name; n++)
        h[n] = fc->headers[n];
    char *first_line = NULL;
    if (fc->secret_from_input) {
        const char *nl = memchr(data, '\n', size);
        first_line = sb_xstrndup((const char *)data, nl ? (size_t)(nl - (const char *)data) : size);
        h[0].value = first_line;
    }
    const char *path = fc->path ? fc->path : fc->ops->ingress_path;
    sb_http_request_t req = {.method = "POST",
                             .path = path,
                             .query = "",
                             .target = path,
                             .headers = h,
                             .nheaders = n,
                             .body = data,
                             .body_len = size};
    const char *reason = NULL;
    sb_result_t v = fc->ops->verify(ch, &req, fc->now_s, &reason);
    bool refused = v == SB_E_AUTH || (v == SB_E_INVALID && fc->verify_refuses_unreadable);
    if (v != SB_OK && (!refused || !reason)) abort();
    if (fc->check_verify) fc->check_verify(data, size, &req, v);
    free(first_line);
}

/* The Envelope of it: built (or refused as invalid) with message_id = keyed hash of its key. */
static void check_envelope(const char *channel, const sb_chan_item_t *it)
{
    sb_ingress_msg_t m = {0};
    sb_result_t rc = sb_ingress_build(&keys, channel, it, 0, 1, &m);
    if (rc == SB_E_INVALID) return; /* e.g. text that is not UTF-8: quarantined upstream */
    if (rc != SB_OK) abort();
    char want[SB_SEAL_HASH_HEX];
    sb_ids_message(want, keys.id_secret, it->dedup_key);
    if (strcmp(want, m.message_id) != 0) abort();
    sb_envelope_t *env = NULL;
    if (SB_CODEC_UNPACK(switchboard__v1__envelope__descriptor, m.data, m.len, &env) != SB_OK)
        abort();
    if (strcmp(env->message_id, want) != 0 || env->partition >= keys.partitions) abort();
    SB_CODEC_FREE(env);
    sb_ingress_msg_free(&m);
}

static void parse(const fuzz_channel_t *fc, const sb_channel_t *ch, const uint8_t *data,
                  size_t size)
{
    sb_chan_batch_t b = {0};
    if (fc->ops->parse(ch, data, size, &b) != SB_OK) abort();
    if (b.nitems > fc->max_items) abort();
    if (b.reject_status && (!fc->may_reject || b.nitems)) abort();
    bool says_why = b.reason || (fc->ack_without_reason && (b.nignored || b.reply_body));
    if ((b.quarantine || b.reject_status || b.nitems == 0) && !says_why) abort();
    if (fc->check_batch) fc->check_batch(data, size, &b);
    for (size_t i = 0; i < b.nitems; i++) {
        const sb_chan_item_t *it = &b.items[i];
        if (!it->dedup_key || !it->sender_id) abort();
        fc->check_item(it);
        check_envelope(fc->ops->name, it);
    }
    sb_chan_batch_free(&b);
}

/* A raw "GET <target> HTTP/1.1..." input: the handshake may only echo its own challenge. */
static void handshake(const fuzz_channel_t *fc, const sb_channel_t *ch, const uint8_t *data,
                      size_t size)
{
    const char *s = (const char *)data;
    const char *end = memchr(s, '\n', size);
    size_t line = end ? (size_t)(end - s) : size;
    if (!fc->ops->handshake || line < 4 || line > 4096 || memcmp(s, "GET ", 4) != 0) return;
    char *target = sb_xstrndup(s + 4, line - 4);
    char *sp = strchr(target, ' ');
    if (sp) *sp = '\0';
    char *q = strchr(target, '?');
    sb_http_request_t req = {
        .method = "GET", .path = target, .query = q ? q + 1 : "", .target = target};
    char body[512], challenge[512];
    int st = fc->ops->handshake(ch, &req, body, sizeof body);
    if (st != 200 && st != 403) abort();
    if (st == 200) {
        if (!sb_http_query_param(&req, "hub.challenge", challenge, sizeof challenge)) abort();
        if (strcmp(body, challenge) != 0) abort();
    }
    free(target);
}

/* The input as an outbound message: its text, and the title of its one button. */
static void render(const fuzz_channel_t *fc, const sb_channel_t *ch, const uint8_t *data,
                   size_t size)
{
    char *text = sb_xstrndup((const char *)data, size);
    sb_recipient_t rc = SWITCHBOARD__V1__RECIPIENT__INIT;
    rc.address = (char *)fc->address;
    rc.account_id = (char *)fc->account_id;
    rc.session_id = (char *)fc->session_id;
    sb_outbound_t o = SWITCHBOARD__V1__OUTBOUND__INIT;
    o.message_id = (char *)"out:fuzz";
    o.text = text;
    Switchboard__V1__Button b = SWITCHBOARD__V1__BUTTON__INIT;
    Switchboard__V1__Button *bp[1] = {&b};
    b.id = (char *)"id";
    b.title = text; /* short titles become buttons, long ones a numbered list (or are cut) */
    o.buttons = bp;
    o.n_buttons = 1;
    if (fc->prepare) fc->prepare(&o, &rc, text);
    sb_chan_send_t send = {.out = &o, .rcpt = &rc, .api_base = "http://127.0.0.1", .now_s = 1};
    sb_chan_http_t req = {0};
    sb_result_t r = fc->ops->render(ch, &send, &req);
    fc->check_render(r, &req);
    if (r == SB_OK) sb_chan_http_free(&req);
    free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    init();
    for (size_t i = 0; fuzz_channels[i]; i++) {
        const fuzz_channel_t *fc = fuzz_channels[i];
        if (size > channels[i]->max_body) continue;
        verify(fc, channels[i], data, size);
        parse(fc, channels[i], data, size);
        handshake(fc, channels[i], data, size);
        render(fc, channels[i], data, size);
        if (fc->check_extra) fc->check_extra(channels[i], data, size);
    }
    return 0;
}
