/*
 * The ONNX importer's operators (see onnx_import.h for the list and
 * onnx_import.c for the design): the value table, node attributes and
 * inputs, and one translator per supported operator, each adding at most
 * one IR layer (or only binding a value).
 */
#include "common/onnx_import_int.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "common/alloc.h"
#include "common/onnx.h"
#include "onnx.pb-c.h"

/* ---- Value table --------------------------------------------------------- */

static uint64_t imp_hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h;
}

struct imp_val *imp__find(const struct imp *im, const char *name)
{
    if (name == NULL || im->hash == NULL)
        return NULL;
    size_t mask = im->hash_cap - 1;
    for (size_t i = imp_hash_str(name) & mask;; i = (i + 1) & mask) {
        int k = im->hash[i];
        if (k < 0)
            return NULL;
        if (strcmp(im->vals[k].name, name) == 0)
            return &im->vals[k];
    }
}

/* Adds (or, for a name already bound, rebinds) a value; returns it or NULL on OOM. */
struct imp_val *imp__bind(struct imp *im, const char *name)
{
    struct imp_val *v = imp__find(im, name);
    if (v != NULL) {
        dp_free(v->f);
        dp_free(v->iv);
        memset(v, 0, sizeof(*v));
        v->name = name;
        return v;
    }
    if (im->n_vals >= im->cap_vals)
        return NULL; /* capacity is fixed up front from the graph's size */
    v = &im->vals[im->n_vals];
    memset(v, 0, sizeof(*v));
    v->name = name;
    size_t mask = im->hash_cap - 1;
    size_t i = imp_hash_str(name) & mask;
    while (im->hash[i] >= 0)
        i = (i + 1) & mask;
    im->hash[i] = im->n_vals++;
    return v;
}

/* ---- Errors and attributes ----------------------------------------------- */

const char *imp__node_name(const Onnx__NodeProto *nd)
{
    return nd->name != NULL && nd->name[0] != '\0' ? nd->name : "(unnamed)";
}

#define IMP_ERR(im, nd, code, fmt, ...)                                                            \
    dp_errinfo_set((im)->ei, (code), "node '%.60s' (%.32s): " fmt, imp__node_name(nd),             \
                   (nd)->op_type, __VA_ARGS__)

static const Onnx__AttributeProto *imp_attr(const Onnx__NodeProto *nd, const char *name)
{
    for (size_t i = 0; i < nd->n_attribute; i++) {
        if (nd->attribute[i]->name != NULL && strcmp(nd->attribute[i]->name, name) == 0)
            return nd->attribute[i];
    }
    return NULL;
}

static int64_t imp_attr_i(const Onnx__NodeProto *nd, const char *name, int64_t def)
{
    const Onnx__AttributeProto *a = imp_attr(nd, name);
    return a != NULL && a->has_i ? a->i : def;
}

static float imp_attr_f(const Onnx__NodeProto *nd, const char *name, float def)
{
    const Onnx__AttributeProto *a = imp_attr(nd, name);
    return a != NULL && a->has_f ? a->f : def;
}

/* Reads an INTS attribute of exactly n values into out (in [lo, hi]); 0 when absent. */
static enum dp_err imp_attr_ints(struct imp *im, const Onnx__NodeProto *nd, const char *name,
                                 size_t n, int64_t lo, int64_t hi, int *out, int *present)
{
    const Onnx__AttributeProto *a = imp_attr(nd, name);
    *present = a != NULL && a->n_ints > 0;
    if (!*present)
        return DP_OK;
    if (a->n_ints != n)
        return IMP_ERR(im, nd, DP_EFORMAT, "attribute '%s' has %zu values, expected %zu", name,
                       a->n_ints, n);
    for (size_t i = 0; i < n; i++) {
        if (a->ints[i] < lo || a->ints[i] > hi)
            return IMP_ERR(im, nd, DP_EFORMAT, "attribute '%s' value %lld is outside [%lld, %lld]",
                           name, (long long)a->ints[i], (long long)lo, (long long)hi);
        out[i] = (int)a->ints[i];
    }
    return DP_OK;
}

static const char *imp_attr_s(const Onnx__NodeProto *nd, const char *name, char *buf, size_t cap)
{
    const Onnx__AttributeProto *a = imp_attr(nd, name);
    buf[0] = '\0';
    if (a != NULL && a->has_s) {
        size_t n = a->s.len < cap - 1 ? a->s.len : cap - 1;
        if (n > 0)
            memcpy(buf, a->s.data, n);
        buf[n] = '\0';
    }
    return buf;
}

/* Node input k's name, or NULL when absent or empty (an omitted optional input). */
static const char *imp_in_name(const Onnx__NodeProto *nd, size_t k)
{
    return k < nd->n_input && nd->input[k] != NULL && nd->input[k][0] != '\0' ? nd->input[k] : NULL;
}

static enum dp_err imp_in(struct imp *im, const Onnx__NodeProto *nd, size_t k, struct imp_val **out)
{
    const char *name = imp_in_name(nd, k);
    *out = NULL;
    if (name == NULL)
        return IMP_ERR(im, nd, DP_EFORMAT, "input %zu is missing", k);
    *out = imp__find(im, name);
    if (*out == NULL)
        return IMP_ERR(im, nd, DP_EFORMAT, "input '%.60s' is not produced by an earlier node",
                       name);
    return DP_OK;
}

static enum dp_err imp_in_act(struct imp *im, const Onnx__NodeProto *nd, size_t k,
                              struct imp_val **out)
{
    enum dp_err err = imp_in(im, nd, k, out);
    if (err)
        return err;
    if ((*out)->kind == IMP_SHUF5 || (*out)->kind == IMP_SHUF5T)
        return IMP_ERR(im, nd, DP_EUNSUPPORTED,
                       "input %zu ('%.60s') is a rank-5 tensor; rank 5 is supported only inside "
                       "a channel shuffle (Reshape to (N, g, C/g, H, W), Transpose (0, 2, 1, 3, "
                       "4), Reshape back)",
                       k, (*out)->name);
    if ((*out)->kind == IMP_SEQTM)
        return IMP_ERR(im, nd, DP_EUNSUPPORTED,
                       "input %zu ('%.60s') is a time-major sequence (T, N, ...); only LSTM, GRU, "
                       "Transpose (1, 0, 2), Squeeze of the direction axis and Gather of a time "
                       "step read it",
                       k, (*out)->name);
    if ((*out)->kind != IMP_ACT)
        return IMP_ERR(im, nd, DP_EUNSUPPORTED,
                       "input %zu ('%.60s') is a constant; this operator must act on the "
                       "network's activations",
                       k, (*out)->name);
    if ((*out)->seq)
        return imp__seq_materialize(im, nd, *out);
    return DP_OK;
}

/* The constant at input k decoded to floats (kept in the value table). */
static enum dp_err imp_in_const(struct imp *im, const Onnx__NodeProto *nd, size_t k,
                                struct imp_val **out)
{
    enum dp_err err = imp_in(im, nd, k, out);
    if (err)
        return err;
    struct imp_val *v = *out;
    if (v->kind != IMP_CONST)
        return IMP_ERR(im, nd, DP_EUNSUPPORTED,
                       "input %zu ('%.60s') must be a constant (an initializer)", k, v->name);
    if (v->f == NULL && v->iv != NULL) {
        /* A folded integer constant read as floats. */
        v->f = dp_malloc((v->n ? v->n : 1) * sizeof(float));
        if (v->f == NULL)
            return dp_errinfo_set(im->ei, DP_ENOMEM, "out of memory");
        for (size_t i = 0; i < v->n; i++)
            v->f[i] = (float)v->iv[i];
    }
    if (v->f == NULL && v->t == NULL)
        return IMP_ERR(im, nd, DP_EFORMAT, "input %zu ('%.60s') has no tensor data", k, v->name);
    if (v->f == NULL) {
        err = dp_onnx_tensor_floats(v->t, &v->f, &v->n, im->ei);
        if (err) {
            char msg[sizeof(im->ei->msg)];
            snprintf(msg, sizeof(msg), "%s", im->ei != NULL ? im->ei->msg : "");
            return IMP_ERR(im, nd, err, "%s", msg);
        }
        v->ndims = v->t->n_dims; /* at most 8: checked by the decoder */
        if (v->ndims > 0)
            memcpy(v->dims, v->t->dims, v->ndims * sizeof(int64_t));
    }
    return DP_OK;
}

/* An optional constant scalar input; *present = 0 when the input is omitted. */
static enum dp_err imp_in_scalar(struct imp *im, const Onnx__NodeProto *nd, size_t k, float *x,
                                 int *present)
{
    struct imp_val *v;
    *present = imp_in_name(nd, k) != NULL;
    if (!*present)
        return DP_OK;
    enum dp_err err = imp_in_const(im, nd, k, &v);
    if (err)
        return err;
    if (v->n != 1)
        return IMP_ERR(im, nd, DP_EFORMAT, "input %zu must be a scalar, it has %zu values", k,
                       v->n);
    *x = v->f[0];
    return DP_OK;
}

/* Binds output 0 to an activation; outputs beyond the first must be unused. */
static enum dp_err imp_out_act(struct imp *im, const Onnx__NodeProto *nd, int layer, int rank)
{
    if (nd->n_output < 1 || nd->output[0] == NULL || nd->output[0][0] == '\0')
        return IMP_ERR(im, nd, DP_EFORMAT, "%s", "has no output");
    for (size_t k = 1; k < nd->n_output; k++) {
        if (nd->output[k] != NULL && nd->output[k][0] != '\0')
            return IMP_ERR(im, nd, DP_EUNSUPPORTED,
                           "optional output %zu ('%.60s') is not supported", k, nd->output[k]);
    }
    struct imp_val *v = imp__bind(im, nd->output[0]);
    if (v == NULL)
        return dp_errinfo_set(im->ei, DP_ENOMEM, "out of memory");
    v->kind = IMP_ACT;
    v->layer = layer;
    v->rank = rank;
    return DP_OK;
}

/* ---- Building layers ----------------------------------------------------- */

void imp__shape(const struct imp *im, int layer, int *c, int *h, int *w)
{
    if (layer == DP_MODEL_INPUT) {
        *c = im->m->in_c;
        *h = im->m->in_h;
        *w = im->m->in_w;
    } else {
        *c = im->m->layers[layer].out_c;
        *h = im->m->layers[layer].out_h;
        *w = im->m->layers[layer].out_w;
    }
}

