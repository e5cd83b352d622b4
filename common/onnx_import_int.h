/*
 * Internal to the ONNX importer (onnx_import.c: the graph; onnx_import_ops.c:
 * the value table and the operators). Not for other modules.
 *
 * The protobuf-c types are only named here (identical typedefs repeat those
 * of the generated onnx.pb-c.h, which C11 allows), so that this header
 * compiles alone; the .c files include the generated header for the fields.
 */
#ifndef DP_COMMON_ONNX_IMPORT_INT_H
#define DP_COMMON_ONNX_IMPORT_INT_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "common/model.h"

typedef struct Onnx__GraphProto Onnx__GraphProto;
typedef struct Onnx__NodeProto Onnx__NodeProto;
typedef struct Onnx__TensorProto Onnx__TensorProto;
typedef struct Onnx__ModelProto Onnx__ModelProto;
typedef struct Onnx__AttributeProto Onnx__AttributeProto;

#define IMP_NODES_MAX  (4 * DP_MODEL_LAYERS_MAX) /* nodes in a graph */
#define IMP_VALUES_MAX (1 << 18)                 /* values (initializers + node outputs) */

/* ---- Value table --------------------------------------------------------- */
/*
 * IMP_SHUF5 and IMP_SHUF5T are the two hidden steps of a channel shuffle
 * (a rank-5 Reshape of an activation, then its Transpose (0, 2, 1, 3, 4)),
 * which only the closing Reshape may read (onnx_import_ops.c).
 */
enum imp_kind { IMP_ACT, IMP_CONST, IMP_SHUF5, IMP_SHUF5T, IMP_SEQTM };

/*
 * Sequences (LSTM and GRU, onnx_import_rnn.c). The IR holds a sequence as
 * a per-sample (1, T, F) map. A batch-first rank-3 value (N, T, F) held
 * that way is an IMP_ACT with seq = 1 (the usual form of a rank-3 value
 * is (C, 1, L)); a reader that does not know sequences gets it reshaped
 * to the usual form first. IMP_SEQTM is a time-major value, (T, N, F), or
 * (T, 1, N, F) with ONNX's direction axis: the layer's per-sample data is
 * the T x F steps in time order; only LSTM/GRU, Transpose, Squeeze,
 * Gather and Shape may read it.
 */

/* The batch size in a folded shape when the graph's batch is symbolic. */
#define IMP_BATCH_SYM (-((int64_t)1 << 40))

struct imp_val {
    const char *name; /* borrowed from the proto */
    enum imp_kind kind;
    int layer;                  /* IMP_ACT, IMP_SHUF5*: IR layer index or DP_MODEL_INPUT */
    int groups;                 /* IMP_SHUF5*: the shuffle's groups */
    int rank;                   /* IMP_ACT: ONNX rank, batch included (1..4) */
    int seq;                    /* IMP_ACT of rank 3: held as (1, T, F), not (T, 1, F) */
    int seq_t, seq_f;           /* IMP_SEQTM: steps and features per step */
    const Onnx__TensorProto *t; /* IMP_CONST: the tensor */
    float *f;                   /* IMP_CONST: decoded floats (owned), or NULL until needed */
    int64_t *iv;                /* IMP_CONST: a folded integer tensor (owned; t and f NULL) */
    size_t n;                   /* element count of f */
    size_t ndims;               /* IMP_CONST: its shape, once decoded */
    int64_t dims[8];
};

/* A weight tensor laid out for the IR, copied in after finalize. */
struct imp_pcopy {
    int layer;
    const char *suffix; /* "weight", "bias", "running_mean", ... */
    float *data;        /* owned */
    size_t n;
};

struct imp {
    const Onnx__GraphProto *g;
    struct dp_model *m;
    int64_t opset, batch;
    struct imp_val *vals;
    int n_vals, cap_vals;
    int *hash; /* open addressing over vals, -1 = empty; hash_cap a power of two */
    size_t hash_cap;
    struct imp_pcopy *copies;
    int n_copies, cap_copies;
    int in_tm;             /* the graph input is a time-major sequence (T, N, F) */
    const char **foldable; /* per IR layer: the output name of a Conv/Gemm/MatMul, whose
                            * bias a following Add of a constant may become; else NULL */
    int cap_foldable;
    /* Leading input normalisation (onnx_import_norm.c): the Sub and Div
     * node indices (-1 when absent), the value they produce (NULL: none
     * found), and their per-channel numbers. */
    int norm_node[2];
    const char *norm_out;
    int norm_c;
    float norm_mean[DP_MODEL_NORM_MAX_C], norm_std[DP_MODEL_NORM_MAX_C];
    struct dp_errinfo *ei;
};

/* The value called name; NULL when none is bound. */
struct imp_val *imp__find(const struct imp *im, const char *name);

/* Binds name to a fresh value (an earlier binding is replaced); NULL when the
 * table, sized from the graph up front, is full. */
