/* Unit tests of the terminal console's command parsing: every verb with good input, and bad
 * lines (unknown verbs, missing or bad ticket numbers, empty or overlong replies, bad teams,
 * extra words, invalid UTF-8) each answered with a clear message. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "command.h"
#include "sb/util.h"

static sb_console_cmd_t parse_ok(const char *line)
{
    sb_console_cmd_t cmd;
    char err[256] = "";
    sb_result_t r = sb_console_parse(line, &cmd, err, sizeof err);
    if (r != SB_OK) print_error("unexpected error for '%s': %s\n", line, err);
    assert_int_equal(r, SB_OK);
    return cmd;
}

static void parse_bad(const char *line, const char *fragment)
{
    sb_console_cmd_t cmd;
    memset(&cmd, 0x5a, sizeof cmd);
    char err[256] = "";
    sb_result_t r = sb_console_parse(line, &cmd, err, sizeof err);
    if (r == SB_OK || !strstr(err, fragment))
        print_error("line '%.40s': error '%s' (want '%s')\n", line, err, fragment);
    assert_int_not_equal(r, SB_OK);
    assert_non_null(strstr(err, fragment));
    /* Nothing written on failure. */
    assert_int_equal(((unsigned char *)&cmd)[0], 0x5a);
}

static void test_simple_verbs(void **state)
{
    (void)state;
    assert_int_equal(parse_ok("list").verb, SB_CMD_LIST);
    assert_int_equal(parse_ok("  LIST \r\n").verb, SB_CMD_LIST);
    assert_int_equal(parse_ok("ls").verb, SB_CMD_LIST);
    assert_int_equal(parse_ok("help").verb, SB_CMD_HELP);
    assert_int_equal(parse_ok("?").verb, SB_CMD_HELP);
    assert_int_equal(parse_ok("quit\n").verb, SB_CMD_QUIT);
    assert_int_equal(parse_ok("exit").verb, SB_CMD_QUIT);
    assert_int_equal(parse_ok("").verb, SB_CMD_NONE);
    assert_int_equal(parse_ok("   \t\n").verb, SB_CMD_NONE);
    assert_non_null(strstr(sb_console_help(), "reply N TEXT"));
}

static void test_ticket_verbs(void **state)
{
    (void)state;
    sb_console_cmd_t c = parse_ok("claim 1");
    assert_int_equal(c.verb, SB_CMD_CLAIM);
    assert_int_equal(c.ticket, 1);
    c = parse_ok("show #12\n");
    assert_int_equal(c.verb, SB_CMD_SHOW);
    assert_int_equal(c.ticket, 12);
    c = parse_ok("Resolve 3");
    assert_int_equal(c.verb, SB_CMD_RESOLVE);
    assert_int_equal(c.ticket, 3);
    c = parse_ok("release 999999");
    assert_int_equal(c.verb, SB_CMD_RELEASE);
    assert_int_equal(c.ticket, 999999);
}

static void test_reply(void **state)
{
    (void)state;
    sb_console_cmd_t c = parse_ok("reply 1 Hello!\n");
    assert_int_equal(c.verb, SB_CMD_REPLY);
    assert_int_equal(c.ticket, 1);
    assert_int_equal(c.text_len, 6);
    assert_memory_equal(c.text, "Hello!", 6);

    c = parse_ok("reply #2    Your order   ships today.  \r\n");
    assert_int_equal(c.ticket, 2);
    assert_int_equal(c.text_len, strlen("Your order   ships today."));
    assert_memory_equal(c.text, "Your order   ships today.", c.text_len);

    c = parse_ok("reply 1 Bonne journée ! 👋");
    assert_memory_equal(c.text, "Bonne journée ! 👋", c.text_len);

    /* 4096 characters are fine, even when they take more bytes. */
    sb_buf_t b = {0};
    sb_buf_appendf(&b, "reply 1 ");
    for (int i = 0; i < SB_CONSOLE_MAX_REPLY; i++)
        sb_buf_appendf(&b, "é");
    c = parse_ok(b.data);
    assert_int_equal(c.text_len, 2 * SB_CONSOLE_MAX_REPLY);
    sb_buf_appendf(&b, "x");
    parse_bad(b.data, "4097 characters (max 4096)");
    sb_buf_free(&b);
}

