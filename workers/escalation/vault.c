/* The vault: records of the escalation store (proto/store.proto) and the field encryption of
 * their PII. Reads go straight to LMDB through sb_store in the caller's read transaction;
 * writes are queued into an esc_batch_t and applied by esc_vault_commit in one write
 * transaction, so that a message's dedup entry, turn, contact and state land together or not at
 * all. Layout of the databases:
 *   conversations  conversation_id                         -> ConversationState
 *   turns          conversation_id 0x00 be64(ms) msg_id    -> TurnRecord (text encrypted)
 *   contacts       contact_id                              -> ContactRecord (fields encrypted)
 *   contact_keys   contact_id                              -> ContactKey (wrapped data key)
 *   consent        contact_id 0x00 be64(ms) msg_id         -> ConsentRecord
 *   dedup          namespace(1) BLAKE2b-128(id)            -> be64(first seen ms)
 *   expiry         be64(expires_at_s) tag(1) primary key   -> (empty)
 * Every encrypted field uses AD = len|table len|record key len|field (16-bit lengths), never
 * stored, recomputed at read time, so a ciphertext cannot be moved to another record or field. */
#include "vault.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "sb/log.h"
#include "sb/util.h"

#define KEY_VERSION 1u /* key_id written into fields encrypted under a contact data key */
#define AD_MAX 1024
#define EXPIRY_KEY_MAX (9 + ESC_TURN_KEY_MAX)
#define DEDUP_KEY_LEN 17

struct esc_vault {
    sb_store_t *store;
    sb_store_db_t dbs[ESC_DB_COUNT];
    uint8_t master_key[SB_SEAL_KEY_BYTES];
    uint32_t master_key_id;
    int64_t transcript_retention_s;
    int64_t dedup_retention_s;
};

static const char *const db_names[] = {"conversations", "turns", "contacts", "contact_keys",
                                       "consent",       "dedup", "expiry",   "agents",
                                       "queues",        NULL};

static sb_result_t mkdir_p(const char *dir)
{
    char path[4096];
    size_t n = strlen(dir);
    if (n == 0 || n >= sizeof(path)) return SB_E_INVALID;
    memcpy(path, dir, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (path[i] != '/' && path[i] != '\0') continue;
        char c = path[i];
        path[i] = '\0';
        if (mkdir(path, 0700) != 0 && errno != EEXIST) return SB_E_IO;
        path[i] = c;
    }
    return SB_OK;
}

sb_result_t esc_vault_open(esc_vault_t **out, const esc_vault_config_t *cfg)
{
    if (!out || !cfg || !cfg->dir || !cfg->master_key) return SB_E_INVALID;
    sb_result_t r = mkdir_p(cfg->dir);
    if (r != SB_OK) return r;
    esc_vault_t *v = sb_xcalloc(1, sizeof(*v));
    r = sb_store_open(&v->store, cfg->dir, db_names, cfg->map_size, cfg->max_map_size);
    if (r != SB_OK) goto fail;
    for (int i = 0; i < ESC_DB_COUNT; i++) {
        r = sb_store_db(v->store, db_names[i], &v->dbs[i]);
        if (r != SB_OK) goto fail_store;
    }
    memcpy(v->master_key, cfg->master_key, SB_SEAL_KEY_BYTES);
    v->master_key_id = cfg->master_key_id;
    v->transcript_retention_s = cfg->transcript_retention_s;
    v->dedup_retention_s = cfg->dedup_retention_s;
    *out = v;
    return SB_OK;
fail_store:
    sb_store_close(v->store);
fail:
    free(v);
    return r;
}

void esc_vault_close(esc_vault_t *v)
{
    if (!v) return;
    sb_store_close(v->store);
    sb_seal_wipe(v->master_key, sizeof(v->master_key));
    free(v);
}

sb_store_t *esc_vault_store(esc_vault_t *v)
{
    return v->store;
}

sb_store_db_t esc_vault_db(const esc_vault_t *v, esc_db_t db)
{
    return v->dbs[db];
}

sb_result_t esc_vault_read(esc_vault_t *v, sb_store_write_fn fn, void *ctx)
{
    return sb_store_read(v->store, fn, ctx);
}

sb_result_t esc_copy_id(char dst[ESC_ID_MAX + 1], const char *src)
{
    if (!src) src = "";
    size_t n = strlen(src);
    if (n > ESC_ID_MAX) return SB_E_TOO_LARGE;
    memcpy(dst, src, n + 1);
    return SB_OK;
}

void esc_set_id(char dst[ESC_ID_MAX + 1], const char *src)
{
    snprintf(dst, ESC_ID_MAX + 1, "%s", src ? src : "");
}

/* ---- batches ---- */

static esc_op_t *batch_add(esc_batch_t *b)
{
    if (b->n == b->cap) {
        b->cap = b->cap ? b->cap * 2 : 16;
        b->ops = sb_xrealloc(b->ops, b->cap * sizeof(*b->ops));
    }
    esc_op_t *op = &b->ops[b->n++];
    memset(op, 0, sizeof(*op));
    return op;
}

void esc_batch_put(esc_batch_t *b, esc_db_t db, const void *key, size_t klen, const void *val,
                   size_t vlen)
{
    esc_op_t *op = batch_add(b);
    op->db = db;
    op->key = sb_xmalloc(klen ? klen : 1);
    memcpy(op->key, key, klen);
    op->klen = klen;
    op->val = sb_xmalloc(vlen ? vlen : 1);
    if (vlen) memcpy(op->val, val, vlen);
    op->vlen = vlen;
}

