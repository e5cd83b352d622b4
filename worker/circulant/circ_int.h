/*
 * Inside of the circulant module: the FFT op's buffers and plans, shared
 * by circ_fft.c (which owns them) and the layers that mix spectra
 * themselves (circ_conv2d.c). Not for use outside worker/circulant/.
 *
 * Spectra are interleaved complex floats (re, im), kc = k/2 + 1 bins a
 * block (the rest of a real signal's spectrum is their conjugate), stored
 * BIN-MAJOR: one plane per bin f, and in it the rows, and in a row the
 * blocks. So for every bin the spectra of all rows form a row-major complex
 * matrix, and a product over the blocks is one complex GEMM per bin:
 *   xs (kc, max_nx, q)   X_f: (rows, q), leading dimension q
 *   ys (kc, max_ny, p)   Y_f: (rows, p), leading dimension p
 *   ws (taps, kc, p, q)  W_t,f: (p, q), leading dimension q
 * Planes start on 64 bytes (ldf_x, ldf_y: complex elements a plane).
 */
#ifndef DP_WORKER_CIRCULANT_CIRC_INT_H
#define DP_WORKER_CIRCULANT_CIRC_INT_H

#include <fftw3.h>
#include <stddef.h>

#include "worker/circulant/circ.h"

struct circ_op {
    struct circ_dims d;
    int taps;         /* weight matrices: w is (taps, p, q, k) */
    int max_nx;       /* rows of the input side (xr, xs) */
    int max_ny;       /* rows of the output side (yr, ys) */
    int kc;           /* bins of a real transform of length k: k/2 + 1 */
    int ldr_q, ldr_p; /* row strides of xr and yr (floats) */
    int ldf_x, ldf_y; /* plane strides of xs and ys (complex elements) */
    float *xr;        /* (max_nx, ldr_q) padded inputs, then dx's inverse */
    float *xs;        /* (kc, max_nx, q) complex: F(x_j), then DX_j */
    float *yr;        /* (max_ny, ldr_p) padded dy, then y's inverse */
    float *ys;        /* (kc, max_ny, p) complex: Y_i, then F(g_i) */
    float *wr;        /* (taps, p, q, k) the weight, then dw's inverse */
    float *ws;        /* (taps, kc, p, q) complex: F(c_ij) of the loaded weight */
    float *dws;       /* (taps, kc, p, q) complex: DW_ij */
    /* [0]: all rows of the side; [1]: one row. */
    fftwf_plan x_fwd[2]; /* xr -> xs, q blocks a row */
    fftwf_plan x_inv[2]; /* xs -> xr */
    fftwf_plan y_fwd[2]; /* yr -> ys, p blocks a row */
    fftwf_plan y_inv[2]; /* ys -> yr */
    fftwf_plan w_fwd;    /* wr -> ws, taps * p * q blocks */
    fftwf_plan w_inv;    /* dws -> wr */
};

/* Row r of bin f's plane (complex, interleaved) on each side. */
static inline float *circ__xs(const struct circ_op *op, int f, size_t r)
{
    return op->xs + 2 * ((size_t)f * op->ldf_x + r * op->d.q);
}

static inline float *circ__ys(const struct circ_op *op, int f, size_t r)
{
    return op->ys + 2 * ((size_t)f * op->ldf_y + r * op->d.p);
}

/* W_t,f (p, q) of the loaded weight, and its gradient's spectrum. */
static inline float *circ__ws(const struct circ_op *op, int t, int f)
{
    return op->ws + 2 * (((size_t)t * op->kc + f) * op->d.p * op->d.q);
}

static inline float *circ__dws(const struct circ_op *op, int t, int f)
{
    return op->dws + 2 * (((size_t)t * op->kc + f) * op->d.p * op->d.q);
}

/* The transforms of the first n rows of a side: forward xr -> xs (x) or
 * yr -> ys (y), inverse the other way (unnormalised: k times the signal). */
void circ__x_fwd(struct circ_op *op, int n);
void circ__x_inv(struct circ_op *op, int n);
void circ__y_fwd(struct circ_op *op, int n);
void circ__y_inv(struct circ_op *op, int n);

/* dws -> dw (taps, p, q, k): dw += F^-1(dws) / k for every block. */
void circ__dw_flush(struct circ_op *op, float *dw);

#endif
