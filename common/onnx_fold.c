/*
 * Constant folding for the ONNX importer (see onnx_import_int.h).
 *
 * DESIGN: one evaluator for every node whose inputs are all constants,
 * called by the importer's single walk over the graph before the node's
 * own translation, so no translator ever sees a computed shape: exporters
 * such as torch.onnx compute reshape targets and split points from
 * Shape(x) at run time (ShuffleNet's channel shuffle and chunk), and all
 * of that becomes plain constants here. Shape of an activation is known
 * because the IR's shape inference has run on everything before it; its
 * batch entry is the known batch size, or IMP_BATCH_SYM when the graph's
 * batch is symbolic, which may be moved around (Gather, Concat, ...) but
 * not computed with. Values are held as doubles while folding (exact for
 * the integers of shapes) and stored back as floats or int64s by type.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "common/alloc.h"
#include "common/onnx.h"
#include "common/onnx_import_int.h"
#include "onnx.pb-c.h"

#define FOLD_ERR(im, nd, code, fmt, ...)                                                           \
    dp_errinfo_set((im)->ei, (code), "node '%.60s' (%.32s): " fmt, imp__node_name(nd),             \
                   (nd)->op_type, __VA_ARGS__)

#define FOLD_MAX_ELEMS (1 << 20) /* a folded tensor is a shape or a small table, never a weight */

/* A constant while folding. */
struct fold_t {
    double *d; /* owned */
    size_t n, ndims;
    int64_t dims[8];
    int is_int;
};

static void fold_free(struct fold_t *t)
{
    dp_free(t->d);
    t->d = NULL;
}

/* The element count of dims, saturating at SIZE_MAX (checked against FOLD_MAX_ELEMS). */
static size_t fold_numel(const int64_t *dims, size_t ndims)
{
    size_t n = 1;
    for (size_t i = 0; i < ndims; i++) {
        if (dims[i] < 0)
            return SIZE_MAX;
        if (dims[i] != 0 && n > SIZE_MAX / (size_t)dims[i])
            return SIZE_MAX;
        n *= (size_t)dims[i];
    }
    return n;
}

/* A folded value as an integer: clamped to +-2^62 (NaN is 0), so the
 * conversion is defined for any float a hostile file may hold. */
static int64_t fold_i64(double x)
{
    const double lim = 4611686018427387904.0;
    if (!(x == x))
        return 0;
    return x >= lim ? (int64_t)lim : x <= -lim ? -(int64_t)lim : (int64_t)x;
}

static int fold_int_type(int32_t dt)
{
    return dt == ONNX__TENSOR_PROTO__DATA_TYPE__INT64 ||
           dt == ONNX__TENSOR_PROTO__DATA_TYPE__INT32 ||
           dt == ONNX__TENSOR_PROTO__DATA_TYPE__INT8 ||
           dt == ONNX__TENSOR_PROTO__DATA_TYPE__UINT8 ||
           dt == ONNX__TENSOR_PROTO__DATA_TYPE__INT16 ||
           dt == ONNX__TENSOR_PROTO__DATA_TYPE__UINT16 ||
           dt == ONNX__TENSOR_PROTO__DATA_TYPE__UINT32 ||
           dt == ONNX__TENSOR_PROTO__DATA_TYPE__UINT64 || dt == ONNX__TENSOR_PROTO__DATA_TYPE__BOOL;
}

static enum dp_err fold_alloc(struct imp *im, const Onnx__NodeProto *nd, struct fold_t *t, size_t n)
{
    if (n > FOLD_MAX_ELEMS)
        return FOLD_ERR(im, nd, DP_ETOOBIG, "a folded constant of %zu elements", n);
    t->d = dp_calloc(n ? n : 1, sizeof(double));
    t->n = n;
    if (t->d == NULL)
        return dp_errinfo_set(im->ei, DP_ENOMEM, "out of memory");
    return DP_OK;
}

