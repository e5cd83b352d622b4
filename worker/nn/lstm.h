/*
 * LSTM layer (common/op.h DP_OP_LSTM): one layer, one direction,
 * batch-first, zero initial hidden and cell state, PyTorch's gate order
 * i, f, g, o:
 *
 *   pre_t = W_ih x_t + b_ih + W_hh h_{t-1} + b_hh             (4H)
 *   i = σ(pre_i)  f = σ(pre_f)  g = tanh(pre_g)  o = σ(pre_o)
 *   c_t = f * c_{t-1} + i * g      h_t = o * tanh(c_t)
 *
 *   x (B, T, F)   out (B, T, H): h_t for every step
 *   W_ih: 4H x F, W_hh: 4H x H (dense or block-circulant, rnn_mat.h)
 *   b_ih, b_hh (4H)
 *
 * The input projection of all B*T steps is one product before the
 * recurrence; each step then adds W_hh h_{t-1} for the B sequences.
 * Forward keeps the activated gates and cell states in `cache`, which
 * backward (through time) also uses as workspace: nn_lstm_cache_floats.
 * Backward accumulates into dx, dw_ih, dw_hh, db_ih, db_hh (dx may be
 * NULL) and needs the forward's out and cache untouched and the weights
 * unchanged (forward loads the FFT path's weight spectra, rnn_mat.h, and
 * backward reuses them). No allocation.
 */
#ifndef DP_WORKER_NN_LSTM_H
#define DP_WORKER_NN_LSTM_H

#include <stddef.h>

#include "worker/nn/rnn_mat.h"

/* Floats of cache for n_units = B * T * H: 11 per unit (SIZE_MAX on
 * overflow). */
size_t nn_lstm_cache_floats(size_t n_units);

void nn_lstm_forward(float *out, float *cache, const float *x, const struct nn_rnn_mat *w_ih,
                     const struct nn_rnn_mat *w_hh, const float *b_ih, const float *b_hh,
                     const struct nn_rnn_dims *d);

void nn_lstm_backward(float *dx, float *dw_ih, float *dw_hh, float *db_ih, float *db_hh,
                      float *cache, const float *dout, const float *x, const float *out,
                      const struct nn_rnn_mat *w_ih, const struct nn_rnn_mat *w_hh,
                      const struct nn_rnn_dims *d);

/* Naive loops in double over dense w_ih (4H, F) and w_hh (4H, H), for
 * tests; cell (B, T, H) receives c_t. */
void nn_lstm_forward_ref(float *out, float *cell, const float *x, const float *w_ih,
                         const float *w_hh, const float *b_ih, const float *b_hh,
                         const struct nn_rnn_dims *d);

#endif
