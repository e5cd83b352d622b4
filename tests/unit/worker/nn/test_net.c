/*
 * The executor, optimizers, schedules and built-in architectures.
 *
 * The whole-network gradient test runs a small graph with every op kind
 * (conv with groups, BN in training mode, ReLU/ReLU6, max and average
 * pooling, residual Add with fan-out, global pooling, flatten, linear)
 * and compares the backward pass with central differences of the loss.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "common/alloc.h"
#include "common/model.h"
#include "tests/unit/test_util.h"
#include "worker/nn/arch.h"
#include "worker/nn/data.h"
#include "worker/nn/net.h"
#include "worker/nn/optim.h"
#include "worker/nn/rng.h"
#include "worker/nn/sched.h"
#include "worker/nn/train.h"

/* A graph exercising every op and a fan-out (x feeds both branches). */
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

/* ---- Optimizers ------------------------------------------------------------ */

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

/* ---- Schedules ------------------------------------------------------------- */

Test(sched, cosine_step_and_warmup_values)
{
    struct nn_sched s = {NN_SCHED_COSINE, 0.1f, 0.1f, 2, 4, 0.0f, 0, 0.1f};
    cr_assert_float_eq(nn_sched_lr(&s, 0, 0), 0.1f, 1e-7f);
    cr_assert_float_eq(nn_sched_lr(&s, 2, 0), 0.05f, 1e-7f);
    cr_assert_float_eq(nn_sched_lr(&s, 1, 0), (float)(0.05 * (1 + cos(3.14159265358979323846 / 4))), 1e-7f);
    s.kind = NN_SCHED_STEP;
    cr_assert_float_eq(nn_sched_lr(&s, 1, 0), 0.1f, 1e-7f);
    cr_assert_float_eq(nn_sched_lr(&s, 2, 0), 0.01f, 1e-7f);
    cr_assert_float_eq(nn_sched_lr(&s, 5, 0), 0.001f, 1e-8f);
    s.kind = NN_SCHED_CONST;
    s.warmup_epochs = 2;
    cr_assert_float_eq(nn_sched_lr(&s, 0, 0), 0.01f, 1e-7f);
    cr_assert_float_eq(nn_sched_lr(&s, 1, 0), 0.055f, 1e-7f);
    cr_assert_float_eq(nn_sched_lr(&s, 2, 0), 0.1f, 1e-7f);
    struct dp_errinfo ei = {0};
    enum nn_sched_kind k;
    cr_assert_eq(nn_sched_kind_parse("linear", &k, &ei), DP_EINVAL);
    cr_assert(strstr(ei.msg, "'linear'") != NULL);
    DP_ASSERT_NO_LEAKS();
}

/* ---- Architectures --------------------------------------------------------- */

struct arch_case {
    const char *name;
    int c, h, w;
    size_t params; /* trainable parameters, as PyTorch counts them */
};

