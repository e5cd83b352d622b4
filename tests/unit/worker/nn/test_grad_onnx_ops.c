/*
 * Finite-difference gradient tests (suite "grad_onnx") for the layers added
 * for ONNX import: softmax over a strided axis, concatenation and general
 * clip, plus their forward values against direct formulas and the
 * accumulate-not-overwrite contract (STYLE rule 27). Same method as
 * test_grad.c: L = sum(out * R) for a fixed random R, so dout = R.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>

#include "common/alloc.h"
#include "tests/unit/test_util.h"
#include "tests/unit/worker/nn/nn_test_util.h"
#include "worker/nn/concat.h"
#include "worker/nn/eltwise.h"
#include "worker/nn/softmax.h"

#define FD_EPS         1e-2f
#define FD_RTOL_LINEAR 1e-3
#define FD_RTOL_SMOOTH 1e-2

/* ---- Softmax ------------------------------------------------------------- */

struct sm_bufs {
    size_t outer, len, inner, n;
    float *inp, *out, *r, *dinp;
};

static double sm_objective(void *ctx)
{
    struct sm_bufs *b = ctx;
    nn_softmax_forward(b->out, b->inp, b->outer, b->len, b->inner);
    return nn_dot(b->out, b->r, b->n);
}

Test(grad_onnx, softmax)
{
    /* (outer, len, inner): a plain row softmax, a strided axis, a long row. */
    static const size_t cases[][3] = {{3, 5, 1}, {2, 4, 3}, {1, 40, 1}, {4, 1, 2}};
    struct nn_rng rng = {4242};
    char label[96];

    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        struct sm_bufs b = {cases[c][0], cases[c][1], cases[c][2], 0, NULL, NULL, NULL, NULL};
        b.n = b.outer * b.len * b.inner;
        b.inp = nn_floats(b.n);
        b.out = nn_floats(b.n);
        b.r = nn_floats(b.n);
        b.dinp = nn_floats(b.n);
        nn_fill_uniform(&rng, b.inp, b.n, -3.0f, 3.0f);
        nn_fill_uniform(&rng, b.r, b.n, -1.0f, 1.0f);
        sm_objective(&b);
        /* Each strided vector sums to 1 and matches exp(x) / sum exp(x). */
        for (size_t o = 0; o < b.outer; o++) {
            for (size_t j = 0; j < b.inner; j++) {
                double s = 0.0, z = 0.0;
                for (size_t k = 0; k < b.len; k++)
                    z += exp((double)b.inp[(o * b.len + k) * b.inner + j]);
                for (size_t k = 0; k < b.len; k++) {
                    size_t i = (o * b.len + k) * b.inner + j;
                    s += b.out[i];
                    cr_expect(fabs(b.out[i] - exp((double)b.inp[i]) / z) < 1e-6,
                              "softmax case %zu: out[%zu] = %g", c, i, (double)b.out[i]);
                }
                cr_expect(fabs(s - 1.0) < 1e-5, "softmax case %zu: a vector sums to %g", c, s);
            }
        }
        nn_zero(b.dinp, b.n);
        nn_softmax_backward(b.dinp, b.r, b.out, b.outer, b.len, b.inner);
        snprintf(label, sizeof(label), "softmax (%zu,%zu,%zu): dinp", b.outer, b.len, b.inner);
        nn_fd_check(label, b.inp, b.n, b.dinp, sm_objective, &b, FD_EPS, FD_RTOL_SMOOTH, 1);
        /* Accumulates: a second backward doubles the gradient (the check above
         * left out computed from a perturbed input, so run the forward again). */
        sm_objective(&b);
        nn_zero(b.dinp, b.n);
        nn_softmax_backward(b.dinp, b.r, b.out, b.outer, b.len, b.inner);
        float *once = nn_floats_copy(b.dinp, b.n);
        nn_softmax_backward(b.dinp, b.r, b.out, b.outer, b.len, b.inner);
        for (size_t i = 0; i < b.n; i++)
            cr_expect(fabsf(b.dinp[i] - 2.0f * once[i]) <= 1e-6f + 1e-5f * fabsf(once[i]),
                      "softmax backward must accumulate (element %zu)", i);
        dp_free(once);
        dp_free(b.inp);
        dp_free(b.out);
        dp_free(b.r);
        dp_free(b.dinp);
    }
    DP_ASSERT_NO_LEAKS();
}

