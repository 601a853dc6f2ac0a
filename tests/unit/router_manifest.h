/* Table-driven checks of a channel against a fixture manifest (the shared format of
 * $SB_SHARED_DIR/channels/<channel>/manifest.json, also used by the router's own fixtures in
 * tests/fixtures/channels/). Included by the router's channel unit tests; every function is
 * static. For each case: build the exact request (headers, body or raw GET line), verify it at
 * the case's verify_now, then parse it and compare the normalized items with `expect`, and
 * build each item's Envelope to check its ids and that no PII is left outside the sealed part. */
#ifndef SB_ROUTER_MANIFEST_H
#define SB_ROUTER_MANIFEST_H

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "channel.h"
#include "ingress.h"
#include "sb/codec.h"
#include "sb/ids.h"
#include "sb/redact.h"
#include "sb/seal.h"

#define FX_MAX_HEADERS 16

typedef struct fx_case {
    const cJSON *c; /* the case, borrowed from the manifest */
    const cJSON *expect;
    char *body;
    size_t len;
    sb_http_header_t headers[FX_MAX_HEADERS];
    sb_http_request_t req;
    char path[512], query[1024], target[1536];
    char label[160];
} fx_case_t;

/* Keys for building Envelopes in tests. */
typedef struct fx_keys {
    sb_ingress_keys_t ik;
    uint8_t contact_sk[SB_SEAL_KEY_BYTES];
} fx_keys_t;

static void fx_keys_init(fx_keys_t *k)
{
    memset(k, 0, sizeof *k);
    sb_seal_random(k->ik.id_secret, sizeof k->ik.id_secret);
    sb_seal_box_keypair(k->ik.contact_pk, k->contact_sk);
    k->ik.partitions = 8;
}

static const char *fx_str(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static char *fx_dir(const char *env, const char *sub)
{
    const char *root = getenv(env);
    if (!root || !*root) return NULL;
    return sb_xasprintf("%s/%s", root, sub);
}

/* The manifest of dir, or NULL when the directory is absent. */
static cJSON *fx_load_manifest(const char *dir)
{
    char *path = sb_xasprintf("%s/manifest.json", dir);
    char *data = NULL;
    size_t len = 0;
    cJSON *m = NULL;
    if (sb_read_file(path, 1 << 20, &data, &len) == SB_OK) {
        m = cJSON_ParseWithLength(data, len);
        assert_non_null(m);
    }
    free(data);
    free(path);
    return m;
}

static void fx_load_case(const char *dir, const cJSON *c, fx_case_t *fc)
{
    memset(fc, 0, sizeof *fc);
    fc->c = c;
    fc->expect = cJSON_GetObjectItemCaseSensitive(c, "expect");
    const char *file = fx_str(c, "file");
    assert_non_null(file);
    snprintf(fc->label, sizeof fc->label, "%s%s%s", file, fx_str(c, "case") ? "#" : "",
             fx_str(c, "case") ? fx_str(c, "case") : "");
    char *path = sb_xasprintf("%s/%s", dir, file);
    assert_int_equal(sb_read_file(path, 8 << 20, &fc->body, &fc->len), SB_OK);
    free(path);

    const char *method = fx_str(c, "method");
    fc->req.method = method ? method : "POST";
    snprintf(fc->path, sizeof fc->path, "%s", fx_str(c, "path") ? fx_str(c, "path") : "/");
    if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(c, "raw_http"))) {
        /* "GET <target> HTTP/1.1\r\n...": take the request line's target. */
        char *sp1 = strchr(fc->body, ' ');
        assert_non_null(sp1);
        char *sp2 = strchr(sp1 + 1, ' ');
        assert_non_null(sp2);
        snprintf(fc->target, sizeof fc->target, "%.*s", (int)(sp2 - sp1 - 1), sp1 + 1);
        char *q = strchr(fc->target, '?');
        snprintf(fc->path, sizeof fc->path, "%.*s",
                 (int)(q ? (size_t)(q - fc->target) : strlen(fc->target)), fc->target);
        snprintf(fc->query, sizeof fc->query, "%s", q ? q + 1 : "");
        fc->req.body = (const uint8_t *)"";
        fc->req.body_len = 0;
    } else {
        snprintf(fc->target, sizeof fc->target, "%s", fc->path);
        fc->req.body = (const uint8_t *)fc->body;
        fc->req.body_len = fc->len;
    }
    fc->req.path = fc->path;
    fc->req.query = fc->query;
    fc->req.target = fc->target;
    const cJSON *h;
    cJSON_ArrayForEach(h, cJSON_GetObjectItemCaseSensitive(c, "headers"))
    {
        assert_true(fc->req.nheaders < FX_MAX_HEADERS);
        fc->headers[fc->req.nheaders].name = h->string;
        fc->headers[fc->req.nheaders].value = h->valuestring;
        fc->req.nheaders++;
    }
    fc->req.headers = fc->headers;
}

