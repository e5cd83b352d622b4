/*
 * Per-team quotas (docs/security.md, "Limits"): checked by the routes that
 * add to what a team holds, before the write, and answered 429 with
 * Retry-After and a message naming the quota and what frees it.
 */
#include <inttypes.h>
#include <stdio.h>

#include "server/http_int.h"
#include "server/store.h"

enum MHD_Result srv_quota_check(struct srv_http *h, struct MHD_Connection *conn, struct srv_req *r,
                                int new_job, int64_t new_bytes, int *refused)
{
    *refused = 0;
    const struct srv_config *cfg = h->cfg;
    if ((!new_job || cfg->quota_active_jobs <= 0) && (new_bytes <= 0 || cfg->quota_storage_mb <= 0))
        return MHD_YES;
    struct dp_errinfo ei = {0};
    int64_t active = 0, stored = 0;
    enum dp_err err = srv_store_team_usage(h->st, r->who.team_id, &active, &stored, &ei);
    if (err) {
        *refused = 1;
        return srv_reply_err(conn, r, err, &ei);
    }
    char msg[256];
    if (new_job && cfg->quota_active_jobs > 0 && active >= cfg->quota_active_jobs) {
        *refused = 1;
        atomic_fetch_add(&h->n_quota_jobs, 1);
        snprintf(msg, sizeof(msg),
                 "quota: this team has %" PRId64 " jobs queued or running, its quota is %d; "
                 "submit again when some have finished",
                 active, cfg->quota_active_jobs);
        return srv_reply_retry(conn, r, 429, 60, "quota_exceeded", msg);
    }
    int64_t cap = (int64_t)cfg->quota_storage_mb << 20;
    if (new_bytes > 0 && cap > 0 && stored + new_bytes > cap) {
        *refused = 1;
        atomic_fetch_add(&h->n_quota_storage, 1);
        snprintf(msg, sizeof(msg),
                 "quota: this team stores %" PRId64 " MiB, %" PRId64 " more would pass its "
                 "quota of %d MiB; delete models, datasets or jobs first",
                 stored >> 20, (new_bytes + (1 << 20) - 1) >> 20, cfg->quota_storage_mb);
        return srv_reply_retry(conn, r, 429, 3600, "quota_exceeded", msg);
    }
    return MHD_YES;
}
