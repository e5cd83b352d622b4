/*
 * The store (see store.h): schema migrations, prepared statements, and every
 * read and write of the server's state, including the durable task queue.
 *
 * DESIGN
 * - All SQL text is in the statement table below and in migrations/; this file
 *   binds parameters by name and turns rows into the API's JSON objects.
 * - st->mu serialises every public call. Writes run inside db_begin() /
 *   db_commit() (BEGIN IMMEDIATE ... COMMIT); any failure rolls back, so a
 *   call either happens whole or not at all.
 * - Job state is derived from its tasks in one place (job_refresh), inside
 *   the transaction that changed a task, and every change of job or task
 *   state appends a "state" event: the SSE stream and the database can never
 *   disagree.
 */
#include "server/store.h"

#include <inttypes.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "common/alloc.h"
#include "common/assert.h"
#include "common/log.h"
#include "server/migrations_gen.h"

/* ---- The statements ------------------------------------------------------ */

/* Every SQL statement of the server (besides migrations/): an id and the
 * text, prepared once when the store opens. Parameters are named (:name)
 * and always bound, never formatted in. */
/* RFC 3339 UTC from integer milliseconds, as srv_time_fmt writes it. */
#define SRV_SQL_TIME(col) "strftime('%Y-%m-%dT%H:%M:%fZ', " col " / 1000.0, 'unixepoch')"
#define SRV_SQL_TIME_OR_NULL(col)                                                                  \
    "CASE WHEN " col " IS NULL THEN NULL ELSE " SRV_SQL_TIME(col) " END"

/* The job object of docs/api.md, built by SQLite's JSON functions in one
 * statement (tasks and their per-attempt errors included): a GET never
 * round-trips through jansson, which was half the cost of a job list. */
#define SRV_JOB_JSON                                                                               \
    "json_object('id', j.id, 'name', j.name, 'state', j.state, 'model_id', j.model_id, "           \
    "'dataset_id', j.dataset_id, 'priority', j.priority, "                                         \
    "'created_at', " SRV_SQL_TIME(                                                                 \
        "j.created_at") ", "                                                                       \
                        "'started_at', " SRV_SQL_TIME_OR_NULL(                                     \
                            "j.started_at") ", "                                                   \
                                            "'finished_at', " SRV_SQL_TIME_OR_NULL(                \
                                                "j.finished_at") ", "                              \
                                                                 "'progress', json(j.progress), "  \
                                                                 "'outputs', json(j.outputs), "    \
                                                                 "'error', j.error, "              \
                                                                 "'tasks', (SELECT "               \
                                                                 "json_group_array(json_object('"  \
                                                                 "id', t.id, 'type', t.type, "     \
                                                                 "  'state', t.state, "            \
                                                                 "'attempts', t.attempts, "        \
                                                                 "'max_attempts', "                \
                                                                 "t.max_attempts, "                \
                                                                 "  'depends_on', t.depends_on, "  \
                                                                 "'errors', (SELECT "              \
                                                                 "json_group_array(json_object("   \
                                                                 "    'attempt', e.attempt, "      \
                                                                 "'message', e.message, 'kind', "  \
                                                                 "e.kind)) FROM (SELECT * "        \
                                                                 "    FROM task_errors WHERE "     \
                                                                 "task_id = t.id ORDER BY seq) "   \
                                                                 "e))) "                           \
                                                                 "  FROM (SELECT * FROM tasks "    \
                                                                 "WHERE job_id = j.id ORDER BY "   \
                                                                 "seq) t))"

/* X(ID, SQL) */
#define SRV_STMTS(X)                                                                               \
    X(BEGIN, "BEGIN IMMEDIATE")                                                                    \
    X(COMMIT, "COMMIT")                                                                            \
    X(ROLLBACK, "ROLLBACK")                                                                        \
    /* ---- tokens, teams ---- */                                                                  \
    X(TOKEN_LOOKUP, "SELECT id, scope, team_id FROM tokens WHERE hash = :hash")                    \
    X(TOKEN_ADMIN_ANY, "SELECT 1 FROM tokens WHERE scope = 'admin' LIMIT 1")                       \
    X(TOKEN_INSERT, "INSERT INTO tokens (id, team_id, scope, name, hash, created_at) "             \
                    "VALUES (:id, :team, :scope, :name, :hash, :now)")                             \
    X(TOKEN_BY_HASH, "SELECT 1 FROM tokens WHERE hash = :hash")                                    \
    X(TEAM_INSERT, "INSERT INTO teams (id, name, created_at) VALUES (:id, :name, :now)")           \
    X(TEAM_BY_NAME, "SELECT 1 FROM teams WHERE name = :name")                                      \
    X(TEAM_EXISTS, "SELECT 1 FROM teams WHERE id = :id")                                           \
    X(TEAM_LIST, "SELECT seq, id, name, created_at FROM teams WHERE seq < :cursor "                \
                 "ORDER BY seq DESC LIMIT :limit")                                                 \
    /* ---- blobs, assets, idempotency ---- */                                                     \
    X(BLOB_INSERT, "INSERT OR IGNORE INTO blobs (sha256, size, created_at) "                       \
                   "VALUES (:sha, :size, :now)")                                                   \
    X(BLOB_SIZE, "SELECT size FROM blobs WHERE sha256 = :sha")                                     \
    X(BLOB_TEAM,                                                                                   \
      "SELECT b.size FROM blobs b WHERE b.sha256 = :sha AND (:team IS NULL "                       \
      "OR EXISTS (SELECT 1 FROM assets a WHERE a.sha256 = b.sha256 AND a.team_id = :team) "        \
      "OR EXISTS (SELECT 1 FROM artifacts r WHERE r.sha256 = b.sha256 AND r.team_id = :team))")    \
    X(BLOB_AGENT, "SELECT b.size FROM blobs b WHERE b.sha256 = :sha AND ("                         \
                  "EXISTS (SELECT 1 FROM tasks t JOIN jobs j ON j.id = t.job_id JOIN assets a "    \
                  "        ON a.id IN (j.model_id, j.dataset_id) WHERE t.state = 'leased' "        \
                  "        AND a.sha256 = b.sha256) "                                              \
                  "OR EXISTS (SELECT 1 FROM artifacts r JOIN tasks t ON t.job_id = r.job_id "      \
                  "        WHERE r.sha256 = b.sha256 AND t.state = 'leased'))")                    \
    X(ASSET_INSERT, "INSERT INTO assets (id, team_id, kind, name, format, builtin, sha256, size, " \
                    "created_at) VALUES (:id, :team, :kind, :name, :format, :builtin, :sha, "      \
                    ":size, :now)")                                                                \
    X(ASSET_GET, "SELECT seq, id, name, format, builtin, sha256, size, created_at, kind "          \
                 "FROM assets WHERE id = :id AND team_id = :team AND kind = :kind")                \
    X(ASSET_BY_ID, "SELECT seq, id, name, format, builtin, sha256, size, created_at, kind "        \
                   "FROM assets WHERE id = :id")                                                   \
    X(ASSET_LIST, "SELECT seq, id, name, format, builtin, sha256, size, created_at, kind "         \
                  "FROM assets WHERE team_id = :team AND kind = :kind AND seq < :cursor "          \
                  "ORDER BY seq DESC LIMIT :limit")                                                \
    X(IDEM_GET, "SELECT req_hash, object_id FROM idempotency "                                     \
                "WHERE team_id = :team AND route = :route AND key = :key")                         \
    X(IDEM_INSERT, "INSERT INTO idempotency (team_id, route, key, req_hash, object_id, "           \
                   "created_at) VALUES (:team, :route, :key, :hash, :obj, :now)")                  \
    /* ---- jobs ---- */                                                                           \
    X(JOB_INSERT, "INSERT INTO jobs (id, team_id, name, state, model_id, dataset_id, priority, "   \
                  "max_attempts, params, created_at) VALUES (:id, :team, :name, 'queued', "        \
                  ":model, :dataset, :prio, :maxatt, :params, :now)")                              \
    X(JOB_GET,                                                                                     \
      "SELECT j.seq, " SRV_JOB_JSON " FROM jobs j WHERE j.id = :id AND j.team_id = :team")         \
    X(JOB_LIST, "SELECT j.seq, " SRV_JOB_JSON " FROM jobs j WHERE j.team_id = :team "              \
                "AND j.seq < :cursor ORDER BY j.seq DESC LIMIT :limit")                            \
    X(JOB_LIST_STATE, "SELECT j.seq, " SRV_JOB_JSON " FROM jobs j WHERE j.team_id = :team "        \
                      "AND j.state = :state AND j.seq < :cursor ORDER BY j.seq DESC LIMIT :limit") \
    X(JOB_STATE, "SELECT state, cancel_requested, started_at FROM jobs WHERE id = :id")            \
    X(JOB_TEAM_STATE, "SELECT state FROM jobs WHERE id = :id AND team_id = :team")                 \
    X(JOB_SET_STATE, "UPDATE jobs SET state = :state, started_at = :started, "                     \
                     "finished_at = :finished, error = :error WHERE id = :id")                     \
    X(JOB_CANCEL, "UPDATE jobs SET cancel_requested = 1, state = 'cancelled', "                    \
                  "finished_at = :now WHERE id = :id")                                             \
    X(JOB_RETRY, "UPDATE jobs SET cancel_requested = 0, state = 'queued', finished_at = NULL, "    \
                 "started_at = NULL, "                                                             \
                 "error = NULL WHERE id = :id")                                                    \
    X(JOB_PROGRESS, "UPDATE jobs SET progress = :progress WHERE id = :id")                         \
    X(JOB_OUTPUTS, "UPDATE jobs SET outputs = json_patch(outputs, :outputs) WHERE id = :id")       \
    X(JOB_PARAMS, "SELECT params, model_id, dataset_id FROM jobs WHERE id = :id")                  \
    X(JOB_REPORT, "SELECT json_extract(outputs, '$.report') FROM jobs "                            \
                  "WHERE id = :id AND team_id = :team")                                            \
    X(JOB_COUNTS, "SELECT state, count(*) FROM jobs GROUP BY state")                               \
    /* ---- tasks ---- */                                                                          \
    X(TASK_INSERT, "INSERT INTO tasks (id, job_id, type, state, depends_on, priority, "            \
                   "max_attempts, created_at) VALUES (:id, :job, :type, 'queued', :dep, :prio, "   \
                   ":maxatt, :now)")                                                               \
    X(TASKS_OF_JOB, "SELECT id, type, state, attempts, max_attempts, depends_on FROM tasks "       \
                    "WHERE job_id = :job ORDER BY seq")                                            \
    X(ERRORS_OF_JOB, "SELECT e.task_id, e.attempt, e.message, e.kind FROM task_errors e "          \
                     "JOIN tasks t ON t.id = e.task_id WHERE t.job_id = :job ORDER BY e.seq")      \
    X(TASK_CLAIM,                                                                                  \
      "UPDATE tasks SET state = 'leased', attempts = attempts + 1, fence = fence + 1, "            \
      "lease_owner = :worker, lease_expires_at = :expires WHERE seq = ("                           \
      " SELECT t.seq FROM tasks t WHERE t.state = 'queued' AND t.run_after <= :now"                \
      " AND t.type IN (SELECT value FROM json_each(:caps))"                                        \
      " AND (t.depends_on IS NULL OR EXISTS (SELECT 1 FROM tasks d"                                \
      "      WHERE d.id = t.depends_on AND d.state = 'succeeded'))"                                \
      " ORDER BY t.priority DESC, t.seq LIMIT 1) "                                                 \
      "RETURNING id, job_id, type, attempts, fence, lease_expires_at, checkpoint_sha, depends_on") \
    X(TASK_LEASED, "SELECT job_id, type, attempts, max_attempts, lease_owner FROM tasks "          \
                   "WHERE id = :id AND state = 'leased' AND fence = :fence")                       \
    X(TASK_EXTEND, "UPDATE tasks SET lease_expires_at = :expires WHERE id = :id")                  \
    X(TASK_SET_STATE, "UPDATE tasks SET state = :state, lease_owner = NULL, "                      \
                      "lease_expires_at = NULL, finished_at = :finished, run_after = :run_after, " \
                      "attempts = attempts + :attempt_delta WHERE id = :id")                       \
    X(TASK_SET_OUTPUTS, "UPDATE tasks SET outputs = :outputs WHERE id = :id")                      \
    X(TASK_CHECKPOINT, "UPDATE tasks SET checkpoint_sha = :sha WHERE id = :id")                    \
    X(TASK_OUTPUTS, "SELECT outputs FROM tasks WHERE id = :id")                                    \
    X(TASKS_CANCEL_QUEUED, "UPDATE tasks SET state = 'cancelled', finished_at = :now "             \
                           "WHERE job_id = :job AND state = 'queued'")                             \
    X(TASKS_RETRY, "UPDATE tasks SET state = 'queued', attempts = 0, run_after = 0, "              \
                   "finished_at = NULL WHERE job_id = :job "                                       \
                   "AND state IN ('failed', 'dead', 'cancelled')")                                 \
    X(TASK_STATES_OF_JOB, "SELECT state, count(*) FROM tasks WHERE job_id = :job GROUP BY state")  \
    X(TASK_EXPIRED, "SELECT id, job_id, attempts, max_attempts, lease_owner, type FROM tasks "     \
                    "WHERE state = 'leased' AND lease_expires_at < :now LIMIT 100")                \
    X(TASK_COUNTS, "SELECT state, count(*) FROM tasks GROUP BY state")                             \
    X(TASK_ERROR_INSERT, "INSERT INTO task_errors (task_id, attempt, kind, message, worker_id, "   \
                         "at) VALUES (:task, :attempt, :kind, :message, :worker, :now)")           \
    X(TASK_LAST_ERROR, "SELECT e.message FROM task_errors e JOIN tasks t ON t.id = e.task_id "     \
                       "WHERE t.job_id = :job ORDER BY e.seq DESC LIMIT 1")                        \
    /* ---- events, artifacts ---- */                                                              \
    X(EVENT_INSERT, "INSERT INTO events (job_id, type, data, created_at) "                         \
                    "VALUES (:job, :type, :data, :now)")                                           \
    X(EVENTS_AFTER, "SELECT seq, type, data FROM events WHERE job_id = :job AND seq > :after "     \
                    "ORDER BY seq LIMIT :limit")                                                   \
    X(ARTIFACT_INSERT, "INSERT INTO artifacts (job_id, task_id, team_id, kind, sha256, size, "     \
                       "created_at) SELECT :job, :task, j.team_id, :kind, :sha, :size, :now "      \
                       "FROM jobs j WHERE j.id = :job")                                            \
    X(ARTIFACTS_OF_JOB, "SELECT sha256, kind, task_id, size, created_at FROM artifacts "           \
                        "WHERE job_id = :job ORDER BY seq")                                        \
    /* ---- workers ---- */                                                                        \
    X(WORKER_INSERT, "INSERT INTO workers (id, name, version, capabilities, device, created_at, "  \
                     "last_seen_at) VALUES (:id, :name, :version, :caps, :device, :now, :now)")    \
    X(WORKER_SEEN, "UPDATE workers SET last_seen_at = :now WHERE id = :id")                        \
    X(WORKER_EXISTS, "SELECT 1 FROM workers WHERE id = :id")                                       \
    X(WORKER_LIST, "SELECT seq, id, name, version, capabilities, device, created_at, "             \
                   "last_seen_at FROM workers WHERE seq < :cursor ORDER BY seq DESC LIMIT :limit") \
    X(WORKER_COUNT, "SELECT count(*) FROM workers")

