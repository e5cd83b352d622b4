/*
 * The schedule of each convolution on a target: which generated kernel
 * computes it and how its accumulators are blocked in registers.
 *
 *   cg_sched_choose(plan, vl);   after cg_plan_build, before weights and emission
 *
 * DESIGN: FKW layers (and every convolution of the portable target) keep
 * the spatial kernel: one filter at a time, a tile of flat output
 * positions in registers; skipping pruned kernels needs the filter as the
 * outer loop. Dense convolutions on a vector target use the panel kernel:
 * their weights are packed at compile time into panels of vl output
 * channels, and a register block of nb panels x r output pixels is
 * accumulated over the K-loop (input channels x taps): each step loads nb
 * weight vectors and broadcasts r input values into nb * r FMAs. That
 * uses every lane whatever the map size (the spatial kernel wastes most
 * lanes on 4x4 and 2x2 maps) and reads each weight once per pixel block
 * instead of once per vector of pixels.
 *
 * The spatial kernel's input layout is the cheaper of two: polyphase
 * planes of the padded input (one copy, but each output row carries
 * kw - 1 padding columns through the FMAs) and kw column-shifted copies
 * (kw times the copying, no padding column): small maps, where padding
 * columns are a large share of the vectors, take the shifted copies.
 *
 * The block (nb, r, flat or whole-row tiles) is the cheapest under a small
 * cost model of the K-loop: per step max(nb*r FMAs, nb+r loads, 8 chains
 * to hide the FMA latency) / 2, times the tiles, padding columns and
 * tail included; registers bound nb*r + nb.
 */
#ifndef DP_WORKER_CODEGEN_CG_SCHED_H
#define DP_WORKER_CODEGEN_CG_SCHED_H

#include "worker/codegen/cg_plan.h"

/* Fills every conv step's sched for vector width vl (0: the portable
 * target's plain arrays). Deterministic: a function of the shapes only. */
void cg_sched_choose(struct cg_plan *p, int vl);

/* "spatial", "panel", "" for steps without a kernel choice. */
const char *cg_kern_name(enum cg_kern k);

/* The flat geometry shared by the kernels and the runtime's padding: the
 * padded width of one polyphase plane and the flat outputs of a filter. */
int cg_sched_pwq(const struct cg_geom *g);
int cg_sched_phq(const struct cg_geom *g);

/* Vectors of flat outputs the spatial kernel keeps in registers per tile:
 * 8 with 32 vector registers (AVX-512: 8 tiles plus the broadcast
 * weights), 4 with 16 (AVX2, NEON). */
int cg_sched_nv_max(int vl);

#endif
