/*
 * The NumPy .npy reader behind "npy:DIR".
 *
 * The header (preamble and dict) is read by common/npy.c, the reader the
 * server validates uploads with, so that an upload the server accepts is
 * one this loader reads; the image and label rules are common/npy.c's too.
 * This file adds what only the engine needs: its caps on the dimensions,
 * the data itself (plain or gzip files, through nn_data__file), labels
 * converted to int32 after a range check, and float images checked for
 * NaN and Inf.
 *
 * Images are '|u1' (kept as uint8) or '<f4' (kept as float) with shape
 * (N, H, W) or (N, C, H, W) in C order; labels are any little-endian integer
 * type with shape (N,). The file names come from common/dataset.c's table.
 */
#include "worker/nn/data.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "common/alloc.h"
#include "common/dataset.h"
#include "common/npy.h"
#include "worker/nn/data_int.h"

/* dp_npy_read_fn over an nn_data__file. */
static enum dp_err npy_file_read(void *ctx, void *buf, size_t len, const char *what,
                                 struct dp_errinfo *ei)
{
    return nn_data__read(ctx, buf, len, what, ei);
}

/* Reads f's header; the data may not promise more than a dataset archive
 * can hold (the engine's own caps come after, with their own messages). */
static enum dp_err npy_read_header(struct nn_data__file *f, struct dp_npy_header *h,
                                   struct dp_errinfo *ei)
{
    return dp_npy_read_header(npy_file_read, f, f->path, DP_DATASET_MAX_BYTES, h, ei);
}

static int npy_host_is_little_endian(void)
{
    const uint32_t one = 1;
    uint8_t first;
    memcpy(&first, &one, 1);
    return first == 1;
}

/* ---- Loading ------------------------------------------------------------- */

static enum dp_err npy_load_images(struct nn_data__file *f, const struct dp_npy_header *h,
                                   int64_t n_labels, const char *label_path, struct nn_dataset *out,
                                   struct dp_errinfo *ei)
{
    char shape[128], what[192];
    enum dp_err err;

    err = dp_npy_check_images(h, f->path, ei);
    if (err != DP_OK)
        return err;
    int is_f32 = h->kind == 'f';
    dp_npy_shape_str(h, shape, sizeof(shape));
    if (h->shape[0] != n_labels)
        return dp_errinfo_set(ei, DP_ESHAPE, "%s: %" PRId64 " labels but %s has %" PRId64 " images",
                              label_path, n_labels, f->path, h->shape[0]);

    int64_t n = h->shape[0], c = h->ndim == 4 ? h->shape[1] : 1;
    int64_t hh = h->shape[h->ndim - 2], ww = h->shape[h->ndim - 1];
    err = nn_data__check_dims(n, c, hh, ww, is_f32, f->path, ei);
    if (err != DP_OK)
        return err;
    size_t count = (size_t)n * (size_t)c * (size_t)hh * (size_t)ww;
    snprintf(what, sizeof(what), "header says shape %s of '%s'", shape, h->descr);
    err = nn_data__check_len(f, count * (is_f32 ? sizeof(float) : 1), what, ei);
    if (err != DP_OK)
        return err;
    err = nn_data__alloc(out, n, c, hh, ww, is_f32, f->path, ei);
    if (err != DP_OK)
        return err;

    err = nn_data__read(f, is_f32 ? (void *)out->f32 : (void *)out->u8,
                        count * (is_f32 ? sizeof(float) : 1), what, ei);
    if (err != DP_OK)
        return err;
    err = nn_data__expect_eof(f, ei);
    if (err != DP_OK || !is_f32)
        return err;

    /* The file is little-endian; swap on a big-endian host. Then reject NaN and Inf,
     * which would poison training many steps later and far from the cause. */
    int swap = !npy_host_is_little_endian();
    for (size_t i = 0; i < count; i++) {
        if (swap) {
            uint8_t b[4];
            memcpy(b, &out->f32[i], 4);
            uint8_t t = b[0];
            b[0] = b[3];
            b[3] = t;
            t = b[1];
            b[1] = b[2];
            b[2] = t;
            memcpy(&out->f32[i], b, 4);
        }
        if (!isfinite(out->f32[i]))
            return dp_errinfo_set(ei, DP_EFORMAT, "%s: element %zu is %s", f->path, i,
                                  isnan(out->f32[i]) ? "NaN" : "infinite");
    }
    return DP_OK;
}

