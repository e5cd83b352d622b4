/*
 * The one .npy header reader (common/npy.h), table-driven: good headers of
 * each dtype and version, truncated files, bad magic, huge shapes, a shape
 * product that overflows 64 bits, Fortran order, data lengths that do not
 * match, and the NPY dataset format's image and label rules.
 */
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "common/npy.h"
#include "tests/unit/test_util.h"

#define NPY_TEST_MAX (1ull << 32)

/* An .npy file as numpy writes it: preamble for major, dict padded to 64
 * bytes with a newline, then data_len zero bytes. Returns its length. */
static size_t npy_make(uint8_t *out, size_t cap, int major, const char *dict, size_t data_len)
{
    size_t pre = 8 + (major == 1 ? 2 : 4);
    size_t dlen = strlen(dict);
    size_t pad = (64 - (pre + dlen + 1) % 64) % 64;
    size_t hlen = dlen + pad + 1;
    size_t total = pre + hlen + data_len;
    cr_assert_leq(total, cap);
    memcpy(out, "\x93NUMPY", 6);
    out[6] = (uint8_t)major;
    out[7] = 0;
    for (size_t i = 0; i < (major == 1 ? 2u : 4u); i++)
        out[8 + i] = (uint8_t)(hlen >> (8 * i));
    memcpy(out + pre, dict, dlen);
    memset(out + pre + dlen, ' ', pad);
    out[pre + dlen + pad] = '\n';
    memset(out + pre + hlen, 0, data_len);
    return total;
}

Test(npy, good_headers_every_dtype_and_version)
{
    static const struct {
        const char *descr;
        char order, kind;
        int size;
    } dts[] = {
        {"|u1", '|', 'u', 1}, {"|i1", '|', 'i', 1}, {"<u1", '|', 'u', 1}, {"<u2", '<', 'u', 2},
        {"<i2", '<', 'i', 2}, {"<u4", '<', 'u', 4}, {"<i4", '<', 'i', 4}, {"<u8", '<', 'u', 8},
        {"<i8", '<', 'i', 8}, {"<f4", '<', 'f', 4}, {"<f8", '<', 'f', 8}, {">f4", '>', 'f', 4},
        {">i8", '>', 'i', 8},
    };
    static uint8_t buf[4096];
    for (int major = 1; major <= 3; major++)
        for (size_t d = 0; d < sizeof(dts) / sizeof(dts[0]); d++) {
            char dict[128];
            snprintf(dict, sizeof(dict),
                     "{'descr': '%s', 'fortran_order': False, 'shape': (3, 2, 5), }", dts[d].descr);
            size_t len = npy_make(buf, sizeof(buf), major, dict, 30 * (size_t)dts[d].size);
            struct dp_npy_header h;
            struct dp_errinfo ei = {0};
            enum dp_err err = dp_npy_parse_header(buf, len, "a.npy", NPY_TEST_MAX, &h, &ei);
            cr_assert_eq(err, DP_OK, "%s v%d: %s", dts[d].descr, major, ei.msg);
            cr_assert_eq(h.major, major);
            cr_assert_eq(h.order, dts[d].order, "%s", dts[d].descr);
            cr_assert_eq(h.kind, dts[d].kind);
            cr_assert_eq(h.item_size, dts[d].size);
            cr_assert_eq(h.ndim, 3);
            cr_assert_eq(h.shape[0], 3);
            cr_assert_eq(h.shape[2], 5);
            cr_assert_eq(h.n_elems, 30);
            cr_assert_eq(h.data_len, 30 * (uint64_t)dts[d].size);
            cr_assert_eq(h.header_len % 64, 0);
            cr_assert_eq(h.header_len + h.data_len, len);
            cr_assert_eq(dp_npy_check_len(&h, len, "a.npy", &ei), DP_OK);
        }
    DP_ASSERT_NO_LEAKS();
}