/* Reads constant value v into t. */
static enum dp_err fold_get(struct imp *im, const Onnx__NodeProto *nd, const struct imp_val *v,
                            struct fold_t *t)
{
    memset(t, 0, sizeof(*t));
    enum dp_err err;
    if (v->iv != NULL || v->f != NULL) {
        t->ndims = v->ndims;
        memcpy(t->dims, v->dims, sizeof(t->dims));
        t->is_int = v->iv != NULL;
        err = fold_alloc(im, nd, t, v->n);
        for (size_t i = 0; !err && i < v->n; i++)
            t->d[i] = v->iv != NULL ? (double)v->iv[i] : (double)v->f[i];
        return err;
    }
    if (v->t == NULL)
        return FOLD_ERR(im, nd, DP_EFORMAT, "constant '%.60s' has no data", v->name);
    const Onnx__TensorProto *tp = v->t;
    if (tp->n_dims > 8)
        return FOLD_ERR(im, nd, DP_EUNSUPPORTED, "constant '%.60s' has rank %zu", v->name,
                        tp->n_dims);
    t->ndims = tp->n_dims;
    for (size_t i = 0; i < tp->n_dims; i++) {
        if (tp->dims[i] < 0 || tp->dims[i] > FOLD_MAX_ELEMS)
            return FOLD_ERR(im, nd, DP_EFORMAT, "constant '%.60s' has dimension %lld", v->name,
                            (long long)tp->dims[i]);
        t->dims[i] = tp->dims[i];
    }
    t->is_int = fold_int_type(tp->data_type);
    if (fold_numel(t->dims, t->ndims) > FOLD_MAX_ELEMS)
        return FOLD_ERR(im, nd, DP_ETOOBIG, "constant '%.60s' is too large to fold", v->name);
    size_t n = 0;
    if (t->is_int && tp->data_type != ONNX__TENSOR_PROTO__DATA_TYPE__BOOL) {
        int64_t *iv = NULL;
        err = dp_onnx_tensor_int64s(tp, &iv, &n, im->ei);
        if (!err)
            err = fold_alloc(im, nd, t, n);
        for (size_t i = 0; !err && i < n; i++)
            t->d[i] = (double)iv[i];
        dp_free(iv);
    } else {
        float *fv = NULL;
        err = dp_onnx_tensor_floats(tp, &fv, &n, im->ei);
        if (!err)
            err = fold_alloc(im, nd, t, n);
        for (size_t i = 0; !err && i < n; i++)
            t->d[i] = (double)fv[i];
        dp_free(fv);
    }
    if (!err && n != fold_numel(t->dims, t->ndims))
        err = FOLD_ERR(im, nd, DP_EFORMAT, "constant '%.60s' has %zu values for its shape", v->name,
                       n);
    if (err)
        fold_free(t);
    return err;
}

/* Binds output k of nd to t (t's data is consumed). */
static enum dp_err fold_put(struct imp *im, const Onnx__NodeProto *nd, size_t k, struct fold_t *t)
{
    if (k >= nd->n_output || nd->output[k] == NULL || nd->output[k][0] == '\0') {
        fold_free(t);
        return DP_OK; /* an unused optional output */
    }
    void *data = t->is_int ? (void *)dp_malloc((t->n ? t->n : 1) * sizeof(int64_t))
                           : (void *)dp_malloc((t->n ? t->n : 1) * sizeof(float));
    if (data == NULL) {
        fold_free(t);
        return dp_errinfo_set(im->ei, DP_ENOMEM, "out of memory");
    }
    for (size_t i = 0; i < t->n; i++) {
        if (t->is_int)
            ((int64_t *)data)[i] = fold_i64(t->d[i]);
        else
            ((float *)data)[i] = (float)t->d[i];
    }
    struct imp_val *v = imp__bind(im, nd->output[k]);
    if (v == NULL) {
        dp_free(data);
        fold_free(t);
        return dp_errinfo_set(im->ei, DP_ENOMEM, "out of memory");
    }
    v->kind = IMP_CONST;
    if (t->is_int)
        v->iv = data;
    else
        v->f = data;
    v->n = t->n;
    v->ndims = t->ndims;
    memcpy(v->dims, t->dims, sizeof(v->dims));
    fold_free(t);
    return DP_OK;
}

static const Onnx__AttributeProto *fold_attr(const Onnx__NodeProto *nd, const char *name)
{
    for (size_t i = 0; i < nd->n_attribute; i++) {
        if (nd->attribute[i]->name != NULL && strcmp(nd->attribute[i]->name, name) == 0)
            return nd->attribute[i];
    }
    return NULL;
}

static int64_t fold_attr_i(const Onnx__NodeProto *nd, const char *name, int64_t def)
{
    const Onnx__AttributeProto *a = fold_attr(nd, name);
    return a != NULL && a->has_i ? a->i : def;
}

