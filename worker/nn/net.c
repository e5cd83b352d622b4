/*
 * The executor (see net.h): per-op dispatch table, buffer planning, and the
 * forward/backward walks over the layer list.
 */
#include "worker/nn/net.h"

#include <omp.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "common/alloc.h"
#include "common/log.h"
#include "worker/circulant/circ_conv2d.h"
#include "worker/circulant/circ_linear.h"
#include "worker/nn/act.h"
#include "worker/nn/batchnorm.h"
#include "worker/nn/bcast.h"
#include "worker/nn/concat.h"
#include "worker/nn/conv2d.h"
#include "worker/nn/conv_dnnl.h"
#include "worker/nn/eltwise.h"
#include "worker/nn/gru.h"
#include "worker/nn/linear.h"
#include "worker/nn/loss.h"
#include "worker/nn/lstm.h"
#include "worker/nn/mean.h"
#include "worker/nn/pool.h"
#include "worker/nn/shuffle.h"
#include "worker/nn/slice.h"
#include "worker/nn/softmax.h"

struct nn_net_layer {
    float *out;  /* (max_batch, out size) */
    float *dout; /* same shape */
    const float *in[DP_MAX_INPUTS];
    float *din[DP_MAX_INPUTS];
    void *cache; /* the op's (struct nn_layer_ops.cache_bytes), NULL when it has none */
    void *state; /* the op's (struct nn_layer_ops.state_new), NULL when it has none */
    /* conv2d through oneDNN: primitives for the full batch, and for the
     * last other batch size seen (a partial last batch, evaluation). */
    struct nn_conv_dnnl *cd_full, *cd_part, *cd_cur;
    int cd_failed;         /* oneDNN declined this layer: use the conv2d.h kernels */
    enum nn_layout layout; /* memory order of out and dout */
};

/* ---- Per-op functions ---------------------------------------------------- */

/* How an op treats oneDNN's blocked layout (NCHW16C); see net_plan_layouts. */
enum nn_block {
    NN_BLOCK_NONE = 0,  /* reads and writes NCHW only */
    NN_BLOCK_CONV,      /* blocked in and out when oneDNN runs it (net_conv_wants_dnnl) */
    NN_BLOCK_FOLLOWS,   /* per channel: its output is blocked exactly when all its inputs are */
    NN_BLOCK_READS,     /* reads a blocked input, writes NCHW (global pooling) */
    NN_BLOCK_READS_1X1, /* reads a blocked input that is a 1x1 map (the same memory order) */
};

/*
 * The engine's row for an op, indexed by enum dp_op like common/op.c's
 * table; nn_net_new refuses a model with an op that has no row here, and
 * tests/unit/common/test_op.c checks that every op has one.
 */
struct nn_layer_ops {
    int (*forward)(struct nn_net *net, int li, int n, int train); /* 0, or -1: see op_conv_fwd */
    void (*backward)(struct nn_net *net, int li, int n);
    enum nn_block block;
    /* Bytes of per-layer cache for batches of cnt / out size samples (cnt
     * = max_batch * per-sample output size), kept from forward to
     * backward in nn_net_layer.cache; NULL for none. */
    size_t (*cache_bytes)(const struct dp_layer *l, size_t cnt);
    int alias; /* output and its gradient are input 0's memory (no copy, no work) */
    /* Per-layer state that is not a flat cache (FFT plans and spectra of a
     * circulant layer): made once by nn_net_new for batches of up to
     * max_batch samples, kept in nn_net_layer.state, released by
     * state_free (which takes NULL). NULL for none. */
    enum dp_err (*state_new)(struct nn_net *net, int li, void **state, struct dp_errinfo *ei);
    void (*state_free)(void *state);
};

static float *net_param(struct nn_net *net, const struct dp_layer *l, int k)
{
    return k < l->n_params ? net->m->data + net->m->params[l->first_param + k].offset : NULL;
}

static float *net_pgrad(struct nn_net *net, const struct dp_layer *l, int k)
{
    return k < l->n_params ? net->grad + net->m->params[l->first_param + k].offset : NULL;
}

static void net_in_shape(const struct nn_net *net, const struct dp_layer *l, int *c, int *h, int *w)
{
    const struct dp_model *m = net->m;
    if (l->inputs[0] == DP_MODEL_INPUT) {
        *c = m->in_c;
        *h = m->in_h;
        *w = m->in_w;
    } else {
        const struct dp_layer *p = &m->layers[l->inputs[0]];
        *c = p->out_c;
        *h = p->out_h;
        *w = p->out_w;
    }
}

static struct nn_conv2d_dims net_conv_dims(const struct nn_net *net, const struct dp_layer *l,
                                           int n)
{
    struct nn_conv2d_dims d;
    net_in_shape(net, l, &d.C, &d.H, &d.W);
    d.B = n;
    d.OC = l->out_c;
    d.OH = l->out_h;
    d.OW = l->out_w;
    d.kh = l->a.kh;
    d.kw = l->a.kw;
    d.sh = l->a.sh;
    d.sw = l->a.sw;
    d.pt = l->a.pt;
    d.pl = l->a.pl;
    d.dh = l->a.dh;
    d.dw = l->a.dw;
    d.groups = l->a.groups;
    d.threads = net->n_threads;
    return d;
}

static struct nn_pool_dims net_pool_dims(const struct nn_net *net, const struct dp_layer *l, int n)
{
    struct nn_pool_dims d;
    net_in_shape(net, l, &d.C, &d.H, &d.W);
    d.B = n;
    d.OH = l->out_h;
    d.OW = l->out_w;
    d.kh = l->a.kh;
    d.kw = l->a.kw;
    d.sh = l->a.sh;
    d.sw = l->a.sw;
    d.pt = l->a.pt;
    d.pl = l->a.pl;
    d.pb = l->a.pb;
    d.pr = l->a.pr;
    d.count_include_pad = l->a.count_include_pad;
    return d;
}

static size_t net_out_n(const struct nn_net *net, int li, int n)
{
    return (size_t)n * dp_model_out_size(net->m, li);
}

/*
 * Which convolutions go to oneDNN. Its JIT kernels work on channel blocks
 * of 16 and pad anything else, so they win when both channel counts are
 * multiples of 16 (ResNet: 1.6x the im2col path end to end) and lose on
 * odd counts such as LeNet's 1->20->50, where im2col+OpenBLAS is faster.
 * The rule depends only on shapes, so a run's numbers do not depend on
 * timing (docs/benchmarks.md has the measurements).
 */
static int net_conv_wants_dnnl(const struct nn_net *net, int li)
{
    const struct dp_layer *l = &net->m->layers[li];
    if (net->dnnl == NULL || net->layers[li].cd_failed)
        return 0;
    int c, h, w;
    net_in_shape(net, l, &c, &h, &w);
    /* A first layer (3 colour channels) has its own oneDNN kernel that
     * writes blocked channels straight from the image. */
    return l->out_c % 16 == 0 && (c % 16 == 0 || l->inputs[0] == DP_MODEL_INPUT);
}

static enum nn_layout net_in_layout(const struct nn_net *net, const struct dp_layer *l, int k)
{
    return l->inputs[k] == DP_MODEL_INPUT ? NN_LAYOUT_NCHW : net->layers[l->inputs[k]].layout;
}

/* The oneDNN primitives for batch n, built on first use for a batch size
 * other than the full one; NULL when this layer runs on the conv2d.h kernels. */
