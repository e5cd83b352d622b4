/*
 * The model IR (see model.h): building a layer graph, shape inference and
 * the one flat parameter block.
 *
 * DESIGN: builders only record layers and attributes; dp_model_finalize
 * walks the layers once in order, infers each output shape from its inputs,
 * declares the op's parameters with shapes derived from that, and then
 * allocates one aligned block for all of them. Doing parameter declaration
 * at finalize means an importer or builder can never disagree with the
 * engine about a weight's shape.
 */
#include "common/model.h"

#include <string.h>

#include "common/alloc.h"

static const char *const op_names[DP_OP__COUNT] = {
    [DP_OP_CONV2D] = "conv2d",   [DP_OP_LINEAR] = "linear",   [DP_OP_RELU] = "relu",
    [DP_OP_RELU6] = "relu6",     [DP_OP_MAXPOOL] = "maxpool", [DP_OP_AVGPOOL] = "avgpool",
    [DP_OP_GAP] = "gap",         [DP_OP_BN2D] = "bn2d",       [DP_OP_ADD] = "add",
    [DP_OP_FLATTEN] = "flatten", [DP_OP_DROPOUT] = "dropout", [DP_OP_SOFTMAX] = "softmax",
    [DP_OP_CONCAT] = "concat",   [DP_OP_CLIP] = "clip",       [DP_OP_RESHAPE] = "reshape",
};

const char *dp_op_name(enum dp_op op)
{
    if ((int)op < 0 || op >= DP_OP__COUNT)
        return NULL;
    return op_names[op];
}

enum dp_err dp_op_from_name(const char *name, enum dp_op *out)
{
    for (int i = 0; i < DP_OP__COUNT; i++) {
        if (strcmp(op_names[i], name) == 0) {
            *out = (enum dp_op)i;
            return DP_OK;
        }
    }
    return DP_EFORMAT;
}

struct dp_model *dp_model_new(int in_c, int in_h, int in_w)
{
    struct dp_model *m = dp_calloc(1, sizeof(*m));
    if (m == NULL)
        return NULL;
    m->in_c = in_c;
    m->in_h = in_h;
    m->in_w = in_w;
    return m;
}

void dp_model_free(struct dp_model *m)
{
    if (m == NULL)
        return;
    dp_free(m->layers);
    dp_free(m->params);
    dp_free_aligned(m->data);
    dp_free(m);
}

int dp_model_layer_find(const struct dp_model *m, const char *name)
{
    for (int i = 0; i < m->n_layers; i++) {
        if (strcmp(m->layers[i].name, name) == 0)
            return i;
    }
    return -1;
}

/* ---- Building ------------------------------------------------------------ */

int dp_model_add_layer(struct dp_model *m, const char *name, enum dp_op op, const int *inputs,
                       int n_inputs, const struct dp_op_attrs *attrs, struct dp_errinfo *ei)
{
    if (m->finalized)
        return dp_errinfo_set(ei, DP_EINVAL, "layer '%s': the model is already finalized", name);
    if ((int)op < 0 || op >= DP_OP__COUNT)
        return dp_errinfo_set(ei, DP_EINVAL, "layer '%s': unknown op %d", name, (int)op);
    size_t name_len = strlen(name);
    if (name_len == 0 || name_len >= DP_NAME_MAX)
        return dp_errinfo_set(ei, DP_EINVAL, "layer name '%.80s' must be 1 to %d bytes", name,
                              DP_NAME_MAX - 1);
    if (dp_model_layer_find(m, name) >= 0)
        return dp_errinfo_set(ei, DP_EEXIST, "duplicate layer name '%s'", name);
    int want_inputs = op == DP_OP_ADD || op == DP_OP_CONCAT ? 2 : 1;
    if (n_inputs != want_inputs)
        return dp_errinfo_set(ei, DP_EINVAL, "layer '%s': op %s takes %d input(s), got %d", name,
                              op_names[op], want_inputs, n_inputs);
    for (int i = 0; i < n_inputs; i++) {
        if (inputs[i] < DP_MODEL_INPUT || inputs[i] >= m->n_layers)
            return dp_errinfo_set(ei, DP_EINVAL,
                                  "layer '%s': input %d refers to layer %d, which is not an "
                                  "earlier layer",
                                  name, i, inputs[i]);
    }
    if (m->n_layers >= DP_MODEL_LAYERS_MAX)
        return dp_errinfo_set(ei, DP_ETOOBIG, "more than %d layers", DP_MODEL_LAYERS_MAX);
    if (m->n_layers == m->cap_layers) {
        int cap = m->cap_layers ? m->cap_layers * 2 : 16;
        struct dp_layer *nl =
            dp_realloc(m->layers, dp_size_mul((size_t)cap, sizeof(struct dp_layer)));
        if (nl == NULL)
            return dp_errinfo_set(ei, DP_ENOMEM, "out of memory adding layer '%s'", name);
        m->layers = nl;
        m->cap_layers = cap;
    }
    struct dp_layer *l = &m->layers[m->n_layers];
    memset(l, 0, sizeof(*l));
    memcpy(l->name, name, name_len + 1);
    l->op = op;
    l->n_inputs = n_inputs;
    for (int i = 0; i < n_inputs; i++)
        l->inputs[i] = inputs[i];
    if (attrs != NULL)
        l->a = *attrs;
    return m->n_layers++;
}

