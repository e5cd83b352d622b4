/*
 * Compression of mobile-style networks (suite "purify_mobile") on a small
 * hand-built net with MobileNetV2's inverted residual blocks (pointwise
 * expansion, depthwise 3x3, pointwise projection, BN and ReLU6, one block
 * with its residual add) and a grouped (not depthwise) convolution:
 *  - filters pruned in the expansion and in the depthwise conv leave the
 *    block with their BN entries, depthwise slices and projection inputs;
 *    the purified logits equal the pruned model's within 1e-4; channels
 *    the residual sum still carries stay, and the grouped conv is kept;
 *  - magnitude and ADMM pruning (filter and irregular) run on pointwise,
 *    depthwise and grouped convolutions, hold their constraints exactly,
 *    and the result purifies to smaller shapes with the same logits;
 *  - pattern pruning refuses a depthwise conv with a message naming it.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "common/alloc.h"
#include "common/spec.h"
#include "tests/unit/test_util.h"
#include "tests/unit/worker/compress/purify_fixture.h"
#include "worker/compress/admm.h"
#include "worker/compress/purify.h"
#include "worker/nn/arch.h"
#include "worker/nn/data.h"
#include "worker/nn/net.h"
#include "worker/nn/rng.h"
#include "worker/nn/train.h"

#define PM_IN    3
#define PM_HW    8
#define PM_CLASS 4

static int pm_bn_relu6(struct dp_model *m, const char *name, int x, struct dp_errinfo *ei)
{
    char n[64];
    snprintf(n, sizeof(n), "%s.bn", name);
    x = dp_model_add_bn2d(m, n, x, ei);
    snprintf(n, sizeof(n), "%s.relu", name);
    return x < 0 ? x : dp_model_add_unary(m, n, DP_OP_RELU6, x, ei);
}

/* stem 3->16, block1 16->48->16 (+ residual), block2 16->32->24 (stride 2),
 * grouped 24->24 (2 groups), GAP, linear. */
static struct dp_model *pm_net(void)
{
    struct dp_errinfo ei = {0};
    struct dp_model *m = dp_model_new(PM_IN, PM_HW, PM_HW);
    int x = dp_model_add_conv2d(m, "stem", DP_MODEL_INPUT, 16, 3, 1, 1, 1, 0, &ei);
    const int stem = pm_bn_relu6(m, "stem", x, &ei);
    x = dp_model_add_conv2d(m, "b1.expand", stem, 48, 1, 1, 0, 1, 0, &ei);
    x = pm_bn_relu6(m, "b1.expand", x, &ei);
    x = dp_model_add_conv2d(m, "b1.dw", x, 48, 3, 1, 1, 48, 0, &ei);
    x = pm_bn_relu6(m, "b1.dw", x, &ei);
    x = dp_model_add_conv2d(m, "b1.project", x, 16, 1, 1, 0, 1, 0, &ei);
    x = dp_model_add_bn2d(m, "b1.project.bn", x, &ei);
    x = dp_model_add_add(m, "b1.add", stem, x, &ei);
    x = dp_model_add_conv2d(m, "b2.expand", x, 32, 1, 1, 0, 1, 0, &ei);
    x = pm_bn_relu6(m, "b2.expand", x, &ei);
    x = dp_model_add_conv2d(m, "b2.dw", x, 32, 3, 2, 1, 32, 0, &ei);
    x = pm_bn_relu6(m, "b2.dw", x, &ei);
    x = dp_model_add_conv2d(m, "b2.project", x, 24, 1, 1, 0, 1, 0, &ei);
    x = dp_model_add_bn2d(m, "b2.project.bn", x, &ei);
    x = dp_model_add_conv2d(m, "gconv", x, 24, 3, 1, 1, 2, 1, &ei);
    x = dp_model_add_unary(m, "gconv.relu", DP_OP_RELU, x, &ei);
    x = dp_model_add_unary(m, "gap", DP_OP_GAP, x, &ei);
    x = dp_model_add_unary(m, "flat", DP_OP_FLATTEN, x, &ei);
    x = dp_model_add_linear(m, "fc", x, PM_CLASS, &ei);
    cr_assert_geq(x, 0, "%s", ei.msg);
    cr_assert_eq(dp_model_finalize(m, &ei), DP_OK, "%s", ei.msg);
    nn_arch_init(m, 11);
    /* Non-trivial BN statistics and shifts, so that a dead channel's BN
     * output is not zero unless its scale and shift are. */
    struct nn_rng rng;
    nn_rng_seed(&rng, 3);
    for (int i = 0; i < m->n_params; i++) {
        const struct dp_param *p = &m->params[i];
        if (strstr(p->name, "running_mean") != NULL || strstr(p->name, ".bias") != NULL)
            for (size_t k = 0; k < p->numel; k++)
                m->data[p->offset + k] = 0.2f * ((float)nn_rng_uniform(&rng) - 0.5f);
    }
    return m;
}

