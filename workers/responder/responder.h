/* Responder: turns each BotTurn from sb.bot.<p> into the bot's reply. The pull loop calls
 * sb_responder_handle per message: decode and check the turn → choose the answer (answers.h)
 * → Outbound on sb.out.<channel> with Nats-Msg-Id "out:<turn_id>" → Event bot_reply or
 * fallback on sb.ev.<kind> → ack. A turn delivered twice produces one Outbound (JetStream
 * drops the duplicate msg id); a publish that is not acked naks the turn for redelivery. */
#ifndef SB_RESPONDER_H
#define SB_RESPONDER_H

#include <stdbool.h>
#include <stddef.h>

#include "answers.h"
#include "sb/bus.h"
#include "sb/codec.h"
#include "sb/result.h"

#define SB_RESPONDER_MAX_ID 128     /* bytes of turn and conversation ids */
#define SB_RESPONDER_MAX_CHANNEL 32 /* bytes of a channel name */

typedef struct sb_responder {
    sb_bus_t *bus;            /* borrowed; connected */
    sb_answers_t *answers;    /* owned; replaced by sb_responder_reload */
    const char *answers_path; /* borrowed (the configuration's) */
} sb_responder_t;

/* Loads path into r (bus borrowed). On error err names the intent and field and r is left
 * untouched. Caller releases with sb_responder_close. */
SB_MUST_CHECK sb_result_t sb_responder_init(sb_responder_t *r, sb_bus_t *bus, const char *path,
                                            char *err, size_t errlen);
void sb_responder_close(sb_responder_t *r);
/* Re-reads the answers file; on success swaps it in, on error keeps the old answers and
 * writes why to err. Call it on the thread that runs sb_responder_handle, between messages. */
SB_MUST_CHECK sb_result_t sb_responder_reload(sb_responder_t *r, char *err, size_t errlen);

/* Checks what the responder relies on: turn id, conversation id, channel (a subject token).
 * *why (may be NULL) gets a static reason on failure. */
SB_MUST_CHECK sb_result_t sb_responder_check_turn(const sb_bot_turn_t *turn, const char **why);
/* Fills req from turn; strings are borrowed from turn. Locale: BotTurn.locale, else the
 * classifier's language, else the envelope's locale hint. */
void sb_responder_request(const sb_bot_turn_t *turn, sb_answer_request_t *req);
/* Writes into out (size n) a short code for an intent coming from the classifier, safe for
 * events: itself when it is 1-64 of [a-z0-9_], "none" when empty, "invalid" otherwise. */
void sb_responder_intent_code(const char *intent, char *out, size_t n);

/* The bus handler (sb_bus_handler_fn) for SB_BOT, ctx = sb_responder_t *. SB_E_INVALID for a
 * turn that can never be answered (terminated), SB_E_UNAVAILABLE when a publish was not acked
 * (redelivered), SB_OK once the Outbound and its Event are stored. Pull-loop thread. */
sb_result_t sb_responder_handle(void *ctx, const sb_bus_msg_t *msg);

#endif
