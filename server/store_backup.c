/*
 * The SQL behind backup, restore and check (see store_backup.h).
 */
#include "server/store_backup.h"

#include <sqlite3.h>
#include <stdio.h>
#include <string.h>

/* Opens path read-only (a running server may hold it in WAL mode: a reader
 * sees the last committed state and never blocks the writer). */
static enum dp_err backup_open_ro(const char *path, sqlite3 **db, struct dp_errinfo *ei)
{
    *db = NULL;
    int rc = sqlite3_open_v2(path, db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        enum dp_err err = dp_errinfo_set(ei, DP_EIO, "%s: cannot open the database: %s", path,
                                         *db ? sqlite3_errmsg(*db) : sqlite3_errstr(rc));
        sqlite3_close(*db);
        *db = NULL;
        return err;
    }
    sqlite3_busy_timeout(*db, 10000);
    return DP_OK;
}

enum dp_err srv_store_snapshot(const char *src, const char *dst, int *schema_version,
                               struct dp_errinfo *ei)
{
    sqlite3 *from = NULL, *to = NULL;
    enum dp_err err = backup_open_ro(src, &from, ei);
    if (err)
        return err;
    /* A schema the server never made is not a dnnpress database. */
    sqlite3_stmt *s = NULL;
    int rc = sqlite3_prepare_v2(from, "SELECT count(*) FROM sqlite_schema WHERE name = 'jobs'", -1,
                                &s, NULL);
    if (rc != SQLITE_OK || sqlite3_step(s) != SQLITE_ROW || sqlite3_column_int(s, 0) != 1) {
        err = dp_errinfo_set(ei, DP_EFORMAT, "%s: not a dnnpress database (no jobs table)%s%s", src,
                             rc != SQLITE_OK ? ": " : "",
                             rc != SQLITE_OK ? sqlite3_errmsg(from) : "");
        goto out;
    }
    rc = sqlite3_open_v2(dst, &to, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                         NULL);
    if (rc != SQLITE_OK) {
        err = dp_errinfo_set(ei, DP_EIO, "%s: cannot create: %s", dst,
                             to ? sqlite3_errmsg(to) : sqlite3_errstr(rc));
        goto out;
    }
    sqlite3_backup *b = sqlite3_backup_init(to, "main", from, "main");
    if (b == NULL) {
        err = dp_errinfo_set(ei, DP_EIO, "backup of %s: %s", src, sqlite3_errmsg(to));
        goto out;
    }
    /* All pages in one step: one read transaction, one consistent state,
     * however much the server writes meanwhile. A writer holding the
     * database busy only delays us (busy timeout, then retries). */
    for (int tries = 0;; tries++) {
        rc = sqlite3_backup_step(b, -1);
        if ((rc == SQLITE_BUSY || rc == SQLITE_LOCKED) && tries < 100) {
            sqlite3_sleep(100);
            continue;
        }
        break;
    }
    int rc2 = sqlite3_backup_finish(b);
    if (rc != SQLITE_DONE || rc2 != SQLITE_OK) {
        err = dp_errinfo_set(ei, DP_EIO, "backup of %s: %s", src,
                             sqlite3_errstr(rc != SQLITE_DONE ? rc : rc2));
        goto out;
    }
    /* The copy is a plain rollback-journal file: a restore opens it with
     * no -wal beside it. */
    if (sqlite3_exec(to, "PRAGMA journal_mode = DELETE", NULL, NULL, NULL) != SQLITE_OK) {
        err = dp_errinfo_set(ei, DP_EIO, "%s: %s", dst, sqlite3_errmsg(to));
        goto out;
    }
    sqlite3_finalize(s);
    s = NULL;
    if (sqlite3_prepare_v2(to, "PRAGMA user_version", -1, &s, NULL) != SQLITE_OK ||
        sqlite3_step(s) != SQLITE_ROW) {
        err = dp_errinfo_set(ei, DP_EIO, "%s: %s", dst, sqlite3_errmsg(to));
        goto out;
    }
    *schema_version = sqlite3_column_int(s, 0);
out:
    sqlite3_finalize(s);
    if (to != NULL && sqlite3_close(to) != SQLITE_OK && !err)
        err = dp_errinfo_set(ei, DP_EIO, "%s: cannot close", dst);
    sqlite3_close(from);
    return err;
}

/* Runs a check pragma. integrity_check returns "ok" alone when clean, else
 * one message per row; foreign_key_check returns one row per dangling
 * reference (table, rowid, parent table, constraint). */
static enum dp_err backup_pragma_rows(sqlite3 *db, const char *path, const char *sql, int is_fk,
                                      struct dp_errinfo *ei)
{
    sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v2(db, sql, -1, &s, NULL) != SQLITE_OK)
        return dp_errinfo_set(ei, DP_EIO, "%s: %s: %s", path, sql, sqlite3_errmsg(db));
    char msg[768] = "";
    size_t n = 0;
    int problems = 0, rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        const char *c0 = (const char *)sqlite3_column_text(s, 0);
        if (!is_fk && c0 != NULL && strcmp(c0, "ok") == 0)
            continue;
        problems++;
        if (n >= sizeof(msg) - 1)
            continue;
        int k;
        if (is_fk) {
            const char *parent = (const char *)sqlite3_column_text(s, 2);
            k = snprintf(msg + n, sizeof(msg) - n, "%s%s row %lld references a missing %s row",
                         n ? "; " : "", c0 ? c0 : "?", (long long)sqlite3_column_int64(s, 1),
                         parent ? parent : "?");
        } else {
            k = snprintf(msg + n, sizeof(msg) - n, "%s%s", n ? "; " : "", c0 ? c0 : "?");
        }
        n += k > 0 ? (size_t)k : 0;
    }
    sqlite3_finalize(s);
    if (rc != SQLITE_DONE)
        return dp_errinfo_set(ei, DP_EIO, "%s: %s: %s", path, sql, sqlite3_errmsg(db));
    if (problems)
        return dp_errinfo_set(ei, DP_EFORMAT, "%s: %s: %d problem(s): %s", path, sql, problems,
                              msg);
    return DP_OK;
}

enum dp_err srv_store_integrity(const char *path, struct dp_errinfo *ei)
{
    sqlite3 *db = NULL;
    enum dp_err err = backup_open_ro(path, &db, ei);
    if (!err)
        err = backup_pragma_rows(db, path, "PRAGMA integrity_check", 0, ei);
    if (!err)
        err = backup_pragma_rows(db, path, "PRAGMA foreign_key_check", 1, ei);
    sqlite3_close(db);
    return err;
}

enum dp_err srv_store_blob_each(const char *path, srv_store_blob_fn fn, void *ud, int *stopped,
                                struct dp_errinfo *ei)
{
    *stopped = 0;
    sqlite3 *db = NULL;
    enum dp_err err = backup_open_ro(path, &db, ei);
    if (err)
        return err;
    sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v2(db, "SELECT sha256, size FROM blobs ORDER BY sha256", -1, &s, NULL) !=
        SQLITE_OK) {
        err = dp_errinfo_set(ei, DP_EIO, "%s: cannot list blobs: %s", path, sqlite3_errmsg(db));
        sqlite3_close(db);
        return err;
    }
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        const char *sha = (const char *)sqlite3_column_text(s, 0);
        int v = fn(ud, sha ? sha : "", sqlite3_column_int64(s, 1));
        if (v != 0) {
            *stopped = v;
            break;
        }
    }
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        err = dp_errinfo_set(ei, DP_EIO, "%s: listing blobs: %s", path, sqlite3_errmsg(db));
    sqlite3_finalize(s);
    sqlite3_close(db);
    return err;
}
