/* Unit tests of the browser session tokens and rate limiter (router/webchat_session.c): a token
 * round-trips its claims, any changed byte or foreign key is refused, expiry and the resume
 * window are honoured, rotation accepts the previous secret, claims are validated before
 * issuing; the limiter gives a burst, refills at its rate, keeps keys apart and stays bounded. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "sb/seal.h"
#include "webchat_session.h"

#define SECRET_A "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
#define SECRET_B "whsec_6BUlQsJ2Od4iQrHkrh7AnHIs6gT53egw3lTxrxxSLs8="

static sb_webchat_tokens_t *tokens(const char *secrets)
{
    sb_webchat_tokens_t *t = NULL;
    char err[256];
    assert_int_equal(sb_webchat_tokens_create(&t, secrets, err, sizeof err), SB_OK);
    return t;
}

static void claims(sb_webchat_claims_t *c)
{
    memset(c, 0, sizeof *c);
    sb_webchat_claims_new_ids(c);
    snprintf(c->origin, sizeof c->origin, "https://shop.example.com");
    snprintf(c->locale, sizeof c->locale, "nl-BE");
    c->issued_s = 1772442900;
    c->expires_s = c->issued_s + 900;
    c->consent = true;
}

static void test_roundtrip(void **state)
{
    (void)state;
    sb_webchat_tokens_t *t = tokens(SECRET_A);
    sb_webchat_claims_t c, out;
    claims(&c);
    assert_int_equal(strncmp(c.session_id, "wcb_", 4), 0);
    assert_int_equal(strlen(c.session_id), SB_WEBCHAT_ID_LEN);
    assert_int_equal(strncmp(c.visitor_id, "wcv_", 4), 0);
    char tok[SB_WEBCHAT_MAX_TOKEN];
    assert_int_equal(sb_webchat_token_issue(t, &c, tok, sizeof tok), SB_OK);
    /* URL-safe without escaping. */
    for (const char *p = tok; *p; p++)
        assert_non_null(strchr("0123456789abcdefv.", *p));
    assert_int_equal(sb_webchat_token_verify(t, tok, c.issued_s + 10, 0, &out), SB_OK);
    assert_string_equal(out.session_id, c.session_id);
    assert_string_equal(out.visitor_id, c.visitor_id);
    assert_string_equal(out.origin, c.origin);
    assert_string_equal(out.locale, "nl-BE");
    assert_int_equal(out.expires_s, c.expires_s);
    assert_true(out.consent);
    /* Two sessions never share ids. */
    sb_webchat_claims_t d;
    claims(&d);
    assert_string_not_equal(d.session_id, c.session_id);
    assert_string_not_equal(d.visitor_id, c.visitor_id);
    sb_webchat_tokens_destroy(t);
}

static void test_tampering_and_foreign_keys(void **state)
{
    (void)state;
    sb_webchat_tokens_t *t = tokens(SECRET_A), *other = tokens(SECRET_B);
    sb_webchat_claims_t c, out;
    claims(&c);
    char tok[SB_WEBCHAT_MAX_TOKEN];
    assert_int_equal(sb_webchat_token_issue(t, &c, tok, sizeof tok), SB_OK);
    int64_t now = c.issued_s + 1;
    /* Every single changed character is refused. */
    size_t n = strlen(tok);
    for (size_t i = 0; i < n; i++) {
        char saved = tok[i];
        tok[i] = saved == 'a' ? 'b' : 'a';
        assert_int_equal(sb_webchat_token_verify(t, tok, now, 0, &out), SB_E_AUTH);
        tok[i] = saved;
    }
    assert_int_equal(sb_webchat_token_verify(other, tok, now, 0, &out), SB_E_AUTH);
    /* Truncated, empty, garbage, oversized. */
    tok[n - 1] = '\0';
    assert_int_equal(sb_webchat_token_verify(t, tok, now, 0, &out), SB_E_AUTH);
    assert_int_equal(sb_webchat_token_verify(t, "", now, 0, &out), SB_E_AUTH);
    assert_int_equal(sb_webchat_token_verify(t, "v1..", now, 0, &out), SB_E_AUTH);
    char big[SB_WEBCHAT_MAX_TOKEN + 10];
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    assert_int_equal(sb_webchat_token_verify(t, big, now, 0, &out), SB_E_AUTH);
    sb_webchat_tokens_destroy(t);
    sb_webchat_tokens_destroy(other);
}

