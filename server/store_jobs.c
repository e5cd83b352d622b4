/*
 * The store, part 2: jobs (see store.h). Submission expands a job into its
 * task chain; job state is derived from the tasks in one place
 * (srv_store__job_refresh) inside the transaction that changed a task, and
 * every change appends a "state" event, so the event stream and the
 * database never disagree. Job objects are built as JSON by SQLite.
 */
#include "server/store.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "common/alloc.h"
#include "common/assert.h"
#include "common/log.h"
#include "common/task_type.h"
#include "server/store_int.h"
#include "server/text.h"

/* ---- Jobs: reading ------------------------------------------------------------------- */

/* The job as JSON text (dp_malloc'd) for the caller's team. */
/* reader: use the read-only connection (the caller holds st->rmu), else the
 * writer (st->mu; sees the caller's own uncommitted writes). */
static enum dp_err job_text_locked(struct srv_store *st, int reader, const char *team,
                                   const char *id, char **out, struct dp_errinfo *ei)
{
    sqlite3_stmt *s =
        reader ? srv_store__rstmt(st, STMT_JOB_GET) : srv_store__stmt(st, STMT_JOB_GET);
    srv_store__bind_text(s, ":id", id);
    srv_store__bind_text(s, ":team", team);
    int has_row = 0;
    enum dp_err err = srv_store__step(st, s, &has_row, ei);
    if (err)
        return err;
    if (!has_row)
        return dp_errinfo_set(ei, DP_ENOENT, "no job '%s'", id);
    *out = dp_strdup(srv_store__col_text(s, 1));
    sqlite3_reset(s);
    return *out ? DP_OK : DP_ENOMEM;
}

static enum dp_err job_get_locked(struct srv_store *st, const char *team, const char *id,
                                  json_t **out, struct dp_errinfo *ei)
{
    char *text = NULL;
    enum dp_err err = job_text_locked(st, 0, team, id, &text, ei);
    if (err)
        return err;
    *out = json_loads(text, 0, NULL);
    dp_free(text);
    return *out ? DP_OK : DP_ENOMEM;
}

enum dp_err srv_store_job_get(struct srv_store *st, const struct srv_principal *who, const char *id,
                              json_t **out, struct dp_errinfo *ei)
{
    srv_store__lock(st);
    enum dp_err err = job_get_locked(st, who->team_id, id, out, ei);
    srv_store__unlock(st);
    return err;
}

enum dp_err srv_store_job_get_text(struct srv_store *st, const struct srv_principal *who,
                                   const char *id, char **out, struct dp_errinfo *ei)
{
    srv_store__rlock(st);
    enum dp_err err = job_text_locked(st, 1, who->team_id, id, out, ei);
    srv_store__runlock(st);
    return err;
}

