/* The integration harness itself (harness.c): the generated configuration loads with the
 * real config loader and merges the test's YAML; the sink records requests and fails on
 * demand; a real service binary is spawned, answers on its HTTP port, and stops on SIGTERM;
 * a stream read sees what was published. Other integration tests build on these. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "sb/config.h"
#include "sb/httpclient.h"
#include "sb/log.h"
#include "sb/seal.h"
#include "sb/util.h"

static int setup(void **state)
{
    sb_harness_t *h = sb_xcalloc(1, sizeof *h);
    assert_int_equal(sb_harness_start_nats(h), SB_OK);
    *state = h;
    return 0;
}

static int teardown(void **state)
{
    sb_harness_t *h = *state;
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", h->dir);
    sb_harness_stop(h);
    struct stat st;
    if (getenv("SB_KEEP_TEST_DIR") == NULL) assert_int_not_equal(stat(dir, &st), 0);
    free(h);
    return 0;
}

static void test_config_merge(void **state)
{
    sb_harness_t *h = *state;
    const char *extra = "# a comment before everything\n"
                        "router:\n"
                        "  channel_api_base: \"http://127.0.0.1:9/api\"\n"
                        "  max_headers: 32\n"
                        "keys:\n"
                        "  master_key_id: 7\n"
                        "classifier:\n"
                        "  model: \"/models/m.bin\"\n"
                        "channels:\n"
                        "  webchat:\n"
                        "    enabled: false\n";
    assert_int_equal(sb_harness_write_config(h, extra), SB_OK);

    sb_config_t cfg;
    char err[512];
    sb_result_t rc = sb_config_load(&cfg, h->config_path, err, sizeof err);
    if (rc != SB_OK) fprintf(stderr, "config: %s\n", err);
    assert_int_equal(rc, SB_OK);
    assert_string_equal(cfg.nats.url, h->nats_url);
    assert_string_equal(cfg.data_dir, h->data_dir);
    assert_string_equal(cfg.log_level, "debug");
    char listen[64];
    snprintf(listen, sizeof listen, "127.0.0.1:%d", h->router_port);
    assert_string_equal(cfg.router.http_listen, listen);
    assert_string_equal(cfg.router.channel_api_base, "http://127.0.0.1:9/api");
    assert_int_equal(cfg.router.max_headers, 32);
    assert_int_equal(cfg.keys.master_key_id, 7);
    assert_string_equal(cfg.classifier.model, "/models/m.bin");
    assert_false(cfg.webchat.enabled);
    uint8_t key[SB_SEAL_KEY_BYTES];
    assert_int_equal(sb_seal_key_from_base64(key, cfg.keys.contact_public_key), SB_OK);
    assert_memory_equal(key, h->contact_pk, sizeof key);
    assert_int_equal(sb_seal_key_from_base64(key, cfg.keys.recipient_secret_key), SB_OK);
    assert_memory_equal(key, h->recipient_sk, sizeof key);
    assert_int_equal(sb_seal_key_from_base64(key, cfg.keys.master_key), SB_OK);
    assert_memory_equal(key, h->master_key, sizeof key);
    assert_int_equal(sb_seal_key_from_base64(key, cfg.keys.id_secret), SB_OK);
    assert_memory_equal(key, h->id_secret, sizeof key);
    sb_config_free(&cfg);

    /* A key of a generated section given by the test replaces the generated one. */
    assert_int_equal(
        sb_harness_write_config(h, "nats:\n  url: \"nats://127.0.0.1:1\"\nlog_level: warn\n"),
        SB_OK);
    assert_int_equal(sb_config_load(&cfg, h->config_path, err, sizeof err), SB_OK);
    assert_string_equal(cfg.nats.url, "nats://127.0.0.1:1");
    assert_string_equal(cfg.log_level, "warn");
    sb_config_free(&cfg);

    /* No extra at all. */
    assert_int_equal(sb_harness_write_config(h, NULL), SB_OK);
    assert_int_equal(sb_config_load(&cfg, h->config_path, err, sizeof err), SB_OK);
    assert_string_equal(cfg.nats.url, h->nats_url);
    sb_config_free(&cfg);
}

