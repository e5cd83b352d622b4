/*
 * ONNX export (see onnx_export.h).
 *
 * DESIGN: the ModelProto is assembled from protobuf-c structures that all
 * come from one list of allocations (struct exp), released together once
 * the message has been encoded, so no step needs its own cleanup. Each IR
 * layer becomes one node named after the layer whose output value has the
 * layer's name; parameters become initializers named as in checkpoints
 * ("conv1.weight"). Values carry an ONNX rank: 4 for maps (N, C, H, W), 2
 * for vectors (N, F); a Flatten or a Reshape is inserted where an operator
 * needs the other form (Gemm wants rank 2, Conv rank 4).
 */
#include "common/onnx_export.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "common/alloc.h"
#include "common/model_io.h"
#include "common/onnx.h"
#include "onnx.pb-c.h"

struct exp {
    void **ptrs;
    size_t n, cap;
    int oom;
    Onnx__GraphProto *g;
    size_t cap_node, cap_init;
    const struct dp_model *m;
    int64_t batch;
    int64_t opset;
    int *rank;                       /* per layer: ONNX rank of its output value */
    char (*vname)[DP_NAME_MAX + 16]; /* per layer: the value that holds its output */
    int in_rank;
    const char *in_val; /* the value layers read as the model input: "input", or the
                         * output of the leading normalisation nodes */
    json_t *comp;       /* "dnnpress.compression" object */
    json_t *circ;       /* per circulant layer: "dnnpress.circulant.<layer>" */
    struct dp_errinfo *ei;
};

static void *exp_alloc(struct exp *e, size_t len)
{
    if (e->oom)
        return NULL;
    if (e->n == e->cap) {
        size_t cap = e->cap ? 2 * e->cap : 256;
        void **p = dp_realloc(e->ptrs, dp_size_mul(cap, sizeof(void *)));
        if (p == NULL) {
            e->oom = 1;
            return NULL;
        }
        e->ptrs = p;
        e->cap = cap;
    }
    void *q = dp_calloc(1, len ? len : 1);
    if (q == NULL) {
        e->oom = 1;
        return NULL;
    }
    e->ptrs[e->n++] = q;
    return q;
}

static char *exp_str(struct exp *e, const char *s)
{
    size_t n = strlen(s);
    char *d = exp_alloc(e, n + 1);
    if (d != NULL)
        memcpy(d, s, n + 1);
    return d;
}

static void exp_free_all(struct exp *e)
{
    for (size_t i = 0; i < e->n; i++)
        dp_free(e->ptrs[i]);
    dp_free(e->ptrs);
    e->ptrs = NULL;
    e->n = e->cap = 0;
}

/* ---- Building blocks ----------------------------------------------------- */

static Onnx__TensorProto *exp_tensor(struct exp *e, const char *name, int32_t dtype, int ndim,
                                     const int64_t *dims, const void *data, size_t bytes)
{
    Onnx__TensorProto *t = exp_alloc(e, sizeof(*t));
    int64_t *d = exp_alloc(e, sizeof(int64_t) * (size_t)(ndim ? ndim : 1));
    uint8_t *raw = exp_alloc(e, bytes);
    char *nm = exp_str(e, name);
    if (t == NULL || d == NULL || raw == NULL || nm == NULL)
        return NULL;
    onnx__tensor_proto__init(t);
    t->name = nm;
    t->has_data_type = 1;
    t->data_type = dtype;
    t->n_dims = (size_t)ndim;
    if (ndim > 0)
        memcpy(d, dims, sizeof(int64_t) * (size_t)ndim);
    t->dims = d;
    if (bytes > 0)
        memcpy(raw, data, bytes);
    t->has_raw_data = 1;
    t->raw_data.data = raw;
    t->raw_data.len = bytes;
    return t;
}

static int exp_init_add(struct exp *e, Onnx__TensorProto *t)
{
    if (t == NULL || e->g->n_initializer >= e->cap_init) {
        e->oom = 1;
        return -1;
    }
    e->g->initializer[e->g->n_initializer++] = t;
    return 0;
}

static int exp_init_f32(struct exp *e, const char *name, int ndim, const int64_t *dims,
                        const float *data, size_t n)
{
    return exp_init_add(e, exp_tensor(e, name, ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, ndim, dims,
                                      data, n * sizeof(float)));
}

static int exp_init_i64(struct exp *e, const char *name, int ndim, const int64_t *dims,
                        const int64_t *data, size_t n)
{
    return exp_init_add(e, exp_tensor(e, name, ONNX__TENSOR_PROTO__DATA_TYPE__INT64, ndim, dims,
                                      data, n * sizeof(int64_t)));
}

/* A node with the given inputs and one output; attributes added with exp_attr_*. */
static Onnx__NodeProto *exp_node(struct exp *e, const char *op, const char *name,
                                 const char *const *inputs, size_t n_in, const char *output)
{
    Onnx__NodeProto *nd = exp_alloc(e, sizeof(*nd));
    char **in = exp_alloc(e, sizeof(char *) * (n_in ? n_in : 1));
    char **out = exp_alloc(e, sizeof(char *));
    Onnx__AttributeProto **attrs = exp_alloc(e, sizeof(void *) * 8);
    if (nd == NULL || in == NULL || out == NULL || attrs == NULL || e->g->n_node >= e->cap_node) {
        e->oom = 1;
        return NULL;
    }
    onnx__node_proto__init(nd);
    nd->op_type = exp_str(e, op);
    nd->name = exp_str(e, name);
    for (size_t i = 0; i < n_in; i++)
        in[i] = exp_str(e, inputs[i]);
    nd->input = in;
    nd->n_input = n_in;
    out[0] = exp_str(e, output);
    nd->output = out;
    nd->n_output = 1;
    nd->attribute = attrs;
    e->g->node[e->g->n_node++] = nd;
    return nd;
}

static Onnx__AttributeProto *exp_attr(struct exp *e, Onnx__NodeProto *nd, const char *name,
                                      Onnx__AttributeProto__AttributeType type)
{
    if (nd == NULL || nd->n_attribute >= 8)
        return NULL;
    Onnx__AttributeProto *a = exp_alloc(e, sizeof(*a));
    if (a == NULL)
        return NULL;
    onnx__attribute_proto__init(a);
    a->name = exp_str(e, name);
    a->has_type = 1;
    a->type = type;
    nd->attribute[nd->n_attribute++] = a;
    return a;
}

static void exp_attr_i(struct exp *e, Onnx__NodeProto *nd, const char *name, int64_t v)
{
    Onnx__AttributeProto *a = exp_attr(e, nd, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT);
    if (a != NULL) {
        a->has_i = 1;
        a->i = v;
    }
}

static void exp_attr_f(struct exp *e, Onnx__NodeProto *nd, const char *name, float v)
{
    Onnx__AttributeProto *a = exp_attr(e, nd, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT);
    if (a != NULL) {
        a->has_f = 1;
        a->f = v;
    }
}

