/* The terminal console against a real nats-server: an Escalation published on
 * sb.esc.support.<conversation> is listed as ticket #1 (with its redacted transcript and
 * masked contact), and piped commands `claim 1`, `reply 1 hi`, `resolve 1` become exactly
 * three AgentCommands on SB_AGENT with the right verbs, subjects, conversation id, partition
 * and agent. Escalations of another team are not shown; bad lines are answered and make the
 * exit status 1 without publishing anything; --wait gives up after --timeout-s.
 * Runs `switchboard console` when the CLI is built, else the sb-console-driver stand-in. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "sb/codec.h"
#include "sb/ids.h"
#include "sb/util.h"

#define PARTITIONS 8
#define RUN_TIMEOUT_MS 60000

extern char **environ;

typedef struct fixture {
    sb_harness_t h;
    char conversation[64];
    uint32_t partition;
    int runs;
} fixture_t;

/* ---- running the console ----------------------------------------------------------------- */

/* Runs the console with args (after the common --config), stdin = input; returns the exit
 * status and the combined stdout/stderr in *output (caller frees). */
static int run_console(fixture_t *f, const char *const *args, const char *input, char **output)
{
    const char *bindir = getenv("SB_BIN_DIR");
    char cli[PATH_MAX], driver[PATH_MAX], in_path[PATH_MAX + 32], out_path[PATH_MAX + 32];
    const char *argv[32];
    int argc = 0;
    assert_non_null(bindir);
    snprintf(cli, sizeof cli, "%s/switchboard", bindir);
    snprintf(driver, sizeof driver, "%s/../tests/sb-console-driver", bindir);
    if (access(cli, X_OK) == 0) {
        argv[argc++] = cli;
        argv[argc++] = "console";
    } else {
        assert_int_equal(access(driver, X_OK), 0);
        argv[argc++] = driver;
    }
    argv[argc++] = "--config";
    argv[argc++] = f->h.config_path;
    for (size_t i = 0; args[i] && argc < 31; i++)
        argv[argc++] = args[i];
    argv[argc] = NULL;

    f->runs++;
    snprintf(in_path, sizeof in_path, "%s/console-%d.in", f->h.dir, f->runs);
    snprintf(out_path, sizeof out_path, "%s/console-%d.out", f->h.dir, f->runs);
    FILE *in = fopen(in_path, "w");
    assert_non_null(in);
    fputs(input, in);
    assert_int_equal(fclose(in), 0);
    int in_fd = open(in_path, O_RDONLY | O_CLOEXEC);
    int out_fd = open(out_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    assert_true(in_fd >= 0 && out_fd >= 0);

    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        dup2(in_fd, STDIN_FILENO);
        dup2(out_fd, STDOUT_FILENO);
        dup2(out_fd, STDERR_FILENO);
        execve(argv[0], (char *const *)argv, environ);
        _exit(127);
    }
    close(in_fd);
    close(out_fd);

    int status = 0;
    pid_t r = 0;
    for (int waited = 0; waited < RUN_TIMEOUT_MS && r == 0; waited += 50) {
        r = waitpid(pid, &status, WNOHANG);
        if (r == 0) usleep(50 * 1000);
    }
    if (r == 0) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        fail_msg("console did not exit within %d ms", RUN_TIMEOUT_MS);
    }
    size_t len = 0;
    assert_int_equal(sb_read_file(out_path, 1 << 22, output, &len), SB_OK);
    if (!WIFEXITED(status)) fail_msg("console died: %s", *output);
    return WEXITSTATUS(status);
}

/* ---- bus helpers ------------------------------------------------------------------------- */

