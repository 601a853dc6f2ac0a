/* The Twilio Programmable Messaging channel: SMS, MMS and WhatsApp via Twilio (reference §A6).
 *
 * Routes: POST /v1/ingress/twilio/messages (the number's or Messaging Service's "A message
 * comes in" webhook) and /v1/ingress/twilio/status (the StatusCallback of our sends), both
 * under the prefix route /v1/ingress/twilio/.
 *
 * Ingress: `X-Twilio-Signature: base64(HMAC-SHA1(auth token, URL + every POST parameter
 * sorted by name, each as name immediately followed by its decoded value))`. URL is
 * channels.twilio.public_base_url + the request target exactly as the router received it
 * (path and query): never rebuilt from Host or the scheme we see, because a TLS-terminating
 * proxy changes both. Like Twilio's SDK validators, the URL is also tried with the default
 * port added or removed (":443" / ":80"). Several space-separated auth tokens may be
 * configured (primary + secondary during rotation). A JSON-bodied webhook carries
 * `bodySHA256=<hex SHA-256 of the raw body>` in the query: the signature then covers the URL
 * alone and the body is checked against that hash. A form body that cannot be decoded (bad
 * %XX, invalid UTF-8) is answered 400 before any MAC (SB_E_INVALID from verify).
 *
 * Parse: the decoded form becomes one item per message: MessageStatus present -> a status
 * (`tw-st:<MessageSid>:<MessageStatus>`, ErrorCode kept) about our message MessageSid, with
 * the customer in To; otherwise an inbound message (`tw:<MessageSid>`) from From: ButtonPayload
 * -> button reply, NumMedia > 0 -> one media item per MediaUrlN (the second and later with
 * dedup keys `tw:<sid>/<n>`), Latitude/Longitude -> location, Body -> text, else unsupported.
 * Addresses keep their channel prefix in account_id ("whatsapp:+1555...", our number the
 * customer wrote to) and lose it in sender_id ("+44..."), so that SMS and WhatsApp
 * conversations of one number stay apart while the sender id is the plain number. Twilio
 * sends no event time: items are stamped with the receive time by ingress. A body without
 * MessageSid is quarantined, except a voice webhook (CallSid), which is not ours and is
 * acknowledged with nothing published; JSON bodies carry no Messaging webhook and are
 * acknowledged the same way. The answer to Twilio is an empty TwiML `<Response/>`.
 *
 * Egress: POST <base>/Accounts/<AccountSid>/Messages.json with HTTP Basic auth
 * (AccountSid:auth token), a form body To, From (the number the customer wrote to, else
 * channels.twilio.from; an MG... sid is sent as MessagingServiceSid), Body and StatusCallback
 * (public_base_url + /v1/ingress/twilio/status). SMS has no buttons: they are appended as a
 * numbered list ("1. Opening hours"); a customer answering "1" arrives as plain text (the
 * router does not remember the offered buttons). Body is cut to 1600 characters (Twilio's
 * limit, error 21617). Twilio's Messages API has no idempotency key: a send repeated after an
 * egress crash between the call and the ack is sent twice. */
#include "channel.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "form.h"
#include "sb/seal.h"

#define TW_MAX_PARAMS 1000     /* form pairs in one webhook (Twilio sends ~20-40) */
#define TW_MAX_URL 4096        /* public base + request target */
#define TW_MAX_MEDIA 10        /* MMS / WhatsApp media per message */
#define TW_MAX_BODY_CHARS 1600 /* Messages API Body limit */
#define TW_SIG_BYTES 20
#define TW_STATUS_PATH "/v1/ingress/twilio/status"

typedef struct tw_priv {
    sb_chan_secrets_t tokens; /* auth tokens */
    char *base;               /* public_base_url without a trailing '/' */
    char *alt; /* the same with the default port added or removed ("" when not applicable) */
    char *account_sid;
    char *from;
} tw_priv_t;

static bool tw_enabled(const sb_config_t *cfg)
{
    return cfg->twilio.enabled;
}

