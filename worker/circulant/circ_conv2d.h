/*
 * Block-circulant 2-D convolution (op circ_conv2d): a conv2d, groups 1,
 * whose (OC, C) channel matrix at each kernel tap is block-circulant in
 * k x k blocks (first-column convention, circ.h).
 *
 *   inp (B, C, H, W)   w (kh*kw, p, q, k), tap t = u*kw + v, p = ceil(OC/k),
 *   q = ceil(C/k)      bias (OC) or NULL   out (B, OC, OH, OW)
 *
 * so that out[b][o][oh][ow] = bias[o] + sum over taps (u, v) inside the
 * input of W_t[o][c] * inp[b][c][oh*sh - pt + u*dh][ow*sw - pl + v*dw].
 * d->groups must be 1; d->threads is not used (the OpenMP team is).
 *
 * circ_conv2d_op_new makes the circ_op for batches of up to d->B. Forward
 * loads w's spectra into the op; backward uses them, so it must follow
 * the forward of the same weight. Backward accumulates into dinp, dw and
 * dbias (any may be NULL). Forward and backward do not allocate.
 */
#ifndef DP_WORKER_CIRCULANT_CIRC_CONV2D_H
#define DP_WORKER_CIRCULANT_CIRC_CONV2D_H

#include "common/err.h"
#include "worker/circulant/circ.h"
#include "worker/nn/conv2d.h"

enum dp_err circ_conv2d_op_new(const struct nn_conv2d_dims *d, int k, struct circ_op **op,
                               struct dp_errinfo *ei);

void circ_conv2d_forward(struct circ_op *op, float *out, const float *inp, const float *w,
                         const float *bias, const struct nn_conv2d_dims *d);
void circ_conv2d_backward(struct circ_op *op, float *dinp, float *dw, float *dbias,
                          const float *dout, const float *inp, const struct nn_conv2d_dims *d);

#endif
