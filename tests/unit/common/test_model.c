/*
 * Tests for the model IR (common/model.c, suite "model"): shape inference
 * for every op, the errors finalize reports, parameter declaration
 * (checkpoints and the graph JSON are test_model_io.c's).
 *
 * Expected output sizes follow PyTorch's formulas:
 *   conv:  floor((H + pt + pb - d*(k-1) - 1) / s) + 1
 *   pool:  the same with ceil when ceil_mode, minus one when the last
 *          window would start in the right padding.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "common/alloc.h"
#include "common/model.h"
#include "common/model_io.h"
#include "common/safetensors.h"
#include "tests/unit/test_util.h"

/* ---- Helpers ---------------------------------------------------------------- */

#define MT_N(a) (sizeof(a) / sizeof((a)[0]))

static struct dp_op_attrs mt_window(int kh, int kw, int sh, int sw, int pad, int dil)
{
    struct dp_op_attrs a;
    memset(&a, 0, sizeof(a));
    a.kh = kh;
    a.kw = kw;
    a.sh = sh;
    a.sw = sw;
    a.pt = a.pl = a.pb = a.pr = pad;
    a.dh = a.dw = dil;
    return a;
}

/* Builds input -> one layer (op, attrs) and finalizes; returns the finalize result. */
static enum dp_err mt_one_layer(int c, int h, int w, enum dp_op op, const struct dp_op_attrs *a,
                                struct dp_model **out, struct dp_errinfo *ei)
{
    struct dp_model *m = dp_model_new(c, h, w);
    cr_assert_not_null(m);
    int in = DP_MODEL_INPUT;
    int idx = dp_model_add_layer(m, "l", op, &in, 1, a, ei);
    cr_assert_eq(idx, 0, "%s", ei->msg);
    enum dp_err err = dp_model_finalize(m, ei);
    *out = m;
    return err;
}

/* ---- Suite model: shape inference ---------------------------------------------- */

TestSuite(model);

Test(model, conv_output_sizes)
{
    static const struct {
        int in, k, s, p, d, want;
    } rows[] = {
        {28, 5, 1, 0, 1, 24}, {28, 3, 2, 1, 1, 14},   {32, 3, 1, 2, 2, 32},
        {7, 3, 2, 0, 1, 3},   {224, 7, 2, 3, 1, 112}, {5, 3, 1, 0, 2, 1},
        {10, 4, 3, 1, 1, 3},  {1, 1, 1, 0, 1, 1},     {6, 2, 4, 0, 1, 2},
    };
    for (size_t i = 0; i < MT_N(rows); i++) {
        struct dp_op_attrs a =
            mt_window(rows[i].k, rows[i].k, rows[i].s, rows[i].s, rows[i].p, rows[i].d);
        a.out_ch = 3;
        a.groups = 1;
        a.has_bias = 1;
        struct dp_model *m = NULL;
        struct dp_errinfo ei = {DP_OK, ""};
        cr_assert_eq(mt_one_layer(2, rows[i].in, rows[i].in, DP_OP_CONV2D, &a, &m, &ei), DP_OK,
                     "row %zu: %s", i, ei.msg);
        cr_assert_eq(m->layers[0].out_c, 3);
        cr_assert_eq(m->layers[0].out_h, rows[i].want, "row %zu: got %d", i, m->layers[0].out_h);
        cr_assert_eq(m->layers[0].out_w, rows[i].want, "row %zu", i);
        const struct dp_param *wp = dp_model_param_find(m, "l.weight");
        cr_assert_not_null(wp);
        cr_assert_eq(wp->ndim, 4);
        int64_t ws[4] = {3, 2, rows[i].k, rows[i].k};
        cr_assert_eq(memcmp(wp->shape, ws, sizeof(ws)), 0);
        cr_assert_not_null(dp_model_param_find(m, "l.bias"));
        cr_assert_eq(dp_model_out_size(m, 0), (size_t)(3 * rows[i].want * rows[i].want));
        dp_model_free(m);
    }
    DP_ASSERT_NO_LEAKS();
}