static void pm_zero_filters(struct dp_model *m, const char *param, int from, int to)
{
    const struct dp_param *w = dp_model_param_find(m, param);
    cr_assert_not_null(w, "%s", param);
    const size_t row = w->numel / (size_t)w->shape[0];
    for (int o = from; o < to; o++)
        memset(m->data + w->offset + (size_t)o * row, 0, row * sizeof(float));
}

static int64_t pm_dim(const struct dp_model *m, const char *param, int d)
{
    const struct dp_param *p = dp_model_param_find(m, param);
    cr_assert_not_null(p, "%s", param);
    return p->shape[d];
}

/* Rows (filters) of a weight with any non-zero. */
static int64_t pm_rows_kept(const struct dp_model *m, const char *param)
{
    const struct dp_param *w = dp_model_param_find(m, param);
    cr_assert_not_null(w, "%s", param);
    const size_t row = w->numel / (size_t)w->shape[0];
    int64_t kept = 0;
    for (int64_t o = 0; o < w->shape[0]; o++) {
        int any = 0;
        for (size_t k = 0; k < row; k++)
            any |= m->data[w->offset + (size_t)o * row + k] != 0.0f;
        kept += any;
    }
    return kept;
}

Test(purify_mobile, dead_filters_leave_inverted_residual_blocks)
{
    struct dp_model *m = pm_net();
    pm_zero_filters(m, "b1.expand.weight", 0, 20); /* the expansion */
    pm_zero_filters(m, "b1.dw.weight", 30, 36);    /* the depthwise conv itself */
    pm_zero_filters(m, "b1.project.weight", 0, 4); /* feeds the residual sum */
    pm_zero_filters(m, "b2.expand.weight", 0, 10);
    pm_zero_filters(m, "b2.dw.weight", 31, 32);
    pm_zero_filters(m, "gconv.weight", 0, 3); /* grouped: kept as it is */
    cp_purify_zero_dead_filters(m, NULL);
    json_t *stats = NULL;
    struct dp_model *q = purify_fixture_same(m, &stats);
    /* Block 1: 20 + 6 of 48 expansion channels go, everywhere in the block. */
    cr_expect_eq(pm_dim(q, "b1.expand.weight", 0), 22);
    cr_expect_eq(pm_dim(q, "b1.expand.bn.weight", 0), 22);
    cr_expect_eq(pm_dim(q, "b1.dw.weight", 0), 22);
    cr_expect_eq(pm_dim(q, "b1.dw.weight", 1), 1);
    cr_expect_eq(q->layers[dp_model_layer_find(q, "b1.dw")].a.groups, 22);
    cr_expect_eq(pm_dim(q, "b1.dw.bn.running_var", 0), 22);
    cr_expect_eq(pm_dim(q, "b1.project.weight", 1), 22);
    /* The stem's channels reach the sum through the shortcut: they stay. */
    cr_expect_eq(pm_dim(q, "b1.project.weight", 0), 16);
    cr_expect_eq(pm_dim(q, "stem.weight", 0), 16);
    /* Block 2 (no residual): 10 + 1 of 32. */
    cr_expect_eq(pm_dim(q, "b2.expand.weight", 0), 21);
    cr_expect_eq(pm_dim(q, "b2.dw.weight", 0), 21);
    cr_expect_eq(pm_dim(q, "b2.project.weight", 1), 21);
    /* A grouped conv that is not depthwise pins its channels. */
    cr_expect_eq(pm_dim(q, "gconv.weight", 0), 24);
    cr_expect_eq(pm_dim(q, "b2.project.weight", 0), 24);
    cr_expect_eq(json_integer_value(json_object_get(stats, "channels_removed")), 26 + 11);
    cr_expect_lt(dp_model_n_trainable(q), dp_model_n_trainable(m));
    json_decref(stats);
    dp_model_free(q);
    dp_model_free(m);
    DP_ASSERT_NO_LEAKS();
}

