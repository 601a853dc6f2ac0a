/* Unit tests for core/src/seal.c: sealed boxes, the AEAD format and its tamper cases, key
 * wrapping bound to a subject, the keyed hash, HMAC-SHA256 and HMAC-SHA1 (Twilio) against
 * published vectors, SHA-256, and the hex/base64 decoders. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sb/seal.h"
#include "sb/util.h"

static int setup(void **state)
{
    (void)state;
    return sb_seal_init() == SB_OK ? 0 : -1;
}

static void fill_key(uint8_t key[SB_SEAL_KEY_BYTES], uint8_t base)
{
    for (int i = 0; i < SB_SEAL_KEY_BYTES; i++)
        key[i] = (uint8_t)(base + i);
}

static void test_box_round_trip_and_tamper(void **state)
{
    (void)state;
    uint8_t pk[SB_SEAL_KEY_BYTES], sk[SB_SEAL_KEY_BYTES];
    uint8_t pk2[SB_SEAL_KEY_BYTES], sk2[SB_SEAL_KEY_BYTES];
    sb_seal_box_keypair(pk, sk);
    sb_seal_box_keypair(pk2, sk2);
    const char msg[] = "contact: +44 7700 900123";
    size_t mlen = sizeof msg - 1;
    uint8_t c[sizeof msg - 1 + SB_SEAL_BOX_OVERHEAD];
    assert_int_equal(sb_seal_box(c, msg, mlen, pk), SB_OK);
    uint8_t m[sizeof msg];
    memset(m, 0, sizeof m);
    assert_int_equal(sb_seal_box_open(m, c, sizeof c, pk, sk), SB_OK);
    assert_memory_equal(m, msg, mlen);

    /* Another key pair does not open it. */
    assert_int_equal(sb_seal_box_open(m, c, sizeof c, pk2, sk2), SB_E_CRYPTO);
    /* Every flipped byte makes it fail. */
    for (size_t i = 0; i < sizeof c; i++) {
        c[i] ^= 0x01;
        assert_int_equal(sb_seal_box_open(m, c, sizeof c, pk, sk), SB_E_CRYPTO);
        c[i] ^= 0x01;
    }
    /* Truncated. */
    assert_int_equal(sb_seal_box_open(m, c, sizeof c - 1, pk, sk), SB_E_CRYPTO);
    assert_int_equal(sb_seal_box_open(m, c, SB_SEAL_BOX_OVERHEAD - 1, pk, sk), SB_E_CRYPTO);
    /* Empty message round trip. */
    uint8_t c0[SB_SEAL_BOX_OVERHEAD];
    assert_int_equal(sb_seal_box(c0, "", 0, pk), SB_OK);
    assert_int_equal(sb_seal_box_open(m, c0, sizeof c0, pk, sk), SB_OK);
}

static void test_aead_round_trip(void **state)
{
    (void)state;
    uint8_t key[SB_SEAL_KEY_BYTES];
    sb_seal_keygen(key);
    const char msg[] = "Ana Fixture";
    const char ad[] = "contacts|name|c0ffee";
    size_t mlen = sizeof msg - 1;
    uint8_t c[sizeof msg - 1 + SB_SEAL_AEAD_OVERHEAD];
    assert_int_equal(sb_seal_encrypt(c, msg, mlen, ad, strlen(ad), key, 0x01020304u), SB_OK);
    /* Stored format: version 1, key id big-endian. */
    assert_int_equal(c[0], 1);
    assert_int_equal(c[1], 0x01);
    assert_int_equal(c[4], 0x04);
    uint32_t kid = 0;
    assert_int_equal(sb_seal_key_id(c, sizeof c, &kid), SB_OK);
    assert_int_equal(kid, 0x01020304u);

    uint8_t m[sizeof msg];
    memset(m, 0, sizeof m);
    assert_int_equal(sb_seal_decrypt(m, c, sizeof c, ad, strlen(ad), key), SB_OK);
    assert_memory_equal(m, msg, mlen);

    /* Two encryptions of the same text differ (random nonce). */
    uint8_t c2[sizeof c];
    assert_int_equal(sb_seal_encrypt(c2, msg, mlen, ad, strlen(ad), key, 0x01020304u), SB_OK);
    assert_memory_not_equal(c, c2, sizeof c);

    /* Empty plaintext, empty ad, and an ad larger than the stack buffer. */
    uint8_t ce[SB_SEAL_AEAD_OVERHEAD];
    assert_int_equal(sb_seal_encrypt(ce, "", 0, NULL, 0, key, 7), SB_OK);
    assert_int_equal(sb_seal_decrypt(m, ce, sizeof ce, NULL, 0, key), SB_OK);
    char big_ad[1000];
    memset(big_ad, 'a', sizeof big_ad);
    assert_int_equal(sb_seal_encrypt(c, msg, mlen, big_ad, sizeof big_ad, key, 9), SB_OK);
    assert_int_equal(sb_seal_decrypt(m, c, sizeof c, big_ad, sizeof big_ad, key), SB_OK);
    big_ad[999] = 'b';
    assert_int_equal(sb_seal_decrypt(m, c, sizeof c, big_ad, sizeof big_ad, key), SB_E_CRYPTO);
}

