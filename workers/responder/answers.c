/* Answers file: bounded read → libcyaml parse into the structs below → full validation →
 * lookups and composition for each turn. The YAML shape (see docs/answers.md):
 *
 *   answers:
 *     - intent: greeting
 *       text: {en: "...", nl: "...", fr: "..."}
 *       buttons:
 *         - id: "intent:opening_hours"
 *           title: {en: Opening hours, nl: Openingstijden, fr: Horaires}
 *
 * Validation errors name the intent and the field, so the business team can fix the file. */
#include "answers.h"

#include <cyaml/cyaml.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "sb/util.h"

/* One text in every locale; any may be NULL. */
typedef struct yaml_text {
    char *en;
    char *nl;
    char *fr;
} yaml_text_t;

typedef struct yaml_button {
    char *id;
    yaml_text_t *title;
} yaml_button_t;

typedef struct yaml_answer {
    char *intent;
    yaml_text_t *text;
    yaml_button_t *buttons;
    unsigned buttons_count;
} yaml_answer_t;

typedef struct yaml_doc {
    yaml_answer_t *answers;
    unsigned answers_count;
} yaml_doc_t;

/* Generous parse-time bounds; the real limits are checked afterwards with clear messages. */
#define PARSE_MAX_STRING 65536
#define PARSE_MAX_BUTTONS 64

static const cyaml_schema_field_t text_fields[] = {
    CYAML_FIELD_STRING_PTR("en", CYAML_FLAG_OPTIONAL, yaml_text_t, en, 0, PARSE_MAX_STRING),
    CYAML_FIELD_STRING_PTR("nl", CYAML_FLAG_OPTIONAL, yaml_text_t, nl, 0, PARSE_MAX_STRING),
    CYAML_FIELD_STRING_PTR("fr", CYAML_FLAG_OPTIONAL, yaml_text_t, fr, 0, PARSE_MAX_STRING),
    CYAML_FIELD_END};

static const cyaml_schema_field_t button_fields[] = {
    CYAML_FIELD_STRING_PTR("id", CYAML_FLAG_DEFAULT, yaml_button_t, id, 0, PARSE_MAX_STRING),
    CYAML_FIELD_MAPPING_PTR("title", CYAML_FLAG_DEFAULT, yaml_button_t, title, text_fields),
    CYAML_FIELD_END};

static const cyaml_schema_value_t button_schema = {
    CYAML_VALUE_MAPPING(CYAML_FLAG_DEFAULT, yaml_button_t, button_fields),
};

static const cyaml_schema_field_t answer_fields[] = {
    CYAML_FIELD_STRING_PTR("intent", CYAML_FLAG_DEFAULT, yaml_answer_t, intent, 0,
                           PARSE_MAX_STRING),
    CYAML_FIELD_MAPPING_PTR("text", CYAML_FLAG_OPTIONAL, yaml_answer_t, text, text_fields),
    CYAML_FIELD_SEQUENCE("buttons", CYAML_FLAG_POINTER | CYAML_FLAG_OPTIONAL, yaml_answer_t,
                         buttons, &button_schema, 0, PARSE_MAX_BUTTONS),
    CYAML_FIELD_END};

static const cyaml_schema_value_t answer_schema = {
    CYAML_VALUE_MAPPING(CYAML_FLAG_DEFAULT, yaml_answer_t, answer_fields),
};

static const cyaml_schema_field_t doc_fields[] = {
    CYAML_FIELD_SEQUENCE("answers", CYAML_FLAG_POINTER, yaml_doc_t, answers, &answer_schema, 1,
                         SB_ANSWERS_MAX_ENTRIES),
    CYAML_FIELD_END};

static const cyaml_schema_value_t doc_schema = {
    CYAML_VALUE_MAPPING(CYAML_FLAG_POINTER, yaml_doc_t, doc_fields),
};

/* The special entries. Prefix entries are glued in front of another answer and carry no
 * buttons; required ones must be present. */
typedef struct special {
    const char *name;
    bool required;
    bool prefix;
} special_t;

static const special_t specials[] = {
    {"_disclosure", true, true}, {"_fallback", true, false},     {"_handoff", true, false},
    {"_resumed", false, true},   {"_unsupported", false, false},
};
#define NSPECIALS (sizeof specials / sizeof specials[0])