/* A unique IR layer name for the node: its own name when usable. */
static void imp_layer_name(const struct imp *im, const Onnx__NodeProto *nd, int idx, char *buf,
                           size_t cap)
{
    const char *n = nd->name;
    size_t len = n != NULL ? strlen(n) : 0;
    if (len > 0 && len < DP_NAME_MAX && strcmp(n, "input") != 0 &&
        dp_model_layer_find(im->m, n) < 0) {
        memcpy(buf, n, len + 1);
        return;
    }
    snprintf(buf, cap, "%.24s_%d", nd->op_type, idx);
    for (int k = 2; dp_model_layer_find(im->m, buf) >= 0; k++)
        snprintf(buf, cap, "%.24s_%d_%d", nd->op_type, idx, k);
}

/* Adds layer `name` and runs shape inference; returns its index or a negative dp_err. */
static int imp_add_named(struct imp *im, const Onnx__NodeProto *nd, const char *name, enum dp_op op,
                         const int *inputs, int n_inputs, const struct dp_op_attrs *a)
{
    struct dp_errinfo sub = {DP_OK, ""};
    int li = dp_model_add_layer(im->m, name, op, inputs, n_inputs, a, &sub);
    if (li < 0)
        return IMP_ERR(im, nd, (enum dp_err)li, "%s", sub.msg);
    if (li >= im->cap_foldable) {
        int cap = im->cap_foldable ? 2 * im->cap_foldable : 64;
        const char **p = dp_realloc(im->foldable, (size_t)cap * sizeof(*p));
        if (p == NULL)
            return dp_errinfo_set(im->ei, DP_ENOMEM, "out of memory");
        memset(p + im->cap_foldable, 0, (size_t)(cap - im->cap_foldable) * sizeof(*p));
        im->foldable = p;
        im->cap_foldable = cap;
    }
    enum dp_err err = dp_model_infer(im->m, &sub);
    if (err)
        return IMP_ERR(im, nd, err, "%s", sub.msg);
    return li;
}

/* Adds a layer named after the node; returns its index or a negative dp_err. */
static int imp_add(struct imp *im, const Onnx__NodeProto *nd, int idx, enum dp_op op,
                   const int *inputs, int n_inputs, const struct dp_op_attrs *a)
{
    char name[DP_NAME_MAX];
    imp_layer_name(im, nd, idx, name, sizeof(name));
    return imp_add_named(im, nd, name, op, inputs, n_inputs, a);
}

/* Queues a weight tensor (ownership of data passes here, also on failure). */
static enum dp_err imp_copy_take(struct imp *im, int layer, const char *suffix, float *data,
                                 size_t n)
{
    if (im->n_copies == im->cap_copies) {
        int cap = im->cap_copies ? 2 * im->cap_copies : 64;
        struct imp_pcopy *p =
            dp_realloc(im->copies, dp_size_mul((size_t)cap, sizeof(struct imp_pcopy)));
        if (p == NULL) {
            dp_free(data);
            return dp_errinfo_set(im->ei, DP_ENOMEM, "out of memory");
        }
        im->copies = p;
        im->cap_copies = cap;
    }
    im->copies[im->n_copies++] = (struct imp_pcopy){layer, suffix, data, n};
    return DP_OK;
}

static enum dp_err imp_copy(struct imp *im, int layer, const char *suffix, const float *src,
                            size_t n)
{
    float *d = dp_malloc(dp_size_mul(n ? n : 1, sizeof(float)));
    if (d == NULL)
        return dp_errinfo_set(im->ei, DP_ENOMEM, "out of memory copying weights");
    memcpy(d, src, n * sizeof(float));
    return imp_copy_take(im, layer, suffix, d, n);
}

/* ONNX axis (normalised, >= 1) of a rank-r activation to the IR's per-sample axis 1..3. */
static int imp_ir_axis(int rank, int axis)
{
    if (rank == 3 && axis == 2)
        return 3; /* (N, C, L) is (C, 1, L) */
    return axis;
}

static enum dp_err imp_norm_axis(struct imp *im, const Onnx__NodeProto *nd, int64_t axis, int rank,
                                 int *out)
{
    if (axis < -rank || axis >= rank)
        return IMP_ERR(im, nd, DP_EFORMAT, "axis %lld is outside a rank-%d tensor", (long long)axis,
                       rank);
    *out = (int)(axis < 0 ? axis + rank : axis);
    if (*out == 0)
        return IMP_ERR(im, nd, DP_EUNSUPPORTED, "%s",
                       "operating along the batch axis (axis 0) is not supported");
    return DP_OK;
}

/* ---- Window attributes (Conv and pooling) -------------------------------- */

struct imp_window {
    int kh, kw, sh, sw, pt, pl, pb, pr, dh, dw;
};

/*
 * Reads kernel_shape (or uses kernel[] when the attribute is absent),
 * strides, pads, dilations and auto_pad for a 1-D (rank 3) or 2-D (rank 4)
 * window over an input of h x w.
 */
static enum dp_err imp_window(struct imp *im, const Onnx__NodeProto *nd, int rank, int h, int w,
                              const int *kernel, struct imp_window *win)
{
    const int sd = rank - 2; /* spatial dims */
    int k[2] = {1, 1}, s[2] = {1, 1}, d[2] = {1, 1}, p[4] = {0, 0, 0, 0}, present;
    enum dp_err err;
    if (sd != 1 && sd != 2)
        return IMP_ERR(im, nd, DP_EUNSUPPORTED,
                       "only 1-D and 2-D windows are supported, the "
                       "input has rank %d",
                       rank);
    if (kernel != NULL) {
        k[0] = kernel[0];
        k[1] = kernel[1];
    }
    err = imp_attr_ints(im, nd, "kernel_shape", (size_t)sd, 1, 1024, k, &present);
    if (!err && !present && kernel == NULL)
        err = IMP_ERR(im, nd, DP_EFORMAT, "%s", "attribute 'kernel_shape' is required");
    if (!err)
        err = imp_attr_ints(im, nd, "strides", (size_t)sd, 1, 1024, s, &present);
    if (!err)
        err = imp_attr_ints(im, nd, "dilations", (size_t)sd, 1, 1024, d, &present);
    if (!err)
        err = imp_attr_ints(im, nd, "pads", 2 * (size_t)sd, 0, 4096, p, &present);
    if (err)
        return err;
    if (kernel != NULL && (k[0] != kernel[0] || k[1] != kernel[1]))
        return IMP_ERR(im, nd, DP_EFORMAT, "%s", "kernel_shape disagrees with the weight shape");
    /* Lift a 1-D window to 2-D: (1, k) over (1, L). */
    if (sd == 1) {
        k[1] = k[0];
        k[0] = 1;
        s[1] = s[0];
        s[0] = 1;
        d[1] = d[0];
        d[0] = 1;
        p[3] = p[1]; /* end */
        p[1] = p[0]; /* begin (left) */
        p[0] = p[2] = 0;
    } else {
        /* ONNX order: h_begin, w_begin, h_end, w_end -> pt, pl, pb, pr */
    }
    win->kh = k[0];
    win->kw = k[1];
    win->sh = s[0];
    win->sw = s[1];
    win->dh = d[0];
    win->dw = d[1];
    win->pt = p[0];
    win->pl = p[1];
    win->pb = p[2];
    win->pr = p[3];
    char ap[32];
    imp_attr_s(nd, "auto_pad", ap, sizeof(ap));
    if (ap[0] == '\0' || strcmp(ap, "NOTSET") == 0)
        return DP_OK;
    if (strcmp(ap, "VALID") == 0) {
        win->pt = win->pl = win->pb = win->pr = 0;
        return DP_OK;
    }
    int upper = strcmp(ap, "SAME_UPPER") == 0;
    if (!upper && strcmp(ap, "SAME_LOWER") != 0)
        return IMP_ERR(im, nd, DP_EFORMAT, "unknown auto_pad '%s'", ap);
    const int in[2] = {h, w}, kk[2] = {win->kh, win->kw}, ss[2] = {win->sh, win->sw},
              dd[2] = {win->dh, win->dw};
    int beg[2], end[2];
    for (int i = 0; i < 2; i++) {
        int out = (in[i] + ss[i] - 1) / ss[i];
        int total = (out - 1) * ss[i] + dd[i] * (kk[i] - 1) + 1 - in[i];
        if (total < 0)
            total = 0;
        beg[i] = upper ? total / 2 : total - total / 2;
        end[i] = total - beg[i];
    }
    win->pt = beg[0];
    win->pl = beg[1];
    win->pb = end[0];
    win->pr = end[1];
    return DP_OK;
}

static void imp_window_attrs(const struct imp_window *win, struct dp_op_attrs *a)
{
    a->kh = win->kh;
    a->kw = win->kw;
    a->sh = win->sh;
    a->sw = win->sw;
    a->pt = win->pt;
    a->pl = win->pl;
    a->pb = win->pb;
    a->pr = win->pr;
    a->dh = win->dh;
    a->dw = win->dw;
}

/* ---- Operators ----------------------------------------------------------- */

/* How many node inputs and graph outputs name the value (for folding a MatMul's bias). */
static int imp_uses(const struct imp *im, const char *name)
{
    int n = 0;
    for (size_t i = 0; i < im->g->n_node; i++) {
        const Onnx__NodeProto *nd = im->g->node[i];
        for (size_t k = 0; k < nd->n_input; k++)
            n += nd->input[k] != NULL && strcmp(nd->input[k], name) == 0;
    }
    for (size_t i = 0; i < im->g->n_output; i++)
        n += im->g->output[i]->name != NULL && strcmp(im->g->output[i]->name, name) == 0;
    return n;
}

/* ---- Helpers for the other translators (onnx_import_int.h) --------------- */

const Onnx__AttributeProto *imp__attr(const Onnx__NodeProto *nd, const char *name)
{
    return imp_attr(nd, name);
}

int64_t imp__attr_i(const Onnx__NodeProto *nd, const char *name, int64_t def)
{
    return imp_attr_i(nd, name, def);
}

const char *imp__in_name(const Onnx__NodeProto *nd, size_t k)
{
    return imp_in_name(nd, k);
}

enum dp_err imp__in(struct imp *im, const Onnx__NodeProto *nd, size_t k, struct imp_val **out)
{
    return imp_in(im, nd, k, out);
}

enum dp_err imp__in_const(struct imp *im, const Onnx__NodeProto *nd, size_t k, struct imp_val **out)
{
    return imp_in_const(im, nd, k, out);
}

int imp__add(struct imp *im, const Onnx__NodeProto *nd, int idx, enum dp_op op, const int *inputs,
             int n_inputs, const struct dp_op_attrs *a)
{
    return imp_add(im, nd, idx, op, inputs, n_inputs, a);
}

int imp__add_named(struct imp *im, const Onnx__NodeProto *nd, const char *name, enum dp_op op,
                   const int *inputs, int n_inputs, const struct dp_op_attrs *a)
{
    return imp_add_named(im, nd, name, op, inputs, n_inputs, a);
}

