/* The table of channels and what they share: creation from config, freeing of normalized
 * batches and rendered requests, the router clock (with the SB_TEST_NOW test hook), time,
 * string, secret (rotation lists, HMAC checks, wiping) and JSON helpers. Adding a channel = one
 * channel_<name>.c plus one line in sb_channel_table. */
#include "channel.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sb/log.h"
#include "sb/seal.h"

const sb_channel_ops_t *const sb_channel_table[] = {
    &sb_channel_webchat,  &sb_channel_whatsapp, &sb_channel_messenger, &sb_channel_instagram,
    &sb_channel_telegram, &sb_channel_slack,    &sb_channel_twilio,    NULL,
};

const sb_channel_ops_t *sb_channel_find(const char *name)
{
    if (!name) return NULL;
    for (size_t i = 0; sb_channel_table[i]; i++)
        if (strcmp(sb_channel_table[i]->name, name) == 0) return sb_channel_table[i];
    return NULL;
}

sb_result_t sb_channel_create(const sb_channel_ops_t *ops, const sb_config_t *cfg,
                              sb_channel_t **out, char *err, size_t errlen)
{
    sb_channel_t *ch = sb_xcalloc(1, sizeof *ch);
    ch->ops = ops;
    ch->max_body = ops->max_body(cfg);
    const char *base = ops->api_base(cfg);
    size_t blen = base ? strlen(base) : 0;
    while (blen > 0 && base[blen - 1] == '/')
        blen--; /* we join with '/' ourselves */
    ch->api_base = sb_xstrndup(base ? base : "", blen);
    /* Egress rules (window, rate) are plain config: copied here so channels stay declarative. */
    if (ops->window_policy) {
        sb_chan_window_policy_t w = {0};
        ops->window_policy(cfg, &w);
        ch->window.free_ms = w.free_ms;
        ch->window.agent_tag_ms = w.agent_tag_ms;
        ch->window.template_name =
            w.template_name && *w.template_name ? sb_xstrdup(w.template_name) : NULL;
        ch->window.template_language =
            sb_xstrdup(w.template_language && *w.template_language ? w.template_language : "en");
    }
    ch->rate_per_s = ops->rate_per_s ? ops->rate_per_s(cfg) : 0;
    if (ch->rate_per_s < 0) ch->rate_per_s = 0;
    sb_result_t rc = ops->create(ch, cfg, err, errlen);
    if (rc != SB_OK) {
        free((char *)ch->window.template_name);
        free((char *)ch->window.template_language);
        free(ch->api_base);
        free(ch);
        return rc;
    }
    *out = ch;
    return SB_OK;
}

void sb_channel_destroy(sb_channel_t *ch)
{
    if (!ch) return;
    ch->ops->destroy(ch);
    free((char *)ch->window.template_name);
    free((char *)ch->window.template_language);
    free(ch->api_base);
    free(ch);
}

void sb_chan_item_free(sb_chan_item_t *it)
{
    free(it->dedup_key);
    free(it->provider_message_id);
    free(it->sender_id);
    free(it->sender_name);
    free(it->phone);
    free(it->email);
    free(it->account_id);
    free(it->session_id);
    free(it->text);
    free(it->button_payload);
    free(it->button_title);
    free(it->in_reply_to);
    free(it->locale);
    free(it->media.type);
    free(it->media.ref);
    free(it->media.mime);
    free(it->media.sha256);
    free(it->media.caption);
    free(it->media.filename);
    free(it->location.name);
    free(it->location.address);
    free(it->status.state);
    for (size_t i = 0; i < it->status.nrefs; i++)
        free(it->status.refs[i]);
    free(it->status.refs);
    free(it->status.error_title);
    free(it->consent_notice_version);
    memset(it, 0, sizeof *it);
}

void sb_chan_batch_free(sb_chan_batch_t *b)
{
    if (!b) return;
    for (size_t i = 0; i < b->nitems; i++)
        sb_chan_item_free(&b->items[i]);
    free(b->items);
    free(b->reply_body);
    memset(b, 0, sizeof *b);
}