void esc_batch_del(esc_batch_t *b, esc_db_t db, const void *key, size_t klen)
{
    esc_op_t *op = batch_add(b);
    op->db = db;
    op->del = true;
    op->key = sb_xmalloc(klen ? klen : 1);
    memcpy(op->key, key, klen);
    op->klen = klen;
}

void esc_batch_free(esc_batch_t *b)
{
    if (!b) return;
    for (size_t i = 0; i < b->n; i++) {
        free(b->ops[i].key);
        if (b->ops[i].val) {
            sb_seal_wipe(b->ops[i].val, b->ops[i].vlen);
            free(b->ops[i].val);
        }
    }
    free(b->ops);
    memset(b, 0, sizeof(*b));
}

typedef struct commit_ctx {
    esc_vault_t *v;
    const esc_batch_t *b;
} commit_ctx_t;

static sb_result_t apply_batch(sb_store_txn_t *txn, void *ctx)
{
    commit_ctx_t *cc = ctx;
    for (size_t i = 0; i < cc->b->n; i++) {
        const esc_op_t *op = &cc->b->ops[i];
        sb_store_db_t db = cc->v->dbs[op->db];
        sb_result_t r;
        if (op->del) {
            r = sb_store_del(txn, db, op->key, op->klen);
            if (r == SB_E_NOT_FOUND) r = SB_OK;
        } else {
            r = sb_store_put(txn, db, op->key, op->klen, op->val, op->vlen);
        }
        if (r != SB_OK) return r;
    }
    return SB_OK;
}

sb_result_t esc_vault_commit(esc_vault_t *v, const esc_batch_t *b)
{
    if (b->n == 0) return SB_OK;
    commit_ctx_t cc = {v, b};
    return sb_store_write(v->store, apply_batch, &cc);
}

/* ---- field encryption ---- */

static size_t ad_part(uint8_t *out, size_t off, size_t outmax, const void *p, size_t n)
{
    if (off + 2 + n > outmax) return outmax + 1;
    out[off] = (uint8_t)(n >> 8);
    out[off + 1] = (uint8_t)(n & 0xff);
    if (n) memcpy(out + off + 2, p, n);
    return off + 2 + n;
}

size_t esc_vault_ad(uint8_t *out, size_t outmax, const char *table, const void *key, size_t klen,
                    const char *field)
{
    size_t off = ad_part(out, 0, outmax, table, strlen(table));
    if (off <= outmax) off = ad_part(out, off, outmax, key, klen);
    if (off <= outmax) off = ad_part(out, off, outmax, field, strlen(field));
    SB_REQUIRE(off <= outmax); /* callers bound their keys well below AD_MAX */
    return off;
}

sb_result_t esc_vault_encrypt_field(uint8_t **out, size_t *out_len,
                                    const uint8_t key[SB_SEAL_KEY_BYTES], const char *table,
                                    const void *rkey, size_t rklen, const char *field,
                                    const void *plain, size_t len)
{
    uint8_t ad[AD_MAX];
    size_t adlen = esc_vault_ad(ad, sizeof(ad), table, rkey, rklen, field);
    uint8_t *c = sb_xmalloc(len + SB_SEAL_AEAD_OVERHEAD);
    sb_result_t r = sb_seal_encrypt(c, plain, len, ad, adlen, key, KEY_VERSION);
    if (r != SB_OK) {
        free(c);
        return r;
    }
    *out = c;
    *out_len = len + SB_SEAL_AEAD_OVERHEAD;
    return SB_OK;
}

sb_result_t esc_vault_decrypt_field(char **out, size_t *out_len,
                                    const uint8_t key[SB_SEAL_KEY_BYTES], const char *table,
                                    const void *rkey, size_t rklen, const char *field,
                                    const uint8_t *c, size_t clen)
{
    if (clen < SB_SEAL_AEAD_OVERHEAD || clen > ESC_TEXT_MAX + SB_SEAL_AEAD_OVERHEAD)
        return SB_E_CRYPTO;
    uint8_t ad[AD_MAX];
    size_t adlen = esc_vault_ad(ad, sizeof(ad), table, rkey, rklen, field);
    size_t n = clen - SB_SEAL_AEAD_OVERHEAD;
    char *p = sb_xmalloc(n + 1);
    sb_result_t r = sb_seal_decrypt((uint8_t *)p, c, clen, ad, adlen, key);
    if (r != SB_OK) {
        free(p);
        return SB_E_CRYPTO;
    }
    p[n] = '\0';
    *out = p;
    if (out_len) *out_len = n;
    return SB_OK;
}

/* ---- expiry index ---- */

static size_t expiry_key(uint8_t *out, int64_t expires_at_s, char tag, const void *pk, size_t pklen)
{
    SB_REQUIRE(pklen <= ESC_TURN_KEY_MAX);
    sb_store_be64(out, (uint64_t)(expires_at_s > 0 ? expires_at_s : 0));
    out[8] = (uint8_t)tag;
    memcpy(out + 9, pk, pklen);
    return 9 + pklen;
}

/* Moves the expiry entry of (tag, pk) from old_exp (0: none) to new_exp. */
static void move_expiry(esc_batch_t *b, char tag, const void *pk, size_t pklen, int64_t old_exp,
                        int64_t new_exp)
{
    uint8_t k[EXPIRY_KEY_MAX];
    if (old_exp > 0 && old_exp != new_exp) {
        size_t n = expiry_key(k, old_exp, tag, pk, pklen);
        esc_batch_del(b, ESC_DB_EXPIRY, k, n);
    }
    size_t n = expiry_key(k, new_exp, tag, pk, pklen);
    esc_batch_put(b, ESC_DB_EXPIRY, k, n, "", 0);
}

