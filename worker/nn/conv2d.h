/*
 * 2-D convolution, NCHW, with stride, asymmetric padding, dilation and
 * groups (depthwise when groups == C == OC/multiplier).
 *
 *   inp    (B, C, H, W)
 *   weight (OC, C/groups, kh, kw)
 *   bias   (OC) or NULL
 *   out    (B, OC, OH, OW)
 *
 * The fast path lowers the whole batch to one matrix per group (im2col into
 * `scratch`, laid out (C/groups*kh*kw, B*OH*OW)) and multiplies with BLAS;
 * depthwise convolutions use a direct loop instead, since their GEMMs would
 * be degenerate. The *_ref twins are naive loops used by tests.
 *
 * Neither function allocates; `scratch` must hold nn_conv2d_scratch_floats(d)
 * floats and may be shared between layers (it holds nothing between calls).
 * Backward accumulates into dinp, dweight and dbias (any may be NULL to skip).
 */
#ifndef DP_WORKER_NN_CONV2D_H
#define DP_WORKER_NN_CONV2D_H

#include <stddef.h>

struct nn_conv2d_dims {
    int B, C, H, W;
    int OC, OH, OW;
    int kh, kw;
    int sh, sw;
    int pt, pl; /* top and left padding; bottom/right follow from OH and OW */
    int dh, dw;
    int groups;
};

size_t nn_conv2d_scratch_floats(const struct nn_conv2d_dims *d);

void nn_conv2d_forward(float *out, float *scratch, const float *inp, const float *weight,
                       const float *bias, const struct nn_conv2d_dims *d);
void nn_conv2d_backward(float *dinp, float *dweight, float *dbias, float *scratch,
                        const float *dout, const float *inp, const float *weight,
                        const struct nn_conv2d_dims *d);

void nn_conv2d_forward_ref(float *out, const float *inp, const float *weight, const float *bias,
                           const struct nn_conv2d_dims *d);
void nn_conv2d_backward_ref(float *dinp, float *dweight, float *dbias, const float *dout,
                            const float *inp, const float *weight,
                            const struct nn_conv2d_dims *d);

#endif
