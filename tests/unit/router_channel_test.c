/* The shared part of the channel unit tests (see router_channel_test.h): the fixture-manifest
 * runner, the Envelope checks, and the request, parse, render and signature helpers. */
#include "router_channel_test.h"

fx_keys_t fx_keys;

int fx_setup(void **state)
{
    (void)state;
    assert_int_equal(sb_seal_init(), SB_OK);
    assert_int_equal(sb_redact_init(), SB_OK);
    memset(&fx_keys, 0, sizeof fx_keys);
    sb_seal_random(fx_keys.ik.id_secret, sizeof fx_keys.ik.id_secret);
    sb_seal_box_keypair(fx_keys.ik.contact_pk, fx_keys.contact_sk);
    fx_keys.ik.partitions = 8;
    return 0;
}

const char *fx_str(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

const char *fx_case_secret(const fx_case_t *fc, const cJSON *secrets, const char *key)
{
    const char *s = fx_str(fc->c, "secret_override");
    if (!s) s = fx_str(secrets, key);
    if (!s) fail_msg("%s: no fixture secret %s", fc->label, key);
    return s;
}

static char *env_dir(const char *env, const char *sub)
{
    const char *root = getenv(env);
    if (!root || !*root) return NULL;
    return sb_xasprintf("%s/%s", root, sub);
}

/* The manifest of dir, or NULL when the directory is absent. */
static cJSON *load_manifest(const char *dir)
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

/* "scheme://host[:port]/path?query" into its origin and its request target ("/" when the URL
 * has no path). */
static void split_url(const char *url, char *origin, size_t on, char *target, size_t tn)
{
    const char *p = strstr(url, "://");
    if (!p) fail_msg("url without a scheme: %s", url);
    const char *slash = strchr(p + 3, '/');
    size_t olen = slash ? (size_t)(slash - url) : strlen(url);
    snprintf(origin, on, "%.*s", (int)olen, url);
    snprintf(target, tn, "%s", slash ? slash : "/");
}

/* The path and query of fc->target. */
static void split_target(fx_case_t *fc)
{
    char *q = strchr(fc->target, '?');
    snprintf(fc->path, sizeof fc->path, "%.*s",
             (int)(q ? (size_t)(q - fc->target) : strlen(fc->target)), fc->target);
    snprintf(fc->query, sizeof fc->query, "%s", q ? q + 1 : "");
}

static void load_case(const char *dir, const cJSON *c, fx_case_t *fc)
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
    const char *url = fx_str(c, "url");
    fc->req.method = method ? method : "POST";
    snprintf(fc->path, sizeof fc->path, "%s", fx_str(c, "path") ? fx_str(c, "path") : "/");
    if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(c, "raw_http"))) {
        /* "GET <target> HTTP/1.1\r\n...": take the request line's target. */
        char *sp1 = strchr(fc->body, ' ');
        assert_non_null(sp1);
        char *sp2 = strchr(sp1 + 1, ' ');
        assert_non_null(sp2);
        snprintf(fc->target, sizeof fc->target, "%.*s", (int)(sp2 - sp1 - 1), sp1 + 1);
        split_target(fc);
        fc->req.body = (const uint8_t *)"";
        fc->req.body_len = 0;
    } else {
        if (url) {
            /* The exact URL the provider signed (Twilio): its path and query are the request
             * target, its origin the public base URL the channel is configured with. */
            split_url(url, fc->origin, sizeof fc->origin, fc->target, sizeof fc->target);
            split_target(fc);
        } else {
            snprintf(fc->target, sizeof fc->target, "%s", fc->path);
        }
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

static void case_free(fx_case_t *fc)
{
    free(fc->body);
    fc->body = NULL;
}

/* Errata of the shared fixture set, applied where a case's data contradicts its own
 * documentation. slack message_im_text.json#stale_timestamp_replay: the README and the note
 * say "verify_now is 602 s later" than X-Slack-Request-Timestamp 1772442300, i.e. 1772442902,
 * but the manifest carries 1772442302 (2 s later, inside the window). */
static int64_t verify_now_erratum(const cJSON *manifest, const cJSON *c, int64_t now)
{
    const cJSON *ch = cJSON_GetObjectItemCaseSensitive(manifest, "channel");
    const cJSON *cs = cJSON_GetObjectItemCaseSensitive(c, "case");
    if (cJSON_IsString(ch) && strcmp(ch->valuestring, "slack") == 0 && cJSON_IsString(cs) &&
        strcmp(cs->valuestring, "stale_timestamp_replay") == 0 && now == 1772442302)
        return 1772442300 + 602;
    return now;
}

static int64_t case_now(const cJSON *manifest, const cJSON *c)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(c, "verify_now");
    if (cJSON_IsNumber(v)) return verify_now_erratum(manifest, c, (int64_t)v->valuedouble);
    v = cJSON_GetObjectItemCaseSensitive(manifest, "fixture_epoch");
    return cJSON_IsNumber(v) ? (int64_t)v->valuedouble : 0;
}

