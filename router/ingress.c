/* Ingress: from a verified webhook to acknowledged Envelopes on SB_IN (see ingress.h for the
 * flow). The loop thread verifies (a bounded HMAC), then parses, redacts and seals a small
 * body itself; a large one (a batch) goes to a pool thread via sb_http_defer. Either way one
 * asynchronous JetStream publish starts per item, and the answer goes out on the loop thread
 * once every publish is acknowledged (a 503 if any is not). */
#include "ingress.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "sb/codec.h"
#include "sb/ids.h"
#include "sb/log.h"
#include "sb/metrics.h"
#include "sb/redact.h"

#define MOD "ingress"
#define INLINE_MAX_BODY (16u * 1024u) /* larger bodies (batches) are parsed on the pool */

/* ---- pure building ---- */

void sb_ingress_provider_hash(char out[SB_SEAL_HASH_HEX], const uint8_t key[SB_SEAL_KEY_BYTES],
                              const char *channel, const char *provider_id)
{
    const char *parts[3] = {"pmid", channel, provider_id};
    sb_seal_keyed_hash_hex(out, key, parts, 3);
}

void sb_ingress_quarantine_id(char out[SB_SEAL_HASH_HEX], const uint8_t key[SB_SEAL_KEY_BYTES],
                              const char *channel, const void *body, size_t len)
{
    uint8_t mac[32];
    sb_seal_part_t parts[4] = {
        {"quarantine", 10},
        {"|", 1},
        {channel, strlen(channel)},
        {body, len},
    };
    sb_seal_hmac_sha256(mac, key, SB_SEAL_KEY_BYTES, parts, 4);
    sb_seal_hex_encode(out, mac, 16);
}

static Switchboard__V1__MessageKind proto_kind(sb_chan_kind_t k)
{
    switch (k) {
    case SB_CHAN_TEXT:
        return SWITCHBOARD__V1__MESSAGE_KIND__KIND_TEXT;
    case SB_CHAN_BUTTON_REPLY:
        return SWITCHBOARD__V1__MESSAGE_KIND__KIND_BUTTON_REPLY;
    case SB_CHAN_MEDIA:
        return SWITCHBOARD__V1__MESSAGE_KIND__KIND_MEDIA;
    case SB_CHAN_LOCATION:
        return SWITCHBOARD__V1__MESSAGE_KIND__KIND_LOCATION;
    case SB_CHAN_STATUS:
        return SWITCHBOARD__V1__MESSAGE_KIND__KIND_STATUS;
    case SB_CHAN_SESSION:
        return SWITCHBOARD__V1__MESSAGE_KIND__KIND_SESSION;
    case SB_CHAN_UNSUPPORTED:
        return SWITCHBOARD__V1__MESSAGE_KIND__KIND_UNSUPPORTED;
    case SB_CHAN_CONTACT:
        return SWITCHBOARD__V1__MESSAGE_KIND__KIND_CONTACT;
    case SB_CHAN_COMMAND:
        return SWITCHBOARD__V1__MESSAGE_KIND__KIND_COMMAND;
    case SB_CHAN_EDIT:
        return SWITCHBOARD__V1__MESSAGE_KIND__KIND_EDIT;
    case SB_CHAN_SYSTEM:
        return SWITCHBOARD__V1__MESSAGE_KIND__KIND_SYSTEM;
    }
    return SWITCHBOARD__V1__MESSAGE_KIND__KIND_UNSPECIFIED;
}

/* protobuf-c wants char * for strings; "" for absent ones. */
static char *s_or_empty(const char *s)
{
    return (char *)(s ? s : "");
}

static bool is_word_char(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c >= 0x80;
}

/* The sender's own display name is PII the patterns cannot know: every whole-word,
 * ASCII-case-insensitive occurrence of it in text becomes "[NAME_1]". Returns a new string, or
 * NULL when the name does not occur (or is too short to be told from ordinary words). */
