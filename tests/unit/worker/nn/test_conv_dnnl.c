/*
 * The oneDNN convolution path against the naive reference twin: forward
 * values, and that backward accumulates into dinp, dweight and dbias as
 * the conv2d.h contract says, for strides, padding (also the asymmetric
 * padding implied by the output size), dilation, groups and depthwise.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "common/alloc.h"
#include "tests/unit/test_util.h"
#include "worker/nn/conv2d.h"
#include "worker/nn/conv_dnnl.h"
#include "worker/nn/rng.h"

struct cd_case {
    int B, C, H, W, OC, k, s, p, dil, groups, bias;
};

static const struct cd_case cd_cases[] = {
    {2, 16, 8, 8, 16, 3, 1, 1, 1, 1, 1}, {3, 16, 9, 7, 32, 3, 2, 1, 1, 1, 0},
    {2, 32, 6, 6, 16, 1, 1, 0, 1, 1, 1}, {2, 16, 10, 10, 16, 3, 1, 2, 2, 1, 1},
    {2, 16, 8, 8, 32, 3, 1, 1, 1, 2, 1}, {2, 32, 8, 8, 32, 3, 2, 1, 1, 32, 0},
    {2, 3, 8, 8, 16, 3, 1, 1, 1, 1, 1},  {2, 20, 12, 12, 50, 5, 1, 0, 1, 1, 1},
    {1, 16, 7, 7, 16, 3, 2, 0, 1, 1, 1}, /* floor mode: the last row is dropped */
};

static float *cd_rand(struct nn_rng *r, size_t n)
{
    float *p = dp_malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++)
        p[i] = (float)(2.0 * nn_rng_uniform(r) - 1.0);
    return p;
}

static void cd_close(const float *got, const float *want, size_t n, const char *what, int ci)
{
    for (size_t i = 0; i < n; i++) {
        float tol = 1e-4f + 1e-4f * fabsf(want[i]);
        cr_assert(fabsf(got[i] - want[i]) <= tol, "case %d %s[%zu]: %g vs reference %g", ci, what,
                  i, (double)got[i], (double)want[i]);
    }
}

Test(conv_dnnl, matches_reference_and_accumulates)
{
    struct nn_dnnl *ctx = NULL;
    struct dp_errinfo ei = {0};
    cr_assert_eq(nn_dnnl_new(&ctx, &ei), DP_OK, "%s", ei.msg);
    struct nn_rng r;
    nn_rng_seed(&r, 11);
    for (size_t ci = 0; ci < sizeof(cd_cases) / sizeof(cd_cases[0]); ci++) {
        const struct cd_case *c = &cd_cases[ci];
        struct nn_conv2d_dims d;
        memset(&d, 0, sizeof(d));
        d.B = c->B, d.C = c->C, d.H = c->H, d.W = c->W, d.OC = c->OC;
        d.kh = d.kw = c->k, d.sh = d.sw = c->s, d.pt = d.pl = c->p;
        d.dh = d.dw = c->dil, d.groups = c->groups;
        const int eff = c->dil * (c->k - 1) + 1;
        d.OH = (c->H + 2 * c->p - eff) / c->s + 1;
        d.OW = (c->W + 2 * c->p - eff) / c->s + 1;
        const size_t ni = (size_t)d.B * d.C * d.H * d.W, no = (size_t)d.B * d.OC * d.OH * d.OW;
        const size_t nw = (size_t)d.OC * (d.C / d.groups) * d.kh * d.kw;
        float *x = cd_rand(&r, ni), *w = cd_rand(&r, nw), *b = cd_rand(&r, (size_t)d.OC);
        float *g = cd_rand(&r, no);
        float *out = dp_malloc(no * sizeof(float)), *ref = dp_malloc(no * sizeof(float));
        /* Gradients start from the same non-zero values: backward must add. */
        float *dx = cd_rand(&r, ni), *dw = cd_rand(&r, nw), *db = cd_rand(&r, (size_t)d.OC);
        float *rdx = dp_malloc(ni * sizeof(float)), *rdw = dp_malloc(nw * sizeof(float));
        float *rdb = dp_malloc((size_t)d.OC * sizeof(float));
        memcpy(rdx, dx, ni * sizeof(float));
        memcpy(rdw, dw, nw * sizeof(float));
        memcpy(rdb, db, (size_t)d.OC * sizeof(float));

        struct nn_conv_dnnl *cd = NULL;
        cr_assert_eq(nn_conv_dnnl_new(ctx, &d, c->bias, NN_LAYOUT_NCHW, NN_LAYOUT_NCHW, &cd, &ei),
                     DP_OK, "case %zu: %s", ci, ei.msg);
        cr_assert_eq(nn_conv_dnnl_batch(cd), d.B);
        nn_conv_dnnl_forward(cd, out, x, w, c->bias ? b : NULL);
        nn_conv2d_forward_ref(ref, x, w, c->bias ? b : NULL, &d);
        cd_close(out, ref, no, "out", (int)ci);
        nn_conv_dnnl_backward(cd, dx, dw, c->bias ? db : NULL, g, w);
        nn_conv2d_backward_ref(rdx, rdw, c->bias ? rdb : NULL, g, x, w, &d);
        cd_close(dx, rdx, ni, "dinp", (int)ci);
        cd_close(dw, rdw, nw, "dweight", (int)ci);
        if (c->bias)
            cd_close(db, rdb, (size_t)d.OC, "dbias", (int)ci);
        /* NULL gradients are skipped, the others still accumulate. */
        nn_conv_dnnl_backward(cd, NULL, dw, NULL, g, w);
        nn_conv2d_backward_ref(NULL, rdw, NULL, g, x, w, &d);
        cd_close(dw, rdw, nw, "dweight (second pass)", (int)ci);
        nn_conv_dnnl_free(cd);
        float *ps[] = {x, w, b, g, out, ref, dx, dw, db, rdx, rdw, rdb};
        for (size_t i = 0; i < sizeof(ps) / sizeof(ps[0]); i++)
            dp_free(ps[i]);
    }
    nn_dnnl_free(ctx);
    DP_ASSERT_NO_LEAKS();
}
