/* The browser API of the web chat and the widget's static files (see webchat_browser.h).
 *
 * The loop thread checks origin, token and rate limits (all cheap, no I/O) and answers
 * everything that needs no bus; a message or a consent becomes one sb_chan_item_t that a pool
 * thread publishes through ingress (sb_http_defer), and the answer follows the JetStream ack.
 * Logs carry a keyed hash of the session id, sizes and outcomes: never a token, a visitor id
 * or message text. */
#include "webchat_browser.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "channel.h"
#include "sb/ids.h"
#include "sb/log.h"
#include "sb/metrics.h"
#include "sb/util.h"
#include "widget/assets.h"
#include "webchat_session.h"

#define MOD "webchat"
#define MAX_ORIGINS 64
#define SMALL_BODY 4096
#define MSG_BODY (64 * 1024) /* 8 KiB of text, JSON-escaped at worst 6 bytes per byte */
#define MAX_CLIENT_ID 64
#define MAX_PAYLOAD 256
#define MAX_TITLE 64
#define LIMITER_SLOTS 65536

enum ep { EP_SESSION, EP_CONSENT, EP_MESSAGES, EP_STREAM, EP_PREFLIGHT, EP_COUNT };
static const char *const ep_names[EP_COUNT] = {"session", "consent", "messages", "stream",
                                               "preflight"};
enum oc {
    OC_OK,
    OC_BAD_ORIGIN,
    OC_BAD_TOKEN,
    OC_RATE_LIMITED,
    OC_INVALID,
    OC_TOO_LARGE,
    OC_NO_CONSENT,
    OC_UNAVAILABLE,
    OC_COUNT
};
static const char *const oc_names[OC_COUNT] = {"ok",           "bad_origin", "bad_token",
                                               "rate_limited", "invalid",    "too_large",
                                               "no_consent",   "unavailable"};

struct sb_webchat_browser {
    const sb_config_t *cfg;
    sb_ingress_t *ing;
    sb_webchat_live_t *live;
    uint8_t id_secret[SB_SEAL_KEY_BYTES];
    sb_webchat_tokens_t *tokens;
    char *origins_store;
    const char *origins[MAX_ORIGINS];
    size_t norigins;
    int64_t ttl_s;
    char *notice_text;
    sb_webchat_limiter_t *ip_sessions, *ip_streams, *ip_msgs, *session_msgs;
    sb_metric_t *m[EP_COUNT][OC_COUNT];
};

static const char disclosure_text[] =
    "You are chatting with an automated assistant (a bot), not a person. Ask for a person at "
    "any time and a colleague will take over when one is available.";

/* ---- small helpers ---- */

static void count(sb_webchat_browser_t *wb, enum ep e, enum oc o)
{
    sb_metric_inc(wb->m[e][o]);
}

/* Keyed hash of a session id for logs. */
static void session_hash(const sb_webchat_browser_t *wb, const char *sid,
                         char out[SB_SEAL_HASH_HEX])
{
    const char *parts[2] = {"wcb-log", sid};
    sb_seal_keyed_hash_hex(out, wb->id_secret, parts, 2);
}

static bool origin_allowed(const sb_webchat_browser_t *wb, const sb_http_request_t *req,
                           const char *origin)
{
    if (!origin || !sb_webchat_origin_ok(origin)) return false;
    for (size_t i = 0; i < wb->norigins; i++)
        if (strcmp(wb->origins[i], origin) == 0) return true;
    /* The router's own pages (the demo): the origin is this very host. */
    const char *host = sb_http_header(req, "Host");
    if (host && *host) {
        const char *rest = strncmp(origin, "https://", 8) == 0 ? origin + 8 : origin + 7;
        if (strcasecmp(rest, host) == 0) return true;
    }
    return false;
}

