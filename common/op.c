/*
 * The op table (see op.h): each op's row and its shape inference.
 *
 * DESIGN: one infer function per op (or per family sharing a rule), each
 * reading only the attribute groups its row lists, so that a new op is one
 * function and one row here plus its engine row (worker/nn/net.c). Window
 * ops share model_window_out, which follows PyTorch's output-size rule.
 */
#include "common/op.h"

#include <math.h>
#include <string.h>

#include "common/model.h"
#include "common/model_int.h"

/* ---- Shape inference helpers --------------------------------------------- */

/* Output length of a window op along one axis; < 1 when the window does not fit. */
static int op_window_out(int in, int k, int s, int p0, int p1, int d, int ceil_mode)
{
    int eff = d * (k - 1) + 1;
    int span = in + p0 + p1 - eff;
    if (span < 0 || s <= 0)
        return 0;
    int out = (ceil_mode ? (span + s - 1) / s : span / s) + 1;
    /* PyTorch rule: the last window must start inside the input or left padding. */
    if (ceil_mode && (out - 1) * s >= in + p0)
        out--;
    return out;
}

static enum dp_err op_check_window(const struct dp_layer *l, struct dp_errinfo *ei)
{
    const struct dp_op_attrs *a = &l->a;
    /* The upper bounds keep every window computation far from int overflow. */
    if (a->kh < 1 || a->kw < 1 || a->sh < 1 || a->sw < 1 || a->dh < 1 || a->dw < 1 || a->pt < 0 ||
        a->pl < 0 || a->pb < 0 || a->pr < 0 || a->kh > 1024 || a->kw > 1024 || a->sh > 1024 ||
        a->sw > 1024 || a->dh > 1024 || a->dw > 1024 || a->pt > 4096 || a->pl > 4096 ||
        a->pb > 4096 || a->pr > 4096)
        return dp_errinfo_set(ei, DP_EINVAL,
                              "layer '%s': kernel, stride and dilation must be in [1, 1024] "
                              "and padding in [0, 4096]",
                              l->name);
    return DP_OK;
}

/* Sets layer l's output shape. */
static void op_set_out(struct dp_layer *l, int c, int h, int w)
{
    l->out_c = c;
    l->out_h = h;
    l->out_w = w;
}

/* Adds layer i's weight of shape ws[0..ndim) and, when has_bias, its bias of ws[0] entries. */
static enum dp_err op_weight_bias_add(struct dp_model *m, int i, int ndim, const int64_t *ws,
                                      struct dp_errinfo *ei)
{
    enum dp_err err = dp_model__param_add(m, i, "weight", 1, ndim, ws, ei);
    if (!err && m->layers[i].a.has_bias)
        err = dp_model__param_add(m, i, "bias", 1, 1, ws, ei);
    return err;
}

/* ---- Shape inference per op ---------------------------------------------- */

static enum dp_err op_conv2d_infer(struct dp_model *m, int i, struct dp_errinfo *ei)
{
    struct dp_layer *l = &m->layers[i];
    const struct dp_op_attrs *a = &l->a;
    int c, h, w;
    dp_model__in_shape(m, l->inputs[0], &c, &h, &w);
    enum dp_err err = op_check_window(l, ei);
    if (err)
        return err;
    if (a->out_ch > (1 << 20))
        return dp_errinfo_set(ei, DP_ETOOBIG, "layer '%s': %d output channels", l->name, a->out_ch);
    if (a->groups < 1 || c % a->groups != 0 || a->out_ch < 1 || a->out_ch % a->groups != 0)
        return dp_errinfo_set(ei, DP_ESHAPE,
                              "layer '%s': %d input and %d output channels are not "
                              "divisible by groups=%d",
                              l->name, c, a->out_ch, a->groups);
    int oh = op_window_out(h, a->kh, a->sh, a->pt, a->pb, a->dh, 0);
    int ow = op_window_out(w, a->kw, a->sw, a->pl, a->pr, a->dw, 0);
    if (oh < 1 || ow < 1)
        return dp_errinfo_set(ei, DP_ESHAPE, "layer '%s': %dx%d kernel does not fit a %dx%d input",
                              l->name, a->kh, a->kw, h, w);
    op_set_out(l, a->out_ch, oh, ow);
    int64_t ws[4] = {a->out_ch, c / a->groups, a->kh, a->kw};
    return op_weight_bias_add(m, i, 4, ws, ei);
}

