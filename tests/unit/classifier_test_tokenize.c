/* Unit tests for the classifier's tokenizer and feature hashing (workers/classifier/
 * tokenize.c): Unicode normalization (NFKC, case folding, accents, full-width letters),
 * emoji and emoticons, URLs, e-mails, numbers, codes, redaction placeholders, bounded and
 * invalid input, hash values pinned to their published FNV-1a test vectors (model files depend
 * on them), and feature extraction that is stable, bounded and L2-normalized. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nlu.h"

/* Tokenizes text and joins the tokens with '|' into buf. */
static const char *toks(sb_nlu_work_t *w, const char *text, bool strip, char *buf, size_t n)
{
    const sb_nlu_token_t *t;
    size_t k = sb_nlu_work_tokenize(w, text, strlen(text), strip, &t);
    size_t o = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < k; i++) {
        int r = snprintf(buf + o, n - o, "%s%.*s", i ? "|" : "", (int)t[i].len, t[i].s);
        assert_true(r > 0 && (size_t)r < n - o);
        o += (size_t)r;
    }
    return buf;
}

static void test_ascii_words(void **state)
{
    (void)state;
    sb_nlu_work_t *w = sb_nlu_work_create();
    char b[512];
    assert_string_equal(toks(w, "Where IS my Order?", true, b, sizeof b), "where|is|my|order");
    assert_string_equal(toks(w, "I'd like it, don't you?", true, b, sizeof b),
                        "i|d|like|it|don|t|you");
    assert_string_equal(toks(w, "", true, b, sizeof b), "");
    assert_string_equal(toks(w, "  \t\n ", true, b, sizeof b), "");
    assert_string_equal(toks(w, "e-mail_address", true, b, sizeof b), "e|mail|address");
    sb_nlu_work_destroy(w);
}

static void test_unicode(void **state)
{
    (void)state;
    sb_nlu_work_t *w = sb_nlu_work_create();
    char b[512];
    /* accents stripped, case folded, typographic apostrophe lumped to ASCII */
    assert_string_equal(toks(w, "Où est ma COMMANDE ? Ça m’énerve", true, b, sizeof b),
                        "ou|est|ma|commande|ca|m|enerve");
    /* accents kept when asked */
    assert_string_equal(toks(w, "Où ÉTÉ", false, b, sizeof b), "où|été");
    /* NFKC: full-width letters and the "ﬁ" ligature become plain letters */
    assert_string_equal(toks(w, "\xef\xbc\xa8\xef\xbd\x89 \xef\xac\x81le", true, b, sizeof b),
                        "hi|file");
    /* decomposed e + combining acute equals the precomposed é */
    assert_string_equal(toks(w, "cafe\xcc\x81", false, b, sizeof b), "café");
    /* German sharp s case-folds to "ss", Greek works too */
    assert_string_equal(toks(w, "STRAẞE Ωμέγα", true, b, sizeof b), "strasse|ωμεγα");
    /* belgië / Ökonomie */
    assert_string_equal(toks(w, "België Ökonomie", true, b, sizeof b), "belgie|okonomie");
    sb_nlu_work_destroy(w);
}

static void test_emoji(void **state)
{
    (void)state;
    sb_nlu_work_t *w = sb_nlu_work_create();
    const sb_nlu_token_t *t;
    /* each pictograph is its own token; the variation selector is dropped */
    size_t n = sb_nlu_work_tokenize(
        w, "great\xf0\x9f\x98\x80\xf0\x9f\x91\x8d \xe2\x9d\xa4\xef\xb8\x8f",
        strlen("great\xf0\x9f\x98\x80\xf0\x9f\x91\x8d \xe2\x9d\xa4\xef\xb8\x8f"), true, &t);
    assert_int_equal(n, 4);
    assert_int_equal(t[0].kind, SB_NLU_TOK_WORD);
    assert_int_equal(t[1].kind, SB_NLU_TOK_EMOJI);
    assert_memory_equal(t[1].s, "\xf0\x9f\x98\x80", 4);
    assert_int_equal(t[2].kind, SB_NLU_TOK_EMOJI);
    assert_int_equal(t[3].len, 3);
    assert_memory_equal(t[3].s, "\xe2\x9d\xa4", 3);
    char b[256];
    assert_string_equal(toks(w, "thanks :) but :-( and :D", true, b, sizeof b),
                        "thanks|:)|but|:(|and|:)");
    /* not emoticons: a time and a word after the colon */
    assert_string_equal(toks(w, "re:do 8:30", true, b, sizeof b), "re|do|<num>|<num>");
    sb_nlu_work_destroy(w);
}

