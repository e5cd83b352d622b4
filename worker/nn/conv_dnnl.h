/*
 * Convolution through oneDNN's primitives: the fast path for training.
 *
 *   struct nn_dnnl *ctx;                          one per executor
 *   nn_dnnl_new(&ctx, &ei);
 *   struct nn_conv_dnnl *c;                       one per layer and batch size
 *   nn_conv_dnnl_new(ctx, &dims, bias, NN_LAYOUT_NCHW, NN_LAYOUT_NCHW, &c, &ei);
 *   nn_conv_dnnl_forward(c, out, inp, weight, bias);
 *   nn_conv_dnnl_backward(c, dinp, dweight, dbias, dout, weight);
 *
 * Weights stay OIHW. Activations are NCHW, or NCHW16C (channels in blocks of
 * 16, the layout oneDNN's JIT kernels use) where the executor keeps a chain
 * of layers in that layout; each call reorders whatever is not already in
 * the layout a primitive wants, and skips the reorders that are not needed. The blocked copy of the
 * input made by the forward is kept for the weight gradient, so backward must follow the forward of
 * the same batch (the executor guarantees it). Gradients are accumulated into dinp, dweight and
 * dbias (a sum post-op on the reorder back), matching the contract of conv2d.h, whose im2col+BLAS
 * kernels stay the reference and the fallback for shapes oneDNN declines.
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
 * ignored: oneDNN uses the OpenMP team), reading its input (and writing
 * its input gradient) in src_layout and writing its output (and reading its
 * output gradient) in dst_layout. ctx is borrowed and must outlive
 * the result. DP_EUNSUPPORTED (with oneDNN's status in ei) when a primitive
 * cannot be created; the caller then uses the conv2d.h kernels.
 */
/* Layouts of activation tensors. NN_LAYOUT_NCHW16C needs C % 16 == 0:
 * element (b, c, h, w) lives at ((b*C/16 + c/16)*H*W + h*W + w)*16 + c%16. */
enum nn_layout { NN_LAYOUT_NCHW = 0, NN_LAYOUT_NCHW16C = 1 };

enum dp_err nn_conv_dnnl_new(struct nn_dnnl *ctx, const struct nn_conv2d_dims *d, int has_bias,
                             enum nn_layout src_layout, enum nn_layout dst_layout,
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
