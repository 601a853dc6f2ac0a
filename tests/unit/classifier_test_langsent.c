/* Unit tests for the classifier's language identification (langid.c) and sentiment
 * (sentiment.c) on short sentences written for these tests: en, nl, fr, de and es detected,
 * the locale hint deciding when the text cannot ("ok", "👍", ""), the default "en"; the
 * labelled set data/demo/langid.tsv at >= 98 % and the held-out data/demo/langid_test.tsv
 * (written after the identifier was tuned) at >= 98 %; sentiment signs, negations ("not bad",
 * "niet slecht", "pas mal"), intensifiers, contrast and bounds, and words that only the
 * converted lexicons know (AFINN-165, Pattern nl/fr), negated and intensified. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nlu.h"
#include "nlu_internal.h"

static sb_nlu_langid_t *li;

static int setup(void **state)
{
    (void)state;
    return sb_nlu_langid_create(&li, NULL) == SB_OK ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    sb_nlu_langid_destroy(li);
    return 0;
}

static const char *detect(sb_nlu_work_t *w, const char *text, const char *hint)
{
    sb_nlu_work_tokenize(w, text, strlen(text), true, NULL);
    return sb_nlu_langid_detect(li, w, text, strlen(text), hint);
}

/* Each text is detected as its language, with no hint and with the hint given. */
static void check_cases(sb_nlu_work_t *w, const char *const (*cases)[2], size_t n, const char *hint)
{
    for (size_t i = 0; i < n; i++) {
        const char *got = detect(w, cases[i][0], hint);
        if (strcmp(got, cases[i][1]) != 0)
            fail_msg("\"%s\" (hint %s): %s, want %s", cases[i][0], hint ? hint : "none", got,
                     cases[i][1]);
    }
}

static void test_languages(void **state)
{
    (void)state;
    static const char *const cases[][2] = {
        {"where is my package", "en"},
        {"I would like to cancel my order", "en"},
        {"thank you so much", "en"},
        {"waar blijft mijn pakket", "nl"},
        {"ik wil mijn bestelling annuleren", "nl"},
        {"dank je wel", "nl"},
        {"wanneer zijn jullie open", "nl"},
        {"où est mon colis", "fr"},
        {"je voudrais annuler ma commande", "fr"},
        {"merci beaucoup", "fr"},
        {"wo ist mein Paket", "de"},
        {"ich möchte meine Bestellung stornieren", "de"},
        {"vielen Dank", "de"},
        {"¿dónde está mi paquete?", "es"},
        {"quiero cancelar mi pedido", "es"},
        {"muchas gracias", "es"},
    };
    sb_nlu_work_t *w = sb_nlu_work_create();
    check_cases(w, cases, sizeof cases / sizeof cases[0], NULL);
    /* a hint does not override clear text */
    check_cases(w, cases, sizeof cases / sizeof cases[0], "de-DE");
    sb_nlu_work_destroy(w);
}

static void test_hint_and_default(void **state)
{
    (void)state;
    sb_nlu_work_t *w = sb_nlu_work_create();
    assert_string_equal(detect(w, "ok", "nl-BE"), "nl");
    assert_string_equal(detect(w, "ok", "fr_FR"), "fr");
    assert_string_equal(detect(w, "\xf0\x9f\x91\x8d", "es"), "es");
    assert_string_equal(detect(w, "", "de-AT"), "de");
    assert_string_equal(detect(w, "12345", NULL), "en");
    assert_string_equal(detect(w, "ok", "pt-BR"), "en"); /* unsupported hint: default */
    assert_string_equal(detect(w, "ok", ""), "en");
    /* without fingerprints the word lists still work */
    sb_nlu_work_tokenize(w, "waar is mijn bestelling", 23, true, NULL);
    assert_string_equal(sb_nlu_langid_detect(NULL, w, "waar is mijn bestelling", 23, NULL), "nl");
    sb_nlu_work_destroy(w);
}

/* Texts whose words are in none of the word lists: the n-gram distance to the fingerprints
 * decides alone; long and degenerate texts are bounded. */