static void pm_data(struct nn_dataset *train, struct nn_dataset *test)
{
    struct nn_dataset all = {0};
    cr_assert_eq(nn_dataset_synthetic(&all, 160, PM_IN, PM_HW, PM_HW, PM_CLASS, 5), DP_OK);
    cr_assert_eq(nn_dataset_subset(train, &all, 0, 128), DP_OK);
    cr_assert_eq(nn_dataset_subset(test, &all, 128, 32), DP_OK);
    nn_dataset_free(&all);
}

static void pm_compress(const char *method)
{
    struct nn_dataset train = {0}, test = {0};
    pm_data(&train, &test);
    struct dp_model *m = pm_net();
    char text[1024];
    snprintf(text, sizeof(text),
             "{\"method\":\"%s\",\"batch\":32,\"purify\":true,"
             "\"admm\":{\"iters\":1,\"epochs_per_iter\":1},\"retrain\":{\"epochs\":1},"
             "\"magnitude\":{\"steps\":1},\"layers\":["
             "{\"match\":\"b*.expand\",\"prune\":{\"scheme\":\"filter\",\"rate\":2}},"
             "{\"match\":\"b*.dw\",\"prune\":{\"scheme\":\"filter\",\"rate\":4}},"
             "{\"match\":\"b*.project\",\"prune\":{\"scheme\":\"irregular\",\"rate\":4}},"
             "{\"match\":\"gconv\",\"prune\":{\"scheme\":\"irregular\",\"rate\":2}}]}",
             method);
    struct dp_spec spec;
    struct dp_errinfo ei = {0};
    cr_assert_eq(dp_spec_parse(text, strlen(text), &spec, &ei), DP_OK, "%s", ei.msg);
    json_t *r = NULL;
    cr_assert_eq(admm_compress(m, &train, &test, &spec, NULL, &r, &ei), DP_OK, "%s: %s", method,
                 ei.msg);
    /* The constraints hold exactly on every kind of convolution. */
    cr_expect_leq(pm_rows_kept(m, "b1.expand.weight"), 24, "%s", method);
    cr_expect_leq(pm_rows_kept(m, "b2.dw.weight"), 8, "%s", method);
    cr_expect_leq(pm_rows_kept(m, "b1.dw.weight"), 12, "%s", method);
    const struct dp_param *g = dp_model_param_find(m, "gconv.weight");
    size_t nz = 0;
    for (size_t k = 0; k < g->numel; k++)
        nz += m->data[g->offset + k] != 0.0f;
    cr_expect_leq(nz, g->numel / 2, "%s: gconv keeps %zu of %zu", method, nz, g->numel);
    json_t *stats = NULL;
    struct dp_model *q = purify_fixture_same(m, &stats);
    /* Expansion filters and depthwise kernels both shrink the blocks. */
    cr_expect_leq(pm_dim(q, "b1.dw.weight", 0), 12, "%s", method);
    cr_expect_leq(pm_dim(q, "b2.expand.weight", 0), 8, "%s", method);
    cr_expect_eq(pm_dim(q, "b2.project.weight", 1), pm_dim(q, "b2.dw.weight", 0));
    json_decref(stats);
    json_decref(r);
    dp_model_free(q);
    dp_model_free(m);
    nn_dataset_free(&train);
    nn_dataset_free(&test);
    DP_ASSERT_NO_LEAKS();
}

