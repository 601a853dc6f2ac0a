/* switchboard-classifier against a real nats-server: a model trained by the real
 * `switchboard train` on the demo data classifies Envelopes published on sb.in.<p>.webchat into
 * Classifications on SB_NLU (right intents in English, Dutch and French, the human request by
 * rule, button payloads, statuses passed through with intent "", the envelope carried, the
 * model version stamped); a malformed payload is dropped and counted without stopping the
 * worker; SIGHUP after replacing the model file switches to the new version while messages
 * keep flowing, with none lost and none handled twice; two copies of the worker share the
 * durable consumer and handle every message exactly once between them; with
 * SB_CLASSIFIER_SHADOW_MODEL a shadow model (trained without one intent) classifies the same
 * messages and one EVENT_SHADOW per model-classified message on sb.ev.shadow says whether the
 * two agree, with both intents, confidences and versions, and the agreement metrics follow;
 * a broken shadow file is refused on SIGHUP. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "sb/codec.h"
#include "sb/httpclient.h"
#include "sb/ids.h"
#include "sb/util.h"

#define WAIT_MS 30000
#define PARTITIONS 8

typedef struct fixture {
    sb_harness_t h;
    pid_t worker;
    int metrics_port;
    char metrics_url[64];
    char model_path[PATH_MAX + 32];
    char model_b[PATH_MAX + 32];
    char version_a[17], version_b[17];
    char config_b[PATH_MAX + 32];
} fixture_t;

/* ---- helpers ----------------------------------------------------------------------------- */

