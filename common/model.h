/*
 * The model IR: a graph of named layers with named parameter tensors.
 *
 * Everything that handles a network speaks this IR: the built-in
 * architectures, the ONNX importer and exporter, the training engine, the
 * ADMM engine and the code generator. It is deliberately plain data. This
 * example is compiled and run by tests/unit/common/test_model_example.c,
 * which also checks that its copy there and this one stay identical:
 *
 *   struct dp_errinfo ei = {0};
 *   struct dp_model *m = dp_model_new(1, 28, 28); // input C, H, W; NULL when out of memory
 *   int x = dp_model_add_conv2d(m, "conv1", DP_MODEL_INPUT, 20, 5, 1, 0, 1, 1, &ei);
 *   if (x >= 0) // else x is an enum dp_err (DP_ENOMEM is -1, which is DP_MODEL_INPUT)
 *       x = dp_model_add_unary(m, "relu1", DP_OP_RELU, x, &ei);
 *   if (x >= 0)
 *       x = dp_model_add_unary(m, "flatten", DP_OP_FLATTEN, x, &ei);
 *   if (x >= 0)
 *       x = dp_model_add_linear(m, "fc", x, 10, &ei);
 *   enum dp_err err = x < 0 ? (enum dp_err)x : dp_model_finalize(m, &ei); // ei says why
 *   struct dp_param *w = dp_model_param_find(m, "conv1.weight");          // (20, 1, 5, 5)
 *   float *w0 = dp_param_data(m, w); // zeros until initialised or loaded
 *
 * Layers are stored in topological order (a layer's inputs are earlier
 * layers or the model input), which is what the engine executes. All
 * parameters and buffers (BatchNorm running statistics) live in one flat
 * float block, `data`; each struct dp_param is a named view (offset, shape)
 * into it, so optimizers, ADMM projections and masks are flat loops.
 *
 * Each layer carries compression metadata (struct dp_layer_compress) that
 * the ADMM engine fills and the exporter and code generator read.
 *
 * Ownership: the model owns its layers, parameters and data block;
 * dp_model_free releases everything. Not thread-safe for mutation.
 */
#ifndef DP_COMMON_MODEL_H
#define DP_COMMON_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "common/op.h"

#define DP_MODEL_INPUT      (-1) /* pseudo layer index for the model's input */
#define DP_NAME_MAX         64
#define DP_MAX_DIMS         4
#define DP_MAX_INPUTS       2
#define DP_MODEL_LAYERS_MAX 4096

/* Per-layer compression metadata, filled by the compression engine. */
struct dp_layer_compress {
    char scheme[32];   /* "" when uncompressed, else a constraint name ("irregular", "pattern") */
    float target_rate; /* requested compression rate (dense / kept), 0 when unset */
    int bits;          /* weight bits after quantization, 0 = float32 */
    float scale;       /* quantization scale, 0 when not quantized */
};

/* A named parameter or buffer: a view into dp_model.data. */
struct dp_param {
    char name[DP_NAME_MAX * 2]; /* "<layer>.<suffix>", e.g. "conv1.weight" */
    int layer;                  /* owning layer index */
    int trainable;              /* 0 for buffers such as BN running statistics */
    int ndim;
    int64_t shape[DP_MAX_DIMS];
    size_t offset; /* in floats, into data */
    size_t numel;
};

struct dp_layer {
    char name[DP_NAME_MAX];
    enum dp_op op;
    int n_inputs;
    int inputs[DP_MAX_INPUTS]; /* earlier layer indices or DP_MODEL_INPUT */
    struct dp_op_attrs a;
    int first_param, n_params; /* range in dp_model.params */
    int out_c, out_h, out_w;   /* per-sample output shape, set by finalize */
    struct dp_layer_compress comp;
};

/*
 * The input normalisation the model was trained with: the engine feeds it
 * (x - mean[c]) / std[c], where x is a pixel scaled to [0, 1] (u8 data) or
 * the raw value (float data). It travels with the model (graph JSON,
 * checkpoints, ONNX metadata and leading Sub/Div nodes) so that whoever runs
 * it knows, and a model that carries one is never normalised twice: the
 * data path uses these numbers instead of computing new ones.
 */
