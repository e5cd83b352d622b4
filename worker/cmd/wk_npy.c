/*
 * float32 .npy files (see wk_npy.h). The header is read by common/npy.c,
 * the reader the server and the dataset loader use; this file only asks
 * for '<f4' in C order and reads the data, whose size must match the
 * shape exactly.
 */
#include "worker/cmd/wk_npy.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "common/alloc.h"
#include "common/npy.h"

struct wk_npy_file {
    FILE *f;
    const char *path;
};

/* dp_npy_read_fn over a FILE. */
static enum dp_err wk_npy_file_read(void *ctx, void *buf, size_t len, const char *what,
                                    struct dp_errinfo *ei)
{
    struct wk_npy_file *nf = ctx;
    if (fread(buf, 1, len, nf->f) != len)
        return ferror(nf->f) ? dp_errinfo_set(ei, DP_EIO, "%s: read failed", nf->path)
                             : dp_errinfo_set(ei, DP_ETRUNC, "%s: truncated: %s", nf->path, what);
    return DP_OK;
}

enum dp_err wk_npy_read_f32(const char *path, struct wk_npy *out, struct dp_errinfo *ei)
{
    memset(out, 0, sizeof(*out));
    enum dp_err err = DP_OK;
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        int e = errno;
        return dp_errinfo_set(ei, dp_err_from_errno(e), "%s: %s", path, strerror(e));
    }
    long end = -1;
    if (fseek(f, 0, SEEK_END) == 0)
        end = ftell(f);
    if (end < 0 || fseek(f, 0, SEEK_SET) != 0) {
        err = dp_errinfo_set(ei, DP_EIO, "%s: cannot seek", path);
        goto out;
    }
    struct wk_npy_file nf = {f, path};
    struct dp_npy_header h;
    err = dp_npy_read_header(wk_npy_file_read, &nf, path, WK_NPY_FILE_MAX, &h, ei);
    if (err)
        goto out;
    if (strcmp(h.descr, "<f4") != 0) {
        err = dp_errinfo_set(ei, DP_EFORMAT, "%s: dtype is '%s'; it must be '<f4' (float32)", path,
                             h.descr);
        goto out;
    }
    if (h.fortran_order) {
        err = dp_errinfo_set(ei, DP_EFORMAT, "%s: Fortran order is not supported", path);
        goto out;
    }
    if (h.ndim < 1) {
        err = dp_errinfo_set(ei, DP_EFORMAT, "%s: a 0-d array; infer needs a batch", path);
        goto out;
    }
    /* Before allocating: the file holds exactly the header and the data. */
    err = dp_npy_check_len(&h, (uint64_t)end, path, ei);
    if (err)
        goto out;
    size_t n = (size_t)h.n_elems;
    out->data = dp_malloc(n ? n * 4 : 4);
    if (out->data == NULL) {
        err = dp_errinfo_set(ei, DP_ENOMEM, "%s: out of memory for %zu floats", path, n);
        goto out;
    }
    if (fread(out->data, 4, n, f) != n) {
        err = dp_errinfo_set(ei, DP_ETRUNC, "%s: truncated data", path);
        goto out;
    }
    out->ndim = h.ndim;
    for (int d = 0; d < h.ndim; d++)
        out->dims[d] = h.shape[d];
    out->n = n;
out:
    if (err) {
        dp_free(out->data);
        out->data = NULL;
    }
    fclose(f);
    return err;
}

enum dp_err wk_npy_write_f32(const char *path, const float *data, int ndim, const int64_t *dims,
                             struct dp_errinfo *ei)
{
    char shape[256] = "", hdr[512], tmp[4096];
    size_t pos = 0, n = 1;
    for (int d = 0; d < ndim; d++) {
        pos += (size_t)snprintf(shape + pos, sizeof(shape) - pos, "%lld%s", (long long)dims[d],
                                ndim == 1 || d + 1 < ndim ? ", " : "");
        n *= (size_t)dims[d];
    }
    if (ndim == 1)
        shape[pos - 1] = '\0'; /* "(5,)" */
    int hl = snprintf(hdr, sizeof(hdr), "{'descr': '<f4', 'fortran_order': False, 'shape': (%s), }",
                      shape);
    size_t total = 10 + (size_t)hl + 1;
    size_t pad = (64 - total % 64) % 64;
    memset(hdr + hl, ' ', pad);
    hdr[(size_t)hl + pad] = '\n';
    size_t hlen = (size_t)hl + pad + 1;
    if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= sizeof(tmp))
        return dp_errinfo_set(ei, DP_EINVAL, "output path too long");
    FILE *f = fopen(tmp, "wb");
    if (f == NULL) {
        int e = errno;
        return dp_errinfo_set(ei, dp_err_from_errno(e), "%s: %s", tmp, strerror(e));
    }
    unsigned char pre[10] = {0x93,
                             'N',
                             'U',
                             'M',
                             'P',
                             'Y',
                             1,
                             0,
                             (unsigned char)(hlen & 0xff),
                             (unsigned char)(hlen >> 8)};
    int ok = fwrite(pre, 1, 10, f) == 10 && fwrite(hdr, 1, hlen, f) == hlen &&
             fwrite(data, 4, n, f) == n;
    ok = fclose(f) == 0 && ok;
    if (!ok || rename(tmp, path) != 0) {
        remove(tmp);
        return dp_errinfo_set(ei, DP_EIO, "%s: write failed", path);
    }
    return DP_OK;
}
