/*
 * schedule.json: a bundle's whole schedule (cg_sched.h) as a file, so a
 * tuned bundle can be reproduced without tuning:
 *
 *   dnnpress-worker compile --model M --out A --tune 30      writes A/schedule.json
 *   dnnpress-worker compile --model M --out B --schedule A/schedule.json   B = A, byte for byte
 *
 *   {"version": 1, "target": "native", "threads": 2, "isa": "avx512" | null,
 *    "paths": [{"isa": "avx512", "vl": 16, "layers": [
 *        {"layer": "conv1", "kernel": "panel", "group": 32, "nb": 2, "r": 6, "rows": 0,
 *         "prefetch": false},
 *        {"layer": "conv2", "kernel": "spatial", "nv": 4, "sets": 2, "unroll": 1,
 *         "shift": false, "packed": false}, ...]}, ...]}
 *
 * One entry per convolution, in the plan's order; "isa" is the path a
 * tuning run measured fastest (null: the bundle times its paths at
 * model_create). Reading checks everything against the model: a file of
 * another model, target or compiler version, or a schedule the compiler
 * cannot generate, is DP_EINVAL naming the field.
 */
#ifndef DP_WORKER_CODEGEN_CG_SCHEDFILE_H
#define DP_WORKER_CODEGEN_CG_SCHEDFILE_H

#include <stddef.h>
#include <stdio.h>

#include "common/err.h"
#include "worker/codegen/cg_plan.h"
#include "worker/codegen/cg_sched.h"

/* Files larger than this are refused before parsing. */
#define CG_SCHEDFILE_MAX (4u << 20)

/* Writes s (for plan p and target) as schedule.json to f. DP_EIO, DP_ENOMEM. */
enum dp_err cg_schedfile_write(FILE *f, const struct cg_plan *p, const char *target,
                               const struct cg_schedule *s, struct dp_errinfo *ei);

/* Parses text (len bytes) into *out for plan p and target. DP_EINVAL
 * naming the field that is wrong, DP_ENOMEM. */
enum dp_err cg_schedfile_parse(const char *text, size_t len, const struct cg_plan *p,
                               const char *target, struct cg_schedule *out, struct dp_errinfo *ei);

#endif
