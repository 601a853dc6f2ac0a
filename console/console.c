/* The terminal agent console: `switchboard console --team NAME [--agent ID]`.
 *
 * Two threads. A consumer thread pulls Escalations for the team from stream SB_ESC (durable
 * `console-<team>-<agent>`, filter sb.esc.<team>.>), folds each into the ticket table
 * (tickets.c) and prints what changed. The main thread reads commands from stdin (terminal or
 * pipe, one bounded line at a time), parses them (command.c) and publishes each as an
 * AgentCommand on sb.agent.<verb>.<p>, waiting for the JetStream ack before it prints "sent".
 * One mutex guards the tickets and stdout. Only what an Escalation carries is shown (redacted
 * transcript, masked contact); logs (stderr) carry ids and outcomes only. */
#include "console.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "command.h"
#include "sb/bus.h"
#include "sb/codec.h"
#include "sb/log.h"
#include "sb/seal.h"
#include "sb/service.h"
#include "sb/util.h"
#include "tickets.h"

#define MOD "console"
#define FETCH_WAIT_MS 500
#define POLL_MS 250
#define DEFAULT_TIMEOUT_S 30
#define MAX_WAIT 10000

typedef struct console {
    sb_service_t svc;
    char team[SB_CONSOLE_MAX_NAME + 1];
    char agent[SB_CONSOLE_MAX_NAME + 1];
    sb_bus_pull_t *pull;
    pthread_mutex_t lock; /* tickets and stdout */
    pthread_cond_t changed;
    sb_tickets_t tickets;
    atomic_bool stop;
    bool caught_up; /* a fetch came back empty: the backlog has been shown */
    bool full_warned;
} console_t;

typedef struct options {
    const char *team;
    const char *agent;
    long wait;
    long timeout_s;
} options_t;

static const char usage_text[] =
    "usage: switchboard console --team NAME [--agent ID] [--wait N] [--timeout-s S]\n"
    "                          [--config FILE] [--log-level LEVEL]\n"
    "  --team NAME     the team whose escalations to show (sb.esc.NAME.>)\n"
    "  --agent ID      your agent id (default: $USER, else \"agent\")\n"
    "  --wait N        before reading commands, wait until N escalations are listed\n"
    "  --timeout-s S   how long --wait waits (default 30)\n"
    "Commands are read from stdin, one per line (type 'help'). Exit status: 0, or 1 when a\n"
    "command was refused or not sent, NATS could not be reached or --wait timed out.\n";

/* ---- output ------------------------------------------------------------------------------ */

