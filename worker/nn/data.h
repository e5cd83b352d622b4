/*
 * Datasets for the training engine: image tensors and their labels, read from
 * the formats training jobs name in their spec, or made up for benchmarks.
 *
 * Usage:
 *
 *     struct nn_dataset train = {0};
 *     struct dp_errinfo ei = {0};
 *     enum dp_err err = nn_dataset_load("idx:/usr/share/datasets/fashion-mnist",
 *                                       NN_SPLIT_TRAIN, &train, &ei);
 *     if (err != DP_OK)
 *         ... report dp_errinfo_msg(&ei, err) ...
 *     nn_dataset_channel_stats(&train, mean, std);   // for the loader
 *     ...
 *     nn_dataset_free(&train);
 *
 * Images are stored NCHW in the element type of the file: 8-bit files stay
 * uint8 in memory (Fashion-MNIST's 60000 training images take 47 MB, not the
 * 188 MB floats would), float32 files stay float. Exactly one of `u8` and
 * `f32` is non-NULL in a loaded dataset; worker/nn/loader.h turns either into
 * normalised float batches.
 *
 * Spec strings:
 *
 *   idx:DIR    MNIST-style IDX files: DIR/train-images-idx3-ubyte,
 *              train-labels-idx1-ubyte, t10k-images-idx3-ubyte and
 *              t10k-labels-idx1-ubyte, each plain or with a .gz suffix.
 *   cifar:DIR  CIFAR-10 binary: DIR/data_batch_1.bin .. data_batch_5.bin
 *              (train) and DIR/test_batch.bin (test), records of 1 label byte
 *              and 3x32x32 pixel bytes.
 *   npy:DIR    NumPy .npy (format 1.0, 2.0 and 3.0): DIR/train_images.npy,
 *              train_labels.npy, test_images.npy, test_labels.npy. Images are
 *              '|u1' or '<f4' with shape (N, H, W) or (N, C, H, W), C order;
 *              labels '<i8', '<i4', '<i2' or '|u1' with shape (N,).
 *
 * Errors (every message names the file and what is wrong with it):
 *
 *   DP_EINVAL        malformed spec string or argument
 *   DP_ENOENT        a file is missing
 *   DP_EIO           a read failed
 *   DP_EFORMAT       bad magic, malformed header, corrupt gzip stream, label
 *                    out of range, implausible dimensions, trailing data,
 *                    CIFAR file size not a multiple of the record size
 *   DP_ETRUNC        the data ends before the header says it should, in the
 *                    file or inside its gzip stream
 *   DP_ESHAPE        image and label counts differ
 *   DP_EUNSUPPORTED  valid but unsupported: NPY dtype, Fortran order, C > 4
 *   DP_ETOOBIG       the images would exceed NN_DATASET_MAX_BYTES
 *   DP_ENOMEM        out of memory
 *
 * Sizes are checked with overflow-safe arithmetic before anything is
 * allocated, and gzip input is decompressed only up to the size its header
 * announces (plus one byte to detect trailing data), so a gzip bomb cannot
 * make the reader allocate or inflate more than the cap.
 */
#ifndef DP_WORKER_NN_DATA_H
#define DP_WORKER_NN_DATA_H

#include <stdint.h>

#include "common/err.h"
#include "common/model.h"

/* Hard caps on what a loader accepts (STYLE rule 15). */
#define NN_DATASET_MAX_BYTES   ((uint64_t)2 << 30) /* image bytes in memory, 2 GiB */
#define NN_DATASET_MAX_C       4                   /* channels: gray, RGB, RGBA */
#define NN_DATASET_MAX_HW      4096                /* height and width, each */
#define NN_DATASET_MAX_CLASSES 1000

enum nn_split {
    NN_SPLIT_TRAIN = 0,
    NN_SPLIT_TEST = 1,
};

/*
 * A set of n images of c x h x w pixels with one class label each.
 *
 *   u8     (n, c, h, w) pixels 0..255, or NULL when the set is float
 *   f32    (n, c, h, w) values on the [0, 1] scale, or NULL when the set is u8
 *   labels (n) in [0, n_classes)
 *
 * The struct owns its arrays. A zeroed struct is a valid empty dataset.
 */
struct nn_dataset {
    int n, c, h, w;
    int n_classes;
    uint8_t *u8;
    float *f32;
    int32_t *labels;
};

