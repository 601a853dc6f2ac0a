/* Unit tests for the `switchboard train|predict|eval` commands of sbnlu (cmd.c), called as
 * the CLI calls them, with their standard output captured: training with default options
 * carves a validation set out of the data, calibrates on it and refits on everything (and
 * says so); --val-split 0 trains on everything without calibration; --hidden-chars says when
 * there is no hidden layer for it to change; `eval --replay` reads a
 * JSONL export of past classifications and reports the agreement of a model with them, the
 * out-of-scope rates and the confidence shifts, skipping and counting malformed lines;
 * predict writes intent, confidence, language and sentiment with fixed decimals; bad usage
 * and missing files are errors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nlu.h"
#include "sb/util.h"

static char tmpdir[256];

static int setup(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/sbnlu-cmd-XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

static const char *path_in(const char *name)
{
    static char path[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(path[k], sizeof path[k], "%s/%s", tmpdir, name);
    return path[k];
}

static void write_text(const char *path, const char *content)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(content, 1, strlen(content), f), strlen(content));
    assert_int_equal(fclose(f), 0);
}

typedef int (*cmd_fn)(int, char **);

/* Runs cmd with argv (NULL-terminated), stdin from in (may be NULL), and returns its exit
 * status; *out (caller frees) receives everything it wrote on stdout, *err on stderr. */