static void fx_case_free(fx_case_t *fc)
{
    free(fc->body);
    fc->body = NULL;
}

/* Errata of the shared fixture set, applied where a case's data contradicts its own
 * documentation. slack message_im_text.json#stale_timestamp_replay: the README and the note
 * say "verify_now is 602 s later" than X-Slack-Request-Timestamp 1772442300, i.e. 1772442902,
 * but the manifest carries 1772442302 (2 s later, inside the window). */
static int64_t fx_verify_now_erratum(const cJSON *manifest, const cJSON *c, int64_t now)
{
    const cJSON *ch = cJSON_GetObjectItemCaseSensitive(manifest, "channel");
    const cJSON *cs = cJSON_GetObjectItemCaseSensitive(c, "case");
    if (cJSON_IsString(ch) && strcmp(ch->valuestring, "slack") == 0 && cJSON_IsString(cs) &&
        strcmp(cs->valuestring, "stale_timestamp_replay") == 0 && now == 1772442302)
        return 1772442300 + 602;
    return now;
}

static int64_t fx_now(const cJSON *manifest, const cJSON *c)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(c, "verify_now");
    if (cJSON_IsNumber(v)) return fx_verify_now_erratum(manifest, c, (int64_t)v->valuedouble);
    v = cJSON_GetObjectItemCaseSensitive(manifest, "fixture_epoch");
    return cJSON_IsNumber(v) ? (int64_t)v->valuedouble : 0;
}

static sb_chan_kind_t fx_kind(const char *k)
{
    static const struct {
        const char *name;
        sb_chan_kind_t kind;
    } map[] = {{"text", SB_CHAN_TEXT},
               {"button_reply", SB_CHAN_BUTTON_REPLY},
               {"media", SB_CHAN_MEDIA},
               {"location", SB_CHAN_LOCATION},
               {"status", SB_CHAN_STATUS},
               {"session", SB_CHAN_SESSION},
               {"unsupported", SB_CHAN_UNSUPPORTED},
               {"contact", SB_CHAN_CONTACT},
               {"command", SB_CHAN_COMMAND},
               {"edit", SB_CHAN_EDIT},
               {"system", SB_CHAN_SYSTEM}};
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (strcmp(map[i].name, k) == 0) return map[i].kind;
    fail_msg("unknown expected kind %s", k);
    return SB_CHAN_UNSUPPORTED;
}

static void fx_eq(const char *label, const char *field, const char *want, const char *got)
{
    if (!want) return;
    if (!got || strcmp(want, got) != 0)
        fail_msg("%s: %s: expected \"%s\", got \"%s\"", label, field, want, got ? got : "(null)");
}