static struct nn_conv_dnnl *net_conv_plan(struct nn_net *net, int li, int n)
{
    struct nn_net_layer *s = &net->layers[li];
    if (net->dnnl == NULL || s->cd_failed || !net_conv_wants_dnnl(net, li))
        return NULL;
    if (s->cd_full != NULL && nn_conv_dnnl_batch(s->cd_full) == n)
        return s->cd_full;
    if (s->cd_part != NULL && nn_conv_dnnl_batch(s->cd_part) == n)
        return s->cd_part;
    const struct dp_layer *l = &net->m->layers[li];
    struct nn_conv2d_dims d = net_conv_dims(net, l, n);
    struct nn_conv_dnnl *c = NULL;
    struct dp_errinfo ei = {DP_OK, ""};
    if (nn_conv_dnnl_new(net->dnnl, &d, l->a.has_bias, net_in_layout(net, l, 0), s->layout, &c,
                         &ei) != DP_OK) {
        DP_LOG(DP_LOG_WARN, "layer '%s': %s; using the im2col kernels", l->name, ei.msg);
        s->cd_failed = 1;
        return NULL;
    }
    if (n == net->max_batch && s->cd_full == NULL) {
        s->cd_full = c;
    } else {
        nn_conv_dnnl_free(s->cd_part);
        s->cd_part = c;
    }
    return c;
}

static int op_conv_fwd(struct nn_net *net, int li, int n, int train)
{
    (void)train;
    const struct dp_layer *l = &net->m->layers[li];
    struct nn_net_layer *s = &net->layers[li];
    s->cd_cur = net_conv_plan(net, li, n);
    if (s->cd_cur != NULL) {
        nn_conv_dnnl_forward(s->cd_cur, s->out, s->in[0], net_param(net, l, 0),
                             l->a.has_bias ? net_param(net, l, 1) : NULL);
        return 0;
    }
    /* The im2col kernels read and write NCHW only: a layer planned around
     * blocked tensors cannot fall back (its primitives failed for this
     * batch size, which in practice means memory ran out). */
    if (s->layout != NN_LAYOUT_NCHW || net_in_layout(net, l, 0) != NN_LAYOUT_NCHW)
        return -1;
    struct nn_conv2d_dims d = net_conv_dims(net, l, n);
    nn_conv2d_forward(net->layers[li].out, net->scratch, net->layers[li].in[0],
                      net_param(net, l, 0), l->a.has_bias ? net_param(net, l, 1) : NULL, &d);
    return 0;
}

static void op_conv_bwd(struct nn_net *net, int li, int n)
{
    const struct dp_layer *l = &net->m->layers[li];
    struct nn_net_layer *s = &net->layers[li];
    if (s->cd_cur != NULL) {
        nn_conv_dnnl_backward(s->cd_cur, s->din[0], net_pgrad(net, l, 0),
                              l->a.has_bias ? net_pgrad(net, l, 1) : NULL, s->dout,
                              net_param(net, l, 0));
        return;
    }
    struct nn_conv2d_dims d = net_conv_dims(net, l, n);
    nn_conv2d_backward(net->layers[li].din[0], net_pgrad(net, l, 0),
                       l->a.has_bias ? net_pgrad(net, l, 1) : NULL, net->scratch,
                       net->layers[li].dout, net->layers[li].in[0], net_param(net, l, 0), &d);
}

static int op_linear_fwd(struct nn_net *net, int li, int n, int train)
{
    (void)train;
    const struct dp_layer *l = &net->m->layers[li];
    int in = (int)dp_model_out_size(net->m, l->inputs[0]);
    nn_linear_forward(net->layers[li].out, net->layers[li].in[0], net_param(net, l, 0),
                      l->a.has_bias ? net_param(net, l, 1) : NULL, n, in, l->out_c);
    return 0;
}

static void op_linear_bwd(struct nn_net *net, int li, int n)
{
    const struct dp_layer *l = &net->m->layers[li];
    int in = (int)dp_model_out_size(net->m, l->inputs[0]);
    nn_linear_backward(net->layers[li].din[0], net_pgrad(net, l, 0),
                       l->a.has_bias ? net_pgrad(net, l, 1) : NULL, net->layers[li].dout,
                       net->layers[li].in[0], net_param(net, l, 0), n, in, l->out_c);
}

static int op_relu_fwd(struct nn_net *net, int li, int n, int train)
{
    (void)train;
    nn_relu_forward(net->layers[li].out, net->layers[li].in[0], net_out_n(net, li, n));
    return 0;
}

static void op_relu_bwd(struct nn_net *net, int li, int n)
{
    struct nn_net_layer *s = &net->layers[li];
    if (s->din[0] != NULL)
        nn_relu_backward(s->din[0], s->dout, s->in[0], net_out_n(net, li, n));
}

static int op_relu6_fwd(struct nn_net *net, int li, int n, int train)
{
    (void)train;
    nn_relu6_forward(net->layers[li].out, net->layers[li].in[0], net_out_n(net, li, n));
    return 0;
}

static void op_relu6_bwd(struct nn_net *net, int li, int n)
{
    struct nn_net_layer *s = &net->layers[li];
    if (s->din[0] != NULL)
        nn_relu6_backward(s->din[0], s->dout, s->in[0], net_out_n(net, li, n));
}

static int op_maxpool_fwd(struct nn_net *net, int li, int n, int train)
{
    (void)train;
    struct nn_pool_dims d = net_pool_dims(net, &net->m->layers[li], n);
    nn_maxpool_forward(net->layers[li].out, net->layers[li].cache, net->layers[li].in[0], &d);
    return 0;
}

static void op_maxpool_bwd(struct nn_net *net, int li, int n)
{
    struct nn_net_layer *s = &net->layers[li];
    struct nn_pool_dims d = net_pool_dims(net, &net->m->layers[li], n);
    if (s->din[0] != NULL)
        nn_maxpool_backward(s->din[0], s->dout, s->cache, &d);
}

static int op_avgpool_fwd(struct nn_net *net, int li, int n, int train)
{
    (void)train;
    struct nn_pool_dims d = net_pool_dims(net, &net->m->layers[li], n);
    nn_avgpool_forward(net->layers[li].out, net->layers[li].in[0], &d);
    return 0;
}

static void op_avgpool_bwd(struct nn_net *net, int li, int n)
{
    struct nn_net_layer *s = &net->layers[li];
    struct nn_pool_dims d = net_pool_dims(net, &net->m->layers[li], n);
    if (s->din[0] != NULL)
        nn_avgpool_backward(s->din[0], s->dout, &d);
}

static int op_gap_fwd(struct nn_net *net, int li, int n, int train)
{
    (void)train;
    const struct dp_layer *l = &net->m->layers[li];
    int c, h, w;
    net_in_shape(net, l, &c, &h, &w);
    if (net_in_layout(net, l, 0) == NN_LAYOUT_NCHW16C)
        nn_gap_forward_c16(net->layers[li].out, net->layers[li].in[0], n, c, h * w);
    else
        nn_gap_forward(net->layers[li].out, net->layers[li].in[0], n, c, h * w);
    return 0;
}

static void op_gap_bwd(struct nn_net *net, int li, int n)
{
    const struct dp_layer *l = &net->m->layers[li];
    struct nn_net_layer *s = &net->layers[li];
    int c, h, w;
    net_in_shape(net, l, &c, &h, &w);
    if (s->din[0] != NULL && net_in_layout(net, l, 0) == NN_LAYOUT_NCHW16C)
        nn_gap_backward_c16(s->din[0], s->dout, n, c, h * w);
    else if (s->din[0] != NULL)
        nn_gap_backward(s->din[0], s->dout, n, c, h * w);
}

