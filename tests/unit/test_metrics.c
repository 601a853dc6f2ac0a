/* Unit tests for core/src/metrics.c: the exact Prometheus text of each metric type, one
 * HELP/TYPE per family, registration returning the same metric, and concurrent updates from
 * several threads adding up. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "sb/metrics.h"

static int reset(void **state)
{
    (void)state;
    sb_metrics_reset();
    return 0;
}

static char *render(void)
{
    sb_buf_t b = {0};
    sb_metrics_render(&b);
    assert_non_null(b.data);
    return b.data;
}

static size_t count_occurrences(const char *hay, const char *needle)
{
    size_t n = 0;
    for (const char *p = strstr(hay, needle); p; p = strstr(p + 1, needle))
        n++;
    return n;
}

static void test_empty_registry(void **state)
{
    (void)state;
    char *s = render();
    assert_string_equal(s, "");
    free(s);
}

static void test_counter_format(void **state)
{
    (void)state;
    sb_metric_t *c = sb_metrics_counter("sb_requests_total", "Requests handled.", NULL);
    sb_metric_inc(c);
    sb_metric_add(c, 2);
    sb_metric_add(c, -5); /* counters never go down */
    assert_true(sb_metric_value(c) == 3.0);
    char *s = render();
    assert_string_equal(s, "# HELP sb_requests_total Requests handled.\n"
                           "# TYPE sb_requests_total counter\n"
                           "sb_requests_total 3\n");
    free(s);
}

static void test_gauge_format(void **state)
{
    (void)state;
    sb_metric_t *g = sb_metrics_gauge("sb_queue_depth", "Messages waiting.", "team=\"support\"");
    sb_metric_set(g, 7);
    sb_metric_add(g, -2.5);
    assert_true(sb_metric_value(g) == 4.5);
    char *s = render();
    assert_string_equal(s, "# HELP sb_queue_depth Messages waiting.\n"
                           "# TYPE sb_queue_depth gauge\n"
                           "sb_queue_depth{team=\"support\"} 4.5\n");
    free(s);
}

static void test_histogram_format(void **state)
{
    (void)state;
    const double buckets[] = {0.25, 1, 2.5};
    sb_metric_t *h =
        sb_metrics_histogram("sb_latency_seconds", "Latency.", "stage=\"router\"", buckets, 3);
    sb_metric_observe(h, 0.125);
    sb_metric_observe(h, 0.25); /* le is inclusive */
    sb_metric_observe(h, 2);
    sb_metric_observe(h, 30);
    assert_true(sb_metric_value(h) == 4.0);
    char *s = render();
    assert_string_equal(s, "# HELP sb_latency_seconds Latency.\n"
                           "# TYPE sb_latency_seconds histogram\n"
                           "sb_latency_seconds_bucket{stage=\"router\",le=\"0.25\"} 2\n"
                           "sb_latency_seconds_bucket{stage=\"router\",le=\"1\"} 2\n"
                           "sb_latency_seconds_bucket{stage=\"router\",le=\"2.5\"} 3\n"
                           "sb_latency_seconds_bucket{stage=\"router\",le=\"+Inf\"} 4\n"
                           "sb_latency_seconds_sum{stage=\"router\"} 32.375\n"
                           "sb_latency_seconds_count{stage=\"router\"} 4\n");
    free(s);
}

static void test_histogram_without_labels(void **state)
{
    (void)state;
    sb_metric_t *h = sb_metrics_histogram("sb_size_bytes", "Sizes.", NULL, (double[]){100}, 1);
    sb_metric_observe(h, 50);
    char *s = render();
    assert_non_null(strstr(s, "sb_size_bytes_bucket{le=\"100\"} 1\n"));
    assert_non_null(strstr(s, "sb_size_bytes_bucket{le=\"+Inf\"} 1\n"));
    assert_non_null(strstr(s, "sb_size_bytes_sum 50\n"));
    assert_non_null(strstr(s, "sb_size_bytes_count 1\n"));
    free(s);
}

static void test_same_name_and_labels_same_metric(void **state)
{
    (void)state;
    sb_metric_t *a = sb_metrics_counter("sb_in_total", "In.", "channel=\"webchat\"");
    sb_metric_t *b = sb_metrics_counter("sb_in_total", "In.", "channel=\"webchat\"");
    sb_metric_t *c = sb_metrics_counter("sb_in_total", "In.", "channel=\"whatsapp\"");
    sb_metric_t *d = sb_metrics_counter("sb_other_total", "Other.", NULL);
    sb_metric_t *e = sb_metrics_counter("sb_in_total", "In.", "channel=\"webchat\"");
    assert_ptr_equal(a, b);
    assert_ptr_equal(a, e);
    assert_ptr_not_equal(a, c);
    sb_metric_inc(a);
    sb_metric_inc(b);
    sb_metric_inc(c);
    sb_metric_inc(d);
    char *s = render();
    /* one HELP/TYPE per family, families in registration order, members grouped */
    assert_string_equal(s, "# HELP sb_in_total In.\n"
                           "# TYPE sb_in_total counter\n"
                           "sb_in_total{channel=\"webchat\"} 2\n"
                           "sb_in_total{channel=\"whatsapp\"} 1\n"
                           "# HELP sb_other_total Other.\n"
                           "# TYPE sb_other_total counter\n"
                           "sb_other_total 1\n");
    free(s);
}

