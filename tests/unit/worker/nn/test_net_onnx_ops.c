/*
 * The executor runs the layers added for ONNX import (clip, reshape,
 * softmax over an inner axis, concat on channels) forward and backward
 * like the built-in ones (suite "net_onnx"): the gradient the executor
 * accumulates for every parameter matches central differences of the
 * network's loss, through both the oneDNN and the im2col convolution paths.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "common/alloc.h"
#include "common/model.h"
#include "tests/unit/test_util.h"
#include "tests/unit/worker/nn/nn_test_util.h"
#include "worker/nn/net.h"

/*
 *   input (2,4,4) -> conv 4 -> clip [-0.5, 0.7] -> reshape (8,2,4) -> softmax(W)
 *   input         -> conv 2 -> reshape (4,2,4)
 *   concat(C) (12,2,4) -> flatten -> linear 3
 */
static struct dp_model *net_onnx_model(void)
{
    struct dp_errinfo ei = {DP_OK, ""};
    struct dp_model *m = dp_model_new(2, 4, 4);
    cr_assert_not_null(m);
    int c1 = dp_model_add_conv2d(m, "c1", DP_MODEL_INPUT, 4, 3, 1, 1, 1, 1, &ei);
    struct dp_op_attrs a = {0};
    a.lo = -0.5f;
    a.hi = 0.7f;
    int cl = dp_model_add_layer(m, "clip", DP_OP_CLIP, &c1, 1, &a, &ei);
    memset(&a, 0, sizeof(a));
    a.to_c = 8;
    a.to_h = 2;
    a.to_w = 4;
    int r1 = dp_model_add_layer(m, "r1", DP_OP_RESHAPE, &cl, 1, &a, &ei);
    memset(&a, 0, sizeof(a));
    a.axis = a.axis_end = 3;
    int sm = dp_model_add_layer(m, "sm", DP_OP_SOFTMAX, &r1, 1, &a, &ei);
    int c2 = dp_model_add_conv2d(m, "c2", DP_MODEL_INPUT, 2, 3, 1, 1, 1, 1, &ei);
    memset(&a, 0, sizeof(a));
    a.to_c = 4;
    a.to_h = 2;
    a.to_w = 4;
    int r2 = dp_model_add_layer(m, "r2", DP_OP_RESHAPE, &c2, 1, &a, &ei);
    memset(&a, 0, sizeof(a));
    a.axis = 1;
    int in[2] = {sm, r2};
    int cc = dp_model_add_layer(m, "cat", DP_OP_CONCAT, in, 2, &a, &ei);
    int fl = dp_model_add_unary(m, "flat", DP_OP_FLATTEN, cc, &ei);
    int fc = dp_model_add_linear(m, "fc", fl, 3, &ei);
    cr_assert(fc >= 0, "%s", ei.msg);
    cr_assert_eq(dp_model_finalize(m, &ei), DP_OK, "%s", ei.msg);
    cr_expect(m->layers[cc].out_c == 12 && m->layers[cc].out_h == 2 && m->layers[cc].out_w == 4);
    struct nn_rng rng = {777};
    nn_fill_uniform(&rng, m->data, m->n_floats, -0.4f, 0.4f);
    return m;
}

static void net_onnx_check(int use_dnnl)
{
    struct dp_model *m = net_onnx_model();
    struct nn_net *net = NULL;
    struct dp_errinfo ei = {DP_OK, ""};
    const int B = 3;
    cr_assert_eq(nn_net_new_ex(m, B, use_dnnl, &net, &ei), DP_OK, "%s", ei.msg);
    float x[3 * 2 * 4 * 4];
    int32_t y[3] = {0, 2, 1};
    struct nn_rng rng = {4321};
    nn_fill_uniform(&rng, x, sizeof(x) / sizeof(x[0]), -1.0f, 1.0f);
    nn_net_zero_grad(net);
    cr_assert_not_null(nn_net_forward(net, x, B, 1));
    nn_net_loss(net, y, B, NULL);
    nn_net_backward(net, y, B);
    double num2 = 0.0, diff2 = 0.0;
    const float eps = 1e-3f;
    for (size_t i = 0; i < m->n_floats; i++) {
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
    cr_expect(num2 > 0.0);
    cr_expect(sqrt(diff2 / num2) < 2e-2, "relative gradient error %g (dnnl %d)", sqrt(diff2 / num2),
              use_dnnl);
    nn_net_free(net);
    dp_model_free(m);
}

Test(net_onnx, gradients_match_finite_differences)
{
    net_onnx_check(1);
    net_onnx_check(0);
    DP_ASSERT_NO_LEAKS();
}

/* A reshape must keep the per-sample size; finalize names both shapes. */
Test(net_onnx, reshape_rejects_a_size_change)
{
    struct dp_errinfo ei = {DP_OK, ""};
    struct dp_model *m = dp_model_new(2, 4, 4);
    struct dp_op_attrs a = {0};
    a.to_c = 3;
    a.to_h = 3;
    a.to_w = 3;
    int in = DP_MODEL_INPUT;
    cr_assert(dp_model_add_layer(m, "r", DP_OP_RESHAPE, &in, 1, &a, &ei) >= 0);
    cr_expect_eq(dp_model_finalize(m, &ei), DP_ESHAPE);
    cr_expect(strstr(ei.msg, "cannot reshape 2x4x4 to 3x3x3") != NULL, "%s", ei.msg);
    dp_model_free(m);
    DP_ASSERT_NO_LEAKS();
}