enum srv_stmt_id {
#define SRV__STMT_ENUM(id, sql) STMT_##id,
    SRV_STMTS(SRV__STMT_ENUM)
#undef SRV__STMT_ENUM
        STMT__COUNT
};

static const char *const srv_stmt_sql[STMT__COUNT] = {
#define SRV__STMT_SQL(id, sql) [STMT_##id] = sql,
    SRV_STMTS(SRV__STMT_SQL)
#undef SRV__STMT_SQL
};

struct srv_store {
    sqlite3 *db;
    sqlite3_stmt *stmt[STMT__COUNT];
    pthread_mutex_t mu;
    struct srv_queue_cfg cfg;
    const char *txn_file; /* who opened the current transaction, for diagnostics */
    int txn_line;
    _Atomic uint64_t generation;
};

/* ---- Statement helpers ----------------------------------------------------- */

/* Returns statement id, reset and with its bindings cleared. */
static sqlite3_stmt *db_stmt(struct srv_store *st, enum srv_stmt_id id)
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

static void db_bind_text(sqlite3_stmt *s, const char *name, const char *v)
{
    int i = db_param(s, name);
    int rc = v ? sqlite3_bind_text(s, i, v, -1, SQLITE_TRANSIENT) : sqlite3_bind_null(s, i);
    DP_ASSERT(rc == SQLITE_OK);
}

static void db_bind_int(sqlite3_stmt *s, const char *name, int64_t v)
{
    int rc = sqlite3_bind_int64(s, db_param(s, name), v);
    DP_ASSERT(rc == SQLITE_OK);
}