static void exp_attr_ints(struct exp *e, Onnx__NodeProto *nd, const char *name, const int64_t *v,
                          size_t n)
{
    Onnx__AttributeProto *a = exp_attr(e, nd, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS);
    int64_t *d = exp_alloc(e, n * sizeof(int64_t));
    if (a != NULL && d != NULL) {
        if (n > 0)
            memcpy(d, v, n * sizeof(int64_t));
        a->ints = d;
        a->n_ints = n;
    }
}

static Onnx__ValueInfoProto *exp_value_info(struct exp *e, const char *name, int rank,
                                            const int64_t *dims)
{
    Onnx__ValueInfoProto *vi = exp_alloc(e, sizeof(*vi));
    Onnx__TypeProto *tp = exp_alloc(e, sizeof(*tp));
    Onnx__TypeProto__Tensor *tt = exp_alloc(e, sizeof(*tt));
    Onnx__TensorShapeProto *sh = exp_alloc(e, sizeof(*sh));
    Onnx__TensorShapeProto__Dimension **dv = exp_alloc(e, sizeof(void *) * 4);
    if (vi == NULL || tp == NULL || tt == NULL || sh == NULL || dv == NULL)
        return NULL;
    onnx__value_info_proto__init(vi);
    onnx__type_proto__init(tp);
    onnx__type_proto__tensor__init(tt);
    onnx__tensor_shape_proto__init(sh);
    for (int i = 0; i < rank; i++) {
        Onnx__TensorShapeProto__Dimension *d = exp_alloc(e, sizeof(*d));
        if (d == NULL)
            return NULL;
        onnx__tensor_shape_proto__dimension__init(d);
        if (i == 0 && e->batch <= 0) {
            d->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
            d->dim_param = exp_str(e, "N");
        } else {
            d->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
            d->dim_value = i == 0 ? e->batch : dims[i];
        }
        dv[i] = d;
    }
    sh->dim = dv;
    sh->n_dim = (size_t)rank;
    tt->has_elem_type = 1;
    tt->elem_type = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
    tt->shape = sh;
    tp->value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
    tp->tensor_type = tt;
    vi->type = tp;
    vi->name = exp_str(e, name);
    return vi;
}

/* ---- Values and ranks ---------------------------------------------------- */

static void exp_shape(const struct exp *e, int li, int *c, int *h, int *w)
{
    if (li == DP_MODEL_INPUT) {
        *c = e->m->in_c;
        *h = e->m->in_h;
        *w = e->m->in_w;
    } else {
        *c = e->m->layers[li].out_c;
        *h = e->m->layers[li].out_h;
        *w = e->m->layers[li].out_w;
    }
}

static const char *exp_val(const struct exp *e, int li)
{
    return li == DP_MODEL_INPUT ? e->in_val : e->vname[li];
}

static int exp_rank(const struct exp *e, int li)
{
    return li == DP_MODEL_INPUT ? e->in_rank : e->rank[li];
}

/*
 * The name of a value holding layer li's output with the given rank,
 * adding a Flatten (to 2) or a Reshape (to 4) node when needed. buf gets
 * the name (cap bytes).
 */
static const char *exp_as_rank(struct exp *e, int li, int rank, char *buf, size_t cap)
{
    const char *src = exp_val(e, li);
    if (exp_rank(e, li) == rank)
        return src;
    snprintf(buf, cap, "%s.rank%d", src, rank);
    /* Added once per value and rank. */
    for (size_t i = 0; i < e->g->n_node; i++) {
        if (strcmp(e->g->node[i]->output[0], buf) == 0)
            return buf;
    }
    if (rank == 2) {
        Onnx__NodeProto *nd = exp_node(e, "Flatten", buf, &src, 1, buf);
        exp_attr_i(e, nd, "axis", 1);
    } else {
        int c, h, w;
        exp_shape(e, li, &c, &h, &w);
        char sname[DP_NAME_MAX + 32];
        snprintf(sname, sizeof(sname), "%s.shape", buf);
        const int64_t shape[4] = {0, c, h, w}, sd[1] = {4};
        exp_init_i64(e, sname, 1, sd, shape, 4);
        const char *in[2] = {src, sname};
        exp_node(e, "Reshape", buf, in, 2, buf);
    }
    return buf;
}

/* ---- Quantized weights --------------------------------------------------- */

/* 2 when round(w/s) * s gives every w back exactly, 1 when every w / s is an
 * integer in [-qmax, qmax] to 1e-3 of a level, 0 otherwise. */
static int exp_on_grid(const float *w, size_t n, size_t stride, float s, int qmax)
{
    int exact = 1;
    if (!(s > 0.0f) || !isfinite(s))
        return 0;
    for (size_t i = 0; i < n; i++) {
        float q = w[i * stride] / s;
        float r = nearbyintf(q);
        if (fabsf(q - r) > 1e-3f || fabsf(r) > (float)qmax)
            return 0;
        exact &= r * s == w[i * stride];
    }
    return 1 + exact;
}

/* A scale that puts all n weights (stride apart) on an integer grid; 0 when none does. */
static float exp_find_scale(const float *w, size_t n, size_t stride, float recorded, int qmax)
{
    float mx = 0.0f, mn = INFINITY;
    for (size_t i = 0; i < n; i++) {
        float a = fabsf(w[i * stride]);
        mx = a > mx ? a : mx;
        if (a > 0.0f && a < mn)
            mn = a;
    }
    if (mx == 0.0f)
        return 1.0f; /* all zero: any scale */
    /* The smallest level first: q * mn then reproduces k * s bit for bit. */
    /* The recorded scale, then level spacings implied by the smallest and the
     * largest magnitude (pruning may have removed the small levels), each
     * with its float neighbours: prefer one that gives every weight back
     * exactly, else one within 1e-3 of a level. */
    float best = 0.0f;
    int best_fit = exp_on_grid(w, n, stride, recorded, qmax);
    if (best_fit > 0)
        best = recorded;
    for (int j = 1; j <= qmax && best_fit < 2; j++) {
        const float base[2] = {mn / (float)j, mx / (float)j};
        for (int b = 0; b < 2 && best_fit < 2; b++) {
            const float c[3] = {base[b], nextafterf(base[b], 0.0f), nextafterf(base[b], INFINITY)};
            for (int k = 0; k < 3; k++) {
                int fit = exp_on_grid(w, n, stride, c[k], qmax);
                if (fit > best_fit) {
                    best = c[k];
                    best_fit = fit;
                }
            }
        }
    }
    return best;
}

/*
 * For a quantized conv/linear layer with opts.qdq: adds QuantizeLinear ->
 * DequantizeLinear after the float weight initializer and returns the name
 * of the dequantized value in buf; returns the plain weight name when the
 * levels are not a uniform grid. *how gets "per-layer", "per-channel" or
 * a reason.
 */
