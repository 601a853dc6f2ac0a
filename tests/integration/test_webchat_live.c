/* The browser web chat over real HTTP against real routers: a real nats-server, two router
 * processes sharing it (A and B), raw sockets for exact headers and for the SSE stream.
 *
 * What it checks: session tokens are issued only to allowed origins (and the router's own),
 * with CORS answered for those only and preflight handled; tokens are bound to their origin,
 * refused when tampered, expired (the routers' clock is moved through SB_TEST_NOW) and
 * resumable shortly after; messages need consent; the consent and each message become
 * Envelopes on SB_IN through ingress (account "browser"); an Outbound for the browser session
 * published on SB_OUT reaches the SSE stream held by router B whichever router's egress takes
 * it; a reconnect with Last-Event-ID (to router A) replays only what was missed; 401 for bad
 * tokens on every endpoint; 413 beyond 8 KiB; 429 beyond the per-session and per-address
 * limits. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "harness.h"
#include "sb/codec.h"
#include "sb/ids.h"
#include "sb/seal.h"
#include "sb/util.h"

#define ORIGIN "https://shop.example.com"
#define TTL_S 60
#define STEP_MS 20000

typedef struct t {
    sb_harness_t h;
    int port_b;
    char clock_path[PATH_MAX + 16];
    int64_t now;
} t_t;

static t_t *T;

/* ---- the routers' clock ---- */

static void set_clock(t_t *t, int64_t now)
{
    t->now = now;
    FILE *f = fopen(t->clock_path, "w");
    assert_non_null(f);
    fprintf(f, "%lld\n", (long long)now);
    fclose(f);
}

/* ---- raw HTTP ---- */

typedef struct resp {
    int status;
    char headers[8192];
    char *body;
} resp_t;

static int dial(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    return fd;
}

static void send_all(int fd, const char *s, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, s, n, MSG_NOSIGNAL);
        assert_true(w > 0);
        s += w;
        n -= (size_t)w;
    }
}

/* One request on its own connection (Connection: close); headers are extra "Name: value\r\n"
 * lines or NULL. */
static void request(int port, const char *method, const char *target, const char *headers,
                    const char *body, resp_t *out)
{
    int fd = dial(port);
    size_t blen = body ? strlen(body) : 0;
    char *req = sb_xasprintf("%s %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n"
                             "%sContent-Length: %zu\r\n\r\n%s",
                             method, target, port, headers ? headers : "", blen, body ? body : "");
    send_all(fd, req, strlen(req));
    free(req);
    sb_buf_t in = {0};
    char buf[16384];
    for (;;) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        assert_true(poll(&p, 1, STEP_MS) > 0);
        ssize_t r = recv(fd, buf, sizeof buf, 0);
        if (r <= 0) break;
        sb_buf_append(&in, buf, (size_t)r);
    }
    close(fd);
    sb_buf_append(&in, "", 1);
    memset(out, 0, sizeof *out);
    assert_int_equal(sscanf(in.data, "HTTP/1.1 %d", &out->status), 1);
    char *end = strstr(in.data, "\r\n\r\n");
    assert_non_null(end);
    size_t hl = (size_t)(end - in.data) + 2;
    assert_true(hl < sizeof out->headers);
    memcpy(out->headers, in.data, hl);
    out->headers[hl] = '\0';
    out->body = sb_xstrdup(end + 4);
    sb_buf_free(&in);
}

static void resp_free(resp_t *r)
{
    free(r->body);
    r->body = NULL;
}

static bool has_header(const resp_t *r, const char *line)
{
    return strcasestr(r->headers, line) != NULL;
}

/* ---- the widget's calls ---- */

typedef struct sess {
    char token[1100];
    char session_id[64];
    char visitor_id[64];
    char conversation[SB_SEAL_HASH_HEX];
} sess_t;

/* Reads the claims out of a token (the payload is hex of '\n'-joined fields: the test may look,
 * the MAC keeps it honest). */