/* Large logits must not overflow (the maximum is subtracted first). */
Test(grad_onnx, softmax_large_logits)
{
    float inp[4] = {10000.0f, 10001.0f, 10002.0f, 10003.0f}, out[4];
    nn_softmax_forward(out, inp, 1, 4, 1);
    const double want[4] = {0.0320586, 0.0871443, 0.2368828, 0.6439142};
    for (int i = 0; i < 4; i++)
        cr_expect(fabs(out[i] - want[i]) < 1e-6, "out[%d] = %g, want %g", i, (double)out[i],
                  want[i]);
    DP_ASSERT_NO_LEAKS();
}

/* ---- Concat -------------------------------------------------------------- */

struct cc_bufs {
    size_t outer, a_len, b_len;
    float *a, *b, *out, *r, *da, *db;
};

static double cc_objective(void *ctx)
{
    struct cc_bufs *c = ctx;
    nn_concat_forward(c->out, c->a, c->b, c->outer, c->a_len, c->b_len);
    return nn_dot(c->out, c->r, c->outer * (c->a_len + c->b_len));
}

Test(grad_onnx, concat)
{
    struct nn_rng rng = {4343};
    struct cc_bufs c = {3, 4, 6, NULL, NULL, NULL, NULL, NULL, NULL};
    const size_t na = c.outer * c.a_len, nb = c.outer * c.b_len, no = na + nb;
    c.a = nn_floats(na);
    c.b = nn_floats(nb);
    c.out = nn_floats(no);
    c.r = nn_floats(no);
    c.da = nn_floats(na);
    c.db = nn_floats(nb);
    nn_fill_uniform(&rng, c.a, na, -2.0f, 2.0f);
    nn_fill_uniform(&rng, c.b, nb, -2.0f, 2.0f);
    nn_fill_uniform(&rng, c.r, no, -1.0f, 1.0f);
    cc_objective(&c);
    const size_t row = c.a_len + c.b_len;
    for (size_t o = 0; o < c.outer; o++) {
        for (size_t i = 0; i < c.a_len; i++)
            cr_expect_eq(c.out[o * row + i], c.a[o * c.a_len + i], "concat: a part");
        for (size_t i = 0; i < c.b_len; i++)
            cr_expect_eq(c.out[o * row + c.a_len + i], c.b[o * c.b_len + i], "concat: b part");
    }
    nn_zero(c.da, na);
    nn_zero(c.db, nb);
    nn_concat_backward(c.da, c.db, c.r, c.outer, c.a_len, c.b_len);
    nn_fd_check("concat: da", c.a, na, c.da, cc_objective, &c, FD_EPS, FD_RTOL_LINEAR, 0);
    nn_fd_check("concat: db", c.b, nb, c.db, cc_objective, &c, FD_EPS, FD_RTOL_LINEAR, 0);
    /* Accumulates, and a NULL gradient is skipped. */
    float *once = nn_floats_copy(c.da, na);
    nn_concat_backward(c.da, NULL, c.r, c.outer, c.a_len, c.b_len);
    for (size_t i = 0; i < na; i++)
        cr_expect_eq(c.da[i], 2.0f * once[i], "concat backward must accumulate");
    dp_free(once);
    dp_free(c.a);
    dp_free(c.b);
    dp_free(c.out);
    dp_free(c.r);
    dp_free(c.da);
    dp_free(c.db);
    DP_ASSERT_NO_LEAKS();
}

/* ---- Clip ---------------------------------------------------------------- */

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

Test(grad_onnx, clip)
{
    struct nn_rng rng = {4444};
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
