/* Metrics: the process-wide registry behind /metrics. Services register counters, gauges and
 * histograms once (a mutex guards the registry list) and update them from any thread with C11
 * atomics: doubles are stored as their uint64 bit patterns and changed with a CAS loop.
 * sb_metrics_render walks the registry in registration order and writes Prometheus text format
 * 0.0.4, with one # HELP / # TYPE per family (all metrics with the same name). */
#include "sb/metrics.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sb/log.h"

typedef enum { M_COUNTER, M_GAUGE, M_HISTOGRAM } mtype_t;

struct sb_metric {
    struct sb_metric *next;
    mtype_t type;
    char *name;
    char *help;
    char *labels;           /* without braces; "" when none */
    _Atomic uint64_t value; /* counter/gauge value, histogram sum; double bits */
    /* histogram only */
    size_t nbuckets;
    double *bounds;
    _Atomic uint64_t *counts; /* per bucket, not cumulative; [nbuckets] is the +Inf bucket */
    _Atomic uint64_t count;
};

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static sb_metric_t *head;
static sb_metric_t *tail;

const double sb_metrics_latency_buckets[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                             0.1,    0.25,  0.5,    1,     2.5,  5,     10};
const size_t sb_metrics_latency_nbuckets =
    sizeof sb_metrics_latency_buckets / sizeof sb_metrics_latency_buckets[0];

static uint64_t d2u(double d)
{
    uint64_t u;
    memcpy(&u, &d, sizeof u);
    return u;
}

static double u2d(uint64_t u)
{
    double d;
    memcpy(&d, &u, sizeof d);
    return d;
}

static void atomic_add_double(_Atomic uint64_t *a, double v)
{
    uint64_t old = atomic_load_explicit(a, memory_order_relaxed);
    while (!atomic_compare_exchange_weak_explicit(a, &old, d2u(u2d(old) + v), memory_order_relaxed,
                                                  memory_order_relaxed))
        ;
}

static const char *type_name(mtype_t t)
{
    switch (t) {
    case M_COUNTER:
        return "counter";
    case M_GAUGE:
        return "gauge";
    case M_HISTOGRAM:
        return "histogram";
    }
    return "untyped";
}

/* Finds name+labels or appends a new metric. A name registered again with another type is a
 * programming error: it would render an invalid exposition. */
static sb_metric_t *get_or_create(mtype_t type, const char *name, const char *help,
                                  const char *labels, const double *buckets, size_t nbuckets)
{
    SB_REQUIRE(name && *name);
    if (!labels) labels = "";
    pthread_mutex_lock(&registry_lock);
    sb_metric_t *m;
    for (m = head; m; m = m->next) {
        if (strcmp(m->name, name) != 0) continue;
        SB_REQUIRE(m->type == type);
        if (strcmp(m->labels, labels) == 0) goto out;
    }
    m = sb_xcalloc(1, sizeof *m);
    m->type = type;
    m->name = sb_xstrdup(name);
    m->help = sb_xstrdup(help ? help : "");
    m->labels = sb_xstrdup(labels);
    atomic_init(&m->value, d2u(0.0));
    atomic_init(&m->count, 0);
    if (type == M_HISTOGRAM) {
        m->nbuckets = nbuckets;
        m->bounds = sb_xcalloc(nbuckets ? nbuckets : 1, sizeof *m->bounds);
        if (nbuckets) memcpy(m->bounds, buckets, nbuckets * sizeof *m->bounds);
        for (size_t i = 1; i < nbuckets; i++)
            SB_REQUIRE(m->bounds[i] > m->bounds[i - 1]);
        m->counts = sb_xcalloc(nbuckets + 1, sizeof *m->counts);
        for (size_t i = 0; i <= nbuckets; i++)
            atomic_init(&m->counts[i], 0);
    }
    if (tail)
        tail->next = m;
    else
        head = m;
    tail = m;
out:
    pthread_mutex_unlock(&registry_lock);
    return m;
}

sb_metric_t *sb_metrics_counter(const char *name, const char *help, const char *labels)
{
    return get_or_create(M_COUNTER, name, help, labels, NULL, 0);
}

sb_metric_t *sb_metrics_gauge(const char *name, const char *help, const char *labels)
{
    return get_or_create(M_GAUGE, name, help, labels, NULL, 0);
}

sb_metric_t *sb_metrics_histogram(const char *name, const char *help, const char *labels,
                                  const double *buckets, size_t nbuckets)
{
    SB_REQUIRE(buckets || nbuckets == 0);
    return get_or_create(M_HISTOGRAM, name, help, labels, buckets, nbuckets);
}

void sb_metric_inc(sb_metric_t *m)
{
    sb_metric_add(m, 1.0);
}

void sb_metric_add(sb_metric_t *m, double v)
{
    if (!m) return;
    if (m->type == M_HISTOGRAM) {
        sb_metric_observe(m, v);
        return;
    }
    /* Counters only go up; a negative add is a caller bug, dropped rather than rendered. */
    if (m->type == M_COUNTER && !(v >= 0)) return;
    atomic_add_double(&m->value, v);
}

void sb_metric_set(sb_metric_t *m, double v)
{
    if (!m || m->type == M_HISTOGRAM) return;
    atomic_store_explicit(&m->value, d2u(v), memory_order_relaxed);
}