enum dp_err imp__copy_take(struct imp *im, int layer, const char *suffix, float *data, size_t n)
{
    return imp_copy_take(im, layer, suffix, data, n);
}

int imp__uses(const struct imp *im, const char *name)
{
    return imp_uses(im, name);
}

static enum dp_err imp_conv(struct imp *im, const Onnx__NodeProto *nd, int idx)
{
    struct imp_val *x, *wv, *bv = NULL;
    enum dp_err err = imp_in_act(im, nd, 0, &x);
    if (!err)
        err = imp_in_const(im, nd, 1, &wv);
    if (!err && imp_in_name(nd, 2) != NULL)
        err = imp_in_const(im, nd, 2, &bv);
    if (err)
        return err;
    const struct imp_val *wt = wv;
    if ((int)wt->ndims != x->rank)
        return IMP_ERR(im, nd, DP_ESHAPE, "weight has rank %zu, input rank %d", wt->ndims, x->rank);
    if (wt->dims[0] < 1 || wt->dims[0] > (1 << 20))
        return IMP_ERR(im, nd, DP_ESHAPE, "weight has %lld output channels",
                       (long long)wt->dims[0]);
    int kernel[2] = {1, 1};
    for (size_t i = 2; i < wt->ndims; i++) {
        if (wt->dims[i] < 1 || wt->dims[i] > 1024)
            return IMP_ERR(im, nd, DP_ESHAPE, "kernel size %lld is outside [1, 1024]",
                           (long long)wt->dims[i]);
        kernel[i - 2] = (int)wt->dims[i];
    }
    int c, h, w;
    imp__shape(im, x->layer, &c, &h, &w);
    struct imp_window win;
    err = imp_window(im, nd, x->rank, h, w, kernel, &win);
    if (err)
        return err;
    int64_t group = imp_attr_i(nd, "group", 1);
    if (group < 1 || group > (1 << 20))
        return IMP_ERR(im, nd, DP_EFORMAT, "group %lld is out of range", (long long)group);
    if (wt->dims[1] < 1 || wt->dims[1] > (1 << 20) || (int64_t)c != wt->dims[1] * group)
        return IMP_ERR(im, nd, DP_ESHAPE,
                       "input has %d channels, the weight expects %lld x group %lld", c,
                       (long long)wt->dims[1], (long long)group);
    struct dp_op_attrs a = {0};
    imp_window_attrs(&win, &a);
    a.out_ch = (int)wt->dims[0];
    a.groups = (int)group;
    a.has_bias = bv != NULL;
    int li = imp_add(im, nd, idx, DP_OP_CONV2D, &x->layer, 1, &a);
    if (li < 0)
        return (enum dp_err)li;
    err = imp_copy(im, li, "weight", wv->f, wv->n);
    if (!err && bv != NULL)
        err = imp_copy(im, li, "bias", bv->f, bv->n);
    if (!err)
        err = imp_out_act(im, nd, li, x->rank);
    if (!err)
        im->foldable[li] = nd->output[0];
    return err;
}

static enum dp_err imp_pool(struct imp *im, const Onnx__NodeProto *nd, int idx, enum dp_op op)
{
    struct imp_val *x;
    enum dp_err err = imp_in_act(im, nd, 0, &x);
    if (err)
        return err;
    int c, h, w;
    imp__shape(im, x->layer, &c, &h, &w);
    struct imp_window win;
    err = imp_window(im, nd, x->rank, h, w, NULL, &win);
    if (err)
        return err;
    if (win.dh != 1 || win.dw != 1)
        return IMP_ERR(im, nd, DP_EUNSUPPORTED, "%s", "dilated pooling is not supported");
    struct dp_op_attrs a = {0};
    imp_window_attrs(&win, &a);
    a.ceil_mode = imp_attr_i(nd, "ceil_mode", 0) != 0;
    a.count_include_pad = op == DP_OP_AVGPOOL && imp_attr_i(nd, "count_include_pad", 0) != 0;
    int li = imp_add(im, nd, idx, op, &x->layer, 1, &a);
    if (li < 0)
        return (enum dp_err)li;
    return imp_out_act(im, nd, li, x->rank);
}

static enum dp_err imp_unary(struct imp *im, const Onnx__NodeProto *nd, int idx, enum dp_op op,
                             const struct dp_op_attrs *a)
{
    struct imp_val *x;
    enum dp_err err = imp_in_act(im, nd, 0, &x);
    if (err)
        return err;
    int li = imp_add(im, nd, idx, op, &x->layer, 1, a);
    if (li < 0)
        return (enum dp_err)li;
    return imp_out_act(im, nd, li, op == DP_OP_FLATTEN ? 2 : x->rank);
}

static enum dp_err imp_gap(struct imp *im, const Onnx__NodeProto *nd, int idx)
{
    struct imp_val *x;
    enum dp_err err = imp_in_act(im, nd, 0, &x);
    if (err)
        return err;
    if (x->rank < 3)
        return IMP_ERR(im, nd, DP_ESHAPE, "input has rank %d, at least 3 is needed", x->rank);
    return imp_unary(im, nd, idx, DP_OP_GAP, NULL);
}

static enum dp_err imp_clip(struct imp *im, const Onnx__NodeProto *nd, int idx)
{
    float lo = -FLT_MAX, hi = FLT_MAX, v;
    int present;
    enum dp_err err = DP_OK;
    if (im->opset < 11) {
        lo = imp_attr_f(nd, "min", -FLT_MAX);
        hi = imp_attr_f(nd, "max", FLT_MAX);
    } else {
        err = imp_in_scalar(im, nd, 1, &v, &present);
        if (!err && present)
            lo = v;
        if (!err)
            err = imp_in_scalar(im, nd, 2, &v, &present);
        if (!err && present)
            hi = v;
    }
    if (err)
        return err;
    lo = fmaxf(lo, -FLT_MAX); /* -inf is "no bound" */
    hi = fminf(hi, FLT_MAX);
    if (!(lo <= hi))
        return IMP_ERR(im, nd, DP_EUNSUPPORTED, "bounds [%g, %g] are empty or NaN", (double)lo,
                       (double)hi);
    if (lo == 0.0f && hi == 6.0f)
        return imp_unary(im, nd, idx, DP_OP_RELU6, NULL);
    if (lo == 0.0f && hi == FLT_MAX)
        return imp_unary(im, nd, idx, DP_OP_RELU, NULL);
    struct dp_op_attrs a = {0};
    a.lo = lo;
    a.hi = hi;
    return imp_unary(im, nd, idx, DP_OP_CLIP, &a);
}

static enum dp_err imp_bn(struct imp *im, const Onnx__NodeProto *nd, int idx)
{
    static const char *const suffix[4] = {"weight", "bias", "running_mean", "running_var"};
    struct imp_val *x, *p[4];
    enum dp_err err = imp_in_act(im, nd, 0, &x);
    for (size_t k = 0; !err && k < 4; k++)
        err = imp_in_const(im, nd, k + 1, &p[k]);
    if (err)
        return err;
    if (imp_attr_i(nd, "training_mode", 0) != 0)
        return IMP_ERR(im, nd, DP_EUNSUPPORTED, "%s",
                       "training_mode=1 (batch statistics as outputs) is not supported");
    struct dp_op_attrs a = {0};
    a.eps = imp_attr_f(nd, "epsilon", 1e-5f);
    /* ONNX: running = running * momentum + batch * (1 - momentum); the IR
     * counts momentum as PyTorch does, the weight of the batch. */
    a.momentum = 1.0f - imp_attr_f(nd, "momentum", 0.9f);
    int li = imp_add(im, nd, idx, DP_OP_BN2D, &x->layer, 1, &a);
    if (li < 0)
        return (enum dp_err)li;
    for (int k = 0; !err && k < 4; k++)
        err = imp_copy(im, li, suffix[k], p[k]->f, p[k]->n);
    if (!err)
        err = imp_out_act(im, nd, li, x->rank);
    return err;
}

/* Gemm (transB, alpha, beta) and MatMul with a constant right side, both Linear. */
static enum dp_err imp_linear(struct imp *im, const Onnx__NodeProto *nd, int idx, int gemm)
{
    struct imp_val *x, *bv, *cv = NULL;
    enum dp_err err = imp_in_act(im, nd, 0, &x);
    if (!err)
        err = imp_in_const(im, nd, 1, &bv);
    if (!err && gemm && imp_in_name(nd, 2) != NULL)
        err = imp_in_const(im, nd, 2, &cv);
    if (err)
        return err;
    if (x->rank != 2)
        return IMP_ERR(im, nd, DP_EUNSUPPORTED,
                       "the activation input has rank %d; only (batch, features) is supported",
                       x->rank);
    const int trans_b = gemm && imp_attr_i(nd, "transB", 0) != 0;
    if (gemm && imp_attr_i(nd, "transA", 0) != 0)
        return IMP_ERR(im, nd, DP_EUNSUPPORTED, "%s",
                       "transA=1 (a transposed activation) is not supported");
    const float alpha = gemm ? imp_attr_f(nd, "alpha", 1.0f) : 1.0f;
    const float beta = gemm ? imp_attr_f(nd, "beta", 1.0f) : 1.0f;
    if (bv->ndims != 2)
        return IMP_ERR(im, nd, DP_ESHAPE, "the weight has rank %zu, 2 is needed", bv->ndims);
    const int64_t r0 = bv->dims[0], r1 = bv->dims[1];
    const int64_t M = trans_b ? r0 : r1, K = trans_b ? r1 : r0;
    int c, h, w;
    imp__shape(im, x->layer, &c, &h, &w);
    if (K != (int64_t)c * h * w || M < 1 || M > (1 << 24))
        return IMP_ERR(im, nd, DP_ESHAPE, "weight %lldx%lld does not fit %d input features",
                       (long long)r0, (long long)r1, c * h * w);
    float *bias = NULL;
    if (cv != NULL) {
        /* A bias per output (shape [M] or [1, M]) or one scalar; a bias that
         * varies with the row depends on the batch and has no IR form. */
        const int64_t *cd = cv->dims;
        size_t cr = cv->ndims;
        int ok = cv->n == 1 || (cv->n == (size_t)M && cd[cr - 1] == M);
        if (!ok)
            return IMP_ERR(im, nd, DP_EUNSUPPORTED,
                           "bias C of %zu values is not a vector of %lld (a per-row bias is "
                           "not supported)",
                           cv->n, (long long)M);
        bias = dp_malloc((size_t)M * sizeof(float));
        if (bias == NULL)
            return dp_errinfo_set(im->ei, DP_ENOMEM, "out of memory");
        for (int64_t m = 0; m < M; m++)
            bias[m] = beta * cv->f[cv->n == 1 ? 0 : m];
    }
    struct dp_op_attrs a = {0};
    a.out_ch = (int)M;
    a.has_bias = bias != NULL;
    int li = imp_add(im, nd, idx, DP_OP_LINEAR, &x->layer, 1, &a);
    if (li < 0) {
        dp_free(bias);
        return (enum dp_err)li;
    }
    float *wt = dp_malloc(dp_size_mul((size_t)(M * K), sizeof(float)));
    if (wt == NULL) {
        dp_free(bias);
        return dp_errinfo_set(im->ei, DP_ENOMEM, "out of memory");
    }
    for (int64_t m = 0; m < M; m++) {
        for (int64_t k = 0; k < K; k++)
            wt[m * K + k] = alpha * (trans_b ? bv->f[m * K + k] : bv->f[k * M + m]);
    }
    err = imp_copy_take(im, li, "weight", wt, (size_t)(M * K));
    if (!err && bias != NULL) {
        err = imp_copy_take(im, li, "bias", bias, (size_t)M);
        bias = NULL;
    }
    dp_free(bias);
    if (!err)
        err = imp_out_act(im, nd, li, 2);
    if (!err)
        im->foldable[li] = nd->output[0];
    return err;
}