static const char *fold_in_name(const Onnx__NodeProto *nd, size_t k)
{
    return k < nd->n_input && nd->input[k] != NULL && nd->input[k][0] != '\0' ? nd->input[k] : NULL;
}

/* Normalises axis (in [-rank, rank)) to [0, rank). */
static enum dp_err fold_axis(struct imp *im, const Onnx__NodeProto *nd, int64_t axis, size_t rank,
                             size_t *out)
{
    if (axis < -(int64_t)rank || axis >= (int64_t)rank)
        return FOLD_ERR(im, nd, DP_EFORMAT, "axis %lld is outside rank %zu", (long long)axis, rank);
    *out = (size_t)(axis < 0 ? axis + (int64_t)rank : axis);
    return DP_OK;
}

/* The axes of Unsqueeze/Squeeze/ReduceMean: the attribute (older opsets) or input 1. */
static enum dp_err fold_axes_list(struct imp *im, const Onnx__NodeProto *nd, struct fold_t *in1,
                                  int64_t *axes, size_t *n)
{
    const Onnx__AttributeProto *a = fold_attr(nd, "axes");
    *n = 0;
    if (in1 != NULL) {
        if (in1->n > 8)
            return FOLD_ERR(im, nd, DP_EUNSUPPORTED, "%zu axes", in1->n);
        for (size_t i = 0; i < in1->n; i++)
            axes[i] = fold_i64(in1->d[i]);
        *n = in1->n;
    } else if (a != NULL) {
        if (a->n_ints > 8)
            return FOLD_ERR(im, nd, DP_EUNSUPPORTED, "%zu axes", a->n_ints);
        for (size_t i = 0; i < a->n_ints; i++)
            axes[i] = a->ints[i];
        *n = a->n_ints;
    }
    return DP_OK;
}

/* Shape of an activation, or of a constant. */
static enum dp_err fold_shape(struct imp *im, const Onnx__NodeProto *nd, const struct imp_val *x,
                              const struct fold_t *xc, struct fold_t *out)
{
    int64_t d[8];
    size_t r;
    if (x->kind == IMP_ACT || x->kind == IMP_SEQTM) {
        r = (size_t)x->rank;
        imp__act_dims(im, x, d);
    } else {
        r = xc->ndims;
        memcpy(d, xc->dims, sizeof(d));
    }
    int64_t s = fold_attr_i(nd, "start", 0), e = fold_attr_i(nd, "end", (int64_t)r);
    s = s < 0 ? s + (int64_t)r : s;
    e = e < 0 ? e + (int64_t)r : e;
    s = s < 0 ? 0 : s > (int64_t)r ? (int64_t)r : s;
    e = e < s ? s : e > (int64_t)r ? (int64_t)r : e;
    memset(out, 0, sizeof(*out));
    out->is_int = 1;
    out->ndims = 1;
    out->dims[0] = e - s;
    enum dp_err err = fold_alloc(im, nd, out, (size_t)(e - s));
    for (int64_t i = s; !err && i < e; i++)
        out->d[i - s] = (double)d[i];
    return err;
}

static enum dp_err fold_gather(struct imp *im, const Onnx__NodeProto *nd, const struct fold_t *x,
                               const struct fold_t *ix, struct fold_t *out)
{
    size_t axis;
    if (x->ndims == 0)
        return FOLD_ERR(im, nd, DP_EFORMAT, "%s", "gathering from a scalar");
    enum dp_err err = fold_axis(im, nd, fold_attr_i(nd, "axis", 0), x->ndims, &axis);
    if (err)
        return err;
    if (x->ndims + ix->ndims - 1 > 8)
        return FOLD_ERR(im, nd, DP_EUNSUPPORTED, "%s", "the result has rank over 8");
    memset(out, 0, sizeof(*out));
    out->is_int = x->is_int;
    size_t outer = fold_numel(x->dims, axis),
           inner = fold_numel(x->dims + axis + 1, x->ndims - axis - 1);
    const int64_t len = x->dims[axis];
    for (size_t i = 0; i < axis; i++)
        out->dims[out->ndims++] = x->dims[i];
    for (size_t i = 0; i < ix->ndims; i++)
        out->dims[out->ndims++] = ix->dims[i];
    for (size_t i = axis + 1; i < x->ndims; i++)
        out->dims[out->ndims++] = x->dims[i];
    err = fold_alloc(im, nd, out, outer * ix->n * inner);
    for (size_t o = 0; !err && o < outer; o++) {
        for (size_t j = 0; !err && j < ix->n; j++) {
            int64_t k = fold_i64(ix->d[j]);
            k = k < 0 ? k + len : k;
            if (k < 0 || k >= len) {
                err = FOLD_ERR(im, nd, DP_EFORMAT, "index %lld is outside an axis of %lld",
                               (long long)ix->d[j], (long long)len);
                break;
            }
            memcpy(out->d + (o * ix->n + j) * inner, x->d + (o * (size_t)len + (size_t)k) * inner,
                   inner * sizeof(double));
        }
    }
    return err;
}