/* Compares one normalized item with an expectation object. */
static void fx_check_item(const char *label, const cJSON *e, const sb_chan_item_t *it)
{
    const char *kind = fx_str(e, "kind");
    /* "duplicate": a provider retry of an earlier case; the channel sees an ordinary item
     * with the same dedup key (JetStream drops it). */
    if (kind && strcmp(kind, "duplicate") != 0) {
        if (it->kind != fx_kind(kind))
            fail_msg("%s: kind: expected %s, got %d", label, kind, (int)it->kind);
    }
    fx_eq(label, "dedup_key", fx_str(e, "dedup_key"), it->dedup_key);
    fx_eq(label, "provider_message_id", fx_str(e, "provider_message_id"), it->provider_message_id);
    fx_eq(label, "sender_id", fx_str(e, "sender_id"), it->sender_id);
    fx_eq(label, "sender_id (recipient_id)", fx_str(e, "recipient_id"), it->sender_id);
    fx_eq(label, "sender_name", fx_str(e, "sender_name"), it->sender_name);
    fx_eq(label, "business_id", fx_str(e, "business_id"), it->account_id);
    fx_eq(label, "text", fx_str(e, "text"), it->text);
    fx_eq(label, "button_payload", fx_str(e, "button_payload"), it->button_payload);
    fx_eq(label, "button_title", fx_str(e, "button_title"), it->button_title);
    fx_eq(label, "in_reply_to", fx_str(e, "in_reply_to"), it->in_reply_to);
    fx_eq(label, "locale", fx_str(e, "locale"), it->locale);
    fx_eq(label, "phone", fx_str(e, "phone"), it->phone);
    /* Commands: the command itself in button_payload, its arguments as the text. */
    fx_eq(label, "command", fx_str(e, "command"), it->button_payload);
    fx_eq(label, "args", fx_str(e, "args"), it->text);
    const cJSON *at = cJSON_GetObjectItemCaseSensitive(e, "occurred_at");
    /* occurred_at is in seconds; providers with millisecond clocks (Meta) keep them. */
    if (cJSON_IsNumber(at) && (int64_t)at->valuedouble != it->occurred_at_ms / 1000)
        fail_msg("%s: occurred_at: expected %.0f, got %lld ms", label, at->valuedouble,
                 (long long)it->occurred_at_ms);
    const cJSON *media = cJSON_GetObjectItemCaseSensitive(e, "media");
    if (media) {
        if (!it->has_media) fail_msg("%s: no media", label);
        fx_eq(label, "media.type", fx_str(media, "type"), it->media.type);
        fx_eq(label, "media.mime_type", fx_str(media, "mime_type"), it->media.mime);
        fx_eq(label, "media.provider_media_id", fx_str(media, "provider_media_id"), it->media.ref);
        fx_eq(label, "media.caption", fx_str(media, "caption"), it->media.caption);
    }
    const cJSON *loc = cJSON_GetObjectItemCaseSensitive(e, "location");
    if (loc) {
        if (!it->has_location) fail_msg("%s: no location", label);
        const cJSON *lat = cJSON_GetObjectItemCaseSensitive(loc, "lat");
        const cJSON *lon = cJSON_GetObjectItemCaseSensitive(loc, "lon");
        if (cJSON_IsNumber(lat) && fabs(lat->valuedouble - it->location.latitude) > 1e-9)
            fail_msg("%s: latitude", label);
        if (cJSON_IsNumber(lon) && fabs(lon->valuedouble - it->location.longitude) > 1e-9)
            fail_msg("%s: longitude", label);
        fx_eq(label, "location.name", fx_str(loc, "name"), it->location.name);
    }
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(e, "status");
    if (st) {
        if (!it->has_status) fail_msg("%s: no status", label);
        fx_eq(label, "status.state", fx_str(st, "state"), it->status.state);
        const char *ref = fx_str(st, "ref_message_id");
        if (ref) {
            if (it->status.nrefs != 1) fail_msg("%s: status refs %zu", label, it->status.nrefs);
            fx_eq(label, "status.ref_message_id", ref, it->status.refs[0]);
        }
        const cJSON *refs = cJSON_GetObjectItemCaseSensitive(st, "ref_message_ids");
        if (refs) {
            if ((size_t)cJSON_GetArraySize(refs) != it->status.nrefs)
                fail_msg("%s: status refs %zu", label, it->status.nrefs);
            for (size_t i = 0; i < it->status.nrefs; i++)
                fx_eq(label, "status.ref_message_ids",
                      cJSON_GetArrayItem(refs, (int)i)->valuestring, it->status.refs[i]);
        }
        const cJSON *code = cJSON_GetObjectItemCaseSensitive(st, "error_code");
        if (cJSON_IsNumber(code) && (int64_t)code->valuedouble != it->status.error_code)
            fail_msg("%s: error_code %lld", label, (long long)it->status.error_code);
    }
    const cJSON *consent = cJSON_GetObjectItemCaseSensitive(e, "consent");
    if (consent || cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(e, "consent_record"))) {
        if (!it->has_consent) fail_msg("%s: no consent snapshot", label);
    }
    if (consent) {
        if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(consent, "support_chat")) !=
            it->consent_support_chat)
            fail_msg("%s: consent.support_chat", label);
        if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(consent, "ai_disclosure_shown")) !=
            it->ai_disclosure_shown)
            fail_msg("%s: consent.ai_disclosure_shown", label);
        fx_eq(label, "consent.notice_version", fx_str(consent, "notice_version"),
              it->consent_notice_version);
    }
}

