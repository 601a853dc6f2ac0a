/* Pseudonymous ids. The router turns channel-level identifiers (channel, business account,
 * provider user id, provider message id) into keyed BLAKE2b hashes under the deployment's id
 * secret (sb_seal_keyed_hash_hex); only these hashes travel in subjects, headers, logs and
 * metrics. Each id kind has its own domain tag as first hashed part ("conv", "contact", "msg"),
 * so the same inputs never produce the same id for two kinds. The partition of a conversation
 * is derived from its id and picks the NATS subjects (sb.in.<p>..., sb.nlu.<p>) and so the
 * escalation worker that owns the conversation. */
#include "sb/ids.h"

#include <stddef.h>

void sb_ids_conversation(char out[SB_SEAL_HASH_HEX], const uint8_t key[SB_SEAL_KEY_BYTES],
                         const char *channel, const char *account, const char *sender)
{
    const char *parts[] = {"conv", channel, account, sender};
    sb_seal_keyed_hash_hex(out, key, parts, 4);
}

void sb_ids_contact(char out[SB_SEAL_HASH_HEX], const uint8_t key[SB_SEAL_KEY_BYTES],
                    const char *channel, const char *sender)
{
    const char *parts[] = {"contact", channel, sender};
    sb_seal_keyed_hash_hex(out, key, parts, 3);
}

void sb_ids_message(char out[SB_SEAL_HASH_HEX], const uint8_t key[SB_SEAL_KEY_BYTES],
                    const char *dedup_key)
{
    const char *parts[] = {"msg", dedup_key};
    sb_seal_keyed_hash_hex(out, key, parts, 2);
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* The partition function is part of the on-the-wire contract and must stay stable forever:
 * changing it moves every conversation to another partition, i.e. to another escalation
 * worker and LMDB environment, which would then not find its state.
 *
 *   partition = be32(first 4 bytes of the id, i.e. its first 8 hex characters) % partitions
 *
 * An id that does not start with 8 hex characters (never produced by this module, but ids
 * can arrive from outside, e.g. agent commands) falls back to FNV-1a 32 over the whole
 * string, so every input still gets a stable partition and nothing crashes. partitions == 0
 * is treated as 1. */
uint32_t sb_ids_partition(const char *conversation_id, uint32_t partitions)
{
    if (partitions == 0) partitions = 1;
    if (conversation_id == NULL) return 0;
    uint32_t v = 0;
    int i;
    for (i = 0; i < 8; i++) {
        int d = hexval(conversation_id[i]);
        if (d < 0) break;
        v = v << 4 | (uint32_t)d;
    }
    if (i < 8) {
        v = 2166136261u;
        for (const unsigned char *p = (const unsigned char *)conversation_id; *p; p++) {
            v ^= *p;
            v *= 16777619u;
        }
    }
    return v % partitions;
}
