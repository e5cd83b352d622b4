/*
 * Task type -> engine command (see wk_engine.h). Each bind function reads
 * the task's params exactly as docs/api.md ("How the worker runs each task
 * type") describes and leaves the usage checks to the command's own
 * wk_X_check, so a task and a command line are refused for the same reasons.
 */
#include "worker/agent/wk_engine.h"

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/alloc.h"
#include "common/tar_write.h"
#include "worker/agent/wk_bundle.h"
#include "worker/agent/wk_latency.h"
#include "worker/agent/wk_profile.h"
#include "worker/cmd/wk_cmd.h"

typedef enum dp_err (*wk_engine_bind_fn)(struct wk_engine_job *j, const json_t *params,
                                         const struct wk_task_files *f, const struct wk_run_opts *o,
                                         struct dp_errinfo *ei);
typedef enum dp_err (*wk_engine_run_fn)(const struct wk_engine_job *j, const struct wk_hooks *h,
                                        struct dp_errinfo *ei);

struct wk_engine_cmd {
    enum dp_task_type type;
    const char *command; /* `dnnpress-worker <command>` runs the same code */
    int needs_data;      /* the job's dataset is fetched for it */
    wk_engine_bind_fn bind;
    wk_engine_run_fn run;
};

/* A required path: the task loop's bug, not the server's, when missing. */
static enum dp_err wk_engine_path(const char *path, const char *what, struct dp_errinfo *ei)
{
    if (path == NULL)
        return dp_errinfo_set(ei, DP_EINVAL, "internal: no local file for %s", what);
    return DP_OK;
}

/* Reads a report the previous task uploaded (a JSON object) into *out. */
static enum dp_err wk_engine_report(const char *path, json_t **out, struct dp_errinfo *ei)
{
    json_error_t je;
    *out = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
    if (json_is_object(*out))
        return DP_OK;
    json_decref(*out);
    *out = NULL;
    return dp_errinfo_set(ei, DP_EFORMAT, "%s:%d: not a JSON report (%s)", path, je.line, je.text);
}

/* ---- train ---------------------------------------------------------------- */

static enum dp_err wk_bind_train(struct wk_engine_job *j, const json_t *params,
                                 const struct wk_task_files *f, const struct wk_run_opts *o,
                                 struct dp_errinfo *ei)
{
    struct wk_train_opts *t = &j->train;
    wk_train_opts_init(t);
    t->model = f->model != NULL ? f->model : f->arch;
    if (t->model == NULL)
        return dp_errinfo_set(ei, DP_EINVAL, "inputs.model: neither a file nor an arch");
    enum dp_err err = wk_engine_path(f->data, "the dataset", ei);
    if (err)
        return err;
    t->data = f->data;
    /* The job-level seed applies unless pretrain names its own, which the
     * pretrain object sets after it. */
    const json_t *seed = json_object_get(params, "seed");
    if (json_is_integer(seed)) {
        json_t *obj = json_pack("{s:O}", "seed", (json_t *)seed);
        if (obj == NULL)
            return dp_errinfo_set(ei, DP_ENOMEM, "out of memory reading params.seed");
        err = wk_train_opts_from_json(t, obj, "params", ei);
        json_decref(obj);
        if (err)
            return err;
    }
    err = wk_train_opts_from_json(t, json_object_get(params, "pretrain"), "params.pretrain", ei);
    if (err)
        return err;
    t->out = f->out_model;
    t->checkpoint = f->checkpoint;
    t->resume = f->resume;
    t->threads = o->threads;
    t->limit_train = o->limit_train;
    t->limit_test = o->limit_test;
    t->quiet = 1;
    return wk_train_check(t, ei);
}

static enum dp_err wk_run_train(const struct wk_engine_job *j, const struct wk_hooks *h,
                                struct dp_errinfo *ei)
{
    return wk_train(&j->train, h, NULL, ei);
}

/* ---- compress and retrain --------------------------------------------------- */

enum dp_err wk_engine_spec(struct wk_engine_job *j, const json_t *params, struct dp_errinfo *ei)
{
    const json_t *spec = json_object_get(params, "spec");
    if (!json_is_object(spec))
        return dp_errinfo_set(ei, DP_EINVAL, "params.spec: missing or not an object");
    size_t len = json_dumpb(spec, NULL, 0, JSON_COMPACT);
    if (len == 0)
        return dp_errinfo_set(ei, DP_ENOMEM, "out of memory reading params.spec");
    char *text = dp_malloc(len);
    j->spec = dp_calloc(1, sizeof(*j->spec));
    enum dp_err err = DP_OK;
    if (text == NULL || j->spec == NULL || json_dumpb(spec, text, len, JSON_COMPACT) != len)
        err = dp_errinfo_set(ei, DP_ENOMEM, "out of memory reading params.spec");
    if (!err) {
        err = dp_spec_parse(text, len, j->spec, ei);
        /* A spec that does not validate will not validate next time either. */
        if (err && err != DP_ENOMEM)
            err = wk_cmd_prefix(ei, DP_EINVAL, "params.spec: ");
    }
    dp_free(text);
    return err;
}

