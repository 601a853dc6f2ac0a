/* Unit tests for core/src/ids.c: pseudonymous ids are deterministic, depend on the key and on
 * every input, and the partition of a conversation is in range and stable (golden value). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "sb/ids.h"
#include "sb/seal.h"

static void fill_key(uint8_t key[SB_SEAL_KEY_BYTES], uint8_t base)
{
    for (int i = 0; i < SB_SEAL_KEY_BYTES; i++)
        key[i] = (uint8_t)(base + i);
}

static int setup(void **state)
{
    (void)state;
    return sb_seal_init() == SB_OK ? 0 : -1;
}

static void assert_hex_id(const char *id)
{
    assert_int_equal(strlen(id), SB_SEAL_HASH_HEX - 1);
    for (size_t i = 0; i < SB_SEAL_HASH_HEX - 1; i++)
        assert_non_null(strchr("0123456789abcdef", id[i]));
}

static void test_deterministic(void **state)
{
    (void)state;
    uint8_t key[SB_SEAL_KEY_BYTES];
    fill_key(key, 0);
    char a[SB_SEAL_HASH_HEX], b[SB_SEAL_HASH_HEX];
    sb_ids_conversation(a, key, "whatsapp", "109000000000042", "15550109876");
    sb_ids_conversation(b, key, "whatsapp", "109000000000042", "15550109876");
    assert_hex_id(a);
    assert_string_equal(a, b);
    sb_ids_contact(a, key, "whatsapp", "15550109876");
    sb_ids_contact(b, key, "whatsapp", "15550109876");
    assert_hex_id(a);
    assert_string_equal(a, b);
    sb_ids_message(a, key, "wa:wamid.X");
    sb_ids_message(b, key, "wa:wamid.X");
    assert_hex_id(a);
    assert_string_equal(a, b);
    /* the raw identifiers do not appear in the ids */
    assert_null(strstr(a, "15550109876"));
}

static void test_inputs_and_key_matter(void **state)
{
    (void)state;
    uint8_t key[SB_SEAL_KEY_BYTES], key2[SB_SEAL_KEY_BYTES];
    fill_key(key, 0);
    fill_key(key2, 1);
    char base[SB_SEAL_HASH_HEX], x[SB_SEAL_HASH_HEX];
    sb_ids_conversation(base, key, "whatsapp", "acct", "15550109876");
    sb_ids_conversation(x, key2, "whatsapp", "acct", "15550109876");
    assert_string_not_equal(base, x);
    sb_ids_conversation(x, key, "telegram", "acct", "15550109876");
    assert_string_not_equal(base, x);
    sb_ids_conversation(x, key, "whatsapp", "acct2", "15550109876");
    assert_string_not_equal(base, x);
    sb_ids_conversation(x, key, "whatsapp", "acct", "15550109877");
    assert_string_not_equal(base, x);
    /* part boundaries count: ("ab","c") is not ("a","bc") */
    char y[SB_SEAL_HASH_HEX];
    sb_ids_conversation(x, key, "whatsapp", "ab", "c");
    sb_ids_conversation(y, key, "whatsapp", "a", "bc");
    assert_string_not_equal(x, y);

    /* kinds are domain-separated: a contact id never equals a message or conversation id */
    char c[SB_SEAL_HASH_HEX], m[SB_SEAL_HASH_HEX];
    sb_ids_contact(c, key, "whatsapp", "15550109876");
    sb_ids_message(m, key, "whatsapp");
    assert_string_not_equal(c, base);
    assert_string_not_equal(c, m);
    sb_ids_contact(x, key2, "whatsapp", "15550109876");
    assert_string_not_equal(c, x);
    sb_ids_message(x, key2, "whatsapp");
    assert_string_not_equal(m, x);
}

static void test_partition(void **state)
{
    (void)state;
    uint8_t key[SB_SEAL_KEY_BYTES];
    fill_key(key, 0);
    char id[SB_SEAL_HASH_HEX];
    sb_ids_conversation(id, key, "whatsapp", "109000000000042", "15550109876");
    /* Golden values, computed once with this key (and cross-checked with Python's
     * hashlib.blake2b(key=..., digest_size=16) over the length-prefixed parts): if they change,
     * every deployed conversation moves to another partition. Change only on purpose. */
    assert_string_equal(id, "df909d4858c8693426cb93d170340243");
    assert_int_equal(sb_ids_partition(id, 8), 0);
    assert_int_equal(sb_ids_partition(id, 13), 8);
    assert_int_equal(sb_ids_partition(id, 1000), 616);

    /* The definition: first 8 hex chars as a big-endian uint32, modulo partitions. */
    assert_int_equal(sb_ids_partition("0000000a"
                                      "ffffffffffffffffffffffff",
                                      8),
                     2);
    assert_int_equal(sb_ids_partition("ffffffff"
                                      "00000000000000000000000000",
                                      7),
                     0xffffffffu % 7);
    assert_int_equal(sb_ids_partition("12345678", 1000), 0x12345678u % 1000);
    assert_int_equal(sb_ids_partition("ABCDEF01", 16), 0x1);

    /* In range for many ids and partition counts, and the same on every call. */
    for (uint32_t p = 1; p <= 64; p++) {
        for (int i = 0; i < 50; i++) {
            char sender[16];
            sender[0] = (char)('a' + i % 26);
            sender[1] = (char)('a' + i / 26);
            sender[2] = '\0';
            sb_ids_conversation(id, key, "webchat", "site", sender);
            uint32_t part = sb_ids_partition(id, p);
            assert_true(part < p);
            assert_int_equal(part, sb_ids_partition(id, p));
        }
    }
    /* Malformed ids from outside still get a stable in-range partition, no crash. */
    assert_true(sb_ids_partition("", 8) < 8);
    assert_true(sb_ids_partition("xyz", 8) < 8);
    assert_int_equal(sb_ids_partition("xyz", 8), sb_ids_partition("xyz", 8));
    assert_true(sb_ids_partition("1234", 8) < 8);
    assert_int_equal(sb_ids_partition(NULL, 8), 0);
    assert_int_equal(sb_ids_partition(id, 0), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_deterministic),
        cmocka_unit_test(test_inputs_and_key_matter),
        cmocka_unit_test(test_partition),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