Test(arch, builds_every_architecture_with_the_expected_parameter_count)
{
    static const struct arch_case cases[] = {
        {"lenet-300-100", 1, 28, 28, 266610},
        {"lenet5", 1, 28, 28, 431080},
        {"resnet20-cifar", 3, 32, 32, 272474}, /* torch model of tests/bench/torch_train.py */
        {"resnet56-cifar", 3, 32, 32, 0},
        {"vgg16-cifar", 3, 32, 32, 0},
        {"mobilenetv2-cifar", 3, 32, 32, 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct dp_model *m = NULL;
        struct dp_errinfo ei = {0};
        enum dp_err err = nn_arch_build(cases[i].name, cases[i].c, cases[i].h, cases[i].w, 10,
                                        &m, &ei);
        cr_assert_eq(err, DP_OK, "%s: %s", cases[i].name, ei.msg);
        if (cases[i].params != 0)
            cr_assert_eq(dp_model_n_trainable(m), cases[i].params, "%s: %zu parameters",
                         cases[i].name, dp_model_n_trainable(m));
        const struct dp_layer *last = &m->layers[m->n_layers - 1];
        cr_assert_eq(last->out_c, 10);
        cr_assert_eq(last->out_h * last->out_w, 1);
        dp_model_free(m);
    }
    DP_ASSERT_NO_LEAKS();
}

Test(arch, errors_name_the_problem)
{
    struct dp_model *m = NULL;
    struct dp_errinfo ei = {0};
    cr_assert_eq(nn_arch_build("alexnet", 3, 32, 32, 10, &m, &ei), DP_EINVAL);
    cr_assert(strstr(ei.msg, "alexnet") != NULL && strstr(ei.msg, "lenet5") != NULL);
    cr_assert_eq(nn_arch_build("vgg16-cifar", 1, 8, 8, 10, &m, &ei), DP_ESHAPE);
    cr_assert(strstr(ei.msg, "pool") != NULL, "names the layer: %s", ei.msg);
    cr_assert_null(m);
    DP_ASSERT_NO_LEAKS();
}

Test(arch, init_is_deterministic_and_bounded)
{
    struct dp_model *a = NULL, *b = NULL;
    cr_assert_eq(nn_arch_build("lenet5", 1, 28, 28, 10, &a, NULL), DP_OK);
    cr_assert_eq(nn_arch_build("lenet5", 1, 28, 28, 10, &b, NULL), DP_OK);
    nn_arch_init(a, 42);
    nn_arch_init(b, 42);
    cr_assert_eq(memcmp(a->data, b->data, a->n_floats * sizeof(float)), 0);
    const struct dp_param *w = dp_model_param_find(a, "fc1.weight");
    float bound = 1.0f / sqrtf(800.0f), mx = 0.0f;
    for (size_t i = 0; i < w->numel; i++)
        mx = fmaxf(mx, fabsf(a->data[w->offset + i]));
    cr_assert_leq(mx, bound);
    cr_assert_gt(mx, 0.9f * bound);
    dp_model_free(a);
    dp_model_free(b);
    DP_ASSERT_NO_LEAKS();
}

/* ---- Training loop --------------------------------------------------------- */

Test(train, learns_synthetic_data_and_repeats_exactly, .timeout = 120)
{
    /* One synthetic set split in two: its class templates come from the seed. */
    struct nn_dataset all = {0}, tr = {0}, te = {0};
    cr_assert_eq(nn_dataset_synthetic(&all, 640, 1, 12, 12, 4, 1), DP_OK);
    cr_assert_eq(nn_dataset_subset(&tr, &all, 0, 512), DP_OK);
    cr_assert_eq(nn_dataset_subset(&te, &all, 512, 128), DP_OK);
    nn_dataset_free(&all);
    float first[2] = {0, 0};
    for (int run = 0; run < 2; run++) {
        struct dp_model *m = dp_model_new(1, 12, 12);
        int x = dp_model_add_conv2d(m, "c", DP_MODEL_INPUT, 4, 3, 1, 0, 1, 1, NULL);
        x = dp_model_add_unary(m, "r", DP_OP_RELU, x, NULL);
        x = dp_model_add_unary(m, "f", DP_OP_FLATTEN, x, NULL);
        x = dp_model_add_linear(m, "fc", x, 4, NULL);
        cr_assert_geq(x, 0);
        cr_assert_eq(dp_model_finalize(m, NULL), DP_OK);
        nn_arch_init(m, 1);
        struct nn_train_cfg cfg = nn_train_cfg_default();
        cfg.epochs = 3;
        cfg.batch = 32;
        cfg.sched.total_epochs = 3;
        cfg.sched.base_lr = 0.05f;
        struct nn_train_result res;
        struct dp_errinfo ei = {0};
        cr_assert_eq(nn_train(m, &tr, &te, &cfg, NULL, &res, &ei), DP_OK, "%s", ei.msg);
        cr_assert_gt(res.last.test_acc, 0.6, "accuracy %.3f", res.last.test_acc);
        if (run == 0) {
            first[0] = (float)res.last.train_loss;
            first[1] = (float)res.last.test_acc;
        } else {
            cr_assert_eq((float)res.last.train_loss, first[0], "same seed, same loss");
            cr_assert_eq((float)res.last.test_acc, first[1]);
        }
        dp_model_free(m);
    }
    nn_dataset_free(&tr);
    nn_dataset_free(&te);
    DP_ASSERT_NO_LEAKS();
}

Test(train, shape_mismatch_is_named)
{
    struct nn_dataset tr = {0};
    cr_assert_eq(nn_dataset_synthetic(&tr, 16, 3, 32, 32, 10, 1), DP_OK);
    struct dp_model *m = NULL;
    cr_assert_eq(nn_arch_build("lenet5", 1, 28, 28, 10, &m, NULL), DP_OK);
    struct nn_train_cfg cfg = nn_train_cfg_default();
    struct nn_train_result res;
    struct dp_errinfo ei = {0};
    cr_assert_eq(nn_train(m, &tr, NULL, &cfg, NULL, &res, &ei), DP_ESHAPE);
    cr_assert(strstr(ei.msg, "3x32x32") != NULL && strstr(ei.msg, "1x28x28") != NULL, "%s",
              ei.msg);
    dp_model_free(m);
    nn_dataset_free(&tr);
    DP_ASSERT_NO_LEAKS();
}

/* Every allocation of the executor and the optimizer can fail: each failure
 * is reported as DP_ENOMEM, leaves nothing allocated, and a later attempt
 * succeeds. */
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