static void decode_token(sess_t *s)
{
    const char *p = s->token + 3;
    const char *dot = strrchr(s->token, '.');
    assert_non_null(dot);
    uint8_t raw[600];
    size_t n = 0;
    assert_int_equal(sb_seal_hex_decode(raw, sizeof raw - 1, &n, p, (size_t)(dot - p)), SB_OK);
    raw[n] = '\0';
    char *nl = strchr((char *)raw, '\n');
    assert_non_null(nl);
    *nl = '\0';
    assert_true(strlen((char *)raw) < sizeof s->session_id);
    memcpy(s->session_id, raw, strlen((char *)raw) + 1);
    char *nl2 = strchr(nl + 1, '\n');
    assert_non_null(nl2);
    *nl2 = '\0';
    assert_true(strlen(nl + 1) < sizeof s->visitor_id);
    memcpy(s->visitor_id, nl + 1, strlen(nl + 1) + 1);
    sb_ids_conversation(s->conversation, T->h.id_secret, "webchat", "browser", s->visitor_id);
}

static void take_token(sess_t *s, const resp_t *r)
{
    cJSON *j = cJSON_Parse(r->body);
    assert_non_null(j);
    const cJSON *tok = cJSON_GetObjectItemCaseSensitive(j, "token");
    assert_true(cJSON_IsString(tok));
    snprintf(s->token, sizeof s->token, "%s", tok->valuestring);
    cJSON_Delete(j);
    decode_token(s);
}

static int new_session(int port, const char *origin, sess_t *s, resp_t *keep)
{
    char *hdr = origin ? sb_xasprintf("Origin: %s\r\nContent-Type: application/json\r\n", origin)
                       : sb_xstrdup("Content-Type: application/json\r\n");
    resp_t r;
    request(port, "POST", "/v1/webchat/session", hdr, "{\"locale\":\"en-GB\"}", &r);
    free(hdr);
    int status = r.status;
    if (status == 200 && s) take_token(s, &r);
    if (keep)
        *keep = r;
    else
        resp_free(&r);
    return status;
}

static int post_auth(int port, const char *path, const char *origin, const char *token,
                     const char *body, resp_t *keep)
{
    sb_buf_t h = {0};
    if (origin) sb_buf_appendf(&h, "Origin: %s\r\n", origin);
    if (token) sb_buf_appendf(&h, "Authorization: Bearer %s\r\n", token);
    sb_buf_appendf(&h, "Content-Type: application/json\r\n");
    resp_t r;
    request(port, "POST", path, h.data, body, &r);
    sb_buf_free(&h);
    int status = r.status;
    if (keep)
        *keep = r;
    else
        resp_free(&r);
    return status;
}

static void consent(int port, sess_t *s)
{
    resp_t r;
    assert_int_equal(post_auth(port, "/v1/webchat/consent", ORIGIN, s->token,
                               "{\"notice_version\":\"webchat-notice-1\",\"accepted\":true,"
                               "\"ai_disclosure_shown\":true}",
                               &r),
                     200);
    take_token(s, &r);
    assert_non_null(strstr(r.body, "\"consent_required\":false"));
    resp_free(&r);
}

static int send_text(int port, sess_t *s, const char *id, const char *text)
{
    char *body = sb_xasprintf("{\"id\":\"%s\",\"text\":\"%s\"}", id, text);
    int st = post_auth(port, "/v1/webchat/messages", ORIGIN, s->token, body, NULL);
    free(body);
    return st;
}

/* ---- SSE ---- */

typedef struct sse {
    int fd;
    sb_buf_t in;
    size_t off;
    int status;
} sse_t;

