/*
 * Single float32 .npy arrays for the offline commands (`infer` reads a
 * batch and writes logits). Only what the commands need: '<f4', C order,
 * 1 to 8 dimensions; anything else is an error that says what was found.
 */
#ifndef DP_WORKER_CMD_WK_NPY_H
#define DP_WORKER_CMD_WK_NPY_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "common/npy.h"

#define WK_NPY_MAX_DIMS DP_NPY_MAX_DIMS
#define WK_NPY_FILE_MAX ((size_t)1 << 34)

struct wk_npy {
    int ndim;
    int64_t dims[WK_NPY_MAX_DIMS];
    size_t n;    /* element count */
    float *data; /* n floats, owned (dp_free) */
};

/* Reads a '<f4' C-order array (header through common/npy.h, the reader the
 * server and the dataset loader use); out->data must be released with
 * dp_free. Returns DP_OK; DP_ENOENT/DP_EIO; DP_EFORMAT (another dtype,
 * Fortran order, a bad header, data past the shape); DP_EUNSUPPORTED
 * (another NPY version, a non-numeric dtype); DP_ETRUNC (less data than the
 * shape needs); DP_ETOOBIG (over WK_NPY_FILE_MAX); DP_ENOMEM. */
enum dp_err wk_npy_read_f32(const char *path, struct wk_npy *out, struct dp_errinfo *ei);

/* Writes data (product of dims floats) as a version 1.0 '<f4' array, atomically. */
enum dp_err wk_npy_write_f32(const char *path, const float *data, int ndim, const int64_t *dims,
                             struct dp_errinfo *ei);

#endif
