/* Unit tests for core/src/store.c against real LMDB files in temporary directories: put, get,
 * delete and cursor order with big-endian keys; aborted writes leave nothing; the map grows
 * while writing 20 MiB; the maximum map size gives SB_E_FULL and the store stays usable;
 * data survives a reopen; a map grown by another process is adopted (MDB_MAP_RESIZED); reads
 * on another thread stay valid while the writer grows the map. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sb/store.h"

#define KIB 1024u
#define MIB (1024u * 1024u)
#define VAL_SIZE (64 * KIB)

static char tmpdir[256];
static const char *const dbs[] = {"turns", "dedup", "meta", NULL};

static int make_tmpdir(void **state)
{
    (void)state;
    const char *base = getenv("TMPDIR");
    snprintf(tmpdir, sizeof tmpdir, "%s/sb-test-store-XXXXXX", base != NULL ? base : "/tmp");
    return mkdtemp(tmpdir) != NULL ? 0 : -1;
}

static int remove_tmpdir(void **state)
{
    (void)state;
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

static void store_path(char *out, size_t n, const char *name)
{
    snprintf(out, n, "%s/%s", tmpdir, name);
}

/* ---- basic operations ---- */

typedef struct basic_ctx {
    sb_store_db_t db;
    const uint64_t *keys;
    size_t nkeys;
    uint64_t expect_first; /* after the sweep */
    size_t expect_left;
} basic_ctx_t;

static sb_result_t put_keys(sb_store_txn_t *txn, void *arg)
{
    basic_ctx_t *c = arg;
    for (size_t i = 0; i < c->nkeys; i++) {
        uint8_t k[8];
        sb_store_be64(k, c->keys[i]);
        char v[32];
        int n = snprintf(v, sizeof v, "v%llu", (unsigned long long)c->keys[i]);
        sb_result_t r = sb_store_put(txn, c->db, k, 8, v, (size_t)n);
        if (r != SB_OK) return r;
    }
    return SB_OK;
}

static sb_result_t check_basic(sb_store_txn_t *txn, void *arg)
{
    basic_ctx_t *c = arg;
    uint8_t k[8];
    sb_store_val_t v;

    sb_store_be64(k, 300);
    assert_int_equal(sb_store_get(txn, c->db, k, 8, &v), SB_OK);
    assert_int_equal(v.len, 4);
    assert_memory_equal(v.data, "v300", 4);
    sb_store_be64(k, 301); /* keys are multiples of 3 */
    assert_int_equal(sb_store_get(txn, c->db, k, 8, &v), SB_E_NOT_FOUND);

    /* Ascending order over big-endian keys, whatever the insertion order. */
    sb_store_cursor_t *cur = NULL;
    assert_int_equal(sb_store_cursor_open(txn, c->db, &cur), SB_OK);
    sb_store_val_t kv;
    uint64_t prev = 0, count = 0;
    sb_result_t r = sb_store_cursor_seek(cur, NULL, 0, &kv, &v);
    while (r == SB_OK) {
        assert_int_equal(kv.len, 8);
        uint64_t key = sb_store_from_be64(kv.data);
        if (count > 0) assert_true(key > prev);
        prev = key;
        count++;
        r = sb_store_cursor_next(cur, &kv, &v);
    }
    assert_int_equal(r, SB_E_NOT_FOUND);
    assert_int_equal(count, c->nkeys);
    assert_int_equal(prev, 1ull << 40);

    /* Seek lands on the first key >= the probe; then prev / last. */
    sb_store_be64(k, 250);
    assert_int_equal(sb_store_cursor_seek(cur, k, 8, &kv, &v), SB_OK);
    assert_int_equal(sb_store_from_be64(kv.data), 252);
    assert_memory_equal(v.data, "v252", 4);
    assert_int_equal(sb_store_cursor_prev(cur, &kv, NULL), SB_OK);
    assert_int_equal(sb_store_from_be64(kv.data), 249);
    assert_int_equal(sb_store_cursor_last(cur, &kv, &v), SB_OK);
    assert_int_equal(sb_store_from_be64(kv.data), 1ull << 40);
    assert_int_equal(sb_store_cursor_next(cur, &kv, &v), SB_E_NOT_FOUND);
    sb_store_be64(k, (1ull << 40) + 1);
    assert_int_equal(sb_store_cursor_seek(cur, k, 8, &kv, &v), SB_E_NOT_FOUND);
    sb_store_cursor_close(cur);

    /* Writes are refused in a read-only transaction. */
    assert_int_equal(sb_store_put(txn, c->db, k, 8, "x", 1), SB_E_INVALID);
    assert_int_equal(sb_store_del(txn, c->db, k, 8), SB_E_INVALID);
    return SB_OK;
}

