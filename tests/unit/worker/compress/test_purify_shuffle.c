/*
 * Purification through ShuffleNet's channel routes (suite "purify_shuffle")
 * on a small hand-built net shaped like torchvision's ShuffleNetV2: a
 * downsampling block (two branches from the whole input, concatenated
 * along C, shuffled in 2 groups) and a basic block (the channels split in
 * halves by two slices, a 1x1 / depthwise 3x3 / 1x1 branch on the second
 * half, concatenated with the first half, shuffled):
 *  - dead filters inside a branch leave it; dead channels that meet at the
 *    same position of both shuffle groups leave the shuffle and the next
 *    block, whose slices are rewritten over the kept channels; purified
 *    logits equal the unpurified model's within 1e-4;
 *  - a dead channel whose partner in the other shuffle group is live
 *    stays, so that the shuffle stays a shuffle;
 *  - slices along H keep channels and a concat along H joins its operands'
 *    (a channel goes only if it is dead in both);
 *  - a channel dead in both shuffle groups is dead after the shuffle: a
 *    depthwise conv and BN reading it there are cleared, and it leaves;
 *  - magnitude filter pruning with purify runs on the net (it used to be
 *    refused) and purifies to smaller shapes with the same logits.
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

#define PS_IN    3
#define PS_HW    8
#define PS_CLASS 4

static int ps_bn(struct dp_model *m, const char *name, int x, int relu, struct dp_errinfo *ei)
{
    char n[64];
    snprintf(n, sizeof(n), "%s.bn", name);
    x = dp_model_add_bn2d(m, n, x, ei);
    snprintf(n, sizeof(n), "%s.relu", name);
    return x < 0 || !relu ? x : dp_model_add_unary(m, n, DP_OP_RELU, x, ei);
}

/* conv (k x k, stride s; depthwise when dw) + BN (+ ReLU). */
static int ps_conv(struct dp_model *m, const char *name, int x, int out, int k, int s, int dw,
                   int relu, struct dp_errinfo *ei)
{
    x = dp_model_add_conv2d(m, name, x, out, k, s, k / 2, dw ? out : 1, 0, ei);
    return x < 0 ? x : ps_bn(m, name, x, relu, ei);
}

static int ps_layer(struct dp_model *m, const char *name, enum dp_op op, int a, int b, int axis,
                    int start, int end, int groups, struct dp_errinfo *ei)
{
    struct dp_op_attrs at = {0};
    at.axis = axis, at.start = start, at.end = end, at.groups = groups;
    const int in[2] = {a, b};
    return dp_model_add_layer(m, name, op, in, b < -1 ? 1 : 2, &at, ei);
}

#define PS_NONE (-2) /* no second input */

/* The branch of a basic block: 1x1, depthwise 3x3 (no ReLU), 1x1. */
static int ps_branch(struct dp_model *m, const char *b, int x, int mid, int out, int stride,
                     struct dp_errinfo *ei)
{
    char n[64];
    snprintf(n, sizeof(n), "%s.pw1", b);
    x = ps_conv(m, n, x, mid, 1, 1, 0, 1, ei);
    snprintf(n, sizeof(n), "%s.dw", b);
    x = ps_conv(m, n, x, mid, 3, stride, 1, 0, ei);
    snprintf(n, sizeof(n), "%s.pw2", b);
    return ps_conv(m, n, x, out, 1, 1, 0, 1, ei);
}

/* stem 3->8; d1: down block 8->16 (left: dw/2, 1x1; right: 1x1, dw/2, 1x1);
 * b2: basic block on 16 (halves of 8); head 16->12, GAP, linear. */
