/*
 * The store, part 1 (see store.h): opening the database and running the
 * migrations, the statement helpers every part shares (store_int.h),
 * tokens, teams, models and datasets, workers and metrics. Jobs are in
 * store_jobs.c, the task queue in store_queue.c.
 *
 * DESIGN
 * - All SQL text is in the statement table (store_int.h) and in
 *   migrations/; the store files bind parameters by name and turn rows into
 *   the API's JSON objects.
 * - st->mu serialises the writer connection. The hot read paths (token
 *   lookup, job GET and list, events, blob access) use a second, read-only
 *   connection under st->rmu, which in WAL mode reads the last committed
 *   state without waiting for the writer. Writes run inside
 *   srv_store__begin() / srv_store__finish() (BEGIN IMMEDIATE ... COMMIT or
 *   ROLLBACK), so a call either happens whole or not at all; the commit
 *   records where the transaction was opened, for diagnostics.
 */
#include "server/store.h"

#include <inttypes.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/alloc.h"
#include "common/assert.h"
#include "common/log.h"
#include "server/migrations_gen.h"
#include "server/store_int.h"

static const char *const srv_stmt_sql[STMT__COUNT] = {
#define SRV__STMT_SQL(id, sql) [STMT_##id] = sql,
    SRV_STMTS(SRV__STMT_SQL)
#undef SRV__STMT_SQL
};

/* ---- Connection locks ------------------------------------------------------- */

/* Resets every statement of db that is mid-row; returns how many were. */
static int stmts_reset_busy(sqlite3 *db)
{
    int n = 0;
    for (sqlite3_stmt *s = sqlite3_next_stmt(db, NULL); s; s = sqlite3_next_stmt(db, s))
        if (sqlite3_stmt_busy(s)) {
            sqlite3_reset(s);
            n++;
        }
    return n;
}

/* No statement of db is mid-row (walks ~60 prepared statements: cheap next
 * to any SQLite call). */
static int stmts_idle(sqlite3 *db)
{
    for (sqlite3_stmt *s = sqlite3_next_stmt(db, NULL); s; s = sqlite3_next_stmt(db, s))
        if (sqlite3_stmt_busy(s))
            return 0;
    return 1;
}

void srv_store__lock(struct srv_store *st)
{
    pthread_mutex_lock(&st->mu);
    DP_ASSERT(stmts_idle(st->db)); /* released without srv_store__unlock */
}

void srv_store__unlock(struct srv_store *st)
{
    stmts_reset_busy(st->db);
    pthread_mutex_unlock(&st->mu);
}

void srv_store__rlock(struct srv_store *st)
{
    pthread_mutex_lock(&st->rmu);
    DP_ASSERT(stmts_idle(st->rdb));
}

void srv_store__runlock(struct srv_store *st)
{
    stmts_reset_busy(st->rdb);
    pthread_mutex_unlock(&st->rmu);
}

/* ---- Statement helpers ----------------------------------------------------- */

/* Returns statement id, reset and with its bindings cleared. */
sqlite3_stmt *srv_store__rstmt(struct srv_store *st, enum srv_stmt_id id)
{
    sqlite3_stmt *s = st->rstmt[id];
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    return s;
}

sqlite3_stmt *srv_store__stmt(struct srv_store *st, enum srv_stmt_id id)
{
    sqlite3_stmt *s = st->stmt[id];
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    return s;
}

static int db_param(sqlite3_stmt *s, const char *name)
{
    int i = sqlite3_bind_parameter_index(s, name);
    DP_ASSERT(i > 0); /* a misspelt parameter is a programmer error */
    return i;
}

void srv_store__bind_text(sqlite3_stmt *s, const char *name, const char *v)
{
    int i = db_param(s, name);
    int rc = v ? sqlite3_bind_text(s, i, v, -1, SQLITE_TRANSIENT) : sqlite3_bind_null(s, i);
    DP_ASSERT(rc == SQLITE_OK);
}

void srv_store__bind_int(sqlite3_stmt *s, const char *name, int64_t v)
{
    int rc = sqlite3_bind_int64(s, db_param(s, name), v);
    DP_ASSERT(rc == SQLITE_OK);
}

/* Binds the compact serialisation of j (NULL binds SQL NULL). */
enum dp_err srv_store__bind_json(sqlite3_stmt *s, const char *name, const json_t *j)
{
    if (j == NULL) {
        srv_store__bind_text(s, name, NULL);
        return DP_OK;
    }
    char *text = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
    if (text == NULL)
        return DP_ENOMEM;
    int rc = sqlite3_bind_text(s, db_param(s, name), text, -1, SQLITE_TRANSIENT);
    /* jansson allocates through its own malloc (the default allocator). */
    json_free_t free_fn = NULL;
    json_get_alloc_funcs(NULL, &free_fn);
    free_fn(text);
    return rc == SQLITE_OK ? DP_OK : DP_ENOMEM;
}

static enum dp_err db_fail(sqlite3 *db, struct dp_errinfo *ei, const char *what)
{
    int rc = sqlite3_errcode(db);
    enum dp_err code = rc == SQLITE_NOMEM ? DP_ENOMEM : DP_EIO;
    DP_LOG(DP_LOG_ERROR, "store: %s failed: %s (%d)", what, sqlite3_errmsg(db), rc);
    return dp_errinfo_set(ei, code, "database error in %s: %s", what, sqlite3_errmsg(db));
}

/* Steps a statement that returns no rows (or whose rows are ignored). The
 * statement knows its connection (writer or reader); st is for symmetry. */
enum dp_err srv_store__exec(struct srv_store *st, sqlite3_stmt *s, struct dp_errinfo *ei)
{
    (void)st;
    int rc;
    do {
        rc = sqlite3_step(s);
    } while (rc == SQLITE_ROW);
    if (rc != SQLITE_DONE)
        return db_fail(sqlite3_db_handle(s), ei, sqlite3_sql(s));
    return DP_OK;
}

enum dp_err srv_store__step(struct srv_store *st, sqlite3_stmt *s, int *has_row,
                            struct dp_errinfo *ei)
{
    (void)st;
    *has_row = 0;
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        *has_row = 1;
        return DP_OK;
    }
    if (rc == SQLITE_DONE)
        return DP_OK;
    return db_fail(sqlite3_db_handle(s), ei, sqlite3_sql(s));
}

const char *srv_store__col_text(sqlite3_stmt *s, int i)
{
    return (const char *)sqlite3_column_text(s, i);
}

int64_t srv_store__col_int(sqlite3_stmt *s, int i)
{
    return (int64_t)sqlite3_column_int64(s, i);
}

int srv_store__col_null(sqlite3_stmt *s, int i)
{
    return sqlite3_column_type(s, i) == SQLITE_NULL;
}

