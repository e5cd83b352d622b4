/*
 * Batching for the training engine: walks a dataset (worker/nn/data.h) in
 * (optionally shuffled) order and fills normalised, optionally augmented
 * float batches.
 *
 * Usage:
 *
 *     float mean[NN_DATASET_MAX_C], std[NN_DATASET_MAX_C];
 *     nn_dataset_channel_stats(&train, mean, std);
 *     struct nn_loader_cfg cfg = {.batch = 128, .shuffle = 1, .augment = 0,
 *                                 .mean = mean, .std = std, .seed = 42};
 *     struct nn_loader ld;
 *     err = nn_loader_init(&ld, &train, &cfg, &ei);
 *     for (int epoch = 0; epoch < n_epochs; epoch++) {
 *         nn_loader_start_epoch(&ld, epoch);
 *         for (;;) {
 *             int b = nn_loader_next(&ld, x, y);   // x (batch, C, H, W), y (batch)
 *             if (b == 0)
 *                 break;
 *             ... train on the first b samples of x and y ...
 *         }
 *     }
 *     nn_loader_free(&ld);
 *
 * Determinism: the sample order of an epoch is a function of (seed, epoch)
 * only, and the augmentation of a sample a function of (seed, epoch, sample
 * index) only, so a run is reproducible from its seed whatever the number of
 * OpenMP threads and whichever epoch it resumes at.
 *
 * Normalisation: a u8 pixel v becomes (v / 255 - mean[c]) / std[c]; a float
 * value v becomes (v - mean[c]) / std[c].
 *
 * Augmentation (CIFAR style, as torchvision's RandomCrop(padding=4) followed
 * by RandomHorizontalFlip): the image is padded with 4 pixels of value 0 on
 * every side, an H x W window is cut at a uniformly random offset (9 x 9
 * choices), and the result is mirrored left-right with probability 1/2.
 * Padding pixels are normalised like a real 0 pixel.
 */
#ifndef DP_WORKER_NN_LOADER_H
#define DP_WORKER_NN_LOADER_H

#include <stdint.h>

#include "common/err.h"
#include "worker/nn/data.h"

#define NN_LOADER_PAD 4 /* pixels of zero padding for the random crop */

/* What nn_loader_init needs to know; zero-initialise and set the fields. */
struct nn_loader_cfg {
    int batch;         /* samples per batch, >= 1 */
    int shuffle;       /* nonzero: a new random order every epoch; zero: dataset order */
    int augment;       /* nonzero: random crop with padding + horizontal flip */
    const float *mean; /* (C) per-channel mean on the [0, 1] scale, or NULL for all 0 */
    const float *std;  /* (C) per-channel standard deviation (> 0), or NULL for all 1 */
    uint64_t seed;     /* determines every shuffle and augmentation */
};

/*
 * A loader. Fields are readable by callers; change them only through the
 * functions below. The dataset is borrowed and must outlive the loader.
 */
struct nn_loader {
    const struct nn_dataset *ds; /* borrowed */
    int batch;
    int shuffle;
    int augment;
    uint64_t seed;
    int epoch;     /* the epoch last started */
    int pos;       /* index into perm of the next sample to deliver */
    int32_t *perm; /* (N) sample order of the current epoch, owned */
    float mean[NN_DATASET_MAX_C];
    float std[NN_DATASET_MAX_C];
    float lut[NN_DATASET_MAX_C][256]; /* normalised value of each u8 pixel, per channel */
};

/*
 * Prepares l to deliver batches of ds according to cfg and starts epoch 0.
 * ds is borrowed: it must stay alive and unchanged until nn_loader_free. The
 * mean and std arrays are copied. Returns DP_EINVAL (message in ei, which may
 * be NULL) for an empty or malformed dataset, batch < 1, or a std that is not
 * positive and finite; DP_ENOMEM. On failure l is zeroed and needs no free.
 * Any thread; the loader itself is not thread-safe (one thread drives it).
 */
enum dp_err nn_loader_init(struct nn_loader *l, const struct nn_dataset *ds,
                           const struct nn_loader_cfg *cfg, struct dp_errinfo *ei);

/* Releases what l owns (not the dataset) and zeroes it. l may be NULL or zeroed. */
void nn_loader_free(struct nn_loader *l);

/*
 * Rewinds to the start of epoch and, when shuffling, draws the epoch's order,
 * which depends only on (seed, epoch): the same epoch number always gives the
 * same order, different epochs give different orders. Cannot fail.
 */
void nn_loader_start_epoch(struct nn_loader *l, int epoch);

/*
 * Fills the next batch: x (b, C, H, W) with normalised (and, if enabled,
 * augmented) images and y (b) with their labels, where b is the return value:
 * cfg.batch, fewer for the last batch of an epoch, 0 once the epoch is
 * exhausted. x must hold batch * C * H * W floats; y must hold batch ints or
 * be NULL. Uses OpenMP threads for large batches; the result does not depend
 * on their number.
 */
int nn_loader_next(struct nn_loader *l, float *x, int32_t *y);

/* The number of batches in an epoch, counting a partial last batch. */
int nn_loader_n_batches(const struct nn_loader *l);

#endif
