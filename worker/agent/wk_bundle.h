/*
 * What a compile task does after the compiler: pack the bundle as the
 * `code` artifact, build it with its own Makefile and time it with its own
 * bench on the compiling worker, into the `compile_report` artifact
 * (docs/compile.md, "From a job"). Measuring on the worker that compiled
 * is the point: `native` code is tuned to that machine's vectors.
 */
#ifndef DP_WORKER_AGENT_WK_BUNDLE_H
#define DP_WORKER_AGENT_WK_BUNDLE_H

#include <jansson.h>

#include "common/err.h"
#include "worker/cmd/wk_hooks.h"

/* bench runs of a compile task: enough for a stable mean on LeNet-5 to
 * ResNet-20 (milliseconds each), few enough to add only seconds. */
#define WK_BUNDLE_BENCH_RUNS 20
/* The code artifact's bound: a bundle is its sources plus weights no
 * larger than the model's (FKW only shrinks them). */
#define WK_BUNDLE_MAX_BYTES ((uint64_t)4 << 30)

/*
 * Runs `make -C dir` and then `dir/bench --runs runs --warmup warmup
 * --threads threads` (warmup < 0: as many as runs), each within timeout_s
 * seconds when positive (else DP_EFORMAT saying which timed out), with
 * their output in log_path, and returns bench's JSON line plus
 * "peak_rss_kb" (bench's peak resident set) in *out (the caller owns it).
 * bench exits 1 when the bundle's outputs differ from
 * the engine's reference: that is DP_EFORMAT here, with the tail of the
 * log in ei. h may be NULL; its stop() ends the running child (SIGTERM)
 * with DP_EINTERRUPTED. Any thread (it forks children and waits for them).
 */
enum dp_err wk_bundle_bench(const char *dir, const char *log_path, long threads, int runs,
                            int warmup, int timeout_s, const struct wk_hooks *h, json_t **out,
                            struct dp_errinfo *ei);

/*
 * The regular files of the bundle directory dir as [{"name","bytes"}] in
 * name order (call it before the build adds objects). NULL when dir cannot
 * be read or out of memory.
 */
json_t *wk_bundle_files(const char *dir);

/*
 * The compile report (the compile_report artifact, "version": 1; fields in
 * docs/compile.md) from the bundle's files (wk_bundle_files), bench's JSON
 * line, the options (tune_s: the seconds of auto-tuning asked for) and the
 * code artifact's size. Borrows its arguments; returns a new object, or
 * NULL when out of memory.
 */
json_t *wk_bundle_report(const json_t *files, const json_t *bench, const char *target, long threads,
                         int runs, long tune_s, long long tar_bytes);

#endif
