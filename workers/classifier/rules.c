/* Rules that override the model: the built-in "I want a human" guarantees (every language,
 * always on: DESIGN.md promises that asking for a human always works) and the business
 * team's YAML rules (config/rules.yaml; keywords and PCRE2 patterns per language).
 *
 * Keywords are tokenized exactly like messages (case fold, accents stripped, apostrophes
 * split), so "parler à quelqu'un" matches "Parler a quelqu’un" as a sequence of whole words.
 * Patterns run on the normalized text (lower case, no accents), with PCRE2 UTF + UCP.
 * Business rules are tried first, in file order, then the built-ins; the first match wins. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdlib.h>
#include <string.h>

#include <cyaml/cyaml.h>

#include "nlu_internal.h"
#include "sb/util.h"

#define MAX_RULES 1024
#define MAX_ITEMS 1024 /* keywords or patterns per rule */
#define MAX_ITEM_LEN 512
#define MAX_KW_TOKENS 16

typedef struct keyword {
    uint32_t ntok;
    uint32_t hash[MAX_KW_TOKENS]; /* of each token's bytes */
    char *tok[MAX_KW_TOKENS];
    uint32_t len[MAX_KW_TOKENS];
} keyword_t;

typedef struct rule {
    char *name;
    char *intent;
    uint32_t langs; /* bit per language; 0 = all */
    keyword_t *kw;
    size_t nkw;
    pcre2_code **re;
    size_t nre;
} rule_t;

struct sb_nlu_rules {
    rule_t *rules;
    size_t n;
};

/* Built-in guarantees: any language, whatever the model says. */
static const char *const builtin_en[] = {"human",
                                         "humans",
                                         "agent",
                                         "real person",
                                         "live person",
                                         "a real human",
                                         "human being",
                                         "talk to a person",
                                         "speak to a person",
                                         "speak with a person",
                                         "talk with a person",
                                         "talk to someone",
                                         "speak to someone",
                                         "speak with someone",
                                         "talk with someone",
                                         "live agent",
                                         "representative",
                                         "operator",
                                         "customer service agent",
                                         "talk to a real",
                                         "speak to a real",
                                         NULL};
static const char *const builtin_nl[] = {"medewerker",
                                         "een mens",
                                         "mens spreken",
                                         "iemand spreken",
                                         "met iemand praten",
                                         "met iemand spreken",
                                         "echt persoon",
                                         "echte persoon",
                                         "echt mens",
                                         "persoon spreken",
                                         "menselijke medewerker",
                                         "klantenservice medewerker",
                                         "mens",
                                         "iemand aan de lijn",
                                         "een persoon spreken",
                                         NULL};
static const char *const builtin_fr[] = {
    "conseiller",         "conseillere",        "un humain",
    "une humaine",        "parler a un humain", "une personne",
    "une vraie personne", "un operateur",       "une operatrice",
    "un agent",           "parler a quelqu un", "un etre humain",
    "quelqu un de reel",  "un vrai humain",     NULL};
static const char *const builtin_de[] = {"mitarbeiter", "mitarbeiterin",   "mensch",
                                         "menschen",    "echten menschen", "mit jemandem sprechen",
                                         NULL};
static const char *const builtin_es[] = {
    "humano", "agente", "una persona", "hablar con alguien", "persona real", "asesor", NULL};

/* ---- building ---------------------------------------------------------------------------- */

static void free_rule(rule_t *r)
{
    free(r->name);
    free(r->intent);
    for (size_t i = 0; i < r->nkw; i++)
        for (uint32_t t = 0; t < r->kw[i].ntok; t++)
            free(r->kw[i].tok[t]);
    free(r->kw);
    for (size_t i = 0; i < r->nre; i++)
        pcre2_code_free(r->re[i]);
    free(r->re);
}

void sb_nlu_rules_destroy(sb_nlu_rules_t *r)
{
    if (!r) return;
    for (size_t i = 0; i < r->n; i++)
        free_rule(&r->rules[i]);
    free(r->rules);
    free(r);
}

size_t sb_nlu_rules_count(const sb_nlu_rules_t *r)
{
    return r ? r->n : 0;
}