Test(model, conv_asymmetric_padding_and_strides)
{
    struct dp_op_attrs a = mt_window(3, 2, 1, 2, 0, 1);
    a.pt = 1;
    a.pr = 1;
    a.out_ch = 5;
    a.groups = 1;
    struct dp_model *m = NULL;
    struct dp_errinfo ei = {DP_OK, ""};
    cr_assert_eq(mt_one_layer(1, 6, 6, DP_OP_CONV2D, &a, &m, &ei), DP_OK, "%s", ei.msg);
    cr_assert_eq(m->layers[0].out_h, 5);
    cr_assert_eq(m->layers[0].out_w, 3);
    cr_assert_null(dp_model_param_find(m, "l.bias"), "has_bias = 0 declares no bias");
    cr_assert_eq(m->n_params, 1);
    dp_model_free(m);
    DP_ASSERT_NO_LEAKS();
}

Test(model, conv_groups)
{
    static const struct {
        int c, out, groups, per_group;
    } rows[] = {{8, 12, 4, 2}, {8, 8, 8, 1}, {8, 16, 8, 1}, {3, 6, 1, 3}};
    for (size_t i = 0; i < MT_N(rows); i++) {
        struct dp_op_attrs a = mt_window(3, 3, 1, 1, 1, 1);
        a.out_ch = rows[i].out;
        a.groups = rows[i].groups;
        struct dp_model *m = NULL;
        struct dp_errinfo ei = {DP_OK, ""};
        cr_assert_eq(mt_one_layer(rows[i].c, 5, 5, DP_OP_CONV2D, &a, &m, &ei), DP_OK, "%s", ei.msg);
        const struct dp_param *wp = dp_model_param_find(m, "l.weight");
        cr_assert_eq(wp->shape[0], rows[i].out);
        cr_assert_eq(wp->shape[1], rows[i].per_group, "row %zu", i);
        cr_assert_eq(wp->numel, (size_t)(rows[i].out * rows[i].per_group * 9));
        dp_model_free(m);
    }
    DP_ASSERT_NO_LEAKS();
}

Test(model, conv_groups_not_dividing_channels)
{
    static const struct {
        int c, out, groups;
    } rows[] = {{3, 4, 2}, {4, 6, 4}, {4, 4, 0}, {4, 4, -1}};
    for (size_t i = 0; i < MT_N(rows); i++) {
        struct dp_op_attrs a = mt_window(3, 3, 1, 1, 1, 1);
        a.out_ch = rows[i].out;
        a.groups = rows[i].groups;
        struct dp_model *m = NULL;
        struct dp_errinfo ei = {DP_OK, ""};
        cr_assert_eq(mt_one_layer(rows[i].c, 5, 5, DP_OP_CONV2D, &a, &m, &ei), DP_ESHAPE, "row %zu",
                     i);
        char want[64];
        snprintf(want, sizeof(want), "not divisible by groups=%d", rows[i].groups);
        cr_assert(strstr(ei.msg, want) != NULL, "%s", ei.msg);
        cr_assert(strstr(ei.msg, "layer 'l'") != NULL, "%s", ei.msg);
        cr_assert_null(m->data);
        dp_model_free(m);
    }
    DP_ASSERT_NO_LEAKS();
}