static struct dp_model *ps_net(void)
{
    struct dp_errinfo ei = {0};
    struct dp_model *m = dp_model_new(PS_IN, PS_HW, PS_HW);
    const int stem = ps_conv(m, "stem", DP_MODEL_INPUT, 8, 3, 1, 0, 1, &ei);
    int l = ps_conv(m, "d1.l.dw", stem, 8, 3, 2, 1, 0, &ei);
    l = ps_conv(m, "d1.l.pw", l, 8, 1, 1, 0, 1, &ei);
    const int r = ps_branch(m, "d1.r", stem, 8, 8, 2, &ei);
    int x = ps_layer(m, "d1.cat", DP_OP_CONCAT, l, r, 1, 0, 0, 0, &ei);
    x = ps_layer(m, "d1.shuf", DP_OP_SHUFFLE, x, PS_NONE, 0, 0, 0, 2, &ei);
    const int x1 = ps_layer(m, "b2.x1", DP_OP_SLICE, x, PS_NONE, 1, 0, 8, 0, &ei);
    const int x2 = ps_layer(m, "b2.x2", DP_OP_SLICE, x, PS_NONE, 1, 8, 16, 0, &ei);
    const int br = ps_branch(m, "b2", x2, 8, 8, 1, &ei);
    x = ps_layer(m, "b2.cat", DP_OP_CONCAT, x1, br, 1, 0, 0, 0, &ei);
    x = ps_layer(m, "b2.shuf", DP_OP_SHUFFLE, x, PS_NONE, 0, 0, 0, 2, &ei);
    x = ps_conv(m, "head", x, 12, 1, 1, 0, 1, &ei);
    x = dp_model_add_unary(m, "gap", DP_OP_GAP, x, &ei);
    x = dp_model_add_unary(m, "flat", DP_OP_FLATTEN, x, &ei);
    x = dp_model_add_linear(m, "fc", x, PS_CLASS, &ei);
    cr_assert_geq(x, 0, "%s", ei.msg);
    cr_assert_eq(dp_model_finalize(m, &ei), DP_OK, "%s", ei.msg);
    nn_arch_init(m, 17);
    /* Non-trivial BN statistics and shifts, so that a dead channel's BN
     * output is not zero unless its scale and shift are. */
    struct nn_rng rng;
    nn_rng_seed(&rng, 6);
    for (int i = 0; i < m->n_params; i++) {
        const struct dp_param *p = &m->params[i];
        if (strstr(p->name, "running_mean") != NULL || strstr(p->name, ".bias") != NULL)
            for (size_t k = 0; k < p->numel; k++)
                m->data[p->offset + k] = 0.2f * ((float)nn_rng_uniform(&rng) - 0.5f);
    }
    return m;
}

static void ps_zero_filter(struct dp_model *m, const char *param, int o)
{
    const struct dp_param *w = dp_model_param_find(m, param);
    cr_assert_not_null(w, "%s", param);
    const size_t row = w->numel / (size_t)w->shape[0];
    memset(m->data + w->offset + (size_t)o * row, 0, row * sizeof(float));
}

static int64_t ps_dim(const struct dp_model *m, const char *param, int d)
{
    const struct dp_param *p = dp_model_param_find(m, param);
    cr_assert_not_null(p, "%s", param);
    return p->shape[d];
}

static const struct dp_op_attrs *ps_attrs(const struct dp_model *m, const char *layer)
{
    const int i = dp_model_layer_find(m, layer);
    cr_assert_geq(i, 0, "%s", layer);
    return &m->layers[i].a;
}

static int ps_out_c(const struct dp_model *m, const char *layer)
{
    const int i = dp_model_layer_find(m, layer);
    cr_assert_geq(i, 0, "%s", layer);
    return m->layers[i].out_c;
}

static int ps_removed(json_t *stats)
{
    return (int)json_integer_value(json_object_get(stats, "channels_removed"));
}