static void sse_open(sse_t *e, int port, const char *token, const char *last_event_id)
{
    memset(e, 0, sizeof *e);
    e->fd = dial(port);
    char *req = sb_xasprintf("GET /v1/webchat/stream?token=%s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
                             "Accept: text/event-stream\r\n%s%s%s\r\n",
                             token, port, last_event_id ? "Last-Event-ID: " : "",
                             last_event_id ? last_event_id : "", last_event_id ? "\r\n" : "");
    send_all(e->fd, req, strlen(req));
    free(req);
    char buf[8192];
    while (!e->in.data || !memmem(e->in.data, e->in.len, "\r\n\r\n", 4)) {
        struct pollfd p = {.fd = e->fd, .events = POLLIN};
        assert_true(poll(&p, 1, STEP_MS) > 0);
        ssize_t r = recv(e->fd, buf, sizeof buf, 0);
        assert_true(r > 0);
        sb_buf_append(&e->in, buf, (size_t)r);
    }
    sb_buf_append(&e->in, "", 1);
    e->in.len--;
    assert_int_equal(sscanf(e->in.data, "HTTP/1.1 %d", &e->status), 1);
    e->off = (size_t)((char *)memmem(e->in.data, e->in.len, "\r\n\r\n", 4) - e->in.data) + 4;
}

/* The next event frame (comments and retry lines skipped) within timeout_ms: its id and data.
 * False on timeout or EOF. */
static bool sse_next(sse_t *e, int timeout_ms, char *id, size_t idn, char **data)
{
    char buf[8192];
    for (;;) {
        char *start = e->in.data ? e->in.data + e->off : NULL;
        char *end = start ? strstr(start, "\n\n") : NULL;
        if (end) {
            *end = '\0';
            e->off = (size_t)(end - e->in.data) + 2;
            char *ids = strstr(start, "id: ");
            char *dat = strstr(start, "data: ");
            if (ids && dat && (ids == start || ids[-1] == '\n')) {
                char *nl = strchr(ids, '\n');
                snprintf(id, idn, "%.*s", (int)(nl - ids - 4), ids + 4);
                *data = sb_xstrdup(dat + 6);
                return true;
            }
            continue;
        }
        struct pollfd p = {.fd = e->fd, .events = POLLIN};
        if (poll(&p, 1, timeout_ms) <= 0) return false;
        ssize_t r = recv(e->fd, buf, sizeof buf, 0);
        if (r <= 0) return false;
        sb_buf_append(&e->in, buf, (size_t)r);
        sb_buf_append(&e->in, "", 1);
        e->in.len--;
    }
}

static void sse_close(sse_t *e)
{
    close(e->fd);
    sb_buf_free(&e->in);
}

/* ---- an Outbound for the browser session, as the responder or an agent would publish ---- */

static void publish_reply(const sess_t *s, const char *msg_id, bool agent, const char *text)
{
    sb_recipient_t rc = SWITCHBOARD__V1__RECIPIENT__INIT;
    rc.channel = "webchat";
    rc.address = (char *)s->visitor_id;
    rc.account_id = "browser";
    rc.session_id = (char *)s->session_id;
    uint8_t *plain = NULL;
    size_t plen = 0;
    assert_int_equal(SB_CODEC_PACK(&rc, &plain, &plen), SB_OK);
    uint8_t *sealed = sb_xmalloc(plen + SB_SEAL_BOX_OVERHEAD);
    assert_int_equal(sb_seal_box(sealed, plain, plen, T->h.recipient_pk), SB_OK);
    free(plain);

    sb_outbound_t o = SWITCHBOARD__V1__OUTBOUND__INIT;
    o.message_id = (char *)msg_id;
    o.conversation_id = (char *)s->conversation;
    o.channel = "webchat";
    o.sealed_recipient.data = sealed;
    o.sealed_recipient.len = plen + SB_SEAL_BOX_OVERHEAD;
    o.author = agent ? SWITCHBOARD__V1__AUTHOR__AUTHOR_AGENT : SWITCHBOARD__V1__AUTHOR__AUTHOR_BOT;
    o.text = (char *)text;
    o.created_at_ms = sb_now_ms();
    Switchboard__V1__Button b1 = SWITCHBOARD__V1__BUTTON__INIT, b2 = SWITCHBOARD__V1__BUTTON__INIT;
    Switchboard__V1__Button *bs[2] = {&b1, &b2};
    if (!agent) {
        b1.id = "intent:opening_hours";
        b1.title = "Opening hours";
        b2.id = "escalate:human";
        b2.title = "Talk to a person";
        o.buttons = bs;
        o.n_buttons = 2;
    }
    uint8_t *data = NULL;
    size_t len = 0;
    assert_int_equal(SB_CODEC_PACK(&o, &data, &len), SB_OK);
    assert_int_equal(sb_bus_publish(T->h.bus, "sb.out.webchat", data, len, msg_id, NULL), SB_OK);
    free(data);
    free(sealed);
}

