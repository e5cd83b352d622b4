/*
 * The store, part 3: the durable task queue (see store.h). Claim is one
 * UPDATE ... RETURNING under BEGIN IMMEDIATE that leases the best ready task
 * of the worker's team and bumps its fencing counter; every worker write is
 * checked inside its own transaction (lease_check) against the current
 * fence and against the calling token, which must have registered the
 * worker holding the lease: a worker that lost its lease cannot change
 * anything, and neither can another agent that reads or guesses the fence.
 * The reaper returns expired leases to the queue with exponential backoff
 * and jitter, or buries them.
 */
#include "server/store.h"

#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "common/alloc.h"
#include "common/assert.h"
#include "common/log.h"
#include "common/task_type.h"
#include "server/store_int.h"

/* ---- The queue ------------------------------------------------------------------------------ */

/* *out = {"sha256","size"} of blob sha, or JSON null when sha is NULL or the
 * blob is unknown. A failed read is an error, never null: a claim must not
 * commit a task whose inputs it could not read. */
static enum dp_err blob_ref(struct srv_store *st, const char *sha, json_t **out,
                            struct dp_errinfo *ei)
{
    *out = NULL;
    if (sha == NULL) {
        *out = json_null();
        return DP_OK;
    }
    sqlite3_stmt *s = srv_store__stmt(st, STMT_BLOB_SIZE);
    srv_store__bind_text(s, ":sha", sha);
    int has_row = 0;
    enum dp_err err = srv_store__step(st, s, &has_row, ei);
    if (!err && has_row)
        *out = json_pack("{s:s, s:I}", "sha256", sha, "size", (json_int_t)srv_store__col_int(s, 0));
    else if (!err)
        *out = json_null();
    sqlite3_reset(s);
    if (!err && *out == NULL)
        err = DP_ENOMEM;
    return err;
}

/* *out = the output `key` of task id as a blob reference, or JSON null when
 * the task has no such output. */
static enum dp_err task_output_ref(struct srv_store *st, const char *task_id, const char *key,
                                   json_t **out, struct dp_errinfo *ei)
{
    *out = NULL;
    sqlite3_stmt *s = srv_store__stmt(st, STMT_TASK_OUTPUTS);
    srv_store__bind_text(s, ":id", task_id);
    json_t *outputs = NULL;
    int has_row = 0;
    enum dp_err err = srv_store__step(st, s, &has_row, ei);
    if (!err && has_row)
        outputs = srv_store__col_json(s, 0);
    sqlite3_reset(s);
    if (err)
        return err;
    const char *sha = json_string_value(json_object_get(outputs, key));
    if (sha) {
        char copy[65]; /* outputs goes before the blob is looked up */
        snprintf(copy, sizeof(copy), "%s", sha);
        err = blob_ref(st, copy, out, ei);
    } else {
        *out = json_null();
    }
    json_decref(outputs);
    return err;
}

/* The most tasks a walk up a job's dependencies visits: longer than any
 * chain store_jobs.c builds, so a cycle (which no code writes) ends. */
#define SRV_DEP_WALK_MAX 16

/* *out = the model output of task id, or of the nearest task it depends on
 * (directly or not) that has one, as a blob reference; JSON null when none
 * has. Export delivers no model, so the task after it (compile) reads the
 * retrain model this way. */
static enum dp_err task_model_ref(struct srv_store *st, const char *task_id, json_t **out,
                                  struct dp_errinfo *ei)
{
    char id[SRV_ID_MAX];
    snprintf(id, sizeof(id), "%s", task_id);
    *out = NULL;
    for (int hop = 0; hop < SRV_DEP_WALK_MAX; hop++) {
        enum dp_err err = task_output_ref(st, id, "model", out, ei);
        if (err || !json_is_null(*out))
            return err;
        json_decref(*out);
        *out = NULL;
        sqlite3_stmt *s = srv_store__stmt(st, STMT_TASK_DEPENDS_ON);
        srv_store__bind_text(s, ":id", id);
        int has_row = 0, more = 0;
        err = srv_store__step(st, s, &has_row, ei);
        if (!err && has_row && !srv_store__col_null(s, 0)) {
            snprintf(id, sizeof(id), "%s", srv_store__col_text(s, 0));
            more = 1;
        }
        sqlite3_reset(s);
        if (err)
            return err;
        if (!more)
            break;
    }
    *out = json_null();
    return DP_OK;
}

