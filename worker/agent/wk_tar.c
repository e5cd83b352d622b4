/*
 * ustar reader for dataset uploads (see wk_tar.h). Only what a dataset
 * needs is accepted: regular files ('0' or NUL type) at the top level,
 * optionally preceded by "./" directory entries that tar adds; links,
 * devices, long-name and pax extensions are refused by name.
 */
#include "worker/agent/wk_tar.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

struct wk_tar_format {
    const char *format;       /* as the API names it */
    const char *engine;       /* the engine's data spec prefix */
    const char *names[12][2]; /* allowed member -> file name on disk */
};

static const struct wk_tar_format wk_tar_formats[] = {
    {"idx",
     "idx",
     {{"train-images-idx3-ubyte", "train-images-idx3-ubyte"},
      {"train-labels-idx1-ubyte", "train-labels-idx1-ubyte"},
      {"t10k-images-idx3-ubyte", "t10k-images-idx3-ubyte"},
      {"t10k-labels-idx1-ubyte", "t10k-labels-idx1-ubyte"},
      {"train-images-idx3-ubyte.gz", "train-images-idx3-ubyte.gz"},
      {"train-labels-idx1-ubyte.gz", "train-labels-idx1-ubyte.gz"},
      {"t10k-images-idx3-ubyte.gz", "t10k-images-idx3-ubyte.gz"},
      {"t10k-labels-idx1-ubyte.gz", "t10k-labels-idx1-ubyte.gz"}}},
    {"cifar10",
     "cifar",
     {{"data_batch_1.bin", "data_batch_1.bin"},
      {"data_batch_2.bin", "data_batch_2.bin"},
      {"data_batch_3.bin", "data_batch_3.bin"},
      {"data_batch_4.bin", "data_batch_4.bin"},
      {"data_batch_5.bin", "data_batch_5.bin"},
      {"test_batch.bin", "test_batch.bin"}}},
    {"npy",
     "npy",
     {{"x_train.npy", "train_images.npy"},
      {"y_train.npy", "train_labels.npy"},
      {"x_test.npy", "test_images.npy"},
      {"y_test.npy", "test_labels.npy"}}},
};

/* Parses an octal field (NUL/space terminated); -1 when it is not octal. */
static int64_t wk_tar_octal(const char *p, size_t n)
{
    int64_t v = 0;
    size_t i = 0;
    while (i < n && p[i] == ' ')
        i++;
    int digits = 0;
    for (; i < n && p[i] >= '0' && p[i] <= '7'; i++, digits++) {
        if (v > (INT64_MAX >> 3))
            return -1;
        v = v * 8 + (p[i] - '0');
    }
    for (; i < n; i++)
        if (p[i] != ' ' && p[i] != '\0')
            return -1;
    return digits > 0 ? v : -1;
}

static int wk_tar_zero_block(const unsigned char *b)
{
    for (int i = 0; i < 512; i++)
        if (b[i] != 0)
            return 0;
    return 1;
}

static const char *wk_tar_lookup(const struct wk_tar_format *f, const char *name)
{
    if (strncmp(name, "./", 2) == 0)
        name += 2;
    for (int i = 0; i < 12 && f->names[i][0] != NULL; i++)
        if (strcmp(f->names[i][0], name) == 0)
            return f->names[i][1];
    return NULL;
}

