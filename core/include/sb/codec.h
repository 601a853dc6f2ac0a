/* Codec: Switchboard's only caller of protobuf-c pack/unpack. Every payload from the bus is
 * bounded before it is decoded. */
#ifndef SB_CODEC_H
#define SB_CODEC_H

#include <stddef.h>
#include <stdint.h>

#include "result.h"
#include "switchboard.pb-c.h"

/* Largest protobuf payload accepted from the bus. */
#define SB_CODEC_MAX_BYTES (4u * 1024u * 1024u)

typedef Switchboard__V1__Envelope sb_envelope_t;
typedef Switchboard__V1__Contact sb_contact_t;
typedef Switchboard__V1__Classification sb_classification_t;
typedef Switchboard__V1__BotTurn sb_bot_turn_t;
typedef Switchboard__V1__Recipient sb_recipient_t;
typedef Switchboard__V1__Outbound sb_outbound_t;
typedef Switchboard__V1__Escalation sb_escalation_t;
typedef Switchboard__V1__AgentCommand sb_agent_command_t;
typedef Switchboard__V1__Event sb_event_t;

/* Packs msg into a new heap buffer the caller frees with free(). SB_E_TOO_LARGE (nothing
 * allocated) if the packed size is above SB_CODEC_MAX_BYTES, which no consumer would accept.
 * Any thread. */
SB_MUST_CHECK sb_result_t sb_codec_pack(const ProtobufCMessage *msg, uint8_t **out,
                                        size_t *out_len);
/* Unpacks len bytes as a message of type desc. SB_E_TOO_LARGE above SB_CODEC_MAX_BYTES,
 * SB_E_INVALID if malformed (protobuf-c does not check UTF-8 of string fields). The caller
 * frees *out with sb_codec_free; *out is written only on success. Any thread. */
SB_MUST_CHECK sb_result_t sb_codec_unpack(const ProtobufCMessageDescriptor *desc, const void *data,
                                          size_t len, ProtobufCMessage **out);
void sb_codec_free(ProtobufCMessage *msg);

/* Typed shorthands. */
#define SB_CODEC_UNPACK(type_desc, data, len, outpp)                                               \
    sb_codec_unpack(&(type_desc), (data), (len), (ProtobufCMessage **)(outpp))
#define SB_CODEC_PACK(msgp, outp, lenp) sb_codec_pack((const ProtobufCMessage *)(msgp), outp, lenp)
#define SB_CODEC_FREE(msgp) sb_codec_free((ProtobufCMessage *)(msgp))

#endif