void sb_metric_observe(sb_metric_t *m, double v)
{
    if (!m) return;
    if (m->type != M_HISTOGRAM) {
        sb_metric_add(m, v);
        return;
    }
    if (isnan(v)) return;
    size_t i = 0;
    while (i < m->nbuckets && v > m->bounds[i])
        i++;
    atomic_fetch_add_explicit(&m->counts[i], 1, memory_order_relaxed);
    atomic_add_double(&m->value, v);
    atomic_fetch_add_explicit(&m->count, 1, memory_order_relaxed);
}

double sb_metric_value(const sb_metric_t *m)
{
    if (!m) return 0;
    sb_metric_t *mm = (sb_metric_t *)m; /* atomics loads need a non-const object in C11 */
    if (m->type == M_HISTOGRAM)
        return (double)atomic_load_explicit(&mm->count, memory_order_relaxed);
    return u2d(atomic_load_explicit(&mm->value, memory_order_relaxed));
}

/* Prometheus float text: integers without exponent, +Inf/-Inf/NaN spelled as the format wants,
 * everything else with enough digits to read back the same value. */
static void append_float(sb_buf_t *out, double v)
{
    if (isnan(v)) {
        sb_buf_append(out, "NaN", 3);
    } else if (isinf(v)) {
        sb_buf_appendf(out, "%s", v > 0 ? "+Inf" : "-Inf");
    } else if (v == floor(v) && fabs(v) < 1e15) {
        sb_buf_appendf(out, "%.0f", v);
    } else {
        char tmp[40];
        for (int prec = 6; prec <= 17; prec++) {
            snprintf(tmp, sizeof tmp, "%.*g", prec, v);
            if (strtod(tmp, NULL) == v) break;
        }
        sb_buf_appendf(out, "%s", tmp);
    }
}

/* HELP text escapes backslash and newline (format 0.0.4). */
static void append_help(sb_buf_t *out, const char *s)
{
    for (; *s; s++) {
        if (*s == '\\')
            sb_buf_append(out, "\\\\", 2);
        else if (*s == '\n')
            sb_buf_append(out, "\\n", 2);
        else
            sb_buf_append(out, s, 1);
    }
}

/* name{labels[,extra]} */
static void append_series(sb_buf_t *out, const char *name, const char *suffix, const char *labels,
                          const char *extra)
{
    sb_buf_appendf(out, "%s%s", name, suffix);
    bool has_l = labels && *labels, has_e = extra && *extra;
    if (!has_l && !has_e) {
        sb_buf_append(out, " ", 1);
        return;
    }
    sb_buf_appendf(out, "{%s%s%s} ", has_l ? labels : "", has_l && has_e ? "," : "",
                   has_e ? extra : "");
}

static void render_one(sb_buf_t *out, sb_metric_t *m)
{
    double value = u2d(atomic_load_explicit(&m->value, memory_order_relaxed));
    if (m->type != M_HISTOGRAM) {
        append_series(out, m->name, "", m->labels, NULL);
        append_float(out, value);
        sb_buf_append(out, "\n", 1);
        return;
    }
    /* Buckets are rendered cumulatively from per-bucket counts read once each; the +Inf
     * bucket and _count are the same total so a scrape is always self-consistent. */
    uint64_t cum = 0;
    char le[64];
    for (size_t i = 0; i <= m->nbuckets; i++) {
        cum += atomic_load_explicit(&m->counts[i], memory_order_relaxed);
        if (i < m->nbuckets) {
            sb_buf_t tmp = {0};
            append_float(&tmp, m->bounds[i]);
            snprintf(le, sizeof le, "le=\"%s\"", tmp.data);
            sb_buf_free(&tmp);
        } else {
            snprintf(le, sizeof le, "le=\"+Inf\"");
        }
        append_series(out, m->name, "_bucket", m->labels, le);
        sb_buf_appendf(out, "%llu\n", (unsigned long long)cum);
    }
    append_series(out, m->name, "_sum", m->labels, NULL);
    append_float(out, value);
    sb_buf_append(out, "\n", 1);
    append_series(out, m->name, "_count", m->labels, NULL);
    sb_buf_appendf(out, "%llu\n", (unsigned long long)cum);
}

void sb_metrics_render(sb_buf_t *out)
{
    pthread_mutex_lock(&registry_lock);
    /* Families in order of first registration; the members of a family are written together
     * even when registered apart, because the format requires one group per name. */
    for (sb_metric_t *m = head; m; m = m->next) {
        bool seen = false;
        for (sb_metric_t *p = head; p != m; p = p->next)
            if (strcmp(p->name, m->name) == 0) {
                seen = true;
                break;
            }
        if (seen) continue;
        sb_buf_appendf(out, "# HELP %s ", m->name);
        append_help(out, m->help);
        sb_buf_appendf(out, "\n# TYPE %s %s\n", m->name, type_name(m->type));
        for (sb_metric_t *f = m; f; f = f->next)
            if (strcmp(f->name, m->name) == 0) render_one(out, f);
    }
    if (!out->data) sb_buf_append(out, "", 0);
    pthread_mutex_unlock(&registry_lock);
}

void sb_metrics_reset(void)
{
    pthread_mutex_lock(&registry_lock);
    sb_metric_t *m = head;
    while (m) {
        sb_metric_t *next = m->next;
        free(m->name);
        free(m->help);
        free(m->labels);
        free(m->bounds);
        free((void *)m->counts);
        free(m);
        m = next;
    }
    head = tail = NULL;
    pthread_mutex_unlock(&registry_lock);
}
