/*
 * SGD and Adam (see optim.h). Each update is a flat loop over a trainable
 * parameter's range of the block; element-wise, so threads cannot change
 * the result.
 */
#include "worker/nn/optim.h"

#include <math.h>
#include <string.h>

#include "common/alloc.h"

enum dp_err nn_optim_new(struct dp_model *m, const struct nn_optim_cfg *cfg, struct nn_optim **out,
                         struct dp_errinfo *ei)
{
    *out = NULL;
    if (cfg->momentum < 0.0f || cfg->momentum >= 1.0f)
        return dp_errinfo_set(ei, DP_EINVAL, "momentum %g must be in [0, 1)",
                              (double)cfg->momentum);
    if (cfg->nesterov && cfg->momentum <= 0.0f)
        return dp_errinfo_set(ei, DP_EINVAL, "Nesterov momentum needs momentum > 0");
    if (cfg->weight_decay < 0.0f || !isfinite(cfg->weight_decay))
        return dp_errinfo_set(ei, DP_EINVAL, "weight decay %g must be >= 0",
                              (double)cfg->weight_decay);
    if (cfg->kind == NN_OPTIM_ADAM &&
        (cfg->beta1 < 0.0f || cfg->beta1 >= 1.0f || cfg->beta2 < 0.0f || cfg->beta2 >= 1.0f ||
         !(cfg->eps > 0.0f)))
        return dp_errinfo_set(ei, DP_EINVAL, "Adam needs betas in [0, 1) and eps > 0");
    struct nn_optim *o = dp_calloc(1, sizeof(*o));
    if (o == NULL)
        return dp_errinfo_set(ei, DP_ENOMEM, "out of memory");
    o->cfg = *cfg;
    o->m = m;
    size_t bytes = dp_size_mul(m->n_floats ? m->n_floats : 1, sizeof(float));
    o->m1 = dp_malloc_aligned(bytes);
    if (cfg->kind == NN_OPTIM_ADAM)
        o->m2 = dp_malloc_aligned(bytes);
    if (o->m1 == NULL || (cfg->kind == NN_OPTIM_ADAM && o->m2 == NULL)) {
        nn_optim_free(o);
        return dp_errinfo_set(ei, DP_ENOMEM, "out of memory for optimizer state");
    }
    memset(o->m1, 0, m->n_floats * sizeof(float));
    if (o->m2 != NULL)
        memset(o->m2, 0, m->n_floats * sizeof(float));
    *out = o;
    return DP_OK;
}

void nn_optim_free(struct nn_optim *o)
{
    if (o == NULL)
        return;
    dp_free_aligned(o->m1);
    dp_free_aligned(o->m2);
    dp_free(o);
}

static void optim_sgd(const struct nn_optim *o, float *w, float *g, float *v, size_t n, float lr,
                      int first)
{
    const float mu = o->cfg.momentum, wd = o->cfg.weight_decay;
    const int nesterov = o->cfg.nesterov;
#pragma omp parallel for simd schedule(static) if (n > 16384)
    for (size_t i = 0; i < n; i++) {
        float d = g[i] + wd * w[i];
        if (mu > 0.0f) {
            /* PyTorch seeds the buffer with the first gradient. */
            v[i] = first ? d : mu * v[i] + d;
            d = nesterov ? d + mu * v[i] : v[i];
        }
        w[i] -= lr * d;
    }
}

static void optim_adam(const struct nn_optim *o, float *w, float *g, float *m1, float *m2, size_t n,
                       float lr)
{
    const float b1 = o->cfg.beta1, b2 = o->cfg.beta2, eps = o->cfg.eps;
    const float wd = o->cfg.weight_decay;
    const float bc1 = 1.0f - powf(b1, (float)o->t), bc2 = 1.0f - powf(b2, (float)o->t);
    const float step = lr / bc1, rbc2 = 1.0f / sqrtf(bc2);
#pragma omp parallel for simd schedule(static) if (n > 16384)
    for (size_t i = 0; i < n; i++) {
        float d = g[i] + wd * w[i];
        m1[i] = b1 * m1[i] + (1.0f - b1) * d;
        m2[i] = b2 * m2[i] + (1.0f - b2) * d * d;
        w[i] -= step * m1[i] / (sqrtf(m2[i]) * rbc2 + eps);
    }
}

void nn_optim_step(struct nn_optim *o, float *grad, float lr, const struct nn_optim_hooks *hooks)
{
    struct dp_model *m = o->m;
    const float *mask = hooks != NULL ? hooks->mask : NULL;
    if (hooks != NULL && hooks->extra_grad != NULL)
        hooks->extra_grad(hooks->ud, m, grad);
    o->t++;
    for (int pi = 0; pi < m->n_params; pi++) {
        const struct dp_param *p = &m->params[pi];
        if (!p->trainable)
            continue;
        float *w = m->data + p->offset, *g = grad + p->offset;
        if (mask != NULL) {
            const float *mk = mask + p->offset;
            for (size_t i = 0; i < p->numel; i++)
                g[i] *= mk[i];
        }
        if (o->cfg.kind == NN_OPTIM_SGD)
            optim_sgd(o, w, g, o->m1 + p->offset, p->numel, lr, o->t == 1);
        else
            optim_adam(o, w, g, o->m1 + p->offset, o->m2 + p->offset, p->numel, lr);
        if (mask != NULL) {
            const float *mk = mask + p->offset;
            for (size_t i = 0; i < p->numel; i++)
                w[i] *= mk[i];
        }
    }
    if (hooks != NULL && hooks->post_step != NULL)
        hooks->post_step(hooks->ud, m);
}
