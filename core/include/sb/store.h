/* The store: Switchboard's only door to LMDB (lmdb.h is included nowhere else). One
 * environment, named databases, write transactions run through sb_store_write which grows the
 * map and retries when it fills; a full disk is an error that is reported, never a crash. */
#ifndef SB_STORE_H
#define SB_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "result.h"

typedef struct sb_store sb_store_t;
typedef struct sb_store_txn sb_store_txn_t;
typedef struct sb_store_cursor sb_store_cursor_t;
typedef unsigned int sb_store_db_t;

/* A value borrowed from the store: valid until its transaction ends. Copy what you keep. */
typedef struct sb_store_val {
    const void *data;
    size_t len;
} sb_store_val_t;

/* Opens (creating) the environment in directory dir with the given named databases
 * (NULL-terminated list of names, at most 32). map_size and max_map_size in bytes; the map
 * grows ×1.5 up to max_map_size when full. The caller owns *out. */
SB_MUST_CHECK sb_result_t sb_store_open(sb_store_t **out, const char *dir,
                                        const char *const *db_names, size_t map_size,
                                        size_t max_map_size);
void sb_store_close(sb_store_t *st);
/* The handle of a named database given at open, or SB_E_NOT_FOUND. */
SB_MUST_CHECK sb_result_t sb_store_db(sb_store_t *st, const char *name, sb_store_db_t *out);
/* Current map size in bytes (for metrics). */
size_t sb_store_map_size(const sb_store_t *st);

/* Runs fn in one write transaction and commits it if fn returns SB_OK; aborts it otherwise and
 * returns fn's result. When the map is full, the transaction is aborted, the map grown and fn
 * called again from the start: fn must only touch the store (no side effects elsewhere).
 * Once the map has reached max_map_size the result is SB_E_FULL and the store stays usable.
 * A full disk (ENOSPC) is SB_E_IO. Commits are durable (fsync) when this returns SB_OK.
 * One writer at a time (serialised inside the process); call from the thread that owns the
 * store's writes. fn must not call sb_store_write or sb_store_read itself (no nesting), and
 * cursors opened in fn must be closed in fn (leftovers are closed with a warning). */
typedef sb_result_t (*sb_store_write_fn)(sb_store_txn_t *txn, void *ctx);
SB_MUST_CHECK sb_result_t sb_store_write(sb_store_t *st, sb_store_write_fn fn, void *ctx);
/* Runs fn in a read-only transaction. Values are valid only inside fn. Any thread, several at
 * once; put/del inside it return SB_E_INVALID. */
SB_MUST_CHECK sb_result_t sb_store_read(sb_store_t *st, sb_store_write_fn fn, void *ctx);

SB_MUST_CHECK sb_result_t sb_store_get(sb_store_txn_t *txn, sb_store_db_t db, const void *key,
                                       size_t klen, sb_store_val_t *out);
SB_MUST_CHECK sb_result_t sb_store_put(sb_store_txn_t *txn, sb_store_db_t db, const void *key,
                                       size_t klen, const void *val, size_t vlen);
/* Keys: 1..511 bytes (SB_E_INVALID when empty, SB_E_TOO_LARGE when longer); values of any
 * size, empty allowed. put overwrites. Deleting a missing key is SB_E_NOT_FOUND. Outputs of
 * get and of the cursor functions are borrowed until the transaction ends. */
SB_MUST_CHECK sb_result_t sb_store_del(sb_store_txn_t *txn, sb_store_db_t db, const void *key,
                                       size_t klen);

/* Iterates keys >= start in order; sb_store_cursor_next returns SB_E_NOT_FOUND at the end.
 * seek with key NULL / klen 0 goes to the first entry. k and v outputs may be NULL. A cursor
 * belongs to its transaction: close it before fn returns. */
SB_MUST_CHECK sb_result_t sb_store_cursor_open(sb_store_txn_t *txn, sb_store_db_t db,
                                               sb_store_cursor_t **out);
SB_MUST_CHECK sb_result_t sb_store_cursor_seek(sb_store_cursor_t *c, const void *key, size_t klen,
                                               sb_store_val_t *k, sb_store_val_t *v);
SB_MUST_CHECK sb_result_t sb_store_cursor_next(sb_store_cursor_t *c, sb_store_val_t *k,
                                               sb_store_val_t *v);
SB_MUST_CHECK sb_result_t sb_store_cursor_last(sb_store_cursor_t *c, sb_store_val_t *k,
                                               sb_store_val_t *v);
SB_MUST_CHECK sb_result_t sb_store_cursor_prev(sb_store_cursor_t *c, sb_store_val_t *k,
                                               sb_store_val_t *v);
/* Deletes the entry under the cursor (write transactions); a following
 * sb_store_cursor_next returns the entry after the deleted one. */
SB_MUST_CHECK sb_result_t sb_store_cursor_del(sb_store_cursor_t *c);
void sb_store_cursor_close(sb_store_cursor_t *c);

/* Big-endian encoding so integer keys sort by value. */
void sb_store_be64(uint8_t out[8], uint64_t v);
uint64_t sb_store_from_be64(const uint8_t in[8]);

#endif
