/* End-to-end: the whole pipeline with real processes. A real nats-server, the router,
 * classifier, escalation worker and responder binaries, a model trained by `switchboard train`
 * from the demo data, and a local HTTP sink playing the channel APIs. It checks the walking
 * skeleton's promises: a web-chat message gets a bot answer at the sink (with the bot
 * disclosure); "I want to talk to a human" becomes an Escalation, an agent's reply arrives at
 * the sink, resolve hands back to the bot; a webhook sent twice is recorded once; and no file
 * under the data directory holds the customer's name, e-mail or phone number. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "sb/codec.h"
#include "sb/httpclient.h"
#include "sb/ids.h"
#include "sb/seal.h"
#include "sb/util.h"

#define STEP_MS 30000

static const char *const customer_name = "Quintessa Marbleworth";
static const char *const customer_email = "quintessa.marbleworth@example.org";
static const char *const customer_phone = "+44 7700 900461";
static const char *const customer_phone_digits = "447700900461";

typedef struct e2e {
    sb_harness_t h;
    sb_sink_t *sink;
    int sink_port;
    char secret[80]; /* whsec_... */
    uint8_t key[32];
    sb_http_client_t *client;
    int seq;
} e2e_t;

/* Posts one webchat.v1 event signed the Standard Webhooks way; returns the HTTP status. */
static long post_webchat(e2e_t *t, const char *event_id, const char *visitor, const char *text)
{
    char *name_json =
        sb_xasprintf(",\"display_name\":\"%s\",\"email\":\"%s\"", customer_name, customer_email);
    char *body = sb_xasprintf(
        "{\"schema\":\"webchat.v1\",\"type\":\"message.created\",\"id\":\"%s\","
        "\"occurred_at\":\"2026-11-21T09:00:00Z\",\"session_id\":\"wcs_e2e_%s\","
        "\"visitor\":{\"id\":\"%s\"%s},\"message\":{\"kind\":\"text\",\"text\":\"%s\"}}",
        event_id, visitor, visitor, name_json, text);
    free(name_json);
    char ts[32];
    snprintf(ts, sizeof ts, "%lld", (long long)(sb_now_ms() / 1000));
    uint8_t mac[32];
    sb_seal_part_t parts[] = {
        {event_id, strlen(event_id)}, {".", 1}, {ts, strlen(ts)}, {".", 1}, {body, strlen(body)}};
    sb_seal_hmac_sha256(mac, t->key, sizeof t->key, parts, 5);
    char b64[64];
    sb_seal_base64_encode(b64, mac, sizeof mac);
    char h_id[128], h_ts[64], h_sig[128];
    snprintf(h_id, sizeof h_id, "webhook-id: %s", event_id);
    snprintf(h_ts, sizeof h_ts, "webhook-timestamp: %s", ts);
    snprintf(h_sig, sizeof h_sig, "webhook-signature: v1,%s", b64);
    const char *headers[] = {"Content-Type: application/json", h_id, h_ts, h_sig, NULL};
    char url[128];
    snprintf(url, sizeof url, "%s/v1/ingress/webchat/events", t->h.router_url);
    sb_http_client_response_t resp = {0};
    sb_result_t r =
        sb_http_client_do(t->client, "POST", url, headers, body, strlen(body), 10000, 65536, &resp);
    free(body);
    long status = r == SB_OK ? resp.status : -1;
    sb_buf_free(&resp.body);
    return status;
}

/* Waits for sink request number idx (0-based) and returns its parsed JSON body. */
static cJSON *sink_json(e2e_t *t, size_t idx)
{
    size_t have = sb_sink_wait(t->sink, idx + 1, STEP_MS);
    if (have < idx + 1) {
        fprintf(stderr, "e2e: sink has %zu requests, expected %zu\n", have, idx + 1);
        return NULL;
    }
    const sb_sink_request_t *rq = sb_sink_get(t->sink, idx);
    assert_non_null(rq);
    cJSON *j = cJSON_ParseWithLength(rq->body, rq->body_len);
    if (!j) fprintf(stderr, "e2e: sink body is not JSON: %s\n", rq->body);
    return j;
}

static const char *json_str(const cJSON *j, const char *a, const char *b)
{
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(j, a);
    if (b) x = cJSON_GetObjectItemCaseSensitive(x, b);
    return cJSON_IsString(x) ? x->valuestring : "";
}

