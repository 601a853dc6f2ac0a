/* The web-chat contract (webchat.v1) pieces shared by the server-to-server channel
 * (channel_webchat.c), browser sessions (webchat_session.c) and live delivery
 * (webchat_live.c): one decoder for the signing secret, one builder of the message event. */
#ifndef SB_ROUTER_CHANNEL_WEBCHAT_H
#define SB_ROUTER_CHANNEL_WEBCHAT_H

#include <stddef.h>
#include <stdint.h>

#include "sb/codec.h"
#include "sb/result.h"

#define SB_WEBCHAT_MAX_KEY 64 /* bytes of one decoded signing secret */

struct cJSON;

/* Decodes one "whsec_<base64>" secret (the prefix is optional) into key (SB_WEBCHAT_MAX_KEY
 * bytes). SB_E_CONFIG when it is not non-empty base64 that fits. */
SB_MUST_CHECK sb_result_t sb_webchat_decode_secret(const char *s, uint8_t *key, size_t *keylen);

/* A new webchat.v1 `message.created` object for o: schema, type, id, occurred_at (o's creation
 * time, else fallback_ms), author (bot, agent or system) and message {kind text, text, buttons,
 * in_reply_to, locale}. The caller adds the addressing fields and frees it with cJSON_Delete. */
struct cJSON *sb_webchat_message_object(const sb_outbound_t *o, int64_t fallback_ms);

#endif
