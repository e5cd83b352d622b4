/*
 * The NumPy .npy reader behind "npy:DIR".
 *
 * A .npy file (format versions 1.0, 2.0 and 3.0) is the magic "\x93NUMPY",
 * two version bytes, a little-endian header length (2 bytes in 1.0, 4 bytes
 * later), an ASCII (UTF-8 in 3.0) Python dict literal padded with spaces and
 * a newline, and the raw array data:
 *
 *   {'descr': '|u1', 'fortran_order': False, 'shape': (60000, 28, 28), }
 *
 * The dict is parsed with a small strict parser instead of being matched
 * textually, so key order, either quote style, spacing, a trailing comma and
 * Python 2's "60000L" are all accepted, while anything else (unknown keys,
 * duplicate keys, structured dtypes, stray characters) is an error that
 * gives the offset in the header.
 *
 * Images are '|u1' (kept as uint8) or '<f4' (kept as float) with shape
 * (N, H, W) or (N, C, H, W) in C order; labels are any little-endian integer
 * type with shape (N,), converted to int32 after a range check.
 */
#include "worker/nn/data.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "common/alloc.h"
#include "worker/nn/data_int.h"

#define NPY_MAGIC      "\x93NUMPY"
#define NPY_MAGIC_LEN  6
#define NPY_HEADER_MAX 65536 /* bytes of dict text; numpy writes well under 1 KiB */
#define NPY_MAX_DIMS   8

static const char *const npy_names[2][2] = {
    [NN_SPLIT_TRAIN] = {"train_images.npy", "train_labels.npy"},
    [NN_SPLIT_TEST] = {"test_images.npy", "test_labels.npy"},
};

struct npy_header {
    char descr[16];    /* e.g. "<f4" */
    int fortran_order; /* 0 or 1 */
    int ndim;
    int64_t shape[NPY_MAX_DIMS];
};

/* A parsed descr: byte order '<', '>' or '|', kind 'u', 'i' or 'f', size in bytes. */
struct npy_dtype {
    char order;
    char kind;
    int size;
};

/* ---- Header dict parser -------------------------------------------------- */

struct npy_parser {
    const char *start, *p, *end; /* the dict text, not NUL-terminated */
    const char *path;
    struct dp_errinfo *ei;
};

static enum dp_err npy_syntax(struct npy_parser *ps, const char *expected)
{
    char found[24];

    if (ps->p >= ps->end)
        snprintf(found, sizeof(found), "the end of the header");
    else if (*ps->p >= 0x20 && *ps->p < 0x7f)
        snprintf(found, sizeof(found), "'%c'", *ps->p);
    else
        snprintf(found, sizeof(found), "byte 0x%02x", (unsigned)(unsigned char)*ps->p);
    return dp_errinfo_set(ps->ei, DP_EFORMAT,
                          "%s: bad NPY header at offset %d: expected %s, found %s", ps->path,
                          (int)(ps->p - ps->start), expected, found);
}