/* Answers with JSON and the headers every API answer carries; CORS when origin is allowed. */
static void answer(sb_http_request_t *req, int status, const char *json, const char *cors_origin,
                   const char *extra)
{
    char *acao = cors_origin ? sb_xasprintf("Access-Control-Allow-Origin: %s", cors_origin) : NULL;
    const char *headers[8];
    size_t n = 0;
    headers[n++] = "Cache-Control: no-store";
    headers[n++] = "X-Content-Type-Options: nosniff";
    headers[n++] = "Vary: Origin";
    if (acao) headers[n++] = acao;
    if (extra) headers[n++] = extra;
    headers[n] = NULL;
    sb_http_respond(req, status, "application/json", headers, json, strlen(json));
    free(acao);
}

static void answer_error(sb_webchat_browser_t *wb, sb_http_request_t *req, enum ep e, enum oc o,
                         int status, const char *error, const char *cors_origin)
{
    char body[160];
    snprintf(body, sizeof body, "{\"error\":\"%s\"}", error);
    answer(req, status, body, cors_origin, status == 429 ? "Retry-After: 2" : NULL);
    count(wb, e, o);
    SB_INFO(MOD, "browser endpoint=%s outcome=%s status=%d", ep_names[e], oc_names[o], status);
}

static bool peer_key(const sb_http_request_t *req, char *buf, size_t n)
{
    if (sb_http_peer(req, buf, n)) return true;
    snprintf(buf, n, "unknown");
    return true;
}

/* The Bearer token of req, or the query parameter "token" when allow_query; NULL if none. */
static const char *bearer(const sb_http_request_t *req, char *buf, size_t n, bool allow_query)
{
    const char *auth = sb_http_header(req, "Authorization");
    if (auth && strncasecmp(auth, "Bearer ", 7) == 0) {
        const char *t = auth + 7;
        while (*t == ' ')
            t++;
        if (strlen(t) >= n) return NULL;
        snprintf(buf, n, "%s", t);
        return buf;
    }
    if (allow_query && sb_http_query_param(req, "token", buf, n)) return buf;
    return NULL;
}

static bool utf8_ok(const unsigned char *s, size_t n)
{
    return sb_utf8_check((const char *)s, n,
                         SB_UTF8_ALLOW_TAB | SB_UTF8_ALLOW_NEWLINE | SB_UTF8_ALLOW_CR, NULL);
}

static bool client_id_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > MAX_CLIENT_ID) return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              c == '_' || c == '-'))
            return false;
    }
    return true;
}

/* Verifies the token of req for endpoint e and checks that a present Origin matches it.
 * Answers the request and returns false when it does not. */
static bool authenticate(sb_webchat_browser_t *wb, sb_http_request_t *req, enum ep e,
                         bool allow_query, bool origin_required, sb_webchat_claims_t *claims)
{
    const char *origin = sb_http_header(req, "Origin");
    const char *cors = origin_allowed(wb, req, origin) ? origin : NULL;
    char buf[SB_WEBCHAT_MAX_TOKEN + 1];
    const char *tok = bearer(req, buf, sizeof buf, allow_query);
    if (!tok) {
        answer_error(wb, req, e, OC_BAD_TOKEN, 401, "token required", cors);
        return false;
    }
    sb_result_t rc = sb_webchat_token_verify(wb->tokens, tok, sb_router_now_s(), 0, claims);
    sb_seal_wipe(buf, sizeof buf);
    if (rc != SB_OK) {
        answer_error(wb, req, e, OC_BAD_TOKEN, 401,
                     rc == SB_E_TIMEOUT ? "token expired" : "token invalid", cors);
        return false;
    }
    if ((origin_required && !origin) || (origin && strcmp(origin, claims->origin) != 0)) {
        answer_error(wb, req, e, OC_BAD_ORIGIN, 403, "origin not allowed", cors);
        return false;
    }
    return true;
}