static enum dp_err op_linear_infer(struct dp_model *m, int i, struct dp_errinfo *ei)
{
    struct dp_layer *l = &m->layers[i];
    const struct dp_op_attrs *a = &l->a;
    int c, h, w;
    dp_model__in_shape(m, l->inputs[0], &c, &h, &w);
    if (a->out_ch < 1 || a->out_ch > (1 << 24))
        return dp_errinfo_set(ei, DP_EINVAL, "layer '%s': out features must be in [1, 2^24]",
                              l->name);
    op_set_out(l, a->out_ch, 1, 1);
    int64_t ws[2] = {a->out_ch, (int64_t)c * h * w};
    return op_weight_bias_add(m, i, 2, ws, ei);
}

/* maxpool and avgpool */
static enum dp_err op_pool_infer(struct dp_model *m, int i, struct dp_errinfo *ei)
{
    struct dp_layer *l = &m->layers[i];
    const struct dp_op_attrs *a = &l->a;
    int c, h, w;
    dp_model__in_shape(m, l->inputs[0], &c, &h, &w);
    enum dp_err err = op_check_window(l, ei);
    if (err)
        return err;
    if (a->pt * 2 > a->kh || a->pl * 2 > a->kw || a->pb * 2 > a->kh || a->pr * 2 > a->kw)
        return dp_errinfo_set(
            ei, DP_EINVAL, "layer '%s': pooling padding must be at most half the window", l->name);
    int oh = op_window_out(h, a->kh, a->sh, a->pt, a->pb, a->dh, a->ceil_mode);
    int ow = op_window_out(w, a->kw, a->sw, a->pl, a->pr, a->dw, a->ceil_mode);
    if (oh < 1 || ow < 1)
        return dp_errinfo_set(ei, DP_ESHAPE, "layer '%s': %dx%d window does not fit a %dx%d input",
                              l->name, a->kh, a->kw, h, w);
    op_set_out(l, c, oh, ow);
    return DP_OK;
}

static enum dp_err op_gap_infer(struct dp_model *m, int i, struct dp_errinfo *ei)
{
    (void)ei;
    struct dp_layer *l = &m->layers[i];
    int c, h, w;
    dp_model__in_shape(m, l->inputs[0], &c, &h, &w);
    op_set_out(l, c, 1, 1);
    return DP_OK;
}

static enum dp_err op_bn2d_infer(struct dp_model *m, int i, struct dp_errinfo *ei)
{
    struct dp_layer *l = &m->layers[i];
    const struct dp_op_attrs *a = &l->a;
    int c, h, w;
    dp_model__in_shape(m, l->inputs[0], &c, &h, &w);
    if (!(a->eps > 0.0f && a->eps < 1.0f) || !(a->momentum >= 0.0f && a->momentum <= 1.0f))
        return dp_errinfo_set(ei, DP_EINVAL, "layer '%s': eps must be > 0 and momentum in [0, 1]",
                              l->name);
    op_set_out(l, c, h, w);
    int64_t s[1] = {c};
    enum dp_err err = dp_model__param_add(m, i, "weight", 1, 1, s, ei);
    if (!err)
        err = dp_model__param_add(m, i, "bias", 1, 1, s, ei);
    if (!err)
        err = dp_model__param_add(m, i, "running_mean", 0, 1, s, ei);
    if (!err)
        err = dp_model__param_add(m, i, "running_var", 0, 1, s, ei);
    return err;
}

/* BatchNorm starts as the identity: scale 1, running variance 1. */
static void op_bn2d_init(struct dp_model *m, int i)
{
    const struct dp_layer *l = &m->layers[i];
    for (int k = 0; k < l->n_params; k++) {
        const struct dp_param *p = &m->params[l->first_param + k];
        const char *dot = strrchr(p->name, '.');
        if (dot != NULL && (strcmp(dot, ".weight") == 0 || strcmp(dot, ".running_var") == 0)) {
            for (size_t j = 0; j < p->numel; j++)
                m->data[p->offset + j] = 1.0f;
        }
    }
}

static enum dp_err op_add_infer(struct dp_model *m, int i, struct dp_errinfo *ei)
{
    struct dp_layer *l = &m->layers[i];
    int c, h, w, c2, h2, w2;
    dp_model__in_shape(m, l->inputs[0], &c, &h, &w);
    dp_model__in_shape(m, l->inputs[1], &c2, &h2, &w2);
    if (c != c2 || h != h2 || w != w2)
        return dp_errinfo_set(ei, DP_ESHAPE,
                              "layer '%s': operands have shapes %dx%dx%d and %dx%dx%d", l->name, c,
                              h, w, c2, h2, w2);
    op_set_out(l, c, h, w);
    return DP_OK;
}

