/* sbnlu: Switchboard's natural-language understanding library, used by the classifier worker
 * and by the `switchboard train|predict|eval` commands.
 *
 * Data flow for one message:
 *   text ─► sb_nlu_work_tokenize (utf8proc NFKC + case fold + accent strip, class tokens for
 *           numbers, URLs, e-mails, redaction placeholders, emoji)
 *        ─► language id (lexicon vote + libexttextcat, locale hint for very short texts)
 *        ─► rules (built-in "talk to a human" guarantees + business YAML keywords/regexes;
 *           a match overrides the model)
 *        ─► model (hashed word uni/bigrams + char 3–5-grams → linear softmax, temperature
 *           calibrated, stored rejection threshold)
 *        ─► sentiment (lexicon with negation and intensifiers)
 *        ─► sb_nlu_result_t
 *
 * Threads: a loaded model, rule set and language identifier are immutable and may be shared
 * by any number of threads. A work area (sb_nlu_work_t) holds one thread's scratch buffers:
 * one per thread, never shared. */
#ifndef SB_NLU_H
#define SB_NLU_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "sb/result.h"

/* Bounds on everything that comes from outside (training files, model files, messages). */
#define SB_NLU_MAX_TEXT 4096u        /* bytes of a message considered; the rest is ignored */
#define SB_NLU_MAX_LINE 8192u        /* bytes of one training line */
#define SB_NLU_MAX_FILE (256u << 20) /* bytes of one training or model file */
#define SB_NLU_MAX_LABELS 1024u      /* intents in one model */
#define SB_NLU_MAX_LABEL_LEN 64u     /* bytes of one intent name */
#define SB_NLU_MAX_EXAMPLES 2000000u /* examples in one training run */
#define SB_NLU_MAX_ROWS (1u << 24)   /* feature rows in one model */
#define SB_NLU_TOPK 5                /* ranking length reported */
#define SB_NLU_LANG_LEN 8            /* "en" + NUL, room for longer codes */

/* The intent written when the top confidence is below the model's rejection threshold. */
#define SB_NLU_OUT_OF_SCOPE "out_of_scope"
/* The intent every "I want a human" request maps to. */
#define SB_NLU_HUMAN_HANDOFF "human_handoff"

/* ---------------------------------------------------------------------------------------- */
/* Hashing                                                                                    */

/* FNV-1a 32-bit over n bytes, starting from seed (use 0 for the standard offset basis).
 * Stable across platforms and releases: model files depend on it. */
uint32_t sb_nlu_hash(const void *data, size_t n, uint32_t seed);
/* FNV-1a 64-bit, used for the model version. */
uint64_t sb_nlu_hash64(const void *data, size_t n, uint64_t seed);

/* ---------------------------------------------------------------------------------------- */
/* Work area and tokenizer                                                                    */

typedef enum sb_nlu_tok_kind {
    SB_NLU_TOK_WORD = 0,
    SB_NLU_TOK_NUMBER,      /* "<num>" */
    SB_NLU_TOK_CODE,        /* letters and at least two digits, e.g. an order number: "<code>" */
    SB_NLU_TOK_URL,         /* "<url>" */
    SB_NLU_TOK_EMAIL,       /* "<email>" */
    SB_NLU_TOK_PLACEHOLDER, /* "[PHONE_1]" → "<phone>" */
    SB_NLU_TOK_EMOJI,       /* one pictographic symbol, kept as itself */
} sb_nlu_tok_kind_t;

/* One token. s points into the work area (or a static string) and is valid until the next
 * tokenize call on the same work area. s is not NUL-terminated: use len. */
typedef struct sb_nlu_token {
    const char *s;
    uint32_t len;
    sb_nlu_tok_kind_t kind;
} sb_nlu_token_t;

typedef struct sb_nlu_work sb_nlu_work_t;

/* Creates a work area. Owned by the caller, used by one thread at a time. */
sb_nlu_work_t *sb_nlu_work_create(void);
void sb_nlu_work_destroy(sb_nlu_work_t *w);

