/*
 * GRU layer (common/op.h DP_OP_GRU): one layer, one direction,
 * batch-first, zero initial state, PyTorch's gate order r, z, n and its
 * placement of the reset gate (ONNX linear_before_reset = 1):
 *
 *   xr, xz, xn = W_ih x_t + b_ih          hr, hz, hn = W_hh h_{t-1} + b_hh
 *   r = σ(xr + hr)   z = σ(xz + hz)   n = tanh(xn + r * hn)
 *   h_t = (1 - z) * n + z * h_{t-1}
 *
 *   x (B, T, F)   out (B, T, H): h_t for every step
 *   W_ih: 3H x F, W_hh: 3H x H (dense or block-circulant, rnn_mat.h)
 *   b_ih, b_hh (3H)
 *
 * As lstm.h: one input projection for all steps, one recurrent product per
 * step, `cache` (nn_gru_cache_floats) kept from forward to backward and
 * used by backward as workspace; backward accumulates, dx may be NULL,
 * and needs the weights unchanged since forward (which loads the FFT
 * path's weight spectra).
 */
#ifndef DP_WORKER_NN_GRU_H
#define DP_WORKER_NN_GRU_H

#include <stddef.h>

#include "worker/nn/rnn_mat.h"

/* Floats of cache for n_units = B * T * H: 13 per unit (SIZE_MAX on
 * overflow). */
size_t nn_gru_cache_floats(size_t n_units);

void nn_gru_forward(float *out, float *cache, const float *x, const struct nn_rnn_mat *w_ih,
                    const struct nn_rnn_mat *w_hh, const float *b_ih, const float *b_hh,
                    const struct nn_rnn_dims *d);

void nn_gru_backward(float *dx, float *dw_ih, float *dw_hh, float *db_ih, float *db_hh,
                     float *cache, const float *dout, const float *x, const float *out,
                     const struct nn_rnn_mat *w_ih, const struct nn_rnn_mat *w_hh,
                     const struct nn_rnn_dims *d);

/* Naive loops in double over dense w_ih (3H, F) and w_hh (3H, H), for tests. */
void nn_gru_forward_ref(float *out, const float *x, const float *w_ih, const float *w_hh,
                        const float *b_ih, const float *b_hh, const struct nn_rnn_dims *d);

#endif