/* True if needle (NUL-terminated) occurs in hay[0..n). */
static bool fx_contains(const void *hay, size_t n, const char *needle)
{
    return needle && *needle && memmem(hay, n, needle, strlen(needle)) != NULL;
}

/* Builds the Envelope of it and checks ids, the sealed contact and the absence of PII. */
static void fx_check_envelope(const char *label, const fx_keys_t *k, const char *channel,
                              const cJSON *e, const sb_chan_item_t *it)
{
    sb_ingress_msg_t m = {0};
    sb_result_t rc = sb_ingress_build(&k->ik, channel, it, 0, 1000, &m);
    if (rc != SB_OK) fail_msg("%s: sb_ingress_build: %s", label, sb_result_str(rc));
    char want[SB_SEAL_HASH_HEX];
    sb_ids_message(want, k->ik.id_secret, it->dedup_key);
    fx_eq(label, "message_id", want, m.message_id);
    sb_envelope_t *env = NULL;
    assert_int_equal(SB_CODEC_UNPACK(switchboard__v1__envelope__descriptor, m.data, m.len, &env),
                     SB_OK);
    fx_eq(label, "envelope.message_id", want, env->message_id);
    fx_eq(label, "envelope.channel", channel, env->channel);
    char subj[64];
    snprintf(subj, sizeof subj, "sb.in.%u.%s", env->partition, channel);
    fx_eq(label, "subject", subj, m.subject);

    /* The sealed contact opens with the contact key and holds the PII. */
    size_t clen = env->sealed_contact.len;
    assert_true(clen > SB_SEAL_BOX_OVERHEAD);
    uint8_t *plain = sb_xmalloc(clen - SB_SEAL_BOX_OVERHEAD);
    assert_int_equal(
        sb_seal_box_open(plain, env->sealed_contact.data, clen, k->ik.contact_pk, k->contact_sk),
        SB_OK);
    sb_contact_t *contact = NULL;
    assert_int_equal(SB_CODEC_UNPACK(switchboard__v1__contact__descriptor, plain,
                                     clen - SB_SEAL_BOX_OVERHEAD, &contact),
                     SB_OK);
    fx_eq(label, "contact.sender_id", it->sender_id, contact->sender_id);
    fx_eq(label, "contact.display_name", it->sender_name, contact->display_name);
    fx_eq(label, "contact.provider_message_id", it->provider_message_id,
          contact->provider_message_id);

    /* The text on the bus, with the placeholders put back, is the original text. */
    const char *want_text = fx_str(e, "text");
    if (want_text) {
        char *text = sb_xstrdup(env->text);
        for (size_t i = 0; i < contact->n_redactions; i++) {
            const char *ph = contact->redactions[i]->placeholder;
            if (!strstr(text, ph)) fail_msg("%s: placeholder %s not in text", label, ph);
            char *at;
            while ((at = strstr(text, ph)) != NULL) {
                char *t2 = sb_xasprintf("%.*s%s%s", (int)(at - text), text,
                                        contact->redactions[i]->original, at + strlen(ph));
                free(text);
                text = t2;
            }
        }
        fx_eq(label, "text (restored)", want_text, text);
        free(text);
    }
    /* No PII outside the sealed part. */
    ProtobufCBinaryData sealed = env->sealed_contact;
    env->sealed_contact.data = NULL;
    env->sealed_contact.len = 0;
    uint8_t *bare = NULL;
    size_t bare_len = 0;
    assert_int_equal(SB_CODEC_PACK(env, &bare, &bare_len), SB_OK);
    const char *pii[] = {it->sender_id, it->sender_name,         it->phone,
                         it->email,     it->provider_message_id, it->in_reply_to};
    for (size_t i = 0; i < sizeof pii / sizeof pii[0]; i++)
        if (pii[i] && strlen(pii[i]) >= 6 && fx_contains(bare, bare_len, pii[i]))
            fail_msg("%s: PII field %zu on the bus in the clear", label, i);
    const cJSON *p;
    cJSON_ArrayForEach(p, cJSON_GetObjectItemCaseSensitive(e, "pii"))
    {
        if (fx_contains(bare, bare_len, p->valuestring))
            fail_msg("%s: \"%s\" on the bus in the clear", label, p->valuestring);
    }
    free(bare);
    env->sealed_contact = sealed; /* freed with the message */
    SB_CODEC_FREE(contact);
    free(plain);
    SB_CODEC_FREE(env);
    sb_ingress_msg_free(&m);
}

