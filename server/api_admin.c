/*
 * Service, team, token and worker-list handlers: /healthz, /metrics,
 * /api/v1/teams, /api/v1/tokens (create, list, revoke), /api/v1/me,
 * /api/v1/workers.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "common/alloc.h"
#include "server/http_int.h"
#include "server/ids.h"
#include "server/validate.h"

SRV_HANDLER(srv_api_healthz)
{
    (void)h;
    return srv_reply_json(conn, r, 200, json_pack("{s:s}", "status", "ok"));
}

/* Appends a Prometheus gauge line per state in obj. */
static size_t metrics_states(char *buf, size_t cap, size_t n, const char *metric, json_t *obj,
                             const char *const *states)
{
    for (const char *const *s = states; *s && n < cap; s++) {
        json_t *v = json_object_get(obj, *s);
        n += (size_t)snprintf(buf + n, cap - n, "%s{state=\"%s\"} %" JSON_INTEGER_FORMAT "\n",
                              metric, *s, v ? json_integer_value(v) : 0);
    }
    return n;
}

SRV_HANDLER(srv_api_metrics)
{
    static const char *const job_states[] = {"queued", "running",   "succeeded",
                                             "failed", "cancelled", NULL};
    static const char *const task_states[] = {"queued", "leased",    "succeeded", "failed",
                                              "dead",   "cancelled", NULL};
    json_t *m = NULL;
    struct dp_errinfo ei = {0};
    enum dp_err err = srv_store_metrics(h->st, &m, &ei);
    if (err)
        return srv_reply_err(conn, r, err, &ei);
    char buf[8192];
    size_t cap = sizeof(buf), n = 0;
    n += (size_t)snprintf(buf + n, cap - n,
                          "# HELP dnnpress_http_requests_total HTTP requests answered, by class.\n"
                          "# TYPE dnnpress_http_requests_total counter\n"
                          "dnnpress_http_requests_total{class=\"2xx\"} %" PRIu64 "\n"
                          "dnnpress_http_requests_total{class=\"4xx\"} %" PRIu64 "\n"
                          "dnnpress_http_requests_total{class=\"5xx\"} %" PRIu64 "\n"
                          "# HELP dnnpress_jobs Jobs by state.\n# TYPE dnnpress_jobs gauge\n",
                          atomic_load(&h->n_2xx), atomic_load(&h->n_4xx), atomic_load(&h->n_5xx));
    n = metrics_states(buf, cap, n, "dnnpress_jobs", json_object_get(m, "jobs"), job_states);
    if (n < cap)
        n += (size_t)snprintf(buf + n, cap - n,
                              "# HELP dnnpress_tasks Tasks by state.\n"
                              "# TYPE dnnpress_tasks gauge\n");
    n = metrics_states(buf, cap, n, "dnnpress_tasks", json_object_get(m, "tasks"), task_states);
    if (n < cap)
        snprintf(buf + n, cap - n,
                 "# HELP dnnpress_workers Registered workers.\n# TYPE dnnpress_workers gauge\n"
                 "dnnpress_workers %" JSON_INTEGER_FORMAT "\n"
                 "# HELP dnnpress_uptime_seconds Seconds since the server started.\n"
                 "# TYPE dnnpress_uptime_seconds gauge\ndnnpress_uptime_seconds %" PRId64 "\n"
                 "# HELP dnnpress_sqlite_wal_bytes Size of the database's write-ahead log.\n"
                 "# TYPE dnnpress_sqlite_wal_bytes gauge\n"
                 "dnnpress_sqlite_wal_bytes %" JSON_INTEGER_FORMAT "\n"
                 "# HELP dnnpress_limit Configured limits (0: none).\n"
                 "# TYPE dnnpress_limit gauge\n"
                 "dnnpress_limit{name=\"rate_limit_rps\"} %d\n"
                 "dnnpress_limit{name=\"rate_limit_burst\"} %d\n"
                 "dnnpress_limit{name=\"quota_active_jobs\"} %d\n"
                 "dnnpress_limit{name=\"quota_running_tasks\"} %d\n"
                 "dnnpress_limit{name=\"quota_storage_mb\"} %d\n"
                 "dnnpress_limit{name=\"max_upload_mb\"} %d\n"
                 "dnnpress_limit{name=\"http_max_conns\"} %d\n"
                 "# HELP dnnpress_limited_total Requests refused by a rate limit or quota.\n"
                 "# TYPE dnnpress_limited_total counter\n"
                 "dnnpress_limited_total{limit=\"rate\"} %" PRIu64 "\n"
                 "dnnpress_limited_total{limit=\"quota_active_jobs\"} %" PRIu64 "\n"
                 "dnnpress_limited_total{limit=\"quota_storage\"} %" PRIu64 "\n"
                 "# HELP dnnpress_group_commit_flushes_total WAL fsyncs of the group commit.\n"
                 "# TYPE dnnpress_group_commit_flushes_total counter\n"
                 "dnnpress_group_commit_flushes_total %" PRIu64 "\n"
                 "# HELP dnnpress_replies_held_total Replies held until their commit was on disk.\n"
                 "# TYPE dnnpress_replies_held_total counter\n"
                 "dnnpress_replies_held_total %" PRIu64 "\n",
                 json_integer_value(json_object_get(m, "workers")),
                 (srv_now_ms() - h->started_ms) / 1000,
                 json_integer_value(json_object_get(m, "wal_bytes")), h->cfg->rate_limit_rps,
                 h->cfg->rate_limit_burst, h->cfg->quota_active_jobs, h->cfg->quota_running_tasks,
                 h->cfg->quota_storage_mb, h->cfg->max_upload_mb, h->cfg->http_max_conns,
                 srv_ratelimit_refused(h->rl), atomic_load(&h->n_quota_jobs),
                 atomic_load(&h->n_quota_storage), srv_store_flushes(h->st),
                 atomic_load(&h->n_held));
    json_decref(m);
    return srv_reply_text(conn, r, 200, "text/plain; version=0.0.4", buf);
}