struct imp_val *imp__bind(struct imp *im, const char *name);

/* The node's name for messages ("(unnamed)" when it has none). */
const char *imp__node_name(const Onnx__NodeProto *nd);

/* The per-sample IR shape of layer (or DP_MODEL_INPUT). */
void imp__shape(const struct imp *im, int layer, int *c, int *h, int *w);

/* ONNX dims of activation v (kind IMP_ACT or IMP_SEQTM) into d[v->rank]; the
 * batch entry is im->batch, or IMP_BATCH_SYM when symbolic. */
void imp__act_dims(const struct imp *im, const struct imp_val *v, int64_t *d);

/* The supported-operator table: >= 0 when nd's operator is in it. */
int imp__op_lookup(const Onnx__NodeProto *nd);

/*
 * Constant folding (onnx_fold.c): when every input of nd is a constant (or
 * nd is a Shape, whose input's shape is known), evaluates it and binds its
 * outputs as constants; *done says whether it did. Shape subgraphs
 * (Shape, Gather, Unsqueeze, Concat, Cast, arithmetic) thus become the
 * constants that Reshape and Slice need.
 */
enum dp_err imp__fold(struct imp *im, const Onnx__NodeProto *nd, int *done);

/* Whether the folder evaluates nd's operator (for the supported-operator check). */
int imp__fold_knows(const Onnx__NodeProto *nd);

/* A constant value's elements as int64 (a new array the caller frees). */
enum dp_err imp__const_i64(struct imp *im, const Onnx__NodeProto *nd, const struct imp_val *v,
                           int64_t **out, size_t *n);

/* Translates one node (index idx in the graph) into the IR and the value table. */
enum dp_err imp__node(struct imp *im, const Onnx__NodeProto *nd, int idx);

/* Helpers of onnx_import_ops.c for the other translators (see there). */
const Onnx__AttributeProto *imp__attr(const Onnx__NodeProto *nd, const char *name);
int64_t imp__attr_i(const Onnx__NodeProto *nd, const char *name, int64_t def);
const char *imp__in_name(const Onnx__NodeProto *nd, size_t k);
enum dp_err imp__in(struct imp *im, const Onnx__NodeProto *nd, size_t k, struct imp_val **out);
enum dp_err imp__in_const(struct imp *im, const Onnx__NodeProto *nd, size_t k,
                          struct imp_val **out);
int imp__add(struct imp *im, const Onnx__NodeProto *nd, int idx, enum dp_op op, const int *inputs,
             int n_inputs, const struct dp_op_attrs *a);
int imp__add_named(struct imp *im, const Onnx__NodeProto *nd, const char *name, enum dp_op op,
                   const int *inputs, int n_inputs, const struct dp_op_attrs *a);
enum dp_err imp__copy_take(struct imp *im, int layer, const char *suffix, float *data, size_t n);
int imp__uses(const struct imp *im, const char *name);

/* ---- Sequences (onnx_import_rnn.c) ---------------------------------------- */

/* Whether graph input `name` (rank 3) is a sequence for an LSTM or GRU:
 * 2 when read time-major (T, N, F) as X of a layout-0 node, 1 when
 * batch-first (N, T, F) (layout 1, or through Transpose (1, 0, 2)), else 0. */
int imp__seq_input(const struct imp *im, const char *name);

/* Operators LSTM and GRU, and Transpose, Squeeze and Gather of sequences. */
enum dp_err imp__rnn(struct imp *im, const Onnx__NodeProto *nd, int idx);
/* Transpose, Squeeze and Gather of a sequence; *done = 0 when x is none. */
enum dp_err imp__seq_transpose(struct imp *im, const Onnx__NodeProto *nd, int idx, int *done);
enum dp_err imp__seq_squeeze(struct imp *im, const Onnx__NodeProto *nd, int idx, int *done);
enum dp_err imp__seq_gather(struct imp *im, const Onnx__NodeProto *nd, int idx, int *done);

/* A seq = 1 value reshaped to the usual (T, 1, F) form (rebinding v). */
enum dp_err imp__seq_materialize(struct imp *im, const Onnx__NodeProto *nd, struct imp_val *v);

/* ---- Input normalisation (onnx_import_norm.c) ---------------------------- */

/* Finds leading Sub/Div normalisation nodes on the graph input (im->g);
 * fills im->norm_*. Before the operator check: never fails. */
void imp__norm_find(struct imp *im);

/* Nonzero when node idx is one of those nodes (the import skips it). */
int imp__norm_skips(const struct imp *im, int idx);

/* After the input is bound: binds the nodes' output to the input. */
enum dp_err imp__norm_bind(struct imp *im);

/* After finalize: records the normalisation in im->m, from the nodes or
 * else from mp's "dnnpress.normalization" metadata. */
void imp__norm_apply(struct imp *im, const Onnx__ModelProto *mp);

#endif