static void test_expiry_resume_and_rotation(void **state)
{
    (void)state;
    sb_webchat_tokens_t *t = tokens(SECRET_A);
    sb_webchat_claims_t c, out;
    claims(&c);
    char tok[SB_WEBCHAT_MAX_TOKEN];
    assert_int_equal(sb_webchat_token_issue(t, &c, tok, sizeof tok), SB_OK);
    assert_int_equal(sb_webchat_token_verify(t, tok, c.expires_s, 0, &out), SB_OK);
    assert_int_equal(sb_webchat_token_verify(t, tok, c.expires_s + 1, 0, &out), SB_E_TIMEOUT);
    assert_int_equal(sb_webchat_token_verify(t, tok, c.expires_s + 100, SB_WEBCHAT_RESUME_S, &out),
                     SB_OK);
    assert_int_equal(sb_webchat_token_verify(t, tok, c.expires_s + SB_WEBCHAT_RESUME_S + 1,
                                             SB_WEBCHAT_RESUME_S, &out),
                     SB_E_TIMEOUT);
    /* Rotation: a new first secret issues, the previous one still verifies. */
    sb_webchat_tokens_t *rotated = tokens(SECRET_B " " SECRET_A);
    assert_int_equal(sb_webchat_token_verify(rotated, tok, c.issued_s, 0, &out), SB_OK);
    char tok2[SB_WEBCHAT_MAX_TOKEN];
    assert_int_equal(sb_webchat_token_issue(rotated, &c, tok2, sizeof tok2), SB_OK);
    assert_int_equal(sb_webchat_token_verify(t, tok2, c.issued_s, 0, &out), SB_E_AUTH);
    sb_webchat_tokens_destroy(rotated);
    sb_webchat_tokens_destroy(t);
}

static void test_claims_and_config_checked(void **state)
{
    (void)state;
    sb_webchat_tokens_t *t = tokens(SECRET_A);
    sb_webchat_claims_t c;
    char tok[SB_WEBCHAT_MAX_TOKEN];
    const char *bad_origins[] = {"",
                                 "null",
                                 "ftp://x",
                                 "https://",
                                 "https://a.example/path",
                                 "https://a b",
                                 "https://a\nb",
                                 "https://u@a.example"};
    for (size_t i = 0; i < sizeof bad_origins / sizeof bad_origins[0]; i++) {
        assert_false(sb_webchat_origin_ok(bad_origins[i]));
        claims(&c);
        snprintf(c.origin, sizeof c.origin, "%s", bad_origins[i]);
        assert_int_equal(sb_webchat_token_issue(t, &c, tok, sizeof tok), SB_E_INVALID);
    }
    assert_true(sb_webchat_origin_ok("http://127.0.0.1:8080"));
    assert_true(sb_webchat_origin_ok("https://shop.example.com"));
    claims(&c);
    snprintf(c.locale, sizeof c.locale, "en_GB!");
    assert_int_equal(sb_webchat_token_issue(t, &c, tok, sizeof tok), SB_E_INVALID);
    claims(&c);
    c.session_id[5] = 'X';
    assert_int_equal(sb_webchat_token_issue(t, &c, tok, sizeof tok), SB_E_INVALID);
    claims(&c);
    assert_int_equal(sb_webchat_token_issue(t, &c, tok, 20), SB_E_TOO_LARGE);
    sb_webchat_tokens_destroy(t);

    sb_webchat_tokens_t *none = NULL;
    char err[256];
    assert_int_equal(sb_webchat_tokens_create(&none, "", err, sizeof err), SB_E_CONFIG);
    assert_non_null(strstr(err, "channels.webchat.signing_secret"));
    assert_int_equal(sb_webchat_tokens_create(&none, "whsec_***", err, sizeof err), SB_E_CONFIG);
    assert_null(strstr(err, "***")); /* never the value */
    assert_null(none);
}

static void test_limiter(void **state)
{
    (void)state;
    sb_webchat_limiter_t *l = sb_webchat_limiter_create(64, 2.0, 5);
    uint64_t now = 1000000;
    for (int i = 0; i < 5; i++)
        assert_true(sb_webchat_limiter_allow(l, "10.0.0.1", now));
    assert_false(sb_webchat_limiter_allow(l, "10.0.0.1", now));
    /* Another key has its own bucket. */
    assert_true(sb_webchat_limiter_allow(l, "10.0.0.2", now));
    /* 2 per second: after 500 ms one more, not two. */
    assert_true(sb_webchat_limiter_allow(l, "10.0.0.1", now + 500));
    assert_false(sb_webchat_limiter_allow(l, "10.0.0.1", now + 500));
    /* Never more than the burst, however long it rested. */
    int ok = 0;
    for (int i = 0; i < 10; i++)
        ok += sb_webchat_limiter_allow(l, "10.0.0.1", now + 3600000);
    assert_int_equal(ok, 5);
    /* Many more keys than slots: the table recycles, nothing breaks, new keys get a burst. */
    char key[32];
    for (int i = 0; i < 10000; i++) {
        snprintf(key, sizeof key, "k%d", i);
        assert_true(sb_webchat_limiter_allow(l, key, now + 3600000 + (uint64_t)i));
    }
    sb_webchat_limiter_destroy(l);
}

int main(void)
{
    assert_int_equal(sb_seal_init(), SB_OK);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_tampering_and_foreign_keys),
        cmocka_unit_test(test_expiry_resume_and_rotation),
        cmocka_unit_test(test_claims_and_config_checked),
        cmocka_unit_test(test_limiter),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
