/* Redaction: before any text reaches the bus, e-mail addresses, phone numbers, payment card
 * numbers (Luhn-checked) and IBANs (mod-97 checked) become typed placeholders such as
 * "[EMAIL_1]"; the originals travel only inside the sealed contact part. PCRE2 lives here. */
#ifndef SB_REDACT_H
#define SB_REDACT_H

#include <stddef.h>

#include "result.h"

typedef struct sb_redaction {
    char *placeholder; /* "[EMAIL_1]", "[PHONE_1]", "[CARD_1]", "[IBAN_1]" */
    char *original;
} sb_redaction_t;

typedef struct sb_redacted {
    char *text;            /* the redacted text, NUL-terminated */
    size_t len;            /* bytes in text, without the NUL (text may hold U+0000) */
    sb_redaction_t *items; /* in order of appearance */
    size_t nitems;
} sb_redacted_t;

/* Compiles the patterns once; call at start-up (idempotent, thread-safe after). */
SB_MUST_CHECK sb_result_t sb_redact_init(void);
/* Redacts len bytes of UTF-8 text (SB_E_TOO_LARGE above 64 KiB). The caller frees out with
 * sb_redacted_free. Any thread. */
SB_MUST_CHECK sb_result_t sb_redact(const char *text, size_t len, sb_redacted_t *out);
void sb_redacted_free(sb_redacted_t *r);

#endif