enum dp_err srv_store_job_list_text(struct srv_store *st, const struct srv_principal *who,
                                    const char *state, int limit, int64_t cursor, char **out,
                                    struct dp_errinfo *ei)
{
    struct srv_text t = {0};
    int64_t last = 0;
    int n = 0, has_row = 0;
    enum dp_err err = DP_OK;
    int oom = srv_text_add(&t, "{\"items\":[", 10) != DP_OK;
    srv_store__rlock(st);
    sqlite3_stmt *s = srv_store__rstmt(st, state ? STMT_JOB_LIST_STATE : STMT_JOB_LIST);
    srv_store__bind_text(s, ":team", who->team_id);
    if (state)
        srv_store__bind_text(s, ":state", state);
    srv_store__bind_int(s, ":cursor", srv_store__cursor_bound(cursor));
    srv_store__bind_int(s, ":limit", limit);
    for (;;) {
        err = srv_store__step(st, s, &has_row, ei);
        if (err || !has_row)
            break;
        const char *job = srv_store__col_text(s, 1);
        last = srv_store__col_int(s, 0);
        if (n++ > 0)
            oom |= srv_text_add(&t, ",", 1) != DP_OK;
        oom |= srv_text_add(&t, job, strlen(job)) != DP_OK;
    }
    sqlite3_reset(s);
    srv_store__runlock(st);
    char tail[64];
    if (n == limit)
        snprintf(tail, sizeof(tail), "],\"next_cursor\":\"%" PRId64 "\"}", last);
    else
        snprintf(tail, sizeof(tail), "],\"next_cursor\":null}");
    oom |= srv_text_add(&t, tail, strlen(tail)) != DP_OK;
    if (err || oom) {
        srv_text_free(&t);
        return err ? err : DP_ENOMEM;
    }
    *out = t.p;
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
enum dp_err srv_store__job_refresh(struct srv_store *st, const char *job_id, struct dp_errinfo *ei)
{
    sqlite3_stmt *s = srv_store__stmt(st, STMT_JOB_STATE);
    srv_store__bind_text(s, ":id", job_id);
    int has_row = 0;
    enum dp_err err = srv_store__step(st, s, &has_row, ei);
    if (err)
        return err;
    if (!has_row)
        return dp_errinfo_set(ei, DP_ENOENT, "no job '%s'", job_id);
    char old[16];
    snprintf(old, sizeof(old), "%s", srv_store__col_text(s, 0));
    int cancel = (int)srv_store__col_int(s, 1);
    int64_t started = srv_store__col_null(s, 2) ? 0 : srv_store__col_int(s, 2);
    sqlite3_reset(s);
    if (cancel)
        return DP_OK; /* cancelled stays cancelled until a retry */

