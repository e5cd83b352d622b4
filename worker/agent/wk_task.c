/*
 * One leased task, start to end (see wk_task.h for the thread design).
 *
 * DESIGN (phases):
 *   1. prepare: task directory DIR/tasks/<task>-a<attempt>, inputs from the
 *      cache hard-linked into it (so eviction cannot pull them away), the
 *      engine command's options bound from the task's JSON (wk_engine.h).
 *      A failure here is reported with `fail` (retryable when it was the
 *      network; a task the command refuses is not).
 *   2. run: the engine thread runs the command; the loop thread heartbeats
 *      every heartbeat_s, posts events in batches, uploads checkpoints and
 *      watches the SIGTERM flag. Events the server did not take (it may be
 *      restarting) stay in an outbox and go with the next batch; a newer
 *      checkpoint replaces one that could not be uploaded yet.
 *   3. finish (blocking calls, no loop): flush events; then by the
 *      engine's result upload outputs and `complete`, or upload the last
 *      checkpoint and `release` (SIGTERM), or `fail` with the engine's
 *      dp_errinfo message (after the last checkpoint, when another attempt
 *      may succeed). Calls that
 *      get no answer are retried with backoff for a few minutes, so a
 *      server restart does not lose a finished task; a 409 means the lease
 *      is someone else's now and the task ends quietly.
 */
#include "worker/agent/wk_task.h"

#include <dirent.h>
#include <errno.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "common/alloc.h"
#include "common/dataset.h"
#include "common/log.h"
#include "common/task_type.h"

/* Task directory paths: the cache dir (PATH_MAX-ish in practice far less)
 * plus "tasks/<id>-a<attempt>/<file>"; longer ones are refused, not cut. */
#define WK_PATH_MAX 1200
/* Events kept while the server does not answer: about an hour of epochs of
 * a fast model; past it the oldest go, so a long outage cannot grow memory. */
#define WK_OUTBOX_MAX 2000
/* How long the finish phase retries calls that got no answer: long enough
 * for a server restart (seconds) plus its recovery, short enough that a
 * worker whose server is gone for good moves on to its next claim. */
#define WK_FINISH_RETRY_S 300
/* Finishing after a failure to start the engine thread: the message is all
 * there is to deliver, so a shorter wait. */
#define WK_START_FAIL_RETRY_S 60
/* Releasing a task SIGTERM caught before its engine started: whoever sent
 * SIGTERM (systemd, the server's supervisor) waits about 10 s, then kills. */
#define WK_TERM_RELEASE_S 30
/* Retries after SIGTERM: a few, for the same reason. */
#define WK_TERM_MAX_RETRIES 3
/* Finish-phase backoff: 1, 2, 4, 8, 8, ... seconds. */
#define WK_RETRY_FIRST_S 1u
#define WK_RETRY_MAX_S   8u
/* A checkpoint upload that failed is tried again after this long (a newer
 * checkpoint replaces it meanwhile), not on every tick. */
#define WK_UPLOAD_RETRY_S 2
/* The loop's tick: how soon SIGTERM reaches the engine's stop() and a
 * finished engine is noticed; cheap, since a tick only reads flags. */
#define WK_TICK_MS 200

enum wk_stop { WK_STOP_NONE = 0, WK_STOP_CANCEL, WK_STOP_LOST, WK_STOP_TERM };

struct wk_task {
    const struct wk_task_env *env;
    const char *id, *type, *job_id;
    const char *device_id; /* profile: the device the server leased it to */
    enum dp_task_type ttype;
    json_int_t fence, attempt;
    const json_t *params, *inputs;

    char dir[WK_PATH_MAX];
    char data_spec[WK_PATH_MAX];
    char p_model[WK_PATH_MAX], p_prev[WK_PATH_MAX];
    char p_out[WK_PATH_MAX], p_report[WK_PATH_MAX], p_onnx[WK_PATH_MAX], p_ckpt[WK_PATH_MAX];
    char p_code[WK_PATH_MAX], p_creport[WK_PATH_MAX];
    char p_code_in[WK_PATH_MAX], p_dense[WK_PATH_MAX], p_profile[WK_PATH_MAX];
    char p_latency[WK_PATH_MAX];
    struct wk_task_files files;
    struct wk_engine_job job; /* the command's options; read by the engine thread */

    /* ---- loop ---- */
    uv_loop_t loop;
    uv_timer_t hb_timer, tick_timer;
    uv_async_t wake;
    uv_thread_t thread;
    uv_mutex_t mu;
    int handles_open;

    /* ---- shared, under mu ---- */
    json_t *queue;          /* engine events not yet taken by the loop: [{type, data}] */
    char snap[WK_PATH_MAX]; /* newest checkpoint snapshot not yet uploaded, "" if none */
    json_t *snap_info;      /* what the engine said about it, plus the last epoch */
    json_t *latency;        /* spec.auto.objective "latency": the device's table, or NULL */
    int engine_done;
    enum dp_err engine_err;      /* the entry point's result */
    struct dp_errinfo engine_ei; /* and its message */

    /* ---- engine thread only ---- */
    int snap_seq;

    /* ---- any thread ---- */
    atomic_int stop;

    /* ---- loop thread only ---- */
    json_t *outbox;   /* API events not yet accepted */
    json_t *progress; /* the last epoch data, sent with heartbeats */
    int n_ckpt_uploaded;
    int term_retries; /* finish-phase retries since SIGTERM */
    time_t next_upload_try;
};

