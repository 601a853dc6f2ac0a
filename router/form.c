/* application/x-www-form-urlencoded parser and encoder (see form.h for the rules). The parser
 * walks the body once: each '&'-separated pair is split at its first '=', both halves are
 * decoded into fresh buffers no longer than the encoded text, and the pair is appended. */
#include "form.h"

#include <stdlib.h>
#include <string.h>

static int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Decodes s[0..n) into a new NUL-terminated string; false on a bad escape. */
static bool decode(const uint8_t *s, size_t n, char **out, size_t *outlen)
{
    char *d = sb_xmalloc(n + 1);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '+') {
            d[k++] = ' ';
        } else if (s[i] == '%') {
            if (n - i < 3) goto bad; /* fewer than two characters after '%' */
            int h = hexval(s[i + 1]), l = hexval(s[i + 2]);
            if (h < 0 || l < 0) goto bad;
            d[k++] = (char)(h * 16 + l);
            i += 2;
        } else {
            d[k++] = (char)s[i];
        }
    }
    d[k] = '\0';
    *out = d;
    *outlen = k;
    return true;
bad:
    free(d);
    return false;
}

bool sb_form_is_utf8(const char *str, size_t len)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    while (i < len) {
        unsigned char c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t need;
        uint32_t cp, min;
        if (c >= 0xC2 && c <= 0xDF) {
            need = 1, cp = c & 0x1F, min = 0x80;
        } else if (c >= 0xE0 && c <= 0xEF) {
            need = 2, cp = c & 0x0F, min = 0x800;
        } else if (c >= 0xF0 && c <= 0xF4) {
            need = 3, cp = c & 0x07, min = 0x10000;
        } else {
            return false; /* continuation byte, overlong lead (C0, C1) or > F4 */
        }
        if (len - i - 1 < need) return false; /* truncated sequence */
        for (size_t k = 1; k <= need; k++) {
            if ((s[i + k] & 0xC0) != 0x80) return false;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
        i += need + 1;
    }
    return true;
}

static bool text_ok(const char *s, size_t n, unsigned flags)
{
    if (!(flags & SB_FORM_UTF8)) return true;
    return memchr(s, '\0', n) == NULL && sb_form_is_utf8(s, n);
}

void sb_form_free(sb_form_t *f)
{
    if (!f) return;
    for (size_t i = 0; i < f->n; i++) {
        free(f->params[i].name);
        free(f->params[i].value);
    }
    free(f->params);
    memset(f, 0, sizeof *f);
}

sb_result_t sb_form_parse(const uint8_t *body, size_t len, size_t max_params, unsigned flags,
                          sb_form_t *out)
{
    sb_form_t f = {0};
    size_t cap = 0;
    size_t pos = 0;
    if (len > 0 && !body) return SB_E_INVALID;
    while (pos < len) {
        const uint8_t *start = body + pos;
        const uint8_t *amp = memchr(start, '&', len - pos);
        size_t plen = amp ? (size_t)(amp - start) : len - pos;
        pos += plen + (amp ? 1 : 0);
        if (plen == 0) continue; /* "a=1&&b=2", a trailing '&' */
        if (f.n >= max_params) goto bad;
        const uint8_t *eq = memchr(start, '=', plen);
        size_t nlen = eq ? (size_t)(eq - start) : plen;
        sb_form_param_t p = {0};
        if (!decode(start, nlen, &p.name, &p.name_len)) goto bad;
        if (!decode(eq ? eq + 1 : start + plen, eq ? plen - nlen - 1 : 0, &p.value, &p.value_len) ||
            !text_ok(p.name, p.name_len, flags) || !text_ok(p.value, p.value_len, flags)) {
            free(p.name);
            free(p.value);
            goto bad;
        }
        if (f.n == cap) {
            cap = cap ? cap * 2 : 16;
            f.params = sb_xrealloc(f.params, cap * sizeof *f.params);
        }
        f.params[f.n++] = p;
    }
    *out = f;
    return SB_OK;
bad:
    sb_form_free(&f);
    return SB_E_INVALID;
}

const char *sb_form_get(const sb_form_t *f, const char *name)
{
    size_t nlen = strlen(name);
    for (size_t i = 0; i < f->n; i++)
        if (f->params[i].name_len == nlen && memcmp(f->params[i].name, name, nlen) == 0)
            return f->params[i].value;
    return NULL;
}

static int cmp_bytes(const char *a, size_t alen, const char *b, size_t blen)
{
    size_t n = alen < blen ? alen : blen;
    int c = n ? memcmp(a, b, n) : 0;
    if (c != 0) return c;
    return alen < blen ? -1 : alen > blen ? 1 : 0;
}

void sb_form_sort(sb_form_t *f)
{
    /* Insertion sort: stable, no allocation, and webhooks carry a few dozen pairs (the parser
     * bounds the count). */
    for (size_t i = 1; i < f->n; i++) {
        sb_form_param_t p = f->params[i];
        size_t j = i;
        while (j > 0) {
            const sb_form_param_t *q = &f->params[j - 1];
            int c = cmp_bytes(q->name, q->name_len, p.name, p.name_len);
            if (c == 0) c = cmp_bytes(q->value, q->value_len, p.value, p.value_len);
            if (c <= 0) break;
            f->params[j] = f->params[j - 1];
            j--;
        }
        f->params[j] = p;
    }
}

static void encode(sb_buf_t *out, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        unsigned char c = *p;
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '.' || c == '_' || c == '~' || c == '*') {
            sb_buf_append(out, &c, 1);
        } else if (c == ' ') {
            sb_buf_append(out, "+", 1);
        } else {
            char e[3] = {'%', hex[c >> 4], hex[c & 15]};
            sb_buf_append(out, e, 3);
        }
    }
}

void sb_form_append(sb_buf_t *out, const char *name, const char *value)
{
    if (out->len > 0) sb_buf_append(out, "&", 1);
    encode(out, name ? name : "");
    sb_buf_append(out, "=", 1);
    encode(out, value ? value : "");
}