static int op_bn_fwd(struct nn_net *net, int li, int n, int train)
{
    const struct dp_layer *l = &net->m->layers[li];
    struct nn_net_layer *s = &net->layers[li];
    float *stat = s->cache; /* mean, then rstd */
    const int C = l->out_c, HW = l->out_h * l->out_w;
    const int c16 = s->layout == NN_LAYOUT_NCHW16C;
    float *g = net_param(net, l, 0), *b = net_param(net, l, 1);
    float *rm = net_param(net, l, 2), *rv = net_param(net, l, 3);
    if (train && c16)
        nn_bn2d_forward_train_c16(s->out, stat, stat + C, rm, rv, s->in[0], g, b, n, C, HW,
                                  l->a.eps, l->a.momentum);
    else if (train)
        nn_bn2d_forward_train(s->out, stat, stat + C, rm, rv, s->in[0], g, b, n, C, HW, l->a.eps,
                              l->a.momentum);
    else if (c16)
        nn_bn2d_forward_eval_c16(s->out, s->in[0], g, b, rm, rv, n, C, HW, l->a.eps);
    else
        nn_bn2d_forward_eval(s->out, s->in[0], g, b, rm, rv, n, C, HW, l->a.eps);
    return 0;
}

static void op_bn_bwd(struct nn_net *net, int li, int n)
{
    const struct dp_layer *l = &net->m->layers[li];
    struct nn_net_layer *s = &net->layers[li];
    const float *stat = s->cache;
    const int C = l->out_c, HW = l->out_h * l->out_w;
    if (s->layout == NN_LAYOUT_NCHW16C)
        nn_bn2d_backward_c16(s->din[0], net_pgrad(net, l, 0), net_pgrad(net, l, 1), s->dout,
                             s->in[0], net_param(net, l, 0), stat, stat + C, n, C, HW);
    else
        nn_bn2d_backward(s->din[0], net_pgrad(net, l, 0), net_pgrad(net, l, 1), s->dout, s->in[0],
                         net_param(net, l, 0), stat, stat + C, n, C, HW);
}

static int op_add_fwd(struct nn_net *net, int li, int n, int train)
{
    (void)train;
    struct nn_net_layer *s = &net->layers[li];
    nn_add_forward(s->out, s->in[0], s->in[1], net_out_n(net, li, n));
    return 0;
}

static void op_add_bwd(struct nn_net *net, int li, int n)
{
    struct nn_net_layer *s = &net->layers[li];
    if (s->din[0] != NULL && s->din[1] != NULL)
        nn_add_backward(s->din[0], s->din[1], s->dout, net_out_n(net, li, n));
}

/* Flatten aliases its input (see net_plan), so both directions are free. */
static int op_flatten_fwd(struct nn_net *net, int li, int n, int train)
{
    (void)net, (void)li, (void)n, (void)train;
    return 0;
}

static void op_flatten_bwd(struct nn_net *net, int li, int n)
{
    (void)net, (void)li, (void)n;
}

static int op_dropout_fwd(struct nn_net *net, int li, int n, int train)
{
    const struct dp_layer *l = &net->m->layers[li];
    struct nn_net_layer *s = &net->layers[li];
    size_t cnt = net_out_n(net, li, n);
    if (train && l->a.p > 0.0f) {
        uint64_t seed = net->dropout_seed ^ (net->step * 0x9e3779b97f4a7c15ULL) ^ (uint64_t)li;
        nn_dropout_forward(s->out, s->cache, s->in[0], cnt, l->a.p, seed);
    } else {
        memcpy(s->out, s->in[0], cnt * sizeof(float));
        memset(s->cache, 1, cnt);
    }
    return 0;
}

static void op_dropout_bwd(struct nn_net *net, int li, int n)
{
    const struct dp_layer *l = &net->m->layers[li];
    struct nn_net_layer *s = &net->layers[li];
    float p = net->training ? l->a.p : 0.0f;
    if (s->din[0] != NULL)
        nn_dropout_backward(s->din[0], s->dout, s->cache, net_out_n(net, li, n), p);
}

/* ---- Ops added for ONNX import: softmax, concat, clip -------------------- */

/* The per-sample shape of layer li's input k (or of layer li's output for k < 0) as dims[3]. */
static void net_dims3(const struct nn_net *net, int li, int k, size_t dims[3])
{
    const struct dp_model *m = net->m;
    int src = k < 0 ? li : m->layers[li].inputs[k];
    if (src == DP_MODEL_INPUT) {
        dims[0] = (size_t)m->in_c;
        dims[1] = (size_t)m->in_h;
        dims[2] = (size_t)m->in_w;
    } else {
        dims[0] = (size_t)m->layers[src].out_c;
        dims[1] = (size_t)m->layers[src].out_h;
        dims[2] = (size_t)m->layers[src].out_w;
    }
}

/* Softmax over per-sample axes [axis, axis_end] as (outer, len, inner). */
static void net_softmax_split(const struct nn_net *net, int li, int n, size_t *outer, size_t *len,
                              size_t *inner)
{
    const struct dp_layer *l = &net->m->layers[li];
    size_t d[3];
    net_dims3(net, li, -1, d);
    *outer = (size_t)n;
    *len = *inner = 1;
    for (int k = 1; k <= 3; k++) {
        if (k < l->a.axis)
            *outer *= d[k - 1];
        else if (k <= l->a.axis_end)
            *len *= d[k - 1];
        else
            *inner *= d[k - 1];
    }
}

static int op_softmax_fwd(struct nn_net *net, int li, int n, int train)
{
    (void)train;
    size_t outer, len, inner;
    net_softmax_split(net, li, n, &outer, &len, &inner);
    nn_softmax_forward(net->layers[li].out, net->layers[li].in[0], outer, len, inner);
    return 0;
}

static void op_softmax_bwd(struct nn_net *net, int li, int n)
{
    struct nn_net_layer *s = &net->layers[li];
    size_t outer, len, inner;
    net_softmax_split(net, li, n, &outer, &len, &inner);
    if (s->din[0] != NULL)
        nn_softmax_backward(s->din[0], s->dout, s->out, outer, len, inner);
}

/* Concat along per-sample axis `axis` as (outer, a_len) + (outer, b_len). */
static void net_concat_split(const struct nn_net *net, int li, int n, size_t *outer, size_t *a_len,
                             size_t *b_len)
{
    const int axis = net->m->layers[li].a.axis;
    size_t da[3], db[3];
    net_dims3(net, li, 0, da);
    net_dims3(net, li, 1, db);
    *outer = (size_t)n;
    *a_len = *b_len = 1;
    for (int k = 1; k <= 3; k++) {
        if (k < axis) {
            *outer *= da[k - 1];
        } else {
            *a_len *= da[k - 1];
            *b_len *= db[k - 1];
        }
    }
}

static int op_concat_fwd(struct nn_net *net, int li, int n, int train)
{
    (void)train;
    struct nn_net_layer *s = &net->layers[li];
    size_t outer, a_len, b_len;
    net_concat_split(net, li, n, &outer, &a_len, &b_len);
    nn_concat_forward(s->out, s->in[0], s->in[1], outer, a_len, b_len);
    return 0;
}

static void op_concat_bwd(struct nn_net *net, int li, int n)
{
    struct nn_net_layer *s = &net->layers[li];
    size_t outer, a_len, b_len;
    net_concat_split(net, li, n, &outer, &a_len, &b_len);
    nn_concat_backward(s->din[0], s->din[1], s->dout, outer, a_len, b_len);
}

static int op_clip_fwd(struct nn_net *net, int li, int n, int train)
{
    (void)train;
    const struct dp_layer *l = &net->m->layers[li];
    nn_clip_forward(net->layers[li].out, net->layers[li].in[0], net_out_n(net, li, n), l->a.lo,
                    l->a.hi);
    return 0;
}

static void op_clip_bwd(struct nn_net *net, int li, int n)
{
    const struct dp_layer *l = &net->m->layers[li];
    struct nn_net_layer *s = &net->layers[li];
    if (s->din[0] != NULL)
        nn_clip_backward(s->din[0], s->dout, s->in[0], net_out_n(net, li, n), l->a.lo, l->a.hi);
}

/* Reshape: the same NCHW values under another per-sample shape; a copy (not
 * an alias like Flatten) so that the planner's layouts stay per layer. */
