/* Seal: the only file that includes <sodium.h>. Everything cryptographic in Switchboard passes
 * through here:
 *   router  --sb_seal_box-->  Envelope.sealed_contact  --sb_seal_box_open-->  escalation worker
 *   escalation store: field plaintext --sb_seal_encrypt(dek, ad)--> LMDB --sb_seal_decrypt-->
 *   per-contact dek --sb_seal_wrap_key(master key, kek_id)--> contact keys DB
 *   channel ids --sb_seal_keyed_hash--> pseudonymous ids (ids.c); webhook bodies --HMAC-->
 *   Twilio webhooks --sb_seal_hmac_sha1 (OpenSSL libcrypto: libsodium has no SHA-1)-->
 * Stored AEAD format: version(1)=1 | key_id(4, big-endian) | nonce(24) | ciphertext | tag(16).
 * The 5 header bytes are authenticated too (AEAD additional data = header | caller's ad), so a
 * changed key id or version fails like any other tampering. Key copies and temporary plaintext
 * are wiped with sodium_memzero on every exit path. */
#include "sb/seal.h"

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <pthread.h>
#include <sodium.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>

#include "sb/log.h"
#include "sb/util.h"

#define AEAD_VERSION 1
#define AEAD_HEADER 5 /* version + key_id */
#define AEAD_NONCE crypto_aead_xchacha20poly1305_ietf_NPUBBYTES
#define AEAD_TAG crypto_aead_xchacha20poly1305_ietf_ABYTES
#define AD_STACK 256 /* additional data up to this size is assembled on the stack */

_Static_assert(SB_SEAL_KEY_BYTES == crypto_aead_xchacha20poly1305_ietf_KEYBYTES, "aead key");
_Static_assert(SB_SEAL_KEY_BYTES == crypto_box_PUBLICKEYBYTES, "box public key");
_Static_assert(SB_SEAL_KEY_BYTES == crypto_box_SECRETKEYBYTES, "box secret key");
#define BOX_MAGIC "SBX1"
#define BOX_MAGIC_LEN 4
_Static_assert(SB_SEAL_BOX_OVERHEAD == BOX_MAGIC_LEN + crypto_box_PUBLICKEYBYTES +
                                           crypto_box_NONCEBYTES + crypto_box_MACBYTES,
               "box overhead");
_Static_assert(crypto_box_BEFORENMBYTES == SB_SEAL_KEY_BYTES, "shared key size");
#define BOX_SENDERS 8  /* recipients a process seals to (contact key, recipient key...) */
#define BOX_OPENERS 64 /* ephemeral keys whose shared keys an opener keeps */
_Static_assert(SB_SEAL_AEAD_OVERHEAD == AEAD_HEADER + AEAD_NONCE + AEAD_TAG, "aead overhead");
_Static_assert(SB_SEAL_KEY_BYTES == crypto_generichash_KEYBYTES, "hash key");

sb_result_t sb_seal_init(void)
{
    return sodium_init() < 0 ? SB_E_INTERNAL : SB_OK;
}

void sb_seal_random(void *buf, size_t n)
{
    randombytes_buf(buf, n);
}

void sb_seal_wipe(void *buf, size_t n)
{
    sodium_memzero(buf, n);
}

bool sb_seal_equal(const void *a, const void *b, size_t n)
{
    return sodium_memcmp(a, b, n) == 0;
}

void sb_seal_box_keypair(uint8_t pk[SB_SEAL_KEY_BYTES], uint8_t sk[SB_SEAL_KEY_BYTES])
{
    crypto_box_keypair(pk, sk);
}

/* Sender side: one ephemeral key pair and its shared key per recipient, renewed per epoch. */
typedef struct box_sender {
    uint8_t recipient[SB_SEAL_KEY_BYTES];
    uint8_t epk[SB_SEAL_KEY_BYTES];
    uint8_t k[crypto_box_BEFORENMBYTES];
    int64_t born_s;
    uint32_t uses;
    bool used;
} box_sender_t;