/* The JSON answer carrying a token for c. NULL if it cannot be issued. */
static char *token_answer(sb_webchat_browser_t *wb, const sb_webchat_claims_t *c)
{
    char tok[SB_WEBCHAT_MAX_TOKEN];
    if (sb_webchat_token_issue(wb->tokens, c, tok, sizeof tok) != SB_OK) return NULL;
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "token", tok);
    sb_seal_wipe(tok, sizeof tok);
    cJSON_AddNumberToObject(root, "expires_at", (double)c->expires_s);
    cJSON_AddNumberToObject(root, "ttl_s", (double)(c->expires_s - c->issued_s));
    cJSON_AddBoolToObject(root, "consent_required", !c->consent);
    cJSON *notice = cJSON_AddObjectToObject(root, "notice");
    cJSON_AddStringToObject(notice, "version", SB_WEBCHAT_NOTICE_VERSION);
    cJSON_AddStringToObject(notice, "text", wb->notice_text);
    cJSON_AddStringToObject(notice, "disclosure", disclosure_text);
    cJSON *limits = cJSON_AddObjectToObject(root, "limits");
    cJSON_AddNumberToObject(limits, "max_text_bytes", SB_WEBCHAT_MAX_TEXT);
    char *json = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return json;
}

/* ---- POST /v1/webchat/session ---- */

static void on_session(sb_http_request_t *req)
{
    sb_webchat_browser_t *wb = req->route_ctx;
    const char *origin = sb_http_header(req, "Origin");
    if (!origin_allowed(wb, req, origin)) {
        answer_error(wb, req, EP_SESSION, OC_BAD_ORIGIN, 403, "origin not allowed", NULL);
        return;
    }
    char peer[64];
    peer_key(req, peer, sizeof peer);
    if (!sb_webchat_limiter_allow(wb->ip_sessions, peer, (uint64_t)sb_mono_ns() / 1000000)) {
        answer_error(wb, req, EP_SESSION, OC_RATE_LIMITED, 429, "rate limited", origin);
        return;
    }
    const char *locale = NULL;
    cJSON *body = NULL;
    if (req->body_len > 0) {
        body = sb_chan_json_parse(req->body, req->body_len);
        if (!body || !cJSON_IsObject(body)) {
            cJSON_Delete(body);
            answer_error(wb, req, EP_SESSION, OC_INVALID, 400, "invalid JSON", origin);
            return;
        }
        locale = sb_chan_json_str(body, "locale", SB_WEBCHAT_MAX_LOCALE);
        if (locale && !sb_webchat_locale_ok(locale)) locale = NULL;
    }
    int64_t now = sb_router_now_s();
    sb_webchat_claims_t c;
    memset(&c, 0, sizeof c);
    char buf[SB_WEBCHAT_MAX_TOKEN + 1];
    const char *tok = bearer(req, buf, sizeof buf, false);
    const char *what = "new";
    if (tok) {
        /* Continue the session the browser kept, even shortly after its token expired. */
        sb_result_t rc = sb_webchat_token_verify(wb->tokens, tok, now, SB_WEBCHAT_RESUME_S, &c);
        sb_seal_wipe(buf, sizeof buf);
        if (rc != SB_OK || strcmp(c.origin, origin) != 0) {
            cJSON_Delete(body);
            answer_error(wb, req, EP_SESSION, OC_BAD_TOKEN, 401,
                         rc == SB_E_TIMEOUT ? "token expired" : "token invalid", origin);
            return;
        }
        what = "resumed";
    } else {
        sb_webchat_claims_new_ids(&c);
        snprintf(c.origin, sizeof c.origin, "%s", origin);
    }
    if (locale) snprintf(c.locale, sizeof c.locale, "%s", locale);
    cJSON_Delete(body);
    c.issued_s = now;
    c.expires_s = now + wb->ttl_s;
    char *json = token_answer(wb, &c);
    if (!json) {
        answer_error(wb, req, EP_SESSION, OC_INVALID, 400, "cannot issue", origin);
        return;
    }
    answer(req, 200, json, origin, NULL);
    free(json);
    count(wb, EP_SESSION, OC_OK);
    char sh[SB_SEAL_HASH_HEX];
    session_hash(wb, c.session_id, sh);
    SB_INFO(MOD, "browser endpoint=session outcome=ok session=%s kind=%s consent=%s", sh, what,
            c.consent ? "yes" : "no");
}

