/* application/x-www-form-urlencoded, both ways: the parser behind Twilio's webhooks (every
 * parameter takes part in X-Twilio-Signature) and Slack's slash commands and interactivity
 * requests (`payload=<JSON>`), and the encoder of Twilio's Messages API request bodies.
 *
 * Data flow: raw body bytes --sb_form_parse--> sb_form_t (decoded name/value pairs in body
 * order, empty values and repeated names kept) --sb_form_get / sb_form_sort--> channel code.
 * Decoding: '+' is a space, %XX a byte (hex in either case); a '%' without two hex digits is
 * an error, never guessed. Pairs are split on '&'; an empty pair ("a=1&&b=2") is skipped; a
 * pair without '=' is a name with an empty value. Bounded: at most max_params pairs, and every
 * decoded string is no longer than its encoded form, so memory is linear in the body.
 *
 * Pure and reentrant: any thread. */
#ifndef SB_ROUTER_FORM_H
#define SB_ROUTER_FORM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sb/result.h"
#include "sb/util.h"

/* One decoded pair. Both strings are NUL-terminated heap copies owned by the form; a decoded
 * "%00" makes strlen shorter than the *_len, so use the lengths. */
typedef struct sb_form_param {
    char *name;
    size_t name_len;
    char *value;
    size_t value_len;
} sb_form_param_t;

typedef struct sb_form {
    sb_form_param_t *params; /* n pairs, in body order until sb_form_sort */
    size_t n;
} sb_form_t;

/* Flags of sb_form_parse. */
#define SB_FORM_UTF8                                                                               \
    1u /* decoded names and values must be valid UTF-8 (no overlongs, no                           \
          surrogates) and contain no NUL byte */

/* Parses len bytes of body into *out (written only on success; the caller frees it with
 * sb_form_free). SB_E_INVALID on a bad percent escape, on invalid UTF-8 / NUL when
 * SB_FORM_UTF8 is set, or when there are more than max_params pairs. An empty body is a valid
 * empty form. */
SB_MUST_CHECK sb_result_t sb_form_parse(const uint8_t *body, size_t len, size_t max_params,
                                        unsigned flags, sb_form_t *out);
/* The value of the first pair named name, or NULL when there is none. Borrowed from f. */
const char *sb_form_get(const sb_form_t *f, const char *name);
/* Sorts the pairs by name, then value, comparing bytes (unsigned) with the shorter string
 * first on a common prefix: the order Twilio's signature uses. Stable for equal pairs. */
void sb_form_sort(sb_form_t *f);
/* Frees everything f owns and zeroes it. Safe on a zeroed form. */
void sb_form_free(sb_form_t *f);

/* Appends "name=value" (with a leading '&' unless out is empty) to out, both percent-encoded
 * for a form body: A-Z a-z 0-9 - . _ ~ * as they are, space as '+', every other byte as %XX
 * (upper-case hex). out stays NUL-terminated (sb_buf_t keeps a NUL after len). */
void sb_form_append(sb_buf_t *out, const char *name, const char *value);

/* True when s[0..len) is valid UTF-8 (shortest forms, no surrogates, <= U+10FFFF). */
bool sb_form_is_utf8(const char *s, size_t len);

#endif
