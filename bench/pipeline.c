/* Pipeline benchmark: starts the whole stack exactly as the integration tests do (a real
 * nats-server, the router, classifier, escalation worker and responder, and a local sink for
 * the channel APIs), then measures and prints
 *   1. the webhook's 2xx latency (p50/p99) for signed WhatsApp text webhooks sent open-loop at a
 *      fixed rate (default 200 requests/s for 10 s), each answered only after its JetStream ack;
 *      latency is taken from the request's scheduled send time, so a stall counts in full;
 *   2. the end-to-end time from posting a webhook to the bot's reply arriving at the sink
 *      (p50/p99 over sequential conversations).
 * The channel's outbound rate limit (channels.whatsapp.rate_per_s, 80/s by default) is turned
 * off here: it is a provider policy, and the sequential conversations of step 2 would otherwise
 * measure it instead of the pipeline.
 * Usage: sb-bench-pipeline [--rate N] [--seconds S] [--e2e N]. Needs SB_BIN_DIR and
 * SB_SOURCE_DIR (bench/run-all sets them). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../tests/integration/harness.h"
#include "sb/httpclient.h"
#include "sb/seal.h"
#include "sb/util.h"

#define APP_SECRET "bench-app-secret"
#define CLIENT_THREADS 8

typedef struct load {
    const char *url;
    double rate; /* requests per second, all threads together */
    double seconds;
    uint64_t start_ns;
    int thread_index;
    double *lat_ms; /* per request, -1 on failure */
    size_t n;
    size_t failures;
} load_t;

/* A minified WhatsApp Cloud API text webhook for sender/message number i. */
static char *wa_body(const char *tag, size_t i, const char *text)
{
    return sb_xasprintf(
        "{\"object\":\"whatsapp_business_account\",\"entry\":[{\"id\":\"104000000000001\","
        "\"changes\":[{\"value\":{\"messaging_product\":\"whatsapp\",\"metadata\":{"
        "\"display_phone_number\":\"15550100042\",\"phone_number_id\":\"109000000000042\"},"
        "\"contacts\":[{\"profile\":{\"name\":\"Bench %s %zu\"},\"wa_id\":\"1555%07zu\"}],"
        "\"messages\":[{\"from\":\"1555%07zu\",\"id\":\"wamid.bench.%s.%zu\","
        "\"timestamp\":\"%lld\",\"type\":\"text\",\"text\":{\"body\":\"%s\"}}]},"
        "\"field\":\"messages\"}]}]}",
        tag, i, i, i, tag, i, (long long)(sb_now_ms() / 1000), text);
}

static long post_signed(sb_http_client_t *c, const char *url, const char *body)
{
    uint8_t mac[32];
    sb_seal_part_t part = {body, strlen(body)};
    sb_seal_hmac_sha256(mac, APP_SECRET, strlen(APP_SECRET), &part, 1);
    char hex[65], sig[96];
    sb_seal_hex_encode(hex, mac, sizeof mac);
    snprintf(sig, sizeof sig, "X-Hub-Signature-256: sha256=%s", hex);
    const char *headers[] = {"Content-Type: application/json", sig, NULL};
    sb_http_client_response_t resp = {0};
    sb_result_t r =
        sb_http_client_do(c, "POST", url, headers, body, strlen(body), 10000, 65536, &resp);
    long status = r == SB_OK ? resp.status : -1;
    sb_buf_free(&resp.body);
    return status;
}

