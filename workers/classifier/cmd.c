/* The `switchboard train|predict|eval` commands: thin command-line shells over sbnlu.
 *
 * train:   --data files → dataset → sb_nlu_train (threshold from --val/--oos-val) → model file
 * predict: model (+ optional rules) → one stdin line in, one
 *          `intent<TAB>confidence<TAB>language<TAB>sentiment` line out
 * eval:    model + labelled test TSV (+ out-of-scope TSV) → accuracy, macro-F1, out-of-scope
 *          recall, coverage and accuracy-on-accepted at the stored threshold and over a sweep,
 *          most confused pairs, throughput; or, with --replay, a JSONL export of past
 *          classifications → agreement of the model with them and confidence shifts. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "nlu_internal.h"
#include "sb/util.h"

#define MAX_DATA_FILES 64

/* ---- argument helpers ------------------------------------------------------------------- */

/* Returns the value of option argv[*i] (either "--opt=value" or "--opt value"), advancing *i;
 * NULL when argv[*i] is not opt. *missing is set when the value is absent. */
static const char *opt_value(int argc, char **argv, int *i, const char *opt, bool *missing)
{
    size_t n = strlen(opt);
    const char *a = argv[*i];
    if (strncmp(a, opt, n) != 0) return NULL;
    if (a[n] == '=') return a + n + 1;
    if (a[n] != '\0') return NULL;
    if (*i + 1 >= argc) {
        *missing = true;
        return NULL;
    }
    (*i)++;
    return argv[*i];
}

static bool parse_u64(const char *s, uint64_t max, uint64_t *out)
{
    char *end;
    errno = 0;
    if (!s || !*s || *s == '-') return false;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || v > max) return false;
    *out = v;
    return true;
}

static bool parse_float(const char *s, double lo, double hi, float *out)
{
    char *end;
    errno = 0;
    if (!s || !*s) return false;
    double v = strtod(s, &end);
    if (errno || *end || !(v >= lo && v <= hi)) return false;
    *out = (float)v;
    return true;
}

/* ---- train ------------------------------------------------------------------------------ */

static void train_usage(FILE *f)
{
    fprintf(f, "usage: switchboard train --data FILE [--data FILE ...] --out MODEL\n"
               "                         [--val FILE] [--oos-val FILE] [--seed N] [--epochs N]\n"
               "                         [--lr X] [--l2 X] [--min-count N] [--threshold T]\n"
               "                         [--hash-bits N] [--char-ngrams MIN-MAX] [--stem]\n"
               "                         [--char-weight X] [--bigram-weight X] [--no-bigrams]\n"
               "                         [--keep-accents] [--oos-train FILE] [--oos-weight X]\n"
               "                         [--dropout P] [--ensemble K] [--val-split P]\n"
               "                         [--no-refit] [--knn-k N] [--knn-weight X]\n"
               "                         [--hidden N] [--hidden-lr X] [--hidden-init X]\n"
               "                         [--hidden-chars]\n"
               "                         [--augment N] [--augment-p P]\n"
               "                         [--no-quantize] [--no-word-sums] [--verbose]\n"
               "  FILE is TSV (text<TAB>intent) or YAML (.yml/.yaml, Rasa-like nlu: list).\n"
               "  Without --val, --val-split (default 0.1) of each intent's examples is set\n"
               "  aside to calibrate on, then the model is refit on everything (--no-refit:\n"
               "  not). With --oos-val the rejection threshold maximizing\n"
               "  (in-scope accuracy + out-of-scope recall) / 2 is stored in the model.\n"
               "  --augment N adds N copies of each example whose English words are replaced,\n"
               "  each with probability --augment-p (0.5), by a WordNet synonym that the\n"
               "  examples use (the example memory keeps the real examples only).\n"
               "  --hidden-chars lets the hidden layer read the char n-grams and stems too,\n"
               "  not only the words: a bigger model that trains and predicts more slowly\n"
               "  (no word sums), for fine-grained intents (see docs/classifier.md).\n");
}

