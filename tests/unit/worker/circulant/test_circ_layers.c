/*
 * The block-circulant engine layers (worker/circulant/circ_linear.c,
 * circ_conv2d.c) and their rows in the executor (worker/nn/net.c):
 *  - forward equals the dense layer (worker/nn linear and conv2d kernels)
 *    run on the expanded weight;
 *  - backward equals the dense layer's gradients (the weight's through the
 *    adjoint of the expansion: a stored value's gradient is the sum of the
 *    dense gradient over the entries it stands for) and central
 *    differences of the layer itself;
 *  - a net with both layers builds, runs full and partial batches like
 *    the dense composition, and its loss gradient matches differences.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "common/alloc.h"
#include "common/model.h"
#include "tests/unit/test_util.h"
#include "tests/unit/worker/nn/nn_test_util.h"
#include "worker/circulant/circ_conv2d.h"
#include "worker/circulant/circ_linear.h"
#include "worker/nn/arch.h"
#include "worker/nn/conv2d.h"
#include "worker/nn/eltwise.h"
#include "worker/nn/linear.h"
#include "worker/nn/net.h"

#define FD_EPS  1e-2f
#define FD_RTOL 2e-3

/* dw (taps, p, q, k) += the adjoint of circ_expand applied to each tap's
 * dense (rows, cols) gradient; dense is (rows, cols, taps) per entry
 * (conv2d's (OC, C, kh, kw) order) with taps = 1 for linear. */
static void circ_test_unexpand(float *dw, const float *dense, const struct circ_dims *d, int taps)
{
    const int k = d->k;
    for (int t = 0; t < taps; t++)
        for (int r = 0; r < d->rows; r++)
            for (int c = 0; c < d->cols; c++) {
                int i = r / k, j = c / k, rr = r % k, s = c % k;
                dw[(((size_t)t * d->p + i) * d->q + j) * k + (size_t)((rr - s + k) % k)] +=
                    dense[((size_t)r * d->cols + c) * taps + t];
            }
}

/* The dense conv2d weight (rows, cols, taps) that w (taps, p, q, k) stands for. */
static void circ_test_expand_taps(float *dense, const float *w, const struct circ_dims *d, int taps)
{
    float *one = nn_floats((size_t)d->rows * d->cols);
    for (int t = 0; t < taps; t++) {
        circ_expand(one, w + (size_t)t * circ_dims_numel(d), d);
        for (size_t e = 0; e < (size_t)d->rows * d->cols; e++)
            dense[e * taps + t] = one[e];
    }
    dp_free(one);
}

/* ---- circ_linear ---------------------------------------------------------- */

struct lin_bufs {
    struct circ_op *op;
    int B, n_in, n_out;
    float *inp, *w, *bias, *out, *r;
};

static double lin_objective(void *ctx)
{
    struct lin_bufs *b = ctx;
    circ_linear_forward(b->op, b->out, b->inp, b->w, b->bias, b->B);
    return nn_dot(b->out, b->r, (size_t)b->B * b->n_out);
}