Test(purify_shuffle, dead_channels_leave_branches_shuffles_and_slices)
{
    struct dp_model *m = ps_net();
    /* Inside branches: 3 of d1.r's 8 middle channels, 4 of b2's. */
    for (int o = 0; o < 3; o++)
        ps_zero_filter(m, "d1.r.pw1.weight", o);
    for (int o = 0; o < 4; o++)
        ps_zero_filter(m, "b2.pw1.weight", o);
    /* Position 1 of both groups of d1's shuffle (its concat's channels 1
     * and 9): shuffled to 2 and 3, which are b2's first-half channels 2
     * and 3, at positions 2 and 3 of b2's shuffle, whose partners are b2's
     * branch outputs 2 and 3: dead too. */
    ps_zero_filter(m, "d1.l.pw.weight", 1);
    ps_zero_filter(m, "d1.r.pw2.weight", 1);
    ps_zero_filter(m, "b2.pw2.weight", 2);
    ps_zero_filter(m, "b2.pw2.weight", 3);
    cp_purify_zero_dead_filters(m, NULL);
    json_t *stats = NULL;
    struct dp_model *q = purify_fixture_same(m, &stats);
    cr_expect_eq(ps_dim(q, "stem.weight", 0), 8);
    cr_expect_eq(ps_dim(q, "d1.l.dw.weight", 0), 8);
    cr_expect_eq(ps_dim(q, "d1.l.pw.weight", 0), 7);
    cr_expect_eq(ps_dim(q, "d1.r.pw1.weight", 0), 5);
    cr_expect_eq(ps_dim(q, "d1.r.dw.weight", 0), 5);
    cr_expect_eq(ps_attrs(q, "d1.r.dw")->groups, 5);
    cr_expect_eq(ps_dim(q, "d1.r.pw2.weight", 1), 5);
    cr_expect_eq(ps_dim(q, "d1.r.pw2.weight", 0), 7);
    cr_expect_eq(ps_dim(q, "d1.r.pw2.bn.weight", 0), 7);
    /* The shuffle keeps its 2 groups over 14 channels. */
    cr_expect_eq(ps_out_c(q, "d1.cat"), 14);
    cr_expect_eq(ps_attrs(q, "d1.shuf")->groups, 2);
    /* b2's halves: shuffled channels 2 and 3 left the first. */
    cr_expect_eq(ps_attrs(q, "b2.x1")->start, 0);
    cr_expect_eq(ps_attrs(q, "b2.x1")->end, 6);
    cr_expect_eq(ps_attrs(q, "b2.x2")->start, 6);
    cr_expect_eq(ps_attrs(q, "b2.x2")->end, 14);
    cr_expect_eq(ps_dim(q, "b2.pw1.weight", 1), 8);
    cr_expect_eq(ps_dim(q, "b2.pw1.weight", 0), 4);
    cr_expect_eq(ps_dim(q, "b2.dw.weight", 0), 4);
    cr_expect_eq(ps_dim(q, "b2.pw2.weight", 1), 4);
    cr_expect_eq(ps_dim(q, "b2.pw2.weight", 0), 6);
    cr_expect_eq(ps_out_c(q, "b2.shuf"), 12);
    cr_expect_eq(ps_dim(q, "head.weight", 1), 12);
    cr_expect_eq(ps_dim(q, "head.weight", 0), 12);
    cr_expect_eq(ps_removed(stats), 3 + 4 + 2 + 2);
    cr_expect_lt(dp_model_n_trainable(q), dp_model_n_trainable(m));
    json_decref(stats);
    dp_model_free(q);
    dp_model_free(m);
    DP_ASSERT_NO_LEAKS();
}

Test(purify_shuffle, a_dead_channel_stays_when_its_shuffle_partner_is_live)
{
    struct dp_model *m = ps_net();
    /* d1's right branch output 5 is d1's concat channel 13, at position 5
     * of the second group; position 5 of the first (d1.l.pw's filter 5)
     * is live and read by b2 through the shuffle: both stay. */
    ps_zero_filter(m, "d1.r.pw2.weight", 5);
    /* b2's branch output 0 is the partner of b2's first half's channel 0,
     * live: it stays too. */
    ps_zero_filter(m, "b2.pw2.weight", 0);
    /* One middle channel of b2's branch does go. */
    ps_zero_filter(m, "b2.pw1.weight", 7);
    cp_purify_zero_dead_filters(m, NULL);
    json_t *stats = NULL;
    struct dp_model *q = purify_fixture_same(m, &stats);
    cr_expect_eq(ps_dim(q, "d1.r.pw2.weight", 0), 8);
    cr_expect_eq(ps_dim(q, "d1.l.pw.weight", 0), 8);
    cr_expect_eq(ps_out_c(q, "d1.shuf"), 16);
    cr_expect_eq(ps_attrs(q, "b2.x2")->end, 16);
    cr_expect_eq(ps_dim(q, "b2.pw2.weight", 0), 8);
    cr_expect_eq(ps_dim(q, "head.weight", 1), 16);
    cr_expect_eq(ps_dim(q, "b2.dw.weight", 0), 7);
    cr_expect_eq(ps_removed(stats), 1);
    json_decref(stats);
    dp_model_free(q);
    dp_model_free(m);
    DP_ASSERT_NO_LEAKS();
}

/* Two convs 3->6 (c1, c2), c1's top rows and c2's bottom rows (slices along
 * H) joined along H, conv 6->5, GAP, linear: the slices keep channels and
 * the concat joins its operands' channel c (like an add). */