/* Opener side: shared keys of recently seen (our public key, ephemeral key) pairs. */
typedef struct box_opened {
    uint8_t pk[SB_SEAL_KEY_BYTES];
    uint8_t epk[SB_SEAL_KEY_BYTES];
    uint8_t k[crypto_box_BEFORENMBYTES];
    uint64_t last_use;
    bool used;
} box_opened_t;

static pthread_mutex_t box_mu = PTHREAD_MUTEX_INITIALIZER;
static box_sender_t box_senders[BOX_SENDERS];
static box_opened_t box_opened[BOX_OPENERS];
static uint64_t box_clock;

static int64_t mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec;
}

/* Copies the current epoch's epk and shared key for pk, renewing them when due. */
static sb_result_t sender_keys(const uint8_t pk[SB_SEAL_KEY_BYTES], uint8_t epk[SB_SEAL_KEY_BYTES],
                               uint8_t k[crypto_box_BEFORENMBYTES])
{
    sb_result_t rc = SB_OK;
    int64_t now = mono_s();
    pthread_mutex_lock(&box_mu);
    box_sender_t *s = NULL, *victim = &box_senders[0];
    for (size_t i = 0; i < BOX_SENDERS; i++) {
        if (box_senders[i].used &&
            sodium_memcmp(box_senders[i].recipient, pk, SB_SEAL_KEY_BYTES) == 0) {
            s = &box_senders[i];
            break;
        }
        if (!box_senders[i].used || box_senders[i].born_s < victim->born_s)
            victim = &box_senders[i];
    }
    if (s == NULL || now - s->born_s >= SB_SEAL_BOX_EPOCH_S || s->uses >= SB_SEAL_BOX_EPOCH_MSGS) {
        if (s == NULL) s = victim;
        uint8_t esk[crypto_box_SECRETKEYBYTES];
        crypto_box_keypair(s->epk, esk);
        if (crypto_box_beforenm(s->k, pk, esk) != 0) {
            rc = SB_E_CRYPTO; /* a degenerate public key */
            sodium_memzero(s, sizeof *s);
        } else {
            memcpy(s->recipient, pk, SB_SEAL_KEY_BYTES);
            s->born_s = now;
            s->uses = 0;
            s->used = true;
        }
        sodium_memzero(esk, sizeof esk);
    }
    if (rc == SB_OK) {
        s->uses++;
        memcpy(epk, s->epk, SB_SEAL_KEY_BYTES);
        memcpy(k, s->k, crypto_box_BEFORENMBYTES);
    }
    pthread_mutex_unlock(&box_mu);
    return rc;
}

sb_result_t sb_seal_box(uint8_t *out, const void *msg, size_t mlen,
                        const uint8_t pk[SB_SEAL_KEY_BYTES])
{
    if (mlen > SIZE_MAX - SB_SEAL_BOX_OVERHEAD) return SB_E_TOO_LARGE;
    uint8_t k[crypto_box_BEFORENMBYTES];
    uint8_t *epk = out + BOX_MAGIC_LEN, *nonce = epk + crypto_box_PUBLICKEYBYTES;
    sb_result_t rc = sender_keys(pk, epk, k);
    if (rc == SB_OK) {
        memcpy(out, BOX_MAGIC, BOX_MAGIC_LEN);
        randombytes_buf(nonce, crypto_box_NONCEBYTES);
        if (crypto_box_easy_afternm(nonce + crypto_box_NONCEBYTES, msg, mlen, nonce, k) != 0)
            rc = SB_E_CRYPTO;
    }
    sodium_memzero(k, sizeof k);
    return rc;
}

