/* Browser session tokens and rate limits of the web-chat widget (see webchat_session.h). */
#include "webchat_session.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "channel.h"
#include "channel_webchat.h"
#include "sb/seal.h"
#include "sb/util.h"

#define TOKEN_PREFIX "v1."
#define KDF_LABEL "switchboard webchat session token v1"
#define NFIELDS 7
#define MAX_PAYLOAD                                                                                \
    (2 * (SB_WEBCHAT_ID_LEN + 1) + SB_WEBCHAT_MAX_ORIGIN + SB_WEBCHAT_MAX_LOCALE + 64)

struct sb_webchat_tokens {
    uint8_t keys[SB_CHAN_MAX_SECRETS][32];
    size_t nkeys;
};

sb_result_t sb_webchat_tokens_create(sb_webchat_tokens_t **out, const char *secrets, char *err,
                                     size_t errlen)
{
    sb_webchat_tokens_t *t = sb_xcalloc(1, sizeof *t);
    char *store = NULL;
    const char *tok[SB_CHAN_MAX_SECRETS];
    size_t n = sb_chan_split_secrets(secrets ? secrets : "", &store, tok, SB_CHAN_MAX_SECRETS);
    sb_result_t rc = SB_OK;
    for (size_t i = 0; i < n; i++) {
        uint8_t secret[SB_WEBCHAT_MAX_KEY];
        size_t slen = 0;
        if (sb_webchat_decode_secret(tok[i], secret, &slen) != SB_OK) {
            snprintf(err, errlen,
                     "channels.webchat.signing_secret: expected whsec_<base64> (secret %zu)",
                     i + 1);
            rc = SB_E_CONFIG;
            sb_seal_wipe(secret, sizeof secret);
            break;
        }
        sb_seal_part_t label = {KDF_LABEL, strlen(KDF_LABEL)};
        sb_seal_hmac_sha256(t->keys[i], secret, slen, &label, 1);
        sb_seal_wipe(secret, sizeof secret);
    }
    t->nkeys = n;
    if (store) {
        sb_seal_wipe(store, strlen(store));
        free(store);
    }
    if (rc == SB_OK && n == 0) {
        snprintf(err, errlen, "channels.webchat.signing_secret: not set");
        rc = SB_E_CONFIG;
    }
    if (rc != SB_OK) {
        sb_webchat_tokens_destroy(t);
        return rc;
    }
    *out = t;
    return SB_OK;
}

void sb_webchat_tokens_destroy(sb_webchat_tokens_t *t)
{
    if (!t) return;
    sb_seal_wipe(t, sizeof *t);
    free(t);
}

static void random_id(char *out, const char *prefix)
{
    uint8_t raw[16];
    sb_seal_random(raw, sizeof raw);
    size_t plen = strlen(prefix);
    memcpy(out, prefix, plen);
    sb_seal_hex_encode(out + plen, raw, sizeof raw);
}

void sb_webchat_claims_new_ids(sb_webchat_claims_t *c)
{
    random_id(c->session_id, "wcb_");
    random_id(c->visitor_id, "wcv_");
}

static bool id_ok(const char *s, const char *prefix)
{
    if (strlen(s) != SB_WEBCHAT_ID_LEN || strncmp(s, prefix, 4) != 0) return false;
    for (const char *p = s + 4; *p; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f'))) return false;
    return true;
}

bool sb_webchat_origin_ok(const char *origin)
{
    if (!origin) return false;
    size_t n = strlen(origin);
    if (n == 0 || n > SB_WEBCHAT_MAX_ORIGIN) return false;
    const char *host;
    if (strncmp(origin, "https://", 8) == 0)
        host = origin + 8;
    else if (strncmp(origin, "http://", 7) == 0)
        host = origin + 7;
    else
        return false;
    if (!*host) return false;
    for (const char *p = host; *p; p++) {
        unsigned char ch = (unsigned char)*p;
        if (ch <= 0x20 || ch >= 0x7f || ch == '/' || ch == '?' || ch == '#' || ch == '@' ||
            ch == '\\')
            return false;
    }
    return true;
}

bool sb_webchat_locale_ok(const char *locale)
{
    if (!locale) return false;
    size_t n = strlen(locale);
    if (n > SB_WEBCHAT_MAX_LOCALE) return false;
    for (size_t i = 0; i < n; i++) {
        char ch = locale[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '-'))
            return false;
    }
    return true;
}

