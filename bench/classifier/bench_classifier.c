/* sb-bench-classifier: the figures of the intent classifier, measured on ../shared/data with
 * the real `switchboard train` and `switchboard predict` commands, side by side with Debian's
 * fastText when it is installed.
 *
 * CLINC150: train on train (+ oos_train as out-of-scope examples), thresholds and temperature
 * on val + oos_val only, then one pass over test + oos_test: in-scope accuracy (argmax), and at
 * the stored threshold in-scope accuracy and out-of-scope recall, for --seeds training seeds
 * (the spread shows how stable the stored threshold is). BANKING77: `switchboard train` (it
 * carves 10 % of train out as validation itself, calibrates on it and refits on all of train)
 * with default options, then with --hidden-chars, the one option ten folds of train chose for
 * this data set; test scored once per seed. Generalization: the same default training on
 * intent sets built from CLINC150's structure that nothing was tuned on: --subsets random
 * draws of 25 intents with only 20 training examples each (a business team's first data set),
 * scored on those intents' test rows. Language identification: the language column of
 * `switchboard predict` on data/demo/langid_test.tsv (held out, never used for tuning).
 * Throughput: `switchboard predict` over the CLINC150 test texts repeated to --lines lines
 * (best of --repeat runs, wall clock, one process, tokenizing and language id included), and
 * the same file through `fasttext predict-prob` (the two take turns, run for run) of a model
 * trained with -minn 3 -maxn 5 -wordNgrams 2 (and -epoch 25 -lr 0.5, without which fastText
 * underfits this data; other options default). Also training time, model size and peak RSS.
 * Nothing is asserted: it prints. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
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
    fprintf(stderr,
            "usage: sb-bench-classifier [--shared DIR] [--bin DIR] [--work DIR]\n"
            "                           [--lines N] [--repeat N] [--fasttext PATH]\n"
            "                           [--seeds N] [--subsets N] [--source DIR]\n"
            "  defaults: $SB_SHARED_DIR or ../shared, $SB_BIN_DIR, a temp dir,\n"
            "  200000 lines, best of 5 alternating runs, fasttext from PATH (skipped if absent),\n"
            "  3 CLINC150 training seeds, 3 generalization subsets, $SB_SOURCE_DIR or .\n");
}

int main(int argc, char **argv)
{
    const char *shared = getenv("SB_SHARED_DIR") ? getenv("SB_SHARED_DIR") : "../shared";
    const char *bindir = getenv("SB_BIN_DIR") ? getenv("SB_BIN_DIR") : "build/bin";
    const char *fasttext = "fasttext";
    const char *source = getenv("SB_SOURCE_DIR") ? getenv("SB_SOURCE_DIR") : ".";
    char work[PATH_MAX] = "";
    size_t lines = 200000;
    int repeat = 5, seeds = 3, subsets = 3;
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
        else if (!strcmp(argv[i], "--seeds") && i + 1 < argc)
            seeds = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--subsets") && i + 1 < argc)
            subsets = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--fasttext") && i + 1 < argc)
            fasttext = argv[++i];
        else if (!strcmp(argv[i], "--source") && i + 1 < argc)
            source = argv[++i];
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
    /* the same training with other seeds: how much the figures at the threshold move */
    double lo_in = 100.0 * (double)in_right / (double)test.n, hi_in = lo_in;
    double lo_rec = 100.0 * (double)oos_rej / (double)oos_test.n, hi_rec = lo_rec;
    double lo_acc = 100 * acc, hi_acc = lo_acc;
    for (int sd = 2; sd <= seeds; sd++) {
        char seed[16], smodel[PATH_MAX + 48];
        snprintf(seed, sizeof seed, "%d", sd);
        snprintf(smodel, sizeof smodel, "%s/clinc-seed%d.model", work, sd);
        char *sargv[] = {sw,      "train",     "--data",   p[TRAIN],      "--val",
                         p[VAL],  "--oos-val", p[OOS_VAL], "--oos-train", p[OOS_TRAIN],
                         "--out", smodel,      "--seed",   seed,          NULL};
        if (run(sargv, NULL, NULL, log).status != 0) continue;
        char *spargv[] = {sw, "predict", "--model", smodel, NULL};
        char *spargv0[] = {sw, "predict", "--model", smodel, "--threshold", "0", NULL};
        size_t ns = 0, ns0 = 0;
        run(spargv, texts, out, NULL);
        char **sp = read_first_col(out, &ns);
        run(spargv0, texts, out, NULL);
        char **sp0 = read_first_col(out, &ns0);
        if (!sp || !sp0 || ns != test.n + oos_test.n || ns0 != ns) continue;
        size_t ir = 0, orj = 0;
        for (size_t i = 0; i < test.n; i++)
            if (strcmp(sp[i], test.label[i]) == 0) ir++;
        for (size_t i = 0; i < oos_test.n; i++)
            if (is_rejected(sp[test.n + i])) orj++;
        double a = 100 * accuracy_of(sp0, ns0, &test, "");
        double in = 100.0 * (double)ir / (double)test.n,
               rc = 100.0 * (double)orj / (double)oos_test.n;
        lo_in = in < lo_in ? in : lo_in;
        hi_in = in > hi_in ? in : hi_in;
        lo_rec = rc < lo_rec ? rc : lo_rec;
        hi_rec = rc > hi_rec ? rc : hi_rec;
        lo_acc = a < lo_acc ? a : lo_acc;
        hi_acc = a > hi_acc ? a : hi_acc;
        free_col(sp, ns);
        free_col(sp0, ns0);
    }
    if (seeds > 1)
        printf("clinc150  over seeds 1..%d: argmax %.2f-%.2f %%, at the threshold in-scope "
               "%.2f-%.2f %%, out-of-scope recall %.2f-%.2f %%\n",
               seeds, lo_acc, hi_acc, lo_in, hi_in, lo_rec, hi_rec);
    printf("clinc150  training %.2f s wall, %.2f s CPU (target <= 10), model %.2f MB "
           "(target <= 16), peak RSS %.1f MB\n",
           tr.seconds, tr.cpu, (double)file_size(model) / 1e6, (double)tr.max_rss_kb / 1024.0);
    free_col(argmax, n0);
    free_col(thr, n1);

    /* ---- BANKING77: the trainer carves its own validation; default options, then the
     * option ten folds of train chose for it (docs/classifier.md) ---- */
    char bmodel[PATH_MAX + 32], btexts[PATH_MAX + 32];
    snprintf(bmodel, sizeof bmodel, "%s/b77.model", work);
    snprintf(btexts, sizeof btexts, "%s/b77_test.txt", work);
    write_texts(btexts, &b_test, NULL, 0);
    const char *const b_opts[] = {NULL, "--hidden-chars"};
    for (size_t v = 0; v < sizeof b_opts / sizeof b_opts[0]; v++) {
        double acc1 = 0, blo = 1, bhi = 0;
        run_t btrain = {0};
        for (int sd = 1; sd <= seeds; sd++) {
            char seed[16];
            snprintf(seed, sizeof seed, "%d", sd);
            char *bargv[] = {sw,     "train",  "--data", p[B_TRAIN],        "--out",
                             bmodel, "--seed", seed,     (char *)b_opts[v], NULL};
            run_t t = run(bargv, NULL, NULL, log);
            if (sd == 1) btrain = t;
            char *bpargv[] = {sw, "predict", "--model", bmodel, "--threshold", "0", NULL};
            run(bpargv, btexts, out, NULL);
            size_t nb = 0;
            char **bpred = read_first_col(out, &nb);
            double a = bpred ? accuracy_of(bpred, nb, &b_test, "") : 0;
            if (bpred) free_col(bpred, nb);
            if (sd == 1) acc1 = a;
            blo = a < blo ? a : blo;
            bhi = a > bhi ? a : bhi;
        }
        printf("banking77 accuracy %.2f %% (target >= 92), %s, training %.2f s CPU, "
               "model %.2f MB\n",
               100 * acc1, b_opts[v] ? b_opts[v] : "default options", btrain.cpu,
               (double)file_size(bmodel) / 1e6);
        if (seeds > 1)
            printf("banking77 over seeds 1..%d: %.2f-%.2f %%\n", seeds, 100 * blo, 100 * bhi);
    }

    /* ---- generalization: default options on intent sets nothing was tuned on ---- */
    set_t c_train;
    if (subsets > 0 && load_set(p[TRAIN], &c_train)) {
        double sum = 0;
        int done = 0;
        for (int k = 0; k < subsets; k++) {
            /* 25 intents drawn with a fixed generator, 20 training examples each */
            char gtr[PATH_MAX + 48], gte[PATH_MAX + 48], gmodel[PATH_MAX + 48];
            snprintf(gtr, sizeof gtr, "%s/gen%d_train.tsv", work, k);
            snprintf(gte, sizeof gte, "%s/gen%d_test.txt", work, k);
            snprintf(gmodel, sizeof gmodel, "%s/gen%d.model", work, k);
            const char *labels[150];
            size_t nl = 0;
            for (size_t i = 0; i < c_train.n && nl < 150; i++) {
                size_t j;
                for (j = 0; j < nl; j++)
                    if (strcmp(labels[j], c_train.label[i]) == 0) break;
                if (j == nl) labels[nl++] = c_train.label[i];
            }
            uint64_t rng = 0x9e3779b97f4a7c15ull * (uint64_t)(k + 1);
            for (size_t i = nl; i > 1; i--) { /* Fisher-Yates with xorshift */
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                size_t j = (size_t)(rng % i);
                const char *t = labels[i - 1];
                labels[i - 1] = labels[j];
                labels[j] = t;
            }
            size_t pick = nl < 25 ? nl : 25;
            FILE *ft = fopen(gtr, "w");
            size_t per[25] = {0};
            for (size_t i = 0; ft && i < c_train.n; i++)
                for (size_t j = 0; j < pick; j++)
                    if (strcmp(c_train.label[i], labels[j]) == 0 && per[j] < 20) {
                        fprintf(ft, "%s\t%s\n", c_train.text[i], c_train.label[i]);
                        per[j]++;
                    }
            if (ft) fclose(ft);
            set_t gtest = {0};
            size_t alloc = 0;
            for (size_t i = 0; i < test.n; i++)
                for (size_t j = 0; j < pick; j++)
                    if (strcmp(test.label[i], labels[j]) == 0) {
                        if (gtest.n == alloc) {
                            alloc = alloc ? alloc * 2 : 256;
                            gtest.text = realloc(gtest.text, alloc * sizeof *gtest.text);
                            gtest.label = realloc(gtest.label, alloc * sizeof *gtest.label);
                            if (!gtest.text || !gtest.label) abort();
                        }
                        gtest.text[gtest.n] = strdup(test.text[i]);
                        gtest.label[gtest.n] = strdup(test.label[i]);
                        gtest.n++;
                    }
            write_texts(gte, &gtest, NULL, 0);
            char *gargv[] = {sw, "train", "--data", gtr, "--out", gmodel, NULL};
            char *gpargv[] = {sw, "predict", "--model", gmodel, "--threshold", "0", NULL};
            if (run(gargv, NULL, NULL, log).status == 0 &&
                run(gpargv, gte, out, NULL).status == 0) {
                size_t ng = 0;
                char **gp = read_first_col(out, &ng);
                double ga = gp ? accuracy_of(gp, ng, &gtest, "") : 0;
                printf("general   subset %d: %zu CLINC150 intents x 20 examples, default options: "
                       "accuracy %.2f %% on their %zu test rows\n",
                       k + 1, pick, 100 * ga, gtest.n);
                sum += ga;
                done++;
                if (gp) free_col(gp, ng);
            }
            free_set(&gtest);
        }
        if (done) printf("general   mean over %d subsets %.2f %%\n", done, 100 * sum / done);
        free_set(&c_train);
    }

    /* ---- language identification on the held-out set ---- */
    char lpath[PATH_MAX + 64], ltexts[PATH_MAX + 32];
    snprintf(lpath, sizeof lpath, "%s/data/demo/langid_test.tsv", source);
    snprintf(ltexts, sizeof ltexts, "%s/langid.txt", work);
    set_t lset;
    if (load_set(lpath, &lset)) {
        write_texts(ltexts, &lset, NULL, 0);
        run(pargv, ltexts, out, NULL);
        FILE *fo = fopen(out, "r");
        char line[4096];
        size_t li = 0, lright = 0;
        while (fo && fgets(line, sizeof line, fo) && li < lset.n) {
            char *c1 = strchr(line, '\t'), *c2 = c1 ? strchr(c1 + 1, '\t') : NULL;
            char *c3 = c2 ? strchr(c2 + 1, '\t') : NULL;
            if (c2 && c3 && (size_t)(c3 - c2 - 1) == strlen(lset.label[li]) &&
                strncmp(c2 + 1, lset.label[li], (size_t)(c3 - c2 - 1)) == 0)
                lright++;
            li++;
        }
        if (fo) fclose(fo);
        printf("langid    held-out short messages (en nl fr de es): %zu/%zu = %.2f %% "
               "(target >= 98)\n",
               lright, lset.n, 100.0 * (double)lright / (double)lset.n);
        free_set(&lset);
    } else {
        printf("langid    %s not found: skipped\n", lpath);
    }

    /* ---- throughput, side by side with fastText ---- */
    set_t none = {0};
    write_texts(big, &test, &none, lines);
    bool ft = has_program(fasttext);
    char fbin[PATH_MAX + 40];
    double facc = 0;
    run_t ftr = {0};
    snprintf(fbin, sizeof fbin, "%s/ft.bin", work);
    if (ft) {
        char ftrain[PATH_MAX + 32], fmodel[PATH_MAX + 32];
        snprintf(ftrain, sizeof ftrain, "%s/ft_train.txt", work);
        snprintf(fmodel, sizeof fmodel, "%s/ft", work);
        set_t clinc_train;
        load_set(p[TRAIN], &clinc_train);
        write_fasttext(ftrain, &clinc_train);
        free_set(&clinc_train);
        char *fargv[] = {(char *)fasttext, "supervised", "-input", ftrain, "-output",     fmodel,
                         "-minn",          "3",          "-maxn",  "5",    "-wordNgrams", "2",
                         "-epoch",         "25",         "-lr",    "0.5",  "-thread",     "1",
                         "-verbose",       "0",          NULL};
        ftr = run(fargv, NULL, NULL, log);
        char ftexts[PATH_MAX + 32];
        snprintf(ftexts, sizeof ftexts, "%s/ft_test.txt", work);
        write_texts(ftexts, &test, NULL, 0);
        char *fpargv[] = {(char *)fasttext, "predict-prob", fbin, ftexts, NULL};
        run(fpargv, NULL, out, NULL);
        size_t nf = 0;
        char **fpred = read_first_col(out, &nf);
        facc = fpred ? accuracy_of(fpred, nf, &test, "__label__") : 0;
        if (fpred) free_col(fpred, nf);
    }
    /* the two programs take turns, so that both see the same moments of a busy machine;
     * the best run of each counts */
    char *fbig[] = {(char *)fasttext, "predict-prob", fbin, big, NULL};
    run_t best = {.seconds = 1e9}, fbest = {.seconds = 1e9};
    for (int r = 0; r < repeat; r++) {
        run_t t = run(pargv, big, NULL, NULL);
        if (t.status == 0 && t.seconds < best.seconds) best = t;
        if (!ft) continue;
        t = run(fbig, NULL, NULL, NULL);
        if (t.status == 0 && t.seconds < fbest.seconds) fbest = t;
    }
    double ours = (double)lines / best.seconds;
    printf("predict   %zu lines in %.3f s wall (%.3f s CPU): %.0f messages/s (target >= "
           "100000), peak RSS %.1f MB\n",
           lines, best.seconds, best.cpu, ours, (double)best.max_rss_kb / 1024.0);
    if (!ft) {
        printf("fasttext  not installed: comparison skipped (apt-get install fasttext)\n");
    } else {
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
        printf("speed-up  switchboard predict / fasttext predict-prob = %.2fx (target >= 4), "
               "best of %d alternating runs each\n",
               ours / theirs, repeat);
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