static const char *exp_qdq(struct exp *e, const struct dp_layer *l, const struct dp_param *p,
                           char *buf, size_t cap, const char **how)
{
    const float *w = dp_param_data(e->m, p);
    const size_t O = (size_t)p->shape[0], per = p->numel / O;
    const int bits = l->comp.bits;
    const int qmax = bits <= 2 ? 1 : (1 << (bits - 1)) - 1;
    float *scales = exp_alloc(e, O * sizeof(float));
    int8_t *zp = exp_alloc(e, O);
    if (scales == NULL || zp == NULL)
        return p->name;
    size_t n_scales = 1;
    scales[0] = exp_find_scale(w, p->numel, 1, l->comp.scale, qmax);
    *how = "per-layer";
    if (scales[0] == 0.0f && e->opset < 13) {
        *how = "float (per-channel scales need opset 13)";
        return p->name;
    }
    if (scales[0] == 0.0f) {
        n_scales = O;
        *how = "per-channel";
        for (size_t o = 0; o < O; o++) {
            scales[o] = exp_find_scale(w + o * per, per, 1, 0.0f, qmax);
            if (scales[o] == 0.0f) {
                *how = "float (the levels are not a uniform grid)";
                return p->name;
            }
        }
    }
    char sname[DP_NAME_MAX * 2 + 16], zname[DP_NAME_MAX * 2 + 16], qname[DP_NAME_MAX * 2 + 16];
    snprintf(sname, sizeof(sname), "%s_scale", p->name);
    snprintf(zname, sizeof(zname), "%s_zero_point", p->name);
    snprintf(qname, sizeof(qname), "%s_q", p->name);
    snprintf(buf, cap, "%s_dq", p->name);
    const int64_t sd[1] = {(int64_t)n_scales};
    const int nd = n_scales > 1 ? 1 : 0;
    exp_init_f32(e, sname, nd, sd, scales, n_scales);
    exp_init_add(e,
                 exp_tensor(e, zname, ONNX__TENSOR_PROTO__DATA_TYPE__INT8, nd, sd, zp, n_scales));
    const char *qin[3] = {p->name, sname, zname};
    Onnx__NodeProto *q = exp_node(e, "QuantizeLinear", qname, qin, 3, qname);
    const char *dqin[3] = {qname, sname, zname};
    Onnx__NodeProto *dq = exp_node(e, "DequantizeLinear", buf, dqin, 3, buf);
    if (n_scales > 1) {
        exp_attr_i(e, q, "axis", 0);
        exp_attr_i(e, dq, "axis", 0);
    }
    return buf;
}

/* ---- Layers -------------------------------------------------------------- */

static const struct dp_param *exp_param(const struct exp *e, const struct dp_layer *l, int k)
{
    return &e->m->params[l->first_param + k];
}

static int exp_params(struct exp *e, const struct dp_layer *l)
{
    for (int k = 0; k < l->n_params; k++) {
        const struct dp_param *p = exp_param(e, l, k);
        if (exp_init_f32(e, p->name, p->ndim, p->shape, dp_param_data(e->m, p), p->numel) != 0)
            return -1;
    }
    return 0;
}

/* Records a compressed layer in the "dnnpress.compression" metadata. */
static void exp_comp_note(struct exp *e, const struct dp_layer *l, const char *how)
{
    if (l->comp.scheme[0] == '\0' && l->comp.bits == 0 && l->comp.target_rate == 0.0f)
        return;
    size_t n = 0, nz = 0;
    if (l->n_params > 0 && dp_op_info(l->op)->compressible) {
        const struct dp_param *p = exp_param(e, l, 0);
        const float *w = dp_param_data(e->m, p);
        n = p->numel;
        for (size_t i = 0; i < n; i++)
            nz += w[i] != 0.0f;
    }
    json_t *o =
        json_pack("{s:s, s:f, s:i, s:f, s:f}", "scheme", l->comp.scheme, "target_rate",
                  (double)l->comp.target_rate, "bits", l->comp.bits, "scale", (double)l->comp.scale,
                  "sparsity", n ? 1.0 - (double)nz / (double)n : 0.0);
    if (o != NULL && how != NULL)
        json_object_set_new(o, "export", json_string(how));
    if (o == NULL || json_object_set_new(e->comp, l->name, o) != 0)
        e->oom = 1;
}

static int exp_window(struct exp *e, Onnx__NodeProto *nd, const struct dp_op_attrs *a, int conv)
{
    const int64_t k[2] = {a->kh, a->kw}, s[2] = {a->sh, a->sw}, d[2] = {a->dh, a->dw},
                  p[4] = {a->pt, a->pl, a->pb, a->pr};
    exp_attr_ints(e, nd, "kernel_shape", k, 2);
    exp_attr_ints(e, nd, "strides", s, 2);
    exp_attr_ints(e, nd, "pads", p, 4);
    if (conv)
        exp_attr_ints(e, nd, "dilations", d, 2);
    return 0;
}

/* ---- Recurrent and block-circulant layers (issue 15) --------------------- */

/*
 * The dense rows x cols matrix of block-circulant vectors c (p, q, k),
 * first-column convention (common/op.h): W[i*k + r][j*k + s] =
 * c[(i*q + j)*k + (r - s) mod k]; the padding past rows and cols is
 * dropped. out: rows * cols floats.
 */
static void exp_circ_expand(const float *c, int64_t rows, int64_t cols, int k, float *out)
{
    const int64_t q = (cols + k - 1) / k;
    for (int64_t i = 0; i < rows; i++) {
        const int64_t bi = i / k, r = i % k;
        for (int64_t j = 0; j < cols; j++) {
            const int64_t bj = j / k, s = j % k;
            out[i * cols + j] = c[(bi * q + bj) * k + (r - s + k) % k];
        }
    }
}

/* Parameter k of layer l as a dense rows x cols matrix (expanded when the
 * layer is circulant); NULL on OOM (e->oom set). */
static float *exp_dense(struct exp *e, const struct dp_layer *l, int k, int64_t rows, int64_t cols)
{
    const struct dp_param *p = exp_param(e, l, k);
    float *d = exp_alloc(e, dp_size_mul((size_t)(rows * cols), sizeof(float)));
    if (d == NULL)
        return NULL;
    if (l->a.block > 0)
        exp_circ_expand(dp_param_data(e->m, p), rows, cols, l->a.block, d);
    else
        memcpy(d, dp_param_data(e->m, p), (size_t)(rows * cols) * sizeof(float));
    return d;
}

/* Notes a circulant layer in "dnnpress.circulant.<layer>". */
static void exp_circ_note(struct exp *e, const struct dp_layer *l)
{
    if (l->a.block < 1)
        return;
    json_t *o = json_pack("{s:i, s:s, s:s}", "block", l->a.block, "op", dp_op_name(l->op),
                          "exported", "expanded dense weights");
    if (o == NULL || json_object_set_new(e->circ, l->name, o) != 0)
        e->oom = 1;
}

/* circ_linear's (out, in) or circ_conv2d's (out, in, kh, kw) dense weight as
 * an initializer named like the layer's weight; its name or NULL. */