/* A store list of the caller's reach: one page of it. */
typedef enum dp_err page_fn(struct srv_store *st, const struct srv_principal *who, int limit,
                            int64_t cursor, json_t **out, struct dp_errinfo *ei);

/* Answers one page of list (?limit, ?cursor) for the caller. */
static enum MHD_Result reply_page(struct srv_http *h, struct MHD_Connection *conn,
                                  struct srv_req *r, page_fn *list)
{
    struct dp_errinfo ei = {0};
    int limit;
    int64_t cursor;
    json_t *out = NULL;
    enum dp_err err = srv_list_args(conn, &limit, &cursor, &ei);
    if (!err)
        err = list(h->st, &r->who, limit, cursor, &out, &ei);
    if (err)
        return srv_reply_err(conn, r, err, &ei);
    return srv_reply_json(conn, r, 200, out);
}

SRV_HANDLER(srv_api_team_create)
{
    static const char *const allowed[] = {"name", NULL};
    struct dp_errinfo ei = {0};
    const char *name = NULL;
    json_t *out = NULL;
    enum dp_err err = srv_json_only(r->json, "body", allowed, &ei);
    if (!err)
        err = srv_json_str(r->json, "body", "name", 1, &name, &ei);
    if (!err)
        err = srv_validate_name(name, "name", &ei);
    if (!err)
        err = srv_store_team_create(h->st, name, &out, &ei);
    if (err)
        return srv_reply_err(conn, r, err, &ei);
    return srv_reply_json(conn, r, 201, out);
}

/* Teams are admin-only and not scoped: the caller does not narrow the list. */
static enum dp_err team_page(struct srv_store *st, const struct srv_principal *who, int limit,
                             int64_t cursor, json_t **out, struct dp_errinfo *ei)
{
    (void)who;
    return srv_store_team_list(st, limit, cursor, out, ei);
}

SRV_HANDLER(srv_api_team_list)
{
    return reply_page(h, conn, r, team_page);
}

/* The longest lifetime expires_in_s may ask for: ten years. */
#define TOKEN_EXPIRES_IN_MAX_S (10LL * 366 * 24 * 3600)

/* The optional expiry of a new token: body.expires_in_s (seconds from now)
 * or body.expires_at (RFC 3339, in the future), not both. *at_ms stays 0
 * (never) when neither is given. */
static enum dp_err token_expiry(const json_t *body, int64_t *at_ms, struct dp_errinfo *ei)
{
    int64_t in_s = 0, now = srv_now_ms();
    const char *at = NULL;
    *at_ms = 0;
    enum dp_err err =
        srv_json_int(body, "body", "expires_in_s", 0, 1, TOKEN_EXPIRES_IN_MAX_S, &in_s, ei);
    if (!err)
        err = srv_json_str(body, "body", "expires_at", 0, &at, ei);
    if (err)
        return err;
    if (in_s > 0 && at != NULL)
        return dp_errinfo_set(ei, DP_EINVAL,
                              "body.expires_in_s: give expires_in_s or expires_at, not both");
    if (in_s > 0) {
        *at_ms = now + in_s * 1000;
    } else if (at != NULL) {
        if (srv_time_parse(at, at_ms) != DP_OK)
            return dp_errinfo_set(ei, DP_EINVAL,
                                  "body.expires_at: must be an RFC 3339 time such as "
                                  "\"2030-01-31T12:00:00Z\"");
        if (*at_ms <= now)
            return dp_errinfo_set(ei, DP_EINVAL, "body.expires_at: must be in the future");
    }
    return DP_OK;
}

