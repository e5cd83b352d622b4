/*
 * The training loop: epochs of shuffled mini-batches through the executor
 * and an optimizer, evaluation on a test set after each epoch, and hooks for
 * the compression engine.
 *
 *   struct nn_train_cfg cfg = nn_train_cfg_default();
 *   cfg.epochs = 20;
 *   err = nn_train(model, &train, &test, &cfg, &hooks, &result, &ei);
 *
 * The compression engine drives ADMM through the same loop: it passes its
 * extra gradient term and masks in hooks->optim and is told of every epoch
 * through hooks->on_epoch. Same seed and thread count give the same result.
 */
#ifndef DP_WORKER_NN_TRAIN_H
#define DP_WORKER_NN_TRAIN_H

#include <signal.h>
#include <stdint.h>

#include "common/err.h"
#include "common/model.h"
#include "worker/nn/data.h"
#include "worker/nn/optim.h"
#include "worker/nn/sched.h"

struct nn_train_cfg {
    int epochs;
    int batch;
    struct nn_optim_cfg optim;
    struct nn_sched sched; /* base_lr is the learning rate */
    uint64_t seed;         /* shuffling, augmentation, dropout */
    int augment;           /* random crop (pad 4) + horizontal flip */
    int profile;           /* log per-layer forward/backward time at the end */
    int no_dnnl;           /* run convolutions on the im2col+BLAS kernels, not oneDNN */
    /* Continue an interrupted run instead of starting one: NULL from scratch. */
    const struct nn_train_resume *resume;
    /* Per-channel normalisation (in_c floats each, borrowed): NULL for the
     * training set's own statistics. A caller training on a part of its
     * data (the compression engine holds out a validation split) passes
     * the whole set's, so the model is normalised as every other command
     * will normalise it. */
    const float *mean, *std;
    /* Knowledge distillation from a teacher (worker/nn/distill.h): NULL none. */
    const struct nn_distill_cfg *distill;
};

/* The teacher is run in eval mode on every training batch; it must take
 * the student's inputs and have its number of outputs. Borrowed. */
struct nn_distill_cfg {
    struct dp_model *teacher;
    float temperature; /* >= 1 */
    float weight;      /* a in [0, 1]: the soft term's share of the loss */
};

/* Where a run stopped, as written by a checkpoint after an epoch: the
 * model's weights are already in the model; shuffling, augmentation and
 * dropout streams are functions of (seed, epoch, step), so epochs, moments
 * and the step counter are all that is needed to continue bit for bit. */
struct nn_train_resume {
    int start_epoch;      /* epochs already done, 0..epochs */
    const float *m1, *m2; /* optimizer moments, n_floats each (m2: Adam only) */
    long t;               /* optimizer steps taken */
};

/* SGD lr 0.01, momentum 0.9, weight decay 5e-4, cosine, batch 64, 10 epochs. */
struct nn_train_cfg nn_train_cfg_default(void);

struct nn_epoch_stats {
    int epoch; /* 1-based */
    int epochs;
    float lr;
    double train_loss, train_acc; /* running means over the epoch, accuracy in [0, 1] */
    double test_loss, test_acc;   /* on the test set, eval mode; -1 without one */
    double images_per_s;          /* training throughput of this epoch */
    double elapsed_s, eta_s;
};

typedef void (*nn_epoch_fn)(void *ud, const struct nn_epoch_stats *st);

struct nn_train_hooks {
    struct nn_optim_hooks optim; /* extra gradient term and mask, see optim.h */
    nn_epoch_fn on_epoch;        /* may be NULL */
    void *ud;
    volatile sig_atomic_t *stop; /* polled between steps; may be NULL */
    int (*stop_fn)(void *ud);    /* polled between steps too; may be NULL */
    /* After each epoch (and after on_epoch), with the optimizer state, so
     * the caller can write a whole-state checkpoint; an error stops the run. */
    enum dp_err (*on_epoch_end)(void *ud, int epochs_done, const struct nn_optim *opt,
                                struct dp_errinfo *ei);
};

struct nn_train_result {
    struct nn_epoch_stats last;
    double train_images_per_s; /* over all epochs, training steps only */
    double train_seconds;
    long steps;
};

/*
 * Trains m (finalized, initialised) on train, evaluating on test after each
 * epoch (test may be NULL). The dataset shapes must match the model input
 * and its label range the model's outputs; mismatches are DP_ESHAPE naming
 * both. Normalisation uses the training set's per-channel mean and std.
 * Returns DP_ENUMERIC if the loss becomes NaN or Inf, DP_EINTERRUPTED when
 * *hooks->stop was raised (the model holds the last completed step).
 */
enum dp_err nn_train(struct dp_model *m, const struct nn_dataset *train,
                     const struct nn_dataset *test, const struct nn_train_cfg *cfg,
                     const struct nn_train_hooks *hooks, struct nn_train_result *res,
                     struct dp_errinfo *ei);

/* Accuracy and mean loss of m on ds in eval mode, normalised with mean/std. */
enum dp_err nn_evaluate(struct dp_model *m, const struct nn_dataset *ds, const float *mean,
                        const float *std, int batch, double *acc, double *loss,
                        struct dp_errinfo *ei);

#endif