#define DP_MODEL_NORM_MAX_C 16
struct dp_model_norm {
    int n_c;                         /* 0: none recorded; else the model's in_c */
    float mean[DP_MODEL_NORM_MAX_C]; /* (n_c) finite */
    float std[DP_MODEL_NORM_MAX_C];  /* (n_c) finite, > 0 */
};

struct dp_model {
    int in_c, in_h, in_w; /* per-sample input shape */
    struct dp_model_norm norm;
    int n_layers, cap_layers;
    struct dp_layer *layers;
    int n_params, cap_params;
    struct dp_param *params;
    size_t n_floats; /* total size of data */
    float *data;     /* all parameters and buffers, 64-byte aligned; NULL until finalize */
    int finalized;
};

/* Returns a new empty model with the given per-sample input shape, or NULL on OOM. */
struct dp_model *dp_model_new(int in_c, int in_h, int in_w);

/* Releases the model and everything it owns. NULL is a no-op. */
void dp_model_free(struct dp_model *m);

/*
 * Appends a layer. `inputs` lists n_inputs earlier layer indices (or
 * DP_MODEL_INPUT); `attrs` may be NULL for ops without attributes. The
 * parameters the op needs (weight, bias, BN scale/shift/running stats) are
 * declared by dp_model_finalize from the attributes and the inferred input
 * shape, so builders never spell shapes twice.
 * Returns the new layer's index (>= 0) or a negative enum dp_err; ei gets
 * the reason (bad input index, duplicate name, name too long).
 */
int dp_model_add_layer(struct dp_model *m, const char *name, enum dp_op op, const int *inputs,
                       int n_inputs, const struct dp_op_attrs *attrs, struct dp_errinfo *ei);

/* Convenience builders for the common ops; same return convention. */
int dp_model_add_conv2d(struct dp_model *m, const char *name, int input, int out_ch, int k,
                        int stride, int pad, int groups, int has_bias, struct dp_errinfo *ei);
int dp_model_add_linear(struct dp_model *m, const char *name, int input, int out_features,
                        struct dp_errinfo *ei);
int dp_model_add_pool(struct dp_model *m, const char *name, enum dp_op op, int input, int k,
                      int stride, int pad, struct dp_errinfo *ei);
int dp_model_add_bn2d(struct dp_model *m, const char *name, int input, struct dp_errinfo *ei);
int dp_model_add_unary(struct dp_model *m, const char *name, enum dp_op op, int input,
                       struct dp_errinfo *ei);
int dp_model_add_add(struct dp_model *m, const char *name, int a, int b, struct dp_errinfo *ei);

/*
 * The first half of finalize: infers shapes and declares parameters
 * (n_params, n_floats, offsets) without allocating, so a loader can compare
 * the model's size with the data it has before committing memory. On
 * failure no parameters stay declared. Idempotent until finalize.
 */
enum dp_err dp_model_infer(struct dp_model *m, struct dp_errinfo *ei);

/*
 * Infers every layer's output shape, checks that shapes agree (channel
 * counts, Add operands, windows that fit), declares the parameters, and
 * allocates the zeroed parameter block (BN scale and running variance are
 * set to 1). After success the graph is frozen.
 */
enum dp_err dp_model_finalize(struct dp_model *m, struct dp_errinfo *ei);

/* Finds a parameter by full name; NULL when absent. */
struct dp_param *dp_model_param_find(const struct dp_model *m, const char *name);

/* Finds a layer index by name; -1 when absent. */
int dp_model_layer_find(const struct dp_model *m, const char *name);

/* Returns the start of a parameter's data. The model must be finalized. */
static inline float *dp_param_data(const struct dp_model *m, const struct dp_param *p)
{
    return m->data + p->offset;
}

/*
 * Records the input normalisation (struct dp_model_norm) of m: n_c values
 * of mean and std. n_c must equal m->in_c (at most DP_MODEL_NORM_MAX_C),
 * every mean finite and every std finite and > 0; DP_EINVAL otherwise,
 * with ei saying which value, and m unchanged. n_c == 0 clears it.
 */
enum dp_err dp_model_norm_set(struct dp_model *m, int n_c, const float *mean, const float *std,
                              struct dp_errinfo *ei);

/* Number of trainable floats (weights and biases, not buffers). */
size_t dp_model_n_trainable(const struct dp_model *m);

/* Per-sample output size (C*H*W) of layer i, or of the input for DP_MODEL_INPUT. */
size_t dp_model_out_size(const struct dp_model *m, int layer);

#endif
