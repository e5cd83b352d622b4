/*
 * The op table (common/op.h): every op has a complete row, the attribute
 * groups a row lists are the only fields its shape inference reads, and
 * the row's input count is what graph JSON is read with.
 */
#include <criterion/criterion.h>
#include <float.h>
#include <math.h>
#include <string.h>

#include <jansson.h>

#include "common/model.h"
#include "common/model_io.h"
#include "tests/unit/test_util.h"

Test(op, every_op_has_a_complete_row)
{
    for (int i = 0; i < DP_OP__COUNT; i++) {
        const struct dp_op_info *oi = dp_op_info((enum dp_op)i);
        cr_assert_not_null(oi, "op %d", i);
        cr_assert_not_null(oi->name, "op %d has no name", i);
        cr_assert_not_null(oi->infer, "op %s has no shape inference", oi->name);
        cr_assert(oi->n_inputs >= 1 && oi->n_inputs <= DP_MAX_INPUTS, "op %s: %d inputs", oi->name,
                  oi->n_inputs);
        enum dp_op back;
        cr_assert_eq(dp_op_from_name(oi->name, &back), DP_OK, "%s", oi->name);
        cr_assert_eq((int)back, i, "op names are unique ('%s')", oi->name);
        cr_assert(!oi->compressible || oi->chan == DP_OP_CHAN_STARTS,
                  "op %s: a compressible weight reads every input channel", oi->name);
    }
    cr_assert_null(dp_op_info(DP_OP__COUNT));
    cr_assert_null(dp_op_name((enum dp_op) - 1));
    enum dp_op o;
    cr_assert_eq(dp_op_from_name("rnn", &o), DP_EFORMAT);
}

/* A valid layer of every op on a 2x9x9 input (odd, so that ceil_mode matters);
 * both inputs of a two-input op are the model input. */
static struct dp_op_attrs op_sample(enum dp_op op)
{
    struct dp_op_attrs a = {0};
    switch (op) {
        case DP_OP_CONV2D:
            a.out_ch = 4, a.kh = a.kw = 3, a.sh = a.sw = 1, a.pt = a.pl = a.pb = a.pr = 1;
            a.dh = a.dw = 1, a.groups = 1, a.has_bias = 1;
            break;
        case DP_OP_LINEAR:
            a.out_ch = 5, a.has_bias = 1;
            break;
        case DP_OP_MAXPOOL:
        case DP_OP_AVGPOOL:
            a.kh = a.kw = 2, a.sh = a.sw = 2, a.dh = a.dw = 1, a.count_include_pad = 1;
            break;
        case DP_OP_BN2D:
            a.eps = 1e-5f, a.momentum = 0.1f;
            break;
        case DP_OP_DROPOUT:
            a.p = 0.5f;
            break;
        case DP_OP_SOFTMAX:
            a.axis = a.axis_end = 1;
            break;
        case DP_OP_CONCAT:
            a.axis = 1;
            break;
        case DP_OP_CLIP:
            a.lo = -1.0f, a.hi = 1.0f;
            break;
        case DP_OP_RESHAPE:
            a.to_c = 18, a.to_h = 9, a.to_w = 1;
            break;
        case DP_OP_HARDSIGMOID:
            a.alpha = 0.2f, a.beta = 0.5f;
            break;
        case DP_OP_MEAN:
            a.axis = 2, a.axis_end = 3;
            break;
        case DP_OP_SLICE:
            a.axis = 1, a.start = 1, a.end = 2;
            break;
        case DP_OP_SHUFFLE:
            a.groups = 2;
            break;
        case DP_OP_CONST:
            a.to_c = 2, a.to_h = 1, a.to_w = 1;
            break;
        case DP_OP_LSTM:
        case DP_OP_GRU:
            a.out_ch = 6, a.block = 4; /* on a 1x9x9 input: 9 steps of 9 features */
            break;
        case DP_OP_CIRC_LINEAR:
            a.out_ch = 10, a.has_bias = 1, a.block = 4;
            break;
        case DP_OP_CIRC_CONV2D:
            a.out_ch = 4, a.kh = a.kw = 3, a.sh = a.sw = 1, a.pt = a.pl = a.pb = a.pr = 1;
            a.dh = a.dw = 1, a.groups = 1, a.has_bias = 1, a.block = 2;
            break;
        case DP_OP_SIGMOID:
        case DP_OP_HARDSWISH:
        case DP_OP_SILU:
        case DP_OP_ADD_BCAST:
        case DP_OP_MUL:
        case DP_OP_SUB:
        case DP_OP_DIV:
        case DP_OP_RELU:
        case DP_OP_RELU6:
        case DP_OP_GAP:
        case DP_OP_ADD:
        case DP_OP_FLATTEN:
        case DP_OP__COUNT:
            break;
    }
    return a;
}