int sb_nlu_cmd_train(int argc, char **argv)
{
    int status = 1;
    const char *data[MAX_DATA_FILES];
    size_t ndata = 0;
    const char *val = NULL, *oos = NULL, *out = NULL, *oos_train = NULL;
    sb_nlu_train_opts_t o;
    sb_nlu_train_opts_default(&o);
    sb_nlu_dataset_t ds = {0}, vds = {0}, ods = {0}, ots = {0}, cds = {0};
    float val_split = 0.1f;
    bool refit = true, carved = false;
    sb_nlu_model_t *m = NULL;
    char err[512] = "";

    for (int i = 1; i < argc; i++) {
        bool missing = false;
        const char *v, *arg = argv[i];
        uint64_t u;
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            train_usage(stdout);
            return 0;
        } else if ((v = opt_value(argc, argv, &i, "--data", &missing))) {
            if (ndata == MAX_DATA_FILES) {
                fprintf(stderr, "train: at most %d --data files\n", MAX_DATA_FILES);
                return 2;
            }
            data[ndata++] = v;
        } else if ((v = opt_value(argc, argv, &i, "--val", &missing))) {
            val = v;
        } else if ((v = opt_value(argc, argv, &i, "--oos-val", &missing))) {
            oos = v;
        } else if ((v = opt_value(argc, argv, &i, "--oos-train", &missing))) {
            oos_train = v;
        } else if ((v = opt_value(argc, argv, &i, "--dropout", &missing))) {
            if (!parse_float(v, 0, 0.8, &o.dropout)) goto bad_value;
        } else if ((v = opt_value(argc, argv, &i, "--ensemble", &missing))) {
            if (!parse_u64(v, 16, &u) || u == 0) goto bad_value;
            o.ensemble = (uint32_t)u;
        } else if ((v = opt_value(argc, argv, &i, "--val-split", &missing))) {
            if (!parse_float(v, 0, 0.5, &val_split)) goto bad_value;
        } else if (strcmp(argv[i], "--no-refit") == 0) {
            refit = false;
        } else if ((v = opt_value(argc, argv, &i, "--knn-k", &missing))) {
            if (!parse_u64(v, 64, &u) || u == 0) goto bad_value;
            o.knn_k = (uint32_t)u;
        } else if ((v = opt_value(argc, argv, &i, "--knn-weight", &missing))) {
            if (!parse_float(v, 0, 1, &o.knn_weight)) goto bad_value;
        } else if ((v = opt_value(argc, argv, &i, "--hidden", &missing))) {
            if (!parse_u64(v, 256, &u)) goto bad_value;
            o.hidden = (uint32_t)u;
            o.hidden_auto = false;
        } else if ((v = opt_value(argc, argv, &i, "--hidden-lr", &missing))) {
            if (!parse_float(v, 1e-6, 100, &o.hidden_lr)) goto bad_value;
        } else if ((v = opt_value(argc, argv, &i, "--hidden-init", &missing))) {
            if (!parse_float(v, 1e-6, 100, &o.hidden_init)) goto bad_value;
        } else if ((v = opt_value(argc, argv, &i, "--oos-weight", &missing))) {
            if (!parse_float(v, 0.01, 100, &o.oos_weight)) goto bad_value;
        } else if ((v = opt_value(argc, argv, &i, "--out", &missing))) {
            out = v;
        } else if ((v = opt_value(argc, argv, &i, "--seed", &missing))) {
            if (!parse_u64(v, UINT64_MAX, &o.seed)) goto bad_value;
        } else if ((v = opt_value(argc, argv, &i, "--epochs", &missing))) {
            if (!parse_u64(v, 1000, &u) || u == 0) goto bad_value;
            o.epochs = (uint32_t)u;
        } else if ((v = opt_value(argc, argv, &i, "--min-count", &missing))) {
            if (!parse_u64(v, 1000000, &u) || u == 0) goto bad_value;
            o.min_count = (uint32_t)u;
        } else if ((v = opt_value(argc, argv, &i, "--hash-bits", &missing))) {
            if (!parse_u64(v, 30, &u) || u < 16) goto bad_value;
            o.feat.hash_bits = (uint32_t)u;
        } else if ((v = opt_value(argc, argv, &i, "--char-ngrams", &missing))) {
            unsigned a, b;
            if (sscanf(v, "%u-%u", &a, &b) != 2 || b > 6 || (b > 0 && (a < 1 || a > b)))
                goto bad_value;
            o.feat.char_min = a;
            o.feat.char_max = b;
        } else if ((v = opt_value(argc, argv, &i, "--lr", &missing))) {
            if (!parse_float(v, 1e-6, 100, &o.lr)) goto bad_value;
        } else if ((v = opt_value(argc, argv, &i, "--l2", &missing))) {
            if (!parse_float(v, 0, 10, &o.l2)) goto bad_value;
        } else if ((v = opt_value(argc, argv, &i, "--threshold", &missing))) {
            if (!parse_float(v, 0, 1, &o.threshold)) goto bad_value;
        } else if ((v = opt_value(argc, argv, &i, "--char-weight", &missing))) {
            if (!parse_float(v, 0, 10, &o.feat.char_weight)) goto bad_value;
        } else if ((v = opt_value(argc, argv, &i, "--bigram-weight", &missing))) {
            if (!parse_float(v, 0, 10, &o.feat.bigram_weight)) goto bad_value;
        } else if ((v = opt_value(argc, argv, &i, "--augment", &missing))) {
            if (!parse_u64(v, 8, &u)) goto bad_value;
            o.augment = (uint32_t)u;
        } else if ((v = opt_value(argc, argv, &i, "--augment-p", &missing))) {
            if (!parse_float(v, 0, 1, &o.augment_p)) goto bad_value;
        } else if (strcmp(argv[i], "--no-bigrams") == 0) {
            o.feat.word_bigrams = false;
        } else if (strcmp(argv[i], "--keep-accents") == 0) {
            o.feat.strip_accents = false;
        } else if (strcmp(argv[i], "--stem") == 0) {
            o.feat.stem = true;
        } else if (strcmp(argv[i], "--no-quantize") == 0) {
            o.quantize = false;
        } else if (strcmp(argv[i], "--hidden-chars") == 0) {
            o.hidden_chars = true;
        } else if (strcmp(argv[i], "--no-word-sums") == 0) {
            o.word_sums = false;
        } else if (strcmp(argv[i], "--verbose") == 0) {
            o.verbose = true;
        } else {
            if (missing)
                fprintf(stderr, "train: %s needs a value\n", argv[i]);
            else
                fprintf(stderr, "train: unknown option '%s'\n", argv[i]);
            train_usage(stderr);
            return 2;
        }
        continue;
    bad_value:
        fprintf(stderr, "train: bad value for %s\n", arg);
        return 2;
    }
    if (ndata == 0 || !out) {
        train_usage(stderr);
        return 2;
    }
    for (size_t i = 0; i < ndata; i++) {
        if (sb_nlu_dataset_load(&ds, data[i], err, sizeof err) != SB_OK) {
            fprintf(stderr, "train: %s\n", err);
            goto done;
        }
    }
    if (val) {
        if (sb_nlu_dataset_load(&vds, val, err, sizeof err) != SB_OK) {
            fprintf(stderr, "train: %s\n", err);
            goto done;
        }
        o.val = &vds;
    }
    if (!val && val_split > 0 && ds.nlabels > 1 && ds.n >= 10 * ds.nlabels) {
        /* no validation given: carve one out of the training data (per intent), choose the
         * temperature and threshold on it, then refit on everything */
        sb_nlu_dataset_split(&ds, val_split, o.seed, &cds, &vds);
        o.val = &vds;
        carved = true;
    }
    if (oos) {
        if (!o.val) {
            fprintf(stderr, "train: --oos-val needs --val\n");
            status = 2;
            goto done;
        }
        if (sb_nlu_dataset_load(&ods, oos, err, sizeof err) != SB_OK) {
            fprintf(stderr, "train: %s\n", err);
            goto done;
        }
        o.oos_val = &ods;
    }
    if (oos_train) {
        if (sb_nlu_dataset_load(&ots, oos_train, err, sizeof err) != SB_OK) {
            fprintf(stderr, "train: %s\n", err);
            goto done;
        }
        o.oos_train = &ots;
    }
    sb_nlu_train_report_t rep;
    if (sb_nlu_train(&m, carved ? &cds : &ds, &o, &rep, err, sizeof err) != SB_OK) {
        fprintf(stderr, "train: %s\n", err);
        goto done;
    }
    if (carved && refit) {
        /* the same options on all the data; the calibration chosen on the carve-out stays */
        sb_nlu_model_t *full = NULL;
        sb_nlu_train_report_t rep2;
        sb_nlu_train_opts_t o2 = o;
        o2.val = NULL;
        o2.oos_val = NULL;
        o2.knn_weight = rep.knn_weight; /* as chosen on the carve-out */
        if (sb_nlu_train(&full, &ds, &o2, &rep2, err, sizeof err) != SB_OK) {
            fprintf(stderr, "train: %s\n", err);
            goto done;
        }
        sb_nlu_model_set_calibration(full, rep.temperature, rep.threshold);
        sb_nlu_model_destroy(m);
        m = full;
        rep.examples = rep2.examples;
        rep.rows = rep2.rows;
        rep.seconds += rep2.seconds;
    }
    if (sb_nlu_model_save(m, out, err, sizeof err) != SB_OK) {
        fprintf(stderr, "train: %s\n", err);
        goto done;
    }
    uint8_t *bytes;
    size_t nbytes;
    sb_nlu_model_serialize(m, &bytes, &nbytes);
    free(bytes);
    fprintf(stderr,
            "trained examples=%zu intents=%zu features=%zu seconds=%.2f temperature=%.3f "
            "threshold=%.4f%s",
            rep.examples, rep.labels, rep.rows, rep.seconds, rep.temperature, rep.threshold,
            carved ? (refit ? " validation=carved,refit" : " validation=carved") : "");
    if (rep.val_accuracy >= 0) fprintf(stderr, " val_accuracy=%.4f", rep.val_accuracy);
    if (rep.val_objective >= 0) fprintf(stderr, " val_objective=%.4f", rep.val_objective);
    fprintf(stderr, " memory_weight=%.2f hidden=%u", rep.knn_weight, rep.hidden);
    fprintf(stderr, " bytes=%zu version=%s out=%s\n", nbytes, sb_nlu_model_version(m), out);
    if (o.hidden_chars && rep.hidden == 0)
        fprintf(stderr, "note: --hidden-chars did nothing: no hidden layer (the data has fewer "
                        "than 50 examples per intent; --hidden N forces one)\n");
    status = 0;
