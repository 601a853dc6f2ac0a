/* Unit tests for core/src/log.c: the line format, level filtering, escaping that keeps one
 * event on one line, and level parsing. stderr is redirected to a temporary file per test. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sb/log.h"

/* Runs fn with stderr sent to a temp file and returns what was written (caller frees). */
static char *capture(void (*fn)(void))
{
    char path[] = "/tmp/sb-test-log-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    fflush(stderr);
    int saved = dup(STDERR_FILENO);
    assert_true(saved >= 0);
    assert_true(dup2(fd, STDERR_FILENO) >= 0);
    fn();
    fflush(stderr);
    assert_true(dup2(saved, STDERR_FILENO) >= 0);
    close(saved);
    off_t len = lseek(fd, 0, SEEK_END);
    assert_true(len >= 0);
    char *out = calloc(1, (size_t)len + 1);
    assert_non_null(out);
    assert_int_equal(pread(fd, out, (size_t)len, 0), len);
    close(fd);
    unlink(path);
    return out;
}

static void log_info_line(void)
{
    sb_log_init("svc", SB_LOG_INFO);
    SB_INFO("bus", "connected url=%s n=%d", "nats://x", 3);
}

static void test_line_format(void **state)
{
    (void)state;
    char *out = capture(log_info_line);
    assert_non_null(
        strstr(out, "level=info service=svc module=bus msg=\"connected url=nats://x n=3\""));
    assert_true(strncmp(out, "ts=", 3) == 0);
    assert_non_null(strstr(out, "Z level="));
    /* exactly one line, ending in a newline */
    assert_int_equal(out[strlen(out) - 1], '\n');
    assert_ptr_equal(strchr(out, '\n'), out + strlen(out) - 1);
    free(out);
}

static void log_filtered(void)
{
    sb_log_init("svc", SB_LOG_WARN);
    SB_DEBUG("m", "debug line");
    SB_INFO("m", "info line");
    SB_WARN("m", "warn line");
    SB_ERROR("m", "error line");
}

static void test_level_filter(void **state)
{
    (void)state;
    char *out = capture(log_filtered);
    assert_null(strstr(out, "debug line"));
    assert_null(strstr(out, "info line"));
    assert_non_null(strstr(out, "level=warn service=svc module=m msg=\"warn line\""));
    assert_non_null(strstr(out, "level=error service=svc module=m msg=\"error line\""));
    free(out);
}

static void log_hostile(void)
{
    sb_log_init("svc", SB_LOG_INFO);
    SB_INFO("m", "reason=%s", "two\nlines \"quoted\"");
}

static void test_escaping_keeps_one_line(void **state)
{
    (void)state;
    char *out = capture(log_hostile);
    size_t newlines = 0;
    for (const char *p = out; *p; p++)
        newlines += *p == '\n';
    assert_int_equal(newlines, 1);
    assert_null(strstr(out, "two\nlines"));
    assert_non_null(strstr(out, "two"));
    assert_non_null(strstr(out, "lines"));
    free(out);
}

static void test_level_parse(void **state)
{
    (void)state;
    assert_int_equal(sb_log_level_parse("debug"), SB_LOG_DEBUG);
    assert_int_equal(sb_log_level_parse("info"), SB_LOG_INFO);
    assert_int_equal(sb_log_level_parse("warn"), SB_LOG_WARN);
    assert_int_equal(sb_log_level_parse("error"), SB_LOG_ERROR);
    assert_int_equal(sb_log_level_parse("verbose"), -1);
    assert_int_equal(sb_log_level_parse(""), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_line_format),
        cmocka_unit_test(test_level_filter),
        cmocka_unit_test(test_escaping_keeps_one_line),
        cmocka_unit_test(test_level_parse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