static void publish_escalation(fixture_t *f, const char *team, const char *conversation,
                               const char *state, const char *customer_text)
{
    sb_escalation_t e = SWITCHBOARD__V1__ESCALATION__INIT;
    Switchboard__V1__TranscriptLine l1 = SWITCHBOARD__V1__TRANSCRIPT_LINE__INIT;
    Switchboard__V1__TranscriptLine l2 = SWITCHBOARD__V1__TRANSCRIPT_LINE__INIT;
    Switchboard__V1__TranscriptLine *lines[] = {&l1, &l2};
    Switchboard__V1__EscalationReason reasons[] = {
        SWITCHBOARD__V1__ESCALATION_REASON__REASON_EXPLICIT_REQUEST};
    char subject[128], msg_id[128];
    uint8_t *buf = NULL;
    size_t len = 0;

    l1.at_ms = 1000;
    l1.text = (char *)customer_text;
    l2.at_ms = 2000;
    l2.author = SWITCHBOARD__V1__AUTHOR__AUTHOR_BOT;
    l2.text = "I'm connecting you with a colleague.";
    e.escalation_id = "esc-1";
    e.conversation_id = (char *)conversation;
    e.partition = sb_ids_partition(conversation, PARTITIONS);
    e.channel = "webchat";
    e.team = (char *)team;
    e.reasons = reasons;
    e.n_reasons = 1;
    e.transcript = lines;
    e.n_transcript = 2;
    e.masked_contact = "Q******* M**********, +44 **** ***461";
    e.language = "en";
    e.intent = "human_handoff";
    e.confidence = 0.97f;
    e.created_at_ms = sb_now_ms();
    e.state = (char *)state;

    assert_int_equal(SB_CODEC_PACK(&e, &buf, &len), SB_OK);
    snprintf(subject, sizeof subject, "sb.esc.%s.%s", team, conversation);
    snprintf(msg_id, sizeof msg_id, "esc:%s:%s:%s", team, conversation, state);
    assert_int_equal(sb_bus_publish(f->h.bus, subject, buf, len, msg_id, NULL), SB_OK);
    free(buf);
}

typedef struct commands {
    sb_agent_command_t *cmds[32];
    char subjects[32][96];
    size_t n;
} commands_t;

static void on_command(void *ctx, const char *subject, const void *data, size_t len)
{
    commands_t *c = ctx;
    sb_agent_command_t *cmd = NULL;
    if (c->n >= 32) return;
    assert_int_equal(SB_CODEC_UNPACK(switchboard__v1__agent_command__descriptor, data, len, &cmd),
                     SB_OK);
    snprintf(c->subjects[c->n], sizeof c->subjects[c->n], "%s", subject);
    c->cmds[c->n++] = cmd;
}

static void read_commands(fixture_t *f, commands_t *c)
{
    memset(c, 0, sizeof *c);
    assert_int_equal(sb_harness_read_stream(&f->h, "SB_AGENT", "sb.agent.>", on_command, c, NULL),
                     SB_OK);
}

static void free_commands(commands_t *c)
{
    for (size_t i = 0; i < c->n; i++)
        SB_CODEC_FREE(c->cmds[i]);
    c->n = 0;
}

/* ---- setup ------------------------------------------------------------------------------- */

static int setup(void **state)
{
    fixture_t *f = sb_xcalloc(1, sizeof *f);
    assert_int_equal(sb_harness_start_nats(&f->h), SB_OK);
    assert_int_equal(sb_harness_write_config(&f->h, "log_level: info\n"), SB_OK);
    snprintf(f->conversation, sizeof f->conversation, "9f2c4e1ab37d5c60");
    f->partition = sb_ids_partition(f->conversation, PARTITIONS);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    sb_harness_stop(&f->h);
    free(f);
    return 0;
}

/* ---- tests ------------------------------------------------------------------------------- */