SRV_HANDLER(srv_api_token_create)
{
    static const char *const allowed[] = {"team_id",      "scope",      "name",
                                          "expires_in_s", "expires_at", NULL};
    struct dp_errinfo ei = {0};
    const char *team = NULL, *scope = NULL, *name = "token";
    int64_t expires_at_ms = 0;
    json_t *out = NULL;
    enum dp_err err = srv_json_only(r->json, "body", allowed, &ei);
    if (!err)
        err = srv_json_str(r->json, "body", "scope", 1, &scope, &ei);
    if (!err && strcmp(scope, "team") != 0 && strcmp(scope, "agent") != 0 &&
        strcmp(scope, "device") != 0)
        err =
            dp_errinfo_set(&ei, DP_EINVAL, "body.scope: must be \"team\", \"agent\" or \"device\"");
    /* A team issues device tokens for itself only: devices that serve its
     * jobs alone (docs/security.md). Everything else is the admin's. */
    int team_caller = r->who.scope == SRV_SCOPE_TEAM;
    if (!err && team_caller && strcmp(scope, "device") != 0)
        return srv_reply_error(conn, r, 403, "forbidden",
                               "a team token may only create \"device\" tokens for its team");
    /* An agent or device token with "team_id": null is shared: it serves
     * every team. Null must be written out, so that forgetting the field
     * cannot make one; and only the admin can. */
    if (!err && team_caller) {
        json_t *tid = json_object_get(r->json, "team_id");
        if (tid && !(json_is_string(tid) && strcmp(json_string_value(tid), r->who.team_id) == 0))
            err = dp_errinfo_set(&ei, DP_EINVAL,
                                 "body.team_id: a team creates device tokens for itself only "
                                 "(omit it)");
        team = r->who.team_id;
    } else if (!err && json_is_null(json_object_get(r->json, "team_id")) &&
               strcmp(scope, "team") == 0)
        err = dp_errinfo_set(&ei, DP_EINVAL, "body.team_id: a team token needs a team");
    else if (!err && !json_is_null(json_object_get(r->json, "team_id")))
        err = srv_json_str(r->json, "body", "team_id", 1, &team, &ei);
    if (!err)
        err = srv_json_str(r->json, "body", "name", 0, &name, &ei);
    if (!err)
        err = srv_validate_name(name, "name", &ei);
    if (!err)
        err = token_expiry(r->json, &expires_at_ms, &ei);
    if (!err)
        err = srv_store_token_create(h->st, team, scope, name, expires_at_ms, &out, &ei);
    if (err)
        return srv_reply_err(conn, r, err, &ei);
    return srv_reply_json(conn, r, 201, out);
}

SRV_HANDLER(srv_api_token_list)
{
    return reply_page(h, conn, r, srv_store_token_list);
}

SRV_HANDLER(srv_api_token_revoke)
{
    struct dp_errinfo ei = {0};
    json_t *out = NULL;
    enum dp_err err = srv_store_token_revoke(h->st, &r->who, r->params[0], &out, &ei);
    if (err)
        return srv_reply_err(conn, r, err, &ei);
    /* Parked claims and event streams look at their token again when they
     * wake: wake them now, so that a revoked one ends at once. */
    srv_notify(h);
    return srv_reply_json(conn, r, 200, out);
}

SRV_HANDLER(srv_api_me)
{
    (void)h;
    static const char *const scopes[] = {"admin", "team", "agent", "device"};
    int shared = (r->who.scope == SRV_SCOPE_AGENT || r->who.scope == SRV_SCOPE_DEVICE) &&
                 r->who.team_id[0] == '\0';
    json_t *o = json_pack("{s:s, s:s, s:b}", "scope", scopes[r->who.scope], "token_id",
                          r->who.token_id, "shared", shared);
    json_object_set_new(o, "team_id",
                        r->who.team_id[0] ? json_string(r->who.team_id) : json_null());
    return srv_reply_json(conn, r, 200, o);
}

SRV_HANDLER(srv_api_worker_list)
{
    return reply_page(h, conn, r, srv_store_worker_list);
}

SRV_HANDLER(srv_api_device_list)
{
    struct dp_errinfo ei = {0};
    json_t *out = NULL;
    enum dp_err err = srv_store_device_list(h->st, &r->who, &out, &ei);
    if (err)
        return srv_reply_err(conn, r, err, &ei);
    return srv_reply_json(conn, r, 200, out);
}

/* Drain (on 1) or undrain (0) the device of the path. */
static enum MHD_Result device_drain(struct srv_http *h, struct MHD_Connection *conn,
                                    struct srv_req *r, int on)
{
    static const char *const allowed[] = {NULL};
    struct dp_errinfo ei = {0};
    enum dp_err err = r->json ? srv_json_only(r->json, "body", allowed, &ei) : DP_OK;
    if (!err)
        err = srv_store_device_drain(h->st, &r->who, r->params[0], on, &ei);
    if (err)
        return srv_reply_err(conn, r, err, &ei);
    srv_notify(h); /* a drained device's queued tasks may move to another */
    return srv_reply_json(conn, r, 200,
                          json_pack("{s:s, s:b}", "id", r->params[0], "draining", on));
}

SRV_HANDLER(srv_api_device_drain)
{
    return device_drain(h, conn, r, 1);
}

SRV_HANDLER(srv_api_device_undrain)
{
    return device_drain(h, conn, r, 0);
}

SRV_HANDLER(srv_api_device_remove)
{
    struct dp_errinfo ei = {0};
    enum dp_err err = srv_store_device_remove(h->st, &r->who, r->params[0], &ei);
    if (err)
        return srv_reply_err(conn, r, err, &ei);
    srv_notify(h);
    return srv_reply_json(conn, r, 200, json_pack("{s:s, s:b}", "id", r->params[0], "removed", 1));
}
