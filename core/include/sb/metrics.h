/* Metrics: one process-wide registry rendered as Prometheus text at /metrics. Registration
 * returns the same metric for the same name + labels; updates are lock-free atomics and safe
 * from any thread. Labels never carry PII: channel, reason, outcome, model version. */
#ifndef SB_METRICS_H
#define SB_METRICS_H

#include <stddef.h>

#include "util.h"

typedef struct sb_metric sb_metric_t;

/* labels: a Prometheus label list without braces, e.g. "channel=\"whatsapp\"", or NULL.
 * The returned metric lives until sb_metrics_reset (tests) or process exit. */
sb_metric_t *sb_metrics_counter(const char *name, const char *help, const char *labels);
sb_metric_t *sb_metrics_gauge(const char *name, const char *help, const char *labels);
/* buckets: ascending upper bounds (seconds or bytes), copied. */
sb_metric_t *sb_metrics_histogram(const char *name, const char *help, const char *labels,
                                  const double *buckets, size_t nbuckets);

void sb_metric_inc(sb_metric_t *m);
void sb_metric_add(sb_metric_t *m, double v);
void sb_metric_set(sb_metric_t *m, double v);
void sb_metric_observe(sb_metric_t *m, double v);
double sb_metric_value(const sb_metric_t *m); /* counter/gauge value; histogram count */

/* Default latency buckets in seconds (0.5 ms .. 10 s). */
extern const double sb_metrics_latency_buckets[];
extern const size_t sb_metrics_latency_nbuckets;

/* Appends the whole registry in Prometheus text exposition format 0.0.4. */
void sb_metrics_render(sb_buf_t *out);
/* Drops every metric (unit tests only; not thread-safe against concurrent updates). */
void sb_metrics_reset(void);

#endif