static void lin_check(int B, int max_b, int n_in, int n_out, int k, uint64_t seed)
{
    struct nn_test_rng rng = {seed};
    struct circ_dims d;
    circ_dims_init(&d, n_out, n_in, k);
    struct lin_bufs b = {NULL, B, n_in, n_out, NULL, NULL, NULL, NULL, NULL};
    struct dp_errinfo ei = {0};
    cr_assert_eq(circ_op_new(&d, max_b, &b.op, &ei), DP_OK, "%s", ei.msg);
    const size_t nw = circ_dims_numel(&d), nx = (size_t)B * n_in, ny = (size_t)B * n_out;
    b.inp = nn_floats(nx);
    b.w = nn_floats(nw);
    b.bias = nn_floats((size_t)n_out);
    b.out = nn_floats(ny);
    b.r = nn_floats(ny);
    nn_fill_uniform(&rng, b.inp, nx, -1.0f, 1.0f);
    nn_fill_uniform(&rng, b.w, nw, -0.5f, 0.5f);
    nn_fill_uniform(&rng, b.bias, (size_t)n_out, -1.0f, 1.0f);
    nn_fill_uniform(&rng, b.r, ny, -1.0f, 1.0f);

    /* Dense twin. */
    float *wd = nn_floats((size_t)n_out * n_in), *out_d = nn_floats(ny);
    circ_expand(wd, b.w, &d);
    nn_linear_forward(out_d, b.inp, wd, b.bias, B, n_in, n_out);
    lin_objective(&b);
    char label[96];
    snprintf(label, sizeof label, "circ_linear forward %dx%d k %d B %d/%d", n_out, n_in, k, B,
             max_b);
    nn_expect_close(label, b.out, out_d, ny, 1e-4, 1e-4);

    float *dinp = nn_floats(nx), *dw = nn_floats(nw), *dbias = nn_floats((size_t)n_out);
    float *dinp_d = nn_floats(nx), *dwd = nn_floats((size_t)n_out * n_in);
    float *dw_d = nn_floats(nw), *dbias_d = nn_floats((size_t)n_out);
    circ_linear_backward(b.op, dinp, dw, dbias, b.r, b.inp, B);
    nn_linear_backward(dinp_d, dwd, dbias_d, b.r, b.inp, wd, B, n_in, n_out);
    circ_test_unexpand(dw_d, dwd, &d, 1);
    snprintf(label, sizeof label, "circ_linear dinp vs dense k %d", k);
    nn_expect_close(label, dinp, dinp_d, nx, 1e-4, 1e-4);
    snprintf(label, sizeof label, "circ_linear dw vs dense k %d", k);
    nn_expect_close(label, dw, dw_d, nw, 1e-4, 1e-4);
    snprintf(label, sizeof label, "circ_linear dbias vs dense k %d", k);
    nn_expect_close(label, dbias, dbias_d, (size_t)n_out, 1e-5, 1e-5);

    /* The forward inside the differences reloads the weight each time;
     * restore the spectra of b.w afterwards is not needed (done). */
    snprintf(label, sizeof label, "circ_linear dinp k %d", k);
    nn_fd_check(label, b.inp, nx, dinp, lin_objective, &b, FD_EPS, FD_RTOL, 0);
    snprintf(label, sizeof label, "circ_linear dw k %d", k);
    nn_fd_check(label, b.w, nw, dw, lin_objective, &b, FD_EPS, FD_RTOL, 0);
    snprintf(label, sizeof label, "circ_linear dbias k %d", k);
    nn_fd_check(label, b.bias, (size_t)n_out, dbias, lin_objective, &b, FD_EPS, FD_RTOL, 0);

    circ_op_free(b.op);
    float *bufs[] = {b.inp, b.w, b.bias, b.out,  b.r, wd,   out_d,
                     dinp,  dw,  dbias,  dinp_d, dwd, dw_d, dbias_d};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        dp_free(bufs[i]);
}

Test(circ_layers, linear_matches_dense_and_differences)
{
    lin_check(3, 3, 13, 10, 4, 11); /* padding on both sides, full batch */
    lin_check(2, 5, 13, 10, 3, 12); /* odd k, partial batch */
    lin_check(4, 4, 16, 8, 8, 13);  /* no padding */
    lin_check(2, 2, 7, 9, 1, 14);   /* k = 1: dense */
    DP_ASSERT_NO_LEAKS();
}

/* ---- circ_conv2d ------------------------------------------------------------ */

struct conv_bufs {
    struct circ_op *op;
    struct nn_conv2d_dims d;
    float *inp, *w, *bias, *out, *r;
    size_t n_out;
};

static double conv_objective(void *ctx)
{
    struct conv_bufs *b = ctx;
    circ_conv2d_forward(b->op, b->out, b->inp, b->w, b->bias, &b->d);
    return nn_dot(b->out, b->r, b->n_out);
}

/* A conv2d's output size along one axis (no ceil mode). */
static int conv_out(int n, int kernel, int stride, int pad_lo, int pad_hi, int dil)
{
    return (n + pad_lo + pad_hi - dil * (kernel - 1) - 1) / stride + 1;
}

struct conv_case {
    int B, max_b, C, H, W, OC, kh, kw, sh, sw, pt, pl, pb, pr, dh, dw, k;
};

