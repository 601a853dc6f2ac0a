/* The escalation worker's vault: every record it keeps in LMDB, and the encryption of the PII
 * in them. Data flows one way per message: reads happen in a read transaction while outputs
 * are computed, and every write goes into an esc_batch_t that is committed in ONE write
 * transaction after the outputs were published (esc_vault_commit). Contact fields and
 * transcript texts are encrypted (XChaCha20-Poly1305 via sb_seal) under a random per-contact
 * data key, itself stored wrapped by the master key; deleting that key (erasure, retention)
 * makes everything encrypted under it unreadable. Retention: an expiry index
 * (be64(expires_at_s) | tag | primary key) written with each record, swept in bounded batches.
 *
 * Threads: one thread owns the vault (all reads and writes); nothing here is locked. */
#ifndef ESC_VAULT_H
#define ESC_VAULT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sb/codec.h"
#include "sb/result.h"
#include "sb/seal.h"
#include "sb/store.h"
#include "store.pb-c.h"

#define ESC_ID_MAX 128     /* ids, names, intents, teams: longest accepted string */
#define ESC_TEXT_MAX 65536 /* longest transcript text stored */
#define ESC_MAX_REASONS 8

/* Expiry index tags: which database a primary key belongs to. */
#define ESC_TAG_CONVERSATION 'c' /* conversation state + all its turns */
#define ESC_TAG_CONTACT 'k'      /* contact record + its data key */
#define ESC_TAG_DEDUP 'd'        /* one dedup entry */

/* Dedup namespaces. */
#define ESC_DEDUP_MESSAGE 'm'
#define ESC_DEDUP_COMMAND 'c'

typedef enum esc_db {
    ESC_DB_CONVERSATIONS,
    ESC_DB_TURNS,
    ESC_DB_CONTACTS,
    ESC_DB_CONTACT_KEYS,
    ESC_DB_CONSENT,
    ESC_DB_DEDUP,
    ESC_DB_EXPIRY,
    ESC_DB_COUNT
} esc_db_t;

typedef struct esc_vault esc_vault_t;

typedef struct esc_vault_config {
    const char *dir; /* LMDB environment directory; created if missing */
    size_t map_size;
    size_t max_map_size;
    const uint8_t *master_key; /* SB_SEAL_KEY_BYTES, copied */
    uint32_t master_key_id;
    int64_t transcript_retention_s; /* conversations, turns, contacts after last activity */
    int64_t dedup_retention_s;
} esc_vault_config_t;

/* Opens the environment with the named databases conversations, turns, contacts,
 * contact_keys, consent, dedup, expiry, agents, queues. The caller owns *out. */
SB_MUST_CHECK sb_result_t esc_vault_open(esc_vault_t **out, const esc_vault_config_t *cfg);
/* Closes the store and wipes the master key. Safe with NULL. */
void esc_vault_close(esc_vault_t *v);
sb_store_t *esc_vault_store(esc_vault_t *v);

/* ---- write batches: every write of one message, committed together ---- */

typedef struct esc_op {
    esc_db_t db;
    bool del; /* delete key (a missing key is not an error) instead of put */
    uint8_t *key;
    size_t klen;
    uint8_t *val;
    size_t vlen;
} esc_op_t;

typedef struct esc_batch {
    esc_op_t *ops;
    size_t n, cap;
} esc_batch_t;

/* Zero-initialise a batch (esc_batch_t b = {0}); put/del copy key and value. Later operations
 * on the same key win, in order. */
void esc_batch_put(esc_batch_t *b, esc_db_t db, const void *key, size_t klen, const void *val,
                   size_t vlen);
void esc_batch_del(esc_batch_t *b, esc_db_t db, const void *key, size_t klen);
/* Frees the operations (values are wiped first). */
void esc_batch_free(esc_batch_t *b);
/* Applies b in one write transaction (all or nothing). SB_E_FULL when the map cannot grow. */
SB_MUST_CHECK sb_result_t esc_vault_commit(esc_vault_t *v, const esc_batch_t *b);

/* Runs fn in a read transaction (values borrowed from txn are valid only inside fn). */
SB_MUST_CHECK sb_result_t esc_vault_read(esc_vault_t *v, sb_store_write_fn fn, void *ctx);
/* Handle of one of the databases. */
sb_store_db_t esc_vault_db(const esc_vault_t *v, esc_db_t db);

/* ---- field encryption ---- */

/* Additional data for a field: length-prefixed table | record key | field. out holds
 * 6 + tlen + klen + flen bytes; returns the length written. */
size_t esc_vault_ad(uint8_t *out, size_t outmax, const char *table, const void *key, size_t klen,
                    const char *field);
