/* switchboard-classifier: understands every inbound message.
 *
 * SB_IN (durable pull consumer `classifier`, filter sb.in.>, shared by every copy) ─► decode
 * the Envelope (bounded by the codec) ─► sbnlu: language, rules, intent, confidence, top-k,
 * margin, sentiment ─► Classification (carrying the Envelope and the model version) published
 * on sb.nlu.<partition> with Nats-Msg-Id = the envelope's message id ─► the message is acked
 * only after JetStream acked that publish (a failed publish naks it for redelivery; a
 * malformed payload is terminated and counted). Statuses and session starts skip the model and
 * go out with intent "" so the escalation worker still records them.
 *
 * SIGHUP reloads the model and the rules: the new ones are loaded and validated fully on the
 * pull thread between two batches, then swapped in, so no message is lost, handled twice or
 * classified by a half-loaded model; a bad file keeps the old model. With
 * classifier.metrics_listen set, /metrics, /healthz and /readyz run on the libuv loop of the
 * main thread and the pull loop on its own thread; otherwise the pull loop runs on the main
 * thread.
 *
 * Shadow model (optional): with classifier.shadow_model (env SB_CLASSIFIER_SHADOW_MODEL) set to a
 * model file, every message the live
 * model classifies is also classified by the shadow model, with the same rules and language
 * id, and an Event EVENT_SHADOW (detail "shadow", state "agree" or "disagree", both intents,
 * confidences and model versions) goes to sb.ev.shadow with msg id "shadow:<message id>";
 * sb_classifier_shadow_total{outcome} and sb_classifier_shadow_agreement follow the agreement.
 * The shadow never changes what is published on sb.nlu; a failed event publish is counted and
 * the message is still acknowledged. SIGHUP reloads the shadow model too. */
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "nlu.h"
#include "sb/bus.h"
#include "sb/codec.h"
#include "sb/http.h"
#include "sb/ids.h"
#include "sb/log.h"
#include "sb/metrics.h"
#include "sb/service.h"
#include "sb/util.h"

#define MOD "classifier"
#define DURABLE "classifier"
#define FILTER "sb.in.>"
#define SHADOW_KEY "classifier.shadow_model"

typedef struct app {
    sb_service_t svc;
    char model_path[PATH_MAX];
    const char *rules_path;  /* NULL: built-in rules only */
    sb_nlu_t *nlu;           /* current model + rules; pull thread only after start */
    sb_nlu_langid_t *langid; /* shared by every model generation */
    sb_nlu_work_t *work;     /* the pull thread's scratch */
    sb_metric_t *model_info; /* gauge of the current version */
    sb_metric_t *seconds;
    char shadow_path[PATH_MAX]; /* "" without a shadow model */
    sb_nlu_t *shadow;           /* shadow model + the same rules; pull thread only */
    sb_metric_t *shadow_info;   /* gauge of the shadow version */
    uint64_t shadow_agree, shadow_total;
} app_t;

static void count(const char *outcome)
{
    char labels[64];
    snprintf(labels, sizeof labels, "outcome=\"%s\"", outcome);
    sb_metric_inc(sb_metrics_counter("sb_classifier_messages_total",
                                     "Inbound messages handled by the classifier, by outcome",
                                     labels));
}

static void count_shadow_failure(void)
{
    sb_metric_inc(sb_metrics_counter("sb_classifier_shadow_total",
                                     "Messages classified by the live and the shadow model, by "
                                     "whether their intents agree",
                                     "outcome=\"publish_failed\""));
}

static void count_reload(const char *outcome)
{
    char labels[48];
    snprintf(labels, sizeof labels, "outcome=\"%s\"", outcome);
    sb_metric_inc(sb_metrics_counter("sb_classifier_reloads_total",
                                     "Model and rules reloads (SIGHUP), by outcome", labels));
}

static sb_metric_t *model_info_metric(const char *version)
{
    char labels[64];
    snprintf(labels, sizeof labels, "version=\"%s\"", version);
    return sb_metrics_gauge("sb_classifier_model_info",
                            "The intent model in use (1) and the ones it replaced (0)", labels);
}

/* Loads the model at path and the rules into a new sb_nlu_t. On error writes err and returns
 * NULL. */