/* *out = an asset (by id; the job row already tied it to the job's team) as
 * a task input: {"arch"|"builtin"} or {"sha256","format","size"}, or JSON
 * null when there is no such asset. */
static enum dp_err asset_input(struct srv_store *st, const char *id, json_t **out,
                               struct dp_errinfo *ei)
{
    *out = NULL;
    sqlite3_stmt *s = srv_store__stmt(st, STMT_ASSET_BY_ID);
    srv_store__bind_text(s, ":id", id);
    int has_row = 0;
    enum dp_err err = srv_store__step(st, s, &has_row, ei);
    if (!err && has_row) {
        int is_model = strcmp(srv_store__col_text(s, 8), "model") == 0;
        if (!srv_store__col_null(s, 4))
            *out = json_pack("{s:o}", is_model ? "arch" : "builtin", srv_store__col_str(s, 4));
        else
            *out =
                json_pack("{s:o, s:o, s:I}", "sha256", srv_store__col_str(s, 5), "format",
                          srv_store__col_str(s, 3), "size", (json_int_t)srv_store__col_int(s, 6));
    } else if (!err) {
        *out = json_null();
    }
    sqlite3_reset(s);
    if (!err && *out == NULL)
        err = DP_ENOMEM;
    return err;
}

/* *out = the job's dense model as a task input: its train task's model
 * output when it has one (safetensors), else the job's model asset. The
 * profile task compiles it for the "x times faster than dense" figure. */
static enum dp_err dense_model_ref(struct srv_store *st, const char *job_id, const char *model_id,
                                   json_t **out, struct dp_errinfo *ei)
{
    char train[SRV_ID_MAX] = "";
    sqlite3_stmt *s = srv_store__stmt(st, STMT_TASKS_OF_JOB);
    srv_store__bind_text(s, ":job", job_id);
    int has_row = 0;
    enum dp_err err = DP_OK;
    for (;;) {
        err = srv_store__step(st, s, &has_row, ei);
        if (err || !has_row)
            break;
        if (strcmp(srv_store__col_text(s, 1), "train") == 0)
            snprintf(train, sizeof(train), "%s", srv_store__col_text(s, 0));
    }
    sqlite3_reset(s);
    if (err)
        return err;
    if (train[0] == '\0')
        return asset_input(st, model_id, out, ei);
    err = task_output_ref(st, train, "model", out, ei);
    if (!err && json_is_object(*out))
        err = json_object_set_new(*out, "format", json_string("safetensors")) == 0 ? DP_OK
                                                                                   : DP_ENOMEM;
    return err;
}

/* Sets t[key] = v_take; a failed set (out of memory) is an error, so a task
 * is never handed out with a field missing. */
static enum dp_err task_set(json_t *t, const char *key, json_t *v_take)
{
    return json_object_set_new(t, key, v_take) == 0 ? DP_OK : DP_ENOMEM;
}

/* Adds params and inputs to the leased task object t (see docs/api.md). */
static enum dp_err task_build(struct srv_store *st, json_t *t, const char *job_id, const char *type,
                              const char *dep, const char *ckpt, struct dp_errinfo *ei)
{
    sqlite3_stmt *s = srv_store__stmt(st, STMT_JOB_PARAMS);
    srv_store__bind_text(s, ":id", job_id);
    int has_row = 0;
    enum dp_err err = srv_store__step(st, s, &has_row, ei);
    if (err)
        return err;
    if (!has_row)
        return dp_errinfo_set(ei, DP_ENOENT, "no job '%s'", job_id);
    json_t *params = srv_store__col_json(s, 0);
    char model_id[SRV_ID_MAX], dataset_id[SRV_ID_MAX];
    snprintf(model_id, sizeof(model_id), "%s", srv_store__col_text(s, 1));
    snprintf(dataset_id, sizeof(dataset_id), "%s", srv_store__col_text(s, 2));
    sqlite3_reset(s);
    err = task_set(t, "params", params);

    json_t *inputs = json_object();
    if (!err)
        err = task_set(t, "inputs", inputs);
    else
        json_decref(inputs);
    json_t *v = NULL;
    /* The first task reads the job's model; the others the latest model an
     * earlier task produced (the previous task's, except after export). */
    if (!err && dep)
        err = task_model_ref(st, dep, &v, ei);
    if (!err && dep && json_is_object(v))
        err = task_set(v, "format", json_string("safetensors"));
    /* No earlier task made a model (only a latency task came before): the
     * job's own. */
    if (!err && (dep == NULL || json_is_null(v))) {
        json_decref(v);
        v = NULL;
        err = asset_input(st, model_id, &v, ei);
    }
    if (!err)
        err = task_set(inputs, "model", v);
    else
        json_decref(v);
    v = NULL;
    if (!err)
        err = asset_input(st, dataset_id, &v, ei);
    if (!err)
        err = task_set(inputs, "dataset", v);
    v = NULL;
    if (!err)
        err = blob_ref(st, ckpt, &v, ei);
    if (!err)
        err = task_set(inputs, "checkpoint", v);
    v = NULL;
    enum dp_task_type tt = DP_TASK__COUNT;
    int retrain = dp_task_type_from_name(type, &tt) && tt == DP_TASK_RETRAIN;
    if (!err && dep && retrain)
        err = task_output_ref(st, dep, "report", &v, ei);
    else if (!err)
        v = json_null();
    if (!err)
        err = task_set(inputs, "report", v);
    v = NULL;
    if (!err && tt == DP_TASK_PROFILE && dep) {
        err = task_output_ref(st, dep, "code", &v, ei);
        if (!err)
            err = task_set(inputs, "code", v);
        v = NULL;
        if (!err)
            err = dense_model_ref(st, job_id, model_id, &v, ei);
        if (!err)
            err = task_set(inputs, "dense", v);
    }
    return err;
}