/* Normalizes text (UTF-8, at most SB_NLU_MAX_TEXT bytes are used; invalid sequences become
 * spaces) with NFKC, case folding and, with strip_accents, removal of combining marks, then
 * splits it into tokens. Returns the number of tokens; *toks (may be NULL) receives the array,
 * valid until the next call on w. */
size_t sb_nlu_work_tokenize(sb_nlu_work_t *w, const char *text, size_t len, bool strip_accents,
                            const sb_nlu_token_t **toks);
/* The normalized text of the last tokenize call (NUL-terminated, owned by w). */
const char *sb_nlu_work_normalized(const sb_nlu_work_t *w, size_t *len);

/* How a model turns tokens into hashed features. Stored in the model file. */
typedef struct sb_nlu_featcfg {
    uint32_t hash_bits; /* features are hashed into 2^hash_bits buckets (20..26) */
    uint32_t char_min;  /* char n-grams inside "<word>", lengths char_min..char_max; */
    uint32_t char_max;  /* char_max 0 = no char n-grams (max 6) */
    bool word_bigrams;
    bool strip_accents;
    bool stem;         /* add the libstemmer stem of each word for the text's language */
    bool idf;          /* weight features by their inverse document frequency in training */
    float char_weight; /* weight of char n-gram features relative to words */
    float bigram_weight;
} sb_nlu_featcfg_t;

/* The defaults the trainer uses (22 bits, char 3–5, bigrams, accents stripped, ...). */
void sb_nlu_featcfg_default(sb_nlu_featcfg_t *cfg);

/* Features of the tokens of the last tokenize call: bucket ids and values (L2-normalized).
 * lang (may be NULL) selects the stemmer when cfg->stem. Returns the count; arrays owned by w,
 * valid until the next featurize call. Duplicate ids are merged. */
size_t sb_nlu_work_featurize(sb_nlu_work_t *w, const sb_nlu_featcfg_t *cfg, const char *lang,
                             const uint32_t **ids, const float **vals);

/* ---------------------------------------------------------------------------------------- */
/* Training data                                                                              */

typedef struct sb_nlu_example {
    char *text;
    uint32_t label; /* index into sb_nlu_dataset_t.labels */
} sb_nlu_example_t;

typedef struct sb_nlu_dataset {
    sb_nlu_example_t *ex;
    size_t n, cap;
    char **labels; /* distinct intent names in order of first appearance */
    size_t nlabels, labels_cap;
} sb_nlu_dataset_t;

/* Appends the examples of path to ds (zero-initialise ds first). The format is chosen by the
 * extension: .yml/.yaml = Rasa-like nlu YAML (see docs/classifier.md), anything else = TSV
 * `text<TAB>intent`. Lines, file size, label count and names are bounded; errors name
 * file:line in err. Blank lines and lines starting with '#' are skipped in TSV. */
SB_MUST_CHECK sb_result_t sb_nlu_dataset_load(sb_nlu_dataset_t *ds, const char *path, char *err,
                                              size_t errlen);
/* Appends one example (text and label copied). SB_E_INVALID for a bad label name,
 * SB_E_TOO_LARGE when a bound is exceeded. */
SB_MUST_CHECK sb_result_t sb_nlu_dataset_add(sb_nlu_dataset_t *ds, const char *text,
                                             size_t text_len, const char *label);
/* Splits ds into train and val (both zero-initialised here; the caller frees them): per
 * intent, round(frac * count) examples drawn with seed go to val (at least one when frac > 0),
 * except that intents with fewer than 5 examples stay whole in train. Order is kept. */
void sb_nlu_dataset_split(const sb_nlu_dataset_t *ds, float frac, uint64_t seed,
                          sb_nlu_dataset_t *train, sb_nlu_dataset_t *val);
