/*
 * Dataset formats and the dataset archive reader (see dataset.h). The tar
 * parsing itself is libarchive's (tar, pax and GNU headers, gzip); this
 * file adds the rules a dataset archive must follow, so that the server's
 * validation and the worker's extraction accept exactly the same archives.
 */
#include "common/dataset.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "common/alloc.h"
#include "common/utf8.h"

static const struct dp_dataset_format dp_dataset_formats[] = {
    {"idx",
     "idx",
     4,
     {"train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
      "t10k-labels-idx1-ubyte"},
     {"train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
      "t10k-labels-idx1-ubyte"},
     {{DP_DATASET_TRAIN, DP_DATASET_IMAGES},
      {DP_DATASET_TRAIN, DP_DATASET_LABELS},
      {DP_DATASET_TEST, DP_DATASET_IMAGES},
      {DP_DATASET_TEST, DP_DATASET_LABELS}},
     1},
    {"cifar10",
     "cifar",
     6,
     {"data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin", "data_batch_4.bin",
      "data_batch_5.bin", "test_batch.bin"},
     {"data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin", "data_batch_4.bin",
      "data_batch_5.bin", "test_batch.bin"},
     {{DP_DATASET_TRAIN, DP_DATASET_RECORDS},
      {DP_DATASET_TRAIN, DP_DATASET_RECORDS},
      {DP_DATASET_TRAIN, DP_DATASET_RECORDS},
      {DP_DATASET_TRAIN, DP_DATASET_RECORDS},
      {DP_DATASET_TRAIN, DP_DATASET_RECORDS},
      {DP_DATASET_TEST, DP_DATASET_RECORDS}},
     0},
    {"npy",
     "npy",
     4,
     {"x_train.npy", "y_train.npy", "x_test.npy", "y_test.npy"},
     {"train_images.npy", "train_labels.npy", "test_images.npy", "test_labels.npy"},
     {{DP_DATASET_TRAIN, DP_DATASET_IMAGES},
      {DP_DATASET_TRAIN, DP_DATASET_LABELS},
      {DP_DATASET_TEST, DP_DATASET_IMAGES},
      {DP_DATASET_TEST, DP_DATASET_LABELS}},
     0},
};

#define DP_DATASET_N_FORMATS (sizeof(dp_dataset_formats) / sizeof(dp_dataset_formats[0]))

const struct dp_dataset_format *dp_dataset_format_find(const char *name)
{
    for (size_t i = 0; name != NULL && i < DP_DATASET_N_FORMATS; i++)
        if (strcmp(dp_dataset_formats[i].name, name) == 0)
            return &dp_dataset_formats[i];
    return NULL;
}

const struct dp_dataset_format *dp_dataset_format_engine(const char *engine)
{
    for (size_t i = 0; engine != NULL && i < DP_DATASET_N_FORMATS; i++)
        if (strcmp(dp_dataset_formats[i].engine, engine) == 0)
            return &dp_dataset_formats[i];
    return NULL;
}

int dp_dataset_engine_files(const struct dp_dataset_format *f, enum dp_dataset_split split,
                            enum dp_dataset_kind kind, const char **names, int cap)
{
    int n = 0;
    for (int i = 0; i < f->n_members; i++) {
        if (f->parts[i].split != split || f->parts[i].kind != kind)
            continue;
        if (n < cap)
            names[n] = f->engine_names[i];
        n++;
    }
    return n;
}

void dp_dataset_format_list(char *buf, size_t cap)
{
    size_t used = 0;
    if (cap == 0)
        return;
    buf[0] = '\0';
    for (size_t i = 0; i < DP_DATASET_N_FORMATS && used < cap; i++) {
        int k = snprintf(buf + used, cap - used, "%s%s", i ? ", " : "", dp_dataset_formats[i].name);
        if (k < 0)
            break;
        used += (size_t)k;
    }
}

/* ---- Reader --------------------------------------------------------------- */

struct dp_dataset_reader {
    struct archive *a;
    const struct dp_dataset_format *f;
    uint64_t max_bytes, total; /* total: the sizes of the members so far */
    int seen[DP_DATASET_MAX_MEMBERS];
    char name[128]; /* the current member's name, clipped for messages */
};

/* Index of name among f's members (IDX: also NAME.gz), or -1. */
static int dataset_member_index(const struct dp_dataset_format *f, const char *name, int *gz)
{
    size_t len = strlen(name);
    *gz = f->gz_members && len > 3 && strcmp(name + len - 3, ".gz") == 0;
    if (*gz)
        len -= 3;
    for (int i = 0; i < f->n_members; i++)
        if (strlen(f->members[i]) == len && strncmp(f->members[i], name, len) == 0)
            return i;
    return -1;
}

