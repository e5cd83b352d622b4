/*
 * The profile task on a device (docs/api.md, "Devices"): unpack the
 * compile task's code bundle into a clean directory, build it with this
 * machine's own toolchain and time it with its bench (which first checks
 * its outputs against the bundle's reference logits), then compile the
 * job's dense model with the same target on this machine and time it the
 * same way, and write one JSON result: per thread count the compressed and
 * the dense latency, the speed-up, and per layer its time and share.
 */
#ifndef DP_WORKER_AGENT_WK_PROFILE_H
#define DP_WORKER_AGENT_WK_PROFILE_H

#include <jansson.h>

#include "common/err.h"
#include "worker/agent/wk_engine.h"

/* The version of the result's layout. */
#define WK_PROFILE_VERSION 1

/* Reads params.profile ({"runs","warmup","threads","timeout_s"}) and
 * params.compile.target into j; DP_EINVAL naming the field. */
enum dp_err wk_profile_bind(struct wk_engine_job *j, const json_t *params,
                            const struct wk_task_files *f, const struct wk_run_opts *o,
                            struct dp_errinfo *ei);

/* Runs the profile j describes (every child within its timeout). A bundle
 * that does not build, fails its reference check or times out is
 * DP_EFORMAT with the end of its log in ei. */
enum dp_err wk_profile_run(const struct wk_engine_job *j, const struct wk_hooks *h,
                           struct dp_errinfo *ei);

/* Sends the last 8 KiB of log with the failure (ei's message) as a `kind`
 * event ("profile", "latency") of step "failed": the task's error names
 * the failure, the job's events carry the log. h may be NULL. */
void wk_profile_failure_log(const struct wk_hooks *h, const char *kind, const char *log,
                            const struct dp_errinfo *ei);

/* The result's row for one bench JSON line: {"latency_ms", "max_rel_err",
 * "layers": [{"name","format","ms","share"}]}, share = ms / the layers'
 * total. NULL when out of memory. Pure; the unit tests call it. */
json_t *wk_profile_side(const json_t *bench);

#endif