static enum dp_err op_flatten_infer(struct dp_model *m, int i, struct dp_errinfo *ei)
{
    (void)ei;
    struct dp_layer *l = &m->layers[i];
    int c, h, w;
    dp_model__in_shape(m, l->inputs[0], &c, &h, &w);
    /* c*h*w <= 2^28: every input and activation is held to that cap. */
    op_set_out(l, c * h * w, 1, 1);
    return DP_OK;
}

static enum dp_err op_dropout_infer(struct dp_model *m, int i, struct dp_errinfo *ei)
{
    struct dp_layer *l = &m->layers[i];
    int c, h, w;
    dp_model__in_shape(m, l->inputs[0], &c, &h, &w);
    if (!(l->a.p >= 0.0f && l->a.p < 1.0f))
        return dp_errinfo_set(ei, DP_EINVAL, "layer '%s': dropout p must be in [0, 1)", l->name);
    op_set_out(l, c, h, w);
    return DP_OK;
}

/* relu, relu6: the input's shape, nothing to check */
static enum dp_err op_same_infer(struct dp_model *m, int i, struct dp_errinfo *ei)
{
    (void)ei;
    struct dp_layer *l = &m->layers[i];
    int c, h, w;
    dp_model__in_shape(m, l->inputs[0], &c, &h, &w);
    op_set_out(l, c, h, w);
    return DP_OK;
}

static enum dp_err op_softmax_infer(struct dp_model *m, int i, struct dp_errinfo *ei)
{
    struct dp_layer *l = &m->layers[i];
    const struct dp_op_attrs *a = &l->a;
    int c, h, w;
    dp_model__in_shape(m, l->inputs[0], &c, &h, &w);
    if (a->axis < 1 || a->axis > 3 || a->axis_end < a->axis || a->axis_end > 3)
        return dp_errinfo_set(ei, DP_EINVAL,
                              "layer '%s': softmax axes [%d, %d] must satisfy 1 <= axis "
                              "<= axis_end <= 3",
                              l->name, a->axis, a->axis_end);
    op_set_out(l, c, h, w);
    return DP_OK;
}

static enum dp_err op_clip_infer(struct dp_model *m, int i, struct dp_errinfo *ei)
{
    struct dp_layer *l = &m->layers[i];
    int c, h, w;
    dp_model__in_shape(m, l->inputs[0], &c, &h, &w);
    if (!(l->a.lo <= l->a.hi))
        return dp_errinfo_set(ei, DP_EINVAL, "layer '%s': clip needs lo <= hi", l->name);
    op_set_out(l, c, h, w);
    return DP_OK;
}

static enum dp_err op_concat_infer(struct dp_model *m, int i, struct dp_errinfo *ei)
{
    struct dp_layer *l = &m->layers[i];
    const struct dp_op_attrs *a = &l->a;
    int d1[3], d2[3];
    dp_model__in_shape(m, l->inputs[0], &d1[0], &d1[1], &d1[2]);
    dp_model__in_shape(m, l->inputs[1], &d2[0], &d2[1], &d2[2]);
    if (a->axis < 1 || a->axis > 3)
        return dp_errinfo_set(ei, DP_EINVAL, "layer '%s': concat axis %d is not 1, 2 or 3", l->name,
                              a->axis);
    for (int k = 0; k < 3; k++) {
        if (k != a->axis - 1 && d1[k] != d2[k])
            return dp_errinfo_set(ei, DP_ESHAPE,
                                  "layer '%s': cannot join %dx%dx%d and %dx%dx%d along axis %d",
                                  l->name, d1[0], d1[1], d1[2], d2[0], d2[1], d2[2], a->axis);
    }
    d1[a->axis - 1] += d2[a->axis - 1];
    op_set_out(l, d1[0], d1[1], d1[2]);
    return DP_OK;
}

static enum dp_err op_reshape_infer(struct dp_model *m, int i, struct dp_errinfo *ei)
{
    struct dp_layer *l = &m->layers[i];
    const struct dp_op_attrs *a = &l->a;
    int c, h, w;
    dp_model__in_shape(m, l->inputs[0], &c, &h, &w);
    if (a->to_c < 1 || a->to_h < 1 || a->to_w < 1 ||
        (int64_t)a->to_c * a->to_h * a->to_w != (int64_t)c * h * w)
        return dp_errinfo_set(ei, DP_ESHAPE, "layer '%s': cannot reshape %dx%dx%d to %dx%dx%d",
                              l->name, c, h, w, a->to_c, a->to_h, a->to_w);
    op_set_out(l, a->to_c, a->to_h, a->to_w);
    return DP_OK;
}