#define HUMAN_BUTTON_ID "escalate:human"
#define PART_SEPARATOR "\n\n"

struct sb_answers {
    yaml_doc_t *doc;
    const yaml_answer_t *disclosure;
    const yaml_answer_t *fallback;
    const yaml_answer_t *handoff;
    const yaml_answer_t *resumed;     /* may be NULL */
    const yaml_answer_t *unsupported; /* may be NULL */
};

static const char *const locale_names[SB_LOCALE_COUNT] = {"en", "nl", "fr"};

/* ---- locales ---------------------------------------------------------------------------- */

sb_locale_t sb_locale_parse(const char *s, bool *found)
{
    if (found) *found = false;
    if (!s) return SB_LOCALE_EN;
    size_t n = strcspn(s, "-_");
    for (int i = 0; i < SB_LOCALE_COUNT; i++) {
        if (n == 2 && strncasecmp(s, locale_names[i], 2) == 0) {
            if (found) *found = true;
            return (sb_locale_t)i;
        }
    }
    return SB_LOCALE_EN;
}

const char *sb_locale_name(sb_locale_t loc)
{
    return (unsigned)loc < SB_LOCALE_COUNT ? locale_names[loc] : "en";
}

static const char *text_in(const yaml_text_t *t, sb_locale_t loc)
{
    if (!t) return NULL;
    switch (loc) {
    case SB_LOCALE_NL:
        return t->nl;
    case SB_LOCALE_FR:
        return t->fr;
    default:
        return t->en;
    }
}

/* The text in loc, else in English (always present after validation). */
static const char *text_or_en(const yaml_text_t *t, sb_locale_t loc)
{
    const char *s = text_in(t, loc);
    return s ? s : text_in(t, SB_LOCALE_EN);
}

/* ---- validation helpers ------------------------------------------------------------------ */

/* Counts the code points of s; false if s is not valid UTF-8 (overlongs and surrogates
 * included). With allow_newlines false, any control character is refused too. */
static bool utf8_chars(const char *s, bool allow_newlines, size_t *chars)
{
    return sb_utf8_check(s, strlen(s),
                         allow_newlines ? SB_UTF8_ALLOW_NEWLINE | SB_UTF8_ALLOW_TAB : 0, chars);
}

static bool is_intent_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > SB_ANSWERS_MAX_INTENT) return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_')) return false;
    }
    return true;
}

static const special_t *find_special(const char *name)
{
    for (size_t i = 0; i < NSPECIALS; i++)
        if (strcmp(specials[i].name, name) == 0) return &specials[i];
    return NULL;
}

static const yaml_answer_t *find_answer(const yaml_doc_t *doc, const char *intent)
{
    if (!doc || !intent) return NULL;
    for (unsigned i = 0; i < doc->answers_count; i++)
        if (strcmp(doc->answers[i].intent, intent) == 0) return &doc->answers[i];
    return NULL;
}

/* Checks one localized text: present in English, each locale non-empty, valid UTF-8, within
 * max characters. what names the field ("text", "buttons[2].title"). */
static bool check_text(const yaml_text_t *t, const char *intent, const char *what, size_t max,
                       bool allow_newlines, char *err, size_t errlen)
{
    if (!t || !t->en) {
        snprintf(err, errlen, "intent '%s': field '%s.en' is missing (every answer needs English)",
                 intent, what);
        return false;
    }
    for (int l = 0; l < SB_LOCALE_COUNT; l++) {
        const char *s = text_in(t, (sb_locale_t)l);
        size_t chars;
        if (!s) continue;
        if (!utf8_chars(s, allow_newlines, &chars)) {
            snprintf(err, errlen,
                     "intent '%s': field '%s.%s' is not valid UTF-8 or has control characters",
                     intent, what, locale_names[l]);
            return false;
        }
        if (chars == 0) {
            snprintf(err, errlen, "intent '%s': field '%s.%s' is empty", intent, what,
                     locale_names[l]);
            return false;
        }
        if (chars > max) {
            snprintf(err, errlen, "intent '%s': field '%s.%s' has %zu characters (max %zu)", intent,
                     what, locale_names[l], chars, max);
            return false;
        }
    }
    return true;
}