/* The tar type flag of an entry that is not a regular file, for messages. */
static char dataset_type_char(struct archive_entry *e)
{
    if (archive_entry_hardlink(e) != NULL)
        return '1';
    switch (archive_entry_filetype(e)) {
        case AE_IFLNK:
            return '2';
        case AE_IFCHR:
            return '3';
        case AE_IFBLK:
            return '4';
        case AE_IFDIR:
            return '5';
        case AE_IFIFO:
            return '6';
        default:
            return '?';
    }
}

enum dp_err dp_dataset_open(const char *path, const char *format, uint64_t max_bytes,
                            struct dp_dataset_reader **out, struct dp_errinfo *ei)
{
    *out = NULL;
    const struct dp_dataset_format *f = dp_dataset_format_find(format);
    if (f == NULL) {
        char list[64];
        dp_dataset_format_list(list, sizeof(list));
        return dp_errinfo_set(ei, DP_EINVAL, "dataset format '%.32s' is not %s",
                              format ? format : "", list);
    }
    struct dp_dataset_reader *r = dp_calloc(1, sizeof(*r));
    if (r == NULL)
        return dp_errinfo_set(ei, DP_ENOMEM, "out of memory");
    r->f = f;
    r->max_bytes = max_bytes;
    r->a = archive_read_new();
    if (r->a == NULL) {
        dp_free(r);
        return dp_errinfo_set(ei, DP_ENOMEM, "out of memory");
    }
    /* Only the tar family and gzip: every other format and filter libarchive
     * knows would be attack surface no dataset needs. */
    enum dp_err err = DP_OK;
    if (archive_read_support_format_tar(r->a) != ARCHIVE_OK ||
        archive_read_support_filter_gzip(r->a) != ARCHIVE_OK)
        err = dp_errinfo_set(ei, DP_EUNSUPPORTED, "libarchive lacks tar or gzip support");
    if (!err && archive_read_open_filename(r->a, path, 64 * 1024) != ARCHIVE_OK) {
        int e = archive_errno(r->a);
        err = e == ENOENT || e == EACCES || e == ENOMEM
                  ? dp_errinfo_set(ei, dp_err_from_errno(e), "%s: %s", path, strerror(e))
                  : dp_errinfo_set(ei, DP_EFORMAT,
                                   "not a tar archive, or its first header is corrupt (bad "
                                   "size or checksum: %s)",
                                   archive_error_string(r->a));
    }
    if (err) {
        dp_dataset_close(r);
        return err;
    }
    *out = r;
    return DP_OK;
}

const struct dp_dataset_format *dp_dataset_reader_format(const struct dp_dataset_reader *r)
{
    return r->f;
}

enum dp_err dp_dataset_next(struct dp_dataset_reader *r, struct dp_dataset_member *m,
                            struct dp_errinfo *ei)
{
    memset(m, 0, sizeof(*m));
    m->index = -1;
    for (;;) {
        struct archive_entry *e;
        int rc = archive_read_next_header(r->a, &e);
        if (rc == ARCHIVE_EOF)
            return DP_OK;
        if (rc != ARCHIVE_OK && rc != ARCHIVE_WARN) {
            const char *why = archive_error_string(r->a);
            return dp_errinfo_set(ei, DP_EFORMAT,
                                  "a header is corrupt or the file is not a tar archive (bad size "
                                  "or checksum: %s)",
                                  why ? why : "unknown");
        }
        const char *raw = archive_entry_pathname(e);
        if (raw == NULL)
            raw = "";
        if (strncmp(raw, "./", 2) == 0 && raw[2] != '\0')
            raw += 2;
        dp_utf8_clip(r->name, sizeof(r->name), raw);
        mode_t type = archive_entry_filetype(e);
        if (type == AE_IFDIR && (strcmp(raw, "./") == 0 || strcmp(raw, ".") == 0))
            continue;
        if (type != AE_IFREG || archive_entry_hardlink(e) != NULL)
            return dp_errinfo_set(ei, DP_EINVAL,
                                  "member '%s' is not a regular file (type '%c'); only plain "
                                  "files are accepted",
                                  r->name, dataset_type_char(e));
        int gz, idx = dataset_member_index(r->f, raw, &gz);
        if (idx < 0)
            return dp_errinfo_set(ei, DP_EINVAL,
                                  "member '%s' is not a file name the %s format uses (plain file "
                                  "names only: no '/', no '..'; docs/api.md lists them)",
                                  r->name, r->f->name);
        if (r->seen[idx])
            return dp_errinfo_set(ei, DP_EINVAL, "member '%s' appears twice", r->name);
        r->seen[idx] = 1;
        if (!archive_entry_size_is_set(e) || archive_entry_size(e) < 0)
            return dp_errinfo_set(ei, DP_EFORMAT, "member '%s' has no size", r->name);
        uint64_t size = (uint64_t)archive_entry_size(e);
        if (size > r->max_bytes - r->total)
            return dp_errinfo_set(ei, DP_ETOOBIG, "member '%s' takes the total over %llu bytes",
                                  r->name, (unsigned long long)r->max_bytes);
        r->total += size;
        m->index = idx;
        m->gz = gz;
        m->size = size;
        m->name = r->name;
        return DP_OK;
    }
}