/* The expiry-sweep pattern: delete every key below a bound through the cursor. */
static sb_result_t sweep_below_200(sb_store_txn_t *txn, void *arg)
{
    basic_ctx_t *c = arg;
    sb_store_cursor_t *cur = NULL;
    sb_result_t r = sb_store_cursor_open(txn, c->db, &cur);
    if (r != SB_OK) return r;
    sb_store_val_t k;
    r = sb_store_cursor_seek(cur, NULL, 0, &k, NULL);
    while (r == SB_OK && sb_store_from_be64(k.data) < 200) {
        r = sb_store_cursor_del(cur);
        if (r != SB_OK) break;
        r = sb_store_cursor_next(cur, &k, NULL);
    }
    sb_store_cursor_close(cur);
    return r == SB_E_NOT_FOUND || r == SB_OK ? SB_OK : r;
}

static sb_result_t check_after_sweep(sb_store_txn_t *txn, void *arg)
{
    basic_ctx_t *c = arg;
    sb_store_cursor_t *cur = NULL;
    assert_int_equal(sb_store_cursor_open(txn, c->db, &cur), SB_OK);
    sb_store_val_t k;
    assert_int_equal(sb_store_cursor_seek(cur, NULL, 0, &k, NULL), SB_OK);
    assert_int_equal(sb_store_from_be64(k.data), c->expect_first);
    size_t n = 1;
    while (sb_store_cursor_next(cur, &k, NULL) == SB_OK)
        n++;
    sb_store_cursor_close(cur);
    assert_int_equal(n, c->expect_left);
    return SB_OK;
}

static sb_result_t del_twice(sb_store_txn_t *txn, void *arg)
{
    basic_ctx_t *c = arg;
    uint8_t k[8];
    sb_store_be64(k, 300);
    assert_int_equal(sb_store_del(txn, c->db, k, 8), SB_OK);
    assert_int_equal(sb_store_del(txn, c->db, k, 8), SB_E_NOT_FOUND);
    sb_store_val_t v;
    assert_int_equal(sb_store_get(txn, c->db, k, 8, &v), SB_E_NOT_FOUND);
    /* key bounds */
    char big[600];
    memset(big, 'k', sizeof big);
    assert_int_equal(sb_store_put(txn, c->db, big, sizeof big, "x", 1), SB_E_TOO_LARGE);
    assert_int_equal(sb_store_put(txn, c->db, big, 0, "x", 1), SB_E_INVALID);
    /* empty values are fine (index entries) */
    assert_int_equal(sb_store_put(txn, c->db, "idx", 3, NULL, 0), SB_OK);
    assert_int_equal(sb_store_get(txn, c->db, "idx", 3, &v), SB_OK);
    assert_int_equal(v.len, 0);
    return sb_store_del(txn, c->db, "idx", 3);
}

static void test_basic_ops(void **state)
{
    (void)state;
    char dir[300];
    store_path(dir, sizeof dir, "a/b/basic"); /* nested: created on open */
    sb_store_t *st = NULL;
    assert_int_equal(sb_store_open(&st, dir, dbs, 1 * MIB, 8 * MIB), SB_OK);

    /* directory 0700, files 0600 */
    struct stat sbuf;
    assert_int_equal(stat(dir, &sbuf), 0);
    assert_int_equal(sbuf.st_mode & 0777, 0700);
    char file[400];
    snprintf(file, sizeof file, "%s/data.mdb", dir);
    assert_int_equal(stat(file, &sbuf), 0);
    assert_int_equal(sbuf.st_mode & 0077, 0);

    sb_store_db_t db, dedup;
    assert_int_equal(sb_store_db(st, "turns", &db), SB_OK);
    assert_int_equal(sb_store_db(st, "dedup", &dedup), SB_OK);
    assert_true(db != dedup);
    assert_int_equal(sb_store_db(st, "nope", &db), SB_E_NOT_FOUND);
    assert_int_equal(sb_store_db(st, "turns", &db), SB_OK);

    /* keys 0, 3, ..., 1197 and 2^40, inserted in a scrambled order */
    uint64_t keys[401];
    for (size_t i = 0; i < 400; i++)
        keys[i] = (i * 7919) % 400 * 3;
    keys[400] = 1ull << 40;
    basic_ctx_t c = {.db = db, .keys = keys, .nkeys = 401};
    assert_int_equal(sb_store_write(st, put_keys, &c), SB_OK);
    assert_int_equal(sb_store_read(st, check_basic, &c), SB_OK);

    assert_int_equal(sb_store_write(st, del_twice, &c), SB_OK);
    assert_int_equal(sb_store_write(st, sweep_below_200, &c), SB_OK);
    /* the sweep deleted 0, 3, ..., 198 (67 keys), del_twice deleted 300 */
    c.expect_first = 201;
    c.expect_left = 401 - 67 - 1;
    assert_int_equal(sb_store_read(st, check_after_sweep, &c), SB_OK);
    sb_store_close(st);
}

