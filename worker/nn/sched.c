/*
 * Learning-rate schedules (see sched.h).
 */
#include "worker/nn/sched.h"

#include <math.h>
#include <string.h>

enum dp_err nn_sched_kind_parse(const char *s, enum nn_sched_kind *out, struct dp_errinfo *ei)
{
    if (strcmp(s, "const") == 0)
        *out = NN_SCHED_CONST;
    else if (strcmp(s, "step") == 0)
        *out = NN_SCHED_STEP;
    else if (strcmp(s, "cosine") == 0)
        *out = NN_SCHED_COSINE;
    else
        return dp_errinfo_set(ei, DP_EINVAL,
                              "unknown schedule '%s' (expected const, step or cosine)", s);
    return DP_OK;
}

enum dp_err nn_sched_validate(const struct nn_sched *s, struct dp_errinfo *ei)
{
    if (!(s->base_lr > 0.0f) || !isfinite(s->base_lr))
        return dp_errinfo_set(ei, DP_EINVAL, "learning rate must be > 0");
    if (s->kind == NN_SCHED_STEP && (s->step_epochs < 1 || !(s->gamma > 0.0f)))
        return dp_errinfo_set(ei, DP_EINVAL, "step schedule needs step epochs >= 1, gamma > 0");
    if (s->kind == NN_SCHED_COSINE && s->total_epochs < 1)
        return dp_errinfo_set(ei, DP_EINVAL, "cosine schedule needs total epochs >= 1");
    if (s->warmup_epochs < 0 || s->warmup_start < 0.0f || s->warmup_start > 1.0f)
        return dp_errinfo_set(ei, DP_EINVAL, "warm-up epochs must be >= 0, start in [0, 1]");
    return DP_OK;
}

float nn_sched_lr(const struct nn_sched *s, int epoch, double frac)
{
    double lr = s->base_lr;
    switch (s->kind) {
        case NN_SCHED_CONST:
            break;
        case NN_SCHED_STEP:
            lr *= pow((double)s->gamma, (double)(epoch / s->step_epochs));
            break;
        case NN_SCHED_COSINE: {
            /* Per step, on the fractional epoch: stepped per epoch, a run of
             * one epoch (an ADMM W-step) would never anneal, and each Z-step
             * would project an iterate still noisy from the full rate. */
            double e = (double)epoch + frac;
            if (e > (double)s->total_epochs)
                e = (double)s->total_epochs;
            lr = s->min_lr + (s->base_lr - s->min_lr) *
                                 (1.0 + cos(3.14159265358979323846 * e / s->total_epochs)) / 2.0;
            break;
        }
    }
    if (epoch < s->warmup_epochs) {
        double t = ((double)epoch + frac) / (double)s->warmup_epochs;
        lr *= s->warmup_start + (1.0 - s->warmup_start) * t;
    }
    return (float)lr;
}