static void test_aead_tamper(void **state)
{
    (void)state;
    uint8_t key[SB_SEAL_KEY_BYTES], other[SB_SEAL_KEY_BYTES];
    sb_seal_keygen(key);
    sb_seal_keygen(other);
    const char msg[] = "+44 7700 900123";
    const char ad[] = "contacts|phone|42";
    size_t mlen = sizeof msg - 1;
    uint8_t c[sizeof msg - 1 + SB_SEAL_AEAD_OVERHEAD];
    assert_int_equal(sb_seal_encrypt(c, msg, mlen, ad, strlen(ad), key, 5), SB_OK);

    uint8_t m[sizeof msg];
    memset(m, 0xAA, sizeof m);
    /* wrong additional data (another field / record) */
    assert_int_equal(sb_seal_decrypt(m, c, sizeof c, "contacts|name|42", 16, key), SB_E_CRYPTO);
    assert_int_equal(sb_seal_decrypt(m, c, sizeof c, NULL, 0, key), SB_E_CRYPTO);
    /* wrong key */
    assert_int_equal(sb_seal_decrypt(m, c, sizeof c, ad, strlen(ad), other), SB_E_CRYPTO);
    /* every flipped byte, header included */
    for (size_t i = 0; i < sizeof c; i++) {
        c[i] ^= 0x80;
        assert_int_equal(sb_seal_decrypt(m, c, sizeof c, ad, strlen(ad), key), SB_E_CRYPTO);
        c[i] ^= 0x80;
    }
    /* a changed key id alone (the header is authenticated) */
    c[4] = 6;
    assert_int_equal(sb_seal_decrypt(m, c, sizeof c, ad, strlen(ad), key), SB_E_CRYPTO);
    c[4] = 5;
    /* truncated */
    assert_int_equal(sb_seal_decrypt(m, c, sizeof c - 1, ad, strlen(ad), key), SB_E_CRYPTO);
    assert_int_equal(sb_seal_decrypt(m, c, SB_SEAL_AEAD_OVERHEAD - 1, ad, strlen(ad), key),
                     SB_E_CRYPTO);
    /* nothing was written to out by any failure */
    for (size_t i = 0; i < sizeof m; i++)
        assert_int_equal(m[i], 0xAA);
    /* and the untouched ciphertext still opens */
    assert_int_equal(sb_seal_decrypt(m, c, sizeof c, ad, strlen(ad), key), SB_OK);
    assert_memory_equal(m, msg, mlen);

    uint32_t kid;
    assert_int_equal(sb_seal_key_id(c, SB_SEAL_AEAD_OVERHEAD - 1, &kid), SB_E_INVALID);
    c[0] = 2;
    assert_int_equal(sb_seal_key_id(c, sizeof c, &kid), SB_E_INVALID);
}