done:
    sb_nlu_model_destroy(m);
    sb_nlu_dataset_free(&ds);
    sb_nlu_dataset_free(&vds);
    sb_nlu_dataset_free(&ods);
    sb_nlu_dataset_free(&ots);
    sb_nlu_dataset_free(&cds);
    return status;
}

/* ---- predict ---------------------------------------------------------------------------- */

static void predict_usage(FILE *f)
{
    fprintf(f, "usage: switchboard predict --model MODEL [--threshold T] [--rules FILE|builtin]\n"
               "                           [--locale HINT]\n"
               "  Reads one text per line on stdin and writes one line per input:\n"
               "  intent<TAB>confidence<TAB>language<TAB>sentiment\n"
               "  Below the threshold (--threshold, else the model's stored one) the intent is\n"
               "  out_of_scope. With --rules, keyword rules override the model.\n");
}

/* Loads the pieces shared by predict and eval. */
static int load_nlu(sb_nlu_t *nlu, const char *model, const char *rules, const char *cmd)
{
    char err[512] = "";
    memset(nlu, 0, sizeof *nlu);
    if (sb_nlu_model_load(&nlu->model, model, err, sizeof err) != SB_OK) {
        fprintf(stderr, "%s: %s\n", cmd, err);
        return 1;
    }
    if (rules) {
        const char *path = strcmp(rules, "builtin") == 0 ? NULL : rules;
        if (sb_nlu_rules_load(&nlu->rules, path, err, sizeof err) != SB_OK) {
            fprintf(stderr, "%s: %s\n", cmd, err);
            sb_nlu_model_destroy(nlu->model);
            return 1;
        }
    }
    if (sb_nlu_langid_create(&nlu->langid, NULL) != SB_OK)
        fprintf(stderr, "%s: language fingerprints missing; using the word lists only\n", cmd);
    return 0;
}