/* Encrypts len bytes of plaintext under key (key_id = data key version) with the AD of
 * table/key/field. *out is a new heap buffer of *out_len bytes the caller frees. */
SB_MUST_CHECK sb_result_t esc_vault_encrypt_field(uint8_t **out, size_t *out_len,
                                                  const uint8_t key[SB_SEAL_KEY_BYTES],
                                                  const char *table, const void *rkey, size_t rklen,
                                                  const char *field, const void *plain, size_t len);
/* Decrypts into a new NUL-terminated heap buffer (*out, *out_len without the NUL).
 * SB_E_CRYPTO for a wrong key, AD or tampered bytes. */
SB_MUST_CHECK sb_result_t esc_vault_decrypt_field(char **out, size_t *out_len,
                                                  const uint8_t key[SB_SEAL_KEY_BYTES],
                                                  const char *table, const void *rkey, size_t rklen,
                                                  const char *field, const uint8_t *c, size_t clen);

/* ---- per-contact data keys ---- */

/* The data key of contact_id into key. When absent: with create (a batch) a fresh key is
 * generated, wrapped by the master key and queued into create; without, SB_E_NOT_FOUND.
 * SB_E_CRYPTO when the stored key does not unwrap (other master key). Wipe key after use. */
SB_MUST_CHECK sb_result_t esc_vault_contact_key(esc_vault_t *v, sb_store_txn_t *txn,
                                                const char *contact_id, esc_batch_t *create,
                                                int64_t now_ms, uint8_t key[SB_SEAL_KEY_BYTES]);

/* ---- contacts ---- */

/* Plain contact fields, owned strings ("" when absent). */
typedef struct esc_contact {
    char *channel, *sender_id, *display_name, *phone, *email, *account_id, *session_id;
} esc_contact_t;
void esc_contact_free(esc_contact_t *c);

/* Queues the contact record of contact_id (each PII field encrypted under key) and moves its
 * expiry index entry to now + transcript retention. Reads the previous record through txn. */
SB_MUST_CHECK sb_result_t esc_vault_put_contact(esc_vault_t *v, sb_store_txn_t *txn, esc_batch_t *b,
                                                const char *contact_id,
                                                const uint8_t key[SB_SEAL_KEY_BYTES],
                                                const sb_contact_t *c, int64_t now_ms);
/* Reads and decrypts the contact record. SB_E_NOT_FOUND, SB_E_CRYPTO. Caller frees *out with
 * esc_contact_free. */
SB_MUST_CHECK sb_result_t esc_vault_get_contact(esc_vault_t *v, sb_store_txn_t *txn,
                                                const char *contact_id,
                                                const uint8_t key[SB_SEAL_KEY_BYTES],
                                                esc_contact_t *out);

/* ---- turns ---- */

typedef struct esc_turn {
    int64_t at_ms;
    int author; /* Switchboard__V1__Author; 0 = the customer */
    char *text; /* redacted text */
    char *intent;
    float confidence;
    char *message_id;
    char *agent_id;
    int kind; /* Switchboard__V1__MessageKind */
    char *language;
} esc_turn_t;
void esc_turn_free(esc_turn_t *t);
void esc_turns_free(esc_turn_t *t, size_t n);

/* Builds the turns DB key conversation_id | 0x00 | be64(at_ms) | message_id into out
 * (ESC_TURN_KEY_MAX bytes); returns its length. */
#define ESC_TURN_KEY_MAX (2 * ESC_ID_MAX + 16)
size_t esc_vault_turn_key(uint8_t *out, const char *conversation_id, int64_t at_ms,
                          const char *message_id);
/* Queues a turn of conversation_id, its text encrypted under the key of contact_id. */
SB_MUST_CHECK sb_result_t esc_vault_put_turn(esc_vault_t *v, esc_batch_t *b,
                                             const char *conversation_id, const char *contact_id,
                                             const uint8_t key[SB_SEAL_KEY_BYTES],
                                             const esc_turn_t *t);
/* The last max turns of conversation_id, oldest first, decrypted with key. Turns that do not
 * decrypt (erased or other key) are skipped and counted in *unreadable (may be NULL).
 * Caller frees *out with esc_turns_free. */
SB_MUST_CHECK sb_result_t esc_vault_last_turns(esc_vault_t *v, sb_store_txn_t *txn,
                                               const char *conversation_id,
                                               const uint8_t key[SB_SEAL_KEY_BYTES], size_t max,
                                               esc_turn_t **out, size_t *n, size_t *unreadable);