/*
 * Loads split (NN_SPLIT_TRAIN or NN_SPLIT_TEST) of the dataset named by spec
 * (see the top of this file) into *out, which the caller later releases with
 * nn_dataset_free. *out is overwritten without being freed first; on failure
 * it is left zeroed and ei (may be NULL) says which file is wrong and how.
 *
 * n_classes is the largest label + 1 (for idx and npy) or 10 (cifar), so a
 * test split can report fewer classes than its training split; use the
 * training split's value to size a model. Any thread; reentrant.
 */
enum dp_err nn_dataset_load(const char *spec, enum nn_split split, struct nn_dataset *out,
                            struct dp_errinfo *ei);

/*
 * Fills *out with n synthetic uint8 images of c x h x w and labels uniform in
 * [0, n_classes), all determined by seed. The images are learnable but not
 * trivial: each class has a random template, and every image is its class's
 * template averaged with per-image noise. Meant for speed benchmarks and
 * smoke tests. Returns DP_EINVAL for sizes outside the caps above (n >= 1,
 * 1 <= c <= NN_DATASET_MAX_C, 1 <= n_classes <= NN_DATASET_MAX_CLASSES),
 * DP_ETOOBIG or DP_ENOMEM; *out is zeroed on failure. Release with
 * nn_dataset_free. Any thread.
 */
enum dp_err nn_dataset_synthetic(struct nn_dataset *out, int n, int c, int h, int w, int n_classes,
                                 uint64_t seed);

/*
 * Copies samples [start, start + count) of src into *out (a new dataset the
 * caller releases with nn_dataset_free; n_classes is kept from src, so a
 * subset sizes models like its source). Returns DP_EINVAL when the range is
 * not inside src or count < 1, DP_ENOMEM; *out is zeroed on failure.
 */
enum dp_err nn_dataset_subset(struct nn_dataset *out, const struct nn_dataset *src, int start,
                              int count);

/*
 * Carves a held-out validation set out of src: n_val = round(n * fraction)
 * samples (at least 1, at most n - 1) drawn by a permutation seeded with
 * seed go to *val, the others to *rest; both keep src's order and
 * n_classes. The same (src, fraction, seed) always gives the same split.
 * Both outputs are new datasets the caller releases with nn_dataset_free;
 * on failure both are zeroed. DP_EINVAL when fraction is not in (0, 1) or
 * src has fewer than 2 samples, DP_ENOMEM.
 */
enum dp_err nn_dataset_split(const struct nn_dataset *src, double fraction, uint64_t seed,
                             struct nn_dataset *rest, struct nn_dataset *val);

/*
 * Keeps only the first n_max samples of ds (a no-op when ds->n <= n_max or
 * n_max < 0), giving the rest of the memory back where the allocator can.
 * n_classes is unchanged. Used to shorten test runs. Cannot fail.
 */
void nn_dataset_limit(struct nn_dataset *ds, int n_max);

/*
 * Computes the per-channel mean and (population) standard deviation of all
 * pixels of ds on the [0, 1] scale: u8 pixels count as value/255, f32 values
 * as they are. mean and std must each hold ds->c floats. An empty dataset
 * gives 0 and 0. Accumulates in double (exact for u8). Any thread.
 */
void nn_dataset_channel_stats(const struct nn_dataset *ds, float *mean, float *std);

/* The statistics the engine normalises with: as nn_dataset_channel_stats,
 * but a constant channel (std below 1e-6) gets std 1, so it is centred
 * rather than blown up. Training, evaluation and compression all use this,
 * so a model is always evaluated the way it was trained. */
void nn_dataset_norm_stats(const struct nn_dataset *ds, float *mean, float *std);

/*
 * The normalisation the engine feeds m with (ds->c floats each into mean
 * and std): m's own when it records one for ds->c channels (it travels
 * with the model: a checkpoint, or an imported ONNX model that normalises
 * in its graph or says so in its metadata, is never normalised twice);
 * otherwise nn_dataset_norm_stats of ds (the training set), which is then
 * recorded in m when ds->c equals m's input channels, so checkpoints and
 * exports carry it. Any thread; mutates m only to record.
 */
void nn_dataset_model_norm(const struct nn_dataset *ds, struct dp_model *m, float *mean,
                           float *std);

/* Releases the arrays of ds and zeroes it. ds may be NULL or already zeroed. */
void nn_dataset_free(struct nn_dataset *ds);

#endif
