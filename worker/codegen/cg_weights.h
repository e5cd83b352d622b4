/*
 * weights.bin: every step's weights in its compact format, in one blob
 * the generated code maps with constant offsets.
 *
 * Layout (little-endian): a 64-byte header
 *   char magic[8] = "DPCGWTS1"; uint32 version = 1; uint32 header_len = 64;
 *   uint64 total_len (the whole file); uint64 hash (FNV-1a 64 of every byte
 *   after the header); zeros
 * then sections, each 64-byte aligned so that float arrays are aligned:
 * FKW steps store perm, kptr, prun, cin, woff, w, bias (cg_fkw.h); dense
 * and irregular-fallback convolutions of the panel kernel (cg_sched.h)
 * store w as groups of nb panels of vl output channels, (F/(nb*vl), C,
 * kh*kw, nb*vl) zero-padded past F, the bias padded likewise and the
 * K-loop's input offsets koff (C*kh*kw uint32); other dense convolutions
 * and linear layers w (F, C, kh, kw) or (O, I) and bias (F); standalone
 * BN scale and shift (C). The hash and the size are compiled into
 * model.c, so a bundle refuses weights from another compile.
 */
#ifndef DP_WORKER_CODEGEN_CG_WEIGHTS_H
#define DP_WORKER_CODEGEN_CG_WEIGHTS_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "worker/codegen/cg_plan.h"

#define CG_WEIGHTS_MAGIC   "DPCGWTS1"
#define CG_WEIGHTS_VERSION 1
#define CG_WEIGHTS_HEADER  64
#define CG_WEIGHTS_MAX     ((size_t)1 << 32) /* 4 GiB: the generated offsets are 32-bit-safe */

/* Byte offsets of one step's arrays in the blob; 0 when the step has none. */
struct cg_wsec {
    size_t w, b;                        /* weights, bias (or BN scale, shift) */
    size_t perm, kptr, prun, cin, woff; /* FKW only */
    size_t koff;                        /* panel kernel: (C * taps) input offsets */
    size_t w2, b2;                      /* lstm/gru: W_hh and b_hh (w, b: W_ih and b_ih) */
    size_t tw, rev;                     /* FFT kernel (cg_circ.h): twiddles, bit reversal */
    size_t n_w;                         /* floats at w */
    size_t bytes;                       /* the step's bytes in the file, alignment included */
};

struct cg_qsec; /* cg_quant.h */

struct cg_weights {
    unsigned char *data; /* the whole file, header included */
    size_t len, cap;
    struct cg_wsec *sec; /* (plan->n_steps) */
    uint64_t hash;
    /* Quantized weight arrays (cg_quant.h): stored as codes in the file and
     * restored at load into a region after it; mem_len is the loaded
     * blob's size (len when nothing is quantized). */
    struct cg_qsec *q;
    int n_q, cap_q;
    size_t vlen, mem_len;
    int quantize; /* 0: every array stays float (a runtime that restores no codes: opencl) */
};

/* Appends n bytes of src as a 64-byte aligned section of w; *off is its
 * offset. DP_ETOOBIG past CG_WEIGHTS_MAX, DP_ENOMEM. */
enum dp_err cg_weights_append(struct cg_weights *w, const void *src, size_t n, size_t *off,
                              struct dp_errinfo *ei);

/*
 * Packs every step of p into out (release with cg_weights_free); quantize:
 * store arrays with few distinct values as codes (cg_quant.h), else all
 * float. DP_ETOOBIG past CG_WEIGHTS_MAX, DP_EUNSUPPORTED from FKW packing, DP_ENOMEM.
 */
enum dp_err cg_weights_build(const struct cg_plan *p, int quantize, struct cg_weights *out,
                             struct dp_errinfo *ei);

/* Releases w's memory and zeroes it. NULL is a no-op. */
void cg_weights_free(struct cg_weights *w);

#endif
