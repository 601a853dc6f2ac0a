/* Unit tests of the escalation vault against a real LMDB environment in a temporary directory:
 * contact and turn records round-trip through encryption, the bytes on disk never hold the
 * plaintext, a ciphertext does not open under another record's or field's additional data,
 * dedup, the retention sweep in bounded batches, and erasure of a contact's key. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sb/seal.h"
#include "sb/util.h"
#include "vault.h"

#define DAY 86400
#define T0_MS 1800000000000LL /* a fixed "now" */

static const char *const NAME = "Quintessa Marbleworth";
static const char *const PHONE = "+44 7700 900461";
static const char *const EMAIL = "quintessa.marbleworth@example.org";
static const char *const SENDER = "447700900461";
static const char *const TEXT1 = "my parcel zyxwvut never arrived";
static const char *const TEXT2 = "the order number is qqq-31337";

typedef struct fx {
    char dir[256];
    char lmdb[300];
    uint8_t master[SB_SEAL_KEY_BYTES];
    esc_vault_t *v;
} fx_t;

static void rm_rf(const char *path)
{
    DIR *d = opendir(path);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
            char p[1024];
            snprintf(p, sizeof(p), "%s/%s", path, e->d_name);
            rm_rf(p);
        }
        closedir(d);
        rmdir(path);
    } else {
        unlink(path);
    }
}

static esc_vault_t *open_vault(fx_t *f, const uint8_t *master, uint32_t kek_id)
{
    esc_vault_config_t vc = {.dir = f->lmdb,
                             .map_size = 1 << 20,
                             .max_map_size = 64 << 20,
                             .master_key = master,
                             .master_key_id = kek_id,
                             .transcript_retention_s = 30 * DAY,
                             .dedup_retention_s = 8 * DAY};
    esc_vault_t *v = NULL;
    assert_int_equal(esc_vault_open(&v, &vc), SB_OK);
    return v;
}