/* ---- Envelopes on SB_IN ---- */

typedef struct in_find {
    const char *conversation;
    int kind;
    const char *text;
    const char *payload;
    int found;
    bool consent;
} in_find_t;

static void on_in(void *ctx, const char *subject, const void *data, size_t len)
{
    (void)subject;
    in_find_t *f = ctx;
    sb_envelope_t *e = NULL;
    if (SB_CODEC_UNPACK(switchboard__v1__envelope__descriptor, data, len, &e) != SB_OK) return;
    if (strcmp(e->conversation_id, f->conversation) == 0 && (int)e->kind == f->kind &&
        strcmp(e->channel, "webchat") == 0 && (!f->text || strcmp(e->text, f->text) == 0) &&
        (!f->payload || strcmp(e->button_payload, f->payload) == 0)) {
        f->found++;
        f->consent = e->consent_support_chat && e->ai_disclosure_shown &&
                     strcmp(e->consent_notice_version, "webchat-notice-1") == 0;
    }
    SB_CODEC_FREE(e);
}

static int count_in(const sess_t *s, int kind, const char *text, const char *payload, bool *consent)
{
    in_find_t f = {.conversation = s->conversation, .kind = kind, .text = text, .payload = payload};
    size_t n = 0;
    assert_int_equal(sb_harness_read_stream(&T->h, SB_STREAM_IN, "sb.in.>", on_in, &f, &n), SB_OK);
    if (consent) *consent = f.consent;
    return f.found;
}

/* ---- set-up ---- */

static pid_t spawn_router_on(t_t *t, int port)
{
    /* A second router: the same config with another listen port. */
    char *cfg = NULL;
    size_t len = 0;
    assert_int_equal(sb_read_file(t->h.config_path, 1 << 20, &cfg, &len), SB_OK);
    char from[32], to[32];
    snprintf(from, sizeof from, "127.0.0.1:%d", t->h.router_port);
    snprintf(to, sizeof to, "127.0.0.1:%d", port);
    char *at = strstr(cfg, from);
    assert_non_null(at);
    *at = '\0';
    char *out = sb_xasprintf("%s%s%s", cfg, to, at + strlen(from));
    char path[sizeof t->h.config_path], saved[sizeof t->h.config_path];
    assert_true(strlen(t->h.dir) + 16 < sizeof path);
    memcpy(path, t->h.dir, strlen(t->h.dir) + 1);
    strcat(path, "/router-b.yaml");
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(out, f);
    fclose(f);
    free(out);
    free(cfg);
    memcpy(saved, t->h.config_path, sizeof saved);
    memcpy(t->h.config_path, path, sizeof path);
    pid_t pid = sb_harness_spawn(&t->h, "switchboard-router", NULL);
    memcpy(t->h.config_path, saved, sizeof saved);
    return pid;
}