static const char *exp_circ_weight(struct exp *e, int li, char *buf, size_t cap)
{
    const struct dp_layer *l = &e->m->layers[li];
    const struct dp_op_attrs *a = &l->a;
    int c, h, w;
    exp_shape(e, l->inputs[0], &c, &h, &w);
    const struct dp_param *p = exp_param(e, l, 0);
    snprintf(buf, cap, "%s", p->name);
    exp_circ_note(e, l);
    if (l->op == DP_OP_CIRC_LINEAR) {
        const int64_t cols = (int64_t)c * h * w, dims[2] = {a->out_ch, cols};
        float *d = exp_dense(e, l, 0, a->out_ch, cols);
        return d != NULL && exp_init_f32(e, buf, 2, dims, d, (size_t)(a->out_ch * cols)) == 0
                   ? buf
                   : NULL;
    }
    /* Tap t = u * kw + v of (kh * kw, p, q, k) is the (out, in) matrix at (u, v). */
    const int64_t taps = (int64_t)a->kh * a->kw, o = a->out_ch;
    const int64_t per =
        (int64_t)(o + a->block - 1) / a->block * ((c + a->block - 1) / a->block) * a->block;
    float *m = exp_alloc(e, dp_size_mul((size_t)(o * c), sizeof(float)));
    float *d = exp_alloc(e, dp_size_mul((size_t)(o * c * taps), sizeof(float)));
    if (m == NULL || d == NULL)
        return NULL;
    const float *src = dp_param_data(e->m, p);
    for (int64_t t = 0; t < taps; t++) {
        exp_circ_expand(src + t * per, o, c, a->block, m);
        for (int64_t i = 0; i < o * c; i++)
            d[i * taps + t] = m[i];
    }
    const int64_t dims[4] = {o, c, a->kh, a->kw};
    return exp_init_f32(e, buf, 4, dims, d, (size_t)(o * c * taps)) == 0 ? buf : NULL;
}

/* An (rows, cols) matrix with PyTorch's gate blocks in ONNX's order, as a
 * (1, rows, cols) initializer `name`. */
static void exp_rnn_matrix(struct exp *e, const char *name, const float *src, int gates, int hidden,
                           int64_t cols, int64_t n_dirs_rows)
{
    /* ONNX gate j is PyTorch gate to_onnx[j]: LSTM i o f c <- i f g o, GRU z r h <- r z n. */
    static const int lstm_pt[4] = {0, 3, 1, 2}, gru_pt[3] = {1, 0, 2};
    const int *pt = gates == 4 ? lstm_pt : gru_pt;
    const size_t blk = (size_t)hidden * (size_t)cols;
    float *d = exp_alloc(e, dp_size_mul((size_t)gates * blk, sizeof(float)));
    if (d == NULL)
        return;
    for (int j = 0; j < gates; j++)
        memcpy(d + (size_t)j * blk, src + (size_t)pt[j] * blk, blk * sizeof(float));
    const int64_t dims[3] = {1, n_dirs_rows, cols};
    exp_init_f32(e, name, 3, dims, d, (size_t)gates * blk);
}

/*
 * lstm / gru: (N, 1, T, F) -Reshape-> (N, T, F) -Transpose(1,0,2)-> (T, N, F)
 * -LSTM/GRU (layout 0, valid from opset 7 on)-> Y (T, 1, N, H)
 * -Transpose(2,1,0,3)-> (N, 1, T, H), the IR's (1, T, H) per sample. The
 * recurrent node is named after the layer, so the importer gives the layer
 * its name back. Returns the last node or NULL.
 */
static Onnx__NodeProto *exp_rnn(struct exp *e, int li)
{
    const struct dp_layer *l = &e->m->layers[li];
    const int gates = l->op == DP_OP_LSTM ? 4 : 3, hidden = l->a.out_ch;
    const int64_t gh = (int64_t)gates * hidden;
    int c, h, w;
    exp_shape(e, l->inputs[0], &c, &h, &w);
    char src_b[DP_NAME_MAX * 2 + 32], n[6][DP_NAME_MAX + 32];
    const char *src = exp_as_rank(e, l->inputs[0], 4, src_b, sizeof(src_b));
    static const char *const sfx[6] = {".x_bf", ".x_bf.shape", ".x_tm", ".W", ".R", ".B"};
    for (int k = 0; k < 6; k++)
        snprintf(n[k], sizeof(n[k]), "%s%s", l->name, sfx[k]);
    char y_tm[DP_NAME_MAX + 32], out_node[DP_NAME_MAX + 32];
    snprintf(y_tm, sizeof(y_tm), "%s.y_tm", l->name);
    snprintf(out_node, sizeof(out_node), "%s.bf", l->name);
    exp_circ_note(e, l);
    /* Weights: dense (expanded when circulant), gates reordered; B = [Wb, Rb]. */
    float *wih = exp_dense(e, l, 0, gh, w), *whh = exp_dense(e, l, 1, gh, hidden);
    float *b = exp_alloc(e, dp_size_mul((size_t)(2 * gh), sizeof(float)));
    if (wih == NULL || whh == NULL || b == NULL)
        return NULL;
    exp_rnn_matrix(e, n[3], wih, gates, hidden, w, gh);
    exp_rnn_matrix(e, n[4], whh, gates, hidden, hidden, gh);
    float *tmp = exp_alloc(e, dp_size_mul((size_t)gh, sizeof(float)));
    if (tmp == NULL)
        return NULL;
    for (int half = 0; half < 2; half++) {
        static const int lstm_pt[4] = {0, 3, 1, 2}, gru_pt[3] = {1, 0, 2};
        const int *pt = gates == 4 ? lstm_pt : gru_pt;
        const float *bs = dp_param_data(e->m, exp_param(e, l, 2 + half));
        for (int j = 0; j < gates; j++)
            memcpy(b + half * gh + (int64_t)j * hidden, bs + (int64_t)pt[j] * hidden,
                   (size_t)hidden * sizeof(float));
    }
    const int64_t bd[2] = {1, 2 * gh};
    exp_init_f32(e, n[5], 2, bd, b, (size_t)(2 * gh));
    const int64_t shape[3] = {0, h, w}, sd[1] = {3};
    exp_init_i64(e, n[1], 1, sd, shape, 3);
    const char *r_in[2] = {src, n[1]};
    Onnx__NodeProto *nd = exp_node(e, "Reshape", n[0], r_in, 2, n[0]);
    static const int64_t swap3[3] = {1, 0, 2}, back4[4] = {2, 1, 0, 3};
    const char *t_in = n[0];
    if (nd != NULL)
        nd = exp_node(e, "Transpose", n[2], &t_in, 1, n[2]);
    if (nd != NULL)
        exp_attr_ints(e, nd, "perm", swap3, 3);
    const char *rnn_in[4] = {n[2], n[3], n[4], n[5]};
    if (nd != NULL)
        nd = exp_node(e, gates == 4 ? "LSTM" : "GRU", l->name, rnn_in, 4, y_tm);
    if (nd != NULL) {
        exp_attr_i(e, nd, "hidden_size", hidden);
        if (gates == 3)
            exp_attr_i(e, nd, "linear_before_reset", 1);
    }
    const char *y_in = y_tm;
    if (nd != NULL)
        nd = exp_node(e, "Transpose", out_node, &y_in, 1, l->name);
    if (nd != NULL)
        exp_attr_ints(e, nd, "perm", back4, 4);
    return nd;
}

