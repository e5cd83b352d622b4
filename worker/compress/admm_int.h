/*
 * The ADMM engine's private state, shared by its files: the loop
 * (admm.c), the report (admm_report.c), the whole-state checkpoint
 * (admm_state.c) and the per-layer rate allocation (admm_alloc.c).
 */
#ifndef DP_WORKER_COMPRESS_ADMM_INT_H
#define DP_WORKER_COMPRESS_ADMM_INT_H

#include <jansson.h>
#include <stdint.h>

#include "worker/circulant/circ.h"
#include "worker/compress/admm.h"
#include "worker/compress/constraint.h"
#include "worker/nn/optim.h"

/* spec.progressive.stages' upper bound (common/spec.c). */
#define ADMM_MAX_STAGES 16

/*
 * One constrained tensor. A layer gives one (its params[0] weight), or
 * several: an lstm or gru under a circulant rule gives weight_ih and
 * weight_hh, each its own target, so every flat loop over targets (the
 * gradient term, Z and U, masks, quantizers) covers both.
 */
struct admm_target {
    int layer, param;
    const struct dp_spec_rule *rule;
    struct proj_params p;    /* the rule's, pattern library filled in, rate of the current stage */
    struct proj_shape shape; /* (O, I, KH, KW); converted circulant: (vectors, k, 1, 1) */
    /* The quantizer put on the weights in retraining (re-applied after
     * every step): the rule's quant scheme, quant_spectrum for a converted
     * circulant target with spectrum_bits, NULL for none. */
    proj_fn quant;
    /* Circulant rules: converted is set once the parameter holds the block
     * vectors (circ_linear, circ_conv2d, lstm/gru with a block); cd is the
     * matrix (rows, cols, k) of one kernel tap, taps kh * kw (1 but for
     * conv2d). */
    int converted;
    struct circ_dims cd;
    int taps;
    double base_rate; /* the final pruning rate: the rule's, or the automatic choice */
    double conn_rate; /* pattern + connectivity: the current stage's kernel rate (0: none) */
    double rho;
    double resid; /* ||W - Z|| / ||W|| after the last Z-step */
    double dual;  /* rho ||Z - Z_prev|| / ||W|| of the last Z-step */
    double moved; /* fraction of the weights whose membership of supp(Z) changed then */
    double stage_rate[ADMM_MAX_STAGES]; /* spec.auto: each stage's rate, chosen at its start */
};

enum admm_step_kind { ADMM_STEP_ADMM, ADMM_STEP_RETRAIN, ADMM_STEP_MAGNITUDE };

/* One call of nn_train in the plan of a run, with what happens around it. */
struct admm_step {
    enum admm_step_kind kind;
    int stage, iter, last_iter; /* iter: ADMM iteration or magnitude round */
    int epochs;
    double lr;
    uint64_t seed;
    int skipped; /* an ADMM iteration after its stage converged: its epochs went to retraining */
};

struct admm_ctx {
    struct dp_model *m;
    const struct dp_spec *spec;
    const struct admm_callbacks *cb;
    int n_t;
    struct admm_target *t;
    /* The held-out validation split takes every decision (stage acceptance,
     * automatic rates, convergence); the test split is only reported. */
    const struct nn_dataset *train, *val, *test;
    /* spec.distill: the dense model as the teacher of every training step,
     * a view sharing c->m's graph with its own copy of the dense weights
     * (64-byte aligned, owned); teacher.data NULL when not distilling. */
    struct dp_model teacher;
    float *z, *u, *mask; /* n_floats each */
    int converted;       /* the circulant rules' layers are in their circulant form */
    int mask_on;         /* apply the mask: after the first hard projection */
    void *scratch;
    int quant_on;  /* re-project quantized targets after every step */
    int shadow_on; /* z and u hold the latent and quantized weights (retraining) */

