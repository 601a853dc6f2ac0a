/* switchboard-responder: the built-in bot. Loads the configuration and the answers file
 * (refusing to start on a bad one), connects to NATS, binds the durable pull consumer
 * `responder` on SB_BOT (sb.bot.>) and answers each turn (responder.c). Any number of copies
 * share the consumer. SIGHUP reloads the answers file (validated first; the old answers stay
 * on error). With responder.metrics_listen set, /metrics, /healthz and /readyz are served by
 * the libuv loop on the main thread while the pull loop runs on its own thread; otherwise the
 * pull loop runs on the main thread. */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "responder.h"
#include "sb/bus.h"
#include "sb/http.h"
#include "sb/log.h"
#include "sb/metrics.h"
#include "sb/service.h"

#define MOD "responder"
#define DURABLE "responder"
#define FILTER "sb.bot.>"

typedef struct app {
    sb_service_t svc;
    sb_responder_t resp;
} app_t;

static void count_reload(const char *outcome)
{
    char labels[48];
    snprintf(labels, sizeof labels, "outcome=\"%s\"", outcome);
    sb_metric_inc(sb_metrics_counter("sb_responder_reloads_total",
                                     "Reloads of the answers file (SIGHUP), by outcome", labels));
}

/* Registers the answer counters of every entry at zero, so dashboards see the whole (bounded)
 * label set before the first answer. */
static void register_answer_metrics(const sb_answers_t *a)
{
    for (size_t i = 0; i < sb_answers_count(a); i++) {
        const char *intent = sb_answers_intent(a, i);
        const char *outcome = "answered";
        char labels[160];
        if (strcmp(intent, "_disclosure") == 0 || strcmp(intent, "_resumed") == 0) continue;
        if (strcmp(intent, "_fallback") == 0) outcome = "fallback";
        if (strcmp(intent, "_handoff") == 0) outcome = "handoff";
        if (strcmp(intent, "_unsupported") == 0) outcome = "unsupported";
        snprintf(labels, sizeof labels, "intent=\"%s\",outcome=\"%s\"", intent, outcome);
        (void)sb_metrics_counter("sb_responder_answers_total",
                                 "Answers sent by the responder, by answer entry and outcome",
                                 labels);
    }
}

static void reload(app_t *app)
{
    char err[512];
    if (sb_responder_reload(&app->resp, err, sizeof err) != SB_OK) {
        SB_ERROR(MOD, "answers reload refused, keeping the previous answers error=\"%s\"", err);
        count_reload("error");
        return;
    }
    register_answer_metrics(app->resp.answers);
    count_reload("ok");
    SB_INFO(MOD, "answers reloaded entries=%zu", sb_answers_count(app->resp.answers));
}

/* The pull loop: (re)binds the consumer until it works, then fetches and answers until the
 * service stops. Reloads happen here, between batches, so answers are never swapped under a
 * turn being answered. */
/* SIGHUP, between two batches on the consumer thread. */
static void reload_cb(void *ctx)
{
    reload(ctx);
}

int main(int argc, char **argv)
{
    static const char *const required[] = {"responder.answers", NULL};
    static app_t app;
    char err[512];
    int status = 1;

    int rc = sb_service_init(&app.svc, "responder", argc, argv, required,
                             "switchboard-responder [--config FILE] [--print-config]\n"
                             "Answers BotTurns from sb.bot.> with the answers file "
                             "(responder.answers); SIGHUP reloads it.");
    if (rc != 0) return rc < 0 ? 0 : rc;

    const char *path = app.svc.cfg.responder.answers;
    if (sb_responder_init(&app.resp, NULL, path, err, sizeof err) != SB_OK) {
        SB_ERROR(MOD, "cannot start error=\"%s\"", err);
        fprintf(stderr, "switchboard-responder: %s\n", err);
        goto close_service;
    }
    register_answer_metrics(app.resp.answers);
    SB_INFO(MOD, "answers loaded path=%s entries=%zu", path, sb_answers_count(app.resp.answers));

    sb_result_t r = sb_service_connect(&app.svc, false);
    if (r != SB_OK) {
        SB_ERROR(MOD, "cannot connect to NATS result=\"%s\"", sb_result_str(r));
        goto close_responder;
    }
    app.resp.bus = app.svc.bus;

    sb_service_consumer_t consumer = {.svc = &app.svc,
                                      .stream = SB_STREAM_BOT,
                                      .durable = DURABLE,
                                      .filter = FILTER,
                                      .handler = sb_responder_handle,
                                      .ctx = &app.resp,
                                      .on_reload = reload_cb,
                                      .reload_ctx = &app};
    r = sb_service_run(&app.svc, app.svc.cfg.responder.metrics_listen, "responder.metrics_listen",
                       sb_service_consumer_ready, sb_service_consume, &consumer);
    status = r == SB_OK ? 0 : 1;
    SB_INFO(MOD, "stopped");

close_responder:
    sb_responder_close(&app.resp);
close_service:
    sb_service_close(&app.svc);
    return status;
}