int dp_model_add_conv2d(struct dp_model *m, const char *name, int input, int out_ch, int k,
                        int stride, int pad, int groups, int has_bias, struct dp_errinfo *ei)
{
    struct dp_op_attrs a = {0};
    a.out_ch = out_ch;
    a.kh = a.kw = k;
    a.sh = a.sw = stride;
    a.pt = a.pl = a.pb = a.pr = pad;
    a.dh = a.dw = 1;
    a.groups = groups;
    a.has_bias = has_bias;
    return dp_model_add_layer(m, name, DP_OP_CONV2D, &input, 1, &a, ei);
}

int dp_model_add_linear(struct dp_model *m, const char *name, int input, int out_features,
                        struct dp_errinfo *ei)
{
    struct dp_op_attrs a = {0};
    a.out_ch = out_features;
    a.has_bias = 1;
    return dp_model_add_layer(m, name, DP_OP_LINEAR, &input, 1, &a, ei);
}

int dp_model_add_pool(struct dp_model *m, const char *name, enum dp_op op, int input, int k,
                      int stride, int pad, struct dp_errinfo *ei)
{
    struct dp_op_attrs a = {0};
    a.kh = a.kw = k;
    a.sh = a.sw = stride;
    a.pt = a.pl = a.pb = a.pr = pad;
    a.dh = a.dw = 1;
    a.count_include_pad = 1;
    return dp_model_add_layer(m, name, op, &input, 1, &a, ei);
}

int dp_model_add_bn2d(struct dp_model *m, const char *name, int input, struct dp_errinfo *ei)
{
    struct dp_op_attrs a = {0};
    a.eps = 1e-5f;
    a.momentum = 0.1f;
    return dp_model_add_layer(m, name, DP_OP_BN2D, &input, 1, &a, ei);
}

int dp_model_add_unary(struct dp_model *m, const char *name, enum dp_op op, int input,
                       struct dp_errinfo *ei)
{
    struct dp_op_attrs a = {0};
    if (op == DP_OP_DROPOUT)
        a.p = 0.5f;
    return dp_model_add_layer(m, name, op, &input, 1, &a, ei);
}

int dp_model_add_add(struct dp_model *m, const char *name, int a, int b, struct dp_errinfo *ei)
{
    int in[2] = {a, b};
    return dp_model_add_layer(m, name, DP_OP_ADD, in, 2, NULL, ei);
}

/* ---- Finalize: shapes and parameters ------------------------------------- */

static enum dp_err model_param_add(struct dp_model *m, int layer, const char *suffix, int trainable,
                                   int ndim, const int64_t *shape, struct dp_errinfo *ei)
{
    if (m->n_params == m->cap_params) {
        int cap = m->cap_params ? m->cap_params * 2 : 32;
        struct dp_param *np =
            dp_realloc(m->params, dp_size_mul((size_t)cap, sizeof(struct dp_param)));
        if (np == NULL)
            return dp_errinfo_set(ei, DP_ENOMEM, "out of memory declaring parameters");
        m->params = np;
        m->cap_params = cap;
    }
    struct dp_param *p = &m->params[m->n_params];
    memset(p, 0, sizeof(*p));
    const char *lname = m->layers[layer].name;
    size_t ll = strlen(lname), sl = strlen(suffix);
    if (ll + 1 + sl + 1 > sizeof(p->name))
        return dp_errinfo_set(ei, DP_EINVAL, "parameter name '%s.%s' too long", lname, suffix);
    memcpy(p->name, lname, ll);
    p->name[ll] = '.';
    memcpy(p->name + ll + 1, suffix, sl + 1);
    p->layer = layer;
    p->trainable = trainable;
    p->ndim = ndim;
    size_t numel = 1;
    for (int d = 0; d < ndim; d++) {
        if (shape[d] <= 0 || shape[d] > (int64_t)1 << 31)
            return dp_errinfo_set(ei, DP_ESHAPE, "parameter '%s' has bad dimension %lld", p->name,
                                  (long long)shape[d]);
        p->shape[d] = shape[d];
        numel = dp_size_mul(numel, (size_t)shape[d]);
    }
    if (numel > ((size_t)1 << 33) || m->n_floats + numel > ((size_t)1 << 33))
        return dp_errinfo_set(ei, DP_ETOOBIG, "parameter '%s' makes the model too large", p->name);
    p->numel = numel;
    p->offset = m->n_floats;
    m->n_floats += numel;
    m->n_params++;
    return DP_OK;
}

