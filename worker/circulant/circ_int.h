/*
 * Inside of the circulant module: the FFT op's buffers and plans, shared
 * by circ_fft.c (which owns them) and the layers that mix spectra
 * themselves (circ_conv2d.c). Not for use outside worker/circulant/.
 *
 * Spectra are interleaved complex floats (re, im), kc = k/2 + 1 bins a
 * block (the rest of a real signal's spectrum is their conjugate).
 */
#ifndef DP_WORKER_CIRCULANT_CIRC_INT_H
#define DP_WORKER_CIRCULANT_CIRC_INT_H

#include <fftw3.h>

#include "worker/circulant/circ.h"

struct circ_op {
    struct circ_dims d;
    int taps;         /* weight matrices: w is (taps, p, q, k) */
    int max_nx;       /* rows of the input side (xr, xs) */
    int max_ny;       /* rows of the output side (yr, ys) */
    int kc;           /* bins of a real transform of length k: k/2 + 1 */
    int ldr_q, ldc_q; /* row strides of xr (floats) and xs (complex bins) */
    int ldr_p, ldc_p; /* row strides of yr and ys */
    float *xr;        /* (max_nx, ldr_q) padded inputs, then dx's inverse */
    float *xs;        /* (max_nx, ldc_q) complex: F(x_j), then DX_j */
    float *yr;        /* (max_ny, ldr_p) padded dy, then y's inverse */
    float *ys;        /* (max_ny, ldc_p) complex: Y_i, then F(g_i) */
    float *wr;        /* (taps, p, q, k) the weight, then dw's inverse */
    float *ws;        /* (taps, p, q, kc) complex: F(c_ij) of the loaded weight */
    float *dws;       /* (taps, p, q, kc) complex: DW_ij */
    /* [0]: all max_n rows of the side; [1]: one row. */
    fftwf_plan x_fwd[2]; /* xr -> xs, q blocks a row */
    fftwf_plan x_inv[2]; /* xs -> xr */
    fftwf_plan y_fwd[2]; /* yr -> ys, p blocks a row */
    fftwf_plan y_inv[2]; /* ys -> yr */
    fftwf_plan w_fwd;    /* wr -> ws, taps * p * q blocks */
    fftwf_plan w_inv;    /* dws -> wr */
};

/* The transforms of the first n rows of a side: forward xr -> xs (x) or
 * yr -> ys (y), inverse the other way (unnormalised: k times the signal). */
void circ__x_fwd(struct circ_op *op, int n);
void circ__x_inv(struct circ_op *op, int n);
void circ__y_fwd(struct circ_op *op, int n);
void circ__y_inv(struct circ_op *op, int n);

/* dws -> dw (taps, p, q, k): dw += F^-1(dws) / k for every block. */
void circ__dw_flush(struct circ_op *op, float *dw);

/* acc[f] += a[f] * b[f] (conj_a: conj(a[f]) * b[f]) over kc bins. */
static inline void circ__cmac(float *restrict acc, const float *restrict a, const float *restrict b,
                              int kc, int conj_a)
{
    if (conj_a) {
        for (int f = 0; f < kc; f++) {
            float ar = a[2 * f], ai = a[2 * f + 1], br = b[2 * f], bi = b[2 * f + 1];
            acc[2 * f] += ar * br + ai * bi;
            acc[2 * f + 1] += ar * bi - ai * br;
        }
    } else {
        for (int f = 0; f < kc; f++) {
            float ar = a[2 * f], ai = a[2 * f + 1], br = b[2 * f], bi = b[2 * f + 1];
            acc[2 * f] += ar * br - ai * bi;
            acc[2 * f + 1] += ar * bi + ai * br;
        }
    }
}

#endif