Test(purify_mobile, magnitude_pruning_of_pointwise_depthwise_grouped, .timeout = 300)
{
    pm_compress("magnitude");
}

Test(purify_mobile, admm_pruning_of_pointwise_depthwise_grouped, .timeout = 300)
{
    pm_compress("admm");
}

Test(purify_mobile, pattern_refuses_depthwise_naming_the_layer)
{
    struct nn_dataset train = {0}, test = {0};
    pm_data(&train, &test);
    struct dp_model *m = pm_net();
    const char *text = "{\"batch\":32,\"admm\":{\"iters\":1,\"epochs_per_iter\":1},"
                       "\"retrain\":{\"epochs\":1},\"layers\":[{\"match\":\"*\",\"prune\":"
                       "{\"scheme\":\"pattern\",\"library_size\":4}}]}";
    struct dp_spec spec;
    struct dp_errinfo ei = {0};
    cr_assert_eq(dp_spec_parse(text, strlen(text), &spec, &ei), DP_OK, "%s", ei.msg);
    json_t *r = NULL;
    /* "*" matches the stem (3x3 over 3 channels: fine), then the 1x1
     * expansion: refused for its size. */
    cr_expect_eq(admm_compress(m, &train, &test, &spec, NULL, &r, &ei), DP_EINVAL);
    cr_expect(strstr(ei.msg, "b1.expand") != NULL, "message: %s", ei.msg);
    /* Only the 3x3 convolutions: the depthwise one is refused by name. */
    const char *text2 = "{\"batch\":32,\"admm\":{\"iters\":1,\"epochs_per_iter\":1},"
                        "\"retrain\":{\"epochs\":1},\"layers\":["
                        "{\"match\":\"stem\",\"prune\":{\"scheme\":\"pattern\"}},"
                        "{\"match\":\"b1.dw\",\"prune\":{\"scheme\":\"pattern\"}}]}";
    cr_assert_eq(dp_spec_parse(text2, strlen(text2), &spec, &ei), DP_OK, "%s", ei.msg);
    cr_expect_eq(admm_compress(m, &train, &test, &spec, NULL, &r, &ei), DP_EINVAL);
    cr_expect(strstr(ei.msg, "'b1.dw'") != NULL && strstr(ei.msg, "depthwise") != NULL,
              "message: %s", ei.msg);
    cr_expect_null(r);
    /* The grouped conv (12 input channels per group) is accepted with the stem. */
    const char *text3 = "{\"batch\":32,\"admm\":{\"iters\":1,\"epochs_per_iter\":1},"
                        "\"retrain\":{\"epochs\":1},\"layers\":["
                        "{\"match\":\"stem\",\"prune\":{\"scheme\":\"pattern\"}},"
                        "{\"match\":\"gconv\",\"prune\":{\"scheme\":\"pattern\"}}]}";
    cr_assert_eq(dp_spec_parse(text3, strlen(text3), &spec, &ei), DP_OK, "%s", ei.msg);
    cr_expect_eq(admm_compress(m, &train, &test, &spec, NULL, &r, &ei), DP_OK, "%s", ei.msg);
    json_decref(r);
    dp_model_free(m);
    nn_dataset_free(&train);
    nn_dataset_free(&test);
    DP_ASSERT_NO_LEAKS();
}

/* Squeeze-excitation (MobileNetV3 / EfficientNet): x -> GAP -> reduce conv
 * -> act -> expand conv -> gate -> mul(x, gate). act/gate: relu and
 * hardsigmoid in block 1 (MobileNetV3), silu and sigmoid in block 2
 * (EfficientNet, the gate first in the product). */