static enum dp_err imp_binop(struct imp *im, const Onnx__NodeProto *nd, int idx, enum dp_op op);

static enum dp_err imp_addop(struct imp *im, const Onnx__NodeProto *nd, int idx)
{
    struct imp_val *a, *b;
    enum dp_err err = imp_in(im, nd, 0, &a);
    if (!err)
        err = imp_in(im, nd, 1, &b);
    if (err)
        return err;
    if (a->kind == IMP_ACT && b->kind == IMP_ACT) {
        if (a->rank != b->rank)
            return IMP_ERR(im, nd, DP_EUNSUPPORTED,
                           "operands of rank %d and %d (broadcasting across ranks is not "
                           "supported)",
                           a->rank, b->rank);
        int c1, h1, w1, c2, h2, w2;
        imp__shape(im, a->layer, &c1, &h1, &w1);
        imp__shape(im, b->layer, &c2, &h2, &w2);
        /* Equal shapes: the residual add purification knows; else broadcasting. */
        const enum dp_op op = c1 == c2 && h1 == h2 && w1 == w2 ? DP_OP_ADD : DP_OP_ADD_BCAST;
        int in[2] = {a->layer, b->layer};
        int li = imp_add(im, nd, idx, op, in, 2, NULL);
        if (li < 0)
            return (enum dp_err)li;
        return imp_out_act(im, nd, li, a->rank);
    }
    /* An activation plus a constant: the bias of the Conv, Gemm or MatMul just
     * before (tf2onnx and torch.onnx both write such Adds), when nothing else
     * reads that layer's output. */
    struct imp_val *act = a->kind == IMP_ACT ? a : b;
    size_t kc = a->kind == IMP_ACT ? 1 : 0;
    if (act->kind != IMP_ACT)
        return IMP_ERR(im, nd, DP_EUNSUPPORTED, "%s",
                       "adding two constants (constant folding) is not supported");
    const int li = act->layer;
    if (li < 0 || im->foldable[li] == NULL || strcmp(im->foldable[li], act->name) != 0 ||
        imp_uses(im, act->name) != 1)
        return imp_binop(im, nd, idx, DP_OP_ADD_BCAST); /* not a bias: a const layer */
    struct imp_val *cv;
    err = imp_in_const(im, nd, kc, &cv);
    if (err)
        return err;
    /* Per output channel: after leading 1s, (C) then 1s up to the channel axis. */
    const int C = im->m->layers[li].out_c;
    size_t d0 = 0;
    while (d0 < cv->ndims && cv->dims[d0] == 1 && cv->ndims - d0 > (size_t)act->rank - 1)
        d0++;
    int per_channel = cv->n == (size_t)C && cv->ndims - d0 == (size_t)act->rank - 1 &&
                      cv->ndims > d0 && cv->dims[d0] == C;
    if (!per_channel && cv->n != 1)
        return imp_binop(im, nd, idx, DP_OP_ADD_BCAST); /* not a bias: a const layer */
    struct imp_pcopy *bias = NULL;
    for (int i = 0; i < im->n_copies; i++) {
        if (im->copies[i].layer == li && strcmp(im->copies[i].suffix, "bias") == 0)
            bias = &im->copies[i];
    }
    if (bias == NULL) {
        float *z = dp_calloc((size_t)C, sizeof(float));
        if (z == NULL)
            return dp_errinfo_set(im->ei, DP_ENOMEM, "out of memory");
        im->m->layers[li].a.has_bias = 1;
        struct dp_errinfo sub = {DP_OK, ""};
        err = dp_model_infer(im->m, &sub);
        if (err) {
            dp_free(z);
            return IMP_ERR(im, nd, err, "%s", sub.msg);
        }
        err = imp_copy_take(im, li, "bias", z, (size_t)C);
        if (err)
            return err;
        bias = &im->copies[im->n_copies - 1];
    }
    if (bias->n != (size_t)C)
        return IMP_ERR(im, nd, DP_ESHAPE, "the layer's bias has %zu values, %d expected", bias->n,
                       C);
    for (int c = 0; c < C; c++)
        bias->data[c] += cv->f[per_channel ? c : 0];
    err = imp_out_act(im, nd, li, act->rank);
    if (!err)
        im->foldable[li] = nd->output[0]; /* a second Add folds too */
    return err;
}

/* Rebinds output 0 to input 0's value (Identity, shape-preserving Reshape). */
static enum dp_err imp_alias(struct imp *im, const Onnx__NodeProto *nd, struct imp_val *x, int rank)
{
    if (nd->n_output < 1 || nd->output[0] == NULL || nd->output[0][0] == '\0')
        return IMP_ERR(im, nd, DP_EFORMAT, "%s", "has no output");
    struct imp_val saved = *x;
    struct imp_val *v = imp__bind(im, nd->output[0]);
    if (v == NULL)
        return dp_errinfo_set(im->ei, DP_ENOMEM, "out of memory");
    v->kind = saved.kind;
    v->layer = saved.layer;
    v->rank = rank;
    v->seq = saved.seq;
    v->seq_t = saved.seq_t;
    v->seq_f = saved.seq_f;
    v->t = saved.t;
    if (saved.kind == IMP_CONST && saved.f != NULL && v != x) {
        v->f = dp_malloc(dp_size_mul(saved.n ? saved.n : 1, sizeof(float)));
        if (v->f == NULL)
            return dp_errinfo_set(im->ei, DP_ENOMEM, "out of memory");
        memcpy(v->f, saved.f, saved.n * sizeof(float));
        v->n = saved.n;
        v->ndims = saved.ndims;
        memcpy(v->dims, saved.dims, sizeof(v->dims));
    }
    if (saved.kind == IMP_CONST && saved.iv != NULL && v != x) {
        v->iv = dp_malloc(dp_size_mul(saved.n ? saved.n : 1, sizeof(int64_t)));
        if (v->iv == NULL)
            return dp_errinfo_set(im->ei, DP_ENOMEM, "out of memory");
        memcpy(v->iv, saved.iv, saved.n * sizeof(int64_t));
        v->n = saved.n;
        v->ndims = saved.ndims;
        memcpy(v->dims, saved.dims, sizeof(v->dims));
    }
    return DP_OK;
}

static enum dp_err imp_flatten(struct imp *im, const Onnx__NodeProto *nd, int idx)
{
    struct imp_val *x;
    enum dp_err err = imp_in_act(im, nd, 0, &x);
    if (err)
        return err;
    int axis;
    err = imp_norm_axis(im, nd, imp_attr_i(nd, "axis", 1), x->rank, &axis);
    if (err)
        return err;
    if (axis != 1)
        return IMP_ERR(im, nd, DP_EUNSUPPORTED,
                       "axis %d would merge the batch axis with others; only axis 1 is "
                       "supported",
                       axis);
    if (x->rank == 2)
        return imp_alias(im, nd, x, 2);
    return imp_unary(im, nd, idx, DP_OP_FLATTEN, NULL);
}

static enum dp_err imp_shuffle_step(struct imp *im, const Onnx__NodeProto *nd, int idx,
                                    const struct imp_val *x, const int64_t *t, size_t n);

static enum dp_err imp_reshape(struct imp *im, const Onnx__NodeProto *nd, int idx)
{
    struct imp_val *x, *sv;
    enum dp_err err = imp_in(im, nd, 0, &x);
    if (!err && x->kind != IMP_SHUF5T)
        err = imp_in_act(im, nd, 0, &x);
    if (!err)
        err = imp_in(im, nd, 1, &sv);
    if (err)
        return err;
    if (sv->kind != IMP_CONST)
        return IMP_ERR(im, nd, DP_EUNSUPPORTED, "%s",
                       "the shape input must be a constant (or fold to one at import)");
    int64_t *t = NULL;
    size_t n = 0;
    err = imp__const_i64(im, nd, sv, &t, &n);
    if (err)
        return err;
    if (x->kind == IMP_SHUF5T || n == 5) {
        err = imp_shuffle_step(im, nd, idx, x, t, n);
        dp_free(t);
        return err;
    }
    int c, h, w;
    imp__shape(im, x->layer, &c, &h, &w);
    const int64_t in_dims[4] = {im->batch, c, x->rank == 4 ? h : w, w};
    const int64_t per = (int64_t)c * h * w;
    const int allowzero = imp_attr_i(nd, "allowzero", 0) != 0;
    int64_t d[4] = {0, 0, 0, 0};
    int neg = -1;
    int64_t known = 1;
    if (n < 2 || n > 4) {
        err = IMP_ERR(im, nd, DP_EUNSUPPORTED,
                      "target rank %zu: only ranks 2 to 4 with the batch axis first are "
                      "supported",
                      n);
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        d[i] = t[i] == IMP_BATCH_SYM && i == 0 ? -2 : t[i];
        if (d[i] == 0 && !allowzero && (int)i < x->rank)
            d[i] = i == 0 ? -2 : in_dims[i]; /* -2: the batch, whatever it is */
        if (d[i] == -1) {
            if (neg >= 0) {
                err = IMP_ERR(im, nd, DP_EFORMAT, "%s", "more than one -1 in the shape");
                goto out;
            }
            neg = (int)i;
        } else if (i > 0 && (d[i] < 1 || d[i] > ((int64_t)1 << 28))) {
            err = IMP_ERR(im, nd, DP_EUNSUPPORTED, "target dimension %zu is %lld", i,
                          (long long)t[i]);
            goto out;
        } else if (i > 0) {
            known *= d[i]; /* both <= 2^28 here: no overflow */
            if (known > per) {
                err = IMP_ERR(im, nd, DP_ESHAPE, "cannot reshape %lld values per sample",
                              (long long)per);
                goto out;
            }
        }
    }
    /* The batch axis must stay where it is. */
    int keeps_batch =
        d[0] == -2 || (im->batch > 0 && d[0] == im->batch) || (neg == 0 && known == per);
    if (!keeps_batch) {
        err = IMP_ERR(im, nd, DP_EUNSUPPORTED, "%s",
                      "the target shape changes the batch axis; only reshapes that keep it "
                      "are supported");
        goto out;
    }
    if (neg > 0) {
        if (known == 0 || per % known != 0) {
            err =
                IMP_ERR(im, nd, DP_ESHAPE, "cannot reshape %lld values per sample", (long long)per);
            goto out;
        }
        d[neg] = per / known;
        known *= d[neg];
    }
    if (known != per) {
        err = IMP_ERR(im, nd, DP_ESHAPE, "cannot reshape %lld values per sample into %lld",
                      (long long)per, (long long)known);
        goto out;
    }
    /* The IR shape the target means. */
    int64_t tc = d[1], th = n == 4 ? d[2] : 1, tw = n == 4 ? d[3] : n == 3 ? d[2] : 1;
    if (n == 3 && x->rank == 4 && c == 1 && d[1] == h && d[2] == w) {
        /* (N, 1, T, F) to (N, T, F): a sequence, held as it is (see imp_val.seq). */
        err = imp_alias(im, nd, x, 3);
        struct imp_val *v = err ? NULL : imp__find(im, nd->output[0]);
        if (v != NULL)
            v->seq = 1;
    } else if (n == 2) {
        if (h == 1 && w == 1)
            err = imp_alias(im, nd, x, 2);
        else
            err = imp_unary(im, nd, idx, DP_OP_FLATTEN, NULL);
    } else if (tc == c && th == h && tw == w) {
        err = imp_alias(im, nd, x, (int)n);
    } else if (th > 65536 || tc * th * tw != per) {
        err = IMP_ERR(im, nd, DP_EUNSUPPORTED, "cannot reshape %dx%dx%d to %lldx%lldx%lld", c, h, w,
                      (long long)tc, (long long)th, (long long)tw);
    } else {
        struct dp_op_attrs a = {0};
        a.to_c = (int)tc;
        a.to_h = (int)th;
        a.to_w = (int)tw;
        int li = imp_add(im, nd, idx, DP_OP_RESHAPE, &x->layer, 1, &a);
        err = li < 0 ? (enum dp_err)li : imp_out_act(im, nd, li, (int)n);
    }
out:
    dp_free(t);
    return err;
}

