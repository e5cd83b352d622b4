/*
 * What a team uses, for the quotas (docs/security.md, "Limits"). Read on the
 * read-only connection: a quota is checked before the write it guards, so
 * requests that race each other may pass it together (a soft limit, by as
 * many requests as run at once); nothing here waits behind a commit.
 */
#include "server/store.h"

#include <sqlite3.h>
#include <string.h>

#include "server/store_int.h"

enum dp_err srv_store_team_usage(struct srv_store *st, const char *team, int64_t *active_jobs,
                                 int64_t *stored_bytes, struct dp_errinfo *ei)
{
    *active_jobs = *stored_bytes = 0;
    srv_store__rlock(st);
    sqlite3_stmt *s = NULL;
    /* Every model, dataset and artifact the team holds counts at its size,
     * even where two of them are the same bytes stored once. */
    int rc = sqlite3_prepare_v2(
        st->rdb,
        "SELECT (SELECT count(*) FROM jobs WHERE team_id = :team "
        "        AND state IN ('queued', 'running')), "
        "       (SELECT coalesce(sum(size), 0) FROM assets WHERE team_id = :team) + "
        "       (SELECT coalesce(sum(size), 0) FROM artifacts WHERE team_id = :team)",
        -1, &s, NULL);
    enum dp_err err = DP_OK;
    if (rc == SQLITE_OK) {
        sqlite3_bind_text(s, sqlite3_bind_parameter_index(s, ":team"), team, -1, SQLITE_TRANSIENT);
        rc = sqlite3_step(s);
    }
    if (rc == SQLITE_ROW) {
        *active_jobs = sqlite3_column_int64(s, 0);
        *stored_bytes = sqlite3_column_int64(s, 1);
    } else {
        err = dp_errinfo_set(ei, DP_EIO, "database: %s", sqlite3_errmsg(st->rdb));
    }
    sqlite3_finalize(s);
    srv_store__runlock(st);
    return err;
}
