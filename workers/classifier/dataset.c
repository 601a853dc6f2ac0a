/* Training data: TSV (`text<TAB>intent`, one example a line) or a Rasa-like nlu YAML file for
 * the business team:
 *
 *   nlu:
 *     - intent: greeting
 *       examples: |
 *         - hi
 *         - good morning
 *
 * Entries without `intent` (synonym, regex, lookup in Rasa files) are skipped; entity
 * annotations such as "[Amsterdam](city)" keep their text. The file is read whole (bounded by
 * SB_NLU_MAX_FILE); lines, names and counts are bounded and errors name file:line. */
#include <string.h>
#include <stdlib.h>

#include <cyaml/cyaml.h>

#include "nlu_internal.h"
#include "sb/util.h"

bool sb_nlu_is_label(const char *name)
{
    size_t n = 0;
    for (const char *p = name; *p; p++, n++) {
        unsigned char c = (unsigned char)*p;
        /* printable ASCII without spaces, quotes, backslash, braces, comma or '=' so that a
         * name is safe in subjects' payloads, logs and Prometheus labels */
        if (c <= 0x20 || c >= 0x7f || strchr("\"'`\\{},=", c)) return false;
    }
    return n > 0 && n <= SB_NLU_MAX_LABEL_LEN;
}

int sb_nlu_dataset_label(const sb_nlu_dataset_t *ds, const char *label)
{
    for (size_t i = 0; i < ds->nlabels; i++)
        if (strcmp(ds->labels[i], label) == 0) return (int)i;
    return -1;
}

sb_result_t sb_nlu_dataset_add(sb_nlu_dataset_t *ds, const char *text, size_t text_len,
                               const char *label)
{
    if (!sb_nlu_is_label(label)) return SB_E_INVALID;
    if (text_len > SB_NLU_MAX_LINE || ds->n >= SB_NLU_MAX_EXAMPLES) return SB_E_TOO_LARGE;
    int li = sb_nlu_dataset_label(ds, label);
    if (li < 0) {
        if (ds->nlabels >= SB_NLU_MAX_LABELS) return SB_E_TOO_LARGE;
        if (ds->nlabels == ds->labels_cap) {
            ds->labels_cap = ds->labels_cap ? ds->labels_cap * 2 : 16;
            ds->labels = sb_xrealloc(ds->labels, ds->labels_cap * sizeof *ds->labels);
        }
        li = (int)ds->nlabels;
        ds->labels[ds->nlabels++] = sb_xstrdup(label);
    }
    if (ds->n == ds->cap) {
        ds->cap = ds->cap ? ds->cap * 2 : 256;
        ds->ex = sb_xrealloc(ds->ex, ds->cap * sizeof *ds->ex);
    }
    ds->ex[ds->n].text = sb_xstrndup(text, text_len);
    ds->ex[ds->n].label = (uint32_t)li;
    ds->n++;
    return SB_OK;
}

void sb_nlu_dataset_free(sb_nlu_dataset_t *ds)
{
    for (size_t i = 0; i < ds->n; i++)
        free(ds->ex[i].text);
    for (size_t i = 0; i < ds->nlabels; i++)
        free(ds->labels[i]);
    free(ds->ex);
    free(ds->labels);
    memset(ds, 0, sizeof *ds);
}