/* ---- contact keys ---- */

static bool id_ok(const char *id)
{
    size_t n = id ? strlen(id) : 0;
    return n > 0 && n <= ESC_ID_MAX;
}

sb_result_t esc_vault_contact_key(esc_vault_t *v, sb_store_txn_t *txn, const char *contact_id,
                                  esc_batch_t *create, int64_t now_ms,
                                  uint8_t key[SB_SEAL_KEY_BYTES])
{
    if (!id_ok(contact_id)) return SB_E_INVALID;
    size_t idlen = strlen(contact_id);
    sb_store_val_t val;
    sb_result_t r = sb_store_get(txn, v->dbs[ESC_DB_CONTACT_KEYS], contact_id, idlen, &val);
    if (r == SB_OK) {
        Switchboard__V1__ContactKey *ck = NULL;
        r = SB_CODEC_UNPACK(switchboard__v1__contact_key__descriptor, val.data, val.len, &ck);
        if (r != SB_OK) return SB_E_CRYPTO;
        if (ck->wrapped.len != SB_SEAL_WRAPPED_KEY_BYTES || ck->kek_id != v->master_key_id) {
            /* a master key we do not hold: rotation must re-wrap first */
            SB_ERROR("vault", "contact key does not match master key kek_id=%u want=%u", ck->kek_id,
                     v->master_key_id);
            SB_CODEC_FREE(ck);
            return SB_E_CRYPTO;
        }
        uint8_t dek[SB_SEAL_KEY_BYTES];
        r = sb_seal_unwrap_key(dek, ck->wrapped.data, contact_id, v->master_key);
        SB_CODEC_FREE(ck);
        if (r != SB_OK) {
            sb_seal_wipe(dek, sizeof(dek));
            return SB_E_CRYPTO;
        }
        memcpy(key, dek, SB_SEAL_KEY_BYTES);
        sb_seal_wipe(dek, sizeof(dek));
        return SB_OK;
    }
    if (r != SB_E_NOT_FOUND) return r;
    if (!create) return SB_E_NOT_FOUND;

    uint8_t dek[SB_SEAL_KEY_BYTES];
    uint8_t wrapped[SB_SEAL_WRAPPED_KEY_BYTES];
    sb_seal_keygen(dek);
    r = sb_seal_wrap_key(wrapped, dek, contact_id, v->master_key, v->master_key_id);
    if (r != SB_OK) goto out;
    Switchboard__V1__ContactKey ck = SWITCHBOARD__V1__CONTACT_KEY__INIT;
    ck.version = KEY_VERSION;
    ck.kek_id = v->master_key_id;
    ck.wrapped.data = wrapped;
    ck.wrapped.len = sizeof(wrapped);
    ck.created_at_ms = now_ms;
    uint8_t *buf = NULL;
    size_t len = 0;
    r = SB_CODEC_PACK(&ck, &buf, &len);
    if (r != SB_OK) goto out;
    esc_batch_put(create, ESC_DB_CONTACT_KEYS, contact_id, idlen, buf, len);
    free(buf);
    memcpy(key, dek, SB_SEAL_KEY_BYTES);
out:
    sb_seal_wipe(dek, sizeof(dek));
    return r;
}

/* ---- contacts ---- */

static const char *nz(const char *s)
{
    return s ? s : "";
}

void esc_contact_free(esc_contact_t *c)
{
    if (!c) return;
    char **fields[] = {&c->channel, &c->sender_id,  &c->display_name, &c->phone,
                       &c->email,   &c->account_id, &c->session_id};
    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
        if (*fields[i]) {
            sb_seal_wipe(*fields[i], strlen(*fields[i]));
            free(*fields[i]);
        }
        *fields[i] = NULL;
    }
}

/* The encrypted PII fields of a ContactRecord, in one table for put and get. */
typedef struct contact_field {
    const char *name;
    size_t rec_off; /* ProtobufCBinaryData in ContactRecord */
    size_t out_off; /* char * in esc_contact_t */
} contact_field_t;

#define CF(name, field)                                                                            \
    {                                                                                              \
        name, offsetof(Switchboard__V1__ContactRecord, field), offsetof(esc_contact_t, field)      \
    }
static const contact_field_t contact_fields[] = {
    CF("sender_id", sender_id), CF("display_name", display_name), CF("phone", phone),
    CF("email", email),         CF("account_id", account_id),     CF("session_id", session_id),
};
#define NCONTACT_FIELDS (sizeof(contact_fields) / sizeof(contact_fields[0]))

