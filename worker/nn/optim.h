/*
 * Optimizers over the model's flat parameter block: SGD (momentum,
 * Nesterov, weight decay) and Adam, with PyTorch's update rules so results
 * are comparable with the PyTorch peer.
 *
 *   struct nn_optim *o;
 *   err = nn_optim_new(model, &cfg, &o, &ei);
 *   ... backward into grad ...
 *   nn_optim_step(o, grad, lr, &hooks);
 *
 * The two hooks the ADMM engine needs (struct nn_optim_hooks):
 *   - extra_grad: called after backward, before the update, to add a term
 *     to the gradient (ADMM adds rho * (W - Z + U) for its tensors);
 *   - mask: a block like the parameter block, 1 to keep and 0 to prune;
 *     gradients are masked before the update and weights re-zeroed after it,
 *     so pruned weights stay exactly zero (masked retraining).
 * Only trainable parameters are updated; buffers (BN statistics) are not.
 */
#ifndef DP_WORKER_NN_OPTIM_H
#define DP_WORKER_NN_OPTIM_H

#include "common/err.h"
#include "common/model.h"

enum nn_optim_kind { NN_OPTIM_SGD, NN_OPTIM_ADAM };

struct nn_optim_cfg {
    enum nn_optim_kind kind;
    float momentum;          /* SGD */
    int nesterov;            /* SGD, needs momentum > 0 */
    float weight_decay;      /* L2 added to the gradient (both kinds, like torch.optim.Adam) */
    float beta1, beta2, eps; /* Adam */
};

/* Adds to grad (n_floats, laid out like m->data) the caller's extra term. */
typedef void (*nn_grad_hook_fn)(void *ud, const struct dp_model *m, float *grad);

/* Runs after every update (and after the mask): the compression engine
 * uses it to put quantized weights back on their levels. */
typedef void (*nn_post_step_fn)(void *ud, struct dp_model *m);

struct nn_optim_hooks {
    nn_grad_hook_fn extra_grad; /* may be NULL */
    void *ud;
    const float *mask;         /* n_floats of 0/1, or NULL for no mask */
    nn_post_step_fn post_step; /* may be NULL; receives ud */
};

struct nn_optim {
    struct nn_optim_cfg cfg;
    struct dp_model *m; /* borrowed */
    float *m1;          /* momentum / Adam first moment, n_floats */
    float *m2;          /* Adam second moment, n_floats (NULL for SGD) */
    long t;             /* steps taken */
};

/* Validates cfg (ranges named in ei) and allocates the state, zeroed. */
enum dp_err nn_optim_new(struct dp_model *m, const struct nn_optim_cfg *cfg, struct nn_optim **out,
                         struct dp_errinfo *ei);
void nn_optim_free(struct nn_optim *o);

/* One update of every trainable parameter with learning rate lr. grad is
 * modified (hooks, weight decay, mask). hooks may be NULL. */
void nn_optim_step(struct nn_optim *o, float *grad, float lr, const struct nn_optim_hooks *hooks);

#endif