static enum dp_err imp_dropout(struct imp *im, const Onnx__NodeProto *nd, int idx)
{
    float ratio = 0.5f, v;
    int present;
    enum dp_err err = DP_OK;
    if (im->opset < 12) {
        ratio = imp_attr_f(nd, "ratio", 0.5f);
    } else {
        err = imp_in_scalar(im, nd, 1, &v, &present);
        if (!err && present)
            ratio = v;
        if (!err && imp_in_name(nd, 2) != NULL) {
            struct imp_val *tv;
            int64_t *tm = NULL;
            size_t n;
            err = imp_in(im, nd, 2, &tv);
            if (!err && tv->kind != IMP_CONST)
                err = IMP_ERR(im, nd, DP_EUNSUPPORTED, "%s", "training_mode must be a constant");
            if (!err && tv->t->has_data_type &&
                tv->t->data_type == ONNX__TENSOR_PROTO__DATA_TYPE__BOOL)
                err =
                    (tv->t->has_raw_data && tv->t->raw_data.len == 1 && tv->t->raw_data.data[0]) ||
                            (tv->t->n_int32_data == 1 && tv->t->int32_data[0])
                        ? IMP_ERR(im, nd, DP_EUNSUPPORTED, "%s",
                                  "training_mode=true is not supported (the engine chooses "
                                  "the mode)")
                        : DP_OK;
            else if (!err)
                err = dp_onnx_tensor_int64s(tv->t, &tm, &n, im->ei);
            dp_free(tm);
        }
    }
    if (err)
        return err;
    if (!(ratio >= 0.0f && ratio < 1.0f))
        return IMP_ERR(im, nd, DP_EUNSUPPORTED, "ratio %g is outside [0, 1)", (double)ratio);
    struct dp_op_attrs a = {0};
    a.p = ratio;
    return imp_unary(im, nd, idx, DP_OP_DROPOUT, &a);
}

static enum dp_err imp_softmax(struct imp *im, const Onnx__NodeProto *nd, int idx)
{
    struct imp_val *x;
    enum dp_err err = imp_in_act(im, nd, 0, &x);
    if (err)
        return err;
    int axis;
    err = imp_norm_axis(im, nd, imp_attr_i(nd, "axis", im->opset < 13 ? 1 : -1), x->rank, &axis);
    if (err)
        return err;
    struct dp_op_attrs a = {0};
    a.axis = imp_ir_axis(x->rank, axis);
    /* Opsets before 13 normalise everything from axis on as one vector. */
    a.axis_end = im->opset < 13 ? 3 : a.axis;
    return imp_unary(im, nd, idx, DP_OP_SOFTMAX, &a);
}

static enum dp_err imp_concat(struct imp *im, const Onnx__NodeProto *nd, int idx)
{
    struct imp_val *x;
    enum dp_err err = imp_in_act(im, nd, 0, &x);
    if (err)
        return err;
    if (nd->n_input < 2)
        return imp_alias(im, nd, x, x->rank);
    int axis;
    const Onnx__AttributeProto *aa = imp_attr(nd, "axis");
    if (aa == NULL || !aa->has_i)
        return IMP_ERR(im, nd, DP_EFORMAT, "%s", "attribute 'axis' is required");
    err = imp_norm_axis(im, nd, aa->i, x->rank, &axis);
    if (err)
        return err;
    struct dp_op_attrs a = {0};
    a.axis = imp_ir_axis(x->rank, axis);
    /* n inputs: a chain of two-input concats, left to right. */
    int cur = x->layer, li = -1;
    for (size_t k = 1; k < nd->n_input; k++) {
        struct imp_val *y;
        err = imp_in_act(im, nd, k, &y);
        if (err)
            return err;
        if (y->rank != x->rank)
            return IMP_ERR(im, nd, DP_ESHAPE, "inputs of rank %d and %d", x->rank, y->rank);
        int in[2] = {cur, y->layer};
        li = imp_add(im, nd, idx, DP_OP_CONCAT, in, 2, &a);
        if (li < 0)
            return (enum dp_err)li;
        cur = li;
    }
    return imp_out_act(im, nd, li, x->rank);
}

static enum dp_err imp_constant(struct imp *im, const Onnx__NodeProto *nd)
{
    if (nd->n_output < 1 || nd->output[0] == NULL || nd->output[0][0] == '\0')
        return IMP_ERR(im, nd, DP_EFORMAT, "%s", "has no output");
    const Onnx__AttributeProto *a = imp_attr(nd, "value");
    struct imp_val *v = imp__bind(im, nd->output[0]);
    if (v == NULL)
        return dp_errinfo_set(im->ei, DP_ENOMEM, "out of memory");
    v->kind = IMP_CONST;
    if (a != NULL && a->t != NULL) {
        v->t = a->t;
        return DP_OK;
    }
    /* value_float(s): decode now; there is no tensor to point at. */
    const Onnx__AttributeProto *fa = imp_attr(nd, "value_float");
    const Onnx__AttributeProto *fsa = imp_attr(nd, "value_floats");
    if (fa != NULL && fa->has_f) {
        v->f = dp_malloc(sizeof(float));
        if (v->f == NULL)
            return dp_errinfo_set(im->ei, DP_ENOMEM, "out of memory");
        v->f[0] = fa->f;
        v->n = 1;
        v->ndims = 0;
        v->t = NULL;
        return DP_OK;
    }
    if (fsa != NULL && fsa->n_floats > 0) {
        v->f = dp_malloc(fsa->n_floats * sizeof(float));
        if (v->f == NULL)
            return dp_errinfo_set(im->ei, DP_ENOMEM, "out of memory");
        memcpy(v->f, fsa->floats, fsa->n_floats * sizeof(float));
        v->n = fsa->n_floats;
        v->ndims = 1;
        v->dims[0] = (int64_t)fsa->n_floats;
        return DP_OK;
    }
    return IMP_ERR(im, nd, DP_EUNSUPPORTED, "%s",
                   "only 'value' (a tensor), 'value_float' and 'value_floats' are supported");
}

/* A Pad that pads nothing (torch.onnx writes one before AveragePool) is an alias. */
static enum dp_err imp_pad(struct imp *im, const Onnx__NodeProto *nd)
{
    struct imp_val *x, *pv;
    char mode[16];
    enum dp_err err = imp_in_act(im, nd, 0, &x);
    if (err)
        return err;
    imp_attr_s(nd, "mode", mode, sizeof(mode));
    if (mode[0] != '\0' && strcmp(mode, "constant") != 0)
        return IMP_ERR(im, nd, DP_EUNSUPPORTED, "mode '%s' is not supported", mode);
    int nonzero = 0;
    if (im->opset < 11) {
        const Onnx__AttributeProto *a = imp_attr(nd, "pads");
        for (size_t i = 0; a != NULL && i < a->n_ints; i++)
            nonzero |= a->ints[i] != 0;
    } else {
        err = imp_in(im, nd, 1, &pv);
        if (err)
            return err;
        if (pv->kind != IMP_CONST)
            return IMP_ERR(im, nd, DP_EUNSUPPORTED, "%s", "the pads must be a constant");
        int64_t *p = NULL;
        size_t n = 0;
        err = imp__const_i64(im, nd, pv, &p, &n);
        if (err)
            return err;
        for (size_t i = 0; i < n; i++)
            nonzero |= p[i] != 0;
        dp_free(p);
    }
    if (nonzero)
        return IMP_ERR(im, nd, DP_EUNSUPPORTED, "%s",
                       "only a Pad of zero width is supported (pad through Conv or pooling "
                       "attributes instead)");
    return imp_alias(im, nd, x, x->rank);
}

/*
 * QuantizeLinear / DequantizeLinear of a constant, folded into a constant
 * (the form `export --qdq` gives quantized weights). Quantize rounds half
 * to even and saturates to the zero point's type (uint8 when absent).
 */