sb_result_t esc_vault_put_contact(esc_vault_t *v, sb_store_txn_t *txn, esc_batch_t *b,
                                  const char *contact_id, const uint8_t key[SB_SEAL_KEY_BYTES],
                                  const sb_contact_t *c, int64_t now_ms)
{
    if (!id_ok(contact_id) || !c) return SB_E_INVALID;
    size_t idlen = strlen(contact_id);
    int64_t created = now_ms, old_exp = 0;
    sb_store_val_t val;
    sb_result_t r = sb_store_get(txn, v->dbs[ESC_DB_CONTACTS], contact_id, idlen, &val);
    if (r == SB_OK) {
        Switchboard__V1__ContactRecord *old = NULL;
        if (SB_CODEC_UNPACK(switchboard__v1__contact_record__descriptor, val.data, val.len, &old) ==
            SB_OK) {
            created = old->created_at_ms;
            old_exp = old->expires_at_s;
            SB_CODEC_FREE(old);
        }
    } else if (r != SB_E_NOT_FOUND) {
        return r;
    }

    const char *plain[NCONTACT_FIELDS] = {nz(c->sender_id), nz(c->display_name), nz(c->phone),
                                          nz(c->email),     nz(c->account_id),   nz(c->session_id)};
    Switchboard__V1__ContactRecord rec = SWITCHBOARD__V1__CONTACT_RECORD__INIT;
    rec.contact_id = (char *)contact_id;
    rec.channel = (char *)nz(c->channel);
    rec.created_at_ms = created;
    rec.updated_at_ms = now_ms;
    rec.expires_at_s = now_ms / 1000 + v->transcript_retention_s;
    r = SB_OK;
    for (size_t i = 0; i < NCONTACT_FIELDS; i++) {
        size_t n = strlen(plain[i]);
        if (n == 0) continue;
        if (n > ESC_TEXT_MAX) {
            r = SB_E_TOO_LARGE;
            break;
        }
        ProtobufCBinaryData *bd = (ProtobufCBinaryData *)((char *)&rec + contact_fields[i].rec_off);
        r = esc_vault_encrypt_field(&bd->data, &bd->len, key, "contacts", contact_id, idlen,
                                    contact_fields[i].name, plain[i], n);
        if (r != SB_OK) break;
    }
    uint8_t *buf = NULL;
    size_t len = 0;
    if (r == SB_OK) r = SB_CODEC_PACK(&rec, &buf, &len);
    if (r == SB_OK) {
        esc_batch_put(b, ESC_DB_CONTACTS, contact_id, idlen, buf, len);
        move_expiry(b, ESC_TAG_CONTACT, contact_id, idlen, old_exp, rec.expires_at_s);
    }
    free(buf);
    for (size_t i = 0; i < NCONTACT_FIELDS; i++)
        free(((ProtobufCBinaryData *)((char *)&rec + contact_fields[i].rec_off))->data);
    return r;
}

sb_result_t esc_vault_get_contact(esc_vault_t *v, sb_store_txn_t *txn, const char *contact_id,
                                  const uint8_t key[SB_SEAL_KEY_BYTES], esc_contact_t *out)
{
    if (!id_ok(contact_id)) return SB_E_INVALID;
    size_t idlen = strlen(contact_id);
    sb_store_val_t val;
    sb_result_t r = sb_store_get(txn, v->dbs[ESC_DB_CONTACTS], contact_id, idlen, &val);
    if (r != SB_OK) return r;
    Switchboard__V1__ContactRecord *rec = NULL;
    r = SB_CODEC_UNPACK(switchboard__v1__contact_record__descriptor, val.data, val.len, &rec);
    if (r != SB_OK) return SB_E_INVALID;
    esc_contact_t c = {0};
    c.channel = sb_xstrdup(nz(rec->channel));
    for (size_t i = 0; i < NCONTACT_FIELDS && r == SB_OK; i++) {
        const ProtobufCBinaryData *bd =
            (const ProtobufCBinaryData *)((const char *)rec + contact_fields[i].rec_off);
        char **dst = (char **)((char *)&c + contact_fields[i].out_off);
        if (bd->len == 0) {
            *dst = sb_xstrdup("");
            continue;
        }
        r = esc_vault_decrypt_field(dst, NULL, key, "contacts", contact_id, idlen,
                                    contact_fields[i].name, bd->data, bd->len);
    }
    SB_CODEC_FREE(rec);
    if (r != SB_OK) {
        esc_contact_free(&c);
        return r;
    }
    /* never leave a NULL behind for fields that were not reached */
    for (size_t i = 0; i < NCONTACT_FIELDS; i++) {
        char **dst = (char **)((char *)&c + contact_fields[i].out_off);
        if (!*dst) *dst = sb_xstrdup("");
    }
    *out = c;
    return SB_OK;
}

/* ---- turns ---- */

void esc_turn_free(esc_turn_t *t)
{
    if (!t) return;
    if (t->text) {
        sb_seal_wipe(t->text, strlen(t->text));
        free(t->text);
    }
    free(t->intent);
    free(t->message_id);
    free(t->agent_id);
    free(t->language);
    memset(t, 0, sizeof(*t));
}

void esc_turns_free(esc_turn_t *t, size_t n)
{
    if (!t) return;
    for (size_t i = 0; i < n; i++)
        esc_turn_free(&t[i]);
    free(t);
}

size_t esc_vault_turn_key(uint8_t *out, const char *conversation_id, int64_t at_ms,
                          const char *message_id)
{
    size_t c = strlen(conversation_id), m = strlen(message_id);
    SB_REQUIRE(c <= ESC_ID_MAX && m <= ESC_ID_MAX);
    memcpy(out, conversation_id, c);
    out[c] = 0;
    sb_store_be64(out + c + 1, (uint64_t)(at_ms > 0 ? at_ms : 0));
    memcpy(out + c + 9, message_id, m);
    return c + 9 + m;
}