static int setup(void **state)
{
    e2e_t *t = sb_xcalloc(1, sizeof *t);
    assert_int_equal(sb_seal_init(), SB_OK);
    assert_int_equal(sb_harness_start_nats(&t->h), SB_OK);
    assert_int_equal(sb_sink_start(&t->sink, &t->sink_port), SB_OK);
    sb_seal_random(t->key, sizeof t->key);
    char b64[64];
    sb_seal_base64_encode(b64, t->key, sizeof t->key);
    snprintf(t->secret, sizeof t->secret, "whsec_%s", b64);

    const char *src = getenv("SB_SOURCE_DIR");
    assert_non_null(src);
    char model[PATH_MAX + 16], data[PATH_MAX], answers[PATH_MAX], rules[PATH_MAX];
    snprintf(model, sizeof model, "%s/demo.model", t->h.dir);
    snprintf(data, sizeof data, "%s/data/demo/train.tsv", src);
    snprintf(answers, sizeof answers, "%s/config/answers.yaml", src);
    snprintf(rules, sizeof rules, "%s/config/rules.yaml", src);
    /* Every channel API call goes to the sink (the harness owns the `router:` section). */
    char base[64];
    snprintf(base, sizeof base, "http://127.0.0.1:%d", t->sink_port);
    setenv("SB_CHANNEL_API_BASE", base, 1);
    char *extra = sb_xasprintf(
        "channels:\n  webchat:\n    signing_secret: \"%s\"\n"
        "  whatsapp:\n    app_secret: \"e2e-app-secret\"\n    verify_token: \"e2e-verify\"\n"
        "    access_token: \"e2e-token\"\n"
        "classifier:\n  model: \"%s\"\n  rules: \"%s\"\n"
        "responder:\n  answers: \"%s\"\n"
        "escalation:\n  default_team: support\n",
        t->secret, model, access(rules, R_OK) == 0 ? rules : "", answers);
    assert_int_equal(sb_harness_write_config(&t->h, extra), SB_OK);
    free(extra);

    /* Train the demo model with the real CLI. */
    char cmd[PATH_MAX * 3];
    snprintf(cmd, sizeof cmd, "%s/switchboard train --data %s --out %s >%s/train.log 2>&1",
             getenv("SB_BIN_DIR"), data, model, t->h.dir);
    assert_int_equal(system(cmd), 0);

    assert_true(sb_harness_spawn(&t->h, "switchboard-router", NULL) > 0);
    assert_true(sb_harness_spawn(&t->h, "switchboard-classifier", NULL) > 0);
    assert_true(sb_harness_spawn(&t->h, "switchboard-escalation", NULL) > 0);
    assert_true(sb_harness_spawn(&t->h, "switchboard-responder", NULL) > 0);
    char ready[128];
    snprintf(ready, sizeof ready, "%s/readyz", t->h.router_url);
    assert_int_equal(sb_harness_wait_http(ready, STEP_MS), SB_OK);
    assert_int_equal(sb_http_client_create(&t->client), SB_OK);
    *state = t;
    return 0;
}

static int teardown(void **state)
{
    e2e_t *t = *state;
    sb_http_client_destroy(t->client);
    sb_harness_stop(&t->h);
    sb_sink_stop(t->sink);
    free(t);
    return 0;
}

/* Finds the newest Escalation with the given state on sb.esc.support.> */
typedef struct esc_find {
    const char *state;
    char conversation_id[64];
    uint32_t partition;
    size_t lines;
    bool leaked;
} esc_find_t;

static void on_esc(void *ctx, const char *subject, const void *data, size_t len)
{
    (void)subject;
    esc_find_t *f = ctx;
    sb_escalation_t *e = NULL;
    if (SB_CODEC_UNPACK(switchboard__v1__escalation__descriptor, data, len, &e) != SB_OK) return;
    if (strcmp(e->state, f->state) == 0) {
        snprintf(f->conversation_id, sizeof f->conversation_id, "%s", e->conversation_id);
        f->partition = e->partition;
        f->lines = e->n_transcript;
    }
    for (size_t i = 0; i < e->n_transcript; i++)
        if (strstr(e->transcript[i]->text, customer_email) ||
            strstr(e->transcript[i]->text, "7700 900461"))
            f->leaked = true;
    if (strstr(e->masked_contact, customer_name) || strstr(e->masked_contact, customer_email))
        f->leaked = true;
    SB_CODEC_FREE(e);
}

