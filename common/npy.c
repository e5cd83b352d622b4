/*
 * NumPy .npy headers (see npy.h): the preamble, a strict parser for the
 * header dict, the dtype and shape checks with overflow-safe sizes, and the
 * role checks of the NPY dataset format. The stream is read through the
 * caller's callback, so the same code serves a file, an archive member
 * streamed out of a gzip'd tar, and a buffer.
 */
#include "common/npy.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "common/alloc.h"

#define NPY_MAGIC     "\x93NUMPY"
#define NPY_MAGIC_LEN 6

/* ---- Header dict parser -------------------------------------------------- */

struct npy_parser {
    const char *start, *p, *end; /* the dict text, not NUL-terminated */
    const char *name;
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
                          "%s: bad NPY header at offset %d: expected %s, found %s", ps->name,
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

/* A non-negative decimal integer below 2^63, optionally with Python 2's 'L' suffix. */
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
static enum dp_err npy_shape(struct npy_parser *ps, struct dp_npy_header *h)
{
    if (!npy_accept(ps, '('))
        return npy_syntax(ps, "'(' to start the shape tuple");
    h->ndim = 0;
    while (!npy_accept(ps, ')')) {
        if (h->ndim == DP_NPY_MAX_DIMS)
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
static enum dp_err npy_parse_dict(struct npy_parser *ps, struct dp_npy_header *h)
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
                                      "%s: structured dtypes are not supported", ps->name);
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
        return dp_errinfo_set(ps->ei, DP_EFORMAT, "%s: NPY header lacks the key '%s'", ps->name,
                              !seen_descr     ? "descr"
                              : !seen_fortran ? "fortran_order"
                                              : "shape");
    return DP_OK;
}

/* ---- Dtype and sizes ----------------------------------------------------- */

/* Splits h->descr ("<f4") into order, kind and size; 0 when it is not a supported dtype. */
static int npy_dtype_parse(struct dp_npy_header *h)
{
    const char *d = h->descr;
    if (d[0] == '\0' || strchr("<>|=", d[0]) == NULL)
        return 0;
    if (d[1] == '\0' || strchr("uif", d[1]) == NULL)
        return 0;
    if (d[2] == '\0' || strchr("1248", d[2]) == NULL || d[3] != '\0')
        return 0;
    h->kind = d[1];
    h->item_size = d[2] - '0';
    if (h->kind == 'f' && h->item_size < 4)
        return 0;
    /* Byte order only matters for multi-byte types, and '|' only fits single bytes;
     * numpy writes '<' or '>' explicitly, never '=' (native), which is refused. */
    if (h->item_size == 1)
        h->order = '|';
    else if (d[0] == '<' || d[0] == '>')
        h->order = d[0];
    else
        return 0;
    return 1;
}

void dp_npy_shape_str(const struct dp_npy_header *h, char *buf, size_t cap)
{
    if (cap == 0)
        return;
    size_t n = 0;
    int k = snprintf(buf, cap, "(");
    n = k > 0 ? (size_t)k : 0;
    for (int i = 0; i < h->ndim && n < cap; i++) {
        k = snprintf(buf + n, cap - n, "%s%" PRId64, i ? ", " : "", h->shape[i]);
        n += k > 0 ? (size_t)k : 0;
    }
    if (n < cap)
        snprintf(buf + n, cap - n, "%s)", h->ndim == 1 ? "," : "");
}

/* Element count and byte size, each checked against max before it is stored. */
static enum dp_err npy_sizes(struct dp_npy_header *h, uint64_t max, const char *name,
                             struct dp_errinfo *ei)
{
    uint64_t n = 1;
    int over = 0, empty = 0;
    for (int i = 0; i < h->ndim; i++)
        empty |= h->shape[i] == 0; /* the product is 0 whatever the others say */
    for (int i = 0; i < h->ndim && !empty && !over; i++) {
        uint64_t d = (uint64_t)h->shape[i];
        if (n > max / d)
            over = 1;
        else
            n *= d;
    }
    if (empty)
        n = 0;
    if (!over && n > max / (uint64_t)h->item_size)
        over = 1;
    if (over) {
        char shape[200];
        dp_npy_shape_str(h, shape, sizeof(shape));
        return dp_errinfo_set(ei, DP_ETOOBIG,
                              "%s: shape %s of '%s' needs more than %" PRIu64
                              " data bytes (the limit here)",
                              name, shape, h->descr, max);
    }
    h->n_elems = n;
    h->data_len = n * (uint64_t)h->item_size;
    return DP_OK;
}

/* ---- Reading ------------------------------------------------------------- */

enum dp_err dp_npy_read_header(dp_npy_read_fn read, void *ctx, const char *name,
                               uint64_t max_data_len, struct dp_npy_header *h,
                               struct dp_errinfo *ei)
{
    uint8_t pre[NPY_MAGIC_LEN + 2 + 4];
    char *text = NULL;
    enum dp_err err;

