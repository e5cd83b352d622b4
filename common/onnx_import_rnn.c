/*
 * The ONNX importer's recurrent layers (issue 15): LSTM and GRU nodes, and
 * the Transpose, Squeeze and Gather nodes that exporters put around them.
 *
 * DESIGN: the IR holds a sequence as a per-sample (1, T, F) map (common/op.h)
 * and keeps the batch first; ONNX's LSTM and GRU take X time-major,
 * (T, N, F), unless layout = 1, and give Y as (T, 1, N, H) (the 1 is the
 * direction). Time-major values are bound as IMP_SEQTM (onnx_import_int.h):
 * their layer's per-sample data is the T x F steps in time order, which
 * (1, T, F) and (T, 1, F) maps both are, so moving between the two forms
 * costs nothing until a reader needs the other shape. torch.onnx writes an
 * nn.LSTM(batch_first=True) as
 *
 *   x (N, T, F) -Transpose(1,0,2)-> (T, N, F) -LSTM-> Y (T, 1, N, H)
 *     -Squeeze(1)-> (T, N, H) -Transpose(1,0,2)-> (N, T, H) -Gather(1, -1)-> (N, H)
 *
 * with initial states from ConstantOfShape (zeros, folded): that becomes a
 * model with input (1, T, F), one lstm layer, a slice of the last step and
 * a flatten. Only what the engine computes is accepted: one forward
 * direction, the default activations, no clip, no peepholes, no
 * input_forget, GRU with linear_before_reset = 1 (PyTorch's GRU), and
 * sequence_lens, initial_h and initial_c absent or trivial (every length
 * T, zero states); the cell state output Y_c is refused when read.
 *
 * Gate order: ONNX packs LSTM gates i, o, f, c and GRU gates z, r, h; the
 * IR keeps PyTorch's i, f, g, o and r, z, n, and ONNX's B = [Wb, Rb] is
 * bias_ih followed by bias_hh.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "common/alloc.h"
#include "common/onnx.h"
#include "common/onnx_import_int.h"
#include "onnx.pb-c.h"

#define RNN_ERR(im, nd, code, fmt, ...)                                                            \
    dp_errinfo_set((im)->ei, (code), "node '%.60s' (%.32s): " fmt, imp__node_name(nd),             \
                   (nd)->op_type, __VA_ARGS__)

/* For PyTorch gate g, the ONNX gate block it comes from. */
static const int rnn_lstm_from_onnx[4] = {0, 2, 3, 1}; /* i f g o <- i o f c */
static const int rnn_gru_from_onnx[3] = {1, 0, 2};     /* r z n <- z r h */

/* ---- Forms of a sequence ------------------------------------------------- */

void imp__act_dims(const struct imp *im, const struct imp_val *v, int64_t *d)
{
    const int64_t batch = im->batch > 0 ? im->batch : IMP_BATCH_SYM;
    int c, h, w;
    imp__shape(im, v->layer, &c, &h, &w);
    if (v->kind == IMP_SEQTM) {
        d[0] = v->seq_t;
        d[1] = v->rank == 4 ? 1 : batch;
        d[v->rank - 2] = batch;
        d[v->rank - 1] = v->seq_f;
        return;
    }
    d[0] = batch;
    if (v->rank == 2) {
        d[1] = (int64_t)c * h * w;
    } else if (v->rank == 3) {
        d[1] = v->seq ? h : c;
        d[2] = v->seq ? w : (int64_t)h * w;
    } else if (v->rank == 4) {
        d[1] = c, d[2] = h, d[3] = w;
    }
}

/* Binds output k of nd; NULL on OOM (reported). */
static struct imp_val *rnn_bind(struct imp *im, const Onnx__NodeProto *nd, size_t k)
{
    struct imp_val *v = imp__bind(im, nd->output[k]);
    if (v == NULL)
        dp_errinfo_set(im->ei, DP_ENOMEM, "out of memory");
    return v;
}

/* Binds output k as a value of `kind` held by `layer`, of ONNX rank
 * `rank`; t and f are its steps and features (read for IMP_SEQTM only). */
