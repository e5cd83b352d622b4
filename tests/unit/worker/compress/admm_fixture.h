/*
 * The ADMM suites' fixture: a two-conv, two-linear network on 12x12
 * synthetic images in 4 classes, pretrained for 3 epochs (seeded, so every
 * test starts from the same weights).
 */
#ifndef DP_TESTS_UNIT_WORKER_COMPRESS_ADMM_FIXTURE_H
#define DP_TESTS_UNIT_WORKER_COMPRESS_ADMM_FIXTURE_H

#include <stddef.h>

#include <jansson.h>

#include "common/model.h"
#include "common/spec.h"
#include "worker/nn/data.h"

struct admm_fixture {
    struct nn_dataset train, test;
    struct dp_model *m;
};

void admm_fixture_init(struct admm_fixture *f);
void admm_fixture_free(struct admm_fixture *f);

/* Parses a spec (failing the test on an error) with the fixture's batch of 32. */
void admm_fixture_spec(const char *text, struct dp_spec *spec);

/* Runs spec text on the fixture's model without callbacks; the report must
 * come back (the caller releases it). */
json_t *admm_run_spec(struct admm_fixture *f, const char *text);

/* The 3x3 kernels of a weight block (n_kernels of 9 floats): how many are
 * kept (not all zero), how many distinct tap masks they use, and the most
 * taps any kept kernel has. */
struct admm_kernel_stats {
    size_t kept;
    int distinct, max_taps;
};
struct admm_kernel_stats admm_kernel_stats(const float *w, size_t n_kernels);

/* Non-zeros of the named parameter. */
size_t admm_nnz(const struct dp_model *m, const char *param);

#endif
