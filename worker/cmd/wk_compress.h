/*
 * `dnnpress-worker compress`: compression. Loads a pretrained checkpoint
 * and a dataset, runs a job spec (common/spec.h) with ADMM or the
 * magnitude baseline, and writes the compressed checkpoint and the report;
 * the CLI prints progress lines on stderr and a one-line JSON summary on
 * stdout. The shape of every command is in wk_cmd.h.
 */
#ifndef DP_WORKER_CMD_WK_COMPRESS_H
#define DP_WORKER_CMD_WK_COMPRESS_H

#include <jansson.h>

#include "common/err.h"
#include "common/spec.h"
#include "worker/cmd/wk_hooks.h"
#include "worker/compress/admm.h"

/*
 * One field per flag of `compress`, except that the documents arrive
 * parsed: the CLI reads --spec and --prev-report (and applies --method to
 * the spec), the task loop takes them from the task's JSON.
 */
struct wk_compress_opts {
    const struct dp_spec *spec; /* validated job spec; borrowed */
    const char *model;          /* pretrained .safetensors checkpoint */
    const char *data;           /* "idx:DIR", "cifar:DIR" or "npy:DIR" */
    const char *out;            /* the compressed checkpoint; NULL: not written */
    const char *report;         /* the JSON report; NULL: not written */
    const char *checkpoint;     /* the whole ADMM state after every epoch; NULL: none */
    long resume;                /* continue from checkpoint when it exists */
    enum admm_phase phase;
    const json_t *prev_report; /* ADMM_PHASE_RETRAIN: the admm phase's report, or NULL; borrowed */
    /* spec.auto.objective "latency": the device's per-layer latency table
     * (common/lat_table.h), or NULL; borrowed. */
    const json_t *latency;
    long threads, limit_train, limit_test, quiet;
};

/* Sets o to the defaults of compress's flag table (spec NULL, phase all). */
void wk_compress_opts_init(struct wk_compress_opts *o);

/* DP_EINVAL when the options cannot make a run (a usage error); no I/O. */
enum dp_err wk_compress_check(const struct wk_compress_opts *o, struct dp_errinfo *ei);

/*
 * Compresses as o says, with hooks h (NULL: none). *summary (may be NULL:
 * not built) receives the run's JSON summary (method, accuracies, rates,
 * peak_rss_bytes), owned by the caller. Returns DP_EINVAL for usage errors
 * (wk_compress_check), DP_EINTERRUPTED when h->stop asked (the last
 * checkpoint is on disk and a run with resume set continues from it), or
 * the failure of the run with ei naming it. Any thread; it sets that
 * thread's OpenMP team.
 */
enum dp_err wk_compress(const struct wk_compress_opts *o, const struct wk_hooks *h,
                        json_t **summary, struct dp_errinfo *ei);

/* The CLI; returns the process exit status (0 ok, 1 failure, 2 usage). */
int wk_compress_main(int argc, char **argv);

#endif
