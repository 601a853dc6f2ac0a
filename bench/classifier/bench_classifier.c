/* sb-bench-classifier: the figures of the intent classifier, measured on ../shared/data with
 * the real `switchboard train` and `switchboard predict` commands, side by side with Debian's
 * fastText when it is installed.
 *
 * CLINC150: train on train (+ oos_train as out-of-scope examples), thresholds and temperature
 * on val + oos_val only, then one pass over test + oos_test: in-scope accuracy (argmax), and at
 * the stored threshold in-scope accuracy and out-of-scope recall. BANKING77: every 10th line
 * of train is carved out as validation, the rest trains, test is scored once. Throughput:
 * `switchboard predict` over the CLINC150 test texts repeated to --lines lines (best of
 * --repeat runs, wall clock, one process, tokenizing and language id included), and the same
 * file through `fasttext predict-prob` of a model trained with -minn 3 -maxn 5 -wordNgrams 2
 * (and -epoch 25 -lr 0.5, without which fastText underfits this data; other options default).
 * Also training time, model size and peak RSS. Nothing is asserted: it prints. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

typedef struct run {
    int status;
    double seconds; /* wall clock */
    double cpu;     /* user + system CPU seconds of the child */
    long max_rss_kb;
} run_t;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Runs argv with stdin from in (NULL: /dev/null) and stdout to out (NULL: /dev/null),
 * stderr to err (NULL: inherited). */
