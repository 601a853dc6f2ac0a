/* Seal: Switchboard's only door to libsodium (sodium.h is included nowhere else).
 * Sealed boxes for the contact part on the bus; XChaCha20-Poly1305 with additional data for PII
 * at rest under per-contact data keys, themselves wrapped by a master key with a key id;
 * keyed BLAKE2b for pseudonymous ids; HMAC and constant-time comparison for webhook
 * signatures; hex and base64. Secrets are wiped on every exit path. OpenSSL's libcrypto is
 * included here too, for the one primitive libsodium lacks (HMAC-SHA1, Twilio). */
#ifndef SB_SEAL_H
#define SB_SEAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "result.h"

#define SB_SEAL_KEY_BYTES 32     /* symmetric keys, X25519 keys */
#define SB_SEAL_BOX_OVERHEAD 76  /* "SBX1"(4) ephemeral pk(32) nonce(24) mac(16) */
#define SB_SEAL_AEAD_OVERHEAD 45 /* version(1) key_id(4) nonce(24) tag(16) */
#define SB_SEAL_WRAPPED_KEY_BYTES (SB_SEAL_KEY_BYTES + SB_SEAL_AEAD_OVERHEAD)
#define SB_SEAL_HASH_HEX 33 /* 16-byte keyed hash as hex + NUL */

/* Initialises libsodium. Call once at start-up before anything else here; idempotent. */
SB_MUST_CHECK sb_result_t sb_seal_init(void);

/* Fills buf with n random bytes. */
void sb_seal_random(void *buf, size_t n);
/* Wipes n bytes in a way the compiler cannot elide. */
void sb_seal_wipe(void *buf, size_t n);
/* Constant-time comparison of two equal-length buffers. */
SB_MUST_CHECK bool sb_seal_equal(const void *a, const void *b, size_t n);

/* Generates an X25519 key pair for sealed boxes. */
void sb_seal_box_keypair(uint8_t pk[SB_SEAL_KEY_BYTES], uint8_t sk[SB_SEAL_KEY_BYTES]);
/* Seals msg to pk so that only the holder of pk's secret key can open it; the sender stays
 * anonymous. Format: "SBX1" | ephemeral pk(32) | nonce(24) | XSalsa20-Poly1305 box. Unlike
 * libsodium's crypto_box_seal, which pays two X25519 operations per message, the ephemeral key
 * pair is reused for SB_SEAL_BOX_EPOCH_S seconds (or SB_SEAL_BOX_EPOCH_MSGS messages) with its
 * precomputed shared key, and every message gets a random 24-byte nonce: a stolen ephemeral
 * secret (it lives only in this process's memory) exposes at most one epoch of messages.
 * out must hold mlen + SB_SEAL_BOX_OVERHEAD bytes. Any thread. */
SB_MUST_CHECK sb_result_t sb_seal_box(uint8_t *out, const void *msg, size_t mlen,
                                      const uint8_t pk[SB_SEAL_KEY_BYTES]);
/* Opens what sb_seal_box wrote: out must hold clen - SB_SEAL_BOX_OVERHEAD bytes. Shared keys
 * of recently seen ephemeral keys are cached, so one X25519 operation serves a whole epoch.
 * SB_E_CRYPTO if it does not open (nothing is written to out then). Any thread. */
SB_MUST_CHECK sb_result_t sb_seal_box_open(uint8_t *out, const uint8_t *c, size_t clen,
                                           const uint8_t pk[SB_SEAL_KEY_BYTES],
                                           const uint8_t sk[SB_SEAL_KEY_BYTES]);
#define SB_SEAL_BOX_EPOCH_S 60
#define SB_SEAL_BOX_EPOCH_MSGS 1000000u

/* Encrypts m with key under additional data ad (not stored: recomputed at read time).
 * out must hold mlen + SB_SEAL_AEAD_OVERHEAD bytes; format
 * version(1)=1 | key_id(4, big-endian) | nonce(24) | ciphertext | tag(16). */
SB_MUST_CHECK sb_result_t sb_seal_encrypt(uint8_t *out, const void *m, size_t mlen, const void *ad,
                                          size_t adlen, const uint8_t key[SB_SEAL_KEY_BYTES],
                                          uint32_t key_id);
/* Decrypts what sb_seal_encrypt wrote; out holds clen - SB_SEAL_AEAD_OVERHEAD bytes.
 * SB_E_CRYPTO on any tampering or wrong ad/key; nothing is written to out then. */