static int pm_se(struct dp_model *m, const char *name, int x, int ch, int red, int efficient,
                 struct dp_errinfo *ei)
{
    char n[64];
    snprintf(n, sizeof(n), "%s.se.gap", name);
    int g = dp_model_add_unary(m, n, DP_OP_GAP, x, ei);
    snprintf(n, sizeof(n), "%s.se.reduce", name);
    g = dp_model_add_conv2d(m, n, g, red, 1, 1, 0, 1, 1, ei);
    snprintf(n, sizeof(n), "%s.se.act", name);
    g = dp_model_add_unary(m, n, efficient ? DP_OP_SILU : DP_OP_RELU, g, ei);
    snprintf(n, sizeof(n), "%s.se.expand", name);
    g = dp_model_add_conv2d(m, n, g, ch, 1, 1, 0, 1, 1, ei);
    snprintf(n, sizeof(n), "%s.se.gate", name);
    if (efficient) {
        g = dp_model_add_unary(m, n, DP_OP_SIGMOID, g, ei);
    } else {
        struct dp_op_attrs a = {0};
        a.alpha = 1.0f / 6.0f, a.beta = 0.5f;
        g = dp_model_add_layer(m, n, DP_OP_HARDSIGMOID, &g, 1, &a, ei);
    }
    snprintf(n, sizeof(n), "%s.se.mul", name);
    const int in[2] = {efficient ? g : x, efficient ? x : g};
    return dp_model_add_layer(m, n, DP_OP_MUL, in, 2, NULL, ei);
}

static int pm_bn_act(struct dp_model *m, const char *name, int x, enum dp_op act,
                     struct dp_errinfo *ei)
{
    char n[64];
    snprintf(n, sizeof(n), "%s.bn", name);
    x = dp_model_add_bn2d(m, n, x, ei);
    snprintf(n, sizeof(n), "%s.act", name);
    return x < 0 ? x : dp_model_add_unary(m, n, act, x, ei);
}

/* stem 3->16; b1 16->32->dw->SE(8)->16 (+ residual); b2 16->24->dw/2->SE(6)->20;
 * GAP, linear. */
static struct dp_model *pm_se_net(void)
{
    struct dp_errinfo ei = {0};
    struct dp_model *m = dp_model_new(PM_IN, PM_HW, PM_HW);
    int x = dp_model_add_conv2d(m, "stem", DP_MODEL_INPUT, 16, 3, 1, 1, 1, 0, &ei);
    const int stem = pm_bn_act(m, "stem", x, DP_OP_HARDSWISH, &ei);
    x = dp_model_add_conv2d(m, "b1.expand", stem, 32, 1, 1, 0, 1, 0, &ei);
    x = pm_bn_act(m, "b1.expand", x, DP_OP_HARDSWISH, &ei);
    x = dp_model_add_conv2d(m, "b1.dw", x, 32, 3, 1, 1, 32, 0, &ei);
    x = pm_bn_act(m, "b1.dw", x, DP_OP_HARDSWISH, &ei);
    x = pm_se(m, "b1", x, 32, 8, 0, &ei);
    x = dp_model_add_conv2d(m, "b1.project", x, 16, 1, 1, 0, 1, 0, &ei);
    x = dp_model_add_bn2d(m, "b1.project.bn", x, &ei);
    x = dp_model_add_add(m, "b1.add", stem, x, &ei);
    x = dp_model_add_conv2d(m, "b2.expand", x, 24, 1, 1, 0, 1, 0, &ei);
    x = pm_bn_act(m, "b2.expand", x, DP_OP_SILU, &ei);
    x = dp_model_add_conv2d(m, "b2.dw", x, 24, 3, 2, 1, 24, 0, &ei);
    x = pm_bn_act(m, "b2.dw", x, DP_OP_SILU, &ei);
    x = pm_se(m, "b2", x, 24, 6, 1, &ei);
    x = dp_model_add_conv2d(m, "b2.project", x, 20, 1, 1, 0, 1, 0, &ei);
    x = dp_model_add_bn2d(m, "b2.project.bn", x, &ei);
    x = dp_model_add_unary(m, "gap", DP_OP_GAP, x, &ei);
    x = dp_model_add_unary(m, "flat", DP_OP_FLATTEN, x, &ei);
    x = dp_model_add_linear(m, "fc", x, PM_CLASS, &ei);
    cr_assert_geq(x, 0, "%s", ei.msg);
    cr_assert_eq(dp_model_finalize(m, &ei), DP_OK, "%s", ei.msg);
    nn_arch_init(m, 13);
    struct nn_rng rng;
    nn_rng_seed(&rng, 4);
    for (int i = 0; i < m->n_params; i++) {
        const struct dp_param *p = &m->params[i];
        if (strstr(p->name, "running_mean") != NULL || strstr(p->name, ".bias") != NULL)
            for (size_t k = 0; k < p->numel; k++)
                m->data[p->offset + k] = 0.2f * ((float)nn_rng_uniform(&rng) - 0.5f);
    }
    return m;
}