static void test_ngram_distance(void **state)
{
    (void)state;
    static const char *const cases[][2] = {
        {"Overboeking geweigerd, saldo onvoldoende volgens bankapp", "nl"},
        {"Transaktionsgebühren Kreditkartenabrechnung Überweisungslimit", "de"},
        {"Réclamation concernant prélèvement bancaire inexpliqué", "fr"},
        {"Transferencia rechazada, saldo insuficiente según aplicación", "es"},
        {"Unrecognised transaction appearing throughout statement", "en"},
    };
    sb_nlu_work_t *w = sb_nlu_work_create();
    check_cases(w, cases, sizeof cases / sizeof cases[0], NULL);
    /* 8 KB of one letter, of digits and spaces, of every byte value: an answer, no overrun */
    static char big[8193];
    memset(big, 'a', sizeof big - 1);
    assert_non_null(detect(w, big, NULL));
    for (size_t i = 0; i < sizeof big - 1; i++)
        big[i] = i % 3 ? (char)('0' + i % 10) : ' ';
    assert_string_equal(detect(w, big, NULL), "en");
    for (size_t i = 0; i < sizeof big - 1; i++)
        big[i] = (char)(1 + i % 255);
    assert_non_null(detect(w, big, NULL));
    sb_nlu_work_destroy(w);
    /* without the fingerprint files the word lists still answer */
    sb_nlu_langid_t *none = NULL;
    assert_int_equal(sb_nlu_langid_create(&none, "/nonexistent"), SB_E_NOT_FOUND);
    w = sb_nlu_work_create();
    sb_nlu_work_tokenize(w, "waar is mijn bestelling", 23, true, NULL);
    assert_string_equal(sb_nlu_langid_detect(none, w, "waar is mijn bestelling", 23, NULL), "nl");
    sb_nlu_work_destroy(w);
    sb_nlu_langid_destroy(none);
}

static float sent(sb_nlu_work_t *w, const char *text, const char *lang);

static void check_labelled_set(const char *rel, int min_total)
{
    const char *src = getenv("SB_SOURCE_DIR");
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", src ? src : ".", rel);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    sb_nlu_work_t *w = sb_nlu_work_create();
    char line[1024];
    int total = 0, right = 0;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = '\0';
        if (line[0] == '#' || !line[0]) continue;
        char *tab = strrchr(line, '\t');
        assert_non_null(tab);
        *tab = '\0';
        const char *got = detect(w, line, NULL);
        total++;
        if (strcmp(got, tab + 1) == 0)
            right++;
        else
            print_message("langid miss: \"%s\" -> %s (want %s)\n", line, got, tab + 1);
    }
    fclose(f);
    sb_nlu_work_destroy(w);
    assert_true(total >= min_total);
    print_message("langid %s: %d/%d\n", rel, right, total);
    assert_true(right * 100 >= total * 98);
}

static void test_labelled_set(void **state)
{
    (void)state;
    check_labelled_set("data/demo/langid.tsv", 150);
}

static void test_heldout_set(void **state)
{
    (void)state;
    check_labelled_set("data/demo/langid_test.tsv", 200);
}

static void test_converted_lexicons(void **state)
{
    (void)state;
    /* the files are compiled in and parsed: thousands of words each */
    assert_true(nlu_sentiment_lexicon_size("en") > 2000);
    assert_true(nlu_sentiment_lexicon_size("nl") > 2000);
    assert_true(nlu_sentiment_lexicon_size("fr") > 2000);
    assert_int_equal(nlu_sentiment_lexicon_size("de"), 0);
    sb_nlu_work_t *w = sb_nlu_work_create();
    /* words no hand-written list has: AFINN and Pattern decide */
    assert_true(sent(w, "what a dreadful experience", "en") < -0.2f);
    assert_true(sent(w, "superb, you guys are marvelous", "en") > 0.3f);
    assert_true(sent(w, "wat een afschuwelijke ervaring", "nl") < 0.0f ||
                sent(w, "afschuwelijk", "nl") < -0.2f);
    assert_true(sent(w, "voortreffelijk geholpen, prachtig", "nl") > 0.3f);
    assert_true(sent(w, "un service épouvantable", "fr") < -0.2f);
    assert_true(sent(w, "merveilleux", "fr") > 0.2f);
    /* accents folded the same way as messages: "epouvantable" without its accents */
    assert_true(sent(w, "epouvantable", "fr") < -0.2f);
    /* negation and intensifiers apply to lexicon words as to the hand-written ones */
    assert_true(sent(w, "not dreadful", "en") > 0.0f);
    assert_true(sent(w, "niet afschuwelijk", "nl") > 0.0f);
    assert_true(sent(w, "pas épouvantable", "fr") > 0.0f);
    assert_true(sent(w, "very superb", "en") > sent(w, "superb", "en"));
    assert_true(sent(w, "heel prachtig", "nl") > sent(w, "prachtig", "nl"));
    assert_true(sent(w, "vraiment merveilleux", "fr") > sent(w, "merveilleux", "fr"));
    /* a Pattern modifier with an intensity of its own scales too: "extreem" (2.0),
     * "particulièrement" (2.0), neither in the hand-written list */
    assert_true(sent(w, "extreem prachtig", "nl") > sent(w, "prachtig", "nl"));
    assert_true(sent(w, "particulièrement merveilleux", "fr") > sent(w, "merveilleux", "fr"));
    /* words that are neutral in a support chat whatever AFINN says */
    assert_true(sent(w, "please help me with my order", "en") == 0.0f);
    /* the lexicon of the message's language is used: "mal" is French, not English */
    assert_true(sent(w, "pas mal du tout", "fr") > 0.0f);
    /* sentences of a support chat, with negation and intensifiers */
    assert_true(sent(w, "the courier was not helpful at all", "en") < 0.0f);
    assert_true(sent(w, "really disappointed, the package is damaged", "en") < -0.4f);
    assert_true(sent(w, "de bezorger was niet vriendelijk", "nl") < 0.0f);
    assert_true(sent(w, "echt super snel geleverd, top!", "nl") > 0.4f);
    assert_true(sent(w, "livraison très rapide, je suis ravi", "fr") > 0.4f);
    assert_true(sent(w, "le produit n'est pas terrible", "fr") > sent(w, "terrible", "fr"));
    sb_nlu_work_destroy(w);
}

