/* Ingress: the webhook pipeline every channel shares.
 *
 *   POST <channel path> (body bounded by the route: 413)
 *     -> channel verify on the raw bytes (401, nothing else happens)
 *     -> [pool thread] channel parse -> for each item: redact text and captions, seal the
 *        Contact (all PII) to keys.contact_public_key, pseudonymous ids, Envelope, publish on
 *        sb.in.<p>.<channel> with Nats-Msg-Id = message id; unusable authentic bytes go to
 *        sb.quarantine.<channel>
 *     -> [loop thread] 200 only after every publish was acked; 503 if any failed (the provider
 *        retries and JetStream drops the duplicates); 400/422 when a channel rejects.
 *
 * Ids on the bus: message_id = sb_ids_message(dedup key); conversation = sb_ids_conversation(
 * channel, account, sender); contact = sb_ids_contact(channel, sender); provider ids
 * (channel_message_id, in_reply_to, status refs) = sb_ingress_provider_hash below. */
#ifndef SB_ROUTER_INGRESS_H
#define SB_ROUTER_INGRESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "channel.h"
#include "sb/bus.h"
#include "sb/http.h"
#include "sb/seal.h"

typedef struct sb_ingress_keys {
    uint8_t id_secret[SB_SEAL_KEY_BYTES];
    uint8_t contact_pk[SB_SEAL_KEY_BYTES];
    uint32_t partitions;
} sb_ingress_keys_t;

/* One normalized item ready to publish. */
typedef struct sb_ingress_msg {
    char subject[128];
    char message_id[SB_SEAL_HASH_HEX];
    uint8_t *data; /* packed Envelope, heap */
    size_t len;
} sb_ingress_msg_t;

/* Keyed hash of a raw provider id: H("pmid", channel, id) as 32 hex chars. Anyone holding
 * keys.id_secret (router, tests) can recompute it to correlate statuses with sends. */
void sb_ingress_provider_hash(char out[SB_SEAL_HASH_HEX], const uint8_t key[SB_SEAL_KEY_BYTES],
                              const char *channel, const char *provider_id);
/* Nats-Msg-Id of a quarantined body: HMAC-SHA256(id_secret, "quarantine" | channel | body),
 * first 16 bytes as hex. */
void sb_ingress_quarantine_id(char out[SB_SEAL_HASH_HEX], const uint8_t key[SB_SEAL_KEY_BYTES],
                              const char *channel, const void *body, size_t len);

/* Builds the Envelope of item (batch position batch_index, received at received_at_ms) for
 * channel: redaction, sealed contact, ids, subject. SB_E_INVALID when the item cannot be
 * represented (e.g. text above the redactor's bound); SB_E_TOO_LARGE when the subject does
 * not fit. The caller frees out with sb_ingress_msg_free. Any thread (sb_redact_init and
 * sb_seal_init must have run). */
SB_MUST_CHECK sb_result_t sb_ingress_build(const sb_ingress_keys_t *keys, const char *channel,
                                           const sb_chan_item_t *item, uint32_t batch_index,
                                           int64_t received_at_ms, sb_ingress_msg_t *out);
void sb_ingress_msg_free(sb_ingress_msg_t *m);

typedef struct sb_ingress sb_ingress_t;

/* Creates the pipeline; keys are copied, bus is borrowed and must outlive it. */
sb_ingress_t *sb_ingress_create(const sb_ingress_keys_t *keys, sb_bus_t *bus);
/* Adds the POST (and GET handshake) routes of ch to srv; ch is borrowed and must outlive srv.
 * Loop thread, before sb_http_server_run. */
void sb_ingress_add_routes(sb_ingress_t *ing, sb_http_server_t *srv, sb_channel_t *ch);
/* Builds item (see sb_ingress_build) and publishes it on SB_IN, waiting for the JetStream ack:
 * the one publish path of every inbound item, webhooks and the browser widget alike (whose
 * caller authenticated and normalized the item itself). message_id (may be NULL) receives the
 * Envelope's message id once built, *duplicate (may be NULL) whether JetStream dropped it as
 * a duplicate. SB_E_INVALID when the item cannot be represented, SB_E_UNAVAILABLE when the
 * publish was not acked. Blocking: a pool thread, never the loop thread. */
SB_MUST_CHECK sb_result_t sb_ingress_publish_item(sb_ingress_t *ing, const char *channel,
                                                  const sb_chan_item_t *item, uint32_t batch_index,
                                                  int64_t received_at_ms,
                                                  char message_id[SB_SEAL_HASH_HEX],
                                                  bool *duplicate);
/* Frees the pipeline after the server stopped. */
void sb_ingress_destroy(sb_ingress_t *ing);

#endif