Test(model, conv_kernel_that_does_not_fit)
{
    struct dp_op_attrs a = mt_window(5, 5, 1, 1, 0, 1);
    a.out_ch = 2;
    a.groups = 1;
    struct dp_model *m = NULL;
    struct dp_errinfo ei = {DP_OK, ""};
    cr_assert_eq(mt_one_layer(1, 3, 3, DP_OP_CONV2D, &a, &m, &ei), DP_ESHAPE);
    cr_assert(strstr(ei.msg, "5x5 kernel does not fit a 3x3 input") != NULL, "%s", ei.msg);
    dp_model_free(m);
    /* Dilation makes a 3x3 kernel span 5. */
    a = mt_window(3, 3, 1, 1, 0, 2);
    a.out_ch = 2;
    a.groups = 1;
    cr_assert_eq(mt_one_layer(1, 4, 4, DP_OP_CONV2D, &a, &m, &ei), DP_ESHAPE);
    dp_model_free(m);
    a = mt_window(3, 3, 0, 1, 0, 1);
    a.out_ch = 2;
    a.groups = 1;
    cr_assert_eq(mt_one_layer(1, 4, 4, DP_OP_CONV2D, &a, &m, &ei), DP_EINVAL);
    cr_assert(strstr(ei.msg, "stride") != NULL, "%s", ei.msg);
    dp_model_free(m);
    DP_ASSERT_NO_LEAKS();
}

Test(model, pooling_ceil_mode)
{
    static const struct {
        int in, k, s, p, ceil, want;
    } rows[] = {
        {5, 2, 2, 0, 0, 2}, {5, 2, 2, 0, 1, 3}, {5, 2, 2, 1, 0, 3},   {5, 2, 2, 1, 1, 3},
        {4, 3, 2, 0, 0, 1}, {4, 3, 2, 0, 1, 2}, {6, 3, 2, 1, 0, 3},   {6, 3, 2, 1, 1, 4},
        {7, 3, 3, 0, 0, 2}, {7, 3, 3, 0, 1, 3}, {28, 2, 2, 0, 0, 14}, {28, 2, 2, 0, 1, 14},
    };
    const enum dp_op ops[] = {DP_OP_MAXPOOL, DP_OP_AVGPOOL};
    for (size_t o = 0; o < MT_N(ops); o++) {
        for (size_t i = 0; i < MT_N(rows); i++) {
            struct dp_op_attrs a =
                mt_window(rows[i].k, rows[i].k, rows[i].s, rows[i].s, rows[i].p, 1);
            a.ceil_mode = rows[i].ceil;
            struct dp_model *m = NULL;
            struct dp_errinfo ei = {DP_OK, ""};
            cr_assert_eq(mt_one_layer(3, rows[i].in, rows[i].in, ops[o], &a, &m, &ei), DP_OK, "%s",
                         ei.msg);
            cr_assert_eq(m->layers[0].out_h, rows[i].want, "%s row %zu: got %d", dp_op_name(ops[o]),
                         i, m->layers[0].out_h);
            cr_assert_eq(m->layers[0].out_c, 3);
            cr_assert_eq(m->n_params, 0);
            dp_model_free(m);
        }
    }
    /* Padding over half the window is refused, as in PyTorch. */
    struct dp_op_attrs a = mt_window(2, 2, 2, 2, 2, 1);
    struct dp_model *m = NULL;
    struct dp_errinfo ei = {DP_OK, ""};
    cr_assert_eq(mt_one_layer(1, 8, 8, DP_OP_MAXPOOL, &a, &m, &ei), DP_EINVAL);
    cr_assert(strstr(ei.msg, "at most half the window") != NULL, "%s", ei.msg);
    dp_model_free(m);
    DP_ASSERT_NO_LEAKS();
}