enum dp_err srv_store_task_claim(struct srv_store *st, const struct srv_principal *who,
                                 const char *worker_id, json_t *capabilities, json_t **out,
                                 int *no_worker, struct dp_errinfo *ei)
{
    int64_t now = srv_now_ms();
    json_t *t = NULL;
    char task_id[SRV_ID_MAX], job_id[SRV_ID_MAX], type[16], dep[SRV_ID_MAX], ckpt[65];
    char team[SRV_ID_MAX] = "";
    int has_row = 0, idle = 0;
    *out = NULL;
    if (no_worker)
        *no_worker = 0;
    srv_store__lock(st);
    enum dp_err err = srv_store__begin(st, ei);
    if (err)
        goto out;
    /* The worker must be one this token registered; its team (none for a
     * shared agent) bounds what it may claim. Another token's worker is
     * "no such worker", as another team's job is "no such job". */
    sqlite3_stmt *s = srv_store__stmt(st, STMT_WORKER_OF_TOKEN);
    srv_store__bind_text(s, ":id", worker_id);
    srv_store__bind_text(s, ":token", who->token_id);
    err = srv_store__step(st, s, &has_row, ei);
    if (!err && has_row && !srv_store__col_null(s, 0))
        snprintf(team, sizeof(team), "%s", srv_store__col_text(s, 0));
    sqlite3_reset(s);
    if (!err && !has_row) {
        err = dp_errinfo_set(ei, DP_ENOENT,
                             "worker_id: no worker '%s' registered with this token; register first",
                             worker_id);
        if (no_worker)
            *no_worker = 1;
    }
    if (err)
        goto done;
    s = srv_store__stmt(st, STMT_WORKER_SEEN);
    srv_store__bind_text(s, ":id", worker_id);
    srv_store__bind_int(s, ":now", now);
    err = srv_store__exec(st, s, ei);
    if (err)
        goto done;

    char dev[SRV_ID_MAX] = "";
    if (who->scope == SRV_SCOPE_DEVICE) {
        /* A device takes one profile task at a time, only one that targets
         * it (or moves to it), and none while draining. */
        int draining = 0, busy = 0;
        s = srv_store__stmt(st, STMT_DEVICE_OF_WORKER);
        srv_store__bind_text(s, ":worker", worker_id);
        err = srv_store__step(st, s, &has_row, ei);
        if (!err && has_row) {
            snprintf(dev, sizeof(dev), "%s", srv_store__col_text(s, 0));
            draining = srv_store__col_int(s, 1) != 0;
            busy = srv_store__col_int(s, 2) != 0;
        }
        sqlite3_reset(s);
        if (!err && !has_row)
            err = dp_errinfo_set(ei, DP_EPERM,
                                 "this worker's device was removed (DELETE /api/v1/devices); "
                                 "it takes no more tasks");
        if (!err && (draining || busy)) {
            err = DP_ENOENT;
            idle = 1;
        }
        if (err)
            goto done;
        s = srv_store__stmt(st, STMT_TASK_CLAIM_DEVICE);
        srv_store__bind_text(s, ":dev", dev);
        srv_store__bind_int(s, ":offline_before", now - st->cfg.lease_ms);
        err = srv_store__bind_json(s, ":caps", capabilities);
        if (err)
            goto done;
    } else {
        s = srv_store__stmt(st, STMT_TASK_CLAIM);
        srv_store__bind_int(s, ":max_running", st->cfg.max_running_per_team);
        err = srv_store__bind_json(s, ":caps", capabilities);
        if (err)
            goto done;
    }
    srv_store__bind_text(s, ":worker", worker_id);
    srv_store__bind_text(s, ":team", team[0] ? team : NULL);
    srv_store__bind_int(s, ":now", now);
    srv_store__bind_int(s, ":expires", now + st->cfg.lease_ms);
    err = srv_store__step(st, s, &has_row, ei);
    if (!err && !has_row) {
        err = DP_ENOENT;
        idle = 1;
    }
    if (err)
        goto done;
    snprintf(task_id, sizeof(task_id), "%s", srv_store__col_text(s, 0));
    snprintf(job_id, sizeof(job_id), "%s", srv_store__col_text(s, 1));
    snprintf(type, sizeof(type), "%s", srv_store__col_text(s, 2));
    snprintf(ckpt, sizeof(ckpt), "%s", srv_store__col_null(s, 6) ? "" : srv_store__col_text(s, 6));
    snprintf(dep, sizeof(dep), "%s", srv_store__col_null(s, 7) ? "" : srv_store__col_text(s, 7));
    t = json_pack("{s:s, s:s, s:s, s:I, s:I, s:o}", "id", task_id, "job_id", job_id, "type", type,
                  "attempt", (json_int_t)srv_store__col_int(s, 3), "fence",
                  (json_int_t)srv_store__col_int(s, 4), "lease_expires_at",
                  srv_store__json_time(srv_store__col_int(s, 5)));
    err = srv_store__exec(st, s, ei); /* run the UPDATE ... RETURNING to completion */
    if (!err && t == NULL)
        err = DP_ENOMEM;
    if (!err)
        err = task_build(st, t, job_id, type, dep[0] ? dep : NULL, ckpt[0] ? ckpt : NULL, ei);
    if (!err && dev[0])
        err = task_set(t, "device_id", json_string(dev));
    if (!err)
        err = srv_store__event_task_state(st, job_id, task_id, type, "leased", ei);
    if (!err)
        err = srv_store__job_refresh(st, job_id, ei);
done:
    /* Nothing to lease, but the worker was seen: that sighting is how a
     * device's liveness is told (offline after a lease length without
     * one), so it is committed, not rolled back with the empty claim. */
    if (idle) {
        err = srv_store__finish(st, DP_OK, ei);
        if (!err)
            err = DP_ENOENT;
    } else {
        err = srv_store__finish(st, err, ei);
    }
out:
    srv_store__unlock(st);
    if (err) {
        json_decref(t);
        return err;
    }
    *out = t;
    return DP_OK;
}

