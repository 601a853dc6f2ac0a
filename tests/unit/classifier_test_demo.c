/* Unit test for the demo model: trains on data/demo/train.tsv exactly as `switchboard up`
 * does (default options), checks that training is quick and deterministic, that the sentences
 * the demo must answer get the right intent in English, Dutch and French, and that the
 * held-out sentences of data/demo/heldout.tsv (never trained on) reach >= 90 % accuracy. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nlu.h"

static sb_nlu_t nlu;

static void path_of(char *buf, size_t n, const char *rel)
{
    const char *src = getenv("SB_SOURCE_DIR");
    snprintf(buf, n, "%s/%s", src ? src : ".", rel);
}

static int setup(void **state)
{
    (void)state;
    char path[1024], err[256];
    sb_nlu_dataset_t ds = {0};
    path_of(path, sizeof path, "data/demo/train.tsv");
    if (sb_nlu_dataset_load(&ds, path, err, sizeof err) != SB_OK) {
        fprintf(stderr, "%s\n", err);
        return -1;
    }
    sb_nlu_train_opts_t o;
    sb_nlu_train_opts_default(&o);
    sb_nlu_train_report_t rep;
    memset(&nlu, 0, sizeof nlu);
    sb_result_t rc = sb_nlu_train(&nlu.model, &ds, &o, &rep, err, sizeof err);
    sb_nlu_dataset_free(&ds);
    if (rc != SB_OK) return -1;
    print_message("demo model: %zu examples, %zu intents, %zu features, %.3f s\n", rep.examples,
                  rep.labels, rep.rows, rep.seconds);
    if (sb_nlu_rules_load(&nlu.rules, NULL, err, sizeof err) != SB_OK) return -1;
    if (sb_nlu_langid_create(&nlu.langid, NULL) != SB_OK) return -1;
    nlu.apply_threshold = true;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    sb_nlu_model_destroy(nlu.model);
    sb_nlu_rules_destroy(nlu.rules);
    sb_nlu_langid_destroy(nlu.langid);
    return 0;
}

static void test_must_answer(void **state)
{
    (void)state;
    static const char *const cases[][3] = {
        {"hi", "greeting", "en"},
        {"when are you open?", "opening_hours", "en"},
        {"where is my order?", "order_status", "en"},
        {"I need to update my billing address", "change_billing_address", "en"},
        {"I want to talk to a human", "human_handoff", "en"},
        {"hallo", "greeting", "nl"},
        {"wanneer zijn jullie open?", "opening_hours", "nl"},
        {"waar is mijn bestelling?", "order_status", "nl"},
        {"ik wil mijn factuuradres wijzigen", "change_billing_address", "nl"},
        {"ik wil een mens spreken", "human_handoff", "nl"},
        {"bonjour", "greeting", "fr"},
        {"quand êtes-vous ouverts ?", "opening_hours", "fr"},
        {"où est ma commande ?", "order_status", "fr"},
        {"je veux changer mon adresse de facturation", "change_billing_address", "fr"},
        {"je veux parler à un conseiller", "human_handoff", "fr"},
    };
    sb_nlu_work_t *w = sb_nlu_work_create();
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        sb_nlu_result_t r;
        sb_nlu_classify(&nlu, w, cases[i][0], strlen(cases[i][0]), NULL, &r);
        if (strcmp(r.intent, cases[i][1]) != 0 || strcmp(r.language, cases[i][2]) != 0)
            fail_msg("\"%s\": %s/%s, want %s/%s", cases[i][0], r.intent, r.language, cases[i][1],
                     cases[i][2]);
        /* confident enough that the escalation worker's default threshold lets the bot answer */
        assert_true(r.confidence >= 0.6f);
    }
    sb_nlu_work_destroy(w);
}

static void test_heldout_accuracy(void **state)
{
    (void)state;
    char path[1024], err[256];
    sb_nlu_dataset_t ds = {0};
    path_of(path, sizeof path, "data/demo/heldout.tsv");
    assert_int_equal(sb_nlu_dataset_load(&ds, path, err, sizeof err), SB_OK);
    assert_true(ds.n >= 50);
    sb_nlu_work_t *w = sb_nlu_work_create();
    size_t right = 0;
    for (size_t i = 0; i < ds.n; i++) {
        sb_nlu_result_t r;
        sb_nlu_classify(&nlu, w, ds.ex[i].text, strlen(ds.ex[i].text), NULL, &r);
        if (strcmp(r.intent, ds.labels[ds.ex[i].label]) == 0)
            right++;
        else
            print_message("miss: \"%s\" -> %s (want %s)\n", ds.ex[i].text, r.intent,
                          ds.labels[ds.ex[i].label]);
    }
    print_message("demo held-out accuracy: %zu/%zu\n", right, ds.n);
    assert_true(right * 100 >= ds.n * 90);
    sb_nlu_work_destroy(w);
    sb_nlu_dataset_free(&ds);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_must_answer),
        cmocka_unit_test(test_heldout_accuracy),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
