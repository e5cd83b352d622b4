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

/* Every op that can route channels has a route for each of its output
 * channels, inside its inputs, none twice; and routing is refined by axis. */
Test(op, routing_ops_route_every_channel_once)
{
    for (int i = 0; i < DP_OP__COUNT; i++) {
        const enum dp_op op = (enum dp_op)i;
        struct dp_op_attrs a = op_sample(op);
        struct dp_model *m = op_one_layer(op, &a);
        if (dp_op_info(op)->chan == DP_OP_CHAN_ROUTES) {
            cr_assert_eq(dp_layer_chan(m, 0), DP_OP_CHAN_ROUTES, "%s", dp_op_name(op));
            unsigned char seen[DP_MAX_INPUTS][2] = {{0}};
            for (int c = 0; c < m->layers[0].out_c; c++) {
                int k = -1;
                const int src = dp_layer_route(m, 0, c, &k);
                cr_assert(k >= 0 && k < dp_op_info(op)->n_inputs && src >= 0 && src < 2,
                          "%s: channel %d from input %d channel %d", dp_op_name(op), c, k, src);
                cr_assert(!seen[k][src], "%s: input %d channel %d routed twice", dp_op_name(op), k,
                          src);
                seen[k][src] = 1;
            }
        } else {
            int k = 0;
            cr_assert_eq(dp_layer_route(m, 0, 0, &k), -1, "%s", dp_op_name(op));
        }
        dp_model_free(m);
    }
    struct dp_op_attrs a = {0};
    a.axis = 2, a.start = 1, a.end = 3;
    struct dp_model *m = op_one_layer(DP_OP_SLICE, &a);
    cr_expect_eq(dp_layer_chan(m, 0), DP_OP_CHAN_KEEPS, "a slice along H keeps channels");
    dp_model_free(m);
    a.axis = 3;
    m = op_one_layer(DP_OP_CONCAT, &a);
    cr_expect_eq(dp_layer_chan(m, 0), DP_OP_CHAN_JOINS, "a concat along W joins channels");
    dp_model_free(m);
    DP_ASSERT_NO_LEAKS();
}

/* The routes and rewrites purification relies on, on 6 channels. */
Test(op, shuffle_slice_and_concat_routes_and_rewrites)
{
    struct dp_errinfo ei = {0};
    struct dp_model *m = dp_model_new(6, 2, 2);
    struct dp_op_attrs sh = {0}, sl = {0}, ca = {0};
    sh.groups = 2;
    sl.axis = 1, sl.start = 2, sl.end = 5;
    ca.axis = 1;
    const int in[2] = {DP_MODEL_INPUT, DP_MODEL_INPUT};
    cr_assert_eq(dp_model_add_layer(m, "shuf", DP_OP_SHUFFLE, in, 1, &sh, &ei), 0, "%s", ei.msg);
    cr_assert_eq(dp_model_add_layer(m, "slice", DP_OP_SLICE, in, 1, &sl, &ei), 1, "%s", ei.msg);
    cr_assert_eq(dp_model_add_layer(m, "cat", DP_OP_CONCAT, in, 2, &ca, &ei), 2, "%s", ei.msg);
    cr_assert_eq(dp_model_infer(m, &ei), DP_OK, "%s", ei.msg);
    /* shuffle: output j * 2 + i is input i * 3 + j */
    static const int shuf[6] = {0, 3, 1, 4, 2, 5};
    for (int c = 0; c < 6; c++) {
        int k = -1;
        cr_expect_eq(dp_layer_route(m, 0, c, &k), shuf[c], "shuffle channel %d", c);
        cr_expect_eq(k, 0);
        cr_expect_eq(dp_layer_route(m, 2, c, &k), c % 6, "concat channel %d", c);
    }
    for (int c = 6; c < 12; c++) {
        int k = -1;
        cr_expect_eq(dp_layer_route(m, 2, c, &k), c - 6, "concat channel %d", c);
        cr_expect_eq(k, 1);
    }
    int k = -1;
    cr_expect_eq(dp_layer_route(m, 1, 1, &k), 3);
    /* A shuffle keeping input 1 (group 0, position 1) must keep input 4
     * (group 1, position 1) too; its groups stay. */
    unsigned char keep0[6] = {0, 1, 0, 0, 0, 1}, keep1[6] = {1, 1, 1, 1, 1, 1};
    unsigned char *const keeps[2] = {keep0, keep1};
    struct dp_op_attrs out = m->layers[0].a;
    cr_expect_eq(dp_layer_reroute(m, 0, keeps, &out), 2);
    static const unsigned char want[6] = {0, 1, 1, 0, 1, 1};
    cr_expect_arr_eq(keep0, want, 6);
    cr_expect_eq(out.groups, 2);
    cr_expect_eq(dp_layer_reroute(m, 0, keeps, NULL), 0, "closed: nothing more to add");
    /* A slice [2, 5) with channels 0 and 3 gone is [1, 3) of the rest. */
    unsigned char ks[6] = {0, 1, 1, 0, 1, 1};
    unsigned char *const kss[1] = {ks};
    out = m->layers[1].a;
    cr_expect_eq(dp_layer_reroute(m, 1, kss, &out), 0);
    cr_expect_eq(out.start, 1);
    cr_expect_eq(out.end, 3);
    dp_model_free(m);
    DP_ASSERT_NO_LEAKS();
}