/* ---- publishing through ingress (pool thread) ---- */

typedef struct job {
    sb_webchat_browser_t *wb;
    enum ep ep;
    sb_chan_item_t item;
    sb_webchat_claims_t claims; /* consent: the claims of the new token */
    char origin[SB_WEBCHAT_MAX_ORIGIN + 1];
    char client_id[MAX_CLIENT_ID + 1];
    char msg_id[SB_SEAL_HASH_HEX];
    sb_result_t rc;
    bool duplicate;
} job_t;

static void publish_work(void *ctx)
{
    job_t *j = ctx;
    j->rc = sb_ingress_publish_item(j->wb->ing, "webchat", &j->item, 0, sb_now_ms(), j->msg_id,
                                    &j->duplicate);
}

static void publish_done(sb_http_request_t *req, void *ctx)
{
    job_t *j = ctx;
    sb_webchat_browser_t *wb = j->wb;
    char sh[SB_SEAL_HASH_HEX];
    session_hash(wb, j->claims.session_id, sh);
    if (j->rc == SB_E_INVALID) {
        answer_error(wb, req, j->ep, OC_INVALID, 400, "message cannot be accepted", j->origin);
    } else if (j->rc != SB_OK) {
        answer_error(wb, req, j->ep, OC_UNAVAILABLE, 503, "unavailable, retry", j->origin);
    } else if (j->ep == EP_CONSENT) {
        char *json = token_answer(wb, &j->claims);
        if (json) {
            answer(req, 200, json, j->origin, NULL);
            count(wb, j->ep, OC_OK);
        } else {
            answer_error(wb, req, j->ep, OC_INVALID, 400, "cannot issue", j->origin);
        }
        free(json);
        SB_INFO(MOD, "browser endpoint=consent outcome=ok session=%s message_id=%s", sh, j->msg_id);
    } else {
        char body[192];
        snprintf(body, sizeof body, "{\"ok\":true,\"id\":\"%s\",\"duplicate\":%s}", j->client_id,
                 j->duplicate ? "true" : "false");
        answer(req, 200, body, j->origin, NULL);
        count(wb, j->ep, OC_OK);
        SB_INFO(MOD, "browser endpoint=messages outcome=ok session=%s message_id=%s duplicate=%s",
                sh, j->msg_id, j->duplicate ? "true" : "false");
    }
    sb_chan_item_free(&j->item);
    free(j);
}

static job_t *job_new(sb_webchat_browser_t *wb, enum ep e, const sb_webchat_claims_t *c)
{
    job_t *j = sb_xcalloc(1, sizeof *j);
    j->wb = wb;
    j->ep = e;
    j->claims = *c;
    snprintf(j->origin, sizeof j->origin, "%s", c->origin);
    sb_chan_item_t *it = &j->item;
    it->sender_id = sb_xstrdup(c->visitor_id);
    it->session_id = sb_xstrdup(c->session_id);
    it->account_id = sb_xstrdup(SB_WEBCHAT_BROWSER_ACCOUNT);
    it->occurred_at_ms = sb_now_ms();
    if (c->locale[0]) it->locale = sb_xstrdup(c->locale);
    return j;
}

/* ---- POST /v1/webchat/consent ---- */