static size_t tw_max_body(const sb_config_t *cfg)
{
    return (size_t)cfg->twilio.max_body_bytes;
}

static const char *tw_api_base(const sb_config_t *cfg)
{
    return cfg->twilio.api_base ? cfg->twilio.api_base : "";
}

static int64_t tw_rate(const sb_config_t *cfg)
{
    return cfg->twilio.rate_per_s;
}

static const char *const tw_required[] = {"channels.twilio.auth_token",
                                          "channels.twilio.public_base_url", NULL};

static void tw_destroy(sb_channel_t *ch)
{
    tw_priv_t *p = ch->priv;
    if (!p) return;
    sb_chan_secrets_close(&p->tokens);
    free(p->base);
    free(p->alt);
    free(p->account_sid);
    free(p->from);
    free(p);
    ch->priv = NULL;
}

/* "https://host[:port][/prefix]" with the default port toggled, or "" when the URL has no
 * recognisable scheme://authority. */
static char *toggle_default_port(const char *url)
{
    const char *port = NULL;
    size_t skip = 0;
    if (strncmp(url, "https://", 8) == 0)
        port = ":443", skip = 8;
    else if (strncmp(url, "http://", 7) == 0)
        port = ":80", skip = 7;
    else
        return sb_xstrdup("");
    const char *host = url + skip;
    size_t hlen = strcspn(host, "/?#");
    const char *rest = host + hlen;
    size_t plen = strlen(port);
    if (hlen > plen && memcmp(host + hlen - plen, port, plen) == 0)
        return sb_xasprintf("%.*s%.*s%s", (int)skip, url, (int)(hlen - plen), host, rest);
    if (memchr(host, ':', hlen) && host[0] != '[') return sb_xstrdup(""); /* another port */
    return sb_xasprintf("%.*s%.*s%s%s", (int)skip, url, (int)hlen, host, port, rest);
}

static sb_result_t tw_create(sb_channel_t *ch, const sb_config_t *cfg, char *err, size_t errlen)
{
    tw_priv_t *p = sb_xcalloc(1, sizeof *p);
    ch->priv = p;
    size_t ntokens = sb_chan_secrets_init(&p->tokens, cfg->twilio.auth_token);
    const char *base = cfg->twilio.public_base_url ? cfg->twilio.public_base_url : "";
    size_t blen = strlen(base);
    while (blen > 0 && base[blen - 1] == '/')
        blen--;
    p->base = sb_xstrndup(base, blen);
    p->alt = toggle_default_port(p->base);
    p->account_sid = sb_xstrdup(cfg->twilio.account_sid ? cfg->twilio.account_sid : "");
    p->from = sb_xstrdup(cfg->twilio.from ? cfg->twilio.from : "");
    if (ntokens == 0) {
        snprintf(err, errlen, "channels.twilio.auth_token: not set");
        goto fail;
    }
    if (strncmp(p->base, "https://", 8) != 0 && strncmp(p->base, "http://", 7) != 0) {
        snprintf(err, errlen,
                 "channels.twilio.public_base_url: expected the scheme://host[:port] that "
                 "Twilio calls (signatures cover that exact URL)");
        goto fail;
    }
    if (strpbrk(p->base + (p->base[4] == 's' ? 8 : 7), "?#")) {
        snprintf(err, errlen, "channels.twilio.public_base_url: no query or fragment allowed");
        goto fail;
    }
    return SB_OK;
fail:
    tw_destroy(ch);
    return SB_E_CONFIG;
}

/* ---- verify ---- */