static int run_cmd(cmd_fn cmd, const char *const *argv, const char *in, char **out, char **err)
{
    int argc = 0;
    char *args[32];
    while (argv[argc]) {
        args[argc] = (char *)argv[argc];
        argc++;
    }
    args[argc] = NULL;
    const char *op = path_in("stdout.txt"), *ep = path_in("stderr.txt");
    fflush(stdout);
    fflush(stderr);
    int saved_out = dup(1), saved_err = dup(2), saved_in = dup(0);
    int fo = open(op, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    int fe = open(ep, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fo >= 0 && fe >= 0);
    dup2(fo, 1);
    dup2(fe, 2);
    if (in) {
        int fi = open(in, O_RDONLY);
        assert_true(fi >= 0);
        dup2(fi, 0);
        close(fi);
        clearerr(stdin);
    }
    int st = cmd(argc, args);
    fflush(stdout);
    fflush(stderr);
    dup2(saved_out, 1);
    dup2(saved_err, 2);
    dup2(saved_in, 0);
    clearerr(stdin);
    close(saved_out);
    close(saved_err);
    close(saved_in);
    close(fo);
    close(fe);
    /* predict gave stdout a buffer of its own: back to line buffering for the test output */
    setvbuf(stdout, NULL, _IOLBF, 0);
    size_t n;
    if (out) assert_int_equal(sb_read_file(op, 1 << 20, out, &n), SB_OK);
    if (err) assert_int_equal(sb_read_file(ep, 1 << 20, err, &n), SB_OK);
    return st;
}

/* 6 intents x 20 examples: enough for the trainer to carve a validation set itself. */
static const char *write_train(void)
{
    static const char *const intents[][2] = {
        {"order_status", "where is my order number"},   {"opening_hours", "when are you open on"},
        {"refund", "i want my money back for"},         {"greeting", "hello there good"},
        {"cancel", "please cancel my subscription to"}, {"password", "i forgot my password for"},
    };
    static const char *const tails[] = {
        "monday",  "the shop", "today",   "please", "now",    "the app",   "my account",
        "tuesday", "friday",   "the web", "again",  "at all", "this week", "the order",
        "sunday",  "my card",  "the box", "soon",   "later",  "the store"};
    static char p[512];
    snprintf(p, sizeof p, "%s/train.tsv", tmpdir);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    for (size_t i = 0; i < sizeof intents / sizeof intents[0]; i++)
        for (size_t t = 0; t < 20; t++)
            fprintf(f, "%s %s\t%s\n", intents[i][1], tails[t], intents[i][0]);
    assert_int_equal(fclose(f), 0);
    return p;
}

static void test_train_carves_and_refits(void **state)
{
    (void)state;
    char *out = NULL, *err = NULL;
    const char *data = write_train();
    char model[512], plain[512];
    snprintf(model, sizeof model, "%s", path_in("m.model"));
    snprintf(plain, sizeof plain, "%s", path_in("plain.model"));
    const char *a1[] = {"train", "--data", data, "--out", model, NULL};
    assert_int_equal(run_cmd(sb_nlu_cmd_train, a1, NULL, &out, &err), 0);
    assert_non_null(strstr(err, "validation=carved,refit"));
    assert_non_null(strstr(err, "examples=120")); /* the refit saw every example */
    assert_non_null(strstr(err, "val_accuracy="));
    free(out);
    free(err);
    const char *a2[] = {"train", "--data", data, "--out", plain, "--val-split", "0", NULL};
    assert_int_equal(run_cmd(sb_nlu_cmd_train, a2, NULL, &out, &err), 0);
    assert_null(strstr(err, "validation=carved"));
    assert_non_null(strstr(err, "temperature=1.000"));
    assert_non_null(strstr(err, "hidden=0"));
    free(out);
    free(err);
    /* 20 examples per intent: no hidden layer by default, so --hidden-chars says it did
     * nothing; with --hidden 4 the three members' 12 units read the char n-grams */
    const char *a5[] = {"train", "--data", data, "--out", plain, "--hidden-chars", NULL};
    assert_int_equal(run_cmd(sb_nlu_cmd_train, a5, NULL, &out, &err), 0);
    assert_non_null(strstr(err, "hidden=0"));
    assert_non_null(strstr(err, "--hidden-chars did nothing"));
    free(out);
    free(err);
    const char *a6[] = {"train",          "--data",   data, "--out", plain,
                        "--hidden-chars", "--hidden", "4",  NULL};
    assert_int_equal(run_cmd(sb_nlu_cmd_train, a6, NULL, &out, &err), 0);
    assert_non_null(strstr(err, "hidden=12"));
    assert_null(strstr(err, "did nothing"));
    free(out);
    free(err);
    /* both models answer the training sentences */
    sb_nlu_model_t *m = NULL;
    char e[256];
    assert_int_equal(sb_nlu_model_load(&m, model, e, sizeof e), SB_OK);
    sb_nlu_work_t *w = sb_nlu_work_create();
    sb_nlu_prediction_t p;
    sb_nlu_model_predict(m, w, "where is my order number", 24, NULL, &p);
    assert_string_equal(p.top[0].intent, "order_status");
    sb_nlu_work_destroy(w);
    sb_nlu_model_destroy(m);
    /* bad values are usage errors */
    const char *a3[] = {"train", "--data", data, "--out", plain, "--val-split", "0.9", NULL};
    assert_int_equal(run_cmd(sb_nlu_cmd_train, a3, NULL, NULL, NULL), 2);
    const char *a4[] = {"train", "--data", data, "--out", plain, "--knn-weight", "2", NULL};
    assert_int_equal(run_cmd(sb_nlu_cmd_train, a4, NULL, NULL, NULL), 2);
}

static void test_predict_format(void **state)
{
    (void)state;
    char *out = NULL;
    const char *data = write_train();
    char model[512];
    snprintf(model, sizeof model, "%s", path_in("p.model"));
    const char *a1[] = {"train", "--data", data, "--out", model, NULL};
    assert_int_equal(run_cmd(sb_nlu_cmd_train, a1, NULL, NULL, NULL), 0);
    char in[512];
    snprintf(in, sizeof in, "%s", path_in("in.txt"));
    write_text(in, "hello there good monday\nthis is terrible, worst shop ever\n\n");
    const char *a2[] = {"predict", "--model", model, NULL};
    assert_int_equal(run_cmd(sb_nlu_cmd_predict, a2, in, &out, NULL), 0);
    char intent[64], lang[8];
    double conf, sent;
    char *line2 = strchr(out, '\n');
    assert_non_null(line2);
    assert_int_equal(sscanf(out, "%63[^\t]\t%lf\t%7[^\t]\t%lf", intent, &conf, lang, &sent), 4);
    assert_string_equal(intent, "greeting");
    assert_string_equal(lang, "en");
    assert_true(conf > 0.0 && conf <= 1.0);
    /* fixed decimals: 4 for the confidence, 3 for the sentiment */
    char *tab1 = strchr(out, '\t'), *tab2 = strchr(tab1 + 1, '\t');
    assert_int_equal(tab2 - tab1 - 1, 6); /* "0.xxxx" */
    assert_int_equal(sscanf(line2 + 1, "%63[^\t]\t%lf\t%7[^\t]\t%lf", intent, &conf, lang, &sent),
                     4);
    assert_true(sent < -0.3);
    char second[256];
    size_t l2 = (size_t)(strchr(line2 + 1, '\n') - (line2 + 1));
    assert_true(l2 < sizeof second);
    memcpy(second, line2 + 1, l2);
    second[l2] = '\0';
    char *neg = strrchr(second, '\t');
    assert_true(neg[1] == '-' && strlen(neg + 1) == strlen("-0.000"));
    /* the empty line is still answered */
    assert_non_null(strchr(strchr(line2 + 1, '\n') + 1, '\t'));
    free(out);
}

static void test_replay(void **state)
{
    (void)state;
    char *out = NULL, *err = NULL;
    const char *data = write_train();
    char model[512];
    snprintf(model, sizeof model, "%s", path_in("r.model"));
    const char *a1[] = {"train", "--data", data, "--out", model, NULL};
    assert_int_equal(run_cmd(sb_nlu_cmd_train, a1, NULL, NULL, NULL), 0);
    char jl[512];
    snprintf(jl, sizeof jl, "%s", path_in("past.jsonl"));
    write_text(jl, "{\"text\":\"where is my order number\",\"intent\":\"order_status\","
                   "\"confidence\":0.5,\"language\":\"en\",\"message_id\":\"m1\"}\n"
                   "{\"text\":\"hello there good today\",\"intent\":\"order_status\","
                   "\"confidence\":0.9,\"language\":\"nl\"}\n"
                   "not json at all\n"
                   "{\"text\":\"i forgot my password for the app\",\"intent\":\"password\"}\n"
                   "{\"intent\":\"greeting\"}\n"
                   "{\"text\":\"hello\",\"intent\":\"greeting\",\"confidence\":7}\n"
                   "\n"
                   "{\"text\":\"when are you open on sunday\",\"intent\":\"\","
                   "\"confidence\":0.1}\r\n");
    const char *a2[] = {"eval", "--model", model, "--replay", jl, NULL};
    assert_int_equal(run_cmd(sb_nlu_cmd_eval, a2, NULL, &out, &err), 0);
    /* 4 usable lines: 3 malformed (not JSON, no text, confidence out of range) */
    assert_non_null(strstr(out, "messages 4 skipped_lines 3 (first at line 3)"));
    /* order_status and password agree; the greeting was recorded as order_status and the
     * opening-hours question as nothing (out of scope) */
    assert_non_null(strstr(out, "intent_agreement 0.5000 (2 of 4)"));
    assert_non_null(strstr(out, "out_of_scope before 0.2500 now 0.0000"));
    assert_non_null(strstr(out, "language_agreement 0.5000 (1 of 2)"));
    assert_non_null(strstr(out, "(3 with a confidence)"));
    assert_non_null(strstr(out, "order_status -> greeting (1)"));
    assert_non_null(strstr(out, "out_of_scope -> opening_hours (1)"));
    free(out);
    free(err);
    /* errors: no such file, nothing usable, both --data and --replay */
    char missing[512];
    snprintf(missing, sizeof missing, "%s", path_in("missing.jsonl"));
    const char *a3[] = {"eval", "--model", model, "--replay", missing, NULL};
    assert_int_equal(run_cmd(sb_nlu_cmd_eval, a3, NULL, NULL, &err), 1);
    assert_non_null(strstr(err, "missing.jsonl"));
    free(err);
    char junk[512];
    snprintf(junk, sizeof junk, "%s", path_in("junk.jsonl"));
    write_text(junk, "[1,2,3]\n{}\n");
    const char *a4[] = {"eval", "--model", model, "--replay", junk, NULL};
    assert_int_equal(run_cmd(sb_nlu_cmd_eval, a4, NULL, NULL, NULL), 1);
    const char *a5[] = {"eval", "--model", model, "--replay", jl, "--data", data, NULL};
    assert_int_equal(run_cmd(sb_nlu_cmd_eval, a5, NULL, NULL, NULL), 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_train_carves_and_refits),
        cmocka_unit_test(test_predict_format),
        cmocka_unit_test(test_replay),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