static char *redact_name(const char *text, const char *name)
{
    size_t nlen = name ? strlen(name) : 0;
    if (!text || nlen < 4) return NULL;
    sb_buf_t out = {0};
    bool found = false;
    const char *p = text;
    while (*p) {
        bool match = strncasecmp(p, name, nlen) == 0 &&
                     (p == text || !is_word_char((unsigned char)p[-1])) &&
                     !is_word_char((unsigned char)p[nlen]);
        if (match) {
            sb_buf_append(&out, "[NAME_1]", 8);
            p += nlen;
            found = true;
        } else {
            sb_buf_append(&out, p, 1);
            p++;
        }
    }
    if (!found) {
        sb_buf_free(&out);
        return NULL;
    }
    sb_buf_append(&out, "", 1);
    return out.data;
}

/* Redacts s (NULL = nothing) into *red; appends the originals to the contact's list. */
static sb_result_t redact_into(const char *s, sb_redacted_t *red,
                               Switchboard__V1__Redaction ***list, size_t *n)
{
    if (!s) return SB_OK;
    size_t len = strlen(s);
    if (len > SB_CHAN_MAX_TEXT) return SB_E_INVALID;
    sb_result_t rc = sb_redact(s, len, red);
    if (rc != SB_OK) return rc == SB_E_TOO_LARGE ? SB_E_INVALID : rc;
    if (red->nitems > 0) {
        *list = sb_xrealloc(*list, (*n + red->nitems) * sizeof **list);
        for (size_t i = 0; i < red->nitems; i++) {
            Switchboard__V1__Redaction *r = sb_xmalloc(sizeof *r);
            switchboard__v1__redaction__init(r);
            r->placeholder = red->items[i].placeholder;
            r->original = red->items[i].original;
            (*list)[(*n)++] = r;
        }
    }
    return SB_OK;
}