/* Overwrites every attribute group outside mask with values that would
 * change (or break) shape inference if it read them. */
static void op_scribble(struct dp_op_attrs *a, unsigned mask)
{
    if (!(mask & DP_ATTR_OUT_CH))
        a->out_ch = 7;
    if (!(mask & DP_ATTR_WINDOW)) {
        a->kh = a->kw = 3, a->sh = a->sw = 2, a->dh = a->dw = 2;
        a->pt = a->pl = a->pb = a->pr = 1;
    }
    if (!(mask & DP_ATTR_GROUPS))
        a->groups = 3;
    if (!(mask & DP_ATTR_HAS_BIAS))
        a->has_bias = 1;
    if (!(mask & DP_ATTR_CEIL_MODE))
        a->ceil_mode = 1;
    if (!(mask & DP_ATTR_COUNT_PAD))
        a->count_include_pad = 1;
    if (!(mask & DP_ATTR_BN))
        a->eps = -1.0f, a->momentum = 7.0f;
    if (!(mask & DP_ATTR_P))
        a->p = 3.0f;
    if (!(mask & DP_ATTR_AXIS))
        a->axis = 9, a->axis_end = -2;
    if (!(mask & DP_ATTR_BOUNDS))
        a->lo = FLT_MAX, a->hi = -FLT_MAX;
    if (!(mask & DP_ATTR_TO))
        a->to_c = 5, a->to_h = 5, a->to_w = 5;
    if (!(mask & DP_ATTR_AB))
        a->alpha = NAN, a->beta = INFINITY;
    if (!(mask & DP_ATTR_RANGE))
        a->start = 7, a->end = 3;
    if (!(mask & DP_ATTR_BLOCK))
        a->block = 5;
}

static struct dp_model *op_one_layer(enum dp_op op, const struct dp_op_attrs *a)
{
    struct dp_errinfo ei = {0};
    /* A sequence (lstm, gru) is a one-channel map. */
    const int seq = op == DP_OP_LSTM || op == DP_OP_GRU;
    struct dp_model *m = dp_model_new(seq ? 1 : 2, 9, 9);
    cr_assert_not_null(m);
    const int in[2] = {DP_MODEL_INPUT, DP_MODEL_INPUT};
    int li = dp_model_add_layer(m, "x", op, in, dp_op_info(op)->n_inputs, a, &ei);
    cr_assert_eq(li, 0, "%s: %s", dp_op_name(op), ei.msg);
    cr_assert_eq(dp_model_infer(m, &ei), DP_OK, "%s: %s", dp_op_name(op), ei.msg);
    return m;
}

