/*
 * The executor (worker/nn/net.c).
 *
 * The whole-network gradient test runs a small graph with every op kind
 * (conv with groups, BN in training mode, ReLU/ReLU6, max and average
 * pooling, residual Add with fan-out, global pooling, flatten, linear)
 * and compares the backward pass with central differences of the loss.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <omp.h>
#include <string.h>

#include "common/alloc.h"
#include "common/model.h"
#include "tests/unit/test_util.h"
#include "tests/unit/worker/nn/nn_test_util.h"
#include "worker/nn/arch.h"
#include "worker/nn/data.h"
#include "worker/nn/net.h"
#include "worker/nn/optim.h"
#include "worker/nn/rng.h"

static struct dp_model *tiny_model(void)
{
    struct dp_errinfo ei = {0};
    struct dp_model *m = dp_model_new(2, 8, 8);
    cr_assert_not_null(m);
    int x = dp_model_add_conv2d(m, "c1", DP_MODEL_INPUT, 4, 3, 1, 1, 1, 1, &ei);
    x = dp_model_add_bn2d(m, "bn1", x, &ei);
    x = dp_model_add_unary(m, "r1", DP_OP_RELU, x, &ei);
    int y = dp_model_add_conv2d(m, "c2", x, 4, 3, 1, 1, 2, 0, &ei);
    y = dp_model_add_bn2d(m, "bn2", y, &ei);
    y = dp_model_add_unary(m, "r2", DP_OP_RELU6, y, &ei);
    int z = dp_model_add_add(m, "add", y, x, &ei);
    z = dp_model_add_pool(m, "mp", DP_OP_MAXPOOL, z, 2, 2, 0, &ei);
    z = dp_model_add_conv2d(m, "dw", z, 4, 3, 1, 1, 4, 1, &ei);
    z = dp_model_add_pool(m, "ap", DP_OP_AVGPOOL, z, 2, 2, 0, &ei);
    z = dp_model_add_unary(m, "gap", DP_OP_GAP, z, &ei);
    z = dp_model_add_unary(m, "fl", DP_OP_FLATTEN, z, &ei);
    z = dp_model_add_linear(m, "fc", z, 3, &ei);
    cr_assert_geq(z, 0, "building the tiny model: %s", ei.msg);
    cr_assert_eq(dp_model_finalize(m, &ei), DP_OK, "%s", ei.msg);
    nn_arch_init(m, 3);
    /* Non-trivial BN affine parameters so their gradients are exercised. */
    struct nn_rng r;
    nn_rng_seed(&r, 9);
    for (int i = 0; i < m->n_params; i++) {
        struct dp_param *p = &m->params[i];
        if (m->layers[p->layer].op == DP_OP_BN2D && p->trainable)
            for (size_t j = 0; j < p->numel; j++)
                m->data[p->offset + j] += (float)(0.3 * (nn_rng_uniform(&r) - 0.5));
    }
    return m;
}

static double net_loss_at(struct nn_net *net, const float *x, const int32_t *y, int n)
{
    nn_net_forward(net, x, n, 1);
    return nn_net_loss(net, y, n, NULL);
}

Test(net, whole_graph_gradient_matches_finite_differences)
{
    struct dp_model *m = tiny_model();
    struct nn_net *net = NULL;
    struct dp_errinfo ei = {0};
    cr_assert_eq(nn_net_new(m, 3, &net, &ei), DP_OK, "%s", ei.msg);
    const int n = 3;
    float x[3 * 2 * 8 * 8];
    int32_t y[3] = {0, 2, 1};
    struct nn_rng r;
    nn_rng_seed(&r, 5);
    for (size_t i = 0; i < sizeof(x) / sizeof(x[0]); i++)
        x[i] = (float)(2.0 * nn_rng_uniform(&r) - 1.0);

    nn_net_zero_grad(net);
    net_loss_at(net, x, y, n);
    nn_net_backward(net, y, n);
    float *grad = dp_malloc(m->n_floats * sizeof(float));
    memcpy(grad, net->grad, m->n_floats * sizeof(float));
    /* BN running statistics move with every training forward; save and
     * restore them so each probe sees the same state. */
    float *saved = dp_malloc(m->n_floats * sizeof(float));
    memcpy(saved, m->data, m->n_floats * sizeof(float));

    int checked = 0, bad = 0;
    for (int pi = 0; pi < m->n_params; pi++) {
        const struct dp_param *p = &m->params[pi];
        if (!p->trainable)
            continue;
        for (size_t j = 0; j < p->numel; j += 1 + p->numel / 12) {
            const size_t k = p->offset + j;
            const float h = 1e-3f;
            memcpy(m->data, saved, m->n_floats * sizeof(float));
            m->data[k] = saved[k] + h;
            double lp = net_loss_at(net, x, y, n);
            memcpy(m->data, saved, m->n_floats * sizeof(float));
            m->data[k] = saved[k] - h;
            double lm = net_loss_at(net, x, y, n);
            double num = (lp - lm) / (2.0 * h);
            double ana = grad[k];
            double tol = 2e-3 + 3e-2 * fmax(fabs(num), fabs(ana));
            if (fabs(num - ana) > tol) {
                bad++;
                cr_log_error("%s[%zu]: analytic %.6g numeric %.6g", p->name, j, ana, num);
            }
            checked++;
        }
    }
    memcpy(m->data, saved, m->n_floats * sizeof(float));
    cr_assert_gt(checked, 40);
    cr_assert_eq(bad, 0, "%d of %d gradient entries disagree", bad, checked);
    dp_free(grad);
    dp_free(saved);
    nn_net_free(net);
    dp_model_free(m);
    DP_ASSERT_NO_LEAKS();
}