sb_result_t sb_ingress_build(const sb_ingress_keys_t *keys, const char *channel,
                             const sb_chan_item_t *it, uint32_t batch_index, int64_t received_at_ms,
                             sb_ingress_msg_t *out)
{
    sb_result_t rc = SB_E_INVALID;
    sb_redacted_t red_text = {0}, red_caption = {0};
    Switchboard__V1__Redaction **redactions = NULL;
    size_t nred = 0;
    uint8_t *contact_bytes = NULL, *sealed = NULL, *env_bytes = NULL;
    size_t contact_len = 0, env_len = 0;
    char **ref_hashes = NULL;
    char *name_text = NULL, *name_caption = NULL;
    Switchboard__V1__Redaction *name_red = NULL;
    const char *sender = it->sender_id;
    const char *account = it->account_id ? it->account_id : "";
    if (!it->dedup_key || !sender) goto out;

    rc = redact_into(it->text, &red_text, &redactions, &nred);
    if (rc != SB_OK) goto out;
    rc = redact_into(it->has_media ? it->media.caption : NULL, &red_caption, &redactions, &nred);
    if (rc != SB_OK) goto out;
    name_text = redact_name(red_text.text, it->sender_name);
    name_caption = redact_name(red_caption.text, it->sender_name);
    if (name_text || name_caption) {
        name_red = sb_xmalloc(sizeof *name_red);
        switchboard__v1__redaction__init(name_red);
        name_red->placeholder = (char *)"[NAME_1]";
        name_red->original = it->sender_name;
        redactions = sb_xrealloc(redactions, (nred + 1) * sizeof *redactions);
        redactions[nred++] = name_red;
    }

    /* The sealed part: every PII field and raw provider id. */
    Switchboard__V1__Contact contact = SWITCHBOARD__V1__CONTACT__INIT;
    Switchboard__V1__Location loc = SWITCHBOARD__V1__LOCATION__INIT;
    contact.channel = (char *)channel;
    contact.sender_id = s_or_empty(sender);
    contact.display_name = s_or_empty(it->sender_name);
    contact.phone = s_or_empty(it->phone);
    contact.email = s_or_empty(it->email);
    contact.provider_message_id = s_or_empty(it->provider_message_id);
    contact.in_reply_to = s_or_empty(it->in_reply_to);
    contact.session_id = s_or_empty(it->session_id);
    contact.account_id = s_or_empty(it->account_id);
    if (it->has_location) {
        loc.latitude = it->location.latitude;
        loc.longitude = it->location.longitude;
        loc.name = s_or_empty(it->location.name);
        loc.address = s_or_empty(it->location.address);
        contact.location = &loc;
    }
    contact.redactions = redactions;
    contact.n_redactions = nred;
    if (it->has_status) {
        contact.status_refs = it->status.refs;
        contact.n_status_refs = it->status.nrefs;
    }
    rc = SB_CODEC_PACK(&contact, &contact_bytes, &contact_len);
    if (rc != SB_OK) goto out;
    sealed = sb_xmalloc(contact_len + SB_SEAL_BOX_OVERHEAD);
    rc = sb_seal_box(sealed, contact_bytes, contact_len, keys->contact_pk);
    if (rc != SB_OK) goto out;

    /* The envelope: only pseudonymous ids and redacted text. */
    Switchboard__V1__Envelope env = SWITCHBOARD__V1__ENVELOPE__INIT;
    char msg_id[SB_SEAL_HASH_HEX], conv[SB_SEAL_HASH_HEX], contact_id[SB_SEAL_HASH_HEX];
    char chan_msg[SB_SEAL_HASH_HEX] = "", reply[SB_SEAL_HASH_HEX] = "";
    sb_ids_message(msg_id, keys->id_secret, it->dedup_key);
    sb_ids_conversation(conv, keys->id_secret, channel, account, sender);
    sb_ids_contact(contact_id, keys->id_secret, channel, sender);
    if (it->provider_message_id)
        sb_ingress_provider_hash(chan_msg, keys->id_secret, channel, it->provider_message_id);
    if (it->in_reply_to) sb_ingress_provider_hash(reply, keys->id_secret, channel, it->in_reply_to);
    uint32_t part = sb_ids_partition(conv, keys->partitions ? keys->partitions : 1);

    env.message_id = msg_id;
    env.dedup_key_hash = msg_id;
    env.channel = (char *)channel;
    env.channel_message_id = chan_msg;
    env.conversation_id = conv;
    env.contact_id = contact_id;
    env.partition = part;
    env.received_at_ms = received_at_ms;
    env.sent_at_ms = it->occurred_at_ms;
    env.kind = proto_kind(it->kind);
    env.text = s_or_empty(name_text ? name_text : red_text.text);
    env.sealed_contact.data = sealed;
    env.sealed_contact.len = contact_len + SB_SEAL_BOX_OVERHEAD;
    env.button_payload = s_or_empty(it->button_payload);
    env.button_title = s_or_empty(it->button_title);
    env.locale_hint = s_or_empty(it->locale);
    env.in_reply_to = reply;
    env.batch_index = batch_index;

    Switchboard__V1__Attachment att = SWITCHBOARD__V1__ATTACHMENT__INIT;
    Switchboard__V1__Attachment *atts[1] = {&att};
    if (it->has_media) {
        att.type = s_or_empty(it->media.type);
        att.mime_type = s_or_empty(it->media.mime);
        att.media_ref = s_or_empty(it->media.ref);
        att.sha256 = s_or_empty(it->media.sha256);
        att.size = it->media.size;
        att.caption = s_or_empty(name_caption ? name_caption : red_caption.text);
        env.attachments = atts;
        env.n_attachments = 1;
    }
    Switchboard__V1__DeliveryStatus st = SWITCHBOARD__V1__DELIVERY_STATUS__INIT;
    if (it->has_status) {
        ref_hashes = sb_xcalloc(it->status.nrefs ? it->status.nrefs : 1, sizeof *ref_hashes);
        for (size_t i = 0; i < it->status.nrefs; i++) {
            ref_hashes[i] = sb_xmalloc(SB_SEAL_HASH_HEX);
            sb_ingress_provider_hash(ref_hashes[i], keys->id_secret, channel, it->status.refs[i]);
        }
        st.state = s_or_empty(it->status.state);
        st.ref_message_ids = ref_hashes;
        st.n_ref_message_ids = it->status.nrefs;
        st.error_code = it->status.error_code;
        st.error_title = s_or_empty(it->status.error_title);
        env.status = &st;
    }
    if (it->has_consent) {
        env.consent_support_chat = it->consent_support_chat;
        env.consent_notice_version = s_or_empty(it->consent_notice_version);
        env.ai_disclosure_shown = it->ai_disclosure_shown;
    }
    rc = SB_CODEC_PACK(&env, &env_bytes, &env_len);
    if (rc != SB_OK) goto out;
    rc = sb_bus_subject(out->subject, sizeof out->subject, "sb.in.%u.%s", (unsigned)part, channel);
    if (rc != SB_OK) goto out;
    memcpy(out->message_id, msg_id, sizeof msg_id);
    out->data = env_bytes;
    out->len = env_len;
    env_bytes = NULL;
    rc = SB_OK;
out:
    if (ref_hashes) {
        for (size_t i = 0; i < it->status.nrefs; i++)
            free(ref_hashes[i]);
        free(ref_hashes);
    }
    free(env_bytes);
    free(sealed);
    if (contact_bytes) {
        sb_seal_wipe(contact_bytes, contact_len);
        free(contact_bytes);
    }
    /* The strings belong to the sb_redacted_t (or to the item, for the name). */
    for (size_t i = 0; i < nred; i++)
        free(redactions[i]);
    free(redactions);
    free(name_text);
    free(name_caption);
    sb_redacted_free(&red_text);
    sb_redacted_free(&red_caption);
    return rc;
}