static void npy_skip_ws(struct npy_parser *ps)
{
    while (ps->p < ps->end && (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r'))
        ps->p++;
}

/* Consumes c (after whitespace) if it is next; returns whether it was. */
static int npy_accept(struct npy_parser *ps, char c)
{
    npy_skip_ws(ps);
    if (ps->p < ps->end && *ps->p == c) {
        ps->p++;
        return 1;
    }
    return 0;
}

/* A quoted string without escapes, into buf (cap bytes with the NUL). */
static enum dp_err npy_string(struct npy_parser *ps, char *buf, size_t cap, const char *what)
{
    npy_skip_ws(ps);
    if (ps->p >= ps->end || (*ps->p != '\'' && *ps->p != '"'))
        return npy_syntax(ps, what);
    char quote = *ps->p++;
    size_t n = 0;
    while (ps->p < ps->end && *ps->p != quote) {
        if (*ps->p == '\\' || (unsigned char)*ps->p < 0x20 || n + 1 >= cap)
            return npy_syntax(ps, "a short string without escapes");
        buf[n++] = *ps->p++;
    }
    if (ps->p >= ps->end)
        return npy_syntax(ps, "a closing quote");
    ps->p++;
    buf[n] = '\0';
    return DP_OK;
}

/* A non-negative decimal integer, optionally with Python 2's 'L' suffix. */
static enum dp_err npy_int(struct npy_parser *ps, int64_t *v)
{
    npy_skip_ws(ps);
    if (ps->p >= ps->end || *ps->p < '0' || *ps->p > '9')
        return npy_syntax(ps, "a non-negative integer");
    int64_t x = 0;
    while (ps->p < ps->end && *ps->p >= '0' && *ps->p <= '9') {
        int d = *ps->p - '0';
        if (x > (INT64_MAX - d) / 10)
            return npy_syntax(ps, "an integer below 2^63");
        x = x * 10 + d;
        ps->p++;
    }
    if (ps->p < ps->end && *ps->p == 'L')
        ps->p++;
    *v = x;
    return DP_OK;
}

/* "(d0, d1, ...)" with an optional trailing comma; "()" is a 0-d shape. */
static enum dp_err npy_shape(struct npy_parser *ps, struct npy_header *h)
{
    if (!npy_accept(ps, '('))
        return npy_syntax(ps, "'(' to start the shape tuple");
    h->ndim = 0;
    while (!npy_accept(ps, ')')) {
        if (h->ndim == NPY_MAX_DIMS)
            return npy_syntax(ps, "at most 8 dimensions");
        enum dp_err err = npy_int(ps, &h->shape[h->ndim]);
        if (err != DP_OK)
            return err;
        h->ndim++;
        if (npy_accept(ps, ','))
            continue;
        if (!npy_accept(ps, ')'))
            return npy_syntax(ps, "',' or ')' in the shape tuple");
        break;
    }
    return DP_OK;
}

static enum dp_err npy_bool(struct npy_parser *ps, int *v)
{
    npy_skip_ws(ps);
    size_t left = (size_t)(ps->end - ps->p);
    if (left >= 4 && memcmp(ps->p, "True", 4) == 0) {
        ps->p += 4;
        *v = 1;
    } else if (left >= 5 && memcmp(ps->p, "False", 5) == 0) {
        ps->p += 5;
        *v = 0;
    } else {
        return npy_syntax(ps, "True or False");
    }
    return DP_OK;
}

/* Parses the whole dict; every one of the three keys must appear exactly once. */
static enum dp_err npy_parse_dict(struct npy_parser *ps, struct npy_header *h)
{
    int seen_descr = 0, seen_fortran = 0, seen_shape = 0;
    char key[32];
    enum dp_err err;

    if (!npy_accept(ps, '{'))
        return npy_syntax(ps, "'{' to start the header dict");
    while (!npy_accept(ps, '}')) {
        const char *key_at = ps->p;
        err = npy_string(ps, key, sizeof(key), "a quoted key or '}'");
        if (err != DP_OK)
            return err;
        if (!npy_accept(ps, ':'))
            return npy_syntax(ps, "':' after the key");
        int *seen;
        if (strcmp(key, "descr") == 0) {
            seen = &seen_descr;
            npy_skip_ws(ps);
            if (ps->p < ps->end && *ps->p == '[')
                return dp_errinfo_set(ps->ei, DP_EUNSUPPORTED,
                                      "%s: structured dtypes are not supported", ps->path);
            err = npy_string(ps, h->descr, sizeof(h->descr), "a dtype string such as '<f4'");
        } else if (strcmp(key, "fortran_order") == 0) {
            seen = &seen_fortran;
            err = npy_bool(ps, &h->fortran_order);
        } else if (strcmp(key, "shape") == 0) {
            seen = &seen_shape;
            err = npy_shape(ps, h);
        } else {
            ps->p = key_at;
            return npy_syntax(ps, "one of the keys 'descr', 'fortran_order', 'shape'");
        }
        if (err != DP_OK)
            return err;
        if (*seen) {
            ps->p = key_at;
            return npy_syntax(ps, "each key only once");
        }
        *seen = 1;
        if (npy_accept(ps, ','))
            continue;
        if (!npy_accept(ps, '}'))
            return npy_syntax(ps, "',' or '}' after a value");
        break;
    }
    npy_skip_ws(ps);
    if (ps->p != ps->end)
        return npy_syntax(ps, "only padding after the dict");
    if (!seen_descr || !seen_fortran || !seen_shape)
        return dp_errinfo_set(ps->ei, DP_EFORMAT, "%s: NPY header lacks the key '%s'", ps->path,
                              !seen_descr     ? "descr"
                              : !seen_fortran ? "fortran_order"
                                              : "shape");
    return DP_OK;
}

/* ---- Header reading ------------------------------------------------------ */

static enum dp_err npy_read_header(struct nn_data__file *f, struct npy_header *h,
                                   struct dp_errinfo *ei)
{
    uint8_t pre[NPY_MAGIC_LEN + 2 + 4];
    char *text = NULL;
    enum dp_err err;

    memset(h, 0, sizeof(*h));
    err = nn_data__read(f, pre, NPY_MAGIC_LEN + 2, "an NPY file starts with 8 bytes", ei);
    if (err != DP_OK)
        goto out;
    if (memcmp(pre, NPY_MAGIC, NPY_MAGIC_LEN) != 0) {
        err = dp_errinfo_set(ei, DP_EFORMAT,
                             "%s: bad magic %02x %02x %02x %02x %02x %02x (expected \\x93NUMPY "
                             "for NPY)",
                             f->path, pre[0], pre[1], pre[2], pre[3], pre[4], pre[5]);
        goto out;
    }
    int major = pre[NPY_MAGIC_LEN], minor = pre[NPY_MAGIC_LEN + 1];
    if (major < 1 || major > 3 || minor != 0) {
        err = dp_errinfo_set(ei, DP_EUNSUPPORTED,
                             "%s: NPY format version %d.%d (supported: 1.0, 2.0, 3.0)", f->path,
                             major, minor);
        goto out;
    }
    size_t len_bytes = major == 1 ? 2 : 4;
    uint8_t *lp = pre + NPY_MAGIC_LEN + 2;
    err = nn_data__read(f, lp, len_bytes, "an NPY preamble needs its header length", ei);
    if (err != DP_OK)
        goto out;
    uint32_t hlen = (uint32_t)lp[0] | (uint32_t)lp[1] << 8;
    if (len_bytes == 4)
        hlen |= (uint32_t)lp[2] << 16 | (uint32_t)lp[3] << 24;
    if (hlen > NPY_HEADER_MAX) {
        err = dp_errinfo_set(ei, DP_ETOOBIG,
                             "%s: NPY header of %" PRIu32 " bytes exceeds the %d-byte limit",
                             f->path, hlen, NPY_HEADER_MAX);
        goto out;
    }
    text = dp_malloc(hlen);
    if (text == NULL) {
        err = dp_errinfo_set(ei, DP_ENOMEM, "%s: out of memory for the NPY header", f->path);
        goto out;
    }
    char what[96];
    snprintf(what, sizeof(what), "the NPY preamble says the header has %" PRIu32 " bytes", hlen);
    err = nn_data__read(f, text, hlen, what, ei);
    if (err != DP_OK)
        goto out;

    struct npy_parser ps = {text, text, text + hlen, f->path, ei};
    err = npy_parse_dict(&ps, h);

out:
    dp_free(text);
    return err;
}

/* Splits a descr such as "<f4" into its parts; returns 0 if it is not of that form. */
static int npy_dtype_parse(const char *descr, struct npy_dtype *dt)
{
    if (strchr("<>|", descr[0]) == NULL || descr[0] == '\0')
        return 0;
    if (strchr("uif", descr[1]) == NULL || descr[1] == '\0')
        return 0;
    if (descr[2] < '1' || descr[2] > '8' || descr[3] != '\0')
        return 0;
    dt->order = descr[0];
    dt->kind = descr[1];
    dt->size = descr[2] - '0';
    /* Byte order only matters for multi-byte types, and '|' only fits single bytes. */
    if (dt->size == 1)
        dt->order = '|';
    else if (dt->order == '|')
        return 0;
    return 1;
}

/* "(60000, 28, 28)" for messages. */
static void npy_shape_str(const struct npy_header *h, char *buf, size_t cap)
{
    size_t n = (size_t)snprintf(buf, cap, "(");
    for (int i = 0; i < h->ndim && n < cap; i++)
        n += (size_t)snprintf(buf + n, cap - n, "%s%" PRId64, i ? ", " : "", h->shape[i]);
    if (n < cap)
        snprintf(buf + n, cap - n, "%s)", h->ndim == 1 ? "," : "");
}

static int npy_host_is_little_endian(void)
{
    const uint32_t one = 1;
    uint8_t first;
    memcpy(&first, &one, 1);
    return first == 1;
}

/* ---- Loading ------------------------------------------------------------- */

static enum dp_err npy_load_images(struct nn_data__file *f, const struct npy_header *h,
                                   int64_t n_labels, const char *label_path, struct nn_dataset *out,
                                   struct dp_errinfo *ei)
{
    struct npy_dtype dt;
    char shape[128], what[192];
    enum dp_err err;

    npy_shape_str(h, shape, sizeof(shape));
    int known = npy_dtype_parse(h->descr, &dt);
    int is_u8 = known && dt.kind == 'u' && dt.size == 1;
    int is_f32 = known && dt.kind == 'f' && dt.size == 4 && dt.order == '<';
    if (!is_u8 && !is_f32)
        return dp_errinfo_set(ei, DP_EUNSUPPORTED,
                              "%s: dtype '%s' is not supported for images (use '|u1' or '<f4')",
                              f->path, h->descr);
    if (h->fortran_order)
        return dp_errinfo_set(ei, DP_EUNSUPPORTED,
                              "%s: fortran_order is True; save the array in C order "
                              "(numpy.ascontiguousarray)",
                              f->path);
    if (h->ndim != 3 && h->ndim != 4)
        return dp_errinfo_set(ei, DP_ESHAPE, "%s: image shape %s is not (N, H, W) or (N, C, H, W)",
                              f->path, shape);
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
static enum dp_err npy_load_labels(struct nn_data__file *f, const struct npy_header *h,
                                   struct nn_dataset *out, struct dp_errinfo *ei)
{
    struct npy_dtype dt;
    uint8_t *raw = NULL;
    char what[96];
    enum dp_err err;

    if (!npy_dtype_parse(h->descr, &dt))
        return dp_errinfo_set(ei, DP_EUNSUPPORTED, "%s: dtype '%s'", f->path, h->descr);
    size_t n = (size_t)out->n;
    size_t size = (size_t)dt.size;
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
        int negative = dt.kind == 'i' && (u & sign) != 0;
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

enum dp_err nn_data__load_npy(const char *dir, enum nn_split split, struct nn_dataset *out,
                              struct dp_errinfo *ei)
{
    struct nn_data__file img = {0}, lab = {0};
    struct npy_header ih, lh;
    struct npy_dtype ldt;
    char shape[128], what[96];
    enum dp_err err;

    /* Both headers first, so that mismatches are found before the big read. */
    err = nn_data__open(&img, dir, npy_names[split][0], 1, ei);
    if (err != DP_OK)
        goto out;
    err = npy_read_header(&img, &ih, ei);
    if (err != DP_OK)
        goto out;
    err = nn_data__open(&lab, dir, npy_names[split][1], 1, ei);
    if (err != DP_OK)
        goto out;
    err = npy_read_header(&lab, &lh, ei);
    if (err != DP_OK)
        goto out;
    if (!npy_dtype_parse(lh.descr, &ldt) || ldt.kind == 'f' || ldt.order == '>') {
        err = dp_errinfo_set(ei, DP_EUNSUPPORTED,
                             "%s: dtype '%s' is not supported for labels (use a little-endian "
                             "integer type such as '<i8')",
                             lab.path, lh.descr);
        goto out;
    }
    /* A 1-d array has the same layout in either order, so fortran_order is moot. */
    if (lh.ndim != 1) {
        npy_shape_str(&lh, shape, sizeof(shape));
        err = dp_errinfo_set(ei, DP_ESHAPE, "%s: label shape %s is not (N,)", lab.path, shape);
        goto out;
    }

    if (lh.shape[0] <= INT32_MAX) {
        snprintf(what, sizeof(what), "header says %" PRId64 " labels of '%s'", lh.shape[0],
                 lh.descr);
        err = nn_data__check_len(&lab, (uint64_t)lh.shape[0] * (uint64_t)ldt.size, what, ei);
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