/* The task's row when it is leased under fence to a worker of who's token:
 * job id, type, attempts, max_attempts, lease owner. DP_ESTALE ("lease
 * lost") otherwise, with one message for a stale fence, another agent's
 * lease and an unknown task, so that probing learns nothing. */
struct srv_lease {
    char job_id[SRV_ID_MAX];
    char type[16];
    char owner[SRV_ID_MAX];
    int64_t attempts, max_attempts;
};

static enum dp_err lease_check(struct srv_store *st, const struct srv_principal *who,
                               const char *task_id, int64_t fence, struct srv_lease *l,
                               struct dp_errinfo *ei)
{
    sqlite3_stmt *s = srv_store__stmt(st, STMT_TASK_LEASED);
    srv_store__bind_text(s, ":id", task_id);
    srv_store__bind_int(s, ":fence", fence);
    srv_store__bind_text(s, ":token", who->token_id);
    int r = 0;
    enum dp_err err = srv_store__step(st, s, &r, ei);
    if (!err && r == 0)
        err = dp_errinfo_set(ei, DP_ESTALE,
                             "lease lost: task '%s' is not leased under fence %" PRId64
                             " to a worker of this token",
                             task_id, fence);
    if (err) {
        sqlite3_reset(s); /* on every path: a read left open pins its snapshot */
        return err;
    }
    snprintf(l->job_id, sizeof(l->job_id), "%s", srv_store__col_text(s, 0));
    snprintf(l->type, sizeof(l->type), "%s", srv_store__col_text(s, 1));
    l->attempts = srv_store__col_int(s, 2);
    l->max_attempts = srv_store__col_int(s, 3);
    snprintf(l->owner, sizeof(l->owner), "%s",
             srv_store__col_null(s, 4) ? "" : srv_store__col_text(s, 4));
    sqlite3_reset(s);
    return DP_OK;
}

