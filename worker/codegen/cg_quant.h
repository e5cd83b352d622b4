/*
 * Quantized weights in the bundle: a weight array whose values take few
 * distinct values per output channel (the compressor's k-bit, ternary,
 * binary, power-of-two schemes, with BatchNorm folded in or not) is stored
 * in weights.bin as bit-packed codes plus a codebook, and restored to
 * floats by model_create (docs/compile.md, "Quantized weights").
 *
 * DESIGN: the codes are chosen from the values as the kernels will read
 * them, in the array's own packed layout (dense, weight panels, FKW,
 * CSR, bitmask), so every kernel stays as it is and the weights the
 * bundle computes with are bit for bit those of the float bundle: a
 * codebook entry is a float copied from the array, never recomputed. A
 * codebook is one per row (output channel: a BatchNorm folded into a
 * per-layer quantizer scales each channel's levels differently) or one
 * for the whole array when all rows share at most 256 values, whichever
 * is smaller. The number of bits is ceil(log2(entries)) from 1 to 8 (a
 * binary layer is 1 bit; 0 is an entry only where the array stores
 * zeros). An array that would not get smaller, or needs more than 8 bits,
 * stays float. The metadata a compressed checkpoint carries (IR comp.bits)
 * is not needed: an ONNX file of the same weights gives the same bundle.
 *
 * Rows of an array (which codebook element e uses):
 *   CG_QROW_DIV    rows of a consecutive elements (dense (F, K), linear)
 *   CG_QROW_PANEL  weight panels: groups of a elements, lanes b apart; row
 *                  = group * b + e % b (the output channel, padding included)
 *   CG_QROW_RUNS   row r is [ptr[r], ptr[r+1]) (FKW woff, CSR rowptr)
 * In the loaded blob the floats sit after the file, at offsets fixed once
 * the file's length is known (cg_quant_finish); model.c holds one cg_qsec
 * per array (cg_quant_emit) and restores them before the first run.
 */
#ifndef DP_WORKER_CODEGEN_CG_QUANT_H
#define DP_WORKER_CODEGEN_CG_QUANT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "common/err.h"
#include "worker/codegen/cg_weights.h"

#define CG_QUANT_MAX_BITS 8

enum cg_qrow {
    CG_QROW_DIV,
    CG_QROW_PANEL,
    CG_QROW_RUNS,
};

struct cg_qmap {
    enum cg_qrow mode;
    size_t a, b;         /* DIV: a per row; PANEL: group a, lanes b */
    const uint32_t *ptr; /* RUNS: (rows + 1), also in the blob at ptr_off */
    size_t ptr_off;
    size_t rows;
};

/* One quantized array, as model.c restores it. */
struct cg_qsec {
    size_t dst;    /* the floats in the loaded blob (after the file) */
    size_t n;      /* floats */
    size_t codes;  /* bit-packed codes, LSB first, code of e at bit e * bits */
    size_t levels; /* codebook floats: (rows, nlev) per_row, else (nlev) */
    int bits, nlev, per_row;
    struct cg_qmap map; /* map.ptr is not used at load: ptr_off is */
    size_t *fix;        /* the section offset pointing at dst (fixed by cg_quant_finish) */
    int step;           /* the plan step it belongs to */
};

/* What quantizing v would give: bits (0: stays float), per_row, and the
 * bytes codes + codebook take. */
struct cg_qplan {
    int bits, nlev, per_row;
    size_t bytes;
};

/* Analyses v (n floats, rows by map) without storing anything. DP_ENOMEM. */
enum dp_err cg_quant_analyse(const float *v, size_t n, const struct cg_qmap *map,
                             struct cg_qplan *qp, struct dp_errinfo *ei);

/*
 * Appends v (n floats, rows by map) as step `step`'s weight array: codes
 * and codebook when that is smaller (see the file comment), else the
 * floats. *off receives the array's offset in the loaded blob (for a
 * quantized array it is fixed by cg_quant_finish, so off must stay valid:
 * a field of w->sec). DP_ENOMEM, DP_ETOOBIG.
 */
enum dp_err cg_quant_add(struct cg_weights *w, int step, const float *v, size_t n,
                         const struct cg_qmap *map, size_t *off, struct dp_errinfo *ei);

/* Places the restored floats after the file (64-byte aligned) and sets
 * w->mem_len; called once every step is packed. */
void cg_quant_finish(struct cg_weights *w);

/* Bytes of step k's arrays in the file that are quantized (codes and
 * codebooks), and its value bits (0: none). */
void cg_quant_step_bytes(const struct cg_weights *w, int k, size_t *bytes, int *bits);

/* Writes model.c's CG_BLOB_BYTES and table of quantized arrays (cg_qsecs). */
void cg_quant_emit(FILE *f, const struct cg_weights *w);

/* Releases w's quantization records (cg_weights_free calls it). */
void cg_quant_free(struct cg_weights *w);

#endif