static sb_nlu_t *load_nlu(app_t *app, const char *path, char *err, size_t errlen)
{
    sb_nlu_t *nlu = calloc(1, sizeof *nlu);
    if (!nlu) abort();
    if (sb_nlu_model_load(&nlu->model, path, err, errlen) != SB_OK) goto fail;
    if (sb_nlu_rules_load(&nlu->rules, app->rules_path, err, errlen) != SB_OK) goto fail;
    nlu->langid = app->langid;
    nlu->apply_threshold = true;
    return nlu;
fail:
    sb_nlu_model_destroy(nlu->model);
    sb_nlu_rules_destroy(nlu->rules);
    free(nlu);
    return NULL;
}

static void free_nlu(sb_nlu_t *nlu)
{
    if (!nlu) return;
    sb_nlu_model_destroy(nlu->model);
    sb_nlu_rules_destroy(nlu->rules);
    free(nlu);
}

static void announce_model(app_t *app)
{
    const sb_nlu_model_t *m = app->nlu->model;
    app->model_info = model_info_metric(sb_nlu_model_version(m));
    sb_metric_set(app->model_info, 1);
    SB_INFO(MOD, "model loaded version=%s intents=%zu features=%zu threshold=%.4f rules=%zu",
            sb_nlu_model_version(m), sb_nlu_model_nlabels(m), sb_nlu_model_rows(m),
            (double)sb_nlu_model_threshold(m), sb_nlu_rules_count(app->nlu->rules));
}

static void announce_shadow(app_t *app)
{
    const sb_nlu_model_t *m = app->shadow->model;
    char labels[64];
    snprintf(labels, sizeof labels, "version=\"%s\"", sb_nlu_model_version(m));
    app->shadow_info =
        sb_metrics_gauge("sb_classifier_shadow_model_info",
                         "The shadow model in use (1) and the ones it replaced (0)", labels);
    sb_metric_set(app->shadow_info, 1);
    app->shadow_agree = app->shadow_total = 0;
    SB_INFO(MOD, "shadow model loaded version=%s intents=%zu threshold=%.4f",
            sb_nlu_model_version(m), sb_nlu_model_nlabels(m), (double)sb_nlu_model_threshold(m));
}

/* Reloads the shadow model (pull thread); a broken file keeps the running one. */
static void reload_shadow(app_t *app)
{
    char err[512] = "";
    sb_nlu_t *next = load_nlu(app, app->shadow_path, err, sizeof err);
    if (!next) {
        SB_ERROR(MOD, "shadow reload refused, keeping version=%s key=%s error=\"%s\"",
                 sb_nlu_model_version(app->shadow->model), SHADOW_KEY, err);
        count_reload("error");
        return;
    }
    if (app->shadow_info) sb_metric_set(app->shadow_info, 0);
    free_nlu(app->shadow);
    app->shadow = next;
    announce_shadow(app);
}

/* Runs on the pull thread between batches: the swap is atomic with respect to messages. */
static void reload(app_t *app)
{
    char err[512] = "";
    if (app->shadow) reload_shadow(app);
    sb_nlu_t *next = load_nlu(app, app->model_path, err, sizeof err);
    if (!next) {
        SB_ERROR(MOD, "reload refused, keeping model version=%s error=\"%s\"",
                 sb_nlu_model_version(app->nlu->model), err);
        count_reload("error");
        return;
    }
    sb_nlu_t *old = app->nlu;
    if (app->model_info) sb_metric_set(app->model_info, 0);
    app->nlu = next;
    announce_model(app);
    free_nlu(old);
    count_reload("ok");
}

/* Copies the sbnlu result into a Classification (strings borrowed from r until packed). */
static void fill(sb_classification_t *c, Switchboard__V1__IntentScore *scores,
                 Switchboard__V1__IntentScore **score_ptrs, const sb_nlu_result_t *r)
{
    c->language = (char *)r->language;
    c->intent = (char *)r->intent;
    c->confidence = r->confidence;
    c->margin = r->margin;
    c->sentiment = r->sentiment;
    c->rule = (char *)r->rule;
    c->n_top = r->ntop;
    for (size_t i = 0; i < r->ntop; i++) {
        switchboard__v1__intent_score__init(&scores[i]);
        scores[i].intent = (char *)r->top[i].intent;
        scores[i].confidence = r->top[i].confidence;
        score_ptrs[i] = &scores[i];
    }
    c->top = score_ptrs;
}