Test(model, linear_after_flatten)
{
    struct dp_errinfo ei = {DP_OK, ""};
    struct dp_model *m = dp_model_new(1, 28, 28);
    int c1 = dp_model_add_conv2d(m, "conv1", DP_MODEL_INPUT, 20, 5, 1, 0, 1, 1, &ei);
    int p1 = dp_model_add_pool(m, "pool1", DP_OP_MAXPOOL, c1, 2, 2, 0, &ei);
    int fl = dp_model_add_unary(m, "flat", DP_OP_FLATTEN, p1, &ei);
    int fc = dp_model_add_linear(m, "fc", fl, 10, &ei);
    cr_assert_eq(fc, 3, "%s", ei.msg);
    cr_assert_eq(dp_model_finalize(m, &ei), DP_OK, "%s", ei.msg);
    cr_assert_eq(m->layers[fl].out_c, 20 * 12 * 12);
    cr_assert_eq(m->layers[fl].out_h, 1);
    cr_assert_eq(m->layers[fl].out_w, 1);
    const struct dp_param *w = dp_model_param_find(m, "fc.weight");
    cr_assert_eq(w->ndim, 2);
    cr_assert_eq(w->shape[0], 10);
    cr_assert_eq(w->shape[1], 2880);
    cr_assert_eq(dp_model_param_find(m, "fc.bias")->numel, 10);
    cr_assert_eq(m->layers[fc].out_c, 10);
    cr_assert_eq(dp_model_out_size(m, fc), 10);
    cr_assert_eq(dp_model_out_size(m, DP_MODEL_INPUT), 784);
    /* Linear straight after a 4-D tensor flattens implicitly. */
    cr_assert_eq(dp_model_n_trainable(m), (size_t)(20 * 25 + 20 + 2880 * 10 + 10));
    cr_assert_eq(m->n_floats, dp_model_n_trainable(m));
    /* Parameters are laid out back to back in declaration order. */
    size_t off = 0;
    for (int i = 0; i < m->n_params; i++) {
        cr_assert_eq(m->params[i].offset, off);
        off += m->params[i].numel;
    }
    dp_model_free(m);
    DP_ASSERT_NO_LEAKS();
}

Test(model, bn_gap_dropout_and_buffers)
{
    struct dp_errinfo ei = {DP_OK, ""};
    struct dp_model *m = dp_model_new(4, 6, 6);
    int b = dp_model_add_bn2d(m, "bn", DP_MODEL_INPUT, &ei);
    int r = dp_model_add_unary(m, "r6", DP_OP_RELU6, b, &ei);
    int d = dp_model_add_unary(m, "drop", DP_OP_DROPOUT, r, &ei);
    int g = dp_model_add_unary(m, "gap", DP_OP_GAP, d, &ei);
    cr_assert_eq(g, 3, "%s", ei.msg);
    cr_assert_eq(dp_model_finalize(m, &ei), DP_OK, "%s", ei.msg);
    cr_assert_eq(m->n_params, 4);
    static const char *const names[] = {"bn.weight", "bn.bias", "bn.running_mean",
                                        "bn.running_var"};
    static const float init[] = {1.0f, 0.0f, 0.0f, 1.0f};
    static const int trainable[] = {1, 1, 0, 0};
    for (int i = 0; i < 4; i++) {
        const struct dp_param *p = dp_model_param_find(m, names[i]);
        cr_assert_not_null(p, "%s", names[i]);
        cr_assert_eq(p->numel, 4);
        cr_assert_eq(p->trainable, trainable[i]);
        for (size_t j = 0; j < p->numel; j++)
            cr_assert_eq(dp_param_data(m, p)[j], init[i], "%s[%zu]", names[i], j);
    }
    cr_assert_eq(dp_model_n_trainable(m), 8);
    cr_assert_eq(m->layers[d].a.p, 0.5f);
    cr_assert_eq(m->layers[g].out_c, 4);
    cr_assert_eq(m->layers[g].out_h, 1);
    cr_assert_eq(m->layers[b].first_param, 0);
    cr_assert_eq(m->layers[b].n_params, 4);
    cr_assert_eq(m->layers[r].n_params, 0);
    dp_model_free(m);
    DP_ASSERT_NO_LEAKS();
}