/* HMAC-SHA1 of url + params (sorted) with every token: true when one equals sig. */
static bool check_sig(const tw_priv_t *p, const char *url, const sb_form_t *f,
                      const uint8_t sig[TW_SIG_BYTES])
{
    size_t nparts = 1 + 2 * (f ? f->n : 0);
    sb_seal_part_t *parts = sb_xcalloc(nparts, sizeof *parts);
    parts[0].data = url;
    parts[0].len = strlen(url);
    for (size_t i = 0; f && i < f->n; i++) {
        parts[1 + 2 * i].data = f->params[i].name;
        parts[1 + 2 * i].len = f->params[i].name_len;
        parts[2 + 2 * i].data = f->params[i].value;
        parts[2 + 2 * i].len = f->params[i].value_len;
    }
    bool ok = false;
    for (size_t i = 0; i < p->tokens.n; i++) {
        uint8_t mac[TW_SIG_BYTES];
        if (sb_seal_hmac_sha1(mac, p->tokens.v[i], strlen(p->tokens.v[i]), parts, nparts) != SB_OK)
            continue;
        ok |= sb_seal_equal(mac, sig, sizeof mac);
        sb_seal_wipe(mac, sizeof mac);
    }
    free(parts);
    return ok;
}

static sb_result_t tw_verify(const sb_channel_t *ch, const sb_http_request_t *req, int64_t now_s,
                             const char **reason)
{
    (void)now_s; /* Twilio signs no timestamp: replay protection is TLS + dedup on MessageSid */
    const tw_priv_t *p = ch->priv;
    sb_result_t rc = SB_E_AUTH;
    sb_form_t form = {0};
    const char *h = sb_http_header(req, "X-Twilio-Signature");
    uint8_t sig[TW_SIG_BYTES];
    size_t slen = 0;
    if (!h || !*h) {
        *reason = "missing_signature";
        return SB_E_AUTH;
    }
    if (strlen(h) > 64 || sb_seal_base64_decode(sig, sizeof sig, &slen, h, strlen(h)) != SB_OK ||
        slen != TW_SIG_BYTES) {
        *reason = "malformed_signature";
        return SB_E_AUTH;
    }
    const char *target = req->target ? req->target : "";
    if (strlen(p->base) + strlen(target) > TW_MAX_URL) {
        *reason = "url_too_long";
        return SB_E_AUTH;
    }
    char want_hex[65];
    bool json = sb_http_query_param(req, "bodySHA256", want_hex, sizeof want_hex);
    if (json) {
        /* JSON body: the URL (with bodySHA256) is signed, the body is bound by its hash. */
        uint8_t want[32], got[32];
        size_t wlen = 0;
        if (strlen(want_hex) != 64 ||
            sb_seal_hex_decode(want, sizeof want, &wlen, want_hex, 64) != SB_OK || wlen != 32) {
            *reason = "malformed_body_hash";
            return SB_E_AUTH;
        }
        sb_seal_sha256(got, req->body, req->body_len);
        if (!sb_seal_equal(want, got, sizeof got)) {
            *reason = "body_hash_mismatch";
            return SB_E_AUTH;
        }
    } else if (sb_form_parse(req->body, req->body_len, TW_MAX_PARAMS, SB_FORM_UTF8, &form) !=
               SB_OK) {
        *reason = "bad_form_encoding";
        return SB_E_INVALID; /* answered 400: unreadable before any MAC */
    } else {
        sb_form_sort(&form);
    }
    char *url = sb_xasprintf("%s%s", p->base, target);
    bool ok = check_sig(p, url, json ? NULL : &form, sig);
    free(url);
    if (!ok && p->alt[0]) {
        url = sb_xasprintf("%s%s", p->alt, target);
        ok = check_sig(p, url, json ? NULL : &form, sig);
        free(url);
    }
    if (ok) {
        rc = SB_OK;
    } else {
        *reason = "bad_signature";
    }
    sb_form_free(&form);
    return rc;
}

/* ---- parse ---- */

/* Twilio ids (MessageSid, AccountSid): letters and digits only, 2..64. */
static bool is_sid(const char *s)
{
    size_t n = 0;
    for (; s[n]; n++)
        if (!isalnum((unsigned char)s[n])) return false;
    return n >= 2 && n <= 64;
}

/* A status or type token: [a-z_] only, 1..32. */
static bool is_token(const char *s)
{
    size_t n = 0;
    for (; s[n]; n++)
        if (!(islower((unsigned char)s[n]) || s[n] == '_')) return false;
    return n >= 1 && n <= 32;
}

