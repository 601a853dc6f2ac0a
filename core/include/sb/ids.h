/* Pseudonymous ids: conversation, contact and message ids on the bus are keyed BLAKE2b hashes
 * (the deployment's id secret) of channel-level identifiers, so no provider id or phone number
 * appears in a subject, header, log or metric. The partition is derived from the
 * conversation id. */
#ifndef SB_IDS_H
#define SB_IDS_H

#include <stdint.h>

#include "seal.h"

/* All ids are 32 lowercase hex chars + NUL written into out; key is the id secret. Pure
 * functions, any thread. */
/* H("conv", channel, account, sender) — one conversation per customer per business account. */
void sb_ids_conversation(char out[SB_SEAL_HASH_HEX], const uint8_t key[SB_SEAL_KEY_BYTES],
                         const char *channel, const char *account, const char *sender);
/* H("contact", channel, sender). */
void sb_ids_contact(char out[SB_SEAL_HASH_HEX], const uint8_t key[SB_SEAL_KEY_BYTES],
                    const char *channel, const char *sender);
/* H("msg", dedup_key): the message id, also used as Nats-Msg-Id. */
void sb_ids_message(char out[SB_SEAL_HASH_HEX], const uint8_t key[SB_SEAL_KEY_BYTES],
                    const char *dedup_key);
/* Stable partition in [0, partitions) of a conversation id (hex): the first 8 hex characters
 * read as a big-endian uint32, modulo partitions. Stable forever: changing it would move
 * conversations to other workers. Ids that are not hex fall back to FNV-1a over the string;
 * partitions == 0 counts as 1. */
uint32_t sb_ids_partition(const char *conversation_id, uint32_t partitions);

#endif