/* Tokenizes keyword s into k; false when it has no tokens or too many. */
static bool make_keyword(sb_nlu_work_t *w, const char *s, keyword_t *k)
{
    const sb_nlu_token_t *toks;
    size_t n = sb_nlu_work_tokenize(w, s, strlen(s), true, &toks);
    if (n == 0 || n > MAX_KW_TOKENS) return false;
    memset(k, 0, sizeof *k);
    k->ntok = (uint32_t)n;
    for (size_t i = 0; i < n; i++) {
        k->tok[i] = sb_xstrndup(toks[i].s, toks[i].len);
        k->len[i] = toks[i].len;
        k->hash[i] = sb_nlu_hash(toks[i].s, toks[i].len, 0);
    }
    return true;
}

static rule_t *add_rule(sb_nlu_rules_t *rs, const char *name, const char *intent, uint32_t langs)
{
    rs->rules = sb_xrealloc(rs->rules, (rs->n + 1) * sizeof *rs->rules);
    rule_t *r = &rs->rules[rs->n++];
    memset(r, 0, sizeof *r);
    r->name = sb_xstrdup(name);
    r->intent = sb_xstrdup(intent);
    r->langs = langs;
    return r;
}

static void add_builtin(sb_nlu_rules_t *rs, sb_nlu_work_t *w, const char *name,
                        const char *const *words)
{
    rule_t *r = add_rule(rs, name, SB_NLU_HUMAN_HANDOFF, 0);
    size_t n = 0;
    while (words[n])
        n++;
    r->kw = sb_xcalloc(n, sizeof *r->kw);
    for (size_t i = 0; i < n; i++)
        if (make_keyword(w, words[i], &r->kw[r->nkw])) r->nkw++;
}

/* ---- YAML ------------------------------------------------------------------------------- */

typedef struct rule_yaml {
    char *name;
    char *intent;
    char **languages;
    unsigned languages_count;
    char **keywords;
    unsigned keywords_count;
    char **patterns;
    unsigned patterns_count;
} rule_yaml_t;

typedef struct rules_yaml {
    rule_yaml_t *rules;
    unsigned rules_count;
} rules_yaml_t;

static const cyaml_schema_value_t str_item = {
    CYAML_VALUE_STRING(CYAML_FLAG_POINTER, char, 0, MAX_ITEM_LEN),
};
static const cyaml_schema_value_t lang_item = {
    CYAML_VALUE_STRING(CYAML_FLAG_POINTER, char, 2, 16),
};

static const cyaml_schema_field_t rule_fields[] = {
    CYAML_FIELD_STRING_PTR("name", CYAML_FLAG_POINTER, rule_yaml_t, name, 1, 64),
    CYAML_FIELD_STRING_PTR("intent", CYAML_FLAG_POINTER, rule_yaml_t, intent, 1,
                           SB_NLU_MAX_LABEL_LEN),
    CYAML_FIELD_SEQUENCE("languages", CYAML_FLAG_POINTER | CYAML_FLAG_OPTIONAL, rule_yaml_t,
                         languages, &lang_item, 0, 16),
    CYAML_FIELD_SEQUENCE("keywords", CYAML_FLAG_POINTER | CYAML_FLAG_OPTIONAL, rule_yaml_t,
                         keywords, &str_item, 0, MAX_ITEMS),
    CYAML_FIELD_SEQUENCE("patterns", CYAML_FLAG_POINTER | CYAML_FLAG_OPTIONAL, rule_yaml_t,
                         patterns, &str_item, 0, MAX_ITEMS),
    CYAML_FIELD_END};

static const cyaml_schema_value_t rule_schema = {
    CYAML_VALUE_MAPPING(CYAML_FLAG_DEFAULT, rule_yaml_t, rule_fields),
};

static const cyaml_schema_field_t top_fields[] = {
    CYAML_FIELD_SEQUENCE("rules", CYAML_FLAG_POINTER | CYAML_FLAG_OPTIONAL, rules_yaml_t, rules,
                         &rule_schema, 0, MAX_RULES),
    CYAML_FIELD_END};

static const cyaml_schema_value_t top_schema = {
    CYAML_VALUE_MAPPING(CYAML_FLAG_POINTER, rules_yaml_t, top_fields),
};