static int setup(void **state)
{
    t_t *t = sb_xcalloc(1, sizeof *t);
    T = t;
    *state = t; /* the teardown stops whatever was started, even after a failed setup */
    assert_int_equal(sb_seal_init(), SB_OK);
    assert_int_equal(sb_harness_start_nats(&t->h), SB_OK);
    uint8_t key[32];
    sb_seal_random(key, sizeof key);
    char b64[64];
    sb_seal_base64_encode(b64, key, sizeof key);
    char *extra = sb_xasprintf("channels:\n  webchat:\n    signing_secret: \"whsec_%s\"\n"
                               "    allowed_origins: \"" ORIGIN " https://other.example.org\"\n"
                               "    session_ttl_s: %d\n"
                               "  whatsapp:\n    enabled: false\n",
                               b64, TTL_S);
    assert_int_equal(sb_harness_write_config(&t->h, extra), SB_OK);
    free(extra);
    snprintf(t->clock_path, sizeof t->clock_path, "%s/clock", t->h.dir);
    set_clock(t, (int64_t)(sb_now_ms() / 1000));
    setenv("SB_TEST_NOW", t->clock_path, 1);
    assert_true(sb_harness_spawn(&t->h, "switchboard-router", NULL) > 0);
    t->port_b = sb_harness_free_port();
    assert_true(spawn_router_on(t, t->port_b) > 0);
    unsetenv("SB_TEST_NOW");
    char url[128];
    snprintf(url, sizeof url, "%s/readyz", t->h.router_url);
    assert_int_equal(sb_harness_wait_http(url, STEP_MS), SB_OK);
    snprintf(url, sizeof url, "http://127.0.0.1:%d/readyz", t->port_b);
    assert_int_equal(sb_harness_wait_http(url, STEP_MS), SB_OK);
    *state = t;
    return 0;
}

static int teardown(void **state)
{
    t_t *t = *state;
    if (!t) return 0;
    sb_harness_stop(&t->h);
    free(t);
    return 0;
}

/* ---- tests ---- */

