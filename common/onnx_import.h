/*
 * ONNX import: an ONNX ModelProto (opsets 9 to 17) into the model IR.
 *
 *   struct dp_model *m;
 *   struct dp_onnx_import_info info;
 *   err = dp_onnx_import_file("model.onnx", &m, &info, &ei);
 *
 * Supported operators: Conv (groups, pads, strides, dilations, auto_pad;
 * 1-D and 2-D), Gemm (transB, alpha, beta, vector or scalar bias),
 * MatMul with a constant right side (a Linear; an Add of a constant vector
 * right after it becomes the bias), Relu, Clip (ReLU6, ReLU or general),
 * MaxPool, AveragePool, GlobalAveragePool, BatchNormalization (inference
 * form), Add of two activations of one shape, Flatten(axis 1), Reshape to
 * a constant shape that keeps the batch axis (a copy into the new per-sample
 * shape, or nothing when only the rank changes), Dropout, Identity, Softmax,
 * Constant, and Concat on a non-batch axis; for the mobile networks
 * (issue 17): Sigmoid, HardSigmoid, HardSwish (Mul(x, Sigmoid(x)) becomes
 * one SiLU layer and Mul(x, HardSigmoid(x; 1/6, 1/2)) one HardSwish),
 * Mul, Sub, Div and Add (when not a bias) of two activations of one rank
 * broadcasting along per-sample axes of size 1 (squeeze-excitation's
 * (N, C, 1, 1) scale) or
 * of an activation and a constant that is the same for every sample (a
 * const layer), ReduceMean over all spatial axes (a global average pool,
 * keepdims or not) or over other per-sample axes contiguous in (C, H, W)
 * (a mean layer, plus a reshape when keepdims = 0 moves axes), Slice (step
 * 1, not on the batch axis), Split (one slice layer per output), and the
 * channel shuffle Reshape (N, g, C/g, H, W) -> Transpose (0, 2, 1, 3, 4)
 * -> Reshape (N, C, H, W) as one shuffle layer (Transpose and rank 5 exist
 * only there); for recurrent networks (issue 15, onnx_import_rnn.c): LSTM
 * and GRU (one forward direction, default activations, GRU with
 * linear_before_reset = 1, zero or absent initial states), and the
 * Transpose, Squeeze and Gather of sequences around them that torch.onnx
 * writes. Before a node is translated, a constant-folding pass
 * (onnx_fold.c) evaluates it when its inputs are all constants: Shape (of
 * an activation too, its batch entry symbolic when the graph's is),
 * Gather, Unsqueeze, Squeeze, Concat, Cast, Add, Sub, Mul, Div, Reshape,
 * Slice and ConstantOfShape, so computed reshape targets and split points become
 * constants. Initializers become trainable
 * parameters (BatchNorm statistics become buffers); shapes are inferred
 * and checked by dp_model_finalize. Everything else is DP_EUNSUPPORTED
 * with a message that lists the unsupported operators with their node
 * names (each one is also logged at DP_LOG_ERROR, so none is hidden by the
 * message length).
 *
 * The model has one input: the one graph input that is not an
 * initializer, float, of rank 1 to 4 with the batch axis first (its size
 * may be symbolic; the other sizes must be fixed). Activations keep the
 * batch axis first: a rank-1 value (N) is the IR shape (1, 1, 1), a
 * rank-2 value (N, F) is the IR shape (F, 1, 1), a
 * rank-3 value (N, C, L) is (C, 1, L), a rank-4 value is (C, H, W); a
 * sequence (N, T, F) of an LSTM or GRU is (1, T, F) (see info). When
 * the graph output is not a vector per sample, a Flatten is appended so
 * the engine's last layer is a vector; info says the output's ONNX shape.
 */
#ifndef DP_COMMON_ONNX_IMPORT_H
#define DP_COMMON_ONNX_IMPORT_H

#include <stdint.h>

#include "common/err.h"
#include "common/model.h"

struct Onnx__ModelProto;

/* Opset range this importer implements (default domain). */
#define DP_ONNX_OPSET_MIN 1
#define DP_ONNX_OPSET_MAX 17

struct dp_onnx_import_info {
    int64_t opset;           /* the default domain's opset version */
    int64_t batch;           /* the input's batch size, 0 when symbolic */
    int out_rank;            /* rank of the graph output (2 to 4, batch included) */
    int out_c, out_h, out_w; /* its per-sample IR shape */
    /* Sequences (LSTM, GRU): in_seq_first when the graph input is
     * time-major (T, N, F): the model reads (1, T, F) per sample, so the
     * caller transposes the data to (N, T, F). out_seq_t = T > 0 when the
     * graph output is time-major ((T, N, H) or (T, 1, N, H)): the engine's
     * output is its batch-first transpose (N, T, H). */
    int in_seq_first, out_seq_t;
};

/*
 * Builds a finalized model from mp (borrowed; read only).
 * out:  receives a new model to release with dp_model_free; NULL on failure.
 * info: may be NULL.
 * ei:   may be NULL; messages name the node (and its operator) at fault.
 * Returns DP_OK; DP_EUNSUPPORTED (operators or attributes outside the
 * list, a second graph input, external data); DP_EFORMAT (a malformed
 * graph: missing inputs, bad attributes, wrong tensor sizes); DP_ESHAPE;
 * DP_ETOOBIG; DP_ENOMEM. Any thread.
 */
enum dp_err dp_onnx_import(const struct Onnx__ModelProto *mp, struct dp_model **out,
                           struct dp_onnx_import_info *info, struct dp_errinfo *ei);

/* Reads path with dp_onnx_model_read and imports it; messages name the file. */
enum dp_err dp_onnx_import_file(const char *path, struct dp_model **out,
                                struct dp_onnx_import_info *info, struct dp_errinfo *ei);

#endif