static bool check_answer(const yaml_answer_t *a, char *err, size_t errlen)
{
    const special_t *sp;

    if (!is_intent_name(a->intent)) {
        snprintf(err, errlen,
                 "field 'intent' must be 1-%d characters of a-z, 0-9 and _ (entry '%.64s')",
                 SB_ANSWERS_MAX_INTENT, a->intent);
        return false;
    }
    sp = find_special(a->intent);
    if (a->intent[0] == '_' && !sp) {
        snprintf(err, errlen,
                 "intent '%s': unknown special entry (known: _disclosure, _fallback, _handoff, "
                 "_resumed, _unsupported)",
                 a->intent);
        return false;
    }
    if (!check_text(a->text, a->intent, "text", SB_ANSWERS_MAX_TEXT, true, err, errlen))
        return false;
    if (a->buttons_count > SB_ANSWERS_MAX_BUTTONS) {
        snprintf(err, errlen, "intent '%s': field 'buttons' has %u buttons (max %d)", a->intent,
                 a->buttons_count, SB_ANSWERS_MAX_BUTTONS);
        return false;
    }
    if (sp && sp->prefix && a->buttons_count > 0) {
        snprintf(err, errlen,
                 "intent '%s': field 'buttons' is not allowed (this text is a prefix of another "
                 "answer)",
                 a->intent);
        return false;
    }
    for (unsigned b = 0; b < a->buttons_count; b++) {
        const yaml_button_t *btn = &a->buttons[b];
        char what[32];
        size_t idlen = strlen(btn->id), chars;
        if (idlen == 0 || idlen > SB_ANSWERS_MAX_ID || !utf8_chars(btn->id, false, &chars)) {
            snprintf(err, errlen,
                     "intent '%s': field 'buttons[%u].id' must be 1-%d bytes of printable UTF-8",
                     a->intent, b, SB_ANSWERS_MAX_ID);
            return false;
        }
        for (unsigned o = 0; o < b; o++) {
            if (strcmp(a->buttons[o].id, btn->id) == 0) {
                snprintf(err, errlen, "intent '%s': field 'buttons[%u].id' repeats buttons[%u]",
                         a->intent, b, o);
                return false;
            }
        }
        snprintf(what, sizeof what, "buttons[%u].title", b);
        if (!check_text(btn->title, a->intent, what, SB_ANSWERS_MAX_TITLE, false, err, errlen))
            return false;
    }
    return true;
}

static size_t chars_of(const char *s)
{
    size_t n = 0;
    if (s && !utf8_chars(s, true, &n)) n = 0;
    return n;
}

/* The longest message an entry can become: its text with the _disclosure and _resumed
 * prefixes in the same locale must still fit in one message. */
static bool check_composed(const sb_answers_t *A, const yaml_answer_t *a, char *err, size_t errlen)
{
    const special_t *sp = find_special(a->intent);
    if (sp && sp->prefix) return true;
    for (int l = 0; l < SB_LOCALE_COUNT; l++) {
        const char *s = text_in(a->text, (sb_locale_t)l);
        if (!s) continue;
        size_t sep = strlen(PART_SEPARATOR);
        size_t total = chars_of(s) + sep + chars_of(text_or_en(A->disclosure->text, l));
        if (A->resumed) total += sep + chars_of(text_or_en(A->resumed->text, l));
        if (total > SB_ANSWERS_MAX_TEXT) {
            snprintf(err, errlen,
                     "intent '%s': field 'text.%s' is too long once _disclosure/_resumed are "
                     "prefixed (%zu characters, max %d)",
                     a->intent, locale_names[l], total, SB_ANSWERS_MAX_TEXT);
            return false;
        }
    }
    return true;
}

static bool has_human_button(const yaml_answer_t *a)
{
    for (unsigned b = 0; b < a->buttons_count; b++)
        if (strcmp(a->buttons[b].id, HUMAN_BUTTON_ID) == 0) return true;
    return false;
}