static enum dp_err op_hardsigmoid_infer(struct dp_model *m, int i, struct dp_errinfo *ei)
{
    const struct dp_layer *l = &m->layers[i];
    if (!isfinite(l->a.alpha) || !isfinite(l->a.beta))
        return dp_errinfo_set(ei, DP_EINVAL,
                              "layer '%s': hardsigmoid alpha and beta must be finite", l->name);
    return op_same_infer(m, i, ei);
}

/* mul, sub, div: each axis of each operand is the output's or 1 (broadcast). */
static enum dp_err op_bcast_infer(struct dp_model *m, int i, struct dp_errinfo *ei)
{
    struct dp_layer *l = &m->layers[i];
    int a[3], b[3], o[3];
    dp_model__in_shape(m, l->inputs[0], &a[0], &a[1], &a[2]);
    dp_model__in_shape(m, l->inputs[1], &b[0], &b[1], &b[2]);
    for (int k = 0; k < 3; k++) {
        if (a[k] != b[k] && a[k] != 1 && b[k] != 1)
            return dp_errinfo_set(ei, DP_ESHAPE,
                                  "layer '%s': operands of shapes %dx%dx%d and %dx%dx%d do not "
                                  "broadcast",
                                  l->name, a[0], a[1], a[2], b[0], b[1], b[2]);
        o[k] = a[k] > b[k] ? a[k] : b[k];
    }
    op_set_out(l, o[0], o[1], o[2]);
    return DP_OK;
}

static enum dp_err op_slice_infer(struct dp_model *m, int i, struct dp_errinfo *ei)
{
    struct dp_layer *l = &m->layers[i];
    const struct dp_op_attrs *a = &l->a;
    int d[3];
    dp_model__in_shape(m, l->inputs[0], &d[0], &d[1], &d[2]);
    if (a->axis < 1 || a->axis > 3)
        return dp_errinfo_set(ei, DP_EINVAL, "layer '%s': slice axis %d is not 1, 2 or 3", l->name,
                              a->axis);
    if (a->start < 0 || a->start >= a->end || a->end > d[a->axis - 1])
        return dp_errinfo_set(ei, DP_ESHAPE,
                              "layer '%s': slice [%d, %d) is empty or outside an axis of %d",
                              l->name, a->start, a->end, d[a->axis - 1]);
    d[a->axis - 1] = a->end - a->start;
    op_set_out(l, d[0], d[1], d[2]);
    return DP_OK;
}

static enum dp_err op_shuffle_infer(struct dp_model *m, int i, struct dp_errinfo *ei)
{
    struct dp_layer *l = &m->layers[i];
    int c, h, w;
    dp_model__in_shape(m, l->inputs[0], &c, &h, &w);
    if (l->a.groups < 1 || c % l->a.groups != 0)
        return dp_errinfo_set(ei, DP_ESHAPE, "layer '%s': %d channels in %d groups", l->name, c,
                              l->a.groups);
    op_set_out(l, c, h, w);
    return DP_OK;
}

static enum dp_err op_mean_infer(struct dp_model *m, int i, struct dp_errinfo *ei)
{
    struct dp_layer *l = &m->layers[i];
    const struct dp_op_attrs *a = &l->a;
    int d[3];
    dp_model__in_shape(m, l->inputs[0], &d[0], &d[1], &d[2]);
    if (a->axis < 1 || a->axis > 3 || a->axis_end < a->axis || a->axis_end > 3)
        return dp_errinfo_set(ei, DP_EINVAL,
                              "layer '%s': mean axes [%d, %d] must satisfy 1 <= axis <= "
                              "axis_end <= 3",
                              l->name, a->axis, a->axis_end);
    for (int k = a->axis; k <= a->axis_end; k++)
        d[k - 1] = 1;
    op_set_out(l, d[0], d[1], d[2]);
    return DP_OK;
}

static enum dp_err op_const_infer(struct dp_model *m, int i, struct dp_errinfo *ei)
{
    struct dp_layer *l = &m->layers[i];
    const struct dp_op_attrs *a = &l->a;
    if (a->to_c < 1 || a->to_h < 1 || a->to_w < 1 ||
        (int64_t)a->to_c * a->to_h * a->to_w > (1 << 28))
        return dp_errinfo_set(ei, DP_ESHAPE, "layer '%s': a constant of %dx%dx%d", l->name, a->to_c,
                              a->to_h, a->to_w);
    op_set_out(l, a->to_c, a->to_h, a->to_w);
    int64_t s[3] = {a->to_c, a->to_h, a->to_w};
    return dp_model__param_add(m, i, "value", 0, 3, s, ei);
}

