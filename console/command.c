/* Console command parsing: the verb (case-insensitive, a few aliases), the ticket number
 * ("1" or "#1"), then the verb's own argument: the reply text (the rest of the line, valid
 * UTF-8, bounded) or the transfer team (a name). Anything else gets a message that says what
 * the agent should type instead. */
#include "command.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "sb/util.h"

typedef struct verb_def {
    const char *name;
    sb_console_verb_t verb;
    const char *usage;
} verb_def_t;

static const verb_def_t verbs[] = {
    {"list", SB_CMD_LIST, "list"},
    {"ls", SB_CMD_LIST, "list"},
    {"show", SB_CMD_SHOW, "show N"},
    {"claim", SB_CMD_CLAIM, "claim N"},
    {"reply", SB_CMD_REPLY, "reply N TEXT"},
    {"resolve", SB_CMD_RESOLVE, "resolve N"},
    {"release", SB_CMD_RELEASE, "release N"},
    {"transfer", SB_CMD_TRANSFER, "transfer N TEAM"},
    {"help", SB_CMD_HELP, "help"},
    {"?", SB_CMD_HELP, "help"},
    {"quit", SB_CMD_QUIT, "quit"},
    {"exit", SB_CMD_QUIT, "quit"},
};

const char *sb_console_help(void)
{
    return "commands:\n"
           "  list               the tickets seen so far\n"
           "  show N             ticket #N with its transcript\n"
           "  claim N            take ticket #N\n"
           "  reply N TEXT       send TEXT to the customer of ticket #N\n"
           "  resolve N          close ticket #N and hand the conversation back to the bot\n"
           "  release N          give ticket #N back to the team queue\n"
           "  transfer N TEAM    move ticket #N to another team\n"
           "  help               this list\n"
           "  quit               leave the console\n";
}

bool sb_console_is_name(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > SB_CONSOLE_MAX_NAME) return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-'))
            return false;
    }
    return true;
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
}

/* The next whitespace-separated word of *p: start and length; *p moves past it. */
static size_t next_word(const char **p, const char **start)
{
    const char *s = *p;
    while (is_space(*s))
        s++;
    *start = s;
    while (*s && !is_space(*s))
        s++;
    *p = s;
    return (size_t)(s - *start);
}

/* Parses "N" or "#N" (1..SB_CONSOLE_MAX_TICKET). */
static bool parse_ticket(const char *w, size_t n, unsigned *out)
{
    unsigned v = 0;
    if (n > 0 && w[0] == '#') {
        w++;
        n--;
    }
    if (n == 0 || n > 6) return false;
    for (size_t i = 0; i < n; i++) {
        if (w[i] < '0' || w[i] > '9') return false;
        v = v * 10 + (unsigned)(w[i] - '0');
    }
    if (v == 0 || v > SB_CONSOLE_MAX_TICKET) return false;
    *out = v;
    return true;
}

sb_result_t sb_console_parse(const char *line, sb_console_cmd_t *out, char *err, size_t errlen)
{
    sb_console_cmd_t cmd;
    const char *p = line, *w;
    const verb_def_t *def = NULL;
    size_t n;

    memset(&cmd, 0, sizeof cmd);
    if (strlen(line) > SB_CONSOLE_MAX_LINE) {
        snprintf(err, errlen, "line too long (max %d bytes)", SB_CONSOLE_MAX_LINE);
        return SB_E_TOO_LARGE;
    }
    n = next_word(&p, &w);
    if (n == 0) {
        *out = cmd;
        return SB_OK;
    }
    for (size_t i = 0; i < sizeof verbs / sizeof verbs[0]; i++) {
        if (strlen(verbs[i].name) == n && strncasecmp(verbs[i].name, w, n) == 0) {
            def = &verbs[i];
            break;
        }
    }
    if (!def) {
        snprintf(err, errlen, "unknown command '%.*s' (type 'help' for the list)",
                 (int)(n > 32 ? 32 : n), w);
        return SB_E_INVALID;
    }
    cmd.verb = def->verb;

    if (cmd.verb != SB_CMD_LIST && cmd.verb != SB_CMD_HELP && cmd.verb != SB_CMD_QUIT) {
        n = next_word(&p, &w);
        if (n == 0) {
            snprintf(err, errlen, "missing ticket number: usage: %s", def->usage);
            return SB_E_INVALID;
        }
        if (!parse_ticket(w, n, &cmd.ticket)) {
            snprintf(err, errlen, "'%.*s' is not a ticket number (like 1 or #1): usage: %s",
                     (int)(n > 16 ? 16 : n), w, def->usage);
            return SB_E_INVALID;
        }
    }

    if (cmd.verb == SB_CMD_REPLY) {
        const char *end;
        while (is_space(*p))
            p++;
        end = p + strlen(p);
        while (end > p && is_space(end[-1]))
            end--;
        size_t chars = 0;
        if (end == p) {
            snprintf(err, errlen, "nothing to send: usage: %s", def->usage);
            return SB_E_INVALID;
        }
        if (!sb_utf8_check(p, (size_t)(end - p), SB_UTF8_ALLOW_TAB, &chars)) {
            snprintf(err, errlen, "the reply is not valid UTF-8 or has control characters");
            return SB_E_INVALID;
        }
        if (chars > SB_CONSOLE_MAX_REPLY) {
            snprintf(err, errlen, "the reply has %zu characters (max %d)", chars,
                     SB_CONSOLE_MAX_REPLY);
            return SB_E_TOO_LARGE;
        }
        cmd.text = p;
        cmd.text_len = (size_t)(end - p);
        *out = cmd;
        return SB_OK;
    }

    if (cmd.verb == SB_CMD_TRANSFER) {
        n = next_word(&p, &w);
        if (n == 0) {
            snprintf(err, errlen, "missing team: usage: %s", def->usage);
            return SB_E_INVALID;
        }
        if (n > SB_CONSOLE_MAX_NAME) {
            snprintf(err, errlen, "team name too long (max %d characters)", SB_CONSOLE_MAX_NAME);
            return SB_E_INVALID;
        }
        memcpy(cmd.team, w, n);
        cmd.team[n] = '\0';
        if (!sb_console_is_name(cmd.team)) {
            snprintf(err, errlen, "team must be letters, digits, '_' or '-': usage: %s",
                     def->usage);
            return SB_E_INVALID;
        }
    }

    n = next_word(&p, &w);
    if (n != 0) {
        snprintf(err, errlen, "unexpected '%.*s': usage: %s", (int)(n > 16 ? 16 : n), w,
                 def->usage);
        return SB_E_INVALID;
    }
    *out = cmd;
    return SB_OK;
}
