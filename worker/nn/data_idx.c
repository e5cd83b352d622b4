/*
 * The IDX reader behind "idx:DIR" (MNIST, Fashion-MNIST and their kin).
 *
 * An IDX file is a big-endian header followed by raw data:
 *
 *   images: magic 0x00000803 (u8 data, 3 dims), N, rows, cols, N*rows*cols bytes
 *   labels: magic 0x00000801 (u8 data, 1 dim),  N,             N bytes
 *
 * Both headers are read and cross-checked before anything is allocated; the
 * pixel bytes are then read straight into the dataset (they stay uint8), and
 * the label bytes are widened to int32 in place.
 */
#include "worker/nn/data.h"

#include <inttypes.h>
#include <stdio.h>

#include "common/dataset.h"
#include "worker/nn/data_int.h"

#define IDX_MAGIC_IMAGES 0x00000803u
#define IDX_MAGIC_LABELS 0x00000801u

static uint32_t idx_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

/*
 * Reads the 4-byte magic and the (n_dims) 4-byte sizes of an IDX header into
 * dims, checking the magic against want (kind names the file type for the
 * message).
 */
static enum dp_err idx_read_header(struct nn_data__file *f, uint32_t want, const char *kind,
                                   int n_dims, uint32_t *dims, struct dp_errinfo *ei)
{
    uint8_t hdr[16];
    char what[96];

    snprintf(what, sizeof(what), "an IDX %s header needs %d bytes", kind, 4 + 4 * n_dims);
    enum dp_err err = nn_data__read(f, hdr, 4, what, ei);
    if (err != DP_OK)
        return err;
    uint32_t magic = idx_be32(hdr);
    if (magic != want) {
        const char *hint = "";
        if (magic == IDX_MAGIC_LABELS)
            hint = "; this is an IDX label file";
        else if (magic == IDX_MAGIC_IMAGES)
            hint = "; this is an IDX image file";
        return dp_errinfo_set(
            ei, DP_EFORMAT, "%s: bad magic 0x%08" PRIx32 " (expected 0x%08" PRIx32 " for IDX %s%s)",
            f->path, magic, want, kind, hint);
    }
    err = nn_data__read(f, hdr + 4, 4 * (size_t)n_dims, what, ei);
    if (err != DP_OK)
        return err;
    for (int i = 0; i < n_dims; i++)
        dims[i] = idx_be32(hdr + 4 + 4 * i);
    return DP_OK;
}

enum dp_err nn_data__load_idx(const struct dp_dataset_format *fmt, const char *dir,
                              enum nn_split split, struct nn_dataset *out, struct dp_errinfo *ei)
{
    struct nn_data__file img = {0}, lab = {0};
    uint32_t idims[3] = {0}, ldims[1] = {0};
    uint8_t *bytes = NULL;
    char iwhat[128], lwhat[96];
    size_t n_pixels = 0;
    const char *img_name = NULL, *lab_name = NULL;
    enum dp_err err;

    enum dp_dataset_split part = split == NN_SPLIT_TEST ? DP_DATASET_TEST : DP_DATASET_TRAIN;
    if (dp_dataset_engine_files(fmt, part, DP_DATASET_IMAGES, &img_name, 1) != 1 ||
        dp_dataset_engine_files(fmt, part, DP_DATASET_LABELS, &lab_name, 1) != 1)
        return dp_errinfo_set(ei, DP_EINVAL, "internal: the %s format has no image and label file",
                              fmt->name);
    err = nn_data__open(&img, dir, img_name, 1, ei);
    if (err != DP_OK)
        goto out;
    err = idx_read_header(&img, IDX_MAGIC_IMAGES, "images", 3, idims, ei);
    if (err != DP_OK)
        goto out;
    err = nn_data__open(&lab, dir, lab_name, 1, ei);
    if (err != DP_OK)
        goto out;
    err = idx_read_header(&lab, IDX_MAGIC_LABELS, "labels", 1, ldims, ei);
    if (err != DP_OK)
        goto out;
    if (ldims[0] != idims[0]) {
        err = dp_errinfo_set(ei, DP_ESHAPE, "%s: %" PRIu32 " labels but %s has %" PRIu32 " images",
                             lab.path, ldims[0], img.path, idims[0]);
        goto out;
    }

    err = nn_data__check_dims(idims[0], 1, idims[1], idims[2], 0, img.path, ei);
    if (err != DP_OK)
        goto out;
    n_pixels = (size_t)idims[0] * idims[1] * idims[2];
    snprintf(iwhat, sizeof(iwhat), "header says %" PRIu32 " images of %" PRIu32 "x%" PRIu32,
             idims[0], idims[1], idims[2]);
    snprintf(lwhat, sizeof(lwhat), "header says %" PRIu32 " labels", ldims[0]);
    /* Plain files that are too short fail here, before the big allocation. */
    err = nn_data__check_len(&img, n_pixels, iwhat, ei);
    if (err != DP_OK)
        goto out;
    err = nn_data__check_len(&lab, ldims[0], lwhat, ei);
    if (err != DP_OK)
        goto out;

    err = nn_data__alloc(out, idims[0], 1, idims[1], idims[2], 0, img.path, ei);
    if (err != DP_OK)
        goto out;
    err = nn_data__read(&img, out->u8, n_pixels, iwhat, ei);
    if (err != DP_OK)
        goto out;
    err = nn_data__expect_eof(&img, ei);
    if (err != DP_OK)
        goto out;

    /* Read the label bytes into the front of the int32 array, then widen in
     * place from the back: element i's bytes start at 4i >= i, so every byte
     * is read before it is overwritten. */
    bytes = (uint8_t *)out->labels;
    err = nn_data__read(&lab, bytes, (size_t)out->n, lwhat, ei);
    if (err != DP_OK)
        goto out;
    err = nn_data__expect_eof(&lab, ei);
    if (err != DP_OK)
        goto out;
    for (int i = out->n - 1; i >= 0; i--) {
        uint8_t y = bytes[i];
        out->labels[i] = y;
    }
    err = nn_data__finish_labels(out, lab.path, ei);

out:
    nn_data__close(&img);
    nn_data__close(&lab);
    if (err != DP_OK)
        nn_dataset_free(out);
    return err;
}