const char *wk_task_outcome_name(enum wk_task_outcome o)
{
    switch (o) {
        case WK_TASK_COMPLETED:
            return "completed";
        case WK_TASK_FAILED:
            return "failed";
        case WK_TASK_RELEASED:
            return "released";
        case WK_TASK_CANCELLED:
            return "cancelled";
        case WK_TASK_LOST:
            return "lease lost";
    }
    return "?";
}

/* ---- Files ---------------------------------------------------------------- */

static int wk_path(char *out, const char *dir, const char *name)
{
    int n = snprintf(out, WK_PATH_MAX, "%s/%s", dir, name);
    return n >= 0 && n < WK_PATH_MAX ? 0 : -1;
}

/* Removes dir's files and its subdirectories' files (task dirs are two levels deep). */
static void wk_rmtree(const char *dir, int depth)
{
    DIR *d = opendir(dir);
    if (d != NULL) {
        for (struct dirent *e = readdir(d); e != NULL; e = readdir(d)) {
            char p[WK_PATH_MAX];
            struct stat st;
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0 ||
                wk_path(p, dir, e->d_name) != 0 || lstat(p, &st) != 0)
                continue;
            if (S_ISDIR(st.st_mode) && depth > 0)
                wk_rmtree(p, depth - 1);
            else
                unlink(p);
        }
        closedir(d);
    }
    rmdir(dir);
}