static enum dp_err exp_layer_impl(struct exp *e, const struct dp_onnx_export_opts *o, int li)
{
    const struct dp_layer *l = &e->m->layers[li];
    const struct dp_op_attrs *a = &l->a;
    const char *name = l->name;
    char b0[DP_NAME_MAX * 2 + 32], b1[DP_NAME_MAX * 2 + 32], wq[DP_NAME_MAX * 2 + 32];
    const char *how = NULL;
    int c, h, w;
    exp_shape(e, li, &c, &h, &w);
    e->rank[li] = h == 1 && w == 1 ? 2 : 4;
    snprintf(e->vname[li], sizeof(e->vname[li]), "%s", name);
    Onnx__NodeProto *nd = NULL;
    const int in0 = l->inputs[0];
    /* No default: -Wswitch makes a new enum dp_op fail the build until it
     * has its node here (docs/architecture.md, "Adding an op"). */
    switch (l->op) {
        case DP_OP_CONV2D:
        case DP_OP_LINEAR: {
            const int conv = l->op == DP_OP_CONV2D;
            if (exp_params(e, l) != 0)
                break;
            const struct dp_param *wp = exp_param(e, l, 0);
            const char *wname = wp->name;
            if (o->qdq && l->comp.bits >= 1 && l->comp.bits <= 8)
                wname = exp_qdq(e, l, wp, wq, sizeof(wq), &how);
            const char *in[3] = {conv ? exp_as_rank(e, in0, 4, b0, sizeof(b0))
                                      : exp_as_rank(e, in0, 2, b0, sizeof(b0)),
                                 wname, a->has_bias ? exp_param(e, l, 1)->name : NULL};
            nd = exp_node(e, conv ? "Conv" : "Gemm", name, in, a->has_bias ? 3 : 2, name);
            if (conv) {
                exp_window(e, nd, a, 1);
                exp_attr_i(e, nd, "group", a->groups);
                e->rank[li] = 4;
            } else {
                exp_attr_i(e, nd, "transB", 1);
                e->rank[li] = 2;
            }
            break;
        }
        case DP_OP_MAXPOOL:
        case DP_OP_AVGPOOL: {
            const char *in = exp_as_rank(e, in0, 4, b0, sizeof(b0));
            nd =
                exp_node(e, l->op == DP_OP_MAXPOOL ? "MaxPool" : "AveragePool", name, &in, 1, name);
            exp_window(e, nd, a, 0);
            if (a->ceil_mode)
                exp_attr_i(e, nd, "ceil_mode", 1);
            if (l->op == DP_OP_AVGPOOL && a->count_include_pad)
                exp_attr_i(e, nd, "count_include_pad", 1);
            e->rank[li] = 4;
            break;
        }
        case DP_OP_GAP: {
            const char *in = exp_as_rank(e, in0, 4, b0, sizeof(b0));
            nd = exp_node(e, "GlobalAveragePool", name, &in, 1, name);
            e->rank[li] = 4;
            break;
        }
        case DP_OP_BN2D: {
            if (exp_params(e, l) != 0)
                break;
            const char *in[5] = {exp_val(e, in0), exp_param(e, l, 0)->name,
                                 exp_param(e, l, 1)->name, exp_param(e, l, 2)->name,
                                 exp_param(e, l, 3)->name};
            nd = exp_node(e, "BatchNormalization", name, in, 5, name);
            exp_attr_f(e, nd, "epsilon", a->eps);
            exp_attr_f(e, nd, "momentum", 1.0f - a->momentum);
            e->rank[li] = exp_rank(e, in0);
            break;
        }
        case DP_OP_RELU:
        case DP_OP_RELU6:
        case DP_OP_CLIP:
        case DP_OP_DROPOUT: {
            const char *in[3] = {exp_val(e, in0), NULL, NULL};
            size_t n_in = 1;
            const int as_attrs = l->op == DP_OP_DROPOUT ? e->opset < 12 : e->opset < 11;
            if (l->op != DP_OP_RELU && !as_attrs) {
                /* Clip bounds and the dropout ratio are inputs since opsets 11/12. */
                const float lo = l->op == DP_OP_RELU6 ? 0.0f : a->lo;
                const float hi = l->op == DP_OP_RELU6 ? 6.0f : a->hi;
                snprintf(b0, sizeof(b0), "%s.%s", name, l->op == DP_OP_DROPOUT ? "ratio" : "min");
                snprintf(b1, sizeof(b1), "%s.max", name);
                exp_init_f32(e, b0, 0, NULL, l->op == DP_OP_DROPOUT ? &a->p : &lo, 1);
                in[n_in++] = b0;
                if (l->op != DP_OP_DROPOUT) {
                    exp_init_f32(e, b1, 0, NULL, &hi, 1);
                    in[n_in++] = b1;
                }
            }
            nd = exp_node(e,
                          l->op == DP_OP_RELU      ? "Relu"
                          : l->op == DP_OP_DROPOUT ? "Dropout"
                                                   : "Clip",
                          name, in, n_in, name);
            if (as_attrs && l->op == DP_OP_DROPOUT) {
                exp_attr_f(e, nd, "ratio", a->p);
            } else if (as_attrs && l->op != DP_OP_RELU) {
                exp_attr_f(e, nd, "min", l->op == DP_OP_RELU6 ? 0.0f : a->lo);
                exp_attr_f(e, nd, "max", l->op == DP_OP_RELU6 ? 6.0f : a->hi);
            }
            e->rank[li] = exp_rank(e, in0);
            break;
        }
        case DP_OP_ADD: {
            int r = exp_rank(e, in0) == 4 || exp_rank(e, l->inputs[1]) == 4 ? 4 : 2;
            const char *in[2] = {exp_as_rank(e, in0, r, b0, sizeof(b0)),
                                 exp_as_rank(e, l->inputs[1], r, b1, sizeof(b1))};
            nd = exp_node(e, "Add", name, in, 2, name);
            e->rank[li] = r;
            break;
        }
        case DP_OP_FLATTEN: {
            const char *in = exp_val(e, in0);
            nd = exp_node(e, "Flatten", name, &in, 1, name);
            exp_attr_i(e, nd, "axis", 1);
            e->rank[li] = 2;
            break;
        }
        case DP_OP_CONCAT: {
            int r = a->axis == 1 && exp_rank(e, in0) == 2 && exp_rank(e, l->inputs[1]) == 2 ? 2 : 4;
            const char *in[2] = {exp_as_rank(e, in0, r, b0, sizeof(b0)),
                                 exp_as_rank(e, l->inputs[1], r, b1, sizeof(b1))};
            nd = exp_node(e, "Concat", name, in, 2, name);
            exp_attr_i(e, nd, "axis", a->axis);
            e->rank[li] = r;
            break;
        }
        case DP_OP_SOFTMAX: {
            /* Opset 13 normalises one axis: the span must have one axis over 1. */
            const int dims[4] = {0, c, h, w};
            int axis = a->axis, n_big = 0;
            for (int k = a->axis; k <= a->axis_end; k++) {
                if (dims[k] > 1) {
                    axis = k;
                    n_big++;
                }
            }
            /* Before opset 13 Softmax normalises everything from axis on. */
            for (int k = a->axis_end + 1; e->opset < 13 && k <= 3; k++)
                n_big += dims[k] > 1 ? 2 : 0;
            if (n_big > 1)
                return dp_errinfo_set(e->ei, DP_EUNSUPPORTED,
                                      "layer '%s': a softmax over several axes of a map has no "
                                      "single-node ONNX form",
                                      name);
            int r = axis == 1 ? exp_rank(e, in0) : 4;
            const char *in = exp_as_rank(e, in0, r, b0, sizeof(b0));
            nd = exp_node(e, "Softmax", name, &in, 1, name);
            exp_attr_i(e, nd, "axis", axis);
            e->rank[li] = r;
            break;
        }
        case DP_OP_RESHAPE: {
            const int r = a->to_h == 1 && a->to_w == 1 ? 2 : 4;
            const char *src = exp_val(e, in0);
            snprintf(b0, sizeof(b0), "%s.shape", name);
            const int64_t shape[4] = {0, a->to_c, a->to_h, a->to_w}, sd[1] = {r};
            exp_init_i64(e, b0, 1, sd, shape, (size_t)r);
            const char *in[2] = {src, b0};
            nd = exp_node(e, "Reshape", name, in, 2, name);
            e->rank[li] = r;
            break;
        }
        case DP_OP_SIGMOID:
        case DP_OP_HARDSIGMOID:
        case DP_OP_HARDSWISH:
        case DP_OP_SILU: {
            /* SiLU has no ONNX operator and HardSwish none before opset 14:
             * x times Sigmoid(x) or HardSigmoid(x) (alpha 1/6, beta 1/2). */
            const char *in = exp_val(e, in0);
            const int as_mul = l->op == DP_OP_SILU || (l->op == DP_OP_HARDSWISH && e->opset < 14);
            snprintf(b0, sizeof(b0), "%s.gate", name);
            const char *op = l->op == DP_OP_SIGMOID || l->op == DP_OP_SILU ? "Sigmoid"
                             : l->op == DP_OP_HARDSWISH && !as_mul         ? "HardSwish"
                                                                           : "HardSigmoid";
            /* Node names are unique in a valid graph (ONNX Runtime refuses
             * duplicates): the gate of a product is named after its output. */
            nd = exp_node(e, op, as_mul ? b0 : name, &in, 1, as_mul ? b0 : name);
            if (nd != NULL && l->op == DP_OP_HARDSIGMOID) {
                exp_attr_f(e, nd, "alpha", a->alpha);
                exp_attr_f(e, nd, "beta", a->beta);
            } else if (nd != NULL && l->op == DP_OP_HARDSWISH && as_mul) {
                exp_attr_f(e, nd, "alpha", 1.0f / 6.0f);
                exp_attr_f(e, nd, "beta", 0.5f);
            }
            if (nd != NULL && as_mul) {
                const char *mi[2] = {in, b0};
                nd = exp_node(e, "Mul", name, mi, 2, name);
            }
            e->rank[li] = exp_rank(e, in0);
            break;
        }
        case DP_OP_MUL:
        case DP_OP_SUB:
        case DP_OP_DIV:
        case DP_OP_ADD_BCAST: {
            /* Rank 4 unless both operands are vectors, so (N,C,1,1) meets (N,C,H,W). */
            int r = exp_rank(e, in0) == 4 || exp_rank(e, l->inputs[1]) == 4 ? 4 : 2;
            const char *in[2] = {exp_as_rank(e, in0, r, b0, sizeof(b0)),
                                 exp_as_rank(e, l->inputs[1], r, b1, sizeof(b1))};
            nd = exp_node(e,
                          l->op == DP_OP_MUL   ? "Mul"
                          : l->op == DP_OP_SUB ? "Sub"
                          : l->op == DP_OP_DIV ? "Div"
                                               : "Add",
                          name, in, 2, name);
            e->rank[li] = r;
            break;
        }
        case DP_OP_SLICE: {
            const int r = a->axis == 1 ? exp_rank(e, in0) : 4;
            const char *in[4] = {exp_as_rank(e, in0, r, b0, sizeof(b0)), b1, wq, NULL};
            char ax[DP_NAME_MAX * 2 + 32];
            snprintf(b1, sizeof(b1), "%s.starts", name);
            snprintf(wq, sizeof(wq), "%s.ends", name);
            snprintf(ax, sizeof(ax), "%s.axes", name);
            in[3] = ax;
            const int64_t one[1] = {1}, st[1] = {a->start}, en[1] = {a->end}, axv[1] = {a->axis};
            exp_init_i64(e, b1, 1, one, st, 1);
            exp_init_i64(e, wq, 1, one, en, 1);
            exp_init_i64(e, ax, 1, one, axv, 1);
            nd = exp_node(e, "Slice", name, in, 4, name);
            e->rank[li] = r;
            break;
        }
        case DP_OP_SHUFFLE: {
            /* Reshape (N, g, C/g, H, W), Transpose (0, 2, 1, 3, 4), Reshape (N, C, H, W):
             * the form torch.onnx writes and the importer recognises. */
            const char *src = exp_as_rank(e, in0, 4, b0, sizeof(b0));
            char t1[DP_NAME_MAX * 2 + 32], t2[DP_NAME_MAX * 2 + 32];
            snprintf(b1, sizeof(b1), "%s.shape5", name);
            snprintf(wq, sizeof(wq), "%s.shape4", name);
            snprintf(t1, sizeof(t1), "%s.grid", name);
            snprintf(t2, sizeof(t2), "%s.grid_t", name);
            const int64_t s5[5] = {0, a->groups, c / a->groups, h, w}, s4[4] = {0, c, h, w};
            const int64_t d5[1] = {5}, d4[1] = {4}, perm[5] = {0, 2, 1, 3, 4};
            exp_init_i64(e, b1, 1, d5, s5, 5);
            exp_init_i64(e, wq, 1, d4, s4, 4);
            const char *r1[2] = {src, b1};
            nd = exp_node(e, "Reshape", t1, r1, 2, t1);
            const char *tin = t1;
            if (nd != NULL)
                nd = exp_node(e, "Transpose", t2, &tin, 1, t2);
            if (nd != NULL)
                exp_attr_ints(e, nd, "perm", perm, 5);
            const char *r2[2] = {t2, wq};
            if (nd != NULL)
                nd = exp_node(e, "Reshape", name, r2, 2, name);
            e->rank[li] = 4;
            break;
        }
        case DP_OP_MEAN: {
            /* As rank 4, keepdims: the IR's (C, H, W) are ONNX axes 1 to 3. */
            const char *in = exp_as_rank(e, in0, 4, b0, sizeof(b0));
            int64_t axes[3];
            size_t na = 0;
            for (int k = a->axis; k <= a->axis_end; k++)
                axes[na++] = k;
            nd = exp_node(e, "ReduceMean", name, &in, 1, name);
            if (nd != NULL) {
                exp_attr_ints(e, nd, "axes", axes, na);
                exp_attr_i(e, nd, "keepdims", 1);
            }
            e->rank[li] = 4;
            break;
        }
        case DP_OP_CONST: {
            /* An initializer of shape (1, C, H, W): no node, broadcast by its readers. */
            const struct dp_param *p = exp_param(e, l, 0);
            const int64_t dims[4] = {1, a->to_c, a->to_h, a->to_w};
            exp_init_f32(e, name, 4, dims, dp_param_data(e->m, p), p->numel);
            e->rank[li] = 4;
            exp_comp_note(e, l, how);
            return e->oom ? dp_errinfo_set(e->ei, DP_ENOMEM, "out of memory exporting layer '%s'",
                                           name)
                          : DP_OK;
        }
        case DP_OP_LSTM:
        case DP_OP_GRU:
            nd = exp_rnn(e, li);
            e->rank[li] = 4;
            break;
        case DP_OP_CIRC_LINEAR:
        case DP_OP_CIRC_CONV2D: {
            /* The equivalent dense Gemm or Conv (the metadata says it is circulant). */
            const int conv = l->op == DP_OP_CIRC_CONV2D;
            const char *wname = exp_circ_weight(e, li, b1, sizeof(b1));
            if (wname == NULL ||
                (a->has_bias &&
                 exp_init_f32(e, exp_param(e, l, 1)->name, 1, exp_param(e, l, 1)->shape,
                              dp_param_data(e->m, exp_param(e, l, 1)),
                              exp_param(e, l, 1)->numel) != 0))
                break;
            const char *in[3] = {conv ? exp_as_rank(e, in0, 4, b0, sizeof(b0))
                                      : exp_as_rank(e, in0, 2, b0, sizeof(b0)),
                                 wname, a->has_bias ? exp_param(e, l, 1)->name : NULL};
            nd = exp_node(e, conv ? "Conv" : "Gemm", name, in, a->has_bias ? 3 : 2, name);
            if (conv) {
                exp_window(e, nd, a, 1);
                exp_attr_i(e, nd, "group", 1);
            } else {
                exp_attr_i(e, nd, "transB", 1);
            }
            e->rank[li] = conv ? 4 : 2;
            break;
        }
        case DP_OP__COUNT:
            break;
    }
    exp_comp_note(e, l, how);
    if (e->oom || nd == NULL)
        return dp_errinfo_set(e->ei, DP_ENOMEM, "out of memory exporting layer '%s'", name);
    return DP_OK;
}