/* ---- Recurrent and block-circulant layers (issue 15) --------------------- */

/* Blocks of k needed to cover n: the padded dimension is blocks * k. */
static int64_t op_blocks(int64_t n, int k)
{
    return (n + k - 1) / k;
}

/* Declares a matrix of rows x cols named `name`: dense (rows, cols) when
 * k == 0, else block-circulant vectors (ceil(rows/k), ceil(cols/k), k). */
static enum dp_err op_matrix_add(struct dp_model *m, int i, const char *name, int64_t rows,
                                 int64_t cols, int k, struct dp_errinfo *ei)
{
    if (k == 0) {
        int64_t s[2] = {rows, cols};
        return dp_model__param_add(m, i, name, 1, 2, s, ei);
    }
    int64_t s[3] = {op_blocks(rows, k), op_blocks(cols, k), k};
    return dp_model__param_add(m, i, name, 1, 3, s, ei);
}

static enum dp_err op_check_block(const struct dp_layer *l, int min, struct dp_errinfo *ei)
{
    if (l->a.block < min || l->a.block > 4096)
        return dp_errinfo_set(ei, DP_EINVAL, "layer '%s': block size %d must be in [%d, 4096]",
                              l->name, l->a.block, min);
    return DP_OK;
}

/* lstm and gru: (1, T, F) -> (1, T, H); gates = 4 (lstm) or 3 (gru). */
static enum dp_err op_rnn_infer(struct dp_model *m, int i, struct dp_errinfo *ei)
{
    struct dp_layer *l = &m->layers[i];
    const struct dp_op_attrs *a = &l->a;
    int c, h, w;
    dp_model__in_shape(m, l->inputs[0], &c, &h, &w);
    int gates = l->op == DP_OP_LSTM ? 4 : 3;
    enum dp_err err = op_check_block(l, 0, ei);
    if (err)
        return err;
    if (c != 1)
        return dp_errinfo_set(ei, DP_ESHAPE,
                              "layer '%s': a sequence is a (1, T, F) map, the input has %d "
                              "channels",
                              l->name, c);
    if (a->out_ch < 1 || a->out_ch > (1 << 16))
        return dp_errinfo_set(ei, DP_EINVAL, "layer '%s': hidden size must be in [1, 65536]",
                              l->name);
    op_set_out(l, 1, h, a->out_ch);
    int64_t g = (int64_t)gates * a->out_ch;
    err = op_matrix_add(m, i, "weight_ih", g, w, a->block, ei);
    if (!err)
        err = op_matrix_add(m, i, "weight_hh", g, a->out_ch, a->block, ei);
    int64_t s[1] = {g};
    if (!err)
        err = dp_model__param_add(m, i, "bias_ih", 1, 1, s, ei);
    if (!err)
        err = dp_model__param_add(m, i, "bias_hh", 1, 1, s, ei);
    return err;
}

static enum dp_err op_circ_linear_infer(struct dp_model *m, int i, struct dp_errinfo *ei)
{
    struct dp_layer *l = &m->layers[i];
    const struct dp_op_attrs *a = &l->a;
    int c, h, w;
    dp_model__in_shape(m, l->inputs[0], &c, &h, &w);
    enum dp_err err = op_check_block(l, 1, ei);
    if (err)
        return err;
    if (a->out_ch < 1 || a->out_ch > (1 << 24))
        return dp_errinfo_set(ei, DP_EINVAL, "layer '%s': out features must be in [1, 2^24]",
                              l->name);
    op_set_out(l, a->out_ch, 1, 1);
    err = op_matrix_add(m, i, "weight", a->out_ch, (int64_t)c * h * w, a->block, ei);
    int64_t s[1] = {a->out_ch};
    if (!err && a->has_bias)
        err = dp_model__param_add(m, i, "bias", 1, 1, s, ei);
    return err;
}

