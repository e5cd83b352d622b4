/*
 * The worker's side of the scheme registry: binds every scheme of
 * common/scheme.h (the names, kinds and validation facts both programs
 * share) to its projection kernel here. Adding a scheme is a row in
 * common/scheme.h, its projection file, and one line in constraint.c's
 * kernel table; the ADMM loop only ever calls through this table (STYLE
 * rule 33), never switches on the scheme.
 */
#ifndef DP_WORKER_COMPRESS_CONSTRAINT_H
#define DP_WORKER_COMPRESS_CONSTRAINT_H

#include "common/scheme.h"
#include "common/spec.h"
#include "worker/compress/proj.h"

/* The projection (Z-step) of scheme s. s is a row of common/scheme.h (not
 * NULL); every row has a kernel (the unit test constraint/every_scheme
 * checks), so the result is never NULL. Any thread. */
proj_fn admm_constraint_kernel(const struct dp_scheme *s);

/* The projection parameters for a spec rule's parameters: the spec's fields
 * copied, the rest (the pattern library) at proj_params_default(). */
struct proj_params admm_constraint_params(const struct dp_spec_params *sp);

#endif