/* ---- Input normalisation -------------------------------------------------- */

/*
 * The model's input normalisation as the graph's first two nodes,
 * Sub(input, mean) then Div(., std), with per-channel constants shaped
 * (1, C, 1, 1) (or (1, C) for a vector input), so the exported model takes
 * what the data path starts from: pixels on the [0, 1] scale.
 */
static void exp_norm_nodes(struct exp *e)
{
    const struct dp_model *m = e->m;
    const int64_t dims[4] = {1, m->norm.n_c, 1, 1};
    const int nd = e->in_rank == 4 ? 4 : 2;
    exp_init_f32(e, "input.norm.mean", nd, dims, m->norm.mean, (size_t)m->norm.n_c);
    exp_init_f32(e, "input.norm.std", nd, dims, m->norm.std, (size_t)m->norm.n_c);
    const char *sub_in[2] = {"input", "input.norm.mean"};
    const char *div_in[2] = {"input.norm.centred", "input.norm.std"};
    exp_node(e, "Sub", "input.norm.sub", sub_in, 2, "input.norm.centred");
    exp_node(e, "Div", "input.norm.div", div_in, 2, "input.norm");
    e->in_val = "input.norm";
}

/* "dnnpress.normalization": the numbers, and whether the graph applies them. */
static json_t *exp_norm_meta(const struct dp_model *m, int in_graph)
{
    json_t *j = dp_model_norm_to_json(m);
    if (j != NULL &&
        (json_object_set_new(j, "in_graph", json_boolean(in_graph)) != 0 ||
         json_object_set_new(j, "input", json_string("pixels scaled to [0, 1]")) != 0)) {
        json_decref(j);
        j = NULL;
    }
    return j;
}

