/* The store: the only file that includes <lmdb.h>. The escalation worker keeps its state here
 * (conversations, turns, contacts, wrapped contact keys, consent, dedup, expiry index, queues).
 *
 * Data flow: sb_store_open creates the directory (0700) and one MDB_env (files 0600, default
 * durability: every commit is fsynced), opens all named databases once and checks for stale
 * readers. Writes go through sb_store_write: begin a write transaction, run the caller's fn,
 * commit. When LMDB reports MDB_MAP_FULL (from a put, a delete or the commit) the transaction
 * is aborted, the map grown ×1.5 up to max_map_size, and fn run again from scratch. Reads run
 * fn inside a read-only transaction; values are borrowed from the map until it ends.
 *
 * Every LMDB error code is converted here, once, to an sb_result_t and logged (module=store)
 * with LMDB's text, the operation and the database name; keys and values are never logged.
 *
 * Locking: LMDB allows one writer per environment; write_mu serialises writers inside this
 * process so that a resize never races a write transaction. Resizing remaps the file, which
 * would pull the map out from under readers on other threads, so read transactions hold
 * map_lock shared and a resize takes it exclusively (lock order: write_mu, then map_lock). */
#include "sb/store.h"

#include <errno.h>
#include <lmdb.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sb/log.h"
#include "sb/util.h"

#define MAX_DBS 32
#define MAX_READERS 126
#define RESIZED_RETRIES 8 /* MDB_MAP_RESIZED loops: another process keeps growing the map */

struct sb_store {
    MDB_env *env;
    size_t max_map_size;
    size_t page;
    size_t ndbs;
    char *names[MAX_DBS];
    MDB_dbi dbis[MAX_DBS];
    pthread_mutex_t write_mu;  /* one sb_store_write at a time in this process */
    pthread_rwlock_t map_lock; /* shared by read transactions, exclusive for a resize */
};

struct sb_store_txn {
    sb_store_t *st;
    MDB_txn *txn;
    bool write;
    bool map_full;              /* an operation hit MDB_MAP_FULL: grow and run fn again */
    sb_store_cursor_t *cursors; /* still open; closed at transaction end */
};

struct sb_store_cursor {
    sb_store_txn_t *txn;
    MDB_cursor *cur;
    MDB_dbi dbi;
    sb_store_cursor_t *next;
};

static const char *db_name(const sb_store_t *st, MDB_dbi dbi)
{
    for (size_t i = 0; i < st->ndbs; i++)
        if (st->dbis[i] == dbi) return st->names[i];
    return "-";
}

/* The one place where LMDB codes become sb_result_t. MDB_NOTFOUND is an outcome, not a
 * failure, and is not logged; MDB_MAP_FULL is handled by growth and logged there. */
static sb_result_t convert(int rc, const char *op, const char *db)
{
    sb_result_t r;
    sb_log_level_t level = SB_LOG_ERROR;
    switch (rc) {
    case MDB_SUCCESS:
        return SB_OK;
    case MDB_NOTFOUND:
        return SB_E_NOT_FOUND;
    case MDB_KEYEXIST:
        r = SB_E_EXISTS;
        level = SB_LOG_WARN;
        break;
    case MDB_MAP_FULL:
        r = SB_E_FULL;
        level = SB_LOG_DEBUG;
        break;
    case MDB_TXN_FULL:
    case MDB_READERS_FULL:
    case MDB_DBS_FULL:
    case MDB_CURSOR_FULL:
        r = SB_E_FULL;
        break;
    case MDB_BAD_VALSIZE:
        r = SB_E_TOO_LARGE;
        level = SB_LOG_WARN;
        break;
    case MDB_MAP_RESIZED:
        r = SB_E_UNAVAILABLE;
        break;
    case EINVAL:
    case MDB_BAD_DBI:
    case MDB_BAD_TXN:
    case MDB_INCOMPATIBLE:
        r = SB_E_INVALID;
        break;
    case MDB_CORRUPTED:
    case MDB_PANIC:
    case MDB_PAGE_NOTFOUND:
    case MDB_VERSION_MISMATCH:
    case MDB_INVALID:
    case MDB_BAD_RSLOT:
    case ENOMEM:
        r = SB_E_INTERNAL;
        break;
    default: /* ENOSPC, EIO, EACCES, EDQUOT, EROFS, ...: the disk is the problem */
        r = SB_E_IO;
        break;
    }
    sb_log(level, "store", "lmdb failed op=%s db=%s rc=%d err=\"%s\" result=\"%s\"", op,
           db != NULL ? db : "-", rc, mdb_strerror(rc), sb_result_str(r));
    return r;
}

