/* Redaction: the router runs every customer text through sb_redact before it reaches the bus.
 * PCRE2 (8-bit, UTF mode) lives here and nowhere else.
 *
 * Data flow: the text (≤ 64 KiB, valid UTF-8) is scanned by four detectors, each a compiled
 * pattern that finds candidates plus a check in C that decides (Luhn for cards, mod-97 for
 * IBANs, digit counts and date/amount/year shapes for phones). The earliest accepted
 * candidate wins; on the same start the order is e-mail, IBAN, card, phone. Accepted spans
 * become typed placeholders "[EMAIL_1]", "[PHONE_2]", ... numbered per type in order of
 * appearance (the same original gets the same placeholder again); the originals are returned
 * to the caller, who seals them into the Contact part. Nothing is logged but counts.
 *
 * The patterns are written so that the work per start position is bounded (possessive or
 * length-bounded repetitions, lookbehinds that only let a candidate start at the beginning of
 * a run), so that 64 KiB of hostile input stays linear; a match limit backs this up. */
#include "sb/redact.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sb/log.h"
#include "sb/util.h"

#define MAX_TEXT (64 * 1024)
#define MATCH_LIMIT 1000000

enum kind { K_EMAIL, K_IBAN, K_CARD, K_PHONE, K_COUNT };

static const char *const kind_name[K_COUNT] = {"EMAIL", "IBAN", "CARD", "PHONE"};

/* Characters of an e-mail local part (RFC 5322 atext, plus letters and digits of any script). */
#define LOCAL_CHARS "\\p{L}\\p{N}!#$%&'*+/=?^_\\x60{|}~\\-"

static const char *const patterns[K_COUNT] = {
    /* e-mail: local@label.label.tld. A candidate starts only at the beginning of a run of
     * local-part characters and dots, which keeps the scan linear; dots in the local part are
     * taken leniently (over-redacting a malformed address is the safe side). */
    [K_EMAIL] = "(?<![" LOCAL_CHARS ".])[" LOCAL_CHARS "][" LOCAL_CHARS ".]*+"
                "@(?:[\\p{L}\\p{N}](?:[\\p{L}\\p{N}-]{0,61}[\\p{L}\\p{N}])?\\.)+"
                "\\p{L}{2,63}(?![\\p{L}\\p{N}_-])",
    /* IBAN: country, check digits, then alphanumerics in groups of 4 with optional single
     * spaces (compact form too); length and mod-97 are checked in C. */
    [K_IBAN] = "(?<![\\p{L}\\p{N}_])[A-Za-z]{2}[0-9]{2}(?: ?[A-Za-z0-9]{4}){2,7}"
               "(?: ?[A-Za-z0-9]{1,4})?(?![\\p{L}\\p{N}_])",
    /* Payment card: 13-19 digits with optional single spaces or dashes; not glued to a word,
     * not followed by a decimal part. Luhn is checked in C. */
    [K_CARD] = "(?<![\\p{L}\\p{N}_])[0-9](?:[ -]?[0-9]){12,18}(?![\\p{L}\\p{N}_]|[.,][0-9])",
    /* Phone: optional + or 00, then up to 10 digit groups or parenthesised groups separated
     * by one space, dot or dash (or nothing next to a parenthesis). Not inside a word, an
     * order reference (#), a path, a decimal or a time. Not the tail of a longer spaced
     * number ("4111 1111 1111 1112" has no phone inside) unless the tail starts like a
     * national number (0 or a parenthesis: "2026-03-02 0612345678"). The shape is checked
     * in C. */
    [K_PHONE] = "(?<![\\p{L}\\p{N}_#+@/\\\\])(?<![0-9][.,:/-])(?:(?<![0-9] )|(?=[0(]))"
                "(?:\\+|00)?(?:\\([0-9]{1,6}\\)|[0-9]{1,15}+)"
                "(?:(?:[ .-]|(?<=\\))|(?=\\())(?:\\([0-9]{1,6}\\)|[0-9]{1,15}+)){0,9}"
                "(?![\\p{L}\\p{N}_]|[.,:][0-9])",
};

static pthread_once_t once = PTHREAD_ONCE_INIT;
static pcre2_code *codes[K_COUNT];
static pcre2_match_context *mctx;
static sb_result_t init_result = SB_E_INTERNAL;