/* ---- Metadata ------------------------------------------------------------ */

/* Adds key = val (stolen) as compact JSON with prec significant digits (9
 * prints every float exactly). */
static int exp_meta(struct exp *e, Onnx__ModelProto *mp, const char *key, json_t *val, size_t prec)
{
    const size_t flags = JSON_COMPACT | JSON_SORT_KEYS | JSON_REAL_PRECISION(prec);
    size_t n = val != NULL ? json_dumpb(val, NULL, 0, flags) : 0;
    char *v = n > 0 ? exp_alloc(e, n + 1) : NULL;
    if (v != NULL && json_dumpb(val, v, n, flags) != n)
        v = NULL;
    json_decref(val);
    Onnx__StringStringEntryProto *kv = exp_alloc(e, sizeof(*kv));
    if (kv == NULL || v == NULL)
        return -1;
    onnx__string_string_entry_proto__init(kv);
    kv->key = exp_str(e, key);
    kv->value = v;
    mp->metadata_props[mp->n_metadata_props++] = kv;
    return 0;
}

/* The report without its trace: method, accuracies, totals, per layer rate and bits. */
static json_t *exp_report_summary(const json_t *r)
{
    json_t *s = json_object();
    static const char *const keys[] = {
        "version", "method", "dense_test_accuracy", "final_test_accuracy",
        "epochs",  "totals", "normalization"};
    for (size_t i = 0; s != NULL && i < sizeof(keys) / sizeof(keys[0]); i++) {
        json_t *v = json_object_get(r, keys[i]);
        if (v != NULL)
            json_object_set(s, keys[i], v);
    }
    json_t *layers = json_object_get(r, "layers"), *out = json_array();
    size_t i;
    json_t *l;
    json_array_foreach (layers, i, l) {
        json_t *o = json_object();
        static const char *const lk[] = {"name",  "rate",  "nonzeros", "params",
                                         "prune", "quant", "bits"};
        for (size_t k = 0; o != NULL && k < sizeof(lk) / sizeof(lk[0]); k++) {
            json_t *v = json_object_get(l, lk[k]);
            if (v != NULL)
                json_object_set(o, lk[k], v);
        }
        json_array_append_new(out, o);
    }
    if (s != NULL)
        json_object_set_new(s, "layers", out);
    else
        json_decref(out);
    return s;
}

/* ---- Whole model --------------------------------------------------------- */