typedef struct ylog {
    char msg[200];
} ylog_t;

static void ylog_fn(cyaml_log_t level, void *ctx, const char *fmt, va_list args)
{
    ylog_t *l = ctx;
    if (level < CYAML_LOG_ERROR || l->msg[0]) return;
    vsnprintf(l->msg, sizeof l->msg, fmt, args);
    size_t n = strlen(l->msg);
    while (n > 0 && (l->msg[n - 1] == '\n' || l->msg[n - 1] == ' '))
        l->msg[--n] = '\0';
}

static sb_result_t load_file(sb_nlu_rules_t *rs, sb_nlu_work_t *w, const char *path, char *err,
                             size_t errlen)
{
    sb_result_t rc = SB_OK;
    char *data = NULL;
    size_t len = 0;
    rules_yaml_t *y = NULL;
    ylog_t lg = {{0}};
    cyaml_config_t cfg = {.log_fn = ylog_fn,
                          .log_ctx = &lg,
                          .mem_fn = cyaml_mem,
                          .log_level = CYAML_LOG_ERROR,
                          .flags = CYAML_CFG_DEFAULT};
    rc = sb_read_file(path, 4u << 20, &data, &len);
    if (rc != SB_OK) {
        nlu_errf(err, errlen, "%s: cannot read rules: %s", path, sb_result_str(rc));
        return rc;
    }
    cyaml_err_t ce =
        cyaml_load_data((const uint8_t *)data, len, &cfg, &top_schema, (cyaml_data_t **)&y, NULL);
    if (ce != CYAML_OK) {
        nlu_errf(err, errlen, "%s: YAML: %s%s%s", path, cyaml_strerror(ce), lg.msg[0] ? ": " : "",
                 lg.msg);
        rc = SB_E_CONFIG;
        goto done;
    }
    for (unsigned i = 0; y && i < y->rules_count; i++) {
        const rule_yaml_t *ry = &y->rules[i];
        if (!sb_nlu_is_label(ry->intent)) {
            nlu_errf(err, errlen, "%s: rule %s: invalid intent name", path, ry->name);
            rc = SB_E_CONFIG;
            goto done;
        }
        if (ry->keywords_count + ry->patterns_count == 0) {
            nlu_errf(err, errlen, "%s: rule %s: needs keywords or patterns", path, ry->name);
            rc = SB_E_CONFIG;
            goto done;
        }
        uint32_t langs = 0;
        for (unsigned l = 0; l < ry->languages_count; l++) {
            int li = nlu_lang_index(ry->languages[l]);
            if (li < 0) {
                nlu_errf(err, errlen, "%s: rule %s: unknown language (use en, nl, fr, de, es)",
                         path, ry->name);
                rc = SB_E_CONFIG;
                goto done;
            }
            langs |= 1u << li;
        }
        rule_t *r = add_rule(rs, ry->name, ry->intent, langs);
        r->kw = sb_xcalloc(ry->keywords_count ? ry->keywords_count : 1, sizeof *r->kw);
        for (unsigned k = 0; k < ry->keywords_count; k++) {
            if (!make_keyword(w, ry->keywords[k], &r->kw[r->nkw])) {
                nlu_errf(err, errlen, "%s: rule %s: keyword %u is empty or longer than %d words",
                         path, ry->name, k + 1, MAX_KW_TOKENS);
                rc = SB_E_CONFIG;
                goto done;
            }
            r->nkw++;
        }
        r->re = sb_xcalloc(ry->patterns_count ? ry->patterns_count : 1, sizeof *r->re);
        for (unsigned k = 0; k < ry->patterns_count; k++) {
            int ec;
            PCRE2_SIZE eo;
            pcre2_code *re = pcre2_compile((PCRE2_SPTR)ry->patterns[k], PCRE2_ZERO_TERMINATED,
                                           PCRE2_UTF | PCRE2_UCP | PCRE2_CASELESS, &ec, &eo, NULL);
            if (!re) {
                PCRE2_UCHAR msg[120];
                pcre2_get_error_message(ec, msg, sizeof msg);
                nlu_errf(err, errlen, "%s: rule %s: pattern %u at offset %zu: %s", path, ry->name,
                         k + 1, (size_t)eo, (const char *)msg);
                rc = SB_E_CONFIG;
                goto done;
            }
            (void)pcre2_jit_compile(re, PCRE2_JIT_COMPLETE); /* optional speed-up */
            r->re[r->nre++] = re;
        }
    }
done:
    cyaml_free(&cfg, &top_schema, y, 0);
    free(data);
    return rc;
}