static void free_nlu(sb_nlu_t *nlu)
{
    sb_nlu_model_destroy(nlu->model);
    sb_nlu_rules_destroy(nlu->rules);
    sb_nlu_langid_destroy(nlu->langid);
}

/* Appends v (|v| <= 1000) with d decimals, rounded half away from zero: printf's %.*f is a
 * noticeable share of predict's time. */
static char *put_fixed(char *p, double v, int d)
{
    static const double scale[] = {1, 10, 100, 1000, 10000};
    if (!(v == v) || d < 0 || d > 4 || v > 1000 || v < -1000) return p + sprintf(p, "%.*f", d, v);
    if (v < 0) {
        *p++ = '-';
        v = -v;
    }
    long q = (long)(v * scale[d] + 0.5);
    long ip = q / (long)scale[d], fp = q % (long)scale[d];
    p += sprintf(p, "%ld", ip);
    if (d > 0) {
        *p++ = '.';
        for (int i = d - 1; i >= 0; i--) {
            p[i] = (char)('0' + fp % 10);
            fp /= 10;
        }
        p += d;
    }
    return p;
}

int sb_nlu_cmd_predict(int argc, char **argv)
{
    const char *model = NULL, *rules = NULL, *locale = NULL;
    float threshold = -1;
    for (int i = 1; i < argc; i++) {
        bool missing = false;
        const char *v;
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            predict_usage(stdout);
            return 0;
        } else if ((v = opt_value(argc, argv, &i, "--model", &missing))) {
            model = v;
        } else if ((v = opt_value(argc, argv, &i, "--rules", &missing))) {
            rules = v;
        } else if ((v = opt_value(argc, argv, &i, "--locale", &missing))) {
            locale = v;
        } else if ((v = opt_value(argc, argv, &i, "--threshold", &missing))) {
            if (!parse_float(v, 0, 1, &threshold)) {
                fprintf(stderr, "predict: bad value for --threshold\n");
                return 2;
            }
        } else {
            fprintf(stderr,
                    missing ? "predict: %s needs a value\n" : "predict: unknown option '%s'\n",
                    argv[i]);
            predict_usage(stderr);
            return 2;
        }
    }
    if (!model) {
        predict_usage(stderr);
        return 2;
    }
    sb_nlu_t nlu;
    if (load_nlu(&nlu, model, rules, "predict") != 0) return 1;
    if (threshold < 0) threshold = sb_nlu_model_threshold(nlu.model);
    sb_nlu_work_t *w = sb_nlu_work_create();
    static char outbuf[1 << 16];
    setvbuf(stdout, outbuf, _IOFBF, sizeof outbuf);
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    sb_nlu_result_t r;
    while ((n = getline(&line, &cap, stdin)) >= 0) {
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
            n--;
        sb_nlu_classify(&nlu, w, line, (size_t)n, locale, &r);
        const char *intent = r.intent;
        if (!r.rule[0] && r.confidence < threshold) intent = SB_NLU_OUT_OF_SCOPE;
        if (!intent[0]) intent = SB_NLU_OUT_OF_SCOPE;
        char num[2][48];
        *put_fixed(num[0], r.confidence, 4) = '\0';
        *put_fixed(num[1], r.sentiment, 3) = '\0';
        fputs(intent, stdout);
        putc('\t', stdout);
        fputs(num[0], stdout);
        putc('\t', stdout);
        fputs(r.language, stdout);
        putc('\t', stdout);
        fputs(num[1], stdout);
        putc('\n', stdout);
    }
    free(line);
    int status = 0;
    if (fflush(stdout) != 0) status = 1;
    sb_nlu_work_destroy(w);
    free_nlu(&nlu);
    return status;
}

