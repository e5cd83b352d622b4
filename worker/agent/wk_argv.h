/*
 * Turns a leased task into the argv of the engine command that runs it
 * (docs/api.md, "How the worker runs each task type"). Pure: it reads the
 * task's type and params and the local paths the task loop prepared, and
 * names the field when a parameter is wrong.
 */
#ifndef DP_WORKER_AGENT_WK_ARGV_H
#define DP_WORKER_AGENT_WK_ARGV_H

#include <jansson.h>

#include "common/err.h"

/* Local files of one task run; NULL where a task type has none. */
struct wk_task_files {
    const char *model;       /* input checkpoint, or NULL when arch names a built-in model */
    const char *arch;        /* built-in architecture (train from scratch) */
    const char *data;        /* engine data spec: "idx:/dir", "cifar:/dir", "npy:/dir" */
    const char *spec;        /* the compression spec written as a file */
    const char *prev_report; /* retrain: the compress task's report; export: the last report */
    const char *out_model;   /* train, compress, retrain */
    const char *out_report;  /* compress, retrain */
    const char *out_onnx;    /* export */
    const char *checkpoint;  /* whole-state checkpoint written every epoch */
    int resume;              /* the checkpoint holds an earlier attempt's state */
};

/* Worker-wide settings that every engine command gets. 0 means unset. */
struct wk_run_opts {
    long threads;
    long limit_train, limit_test; /* small-data runs (tests, demo) */
};

/* An argv the struct owns: v[0..n-1] are dp_strdup'ed, v[n] is NULL. */
struct wk_argv {
    char **v;
    int n, cap;
};

/*
 * Builds the argv for task type ("train", "compress", "retrain", "export")
 * with params (the task's "params" object, borrowed). argv[0] is the
 * command name ("train", "compress", "export"). On failure returns
 * DP_EINVAL with ei naming the parameter, and out is empty.
 */
enum dp_err wk_argv_build(const char *type, const json_t *params, const struct wk_task_files *f,
                          const struct wk_run_opts *o, struct wk_argv *out, struct dp_errinfo *ei);

/* Frees what a owns and zeroes it; NULL is a no-op. */
void wk_argv_free(struct wk_argv *a);

#endif