static enum dp_err fold_unsqueeze(struct imp *im, const Onnx__NodeProto *nd, int squeeze,
                                  const struct fold_t *x, struct fold_t *axes_in,
                                  struct fold_t *out)
{
    int64_t axes[8];
    size_t na;
    enum dp_err err = fold_axes_list(im, nd, axes_in, axes, &na);
    if (err)
        return err;
    const size_t r = squeeze ? x->ndims : x->ndims + na;
    if (r > 8)
        return FOLD_ERR(im, nd, DP_EUNSUPPORTED, "%s", "the result has rank over 8");
    int mark[8] = {0};
    for (size_t i = 0; i < na; i++) {
        size_t a;
        err = fold_axis(im, nd, axes[i], r, &a);
        if (err)
            return err;
        mark[a] = 1;
    }
    memset(out, 0, sizeof(*out));
    out->is_int = x->is_int;
    for (size_t i = 0, j = 0; i < r; i++) {
        if (squeeze) {
            if ((na == 0 && x->dims[i] == 1) || mark[i]) {
                if (x->dims[i] != 1)
                    return FOLD_ERR(im, nd, DP_EFORMAT, "axis %zu has size %lld, not 1", i,
                                    (long long)x->dims[i]);
                continue;
            }
            out->dims[out->ndims++] = x->dims[i];
        } else {
            out->dims[out->ndims++] = mark[i] ? 1 : x->dims[j++];
        }
    }
    err = fold_alloc(im, nd, out, x->n);
    if (!err)
        memcpy(out->d, x->d, x->n * sizeof(double));
    return err;
}

static enum dp_err fold_concat(struct imp *im, const Onnx__NodeProto *nd, struct fold_t *xs,
                               size_t k, struct fold_t *out)
{
    size_t axis;
    if (k == 0 || xs[0].ndims == 0)
        return FOLD_ERR(im, nd, DP_EFORMAT, "%s", "nothing to concatenate");
    enum dp_err err = fold_axis(im, nd, fold_attr_i(nd, "axis", 0), xs[0].ndims, &axis);
    if (err)
        return err;
    memset(out, 0, sizeof(*out));
    out->ndims = xs[0].ndims;
    memcpy(out->dims, xs[0].dims, sizeof(out->dims));
    out->dims[axis] = 0;
    out->is_int = 1;
    for (size_t i = 0; i < k; i++) {
        for (size_t j = 0; j < xs[0].ndims; j++) {
            if (xs[i].ndims != xs[0].ndims || (j != axis && xs[i].dims[j] != xs[0].dims[j]))
                return FOLD_ERR(im, nd, DP_ESHAPE, "input %zu does not match input 0", i);
        }
        out->dims[axis] += xs[i].dims[axis];
        out->is_int &= xs[i].is_int;
    }
    err = fold_alloc(im, nd, out, fold_numel(out->dims, out->ndims));
    const size_t outer = fold_numel(out->dims, axis);
    size_t pos = 0;
    for (size_t o = 0; !err && o < outer; o++) {
        for (size_t i = 0; i < k; i++) {
            const size_t blk = xs[i].n / (outer ? outer : 1);
            memcpy(out->d + pos, xs[i].d + o * blk, blk * sizeof(double));
            pos += blk;
        }
    }
    return err;
}

