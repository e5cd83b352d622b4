/*
 * Block-circulant fully connected layer (op circ_linear):
 * out = inp · Wᵀ + bias with W (n_out, n_in) block-circulant in k x k
 * blocks, stored as w (p, q, k) (first-column convention, circ.h).
 *
 *   inp (B, n_in)   w (p, q, k)   bias (n_out) or NULL   out (B, n_out)
 *
 * The op is a circ_op made for (n_out, n_in, k) with at least B rows
 * (circ_op_new). Forward loads w's spectra into the op; backward uses
 * them, so it must follow the forward of the same weight (as in a
 * training step). Backward accumulates into dinp, dw and dbias (any may
 * be NULL). No allocation.
 */
#ifndef DP_WORKER_CIRCULANT_CIRC_LINEAR_H
#define DP_WORKER_CIRCULANT_CIRC_LINEAR_H

#include "worker/circulant/circ.h"

void circ_linear_forward(struct circ_op *op, float *out, const float *inp, const float *w,
                         const float *bias, int B);
void circ_linear_backward(struct circ_op *op, float *dinp, float *dw, float *dbias,
                          const float *dout, const float *inp, int B);

#endif