static enum dp_err op_circ_conv2d_infer(struct dp_model *m, int i, struct dp_errinfo *ei)
{
    struct dp_layer *l = &m->layers[i];
    const struct dp_op_attrs *a = &l->a;
    enum dp_err err = op_check_block(l, 1, ei);
    if (err)
        return err;
    if (a->groups != 1)
        return dp_errinfo_set(ei, DP_EINVAL, "layer '%s': a circulant conv2d has groups = 1",
                              l->name);
    /* Window, channels and output shape as conv2d; then the weight is
     * replaced by its circulant form (conv2d declared weight and bias). */
    int first = m->n_params;
    err = op_conv2d_infer(m, i, ei);
    if (err)
        return err;
    int c, h, w;
    dp_model__in_shape(m, l->inputs[0], &c, &h, &w);
    dp_model__param_truncate(m, first);
    int64_t s[4] = {(int64_t)a->kh * a->kw, op_blocks(a->out_ch, a->block), op_blocks(c, a->block),
                    a->block};
    err = dp_model__param_add(m, i, "weight", 1, 4, s, ei);
    int64_t b[1] = {a->out_ch};
    if (!err && a->has_bias)
        err = dp_model__param_add(m, i, "bias", 1, 1, b, ei);
    return err;
}

/* ---- The table ----------------------------------------------------------- */

#define OP_WIN  (DP_ATTR_WINDOW | DP_ATTR_CEIL_MODE)
#define OP_CONV (DP_ATTR_OUT_CH | DP_ATTR_WINDOW | DP_ATTR_GROUPS | DP_ATTR_HAS_BIAS)

/* Columns: name, inputs, attributes, infer, init, channels, keeps zeros, compressible. */
static const struct dp_op_info op_table[DP_OP__COUNT] = {
    [DP_OP_CONV2D] = {"conv2d", 1, OP_CONV, op_conv2d_infer, NULL, DP_OP_CHAN_STARTS, 0, 1},
    [DP_OP_LINEAR] = {"linear", 1, DP_ATTR_OUT_CH | DP_ATTR_HAS_BIAS, op_linear_infer, NULL,
                      DP_OP_CHAN_STARTS, 0, 1},
    [DP_OP_RELU] = {"relu", 1, 0, op_same_infer, NULL, DP_OP_CHAN_KEEPS, 1, 0},
    [DP_OP_RELU6] = {"relu6", 1, 0, op_same_infer, NULL, DP_OP_CHAN_KEEPS, 1, 0},
    [DP_OP_MAXPOOL] = {"maxpool", 1, OP_WIN, op_pool_infer, NULL, DP_OP_CHAN_KEEPS, 1, 0},
    [DP_OP_AVGPOOL] = {"avgpool", 1, OP_WIN | DP_ATTR_COUNT_PAD, op_pool_infer, NULL,
                       DP_OP_CHAN_KEEPS, 1, 0},
    [DP_OP_GAP] = {"gap", 1, 0, op_gap_infer, NULL, DP_OP_CHAN_KEEPS, 1, 0},
    /* KEEPS but not keeps_zeros: a zero channel leaves BN as its shift. */
    [DP_OP_BN2D] = {"bn2d", 1, DP_ATTR_BN, op_bn2d_infer, op_bn2d_init, DP_OP_CHAN_KEEPS, 0, 0},
    [DP_OP_ADD] = {"add", 2, 0, op_add_infer, NULL, DP_OP_CHAN_JOINS, 0, 0},
    [DP_OP_FLATTEN] = {"flatten", 1, 0, op_flatten_infer, NULL, DP_OP_CHAN_KEEPS, 1, 0},
    [DP_OP_DROPOUT] = {"dropout", 1, DP_ATTR_P, op_dropout_infer, NULL, DP_OP_CHAN_KEEPS, 1, 0},
    /* Softmax, clip, reshape: not taught to purification yet, their
     * channels stay. Concat (and slice, shuffle below) route channels. */
    [DP_OP_SOFTMAX] = {"softmax", 1, DP_ATTR_AXIS, op_softmax_infer, NULL, DP_OP_CHAN_OPAQUE, 0, 0},
    [DP_OP_CONCAT] = {"concat", 2, DP_ATTR_AXIS, op_concat_infer, NULL, DP_OP_CHAN_ROUTES, 0, 0},
    [DP_OP_CLIP] = {"clip", 1, DP_ATTR_BOUNDS, op_clip_infer, NULL, DP_OP_CHAN_OPAQUE, 0, 0},
    [DP_OP_RESHAPE] = {"reshape", 1, DP_ATTR_TO, op_reshape_infer, NULL, DP_OP_CHAN_OPAQUE, 0, 0},
    /* Issue 17. The activations are per element: KEEPS; slices and
     * shuffles route channels; the other binary ops and constants wait
     * for purify.c to learn them. */
    [DP_OP_SIGMOID] = {"sigmoid", 1, 0, op_same_infer, NULL, DP_OP_CHAN_KEEPS, 0, 0},
    [DP_OP_HARDSIGMOID] = {"hardsigmoid", 1, DP_ATTR_AB, op_hardsigmoid_infer, NULL,
                           DP_OP_CHAN_KEEPS, 0, 0},
    [DP_OP_HARDSWISH] = {"hardswish", 1, 0, op_same_infer, NULL, DP_OP_CHAN_KEEPS, 1, 0},
    [DP_OP_SILU] = {"silu", 1, 0, op_same_infer, NULL, DP_OP_CHAN_KEEPS, 1, 0},
    [DP_OP_MUL] = {"mul", 2, 0, op_bcast_infer, NULL, DP_OP_CHAN_JOINS, 0, 0},
    [DP_OP_SUB] = {"sub", 2, 0, op_bcast_infer, NULL, DP_OP_CHAN_OPAQUE, 0, 0},
    [DP_OP_DIV] = {"div", 2, 0, op_bcast_infer, NULL, DP_OP_CHAN_OPAQUE, 0, 0},
    [DP_OP_SLICE] = {"slice", 1, DP_ATTR_AXIS | DP_ATTR_RANGE, op_slice_infer, NULL,
                     DP_OP_CHAN_ROUTES, 1, 0},
    [DP_OP_SHUFFLE] = {"shuffle", 1, DP_ATTR_GROUPS, op_shuffle_infer, NULL, DP_OP_CHAN_ROUTES, 1,
                       0},
    [DP_OP_CONST] = {"const", 1, DP_ATTR_TO, op_const_infer, NULL, DP_OP_CHAN_OPAQUE, 0, 0},
    [DP_OP_ADD_BCAST] = {"add_bcast", 2, 0, op_bcast_infer, NULL, DP_OP_CHAN_OPAQUE, 0, 0},
    [DP_OP_MEAN] = {"mean", 1, DP_ATTR_AXIS, op_mean_infer, NULL, DP_OP_CHAN_OPAQUE, 0, 0},
    /* Issue 15. Opaque to purification and not compressible: their
     * weights are not dense (out, in, ...) tensors (the circulant ADMM
     * scheme handles lstm and gru matrices itself). */
    [DP_OP_LSTM] = {"lstm", 1, DP_ATTR_OUT_CH | DP_ATTR_BLOCK, op_rnn_infer, NULL,
                    DP_OP_CHAN_OPAQUE, 0, 0},
    [DP_OP_GRU] = {"gru", 1, DP_ATTR_OUT_CH | DP_ATTR_BLOCK, op_rnn_infer, NULL, DP_OP_CHAN_OPAQUE,
                   0, 0},
    [DP_OP_CIRC_LINEAR] = {"circ_linear", 1, DP_ATTR_OUT_CH | DP_ATTR_HAS_BIAS | DP_ATTR_BLOCK,
                           op_circ_linear_infer, NULL, DP_OP_CHAN_OPAQUE, 0, 0},
    [DP_OP_CIRC_CONV2D] = {"circ_conv2d", 1, OP_CONV | DP_ATTR_BLOCK, op_circ_conv2d_infer, NULL,
                           DP_OP_CHAN_OPAQUE, 0, 0},
};