sb_result_t esc_vault_put_turn(esc_vault_t *v, esc_batch_t *b, const char *conversation_id,
                               const char *contact_id, const uint8_t key[SB_SEAL_KEY_BYTES],
                               const esc_turn_t *t)
{
    (void)v;
    if (!id_ok(conversation_id) || !id_ok(t->message_id) || !id_ok(contact_id)) return SB_E_INVALID;
    const char *text = nz(t->text);
    size_t tlen = strlen(text);
    if (tlen > ESC_TEXT_MAX) return SB_E_TOO_LARGE;
    uint8_t k[ESC_TURN_KEY_MAX];
    size_t klen = esc_vault_turn_key(k, conversation_id, t->at_ms, t->message_id);
    Switchboard__V1__TurnRecord rec = SWITCHBOARD__V1__TURN_RECORD__INIT;
    sb_result_t r = esc_vault_encrypt_field(&rec.text.data, &rec.text.len, key, "turns", k, klen,
                                            "text", text, tlen);
    if (r != SB_OK) return r;
    rec.message_id = (char *)t->message_id;
    rec.at_ms = t->at_ms;
    rec.author = (Switchboard__V1__Author)t->author;
    rec.intent = (char *)nz(t->intent);
    rec.confidence = t->confidence;
    rec.kind = (Switchboard__V1__MessageKind)t->kind;
    rec.agent_id = (char *)nz(t->agent_id);
    rec.contact_id = (char *)contact_id;
    rec.language = (char *)nz(t->language);
    uint8_t *buf = NULL;
    size_t len = 0;
    r = SB_CODEC_PACK(&rec, &buf, &len);
    if (r == SB_OK) esc_batch_put(b, ESC_DB_TURNS, k, klen, buf, len);
    free(buf);
    free(rec.text.data);
    return r;
}

static bool has_turn_prefix(const sb_store_val_t *k, const char *conv, size_t clen)
{
    return k->len > clen + 9 && memcmp(k->data, conv, clen) == 0 &&
           ((const uint8_t *)k->data)[clen] == 0;
}

/* Decodes one stored turn; SB_E_CRYPTO when its text does not decrypt. */
static sb_result_t decode_turn(const sb_store_val_t *k, const sb_store_val_t *val,
                               const uint8_t key[SB_SEAL_KEY_BYTES], esc_turn_t *out)
{
    Switchboard__V1__TurnRecord *rec = NULL;
    sb_result_t r =
        SB_CODEC_UNPACK(switchboard__v1__turn_record__descriptor, val->data, val->len, &rec);
    if (r != SB_OK) return SB_E_INVALID;
    esc_turn_t t = {0};
    r = esc_vault_decrypt_field(&t.text, NULL, key, "turns", k->data, k->len, "text",
                                rec->text.data, rec->text.len);
    if (r == SB_OK) {
        t.at_ms = rec->at_ms;
        t.author = (int)rec->author;
        t.intent = sb_xstrdup(nz(rec->intent));
        t.confidence = rec->confidence;
        t.message_id = sb_xstrdup(nz(rec->message_id));
        t.agent_id = sb_xstrdup(nz(rec->agent_id));
        t.kind = (int)rec->kind;
        t.language = sb_xstrdup(nz(rec->language));
        *out = t;
    }
    SB_CODEC_FREE(rec);
    return r;
}

sb_result_t esc_vault_last_turns(esc_vault_t *v, sb_store_txn_t *txn, const char *conversation_id,
                                 const uint8_t key[SB_SEAL_KEY_BYTES], size_t max, esc_turn_t **out,
                                 size_t *n, size_t *unreadable)
{
    if (!id_ok(conversation_id)) return SB_E_INVALID;
    size_t clen = strlen(conversation_id);
    esc_turn_t *turns = sb_xcalloc(max ? max : 1, sizeof(*turns));
    size_t got = 0, bad = 0;
    sb_store_cursor_t *c = NULL;
    sb_result_t r = sb_store_cursor_open(txn, v->dbs[ESC_DB_TURNS], &c);
    if (r != SB_OK) goto fail;
    /* the first key after every "conv 0x00 ..." key is "conv 0x01"; step back from it */
    uint8_t after[ESC_ID_MAX + 1];
    memcpy(after, conversation_id, clen);
    after[clen] = 1;
    sb_store_val_t k, val;
    r = sb_store_cursor_seek(c, after, clen + 1, &k, &val);
    if (r == SB_OK)
        r = sb_store_cursor_prev(c, &k, &val);
    else if (r == SB_E_NOT_FOUND)
        r = sb_store_cursor_last(c, &k, &val);
    while (r == SB_OK && got < max && has_turn_prefix(&k, conversation_id, clen)) {
        sb_result_t d = decode_turn(&k, &val, key, &turns[got]);
        if (d == SB_OK)
            got++;
        else
            bad++;
        r = sb_store_cursor_prev(c, &k, &val);
    }
    sb_store_cursor_close(c);
    if (r != SB_OK && r != SB_E_NOT_FOUND) goto fail;
    /* collected newest first: reverse into oldest first */
    for (size_t i = 0; i < got / 2; i++) {
        esc_turn_t tmp = turns[i];
        turns[i] = turns[got - 1 - i];
        turns[got - 1 - i] = tmp;
    }
    *out = turns;
    *n = got;
    if (unreadable) *unreadable = bad;
    return SB_OK;
fail:
    esc_turns_free(turns, got);
    return r;
}

sb_result_t esc_vault_count_turns(esc_vault_t *v, sb_store_txn_t *txn, const char *conversation_id,
                                  size_t *n)
{
    if (!id_ok(conversation_id)) return SB_E_INVALID;
    size_t clen = strlen(conversation_id), count = 0;
    sb_store_cursor_t *c = NULL;
    sb_result_t r = sb_store_cursor_open(txn, v->dbs[ESC_DB_TURNS], &c);
    if (r != SB_OK) return r;
    uint8_t start[ESC_ID_MAX + 1];
    memcpy(start, conversation_id, clen);
    start[clen] = 0;
    sb_store_val_t k, val;
    r = sb_store_cursor_seek(c, start, clen + 1, &k, &val);
    while (r == SB_OK && has_turn_prefix(&k, conversation_id, clen)) {
        count++;
        r = sb_store_cursor_next(c, &k, &val);
    }
    sb_store_cursor_close(c);
    if (r != SB_OK && r != SB_E_NOT_FOUND) return r;
    *n = count;
    return SB_OK;
}

