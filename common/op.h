/*
 * Operators: one row per op (struct dp_op_info) that every part of the
 * project consults instead of switching on the op.
 *
 *   const struct dp_op_info *oi = dp_op_info(l->op);
 *   oi->n_inputs;                       1, or 2 for add, concat, mul, sub, div
 *   err = oi->infer(m, layer, ei);      checks attributes, sets the output
 *                                       shape, declares the parameters
 *   dp_layer_chan(m, layer);            how purification treats its channels
 *   dp_layer_route(m, layer, c, &k);    which input channel a ROUTES op moves to c
 *
 * The row holds what is true of the op whoever runs it: its name in graph
 * JSON and checkpoints, its input count, which dp_op_attrs fields it reads,
 * its shape inference, how its output channels relate to its inputs' (for
 * purification), whether an all-zero input channel stays all-zero, whether
 * its first parameter is a dense weight the compression engine projects,
 * and the starting values of parameters that are not zero. What depends on
 * the runner lives in the runner's own table indexed by the same enum: the
 * engine's forward/backward functions (struct nn_layer_ops in
 * worker/nn/net.c, with its layout and cache needs); the ONNX exporter and
 * importer map ops to nodes (common/onnx_export.c, common/onnx_import_ops.c).
 * docs/architecture.md, "Adding an op", lists every place a new op goes;
 * tests/unit/common/test_op.c checks that every op has a complete row here
 * and in the engine.
 */
#ifndef DP_COMMON_OP_H
#define DP_COMMON_OP_H

#include "common/err.h"

/* Operator kinds. Append only: the value is not serialised (names are). */
enum dp_op {
    DP_OP_CONV2D,
    DP_OP_LINEAR,
    DP_OP_RELU,
    DP_OP_RELU6,
    DP_OP_MAXPOOL,
    DP_OP_AVGPOOL,
    DP_OP_GAP, /* global average pool: (C,H,W) -> (C,1,1) */
    DP_OP_BN2D,
    DP_OP_ADD,
    DP_OP_FLATTEN,
    DP_OP_DROPOUT,
    /* Added for ONNX import (issue 4). */
    DP_OP_SOFTMAX, /* softmax over per-sample axes [axis, axis_end] (1 = C, 2 = H, 3 = W) */
    DP_OP_CONCAT,  /* two inputs joined along per-sample axis `axis` (1 = C, 2 = H, 3 = W) */
    DP_OP_CLIP,    /* min(max(x, lo), hi) */
    DP_OP_RESHAPE, /* the same values per sample as a (to_c, to_h, to_w) map (a copy) */
    /* Added for the mobile networks (issue 17). */
    DP_OP_SIGMOID,     /* 1 / (1 + exp(-x)) */
    DP_OP_HARDSIGMOID, /* max(0, min(1, alpha * x + beta)) */
    DP_OP_HARDSWISH,   /* x * max(0, min(1, x / 6 + 1/2)) */
    DP_OP_SILU,        /* x * sigmoid(x) (swish) */
    DP_OP_MUL,         /* a * b, b (or a) broadcast along axes where it has size 1 */
    DP_OP_SUB,         /* a - b, broadcasting like mul */
    DP_OP_DIV,         /* a / b, broadcasting like mul */
    DP_OP_SLICE,       /* input[start:end) along per-sample axis `axis` (1 = C, 2 = H, 3 = W) */
    DP_OP_SHUFFLE,     /* channel shuffle: (groups, C/groups) channels transposed */
    DP_OP_CONST,       /* a constant (to_c, to_h, to_w) map per sample (its input is ignored) */
    DP_OP_MEAN,        /* mean over per-sample axes [axis, axis_end], kept as size 1 */
    DP_OP_ADD_BCAST,   /* a + b broadcasting like mul (add keeps equal shapes, for purification) */
    /*
     * Added for recurrent and block-circulant networks (issue 15). A
     * sequence is a per-sample (1, T, F) map: H is time, W the features
     * (an MNIST image read row by row is 28 steps of 28 features).
     *
     * lstm, gru: one layer, one direction, zero initial state, batch-first,
     * out_ch = hidden size H; output (1, T, H), every step's hidden state
     * (a slice along axis 2 takes the last). Parameters in PyTorch's
     * layout and gate order, so PyTorch weights map directly:
     *   lstm: weight_ih (4H, F), weight_hh (4H, H), bias_ih (4H), bias_hh (4H); gates i, f, g, o
     *   gru:  weight_ih (3H, F), weight_hh (3H, H), bias_ih (3H), bias_hh (3H); gates r, z, n,
     *         n = tanh(W_in x + b_in + r * (W_hn h + b_hn)) (ONNX linear_before_reset = 1)
     * has_bias is always 1 for them. With block = k > 0 both matrices are
     * block-circulant (below) and stored as (ceil(rows/k), ceil(cols/k), k).
     *
     * circ_linear: linear whose weight (out, in) is block-circulant with
     * k x k blocks (k = block), stored as (p, q, k), p = ceil(out/k),
     * q = ceil(in/k); rows and columns past out and in are zero padding.
     * circ_conv2d: conv2d (groups 1) whose (out, in) channel matrix at each
     * kernel tap is block-circulant: weight (kh * kw, p, q, k), tap t = u * kw + v.
     * Convention everywhere (forward, backward, projection, export,
     * codegen): FIRST COLUMN. The stored vector c of block (i, j) gives
     *   W[i*k + r][j*k + s] = c[(r - s) mod k],
     * so block (i, j) times x_j is IFFT(FFT(c) * FFT(x_j)).
     * worker/circulant/circ.h computes with it.
     */
    DP_OP_LSTM,
    DP_OP_GRU,
    DP_OP_CIRC_LINEAR,
    DP_OP_CIRC_CONV2D,
    DP_OP__COUNT
};