static void say(console_t *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(console_t *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    pthread_mutex_lock(&c->lock);
    vfprintf(stdout, fmt, ap);
    fflush(stdout);
    pthread_mutex_unlock(&c->lock);
    va_end(ap);
}

/* ---- consumer thread --------------------------------------------------------------------- */

static sb_result_t on_escalation(void *ctx, const sb_bus_msg_t *msg)
{
    console_t *c = ctx;
    sb_escalation_t *esc = NULL;
    sb_buf_t out = {0};
    sb_result_t r =
        SB_CODEC_UNPACK(switchboard__v1__escalation__descriptor, msg->data, msg->len, &esc);
    if (r != SB_OK) {
        SB_WARN(MOD, "escalation undecodable seq=%llu bytes=%zu",
                (unsigned long long)msg->stream_seq, msg->len);
        return SB_E_INVALID;
    }
    pthread_mutex_lock(&c->lock);
    r = sb_tickets_apply(&c->tickets, esc, (uint32_t)c->svc.cfg.nats.partitions, &out, NULL);
    if (r == SB_OK && out.len) {
        fwrite(out.data, 1, out.len, stdout);
        fflush(stdout);
    } else if (r == SB_E_FULL && !c->full_warned) {
        c->full_warned = true;
        fprintf(stdout, "too many tickets (%d): restart the console to see new ones\n",
                SB_TICKETS_MAX);
        fflush(stdout);
    }
    pthread_cond_broadcast(&c->changed);
    pthread_mutex_unlock(&c->lock);
    if (r == SB_E_INVALID)
        SB_WARN(MOD, "escalation refused (bad conversation, channel or partition) seq=%llu",
                (unsigned long long)msg->stream_seq);
    sb_buf_free(&out);
    SB_CODEC_FREE(esc);
    /* Refused or not shown, it is settled: ack (or terminate) rather than loop on it. */
    return r == SB_E_INVALID ? SB_E_INVALID : SB_OK;
}

static void *consume(void *arg)
{
    console_t *c = arg;
    int failures = 0;
    while (!atomic_load(&c->stop) && !sb_service_stopping()) {
        int handled = 0;
        sb_result_t r = sb_bus_pull_fetch(c->pull, 16, FETCH_WAIT_MS, on_escalation, c, &handled);
        if (r != SB_OK) {
            if (failures++ % 20 == 0)
                SB_WARN(MOD, "fetch failed, retrying result=\"%s\"", sb_result_str(r));
            struct timespec ts = {0, 500 * 1000000L};
            nanosleep(&ts, NULL);
        } else {
            failures = 0;
            if (handled == 0) {
                pthread_mutex_lock(&c->lock);
                c->caught_up = true;
                pthread_cond_broadcast(&c->changed);
                pthread_mutex_unlock(&c->lock);
            }
        }
    }
    return NULL;
}

/* ---- commands ---------------------------------------------------------------------------- */

static const char *verb_word(sb_console_verb_t v)
{
    switch (v) {
    case SB_CMD_CLAIM:
        return "claim";
    case SB_CMD_REPLY:
        return "reply";
    case SB_CMD_RESOLVE:
        return "resolve";
    case SB_CMD_RELEASE:
        return "release";
    case SB_CMD_TRANSFER:
        return "transfer";
    default:
        return NULL;
    }
}

static Switchboard__V1__AgentVerb verb_proto(sb_console_verb_t v)
{
    switch (v) {
    case SB_CMD_CLAIM:
        return SWITCHBOARD__V1__AGENT_VERB__VERB_CLAIM;
    case SB_CMD_REPLY:
        return SWITCHBOARD__V1__AGENT_VERB__VERB_REPLY;
    case SB_CMD_RESOLVE:
        return SWITCHBOARD__V1__AGENT_VERB__VERB_RESOLVE;
    case SB_CMD_RELEASE:
        return SWITCHBOARD__V1__AGENT_VERB__VERB_RELEASE;
    case SB_CMD_TRANSFER:
        return SWITCHBOARD__V1__AGENT_VERB__VERB_TRANSFER;
    default:
        return SWITCHBOARD__V1__AGENT_VERB__VERB_UNSPECIFIED;
    }
}

/* Publishes cmd for its ticket and waits for the ack. Returns false (after telling the agent
 * why) when it was not sent. */
static bool send_command(console_t *c, const sb_console_cmd_t *cmd)
{
    sb_agent_command_t ac = SWITCHBOARD__V1__AGENT_COMMAND__INIT;
    const char *verb = verb_word(cmd->verb);
    char conversation[160], id_hex[33], subject[96];
    uint8_t id_raw[16], *buf = NULL;
    char *text = NULL;
    size_t len = 0;
    uint32_t partition = 0;
    bool ok = false;
    sb_result_t r;

    pthread_mutex_lock(&c->lock);
    const sb_ticket_t *tk = sb_tickets_get(&c->tickets, cmd->ticket);
    if (tk) {
        snprintf(conversation, sizeof conversation, "%s", tk->conversation_id);
        partition = tk->partition;
    }
    pthread_mutex_unlock(&c->lock);
    if (!tk) {
        say(c, "no ticket #%u (type 'list')\n", cmd->ticket);
        return false;
    }

    sb_seal_random(id_raw, sizeof id_raw);
    sb_seal_hex_encode(id_hex, id_raw, sizeof id_raw);
    ac.command_id = id_hex;
    ac.verb = verb_proto(cmd->verb);
    ac.conversation_id = conversation;
    ac.partition = partition;
    ac.agent_id = c->agent;
    ac.at_ms = sb_now_ms();
    if (cmd->verb == SB_CMD_REPLY) {
        text = sb_xstrndup(cmd->text, cmd->text_len);
        ac.text = text;
    }
    if (cmd->verb == SB_CMD_TRANSFER) ac.team = (char *)cmd->team;

    r = sb_bus_subject(subject, sizeof subject, "sb.agent.%s.%u", verb, partition);
    if (r == SB_OK) r = SB_CODEC_PACK(&ac, &buf, &len);
    if (r == SB_OK) r = sb_bus_publish(c->svc.bus, subject, buf, len, id_hex, NULL);
    if (r == SB_E_DUPLICATE) r = SB_OK;
    if (r == SB_OK) {
        say(c, "#%u %s: sent\n", cmd->ticket, verb);
        SB_INFO(MOD, "command sent verb=%s command=%s conversation=%s", verb, id_hex, conversation);
        ok = true;
    } else {
        say(c, "#%u %s: NOT sent (%s), try again\n", cmd->ticket, verb, sb_result_str(r));
        SB_WARN(MOD, "command not acked verb=%s command=%s result=\"%s\"", verb, id_hex,
                sb_result_str(r));
    }
    free(buf);
    free(text);
    return ok;
}

/* Runs one parsed command. Returns false when it failed; sets *quit on quit. */
static bool run_command(console_t *c, const sb_console_cmd_t *cmd, bool *quit)
{
    sb_buf_t out = {0};
    bool ok = true;
    switch (cmd->verb) {
    case SB_CMD_NONE:
        break;
    case SB_CMD_HELP:
        say(c, "%s", sb_console_help());
        break;
    case SB_CMD_QUIT:
        *quit = true;
        break;
    case SB_CMD_LIST:
        pthread_mutex_lock(&c->lock);
        sb_tickets_render_list(&c->tickets, &out);
        fwrite(out.data, 1, out.len, stdout);
        fflush(stdout);
        pthread_mutex_unlock(&c->lock);
        break;
    case SB_CMD_SHOW: {
        pthread_mutex_lock(&c->lock);
        const sb_ticket_t *tk = sb_tickets_get(&c->tickets, cmd->ticket);
        if (tk)
            sb_tickets_render_show(tk, &out);
        else
            sb_buf_appendf(&out, "no ticket #%u (type 'list')\n", cmd->ticket);
        fwrite(out.data, 1, out.len, stdout);
        fflush(stdout);
        pthread_mutex_unlock(&c->lock);
        ok = tk != NULL;
        break;
    }
    default:
        ok = send_command(c, cmd);
        break;
    }
    sb_buf_free(&out);
    return ok;
}

/* ---- input ------------------------------------------------------------------------------- */

/* Reads stdin line by line without stdio buffering (so poll() tells the truth), never holding
 * more than one maximal line. */
typedef struct line_reader {
    int fd;
    char buf[SB_CONSOLE_MAX_LINE + 2];
    size_t len;
    bool eof;
    bool discarding; /* inside a line that was too long */
} line_reader_t;

enum { LR_LINE, LR_TIMEOUT, LR_EOF, LR_TOO_LONG };

static int next_line(line_reader_t *lr, char *line, size_t cap)
{
    for (;;) {
        char *nl = memchr(lr->buf, '\n', lr->len);
        if (nl || (lr->eof && lr->len > 0)) {
            size_t n = nl ? (size_t)(nl - lr->buf) : lr->len;
            size_t consumed = nl ? n + 1 : n;
            bool too_long = lr->discarding || n >= cap;
            if (!too_long) {
                memcpy(line, lr->buf, n);
                line[n] = '\0';
            }
            memmove(lr->buf, lr->buf + consumed, lr->len - consumed);
            lr->len -= consumed;
            lr->discarding = false;
            return too_long ? LR_TOO_LONG : LR_LINE;
        }
        if (lr->eof) return LR_EOF;
        if (lr->len == sizeof lr->buf) { /* no newline in a full buffer: drop it */
            lr->len = 0;
            lr->discarding = true;
        }
        struct pollfd pfd = {.fd = lr->fd, .events = POLLIN};
        int p = poll(&pfd, 1, POLL_MS);
        if (p == 0) return LR_TIMEOUT;
        if (p < 0) {
            if (errno == EINTR) return LR_TIMEOUT;
            lr->eof = true;
            continue;
        }
        ssize_t got = read(lr->fd, lr->buf + lr->len, sizeof lr->buf - lr->len);
        if (got < 0 && (errno == EINTR || errno == EAGAIN)) return LR_TIMEOUT;
        if (got <= 0)
            lr->eof = true;
        else
            lr->len += (size_t)got;
    }
}

/* ---- start-up ---------------------------------------------------------------------------- */

static bool parse_long(const char *s, long min, long max, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < min || v > max) return false;
    *out = v;
    return true;
}