/* Converts an operation's code inside a transaction, remembering a full map for the retry. */
static sb_result_t txn_convert(sb_store_txn_t *t, int rc, const char *op, MDB_dbi dbi)
{
    if (rc == MDB_MAP_FULL) t->map_full = true;
    return convert(rc, op, db_name(t->st, dbi));
}

static size_t round_up(size_t n, size_t page)
{
    size_t r = n % page;
    if (r == 0) return n;
    if (n > SIZE_MAX - (page - r)) return SIZE_MAX - SIZE_MAX % page;
    return n + (page - r);
}

/* mkdir -p with mode 0700 for every directory it creates. */
static sb_result_t make_dirs(const char *dir)
{
    char *path = sb_xstrdup(dir);
    sb_result_t r = SB_OK;
    for (char *p = path + 1;; p++) {
        if (*p != '/' && *p != '\0') continue;
        char saved = *p;
        *p = '\0';
        if (mkdir(path, 0700) != 0 && errno != EEXIST) {
            SB_ERROR("store", "cannot create directory errno=%d err=\"%s\"", errno,
                     strerror(errno));
            r = SB_E_IO;
            break;
        }
        *p = saved;
        if (saved == '\0') break;
    }
    free(path);
    if (r != SB_OK) return r;
    struct stat sbuf;
    if (stat(dir, &sbuf) != 0 || !S_ISDIR(sbuf.st_mode)) {
        SB_ERROR("store", "store path is not a directory");
        return SB_E_IO;
    }
    return SB_OK;
}

static size_t current_map_size(const sb_store_t *st)
{
    MDB_envinfo info;
    if (mdb_env_info(st->env, &info) != 0) return 0;
    return info.me_mapsize;
}

/* Adopts a map size grown by another process. Caller holds write_mu; no transaction of this
 * process may be active, which map_lock (exclusive) guarantees for readers. */
static sb_result_t adopt_map_size(sb_store_t *st)
{
    pthread_rwlock_wrlock(&st->map_lock);
    int rc = mdb_env_set_mapsize(st->env, 0);
    pthread_rwlock_unlock(&st->map_lock);
    if (rc != 0) return convert(rc, "adopt_mapsize", NULL);
    SB_INFO("store", "map size adopted from another process map_size=%zu", current_map_size(st));
    return SB_OK;
}

/* Grows the map ×1.5 (page-rounded), capped at max_map_size. Caller holds write_mu and has
 * no transaction open. SB_E_FULL when the cap is already reached. */
static sb_result_t grow_map(sb_store_t *st)
{
    size_t cur = current_map_size(st);
    if (cur >= st->max_map_size) {
        SB_ERROR("store",
                 "map full at its maximum map_size=%zu max_map_size=%zu: write refused;"
                 " raise the maximum map size or delete data",
                 cur, st->max_map_size);
        return SB_E_FULL;
    }
    size_t next = cur > SIZE_MAX / 3 * 2 ? SIZE_MAX : cur + cur / 2;
    next = round_up(next, st->page);
    if (next > st->max_map_size) next = st->max_map_size;
    pthread_rwlock_wrlock(&st->map_lock);
    int rc = mdb_env_set_mapsize(st->env, next);
    pthread_rwlock_unlock(&st->map_lock);
    if (rc != 0) return convert(rc, "grow_mapsize", NULL);
    SB_INFO("store", "map grown from=%zu to=%zu max_map_size=%zu", cur, current_map_size(st),
            st->max_map_size);
    return SB_OK;
}

static sb_result_t open_dbs(sb_store_t *st)
{
    MDB_txn *txn = NULL;
    int rc = mdb_txn_begin(st->env, NULL, 0, &txn);
    if (rc != 0) return convert(rc, "txn_begin", NULL);
    for (size_t i = 0; i < st->ndbs; i++) {
        rc = mdb_dbi_open(txn, st->names[i], MDB_CREATE, &st->dbis[i]);
        if (rc != 0) {
            sb_result_t r = convert(rc, "dbi_open", st->names[i]);
            mdb_txn_abort(txn);
            return r;
        }
    }
    rc = mdb_txn_commit(txn);
    return convert(rc, "commit", NULL);
}