static void *load_thread(void *arg)
{
    load_t *l = arg;
    sb_http_client_t *c = NULL;
    if (sb_http_client_create(&c) != SB_OK) return NULL;
    double interval_ns = 1e9 * CLIENT_THREADS / l->rate;
    size_t total = (size_t)(l->rate * l->seconds / CLIENT_THREADS);
    l->lat_ms = sb_xcalloc(total ? total : 1, sizeof *l->lat_ms);
    char tag[16];
    snprintf(tag, sizeof tag, "t%d", l->thread_index);
    for (size_t i = 0; i < total; i++) {
        uint64_t due = l->start_ns + (uint64_t)(interval_ns * (double)i) +
                       (uint64_t)(interval_ns * l->thread_index / CLIENT_THREADS);
        uint64_t now = sb_mono_ns();
        if (due > now) {
            struct timespec ts = {(time_t)((due - now) / 1000000000u),
                                  (long)((due - now) % 1000000000u)};
            nanosleep(&ts, NULL);
        }
        char *body = wa_body(tag, i, "where is my order?");
        long st = post_signed(c, l->url, body);
        free(body);
        uint64_t done = sb_mono_ns();
        l->lat_ms[l->n++] = st == 200 ? (double)(done - due) / 1e6 : -1;
        if (st != 200) l->failures++;
    }
    sb_http_client_destroy(c);
    return NULL;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double pct(const double *v, size_t n, double p)
{
    if (n == 0) return 0;
    size_t i = (size_t)(p / 100.0 * (double)(n - 1) + 0.5);
    return v[i < n ? i : n - 1];
}

int main(int argc, char **argv)
{
    double rate = 200, seconds = 10;
    int e2e_n = 100;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--rate") == 0)
            rate = atof(argv[i + 1]);
        else if (strcmp(argv[i], "--seconds") == 0)
            seconds = atof(argv[i + 1]);
        else if (strcmp(argv[i], "--e2e") == 0)
            e2e_n = atoi(argv[i + 1]);
    }
    if (rate <= 0 || seconds <= 0 || e2e_n < 1 || !getenv("SB_BIN_DIR") ||
        !getenv("SB_SOURCE_DIR")) {
        fprintf(stderr, "usage: SB_BIN_DIR=.. SB_SOURCE_DIR=.. sb-bench-pipeline [--rate N] "
                        "[--seconds S] [--e2e N]\n");
        return 2;
    }
    if (sb_seal_init() != SB_OK) return 1;

    sb_harness_t h;
    memset(&h, 0, sizeof h);
    sb_sink_t *sink = NULL;
    int sink_port = 0;
    if (sb_harness_start_nats(&h) != SB_OK || sb_sink_start(&sink, &sink_port) != SB_OK) {
        fprintf(stderr, "bench: could not start nats-server or the sink\n");
        return 1;
    }
    char base[64];
    snprintf(base, sizeof base, "http://127.0.0.1:%d", sink_port);
    setenv("SB_CHANNEL_API_BASE", base, 1);
    setenv("SB_LOG_LEVEL", "warn", 1);
    const char *src = getenv("SB_SOURCE_DIR");
    char *extra =
        sb_xasprintf("channels:\n  whatsapp:\n    app_secret: \"%s\"\n    verify_token: \"v\"\n"
                     "    access_token: \"t\"\n    rate_per_s: 0\n  webchat:\n    enabled: false\n"
                     "classifier:\n  model: \"%s/demo.model\"\n  rules: \"%s/config/rules.yaml\"\n"
                     "responder:\n  answers: \"%s/config/answers.yaml\"\n",
                     APP_SECRET, h.dir, src, src);
    if (sb_harness_write_config(&h, extra) != SB_OK) return 1;
    free(extra);
    char cmd[8192];
    snprintf(cmd, sizeof cmd,
             "%s/switchboard train --data %s/data/demo/train.tsv --out %s/demo.model >/dev/null",
             getenv("SB_BIN_DIR"), src, h.dir);
    if (system(cmd) != 0) {
        fprintf(stderr, "bench: training the demo model failed\n");
        return 1;
    }
    const char *bins[] = {"switchboard-router", "switchboard-classifier", "switchboard-escalation",
                          "switchboard-responder"};
    for (size_t i = 0; i < 4; i++)
        if (sb_harness_spawn(&h, bins[i], NULL) <= 0) return 1;
    char url[128];
    snprintf(url, sizeof url, "%s/readyz", h.router_url);
    if (sb_harness_wait_http(url, 30000) != SB_OK) {
        fprintf(stderr, "bench: router not ready\n");
        sb_harness_stop(&h);
        return 1;
    }
    snprintf(url, sizeof url, "%s/v1/ingress/whatsapp", h.router_url);

    /* Warm-up: one conversation through the whole pipeline. */
    sb_http_client_t *c = NULL;
    if (sb_http_client_create(&c) != SB_OK) return 1;
    char *body = wa_body("warm", 0, "hello");
    post_signed(c, url, body);
    free(body);
    sb_sink_wait(sink, 1, 30000);

    /* 1. Webhook 2xx latency at a fixed rate. */
    pthread_t th[CLIENT_THREADS];
    load_t loads[CLIENT_THREADS];
    uint64_t start = sb_mono_ns() + 50 * 1000000ull;
    for (int i = 0; i < CLIENT_THREADS; i++) {
        loads[i] = (load_t){
            .url = url, .rate = rate, .seconds = seconds, .start_ns = start, .thread_index = i};
        pthread_create(&th[i], NULL, load_thread, &loads[i]);
    }
    size_t n = 0, failures = 0;
    for (int i = 0; i < CLIENT_THREADS; i++) {
        pthread_join(th[i], NULL);
        n += loads[i].n;
        failures += loads[i].failures;
    }
    double elapsed = (double)(sb_mono_ns() - start) / 1e9;
    double *all = sb_xcalloc(n ? n : 1, sizeof *all);
    size_t ok = 0;
    for (int i = 0; i < CLIENT_THREADS; i++) {
        for (size_t j = 0; j < loads[i].n; j++)
            if (loads[i].lat_ms[j] >= 0) all[ok++] = loads[i].lat_ms[j];
        free(loads[i].lat_ms);
    }
    qsort(all, ok, sizeof *all, cmp_double);
    printf("webhook_2xx_latency channel=whatsapp target_rate=%.0f/s achieved=%.1f/s requests=%zu "
           "failures=%zu p50_ms=%.2f p90_ms=%.2f p99_ms=%.2f max_ms=%.2f\n",
           rate, (double)n / elapsed, n, failures, pct(all, ok, 50), pct(all, ok, 90),
           pct(all, ok, 99), ok ? all[ok - 1] : 0.0);
    free(all);

    /* Let the pipeline drain the load before timing single conversations. */
    size_t expected = 1 + n - failures;
    size_t got = sb_sink_wait(sink, expected, 60000);
    printf("pipeline_drain replies_at_sink=%zu expected=%zu\n", got, expected);

    /* 2. End to end: webhook posted -> bot reply at the sink. */
    double *e2e = sb_xcalloc((size_t)e2e_n, sizeof *e2e);
    int e2e_ok = 0;
    for (int i = 0; i < e2e_n; i++) {
        size_t before = sb_sink_wait(sink, 0, 0);
        body = wa_body("e2e", (size_t)i, "when are you open?");
        uint64_t t0 = sb_mono_ns();
        long st = post_signed(c, url, body);
        free(body);
        if (st != 200) continue;
        if (sb_sink_wait(sink, before + 1, 10000) < before + 1) continue;
        e2e[e2e_ok++] = (double)(sb_mono_ns() - t0) / 1e6;
    }
    qsort(e2e, (size_t)e2e_ok, sizeof *e2e, cmp_double);
    printf("end_to_end webhook->reply_at_sink conversations=%d ok=%d p50_ms=%.2f p90_ms=%.2f "
           "p99_ms=%.2f max_ms=%.2f\n",
           e2e_n, e2e_ok, pct(e2e, (size_t)e2e_ok, 50), pct(e2e, (size_t)e2e_ok, 90),
           pct(e2e, (size_t)e2e_ok, 99), e2e_ok ? e2e[e2e_ok - 1] : 0.0);
    free(e2e);
    sb_http_client_destroy(c);
    sb_harness_stop(&h);
    sb_sink_stop(sink);
    return failures == 0 && e2e_ok == e2e_n ? 0 : 1;
}