static bool claims_ok(const sb_webchat_claims_t *c)
{
    return id_ok(c->session_id, "wcb_") && id_ok(c->visitor_id, "wcv_") &&
           sb_webchat_origin_ok(c->origin) && sb_webchat_locale_ok(c->locale) && c->issued_s >= 0 &&
           c->expires_s >= c->issued_s;
}

static void mac(uint8_t out[32], const uint8_t key[32], const char *signed_part, size_t len)
{
    sb_seal_part_t part = {signed_part, len};
    sb_seal_hmac_sha256(out, key, 32, &part, 1);
}

sb_result_t sb_webchat_token_issue(const sb_webchat_tokens_t *t, const sb_webchat_claims_t *c,
                                   char *out, size_t outlen)
{
    if (!t || t->nkeys == 0 || !c || !out || !claims_ok(c)) return SB_E_INVALID;
    char payload[MAX_PAYLOAD];
    int n = snprintf(payload, sizeof payload, "%s\n%s\n%s\n%s\n%lld\n%lld\n%d", c->session_id,
                     c->visitor_id, c->origin, c->locale, (long long)c->issued_s,
                     (long long)c->expires_s, c->consent ? 1 : 0);
    if (n < 0 || (size_t)n >= sizeof payload) return SB_E_INVALID;
    /* "v1." hex(payload) "." hex(mac) */
    size_t need = strlen(TOKEN_PREFIX) + 2 * (size_t)n + 1 + 64 + 1;
    if (need > outlen || need > SB_WEBCHAT_MAX_TOKEN) return SB_E_TOO_LARGE;
    size_t off = strlen(TOKEN_PREFIX);
    memcpy(out, TOKEN_PREFIX, off);
    sb_seal_hex_encode(out + off, payload, (size_t)n);
    off += 2 * (size_t)n;
    uint8_t m[32];
    mac(m, t->keys[0], out, off);
    out[off++] = '.';
    sb_seal_hex_encode(out + off, m, sizeof m);
    sb_seal_wipe(m, sizeof m);
    return SB_OK;
}

static bool parse_int(const char *s, int64_t *v)
{
    if (!*s || strlen(s) > 15) return false;
    int64_t x = 0;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9') return false;
        x = x * 10 + (*p - '0');
    }
    *v = x;
    return true;
}

static bool copy_field(char *dst, size_t cap, const char *src)
{
    size_t n = strlen(src);
    if (n >= cap) return false;
    memcpy(dst, src, n + 1);
    return true;
}

sb_result_t sb_webchat_token_verify(const sb_webchat_tokens_t *t, const char *token, int64_t now_s,
                                    int64_t max_expired_s, sb_webchat_claims_t *out)
{
    if (!t || !token || !out) return SB_E_AUTH;
    size_t len = strlen(token);
    size_t plen = strlen(TOKEN_PREFIX);
    if (len > SB_WEBCHAT_MAX_TOKEN || len < plen + 2 + 65 || strncmp(token, TOKEN_PREFIX, plen))
        return SB_E_AUTH;
    const char *dot = strrchr(token, '.');
    if (!dot || dot < token + plen || (size_t)(token + len - dot - 1) != 64) return SB_E_AUTH;
    size_t signed_len = (size_t)(dot - token);
    uint8_t got[32];
    size_t glen = 0;
    if (sb_seal_hex_decode(got, sizeof got, &glen, dot + 1, 64) != SB_OK || glen != 32)
        return SB_E_AUTH;
    bool ok = false;
    for (size_t k = 0; k < t->nkeys; k++) {
        uint8_t want[32];
        mac(want, t->keys[k], token, signed_len);
        ok |= sb_seal_equal(got, want, 32);
        sb_seal_wipe(want, sizeof want);
    }
    if (!ok) return SB_E_AUTH;

    /* Authentic: the payload is ours, but parse it as carefully as any input. */
    char payload[MAX_PAYLOAD];
    size_t n = 0;
    if (sb_seal_hex_decode((uint8_t *)payload, sizeof payload - 1, &n, token + plen,
                           signed_len - plen) != SB_OK)
        return SB_E_AUTH;
    payload[n] = '\0';
    if (memchr(payload, '\0', n)) return SB_E_AUTH;
    char *fields[NFIELDS];
    size_t nf = 0;
    char *p = payload;
    fields[nf++] = p;
    for (; *p; p++) {
        if (*p == '\n') {
            if (nf == NFIELDS) return SB_E_AUTH;
            *p = '\0';
            fields[nf++] = p + 1;
        }
    }
    if (nf != NFIELDS) return SB_E_AUTH;
    sb_webchat_claims_t c;
    memset(&c, 0, sizeof c);
    int64_t consent = 0;
    if (!copy_field(c.session_id, sizeof c.session_id, fields[0]) ||
        !copy_field(c.visitor_id, sizeof c.visitor_id, fields[1]) ||
        !copy_field(c.origin, sizeof c.origin, fields[2]) ||
        !copy_field(c.locale, sizeof c.locale, fields[3]) || !parse_int(fields[4], &c.issued_s) ||
        !parse_int(fields[5], &c.expires_s) || !parse_int(fields[6], &consent) || consent > 1)
        return SB_E_AUTH;
    c.consent = consent == 1;
    if (!claims_ok(&c)) return SB_E_AUTH;
    if (now_s > c.expires_s + (max_expired_s > 0 ? max_expired_s : 0)) return SB_E_TIMEOUT;
    *out = c;
    return SB_OK;
}