static enum dp_err job_cancel_requested(struct srv_store *st, const char *job_id, int *cancel,
                                        struct dp_errinfo *ei)
{
    sqlite3_stmt *s = srv_store__stmt(st, STMT_JOB_STATE);
    srv_store__bind_text(s, ":id", job_id);
    int has_row = 0;
    enum dp_err err = srv_store__step(st, s, &has_row, ei);
    if (err)
        return err;
    *cancel = has_row && srv_store__col_int(s, 1) != 0;
    sqlite3_reset(s);
    return DP_OK;
}

enum dp_err srv_store_task_heartbeat(struct srv_store *st, const struct srv_principal *who,
                                     const char *task_id, int64_t fence, json_t *progress,
                                     json_t **out, struct dp_errinfo *ei)
{
    struct srv_lease l;
    int cancel = 0;
    int64_t expires = srv_now_ms() + st->cfg.lease_ms;
    *out = NULL;
    srv_store__lock(st);
    enum dp_err err = srv_store__begin(st, ei);
    if (err)
        goto out;
    err = lease_check(st, who, task_id, fence, &l, ei);
    if (!err) {
        sqlite3_stmt *s = srv_store__stmt(st, STMT_TASK_EXTEND);
        srv_store__bind_text(s, ":id", task_id);
        srv_store__bind_int(s, ":expires", expires);
        err = srv_store__exec(st, s, ei);
    }
    if (!err && l.owner[0]) {
        sqlite3_stmt *s = srv_store__stmt(st, STMT_WORKER_SEEN);
        srv_store__bind_text(s, ":id", l.owner);
        srv_store__bind_int(s, ":now", srv_now_ms());
        err = srv_store__exec(st, s, ei);
    }
    if (!err && json_is_object(progress)) {
        json_t *p = json_deep_copy(progress);
        if (json_object_set_new(p, "task", json_string(l.type)) != 0)
            err = DP_ENOMEM; /* else the job's progress would be cleared */
        sqlite3_stmt *s = srv_store__stmt(st, STMT_JOB_PROGRESS);
        srv_store__bind_text(s, ":id", l.job_id);
        if (!err)
            err = srv_store__bind_json(s, ":progress", p);
        json_decref(p);
        if (!err)
            err = srv_store__exec(st, s, ei);
    }
    if (!err)
        err = job_cancel_requested(st, l.job_id, &cancel, ei);
    err = srv_store__finish(st, err, ei);
out:
    srv_store__unlock(st);
    if (!err) {
        *out = json_pack("{s:o, s:b}", "lease_expires_at", srv_store__json_time(expires), "cancel",
                         cancel);
        if (*out == NULL)
            err = DP_ENOMEM;
    }
    return err;
}

enum dp_err srv_store_task_events(struct srv_store *st, const struct srv_principal *who,
                                  const char *task_id, int64_t fence, json_t *events,
                                  struct dp_errinfo *ei)
{
    struct srv_lease l;
    srv_store__lock(st);
    enum dp_err err = srv_store__begin(st, ei);
    if (err)
        goto out;
    err = lease_check(st, who, task_id, fence, &l, ei);
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
            sqlite3_stmt *s = srv_store__stmt(st, STMT_JOB_PROGRESS);
            srv_store__bind_text(s, ":id", l.job_id);
            err = srv_store__bind_json(s, ":progress", data);
            if (!err)
                err = srv_store__exec(st, s, ei);
        }
        if (!err)
            err = srv_store__event_append(st, l.job_id,
                                          json_string_value(json_object_get(ev, "type")),
                                          data ? json_incref(data) : json_null(), ei);
        json_decref(data);
    }
    err = srv_store__finish(st, err, ei);
out:
    srv_store__unlock(st);
    return err;
}

enum dp_err srv_store_task_fence_check(struct srv_store *st, const struct srv_principal *who,
                                       const char *task_id, int64_t fence, struct dp_errinfo *ei)
{
    struct srv_lease l;
    srv_store__lock(st);
    enum dp_err err = lease_check(st, who, task_id, fence, &l, ei);
    srv_store__unlock(st);
    return err;
}