static enum dp_err rnn_bind_as(struct imp *im, const Onnx__NodeProto *nd, size_t k,
                               enum imp_kind kind, int layer, int rank, int t, int f)
{
    struct imp_val *v = rnn_bind(im, nd, k);
    if (v == NULL)
        return DP_ENOMEM;
    v->kind = kind;
    v->layer = layer;
    v->rank = rank;
    v->seq_t = t;
    v->seq_f = f;
    return DP_OK;
}

static int rnn_out_used(const struct imp *im, const Onnx__NodeProto *nd, size_t k)
{
    return k < nd->n_output && nd->output[k] != NULL && nd->output[k][0] != '\0' &&
           imp__uses(im, nd->output[k]) > 0;
}

/* Layer `layer` (T * F values per sample, time-major) as a (c, h, w) map
 * into *out: the layer itself when it has that shape, else a reshape of
 * it. (Layer indices and dp_errs are kept apart: DP_MODEL_INPUT is -1.) */
static enum dp_err rnn_as_shape(struct imp *im, const Onnx__NodeProto *nd, int idx, int layer,
                                int c, int h, int w, int *out)
{
    int lc, lh, lw;
    imp__shape(im, layer, &lc, &lh, &lw);
    *out = layer;
    if (lc == c && lh == h && lw == w)
        return DP_OK;
    struct dp_op_attrs a = {0};
    a.to_c = c, a.to_h = h, a.to_w = w;
    /* Named after the node plus ".seq", so the node's own layer keeps its name. */
    (void)idx;
    char name[DP_NAME_MAX];
    snprintf(name, sizeof(name), "%.40s.seq", imp__node_name(nd));
    for (int k = 2; dp_model_layer_find(im->m, name) >= 0; k++)
        snprintf(name, sizeof(name), "%.40s.seq%d", imp__node_name(nd), k);
    int li = imp__add_named(im, nd, name, DP_OP_RESHAPE, &layer, 1, &a);
    if (li < 0)
        return (enum dp_err)li;
    *out = li;
    return DP_OK;
}

enum dp_err imp__seq_materialize(struct imp *im, const Onnx__NodeProto *nd, struct imp_val *v)
{
    int c, h, w;
    imp__shape(im, v->layer, &c, &h, &w);
    int li;
    enum dp_err err = rnn_as_shape(im, nd, (int)im->m->n_layers, v->layer, h, 1, w, &li);
    if (err)
        return err;
    v->layer = li;
    v->seq = 0;
    return DP_OK;
}

/* Binds output 0 as the batch-first (N, T, F) form of a T-major layer. */
static enum dp_err rnn_bind_bf3(struct imp *im, const Onnx__NodeProto *nd, int layer, int t, int f)
{
    int c, h, w;
    imp__shape(im, layer, &c, &h, &w);
    struct imp_val *v = rnn_bind(im, nd, 0);
    if (v == NULL)
        return DP_ENOMEM;
    v->kind = IMP_ACT;
    v->layer = layer;
    v->rank = 3;
    /* (T, 1, F) is the usual form of a rank-3 value; anything else of T x F
     * values is read as (1, T, F). */
    v->seq = !(c == t && h == 1 && w == f);
    return DP_OK;
}

static int rnn_perm_is(const Onnx__NodeProto *nd, const int64_t *p, size_t n)
{
    const Onnx__AttributeProto *a = imp__attr(nd, "perm");
    if (a == NULL || a->n_ints != n)
        return 0;
    for (size_t i = 0; i < n; i++) {
        if (a->ints[i] != p[i])
            return 0;
    }
    return 1;
}