static void compile_all(void)
{
    for (int k = 0; k < K_COUNT; k++) {
        int err = 0;
        PCRE2_SIZE erroff = 0;
        codes[k] = pcre2_compile((PCRE2_SPTR)patterns[k], PCRE2_ZERO_TERMINATED, PCRE2_UTF, &err,
                                 &erroff, NULL);
        if (codes[k] == NULL) {
            PCRE2_UCHAR msg[120];
            pcre2_get_error_message(err, msg, sizeof msg);
            SB_ERROR("redact", "pattern does not compile kind=%s offset=%zu err=\"%s\"",
                     kind_name[k], (size_t)erroff, (const char *)msg);
            return;
        }
        /* JIT is an optimisation only: the interpreter is used where it is unavailable. */
        (void)pcre2_jit_compile(codes[k], PCRE2_JIT_COMPLETE);
    }
    mctx = pcre2_match_context_create(NULL);
    if (mctx == NULL) return;
    pcre2_set_match_limit(mctx, MATCH_LIMIT);
    init_result = SB_OK;
}

sb_result_t sb_redact_init(void)
{
    pthread_once(&once, compile_all);
    return init_result;
}

/* Strict UTF-8: no overlong forms, no surrogates, nothing above U+10FFFF. */
static bool utf8_valid(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned char c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t len;
        uint32_t cp;
        if (c >= 0xC2 && c <= 0xDF) {
            len = 2;
            cp = c & 0x1F;
        } else if (c >= 0xE0 && c <= 0xEF) {
            len = 3;
            cp = c & 0x0F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            len = 4;
            cp = c & 0x07;
        } else {
            return false;
        }
        if (n - i < len) return false;
        for (size_t j = 1; j < len; j++) {
            if ((s[i + j] & 0xC0) != 0x80) return false;
            cp = cp << 6 | (s[i + j] & 0x3F);
        }
        if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)) ||
            (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        i += len;
    }
    return true;
}

/* Length of the (valid) UTF-8 sequence starting with byte c. */
static size_t utf8_len(unsigned char c)
{
    if (c < 0x80) return 1;
    if (c < 0xE0) return 2;
    if (c < 0xF0) return 3;
    return 4;
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* Luhn over the digits of s[0..n), ignoring separators. */
static bool luhn_ok(const char *s, size_t n)
{
    unsigned sum = 0;
    bool dbl = false;
    for (size_t i = n; i-- > 0;) {
        if (!is_digit(s[i])) continue;
        unsigned d = (unsigned)(s[i] - '0');
        if (dbl) {
            d *= 2;
            if (d > 9) d -= 9;
        }
        sum += d;
        dbl = !dbl;
    }
    return sum % 10 == 0;
}

static size_t count_digits(const char *s, size_t n)
{
    size_t d = 0;
    for (size_t i = 0; i < n; i++)
        d += is_digit(s[i]);
    return d;
}

/* A card candidate s[0..n): the longest prefix ending at the end or before a separator with
 * 13-19 digits that passes Luhn. Returns its length, 0 if none. */
static size_t card_check(const char *s, size_t n)
{
    for (size_t end = n; end > 0; end--) {
        if (end < n && s[end] != ' ' && s[end] != '-') continue;
        size_t d = count_digits(s, end);
        if (d < 13) break;
        if (d <= 19 && luhn_ok(s, end)) return end;
    }
    return 0;
}

/* mod-97 of an IBAN (alphanumerics of s[0..n), spaces skipped) with the first four
 * characters moved to the end; letters count 10..35 and may be lower case. */
static bool iban_ok(const char *s, size_t n, size_t *nalnum)
{
    char buf[34];
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == ' ') continue;
        char c = s[i];
        if (c >= 'a' && c <= 'z') c = (char)(c - 'a' + 'A');
        if (m < sizeof buf) buf[m] = c;
        m++;
    }
    *nalnum = m;
    if (m < 15 || m > sizeof buf) return false;
    unsigned rem = 0;
    for (size_t j = 0; j < m; j++) {
        char c = buf[(j + 4) % m];
        if (is_digit(c))
            rem = (rem * 10 + (unsigned)(c - '0')) % 97;
        else
            rem = (rem * 100 + (unsigned)(c - 'A' + 10)) % 97;
    }
    return rem == 1;
}

/* An IBAN candidate: the longest prefix ending at the end or before a space that is a valid
 * IBAN; 0 if none. *shaped tells whether the candidate has an IBAN's length at all. */
static size_t iban_check(const char *s, size_t n, bool *shaped)
{
    *shaped = false;
    for (size_t end = n; end > 0; end--) {
        if (end < n && s[end] != ' ') continue;
        size_t m = 0;
        bool ok = iban_ok(s, end, &m);
        if (m >= 15 && m <= 34) *shaped = true;
        if (ok) return end;
        if (m < 15) break;
    }
    return 0;
}

#define MAX_GROUPS 16

typedef struct group {
    size_t digits;
    bool paren;
    char sep; /* separator before this group, 0 if none */
    const char *p;
} group_t;