/*
 * Operator attributes: one struct for every op, so that graph JSON and
 * checkpoints read and write them through one field table (model_io.c).
 * Only the fields in the op's dp_op_info.attrs mask are meaningful; the
 * rest stay zero and shape inference ignores them (test_op.c checks it).
 * The DP_ATTR_* bit of each field group is given beside it.
 */
struct dp_op_attrs {
    int out_ch;            /* DP_ATTR_OUT_CH: conv2d output channels; linear out features */
    int kh, kw;            /* DP_ATTR_WINDOW (with the next three lines): window */
    int sh, sw;            /* stride */
    int pt, pl, pb, pr;    /* padding top, left, bottom, right */
    int dh, dw;            /* dilation */
    int groups;            /* DP_ATTR_GROUPS: conv2d */
    int has_bias;          /* DP_ATTR_HAS_BIAS: conv2d, linear */
    int ceil_mode;         /* DP_ATTR_CEIL_MODE: pooling */
    int count_include_pad; /* DP_ATTR_COUNT_PAD: avgpool (builders also set it on maxpool) */
    float eps, momentum; /* DP_ATTR_BN: bn2d (momentum as in PyTorch: new = (1-m)*old + m*batch) */
    float p;             /* DP_ATTR_P: dropout probability */
    int axis, axis_end; /* DP_ATTR_AXIS (axis_end: softmax only): per-sample axes, 1 = C .. 3 = W */
    float lo, hi;       /* DP_ATTR_BOUNDS: clip bounds (finite; +-FLT_MAX for "none") */
    int to_c, to_h, to_w; /* DP_ATTR_TO: reshape's per-sample output shape; const's shape */
    float alpha, beta;    /* DP_ATTR_AB: hardsigmoid's slope and offset */
    int start, end;       /* DP_ATTR_RANGE: slice's [start, end) along axis */
    int block;            /* DP_ATTR_BLOCK: circulant block size k (lstm/gru: 0 = dense) */
};

/* Field groups of struct dp_op_attrs, for dp_op_info.attrs. */
enum {
    DP_ATTR_OUT_CH = 1u << 0,
    DP_ATTR_WINDOW = 1u << 1,
    DP_ATTR_GROUPS = 1u << 2,
    DP_ATTR_HAS_BIAS = 1u << 3,
    DP_ATTR_CEIL_MODE = 1u << 4,
    DP_ATTR_COUNT_PAD = 1u << 5,
    DP_ATTR_BN = 1u << 6,
    DP_ATTR_P = 1u << 7,
    DP_ATTR_AXIS = 1u << 8,
    DP_ATTR_BOUNDS = 1u << 9,
    DP_ATTR_TO = 1u << 10,
    DP_ATTR_AB = 1u << 11,
    DP_ATTR_RANGE = 1u << 12,
    DP_ATTR_BLOCK = 1u << 13,
};