/* A residual block of 16-channel convolutions, which the executor sends to
 * oneDNN and keeps in the blocked layout (with BatchNorm, ReLU, Add and
 * global pooling working on blocked tensors), trains exactly like the
 * im2col path on plain tensors, also for a partial batch, which builds a
 * second set of primitives. */
Test(net, onednn_convolutions_train_like_the_im2col_kernels)
{
    struct dp_errinfo ei = {0};
    struct dp_model *m = dp_model_new(16, 6, 6);
    int x = dp_model_add_conv2d(m, "c1", DP_MODEL_INPUT, 16, 3, 1, 1, 1, 1, &ei);
    x = dp_model_add_bn2d(m, "bn1", x, &ei);
    x = dp_model_add_unary(m, "r1", DP_OP_RELU, x, &ei);
    int y = dp_model_add_conv2d(m, "c2", x, 16, 3, 1, 1, 1, 0, &ei);
    y = dp_model_add_add(m, "add", y, x, &ei);
    y = dp_model_add_conv2d(m, "c3", y, 32, 3, 2, 1, 1, 1, &ei);
    y = dp_model_add_bn2d(m, "bn3", y, &ei);
    y = dp_model_add_unary(m, "r3", DP_OP_RELU6, y, &ei);
    y = dp_model_add_unary(m, "gap", DP_OP_GAP, y, &ei);
    y = dp_model_add_unary(m, "fl", DP_OP_FLATTEN, y, &ei);
    y = dp_model_add_linear(m, "fc", y, 3, &ei);
    cr_assert_geq(y, 0, "%s", ei.msg);
    cr_assert_eq(dp_model_finalize(m, &ei), DP_OK, "%s", ei.msg);
    nn_arch_init(m, 4);
    struct nn_net *fast = NULL, *slow = NULL;
    cr_assert_eq(nn_net_new_ex(m, 4, 1, &fast, &ei), DP_OK, "%s", ei.msg);
    cr_assert_eq(nn_net_new_ex(m, 4, 0, &slow, &ei), DP_OK, "%s", ei.msg);
    cr_assert_not_null(fast->dnnl, "oneDNN is available on this machine");
    int blocked = 0;
    for (int i = 0; i < m->n_layers; i++) {
        blocked += nn_net_layout(fast, i) == NN_LAYOUT_NCHW16C;
        cr_assert_eq(nn_net_layout(slow, i), NN_LAYOUT_NCHW);
    }
    cr_assert_eq(blocked, 8, "c1 bn1 r1 c2 add c3 bn3 r3 stay blocked (%d)", blocked);
    float xs[4 * 16 * 6 * 6];
    int32_t ys[4] = {0, 1, 2, 1};
    for (size_t i = 0; i < sizeof(xs) / sizeof(xs[0]); i++)
        xs[i] = (float)sin(0.37 * (double)i);
    for (int n = 4; n >= 3; n--) {
        nn_net_zero_grad(fast);
        nn_net_zero_grad(slow);
        nn_net_forward(fast, xs, n, 1);
        nn_net_forward(slow, xs, n, 1);
        float lf = nn_net_loss(fast, ys, n, NULL), ls = nn_net_loss(slow, ys, n, NULL);
        cr_assert_float_eq(lf, ls, 1e-5f, "batch %d: loss %g vs %g", n, lf, ls);
        nn_net_backward(fast, ys, n);
        nn_net_backward(slow, ys, n);
        for (size_t i = 0; i < m->n_floats; i++)
            cr_assert(fabsf(fast->grad[i] - slow->grad[i]) <= 1e-4f + 1e-3f * fabsf(slow->grad[i]),
                      "batch %d grad[%zu]: %g vs %g", n, i, fast->grad[i], slow->grad[i]);
    }
    nn_net_free(fast);
    nn_net_free(slow);
    dp_model_free(m);
    DP_ASSERT_NO_LEAKS();
}

