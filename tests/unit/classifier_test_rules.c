/* Unit tests for the classifier's rules (workers/classifier/rules.c, classify.c): built-in
 * "I want a human" guarantees in English, Dutch and French (and German, Spanish) decide
 * human_handoff even with a model that has no such intent; button payload rules; business
 * YAML rules (keywords, PCRE2 patterns, languages) including config/rules.yaml itself; and bad
 * rule files rejected with a message naming the file and the rule. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nlu.h"

static char tmpdir[256];
static sb_nlu_t nlu;

/* A model that knows nothing about humans: anything it says is greeting or order_status. */
static sb_nlu_model_t *train_no_human(void)
{
    sb_nlu_dataset_t ds = {0};
    static const char *const ex[][2] = {
        {"hi", "greeting"},
        {"hello", "greeting"},
        {"hey there", "greeting"},
        {"where is my order", "order_status"},
        {"track my order", "order_status"},
        {"my parcel is late", "order_status"},
    };
    for (size_t i = 0; i < sizeof ex / sizeof ex[0]; i++)
        assert_int_equal(sb_nlu_dataset_add(&ds, ex[i][0], strlen(ex[i][0]), ex[i][1]), SB_OK);
    sb_nlu_train_opts_t o;
    sb_nlu_train_opts_default(&o);
    sb_nlu_model_t *m = NULL;
    char err[256];
    assert_int_equal(sb_nlu_train(&m, &ds, &o, NULL, err, sizeof err), SB_OK);
    sb_nlu_dataset_free(&ds);
    return m;
}