/* The text a message kind carries for classification, or NULL when it is not a customer
 * utterance (statuses, sessions) or has none. */
static const char *utterance(const sb_envelope_t *env)
{
    switch (env->kind) {
    case SWITCHBOARD__V1__MESSAGE_KIND__KIND_STATUS:
    case SWITCHBOARD__V1__MESSAGE_KIND__KIND_SESSION:
    case SWITCHBOARD__V1__MESSAGE_KIND__KIND_SYSTEM:
        return NULL;
    default:
        break;
    }
    if (env->text && env->text[0]) return env->text;
    for (size_t i = 0; i < env->n_attachments; i++)
        if (env->attachments[i]->caption && env->attachments[i]->caption[0])
            return env->attachments[i]->caption;
    return NULL;
}

/* Classifies the message again with the shadow model and publishes the comparison. Returns
 * nothing: the shadow never holds up the live path (failures are counted and logged). */
static void shadow_compare(app_t *app, const sb_envelope_t *env, const char *text,
                           const sb_nlu_result_t *live, uint32_t partition)
{
    sb_nlu_result_t r;
    sb_nlu_classify(app->shadow, app->work, text, strlen(text), env->locale_hint, &r);
    bool agree = strcmp(live->intent, r.intent) == 0;
    app->shadow_total++;
    if (agree) app->shadow_agree++;
    char labels[48];
    snprintf(labels, sizeof labels, "outcome=\"%s\"", agree ? "agree" : "disagree");
    sb_metric_inc(sb_metrics_counter("sb_classifier_shadow_total",
                                     "Messages classified by the live and the shadow model, by "
                                     "whether their intents agree",
                                     labels));
    sb_metric_set(sb_metrics_gauge("sb_classifier_shadow_agreement",
                                   "Share of messages on which the shadow model agrees with the "
                                   "live one, since the models were loaded",
                                   NULL),
                  (double)app->shadow_agree / (double)app->shadow_total);

    sb_event_t ev;
    switchboard__v1__event__init(&ev);
    char *event_id = sb_xasprintf("shadow:%s", env->message_id);
    ev.event_id = event_id;
    ev.type = SWITCHBOARD__V1__EVENT_TYPE__EVENT_SHADOW;
    ev.conversation_id = env->conversation_id;
    ev.channel = env->channel;
    ev.at_ms = sb_now_ms();
    ev.partition = partition;
    ev.message_id = env->message_id;
    ev.detail = "shadow";
    ev.state = (char *)(agree ? "agree" : "disagree");
    ev.intent = (char *)live->intent;
    ev.confidence = live->confidence;
    ev.model_version = (char *)sb_nlu_model_version(app->nlu->model);
    ev.shadow_intent = (char *)r.intent;
    ev.shadow_confidence = r.confidence;
    ev.shadow_model_version = (char *)sb_nlu_model_version(app->shadow->model);
    uint8_t *data = NULL;
    size_t len = 0;
    sb_result_t rc = SB_CODEC_PACK(&ev, &data, &len);
    if (rc == SB_OK) rc = sb_bus_publish(app->svc.bus, "sb.ev.shadow", data, len, event_id, NULL);
    if (rc != SB_OK) {
        SB_WARN(MOD, "shadow event not published message_id=%s result=\"%s\"", env->message_id,
                sb_result_str(rc));
        count_shadow_failure();
    }
    free(data);
    free(event_id);
}