Test(purify_mobile, dead_channels_leave_squeeze_excitation)
{
    struct dp_model *m = pm_se_net();
    pm_zero_filters(m, "b1.expand.weight", 0, 12);   /* the expansion */
    pm_zero_filters(m, "b1.dw.weight", 20, 22);      /* the depthwise conv */
    pm_zero_filters(m, "b1.se.reduce.weight", 0, 3); /* the SE's own space */
    pm_zero_filters(m, "b2.expand.weight", 4, 10);
    pm_zero_filters(m, "b2.se.reduce.weight", 5, 6);
    cp_purify_zero_dead_filters(m, NULL);
    json_t *stats = NULL;
    struct dp_model *q = purify_fixture_same(m, &stats);
    /* Block 1: 12 + 2 of 32 channels leave the block and its SE: the
     * expand conv's filters and the reduce conv's input slices. */
    cr_expect_eq(pm_dim(q, "b1.expand.weight", 0), 18);
    cr_expect_eq(pm_dim(q, "b1.dw.weight", 0), 18);
    cr_expect_eq(pm_dim(q, "b1.dw.bn.weight", 0), 18);
    cr_expect_eq(pm_dim(q, "b1.se.reduce.weight", 1), 18);
    cr_expect_eq(pm_dim(q, "b1.se.expand.weight", 0), 18);
    cr_expect_eq(pm_dim(q, "b1.se.expand.bias", 0), 18);
    cr_expect_eq(pm_dim(q, "b1.project.weight", 1), 18);
    /* Pruned reduce filters leave the expand conv's inputs. */
    cr_expect_eq(pm_dim(q, "b1.se.reduce.weight", 0), 5);
    cr_expect_eq(pm_dim(q, "b1.se.expand.weight", 1), 5);
    /* Block 2: the gate first in the product; 6 of 24, and 1 of 6. */
    cr_expect_eq(pm_dim(q, "b2.expand.weight", 0), 18);
    cr_expect_eq(pm_dim(q, "b2.se.reduce.weight", 1), 18);
    cr_expect_eq(pm_dim(q, "b2.se.expand.weight", 0), 18);
    cr_expect_eq(pm_dim(q, "b2.project.weight", 1), 18);
    cr_expect_eq(pm_dim(q, "b2.se.reduce.weight", 0), 5);
    cr_expect_eq(pm_dim(q, "b2.se.expand.weight", 1), 5);
    /* The residual sum's channels stay. */
    cr_expect_eq(pm_dim(q, "b1.project.weight", 0), 16);
    cr_expect_eq(json_integer_value(json_object_get(stats, "channels_removed")), 14 + 3 + 6 + 1);
    json_decref(stats);
    dp_model_free(q);
    dp_model_free(m);
    DP_ASSERT_NO_LEAKS();
}

