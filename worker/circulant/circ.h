/*
 * Block-circulant matrices: the arithmetic of the circulant layers
 * (issue 15; ../shared/research/admm-algorithms.md section 8).
 *
 * A rows x cols matrix W is cut into k x k blocks, p = ceil(rows/k) block
 * rows and q = ceil(cols/k) block columns (rows and columns past the
 * matrix are zero padding). Every block is circulant and stored as one
 * vector of k numbers, FIRST-COLUMN convention (common/op.h):
 *
 *   W[i*k + r][j*k + s] = w[(i*q + j)*k + (r - s) mod k]      w: (p, q, k)
 *
 * so block (i, j) applied to the slice x_j is IFFT(FFT(c_ij) * FFT(x_j)).
 * Products are row-major batches, like nn_linear: y (n, rows) = x (n, cols) · Wᵀ.
 *
 *   struct circ_dims d;
 *   circ_dims_init(&d, 300, 784, 16);                  p = 19, q = 49
 *   struct circ_op *op;
 *   err = circ_op_new(&d, 64, &op, &ei);               plans for up to 64 rows
 *   circ_op_load(op, w);                               weight spectra, once per pass
 *   circ_op_forward(op, y, 300, x, 784, n, 0);
 *   circ_op_backward(op, dx, dw, dy, 300, x, 784, n);
 *   circ_op_free(op);
 *
 * The *_ref functions are brute force over the expanded matrix: the
 * definition the tests hold the FFT path to. circ_project is the Z-step of
 * ADMM toward the block-circulant set and the hard projection.
 */
#ifndef DP_WORKER_CIRCULANT_CIRC_H
#define DP_WORKER_CIRCULANT_CIRC_H

#include <stddef.h>

#include "common/err.h"

struct circ_dims {
    int rows, cols; /* the matrix */
    int k;          /* block size, >= 1 */
    int p, q;       /* block rows ceil(rows/k) and block columns ceil(cols/k) */
};

/* Fills d for a rows x cols matrix in k x k blocks (all >= 1). */
void circ_dims_init(struct circ_dims *d, int rows, int cols, int k);

/* Stored values: p * q * k. */
size_t circ_dims_numel(const struct circ_dims *d);

/* dense (rows, cols) = the matrix that w (p, q, k) stands for. */
void circ_expand(float *dense, const float *w, const struct circ_dims *d);

/*
 * The closest block-circulant matrix to dense (rows, cols) in Frobenius
 * norm, over the entries inside the matrix (padding is free): every
 * wrapped diagonal t of every block averages the block's entries on it,
 *   w[(i*q + j)*k + t] = mean over r of B_ij[r][(r - t) mod k],
 * 0 for a diagonal with no entry inside the matrix.
 */
void circ_project(float *w, const float *dense, const struct circ_dims *d);

/* y (n, rows; row stride ldy) (+)= x (n, cols; stride ldx) · Wᵀ, brute force. */
void circ_forward_ref(float *y, int ldy, const float *x, int ldx, const float *w,
                      const struct circ_dims *d, int n, int accumulate);

/* Accumulates dx (n, cols) += dy · W and dw (p, q, k) += dL/dw of the
 * forward above, brute force; dx or dw may be NULL; dx and x share the
 * row stride ldx. */
void circ_backward_ref(float *dx, float *dw, const float *dy, int ldy, const float *x, int ldx,
                       const float *w, const struct circ_dims *d, int n);

/* ---- The FFT path (circ_fft.c, FFTW single precision) -------------------- */

struct circ_op;

/* Plans (made once, reused) and buffers for products of up to max_n rows
 * of x. FFTW planning is serialised inside; the op is used by one thread
 * at a time. DP_ENOMEM / DP_EINVAL with ei. */
enum dp_err circ_op_new(const struct circ_dims *d, int max_n, struct circ_op **out,
                        struct dp_errinfo *ei);

/*
 * The general form, for layers that mix spectra themselves (circ_conv2d.c,
 * through circ_int.h): taps weight matrices, w (taps, p, q, k), and
 * max_nx rows on the input side, max_ny on the output side (a convolution
 * has one row per input pixel and one per output pixel).
 * circ_op_new(d, n, ...) is circ_op_new_ex(d, 1, n, n, ...). The product
 * functions below are for ops made with taps == 1.
 */
enum dp_err circ_op_new_ex(const struct circ_dims *d, int taps, int max_nx, int max_ny,
                           struct circ_op **out, struct dp_errinfo *ei);

/* NULL is a no-op. */
void circ_op_free(struct circ_op *op);

/* Transforms w (taps, p, q, k) and keeps its spectra for the following
 * forward/backward calls: call it whenever w changed (once per pass). */
void circ_op_load(struct circ_op *op, const float *w);

/* y (n, rows) (+)= x (n, cols) · Wᵀ with the loaded weight; n <= max_n. */
void circ_op_forward(struct circ_op *op, float *y, int ldy, const float *x, int ldx, int n,
                     int accumulate);

/* dx += dy · W, dw += dL/dw (summed over the n rows); either may be NULL.
 * x is the forward's input; dx and x share the row stride ldx. */
void circ_op_backward(struct circ_op *op, float *dx, float *dw, const float *dy, int ldy,
                      const float *x, int ldx, int n);

#endif