/*
 * How an op's output channels relate to its inputs' (purification's
 * channel spaces, worker/compress/purify.c). A channel can only be removed
 * where every op between its producer and its readers is known to carry it
 * through, so an op purification has not been taught is OPAQUE: its
 * channels and its inputs' stay.
 */
enum dp_op_chan {
    DP_OP_CHAN_OPAQUE = 0, /* unknown to purification: pins its inputs' and output's channels */
    DP_OP_CHAN_KEEPS,      /* output channel c is computed from input channel c only */
    DP_OP_CHAN_STARTS,     /* output channels are new: every one reads every input channel
                            * through params[0], laid out (out, in, ...) like conv2d/linear */
    DP_OP_CHAN_JOINS,      /* elementwise over operands: their channel spaces become one */
    DP_OP_CHAN_ROUTES,     /* output channel c is one channel of one input, moved unchanged
                            * (channel slice, concat and shuffle): dp_layer_route says which */
};

struct dp_model;

/*
 * Shape inference of layer `layer` of m, whose inputs are already
 * inferred: checks the attributes against the input shapes, sets the
 * layer's out_c/out_h/out_w and declares its parameters in order (weight
 * first) through dp_model__param_add. Returns DP_OK or an error with ei
 * naming the layer.
 */
typedef enum dp_err dp_op_infer_fn(struct dp_model *m, int layer, struct dp_errinfo *ei);

/* Sets the parameters of layer `layer` that must not start at zero (m->data allocated). */
typedef void dp_op_init_fn(struct dp_model *m, int layer);

struct dp_op_info {
    const char *name;      /* graph JSON and checkpoint name: "conv2d", "linear", ... */
    int n_inputs;          /* exactly this many, 1..DP_MAX_INPUTS */
    unsigned attrs;        /* DP_ATTR_* groups of struct dp_op_attrs the op reads */
    dp_op_infer_fn *infer; /* never NULL */
    dp_op_init_fn *init;   /* NULL: every parameter starts at zero */
    enum dp_op_chan chan;  /* grouped conv2d, mul, slice, concat refine it: dp_layer_chan */
    int keeps_zeros;       /* an all-zero input channel gives an all-zero output channel */
    int compressible;      /* params[0] is a dense (out, in, ...) weight the compression
                            * engine prunes and quantizes, params[1] its bias when has_bias */
};

/* The op's row; NULL for a value outside the enum. Any thread. */
const struct dp_op_info *dp_op_info(enum dp_op op);

/* Returns "conv2d", "linear", ... ; NULL for an out-of-range op. */
const char *dp_op_name(enum dp_op op);

/* Looks up an op by its name; DP_EFORMAT when unknown. */
enum dp_err dp_op_from_name(const char *name, enum dp_op *out);

/*
 * The channel behaviour of layer `layer` of an inferred model: the row's
 * chan, except that a depthwise conv2d (groups == in channels == out
 * channels) KEEPS its input's channels instead of starting new ones, a mul
 * that broadcasts along channels is OPAQUE, a slice along H or W KEEPS
 * channels and a concat along H or W JOINS its operands' (channel c of
 * the output is channel c of both).
 */
enum dp_op_chan dp_layer_chan(const struct dp_model *m, int layer);

/*
 * Channel routing of a layer whose dp_layer_chan is ROUTES (anything else:
 * -1). Returns the channel of input *input (an index into the layer's
 * inputs) that output channel c is:
 *   slice along C:  input channel start + c (the others are not read);
 *   concat along C: the first input's channels, then the second's;
 *   shuffle:        output j * groups + i is input i * (C / groups) + j.
 */
int dp_layer_route(const struct dp_model *m, int layer, int c, int *input);

/*
 * Purification's rewrite of a ROUTES layer. keep[k][c] says whether
 * channel c of the layer's input k stays (an output channel stays with
 * its source). Widens keep to the nearest set the op can still express and
 * returns the number of channels it added: a shuffle keeps position j of
 * every group or of none, since the kept channels must again form a
 * (groups, C' / groups) grid; a slice or a concat takes any set. With a
 * non-NULL a (the layer's attributes, copied), also rewrites them for the
 * kept channels only: a slice's [start, end) counts only kept channels; a
 * shuffle keeps its groups. The caller keeps at least one output channel.
 */
int dp_layer_reroute(const struct dp_model *m, int layer, unsigned char *const *keep,
                     struct dp_op_attrs *a);

#endif