/* Splits our flags from the common ones (--config, --log-level, --print-config, --help),
 * which go to rest for sb_service_init. Returns 0, or 2 after printing a usage error. */
static int parse_options(int argc, char **argv, options_t *o, char **rest, int *nrest,
                         bool *log_level_given)
{
    *nrest = 0;
    rest[(*nrest)++] = argv[0];
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *val = NULL;
        const char *flags[] = {"--team", "--agent", "--wait", "--timeout-s"};
        size_t which = 4;
        for (size_t f = 0; f < 4; f++) {
            size_t fl = strlen(flags[f]);
            if (strcmp(a, flags[f]) == 0) {
                if (i + 1 >= argc) {
                    fprintf(stderr, "console: %s needs a value\n%s", a, usage_text);
                    return 2;
                }
                val = argv[++i];
                which = f;
            } else if (strncmp(a, flags[f], fl) == 0 && a[fl] == '=') {
                val = a + fl + 1;
                which = f;
            }
            if (which != 4) break;
        }
        if (which == 0) {
            o->team = val;
        } else if (which == 1) {
            o->agent = val;
        } else if (which == 2) {
            if (!parse_long(val, 0, MAX_WAIT, &o->wait)) {
                fprintf(stderr, "console: --wait must be a number from 0 to %d\n", MAX_WAIT);
                return 2;
            }
        } else if (which == 3) {
            if (!parse_long(val, 1, 86400, &o->timeout_s)) {
                fprintf(stderr, "console: --timeout-s must be a number from 1 to 86400\n");
                return 2;
            }
        } else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            fputs(usage_text, stdout);
            return -1;
        } else if (strcmp(a, "--print-config") == 0) {
            rest[(*nrest)++] = argv[i];
        } else if ((strcmp(a, "--config") == 0 || strcmp(a, "--log-level") == 0) && i + 1 < argc) {
            if (strcmp(a, "--log-level") == 0) *log_level_given = true;
            rest[(*nrest)++] = argv[i];
            rest[(*nrest)++] = argv[++i];
        } else if (strncmp(a, "--config=", 9) == 0 || strncmp(a, "--log-level=", 12) == 0) {
            if (strncmp(a, "--log-level=", 12) == 0) *log_level_given = true;
            rest[(*nrest)++] = argv[i];
        } else {
            fprintf(stderr, "console: unknown argument '%.64s'\n%s", a, usage_text);
            return 2;
        }
    }
    rest[*nrest] = NULL;
    return 0;
}

