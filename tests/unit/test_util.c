/* Unit tests for core/src/util.c and result.c: the byte buffer, host:port parsing and the
 * bounded file reader (real files in a temporary directory). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sb/result.h"
#include "sb/util.h"

static char tmpdir[256];

static int make_tmpdir(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/sb-test-util-XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int remove_tmpdir(void **state)
{
    (void)state;
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

static void write_file(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
}

static void test_buf_append(void **state)
{
    (void)state;
    sb_buf_t b = {0};
    sb_buf_append(&b, "abc", 3);
    assert_int_equal(b.len, 3);
    assert_string_equal(b.data, "abc");
    sb_buf_appendf(&b, "-%d-%s", 42, "x");
    assert_string_equal(b.data, "abc-42-x");
    assert_int_equal(b.len, 8);
    /* grows well past the first allocation and keeps every byte, including NULs */
    char big[5000];
    for (size_t i = 0; i < sizeof big; i++)
        big[i] = (char)(i % 251);
    sb_buf_append(&b, big, sizeof big);
    assert_int_equal(b.len, 8 + sizeof big);
    assert_memory_equal(b.data + 8, big, sizeof big);
    assert_int_equal(b.data[b.len], '\0');
    assert_true(b.cap > b.len);
    sb_buf_free(&b);
    assert_null(b.data);
    assert_int_equal(b.len, 0);
    assert_int_equal(b.cap, 0);
}

static void test_buf_empty_appends(void **state)
{
    (void)state;
    sb_buf_t b = {0};
    sb_buf_append(&b, "", 0);
    assert_non_null(b.data);
    assert_string_equal(b.data, "");
    sb_buf_appendf(&b, "%s", "");
    assert_int_equal(b.len, 0);
    sb_buf_free(&b);
}

static void test_xasprintf_and_strndup(void **state)
{
    (void)state;
    char *s = sb_xasprintf("%s=%d", "n", 7);
    assert_string_equal(s, "n=7");
    free(s);
    s = sb_xstrndup("abcdef", 3);
    assert_string_equal(s, "abc");
    free(s);
    s = sb_xstrndup("ab", 10);
    assert_string_equal(s, "ab");
    free(s);
}

static void test_hostport_valid(void **state)
{
    (void)state;
    char host[64];
    int port = -1;
    assert_int_equal(sb_parse_hostport("127.0.0.1:8080", host, sizeof host, &port), SB_OK);
    assert_string_equal(host, "127.0.0.1");
    assert_int_equal(port, 8080);
    assert_int_equal(sb_parse_hostport("localhost:0", host, sizeof host, &port), SB_OK);
    assert_string_equal(host, "localhost");
    assert_int_equal(port, 0);
    assert_int_equal(sb_parse_hostport("[::1]:65535", host, sizeof host, &port), SB_OK);
    assert_string_equal(host, "::1");
    assert_int_equal(port, 65535);
}

static void test_hostport_invalid(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "",       "8080",    ":8080", "host:", "host:65536", "host:-1",  "host:8a",
        "::1:80", "[::1]80", "[::1]", "[]:80", "a b:80",     "h:123456", "host:+80",
    };
    char host[64];
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int port = 4242;
        strcpy(host, "untouched");
        sb_result_t r = sb_parse_hostport(bad[i], host, sizeof host, &port);
        if (r != SB_E_INVALID) fail_msg("\"%s\" was accepted", bad[i]);
        assert_int_equal(port, 4242);
        assert_string_equal(host, "untouched");
    }
    /* host that does not fit the caller's buffer */
    char small[4];
    int port = 0;
    assert_int_equal(sb_parse_hostport("example.com:80", small, sizeof small, &port), SB_E_INVALID);
}

static void test_read_file_limits(void **state)
{
    (void)state;
    char path[300];
    snprintf(path, sizeof path, "%s/data.bin", tmpdir);
    const char content[] = "hello\0world";
    write_file(path, content, sizeof content - 1);

    char *out = NULL;
    size_t len = 0;
    assert_int_equal(sb_read_file(path, 100, &out, &len), SB_OK);
    assert_int_equal(len, 11);
    assert_memory_equal(out, content, 11);
    assert_int_equal(out[len], '\0');
    free(out);

    /* exactly at the limit is fine, one byte over is not, and nothing is written then */
    out = NULL;
    assert_int_equal(sb_read_file(path, 11, &out, &len), SB_OK);
    free(out);
    out = NULL;
    len = 99;
    assert_int_equal(sb_read_file(path, 10, &out, &len), SB_E_TOO_LARGE);
    assert_null(out);
    assert_int_equal(len, 99);

    snprintf(path, sizeof path, "%s/empty", tmpdir);
    write_file(path, "", 0);
    assert_int_equal(sb_read_file(path, 0, &out, &len), SB_OK);
    assert_int_equal(len, 0);
    assert_string_equal(out, "");
    free(out);
}