/* Index of label in ds, or -1. */
int sb_nlu_dataset_label(const sb_nlu_dataset_t *ds, const char *label);
void sb_nlu_dataset_free(sb_nlu_dataset_t *ds);
/* True when name is a valid intent name: 1..64 printable ASCII characters other than space,
 * quotes, backslash, braces, comma and '=' (e.g. "order_status", "reverted_card_payment?"). */
bool sb_nlu_is_label(const char *name);

/* ---------------------------------------------------------------------------------------- */
/* Model                                                                                      */

typedef struct sb_nlu_model sb_nlu_model_t;

typedef struct sb_nlu_train_opts {
    uint64_t seed;
    uint32_t epochs;
    float lr;           /* AdaGrad base learning rate */
    float l2;           /* L2 penalty, applied to the rows a step touches */
    uint32_t min_count; /* features seen fewer times are dropped */
    bool quantize;      /* store weights as int8 with a per-row scale */
    bool word_sums;     /* store each training word's char n-grams summed into one row
                           (same scores, faster prediction) */
    bool calibrate;     /* temperature scaling on val (when val given) */
    float threshold;    /* stored rejection threshold when no oos validation is given */
    sb_nlu_featcfg_t feat;
    const sb_nlu_dataset_t *val;       /* optional: in-scope validation (labels by name) */
    const sb_nlu_dataset_t *oos_val;   /* optional: out-of-scope validation */
    const sb_nlu_dataset_t *oos_train; /* optional: out-of-scope examples, trained towards a
                                          uniform distribution (outlier exposure) */
    float oos_weight;                  /* weight of each oos_train example (default 1) */
    float dropout;                     /* probability of dropping a feature in a step */
    uint32_t ensemble;                 /* members trained with different seeds, averaged */
    uint32_t hidden;                   /* hidden units per member beside the linear part
                                          (0 = linear only) */
    bool hidden_auto;                  /* no hidden layer when the data has fewer than 50
                                          examples per intent on average (the default;
                                          an explicit hidden count turns it off) */
    float hidden_lr;                   /* AdaGrad rate of the hidden part (0 = lr) */
    float hidden_init;                 /* embeddings start uniform in ±hidden_init */
    bool hidden_chars;                 /* the hidden layer also reads the char n-grams and
                                          stems (bigger, slower model; no word sums) */
    uint32_t knn_k;                    /* neighbours in the example memory's vote */
    float knn_weight;                  /* share of that vote in the probabilities (0 = no
                                          memory stored) */
    uint32_t augment;                  /* WordNet synonym copies of each example (0 = none) */
    float augment_p;                   /* probability of replacing a word in such a copy */
    bool verbose;                      /* progress lines on stderr */
} sb_nlu_train_opts_t;

void sb_nlu_train_opts_default(sb_nlu_train_opts_t *o);

typedef struct sb_nlu_train_report {
    size_t examples, labels, rows;
    uint32_t hidden; /* hidden units stored (all members side by side; 0: linear only) */
    float temperature, threshold;
    float val_accuracy;  /* argmax accuracy on val, -1 when no val */
    float val_objective; /* (in-scope acc + oos recall) / 2 at the threshold, -1 if n/a */
    float knn_weight;    /* the example memory's share chosen on validation (0: none kept) */
    double seconds;
} sb_nlu_train_report_t;

/* Trains a model on train (deterministic for a given opts->seed). The caller owns *out.
 * report may be NULL. Single-threaded; any thread. */
SB_MUST_CHECK sb_result_t sb_nlu_train(sb_nlu_model_t **out, const sb_nlu_dataset_t *train,
                                       const sb_nlu_train_opts_t *opts,
                                       sb_nlu_train_report_t *report, char *err, size_t errlen);

/* Replaces the stored temperature and threshold (e.g. chosen on a carved-out validation set
 * before the model was refit on all the data); the version changes with them. */
void sb_nlu_model_set_calibration(sb_nlu_model_t *m, float temperature, float threshold);