Test(net, rejects_a_model_without_logits)
{
    struct dp_errinfo ei = {0};
    struct dp_model *m = dp_model_new(1, 4, 4);
    int x = dp_model_add_conv2d(m, "c", DP_MODEL_INPUT, 2, 3, 1, 1, 1, 1, &ei);
    cr_assert_geq(x, 0);
    cr_assert_eq(dp_model_finalize(m, &ei), DP_OK);
    struct nn_net *net = NULL;
    cr_assert_eq(nn_net_new(m, 4, &net, &ei), DP_ESHAPE);
    cr_assert(strstr(ei.msg, "'c'") != NULL, "message names the layer: %s", ei.msg);
    cr_assert_null(net);
    dp_model_free(m);
    DP_ASSERT_NO_LEAKS();
}

Test(net, eval_forward_is_deterministic_and_batch_independent)
{
    struct dp_model *m = tiny_model();
    struct nn_net *net = NULL;
    cr_assert_eq(nn_net_new(m, 4, &net, NULL), DP_OK);
    float x[4 * 2 * 8 * 8];
    for (size_t i = 0; i < sizeof(x) / sizeof(x[0]); i++)
        x[i] = (float)sin((double)i);
    float full[4 * 3];
    memcpy(full, nn_net_forward(net, x, 4, 0), sizeof(full));
    /* The second sample alone gives the same logits in eval mode. */
    const float *one = nn_net_forward(net, x + 2 * 8 * 8, 1, 0);
    for (int k = 0; k < 3; k++)
        cr_assert_float_eq(one[k], full[3 + k], 1e-5f);
    nn_net_free(net);
    dp_model_free(m);
    DP_ASSERT_NO_LEAKS();
}

Test(net, allocation_failures_are_clean)
{
    struct dp_model *m = tiny_model();
    int failures = 0;
    for (long k = 0; k < 200; k++) {
        struct nn_net *net = NULL;
        struct nn_optim *o = NULL;
        struct nn_optim_cfg c = {NN_OPTIM_ADAM, 0, 0, 0, 0.9f, 0.999f, 1e-8f};
        struct dp_errinfo ei = {0};
        dp_alloc_fail_after(k);
        enum dp_err e1 = nn_net_new_ex(m, 4, 0, &net, &ei);
        enum dp_err e2 = e1 == DP_OK ? nn_optim_new(m, &c, &o, &ei) : DP_OK;
        dp_alloc_fail_reset();
        nn_optim_free(o);
        nn_net_free(net);
        if (e1 == DP_OK && e2 == DP_OK)
            break;
        cr_assert(e1 == DP_ENOMEM || e2 == DP_ENOMEM, "allocation %ld: %s", k, ei.msg);
        cr_assert(e1 != DP_OK || net != NULL);
        failures++;
    }
    cr_assert_gt(failures, 5, "the loop reached every allocation");
    dp_model_free(m);
    DP_ASSERT_NO_LEAKS();
}

/* ---- The layers added for ONNX import, through the executor ---------------- */

/*
 * The executor runs the layers added for ONNX import (clip, reshape,
 * softmax over an inner axis, concat on channels) forward and backward
 * like the built-in ones (suite "net_onnx"): the gradient the executor
 * accumulates for every parameter matches central differences of the
 * network's loss, through both the oneDNN and the im2col convolution paths.
 */
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
    struct nn_test_rng rng = {777};
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
    struct nn_test_rng rng = {4321};
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

Test(net, gradients_match_finite_differences)
{
    net_onnx_check(1);
    net_onnx_check(0);
    DP_ASSERT_NO_LEAKS();
}

/* A reshape must keep the per-sample size; finalize names both shapes. */
Test(net, reshape_rejects_a_size_change)
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

/* ---- Every op has an engine row -------------------------------------------- */

/*
 * The engine's op table (worker/nn/net.c) against the common one
 * (common/op.h): every op the IR can hold has forward and backward
 * functions, so a new op cannot reach a training run before the engine
 * learns it (nn_net_new refuses such a model, naming the op).
 */
Test(net, every_op_has_an_engine_row)
{
    for (int i = 0; i < DP_OP__COUNT; i++)
        cr_expect(nn_net_op_supported((enum dp_op)i), "op %s has no row in net.c's op table",
                  dp_op_name((enum dp_op)i));
    cr_assert_not(nn_net_op_supported(DP_OP__COUNT));
}

/* ---- The OpenMP team is fixed at construction ------------------------------ */

/*
 * The executor's OpenMP team size: fixed when the net is built.
 *
 * The convolution scratch is sized for the team in force at nn_net_new, so
 * a caller that raises the thread count afterwards must not make the
 * kernels use more slices than exist (under ASan: a heap overflow), and a
 * team that OpenMP grants smaller than asked must not add stale
 * accumulator slices into the weight gradient. Both nets here run the
 * im2col kernels (use_dnnl = 0), which own the per-thread scratch.
 */
