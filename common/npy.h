/*
 * NumPy .npy headers, the one reader shared by the server (which validates
 * the NPY members of a dataset upload as they stream out of the archive),
 * the engine's NPY dataset loader and `dnnpress-worker infer`, so that what
 * the server accepts the worker can read.
 *
 * A .npy file (format versions 1.0, 2.0 and 3.0) is the magic "\x93NUMPY",
 * two version bytes, a little-endian header length (2 bytes in 1.0, 4
 * later), a Python dict literal padded with spaces and a newline, and the
 * raw array data:
 *
 *   {'descr': '|u1', 'fortran_order': False, 'shape': (60000, 28, 28), }
 *
 * The dict is parsed strictly: the three keys, each exactly once, in any
 * order, either quote style, a trailing comma and Python 2's "60000L";
 * anything else (unknown keys, structured dtypes, stray characters) fails
 * with the offset in the header. Supported dtypes are the numeric scalars
 * u1 i1 u2 i2 u4 i4 u8 i8 f4 f8 in any byte order ('|', '<', '>'); callers
 * narrow further (dp_npy_check_images, dp_npy_check_labels). The element
 * count and byte size are computed with overflow checks against a bound
 * the caller gives, before anyone allocates or trusts them.
 *
 *     struct dp_npy_header h;
 *     err = dp_npy_read_header(read_exact, ctx, "x_train.npy", max, &h, &ei);
 *     if (!err) err = dp_npy_check_len(&h, file_len, "x_train.npy", &ei);
 *     ... then h.data_len bytes of data ...
 *
 * Messages start with the name the caller gives ("x_train.npy: ...").
 * The header text is read into a dp_malloc'd buffer freed before return;
 * any thread.
 */
#ifndef DP_COMMON_NPY_H
#define DP_COMMON_NPY_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

#define DP_NPY_MAX_DIMS   8
#define DP_NPY_HEADER_MAX 65536 /* bytes of dict text; numpy writes well under 1 KiB */

struct dp_npy_header {
    int major;           /* format version: 1, 2 or 3 (minor is always 0) */
    uint64_t header_len; /* bytes before the data: preamble, dict and padding */
    char descr[16];      /* the dtype as written, e.g. "<f4" */
    char order;          /* '<' or '>'; '|' for every single-byte type */
    char kind;           /* 'u', 'i' or 'f' */
    int item_size;       /* bytes per element: 1, 2, 4 or 8 */
    int fortran_order;   /* 0 or 1 */
    int ndim;            /* 0 (a scalar) to DP_NPY_MAX_DIMS */
    int64_t shape[DP_NPY_MAX_DIMS];
    uint64_t n_elems;  /* product of shape */
    uint64_t data_len; /* n_elems * item_size, at most the caller's bound */
};

/*
 * Reads exactly len bytes of the file into buf, or fails with DP_ETRUNC
 * (and a message built from what, which says what the bytes were for) or
 * another error, filling ei. ctx is the caller's.
 */
typedef enum dp_err (*dp_npy_read_fn)(void *ctx, void *buf, size_t len, const char *what,
                                      struct dp_errinfo *ei);

/*
 * Reads and validates the preamble and header dict through read, leaving
 * the stream at the first data byte, and fills *h. name is used in
 * messages only. max_data_len bounds h->data_len: a shape whose element
 * count or byte size passes it (or overflows 64 bits) is refused before
 * anything trusts it.
 * Returns DP_OK; DP_EFORMAT (bad magic, malformed dict); DP_EUNSUPPORTED
 * (another version, a structured or non-numeric dtype); DP_ETOOBIG (a
 * header over DP_NPY_HEADER_MAX, data over max_data_len); read's errors.
 */
enum dp_err dp_npy_read_header(dp_npy_read_fn read, void *ctx, const char *name,
                               uint64_t max_data_len, struct dp_npy_header *h,
                               struct dp_errinfo *ei);

/*
 * The same from memory: buf holds the first len bytes of the file (more
 * than the header is fine; less is DP_ETRUNC).
 */
enum dp_err dp_npy_parse_header(const void *buf, size_t len, const char *name,
                                uint64_t max_data_len, struct dp_npy_header *h,
                                struct dp_errinfo *ei);

/*
 * Checks that a file (or archive member) of file_len bytes holds exactly
 * the header and h's data: DP_ETRUNC when shorter, DP_EFORMAT when longer,
 * naming both sizes.
 */
enum dp_err dp_npy_check_len(const struct dp_npy_header *h, uint64_t file_len, const char *name,
                             struct dp_errinfo *ei);

/*
 * What the engine's NPY dataset loader reads, checked here so that the
 * server refuses what the worker could not load. Images: '|u1' or '<f4',
 * C order, shape (N, H, W) or (N, C, H, W). Labels: a little-endian (or
 * single-byte) integer type, shape (N,). DP_EUNSUPPORTED for the dtype or
 * the order, DP_ESHAPE for the shape. The engine checks its own caps
 * (channels, image size) on top.
 */
enum dp_err dp_npy_check_images(const struct dp_npy_header *h, const char *name,
                                struct dp_errinfo *ei);
enum dp_err dp_npy_check_labels(const struct dp_npy_header *h, const char *name,
                                struct dp_errinfo *ei);

/* Writes h's shape as Python does, "(60000, 28, 28)" or "(3,)", into buf (cap bytes, clipped). */
void dp_npy_shape_str(const struct dp_npy_header *h, char *buf, size_t cap);

#endif