/* Writes the model to path atomically (temporary file + rename). */
SB_MUST_CHECK sb_result_t sb_nlu_model_save(const sb_nlu_model_t *m, const char *path, char *err,
                                            size_t errlen);
/* Serializes the model into a new heap buffer (caller frees with free()). */
void sb_nlu_model_serialize(const sb_nlu_model_t *m, uint8_t **out, size_t *len);
/* Loads and fully validates a model file (magic, version, bounds, checksum). */
SB_MUST_CHECK sb_result_t sb_nlu_model_load(sb_nlu_model_t **out, const char *path, char *err,
                                            size_t errlen);
SB_MUST_CHECK sb_result_t sb_nlu_model_parse(sb_nlu_model_t **out, const uint8_t *data, size_t len,
                                             char *err, size_t errlen);
void sb_nlu_model_destroy(sb_nlu_model_t *m);

/* "<16 hex digits>": a hash of the model's contents; valid while m lives. */
const char *sb_nlu_model_version(const sb_nlu_model_t *m);
size_t sb_nlu_model_nlabels(const sb_nlu_model_t *m);
const char *sb_nlu_model_label(const sb_nlu_model_t *m, size_t i);
size_t sb_nlu_model_rows(const sb_nlu_model_t *m);
float sb_nlu_model_threshold(const sb_nlu_model_t *m);
float sb_nlu_model_temperature(const sb_nlu_model_t *m);
const sb_nlu_featcfg_t *sb_nlu_model_featcfg(const sb_nlu_model_t *m);

typedef struct sb_nlu_score {
    const char *intent; /* owned by the model */
    float confidence;
} sb_nlu_score_t;

typedef struct sb_nlu_prediction {
    int label;        /* argmax index, -1 when the model has no labels */
    float confidence; /* calibrated top probability */
    float margin;     /* top1 - top2 probability */
    size_t ntop;
    sb_nlu_score_t top[SB_NLU_TOPK];
} sb_nlu_prediction_t;

/* Predicts from the tokens of the last sb_nlu_work_tokenize call on w (tokenized with
 * sb_nlu_model_featcfg(m)->strip_accents). lang (may be NULL) selects the stemmer. */
void sb_nlu_model_predict_tokens(const sb_nlu_model_t *m, sb_nlu_work_t *w, const char *lang,
                                 sb_nlu_prediction_t *out);
/* Tokenizes text and predicts. */
void sb_nlu_model_predict(const sb_nlu_model_t *m, sb_nlu_work_t *w, const char *text, size_t len,
                          const char *lang, sb_nlu_prediction_t *out);
/* Raw (uncalibrated) scores of the last tokenized text into logits[nlabels]. */
void sb_nlu_model_logits(const sb_nlu_model_t *m, sb_nlu_work_t *w, const char *lang,
                         float *logits);

/* ---------------------------------------------------------------------------------------- */
/* Rules                                                                                      */

typedef struct sb_nlu_rules sb_nlu_rules_t;

/* Loads the built-in guarantees ("talk to a human", "medewerker", "conseiller", ... →
 * human_handoff) and, when path is non-NULL and non-empty, the business rules of that YAML
 * file (format in docs/classifier.md; keywords and PCRE2 patterns per language). A bad file is
 * an error naming the file and rule. The caller owns *out; immutable afterwards. */
SB_MUST_CHECK sb_result_t sb_nlu_rules_load(sb_nlu_rules_t **out, const char *path, char *err,
                                            size_t errlen);
void sb_nlu_rules_destroy(sb_nlu_rules_t *r);
size_t sb_nlu_rules_count(const sb_nlu_rules_t *r);

/* Matches the normalized text of the last tokenize call on w (accent-stripped) against the
 * rules for lang (rules without a language apply to all). On a match writes the intent and
 * the rule name (both owned by r) and returns true. Business rules are tried before the
 * built-in ones. */
bool sb_nlu_rules_match(const sb_nlu_rules_t *r, sb_nlu_work_t *w, const char *lang,
                        const char **intent, const char **rule);