sb_result_t sb_store_open(sb_store_t **out, const char *dir, const char *const *db_names,
                          size_t map_size, size_t max_map_size)
{
    if (out == NULL || dir == NULL || dir[0] == '\0') return SB_E_INVALID;
    if (map_size == 0 || max_map_size < map_size) {
        SB_ERROR("store", "bad map sizes map_size=%zu max_map_size=%zu", map_size, max_map_size);
        return SB_E_CONFIG;
    }
    size_t ndbs = 0;
    if (db_names != NULL)
        for (; db_names[ndbs] != NULL; ndbs++) {
            if (ndbs == MAX_DBS) {
                SB_ERROR("store", "too many databases max=%d", MAX_DBS);
                return SB_E_CONFIG;
            }
            if (db_names[ndbs][0] == '\0') return SB_E_CONFIG;
        }

    sb_result_t r = make_dirs(dir);
    if (r != SB_OK) return r;

    sb_store_t *st = sb_xcalloc(1, sizeof *st);
    long page = sysconf(_SC_PAGESIZE);
    st->page = page > 0 ? (size_t)page : 4096;
    st->max_map_size = max_map_size - max_map_size % st->page;
    map_size = round_up(map_size, st->page);
    if (st->max_map_size < map_size) st->max_map_size = map_size;
    st->ndbs = ndbs;
    for (size_t i = 0; i < ndbs; i++)
        st->names[i] = sb_xstrdup(db_names[i]);
    pthread_mutex_init(&st->write_mu, NULL);
    pthread_rwlock_init(&st->map_lock, NULL);

    int rc = mdb_env_create(&st->env);
    if (rc != 0) {
        r = convert(rc, "env_create", NULL);
        st->env = NULL;
        goto fail;
    }
    if ((rc = mdb_env_set_maxdbs(st->env, ndbs > 0 ? (MDB_dbi)ndbs : 1)) != 0 ||
        (rc = mdb_env_set_maxreaders(st->env, MAX_READERS)) != 0 ||
        (rc = mdb_env_set_mapsize(st->env, map_size)) != 0) {
        r = convert(rc, "env_setup", NULL);
        goto fail;
    }
    /* MDB_NOTLS: read transactions belong to the call, not to a thread's reader slot. */
    rc = mdb_env_open(st->env, dir, MDB_NOTLS, 0600);
    if (rc != 0) {
        r = convert(rc, "env_open", NULL);
        goto fail;
    }
    int dead = 0;
    rc = mdb_reader_check(st->env, &dead);
    if (rc != 0) {
        r = convert(rc, "reader_check", NULL);
        goto fail;
    }
    if (dead > 0) SB_WARN("store", "cleared stale reader slots count=%d", dead);
    r = open_dbs(st);
    if (r != SB_OK) goto fail;

    SB_INFO("store", "opened dbs=%zu map_size=%zu max_map_size=%zu", ndbs, current_map_size(st),
            st->max_map_size);
    *out = st;
    return SB_OK;

fail:
    sb_store_close(st);
    return r;
}

void sb_store_close(sb_store_t *st)
{
    if (st == NULL) return;
    if (st->env != NULL) mdb_env_close(st->env);
    for (size_t i = 0; i < st->ndbs; i++)
        free(st->names[i]);
    pthread_rwlock_destroy(&st->map_lock);
    pthread_mutex_destroy(&st->write_mu);
    free(st);
}

sb_result_t sb_store_db(sb_store_t *st, const char *name, sb_store_db_t *out)
{
    if (st == NULL || name == NULL) return SB_E_INVALID;
    for (size_t i = 0; i < st->ndbs; i++)
        if (strcmp(st->names[i], name) == 0) {
            *out = st->dbis[i];
            return SB_OK;
        }
    return SB_E_NOT_FOUND;
}

size_t sb_store_map_size(const sb_store_t *st)
{
    return current_map_size(st);
}

/* Closes cursors the caller left open, before the transaction ends (LMDB requires it for read
 * transactions, and the wrappers would leak). */
static void close_cursors(sb_store_txn_t *t)
{
    while (t->cursors != NULL) {
        SB_WARN("store", "cursor left open db=%s: closed at transaction end",
                db_name(t->st, t->cursors->dbi));
        sb_store_cursor_close(t->cursors);
    }
}