/* The agent id: --agent, else $USER made safe for a consumer name, else "agent". */
static bool pick_agent(const char *flag, char out[SB_CONSOLE_MAX_NAME + 1])
{
    if (flag) {
        if (!sb_console_is_name(flag)) return false;
        snprintf(out, SB_CONSOLE_MAX_NAME + 1, "%s", flag);
        return true;
    }
    const char *user = getenv("USER");
    size_t n = 0;
    for (; user && user[n] && n < SB_CONSOLE_MAX_NAME; n++) {
        char ch = user[n];
        bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                  (ch >= '0' && ch <= '9') || ch == '_' || ch == '-';
        out[n] = ok ? ch : '_';
    }
    out[n] = '\0';
    if (n == 0) snprintf(out, SB_CONSOLE_MAX_NAME + 1, "agent");
    return true;
}

/* Waits until n tickets are listed and what was already queued has been shown (so that a
 * script's commands see whole tickets), or timeout_s passed. */
static bool wait_for_tickets(console_t *c, long n, long timeout_s)
{
    uint64_t deadline = sb_mono_ns() + (uint64_t)timeout_s * 1000000000ull;
    bool ok;
    pthread_mutex_lock(&c->lock);
    while (((long)c->tickets.n < n || !c->caught_up) && sb_mono_ns() < deadline &&
           !sb_service_stopping()) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += POLL_MS * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&c->changed, &c->lock, &ts);
    }
    ok = (long)c->tickets.n >= n;
    pthread_mutex_unlock(&c->lock);
    return ok;
}

