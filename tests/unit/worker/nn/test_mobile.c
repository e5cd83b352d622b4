/*
 * The ops of the mobile networks (issue 17) in the engine (suite "mobile"):
 * Sigmoid, HardSigmoid, HardSwish, SiLU, broadcasting Mul/Sub/Div, Slice,
 * channel shuffle, constants, broadcasting Add and the mean over an axis
 * range.
 *
 * DESIGN: the kernels are checked against their formulas on chosen values
 * (forward), and the whole executor is checked by central differences of
 * the network loss over every trainable parameter of a graph that puts
 * each new op behind a convolution, so every op's input gradient reaches
 * a weight (as test_net.c does for the built-in ops). Inputs stay away
 * from the kinks of HardSigmoid (|alpha x + beta| in (0, 1)) and HardSwish
 * (|x| < 3) because weights are small.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "common/alloc.h"
#include "common/model.h"
#include "tests/unit/test_util.h"
#include "tests/unit/worker/nn/nn_test_util.h"
#include "worker/nn/act.h"
#include "worker/nn/bcast.h"
#include "worker/nn/net.h"
#include "worker/nn/shuffle.h"
#include "worker/nn/slice.h"

Test(mobile, activations_follow_their_formulas)
{
    const float x[5] = {-4.0f, -1.0f, 0.0f, 1.5f, 4.0f};
    float y[5];
    nn_sigmoid_forward(y, x, 5);
    for (int i = 0; i < 5; i++)
        cr_expect_float_eq(y[i], 1.0f / (1.0f + expf(-x[i])), 1e-6f);
    nn_hardsigmoid_forward(y, x, 5, 0.2f, 0.5f);
    const float hsg[5] = {0.0f, 0.3f, 0.5f, 0.8f, 1.0f};
    for (int i = 0; i < 5; i++)
        cr_expect_float_eq(y[i], hsg[i], 1e-6f, "hardsigmoid(%g) = %g", x[i], y[i]);
    nn_hardswish_forward(y, x, 5);
    const float hsw[5] = {0.0f, -1.0f / 3.0f, 0.0f, 1.5f * 0.75f, 4.0f};
    for (int i = 0; i < 5; i++)
        cr_expect_float_eq(y[i], hsw[i], 1e-6f, "hardswish(%g) = %g", x[i], y[i]);
    nn_silu_forward(y, x, 5);
    for (int i = 0; i < 5; i++)
        cr_expect_float_eq(y[i], x[i] / (1.0f + expf(-x[i])), 1e-6f);
}

/* A per-channel scale (C,1,1) times a map (C,H,W), and a scalar divisor. */
Test(mobile, broadcasting_reads_the_right_elements)
{
    float a[2 * 2 * 3], s[2] = {2.0f, -1.0f}, out[12], one[1] = {4.0f};
    for (int i = 0; i < 12; i++)
        a[i] = (float)i;
    struct nn_bcast_dims d = {1, {2, 2, 3}, {2, 2, 3}, {2, 1, 1}};
    nn_bcast_forward(out, a, s, &d, NN_BCAST_MUL);
    for (int i = 0; i < 12; i++)
        cr_expect_float_eq(out[i], a[i] * s[i / 6], 0.0f, "%d", i);
    struct nn_bcast_dims e = {1, {2, 2, 3}, {2, 2, 3}, {1, 1, 1}};
    nn_bcast_forward(out, a, one, &e, NN_BCAST_DIV);
    for (int i = 0; i < 12; i++)
        cr_expect_float_eq(out[i], a[i] / 4.0f, 0.0f, "%d", i);
    /* The scale's gradient sums over its channel's plane. */
    float ga[12] = {0}, gs[2] = {0}, g1[12];
    for (int i = 0; i < 12; i++)
        g1[i] = 1.0f;
    nn_bcast_backward(ga, gs, g1, a, s, &d, NN_BCAST_MUL);
    cr_expect_float_eq(gs[0], 0 + 1 + 2 + 3 + 4 + 5, 0.0f);
    cr_expect_float_eq(gs[1], 6 + 7 + 8 + 9 + 10 + 11, 0.0f);
    cr_expect_float_eq(ga[7], -1.0f, 0.0f);
}