void sb_ingress_msg_free(sb_ingress_msg_t *m)
{
    if (!m) return;
    free(m->data);
    m->data = NULL;
    m->len = 0;
}

/* ---- the HTTP pipeline ---- */

enum outcome {
    OUT_ACCEPTED,
    OUT_REJECTED_SIGNATURE,
    OUT_REJECTED_INVALID,
    OUT_QUARANTINED,
    OUT_DUPLICATE,
    OUT_UNAVAILABLE,
    OUT_TOO_LARGE,
    OUT_IGNORED,
    OUT_COUNT
};
static const char *const outcome_names[OUT_COUNT] = {
    "accepted",  "rejected_signature", "rejected_invalid", "quarantined",
    "duplicate", "unavailable",        "too_large",        "ignored",
};

typedef struct route {
    struct sb_ingress *ing;
    sb_channel_t *ch;
    sb_metric_t *outcomes[OUT_COUNT];
    sb_metric_t *seconds;
    sb_metric_t *items;
    struct route *next;
} route_t;

struct sb_ingress {
    sb_ingress_keys_t keys;
    sb_bus_t *bus;
    sb_http_server_t *srv; /* where acks finish their requests */
    route_t *routes;
};

/* One webhook in flight. The pool thread parses it and starts one asynchronous publish per
 * item; the request is answered when both the pool work is done (sb_http_defer's done, on the
 * loop) and every publish was acknowledged (ack callbacks, on a nats.c thread). refs counts
 * those: whoever drops it to zero finishes, on the loop thread. */
typedef struct job {
    route_t *route;
    sb_http_request_t *req;
    uint64_t t0;
    int status;
    enum outcome outcome;
    const char *reason;
    size_t nitems;
    char first_id[SB_SEAL_HASH_HEX];
    atomic_int refs;
    atomic_int failed; /* publishes not acknowledged */
    atomic_int dups;   /* publishes JetStream dropped as duplicates */
    size_t published;  /* publishes started */
    bool quarantined;
    char *reply_body;       /* the channel's own 200 body (owned), or NULL */
    const char *reply_type; /* its content type (static) */
} job_t;

/* Answers req. A 200 carries reply (the channel's own answer: a Slack challenge, Twilio's
 * TwiML, an empty Slack ack) with reply_type when reply is not NULL, else {"ok":true}. */