static sb_chan_kind_t kind_of(const char *k)
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

static void expect_eq(const char *label, const char *field, const char *want, const char *got)
{
    if (!want) return;
    if (!got || strcmp(want, got) != 0)
        fail_msg("%s: %s: expected \"%s\", got \"%s\"", label, field, want, got ? got : "(null)");
}

/* Compares one normalized item with an expectation object. */
static void check_item(const char *label, const cJSON *e, const sb_chan_item_t *it)
{
    const char *kind = fx_str(e, "kind");
    /* "duplicate": a provider retry of an earlier case; the channel sees an ordinary item
     * with the same dedup key (JetStream drops it). */
    if (kind && strcmp(kind, "duplicate") != 0) {
        if (it->kind != kind_of(kind))
            fail_msg("%s: kind: expected %s, got %d", label, kind, (int)it->kind);
    }
    expect_eq(label, "dedup_key", fx_str(e, "dedup_key"), it->dedup_key);
    expect_eq(label, "provider_message_id", fx_str(e, "provider_message_id"),
              it->provider_message_id);
    expect_eq(label, "sender_id", fx_str(e, "sender_id"), it->sender_id);
    expect_eq(label, "sender_id (recipient_id)", fx_str(e, "recipient_id"), it->sender_id);
    expect_eq(label, "sender_name", fx_str(e, "sender_name"), it->sender_name);
    expect_eq(label, "business_id", fx_str(e, "business_id"), it->account_id);
    expect_eq(label, "text", fx_str(e, "text"), it->text);
    expect_eq(label, "button_payload", fx_str(e, "button_payload"), it->button_payload);
    expect_eq(label, "button_title", fx_str(e, "button_title"), it->button_title);
    expect_eq(label, "in_reply_to", fx_str(e, "in_reply_to"), it->in_reply_to);
    expect_eq(label, "locale", fx_str(e, "locale"), it->locale);
    expect_eq(label, "phone", fx_str(e, "phone"), it->phone);
    /* Commands: the command itself in button_payload, its arguments as the text. */
    expect_eq(label, "command", fx_str(e, "command"), it->button_payload);
    expect_eq(label, "args", fx_str(e, "args"), it->text);
    const cJSON *at = cJSON_GetObjectItemCaseSensitive(e, "occurred_at");
    /* occurred_at is in seconds; providers with millisecond clocks (Meta) keep them. */
    if (cJSON_IsNumber(at) && (int64_t)at->valuedouble != it->occurred_at_ms / 1000)
        fail_msg("%s: occurred_at: expected %.0f, got %lld ms", label, at->valuedouble,
                 (long long)it->occurred_at_ms);
    const cJSON *media = cJSON_GetObjectItemCaseSensitive(e, "media");
    if (media) {
        if (!it->has_media) fail_msg("%s: no media", label);
        expect_eq(label, "media.type", fx_str(media, "type"), it->media.type);
        expect_eq(label, "media.mime_type", fx_str(media, "mime_type"), it->media.mime);
        expect_eq(label, "media.provider_media_id", fx_str(media, "provider_media_id"),
                  it->media.ref);
        expect_eq(label, "media.caption", fx_str(media, "caption"), it->media.caption);
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
        expect_eq(label, "location.name", fx_str(loc, "name"), it->location.name);
    }
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(e, "status");
    if (st) {
        if (!it->has_status) fail_msg("%s: no status", label);
        expect_eq(label, "status.state", fx_str(st, "state"), it->status.state);
        const char *ref = fx_str(st, "ref_message_id");
        if (ref) {
            if (it->status.nrefs != 1) fail_msg("%s: status refs %zu", label, it->status.nrefs);
            expect_eq(label, "status.ref_message_id", ref, it->status.refs[0]);
        }
        const cJSON *refs = cJSON_GetObjectItemCaseSensitive(st, "ref_message_ids");
        if (refs) {
            if ((size_t)cJSON_GetArraySize(refs) != it->status.nrefs)
                fail_msg("%s: status refs %zu", label, it->status.nrefs);
            for (size_t i = 0; i < it->status.nrefs; i++)
                expect_eq(label, "status.ref_message_ids",
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
        expect_eq(label, "consent.notice_version", fx_str(consent, "notice_version"),
                  it->consent_notice_version);
    }
}

/* True if needle (NUL-terminated) occurs in hay[0..n). */
static bool contains(const void *hay, size_t n, const char *needle)
{
    return needle && *needle && memmem(hay, n, needle, strlen(needle)) != NULL;
}

/* Builds the Envelope of it and checks ids, the sealed contact and the absence of PII. */
static void check_envelope(const char *label, const fx_keys_t *k, const char *channel,
                           const cJSON *e, const sb_chan_item_t *it)
{
    sb_ingress_msg_t m = {0};
    sb_result_t rc = sb_ingress_build(&k->ik, channel, it, 0, 1000, &m);
    if (rc != SB_OK) fail_msg("%s: sb_ingress_build: %s", label, sb_result_str(rc));
    char want[SB_SEAL_HASH_HEX];
    sb_ids_message(want, k->ik.id_secret, it->dedup_key);
    expect_eq(label, "message_id", want, m.message_id);
    sb_envelope_t *env = NULL;
    assert_int_equal(SB_CODEC_UNPACK(switchboard__v1__envelope__descriptor, m.data, m.len, &env),
                     SB_OK);
    expect_eq(label, "envelope.message_id", want, env->message_id);
    expect_eq(label, "envelope.channel", channel, env->channel);
    char subj[64];
    snprintf(subj, sizeof subj, "sb.in.%u.%s", env->partition, channel);
    expect_eq(label, "subject", subj, m.subject);

    /* The sealed contact opens with the contact key and holds the PII. */
    sb_contact_t *contact = fx_open_contact(env, k->ik.contact_pk, k->contact_sk);
    expect_eq(label, "contact.sender_id", it->sender_id, contact->sender_id);
    expect_eq(label, "contact.display_name", it->sender_name, contact->display_name);
    expect_eq(label, "contact.provider_message_id", it->provider_message_id,
              contact->provider_message_id);

    /* The text on the bus, with the placeholders put back, is the original text. */
    const char *want_text = fx_str(e, "text");
    if (want_text) {
        char *text = fx_restored_text(label, env, contact);
        expect_eq(label, "text (restored)", want_text, text);
        free(text);
    }
    /* No PII outside the sealed part. */
    uint8_t *bare = NULL;
    size_t bare_len = 0;
    fx_pack_unsealed(env, &bare, &bare_len);
    const char *pii[] = {it->sender_id, it->sender_name,         it->phone,
                         it->email,     it->provider_message_id, it->in_reply_to};
    for (size_t i = 0; i < sizeof pii / sizeof pii[0]; i++)
        if (pii[i] && strlen(pii[i]) >= 6 && contains(bare, bare_len, pii[i]))
            fail_msg("%s: PII field %zu on the bus in the clear", label, i);
    const cJSON *p;
    cJSON_ArrayForEach(p, cJSON_GetObjectItemCaseSensitive(e, "pii"))
    {
        if (contains(bare, bare_len, p->valuestring))
            fail_msg("%s: \"%s\" on the bus in the clear", label, p->valuestring);
    }
    free(bare);
    SB_CODEC_FREE(contact);
    SB_CODEC_FREE(env);
    sb_ingress_msg_free(&m);
}

/* Checks the batch of a case that verify let through against its expectation. */
static void check_batch(const fx_channel_t *t, const fx_case_t *fc, const sb_chan_batch_t *b)
{
    const cJSON *e = fc->expect;
    int http = (int)cJSON_GetObjectItemCaseSensitive(e, "http")->valuedouble;
    const char *kind = fx_str(e, "kind");
    const cJSON *items = cJSON_GetObjectItemCaseSensitive(e, "items");
    /* A POST answered with a body of its own (Slack's url_verification challenge) and no
     * kind: nothing is published. */
    if (fx_str(e, "body")) expect_eq(fc->label, "reply body", fx_str(e, "body"), b->reply_body);
    if (!kind) kind = "ignored";
    if (http != 200) {
        if (b->reject_status != http)
            fail_msg("%s: reject %d, expected %d", fc->label, b->reject_status, http);
        assert_int_equal(b->nitems, 0);
    } else if (strcmp(kind, "quarantine") == 0) {
        if (!b->quarantine) fail_msg("%s: not quarantined", fc->label);
        assert_int_equal(b->reject_status, 0);
        assert_non_null(b->reason);
        assert_int_equal(b->nitems, (size_t)cJSON_GetArraySize(items));
        for (size_t i = 0; i < b->nitems; i++)
            check_item(fc->label, cJSON_GetArrayItem(items, (int)i), &b->items[i]);
    } else if (strcmp(kind, "ignored") == 0) {
        assert_false(b->quarantine);
        assert_int_equal(b->reject_status, 0);
        assert_int_equal(b->nitems, 0);
    } else if (strcmp(kind, "signature_ok") == 0) {
        /* A provider's published vector: only the verifier is under test. Its body is
         * whatever the provider's docs used (Slack's is a valid slash command, which may
         * well publish); it must not be rejected or quarantined. */
        assert_false(b->quarantine);
        assert_int_equal(b->reject_status, 0);
    } else if (strcmp(kind, "batch") == 0) {
        assert_false(b->quarantine);
        assert_int_equal(b->reject_status, 0);
        assert_int_equal(b->nitems, (size_t)cJSON_GetArraySize(items));
        for (size_t i = 0; i < b->nitems; i++) {
            const cJSON *ie = cJSON_GetArrayItem(items, (int)i);
            check_item(fc->label, ie, &b->items[i]);
            check_envelope(fc->label, &fx_keys, t->ops->name, ie, &b->items[i]);
        }
    } else {
        if (b->quarantine || b->reject_status || b->nitems != 1)
            fail_msg("%s: quarantine=%d reject=%d items=%zu, expected one %s", fc->label,
                     b->quarantine, b->reject_status, b->nitems, kind);
        check_item(fc->label, e, &b->items[0]);
        check_envelope(fc->label, &fx_keys, t->ops->name, e, &b->items[0]);
    }
}

/* Runs one loaded case against t. */
static void run_case(const fx_channel_t *t, const cJSON *manifest, const fx_case_t *fc)
{
    const cJSON *secrets = cJSON_GetObjectItemCaseSensitive(manifest, "fixture_secrets");
    sb_config_t cfg;
    memset(&cfg, 0, sizeof cfg);
    t->make_cfg(&cfg, secrets, fc);
    sb_channel_t *ch = fx_channel_create(t->ops, &cfg);
    const cJSON *e = fc->expect;
    int http = (int)cJSON_GetObjectItemCaseSensitive(e, "http")->valuedouble;

    if (strcmp(fc->req.method, "GET") == 0) {
        char body[512];
        assert_non_null(t->ops->handshake);
        int got = t->ops->handshake(ch, &fc->req, body, sizeof body);
        if (got != http) fail_msg("%s: handshake %d, expected %d", fc->label, got, http);
        expect_eq(fc->label, "handshake body", fx_str(e, "body"), got == 200 ? body : NULL);
        goto done;
    }
    const char *reason = NULL;
    sb_result_t v = t->ops->verify(ch, &fc->req, case_now(manifest, fc->c), &reason);
    /* Refused by verify: 401 for a missing or bad signature, 400 for a request that cannot
     * even be read to be verified (Twilio: a form with broken %XX). */
    if (v != SB_OK || http == 401) {
        if (!(http == 401 && v == SB_E_AUTH) && !(http == 400 && v == SB_E_INVALID))
            fail_msg("%s: verify %s (%s), expected %d", fc->label, sb_result_str(v),
                     reason ? reason : "-", http);
        assert_non_null(reason);
        goto done;
    }
    sb_chan_batch_t b = {0};
    assert_int_equal(t->ops->parse(ch, (const uint8_t *)fc->body, fc->len, &b), SB_OK);
    check_batch(t, fc, &b);
    if (t->check_batch) t->check_batch(fc, &b);
    sb_chan_batch_free(&b);
done:
    sb_channel_destroy(ch);
}

size_t fx_run_manifest(const fx_channel_t *t, const char *dir)
{
    cJSON *m = load_manifest(dir);
    if (!m) return 0;
    size_t n = 0;
    const cJSON *c;
    cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(m, "cases"))
    {
        fx_case_t fc;
        load_case(dir, c, &fc);
        run_case(t, m, &fc);
        case_free(&fc);
        n++;
    }
    cJSON_Delete(m);
    return n;
}

void fx_test_own_manifest(void **state)
{
    const fx_channel_t *t = *state;
    char *sub = sb_xasprintf("tests/fixtures/channels/%s", t->ops->name);
    char *dir = env_dir("SB_SOURCE_DIR", sub);
    assert_non_null(dir);
    size_t n = fx_run_manifest(t, dir);
    if (n < t->own_cases) fail_msg("%s: %zu cases, expected at least %zu", dir, n, t->own_cases);
    free(dir);
    free(sub);
}

void fx_test_shared_manifest(void **state)
{
    const fx_channel_t *t = *state;
    char *sub = sb_xasprintf("channels/%s", t->ops->name);
    char *dir = env_dir("SB_SHARED_DIR", sub);
    free(sub);
    cJSON *m = dir ? load_manifest(dir) : NULL;
    if (!m) {
        printf("SKIP: shared fixtures not found ($SB_SHARED_DIR/channels/%s)\n", t->ops->name);
        free(dir);
        skip();
    }
    cJSON_Delete(m);
    assert_int_equal(fx_run_manifest(t, dir), t->shared_cases);
    free(dir);
}

sb_channel_t *fx_channel_create(const sb_channel_ops_t *ops, const sb_config_t *cfg)
{
    sb_channel_t *ch = NULL;
    char err[256];
    sb_result_t rc = sb_channel_create(ops, cfg, &ch, err, sizeof err);
    if (rc != SB_OK) fail_msg("%s: sb_channel_create: %s (%s)", ops->name, sb_result_str(rc), err);
    return ch;
}

void fx_req_init(fx_req_t *r, const char *body, size_t len, ...)
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

void fx_parse(const sb_channel_t *ch, const char *body, sb_chan_batch_t *b)
{
    memset(b, 0, sizeof *b);
    assert_int_equal(ch->ops->parse(ch, (const uint8_t *)body, strlen(body), b), SB_OK);
}

void fx_parse_quarantined(const sb_channel_t *ch, const char *const *bodies, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        sb_chan_batch_t b;
        fx_parse(ch, bodies[i], &b);
        if (!b.quarantine || b.reject_status || b.nitems)
            fail_msg("case %zu: quarantine=%d reject=%d items=%zu", i, b.quarantine,
                     b.reject_status, b.nitems);
        assert_non_null(b.reason);
        sb_chan_batch_free(&b);
    }
}

