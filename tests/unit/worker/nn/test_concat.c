/*
 * The channel concatenation layer (worker/nn/concat.c): forward copies and
 * the backward split against central differences (method of test_grad.c).
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>

#include "common/alloc.h"
#include "tests/unit/test_util.h"
#include "tests/unit/worker/nn/nn_test_util.h"
#include "worker/nn/concat.h"

#define FD_EPS         1e-2f
#define FD_RTOL_LINEAR 1e-3
#define FD_RTOL_SMOOTH 1e-2

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

Test(concat, concat)
{
    struct nn_test_rng rng = {4343};
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