static void on_consent(sb_http_request_t *req)
{
    sb_webchat_browser_t *wb = req->route_ctx;
    sb_webchat_claims_t c;
    if (!authenticate(wb, req, EP_CONSENT, false, true, &c)) return;
    cJSON *body = sb_chan_json_parse(req->body, req->body_len);
    const char *version = body ? sb_chan_json_str(body, "notice_version", 64) : NULL;
    const cJSON *accepted = body ? cJSON_GetObjectItemCaseSensitive(body, "accepted") : NULL;
    if (!body || !version || !cJSON_IsBool(accepted)) {
        cJSON_Delete(body);
        answer_error(wb, req, EP_CONSENT, OC_INVALID, 400, "expected notice_version and accepted",
                     c.origin);
        return;
    }
    if (strcmp(version, SB_WEBCHAT_NOTICE_VERSION) != 0) {
        cJSON_Delete(body);
        answer_error(wb, req, EP_CONSENT, OC_INVALID, 409, "notice changed", c.origin);
        return;
    }
    if (!cJSON_IsTrue(accepted)) {
        /* Declined: nothing is recorded and the chat stays closed. */
        cJSON_Delete(body);
        answer(req, 200, "{\"ok\":true,\"consent\":false}", c.origin, NULL);
        count(wb, EP_CONSENT, OC_OK);
        return;
    }
    bool shown = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(body, "ai_disclosure_shown"));
    cJSON_Delete(body);
    int64_t now = sb_router_now_s();
    c.consent = true;
    c.issued_s = now;
    c.expires_s = now + wb->ttl_s;
    job_t *j = job_new(wb, EP_CONSENT, &c);
    sb_chan_item_t *it = &j->item;
    it->kind = SB_CHAN_SESSION;
    it->dedup_key = sb_xasprintf("wcb:%s:consent:%s", c.session_id, SB_WEBCHAT_NOTICE_VERSION);
    it->has_consent = true;
    it->consent_support_chat = true;
    it->ai_disclosure_shown = shown;
    it->consent_notice_version = sb_xstrdup(SB_WEBCHAT_NOTICE_VERSION);
    sb_http_defer(req, publish_work, publish_done, j);
}

/* ---- POST /v1/webchat/messages ---- */

static void on_messages(sb_http_request_t *req)
{
    sb_webchat_browser_t *wb = req->route_ctx;
    sb_webchat_claims_t c;
    if (!authenticate(wb, req, EP_MESSAGES, false, true, &c)) return;
    const char *cors = c.origin;
    if (!c.consent) {
        answer_error(wb, req, EP_MESSAGES, OC_NO_CONSENT, 403, "consent required", cors);
        return;
    }
    char peer[64];
    peer_key(req, peer, sizeof peer);
    uint64_t now_ms = (uint64_t)sb_mono_ns() / 1000000;
    /* Either bucket empty: refused (the session's token may have been taken first). */
    if (!sb_webchat_limiter_allow(wb->session_msgs, c.session_id, now_ms) ||
        !sb_webchat_limiter_allow(wb->ip_msgs, peer, now_ms)) {
        answer_error(wb, req, EP_MESSAGES, OC_RATE_LIMITED, 429, "rate limited", cors);
        return;
    }
    cJSON *body = sb_chan_json_parse(req->body, req->body_len);
    if (!body || !cJSON_IsObject(body)) {
        cJSON_Delete(body);
        answer_error(wb, req, EP_MESSAGES, OC_INVALID, 400, "invalid JSON", cors);
        return;
    }
    const cJSON *idj = cJSON_GetObjectItemCaseSensitive(body, "id");
    const cJSON *textj = cJSON_GetObjectItemCaseSensitive(body, "text");
    const cJSON *pb = cJSON_GetObjectItemCaseSensitive(body, "postback");
    char cid[MAX_CLIENT_ID + 1];
    if (cJSON_IsString(idj) && client_id_ok(idj->valuestring)) {
        snprintf(cid, sizeof cid, "%s", idj->valuestring);
    } else if (!idj) {
        uint8_t raw[12];
        sb_seal_random(raw, sizeof raw);
        cid[0] = 'r';
        sb_seal_hex_encode(cid + 1, raw, sizeof raw);
    } else {
        cJSON_Delete(body);
        answer_error(wb, req, EP_MESSAGES, OC_INVALID, 400, "bad id", cors);
        return;
    }
    enum oc bad = OC_OK;
    const char *why = NULL;
    job_t *j = job_new(wb, EP_MESSAGES, &c);
    sb_chan_item_t *it = &j->item;
    snprintf(j->client_id, sizeof j->client_id, "%s", cid);
    it->dedup_key = sb_xasprintf("wcb:%s:%s", c.session_id, cid);
    it->provider_message_id = sb_xasprintf("%s:%s", c.session_id, cid);
    if (cJSON_IsString(textj) && !pb) {
        size_t n = strlen(textj->valuestring);
        if (n > SB_WEBCHAT_MAX_TEXT) {
            bad = OC_TOO_LARGE;
            why = "text too long";
        } else if (n == 0 || !utf8_ok((const unsigned char *)textj->valuestring, n)) {
            bad = OC_INVALID;
            why = "empty or invalid text";
        } else {
            it->kind = SB_CHAN_TEXT;
            it->text = sb_xstrdup(textj->valuestring);
        }
    } else if (cJSON_IsObject(pb) && !textj) {
        const char *payload = sb_chan_json_str(pb, "payload", MAX_PAYLOAD);
        const char *title = sb_chan_json_str(pb, "title", MAX_TITLE);
        const char *reply_to = sb_chan_json_str(pb, "in_reply_to", MAX_CLIENT_ID);
        if (!payload || !utf8_ok((const unsigned char *)payload, strlen(payload)) ||
            (title && !utf8_ok((const unsigned char *)title, strlen(title)))) {
            bad = OC_INVALID;
            why = "bad postback";
        } else {
            it->kind = SB_CHAN_BUTTON_REPLY;
            it->button_payload = sb_xstrdup(payload);
            if (title) it->button_title = sb_xstrdup(title);
            if (reply_to) it->in_reply_to = sb_xstrdup(reply_to);
        }
    } else {
        bad = OC_INVALID;
        why = "expected text or postback";
    }
    cJSON_Delete(body);
    if (bad != OC_OK) {
        sb_chan_item_free(&j->item);
        free(j);
        answer_error(wb, req, EP_MESSAGES, bad, bad == OC_TOO_LARGE ? 413 : 400, why, cors);
        return;
    }
    sb_http_defer(req, publish_work, publish_done, j);
}