/* Button payload rules: "intent:<name>" → name, "escalate:human" → human_handoff. Writes the
 * intent into buf (size n) and returns true when payload is one of them. */
bool sb_nlu_payload_intent(const char *payload, char *buf, size_t n);

/* ---------------------------------------------------------------------------------------- */
/* Language identification                                                                    */

typedef struct sb_nlu_langid sb_nlu_langid_t;

/* Loads the libexttextcat fingerprints of en, nl, fr, de and es from datadir (NULL: the
 * default /usr/share/libexttextcat). Without them the lexicon vote alone is used (and
 * *out is still created; the error is only logged by the caller through the result). */
SB_MUST_CHECK sb_result_t sb_nlu_langid_create(sb_nlu_langid_t **out, const char *datadir);
void sb_nlu_langid_destroy(sb_nlu_langid_t *li);

/* Detects the language of text whose tokens are the last tokenize call on w (accent-stripped).
 * locale_hint (may be NULL or "", e.g. "en-GB") decides when the text is too short to tell.
 * Returns a static ISO 639-1 code among en, nl, fr, de, es; "en" by default. */
const char *sb_nlu_langid_detect(const sb_nlu_langid_t *li, sb_nlu_work_t *w, const char *text,
                                 size_t len, const char *locale_hint);

/* ---------------------------------------------------------------------------------------- */
/* Sentiment                                                                                  */

/* Sentiment in [-1, 1] of the tokens of the last tokenize call on w (accent-stripped), with
 * the lexicon of lang (en, nl, fr; others use all three). Negators flip and dampen the next
 * words, intensifiers scale them. Any thread (w is the caller's). */
float sb_nlu_sentiment(sb_nlu_work_t *w, const char *lang);

/* ---------------------------------------------------------------------------------------- */
/* The whole pipeline                                                                         */

typedef struct sb_nlu {
    sb_nlu_model_t *model;   /* may be NULL: rules only */
    sb_nlu_rules_t *rules;   /* may be NULL */
    sb_nlu_langid_t *langid; /* may be NULL: lexicon only */
    bool apply_threshold;    /* below the model threshold → out_of_scope */
} sb_nlu_t;

typedef struct sb_nlu_result {
    char language[SB_NLU_LANG_LEN];
    const char *intent; /* owned by model/rules or static; "" when nothing applies */
    float confidence;
    float margin;
    size_t ntop;
    sb_nlu_score_t top[SB_NLU_TOPK];
    float sentiment;
    const char *rule;                              /* rule name when a rule decided, else "" */
    const char *model_version;                     /* "" without a model */
    char payload_intent[SB_NLU_MAX_LABEL_LEN + 1]; /* storage for a payload-decided intent */
} sb_nlu_result_t;

/* Classifies one text (bounded to SB_NLU_MAX_TEXT bytes). locale_hint may be NULL. The result
 * borrows strings from nlu and stays valid while nlu's parts live (payload_intent inside it). */
void sb_nlu_classify(const sb_nlu_t *nlu, sb_nlu_work_t *w, const char *text, size_t len,
                     const char *locale_hint, sb_nlu_result_t *out);
/* Classifies a tapped button: a payload rule decides when it matches (confidence 1), else the
 * button title (or payload) text is classified. */
void sb_nlu_classify_button(const sb_nlu_t *nlu, sb_nlu_work_t *w, const char *payload,
                            const char *title, const char *locale_hint, sb_nlu_result_t *out);

/* ---------------------------------------------------------------------------------------- */
/* Commands called by the `switchboard` CLI. argv[0] is the command name ("train", ...), the
 * options follow. They print to stdout/stderr and return a process exit status (0 = success,
 * 1 = failure, 2 = usage error). Main thread. */
int sb_nlu_cmd_train(int argc, char **argv);
int sb_nlu_cmd_predict(int argc, char **argv);
int sb_nlu_cmd_eval(int argc, char **argv);

#endif