sb_result_t sb_nlu_rules_load(sb_nlu_rules_t **out, const char *path, char *err, size_t errlen)
{
    sb_nlu_rules_t *rs = sb_xcalloc(1, sizeof *rs);
    sb_nlu_work_t *w = sb_nlu_work_create();
    sb_result_t rc = SB_OK;
    if (path && path[0]) {
        rc = load_file(rs, w, path, err, errlen);
        if (rc != SB_OK) goto done;
    }
    add_builtin(rs, w, "builtin:human_en", builtin_en);
    add_builtin(rs, w, "builtin:human_nl", builtin_nl);
    add_builtin(rs, w, "builtin:human_fr", builtin_fr);
    add_builtin(rs, w, "builtin:human_de", builtin_de);
    add_builtin(rs, w, "builtin:human_es", builtin_es);
    *out = rs;
    rs = NULL;
done:
    sb_nlu_rules_destroy(rs);
    sb_nlu_work_destroy(w);
    return rc;
}

/* ---- matching --------------------------------------------------------------------------- */

static bool keyword_at(const keyword_t *k, const sb_nlu_token_t *toks, const uint32_t *th,
                       size_t ntoks, size_t i)
{
    if (i + k->ntok > ntoks) return false;
    for (uint32_t t = 0; t < k->ntok; t++) {
        if (th[i + t] != k->hash[t] || toks[i + t].len != k->len[t] ||
            memcmp(toks[i + t].s, k->tok[t], k->len[t]) != 0)
            return false;
    }
    return true;
}

bool sb_nlu_rules_match(const sb_nlu_rules_t *r, sb_nlu_work_t *w, const char *lang,
                        const char **intent, const char **rule)
{
    if (!r || r->n == 0) return false;
    int li = nlu_lang_index(lang);
    size_t ntoks = w->ntoks;
    /* token hashes, in the feature scratch (featurize has not run yet for this text) */
    enum { STACK_TOKS = 256 };
    uint32_t stack_th[STACK_TOKS];
    uint32_t *th = ntoks <= STACK_TOKS ? stack_th : sb_xmalloc(ntoks * sizeof *th);
    for (size_t i = 0; i < ntoks; i++)
        th[i] = sb_nlu_hash(w->toks[i].s, w->toks[i].len, 0);
    bool hit = false;
    for (size_t ri = 0; ri < r->n && !hit; ri++) {
        const rule_t *ru = &r->rules[ri];
        if (ru->langs && (li < 0 || !(ru->langs & (1u << li)))) continue;
        for (size_t k = 0; k < ru->nkw && !hit; k++)
            for (size_t i = 0; i < ntoks && !hit; i++)
                if (keyword_at(&ru->kw[k], w->toks, th, ntoks, i)) hit = true;
        for (size_t k = 0; k < ru->nre && !hit; k++) {
            pcre2_match_data *md = pcre2_match_data_create_from_pattern(ru->re[k], NULL);
            int m = pcre2_match(ru->re[k], (PCRE2_SPTR)w->norm, w->norm_len, 0, 0, md, NULL);
            pcre2_match_data_free(md);
            if (m >= 0) hit = true;
        }
        if (hit) {
            *intent = ru->intent;
            *rule = ru->name;
        }
    }
    if (th != stack_th) free(th);
    return hit;
}

bool sb_nlu_payload_intent(const char *payload, char *buf, size_t n)
{
    if (!payload) return false;
    if (strcmp(payload, "escalate:human") == 0) {
        snprintf(buf, n, "%s", SB_NLU_HUMAN_HANDOFF);
        return true;
    }
    if (strncmp(payload, "intent:", 7) == 0 && sb_nlu_is_label(payload + 7) &&
        strlen(payload + 7) < n) {
        snprintf(buf, n, "%s", payload + 7);
        return true;
    }
    return false;
}