enum dp_err imp__seq_transpose(struct imp *im, const Onnx__NodeProto *nd, int idx, int *done)
{
    static const int64_t swap3[3] = {1, 0, 2}, tm4_bf4[4] = {2, 1, 0, 3};
    struct imp_val *x;
    *done = 0;
    enum dp_err err = imp__in(im, nd, 0, &x);
    if (err || nd->n_output < 1 || nd->output[0] == NULL || nd->output[0][0] == '\0')
        return DP_OK; /* the shuffle's translator reports it */
    int c, h, w;
    if (x->kind == IMP_ACT && x->rank == 3 && rnn_perm_is(nd, swap3, 3)) {
        /* (N, T, F) to time-major (T, N, F). */
        imp__shape(im, x->layer, &c, &h, &w);
        const int t = x->seq ? h : c, f = w, layer = x->layer;
        if (!x->seq && h != 1)
            return DP_OK;
        struct imp_val *v = rnn_bind(im, nd, 0);
        if (v == NULL)
            return DP_ENOMEM;
        *done = 1;
        v->kind = IMP_SEQTM;
        v->layer = layer;
        v->rank = 3;
        v->seq_t = t;
        v->seq_f = f;
        return DP_OK;
    }
    if (x->kind != IMP_SEQTM)
        return DP_OK;
    *done = 1;
    const int t = x->seq_t, f = x->seq_f, layer = x->layer;
    if (x->rank == 3 && rnn_perm_is(nd, swap3, 3))
        return rnn_bind_bf3(im, nd, layer, t, f);
    if (x->rank == 4 && rnn_perm_is(nd, tm4_bf4, 4)) {
        /* (T, 1, N, F) to (N, 1, T, F): a rank-4 value, (1, T, F) per sample. */
        int li;
        err = rnn_as_shape(im, nd, idx, layer, 1, t, f, &li);
        if (err)
            return err;
        return rnn_bind_as(im, nd, 0, IMP_ACT, li, 4, 0, 0);
    }
    return RNN_ERR(im, nd, DP_EUNSUPPORTED, "%s",
                   "a time-major sequence may be transposed only to batch-first, perm (1, 0, 2) "
                   "of (T, N, F) or (2, 1, 0, 3) of (T, 1, N, F)");
}

/* The axes of a Squeeze: the attribute (opset < 13) or input 1. */
static enum dp_err rnn_axes(struct imp *im, const Onnx__NodeProto *nd, int64_t **axes, size_t *n)
{
    *axes = NULL;
    *n = 0;
    if (imp__in_name(nd, 1) != NULL) {
        struct imp_val *av;
        enum dp_err err = imp__in(im, nd, 1, &av);
        if (!err && av->kind != IMP_CONST)
            err = RNN_ERR(im, nd, DP_EUNSUPPORTED, "%s", "the axes must be a constant");
        return err ? err : imp__const_i64(im, nd, av, axes, n);
    }
    const Onnx__AttributeProto *a = imp__attr(nd, "axes");
    if (a == NULL || a->n_ints == 0)
        return DP_OK;
    *axes = dp_malloc(a->n_ints * sizeof(int64_t));
    if (*axes == NULL)
        return dp_errinfo_set(im->ei, DP_ENOMEM, "out of memory");
    memcpy(*axes, a->ints, a->n_ints * sizeof(int64_t));
    *n = a->n_ints;
    return DP_OK;
}

/* The rank-2 (N, F) value of a layer holding F values per sample, into
 * *out: a flatten unless the layer is (F, 1, 1) already. */
static enum dp_err rnn_as_vector(struct imp *im, const Onnx__NodeProto *nd, int idx, int layer,
                                 int *out)
{
    int c, h, w;
    imp__shape(im, layer, &c, &h, &w);
    *out = layer;
    if (h == 1 && w == 1)
        return DP_OK;
    int li = imp__add(im, nd, idx, DP_OP_FLATTEN, &layer, 1, NULL);
    if (li < 0)
        return (enum dp_err)li;
    *out = li;
    return DP_OK;
}

enum dp_err imp__seq_squeeze(struct imp *im, const Onnx__NodeProto *nd, int idx, int *done)
{
    struct imp_val *x;
    *done = 0;
    enum dp_err err = imp__in(im, nd, 0, &x);
    if (err || x->kind != IMP_SEQTM)
        return DP_OK;
    *done = 1;
    if (nd->n_output < 1 || nd->output[0] == NULL || nd->output[0][0] == '\0')
        return RNN_ERR(im, nd, DP_EFORMAT, "%s", "has no output");
    int64_t *axes = NULL;
    size_t n = 0;
    err = rnn_axes(im, nd, &axes, &n);
    if (err)
        return err;
    const int64_t ax = n == 1 ? (axes[0] < 0 ? axes[0] + x->rank : axes[0]) : -1;
    dp_free(axes);
    const int t = x->seq_t, f = x->seq_f, layer = x->layer, rank = x->rank;
    if (rank == 4 && ax == 1) {
        /* (T, 1, N, F) to (T, N, F): the direction axis goes. */
        return rnn_bind_as(im, nd, 0, IMP_SEQTM, layer, 3, t, f);
    }
    if (rank == 3 && ax == 0 && t == 1) {
        /* (1, N, F) to (N, F): a final state. */
        int li;
        err = rnn_as_vector(im, nd, idx, layer, &li);
        if (err)
            return err;
        return rnn_bind_as(im, nd, 0, IMP_ACT, li, 2, 0, 0);
    }
    return RNN_ERR(im, nd, DP_EUNSUPPORTED, "%s",
                   "a time-major sequence may be squeezed only on its direction axis (axis 1 of "
                   "(T, 1, N, F)) or, with one step, on its time axis");
}

