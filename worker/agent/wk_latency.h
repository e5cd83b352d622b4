/*
 * The latency task on a device (docs/api.md, "Latency tables"): builds the
 * device's per-layer latency table for spec.auto.objective "latency".
 * For every rate of params.latency.rates the job's model is pruned to that
 * rate on every layer a spec rule prunes (the rule's own projection, the
 * one ADMM's hard projection uses: latency depends on the sparsity and its
 * structure, not on accuracy, so no data and no training), compiled with
 * this machine's compiler for its own CPU (target native, irregular layers
 * dense, CSR or bitmask by the compiler's break-even, as a job ships them),
 * built and timed with the bundle's bench on one thread; each layer's
 * fastest image at that rate is its point. One compile per rate gives every
 * layer's point at that rate. The result is the table of common/lat_table.h,
 * which the task loop uploads (PUT /agent/v1/latency) before `complete`.
 */
#ifndef DP_WORKER_AGENT_WK_LATENCY_H
#define DP_WORKER_AGENT_WK_LATENCY_H

#include <jansson.h>

#include "common/err.h"
#include "worker/agent/wk_engine.h"

/* Reads params.latency ({"arch", "scheme", "rates", "runs", "warmup",
 * "timeout_s"}) and params.spec into j; DP_EINVAL naming the field. */
enum dp_err wk_latency_bind(struct wk_engine_job *j, const json_t *params,
                            const struct wk_task_files *f, const struct wk_run_opts *o,
                            struct dp_errinfo *ei);

/* Measures the table j describes into j->lat_out (JSON). A bundle that does
 * not build, fails its reference check or times out is DP_EFORMAT with the
 * end of its log in ei. h may be NULL; its stop() interrupts. */
enum dp_err wk_latency_run(const struct wk_engine_job *j, const struct wk_hooks *h,
                           struct dp_errinfo *ei);

/*
 * Adds one rate's bench JSON line (its "layers": [{"name", "min_ms"|"ms"}])
 * to layers, an object name -> {"name", "rates": [], "ms": []}, keeping
 * only the names in keep (an object used as a set). Pure; the unit tests
 * call it. DP_EFORMAT when a kept layer has no time, DP_ENOMEM.
 */
enum dp_err wk_latency_add_rate(json_t *layers, const json_t *keep, double rate,
                                const json_t *bench, struct dp_errinfo *ei);

/* `dnnpress-worker latency`: the same measurement offline on this machine;
 * returns the exit status (0 ok, 1 failure, 2 usage). */
int wk_latency_main(int argc, char **argv);

#endif