static int op_reshape_fwd(struct nn_net *net, int li, int n, int train)
{
    (void)train;
    memcpy(net->layers[li].out, net->layers[li].in[0], net_out_n(net, li, n) * sizeof(float));
    return 0;
}

static void op_reshape_bwd(struct nn_net *net, int li, int n)
{
    struct nn_net_layer *s = &net->layers[li];
    if (s->din[0] != NULL)
        nn_copy_backward(s->din[0], s->dout, net_out_n(net, li, n));
}

/* ---- Ops of the mobile networks (issue 17) ------------------------------- */

static int op_sigmoid_fwd(struct nn_net *net, int li, int n, int train)
{
    (void)train;
    nn_sigmoid_forward(net->layers[li].out, net->layers[li].in[0], net_out_n(net, li, n));
    return 0;
}

static void op_sigmoid_bwd(struct nn_net *net, int li, int n)
{
    struct nn_net_layer *s = &net->layers[li];
    if (s->din[0] != NULL)
        nn_sigmoid_backward(s->din[0], s->dout, s->out, net_out_n(net, li, n));
}

static int op_hardsigmoid_fwd(struct nn_net *net, int li, int n, int train)
{
    (void)train;
    const struct dp_layer *l = &net->m->layers[li];
    nn_hardsigmoid_forward(net->layers[li].out, net->layers[li].in[0], net_out_n(net, li, n),
                           l->a.alpha, l->a.beta);
    return 0;
}

static void op_hardsigmoid_bwd(struct nn_net *net, int li, int n)
{
    const struct dp_layer *l = &net->m->layers[li];
    struct nn_net_layer *s = &net->layers[li];
    if (s->din[0] != NULL)
        nn_hardsigmoid_backward(s->din[0], s->dout, s->in[0], net_out_n(net, li, n), l->a.alpha,
                                l->a.beta);
}

static int op_hardswish_fwd(struct nn_net *net, int li, int n, int train)
{
    (void)train;
    nn_hardswish_forward(net->layers[li].out, net->layers[li].in[0], net_out_n(net, li, n));
    return 0;
}

static void op_hardswish_bwd(struct nn_net *net, int li, int n)
{
    struct nn_net_layer *s = &net->layers[li];
    if (s->din[0] != NULL)
        nn_hardswish_backward(s->din[0], s->dout, s->in[0], net_out_n(net, li, n));
}

static int op_silu_fwd(struct nn_net *net, int li, int n, int train)
{
    (void)train;
    nn_silu_forward(net->layers[li].out, net->layers[li].in[0], net_out_n(net, li, n));
    return 0;
}

static void op_silu_bwd(struct nn_net *net, int li, int n)
{
    struct nn_net_layer *s = &net->layers[li];
    if (s->din[0] != NULL)
        nn_silu_backward(s->din[0], s->dout, s->in[0], net_out_n(net, li, n));
}

static struct nn_bcast_dims net_bcast_dims(const struct nn_net *net, int li, int n)
{
    struct nn_bcast_dims d;
    size_t o[3], a[3], b[3];
    net_dims3(net, li, -1, o);
    net_dims3(net, li, 0, a);
    net_dims3(net, li, 1, b);
    d.n = n;
    for (int k = 0; k < 3; k++) {
        d.o[k] = (int)o[k];
        d.a[k] = (int)a[k];
        d.b[k] = (int)b[k];
    }
    return d;
}

static enum nn_bcast_op net_bcast_op(enum dp_op op)
{
    return op == DP_OP_MUL         ? NN_BCAST_MUL
           : op == DP_OP_SUB       ? NN_BCAST_SUB
           : op == DP_OP_ADD_BCAST ? NN_BCAST_ADD
                                   : NN_BCAST_DIV;
}

/* mul, sub, div, add_bcast */
static int op_bcast_fwd(struct nn_net *net, int li, int n, int train)
{
    (void)train;
    struct nn_net_layer *s = &net->layers[li];
    struct nn_bcast_dims d = net_bcast_dims(net, li, n);
    nn_bcast_forward(s->out, s->in[0], s->in[1], &d, net_bcast_op(net->m->layers[li].op));
    return 0;
}

static void op_bcast_bwd(struct nn_net *net, int li, int n)
{
    struct nn_net_layer *s = &net->layers[li];
    struct nn_bcast_dims d = net_bcast_dims(net, li, n);
    nn_bcast_backward(s->din[0], s->din[1], s->dout, s->in[0], s->in[1], &d,
                      net_bcast_op(net->m->layers[li].op));
}

/* Slice along per-sample axis `axis` as (outer, len, inner). */
static void net_slice_split(const struct nn_net *net, int li, int n, size_t *outer, size_t *len,
                            size_t *inner)
{
    const int axis = net->m->layers[li].a.axis;
    size_t d[3];
    net_dims3(net, li, 0, d);
    *outer = (size_t)n;
    *inner = 1;
    for (int k = 1; k < axis; k++)
        *outer *= d[k - 1];
    for (int k = axis + 1; k <= 3; k++)
        *inner *= d[k - 1];
    *len = d[axis - 1];
}

static int op_slice_fwd(struct nn_net *net, int li, int n, int train)
{
    (void)train;
    const struct dp_layer *l = &net->m->layers[li];
    size_t outer, len, inner;
    net_slice_split(net, li, n, &outer, &len, &inner);
    nn_slice_forward(net->layers[li].out, net->layers[li].in[0], outer, len, inner,
                     (size_t)l->a.start, (size_t)l->a.end);
    return 0;
}

static void op_slice_bwd(struct nn_net *net, int li, int n)
{
    const struct dp_layer *l = &net->m->layers[li];
    struct nn_net_layer *s = &net->layers[li];
    size_t outer, len, inner;
    net_slice_split(net, li, n, &outer, &len, &inner);
    if (s->din[0] != NULL)
        nn_slice_backward(s->din[0], s->dout, outer, len, inner, (size_t)l->a.start,
                          (size_t)l->a.end);
}

static int op_shuffle_fwd(struct nn_net *net, int li, int n, int train)
{
    (void)train;
    const struct dp_layer *l = &net->m->layers[li];
    nn_shuffle_forward(net->layers[li].out, net->layers[li].in[0], n, l->out_c,
                       (size_t)l->out_h * l->out_w, l->a.groups);
    return 0;
}

static void op_shuffle_bwd(struct nn_net *net, int li, int n)
{
    const struct dp_layer *l = &net->m->layers[li];
    struct nn_net_layer *s = &net->layers[li];
    if (s->din[0] != NULL)
        nn_shuffle_backward(s->din[0], s->dout, n, l->out_c, (size_t)l->out_h * l->out_w,
                            l->a.groups);
}

/* A constant: its value for every sample; it has no gradient to pass on. */
static int op_const_fwd(struct nn_net *net, int li, int n, int train)
{
    (void)train;
    const struct dp_layer *l = &net->m->layers[li];
    const size_t per = dp_model_out_size(net->m, li);
    const float *v = net_param(net, l, 0);
    for (int k = 0; k < n; k++)
        memcpy(net->layers[li].out + (size_t)k * per, v, per * sizeof(float));
    return 0;
}

static void op_const_bwd(struct nn_net *net, int li, int n)
{
    (void)net, (void)li, (void)n;
}

/* Mean over input axes [axis, axis_end] as (outer, len, inner). */
static void net_mean_split(const struct nn_net *net, int li, int n, size_t *outer, size_t *len,
                           size_t *inner)
{
    const struct dp_layer *l = &net->m->layers[li];
    size_t d[3];
    net_dims3(net, li, 0, d);
    *outer = (size_t)n;
    *len = *inner = 1;
    for (int k = 1; k <= 3; k++) {
        if (k < l->a.axis)
            *outer *= d[k - 1];
        else if (k <= l->a.axis_end)
            *len *= d[k - 1];
        else
            *inner *= d[k - 1];
    }
}

