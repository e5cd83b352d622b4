/*
 * Auto-tuning (`compile --tune SECONDS`): the schedule chosen by compiling
 * and timing candidate bundles on this machine, within a time budget.
 *
 *   err = cg_tune(plan, 30.0, build, ctx, &schedule, &report, &ei);
 *
 * DESIGN: the tuned path is the widest ISA path this CPU runs (avx512,
 * else avx2, else generic; plain on `portable`). Each convolution has a
 * list of schedules the compiler can generate (cg_sched_candidates: panel
 * blocks and weight groups, spatial tiles, unroll, input layout; the
 * dense/sparse choice where a sparse kernel exists), the cost model's
 * first. Round j builds one bundle in which every layer takes its j-th
 * candidate (layers with fewer keep their best so far), builds it with
 * its own Makefile and runs its bench on that path: the bench checks the
 * outputs against the reference, and its per-layer fastest image
 * (min_ms) scores each layer's candidate, so one build measures a
 * candidate of every layer at once. Rounds stop when the next would pass
 * the budget (the first, the cost model's own, always runs). Then the
 * thread count (1 to the online CPUs) and the ISA path (every path the
 * CPU runs) are chosen by bench's median on the tuned bundle. The result
 * is a schedule like any other (schedule.json reproduces it); the times
 * stay in the report, never in the bundle.
 */
#ifndef DP_WORKER_CODEGEN_CG_TUNE_H
#define DP_WORKER_CODEGEN_CG_TUNE_H

#include "common/err.h"
#include "worker/codegen/cg_plan.h"
#include "worker/codegen/cg_sched.h"

/* What a tuning run did, for the compile summary and the report. */
struct cg_tune_report {
    int rounds;         /* candidate bundles built and timed */
    int layers_changed; /* convolutions whose schedule differs from the cost model's */
    double seconds;     /* wall time spent */
    double default_p50; /* ms, the cost model's schedule (round 0) at its threads */
    double tuned_p50;   /* ms, the tuned schedule at the chosen threads and path */
    const char *isa;    /* the tuned path (static) */
};

/* Writes the bundle of schedule s into directory dir (cg_compile's writer). */
typedef enum dp_err cg_tune_build_fn(void *ctx, const struct cg_schedule *s, const char *dir,
                                     struct dp_errinfo *ei);

/*
 * Tunes *s (the starting schedule, replaced by the tuned one) for plan p
 * within about budget_s seconds; candidate bundles are written by build
 * into a temporary directory (TMPDIR, else /tmp) that is removed after.
 * The bundle's make and bench run as child processes (CC from the
 * environment, as make takes it). DP_EIO when a candidate does not build
 * or fails its reference check (a compiler bug: the message names the
 * log), DP_ENOMEM.
 */
enum dp_err cg_tune(const struct cg_plan *p, double budget_s, cg_tune_build_fn *build, void *ctx,
                    struct cg_schedule *s, struct cg_tune_report *rep, struct dp_errinfo *ei);

/* Whether this CPU runs ISA path isa ("avx512", "avx2"; others: yes). */
int cg_tune_cpu_runs(const char *isa);

#endif
