/* Unit tests for core/src/redact.c: each kind of PII becomes its typed placeholder with the
 * original recorded; things that only look like numbers (order references, dates, times,
 * amounts, years, short numbers) are left alone; checksums decide for cards and IBANs;
 * numbering is per type in order of appearance; bad input is refused cleanly. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sb/redact.h"

static int setup(void **state)
{
    (void)state;
    return sb_redact_init() == SB_OK ? 0 : -1;
}

/* Redacts "<prefix><pii><suffix>" and expects "<prefix><placeholder><suffix>" with the pii
 * recorded as the one original. */
static void expect_one(const char *pii, const char *placeholder)
{
    const char *prefix = "Hello, reach me at ", *suffix = " tomorrow.";
    char in[512], want[512];
    snprintf(in, sizeof in, "%s%s%s", prefix, pii, suffix);
    snprintf(want, sizeof want, "%s%s%s", prefix, placeholder, suffix);
    sb_redacted_t r;
    assert_int_equal(sb_redact(in, strlen(in), &r), SB_OK);
    if (strcmp(r.text, want) != 0) print_error("input:    %s\ngot:      %s\n", in, r.text);
    assert_string_equal(r.text, want);
    assert_int_equal(r.len, strlen(want));
    assert_int_equal(r.nitems, 1);
    assert_string_equal(r.items[0].placeholder, placeholder);
    assert_string_equal(r.items[0].original, pii);
    sb_redacted_free(&r);
}

/* Expects text to come back unchanged with nothing recorded. */
static void expect_intact(const char *text)
{
    sb_redacted_t r;
    assert_int_equal(sb_redact(text, strlen(text), &r), SB_OK);
    if (strcmp(r.text, text) != 0) print_error("input:    %s\ngot:      %s\n", text, r.text);
    assert_string_equal(r.text, text);
    assert_int_equal(r.nitems, 0);
    sb_redacted_free(&r);
}

static void test_email(void **state)
{
    (void)state;
    expect_one("ana@example.com", "[EMAIL_1]");
    expect_one("ana.fixture+orders@mail.example.co.uk", "[EMAIL_1]");
    expect_one("o'brien_99@sub-domain.example.org", "[EMAIL_1]");
    expect_one("josé.garcía@ejemplo.es", "[EMAIL_1]");
    /* trailing sentence punctuation is not part of the address */
    sb_redacted_t r;
    const char *t = "Mail ana@example.com. Thanks";
    assert_int_equal(sb_redact(t, strlen(t), &r), SB_OK);
    assert_string_equal(r.text, "Mail [EMAIL_1]. Thanks");
    assert_string_equal(r.items[0].original, "ana@example.com");
    sb_redacted_free(&r);
    expect_intact("ping @support or me@localhost, rate 5@home");
}

static void test_card(void **state)
{
    (void)state;
    expect_one("4111 1111 1111 1111", "[CARD_1]");
    expect_one("4111-1111-1111-1111", "[CARD_1]");
    expect_one("4111111111111111", "[CARD_1]");
    expect_one("5500 0000 0000 0004", "[CARD_1]");
    expect_one("3782 822463 10005", "[CARD_1]"); /* Amex, 15 digits */
    /* Luhn-invalid 16 digits: not a card, and too long for a phone */
    expect_intact("card 4111 1111 1111 1112 please");
    expect_intact("card 4111111111111112 please");
    /* glued to a word or a longer digit run: not a card */
    expect_intact("ref X4111111111111111 and 41111111111111111111");
}

static void test_iban(void **state)
{
    (void)state;
    expect_one("DE89 3704 0044 0532 0130 00", "[IBAN_1]");
    expect_one("DE89370400440532013000", "[IBAN_1]");
    expect_one("de89 3704 0044 0532 0130 00", "[IBAN_1]");
    expect_one("GB82 WEST 1234 5698 7654 32", "[IBAN_1]");
    expect_one("NL91ABNA0417164300", "[IBAN_1]");
    expect_one("FR14 2004 1010 0505 0001 3M02 606", "[IBAN_1]");
    /* bad check digits: not an IBAN (and its digits are not taken for a phone either) */
    expect_intact("IBAN DE88 3704 0044 0532 0130 00 thanks");
    expect_intact("IBAN DE89370400440532013001 thanks");
    /* a valid IBAN followed by another number keeps only the IBAN */
    sb_redacted_t r;
    const char *t = "to DE89 3704 0044 0532 0130 00 1234 ok";
    assert_int_equal(sb_redact(t, strlen(t), &r), SB_OK);
    assert_string_equal(r.text, "to [IBAN_1] 1234 ok");
    sb_redacted_free(&r);
}