/* Step k of a time-major layer of t steps of f into *out: a slice. */
static enum dp_err rnn_step(struct imp *im, const Onnx__NodeProto *nd, int idx, int layer, int t,
                            int f, int64_t k, int *out)
{
    int c, h, w;
    imp__shape(im, layer, &c, &h, &w);
    *out = layer;
    if (t == 1)
        return DP_OK;
    struct dp_op_attrs a = {0};
    if (c == 1 && h == t && w == f) {
        a.axis = 2;
    } else {
        enum dp_err err = rnn_as_shape(im, nd, idx, layer, t, 1, f, &layer);
        if (err)
            return err;
        a.axis = 1;
    }
    a.start = (int)k;
    a.end = (int)k + 1;
    int li = imp__add(im, nd, idx, DP_OP_SLICE, &layer, 1, &a);
    if (li < 0)
        return (enum dp_err)li;
    *out = li;
    return DP_OK;
}

enum dp_err imp__seq_gather(struct imp *im, const Onnx__NodeProto *nd, int idx, int *done)
{
    struct imp_val *x, *iv;
    *done = 0;
    enum dp_err err = imp__in(im, nd, 0, &x);
    if (err || !((x->kind == IMP_ACT && x->rank == 3) || x->kind == IMP_SEQTM))
        return DP_OK;
    err = imp__in(im, nd, 1, &iv);
    if (err || iv->kind != IMP_CONST)
        return DP_OK;
    int64_t axis = imp__attr_i(nd, "axis", 0);
    axis = axis < 0 ? axis + x->rank : axis;
    /* The time axis: 1 of a batch-first (N, T, F), 0 of a time-major value. */
    const int tm = x->kind == IMP_SEQTM;
    if (axis != (tm ? 0 : 1))
        return DP_OK;
    int c, h, w;
    imp__shape(im, x->layer, &c, &h, &w);
    const int t = tm ? x->seq_t : x->seq ? h : c, f = tm ? x->seq_f : w;
    if (!tm && !x->seq && h != 1)
        return DP_OK;
    *done = 1;
    int64_t *k = NULL;
    size_t n = 0;
    err = imp__const_i64(im, nd, iv, &k, &n);
    if (err)
        return err;
    const int scalar = iv->ndims == 0 || (iv->t != NULL && iv->t->n_dims == 0);
    int64_t step = n == 1 ? k[0] : -1;
    dp_free(k);
    if (n != 1 || step < -(int64_t)t || step >= t)
        return RNN_ERR(im, nd, DP_EUNSUPPORTED,
                       "only one time step of the %d may be gathered (index %lld of %zu)", t,
                       (long long)step, n);
    step = step < 0 ? step + t : step;
    const int layer = x->layer, rank = x->rank;
    int li;
    err = rnn_step(im, nd, idx, layer, t, f, step, &li);
    if (err)
        return err;
    if (!scalar) {
        /* The time axis stays, with one step. */
        if (tm) {
            return rnn_bind_as(im, nd, 0, IMP_SEQTM, li, rank, 1, f);
        }
        return rnn_bind_bf3(im, nd, li, 1, f);
    }
    if (tm && rank == 4)
        return RNN_ERR(im, nd, DP_EUNSUPPORTED, "%s",
                       "a time step of (T, 1, N, F) keeps the direction axis first; squeeze it "
                       "before gathering");
    err = rnn_as_vector(im, nd, idx, li, &li);
    if (err)
        return err;
    return rnn_bind_as(im, nd, 0, IMP_ACT, li, 2, 0, 0);
}

/* ---- The graph input ----------------------------------------------------- */

