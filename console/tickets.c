/* Tickets: Escalation in → ticket table updated → text for the terminal out. Everything that
 * came from the bus is printed through append_clean, which keeps valid UTF-8 and drops
 * control characters (C0, DEL and C1, so no terminal escape sequence gets through). */
#include "tickets.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_FIELD 256 /* bytes of a short field shown (channel, state, contact...) */

static const char *const reason_names[] = {
    "unspecified",       "explicit_request",   "low_confidence",  "ambiguous",
    "repeated_fallback", "negative_sentiment", "sentiment_trend", "policy_intent",
    "keyword",           "off_hours",          "no_agent",        "sla_breach",
};

const char *sb_tickets_reason_name(int reason)
{
    if (reason >= 0 && (size_t)reason < sizeof reason_names / sizeof reason_names[0])
        return reason_names[reason];
    return "other";
}

static const char *author_name(int author)
{
    switch (author) {
    case SWITCHBOARD__V1__AUTHOR__AUTHOR_BOT:
        return "bot";
    case SWITCHBOARD__V1__AUTHOR__AUTHOR_AGENT:
        return "agent";
    case SWITCHBOARD__V1__AUTHOR__AUTHOR_SYSTEM:
        return "system";
    default:
        return "customer";
    }
}

/* Length of the valid UTF-8 sequence at p (1-4), or 0 when invalid. */
static size_t utf8_seq(const unsigned char *p, size_t avail)
{
    unsigned c = p[0];
    size_t len;
    if (c < 0x80) return 1;
    if ((c & 0xe0) == 0xc0 && c >= 0xc2)
        len = 2;
    else if ((c & 0xf0) == 0xe0)
        len = 3;
    else if ((c & 0xf8) == 0xf0 && c <= 0xf4)
        len = 4;
    else
        return 0;
    if (avail < len) return 0;
    for (size_t i = 1; i < len; i++)
        if ((p[i] & 0xc0) != 0x80) return 0;
    if (len == 3 && c == 0xe0 && p[1] < 0xa0) return 0;  /* overlong */
    if (len == 3 && c == 0xed && p[1] >= 0xa0) return 0; /* surrogate */
    if (len == 4 && c == 0xf0 && p[1] < 0x90) return 0;  /* overlong */
    if (len == 4 && c == 0xf4 && p[1] >= 0x90) return 0; /* above U+10FFFF */
    return len;
}

/* Appends at most max bytes of s, terminal-safe: newlines become indent, other control
 * characters a space, invalid bytes '?'; a cut is marked with "...". */
static void append_clean(sb_buf_t *b, const char *s, size_t max, const char *indent)
{
    const unsigned char *p = (const unsigned char *)(s ? s : "");
    size_t n = strlen((const char *)p), used = 0;
    while (used < n) {
        size_t len = utf8_seq(p + used, n - used);
        if (used + (len ? len : 1) > max) {
            sb_buf_append(b, "...", 3);
            return;
        }
        unsigned c = p[used];
        if (len == 0) {
            sb_buf_append(b, "?", 1);
            used++;
            continue;
        }
        if (len == 1 && c == '\n') {
            sb_buf_appendf(b, "\n%s", indent);
        } else if (len == 1 && (c < 0x20 || c == 0x7f)) {
            sb_buf_append(b, " ", 1);
        } else if (len == 2 && c == 0xc2 && p[used + 1] < 0xa0) {
            sb_buf_append(b, " ", 1); /* C1 controls U+0080..U+009F, e.g. CSI */
        } else {
            sb_buf_append(b, p + used, len);
        }
        used += len;
    }
}

static bool is_id(const char *s, size_t max)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > max) return false;
    for (size_t i = 0; i < n; i++)
        if (s[i] <= ' ' || s[i] >= 0x7f) return false;
    return true;
}

static void set_str(char **dst, const char *src)
{
    free(*dst);
    *dst = sb_xstrndup(src ? src : "", MAX_FIELD);
}

static sb_ticket_t *find_conversation(const sb_tickets_t *t, const char *conversation_id)
{
    for (size_t i = 0; i < t->n; i++)
        if (strcmp(t->items[i]->conversation_id, conversation_id) == 0) return t->items[i];
    return NULL;
}

const sb_ticket_t *sb_tickets_get(const sb_tickets_t *t, unsigned number)
{
    if (number == 0 || number > t->n) return NULL;
    return t->items[number - 1];
}

