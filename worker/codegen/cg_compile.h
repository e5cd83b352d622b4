/*
 * The compiler's driver: a model in, a bundle directory out (see
 * docs/compile.md for the bundle and its API).
 *
 *   struct cg_compile_opts o = {"resnet20", "resnet20.safetensors", "native", 2, 0.0, NULL, NULL};
 *   err = cg_compile(model, "out/resnet20", &o, &summary, &ei);
 *
 * Steps: plan (cg_plan.h: fold, fuse, choose formats, cg_sparse.h for
 * irregular layers), compute the reference logits with the engine
 * (worker/nn, evaluation mode) on CG_REF_SAMPLES fixed inputs, take the
 * schedule (cg_sched.h: the cost model's, a schedule.json's, or tuned by
 * timing candidate bundles, cg_tune.h), pack the weights for it
 * (cg_weights.h; quantized arrays as codes, cg_quant.h) and write model.h,
 * model.c, bench.c, Makefile, weights.bin, reference.bin, schedule.json
 * (not for opencl) and formats.json (each layer's format, why, and its
 * bytes in every format), each through a temporary file renamed into place.
 */
#ifndef DP_WORKER_CODEGEN_CG_COMPILE_H
#define DP_WORKER_CODEGEN_CG_COMPILE_H

#include <stddef.h>

#include "common/err.h"
#include "common/model.h"
#include "worker/codegen/cg_tune.h"

#define CG_REF_SAMPLES 2

struct cg_compile_opts {
    const char *name;     /* the model's name in the bundle */
    const char *source;   /* the file it came from, for the banner (base name) */
    const char *target;   /* "native" (avx512, avx2 and generic paths), "portable" or "opencl"
                             (OpenCL kernels and a host runner, cg_emit_ocl.h) */
    int threads;          /* the bundle's default OpenMP threads, >= 1 (a schedule file's win) */
    double tune_s;        /* > 0: tune the schedule for about this many seconds (cg_tune.h) */
    const char *schedule; /* a schedule.json to compile with instead of the cost model's */
    const char
        *sparse; /* irregular layers: "auto" (NULL), "dense", "csr", "bitmask" (cg_sparse.h) */
};

/* What was compiled, for the command's summary line. */
struct cg_compile_summary {
    int n_steps, n_fkw, n_dense, n_irregular;
    int n_csr, n_bitmask, n_quantized; /* irregular layers in CSR / bitmask; quantized arrays */
    size_t weights_bytes;
    long long macs_dense, macs_nonzero;
    int vl;          /* floats per vector of the widest path's kernels, 0 for plain arrays */
    int threads;     /* the bundle's default threads (the schedule's) */
    const char *isa; /* the path tuning measured fastest, NULL when the bundle times them */
    struct cg_tune_report tune; /* what tuning did (zero without --tune) */
};

/*
 * Compiles m (finalized; the engine runs it once for the reference, its
 * parameters are not changed) into directory dir (created when missing;
 * files already there are replaced). summary may be NULL.
 * DP_EUNSUPPORTED naming the layer the compiler cannot handle, DP_EINVAL
 * for an unknown target or a schedule file that does not fit the model,
 * DP_EIO when a tuning candidate fails to build or run, DP_EIO naming the file that could not be
 * written, DP_ENOMEM.
 */
enum dp_err cg_compile(struct dp_model *m, const char *dir, const struct cg_compile_opts *o,
                       struct cg_compile_summary *summary, struct dp_errinfo *ei);

/*
 * cg_compile with reference.bin's outputs from ref instead of the engine's
 * forward pass: given the CG_REF_SAMPLES fixed inputs x (n, in_floats),
 * ref fills y (n, out_floats). For checking the generated kernels against
 * another implementation (the tests' brute-force definitions of layers).
 */
typedef enum dp_err cg_ref_fn(void *ctx, const float *x, int n, float *y, struct dp_errinfo *ei);
enum dp_err cg_compile_ref(struct dp_model *m, const char *dir, const struct cg_compile_opts *o,
                           cg_ref_fn *ref, void *ref_ctx, struct cg_compile_summary *summary,
                           struct dp_errinfo *ei);

/* Floats per vector the kernels of target use on this machine: 16 with
 * AVX-512, 8 with AVX2, else 4 for "native"; 0 for "portable" and "opencl"; -1 for
 * an unknown target. */
int cg_target_vl(const char *target);

#endif