/* ---- conversation state ---- */

void esc_state_clear(esc_state_t *s)
{
    if (!s) return;
    free(s->recipient);
    s->recipient = NULL;
    s->recipient_len = 0;
}

void esc_state_set_recipient(esc_state_t *s, const uint8_t *data, size_t len)
{
    free(s->recipient);
    s->recipient = NULL;
    s->recipient_len = 0;
    if (!data || len == 0) return;
    s->recipient = sb_xmalloc(len);
    memcpy(s->recipient, data, len);
    s->recipient_len = len;
}

sb_result_t esc_vault_get_state(esc_vault_t *v, sb_store_txn_t *txn, const char *conversation_id,
                                esc_state_t *out)
{
    if (!id_ok(conversation_id)) return SB_E_INVALID;
    sb_store_val_t val;
    sb_result_t r = sb_store_get(txn, v->dbs[ESC_DB_CONVERSATIONS], conversation_id,
                                 strlen(conversation_id), &val);
    if (r != SB_OK) return r;
    Switchboard__V1__ConversationState *m = NULL;
    r = SB_CODEC_UNPACK(switchboard__v1__conversation_state__descriptor, val.data, val.len, &m);
    if (r != SB_OK) return SB_E_INVALID;
    esc_state_t s;
    memset(&s, 0, sizeof(s));
    if (esc_copy_id(s.conversation_id, m->conversation_id) != SB_OK ||
        esc_copy_id(s.channel, m->channel) != SB_OK ||
        esc_copy_id(s.contact_id, m->contact_id) != SB_OK ||
        esc_copy_id(s.team, m->team) != SB_OK || esc_copy_id(s.agent_id, m->agent_id) != SB_OK ||
        esc_copy_id(s.language, m->language) != SB_OK ||
        esc_copy_id(s.escalation_id, m->escalation_id) != SB_OK ||
        esc_copy_id(s.last_intent, m->last_intent) != SB_OK || m->state < 0 ||
        m->state > SWITCHBOARD__V1__CONV_STATE__CONV_ASSIGNED) {
        SB_CODEC_FREE(m);
        return SB_E_INVALID;
    }
    s.state = (esc_conv_state_t)m->state;
    s.last_activity_ms = m->last_activity_ms;
    s.consecutive_fallbacks = m->consecutive_fallbacks;
    s.first_bot_message_sent = m->first_bot_message_sent;
    esc_state_set_recipient(&s, m->recipient.data, m->recipient.len);
    s.partition = m->partition;
    s.created_at_ms = m->created_at_ms;
    s.escalated_at_ms = m->escalated_at_ms;
    s.assigned_at_ms = m->assigned_at_ms;
    s.first_response_at_ms = m->first_response_at_ms;
    s.expires_at_s = m->expires_at_s;
    s.resume_pending = m->resume_pending;
    for (size_t i = 0; i < m->n_reasons && s.nreasons < ESC_MAX_REASONS; i++)
        s.reasons[s.nreasons++] = (int)m->reasons[i];
    s.last_confidence = m->last_confidence;
    s.turns = m->turns;
    SB_CODEC_FREE(m);
    *out = s;
    return SB_OK;
}

sb_result_t esc_vault_put_state(esc_vault_t *v, esc_batch_t *b, esc_state_t *s)
{
    if (!id_ok(s->conversation_id)) return SB_E_INVALID;
    size_t idlen = strlen(s->conversation_id);
    int64_t new_exp = s->last_activity_ms / 1000 + v->transcript_retention_s;
    Switchboard__V1__ConversationState m = SWITCHBOARD__V1__CONVERSATION_STATE__INIT;
    Switchboard__V1__EscalationReason reasons[ESC_MAX_REASONS];
    m.conversation_id = s->conversation_id;
    m.channel = s->channel;
    m.contact_id = s->contact_id;
    m.state = (Switchboard__V1__ConvState)s->state;
    m.team = s->team;
    m.agent_id = s->agent_id;
    m.last_activity_ms = s->last_activity_ms;
    m.consecutive_fallbacks = s->consecutive_fallbacks;
    m.first_bot_message_sent = s->first_bot_message_sent;
    m.language = s->language;
    m.recipient.data = s->recipient;
    m.recipient.len = s->recipient_len;
    m.partition = s->partition;
    m.created_at_ms = s->created_at_ms;
    m.escalated_at_ms = s->escalated_at_ms;
    m.assigned_at_ms = s->assigned_at_ms;
    m.first_response_at_ms = s->first_response_at_ms;
    m.expires_at_s = new_exp;
    m.resume_pending = s->resume_pending;
    m.escalation_id = s->escalation_id;
    for (size_t i = 0; i < s->nreasons; i++)
        reasons[i] = (Switchboard__V1__EscalationReason)s->reasons[i];
    m.n_reasons = s->nreasons;
    m.reasons = reasons;
    m.last_intent = s->last_intent;
    m.last_confidence = s->last_confidence;
    m.turns = s->turns;
    uint8_t *buf = NULL;
    size_t len = 0;
    sb_result_t r = SB_CODEC_PACK(&m, &buf, &len);
    if (r != SB_OK) return r;
    esc_batch_put(b, ESC_DB_CONVERSATIONS, s->conversation_id, idlen, buf, len);
    free(buf);
    move_expiry(b, ESC_TAG_CONVERSATION, s->conversation_id, idlen, s->expires_at_s, new_exp);
    s->expires_at_s = new_exp;
    return SB_OK;
}