enum dp_err wk_tar_extract_dataset(const char *tar_path, const char *format, const char *dir,
                                   uint64_t max_bytes, char *data_spec, size_t cap,
                                   struct dp_errinfo *ei)
{
    const struct wk_tar_format *f = NULL;
    for (size_t i = 0; i < sizeof(wk_tar_formats) / sizeof(wk_tar_formats[0]); i++)
        if (strcmp(wk_tar_formats[i].format, format) == 0)
            f = &wk_tar_formats[i];
    if (f == NULL)
        return dp_errinfo_set(ei, DP_EFORMAT, "dataset format '%.32s' is not idx, cifar10 or npy",
                              format);
    FILE *in = fopen(tar_path, "rb");
    if (in == NULL) {
        int e = errno;
        return dp_errinfo_set(ei, dp_err_from_errno(e), "%s: %s", tar_path, strerror(e));
    }
    enum dp_err err = DP_OK;
    FILE *out = NULL;
    uint64_t written = 0;
    int n_files = 0, n_zero = 0;
    unsigned char hdr[512];
    for (;;) {
        if (fread(hdr, 1, 512, in) != 512) {
            if (n_zero == 0 && n_files == 0)
                err = dp_errinfo_set(ei, DP_ETRUNC, "dataset tar: empty or truncated archive");
            break; /* one zero block or none at the end: accepted, as GNU tar does */
        }
        if (wk_tar_zero_block(hdr)) {
            if (++n_zero == 2)
                break;
            continue;
        }
        n_zero = 0;
        char name[101];
        memcpy(name, hdr, 100);
        name[100] = '\0';
        int64_t size = wk_tar_octal((const char *)hdr + 124, 12);
        int64_t chk = wk_tar_octal((const char *)hdr + 148, 8);
        int64_t sum = 0;
        for (int i = 0; i < 512; i++)
            sum += (i >= 148 && i < 156) ? ' ' : hdr[i];
        if (size < 0 || chk < 0 || chk != sum) {
            err = dp_errinfo_set(ei, DP_EFORMAT,
                                 "dataset tar: a header (member '%.100s') is corrupt or not "
                                 "ustar (bad size or checksum)",
                                 name);
            break;
        }
        char type = (char)hdr[156];
        if (hdr[345] != '\0') {
            err = dp_errinfo_set(ei, DP_EFORMAT,
                                 "dataset tar: member '%.100s' has a directory prefix; members "
                                 "must be plain file names",
                                 name);
            break;
        }
        if (type == '5' && (strcmp(name, "./") == 0 || strcmp(name, ".") == 0))
            continue;
        if (type != '0' && type != '\0') {
            err = dp_errinfo_set(ei, DP_EFORMAT,
                                 "dataset tar: member '%.100s' is not a regular file (type '%c'); "
                                 "only plain files are accepted",
                                 name, type >= 32 && type < 127 ? type : '?');
            break;
        }
        const char *dest = wk_tar_lookup(f, name);
        if (dest == NULL) {
            err = dp_errinfo_set(ei, DP_EFORMAT,
                                 "dataset tar: member '%.100s' is not a file name the %s format "
                                 "uses (no '/', no '..', see docs/api.md)",
                                 name, f->format);
            break;
        }
        if ((uint64_t)size > max_bytes - written) {
            err = dp_errinfo_set(ei, DP_ETOOBIG,
                                 "dataset tar: member '%s' takes the total over %llu bytes", name,
                                 (unsigned long long)max_bytes);
            break;
        }
        char path[1200];
        int k = snprintf(path, sizeof(path), "%s/%s", dir, dest);
        if (k < 0 || (size_t)k >= sizeof(path)) {
            err = dp_errinfo_set(ei, DP_EINVAL, "dataset directory path too long");
            break;
        }
        out = fopen(path, "wb");
        if (out == NULL) {
            int e = errno;
            err = dp_errinfo_set(ei, dp_err_from_errno(e), "%s: %s", path, strerror(e));
            break;
        }
        unsigned char buf[65536];
        uint64_t left = (uint64_t)size;
        while (left > 0 && !err) {
            size_t want = left < sizeof(buf) ? (size_t)left : sizeof(buf);
            if (fread(buf, 1, want, in) != want)
                err = dp_errinfo_set(ei, DP_ETRUNC, "dataset tar: member '%s' is truncated", name);
            else if (fwrite(buf, 1, want, out) != want)
                err = dp_errinfo_set(ei, DP_EIO, "%s: write failed", path);
            left -= want;
        }
        if (fclose(out) != 0 && !err)
            err = dp_errinfo_set(ei, DP_EIO, "%s: write failed", path);
        out = NULL;
        if (err)
            break;
        written += (uint64_t)size;
        n_files++;
        /* Members are padded to whole 512-byte blocks. */
        long pad = (long)((512 - (size % 512)) % 512);
        if (pad > 0 && fseek(in, pad, SEEK_CUR) != 0) {
            err = dp_errinfo_set(ei, DP_ETRUNC, "dataset tar: truncated after '%s'", name);
            break;
        }
    }
    fclose(in);
    if (!err && n_files == 0)
        err = dp_errinfo_set(ei, DP_EFORMAT, "dataset tar: no dataset files in the archive");
    if (!err) {
        int k = snprintf(data_spec, cap, "%s:%s", f->engine, dir);
        if (k < 0 || (size_t)k >= cap)
            err = dp_errinfo_set(ei, DP_EINVAL, "dataset directory path too long");
    }
    return err;
}