/* Headers that parse, with what they give. */
Test(npy, header_variants)
{
    static const struct {
        const char *dict;
        int ndim;
        uint64_t n_elems;
        int fortran;
    } cases[] = {
        {"{'descr': '|u1', 'fortran_order': False, 'shape': (3, 2, 2)}", 3, 12, 0},
        {"{\"descr\": \"|u1\", \"fortran_order\": False, \"shape\": (3, 2, 2)}", 3, 12, 0},
        {"{'shape': (3,2,2), 'fortran_order': False, 'descr': '|u1'}", 3, 12, 0},
        {"{ 'descr' :'|u1' ,\t'fortran_order':False,'shape':( 3 , 2 , 2 , ) , }", 3, 12, 0},
        {"{'descr': '|u1', 'fortran_order': False, 'shape': (3L, 2L, 2L), }", 3, 12, 0},
        {"{'descr': '<f4', 'fortran_order': True, 'shape': (4, 3), }", 2, 12, 1},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (), }", 0, 1, 0},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (0, 28, 28), }", 3, 0, 0},
        /* An empty dimension makes any other size harmless. */
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (0, 9223372036854775807), }", 2, 0, 0},
    };
    static uint8_t buf[4096];
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        size_t len = npy_make(buf, sizeof(buf), 1, cases[i].dict, cases[i].n_elems * 4);
        struct dp_npy_header h;
        struct dp_errinfo ei = {0};
        cr_assert_eq(dp_npy_parse_header(buf, len, "a.npy", NPY_TEST_MAX, &h, &ei), DP_OK, "%s: %s",
                     cases[i].dict, ei.msg);
        cr_assert_eq(h.ndim, cases[i].ndim, "%s", cases[i].dict);
        cr_assert_eq(h.n_elems, cases[i].n_elems, "%s", cases[i].dict);
        cr_assert_eq(h.fortran_order, cases[i].fortran);
    }
    DP_ASSERT_NO_LEAKS();
}