static void read_commands(console_t *c, int *status)
{
    static line_reader_t lr; /* big buffer: not on the stack */
    char *line = sb_xmalloc(SB_CONSOLE_MAX_LINE + 1);
    bool quit = false;

    memset(&lr, 0, sizeof lr);
    lr.fd = STDIN_FILENO;
    while (!quit && !sb_service_stopping()) {
        int got = next_line(&lr, line, SB_CONSOLE_MAX_LINE + 1);
        if (got == LR_TIMEOUT) continue;
        if (got == LR_EOF) break;
        if (got == LR_TOO_LONG) {
            say(c, "line too long (max %d bytes): ignored\n", SB_CONSOLE_MAX_LINE);
            *status = 1;
            continue;
        }
        sb_console_cmd_t cmd;
        char err[256];
        if (sb_console_parse(line, &cmd, err, sizeof err) != SB_OK) {
            say(c, "%s\n", err);
            *status = 1;
            continue;
        }
        if (!run_command(c, &cmd, &quit)) *status = 1;
    }
    free(line);
}

int sb_console_main(int argc, char **argv)
{
    static console_t con; /* one console per process */
    console_t *c = &con;
    options_t o = {.wait = 0, .timeout_s = DEFAULT_TIMEOUT_S};
    char **rest = sb_xcalloc((size_t)argc + 4, sizeof *rest);
    char durable[320], filter[320]; /* roomy: gcc cannot see the names are bounded */
    bool log_level_given = false;
    int nrest = 0, status = 1;
    pthread_t thread;

    memset(c, 0, sizeof *c);
    int rc = parse_options(argc, argv, &o, rest, &nrest, &log_level_given);
    if (rc != 0) {
        free(rest);
        return rc < 0 ? 0 : rc;
    }

    /* The terminal is the agent's: only warnings and errors on stderr unless asked. */
    if (!log_level_given) {
        rest[nrest++] = "--log-level";
        rest[nrest++] = "warn";
        rest[nrest] = NULL;
    }
    rc = sb_service_init(&c->svc, "console", nrest, rest, NULL, usage_text);
    free(rest);
    if (rc != 0) return rc < 0 ? 0 : rc;
    if (!o.team || !sb_console_is_name(o.team)) {
        fprintf(stderr, "console: --team NAME is required (letters, digits, '_' or '-')\n%s",
                usage_text);
        sb_service_close(&c->svc);
        return 2;
    }
    if (!pick_agent(o.agent, c->agent)) {
        fprintf(stderr, "console: --agent must be 1-%d letters, digits, '_' or '-'\n",
                SB_CONSOLE_MAX_NAME);
        sb_service_close(&c->svc);
        return 2;
    }
    snprintf(c->team, sizeof c->team, "%s", o.team);

    pthread_mutex_init(&c->lock, NULL);
    pthread_cond_init(&c->changed, NULL);

    sb_result_t r = sb_service_connect(&c->svc, true);
    if (r != SB_OK) {
        fprintf(stderr, "console: cannot reach NATS at %s (%s)\n", c->svc.cfg.nats.url,
                sb_result_str(r));
        goto close_service;
    }
    snprintf(durable, sizeof durable, "console-%s-%s", c->team, c->agent);
    snprintf(filter, sizeof filter, "sb.esc.%s.>", c->team);
    r = sb_bus_pull_create(c->svc.bus, SB_STREAM_ESC, durable, filter, &c->pull);
    if (r != SB_OK) {
        fprintf(stderr, "console: cannot subscribe to %s (%s)\n", filter, sb_result_str(r));
        goto close_service;
    }
    if (pthread_create(&thread, NULL, consume, c) != 0) {
        fprintf(stderr, "console: cannot start the consumer thread\n");
        goto close_pull;
    }
    say(c, "console: team %s, agent %s; escalations appear below (type 'help')\n", c->team,
        c->agent);

    status = 0;
    if (o.wait > 0 && !wait_for_tickets(c, o.wait, o.timeout_s)) {
        pthread_mutex_lock(&c->lock);
        size_t have = c->tickets.n;
        pthread_mutex_unlock(&c->lock);
        fprintf(stderr, "console: timed out after %lds waiting for %ld escalation(s) (have %zu)\n",
                o.timeout_s, o.wait, have);
        status = 1;
    } else {
        read_commands(c, &status);
    }

    atomic_store(&c->stop, true);
    pthread_join(thread, NULL);
close_pull:
    sb_bus_pull_destroy(c->pull);
close_service:
    sb_service_close(&c->svc);
    pthread_mutex_lock(&c->lock);
    sb_tickets_free(&c->tickets);
    pthread_mutex_unlock(&c->lock);
    pthread_cond_destroy(&c->changed);
    pthread_mutex_destroy(&c->lock);
    return status;
}