Test(op, inference_reads_only_the_attributes_the_row_lists)
{
    for (int i = 0; i < DP_OP__COUNT; i++) {
        const enum dp_op op = (enum dp_op)i;
        struct dp_op_attrs a = op_sample(op), b = a;
        op_scribble(&b, dp_op_info(op)->attrs);
        struct dp_model *ma = op_one_layer(op, &a), *mb = op_one_layer(op, &b);
        const struct dp_layer *la = &ma->layers[0], *lb = &mb->layers[0];
        cr_assert(la->out_c == lb->out_c && la->out_h == lb->out_h && la->out_w == lb->out_w,
                  "%s: %dx%dx%d vs %dx%dx%d", dp_op_name(op), la->out_c, la->out_h, la->out_w,
                  lb->out_c, lb->out_h, lb->out_w);
        cr_assert_eq(ma->n_params, mb->n_params, "%s", dp_op_name(op));
        for (int k = 0; k < ma->n_params; k++) {
            cr_assert_str_eq(ma->params[k].name, mb->params[k].name);
            cr_assert_eq(ma->params[k].numel, mb->params[k].numel, "%s", ma->params[k].name);
        }
        dp_model_free(ma);
        dp_model_free(mb);
    }
    DP_ASSERT_NO_LEAKS();
}

/* The graph reader once took every op but add to have one input, so a
 * model with a concat could be saved but not loaded. */
Test(op, graph_json_reads_each_op_with_its_input_count)
{
    struct dp_errinfo ei = {0};
    struct dp_model *m = dp_model_new(2, 4, 4), *back = NULL;
    cr_assert_not_null(m);
    int x = dp_model_add_unary(m, "r", DP_OP_RELU, DP_MODEL_INPUT, &ei);
    struct dp_op_attrs a = {0};
    a.axis = 1;
    const int in[2] = {x, DP_MODEL_INPUT};
    x = dp_model_add_layer(m, "cat", DP_OP_CONCAT, in, 2, &a, &ei);
    x = dp_model_add_unary(m, "fl", DP_OP_FLATTEN, x, &ei);
    x = dp_model_add_linear(m, "fc", x, 3, &ei);
    cr_assert_geq(x, 0, "%s", ei.msg);
    cr_assert_eq(dp_model_finalize(m, &ei), DP_OK, "%s", ei.msg);
    json_t *g = NULL;
    cr_assert_eq(dp_model_graph_to_json(m, &g, &ei), DP_OK, "%s", ei.msg);
    cr_assert_eq(dp_model_graph_from_json(g, &back, &ei), DP_OK, "%s", ei.msg);
    cr_assert_eq(back->n_layers, 4);
    cr_assert_eq(back->layers[1].n_inputs, 2);
    cr_assert_eq(back->layers[1].out_c, 4);
    cr_assert_eq(back->n_floats, m->n_floats);
    json_decref(g);
    dp_model_free(back);
    dp_model_free(m);
    DP_ASSERT_NO_LEAKS();
}

/* Every op's attributes survive graph JSON (checkpoints), the fields added
 * for issue 17 (alpha, beta, start, end) included. */
Test(op, graph_json_keeps_every_ops_attributes)
{
    for (int i = 0; i < DP_OP__COUNT; i++) {
        const enum dp_op op = (enum dp_op)i;
        struct dp_op_attrs a = op_sample(op);
        struct dp_model *m = op_one_layer(op, &a), *back = NULL;
        struct dp_errinfo ei = {0};
        cr_assert_eq(dp_model_finalize(m, &ei), DP_OK, "%s: %s", dp_op_name(op), ei.msg);
        json_t *g = NULL;
        cr_assert_eq(dp_model_graph_to_json(m, &g, &ei), DP_OK, "%s: %s", dp_op_name(op), ei.msg);
        cr_assert_eq(dp_model_graph_from_json(g, &back, &ei), DP_OK, "%s: %s", dp_op_name(op),
                     ei.msg);
        cr_expect_eq(back->layers[0].op, op);
        cr_expect(memcmp(&back->layers[0].a, &m->layers[0].a, sizeof(a)) == 0,
                  "%s: attributes differ after graph JSON", dp_op_name(op));
        json_decref(g);
        dp_model_free(back);
        dp_model_free(m);
    }
    DP_ASSERT_NO_LEAKS();
}