/* ---- dedup, consent ---- */

static void dedup_key(uint8_t out[DEDUP_KEY_LEN], char ns, const char *id)
{
    /* ids are already pseudonymous; the hash only gives every key the same short size */
    static const uint8_t zero_key[SB_SEAL_KEY_BYTES];
    const char *parts[1] = {id};
    out[0] = (uint8_t)ns;
    sb_seal_keyed_hash(out + 1, DEDUP_KEY_LEN - 1, zero_key, parts, 1);
}

sb_result_t esc_vault_is_seen(esc_vault_t *v, sb_store_txn_t *txn, char ns, const char *id,
                              bool *seen)
{
    if (!id_ok(id)) return SB_E_INVALID;
    uint8_t k[DEDUP_KEY_LEN];
    dedup_key(k, ns, id);
    sb_store_val_t val;
    sb_result_t r = sb_store_get(txn, v->dbs[ESC_DB_DEDUP], k, sizeof(k), &val);
    if (r == SB_OK) {
        *seen = true;
        return SB_OK;
    }
    if (r == SB_E_NOT_FOUND) {
        *seen = false;
        return SB_OK;
    }
    return r;
}

void esc_vault_mark_seen(esc_vault_t *v, esc_batch_t *b, char ns, const char *id, int64_t now_ms)
{
    uint8_t k[DEDUP_KEY_LEN], val[8];
    dedup_key(k, ns, id);
    sb_store_be64(val, (uint64_t)now_ms);
    esc_batch_put(b, ESC_DB_DEDUP, k, sizeof(k), val, sizeof(val));
    move_expiry(b, ESC_TAG_DEDUP, k, sizeof(k), 0, now_ms / 1000 + v->dedup_retention_s);
}

sb_result_t esc_vault_put_consent(esc_vault_t *v, esc_batch_t *b,
                                  const Switchboard__V1__ConsentRecord *rec)
{
    (void)v;
    if (!id_ok(rec->contact_id) || !id_ok(rec->message_id)) return SB_E_INVALID;
    uint8_t k[ESC_TURN_KEY_MAX];
    size_t klen = esc_vault_turn_key(k, rec->contact_id, rec->at_ms, rec->message_id);
    uint8_t *buf = NULL;
    size_t len = 0;
    sb_result_t r = SB_CODEC_PACK(rec, &buf, &len);
    if (r != SB_OK) return r;
    esc_batch_put(b, ESC_DB_CONSENT, k, klen, buf, len);
    free(buf);
    return SB_OK;
}

/* ---- retention ---- */

typedef struct sweep_ctx {
    esc_vault_t *v;
    int64_t now_s;
    size_t max;
    size_t deleted;
    bool more;
} sweep_ctx_t;

static sb_result_t del_quiet(sb_store_txn_t *txn, sb_store_db_t db, const void *k, size_t n)
{
    sb_result_t r = sb_store_del(txn, db, k, n);
    return r == SB_E_NOT_FOUND ? SB_OK : r;
}

/* Deletes up to budget turns of conversation pk; *done when none is left. */
static sb_result_t sweep_turns(sweep_ctx_t *sc, sb_store_txn_t *txn, const uint8_t *pk,
                               size_t pklen, size_t budget, size_t *deleted, bool *done)
{
    uint8_t start[ESC_ID_MAX + 1];
    if (pklen > ESC_ID_MAX) {
        *done = true;
        return SB_OK;
    }
    memcpy(start, pk, pklen);
    start[pklen] = 0;
    sb_store_cursor_t *c = NULL;
    sb_result_t r = sb_store_cursor_open(txn, sc->v->dbs[ESC_DB_TURNS], &c);
    if (r != SB_OK) return r;
    size_t n = 0;
    *done = false;
    for (;;) {
        sb_store_val_t k, val;
        r = sb_store_cursor_seek(c, start, pklen + 1, &k, &val);
        if (r == SB_E_NOT_FOUND || (r == SB_OK && !has_turn_prefix(&k, (const char *)pk, pklen))) {
            *done = true;
            r = SB_OK;
            break;
        }
        if (r != SB_OK) break;
        if (n >= budget) break;
        r = sb_store_cursor_del(c);
        if (r != SB_OK) break;
        n++;
    }
    sb_store_cursor_close(c);
    *deleted = n;
    return r;
}

