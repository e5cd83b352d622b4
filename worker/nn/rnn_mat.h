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
 * with k x k blocks stored (p, q, k), first-column convention, and the
 * products are the circulant reference ones of circ.h (brute force over
 * the expanded matrix: correct, O(rows * cols) per row of x).
 */
#ifndef DP_WORKER_NN_RNN_MAT_H
#define DP_WORKER_NN_RNN_MAT_H

#include "worker/circulant/circ.h"

/* A weight matrix as the products see it. Borrowed; no allocation. */
struct nn_rnn_mat {
    const float *w;     /* dense (rows, cols), or circulant (p, q, k) when d.k > 0 */
    struct circ_dims d; /* rows, cols; k = 0 for dense (then p and q are unused) */
};

/* Sizes of a recurrent layer: B sequences of T steps of F features, H hidden units. */
struct nn_rnn_dims {
    int B, T, F, H;
};

/* m for w: a rows x cols matrix, dense when k == 0, else circulant with blocks of k. */
void nn_rnn_mat_init(struct nn_rnn_mat *m, const float *w, int rows, int cols, int k);

/* y (+)= x · Wᵀ over n rows (accumulate = 0 overwrites y). */
void nn_rnn_mat_forward(const struct nn_rnn_mat *m, float *y, int ldy, const float *x, int ldx,
                        int n, int accumulate);

/* dx += dy · W and dw += dyᵀ · x (in W's stored form) over n rows; dx or
 * dw may be NULL. dx and x share the row stride ldx. */
void nn_rnn_mat_backward(const struct nn_rnn_mat *m, float *dx, float *dw, const float *dy, int ldy,
                         const float *x, int ldx, int n);

#endif