/* Add, Sub, Mul, Div with numpy broadcasting. */
static enum dp_err fold_arith(struct imp *im, const Onnx__NodeProto *nd, const struct fold_t *a,
                              const struct fold_t *b, struct fold_t *out)
{
    const char *op = nd->op_type;
    const size_t r = a->ndims > b->ndims ? a->ndims : b->ndims;
    int64_t da[8], db[8];
    memset(out, 0, sizeof(*out));
    for (size_t i = 0; i < r; i++) {
        da[i] = i + a->ndims >= r ? a->dims[i + a->ndims - r] : 1;
        db[i] = i + b->ndims >= r ? b->dims[i + b->ndims - r] : 1;
        if (da[i] != db[i] && da[i] != 1 && db[i] != 1)
            return FOLD_ERR(im, nd, DP_ESHAPE, "operands do not broadcast at axis %zu", i);
        out->dims[i] = da[i] > db[i] ? da[i] : db[i];
    }
    out->ndims = r;
    out->is_int = a->is_int && b->is_int;
    enum dp_err err = fold_alloc(im, nd, out, fold_numel(out->dims, r));
    for (size_t i = 0; !err && i < out->n; i++) {
        size_t rem = i, ia = 0, ib = 0, sa = 1, sb = 1;
        for (size_t k = r; k-- > 0;) {
            const size_t c = rem % (size_t)out->dims[k];
            rem /= (size_t)out->dims[k];
            ia += (da[k] == 1 ? 0 : c) * sa;
            ib += (db[k] == 1 ? 0 : c) * sb;
            sa *= (size_t)da[k];
            sb *= (size_t)db[k];
        }
        const double x = a->d[ia], y = b->d[ib];
        if (x == (double)IMP_BATCH_SYM || y == (double)IMP_BATCH_SYM)
            return FOLD_ERR(im, nd, DP_EUNSUPPORTED, "%s",
                            "the computation uses the batch size, which is symbolic in this "
                            "graph (export with a fixed batch)");
        double v;
        if (strcmp(op, "Add") == 0)
            v = x + y;
        else if (strcmp(op, "Sub") == 0)
            v = x - y;
        else if (strcmp(op, "Mul") == 0)
            v = x * y;
        else if (y == 0.0 && out->is_int)
            return FOLD_ERR(im, nd, DP_EFORMAT, "%s", "integer division by zero");
        else
            v = out->is_int ? trunc(x / y) : x / y;
        out->d[i] = v;
    }
    return err;
}

static enum dp_err fold_reshape(struct imp *im, const Onnx__NodeProto *nd, const struct fold_t *x,
                                const struct fold_t *s, struct fold_t *out)
{
    memset(out, 0, sizeof(*out));
    if (s->n > 8)
        return FOLD_ERR(im, nd, DP_EUNSUPPORTED, "target rank %zu", s->n);
    int neg = -1;
    size_t known = 1;
    for (size_t i = 0; i < s->n; i++) {
        int64_t d = fold_i64(s->d[i]);
        if (d == 0 && i < x->ndims && !fold_attr_i(nd, "allowzero", 0))
            d = x->dims[i];
        if (d == -1 && neg < 0) {
            neg = (int)i;
            d = 1;
        } else if (d < 0 || d > FOLD_MAX_ELEMS) {
            return FOLD_ERR(im, nd, DP_EFORMAT, "target dimension %lld", (long long)d);
        } else {
            known *= (size_t)d;
        }
        out->dims[i] = d;
    }
    if (neg >= 0 && known > 0 && x->n % known == 0)
        out->dims[neg] = (int64_t)(x->n / known), known = x->n;
    if (known != x->n)
        return FOLD_ERR(im, nd, DP_ESHAPE, "cannot reshape %zu values", x->n);
    out->ndims = s->n;
    out->is_int = x->is_int;
    enum dp_err err = fold_alloc(im, nd, out, x->n);
    if (!err)
        memcpy(out->d, x->d, x->n * sizeof(double));
    return err;
}

/* Slice of a 1-D constant (a shape): starts, ends, axes, steps as inputs (opset >= 10). */
static enum dp_err fold_slice(struct imp *im, const Onnx__NodeProto *nd, struct fold_t *in,
                              size_t k, struct fold_t *out)
{
    memset(out, 0, sizeof(*out));
    if (k < 3 || in[0].ndims != 1 || in[1].n != 1 || in[2].n != 1 || (k > 3 && in[3].n != 1) ||
        (k > 3 && in[3].d[0] != 0.0 && in[3].d[0] != -1.0))
        return FOLD_ERR(im, nd, DP_EUNSUPPORTED, "%s",
                        "only slices of one axis of a 1-D constant fold");
    const int64_t len = in[0].dims[0];
    int64_t step = k > 4 ? fold_i64(in[4].d[0]) : 1;
    int64_t s = (int64_t)fmax(fmin(in[1].d[0], 1e15), -1e15);
    int64_t e = (int64_t)fmax(fmin(in[2].d[0], 1e15), -1e15);
    if (step != 1)
        return FOLD_ERR(im, nd, DP_EUNSUPPORTED, "step %lld", (long long)step);
    s = s < 0 ? s + len : s;
    e = e < 0 ? e + len : e;
    s = s < 0 ? 0 : s > len ? len : s;
    e = e < s ? s : e > len ? len : e;
    out->ndims = 1;
    out->dims[0] = e - s;
    out->is_int = in[0].is_int;
    enum dp_err err = fold_alloc(im, nd, out, (size_t)(e - s));
    if (!err && e > s)
        memcpy(out->d, in[0].d + s, (size_t)(e - s) * sizeof(double));
    return err;
}