enum dp_err dp_onnx_export_file(const struct dp_model *m, const char *path,
                                const struct dp_onnx_export_opts *opts, struct dp_errinfo *ei)
{
    static const struct dp_onnx_export_opts defaults = {0, 0, 0, NULL, 0};
    const struct dp_onnx_export_opts *o = opts != NULL ? opts : &defaults;
    if (!m->finalized || m->n_layers < 1)
        return dp_errinfo_set(ei, DP_EINVAL, "only a finalized model can be exported");
    struct exp e;
    memset(&e, 0, sizeof(e));
    e.m = m;
    e.ei = ei;
    e.batch = o->batch;
    e.opset = o->opset ? o->opset : DP_ONNX_EXPORT_OPSET;
    if (e.opset < DP_ONNX_EXPORT_OPSET_MIN || e.opset > DP_ONNX_EXPORT_OPSET_MAX)
        return dp_errinfo_set(ei, DP_EINVAL, "opset %lld is outside [%d, %d]", (long long)e.opset,
                              DP_ONNX_EXPORT_OPSET_MIN, DP_ONNX_EXPORT_OPSET_MAX);
    e.in_rank = m->in_h == 1 && m->in_w == 1 ? 2 : 4;
    e.in_val = "input";
    enum dp_err err = DP_OK;
    json_t *graph = NULL;
    e.comp = json_object();
    e.rank = exp_alloc(&e, sizeof(int) * (size_t)m->n_layers);
    e.vname = exp_alloc(&e, sizeof(*e.vname) * (size_t)m->n_layers);
    Onnx__ModelProto *mp = exp_alloc(&e, sizeof(*mp));
    Onnx__GraphProto *g = exp_alloc(&e, sizeof(*g));
    Onnx__OperatorSetIdProto *ops = exp_alloc(&e, sizeof(*ops));
    Onnx__OperatorSetIdProto **opsv = exp_alloc(&e, sizeof(void *));
    e.circ = json_object();
    /* At most 5 nodes per layer (an LSTM with a reshape in front); + 2: the normalisation. */
    e.cap_node = 5 * (size_t)m->n_layers + 10;
    e.cap_init = (size_t)m->n_params + 4 * (size_t)m->n_layers + 10;
    if (g != NULL) {
        g->node = exp_alloc(&e, sizeof(void *) * e.cap_node);
        g->initializer = exp_alloc(&e, sizeof(void *) * e.cap_init);
    }
    if (e.oom || e.comp == NULL || e.circ == NULL) {
        err = dp_errinfo_set(ei, DP_ENOMEM, "out of memory exporting");
        goto out;
    }
    onnx__model_proto__init(mp);
    {
        Onnx__NodeProto **nodes = g->node;
        Onnx__TensorProto **inits = g->initializer;
        onnx__graph_proto__init(g);
        g->node = nodes;
        g->initializer = inits;
    }
    e.g = g;
    g->name = exp_str(&e, "dnnpress");
    const int norm_in_graph = m->norm.n_c > 0 && !o->no_norm;
    if (norm_in_graph)
        exp_norm_nodes(&e);
    for (int li = 0; li < m->n_layers; li++) {
        err = exp_layer_impl(&e, o, li);
        if (err)
            goto out;
    }
    /* Input and output value infos. */
    const int64_t in_dims[4] = {0, m->in_c, m->in_h, m->in_w};
    const int64_t in_dims2[2] = {0, (int64_t)m->in_c * m->in_h * m->in_w};
    const int last = m->n_layers - 1;
    int c, h, w;
    exp_shape(&e, last, &c, &h, &w);
    const int64_t out4[4] = {0, c, h, w}, out2[2] = {0, (int64_t)c * h * w};
    Onnx__ValueInfoProto **ins = exp_alloc(&e, sizeof(void *));
    Onnx__ValueInfoProto **outs = exp_alloc(&e, sizeof(void *));
    if (ins == NULL || outs == NULL) {
        err = dp_errinfo_set(ei, DP_ENOMEM, "out of memory exporting");
        goto out;
    }
    ins[0] = exp_value_info(&e, "input", e.in_rank, e.in_rank == 4 ? in_dims : in_dims2);
    outs[0] = exp_value_info(&e, exp_val(&e, last), e.rank[last], e.rank[last] == 4 ? out4 : out2);
    g->input = ins;
    g->n_input = 1;
    g->output = outs;
    g->n_output = 1;
    onnx__operator_set_id_proto__init(ops);
    ops->domain = exp_str(&e, "");
    ops->has_version = 1;
    ops->version = e.opset;
    opsv[0] = ops;
    mp->opset_import = opsv;
    mp->n_opset_import = 1;
    mp->has_ir_version = 1;
    mp->ir_version = DP_ONNX_EXPORT_IR;
    mp->producer_name = exp_str(&e, "dnnpress");
    mp->producer_version = exp_str(&e, "1");
    mp->graph = g;
    /* Metadata: compression, report summary, IR graph. */
    mp->metadata_props = exp_alloc(&e, sizeof(void *) * (4 + json_object_size(e.circ)));
    if (mp->metadata_props == NULL) {
        err = dp_errinfo_set(ei, DP_ENOMEM, "out of memory exporting");
        goto out;
    }
    json_incref(e.comp);
    if (exp_meta(&e, mp, "dnnpress.compression", e.comp, 7) != 0 ||
        (o->report != NULL &&
         exp_meta(&e, mp, "dnnpress.report", exp_report_summary(o->report), 7) != 0) ||
        (m->norm.n_c > 0 &&
         exp_meta(&e, mp, DP_MODEL_META_NORM, exp_norm_meta(m, norm_in_graph), 9) != 0)) {
        err = dp_errinfo_set(ei, DP_ENOMEM, "out of memory writing metadata");
        goto out;
    }
    {
        /* One entry per circulant layer: ONNX has no circulant operator, so
         * the weights are the expanded dense matrices and this says so. */
        const char *lname;
        json_t *v;
        char key[DP_NAME_MAX + 32];
        json_object_foreach (e.circ, lname, v) {
            snprintf(key, sizeof(key), "dnnpress.circulant.%s", lname);
            json_incref(v);
            if (exp_meta(&e, mp, key, v, 7) != 0) {
                err = dp_errinfo_set(ei, DP_ENOMEM, "out of memory writing metadata");
                goto out;
            }
        }
    }
    err = dp_model_graph_to_json(m, &graph, ei);
    if (err)
        goto out;
    if (exp_meta(&e, mp, DP_MODEL_META_GRAPH, graph, 7) != 0) {
        graph = NULL;
        err = dp_errinfo_set(ei, DP_ENOMEM, "out of memory writing metadata");
        goto out;
    }
    graph = NULL;
    if (e.oom) {
        err = dp_errinfo_set(ei, DP_ENOMEM, "out of memory exporting");
        goto out;
    }
    err = dp_onnx_model_write(mp, path, ei);
out:
    json_decref(e.comp);
    json_decref(e.circ);
    json_decref(graph);
    exp_free_all(&e);
    return err;
}