static void test_wrap_unwrap(void **state)
{
    (void)state;
    uint8_t kek[SB_SEAL_KEY_BYTES], kek2[SB_SEAL_KEY_BYTES], dek[SB_SEAL_KEY_BYTES];
    fill_key(kek, 1);
    fill_key(kek2, 2);
    sb_seal_keygen(dek);
    uint8_t w[SB_SEAL_WRAPPED_KEY_BYTES];
    assert_int_equal(sb_seal_wrap_key(w, dek, "contact-abc", kek, 3), SB_OK);
    uint32_t kid = 0;
    assert_int_equal(sb_seal_key_id(w, sizeof w, &kid), SB_OK);
    assert_int_equal(kid, 3);

    uint8_t out[SB_SEAL_KEY_BYTES];
    assert_int_equal(sb_seal_unwrap_key(out, w, "contact-abc", kek), SB_OK);
    assert_memory_equal(out, dek, sizeof dek);
    /* bound to its subject */
    assert_int_equal(sb_seal_unwrap_key(out, w, "contact-abd", kek), SB_E_CRYPTO);
    assert_int_equal(sb_seal_unwrap_key(out, w, "", kek), SB_E_CRYPTO);
    /* and to its master key and key id */
    assert_int_equal(sb_seal_unwrap_key(out, w, "contact-abc", kek2), SB_E_CRYPTO);
    w[4] = 4;
    assert_int_equal(sb_seal_unwrap_key(out, w, "contact-abc", kek), SB_E_CRYPTO);
    w[4] = 3;
    /* rewrapping under a new master key (rotation) gives the same data key */
    uint8_t w2[SB_SEAL_WRAPPED_KEY_BYTES];
    assert_int_equal(sb_seal_wrap_key(w2, out, "contact-abc", kek2, 4), SB_OK);
    uint8_t out2[SB_SEAL_KEY_BYTES];
    assert_int_equal(sb_seal_unwrap_key(out2, w2, "contact-abc", kek2), SB_OK);
    assert_memory_equal(out2, dek, sizeof dek);
}

static void test_keyed_hash(void **state)
{
    (void)state;
    uint8_t key[SB_SEAL_KEY_BYTES], key2[SB_SEAL_KEY_BYTES];
    fill_key(key, 10);
    fill_key(key2, 11);
    const char *ab_c[] = {"ab", "c"};
    const char *a_bc[] = {"a", "bc"};
    const char *abc[] = {"abc"};
    const char *abc_empty[] = {"abc", ""};
    uint8_t h1[32], h2[32], h3[32], h4[32], h5[32];
    sb_seal_keyed_hash(h1, 32, key, ab_c, 2);
    sb_seal_keyed_hash(h2, 32, key, a_bc, 2);
    sb_seal_keyed_hash(h3, 32, key, abc, 1);
    sb_seal_keyed_hash(h4, 32, key, abc_empty, 2);
    sb_seal_keyed_hash(h5, 32, key2, ab_c, 2);
    assert_memory_not_equal(h1, h2, 32);
    assert_memory_not_equal(h1, h3, 32);
    assert_memory_not_equal(h3, h4, 32);
    assert_memory_not_equal(h1, h5, 32);
    uint8_t again[32];
    sb_seal_keyed_hash(again, 32, key, ab_c, 2);
    assert_memory_equal(h1, again, 32);

    char hex[SB_SEAL_HASH_HEX], hex2[SB_SEAL_HASH_HEX];
    sb_seal_keyed_hash_hex(hex, key, ab_c, 2);
    assert_int_equal(strlen(hex), 32);
    for (int i = 0; i < 32; i++)
        assert_non_null(strchr("0123456789abcdef", hex[i]));
    sb_seal_keyed_hash_hex(hex2, key, a_bc, 2);
    assert_string_not_equal(hex, hex2);
    /* the 16-byte hex hash is the 16-byte keyed hash */
    uint8_t h16[16];
    char hex16[33];
    sb_seal_keyed_hash(h16, 16, key, ab_c, 2);
    sb_seal_hex_encode(hex16, h16, 16);
    assert_string_equal(hex, hex16);
}

static void hex_of(char *out, const uint8_t *in, size_t n)
{
    sb_seal_hex_encode(out, in, n);
}