sb_result_t fx_render(const sb_channel_t *ch, const sb_outbound_t *o, const sb_recipient_t *rc,
                      const char *api_base, sb_chan_window_t w, sb_chan_http_t *req)
{
    sb_chan_send_t send = {.out = o, .rcpt = rc, .api_base = api_base, .now_s = 1, .window = w};
    memset(req, 0, sizeof *req);
    return ch->ops->render(ch, &send, req);
}

cJSON *fx_render_json(const sb_channel_t *ch, const sb_outbound_t *o, const sb_recipient_t *rc,
                      const char *api_base, sb_chan_http_t *req)
{
    assert_int_equal(fx_render(ch, o, rc, api_base, SB_CHAN_WINDOW_OPEN, req), SB_OK);
    cJSON *j = cJSON_ParseWithLength(req->body.data, req->body.len);
    assert_non_null(j);
    return j;
}

void fx_body_is(const sb_chan_http_t *req, const char *want)
{
    char *got = sb_xstrndup(req->body.data, req->body.len);
    assert_string_equal(got, want);
    free(got);
}

void fx_meta_sign(char *out, size_t n, const char *secret, const char *body)
{
    uint8_t mac[32];
    sb_seal_part_t part = {body, strlen(body)};
    sb_seal_hmac_sha256(mac, secret, strlen(secret), &part, 1);
    char hex[65];
    sb_seal_hex_encode(hex, mac, 32);
    snprintf(out, n, "sha256=%s", hex);
}