Test(model, add_shape_mismatch)
{
    struct dp_errinfo ei = {DP_OK, ""};
    struct dp_model *m = dp_model_new(3, 8, 8);
    int a = dp_model_add_conv2d(m, "a", DP_MODEL_INPUT, 8, 3, 1, 1, 1, 0, &ei);
    int b = dp_model_add_conv2d(m, "b", DP_MODEL_INPUT, 4, 3, 1, 1, 1, 0, &ei);
    int s = dp_model_add_add(m, "sum", a, b, &ei);
    cr_assert_eq(s, 2, "%s", ei.msg);
    cr_assert_eq(dp_model_finalize(m, &ei), DP_ESHAPE);
    cr_assert(strstr(ei.msg, "layer 'sum': operands have shapes 8x8x8 and 4x8x8") != NULL, "%s",
              ei.msg);
    cr_assert_eq(m->finalized, 0);
    dp_model_free(m);

    /* Same channels, different spatial size. */
    m = dp_model_new(3, 8, 8);
    a = dp_model_add_conv2d(m, "a", DP_MODEL_INPUT, 3, 3, 2, 1, 1, 0, &ei);
    s = dp_model_add_add(m, "sum", a, DP_MODEL_INPUT, &ei);
    cr_assert_eq(dp_model_finalize(m, &ei), DP_ESHAPE, "%s", ei.msg);
    dp_model_free(m);

    /* Matching shapes work, including the input as an operand. */
    m = dp_model_new(3, 8, 8);
    a = dp_model_add_conv2d(m, "a", DP_MODEL_INPUT, 3, 3, 1, 1, 1, 0, &ei);
    s = dp_model_add_add(m, "sum", a, DP_MODEL_INPUT, &ei);
    cr_assert_eq(dp_model_finalize(m, &ei), DP_OK, "%s", ei.msg);
    cr_assert_eq(m->layers[s].out_c, 3);
    dp_model_free(m);
    DP_ASSERT_NO_LEAKS();
}

Test(model, building_errors)
{
    struct dp_errinfo ei = {DP_OK, ""};
    struct dp_model *m = dp_model_new(1, 4, 4);
    cr_assert_eq(dp_model_add_unary(m, "r", DP_OP_RELU, DP_MODEL_INPUT, &ei), 0);

    cr_assert_eq(dp_model_add_unary(m, "r", DP_OP_RELU, 0, &ei), DP_EEXIST);
    cr_assert(strstr(ei.msg, "duplicate layer name 'r'") != NULL, "%s", ei.msg);

    cr_assert_eq(dp_model_add_unary(m, "x", DP_OP_RELU, 1, &ei), DP_EINVAL);
    cr_assert(strstr(ei.msg, "not an earlier layer") != NULL, "%s", ei.msg);
    cr_assert_eq(dp_model_add_unary(m, "x", DP_OP_RELU, -2, &ei), DP_EINVAL);

    int two[2] = {0, 0};
    cr_assert_eq(dp_model_add_layer(m, "x", DP_OP_RELU, two, 2, NULL, &ei), DP_EINVAL);
    cr_assert(strstr(ei.msg, "takes 1 input(s), got 2") != NULL, "%s", ei.msg);
    cr_assert_eq(dp_model_add_layer(m, "x", DP_OP_ADD, two, 1, NULL, &ei), DP_EINVAL);
    cr_assert_eq(dp_model_add_layer(m, "x", DP_OP__COUNT, two, 1, NULL, &ei), DP_EINVAL);
    cr_assert_eq(dp_model_add_unary(m, "", DP_OP_RELU, 0, &ei), DP_EINVAL);
    char longname[DP_NAME_MAX + 1];
    memset(longname, 'n', DP_NAME_MAX);
    longname[DP_NAME_MAX] = '\0';
    cr_assert_eq(dp_model_add_unary(m, longname, DP_OP_RELU, 0, &ei), DP_EINVAL);
    longname[DP_NAME_MAX - 1] = '\0';
    cr_assert_eq(dp_model_add_unary(m, longname, DP_OP_RELU, 0, &ei), 1, "%s", ei.msg);

    cr_assert_eq(dp_model_finalize(m, &ei), DP_OK, "%s", ei.msg);
    cr_assert_eq(dp_model_finalize(m, &ei), DP_OK, "finalize is idempotent");
    cr_assert_eq(dp_model_add_unary(m, "late", DP_OP_RELU, 0, &ei), DP_EINVAL);
    cr_assert(strstr(ei.msg, "already finalized") != NULL, "%s", ei.msg);
    dp_model_free(m);
    dp_model_free(NULL);
    DP_ASSERT_NO_LEAKS();
}