static void model_in_shape(const struct dp_model *m, int idx, int *c, int *h, int *w)
{
    if (idx == DP_MODEL_INPUT) {
        *c = m->in_c;
        *h = m->in_h;
        *w = m->in_w;
    } else {
        *c = m->layers[idx].out_c;
        *h = m->layers[idx].out_h;
        *w = m->layers[idx].out_w;
    }
}

/* Output length of a window op along one axis; < 1 when the window does not fit. */
static int model_window_out(int in, int k, int s, int p0, int p1, int d, int ceil_mode)
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

static enum dp_err model_check_window(const struct dp_layer *l, struct dp_errinfo *ei)
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

static enum dp_err model_infer_layer(struct dp_model *m, int i, struct dp_errinfo *ei)
{
    struct dp_layer *l = &m->layers[i];
    struct dp_op_attrs *a = &l->a;
    int c, h, w;
    model_in_shape(m, l->inputs[0], &c, &h, &w);
    enum dp_err err = DP_OK;
    l->first_param = m->n_params;
    switch (l->op) {
        case DP_OP_CONV2D: {
            err = model_check_window(l, ei);
            if (err)
                return err;
            if (a->out_ch > (1 << 20))
                return dp_errinfo_set(ei, DP_ETOOBIG, "layer '%s': %d output channels", l->name,
                                      a->out_ch);
            if (a->groups < 1 || c % a->groups != 0 || a->out_ch < 1 || a->out_ch % a->groups != 0)
                return dp_errinfo_set(ei, DP_ESHAPE,
                                      "layer '%s': %d input and %d output channels are not "
                                      "divisible by groups=%d",
                                      l->name, c, a->out_ch, a->groups);
            int oh = model_window_out(h, a->kh, a->sh, a->pt, a->pb, a->dh, 0);
            int ow = model_window_out(w, a->kw, a->sw, a->pl, a->pr, a->dw, 0);
            if (oh < 1 || ow < 1)
                return dp_errinfo_set(ei, DP_ESHAPE,
                                      "layer '%s': %dx%d kernel does not fit a %dx%d input",
                                      l->name, a->kh, a->kw, h, w);
            int64_t ws[4] = {a->out_ch, c / a->groups, a->kh, a->kw};
            err = model_param_add(m, i, "weight", 1, 4, ws, ei);
            if (!err && a->has_bias) {
                int64_t bs[1] = {a->out_ch};
                err = model_param_add(m, i, "bias", 1, 1, bs, ei);
            }
            l->out_c = a->out_ch;
            l->out_h = oh;
            l->out_w = ow;
            break;
        }
        case DP_OP_LINEAR: {
            if (a->out_ch < 1 || a->out_ch > (1 << 24))
                return dp_errinfo_set(ei, DP_EINVAL,
                                      "layer '%s': out features must be in [1, 2^24]", l->name);
            int64_t ws[2] = {a->out_ch, (int64_t)c * h * w};
            err = model_param_add(m, i, "weight", 1, 2, ws, ei);
            if (!err && a->has_bias) {
                int64_t bs[1] = {a->out_ch};
                err = model_param_add(m, i, "bias", 1, 1, bs, ei);
            }
            l->out_c = a->out_ch;
            l->out_h = l->out_w = 1;
            break;
        }
        case DP_OP_MAXPOOL:
        case DP_OP_AVGPOOL: {
            err = model_check_window(l, ei);
            if (err)
                return err;
            if (a->pt * 2 > a->kh || a->pl * 2 > a->kw || a->pb * 2 > a->kh || a->pr * 2 > a->kw)
                return dp_errinfo_set(ei, DP_EINVAL,
                                      "layer '%s': pooling padding must be at most half the "
                                      "window",
                                      l->name);
            int oh = model_window_out(h, a->kh, a->sh, a->pt, a->pb, a->dh, a->ceil_mode);
            int ow = model_window_out(w, a->kw, a->sw, a->pl, a->pr, a->dw, a->ceil_mode);
            if (oh < 1 || ow < 1)
                return dp_errinfo_set(ei, DP_ESHAPE,
                                      "layer '%s': %dx%d window does not fit a %dx%d input",
                                      l->name, a->kh, a->kw, h, w);
            l->out_c = c;
            l->out_h = oh;
            l->out_w = ow;
            break;
        }
        case DP_OP_GAP:
            l->out_c = c;
            l->out_h = l->out_w = 1;
            break;
        case DP_OP_BN2D: {
            if (!(a->eps > 0.0f && a->eps < 1.0f) || !(a->momentum >= 0.0f && a->momentum <= 1.0f))
                return dp_errinfo_set(
                    ei, DP_EINVAL, "layer '%s': eps must be > 0 and momentum in [0, 1]", l->name);
            int64_t s[1] = {c};
            err = model_param_add(m, i, "weight", 1, 1, s, ei);
            if (!err)
                err = model_param_add(m, i, "bias", 1, 1, s, ei);
            if (!err)
                err = model_param_add(m, i, "running_mean", 0, 1, s, ei);
            if (!err)
                err = model_param_add(m, i, "running_var", 0, 1, s, ei);
            l->out_c = c;
            l->out_h = h;
            l->out_w = w;
            break;
        }
        case DP_OP_ADD: {
            int c2, h2, w2;
            model_in_shape(m, l->inputs[1], &c2, &h2, &w2);
            if (c != c2 || h != h2 || w != w2)
                return dp_errinfo_set(ei, DP_ESHAPE,
                                      "layer '%s': operands have shapes %dx%dx%d and %dx%dx%d",
                                      l->name, c, h, w, c2, h2, w2);
            l->out_c = c;
            l->out_h = h;
            l->out_w = w;
            break;
        }
        case DP_OP_FLATTEN:
            /* c*h*w <= 2^28: every input and activation is held to that cap. */
            l->out_c = c * h * w;
            l->out_h = l->out_w = 1;
            break;
        case DP_OP_DROPOUT:
            if (!(a->p >= 0.0f && a->p < 1.0f))
                return dp_errinfo_set(ei, DP_EINVAL, "layer '%s': dropout p must be in [0, 1)",
                                      l->name);
            l->out_c = c;
            l->out_h = h;
            l->out_w = w;
            break;
        case DP_OP_RELU:
        case DP_OP_RELU6:
            l->out_c = c;
            l->out_h = h;
            l->out_w = w;
            break;
        case DP_OP_SOFTMAX:
            if (a->axis < 1 || a->axis > 3 || a->axis_end < a->axis || a->axis_end > 3)
                return dp_errinfo_set(ei, DP_EINVAL,
                                      "layer '%s': softmax axes [%d, %d] must satisfy 1 <= axis "
                                      "<= axis_end <= 3",
                                      l->name, a->axis, a->axis_end);
            l->out_c = c;
            l->out_h = h;
            l->out_w = w;
            break;
        case DP_OP_CLIP:
            if (!(a->lo <= a->hi))
                return dp_errinfo_set(ei, DP_EINVAL, "layer '%s': clip needs lo <= hi", l->name);
            l->out_c = c;
            l->out_h = h;
            l->out_w = w;
            break;
        case DP_OP_CONCAT: {
            int d2[3], d1[3] = {c, h, w};
            model_in_shape(m, l->inputs[1], &d2[0], &d2[1], &d2[2]);
            if (a->axis < 1 || a->axis > 3)
                return dp_errinfo_set(ei, DP_EINVAL, "layer '%s': concat axis %d is not 1, 2 or 3",
                                      l->name, a->axis);
            for (int k = 0; k < 3; k++) {
                if (k != a->axis - 1 && d1[k] != d2[k])
                    return dp_errinfo_set(ei, DP_ESHAPE,
                                          "layer '%s': cannot join %dx%dx%d and %dx%dx%d along "
                                          "axis %d",
                                          l->name, c, h, w, d2[0], d2[1], d2[2], a->axis);
            }
            d1[a->axis - 1] += d2[a->axis - 1];
            l->out_c = d1[0];
            l->out_h = d1[1];
            l->out_w = d1[2];
            break;
        }
        case DP_OP_RESHAPE:
            if (a->to_c < 1 || a->to_h < 1 || a->to_w < 1 ||
                (int64_t)a->to_c * a->to_h * a->to_w != (int64_t)c * h * w)
                return dp_errinfo_set(ei, DP_ESHAPE,
                                      "layer '%s': cannot reshape %dx%dx%d to %dx%dx%d", l->name, c,
                                      h, w, a->to_c, a->to_h, a->to_w);
            l->out_c = a->to_c;
            l->out_h = a->to_h;
            l->out_w = a->to_w;
            break;
        case DP_OP__COUNT:
            return dp_errinfo_set(ei, DP_EINVAL, "layer '%s': bad op", l->name);
    }
    if (err)
        return err;
    l->n_params = m->n_params - l->first_param;
    if ((int64_t)l->out_c * l->out_h * l->out_w > ((int64_t)1 << 28))
        return dp_errinfo_set(ei, DP_ETOOBIG, "layer '%s': activation too large", l->name);
    return DP_OK;
}