/* ---- eval ------------------------------------------------------------------------------- */

static void eval_usage(FILE *f)
{
    fprintf(f, "usage: switchboard eval --model MODEL --data TEST.tsv [--oos OOS.tsv]\n"
               "                        [--threshold T] [--rules FILE|builtin]\n"
               "       switchboard eval --model MODEL --replay PAST.jsonl [--rules FILE|builtin]\n"
               "  --replay: one JSON object a line with at least \"text\" and \"intent\" (and\n"
               "  \"confidence\", \"language\"): agreement of MODEL with those classifications.\n"
               "  Prints accuracy, macro-F1, out-of-scope recall, coverage and accuracy on\n"
               "  accepted messages at the threshold and over a sweep, the most confused\n"
               "  pairs and the prediction throughput.\n");
}

typedef struct pair_count {
    int gold, pred;
    size_t n;
} pair_count_t;

static int cmp_pairs(const void *a, const void *b)
{
    const pair_count_t *x = a, *y = b;
    if (x->n != y->n) return x->n < y->n ? 1 : -1;
    if (x->gold != y->gold) return x->gold - y->gold;
    return x->pred - y->pred;
}

typedef struct evrow {
    int gold; /* model label index, -1 unknown label, -2 out-of-scope */
    int pred; /* argmax label, or -3 when a rule decided another intent */
    float conf;
    bool oos_pred; /* predicted an explicit oos/out_of_scope intent */
} evrow_t;

static void sweep_line(const evrow_t *rows, size_t n, float t, size_t n_in, size_t n_oos,
                       double *in_acc, double *oos_rec, double *coverage, double *acc_acc)
{
    size_t acc_in = 0, correct_acc = 0, rej_oos = 0;
    for (size_t i = 0; i < n; i++) {
        bool accepted = rows[i].conf >= t && !rows[i].oos_pred;
        if (rows[i].gold == -2) {
            if (!accepted) rej_oos++;
        } else if (accepted) {
            acc_in++;
            if (rows[i].pred == rows[i].gold) correct_acc++;
        }
    }
    *in_acc = n_in ? (double)correct_acc / (double)n_in : 0;
    *oos_rec = n_oos ? (double)rej_oos / (double)n_oos : 0;
    *coverage = n_in ? (double)acc_in / (double)n_in : 0;
    *acc_acc = acc_in ? (double)correct_acc / (double)acc_in : 0;
}

#define REPLAY_MAX_LINE (4 * SB_NLU_MAX_TEXT)
#define REPLAY_PAIRS 4096

typedef struct shift_pair {
    char from[SB_NLU_MAX_LABEL_LEN + 1], to[SB_NLU_MAX_LABEL_LEN + 1];
    size_t n;
} shift_pair_t;