static void test_claim_reply_resolve(void **state)
{
    fixture_t *f = *state;
    char *out = NULL;
    publish_escalation(f, "billing", "0123456789abcdef", "queued", "Another team's customer");
    publish_escalation(f, "support", f->conversation, "queued",
                       "I want to talk to a human about [EMAIL_1]");

    static const char *const args[] = {"--team", "support",     "--agent", "alice", "--wait",
                                       "1",      "--timeout-s", "30",      NULL};
    int status = run_console(f, args, "list\nclaim 1\nreply 1 hi\nresolve 1\n", &out);
    if (status != 0) fprintf(stderr, "console output:\n%s\n", out);
    assert_int_equal(status, 0);

    /* What the agent saw: ticket #1 with its transcript and masked contact, never #2. */
    assert_non_null(strstr(out, "new escalation #1"));
    assert_non_null(strstr(out, "customer: I want to talk to a human about [EMAIL_1]"));
    assert_non_null(strstr(out, "bot: I'm connecting you with a colleague."));
    assert_non_null(strstr(out, "Q******* M**********, +44 **** ***461"));
    assert_non_null(strstr(out, "explicit_request"));
    assert_non_null(strstr(out, "human_handoff (0.97)"));
    assert_non_null(strstr(out, "#1 claim: sent"));
    assert_non_null(strstr(out, "#1 reply: sent"));
    assert_non_null(strstr(out, "#1 resolve: sent"));
    assert_null(strstr(out, "Another team's customer"));
    assert_null(strstr(out, "#2"));
    free(out);

    commands_t c;
    read_commands(f, &c);
    assert_int_equal(c.n, 3);
    const Switchboard__V1__AgentVerb verbs[] = {SWITCHBOARD__V1__AGENT_VERB__VERB_CLAIM,
                                                SWITCHBOARD__V1__AGENT_VERB__VERB_REPLY,
                                                SWITCHBOARD__V1__AGENT_VERB__VERB_RESOLVE};
    const char *const words[] = {"claim", "reply", "resolve"};
    for (size_t i = 0; i < 3; i++) {
        char subject[96];
        snprintf(subject, sizeof subject, "sb.agent.%s.%u", words[i], f->partition);
        assert_string_equal(c.subjects[i], subject);
        assert_int_equal(c.cmds[i]->verb, verbs[i]);
        assert_string_equal(c.cmds[i]->conversation_id, f->conversation);
        assert_int_equal(c.cmds[i]->partition, f->partition);
        assert_string_equal(c.cmds[i]->agent_id, "alice");
        assert_true(strlen(c.cmds[i]->command_id) >= 16);
        assert_true(c.cmds[i]->at_ms > 0);
        for (size_t k = 0; k < i; k++)
            assert_string_not_equal(c.cmds[i]->command_id, c.cmds[k]->command_id);
    }
    assert_string_equal(c.cmds[1]->text, "hi");
    assert_string_equal(c.cmds[0]->text, "");
    free_commands(&c);
}

static void test_updates_and_bad_lines(void **state)
{
    fixture_t *f = *state;
    char *out = NULL;
    /* A later customer message for the same conversation updates ticket #1. */
    publish_escalation(f, "support", f->conversation, "customer_message", "Are you there?");
    /* Another agent (its own durable consumer) sees the whole history as well. */
    static const char *const args[] = {"--team", "support", "--agent", "bob", "--wait", "1", NULL};
    int status = run_console(f, args,
                             "claim 9\nfrobnicate 1\nreply 1\ntransfer 1 bad.team\nshow 1\n"
                             "help\nquit\nclaim 1\n",
                             &out);
    assert_int_equal(status, 1);
    assert_non_null(strstr(out, "no ticket #9"));
    assert_non_null(strstr(out, "unknown command 'frobnicate'"));
    assert_non_null(strstr(out, "nothing to send"));
    assert_non_null(strstr(out, "team must be"));
    /* --wait also lets the queued backlog through first: the update precedes the commands. */
    assert_non_null(strstr(out, "#1 customer: Are you there?"));
    assert_true(strstr(out, "#1 customer: Are you there?") < strstr(out, "no ticket #9"));
    assert_non_null(strstr(out, "reply N TEXT")); /* help */
    assert_null(strstr(out, "claim: sent"));      /* nothing after quit */
    free(out);

    commands_t c;
    read_commands(f, &c);
    assert_int_equal(c.n, 3); /* only the first test's */
    free_commands(&c);
}

static void test_wait_times_out(void **state)
{
    fixture_t *f = *state;
    char *out = NULL;
    static const char *const args[] = {"--team", "nobody", "--wait", "1", "--timeout-s", "1", NULL};
    int status = run_console(f, args, "claim 1\n", &out);
    assert_int_equal(status, 1);
    assert_non_null(strstr(out, "timed out"));
    free(out);

    static const char *const no_team[] = {"--wait", "1", NULL};
    status = run_console(f, no_team, "", &out);
    assert_int_equal(status, 2);
    assert_non_null(strstr(out, "--team NAME is required"));
    free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_claim_reply_resolve),
        cmocka_unit_test(test_updates_and_bad_lines),
        cmocka_unit_test(test_wait_times_out),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