static int op_mean_fwd(struct nn_net *net, int li, int n, int train)
{
    (void)train;
    size_t outer, len, inner;
    net_mean_split(net, li, n, &outer, &len, &inner);
    nn_mean_forward(net->layers[li].out, net->layers[li].in[0], outer, len, inner);
    return 0;
}

static void op_mean_bwd(struct nn_net *net, int li, int n)
{
    struct nn_net_layer *s = &net->layers[li];
    size_t outer, len, inner;
    net_mean_split(net, li, n, &outer, &len, &inner);
    if (s->din[0] != NULL)
        nn_mean_backward(s->din[0], s->dout, outer, len, inner);
}

/* ---- Block-circulant layers (issue 15; worker/circulant) ----------------- */

/* The layer's circ_op (FFT plans, buffers, weight spectra) for batches of
 * up to max_batch, made by nn_net_new through state_new. */
static enum dp_err net_circ_state_done(const struct dp_layer *l, enum dp_err err,
                                       struct dp_errinfo *ei)
{
    if (err == DP_OK)
        return DP_OK;
    char msg[sizeof ei->msg];
    snprintf(msg, sizeof msg, "%s", ei->msg);
    return dp_errinfo_set(ei, err, "layer '%s': %s", l->name, msg);
}

static enum dp_err op_circ_linear_state(struct nn_net *net, int li, void **state,
                                        struct dp_errinfo *ei)
{
    const struct dp_layer *l = &net->m->layers[li];
    struct circ_dims d;
    circ_dims_init(&d, l->out_c, (int)dp_model_out_size(net->m, l->inputs[0]), l->a.block);
    struct circ_op *op = NULL;
    enum dp_err err = circ_op_new(&d, net->max_batch, &op, ei);
    *state = op;
    return net_circ_state_done(l, err, ei);
}

static enum dp_err op_circ_conv_state(struct nn_net *net, int li, void **state,
                                      struct dp_errinfo *ei)
{
    const struct dp_layer *l = &net->m->layers[li];
    struct nn_conv2d_dims d = net_conv_dims(net, l, net->max_batch);
    struct circ_op *op = NULL;
    enum dp_err err = circ_conv2d_op_new(&d, l->a.block, &op, ei);
    *state = op;
    return net_circ_state_done(l, err, ei);
}

static void op_circ_state_free(void *state)
{
    circ_op_free(state);
}

static int op_circ_linear_fwd(struct nn_net *net, int li, int n, int train)
{
    (void)train;
    const struct dp_layer *l = &net->m->layers[li];
    struct nn_net_layer *s = &net->layers[li];
    circ_linear_forward(s->state, s->out, s->in[0], net_param(net, l, 0),
                        l->a.has_bias ? net_param(net, l, 1) : NULL, n);
    return 0;
}

static void op_circ_linear_bwd(struct nn_net *net, int li, int n)
{
    const struct dp_layer *l = &net->m->layers[li];
    struct nn_net_layer *s = &net->layers[li];
    circ_linear_backward(s->state, s->din[0], net_pgrad(net, l, 0),
                         l->a.has_bias ? net_pgrad(net, l, 1) : NULL, s->dout, s->in[0], n);
}

static int op_circ_conv_fwd(struct nn_net *net, int li, int n, int train)
{
    (void)train;
    const struct dp_layer *l = &net->m->layers[li];
    struct nn_net_layer *s = &net->layers[li];
    struct nn_conv2d_dims d = net_conv_dims(net, l, n);
    circ_conv2d_forward(s->state, s->out, s->in[0], net_param(net, l, 0),
                        l->a.has_bias ? net_param(net, l, 1) : NULL, &d);
    return 0;
}

static void op_circ_conv_bwd(struct nn_net *net, int li, int n)
{
    const struct dp_layer *l = &net->m->layers[li];
    struct nn_net_layer *s = &net->layers[li];
    struct nn_conv2d_dims d = net_conv_dims(net, l, n);
    circ_conv2d_backward(s->state, s->din[0], net_pgrad(net, l, 0),
                         l->a.has_bias ? net_pgrad(net, l, 1) : NULL, s->dout, s->in[0], &d);
}

/* ---- Recurrent layers (issue 15) ----------------------------------------- */

/* lstm and gru: sizes for batch n and their two matrices (params 0 and 1;
 * 2 and 3 are the biases), dense or block-circulant by the block attribute. */
static void net_rnn_setup(struct nn_net *net, int li, int n, struct nn_rnn_dims *d,
                          struct nn_rnn_mat *w_ih, struct nn_rnn_mat *w_hh)
{
    const struct dp_layer *l = &net->m->layers[li];
    int c, h, w;
    net_in_shape(net, l, &c, &h, &w);
    d->B = n;
    d->T = h;
    d->F = w;
    d->H = l->a.out_ch;
    const int G = (l->op == DP_OP_LSTM ? 4 : 3) * d->H;
    const struct nn_rnn_fft *fft = net->layers[li].state;
    nn_rnn_mat_init(w_ih, net_param(net, l, 0), G, d->F, l->a.block, fft ? fft->ih : NULL);
    nn_rnn_mat_init(w_hh, net_param(net, l, 1), G, d->H, l->a.block, fft ? fft->hh : NULL);
}

/* A circulant lstm or gru runs its products on the FFT path, with plans
 * for max_batch sequences; a dense one has no state. */
static enum dp_err op_rnn_state(struct nn_net *net, int li, void **state, struct dp_errinfo *ei)
{
    const struct dp_layer *l = &net->m->layers[li];
    *state = NULL;
    if (l->a.block == 0)
        return DP_OK;
    struct nn_rnn_dims d;
    int c;
    net_in_shape(net, l, &c, &d.T, &d.F);
    d.B = net->max_batch;
    d.H = l->a.out_ch;
    struct nn_rnn_fft *fft = NULL;
    enum dp_err err = nn_rnn_fft_new(&d, l->op == DP_OP_LSTM ? 4 : 3, l->a.block, &fft, ei);
    *state = fft;
    return net_circ_state_done(l, err, ei);
}

static void op_rnn_state_free(void *state)
{
    nn_rnn_fft_free(state);
}

/* lstm and gru share their signatures: one engine pair runs either. */
typedef void net_rnn_fwd_fn(float *out, float *cache, const float *x, const struct nn_rnn_mat *w_ih,
                            const struct nn_rnn_mat *w_hh, const float *b_ih, const float *b_hh,
                            const struct nn_rnn_dims *d);
typedef void net_rnn_bwd_fn(float *dx, float *dw_ih, float *dw_hh, float *db_ih, float *db_hh,
                            float *cache, const float *dout, const float *x, const float *out,
                            const struct nn_rnn_mat *w_ih, const struct nn_rnn_mat *w_hh,
                            const struct nn_rnn_dims *d);

static int op_rnn_fwd(struct nn_net *net, int li, int n, int train)
{
    (void)train;
    const struct dp_layer *l = &net->m->layers[li];
    struct nn_net_layer *s = &net->layers[li];
    struct nn_rnn_dims d;
    struct nn_rnn_mat w_ih, w_hh;
    net_rnn_setup(net, li, n, &d, &w_ih, &w_hh);
    net_rnn_fwd_fn *fwd = l->op == DP_OP_LSTM ? nn_lstm_forward : nn_gru_forward;
    fwd(s->out, s->cache, s->in[0], &w_ih, &w_hh, net_param(net, l, 2), net_param(net, l, 3), &d);
    return 0;
}