static bool has_line(const sb_ticket_t *tk, const Switchboard__V1__TranscriptLine *l)
{
    for (size_t i = 0; i < tk->nlines; i++) {
        const sb_ticket_line_t *k = &tk->lines[i];
        if (k->at_ms == l->at_ms && k->author == (int)l->author &&
            strncmp(k->text, l->text ? l->text : "", SB_TICKET_MAX_TEXT) == 0)
            return true;
    }
    return false;
}

static void add_line(sb_ticket_t *tk, const Switchboard__V1__TranscriptLine *l)
{
    if (tk->nlines == SB_TICKET_MAX_LINES) {
        free(tk->lines[0].text);
        memmove(&tk->lines[0], &tk->lines[1], (SB_TICKET_MAX_LINES - 1) * sizeof tk->lines[0]);
        tk->nlines--;
    }
    sb_ticket_line_t *k = &tk->lines[tk->nlines++];
    k->at_ms = l->at_ms;
    k->author = (int)l->author;
    k->text = sb_xstrndup(l->text ? l->text : "", SB_TICKET_MAX_TEXT);
}

static void render_line(sb_buf_t *out, const char *prefix, const sb_ticket_line_t *k)
{
    sb_buf_appendf(out, "%s%s: ", prefix, author_name(k->author));
    append_clean(out, k->text, SB_TICKET_MAX_TEXT, "      ");
    sb_buf_append(out, "\n", 1);
}

static void render_reasons(sb_buf_t *out, const sb_ticket_t *tk)
{
    if (tk->nreasons == 0) sb_buf_appendf(out, "-");
    for (size_t i = 0; i < tk->nreasons; i++)
        sb_buf_appendf(out, "%s%s", i ? ", " : "", sb_tickets_reason_name(tk->reasons[i]));
}

static void render_field(sb_buf_t *out, const char *label, const char *value)
{
    sb_buf_appendf(out, "%s", label);
    append_clean(out, value && value[0] ? value : "-", MAX_FIELD, "");
}

void sb_tickets_render_show(const sb_ticket_t *tk, sb_buf_t *out)
{
    sb_buf_appendf(out, "#%u ", tk->number);
    render_field(out, "", tk->channel);
    render_field(out, " | team ", tk->team);
    render_field(out, " | ", tk->state);
    if (tk->agent_id && tk->agent_id[0]) render_field(out, " by ", tk->agent_id);
    sb_buf_appendf(out, "\n   reasons:  ");
    render_reasons(out, tk);
    render_field(out, "\n   language: ", tk->language);
    render_field(out, "   intent: ", tk->intent);
    sb_buf_appendf(out, " (%.2f)   priority: %u", (double)tk->confidence, tk->priority);
    render_field(out, "\n   contact:  ", tk->masked_contact);
    sb_buf_appendf(out, "\n   conversation: %.12s (partition %u)\n", tk->conversation_id,
                   tk->partition);
    if (tk->nlines == 0) sb_buf_appendf(out, "   (no transcript)\n");
    for (size_t i = 0; i < tk->nlines; i++)
        render_line(out, "   ", &tk->lines[i]);
}

void sb_tickets_render_list(const sb_tickets_t *t, sb_buf_t *out)
{
    if (t->n == 0) {
        sb_buf_appendf(out, "no tickets yet\n");
        return;
    }
    for (size_t i = 0; i < t->n; i++) {
        const sb_ticket_t *tk = t->items[i];
        sb_buf_appendf(out, "#%-4u ", tk->number);
        append_clean(out, tk->channel, 16, "");
        sb_buf_append(out, "  ", 2);
        append_clean(out, tk->state, 20, "");
        if (tk->agent_id && tk->agent_id[0]) render_field(out, " by ", tk->agent_id);
        render_field(out, "  ", tk->language);
        render_field(out, "  ", tk->intent);
        sb_buf_appendf(out, " %.2f  ", (double)tk->confidence);
        render_reasons(out, tk);
        sb_buf_appendf(out, "  %zu lines\n", tk->nlines);
    }
}

