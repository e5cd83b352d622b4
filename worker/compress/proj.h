/*
 * Euclidean projections onto the constraint sets of the ADMM framework:
 * the Z-step of every scheme (see ../shared/research/admm-algorithms.md,
 * sections 2-5 and 3.3-3.4). Each scheme is one file and one function with
 * the same signature, bound to its scheme (common/scheme.h) in constraint.c, so the ADMM loop
 * never switches on the scheme.
 *
 *   struct proj_shape s = {O, I, KH, KW};        a linear weight is (O, I, 1, 1)
 *   struct proj_params p = proj_params_default();
 *   p.rate = 10.0;                               keep 1/10 of the units
 *   proj_irregular(z, &s, &p, scratch);          z <- projection of z, in place
 *
 * Contracts shared by all projections:
 *   - z is the weight tensor (O, I, KH, KW) in row-major order, numel =
 *     O*I*KH*KW; it is overwritten with its projection.
 *   - scratch holds at least proj_scratch_bytes(&s) bytes, aligned for
 *     double and int64 (dp_malloc or dp_malloc_aligned); projections never
 *     allocate and never fail (parameters are validated before, by the job
 *     spec parser, common/spec.c; rate < 1 or NaN is a programmer
 *     error and asserts).
 *   - the result is feasible, projecting twice changes nothing, and ties
 *     (equal magnitudes or norms) go to the LOWER index, so results are
 *     deterministic.
 *   - pruning keeps k = max(1, llround(units / rate)) units (halves round up), where the unit is
 *     the scheme's group (element, filter, channel, column, kernel), and
 *     never more units than exist. A unit holding a NaN ranks largest, so
 *     it is kept and the loss check still sees it. pattern leaves kernels
 *     other than 3x3, and everything when the library is empty, unchanged.
 *   - quantizers map every entry to a level of a small set; an entry that is
 *     exactly 0 when p->keep_zeros is set stays 0 and does not count when the
 *     scale is chosen (pruning then quantization on one tensor), and ternary
 *     then keeps every non-zero (one level per sign on the support). kbit rounds
 *     halves away from zero; pow2 and pow2sum send halfway values to the
 *     larger magnitude and equal-error scales to the smaller exponent. A
 *     group (layer or row) holding NaN or Inf is left unchanged.
 * Any thread; projections are pure functions of their arguments.
 */
#ifndef DP_WORKER_COMPRESS_PROJ_H
#define DP_WORKER_COMPRESS_PROJ_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

struct proj_shape {
    int64_t o, i, kh, kw;
};

#define PROJ_MAX_LIBRARY 126 /* C(9,4): every 4-entry pattern of a 3x3 kernel */

struct proj_params {
    double rate;     /* pruning: compression rate >= 1 (units kept = units / rate) */
    int n, m;        /* nm: keep the n largest of every m consecutive weights of a row */
    int bits;        /* kbit: 2..8; pow2, pow2sum: exponents j < 2^(bits-1)-1 */
    int per_channel; /* quantizers: one scale per output channel (row o) instead of one */
    int balanced;    /* connectivity: keep the same number of kernels in every filter */
    int keep_zeros;  /* quantizers: exact zeros stay zero and do not shape the scale;
                        ternary: non-zeros stay non-zero too (the pruned support) */
    int block;       /* circulant: block size k >= 1 */
    int n_library;   /* pattern: number of patterns in library */
    uint16_t library[PROJ_MAX_LIBRARY]; /* pattern: 9-bit masks, bit r*3+c = tap (r, c) kept */
};

/* rate 1, n:m 2:4, bits 8, per layer, unbalanced, library empty. */
struct proj_params proj_params_default(void);

/* Bytes of scratch any projection below needs for shape s (the largest). */
size_t proj_scratch_bytes(const struct proj_shape *s);

typedef void (*proj_fn)(float *z, const struct proj_shape *s, const struct proj_params *p,
                        void *scratch);

/* ---- Pruning (keep the units with the largest magnitude / L2 norm) ---------- */
void proj_irregular(float *z, const struct proj_shape *s, const struct proj_params *p,
                    void *scratch); /* units: elements, by |z| */
void proj_filter(float *z, const struct proj_shape *s, const struct proj_params *p,
                 void *scratch); /* units: rows o (I*KH*KW entries), by L2 */
void proj_channel(float *z, const struct proj_shape *s, const struct proj_params *p,
                  void *scratch); /* units: input channels i (O*KH*KW entries), by L2 */
void proj_column(float *z, const struct proj_shape *s, const struct proj_params *p,
                 void *scratch); /* units: columns (i, kh, kw) of the O x (I*KH*KW) view */