static bool validate(sb_answers_t *A, char *err, size_t errlen)
{
    const yaml_doc_t *doc = A->doc;
    for (unsigned i = 0; i < doc->answers_count; i++) {
        const yaml_answer_t *a = &doc->answers[i];
        if (!check_answer(a, err, errlen)) return false;
        for (unsigned j = 0; j < i; j++) {
            if (strcmp(doc->answers[j].intent, a->intent) == 0) {
                snprintf(err, errlen, "intent '%s': field 'intent' appears twice", a->intent);
                return false;
            }
        }
    }
    for (size_t s = 0; s < NSPECIALS; s++) {
        if (specials[s].required && !find_answer(doc, specials[s].name)) {
            snprintf(err, errlen, "intent '%s': entry is missing (it is required)",
                     specials[s].name);
            return false;
        }
    }
    A->disclosure = find_answer(doc, "_disclosure");
    A->fallback = find_answer(doc, "_fallback");
    A->handoff = find_answer(doc, "_handoff");
    A->resumed = find_answer(doc, "_resumed");
    A->unsupported = find_answer(doc, "_unsupported");
    if (!has_human_button(A->fallback)) {
        snprintf(err, errlen,
                 "intent '_fallback': field 'buttons' must offer a human (a button with id '%s')",
                 HUMAN_BUTTON_ID);
        return false;
    }
    for (unsigned i = 0; i < doc->answers_count; i++)
        if (!check_composed(A, &doc->answers[i], err, errlen)) return false;
    return true;
}

/* ---- loading ----------------------------------------------------------------------------- */

/* libcyaml reports what it refused through its log callback: keep the error lines (they name
 * keys and positions, never values) for the message we return. */
typedef struct cyaml_errbuf {
    char text[512];
    size_t len;
} cyaml_errbuf_t;

static void cyaml_capture(cyaml_log_t level, void *ctx, const char *fmt, va_list args)
{
    cyaml_errbuf_t *eb = ctx;
    char line[256];
    if (level < CYAML_LOG_ERROR) return;
    vsnprintf(line, sizeof line, fmt, args);
    line[strcspn(line, "\n")] = '\0';
    const char *p = line;
    if (strncmp(p, "Load: ", 6) == 0) p += 6;
    while (*p == ' ')
        p++;
    if (*p == '\0' || strcmp(p, "Backtrace:") == 0) return;
    int w = snprintf(eb->text + eb->len, sizeof eb->text - eb->len, "%s%s", eb->len ? "; " : "", p);
    if (w > 0) {
        eb->len += (size_t)w;
        if (eb->len >= sizeof eb->text) eb->len = sizeof eb->text - 1;
    }
}

static void free_doc(yaml_doc_t *doc)
{
    if (!doc) return;
    const cyaml_config_t cfg = {.mem_fn = cyaml_mem, .log_level = CYAML_LOG_ERROR};
    cyaml_free(&cfg, &doc_schema, doc, 0);
}

sb_result_t sb_answers_parse(sb_answers_t **out, const char *yaml, size_t len, char *err,
                             size_t errlen)
{
    sb_result_t r = SB_E_CONFIG;
    cyaml_errbuf_t eb = {.len = 0};
    yaml_doc_t *doc = NULL;
    sb_answers_t *A = NULL;
    const cyaml_config_t cfg = {
        .log_fn = cyaml_capture,
        .log_ctx = &eb,
        .mem_fn = cyaml_mem,
        .log_level = CYAML_LOG_ERROR,
        .flags = CYAML_CFG_NO_ALIAS,
    };

    if (len > SB_ANSWERS_MAX_FILE_BYTES) {
        snprintf(err, errlen, "answers: %zu bytes (max %u)", len, SB_ANSWERS_MAX_FILE_BYTES);
        r = SB_E_TOO_LARGE;
        goto fail;
    }
    cyaml_err_t ce =
        cyaml_load_data((const uint8_t *)yaml, len, &cfg, &doc_schema, (cyaml_data_t **)&doc, NULL);
    if (ce != CYAML_OK || !doc) {
        snprintf(err, errlen, "not a valid answers file: %s",
                 eb.len           ? eb.text
                 : ce == CYAML_OK ? "the document is empty (expected a top-level 'answers:' list)"
                                  : cyaml_strerror(ce));
        goto fail;
    }
    A = sb_xcalloc(1, sizeof *A);
    A->doc = doc;
    doc = NULL;
    if (!validate(A, err, errlen)) goto fail;
    *out = A;
    return SB_OK;

fail:
    free_doc(doc);
    sb_answers_destroy(A);
    return r;
}