static bool looks_like_year(const group_t *g)
{
    if (g->digits != 4 || g->paren) return false;
    int y = 0;
    for (int i = 0; i < 4; i++)
        y = y * 10 + (g->p[i] - '0');
    return y >= 1900 && y <= 2099;
}

/* Decides whether a phone candidate s[0..n) (already shaped by the pattern) is a phone
 * number: 8-15 digits (without a 00 prefix); with + or 00 that is enough. A national number
 * must not look like a date (2026-03-02, 02.03.2026), a dot-grouped amount or address
 * (12.345.678, 192.168.100.200), a list of years, or a run of single digits; a bare digit run
 * counts only when it starts with the trunk 0 or has 10+ digits (so "order 12345678" stays). */
static bool phone_ok(const char *s, size_t n)
{
    group_t g[MAX_GROUPS];
    size_t ng = 0, total = 0, i = 0;
    bool intl = false;
    char sep = 0;
    if (n > 0 && s[0] == '+') {
        intl = true;
        i = 1;
    }
    while (i < n) {
        char c = s[i];
        if (c == '(' || is_digit(c)) {
            if (ng == MAX_GROUPS) return false;
            group_t *cur = &g[ng++];
            cur->paren = c == '(';
            cur->sep = sep;
            if (cur->paren) i++;
            cur->p = s + i;
            cur->digits = 0;
            while (i < n && is_digit(s[i])) {
                cur->digits++;
                i++;
            }
            if (cur->paren && i < n && s[i] == ')') i++;
            total += cur->digits;
            sep = 0;
        } else {
            sep = c;
            i++;
        }
    }
    if (ng == 0) return false;
    if (!intl && !g[0].paren && g[0].digits > 2 && g[0].p[0] == '0' && g[0].p[1] == '0') {
        intl = true;
        total -= 2;
    }
    if (total < 8 || total > 15) return false;
    if (intl) return true;

    bool plain = true, same_sep = true;
    size_t singles = 0;
    for (size_t j = 0; j < ng; j++) {
        if (g[j].paren) plain = false;
        if (j > 1 && g[j].sep != g[1].sep) same_sep = false;
        if (g[j].digits == 1) singles++;
    }
    if (ng == 1) return !g[0].paren && (g[0].p[0] == '0' || total >= 10);
    if (plain && same_sep && ng == 3 && (g[1].sep == '-' || g[1].sep == '.')) {
        size_t a = g[0].digits, b = g[1].digits, c = g[2].digits;
        if ((a == 4 && b == 2 && c == 2) || (a == 2 && b == 2 && c == 4)) return false;
    }
    /* Dots only: "612 345 678" with spaces is a phone number in Spain. */
    if (plain && same_sep && g[1].sep == '.' && g[0].p[0] != '0' && g[0].digits <= 3) {
        bool thousands = true;
        for (size_t j = 1; j < ng; j++)
            if (g[j].digits != 3) thousands = false;
        if (thousands) return false;
    }
    bool years = plain;
    for (size_t j = 0; j < ng && years; j++)
        years = looks_like_year(&g[j]);
    if (years) return false;
    if (singles * 2 > ng) return false;
    return true;
}

/* A phone candidate: the whole of it, or for an international number (which cannot be the
 * tail of something else) the longest prefix ending before a space: "+33 6 12 34 56 78 12345"
 * keeps the trailing number out. Returns the accepted length, 0 if none. */
static size_t phone_check(const char *s, size_t n)
{
    if (phone_ok(s, n)) return n;
    bool intl = s[0] == '+' || (n > 1 && s[0] == '0' && s[1] == '0');
    if (!intl) return 0;
    for (size_t end = n - 1; end > 1; end--)
        if (s[end] == ' ' && phone_ok(s, end)) return end;
    return 0;
}

typedef struct span {
    size_t start, end;
    bool skip; /* IBAN-shaped but invalid: left as it is, and no other detector looks inside */
} span_t;

/* The next accepted candidate of kind k starting at or after from. Returns 1 and *out, 0 if
 * there is none, or a negative PCRE2 error. */
