/*
 * The compression job spec (JSON; docs/job-spec.md has the reference and
 * examples), parsed and validated completely before any work starts: a bad
 * spec is an error whose message names the field and why it is wrong.
 *
 *   {
 *     "version": 1,
 *     "method": "admm",                 "admm" or "magnitude" (the baseline)
 *     "seed": 1,
 *     "batch": 64,
 *     "admm": {"iters": 6, "epochs_per_iter": 2, "rho": 1e-3,
 *              "rho_factor": 1.3, "rho_max": 1.0, "lr": 0.01},
 *     "retrain": {"epochs": 4, "lr": 0.01},
 *     "magnitude": {"steps": 4},        epochs split evenly over the steps
 *     "optimizer": {"momentum": 0.9, "weight_decay": 5e-4},
 *     "layers": [
 *       {"match": "conv*", "prune": {"scheme": "irregular", "rate": 8}},
 *       {"match": "fc*", "prune": {"scheme": "irregular", "rate": 40},
 *        "quant": {"scheme": "kbit", "bits": 4, "per_channel": true}, "rho": 3e-3}
 *     ]
 *   }
 *
 * Each conv2d and linear weight takes the first rule whose glob matches
 * its layer name; layers no rule matches stay dense.
 */
#ifndef DP_WORKER_COMPRESS_SPEC_H
#define DP_WORKER_COMPRESS_SPEC_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "worker/compress/constraint.h"

#define ADMM_SPEC_MAX_RULES 64
#define ADMM_SPEC_MAX_BYTES (1 << 20)

enum admm_method { ADMM_METHOD_ADMM, ADMM_METHOD_MAGNITUDE };

struct admm_rule {
    char match[64];                      /* glob over layer names */
    const struct admm_constraint *prune; /* NULL: no pruning */
    const struct admm_constraint *quant; /* NULL: no quantization */
    struct proj_params params;           /* rate, n:m, bits, per_channel, balanced */
    int n_patterns;                      /* pattern library size (6, 8, 12, ...) */
    double rho;                          /* < 0: the global rho */
};

struct admm_spec {
    enum admm_method method;
    uint64_t seed;
    int batch;
    int admm_iters, epochs_per_iter;
    double rho, rho_factor, rho_max, admm_lr;
    int retrain_epochs;
    double retrain_lr;
    int magnitude_steps;
    double momentum, weight_decay;
    int n_rules;
    struct admm_rule rules[ADMM_SPEC_MAX_RULES];
};

/* Parses and validates text (len bytes, at most ADMM_SPEC_MAX_BYTES).
 * Unknown fields are errors too: a typo must not silently mean a default. */
enum dp_err admm_spec_parse(const char *text, size_t len, struct admm_spec *out,
                            struct dp_errinfo *ei);

/* Reads and parses a spec file; messages start with the path. */
enum dp_err admm_spec_load(const char *path, struct admm_spec *out, struct dp_errinfo *ei);

/* The rule for a layer name, or NULL when none matches. */
const struct admm_rule *admm_spec_rule_for(const struct admm_spec *s, const char *layer);

/* Training epochs the spec spends in all: ADMM iterations * epochs + retraining. */
int admm_spec_epochs(const struct admm_spec *s);

#endif