#undef OP_WIN
#undef OP_CONV

const struct dp_op_info *dp_op_info(enum dp_op op)
{
    if ((int)op < 0 || op >= DP_OP__COUNT)
        return NULL;
    return &op_table[op];
}

const char *dp_op_name(enum dp_op op)
{
    const struct dp_op_info *oi = dp_op_info(op);
    return oi != NULL ? oi->name : NULL;
}

enum dp_err dp_op_from_name(const char *name, enum dp_op *out)
{
    for (int i = 0; i < DP_OP__COUNT; i++) {
        if (op_table[i].name != NULL && strcmp(op_table[i].name, name) == 0) {
            *out = (enum dp_op)i;
            return DP_OK;
        }
    }
    return DP_EFORMAT;
}

enum dp_op_chan dp_layer_chan(const struct dp_model *m, int layer)
{
    const struct dp_layer *l = &m->layers[layer];
    if (l->op == DP_OP_CONV2D) {
        int c, h, w;
        dp_model__in_shape(m, l->inputs[0], &c, &h, &w);
        if (l->a.groups > 1 && l->a.groups == c && l->out_c == c)
            return DP_OP_CHAN_KEEPS; /* depthwise: channel c reads input channel c only */
    }
    if (l->op == DP_OP_MUL) {
        /* Channel c of a product reads channel c of both operands (a
         * squeeze-excitation scale is broadcast over space only). A product
         * broadcast along channels, or over anything but space, mixes what
         * purification cannot follow. */
        for (int k = 0; k < 2; k++) {
            int c, h, w;
            dp_model__in_shape(m, l->inputs[k], &c, &h, &w);
            if (c != l->out_c || !((h == l->out_h && w == l->out_w) || (h == 1 && w == 1)))
                return DP_OP_CHAN_OPAQUE;
        }
    }
    if (l->op == DP_OP_SLICE && l->a.axis != 1)
        return DP_OP_CHAN_KEEPS; /* a window of H or W: every channel, each from itself */
    if (l->op == DP_OP_CONCAT && l->a.axis != 1)
        return DP_OP_CHAN_JOINS; /* channel c of the output holds channel c of both */
    return op_table[l->op].chan;
}