static void op_rnn_bwd(struct nn_net *net, int li, int n)
{
    const struct dp_layer *l = &net->m->layers[li];
    struct nn_net_layer *s = &net->layers[li];
    struct nn_rnn_dims d;
    struct nn_rnn_mat w_ih, w_hh;
    net_rnn_setup(net, li, n, &d, &w_ih, &w_hh);
    net_rnn_bwd_fn *bwd = l->op == DP_OP_LSTM ? nn_lstm_backward : nn_gru_backward;
    bwd(s->din[0], net_pgrad(net, l, 0), net_pgrad(net, l, 1), net_pgrad(net, l, 2),
        net_pgrad(net, l, 3), s->cache, s->dout, s->in[0], s->out, &w_ih, &w_hh, &d);
}

/* Per-layer caches: what backward needs from forward besides activations. */
static size_t op_bn_cache(const struct dp_layer *l, size_t cnt)
{
    (void)cnt;
    return (size_t)l->out_c * 2 * sizeof(float); /* batch mean and rstd per channel */
}

static size_t op_maxpool_cache(const struct dp_layer *l, size_t cnt)
{
    (void)l;
    return dp_size_mul(cnt, sizeof(int)); /* arg-max per output */
}

static size_t op_dropout_cache(const struct dp_layer *l, size_t cnt)
{
    (void)l;
    return cnt; /* keep mask, one byte per output */
}

/* lstm, gru: cnt = max_batch * T * H; gates, cell states and the
 * backward-through-time workspace (lstm.h, gru.h). */
static size_t op_lstm_cache(const struct dp_layer *l, size_t cnt)
{
    (void)l;
    return dp_size_mul(nn_lstm_cache_floats(cnt), sizeof(float));
}

static size_t op_gru_cache(const struct dp_layer *l, size_t cnt)
{
    (void)l;
    return dp_size_mul(nn_gru_cache_floats(cnt), sizeof(float));
}

/* Columns: forward, backward, blocked layout, cache, alias, state_new, state_free. */
static const struct nn_layer_ops net_ops[DP_OP__COUNT] = {
    [DP_OP_CONV2D] = {op_conv_fwd, op_conv_bwd, NN_BLOCK_CONV, NULL, 0},
    [DP_OP_LINEAR] = {op_linear_fwd, op_linear_bwd, NN_BLOCK_READS_1X1, NULL, 0},
    [DP_OP_RELU] = {op_relu_fwd, op_relu_bwd, NN_BLOCK_FOLLOWS, NULL, 0},
    [DP_OP_RELU6] = {op_relu6_fwd, op_relu6_bwd, NN_BLOCK_FOLLOWS, NULL, 0},
    [DP_OP_MAXPOOL] = {op_maxpool_fwd, op_maxpool_bwd, NN_BLOCK_NONE, op_maxpool_cache, 0},
    [DP_OP_AVGPOOL] = {op_avgpool_fwd, op_avgpool_bwd, NN_BLOCK_NONE, NULL, 0},
    [DP_OP_GAP] = {op_gap_fwd, op_gap_bwd, NN_BLOCK_READS, NULL, 0},
    [DP_OP_BN2D] = {op_bn_fwd, op_bn_bwd, NN_BLOCK_FOLLOWS, op_bn_cache, 0},
    [DP_OP_ADD] = {op_add_fwd, op_add_bwd, NN_BLOCK_FOLLOWS, NULL, 0},
    [DP_OP_FLATTEN] = {op_flatten_fwd, op_flatten_bwd, NN_BLOCK_READS_1X1, NULL, 1},
    [DP_OP_DROPOUT] = {op_dropout_fwd, op_dropout_bwd, NN_BLOCK_FOLLOWS, op_dropout_cache, 0},
    [DP_OP_SOFTMAX] = {op_softmax_fwd, op_softmax_bwd, NN_BLOCK_NONE, NULL, 0},
    [DP_OP_CONCAT] = {op_concat_fwd, op_concat_bwd, NN_BLOCK_NONE, NULL, 0},
    [DP_OP_CLIP] = {op_clip_fwd, op_clip_bwd, NN_BLOCK_NONE, NULL, 0},
    [DP_OP_RESHAPE] = {op_reshape_fwd, op_reshape_bwd, NN_BLOCK_NONE, NULL, 0},
    [DP_OP_SIGMOID] = {op_sigmoid_fwd, op_sigmoid_bwd, NN_BLOCK_FOLLOWS, NULL, 0},
    [DP_OP_HARDSIGMOID] = {op_hardsigmoid_fwd, op_hardsigmoid_bwd, NN_BLOCK_FOLLOWS, NULL, 0},
    [DP_OP_HARDSWISH] = {op_hardswish_fwd, op_hardswish_bwd, NN_BLOCK_FOLLOWS, NULL, 0},
    [DP_OP_SILU] = {op_silu_fwd, op_silu_bwd, NN_BLOCK_FOLLOWS, NULL, 0},
    [DP_OP_MUL] = {op_bcast_fwd, op_bcast_bwd, NN_BLOCK_NONE, NULL, 0},
    [DP_OP_SUB] = {op_bcast_fwd, op_bcast_bwd, NN_BLOCK_NONE, NULL, 0},
    [DP_OP_DIV] = {op_bcast_fwd, op_bcast_bwd, NN_BLOCK_NONE, NULL, 0},
    [DP_OP_SLICE] = {op_slice_fwd, op_slice_bwd, NN_BLOCK_NONE, NULL, 0},
    [DP_OP_SHUFFLE] = {op_shuffle_fwd, op_shuffle_bwd, NN_BLOCK_NONE, NULL, 0},
    [DP_OP_CONST] = {op_const_fwd, op_const_bwd, NN_BLOCK_NONE, NULL, 0},
    [DP_OP_ADD_BCAST] = {op_bcast_fwd, op_bcast_bwd, NN_BLOCK_NONE, NULL, 0},
    [DP_OP_MEAN] = {op_mean_fwd, op_mean_bwd, NN_BLOCK_NONE, NULL, 0},
    [DP_OP_CIRC_LINEAR] = {op_circ_linear_fwd, op_circ_linear_bwd, NN_BLOCK_READS_1X1, NULL, 0,
                           op_circ_linear_state, op_circ_state_free},
    [DP_OP_CIRC_CONV2D] = {op_circ_conv_fwd, op_circ_conv_bwd, NN_BLOCK_NONE, NULL, 0,
                           op_circ_conv_state, op_circ_state_free},
    [DP_OP_LSTM] = {op_rnn_fwd, op_rnn_bwd, NN_BLOCK_NONE, op_lstm_cache, 0, op_rnn_state,
                    op_rnn_state_free},
    [DP_OP_GRU] = {op_rnn_fwd, op_rnn_bwd, NN_BLOCK_NONE, op_gru_cache, 0, op_rnn_state,
                   op_rnn_state_free},
};

int nn_net_op_supported(enum dp_op op)
{
    return dp_op_info(op) != NULL && net_ops[op].forward != NULL && net_ops[op].backward != NULL;
}

/* ---- Planning ------------------------------------------------------------ */

/* Whether layer i's output can stay in NCHW16C: it is made by a oneDNN
 * convolution, or follows its input's layout through a per-channel op. */
static int net_layout_can_block(const struct nn_net *net, int i)
{
    const struct dp_layer *l = &net->m->layers[i];
    switch (net_ops[l->op].block) {
        case NN_BLOCK_CONV:
            return net_conv_wants_dnnl(net, i);
        case NN_BLOCK_FOLLOWS:
            for (int k = 0; k < l->n_inputs; k++) {
                if (net_in_layout(net, l, k) != NN_LAYOUT_NCHW16C)
                    return 0;
            }
            return 1;
        case NN_BLOCK_NONE:
        case NN_BLOCK_READS:
        case NN_BLOCK_READS_1X1:
            break;
    }
    return 0;
}