static void test_read_file_errors(void **state)
{
    (void)state;
    char path[300];
    char *out = NULL;
    size_t len = 0;
    snprintf(path, sizeof path, "%s/missing", tmpdir);
    assert_int_equal(sb_read_file(path, 100, &out, &len), SB_E_NOT_FOUND);
    assert_int_equal(sb_read_file(tmpdir, 100, &out, &len), SB_E_IO);
    assert_null(out);
}

/* A stream whose size is not known up front (a FIFO) is still bounded while reading. */
static void test_read_file_fifo_bounded(void **state)
{
    (void)state;
    char path[300];
    snprintf(path, sizeof path, "%s/fifo", tmpdir);
    assert_int_equal(mkfifo(path, 0600), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        FILE *f = fopen(path, "wb");
        if (!f) _exit(1);
        char chunk[1000];
        memset(chunk, 'x', sizeof chunk);
        for (int i = 0; i < 20; i++)
            if (fwrite(chunk, 1, sizeof chunk, f) != sizeof chunk) break;
        fclose(f);
        _exit(0);
    }
    char *out = NULL;
    size_t len = 0;
    assert_int_equal(sb_read_file(path, 5000, &out, &len), SB_E_TOO_LARGE);
    assert_null(out);
    int status;
    waitpid(pid, &status, 0);
}

static void test_result_str(void **state)
{
    (void)state;
    for (int r = SB_OK; r <= SB_E_INTERNAL; r++) {
        const char *s = sb_result_str((sb_result_t)r);
        assert_non_null(s);
        assert_string_not_equal(s, "unknown result");
    }
    assert_string_equal(sb_result_str(SB_E_TOO_LARGE), "too large");
}

static void test_clocks(void **state)
{
    (void)state;
    /* after 2020-01-01 and in milliseconds, not seconds */
    assert_true(sb_now_ms() > 1577836800000LL);
    uint64_t a = sb_mono_ns();
    uint64_t b = sb_mono_ns();
    assert_true(b >= a);
}

static void test_utf8_check(void **state)
{
    (void)state;
    size_t n = 0;
    assert_true(sb_utf8_check("h\xc3\xa9llo \xf0\x9f\x93\xa6", 11, 0, &n));
    assert_int_equal(n, 7);
    assert_false(sb_utf8_check("\xc0\xaf", 2, 0, NULL));         /* overlong '/' */
    assert_false(sb_utf8_check("\xed\xa0\x80", 3, 0, NULL));     /* surrogate */
    assert_false(sb_utf8_check("\xf4\x90\x80\x80", 4, 0, NULL)); /* above U+10FFFF */
    assert_false(sb_utf8_check("\xe2\x82", 2, 0, NULL));         /* truncated */
    assert_false(sb_utf8_check("a\x7f", 2, SB_UTF8_ALLOW_TAB, NULL));
    assert_false(sb_utf8_check("a\nb", 3, SB_UTF8_ALLOW_TAB, NULL));
    assert_true(sb_utf8_check("a\nb", 3, SB_UTF8_ALLOW_NEWLINE, NULL));
    assert_false(sb_utf8_check("a\r\n", 3, SB_UTF8_ALLOW_NEWLINE, NULL));
    assert_true(sb_utf8_check("a\r\n\t", 4,
                              SB_UTF8_ALLOW_NEWLINE | SB_UTF8_ALLOW_CR | SB_UTF8_ALLOW_TAB, NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_utf8_check),
        cmocka_unit_test(test_buf_append),
        cmocka_unit_test(test_buf_empty_appends),
        cmocka_unit_test(test_xasprintf_and_strndup),
        cmocka_unit_test(test_hostport_valid),
        cmocka_unit_test(test_hostport_invalid),
        cmocka_unit_test(test_read_file_limits),
        cmocka_unit_test(test_read_file_errors),
        cmocka_unit_test(test_read_file_fifo_bounded),
        cmocka_unit_test(test_result_str),
        cmocka_unit_test(test_clocks),
    };
    return cmocka_run_group_tests(tests, make_tmpdir, remove_tmpdir);
}
