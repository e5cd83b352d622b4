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
 *              "rho_factor": 1.3, "rho_max": 1.0, "lr": 0.01,
 *              "target_residual": 0.05, "support_change": 0.001},
 *     "retrain": {"epochs": 4, "lr": 0.01, "keep_best": false},
 *     "magnitude": {"steps": 4},        epochs split evenly over the steps
 *     "validation": {"fraction": 0.1},  held out of the training set; decides everything
 *     "budget": {"epochs": 40},         every epoch of the run, either method
 *     "distill": {"temperature": 4, "weight": 0.5},   from the dense model (optional)
 *     "optimizer": {"type": "sgd", "momentum": 0.9, "weight_decay": 5e-4},   or "adam"
 *     "layers": [
 *       {"match": "conv*", "prune": {"scheme": "irregular", "rate": 8}},
 *       {"match": "fc*", "prune": {"scheme": "irregular", "rate": 40},
 *        "quant": {"scheme": "kbit", "bits": 4, "per_channel": true}, "rho": 3e-3}
 *     ]
 *   }
 *
 * Block-circulant layers (CirCNN, C-LSTM, E-RNN) take a rule of their own:
 *   {"match": "fc*", "circulant": {"block": 16, "from": "admm", "spectrum_bits": 8}}
 * on linear, conv2d (groups 1), lstm and gru layers; "from" is "admm"
 * (ADMM toward the block-circulant set, then conversion and retraining) or
 * "scratch" (converted first, trained for the same epochs). A circulant
 * rule carries no prune or quant, and a spec with one has circulant rules
 * only, all with the same "from".
 *
 * Each conv2d and linear weight (and, for circulant rules, lstm and gru
 * layer) takes the first rule whose glob matches its layer name; layers no
 * rule matches stay dense.
 *
 * The spec is a contract of both programs: the server validates a
 * submission with exactly this parser, and the worker runs what it parsed.
 * Schemes are names from common/scheme.h; the worker binds them to its
 * projection kernels (worker/compress/constraint.h).
 */
#ifndef DP_COMMON_SPEC_H
#define DP_COMMON_SPEC_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "common/scheme.h"

#define DP_SPEC_MAX_RULES 64
#define DP_SPEC_MAX_BYTES (1 << 20)

enum dp_spec_method { DP_SPEC_ADMM, DP_SPEC_MAGNITUDE };

/* A rule's scheme parameters, as the spec states them (the worker copies
 * them into its projection parameters). */
struct dp_spec_params {
    double rate;     /* pruning: compression rate >= 1 (units kept = units / rate); default 1 */
    int n, m;        /* nm: keep the n largest of every m consecutive weights; default 2:4 */
    int bits;        /* kbit: 2..8; pow2, pow2sum: exponent range; default 8 */
    int per_channel; /* quantizers: one scale per output channel instead of one per layer */
    int balanced;    /* connectivity: keep the same number of kernels in every filter */
    int keep_zeros;  /* set when the rule also prunes: pruned zeros stay zero under the quantizer */
    int block;       /* circulant: block size k, 2..256 (0: not circulant) */
    int spectrum_bits; /* circulant: bits of the stored spectra, 2..16 (0: float) */
};

/* How a spec's circulant rules reach their block-circulant layers. */
enum dp_spec_circ_from {
    DP_SPEC_CIRC_NONE,    /* the spec has no circulant rule */
    DP_SPEC_CIRC_ADMM,    /* ADMM toward the block-circulant set on the dense model, hard
                             projection, conversion, retraining in the circulant form */
    DP_SPEC_CIRC_SCRATCH, /* converted first (fresh weights), then trained for the same epochs */
};

/* How the magnitude baseline spreads its pruning over the layers. */
enum dp_spec_alloc {
    DP_SPEC_ALLOC_UNIFORM, /* every layer at its rule's rate */
    DP_SPEC_ALLOC_GLOBAL,  /* one magnitude threshold over all irregular layers, same total */
};

/* How spec.auto spreads its global target over the layers. */
enum dp_spec_auto_alloc {
    DP_SPEC_AUTO_SENSITIVITY, /* measured loss increase per layer and rate, then annealing */
    DP_SPEC_AUTO_GLOBAL,      /* one magnitude threshold over all constrained layers */
};