/* splitmix64 (the same generator as training) for the carve-out order. */
static uint64_t split_rng(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void sb_nlu_dataset_split(const sb_nlu_dataset_t *ds, float frac, uint64_t seed,
                          sb_nlu_dataset_t *train, sb_nlu_dataset_t *val)
{
    memset(train, 0, sizeof *train);
    memset(val, 0, sizeof *val);
    bool *to_val = sb_xcalloc(ds->n ? ds->n : 1, sizeof *to_val);
    size_t *idx = sb_xmalloc((ds->n ? ds->n : 1) * sizeof *idx);
    uint64_t rng = seed ^ 0x5eedca4e0f5a11dull;
    for (size_t j = 0; j < ds->nlabels; j++) {
        size_t n = 0;
        for (size_t i = 0; i < ds->n; i++)
            if (ds->ex[i].label == j) idx[n++] = i;
        /* an intent with fewer than 5 examples keeps them all for training */
        size_t k = n >= 5 ? (size_t)((double)frac * (double)n + 0.5) : 0;
        if (n >= 5 && frac > 0 && k == 0) k = 1;
        for (size_t i = 0; i < k; i++) { /* partial Fisher-Yates: k random picks */
            size_t r = i + (size_t)(split_rng(&rng) % (n - i));
            size_t t = idx[i];
            idx[i] = idx[r];
            idx[r] = t;
            to_val[idx[i]] = true;
        }
    }
    for (size_t i = 0; i < ds->n; i++) {
        const char *t = ds->ex[i].text;
        sb_result_t rc =
            sb_nlu_dataset_add(to_val[i] ? val : train, t, strlen(t), ds->labels[ds->ex[i].label]);
        (void)rc; /* the examples already passed these checks when ds was built */
    }
    free(to_val);
    free(idx);
}

static const char *add_error(sb_result_t rc)
{
    return rc == SB_E_INVALID ? "invalid intent name (1-64 printable characters without "
                                "spaces, quotes, backslash, braces, comma or '=')"
                              : "too large (line, example count or intent count)";
}

static sb_result_t load_tsv(sb_nlu_dataset_t *ds, const char *path, char *data, size_t len,
                            char *err, size_t errlen)
{
    size_t lineno = 0;
    char *p = data, *end = data + len;
    while (p < end) {
        lineno++;
        char *nl = memchr(p, '\n', (size_t)(end - p));
        char *le = nl ? nl : end;
        size_t ll = (size_t)(le - p);
        if (ll > SB_NLU_MAX_LINE) {
            nlu_errf(err, errlen, "%s:%zu: line longer than %u bytes", path, lineno,
                     SB_NLU_MAX_LINE);
            return SB_E_TOO_LARGE;
        }
        if (ll > 0 && p[ll - 1] == '\r') ll--;
        if (lineno == 1 && ll >= 3 && memcmp(p, "\xef\xbb\xbf", 3) == 0) {
            p += 3; /* BOM */
            ll -= 3;
        }
        if (ll == 0 || p[0] == '#') {
            p = nl ? nl + 1 : end;
            continue;
        }
        /* the last tab separates the intent, so text may itself contain tabs */
        char *ltab = memrchr(p, '\t', ll);
        if (!ltab) {
            nlu_errf(err, errlen, "%s:%zu: expected text<TAB>intent", path, lineno);
            return SB_E_INVALID;
        }
        size_t tl = (size_t)(ltab - p);
        char label[SB_NLU_MAX_LABEL_LEN + 2];
        size_t lab_len = ll - tl - 1;
        char *lab = ltab + 1;
        while (lab_len > 0 && (lab[lab_len - 1] == ' '))
            lab_len--;
        while (lab_len > 0 && *lab == ' ') {
            lab++;
            lab_len--;
        }
        if (lab_len == 0 || lab_len > SB_NLU_MAX_LABEL_LEN) {
            nlu_errf(err, errlen, "%s:%zu: intent name empty or longer than %u bytes", path, lineno,
                     SB_NLU_MAX_LABEL_LEN);
            return SB_E_INVALID;
        }
        memcpy(label, lab, lab_len);
        label[lab_len] = '\0';
        if (tl == 0) {
            nlu_errf(err, errlen, "%s:%zu: empty text", path, lineno);
            return SB_E_INVALID;
        }
        sb_result_t rc = sb_nlu_dataset_add(ds, p, tl, label);
        if (rc != SB_OK) {
            nlu_errf(err, errlen, "%s:%zu: %s", path, lineno, add_error(rc));
            return rc;
        }
        p = nl ? nl + 1 : end;
    }
    return SB_OK;
}

/* ---- YAML ------------------------------------------------------------------------------- */

typedef struct nlu_entry {
    char *intent;
    char *examples;
} nlu_entry_t;

typedef struct nlu_file {
    nlu_entry_t *nlu;
    unsigned nlu_count;
} nlu_file_t;

static const cyaml_schema_field_t entry_fields[] = {
    CYAML_FIELD_STRING_PTR("intent", CYAML_FLAG_OPTIONAL | CYAML_FLAG_POINTER, nlu_entry_t, intent,
                           1, SB_NLU_MAX_LABEL_LEN),
    CYAML_FIELD_STRING_PTR("examples", CYAML_FLAG_OPTIONAL | CYAML_FLAG_POINTER, nlu_entry_t,
                           examples, 0, SB_NLU_MAX_FILE),
    CYAML_FIELD_END};

static const cyaml_schema_value_t entry_schema = {
    CYAML_VALUE_MAPPING(CYAML_FLAG_DEFAULT, nlu_entry_t, entry_fields),
};

static const cyaml_schema_field_t file_fields[] = {
    CYAML_FIELD_SEQUENCE("nlu", CYAML_FLAG_POINTER | CYAML_FLAG_OPTIONAL, nlu_file_t, nlu,
                         &entry_schema, 0, SB_NLU_MAX_LABELS * 16),
    CYAML_FIELD_END};

static const cyaml_schema_value_t file_schema = {
    CYAML_VALUE_MAPPING(CYAML_FLAG_POINTER, nlu_file_t, file_fields),
};

typedef struct yaml_log {
    char msg[200];
} yaml_log_t;

static void yaml_log_fn(cyaml_log_t level, void *ctx, const char *fmt, va_list args)
{
    yaml_log_t *l = ctx;
    if (level < CYAML_LOG_ERROR || l->msg[0]) return;
    vsnprintf(l->msg, sizeof l->msg, fmt, args);
    size_t n = strlen(l->msg);
    while (n > 0 && (l->msg[n - 1] == '\n' || l->msg[n - 1] == ' '))
        l->msg[--n] = '\0';
}

/* Line (1-based) of the first occurrence of needle in data, or 0. */
static size_t line_of(const char *data, const char *needle)
{
    const char *hit = strstr(data, needle);
    if (!hit) return 0;
    size_t line = 1;
    for (const char *p = data; p < hit; p++)
        if (*p == '\n') line++;
    return line;
}

/* Copies an example without Rasa entity annotations: "[text](entity)" / "[text]{...}" →
 * "text". */
static size_t strip_annotations(const char *s, size_t n, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '[') {
            const char *close = memchr(s + i, ']', n - i);
            if (close && (size_t)(close - s) + 1 < n && (close[1] == '(' || close[1] == '{')) {
                char want = close[1] == '(' ? ')' : '}';
                size_t rest = n - (size_t)(close + 2 - s);
                const char *ce = memchr(close + 2, want, rest);
                if (ce) {
                    size_t tl = (size_t)(close - (s + i + 1));
                    memcpy(out + o, s + i + 1, tl);
                    o += tl;
                    i = (size_t)(ce - s);
                    continue;
                }
            }
        }
        out[o++] = s[i];
    }
    return o;
}