/* The value of name when present and non-empty (bounded), else NULL. */
static const char *get(const sb_form_t *f, const char *name, size_t max)
{
    const char *v = sb_form_get(f, name);
    if (!v || !*v || strlen(v) > max) return NULL;
    return v;
}

/* "whatsapp:+447700900123" -> "+447700900123"; an address without a channel prefix stays. */
static const char *strip_prefix(const char *addr)
{
    const char *c = strchr(addr, ':');
    if (!c || c == addr) return addr;
    for (const char *q = addr; q < c; q++)
        if (!isalpha((unsigned char)*q)) return addr;
    return c + 1;
}

static void set_party(sb_chan_item_t *it, const char *customer, const char *ours)
{
    const char *plain = strip_prefix(customer);
    it->sender_id = sb_xstrdup(plain);
    if (plain[0] == '+') it->phone = sb_xstrdup(plain);
    if (ours) it->account_id = sb_xstrdup(ours);
}

static bool parse_double(const char *s, double lo, double hi, double *out)
{
    if (!s || !*s || strlen(s) > 32) return false;
    char *end = NULL;
    double v = strtod(s, &end);
    if (!end || *end != '\0' || !isfinite(v) || v < lo || v > hi) return false;
    *out = v;
    return true;
}

/* Non-negative decimal of at most 9 digits. */
static bool parse_uint(const char *s, int64_t *out)
{
    if (!s || !*s || strlen(s) > 9) return false;
    int64_t v = 0;
    for (const char *q = s; *q; q++) {
        if (!isdigit((unsigned char)*q)) return false;
        v = v * 10 + (*q - '0');
    }
    *out = v;
    return true;
}

/* The media reference put on the bus: the Media sid (ME...) of a Twilio media URL
 * ".../Accounts/<AC>/Messages/<MM>/Media/<ME>", which names the file without naming the account
 * or the message (the URL is rebuilt from the sealed MessageSid and the configured account
 * when the bytes are fetched, with Basic auth); any other URL as it is. */
static char *media_ref(const char *url)
{
    const char *m = strstr(url, "/Media/");
    if (m && strstr(url, "/Messages/") && strncmp(m + 7, "ME", 2) == 0) {
        size_t n = strcspn(m + 7, "/?#");
        char *sid = sb_xstrndup(m + 7, n);
        if (is_sid(sid)) return sid;
        free(sid);
    }
    return sb_xstrdup(url);
}

static char *media_type(const char *mime)
{
    static const char *const types[] = {"image", "video", "audio", NULL};
    for (size_t i = 0; types[i]; i++) {
        size_t n = strlen(types[i]);
        if (mime && strncmp(mime, types[i], n) == 0 && mime[n] == '/') return sb_xstrdup(types[i]);
    }
    return sb_xstrdup("document");
}

static void set_reply(sb_chan_batch_t *out)
{
    /* An empty TwiML document: "received, nothing to send back now". */
    out->reply_body = sb_xstrdup("<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response/>");
    out->reply_type = "text/xml";
}

static void parse_status(const sb_form_t *f, const char *sid, const char *state,
                         sb_chan_batch_t *out, size_t *cap)
{
    const char *to = get(f, "To", SB_CHAN_MAX_ID);
    if (!is_token(state) || !to) {
        sb_chan_batch_quarantine(out, "status without a valid MessageStatus or To");
        return;
    }
    sb_chan_item_t *it = sb_chan_batch_slot(out, cap);
    it->kind = SB_CHAN_STATUS;
    it->dedup_key = sb_xasprintf("tw-st:%s:%s", sid, state);
    set_party(it, to, get(f, "From", SB_CHAN_MAX_ID));
    it->has_status = true;
    it->status.state = sb_xstrdup(state);
    it->status.refs = sb_xcalloc(1, sizeof(char *));
    it->status.refs[0] = sb_xstrdup(sid);
    it->status.nrefs = 1;
    int64_t code = 0;
    if (parse_uint(get(f, "ErrorCode", 16), &code)) it->status.error_code = code;
    out->nitems++;
}