/* Filter pruning of the expansions through the compressor, then purification. */
Test(purify_mobile, magnitude_filter_pruning_through_squeeze_excitation, .timeout = 300)
{
    struct nn_dataset train = {0}, test = {0};
    pm_data(&train, &test);
    struct dp_model *m = pm_se_net();
    const char *text = "{\"method\":\"magnitude\",\"batch\":32,\"purify\":true,"
                       "\"retrain\":{\"epochs\":1},\"magnitude\":{\"steps\":1},\"layers\":["
                       "{\"match\":\"b*.expand\",\"prune\":{\"scheme\":\"filter\",\"rate\":2}}]}";
    struct dp_spec spec;
    struct dp_errinfo ei = {0};
    cr_assert_eq(dp_spec_parse(text, strlen(text), &spec, &ei), DP_OK, "%s", ei.msg);
    json_t *r = NULL;
    cr_assert_eq(admm_compress(m, &train, &test, &spec, NULL, &r, &ei), DP_OK, "%s", ei.msg);
    cr_expect_leq(pm_rows_kept(m, "b1.expand.weight"), 16);
    json_t *stats = NULL;
    struct dp_model *q = purify_fixture_same(m, &stats);
    cr_expect_leq(pm_dim(q, "b1.dw.weight", 0), 16);
    cr_expect_eq(pm_dim(q, "b1.se.expand.weight", 0), pm_dim(q, "b1.dw.weight", 0));
    cr_expect_eq(pm_dim(q, "b1.se.reduce.weight", 1), pm_dim(q, "b1.dw.weight", 0));
    cr_expect_leq(pm_dim(q, "b2.se.expand.weight", 0), 12);
    cr_expect_eq(pm_dim(q, "b2.project.weight", 1), pm_dim(q, "b2.se.expand.weight", 0));
    json_decref(stats);
    json_decref(r);
    dp_model_free(q);
    dp_model_free(m);
    nn_dataset_free(&train);
    nn_dataset_free(&test);
    DP_ASSERT_NO_LEAKS();
}

/* A channel with one dead factor is dead: the BN that reads the product
 * loses its scale and shift there, and purification drops the channel. */
Test(purify_mobile, product_with_a_dead_factor_is_dead)
{
    struct dp_errinfo ei = {0};
    struct dp_model *m = dp_model_new(PM_IN, PM_HW, PM_HW);
    int x = dp_model_add_conv2d(m, "c1", DP_MODEL_INPUT, 8, 3, 1, 1, 1, 0, &ei);
    x = pm_se(m, "s", x, 8, 4, 1, &ei);
    x = dp_model_add_bn2d(m, "s.bn", x, &ei);
    x = dp_model_add_conv2d(m, "c2", x, 6, 1, 1, 0, 1, 0, &ei);
    x = dp_model_add_unary(m, "gap", DP_OP_GAP, x, &ei);
    x = dp_model_add_unary(m, "flat", DP_OP_FLATTEN, x, &ei);
    x = dp_model_add_linear(m, "fc", x, PM_CLASS, &ei);
    cr_assert_geq(x, 0, "%s", ei.msg);
    cr_assert_eq(dp_model_finalize(m, &ei), DP_OK, "%s", ei.msg);
    nn_arch_init(m, 5);
    const struct dp_param *bw = dp_model_param_find(m, "s.bn.weight");
    const struct dp_param *bb = dp_model_param_find(m, "s.bn.bias");
    for (int c = 0; c < 8; c++)
        m->data[bb->offset + (size_t)c] = 0.1f;
    pm_zero_filters(m, "c1.weight", 2, 5);
    cp_purify_zero_dead_filters(m, NULL);
    for (int c = 0; c < 8; c++) {
        const int dead = c >= 2 && c < 5;
        cr_expect_eq(m->data[bw->offset + (size_t)c] == 0.0f, dead, "channel %d", c);
        cr_expect_eq(m->data[bb->offset + (size_t)c] == 0.0f, dead, "channel %d", c);
    }
    json_t *stats = NULL;
    struct dp_model *q = purify_fixture_same(m, &stats);
    cr_expect_eq(pm_dim(q, "c1.weight", 0), 5);
    cr_expect_eq(pm_dim(q, "s.se.expand.weight", 0), 5);
    cr_expect_eq(pm_dim(q, "s.bn.weight", 0), 5);
    cr_expect_eq(pm_dim(q, "c2.weight", 1), 5);
    json_decref(stats);
    dp_model_free(q);
    dp_model_free(m);
    DP_ASSERT_NO_LEAKS();
}