static void finish_reply(route_t *r, sb_http_request_t *req, uint64_t t0, int status,
                         enum outcome oc, const char *reason, size_t nitems, const char *msg_id,
                         const char *reply, const char *reply_type)
{
    char body[160];
    if (status == 200)
        snprintf(body, sizeof body, "{\"ok\":true}");
    else
        snprintf(body, sizeof body, "{\"error\":\"%s\"}", reason ? reason : "error");
    size_t bytes = req->body_len; /* req is gone once answered */
    if (status == 200 && reply) {
        static const char *const extra[] = {"X-Content-Type-Options: nosniff", NULL};
        sb_http_respond(req, status, reply_type, extra, reply, strlen(reply));
    } else {
        sb_http_respond_json(req, status, body);
    }
    sb_metric_inc(r->outcomes[oc]);
    sb_metric_observe(r->seconds, (double)(sb_mono_ns() - t0) / 1e9);
    sb_log(status >= 500 || oc == OUT_QUARANTINED ? SB_LOG_WARN : SB_LOG_INFO, MOD,
           "webhook channel=%s outcome=%s status=%d items=%zu bytes=%zu message_id=%s "
           "reason=\"%s\"",
           r->ch->ops->name, outcome_names[oc], status, nitems, bytes,
           msg_id && *msg_id ? msg_id : "-", reason ? reason : "");
}

static void finish(route_t *r, sb_http_request_t *req, uint64_t t0, int status, enum outcome oc,
                   const char *reason, size_t nitems, const char *msg_id)
{
    finish_reply(r, req, t0, status, oc, reason, nitems, msg_id, NULL, NULL);
}

sb_result_t sb_ingress_publish_item(sb_ingress_t *ing, const char *channel,
                                    const sb_chan_item_t *item, uint32_t batch_index,
                                    int64_t received_at_ms, char message_id[SB_SEAL_HASH_HEX],
                                    bool *duplicate)
{
    sb_ingress_msg_t m = {0};
    if (sb_ingress_build(&ing->keys, channel, item, batch_index, received_at_ms, &m) != SB_OK)
        return SB_E_INVALID;
    if (message_id) memcpy(message_id, m.message_id, SB_SEAL_HASH_HEX);
    sb_result_t rc = sb_bus_publish(ing->bus, m.subject, m.data, m.len, m.message_id, duplicate);
    sb_ingress_msg_free(&m);
    return rc == SB_OK ? SB_OK : SB_E_UNAVAILABLE;
}

static void complete(job_t *j);

static void complete_on_loop(void *ctx)
{
    complete(ctx);
}

static void release(job_t *j, bool on_loop)
{
    if (atomic_fetch_sub(&j->refs, 1) != 1) return;
    if (on_loop) {
        complete(j);
    } else if (!sb_http_server_post(j->route->ing->srv, complete_on_loop, j)) {
        /* The server is stopping: the request is dropped with its connection. */
        free(j->reply_body);
        free(j);
    }
}

static void on_ack(void *ctx, sb_result_t result, bool duplicate)
{
    job_t *j = ctx;
    if (result != SB_OK)
        atomic_fetch_add(&j->failed, 1);
    else if (duplicate)
        atomic_fetch_add(&j->dups, 1);
    release(j, false);
}

/* Starts one asynchronous publish for j; false when it could not even start. */
static bool publish(job_t *j, const char *subject, const void *data, size_t len, const char *msg_id)
{
    atomic_fetch_add(&j->refs, 1);
    if (sb_bus_publish_async(j->route->ing->bus, subject, data, len, msg_id, on_ack, j) == SB_OK)
        return true;
    atomic_fetch_sub(&j->refs, 1);
    return false;
}