static sb_result_t handle(void *ctx, const sb_bus_msg_t *msg)
{
    app_t *app = ctx;
    sb_envelope_t *env = NULL;
    uint8_t *out = NULL;
    size_t out_len = 0;
    sb_result_t rc =
        SB_CODEC_UNPACK(switchboard__v1__envelope__descriptor, msg->data, msg->len, &env);
    if (rc != SB_OK) {
        SB_WARN(MOD, "malformed envelope dropped subject=%s bytes=%zu result=\"%s\"", msg->subject,
                msg->len, sb_result_str(rc));
        count("invalid");
        return SB_E_INVALID;
    }
    if (!env->message_id || !env->message_id[0] || !sb_bus_is_token(env->message_id)) {
        SB_WARN(MOD, "envelope without a valid message id dropped subject=%s", msg->subject);
        count("invalid");
        rc = SB_E_INVALID;
        goto done;
    }
    uint32_t partitions = (uint32_t)app->svc.cfg.nats.partitions;
    uint32_t p = env->partition;
    if (partitions > 0 && p >= partitions)
        p = sb_ids_partition(env->conversation_id ? env->conversation_id : "", partitions);

    uint64_t t0 = sb_mono_ns();
    sb_nlu_result_t r;
    const char *outcome;
    const char *text = utterance(env);
    const char *hint = env->locale_hint;
    if (env->kind == SWITCHBOARD__V1__MESSAGE_KIND__KIND_COMMAND && env->button_payload &&
        (strcmp(env->button_payload, "/start") == 0 || strcmp(env->button_payload, "/help") == 0)) {
        /* A bot's start command (Telegram /start with a deep-link argument, say) opens the
         * conversation: greet, whatever its argument looks like. */
        sb_nlu_classify_button(app->nlu, app->work, "intent:greeting", NULL, hint, &r);
        outcome = "rule";
    } else if (env->kind == SWITCHBOARD__V1__MESSAGE_KIND__KIND_BUTTON_REPLY) {
        sb_nlu_classify_button(app->nlu, app->work, env->button_payload, env->button_title, hint,
                               &r);
        outcome = r.rule[0] ? "rule" : "classified";
    } else if (text) {
        sb_nlu_classify(app->nlu, app->work, text, strlen(text), hint, &r);
        outcome = r.rule[0] ? "rule" : "classified";
    } else {
        /* not an utterance: recorded downstream, never classified */
        memset(&r, 0, sizeof r);
        r.intent = "";
        r.rule = "";
        /* the language of a non-utterance is the channel's locale hint, if any ("nl-BE") */
        for (size_t i = 0; hint && i + 1 < sizeof r.language && hint[i] >= 'A' &&
                           (hint[i] | 0x20) >= 'a' && (hint[i] | 0x20) <= 'z';
             i++)
            r.language[i] = (char)(hint[i] | 0x20);
        outcome = "skipped";
    }
    sb_metric_observe(app->seconds, (double)(sb_mono_ns() - t0) / 1e9);

    sb_classification_t c;
    switchboard__v1__classification__init(&c);
    Switchboard__V1__IntentScore scores[SB_NLU_TOPK];
    Switchboard__V1__IntentScore *score_ptrs[SB_NLU_TOPK];
    fill(&c, scores, score_ptrs, &r);
    c.envelope = env;
    c.model_version = (char *)sb_nlu_model_version(app->nlu->model);
    rc = SB_CODEC_PACK(&c, &out, &out_len);
    if (rc != SB_OK) {
        SB_ERROR(MOD, "cannot encode classification message_id=%s", env->message_id);
        count("error");
        rc = SB_E_INTERNAL;
        goto done;
    }
    char subject[64];
    rc = sb_bus_subject(subject, sizeof subject, "sb.nlu.%u", p);
    if (rc != SB_OK) goto done;
    bool dup = false;
    rc = sb_bus_publish(app->svc.bus, subject, out, out_len, env->message_id, &dup);
    if (rc != SB_OK) {
        SB_WARN(MOD, "publish failed, will be redelivered message_id=%s result=\"%s\"",
                env->message_id, sb_result_str(rc));
        count("publish_failed");
        rc = SB_E_UNAVAILABLE;
        goto done;
    }
    count(dup ? "duplicate" : outcome);
    /* the shadow judges the models: messages a rule or a button payload decided say nothing
     * about them; a redelivered duplicate was compared the first time */
    if (app->shadow && text && !r.rule[0] && !dup) shadow_compare(app, env, text, &r, p);
    SB_DEBUG(MOD,
             "classified message_id=%s partition=%u intent=%s confidence=%.3f language=%s "
             "rule=%s duplicate=%d",
             env->message_id, p, r.intent, (double)r.confidence, r.language, r.rule, dup);
done:
    free(out);
    SB_CODEC_FREE(env);
    return rc;
}

/* The pull loop: binds the consumer (retrying), then fetches and classifies until the service
 * stops. Reloads happen here, between batches. */
/* SIGHUP, between two batches on the consumer thread. */
static void reload_cb(void *ctx)
{
    reload(ctx);
}