/* The column's JSON text parsed, or JSON null when NULL or unparsable. */
json_t *srv_store__col_json(sqlite3_stmt *s, int i)
{
    const char *t = srv_store__col_text(s, i);
    json_t *j = t ? json_loads(t, JSON_DECODE_ANY, NULL) : NULL;
    return j ? j : json_null();
}

json_t *srv_store__json_time(int64_t ms)
{
    char b[32];
    srv_time_fmt(ms, b);
    return json_string(b);
}

/* An RFC 3339 time, or null when the column is NULL. */
json_t *srv_store__col_time(sqlite3_stmt *s, int i)
{
    return srv_store__col_null(s, i) ? json_null() : srv_store__json_time(srv_store__col_int(s, i));
}

json_t *srv_store__col_str(sqlite3_stmt *s, int i)
{
    const char *t = srv_store__col_text(s, i);
    return t ? json_string(t) : json_null();
}

/* ---- Transactions ---------------------------------------------------------- */

enum dp_err srv_store__begin_at(struct srv_store *st, struct dp_errinfo *ei, const char *file,
                                int line)
{
    DP_ASSERT(st->txn_file == NULL); /* no nesting */
    enum dp_err err = srv_store__exec(st, srv_store__stmt(st, STMT_BEGIN), ei);
    if (err)
        return err;
    st->txn_file = file;
    st->txn_line = line;
    st->txn_wakes = 0;
    return DP_OK;
}

static enum dp_err db_commit(struct srv_store *st, struct dp_errinfo *ei)
{
    enum dp_err err = srv_store__exec(st, srv_store__stmt(st, STMT_COMMIT), ei);
    if (err) {
        DP_LOG(DP_LOG_ERROR, "store: commit of transaction from %s:%d failed", st->txn_file,
               st->txn_line);
        srv_store__exec(st, srv_store__stmt(st, STMT_ROLLBACK), NULL);
    }
    st->txn_file = NULL;
    return err;
}

static void db_rollback(struct srv_store *st)
{
    if (st->txn_file == NULL)
        return;
    if (sqlite3_get_autocommit(st->db) == 0)
        srv_store__exec(st, srv_store__stmt(st, STMT_ROLLBACK), NULL);
    st->txn_file = NULL;
}

/* Ends a write call: commit on success, roll back otherwise. Only a
 * committed change that waiters care about (st->txn_wakes) bumps the
 * generation: a bump wakes every parked long-poll and event stream. */
enum dp_err srv_store__finish(struct srv_store *st, enum dp_err err, struct dp_errinfo *ei)
{
    int wakes = st->txn_wakes;
    st->txn_wakes = 0;
    /* A statement left mid-row (a single-row read that was not reset) would
     * keep the writer's read snapshot open past the transaction: the WAL
     * could not be checkpointed behind it, and the next BEGIN IMMEDIATE
     * fails with SQLITE_BUSY_SNAPSHOT once anything else changed the file.
     * Ending the transaction ends every read in it. */
    stmts_reset_busy(st->db);
    if (err == DP_OK) {
        err = db_commit(st, ei);
        if (err == DP_OK)
            srv_store__committed(st);
        if (err == DP_OK && wakes)
            atomic_fetch_add(&st->generation, 1);
    } else {
        db_rollback(st);
    }
    return err;
}

/* ---- Open, migrate, close --------------------------------------------------- */

enum dp_err srv_store__exec_sql(struct srv_store *st, const char *sql, struct dp_errinfo *ei)
{
    char *msg = NULL;
    int rc = sqlite3_exec(st->db, sql, NULL, NULL, &msg);
    if (rc != SQLITE_OK) {
        dp_errinfo_set(ei, DP_EIO, "database: %s", msg ? msg : sqlite3_errstr(rc));
        sqlite3_free(msg);
        return DP_EIO;
    }
    return DP_OK;
}

static int db_user_version(struct srv_store *st)
{
    sqlite3_stmt *s = NULL;
    int v = -1;
    if (sqlite3_prepare_v2(st->db, "PRAGMA user_version", -1, &s, NULL) == SQLITE_OK &&
        sqlite3_step(s) == SQLITE_ROW)
        v = sqlite3_column_int(s, 0);
    sqlite3_finalize(s);
    return v;
}

/* Joins a compiled-in migration's lines into one string (dp_free it); the
 * generator emits lines because C limits the length of one literal. */
static char *migration_text(const struct srv_migration *m)
{
    size_t len = 1;
    for (const char *const *l = m->lines; *l; l++)
        len += strlen(*l);
    char *sql = dp_malloc(len), *p = sql;
    if (sql == NULL)
        return NULL;
    for (const char *const *l = m->lines; *l; l++) {
        size_t n = strlen(*l);
        memcpy(p, *l, n);
        p += n;
    }
    *p = '\0';
    return sql;
}

/* DP_OK when PRAGMA foreign_key_check finds no row: every reference in the
 * database names a row that exists. */
