/*
 * `dnnpress-worker infer`: runs a model (ONNX or checkpoint) forward in
 * evaluation mode on a float32 .npy batch and writes the outputs as a
 * float32 .npy array, with the ONNX output's shape (batch first). The shape
 * of every command is in wk_cmd.h.
 */
#ifndef DP_WORKER_CMD_WK_INFER_H
#define DP_WORKER_CMD_WK_INFER_H

#include "common/err.h"
#include "worker/cmd/wk_hooks.h"

/* One field per flag of `infer`. */
struct wk_infer_opts {
    const char *model;  /* FILE.onnx or a .safetensors checkpoint */
    const char *input;  /* float32 .npy batch, batch axis first */
    const char *output; /* the float32 .npy outputs */
    long threads;       /* 0: all cores */
    long batch;         /* samples per forward pass */
};

/* Sets o to the defaults of infer's flag table. */
void wk_infer_opts_init(struct wk_infer_opts *o);

/* DP_EINVAL when the options cannot make a run (a usage error); no I/O. */
enum dp_err wk_infer_check(const struct wk_infer_opts *o, struct dp_errinfo *ei);

/*
 * Runs o->model on o->input and writes o->output. h may be NULL (a forward
 * pass is not stopped midway). DP_EINVAL for usage errors, else the failure
 * with ei naming it. Any thread; it sets that thread's OpenMP team.
 */
enum dp_err wk_infer(const struct wk_infer_opts *o, const struct wk_hooks *h,
                     struct dp_errinfo *ei);

/* The CLI; returns the process exit status (0 ok, 1 failure, 2 usage). */
int wk_infer_main(int argc, char **argv);

#endif