static enum dp_err wk_bind_compress_phase(struct wk_engine_job *j, const json_t *params,
                                          const struct wk_task_files *f,
                                          const struct wk_run_opts *o, enum admm_phase phase,
                                          struct dp_errinfo *ei)
{
    struct wk_compress_opts *c = &j->compress;
    wk_compress_opts_init(c);
    enum dp_err err = wk_engine_spec(j, params, ei);
    if (!err)
        err = wk_engine_path(f->model, "the model", ei);
    if (!err)
        err = wk_engine_path(f->data, "the dataset", ei);
    if (!err && phase == ADMM_PHASE_RETRAIN) {
        err = wk_engine_path(f->prev_report, "the previous report", ei);
        if (!err)
            err = wk_engine_report(f->prev_report, &j->prev_report, ei);
    }
    if (err)
        return err;
    c->spec = j->spec;
    c->phase = phase;
    c->prev_report = j->prev_report;
    c->model = f->model;
    c->data = f->data;
    c->out = f->out_model;
    c->report = f->out_report;
    c->checkpoint = f->checkpoint;
    c->resume = f->resume;
    c->threads = o->threads;
    c->limit_train = o->limit_train;
    c->limit_test = o->limit_test;
    c->quiet = 1;
    return wk_compress_check(c, ei);
}

static enum dp_err wk_bind_compress(struct wk_engine_job *j, const json_t *params,
                                    const struct wk_task_files *f, const struct wk_run_opts *o,
                                    struct dp_errinfo *ei)
{
    return wk_bind_compress_phase(j, params, f, o, ADMM_PHASE_ADMM, ei);
}

static enum dp_err wk_bind_retrain(struct wk_engine_job *j, const json_t *params,
                                   const struct wk_task_files *f, const struct wk_run_opts *o,
                                   struct dp_errinfo *ei)
{
    return wk_bind_compress_phase(j, params, f, o, ADMM_PHASE_RETRAIN, ei);
}

static enum dp_err wk_run_compress(const struct wk_engine_job *j, const struct wk_hooks *h,
                                   struct dp_errinfo *ei)
{
    return wk_compress(&j->compress, h, NULL, ei);
}

/* ---- export ------------------------------------------------------------------ */

static enum dp_err wk_bind_export(struct wk_engine_job *j, const json_t *params,
                                  const struct wk_task_files *f, const struct wk_run_opts *o,
                                  struct dp_errinfo *ei)
{
    (void)o; /* export runs no training: threads and data limits do not apply */
    struct wk_export_opts *x = &j->export;
    wk_export_opts_init(x);
    const json_t *ex = json_object_get(params, "export");
    if (ex != NULL && !json_is_null(ex)) {
        if (!json_is_object(ex))
            return dp_errinfo_set(ei, DP_EINVAL, "params.export: must be an object");
        const char *fmt = json_string_value(json_object_get(ex, "format"));
        if (json_object_get(ex, "format") != NULL && (fmt == NULL || strcmp(fmt, "onnx") != 0))
            return dp_errinfo_set(ei, DP_EINVAL,
                                  "params.export.format: only \"onnx\" is supported");
        const json_t *qdq = json_object_get(ex, "qdq");
        if (qdq != NULL && !json_is_boolean(qdq))
            return dp_errinfo_set(ei, DP_EINVAL, "params.export.qdq: must be true or false");
        x->qdq = json_is_true(qdq);
        const json_t *norm = json_object_get(ex, "normalization");
        if (norm != NULL && !json_is_boolean(norm))
            return dp_errinfo_set(ei, DP_EINVAL,
                                  "params.export.normalization: must be true or false");
        x->no_norm = json_is_false(norm);
    }
    enum dp_err err = wk_engine_path(f->model, "the model", ei);
    if (!err)
        err = wk_engine_path(f->out_onnx, "the ONNX output", ei);
    /* The compression report, when the task has one, goes into the ONNX metadata. */
    if (!err && f->prev_report != NULL)
        err = wk_engine_report(f->prev_report, &j->prev_report, ei);
    if (err)
        return err;
    x->model = f->model;
    x->out = f->out_onnx;
    x->report = j->prev_report;
    return wk_export_check(x, ei);
}

static enum dp_err wk_run_export(const struct wk_engine_job *j, const struct wk_hooks *h,
                                 struct dp_errinfo *ei)
{
    return wk_export(&j->export, h, ei);
}