static float sent(sb_nlu_work_t *w, const char *text, const char *lang)
{
    sb_nlu_work_tokenize(w, text, strlen(text), true, NULL);
    float s = sb_nlu_sentiment(w, lang);
    assert_true(s >= -1.0f && s <= 1.0f);
    return s;
}

static void test_sentiment(void **state)
{
    (void)state;
    sb_nlu_work_t *w = sb_nlu_work_create();
    /* neutral */
    assert_true(sent(w, "where is my order", "en") == 0.0f);
    assert_true(sent(w, "", "en") == 0.0f);
    /* signs */
    assert_true(sent(w, "great service, thank you", "en") > 0.3f);
    assert_true(sent(w, "this is terrible, worst delivery ever", "en") < -0.3f);
    assert_true(sent(w, "super bedankt, heel fijn", "nl") > 0.3f);
    assert_true(sent(w, "wat een slechte service, belachelijk", "nl") < -0.3f);
    assert_true(sent(w, "merci, c'est parfait", "fr") > 0.3f);
    assert_true(sent(w, "c'est nul, je suis très déçu", "fr") < -0.3f);
    /* negations flip */
    assert_true(sent(w, "not bad", "en") > 0.0f);
    assert_true(sent(w, "not bad", "en") > sent(w, "bad", "en"));
    assert_true(sent(w, "not good at all", "en") < 0.0f);
    assert_true(sent(w, "I don't like it", "en") < 0.0f);
    assert_true(sent(w, "niet slecht", "nl") > 0.0f);
    assert_true(sent(w, "niet slecht", "nl") > sent(w, "slecht", "nl"));
    assert_true(sent(w, "ik ben niet tevreden", "nl") < 0.0f);
    assert_true(sent(w, "pas mal", "fr") > 0.0f);
    assert_true(sent(w, "pas mal", "fr") > sent(w, "mal", "fr"));
    assert_true(sent(w, "ce n'est pas bon", "fr") < 0.0f);
    /* intensifiers scale */
    assert_true(sent(w, "very bad", "en") < sent(w, "bad", "en"));
    assert_true(sent(w, "heel erg goed", "nl") > sent(w, "goed", "nl"));
    assert_true(sent(w, "très content", "fr") > sent(w, "content", "fr"));
    /* after "but" counts more */
    assert_true(sent(w, "the product is good but the delivery was terrible", "en") < 0.0f);
    assert_true(sent(w, "de levering was traag maar het product is geweldig", "nl") > 0.0f);
    /* emoji and emoticons */
    assert_true(sent(w, "thanks \xf0\x9f\x98\x8d", "en") > sent(w, "thanks", "en"));
    assert_true(sent(w, "still waiting :(", "en") < 0.0f);
    /* unknown language: every lexicon */
    assert_true(sent(w, "merci, parfait", "pt") > 0.0f);
    /* bounded even for a long rant */
    char rant[2048] = "";
    for (int i = 0; i < 100; i++)
        strcat(rant, "terrible ");
    assert_true(sent(w, rant, "en") > -1.0f);
    assert_true(sent(w, rant, "en") < -0.9f);
    sb_nlu_work_destroy(w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_languages),      cmocka_unit_test(test_hint_and_default),
        cmocka_unit_test(test_ngram_distance), cmocka_unit_test(test_labelled_set),
        cmocka_unit_test(test_heldout_set),    cmocka_unit_test(test_converted_lexicons),
        cmocka_unit_test(test_sentiment),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