sb_result_t sb_tickets_apply(sb_tickets_t *t, const sb_escalation_t *esc, uint32_t partitions,
                             sb_buf_t *display, unsigned *number)
{
    sb_ticket_t *tk;
    bool is_new = false;
    const char *old_state;
    char *prev_state = NULL, *prev_agent = NULL;

    if (!is_id(esc->conversation_id, 128) || !is_id(esc->channel, 32) ||
        esc->partition >= partitions)
        return SB_E_INVALID;

    tk = find_conversation(t, esc->conversation_id);
    if (!tk) {
        if (t->n >= SB_TICKETS_MAX) return SB_E_FULL;
        if (t->n == t->cap) {
            t->cap = t->cap ? t->cap * 2 : 16;
            t->items = sb_xrealloc(t->items, t->cap * sizeof *t->items);
        }
        tk = sb_xcalloc(1, sizeof *tk);
        tk->number = (unsigned)t->n + 1;
        tk->conversation_id = sb_xstrdup(esc->conversation_id);
        t->items[t->n++] = tk;
        is_new = true;
    }
    prev_state = tk->state ? sb_xstrdup(tk->state) : NULL;
    prev_agent = tk->agent_id ? sb_xstrdup(tk->agent_id) : NULL;

    tk->partition = esc->partition;
    set_str(&tk->channel, esc->channel);
    set_str(&tk->state, esc->state && esc->state[0] ? esc->state : "queued");
    set_str(&tk->agent_id, esc->agent_id);
    /* A later message may carry less (e.g. only the new customer line): keep what we know. */
    if (is_new || (esc->team && esc->team[0])) set_str(&tk->team, esc->team);
    if (is_new || (esc->masked_contact && esc->masked_contact[0]))
        set_str(&tk->masked_contact, esc->masked_contact);
    if (is_new || (esc->language && esc->language[0])) set_str(&tk->language, esc->language);
    if (is_new || (esc->intent && esc->intent[0])) {
        set_str(&tk->intent, esc->intent);
        tk->confidence = esc->confidence;
    }
    if (is_new || esc->n_reasons > 0) {
        tk->nreasons = 0;
        for (size_t i = 0; i < esc->n_reasons && i < SB_TICKET_MAX_REASONS; i++)
            tk->reasons[tk->nreasons++] = (int)esc->reasons[i];
        tk->priority = esc->priority;
    }
    old_state = prev_state ? prev_state : "";

    if (is_new) {
        for (size_t i = 0; i < esc->n_transcript; i++)
            if (esc->transcript[i] && !has_line(tk, esc->transcript[i]))
                add_line(tk, esc->transcript[i]);
        sb_buf_appendf(display, "\n== new escalation #%u ==\n", tk->number);
        sb_tickets_render_show(tk, display);
        sb_buf_appendf(display, "   -> claim %u | reply %u TEXT | resolve %u\n", tk->number,
                       tk->number, tk->number);
        goto done;
    }

    /* An update: say what changed, then the transcript lines not seen before. */
    const char *st = tk->state;
    if (strcmp(st, "assigned") == 0) {
        if (strcmp(old_state, "assigned") != 0 ||
            strcmp(prev_agent ? prev_agent : "", tk->agent_id) != 0) {
            sb_buf_appendf(display, "#%u assigned", tk->number);
            render_field(display, " to ", tk->agent_id);
            sb_buf_append(display, "\n", 1);
        }
    } else if (strcmp(st, "resolved") == 0) {
        sb_buf_appendf(display, "#%u resolved (handed back to the bot)\n", tk->number);
    } else if (strcmp(st, "queued") == 0) {
        sb_buf_appendf(display, "#%u queued again, reasons: ", tk->number);
        render_reasons(display, tk);
        sb_buf_append(display, "\n", 1);
    } else if (strcmp(st, "customer_message") != 0 && strcmp(st, old_state) != 0) {
        sb_buf_appendf(display, "#%u ", tk->number);
        render_field(display, "", st);
        sb_buf_append(display, "\n", 1);
    }
    for (size_t i = 0; i < esc->n_transcript; i++) {
        const Switchboard__V1__TranscriptLine *l = esc->transcript[i];
        if (!l || has_line(tk, l)) continue;
        add_line(tk, l);
        char prefix[24];
        snprintf(prefix, sizeof prefix, "#%u ", tk->number);
        render_line(display, prefix, &tk->lines[tk->nlines - 1]);
    }

done:
    free(prev_state);
    free(prev_agent);
    if (number) *number = tk->number;
    return SB_OK;
}

void sb_tickets_free(sb_tickets_t *t)
{
    for (size_t i = 0; i < t->n; i++) {
        sb_ticket_t *tk = t->items[i];
        for (size_t l = 0; l < tk->nlines; l++)
            free(tk->lines[l].text);
        free(tk->conversation_id);
        free(tk->channel);
        free(tk->team);
        free(tk->state);
        free(tk->agent_id);
        free(tk->masked_contact);
        free(tk->language);
        free(tk->intent);
        free(tk);
    }
    free(t->items);
    memset(t, 0, sizeof *t);
}