static void agent_command(e2e_t *t, Switchboard__V1__AgentVerb verb, const esc_find_t *f,
                          const char *text)
{
    sb_agent_command_t cmd = SWITCHBOARD__V1__AGENT_COMMAND__INIT;
    char id[64], subject[128];
    snprintf(id, sizeof id, "e2e-cmd-%d", ++t->seq);
    cmd.command_id = id;
    cmd.verb = verb;
    cmd.conversation_id = (char *)f->conversation_id;
    cmd.partition = f->partition;
    cmd.agent_id = "agent-ada";
    cmd.text = (char *)(text ? text : "");
    cmd.at_ms = sb_now_ms();
    const char *verbs[] = {"", "claim", "reply", "transfer", "resolve", "release"};
    snprintf(subject, sizeof subject, "sb.agent.%s.%u", verbs[verb], f->partition);
    uint8_t *buf = NULL;
    size_t len = 0;
    assert_int_equal(SB_CODEC_PACK(&cmd, &buf, &len), SB_OK);
    assert_int_equal(sb_bus_publish(t->h.bus, subject, buf, len, id, NULL), SB_OK);
    free(buf);
}

/* Returns true if any regular file under dir contains needle. */
static bool tree_contains(const char *dir, const char *needle)
{
    DIR *d = opendir(dir);
    if (!d) return false;
    bool found = false;
    struct dirent *de;
    while (!found && (de = readdir(d))) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) continue;
        char path[PATH_MAX];
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        struct stat st;
        if (lstat(path, &st) != 0) continue;
        if (S_ISDIR(st.st_mode)) {
            found = tree_contains(path, needle);
        } else if (S_ISREG(st.st_mode)) {
            char *data = NULL;
            size_t len = 0;
            if (sb_read_file(path, (size_t)1 << 31, &data, &len) == SB_OK) {
                found = memmem(data, len, needle, strlen(needle)) != NULL;
                free(data);
            }
        }
    }
    closedir(d);
    return found;
}

static void test_conversation_bot_human_bot(void **state)
{
    e2e_t *t = *state;
    size_t n = 0;

    /* 1. A question gets the bot's answer at the channel sink, saying it is a bot. */
    assert_int_equal(post_webchat(t, "wcm_e2e_1", "wcv_e2e_a", "hello"), 200);
    cJSON *j = sink_json(t, n++);
    assert_non_null(j);
    assert_string_equal(json_str(j, "author", NULL), "bot");
    const char *text = json_str(j, "message", "text");
    assert_true(strlen(text) > 0);
    assert_non_null(strcasestr(text, "bot")); /* the disclosure: it says it is a bot */
    cJSON_Delete(j);

    /* 2. Asking for a human: an Escalation for team support, with a redacted transcript. */
    char ask[256];
    snprintf(ask, sizeof ask, "I want to talk to a human, call me on %s", customer_phone);
    assert_int_equal(post_webchat(t, "wcm_e2e_2", "wcv_e2e_a", ask), 200);
    assert_true(sb_harness_wait_stream(&t->h, SB_STREAM_ESC, "sb.esc.support.>", 1, STEP_MS) >= 1);
    esc_find_t f = {.state = "queued"};
    size_t count = 0;
    assert_int_equal(
        sb_harness_read_stream(&t->h, SB_STREAM_ESC, "sb.esc.support.>", on_esc, &f, &count),
        SB_OK);
    assert_true(f.conversation_id[0] != '\0');
    assert_true(f.lines >= 2);
    assert_false(f.leaked);
    /* The bot acknowledges the handoff. */
    j = sink_json(t, n++);
    assert_non_null(j);
    assert_string_equal(json_str(j, "author", NULL), "bot");
    cJSON_Delete(j);

    /* 3. An agent claims and replies: the reply reaches the channel, authored by the agent. */
    agent_command(t, SWITCHBOARD__V1__AGENT_VERB__VERB_CLAIM, &f, NULL);
    agent_command(t, SWITCHBOARD__V1__AGENT_VERB__VERB_REPLY, &f, "Hi, this is Ada from support.");
    j = sink_json(t, n++);
    assert_non_null(j);
    assert_string_equal(json_str(j, "author", NULL), "agent");
    assert_string_equal(json_str(j, "message", "text"), "Hi, this is Ada from support.");
    cJSON_Delete(j);

    /* While the agent owns the conversation, the bot stays silent. */
    assert_int_equal(post_webchat(t, "wcm_e2e_3", "wcv_e2e_a", "thanks, my order is late"), 200);
    assert_true(sb_harness_wait_stream(&t->h, SB_STREAM_ESC, "sb.esc.support.>", 3, STEP_MS) >= 3);
    esc_find_t g = {.state = "customer_message"};
    assert_int_equal(
        sb_harness_read_stream(&t->h, SB_STREAM_ESC, "sb.esc.support.>", on_esc, &g, &count),
        SB_OK);
    assert_string_equal(g.conversation_id, f.conversation_id);

    /* 4. Resolve hands back: the next question gets the bot again. */
    agent_command(t, SWITCHBOARD__V1__AGENT_VERB__VERB_RESOLVE, &f, NULL);
    assert_true(sb_harness_wait_stream(&t->h, SB_STREAM_EVENTS, "sb.ev.>", 1, STEP_MS) >= 1);
    /* Give the resolve a moment to be recorded before the next inbound message. */
    for (int i = 0; i < 100; i++) {
        esc_find_t r = {.state = "resolved"};
        assert_int_equal(
            sb_harness_read_stream(&t->h, SB_STREAM_ESC, "sb.esc.support.>", on_esc, &r, &count),
            SB_OK);
        if (r.conversation_id[0]) break;
        usleep(100 * 1000);
    }
    assert_int_equal(post_webchat(t, "wcm_e2e_4", "wcv_e2e_a", "when are you open?"), 200);
    j = sink_json(t, n++);
    assert_non_null(j);
    assert_string_equal(json_str(j, "author", NULL), "bot");
    cJSON_Delete(j);
    /* No reply was sent for the message the agent owned. */
    usleep(500 * 1000);
    assert_int_equal(sb_sink_wait(t->sink, n, 0), n);
}