static int cmp_shift(const void *a, const void *b)
{
    const shift_pair_t *x = a, *y = b;
    if (x->n != y->n) return x->n < y->n ? 1 : -1;
    int c = strcmp(x->from, y->from);
    return c ? c : strcmp(x->to, y->to);
}

/* eval --replay: classifies the text of every past classification again and compares. */
static int replay(sb_nlu_t *nlu, const char *path)
{
    int status = 1;
    char *data = NULL;
    size_t len = 0;
    sb_nlu_work_t *w = NULL;
    shift_pair_t *pairs = sb_xcalloc(REPLAY_PAIRS, sizeof *pairs);
    size_t npairs = 0, n = 0, bad = 0, agree = 0, lang_n = 0, lang_agree = 0, conf_n = 0;
    size_t oos_old = 0, oos_new = 0, first_bad = 0;
    double shift = 0, abs_shift = 0, shift_agree = 0;
    size_t shift_agree_n = 0;
    sb_result_t rc = sb_read_file(path, SB_NLU_MAX_FILE, &data, &len);
    if (rc != SB_OK) {
        fprintf(stderr, "eval: %s: cannot read: %s\n", path, sb_result_str(rc));
        goto done;
    }
    w = sb_nlu_work_create();
    size_t lineno = 0;
    for (char *p = data, *end = data + len; p < end;) {
        lineno++;
        char *nl = memchr(p, '\n', (size_t)(end - p));
        char *le = nl ? nl : end;
        *le = '\0';
        char *line = p;
        p = nl ? nl + 1 : end;
        size_t ll = (size_t)(le - line);
        while (ll > 0 && (line[ll - 1] == '\r' || line[ll - 1] == ' '))
            line[--ll] = '\0';
        if (ll == 0) continue;
        cJSON *o = ll <= REPLAY_MAX_LINE ? cJSON_ParseWithLength(line, ll) : NULL;
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(o, "text");
        const cJSON *in = cJSON_GetObjectItemCaseSensitive(o, "intent");
        const cJSON *cf = cJSON_GetObjectItemCaseSensitive(o, "confidence");
        const cJSON *lg = cJSON_GetObjectItemCaseSensitive(o, "language");
        if (!cJSON_IsObject(o) || !cJSON_IsString(t) || !cJSON_IsString(in) ||
            strlen(in->valuestring) > SB_NLU_MAX_LABEL_LEN ||
            (cf && !(cJSON_IsNumber(cf) && cf->valuedouble >= 0 && cf->valuedouble <= 1)) ||
            (lg && !cJSON_IsString(lg))) {
            if (!bad) first_bad = lineno;
            bad++;
            cJSON_Delete(o);
            continue;
        }
        sb_nlu_result_t r;
        const char *text = t->valuestring;
        sb_nlu_classify(nlu, w, text, strlen(text), NULL, &r);
        const char *now = r.intent[0] ? r.intent : SB_NLU_OUT_OF_SCOPE;
        const char *was = in->valuestring[0] ? in->valuestring : SB_NLU_OUT_OF_SCOPE;
        n++;
        bool same = strcmp(now, was) == 0;
        if (same) agree++;
        if (strcmp(was, SB_NLU_OUT_OF_SCOPE) == 0) oos_old++;
        if (strcmp(now, SB_NLU_OUT_OF_SCOPE) == 0) oos_new++;
        if (lg && lg->valuestring[0]) {
            lang_n++;
            if (strcmp(lg->valuestring, r.language) == 0) lang_agree++;
        }
        if (cf) {
            double d = (double)r.confidence - cf->valuedouble;
            conf_n++;
            shift += d;
            abs_shift += fabs(d);
            if (same) {
                shift_agree += d;
                shift_agree_n++;
            }
        }
        if (!same) {
            size_t k;
            for (k = 0; k < npairs; k++)
                if (strcmp(pairs[k].from, was) == 0 && strcmp(pairs[k].to, now) == 0) break;
            if (k == npairs && npairs < REPLAY_PAIRS) {
                snprintf(pairs[k].from, sizeof pairs[k].from, "%s", was);
                snprintf(pairs[k].to, sizeof pairs[k].to, "%s", now);
                npairs++;
            }
            if (k < npairs) pairs[k].n++;
        }
        cJSON_Delete(o);
    }
    printf("model %s intents=%zu replay=%s\n", sb_nlu_model_version(nlu->model),
           sb_nlu_model_nlabels(nlu->model), path);
    printf("messages %zu skipped_lines %zu", n, bad);
    if (bad) printf(" (first at line %zu)", first_bad);
    printf("\n");
    printf("intent_agreement %.4f (%zu of %zu)\n", n ? (double)agree / (double)n : 0, agree, n);
    printf("out_of_scope before %.4f now %.4f\n", n ? (double)oos_old / (double)n : 0,
           n ? (double)oos_new / (double)n : 0);
    if (lang_n)
        printf("language_agreement %.4f (%zu of %zu)\n", (double)lang_agree / (double)lang_n,
               lang_agree, lang_n);
    if (conf_n)
        printf("confidence_shift mean %+.4f mean_abs %.4f on_agreeing %+.4f (%zu with a "
               "confidence)\n",
               shift / (double)conf_n, abs_shift / (double)conf_n,
               shift_agree_n ? shift_agree / (double)shift_agree_n : 0, conf_n);
    qsort(pairs, npairs, sizeof *pairs, cmp_shift);
    printf("changed before -> now (count)\n");
    for (size_t k = 0; k < npairs && k < 15; k++)
        printf("  %s -> %s (%zu)\n", pairs[k].from, pairs[k].to, pairs[k].n);
    status = n > 0 ? 0 : 1;
    if (n == 0) fprintf(stderr, "eval: %s: no usable line\n", path);
done:
    free(data);
    free(pairs);
    sb_nlu_work_destroy(w);
    return status;
}