static int setup(void **state)
{
    assert_int_equal(sb_seal_init(), SB_OK);
    fx_t *f = sb_xcalloc(1, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "/tmp/sb-esc-vault-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->lmdb, sizeof(f->lmdb), "%s/lmdb", f->dir);
    sb_seal_random(f->master, sizeof(f->master));
    f->v = open_vault(f, f->master, 1);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx_t *f = *state;
    esc_vault_close(f->v);
    rm_rf(f->dir);
    free(f);
    return 0;
}

/* ---- helpers running steps inside read transactions ---- */

typedef struct step {
    fx_t *f;
    const char *contact_id;
    const char *conv;
    esc_batch_t batch;
    uint8_t key[SB_SEAL_KEY_BYTES];
    sb_result_t key_r;
    esc_contact_t contact;
    sb_result_t contact_r;
    esc_turn_t *turns;
    size_t nturns, unreadable, count;
    sb_result_t turns_r;
    size_t max;
    char ns;
    const char *id;
    bool seen;
} step_t;

static sb_result_t do_key(sb_store_txn_t *txn, void *ctx)
{
    step_t *s = ctx;
    s->key_r = esc_vault_contact_key(s->f->v, txn, s->contact_id, &s->batch, T0_MS, s->key);
    return SB_OK;
}

static sb_result_t do_key_nocreate(sb_store_txn_t *txn, void *ctx)
{
    step_t *s = ctx;
    s->key_r = esc_vault_contact_key(s->f->v, txn, s->contact_id, NULL, T0_MS, s->key);
    return SB_OK;
}

static sb_result_t do_get_contact(sb_store_txn_t *txn, void *ctx)
{
    step_t *s = ctx;
    s->contact_r = esc_vault_get_contact(s->f->v, txn, s->contact_id, s->key, &s->contact);
    return SB_OK;
}

static sb_result_t do_last_turns(sb_store_txn_t *txn, void *ctx)
{
    step_t *s = ctx;
    s->turns_r = esc_vault_last_turns(s->f->v, txn, s->conv, s->key, s->max, &s->turns, &s->nturns,
                                      &s->unreadable);
    if (s->turns_r == SB_OK) s->turns_r = esc_vault_count_turns(s->f->v, txn, s->conv, &s->count);
    return SB_OK;
}

static sb_result_t do_seen(sb_store_txn_t *txn, void *ctx)
{
    step_t *s = ctx;
    return esc_vault_is_seen(s->f->v, txn, s->ns, s->id, &s->seen);
}

typedef struct put_contact_ctx {
    step_t *s;
    const sb_contact_t *c;
    int64_t now;
    sb_result_t r;
} put_contact_ctx_t;

static sb_result_t do_put_contact(sb_store_txn_t *txn, void *ctx)
{
    put_contact_ctx_t *p = ctx;
    p->r = esc_vault_put_contact(p->s->f->v, txn, &p->s->batch, p->s->contact_id, p->s->key, p->c,
                                 p->now);
    return SB_OK;
}

/* Creates the key of contact_id and stores the contact (committed). */
static void store_contact(fx_t *f, const char *contact_id, uint8_t key[SB_SEAL_KEY_BYTES],
                          int64_t now)
{
    step_t s = {.f = f, .contact_id = contact_id};
    assert_int_equal(esc_vault_read(f->v, do_key, &s), SB_OK);
    assert_int_equal(s.key_r, SB_OK);
    sb_contact_t c = SWITCHBOARD__V1__CONTACT__INIT;
    c.channel = (char *)"whatsapp";
    c.sender_id = (char *)SENDER;
    c.display_name = (char *)NAME;
    c.phone = (char *)PHONE;
    c.email = (char *)EMAIL;
    c.account_id = (char *)"15550001111";
    put_contact_ctx_t p = {&s, &c, now, SB_E_INTERNAL};
    assert_int_equal(esc_vault_read(f->v, do_put_contact, &p), SB_OK);
    assert_int_equal(p.r, SB_OK);
    assert_int_equal(esc_vault_commit(f->v, &s.batch), SB_OK);
    esc_batch_free(&s.batch);
    memcpy(key, s.key, SB_SEAL_KEY_BYTES);
}

static void store_turn(fx_t *f, const char *conv, const char *contact_id,
                       const uint8_t key[SB_SEAL_KEY_BYTES], int64_t at_ms, const char *msg_id,
                       const char *text)
{
    esc_batch_t b = {0};
    esc_turn_t t = {.at_ms = at_ms,
                    .text = (char *)text,
                    .intent = (char *)"order_status",
                    .confidence = 0.9f,
                    .message_id = (char *)msg_id,
                    .kind = 1};
    assert_int_equal(esc_vault_put_turn(f->v, &b, conv, contact_id, key, &t), SB_OK);
    assert_int_equal(esc_vault_commit(f->v, &b), SB_OK);
    esc_batch_free(&b);
}

static void store_state(fx_t *f, const char *conv, const char *contact_id, int64_t at_ms)
{
    esc_state_t s;
    memset(&s, 0, sizeof(s));
    esc_set_id(s.conversation_id, conv);
    esc_set_id(s.contact_id, contact_id);
    esc_set_id(s.channel, "whatsapp");
    s.last_activity_ms = at_ms;
    esc_batch_t b = {0};
    assert_int_equal(esc_vault_put_state(f->v, &b, &s), SB_OK);
    assert_int_equal(esc_vault_commit(f->v, &b), SB_OK);
    esc_batch_free(&b);
}

static step_t read_turns(fx_t *f, const char *conv, const uint8_t key[SB_SEAL_KEY_BYTES],
                         size_t max)
{
    step_t s = {.f = f, .conv = conv, .max = max};
    memcpy(s.key, key, SB_SEAL_KEY_BYTES);
    assert_int_equal(esc_vault_read(f->v, do_last_turns, &s), SB_OK);
    return s;
}

/* True if any file under dir contains needle. */
static bool dir_contains(const char *dir, const char *needle)
{
    DIR *d = opendir(dir);
    if (!d) return false;
    bool found = false;
    struct dirent *e;
    while (!found && (e = readdir(d)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char p[1024];
        snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
        struct stat st;
        if (stat(p, &st) != 0) continue;
        if (S_ISDIR(st.st_mode)) {
            found = dir_contains(p, needle);
            continue;
        }
        char *data = NULL;
        size_t len = 0;
        if (sb_read_file(p, 1u << 30, &data, &len) != SB_OK) continue;
        found = memmem(data, len, needle, strlen(needle)) != NULL;
        free(data);
    }
    closedir(d);
    return found;
}

/* ---- tests ---- */

static void test_contact_round_trip(void **state)
{
    fx_t *f = *state;
    uint8_t key[SB_SEAL_KEY_BYTES];
    store_contact(f, "ct1", key, T0_MS);

    /* the key is stable: read again without create */
    step_t s = {.f = f, .contact_id = "ct1"};
    assert_int_equal(esc_vault_read(f->v, do_key_nocreate, &s), SB_OK);
    assert_int_equal(s.key_r, SB_OK);
    assert_memory_equal(s.key, key, SB_SEAL_KEY_BYTES);

    assert_int_equal(esc_vault_read(f->v, do_get_contact, &s), SB_OK);
    assert_int_equal(s.contact_r, SB_OK);
    assert_string_equal(s.contact.display_name, NAME);
    assert_string_equal(s.contact.phone, PHONE);
    assert_string_equal(s.contact.email, EMAIL);
    assert_string_equal(s.contact.sender_id, SENDER);
    assert_string_equal(s.contact.channel, "whatsapp");
    assert_string_equal(s.contact.session_id, "");
    esc_contact_free(&s.contact);

    /* an unknown contact has no key unless asked to create one */
    step_t u = {.f = f, .contact_id = "nobody"};
    assert_int_equal(esc_vault_read(f->v, do_key_nocreate, &u), SB_OK);
    assert_int_equal(u.key_r, SB_E_NOT_FOUND);
}

static void test_turns_round_trip_and_order(void **state)
{
    fx_t *f = *state;
    uint8_t key[SB_SEAL_KEY_BYTES];
    store_contact(f, "ct1", key, T0_MS);
    store_turn(f, "conv1", "ct1", key, T0_MS + 3000, "m3", "third");
    store_turn(f, "conv1", "ct1", key, T0_MS + 1000, "m1", TEXT1);
    store_turn(f, "conv1", "ct1", key, T0_MS + 2000, "m2", TEXT2);
    /* a conversation whose id extends conv1 must not leak into it */
    store_turn(f, "conv10", "ct1", key, T0_MS + 9000, "m9", "other conversation");

    step_t s = read_turns(f, "conv1", key, 2);
    assert_int_equal(s.turns_r, SB_OK);
    assert_int_equal(s.nturns, 2);
    assert_int_equal(s.count, 3);
    assert_string_equal(s.turns[0].text, TEXT2);
    assert_string_equal(s.turns[0].message_id, "m2");
    assert_string_equal(s.turns[1].text, "third");
    assert_string_equal(s.turns[1].intent, "order_status");
    assert_true(s.turns[0].at_ms < s.turns[1].at_ms);
    esc_turns_free(s.turns, s.nturns);

    s = read_turns(f, "conv1", key, 10);
    assert_int_equal(s.nturns, 3);
    assert_string_equal(s.turns[0].text, TEXT1);
    esc_turns_free(s.turns, s.nturns);

    s = read_turns(f, "conv10", key, 10);
    assert_int_equal(s.nturns, 1);
    esc_turns_free(s.turns, s.nturns);

    s = read_turns(f, "conv2", key, 10);
    assert_int_equal(s.nturns, 0);
    esc_turns_free(s.turns, s.nturns);
}

static void test_stored_bytes_hold_no_plaintext(void **state)
{
    fx_t *f = *state;
    uint8_t key[SB_SEAL_KEY_BYTES];
    store_contact(f, "ct1", key, T0_MS);
    store_turn(f, "conv1", "ct1", key, T0_MS, "m1", TEXT1);
    store_turn(f, "conv1", "ct1", key, T0_MS + 1, "m2", TEXT2);
    esc_vault_close(f->v); /* everything on disk */
    f->v = open_vault(f, f->master, 1);
    /* the check can fail: the ids, which are not secret, are found */
    assert_true(dir_contains(f->lmdb, "conv1"));
    const char *secrets[] = {NAME,   "Marbleworth", PHONE, "7700 900461", EMAIL,
                             SENDER, TEXT1,         TEXT2, "zyxwvut"};
    for (size_t i = 0; i < sizeof(secrets) / sizeof(secrets[0]); i++) {
        if (dir_contains(f->lmdb, secrets[i])) fail_msg("plaintext found on disk: item %zu", i);
    }
}

static void test_wrong_ad_fails(void **state)
{
    (void)state;
    uint8_t key[SB_SEAL_KEY_BYTES], other[SB_SEAL_KEY_BYTES];
    sb_seal_keygen(key);
    sb_seal_keygen(other);
    uint8_t *c = NULL;
    size_t clen = 0;
    assert_int_equal(esc_vault_encrypt_field(&c, &clen, key, "contacts", "ct1", 3, "phone", PHONE,
                                             strlen(PHONE)),
                     SB_OK);
    assert_null(memmem(c, clen, PHONE, strlen(PHONE)));
    char *p = NULL;
    size_t plen = 0;
    assert_int_equal(
        esc_vault_decrypt_field(&p, &plen, key, "contacts", "ct1", 3, "phone", c, clen), SB_OK);
    assert_string_equal(p, PHONE);
    assert_int_equal(plen, strlen(PHONE));
    free(p);
    p = NULL;
    /* another field, another record, another table, another key: nothing opens */
    assert_int_equal(esc_vault_decrypt_field(&p, NULL, key, "contacts", "ct1", 3, "email", c, clen),
                     SB_E_CRYPTO);
    assert_int_equal(esc_vault_decrypt_field(&p, NULL, key, "contacts", "ct2", 3, "phone", c, clen),
                     SB_E_CRYPTO);
    assert_int_equal(esc_vault_decrypt_field(&p, NULL, key, "turns", "ct1", 3, "phone", c, clen),
                     SB_E_CRYPTO);
    assert_int_equal(
        esc_vault_decrypt_field(&p, NULL, other, "contacts", "ct1", 3, "phone", c, clen),
        SB_E_CRYPTO);
    c[clen - 1] ^= 1;
    assert_int_equal(esc_vault_decrypt_field(&p, NULL, key, "contacts", "ct1", 3, "phone", c, clen),
                     SB_E_CRYPTO);
    assert_int_equal(esc_vault_decrypt_field(&p, NULL, key, "contacts", "ct1", 3, "phone", c, 10),
                     SB_E_CRYPTO);
    assert_null(p);
    free(c);
}

typedef struct raw {
    fx_t *f;
    const uint8_t *k;
    size_t klen;
    uint8_t *val;
    size_t vlen;
    sb_result_t r;
} raw_t;

static sb_result_t do_raw_get(sb_store_txn_t *txn, void *ctx)
{
    raw_t *r = ctx;
    sb_store_val_t v;
    r->r = sb_store_get(txn, esc_vault_db(r->f->v, ESC_DB_TURNS), r->k, r->klen, &v);
    if (r->r == SB_OK) {
        r->val = sb_xmalloc(v.len);
        memcpy(r->val, v.data, v.len);
        r->vlen = v.len;
    }
    return SB_OK;
}

static void test_turn_moved_to_another_key_does_not_open(void **state)
{
    fx_t *f = *state;
    uint8_t key[SB_SEAL_KEY_BYTES];
    store_contact(f, "ct1", key, T0_MS);
    store_turn(f, "conv1", "ct1", key, T0_MS, "m1", TEXT1);
    /* copy the stored value under another turn key (a cut-and-paste of ciphertext) */
    uint8_t k1[ESC_TURN_KEY_MAX], k2[ESC_TURN_KEY_MAX];
    size_t k1len = esc_vault_turn_key(k1, "conv1", T0_MS, "m1");
    size_t k2len = esc_vault_turn_key(k2, "conv1", T0_MS + 5, "m2");
    raw_t raw = {.f = f, .k = k1, .klen = k1len};
    assert_int_equal(esc_vault_read(f->v, do_raw_get, &raw), SB_OK);
    assert_int_equal(raw.r, SB_OK);
    esc_batch_t b = {0};
    esc_batch_put(&b, ESC_DB_TURNS, k2, k2len, raw.val, raw.vlen);
    assert_int_equal(esc_vault_commit(f->v, &b), SB_OK);
    esc_batch_free(&b);
    free(raw.val);

    step_t s = read_turns(f, "conv1", key, 10);
    assert_int_equal(s.count, 2);
    assert_int_equal(s.nturns, 1);
    assert_int_equal(s.unreadable, 1);
    assert_string_equal(s.turns[0].message_id, "m1");
    esc_turns_free(s.turns, s.nturns);
}

static void test_dedup(void **state)
{
    fx_t *f = *state;
    step_t s = {.f = f, .ns = ESC_DEDUP_MESSAGE, .id = "abc123"};
    assert_int_equal(esc_vault_read(f->v, do_seen, &s), SB_OK);
    assert_false(s.seen);
    esc_batch_t b = {0};
    esc_vault_mark_seen(f->v, &b, ESC_DEDUP_MESSAGE, "abc123", T0_MS);
    assert_int_equal(esc_vault_commit(f->v, &b), SB_OK);
    esc_batch_free(&b);
    assert_int_equal(esc_vault_read(f->v, do_seen, &s), SB_OK);
    assert_true(s.seen);
    /* namespaces are apart: a command with the same id is new */
    step_t c = {.f = f, .ns = ESC_DEDUP_COMMAND, .id = "abc123"};
    assert_int_equal(esc_vault_read(f->v, do_seen, &c), SB_OK);
    assert_false(c.seen);
    step_t o = {.f = f, .ns = ESC_DEDUP_MESSAGE, .id = "abc124"};
    assert_int_equal(esc_vault_read(f->v, do_seen, &o), SB_OK);
    assert_false(o.seen);
}

static void test_retention_sweep_bounded(void **state)
{
    fx_t *f = *state;
    uint8_t key[SB_SEAL_KEY_BYTES];
    int64_t fresh_ms = T0_MS + 20LL * DAY * 1000;
    store_contact(f, "ct-old", key, T0_MS);
    store_state(f, "conv-old", "ct-old", T0_MS);
    for (int i = 0; i < 5; i++) {
        char id[16];
        snprintf(id, sizeof(id), "m%d", i);
        store_turn(f, "conv-old", "ct-old", key, T0_MS + i, id, TEXT1);
    }
    uint8_t key2[SB_SEAL_KEY_BYTES];
    store_contact(f, "ct-new", key2, fresh_ms);
    store_state(f, "conv-new", "ct-new", fresh_ms);
    store_turn(f, "conv-new", "ct-new", key2, fresh_ms, "n1", TEXT2);
    esc_batch_t b = {0};
    esc_vault_mark_seen(f->v, &b, ESC_DEDUP_MESSAGE, "old-msg", T0_MS);
    /* dedup entries live 8 days: this one was seen 6 days before the sweep */
    esc_vault_mark_seen(f->v, &b, ESC_DEDUP_MESSAGE, "new-msg", T0_MS + 25LL * DAY * 1000);
    assert_int_equal(esc_vault_commit(f->v, &b), SB_OK);
    esc_batch_free(&b);

    /* nothing has expired yet */
    size_t deleted = 99;
    bool more = true;
    int64_t t0_s = T0_MS / 1000;
    assert_int_equal(esc_vault_sweep(f->v, t0_s + DAY, 100, &deleted, &more), SB_OK);
    assert_int_equal(deleted, 0);
    assert_false(more);

    /* 31 days on: the old conversation (state + 5 turns), its contact and the old dedup entry
     * go, in batches of 2; the fresh records stay */
    int64_t now_s = t0_s + 31 * DAY;
    size_t total = 0, rounds = 0;
    do {
        assert_int_equal(esc_vault_sweep(f->v, now_s, 2, &deleted, &more), SB_OK);
        assert_true(deleted <= 3); /* the batch bound (+ the record whose turns filled it) */
        total += deleted;
        rounds++;
        assert_true(rounds < 20);
    } while (more);
    assert_true(rounds >= 3);
    /* old dedup + old contact + 5 turns + old conversation state */
    assert_int_equal(total, 8);

    step_t s = read_turns(f, "conv-old", key, 10);
    assert_int_equal(s.count, 0);
    esc_turns_free(s.turns, s.nturns);
    s = read_turns(f, "conv-new", key2, 10);
    assert_int_equal(s.nturns, 1);
    assert_string_equal(s.turns[0].text, TEXT2);
    esc_turns_free(s.turns, s.nturns);

    step_t k = {.f = f, .contact_id = "ct-old"};
    assert_int_equal(esc_vault_read(f->v, do_key_nocreate, &k), SB_OK);
    assert_int_equal(k.key_r, SB_E_NOT_FOUND);
    step_t k2 = {.f = f, .contact_id = "ct-new"};
    assert_int_equal(esc_vault_read(f->v, do_key_nocreate, &k2), SB_OK);
    assert_int_equal(k2.key_r, SB_OK);

    step_t d1 = {.f = f, .ns = ESC_DEDUP_MESSAGE, .id = "old-msg"};
    assert_int_equal(esc_vault_read(f->v, do_seen, &d1), SB_OK);
    assert_false(d1.seen);
    step_t d2 = {.f = f, .ns = ESC_DEDUP_MESSAGE, .id = "new-msg"};
    assert_int_equal(esc_vault_read(f->v, do_seen, &d2), SB_OK);
    assert_true(d2.seen);

    /* the oldest record left is the fresh conversation: 11 days old */
    int64_t age = 0;
    assert_int_equal(esc_vault_oldest_age(f->v, now_s, 100, &age), SB_OK);
    assert_int_equal(age, now_s - fresh_ms / 1000);
}

typedef struct gs {
    fx_t *f;
    const char *conv;
    esc_state_t s;
    sb_result_t r;
} gs_t;

static sb_result_t do_get_state(sb_store_txn_t *txn, void *ctx)
{
    gs_t *g = ctx;
    g->r = esc_vault_get_state(g->f->v, txn, g->conv, &g->s);
    return SB_OK;
}

static void test_state_round_trip_moves_expiry(void **state)
{
    fx_t *f = *state;
    esc_state_t s;
    memset(&s, 0, sizeof(s));
    esc_set_id(s.conversation_id, "conv1");
    esc_set_id(s.team, "support");
    esc_set_id(s.agent_id, "agent-7");
    s.state = ESC_STATE_ASSIGNED;
    s.last_activity_ms = T0_MS;
    s.reasons[0] = 1;
    s.reasons[1] = 2;
    s.nreasons = 2;
    esc_state_set_recipient(&s, (const uint8_t *)"xyz", 3);
    esc_batch_t b = {0};
    assert_int_equal(esc_vault_put_state(f->v, &b, &s), SB_OK);
    assert_int_equal(esc_vault_commit(f->v, &b), SB_OK);
    esc_batch_free(&b);
    /* a later activity moves the expiry: the first index entry must not delete it early */
    s.last_activity_ms = T0_MS + 25LL * DAY * 1000;
    assert_int_equal(esc_vault_put_state(f->v, &b, &s), SB_OK);
    assert_int_equal(esc_vault_commit(f->v, &b), SB_OK);
    esc_batch_free(&b);
    esc_state_clear(&s);

    size_t deleted = 0;
    bool more = false;
    assert_int_equal(esc_vault_sweep(f->v, T0_MS / 1000 + 31 * DAY, 100, &deleted, &more), SB_OK);
    assert_int_equal(deleted, 0);

    gs_t g = {.f = f, .conv = "conv1"};
    assert_int_equal(esc_vault_read(f->v, do_get_state, &g), SB_OK);
    assert_int_equal(g.r, SB_OK);
    assert_string_equal(g.s.team, "support");
    assert_string_equal(g.s.agent_id, "agent-7");
    assert_int_equal(g.s.state, ESC_STATE_ASSIGNED);
    assert_int_equal(g.s.nreasons, 2);
    assert_int_equal(g.s.reasons[1], 2);
    assert_int_equal(g.s.recipient_len, 3);
    assert_memory_equal(g.s.recipient, "xyz", 3);
    assert_int_equal(g.s.expires_at_s, (T0_MS + 25LL * DAY * 1000) / 1000 + 30 * DAY);
    esc_state_clear(&g.s);

    /* after its (moved) expiry it goes */
    assert_int_equal(esc_vault_sweep(f->v, T0_MS / 1000 + 56 * DAY, 100, &deleted, &more), SB_OK);
    assert_int_equal(deleted, 1);
    assert_int_equal(esc_vault_read(f->v, do_get_state, &g), SB_OK);
    assert_int_equal(g.r, SB_E_NOT_FOUND);
}

static void test_erasure_makes_turns_unreadable(void **state)
{
    fx_t *f = *state;
    uint8_t key[SB_SEAL_KEY_BYTES];
    store_contact(f, "ct1", key, T0_MS);
    store_turn(f, "conv1", "ct1", key, T0_MS, "m1", TEXT1);
    store_turn(f, "conv1", "ct1", key, T0_MS + 1, "m2", TEXT2);
    step_t s = read_turns(f, "conv1", key, 10);
    assert_int_equal(s.nturns, 2);
    esc_turns_free(s.turns, s.nturns);

    assert_int_equal(esc_vault_erase_contact(f->v, "ct1"), SB_OK);
    /* no key any more: a new one would be created, and it opens nothing old */
    step_t k = {.f = f, .contact_id = "ct1"};
    assert_int_equal(esc_vault_read(f->v, do_key_nocreate, &k), SB_OK);
    assert_int_equal(k.key_r, SB_E_NOT_FOUND);
    assert_int_equal(esc_vault_read(f->v, do_key, &k), SB_OK);
    assert_int_equal(k.key_r, SB_OK);
    esc_batch_free(&k.batch);
    s = read_turns(f, "conv1", k.key, 10);
    assert_int_equal(s.turns_r, SB_OK);
    assert_int_equal(s.nturns, 0);
    assert_int_equal(s.unreadable, 2);
    assert_int_equal(s.count, 2);
    esc_turns_free(s.turns, s.nturns);
    /* and the contact record is gone */
    assert_int_equal(esc_vault_read(f->v, do_get_contact, &k), SB_OK);
    assert_int_equal(k.contact_r, SB_E_NOT_FOUND);
}

static void test_other_master_key_does_not_unwrap(void **state)
{
    fx_t *f = *state;
    uint8_t key[SB_SEAL_KEY_BYTES];
    store_contact(f, "ct1", key, T0_MS);
    esc_vault_close(f->v);
    uint8_t other[SB_SEAL_KEY_BYTES];
    sb_seal_random(other, sizeof(other));
    f->v = open_vault(f, other, 1);
    step_t k = {.f = f, .contact_id = "ct1"};
    assert_int_equal(esc_vault_read(f->v, do_key_nocreate, &k), SB_OK);
    assert_int_equal(k.key_r, SB_E_CRYPTO);
    esc_vault_close(f->v);
    f->v = open_vault(f, f->master, 2); /* right key, another id: refused, not guessed */
    assert_int_equal(esc_vault_read(f->v, do_key_nocreate, &k), SB_OK);
    assert_int_equal(k.key_r, SB_E_CRYPTO);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_contact_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_turns_round_trip_and_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stored_bytes_hold_no_plaintext, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wrong_ad_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(test_turn_moved_to_another_key_does_not_open, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_dedup, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retention_sweep_bounded, setup, teardown),
        cmocka_unit_test_setup_teardown(test_state_round_trip_moves_expiry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_erasure_makes_turns_unreadable, setup, teardown),
        cmocka_unit_test_setup_teardown(test_other_master_key_does_not_unwrap, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