enum dp_err dp_dataset_read(struct dp_dataset_reader *r, void *buf, size_t cap, size_t *got,
                            struct dp_errinfo *ei)
{
    la_ssize_t k = archive_read_data(r->a, buf, cap);
    *got = 0;
    if (k < 0) {
        const char *why = archive_error_string(r->a);
        return dp_errinfo_set(ei, DP_ETRUNC, "member '%s' is truncated or corrupt (%s)", r->name,
                              why ? why : "read error");
    }
    *got = (size_t)k;
    return DP_OK;
}

void dp_dataset_close(struct dp_dataset_reader *r)
{
    if (r == NULL)
        return;
    int e = errno;
    if (r->a != NULL)
        archive_read_free(r->a);
    dp_free(r);
    errno = e;
}

/* ---- Extraction ----------------------------------------------------------- */

/* Writes the current member of r to path. */
static enum dp_err dataset_write_member(struct dp_dataset_reader *r, const char *path,
                                        struct dp_errinfo *ei)
{
    FILE *out = fopen(path, "wb");
    if (out == NULL) {
        int e = errno;
        return dp_errinfo_set(ei, dp_err_from_errno(e), "%s: %s", path, strerror(e));
    }
    enum dp_err err = DP_OK;
    unsigned char buf[65536];
    for (;;) {
        size_t got;
        err = dp_dataset_read(r, buf, sizeof(buf), &got, ei);
        if (err || got == 0)
            break;
        if (fwrite(buf, 1, got, out) != got) {
            err = dp_errinfo_set(ei, DP_EIO, "%s: write failed", path);
            break;
        }
    }
    if (fclose(out) != 0 && !err)
        err = dp_errinfo_set(ei, DP_EIO, "%s: write failed", path);
    return err;
}

enum dp_err dp_dataset_extract(const char *tar_path, const char *format, const char *dir,
                               uint64_t max_bytes, char *data_spec, size_t cap,
                               struct dp_errinfo *ei)
{
    struct dp_dataset_reader *r = NULL;
    struct dp_errinfo inner = {DP_OK, ""};
    int n_files = 0;
    enum dp_err err = dp_dataset_open(tar_path, format, max_bytes, &r, &inner);
    while (!err) {
        struct dp_dataset_member m;
        err = dp_dataset_next(r, &m, &inner);
        if (err || m.index < 0)
            break;
        char path[1200];
        int k = snprintf(path, sizeof(path), "%s/%s%s", dir, r->f->engine_names[m.index],
                         m.gz ? ".gz" : "");
        if (k < 0 || (size_t)k >= sizeof(path)) {
            err = dp_errinfo_set(&inner, DP_EINVAL, "dataset directory path too long");
            break;
        }
        err = dataset_write_member(r, path, &inner);
        n_files++;
    }
    if (!err && n_files == 0)
        err = dp_errinfo_set(&inner, DP_EFORMAT, "no dataset files in the archive");
    if (!err) {
        int k = snprintf(data_spec, cap, "%s:%s", r->f->engine, dir);
        if (k < 0 || (size_t)k >= cap)
            err = dp_errinfo_set(&inner, DP_EINVAL, "dataset directory path too long");
    }
    dp_dataset_close(r);
    if (err)
        /* A member the rules refuse is a malformed input to the task. */
        return dp_errinfo_set(ei, err == DP_EINVAL ? DP_EFORMAT : err, "dataset tar: %s",
                              inner.msg);
    return DP_OK;
}