int main(int argc, char **argv)
{
    static app_t app;
    char err[512] = "";
    int status = 1;

    int rc = sb_service_init(&app.svc, "classifier", argc, argv, NULL,
                             "switchboard-classifier [--config FILE] [--print-config]\n"
                             "Classifies Envelopes from sb.in.> (language, intent, confidence, "
                             "sentiment) and publishes Classifications on sb.nlu.<p>.\n"
                             "classifier.model (default <data_dir>/models/demo.model), "
                             "classifier.rules; SIGHUP reloads both. Environment: "
                             "SB_CLASSIFIER_SHADOW_MODEL=FILE compares a shadow model on "
                             "sb.ev.shadow.");
    if (rc != 0) return rc < 0 ? 0 : rc;
    const sb_config_t *cfg = &app.svc.cfg;

    if (cfg->classifier.model && cfg->classifier.model[0])
        snprintf(app.model_path, sizeof app.model_path, "%s", cfg->classifier.model);
    else
        snprintf(app.model_path, sizeof app.model_path, "%s/models/demo.model",
                 cfg->data_dir && cfg->data_dir[0] ? cfg->data_dir : ".");
    app.rules_path =
        cfg->classifier.rules && cfg->classifier.rules[0] ? cfg->classifier.rules : NULL;
    if (sb_nlu_langid_create(&app.langid, NULL) != SB_OK)
        SB_WARN(MOD, "language fingerprints missing, using word lists only dir=%s",
                "/usr/share/libexttextcat");
    app.nlu = load_nlu(&app, app.model_path, err, sizeof err);
    if (!app.nlu) {
        SB_ERROR(MOD, "cannot start key=classifier.model error=\"%s\"", err);
        fprintf(stderr, "switchboard-classifier: %s (train one with `switchboard train`)\n", err);
        goto close_langid;
    }
    const char *shadow = cfg->classifier.shadow_model;
    if (shadow && shadow[0]) {
        snprintf(app.shadow_path, sizeof app.shadow_path, "%s", shadow);
        app.shadow = load_nlu(&app, app.shadow_path, err, sizeof err);
        if (!app.shadow) {
            SB_ERROR(MOD, "cannot start key=%s error=\"%s\"", SHADOW_KEY, err);
            fprintf(stderr, "switchboard-classifier: %s: %s\n", SHADOW_KEY, err);
            goto close_nlu;
        }
        announce_shadow(&app);
    }
    app.work = sb_nlu_work_create();
    app.seconds = sb_metrics_histogram("sb_classifier_seconds",
                                       "Time to classify one message (tokenize to result)", NULL,
                                       sb_metrics_latency_buckets, sb_metrics_latency_nbuckets);
    static const char *const outcomes[] = {"classified", "rule",           "skipped", "duplicate",
                                           "invalid",    "publish_failed", "error"};
    for (size_t i = 0; i < sizeof outcomes / sizeof outcomes[0]; i++) {
        char labels[64];
        snprintf(labels, sizeof labels, "outcome=\"%s\"", outcomes[i]);
        (void)sb_metrics_counter("sb_classifier_messages_total",
                                 "Inbound messages handled by the classifier, by outcome", labels);
    }
    announce_model(&app);

    sb_result_t r = sb_service_connect(&app.svc, true);
    if (r != SB_OK) {
        SB_ERROR(MOD, "cannot connect to NATS result=\"%s\"", sb_result_str(r));
        goto close_nlu;
    }

    sb_service_consumer_t consumer = {.svc = &app.svc,
                                      .stream = SB_STREAM_IN,
                                      .durable = DURABLE,
                                      .filter = FILTER,
                                      .handler = handle,
                                      .ctx = &app,
                                      .on_reload = reload_cb,
                                      .reload_ctx = &app};
    r = sb_service_run(&app.svc, cfg->classifier.metrics_listen, "classifier.metrics_listen",
                       sb_service_consumer_ready, sb_service_consume, &consumer);
    status = r == SB_OK ? 0 : 1;
    SB_INFO(MOD, "stopped");

close_nlu:
    sb_nlu_work_destroy(app.work);
    free_nlu(app.nlu);
    free_nlu(app.shadow);
close_langid:
    sb_nlu_langid_destroy(app.langid);
    sb_service_close(&app.svc);
    return status;
}