/* The shared key of (pk, epk) from the cache, computing it with sk on a miss. */
static sb_result_t opener_key(const uint8_t pk[SB_SEAL_KEY_BYTES],
                              const uint8_t sk[SB_SEAL_KEY_BYTES], const uint8_t *epk,
                              uint8_t k[crypto_box_BEFORENMBYTES])
{
    sb_result_t rc = SB_OK;
    pthread_mutex_lock(&box_mu);
    box_opened_t *hit = NULL, *victim = &box_opened[0];
    for (size_t i = 0; i < BOX_OPENERS; i++) {
        box_opened_t *o = &box_opened[i];
        if (o->used && sodium_memcmp(o->epk, epk, SB_SEAL_KEY_BYTES) == 0 &&
            sodium_memcmp(o->pk, pk, SB_SEAL_KEY_BYTES) == 0) {
            hit = o;
            break;
        }
        if (!o->used || o->last_use < victim->last_use) victim = o;
    }
    if (hit == NULL) {
        /* One X25519 per ephemeral key. A forged epk costs the forger as much as us, and its
         * box still fails authentication below. */
        if (crypto_box_beforenm(victim->k, epk, sk) != 0) {
            rc = SB_E_CRYPTO;
        } else {
            memcpy(victim->pk, pk, SB_SEAL_KEY_BYTES);
            memcpy(victim->epk, epk, SB_SEAL_KEY_BYTES);
            victim->used = true;
            hit = victim;
        }
    }
    if (hit != NULL) {
        hit->last_use = ++box_clock;
        memcpy(k, hit->k, crypto_box_BEFORENMBYTES);
    }
    pthread_mutex_unlock(&box_mu);
    return rc;
}

sb_result_t sb_seal_box_open(uint8_t *out, const uint8_t *c, size_t clen,
                             const uint8_t pk[SB_SEAL_KEY_BYTES],
                             const uint8_t sk[SB_SEAL_KEY_BYTES])
{
    if (clen < SB_SEAL_BOX_OVERHEAD || memcmp(c, BOX_MAGIC, BOX_MAGIC_LEN) != 0) return SB_E_CRYPTO;
    const uint8_t *epk = c + BOX_MAGIC_LEN, *nonce = epk + crypto_box_PUBLICKEYBYTES;
    const uint8_t *box = nonce + crypto_box_NONCEBYTES;
    size_t blen = clen - BOX_MAGIC_LEN - crypto_box_PUBLICKEYBYTES - crypto_box_NONCEBYTES;
    uint8_t k[crypto_box_BEFORENMBYTES];
    sb_result_t rc = opener_key(pk, sk, epk, k);
    /* open_easy_afternm verifies the tag before writing any plaintext. */
    if (rc == SB_OK && crypto_box_open_easy_afternm(out, box, blen, nonce, k) != 0)
        rc = SB_E_CRYPTO;
    sodium_memzero(k, sizeof k);
    return rc;
}

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static uint32_t get_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

/* The AEAD additional data is header(5) | caller's ad. The header has a fixed length, so the
 * concatenation is unambiguous. Small ADs live in stack (size AD_STACK), larger ones on the
 * heap; *full must be released with ad_release. */
static uint8_t *ad_assemble(uint8_t *stack, const uint8_t header[AEAD_HEADER], const void *ad,
                            size_t adlen, size_t *full_len)
{
    uint8_t *full = adlen <= AD_STACK - AEAD_HEADER ? stack : sb_xmalloc(AEAD_HEADER + adlen);
    memcpy(full, header, AEAD_HEADER);
    if (adlen > 0) memcpy(full + AEAD_HEADER, ad, adlen);
    *full_len = AEAD_HEADER + adlen;
    return full;
}

static void ad_release(uint8_t *full, uint8_t *stack)
{
    if (full != stack) free(full);
}