static int find_next(int k, const char *text, size_t len, size_t from, pcre2_match_data *md,
                     span_t *out)
{
    size_t off = from;
    while (off < len) {
        int rc = pcre2_match(codes[k], (PCRE2_SPTR)text, len, off, PCRE2_NO_UTF_CHECK, md, mctx);
        if (rc == PCRE2_ERROR_NOMATCH) return 0;
        if (rc < 0) return rc;
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        size_t s = ov[0], e = ov[1];
        if (e <= s || s >= len) return 0; /* the patterns never match empty */
        const char *p = text + s;
        size_t n = e - s, end = 0;
        bool shaped = false;
        switch (k) {
        case K_EMAIL:
            end = n;
            break;
        case K_IBAN:
            end = iban_check(p, n, &shaped);
            if (end == 0 && shaped) {
                *out = (span_t){.start = s, .end = e, .skip = true};
                return 1;
            }
            break;
        case K_CARD:
            end = card_check(p, n);
            break;
        case K_PHONE:
            end = phone_check(p, n);
            break;
        }
        if (end > 0) {
            *out = (span_t){.start = s, .end = s + end, .skip = false};
            return 1;
        }
        off = s + utf8_len((unsigned char)text[s]);
    }
    return 0;
}

/* Returns the placeholder for original text[s..e) of kind k, adding an item if it is new. */
static const char *placeholder(sb_redacted_t *r, size_t *cap, size_t counters[K_COUNT], int k,
                               const char *orig, size_t olen)
{
    size_t plen = strlen(kind_name[k]) + 2;
    for (size_t i = 0; i < r->nitems; i++) {
        const sb_redaction_t *it = &r->items[i];
        if (strncmp(it->placeholder + 1, kind_name[k], plen - 2) == 0 &&
            it->placeholder[plen - 1] == '_' && strlen(it->original) == olen &&
            memcmp(it->original, orig, olen) == 0)
            return it->placeholder;
    }
    if (r->nitems == *cap) {
        *cap = *cap ? *cap * 2 : 8;
        r->items = sb_xrealloc(r->items, *cap * sizeof *r->items);
    }
    sb_redaction_t *it = &r->items[r->nitems++];
    it->placeholder = sb_xasprintf("[%s_%zu]", kind_name[k], ++counters[k]);
    it->original = sb_xstrndup(orig, olen);
    return it->placeholder;
}

sb_result_t sb_redact(const char *text, size_t len, sb_redacted_t *out)
{
    if (out == NULL || (text == NULL && len > 0)) return SB_E_INVALID;
    if (len > MAX_TEXT) return SB_E_TOO_LARGE;
    sb_result_t r = sb_redact_init();
    if (r != SB_OK) return r;
    if (text == NULL) text = "";
    if (!utf8_valid((const unsigned char *)text, len)) return SB_E_INVALID;

    pcre2_match_data *md = pcre2_match_data_create(1, NULL);
    if (md == NULL) sb__log_abort(__FILE__, __LINE__, "pcre2_match_data_create");
    sb_redacted_t res = {0};
    size_t cap = 0, counters[K_COUNT] = {0};
    sb_buf_t buf = {0};
    span_t next[K_COUNT];
    bool have[K_COUNT] = {false}, exhausted[K_COUNT] = {false};
    size_t pos = 0;

    for (;;) {
        int best = -1;
        for (int k = 0; k < K_COUNT; k++) {
            if (!exhausted[k] && (!have[k] || next[k].start < pos)) {
                int rc = find_next(k, text, len, pos, md, &next[k]);
                if (rc < 0) {
                    SB_ERROR("redact", "match failed kind=%s rc=%d len=%zu", kind_name[k], rc, len);
                    r = SB_E_INTERNAL;
                    goto fail;
                }
                have[k] = rc == 1;
                exhausted[k] = rc == 0;
            }
            /* Strictly earlier wins, so on the same start the earlier kind keeps priority. */
            if (have[k] && (best < 0 || next[k].start < next[best].start)) best = k;
        }
        if (best < 0) break;
        span_t sp = next[best];
        have[best] = false;
        sb_buf_append(&buf, text + pos, sp.start - pos);
        if (sp.skip) {
            sb_buf_append(&buf, text + sp.start, sp.end - sp.start);
        } else {
            const char *ph =
                placeholder(&res, &cap, counters, best, text + sp.start, sp.end - sp.start);
            sb_buf_append(&buf, ph, strlen(ph));
        }
        pos = sp.end;
    }
    sb_buf_append(&buf, text + pos, len - pos); /* sb_buf keeps data NUL-terminated */
    res.text = buf.data;
    res.len = buf.len;
    pcre2_match_data_free(md);
    *out = res;
    return SB_OK;

fail:
    pcre2_match_data_free(md);
    sb_buf_free(&buf);
    sb_redacted_free(&res);
    return r;
}

void sb_redacted_free(sb_redacted_t *r)
{
    if (r == NULL) return;
    for (size_t i = 0; i < r->nitems; i++) {
        free(r->items[i].placeholder);
        free(r->items[i].original);
    }
    free(r->items);
    free(r->text);
    *r = (sb_redacted_t){0};
}