static enum dp_err imp_qdq(struct imp *im, const Onnx__NodeProto *nd, int quant)
{
    struct imp_val *x, *sv, *zv = NULL;
    enum dp_err err = imp_in(im, nd, 0, &x);
    if (!err && x->kind != IMP_CONST)
        err = IMP_ERR(im, nd, DP_EUNSUPPORTED, "%s",
                      "only constants (quantized weights) are supported, not activations");
    if (!err)
        err = imp_in_const(im, nd, 0, &x);
    if (!err)
        err = imp_in_const(im, nd, 1, &sv);
    if (!err && imp_in_name(nd, 2) != NULL)
        err = imp_in_const(im, nd, 2, &zv);
    if (err)
        return err;
    if (zv != NULL && zv->n != sv->n)
        return IMP_ERR(im, nd, DP_EFORMAT, "%zu scales but %zu zero points", sv->n, zv->n);
    float qmin = 0.0f, qmax = 255.0f;
    if (zv != NULL && zv->t != NULL && zv->t->data_type == ONNX__TENSOR_PROTO__DATA_TYPE__INT8) {
        qmin = -128.0f;
        qmax = 127.0f;
    }
    size_t inner = 1, ch = 1;
    if (sv->n > 1) {
        int axis;
        const int rank = (int)x->ndims;
        int64_t ax = imp_attr_i(nd, "axis", 1);
        if (ax < -rank || ax >= rank)
            return IMP_ERR(im, nd, DP_EFORMAT, "axis %lld is outside a rank-%d tensor",
                           (long long)ax, rank);
        axis = (int)(ax < 0 ? ax + rank : ax);
        if (x->dims[axis] != (int64_t)sv->n)
            return IMP_ERR(im, nd, DP_ESHAPE, "%zu scales for an axis of %lld", sv->n,
                           (long long)x->dims[axis]);
        ch = sv->n;
        for (int k = axis + 1; k < rank; k++)
            inner *= (size_t)x->dims[k];
    }
    float *y = dp_malloc(dp_size_mul(x->n ? x->n : 1, sizeof(float)));
    if (y == NULL)
        return dp_errinfo_set(im->ei, DP_ENOMEM, "out of memory");
    for (size_t i = 0; i < x->n; i++) {
        size_t c = ch > 1 ? (i / inner) % ch : 0;
        float s = sv->f[c], z = zv != NULL ? zv->f[c] : 0.0f;
        if (quant) {
            float q = nearbyintf(x->f[i] / s) + z;
            y[i] = q < qmin ? qmin : q > qmax ? qmax : q;
        } else {
            y[i] = (x->f[i] - z) * s;
        }
    }
    if (nd->n_output < 1 || nd->output[0] == NULL || nd->output[0][0] == '\0') {
        dp_free(y);
        return IMP_ERR(im, nd, DP_EFORMAT, "%s", "has no output");
    }
    size_t n = x->n, ndims = x->ndims;
    int64_t dims[8];
    memcpy(dims, x->dims, sizeof(dims));
    struct imp_val *v = imp__bind(im, nd->output[0]);
    if (v == NULL) {
        dp_free(y);
        return dp_errinfo_set(im->ei, DP_ENOMEM, "out of memory");
    }
    v->kind = IMP_CONST;
    v->f = y;
    v->n = n;
    v->ndims = ndims;
    memcpy(v->dims, dims, sizeof(dims));
    return DP_OK;
}

/* ---- Operators of the mobile networks (issue 17) ------------------------ */

/* Binds output k of nd to layer li as an activation of the given rank. */
static enum dp_err imp_out_k(struct imp *im, const Onnx__NodeProto *nd, size_t k, int li, int rank)
{
    if (k >= nd->n_output || nd->output[k] == NULL || nd->output[k][0] == '\0')
        return DP_OK;
    struct imp_val *v = imp__bind(im, nd->output[k]);
    if (v == NULL)
        return dp_errinfo_set(im->ei, DP_ENOMEM, "out of memory");
    v->kind = IMP_ACT;
    v->layer = li;
    v->rank = rank;
    return DP_OK;
}

/* Whether batch entry b of a target shape keeps the batch (0 copies it, -1 infers it). */
static int imp_keeps_batch(const struct imp *im, int64_t b)
{
    return b == IMP_BATCH_SYM || b == 0 || b == -1 || (im->batch > 0 && b == im->batch);
}

/*
 * The channel shuffle, ONNX's Reshape (N, g, C/g, H, W) -> Transpose
 * (0, 2, 1, 3, 4) -> Reshape (N, C, H, W), one step at a time: the first
 * Reshape and the Transpose bind hidden rank-5 values (IMP_SHUF5, then
 * IMP_SHUF5T) that nothing but the next step may read, and the closing
 * Reshape adds the one shuffle layer.
 */
static enum dp_err imp_shuffle_step(struct imp *im, const Onnx__NodeProto *nd, int idx,
                                    const struct imp_val *x, const int64_t *t, size_t n)
{
    int c, h, w;
    imp__shape(im, x->layer, &c, &h, &w);
    if (x->kind == IMP_SHUF5T) {
        if (n != 4 || !imp_keeps_batch(im, t[0]) || (t[1] != c && t[1] != -1) || t[2] != h ||
            t[3] != w)
            return IMP_ERR(im, nd, DP_EUNSUPPORTED,
                           "a channel shuffle must end in a Reshape to (N, %d, %d, %d)", c, h, w);
        struct dp_op_attrs a = {0};
        a.groups = x->groups;
        int li = imp_add(im, nd, idx, DP_OP_SHUFFLE, &x->layer, 1, &a);
        return li < 0 ? (enum dp_err)li : imp_out_act(im, nd, li, 4);
    }
    int64_t g = t[1], per = t[2];
    if (g == -1 && per > 0 && c % per == 0)
        g = c / per;
    if (per == -1 && g > 0 && c % g == 0)
        per = c / g;
    if (x->rank != 4 || !imp_keeps_batch(im, t[0]) || g < 1 || per < 1 || g > c || per > c ||
        g * per != c || t[3] != h || t[4] != w)
        return IMP_ERR(im, nd, DP_EUNSUPPORTED, "%s",
                       "a Reshape to rank 5 is supported only as the start of a channel shuffle, "
                       "(N, C, H, W) to (N, g, C/g, H, W)");
    if (nd->n_output < 1 || nd->output[0] == NULL || nd->output[0][0] == '\0')
        return IMP_ERR(im, nd, DP_EFORMAT, "%s", "has no output");
    const int layer = x->layer;
    struct imp_val *v = imp__bind(im, nd->output[0]);
    if (v == NULL)
        return dp_errinfo_set(im->ei, DP_ENOMEM, "out of memory");
    v->kind = IMP_SHUF5;
    v->layer = layer;
    v->groups = (int)g;
    v->rank = 5;
    return DP_OK;
}

static enum dp_err imp_transpose(struct imp *im, const Onnx__NodeProto *nd, int idx)
{
    struct imp_val *x;
    int done = 0;
    enum dp_err err = imp__seq_transpose(im, nd, idx, &done);
    if (err || done)
        return err;
    err = imp_in(im, nd, 0, &x);
    if (err)
        return err;
    const Onnx__AttributeProto *pa = imp_attr(nd, "perm");
    static const int64_t shuf[5] = {0, 2, 1, 3, 4};
    int ok = x->kind == IMP_SHUF5 && pa != NULL && pa->n_ints == 5;
    for (size_t i = 0; ok && i < 5; i++)
        ok = pa->ints[i] == shuf[i];
    if (!ok)
        return IMP_ERR(im, nd, DP_EUNSUPPORTED, "%s",
                       "Transpose is supported only inside a channel shuffle (perm (0, 2, 1, 3, "
                       "4) of a rank-5 Reshape) and between the batch-first and time-major forms "
                       "of a sequence (perm (1, 0, 2))");
    if (nd->n_output < 1 || nd->output[0] == NULL || nd->output[0][0] == '\0')
        return IMP_ERR(im, nd, DP_EFORMAT, "%s", "has no output");
    const int layer = x->layer, groups = x->groups;
    struct imp_val *v = imp__bind(im, nd->output[0]);
    if (v == NULL)
        return dp_errinfo_set(im->ei, DP_ENOMEM, "out of memory");
    v->kind = IMP_SHUF5T;
    v->layer = layer;
    v->groups = groups;
    v->rank = 5;
    return DP_OK;
}

/*
 * A constant operand as an IR const layer: its ONNX shape, right-aligned
 * to the activation's rank, must have 1 on the batch axis; the rest maps
 * to (C, H, W) as activations do. Returns the layer or a negative dp_err.
 */
static int imp_const_layer(struct imp *im, const Onnx__NodeProto *nd, int idx, size_t k, int rank,
                           int any_layer)
{
    struct imp_val *cv;
    enum dp_err err = imp_in_const(im, nd, k, &cv);
    if (err)
        return err;
    if (cv->ndims > (size_t)rank)
        return IMP_ERR(im, nd, DP_EUNSUPPORTED, "the constant has rank %zu, the activation %d",
                       cv->ndims, rank);
    int64_t d[4] = {1, 1, 1, 1};
    for (size_t i = 0; i < cv->ndims; i++)
        d[(size_t)rank - cv->ndims + i] = cv->dims[i];
    for (int i = 1; i < 4; i++) {
        if (d[i] < 1 || d[i] > (1 << 28))
            return IMP_ERR(im, nd, DP_ESHAPE, "the constant has a dimension of %lld",
                           (long long)d[i]);
    }
    if (d[0] != 1)
        return IMP_ERR(im, nd, DP_EUNSUPPORTED,
                       "the constant has %lld entries on the batch axis; a constant must be the "
                       "same for every sample",
                       (long long)d[0]);
    struct dp_op_attrs a = {0};
    a.to_c = (int)d[1];
    a.to_h = rank == 4 ? (int)d[2] : 1;
    a.to_w = rank == 4 ? (int)d[3] : rank == 3 ? (int)d[2] : 1;
    /* Named after the constant when it can be (the exporter's initializer
     * is the layer's name), else after the node. */
    char name[DP_NAME_MAX];
    const size_t len = strlen(cv->name);
    if (len > 0 && len < DP_NAME_MAX && strcmp(cv->name, "input") != 0 &&
        dp_model_layer_find(im->m, cv->name) < 0)
        memcpy(name, cv->name, len + 1);
    else
        imp_layer_name(im, nd, idx, name, sizeof(name));
    int li = imp_add_named(im, nd, name, DP_OP_CONST, &any_layer, 1, &a);
    if (li < 0)
        return li;
    err = imp_copy(im, li, "value", cv->f, cv->n);
    return err ? (int)err : li;
}

static int imp_fuse_gate_op(struct imp *im, const struct imp_val *x, const struct imp_val *gate)
{
    if (gate->layer < 0 || x->rank != gate->rank)
        return 0;
    struct dp_layer *l = &im->m->layers[gate->layer];
    if (l->inputs[0] != x->layer || imp_uses(im, gate->name) != 1)
        return 0;
    if (l->op == DP_OP_SIGMOID) {
        l->op = DP_OP_SILU;
        return 1;
    }
    if (l->op == DP_OP_HARDSIGMOID && fabsf(l->a.alpha - 1.0f / 6.0f) < 1e-6f &&
        fabsf(l->a.beta - 0.5f) < 1e-6f) {
        l->op = DP_OP_HARDSWISH;
        l->a.alpha = l->a.beta = 0.0f; /* hardswish reads no attributes */
        return 1;
    }
    return 0;
}

