/*
 * Models for the compiler's tests (and for measuring it by hand): a
 * built-in architecture with seeded random weights, optionally pattern +
 * connectivity pruned with worker/compress's projections.
 */
#ifndef DP_TESTS_UNIT_WORKER_CODEGEN_CG_FIXTURE_H
#define DP_TESTS_UNIT_WORKER_CODEGEN_CG_FIXTURE_H

#include "common/err.h"
#include "common/model.h"

/*
 * Builds architecture arch (nn_arch_build) for inputs (in_c, in_h, in_w)
 * and 10 classes with weights from seed; BN statistics are randomised so
 * that folding is exercised. With n_patterns > 0 every 3x3 convolution is
 * projected onto the n_patterns most common 4-tap patterns and then
 * connectivity-pruned to keep 1/conn_rate of its kernels (conn_rate <= 1:
 * no connectivity pruning). *out: release with dp_model_free.
 */
enum dp_err cg_fixture_model(const char *arch, int in_c, int in_h, int in_w, int n_patterns,
                             double conn_rate, struct dp_model **out, struct dp_errinfo *ei);

/* Sets every BN layer's statistics and affine parameters away from the
 * identity (deterministic), so that a wrong fold shows. */
void cg_fixture_bn_randomise(struct dp_model *m);

#endif
