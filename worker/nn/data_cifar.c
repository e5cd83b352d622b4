/*
 * The CIFAR-10 binary reader behind "cifar:DIR".
 *
 * The training split is data_batch_1.bin .. data_batch_5.bin, the test split
 * test_batch.bin (the names come from common/dataset.c's table). Each file is a sequence of
 * 3073-byte records: one label byte (0..9) followed by a 3x32x32 image, channel-major (all red,
 * then all green, then all blue, rows top to bottom), which is already NCHW.
 *
 * The format has no header, so the file sizes are the only check of the
 * record count: every file must be a non-empty multiple of 3073 bytes. All
 * files are sized first, then the dataset is allocated once and filled.
 */
#include "worker/nn/data.h"

#include <inttypes.h>
#include <stdio.h>

#include "common/dataset.h"
#include "worker/nn/data_int.h"

#define CIFAR_CLASSES   10
#define CIFAR_IMG_LEN   (3 * 32 * 32)
#define CIFAR_REC_LEN   (1 + CIFAR_IMG_LEN)
#define CIFAR_MAX_FILES 5

/* Opens one CIFAR file and checks that it is plain and a whole number of records. */
static enum dp_err cifar_open(struct nn_data__file *f, const char *dir, const char *name,
                              uint64_t *n_records, struct dp_errinfo *ei)
{
    enum dp_err err = nn_data__open(f, dir, name, 0, ei);
    if (err != DP_OK)
        return err;
    if (nn_data__is_gzip(f)) {
        err = dp_errinfo_set(ei, DP_EUNSUPPORTED,
                             "%s: the file is gzip-compressed; CIFAR-10 binaries must be "
                             "decompressed first",
                             f->path);
    } else if (f->file_len == 0 || f->file_len % CIFAR_REC_LEN != 0) {
        err = dp_errinfo_set(ei, DP_EFORMAT,
                             "%s: size %" PRIu64 " bytes is not a positive multiple of the %d-byte "
                             "CIFAR-10 record (truncated, or not a CIFAR-10 binary file)",
                             f->path, f->file_len, CIFAR_REC_LEN);
    }
    if (err != DP_OK) {
        nn_data__close(f);
        return err;
    }
    *n_records = f->file_len / CIFAR_REC_LEN;
    return DP_OK;
}

enum dp_err nn_data__load_cifar(const struct dp_dataset_format *fmt, const char *dir,
                                enum nn_split split, struct nn_dataset *out, struct dp_errinfo *ei)
{
    const char *names[CIFAR_MAX_FILES];
    enum dp_dataset_split part = split == NN_SPLIT_TEST ? DP_DATASET_TEST : DP_DATASET_TRAIN;
    int n_files = dp_dataset_engine_files(fmt, part, DP_DATASET_RECORDS, names, CIFAR_MAX_FILES);
    if (n_files < 1 || n_files > CIFAR_MAX_FILES)
        return dp_errinfo_set(ei, DP_EINVAL, "internal: the %s format lists %d files for a split",
                              fmt->name, n_files);
    uint64_t counts[CIFAR_MAX_FILES];
    uint64_t total = 0;
    int64_t s = 0; /* the sample being filled */
    struct nn_data__file f = {0};
    char what[160];
    enum dp_err err;

    /* Pass 1: sizes only, so the one allocation is checked against the caps. */
    for (int i = 0; i < n_files; i++) {
        err = cifar_open(&f, dir, names[i], &counts[i], ei);
        if (err != DP_OK)
            goto out;
        nn_data__close(&f);
        total += counts[i];
    }
    err = nn_data__alloc(out, (int64_t)total, 3, 32, 32, 0, f.path, ei);
    if (err != DP_OK)
        goto out;

    /* Pass 2: the records. A file that changed in between is reported as truncated. */
    for (int i = 0; i < n_files; i++) {
        uint64_t n_here;
        err = cifar_open(&f, dir, names[i], &n_here, ei);
        if (err != DP_OK)
            goto out;
        if (n_here != counts[i]) {
            err =
                dp_errinfo_set(ei, DP_EIO, "%s: the file changed while it was being read", f.path);
            goto out;
        }
        snprintf(what, sizeof(what), "its size says %" PRIu64 " records", n_here);
        for (uint64_t r = 0; r < n_here; r++, s++) {
            uint8_t label;
            err = nn_data__read(&f, &label, 1, what, ei);
            if (err != DP_OK)
                goto out;
            if (label >= CIFAR_CLASSES) {
                err = dp_errinfo_set(ei, DP_EFORMAT,
                                     "%s: record %" PRIu64 " has label %u (CIFAR-10 labels are "
                                     "0..%d)",
                                     f.path, r, (unsigned)label, CIFAR_CLASSES - 1);
                goto out;
            }
            out->labels[s] = label;
            err = nn_data__read(&f, out->u8 + (size_t)s * CIFAR_IMG_LEN, CIFAR_IMG_LEN, what, ei);
            if (err != DP_OK)
                goto out;
        }
        err = nn_data__expect_eof(&f, ei);
        if (err != DP_OK)
            goto out;
        nn_data__close(&f);
    }
    out->n_classes = CIFAR_CLASSES;

out:
    nn_data__close(&f);
    if (err != DP_OK)
        nn_dataset_free(out);
    return err;
}