static sb_result_t sweep_fn(sb_store_txn_t *txn, void *ctx)
{
    sweep_ctx_t *sc = ctx;
    esc_vault_t *v = sc->v;
    sc->deleted = 0; /* sb_store_write may run us again after growing the map */
    sc->more = false;
    sb_store_cursor_t *c = NULL;
    sb_result_t r = sb_store_cursor_open(txn, v->dbs[ESC_DB_EXPIRY], &c);
    if (r != SB_OK) return r;
    static const uint8_t zero[8];
    for (;;) {
        sb_store_val_t k, val;
        r = sb_store_cursor_seek(c, zero, sizeof(zero), &k, &val);
        if (r == SB_E_NOT_FOUND) {
            r = SB_OK;
            break;
        }
        if (r != SB_OK) break;
        if (k.len < 9) { /* not ours: drop the index entry */
            r = sb_store_cursor_del(c);
            if (r != SB_OK) break;
            continue;
        }
        int64_t exp = (int64_t)sb_store_from_be64(k.data);
        if (exp > sc->now_s) break;
        if (sc->deleted >= sc->max) {
            sc->more = true;
            break;
        }
        uint8_t tag = ((const uint8_t *)k.data)[8];
        uint8_t pk[ESC_TURN_KEY_MAX];
        size_t pklen = k.len - 9;
        if (pklen > sizeof(pk)) pklen = 0; /* cannot be ours; only the index entry goes */
        memcpy(pk, (const uint8_t *)k.data + 9, pklen);
        if (tag == ESC_TAG_DEDUP) {
            r = del_quiet(txn, v->dbs[ESC_DB_DEDUP], pk, pklen);
            sc->deleted++;
        } else if (tag == ESC_TAG_CONTACT) {
            r = del_quiet(txn, v->dbs[ESC_DB_CONTACTS], pk, pklen);
            if (r == SB_OK) r = del_quiet(txn, v->dbs[ESC_DB_CONTACT_KEYS], pk, pklen);
            sc->deleted++;
        } else if (tag == ESC_TAG_CONVERSATION) {
            size_t n = 0;
            bool done = false;
            r = sweep_turns(sc, txn, pk, pklen, sc->max - sc->deleted, &n, &done);
            sc->deleted += n;
            if (r == SB_OK && !done) {
                sc->more = true; /* the rest of its turns in the next batch */
                break;
            }
            if (r == SB_OK) r = del_quiet(txn, v->dbs[ESC_DB_CONVERSATIONS], pk, pklen);
            sc->deleted++;
        }
        if (r != SB_OK) break;
        /* the cursor may have moved while other databases changed: find the entry again */
        r = sb_store_cursor_seek(c, zero, sizeof(zero), &k, &val);
        if (r != SB_OK) break;
        r = sb_store_cursor_del(c);
        if (r != SB_OK) break;
    }
    sb_store_cursor_close(c);
    return r;
}

sb_result_t esc_vault_sweep(esc_vault_t *v, int64_t now_s, size_t max, size_t *deleted, bool *more)
{
    if (max == 0) return SB_E_INVALID;
    sweep_ctx_t sc = {v, now_s, max, 0, false};
    sb_result_t r = sb_store_write(v->store, sweep_fn, &sc);
    if (r != SB_OK) return r;
    *deleted = sc.deleted;
    *more = sc.more;
    return SB_OK;
}

typedef struct oldest_ctx {
    esc_vault_t *v;
    int64_t now_s;
    size_t scan;
    int64_t age;
} oldest_ctx_t;

static sb_result_t oldest_fn(sb_store_txn_t *txn, void *ctx)
{
    oldest_ctx_t *oc = ctx;
    sb_store_cursor_t *c = NULL;
    sb_result_t r = sb_store_cursor_open(txn, oc->v->dbs[ESC_DB_EXPIRY], &c);
    if (r != SB_OK) return r;
    static const uint8_t zero[8];
    bool seen_c = false, seen_k = false, seen_d = false;
    sb_store_val_t k, val;
    size_t i = 0;
    r = sb_store_cursor_seek(c, zero, sizeof(zero), &k, &val);
    while (r == SB_OK && i < oc->scan && !(seen_c && seen_k && seen_d)) {
        i++;
        if (k.len >= 9) {
            int64_t exp = (int64_t)sb_store_from_be64(k.data);
            uint8_t tag = ((const uint8_t *)k.data)[8];
            bool *seen = tag == ESC_TAG_CONVERSATION ? &seen_c
                         : tag == ESC_TAG_CONTACT    ? &seen_k
                         : tag == ESC_TAG_DEDUP      ? &seen_d
                                                     : NULL;
            if (seen && !*seen) {
                *seen = true;
                int64_t retention =
                    tag == ESC_TAG_DEDUP ? oc->v->dedup_retention_s : oc->v->transcript_retention_s;
                int64_t age = oc->now_s - (exp - retention);
                if (age > oc->age) oc->age = age;
            }
        }
        r = sb_store_cursor_next(c, &k, &val);
    }
    sb_store_cursor_close(c);
    return r == SB_E_NOT_FOUND ? SB_OK : r;
}

sb_result_t esc_vault_oldest_age(esc_vault_t *v, int64_t now_s, size_t scan, int64_t *age_s)
{
    oldest_ctx_t oc = {v, now_s, scan ? scan : 1, 0};
    sb_result_t r = sb_store_read(v->store, oldest_fn, &oc);
    if (r != SB_OK) return r;
    *age_s = oc.age;
    return SB_OK;
}

typedef struct erase_ctx {
    esc_vault_t *v;
    const char *contact_id;
} erase_ctx_t;

static sb_result_t erase_fn(sb_store_txn_t *txn, void *ctx)
{
    erase_ctx_t *ec = ctx;
    size_t n = strlen(ec->contact_id);
    sb_result_t r = del_quiet(txn, ec->v->dbs[ESC_DB_CONTACTS], ec->contact_id, n);
    if (r == SB_OK) r = del_quiet(txn, ec->v->dbs[ESC_DB_CONTACT_KEYS], ec->contact_id, n);
    return r;
}

sb_result_t esc_vault_erase_contact(esc_vault_t *v, const char *contact_id)
{
    if (!id_ok(contact_id)) return SB_E_INVALID;
    erase_ctx_t ec = {v, contact_id};
    return sb_store_write(v->store, erase_fn, &ec);
}
