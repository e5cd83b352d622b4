/*
 * C emission: the bundle's model.c (one named static function per step,
 * each with a comment naming its format and schedule), and its fixed
 * files (model.h, bench.c, Makefile) from the templates in rt/.
 *
 * DESIGN: everything the kernels know at compile time is a constant in
 * the text: shapes, tap offsets of every pattern, tile sizes, the byte
 * offsets of each step's arrays in weights.bin, so the C compiler
 * specialises every loop. A convolution copies its input into zero-padded
 * polyphase planes (one per stride phase, rows PWq floats apart), after
 * which every output position of a filter is one flat index k and tap
 * (ky, kx) reads plane element k + a constant offset: output tiles of L
 * flat positions are accumulated in registers (`native`: CG_VL-float
 * vectors, `portable`: plain arrays the compiler may vectorise) over all
 * of the filter's kernels, one loop per pattern with its taps unrolled.
 * The few padding columns computed per row are dropped when the tile is
 * stored with bias and activation. Threads split the filters: FKW layers
 * by cumulative MACs in FKW's reordered filter order. Dense layers on a
 * vector target use the panel kernel instead (cg_sched.h): register
 * blocks of output-channel panels x pixels, (group, tile) items split
 * evenly between threads.
 * Output is a pure function of the plan and options (no time, no
 * addresses), so the same model gives byte-identical files.
 */
#ifndef DP_WORKER_CODEGEN_CG_EMIT_H
#define DP_WORKER_CODEGEN_CG_EMIT_H

#include <stdio.h>

#include "common/err.h"
#include "worker/codegen/cg_plan.h"
#include "worker/codegen/cg_sched.h"
#include "worker/codegen/cg_weights.h"

struct cg_emit_opts {
    const char *name;   /* the model's name in the bundle (JSON "model") */
    const char *source; /* the file compiled, for the banner (a base name) */
    const char *target; /* "native", "portable" or "opencl" (cg_emit_ocl.h) */
    int vl; /* floats per vector of the path being emitted (set per path by cg_emit_model_c) */
    const struct cg_schedule *sch; /* every ISA path's schedule, the threads, the preferred path */
};

/* Writes model.c for plan p and its weights w to f: the runtime and every
 * path of o->sch, each path's layers in its own part (CG_PART). p's steps
 * must carry path 0's schedule (the weights' layout). DP_EIO when f
 * fails, DP_ENOMEM. */
enum dp_err cg_emit_model_c(FILE *f, const struct cg_plan *p, const struct cg_weights *w,
                            const struct cg_emit_opts *o, struct dp_errinfo *ei);

/* Writes the bundle's model.h, bench.c or Makefile (flags and the ISA
 * paths' parts from o->sch substituted). */
enum dp_err cg_emit_model_h(FILE *f, struct dp_errinfo *ei);
enum dp_err cg_emit_bench_c(FILE *f, struct dp_errinfo *ei);
enum dp_err cg_emit_makefile(FILE *f, const struct cg_emit_opts *o, struct dp_errinfo *ei);

/* For the other emitters of model.c (cg_emit_sparse.c): a step's function
 * name and opening, a user's name inside a comment, the activation
 * arguments of the runtime's epilogues and what a step fuses (comment). */
void cg_emit_fn_name(FILE *f, const struct cg_plan *p, int k);
void cg_emit_fn_open(FILE *f, const struct cg_plan *p, int k, int uses_x1);
void cg_emit_cmt(FILE *f, const char *s);
void cg_emit_act_args(FILE *f, const struct cg_step *s);
void cg_emit_fused(FILE *f, const struct cg_plan *p, const struct cg_step *s);

/* Writes step k (CSR or bitmask, conv or linear) of p (cg_emit_sparse.c). */
void cg_emit_sparse_step(FILE *f, const struct cg_plan *p, int k, const struct cg_wsec *sec,
                         const struct cg_emit_opts *o);

#endif