static enum dp_err fold_cast(struct imp *im, const Onnx__NodeProto *nd, const struct fold_t *x,
                             struct fold_t *out)
{
    const int32_t to = (int32_t)fold_attr_i(nd, "to", ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT);
    memset(out, 0, sizeof(*out));
    *out = *x;
    out->d = NULL;
    out->is_int = fold_int_type(to);
    if (!out->is_int && to != ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT &&
        to != ONNX__TENSOR_PROTO__DATA_TYPE__DOUBLE && to != ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT16)
        return FOLD_ERR(im, nd, DP_EUNSUPPORTED, "cast to type %d", (int)to);
    enum dp_err err = fold_alloc(im, nd, out, x->n);
    for (size_t i = 0; !err && i < x->n; i++)
        out->d[i] = out->is_int && x->d[i] != (double)IMP_BATCH_SYM ? trunc(x->d[i]) : x->d[i];
    return err;
}

/*
 * ConstantOfShape: a tensor of one value (attribute 'value', default float
 * 0). torch.onnx gives an RNN zero initial states shaped (1, N, H) from
 * Shape(x); a symbolic batch entry becomes 1 there, which stands for the
 * batch exactly under broadcasting since every element is the same (the
 * LSTM/GRU translator only checks that the values are zero).
 */
static enum dp_err fold_const_of_shape(struct imp *im, const Onnx__NodeProto *nd,
                                       const struct fold_t *s, struct fold_t *out)
{
    memset(out, 0, sizeof(*out));
    if (s->ndims != 1 || s->n > 8)
        return FOLD_ERR(im, nd, DP_EUNSUPPORTED, "%s",
                        "the shape must be a 1-D tensor of rank <= 8");
    out->ndims = s->n;
    for (size_t i = 0; i < s->n; i++) {
        int64_t d = s->d[i] == (double)IMP_BATCH_SYM ? 1 : fold_i64(s->d[i]);
        if (d < 0 || d > FOLD_MAX_ELEMS)
            return FOLD_ERR(im, nd, DP_EFORMAT, "dimension %lld", (long long)d);
        out->dims[i] = d;
    }
    double v = 0.0;
    const Onnx__AttributeProto *a = fold_attr(nd, "value");
    if (a != NULL && a->t != NULL) {
        float *f = NULL;
        size_t n = 0;
        enum dp_err err = dp_onnx_tensor_floats(a->t, &f, &n, im->ei);
        if (err)
            return err;
        if (n != 1) {
            dp_free(f);
            return FOLD_ERR(im, nd, DP_EFORMAT, "'value' has %zu elements, 1 expected", n);
        }
        v = (double)f[0];
        dp_free(f);
        out->is_int = fold_int_type(a->t->data_type);
    }
    const size_t n = fold_numel(out->dims, out->ndims);
    enum dp_err err = fold_alloc(im, nd, out, n);
    for (size_t i = 0; !err && i < n; i++)
        out->d[i] = v;
    return err;
}

static const char *const fold_ops[] = {
    "Shape", "Gather", "Unsqueeze", "Squeeze", "Concat", "Cast",           "Add",
    "Sub",   "Mul",    "Div",       "Reshape", "Slice",  "ConstantOfShape"};

int imp__fold_knows(const Onnx__NodeProto *nd)
{
    for (size_t i = 0; nd->op_type != NULL && i < sizeof(fold_ops) / sizeof(fold_ops[0]); i++) {
        if (strcmp(nd->op_type, fold_ops[i]) == 0)
            return 1;
    }
    return 0;
}