static int wk_file_exists(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

/* ---- Inputs --------------------------------------------------------------- */

struct wk_fetch_ctx {
    struct wk_agent *agent;
    uint64_t max_bytes;
};

static enum dp_err wk_fetch_blob(void *ud, const char *sha256, FILE *out, struct dp_errinfo *ei)
{
    struct wk_fetch_ctx *f = ud;
    return wk_agent_blob(f->agent, sha256, out, f->max_bytes, ei);
}

/* Brings input {sha256, size} into the cache and links it to dest. */
static enum dp_err wk_task_input(struct wk_task *t, const char *what, const json_t *in,
                                 const char *dest, struct dp_errinfo *ei)
{
    const char *sha = json_string_value(json_object_get(in, "sha256"));
    const json_t *size = json_object_get(in, "size");
    if (sha == NULL || !json_is_integer(size) || json_integer_value(size) < 0)
        return dp_errinfo_set(ei, DP_EFORMAT, "inputs.%s: needs sha256 and size", what);
    struct wk_fetch_ctx fc = {t->env->agent, (uint64_t)json_integer_value(size)};
    char cached[WK_PATH_MAX];
    enum dp_err err = wk_cache_get(t->env->cache, sha, (uint64_t)json_integer_value(size),
                                   wk_fetch_blob, &fc, cached, sizeof(cached), ei);
    if (!err)
        err = wk_cache_link(t->env->cache, sha, dest, ei);
    return err;
}

static enum dp_err wk_task_dataset(struct wk_task *t, struct dp_errinfo *ei)
{
    const json_t *ds = json_object_get(t->inputs, "dataset");
    const char *builtin = json_string_value(json_object_get(ds, "builtin"));
    if (builtin != NULL) {
        if (strcmp(builtin, "fashion-mnist") != 0)
            return dp_errinfo_set(ei, DP_EINVAL,
                                  "inputs.dataset.builtin: '%.40s' is not known "
                                  "to this worker",
                                  builtin);
        int n = snprintf(t->data_spec, sizeof(t->data_spec), "idx:%s/fashion-mnist",
                         t->env->datasets_dir);
        if (n < 0 || (size_t)n >= sizeof(t->data_spec))
            return dp_errinfo_set(ei, DP_EINVAL, "datasets directory path too long");
        t->files.data = t->data_spec;
        return DP_OK;
    }
    const char *format = json_string_value(json_object_get(ds, "format"));
    if (!json_is_object(ds) || format == NULL)
        return dp_errinfo_set(ei, DP_EFORMAT, "inputs.dataset: needs builtin or sha256/format");
    char tar[WK_PATH_MAX], dir[WK_PATH_MAX];
    if (wk_path(tar, t->dir, "dataset.tar") != 0 || wk_path(dir, t->dir, "data") != 0)
        return dp_errinfo_set(ei, DP_EINVAL, "task directory path too long");
    enum dp_err err = wk_task_input(t, "dataset", ds, tar, ei);
    if (err)
        return err;
    if (mkdir(dir, 0700) != 0 && errno != EEXIST)
        return dp_errinfo_set(ei, DP_EIO, "cannot create %s: %s", dir, strerror(errno));
    /* A gzipped tar holds more than its size: the bound the server validated against. */
    uint64_t max = DP_DATASET_MAX_BYTES;
    err = dp_dataset_extract(tar, format, dir, max, t->data_spec, sizeof(t->data_spec), ei);
    unlink(tar);
    if (!err)
        t->files.data = t->data_spec;
    return err;
}

/* A profile task's inputs: the compile task's bundle and the dense model
 * (docs/api.md, "Devices"), each sha256-checked by wk_task_input. */
static enum dp_err wk_task_profile_inputs(struct wk_task *t, struct dp_errinfo *ei)
{
    const json_t *code = json_object_get(t->inputs, "code");
    const json_t *dense = json_object_get(t->inputs, "dense");
    const char *fmt = json_string_value(json_object_get(dense, "format"));
    int onnx = fmt != NULL && strcmp(fmt, "onnx") == 0;
    if (!json_is_object(code) || !json_is_object(dense) || json_object_get(dense, "sha256") == NULL)
        return dp_errinfo_set(ei, DP_EINVAL, "inputs: a profile task needs code and dense files");
    if (wk_path(t->p_code_in, t->dir, "code-in.tar") != 0 ||
        wk_path(t->p_dense, t->dir, onnx ? "dense.onnx" : "dense.safetensors") != 0 ||
        wk_path(t->p_profile, t->dir, "profile.json") != 0)
        return dp_errinfo_set(ei, DP_EINVAL, "task directory path too long");
    enum dp_err err = wk_task_input(t, "code", code, t->p_code_in, ei);
    if (!err)
        err = wk_task_input(t, "dense", dense, t->p_dense, ei);
    if (err)
        return err;
    t->files.code_in = t->p_code_in;
    t->files.dense_model = t->p_dense;
    t->files.out_profile = t->p_profile;
    t->files.device_id = t->device_id;
    return DP_OK;
}

/* spec.auto.objective "latency": the device's latency table from the
 * server, for the key the server chose at submission (params.latency:
 * the model's architecture, a built-in's name or the uploaded model's
 * sha256, and the first rule's pruning scheme; a job of an older server
 * has none, then the same from the inputs). None there fails the task for
 * good, naming what is missing. The table gains "source" (which device,
 * when, by which task), which the report's auto section carries. */
static enum dp_err wk_task_latency(struct wk_task *t, const json_t *model, struct dp_errinfo *ei)
{
    const struct dp_spec *sp = t->job.compress.spec;
    /* Only compress chooses rates; retrain keeps the compress task's. */
    if (t->ttype != DP_TASK_COMPRESS || sp == NULL || !sp->auto_on ||
        sp->auto_objective != DP_SPEC_OBJ_LATENCY)
        return DP_OK;
    const json_t *key = json_object_get(t->params, "latency");
    const char *arch = json_string_value(json_object_get(key, "arch"));
    const char *scheme = json_string_value(json_object_get(key, "scheme"));
    if (arch == NULL)
        arch = json_string_value(json_object_get(model, "arch"));
    if (arch == NULL)
        arch = json_string_value(json_object_get(model, "sha256"));
    for (int i = 0; i < sp->n_rules && scheme == NULL; i++)
        if (sp->rules[i].prune != NULL)
            scheme = sp->rules[i].prune->name;
    if (arch == NULL || scheme == NULL)
        return dp_errinfo_set(ei, DP_EINVAL,
                              "spec.auto.objective \"latency\": no architecture or pruning "
                              "scheme to look the latency table up by");
    enum dp_err err =
        wk_agent_latency(t->env->agent, t->id, arch, scheme, sp->auto_device, &t->latency, ei);
    if (err == DP_ENOENT) { /* none there: another attempt would not find one either */
        char msg[sizeof(ei->msg)];
        snprintf(msg, sizeof(msg), "%s", ei->msg);
        return dp_errinfo_set(ei, DP_EINVAL, "spec.auto.objective \"latency\": %s", msg);
    }
    json_t *src =
        err ? NULL
            : json_pack("{s:O*, s:O*, s:O*, s:O*, s:O*, s:O*, s:s, s:s}", "device",
                        json_object_get(t->latency, "device"), "device_id",
                        json_object_get(t->latency, "device_id"), "measured_at",
                        json_object_get(t->latency, "measured_at"), "age_s",
                        json_object_get(t->latency, "age_s"), "fresh",
                        json_object_get(t->latency, "fresh"), "task_id",
                        json_object_get(t->latency, "task_id"), "arch", arch, "scheme", scheme);
    if (!err && (src == NULL || json_object_set_new(t->latency, "source", src) != 0))
        err = dp_errinfo_set(ei, DP_ENOMEM, "out of memory for the latency table");
    if (!err)
        t->job.compress.latency = t->latency;
    return err;
}

/* Phase 1. Returns DP_EIO for failures worth another attempt (the network). */
static enum dp_err wk_task_prepare(struct wk_task *t, struct dp_errinfo *ei)
{
    const struct wk_task_env *env = t->env;
    /* Before any download: a type this build cannot run fails at once. */
    if (!dp_task_type_from_name(t->type, &t->ttype) || !wk_engine_supports(t->ttype))
        return dp_errinfo_set(ei, DP_EINVAL, "type: '%.32s' is not a task this worker runs",
                              t->type);
    int n = snprintf(t->dir, sizeof(t->dir), "%s/tasks", env->cache->dir);
    if (n < 0 || (size_t)n >= sizeof(t->dir) || (mkdir(t->dir, 0700) != 0 && errno != EEXIST))
        return dp_errinfo_set(ei, DP_EIO, "cannot create %s", t->dir);
    n = snprintf(t->dir, sizeof(t->dir), "%s/tasks/%s-a%lld", env->cache->dir, t->id,
                 (long long)t->attempt);
    if (n < 0 || (size_t)n >= sizeof(t->dir))
        return dp_errinfo_set(ei, DP_EINVAL, "task directory path too long");
    wk_rmtree(t->dir, 1); /* a leftover of a killed run of the same attempt */
    if (mkdir(t->dir, 0700) != 0)
        return dp_errinfo_set(ei, DP_EIO, "cannot create %s: %s", t->dir, strerror(errno));

    const json_t *model = json_object_get(t->inputs, "model");
    const char *arch = json_string_value(json_object_get(model, "arch"));
    enum dp_err err = DP_OK;
    if (arch != NULL) {
        t->files.arch = arch;
    } else {
        const char *fmt = json_string_value(json_object_get(model, "format"));
        int onnx = fmt != NULL && strcmp(fmt, "onnx") == 0;
        if (wk_path(t->p_model, t->dir, onnx ? "in.onnx" : "in.safetensors") != 0)
            return dp_errinfo_set(ei, DP_EINVAL, "task directory path too long");
        err = wk_task_input(t, "model", model, t->p_model, ei);
        if (err)
            return err;
        t->files.model = t->p_model;
    }
    if (wk_engine_needs_data(t->ttype)) {
        err = wk_task_dataset(t, ei);
        if (err)
            return err;
    }
    const json_t *rep = json_object_get(t->inputs, "report");
    if (json_is_object(rep)) {
        if (wk_path(t->p_prev, t->dir, "prev-report.json") != 0)
            return dp_errinfo_set(ei, DP_EINVAL, "task directory path too long");
        err = wk_task_input(t, "report", rep, t->p_prev, ei);
        if (err)
            return err;
        t->files.prev_report = t->p_prev;
    }
    if (wk_path(t->p_ckpt, t->dir, "state.safetensors") != 0 ||
        wk_path(t->p_out, t->dir, "out.safetensors") != 0 ||
        wk_path(t->p_report, t->dir, "report.json") != 0 ||
        wk_path(t->p_onnx, t->dir, "model.onnx") != 0 ||
        wk_path(t->p_code, t->dir, "code.tar") != 0 ||
        wk_path(t->p_creport, t->dir, "compile-report.json") != 0 ||
        wk_path(t->p_latency, t->dir, "latency-table.json") != 0)
        return dp_errinfo_set(ei, DP_EINVAL, "task directory path too long");
    const json_t *ck = json_object_get(t->inputs, "checkpoint");
    if (json_is_object(ck)) {
        err = wk_task_input(t, "checkpoint", ck, t->p_ckpt, ei);
        if (err)
            return err;
        t->files.resume = 1;
    }
    t->files.checkpoint = t->p_ckpt;
    t->files.out_model = t->p_out;
    t->files.out_report = t->p_report;
    t->files.out_onnx = t->p_onnx;
    t->files.out_code = t->p_code;
    t->files.out_compile_report = t->p_creport;
    t->files.out_latency = t->p_latency;
    t->files.work_dir = t->dir; /* wk_rmtree's two levels cover DIR/bundle/ */
    if (t->ttype == DP_TASK_PROFILE) {
        err = wk_task_profile_inputs(t, ei);
        if (err)
            return err;
    }

    err = wk_engine_bind(&t->job, t->ttype, t->params, &t->files, &env->run, ei);
    if (!err)
        err = wk_task_latency(t, model, ei);
    return err;
}

/* ---- Engine thread -------------------------------------------------------- */

static int wk_is_epoch_event(const char *type)
{
    return strcmp(type, "epoch") == 0 || strcmp(type, "admm_epoch") == 0 ||
           strcmp(type, "retrain_epoch") == 0 || strcmp(type, "magnitude_epoch") == 0;
}

static void wk_hook_event(void *ctx, const char *type, json_t *data)
{
    struct wk_task *t = ctx;
    /* JSON is never shared across threads: the loop gets its own copy. */
    json_t *copy = data != NULL ? json_deep_copy(data) : json_object();
    if (copy == NULL)
        return;
    if (strcmp(type, "checkpoint") == 0) {
        const char *path = json_string_value(json_object_get(data, "path"));
        char snap[WK_PATH_MAX];
        int n = snprintf(snap, sizeof(snap), "%s/ckpt-%d.safetensors", t->dir, ++t->snap_seq);
        if (path != NULL && n > 0 && n < WK_PATH_MAX && link(path, snap) == 0) {
            uv_mutex_lock(&t->mu);
            if (t->snap[0] != '\0')
                unlink(t->snap); /* superseded before the loop took it for upload */
            memcpy(t->snap, snap, sizeof(snap));
            json_decref(t->snap_info);
            t->snap_info = copy;
            uv_mutex_unlock(&t->mu);
            uv_async_send(&t->wake);
            return;
        }
        DP_LOG(DP_LOG_WARN, "task %s: cannot snapshot checkpoint %s: %s", t->id,
               path ? path : "(no path)", strerror(errno));
        json_decref(copy);
        return;
    }
    json_t *ev = json_pack("{s:s, s:o}", "type", type, "data", copy);
    if (ev == NULL)
        return;
    uv_mutex_lock(&t->mu);
    json_array_append_new(t->queue, ev);
    uv_mutex_unlock(&t->mu);
    uv_async_send(&t->wake);
}

static int wk_hook_stop(void *ctx)
{
    struct wk_task *t = ctx;
    return atomic_load(&t->stop) != WK_STOP_NONE;
}

static void wk_engine_thread(void *arg)
{
    struct wk_task *t = arg;
    struct wk_hooks hooks = {t, wk_hook_event, wk_hook_stop};
    struct dp_errinfo ei = {DP_OK, ""};
    enum dp_err err = wk_engine_run(&t->job, &hooks, &ei);
    uv_mutex_lock(&t->mu);
    t->engine_done = 1;
    t->engine_err = err;
    t->engine_ei = ei;
    uv_mutex_unlock(&t->mu);
    uv_async_send(&t->wake);
}

/* ---- Loop thread: events, checkpoints, heartbeats ------------------------ */

static void wk_task_set_stop(struct wk_task *t, enum wk_stop why)
{
    int none = WK_STOP_NONE;
    atomic_compare_exchange_strong(&t->stop, &none, (int)why);
}

/* Wraps an engine event as an API event ("epoch" or "log") for the outbox. */
static void wk_task_outbox_add(struct wk_task *t, const char *engine_type, json_t *data)
{
    json_t *d = json_deep_copy(data);
    if (d == NULL)
        return;
    json_object_set_new(d, "task", json_string(t->type));
    json_object_set_new(d, "task_id", json_string(t->id));
    json_object_set_new(d, "attempt", json_integer(t->attempt));
    const char *api_type = "log";
    if (wk_is_epoch_event(engine_type)) {
        api_type = "epoch";
        json_object_set_new(d, "phase", json_string(engine_type));
        json_decref(t->progress);
        t->progress = json_incref(d);
    } else {
        json_object_set_new(d, "kind", json_string(engine_type));
    }
    if (json_array_size(t->outbox) >= WK_OUTBOX_MAX)
        json_array_remove(t->outbox, 0); /* the server was away for long: drop the oldest */
    json_array_append_new(t->outbox, json_pack("{s:s, s:o}", "type", api_type, "data", d));
}

static void wk_task_drain_queue(struct wk_task *t)
{
    uv_mutex_lock(&t->mu);
    json_t *q = t->queue;
    t->queue = json_array();
    uv_mutex_unlock(&t->mu);
    size_t i;
    json_t *ev;
    json_array_foreach (q, i, ev)
        wk_task_outbox_add(t, json_string_value(json_object_get(ev, "type")),
                           json_object_get(ev, "data"));
    json_decref(q);
}

/*
 * Whether a failed agent call may succeed when repeated: no answer came or
 * the server erred (DP_EIO), or this process could not build the request
 * for want of memory. Any other answer would be the same the next time.
 */
static int wk_err_transient(enum dp_err err)
{
    return err == DP_EIO || err == DP_ENOMEM;
}

/* Sends the outbox; returns the call's error, DP_OK when nothing is left to send. */
static enum dp_err wk_task_flush_events(struct wk_task *t)
{
    if (json_array_size(t->outbox) == 0)
        return DP_OK;
    struct dp_errinfo ei = {DP_OK, ""};
    enum dp_err err = wk_agent_events(t->env->agent, t->id, t->fence, t->outbox, &ei);
    if (!err) {
        json_array_clear(t->outbox);
    } else if (err == DP_ESTALE) {
        wk_task_set_stop(t, WK_STOP_LOST);
    } else if (!wk_err_transient(err)) {
        /* The server refuses them: keeping them would block every later batch. */
        DP_LOG(DP_LOG_WARN, "task %s: events refused: %s", t->id, ei.msg);
        json_array_clear(t->outbox);
    } else {
        DP_LOG(DP_LOG_WARN, "task %s: events not delivered yet: %s", t->id, ei.msg);
    }
    return err;
}

/*
 * Uploads the newest checkpoint snapshot, if any; returns the upload's
 * error, DP_OK when none is left. The loop takes the snapshot out of the shared slot first, so the
 * engine never removes a file that is being uploaded; a failed upload puts
 * it back unless the engine has written a newer one meanwhile.
 */
static enum dp_err wk_task_upload_snapshot(struct wk_task *t)
{
    char snap[WK_PATH_MAX];
    uv_mutex_lock(&t->mu);
    memcpy(snap, t->snap, sizeof(snap));
    t->snap[0] = '\0';
    json_t *info = t->snap_info;
    t->snap_info = NULL;
    uv_mutex_unlock(&t->mu);
    if (snap[0] == '\0') {
        json_decref(info);
        return DP_OK;
    }
    char sha[65];
    struct dp_errinfo ei = {DP_OK, ""};
    enum dp_err err = wk_agent_upload(t->env->agent, t->id, t->fence, "checkpoint", snap, sha, &ei);
    if (err) {
        if (err == DP_ESTALE)
            wk_task_set_stop(t, WK_STOP_LOST);
        DP_LOG(DP_LOG_WARN, "task %s: checkpoint upload failed: %s", t->id, ei.msg);
        t->next_upload_try = time(NULL) + WK_UPLOAD_RETRY_S;
        uv_mutex_lock(&t->mu);
        if (t->snap[0] == '\0') {
            memcpy(t->snap, snap, sizeof(snap));
            t->snap_info = info;
            info = NULL;
        } else {
            unlink(snap);
        }
        uv_mutex_unlock(&t->mu);
        json_decref(info);
        return err;
    }
    t->n_ckpt_uploaded++;
    unlink(snap);
    json_int_t epoch = json_integer_value(json_object_get(info, "epoch"));
    char msg[96];
    snprintf(msg, sizeof(msg), "checkpoint uploaded after epoch %lld", (long long)epoch);
    json_t *d =
        json_pack("{s:s, s:s, s:I}", "message", msg, "sha256", sha, "checkpoint_epoch", epoch);
    if (d != NULL && json_is_integer(json_object_get(info, "step")))
        json_object_set(d, "checkpoint_step", json_object_get(info, "step"));
    if (d != NULL)
        wk_task_outbox_add(t, "checkpoint", d);
    json_decref(d);
    json_decref(info);
    return 0;
}

static void wk_task_close_cb(uv_handle_t *h)
{
    struct wk_task *t = h->data;
    t->handles_open--;
}

static void wk_task_pump(struct wk_task *t)
{
    wk_task_drain_queue(t);
    if (atomic_load(&t->stop) != WK_STOP_LOST && time(NULL) >= t->next_upload_try)
        wk_task_upload_snapshot(t);
    if (atomic_load(&t->stop) != WK_STOP_LOST)
        wk_task_flush_events(t);
    uv_mutex_lock(&t->mu);
    int done = t->engine_done;
    uv_mutex_unlock(&t->mu);
    if (done && !uv_is_closing((uv_handle_t *)&t->wake)) {
        uv_close((uv_handle_t *)&t->hb_timer, wk_task_close_cb);
        uv_close((uv_handle_t *)&t->tick_timer, wk_task_close_cb);
        uv_close((uv_handle_t *)&t->wake, wk_task_close_cb);
    }
}

static void wk_task_on_wake(uv_async_t *h)
{
    wk_task_pump(h->data);
}

static void wk_task_on_tick(uv_timer_t *h)
{
    struct wk_task *t = h->data;
    if (t->env->agent->token_refused && atomic_load(&t->stop) == WK_STOP_NONE) {
        /* Revoked or expired: every further call would be refused too. */
        DP_LOG(DP_LOG_WARN, "task %s: the server refuses this worker's token; stopping", t->id);
        wk_task_set_stop(t, WK_STOP_LOST);
    }
    if (*t->env->term)
        wk_task_set_stop(t, WK_STOP_TERM);
    wk_task_pump(t);
}

static void wk_task_on_heartbeat(uv_timer_t *h)
{
    struct wk_task *t = h->data;
    if (atomic_load(&t->stop) == WK_STOP_LOST)
        return;
    int cancel = 0;
    struct dp_errinfo ei = {DP_OK, ""};
    enum dp_err err = wk_agent_heartbeat(t->env->agent, t->id, t->fence, t->progress, &cancel, &ei);
    if (!err && cancel) {
        DP_LOG(DP_LOG_INFO, "task %s: cancelled by the user", t->id);
        wk_task_set_stop(t, WK_STOP_CANCEL);
    } else if (err == DP_ESTALE || err == DP_ENOENT) {
        /* Another attempt holds the task, or the task is gone altogether. */
        DP_LOG(DP_LOG_WARN, "task %s: lease lost (%s); stopping", t->id, ei.msg);
        wk_task_set_stop(t, WK_STOP_LOST);
    } else if (err) {
        /* The server may be restarting: keep working, the lease has slack. */
        DP_LOG(DP_LOG_WARN, "task %s: heartbeat failed: %s", t->id, ei.msg);
    }
}

/* Phase 2: runs the engine thread under the loop until it returns. */
static enum dp_err wk_task_run_engine(struct wk_task *t, struct dp_errinfo *ei)
{
    if (uv_loop_init(&t->loop) != 0)
        return dp_errinfo_set(ei, DP_ENOMEM, "uv_loop_init failed");
    uv_timer_init(&t->loop, &t->hb_timer);
    uv_timer_init(&t->loop, &t->tick_timer);
    uv_async_init(&t->loop, &t->wake, wk_task_on_wake);
    t->hb_timer.data = t->tick_timer.data = t->wake.data = t;
    t->handles_open = 3;
    uint64_t hb_ms = (uint64_t)t->env->agent->heartbeat_s * 1000u;
    uv_timer_start(&t->hb_timer, wk_task_on_heartbeat, hb_ms, hb_ms);
    uv_timer_start(&t->tick_timer, wk_task_on_tick, WK_TICK_MS, WK_TICK_MS);
    int rc = uv_thread_create(&t->thread, wk_engine_thread, t);
    if (rc != 0) {
        uv_mutex_lock(&t->mu);
        t->engine_done = 1;
        uv_mutex_unlock(&t->mu);
        wk_task_pump(t); /* closes the handles */
        uv_run(&t->loop, UV_RUN_DEFAULT);
        uv_loop_close(&t->loop);
        return dp_errinfo_set(ei, DP_ENOMEM, "cannot start the engine thread: %s", uv_strerror(rc));
    }
    uv_run(&t->loop, UV_RUN_DEFAULT);
    uv_thread_join(&t->thread);
    uv_loop_close(&t->loop);
    wk_task_drain_queue(t);
    return DP_OK;
}

/* ---- Phase 3: finishing ---------------------------------------------------- */

/*
 * Whether a finish-phase call that failed with err should be tried again:
 * only when it may succeed next time (wk_err_transient), and not past the
 * deadline. Sleeps the backoff before saying yes. *delay_s starts at
 * WK_RETRY_FIRST_S.
 */
static int wk_task_retry(struct wk_task *t, enum dp_err err, time_t deadline, unsigned *delay_s)
{
    if (!wk_err_transient(err) || time(NULL) + (time_t)*delay_s > deadline)
        return 0;
    /* The server that started this worker is gone: one try was all there is. */
    if (t->env->server_gone != NULL && atomic_load(t->env->server_gone))
        return 0;
    /* A worker told to exit gets a few seconds' grace from whoever stops it, not minutes. */
    if (*t->env->term && ++t->term_retries > WK_TERM_MAX_RETRIES)
        return 0;
    sleep(*delay_s);
    if (*delay_s < WK_RETRY_MAX_S)
        *delay_s *= 2;
    return 1;
}

static void wk_task_flush_all(struct wk_task *t, time_t deadline)
{
    unsigned delay = WK_RETRY_FIRST_S;
    enum dp_err err;
    do
        err = wk_task_flush_events(t);
    while (json_array_size(t->outbox) > 0 && atomic_load(&t->stop) != WK_STOP_LOST &&
           wk_task_retry(t, err, deadline, &delay));
}

/* The outcome o, unless err says the lease is someone else's now. */
static enum wk_task_outcome wk_task_lost_or(enum dp_err err, enum wk_task_outcome o)
{
    return err == DP_ESTALE ? WK_TASK_LOST : o;
}

static enum wk_task_outcome wk_task_report_failure(struct wk_task *t, const char *msg,
                                                   int retryable, time_t deadline)
{
    struct dp_errinfo ei = {DP_OK, ""};
    unsigned delay = WK_RETRY_FIRST_S;
    enum dp_err err;
    DP_LOG(DP_LOG_WARN, "task %s (%s, attempt %lld) failed: %s", t->id, t->type,
           (long long)t->attempt, msg);
    do
        err = wk_agent_fail(t->env->agent, t->id, t->fence, msg, retryable, &ei);
    while (wk_task_retry(t, err, deadline, &delay));
    if (err)
        DP_LOG(DP_LOG_WARN, "task %s: fail not delivered: %s", t->id, ei.msg);
    return wk_task_lost_or(err, WK_TASK_FAILED);
}

/* Uploads the checkpoint snapshot the loop has not delivered yet, if any,
 * so that the next attempt resumes from it, not from an older one. */
static void wk_task_upload_last(struct wk_task *t, time_t deadline)
{
    unsigned delay = WK_RETRY_FIRST_S;
    enum dp_err err;
    do
        err = wk_task_upload_snapshot(t);
    while (err && atomic_load(&t->stop) != WK_STOP_LOST && wk_task_retry(t, err, deadline, &delay));
}

static enum wk_task_outcome wk_task_release(struct wk_task *t, time_t deadline)
{
    struct dp_errinfo ei = {DP_OK, ""};
    unsigned delay = WK_RETRY_FIRST_S;
    enum dp_err err;
    wk_task_upload_last(t, deadline);
    wk_task_flush_all(t, deadline);
    do
        err = wk_agent_release(t->env->agent, t->id, t->fence, &ei);
    while (wk_task_retry(t, err, deadline, &delay));
    if (err)
        DP_LOG(DP_LOG_WARN, "task %s: release not delivered: %s", t->id, ei.msg);
    return wk_task_lost_or(err, WK_TASK_RELEASED);
}

/* Where the engine writes output o. */
static const char *wk_task_output_path(const struct wk_task *t, enum dp_task_output o)
{
    switch (o) {
        case DP_TASK_OUT_MODEL:
            return t->p_out;
        case DP_TASK_OUT_REPORT:
            return t->p_report;
        case DP_TASK_OUT_ONNX:
            return t->p_onnx;
        case DP_TASK_OUT_CODE:
            return t->p_code;
        case DP_TASK_OUT_COMPILE_REPORT:
            return t->p_creport;
        case DP_TASK_OUT_PROFILE:
            return t->p_profile;
        case DP_TASK_OUT__COUNT:
            break;
    }
    return NULL;
}

/* A latency task's result: its table, uploaded as this device's before
 * `complete` (which the server refuses without it). */
static enum dp_err wk_task_put_latency(struct wk_task *t, time_t deadline, struct dp_errinfo *ei)
{
    json_error_t je;
    enum dp_err err;
    unsigned delay = WK_RETRY_FIRST_S;
    do {
        json_t *table = json_load_file(t->p_latency, JSON_REJECT_DUPLICATES, &je);
        if (table == NULL)
            return dp_errinfo_set(ei, DP_EFORMAT, "latency table %s: %s", t->p_latency, je.text);
        err = wk_agent_latency_put(t->env->agent, t->id, table, ei);
    } while (wk_task_retry(t, err, deadline, &delay));
    return err;
}

static enum wk_task_outcome wk_task_complete(struct wk_task *t, time_t deadline)
{
    /* Exactly the outputs the server's complete check requires: one table. */
    unsigned kinds = dp_task_type_outputs(t->ttype);
    json_t *outputs = json_object();
    struct dp_errinfo ei = {DP_OK, ""};
    enum dp_err err = DP_OK;
    if (t->ttype == DP_TASK_LATENCY) {
        err = wk_task_put_latency(t, deadline, &ei);
        if (err == DP_EFORMAT || err == DP_EINVAL) {
            json_decref(outputs);
            return wk_task_report_failure(t, ei.msg, 0, deadline);
        }
    }
    for (int o = 0; o < DP_TASK_OUT__COUNT && !err; o++) {
        if ((kinds & (1u << o)) == 0)
            continue;
        const char *kind = dp_task_output_name((enum dp_task_output)o);
        const char *path = wk_task_output_path(t, (enum dp_task_output)o);
        if (path == NULL || !wk_file_exists(path)) {
            json_decref(outputs);
            char msg[300];
            snprintf(msg, sizeof(msg), "the %s command succeeded but wrote no %s", t->job.command,
                     kind);
            return wk_task_report_failure(t, msg, 1, deadline);
        }
        char sha[65];
        unsigned delay = WK_RETRY_FIRST_S;
        do
            err = wk_agent_upload(t->env->agent, t->id, t->fence, kind, path, sha, &ei);
        while (wk_task_retry(t, err, deadline, &delay));
        if (!err)
            json_object_set_new(outputs, kind, json_string(sha));
    }
    if (!err) {
        unsigned delay = WK_RETRY_FIRST_S;
        do
            err = wk_agent_complete(t->env->agent, t->id, t->fence, outputs, &ei);
        while (wk_task_retry(t, err, deadline, &delay));
    }
    json_decref(outputs);
    if (!err)
        return WK_TASK_COMPLETED;
    DP_LOG(DP_LOG_WARN, "task %s: cannot complete: %s", t->id, ei.msg);
    if (err == DP_ESTALE)
        return WK_TASK_LOST;
    return wk_task_report_failure(t, ei.msg, 1, deadline);
}

/* ---- Entry ----------------------------------------------------------------- */

/*
 * Whether an engine run that failed with err may succeed on another
 * attempt. The inputs are content-addressed and every run is a function of
 * them and the seed, so a model, dataset, checkpoint or spec the engine
 * cannot read or use (format, validation, shape, unsupported operator)
 * fails the same way every time, and so does a loss that blows up:
 * retrying only spends the attempts and hides the message behind the last
 * one. I/O, memory and everything else depend on the machine: retryable.
 */
static int wk_engine_err_retryable(enum dp_err err)
{
    switch (err) {
        case DP_EFORMAT:
        case DP_EINVAL:
        case DP_ESHAPE:
        case DP_EUNSUPPORTED:
        case DP_ENUMERIC:
            return 0;
        default:
            return 1;
    }
}

static enum wk_task_outcome wk_task_finish(struct wk_task *t)
{
    time_t deadline = time(NULL) + WK_FINISH_RETRY_S;
    enum wk_stop stop = (enum wk_stop)atomic_load(&t->stop);
    if (stop == WK_STOP_LOST)
        return WK_TASK_LOST;
    wk_task_flush_all(t, deadline);
    enum dp_err err = t->engine_err;
    if (err == DP_OK)
        return wk_task_complete(t, deadline);
    if (err == DP_EINTERRUPTED && stop == WK_STOP_TERM)
        return wk_task_release(t, deadline);
    if (err == DP_EINTERRUPTED && stop == WK_STOP_CANCEL) {
        wk_task_report_failure(t, "cancelled by the user", 0, deadline);
        return WK_TASK_CANCELLED;
    }
    /* The message reads as the offline command's would: "compress: ...". */
    char msg[sizeof(t->engine_ei.msg) + 32];
    snprintf(msg, sizeof(msg), "%s: %s", t->job.command, dp_errinfo_msg(&t->engine_ei, err));
    const int retryable = wk_engine_err_retryable(err);
    /* A checkpoint whose upload had failed when the engine stopped would
     * otherwise go with the task directory; the next attempt resumes from it. */
    if (retryable) {
        wk_task_upload_last(t, deadline);
        wk_task_flush_all(t, deadline);
        if (atomic_load(&t->stop) == WK_STOP_LOST)
            return WK_TASK_LOST;
    }
    return wk_task_report_failure(t, msg, retryable, deadline);
}

enum wk_task_outcome wk_task_run(const struct wk_task_env *env, json_t *task)
{
    struct wk_task *t = dp_calloc(1, sizeof(*t));
    if (t == NULL)
        return WK_TASK_FAILED;
    enum wk_task_outcome outcome = WK_TASK_FAILED;
    struct dp_errinfo ei = {DP_OK, ""};
    int mutex_ok = 0;
    t->env = env;
    t->id = json_string_value(json_object_get(task, "id"));
    t->type = json_string_value(json_object_get(task, "type"));
    t->job_id = json_string_value(json_object_get(task, "job_id"));
    t->params = json_object_get(task, "params");
    t->inputs = json_object_get(task, "inputs");
    t->device_id = json_string_value(json_object_get(task, "device_id"));
    json_t *fence = json_object_get(task, "fence"), *attempt = json_object_get(task, "attempt");
    t->queue = json_array();
    t->outbox = json_array();
    if (t->id == NULL || t->type == NULL || !json_is_integer(fence) || !json_is_object(t->inputs)) {
        DP_LOG(DP_LOG_ERROR, "claim answer without id, type, fence or inputs; ignored");
        goto out;
    }
    t->fence = json_integer_value(fence);
    t->attempt = json_is_integer(attempt) ? json_integer_value(attempt) : 1;
    if (uv_mutex_init(&t->mu) != 0)
        goto out;
    mutex_ok = 1;
    DP_LOG(DP_LOG_INFO, "task %s: %s of job %s, attempt %lld%s", t->id, t->type,
           t->job_id ? t->job_id : "?", (long long)t->attempt,
           json_is_object(json_object_get(t->inputs, "checkpoint")) ? ", resuming" : "");

    /* SIGTERM before the engine starts (during the claim's long poll or
     * while fetching inputs): hand the task back without starting an
     * engine that would stop at its first step. */
    enum dp_err err = *env->term ? DP_OK : wk_task_prepare(t, &ei);
    if (*env->term) {
        atomic_store(&t->stop, WK_STOP_TERM);
        outcome = wk_task_release(t, time(NULL) + WK_TERM_RELEASE_S);
        goto out;
    }
    if (err) {
        int retryable = err == DP_EIO || err == DP_EFORMAT || err == DP_ENOMEM;
        outcome = wk_task_report_failure(t, dp_errinfo_msg(&ei, err), retryable,
                                         time(NULL) + WK_FINISH_RETRY_S);
        goto out;
    }
    err = wk_task_run_engine(t, &ei);
    if (err) {
        outcome = wk_task_report_failure(t, dp_errinfo_msg(&ei, err), 1,
                                         time(NULL) + WK_START_FAIL_RETRY_S);
        goto out;
    }
    outcome = wk_task_finish(t);
out:
    DP_LOG(DP_LOG_INFO, "task %s: %s", t->id ? t->id : "?", wk_task_outcome_name(outcome));
    if (t->dir[0] != '\0')
        wk_rmtree(t->dir, 1);
    if (mutex_ok)
        uv_mutex_destroy(&t->mu);
    wk_engine_job_free(&t->job);
    json_decref(t->latency);
    json_decref(t->queue);
    json_decref(t->outbox);
    json_decref(t->progress);
    json_decref(t->snap_info);
    dp_free(t);
    return outcome;
}