static sb_result_t dedup_is_empty(sb_store_txn_t *txn, void *arg)
{
    sb_store_db_t db = *(sb_store_db_t *)arg;
    sb_store_cursor_t *cur = NULL;
    sb_result_t r = sb_store_cursor_open(txn, db, &cur);
    if (r != SB_OK) return r;
    sb_store_val_t k;
    r = sb_store_cursor_seek(cur, NULL, 0, &k, NULL);
    sb_store_cursor_close(cur);
    return r;
}

static void test_be64_and_separate_dbs(void **state)
{
    (void)state;
    uint8_t b[8];
    sb_store_be64(b, 0x0102030405060708ull);
    const uint8_t want[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    assert_memory_equal(b, want, 8);
    assert_int_equal(sb_store_from_be64(b), 0x0102030405060708ull);
    sb_store_be64(b, UINT64_MAX);
    assert_int_equal(sb_store_from_be64(b), UINT64_MAX);

    char dir[300];
    store_path(dir, sizeof dir, "sep");
    sb_store_t *st = NULL;
    assert_int_equal(sb_store_open(&st, dir, dbs, 1 * MIB, 8 * MIB), SB_OK);
    sb_store_db_t turns, dedup;
    assert_int_equal(sb_store_db(st, "turns", &turns), SB_OK);
    assert_int_equal(sb_store_db(st, "dedup", &dedup), SB_OK);
    uint64_t keys[] = {1, 2, 3};
    basic_ctx_t c = {.db = turns, .keys = keys, .nkeys = 3};
    assert_int_equal(sb_store_write(st, put_keys, &c), SB_OK);
    assert_int_equal(sb_store_read(st, dedup_is_empty, &dedup), SB_E_NOT_FOUND);
    assert_int_equal(sb_store_read(st, dedup_is_empty, &turns), SB_OK);
    sb_store_close(st);

    /* bad arguments */
    assert_int_equal(sb_store_open(&st, dir, dbs, 0, 8 * MIB), SB_E_CONFIG);
    assert_int_equal(sb_store_open(&st, dir, dbs, 8 * MIB, 1 * MIB), SB_E_CONFIG);
}

/* ---- aborted writes ---- */

static sb_result_t put_then_fail(sb_store_txn_t *txn, void *arg)
{
    sb_store_db_t db = *(sb_store_db_t *)arg;
    assert_int_equal(sb_store_put(txn, db, "k1", 2, "v1", 2), SB_OK);
    assert_int_equal(sb_store_put(txn, db, "k2", 2, "v2", 2), SB_OK);
    return SB_E_INVALID;
}

static sb_result_t put_k0(sb_store_txn_t *txn, void *arg)
{
    sb_store_db_t db = *(sb_store_db_t *)arg;
    return sb_store_put(txn, db, "k0", 2, "v0", 2);
}

static sb_result_t del_k0_then_fail(sb_store_txn_t *txn, void *arg)
{
    sb_store_db_t db = *(sb_store_db_t *)arg;
    assert_int_equal(sb_store_del(txn, db, "k0", 2), SB_OK);
    return SB_E_DUPLICATE;
}

static sb_result_t check_aborted(sb_store_txn_t *txn, void *arg)
{
    sb_store_db_t db = *(sb_store_db_t *)arg;
    sb_store_val_t v;
    assert_int_equal(sb_store_get(txn, db, "k1", 2, &v), SB_E_NOT_FOUND);
    assert_int_equal(sb_store_get(txn, db, "k2", 2, &v), SB_E_NOT_FOUND);
    assert_int_equal(sb_store_get(txn, db, "k0", 2, &v), SB_OK);
    assert_memory_equal(v.data, "v0", 2);
    return SB_OK;
}

static void test_aborted_write(void **state)
{
    (void)state;
    char dir[300];
    store_path(dir, sizeof dir, "abort");
    sb_store_t *st = NULL;
    assert_int_equal(sb_store_open(&st, dir, dbs, 1 * MIB, 8 * MIB), SB_OK);
    sb_store_db_t db;
    assert_int_equal(sb_store_db(st, "meta", &db), SB_OK);
    assert_int_equal(sb_store_write(st, put_k0, &db), SB_OK);
    assert_int_equal(sb_store_write(st, put_then_fail, &db), SB_E_INVALID);
    assert_int_equal(sb_store_write(st, del_k0_then_fail, &db), SB_E_DUPLICATE);
    assert_int_equal(sb_store_read(st, check_aborted, &db), SB_OK);
    sb_store_close(st);
}

/* ---- growth, maximum, reopen ---- */

typedef struct batch_ctx {
    sb_store_db_t db;
    uint64_t first;
    size_t count;
    uint8_t *val;
    int calls; /* how many times fn ran (retries after growth) */
} batch_ctx_t;

static void fill_value(uint8_t *val, uint64_t key)
{
    for (size_t i = 0; i < VAL_SIZE; i++)
        val[i] = (uint8_t)(key * 31 + i / 256);
}

static sb_result_t put_batch(sb_store_txn_t *txn, void *arg)
{
    batch_ctx_t *c = arg;
    c->calls++;
    for (size_t i = 0; i < c->count; i++) {
        uint8_t k[8];
        sb_store_be64(k, c->first + i);
        fill_value(c->val, c->first + i);
        sb_result_t r = sb_store_put(txn, c->db, k, 8, c->val, VAL_SIZE);
        if (r != SB_OK) return r;
    }
    return SB_OK;
}

typedef struct verify_ctx {
    sb_store_db_t db;
    uint64_t n;
    uint8_t *val;
} verify_ctx_t;

/* Every key 0..n-1 is present with its value, and nothing else. */
static sb_result_t verify_all(sb_store_txn_t *txn, void *arg)
{
    verify_ctx_t *c = arg;
    sb_store_cursor_t *cur = NULL;
    sb_result_t r = sb_store_cursor_open(txn, c->db, &cur);
    if (r != SB_OK) return r;
    sb_store_val_t k, v;
    uint64_t seen = 0;
    for (r = sb_store_cursor_seek(cur, NULL, 0, &k, &v); r == SB_OK;
         r = sb_store_cursor_next(cur, &k, &v)) {
        if (k.len != 8) continue; /* not a batch key */
        uint64_t key = sb_store_from_be64(k.data);
        if (key != seen || v.len != VAL_SIZE) break;
        fill_value(c->val, key);
        if (memcmp(v.data, c->val, VAL_SIZE) != 0) break;
        seen++;
    }
    sb_store_cursor_close(cur);
    if (r != SB_E_NOT_FOUND) return SB_E_INTERNAL;
    return seen == c->n ? SB_OK : SB_E_NOT_FOUND;
}

static void test_map_growth_and_reopen(void **state)
{
    (void)state;
    char dir[300];
    store_path(dir, sizeof dir, "grow");
    sb_store_t *st = NULL;
    assert_int_equal(sb_store_open(&st, dir, dbs, 1 * MIB, 64 * MIB), SB_OK);
    size_t initial = sb_store_map_size(st);
    assert_true(initial >= 1 * MIB && initial < 2 * MIB);
    sb_store_db_t db;
    assert_int_equal(sb_store_db(st, "turns", &db), SB_OK);

    uint8_t *val = malloc(VAL_SIZE);
    assert_non_null(val);
    /* 20 batches of 16 x 64 KiB = 20 MiB of values */
    batch_ctx_t c = {.db = db, .count = 16, .val = val};
    int total_calls = 0;
    for (int b = 0; b < 20; b++) {
        c.first = (uint64_t)b * 16;
        c.calls = 0;
        assert_int_equal(sb_store_write(st, put_batch, &c), SB_OK);
        total_calls += c.calls;
    }
    /* the map grew, and growth re-ran fn from scratch at least once */
    size_t grown = sb_store_map_size(st);
    assert_true(grown >= 20 * MIB);
    assert_true(grown <= 64 * MIB);
    assert_true(total_calls > 20);

    verify_ctx_t vc = {.db = db, .n = 320, .val = val};
    assert_int_equal(sb_store_read(st, verify_all, &vc), SB_OK);
    sb_store_close(st);

    /* reopen with the small initial size: the data is there, writes still grow the map */
    st = NULL;
    assert_int_equal(sb_store_open(&st, dir, dbs, 1 * MIB, 64 * MIB), SB_OK);
    assert_int_equal(sb_store_db(st, "turns", &db), SB_OK);
    vc.db = db;
    assert_int_equal(sb_store_read(st, verify_all, &vc), SB_OK);
    c.db = db;
    c.first = 320;
    assert_int_equal(sb_store_write(st, put_batch, &c), SB_OK);
    vc.n = 336;
    assert_int_equal(sb_store_read(st, verify_all, &vc), SB_OK);
    sb_store_close(st);
    free(val);
}

static sb_result_t put_small(sb_store_txn_t *txn, void *arg)
{
    sb_store_db_t db = *(sb_store_db_t *)arg;
    return sb_store_put(txn, db, "small", 5, "still usable", 12);
}

static sb_result_t check_small(sb_store_txn_t *txn, void *arg)
{
    sb_store_db_t db = *(sb_store_db_t *)arg;
    sb_store_val_t v;
    sb_result_t r = sb_store_get(txn, db, "small", 5, &v);
    if (r != SB_OK) return r;
    return v.len == 12 && memcmp(v.data, "still usable", 12) == 0 ? SB_OK : SB_E_INTERNAL;
}

static sb_result_t del_two(sb_store_txn_t *txn, void *arg)
{
    sb_store_db_t db = *(sb_store_db_t *)arg;
    uint8_t k[8];
    for (uint64_t i = 0; i < 2; i++) {
        sb_store_be64(k, i);
        sb_result_t r = sb_store_del(txn, db, k, 8);
        if (r != SB_OK) return r;
    }
    return SB_OK;
}

static void test_max_map_size_full(void **state)
{
    (void)state;
    char dir[300];
    store_path(dir, sizeof dir, "full");
    sb_store_t *st = NULL;
    assert_int_equal(sb_store_open(&st, dir, dbs, 1 * MIB, 4 * MIB), SB_OK);
    sb_store_db_t db;
    assert_int_equal(sb_store_db(st, "turns", &db), SB_OK);
    uint8_t *val = malloc(VAL_SIZE);
    assert_non_null(val);

    batch_ctx_t c = {.db = db, .count = 4, .val = val};
    sb_result_t r = SB_OK;
    int batches = 0;
    for (; batches < 100; batches++) {
        c.first = (uint64_t)batches * 4;
        r = sb_store_write(st, put_batch, &c);
        if (r != SB_OK) break;
    }
    assert_int_equal(r, SB_E_FULL);
    assert_true(batches > 0);
    assert_int_equal(sb_store_map_size(st), 4 * MIB);

    /* everything committed before is intact, the refused batch left nothing */
    verify_ctx_t vc = {.db = db, .n = (uint64_t)batches * 4, .val = val};
    assert_int_equal(sb_store_read(st, verify_all, &vc), SB_OK);

    /* still usable: a small write, then freeing space makes room for a big one again */
    assert_int_equal(sb_store_write(st, put_small, &db), SB_OK);
    assert_int_equal(sb_store_read(st, check_small, &db), SB_OK);
    assert_int_equal(sb_store_write(st, del_two, &db), SB_OK);
    c.first = 0;
    c.count = 1;
    assert_int_equal(sb_store_write(st, put_batch, &c), SB_OK);
    sb_store_close(st);
    free(val);
}

/* ---- another process grows the map (MDB_MAP_RESIZED) ---- */

static int child_grow(const char *dir)
{
    sb_store_t *st = NULL;
    if (sb_store_open(&st, dir, dbs, 1 * MIB, 64 * MIB) != SB_OK) return 2;
    sb_store_db_t db;
    if (sb_store_db(st, "turns", &db) != SB_OK) return 3;
    uint8_t *val = malloc(VAL_SIZE);
    if (val == NULL) return 4;
    batch_ctx_t c = {.db = db, .count = 16, .val = val};
    for (int b = 0; b < 8; b++) {
        c.first = (uint64_t)b * 16;
        if (sb_store_write(st, put_batch, &c) != SB_OK) return 5;
    }
    free(val);
    sb_store_close(st);
    return 0;
}

static void test_map_resized_by_other_process(void **state)
{
    (void)state;
    char dir[300];
    store_path(dir, sizeof dir, "resized");
    sb_store_t *st = NULL;
    assert_int_equal(sb_store_open(&st, dir, dbs, 1 * MIB, 64 * MIB), SB_OK);
    sb_store_db_t db;
    assert_int_equal(sb_store_db(st, "meta", &db), SB_OK);
    assert_int_equal(sb_store_write(st, put_small, &db), SB_OK);
    size_t before = sb_store_map_size(st);

    /* A fresh process (this binary re-executed) writes 8 MiB into the same environment. */
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        execl("/proc/self/exe", "test_store", "--grow-child", dir, (char *)NULL);
        _exit(127);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);

    /* This process adopts the larger map and sees the other process's data. */
    uint8_t *val = malloc(VAL_SIZE);
    assert_non_null(val);
    sb_store_db_t turns;
    assert_int_equal(sb_store_db(st, "turns", &turns), SB_OK);
    verify_ctx_t vc = {.db = turns, .n = 128, .val = val};
    assert_int_equal(sb_store_read(st, verify_all, &vc), SB_OK);
    assert_true(sb_store_map_size(st) > before);
    assert_int_equal(sb_store_write(st, put_small, &db), SB_OK);
    assert_int_equal(sb_store_read(st, check_small, &db), SB_OK);
    free(val);
    sb_store_close(st);
}