    memset(h, 0, sizeof(*h));
    err = read(ctx, pre, NPY_MAGIC_LEN + 2, "an NPY file starts with 8 bytes", ei);
    if (err != DP_OK)
        goto out;
    if (memcmp(pre, NPY_MAGIC, NPY_MAGIC_LEN) != 0) {
        err = dp_errinfo_set(ei, DP_EFORMAT,
                             "%s: bad magic %02x %02x %02x %02x %02x %02x (expected \\x93NUMPY "
                             "for NPY)",
                             name, pre[0], pre[1], pre[2], pre[3], pre[4], pre[5]);
        goto out;
    }
    int major = pre[NPY_MAGIC_LEN], minor = pre[NPY_MAGIC_LEN + 1];
    if (major < 1 || major > 3 || minor != 0) {
        err = dp_errinfo_set(ei, DP_EUNSUPPORTED,
                             "%s: NPY format version %d.%d (supported: 1.0, 2.0, 3.0)", name, major,
                             minor);
        goto out;
    }
    size_t len_bytes = major == 1 ? 2 : 4;
    uint8_t *lp = pre + NPY_MAGIC_LEN + 2;
    err = read(ctx, lp, len_bytes, "an NPY preamble needs its header length", ei);
    if (err != DP_OK)
        goto out;
    uint32_t hlen = (uint32_t)lp[0] | (uint32_t)lp[1] << 8;
    if (len_bytes == 4)
        hlen |= (uint32_t)lp[2] << 16 | (uint32_t)lp[3] << 24;
    if (hlen > DP_NPY_HEADER_MAX) {
        err = dp_errinfo_set(ei, DP_ETOOBIG,
                             "%s: NPY header of %" PRIu32 " bytes exceeds the %d-byte limit", name,
                             hlen, DP_NPY_HEADER_MAX);
        goto out;
    }
    text = dp_malloc(hlen ? hlen : 1);
    if (text == NULL) {
        err = dp_errinfo_set(ei, DP_ENOMEM, "%s: out of memory for the NPY header", name);
        goto out;
    }
    char what[96];
    snprintf(what, sizeof(what), "the NPY preamble says the header has %" PRIu32 " bytes", hlen);
    err = read(ctx, text, hlen, what, ei);
    if (err != DP_OK)
        goto out;