Test(purify_shuffle, slices_and_concat_along_h_keep_channels)
{
    struct dp_errinfo ei = {0};
    struct dp_model *m = dp_model_new(PS_IN, PS_HW, PS_HW);
    const int c1 = ps_conv(m, "c1", DP_MODEL_INPUT, 6, 3, 1, 0, 1, &ei);
    const int c2 = ps_conv(m, "c2", DP_MODEL_INPUT, 6, 3, 1, 0, 1, &ei);
    const int top = ps_layer(m, "top", DP_OP_SLICE, c1, PS_NONE, 2, 0, 3, 0, &ei);
    const int bot = ps_layer(m, "bot", DP_OP_SLICE, c2, PS_NONE, 2, 3, 8, 0, &ei);
    int x = ps_layer(m, "cat", DP_OP_CONCAT, bot, top, 2, 0, 0, 0, &ei);
    x = ps_conv(m, "c3", x, 5, 1, 1, 0, 1, &ei);
    x = dp_model_add_unary(m, "gap", DP_OP_GAP, x, &ei);
    x = dp_model_add_unary(m, "flat", DP_OP_FLATTEN, x, &ei);
    x = dp_model_add_linear(m, "fc", x, PS_CLASS, &ei);
    cr_assert_geq(x, 0, "%s", ei.msg);
    cr_assert_eq(dp_model_finalize(m, &ei), DP_OK, "%s", ei.msg);
    nn_arch_init(m, 3);
    for (int k = 0; k < 2; k++) {
        const struct dp_param *bb = dp_model_param_find(m, k ? "c2.bn.bias" : "c1.bn.bias");
        for (int c = 0; c < 6; c++)
            m->data[bb->offset + (size_t)c] = 0.1f;
    }
    /* Channel 1 is dead in both operands: it goes. Channel 4 is dead in
     * c1 only: the concat still carries c2's, so both stay. */
    ps_zero_filter(m, "c1.weight", 1);
    ps_zero_filter(m, "c2.weight", 1);
    ps_zero_filter(m, "c1.weight", 4);
    cp_purify_zero_dead_filters(m, NULL);
    json_t *stats = NULL;
    struct dp_model *q = purify_fixture_same(m, &stats);
    cr_expect_eq(ps_dim(q, "c1.weight", 0), 5);
    cr_expect_eq(ps_dim(q, "c2.weight", 0), 5);
    cr_expect_eq(ps_dim(q, "c1.bn.weight", 0), 5);
    cr_expect_eq(ps_out_c(q, "cat"), 5);
    cr_expect_eq(ps_attrs(q, "bot")->start, 3);
    cr_expect_eq(ps_dim(q, "c3.weight", 1), 5);
    cr_expect_eq(ps_removed(stats), 1);
    json_decref(stats);
    dp_model_free(q);
    dp_model_free(m);
    DP_ASSERT_NO_LEAKS();
}

/* Two convs 3->4 concatenated along C (8), shuffled in 2 groups, a
 * depthwise 3x3 conv with BN, conv 8->6, GAP, linear: a channel dead in
 * both groups is dead after the shuffle, so the depthwise kernel and BN
 * entries that read it are cleared and it leaves every layer. */