static run_t run(char *const argv[], const char *in, const char *out, const char *err)
{
    run_t r = {.status = -1};
    double t0 = now_s();
    pid_t pid = fork();
    if (pid == 0) {
        int fi = open(in ? in : "/dev/null", O_RDONLY);
        int fo = open(out ? out : "/dev/null", O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fi < 0 || fo < 0) _exit(126);
        dup2(fi, 0);
        dup2(fo, 1);
        if (err) {
            int fe = open(err, O_WRONLY | O_CREAT | O_TRUNC, 0644);
            if (fe >= 0) dup2(fe, 2);
        }
        execvp(argv[0], argv);
        _exit(127);
    }
    if (pid < 0) return r;
    int st = 0;
    struct rusage ru;
    if (wait4(pid, &st, 0, &ru) != pid) return r;
    r.seconds = now_s() - t0;
    r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    r.max_rss_kb = ru.ru_maxrss;
    r.cpu = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
            (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
    return r;
}

/* A labelled file: texts and labels (the last tab separates them). */
typedef struct set {
    char **text, **label;
    size_t n;
} set_t;

static bool load_set(const char *path, set_t *s)
{
    FILE *f = fopen(path, "r");
    if (!f) return false;
    char *line = NULL;
    size_t cap = 0, alloc = 0;
    ssize_t len;
    memset(s, 0, sizeof *s);
    while ((len = getline(&line, &cap, f)) >= 0) {
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = '\0';
        char *tab = strrchr(line, '\t');
        if (!tab || line[0] == '#') continue;
        *tab = '\0';
        if (s->n == alloc) {
            alloc = alloc ? alloc * 2 : 1024;
            s->text = realloc(s->text, alloc * sizeof *s->text);
            s->label = realloc(s->label, alloc * sizeof *s->label);
            if (!s->text || !s->label) abort();
        }
        s->text[s->n] = strdup(line);
        s->label[s->n] = strdup(tab + 1);
        s->n++;
    }
    free(line);
    fclose(f);
    return s->n > 0;
}

static void free_set(set_t *s)
{
    for (size_t i = 0; i < s->n; i++) {
        free(s->text[i]);
        free(s->label[i]);
    }
    free(s->text);
    free(s->label);
}

/* Writes the texts of sets a then b (b may be NULL), repeated until lines lines. */
static bool write_texts(const char *path, const set_t *a, const set_t *b, size_t lines)
{
    FILE *f = fopen(path, "w");
    if (!f) return false;
    size_t total = a->n + (b ? b->n : 0), want = lines ? lines : total;
    for (size_t i = 0; i < want; i++) {
        size_t k = i % total;
        fprintf(f, "%s\n", k < a->n ? a->text[k] : b->text[k - a->n]);
    }
    return fclose(f) == 0;
}

/* Reads the first column of each line of path (predict or fastText output). */
static char **read_first_col(const char *path, size_t *n)
{
    FILE *f = fopen(path, "r");
    if (!f) return NULL;
    char **v = NULL, *line = NULL;
    size_t cap = 0, alloc = 0;
    ssize_t len;
    *n = 0;
    while ((len = getline(&line, &cap, f)) >= 0) {
        line[strcspn(line, "\t \n")] = '\0';
        if (*n == alloc) {
            alloc = alloc ? alloc * 2 : 1024;
            v = realloc(v, alloc * sizeof *v);
            if (!v) abort();
        }
        v[(*n)++] = strdup(line);
    }
    free(line);
    fclose(f);
    return v;
}

static void free_col(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

static bool is_rejected(const char *intent)
{
    return strcmp(intent, "out_of_scope") == 0 || strcmp(intent, "oos") == 0;
}

static long file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (long)st.st_size : -1;
}

/* Writes a fastText training file (__label__<intent> text). */
static bool write_fasttext(const char *path, const set_t *s)
{
    FILE *f = fopen(path, "w");
    if (!f) return false;
    for (size_t i = 0; i < s->n; i++)
        fprintf(f, "__label__%s %s\n", s->label[i], s->text[i]);
    return fclose(f) == 0;
}

static double accuracy_of(char **pred, size_t np, const set_t *gold, const char *prefix)
{
    size_t right = 0, pl = strlen(prefix);
    for (size_t i = 0; i < gold->n && i < np; i++) {
        const char *p = pred[i];
        if (pl && strncmp(p, prefix, pl) == 0) p += pl;
        if (strcmp(p, gold->label[i]) == 0) right++;
    }
    return gold->n ? (double)right / (double)gold->n : 0;
}

static bool has_program(const char *name)
{
    const char *path = getenv("PATH");
    if (strchr(name, '/')) return access(name, X_OK) == 0;
    char buf[PATH_MAX];
    while (path && *path) {
        const char *e = strchr(path, ':');
        size_t l = e ? (size_t)(e - path) : strlen(path);
        snprintf(buf, sizeof buf, "%.*s/%s", (int)l, path, name);
        if (access(buf, X_OK) == 0) return true;
        path = e ? e + 1 : NULL;
    }
    return false;
}

static void usage(void)
{
    fprintf(stderr, "usage: sb-bench-classifier [--shared DIR] [--bin DIR] [--work DIR]\n"
                    "                           [--lines N] [--repeat N] [--fasttext PATH]\n"
                    "  defaults: $SB_SHARED_DIR or ../shared, $SB_BIN_DIR, a temp dir,\n"
                    "  200000 lines, best of 3 runs, fasttext from PATH (skipped if absent)\n");
}

int main(int argc, char **argv)
{
    const char *shared = getenv("SB_SHARED_DIR") ? getenv("SB_SHARED_DIR") : "../shared";
    const char *bindir = getenv("SB_BIN_DIR") ? getenv("SB_BIN_DIR") : "build/bin";
    const char *fasttext = "fasttext";
    char work[PATH_MAX] = "";
    size_t lines = 200000;
    int repeat = 3;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--shared") && i + 1 < argc)
            shared = argv[++i];
        else if (!strcmp(argv[i], "--bin") && i + 1 < argc)
            bindir = argv[++i];
        else if (!strcmp(argv[i], "--work") && i + 1 < argc)
            snprintf(work, sizeof work, "%s", argv[++i]);
        else if (!strcmp(argv[i], "--lines") && i + 1 < argc)
            lines = strtoul(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--repeat") && i + 1 < argc)
            repeat = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--fasttext") && i + 1 < argc)
            fasttext = argv[++i];
        else {
            usage();
            return 2;
        }
    }
    if (repeat < 1) repeat = 1;
    if (work[0] && mkdir(work, 0755) != 0 && errno != EEXIST) {
        perror(work);
        return 1;
    }
    if (!work[0]) {
        snprintf(work, sizeof work, "/tmp/sb-bench-classifier-XXXXXX");
        if (!mkdtemp(work)) {
            perror("mkdtemp");
            return 1;
        }
    }
    char sw[PATH_MAX], p[16][PATH_MAX + 64];
    snprintf(sw, sizeof sw, "%s/switchboard", bindir);
    if (access(sw, X_OK) != 0) {
        fprintf(stderr, "sb-bench-classifier: %s not found (build first)\n", sw);
        return 1;
    }
    enum { TRAIN, VAL, OOS_VAL, OOS_TRAIN, TEST, OOS_TEST, B_TRAIN, B_TEST };
    static const char *const files[] = {"clinc150/train.tsv",   "clinc150/val.tsv",
                                        "clinc150/oos_val.tsv", "clinc150/oos_train.tsv",
                                        "clinc150/test.tsv",    "clinc150/oos_test.tsv",
                                        "banking77/train.tsv",  "banking77/test.tsv"};
    for (int i = 0; i < 8; i++)
        snprintf(p[i], sizeof p[i], "%s/data/%s", shared, files[i]);
    set_t test, oos_test, b_train, b_test;
    if (!load_set(p[TEST], &test) || !load_set(p[OOS_TEST], &oos_test) ||
        !load_set(p[B_TRAIN], &b_train) || !load_set(p[B_TEST], &b_test)) {
        fprintf(stderr, "sb-bench-classifier: cannot read the data sets under %s/data\n", shared);
        return 1;
    }
    char model[PATH_MAX + 32], out[PATH_MAX + 32], texts[PATH_MAX + 32], big[PATH_MAX + 32],
        log[PATH_MAX + 32];
    snprintf(model, sizeof model, "%s/clinc.model", work);
    snprintf(out, sizeof out, "%s/predict.out", work);
    snprintf(texts, sizeof texts, "%s/clinc_test.txt", work);
    snprintf(big, sizeof big, "%s/big.txt", work);
    snprintf(log, sizeof log, "%s/train.log", work);

    printf("== classifier benchmark (data %s/data, work %s)\n", shared, work);
    /* ---- CLINC150 ---- */
    char *targv[] = {sw,      "train",     "--data",   p[TRAIN],      "--val",
                     p[VAL],  "--oos-val", p[OOS_VAL], "--oos-train", p[OOS_TRAIN],
                     "--out", model,       NULL};
    run_t tr = run(targv, NULL, NULL, log);
    if (tr.status != 0) {
        fprintf(stderr, "sb-bench-classifier: training failed, see %s\n", log);
        return 1;
    }
    write_texts(texts, &test, &oos_test, 0);
    char *pargv0[] = {sw, "predict", "--model", model, "--threshold", "0", NULL};
    char *pargv[] = {sw, "predict", "--model", model, NULL};
    size_t n0 = 0, n1 = 0;
    run(pargv0, texts, out, NULL);
    char **argmax = read_first_col(out, &n0);
    run(pargv, texts, out, NULL);
    char **thr = read_first_col(out, &n1);
    if (!argmax || !thr || n0 != test.n + oos_test.n || n1 != n0) {
        fprintf(stderr, "sb-bench-classifier: predict output incomplete\n");
        return 1;
    }
    double acc = accuracy_of(argmax, n0, &test, "");
    size_t in_right = 0, oos_rej = 0;
    for (size_t i = 0; i < test.n; i++)
        if (strcmp(thr[i], test.label[i]) == 0) in_right++;
    for (size_t i = 0; i < oos_test.n; i++)
        if (is_rejected(thr[test.n + i])) oos_rej++;
    printf("clinc150  in-scope accuracy (argmax)        %.2f %%   (target >= 92)\n", 100 * acc);
    printf("clinc150  at the stored threshold: in-scope accuracy %.2f %% (target >= 86), "
           "out-of-scope recall %.2f %% (target >= 90)\n",
           100.0 * (double)in_right / (double)test.n, 100.0 * (double)oos_rej / (double)oos_test.n);
    printf("clinc150  training %.2f s wall, %.2f s CPU (target <= 10), model %.2f MB "
           "(target <= 16), peak RSS %.1f MB\n",
           tr.seconds, tr.cpu, (double)file_size(model) / 1e6, (double)tr.max_rss_kb / 1024.0);
    free_col(argmax, n0);
    free_col(thr, n1);

    /* ---- BANKING77 ---- */
    char btr[PATH_MAX + 32], bval[PATH_MAX + 32], bmodel[PATH_MAX + 32];
    snprintf(btr, sizeof btr, "%s/b77_train.tsv", work);
    snprintf(bval, sizeof bval, "%s/b77_val.tsv", work);
    snprintf(bmodel, sizeof bmodel, "%s/b77.model", work);
    FILE *ft = fopen(btr, "w"), *fv = fopen(bval, "w");
    for (size_t i = 0; ft && fv && i < b_train.n; i++)
        fprintf(i % 10 == 9 ? fv : ft, "%s\t%s\n", b_train.text[i], b_train.label[i]);
    if (ft) fclose(ft);
    if (fv) fclose(fv);
    char *bargv[] = {sw, "train", "--data", btr, "--val", bval, "--out", bmodel, NULL};
    run_t btrain = run(bargv, NULL, NULL, log);
    char btexts[PATH_MAX + 32];
    snprintf(btexts, sizeof btexts, "%s/b77_test.txt", work);
    write_texts(btexts, &b_test, NULL, 0);
    char *bpargv[] = {sw, "predict", "--model", bmodel, "--threshold", "0", NULL};
    run(bpargv, btexts, out, NULL);
    size_t nb = 0;
    char **bpred = read_first_col(out, &nb);
    double bacc = bpred ? accuracy_of(bpred, nb, &b_test, "") : 0;
    printf("banking77 accuracy %.2f %% (target >= 92), training %.2f s\n", 100 * bacc,
           btrain.seconds);
    if (bpred) free_col(bpred, nb);

    /* ---- throughput ---- */
    set_t none = {0};
    write_texts(big, &test, &none, lines);
    run_t best = {.seconds = 1e9};
    for (int r = 0; r < repeat; r++) {
        run_t t = run(pargv, big, NULL, NULL);
        if (t.status == 0 && t.seconds < best.seconds) best = t;
    }
    double ours = (double)lines / best.seconds;
    printf("predict   %zu lines in %.3f s wall (%.3f s CPU): %.0f messages/s (target >= "
           "100000), peak RSS %.1f MB\n",
           lines, best.seconds, best.cpu, ours, (double)best.max_rss_kb / 1024.0);

    /* ---- fastText, side by side ---- */
    if (!has_program(fasttext)) {
        printf("fasttext  not installed: comparison skipped (apt-get install fasttext)\n");
    } else {
        char ftrain[PATH_MAX + 32], fmodel[PATH_MAX + 32], fbin[PATH_MAX + 40];
        snprintf(ftrain, sizeof ftrain, "%s/ft_train.txt", work);
        snprintf(fmodel, sizeof fmodel, "%s/ft", work);
        snprintf(fbin, sizeof fbin, "%s/ft.bin", work);
        set_t clinc_train;
        load_set(p[TRAIN], &clinc_train);
        write_fasttext(ftrain, &clinc_train);
        free_set(&clinc_train);
        char *fargv[] = {(char *)fasttext, "supervised", "-input", ftrain, "-output",     fmodel,
                         "-minn",          "3",          "-maxn",  "5",    "-wordNgrams", "2",
                         "-epoch",         "25",         "-lr",    "0.5",  "-thread",     "1",
                         "-verbose",       "0",          NULL};
        run_t ftr = run(fargv, NULL, NULL, log);
        char ftexts[PATH_MAX + 32];
        snprintf(ftexts, sizeof ftexts, "%s/ft_test.txt", work);
        write_texts(ftexts, &test, NULL, 0);
        char *fpargv[] = {(char *)fasttext, "predict-prob", fbin, ftexts, NULL};
        run(fpargv, NULL, out, NULL);
        size_t nf = 0;
        char **fpred = read_first_col(out, &nf);
        double facc = fpred ? accuracy_of(fpred, nf, &test, "__label__") : 0;
        if (fpred) free_col(fpred, nf);
        char *fbig[] = {(char *)fasttext, "predict-prob", fbin, big, NULL};
        run_t fbest = {.seconds = 1e9};
        for (int r = 0; r < repeat; r++) {
            run_t t = run(fbig, NULL, NULL, NULL);
            if (t.status == 0 && t.seconds < fbest.seconds) fbest = t;
        }
        double theirs = (double)lines / fbest.seconds;
        /* the fixed cost of each run (loading the model), measured on a one-line input */
        char one[PATH_MAX + 32];
        snprintf(one, sizeof one, "%s/one.txt", work);
        write_texts(one, &test, NULL, 1);
        char *fone[] = {(char *)fasttext, "predict-prob", fbin, one, NULL};
        run_t fload = run(fone, NULL, NULL, NULL);
        run_t oload = run(pargv, one, NULL, NULL);
        printf("fasttext  clinc150 in-scope accuracy %.2f %% (ours %.2f %%), training %.2f s, "
               "model %.1f MB\n",
               100 * facc, 100 * acc, ftr.seconds, (double)file_size(fbin) / 1e6);
        printf("fasttext  predict-prob %zu lines in %.3f s wall (%.3f s CPU): %.0f messages/s, "
               "peak RSS %.1f MB\n",
               lines, fbest.seconds, fbest.cpu, theirs, (double)fbest.max_rss_kb / 1024.0);
        printf("speed-up  switchboard predict / fasttext predict-prob = %.2fx (target >= 4)\n",
               ours / theirs);
        printf("load      one-line run: switchboard %.3f s, fasttext %.3f s (model load, "
               "included above)\n",
               oload.seconds, fload.seconds);
    }
    free_set(&test);
    free_set(&oos_test);
    free_set(&b_train);
    free_set(&b_test);
    return 0;
}