enum dp_err srv_store_task_artifact(struct srv_store *st, const struct srv_principal *who,
                                    const char *task_id, int64_t fence, const char *kind,
                                    const char *sha, int64_t size, struct dp_errinfo *ei)
{
    struct srv_lease l;
    int64_t now = srv_now_ms();
    srv_store__lock(st);
    enum dp_err err = srv_store__begin(st, ei);
    if (err)
        goto out;
    err = lease_check(st, who, task_id, fence, &l, ei);
    if (!err) {
        sqlite3_stmt *s = srv_store__stmt(st, STMT_BLOB_INSERT);
        srv_store__bind_text(s, ":sha", sha);
        srv_store__bind_int(s, ":size", size);
        srv_store__bind_int(s, ":now", now);
        err = srv_store__exec(st, s, ei);
    }
    if (!err) {
        sqlite3_stmt *s = srv_store__stmt(st, STMT_ARTIFACT_INSERT);
        srv_store__bind_text(s, ":job", l.job_id);
        srv_store__bind_text(s, ":task", task_id);
        srv_store__bind_text(s, ":kind", kind);
        srv_store__bind_text(s, ":sha", sha);
        srv_store__bind_int(s, ":size", size);
        srv_store__bind_int(s, ":now", now);
        srv_store__bind_int(s, ":fence", fence);
        err = srv_store__exec(st, s, ei);
    }
    if (!err && strcmp(kind, "checkpoint") == 0) {
        sqlite3_stmt *s = srv_store__stmt(st, STMT_TASK_CHECKPOINT);
        srv_store__bind_text(s, ":id", task_id);
        srv_store__bind_text(s, ":sha", sha);
        err = srv_store__exec(st, s, ei);
    }
    err = srv_store__finish(st, err, ei);
out:
    srv_store__unlock(st);
    return err;
}

/* Moves a task out of its lease: to state, with finished_at for terminal
 * states, a retry time for queued, and attempt_delta (-1 for a release). */
static enum dp_err task_set_state(struct srv_store *st, const char *task_id, const char *job_id,
                                  const char *type, const char *state, int64_t run_after,
                                  int attempt_delta, struct dp_errinfo *ei)
{
    sqlite3_stmt *s = srv_store__stmt(st, STMT_TASK_SET_STATE);
    srv_store__bind_text(s, ":id", task_id);
    srv_store__bind_text(s, ":state", state);
    if (strcmp(state, "queued") != 0)
        srv_store__bind_int(s, ":finished", srv_now_ms());
    srv_store__bind_int(s, ":run_after", run_after);
    srv_store__bind_int(s, ":attempt_delta", attempt_delta);
    enum dp_err err = srv_store__exec(st, s, ei);
    if (!err)
        err = srv_store__event_task_state(st, job_id, task_id, type, state, ei);
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
    sqlite3_stmt *s = srv_store__stmt(st, STMT_TASK_ERROR_INSERT);
    srv_store__bind_text(s, ":task", task_id);
    srv_store__bind_int(s, ":attempt", l->attempts);
    srv_store__bind_text(s, ":kind", kind);
    srv_store__bind_text(s, ":message", message);
    srv_store__bind_text(s, ":worker", l->owner[0] ? l->owner : NULL);
    srv_store__bind_int(s, ":now", now);
    enum dp_err err = srv_store__exec(st, s, ei);
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
        err = srv_store__job_refresh(st, l->job_id, ei);
    return err;
}

/* Checks the outputs of a completing lease: each names an artifact of its
 * kind uploaded under this very lease (task and fence), never just any
 * stored blob (another team's, or an earlier attempt's), and every output
 * the task's type must deliver (common/task_type.h, the table the worker's
 * upload reads) is there: a task completed without them would hand the
 * next task a null input. */
