/*
 * Reading and writing the safetensors format: checkpoints, masks and index
 * tensors.
 *
 * A file is: an 8-byte little-endian header length N; N bytes of JSON
 *
 *   {"conv1.weight": {"dtype": "F32", "shape": [20, 1, 5, 5],
 *                     "data_offsets": [0, 2000]},
 *    ...,
 *    "__metadata__": {"key": "string value", ...}}
 *
 * padded with spaces so that the data section starts on an 8-byte boundary;
 * then the data section, in which each tensor occupies the bytes
 * [begin, end) given by its data_offsets, little-endian, row-major.
 *
 * Writing:
 *
 *   struct dp_st_tensor t[2] = {
 *       {.name = "w", .dtype = DP_ST_F32, .ndim = 2, .shape = {3, 4}, .data = w},
 *       {.name = "mask", .dtype = DP_ST_U8, .ndim = 2, .shape = {3, 4}, .data = mask},
 *   };
 *   err = dp_st_write("out.safetensors", t, 2, meta_or_NULL, &ei);
 *
 * Reading (the whole file is read into memory, up to a caller-given cap):
 *
 *   struct dp_st_file *f = NULL;
 *   err = dp_st_read("in.safetensors", 1 << 30, &f, &ei);
 *   err = dp_st_read_f32(f, "w", buf, 12, &ei);      // checks dtype and size
 *   const char *v = dp_st_meta_get(f, "dnnpress.graph");
 *   dp_st_free(f);
 *
 * The reader trusts nothing in the file: the header length, the JSON, every
 * dtype, shape and offset are validated before anything is returned, and
 * every failure is DP_EFORMAT, DP_ETRUNC or DP_ETOOBIG with a message that
 * names the file and what is wrong with it. Tensors must tile the data
 * section exactly (sorted by offset, no gaps, no overlaps, no trailing
 * bytes), which is what the reference implementation also requires.
 *
 * Only little-endian hosts are supported (checked at compile time).
 * Functions are reentrant; a struct dp_st_file may be read from several
 * threads at once but not freed while in use.
 */
#ifndef DP_COMMON_SAFETENSORS_H
#define DP_COMMON_SAFETENSORS_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

#define DP_ST_MAX_DIMS 8
/* Largest JSON header the reader accepts, in bytes. */
#define DP_ST_HEADER_MAX (100u * 1024u * 1024u)
/* Most tensors one file may hold. */
#define DP_ST_TENSORS_MAX (1 << 20)
/* Reserved header key for the string-to-string metadata map. */
#define DP_ST_METADATA_KEY "__metadata__"

/* Element types. The names in the file are "F32", "U8", "I32", "I64". */
enum dp_st_dtype { DP_ST_F32, DP_ST_U8, DP_ST_I32, DP_ST_I64, DP_ST__COUNT };

/* Returns "F32", "U8", ... ; NULL for an out-of-range dtype. Any thread. */
const char *dp_st_dtype_name(enum dp_st_dtype dtype);

/* Returns the size of one element in bytes; 0 for an out-of-range dtype. Any thread. */
size_t dp_st_dtype_size(enum dp_st_dtype dtype);

/* Looks up a dtype by its file name ("F32"); DP_EFORMAT when unknown. Any thread. */
enum dp_err dp_st_dtype_from_name(const char *name, enum dp_st_dtype *out);

/*
 * One tensor. The writer reads name, dtype, ndim, shape and data, and
 * ignores numel and data_len (it computes them). The reader fills every
 * field; its pointers are borrowed from the struct dp_st_file and valid
 * until dp_st_free.
 */
struct dp_st_tensor {
    const char *name; /* UTF-8, non-empty, not DP_ST_METADATA_KEY */
    enum dp_st_dtype dtype;
    int ndim;                      /* 0 (a scalar) to DP_ST_MAX_DIMS */
    int64_t shape[DP_ST_MAX_DIMS]; /* each >= 0; row-major */
    size_t numel;                  /* product of shape (1 for a scalar) */
    const void *data;              /* numel elements; from the reader it may be unaligned */
    size_t data_len;               /* numel * dp_st_dtype_size(dtype) bytes */
};

/* ---- Writing ------------------------------------------------------------- */

/*
 * Writes n_tensors tensors and optional metadata to `path`, atomically: the
 * bytes go to "<path>.tmp.<pid>", which is fsynced and renamed over `path`
 * (and the directory fsynced), so a reader sees the old file or the whole
 * new one. On failure the temporary file is removed and `path` is untouched.
 *
 * tensors:   n_tensors descriptors (borrowed); names must be unique. The
 *            data section holds them in this order.
 * n_tensors: 0 to DP_ST_TENSORS_MAX.
 * metadata:  NULL, or a JSON object whose values are all strings (borrowed);
 *            stored as "__metadata__".
 * ei:        may be NULL; receives a message naming the file and the problem.
 *
 * Returns DP_OK; DP_EINVAL for a bad descriptor or metadata value (the
 * message names it); DP_ETOOBIG when a size overflows; DP_ENOMEM; or the
 * errno-mapped code (DP_EIO, DP_ENOENT, DP_ETOOBIG for ENOSPC) when a
 * system call fails. Any thread, but two threads of one process must not
 * write the same path at once (they would share the temporary name).
 */