sb_result_t sb_answers_load(sb_answers_t **out, const char *path, char *err, size_t errlen)
{
    char *data = NULL;
    size_t len = 0;
    char inner[512];
    sb_result_t r = sb_read_file(path, SB_ANSWERS_MAX_FILE_BYTES, &data, &len);
    if (r != SB_OK) {
        snprintf(err, errlen, "answers file %s: cannot read it (%s)", path, sb_result_str(r));
        return r;
    }
    r = sb_answers_parse(out, data, len, inner, sizeof inner);
    if (r != SB_OK) snprintf(err, errlen, "answers file %s: %s", path, inner);
    free(data);
    return r;
}

void sb_answers_destroy(sb_answers_t *a)
{
    if (!a) return;
    free_doc(a->doc);
    free(a);
}

size_t sb_answers_count(const sb_answers_t *a)
{
    return a ? a->doc->answers_count : 0;
}

const char *sb_answers_intent(const sb_answers_t *a, size_t i)
{
    return i < sb_answers_count(a) ? a->doc->answers[i].intent : NULL;
}

bool sb_answers_has(const sb_answers_t *a, const char *intent)
{
    return a && find_answer(a->doc, intent) != NULL;
}

/* ---- choosing ---------------------------------------------------------------------------- */

const char *sb_answer_outcome_name(sb_answer_outcome_t o)
{
    switch (o) {
    case SB_ANSWER_ANSWERED:
        return "answered";
    case SB_ANSWER_FALLBACK:
        return "fallback";
    case SB_ANSWER_HANDOFF:
        return "handoff";
    case SB_ANSWER_UNSUPPORTED:
        return "unsupported";
    }
    return "unknown";
}

/* An ordinary (non-special) entry for intent, or NULL. Customers' classifiers never reach the
 * special entries by naming them. */
static const yaml_answer_t *ordinary(const sb_answers_t *A, const char *intent)
{
    if (!intent || intent[0] == '\0' || intent[0] == '_') return NULL;
    if (strcmp(intent, "out_of_scope") == 0) return NULL;
    return find_answer(A->doc, intent);
}

void sb_answers_choose(const sb_answers_t *A, const sb_answer_request_t *req, sb_answer_t *out)
{
    const yaml_answer_t *a = NULL;
    sb_answer_outcome_t outcome = SB_ANSWER_ANSWERED;
    sb_buf_t text = {0};

    memset(out, 0, sizeof *out);
    if (req->escalated) {
        a = A->handoff;
        outcome = SB_ANSWER_HANDOFF;
    } else if (req->unsupported) {
        a = A->unsupported ? A->unsupported : A->fallback;
        outcome = A->unsupported ? SB_ANSWER_UNSUPPORTED : SB_ANSWER_FALLBACK;
    } else {
        /* A tapped "intent:<name>" button is exact; otherwise trust the classifier. */
        const char *p = req->button_payload;
        if (p && strncmp(p, "intent:", 7) == 0) a = ordinary(A, p + 7);
        if (!a) a = ordinary(A, req->intent);
        if (!a) {
            a = A->fallback;
            outcome = SB_ANSWER_FALLBACK;
        }
    }

    /* One language for the whole message: the requested one if this entry speaks it. */
    sb_locale_t loc = sb_locale_parse(req->locale, NULL);
    if (!text_in(a->text, loc)) loc = SB_LOCALE_EN;

    if (req->first_bot_message) {
        sb_buf_appendf(&text, "%s%s", text_or_en(A->disclosure->text, loc), PART_SEPARATOR);
    }
    if (req->resumed_after_agent && A->resumed) {
        sb_buf_appendf(&text, "%s%s", text_or_en(A->resumed->text, loc), PART_SEPARATOR);
    }
    sb_buf_appendf(&text, "%s", text_in(a->text, loc));

    out->outcome = outcome;
    out->intent = a->intent;
    out->locale = loc;
    out->text = text.data;
    for (unsigned b = 0; b < a->buttons_count && b < SB_ANSWERS_MAX_BUTTONS; b++) {
        out->buttons[b].id = a->buttons[b].id;
        out->buttons[b].title = text_or_en(a->buttons[b].title, loc);
        out->nbuttons++;
    }
}

void sb_answer_clear(sb_answer_t *ans)
{
    if (!ans) return;
    free(ans->text);
    memset(ans, 0, sizeof *ans);
}