int sb_nlu_cmd_eval(int argc, char **argv)
{
    const char *model = NULL, *data = NULL, *oos = NULL, *rules = NULL, *replay_path = NULL;
    float threshold = -1;
    for (int i = 1; i < argc; i++) {
        bool missing = false;
        const char *v;
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            eval_usage(stdout);
            return 0;
        } else if ((v = opt_value(argc, argv, &i, "--model", &missing))) {
            model = v;
        } else if ((v = opt_value(argc, argv, &i, "--replay", &missing))) {
            replay_path = v;
        } else if ((v = opt_value(argc, argv, &i, "--data", &missing))) {
            data = v;
        } else if ((v = opt_value(argc, argv, &i, "--oos", &missing))) {
            oos = v;
        } else if ((v = opt_value(argc, argv, &i, "--rules", &missing))) {
            rules = v;
        } else if ((v = opt_value(argc, argv, &i, "--threshold", &missing))) {
            if (!parse_float(v, 0, 1, &threshold)) {
                fprintf(stderr, "eval: bad value for --threshold\n");
                return 2;
            }
        } else {
            fprintf(stderr, missing ? "eval: %s needs a value\n" : "eval: unknown option '%s'\n",
                    argv[i]);
            eval_usage(stderr);
            return 2;
        }
    }
    if (!model || (!data && !replay_path) || (data && replay_path)) {
        eval_usage(stderr);
        return 2;
    }
    if (replay_path) {
        sb_nlu_t rn;
        if (load_nlu(&rn, model, rules, "eval") != 0) return 1;
        rn.apply_threshold = true;
        int st = replay(&rn, replay_path);
        free_nlu(&rn);
        return st;
    }
    int status = 1;
    char err[512];
    sb_nlu_dataset_t test = {0}, oset = {0};
    evrow_t *rows = NULL;
    size_t *tp = NULL, *fp = NULL, *fn = NULL;
    pair_count_t *pairs = NULL;
    sb_nlu_work_t *w = NULL;
    sb_nlu_t nlu;
    if (load_nlu(&nlu, model, rules, "eval") != 0) return 1;
    if (sb_nlu_dataset_load(&test, data, err, sizeof err) != SB_OK ||
        (oos && sb_nlu_dataset_load(&oset, oos, err, sizeof err) != SB_OK)) {
        fprintf(stderr, "eval: %s\n", err);
        goto done;
    }
    if (threshold < 0) threshold = sb_nlu_model_threshold(nlu.model);
    const size_t L = sb_nlu_model_nlabels(nlu.model);
    int *map = sb_xmalloc((test.nlabels + 1) * sizeof *map);
    for (size_t j = 0; j < test.nlabels; j++) {
        map[j] = -1;
        for (size_t k = 0; k < L; k++)
            if (strcmp(test.labels[j], sb_nlu_model_label(nlu.model, k)) == 0) map[j] = (int)k;
    }
    size_t n_in = test.n, n_oos = oset.n, n = n_in + n_oos;
    rows = sb_xcalloc(n ? n : 1, sizeof *rows);
    w = sb_nlu_work_create();
    sb_nlu_result_t r;
    uint64_t t0 = sb_mono_ns();
    for (size_t i = 0; i < n; i++) {
        const char *t = i < n_in ? test.ex[i].text : oset.ex[i - n_in].text;
        sb_nlu_classify(&nlu, w, t, strlen(t), NULL, &r);
        rows[i].gold = i < n_in ? map[test.ex[i].label] : -2;
        rows[i].conf = r.confidence;
        rows[i].pred = -3;
        for (size_t k = 0; k < L; k++)
            if (r.intent == sb_nlu_model_label(nlu.model, k) ||
                strcmp(r.intent, sb_nlu_model_label(nlu.model, k)) == 0) {
                rows[i].pred = (int)k;
                break;
            }
        rows[i].oos_pred =
            strcmp(r.intent, "oos") == 0 || strcmp(r.intent, SB_NLU_OUT_OF_SCOPE) == 0;
    }
    double secs = (double)(sb_mono_ns() - t0) / 1e9;
    free(map);

    /* argmax accuracy and macro-F1 over the in-scope intents */
    tp = sb_xcalloc(L + 1, sizeof *tp);
    fp = sb_xcalloc(L + 1, sizeof *fp);
    fn = sb_xcalloc(L + 1, sizeof *fn);
    size_t correct = 0;
    pairs = sb_xcalloc(n_in ? n_in : 1, sizeof *pairs);
    size_t npairs = 0;
    for (size_t i = 0; i < n_in; i++) {
        int g = rows[i].gold, p = rows[i].pred;
        if (g >= 0 && p == g) {
            correct++;
            tp[g]++;
            continue;
        }
        if (g >= 0) fn[g]++;
        if (p >= 0) fp[p]++;
        size_t k;
        for (k = 0; k < npairs; k++)
            if (pairs[k].gold == g && pairs[k].pred == p) break;
        if (k == npairs) pairs[npairs++] = (pair_count_t){g, p, 0};
        pairs[k].n++;
    }
    double f1sum = 0, recsum = 0;
    size_t f1n = 0;
    for (size_t k = 0; k < L; k++) {
        if (tp[k] + fn[k] == 0) continue; /* intent absent from the test set */
        double prec = tp[k] + fp[k] ? (double)tp[k] / (double)(tp[k] + fp[k]) : 0;
        double rec = (double)tp[k] / (double)(tp[k] + fn[k]);
        recsum += rec;
        f1sum += prec + rec > 0 ? 2 * prec * rec / (prec + rec) : 0;
        f1n++;
    }
    printf("model %s intents=%zu features=%zu\n", sb_nlu_model_version(nlu.model), L,
           sb_nlu_model_rows(nlu.model));
    printf("examples in_scope=%zu out_of_scope=%zu\n", n_in, n_oos);
    printf("accuracy %.4f\n", n_in ? (double)correct / (double)n_in : 0);
    printf("macro_f1 %.4f\n", f1n ? f1sum / (double)f1n : 0);
    /* the mean of the per-intent recalls: the accuracy the model would have if every intent
     * were equally frequent (as in a balanced test set) */
    printf("balanced_accuracy %.4f\n", f1n ? recsum / (double)f1n : 0);
    double ia, orc, cov, aa;
    sweep_line(rows, n, threshold, n_in, n_oos, &ia, &orc, &cov, &aa);
    printf("threshold %.4f in_scope_accuracy %.4f oos_recall %.4f coverage %.4f "
           "accuracy_on_accepted %.4f\n",
           threshold, ia, orc, cov, aa);
    printf("sweep threshold in_scope_accuracy oos_recall coverage accuracy_on_accepted\n");
    for (int s = 0; s <= 18; s++) {
        float t = (float)s * 0.05f;
        sweep_line(rows, n, t, n_in, n_oos, &ia, &orc, &cov, &aa);
        printf("  %.2f %.4f %.4f %.4f %.4f\n", t, ia, orc, cov, aa);
    }
    qsort(pairs, npairs, sizeof *pairs, cmp_pairs);
    printf("confused gold -> predicted (count)\n");
    for (size_t k = 0; k < npairs && k < 10; k++) {
        const char *g = pairs[k].gold >= 0 ? sb_nlu_model_label(nlu.model, (size_t)pairs[k].gold)
                                           : "(unknown intent)";
        const char *p = pairs[k].pred >= 0 ? sb_nlu_model_label(nlu.model, (size_t)pairs[k].pred)
                                           : "(rule/other)";
        printf("  %s -> %s (%zu)\n", g, p, pairs[k].n);
    }
    printf("throughput %.0f messages/s (%zu in %.3f s, one thread, tokenizing included)\n",
           secs > 0 ? (double)n / secs : 0, n, secs);
    status = 0;
done:
    free(rows);
    free(tp);
    free(fp);
    free(fn);
    free(pairs);
    sb_nlu_work_destroy(w);
    sb_nlu_dataset_free(&test);
    sb_nlu_dataset_free(&oset);
    free_nlu(&nlu);
    return status;
}