static enum dp_err db_foreign_keys_hold(struct srv_store *st, struct dp_errinfo *ei)
{
    sqlite3_stmt *s = NULL;
    int rc = sqlite3_prepare_v2(st->db, "PRAGMA foreign_key_check", -1, &s, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(s);
    enum dp_err err = DP_OK;
    if (rc == SQLITE_ROW)
        err = dp_errinfo_set(ei, DP_EFORMAT, "a row of %s (rowid %lld) references a missing %s row",
                             (const char *)sqlite3_column_text(s, 0),
                             (long long)sqlite3_column_int64(s, 1),
                             (const char *)sqlite3_column_text(s, 2));
    else if (rc != SQLITE_DONE)
        err = dp_errinfo_set(ei, DP_EIO, "database: foreign_key_check: %s", sqlite3_errmsg(st->db));
    sqlite3_finalize(s);
    return err;
}

/*
 * Applies every compiled-in migration newer than the database, each with its
 * user_version bump inside one transaction. Foreign keys are not enforced
 * while a migration runs (SQLite ignores that pragma inside a transaction,
 * hence around it): a migration that rebuilds a table (a CHECK change) drops
 * the old one, and with enforcement on that drop would delete or refuse
 * every row that references it. Instead, foreign_key_check must come back
 * empty before COMMIT, so a migration cannot leave a dangling reference.
 */
static enum dp_err db_migrate(struct srv_store *st, struct dp_errinfo *ei)
{
    int have = db_user_version(st);
    if (have < 0)
        return dp_errinfo_set(ei, DP_EIO, "database: cannot read PRAGMA user_version");
    int newest = srv_migrations[SRV_N_MIGRATIONS - 1].version;
    if (have > newest)
        return dp_errinfo_set(ei, DP_EFORMAT,
                              "database schema version %d is newer than this server (%d); "
                              "run a newer dnnpress-server",
                              have, newest);
    for (int i = 0; i < SRV_N_MIGRATIONS; i++) {
        const struct srv_migration *m = &srv_migrations[i];
        if (m->version <= have)
            continue;
        char pragma[64];
        snprintf(pragma, sizeof(pragma), "PRAGMA user_version = %d;", m->version);
        char *sql = migration_text(m);
        if (sql == NULL)
            return DP_ENOMEM;
        enum dp_err err = srv_store__exec_sql(st, "PRAGMA foreign_keys = OFF", ei);
        if (!err)
            err = srv_store__exec_sql(st, "BEGIN IMMEDIATE", ei);
        if (!err)
            err = srv_store__exec_sql(st, sql, ei);
        dp_free(sql);
        if (!err)
            err = db_foreign_keys_hold(st, ei);
        if (!err)
            err = srv_store__exec_sql(st, pragma, ei);
        if (!err)
            err = srv_store__exec_sql(st, "COMMIT", ei);
        if (err)
            srv_store__exec_sql(st, "ROLLBACK", NULL);
        /* Back on whatever happened: the server never runs without it. */
        enum dp_err on = srv_store__exec_sql(st, "PRAGMA foreign_keys = ON", err ? NULL : ei);
        if (!err)
            err = on;
        if (err) {
            /* Copied first: the message is rewritten into the buffer it is read from. */
            char why[sizeof(ei->msg)];
            snprintf(why, sizeof(why), "%s", ei ? ei->msg : "");
            return dp_errinfo_set(ei, err, "migration %s failed: %s", m->name, why);
        }
        DP_LOG(DP_LOG_INFO, "store: applied migration %s", m->name);
    }
    return DP_OK;
}

enum dp_err srv_store_open(const char *path, const struct srv_queue_cfg *cfg,
                           struct srv_store **out, struct dp_errinfo *ei)
{
    enum dp_err err = DP_OK;
    *out = NULL;
    struct srv_store *st = dp_calloc(1, sizeof(*st));
    if (st == NULL)
        return DP_ENOMEM;
    pthread_mutex_init(&st->mu, NULL);
    pthread_mutex_init(&st->rmu, NULL);
    pthread_mutex_init(&st->sync_mu, NULL);
    pthread_cond_init(&st->sync_cv, NULL);
    st->wal_fd = -1;
    st->cfg = *cfg;
    if (snprintf(st->wal_path, sizeof(st->wal_path), "%s-wal", path) >= (int)sizeof(st->wal_path)) {
        err = dp_errinfo_set(ei, DP_EINVAL, "database path too long: %s", path);
        goto out;
    }
    int rc = sqlite3_open_v2(
        path, &st->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        err = dp_errinfo_set(ei, DP_EIO, "cannot open database %s: %s", path,
                             st->db ? sqlite3_errmsg(st->db) : sqlite3_errstr(rc));
        goto out;
    }
    sqlite3_busy_timeout(st->db, 5000);
    /* WAL: readers never block the writer; synchronous=FULL: a committed
     * transaction is on disk before COMMIT returns (2xx means durable). */
    err = srv_store__exec_sql(st,
                              "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; "
                              "PRAGMA foreign_keys = ON; PRAGMA temp_store = MEMORY;",
                              ei);
    if (err)
        goto out;
    err = db_migrate(st, ei);
    if (err)
        goto out;
    for (int i = 0; i < STMT__COUNT; i++) {
        rc = sqlite3_prepare_v3(st->db, srv_stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT,
                                &st->stmt[i], NULL);
        if (rc != SQLITE_OK) {
            err = dp_errinfo_set(ei, DP_EIO, "preparing statement %d failed: %s", i,
                                 sqlite3_errmsg(st->db));
            goto out;
        }
    }
    /* The read-only connection, opened after the migrations. */
    rc = sqlite3_open_v2(path, &st->rdb, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        err = dp_errinfo_set(ei, DP_EIO, "cannot open database %s for reading: %s", path,
                             st->rdb ? sqlite3_errmsg(st->rdb) : sqlite3_errstr(rc));
        goto out;
    }
    sqlite3_busy_timeout(st->rdb, 5000);
    for (int i = 0; i < STMT__COUNT; i++) {
        rc = sqlite3_prepare_v3(st->rdb, srv_stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT,
                                &st->rstmt[i], NULL);
        if (rc != SQLITE_OK) {
            err = dp_errinfo_set(ei, DP_EIO, "preparing statement %d for reading failed: %s", i,
                                 sqlite3_errmsg(st->rdb));
            goto out;
        }
    }
out:
    if (err) {
        srv_store_close(st);
        return err;
    }
    *out = st;
    return DP_OK;
}

void srv_store_close(struct srv_store *st)
{
    if (st == NULL)
        return;
    for (int i = 0; i < STMT__COUNT; i++) {
        sqlite3_finalize(st->rstmt[i]);
        sqlite3_finalize(st->stmt[i]);
    }
    if (st->rdb)
        sqlite3_close(st->rdb);
    srv_store_group_commit_stop(st);
    if (st->wal_fd >= 0)
        close(st->wal_fd);
    pthread_mutex_destroy(&st->sync_mu);
    pthread_cond_destroy(&st->sync_cv);
    if (st->db) {
        /* Checkpoint so that a clean shutdown leaves everything in the main file. */
        sqlite3_wal_checkpoint_v2(st->db, NULL, SQLITE_CHECKPOINT_TRUNCATE, NULL, NULL);
        sqlite3_close(st->db);
    }
    pthread_mutex_destroy(&st->mu);
    pthread_mutex_destroy(&st->rmu);
    dp_free(st);
}

int srv_store_schema_version(struct srv_store *st)
{
    srv_store__lock(st);
    int v = db_user_version(st);
    srv_store__unlock(st);
    return v;
}

enum dp_err srv_store_integrity_check(struct srv_store *st, struct dp_errinfo *ei)
{
    srv_store__lock(st);
    sqlite3_stmt *s = NULL;
    enum dp_err err = DP_OK;
    if (sqlite3_prepare_v2(st->db, "PRAGMA integrity_check", -1, &s, NULL) != SQLITE_OK ||
        sqlite3_step(s) != SQLITE_ROW)
        err = db_fail(st->db, ei, "PRAGMA integrity_check");
    else if (strcmp(srv_store__col_text(s, 0), "ok") != 0)
        err = dp_errinfo_set(ei, DP_EFORMAT, "integrity_check: %s", srv_store__col_text(s, 0));
    sqlite3_finalize(s);
    srv_store__unlock(st);
    return err;
}

int64_t srv_store_wal_len(struct srv_store *st)
{
    struct stat sb;
    return stat(st->wal_path, &sb) == 0 ? (int64_t)sb.st_size : 0;
}

enum dp_err srv_store_checkpoint(struct srv_store *st, int64_t *wal_len, struct dp_errinfo *ei)
{
    /* Both connections held (writer first, the order every caller uses):
     * no write and no read of ours runs, so TRUNCATE waits for nobody and
     * leaves a zero-length WAL. */
    srv_store__lock(st);
    srv_store__rlock(st);
    int n_log = 0, n_ckpt = 0;
    int rc = sqlite3_wal_checkpoint_v2(st->db, NULL, SQLITE_CHECKPOINT_TRUNCATE, &n_log, &n_ckpt);
    enum dp_err err = DP_OK;
    if (rc != SQLITE_OK)
        err = dp_errinfo_set(ei, rc == SQLITE_NOMEM ? DP_ENOMEM : DP_EIO,
                             "WAL checkpoint failed: %s (%d; %d of %d frames copied)",
                             sqlite3_errmsg(st->db), rc, n_ckpt, n_log);
    srv_store__runlock(st);
    srv_store__unlock(st);
    if (wal_len)
        *wal_len = srv_store_wal_len(st);
    return err;
}

uint64_t srv_store_generation(struct srv_store *st)
{
    return atomic_load(&st->generation);
}

/* ---- Small shared pieces ------------------------------------------------------ */

/* cursor 0 means "from the newest". */
int64_t srv_store__cursor_bound(int64_t cursor)
{
    return cursor > 0 ? cursor : INT64_MAX;
}

/* Turns the current row of a list statement into its API object. */
typedef json_t *list_row_fn(sqlite3_stmt *s);

/* Runs one page of a list statement whose other parameters are bound (the
 * caller holds the statement's mutex): column 0 is the row's seq, the
 * cursor; *out becomes {"items", "next_cursor"}. */
static enum dp_err list_page(struct srv_store *st, sqlite3_stmt *s, int limit, int64_t cursor,
                             list_row_fn *row_json, json_t **out, struct dp_errinfo *ei)
{
    json_t *items = json_array();
    int64_t last = 0;
    int n = 0, has_row = 0;
    enum dp_err err = items ? DP_OK : DP_ENOMEM;
    srv_store__bind_int(s, ":cursor", srv_store__cursor_bound(cursor));
    srv_store__bind_int(s, ":limit", limit);
    while (!err) {
        err = srv_store__step(st, s, &has_row, ei);
        if (err || !has_row)
            break;
        last = srv_store__col_int(s, 0);
        n++;
        if (json_array_append_new(items, row_json(s)) != 0)
            err = DP_ENOMEM; /* a NULL row (out of memory) must not shorten the page */
    }
    sqlite3_reset(s);
    if (err) {
        json_decref(items);
        return err;
    }
    /* A full page may have more after it: its last seq is the next cursor. */
    char next[24];
    snprintf(next, sizeof(next), "%" PRId64, last);
    *out = json_pack("{s:o, s:o}", "items", items, "next_cursor",
                     n == limit && last > 0 ? json_string(next) : json_null());
    return *out ? DP_OK : DP_ENOMEM;
}

enum dp_err srv_store__event_append(struct srv_store *st, const char *job_id, const char *type,
                                    json_t *data_take, struct dp_errinfo *ei)
{
    /* Callers pass json_pack()'s result straight in: NULL is its failure,
     * never "no data" (that is json_null()), so an event is never stored
     * without its data. */
    if (data_take == NULL)
        return DP_ENOMEM;
    sqlite3_stmt *s = srv_store__stmt(st, STMT_EVENT_INSERT);
    srv_store__bind_text(s, ":job", job_id);
    srv_store__bind_text(s, ":type", type);
    srv_store__bind_int(s, ":now", srv_now_ms());
    enum dp_err err = srv_store__bind_json(s, ":data", data_take);
    json_decref(data_take);
    if (!err)
        err = srv_store__exec(st, s, ei);
    if (!err)
        st->txn_wakes = 1; /* event streams, and claims: a task changed state */
    return err;
}

enum dp_err srv_store__event_task_state(struct srv_store *st, const char *job_id,
                                        const char *task_id, const char *type, const char *state,
                                        struct dp_errinfo *ei)
{
    json_t *d = json_pack("{s:s, s:s, s:s}", "task_id", task_id, "task", type, "state", state);
    return srv_store__event_append(st, job_id, "state", d, ei);
}

/* Idempotency: *found_id receives the object created earlier under key. */
enum dp_err srv_store__idem_lookup(struct srv_store *st, const struct srv_principal *who,
                                   const char *route, const char *key, const char *req_hash,
                                   char found_id[SRV_ID_MAX], struct dp_errinfo *ei)
{
    found_id[0] = '\0';
    if (key == NULL)
        return DP_OK;
    sqlite3_stmt *s = srv_store__stmt(st, STMT_IDEM_GET);
    srv_store__bind_text(s, ":team", who->team_id);
    srv_store__bind_text(s, ":route", route);
    srv_store__bind_text(s, ":key", key);
    int has_row = 0;
    enum dp_err err = srv_store__step(st, s, &has_row, ei);
    if (err || !has_row)
        return err;
    if (strcmp(srv_store__col_text(s, 0), req_hash) != 0)
        return dp_errinfo_set(
            ei, DP_EEXIST, "Idempotency-Key '%s' was already used with a different request", key);
    snprintf(found_id, SRV_ID_MAX, "%s", srv_store__col_text(s, 1));
    return DP_OK;
}

enum dp_err srv_store__idem_record(struct srv_store *st, const struct srv_principal *who,
                                   const char *route, const char *key, const char *req_hash,
                                   const char *obj_id, struct dp_errinfo *ei)
{
    if (key == NULL)
        return DP_OK;
    sqlite3_stmt *s = srv_store__stmt(st, STMT_IDEM_INSERT);
    srv_store__bind_text(s, ":team", who->team_id);
    srv_store__bind_text(s, ":route", route);
    srv_store__bind_text(s, ":key", key);
    srv_store__bind_text(s, ":hash", req_hash);
    srv_store__bind_text(s, ":obj", obj_id);
    srv_store__bind_int(s, ":now", srv_now_ms());
    return srv_store__exec(st, s, ei);
}

/* ---- Tokens and teams ----------------------------------------------------------- */

static enum srv_scope scope_parse(const char *s)
{
    if (strcmp(s, "admin") == 0)
        return SRV_SCOPE_ADMIN;
    if (strcmp(s, "agent") == 0)
        return SRV_SCOPE_AGENT;
    if (strcmp(s, "device") == 0)
        return SRV_SCOPE_DEVICE;
    return SRV_SCOPE_TEAM;
}

/* last_used_at is kept to this grain: finer would make every request a write. */
#define SRV_TOKEN_USED_GRAIN_MS 60000

/* Refreshes a token's last_used_at when the value read is a minute old or
 * more; the UPDATE's own condition keeps concurrent refreshes to one. */
static void token_touch(struct srv_store *st, const char *id, int64_t now)
{
    struct dp_errinfo ei = {0};
    srv_store__lock(st);
    enum dp_err err = srv_store__begin(st, &ei);
    if (!err) {
        sqlite3_stmt *s = srv_store__stmt(st, STMT_TOKEN_USED);
        srv_store__bind_text(s, ":id", id);
        srv_store__bind_int(s, ":now", now);
        srv_store__bind_int(s, ":stale", now - SRV_TOKEN_USED_GRAIN_MS);
        err = srv_store__finish(st, srv_store__exec(st, s, &ei), &ei);
    }
    srv_store__unlock(st);
    /* Bookkeeping only: the request goes on, the log says what failed. */
    if (err)
        DP_LOG(DP_LOG_WARN, "store: recording the last use of token %s failed: %s", id, ei.msg);
}

enum dp_err srv_store_token_lookup(struct srv_store *st, const char *hash,
                                   struct srv_principal *out, struct dp_errinfo *ei)
{
    int64_t now = srv_now_ms(), last_used = 0;
    srv_store__rlock(st);
    sqlite3_stmt *s = srv_store__rstmt(st, STMT_TOKEN_LOOKUP);
    srv_store__bind_text(s, ":hash", hash);
    int has_row = 0;
    enum dp_err err = srv_store__step(st, s, &has_row, ei);
    if (!err && !has_row) {
        err = dp_errinfo_set(ei, DP_ENOENT, "unknown token");
    } else if (!err && !srv_store__col_null(s, 3)) {
        err = dp_errinfo_set(ei, DP_EPERM, "token revoked");
    } else if (!err && !srv_store__col_null(s, 4) && srv_store__col_int(s, 4) <= now) {
        err = dp_errinfo_set(ei, DP_EPERM, "token expired");
    } else if (!err) {
        snprintf(out->token_id, sizeof(out->token_id), "%s", srv_store__col_text(s, 0));
        out->scope = scope_parse(srv_store__col_text(s, 1));
        snprintf(out->team_id, sizeof(out->team_id), "%s",
                 srv_store__col_null(s, 2) ? "" : srv_store__col_text(s, 2));
        last_used = srv_store__col_null(s, 5) ? 0 : srv_store__col_int(s, 5);
    }
    sqlite3_reset(s);
    srv_store__runlock(st);
    if (!err && now - last_used >= SRV_TOKEN_USED_GRAIN_MS)
        token_touch(st, out->token_id, now);
    return err;
}

/* Inserts a token; origin is "api", "env", "generated" or "local"
 * (migrations/0003_tokens.sql); expires_at_ms 0 means never. */
static enum dp_err token_insert(struct srv_store *st, const char *team_id, const char *scope,
                                const char *name, const char *hash, const char *origin,
                                int64_t expires_at_ms, char id[SRV_ID_MAX], struct dp_errinfo *ei)
{
    enum dp_err err = srv_id_new("tok_", id);
    if (err)
        return err;
    sqlite3_stmt *s = srv_store__stmt(st, STMT_TOKEN_INSERT);
    srv_store__bind_text(s, ":id", id);
    srv_store__bind_text(s, ":team", team_id);
    srv_store__bind_text(s, ":scope", scope);
    srv_store__bind_text(s, ":name", name);
    srv_store__bind_text(s, ":hash", hash);
    srv_store__bind_text(s, ":origin", origin);
    srv_store__bind_int(s, ":now", srv_now_ms());
    if (expires_at_ms > 0)
        srv_store__bind_int(s, ":expires", expires_at_ms);
    else
        srv_store__bind_text(s, ":expires", NULL);
    return srv_store__exec(st, s, ei);
}

/* Revokes every live token of origin; *n_revoked says how many. */
static enum dp_err token_revoke_origin(struct srv_store *st, const char *origin, int *n_revoked,
                                       struct dp_errinfo *ei)
{
    sqlite3_stmt *s = srv_store__stmt(st, STMT_TOKEN_REVOKE_ORIGIN);
    srv_store__bind_text(s, ":origin", origin);
    srv_store__bind_int(s, ":now", srv_now_ms());
    enum dp_err err = srv_store__exec(st, s, ei);
    *n_revoked = err ? 0 : sqlite3_changes(st->db);
    return err;
}

/* The DNNPRESS_ADMIN_TOKEN half of srv_store_admin_ensure (inside its transaction). */
static enum dp_err admin_from_env(struct srv_store *st, const char *env_hash, struct dp_errinfo *ei)
{
    char id[SRV_ID_MAX];
    sqlite3_stmt *s = srv_store__stmt(st, STMT_TOKEN_BY_HASH);
    srv_store__bind_text(s, ":hash", env_hash);
    int has_row = 0;
    enum dp_err err = srv_store__step(st, s, &has_row, ei);
    if (!err && has_row && strcmp(srv_store__col_text(s, 1), "admin") != 0)
        err = dp_errinfo_set(ei, DP_EINVAL,
                             "DNNPRESS_ADMIN_TOKEN is the secret of a %s token (%s); "
                             "choose a new secret",
                             srv_store__col_text(s, 1), srv_store__col_text(s, 0));
    else if (!err && has_row && !srv_store__col_null(s, 2))
        err = dp_errinfo_set(ei, DP_EPERM,
                             "DNNPRESS_ADMIN_TOKEN is token %s, which was revoked; "
                             "revocation is final: set a new secret",
                             srv_store__col_text(s, 0));
    sqlite3_reset(s);
    if (err || has_row)
        return err; /* an error, or the same token as before: nothing to change */
    int n_revoked = 0;
    err = token_revoke_origin(st, "env", &n_revoked, ei);
    if (!err)
        err = token_insert(st, NULL, "admin", "env", env_hash, "env", 0, id, ei);
    if (!err && n_revoked > 0)
        DP_LOG(DP_LOG_INFO,
               "store: DNNPRESS_ADMIN_TOKEN changed: admin token %s replaces %d earlier one(s), "
               "now revoked",
               id, n_revoked);
    return err;
}

enum dp_err srv_store_admin_ensure(struct srv_store *st, const char *env_hash,
                                   char new_secret[SRV_TOKEN_LEN], struct dp_errinfo *ei)
{
    char id[SRV_ID_MAX];
    new_secret[0] = '\0';
    srv_store__lock(st);
    enum dp_err err = srv_store__begin(st, ei);
    if (err)
        goto out;
    if (env_hash) {
        err = admin_from_env(st, env_hash, ei);
    } else {
        sqlite3_stmt *s = srv_store__stmt(st, STMT_TOKEN_ADMIN_LIVE);
        srv_store__bind_int(s, ":now", srv_now_ms());
        int has_row = 0;
        err = srv_store__step(st, s, &has_row, ei);
        int64_t n_live = !err && has_row ? srv_store__col_int(s, 0) : 0;
        sqlite3_reset(s);
        if (!err && n_live == 0) {
            char hash[65];
            err = srv_token_new(new_secret);
            if (!err)
                err = srv_token_hash(new_secret, hash);
            if (!err) {
                err = token_insert(st, NULL, "admin", "first-start", hash, "generated", 0, id, ei);
            }
        }
    }
    err = srv_store__finish(st, err, ei);
out:
    if (err)
        new_secret[0] = '\0';
    srv_store__unlock(st);
    return err;
}

enum dp_err srv_store_agent_token_mint(struct srv_store *st, const char *name,
                                       char secret[SRV_TOKEN_LEN], struct dp_errinfo *ei)
{
    char id[SRV_ID_MAX], hash[65];
    int n_revoked = 0;
    enum dp_err err = srv_token_new(secret);
    if (!err)
        err = srv_token_hash(secret, hash);
    if (err)
        return err;
    srv_store__lock(st);
    err = srv_store__begin(st, ei);
    if (!err) {
        enum dp_err e = token_revoke_origin(st, "local", &n_revoked, ei);
        if (!e)
            e = token_insert(st, NULL, "agent", name, hash, "local", 0, id, ei);
        err = srv_store__finish(st, e, ei);
    }
    srv_store__unlock(st);
    if (!err && n_revoked > 0)
        DP_LOG(DP_LOG_INFO,
               "store: local workers' token %s replaces %d earlier one(s), now revoked", id,
               n_revoked);
    if (err)
        secret[0] = '\0';
    return err;
}

/* The current row of TOKEN_GET/TOKEN_LIST (SRV_TOKEN_COLS) as an API object. */
static json_t *token_json(sqlite3_stmt *s)
{
    /* A shared agent: an agent token of no team (it serves every team). */
    int shared = strcmp(srv_store__col_text(s, 3), "agent") == 0 && srv_store__col_null(s, 4);
    return json_pack(
        "{s:o, s:o, s:o, s:o, s:b, s:o, s:o, s:o, s:o, s:o}", "id", srv_store__col_str(s, 1),
        "name", srv_store__col_str(s, 2), "scope", srv_store__col_str(s, 3), "team_id",
        srv_store__col_str(s, 4), "shared", shared, "origin", srv_store__col_str(s, 5),
        "created_at", srv_store__col_time(s, 6), "expires_at", srv_store__col_time(s, 7),
        "revoked_at", srv_store__col_time(s, 8), "last_used_at", srv_store__col_time(s, 9));
}

/* Reads token id as the API shows it, within the caller's reach (team NULL: any). */
static enum dp_err token_get_locked(struct srv_store *st, const char *team, const char *id,
                                    json_t **out, struct dp_errinfo *ei)
{
    sqlite3_stmt *s = srv_store__stmt(st, STMT_TOKEN_GET);
    srv_store__bind_text(s, ":id", id);
    srv_store__bind_text(s, ":team", team);
    int has_row = 0;
    enum dp_err err = srv_store__step(st, s, &has_row, ei);
    if (!err && !has_row)
        err = dp_errinfo_set(ei, DP_ENOENT, "no token '%s'", id);
    if (!err) {
        *out = token_json(s);
        if (*out == NULL)
            err = DP_ENOMEM;
    }
    sqlite3_reset(s);
    return err;
}

/* The team a principal's token reads are limited to: NULL for an admin. */
static const char *token_reach(const struct srv_principal *who)
{
    return who->scope == SRV_SCOPE_ADMIN ? NULL : who->team_id;
}

enum dp_err srv_store_token_list(struct srv_store *st, const struct srv_principal *who, int limit,
                                 int64_t cursor, json_t **out, struct dp_errinfo *ei)
{
    srv_store__lock(st);
    sqlite3_stmt *s = srv_store__stmt(st, STMT_TOKEN_LIST);
    srv_store__bind_text(s, ":team", token_reach(who));
    enum dp_err err = list_page(st, s, limit, cursor, token_json, out, ei);
    srv_store__unlock(st);
    return err;
}

enum dp_err srv_store_token_revoke(struct srv_store *st, const struct srv_principal *who,
                                   const char *id, json_t **out, struct dp_errinfo *ei)
{
    json_t *tok = NULL;
    *out = NULL;
    srv_store__lock(st);
    enum dp_err err = srv_store__begin(st, ei);
    if (err)
        goto out;
    err = token_get_locked(st, token_reach(who), id, &tok, ei);
    int live_admin = !err && json_is_null(json_object_get(tok, "revoked_at")) &&
                     strcmp(json_string_value(json_object_get(tok, "scope")), "admin") == 0;
    if (live_admin) {
        /* Refused only when no other live admin would remain: an expired
         * admin token is not live, and revoking it must not be refused
         * because it was counted as the last one. */
        sqlite3_stmt *s = srv_store__stmt(st, STMT_TOKEN_ADMIN_LIVE);
        srv_store__bind_int(s, ":now", srv_now_ms());
        srv_store__bind_text(s, ":except", id);
        int has_row = 0;
        err = srv_store__step(st, s, &has_row, ei);
        if (!err && has_row && srv_store__col_int(s, 0) == 0)
            err = dp_errinfo_set(ei, DP_EEXIST,
                                 "token %s is the last live admin token: revoking it would leave "
                                 "nobody able to manage the server",
                                 id);
        sqlite3_reset(s);
    }
    if (!err) {
        sqlite3_stmt *s = srv_store__stmt(st, STMT_TOKEN_REVOKE);
        srv_store__bind_text(s, ":id", id);
        srv_store__bind_int(s, ":now", srv_now_ms());
        err = srv_store__exec(st, s, ei);
    }
    json_decref(tok);
    tok = NULL;
    if (!err)
        err = token_get_locked(st, token_reach(who), id, &tok, ei);
    err = srv_store__finish(st, err, ei);
out:
    srv_store__unlock(st);
    if (err) {
        json_decref(tok);
        return err;
    }
    *out = tok;
    return DP_OK;
}

enum dp_err srv_store_team_create(struct srv_store *st, const char *name, json_t **out,
                                  struct dp_errinfo *ei)
{
    char id[SRV_ID_MAX];
    int64_t now = srv_now_ms();
    *out = NULL;
    enum dp_err err = srv_id_new("team_", id);
    if (err)
        return err;
    srv_store__lock(st);
    err = srv_store__begin(st, ei);
    if (err)
        goto out;
    sqlite3_stmt *s = srv_store__stmt(st, STMT_TEAM_BY_NAME);
    srv_store__bind_text(s, ":name", name);
    int has_row = 0;
    err = srv_store__step(st, s, &has_row, ei);
    if (!err && has_row)
        err = dp_errinfo_set(ei, DP_EEXIST, "a team named '%s' already exists", name);
    if (!err) {
        s = srv_store__stmt(st, STMT_TEAM_INSERT);
        srv_store__bind_text(s, ":id", id);
        srv_store__bind_text(s, ":name", name);
        srv_store__bind_int(s, ":now", now);
        err = srv_store__exec(st, s, ei);
    }
    err = srv_store__finish(st, err, ei);
out:
    srv_store__unlock(st);
    if (!err) {
        *out = json_pack("{s:s, s:s, s:o}", "id", id, "name", name, "created_at",
                         srv_store__json_time(now));
        if (*out == NULL)
            err = DP_ENOMEM;
    }
    return err;
}

/* The current row of TEAM_LIST as an API object. */
static json_t *team_json(sqlite3_stmt *s)
{
    return json_pack("{s:o, s:o, s:o}", "id", srv_store__col_str(s, 1), "name",
                     srv_store__col_str(s, 2), "created_at", srv_store__col_time(s, 3));
}

enum dp_err srv_store_team_list(struct srv_store *st, int limit, int64_t cursor, json_t **out,
                                struct dp_errinfo *ei)
{
    srv_store__lock(st);
    enum dp_err err =
        list_page(st, srv_store__stmt(st, STMT_TEAM_LIST), limit, cursor, team_json, out, ei);
    srv_store__unlock(st);
    return err;
}

enum dp_err srv_store_token_create(struct srv_store *st, const char *team_id, const char *scope,
                                   const char *name, int64_t expires_at_ms, json_t **out,
                                   struct dp_errinfo *ei)
{
    char id[SRV_ID_MAX], secret[SRV_TOKEN_LEN], hash[65];
    json_t *tok = NULL;
    *out = NULL;
    enum dp_err err = srv_token_new(secret);
    if (!err)
        err = srv_token_hash(secret, hash);
    if (err)
        return err;
    /* Only an agent or a device may have no team: a shared one (the caller,
     * admin only, decides); a team token without a team would see nothing. */
    int shared = team_id == NULL && (strcmp(scope, "agent") == 0 || strcmp(scope, "device") == 0);
    if (team_id == NULL && !shared)
        return dp_errinfo_set(ei, DP_EINVAL, "team_id: required for a %s token", scope);
    srv_store__lock(st);
    err = srv_store__begin(st, ei);
    if (err)
        goto out;
    int has_row = 1;
    if (team_id) {
        sqlite3_stmt *s = srv_store__stmt(st, STMT_TEAM_EXISTS);
        srv_store__bind_text(s, ":id", team_id);
        err = srv_store__step(st, s, &has_row, ei);
        sqlite3_reset(s);
    }
    if (!err && !has_row)
        err = dp_errinfo_set(ei, DP_EINVAL, "team_id: no team '%s'", team_id);
    if (!err)
        err = token_insert(st, team_id, scope, name, hash, "api", expires_at_ms, id, ei);
    if (!err)
        err = token_get_locked(st, NULL, id, &tok, ei);
    err = srv_store__finish(st, err, ei);
out:
    srv_store__unlock(st);
    if (!err && json_object_set_new(tok, "token", json_string(secret)) != 0)
        err = DP_ENOMEM;
    if (err) {
        json_decref(tok);
        return err;
    }
    *out = tok;
    return DP_OK;
}

/* ---- Models and datasets ------------------------------------------------------------ */

/* The current row of ASSET_GET/ASSET_LIST as an API object. */
static json_t *asset_json(sqlite3_stmt *s)
{
    int is_model = strcmp(srv_store__col_text(s, 8), "model") == 0;
    json_t *o = json_pack("{s:o, s:o, s:o, s:o}", "id", srv_store__col_str(s, 1), "name",
                          srv_store__col_str(s, 2), "format", srv_store__col_str(s, 3),
                          "created_at", srv_store__col_time(s, 7));
    if (!srv_store__col_null(s, 4))
        json_object_set_new(o, is_model ? "arch" : "builtin", srv_store__col_str(s, 4));
    if (!srv_store__col_null(s, 5)) {
        json_object_set_new(o, "sha256", srv_store__col_str(s, 5));
        json_object_set_new(o, "size", json_integer(srv_store__col_int(s, 6)));
    }
    return o;
}

enum dp_err srv_store__asset_get_locked(struct srv_store *st, const char *team, const char *kind,
                                        const char *id, json_t **out, struct dp_errinfo *ei)
{
    sqlite3_stmt *s = srv_store__stmt(st, STMT_ASSET_GET);
    srv_store__bind_text(s, ":id", id);
    srv_store__bind_text(s, ":team", team);
    srv_store__bind_text(s, ":kind", kind);
    int has_row = 0;
    enum dp_err err = srv_store__step(st, s, &has_row, ei);
    if (err)
        return err;
    if (!has_row)
        return dp_errinfo_set(ei, DP_ENOENT, "no %s '%s'", kind, id);
    *out = asset_json(s);
    sqlite3_reset(s);
    return *out ? DP_OK : DP_ENOMEM;
}

enum dp_err srv_store_asset_create(struct srv_store *st, const struct srv_principal *who,
                                   const struct srv_asset_new *a, json_t **out, int *replayed,
                                   struct dp_errinfo *ei)
{
    char id[SRV_ID_MAX], found[SRV_ID_MAX];
    int64_t now = srv_now_ms();
    *out = NULL;
    *replayed = 0;
    enum dp_err err = srv_id_new(strcmp(a->kind, "model") == 0 ? "mdl_" : "dst_", id);
    if (err)
        return err;
    srv_store__lock(st);
    err = srv_store__begin(st, ei);
    if (err)
        goto out;
    err = srv_store__idem_lookup(st, who, a->kind, a->idem_key, a->req_hash, found, ei);
    if (!err && found[0]) {
        *replayed = 1;
        err = srv_store__asset_get_locked(st, who->team_id, a->kind, found, out, ei);
    } else if (!err) {
        sqlite3_stmt *s;
        if (a->sha256) {
            s = srv_store__stmt(st, STMT_BLOB_INSERT);
            srv_store__bind_text(s, ":sha", a->sha256);
            srv_store__bind_int(s, ":size", a->size);
            srv_store__bind_int(s, ":now", now);
            err = srv_store__exec(st, s, ei);
        }
        if (!err) {
            s = srv_store__stmt(st, STMT_ASSET_INSERT);
            srv_store__bind_text(s, ":id", id);
            srv_store__bind_text(s, ":team", who->team_id);
            srv_store__bind_text(s, ":kind", a->kind);
            srv_store__bind_text(s, ":name", a->name);
            srv_store__bind_text(s, ":format", a->format);
            srv_store__bind_text(s, ":builtin", a->builtin);
            srv_store__bind_text(s, ":sha", a->sha256);
            if (a->sha256)
                srv_store__bind_int(s, ":size", a->size);
            srv_store__bind_int(s, ":now", now);
            err = srv_store__exec(st, s, ei);
        }
        if (!err)
            err = srv_store__idem_record(st, who, a->kind, a->idem_key, a->req_hash, id, ei);
        if (!err)
            err = srv_store__asset_get_locked(st, who->team_id, a->kind, id, out, ei);
    }
    err = srv_store__finish(st, err, ei);
out:
    srv_store__unlock(st);
    if (err) {
        json_decref(*out);
        *out = NULL;
    }
    return err;
}

enum dp_err srv_store_asset_get(struct srv_store *st, const struct srv_principal *who,
                                const char *kind, const char *id, json_t **out,
                                struct dp_errinfo *ei)
{
    srv_store__lock(st);
    enum dp_err err = srv_store__asset_get_locked(st, who->team_id, kind, id, out, ei);
    srv_store__unlock(st);
    return err;
}

enum dp_err srv_store_asset_list(struct srv_store *st, const struct srv_principal *who,
                                 const char *kind, int limit, int64_t cursor, json_t **out,
                                 struct dp_errinfo *ei)
{
    srv_store__lock(st);
    sqlite3_stmt *s = srv_store__stmt(st, STMT_ASSET_LIST);
    srv_store__bind_text(s, ":team", who->team_id);
    srv_store__bind_text(s, ":kind", kind);
    enum dp_err err = list_page(st, s, limit, cursor, asset_json, out, ei);
    srv_store__unlock(st);
    return err;
}

/* ---- Workers ------------------------------------------------------------------------------ */

enum dp_err srv_store__worker_insert(struct srv_store *st, const struct srv_principal *who,
                                     const char *id, const char *name, const char *version,
                                     json_t *capabilities, json_t *device, struct dp_errinfo *ei)
{
    sqlite3_stmt *s = srv_store__stmt(st, STMT_WORKER_INSERT);
    srv_store__bind_text(s, ":id", id);
    srv_store__bind_text(s, ":name", name);
    srv_store__bind_text(s, ":version", version);
    srv_store__bind_int(s, ":now", srv_now_ms());
    srv_store__bind_text(s, ":token", who->token_id);
    srv_store__bind_text(s, ":team", who->team_id[0] ? who->team_id : NULL);
    enum dp_err err = srv_store__bind_json(s, ":caps", capabilities);
    if (!err)
        err = srv_store__bind_json(s, ":device", device);
    if (!err)
        err = srv_store__exec(st, s, ei);
    return err;
}

json_t *srv_store__register_answer(struct srv_store *st, const char *worker_id)
{
    return json_pack("{s:s, s:I, s:I}", "worker_id", worker_id, "heartbeat_s",
                     (json_int_t)(st->cfg.lease_ms / 4000 > 0 ? st->cfg.lease_ms / 4000 : 1),
                     "lease_s", (json_int_t)(st->cfg.lease_ms / 1000));
}

enum dp_err srv_store_worker_register(struct srv_store *st, const struct srv_principal *who,
                                      const char *name, const char *version, json_t *capabilities,
                                      json_t *device, json_t **out, struct dp_errinfo *ei)
{
    char id[SRV_ID_MAX];
    *out = NULL;
    enum dp_err err = srv_id_new("wkr_", id);
    if (err)
        return err;
    srv_store__lock(st);
    err = srv_store__begin(st, ei);
    if (err)
        goto out;
    err = srv_store__worker_insert(st, who, id, name, version, capabilities, device, ei);
    err = srv_store__finish(st, err, ei);
out:
    srv_store__unlock(st);
    if (!err && (*out = srv_store__register_answer(st, id)) == NULL)
        err = DP_ENOMEM;
    return err;
}

/* The current row of WORKER_LIST as an API object. */
static json_t *worker_json(sqlite3_stmt *s)
{
    return json_pack("{s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:b}", "id",
                     srv_store__col_str(s, 1), "name", srv_store__col_str(s, 2), "version",
                     srv_store__col_str(s, 3), "capabilities", srv_store__col_json(s, 4), "device",
                     srv_store__col_json(s, 5), "created_at", srv_store__col_time(s, 6),
                     "last_seen_at", srv_store__col_time(s, 7), "team_id", srv_store__col_str(s, 8),
                     "shared", srv_store__col_int(s, 9) != 0);
}

enum dp_err srv_store_worker_list(struct srv_store *st, const struct srv_principal *who, int limit,
                                  int64_t cursor, json_t **out, struct dp_errinfo *ei)
{
    srv_store__lock(st);
    sqlite3_stmt *s = NULL;
    if (who->scope == SRV_SCOPE_ADMIN) {
        s = srv_store__stmt(st, STMT_WORKER_LIST);
    } else {
        s = srv_store__stmt(st, STMT_WORKER_LIST_TEAM);
        srv_store__bind_text(s, ":team", who->team_id);
    }
    enum dp_err err = list_page(st, s, limit, cursor, worker_json, out, ei);
    srv_store__unlock(st);
    return err;
}

/* ---- Metrics -----------------------------------------------------------------------------------
 */

static enum dp_err counts_by_state(struct srv_store *st, enum srv_stmt_id id, json_t *into,
                                   struct dp_errinfo *ei)
{
    sqlite3_stmt *s = srv_store__stmt(st, id);
    int has_row = 0;
    enum dp_err err = DP_OK;
    for (;;) {
        err = srv_store__step(st, s, &has_row, ei);
        if (err || !has_row)
            break;
        if (json_object_set_new(into, srv_store__col_text(s, 0),
                                json_integer(srv_store__col_int(s, 1))) != 0) {
            err = DP_ENOMEM;
            break;
        }
    }
    sqlite3_reset(s);
    return err;
}

enum dp_err srv_store_metrics(struct srv_store *st, json_t **out, struct dp_errinfo *ei)
{
    json_t *jobs = json_object(), *tasks = json_object();
    int64_t n_workers = 0;
    srv_store__lock(st);
    enum dp_err err = counts_by_state(st, STMT_JOB_COUNTS, jobs, ei);
    if (!err)
        err = counts_by_state(st, STMT_TASK_COUNTS, tasks, ei);
    if (!err) {
        sqlite3_stmt *s = srv_store__stmt(st, STMT_WORKER_COUNT);
        int has_row = 0;
        err = srv_store__step(st, s, &has_row, ei);
        if (!err && has_row)
            n_workers = srv_store__col_int(s, 0);
        sqlite3_reset(s);
    }
    srv_store__unlock(st);
    if (err) {
        json_decref(jobs);
        json_decref(tasks);
        return err;
    }
    *out = json_pack("{s:o, s:o, s:I, s:I}", "jobs", jobs, "tasks", tasks, "workers",
                     (json_int_t)n_workers, "wal_bytes", (json_int_t)srv_store_wal_len(st));
    return *out ? DP_OK : DP_ENOMEM;
}