static void conv_check(const struct conv_case *cc, uint64_t seed)
{
    struct nn_test_rng rng = {seed};
    struct conv_bufs b;
    memset(&b, 0, sizeof b);
    struct nn_conv2d_dims *d = &b.d;
    d->B = cc->max_b;
    d->C = cc->C;
    d->H = cc->H;
    d->W = cc->W;
    d->OC = cc->OC;
    d->kh = cc->kh;
    d->kw = cc->kw;
    d->sh = cc->sh;
    d->sw = cc->sw;
    d->pt = cc->pt;
    d->pl = cc->pl;
    d->dh = cc->dh;
    d->dw = cc->dw;
    d->OH = conv_out(cc->H, cc->kh, cc->sh, cc->pt, cc->pb, cc->dh);
    d->OW = conv_out(cc->W, cc->kw, cc->sw, cc->pl, cc->pr, cc->dw);
    d->groups = 1;
    d->threads = 1;
    struct dp_errinfo ei = {0};
    cr_assert_eq(circ_conv2d_op_new(d, cc->k, &b.op, &ei), DP_OK, "%s", ei.msg);
    d->B = cc->B;
    struct circ_dims cd;
    circ_dims_init(&cd, cc->OC, cc->C, cc->k);
    const int taps = cc->kh * cc->kw;
    const size_t nx = (size_t)d->B * d->C * d->H * d->W;
    const size_t nw = (size_t)taps * circ_dims_numel(&cd), nwd = (size_t)cc->OC * cc->C * taps;
    b.n_out = (size_t)d->B * d->OC * d->OH * d->OW;
    b.inp = nn_floats(nx);
    b.w = nn_floats(nw);
    b.bias = nn_floats((size_t)cc->OC);
    b.out = nn_floats(b.n_out);
    b.r = nn_floats(b.n_out);
    nn_fill_uniform(&rng, b.inp, nx, -1.0f, 1.0f);
    nn_fill_uniform(&rng, b.w, nw, -0.5f, 0.5f);
    nn_fill_uniform(&rng, b.bias, (size_t)cc->OC, -1.0f, 1.0f);
    nn_fill_uniform(&rng, b.r, b.n_out, -1.0f, 1.0f);

    float *wd = nn_floats(nwd), *out_d = nn_floats(b.n_out);
    float *scratch = nn_floats(nn_conv2d_scratch_floats(d));
    circ_test_expand_taps(wd, b.w, &cd, taps);
    nn_conv2d_forward(out_d, scratch, b.inp, wd, b.bias, d);
    conv_objective(&b);
    char label[128];
    snprintf(label, sizeof label, "circ_conv2d forward C %d OC %d %dx%d k %d B %d/%d", cc->C,
             cc->OC, cc->kh, cc->kw, cc->k, cc->B, cc->max_b);
    nn_expect_close(label, b.out, out_d, b.n_out, 1e-4, 1e-4);

    float *dinp = nn_floats(nx), *dw = nn_floats(nw), *dbias = nn_floats((size_t)cc->OC);
    float *dinp_d = nn_floats(nx), *dwd = nn_floats(nwd), *dw_d = nn_floats(nw);
    float *dbias_d = nn_floats((size_t)cc->OC);
    circ_conv2d_backward(b.op, dinp, dw, dbias, b.r, b.inp, d);
    nn_conv2d_backward(dinp_d, dwd, dbias_d, scratch, b.r, b.inp, wd, d);
    circ_test_unexpand(dw_d, dwd, &cd, taps);
    snprintf(label, sizeof label, "circ_conv2d dinp vs dense k %d", cc->k);
    nn_expect_close(label, dinp, dinp_d, nx, 1e-4, 1e-4);
    snprintf(label, sizeof label, "circ_conv2d dw vs dense k %d", cc->k);
    nn_expect_close(label, dw, dw_d, nw, 2e-4, 1e-4);
    snprintf(label, sizeof label, "circ_conv2d dbias vs dense k %d", cc->k);
    nn_expect_close(label, dbias, dbias_d, (size_t)cc->OC, 1e-4, 1e-5);

    snprintf(label, sizeof label, "circ_conv2d dinp k %d", cc->k);
    nn_fd_check(label, b.inp, nx, dinp, conv_objective, &b, FD_EPS, FD_RTOL, 0);
    snprintf(label, sizeof label, "circ_conv2d dw k %d", cc->k);
    nn_fd_check(label, b.w, nw, dw, conv_objective, &b, FD_EPS, FD_RTOL, 0);
    snprintf(label, sizeof label, "circ_conv2d dbias k %d", cc->k);
    nn_fd_check(label, b.bias, (size_t)cc->OC, dbias, conv_objective, &b, FD_EPS, FD_RTOL, 0);

    circ_op_free(b.op);
    float *bufs[] = {b.inp, b.w, b.bias, b.out,  b.r, wd,   out_d,  scratch,
                     dinp,  dw,  dbias,  dinp_d, dwd, dw_d, dbias_d};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        dp_free(bufs[i]);
}

