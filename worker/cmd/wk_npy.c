/*
 * float32 .npy files (see wk_npy.h). The header dict is parsed as the
 * three keys numpy writes ('descr', 'fortran_order', 'shape'), in any
 * order, each exactly once; the data size must match the shape exactly.
 */
#include "worker/cmd/wk_npy.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "common/alloc.h"

static const char *npy_skip_ws(const char *p)
{
    while (*p == ' ' || *p == '\t' || *p == '\n')
        p++;
    return p;
}

/* Parses the header dict text (NUL-terminated). */
static enum dp_err npy_parse_header(const char *h, struct wk_npy *out, const char *path,
                                    struct dp_errinfo *ei)
{
    int seen_descr = 0, seen_order = 0, seen_shape = 0;
    const char *p = npy_skip_ws(h);
    if (*p++ != '{')
        goto bad;
    for (;;) {
        p = npy_skip_ws(p);
        if (*p == '}')
            break;
        char q = *p++;
        if (q != '\'' && q != '"')
            goto bad;
        const char *k = p;
        while (*p && *p != q)
            p++;
        if (*p != q)
            goto bad;
        size_t klen = (size_t)(p - k);
        p = npy_skip_ws(p + 1);
        if (*p++ != ':')
            goto bad;
        p = npy_skip_ws(p);
        if (klen == 5 && strncmp(k, "descr", 5) == 0 && !seen_descr) {
            seen_descr = 1;
            char dq = *p++;
            if ((dq != '\'' && dq != '"') || strncmp(p, "<f4", 3) != 0 || p[3] != dq)
                return dp_errinfo_set(ei, DP_EFORMAT, "%s: dtype must be '<f4' (float32)", path);
            p += 4;
        } else if (klen == 13 && strncmp(k, "fortran_order", 13) == 0 && !seen_order) {
            seen_order = 1;
            if (strncmp(p, "False", 5) != 0)
                return dp_errinfo_set(ei, DP_EFORMAT, "%s: Fortran order is not supported", path);
            p += 5;
        } else if (klen == 5 && strncmp(k, "shape", 5) == 0 && !seen_shape) {
            seen_shape = 1;
            if (*p++ != '(')
                goto bad;
            out->ndim = 0;
            for (;;) {
                p = npy_skip_ws(p);
                if (*p == ')')
                    break;
                if (*p < '0' || *p > '9' || out->ndim >= WK_NPY_MAX_DIMS)
                    goto bad;
                int64_t v = 0;
                while (*p >= '0' && *p <= '9') {
                    if (v > ((int64_t)1 << 40))
                        goto bad;
                    v = v * 10 + (*p++ - '0');
                }
                out->dims[out->ndim++] = v;
                p = npy_skip_ws(p);
                if (*p == ',')
                    p++;
            }
            p++;
        } else {
            goto bad;
        }
        p = npy_skip_ws(p);
        if (*p == ',')
            p++;
    }
    if (!seen_descr || !seen_order || !seen_shape || out->ndim < 1)
        goto bad;
    return DP_OK;
bad:
    return dp_errinfo_set(ei, DP_EFORMAT, "%s: malformed .npy header near offset %zu", path,
                          (size_t)(p - h));
}

enum dp_err wk_npy_read_f32(const char *path, struct wk_npy *out, struct dp_errinfo *ei)
{
    memset(out, 0, sizeof(*out));
    enum dp_err err = DP_OK;
    char *hdr = NULL;
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        int e = errno;
        return dp_errinfo_set(ei, dp_err_from_errno(e), "%s: %s", path, strerror(e));
    }
    unsigned char pre[10];
    if (fread(pre, 1, 10, f) != 10 || memcmp(pre, "\x93NUMPY", 6) != 0) {
        err = dp_errinfo_set(ei, DP_EFORMAT, "%s: not a .npy file", path);
        goto out;
    }
    size_t hlen;
    if (pre[6] == 1) {
        hlen = (size_t)pre[8] | (size_t)pre[9] << 8;
    } else if (pre[6] == 2 || pre[6] == 3) {
        unsigned char b[2];
        if (fread(b, 1, 2, f) != 2) {
            err = dp_errinfo_set(ei, DP_ETRUNC, "%s: truncated header", path);
            goto out;
        }
        hlen = (size_t)pre[8] | (size_t)pre[9] << 8 | (size_t)b[0] << 16 | (size_t)b[1] << 24;
    } else {
        err = dp_errinfo_set(ei, DP_EFORMAT, "%s: .npy version %d is not supported", path, pre[6]);
        goto out;
    }
    if (hlen > 65536) {
        err = dp_errinfo_set(ei, DP_ETOOBIG, "%s: header of %zu bytes", path, hlen);
        goto out;
    }
    hdr = dp_malloc(hlen + 1);
    if (hdr == NULL) {
        err = dp_errinfo_set(ei, DP_ENOMEM, "out of memory");
        goto out;
    }
    if (fread(hdr, 1, hlen, f) != hlen) {
        err = dp_errinfo_set(ei, DP_ETRUNC, "%s: truncated header", path);
        goto out;
    }
    hdr[hlen] = '\0';
    err = npy_parse_header(hdr, out, path, ei);
    if (err)
        goto out;
    size_t n = 1;
    for (int d = 0; d < out->ndim; d++) {
        n = dp_size_mul(n, (size_t)out->dims[d]);
        if (n > WK_NPY_FILE_MAX / 4) {
            err = dp_errinfo_set(ei, DP_ETOOBIG, "%s: too many elements", path);
            goto out;
        }
    }
    /* Check the file holds exactly the data before allocating for it. */
    long here = ftell(f);
    if (here < 0 || fseek(f, 0, SEEK_END) != 0) {
        err = dp_errinfo_set(ei, DP_EIO, "%s: cannot seek", path);
        goto out;
    }
    long end = ftell(f);
    if (end < here || (size_t)(end - here) != n * 4) {
        err = dp_errinfo_set(ei, end - here < (long)(n * 4) ? DP_ETRUNC : DP_EFORMAT,
                             "%s: %ld data bytes, the shape needs %zu", path, end - here, n * 4);
        goto out;
    }
    if (fseek(f, here, SEEK_SET) != 0) {
        err = dp_errinfo_set(ei, DP_EIO, "%s: cannot seek", path);
        goto out;
    }
    out->data = dp_malloc(n ? n * 4 : 4);
    if (out->data == NULL) {
        err = dp_errinfo_set(ei, DP_ENOMEM, "%s: out of memory for %zu floats", path, n);
        goto out;
    }
    if (fread(out->data, 4, n, f) != n) {
        err = dp_errinfo_set(ei, DP_ETRUNC, "%s: truncated data", path);
        goto out;
    }
    out->n = n;
out:
    if (err) {
        dp_free(out->data);
        out->data = NULL;
    }
    dp_free(hdr);
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