static int rnn_is_rnn(const Onnx__NodeProto *nd)
{
    return nd->op_type != NULL &&
           (strcmp(nd->op_type, "LSTM") == 0 || strcmp(nd->op_type, "GRU") == 0) &&
           (nd->domain == NULL || nd->domain[0] == '\0' || strcmp(nd->domain, "ai.onnx") == 0);
}

/* Whether value `name` is X (input 0) of an LSTM/GRU with the given layout. */
static int rnn_feeds_x(const Onnx__GraphProto *g, const char *name, int layout)
{
    for (size_t i = 0; i < g->n_node; i++) {
        const Onnx__NodeProto *nd = g->node[i];
        if (rnn_is_rnn(nd) && nd->n_input > 0 && nd->input[0] != NULL &&
            strcmp(nd->input[0], name) == 0 && imp__attr_i(nd, "layout", 0) == layout)
            return 1;
    }
    return 0;
}

int imp__seq_input(const struct imp *im, const char *name)
{
    static const int64_t swap3[3] = {1, 0, 2};
    const Onnx__GraphProto *g = im->g;
    if (rnn_feeds_x(g, name, 0))
        return 2;
    if (rnn_feeds_x(g, name, 1))
        return 1;
    for (size_t i = 0; i < g->n_node; i++) {
        const Onnx__NodeProto *nd = g->node[i];
        if (nd->op_type != NULL && strcmp(nd->op_type, "Transpose") == 0 && nd->n_input == 1 &&
            nd->input[0] != NULL && strcmp(nd->input[0], name) == 0 && nd->n_output == 1 &&
            nd->output[0] != NULL && rnn_perm_is(nd, swap3, 3) && rnn_feeds_x(g, nd->output[0], 0))
            return 1;
    }
    return 0;
}

/* ---- LSTM and GRU -------------------------------------------------------- */

/* A constant input that must be absent or hold only `want` (the defaults
 * the engine computes with: zero states, full lengths, no peepholes). */
static enum dp_err rnn_trivial(struct imp *im, const Onnx__NodeProto *nd, size_t k,
                               const char *what, float want)
{
    if (imp__in_name(nd, k) == NULL)
        return DP_OK;
    struct imp_val *v;
    enum dp_err err = imp__in(im, nd, k, &v);
    if (err)
        return err;
    if (v->kind != IMP_CONST)
        return RNN_ERR(im, nd, DP_EUNSUPPORTED,
                       "%s (input %zu) must be absent or a constant; the engine starts every "
                       "sequence from zero states and runs it to its end",
                       what, k);
    err = imp__in_const(im, nd, k, &v);
    if (err)
        return err;
    for (size_t i = 0; i < v->n; i++) {
        if (v->f[i] != want)
            return RNN_ERR(im, nd, DP_EUNSUPPORTED,
                           "%s (input %zu) holds %g; only %g is supported (zero initial states, "
                           "every sequence of full length, no peepholes)",
                           what, k, (double)v->f[i], (double)want);
    }
    return DP_OK;
}

