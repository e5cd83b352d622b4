/*
 * The learning-rate schedules (worker/nn/sched.c).
 */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "common/alloc.h"
#include "common/model.h"
#include "tests/unit/test_util.h"
#include "worker/nn/sched.h"

Test(sched, cosine_step_and_warmup_values)
{
    struct nn_sched s = {NN_SCHED_COSINE, 0.1f, 0.1f, 2, 4, 0.0f, 0, 0.1f};
    cr_assert_float_eq(nn_sched_lr(&s, 0, 0), 0.1f, 1e-7f);
    cr_assert_float_eq(nn_sched_lr(&s, 2, 0), 0.05f, 1e-7f);
    cr_assert_float_eq(nn_sched_lr(&s, 1, 0), (float)(0.05 * (1 + cos(3.14159265358979323846 / 4))),
                       1e-7f);
    s.kind = NN_SCHED_STEP;
    cr_assert_float_eq(nn_sched_lr(&s, 1, 0), 0.1f, 1e-7f);
    cr_assert_float_eq(nn_sched_lr(&s, 2, 0), 0.01f, 1e-7f);
    cr_assert_float_eq(nn_sched_lr(&s, 5, 0), 0.001f, 1e-8f);
    s.kind = NN_SCHED_CONST;
    s.warmup_epochs = 2;
    cr_assert_float_eq(nn_sched_lr(&s, 0, 0), 0.01f, 1e-7f);
    cr_assert_float_eq(nn_sched_lr(&s, 1, 0), 0.055f, 1e-7f);
    cr_assert_float_eq(nn_sched_lr(&s, 2, 0), 0.1f, 1e-7f);
    struct dp_errinfo ei = {0};
    enum nn_sched_kind k;
    cr_assert_eq(nn_sched_kind_parse("linear", &k, &ei), DP_EINVAL);
    cr_assert(strstr(ei.msg, "'linear'") != NULL);
    DP_ASSERT_NO_LEAKS();
}

/* Cosine anneals per step: a one-epoch schedule (an ADMM W-step of one
 * epoch) must not stay at the base rate for the whole epoch. */
Test(sched, cosine_anneals_within_an_epoch)
{
    const double pi = 3.14159265358979323846;
    struct nn_sched s = {NN_SCHED_COSINE, 0.1f, 0.1f, 2, 1, 0.001f, 0, 0.1f};
    float prev = nn_sched_lr(&s, 0, 0.0);
    cr_assert_float_eq(prev, 0.1f, 1e-7f);
    for (int step = 1; step < 10; step++) {
        const double frac = step / 10.0;
        const float lr = nn_sched_lr(&s, 0, frac);
        cr_assert_lt(lr, prev, "step %d: %g is not below %g", step, (double)lr, (double)prev);
        cr_assert_float_eq(lr, (float)(0.001 + 0.099 * (1 + cos(pi * frac)) / 2), 1e-7f);
        prev = lr;
    }
    /* Epoch boundaries keep the per-epoch values. */
    s.total_epochs = 4;
    cr_assert_float_eq(nn_sched_lr(&s, 2, 0.0), (float)(0.001 + 0.099 * 0.5), 1e-7f);
    cr_assert_float_eq(nn_sched_lr(&s, 1, 0.5),
                       (float)(0.001 + 0.099 * (1 + cos(pi * 1.5 / 4)) / 2), 1e-7f);
    /* Past the end it stays at the minimum. */
    cr_assert_float_eq(nn_sched_lr(&s, 4, 0.0), 0.001f, 1e-7f);
    cr_assert_float_eq(nn_sched_lr(&s, 7, 0.5), 0.001f, 1e-7f);
    /* Step decay stays per epoch (PyTorch's StepLR stepped per epoch). */
    s.kind = NN_SCHED_STEP;
    cr_assert_float_eq(nn_sched_lr(&s, 1, 0.9), 0.1f, 1e-7f);
    DP_ASSERT_NO_LEAKS();
}
