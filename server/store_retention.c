/*
 * Retention and deletion: the SQL of garbage collection (server/gc.c) and of
 * the DELETE routes for jobs, models and datasets. These run rarely (a GC
 * pass every few minutes, a delete when a person asks), so their statements
 * are prepared per call instead of joining the hot table of store_int.h.
 *
 * What may go, and when (docs/operations.md, "Retention"):
 * - idempotency keys older than their time to live;
 * - events of jobs that ended more than the events retention ago;
 * - checkpoints of tasks that ended more than the checkpoint retention ago
 *   (a task's outputs are artifacts; its checkpoint only serves a resume);
 * - blobs nothing references (no asset, no task checkpoint, no artifact)
 *   that are older than the grace period. A blob row and its file go
 *   together; server/blob.c's publish lock keeps an upload of the same
 *   bytes from slipping between the row's delete and the file's unlink.
 */
#include "server/store.h"

#include <sqlite3.h>
#include <stdio.h>
#include <string.h>

#include "common/alloc.h"
#include "common/log.h"
#include "server/store_int.h"

/* Prepares sql on the writer (hold st->mu); NULL with ei set on failure. */
static sqlite3_stmt *ret_prepare(struct srv_store *st, const char *sql, struct dp_errinfo *ei)
{
    sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v2(st->db, sql, -1, &s, NULL) != SQLITE_OK) {
        dp_errinfo_set(ei, DP_EIO, "database: %s", sqlite3_errmsg(st->db));
        sqlite3_finalize(s);
        return NULL;
    }
    return s;
}

/* Runs a write statement with up to two named integer and one text
 * parameter; *changes gets the rows it touched. */
static enum dp_err ret_exec(struct srv_store *st, const char *sql, const char *text_name,
                            const char *text, const char *int_name, int64_t v, int64_t *changes,
                            struct dp_errinfo *ei)
{
    sqlite3_stmt *s = ret_prepare(st, sql, ei);
    if (s == NULL)
        return DP_EIO;
    if (text_name != NULL)
        sqlite3_bind_text(s, sqlite3_bind_parameter_index(s, text_name), text, -1,
                          SQLITE_TRANSIENT);
    if (int_name != NULL)
        sqlite3_bind_int64(s, sqlite3_bind_parameter_index(s, int_name), v);
    int rc = sqlite3_step(s);
    sqlite3_finalize(s);
    if (rc != SQLITE_DONE)
        return dp_errinfo_set(ei, DP_EIO, "database: %s", sqlite3_errmsg(st->db));
    if (changes != NULL)
        *changes += sqlite3_changes(st->db);
    return DP_OK;
}

/* ---- Garbage collection ----------------------------------------------------- */

enum dp_err srv_store_gc(struct srv_store *st, const struct srv_gc_cfg *cfg, int64_t now,
                         struct srv_gc_result *res, struct dp_errinfo *ei)
{
    memset(res, 0, sizeof(*res));
    srv_store__lock(st);
    enum dp_err err = srv_store__begin(st, ei);
    if (err)
        goto out;
    err = ret_exec(st, "DELETE FROM idempotency WHERE created_at < :before", NULL, NULL, ":before",
                   now - cfg->idempotency_ttl_ms, &res->idempotency_keys, ei);
    if (!err && cfg->events_retention_ms > 0)
        err = ret_exec(st,
                       "DELETE FROM events WHERE job_id IN (SELECT id FROM jobs "
                       "WHERE finished_at IS NOT NULL AND finished_at < :before)",
                       NULL, NULL, ":before", now - cfg->events_retention_ms, &res->events, ei);
    /* A task that ended (succeeded, failed for good, cancelled) keeps its
     * outputs as artifacts; its checkpoint only served resuming it. A
     * retried job's tasks are queued again (finished_at NULL): kept. */
    if (!err && cfg->checkpoint_retention_ms > 0)
        err = ret_exec(st,
                       "UPDATE tasks SET checkpoint_sha = NULL WHERE checkpoint_sha IS NOT NULL "
                       "AND state IN ('succeeded', 'failed', 'dead', 'cancelled') "
                       "AND finished_at IS NOT NULL AND finished_at < :before",
                       NULL, NULL, ":before", now - cfg->checkpoint_retention_ms, &res->checkpoints,
                       ei);
    sqlite3_stmt *s = NULL;
    if (!err)
        s = ret_prepare(st,
                        "SELECT sha256 FROM blobs b WHERE created_at < :before "
                        "AND NOT EXISTS (SELECT 1 FROM assets a WHERE a.sha256 = b.sha256) "
                        "AND NOT EXISTS (SELECT 1 FROM tasks t WHERE t.checkpoint_sha = b.sha256) "
                        "AND NOT EXISTS (SELECT 1 FROM artifacts r WHERE r.sha256 = b.sha256) "
                        "LIMIT :limit",
                        ei);
    if (!err && s == NULL)
        err = DP_EIO;
    if (!err) {
        sqlite3_bind_int64(s, sqlite3_bind_parameter_index(s, ":before"), now - cfg->grace_ms);
        sqlite3_bind_int(s, sqlite3_bind_parameter_index(s, ":limit"), SRV_GC_MAX_BLOBS);
        int rc;
        while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
            const char *sha = (const char *)sqlite3_column_text(s, 0);
            if (sha != NULL && strlen(sha) == 64)
                memcpy(res->blobs[res->n_blobs++], sha, 65);
        }
        if (rc != SQLITE_DONE)
            err = dp_errinfo_set(ei, DP_EIO, "database: %s", sqlite3_errmsg(st->db));
        sqlite3_finalize(s);
    }
    for (int i = 0; !err && i < res->n_blobs; i++)
        err = ret_exec(st, "DELETE FROM blobs WHERE sha256 = :sha", ":sha", res->blobs[i], NULL, 0,
                       NULL, ei);
    err = srv_store__finish(st, err, ei);
    if (err)
        res->n_blobs = 0; /* rolled back: nothing may be unlinked */