/* Checks the attributes against what the engine computes. */
static enum dp_err rnn_attrs(struct imp *im, const Onnx__NodeProto *nd, int lstm, int *hidden,
                             int *layout)
{
    static const char *const acts_lstm[3] = {"Sigmoid", "Tanh", "Tanh"};
    static const char *const acts_gru[2] = {"Sigmoid", "Tanh"};
    const Onnx__AttributeProto *a = imp__attr(nd, "direction");
    if (a != NULL && a->has_s && !(a->s.len == 7 && memcmp(a->s.data, "forward", 7) == 0))
        return RNN_ERR(im, nd, DP_EUNSUPPORTED, "direction '%.*s' is not supported (forward only)",
                       (int)(a->s.len < 32 ? a->s.len : 32), (const char *)a->s.data);
    a = imp__attr(nd, "activations");
    const size_t na = lstm ? 3 : 2;
    for (size_t i = 0; a != NULL && i < a->n_strings; i++) {
        const char *want = lstm ? acts_lstm[i % na] : acts_gru[i % na];
        const ProtobufCBinaryData *s = &a->strings[i];
        if (i >= na || s->len != strlen(want) || memcmp(s->data, want, s->len) != 0)
            return RNN_ERR(im, nd, DP_EUNSUPPORTED,
                           "activations other than the defaults (%s) are not supported",
                           lstm ? "Sigmoid, Tanh, Tanh" : "Sigmoid, Tanh");
    }
    if (imp__attr(nd, "activation_alpha") != NULL || imp__attr(nd, "activation_beta") != NULL)
        return RNN_ERR(im, nd, DP_EUNSUPPORTED, "%s",
                       "activation_alpha and activation_beta are not supported");
    if (imp__attr(nd, "clip") != NULL)
        return RNN_ERR(im, nd, DP_EUNSUPPORTED, "%s", "clip is not supported");
    if (lstm && imp__attr_i(nd, "input_forget", 0) != 0)
        return RNN_ERR(im, nd, DP_EUNSUPPORTED, "%s", "input_forget = 1 is not supported");
    if (!lstm && imp__attr_i(nd, "linear_before_reset", 0) != 1)
        return RNN_ERR(im, nd, DP_EUNSUPPORTED, "%s",
                       "linear_before_reset = 0 is not supported: the engine's GRU is PyTorch's, "
                       "which applies the reset gate after the recurrent product "
                       "(linear_before_reset = 1)");
    const int64_t hs = imp__attr_i(nd, "hidden_size", 0);
    if (hs < 1 || hs > (1 << 16))
        return RNN_ERR(im, nd, DP_EFORMAT, "hidden_size %lld is missing or outside [1, 65536]",
                       (long long)hs);
    const int64_t lay = imp__attr_i(nd, "layout", 0);
    if (lay != 0 && lay != 1)
        return RNN_ERR(im, nd, DP_EFORMAT, "layout %lld (0 or 1)", (long long)lay);
    *hidden = (int)hs;
    *layout = (int)lay;
    return DP_OK;
}

/* A (1, G*H, cols) tensor reordered to PyTorch's gates, queued for `suffix`. */
static enum dp_err rnn_matrix(struct imp *im, const Onnx__NodeProto *nd, int li, size_t k,
                              const char *suffix, int gates, int hidden, int cols)
{
    struct imp_val *v;
    enum dp_err err = imp__in_const(im, nd, k, &v);
    if (err)
        return err;
    const int64_t rows = (int64_t)gates * hidden;
    if (v->ndims != 3 || v->dims[0] != 1 || v->dims[1] != rows || v->dims[2] != cols)
        return RNN_ERR(im, nd, DP_ESHAPE, "input %zu must be (1, %lld, %d) (one direction)", k,
                       (long long)rows, cols);
    const int *from = gates == 4 ? rnn_lstm_from_onnx : rnn_gru_from_onnx;
    const size_t blk = (size_t)hidden * (size_t)cols;
    float *d = dp_malloc(dp_size_mul((size_t)rows * (size_t)cols, sizeof(float)));
    if (d == NULL)
        return dp_errinfo_set(im->ei, DP_ENOMEM, "out of memory");
    for (int g = 0; g < gates; g++)
        memcpy(d + (size_t)g * blk, v->f + (size_t)from[g] * blk, blk * sizeof(float));
    return imp__copy_take(im, li, suffix, d, (size_t)rows * (size_t)cols);
}

/* B = [Wb, Rb] (1, 2*G*H), or zeros when absent, as bias_ih and bias_hh. */
static enum dp_err rnn_biases(struct imp *im, const Onnx__NodeProto *nd, int li, int gates,
                              int hidden)
{
    const size_t gh = (size_t)gates * (size_t)hidden;
    struct imp_val *v = NULL;
    if (imp__in_name(nd, 3) != NULL) {
        enum dp_err err = imp__in_const(im, nd, 3, &v);
        if (err)
            return err;
        if (v->ndims != 2 || v->dims[0] != 1 || v->dims[1] != (int64_t)(2 * gh))
            return RNN_ERR(im, nd, DP_ESHAPE, "B must be (1, %zu) (one direction)", 2 * gh);
    }
    const int *from = gates == 4 ? rnn_lstm_from_onnx : rnn_gru_from_onnx;
    static const char *const suffix[2] = {"bias_ih", "bias_hh"};
    for (int half = 0; half < 2; half++) {
        float *d = dp_calloc(gh, sizeof(float));
        if (d == NULL)
            return dp_errinfo_set(im->ei, DP_ENOMEM, "out of memory");
        for (int g = 0; v != NULL && g < gates; g++)
            memcpy(d + (size_t)g * (size_t)hidden,
                   v->f + (size_t)half * gh + (size_t)from[g] * (size_t)hidden,
                   (size_t)hidden * sizeof(float));
        enum dp_err err = imp__copy_take(im, li, suffix[half], d, gh);
        if (err)
            return err;
    }
    return DP_OK;
}

