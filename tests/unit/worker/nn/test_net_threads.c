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
#include <criterion/criterion.h>
#include <math.h>
#include <omp.h>
#include <string.h>

#include "common/alloc.h"
#include "common/model.h"
#include "tests/unit/test_util.h"
#include "worker/nn/arch.h"
#include "worker/nn/net.h"

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

Test(net_threads, a_larger_team_after_construction_does_not_change_the_net)
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

Test(net_threads, a_smaller_granted_team_reduces_only_its_own_slices)
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