static sb_result_t load_yaml(sb_nlu_dataset_t *ds, const char *path, const char *data, size_t len,
                             char *err, size_t errlen)
{
    sb_result_t rc = SB_OK;
    yaml_log_t lg = {{0}};
    cyaml_config_t cfg = {.log_fn = yaml_log_fn,
                          .log_ctx = &lg,
                          .mem_fn = cyaml_mem,
                          .log_level = CYAML_LOG_ERROR,
                          .flags = CYAML_CFG_IGNORE_UNKNOWN_KEYS};
    nlu_file_t *f = NULL;
    char *buf = NULL;
    cyaml_err_t ce =
        cyaml_load_data((const uint8_t *)data, len, &cfg, &file_schema, (cyaml_data_t **)&f, NULL);
    if (ce != CYAML_OK) {
        nlu_errf(err, errlen, "%s: YAML: %s%s%s", path, cyaml_strerror(ce), lg.msg[0] ? ": " : "",
                 lg.msg);
        return SB_E_INVALID;
    }
    size_t added = 0;
    for (unsigned e = 0; f && e < f->nlu_count; e++) {
        const nlu_entry_t *en = &f->nlu[e];
        if (!en->intent) continue;
        char needle[SB_NLU_MAX_LABEL_LEN + 16];
        size_t base = 0;
        static const char quotes[] = {'\0', '"', '\''};
        for (size_t fi = 0; fi < sizeof quotes && base == 0; fi++) {
            if (quotes[fi])
                snprintf(needle, sizeof needle, "intent: %c%s%c", quotes[fi], en->intent,
                         quotes[fi]);
            else
                snprintf(needle, sizeof needle, "intent: %s", en->intent);
            base = line_of(data, needle);
        }
        if (!sb_nlu_is_label(en->intent)) {
            nlu_errf(err, errlen, "%s:%zu: %s", path, base, add_error(SB_E_INVALID));
            rc = SB_E_INVALID;
            goto done;
        }
        const char *p = en->examples ? en->examples : "";
        size_t k = 0;
        while (*p) {
            const char *nl = strchr(p, '\n');
            size_t ll = nl ? (size_t)(nl - p) : strlen(p);
            k++;
            const char *s = p;
            size_t sl = ll;
            while (sl > 0 && (*s == ' ' || *s == '\t')) {
                s++;
                sl--;
            }
            while (sl > 0 && (s[sl - 1] == ' ' || s[sl - 1] == '\r' || s[sl - 1] == '\t'))
                sl--;
            if (sl > 0) {
                if (*s != '-') {
                    nlu_errf(err, errlen, "%s: intent %s, example line %zu: expected \"- example\"",
                             path, en->intent, k);
                    rc = SB_E_INVALID;
                    goto done;
                }
                s++;
                sl--;
                while (sl > 0 && *s == ' ') {
                    s++;
                    sl--;
                }
                if (sl > SB_NLU_MAX_LINE) {
                    nlu_errf(err, errlen, "%s: intent %s, example %zu longer than %u bytes", path,
                             en->intent, k, SB_NLU_MAX_LINE);
                    rc = SB_E_TOO_LARGE;
                    goto done;
                }
                if (sl > 0) {
                    buf = sb_xrealloc(buf, sl + 1);
                    size_t bl = strip_annotations(s, sl, buf);
                    rc = sb_nlu_dataset_add(ds, buf, bl, en->intent);
                    if (rc != SB_OK) {
                        nlu_errf(err, errlen, "%s:%zu: intent %s: %s", path, base, en->intent,
                                 add_error(rc));
                        goto done;
                    }
                    added++;
                }
            }
            p = nl ? nl + 1 : p + ll;
        }
    }
    (void)added;
done:
    free(buf);
    cyaml_free(&cfg, &file_schema, f, 0);
    return rc;
}

static bool has_suffix(const char *s, const char *suf)
{
    size_t n = strlen(s), m = strlen(suf);
    return n >= m && strcmp(s + n - m, suf) == 0;
}

sb_result_t sb_nlu_dataset_load(sb_nlu_dataset_t *ds, const char *path, char *err, size_t errlen)
{
    char *data = NULL;
    size_t len = 0;
    sb_result_t rc = sb_read_file(path, SB_NLU_MAX_FILE, &data, &len);
    if (rc != SB_OK) {
        nlu_errf(err, errlen, "%s: cannot read: %s", path, sb_result_str(rc));
        return rc;
    }
    if (memchr(data, '\0', len)) {
        nlu_errf(err, errlen, "%s: contains NUL bytes (not a text file)", path);
        free(data);
        return SB_E_INVALID;
    }
    if (has_suffix(path, ".yml") || has_suffix(path, ".yaml"))
        rc = load_yaml(ds, path, data, len, err, errlen);
    else
        rc = load_tsv(ds, path, data, len, err, errlen);
    free(data);
    return rc;
}