/* Fills the fields every inbound item of the message shares. */
static void inbound_common(sb_chan_item_t *it, const sb_form_t *f, const char *sid,
                           const char *from)
{
    it->provider_message_id = sb_xstrdup(sid);
    set_party(it, from, get(f, "To", SB_CHAN_MAX_ID));
    const char *name = get(f, "ProfileName", 256);
    if (name) it->sender_name = sb_xstrdup(name);
    const char *orig = get(f, "OriginalRepliedMessageSid", SB_CHAN_MAX_ID);
    if (orig && is_sid(orig)) it->in_reply_to = sb_xstrdup(orig);
}

static void parse_inbound(const sb_form_t *f, const char *sid, sb_chan_batch_t *out, size_t *cap)
{
    const char *from = get(f, "From", SB_CHAN_MAX_ID);
    const char *body = sb_form_get(f, "Body");
    if (!from) {
        sb_chan_batch_quarantine(out, "message without From");
        return;
    }
    if (body && strlen(body) > SB_CHAN_MAX_TEXT) {
        sb_chan_batch_quarantine(out, "Body too long");
        return;
    }
    const char *text = body && *body ? body : NULL;
    const char *payload = get(f, "ButtonPayload", 1024);
    const char *nmedia_s = get(f, "NumMedia", 16);
    int64_t nmedia = 0;
    if (nmedia_s && (!parse_uint(nmedia_s, &nmedia) || nmedia > TW_MAX_MEDIA)) {
        sb_chan_batch_quarantine(out, "bad NumMedia");
        return;
    }
    const char *lat_s = get(f, "Latitude", 32), *lon_s = get(f, "Longitude", 32);

    if (payload) {
        sb_chan_item_t *it = sb_chan_batch_slot(out, cap);
        inbound_common(it, f, sid, from);
        it->kind = SB_CHAN_BUTTON_REPLY;
        it->dedup_key = sb_xasprintf("tw:%s", sid);
        it->button_payload = sb_xstrdup(payload);
        const char *title = get(f, "ButtonText", 256);
        if (title) it->button_title = sb_xstrdup(title);
        out->nitems++;
        return;
    }
    if (nmedia > 0) {
        /* Check every MediaUrlN first: a half-readable MMS is quarantined as a whole. */
        char key[48];
        for (int64_t i = 0; i < nmedia; i++) {
            snprintf(key, sizeof key, "MediaUrl%lld", (long long)i);
            if (!get(f, key, 2048)) {
                sb_chan_batch_quarantine(out, "NumMedia without MediaUrlN");
                return;
            }
        }
        for (int64_t i = 0; i < nmedia; i++) {
            sb_chan_item_t *it = sb_chan_batch_slot(out, cap);
            inbound_common(it, f, sid, from);
            it->kind = SB_CHAN_MEDIA;
            it->dedup_key =
                i == 0 ? sb_xasprintf("tw:%s", sid) : sb_xasprintf("tw:%s/%lld", sid, (long long)i);
            it->has_media = true;
            snprintf(key, sizeof key, "MediaUrl%lld", (long long)i);
            it->media.ref = media_ref(get(f, key, 2048));
            snprintf(key, sizeof key, "MediaContentType%lld", (long long)i);
            const char *mime = get(f, key, 128);
            if (mime) it->media.mime = sb_xstrdup(mime);
            it->media.type = media_type(mime);
            if (i == 0 && text) it->media.caption = sb_xstrdup(text);
            out->nitems++;
        }
        return;
    }
    if (lat_s || lon_s) {
        double lat = 0, lon = 0;
        if (!parse_double(lat_s, -90, 90, &lat) || !parse_double(lon_s, -180, 180, &lon)) {
            sb_chan_batch_quarantine(out, "bad Latitude/Longitude");
            return;
        }
        sb_chan_item_t *it = sb_chan_batch_slot(out, cap);
        inbound_common(it, f, sid, from);
        it->kind = SB_CHAN_LOCATION;
        it->dedup_key = sb_xasprintf("tw:%s", sid);
        it->has_location = true;
        it->location.latitude = lat;
        it->location.longitude = lon;
        const char *label = get(f, "Label", 1024), *addr = get(f, "Address", 1024);
        if (label) it->location.name = sb_xstrdup(label);
        if (addr) it->location.address = sb_xstrdup(addr);
        out->nitems++;
        return;
    }
    sb_chan_item_t *it = sb_chan_batch_slot(out, cap);
    inbound_common(it, f, sid, from);
    it->dedup_key = sb_xasprintf("tw:%s", sid);
    if (text) {
        it->kind = SB_CHAN_TEXT;
        it->text = sb_xstrdup(text);
    } else {
        it->kind = SB_CHAN_UNSUPPORTED; /* e.g. a WhatsApp sticker or reaction without Body */
    }
    out->nitems++;
}