/* ---- compile ----------------------------------------------------------------- */

/* params.compile, as the server stored it ({"target","tune_s"}, defaults
 * filled); target is checked again by wk_compile_check. */
static enum dp_err wk_bind_compile(struct wk_engine_job *j, const json_t *params,
                                   const struct wk_task_files *f, const struct wk_run_opts *o,
                                   struct dp_errinfo *ei)
{
    struct wk_compile_opts *c = &j->compile;
    wk_compile_opts_init(c);
    const json_t *cp = json_object_get(params, "compile");
    if (cp != NULL && !json_is_object(cp))
        return dp_errinfo_set(ei, DP_EINVAL, "params.compile: must be an object");
    const json_t *target = json_object_get(cp, "target");
    if (target != NULL && !json_is_string(target))
        return dp_errinfo_set(ei, DP_EINVAL, "params.compile.target: must be a string");
    if (target != NULL)
        c->target = json_string_value(target);
    /* Seconds of auto-tuning on this worker (compile --tune); the server
     * bounds it as the command does. */
    const json_t *tune = json_object_get(cp, "tune_s");
    if (tune != NULL && !(json_is_integer(tune) && json_integer_value(tune) >= 0 &&
                          json_integer_value(tune) <= 3600))
        return dp_errinfo_set(ei, DP_EINVAL,
                              "params.compile.tune_s: must be an integer from 0 to 3600");
    if (tune != NULL)
        c->tune = (long)json_integer_value(tune);
    enum dp_err err = wk_engine_path(f->model, "the model", ei);
    if (!err)
        err = wk_engine_path(f->out_code, "the code output", ei);
    if (!err)
        err = wk_engine_path(f->out_compile_report, "the compile report", ei);
    if (!err)
        err = wk_engine_path(f->work_dir, "the bundle directory", ei);
    if (err)
        return err;
    int k1 = snprintf(j->bundle_dir, sizeof(j->bundle_dir), "%s/bundle", f->work_dir);
    int k2 = snprintf(j->build_log, sizeof(j->build_log), "%s/build.log", f->work_dir);
    if (k1 < 0 || (size_t)k1 >= sizeof(j->bundle_dir) || k2 < 0 ||
        (size_t)k2 >= sizeof(j->build_log))
        return dp_errinfo_set(ei, DP_EINVAL, "task directory path too long");
    c->model = f->model;
    c->out = j->bundle_dir;
    c->name = "model"; /* the input file's name (in.safetensors) says nothing */
    /* The bundle's default team and bench's: the worker's own thread count,
     * or every core when it has none set, as the other engines use. */
    c->threads = o->threads > 0 ? o->threads : sysconf(_SC_NPROCESSORS_ONLN);
    if (c->threads < 1)
        c->threads = 1;
    j->code_out = f->out_code;
    j->creport_out = f->out_compile_report;
    return wk_compile_check(c, ei);
}

/* Compiles, packs the sources (before the build adds objects to the
 * directory), then builds and times the bundle with its own bench. */
static enum dp_err wk_run_compile(const struct wk_engine_job *j, const struct wk_hooks *h,
                                  struct dp_errinfo *ei)
{
    const struct wk_compile_opts *c = &j->compile;
    json_t *files = NULL, *bench = NULL, *report = NULL;
    struct stat st;
    enum dp_err err = wk_compile(c, h, ei);
    if (!err)
        err = dp_tar_write_dir(c->out, j->code_out, WK_BUNDLE_MAX_BYTES, ei);
    if (!err && (files = wk_bundle_files(c->out)) == NULL)
        err = dp_errinfo_set(ei, DP_EIO, "cannot list %s", c->out);
    if (!err && stat(j->code_out, &st) != 0)
        err = dp_errinfo_set(ei, DP_EIO, "cannot stat %s", j->code_out);
    if (!err)
        err = wk_bundle_bench(c->out, j->build_log, c->threads, WK_BUNDLE_BENCH_RUNS, -1, 0, h,
                              &bench, ei);
    if (!err) {
        report = wk_bundle_report(files, bench, c->target, c->threads, WK_BUNDLE_BENCH_RUNS,
                                  c->tune, (long long)st.st_size);
        if (!err && report != NULL && strcmp(c->target, "opencl") == 0) {
            /* OpenCL bundles have one fixed schedule and no schedule.json. */
            json_object_set_new(report, "schedule", json_null());
        } else if (!err && report != NULL) {
            /* The schedule the bundle was compiled with (tuned when tune_s > 0). */
            char sp[4200];
            snprintf(sp, sizeof(sp), "%s/schedule.json", c->out);
            json_t *sch = json_load_file(sp, 0, NULL);
            if (sch == NULL)
                err = dp_errinfo_set(ei, DP_EIO, "cannot read %s", sp);
            else
                json_object_set_new(report, "schedule", sch);
        }
        if (report == NULL)
            err = dp_errinfo_set(ei, DP_ENOMEM, "out of memory building the compile report");
    }
    if (!err)
        err = wk_cmd_write_json(j->creport_out, report, JSON_INDENT(2) | JSON_SORT_KEYS, ei);
    if (!err && h != NULL && h->event != NULL) {
        /* One line for the job's event stream (a "log" event of kind "compile"). */
        char msg[160];
        snprintf(msg, sizeof(msg), "compiled (%s, %ld threads): %.3f ms mean latency", c->target,
                 c->threads,
                 json_number_value(json_object_get(json_object_get(report, "latency_ms"), "mean")));
        json_t *d = json_pack("{s:s, s:O}", "message", msg, "latency_ms",
                              json_object_get(report, "latency_ms"));
        if (d != NULL)
            h->event(h->ctx, "compile", d);
        json_decref(d);
    }
    json_decref(files);
    json_decref(bench);
    json_decref(report);
    return err;
}

