/*
 * Block-circulant and recurrent layers in the compiler (issue 15): the
 * plan's figures for them, their weights in weights.bin and their code.
 *
 * A circ_linear or circ_conv2d layer whose block k is a power of two
 * (>= 2) becomes a CG_K_CIRC_LINEAR / CG_K_CIRC_CONV step of format
 * CG_FMT_CIRC: weights.bin holds every block's spectrum FFT(c_ij) / k as
 * k/2 + 1 complex bins (real parts, then imaginary parts), computed here
 * in double precision, and the layer's FFT tables (twiddles and bit
 * reversal); the bundle's runtime (rt/rt_circ.c.in) has a radix-2 real
 * FFT and computes y_i = IFFT(sum_j S_ij * FFT(x_j)). Any other k (1, 3,
 * 12, ...) has no FFT kernel: the plan expands the matrix at compile time
 * and the layer runs as the dense linear or convolution it stands for
 * (every existing kernel and format applies; storage k times larger).
 *
 * lstm and gru become CG_K_LSTM / CG_K_GRU steps: per time step the input
 * and recurrent products (dense rows, or the FFT kernel for a power-of-two
 * block, or dense rows of the expanded matrices for another block), then
 * the gates; PyTorch's layout and gate order (common/op.h).
 *
 * FLOPs of the FFT form (reports, model_info's MACs): a real FFT of k
 * points counts 5 (k/2) log2(k/2) + 12 (k/2 + 1), its inverse the same, a
 * spectral multiply-add 8 (k/2 + 1); a rows x cols product q FFTs,
 * p * q multiply-adds and p inverse FFTs. A step's macs_dense is the
 * dense-equivalent MACs, its macs_nonzero half its FLOPs.
 */
#ifndef DP_WORKER_CODEGEN_CG_CIRC_H
#define DP_WORKER_CODEGEN_CG_CIRC_H

#include <stddef.h>
#include <stdio.h>

#include "common/err.h"
#include "common/model.h"
#include "worker/codegen/cg_plan.h"
#include "worker/codegen/cg_weights.h"

/* Whether block size k has the FFT kernel: a power of two in [2, 4096]. */
int cg_circ_fft_ok(int k);

/* FLOPs of a real FFT of k points, and of a rows x cols block-circulant
 * product in blocks of k, in the FFT form (the estimate above). */
long long cg_circ_rfft_flops(int k);
long long cg_circ_mv_flops(int rows, int cols, int k);

/* dense = the matrix the circ_linear (F, C*H*W) or circ_conv2d (F, C, kh,
 * kw) layer of step s stands for (s->g set). */
void cg_circ_expand(const struct dp_model *m, const struct cg_step *s, float *dense);

/* Fills a CG_K_CIRC_LINEAR, CG_K_CIRC_CONV, CG_K_LSTM or CG_K_GRU step's
 * format, hidden size and figures (weights, MACs, FLOPs). DP_EUNSUPPORTED
 * naming the layer for a shape the kernels do not handle. */
enum dp_err cg_circ_step_init(const struct dp_model *m, struct cg_step *s, struct dp_errinfo *ei);

/* Appends step k's arrays to out (cg_weights_build calls it for the four
 * kinds above). DP_ENOMEM, DP_ETOOBIG. */
enum dp_err cg_circ_pack(const struct cg_plan *p, int k, struct cg_weights *out,
                         struct dp_errinfo *ei);

/* Where a step's working arrays sit in the runtime's scratch, in floats:
 * shared ones in thread 0's block (c, gx, gh: the RNN's cell and gates;
 * xs1, xs2: input spectra), tmp in every thread's block at the same
 * offset; total: the floats per thread the step needs. */
struct cg_circ_scr {
    size_t c, gx, gh, xs1, xs2, tmp, total;
};
void cg_circ_scratch(const struct cg_step *s, struct cg_circ_scr *out);

/* Writes step k (one of the four kinds) of p as its function in model.c
 * (cg_emit_circ.c). */
void cg_emit_circ_step(FILE *f, const struct cg_plan *p, int k, const struct cg_wsec *sec);

#endif
