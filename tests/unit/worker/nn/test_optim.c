/*
 * The optimizers (worker/nn/optim.c): SGD with momentum and weight decay,
 * Nesterov and Adam against their published update rules, gradient hooks
 * and masks, configuration errors.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "common/alloc.h"
#include "common/model.h"
#include "tests/unit/test_util.h"
#include "worker/nn/arch.h"
#include "worker/nn/net.h"
#include "worker/nn/optim.h"

static struct dp_model *one_linear(void)
{
    struct dp_model *m = dp_model_new(1, 1, 2);
    cr_assert_geq(dp_model_add_unary(m, "f", DP_OP_FLATTEN, DP_MODEL_INPUT, NULL), 0);
    cr_assert_geq(dp_model_add_linear(m, "fc", 0, 2, NULL), 0);
    cr_assert_eq(dp_model_finalize(m, NULL), DP_OK);
    return m; /* fc.weight (2x2) then fc.bias (2) */
}

Test(optim, sgd_momentum_weight_decay_matches_pytorch_rule)
{
    struct dp_model *m = one_linear();
    for (int i = 0; i < 6; i++)
        m->data[i] = 1.0f + (float)i;
    struct nn_optim_cfg c = {NN_OPTIM_SGD, 0.9f, 0, 0.1f, 0, 0, 0};
    struct nn_optim *o = NULL;
    cr_assert_eq(nn_optim_new(m, &c, &o, NULL), DP_OK);
    float g[6];
    /* PyTorch: d = g + wd*w; buf = d (first step) then 0.9*buf + d; w -= lr*buf */
    double w = 1.0, buf = 0.0;
    for (int step = 0; step < 3; step++) {
        for (int i = 0; i < 6; i++)
            g[i] = 0.5f;
        nn_optim_step(o, g, 0.1f, NULL);
        double d = 0.5 + 0.1 * w;
        buf = step == 0 ? d : 0.9 * buf + d;
        w -= 0.1 * buf;
    }
    cr_assert_float_eq(m->data[0], (float)w, 1e-6f);
    nn_optim_free(o);
    dp_model_free(m);
    DP_ASSERT_NO_LEAKS();
}

Test(optim, nesterov_and_adam_follow_their_rules)
{
    struct dp_model *m = one_linear();
    m->data[0] = 2.0f;
    struct nn_optim_cfg c = {NN_OPTIM_SGD, 0.5f, 1, 0.0f, 0, 0, 0};
    struct nn_optim *o = NULL;
    cr_assert_eq(nn_optim_new(m, &c, &o, NULL), DP_OK);
    float g[6] = {1, 0, 0, 0, 0, 0};
    nn_optim_step(o, g, 1.0f, NULL); /* buf = 1, d = 1 + 0.5*1 = 1.5 */
    cr_assert_float_eq(m->data[0], 0.5f, 1e-6f);
    nn_optim_free(o);

    m->data[0] = 2.0f;
    struct nn_optim_cfg a = {NN_OPTIM_ADAM, 0, 0, 0.0f, 0.9f, 0.999f, 1e-8f};
    cr_assert_eq(nn_optim_new(m, &a, &o, NULL), DP_OK);
    float g2[6] = {0.3f, 0, 0, 0, 0, 0};
    nn_optim_step(o, g2, 0.01f, NULL); /* first Adam step moves by lr * sign(g) */
    cr_assert_float_eq(m->data[0], 2.0f - 0.01f, 1e-6f);
    nn_optim_free(o);
    dp_model_free(m);
    DP_ASSERT_NO_LEAKS();
}

static void add_one_hook(void *ud, const struct dp_model *m, float *grad)
{
    (void)m;
    int *calls = ud;
    (*calls)++;
    grad[1] += 1.0f;
}

Test(optim, hooks_add_gradient_and_mask_keeps_zeros)
{
    struct dp_model *m = one_linear();
    for (int i = 0; i < 6; i++)
        m->data[i] = 1.0f;
    struct nn_optim_cfg c = {NN_OPTIM_SGD, 0.9f, 0, 5e-4f, 0, 0, 0};
    struct nn_optim *o = NULL;
    cr_assert_eq(nn_optim_new(m, &c, &o, NULL), DP_OK);
    float mask[6] = {0, 1, 1, 0, 1, 1};
    int calls = 0;
    struct nn_optim_hooks h = {add_one_hook, &calls, mask, NULL};
    for (int step = 0; step < 5; step++) {
        float g[6] = {1, 0, 1, 1, 1, 1};
        nn_optim_step(o, g, 0.1f, &h);
    }
    cr_assert_eq(calls, 5);
    cr_assert_eq(m->data[0], 0.0f);
    cr_assert_eq(m->data[3], 0.0f);
    cr_assert_lt(m->data[1], 1.0f, "the hook's extra gradient moved weight 1");
    nn_optim_free(o);
    dp_model_free(m);
    DP_ASSERT_NO_LEAKS();
}

Test(optim, rejects_bad_configuration)
{
    struct dp_model *m = one_linear();
    struct nn_optim *o = NULL;
    struct dp_errinfo ei = {0};
    struct nn_optim_cfg c = {NN_OPTIM_SGD, 1.5f, 0, 0, 0, 0, 0};
    cr_assert_eq(nn_optim_new(m, &c, &o, &ei), DP_EINVAL);
    cr_assert(strstr(ei.msg, "momentum") != NULL);
    struct nn_optim_cfg n = {NN_OPTIM_SGD, 0.0f, 1, 0, 0, 0, 0};
    cr_assert_eq(nn_optim_new(m, &n, &o, &ei), DP_EINVAL);
    cr_assert(strstr(ei.msg, "Nesterov") != NULL);
    dp_model_free(m);
    DP_ASSERT_NO_LEAKS();
}