    /* The plan and the position in it: step si, ep of its epochs done. */
    int n_steps;
    struct admm_step *steps;
    int si, ep;
    int halted;      /* a progressive stage was rejected: stop, keep the best */
    float *best;     /* the last accepted stage's weights (n_floats), or NULL */
    int best_stage;  /* -1: none accepted yet */
    int epochs_done; /* over every session of the run */
    int epochs_planned;
    int epochs_offset; /* epochs of an earlier phase (the compress task's, for retrain) */
    double dense_acc, dense_val_acc;
    int spare_epochs; /* epochs a converged last stage left to the retrain phase */
    /* retrain.keep_best: the running retraining's best epoch so far (its
     * weights in rbest, n_floats, owned; rbest_epoch 0: none yet). */
    float *rbest;
    double rbest_acc;
    int rbest_epoch;
    float mean[NN_DATASET_MAX_C], std[NN_DATASET_MAX_C];     /* the training set's, to normalise */
    double last_loss, last_train_acc, last_val_acc, last_lr; /* of the last finished epoch */
    double wall_prev;  /* seconds spent by earlier sessions of this run */
    double t_start;    /* this session's start (monotonic seconds) */
    json_t *trace;     /* per-iteration records (owned) */
    json_t *stages;    /* per-stage records (owned) */
    json_t *auto_info; /* the automatic rate allocation's record, or NULL (owned) */
    /* Optimizer moments to continue from: a step resumed from a checkpoint,
     * or the next W-step of a stage (kept at the end of the one before). */
    float *res_m1, *res_m2;
    long res_t;
    int have_res;
};

/*
 * Fills c->t from c->m and c->spec: one target per compressible layer a
 * rule matches, with its rule's parameters, and the pattern library of
 * every pattern rule chosen from the pretrained weights of all the layers
 * it matches. Allocates c->t and c->scratch (the caller frees both, also
 * on failure). DP_EINVAL when no layer matches or a pattern rule meets a
 * kernel that is not 3x3; DP_ENOMEM.
 */
enum dp_err admm_targets(struct admm_ctx *c, struct dp_errinfo *ei);

/*
 * Circulant rules: replaces the model (in place: *c->m takes the new
 * graph and block, the old ones are freed) by its conversion
 * (worker/compress/circ_convert.h) of every layer a circulant rule
 * matches: projected (ADMM's hard-projected weights convert exactly), or
 * freshly drawn with `fresh` (training from scratch). Z, U and the mask are
 * reallocated for the new parameter block, the targets rebuilt on the
 * converted layers, optimizer moments dropped; sets c->converted.
 */
enum dp_err admm_circ_convert(struct admm_ctx *c, int fresh, struct dp_errinfo *ei);

/*
 * Fills c->steps and c->n_steps with the run's plan from c->spec (and the
 * phase in c->cb, which may be NULL for the whole run). Every step gets
 * its own training seed, distinct from every other step's for any spec
 * the validator accepts. Allocates c->steps (the caller frees it).
 */
enum dp_err admm_plan(struct admm_ctx *c, struct dp_errinfo *ei);

/*
 * What happens around the training of plan step sp: before it (the
 * stage's rates, Z and U initialised, rho grown between ADMM iterations, a
 * magnitude round) and after it (the Z and U updates, the hard projection,
 * a stage's acceptance). admm_run calls them around nn_train; tests call
 * them around a W-step of their own.
 */
enum dp_err admm_step_begin(struct admm_ctx *c, const struct admm_step *sp, struct dp_errinfo *ei);
enum dp_err admm_step_end(struct admm_ctx *c, const struct admm_step *sp, struct dp_errinfo *ei);

/* The target's weights in the model block, and their count. */
float *admm_w(const struct admm_ctx *c, const struct admm_target *t);
size_t admm_numel(const struct admm_ctx *c, const struct admm_target *t);

/* P_i: the pruning projection (and the connectivity one for pattern +
 * connectivity), then, with with_quant, the quantizer. */
void admm_project(const struct admm_ctx *c, const struct admm_target *t, float *x, int with_quant);

/* Sets every target's current rate to base_rate^f (and its connectivity
 * rate likewise): f = s / steps for round s of a gradual schedule. */
void admm_set_rates(struct admm_ctx *c, double f);

/* admm_set_rates for progressive stage `stage` of spec->stages:
 * f = (stage + 1) / stages. */
