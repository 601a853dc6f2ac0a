/* The escalation engine: who answers a conversation (the bot or a human) and what goes on the
 * bus because of it. One message in (a Classification from sb.nlu.<p> or an AgentCommand from
 * sb.agent.<verb>.<p>) runs: read the state in a read transaction → compute the outputs and
 * the writes (esc_batch_t) → publish every output with a deterministic msg_id → commit the
 * writes in one transaction → SB_OK (the bus acks). A crash anywhere before the commit redoes
 * the work on redelivery; JetStream drops the republished duplicates by msg_id, the dedup
 * table in the vault drops the message itself once it was committed.
 *
 * Publishing goes through a callback so that the engine runs without NATS in unit tests.
 * Threads: one thread owns an engine (it is the vault's only writer). */
#ifndef ESC_CONVERSATION_H
#define ESC_CONVERSATION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sb/codec.h"
#include "sb/metrics.h"
#include "sb/result.h"
#include "sb/seal.h"
#include "vault.h"

/* The decision rules, from escalation.* in the config. */
typedef struct esc_policy {
    double confidence_threshold; /* below: REASON_LOW_CONFIDENCE */
    double ambiguity_margin;     /* top1 - top2 below: REASON_AMBIGUOUS */
    uint32_t max_fallbacks;      /* consecutive fallbacks reaching it: REASON_REPEATED_FALLBACK */
    uint32_t transcript_turns;   /* turns in an Escalation */
    char default_team[ESC_ID_MAX + 1];
    uint32_t partitions; /* nats.partitions */
} esc_policy_t;

/* Publishes len bytes on subject with Nats-Msg-Id msg_id and waits for the ack. SB_OK or an
 * error (the message is then redelivered). data is borrowed. */
typedef sb_result_t (*esc_publish_fn)(void *ctx, const char *subject, const uint8_t *data,
                                      size_t len, const char *msg_id);

typedef struct esc_engine esc_engine_t;

typedef struct esc_engine_config {
    esc_vault_t *vault; /* borrowed; must outlive the engine */
    esc_policy_t policy;
    const uint8_t *contact_pk; /* X25519 pair that opens Envelope.sealed_contact (copied) */
    const uint8_t *contact_sk;
    const uint8_t *recipient_pk; /* egress key that Recipients are sealed to (copied) */
    esc_publish_fn publish;
    void *publish_ctx;
} esc_engine_config_t;

/* Creates an engine; the caller owns *out. Registers the sb_escalation_* metrics. */
SB_MUST_CHECK sb_result_t esc_engine_create(esc_engine_t **out, const esc_engine_config_t *cfg);
/* Wipes the keys and frees. Safe with NULL. */
void esc_engine_destroy(esc_engine_t *e);

/* Handles one Classification (bytes from SB_NLU). Returns SB_OK (done), SB_E_DUPLICATE (seen
 * before: nothing done), SB_E_INVALID (poison: malformed, unsealable contact), SB_E_UNAVAILABLE
 * (a publish failed; nothing committed) or another error (nothing committed). */
SB_MUST_CHECK sb_result_t esc_engine_on_classification(esc_engine_t *e, const void *data,
                                                       size_t len, int64_t now_ms);
/* Handles one AgentCommand (bytes from SB_AGENT), same verdicts. A command that is not allowed
 * (not the owner, nothing to claim) is SB_OK with an EVENT_COMMAND_REJECTED published. */
SB_MUST_CHECK sb_result_t esc_engine_on_command(esc_engine_t *e, const void *data, size_t len,
                                                int64_t now_ms);

/* ---- the pure decision rules (no store, no bus) ---- */

/* Whether an intent is a fallback (the bot has no answer): "", "fallback", "unknown", "none",
 * "out_of_scope". */
bool esc_is_fallback_intent(const char *intent);
/* Escalation reasons for classification c in a conversation of the bot after `fallbacks`
 * consecutive fallbacks (including this message). Writes up to ESC_MAX_REASONS
 * Switchboard__V1__EscalationReason values to out; returns how many (0 = the bot answers).
 * "human_handoff" always escalates (REASON_EXPLICIT_REQUEST); a classification decided by a
 * business rule is not second-guessed on confidence or margin. */
size_t esc_decide(const esc_policy_t *p, const sb_classification_t *c, uint32_t fallbacks,
                  int out[ESC_MAX_REASONS]);

typedef enum esc_cmd_outcome {
    ESC_CMD_APPLIED, /* state changed (or a reply is to be sent) */
    ESC_CMD_NOOP,    /* already so (e.g. a second claim by the owner) */
    ESC_CMD_REJECTED /* not allowed: *why is a short code */
} esc_cmd_outcome_t;

/* Applies an agent command to s (the state machine; bot → queued → assigned → bot):
 *   claim    queued → assigned to agent; already that agent's: noop; another's: rejected
 *   reply    only the owner (state unchanged; the caller sends the Outbound)
 *   resolve  owner → bot (resume_pending set)
 *   release  owner → queued
 *   transfer owner, or anyone while queued → queued on cmd->team (assigned when to_agent_id)
 * Everything on a conversation of the bot is rejected ("not_escalated"). now_ms stamps the
 * assignment. *why (may be NULL) receives a static code when rejected. */
esc_cmd_outcome_t esc_transition(esc_state_t *s, const sb_agent_command_t *cmd, int64_t now_ms,
                                 const char **why);

/* Masks for consoles: "A** F******", "+1 555 *** **76", "j***@e******.com". Each writes a
 * NUL-terminated string into out (size n). */
void esc_mask_name(char *out, size_t n, const char *name);
void esc_mask_phone(char *out, size_t n, const char *phone);
void esc_mask_email(char *out, size_t n, const char *email);
/* The masked name, phone and email joined by ", " (empty parts left out). */
void esc_mask_contact(char *out, size_t n, const char *name, const char *phone, const char *email);

#endif