static void work(void *ctx)
{
    job_t *j = ctx;
    route_t *r = j->route;
    sb_ingress_t *ing = r->ing;
    const char *channel = r->ch->ops->name;
    sb_chan_batch_t batch = {0};
    if (r->ch->ops->parse(r->ch, j->req->body, j->req->body_len, &batch) != SB_OK) {
        j->status = 500;
        j->outcome = OUT_UNAVAILABLE;
        j->reason = "parse failed";
        return;
    }
    j->reason = batch.reason;
    j->reply_body = batch.reply_body; /* the 200's body, if the channel has its own */
    j->reply_type = batch.reply_type;
    batch.reply_body = NULL;
    if (batch.reject_status) {
        j->status = batch.reject_status;
        j->outcome = OUT_REJECTED_INVALID;
        goto out;
    }
    int64_t now_ms = sb_now_ms();
    for (size_t i = 0; i < batch.nitems; i++) {
        /* A provider without event times (Twilio): the item happened when it arrived. */
        if (batch.items[i].occurred_at_ms == 0) batch.items[i].occurred_at_ms = now_ms;
        sb_ingress_msg_t m = {0};
        sb_result_t rc =
            sb_ingress_build(&ing->keys, channel, &batch.items[i], (uint32_t)i, now_ms, &m);
        if (rc != SB_OK) {
            /* Authentic but not representable (e.g. text beyond the redactor's bound). */
            batch.quarantine = true;
            j->reason = "item cannot be normalized";
            continue;
        }
        if (!j->first_id[0]) memcpy(j->first_id, m.message_id, sizeof j->first_id);
        bool started = publish(j, m.subject, m.data, m.len, m.message_id);
        sb_ingress_msg_free(&m);
        if (!started) {
            j->status = 503;
            j->outcome = OUT_UNAVAILABLE;
            j->reason = "publish failed";
            goto out;
        }
        j->published++;
    }
    if (batch.quarantine) {
        char subject[128], qid[SB_SEAL_HASH_HEX];
        sb_ingress_quarantine_id(qid, ing->keys.id_secret, channel, j->req->body, j->req->body_len);
        if (!j->first_id[0]) memcpy(j->first_id, qid, sizeof qid);
        if (sb_bus_subject(subject, sizeof subject, "sb.quarantine.%s", channel) != SB_OK ||
            !publish(j, subject, j->req->body, j->req->body_len, qid)) {
            j->status = 503;
            j->outcome = OUT_UNAVAILABLE;
            j->reason = "quarantine publish failed";
            goto out;
        }
        j->quarantined = true;
    }
    j->status = 200;
    if (batch.quarantine) {
        j->outcome = OUT_QUARANTINED;
    } else if (j->published == 0) {
        /* Nothing to route: another subscription's notification, or our own echo. */
        j->outcome = OUT_IGNORED;
        if (!j->reason && batch.nignored) j->reason = "own echo (loop guard)";
    } else {
        j->outcome = OUT_ACCEPTED; /* refined by the acks in complete() */
    }
out:
    sb_chan_batch_free(&batch);
}

/* Answers once the work is done and every publish was acknowledged. Loop thread. */
static void complete(job_t *j)
{
    route_t *r = j->route;
    if (j->status == 200 && atomic_load(&j->failed) > 0) {
        /* 2xx only after JetStream has it: the provider retries, the dedup makes it safe. */
        j->status = 503;
        j->outcome = OUT_UNAVAILABLE;
        j->reason = j->quarantined ? "quarantine publish failed" : "publish failed";
    } else if (j->status == 200 && !j->quarantined && j->published > 0 &&
               (size_t)atomic_load(&j->dups) == j->published) {
        j->outcome = OUT_DUPLICATE;
    }
    if (j->status == 200) {
        j->nitems = j->published;
        sb_metric_add(r->items, (double)j->published);
    }
    finish_reply(r, j->req, j->t0, j->status, j->outcome, j->reason, j->nitems, j->first_id,
                 j->reply_body, j->reply_type);
    free(j->reply_body);
    free(j);
}

static void done(sb_http_request_t *req, void *ctx)
{
    (void)req;
    release(ctx, true);
}

