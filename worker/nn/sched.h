/*
 * Learning-rate schedules: constant, step, cosine, each with an optional
 * linear warm-up. Step decay changes once per epoch, like PyTorch's StepLR;
 * cosine and warm-up follow the fractional epoch (epoch + step / steps per
 * epoch), so the rate anneals within an epoch: at epoch boundaries cosine
 * gives the per-epoch values.
 */
#ifndef DP_WORKER_NN_SCHED_H
#define DP_WORKER_NN_SCHED_H

#include "common/err.h"

enum nn_sched_kind { NN_SCHED_CONST, NN_SCHED_STEP, NN_SCHED_COSINE };

struct nn_sched {
    enum nn_sched_kind kind;
    float base_lr;
    float gamma;        /* step: multiply by gamma ... */
    int step_epochs;    /* ... every step_epochs epochs */
    int total_epochs;   /* cosine: T_max */
    float min_lr;       /* cosine: eta_min */
    int warmup_epochs;  /* 0 = none */
    float warmup_start; /* warm-up starts at base_lr * warmup_start */
};

/* Parses "const", "step", "cosine"; DP_EINVAL with a message otherwise. */
enum dp_err nn_sched_kind_parse(const char *s, enum nn_sched_kind *out, struct dp_errinfo *ei);

/* Checks ranges; the message names the bad knob. */
enum dp_err nn_sched_validate(const struct nn_sched *s, struct dp_errinfo *ei);

/* Learning rate at `epoch` (0-based) and fraction `frac` in [0, 1) of it. */
float nn_sched_lr(const struct nn_sched *s, int epoch, double frac);

#endif