static enum dp_err outputs_check(struct srv_store *st, const char *task_id, int64_t fence,
                                 const char *type, json_t *outputs, struct dp_errinfo *ei)
{
    const char *key;
    json_t *v;
    json_object_foreach (outputs, key, v) {
        sqlite3_stmt *s = srv_store__stmt(st, STMT_ARTIFACT_OF_LEASE);
        srv_store__bind_text(s, ":task", task_id);
        srv_store__bind_int(s, ":fence", fence);
        srv_store__bind_text(s, ":kind", key);
        srv_store__bind_text(s, ":sha", json_string_value(v));
        int has_row = 0;
        enum dp_err err = srv_store__step(st, s, &has_row, ei);
        sqlite3_reset(s);
        if (err)
            return err;
        if (!has_row)
            return dp_errinfo_set(ei, DP_EINVAL,
                                  "outputs.%s: %s is not a %s artifact uploaded under this lease "
                                  "(PUT .../artifacts/%s?fence=%" PRId64 " first)",
                                  key, json_string_value(v), key, key, fence);
    }
    enum dp_task_type t;
    unsigned required = dp_task_type_from_name(type, &t) ? dp_task_type_outputs(t) : 0;
    for (int o = 0; o < DP_TASK_OUT__COUNT; o++) {
        const char *name = dp_task_output_name((enum dp_task_output)o);
        if ((required & (1u << o)) != 0 && json_object_get(outputs, name) == NULL)
            return dp_errinfo_set(ei, DP_EINVAL, "outputs.%s: required for a %s task", name, type);
    }
    return DP_OK;
}

/* Whether latency task task_id's device uploaded the table its job's
 * params.latency names since the task was created; DP_EINVAL if not. */
static enum dp_err latency_task_check(struct srv_store *st, const char *task_id, const char *job_id,
                                      struct dp_errinfo *ei)
{
    sqlite3_stmt *s = srv_store__stmt(st, STMT_JOB_PARAMS);
    srv_store__bind_text(s, ":id", job_id);
    int has_row = 0;
    enum dp_err err = srv_store__step(st, s, &has_row, ei);
    json_t *params = !err && has_row ? srv_store__col_json(s, 0) : NULL;
    sqlite3_reset(s);
    if (err) {
        json_decref(params);
        return err;
    }
    const json_t *lat = json_object_get(params, "latency");
    s = srv_store__stmt(st, STMT_LATENCY_OF_TASK);
    srv_store__bind_text(s, ":task", task_id);
    srv_store__bind_text(s, ":arch", json_string_value(json_object_get(lat, "arch")));
    srv_store__bind_text(s, ":scheme", json_string_value(json_object_get(lat, "scheme")));
    err = srv_store__step(st, s, &has_row, ei);
    sqlite3_reset(s);
    json_decref(params);
    if (!err && !has_row)
        err = dp_errinfo_set(ei, DP_EINVAL,
                             "a latency task completes after its device uploaded the table "
                             "(PUT /agent/v1/latency with the task's id)");
    return err;
}

enum dp_err srv_store_task_complete(struct srv_store *st, const struct srv_principal *who,
                                    const char *task_id, int64_t fence, json_t *outputs,
                                    struct dp_errinfo *ei)
{
    struct srv_lease l;
    int cancel = 0;
    srv_store__lock(st);
    enum dp_err err = srv_store__begin(st, ei);
    if (err)
        goto out;
    err = lease_check(st, who, task_id, fence, &l, ei);
    if (!err)
        err = outputs_check(st, task_id, fence, l.type, outputs, ei);
    if (!err)
        err = job_cancel_requested(st, l.job_id, &cancel, ei);
    if (!err) {
        sqlite3_stmt *s = srv_store__stmt(st, STMT_TASK_SET_OUTPUTS);
        srv_store__bind_text(s, ":id", task_id);
        err = srv_store__bind_json(s, ":outputs", outputs);
        if (!err)
            err = srv_store__exec(st, s, ei);
    }
    if (!err)
        err = task_set_state(st, task_id, l.job_id, l.type, cancel ? "cancelled" : "succeeded", 0,
                             0, ei);
    /* A latency task's result is its device's table, uploaded before. */
    if (!err && !cancel && strcmp(l.type, "latency") == 0)
        err = latency_task_check(st, task_id, l.job_id, ei);
    /* A job has one profile task per device: their results stay on the
     * tasks (and in the job's artifacts), and the device counts the run;
     * a latency task's likewise (its table is in latency_tables). */
    int profile = strcmp(l.type, "profile") == 0 || strcmp(l.type, "latency") == 0;
    if (!err && profile) {
        sqlite3_stmt *s = srv_store__stmt(st, STMT_DEVICE_RAN);
        srv_store__bind_text(s, ":task", task_id);
        err = srv_store__exec(st, s, ei);
    }
    if (!err && !cancel && !profile) {
        sqlite3_stmt *s = srv_store__stmt(st, STMT_JOB_OUTPUTS);
        srv_store__bind_text(s, ":id", l.job_id);
        err = srv_store__bind_json(s, ":outputs", outputs);
        if (!err)
            err = srv_store__exec(st, s, ei);
    }
    if (!err)
        err = srv_store__job_refresh(st, l.job_id, ei);
    err = srv_store__finish(st, err, ei);
out:
    srv_store__unlock(st);
    return err;
}