/* Binds the compact serialisation of j (NULL binds SQL NULL). */
static enum dp_err db_bind_json(sqlite3_stmt *s, const char *name, const json_t *j)
{
    if (j == NULL) {
        db_bind_text(s, name, NULL);
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

static enum dp_err db_fail(struct srv_store *st, struct dp_errinfo *ei, const char *what)
{
    int rc = sqlite3_errcode(st->db);
    enum dp_err code = rc == SQLITE_NOMEM ? DP_ENOMEM : DP_EIO;
    DP_LOG(DP_LOG_ERROR, "store: %s failed: %s (%d)", what, sqlite3_errmsg(st->db), rc);
    return dp_errinfo_set(ei, code, "database error in %s: %s", what, sqlite3_errmsg(st->db));
}

/* Steps a statement that returns no rows (or whose rows are ignored). */
static enum dp_err db_exec(struct srv_store *st, sqlite3_stmt *s, struct dp_errinfo *ei)
{
    int rc;
    do {
        rc = sqlite3_step(s);
    } while (rc == SQLITE_ROW);
    if (rc != SQLITE_DONE)
        return db_fail(st, ei, sqlite3_sql(s));
    return DP_OK;
}

/* Steps once: 1 for a row, 0 for done, negative dp_err on failure. */
static int db_row(struct srv_store *st, sqlite3_stmt *s, struct dp_errinfo *ei)
{
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW)
        return 1;
    if (rc == SQLITE_DONE)
        return 0;
    return (int)db_fail(st, ei, sqlite3_sql(s));
}

static const char *col_text(sqlite3_stmt *s, int i)
{
    return (const char *)sqlite3_column_text(s, i);
}

static int64_t col_int(sqlite3_stmt *s, int i)
{
    return (int64_t)sqlite3_column_int64(s, i);
}

static int col_null(sqlite3_stmt *s, int i)
{
    return sqlite3_column_type(s, i) == SQLITE_NULL;
}

/* The column's JSON text parsed, or JSON null when NULL or unparsable. */
static json_t *col_json(sqlite3_stmt *s, int i)
{
    const char *t = col_text(s, i);
    json_t *j = t ? json_loads(t, JSON_DECODE_ANY, NULL) : NULL;
    return j ? j : json_null();
}

static json_t *json_time(int64_t ms)
{
    char b[32];
    srv_time_fmt(ms, b);
    return json_string(b);
}

/* An RFC 3339 time, or null when the column is NULL. */
static json_t *col_time(sqlite3_stmt *s, int i)
{
    return col_null(s, i) ? json_null() : json_time(col_int(s, i));
}

static json_t *col_str(sqlite3_stmt *s, int i)
{
    const char *t = col_text(s, i);
    return t ? json_string(t) : json_null();
}

/* ---- Transactions ---------------------------------------------------------- */

#define db_begin(st, ei) db__begin((st), (ei), __FILE__, __LINE__)

static enum dp_err db__begin(struct srv_store *st, struct dp_errinfo *ei, const char *file,
                             int line)
{
    DP_ASSERT(st->txn_file == NULL); /* no nesting */
    enum dp_err err = db_exec(st, db_stmt(st, STMT_BEGIN), ei);
    if (err)
        return err;
    st->txn_file = file;
    st->txn_line = line;
    return DP_OK;
}

static enum dp_err db_commit(struct srv_store *st, struct dp_errinfo *ei)
{
    enum dp_err err = db_exec(st, db_stmt(st, STMT_COMMIT), ei);
    if (err) {
        DP_LOG(DP_LOG_ERROR, "store: commit of transaction from %s:%d failed", st->txn_file,
               st->txn_line);
        db_exec(st, db_stmt(st, STMT_ROLLBACK), NULL);
    }
    st->txn_file = NULL;
    return err;
}

static void db_rollback(struct srv_store *st)
{
    if (st->txn_file == NULL)
        return;
    if (sqlite3_get_autocommit(st->db) == 0)
        db_exec(st, db_stmt(st, STMT_ROLLBACK), NULL);
    st->txn_file = NULL;
}

/* Ends a write call: commit on success, roll back otherwise. */
static enum dp_err db_finish(struct srv_store *st, enum dp_err err, struct dp_errinfo *ei)
{
    if (err == DP_OK) {
        err = db_commit(st, ei);
        if (err == DP_OK)
            atomic_fetch_add(&st->generation, 1);
    } else {
        db_rollback(st);
    }
    return err;
}

/* ---- Open, migrate, close --------------------------------------------------- */

static enum dp_err db_exec_sql(struct srv_store *st, const char *sql, struct dp_errinfo *ei)
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

/* Applies every compiled-in migration newer than the database, each with its
 * user_version bump inside one transaction. */
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
        enum dp_err err = db_exec_sql(st, "BEGIN IMMEDIATE", ei);
        if (!err)
            err = db_exec_sql(st, sql, ei);
        dp_free(sql);
        if (!err)
            err = db_exec_sql(st, pragma, ei);
        if (!err)
            err = db_exec_sql(st, "COMMIT", ei);
        if (err) {
            db_exec_sql(st, "ROLLBACK", NULL);
            return dp_errinfo_set(ei, err, "migration %s failed: %s", m->name, ei ? ei->msg : "");
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
    st->cfg = *cfg;
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
    err = db_exec_sql(st,
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
    for (int i = 0; i < STMT__COUNT; i++)
        sqlite3_finalize(st->stmt[i]);
    if (st->db) {
        /* Checkpoint so that a clean shutdown leaves everything in the main file. */
        sqlite3_wal_checkpoint_v2(st->db, NULL, SQLITE_CHECKPOINT_TRUNCATE, NULL, NULL);
        sqlite3_close(st->db);
    }
    pthread_mutex_destroy(&st->mu);
    dp_free(st);
}

int srv_store_schema_version(struct srv_store *st)
{
    pthread_mutex_lock(&st->mu);
    int v = db_user_version(st);
    pthread_mutex_unlock(&st->mu);
    return v;
}

enum dp_err srv_store_integrity_check(struct srv_store *st, struct dp_errinfo *ei)
{
    pthread_mutex_lock(&st->mu);
    sqlite3_stmt *s = NULL;
    enum dp_err err = DP_OK;
    if (sqlite3_prepare_v2(st->db, "PRAGMA integrity_check", -1, &s, NULL) != SQLITE_OK ||
        sqlite3_step(s) != SQLITE_ROW)
        err = db_fail(st, ei, "PRAGMA integrity_check");
    else if (strcmp(col_text(s, 0), "ok") != 0)
        err = dp_errinfo_set(ei, DP_EFORMAT, "integrity_check: %s", col_text(s, 0));
    sqlite3_finalize(s);
    pthread_mutex_unlock(&st->mu);
    return err;
}

uint64_t srv_store_generation(struct srv_store *st)
{
    return atomic_load(&st->generation);
}

/* ---- Small shared pieces ------------------------------------------------------ */

static json_t *list_new(json_t *items, int64_t next)
{
    json_t *o = json_object();
    json_object_set_new(o, "items", items);
    if (next > 0) {
        char b[24];
        snprintf(b, sizeof(b), "%" PRId64, next);
        json_object_set_new(o, "next_cursor", json_string(b));
    } else {
        json_object_set_new(o, "next_cursor", json_null());
    }
    return o;
}

/* cursor 0 means "from the newest". */
static int64_t cursor_bound(int64_t cursor)
{
    return cursor > 0 ? cursor : INT64_MAX;
}

static enum dp_err event_append(struct srv_store *st, const char *job_id, const char *type,
                                json_t *data_take, struct dp_errinfo *ei)
{
    sqlite3_stmt *s = db_stmt(st, STMT_EVENT_INSERT);
    db_bind_text(s, ":job", job_id);
    db_bind_text(s, ":type", type);
    db_bind_int(s, ":now", srv_now_ms());
    enum dp_err err = db_bind_json(s, ":data", data_take);
    json_decref(data_take);
    if (err)
        return err;
    return db_exec(st, s, ei);
}

static enum dp_err event_task_state(struct srv_store *st, const char *job_id, const char *task_id,
                                    const char *type, const char *state, struct dp_errinfo *ei)
{
    json_t *d = json_pack("{s:s, s:s, s:s}", "task_id", task_id, "task", type, "state", state);
    return event_append(st, job_id, "state", d, ei);
}

/* Idempotency: *found_id receives the object created earlier under key. */
static enum dp_err idem_lookup(struct srv_store *st, const struct srv_principal *who,
                               const char *route, const char *key, const char *req_hash,
                               char found_id[SRV_ID_MAX], struct dp_errinfo *ei)
{
    found_id[0] = '\0';
    if (key == NULL)
        return DP_OK;
    sqlite3_stmt *s = db_stmt(st, STMT_IDEM_GET);
    db_bind_text(s, ":team", who->team_id);
    db_bind_text(s, ":route", route);
    db_bind_text(s, ":key", key);
    int r = db_row(st, s, ei);
    if (r < 0)
        return (enum dp_err)r;
    if (r == 0)
        return DP_OK;
    if (strcmp(col_text(s, 0), req_hash) != 0)
        return dp_errinfo_set(
            ei, DP_EEXIST, "Idempotency-Key '%s' was already used with a different request", key);
    snprintf(found_id, SRV_ID_MAX, "%s", col_text(s, 1));
    return DP_OK;
}

static enum dp_err idem_record(struct srv_store *st, const struct srv_principal *who,
                               const char *route, const char *key, const char *req_hash,
                               const char *obj_id, struct dp_errinfo *ei)
{
    if (key == NULL)
        return DP_OK;
    sqlite3_stmt *s = db_stmt(st, STMT_IDEM_INSERT);
    db_bind_text(s, ":team", who->team_id);
    db_bind_text(s, ":route", route);
    db_bind_text(s, ":key", key);
    db_bind_text(s, ":hash", req_hash);
    db_bind_text(s, ":obj", obj_id);
    db_bind_int(s, ":now", srv_now_ms());
    return db_exec(st, s, ei);
}

/* ---- Tokens and teams ----------------------------------------------------------- */

static enum srv_scope scope_parse(const char *s)
{
    if (strcmp(s, "admin") == 0)
        return SRV_SCOPE_ADMIN;
    if (strcmp(s, "agent") == 0)
        return SRV_SCOPE_AGENT;
    return SRV_SCOPE_TEAM;
}

enum dp_err srv_store_token_lookup(struct srv_store *st, const char *hash,
                                   struct srv_principal *out)
{
    pthread_mutex_lock(&st->mu);
    sqlite3_stmt *s = db_stmt(st, STMT_TOKEN_LOOKUP);
    db_bind_text(s, ":hash", hash);
    int r = db_row(st, s, NULL);
    enum dp_err err = DP_ENOENT;
    if (r < 0) {
        err = (enum dp_err)r;
    } else if (r == 1) {
        snprintf(out->token_id, sizeof(out->token_id), "%s", col_text(s, 0));
        out->scope = scope_parse(col_text(s, 1));
        snprintf(out->team_id, sizeof(out->team_id), "%s", col_null(s, 2) ? "" : col_text(s, 2));
        err = DP_OK;
    }
    sqlite3_reset(s);
    pthread_mutex_unlock(&st->mu);
    return err;
}

static enum dp_err token_insert(struct srv_store *st, const char *team_id, const char *scope,
                                const char *name, const char *hash, char id[SRV_ID_MAX],
                                struct dp_errinfo *ei)
{
    enum dp_err err = srv_id_new("tok_", id);
    if (err)
        return err;
    sqlite3_stmt *s = db_stmt(st, STMT_TOKEN_INSERT);
    db_bind_text(s, ":id", id);
    db_bind_text(s, ":team", team_id);
    db_bind_text(s, ":scope", scope);
    db_bind_text(s, ":name", name);
    db_bind_text(s, ":hash", hash);
    db_bind_int(s, ":now", srv_now_ms());
    return db_exec(st, s, ei);
}

enum dp_err srv_store_admin_ensure(struct srv_store *st, const char *env_hash,
                                   char new_secret[SRV_TOKEN_LEN], struct dp_errinfo *ei)
{
    char id[SRV_ID_MAX];
    new_secret[0] = '\0';
    pthread_mutex_lock(&st->mu);
    enum dp_err err = db_begin(st, ei);
    if (err)
        goto out;
    if (env_hash) {
        sqlite3_stmt *s = db_stmt(st, STMT_TOKEN_BY_HASH);
        db_bind_text(s, ":hash", env_hash);
        int r = db_row(st, s, ei);
        if (r < 0)
            err = (enum dp_err)r;
        else if (r == 0)
            err = token_insert(st, NULL, "admin", "env", env_hash, id, ei);
    } else {
        sqlite3_stmt *s = db_stmt(st, STMT_TOKEN_ADMIN_ANY);
        int r = db_row(st, s, ei);
        if (r < 0) {
            err = (enum dp_err)r;
        } else if (r == 0) {
            char hash[65];
            err = srv_token_new(new_secret);
            if (!err) {
                srv_token_hash(new_secret, hash);
                err = token_insert(st, NULL, "admin", "first-start", hash, id, ei);
            }
        }
    }
    err = db_finish(st, err, ei);
out:
    if (err)
        new_secret[0] = '\0';
    pthread_mutex_unlock(&st->mu);
    return err;
}

enum dp_err srv_store_agent_token_mint(struct srv_store *st, const char *name,
                                       char secret[SRV_TOKEN_LEN], struct dp_errinfo *ei)
{
    char id[SRV_ID_MAX], hash[65];
    enum dp_err err = srv_token_new(secret);
    if (err)
        return err;
    srv_token_hash(secret, hash);
    pthread_mutex_lock(&st->mu);
    err = db_begin(st, ei);
    if (!err)
        err = db_finish(st, token_insert(st, NULL, "agent", name, hash, id, ei), ei);
    pthread_mutex_unlock(&st->mu);
    return err;
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
    pthread_mutex_lock(&st->mu);
    err = db_begin(st, ei);
    if (err)
        goto out;
    sqlite3_stmt *s = db_stmt(st, STMT_TEAM_BY_NAME);
    db_bind_text(s, ":name", name);
    int r = db_row(st, s, ei);
    if (r < 0)
        err = (enum dp_err)r;
    else if (r == 1)
        err = dp_errinfo_set(ei, DP_EEXIST, "a team named '%s' already exists", name);
    if (!err) {
        s = db_stmt(st, STMT_TEAM_INSERT);
        db_bind_text(s, ":id", id);
        db_bind_text(s, ":name", name);
        db_bind_int(s, ":now", now);
        err = db_exec(st, s, ei);
    }
    err = db_finish(st, err, ei);
out:
    pthread_mutex_unlock(&st->mu);
    if (!err)
        *out = json_pack("{s:s, s:s, s:o}", "id", id, "name", name, "created_at", json_time(now));
    return err;
}

enum dp_err srv_store_team_list(struct srv_store *st, int limit, int64_t cursor, json_t **out,
                                struct dp_errinfo *ei)
{
    json_t *items = json_array();
    int64_t last = 0;
    int n = 0, r;
    pthread_mutex_lock(&st->mu);
    sqlite3_stmt *s = db_stmt(st, STMT_TEAM_LIST);
    db_bind_int(s, ":cursor", cursor_bound(cursor));
    db_bind_int(s, ":limit", limit);
    while ((r = db_row(st, s, ei)) == 1) {
        last = col_int(s, 0);
        n++;
        json_array_append_new(items, json_pack("{s:o, s:o, s:o}", "id", col_str(s, 1), "name",
                                               col_str(s, 2), "created_at", col_time(s, 3)));
    }
    sqlite3_reset(s);
    pthread_mutex_unlock(&st->mu);
    if (r < 0) {
        json_decref(items);
        return (enum dp_err)r;
    }
    *out = list_new(items, n == limit ? last : 0);
    return DP_OK;
}

enum dp_err srv_store_token_create(struct srv_store *st, const char *team_id, const char *scope,
                                   const char *name, json_t **out, struct dp_errinfo *ei)
{
    char id[SRV_ID_MAX], secret[SRV_TOKEN_LEN], hash[65];
    *out = NULL;
    enum dp_err err = srv_token_new(secret);
    if (err)
        return err;
    srv_token_hash(secret, hash);
    pthread_mutex_lock(&st->mu);
    err = db_begin(st, ei);
    if (err)
        goto out;
    sqlite3_stmt *s = db_stmt(st, STMT_TEAM_EXISTS);
    db_bind_text(s, ":id", team_id);
    int r = db_row(st, s, ei);
    if (r < 0)
        err = (enum dp_err)r;
    else if (r == 0)
        err = dp_errinfo_set(ei, DP_EINVAL, "team_id: no team '%s'", team_id);
    if (!err)
        err = token_insert(st, team_id, scope, name, hash, id, ei);
    err = db_finish(st, err, ei);
out:
    pthread_mutex_unlock(&st->mu);
    if (!err)
        *out = json_pack("{s:s, s:s, s:s, s:s, s:s}", "id", id, "token", secret, "scope", scope,
                         "team_id", team_id, "name", name);
    return err;
}

/* ---- Models and datasets ------------------------------------------------------------ */

/* The current row of ASSET_GET/ASSET_LIST as an API object. */
static json_t *asset_json(sqlite3_stmt *s)
{
    int is_model = strcmp(col_text(s, 8), "model") == 0;
    json_t *o = json_pack("{s:o, s:o, s:o, s:o}", "id", col_str(s, 1), "name", col_str(s, 2),
                          "format", col_str(s, 3), "created_at", col_time(s, 7));
    if (!col_null(s, 4))
        json_object_set_new(o, is_model ? "arch" : "builtin", col_str(s, 4));
    if (!col_null(s, 5)) {
        json_object_set_new(o, "sha256", col_str(s, 5));
        json_object_set_new(o, "size", json_integer(col_int(s, 6)));
    }
    return o;
}

static enum dp_err asset_get_locked(struct srv_store *st, const char *team, const char *kind,
                                    const char *id, json_t **out, struct dp_errinfo *ei)
{
    sqlite3_stmt *s = db_stmt(st, STMT_ASSET_GET);
    db_bind_text(s, ":id", id);
    db_bind_text(s, ":team", team);
    db_bind_text(s, ":kind", kind);
    int r = db_row(st, s, ei);
    if (r < 0)
        return (enum dp_err)r;
    if (r == 0)
        return dp_errinfo_set(ei, DP_ENOENT, "no %s '%s'", kind, id);
    *out = asset_json(s);
    sqlite3_reset(s);
    return DP_OK;
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
    pthread_mutex_lock(&st->mu);
    err = db_begin(st, ei);
    if (err)
        goto out;
    err = idem_lookup(st, who, a->kind, a->idem_key, a->req_hash, found, ei);
    if (!err && found[0]) {
        *replayed = 1;
        err = asset_get_locked(st, who->team_id, a->kind, found, out, ei);
    } else if (!err) {
        sqlite3_stmt *s;
        if (a->sha256) {
            s = db_stmt(st, STMT_BLOB_INSERT);
            db_bind_text(s, ":sha", a->sha256);
            db_bind_int(s, ":size", a->size);
            db_bind_int(s, ":now", now);
            err = db_exec(st, s, ei);
        }
        if (!err) {
            s = db_stmt(st, STMT_ASSET_INSERT);
            db_bind_text(s, ":id", id);
            db_bind_text(s, ":team", who->team_id);
            db_bind_text(s, ":kind", a->kind);
            db_bind_text(s, ":name", a->name);
            db_bind_text(s, ":format", a->format);
            db_bind_text(s, ":builtin", a->builtin);
            db_bind_text(s, ":sha", a->sha256);
            if (a->sha256)
                db_bind_int(s, ":size", a->size);
            db_bind_int(s, ":now", now);
            err = db_exec(st, s, ei);
        }
        if (!err)
            err = idem_record(st, who, a->kind, a->idem_key, a->req_hash, id, ei);
        if (!err)
            err = asset_get_locked(st, who->team_id, a->kind, id, out, ei);
    }
    err = db_finish(st, err, ei);
out:
    pthread_mutex_unlock(&st->mu);
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
    pthread_mutex_lock(&st->mu);
    enum dp_err err = asset_get_locked(st, who->team_id, kind, id, out, ei);
    pthread_mutex_unlock(&st->mu);
    return err;
}

enum dp_err srv_store_asset_list(struct srv_store *st, const struct srv_principal *who,
                                 const char *kind, int limit, int64_t cursor, json_t **out,
                                 struct dp_errinfo *ei)
{
    json_t *items = json_array();
    int64_t last = 0;
    int n = 0, r;
    pthread_mutex_lock(&st->mu);
    sqlite3_stmt *s = db_stmt(st, STMT_ASSET_LIST);
    db_bind_text(s, ":team", who->team_id);
    db_bind_text(s, ":kind", kind);
    db_bind_int(s, ":cursor", cursor_bound(cursor));
    db_bind_int(s, ":limit", limit);
    while ((r = db_row(st, s, ei)) == 1) {
        last = col_int(s, 0);
        n++;
        json_array_append_new(items, asset_json(s));
    }
    sqlite3_reset(s);
    pthread_mutex_unlock(&st->mu);
    if (r < 0) {
        json_decref(items);
        return (enum dp_err)r;
    }
    *out = list_new(items, n == limit ? last : 0);
    return DP_OK;
}

/* ---- Jobs: reading ------------------------------------------------------------------- */

/* The job as JSON text (dp_malloc'd) for the caller's team. */
static enum dp_err job_text_locked(struct srv_store *st, const char *team, const char *id,
                                   char **out, struct dp_errinfo *ei)
{
    sqlite3_stmt *s = db_stmt(st, STMT_JOB_GET);
    db_bind_text(s, ":id", id);
    db_bind_text(s, ":team", team);
    int r = db_row(st, s, ei);
    if (r < 0)
        return (enum dp_err)r;
    if (r == 0)
        return dp_errinfo_set(ei, DP_ENOENT, "no job '%s'", id);
    *out = dp_strdup(col_text(s, 1));
    sqlite3_reset(s);
    return *out ? DP_OK : DP_ENOMEM;
}

static enum dp_err job_get_locked(struct srv_store *st, const char *team, const char *id,
                                  json_t **out, struct dp_errinfo *ei)
{
    char *text = NULL;
    enum dp_err err = job_text_locked(st, team, id, &text, ei);
    if (err)
        return err;
    *out = json_loads(text, 0, NULL);
    dp_free(text);
    return *out ? DP_OK : DP_ENOMEM;
}

enum dp_err srv_store_job_get(struct srv_store *st, const struct srv_principal *who, const char *id,
                              json_t **out, struct dp_errinfo *ei)
{
    pthread_mutex_lock(&st->mu);
    enum dp_err err = job_get_locked(st, who->team_id, id, out, ei);
    pthread_mutex_unlock(&st->mu);
    return err;
}

enum dp_err srv_store_job_get_text(struct srv_store *st, const struct srv_principal *who,
                                   const char *id, char **out, struct dp_errinfo *ei)
{
    pthread_mutex_lock(&st->mu);
    enum dp_err err = job_text_locked(st, who->team_id, id, out, ei);
    pthread_mutex_unlock(&st->mu);
    return err;
}

/* Appends n bytes to a growing text buffer; -1 on OOM. */
static int text_add(char **buf, size_t *len, size_t *cap, const char *s, size_t n)
{
    if (n + 1 > *cap - *len) {
        size_t c = *cap ? *cap : 4096;
        while (n + 1 > c - *len)
            c *= 2;
        char *g = dp_realloc(*buf, c);
        if (g == NULL)
            return -1;
        *buf = g;
        *cap = c;
    }
    memcpy(*buf + *len, s, n);
    *len += n;
    (*buf)[*len] = '\0';
    return 0;
}

enum dp_err srv_store_job_list_text(struct srv_store *st, const struct srv_principal *who,
                                    const char *state, int limit, int64_t cursor, char **out,
                                    struct dp_errinfo *ei)
{
    char *buf = NULL;
    size_t len = 0, cap = 0;
    int64_t last = 0;
    int n = 0, r, oom = text_add(&buf, &len, &cap, "{\"items\":[", 10);
    pthread_mutex_lock(&st->mu);
    sqlite3_stmt *s = db_stmt(st, state ? STMT_JOB_LIST_STATE : STMT_JOB_LIST);
    db_bind_text(s, ":team", who->team_id);
    if (state)
        db_bind_text(s, ":state", state);
    db_bind_int(s, ":cursor", cursor_bound(cursor));
    db_bind_int(s, ":limit", limit);
    while ((r = db_row(st, s, ei)) == 1) {
        const char *job = col_text(s, 1);
        last = col_int(s, 0);
        if (n++ > 0)
            oom |= text_add(&buf, &len, &cap, ",", 1);
        oom |= text_add(&buf, &len, &cap, job, strlen(job));
    }
    sqlite3_reset(s);
    pthread_mutex_unlock(&st->mu);
    char tail[64];
    if (n == limit)
        snprintf(tail, sizeof(tail), "],\"next_cursor\":\"%" PRId64 "\"}", last);
    else
        snprintf(tail, sizeof(tail), "],\"next_cursor\":null}");
    oom |= text_add(&buf, &len, &cap, tail, strlen(tail));
    if (r < 0 || oom) {
        dp_free(buf);
        return r < 0 ? (enum dp_err)r : DP_ENOMEM;
    }
    *out = buf;
    return DP_OK;
}

enum dp_err srv_store_job_list(struct srv_store *st, const struct srv_principal *who,
                               const char *state, int limit, int64_t cursor, json_t **out,
                               struct dp_errinfo *ei)
{
    char *text = NULL;
    enum dp_err err = srv_store_job_list_text(st, who, state, limit, cursor, &text, ei);
    if (err)
        return err;
    *out = json_loads(text, 0, NULL);
    dp_free(text);
    return *out ? DP_OK : DP_ENOMEM;
}

/* ---- Jobs: state machine ----------------------------------------------------------------- */

static int job_state_terminal(const char *s)
{
    return strcmp(s, "succeeded") == 0 || strcmp(s, "failed") == 0 || strcmp(s, "cancelled") == 0;
}

/*
 * Derives the job's state from its tasks and stores it, appending a "state"
 * event when it changed. Rules: a cancel request wins; any failed or dead
 * task fails the job (its queued successors are cancelled, they can never
 * run); all tasks succeeded is success; any task leased or done means
 * running; else queued. Inside a transaction.
 */
static enum dp_err job_refresh(struct srv_store *st, const char *job_id, struct dp_errinfo *ei)
{
    sqlite3_stmt *s = db_stmt(st, STMT_JOB_STATE);
    db_bind_text(s, ":id", job_id);
    int r = db_row(st, s, ei);
    if (r <= 0)
        return r < 0 ? (enum dp_err)r : dp_errinfo_set(ei, DP_ENOENT, "no job '%s'", job_id);
    char old[16];
    snprintf(old, sizeof(old), "%s", col_text(s, 0));
    int cancel = (int)col_int(s, 1);
    int64_t started = col_null(s, 2) ? 0 : col_int(s, 2);
    sqlite3_reset(s);
    if (cancel)
        return DP_OK; /* cancelled stays cancelled until a retry */

    int64_t n_total = 0, n_ok = 0, n_bad = 0, n_active = 0;
    s = db_stmt(st, STMT_TASK_STATES_OF_JOB);
    db_bind_text(s, ":job", job_id);
    while ((r = db_row(st, s, ei)) == 1) {
        const char *ts = col_text(s, 0);
        int64_t n = col_int(s, 1);
        n_total += n;
        if (strcmp(ts, "succeeded") == 0)
            n_ok += n;
        else if (strcmp(ts, "failed") == 0 || strcmp(ts, "dead") == 0)
            n_bad += n;
        else if (strcmp(ts, "leased") == 0)
            n_active += n;
    }
    if (r < 0)
        return (enum dp_err)r;
    const char *state = "queued";
    if (n_bad > 0)
        state = "failed";
    else if (n_ok == n_total)
        state = "succeeded";
    else if (n_ok > 0 || n_active > 0 || started)
        state = "running";
    if (strcmp(state, old) == 0)
        return DP_OK;

    int64_t now = srv_now_ms();
    char *error = NULL;
    enum dp_err err = DP_OK;
    if (strcmp(state, "failed") == 0) {
        s = db_stmt(st, STMT_TASK_LAST_ERROR);
        db_bind_text(s, ":job", job_id);
        r = db_row(st, s, ei);
        if (r < 0)
            return (enum dp_err)r;
        error = dp_strdup(r == 1 ? col_text(s, 0) : "a task failed");
        sqlite3_reset(s);
        if (error == NULL)
            return DP_ENOMEM;
        s = db_stmt(st, STMT_TASKS_CANCEL_QUEUED);
        db_bind_text(s, ":job", job_id);
        db_bind_int(s, ":now", now);
        err = db_exec(st, s, ei);
    }
    if (!err) {
        s = db_stmt(st, STMT_JOB_SET_STATE);
        db_bind_text(s, ":id", job_id);
        db_bind_text(s, ":state", state);
        db_bind_int(s, ":started", started ? started : now);
        if (strcmp(state, "queued") == 0 && !started)
            db_bind_text(s, ":started", NULL);
        if (job_state_terminal(state))
            db_bind_int(s, ":finished", now);
        db_bind_text(s, ":error", error);
        err = db_exec(st, s, ei);
    }
    if (!err) {
        json_t *d = json_pack("{s:s, s:s}", "job_state", state, "previous", old);
        if (error)
            json_object_set_new(d, "error", json_string(error));
        err = event_append(st, job_id, "state", d, ei);
    }
    dp_free(error);
    return err;
}

static const char *const srv_task_chain[] = {"train", "compress", "retrain", "export"};

enum dp_err srv_store_job_create(struct srv_store *st, const struct srv_principal *who,
                                 const struct srv_job_new *j, json_t **out, int *replayed,
                                 struct dp_errinfo *ei)
{
    char id[SRV_ID_MAX], found[SRV_ID_MAX], prev[SRV_ID_MAX] = "";
    int64_t now = srv_now_ms();
    json_t *model = NULL, *dataset = NULL;
    *out = NULL;
    *replayed = 0;
    enum dp_err err = srv_id_new("job_", id);
    if (err)
        return err;
    pthread_mutex_lock(&st->mu);
    err = db_begin(st, ei);
    if (err)
        goto out;
    err = idem_lookup(st, who, "job", j->idem_key, j->req_hash, found, ei);
    if (err)
        goto done;
    if (found[0]) {
        *replayed = 1;
        err = job_get_locked(st, who->team_id, found, out, ei);
        goto done;
    }
    if (asset_get_locked(st, who->team_id, "model", j->model_id, &model, NULL) != DP_OK) {
        err = dp_errinfo_set(ei, DP_EINVAL, "model_id: no model '%s' in this team", j->model_id);
        goto done;
    }
    if (asset_get_locked(st, who->team_id, "dataset", j->dataset_id, &dataset, NULL) != DP_OK) {
        err = dp_errinfo_set(ei, DP_EINVAL, "dataset_id: no dataset '%s' in this team",
                             j->dataset_id);
        goto done;
    }
    if (json_object_get(model, "arch") && !j->has_pretrain) {
        err = dp_errinfo_set(ei, DP_EINVAL,
                             "pretrain: required because model '%s' is a built-in architecture "
                             "without weights",
                             j->model_id);
        goto done;
    }
    sqlite3_stmt *s = db_stmt(st, STMT_JOB_INSERT);
    db_bind_text(s, ":id", id);
    db_bind_text(s, ":team", who->team_id);
    db_bind_text(s, ":name", j->name);
    db_bind_text(s, ":model", j->model_id);
    db_bind_text(s, ":dataset", j->dataset_id);
    db_bind_int(s, ":prio", j->priority);
    db_bind_int(s, ":maxatt", j->max_attempts);
    db_bind_int(s, ":now", now);
    err = db_bind_json(s, ":params", j->params);
    if (!err)
        err = db_exec(st, s, ei);
    for (size_t i = j->has_pretrain ? 0 : 1; !err && i < 4; i++) {
        char tid[SRV_ID_MAX];
        err = srv_id_new("tsk_", tid);
        if (err)
            break;
        s = db_stmt(st, STMT_TASK_INSERT);
        db_bind_text(s, ":id", tid);
        db_bind_text(s, ":job", id);
        db_bind_text(s, ":type", srv_task_chain[i]);
        db_bind_text(s, ":dep", prev[0] ? prev : NULL);
        db_bind_int(s, ":prio", j->priority);
        db_bind_int(s, ":maxatt", j->max_attempts);
        db_bind_int(s, ":now", now);
        err = db_exec(st, s, ei);
        snprintf(prev, sizeof(prev), "%s", tid);
    }
    if (!err)
        err = event_append(st, id, "state", json_pack("{s:s}", "job_state", "queued"), ei);
    if (!err)
        err = idem_record(st, who, "job", j->idem_key, j->req_hash, id, ei);
    if (!err)
        err = job_get_locked(st, who->team_id, id, out, ei);
done:
    err = db_finish(st, err, ei);
out:
    pthread_mutex_unlock(&st->mu);
    json_decref(model);
    json_decref(dataset);
    if (err) {
        json_decref(*out);
        *out = NULL;
    }
    return err;
}

/* Reads the job's state for the caller's team into state (16 bytes). */
static enum dp_err job_team_state(struct srv_store *st, const char *team, const char *id,
                                  char state[16], struct dp_errinfo *ei)
{
    sqlite3_stmt *s = db_stmt(st, STMT_JOB_TEAM_STATE);
    db_bind_text(s, ":id", id);
    db_bind_text(s, ":team", team);
    int r = db_row(st, s, ei);
    if (r < 0)
        return (enum dp_err)r;
    if (r == 0)
        return dp_errinfo_set(ei, DP_ENOENT, "no job '%s'", id);
    snprintf(state, 16, "%s", col_text(s, 0));
    sqlite3_reset(s);
    return DP_OK;
}

enum dp_err srv_store_job_cancel(struct srv_store *st, const struct srv_principal *who,
                                 const char *id, json_t **out, struct dp_errinfo *ei)
{
    char state[16];
    int64_t now = srv_now_ms();
    *out = NULL;
    pthread_mutex_lock(&st->mu);
    enum dp_err err = db_begin(st, ei);
    if (err)
        goto out;
    err = job_team_state(st, who->team_id, id, state, ei);
    if (!err && (strcmp(state, "succeeded") == 0 || strcmp(state, "failed") == 0))
        err = dp_errinfo_set(ei, DP_EEXIST, "job '%s' has already %s", id, state);
    if (!err && strcmp(state, "cancelled") != 0) {
        sqlite3_stmt *s = db_stmt(st, STMT_JOB_CANCEL);
        db_bind_text(s, ":id", id);
        db_bind_int(s, ":now", now);
        err = db_exec(st, s, ei);
        if (!err) {
            /* Queued tasks stop now; a leased one hears it in its heartbeat. */
            s = db_stmt(st, STMT_TASKS_CANCEL_QUEUED);
            db_bind_text(s, ":job", id);
            db_bind_int(s, ":now", now);
            err = db_exec(st, s, ei);
        }
        if (!err)
            err = event_append(st, id, "state",
                               json_pack("{s:s, s:s}", "job_state", "cancelled", "previous", state),
                               ei);
    }
    if (!err)
        err = job_get_locked(st, who->team_id, id, out, ei);
    err = db_finish(st, err, ei);
out:
    pthread_mutex_unlock(&st->mu);
    if (err) {
        json_decref(*out);
        *out = NULL;
    }
    return err;
}

enum dp_err srv_store_job_retry(struct srv_store *st, const struct srv_principal *who,
                                const char *id, json_t **out, struct dp_errinfo *ei)
{
    char state[16];
    *out = NULL;
    pthread_mutex_lock(&st->mu);
    enum dp_err err = db_begin(st, ei);
    if (err)
        goto out;
    err = job_team_state(st, who->team_id, id, state, ei);
    if (!err && strcmp(state, "failed") != 0 && strcmp(state, "cancelled") != 0)
        err = dp_errinfo_set(ei, DP_EEXIST, "job '%s' is %s; only failed or cancelled jobs retry",
                             id, state);
    if (!err) {
        sqlite3_stmt *s = db_stmt(st, STMT_TASKS_RETRY);
        db_bind_text(s, ":job", id);
        err = db_exec(st, s, ei);
    }
    if (!err) {
        sqlite3_stmt *s = db_stmt(st, STMT_JOB_RETRY);
        db_bind_text(s, ":id", id);
        err = db_exec(st, s, ei);
    }
    if (!err)
        err = event_append(st, id, "state",
                           json_pack("{s:s, s:s}", "job_state", "queued", "previous", state), ei);
    if (!err)
        err = job_refresh(st, id, ei);
    if (!err)
        err = job_get_locked(st, who->team_id, id, out, ei);
    err = db_finish(st, err, ei);
out:
    pthread_mutex_unlock(&st->mu);
    if (err) {
        json_decref(*out);
        *out = NULL;
    }
    return err;
}

enum dp_err srv_store_job_report(struct srv_store *st, const struct srv_principal *who,
                                 const char *id, char sha[65], struct dp_errinfo *ei)
{
    pthread_mutex_lock(&st->mu);
    sqlite3_stmt *s = db_stmt(st, STMT_JOB_REPORT);
    db_bind_text(s, ":id", id);
    db_bind_text(s, ":team", who->team_id);
    int r = db_row(st, s, ei);
    enum dp_err err = DP_OK;
    if (r < 0)
        err = (enum dp_err)r;
    else if (r == 0)
        err = dp_errinfo_set(ei, DP_ENOENT, "no job '%s'", id);
    else if (col_null(s, 0))
        err = dp_errinfo_set(ei, DP_ENOENT, "report_not_ready");
    else
        snprintf(sha, 65, "%s", col_text(s, 0));
    sqlite3_reset(s);
    pthread_mutex_unlock(&st->mu);
    return err;
}

enum dp_err srv_store_job_artifacts(struct srv_store *st, const struct srv_principal *who,
                                    const char *id, json_t **out, struct dp_errinfo *ei)
{
    char state[16];
    json_t *items = json_array();
    int r = 0;
    pthread_mutex_lock(&st->mu);
    enum dp_err err = job_team_state(st, who->team_id, id, state, ei);
    if (!err) {
        sqlite3_stmt *s = db_stmt(st, STMT_ARTIFACTS_OF_JOB);
        db_bind_text(s, ":job", id);
        while ((r = db_row(st, s, ei)) == 1)
            json_array_append_new(items, json_pack("{s:o, s:o, s:o, s:I, s:o}", "sha256",
                                                   col_str(s, 0), "kind", col_str(s, 1), "task_id",
                                                   col_str(s, 2), "size", (json_int_t)col_int(s, 3),
                                                   "created_at", col_time(s, 4)));
        sqlite3_reset(s);
        if (r < 0)
            err = (enum dp_err)r;
    }
    pthread_mutex_unlock(&st->mu);
    if (err) {
        json_decref(items);
        return err;
    }
    *out = json_pack("{s:o}", "items", items);
    return DP_OK;
}

enum dp_err srv_store_events_after(struct srv_store *st, const struct srv_principal *who,
                                   const char *job_id, int64_t after, int max, json_t **out,
                                   int *terminal, struct dp_errinfo *ei)
{
    char state[16];
    json_t *items = json_array();
    int r = 0;
    pthread_mutex_lock(&st->mu);
    /* One read transaction: the events and the state come from one snapshot. */
    enum dp_err err = db_exec_sql(st, "BEGIN", ei);
    if (err)
        goto out;
    err = job_team_state(st, who->team_id, job_id, state, ei);
    if (!err) {
        sqlite3_stmt *s = db_stmt(st, STMT_EVENTS_AFTER);
        db_bind_text(s, ":job", job_id);
        db_bind_int(s, ":after", after);
        db_bind_int(s, ":limit", max);
        while ((r = db_row(st, s, ei)) == 1)
            json_array_append_new(items,
                                  json_pack("{s:I, s:o, s:o}", "id", (json_int_t)col_int(s, 0),
                                            "type", col_str(s, 1), "data", col_json(s, 2)));
        sqlite3_reset(s);
        if (r < 0)
            err = (enum dp_err)r;
    }
    db_exec_sql(st, "COMMIT", NULL);
out:
    pthread_mutex_unlock(&st->mu);
    if (err) {
        json_decref(items);
        return err;
    }
    *terminal = job_state_terminal(state);
    *out = items;
    return DP_OK;
}

enum dp_err srv_store_blob_team(struct srv_store *st, const struct srv_principal *who,
                                const char *sha, int64_t *size, struct dp_errinfo *ei)
{
    pthread_mutex_lock(&st->mu);
    sqlite3_stmt *s = db_stmt(st, STMT_BLOB_TEAM);
    db_bind_text(s, ":sha", sha);
    db_bind_text(s, ":team", who->scope == SRV_SCOPE_ADMIN ? NULL : who->team_id);
    int r = db_row(st, s, ei);
    enum dp_err err = DP_OK;
    if (r < 0)
        err = (enum dp_err)r;
    else if (r == 0)
        err = dp_errinfo_set(ei, DP_ENOENT, "no artifact '%s'", sha);
    else
        *size = col_int(s, 0);
    sqlite3_reset(s);
    pthread_mutex_unlock(&st->mu);
    return err;
}

enum dp_err srv_store_blob_agent(struct srv_store *st, const char *sha, int64_t *size,
                                 struct dp_errinfo *ei)
{
    pthread_mutex_lock(&st->mu);
    sqlite3_stmt *s = db_stmt(st, STMT_BLOB_AGENT);
    db_bind_text(s, ":sha", sha);
    int r = db_row(st, s, ei);
    enum dp_err err = DP_OK;
    if (r < 0)
        err = (enum dp_err)r;
    else if (r == 0)
        err = dp_errinfo_set(ei, DP_ENOENT, "no blob '%s' referenced by a leased task", sha);
    else
        *size = col_int(s, 0);
    sqlite3_reset(s);
    pthread_mutex_unlock(&st->mu);
    return err;
}

/* ---- Workers ------------------------------------------------------------------------------ */

enum dp_err srv_store_worker_register(struct srv_store *st, const char *name, const char *version,
                                      json_t *capabilities, json_t *device, json_t **out,
                                      struct dp_errinfo *ei)
{
    char id[SRV_ID_MAX];
    *out = NULL;
    enum dp_err err = srv_id_new("wkr_", id);
    if (err)
        return err;
    pthread_mutex_lock(&st->mu);
    err = db_begin(st, ei);
    if (err)
        goto out;
    sqlite3_stmt *s = db_stmt(st, STMT_WORKER_INSERT);
    db_bind_text(s, ":id", id);
    db_bind_text(s, ":name", name);
    db_bind_text(s, ":version", version);
    db_bind_int(s, ":now", srv_now_ms());
    err = db_bind_json(s, ":caps", capabilities);
    if (!err)
        err = db_bind_json(s, ":device", device);
    if (!err)
        err = db_exec(st, s, ei);
    err = db_finish(st, err, ei);
out:
    pthread_mutex_unlock(&st->mu);
    if (!err)
        *out = json_pack("{s:s, s:I, s:I}", "worker_id", id, "heartbeat_s",
                         (json_int_t)(st->cfg.lease_ms / 4000 > 0 ? st->cfg.lease_ms / 4000 : 1),
                         "lease_s", (json_int_t)(st->cfg.lease_ms / 1000));
    return err;
}

enum dp_err srv_store_worker_list(struct srv_store *st, int limit, int64_t cursor, json_t **out,
                                  struct dp_errinfo *ei)
{
    json_t *items = json_array();
    int64_t last = 0;
    int n = 0, r;
    pthread_mutex_lock(&st->mu);
    sqlite3_stmt *s = db_stmt(st, STMT_WORKER_LIST);
    db_bind_int(s, ":cursor", cursor_bound(cursor));
    db_bind_int(s, ":limit", limit);
    while ((r = db_row(st, s, ei)) == 1) {
        last = col_int(s, 0);
        n++;
        json_array_append_new(items, json_pack("{s:o, s:o, s:o, s:o, s:o, s:o, s:o}", "id",
                                               col_str(s, 1), "name", col_str(s, 2), "version",
                                               col_str(s, 3), "capabilities", col_json(s, 4),
                                               "device", col_json(s, 5), "created_at",
                                               col_time(s, 6), "last_seen_at", col_time(s, 7)));
    }
    sqlite3_reset(s);
    pthread_mutex_unlock(&st->mu);
    if (r < 0) {
        json_decref(items);
        return (enum dp_err)r;
    }
    *out = list_new(items, n == limit ? last : 0);
    return DP_OK;
}

/* ---- The queue ------------------------------------------------------------------------------ */

/* {"sha256","size"} of a blob, or NULL when sha is NULL or unknown. */
static json_t *blob_ref(struct srv_store *st, const char *sha, struct dp_errinfo *ei)
{
    if (sha == NULL)
        return json_null();
    sqlite3_stmt *s = db_stmt(st, STMT_BLOB_SIZE);
    db_bind_text(s, ":sha", sha);
    json_t *o = json_null();
    if (db_row(st, s, ei) == 1)
        o = json_pack("{s:s, s:I}", "sha256", sha, "size", (json_int_t)col_int(s, 0));
    sqlite3_reset(s);
    return o;
}

/* The output `key` of task id as a blob reference, or null. */
static json_t *task_output_ref(struct srv_store *st, const char *task_id, const char *key,
                               struct dp_errinfo *ei)
{
    sqlite3_stmt *s = db_stmt(st, STMT_TASK_OUTPUTS);
    db_bind_text(s, ":id", task_id);
    json_t *outputs = NULL;
    if (db_row(st, s, ei) == 1)
        outputs = col_json(s, 0);
    sqlite3_reset(s);
    const char *sha = json_string_value(json_object_get(outputs, key));
    json_t *ref = NULL;
    if (sha) {
        char copy[65];
        snprintf(copy, sizeof(copy), "%s", sha);
        ref = blob_ref(st, copy, ei);
    } else {
        ref = json_null();
    }
    json_decref(outputs);
    return ref;
}

/* An asset (by id; the job row already tied it to the job's team) as a task
 * input: {"arch"|"builtin"} or {"sha256","format","size"}. */
static json_t *asset_input(struct srv_store *st, const char *id, struct dp_errinfo *ei)
{
    sqlite3_stmt *s = db_stmt(st, STMT_ASSET_BY_ID);
    db_bind_text(s, ":id", id);
    json_t *o = NULL;
    if (db_row(st, s, ei) == 1) {
        int is_model = strcmp(col_text(s, 8), "model") == 0;
        if (!col_null(s, 4))
            o = json_pack("{s:o}", is_model ? "arch" : "builtin", col_str(s, 4));
        else
            o = json_pack("{s:o, s:o, s:I}", "sha256", col_str(s, 5), "format", col_str(s, 3),
                          "size", (json_int_t)col_int(s, 6));
    }
    sqlite3_reset(s);
    return o ? o : json_null();
}

/* Adds params and inputs to the leased task object t (see docs/api.md). */
static enum dp_err task_build(struct srv_store *st, json_t *t, const char *job_id, const char *type,
                              const char *dep, const char *ckpt, struct dp_errinfo *ei)
{
    sqlite3_stmt *s = db_stmt(st, STMT_JOB_PARAMS);
    db_bind_text(s, ":id", job_id);
    int r = db_row(st, s, ei);
    if (r <= 0)
        return r < 0 ? (enum dp_err)r : dp_errinfo_set(ei, DP_ENOENT, "no job '%s'", job_id);
    json_t *params = col_json(s, 0);
    char model_id[SRV_ID_MAX], dataset_id[SRV_ID_MAX];
    snprintf(model_id, sizeof(model_id), "%s", col_text(s, 1));
    snprintf(dataset_id, sizeof(dataset_id), "%s", col_text(s, 2));
    sqlite3_reset(s);
    json_object_set_new(t, "params", params);

    json_t *inputs = json_object();
    json_object_set_new(t, "inputs", inputs);
    /* The first task reads the job's model; the others the previous task's output. */
    json_object_set_new(inputs, "model",
                        dep ? task_output_ref(st, dep, "model", ei)
                            : asset_input(st, model_id, ei));
    json_t *m = json_object_get(inputs, "model");
    if (dep && json_is_object(m))
        json_object_set_new(m, "format", json_string("safetensors"));
    json_object_set_new(inputs, "dataset", asset_input(st, dataset_id, ei));
    json_object_set_new(inputs, "checkpoint", blob_ref(st, ckpt, ei));
    json_object_set_new(inputs, "report",
                        dep && strcmp(type, "retrain") == 0 ? task_output_ref(st, dep, "report", ei)
                                                            : json_null());
    return DP_OK;
}

enum dp_err srv_store_task_claim(struct srv_store *st, const char *worker_id, json_t *capabilities,
                                 json_t **out, struct dp_errinfo *ei)
{
    int64_t now = srv_now_ms();
    json_t *t = NULL;
    char task_id[SRV_ID_MAX], job_id[SRV_ID_MAX], type[16], dep[SRV_ID_MAX], ckpt[65];
    *out = NULL;
    pthread_mutex_lock(&st->mu);
    enum dp_err err = db_begin(st, ei);
    if (err)
        goto out;
    sqlite3_stmt *s = db_stmt(st, STMT_WORKER_EXISTS);
    db_bind_text(s, ":id", worker_id);
    int r = db_row(st, s, ei);
    if (r <= 0) {
        err = r < 0 ? (enum dp_err)r
                    : dp_errinfo_set(ei, DP_EINVAL, "worker_id: no worker '%s'; register first",
                                     worker_id);
        goto done;
    }
    s = db_stmt(st, STMT_WORKER_SEEN);
    db_bind_text(s, ":id", worker_id);
    db_bind_int(s, ":now", now);
    err = db_exec(st, s, ei);
    if (err)
        goto done;

    s = db_stmt(st, STMT_TASK_CLAIM);
    db_bind_text(s, ":worker", worker_id);
    db_bind_int(s, ":now", now);
    db_bind_int(s, ":expires", now + st->cfg.lease_ms);
    err = db_bind_json(s, ":caps", capabilities);
    if (err)
        goto done;
    r = db_row(st, s, ei);
    if (r <= 0) {
        err = r < 0 ? (enum dp_err)r : DP_ENOENT;
        goto done;
    }
    snprintf(task_id, sizeof(task_id), "%s", col_text(s, 0));
    snprintf(job_id, sizeof(job_id), "%s", col_text(s, 1));
    snprintf(type, sizeof(type), "%s", col_text(s, 2));
    snprintf(ckpt, sizeof(ckpt), "%s", col_null(s, 6) ? "" : col_text(s, 6));
    snprintf(dep, sizeof(dep), "%s", col_null(s, 7) ? "" : col_text(s, 7));
    t = json_pack("{s:s, s:s, s:s, s:I, s:I, s:o}", "id", task_id, "job_id", job_id, "type", type,
                  "attempt", (json_int_t)col_int(s, 3), "fence", (json_int_t)col_int(s, 4),
                  "lease_expires_at", json_time(col_int(s, 5)));
    err = db_exec(st, s, ei); /* run the UPDATE ... RETURNING to completion */
    if (!err)
        err = task_build(st, t, job_id, type, dep[0] ? dep : NULL, ckpt[0] ? ckpt : NULL, ei);
    if (!err)
        err = event_task_state(st, job_id, task_id, type, "leased", ei);
    if (!err)
        err = job_refresh(st, job_id, ei);
done:
    err = db_finish(st, err, ei);
out:
    pthread_mutex_unlock(&st->mu);
    if (err) {
        json_decref(t);
        return err;
    }
    *out = t;
    return DP_OK;
}

/* The task's row when it is leased under fence: job id, type, attempts,
 * max_attempts, lease owner. DP_EEXIST ("lease lost") otherwise. */
struct srv_lease {
    char job_id[SRV_ID_MAX];
    char type[16];
    char owner[SRV_ID_MAX];
    int64_t attempts, max_attempts;
};

static enum dp_err lease_check(struct srv_store *st, const char *task_id, int64_t fence,
                               struct srv_lease *l, struct dp_errinfo *ei)
{
    sqlite3_stmt *s = db_stmt(st, STMT_TASK_LEASED);
    db_bind_text(s, ":id", task_id);
    db_bind_int(s, ":fence", fence);
    int r = db_row(st, s, ei);
    if (r < 0)
        return (enum dp_err)r;
    if (r == 0)
        return dp_errinfo_set(ei, DP_EEXIST,
                              "lease lost: task '%s' is not leased under fence %" PRId64, task_id,
                              fence);
    snprintf(l->job_id, sizeof(l->job_id), "%s", col_text(s, 0));
    snprintf(l->type, sizeof(l->type), "%s", col_text(s, 1));
    l->attempts = col_int(s, 2);
    l->max_attempts = col_int(s, 3);
    snprintf(l->owner, sizeof(l->owner), "%s", col_null(s, 4) ? "" : col_text(s, 4));
    sqlite3_reset(s);
    return DP_OK;
}

static enum dp_err job_cancel_requested(struct srv_store *st, const char *job_id, int *cancel,
                                        struct dp_errinfo *ei)
{
    sqlite3_stmt *s = db_stmt(st, STMT_JOB_STATE);
    db_bind_text(s, ":id", job_id);
    int r = db_row(st, s, ei);
    if (r < 0)
        return (enum dp_err)r;
    *cancel = r == 1 && col_int(s, 1) != 0;
    sqlite3_reset(s);
    return DP_OK;
}

enum dp_err srv_store_task_heartbeat(struct srv_store *st, const char *task_id, int64_t fence,
                                     json_t *progress, json_t **out, struct dp_errinfo *ei)
{
    struct srv_lease l;
    int cancel = 0;
    int64_t expires = srv_now_ms() + st->cfg.lease_ms;
    *out = NULL;
    pthread_mutex_lock(&st->mu);
    enum dp_err err = db_begin(st, ei);
    if (err)
        goto out;
    err = lease_check(st, task_id, fence, &l, ei);
    if (!err) {
        sqlite3_stmt *s = db_stmt(st, STMT_TASK_EXTEND);
        db_bind_text(s, ":id", task_id);
        db_bind_int(s, ":expires", expires);
        err = db_exec(st, s, ei);
    }
    if (!err && l.owner[0]) {
        sqlite3_stmt *s = db_stmt(st, STMT_WORKER_SEEN);
        db_bind_text(s, ":id", l.owner);
        db_bind_int(s, ":now", srv_now_ms());
        err = db_exec(st, s, ei);
    }
    if (!err && json_is_object(progress)) {
        json_t *p = json_deep_copy(progress);
        json_object_set_new(p, "task", json_string(l.type));
        sqlite3_stmt *s = db_stmt(st, STMT_JOB_PROGRESS);
        db_bind_text(s, ":id", l.job_id);
        err = db_bind_json(s, ":progress", p);
        json_decref(p);
        if (!err)
            err = db_exec(st, s, ei);
    }
    if (!err)
        err = job_cancel_requested(st, l.job_id, &cancel, ei);
    err = db_finish(st, err, ei);
out:
    pthread_mutex_unlock(&st->mu);
    if (!err)
        *out = json_pack("{s:o, s:b}", "lease_expires_at", json_time(expires), "cancel", cancel);
    return err;
}

enum dp_err srv_store_task_events(struct srv_store *st, const char *task_id, int64_t fence,
                                  json_t *events, struct dp_errinfo *ei)
{
    struct srv_lease l;
    pthread_mutex_lock(&st->mu);
    enum dp_err err = db_begin(st, ei);
    if (err)
        goto out;
    err = lease_check(st, task_id, fence, &l, ei);
    size_t i;
    json_t *ev;
    json_array_foreach (events, i, ev) {
        if (err)
            break;
        json_t *data = json_deep_copy(json_object_get(ev, "data"));
        if (json_is_object(data) && !json_object_get(data, "task"))
            json_object_set_new(data, "task", json_string(l.type));
        /* The latest epoch-like event is also the job's progress. */
        if (json_is_object(data) && json_object_get(data, "epoch")) {
            sqlite3_stmt *s = db_stmt(st, STMT_JOB_PROGRESS);
            db_bind_text(s, ":id", l.job_id);
            err = db_bind_json(s, ":progress", data);
            if (!err)
                err = db_exec(st, s, ei);
        }
        if (!err)
            err = event_append(st, l.job_id, json_string_value(json_object_get(ev, "type")),
                               data ? json_incref(data) : json_null(), ei);
        json_decref(data);
    }
    err = db_finish(st, err, ei);
out:
    pthread_mutex_unlock(&st->mu);
    return err;
}

enum dp_err srv_store_task_fence_check(struct srv_store *st, const char *task_id, int64_t fence,
                                       struct dp_errinfo *ei)
{
    struct srv_lease l;
    pthread_mutex_lock(&st->mu);
    enum dp_err err = lease_check(st, task_id, fence, &l, ei);
    pthread_mutex_unlock(&st->mu);
    return err;
}

enum dp_err srv_store_task_artifact(struct srv_store *st, const char *task_id, int64_t fence,
                                    const char *kind, const char *sha, int64_t size,
                                    struct dp_errinfo *ei)
{
    struct srv_lease l;
    int64_t now = srv_now_ms();
    pthread_mutex_lock(&st->mu);
    enum dp_err err = db_begin(st, ei);
    if (err)
        goto out;
    err = lease_check(st, task_id, fence, &l, ei);
    if (!err) {
        sqlite3_stmt *s = db_stmt(st, STMT_BLOB_INSERT);
        db_bind_text(s, ":sha", sha);
        db_bind_int(s, ":size", size);
        db_bind_int(s, ":now", now);
        err = db_exec(st, s, ei);
    }
    if (!err) {
        sqlite3_stmt *s = db_stmt(st, STMT_ARTIFACT_INSERT);
        db_bind_text(s, ":job", l.job_id);
        db_bind_text(s, ":task", task_id);
        db_bind_text(s, ":kind", kind);
        db_bind_text(s, ":sha", sha);
        db_bind_int(s, ":size", size);
        db_bind_int(s, ":now", now);
        err = db_exec(st, s, ei);
    }
    if (!err && strcmp(kind, "checkpoint") == 0) {
        sqlite3_stmt *s = db_stmt(st, STMT_TASK_CHECKPOINT);
        db_bind_text(s, ":id", task_id);
        db_bind_text(s, ":sha", sha);
        err = db_exec(st, s, ei);
    }
    err = db_finish(st, err, ei);
out:
    pthread_mutex_unlock(&st->mu);
    return err;
}

/* Moves a task out of its lease: to state, with finished_at for terminal
 * states, a retry time for queued, and attempt_delta (-1 for a release). */
static enum dp_err task_set_state(struct srv_store *st, const char *task_id, const char *job_id,
                                  const char *type, const char *state, int64_t run_after,
                                  int attempt_delta, struct dp_errinfo *ei)
{
    sqlite3_stmt *s = db_stmt(st, STMT_TASK_SET_STATE);
    db_bind_text(s, ":id", task_id);
    db_bind_text(s, ":state", state);
    if (strcmp(state, "queued") != 0)
        db_bind_int(s, ":finished", srv_now_ms());
    db_bind_int(s, ":run_after", run_after);
    db_bind_int(s, ":attempt_delta", attempt_delta);
    enum dp_err err = db_exec(st, s, ei);
    if (!err)
        err = event_task_state(st, job_id, task_id, type, state, ei);
    return err;
}

/* Exponential backoff with jitter: base * 2^(attempt-1), capped, plus up to
 * half of that again at random so that retries of many tasks spread out. */
static int64_t backoff_ms(const struct srv_queue_cfg *cfg, int64_t attempt)
{
    int64_t d = cfg->backoff_base_ms;
    for (int64_t i = 1; i < attempt && d < cfg->backoff_max_ms; i++)
        d *= 2;
    if (d > cfg->backoff_max_ms)
        d = cfg->backoff_max_ms;
    uint32_t r = 0;
    if (srv_rand_bytes(&r, sizeof(r)) != DP_OK)
        r = 0;
    return d + (d > 1 ? (int64_t)(r % (uint32_t)(d / 2 + 1)) : 0);
}

/* Records an error for the attempt, then requeues with backoff, or marks the
 * task dead (attempts exhausted) or failed (not retryable), or cancelled
 * when its job was cancelled. */
static enum dp_err task_fail_locked(struct srv_store *st, const char *task_id,
                                    const struct srv_lease *l, const char *kind,
                                    const char *message, int retryable, struct dp_errinfo *ei)
{
    int cancel = 0;
    int64_t now = srv_now_ms();
    sqlite3_stmt *s = db_stmt(st, STMT_TASK_ERROR_INSERT);
    db_bind_text(s, ":task", task_id);
    db_bind_int(s, ":attempt", l->attempts);
    db_bind_text(s, ":kind", kind);
    db_bind_text(s, ":message", message);
    db_bind_text(s, ":worker", l->owner[0] ? l->owner : NULL);
    db_bind_int(s, ":now", now);
    enum dp_err err = db_exec(st, s, ei);
    if (!err)
        err = job_cancel_requested(st, l->job_id, &cancel, ei);
    if (err)
        return err;
    const char *state;
    int64_t run_after = 0;
    if (cancel) {
        state = "cancelled";
    } else if (!retryable) {
        state = "failed";
    } else if (l->attempts >= l->max_attempts) {
        state = "dead";
    } else {
        state = "queued";
        run_after = now + backoff_ms(&st->cfg, l->attempts);
    }
    err = task_set_state(st, task_id, l->job_id, l->type, state, run_after, 0, ei);
    if (!err)
        err = job_refresh(st, l->job_id, ei);
    return err;
}

enum dp_err srv_store_task_complete(struct srv_store *st, const char *task_id, int64_t fence,
                                    json_t *outputs, struct dp_errinfo *ei)
{
    struct srv_lease l;
    int cancel = 0;
    pthread_mutex_lock(&st->mu);
    enum dp_err err = db_begin(st, ei);
    if (err)
        goto out;
    err = lease_check(st, task_id, fence, &l, ei);
    const char *key;
    json_t *v;
    json_object_foreach (outputs, key, v) {
        if (err)
            break;
        sqlite3_stmt *s = db_stmt(st, STMT_BLOB_SIZE);
        db_bind_text(s, ":sha", json_string_value(v));
        int r = db_row(st, s, ei);
        sqlite3_reset(s);
        if (r < 0)
            err = (enum dp_err)r;
        else if (r == 0)
            err = dp_errinfo_set(ei, DP_EINVAL, "outputs.%s: no uploaded artifact %s", key,
                                 json_string_value(v));
    }
    if (!err)
        err = job_cancel_requested(st, l.job_id, &cancel, ei);
    if (!err) {
        sqlite3_stmt *s = db_stmt(st, STMT_TASK_SET_OUTPUTS);
        db_bind_text(s, ":id", task_id);
        err = db_bind_json(s, ":outputs", outputs);
        if (!err)
            err = db_exec(st, s, ei);
    }
    if (!err)
        err = task_set_state(st, task_id, l.job_id, l.type, cancel ? "cancelled" : "succeeded", 0,
                             0, ei);
    if (!err && !cancel) {
        sqlite3_stmt *s = db_stmt(st, STMT_JOB_OUTPUTS);
        db_bind_text(s, ":id", l.job_id);
        err = db_bind_json(s, ":outputs", outputs);
        if (!err)
            err = db_exec(st, s, ei);
    }
    if (!err)
        err = job_refresh(st, l.job_id, ei);
    err = db_finish(st, err, ei);
out:
    pthread_mutex_unlock(&st->mu);
    return err;
}

enum dp_err srv_store_task_fail(struct srv_store *st, const char *task_id, int64_t fence,
                                const char *message, int retryable, struct dp_errinfo *ei)
{
    struct srv_lease l;
    pthread_mutex_lock(&st->mu);
    enum dp_err err = db_begin(st, ei);
    if (err)
        goto out;
    err = lease_check(st, task_id, fence, &l, ei);
    if (!err)
        err = task_fail_locked(st, task_id, &l, "error", message, retryable, ei);
    err = db_finish(st, err, ei);
out:
    pthread_mutex_unlock(&st->mu);
    return err;
}

enum dp_err srv_store_task_release(struct srv_store *st, const char *task_id, int64_t fence,
                                   struct dp_errinfo *ei)
{
    struct srv_lease l;
    int cancel = 0;
    pthread_mutex_lock(&st->mu);
    enum dp_err err = db_begin(st, ei);
    if (err)
        goto out;
    err = lease_check(st, task_id, fence, &l, ei);
    if (!err)
        err = job_cancel_requested(st, l.job_id, &cancel, ei);
    /* A release (SIGTERM) does not count as an attempt. */
    if (!err)
        err = task_set_state(st, task_id, l.job_id, l.type, cancel ? "cancelled" : "queued", 0,
                             cancel ? 0 : -1, ei);
    if (!err)
        err = job_refresh(st, l.job_id, ei);
    err = db_finish(st, err, ei);
out:
    pthread_mutex_unlock(&st->mu);
    return err;
}

enum dp_err srv_store_reap(struct srv_store *st, int *n_reaped, struct dp_errinfo *ei)
{
    *n_reaped = 0;
    pthread_mutex_lock(&st->mu);
    enum dp_err err = db_begin(st, ei);
    if (err)
        goto out;
    /* Collect first: the statement must be finished before the updates. */
    struct {
        char id[SRV_ID_MAX];
        struct srv_lease l;
    } expired[100];
    int n = 0, r;
    sqlite3_stmt *s = db_stmt(st, STMT_TASK_EXPIRED);
    db_bind_int(s, ":now", srv_now_ms());
    while (n < 100 && (r = db_row(st, s, ei)) == 1) {
        snprintf(expired[n].id, sizeof(expired[n].id), "%s", col_text(s, 0));
        snprintf(expired[n].l.job_id, sizeof(expired[n].l.job_id), "%s", col_text(s, 1));
        expired[n].l.attempts = col_int(s, 2);
        expired[n].l.max_attempts = col_int(s, 3);
        snprintf(expired[n].l.owner, sizeof(expired[n].l.owner), "%s",
                 col_null(s, 4) ? "" : col_text(s, 4));
        snprintf(expired[n].l.type, sizeof(expired[n].l.type), "%s", col_text(s, 5));
        n++;
    }
    sqlite3_reset(s);
    for (int i = 0; i < n && !err; i++) {
        err = task_fail_locked(st, expired[i].id, &expired[i].l, "lease_expired",
                               "lease expired: no heartbeat from the worker", 1, ei);
        if (!err)
            DP_LOG(DP_LOG_INFO,
                   "reaper: task %s lease expired (attempt %" PRId64 " of %" PRId64 ")",
                   expired[i].id, expired[i].l.attempts, expired[i].l.max_attempts);
    }
    if (!err)
        *n_reaped = n;
    err = db_finish(st, err, ei);
out:
    pthread_mutex_unlock(&st->mu);
    return err;
}

/* ---- Metrics -----------------------------------------------------------------------------------
 */

static enum dp_err counts_by_state(struct srv_store *st, enum srv_stmt_id id, json_t *into,
                                   struct dp_errinfo *ei)
{
    sqlite3_stmt *s = db_stmt(st, id);
    int r;
    while ((r = db_row(st, s, ei)) == 1)
        json_object_set_new(into, col_text(s, 0), json_integer(col_int(s, 1)));
    sqlite3_reset(s);
    return r < 0 ? (enum dp_err)r : DP_OK;
}

enum dp_err srv_store_metrics(struct srv_store *st, json_t **out, struct dp_errinfo *ei)
{
    json_t *jobs = json_object(), *tasks = json_object();
    int64_t n_workers = 0;
    pthread_mutex_lock(&st->mu);
    enum dp_err err = counts_by_state(st, STMT_JOB_COUNTS, jobs, ei);
    if (!err)
        err = counts_by_state(st, STMT_TASK_COUNTS, tasks, ei);
    if (!err) {
        sqlite3_stmt *s = db_stmt(st, STMT_WORKER_COUNT);
        if (db_row(st, s, ei) == 1)
            n_workers = col_int(s, 0);
        sqlite3_reset(s);
    }
    pthread_mutex_unlock(&st->mu);
    if (err) {
        json_decref(jobs);
        json_decref(tasks);
        return err;
    }
    *out = json_pack("{s:o, s:o, s:I}", "jobs", jobs, "tasks", tasks, "workers",
                     (json_int_t)n_workers);
    return DP_OK;
}
