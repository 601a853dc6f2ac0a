/* How the router's tests look into an Envelope the router built: open its sealed Contact, put
 * the redacted originals back into its text, and pack it without the sealed part (what anyone
 * on the bus can read) to search it for PII. Shared by the channel unit tests
 * (router_channel_test.c) and the conformance test against the real router
 * (tests/integration/test_router_conformance.c); header-only so that both build it with their
 * own targets. Include after <cmocka.h>; everything asserts with cmocka. */
#ifndef SB_ROUTER_ENVELOPE_CHECK_H
#define SB_ROUTER_ENVELOPE_CHECK_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sb/codec.h"
#include "sb/seal.h"
#include "sb/util.h"

/* The Contact sealed in env, opened with the key pair pk/sk (asserted). Free with
 * SB_CODEC_FREE. */
static inline sb_contact_t *fx_open_contact(const sb_envelope_t *env,
                                            const uint8_t pk[SB_SEAL_KEY_BYTES],
                                            const uint8_t sk[SB_SEAL_KEY_BYTES])
{
    size_t clen = env->sealed_contact.len;
    assert_true(clen > SB_SEAL_BOX_OVERHEAD);
    uint8_t *plain = sb_xmalloc(clen - SB_SEAL_BOX_OVERHEAD);
    assert_int_equal(sb_seal_box_open(plain, env->sealed_contact.data, clen, pk, sk), SB_OK);
    sb_contact_t *c = NULL;
    assert_int_equal(SB_CODEC_UNPACK(switchboard__v1__contact__descriptor, plain,
                                     clen - SB_SEAL_BOX_OVERHEAD, &c),
                     SB_OK);
    free(plain);
    return c;
}

/* env's text with each of c's redaction placeholders (which must occur in it) replaced by its
 * original: the customer's own text. Heap; the caller frees. */
static inline char *fx_restored_text(const char *label, const sb_envelope_t *env,
                                     const sb_contact_t *c)
{
    char *text = sb_xstrdup(env->text);
    for (size_t i = 0; i < c->n_redactions; i++) {
        const char *ph = c->redactions[i]->placeholder;
        if (!strstr(text, ph)) fail_msg("%s: placeholder %s not in text", label, ph);
        char *at;
        while ((at = strstr(text, ph)) != NULL) {
            char *t2 = sb_xasprintf("%.*s%s%s", (int)(at - text), text, c->redactions[i]->original,
                                    at + strlen(ph));
            free(text);
            text = t2;
        }
    }
    return text;
}

/* env packed without its sealed Contact into *out (heap, *len bytes): everything on the bus that
 * is not sealed. env is unchanged on return. */
static inline void fx_pack_unsealed(sb_envelope_t *env, uint8_t **out, size_t *len)
{
    ProtobufCBinaryData sealed = env->sealed_contact;
    env->sealed_contact.data = NULL;
    env->sealed_contact.len = 0;
    assert_int_equal(SB_CODEC_PACK(env, out, len), SB_OK);
    env->sealed_contact = sealed;
}

#endif