static void test_hmac_rfc4231_case2(void **state)
{
    (void)state;
    uint8_t mac[32];
    char hex[65];
    sb_seal_part_t parts[] = {{"what do ya want ", 16}, {"for nothing?", 12}};
    sb_seal_hmac_sha256(mac, "Jefe", 4, parts, 2);
    hex_of(hex, mac, 32);
    assert_string_equal(hex, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    /* the split into parts does not matter */
    sb_seal_part_t one[] = {{"what do ya want for nothing?", 28}};
    uint8_t mac2[32];
    sb_seal_hmac_sha256(mac2, "Jefe", 4, one, 1);
    assert_true(sb_seal_equal(mac, mac2, 32));
    mac2[31] ^= 1;
    assert_false(sb_seal_equal(mac, mac2, 32));
}

static void test_hmac_standard_webhooks(void **state)
{
    (void)state;
    const char *secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const char *b64 = secret + strlen("whsec_");
    uint8_t key[64];
    size_t klen = 0;
    assert_int_equal(sb_seal_base64_decode(key, sizeof key, &klen, b64, strlen(b64)), SB_OK);
    assert_int_equal(klen, 24);
    const char *id = "msg_p5jXN8AQM9LWM0D4loKWxJek", *ts = "1614265330";
    const char *body = "{\"test\": 2432232314}";
    sb_seal_part_t parts[] = {
        {id, strlen(id)}, {".", 1}, {ts, strlen(ts)}, {".", 1}, {body, strlen(body)}};
    uint8_t mac[32];
    sb_seal_hmac_sha256(mac, key, klen, parts, 5);
    char out[64];
    assert_true(sb_seal_base64_len(32) <= sizeof out);
    sb_seal_base64_encode(out, mac, 32);
    assert_string_equal(out, "g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
}

/* HMAC-SHA1 (OpenSSL) against RFC 2202 test case 2 and Twilio's published request-validator
 * vectors: URL + the POST parameters sorted by name, each as name immediately followed by its
 * decoded value; for JSON bodies the URL carries bodySHA256 and the body is checked by hash. */
static void b64_hmac_sha1(char out[32], const char *key, const sb_seal_part_t *parts, size_t n)
{
    uint8_t mac[20];
    assert_int_equal(sb_seal_hmac_sha1(mac, key, strlen(key), parts, n), SB_OK);
    assert_true(sb_seal_base64_len(20) <= 32);
    sb_seal_base64_encode(out, mac, 20);
}

static void test_hmac_sha1_rfc2202_case2(void **state)
{
    (void)state;
    uint8_t mac[20];
    char hex[41];
    sb_seal_part_t parts[] = {{"what do ya want ", 16}, {"for nothing?", 12}};
    assert_int_equal(sb_seal_hmac_sha1(mac, "Jefe", 4, parts, 2), SB_OK);
    hex_of(hex, mac, 20);
    assert_string_equal(hex, "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79");
    /* an empty key is a key too (RFC 2104 pads it with zeros) */
    assert_int_equal(sb_seal_hmac_sha1(mac, "", 0, parts, 2), SB_OK);
    hex_of(hex, mac, 20);
    assert_string_equal(hex, "22e999c60f94d0f2d635ca4cf1b174e5cb514d38");
}

static void test_hmac_sha1_twilio_vectors(void **state)
{
    (void)state;
    const char *url = "https://mycompany.com/myapp.php?foo=1&bar=2";
    char sig[32];
    /* already sorted by name: CallSid, Caller, Digits, From, To */
    sb_seal_part_t form[] = {{url, strlen(url)},         {"CallSidCA1234567890ABCDE", 24},
                             {"Caller+14158675309", 18}, {"Digits1234", 10},
                             {"From+14158675309", 16},   {"To+18005551212", 14}};
    b64_hmac_sha1(sig, "12345", form, 6);
    assert_string_equal(sig, "RSOYDt4T1cUTdK1PDd93/VVr8B8=");
    /* the older documentation variant */
    sb_seal_part_t old[] = {{url, strlen(url)},         {"CallSidCA1234567890ABCDE", 24},
                            {"Caller+12349013030", 18}, {"Digits1234", 10},
                            {"From+12349013030", 16},   {"To+18005551212", 14}};
    b64_hmac_sha1(sig, "12345", old, 6);
    assert_string_equal(sig, "0/KCTR6DLpKmkAf8muzZqo1nDgQ=");
    /* a wrong token gives another signature */
    b64_hmac_sha1(sig, "12346", form, 6);
    assert_string_not_equal(sig, "RSOYDt4T1cUTdK1PDd93/VVr8B8=");

    /* JSON body: hex SHA-256 of the raw body in the URL, the signature over the URL alone */
    const char *body = "{\"property\": \"value\", \"boolean\": true}";
    uint8_t h[32];
    char hex[65];
    sb_seal_sha256(h, body, strlen(body));
    hex_of(hex, h, 32);
    assert_string_equal(hex, "0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620");
    char *jurl = sb_xasprintf("%s&bodySHA256=%s", url, hex);
    sb_seal_part_t j[] = {{jurl, strlen(jurl)}};
    b64_hmac_sha1(sig, "12345", j, 1);
    assert_string_equal(sig, "a9nBmqA0ju/hNViExpshrM61xv4=");
    free(jurl);
}

static void test_hmac_meta_fixture(void **state)
{
    (void)state;
    const char *shared = getenv("SB_SHARED_DIR");
    char path[1024];
    snprintf(path, sizeof path, "%s/channels/whatsapp/text_message.json",
             shared != NULL ? shared : "");
    FILE *f = shared != NULL ? fopen(path, "rb") : NULL;
    if (f == NULL) {
        print_message("SKIP hmac_meta_fixture: shared fixture %s not found "
                      "(SB_SHARED_DIR unset or absent)\n",
                      path);
        skip();
    }
    fclose(f);
    char *body = NULL;
    size_t len = 0;
    assert_int_equal(sb_read_file(path, 1 << 20, &body, &len), SB_OK);
    const char *secret = "a1b2c3d4e5f60718293a4b5c6d7e8f90";
    sb_seal_part_t parts[] = {{body, len}};
    uint8_t mac[32];
    sb_seal_hmac_sha256(mac, secret, strlen(secret), parts, 1);
    char hex[65];
    hex_of(hex, mac, 32);
    assert_string_equal(hex, "72b3c4775b2556816ed49eb45c9f1c3cdf8266ae7a5d1afc2c0d8aa4a6e7ddc9");
    /* what the router does: decode the header's hex and compare in constant time */
    uint8_t want[32];
    size_t n = 0;
    assert_int_equal(sb_seal_hex_decode(want, sizeof want, &n,
                                        "72B3C4775B2556816ED49EB45C9F1C3CDF8266AE7A5D1AFC2C0D8A"
                                        "A4A6E7DDC9",
                                        64),
                     SB_OK);
    assert_int_equal(n, 32);
    assert_true(sb_seal_equal(want, mac, 32));
    free(body);
}

static void test_hex_decode(void **state)
{
    (void)state;
    uint8_t out[8];
    size_t n = 99;
    assert_int_equal(sb_seal_hex_decode(out, sizeof out, &n, "00ff7Aa5", 8), SB_OK);
    assert_int_equal(n, 4);
    const uint8_t want[] = {0x00, 0xff, 0x7a, 0xa5};
    assert_memory_equal(out, want, 4);
    assert_int_equal(sb_seal_hex_decode(out, sizeof out, &n, "00FF7AA5", 8), SB_OK);
    assert_memory_equal(out, want, 4);
    assert_int_equal(sb_seal_hex_decode(out, sizeof out, &n, "", 0), SB_OK);
    assert_int_equal(n, 0);

    n = 99;
    assert_int_equal(sb_seal_hex_decode(out, sizeof out, &n, "00f", 3), SB_E_INVALID);
    assert_int_equal(sb_seal_hex_decode(out, sizeof out, &n, "00fg", 4), SB_E_INVALID);
    assert_int_equal(sb_seal_hex_decode(out, sizeof out, &n, "00ff ", 5), SB_E_INVALID);
    assert_int_equal(sb_seal_hex_decode(out, sizeof out, &n, "00 ff", 5), SB_E_INVALID);
    assert_int_equal(sb_seal_hex_decode(out, sizeof out, &n, "00:ff", 5), SB_E_INVALID);
    /* output larger than outmax */
    assert_int_equal(sb_seal_hex_decode(out, 2, &n, "00ff7a", 6), SB_E_INVALID);
    /* hexlen is honoured: a longer string is only read up to hexlen */
    assert_int_equal(sb_seal_hex_decode(out, sizeof out, &n, "00ffzz", 4), SB_OK);
    assert_int_equal(n, 2);
}

static void test_base64(void **state)
{
    (void)state;
    uint8_t out[16];
    size_t n = 99;
    assert_int_equal(sb_seal_base64_decode(out, sizeof out, &n, "aGVsbG8=", 8), SB_OK);
    assert_int_equal(n, 5);
    assert_memory_equal(out, "hello", 5);
    assert_int_equal(sb_seal_base64_decode(out, sizeof out, &n, "", 0), SB_OK);
    assert_int_equal(n, 0);

    n = 99;
    assert_int_equal(sb_seal_base64_decode(out, sizeof out, &n, "aGVsbG8", 7), SB_E_INVALID);
    assert_int_equal(sb_seal_base64_decode(out, sizeof out, &n, "aGVs bG8=", 9), SB_E_INVALID);
    assert_int_equal(sb_seal_base64_decode(out, sizeof out, &n, "aGVsbG8=\n", 9), SB_E_INVALID);
    assert_int_equal(sb_seal_base64_decode(out, sizeof out, &n, "aGVsbG8=AAAA", 12), SB_E_INVALID);
    assert_int_equal(sb_seal_base64_decode(out, sizeof out, &n, "aGVs!G8=", 8), SB_E_INVALID);
    /* url-safe alphabet is another variant */
    assert_int_equal(sb_seal_base64_decode(out, sizeof out, &n, "_-8=", 4), SB_E_INVALID);
    /* non-canonical trailing bits */
    assert_int_equal(sb_seal_base64_decode(out, sizeof out, &n, "aGVsbG9=", 8), SB_E_INVALID);
    assert_int_equal(sb_seal_base64_decode(out, 4, &n, "aGVsbG8=", 8), SB_E_INVALID);
    assert_int_equal(n, 99);

    /* encode / decode round trip over every length 0..40 */
    uint8_t in[40], back[40];
    for (size_t i = 0; i < sizeof in; i++)
        in[i] = (uint8_t)(i * 37 + 1);
    for (size_t len = 0; len <= sizeof in; len++) {
        char enc[64];
        assert_true(sb_seal_base64_len(len) <= sizeof enc);
        sb_seal_base64_encode(enc, in, len);
        assert_int_equal(strlen(enc) + 1, sb_seal_base64_len(len));
        size_t bn = 0;
        assert_int_equal(sb_seal_base64_decode(back, sizeof back, &bn, enc, strlen(enc)), SB_OK);
        assert_int_equal(bn, len);
        assert_memory_equal(back, in, len);
    }
}

static void test_key_from_base64(void **state)
{
    (void)state;
    uint8_t raw[SB_SEAL_KEY_BYTES], key[SB_SEAL_KEY_BYTES];
    fill_key(raw, 100);
    char b64[64];
    sb_seal_base64_encode(b64, raw, sizeof raw);
    assert_int_equal(sb_seal_key_from_base64(key, b64), SB_OK);
    assert_memory_equal(key, raw, sizeof raw);

    sb_seal_base64_encode(b64, raw, 31);
    assert_int_equal(sb_seal_key_from_base64(key, b64), SB_E_CONFIG);
    uint8_t longer[33] = {0};
    sb_seal_base64_encode(b64, longer, sizeof longer);
    assert_int_equal(sb_seal_key_from_base64(key, b64), SB_E_CONFIG);
    assert_int_equal(sb_seal_key_from_base64(key, "not base64!"), SB_E_CONFIG);
    assert_int_equal(sb_seal_key_from_base64(key, NULL), SB_E_CONFIG);
    assert_int_equal(sb_seal_key_from_base64(key, ""), SB_E_CONFIG);
}

static void test_random_and_wipe(void **state)
{
    (void)state;
    uint8_t a[32] = {0}, b[32] = {0}, zero[32] = {0};
    sb_seal_random(a, sizeof a);
    sb_seal_random(b, sizeof b);
    assert_memory_not_equal(a, b, sizeof a);
    sb_seal_wipe(a, sizeof a);
    assert_memory_equal(a, zero, sizeof a);
}

/* The epoch-keyed box: many messages share one ephemeral key (cheap), each opens on its own,
 * boxes to other recipients do not open, and every byte of the frame is authenticated. */
static void test_box_epoch(void **state)
{
    (void)state;
    uint8_t pk[SB_SEAL_KEY_BYTES], sk[SB_SEAL_KEY_BYTES];
    uint8_t pk2[SB_SEAL_KEY_BYTES], sk2[SB_SEAL_KEY_BYTES];
    sb_seal_box_keypair(pk, sk);
    sb_seal_box_keypair(pk2, sk2);
    uint8_t a[SB_SEAL_BOX_OVERHEAD + 5], b[SB_SEAL_BOX_OVERHEAD + 5], m[5];
    assert_int_equal(sb_seal_box(a, "hello", 5, pk), SB_OK);
    assert_int_equal(sb_seal_box(b, "hello", 5, pk), SB_OK);
    assert_memory_equal(a, "SBX1", 4);
    assert_memory_equal(a + 4, b + 4, 32);           /* same epoch, same ephemeral key */
    assert_memory_not_equal(a + 36, b + 36, 24);     /* fresh nonce per message */
    assert_memory_not_equal(a + 60, b + 60, 5 + 16); /* so different ciphertexts */
    assert_int_equal(sb_seal_box_open(m, a, sizeof a, pk, sk), SB_OK);
    assert_memory_equal(m, "hello", 5);
    assert_int_equal(sb_seal_box_open(m, b, sizeof b, pk, sk), SB_OK);
    assert_int_equal(sb_seal_box_open(m, a, sizeof a, pk2, sk2), SB_E_CRYPTO);
    /* A box to another recipient uses another ephemeral key and opens only there. */
    uint8_t c[SB_SEAL_BOX_OVERHEAD + 5];
    assert_int_equal(sb_seal_box(c, "other", 5, pk2), SB_OK);
    assert_memory_not_equal(a + 4, c + 4, 32);
    assert_int_equal(sb_seal_box_open(m, c, sizeof c, pk2, sk2), SB_OK);
    assert_memory_equal(m, "other", 5);
    assert_int_equal(sb_seal_box_open(m, c, sizeof c, pk, sk), SB_E_CRYPTO);
    /* Every byte is covered: magic, ephemeral key, nonce, tag, ciphertext. */
    for (size_t i = 0; i < sizeof a; i++) {
        uint8_t t[sizeof a];
        memcpy(t, a, sizeof a);
        t[i] ^= 0x01;
        assert_int_equal(sb_seal_box_open(m, t, sizeof t, pk, sk), SB_E_CRYPTO);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_box_epoch),
        cmocka_unit_test(test_box_round_trip_and_tamper),
        cmocka_unit_test(test_aead_round_trip),
        cmocka_unit_test(test_aead_tamper),
        cmocka_unit_test(test_wrap_unwrap),
        cmocka_unit_test(test_keyed_hash),
        cmocka_unit_test(test_hmac_rfc4231_case2),
        cmocka_unit_test(test_hmac_standard_webhooks),
        cmocka_unit_test(test_hmac_meta_fixture),
        cmocka_unit_test(test_hmac_sha1_rfc2202_case2),
        cmocka_unit_test(test_hmac_sha1_twilio_vectors),
        cmocka_unit_test(test_hex_decode),
        cmocka_unit_test(test_base64),
        cmocka_unit_test(test_key_from_base64),
        cmocka_unit_test(test_random_and_wipe),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