sb_result_t sb_store_write(sb_store_t *st, sb_store_write_fn fn, void *ctx)
{
    if (st == NULL || fn == NULL) return SB_E_INVALID;
    pthread_mutex_lock(&st->write_mu);
    sb_result_t r;
    int resized = 0;
    for (;;) {
        sb_store_txn_t t = {.st = st, .write = true};
        int rc = mdb_txn_begin(st->env, NULL, 0, &t.txn);
        if (rc == MDB_MAP_RESIZED && resized++ < RESIZED_RETRIES) {
            r = adopt_map_size(st);
            if (r != SB_OK) break;
            continue;
        }
        if (rc != 0) {
            r = convert(rc, "txn_begin", NULL);
            break;
        }
        r = fn(&t, ctx);
        close_cursors(&t);
        if (t.map_full) {
            /* Whatever fn made of the error, the transaction is dead: grow and rerun. */
            mdb_txn_abort(t.txn);
            r = grow_map(st);
            if (r != SB_OK) break;
            continue;
        }
        if (r != SB_OK) {
            mdb_txn_abort(t.txn);
            break;
        }
        rc = mdb_txn_commit(t.txn); /* frees the transaction whatever the outcome */
        if (rc == MDB_MAP_FULL) {
            r = grow_map(st);
            if (r != SB_OK) break;
            continue;
        }
        r = convert(rc, "commit", NULL);
        break;
    }
    pthread_mutex_unlock(&st->write_mu);
    return r;
}

sb_result_t sb_store_read(sb_store_t *st, sb_store_write_fn fn, void *ctx)
{
    if (st == NULL || fn == NULL) return SB_E_INVALID;
    sb_result_t r;
    int resized = 0;
    for (;;) {
        sb_store_txn_t t = {.st = st, .write = false};
        pthread_rwlock_rdlock(&st->map_lock);
        int rc = mdb_txn_begin(st->env, NULL, MDB_RDONLY, &t.txn);
        if (rc == MDB_MAP_RESIZED && resized++ < RESIZED_RETRIES) {
            pthread_rwlock_unlock(&st->map_lock);
            pthread_mutex_lock(&st->write_mu);
            r = adopt_map_size(st);
            pthread_mutex_unlock(&st->write_mu);
            if (r != SB_OK) return r;
            continue;
        }
        if (rc != 0) {
            pthread_rwlock_unlock(&st->map_lock);
            return convert(rc, "txn_begin_read", NULL);
        }
        r = fn(&t, ctx);
        close_cursors(&t);
        mdb_txn_abort(t.txn);
        pthread_rwlock_unlock(&st->map_lock);
        return r;
    }
}

/* Keys must be non-empty and within LMDB's key size limit (511 bytes by default). */
static sb_result_t check_key(sb_store_txn_t *t, const void *key, size_t klen, const char *op)
{
    if (key == NULL || klen == 0) {
        SB_WARN("store", "empty key op=%s", op);
        return SB_E_INVALID;
    }
    int max = mdb_env_get_maxkeysize(t->st->env);
    if (klen > (size_t)max) {
        SB_WARN("store", "key too long op=%s klen=%zu max=%d", op, klen, max);
        return SB_E_TOO_LARGE;
    }
    return SB_OK;
}

static sb_result_t check_write(sb_store_txn_t *t, const char *op)
{
    if (!t->write) {
        SB_WARN("store", "write in a read-only transaction op=%s", op);
        return SB_E_INVALID;
    }
    return SB_OK;
}

sb_result_t sb_store_get(sb_store_txn_t *txn, sb_store_db_t db, const void *key, size_t klen,
                         sb_store_val_t *out)
{
    sb_result_t r = check_key(txn, key, klen, "get");
    if (r != SB_OK) return r;
    MDB_val k = {.mv_size = klen, .mv_data = (void *)key}, v;
    int rc = mdb_get(txn->txn, db, &k, &v);
    if (rc != 0) return txn_convert(txn, rc, "get", db);
    out->data = v.mv_data;
    out->len = v.mv_size;
    return SB_OK;
}