static void test_class_tokens(void **state)
{
    (void)state;
    sb_nlu_work_t *w = sb_nlu_work_create();
    char b[512];
    assert_string_equal(
        toks(w, "see https://example.com/a?b=1 or www.shop.nl now", true, b, sizeof b),
        "see|<url>|or|<url>|now");
    assert_string_equal(toks(w, "mail me at jan.de.vries@example.org please", true, b, sizeof b),
                        "mail|me|at|<email>|please");
    assert_string_equal(toks(w, "My email is [EMAIL_1] and phone [PHONE_12]", true, b, sizeof b),
                        "my|email|is|<email>|and|phone|<phone>");
    assert_string_equal(toks(w, "card [CARD_1] iban [IBAN_2] other [FOO_1]", true, b, sizeof b),
                        "card|<card>|iban|<iban>|other|<placeholder>");
    assert_string_equal(toks(w, "order 12345 costs 12.50 or 1,000", true, b, sizeof b),
                        "order|<num>|costs|<num>|or|<num>");
    assert_string_equal(toks(w, "ORD-88213 and AB123CD", true, b, sizeof b),
                        "ord|<num>|and|<code>");
    assert_string_equal(toks(w, "open at 10am, the 3rd", true, b, sizeof b),
                        "open|at|<num>|am|the|<num>|rd");
    /* not placeholders */
    assert_string_equal(toks(w, "[1] [abc", true, b, sizeof b), "<num>|abc");
    const sb_nlu_token_t *t;
    sb_nlu_work_tokenize(w, "[EMAIL_1]", 9, true, &t);
    assert_int_equal(t[0].kind, SB_NLU_TOK_PLACEHOLDER);
    sb_nlu_work_tokenize(w, "42", 2, true, &t);
    assert_int_equal(t[0].kind, SB_NLU_TOK_NUMBER);
    sb_nlu_work_destroy(w);
}

static void test_invalid_and_bounded(void **state)
{
    (void)state;
    sb_nlu_work_t *w = sb_nlu_work_create();
    char b[512];
    /* invalid UTF-8 (lone continuation, overlong, surrogate) becomes separators */
    assert_string_equal(toks(w,
                             "ab\x80"
                             "cd \xc0\xaf x \xed\xa0\x80y \xc3",
                             true, b, sizeof b),
                        "ab|cd|x|y");
    /* control characters and NUL are separators */
    const char ctl[] = {'a', '\0', 'b', 0x07, 'c'};
    const sb_nlu_token_t *t;
    assert_int_equal(sb_nlu_work_tokenize(w, ctl, sizeof ctl, true, &t), 3);
    /* text beyond SB_NLU_MAX_TEXT is ignored, never cut inside a code point */
    size_t big = SB_NLU_MAX_TEXT * 4;
    char *s = malloc(big);
    for (size_t i = 0; i + 1 < big; i += 2)
        memcpy(s + i, "\xc3\xa9", 2); /* é é é ... */
    size_t n = sb_nlu_work_tokenize(w, s, big, false, &t);
    assert_int_equal(n, 1);
    assert_true(t[0].len <= SB_NLU_MAX_TEXT);
    assert_int_equal(t[0].len % 2, 0);
    size_t nl;
    sb_nlu_work_normalized(w, &nl);
    assert_true(nl <= SB_NLU_MAX_TEXT);
    free(s);
    /* NULL text is empty */
    assert_int_equal(sb_nlu_work_tokenize(w, NULL, 10, true, NULL), 0);
    sb_nlu_work_destroy(w);
}