static sb_result_t tw_parse(const sb_channel_t *ch, const uint8_t *body, size_t len,
                            sb_chan_batch_t *out)
{
    (void)ch;
    size_t i = 0;
    while (i < len && (body[i] == ' ' || body[i] == '\t' || body[i] == '\r' || body[i] == '\n'))
        i++;
    if (i < len && (body[i] == '{' || body[i] == '[')) {
        /* JSON-bodied webhooks (bodySHA256) come from other Twilio products; Messaging posts
         * forms. Authentic, so acknowledged; nothing of ours to publish. */
        struct cJSON *j = sb_chan_json_parse(body, len);
        if (!j)
            sb_chan_batch_quarantine(out, "JSON body that does not parse");
        else
            out->reason = "JSON-bodied webhook: not a Messaging webhook";
        cJSON_Delete(j);
        return SB_OK;
    }
    sb_form_t f = {0};
    if (sb_form_parse(body, len, TW_MAX_PARAMS, SB_FORM_UTF8, &f) != SB_OK) {
        out->reject_status = 400; /* verify refuses these first; kept for direct callers */
        out->reason = "bad form encoding";
        return SB_OK;
    }
    set_reply(out);
    size_t cap = 0;
    const char *sid = get(&f, "MessageSid", 64);
    if (!sid) {
        if (get(&f, "CallSid", 64))
            out->reason = "voice webhook (CallSid): not a Messaging webhook";
        else
            sb_chan_batch_quarantine(out, "signature valid, MessageSid absent");
        goto done;
    }
    if (!is_sid(sid)) {
        sb_chan_batch_quarantine(out, "MessageSid is not a Twilio sid");
        goto done;
    }
    const char *state = get(&f, "MessageStatus", 64);
    if (state)
        parse_status(&f, sid, state, out, &cap);
    else
        parse_inbound(&f, sid, out, &cap);
done:
    sb_form_free(&f);
    return SB_OK;
}

/* ---- egress ---- */

/* Appends text cut to max UTF-8 characters ("..." marks a cut). */
static void append_cut(sb_buf_t *b, const char *s, size_t max)
{
    size_t chars = 0, i = 0;
    size_t total = sb_chan_utf8_len(s);
    if (total <= max) {
        sb_buf_append(b, s, strlen(s));
        return;
    }
    for (; s[i]; i++) {
        if (((unsigned char)s[i] & 0xC0) != 0x80) {
            if (chars == max - 3) break;
            chars++;
        }
    }
    sb_buf_append(b, s, i);
    sb_buf_append(b, "...", 3);
}