out:
    srv_store__unlock(st);
    return err;
}

enum dp_err srv_store_blob_known(struct srv_store *st, const char *sha, int *known,
                                 struct dp_errinfo *ei)
{
    *known = 0;
    srv_store__lock(st);
    sqlite3_stmt *s = ret_prepare(st, "SELECT 1 FROM blobs WHERE sha256 = :sha", ei);
    enum dp_err err = s ? DP_OK : DP_EIO;
    if (s != NULL) {
        sqlite3_bind_text(s, 1, sha, -1, SQLITE_TRANSIENT);
        int rc = sqlite3_step(s);
        if (rc == SQLITE_ROW)
            *known = 1;
        else if (rc != SQLITE_DONE)
            err = dp_errinfo_set(ei, DP_EIO, "database: %s", sqlite3_errmsg(st->db));
        sqlite3_finalize(s);
    }
    srv_store__unlock(st);
    return err;
}

/* ---- DELETE routes ------------------------------------------------------------ */

enum dp_err srv_store_job_delete(struct srv_store *st, const struct srv_principal *who,
                                 const char *id, struct dp_errinfo *ei)
{
    srv_store__lock(st);
    enum dp_err err = srv_store__begin(st, ei);
    if (err)
        goto out;
    sqlite3_stmt *s =
        ret_prepare(st, "SELECT state FROM jobs WHERE id = :id AND team_id = :team", ei);
    err = s ? DP_OK : DP_EIO;
    if (s != NULL) {
        sqlite3_bind_text(s, 1, id, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(s, 2, who->team_id, -1, SQLITE_TRANSIENT);
        int rc = sqlite3_step(s);
        const char *state = rc == SQLITE_ROW ? (const char *)sqlite3_column_text(s, 0) : NULL;
        if (rc == SQLITE_DONE)
            err = dp_errinfo_set(ei, DP_ENOENT, "no job '%s'", id);
        else if (rc != SQLITE_ROW)
            err = dp_errinfo_set(ei, DP_EIO, "database: %s", sqlite3_errmsg(st->db));
        else if (state == NULL || (strcmp(state, "succeeded") != 0 &&
                                   strcmp(state, "failed") != 0 && strcmp(state, "cancelled") != 0))
            err = dp_errinfo_set(ei, DP_EEXIST,
                                 "job '%s' is %s: only a finished job (succeeded, failed or "
                                 "cancelled) can be deleted; cancel it first",
                                 id, state ? state : "?");
        sqlite3_finalize(s);
    }
    /* Children first (foreign keys): what the job's tasks left, the
     * tasks, its events and replay keys, then the job. Its blobs become
     * unreferenced and go at the next GC pass after the grace period. */
    static const char *const del[] = {
        "DELETE FROM artifacts WHERE job_id = :id",
        "DELETE FROM task_errors WHERE task_id IN (SELECT id FROM tasks WHERE job_id = :id)",
        "DELETE FROM tasks WHERE job_id = :id",
        "DELETE FROM events WHERE job_id = :id",
        "DELETE FROM idempotency WHERE object_id = :id",
        "DELETE FROM jobs WHERE id = :id",
    };
    for (size_t i = 0; !err && i < sizeof(del) / sizeof(del[0]); i++)
        err = ret_exec(st, del[i], ":id", id, NULL, 0, NULL, ei);
    err = srv_store__finish(st, err, ei);
out:
    srv_store__unlock(st);
    return err;
}

enum dp_err srv_store_asset_delete(struct srv_store *st, const struct srv_principal *who,
                                   const char *kind, const char *id, struct dp_errinfo *ei)
{
    srv_store__lock(st);
    enum dp_err err = srv_store__begin(st, ei);
    if (err)
        goto out;
    int64_t n = 0;
    sqlite3_stmt *s =
        ret_prepare(st,
                    "SELECT (SELECT count(*) FROM assets WHERE id = :id AND team_id = :team "
                    "AND kind = :kind), (SELECT count(*) FROM jobs WHERE model_id = :id OR "
                    "dataset_id = :id)",
                    ei);
    if (!err && s == NULL)
        err = DP_EIO;
    if (!err) {
        sqlite3_bind_text(s, sqlite3_bind_parameter_index(s, ":id"), id, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(s, sqlite3_bind_parameter_index(s, ":team"), who->team_id, -1,
                          SQLITE_TRANSIENT);
        sqlite3_bind_text(s, sqlite3_bind_parameter_index(s, ":kind"), kind, -1, SQLITE_TRANSIENT);
        if (sqlite3_step(s) != SQLITE_ROW)
            err = dp_errinfo_set(ei, DP_EIO, "database: %s", sqlite3_errmsg(st->db));
        else if (sqlite3_column_int64(s, 0) == 0)
            err = dp_errinfo_set(ei, DP_ENOENT, "no %s '%s'", kind, id);
        else if ((n = sqlite3_column_int64(s, 1)) > 0)
            err = dp_errinfo_set(ei, DP_EEXIST,
                                 "%s '%s' is used by %lld job(s): delete those jobs first", kind,
                                 id, (long long)n);
        sqlite3_finalize(s);
    }
    if (!err)
        err = ret_exec(st, "DELETE FROM idempotency WHERE object_id = :id", ":id", id, NULL, 0,
                       NULL, ei);
    if (!err)
        err = ret_exec(st, "DELETE FROM assets WHERE id = :id", ":id", id, NULL, 0, NULL, ei);
    err = srv_store__finish(st, err, ei);
out:
    srv_store__unlock(st);
    return err;
}
