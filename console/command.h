/* Console commands: one line of agent input → one parsed command, or a clear message saying
 * what is wrong with it. Pure (no I/O), so the unit tests drive it directly. */
#ifndef SB_CONSOLE_COMMAND_H
#define SB_CONSOLE_COMMAND_H

#include <stdbool.h>
#include <stddef.h>

#include "sb/result.h"

#define SB_CONSOLE_MAX_LINE 20000 /* bytes of one input line */
#define SB_CONSOLE_MAX_REPLY 4096 /* characters of a reply */
#define SB_CONSOLE_MAX_NAME 64    /* bytes of a team or agent name */
#define SB_CONSOLE_MAX_TICKET 999999

typedef enum sb_console_verb {
    SB_CMD_NONE = 0, /* an empty line */
    SB_CMD_LIST,
    SB_CMD_SHOW,
    SB_CMD_CLAIM,
    SB_CMD_REPLY,
    SB_CMD_RESOLVE,
    SB_CMD_RELEASE,
    SB_CMD_TRANSFER,
    SB_CMD_HELP,
    SB_CMD_QUIT,
} sb_console_verb_t;

typedef struct sb_console_cmd {
    sb_console_verb_t verb;
    unsigned ticket;  /* #N for show, claim, reply, resolve, release, transfer */
    const char *text; /* reply text, borrowed from the line (text_len bytes, not terminated) */
    size_t text_len;
    char team[SB_CONSOLE_MAX_NAME + 1]; /* transfer target */
} sb_console_cmd_t;

/* Parses line (NUL-terminated, trailing newline allowed). On error writes a one-line message
 * for the agent to err and returns SB_E_INVALID (SB_E_TOO_LARGE for an overlong reply);
 * *out is written only on success. Any thread. */
SB_MUST_CHECK sb_result_t sb_console_parse(const char *line, sb_console_cmd_t *out, char *err,
                                           size_t errlen);

/* True if s is 1..SB_CONSOLE_MAX_NAME characters of [A-Za-z0-9_-] (usable in a subject token
 * and a durable consumer name). */
bool sb_console_is_name(const char *s);

/* The help text listing every command. */
const char *sb_console_help(void);

#endif