sb_result_t sb_seal_encrypt(uint8_t *out, const void *m, size_t mlen, const void *ad, size_t adlen,
                            const uint8_t key[SB_SEAL_KEY_BYTES], uint32_t key_id)
{
    if (mlen > SIZE_MAX - SB_SEAL_AEAD_OVERHEAD || adlen > SIZE_MAX - AEAD_HEADER)
        return SB_E_TOO_LARGE;
    if (adlen > 0 && ad == NULL) return SB_E_INVALID;

    uint8_t header[AEAD_HEADER];
    header[0] = AEAD_VERSION;
    put_be32(header + 1, key_id);

    uint8_t stack[AD_STACK];
    size_t full_len;
    uint8_t *full = ad_assemble(stack, header, ad, adlen, &full_len);

    memcpy(out, header, AEAD_HEADER);
    uint8_t *nonce = out + AEAD_HEADER;
    randombytes_buf(nonce, AEAD_NONCE);
    unsigned long long clen = 0;
    int rc = crypto_aead_xchacha20poly1305_ietf_encrypt(out + AEAD_HEADER + AEAD_NONCE, &clen, m,
                                                        mlen, full, full_len, NULL, nonce, key);
    ad_release(full, stack);
    return rc == 0 ? SB_OK : SB_E_CRYPTO;
}

sb_result_t sb_seal_decrypt(uint8_t *out, const uint8_t *c, size_t clen, const void *ad,
                            size_t adlen, const uint8_t key[SB_SEAL_KEY_BYTES])
{
    /* A truncated or unknown-version ciphertext does not open either: SB_E_CRYPTO. */
    if (clen < SB_SEAL_AEAD_OVERHEAD || c[0] != AEAD_VERSION) return SB_E_CRYPTO;
    if (adlen > SIZE_MAX - AEAD_HEADER) return SB_E_TOO_LARGE;
    if (adlen > 0 && ad == NULL) return SB_E_INVALID;

    uint8_t stack[AD_STACK];
    size_t full_len;
    uint8_t *full = ad_assemble(stack, c, ad, adlen, &full_len);

    const uint8_t *nonce = c + AEAD_HEADER;
    const uint8_t *ct = nonce + AEAD_NONCE;
    size_t mlen = clen - SB_SEAL_AEAD_OVERHEAD;
    const uint8_t *tag = ct + mlen;
    sb_result_t r = SB_E_CRYPTO;
    /* Verify first (m = NULL checks the tag only): on failure libsodium would zero the output
     * buffer, and the contract is that nothing is written to out unless it opens. */
    if (crypto_aead_xchacha20poly1305_ietf_decrypt_detached(NULL, NULL, ct, mlen, tag, full,
                                                            full_len, nonce, key) != 0)
        goto done;
    if (crypto_aead_xchacha20poly1305_ietf_decrypt_detached(out, NULL, ct, mlen, tag, full,
                                                            full_len, nonce, key) != 0)
        goto done;
    r = SB_OK;
done:
    ad_release(full, stack);
    return r;
}

sb_result_t sb_seal_key_id(const uint8_t *c, size_t clen, uint32_t *key_id)
{
    if (c == NULL || clen < SB_SEAL_AEAD_OVERHEAD || c[0] != AEAD_VERSION) return SB_E_INVALID;
    *key_id = get_be32(c + 1);
    return SB_OK;
}

void sb_seal_keygen(uint8_t key[SB_SEAL_KEY_BYTES])
{
    crypto_aead_xchacha20poly1305_ietf_keygen(key);
}

static void put_le64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* Wrap AD = len8("dek") "dek" | len8(subject) subject | len8(4) be32(kek_id), each length
 * 8 bytes little-endian, as for the keyed hash. Caller frees the result. */
static uint8_t *wrap_ad(const char *subject, uint32_t kek_id, size_t *adlen)
{
    size_t slen = strlen(subject);
    size_t n = 8 + 3 + 8 + slen + 8 + 4;
    uint8_t *ad = sb_xmalloc(n);
    uint8_t *p = ad;
    put_le64(p, 3);
    memcpy(p + 8, "dek", 3);
    p += 11;
    put_le64(p, slen);
    memcpy(p + 8, subject, slen);
    p += 8 + slen;
    put_le64(p, 4);
    put_be32(p + 8, kek_id);
    *adlen = n;
    return ad;
}

