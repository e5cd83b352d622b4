/*
 * Irregular (non-structured) sparsity: which format a pruned layer that
 * is not a pattern layer runs in, its CSR and bitmask packing, and the
 * storage accounting of every format (docs/compile.md, "Formats").
 *
 *   cg_plan_build(m, &p, &ei);
 *   cg_sparse_choose(p, vl, CG_SPARSE_AUTO);  IRREGULAR -> CSR, BITMASK or dense
 *   cg_schedule_default(p, ...);               CSR and bitmask convolutions get their
 *                                              one schedule (cg_sched_candidates, sparse = 1)
 *   cg_weights_build(p, 1, &w, &ei);           calls cg_sparse_pack for them
 *
 * DESIGN: a CSR or bitmask kernel multiplies only the non-zero weights but
 * pays per weight for an index and an unaligned input load, while the
 * dense path streams packed panels at near the machine's peak: below some
 * density the sparse kernel wins. That break-even is measured, not assumed
 * (the ADMM-NN argument): `make bench-compile` sweeps density x format on
 * the conv and linear shapes of lenet5, resnet20-cifar and vgg16-cifar with
 * the generated kernels themselves (--sparse forces a format) and the
 * measured figures are the constants of cg_sparse.c's table, per layer
 * kind and target (docs/benchmarks.md, "Irregular break-even"). A layer at
 * density d runs
 *   dense    when d > sparse_max   (multiplying the zeros is cheaper than skipping
 *                                   them; "irregular: dense fallback" under 50 %)
 *   CSR      when d <= csr_max     (its 32-bit offset per non-zero is cheaper to
 *                                   follow than the bitmask's bit scan)
 *   bitmask  otherwise,
 * and formats.json records the density and the break-even it was compared
 * with.
 *
 * Layouts in weights.bin (per step, 64-byte aligned sections; F output
 * channels, K = C*kh*kw weights per output channel, nnz non-zero):
 *   CSR      rowptr uint32 (F+1), off uint32 (nnz), val (nnz), bias (F).
 *            A conv's off is the input offset of (channel, tap) in the
 *            padded polyphase input (channel * floats per channel + the
 *            tap's plane and shift), a linear layer's the input column.
 *   bitmask  rowptr uint32 (F+1) (non-zeros before each row), mask uint64
 *            (F, ceil(K/64)) bit i = weight i of the row kept, val (nnz),
 *            bias (F).
 * val may be stored quantized (cg_quant.h); the section offsets are in
 * cg_wsec: kptr = rowptr, koff = off or mask, w = val, b = bias.
 */
#ifndef DP_WORKER_CODEGEN_CG_SPARSE_H
#define DP_WORKER_CODEGEN_CG_SPARSE_H

#include <stddef.h>
#include <stdio.h>

#include "common/err.h"
#include "worker/codegen/cg_plan.h"
#include "worker/codegen/cg_weights.h"

enum cg_sparse_mode {
    CG_SPARSE_AUTO,    /* by the measured break-even */
    CG_SPARSE_DENSE,   /* every irregular layer dense (the sweep's baseline) */
    CG_SPARSE_CSR,     /* every non-pattern conv and linear layer in CSR (the sweep) */
    CG_SPARSE_BITMASK, /* ... in bitmask (the sweep) */
};

/* The mode named s ("auto", "dense", "csr", "bitmask"); -1 when none. */
int cg_sparse_mode_parse(const char *s);

/*
 * Sets the format of every conv and linear step that is not FKW (see the
 * file comment) and its `why`; vl is the target's vector width (0:
 * portable), whose break-even applies.
 */
void cg_sparse_choose(struct cg_plan *p, int vl, enum cg_sparse_mode mode);

/* Packs CSR or bitmask step k of p into w (sections in w->sec[k]). */
enum dp_err cg_sparse_pack(const struct cg_plan *p, int k, struct cg_weights *w,
                           struct dp_errinfo *ei);

/* Bytes of step s's weights in each format, every index counted (bias
 * excluded: the same in all), -1 where the format cannot hold it. */
struct cg_storage {
    long long dense, csr, bitmask, fkw;
    long long q_bits; /* bits per value the layer's values need (cg_quant.h), 0: not quantized */
    long long fkw_q;  /* FKW with its values at q_bits (codes + codebook); -1: no FKW or no q */
    long long csr_q;  /* CSR with quantized values; -1 without q */
    long long stored; /* what weights.bin holds for the step (all sections, bias included) */
};

void cg_sparse_storage(const struct cg_plan *p, int k, const struct cg_weights *w,
                       struct cg_storage *st);

/*
 * Writes formats.json: per conv and linear step its format and why, the
 * density, and the storage of every format (cg_storage); totals; and the
 * weight file's size. DP_EIO when f fails.
 */
enum dp_err cg_sparse_write_report(FILE *f, const struct cg_plan *p, const struct cg_weights *w,
                                   int vl, struct dp_errinfo *ei);

#endif