enum dp_err dp_st_write(const char *path, const struct dp_st_tensor *tensors, int n_tensors,
                        const json_t *metadata, struct dp_errinfo *ei);

/* ---- Reading ------------------------------------------------------------- */

/* A parsed file. Opaque; released with dp_st_free. */
struct dp_st_file;

/*
 * Reads and validates the file at `path`.
 *
 * max_len: the largest file accepted, in bytes; a larger file is DP_ETOOBIG
 *          and is not read.
 * out:     on success receives a new struct dp_st_file that the caller must
 *          release with dp_st_free; set to NULL on failure.
 * ei:      may be NULL.
 *
 * Returns DP_OK; DP_ENOENT/DP_EIO when the file cannot be opened or read;
 * DP_ETOOBIG; DP_ETRUNC when the file is shorter than its header says;
 * DP_EFORMAT for anything malformed; DP_ENOMEM. Any thread.
 */
enum dp_err dp_st_read(const char *path, size_t max_len, struct dp_st_file **out,
                       struct dp_errinfo *ei);

/*
 * Parses and validates a safetensors image already in memory.
 *
 * buf, len: the image (borrowed). The buffer must stay valid and unchanged
 *           until dp_st_free, since tensor data pointers point into it.
 * label:    the name used in error messages (a file name), e.g. "upload".
 * out, ei:  as for dp_st_read.
 *
 * Returns as dp_st_read, without the I/O codes. Any thread.
 */
enum dp_err dp_st_parse(const void *buf, size_t len, const char *label, struct dp_st_file **out,
                        struct dp_errinfo *ei);

/* Releases a file and everything borrowed from it. NULL is a no-op. */
void dp_st_free(struct dp_st_file *f);

/*
 * The name this file goes by in error messages: its path (shortened from
 * the left when long) or the label given to dp_st_parse. Borrowed from f.
 */
const char *dp_st_label(const struct dp_st_file *f);

/* Number of tensors in the file. */
int dp_st_n_tensors(const struct dp_st_file *f);

/*
 * The i-th tensor, 0 <= i < dp_st_n_tensors(f), in data-section order.
 * Borrowed from f.
 */
const struct dp_st_tensor *dp_st_tensor_at(const struct dp_st_file *f, int i);

/* The tensor called `name`, or NULL when there is none. Borrowed from f. */
const struct dp_st_tensor *dp_st_find(const struct dp_st_file *f, const char *name);

/*
 * The metadata: a JSON object whose values are all strings; an empty object
 * when the file has none. Borrowed from f (never NULL): do not modify it;
 * json_incref or json_deep_copy it to keep it beyond dp_st_free.
 */
const json_t *dp_st_metadata(const struct dp_st_file *f);

/* The metadata value for `key`, or NULL when absent. Borrowed from f. */
const char *dp_st_meta_get(const struct dp_st_file *f, const char *key);

/*
 * Copies tensor `t` (from f) into dst after checking that its dtype is
 * `dtype` and that it holds exactly dst_len bytes. dst need not be aligned
 * beyond what the caller's type needs.
 *
 * Returns DP_OK; DP_EFORMAT when the dtype differs; DP_ESHAPE when the size
 * differs. The message names the file and the tensor.
 */
enum dp_err dp_st_tensor_copy(const struct dp_st_file *f, const struct dp_st_tensor *t,
                              enum dp_st_dtype dtype, void *dst, size_t dst_len,
                              struct dp_errinfo *ei);

/*
 * Typed access by name: copies the tensor `name` into dst, which holds
 * n_elems elements of the named type.
 *
 * Returns DP_OK; DP_ENOENT when there is no such tensor; DP_EFORMAT when
 * its dtype differs; DP_ESHAPE when its element count is not n_elems.
 */
enum dp_err dp_st_read_f32(const struct dp_st_file *f, const char *name, float *dst, size_t n_elems,
                           struct dp_errinfo *ei);
enum dp_err dp_st_read_u8(const struct dp_st_file *f, const char *name, uint8_t *dst,
                          size_t n_elems, struct dp_errinfo *ei);
enum dp_err dp_st_read_i32(const struct dp_st_file *f, const char *name, int32_t *dst,
                           size_t n_elems, struct dp_errinfo *ei);
enum dp_err dp_st_read_i64(const struct dp_st_file *f, const char *name, int64_t *dst,
                           size_t n_elems, struct dp_errinfo *ei);

#endif