sb_result_t sb_seal_wrap_key(uint8_t out[SB_SEAL_WRAPPED_KEY_BYTES],
                             const uint8_t dek[SB_SEAL_KEY_BYTES], const char *subject,
                             const uint8_t kek[SB_SEAL_KEY_BYTES], uint32_t kek_id)
{
    if (subject == NULL) return SB_E_INVALID;
    size_t adlen;
    uint8_t *ad = wrap_ad(subject, kek_id, &adlen);
    sb_result_t r = sb_seal_encrypt(out, dek, SB_SEAL_KEY_BYTES, ad, adlen, kek, kek_id);
    free(ad);
    return r;
}

sb_result_t sb_seal_unwrap_key(uint8_t dek[SB_SEAL_KEY_BYTES],
                               const uint8_t wrapped[SB_SEAL_WRAPPED_KEY_BYTES],
                               const char *subject, const uint8_t kek[SB_SEAL_KEY_BYTES])
{
    if (subject == NULL) return SB_E_INVALID;
    uint32_t kek_id;
    if (sb_seal_key_id(wrapped, SB_SEAL_WRAPPED_KEY_BYTES, &kek_id) != SB_OK) return SB_E_CRYPTO;
    size_t adlen;
    uint8_t *ad = wrap_ad(subject, kek_id, &adlen);
    uint8_t tmp[SB_SEAL_KEY_BYTES];
    sb_result_t r = sb_seal_decrypt(tmp, wrapped, SB_SEAL_WRAPPED_KEY_BYTES, ad, adlen, kek);
    free(ad);
    if (r == SB_OK) memcpy(dek, tmp, SB_SEAL_KEY_BYTES);
    sodium_memzero(tmp, sizeof tmp);
    return r;
}

void sb_seal_keyed_hash(uint8_t *out, size_t outlen, const uint8_t key[SB_SEAL_KEY_BYTES],
                        const char *const *parts, size_t nparts)
{
    SB_REQUIRE(outlen >= crypto_generichash_BYTES_MIN && outlen <= crypto_generichash_BYTES_MAX);
    crypto_generichash_state st;
    crypto_generichash_init(&st, key, SB_SEAL_KEY_BYTES, outlen);
    for (size_t i = 0; i < nparts; i++) {
        const char *p = parts[i] != NULL ? parts[i] : "";
        size_t n = strlen(p);
        uint8_t len[8];
        put_le64(len, n);
        crypto_generichash_update(&st, len, sizeof len);
        crypto_generichash_update(&st, (const uint8_t *)p, n);
    }
    crypto_generichash_final(&st, out, outlen);
    sodium_memzero(&st, sizeof st); /* the state holds key material */
}

void sb_seal_keyed_hash_hex(char out[SB_SEAL_HASH_HEX], const uint8_t key[SB_SEAL_KEY_BYTES],
                            const char *const *parts, size_t nparts)
{
    uint8_t h[(SB_SEAL_HASH_HEX - 1) / 2];
    sb_seal_keyed_hash(h, sizeof h, key, parts, nparts);
    sodium_bin2hex(out, SB_SEAL_HASH_HEX, h, sizeof h);
}

void sb_seal_hmac_sha256(uint8_t out[32], const void *key, size_t keylen,
                         const sb_seal_part_t *parts, size_t nparts)
{
    crypto_auth_hmacsha256_state st;
    crypto_auth_hmacsha256_init(&st, key, keylen);
    for (size_t i = 0; i < nparts; i++)
        if (parts[i].len > 0) crypto_auth_hmacsha256_update(&st, parts[i].data, parts[i].len);
    crypto_auth_hmacsha256_final(&st, out);
    sodium_memzero(&st, sizeof st);
}

