/*
 * `dnnpress-worker compile` (see wk_compile.h): loading, naming, and the
 * summary line; the compiler is worker/codegen/cg_compile.h.
 */
#include "worker/cmd/wk_compile.h"

#include <stdio.h>
#include <string.h>

#include "worker/cmd/wk_cmd.h"
#include "worker/cmd/wk_flags.h"
#include "worker/cmd/wk_model_load.h"
#include "worker/codegen/cg_compile.h"
#include "worker/codegen/cg_sparse.h"

#define WK_OFF(f) offsetof(struct wk_compile_opts, f)

static const struct wk_flag wk_compile_flags[] = {
    {"model", WK_STR, WK_OFF(model), 0, 0, NULL, 0,
     "model: FILE.onnx or a .safetensors checkpoint"},
    {"out", WK_STR, WK_OFF(out), 0, 0, NULL, 0, "write the bundle into this directory"},
    {"target", WK_STR, WK_OFF(target), 0, 0, "native", WK_FLAG_JOB,
     "native (avx512, avx2 and generic vector paths, picked at run time), portable (plain C, "
     "-O2) or opencl (OpenCL kernels, host runner linked with -lOpenCL)"},
    {"name", WK_STR, WK_OFF(name), 0, 0, NULL, 0,
     "the model's name in the bundle (default: the file's base name)"},
    {"sparse", WK_STR, WK_OFF(sparse), 0, 0, "auto", WK_FLAG_JOB,
     "irregular layers: auto (by the measured break-even), or dense, csr, bitmask for all"},
    {"threads", WK_INT, WK_OFF(threads), 1, 1024, "1", WK_FLAG_JOB,
     "the bundle's default OpenMP threads (bench --threads overrides)"},
    {"tune", WK_INT, WK_OFF(tune), 0, 3600, "0", WK_FLAG_JOB,
     "seconds to tune the schedule by building and timing candidates on this machine "
     "(0: the cost model's)"},
    {"schedule", WK_STR, WK_OFF(schedule), 0, 0, NULL, 0,
     "compile with this schedule.json (from an earlier bundle) instead of choosing one"},
};

#define WK_N_FLAGS (sizeof(wk_compile_flags) / sizeof(wk_compile_flags[0]))

void wk_compile_opts_init(struct wk_compile_opts *o)
{
    memset(o, 0, sizeof(*o));
    wk_flags_defaults(wk_compile_flags, WK_N_FLAGS, o);
}

enum dp_err wk_compile_check(const struct wk_compile_opts *o, struct dp_errinfo *ei)
{
    if (o->model == NULL || o->out == NULL)
        return dp_errinfo_set(ei, DP_EINVAL, "--model and --out are required (see --help)");
    if (o->target == NULL || cg_target_vl(o->target) < 0)
        return dp_errinfo_set(ei, DP_EINVAL,
                              "--target must be native, portable or opencl, got '%s'",
                              o->target ? o->target : "");
    if (o->threads < 1)
        return dp_errinfo_set(ei, DP_EINVAL, "--threads must be at least 1");
    if (o->tune < 0 || o->tune > 3600)
        return dp_errinfo_set(ei, DP_EINVAL, "--tune must be 0 to 3600 seconds");
    if (o->tune > 0 && o->schedule != NULL)
        return dp_errinfo_set(ei, DP_EINVAL,
                              "--tune and --schedule exclude each other (a schedule file is "
                              "already tuned)");
    if (strcmp(o->target, "opencl") == 0 && (o->tune > 0 || o->schedule != NULL))
        return dp_errinfo_set(ei, DP_EINVAL,
                              "--tune and --schedule are for the native and portable targets "
                              "(opencl has one schedule and no schedule.json)");
    if (o->sparse != NULL && cg_sparse_mode_parse(o->sparse) < 0)
        return dp_errinfo_set(ei, DP_EINVAL,
                              "--sparse must be auto, dense, csr or bitmask, got '%s'", o->sparse);
    return DP_OK;
}