/* Whether layer i reads input k correctly when that input is NCHW16C. */
static int net_layout_accepts_block(const struct nn_net *net, int i, int k)
{
    const struct dp_layer *l = &net->m->layers[i];
    switch (net_ops[l->op].block) {
        case NN_BLOCK_CONV:
            return net_conv_wants_dnnl(net, i);
        case NN_BLOCK_READS:
            return 1;
        case NN_BLOCK_FOLLOWS:
            /* Layout-preserving: fine exactly when the output is blocked too. */
            return net->layers[i].layout == NN_LAYOUT_NCHW16C;
        case NN_BLOCK_READS_1X1: {
            /* A 1x1 map has the same memory order in both layouts. */
            const struct dp_layer *p = &net->m->layers[l->inputs[k]];
            return p->out_h * p->out_w == 1;
        }
        case NN_BLOCK_NONE:
            break;
    }
    return 0;
}

/*
 * Chooses each activation's layout. Keeping chains of oneDNN convolutions,
 * BatchNorm, ReLU and residual Adds in oneDNN's blocked layout removes the
 * reorders around every convolution (four full passes over its input and
 * output per training step). Start from every output that could be
 * blocked, then turn back to NCHW every output some consumer cannot read
 * blocked (pooling, im2col convolutions, a flatten of a map), and through
 * layout-preserving layers their inputs, until nothing changes.
 */
static void net_plan_layouts(struct nn_net *net)
{
    const struct dp_model *m = net->m;
    for (int i = 0; i < m->n_layers; i++) {
        net->layers[i].layout = NN_LAYOUT_NCHW;
        if (net->dnnl != NULL && m->layers[i].out_c % 16 == 0 && net_layout_can_block(net, i))
            net->layers[i].layout = NN_LAYOUT_NCHW16C;
    }
    for (int changed = 1; changed;) {
        changed = 0;
        for (int i = m->n_layers - 1; i >= 0; i--) {
            const struct dp_layer *l = &m->layers[i];
            if (!net_layout_can_block(net, i) && net->layers[i].layout == NN_LAYOUT_NCHW16C) {
                net->layers[i].layout = NN_LAYOUT_NCHW; /* an Add with one plain input */
                changed = 1;
            }
            for (int k = 0; k < l->n_inputs; k++) {
                int src = l->inputs[k];
                if (src != DP_MODEL_INPUT && net->layers[src].layout == NN_LAYOUT_NCHW16C &&
                    !net_layout_accepts_block(net, i, k)) {
                    net->layers[src].layout = NN_LAYOUT_NCHW;
                    changed = 1;
                }
            }
        }
    }
}

/* Rounds a byte count up to 64 so every slice stays cache-line aligned. */
static size_t net_align(size_t n)
{
    return (n + 63u) & ~(size_t)63u;
}

/* Lays out (or, with base == NULL, only measures) the activation block. */
static size_t net_plan(struct nn_net *net, char *base)
{
    const struct dp_model *m = net->m;
    const size_t B = (size_t)net->max_batch;
    size_t off = 0;
    for (int i = 0; i < m->n_layers; i++) {
        const struct dp_layer *l = &m->layers[i];
        struct nn_net_layer *s = &net->layers[i];
        const size_t cnt = B * dp_model_out_size(m, i);
        if (net_ops[l->op].alias) {
            /* Alias: filled when inputs are wired below. */
        } else {
            size_t bytes = net_align(dp_size_mul(cnt, sizeof(float)));
            if (base != NULL) {
                s->out = (float *)(base + off);
                s->dout = (float *)(base + off + bytes);
            }
            off += 2 * bytes;
        }
        if (net_ops[l->op].cache_bytes != NULL) {
            if (base != NULL)
                s->cache = base + off;
            off += net_align(net_ops[l->op].cache_bytes(l, cnt));
        }
    }
    if (base == NULL)
        return off;
    for (int i = 0; i < m->n_layers; i++) {
        const struct dp_layer *l = &m->layers[i];
        struct nn_net_layer *s = &net->layers[i];
        for (int k = 0; k < l->n_inputs; k++) {
            int src = l->inputs[k];
            s->in[k] = src == DP_MODEL_INPUT ? net->input : net->layers[src].out;
            /* The model input needs no gradient for training; skip its backward. */
            s->din[k] = src == DP_MODEL_INPUT ? NULL : net->layers[src].dout;
        }
        if (net_ops[l->op].alias) {
            s->out = (float *)s->in[0];
            s->dout = s->din[0];
        }
    }
    return off;
}

enum dp_err nn_net_new(struct dp_model *m, int max_batch, struct nn_net **out,
                       struct dp_errinfo *ei)
{
    return nn_net_new_ex(m, max_batch, 1, out, ei);
}

enum dp_err nn_net_new_ex(struct dp_model *m, int max_batch, int use_dnnl, struct nn_net **out,
                          struct dp_errinfo *ei)
{
    *out = NULL;
    if (!m->finalized)
        return dp_errinfo_set(ei, DP_EINVAL, "the model must be finalized before training");
    if (max_batch < 1 || max_batch > 65536)
        return dp_errinfo_set(ei, DP_EINVAL, "batch size %d is outside [1, 65536]", max_batch);
    const struct dp_layer *last = &m->layers[m->n_layers - 1];
    if (last->out_h != 1 || last->out_w != 1)
        return dp_errinfo_set(ei, DP_ESHAPE,
                              "the last layer '%s' must produce a vector of logits, not a "
                              "%dx%dx%d map",
                              last->name, last->out_c, last->out_h, last->out_w);
    if (net_ops[last->op].alias && last->inputs[0] == DP_MODEL_INPUT)
        return dp_errinfo_set(ei, DP_EINVAL, "the model computes nothing");
    for (int i = 0; i < m->n_layers; i++) {
        if (!nn_net_op_supported(m->layers[i].op))
            return dp_errinfo_set(ei, DP_EUNSUPPORTED,
                                  "layer '%s': the engine cannot run op %s (no row in its op "
                                  "table)",
                                  m->layers[i].name, dp_op_name(m->layers[i].op));
    }
    struct nn_net *net = dp_calloc(1, sizeof(*net));
    if (net == NULL)
        return dp_errinfo_set(ei, DP_ENOMEM, "out of memory");
    net->m = m;
    net->max_batch = max_batch;
    net->n_classes = last->out_c;
    net->dropout_seed = 0x5eed;
    /* Read once: the convolution scratch below is sized for this team, and
     * forward and backward run every kernel with it (net_threads_enter). */
    net->n_threads = omp_get_max_threads();
    const size_t B = (size_t)max_batch;
    const size_t in_n = B * dp_model_out_size(m, DP_MODEL_INPUT);
    size_t scratch = 1;
    for (int i = 0; i < m->n_layers; i++) {
        if (m->layers[i].op == DP_OP_CONV2D) {
            struct nn_conv2d_dims d = net_conv_dims(net, &m->layers[i], max_batch);
            size_t s = nn_conv2d_scratch_floats(&d);
            scratch = s > scratch ? s : scratch;
        }
    }
    net->layers = dp_calloc((size_t)m->n_layers, sizeof(struct nn_net_layer));
    net->zeroed = dp_calloc((size_t)m->n_layers, 1);
    net->grad = dp_malloc_aligned(dp_size_mul(m->n_floats ? m->n_floats : 1, sizeof(float)));
    net->input = dp_malloc_aligned(dp_size_mul(in_n, sizeof(float)));
    net->probs = dp_malloc_aligned(dp_size_mul(B * (size_t)net->n_classes, sizeof(float)));
    net->scratch = dp_malloc_aligned(dp_size_mul(scratch, sizeof(float)));
    net->act_bytes = net_plan(net, NULL);
    net->act_block = dp_malloc_aligned(net->act_bytes ? net->act_bytes : 64);
    if (net->layers == NULL || net->zeroed == NULL || net->grad == NULL || net->input == NULL ||
        net->probs == NULL || net->scratch == NULL || net->act_block == NULL) {
        const size_t act_mb = net->act_bytes >> 20;
        nn_net_free(net);
        return dp_errinfo_set(ei, DP_ENOMEM,
                              "out of memory sizing the network for batch %d (%zu MB of "
                              "activations)",
                              max_batch, act_mb);
    }
    net_plan(net, net->act_block);
    memset(net->grad, 0, m->n_floats * sizeof(float));
    for (int i = 0; i < m->n_layers; i++) {
        const struct nn_layer_ops *ops = &net_ops[m->layers[i].op];
        if (ops->state_new == NULL)
            continue;
        enum dp_err err = ops->state_new(net, i, &net->layers[i].state, ei);
        if (err) {
            nn_net_free(net);
            return err;
        }
    }
    /* oneDNN is the fast path for convolutions; without it (or for a layer
     * it declines) the im2col kernels of conv2d.h run instead. */
    if (use_dnnl && nn_dnnl_new(&net->dnnl, ei) != DP_OK)
        DP_LOG(DP_LOG_WARN, "%s; convolutions use the im2col kernels", ei->msg);
    /* Build the full-batch primitives; a layer oneDNN declines runs on the
     * im2col kernels, which changes the layouts around it, so plan again
     * and rebuild until every planned layer has its primitives. */
    for (int again = net->dnnl != NULL; again;) {
        again = 0;
        net_plan_layouts(net);
        for (int i = 0; i < m->n_layers; i++) {
            if (m->layers[i].op != DP_OP_CONV2D || !net_conv_wants_dnnl(net, i))
                continue;
            if (net_conv_plan(net, i, max_batch) == NULL)
                again = 1;
        }
        for (int i = 0; again && i < m->n_layers; i++) {
            nn_conv_dnnl_free(net->layers[i].cd_full);
            nn_conv_dnnl_free(net->layers[i].cd_part);
            net->layers[i].cd_full = net->layers[i].cd_part = NULL;
        }
    }
    if (net->dnnl == NULL)
        net_plan_layouts(net);
    *out = net;
    return DP_OK;
}

