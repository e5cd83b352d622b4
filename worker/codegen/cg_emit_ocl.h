/*
 * OpenCL emission (target "opencl"): the bundle's model.c becomes a small
 * host runner over the OpenCL ICD loader, and every step of the plan an
 * OpenCL kernel in a source string that model_create builds for the
 * device (docs/compile.md, "The opencl target").
 *
 *   cg_ocl_sched(p);                        before cg_weights_build
 *   err = cg_ocl_check(p, &ei);             a step it cannot emit: the layer named
 *   err = cg_ocl_emit_model_c(f, p, w, o, &ei);
 *   err = cg_ocl_emit_makefile(f, &ei);     links -lOpenCL
 *
 * DESIGN: the same steps as the C targets (BN folded, activations and
 * residual adds fused by cg_plan), one kernel per step named like the C
 * function (layer_<k>_<name>), with every shape, tap offset and weights
 * offset a constant in its text. Convolutions use one work-item layout:
 * a work-item computes a block of CG_OCL_PX consecutive output pixels of
 * one row for one filter, global size (row blocks, filters), work-groups
 * along the blocks of one filter, so every work-item of a group runs the
 * same branches. A pattern (FKW) layer's kernel has one loop per pattern
 * of its library with that pattern's taps unrolled and their input
 * offsets constant; the inputs a row of taps shares between neighbouring
 * pixels are loaded once into registers. Padding is read as zeros by a
 * bounds test (no padded copy). Weights stay in weights.bin's layout:
 * FKW arrays for pattern layers, (F, C, kh, kw) for dense ones (the
 * portable schedule's), uploaded once as one read-only buffer.
 */
#ifndef DP_WORKER_CODEGEN_CG_EMIT_OCL_H
#define DP_WORKER_CODEGEN_CG_EMIT_OCL_H

#include <stdio.h>

#include "common/err.h"
#include "worker/codegen/cg_emit.h"
#include "worker/codegen/cg_plan.h"
#include "worker/codegen/cg_weights.h"

#define CG_OCL_PX 4 /* output pixels of a row per work-item (convolutions) */

/* Sets every step's schedule to what the OpenCL kernels read: the plain
 * (F, C, kh, kw) or FKW weights of the spatial kernel, no vectors. */
void cg_ocl_sched(struct cg_plan *p);

/* DP_EUNSUPPORTED naming the first layer the OpenCL emitter has no
 * kernel for; DP_OK when every step can be emitted. */
enum dp_err cg_ocl_check(const struct cg_plan *p, struct dp_errinfo *ei);

/* Writes model.c (host runner and kernel source) for plan p and weights w. */
enum dp_err cg_ocl_emit_model_c(FILE *f, const struct cg_plan *p, const struct cg_weights *w,
                                const struct cg_emit_opts *o, struct dp_errinfo *ei);

/* Writes the bundle's Makefile for the opencl target (links -lOpenCL). */
enum dp_err cg_ocl_emit_makefile(FILE *f, struct dp_errinfo *ei);

#endif