sb_chan_item_t *sb_chan_batch_slot(sb_chan_batch_t *b, size_t *cap)
{
    if (b->nitems >= SB_CHAN_MAX_ITEMS) return NULL;
    if (b->nitems == *cap) {
        *cap = *cap ? *cap * 2 : 4;
        b->items = sb_xrealloc(b->items, *cap * sizeof *b->items);
    }
    sb_chan_item_t *it = &b->items[b->nitems];
    memset(it, 0, sizeof *it);
    return it;
}

void sb_chan_batch_quarantine(sb_chan_batch_t *b, const char *reason)
{
    if (!b->quarantine) b->reason = reason;
    b->quarantine = true;
}

void sb_chan_http_free(sb_chan_http_t *req)
{
    if (!req) return;
    free(req->url);
    if (req->headers) {
        for (size_t i = 0; req->headers[i]; i++) {
            /* Headers carry bearer tokens and signatures. */
            sb_seal_wipe(req->headers[i], strlen(req->headers[i]));
            free(req->headers[i]);
        }
        free(req->headers);
    }
    sb_buf_free(&req->body);
    memset(req, 0, sizeof *req);
}

void sb_chan_http_add_header(sb_chan_http_t *req, const char *fmt, ...)
{
    size_t n = 0;
    while (req->headers && req->headers[n])
        n++;
    req->headers = sb_xrealloc(req->headers, (n + 2) * sizeof *req->headers);
    va_list ap;
    va_start(ap, fmt);
    char *h = NULL;
    int len = vasprintf(&h, fmt, ap);
    va_end(ap);
    if (len < 0) h = sb_xstrdup(""); /* out of memory: sb_xstrdup aborts with a message */
    req->headers[n] = h;
    req->headers[n + 1] = NULL;
}

sb_result_t sb_chan_http_post_json(struct cJSON *root, char *url, const char *content_type,
                                   const char *bearer, sb_chan_http_t *req)
{
    char *json = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    if (!json) {
        free(url);
        return SB_E_INTERNAL;
    }
    sb_chan_http_t r = {.method = "POST", .url = url};
    sb_buf_append(&r.body, json, strlen(json));
    free(json);
    sb_chan_http_add_header(&r, "Content-Type: %s", content_type);
    if (bearer) sb_chan_http_add_header(&r, "Authorization: Bearer %s", bearer);
    *req = r;
    return SB_OK;
}

/* ---- clock ---- */

static int64_t parse_now(const char *s)
{
    char *end = NULL;
    long long v = strtoll(s, &end, 10);
    while (end && (*end == '\n' || *end == '\r' || *end == ' '))
        end++;
    if (!end || end == s || *end != '\0' || v <= 0) return -1;
    return (int64_t)v;
}

int64_t sb_router_now_s(void)
{
    const char *env = getenv("SB_TEST_NOW");
    if (env && *env) {
        int64_t v = -1;
        if (env[0] == '/') {
            char *data = NULL;
            size_t len = 0;
            if (sb_read_file(env, 64, &data, &len) == SB_OK) {
                v = parse_now(data);
                free(data);
            }
        } else {
            v = parse_now(env);
        }
        if (v > 0) return v;
    }
    return sb_now_ms() / 1000;
}

/* ---- time ---- */

static bool digits(const char *s, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (!isdigit((unsigned char)s[i])) return false;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return true;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm): no
 * dependency on timegm or the process time zone. */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

sb_result_t sb_chan_parse_rfc3339(const char *s, int64_t *out_ms)
{
    if (!s || strlen(s) < 20 || strlen(s) > 40) return SB_E_INVALID;
    int y, mo, d, h, mi, se;
    if (!digits(s, 4, &y) || s[4] != '-' || !digits(s + 5, 2, &mo) || s[7] != '-' ||
        !digits(s + 8, 2, &d) || (s[10] != 'T' && s[10] != 't') || !digits(s + 11, 2, &h) ||
        s[13] != ':' || !digits(s + 14, 2, &mi) || s[16] != ':' || !digits(s + 17, 2, &se))
        return SB_E_INVALID;
    if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || se > 60) return SB_E_INVALID;
    const char *p = s + 19;
    int ms = 0;
    if (*p == '.') {
        p++;
        int nd = 0;
        while (isdigit((unsigned char)*p)) {
            if (nd < 3) ms = ms * 10 + (*p - '0');
            nd++;
            p++;
        }
        if (nd == 0) return SB_E_INVALID;
        for (int i = nd; i < 3; i++)
            ms *= 10;
    }
    int64_t off_s = 0;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int oh, om;
        if (!digits(p + 1, 2, &oh) || p[3] != ':' || !digits(p + 4, 2, &om) || oh > 23 || om > 59)
            return SB_E_INVALID;
        off_s = (int64_t)(oh * 3600 + om * 60) * (*p == '+' ? 1 : -1);
        p += 6;
    } else {
        return SB_E_INVALID;
    }
    if (*p != '\0') return SB_E_INVALID;
    int64_t t = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + se - off_s;
    *out_ms = t * 1000 + ms;
    return SB_OK;
}