/* ---- rate limits ---- */

#define PROBE 8

typedef struct bucket {
    uint64_t h; /* 0: empty */
    double tokens;
    uint64_t last_ms;
} bucket_t;

struct sb_webchat_limiter {
    bucket_t *slots;
    size_t mask;
    double rate, burst;
    uint8_t key[SB_SEAL_KEY_BYTES];
};

sb_webchat_limiter_t *sb_webchat_limiter_create(size_t slots, double rate_per_s, double burst)
{
    sb_webchat_limiter_t *l = sb_xcalloc(1, sizeof *l);
    size_t n = PROBE;
    while (n < slots && n < ((size_t)1 << 24))
        n <<= 1;
    l->slots = sb_xcalloc(n, sizeof *l->slots);
    l->mask = n - 1;
    l->rate = rate_per_s > 0 ? rate_per_s : 1;
    l->burst = burst >= 1 ? burst : 1;
    sb_seal_random(l->key, sizeof l->key);
    return l;
}

void sb_webchat_limiter_destroy(sb_webchat_limiter_t *l)
{
    if (!l) return;
    free(l->slots);
    sb_seal_wipe(l->key, sizeof l->key);
    free(l);
}

static double refilled(const sb_webchat_limiter_t *l, const bucket_t *b, uint64_t now_ms)
{
    double t = b->tokens;
    if (now_ms > b->last_ms) t += (double)(now_ms - b->last_ms) * l->rate / 1000.0;
    return t > l->burst ? l->burst : t;
}

bool sb_webchat_limiter_allow(sb_webchat_limiter_t *l, const char *key, uint64_t now_ms)
{
    uint8_t hb[16];
    const char *parts[1] = {key};
    sb_seal_keyed_hash(hb, sizeof hb, l->key, parts, 1);
    uint64_t h = 0;
    memcpy(&h, hb, sizeof h);
    if (h == 0) h = 1;
    size_t start = (size_t)(h & l->mask);
    bucket_t *hit = NULL, *empty = NULL, *idle = NULL, *oldest = NULL;
    for (size_t i = 0; i < PROBE && !hit; i++) {
        bucket_t *b = &l->slots[(start + i) & l->mask];
        if (b->h == h)
            hit = b;
        else if (b->h == 0 && !empty)
            empty = b;
        else if (b->h != 0 && !idle && refilled(l, b, now_ms) >= l->burst)
            idle = b;
        if (b->h != 0 && (!oldest || b->last_ms < oldest->last_ms)) oldest = b;
    }
    /* A new key takes an empty slot, else a full (idle) bucket, else the least recent one. */
    bucket_t *victim = empty ? empty : idle ? idle : oldest;
    if (!hit) {
        hit = victim;
        hit->h = h;
        hit->tokens = l->burst;
        hit->last_ms = now_ms;
    }
    double t = refilled(l, hit, now_ms);
    hit->last_ms = now_ms > hit->last_ms ? now_ms : hit->last_ms;
    if (t < 1.0) {
        hit->tokens = t;
        return false;
    }
    hit->tokens = t - 1.0;
    return true;
}