/* Reads the label array (header already parsed) into out->labels. */
static enum dp_err npy_load_labels(struct nn_data__file *f, const struct dp_npy_header *h,
                                   struct nn_dataset *out, struct dp_errinfo *ei)
{
    uint8_t *raw = NULL;
    char what[96];
    enum dp_err err;

    size_t n = (size_t)out->n;
    size_t size = (size_t)h->item_size;
    raw = dp_malloc(n * size);
    if (raw == NULL)
        return dp_errinfo_set(ei, DP_ENOMEM, "%s: out of memory for %zu labels", f->path, n);
    snprintf(what, sizeof(what), "header says %zu labels of '%s'", n, h->descr);
    err = nn_data__read(f, raw, n * size, what, ei);
    if (err != DP_OK)
        goto out;
    err = nn_data__expect_eof(f, ei);
    if (err != DP_OK)
        goto out;

    const uint64_t sign = (uint64_t)1 << (8 * size - 1);
    for (size_t i = 0; i < n; i++) {
        uint64_t u = 0;
        for (size_t k = 0; k < size; k++)
            u |= (uint64_t)raw[i * size + k] << (8 * k);
        int negative = h->kind == 'i' && (u & sign) != 0;
        if (negative || u >= NN_DATASET_MAX_CLASSES) {
            /* Two's complement magnitude of a negative value of `size` bytes. */
            uint64_t mag = negative ? (u ^ (sign * 2 - 1)) + 1 : u;
            err = dp_errinfo_set(ei, DP_EFORMAT,
                                 "%s: label %s%" PRIu64 " of sample %zu is out of range (0..%d)",
                                 f->path, negative ? "-" : "", mag, i, NN_DATASET_MAX_CLASSES - 1);
            goto out;
        }
        out->labels[i] = (int32_t)u;
    }
    err = nn_data__finish_labels(out, f->path, ei);

out:
    dp_free(raw);
    return err;
}

enum dp_err nn_data__load_npy(const struct dp_dataset_format *fmt, const char *dir,
                              enum nn_split split, struct nn_dataset *out, struct dp_errinfo *ei)
{
    struct nn_data__file img = {0}, lab = {0};
    struct dp_npy_header ih, lh;
    const char *img_name = NULL, *lab_name = NULL;
    char what[96];
    enum dp_err err;

    enum dp_dataset_split part = split == NN_SPLIT_TEST ? DP_DATASET_TEST : DP_DATASET_TRAIN;
    if (dp_dataset_engine_files(fmt, part, DP_DATASET_IMAGES, &img_name, 1) != 1 ||
        dp_dataset_engine_files(fmt, part, DP_DATASET_LABELS, &lab_name, 1) != 1)
        return dp_errinfo_set(ei, DP_EINVAL, "internal: the %s format has no image and label file",
                              fmt->name);

    /* Both headers first, so that mismatches are found before the big read. */
    err = nn_data__open(&img, dir, img_name, 1, ei);
    if (err != DP_OK)
        goto out;
    err = npy_read_header(&img, &ih, ei);
    if (err != DP_OK)
        goto out;
    err = nn_data__open(&lab, dir, lab_name, 1, ei);
    if (err != DP_OK)
        goto out;
    err = npy_read_header(&lab, &lh, ei);
    if (err != DP_OK)
        goto out;
    err = dp_npy_check_labels(&lh, lab.path, ei);
    if (err != DP_OK)
        goto out;

    if (lh.shape[0] <= INT32_MAX) {
        snprintf(what, sizeof(what), "header says %" PRId64 " labels of '%s'", lh.shape[0],
                 lh.descr);
        err = nn_data__check_len(&lab, lh.data_len, what, ei);
        if (err != DP_OK)
            goto out;
    }

    err = npy_load_images(&img, &ih, lh.shape[0], lab.path, out, ei);
    if (err != DP_OK)
        goto out;
    err = npy_load_labels(&lab, &lh, out, ei);

out:
    nn_data__close(&img);
    nn_data__close(&lab);
    if (err != DP_OK)
        nn_dataset_free(out);
    return err;
}