static int setup(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/sbnlu-rules-XXXXXX");
    if (!mkdtemp(tmpdir)) return -1;
    memset(&nlu, 0, sizeof nlu);
    nlu.model = train_no_human();
    char err[256];
    if (sb_nlu_rules_load(&nlu.rules, NULL, err, sizeof err) != SB_OK) return -1;
    if (sb_nlu_langid_create(&nlu.langid, NULL) != SB_OK) return -1;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    sb_nlu_model_destroy(nlu.model);
    sb_nlu_rules_destroy(nlu.rules);
    sb_nlu_langid_destroy(nlu.langid);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

static const char *write_file(const char *name, const char *content)
{
    static char path[512];
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fputs(content, f);
    assert_int_equal(fclose(f), 0);
    return path;
}

static void test_builtin_human(void **state)
{
    (void)state;
    static const char *const asks[] = {
        "I want to talk to a human",
        "can I speak to a real person please",
        "AGENT!!",
        "human",
        "let me talk to someone",
        "ik wil een mens spreken",
        "Kan ik iemand spreken?",
        "medewerker",
        "ik wil graag een échte persoon",
        "je veux parler à un conseiller",
        "Je voudrais parler à un humain",
        "une personne svp",
        "parler a quelqu’un s'il vous plait",
        "ich möchte mit einem Mitarbeiter sprechen",
        "quiero hablar con un agente",
    };
    sb_nlu_work_t *w = sb_nlu_work_create();
    for (size_t i = 0; i < sizeof asks / sizeof asks[0]; i++) {
        sb_nlu_result_t r;
        sb_nlu_classify(&nlu, w, asks[i], strlen(asks[i]), NULL, &r);
        if (strcmp(r.intent, SB_NLU_HUMAN_HANDOFF) != 0)
            fail_msg("\"%s\" gave %s", asks[i], r.intent);
        assert_true(r.confidence == 1.0f);
        assert_true(strncmp(r.rule, "builtin:", 8) == 0);
        assert_string_equal(r.model_version, sb_nlu_model_version(nlu.model));
    }
    /* ordinary messages still go to the model */
    static const char *const plain[] = {"where is my order", "hello", "humane society"};
    for (size_t i = 0; i < sizeof plain / sizeof plain[0]; i++) {
        sb_nlu_result_t r;
        sb_nlu_classify(&nlu, w, plain[i], strlen(plain[i]), NULL, &r);
        assert_string_not_equal(r.intent, SB_NLU_HUMAN_HANDOFF);
        assert_string_equal(r.rule, "");
    }
    sb_nlu_work_destroy(w);
}

static void test_payload(void **state)
{
    (void)state;
    char buf[80];
    assert_true(sb_nlu_payload_intent("intent:order_status", buf, sizeof buf));
    assert_string_equal(buf, "order_status");
    assert_true(sb_nlu_payload_intent("escalate:human", buf, sizeof buf));
    assert_string_equal(buf, SB_NLU_HUMAN_HANDOFF);
    assert_false(sb_nlu_payload_intent("intent:", buf, sizeof buf));
    assert_false(sb_nlu_payload_intent("intent:bad name", buf, sizeof buf));
    assert_false(sb_nlu_payload_intent("menu_2", buf, sizeof buf));
    assert_false(sb_nlu_payload_intent(NULL, buf, sizeof buf));

    sb_nlu_work_t *w = sb_nlu_work_create();
    sb_nlu_result_t r;
    sb_nlu_classify_button(&nlu, w, "intent:opening_hours", "Openingstijden", "nl-NL", &r);
    assert_string_equal(r.intent, "opening_hours");
    assert_true(r.confidence == 1.0f);
    assert_string_equal(r.rule, "payload");
    assert_string_equal(r.language, "nl");
    sb_nlu_classify_button(&nlu, w, "escalate:human", "Talk to us", NULL, &r);
    assert_string_equal(r.intent, SB_NLU_HUMAN_HANDOFF);
    /* an unknown payload classifies the title */
    sb_nlu_classify_button(&nlu, w, "btn_42", "Where is my order?", NULL, &r);
    assert_string_equal(r.intent, "order_status");
    assert_string_equal(r.rule, "");
    sb_nlu_work_destroy(w);
}

static void test_business_rules(void **state)
{
    (void)state;
    char err[256];
    const char *p = write_file("rules.yaml", "rules:\n"
                                             "  - name: legal_en\n"
                                             "    intent: legal\n"
                                             "    languages: [en]\n"
                                             "    keywords: [lawyer, legal action]\n"
                                             "  - name: legal_nl\n"
                                             "    intent: legal\n"
                                             "    languages: [nl]\n"
                                             "    keywords: [advocaat]\n"
                                             "  - name: refund_re\n"
                                             "    intent: refund\n"
                                             "    patterns: ['\\bmoney\\s+back\\b', 'rembours']\n"
                                             "  - name: vip\n"
                                             "    intent: human_handoff\n"
                                             "    keywords: [gold member]\n");
    sb_nlu_t b = nlu;
    b.rules = NULL;
    assert_int_equal(sb_nlu_rules_load(&b.rules, p, err, sizeof err), SB_OK);
    assert_true(sb_nlu_rules_count(b.rules) > 4);
    sb_nlu_work_t *w = sb_nlu_work_create();
    sb_nlu_result_t r;
    const char *t = "I will call my lawyer about this order";
    sb_nlu_classify(&b, w, t, strlen(t), NULL, &r);
    assert_string_equal(r.intent, "legal");
    assert_string_equal(r.rule, "legal_en");
    t = "ik neem een advocaat in de arm voor deze bestelling";
    sb_nlu_classify(&b, w, t, strlen(t), NULL, &r);
    assert_string_equal(r.intent, "legal");
    assert_string_equal(r.rule, "legal_nl");
    /* a whole-word keyword: "lawyers" is not "lawyer", and an nl rule ignores English */
    t = "where is my order, lawyers";
    sb_nlu_classify(&b, w, t, strlen(t), NULL, &r);
    assert_string_equal(r.intent, "order_status");
    t = "I just want my MONEY   back";
    sb_nlu_classify(&b, w, t, strlen(t), NULL, &r);
    assert_string_equal(r.intent, "refund");
    assert_string_equal(r.rule, "refund_re");
    t = "je veux être remboursé";
    sb_nlu_classify(&b, w, t, strlen(t), NULL, &r);
    assert_string_equal(r.intent, "refund");
    t = "I am a gold member";
    sb_nlu_classify(&b, w, t, strlen(t), NULL, &r);
    assert_string_equal(r.rule, "vip");
    /* built-ins still apply after business rules */
    t = "talk to a human";
    sb_nlu_classify(&b, w, t, strlen(t), NULL, &r);
    assert_string_equal(r.intent, SB_NLU_HUMAN_HANDOFF);
    sb_nlu_rules_destroy(b.rules);

    /* the shipped config/rules.yaml loads and works */
    const char *src = getenv("SB_SOURCE_DIR");
    char path[1024];
    snprintf(path, sizeof path, "%s/config/rules.yaml", src ? src : ".");
    b.rules = NULL;
    assert_int_equal(sb_nlu_rules_load(&b.rules, path, err, sizeof err), SB_OK);
    t = "I will talk to my lawyer";
    sb_nlu_classify(&b, w, t, strlen(t), NULL, &r);
    assert_string_equal(r.intent, "legal");
    t = "could I chat with your staff";
    sb_nlu_classify(&b, w, t, strlen(t), NULL, &r);
    assert_string_equal(r.intent, SB_NLU_HUMAN_HANDOFF);
    sb_nlu_rules_destroy(b.rules);
    sb_nlu_work_destroy(w);
}

static void test_bad_rules(void **state)
{
    (void)state;
    char err[256];
    sb_nlu_rules_t *r = NULL;
    const char *p = write_file("b1.yaml", "rules:\n  - name: x\n    intent: \"bad intent\"\n"
                                          "    keywords: [a]\n");
    assert_int_equal(sb_nlu_rules_load(&r, p, err, sizeof err), SB_E_CONFIG);
    assert_null(r);
    assert_non_null(strstr(err, "b1.yaml"));
    assert_non_null(strstr(err, "rule x"));
    p = write_file("b2.yaml", "rules:\n  - name: y\n    intent: ok\n    patterns: ['(unclosed']\n");
    assert_int_equal(sb_nlu_rules_load(&r, p, err, sizeof err), SB_E_CONFIG);
    assert_non_null(strstr(err, "rule y"));
    assert_non_null(strstr(err, "pattern 1"));
    p = write_file("b3.yaml", "rules:\n  - name: z\n    intent: ok\n    languages: [xx]\n"
                              "    keywords: [a]\n");
    assert_int_equal(sb_nlu_rules_load(&r, p, err, sizeof err), SB_E_CONFIG);
    assert_non_null(strstr(err, "language"));
    p = write_file("b4.yaml", "rules:\n  - name: n\n    intent: ok\n");
    assert_int_equal(sb_nlu_rules_load(&r, p, err, sizeof err), SB_E_CONFIG);
    p = write_file("b5.yaml", "rules: [\n");
    assert_int_equal(sb_nlu_rules_load(&r, p, err, sizeof err), SB_E_CONFIG);
    p = write_file("b6.yaml", "rules:\n  - name: k\n    intent: ok\n    keywords: [a]\n"
                              "    unknown_key: 1\n");
    assert_int_equal(sb_nlu_rules_load(&r, p, err, sizeof err), SB_E_CONFIG);
    assert_int_not_equal(sb_nlu_rules_load(&r, "/nonexistent/rules.yaml", err, sizeof err), SB_OK);
    assert_null(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_builtin_human),
        cmocka_unit_test(test_payload),
        cmocka_unit_test(test_business_rules),
        cmocka_unit_test(test_bad_rules),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
