/*
 * The binding between task types and the engine commands that run them.
 *
 * wk_engine_bind fills the typed options of the command (worker/cmd) from
 * a task's JSON and the local files the task loop prepared; wk_engine_run
 * calls the command's entry point. One table row per task type says which
 * command runs it, what it needs and what it uploads, so a new task type
 * (compile, profile) is one row plus its bind function, and a type this
 * build cannot run fails with a clear message instead of failing to link.
 * Binding is pure apart from reading the previous report, and unit-tested.
 */
#ifndef DP_WORKER_AGENT_WK_ENGINE_H
#define DP_WORKER_AGENT_WK_ENGINE_H

#include <jansson.h>

#include "common/err.h"
#include "common/lat_table.h"
#include "common/task_type.h"
#include "worker/cmd/wk_compile.h"
#include "worker/cmd/wk_compress.h"
#include "worker/cmd/wk_export.h"
#include "worker/cmd/wk_hooks.h"
#include "worker/cmd/wk_train.h"

/* Local files of one task run; NULL where a task type has none. */
struct wk_task_files {
    const char *model;       /* input checkpoint, or NULL when arch names a built-in model */
    const char *arch;        /* built-in architecture (train from scratch) */
    const char *data;        /* engine data spec: "idx:/dir", "cifar:/dir", "npy:/dir" */
    const char *prev_report; /* retrain: the compress task's report; export: the last report */
    const char *out_model;   /* train, compress, retrain */
    const char *out_report;  /* compress, retrain */
    const char *out_onnx;    /* export */
    const char *out_code;    /* compile: the bundle as a tar (the code artifact) */
    const char *out_compile_report; /* compile: the compile report (JSON) */
    const char *work_dir;           /* compile, profile: scratch directory for bundles, builds */
    const char *code_in;            /* profile: the compile task's code.tar */
    const char *dense_model;        /* profile: the dense model, compiled on the device */
    const char *out_profile;        /* profile: the profile result (JSON) */
    const char *device_id;          /* profile: the device the task targets (the server's id) */
    const char *out_latency;        /* latency: the device's latency table (JSON) */
    const char *checkpoint;         /* whole-state checkpoint written every epoch */
    int resume;                     /* the checkpoint holds an earlier attempt's state */
};

/* Worker-wide settings that every engine command gets. 0 means unset. */
struct wk_run_opts {
    long threads;
    long limit_train, limit_test; /* small-data runs (tests, demo) */
    const char *device_name;      /* serve --profile: this device's name, else NULL */
};

/* One task's engine run: the options of the command that runs it. */
struct wk_engine_job {
    enum dp_task_type type;
    const char *command; /* the offline command, for messages: "compress" */
    struct wk_train_opts train;
    struct wk_compress_opts compress;
    struct wk_export_opts export;
    struct wk_compile_opts compile;
    const char *code_out;    /* compile: where the tar goes */
    const char *creport_out; /* compile: where the compile report goes */
    char bundle_dir[1200];   /* compile: the compiler's output directory */
    char build_log[1200];    /* compile: make's and bench's output */
    /* profile: params.profile and params.compile.target, and where things go */
    long prof_runs, prof_warmup, prof_timeout_s, prof_threads[8];
    int prof_n_threads;
    const char *prof_target;
    const char *prof_code_in, *prof_dense, *prof_out, *prof_work, *prof_device_id;
    const char *prof_device_name;
    /* latency: params.latency, the model file and the table's path (its
     * runs, warmup and timeout in prof_*, its scratch in prof_work) */
    double lat_rates[DP_LAT_TABLE_MAX_POINTS];
    int lat_n_rates;
    const char *lat_arch, *lat_scheme, *lat_model, *lat_out;
    struct dp_spec *spec; /* compress, retrain: parsed params.spec; owned */
    json_t *prev_report;  /* retrain, export: the previous report; owned */
};

/* Whether this build runs task type t. Any thread. */
int wk_engine_supports(enum dp_task_type t);

/* Writes the names of the types this build runs ("train, compress, ...") into buf. */
void wk_engine_list(char *buf, size_t cap);

/* Whether a task of type t needs the job's dataset. */
int wk_engine_needs_data(enum dp_task_type t);

/*
 * Fills j for task type `type` from params (the task's "params" object,
 * borrowed, may be NULL), its local files f (borrowed, must outlive j) and
 * the worker's settings o. Errors in the task (a parameter of the wrong
 * type, a spec that does not validate, options the command refuses) are
 * DP_EINVAL with ei naming the field: retrying cannot help. A previous
 * report that does not read is DP_EFORMAT. On failure j holds nothing.
 * Release j with wk_engine_job_free either way.
 */
enum dp_err wk_engine_bind(struct wk_engine_job *j, enum dp_task_type type, const json_t *params,
                           const struct wk_task_files *f, const struct wk_run_opts *o,
                           struct dp_errinfo *ei);

/*
 * Runs the bound command with hooks h in the calling thread (the task
 * loop's engine thread). Returns the command's result: DP_OK,
 * DP_EINTERRUPTED when h->stop asked, or the failure with ei naming it.
 */
enum dp_err wk_engine_run(const struct wk_engine_job *j, const struct wk_hooks *h,
                          struct dp_errinfo *ei);

/* Parses params.spec with the spec's own parser (the one the server
 * validated the job with) into j->spec (owned by j); DP_EINVAL naming the
 * field. */
enum dp_err wk_engine_spec(struct wk_engine_job *j, const json_t *params, struct dp_errinfo *ei);

/* Frees what j owns and zeroes it; NULL is a no-op. */
void wk_engine_job_free(struct wk_engine_job *j);

#endif
