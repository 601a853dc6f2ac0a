/* The whole understanding of one message: tokenize once (accents stripped) for language id,
 * rules and sentiment; a rule match decides the intent with confidence 1; otherwise the model
 * predicts (re-tokenizing only if it was trained without accent stripping) and a top
 * confidence below the model's stored threshold becomes out_of_scope. */
#include <string.h>

#include "nlu_internal.h"

static void set_lang(sb_nlu_result_t *out, const char *lang)
{
    snprintf(out->language, sizeof out->language, "%s", lang);
}

void sb_nlu_classify(const sb_nlu_t *nlu, sb_nlu_work_t *w, const char *text, size_t len,
                     const char *locale_hint, sb_nlu_result_t *out)
{
    memset(out, 0, sizeof *out);
    out->intent = "";
    out->rule = "";
    out->model_version = nlu->model ? sb_nlu_model_version(nlu->model) : "";
    if (!text) {
        text = "";
        len = 0;
    }
    if (len > SB_NLU_MAX_TEXT) len = SB_NLU_MAX_TEXT;
    sb_nlu_work_tokenize(w, text, len, true, NULL);
    const char *lang = sb_nlu_langid_detect(nlu->langid, w, text, len, locale_hint);
    set_lang(out, lang);
    out->sentiment = sb_nlu_sentiment(w, lang);
    const char *intent, *rule;
    if (sb_nlu_rules_match(nlu->rules, w, lang, &intent, &rule)) {
        out->intent = intent;
        out->rule = rule;
        out->confidence = 1.0f;
        out->margin = 1.0f;
        out->ntop = 1;
        out->top[0].intent = intent;
        out->top[0].confidence = 1.0f;
        return;
    }
    if (!nlu->model || w->ntoks == 0) return;
    if (!sb_nlu_model_featcfg(nlu->model)->strip_accents)
        sb_nlu_work_tokenize(w, text, len, false, NULL);
    sb_nlu_prediction_t p;
    sb_nlu_model_predict_tokens(nlu->model, w, lang, &p);
    if (p.label < 0) return;
    out->confidence = p.confidence;
    out->margin = p.margin;
    out->ntop = p.ntop;
    memcpy(out->top, p.top, sizeof p.top);
    out->intent = p.top[0].intent;
    if (nlu->apply_threshold && p.confidence < sb_nlu_model_threshold(nlu->model))
        out->intent = SB_NLU_OUT_OF_SCOPE;
}

void sb_nlu_classify_button(const sb_nlu_t *nlu, sb_nlu_work_t *w, const char *payload,
                            const char *title, const char *locale_hint, sb_nlu_result_t *out)
{
    char buf[SB_NLU_MAX_LABEL_LEN + 1];
    if (sb_nlu_payload_intent(payload, buf, sizeof buf)) {
        /* language and sentiment still come from the visible title */
        const char *t = title ? title : "";
        sb_nlu_classify(nlu, w, t, strlen(t), locale_hint, out);
        snprintf(out->payload_intent, sizeof out->payload_intent, "%s", buf);
        out->intent = out->payload_intent;
        out->rule = "payload";
        out->confidence = 1.0f;
        out->margin = 1.0f;
        out->ntop = 1;
        out->top[0].intent = out->payload_intent;
        out->top[0].confidence = 1.0f;
        return;
    }
    const char *t = title && title[0] ? title : (payload ? payload : "");
    sb_nlu_classify(nlu, w, t, strlen(t), locale_hint, out);
}