/* ---- Channel routing (purification) --------------------------------------- */

static int op_in_c(const struct dp_model *m, int layer, int k)
{
    int c, h, w;
    dp_model__in_shape(m, m->layers[layer].inputs[k], &c, &h, &w);
    return c;
}

static int op_slice_route(const struct dp_model *m, int i, int c, int *input)
{
    *input = 0;
    return m->layers[i].a.start + c;
}

static int op_slice_reroute(const struct dp_model *m, int i, unsigned char *const *keep,
                            struct dp_op_attrs *a)
{
    /* Any subset of the window is a window of the compacted input. */
    const struct dp_op_attrs *o = &m->layers[i].a;
    if (a != NULL) {
        int before = 0, inside = 0;
        for (int c = 0; c < o->end; c++) {
            before += c < o->start && keep[0][c];
            inside += c >= o->start && keep[0][c];
        }
        a->start = before;
        a->end = before + inside;
    }
    return 0;
}

static int op_concat_route(const struct dp_model *m, int i, int c, int *input)
{
    const int c0 = op_in_c(m, i, 0);
    *input = c < c0 ? 0 : 1;
    return c < c0 ? c : c - c0;
}

static int op_concat_reroute(const struct dp_model *m, int i, unsigned char *const *keep,
                             struct dp_op_attrs *a)
{
    (void)m, (void)i, (void)keep, (void)a; /* the kept channels of each, one after the other */
    return 0;
}

static int op_shuffle_route(const struct dp_model *m, int i, int c, int *input)
{
    const int g = m->layers[i].a.groups, per = op_in_c(m, i, 0) / g;
    *input = 0;
    return (c % g) * per + c / g;
}

static int op_shuffle_reroute(const struct dp_model *m, int i, unsigned char *const *keep,
                              struct dp_op_attrs *a)
{
    /* The kept output channels, in order, are a shuffle of the kept input
     * channels only if every group keeps the same positions j; so one kept
     * (i, j) keeps position j of every group. The groups stay. */
    (void)a;
    const int g = m->layers[i].a.groups, per = op_in_c(m, i, 0) / g;
    int added = 0;
    for (int j = 0; j < per; j++) {
        int any = 0;
        for (int k = 0; k < g; k++)
            any |= keep[0][k * per + j];
        for (int k = 0; any && k < g; k++) {
            added += !keep[0][k * per + j];
            keep[0][k * per + j] = 1;
        }
    }
    return added;
}

struct op_router {
    int (*route)(const struct dp_model *m, int layer, int c, int *input);
    int (*reroute)(const struct dp_model *m, int layer, unsigned char *const *keep,
                   struct dp_op_attrs *a);
};

/* Every op whose row can say ROUTES has its pair here (test_op.c checks). */
static const struct op_router op_routers[DP_OP__COUNT] = {
    [DP_OP_SLICE] = {op_slice_route, op_slice_reroute},
    [DP_OP_CONCAT] = {op_concat_route, op_concat_reroute},
    [DP_OP_SHUFFLE] = {op_shuffle_route, op_shuffle_reroute},
};

int dp_layer_route(const struct dp_model *m, int layer, int c, int *input)
{
    *input = 0;
    if (dp_layer_chan(m, layer) != DP_OP_CHAN_ROUTES ||
        op_routers[m->layers[layer].op].route == NULL)
        return -1;
    return op_routers[m->layers[layer].op].route(m, layer, c, input);
}

int dp_layer_reroute(const struct dp_model *m, int layer, unsigned char *const *keep,
                     struct dp_op_attrs *a)
{
    if (dp_layer_chan(m, layer) != DP_OP_CHAN_ROUTES ||
        op_routers[m->layers[layer].op].reroute == NULL)
        return 0;
    return op_routers[m->layers[layer].op].reroute(m, layer, keep, a);
}