static void test_session_origins_and_cors(void **state)
{
    t_t *t = *state;
    int port = t->h.router_port;
    resp_t r;
    sess_t s;
    /* An allowed origin: a token, the notice, CORS for that origin. */
    assert_int_equal(new_session(port, ORIGIN, &s, &r), 200);
    assert_true(has_header(&r, "Access-Control-Allow-Origin: " ORIGIN "\r\n"));
    assert_true(has_header(&r, "Cache-Control: no-store"));
    assert_non_null(strstr(r.body, "\"consent_required\":true"));
    assert_non_null(strstr(r.body, "\"version\":\"webchat-notice-1\""));
    assert_non_null(strstr(r.body, "a bot"));
    assert_non_null(strstr(r.body, "\"max_text_bytes\":8192"));
    assert_int_equal(strncmp(s.session_id, "wcb_", 4), 0);
    assert_int_equal(strncmp(s.visitor_id, "wcv_", 4), 0);
    resp_free(&r);
    /* Another origin, none, or a malformed one: 403 without CORS. */
    assert_int_equal(new_session(port, "https://evil.example.net", NULL, &r), 403);
    assert_false(has_header(&r, "Access-Control-Allow-Origin"));
    resp_free(&r);
    assert_int_equal(new_session(port, NULL, NULL, NULL), 403);
    assert_int_equal(new_session(port, "null", NULL, NULL), 403);
    /* The router's own origin (its demo page). */
    char own[64];
    snprintf(own, sizeof own, "http://127.0.0.1:%d", port);
    assert_int_equal(new_session(port, own, NULL, NULL), 200);
    /* Preflight: allowed origins only. */
    request(port, "OPTIONS", "/v1/webchat/messages",
            "Origin: https://other.example.org\r\nAccess-Control-Request-Method: POST\r\n"
            "Access-Control-Request-Headers: authorization, content-type\r\n",
            NULL, &r);
    assert_int_equal(r.status, 204);
    assert_true(has_header(&r, "Access-Control-Allow-Origin: https://other.example.org\r\n"));
    assert_true(has_header(&r, "Access-Control-Allow-Headers: Authorization, Content-Type"));
    resp_free(&r);
    request(port, "OPTIONS", "/v1/webchat/messages",
            "Origin: https://evil.example.net\r\nAccess-Control-Request-Method: POST\r\n", NULL,
            &r);
    assert_int_equal(r.status, 403);
    assert_false(has_header(&r, "Access-Control-Allow-Origin"));
    resp_free(&r);
    /* The widget's files. */
    request(port, "GET", "/widget/widget.js", NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_true(has_header(&r, "Content-Type: text/javascript"));
    assert_non_null(strstr(r.body, "/v1/webchat/session"));
    resp_free(&r);
    request(port, "GET", "/widget/demo.html", NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_true(has_header(&r, "Content-Type: text/html"));
    assert_true(has_header(&r, "Content-Security-Policy:"));
    resp_free(&r);
    request(port, "GET", "/widget/../main.c", NULL, NULL, &r);
    assert_int_equal(r.status, 404);
    resp_free(&r);
}

static void test_tokens(void **state)
{
    t_t *t = *state;
    int port = t->h.router_port;
    sess_t s;
    assert_int_equal(new_session(port, ORIGIN, &s, NULL), 200);
    /* No consent yet: messages and the stream are refused. */
    assert_int_equal(send_text(port, &s, "m1", "hello"), 403);
    /* Missing, tampered or foreign tokens: 401 everywhere. */
    assert_int_equal(
        post_auth(port, "/v1/webchat/messages", ORIGIN, NULL, "{\"text\":\"x\"}", NULL), 401);
    sess_t bad = s;
    size_t n = strlen(bad.token);
    bad.token[n - 1] = bad.token[n - 1] == '0' ? '1' : '0';
    assert_int_equal(send_text(port, &bad, "m1", "hello"), 401);
    assert_int_equal(post_auth(port, "/v1/webchat/consent", ORIGIN, bad.token,
                               "{\"notice_version\":\"webchat-notice-1\",\"accepted\":true}", NULL),
                     401);
    snprintf(bad.token, sizeof bad.token, "v1.00.%064d", 0);
    assert_int_equal(send_text(port, &bad, "m1", "hello"), 401);
    sse_t e;
    sse_open(&e, port, "v1.garbage", NULL);
    assert_int_equal(e.status, 401);
    sse_close(&e);
    /* The token is bound to its origin. */
    assert_int_equal(post_auth(port, "/v1/webchat/messages", "https://other.example.org", s.token,
                               "{\"text\":\"x\"}", NULL),
                     403);
    /* A changed notice must be shown again. */
    assert_int_equal(post_auth(port, "/v1/webchat/consent", ORIGIN, s.token,
                               "{\"notice_version\":\"old\",\"accepted\":true}", NULL),
                     409);

    /* Re-issue while valid: the same session and visitor. */
    sess_t again;
    resp_t r;
    assert_int_equal(post_auth(port, "/v1/webchat/session", ORIGIN, s.token, "{}", &r), 200);
    take_token(&again, &r);
    resp_free(&r);
    assert_string_equal(again.session_id, s.session_id);
    assert_string_equal(again.visitor_id, s.visitor_id);

    /* Expired: refused for messages and streams, but the session can be resumed for a while. */
    consent(port, &s);
    set_clock(t, t->now + TTL_S + 5);
    assert_int_equal(send_text(port, &s, "m2", "late"), 401);
    sse_open(&e, port, s.token, NULL);
    assert_int_equal(e.status, 401);
    sse_close(&e);
    assert_int_equal(post_auth(port, "/v1/webchat/session", ORIGIN, s.token, "{}", &r), 200);
    assert_non_null(strstr(r.body, "\"consent_required\":false"));
    take_token(&again, &r);
    resp_free(&r);
    assert_string_equal(again.visitor_id, s.visitor_id);
    assert_int_equal(send_text(port, &again, "m3", "resumed"), 200);
    /* Too old to resume: a new session is needed. */
    set_clock(t, t->now + 2 * 86400);
    assert_int_equal(post_auth(port, "/v1/webchat/session", ORIGIN, again.token, "{}", NULL), 401);
    set_clock(t, (int64_t)(sb_now_ms() / 1000));
}

static void test_messages_and_live_replies(void **state)
{
    t_t *t = *state;
    int a = t->h.router_port, b = t->port_b;
    sess_t s;
    assert_int_equal(new_session(a, ORIGIN, &s, NULL), 200);
    consent(a, &s);
    bool ok = false;
    assert_int_equal(count_in(&s, SWITCHBOARD__V1__MESSAGE_KIND__KIND_SESSION, NULL, NULL, &ok), 1);
    assert_true(ok);

    /* A text and a button tap become Envelopes on SB_IN, once even when sent twice. */
    assert_int_equal(send_text(a, &s, "m-hello", "hello there"), 200);
    assert_int_equal(send_text(a, &s, "m-hello", "hello there"), 200);
    assert_int_equal(post_auth(a, "/v1/webchat/messages", ORIGIN, s.token,
                               "{\"id\":\"b-1\",\"postback\":{\"payload\":\"intent:opening_hours\","
                               "\"title\":\"Opening hours\",\"in_reply_to\":\"x1\"}}",
                               NULL),
                     200);
    assert_int_equal(
        count_in(&s, SWITCHBOARD__V1__MESSAGE_KIND__KIND_TEXT, "hello there", NULL, NULL), 1);
    assert_int_equal(count_in(&s, SWITCHBOARD__V1__MESSAGE_KIND__KIND_BUTTON_REPLY, NULL,
                              "intent:opening_hours", NULL),
                     1);
    /* Bounds: 8 KiB of text, JSON, one of text or postback. */
    char *big = sb_xmalloc(8194);
    memset(big, 'a', 8193);
    big[8193] = '\0';
    assert_int_equal(send_text(a, &s, "m-big", big), 413);
    big[8192] = '\0';
    assert_int_equal(send_text(a, &s, "m-max", big), 200);
    free(big);
    assert_int_equal(post_auth(a, "/v1/webchat/messages", ORIGIN, s.token, "{nope", NULL), 400);
    assert_int_equal(post_auth(a, "/v1/webchat/messages", ORIGIN, s.token, "{\"id\":\"x\"}", NULL),
                     400);
    assert_int_equal(send_text(a, &s, "bad id!", "x"), 400);

    /* The stream is held by router B; the reply is taken by whichever egress. */
    sse_t e;
    sse_open(&e, b, s.token, NULL);
    assert_int_equal(e.status, 200);
    assert_non_null(strcasestr(e.in.data, "Content-Type: text/event-stream"));
    publish_reply(&s, "out-live-1", false, "Hi, I am the bot.");
    char id[128];
    char *data = NULL;
    assert_true(sse_next(&e, STEP_MS, id, sizeof id, &data));
    assert_string_equal(id, "out-live-1");
    cJSON *j = cJSON_Parse(data);
    assert_non_null(j);
    assert_string_equal(cJSON_GetObjectItem(j, "author")->valuestring, "bot");
    const cJSON *m = cJSON_GetObjectItem(j, "message");
    assert_string_equal(cJSON_GetObjectItem(m, "text")->valuestring, "Hi, I am the bot.");
    const cJSON *btns = cJSON_GetObjectItem(m, "buttons");
    assert_int_equal(cJSON_GetArraySize(btns), 2);
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetArrayItem(btns, 0), "id")->valuestring,
                        "intent:opening_hours");
    assert_null(strstr(data, s.visitor_id)); /* nothing of the recipient goes out */
    assert_null(strstr(data, s.session_id));
    cJSON_Delete(j);
    free(data);
    /* The same Outbound again is not shown twice. */
    publish_reply(&s, "out-live-1", false, "Hi, I am the bot.");
    publish_reply(&s, "out-live-2", true, "Hello, Ada here.");
    assert_true(sse_next(&e, STEP_MS, id, sizeof id, &data));
    assert_string_equal(id, "out-live-2");
    assert_non_null(strstr(data, "\"author\":\"agent\""));
    free(data);
    sse_close(&e);

    /* Missed while away. A reload (no id) on router A gets everything kept, in order, once A's
     * own subscription has it... */
    publish_reply(&s, "out-live-3", true, "Are you still there?");
    sse_t e2;
    const char *want[] = {"out-live-1", "out-live-2", "out-live-3"};
    sse_open(&e2, a, s.token, NULL);
    assert_int_equal(e2.status, 200);
    for (size_t i = 0; i < 3; i++) {
        assert_true(sse_next(&e2, STEP_MS, id, sizeof id, &data));
        assert_string_equal(id, want[i]);
        free(data);
    }
    sse_close(&e2);
    /* ...and a reconnect with Last-Event-ID gets only what came after it, on either router. */
    int ports[2] = {a, b};
    for (size_t k = 0; k < 2; k++) {
        sse_open(&e2, ports[k], s.token, "out-live-2");
        assert_int_equal(e2.status, 200);
        assert_true(sse_next(&e2, STEP_MS, id, sizeof id, &data));
        assert_string_equal(id, "out-live-3");
        free(data);
        assert_false(sse_next(&e2, 300, id, sizeof id, &data));
        sse_close(&e2);
    }

    /* Another visitor's stream sees none of it. */
    sess_t o;
    assert_int_equal(new_session(b, ORIGIN, &o, NULL), 200);
    consent(b, &o);
    sse_open(&e2, b, o.token, NULL);
    assert_int_equal(e2.status, 200);
    assert_false(sse_next(&e2, 300, id, sizeof id, &data));
    sse_close(&e2);
}