static sb_result_t tw_render(const sb_channel_t *ch, const sb_chan_send_t *send,
                             sb_chan_http_t *req)
{
    const tw_priv_t *p = ch->priv;
    const sb_outbound_t *o = send->out;
    const sb_recipient_t *rcpt = send->rcpt;
    if (!rcpt->address || !*rcpt->address || !is_sid(p->account_sid) || strlen(rcpt->address) > 64)
        return SB_E_INVALID;
    /* Reply from the number the customer wrote to; else the configured sender. */
    const char *from = rcpt->account_id && *rcpt->account_id ? rcpt->account_id : p->from;
    if (!from || !*from) return SB_E_INVALID;
    bool service = strncmp(from, "MG", 2) == 0 && is_sid(from);

    /* The customer's address gets the sender's channel prefix ("whatsapp:") back. */
    char *to = NULL;
    const char *plain_from = strip_prefix(from);
    if (!service && plain_from != from && strip_prefix(rcpt->address) == rcpt->address)
        to = sb_xasprintf("%.*s%s", (int)(plain_from - from), from, rcpt->address);
    else
        to = sb_xstrdup(rcpt->address);

    /* SMS has no buttons: the text, then a numbered list of the button titles. */
    char *text = sb_chan_button_list(o->text, o);
    sb_buf_t body_text = {0};
    append_cut(&body_text, text, TW_MAX_BODY_CHARS);
    free(text);
    if (body_text.len == 0) {
        free(to);
        sb_buf_free(&body_text);
        return SB_E_INVALID; /* Twilio refuses an empty Body without media */
    }

    sb_chan_http_t r = {0};
    r.method = "POST";
    r.url = sb_xasprintf("%s/Accounts/%s/Messages.json", send->api_base, p->account_sid);
    sb_form_append(&r.body, "To", to);
    sb_form_append(&r.body, service ? "MessagingServiceSid" : "From", from);
    sb_form_append(&r.body, "Body", body_text.data);
    if (p->base[0]) {
        char *cb = sb_xasprintf("%s%s", p->base, TW_STATUS_PATH);
        sb_form_append(&r.body, "StatusCallback", cb);
        free(cb);
    }
    free(to);
    sb_buf_free(&body_text);

    /* HTTP Basic: base64(AccountSid ":" auth token), the primary (first) token. */
    char *cred = sb_xasprintf("%s:%s", p->account_sid, p->tokens.v[0]);
    size_t clen = strlen(cred);
    char *b64 = sb_xmalloc(sb_seal_base64_len(clen));
    sb_seal_base64_encode(b64, cred, clen);
    sb_chan_http_add_header(&r, "Authorization: Basic %s", b64);
    sb_seal_wipe(cred, clen);
    sb_seal_wipe(b64, strlen(b64));
    free(cred);
    free(b64);
    sb_chan_http_add_header(&r, "Content-Type: application/x-www-form-urlencoded");
    sb_chan_http_add_header(&r, "Accept: application/json");
    *req = r;
    return SB_OK;
}

/* Twilio answers {"sid":"SM...","status":"queued",...} on 201 and
 * {"code":21211,"message":"...","more_info":"...","status":400} on errors. */
static void tw_parse_response(const sb_channel_t *ch, long status, const char *body, size_t len,
                              sb_chan_response_t *res)
{
    (void)ch;
    (void)status;
    struct cJSON *j = sb_chan_json_parse((const uint8_t *)body, len);
    if (!j) return;
    const char *sid = sb_chan_json_str(j, "sid", 64);
    if (res->ok && sid && is_sid(sid)) sb_chan_response_set_id(res, sid);
    const cJSON *code = cJSON_GetObjectItemCaseSensitive(j, "code");
    if (!res->ok && cJSON_IsNumber(code) && code->valuedouble > 0 && code->valuedouble < 1e9) {
        res->error_code = (int64_t)code->valuedouble;
        char tok[24];
        snprintf(tok, sizeof tok, "%lld", (long long)res->error_code);
        sb_chan_response_set_error(res, tok);
        /* 20429: too many requests; 20500/20503: Twilio's own internal errors. */
        if (res->error_code == 20429 || res->error_code == 20500 || res->error_code == 20503)
            res->retry = true;
    }
    cJSON_Delete(j);
}

const sb_channel_ops_t sb_channel_twilio = {
    .name = "twilio",
    .ingress_path = "/v1/ingress/twilio/",
    .enabled = tw_enabled,
    .required_keys = tw_required,
    .max_body = tw_max_body,
    .api_base = tw_api_base,
    .create = tw_create,
    .destroy = tw_destroy,
    .verify = tw_verify,
    .parse = tw_parse,
    .render = tw_render,
    .parse_response = tw_parse_response,
    .rate_per_s = tw_rate,
};