enum dp_err dp_model_infer(struct dp_model *m, struct dp_errinfo *ei)
{
    if (m->finalized)
        return DP_OK;
    if (m->in_c < 1 || m->in_h < 1 || m->in_w < 1 || m->in_c > 65536 || m->in_h > 65536 ||
        m->in_w > 65536 || (int64_t)m->in_c * m->in_h * m->in_w > ((int64_t)1 << 28))
        return dp_errinfo_set(ei, DP_ESHAPE,
                              "bad model input shape %dx%dx%d (each dimension in [1, 65536], "
                              "at most 2^28 values)",
                              m->in_c, m->in_h, m->in_w);
    if (m->n_layers == 0)
        return dp_errinfo_set(ei, DP_EINVAL, "the model has no layers");
    m->n_params = 0;
    m->n_floats = 0;
    for (int i = 0; i < m->n_layers; i++) {
        enum dp_err err = model_infer_layer(m, i, ei);
        if (err) {
            /* Leave no half-declared parameters behind. */
            m->n_params = 0;
            m->n_floats = 0;
            return err;
        }
    }
    return DP_OK;
}

enum dp_err dp_model_finalize(struct dp_model *m, struct dp_errinfo *ei)
{
    if (m->finalized)
        return DP_OK;
    enum dp_err err = dp_model_infer(m, ei);
    if (err)
        return err;
    float *data = dp_malloc_aligned(dp_size_mul(m->n_floats ? m->n_floats : 1, sizeof(float)));
    if (data == NULL)
        return dp_errinfo_set(ei, DP_ENOMEM, "out of memory allocating %zu parameters",
                              m->n_floats);
    memset(data, 0, m->n_floats * sizeof(float));
    /* BatchNorm starts as the identity: scale 1, running variance 1. */
    for (int i = 0; i < m->n_params; i++) {
        const char *dot = strrchr(m->params[i].name, '.');
        const struct dp_layer *l = &m->layers[m->params[i].layer];
        if (l->op == DP_OP_BN2D && dot != NULL &&
            (strcmp(dot, ".weight") == 0 || strcmp(dot, ".running_var") == 0)) {
            for (size_t j = 0; j < m->params[i].numel; j++)
                data[m->params[i].offset + j] = 1.0f;
        }
    }
    m->data = data;
    m->finalized = 1;
    return DP_OK;
}

struct dp_param *dp_model_param_find(const struct dp_model *m, const char *name)
{
    for (int i = 0; i < m->n_params; i++) {
        if (strcmp(m->params[i].name, name) == 0)
            return &m->params[i];
    }
    return NULL;
}

size_t dp_model_n_trainable(const struct dp_model *m)
{
    size_t n = 0;
    for (int i = 0; i < m->n_params; i++) {
        if (m->params[i].trainable)
            n += m->params[i].numel;
    }
    return n;
}

size_t dp_model_out_size(const struct dp_model *m, int layer)
{
    if (layer == DP_MODEL_INPUT)
        return (size_t)m->in_c * (size_t)m->in_h * (size_t)m->in_w;
    const struct dp_layer *l = &m->layers[layer];
    return (size_t)l->out_c * (size_t)l->out_h * (size_t)l->out_w;
}
