/*
 * `dnnpress-worker compile`: compiles a model (ONNX or checkpoint, pruned
 * or not) into a self-contained C bundle: model.h, model.c, weights.bin,
 * reference.bin, bench.c and a Makefile (docs/compile.md). The shape of
 * every command is in wk_cmd.h; the compiler itself is worker/codegen.
 */
#ifndef DP_WORKER_CMD_WK_COMPILE_H
#define DP_WORKER_CMD_WK_COMPILE_H

#include "common/err.h"
#include "worker/cmd/wk_hooks.h"

/* One field per flag of `compile`. */
struct wk_compile_opts {
    const char *model;    /* FILE.onnx or a .safetensors checkpoint */
    const char *out;      /* the bundle directory (created when missing) */
    const char *target;   /* "native", "portable" or "opencl" */
    const char *name;     /* the model's name in the bundle; NULL: the file's base name */
    long threads;         /* the bundle's default OpenMP threads */
    long tune;            /* seconds of auto-tuning (0: the cost model's schedule) */
    const char *schedule; /* a schedule.json to compile with (NULL: none) */
    const char *sparse;   /* irregular layers: "auto", "dense", "csr", "bitmask" (cg_sparse.h) */
};

/* Sets o to the defaults of compile's flag table. */
void wk_compile_opts_init(struct wk_compile_opts *o);

/* DP_EINVAL when the options cannot make a run (a usage error); no I/O. */
enum dp_err wk_compile_check(const struct wk_compile_opts *o, struct dp_errinfo *ei);

/*
 * Loads o->model and writes the bundle into o->out. h may be NULL (nothing
 * to report, compiling is not stopped midway). DP_EINVAL for usage errors,
 * DP_EUNSUPPORTED naming a layer the compiler cannot handle, else the
 * failure with ei naming it. Any thread; it sets that thread's OpenMP team
 * (the engine computes the bundle's reference outputs).
 */
enum dp_err wk_compile(const struct wk_compile_opts *o, const struct wk_hooks *h,
                       struct dp_errinfo *ei);

/* The CLI; returns the process exit status (0 ok, 1 failure, 2 usage). */
int wk_compile_main(int argc, char **argv);

#endif