/* The replay window: the last 50 replies of a conversation, each once. */
static void test_replay_window(void **state)
{
    t_t *t = *state;
    sess_t s;
    assert_int_equal(new_session(t->h.router_port, ORIGIN, &s, NULL), 200);
    consent(t->h.router_port, &s);
    sse_t e;
    sse_open(&e, t->port_b, s.token, NULL);
    assert_int_equal(e.status, 200);
    char id[128], *data = NULL;
    for (int i = 1; i <= 60; i++) {
        char mid[32];
        snprintf(mid, sizeof mid, "out-win-%d", i);
        publish_reply(&s, mid, false, "one of many");
    }
    /* All 60 arrive live (in whatever order the two egress copies delivered them). */
    int seen = 0;
    while (seen < 60 && sse_next(&e, STEP_MS, id, sizeof id, &data)) {
        assert_int_equal(strncmp(id, "out-win-", 8), 0);
        free(data);
        seen++;
    }
    assert_int_equal(seen, 60);
    sse_close(&e);
    /* A reload gets the 50 most recent, each once. */
    sse_open(&e, t->port_b, s.token, NULL);
    bool got[61] = {false};
    int n = 0;
    while (sse_next(&e, 500, id, sizeof id, &data)) {
        int k = atoi(id + 8);
        assert_true(k >= 1 && k <= 60);
        assert_false(got[k]);
        got[k] = true;
        free(data);
        n++;
    }
    assert_int_equal(n, 50);
    sse_close(&e);
}