/* ---- readers on another thread while the writer grows the map ---- */

typedef struct reader_ctx {
    sb_store_t *st;
    sb_store_db_t db;
    atomic_bool stop;
    atomic_int reads;
    atomic_int failures;
} reader_ctx_t;

static sb_result_t read_first_value(sb_store_txn_t *txn, void *arg)
{
    reader_ctx_t *c = arg;
    uint8_t k[8];
    sb_store_be64(k, 0);
    sb_store_val_t v;
    sb_result_t r = sb_store_get(txn, c->db, k, 8, &v);
    if (r != SB_OK) return r;
    /* touch every byte: a remap under our feet would fault here */
    const uint8_t *p = v.data;
    unsigned sum = 0;
    for (size_t i = 0; i < v.len; i++)
        sum += p[i];
    return v.len == VAL_SIZE && sum > 0 ? SB_OK : SB_E_INTERNAL;
}

static void *reader_main(void *arg)
{
    reader_ctx_t *c = arg;
    while (!atomic_load(&c->stop)) {
        if (sb_store_read(c->st, read_first_value, c) != SB_OK) atomic_fetch_add(&c->failures, 1);
        atomic_fetch_add(&c->reads, 1);
    }
    return NULL;
}

static void test_reads_during_growth(void **state)
{
    (void)state;
    char dir[300];
    store_path(dir, sizeof dir, "concurrent");
    sb_store_t *st = NULL;
    assert_int_equal(sb_store_open(&st, dir, dbs, 1 * MIB, 64 * MIB), SB_OK);
    sb_store_db_t db;
    assert_int_equal(sb_store_db(st, "turns", &db), SB_OK);
    uint8_t *val = malloc(VAL_SIZE);
    assert_non_null(val);
    batch_ctx_t c = {.db = db, .count = 1, .first = 0, .val = val};
    assert_int_equal(sb_store_write(st, put_batch, &c), SB_OK);

    reader_ctx_t rc = {.st = st, .db = db};
    atomic_init(&rc.stop, false);
    atomic_init(&rc.reads, 0);
    atomic_init(&rc.failures, 0);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, reader_main, &rc), 0);
    c.count = 8;
    size_t before = sb_store_map_size(st);
    for (int b = 0; b < 10; b++) {
        c.first = 1 + (uint64_t)b * 8;
        assert_int_equal(sb_store_write(st, put_batch, &c), SB_OK);
    }
    atomic_store(&rc.stop, true);
    assert_int_equal(pthread_join(th, NULL), 0);
    assert_true(sb_store_map_size(st) > before);
    assert_int_equal(atomic_load(&rc.failures), 0);
    assert_true(atomic_load(&rc.reads) > 0);
    verify_ctx_t vc = {.db = db, .n = 81, .val = val};
    assert_int_equal(sb_store_read(st, verify_all, &vc), SB_OK);
    sb_store_close(st);
    free(val);
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--grow-child") == 0) return child_grow(argv[2]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_basic_ops),
        cmocka_unit_test(test_be64_and_separate_dbs),
        cmocka_unit_test(test_aborted_write),
        cmocka_unit_test(test_map_growth_and_reopen),
        cmocka_unit_test(test_max_map_size_full),
        cmocka_unit_test(test_map_resized_by_other_process),
        cmocka_unit_test(test_reads_during_growth),
    };
    return cmocka_run_group_tests(tests, make_tmpdir, remove_tmpdir);
}