Test(circ_layers, conv2d_matches_dense_and_differences)
{
    /* B max_b C H W OC kh kw sh sw pt pl pb pr dh dw k */
    const struct conv_case cases[] = {
        {2, 2, 5, 7, 6, 6, 3, 2, 2, 1, 1, 1, 1, 0, 1, 1, 4}, /* padding, stride, odd channels */
        {1, 3, 6, 6, 5, 4, 3, 3, 1, 1, 2, 1, 2, 1, 2, 1, 3}, /* dilation, partial batch, k 3 */
        {2, 2, 4, 5, 5, 8, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 2}, /* 1x1 */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        conv_check(&cases[i], 40 + i);
    DP_ASSERT_NO_LEAKS();
}

/* ---- In the executor ---------------------------------------------------------- */

#define NET_B 4

/* (2, 6, 6) -> circ_conv2d 6, 3x3 pad 1, k 4 -> relu -> flatten -> circ_linear 5, k 8. */
static struct dp_model *circ_net_model(void)
{
    struct dp_errinfo ei = {0};
    struct dp_model *m = dp_model_new(2, 6, 6);
    cr_assert_not_null(m);
    struct dp_op_attrs a;
    memset(&a, 0, sizeof a);
    a.out_ch = 6, a.kh = a.kw = 3, a.sh = a.sw = 1, a.pt = a.pl = a.pb = a.pr = 1;
    a.dh = a.dw = 1, a.groups = 1, a.has_bias = 1, a.block = 4;
    const int in = DP_MODEL_INPUT;
    int x = dp_model_add_layer(m, "cc", DP_OP_CIRC_CONV2D, &in, 1, &a, &ei);
    x = dp_model_add_unary(m, "r", DP_OP_RELU, x, &ei);
    x = dp_model_add_unary(m, "fl", DP_OP_FLATTEN, x, &ei);
    memset(&a, 0, sizeof a);
    a.out_ch = 5, a.has_bias = 1, a.block = 8;
    x = dp_model_add_layer(m, "cl", DP_OP_CIRC_LINEAR, &x, 1, &a, &ei);
    cr_assert_geq(x, 0, "building: %s", ei.msg);
    cr_assert_eq(dp_model_finalize(m, &ei), DP_OK, "%s", ei.msg);
    nn_arch_init(m, 17);
    return m;
}

/* The same network by the dense kernels on the expanded weights. */
static void circ_net_dense(const struct dp_model *m, float *logits, const float *x, int n)
{
    const float *w1 = m->data + m->params[0].offset, *b1 = m->data + m->params[1].offset;
    const float *w2 = m->data + m->params[2].offset, *b2 = m->data + m->params[3].offset;
    struct circ_dims c1, c2;
    circ_dims_init(&c1, 6, 2, 4);
    circ_dims_init(&c2, 5, 6 * 36, 8);
    float *wd1 = nn_floats(6 * 2 * 9), *wd2 = nn_floats(5 * 6 * 36);
    circ_test_expand_taps(wd1, w1, &c1, 9);
    circ_expand(wd2, w2, &c2);
    struct nn_conv2d_dims d = {n, 2, 6, 6, 6, 6, 6, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1};
    float *h = nn_floats((size_t)n * 6 * 36);
    nn_conv2d_forward_ref(h, x, wd1, b1, &d);
    nn_relu_forward(h, h, (size_t)n * 6 * 36);
    nn_linear_forward_ref(logits, h, wd2, b2, n, 6 * 36, 5);
    dp_free(h);
    dp_free(wd1);
    dp_free(wd2);
}

static double circ_net_loss(struct nn_net *net, const float *x, const int32_t *y, int n)
{
    cr_assert_not_null(nn_net_forward(net, x, n, 1));
    return nn_net_loss(net, y, n, NULL);
}

Test(circ_layers, net_trains_circulant_layers)
{
    struct dp_model *m = circ_net_model();
    cr_assert_eq(m->params[0].ndim, 4, "circ_conv2d weight (taps, p, q, k)");
    cr_assert_eq(m->params[0].shape[0], 9);
    cr_expect_gt(nn_maxabs(m->data + m->params[2].offset, m->params[2].numel), 0.0f,
                 "nn_arch_init leaves circ_linear's weight zero");
    struct nn_net *net = NULL;
    struct dp_errinfo ei = {0};
    cr_assert_eq(nn_net_new(m, NET_B, &net, &ei), DP_OK, "%s", ei.msg);
    struct nn_test_rng rng = {77};
    float x[NET_B * 2 * 36], want[NET_B * 5];
    int32_t y[NET_B] = {0, 3, 1, 4};
    nn_fill_uniform(&rng, x, sizeof x / sizeof x[0], -1.0f, 1.0f);
    for (int n = NET_B; n >= 3; n--) { /* the full batch, then a partial one */
        const float *got = nn_net_forward(net, x, n, 0);
        cr_assert_not_null(got);
        circ_net_dense(m, want, x, n);
        nn_expect_close(n == NET_B ? "net forward, full batch" : "net forward, partial batch", got,
                        want, (size_t)n * 5, 1e-4, 1e-4);
    }

    /* Loss gradient against central differences on every parameter. */
    const int n = 3;
    nn_net_zero_grad(net);
    circ_net_loss(net, x, y, n);
    nn_net_backward(net, y, n);
    float *grad = nn_floats_copy(net->grad, m->n_floats);
    int checked = 0, bad = 0;
    for (size_t e = 0; e < m->n_floats; e++) {
        const float h = 1e-3f, v = m->data[e];
        m->data[e] = v + h;
        double lp = circ_net_loss(net, x, y, n);
        m->data[e] = v - h;
        double lm = circ_net_loss(net, x, y, n);
        m->data[e] = v;
        double num = (lp - lm) / (2.0 * h), ana = grad[e];
        if (fabs(num - ana) > 2e-3 + 3e-2 * fmax(fabs(num), fabs(ana))) {
            bad++;
            cr_log_error("param float %zu: analytic %.6g numeric %.6g", e, ana, num);
        }
        checked++;
    }
    cr_expect_eq(bad, 0, "%d of %d gradient entries disagree", bad, checked);
    dp_free(grad);
    nn_net_free(net);
    dp_model_free(m);
    DP_ASSERT_NO_LEAKS();
}

/* A net whose circulant state cannot be made says which layer. */
Test(circ_layers, net_reports_the_failing_layer)
{
    struct dp_model *m = circ_net_model();
    struct nn_net *net = NULL;
    struct dp_errinfo ei = {0};
    int failed = 0;
    for (long n_ok = 0; n_ok < 200 && !failed; n_ok++) {
        dp_alloc_fail_after(n_ok);
        enum dp_err err = nn_net_new_ex(m, NET_B, 0, &net, &ei);
        dp_alloc_fail_reset();
        if (err == DP_OK) {
            nn_net_free(net);
            net = NULL;
            break;
        }
        cr_expect_eq(err, DP_ENOMEM, "%s", ei.msg);
        if (strstr(ei.msg, "circulant") != NULL) {
            cr_expect(strstr(ei.msg, "layer 'cc'") != NULL || strstr(ei.msg, "layer 'cl'") != NULL,
                      "message names no layer: %s", ei.msg);
            failed = 1;
        }
    }
    cr_expect(failed, "no allocation failure reached a circulant layer's state");
    dp_model_free(m);
    DP_ASSERT_NO_LEAKS();
}
