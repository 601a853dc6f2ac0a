/* Answers: the bot's words, written by the business team in a YAML file (config/answers.yaml,
 * documented in docs/answers.md). The file is read once (and again on SIGHUP), bounded,
 * parsed with libcyaml into plain structs and validated completely; then, for each BotTurn,
 * sb_answers_choose picks the entry (by intent, button payload, or one of the special entries
 * _fallback, _handoff, _unsupported), the locale (en, nl, fr; anything else falls back to en),
 * and composes the text with the _disclosure and _resumed prefixes when they apply.
 * Pure functions with no I/O besides the file read: the unit tests drive them directly. */
#ifndef SB_RESPONDER_ANSWERS_H
#define SB_RESPONDER_ANSWERS_H

#include <stdbool.h>
#include <stddef.h>

#include "sb/result.h"

#define SB_ANSWERS_MAX_FILE_BYTES (1024u * 1024u)
#define SB_ANSWERS_MAX_TEXT 4096  /* characters (code points) of one message, prefixes included */
#define SB_ANSWERS_MAX_BUTTONS 10 /* per answer */
#define SB_ANSWERS_MAX_TITLE 20   /* characters of a button title */
#define SB_ANSWERS_MAX_ID 256     /* bytes of a button id (the payload) */
#define SB_ANSWERS_MAX_INTENT 64  /* bytes of an intent name */
#define SB_ANSWERS_MAX_ENTRIES 1000

/* The locales an answer can be written in. The first is the fallback for everything else. */
typedef enum sb_locale {
    SB_LOCALE_EN = 0,
    SB_LOCALE_NL,
    SB_LOCALE_FR,
    SB_LOCALE_COUNT
} sb_locale_t;

/* Maps "nl", "NL", "nl-BE", "fr_FR" to their locale. *found (may be NULL) tells whether s named
 * a supported locale; NULL, "" and unknown ones give SB_LOCALE_EN. */
sb_locale_t sb_locale_parse(const char *s, bool *found);
/* "en", "nl", "fr". */
const char *sb_locale_name(sb_locale_t loc);

typedef struct sb_answers sb_answers_t;

/* Reads path (at most SB_ANSWERS_MAX_FILE_BYTES), parses and validates it. On error writes a
 * message naming the path, the intent and the field to err and returns SB_E_CONFIG (or SB_E_IO
 * / SB_E_TOO_LARGE for the read); *out is written only on success. The caller owns *out and
 * frees it with sb_answers_destroy. Any thread. */
SB_MUST_CHECK sb_result_t sb_answers_load(sb_answers_t **out, const char *path, char *err,
                                          size_t errlen);
/* Same from a buffer of len bytes (borrowed). */
SB_MUST_CHECK sb_result_t sb_answers_parse(sb_answers_t **out, const char *yaml, size_t len,
                                           char *err, size_t errlen);
/* Safe with NULL. Invalidates every pointer returned by the functions below. */
void sb_answers_destroy(sb_answers_t *a);

/* Number of entries and the intent name of entry i (special entries included), borrowed from a.
 * Used to register the bounded set of metric labels. */
size_t sb_answers_count(const sb_answers_t *a);
const char *sb_answers_intent(const sb_answers_t *a, size_t i);
/* True if the file has an entry for intent (special names such as "_fallback" included). */
bool sb_answers_has(const sb_answers_t *a, const char *intent);

typedef enum sb_answer_outcome {
    SB_ANSWER_ANSWERED = 0, /* an entry for the intent */
    SB_ANSWER_FALLBACK,     /* unknown / empty / out_of_scope intent, or no entry: _fallback */
    SB_ANSWER_HANDOFF,      /* the turn was escalated to humans: _handoff */
    SB_ANSWER_UNSUPPORTED,  /* a message type we cannot read: _unsupported (else _fallback) */
} sb_answer_outcome_t;

/* "answered", "fallback", "handoff", "unsupported". */
const char *sb_answer_outcome_name(sb_answer_outcome_t o);

/* What the responder knows about a turn. All strings borrowed, each may be NULL. */
typedef struct sb_answer_request {
    const char *intent;         /* the classified intent */
    const char *button_payload; /* payload of a tapped button ("intent:<name>" selects <name>) */
    const char *locale;         /* BotTurn.locale, else the classifier's language */
    bool first_bot_message;     /* prefix _disclosure */
    bool resumed_after_agent;   /* prefix _resumed when the file has it */
    bool escalated;             /* answer with _handoff */
    bool unsupported;           /* the customer's message was of a type we cannot read */
} sb_answer_request_t;

typedef struct sb_answer_button {
    const char *id;    /* borrowed from the answers */
    const char *title; /* in the answer's locale, borrowed from the answers */
} sb_answer_button_t;

/* A composed answer. intent, button ids and titles are borrowed from the sb_answers_t it came
 * from (valid until that is destroyed); text is owned: release with sb_answer_clear. */
typedef struct sb_answer {
    sb_answer_outcome_t outcome;
    const char *intent; /* entry used: "greeting", "_fallback", "_handoff", "_unsupported" */
    sb_locale_t locale; /* locale of the text actually used */
    char *text;
    sb_answer_button_t buttons[SB_ANSWERS_MAX_BUTTONS];
    size_t nbuttons;
} sb_answer_t;

/* Chooses and composes the answer to req. Never fails on a validated sb_answers_t: anything it
 * cannot answer gets _fallback. Same thread as the owner of a (no internal locking). */
void sb_answers_choose(const sb_answers_t *a, const sb_answer_request_t *req, sb_answer_t *out);
void sb_answer_clear(sb_answer_t *ans);

#endif
