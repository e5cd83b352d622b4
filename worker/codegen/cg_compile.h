/*
 * The compiler's driver: a model in, a bundle directory out (see
 * docs/compile.md for the bundle and its API).
 *
 *   struct cg_compile_opts o = {"resnet20", "resnet20.safetensors", "native", 2};
 *   err = cg_compile(model, "out/resnet20", &o, &summary, &ei);
 *
 * Steps: plan (cg_plan.h: fold, fuse, choose formats), pack the weights
 * (cg_weights.h), compute the reference logits with the engine
 * (worker/nn, evaluation mode) on CG_REF_SAMPLES fixed inputs, and write
 * model.h, model.c, bench.c, Makefile, weights.bin, reference.bin and
 * formats.json (each layer's format, why, and its bytes in every format),
 * each through a temporary file renamed into place.
 */
#ifndef DP_WORKER_CODEGEN_CG_COMPILE_H
#define DP_WORKER_CODEGEN_CG_COMPILE_H

#include <stddef.h>

#include "common/err.h"
#include "common/model.h"

#define CG_REF_SAMPLES 2

struct cg_compile_opts {
    const char *name;   /* the model's name in the bundle */
    const char *source; /* the file it came from, for the banner (base name) */
    const char *target; /* "native" (this CPU's vectors, -march=native) or "portable" */
    int threads;        /* the bundle's default OpenMP threads, >= 1 */
    const char
        *sparse; /* irregular layers: "auto" (NULL), "dense", "csr", "bitmask" (cg_sparse.h) */
};

/* What was compiled, for the command's summary line. */
struct cg_compile_summary {
    int n_steps, n_fkw, n_dense, n_irregular;
    int n_csr, n_bitmask, n_quantized; /* irregular layers in CSR / bitmask; quantized arrays */
    size_t weights_bytes;
    long long macs_dense, macs_nonzero;
    int vl; /* floats per vector of the kernels, 0 for plain arrays */
};

/*
 * Compiles m (finalized; the engine runs it once for the reference, its
 * parameters are not changed) into directory dir (created when missing;
 * files already there are replaced). summary may be NULL.
 * DP_EUNSUPPORTED naming the layer the compiler cannot handle, DP_EINVAL
 * for an unknown target, DP_EIO naming the file that could not be
 * written, DP_ENOMEM.
 */
enum dp_err cg_compile(struct dp_model *m, const char *dir, const struct cg_compile_opts *o,
                       struct cg_compile_summary *summary, struct dp_errinfo *ei);

/* Floats per vector the kernels of target use on this machine: 16 with
 * AVX-512, 8 with AVX2, else 4 for "native"; 0 for "portable"; -1 for
 * an unknown target. */
int cg_target_vl(const char *target);

#endif