/* ShuffleNet's rule: (g, C/g) transposed; and slicing channels. */
Test(mobile, shuffle_and_slice_move_whole_planes)
{
    float in[6 * 2], out[6 * 2], back[6 * 2] = {0};
    for (int i = 0; i < 12; i++)
        in[i] = (float)(i / 2); /* plane c holds c */
    nn_shuffle_forward(out, in, 1, 6, 2, 2);
    const float want[6] = {0, 3, 1, 4, 2, 5};
    for (int c = 0; c < 6; c++)
        cr_expect_float_eq(out[2 * c + 1], want[c], 0.0f, "channel %d", c);
    nn_shuffle_backward(back, out, 1, 6, 2, 2);
    for (int i = 0; i < 12; i++)
        cr_expect_float_eq(back[i], in[i], 0.0f, "%d", i);
    float sl[2 * 2];
    nn_slice_forward(sl, in, 1, 6, 2, 3, 5);
    cr_expect(sl[0] == 3.0f && sl[3] == 4.0f);
}

/*
 *   input (4,4,4) -> conv 8 -> silu -> s ; gap(s) -> hardsigmoid -> g
 *   mul(s, g) -> shuffle(2) -> slice [0,4) -> hardswish -> h
 *                           -> slice [4,8) -> sigmoid   -> q
 *   sub(h, q) / q -> mul by const (4,1,1) -> plus gap(q) (broadcast add)
 *   -> mean over H -> flatten -> linear 3
 */
static struct dp_model *mobile_model(void)
{
    struct dp_errinfo ei = {DP_OK, ""};
    struct dp_model *m = dp_model_new(4, 4, 4);
    cr_assert_not_null(m);
    struct dp_op_attrs a = {0};
    int c1 = dp_model_add_conv2d(m, "c1", DP_MODEL_INPUT, 8, 3, 1, 1, 1, 1, &ei);
    int s = dp_model_add_unary(m, "silu", DP_OP_SILU, c1, &ei);
    int gp = dp_model_add_unary(m, "gap", DP_OP_GAP, s, &ei);
    a.alpha = 0.2f, a.beta = 0.5f;
    int g = dp_model_add_layer(m, "hsig", DP_OP_HARDSIGMOID, &gp, 1, &a, &ei);
    int in2[2] = {s, g};
    int se = dp_model_add_layer(m, "se", DP_OP_MUL, in2, 2, NULL, &ei);
    memset(&a, 0, sizeof(a));
    a.groups = 2;
    int sh = dp_model_add_layer(m, "shuf", DP_OP_SHUFFLE, &se, 1, &a, &ei);
    memset(&a, 0, sizeof(a));
    a.axis = 1, a.start = 0, a.end = 4;
    int l0 = dp_model_add_layer(m, "sl0", DP_OP_SLICE, &sh, 1, &a, &ei);
    a.start = 4, a.end = 8;
    int l1 = dp_model_add_layer(m, "sl1", DP_OP_SLICE, &sh, 1, &a, &ei);
    int h = dp_model_add_unary(m, "hswish", DP_OP_HARDSWISH, l0, &ei);
    int q = dp_model_add_unary(m, "sig", DP_OP_SIGMOID, l1, &ei);
    in2[0] = h, in2[1] = q;
    int sb = dp_model_add_layer(m, "sub", DP_OP_SUB, in2, 2, NULL, &ei);
    in2[0] = sb;
    int dv = dp_model_add_layer(m, "div", DP_OP_DIV, in2, 2, NULL, &ei);
    memset(&a, 0, sizeof(a));
    a.to_c = 4, a.to_h = 1, a.to_w = 1;
    int k = dp_model_add_layer(m, "k", DP_OP_CONST, &dv, 1, &a, &ei);
    in2[0] = dv, in2[1] = k;
    int mk = dp_model_add_layer(m, "mk", DP_OP_MUL, in2, 2, NULL, &ei);
    memset(&a, 0, sizeof(a));
    a.axis = a.axis_end = 2;
    int gq = dp_model_add_unary(m, "gq", DP_OP_GAP, q, &ei);
    in2[0] = mk, in2[1] = gq;
    int ab = dp_model_add_layer(m, "ab", DP_OP_ADD_BCAST, in2, 2, NULL, &ei);
    int mn = dp_model_add_layer(m, "mean", DP_OP_MEAN, &ab, 1, &a, &ei);
    int fl = dp_model_add_unary(m, "flat", DP_OP_FLATTEN, mn, &ei);
    int fc = dp_model_add_linear(m, "fc", fl, 3, &ei);
    cr_assert(fc >= 0, "%s", ei.msg);
    cr_assert_eq(dp_model_finalize(m, &ei), DP_OK, "%s", ei.msg);
    cr_expect(m->layers[se].out_c == 8 && m->layers[se].out_h == 4 && m->layers[l1].out_c == 4);
    struct nn_test_rng rng = {2024};
    nn_fill_uniform(&rng, m->data, m->n_floats, -0.4f, 0.4f);
    float *kv = dp_param_data(m, dp_model_param_find(m, "k.value"));
    for (int c = 0; c < 4; c++)
        kv[c] = 0.5f + 0.25f * (float)c;
    return m;
}