void admm_stage_rates(struct admm_ctx *c, int stage);

/* Seconds the run has taken over all its sessions so far. */
double admm_wall_seconds(const struct admm_ctx *c);

/* Bits per stored weight of a target (32 unquantized). */
unsigned admm_value_bits(const struct admm_target *t);

/* Writes each constrained layer's compression metadata into the IR. */
void admm_record_metadata(struct admm_ctx *c);

/* The report (see admm.h): final_acc on the test split, final_val on the
 * validation split; NULL when out of memory. */
json_t *admm_report(const struct admm_ctx *c, double final_acc, double final_val, double seconds);

/* Fraction of zeros over all targets' weights. */
double admm_sparsity(const struct admm_ctx *c);

/* ---- Whole-state checkpoint (admm_state.c) ---- */

/* Writes the state at position (si, ep) with the optimizer moments of the
 * running step (opt may be NULL between steps: then the moments kept for
 * the next W-step, if any). */
enum dp_err admm_state_save(const struct admm_ctx *c, const char *path, int si, int ep,
                            const struct nn_optim *opt, struct dp_errinfo *ei);

/* Loads a state written by admm_state_save for the same model and spec
 * into c (position, weights, Z, U, mask, rho, rates, trace, moments). */
enum dp_err admm_state_load(struct admm_ctx *c, const char *path, struct dp_errinfo *ei);

/* ---- Per-layer rates (admm_alloc.c) ---- */

/* magnitude.allocation "global": the current round's keep fraction spread
 * by one magnitude threshold over all targets, whose p.rate it sets.
 * DP_ENOMEM when the sort buffer cannot be had. */
enum dp_err admm_alloc_global(struct admm_ctx *c, double frac, struct dp_errinfo *ei);

/* One magnitude threshold over all targets' current weights keeping
 * 1/rate of them in all; sets every target's p.rate. DP_ENOMEM. */
enum dp_err admm_alloc_global_rate(struct admm_ctx *c, double rate, struct dp_errinfo *ei);

/* The automatic rates' search: one grid rate per target. */
#define ALLOC_GRID_MAX 24
struct admm_alloc_search {
    int n_t, n_g;
    double grid[ALLOC_GRID_MAX];
    double *damage; /* n_t * n_g: loss increase of target k alone at grid rate g */
    double *cost;   /* n_t * n_g: what target k keeps at grid rate g (weights, MACs or ms) */
    double budget;  /* the most the kept cost may sum to */
    /* A second budget the choice must also meet (the latency objective's
     * weight target), or cost2 NULL: none. n_t * n_g like cost. */
    double *cost2;
    double budget2;
};

/* The kept cost of the choice idx (one grid index per target). */
double admm_alloc_kept(const struct admm_alloc_search *s, const int *idx);

/* Whether the choice idx meets the budget (and budget2 when set). */
int admm_alloc_feasible(const struct admm_alloc_search *s, const int *idx);

/* Simulated annealing from best (in: the start, out: the best feasible
 * choice found; unchanged when none is) minimising the summed damage
 * within the budget (and budget2); seeded, so reproducible. */
void admm_alloc_anneal(const struct admm_alloc_search *s, int iters, uint64_t seed, int *best);

/* The automatic rates' choice for `target`: makes every damage curve of s
 * monotone in the rate (its running maximum), starts from the better of
 * the uniform allocation and the Lagrangian one, and anneals (seeded).
 * idx: one grid index per target. */
void admm_alloc_choose(struct admm_alloc_search *s, double target, int iters, uint64_t seed,
                       int *idx);

/* spec.auto for progressive stage `stage` (-1: the whole run at once, the
 * magnitude baseline): the target auto.rate^((stage + 1) / stages) spread
 * over the layers on their current weights, by sensitivity analysis on
 * the validation split and simulated annealing, or by one global
 * magnitude threshold (auto.allocation). Sets every target's
 * stage_rate[stage] and p.rate (stage -1: base_rate) and c->auto_info. */
enum dp_err admm_alloc_auto(struct admm_ctx *c, int stage, struct dp_errinfo *ei);

#endif
