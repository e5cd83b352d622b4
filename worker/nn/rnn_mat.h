/*
 * The matrix products of the recurrent layers (lstm.h, gru.h), in one
 * place so that a dense and a block-circulant weight (common/op.h,
 * worker/circulant/circ.h) run the same layer code.
 *
 *   y (n, rows; row stride ldy) (+)= x (n, cols; stride ldx) · Wᵀ
 *   dx (n, cols; stride ldx) += dy (n, rows; stride ldy) · W
 *   dW += dL/dW, in W's stored form
 *
 * W is dense (rows, cols) when k == 0 (CBLAS sgemm), else block-circulant
 * with k x k blocks stored (p, q, k), first-column convention. A circulant
 * matrix with a circ_op (struct nn_rnn_fft, made once per layer) runs on
 * circ.h's FFT path; without one, on circ.h's brute-force reference
 * (correct, O(rows * cols) per row: tests and one-off use).
 *
 * The FFT path works on the weight's spectra: nn_rnn_mat_load transforms
 * W and must be called after W changes and before the products (the
 * layers do it at the start of every forward pass; backward reuses them).
 */
#ifndef DP_WORKER_NN_RNN_MAT_H
#define DP_WORKER_NN_RNN_MAT_H

#include "common/err.h"
#include "worker/circulant/circ.h"

/* A weight matrix as the products see it. Borrowed; no allocation. */
struct nn_rnn_mat {
    const float *w;     /* dense (rows, cols), or circulant (p, q, k) when d.k > 0 */
    struct circ_dims d; /* rows, cols; k = 0 for dense (then p and q are unused) */
    struct circ_op *op; /* circulant: the FFT path's plans, or NULL for the reference */
};

/* Sizes of a recurrent layer: B sequences of T steps of F features, H hidden units. */
struct nn_rnn_dims {
    int B, T, F, H;
};

/*
 * The FFT plans of a circulant recurrent layer: for W_ih, products of up
 * to B * T rows (the input projection of every step at once); for W_hh,
 * of up to B rows (one step). Made once per layer (net.c's state_new).
 */
struct nn_rnn_fft {
    struct circ_op *ih, *hh;
};

/* *out for a layer of d (d->B = the largest batch) with gates * H rows
 * per matrix and blocks of k >= 1. DP_EINVAL (sizes) or DP_ENOMEM with ei. */
enum dp_err nn_rnn_fft_new(const struct nn_rnn_dims *d, int gates, int k, struct nn_rnn_fft **out,
                           struct dp_errinfo *ei);

/* NULL is a no-op. */
void nn_rnn_fft_free(struct nn_rnn_fft *f);

/* m for w: a rows x cols matrix, dense when k == 0, else circulant with
 * blocks of k, on the FFT path when op is non-NULL (ignored when dense). */
void nn_rnn_mat_init(struct nn_rnn_mat *m, const float *w, int rows, int cols, int k,
                     struct circ_op *op);

/* FFT path: transforms the current w (after every change of w, before
 * the products); a no-op otherwise. */
void nn_rnn_mat_load(const struct nn_rnn_mat *m);

/* y (+)= x · Wᵀ over n rows (accumulate = 0 overwrites y). */
void nn_rnn_mat_forward(const struct nn_rnn_mat *m, float *y, int ldy, const float *x, int ldx,
                        int n, int accumulate);

/* dx += dy · W and dw += dyᵀ · x (in W's stored form) over n rows; dx or
 * dw may be NULL. dx and x share the row stride ldx. */
void nn_rnn_mat_backward(const struct nn_rnn_mat *m, float *dx, float *dw, const float *dy, int ldy,
                         const float *x, int ldx, int n);

#endif