    h->major = major;
    h->header_len = NPY_MAGIC_LEN + 2 + len_bytes + (uint64_t)hlen;
    struct npy_parser ps = {text, text, text + hlen, name, ei};
    err = npy_parse_dict(&ps, h);
    if (err != DP_OK)
        goto out;
    if (!npy_dtype_parse(h)) {
        err = dp_errinfo_set(ei, DP_EUNSUPPORTED,
                             "%s: dtype '%s' is not supported (numeric types only: u1, i1, u2, "
                             "i2, u4, i4, u8, i8, f4, f8 with '<', '>' or '|')",
                             name, h->descr);
        goto out;
    }
    err = npy_sizes(h, max_data_len, name, ei);

out:
    dp_free(text);
    return err;
}

/* A buffer as a stream, for dp_npy_parse_header. */
struct npy_buf {
    const uint8_t *p;
    size_t len, pos;
    const char *name;
};

static enum dp_err npy_buf_read(void *ctx, void *buf, size_t len, const char *what,
                                struct dp_errinfo *ei)
{
    struct npy_buf *b = ctx;
    if (len > b->len - b->pos)
        return dp_errinfo_set(ei, DP_ETRUNC, "%s: truncated: %s but data ends after %zu bytes",
                              b->name, what, b->len);
    memcpy(buf, b->p + b->pos, len);
    b->pos += len;
    return DP_OK;
}

enum dp_err dp_npy_parse_header(const void *buf, size_t len, const char *name,
                                uint64_t max_data_len, struct dp_npy_header *h,
                                struct dp_errinfo *ei)
{
    struct npy_buf b = {buf, len, 0, name};
    return dp_npy_read_header(npy_buf_read, &b, name, max_data_len, h, ei);
}

enum dp_err dp_npy_check_len(const struct dp_npy_header *h, uint64_t file_len, const char *name,
                             struct dp_errinfo *ei)
{
    /* header_len <= 12 + 64 KiB and data_len is bounded by the caller, but
     * their sum is still checked rather than trusted not to wrap. */
    uint64_t want = h->header_len + h->data_len;
    if (want < h->data_len || file_len != want) {
        char shape[200];
        dp_npy_shape_str(h, shape, sizeof(shape));
        uint64_t have = file_len > h->header_len ? file_len - h->header_len : 0;
        return dp_errinfo_set(ei, file_len < want ? DP_ETRUNC : DP_EFORMAT,
                              "%s: shape %s of '%s' needs %" PRIu64
                              " data bytes, the file has %" PRIu64,
                              name, shape, h->descr, h->data_len, have);
    }
    return DP_OK;
}

/* ---- The NPY dataset format's arrays ------------------------------------- */

enum dp_err dp_npy_check_images(const struct dp_npy_header *h, const char *name,
                                struct dp_errinfo *ei)
{
    int is_u8 = h->kind == 'u' && h->item_size == 1;
    int is_f32 = h->kind == 'f' && h->item_size == 4 && h->order == '<';
    if (!is_u8 && !is_f32)
        return dp_errinfo_set(ei, DP_EUNSUPPORTED,
                              "%s: dtype '%s' is not supported for images (use '|u1' or '<f4')",
                              name, h->descr);
    if (h->fortran_order)
        return dp_errinfo_set(ei, DP_EUNSUPPORTED,
                              "%s: fortran_order is True; save the array in C order "
                              "(numpy.ascontiguousarray)",
                              name);
    if (h->ndim != 3 && h->ndim != 4) {
        char shape[200];
        dp_npy_shape_str(h, shape, sizeof(shape));
        return dp_errinfo_set(ei, DP_ESHAPE, "%s: image shape %s is not (N, H, W) or (N, C, H, W)",
                              name, shape);
    }
    return DP_OK;
}

enum dp_err dp_npy_check_labels(const struct dp_npy_header *h, const char *name,
                                struct dp_errinfo *ei)
{
    if (h->kind == 'f' || h->order == '>')
        return dp_errinfo_set(ei, DP_EUNSUPPORTED,
                              "%s: dtype '%s' is not supported for labels (use a little-endian "
                              "integer type such as '<i8')",
                              name, h->descr);
    /* A 1-d array has the same layout in either order, so fortran_order is moot. */
    if (h->ndim != 1) {
        char shape[200];
        dp_npy_shape_str(h, shape, sizeof(shape));
        return dp_errinfo_set(ei, DP_ESHAPE, "%s: label shape %s is not (N,)", name, shape);
    }
    return DP_OK;
}