/* What the automatic per-layer rates reduce: weights, multiply-accumulates,
 * or the measured per-layer latency of a registered device (auto.device). */
enum dp_spec_objective { DP_SPEC_OBJ_PARAMS, DP_SPEC_OBJ_FLOPS, DP_SPEC_OBJ_LATENCY };

/* "params", "flops", "latency". */
const char *dp_spec_objective_name(enum dp_spec_objective o);

struct dp_spec_rule {
    char match[64];                /* glob over layer names */
    const struct dp_scheme *prune; /* a DP_SCHEME_PRUNE row; NULL: no pruning */
    const struct dp_scheme *quant; /* a DP_SCHEME_QUANT row; NULL: no quantization */
    const struct dp_scheme *circ;  /* the DP_SCHEME_CIRC row; NULL: not circulant (then
                                      params.block is 0; never with prune or quant) */
    struct dp_spec_params params;
    int n_patterns;   /* pattern library size (6, 8, 12, ...) */
    double conn_rate; /* pattern + connectivity: keep 1/conn_rate of the kernels; 0 none */
    double rho;       /* < 0: the global rho */
    enum dp_spec_circ_from circ_from; /* circulant rules: their "from" (default admm) */
};

struct dp_spec {
    enum dp_spec_method method;
    uint64_t seed;
    int batch;
    int admm_iters, epochs_per_iter;
    double rho, rho_factor, rho_max, admm_lr;
    int retrain_epochs;
    double retrain_lr;
    int magnitude_steps;
    enum dp_spec_alloc magnitude_alloc;
    double momentum, weight_decay;
    int adam;   /* optimizer.type "adam" (L2 weight decay, betas 0.9/0.999; momentum unused) */
    int purify; /* drop dead filters and channels after the run (shapes shrink) */
    int stages; /* progressive: intermediate targets rate^(s/stages), s = 1..stages */
    double tolerance; /* a stage is accepted when its accuracy is >= dense - tolerance */
    int auto_on;      /* per-layer rates chosen automatically (auto_* below) */
    enum dp_spec_objective auto_objective;
    double auto_rate;      /* the global target rate on parameters or FLOPs */
    int auto_search_iters; /* simulated-annealing steps */
    int auto_eval_images;  /* validation images the sensitivity analysis evaluates on */
    enum dp_spec_auto_alloc auto_alloc;
    /* objective "latency": the device selector (compact JSON, as a job's
     * profile.devices entry) whose latency table the rates are chosen
     * against; "" otherwise. */
    char auto_device[256];
    double val_fraction;    /* share of the training set held out for every decision */
    uint64_t val_seed;      /* which samples are held out */
    double target_residual; /* ADMM hardens once every layer's ||W - Z|| / ||W|| is <= this */
    double support_change;  /* ... and at most this fraction of each layer's support moved;
                               target_residual 0: after the last iteration */
    int budget_epochs;      /* every training epoch of the run in all; 0: from the schedule */
    int retrain_keep_best;  /* retraining ends on its epoch of best validation accuracy */
    double distill_temperature, distill_weight; /* knowledge distillation; weight 0: none */
    /* Circulant rules: every rule of the spec is one then, all with the
     * same "from" (one path for the whole run); NONE when there are none. */
    enum dp_spec_circ_from circ_from;
    int n_rules;
    struct dp_spec_rule rules[DP_SPEC_MAX_RULES];
};

/* Parses and validates text (len bytes, at most DP_SPEC_MAX_BYTES).
 * Unknown fields are errors too: a typo must not silently mean a default. */
enum dp_err dp_spec_parse(const char *text, size_t len, struct dp_spec *out, struct dp_errinfo *ei);

/* Reads and parses a spec file; messages start with the path. */
enum dp_err dp_spec_load(const char *path, struct dp_spec *out, struct dp_errinfo *ei);

/* The rule for a layer name, or NULL when none matches. */
const struct dp_spec_rule *dp_spec_rule_for(const struct dp_spec *s, const char *layer);

/* Training epochs the spec spends in all: budget.epochs when set, else
 * stages * (ADMM iterations * epochs + retraining). */
int dp_spec_epochs(const struct dp_spec *s);

/* A 64-bit digest of everything in the spec that shapes a run; a resumed
 * run refuses a checkpoint written under a different spec. */
uint64_t dp_spec_digest(const struct dp_spec *s);

#endif