/* Headers that do not parse, with the error and a part of the message. */
Test(npy, bad_headers)
{
    static const struct {
        const char *dict;
        enum dp_err want;
        const char *msg;
    } cases[] = {
        {"{'descr': '|u1', 'fortran_order': False, }", DP_EFORMAT, "lacks the key 'shape'"},
        {"{'descr': '|u1', 'shape': (3,), }", DP_EFORMAT, "lacks the key 'fortran_order'"},
        {"{'fortran_order': False, 'shape': (3,), }", DP_EFORMAT, "lacks the key 'descr'"},
        {"{'descr': '|u1', 'fortran_order': False, 'shape': (3,), 'x': 1}", DP_EFORMAT,
         "expected one of the keys"},
        {"{'descr': '|u1', 'descr': '|u1', 'fortran_order': False, 'shape': (3,)}", DP_EFORMAT,
         "each key only once"},
        {"{'descr': '|u1', 'fortran_order': Flase, 'shape': (3,)}", DP_EFORMAT,
         "expected True or False"},
        {"{'descr': '|u1', 'fortran_order': False, 'shape': (3,)} x", DP_EFORMAT,
         "only padding after the dict"},
        {"{'descr': '|u1, 'fortran_order': False, 'shape': (3,)}", DP_EFORMAT,
         "a.npy: bad NPY header at offset"},
        {"{'descr': '|u1', 'fortran_order': False, 'shape': (3, -2)}", DP_EFORMAT,
         "non-negative integer"},
        {"{'descr': '|u1', 'fortran_order': False, 'shape': (3, 2 2)}", DP_EFORMAT, "',' or ')'"},
        {"{'descr': '|u1' 'fortran_order': False, 'shape': (3,)}", DP_EFORMAT, "',' or '}'"},
        {"'descr': '|u1', 'fortran_order': False, 'shape': (3,)}", DP_EFORMAT, "'{' to start"},
        {"{'descr': '|u1', 'fortran_order': False, 'shape': (1, 2, 3, 4, 5, 6, 7, 8, 9)}",
         DP_EFORMAT, "at most 8 dimensions"},
        {"{'descr': '|u1', 'fortran_order': False, 'shape': (99999999999999999999,)}", DP_EFORMAT,
         "below 2^63"},
        {"{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (3,)}", DP_EUNSUPPORTED,
         "structured dtypes"},
        {"{'descr': 'O', 'fortran_order': False, 'shape': (3,)}", DP_EUNSUPPORTED, "dtype 'O'"},
        {"{'descr': '<f2', 'fortran_order': False, 'shape': (3,)}", DP_EUNSUPPORTED, "dtype '<f2'"},
        {"{'descr': '<i3', 'fortran_order': False, 'shape': (3,)}", DP_EUNSUPPORTED, "dtype '<i3'"},
        {"{'descr': '|f4', 'fortran_order': False, 'shape': (3,)}", DP_EUNSUPPORTED, "dtype '|f4'"},
        {"{'descr': '<c8', 'fortran_order': False, 'shape': (3,)}", DP_EUNSUPPORTED, "dtype '<c8'"},
        /* Huge shapes: past the bound, and a product that wraps 64 bits to 0. */
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 2), }", DP_ETOOBIG,
         "a.npy: shape (4294967296, 2) of '<f4' needs more than 4294967296 data bytes"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296), }",
         DP_ETOOBIG, "needs more than"},
        {"{'descr': '|u1', 'fortran_order': False, 'shape': (4294967296, 4294967296, 1), }",
         DP_ETOOBIG, "needs more than"},
        {"{'descr': '<i8', 'fortran_order': False, 'shape': (9223372036854775807,), }", DP_ETOOBIG,
         "needs more than"},
        {"{'descr': '<i8', 'fortran_order': False, 'shape': (536870913,), }", DP_ETOOBIG,
         "needs more than"},
    };
    static uint8_t buf[4096];
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        size_t len = npy_make(buf, sizeof(buf), 1, cases[i].dict, 0);
        struct dp_npy_header h;
        struct dp_errinfo ei = {0};
        enum dp_err err = dp_npy_parse_header(buf, len, "a.npy", NPY_TEST_MAX, &h, &ei);
        cr_assert_eq(err, cases[i].want, "%s: %s (%s)", cases[i].dict, dp_err_name(err), ei.msg);
        cr_assert(strstr(ei.msg, cases[i].msg) != NULL, "%s: '%s' lacks '%s'", cases[i].dict,
                  ei.msg, cases[i].msg);
    }
    /* Exactly at the bound is fine: 2^30 float32 elements are 4 GiB. */
    size_t len = npy_make(buf, sizeof(buf), 1,
                          "{'descr': '<f4', 'fortran_order': False, 'shape': (1073741824,), }", 0);
    struct dp_npy_header h;
    struct dp_errinfo ei = {0};
    cr_assert_eq(dp_npy_parse_header(buf, len, "a.npy", NPY_TEST_MAX, &h, &ei), DP_OK, "%s",
                 ei.msg);
    cr_assert_eq(h.data_len, NPY_TEST_MAX);
    /* ...and the data must then be there. */
    cr_assert_eq(dp_npy_check_len(&h, len, "a.npy", &ei), DP_ETRUNC);
    DP_ASSERT_NO_LEAKS();
}