enum dp_err imp__rnn(struct imp *im, const Onnx__NodeProto *nd, int idx)
{
    const int lstm = strcmp(nd->op_type, "LSTM") == 0, gates = lstm ? 4 : 3;
    int hidden = 0, layout = 0;
    enum dp_err err = rnn_attrs(im, nd, lstm, &hidden, &layout);
    if (err)
        return err;
    struct imp_val *x;
    err = imp__in(im, nd, 0, &x);
    if (err)
        return err;
    int t, f, c, h, w;
    if (x->kind == IMP_SEQTM && x->rank == 3 && layout == 0) {
        t = x->seq_t, f = x->seq_f;
    } else if (x->kind == IMP_ACT && x->rank == 3 && layout == 1) {
        imp__shape(im, x->layer, &c, &h, &w);
        if (!x->seq && h != 1)
            return RNN_ERR(im, nd, DP_ESHAPE, "%s", "X is not a (N, T, F) sequence");
        t = x->seq ? h : c, f = w;
    } else {
        return RNN_ERR(im, nd, DP_EUNSUPPORTED,
                       "X ('%.60s') must be a sequence: time-major (T, N, F) with layout 0 (the "
                       "graph input, or a Transpose (1, 0, 2) of a batch-first (N, T, F)), or "
                       "batch-first with layout 1",
                       x->name);
    }
    err = rnn_trivial(im, nd, 4, "sequence_lens", (float)t);
    if (!err)
        err = rnn_trivial(im, nd, 5, "initial_h", 0.0f);
    if (!err && lstm)
        err = rnn_trivial(im, nd, 6, "initial_c", 0.0f);
    if (!err && lstm)
        err = rnn_trivial(im, nd, 7, "P (peepholes)", 0.0f);
    if (err)
        return err;
    if (lstm && rnn_out_used(im, nd, 2))
        return RNN_ERR(im, nd, DP_EUNSUPPORTED, "%s",
                       "the cell state output Y_c is read; only Y and Y_h are supported");
    int in;
    err = rnn_as_shape(im, nd, idx, x->layer, 1, t, f, &in);
    if (err)
        return err;
    struct dp_op_attrs a = {0};
    a.out_ch = hidden;
    a.has_bias = 1;
    int li = imp__add(im, nd, idx, lstm ? DP_OP_LSTM : DP_OP_GRU, &in, 1, &a);
    if (li < 0)
        return (enum dp_err)li;
    err = rnn_matrix(im, nd, li, 1, "weight_ih", gates, hidden, f);
    if (!err)
        err = rnn_matrix(im, nd, li, 2, "weight_hh", gates, hidden, hidden);
    if (!err)
        err = rnn_biases(im, nd, li, gates, hidden);
    if (err)
        return err;
    /* Y: (T, 1, N, H) time-major, or (N, T, 1, H) with layout 1, whose
     * usual rank-4 form is (T, 1, H) per sample. */
    if (nd->n_output > 0 && nd->output[0] != NULL && nd->output[0][0] != '\0') {
        int yl = li;
        if (layout == 1 && imp__uses(im, nd->output[0]) > 0) {
            err = rnn_as_shape(im, nd, idx, li, t, 1, hidden, &yl);
            if (err)
                return err;
        }
        err = rnn_bind_as(im, nd, 0, layout == 0 ? IMP_SEQTM : IMP_ACT, yl, 4, t, hidden);
        if (err)
            return err;
    }
    /* Y_h: the last step, (1, N, H) time-major or (N, 1, H) with layout 1. */
    if (rnn_out_used(im, nd, 1)) {
        int hl;
        err = rnn_step(im, nd, idx, li, t, hidden, t - 1, &hl);
        if (err)
            return err;
        err = rnn_bind_as(im, nd, 1, layout == 0 ? IMP_SEQTM : IMP_ACT, hl, 3, 1, hidden);
        if (err)
            return err;
    }
    return DP_OK;
}