    int64_t n_total = 0, n_ok = 0, n_bad = 0, n_active = 0;
    s = srv_store__stmt(st, STMT_TASK_STATES_OF_JOB);
    srv_store__bind_text(s, ":job", job_id);
    for (;;) {
        err = srv_store__step(st, s, &has_row, ei);
        if (err || !has_row)
            break;
        const char *ts = srv_store__col_text(s, 0);
        int64_t n = srv_store__col_int(s, 1);
        n_total += n;
        if (strcmp(ts, "succeeded") == 0)
            n_ok += n;
        else if (strcmp(ts, "failed") == 0 || strcmp(ts, "dead") == 0)
            n_bad += n;
        else if (strcmp(ts, "leased") == 0)
            n_active += n;
    }
    if (err)
        return err;
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
    if (strcmp(state, "failed") == 0) {
        s = srv_store__stmt(st, STMT_TASK_LAST_ERROR);
        srv_store__bind_text(s, ":job", job_id);
        err = srv_store__step(st, s, &has_row, ei);
        if (err)
            return err;
        error = dp_strdup(has_row ? srv_store__col_text(s, 0) : "a task failed");
        sqlite3_reset(s);
        if (error == NULL)
            return DP_ENOMEM;
        s = srv_store__stmt(st, STMT_TASKS_CANCEL_QUEUED);
        srv_store__bind_text(s, ":job", job_id);
        srv_store__bind_int(s, ":now", now);
        err = srv_store__exec(st, s, ei);
    }
    if (!err) {
        s = srv_store__stmt(st, STMT_JOB_SET_STATE);
        srv_store__bind_text(s, ":id", job_id);
        srv_store__bind_text(s, ":state", state);
        srv_store__bind_int(s, ":started", started ? started : now);
        if (strcmp(state, "queued") == 0 && !started)
            srv_store__bind_text(s, ":started", NULL);
        if (job_state_terminal(state))
            srv_store__bind_int(s, ":finished", now);
        srv_store__bind_text(s, ":error", error);
        err = srv_store__exec(st, s, ei);
    }
    if (!err) {
        json_t *d = json_pack("{s:s, s:s}", "job_state", state, "previous", old);
        if (error)
            json_object_set_new(d, "error", json_string(error));
        err = srv_store__event_append(st, job_id, "state", d, ei);
    }
    dp_free(error);
    return err;
}

/* The tasks a job expands into, in dependency order; a job with pretrain
 * starts at train, an uploaded model at compress; compile runs only for a
 * job with a compile field. Compile comes after export although it reads
 * the retrain model (store_queue.c, task_build): the job's artifacts are
 * then complete before the slower, optional step. */
static const enum dp_task_type srv_task_chain[] = {DP_TASK_TRAIN, DP_TASK_COMPRESS, DP_TASK_RETRAIN,
                                                   DP_TASK_EXPORT, DP_TASK_COMPILE};
#define SRV_TASK_CHAIN_LEN (sizeof(srv_task_chain) / sizeof(srv_task_chain[0]))

/* Whether job j has a task of chain position i. */
static int srv_task_in_chain(const struct srv_job_new *j, size_t i)
{
    if (srv_task_chain[i] == DP_TASK_TRAIN)
        return j->has_pretrain;
    if (srv_task_chain[i] == DP_TASK_COMPILE)
        return j->has_compile;
    return 1;
}

/* One profile task per device of team matching j's selectors, each after
 * the compile task dep and each listing every matched device as a
 * candidate to move to when its own goes offline. No device matching is
 * the caller's mistake (DP_EINVAL: a 422 at submission). */
static enum dp_err profile_tasks_insert(struct srv_store *st, const char *team,
                                        const struct srv_job_new *j, const char *job_id,
                                        const char *dep, int64_t now, struct dp_errinfo *ei)
{
    json_t *ids = json_array();
    enum dp_err err = ids ? DP_OK : DP_ENOMEM;
    if (!err)
        err = srv_store__devices_match(st, team, j->profile_devices, ids, ei);
    if (!err && json_array_size(ids) == 0)
        err = dp_errinfo_set(ei, DP_EINVAL,
                             "profile.devices: no registered device of this team (or shared) "
                             "matches; GET /api/v1/devices lists them");
    size_t i;
    json_t *dev;
    json_array_foreach (ids, i, dev) {
        char tid[SRV_ID_MAX];
        if (!err)
            err = srv_id_new("tsk_", tid);
        if (err)
            break;
        sqlite3_stmt *s = srv_store__stmt(st, STMT_TASK_INSERT_PROFILE);
        srv_store__bind_text(s, ":id", tid);
        srv_store__bind_text(s, ":job", job_id);
        srv_store__bind_text(s, ":dep", dep);
        srv_store__bind_int(s, ":prio", j->priority);
        srv_store__bind_int(s, ":maxatt", j->max_attempts);
        srv_store__bind_int(s, ":now", now);
        srv_store__bind_text(s, ":type", "profile");
        srv_store__bind_text(s, ":dev", json_string_value(dev));
        err = srv_store__bind_json(s, ":cands", ids);
        if (!err)
            err = srv_store__exec(st, s, ei);
    }
    json_decref(ids);
    return err;
}

/*
 * spec.auto.objective "latency" (docs/api.md, "Latency tables"): decides the
 * table's key and whether the job measures it. The key is (device, arch,
 * scheme), arch the model asset's built-in architecture name, else its
 * sha256 (the same for every job on that upload: a pretrained model's
 * weights differ per job, its architecture does not). params gets
 * params.latency = j->latency plus "arch". When a device of team the
 * selector matches has a fresh table, the job reuses it (*task_dev ""),
 * else *task_dev is the device that measures (the first match; *ids the
 * candidates it may move to). *ev_out: the decision as a "log" event for
 * the job (kind "latency"). No device matching: DP_EINVAL (a 422).
 */
static enum dp_err latency_plan(struct srv_store *st, const char *team, const struct srv_job_new *j,
                                const json_t *model, json_t *params, json_t *ids,
                                char task_dev[SRV_ID_MAX], json_t **ev_out, struct dp_errinfo *ei)
{
    const char *arch = json_string_value(json_object_get(model, "arch"));
    if (arch == NULL)
        arch = json_string_value(json_object_get(model, "sha256"));
    const char *scheme = json_string_value(json_object_get(j->latency, "scheme"));
    json_t *sels = json_pack("[O]", json_object_get(j->latency, "device"));
    task_dev[0] = '\0';
    if (arch == NULL || scheme == NULL || sels == NULL) {
        json_decref(sels);
        return dp_errinfo_set(ei, DP_EINVAL,
                              "spec.auto.objective \"latency\": the model has no architecture "
                              "or sha256 to key the latency table by");
    }
    json_t *lat = json_deep_copy(j->latency);
    enum dp_err err = lat != NULL && json_object_set_new(lat, "arch", json_string(arch)) == 0 &&
                              json_object_set_new(params, "latency", lat) == 0
                          ? DP_OK
                          : DP_ENOMEM;
    if (!err)
        err = srv_store__devices_match(st, team, sels, ids, ei);
    json_decref(sels);
    if (!err && json_array_size(ids) == 0)
        err = dp_errinfo_set(ei, DP_EINVAL,
                             "spec.auto.device: no registered device of this team (or shared) "
                             "matches, so no latency table can be measured; GET /api/v1/devices "
                             "lists them");
    if (err)
        return err;
    const int64_t now = srv_now_ms();
    int has_row = 0;
    sqlite3_stmt *s = srv_store__stmt(st, STMT_LATENCY_GET);
    srv_store__bind_text(s, ":arch", arch);
    srv_store__bind_text(s, ":scheme", scheme);
    srv_store__bind_int(s, ":fresh_after", srv_store__latency_fresh_after(st, now));
    err = srv_store__bind_json(s, ":ids", ids);
    if (!err)
        err = srv_store__step(st, s, &has_row, ei);
    json_t *ev = NULL;
    char msg[400];
    if (!err && has_row && srv_store__col_int(s, 5) != 0) {
        int64_t age = (now - srv_store__col_int(s, 1)) / 1000;
        snprintf(msg, sizeof(msg),
                 "latency table of device '%s' for %.64s/%s is fresh (measured %lld s ago): "
                 "reused, nothing to measure",
                 srv_store__col_text(s, 3), arch, scheme, (long long)age);
        ev = json_pack("{s:s, s:s, s:s, s:s, s:I}", "kind", "latency", "message", msg, "device",
                       srv_store__col_text(s, 3), "table", "reused", "age_s", (json_int_t)age);
    } else if (!err) {
        snprintf(task_dev, SRV_ID_MAX, "%s", json_string_value(json_array_get(ids, 0)));
        snprintf(msg, sizeof(msg),
                 "no fresh latency table for %.64s/%s on the %zu matching device(s)%s: "
                 "a latency task measures it before compress",
                 arch, scheme, json_array_size(ids),
                 has_row ? " (the newest is stale: too old or the device changed)" : "");
        ev = json_pack("{s:s, s:s, s:s}", "kind", "latency", "message", msg, "table", "measure");
    }
    sqlite3_reset(s);
    if (!err && ev == NULL)
        err = DP_ENOMEM;
    if (err)
        json_decref(ev);
    else
        *ev_out = ev;
    return err;
}

/* Inserts the latency task of job_id on device dev (candidates ids) after
 * dep (may be NULL); its id in tid. */
static enum dp_err latency_task_insert(struct srv_store *st, const struct srv_job_new *j,
                                       const char *job_id, const char *dep, const char *dev,
                                       const json_t *ids, int64_t now, char tid[SRV_ID_MAX],
                                       struct dp_errinfo *ei)
{
    enum dp_err err = srv_id_new("tsk_", tid);
    if (err)
        return err;
    sqlite3_stmt *s = srv_store__stmt(st, STMT_TASK_INSERT_PROFILE);
    srv_store__bind_text(s, ":id", tid);
    srv_store__bind_text(s, ":job", job_id);
    srv_store__bind_text(s, ":type", "latency");
    srv_store__bind_text(s, ":dep", dep);
    srv_store__bind_int(s, ":prio", j->priority);
    srv_store__bind_int(s, ":maxatt", j->max_attempts);
    srv_store__bind_int(s, ":now", now);
    srv_store__bind_text(s, ":dev", dev);
    err = srv_store__bind_json(s, ":cands", ids);
    if (!err)
        err = srv_store__exec(st, s, ei);
    return err;
}

enum dp_err srv_store_job_create(struct srv_store *st, const struct srv_principal *who,
                                 const struct srv_job_new *j, json_t **out, int *replayed,
                                 struct dp_errinfo *ei)
{
    char id[SRV_ID_MAX], found[SRV_ID_MAX], prev[SRV_ID_MAX] = "";
    int64_t now = srv_now_ms();
    json_t *model = NULL, *dataset = NULL, *params = NULL, *lat_ids = NULL, *lat_ev = NULL;
    char lat_dev[SRV_ID_MAX] = "";
    *out = NULL;
    *replayed = 0;
    enum dp_err err = srv_id_new("job_", id);
    if (err)
        return err;
    srv_store__lock(st);
    err = srv_store__begin(st, ei);
    if (err)
        goto out;
    err = srv_store__idem_lookup(st, who, "job", j->idem_key, j->req_hash, found, ei);
    if (err)
        goto done;
    if (found[0]) {
        *replayed = 1;
        err = job_get_locked(st, who->team_id, found, out, ei);
        goto done;
    }
    /* Only an absent asset is the caller's mistake; a failed read stays an error. */
    err = srv_store__asset_get_locked(st, who->team_id, "model", j->model_id, &model, ei);
    if (err == DP_ENOENT)
        err = dp_errinfo_set(ei, DP_EINVAL, "model_id: no model '%s' in this team", j->model_id);
    if (err)
        goto done;
    err = srv_store__asset_get_locked(st, who->team_id, "dataset", j->dataset_id, &dataset, ei);
    if (err == DP_ENOENT)
        err = dp_errinfo_set(ei, DP_EINVAL, "dataset_id: no dataset '%s' in this team",
                             j->dataset_id);
    if (err)
        goto done;
    if (json_object_get(model, "arch") && !j->has_pretrain) {
        err = dp_errinfo_set(ei, DP_EINVAL,
                             "pretrain: required because model '%s' is a built-in architecture "
                             "without weights",
                             j->model_id);
        goto done;
    }
    params = json_deep_copy(j->params);
    lat_ids = json_array();
    if (params == NULL || lat_ids == NULL) {
        err = DP_ENOMEM;
        goto done;
    }
    if (j->latency != NULL)
        err = latency_plan(st, who->team_id, j, model, params, lat_ids, lat_dev, &lat_ev, ei);
    if (err)
        goto done;
    sqlite3_stmt *s = srv_store__stmt(st, STMT_JOB_INSERT);
    srv_store__bind_text(s, ":id", id);
    srv_store__bind_text(s, ":team", who->team_id);
    srv_store__bind_text(s, ":name", j->name);
    srv_store__bind_text(s, ":model", j->model_id);
    srv_store__bind_text(s, ":dataset", j->dataset_id);
    srv_store__bind_int(s, ":prio", j->priority);
    srv_store__bind_int(s, ":maxatt", j->max_attempts);
    srv_store__bind_int(s, ":now", now);
    err = srv_store__bind_json(s, ":params", params);
    if (!err)
        err = srv_store__exec(st, s, ei);
    for (size_t i = 0; !err && i < SRV_TASK_CHAIN_LEN; i++) {
        if (!srv_task_in_chain(j, i))
            continue;
        char tid[SRV_ID_MAX];
        /* The device measures first; compress waits for its table as
         * compile waits for the model. */
        if (srv_task_chain[i] == DP_TASK_COMPRESS && lat_dev[0]) {
            err = latency_task_insert(st, j, id, prev[0] ? prev : NULL, lat_dev, lat_ids, now, tid,
                                      ei);
            if (err)
                break;
            snprintf(prev, sizeof(prev), "%s", tid);
        }
        err = srv_id_new("tsk_", tid);
        if (err)
            break;
        s = srv_store__stmt(st, STMT_TASK_INSERT);
        srv_store__bind_text(s, ":id", tid);
        srv_store__bind_text(s, ":job", id);
        srv_store__bind_text(s, ":type", dp_task_type_name(srv_task_chain[i]));
        srv_store__bind_text(s, ":dep", prev[0] ? prev : NULL);
        srv_store__bind_int(s, ":prio", j->priority);
        srv_store__bind_int(s, ":maxatt", j->max_attempts);
        srv_store__bind_int(s, ":now", now);
        err = srv_store__exec(st, s, ei);
        snprintf(prev, sizeof(prev), "%s", tid);
    }
    if (!err && j->profile_devices)
        err = profile_tasks_insert(st, who->team_id, j, id, prev, now, ei);
    if (!err && lat_ev != NULL) {
        err = srv_store__event_append(st, id, "log", lat_ev, ei);
        lat_ev = NULL;
    }
    if (!err)
        err =
            srv_store__event_append(st, id, "state", json_pack("{s:s}", "job_state", "queued"), ei);
    if (!err)
        err = srv_store__idem_record(st, who, "job", j->idem_key, j->req_hash, id, ei);
    if (!err)
        err = job_get_locked(st, who->team_id, id, out, ei);
done:
    err = srv_store__finish(st, err, ei);
out:
    srv_store__unlock(st);
    json_decref(model);
    json_decref(dataset);
    json_decref(params);
    json_decref(lat_ids);
    json_decref(lat_ev);
    if (err) {
        json_decref(*out);
        *out = NULL;
    }
    return err;
}

/* Reads the job's state for the caller's team into state (16 bytes). */
static enum dp_err job_team_state(struct srv_store *st, int reader, const char *team,
                                  const char *id, char state[16], struct dp_errinfo *ei)
{
    sqlite3_stmt *s = reader ? srv_store__rstmt(st, STMT_JOB_TEAM_STATE)
                             : srv_store__stmt(st, STMT_JOB_TEAM_STATE);
    srv_store__bind_text(s, ":id", id);
    srv_store__bind_text(s, ":team", team);
    int has_row = 0;
    enum dp_err err = srv_store__step(st, s, &has_row, ei);
    if (err)
        return err;
    if (!has_row)
        return dp_errinfo_set(ei, DP_ENOENT, "no job '%s'", id);
    snprintf(state, 16, "%s", srv_store__col_text(s, 0));
    sqlite3_reset(s);
    return DP_OK;
}

enum dp_err srv_store_job_cancel(struct srv_store *st, const struct srv_principal *who,
                                 const char *id, json_t **out, struct dp_errinfo *ei)
{
    char state[16];
    int64_t now = srv_now_ms();
    *out = NULL;
    srv_store__lock(st);
    enum dp_err err = srv_store__begin(st, ei);
    if (err)
        goto out;
    err = job_team_state(st, 0, who->team_id, id, state, ei);
    if (!err && (strcmp(state, "succeeded") == 0 || strcmp(state, "failed") == 0))
        err = dp_errinfo_set(ei, DP_EEXIST, "job '%s' has already %s", id, state);
    if (!err && strcmp(state, "cancelled") != 0) {
        sqlite3_stmt *s = srv_store__stmt(st, STMT_JOB_CANCEL);
        srv_store__bind_text(s, ":id", id);
        srv_store__bind_int(s, ":now", now);
        err = srv_store__exec(st, s, ei);
        if (!err) {
            /* Queued tasks stop now; a leased one hears it in its heartbeat. */
            s = srv_store__stmt(st, STMT_TASKS_CANCEL_QUEUED);
            srv_store__bind_text(s, ":job", id);
            srv_store__bind_int(s, ":now", now);
            err = srv_store__exec(st, s, ei);
        }
        if (!err)
            err = srv_store__event_append(
                st, id, "state",
                json_pack("{s:s, s:s}", "job_state", "cancelled", "previous", state), ei);
    }
    if (!err)
        err = job_get_locked(st, who->team_id, id, out, ei);
    err = srv_store__finish(st, err, ei);
out:
    srv_store__unlock(st);
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
    srv_store__lock(st);
    enum dp_err err = srv_store__begin(st, ei);
    if (err)
        goto out;
    err = job_team_state(st, 0, who->team_id, id, state, ei);
    if (!err && strcmp(state, "failed") != 0 && strcmp(state, "cancelled") != 0)
        err = dp_errinfo_set(ei, DP_EEXIST, "job '%s' is %s; only failed or cancelled jobs retry",
                             id, state);
    if (!err) {
        sqlite3_stmt *s = srv_store__stmt(st, STMT_TASKS_RETRY);
        srv_store__bind_text(s, ":job", id);
        err = srv_store__exec(st, s, ei);
    }
    if (!err) {
        sqlite3_stmt *s = srv_store__stmt(st, STMT_JOB_RETRY);
        srv_store__bind_text(s, ":id", id);
        err = srv_store__exec(st, s, ei);
    }
    if (!err)
        err = srv_store__event_append(
            st, id, "state", json_pack("{s:s, s:s}", "job_state", "queued", "previous", state), ei);
    if (!err)
        err = srv_store__job_refresh(st, id, ei);
    if (!err)
        err = job_get_locked(st, who->team_id, id, out, ei);
    err = srv_store__finish(st, err, ei);
out:
    srv_store__unlock(st);
    if (err) {
        json_decref(*out);
        *out = NULL;
    }
    return err;
}

enum dp_err srv_store_job_report(struct srv_store *st, const struct srv_principal *who,
                                 const char *id, char sha[65], struct dp_errinfo *ei)
{
    srv_store__lock(st);
    sqlite3_stmt *s = srv_store__stmt(st, STMT_JOB_REPORT);
    srv_store__bind_text(s, ":id", id);
    srv_store__bind_text(s, ":team", who->team_id);
    int has_row = 0;
    enum dp_err err = srv_store__step(st, s, &has_row, ei);
    if (!err && !has_row)
        err = dp_errinfo_set(ei, DP_ENOENT, "no job '%s'", id);
    else if (!err && srv_store__col_null(s, 0))
        err = dp_errinfo_set(ei, DP_ENOENT, "report_not_ready");
    else if (!err)
        snprintf(sha, 65, "%s", srv_store__col_text(s, 0));
    sqlite3_reset(s);
    srv_store__unlock(st);
    return err;
}

enum dp_err srv_store_job_artifacts(struct srv_store *st, const struct srv_principal *who,
                                    const char *id, json_t **out, struct dp_errinfo *ei)
{
    char state[16];
    json_t *items = json_array();
    int has_row = 0;
    srv_store__lock(st);
    enum dp_err err = items ? job_team_state(st, 0, who->team_id, id, state, ei) : DP_ENOMEM;
    if (!err) {
        sqlite3_stmt *s = srv_store__stmt(st, STMT_ARTIFACTS_OF_JOB);
        srv_store__bind_text(s, ":job", id);
        for (;;) {
            err = srv_store__step(st, s, &has_row, ei);
            if (err || !has_row)
                break;
            json_t *a = json_pack(
                "{s:o, s:o, s:o, s:I, s:o}", "sha256", srv_store__col_str(s, 0), "kind",
                srv_store__col_str(s, 1), "task_id", srv_store__col_str(s, 2), "size",
                (json_int_t)srv_store__col_int(s, 3), "created_at", srv_store__col_time(s, 4));
            if (json_array_append_new(items, a) != 0) {
                err = DP_ENOMEM; /* a missing artifact would look like none */
                break;
            }
        }
        sqlite3_reset(s);
    }
    srv_store__unlock(st);
    if (err) {
        json_decref(items);
        return err;
    }
    *out = json_pack("{s:o}", "items", items);
    return *out ? DP_OK : DP_ENOMEM;
}

enum dp_err srv_store_events_after(struct srv_store *st, const struct srv_principal *who,
                                   const char *job_id, int64_t after, int max, json_t **out,
                                   int *terminal, struct dp_errinfo *ei)
{
    char state[16];
    json_t *items = json_array();
    int has_row = 0;
    if (items == NULL)
        return DP_ENOMEM;
    srv_store__rlock(st);
    /* One read transaction: the events and the state come from one snapshot. */
    enum dp_err err = sqlite3_exec(st->rdb, "BEGIN", NULL, NULL, NULL) == SQLITE_OK
                          ? DP_OK
                          : dp_errinfo_set(ei, DP_EIO, "database: cannot begin a read");
    if (err)
        goto out;
    err = job_team_state(st, 1, who->team_id, job_id, state, ei);
    if (!err) {
        sqlite3_stmt *s = srv_store__rstmt(st, STMT_EVENTS_AFTER);
        srv_store__bind_text(s, ":job", job_id);
        srv_store__bind_int(s, ":after", after);
        srv_store__bind_int(s, ":limit", max);
        for (;;) {
            err = srv_store__step(st, s, &has_row, ei);
            if (err || !has_row)
                break;
            json_t *ev =
                json_pack("{s:I, s:o, s:o}", "id", (json_int_t)srv_store__col_int(s, 0), "type",
                          srv_store__col_str(s, 1), "data", srv_store__col_json(s, 2));
            /* A dropped event would be skipped for good: the stream resumes after the last id. */
            if (json_array_append_new(items, ev) != 0) {
                err = DP_ENOMEM;
                break;
            }
        }
        sqlite3_reset(s);
    }
    sqlite3_exec(st->rdb, "COMMIT", NULL, NULL, NULL);
out:
    srv_store__runlock(st);
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
    srv_store__rlock(st);
    sqlite3_stmt *s = srv_store__rstmt(st, STMT_BLOB_TEAM);
    srv_store__bind_text(s, ":sha", sha);
    srv_store__bind_text(s, ":team", who->scope == SRV_SCOPE_ADMIN ? NULL : who->team_id);
    int has_row = 0;
    enum dp_err err = srv_store__step(st, s, &has_row, ei);
    if (!err && !has_row)
        err = dp_errinfo_set(ei, DP_ENOENT, "no artifact '%s'", sha);
    else if (!err)
        *size = srv_store__col_int(s, 0);
    sqlite3_reset(s);
    srv_store__runlock(st);
    return err;
}

enum dp_err srv_store_blob_agent(struct srv_store *st, const struct srv_principal *who,
                                 const char *sha, int64_t *size, struct dp_errinfo *ei)
{
    srv_store__rlock(st);
    sqlite3_stmt *s = srv_store__rstmt(st, STMT_BLOB_AGENT);
    srv_store__bind_text(s, ":sha", sha);
    srv_store__bind_text(s, ":token", who->token_id);
    int has_row = 0;
    enum dp_err err = srv_store__step(st, s, &has_row, ei);
    if (!err && !has_row)
        err = dp_errinfo_set(ei, DP_ENOENT,
                             "no blob '%s' referenced by a task this token's workers lease", sha);
    else if (!err)
        *size = srv_store__col_int(s, 0);
    sqlite3_reset(s);
    srv_store__runlock(st);
    return err;
}