static void test_transfer(void **state)
{
    (void)state;
    sb_console_cmd_t c = parse_ok("transfer 4 billing");
    assert_int_equal(c.verb, SB_CMD_TRANSFER);
    assert_int_equal(c.ticket, 4);
    assert_string_equal(c.team, "billing");
    c = parse_ok("transfer #4 second-line_NL\n");
    assert_string_equal(c.team, "second-line_NL");
    parse_bad("transfer 4", "missing team");
    parse_bad("transfer 4 bill.ing", "team must be");
    parse_bad("transfer 4 sb.esc.>", "team must be");
    parse_bad("transfer 4 billing now", "unexpected 'now'");
    char longteam[200];
    memset(longteam, 'a', sizeof longteam);
    memcpy(longteam, "transfer 1 ", 11);
    longteam[sizeof longteam - 1] = '\0';
    parse_bad(longteam, "team name too long");
}

static void test_bad_lines(void **state)
{
    (void)state;
    parse_bad("hello", "unknown command 'hello'");
    parse_bad("claim", "missing ticket number: usage: claim N");
    parse_bad("claim one", "'one' is not a ticket number");
    parse_bad("claim 0", "is not a ticket number");
    parse_bad("claim -1", "is not a ticket number");
    parse_bad("claim 1x", "is not a ticket number");
    parse_bad("claim 99999999999999999999", "is not a ticket number");
    parse_bad("claim #", "is not a ticket number");
    parse_bad("claim 1 2", "unexpected '2': usage: claim N");
    parse_bad("resolve 1 now", "usage: resolve N");
    parse_bad("list all", "usage: list");
    parse_bad("reply 1", "nothing to send");
    parse_bad("reply 1    \n", "nothing to send");
    parse_bad("reply", "missing ticket number");
    parse_bad("reply 1 bad \xff byte", "not valid UTF-8");
    parse_bad("reply 1 esc \x1b[31m red", "control characters");
    parse_bad("reply 1 overlong \xc0\xaf", "not valid UTF-8");
}

static void test_overlong_line(void **state)
{
    (void)state;
    char *line = sb_xmalloc(SB_CONSOLE_MAX_LINE + 2);
    memset(line, 'a', SB_CONSOLE_MAX_LINE + 1);
    memcpy(line, "reply 1 ", 8);
    line[SB_CONSOLE_MAX_LINE + 1] = '\0';
    parse_bad(line, "line too long");
    free(line);
}

static void test_names(void **state)
{
    (void)state;
    assert_true(sb_console_is_name("support"));
    assert_true(sb_console_is_name("team-1_B"));
    assert_false(sb_console_is_name(""));
    assert_false(sb_console_is_name(NULL));
    assert_false(sb_console_is_name("a.b"));
    assert_false(sb_console_is_name("a b"));
    assert_false(sb_console_is_name("*"));
    char n[SB_CONSOLE_MAX_NAME + 2];
    memset(n, 'a', sizeof n);
    n[SB_CONSOLE_MAX_NAME] = '\0';
    assert_true(sb_console_is_name(n));
    n[SB_CONSOLE_MAX_NAME] = 'a';
    n[SB_CONSOLE_MAX_NAME + 1] = '\0';
    assert_false(sb_console_is_name(n));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_simple_verbs), cmocka_unit_test(test_ticket_verbs),
        cmocka_unit_test(test_reply),        cmocka_unit_test(test_transfer),
        cmocka_unit_test(test_bad_lines),    cmocka_unit_test(test_overlong_line),
        cmocka_unit_test(test_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
