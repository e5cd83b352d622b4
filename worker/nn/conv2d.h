/*
 * 2-D convolution, NCHW, with stride, asymmetric padding, dilation and
 * groups (depthwise when groups == C == OC/multiplier).
 *
 *   inp    (B, C, H, W)
 *   weight (OC, C/groups, kh, kw)
 *   bias   (OC) or NULL
 *   out    (B, OC, OH, OW)
 *
 * The fast path splits the batch over a team of up to d->threads OpenMP
 * threads; each lowers one image at a time (im2col into its slice of
 * `scratch`) and multiplies with single-threaded BLAS while the lowered
 * image is still in cache. Depthwise convolutions use a direct loop, since
 * their GEMMs would be degenerate. The *_ref twins are naive loops for tests.
 *
 * Neither function allocates; `scratch` must hold nn_conv2d_scratch_floats(d)
 * floats and may be shared between layers (it holds nothing between calls).
 * Backward accumulates into dinp, dweight and dbias (any may be NULL to skip);
 * the weight and bias gradients are reduced over threads in thread order, so
 * the result depends on d->threads (and on the team OpenMP actually grants,
 * which may be smaller) but not on scheduling. Callers pass the team size
 * the scratch was sized for, never a fresh omp_get_max_threads(), which
 * may have grown since.
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
    int threads; /* team size the scratch is sized for; 0 or 1 runs serially */
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
                            const float *inp, const float *weight, const struct nn_conv2d_dims *d);

#endif