static void test_family_members_registered_apart(void **state)
{
    (void)state;
    sb_metric_inc(sb_metrics_counter("sb_a_total", "A.", "x=\"1\""));
    sb_metric_inc(sb_metrics_counter("sb_b_total", "B.", NULL));
    sb_metric_inc(sb_metrics_counter("sb_a_total", "A.", "x=\"2\""));
    char *s = render();
    assert_int_equal(count_occurrences(s, "# TYPE sb_a_total"), 1);
    const char *a1 = strstr(s, "sb_a_total{x=\"1\"}");
    const char *a2 = strstr(s, "sb_a_total{x=\"2\"}");
    const char *b = strstr(s, "# HELP sb_b_total");
    assert_non_null(a1);
    assert_non_null(a2);
    assert_non_null(b);
    assert_true(a1 < a2 && a2 < b);
    free(s);
}

static void test_help_escaped(void **state)
{
    (void)state;
    sb_metrics_gauge("sb_g", "line one\nback\\slash", NULL);
    char *s = render();
    assert_non_null(strstr(s, "# HELP sb_g line one\\nback\\\\slash\n"));
    free(s);
}

static void test_latency_buckets(void **state)
{
    (void)state;
    assert_int_equal(sb_metrics_latency_nbuckets, 14);
    assert_true(sb_metrics_latency_buckets[0] == 0.0005);
    assert_true(sb_metrics_latency_buckets[13] == 10);
    for (size_t i = 1; i < sb_metrics_latency_nbuckets; i++)
        assert_true(sb_metrics_latency_buckets[i] > sb_metrics_latency_buckets[i - 1]);
    sb_metric_t *h = sb_metrics_histogram("sb_lat", "L.", NULL, sb_metrics_latency_buckets,
                                          sb_metrics_latency_nbuckets);
    sb_metric_observe(h, 0.003);
    char *s = render();
    assert_non_null(strstr(s, "sb_lat_bucket{le=\"0.0025\"} 0\n"));
    assert_non_null(strstr(s, "sb_lat_bucket{le=\"0.005\"} 1\n"));
    assert_non_null(strstr(s, "sb_lat_bucket{le=\"10\"} 1\n"));
    free(s);
}

#define THREADS 4
#define PER_THREAD 100000

static void *hammer(void *arg)
{
    (void)arg;
    /* each thread registers for itself: registration must hand back the shared metric */
    sb_metric_t *c = sb_metrics_counter("sb_hammer_total", "H.", NULL);
    sb_metric_t *g = sb_metrics_gauge("sb_hammer_gauge", "G.", NULL);
    sb_metric_t *h = sb_metrics_histogram("sb_hammer_seconds", "S.", NULL, (double[]){0.5}, 1);
    for (int i = 0; i < PER_THREAD; i++) {
        sb_metric_inc(c);
        sb_metric_add(g, 0.5);
        sb_metric_observe(h, (i & 1) ? 1.0 : 0.25);
    }
    return NULL;
}

static void test_concurrent_updates(void **state)
{
    (void)state;
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_create(&t[i], NULL, hammer, NULL), 0);
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_join(t[i], NULL), 0);
    const double total = (double)THREADS * PER_THREAD;
    assert_true(sb_metric_value(sb_metrics_counter("sb_hammer_total", "H.", NULL)) == total);
    assert_true(sb_metric_value(sb_metrics_gauge("sb_hammer_gauge", "G.", NULL)) == total / 2);
    assert_true(sb_metric_value(sb_metrics_histogram("sb_hammer_seconds", "S.", NULL,
                                                     (double[]){0.5}, 1)) == total);
    char *s = render();
    assert_non_null(strstr(s, "sb_hammer_total 400000\n"));
    assert_non_null(strstr(s, "sb_hammer_seconds_bucket{le=\"0.5\"} 200000\n"));
    assert_non_null(strstr(s, "sb_hammer_seconds_bucket{le=\"+Inf\"} 400000\n"));
    assert_non_null(strstr(s, "sb_hammer_seconds_sum 250000\n"));
    assert_int_equal(count_occurrences(s, "# TYPE sb_hammer_total"), 1);
    assert_int_equal(count_occurrences(s, "\nsb_hammer_total "), 1);
    free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_empty_registry, reset),
        cmocka_unit_test_setup(test_counter_format, reset),
        cmocka_unit_test_setup(test_gauge_format, reset),
        cmocka_unit_test_setup(test_histogram_format, reset),
        cmocka_unit_test_setup(test_histogram_without_labels, reset),
        cmocka_unit_test_setup(test_same_name_and_labels_same_metric, reset),
        cmocka_unit_test_setup(test_family_members_registered_apart, reset),
        cmocka_unit_test_setup(test_help_escaped, reset),
        cmocka_unit_test_setup(test_latency_buckets, reset),
        cmocka_unit_test_setup(test_concurrent_updates, reset),
    };
    return cmocka_run_group_tests(tests, NULL, reset);
}