sb_result_t sb_seal_hmac_sha1(uint8_t out[20], const void *key, size_t keylen,
                              const sb_seal_part_t *parts, size_t nparts)
{
    sb_result_t rc = SB_E_CRYPTO;
    uint8_t mac[EVP_MAX_MD_SIZE];
    size_t maclen = 0;
    static const uint8_t empty_key[1] = {0};
    EVP_MAC *hmac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    EVP_MAC_CTX *ctx = hmac ? EVP_MAC_CTX_new(hmac) : NULL;
    char digest[] = "SHA1";
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
                           OSSL_PARAM_construct_end()};
    if (!ctx) goto out;
    /* OpenSSL refuses a NULL key; an empty one is a valid HMAC key all the same. */
    if (EVP_MAC_init(ctx, keylen ? key : empty_key, keylen, params) != 1) goto out;
    for (size_t i = 0; i < nparts; i++)
        if (parts[i].len > 0 && EVP_MAC_update(ctx, parts[i].data, parts[i].len) != 1) goto out;
    if (EVP_MAC_final(ctx, mac, &maclen, sizeof mac) != 1 || maclen != 20) goto out;
    memcpy(out, mac, 20);
    rc = SB_OK;
out:
    sodium_memzero(mac, sizeof mac);
    EVP_MAC_CTX_free(ctx); /* clears the key schedule */
    EVP_MAC_free(hmac);
    return rc;
}

void sb_seal_sha256(uint8_t out[32], const void *data, size_t len)
{
    crypto_hash_sha256(out, data, len);
}

sb_result_t sb_seal_hex_decode(uint8_t *out, size_t outmax, size_t *outlen, const char *hex,
                               size_t hexlen)
{
    if (hexlen > 0 && hex == NULL) return SB_E_INVALID;
    if (hexlen % 2 != 0 || hexlen / 2 > outmax) return SB_E_INVALID;
    size_t n = 0;
    const char *end = NULL;
    /* No ignore set: any non-hex character stops the parse, and end must reach hexlen. */
    if (sodium_hex2bin(out, outmax, hex, hexlen, NULL, &n, &end) != 0) return SB_E_INVALID;
    if (end != hex + hexlen) return SB_E_INVALID;
    *outlen = n;
    return SB_OK;
}

sb_result_t sb_seal_base64_decode(uint8_t *out, size_t outmax, size_t *outlen, const char *b64,
                                  size_t b64len)
{
    if (b64len > 0 && b64 == NULL) return SB_E_INVALID;
    if (b64len % 4 != 0) return SB_E_INVALID; /* padded variant: whole quanta only */
    size_t n = 0;
    const char *end = NULL;
    if (sodium_base642bin(out, outmax, b64, b64len, NULL, &n, &end,
                          sodium_base64_VARIANT_ORIGINAL) != 0)
        return SB_E_INVALID;
    if (end != b64 + b64len) return SB_E_INVALID;
    *outlen = n;
    return SB_OK;
}

size_t sb_seal_base64_len(size_t n)
{
    return sodium_base64_ENCODED_LEN(n, sodium_base64_VARIANT_ORIGINAL);
}

void sb_seal_base64_encode(char *out, const void *in, size_t n)
{
    sodium_bin2base64(out, sb_seal_base64_len(n), in, n, sodium_base64_VARIANT_ORIGINAL);
}

void sb_seal_hex_encode(char *out, const void *in, size_t n)
{
    sodium_bin2hex(out, 2 * n + 1, in, n);
}

sb_result_t sb_seal_key_from_base64(uint8_t key[SB_SEAL_KEY_BYTES], const char *b64)
{
    if (b64 == NULL) return SB_E_CONFIG;
    /* Decode into a larger buffer so that a longer key is detected, not truncated. */
    uint8_t tmp[SB_SEAL_KEY_BYTES * 2];
    size_t n = 0;
    sb_result_t r = SB_E_CONFIG;
    if (sb_seal_base64_decode(tmp, sizeof tmp, &n, b64, strlen(b64)) != SB_OK) goto done;
    if (n != SB_SEAL_KEY_BYTES) goto done;
    memcpy(key, tmp, SB_SEAL_KEY_BYTES);
    r = SB_OK;
done:
    sodium_memzero(tmp, sizeof tmp);
    return r;
}