/* Mul(x, Sigmoid(x)) is SiLU; Mul(x, HardSigmoid(x; 1/6, 1/2)) is HardSwish.
 * The fused layer takes the Mul's name where it can (our export names the
 * gate "<layer>.gate" and the product "<layer>", so a trip keeps the name). */
static int imp_fuse_gate(struct imp *im, const Onnx__NodeProto *nd, const struct imp_val *x,
                         const struct imp_val *gate)
{
    const int fused = imp_fuse_gate_op(im, x, gate);
    const char *n = nd->name;
    const size_t len = n != NULL ? strlen(n) : 0;
    if (fused && len > 0 && len < DP_NAME_MAX && strcmp(n, "input") != 0 &&
        dp_model_layer_find(im->m, n) < 0)
        memcpy(im->m->layers[gate->layer].name, n, len + 1);
    return fused;
}

/* Mul, Sub, Div (and the Add that is not a bias) of activations or an activation and a constant. */
static enum dp_err imp_binop(struct imp *im, const Onnx__NodeProto *nd, int idx, enum dp_op op)
{
    struct imp_val *a, *b;
    enum dp_err err = imp_in(im, nd, 0, &a);
    if (!err)
        err = imp_in(im, nd, 1, &b);
    if (!err && a->kind != IMP_CONST)
        err = imp_in_act(im, nd, 0, &a);
    if (!err && b->kind != IMP_CONST)
        err = imp_in_act(im, nd, 1, &b);
    if (err)
        return err;
    if (a->kind == IMP_ACT && b->kind == IMP_ACT) {
        if (op == DP_OP_MUL && imp_fuse_gate(im, nd, a, b))
            return imp_out_act(im, nd, b->layer, a->rank);
        if (op == DP_OP_MUL && imp_fuse_gate(im, nd, b, a))
            return imp_out_act(im, nd, a->layer, b->rank);
        if (a->rank != b->rank)
            return IMP_ERR(im, nd, DP_EUNSUPPORTED,
                           "operands of rank %d and %d (broadcasting across ranks is not "
                           "supported)",
                           a->rank, b->rank);
        int in[2] = {a->layer, b->layer};
        int li = imp_add(im, nd, idx, op, in, 2, NULL);
        return li < 0 ? (enum dp_err)li : imp_out_act(im, nd, li, a->rank);
    }
    const struct imp_val *act = a->kind == IMP_ACT ? a : b;
    const int rank = act->rank, al = act->layer;
    int cl = imp_const_layer(im, nd, idx, a->kind == IMP_ACT ? 1 : 0, rank, al);
    if (cl < 0)
        return (enum dp_err)cl;
    int in[2] = {a->kind == IMP_ACT ? al : cl, a->kind == IMP_ACT ? cl : al};
    int li = imp_add(im, nd, idx, op, in, 2, NULL);
    return li < 0 ? (enum dp_err)li : imp_out_act(im, nd, li, rank);
}

static enum dp_err imp_reducemean(struct imp *im, const Onnx__NodeProto *nd, int idx)
{
    struct imp_val *x;
    enum dp_err err = imp_in_act(im, nd, 0, &x);
    if (err)
        return err;
    const Onnx__AttributeProto *aa = imp_attr(nd, "axes");
    int mark[4] = {0, 0, 0, 0}, n = 0;
    for (size_t i = 0; aa != NULL && i < aa->n_ints; i++) {
        if (aa->ints[i] < -x->rank || aa->ints[i] >= x->rank)
            return IMP_ERR(im, nd, DP_EFORMAT, "axis %lld is outside a rank-%d tensor",
                           (long long)aa->ints[i], x->rank);
        int ax = (int)(aa->ints[i] < 0 ? aa->ints[i] + x->rank : aa->ints[i]);
        n += !mark[ax];
        mark[ax] = 1;
    }
    const int keep = imp_attr_i(nd, "keepdims", 1) != 0;
    int spatial = x->rank >= 3 && !mark[0] && !mark[1] && n == x->rank - 2;
    if (spatial) {
        int li = imp_add(im, nd, idx, DP_OP_GAP, &x->layer, 1, NULL);
        return li < 0 ? (enum dp_err)li : imp_out_act(im, nd, li, keep ? x->rank : 2);
    }
    if (aa == NULL || n == 0 || mark[0])
        return IMP_ERR(im, nd, DP_EUNSUPPORTED, "%s",
                       "a mean over the batch axis (axis 0, or no axes given) is not supported");
    /* The IR axes it covers, made contiguous through axes of size 1. */
    int c, h, w;
    imp__shape(im, x->layer, &c, &h, &w);
    const int ir[4] = {0, c, h, w};
    int lo = 4, hi = 0, cov[4] = {0, 0, 0, 0};
    for (int k = 1; k < x->rank; k++) {
        if (!mark[k])
            continue;
        int t = imp_ir_axis(x->rank, k);
        if (x->rank == 2) {
            cov[2] = cov[3] = 1; /* (F, 1, 1): the feature axis is C */
        }
        cov[t] = 1;
        lo = t < lo ? t : lo;
        hi = t > hi ? t : hi;
    }
    for (int t = lo; t <= hi; t++) {
        if (!cov[t] && ir[t] != 1)
            return IMP_ERR(im, nd, DP_EUNSUPPORTED, "%s",
                           "the axes are not contiguous in the (C, H, W) layout");
    }
    struct dp_op_attrs a = {0};
    a.axis = lo;
    a.axis_end = hi;
    int li = imp_add(im, nd, idx, DP_OP_MEAN, &x->layer, 1, &a);
    if (li < 0 || keep)
        return li < 0 ? (enum dp_err)li : imp_out_act(im, nd, li, x->rank);
    /* keepdims = 0: the remaining ONNX axes in their IR shape, by a reshape if needed. */
    int64_t od[4];
    int r = 1;
    const int64_t xd[4] = {0, c, x->rank == 4 ? h : w, w};
    for (int k = 1; k < x->rank; k++) {
        if (!mark[k])
            od[r++] = x->rank == 2 ? (int64_t)c * h * w : xd[k];
    }
    int tc = r > 1 ? (int)od[1] : 1, th = r == 4 ? (int)od[2] : 1;
    int tw = r == 4 ? (int)od[3] : r == 3 ? (int)od[2] : 1;
    const struct dp_layer *ml = &im->m->layers[li];
    if (ml->out_c == tc && ml->out_h == th && ml->out_w == tw)
        return imp_out_act(im, nd, li, r);
    struct dp_op_attrs ra = {0};
    ra.to_c = tc;
    ra.to_h = th;
    ra.to_w = tw;
    int rl = imp_add(im, nd, idx, DP_OP_RESHAPE, &li, 1, &ra);
    return rl < 0 ? (enum dp_err)rl : imp_out_act(im, nd, rl, r);
}

/* Adds a slice [s, e) of ONNX axis `axis` of x; returns the layer or a negative dp_err. */
static int imp_slice_layer(struct imp *im, const Onnx__NodeProto *nd, int idx, int layer, int rank,
                           int axis, int64_t s, int64_t e)
{
    struct dp_op_attrs a = {0};
    a.axis = imp_ir_axis(rank, axis);
    a.start = (int)s;
    a.end = (int)e;
    return imp_add(im, nd, idx, DP_OP_SLICE, &layer, 1, &a);
}

/* The length of ONNX axis `axis` (>= 1) of a rank-r activation of IR shape (c, h, w). */
static int64_t imp_axis_len(int rank, int axis, int c, int h, int w)
{
    if (axis == 1)
        return rank == 2 ? (int64_t)c * h * w : c;
    if (rank == 3)
        return w;
    return axis == 2 ? h : w;
}

static enum dp_err imp_slice(struct imp *im, const Onnx__NodeProto *nd, int idx)
{
    struct imp_val *x, *v[4] = {NULL, NULL, NULL, NULL};
    enum dp_err err = imp_in_act(im, nd, 0, &x);
    if (err)
        return err;
    if (im->opset < 10)
        return IMP_ERR(im, nd, DP_EUNSUPPORTED, "%s", "Slice before opset 10 is not supported");
    int64_t *p[4] = {NULL, NULL, NULL, NULL};
    size_t np[4] = {0, 0, 0, 0};
    for (size_t k = 0; !err && k < 4; k++) {
        if (imp_in_name(nd, k + 1) == NULL)
            continue;
        err = imp_in(im, nd, k + 1, &v[k]);
        if (!err && v[k]->kind != IMP_CONST)
            err = IMP_ERR(im, nd, DP_EUNSUPPORTED, "input %zu must be a constant", k + 1);
        if (!err)
            err = imp__const_i64(im, nd, v[k], &p[k], &np[k]);
    }
    if (!err && (v[0] == NULL || v[1] == NULL || np[0] != np[1] || (v[2] && np[2] != np[0]) ||
                 (v[3] && np[3] != np[0])))
        err = IMP_ERR(im, nd, DP_EFORMAT, "%s", "starts, ends, axes and steps disagree");
    int cur = x->layer;
    for (size_t i = 0; !err && i < np[0]; i++) {
        int c, h, w, axis;
        imp__shape(im, cur, &c, &h, &w);
        err = imp_norm_axis(im, nd, v[2] != NULL ? p[2][i] : (int64_t)i, x->rank, &axis);
        if (err)
            break;
        if (v[3] != NULL && p[3][i] != 1) {
            err = IMP_ERR(im, nd, DP_EUNSUPPORTED, "step %lld (only 1 is supported)",
                          (long long)p[3][i]);
            break;
        }
        const int64_t len = imp_axis_len(x->rank, axis, c, h, w);
        int64_t s = p[0][i], e = p[1][i];
        s = s < 0 ? s + len : s;
        e = e < 0 ? e + len : e;
        s = s < 0 ? 0 : s > len ? len : s;
        e = e < s ? s : e > len ? len : e;
        if (s == 0 && e == len)
            continue;
        if (x->rank == 2 && (h != 1 || w != 1)) {
            err = IMP_ERR(im, nd, DP_EUNSUPPORTED, "%s", "slicing a flattened map");
            break;
        }
        int li = imp_slice_layer(im, nd, idx, cur, x->rank, axis, s, e);
        if (li < 0)
            err = (enum dp_err)li;
        else
            cur = li;
    }
    for (int k = 0; k < 4; k++)
        dp_free(p[k]);
    if (err)
        return err;
    if (cur == x->layer)
        return imp_alias(im, nd, x, x->rank);
    return imp_out_act(im, nd, cur, x->rank);
}

