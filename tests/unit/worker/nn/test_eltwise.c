/*
 * The element-wise layers (worker/nn/eltwise.c): general clip's forward
 * values and gradient against central differences (method of test_grad.c).
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>

#include "common/alloc.h"
#include "tests/unit/test_util.h"
#include "tests/unit/worker/nn/nn_test_util.h"
#include "worker/nn/eltwise.h"

#define FD_EPS         1e-2f
#define FD_RTOL_LINEAR 1e-3
#define FD_RTOL_SMOOTH 1e-2

struct clip_bufs {
    size_t n;
    float lo, hi;
    float *inp, *out, *r, *dinp;
};

static double clip_objective(void *ctx)
{
    struct clip_bufs *b = ctx;
    nn_clip_forward(b->out, b->inp, b->n, b->lo, b->hi);
    return nn_dot(b->out, b->r, b->n);
}

Test(eltwise, clip)
{
    struct nn_test_rng rng = {4444};
    struct clip_bufs b = {80, -1.5f, 2.0f, NULL, NULL, NULL, NULL};
    const float kinks[] = {-1.5f, 2.0f};
    b.inp = nn_floats(b.n);
    b.out = nn_floats(b.n);
    b.r = nn_floats(b.n);
    b.dinp = nn_floats(b.n);
    nn_fill_away_from(&rng, b.inp, b.n, -4.0f, 4.0f, kinks, 2, 0.1f);
    nn_fill_uniform(&rng, b.r, b.n, -1.0f, 1.0f);
    clip_objective(&b);
    for (size_t i = 0; i < b.n; i++)
        cr_expect_eq(b.out[i], fminf(fmaxf(b.inp[i], b.lo), b.hi), "clip out[%zu]", i);
    nn_zero(b.dinp, b.n);
    nn_clip_backward(b.dinp, b.r, b.inp, b.n, b.lo, b.hi);
    nn_fd_check("clip: dinp", b.inp, b.n, b.dinp, clip_objective, &b, FD_EPS, FD_RTOL_LINEAR, 1);
    float *once = nn_floats_copy(b.dinp, b.n);
    nn_clip_backward(b.dinp, b.r, b.inp, b.n, b.lo, b.hi);
    for (size_t i = 0; i < b.n; i++)
        cr_expect_eq(b.dinp[i], 2.0f * once[i], "clip backward must accumulate");
    dp_free(once);
    dp_free(b.inp);
    dp_free(b.out);
    dp_free(b.r);
    dp_free(b.dinp);
    DP_ASSERT_NO_LEAKS();
}