void sb_chan_format_rfc3339(int64_t ms, char *buf, size_t n)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

sb_result_t sb_chan_parse_unix(const char *s, int64_t *out_s)
{
    if (!s) return SB_E_INVALID;
    size_t n = strlen(s);
    if (n == 0 || n > 12) return SB_E_INVALID;
    int64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isdigit((unsigned char)s[i])) return SB_E_INVALID;
        v = v * 10 + (s[i] - '0');
    }
    *out_s = v;
    return SB_OK;
}

/* ---- strings ---- */

size_t sb_chan_split_secrets(const char *list, char **store, const char **tok, size_t max)
{
    *store = sb_xstrdup(list ? list : "");
    size_t n = 0;
    char *save = NULL;
    for (char *t = strtok_r(*store, " \t,", &save); t && n < max; t = strtok_r(NULL, " \t,", &save))
        tok[n++] = t;
    return n;
}

size_t sb_chan_secrets_init(sb_chan_secrets_t *s, const char *list)
{
    memset(s, 0, sizeof *s);
    char *store = NULL;
    const char *tok[SB_CHAN_MAX_SECRETS];
    s->n = sb_chan_split_secrets(list, &store, tok, SB_CHAN_MAX_SECRETS);
    for (size_t i = 0; i < s->n; i++)
        s->v[i] = sb_xstrdup(tok[i]);
    sb_seal_wipe(store, strlen(store));
    free(store);
    return s->n;
}

void sb_chan_secrets_close(sb_chan_secrets_t *s)
{
    for (size_t i = 0; i < s->n; i++)
        sb_chan_wipe_free(s->v[i]);
    memset(s, 0, sizeof *s);
}

bool sb_chan_secrets_hmac_sha256(const sb_chan_secrets_t *s, const sb_seal_part_t *parts,
                                 size_t nparts, const uint8_t mac[32])
{
    bool ok = false;
    for (size_t i = 0; i < s->n; i++) {
        uint8_t want[32];
        sb_seal_hmac_sha256(want, s->v[i], strlen(s->v[i]), parts, nparts);
        ok |= sb_seal_equal(want, mac, sizeof want);
        sb_seal_wipe(want, sizeof want);
    }
    return ok;
}

bool sb_chan_hex_mac(const char *s, const char *prefix, uint8_t mac[32])
{
    size_t plen = strlen(prefix), n = 0;
    return strncmp(s, prefix, plen) == 0 && strlen(s + plen) == 64 &&
           sb_seal_hex_decode(mac, 32, &n, s + plen, 64) == SB_OK && n == 32;
}

void sb_chan_wipe_free(char *s)
{
    if (!s) return;
    sb_seal_wipe(s, strlen(s));
    free(s);
}

size_t sb_chan_utf8_len(const char *s)
{
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if ((*p & 0xC0) != 0x80) n++;
    return n;
}

char *sb_chan_utf8_truncate(const char *s, size_t max, bool in_bytes)
{
    static const char ellipsis[] = "\xe2\x80\xa6"; /* U+2026 */
    size_t len = strlen(s);
    size_t units = in_bytes ? len : sb_chan_utf8_len(s);
    if (units <= max) return sb_xstrdup(s);
    size_t room = in_bytes ? (max >= 3 ? max - 3 : 0) : (max >= 1 ? max - 1 : 0);
    /* Walk whole characters while they fit in room units. */
    size_t end = 0, n = 0;
    while (end < len) {
        size_t next = end + 1;
        while (next < len && ((unsigned char)s[next] & 0xC0) == 0x80)
            next++;
        size_t cost = in_bytes ? next - end : 1;
        if (n + cost > room) break;
        n += cost;
        end = next;
    }
    if (max < (in_bytes ? 3u : 1u)) return sb_xstrndup(s, end);
    return sb_xasprintf("%.*s%s", (int)end, s, ellipsis);
}

