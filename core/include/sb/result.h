/* One result type for all of Switchboard. Foreign error codes (nats, LMDB, libuv, sodium) are
 * converted once, at the edge of the core module that wraps them. */
#ifndef SB_RESULT_H
#define SB_RESULT_H

#define SB_MUST_CHECK __attribute__((warn_unused_result))

typedef enum sb_result {
    SB_OK = 0,
    SB_E_INVALID,   /* malformed input: answered with a clear error, never retried */
    SB_E_TOO_LARGE, /* a length from outside exceeds its configured bound */
    SB_E_AUTH,      /* signature or token does not verify */
    SB_E_NOT_FOUND,
    SB_E_EXISTS,
    SB_E_DUPLICATE,   /* already seen: the work is done, ack and move on */
    SB_E_UNAVAILABLE, /* a dependency (NATS, disk) is down: retry later */
    SB_E_TIMEOUT,
    SB_E_IO,
    SB_E_CRYPTO, /* decryption or authentication of ciphertext failed */
    SB_E_FULL,   /* store or queue full */
    SB_E_CONFIG,
    SB_E_INTERNAL,
} sb_result_t;

/* Returns a static, human-readable name for r ("invalid input", ...). Any thread. */
const char *sb_result_str(sb_result_t r);

#endif
