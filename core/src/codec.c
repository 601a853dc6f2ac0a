/* Codec: the only caller of protobuf-c's pack and unpack. Bytes from the bus are bounded
 * (SB_CODEC_MAX_BYTES) before protobuf-c allocates anything for them, and protobuf-c's NULL
 * becomes SB_E_INVALID; messages are packed into a malloc'd buffer of exactly
 * get_packed_size bytes. */
#include "sb/codec.h"

#include <stdlib.h>

#include "sb/util.h"

sb_result_t sb_codec_pack(const ProtobufCMessage *msg, uint8_t **out, size_t *out_len)
{
    if (!msg || !out || !out_len) return SB_E_INVALID;
    size_t n = protobuf_c_message_get_packed_size(msg);
    if (n > SB_CODEC_MAX_BYTES) return SB_E_TOO_LARGE;
    uint8_t *buf = sb_xmalloc(n ? n : 1);
    size_t written = protobuf_c_message_pack(msg, buf);
    if (written != n) {
        free(buf);
        return SB_E_INTERNAL;
    }
    *out = buf;
    *out_len = n;
    return SB_OK;
}

sb_result_t sb_codec_unpack(const ProtobufCMessageDescriptor *desc, const void *data, size_t len,
                            ProtobufCMessage **out)
{
    if (!desc || !out || (!data && len > 0)) return SB_E_INVALID;
    if (len > SB_CODEC_MAX_BYTES) return SB_E_TOO_LARGE;
    /* protobuf-c reads nothing for len 0 but still wants a non-NULL pointer */
    static const uint8_t empty[1];
    ProtobufCMessage *m =
        protobuf_c_message_unpack(desc, NULL, len, data ? (const uint8_t *)data : empty);
    if (!m) return SB_E_INVALID;
    *out = m;
    return SB_OK;
}

void sb_codec_free(ProtobufCMessage *msg)
{
    if (msg) protobuf_c_message_free_unpacked(msg, NULL);
}
