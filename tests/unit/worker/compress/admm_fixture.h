/*
 * The ADMM suites' fixture: a two-conv, two-linear network on 12x12
 * synthetic images in 4 classes, pretrained for 3 epochs (seeded, so every
 * test starts from the same weights).
 */
#ifndef DP_TESTS_UNIT_WORKER_COMPRESS_ADMM_FIXTURE_H
#define DP_TESTS_UNIT_WORKER_COMPRESS_ADMM_FIXTURE_H

#include <stddef.h>

#include "common/model.h"
#include "worker/nn/data.h"

struct admm_fixture {
    struct nn_dataset train, test;
    struct dp_model *m;
};

void admm_fixture_init(struct admm_fixture *f);
void admm_fixture_free(struct admm_fixture *f);

/* Non-zeros of the named parameter. */
size_t admm_nnz(const struct dp_model *m, const char *param);

#endif
