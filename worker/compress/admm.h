/*
 * The ADMM compression engine and the magnitude-pruning baseline.
 *
 *   struct dp_spec spec;  dp_spec_load("spec.json", &spec, &ei);
 *   json_t *report = NULL;
 *   err = admm_compress(model, &train, &test, &spec, &cb, &report, &ei);
 *
 * The training set is split first: a seeded held-out validation share
 * (spec.validation) takes every decision (stage acceptance, automatic
 * rates, convergence); the test set is only evaluated for the report.
 *
 * ADMM (spec.method "admm"), for every constrained weight W_i:
 *   Z_i = P_i(W_i), U_i = 0
 *   repeat up to iters times (with spec.budget: as many as fit), until
 *   every ||W_i - Z_i|| / ||W_i|| <= target_residual and the support of
 *   every Z_i has settled (the epochs left go to the retraining):
 *     W-step: epochs_per_iter epochs of SGD on loss + sum rho_i/2 ||W_i - Z_i + U_i||^2
 *             (the gradient term rho_i (W_i - Z_i + U_i) through the optimizer hook;
 *              learning rate restarted every iteration, cosine within it)
 *     Z_i = P_i(W_i + U_i);  U_i += W_i - Z_i;  rho_i = min(rho_max, rho_i * rho_factor)
 *   hard projection W_i = P_i(W_i), mask = support of the pruned W_i
 *   masked retraining: gradients masked, weights re-zeroed after every step,
 *   quantized weights put back on their levels after every step
 * P_i is the rule's pruning projection followed by its quantizer.
 *
 * Magnitude baseline (spec.method "magnitude"): the same epoch budget split
 * over `steps` rounds of (prune to rate^(s/steps) by magnitude, masked
 * retraining), the quantizer applied from the last round on.
 *
 * The model is modified in place and ends feasible: every constraint holds
 * exactly. The report (JSON, "version": 1, documented in docs/job-spec.md)
 * has accuracy before and after, per-layer structure and storage, totals
 * and the per-iteration ADMM trace.
 */
#ifndef DP_WORKER_COMPRESS_ADMM_H
#define DP_WORKER_COMPRESS_ADMM_H

#include <jansson.h>
#include <signal.h>

#include "common/err.h"
#include "common/model.h"
#include "common/spec.h"
#include "worker/nn/data.h"

/* Progress callback: one line of text per epoch and per ADMM iteration. */
typedef void (*admm_progress_fn)(void *ud, const char *line);

/* Which part of the job one call runs. The service runs a job as two tasks
 * (compress, then retrain) so that each can be leased, checkpointed and
 * retried on its own; the offline command runs both at once. */
enum admm_phase {
    ADMM_PHASE_ALL,     /* everything */
    ADMM_PHASE_ADMM,    /* everything up to the hard projection of the last stage */
    ADMM_PHASE_RETRAIN, /* only the last masked retraining, on a hard-projected model */
};

/* How a run reports, stops and survives interruption. Zero means none. */
struct admm_callbacks {
    admm_progress_fn progress; /* may be NULL */
    void *ud;
    volatile sig_atomic_t *stop; /* may be NULL */
    int (*stop_fn)(void *ud);    /* may be NULL; polled between steps with ud */
    /* Structured events (may be NULL): "admm_epoch", "retrain_epoch",
     * "magnitude_epoch", "admm_iteration", "stage", "rates" (a stage's automatic
     * per-layer rates), "checkpoint"; data borrowed. */
    void (*event)(void *ud, const char *type, json_t *data);
    /* A whole-state checkpoint (W, Z, U, rho, masks, optimizer moments,
     * position, trace) is written here after every epoch and step; NULL none. */
    const char *checkpoint;
    int resume; /* continue from `checkpoint` when it exists */
    enum admm_phase phase;
    const json_t *prev_report; /* ADMM_PHASE_RETRAIN: the compress phase's report, or NULL */
    /* spec.auto.objective "latency": the device's per-layer latency table
     * (common/lat_table.h), borrowed; required then, else unused. */
    const json_t *latency;
};

/* Runs spec on m (finalized, pretrained). *report (owned by the caller) is
 * set on success. DP_EINVAL when no layer matches a rule or a rule does not
 * fit its layer (pattern on a non-3x3 kernel, n:m with m > row length), or
 * when the checkpoint to resume from belongs to another spec or model.
 * DP_EINTERRUPTED when stopped: the last checkpoint is on disk and a call
 * with resume set continues to the same result bit for bit (same thread
 * count). */
enum dp_err admm_compress(struct dp_model *m, const struct nn_dataset *train,
                          const struct nn_dataset *test, const struct dp_spec *spec,
                          const struct admm_callbacks *cb, json_t **report, struct dp_errinfo *ei);

#endif
