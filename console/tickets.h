/* Tickets: the console's memory of the escalations it has seen. Each conversation gets a short
 * number (#1, #2 ... in order of arrival); later Escalations for the same conversation (new
 * customer messages, assignment, resolution, a new escalation) update its ticket. Everything
 * shown comes from the Escalation as published (redacted transcript, masked contact) and is
 * made safe for a terminal (control characters and escape sequences removed). Not
 * thread-safe: the console holds its lock around every call. */
#ifndef SB_CONSOLE_TICKETS_H
#define SB_CONSOLE_TICKETS_H

#include <stddef.h>
#include <stdint.h>

#include "sb/codec.h"
#include "sb/result.h"
#include "sb/util.h"

#define SB_TICKETS_MAX 10000   /* tickets kept by one console */
#define SB_TICKET_MAX_LINES 50 /* transcript lines kept per ticket */
#define SB_TICKET_MAX_REASONS 12
#define SB_TICKET_MAX_TEXT 8192 /* bytes of one transcript line shown */

typedef struct sb_ticket_line {
    int64_t at_ms;
    int author; /* Switchboard__V1__Author; 0 = the customer */
    char *text;
} sb_ticket_line_t;

typedef struct sb_ticket {
    unsigned number;
    char *conversation_id;
    uint32_t partition;
    char *channel;
    char *team;
    char *state;
    char *agent_id;
    char *masked_contact;
    char *language;
    char *intent;
    float confidence;
    uint32_t priority;
    int reasons[SB_TICKET_MAX_REASONS];
    size_t nreasons;
    sb_ticket_line_t lines[SB_TICKET_MAX_LINES]; /* oldest first */
    size_t nlines;
} sb_ticket_t;

typedef struct sb_tickets {
    sb_ticket_t **items; /* items[i]->number == i + 1 */
    size_t n, cap;
} sb_tickets_t;

/* Applies one Escalation (borrowed) and appends to display what the agent should see: the
 * whole ticket when it is new, otherwise the change and the transcript lines not seen before.
 * SB_E_INVALID if it lacks a usable conversation id or channel, or its partition is not below
 * partitions; SB_E_FULL beyond SB_TICKETS_MAX tickets. *number (may be NULL) gets the ticket. */
SB_MUST_CHECK sb_result_t sb_tickets_apply(sb_tickets_t *t, const sb_escalation_t *esc,
                                           uint32_t partitions, sb_buf_t *display,
                                           unsigned *number);
/* Ticket #number, or NULL. Borrowed until the next apply or free. */
const sb_ticket_t *sb_tickets_get(const sb_tickets_t *t, unsigned number);
/* One line per ticket (or a note that there are none). */
void sb_tickets_render_list(const sb_tickets_t *t, sb_buf_t *out);
/* A ticket with its details and kept transcript. */
void sb_tickets_render_show(const sb_ticket_t *tk, sb_buf_t *out);
/* "explicit_request", ... for a Switchboard__V1__EscalationReason value. */
const char *sb_tickets_reason_name(int reason);
void sb_tickets_free(sb_tickets_t *t);

#endif
