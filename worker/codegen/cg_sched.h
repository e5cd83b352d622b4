/*
 * The schedule of each convolution on a target: which generated kernel
 * computes it and how its accumulators are blocked in registers.
 *
 *   struct cg_schedule sch;
 *   cg_schedule_default(plan, "native", 2, &sch, &ei);  after cg_plan_build
 *   cg_schedule_apply(plan, &sch, 0);   the layout path's schedule, before the weights
 *   ...emit every path (cg_emit.h)...; cg_schedule_free(&sch);
 *
 * A `native` bundle carries three ISA paths, each a full copy of the
 * layer kernels: avx512 (16-float vectors), avx2 (8) and generic (4-float
 * GCC vectors, any CPU the compiler targets), picked at model_create by
 * CPU features; `portable` carries one, plain (C arrays). Path 0 is the
 * layout path: its panel groups decide how weights.bin packs dense
 * convolutions (gw floats per group), and every other path's panel block
 * must divide that group.
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

#include "common/err.h"
#include "worker/codegen/cg_plan.h"

#define CG_MAX_PATHS 3

/* One ISA path's schedule: a cg_sched per plan step (kern CG_KERN_NONE
 * for steps that are not convolutions). */
struct cg_path_sched {
    const char *isa;        /* "avx512", "avx2", "generic" (native) or "plain" (portable); static */
    int vl;                 /* floats per vector of its kernels, 0 for plain arrays */
    struct cg_sched *steps; /* (n_steps), owned */
};

/* A bundle's whole schedule: what schedule.json records and --tune chooses. */
struct cg_schedule {
    int n_steps;
    int n_paths;
    struct cg_path_sched path[CG_MAX_PATHS];
    int threads; /* the bundle's default thread count */
    int prefer;  /* the path model_create takes without timing when the CPU has it (tuned);
                    -1: time every path the CPU runs and keep the fastest */
};

/* The cost model's schedule of every path of target ("native" or
 * "portable") for plan p. Deterministic: a function of the shapes only.
 * DP_EINVAL for another target, DP_ENOMEM. */
enum dp_err cg_schedule_default(const struct cg_plan *p, const char *target, int threads,
                                struct cg_schedule *out, struct dp_errinfo *ei);

/* A deep copy of src into *dst. DP_ENOMEM. */
enum dp_err cg_schedule_copy(struct cg_schedule *dst, const struct cg_schedule *src,
                             struct dp_errinfo *ei);

void cg_schedule_free(struct cg_schedule *s);

/* Copies path `path`'s schedule into p's steps (the emitter and the
 * weights read step->sched). */
void cg_schedule_apply(struct cg_plan *p, const struct cg_schedule *s, int path);

/* The path of s named isa, or -1. */
int cg_schedule_path(const struct cg_schedule *s, const char *isa);

/*
 * The schedules the compiler can generate for step s on a path of vector
 * width vl, into out (at most cap), the cost model's choice first and the
 * rest in the order the tuner should try them. gw is the layout's group
 * width for a panel step; 0 on the layout path, whose candidates choose
 * it. threads (the bundle's default) may change the order, never the
 * set. A schedule read from a file is valid iff it is one of these. The
 * sparse engineer's hook: an irregular layer offers its sparse kernel
 * here (sched.sparse = 1) once one exists. Returns the count (>= 1 for a
 * convolution, 0 otherwise).
 */
int cg_sched_candidates(const struct cg_step *s, int vl, int gw, int threads, struct cg_sched *out,
                        int cap);

/* Padded inputs up to this many floats are copied by every thread into
 * its own scratch (no barrier; the emitter's choice). */
#define CG_SCHED_PRIVATE_PAD_FLOATS 32768

/* Whether a and b schedule the same code. */
int cg_sched_equal(const struct cg_sched *a, const struct cg_sched *b);

/* "spatial", "panel", "" for steps without a kernel choice. */
const char *cg_kern_name(enum cg_kern k);

/* The flat geometry shared by the kernels and the runtime's padding: the
 * padded width of one polyphase plane and the flat outputs of a filter. */
int cg_sched_pwq(const struct cg_geom *g);
int cg_sched_phq(const struct cg_geom *g);

/* Vectors of flat outputs the spatial kernel keeps in registers per tile
 * by default: 8 with 32 vector registers (AVX-512: 8 tiles plus the
 * broadcast weights), 4 with 16 (AVX2, SSE, NEON). */
int cg_sched_nv_max(int vl);

#endif