/* ---- GET /v1/webchat/stream ---- */

static void on_stream(sb_http_request_t *req)
{
    sb_webchat_browser_t *wb = req->route_ctx;
    char peer[64];
    peer_key(req, peer, sizeof peer);
    const char *origin = sb_http_header(req, "Origin");
    const char *cors = origin_allowed(wb, req, origin) ? origin : NULL;
    if (strcmp(req->method, "GET") != 0) { /* HEAD: no stream to describe */
        answer_error(wb, req, EP_STREAM, OC_INVALID, 405, "method not allowed", cors);
        return;
    }
    if (!sb_webchat_limiter_allow(wb->ip_streams, peer, (uint64_t)sb_mono_ns() / 1000000)) {
        answer_error(wb, req, EP_STREAM, OC_RATE_LIMITED, 429, "rate limited", cors);
        return;
    }
    sb_webchat_claims_t c;
    if (!authenticate(wb, req, EP_STREAM, true, false, &c)) return;
    if (!c.consent) {
        answer_error(wb, req, EP_STREAM, OC_NO_CONSENT, 403, "consent required", cors);
        return;
    }
    char last[80] = "";
    const char *h = sb_http_header(req, "Last-Event-ID");
    if (h && strlen(h) < sizeof last)
        snprintf(last, sizeof last, "%s", h);
    else if (!sb_http_query_param(req, "last_event_id", last, sizeof last))
        last[0] = '\0';
    char conv[SB_SEAL_HASH_HEX];
    sb_ids_conversation(conv, wb->id_secret, "webchat", SB_WEBCHAT_BROWSER_ACCOUNT, c.visitor_id);
    char *acao = cors ? sb_xasprintf("Access-Control-Allow-Origin: %s", cors) : NULL;
    const char *extra[] = {"Vary: Origin", acao, NULL};
    count(wb, EP_STREAM, OC_OK);
    char sh[SB_SEAL_HASH_HEX];
    session_hash(wb, c.session_id, sh);
    SB_INFO(MOD, "browser endpoint=stream outcome=ok session=%s conversation=%s replay_from=%s", sh,
            conv, last[0] ? "id" : "start");
    sb_webchat_live_attach(wb->live, req, conv, last, c.expires_s, extra);
    free(acao);
}