void nn_net_free(struct nn_net *net)
{
    if (net == NULL)
        return;
    dp_free(net->prof);
    for (int i = 0; net->layers != NULL && i < net->m->n_layers; i++) {
        nn_conv_dnnl_free(net->layers[i].cd_full);
        nn_conv_dnnl_free(net->layers[i].cd_part);
        if (net_ops[net->m->layers[i].op].state_free != NULL)
            net_ops[net->m->layers[i].op].state_free(net->layers[i].state);
    }
    nn_dnnl_free(net->dnnl);
    dp_free(net->layers);
    dp_free(net->zeroed);
    dp_free_aligned(net->grad);
    dp_free_aligned(net->input);
    dp_free_aligned(net->probs);
    dp_free_aligned(net->scratch);
    dp_free_aligned(net->act_block);
    dp_free(net);
}

void nn_net_zero_grad(struct nn_net *net)
{
    memset(net->grad, 0, net->m->n_floats * sizeof(float));
}

enum nn_layout nn_net_layout(const struct nn_net *net, int layer)
{
    return net->layers[layer].layout;
}

size_t nn_net_bytes(const struct nn_net *net)
{
    const struct dp_model *m = net->m;
    size_t B = (size_t)net->max_batch;
    return net->act_bytes + m->n_floats * sizeof(float) +
           B * dp_model_out_size(m, DP_MODEL_INPUT) * sizeof(float) +
           B * (size_t)net->n_classes * sizeof(float);
}

/* ---- Forward and backward ------------------------------------------------ */

static const float *net_forward(struct nn_net *net, const float *x, int n, int train);
static void net_backward(struct nn_net *net, const int32_t *labels, int n);

enum dp_err nn_net_profile_enable(struct nn_net *net)
{
    if (net->prof == NULL)
        net->prof = dp_calloc(2 * (size_t)net->m->n_layers, sizeof(double));
    return net->prof != NULL ? DP_OK : DP_ENOMEM;
}

static double net_clock(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/*
 * Sets the calling thread's OpenMP team size to the one the net was built
 * for and returns the previous one, for net_threads_leave. The caller may
 * have changed it since nn_net_new (omp_set_num_threads is per thread and
 * anyone may call it); a larger team would overflow the scratch sized at
 * construction, and a different one would change oneDNN's and the
 * kernels' work split, so results would depend on the caller's state.
 */
static int net_threads_enter(const struct nn_net *net)
{
    const int saved = omp_get_max_threads();
    if (saved != net->n_threads)
        omp_set_num_threads(net->n_threads);
    return saved;
}

static void net_threads_leave(const struct nn_net *net, int saved)
{
    if (saved != net->n_threads)
        omp_set_num_threads(saved);
}

const float *nn_net_forward(struct nn_net *net, const float *x, int n, int train)
{
    const int saved = net_threads_enter(net);
    const float *out = net_forward(net, x, n, train);
    net_threads_leave(net, saved);
    return out;
}

static const float *net_forward(struct nn_net *net, const float *x, int n, int train)
{
    const struct dp_model *m = net->m;
    memcpy(net->input, x, (size_t)n * dp_model_out_size(m, DP_MODEL_INPUT) * sizeof(float));
    net->training = train;
    if (train)
        net->step++;
    for (int i = 0; i < m->n_layers; i++) {
        const double t0 = net->prof != NULL ? net_clock() : 0.0;
        if (net_ops[m->layers[i].op].forward(net, i, n, train) != 0) {
            DP_LOG(DP_LOG_ERROR, "layer '%s': no convolution primitives for a batch of %d",
                   m->layers[i].name, n);
            return NULL;
        }
        if (net->prof != NULL)
            net->prof[2 * i] += net_clock() - t0;
    }
    return net->layers[m->n_layers - 1].out;
}

float nn_net_loss(struct nn_net *net, const int32_t *labels, int n, int *correct)
{
    const float *logits = net->layers[net->m->n_layers - 1].out;
    if (correct != NULL)
        *correct = nn_xent_correct(logits, labels, n, net->n_classes);
    return nn_xent_forward(net->probs, logits, labels, n, net->n_classes);
}

/* The layer whose activation memory layer i uses (an alias such as Flatten uses its input's). */
static int net_alias_root(const struct dp_model *m, int i)
{
    while (i != DP_MODEL_INPUT && net_ops[m->layers[i].op].alias)
        i = m->layers[i].inputs[0];
    return i;
}

void nn_net_backward(struct nn_net *net, const int32_t *labels, int n)
{
    const int saved = net_threads_enter(net);
    net_backward(net, labels, n);
    net_threads_leave(net, saved);
}

static void net_backward(struct nn_net *net, const int32_t *labels, int n)
{
    const struct dp_model *m = net->m;
    /* Activation gradients accumulate (fan-out in residual nets), so each
     * must start at zero. Zeroing one just before its first consumer's
     * backward, rather than all of them up front, keeps it in cache for the
     * accumulation that follows. */
    uint8_t *zeroed = net->zeroed;
    memset(zeroed, 0, (size_t)m->n_layers);
    const int last = m->n_layers - 1;
    nn_xent_backward(net->layers[last].dout, net->probs, labels, n, net->n_classes);
    zeroed[net_alias_root(m, last)] = 1;
    for (int i = last; i >= 0; i--) {
        const struct dp_layer *l = &m->layers[i];
        for (int k = 0; k < l->n_inputs; k++) {
            int r = net_alias_root(m, l->inputs[k]);
            if (r != DP_MODEL_INPUT && !zeroed[r]) {
                memset(net->layers[r].dout, 0, (size_t)n * dp_model_out_size(m, r) * sizeof(float));
                zeroed[r] = 1;
            }
        }
        const double t0 = net->prof != NULL ? net_clock() : 0.0;
        net_ops[l->op].backward(net, i, n);
        if (net->prof != NULL)
            net->prof[2 * i + 1] += net_clock() - t0;
    }
}