Test(purify_shuffle, dead_channels_through_a_shuffle_into_a_depthwise_conv)
{
    struct dp_errinfo ei = {0};
    struct dp_model *m = dp_model_new(PS_IN, PS_HW, PS_HW);
    const int c1 = ps_conv(m, "c1", DP_MODEL_INPUT, 4, 3, 1, 0, 1, &ei);
    const int c2 = ps_conv(m, "c2", DP_MODEL_INPUT, 4, 3, 1, 0, 1, &ei);
    int x = ps_layer(m, "cat", DP_OP_CONCAT, c1, c2, 1, 0, 0, 0, &ei);
    x = ps_layer(m, "shuf", DP_OP_SHUFFLE, x, PS_NONE, 0, 0, 0, 2, &ei);
    x = ps_conv(m, "dw", x, 8, 3, 1, 1, 0, &ei);
    x = ps_conv(m, "c3", x, 6, 1, 1, 0, 1, &ei);
    x = dp_model_add_unary(m, "gap", DP_OP_GAP, x, &ei);
    x = dp_model_add_unary(m, "flat", DP_OP_FLATTEN, x, &ei);
    x = dp_model_add_linear(m, "fc", x, PS_CLASS, &ei);
    cr_assert_geq(x, 0, "%s", ei.msg);
    cr_assert_eq(dp_model_finalize(m, &ei), DP_OK, "%s", ei.msg);
    nn_arch_init(m, 8);
    const struct dp_param *bb = dp_model_param_find(m, "dw.bn.bias");
    for (int c = 0; c < 8; c++)
        m->data[bb->offset + (size_t)c] = 0.1f;
    ps_zero_filter(m, "c1.weight", 2); /* concat channel 2: shuffled to 4 */
    ps_zero_filter(m, "c2.weight", 2); /* concat channel 6: shuffled to 5 */
    cp_purify_zero_dead_filters(m, NULL);
    const struct dp_param *bw = dp_model_param_find(m, "dw.bn.weight");
    for (int c = 0; c < 8; c++) {
        const int dead = c == 4 || c == 5;
        cr_expect_eq(m->data[bw->offset + (size_t)c] == 0.0f, dead, "channel %d", c);
        cr_expect_eq(m->data[bb->offset + (size_t)c] == 0.0f, dead, "channel %d", c);
    }
    json_t *stats = NULL;
    struct dp_model *q = purify_fixture_same(m, &stats);
    cr_expect_eq(ps_dim(q, "c1.weight", 0), 3);
    cr_expect_eq(ps_dim(q, "c2.weight", 0), 3);
    cr_expect_eq(ps_out_c(q, "shuf"), 6);
    cr_expect_eq(ps_dim(q, "dw.weight", 0), 6);
    cr_expect_eq(ps_dim(q, "c3.weight", 1), 6);
    cr_expect_eq(ps_removed(stats), 2);
    json_decref(stats);
    dp_model_free(q);
    dp_model_free(m);
    DP_ASSERT_NO_LEAKS();
}

/* Filter pruning with purify through the shuffles (refused before
 * purification followed them), then purification. */
Test(purify_shuffle, magnitude_filter_pruning_through_shuffles, .timeout = 300)
{
    struct nn_dataset all = {0}, train = {0}, test = {0};
    cr_assert_eq(nn_dataset_synthetic(&all, 160, PS_IN, PS_HW, PS_HW, PS_CLASS, 5), DP_OK);
    cr_assert_eq(nn_dataset_subset(&train, &all, 0, 128), DP_OK);
    cr_assert_eq(nn_dataset_subset(&test, &all, 128, 32), DP_OK);
    nn_dataset_free(&all);
    struct dp_model *m = ps_net();
    const char *text = "{\"method\":\"magnitude\",\"batch\":32,\"purify\":true,"
                       "\"retrain\":{\"epochs\":1},\"magnitude\":{\"steps\":1},\"layers\":["
                       "{\"match\":\"*.pw*\",\"prune\":{\"scheme\":\"filter\",\"rate\":2}}]}";
    struct dp_spec spec;
    struct dp_errinfo ei = {0};
    cr_assert_eq(dp_spec_parse(text, strlen(text), &spec, &ei), DP_OK, "%s", ei.msg);
    json_t *r = NULL;
    cr_assert_eq(admm_compress(m, &train, &test, &spec, NULL, &r, &ei), DP_OK, "%s", ei.msg);
    json_t *stats = NULL;
    struct dp_model *q = purify_fixture_same(m, &stats);
    /* Half the middle filters of each branch are pruned: they leave. */
    cr_expect_leq(ps_dim(q, "d1.r.dw.weight", 0), 4);
    cr_expect_leq(ps_dim(q, "b2.dw.weight", 0), 4);
    cr_expect_eq(ps_dim(q, "b2.pw2.weight", 1), ps_dim(q, "b2.dw.weight", 0));
    /* Whatever left the shuffles, they stay shuffles of whole groups. */
    cr_expect_eq(ps_out_c(q, "d1.shuf") % 2, 0);
    cr_expect_eq(ps_out_c(q, "b2.shuf") % 2, 0);
    cr_expect_eq(ps_attrs(q, "b2.x2")->end, ps_out_c(q, "d1.shuf"));
    cr_expect_lt(dp_model_n_trainable(q), dp_model_n_trainable(m));
    json_decref(stats);
    json_decref(r);
    dp_model_free(q);
    dp_model_free(m);
    nn_dataset_free(&train);
    nn_dataset_free(&test);
    DP_ASSERT_NO_LEAKS();
}