/* ---- OPTIONS /v1/webchat/ ---- */

static void on_preflight(sb_http_request_t *req)
{
    sb_webchat_browser_t *wb = req->route_ctx;
    const char *origin = sb_http_header(req, "Origin");
    if (!origin_allowed(wb, req, origin)) {
        answer_error(wb, req, EP_PREFLIGHT, OC_BAD_ORIGIN, 403, "origin not allowed", NULL);
        return;
    }
    char *acao = sb_xasprintf("Access-Control-Allow-Origin: %s", origin);
    const char *headers[] = {acao,
                             "Access-Control-Allow-Methods: GET, POST, OPTIONS",
                             "Access-Control-Allow-Headers: Authorization, Content-Type, "
                             "Last-Event-ID",
                             "Access-Control-Max-Age: 600",
                             "Vary: Origin",
                             NULL};
    sb_http_respond(req, 204, NULL, headers, NULL, 0);
    free(acao);
    count(wb, EP_PREFLIGHT, OC_OK);
}

/* ---- GET /widget/<file> ---- */

static const char *content_type(const char *name)
{
    const char *dot = strrchr(name, '.');
    if (!dot) return "application/octet-stream";
    if (strcmp(dot, ".js") == 0) return "text/javascript; charset=utf-8";
    if (strcmp(dot, ".css") == 0) return "text/css; charset=utf-8";
    if (strcmp(dot, ".html") == 0) return "text/html; charset=utf-8";
    if (strcmp(dot, ".svg") == 0) return "image/svg+xml";
    return "application/octet-stream";
}

static void on_asset(sb_http_request_t *req)
{
    const char *name = req->path + strlen("/widget/");
    for (size_t i = 0; i < sb_webchat_nassets; i++) {
        const sb_webchat_asset_t *a = &sb_webchat_assets[i];
        if (strcmp(a->name, name) != 0) continue;
        bool html = strstr(name, ".html") != NULL;
        const char *headers[] = {
            html ? "Cache-Control: no-cache" : "Cache-Control: public, max-age=300",
            "X-Content-Type-Options: nosniff",
            html ? "Content-Security-Policy: default-src 'none'; script-src 'self'; style-src "
                   "'self'; connect-src 'self'; img-src 'self'; base-uri 'none'; form-action "
                   "'none'; frame-ancestors 'none'"
                 : "Cross-Origin-Resource-Policy: cross-origin",
            html ? "Referrer-Policy: no-referrer" : NULL, NULL};
        sb_http_respond(req, 200, content_type(name), headers, a->data, a->len);
        return;
    }
    sb_http_respond_json(req, 404, "{\"error\":\"not found\"}");
}

/* ---- set-up ---- */