SB_MUST_CHECK sb_result_t sb_seal_decrypt(uint8_t *out, const uint8_t *c, size_t clen,
                                          const void *ad, size_t adlen,
                                          const uint8_t key[SB_SEAL_KEY_BYTES]);
/* The key id stored in a ciphertext, or SB_E_INVALID if too short / unknown version. */
SB_MUST_CHECK sb_result_t sb_seal_key_id(const uint8_t *c, size_t clen, uint32_t *key_id);

/* A fresh random data key. */
void sb_seal_keygen(uint8_t key[SB_SEAL_KEY_BYTES]);
/* Wraps a data key for subject (e.g. a contact id) under the master key with id kek_id:
 * out holds SB_SEAL_WRAPPED_KEY_BYTES. AD binds it to "dek" | subject | kek_id. */
SB_MUST_CHECK sb_result_t sb_seal_wrap_key(uint8_t out[SB_SEAL_WRAPPED_KEY_BYTES],
                                           const uint8_t dek[SB_SEAL_KEY_BYTES],
                                           const char *subject,
                                           const uint8_t kek[SB_SEAL_KEY_BYTES], uint32_t kek_id);
SB_MUST_CHECK sb_result_t sb_seal_unwrap_key(uint8_t dek[SB_SEAL_KEY_BYTES],
                                             const uint8_t wrapped[SB_SEAL_WRAPPED_KEY_BYTES],
                                             const char *subject,
                                             const uint8_t kek[SB_SEAL_KEY_BYTES]);

/* Keyed BLAKE2b: out (outlen 16..64) = H_key(parts...). Parts are length-prefixed (8-byte
 * little-endian length before each) so that ("ab","c") and ("a","bc") differ. A NULL part
 * hashes like "". Any thread. */
void sb_seal_keyed_hash(uint8_t *out, size_t outlen, const uint8_t key[SB_SEAL_KEY_BYTES],
                        const char *const *parts, size_t nparts);
/* The 16-byte keyed hash of parts as 32 lowercase hex chars + NUL. */
void sb_seal_keyed_hash_hex(char out[SB_SEAL_HASH_HEX], const uint8_t key[SB_SEAL_KEY_BYTES],
                            const char *const *parts, size_t nparts);

/* HMAC-SHA256 over the concatenation of parts (no copy), key of any length. */
typedef struct sb_seal_part {
    const void *data;
    size_t len;
} sb_seal_part_t;
void sb_seal_hmac_sha256(uint8_t out[32], const void *key, size_t keylen,
                         const sb_seal_part_t *parts, size_t nparts);
/* HMAC-SHA1 over the concatenation of parts, key of any length (OpenSSL: libsodium has no
 * SHA-1). Only for providers that still sign with it (Twilio's X-Twilio-Signature); never for
 * anything of our own. SB_E_CRYPTO when OpenSSL fails; out is written only on success. Any
 * thread. */
SB_MUST_CHECK sb_result_t sb_seal_hmac_sha1(uint8_t out[20], const void *key, size_t keylen,
                                            const sb_seal_part_t *parts, size_t nparts);
/* SHA-256 of len bytes (e.g. Twilio's bodySHA256 of a JSON webhook body). Any thread. */
void sb_seal_sha256(uint8_t out[32], const void *data, size_t len);

/* Decoders: write at most outmax bytes, *outlen the number written. SB_E_INVALID on bad input
 * (any character outside the alphabet, trailing garbage, odd hex length, missing padding, or
 * output larger than outmax); *outlen is then untouched and out's contents are unspecified.
 * Hex is case-insensitive. base64 is the original variant with padding. */
SB_MUST_CHECK sb_result_t sb_seal_hex_decode(uint8_t *out, size_t outmax, size_t *outlen,
                                             const char *hex, size_t hexlen);
SB_MUST_CHECK sb_result_t sb_seal_base64_decode(uint8_t *out, size_t outmax, size_t *outlen,
                                                const char *b64, size_t b64len);
/* Encoders write a NUL-terminated string; out must hold sb_seal_base64_len(n) bytes / 2n+1. */
size_t sb_seal_base64_len(size_t n);
void sb_seal_base64_encode(char *out, const void *in, size_t n);
void sb_seal_hex_encode(char *out, const void *in, size_t n);

/* Decodes a base64 config key of exactly SB_SEAL_KEY_BYTES; SB_E_CONFIG otherwise. */
SB_MUST_CHECK sb_result_t sb_seal_key_from_base64(uint8_t key[SB_SEAL_KEY_BYTES], const char *b64);

#endif