static enum dp_err imp_split(struct imp *im, const Onnx__NodeProto *nd, int idx)
{
    struct imp_val *x;
    enum dp_err err = imp_in_act(im, nd, 0, &x);
    if (err)
        return err;
    int axis, c, h, w;
    err = imp_norm_axis(im, nd, imp_attr_i(nd, "axis", 0), x->rank, &axis);
    if (err)
        return err;
    imp__shape(im, x->layer, &c, &h, &w);
    const int64_t len = imp_axis_len(x->rank, axis, c, h, w);
    const size_t k = nd->n_output;
    if (k < 1 || k > 1024)
        return IMP_ERR(im, nd, DP_EFORMAT, "%zu outputs", k);
    int64_t *sz = NULL;
    size_t n = 0;
    const Onnx__AttributeProto *sa = imp_attr(nd, "split");
    if (im->opset < 13 && sa != NULL && sa->n_ints > 0) {
        sz = dp_malloc(sa->n_ints * sizeof(int64_t));
        if (sz == NULL)
            return dp_errinfo_set(im->ei, DP_ENOMEM, "out of memory");
        memcpy(sz, sa->ints, sa->n_ints * sizeof(int64_t));
        n = sa->n_ints;
    } else if (im->opset >= 13 && imp_in_name(nd, 1) != NULL) {
        struct imp_val *sv;
        err = imp_in(im, nd, 1, &sv);
        if (!err && sv->kind != IMP_CONST)
            err = IMP_ERR(im, nd, DP_EUNSUPPORTED, "%s", "the split sizes must be a constant");
        if (!err)
            err = imp__const_i64(im, nd, sv, &sz, &n);
        if (err)
            return err;
    } else {
        if (len % (int64_t)k != 0)
            return IMP_ERR(im, nd, DP_ESHAPE, "an axis of %lld does not split in %zu equal parts",
                           (long long)len, k);
        sz = dp_malloc(k * sizeof(int64_t));
        if (sz == NULL)
            return dp_errinfo_set(im->ei, DP_ENOMEM, "out of memory");
        for (size_t i = 0; i < k; i++)
            sz[i] = len / (int64_t)k;
        n = k;
    }
    int64_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += sz[i] >= 0 && sz[i] <= len ? sz[i] : len + 1;
    if (n != k || total != len) {
        dp_free(sz);
        return IMP_ERR(im, nd, DP_ESHAPE, "%zu sizes summing to %lld for %zu outputs and %lld", n,
                       (long long)total, k, (long long)len);
    }
    int64_t s = 0;
    for (size_t i = 0; !err && i < k; i++) {
        /* A part that is the whole axis is the input itself. */
        const int whole = sz[i] == len;
        int li =
            whole ? x->layer : imp_slice_layer(im, nd, idx, x->layer, x->rank, axis, s, s + sz[i]);
        if (!whole && li < 0)
            err = (enum dp_err)li;
        else
            err = imp_out_k(im, nd, i, li, x->rank);
        s += sz[i];
    }
    dp_free(sz);
    return err;
}

/* ---- The operator table -------------------------------------------------- */

/* Handlers whose ONNX operator fixes an argument of a shared translation. */
static enum dp_err imp_node_gemm(struct imp *im, const Onnx__NodeProto *nd, int idx)
{
    return imp_linear(im, nd, idx, 1);
}

static enum dp_err imp_node_matmul(struct imp *im, const Onnx__NodeProto *nd, int idx)
{
    return imp_linear(im, nd, idx, 0);
}

static enum dp_err imp_node_relu(struct imp *im, const Onnx__NodeProto *nd, int idx)
{
    return imp_unary(im, nd, idx, DP_OP_RELU, NULL);
}

static enum dp_err imp_node_maxpool(struct imp *im, const Onnx__NodeProto *nd, int idx)
{
    return imp_pool(im, nd, idx, DP_OP_MAXPOOL);
}

static enum dp_err imp_node_avgpool(struct imp *im, const Onnx__NodeProto *nd, int idx)
{
    return imp_pool(im, nd, idx, DP_OP_AVGPOOL);
}

static enum dp_err imp_node_identity(struct imp *im, const Onnx__NodeProto *nd, int idx)
{
    (void)idx;
    struct imp_val *x;
    enum dp_err err = imp_in(im, nd, 0, &x);
    return err ? err : imp_alias(im, nd, x, x->rank);
}

static enum dp_err imp_node_constant(struct imp *im, const Onnx__NodeProto *nd, int idx)
{
    (void)idx;
    return imp_constant(im, nd);
}

static enum dp_err imp_node_pad(struct imp *im, const Onnx__NodeProto *nd, int idx)
{
    (void)idx;
    return imp_pad(im, nd);
}

static enum dp_err imp_node_quant(struct imp *im, const Onnx__NodeProto *nd, int idx)
{
    (void)idx;
    return imp_qdq(im, nd, 1);
}

static enum dp_err imp_node_dequant(struct imp *im, const Onnx__NodeProto *nd, int idx)
{
    (void)idx;
    return imp_qdq(im, nd, 0);
}

static enum dp_err imp_node_sigmoid(struct imp *im, const Onnx__NodeProto *nd, int idx)
{
    return imp_unary(im, nd, idx, DP_OP_SIGMOID, NULL);
}

static enum dp_err imp_node_hardsigmoid(struct imp *im, const Onnx__NodeProto *nd, int idx)
{
    struct dp_op_attrs a = {0};
    a.alpha = imp_attr_f(nd, "alpha", 0.2f);
    a.beta = imp_attr_f(nd, "beta", 0.5f);
    return imp_unary(im, nd, idx, DP_OP_HARDSIGMOID, &a);
}

static enum dp_err imp_node_hardswish(struct imp *im, const Onnx__NodeProto *nd, int idx)
{
    return imp_unary(im, nd, idx, DP_OP_HARDSWISH, NULL);
}

static enum dp_err imp_node_mul(struct imp *im, const Onnx__NodeProto *nd, int idx)
{
    return imp_binop(im, nd, idx, DP_OP_MUL);
}

static enum dp_err imp_node_sub(struct imp *im, const Onnx__NodeProto *nd, int idx)
{
    return imp_binop(im, nd, idx, DP_OP_SUB);
}

static enum dp_err imp_node_div(struct imp *im, const Onnx__NodeProto *nd, int idx)
{
    return imp_binop(im, nd, idx, DP_OP_DIV);
}

/* Shape arithmetic that did not fold: an input is an activation. */
static enum dp_err imp_node_fold_only(struct imp *im, const Onnx__NodeProto *nd, int idx)
{
    (void)idx;
    return IMP_ERR(im, nd, DP_EUNSUPPORTED, "%s",
                   "supported only on constants (shape computations folded at import), not on "
                   "activations");
}

/* Squeeze and Gather of activations: the time steps of a sequence only. */
static enum dp_err imp_node_squeeze(struct imp *im, const Onnx__NodeProto *nd, int idx)
{
    int done = 0;
    enum dp_err err = imp__seq_squeeze(im, nd, idx, &done);
    return err || done ? err : imp_node_fold_only(im, nd, idx);
}

static enum dp_err imp_node_gather(struct imp *im, const Onnx__NodeProto *nd, int idx)
{
    int done = 0;
    enum dp_err err = imp__seq_gather(im, nd, idx, &done);
    return err || done ? err : imp_node_fold_only(im, nd, idx);
}

/* One row per supported ONNX operator: its name and its translation. */
static const struct {
    const char *name;
    enum dp_err (*fn)(struct imp *im, const Onnx__NodeProto *nd, int idx);
} imp_ops[] = {
    {"Conv", imp_conv},
    {"Gemm", imp_node_gemm},
    {"MatMul", imp_node_matmul},
    {"Relu", imp_node_relu},
    {"Clip", imp_clip},
    {"MaxPool", imp_node_maxpool},
    {"AveragePool", imp_node_avgpool},
    {"GlobalAveragePool", imp_gap},
    {"BatchNormalization", imp_bn},
    {"Add", imp_addop},
    {"Flatten", imp_flatten},
    {"Reshape", imp_reshape},
    {"Dropout", imp_dropout},
    {"Identity", imp_node_identity},
    {"Softmax", imp_softmax},
    {"Constant", imp_node_constant},
    {"Concat", imp_concat},
    {"Pad", imp_node_pad}, /* only all-zero pads: torch.onnx puts one before AveragePool */
    /* On constants only (folded at import): the weights of `export --qdq`. */
    {"QuantizeLinear", imp_node_quant},
    {"DequantizeLinear", imp_node_dequant},
    /* The mobile networks (issue 17). */
    {"Sigmoid", imp_node_sigmoid},
    {"HardSigmoid", imp_node_hardsigmoid},
    {"HardSwish", imp_node_hardswish},
    {"Mul", imp_node_mul},
    {"Sub", imp_node_sub},
    {"Div", imp_node_div},
    {"ReduceMean", imp_reducemean}, /* over the spatial axes: a global average pool */
    {"Slice", imp_slice},
    {"Split", imp_split},
    {"Transpose", imp_transpose}, /* inside a channel shuffle only */
    /* Evaluated by the constant folder (onnx_fold.c); on activations, an error. */
    {"Shape", imp_node_fold_only},
    {"Gather", imp_node_gather}, /* on activations: one time step of a sequence */
    {"Unsqueeze", imp_node_fold_only},
    {"Squeeze", imp_node_squeeze}, /* on activations: a sequence's direction axis */
    {"Cast", imp_node_fold_only},
    {"ConstantOfShape", imp_node_fold_only}, /* torch.onnx's zero initial state of an RNN */
    /* Recurrent layers (issue 15; onnx_import_rnn.c). */
    {"LSTM", imp__rnn},
    {"GRU", imp__rnn},
};

int imp__op_lookup(const Onnx__NodeProto *nd)
{
    if (nd->op_type == NULL)
        return -1;
    if (nd->domain != NULL && nd->domain[0] != '\0' && strcmp(nd->domain, "ai.onnx") != 0)
        return -1;
    for (size_t i = 0; i < sizeof(imp_ops) / sizeof(imp_ops[0]); i++) {
        if (strcmp(imp_ops[i].name, nd->op_type) == 0)
            return (int)i;
    }
    return -1;
}

enum dp_err imp__node(struct imp *im, const Onnx__NodeProto *nd, int idx)
{
    const int k = imp__op_lookup(nd);
    if (k < 0)
        return IMP_ERR(im, nd, DP_EUNSUPPORTED, "%s", "unsupported operator");
    int folded = 0;
    enum dp_err err = imp__fold(im, nd, &folded);
    if (err || folded)
        return err;
    return imp_ops[k].fn(im, nd, idx);
}