sb_result_t sb_webchat_browser_create(sb_webchat_browser_t **out,
                                      const sb_webchat_browser_opts_t *opts, char *err,
                                      size_t errlen)
{
    const sb_config_t *cfg = opts->cfg;
    sb_webchat_browser_t *wb = sb_xcalloc(1, sizeof *wb);
    wb->cfg = cfg;
    wb->ing = opts->ing;
    wb->live = opts->live;
    memcpy(wb->id_secret, opts->id_secret, SB_SEAL_KEY_BYTES);
    wb->ttl_s = cfg->webchat.session_ttl_s > 0 ? cfg->webchat.session_ttl_s : 900;
    sb_result_t rc =
        sb_webchat_tokens_create(&wb->tokens, cfg->webchat.signing_secret, err, errlen);
    if (rc != SB_OK) goto fail;
    const char *list = cfg->webchat.allowed_origins ? cfg->webchat.allowed_origins : "";
    wb->origins_store = sb_xstrdup(list);
    for (char *save = NULL, *tok = strtok_r(wb->origins_store, " \t", &save); tok;
         tok = strtok_r(NULL, " \t", &save)) {
        size_t n = strlen(tok);
        while (n > 0 && tok[n - 1] == '/')
            tok[--n] = '\0'; /* "https://shop.example.com/" means the origin */
        if (wb->norigins == MAX_ORIGINS || !sb_webchat_origin_ok(tok)) {
            snprintf(err, errlen,
                     "channels.webchat.allowed_origins: origin %zu is not scheme://host[:port] "
                     "(at most %d origins)",
                     wb->norigins + 1, MAX_ORIGINS);
            rc = SB_E_CONFIG;
            goto fail;
        }
        wb->origins[wb->norigins++] = tok;
    }
    wb->notice_text = sb_xasprintf(
        "This chat is answered first by a bot and, when needed, by our customer service team. "
        "To help you we keep this conversation for %lld days; details you type, such as an "
        "e-mail address or phone number, are stored encrypted and hidden from the bot. Your "
        "browser keeps the chat history on this device until you clear it. You can ask us to "
        "show or delete your data at any time.",
        (long long)cfg->store.transcript_retention_days);
    wb->ip_sessions = sb_webchat_limiter_create(LIMITER_SLOTS, SB_WEBCHAT_IP_SESSION_RATE,
                                                SB_WEBCHAT_IP_SESSION_BURST);
    wb->ip_streams = sb_webchat_limiter_create(LIMITER_SLOTS, SB_WEBCHAT_IP_STREAM_RATE,
                                               SB_WEBCHAT_IP_STREAM_BURST);
    wb->ip_msgs =
        sb_webchat_limiter_create(LIMITER_SLOTS, SB_WEBCHAT_IP_MSG_RATE, SB_WEBCHAT_IP_MSG_BURST);
    wb->session_msgs = sb_webchat_limiter_create(LIMITER_SLOTS, SB_WEBCHAT_SESSION_MSG_RATE,
                                                 SB_WEBCHAT_SESSION_MSG_BURST);
    for (int e = 0; e < EP_COUNT; e++) {
        for (int o = 0; o < OC_COUNT; o++) {
            char labels[96];
            snprintf(labels, sizeof labels, "endpoint=\"%s\",outcome=\"%s\"", ep_names[e],
                     oc_names[o]);
            wb->m[e][o] =
                sb_metrics_counter("sb_router_webchat_browser_total",
                                   "Browser widget API calls by endpoint and outcome", labels);
        }
    }
    *out = wb;
    return SB_OK;
fail:
    sb_webchat_browser_destroy(wb);
    return rc;
}

void sb_webchat_browser_set_live(sb_webchat_browser_t *wb, sb_webchat_live_t *live)
{
    wb->live = live;
}

void sb_webchat_browser_add_routes(sb_webchat_browser_t *wb, sb_http_server_t *srv)
{
    sb_http_server_route(srv, "OPTIONS", "/v1/webchat/", 0, on_preflight, wb);
    sb_http_server_route(srv, "POST", "/v1/webchat/session", SMALL_BODY, on_session, wb);
    sb_http_server_route(srv, "POST", "/v1/webchat/consent", SMALL_BODY, on_consent, wb);
    sb_http_server_route(srv, "POST", "/v1/webchat/messages", MSG_BODY, on_messages, wb);
    sb_http_server_route(srv, "GET", "/v1/webchat/stream", 0, on_stream, wb);
    sb_http_server_route(srv, "GET", "/widget/", 0, on_asset, wb);
    SB_INFO(MOD, "browser widget routes origins=%zu ttl_s=%lld", wb->norigins,
            (long long)wb->ttl_s);
}

void sb_webchat_browser_destroy(sb_webchat_browser_t *wb)
{
    if (!wb) return;
    sb_webchat_tokens_destroy(wb->tokens);
    sb_webchat_limiter_destroy(wb->ip_sessions);
    sb_webchat_limiter_destroy(wb->ip_streams);
    sb_webchat_limiter_destroy(wb->ip_msgs);
    sb_webchat_limiter_destroy(wb->session_msgs);
    free(wb->origins_store);
    free(wb->notice_text);
    sb_seal_wipe(wb->id_secret, sizeof wb->id_secret);
    free(wb);
}