Test(npy, preamble_magic_version_and_truncation)
{
    static uint8_t good[256], p[256];
    size_t len = npy_make(good, sizeof(good), 1,
                          "{'descr': '|u1', 'fortran_order': False, 'shape': (3, 2, 2), }", 12);
    struct dp_npy_header h;
    struct dp_errinfo ei = {0};

    memcpy(p, good, len);
    p[1] = 'X';
    cr_assert_eq(dp_npy_parse_header(p, len, "a.npy", NPY_TEST_MAX, &h, &ei), DP_EFORMAT);
    cr_assert(strstr(ei.msg, "a.npy: bad magic") != NULL, "%s", ei.msg);

    static const struct {
        uint8_t major, minor;
    } versions[] = {{0, 0}, {4, 0}, {1, 1}, {255, 0}};
    for (size_t i = 0; i < sizeof(versions) / sizeof(versions[0]); i++) {
        memcpy(p, good, len);
        p[6] = versions[i].major;
        p[7] = versions[i].minor;
        cr_assert_eq(dp_npy_parse_header(p, len, "a.npy", NPY_TEST_MAX, &h, &ei), DP_EUNSUPPORTED);
        cr_assert(strstr(ei.msg, "NPY format version") != NULL, "%s", ei.msg);
    }

    /* Version 2.0 with a 4-byte header length of 16 MiB: refused before any read of it. */
    static const uint8_t big[12] = {0x93, 'N', 'U', 'M', 'P', 'Y', 2, 0, 0, 0, 0, 1};
    cr_assert_eq(dp_npy_parse_header(big, sizeof(big), "a.npy", NPY_TEST_MAX, &h, &ei), DP_ETOOBIG);
    cr_assert(strstr(ei.msg, "exceeds the 65536-byte limit") != NULL, "%s", ei.msg);

    /* Cut inside the preamble and inside the header. */
    static const size_t cuts[] = {0, 3, 7, 9, 20, 63};
    for (size_t i = 0; i < sizeof(cuts) / sizeof(cuts[0]); i++) {
        cr_assert_eq(dp_npy_parse_header(good, cuts[i], "a.npy", NPY_TEST_MAX, &h, &ei), DP_ETRUNC,
                     "cut at %zu", cuts[i]);
        cr_assert(strstr(ei.msg, "a.npy: truncated") != NULL, "%s", ei.msg);
    }
    DP_ASSERT_NO_LEAKS();
}