/* Number of stored turns of conversation_id (tests, export). */
SB_MUST_CHECK sb_result_t esc_vault_count_turns(esc_vault_t *v, sb_store_txn_t *txn,
                                                const char *conversation_id, size_t *n);

/* ---- conversation state ---- */

typedef enum esc_conv_state {
    ESC_STATE_BOT = 0,
    ESC_STATE_QUEUED = 1,
    ESC_STATE_ASSIGNED = 2,
} esc_conv_state_t;

/* The ConversationState record as a plain struct (fixed buffers, owned recipient bytes). */
typedef struct esc_state {
    char conversation_id[ESC_ID_MAX + 1];
    char channel[ESC_ID_MAX + 1];
    char contact_id[ESC_ID_MAX + 1];
    esc_conv_state_t state;
    char team[ESC_ID_MAX + 1];
    char agent_id[ESC_ID_MAX + 1];
    int64_t last_activity_ms;
    uint32_t consecutive_fallbacks;
    bool first_bot_message_sent;
    char language[ESC_ID_MAX + 1];
    uint8_t *recipient; /* encrypted Recipient, heap, may be NULL */
    size_t recipient_len;
    uint32_t partition;
    int64_t created_at_ms;
    int64_t escalated_at_ms;
    int64_t assigned_at_ms;
    int64_t first_response_at_ms;
    int64_t expires_at_s;
    bool resume_pending;
    char escalation_id[ESC_ID_MAX + 1];
    int reasons[ESC_MAX_REASONS];
    size_t nreasons;
    char last_intent[ESC_ID_MAX + 1];
    float last_confidence;
    uint64_t turns;
} esc_state_t;

/* Frees the recipient bytes; the struct itself is the caller's. */
void esc_state_clear(esc_state_t *s);
/* Replaces s->recipient with a copy of len bytes. */
void esc_state_set_recipient(esc_state_t *s, const uint8_t *data, size_t len);
/* Copies src to dst ("" when NULL), SB_E_TOO_LARGE when longer than ESC_ID_MAX. */
SB_MUST_CHECK sb_result_t esc_copy_id(char dst[ESC_ID_MAX + 1], const char *src);
/* Copies src to dst, cut at ESC_ID_MAX bytes (for values already checked). */
void esc_set_id(char dst[ESC_ID_MAX + 1], const char *src);

/* Loads the state of conversation_id into *out (zeroed first). SB_E_NOT_FOUND, or
 * SB_E_INVALID for a record that does not decode. Clear *out with esc_state_clear. */
SB_MUST_CHECK sb_result_t esc_vault_get_state(esc_vault_t *v, sb_store_txn_t *txn,
                                              const char *conversation_id, esc_state_t *out);
/* Queues s and moves its expiry index entry to last_activity + transcript retention
 * (s->expires_at_s is updated). */
SB_MUST_CHECK sb_result_t esc_vault_put_state(esc_vault_t *v, esc_batch_t *b, esc_state_t *s);

/* ---- dedup, consent ---- */

/* Whether id was already recorded in namespace ns (ESC_DEDUP_*). */
SB_MUST_CHECK sb_result_t esc_vault_is_seen(esc_vault_t *v, sb_store_txn_t *txn, char ns,
                                            const char *id, bool *seen);
/* Queues the dedup entry of id (value = first-seen ms) and its expiry index entry. */
void esc_vault_mark_seen(esc_vault_t *v, esc_batch_t *b, char ns, const char *id, int64_t now_ms);

/* Queues a consent ledger entry. */
SB_MUST_CHECK sb_result_t esc_vault_put_consent(esc_vault_t *v, esc_batch_t *b,
                                                const Switchboard__V1__ConsentRecord *rec);

/* ---- retention and erasure ---- */

/* Deletes up to max expired records (expiry <= now_s) in one write transaction: dedup
 * entries; contacts with their data key; conversations with their turns (a turn counts as one
 * record). *deleted = records deleted, *more = expired entries remain. */
SB_MUST_CHECK sb_result_t esc_vault_sweep(esc_vault_t *v, int64_t now_s, size_t max,
                                          size_t *deleted, bool *more);
/* Age in seconds of the oldest record still kept (from the first expiry entry of each
 * retention class, examining at most `scan` index entries); 0 when empty. */
SB_MUST_CHECK sb_result_t esc_vault_oldest_age(esc_vault_t *v, int64_t now_s, size_t scan,
                                               int64_t *age_s);
/* Erasure of a person: deletes the contact record and destroys its data key, durably. Turns
 * encrypted under that key can no longer be read anywhere (store, backups). */
SB_MUST_CHECK sb_result_t esc_vault_erase_contact(esc_vault_t *v, const char *contact_id);

#endif