void proj_filter_column(float *z, const struct proj_shape *s, const struct proj_params *p,
                        void *scratch); /* column then filter, each at rate sqrt(rate) */
void proj_connectivity(float *z, const struct proj_shape *s, const struct proj_params *p,
                       void *scratch); /* units: kernels (o, i), by L2; per filter if balanced */
void proj_nm(float *z, const struct proj_shape *s, const struct proj_params *p,
             void *scratch); /* n of every m consecutive weights along I*KH*KW */
void proj_pattern(float *z, const struct proj_shape *s, const struct proj_params *p,
                  void *scratch); /* 3x3 kernels: keep the library pattern of largest energy */

/*
 * Chooses a pattern library from pretrained 3x3 weights: every kernel's
 * best 4-entry pattern (centre always kept, then the 3 largest |w| of the
 * other 8, ties to the lower tap), counted over all the given tensors; the
 * n most frequent (ties to the smaller mask value) form p->library.
 * DP_EINVAL when n is not in [1, 56] or a tensor is not 3x3.
 */
enum dp_err proj_pattern_select(const float *const *weights, const struct proj_shape *shapes,
                                int n_tensors, int n, struct proj_params *p, struct dp_errinfo *ei);

/* ---- Quantization (nearest level; optimal scale) ---------------------------- */
void quant_binary(float *z, const struct proj_shape *s, const struct proj_params *p,
                  void *scratch); /* {-a, +a}, a = mean |z| */
void quant_ternary(float *z, const struct proj_shape *s, const struct proj_params *p,
                   void *scratch); /* {-a, 0, +a}, exact support and scale (section 3.4) */
void quant_kbit(float *z, const struct proj_shape *s, const struct proj_params *p,
                void *scratch); /* a*{-M..M}, M = 2^(bits-1)-1, scale by search */
void quant_pow2(float *z, const struct proj_shape *s, const struct proj_params *p,
                void *scratch); /* {0} U {+-a*2^-j} */
void quant_pow2sum(float *z, const struct proj_shape *s, const struct proj_params *p,
                   void *scratch); /* {0} U {+-a*(2^-j + 2^-k)} */

/* ---- Block-circulant (CirCNN / E-RNN; worker/circulant/circ.h) ------------- */

/*
 * The closest matrix, in Frobenius norm, whose (O, I) channel matrix at
 * every kernel tap (the whole matrix of a linear weight) is block-circulant
 * with p->block x p->block blocks: circ_project of each tap's matrix,
 * expanded back (circ_expand), so the first-column convention of common/op.h
 * holds. Padding rows and columns are free (they are not part of z). A
 * linear subspace: the projection is exact, idempotent and leaves
 * block-circulant matrices as they are. scratch: proj_circulant_scratch_bytes.
 */
void proj_circulant(float *z, const struct proj_shape *s, const struct proj_params *p,
                    void *scratch);

/*
 * Frequency-domain quantization of stored circulant vectors (the spectra an
 * FFT layer keeps; C-LSTM / E-RNN's fixed-point datapath). z holds s->o
 * vectors of k = s->i values (s->kh = s->kw = 1). Each vector's real DFT
 *   C[f] = sum_t c[t] exp(-2 pi i f t / k),  f = 0 .. floor(k/2)
 * (k real numbers: real and imaginary parts, less the imaginary parts of
 * C[0] and, for even k, C[k/2], which are 0) is put on the uniform levels
 * a * {-M .. M}, M = 2^(bits-1) - 1, real and imaginary parts apart (halves
 * away from zero), with ONE scale per tensor (layer matrix):
 * a = max |component| / M over all its vectors; the vectors are then the
 * inverse DFTs of the quantized spectra. At most 2^bits - 1 levels per
 * component. A tensor holding NaN or Inf, or all zero, is left unchanged.
 * p->bits in [2, 16]. Computed in double by direct DFT (k <= 256).
 * scratch: proj_circulant_scratch_bytes.
 */
void quant_spectrum(float *z, const struct proj_shape *s, const struct proj_params *p,
                    void *scratch);

/* The scale a quant_spectrum of z would use (0 when it would leave z). */
double quant_spectrum_scale(const float *z, const struct proj_shape *s, const struct proj_params *p,
                            void *scratch);

/* Scratch bytes proj_circulant and quant_spectrum need for shape s and
 * block size k (at least what proj_scratch_bytes(s) gives). */
size_t proj_circulant_scratch_bytes(const struct proj_shape *s, int k);

#endif