static void test_hash_vectors(void **state)
{
    (void)state;
    /* FNV-1a published test vectors */
    assert_int_equal(sb_nlu_hash("", 0, 0), 0x811c9dc5u);
    assert_int_equal(sb_nlu_hash("a", 1, 0), 0xe40c292cu);
    assert_int_equal(sb_nlu_hash("foobar", 6, 0), 0xbf9cf968u);
    assert_true(sb_nlu_hash64("", 0, 0) == 0xcbf29ce484222325ull);
    assert_true(sb_nlu_hash64("a", 1, 0) == 0xaf63dc4c8601ec8cull);
    assert_true(sb_nlu_hash64("foobar", 6, 0) == 0x85944171f73967e8ull);
    /* the seed changes the hash */
    assert_int_not_equal(sb_nlu_hash("a", 1, 1), sb_nlu_hash("a", 1, 0));
}

static void test_features(void **state)
{
    (void)state;
    sb_nlu_work_t *w = sb_nlu_work_create();
    sb_nlu_featcfg_t cfg;
    sb_nlu_featcfg_default(&cfg);
    const uint32_t *ids;
    const float *vals;
    sb_nlu_work_tokenize(w, "where is my order", 17, true, NULL);
    size_t n = sb_nlu_work_featurize(w, &cfg, NULL, &ids, &vals);
    /* 4 words + 5 bigrams (with boundaries) + the char n-grams of <where>, <is>, <my>,
     * <order> for the configured lengths */
    static const size_t wlen[] = {5, 2, 2, 5};
    size_t grams = 0;
    for (size_t i = 0; i < 4; i++)
        for (size_t g = cfg.char_min; g <= cfg.char_max; g++)
            if (wlen[i] + 2 >= g) grams += wlen[i] + 2 - g + 1;
    assert_int_equal(n, 4 + 5 + grams);
    double ss = 0;
    uint32_t mask = (1u << cfg.hash_bits) - 1;
    for (size_t i = 0; i < n; i++) {
        ss += (double)vals[i] * vals[i];
        assert_true((ids[i] & ~mask) == 0);
    }
    assert_true(fabs(ss - 1.0) < 1e-4);
    /* the same text gives the same features; a different one does not */
    uint32_t *copy = malloc(n * sizeof *copy);
    memcpy(copy, ids, n * sizeof *copy);
    sb_nlu_work_tokenize(w, "WHERE is my órder", strlen("WHERE is my órder"), true, NULL);
    size_t n2 = sb_nlu_work_featurize(w, &cfg, NULL, &ids, &vals);
    assert_int_equal(n2, n);
    assert_memory_equal(ids, copy, n * sizeof *copy);
    sb_nlu_work_tokenize(w, "where is my parcel", 18, true, NULL);
    sb_nlu_work_featurize(w, &cfg, NULL, &ids, &vals);
    assert_memory_not_equal(ids, copy, n * sizeof *copy);
    free(copy);
    /* stems: "orders" and "ordering" share the English stem "order" */
    cfg.stem = true;
    cfg.char_max = 0;
    cfg.word_bigrams = false;
    sb_nlu_work_tokenize(w, "orders", 6, true, NULL);
    n = sb_nlu_work_featurize(w, &cfg, "en", &ids, &vals);
    assert_int_equal(n, 2);
    uint32_t stem1 = ids[1];
    sb_nlu_work_tokenize(w, "ordering", 8, true, NULL);
    n = sb_nlu_work_featurize(w, &cfg, "en", &ids, &vals);
    assert_int_equal(n, 2);
    assert_int_equal(ids[1], stem1);
    /* an empty text has no features */
    sb_nlu_work_tokenize(w, "", 0, true, NULL);
    assert_int_equal(sb_nlu_work_featurize(w, &cfg, NULL, &ids, &vals), 0);
    sb_nlu_work_destroy(w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ascii_words),
        cmocka_unit_test(test_unicode),
        cmocka_unit_test(test_emoji),
        cmocka_unit_test(test_class_tokens),
        cmocka_unit_test(test_invalid_and_bounded),
        cmocka_unit_test(test_hash_vectors),
        cmocka_unit_test(test_features),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