static void mobile_check(int use_dnnl)
{
    struct dp_model *m = mobile_model();
    struct nn_net *net = NULL;
    struct dp_errinfo ei = {DP_OK, ""};
    const int B = 3;
    cr_assert_eq(nn_net_new_ex(m, B, use_dnnl, &net, &ei), DP_OK, "%s", ei.msg);
    float x[3 * 4 * 4 * 4];
    int32_t y[3] = {0, 2, 1};
    struct nn_test_rng rng = {99};
    nn_fill_uniform(&rng, x, sizeof(x) / sizeof(x[0]), -1.0f, 1.0f);
    nn_net_zero_grad(net);
    cr_assert_not_null(nn_net_forward(net, x, B, 1));
    nn_net_loss(net, y, B, NULL);
    nn_net_backward(net, y, B);
    double num2 = 0.0, diff2 = 0.0;
    const float eps = 1e-3f;
    for (int p = 0; p < m->n_params; p++) {
        const struct dp_param *pp = &m->params[p];
        if (!pp->trainable)
            continue;
        for (size_t j = 0; j < pp->numel; j++) {
            const size_t i = pp->offset + j;
            const float v = m->data[i];
            m->data[i] = v + eps;
            nn_net_forward(net, x, B, 1);
            double lp = nn_net_loss(net, y, B, NULL);
            m->data[i] = v - eps;
            nn_net_forward(net, x, B, 1);
            double lm = nn_net_loss(net, y, B, NULL);
            m->data[i] = v;
            double g = (lp - lm) / (2.0 * eps);
            num2 += g * g;
            diff2 += (g - net->grad[i]) * (g - net->grad[i]);
        }
    }
    cr_expect(num2 > 0.0);
    cr_expect(sqrt(diff2 / num2) < 2e-2, "relative gradient error %g (dnnl %d)", sqrt(diff2 / num2),
              use_dnnl);
    /* The first convolution's gradient passes through every new op. */
    const struct dp_param *w1 = dp_model_param_find(m, "c1.weight");
    double g1 = 0.0;
    for (size_t j = 0; j < w1->numel; j++)
        g1 += fabs(net->grad[w1->offset + j]);
    cr_expect(g1 > 0.0);
    nn_net_free(net);
    dp_model_free(m);
}

Test(mobile, gradients_match_finite_differences)
{
    mobile_check(1);
    mobile_check(0);
    DP_ASSERT_NO_LEAKS();
}