/* Runs SB_BIN_DIR/switchboard train ... and waits; returns its exit status. */
static int run_train(const char *data, const char *out, const char *seed)
{
    const char *bin = getenv("SB_BIN_DIR");
    char exe[PATH_MAX];
    snprintf(exe, sizeof exe, "%s/switchboard", bin ? bin : ".");
    pid_t pid = fork();
    if (pid == 0) {
        execl(exe, exe, "train", "--data", data, "--out", out, "--seed", seed, (char *)NULL);
        _exit(127);
    }
    int st = 0;
    if (pid < 0 || waitpid(pid, &st, 0) != pid) return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* The model version is the FNV-1a checksum stored in the file's last 8 bytes (model.c). */
static void model_version(const char *path, char out[17])
{
    char *data = NULL;
    size_t len = 0;
    assert_int_equal(sb_read_file(path, 64u << 20, &data, &len), SB_OK);
    assert_true(len > 16);
    const uint8_t *t = (const uint8_t *)data + len - 8;
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | t[i];
    snprintf(out, 17, "%016llx", (unsigned long long)v);
    free(data);
}

/* The value of one metric series (exact name with labels) in /metrics, or -1. */
static double metric_at(const char *base, const char *series)
{
    sb_http_client_t *c = NULL;
    sb_http_client_response_t resp;
    double v = -1;
    char url[96];
    snprintf(url, sizeof url, "%s/metrics", base);
    if (sb_http_client_create(&c) != SB_OK) return -1;
    if (sb_http_client_do(c, "GET", url, NULL, NULL, 0, 2000, 1 << 20, &resp) == SB_OK) {
        if (resp.status == 200 && resp.body.data) {
            const char *p = resp.body.data;
            size_t n = strlen(series);
            while ((p = strstr(p, series)) != NULL) {
                if ((p == resp.body.data || p[-1] == '\n') && p[n] == ' ') {
                    v = strtod(p + n + 1, NULL);
                    break;
                }
                p += n;
            }
        }
        sb_buf_free(&resp.body);
    }
    sb_http_client_destroy(c);
    return v;
}

static bool wait_metric(const char *base, const char *series, double want)
{
    for (int i = 0; i < WAIT_MS / 100; i++) {
        if (metric_at(base, series) >= want) return true;
        usleep(100 * 1000);
    }
    return false;
}

typedef struct msg_spec {
    const char *id;
    const char *text;
    Switchboard__V1__MessageKind kind;
    const char *payload;
    const char *title;
    const char *locale;
} msg_spec_t;

static void publish_env(fixture_t *f, const msg_spec_t *s)
{
    sb_envelope_t e = SWITCHBOARD__V1__ENVELOPE__INIT;
    char conv[64], subject[64];
    snprintf(conv, sizeof conv, "conv-%s", s->id);
    uint32_t p = sb_ids_partition(conv, PARTITIONS);
    e.message_id = (char *)s->id;
    e.dedup_key_hash = (char *)s->id;
    e.channel = "webchat";
    e.conversation_id = conv;
    e.contact_id = "contact-1";
    e.partition = p;
    e.received_at_ms = sb_now_ms();
    e.kind = s->kind ? s->kind : SWITCHBOARD__V1__MESSAGE_KIND__KIND_TEXT;
    e.text = (char *)(s->text ? s->text : "");
    e.button_payload = (char *)(s->payload ? s->payload : "");
    e.button_title = (char *)(s->title ? s->title : "");
    e.locale_hint = (char *)(s->locale ? s->locale : "");
    uint8_t *buf = NULL;
    size_t len = 0;
    assert_int_equal(SB_CODEC_PACK(&e, &buf, &len), SB_OK);
    snprintf(subject, sizeof subject, "sb.in.%u.webchat", p);
    assert_int_equal(sb_bus_publish(f->h.bus, subject, buf, len, s->id, NULL), SB_OK);
    free(buf);
}

typedef struct collected {
    sb_classification_t *msgs[1024];
    char subjects[1024][32];
    size_t n;
} collected_t;

static void on_msg(void *ctx, const char *subject, const void *data, size_t len)
{
    collected_t *col = ctx;
    sb_classification_t *c = NULL;
    if (col->n < 1024 &&
        SB_CODEC_UNPACK(switchboard__v1__classification__descriptor, data, len, &c) == SB_OK) {
        snprintf(col->subjects[col->n], sizeof col->subjects[0], "%s", subject);
        col->msgs[col->n++] = c;
    }
}

static collected_t *collect(fixture_t *f)
{
    collected_t *col = sb_xcalloc(1, sizeof *col);
    assert_int_equal(sb_harness_read_stream(&f->h, "SB_NLU", "sb.nlu.>", on_msg, col, NULL), SB_OK);
    return col;
}

static void release(collected_t *col)
{
    for (size_t i = 0; i < col->n; i++)
        SB_CODEC_FREE(col->msgs[i]);
    free(col);
}

/* How many stored Classifications carry message id id; *out gets the first. */
static size_t find(collected_t *col, const char *id, sb_classification_t **out, size_t *idx)
{
    size_t n = 0;
    for (size_t i = 0; i < col->n; i++) {
        const sb_envelope_t *e = col->msgs[i]->envelope;
        if (e && e->message_id && strcmp(e->message_id, id) == 0) {
            if (n == 0 && out) *out = col->msgs[i];
            if (n == 0 && idx) *idx = i;
            n++;
        }
    }
    return n;
}

static size_t nlu_count(fixture_t *f)
{
    return sb_harness_wait_stream(&f->h, "SB_NLU", "sb.nlu.>", 0, 0);
}

/* Starts a classifier: the harness's copy (config NULL), or another copy with the given
 * config whose stderr goes to switchboard-classifier-2.log. Waits until it is ready. */
static pid_t spawn_worker(fixture_t *f, const char *config, const char *metrics_url)
{
    pid_t pid;
    if (config) {
        const char *bin = getenv("SB_BIN_DIR");
        char exe[PATH_MAX], log[PATH_MAX + 32];
        snprintf(exe, sizeof exe, "%s/switchboard-classifier", bin ? bin : ".");
        snprintf(log, sizeof log, "%s/switchboard-classifier-2.log", f->h.dir);
        pid = fork();
        if (pid == 0) {
            if (!freopen(log, "a", stderr)) _exit(126);
            execl(exe, exe, "--config", config, (char *)NULL);
            _exit(127);
        }
    } else {
        pid = sb_harness_spawn(&f->h, "switchboard-classifier", NULL);
    }
    assert_true(pid > 0);
    char ready[96];
    snprintf(ready, sizeof ready, "%s/readyz", metrics_url);
    if (sb_harness_wait_http(ready, WAIT_MS) != SB_OK) {
        sb_harness_dump_log(&f->h, "switchboard-classifier", 4000);
        fail_msg("classifier never became ready");
    }
    return pid;
}

/* ---- setup ------------------------------------------------------------------------------- */

static int setup(void **state)
{
    fixture_t *f = sb_xcalloc(1, sizeof *f);
    const char *src = getenv("SB_SOURCE_DIR");
    char demo[PATH_MAX], rules[PATH_MAX], yaml[3 * PATH_MAX];
    assert_non_null(src);
    assert_int_equal(sb_harness_start_nats(&f->h), SB_OK);

    snprintf(demo, sizeof demo, "%s/data/demo/train.tsv", src);
    snprintf(rules, sizeof rules, "%s/config/rules.yaml", src);
    snprintf(f->model_path, sizeof f->model_path, "%s/current.model", f->h.dir);
    snprintf(f->model_b, sizeof f->model_b, "%s/next.model", f->h.dir);
    assert_int_equal(run_train(demo, f->model_path, "1"), 0);
    assert_int_equal(run_train(demo, f->model_b, "2"), 0);
    model_version(f->model_path, f->version_a);
    model_version(f->model_b, f->version_b);
    assert_string_not_equal(f->version_a, f->version_b);

    f->metrics_port = sb_harness_free_port();
    snprintf(f->metrics_url, sizeof f->metrics_url, "http://127.0.0.1:%d", f->metrics_port);
    snprintf(yaml, sizeof yaml,
             "classifier:\n  model: \"%s\"\n  rules: \"%s\"\n  metrics_listen: \"127.0.0.1:%d\"\n",
             f->model_path, rules, f->metrics_port);
    assert_int_equal(sb_harness_write_config(&f->h, yaml), SB_OK);
    f->worker = spawn_worker(f, NULL, f->metrics_url);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    sb_harness_stop(&f->h);
    free(f);
    return 0;
}

/* ---- tests ------------------------------------------------------------------------------- */

static void test_classifies(void **state)
{
    fixture_t *f = *state;
    static const struct {
        msg_spec_t m;
        const char *intent;
        const char *language;
    } cases[] = {
#define TEXT(i, t) {.id = i, .text = t}
        {TEXT("c-hi", "hi"), "greeting", "en"},
        {TEXT("c-open", "when are you open?"), "opening_hours", "en"},
        {TEXT("c-order", "where is my order?"), "order_status", "en"},
        {TEXT("c-bill", "I need to update my billing address"), "change_billing_address", "en"},
        {TEXT("c-human", "I want to talk to a human"), "human_handoff", "en"},
        {TEXT("c-nl-open", "wanneer zijn jullie open?"), "opening_hours", "nl"},
        {TEXT("c-nl-order", "waar is mijn bestelling?"), "order_status", "nl"},
        {TEXT("c-nl-human", "ik wil een mens spreken"), "human_handoff", "nl"},
        {TEXT("c-fr-human", "je veux parler à un conseiller"), "human_handoff", "fr"},
        {TEXT("c-fr-order", "où est ma commande ?"), "order_status", "fr"},
        {TEXT("c-email", "my email is [EMAIL_1], where is my parcel"), "order_status", "en"},
#undef TEXT
        {{.id = "c-button",
          .kind = SWITCHBOARD__V1__MESSAGE_KIND__KIND_BUTTON_REPLY,
          .payload = "intent:opening_hours",
          .title = "Openingstijden",
          .locale = "nl-NL"},
         "opening_hours",
         "nl"},
        {{.id = "c-escalate",
          .kind = SWITCHBOARD__V1__MESSAGE_KIND__KIND_BUTTON_REPLY,
          .payload = "escalate:human",
          .title = "Talk to someone"},
         "human_handoff",
         "en"},
        {{.id = "c-status", .kind = SWITCHBOARD__V1__MESSAGE_KIND__KIND_STATUS, .locale = "fr-BE"},
         "",
         "fr"},
        /* a bot's /start with a deep-link argument greets, whatever the argument says */
        {{.id = "c-start",
          .kind = SWITCHBOARD__V1__MESSAGE_KIND__KIND_COMMAND,
          .payload = "/start",
          .text = "ref_campaign42",
          .locale = "en"},
         "greeting",
         "en"},
        {{.id = "c-system",
          .kind = SWITCHBOARD__V1__MESSAGE_KIND__KIND_SYSTEM,
          .text = "blocked",
          .locale = "en"},
         "",
         "en"},
    };
    size_t n = sizeof cases / sizeof cases[0];
    size_t before = nlu_count(f);
    double invalid0 =
        metric_at(f->metrics_url, "sb_classifier_messages_total{outcome=\"invalid\"}");
    for (size_t i = 0; i < n; i++)
        publish_env(f, &cases[i].m);
    /* a payload that is not an Envelope: terminated and counted, the worker goes on */
    static const uint8_t junk[] = {0xff, 0xff, 0xff, 0x0f, 0x01};
    assert_int_equal(sb_bus_publish(f->h.bus, "sb.in.0.webchat", junk, sizeof junk, "c-junk", NULL),
                     SB_OK);
    if (sb_harness_wait_stream(&f->h, "SB_NLU", "sb.nlu.>", before + n, WAIT_MS) < before + n) {
        sb_harness_dump_log(&f->h, "switchboard-classifier", 4000);
        fail_msg("classifications missing");
    }
    collected_t *col = collect(f);
    for (size_t i = 0; i < n; i++) {
        sb_classification_t *c = NULL;
        size_t idx = 0;
        assert_int_equal(find(col, cases[i].m.id, &c, &idx), 1);
        if (strcmp(c->intent, cases[i].intent) != 0)
            fail_msg("%s: intent %s, want %s", cases[i].m.id, c->intent, cases[i].intent);
        if (strcmp(c->language, cases[i].language) != 0)
            fail_msg("%s: language %s, want %s", cases[i].m.id, c->language, cases[i].language);
        assert_string_equal(c->model_version, f->version_a);
        /* the envelope travels with its classification, on the conversation's partition */
        char conv[64], subject[32];
        snprintf(conv, sizeof conv, "conv-%s", cases[i].m.id);
        assert_string_equal(c->envelope->conversation_id, conv);
        snprintf(subject, sizeof subject, "sb.nlu.%u", sb_ids_partition(conv, PARTITIONS));
        assert_string_equal(col->subjects[idx], subject);
        if (cases[i].intent[0]) {
            assert_true(c->confidence > 0.45f && c->confidence <= 1.0f);
            assert_true(c->n_top >= 1);
            assert_string_equal(c->top[0]->intent, c->intent);
            assert_true(c->margin >= 0.0f && c->margin <= 1.0f);
        } else {
            assert_true(c->confidence == 0.0f);
        }
        assert_true(c->sentiment >= -1.0f && c->sentiment <= 1.0f);
    }
    sb_classification_t *c = NULL;
    find(col, "c-human", &c, NULL);
    assert_true(c->confidence == 1.0f);
    assert_true(c->rule[0] != '\0');
    find(col, "c-button", &c, NULL);
    assert_string_equal(c->rule, "payload");
    assert_int_equal(find(col, "c-junk", NULL, NULL), 0);
    release(col);
    assert_true(wait_metric(f->metrics_url, "sb_classifier_messages_total{outcome=\"invalid\"}",
                            invalid0 + 1));
    char series[96];
    snprintf(series, sizeof series, "sb_classifier_model_info{version=\"%s\"}", f->version_a);
    assert_true(metric_at(f->metrics_url, series) == 1.0);
    assert_true(metric_at(f->metrics_url, "sb_classifier_seconds_count") >= (double)n - 1);
}

static void test_reload_without_loss(void **state)
{
    fixture_t *f = *state;
    enum { BEFORE = 60, AFTER = 60 };
    static const char *const texts[] = {"hi", "where is my order?", "waar is mijn bestelling?",
                                        "quand êtes-vous ouverts ?", "thanks!"};
    char ids[BEFORE + AFTER][32];
    size_t before = nlu_count(f);
    double dup0 = metric_at(f->metrics_url, "sb_classifier_messages_total{outcome=\"duplicate\"}");

    /* replace the model file atomically, as a deployment would */
    assert_int_equal(rename(f->model_b, f->model_path), 0);
    for (int i = 0; i < BEFORE; i++) {
        snprintf(ids[i], sizeof ids[i], "r-%03d", i);
        msg_spec_t m = {.id = ids[i], .text = texts[i % 5]};
        publish_env(f, &m);
        if (i == BEFORE / 2) assert_int_equal(kill(f->worker, SIGHUP), 0);
    }
    char series[96];
    snprintf(series, sizeof series, "sb_classifier_model_info{version=\"%s\"}", f->version_b);
    if (!wait_metric(f->metrics_url, series, 1.0)) {
        sb_harness_dump_log(&f->h, "switchboard-classifier", 4000);
        fail_msg("new model version never reported");
    }
    snprintf(series, sizeof series, "sb_classifier_model_info{version=\"%s\"}", f->version_a);
    assert_true(metric_at(f->metrics_url, series) == 0.0);
    for (int i = BEFORE; i < BEFORE + AFTER; i++) {
        snprintf(ids[i], sizeof ids[i], "r-%03d", i);
        msg_spec_t m = {.id = ids[i], .text = texts[i % 5]};
        publish_env(f, &m);
    }
    size_t want = before + BEFORE + AFTER;
    assert_true(sb_harness_wait_stream(&f->h, "SB_NLU", "sb.nlu.>", want, WAIT_MS) >= want);
    collected_t *col = collect(f);
    assert_int_equal(col->n, want);
    size_t with_b = 0;
    for (int i = 0; i < BEFORE + AFTER; i++) {
        sb_classification_t *c = NULL;
        assert_int_equal(find(col, ids[i], &c, NULL), 1); /* none lost, none twice */
        bool a = strcmp(c->model_version, f->version_a) == 0;
        bool b = strcmp(c->model_version, f->version_b) == 0;
        assert_true(a || b);
        if (b) with_b++;
        /* published after the new version was reported: classified by it */
        if (i >= BEFORE) assert_true(b);
        assert_string_not_equal(c->intent, "");
    }
    assert_true(with_b >= AFTER);
    release(col);
    /* the worker never had to publish anything twice */
    assert_true(metric_at(f->metrics_url, "sb_classifier_messages_total{outcome=\"duplicate\"}") ==
                dup0);
    assert_true(metric_at(f->metrics_url, "sb_classifier_reloads_total{outcome=\"ok\"}") >= 1.0);

    /* a broken model file is refused and the current model stays */
    FILE *bad = fopen(f->model_path, "w");
    assert_non_null(bad);
    fputs("not a model", bad);
    fclose(bad);
    double errs0 = metric_at(f->metrics_url, "sb_classifier_reloads_total{outcome=\"error\"}");
    assert_int_equal(kill(f->worker, SIGHUP), 0);
    assert_true(wait_metric(f->metrics_url, "sb_classifier_reloads_total{outcome=\"error\"}",
                            (errs0 < 0 ? 0 : errs0) + 1));
    snprintf(series, sizeof series, "sb_classifier_model_info{version=\"%s\"}", f->version_b);
    assert_true(metric_at(f->metrics_url, series) == 1.0);
    msg_spec_t m = {.id = "r-after-bad", .text = "hello"};
    publish_env(f, &m);
    assert_true(sb_harness_wait_stream(&f->h, "SB_NLU", "sb.nlu.>", want + 1, WAIT_MS) >= want + 1);
    /* leave a valid model file (version B again) for the next copies */
    char demo[PATH_MAX];
    snprintf(demo, sizeof demo, "%s/data/demo/train.tsv", getenv("SB_SOURCE_DIR"));
    assert_int_equal(run_train(demo, f->model_path, "2"), 0);
}

static void test_two_copies_share_the_work(void **state)
{
    fixture_t *f = *state;
    enum { N = 120 };
    /* the second copy: same config but its own metrics port (environment override) */
    int port2 = sb_harness_free_port();
    char url2[64], listen2[32];
    snprintf(url2, sizeof url2, "http://127.0.0.1:%d", port2);
    snprintf(listen2, sizeof listen2, "127.0.0.1:%d", port2);
    setenv("SB_CLASSIFIER_METRICS_LISTEN", listen2, 1);
    pid_t second = spawn_worker(f, f->h.config_path, url2);
    unsetenv("SB_CLASSIFIER_METRICS_LISTEN");

    const char *series_c = "sb_classifier_messages_total{outcome=\"classified\"}";
    const char *series_r = "sb_classifier_messages_total{outcome=\"rule\"}";
    double a0 = metric_at(f->metrics_url, series_c) + metric_at(f->metrics_url, series_r);
    double b0 = metric_at(url2, series_c) + metric_at(url2, series_r);
    size_t before = nlu_count(f);
    char ids[N][32];
    for (int i = 0; i < N; i++) {
        snprintf(ids[i], sizeof ids[i], "s-%03d", i);
        msg_spec_t m = {.id = ids[i], .text = i % 2 ? "where is my order" : "bonjour"};
        publish_env(f, &m);
    }
    assert_true(sb_harness_wait_stream(&f->h, "SB_NLU", "sb.nlu.>", before + N, WAIT_MS) >=
                before + N);
    collected_t *col = collect(f);
    for (int i = 0; i < N; i++)
        assert_int_equal(find(col, ids[i], NULL, NULL), 1);
    release(col);
    /* between them the two copies handled each message once (the split itself is up to the
     * server and not asserted) */
    double a1 = 0, b1 = 0;
    for (int i = 0; i < WAIT_MS / 100; i++) {
        a1 = metric_at(f->metrics_url, series_c) + metric_at(f->metrics_url, series_r);
        b1 = metric_at(url2, series_c) + metric_at(url2, series_r);
        if ((a1 - a0) + (b1 - b0) >= N) break;
        usleep(100 * 1000);
    }
    assert_true((a1 - a0) + (b1 - b0) == (double)N);
    print_message("split: first copy %.0f, second copy %.0f\n", a1 - a0, b1 - b0);
    kill(second, SIGTERM);
    int st;
    assert_int_equal(waitpid(second, &st, 0), second);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

typedef struct shadow_events {
    sb_event_t *ev[256];
    size_t n;
} shadow_events_t;

static void on_event(void *ctx, const char *subject, const void *data, size_t len)
{
    shadow_events_t *se = ctx;
    sb_event_t *e = NULL;
    (void)subject;
    if (se->n < 256 && SB_CODEC_UNPACK(switchboard__v1__event__descriptor, data, len, &e) == SB_OK)
        se->ev[se->n++] = e;
}

/* The shadow event of message id (NULL if none), and how many there are in *count. */
static sb_event_t *shadow_event(shadow_events_t *se, const char *id, size_t *count)
{
    sb_event_t *first = NULL;
    *count = 0;
    for (size_t i = 0; i < se->n; i++)
        if (se->ev[i]->message_id && strcmp(se->ev[i]->message_id, id) == 0) {
            if (!first) first = se->ev[i];
            (*count)++;
        }
    return first;
}

static void test_shadow_model(void **state)
{
    fixture_t *f = *state;
    const char *src = getenv("SB_SOURCE_DIR");
    char demo[PATH_MAX], filtered[PATH_MAX + 32], shadow[PATH_MAX + 32], sversion[17];
    /* the shadow model never saw the goodbye intent: it must disagree on "bye" */
    snprintf(demo, sizeof demo, "%s/data/demo/train.tsv", src);
    snprintf(filtered, sizeof filtered, "%s/no-goodbye.tsv", f->h.dir);
    snprintf(shadow, sizeof shadow, "%s/shadow.model", f->h.dir);
    FILE *in = fopen(demo, "r"), *out = fopen(filtered, "w");
    assert_non_null(in);
    assert_non_null(out);
    char line[1024];
    while (fgets(line, sizeof line, in))
        if (!strstr(line, "\tgoodbye")) fputs(line, out);
    fclose(in);
    assert_int_equal(fclose(out), 0);
    assert_int_equal(run_train(filtered, shadow, "3"), 0);
    model_version(shadow, sversion);
    char live_version[17];
    model_version(f->model_path, live_version);

    /* this copy alone consumes: the others stop */
    sb_harness_kill(&f->h, f->worker);
    int port = sb_harness_free_port();
    char url[64], listen[32];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", port);
    snprintf(listen, sizeof listen, "127.0.0.1:%d", port);
    setenv("SB_CLASSIFIER_METRICS_LISTEN", listen, 1);
    setenv("SB_CLASSIFIER_SHADOW_MODEL", shadow, 1);
    pid_t worker = spawn_worker(f, f->h.config_path, url);
    unsetenv("SB_CLASSIFIER_METRICS_LISTEN");
    unsetenv("SB_CLASSIFIER_SHADOW_MODEL");
    char series[96];
    snprintf(series, sizeof series, "sb_classifier_shadow_model_info{version=\"%s\"}", sversion);
    assert_true(metric_at(url, series) == 1.0);

    static const msg_spec_t msgs[] = {
        {.id = "sh-order", .text = "where is my order?"},
        {.id = "sh-open", .text = "wanneer zijn jullie open?"},
        {.id = "sh-bye", .text = "bye, have a nice day"},
        {.id = "sh-human", .text = "I want to talk to a human"}, /* a rule decides */
        {.id = "sh-button",
         .kind = SWITCHBOARD__V1__MESSAGE_KIND__KIND_BUTTON_REPLY,
         .payload = "intent:opening_hours",
         .title = "Opening hours"},
    };
    size_t n = sizeof msgs / sizeof msgs[0];
    size_t before = nlu_count(f);
    for (size_t i = 0; i < n; i++)
        publish_env(f, &msgs[i]);
    assert_true(sb_harness_wait_stream(&f->h, "SB_NLU", "sb.nlu.>", before + n, WAIT_MS) >=
                before + n);
    /* three messages were decided by a model: three events */
    if (sb_harness_wait_stream(&f->h, "SB_EVENTS", "sb.ev.shadow", 3, WAIT_MS) < 3) {
        sb_harness_dump_log(&f->h, "switchboard-classifier-2", 4000);
        fail_msg("shadow events missing");
    }
    collected_t *col = collect(f);
    shadow_events_t *se = sb_xcalloc(1, sizeof *se);
    assert_int_equal(sb_harness_read_stream(&f->h, "SB_EVENTS", "sb.ev.shadow", on_event, se, NULL),
                     SB_OK);
    size_t count = 0;
    static const char *const model_ids[] = {"sh-order", "sh-open", "sh-bye"};
    for (size_t i = 0; i < 3; i++) {
        sb_event_t *e = shadow_event(se, model_ids[i], &count);
        assert_int_equal(count, 1);
        sb_classification_t *c = NULL;
        assert_int_equal(find(col, model_ids[i], &c, NULL), 1);
        assert_int_equal(e->type, SWITCHBOARD__V1__EVENT_TYPE__EVENT_SHADOW);
        assert_string_equal(e->detail, "shadow");
        char want_id[64];
        snprintf(want_id, sizeof want_id, "shadow:%s", model_ids[i]);
        assert_string_equal(e->event_id, want_id);
        assert_string_equal(e->conversation_id, c->envelope->conversation_id);
        assert_string_equal(e->channel, "webchat");
        /* the live side is what went out on sb.nlu */
        assert_string_equal(e->intent, c->intent);
        assert_true(e->confidence == c->confidence);
        assert_string_equal(e->model_version, live_version);
        assert_string_equal(e->shadow_model_version, sversion);
        assert_true(e->shadow_confidence > 0.0f && e->shadow_confidence <= 1.0f);
        assert_string_equal(e->state,
                            strcmp(e->intent, e->shadow_intent) == 0 ? "agree" : "disagree");
    }
    sb_event_t *e = shadow_event(se, "sh-order", &count);
    assert_string_equal(e->intent, "order_status");
    assert_string_equal(e->state, "agree");
    e = shadow_event(se, "sh-bye", &count);
    assert_string_equal(e->intent, "goodbye");
    assert_string_not_equal(e->shadow_intent, "goodbye");
    assert_string_equal(e->state, "disagree");
    /* rules and button payloads say nothing about the models: no event */
    assert_null(shadow_event(se, "sh-human", &count));
    assert_null(shadow_event(se, "sh-button", &count));
    double agree = metric_at(url, "sb_classifier_shadow_total{outcome=\"agree\"}");
    double disagree = metric_at(url, "sb_classifier_shadow_total{outcome=\"disagree\"}");
    assert_true(agree >= 1 && disagree >= 1 && agree + disagree == 3);
    double rate = metric_at(url, "sb_classifier_shadow_agreement");
    assert_true(rate > 0.0 && rate < 1.0);
    assert_true(fabs(rate - agree / 3) < 1e-6);

    /* a broken shadow file is refused on SIGHUP and the running shadow stays */
    FILE *bad = fopen(shadow, "w");
    assert_non_null(bad);
    fputs("not a model", bad);
    fclose(bad);
    double errs0 = metric_at(url, "sb_classifier_reloads_total{outcome=\"error\"}");
    assert_int_equal(kill(worker, SIGHUP), 0);
    assert_true(wait_metric(url, "sb_classifier_reloads_total{outcome=\"error\"}",
                            (errs0 < 0 ? 0 : errs0) + 1));
    assert_true(metric_at(url, series) == 1.0);
    msg_spec_t m = {.id = "sh-after", .text = "where is my order"};
    publish_env(f, &m);
    assert_true(sb_harness_wait_stream(&f->h, "SB_EVENTS", "sb.ev.shadow", 4, WAIT_MS) >= 4);

    for (size_t i = 0; i < se->n; i++)
        SB_CODEC_FREE(se->ev[i]);
    free(se);
    release(col);
    kill(worker, SIGTERM);
    int st;
    assert_int_equal(waitpid(worker, &st, 0), worker);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_classifies),
        cmocka_unit_test(test_reload_without_loss),
        cmocka_unit_test(test_two_copies_share_the_work),
        cmocka_unit_test(test_shadow_model),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