#define TH_BATCH 8

/* LeNet-like: two im2col convolutions (1->6->8 channels) and a classifier. */
static struct dp_model *th_model(void)
{
    struct dp_errinfo ei = {0};
    struct dp_model *m = dp_model_new(1, 12, 12);
    cr_assert_not_null(m);
    int x = dp_model_add_conv2d(m, "c1", DP_MODEL_INPUT, 6, 3, 1, 1, 1, 1, &ei);
    x = dp_model_add_unary(m, "r1", DP_OP_RELU, x, &ei);
    x = dp_model_add_pool(m, "p1", DP_OP_MAXPOOL, x, 2, 2, 0, &ei);
    x = dp_model_add_conv2d(m, "c2", x, 8, 3, 1, 1, 1, 1, &ei);
    x = dp_model_add_unary(m, "fl", DP_OP_FLATTEN, x, &ei);
    x = dp_model_add_linear(m, "fc", x, 4, &ei);
    cr_assert_geq(x, 0, "%s", ei.msg);
    cr_assert_eq(dp_model_finalize(m, &ei), DP_OK, "%s", ei.msg);
    nn_arch_init(m, 5);
    return m;
}

static void th_inputs(float *x, int32_t *y)
{
    for (int i = 0; i < TH_BATCH * 144; i++)
        x[i] = (float)sin(0.21 * (double)i);
    for (int b = 0; b < TH_BATCH; b++)
        y[b] = b % 4;
}

/* One zero_grad, training forward, loss and backward; returns a copy of the
 * gradient block (dp_free it). */
static float *th_step(struct nn_net *net, const float *x, const int32_t *y)
{
    nn_net_zero_grad(net);
    cr_assert_not_null(nn_net_forward(net, x, TH_BATCH, 1));
    nn_net_loss(net, y, TH_BATCH, NULL);
    nn_net_backward(net, y, TH_BATCH);
    float *g = dp_malloc(net->m->n_floats * sizeof(float));
    cr_assert_not_null(g);
    memcpy(g, net->grad, net->m->n_floats * sizeof(float));
    return g;
}

Test(net, a_larger_team_after_construction_does_not_change_the_net)
{
    static float x[TH_BATCH * 144];
    int32_t y[TH_BATCH];
    th_inputs(x, y);
    struct dp_errinfo ei = {0};
    struct dp_model *m = th_model();
    struct nn_net *net = NULL;
    omp_set_num_threads(1);
    cr_assert_eq(nn_net_new_ex(m, TH_BATCH, 0, &net, &ei), DP_OK, "%s", ei.msg);
    cr_assert_eq(net->n_threads, 1);
    float *g1 = th_step(net, x, y);
    /* The scratch holds one thread's slice; four threads would write past it. */
    omp_set_num_threads(4);
    float *g4 = th_step(net, x, y);
    cr_assert_eq(omp_get_max_threads(), 4, "the caller's team size is restored");
    for (size_t i = 0; i < m->n_floats; i++)
        cr_assert(g1[i] == g4[i], "grad[%zu]: %g with the net's 1 thread, %g after raising it", i,
                  (double)g1[i], (double)g4[i]);
    dp_free(g1);
    dp_free(g4);
    nn_net_free(net);
    dp_model_free(m);
    DP_ASSERT_NO_LEAKS();
}

Test(net, a_smaller_granted_team_reduces_only_its_own_slices)
{
    static float x[TH_BATCH * 144];
    int32_t y[TH_BATCH];
    th_inputs(x, y);
    struct dp_errinfo ei = {0};
    struct dp_model *m = th_model();
    struct nn_net *net = NULL;
    omp_set_num_threads(2);
    cr_assert_eq(nn_net_new_ex(m, TH_BATCH, 0, &net, &ei), DP_OK, "%s", ei.msg);
    cr_assert_eq(net->n_threads, 2);
    /* A step on two threads leaves thread 1's accumulators in the scratch. */
    float *g2 = th_step(net, x, y);
    /* No active parallel regions: every region, asked for 2, gets 1 thread. */
    const int levels = omp_get_max_active_levels();
    omp_set_max_active_levels(0);
    float *g1 = th_step(net, x, y);
    omp_set_max_active_levels(levels);
    for (size_t i = 0; i < m->n_floats; i++)
        cr_assert(fabsf(g1[i] - g2[i]) <= 1e-5f + 1e-4f * fabsf(g2[i]),
                  "grad[%zu]: %g on a granted team of 1, %g on 2", i, (double)g1[i], (double)g2[i]);
    dp_free(g1);
    dp_free(g2);
    nn_net_free(net);
    dp_model_free(m);
    DP_ASSERT_NO_LEAKS();
}