/* The data must match the file's size exactly: header_len + data_len. */
Test(npy, data_length_must_match)
{
    static uint8_t buf[256];
    size_t len = npy_make(buf, sizeof(buf), 2,
                          "{'descr': '<i4', 'fortran_order': False, 'shape': (3,), }", 12);
    struct dp_npy_header h;
    struct dp_errinfo ei = {0};
    cr_assert_eq(dp_npy_parse_header(buf, len, "y.npy", NPY_TEST_MAX, &h, &ei), DP_OK);
    const struct {
        int64_t delta;
        enum dp_err want;
        const char *msg;
    } cases[] = {
        {0, DP_OK, ""},
        {-1, DP_ETRUNC, "y.npy: shape (3,) of '<i4' needs 12 data bytes, the file has 11"},
        {-12, DP_ETRUNC, "the file has 0"},
        {-(int64_t)len, DP_ETRUNC, "the file has 0"},
        {1, DP_EFORMAT, "needs 12 data bytes, the file has 13"},
        {1000, DP_EFORMAT, "the file has 1012"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        ei.msg[0] = '\0';
        uint64_t flen = (uint64_t)((int64_t)len + cases[i].delta);
        cr_assert_eq(dp_npy_check_len(&h, flen, "y.npy", &ei), cases[i].want, "delta %lld",
                     (long long)cases[i].delta);
        cr_assert(strstr(ei.msg, cases[i].msg) != NULL, "'%s' lacks '%s'", ei.msg, cases[i].msg);
    }
}

/* Reading through a callback stops at the first data byte. */
struct npy_test_stream {
    const uint8_t *p;
    size_t len, pos;
};

static enum dp_err npy_test_read(void *ctx, void *buf, size_t len, const char *what,
                                 struct dp_errinfo *ei)
{
    struct npy_test_stream *s = ctx;
    if (len > s->len - s->pos)
        return dp_errinfo_set(ei, DP_ETRUNC, "truncated: %s", what);
    memcpy(buf, s->p + s->pos, len);
    s->pos += len;
    return DP_OK;
}

Test(npy, stream_stops_at_the_data)
{
    static uint8_t buf[256];
    size_t len = npy_make(buf, sizeof(buf), 3,
                          "{'descr': '<f8', 'fortran_order': False, 'shape': (2,), }", 16);
    buf[len - 16] = 0xAB;
    struct npy_test_stream s = {buf, len, 0};
    struct dp_npy_header h;
    struct dp_errinfo ei = {0};
    cr_assert_eq(dp_npy_read_header(npy_test_read, &s, "s.npy", 16, &h, &ei), DP_OK, "%s", ei.msg);
    cr_assert_eq(s.pos, h.header_len);
    cr_assert_eq(buf[s.pos], 0xAB);
    cr_assert_eq(h.data_len, 16);
    /* A bound one byte short refuses the same array. */
    s.pos = 0;
    cr_assert_eq(dp_npy_read_header(npy_test_read, &s, "s.npy", 15, &h, &ei), DP_ETOOBIG);
    DP_ASSERT_NO_LEAKS();
}

/* The NPY dataset format's rules for images and labels. */
Test(npy, images_and_labels)
{
    static const struct {
        const char *dict;
        int labels; /* check as labels, else as images */
        enum dp_err want;
        const char *msg;
    } cases[] = {
        {"{'descr': '|u1', 'fortran_order': False, 'shape': (3, 2, 2), }", 0, DP_OK, ""},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (3, 1, 2, 2), }", 0, DP_OK, ""},
        {"{'descr': '<f8', 'fortran_order': False, 'shape': (3, 2, 2), }", 0, DP_EUNSUPPORTED,
         "a.npy: dtype '<f8' is not supported for images"},
        {"{'descr': '>f4', 'fortran_order': False, 'shape': (3, 2, 2), }", 0, DP_EUNSUPPORTED,
         "dtype '>f4'"},
        {"{'descr': '|u1', 'fortran_order': True, 'shape': (3, 2, 2), }", 0, DP_EUNSUPPORTED,
         "fortran_order is True"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (3, 2), }", 0, DP_ESHAPE,
         "image shape (3, 2) is not (N, H, W) or (N, C, H, W)"},
        {"{'descr': '<i8', 'fortran_order': False, 'shape': (3,), }", 1, DP_OK, ""},
        {"{'descr': '|u1', 'fortran_order': True, 'shape': (3,), }", 1, DP_OK, ""},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }", 1, DP_EUNSUPPORTED,
         "not supported for labels"},
        {"{'descr': '>i8', 'fortran_order': False, 'shape': (3,), }", 1, DP_EUNSUPPORTED,
         "not supported for labels"},
        {"{'descr': '<i8', 'fortran_order': False, 'shape': (3, 1), }", 1, DP_ESHAPE,
         "a.npy: label shape (3, 1) is not (N,)"},
    };
    static uint8_t buf[4096];
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        size_t len = npy_make(buf, sizeof(buf), 1, cases[i].dict, 0);
        struct dp_npy_header h;
        struct dp_errinfo ei = {0};
        cr_assert_eq(dp_npy_parse_header(buf, len, "a.npy", NPY_TEST_MAX, &h, &ei), DP_OK, "%s",
                     ei.msg);
        enum dp_err err = cases[i].labels ? dp_npy_check_labels(&h, "a.npy", &ei)
                                          : dp_npy_check_images(&h, "a.npy", &ei);
        cr_assert_eq(err, cases[i].want, "%s: %s", cases[i].dict, ei.msg);
        if (err)
            cr_assert(strstr(ei.msg, cases[i].msg) != NULL, "'%s' lacks '%s'", ei.msg,
                      cases[i].msg);
    }
}

Test(npy, shape_str)
{
    struct dp_npy_header h = {.ndim = 3, .shape = {60000, 28, 28}};
    char buf[64];
    dp_npy_shape_str(&h, buf, sizeof(buf));
    cr_assert_str_eq(buf, "(60000, 28, 28)");
    h.ndim = 1;
    dp_npy_shape_str(&h, buf, sizeof(buf));
    cr_assert_str_eq(buf, "(60000,)");
    h.ndim = 0;
    dp_npy_shape_str(&h, buf, sizeof(buf));
    cr_assert_str_eq(buf, "()");
    h.ndim = 3;
    dp_npy_shape_str(&h, buf, 6);
    cr_assert_str_eq(buf, "(6000");
}