enum dp_err imp__fold(struct imp *im, const Onnx__NodeProto *nd, int *done)
{
    *done = 0;
    if (!imp__fold_knows(nd) || nd->n_input < 1 || nd->n_input > 8)
        return DP_OK;
    const int is_shape = strcmp(nd->op_type, "Shape") == 0;
    struct imp_val *v[8] = {NULL};
    for (size_t k = 0; k < nd->n_input; k++) {
        const char *name = fold_in_name(nd, k);
        if (name == NULL)
            continue;
        v[k] = imp__find(im, name);
        if (v[k] == NULL)
            return DP_OK; /* the translator reports the missing input */
        if (v[k]->kind != IMP_CONST &&
            !(is_shape && k == 0 && (v[k]->kind == IMP_ACT || v[k]->kind == IMP_SEQTM)))
            return DP_OK;
    }
    if (v[0] == NULL)
        return DP_OK;
    struct fold_t in[8], out;
    memset(in, 0, sizeof(in));
    memset(&out, 0, sizeof(out));
    enum dp_err err = DP_OK;
    size_t k = 0;
    for (; k < nd->n_input && !err; k++) {
        if (v[k] != NULL && v[k]->kind == IMP_CONST)
            err = fold_get(im, nd, v[k], &in[k]);
    }
    const char *op = nd->op_type;
    if (err) {
    } else if (is_shape) {
        err = fold_shape(im, nd, v[0], &in[0], &out);
    } else if (strcmp(op, "Gather") == 0) {
        err = v[1] == NULL ? FOLD_ERR(im, nd, DP_EFORMAT, "%s", "no indices")
                           : fold_gather(im, nd, &in[0], &in[1], &out);
    } else if (strcmp(op, "Unsqueeze") == 0 || strcmp(op, "Squeeze") == 0) {
        err = fold_unsqueeze(im, nd, op[0] == 'S', &in[0], v[1] != NULL ? &in[1] : NULL, &out);
    } else if (strcmp(op, "Concat") == 0) {
        for (size_t i = 0; i < nd->n_input && !err; i++) {
            if (v[i] == NULL)
                err = FOLD_ERR(im, nd, DP_EFORMAT, "input %zu is missing", i);
        }
        if (!err)
            err = fold_concat(im, nd, in, nd->n_input, &out);
    } else if (strcmp(op, "Cast") == 0) {
        err = fold_cast(im, nd, &in[0], &out);
    } else if (strcmp(op, "ConstantOfShape") == 0) {
        err = fold_const_of_shape(im, nd, &in[0], &out);
    } else if (strcmp(op, "Reshape") == 0) {
        err = v[1] == NULL ? FOLD_ERR(im, nd, DP_EFORMAT, "%s", "no shape")
                           : fold_reshape(im, nd, &in[0], &in[1], &out);
    } else if (strcmp(op, "Slice") == 0) {
        size_t n = nd->n_input;
        for (size_t i = 0; i < n && !err; i++) {
            if (v[i] == NULL)
                err = FOLD_ERR(im, nd, DP_EUNSUPPORTED, "%s", "omitted Slice inputs");
        }
        if (!err)
            err = fold_slice(im, nd, in, n, &out);
    } else {
        err = v[1] == NULL ? FOLD_ERR(im, nd, DP_EFORMAT, "%s", "input 1 is missing")
                           : fold_arith(im, nd, &in[0], &in[1], &out);
    }
    for (size_t i = 0; i < 8; i++)
        fold_free(&in[i]);
    if (err) {
        fold_free(&out);
        return err;
    }
    *done = 1;
    return fold_put(im, nd, 0, &out);
}

enum dp_err imp__const_i64(struct imp *im, const Onnx__NodeProto *nd, const struct imp_val *v,
                           int64_t **out, size_t *n)
{
    struct fold_t t;
    *out = NULL;
    *n = 0;
    enum dp_err err = fold_get(im, nd, v, &t);
    if (err)
        return err;
    int64_t *r = dp_malloc((t.n ? t.n : 1) * sizeof(int64_t));
    if (r == NULL) {
        fold_free(&t);
        return dp_errinfo_set(im->ei, DP_ENOMEM, "out of memory");
    }
    for (size_t i = 0; i < t.n; i++)
        r[i] = fold_i64(t.d[i]);
    *out = r;
    *n = t.n;
    fold_free(&t);
    return DP_OK;
}
