/*
 * The model IR (see model.h): building a layer graph, shape inference and
 * the one flat parameter block.
 *
 * DESIGN: builders only record layers and attributes; dp_model_finalize
 * walks the layers once in order, infers each output shape from its inputs
 * and declares the op's parameters with shapes derived from that (both by
 * the op's row in common/op.c), and then allocates one aligned block for
 * all of them. Doing parameter declaration
 * at finalize means an importer or builder can never disagree with the
 * engine about a weight's shape.
 */
#include "common/model.h"

#include <math.h>
#include <string.h>

#include "common/alloc.h"
#include "common/model_int.h"

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

enum dp_err dp_model_norm_set(struct dp_model *m, int n_c, const float *mean, const float *std,
                              struct dp_errinfo *ei)
{
    if (n_c == 0) {
        memset(&m->norm, 0, sizeof(m->norm));
        return DP_OK;
    }
    if (n_c < 0 || n_c > DP_MODEL_NORM_MAX_C || n_c != m->in_c)
        return dp_errinfo_set(ei, DP_EINVAL,
                              "normalisation: %d channels, the model's input has %d (at most %d)",
                              n_c, m->in_c, DP_MODEL_NORM_MAX_C);
    for (int c = 0; c < n_c; c++) {
        if (!isfinite(mean[c]))
            return dp_errinfo_set(ei, DP_EINVAL, "normalisation: mean[%d] is not finite", c);
        if (!isfinite(std[c]) || !(std[c] > 0.0f))
            return dp_errinfo_set(ei, DP_EINVAL,
                                  "normalisation: std[%d] is %g; it must be finite and > 0", c,
                                  (double)std[c]);
    }
    memset(&m->norm, 0, sizeof(m->norm));
    m->norm.n_c = n_c;
    memcpy(m->norm.mean, mean, (size_t)n_c * sizeof(float));
    memcpy(m->norm.std, std, (size_t)n_c * sizeof(float));
    return DP_OK;
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
    const struct dp_op_info *oi = dp_op_info(op);
    if (oi == NULL)
        return dp_errinfo_set(ei, DP_EINVAL, "layer '%s': unknown op %d", name, (int)op);
    size_t name_len = strlen(name);
    if (name_len == 0 || name_len >= DP_NAME_MAX)
        return dp_errinfo_set(ei, DP_EINVAL, "layer name '%.80s' must be 1 to %d bytes", name,
                              DP_NAME_MAX - 1);
    if (dp_model_layer_find(m, name) >= 0)
        return dp_errinfo_set(ei, DP_EEXIST, "duplicate layer name '%s'", name);
    if (n_inputs != oi->n_inputs)
        return dp_errinfo_set(ei, DP_EINVAL, "layer '%s': op %s takes %d input(s), got %d", name,
                              oi->name, oi->n_inputs, n_inputs);
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

void dp_model__param_truncate(struct dp_model *m, int first)
{
    if (first < 0 || first >= m->n_params)
        return;
    m->n_floats = m->params[first].offset;
    m->n_params = first;
}

enum dp_err dp_model__param_add(struct dp_model *m, int layer, const char *suffix, int trainable,
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

void dp_model__in_shape(const struct dp_model *m, int idx, int *c, int *h, int *w)
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

static enum dp_err model_infer_layer(struct dp_model *m, int i, struct dp_errinfo *ei)
{
    struct dp_layer *l = &m->layers[i];
    const struct dp_op_info *oi = dp_op_info(l->op);
    if (oi == NULL)
        return dp_errinfo_set(ei, DP_EINVAL, "layer '%s': bad op", l->name);
    l->first_param = m->n_params;
    enum dp_err err = oi->infer(m, i, ei);
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
    m->data = data;
    /* Parameters whose op says zero is the wrong start (BatchNorm's scale). */
    for (int i = 0; i < m->n_layers; i++) {
        const struct dp_op_info *oi = dp_op_info(m->layers[i].op);
        if (oi->init != NULL)
            oi->init(m, i);
    }
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