/* The base name of path without its extension, into buf. */
static void wk_compile_base(const char *path, char *buf, size_t cap)
{
    const char *slash = strrchr(path, '/');
    const char *b = slash ? slash + 1 : path;
    snprintf(buf, cap, "%s", b);
    char *dot = strrchr(buf, '.');
    if (dot != NULL && dot != buf)
        *dot = '\0';
}

enum dp_err wk_compile(const struct wk_compile_opts *o, const struct wk_hooks *h,
                       struct dp_errinfo *ei)
{
    (void)h; /* a compile takes seconds: nothing to report, nothing to stop */
    enum dp_err err = wk_compile_check(o, ei);
    if (err)
        return err;
    wk_cmd_threads(o->threads);
    struct dp_model *m = NULL;
    err = wk_model_load(o->model, &m, NULL, ei);
    if (err)
        return err;
    char base[256], source[256];
    wk_compile_base(o->model, base, sizeof(base));
    const char *slash = strrchr(o->model, '/');
    snprintf(source, sizeof(source), "%s", slash ? slash + 1 : o->model);
    const struct cg_compile_opts co = {
        o->name ? o->name : base, source,      o->target, (int)o->threads,
        (double)o->tune,          o->schedule, o->sparse};
    struct cg_compile_summary s;
    err = cg_compile(m, o->out, &co, &s, ei);
    char kernels[40];
    if (strcmp(o->target, "opencl") == 0)
        snprintf(kernels, sizeof(kernels), "OpenCL kernels");
    else
        snprintf(kernels, sizeof(kernels), "widest path %d-float vectors", s.vl);
    if (!err) {
        fprintf(stderr,
                "compile: %s -> %s: %d layers (%d fkw, %d dense, %d irregular as dense, %d csr, "
                "%d bitmask; %d quantized arrays), %zu weight bytes, %lld of %lld MACs "
                "non-zero, %s, %d threads\n",
                o->model, o->out, s.n_steps, s.n_fkw, s.n_dense, s.n_irregular, s.n_csr,
                s.n_bitmask, s.n_quantized, s.weights_bytes, s.macs_nonzero, s.macs_dense, kernels,
                s.threads);
        if (s.tune.rounds > 0)
            fprintf(stderr,
                    "compile: tuned path %s in %.1f s: %d candidate bundle(s), %d layer(s) "
                    "changed; p50 %.3f ms with the cost model's schedule, %.3f ms tuned "
                    "(0: threads and paths not timed, out of time); %d threads, path %s\n",
                    s.tune.isa, s.tune.seconds, s.tune.rounds, s.tune.layers_changed,
                    s.tune.default_p50, s.tune.tuned_p50, s.threads,
                    s.isa ? s.isa : "timed at create");
    }
    dp_model_free(m);
    return err;
}

int wk_compile_main(int argc, char **argv)
{
    struct wk_compile_opts o;
    wk_compile_opts_init(&o);
    int rc = wk_flags_parse("compile", wk_compile_flags, WK_N_FLAGS, &o, argc, argv);
    if (rc > 0) {
        printf("usage: dnnpress-worker compile --model FILE --out DIR [options]\n\n"
               "Compiles the model into a C bundle: model.h, model.c, weights.bin, "
               "reference.bin,\nbench.c and a Makefile (make -C DIR; DIR/bench).\n\noptions:\n");
        wk_flags_help(stdout, wk_compile_flags, WK_N_FLAGS);
        return WK_EXIT_OK;
    }
    if (rc != 0)
        return WK_EXIT_USAGE;
    struct dp_errinfo ei = {DP_OK, ""};
    enum dp_err err = wk_compile_check(&o, &ei);
    if (err) {
        fprintf(stderr, "compile: %s\n", dp_errinfo_msg(&ei, err));
        return WK_EXIT_USAGE;
    }
    err = wk_compile(&o, NULL, &ei);
    if (err)
        fprintf(stderr, "compile: %s\n", dp_errinfo_msg(&ei, err));
    return wk_cmd_exit_status(err);
}