static void test_phone(void **state)
{
    (void)state;
    expect_one("+1 555 010 9876", "[PHONE_1]");
    expect_one("(555) 010-9876", "[PHONE_1]");
    expect_one("+44 7700 900123", "[PHONE_1]");
    expect_one("07700 900123", "[PHONE_1]");
    expect_one("06-12345678", "[PHONE_1]");
    expect_one("+33 6 12 34 56 78", "[PHONE_1]");
    expect_one("0044 7700 900123", "[PHONE_1]");
    expect_one("+1 (555) 010-9876", "[PHONE_1]");
    expect_one("+447700900123", "[PHONE_1]");
    expect_one("06.12.34.56.78", "[PHONE_1]");
    expect_one("612 345 678", "[PHONE_1]");
    expect_one("0612345678", "[PHONE_1]");
    /* a sentence may end right after the number */
    sb_redacted_t r;
    const char *t = "Call 0612345678. 2026-03-02 works";
    assert_int_equal(sb_redact(t, strlen(t), &r), SB_OK);
    assert_string_equal(r.text, "Call [PHONE_1]. 2026-03-02 works");
    sb_redacted_free(&r);
    /* a date right before a national number does not hide it */
    t = "on 2026-03-02 0612345678 ok";
    assert_int_equal(sb_redact(t, strlen(t), &r), SB_OK);
    assert_string_equal(r.text, "on 2026-03-02 [PHONE_1] ok");
    assert_string_equal(r.items[0].original, "0612345678");
    sb_redacted_free(&r);
    /* a number right after an international one is not swallowed into it */
    t = "+33 6 12 34 56 78 12345 times";
    assert_int_equal(sb_redact(t, strlen(t), &r), SB_OK);
    assert_string_equal(r.text, "[PHONE_1] 12345 times");
    assert_string_equal(r.items[0].original, "+33 6 12 34 56 78");
    sb_redacted_free(&r);
    /* more than 15 digits is not a phone number */
    expect_intact("ref 0612 3456 7890 1234 5");
}

static void test_not_pii(void **state)
{
    (void)state;
    expect_intact("Hi, my order #A1234 hasn't arrived yet.");
    expect_intact("order 12345 and order #12345678");
    expect_intact("order 12345678 shipped");
    expect_intact("delivered on 2026-03-02 at 09:15");
    expect_intact("on 02.03.2026 or 2026/03/02, at 09:15:30");
    expect_intact("it cost € 1.234,56 and then 1,299.00 USD");
    expect_intact("a total of 12.345.678,90 and 1.234.567.890");
    expect_intact("from 2019 to 2026, or 2019 2020 2021");
    expect_intact("short numbers 1234567 and 555-0109 and 42");
    expect_intact("server 192.168.100.200 is down");
    expect_intact("version 1.2.3.4.5.6.7.8 and 1 2 3 4 5 6 7 8");
    expect_intact("2026-03-02T09:15:00Z");
    expect_intact("");
    expect_intact("plain text with ünïcödé and emoji 😀 but no pii");
}