char *sb_chan_button_list(const char *text, const sb_outbound_t *o)
{
    sb_buf_t t = {0};
    if (text) sb_buf_append(&t, text, strlen(text));
    for (size_t i = 0; i < o->n_buttons; i++) {
        const char *title = o->buttons[i]->title ? o->buttons[i]->title : "";
        sb_buf_appendf(&t, "%s%zu. %s", i == 0 ? (t.len ? "\n\n" : "") : "\n", i + 1, title);
    }
    sb_buf_append(&t, "", 1);
    return t.data;
}

static pthread_once_t eq_once = PTHREAD_ONCE_INIT;
static uint8_t eq_key[32];
static void eq_init(void)
{
    sb_seal_random(eq_key, sizeof eq_key);
}

bool sb_chan_secret_equal(const char *a, size_t alen, const char *b, size_t blen)
{
    pthread_once(&eq_once, eq_init);
    uint8_t ha[32], hb[32];
    sb_seal_part_t pa = {a, alen}, pb = {b, blen};
    sb_seal_hmac_sha256(ha, eq_key, sizeof eq_key, &pa, 1);
    sb_seal_hmac_sha256(hb, eq_key, sizeof eq_key, &pb, 1);
    bool eq = sb_seal_equal(ha, hb, sizeof ha);
    sb_seal_wipe(ha, sizeof ha);
    sb_seal_wipe(hb, sizeof hb);
    return eq;
}

/* ---- JSON ---- */

struct cJSON *sb_chan_json_parse(const uint8_t *body, size_t len)
{
    if (!body || len == 0) return NULL;
    const char *end = NULL;
    cJSON *j = cJSON_ParseWithLengthOpts((const char *)body, len, &end, false);
    if (!j) return NULL;
    /* Only whitespace may follow the value. */
    for (const char *p = end; p && p < (const char *)body + len; p++) {
        if (*p != ' ' && *p != '\t' && *p != '\r' && *p != '\n') {
            cJSON_Delete(j);
            return NULL;
        }
    }
    return j;
}

const char *sb_chan_json_str(const struct cJSON *obj, const char *key, size_t max)
{
    if (!cJSON_IsObject(obj)) return NULL;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!cJSON_IsString(v) || !v->valuestring || !v->valuestring[0]) return NULL;
    if (strlen(v->valuestring) > max) return NULL;
    return v->valuestring;
}

char *sb_chan_json_dup(const struct cJSON *obj, const char *key, size_t max)
{
    const char *s = sb_chan_json_str(obj, key, max);
    return s ? sb_xstrdup(s) : NULL;
}

bool sb_chan_json_int(const struct cJSON *obj, const char *key, int64_t min, int64_t max,
                      int64_t *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!cJSON_IsNumber(v) || !(v->valuedouble >= (double)min && v->valuedouble <= (double)max) ||
        v->valuedouble != floor(v->valuedouble))
        return false;
    *out = (int64_t)v->valuedouble;
    return true;
}

bool sb_chan_json_location(const struct cJSON *obj, const char *lat_key, const char *lon_key,
                           sb_chan_item_t *it)
{
    const cJSON *lat = cJSON_GetObjectItemCaseSensitive(obj, lat_key);
    const cJSON *lon = cJSON_GetObjectItemCaseSensitive(obj, lon_key);
    if (!cJSON_IsNumber(lat) || !cJSON_IsNumber(lon) || !(fabs(lat->valuedouble) <= 90) ||
        !(fabs(lon->valuedouble) <= 180))
        return false;
    it->kind = SB_CHAN_LOCATION;
    it->has_location = true;
    it->location.latitude = lat->valuedouble;
    it->location.longitude = lon->valuedouble;
    return true;
}

const struct cJSON *sb_chan_json_obj(const struct cJSON *obj, const char *key)
{
    if (!cJSON_IsObject(obj)) return NULL;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    return cJSON_IsObject(v) ? v : NULL;
}

const struct cJSON *sb_chan_json_arr(const struct cJSON *obj, const char *key)
{
    if (!cJSON_IsObject(obj)) return NULL;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    return cJSON_IsArray(v) ? v : NULL;
}