enum dp_err srv_store_task_fail(struct srv_store *st, const struct srv_principal *who,
                                const char *task_id, int64_t fence, const char *message,
                                int retryable, struct dp_errinfo *ei)
{
    struct srv_lease l;
    srv_store__lock(st);
    enum dp_err err = srv_store__begin(st, ei);
    if (err)
        goto out;
    err = lease_check(st, who, task_id, fence, &l, ei);
    if (!err)
        err = task_fail_locked(st, task_id, &l, "error", message, retryable, ei);
    err = srv_store__finish(st, err, ei);
out:
    srv_store__unlock(st);
    return err;
}

enum dp_err srv_store_task_release(struct srv_store *st, const struct srv_principal *who,
                                   const char *task_id, int64_t fence, struct dp_errinfo *ei)
{
    struct srv_lease l;
    int cancel = 0;
    srv_store__lock(st);
    enum dp_err err = srv_store__begin(st, ei);
    if (err)
        goto out;
    err = lease_check(st, who, task_id, fence, &l, ei);
    if (!err)
        err = job_cancel_requested(st, l.job_id, &cancel, ei);
    /* A release (SIGTERM) does not count as an attempt. */
    if (!err)
        err = task_set_state(st, task_id, l.job_id, l.type, cancel ? "cancelled" : "queued", 0,
                             cancel ? 0 : -1, ei);
    if (!err)
        err = srv_store__job_refresh(st, l.job_id, ei);
    err = srv_store__finish(st, err, ei);
out:
    srv_store__unlock(st);
    return err;
}

enum dp_err srv_store_reap(struct srv_store *st, int *n_reaped, int *n_ready, struct dp_errinfo *ei)
{
    *n_reaped = 0;
    *n_ready = 0;
    int64_t now = srv_now_ms();
    srv_store__lock(st);
    enum dp_err err = srv_store__begin(st, ei);
    if (err)
        goto out;
    /* Collect first: the statement must be finished before the updates. */
    struct {
        char id[SRV_ID_MAX];
        struct srv_lease l;
    } expired[100];
    int n = 0, has_row = 0;
    sqlite3_stmt *s = srv_store__stmt(st, STMT_TASK_EXPIRED);
    srv_store__bind_int(s, ":now", now);
    while (n < 100) {
        err = srv_store__step(st, s, &has_row, ei);
        if (err || !has_row)
            break; /* a failed read must not commit a partial reap */
        snprintf(expired[n].id, sizeof(expired[n].id), "%s", srv_store__col_text(s, 0));
        snprintf(expired[n].l.job_id, sizeof(expired[n].l.job_id), "%s", srv_store__col_text(s, 1));
        expired[n].l.attempts = srv_store__col_int(s, 2);
        expired[n].l.max_attempts = srv_store__col_int(s, 3);
        snprintf(expired[n].l.owner, sizeof(expired[n].l.owner), "%s",
                 srv_store__col_null(s, 4) ? "" : srv_store__col_text(s, 4));
        snprintf(expired[n].l.type, sizeof(expired[n].l.type), "%s", srv_store__col_text(s, 5));
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
    /* Tasks whose retry delay ran out since the previous pass became
     * claimable without any write: this pass is what tells the waiters. The
     * windows (previous pass, this pass] tile time, so each is told once. */
    int64_t ready = 0;
    if (!err) {
        s = srv_store__stmt(st, STMT_TASKS_BECAME_READY);
        srv_store__bind_int(s, ":since", st->reap_ready_ms);
        srv_store__bind_int(s, ":now", now);
        err = srv_store__step(st, s, &has_row, ei);
        if (!err && has_row)
            ready = srv_store__col_int(s, 0);
        sqlite3_reset(s);
    }
    if (ready > 0)
        st->txn_wakes = 1;
    err = srv_store__finish(st, err, ei);
    if (!err) {
        st->reap_ready_ms = now;
        *n_reaped = n;
        *n_ready = ready > INT_MAX ? INT_MAX : (int)ready;
    }
out:
    srv_store__unlock(st);
    return err;
}
