/*
 * Internals shared by the dataset readers (data.c, data_idx.c, data_cifar.c,
 * data_npy.c). Not part of the engine's API: include worker/nn/data.h.
 *
 * struct nn_data__file reads a file through zlib, which passes plain files
 * through unchanged and inflates gzip files, so every format can take either.
 * Reads ask for an exact number of bytes, which is how decompressed output
 * stays bounded by what the format's header announced.
 */
#ifndef DP_WORKER_NN_DATA_INT_H
#define DP_WORKER_NN_DATA_INT_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "worker/nn/data.h"

#define NN_DATA__PATH_MAX 4096

struct nn_data__file {
    char path[NN_DATA__PATH_MAX]; /* the path actually opened, for messages */
    void *gz;                     /* gzFile; void * keeps zlib.h out of this header */
    uint64_t file_len;            /* size on disk (the compressed size for gzip files) */
    uint64_t pos;                 /* decompressed bytes consumed so far */
    int gz_cut;                   /* the gzip stream ended before its trailer */
};

/*
 * Opens DIR/name for reading; when it does not exist and try_gz is nonzero,
 * opens DIR/name.gz instead. Returns DP_ENOENT naming the path(s) tried,
 * DP_EINVAL for a path longer than NN_DATA__PATH_MAX, DP_EIO or DP_ENOMEM.
 * On success the caller must nn_data__close(f); on failure f needs nothing.
 */
enum dp_err nn_data__open(struct nn_data__file *f, const char *dir, const char *name, int try_gz,
                          struct dp_errinfo *ei);

/* Nonzero when the file is stored compressed (gzip) rather than plain. */
int nn_data__is_gzip(struct nn_data__file *f);

/*
 * Reads exactly len bytes into buf. A short read is DP_ETRUNC with the
 * message "PATH: truncated: WHAT but data ends after N bytes", where WHAT
 * (e.g. "header says 60000 images of 28x28") comes from the caller. A corrupt
 * gzip stream is DP_EFORMAT, a failed read DP_EIO.
 */
enum dp_err nn_data__read(struct nn_data__file *f, void *buf, size_t len, const char *what,
                          struct dp_errinfo *ei);

/*
 * Fails early, before a large allocation, when f is a plain file too short to
 * hold `remaining` more bytes after what was read so far: DP_ETRUNC with the
 * same message nn_data__read would give. A no-op for gzip files, whose
 * decompressed size is only known by inflating them.
 */
enum dp_err nn_data__check_len(struct nn_data__file *f, uint64_t remaining, const char *what,
                               struct dp_errinfo *ei);

/*
 * Checks that f has nothing after what was read: trailing bytes are
 * DP_EFORMAT, and a gzip stream must end cleanly with a valid trailer
 * (DP_ETRUNC when it is cut short, DP_EFORMAT when its checksum is wrong).
 */
enum dp_err nn_data__expect_eof(struct nn_data__file *f, struct dp_errinfo *ei);

/* Closes f (which may be zeroed or already closed). */
void nn_data__close(struct nn_data__file *f);

/*
 * Checks n images of c x h x w (of floats when is_f32, else bytes) against
 * the caps in data.h with overflow-safe arithmetic. path names the file the
 * dimensions came from, for the message. Returns DP_EFORMAT for implausible
 * dimensions, DP_EUNSUPPORTED for c > NN_DATASET_MAX_C, DP_ETOOBIG.
 */
enum dp_err nn_data__check_dims(int64_t n, int64_t c, int64_t h, int64_t w, int is_f32,
                                const char *path, struct dp_errinfo *ei);

/*
 * Sets out's dimensions and allocates its images (uint8, or float when
 * is_f32) and labels for n samples, after nn_data__check_dims. Returns its
 * errors or DP_ENOMEM; out is zeroed on failure.
 */
enum dp_err nn_data__alloc(struct nn_dataset *out, int64_t n, int64_t c, int64_t h, int64_t w,
                           int is_f32, const char *path, struct dp_errinfo *ei);

/*
 * Checks that every label is in [0, NN_DATASET_MAX_CLASSES) and sets
 * ds->n_classes to the largest label + 1. path names the label file.
 */
enum dp_err nn_data__finish_labels(struct nn_dataset *ds, const char *path, struct dp_errinfo *ei);

/* The readers behind nn_dataset_load; fmt is the format's row in
 * common/dataset.c's table (the file names), dir the spec without its prefix. */
struct dp_dataset_format;
enum dp_err nn_data__load_idx(const struct dp_dataset_format *fmt, const char *dir,
                              enum nn_split split, struct nn_dataset *out, struct dp_errinfo *ei);
enum dp_err nn_data__load_cifar(const struct dp_dataset_format *fmt, const char *dir,
                                enum nn_split split, struct nn_dataset *out, struct dp_errinfo *ei);
enum dp_err nn_data__load_npy(const struct dp_dataset_format *fmt, const char *dir,
                              enum nn_split split, struct nn_dataset *out, struct dp_errinfo *ei);

#endif