static void test_numbering_and_order(void **state)
{
    (void)state;
    const char *t = "Mail ana@example.com or bo@example.org, call +44 7700 900123, card "
                    "4111 1111 1111 1111, again ana@example.com, IBAN NL91ABNA0417164300, "
                    "or 06-12345678 and card 5500 0000 0000 0004.";
    sb_redacted_t r;
    assert_int_equal(sb_redact(t, strlen(t), &r), SB_OK);
    assert_string_equal(r.text, "Mail [EMAIL_1] or [EMAIL_2], call [PHONE_1], card [CARD_1], "
                                "again [EMAIL_1], IBAN [IBAN_1], or [PHONE_2] and card "
                                "[CARD_2].");
    /* one item per distinct original, in order of first appearance */
    assert_int_equal(r.nitems, 7);
    const char *want[][2] = {
        {"[EMAIL_1]", "ana@example.com"},    {"[EMAIL_2]", "bo@example.org"},
        {"[PHONE_1]", "+44 7700 900123"},    {"[CARD_1]", "4111 1111 1111 1111"},
        {"[IBAN_1]", "NL91ABNA0417164300"},  {"[PHONE_2]", "06-12345678"},
        {"[CARD_2]", "5500 0000 0000 0004"},
    };
    for (size_t i = 0; i < 7; i++) {
        assert_string_equal(r.items[i].placeholder, want[i][0]);
        assert_string_equal(r.items[i].original, want[i][1]);
    }
    sb_redacted_free(&r);
    assert_null(r.text);
    assert_int_equal(r.nitems, 0);
}

static void test_fixture_message(void **state)
{
    (void)state;
    /* text as it arrives from a channel: a phone and an e-mail around an order reference */
    const char *t = "Order #A1234: phone +31 6 12345678, mail ana@example.com";
    sb_redacted_t r;
    assert_int_equal(sb_redact(t, strlen(t), &r), SB_OK);
    assert_string_equal(r.text, "Order #A1234: phone [PHONE_1], mail [EMAIL_1]");
    sb_redacted_free(&r);
}

static void test_bad_input(void **state)
{
    (void)state;
    sb_redacted_t r = {0};
    /* invalid UTF-8: a lone continuation byte, a truncated sequence, an overlong form, a
     * surrogate */
    const char *bad[] = {"abc \x80 def", "abc \xE2\x82", "\xC0\xAF", "\xED\xA0\x80",
                         "\xF5\x80\x80\x80"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(sb_redact(bad[i], strlen(bad[i]), &r), SB_E_INVALID);
    assert_null(r.text);

    /* 64 KiB is accepted, one byte more is not */
    size_t max = 64 * 1024;
    char *big = malloc(max + 1);
    assert_non_null(big);
    memset(big, 'a', max + 1);
    assert_int_equal(sb_redact(big, max + 1, &r), SB_E_TOO_LARGE);
    assert_int_equal(sb_redact(big, max, &r), SB_OK);
    assert_int_equal(r.len, max);
    sb_redacted_free(&r);
    free(big);

    assert_int_equal(sb_redact(NULL, 5, &r), SB_E_INVALID);
    assert_int_equal(sb_redact(NULL, 0, &r), SB_OK);
    assert_string_equal(r.text, "");
    sb_redacted_free(&r);

    /* the length is honoured: bytes after len are not read */
    const char *t = "call 0612345678";
    assert_int_equal(sb_redact(t, 4, &r), SB_OK);
    assert_string_equal(r.text, "call");
    sb_redacted_free(&r);
}

/* Hostile shapes stay fast and correct (patterns are bounded per start position). */
static void test_hostile_shapes(void **state)
{
    (void)state;
    size_t n = 60 * 1024;
    char *s = malloc(n + 1);
    assert_non_null(s);
    const char *shapes[] = {"a.", "1 ", "1-", "a@", "0", "(1)", "+1 ", "a", "DE89 "};
    for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++) {
        size_t len = strlen(shapes[k]);
        for (size_t i = 0; i < n; i++)
            s[i] = shapes[k][i % len];
        s[n] = '\0';
        sb_redacted_t r;
        assert_int_equal(sb_redact(s, n, &r), SB_OK);
        sb_redacted_free(&r);
    }
    free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_email),
        cmocka_unit_test(test_card),
        cmocka_unit_test(test_iban),
        cmocka_unit_test(test_phone),
        cmocka_unit_test(test_not_pii),
        cmocka_unit_test(test_numbering_and_order),
        cmocka_unit_test(test_fixture_message),
        cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_hostile_shapes),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