static void test_rate_limits(void **state)
{
    t_t *t = *state;
    int port = t->port_b;
    sess_t s;
    assert_int_equal(new_session(port, ORIGIN, &s, NULL), 200);
    consent(port, &s);
    /* Per session: a burst of 10, then one a second. The bucket is charged before the body is
     * read, so requests with an empty object (400, nothing published) measure it quickly. */
    int answered = 0, limited = 0;
    uint64_t t0 = sb_mono_ns();
    for (int i = 0; i < 30; i++) {
        resp_t r;
        int st = post_auth(port, "/v1/webchat/messages", ORIGIN, s.token, "{}", &r);
        if (st == 400) answered++;
        if (st == 429) {
            limited++;
            assert_true(has_header(&r, "Retry-After:"));
        }
        resp_free(&r);
    }
    int elapsed_s = (int)((sb_mono_ns() - t0) / 1000000000ULL);
    assert_int_equal(answered + limited, 30);
    assert_true(answered >= 10);
    assert_true(answered <= 10 + elapsed_s + 1);
    assert_true(limited >= 1);
    /* Per address: session creation beyond its burst. */
    limited = 0;
    for (int i = 0; i < 40 && !limited; i++)
        if (new_session(port, ORIGIN, NULL, NULL) == 429) limited++;
    assert_int_equal(limited, 1);
    /* Router A keeps its own buckets: it still answers this address. */
    assert_int_equal(new_session(t->h.router_port, ORIGIN, NULL, NULL), 200);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_session_origins_and_cors),
        cmocka_unit_test(test_tokens),
        cmocka_unit_test(test_messages_and_live_replies),
        cmocka_unit_test(test_replay_window),
        cmocka_unit_test(test_rate_limits),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