static void test_sink(void **state)
{
    (void)state;
    sb_sink_t *sink = NULL;
    int port = 0;
    assert_int_equal(sb_sink_start(&sink, &port), SB_OK);
    assert_true(port > 0);
    assert_int_equal(sb_sink_wait(sink, 1, 10), 0);
    assert_null(sb_sink_get(sink, 0));

    sb_http_client_t *c = NULL;
    assert_int_equal(sb_http_client_create(&c), SB_OK);
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/whatsapp/v19.0/123/messages?x=1", port);
    const char *hdrs[] = {"Content-Type: application/json", "X-Test: 1", NULL};
    sb_http_client_response_t resp;

    sb_sink_fail_next(sink, 503, 1);
    assert_int_equal(sb_http_client_do(c, "POST", url, hdrs, "{\"a\":1}", 7, 5000, 1024, &resp),
                     SB_OK);
    assert_int_equal(resp.status, 503);
    sb_buf_free(&resp.body);
    assert_int_equal(sb_http_client_do(c, "POST", url, hdrs, "{\"a\":2}", 7, 5000, 1024, &resp),
                     SB_OK);
    assert_int_equal(resp.status, 200);
    assert_string_equal(resp.body.data, "{}");
    sb_buf_free(&resp.body);

    assert_int_equal(sb_sink_wait(sink, 2, 5000), 2);
    const sb_sink_request_t *r0 = sb_sink_get(sink, 0);
    const sb_sink_request_t *r1 = sb_sink_get(sink, 1);
    assert_non_null(r0);
    assert_non_null(r1);
    assert_string_equal(r0->method, "POST");
    assert_string_equal(r0->path, "/whatsapp/v19.0/123/messages?x=1");
    assert_string_equal(r0->body, "{\"a\":1}");
    assert_int_equal(r1->body_len, 7);
    assert_string_equal(r1->body, "{\"a\":2}");
    assert_non_null(strstr(r0->headers, "X-Test: 1\n"));
    /* Earlier entries stay valid while more arrive. */
    for (int i = 0; i < 40; i++) {
        assert_int_equal(sb_http_client_do(c, "GET", url, NULL, NULL, 0, 5000, 1024, &resp), SB_OK);
        sb_buf_free(&resp.body);
    }
    assert_int_equal(sb_sink_wait(sink, 42, 5000), 42);
    assert_ptr_equal(sb_sink_get(sink, 0), r0);
    assert_string_equal(r0->body, "{\"a\":1}");
    sb_http_client_destroy(c);
    sb_sink_stop(sink);
}

static void test_spawn_service(void **state)
{
    sb_harness_t *h = *state;
    char path[PATH_MAX];
    const char *bindir = getenv("SB_BIN_DIR");
    assert_non_null(bindir);
    snprintf(path, sizeof path, "%s/switchboard-router", bindir);
    if (access(path, X_OK) != 0) {
        fprintf(stderr, "switchboard-router not built: skipped\n");
        skip();
    }
    assert_int_equal(sb_harness_write_config(h, "channels:\n"
                                                "  webchat:\n"
                                                "    enabled: false\n"
                                                "  whatsapp:\n"
                                                "    enabled: false\n"),
                     SB_OK);
    assert_int_equal(sb_harness_spawn(h, "no-such-binary", NULL), -1);
    pid_t pid = sb_harness_spawn(h, "switchboard-router", NULL);
    assert_true(pid > 0);
    char url[128];
    snprintf(url, sizeof url, "%s/healthz", h->router_url);
    sb_result_t rc = sb_harness_wait_http(url, 30000);
    if (rc != SB_OK) sb_harness_dump_log(h, "switchboard-router", 4000);
    assert_int_equal(rc, SB_OK);
    assert_int_equal(h->nprocs, 1);
    sb_harness_kill(h, pid);
    assert_int_equal(h->nprocs, 0);
    assert_int_equal(kill(pid, 0), -1); /* reaped */
    assert_int_not_equal(sb_harness_wait_http(url, 300), SB_OK);
}

static void on_msg(void *ctx, const char *subject, const void *data, size_t len)
{
    (void)subject;
    (void)data;
    *(size_t *)ctx += len;
}

static void test_read_and_wait_stream(void **state)
{
    sb_harness_t *h = *state;
    assert_int_equal(sb_harness_wait_stream(h, SB_STREAM_EVENTS, "sb.ev.t", 1, 100), 0);
    for (int i = 0; i < 300; i++) {
        char id[16];
        snprintf(id, sizeof id, "e%d", i);
        assert_int_equal(sb_bus_publish(h->bus, "sb.ev.t", "abc", 3, id, NULL), SB_OK);
    }
    assert_int_equal(sb_bus_publish(h->bus, "sb.ev.other", "zz", 2, "o", NULL), SB_OK);
    assert_int_equal(sb_harness_wait_stream(h, SB_STREAM_EVENTS, "sb.ev.t", 300, 5000), 300);
    size_t bytes = 0, count = 0;
    assert_int_equal(sb_harness_read_stream(h, SB_STREAM_EVENTS, "sb.ev.t", on_msg, &bytes, &count),
                     SB_OK);
    assert_int_equal(count, 300);
    assert_int_equal(bytes, 900);
    /* Reading twice gives the same: the ephemeral reader consumed nothing. */
    bytes = count = 0;
    assert_int_equal(sb_harness_read_stream(h, SB_STREAM_EVENTS, NULL, on_msg, &bytes, &count),
                     SB_OK);
    assert_int_equal(count, 301);
    assert_int_equal(bytes, 902);
}

int main(void)
{
    sb_log_init("test_harness", SB_LOG_WARN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_config_merge, setup, teardown),
        cmocka_unit_test(test_sink),
        cmocka_unit_test_setup_teardown(test_spawn_service, setup, teardown),
        cmocka_unit_test_setup_teardown(test_read_and_wait_stream, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