/* Makes the channel for a case: make_cfg fills cfg from the manifest secrets, with the case's
 * secret_override (or NULL). */
typedef void (*fx_make_cfg_fn)(sb_config_t *cfg, const cJSON *secrets, const char *override);

/* Runs every case of the manifest in dir against ops. Returns the number of cases run. */
static size_t fx_run_manifest(const sb_channel_ops_t *ops, const char *dir, fx_make_cfg_fn make_cfg,
                              const fx_keys_t *keys)
{
    cJSON *m = fx_load_manifest(dir);
    if (!m) return 0;
    const cJSON *secrets = cJSON_GetObjectItemCaseSensitive(m, "fixture_secrets");
    size_t n = 0;
    const cJSON *c;
    cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(m, "cases"))
    {
        fx_case_t fc;
        fx_load_case(dir, c, &fc);
        sb_config_t cfg;
        memset(&cfg, 0, sizeof cfg);
        make_cfg(&cfg, secrets, fx_str(c, "secret_override"));
        sb_channel_t *ch = NULL;
        char err[256];
        assert_int_equal(sb_channel_create(ops, &cfg, &ch, err, sizeof err), SB_OK);
        const cJSON *e = fc.expect;
        int http = (int)cJSON_GetObjectItemCaseSensitive(e, "http")->valuedouble;
        const char *kind = fx_str(e, "kind");

        if (strcmp(fc.req.method, "GET") == 0) {
            char body[512];
            assert_non_null(ops->handshake);
            int got = ops->handshake(ch, &fc.req, body, sizeof body);
            if (got != http) fail_msg("%s: handshake %d, expected %d", fc.label, got, http);
            fx_eq(fc.label, "handshake body", fx_str(e, "body"), got == 200 ? body : NULL);
            goto next;
        }
        const char *reason = NULL;
        sb_result_t v = ops->verify(ch, &fc.req, fx_now(m, c), &reason);
        if (http == 401) {
            if (v != SB_E_AUTH) fail_msg("%s: verified, expected 401", fc.label);
            assert_non_null(reason);
            goto next;
        }
        if (v != SB_OK) fail_msg("%s: verify failed (%s), expected %d", fc.label, reason, http);

        sb_chan_batch_t b = {0};
        assert_int_equal(ops->parse(ch, (const uint8_t *)fc.body, fc.len, &b), SB_OK);
        /* A POST answered with a body of its own (Slack's url_verification challenge) and
         * no kind: nothing is published. */
        if (fx_str(e, "body")) fx_eq(fc.label, "reply body", fx_str(e, "body"), b.reply_body);
        if (!kind) kind = "ignored";
        if (http != 200) {
            if (b.reject_status != http)
                fail_msg("%s: reject %d, expected %d", fc.label, b.reject_status, http);
            assert_int_equal(b.nitems, 0);
        } else if (strcmp(kind, "quarantine") == 0) {
            if (!b.quarantine) fail_msg("%s: not quarantined", fc.label);
            assert_int_equal(b.reject_status, 0);
            const cJSON *items = cJSON_GetObjectItemCaseSensitive(e, "items");
            assert_int_equal(b.nitems, (size_t)cJSON_GetArraySize(items));
            for (size_t i = 0; i < b.nitems; i++)
                fx_check_item(fc.label, cJSON_GetArrayItem(items, (int)i), &b.items[i]);
        } else if (strcmp(kind, "ignored") == 0) {
            assert_false(b.quarantine);
            assert_int_equal(b.reject_status, 0);
            assert_int_equal(b.nitems, 0);
        } else if (strcmp(kind, "signature_ok") == 0) {
            /* A provider's published vector: only the verifier is under test. Its body is
             * whatever the provider's docs used (Slack's is a valid slash command, which may
             * well publish); it must not be rejected or quarantined. */
            assert_false(b.quarantine);
            assert_int_equal(b.reject_status, 0);
        } else if (strcmp(kind, "batch") == 0) {
            const cJSON *items = cJSON_GetObjectItemCaseSensitive(e, "items");
            assert_false(b.quarantine);
            assert_int_equal(b.nitems, (size_t)cJSON_GetArraySize(items));
            for (size_t i = 0; i < b.nitems; i++) {
                const cJSON *ie = cJSON_GetArrayItem(items, (int)i);
                fx_check_item(fc.label, ie, &b.items[i]);
                fx_check_envelope(fc.label, keys, ops->name, ie, &b.items[i]);
            }
        } else {
            if (b.quarantine || b.reject_status || b.nitems != 1)
                fail_msg("%s: quarantine=%d reject=%d items=%zu, expected one %s", fc.label,
                         b.quarantine, b.reject_status, b.nitems, kind);
            fx_check_item(fc.label, e, &b.items[0]);
            fx_check_envelope(fc.label, keys, ops->name, e, &b.items[0]);
        }
        sb_chan_batch_free(&b);
    next:
        sb_channel_destroy(ch);
        fx_case_free(&fc);
        n++;
    }
    cJSON_Delete(m);
    return n;
}

/* A request with the given headers (NULL-terminated name, value pairs) and body. */
typedef struct fx_req {
    sb_http_header_t h[FX_MAX_HEADERS];
    sb_http_request_t req;
} fx_req_t;

static void fx_req_init(fx_req_t *r, const char *body, size_t len, ...)
{
    memset(r, 0, sizeof *r);
    va_list ap;
    va_start(ap, len);
    for (;;) {
        const char *name = va_arg(ap, const char *);
        if (!name) break;
        r->h[r->req.nheaders].name = name;
        r->h[r->req.nheaders].value = va_arg(ap, const char *);
        r->req.nheaders++;
    }
    va_end(ap);
    r->req.method = "POST";
    r->req.path = "/";
    r->req.query = "";
    r->req.target = "/";
    r->req.headers = r->h;
    r->req.body = (const uint8_t *)body;
    r->req.body_len = len;
}

#endif