typedef struct dup_count {
    char id[SB_SEAL_HASH_HEX];
    int count;
} dup_count_t;

static void on_in(void *ctx, const char *subject, const void *data, size_t len)
{
    (void)subject;
    dup_count_t *dc = ctx;
    sb_envelope_t *e = NULL;
    if (SB_CODEC_UNPACK(switchboard__v1__envelope__descriptor, data, len, &e) != SB_OK) return;
    if (strcmp(e->message_id, dc->id) == 0) dc->count++;
    SB_CODEC_FREE(e);
}

static void test_same_webhook_twice_recorded_once(void **state)
{
    e2e_t *t = *state;
    size_t before = sb_sink_wait(t->sink, 0, 0);
    assert_int_equal(post_webchat(t, "wcm_e2e_dup", "wcv_e2e_b", "where is my order?"), 200);
    assert_int_equal(post_webchat(t, "wcm_e2e_dup", "wcv_e2e_b", "where is my order?"), 200);
    /* One answer arrives; wait for it, then make sure no second one follows. */
    assert_true(sb_sink_wait(t->sink, before + 1, STEP_MS) >= before + 1);
    usleep(1500 * 1000);
    assert_int_equal(sb_sink_wait(t->sink, 0, 0), before + 1);
    /* And the stream holds it once. */
    dup_count_t dc = {.count = 0};
    sb_ids_message(dc.id, t->h.id_secret, "wc:wcm_e2e_dup");
    size_t total = 0;
    assert_int_equal(sb_harness_read_stream(&t->h, SB_STREAM_IN, "sb.in.>", on_in, &dc, &total),
                     SB_OK);
    assert_int_equal(dc.count, 1);
}

static void test_no_pii_at_rest(void **state)
{
    e2e_t *t = *state;
    /* Let the workers commit what they have. */
    usleep(500 * 1000);
    const char *needles[] = {customer_name,         customer_email, customer_phone,
                             customer_phone_digits, "Marbleworth",  "7700 900461"};
    /* The whole test root: LMDB (data_dir), the JetStream store, every service's log. */
    for (size_t i = 0; i < sizeof needles / sizeof needles[0]; i++) {
        if (tree_contains(t->h.dir, needles[i]))
            fail_msg("PII found at rest under %s: needle #%zu", t->h.dir, i);
    }
    /* The test is not vacuous: the tree holds LMDB and the JetStream store with our messages. */
    char p[PATH_MAX + 16];
    snprintf(p, sizeof p, "%s/lmdb/data.mdb", t->h.data_dir);
    assert_int_equal(access(p, R_OK), 0);
    assert_true(tree_contains(t->h.dir, "sb.in."));
    assert_true(tree_contains(t->h.dir, "[PHONE_1]")); /* the redacted text did flow */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conversation_bot_human_bot),
        cmocka_unit_test(test_same_webhook_twice_recorded_once),
        cmocka_unit_test(test_no_pii_at_rest),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
