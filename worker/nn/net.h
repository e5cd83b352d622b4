/*
 * The executor: runs a finalized model IR forward and backward on batches.
 *
 *   struct nn_net *net;
 *   err = nn_net_new(model, 64, &net, &ei);       sizes every buffer once
 *   nn_net_zero_grad(net);
 *   const float *logits = nn_net_forward(net, x, n, 1);     x: (n, C, H, W)
 *   float loss = nn_net_loss(net, y, n, &correct);
 *   nn_net_backward(net, y, n);                  gradients in net->grad
 *   ... optimizer step on model->data with net->grad ...
 *   nn_net_free(net);
 *
 * DESIGN: everything the engine touches per step is allocated in
 * nn_net_new as a few flat blocks: one gradient block laid out exactly like
 * the model's parameter block (so optimizers and the ADMM engine index both
 * with the same offsets), one block of activations and one of activation
 * gradients (one slice per layer), per-layer caches (BatchNorm statistics,
 * max-pool arg-max, dropout masks), one convolution scratch shared by all
 * layers, and oneDNN primitives for every convolution at the full batch
 * size. Forward and backward never allocate, except to build primitives the
 * first time a smaller batch (the last of an epoch, evaluation) comes by. Each op is dispatched
 * through the engine's op table (struct nn_layer_ops in net.c: forward,
 * backward, blocked-layout behaviour, per-layer cache, aliasing), indexed
 * like common/op.h's; Flatten aliases its input's memory and costs nothing.
 *
 * The net borrows the model: parameters are read from and written to
 * model->data directly. One thread drives a net; the kernels use OpenMP
 * with the team size in force when nn_net_new ran (omp_get_max_threads()
 * then): forward and backward set it for their duration and restore the
 * caller's afterwards, because the scratch is sized for it and results
 * depend on it.
 */
#ifndef DP_WORKER_NN_NET_H
#define DP_WORKER_NN_NET_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "common/model.h"
#include "worker/nn/conv_dnnl.h"

struct nn_net_layer;
struct nn_dnnl;

struct nn_net {
    struct dp_model *m; /* borrowed */
    int max_batch;
    int n_classes;  /* per-sample size of the last layer's output */
    int n_threads;  /* OpenMP team size, read once by nn_net_new; every call runs with it */
    float *grad;    /* n_floats, same layout as m->data */
    float *input;   /* (max_batch, in_c, in_h, in_w) */
    float *probs;   /* (max_batch, n_classes) softmax cache of the loss */
    float *scratch; /* shared convolution scratch */
    struct nn_net_layer *layers;
    uint8_t *zeroed;  /* per layer, during backward: activation gradient zeroed yet */
    void *act_block;  /* one allocation for activations, gradients and caches */
    size_t act_bytes; /* its size, reported in memory figures */
    uint64_t dropout_seed;
    uint64_t step;        /* forward passes in training mode; varies dropout masks */
    int training;         /* mode of the last forward */
    struct nn_dnnl *dnnl; /* oneDNN engine for convolutions, NULL when unavailable */
    double *prof;         /* NULL, or per layer: forward then backward seconds (2 * n_layers) */
};

/* Starts accumulating per-layer wall time into net->prof (zeroed). Costs two
 * clock reads per layer and direction. DP_ENOMEM when it cannot allocate. */
enum dp_err nn_net_profile_enable(struct nn_net *net);

/*
 * Builds an executor for `m` (finalized; borrowed and must outlive the net)
 * and batches of up to max_batch samples. The last layer's output is the
 * logits. Returns DP_ENOMEM / DP_EINVAL with a message in ei.
 */
enum dp_err nn_net_new(struct dp_model *m, int max_batch, struct nn_net **out,
                       struct dp_errinfo *ei);

/* As nn_net_new; use_dnnl = 0 runs convolutions on the im2col+BLAS kernels
 * of conv2d.h instead of oneDNN (for comparisons and as a fallback). */
enum dp_err nn_net_new_ex(struct dp_model *m, int max_batch, int use_dnnl, struct nn_net **out,
                          struct dp_errinfo *ei);

/* Whether the engine has forward and backward functions for op (its row in
 * net.c's op table); nn_net_new refuses a model using an op without. */
int nn_net_op_supported(enum dp_op op);

/* Releases the net (not the model). NULL is a no-op. */
void nn_net_free(struct nn_net *net);

/* Zeroes net->grad. */
void nn_net_zero_grad(struct nn_net *net);

/*
 * Runs the forward pass on x (n, C, H, W), n <= max_batch, in training mode
 * (batch statistics, dropout, running statistics updated) when train != 0,
 * else in eval mode. Returns the logits (n, n_classes), owned by the net and
 * valid until the next forward, or NULL when primitives for a new batch
 * size could not be built (out of memory; logged).
 */
const float *nn_net_forward(struct nn_net *net, const float *x, int n, int train);

/* Softmax cross-entropy of the last forward against labels; *correct gets
 * the number of arg-max hits (may be NULL). */
float nn_net_loss(struct nn_net *net, const int32_t *labels, int n, int *correct);

/* Backward pass of the last training forward and loss; accumulates into
 * net->grad. */
void nn_net_backward(struct nn_net *net, const int32_t *labels, int n);

/* The memory order the executor chose for layer i's output (see
 * net_plan_layouts in net.c). */
enum nn_layout nn_net_layout(const struct nn_net *net, int layer);

/* Bytes of memory the net allocated (activations, gradients, caches, scratch). */
size_t nn_net_bytes(const struct nn_net *net);

#endif