/* ---- The table ----------------------------------------------------------------- */

static const struct wk_engine_cmd wk_engine_cmds[] = {
    {DP_TASK_TRAIN, "train", 1, wk_bind_train, wk_run_train},
    {DP_TASK_COMPRESS, "compress", 1, wk_bind_compress, wk_run_compress},
    {DP_TASK_RETRAIN, "compress", 1, wk_bind_retrain, wk_run_compress},
    {DP_TASK_EXPORT, "export", 0, wk_bind_export, wk_run_export},
    {DP_TASK_COMPILE, "compile", 0, wk_bind_compile, wk_run_compile},
    {DP_TASK_PROFILE, "profile", 0, wk_profile_bind, wk_profile_run},
    {DP_TASK_LATENCY, "latency", 0, wk_latency_bind, wk_latency_run},
};

#define WK_ENGINE_N_CMDS (sizeof(wk_engine_cmds) / sizeof(wk_engine_cmds[0]))

static const struct wk_engine_cmd *wk_engine_find(enum dp_task_type t)
{
    for (size_t i = 0; i < WK_ENGINE_N_CMDS; i++)
        if (wk_engine_cmds[i].type == t)
            return &wk_engine_cmds[i];
    return NULL;
}

int wk_engine_supports(enum dp_task_type t)
{
    return wk_engine_find(t) != NULL;
}

void wk_engine_list(char *buf, size_t cap)
{
    size_t used = 0;
    if (cap == 0)
        return;
    buf[0] = '\0';
    for (size_t i = 0; i < WK_ENGINE_N_CMDS && used < cap; i++) {
        int k = snprintf(buf + used, cap - used, "%s%s", i ? ", " : "",
                         dp_task_type_name(wk_engine_cmds[i].type));
        if (k < 0)
            break;
        used += (size_t)k;
    }
}

int wk_engine_needs_data(enum dp_task_type t)
{
    const struct wk_engine_cmd *c = wk_engine_find(t);
    return c != NULL && c->needs_data;
}

enum dp_err wk_engine_bind(struct wk_engine_job *j, enum dp_task_type type, const json_t *params,
                           const struct wk_task_files *f, const struct wk_run_opts *o,
                           struct dp_errinfo *ei)
{
    memset(j, 0, sizeof(*j));
    j->type = type;
    const struct wk_engine_cmd *c = wk_engine_find(type);
    if (c == NULL) {
        const char *name = dp_task_type_name(type);
        return dp_errinfo_set(ei, DP_EINVAL, "type: '%.32s' is not a task this worker runs",
                              name != NULL ? name : "?");
    }
    j->command = c->command;
    if (params != NULL && !json_is_object(params))
        return dp_errinfo_set(ei, DP_EINVAL, "params: must be an object");
    enum dp_err err = c->bind(j, params, f, o, ei);
    if (err) {
        wk_engine_job_free(j);
        j->type = type;
        j->command = c->command;
    }
    return err;
}

enum dp_err wk_engine_run(const struct wk_engine_job *j, const struct wk_hooks *h,
                          struct dp_errinfo *ei)
{
    const struct wk_engine_cmd *c = wk_engine_find(j->type);
    if (c == NULL)
        return dp_errinfo_set(ei, DP_EUNSUPPORTED, "this worker build cannot run %s tasks",
                              dp_task_type_name(j->type));
    return c->run(j, h, ei);
}

void wk_engine_job_free(struct wk_engine_job *j)
{
    if (j == NULL)
        return;
    dp_free(j->spec);
    json_decref(j->prev_report);
    memset(j, 0, sizeof(*j));
}