sb_result_t sb_store_put(sb_store_txn_t *txn, sb_store_db_t db, const void *key, size_t klen,
                         const void *val, size_t vlen)
{
    sb_result_t r = check_write(txn, "put");
    if (r == SB_OK) r = check_key(txn, key, klen, "put");
    if (r != SB_OK) return r;
    if (val == NULL && vlen > 0) return SB_E_INVALID;
    MDB_val k = {.mv_size = klen, .mv_data = (void *)key};
    MDB_val v = {.mv_size = vlen, .mv_data = val != NULL ? (void *)val : (void *)""};
    int rc = mdb_put(txn->txn, db, &k, &v, 0);
    return txn_convert(txn, rc, "put", db);
}

sb_result_t sb_store_del(sb_store_txn_t *txn, sb_store_db_t db, const void *key, size_t klen)
{
    sb_result_t r = check_write(txn, "del");
    if (r == SB_OK) r = check_key(txn, key, klen, "del");
    if (r != SB_OK) return r;
    MDB_val k = {.mv_size = klen, .mv_data = (void *)key};
    int rc = mdb_del(txn->txn, db, &k, NULL);
    return txn_convert(txn, rc, "del", db);
}

sb_result_t sb_store_cursor_open(sb_store_txn_t *txn, sb_store_db_t db, sb_store_cursor_t **out)
{
    MDB_cursor *mc = NULL;
    int rc = mdb_cursor_open(txn->txn, db, &mc);
    if (rc != 0) return txn_convert(txn, rc, "cursor_open", db);
    sb_store_cursor_t *c = sb_xcalloc(1, sizeof *c);
    c->txn = txn;
    c->cur = mc;
    c->dbi = db;
    c->next = txn->cursors;
    txn->cursors = c;
    *out = c;
    return SB_OK;
}

static sb_result_t cursor_get(sb_store_cursor_t *c, MDB_val *k, MDB_cursor_op op,
                              sb_store_val_t *kout, sb_store_val_t *vout)
{
    MDB_val v;
    int rc = mdb_cursor_get(c->cur, k, &v, op);
    if (rc != 0) return txn_convert(c->txn, rc, "cursor_get", c->dbi);
    if (kout != NULL) {
        kout->data = k->mv_data;
        kout->len = k->mv_size;
    }
    if (vout != NULL) {
        vout->data = v.mv_data;
        vout->len = v.mv_size;
    }
    return SB_OK;
}

sb_result_t sb_store_cursor_seek(sb_store_cursor_t *c, const void *key, size_t klen,
                                 sb_store_val_t *k, sb_store_val_t *v)
{
    MDB_val mk = {.mv_size = klen, .mv_data = (void *)key};
    if (key == NULL || klen == 0) return cursor_get(c, &mk, MDB_FIRST, k, v);
    sb_result_t r = check_key(c->txn, key, klen, "cursor_seek");
    if (r != SB_OK) return r;
    return cursor_get(c, &mk, MDB_SET_RANGE, k, v);
}

sb_result_t sb_store_cursor_next(sb_store_cursor_t *c, sb_store_val_t *k, sb_store_val_t *v)
{
    MDB_val mk = {0};
    return cursor_get(c, &mk, MDB_NEXT, k, v);
}

sb_result_t sb_store_cursor_last(sb_store_cursor_t *c, sb_store_val_t *k, sb_store_val_t *v)
{
    MDB_val mk = {0};
    return cursor_get(c, &mk, MDB_LAST, k, v);
}

sb_result_t sb_store_cursor_prev(sb_store_cursor_t *c, sb_store_val_t *k, sb_store_val_t *v)
{
    MDB_val mk = {0};
    return cursor_get(c, &mk, MDB_PREV, k, v);
}

sb_result_t sb_store_cursor_del(sb_store_cursor_t *c)
{
    sb_result_t r = check_write(c->txn, "cursor_del");
    if (r != SB_OK) return r;
    int rc = mdb_cursor_del(c->cur, 0);
    return txn_convert(c->txn, rc, "cursor_del", c->dbi);
}

void sb_store_cursor_close(sb_store_cursor_t *c)
{
    if (c == NULL) return;
    for (sb_store_cursor_t **pp = &c->txn->cursors; *pp != NULL; pp = &(*pp)->next)
        if (*pp == c) {
            *pp = c->next;
            break;
        }
    mdb_cursor_close(c->cur);
    free(c);
}

void sb_store_be64(uint8_t out[8], uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        out[i] = (uint8_t)v;
        v >>= 8;
    }
}

uint64_t sb_store_from_be64(const uint8_t in[8])
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | in[i];
    return v;
}
