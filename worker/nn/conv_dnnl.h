/*
 * Convolution through oneDNN's primitives: the fast path for training.
 *
 *   struct nn_dnnl *ctx;                          one per executor
 *   nn_dnnl_new(&ctx, &ei);
 *   struct nn_conv_dnnl *c;                       one per layer and batch size
 *   nn_conv_dnnl_new(ctx, &dims, &c, &ei);
 *   nn_conv_dnnl_forward(c, out, inp, weight, bias);
 *   nn_conv_dnnl_backward(c, dinp, dweight, dbias, dout, weight);
 *
 * Tensors stay NCHW / OIHW in the engine; each call reorders them into the
 * blocked layouts oneDNN's JIT kernels want and back, as PyTorch does around
 * the same kernels. The blocked copy of the input made by the forward is
 * kept for the weight gradient, so backward must follow the forward of the
 * same batch (the executor guarantees it). Gradients are accumulated into
 * dinp, dweight and dbias (a sum post-op on the reorder back), matching the
 * contract of conv2d.h, whose im2col+BLAS kernels stay the reference and
 * the fallback for shapes oneDNN declines.
 *
 * oneDNN runs on the same OpenMP team as the rest of the engine; with a
 * fixed thread count its results are reproducible.
 */
#ifndef DP_WORKER_NN_CONV_DNNL_H
#define DP_WORKER_NN_CONV_DNNL_H

#include "common/err.h"
#include "worker/nn/conv2d.h"

struct nn_dnnl;
struct nn_conv_dnnl;

/* Creates the CPU engine and stream. DP_EUNSUPPORTED when oneDNN cannot. */
enum dp_err nn_dnnl_new(struct nn_dnnl **out, struct dp_errinfo *ei);
void nn_dnnl_free(struct nn_dnnl *ctx);

/*
 * Builds the primitives for one convolution of batch d->B (d->threads is
 * ignored: oneDNN uses the OpenMP team). ctx is borrowed and must outlive
 * the result. DP_EUNSUPPORTED (with oneDNN's status in ei) when a primitive
 * cannot be created; the caller then uses the conv2d.h kernels.
 */
enum dp_err nn_conv_dnnl_new(struct nn_dnnl *ctx, const struct nn_conv2d_dims *d, int has_bias,
                             struct nn_conv_dnnl **out, struct dp_errinfo *ei);
void nn_conv_dnnl_free(struct nn_conv_dnnl *c);

/* The batch size the primitives were built for. */
int nn_conv_dnnl_batch(const struct nn_conv_dnnl *c);

/* out (B, OC, OH, OW) = conv(inp, weight) + bias; bias NULL when the layer has none. */
void nn_conv_dnnl_forward(struct nn_conv_dnnl *c, float *out, const float *inp, const float *weight,
                          const float *bias);

/* Accumulates the gradients of the last forward; any of dinp, dweight and
 * dbias may be NULL to skip it. */
void nn_conv_dnnl_backward(struct nn_conv_dnnl *c, float *dinp, float *dweight, float *dbias,
                           const float *dout, const float *weight);

#endif