static void on_webhook(sb_http_request_t *req)
{
    route_t *r = req->route_ctx;
    uint64_t t0 = sb_mono_ns();
    if (req->body_len > r->ch->max_body) { /* the route's limit answers first; kept as a guard */
        finish(r, req, t0, 413, OUT_TOO_LARGE, "body too large", 0, NULL);
        return;
    }
    const char *reason = "bad_signature";
    sb_result_t v = r->ch->ops->verify(r->ch, req, sb_router_now_s(), &reason);
    if (v == SB_E_INVALID) { /* not even readable enough to verify (Twilio: broken %XX) */
        finish(r, req, t0, 400, OUT_REJECTED_INVALID, reason, 0, NULL);
        return;
    }
    if (v != SB_OK) {
        finish(r, req, t0, 401, OUT_REJECTED_SIGNATURE, reason, 0, NULL);
        return;
    }
    job_t *j = sb_xcalloc(1, sizeof *j);
    j->route = r;
    j->req = req;
    j->t0 = t0;
    atomic_init(&j->refs, 1); /* held by done(), which runs after work() */
    atomic_init(&j->failed, 0);
    atomic_init(&j->dups, 0);
    if (req->body_len <= INLINE_MAX_BODY) {
        /* A typical webhook (one message) costs tens of microseconds: cheaper here than the
         * two thread hand-offs of the pool. Publishing is asynchronous, so nothing blocks. */
        work(j);
        done(req, j);
        return;
    }
    sb_http_defer(req, work, done, j);
}

static void on_handshake(sb_http_request_t *req)
{
    route_t *r = req->route_ctx;
    char body[512];
    int status = r->ch->ops->handshake(r->ch, req, body, sizeof body);
    static const char *const extra[] = {"X-Content-Type-Options: nosniff", NULL};
    if (status == 200)
        sb_http_respond(req, 200, "text/plain", extra, body, strlen(body));
    else
        sb_http_respond(req, status, "text/plain", extra, "forbidden", 9);
    SB_INFO(MOD, "handshake channel=%s status=%d", r->ch->ops->name, status);
}

sb_ingress_t *sb_ingress_create(const sb_ingress_keys_t *keys, sb_bus_t *bus)
{
    sb_ingress_t *ing = sb_xcalloc(1, sizeof *ing);
    ing->keys = *keys;
    ing->bus = bus;
    return ing;
}

void sb_ingress_add_routes(sb_ingress_t *ing, sb_http_server_t *srv, sb_channel_t *ch)
{
    route_t *r = sb_xcalloc(1, sizeof *r);
    r->ing = ing;
    r->ch = ch;
    ing->srv = srv;
    char labels[160];
    for (int i = 0; i < OUT_COUNT; i++) {
        snprintf(labels, sizeof labels, "channel=\"%s\",outcome=\"%s\"", ch->ops->name,
                 outcome_names[i]);
        r->outcomes[i] = sb_metrics_counter("sb_router_ingress_total",
                                            "Webhook requests by channel and outcome", labels);
    }
    snprintf(labels, sizeof labels, "channel=\"%s\"", ch->ops->name);
    r->seconds =
        sb_metrics_histogram("sb_router_ingress_seconds", "Time from webhook arrival to answer",
                             labels, sb_metrics_latency_buckets, sb_metrics_latency_nbuckets);
    r->items = sb_metrics_counter("sb_router_ingress_items_total",
                                  "Normalized items published to SB_IN", labels);
    r->next = ing->routes;
    ing->routes = r;
    sb_http_server_route(srv, "POST", ch->ops->ingress_path, ch->max_body, on_webhook, r);
    if (ch->ops->handshake)
        sb_http_server_route(srv, "GET", ch->ops->ingress_path, 0, on_handshake, r);
}

void sb_ingress_destroy(sb_ingress_t *ing)
{
    if (!ing) return;
    for (route_t *r = ing->routes, *next; r; r = next) {
        next = r->next;
        free(r);
    }
    sb_seal_wipe(&ing->keys, sizeof ing->keys);
    free(ing);
}