Test(model, finalize_errors)
{
    struct dp_errinfo ei = {DP_OK, ""};
    struct dp_model *m = dp_model_new(1, 4, 4);
    cr_assert_eq(dp_model_finalize(m, &ei), DP_EINVAL);
    cr_assert(strstr(ei.msg, "no layers") != NULL, "%s", ei.msg);
    dp_model_free(m);

    m = dp_model_new(0, 4, 4);
    dp_model_add_unary(m, "r", DP_OP_RELU, DP_MODEL_INPUT, &ei);
    cr_assert_eq(dp_model_finalize(m, &ei), DP_ESHAPE);
    cr_assert(strstr(ei.msg, "bad model input shape 0x4x4") != NULL, "%s", ei.msg);
    dp_model_free(m);

    struct dp_op_attrs a;
    memset(&a, 0, sizeof(a));
    a.eps = 0.0f;
    a.momentum = 0.1f;
    cr_assert_eq(mt_one_layer(2, 4, 4, DP_OP_BN2D, &a, &m, &ei), DP_EINVAL);
    cr_assert(strstr(ei.msg, "eps must be > 0") != NULL, "%s", ei.msg);
    dp_model_free(m);

    memset(&a, 0, sizeof(a));
    a.p = 1.0f;
    cr_assert_eq(mt_one_layer(2, 4, 4, DP_OP_DROPOUT, &a, &m, &ei), DP_EINVAL);
    dp_model_free(m);

    memset(&a, 0, sizeof(a));
    cr_assert_eq(mt_one_layer(2, 4, 4, DP_OP_LINEAR, &a, &m, &ei), DP_EINVAL);
    cr_assert(strstr(ei.msg, "out features must be in [1, 2^24]") != NULL, "%s", ei.msg);
    dp_model_free(m);
    DP_ASSERT_NO_LEAKS();
}

Test(model, op_names)
{
    for (int i = 0; i < DP_OP__COUNT; i++) {
        const char *n = dp_op_name((enum dp_op)i);
        cr_assert_not_null(n);
        enum dp_op op;
        cr_assert_eq(dp_op_from_name(n, &op), DP_OK);
        cr_assert_eq((int)op, i);
    }
    cr_assert_null(dp_op_name(DP_OP__COUNT));
    cr_assert_null(dp_op_name((enum dp_op) - 1));
    enum dp_op op;
    cr_assert_eq(dp_op_from_name("conv3d", &op), DP_EFORMAT);
    cr_assert_str_eq(dp_op_name(DP_OP_CONV2D), "conv2d");
    cr_assert_str_eq(dp_op_name(DP_OP_BN2D), "bn2d");
    DP_ASSERT_NO_LEAKS();
}

Test(model, allocation_failure_while_building)
{
    long n;
    for (n = 0; n < 10000; n++) {
        struct dp_errinfo ei = {DP_OK, ""};
        enum dp_err err = DP_OK;
        dp_alloc_fail_after(n);
        struct dp_model *m = dp_model_new(1, 8, 8);
        if (m == NULL) {
            err = DP_ENOMEM;
        } else {
            int prev = DP_MODEL_INPUT;
            char name[16];
            /* Enough layers and parameters to make both arrays grow. */
            for (int i = 0; i < 20 && err == DP_OK; i++) {
                snprintf(name, sizeof(name), "c%d", i);
                int r = dp_model_add_conv2d(m, name, prev, 2, 3, 1, 1, 1, 1, &ei);
                if (r < 0)
                    err = (enum dp_err)r;
                prev = r;
            }
            if (err == DP_OK)
                err = dp_model_finalize(m, &ei);
        }
        dp_alloc_fail_reset();
        dp_model_free(m);
        if (err == DP_OK)
            break;
        cr_assert_eq(err, DP_ENOMEM, "fail after %ld: %s", n, ei.msg);
    }
    cr_assert_gt(n, 3);
    cr_assert_lt(n, 10000);
    DP_ASSERT_NO_LEAKS();
}
