/*
 * Tests for worker/nn/data.h: the IDX, CIFAR-10 and NPY readers on tiny files
 * written into a fresh temporary directory per test (plain and gzipped), one
 * test per failure class checking the code and that the message names the
 * file, synthetic data, subsets, channel statistics, allocation failures,
 * and the real Fashion-MNIST when it is installed.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <inttypes.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "common/alloc.h"
#include "tests/unit/test_util.h"
#include "worker/nn/data.h"

#define FASHION_DIR "/usr/share/datasets/fashion-mnist"

/* ---- Fixture: one temporary directory per test --------------------------- */

static char tmpdir[64];

static void data_setup(void)
{
    dp_test_tmpdir_make(tmpdir, sizeof(tmpdir), "test-data");
}

static void data_teardown(void)
{
    dp_test_tmpdir_remove(tmpdir);
}

TestSuite(data, .init = data_setup, .fini = data_teardown);

/* ---- Helpers: byte buffers and files ------------------------------------- */

struct bytes {
    uint8_t *p;
    size_t len, cap;
};

static void bytes_add(struct bytes *b, const void *p, size_t len)
{
    if (b->len + len > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + len)
            cap *= 2;
        uint8_t *np = dp_realloc(b->p, cap);
        cr_assert_not_null(np);
        b->p = np;
        b->cap = cap;
    }
    if (len > 0)
        memcpy(b->p + b->len, p, len);
    b->len += len;
}

static void bytes_u32be(struct bytes *b, uint32_t v)
{
    uint8_t x[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
    bytes_add(b, x, 4);
}

static void bytes_free(struct bytes *b)
{
    dp_free(b->p);
    memset(b, 0, sizeof(*b));
}

static void path_of(char *buf, size_t cap, const char *name)
{
    snprintf(buf, cap, "%s/%s", tmpdir, name);
}

static void put_file(const char *name, const void *p, size_t len)
{
    char path[512];
    path_of(path, sizeof(path), name);
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f, "cannot create %s", path);
    if (len > 0)
        cr_assert_eq(fwrite(p, 1, len, f), len);
    cr_assert_eq(fclose(f), 0);
}

static void put_gz(const char *name, const void *p, size_t len)
{
    char path[512];
    path_of(path, sizeof(path), name);
    gzFile gz = gzopen(path, "wb9");
    cr_assert_not_null(gz, "cannot create %s", path);
    if (len > 0)
        cr_assert_eq(gzwrite(gz, p, (unsigned)len), (int)len);
    cr_assert_eq(gzclose(gz), Z_OK);
}

/* Returns the contents of a file in tmpdir; the caller dp_frees them. */
static uint8_t *get_file(const char *name, size_t *len)
{
    char path[512];
    path_of(path, sizeof(path), name);
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f);
    cr_assert_eq(fseek(f, 0, SEEK_END), 0);
    long n = ftell(f);
    cr_assert_geq(n, 0);
    rewind(f);
    uint8_t *p = dp_malloc((size_t)n + 1);
    cr_assert_not_null(p);
    cr_assert_eq(fread(p, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return p;
}

static void rm_file(const char *name)
{
    char path[512];
    path_of(path, sizeof(path), name);
    unlink(path);
}

static void spec_of(char *buf, size_t cap, const char *kind)
{
    snprintf(buf, cap, "%s:%s", kind, tmpdir);
}

/*
 * Loads kind:tmpdir and checks the failure: code, errinfo code, that the
 * message contains want1 and want2 (either may be NULL), and that the dataset
 * came back zeroed.
 */
static void expect_fail(const char *kind, enum nn_split split, enum dp_err want, const char *want1,
                        const char *want2)
{
    char spec[128];
    struct nn_dataset ds;
    struct dp_errinfo ei = {0};

    spec_of(spec, sizeof(spec), kind);
    memset(&ds, 0x5a, sizeof(ds));
    enum dp_err err = nn_dataset_load(spec, split, &ds, &ei);
    cr_assert_eq(err, want, "got %s (%s), want %s", dp_err_name(err), ei.msg, dp_err_name(want));
    cr_assert_eq(ei.code, want);
    if (want1 != NULL)
        cr_assert_not_null(strstr(ei.msg, want1), "message '%s' lacks '%s'", ei.msg, want1);
    if (want2 != NULL)
        cr_assert_not_null(strstr(ei.msg, want2), "message '%s' lacks '%s'", ei.msg, want2);
    cr_assert_eq(ds.n, 0);
    cr_assert_null(ds.u8);
    cr_assert_null(ds.f32);
    cr_assert_null(ds.labels);
}

static struct nn_dataset expect_load(const char *kind, enum nn_split split)
{
    char spec[128];
    struct nn_dataset ds;
    struct dp_errinfo ei = {0};

    spec_of(spec, sizeof(spec), kind);
    enum dp_err err = nn_dataset_load(spec, split, &ds, &ei);
    cr_assert_eq(err, DP_OK, "load %s: %s: %s", spec, dp_err_name(err), ei.msg);
    return ds;
}

/* ---- IDX builders -------------------------------------------------------- */

static uint8_t idx_pixel(uint32_t i, uint32_t k)
{
    return (uint8_t)(i * 31u + k * 7u + 1u);
}

static uint8_t idx_label(uint32_t i)
{
    return (uint8_t)(i % 3u);
}

static void idx_images(struct bytes *b, uint32_t magic, uint32_t n, uint32_t rows, uint32_t cols)
{
    bytes_u32be(b, magic);
    bytes_u32be(b, n);
    bytes_u32be(b, rows);
    bytes_u32be(b, cols);
    for (uint32_t i = 0; i < n; i++)
        for (uint32_t k = 0; k < rows * cols; k++) {
            uint8_t v = idx_pixel(i, k);
            bytes_add(b, &v, 1);
        }
}

static void idx_labels(struct bytes *b, uint32_t magic, uint32_t n)
{
    bytes_u32be(b, magic);
    bytes_u32be(b, n);
    for (uint32_t i = 0; i < n; i++) {
        uint8_t v = idx_label(i);
        bytes_add(b, &v, 1);
    }
}

/* Writes prefix-images-idx3-ubyte and prefix-labels-idx1-ubyte (gzipped if gz). */
static void idx_write(const char *prefix, uint32_t n, uint32_t rows, uint32_t cols, int gz)
{
    struct bytes im = {0}, lb = {0};
    char name[128];

    idx_images(&im, 0x803, n, rows, cols);
    idx_labels(&lb, 0x801, n);
    snprintf(name, sizeof(name), "%s-images-idx3-ubyte%s", prefix, gz ? ".gz" : "");
    (gz ? put_gz : put_file)(name, im.p, im.len);
    snprintf(name, sizeof(name), "%s-labels-idx1-ubyte%s", prefix, gz ? ".gz" : "");
    (gz ? put_gz : put_file)(name, lb.p, lb.len);
    bytes_free(&im);
    bytes_free(&lb);
}

static void idx_check(const struct nn_dataset *ds, int n, int rows, int cols)
{
    cr_assert_eq(ds->n, n);
    cr_assert_eq(ds->c, 1);
    cr_assert_eq(ds->h, rows);
    cr_assert_eq(ds->w, cols);
    cr_assert_eq(ds->n_classes, n >= 3 ? 3 : n);
    cr_assert_not_null(ds->u8);
    cr_assert_null(ds->f32, "u8 data must stay u8");
    for (int i = 0; i < n; i++) {
        cr_assert_eq(ds->labels[i], idx_label((uint32_t)i));
        for (int k = 0; k < rows * cols; k++)
            cr_assert_eq(ds->u8[(size_t)i * (size_t)(rows * cols) + (size_t)k],
                         idx_pixel((uint32_t)i, (uint32_t)k), "sample %d pixel %d", i, k);
    }
}

/* ---- IDX ------------------------------------------------------------------ */

Test(data, idx_plain_train_and_test)
{
    idx_write("train", 5, 3, 4, 0);
    idx_write("t10k", 2, 3, 4, 0);
    struct nn_dataset tr = expect_load("idx", NN_SPLIT_TRAIN);
    struct nn_dataset te = expect_load("idx", NN_SPLIT_TEST);
    idx_check(&tr, 5, 3, 4);
    idx_check(&te, 2, 3, 4);
    nn_dataset_free(&tr);
    nn_dataset_free(&te);
    DP_ASSERT_NO_LEAKS();
}

Test(data, idx_gzip)
{
    idx_write("train", 7, 5, 2, 1);
    struct nn_dataset ds = expect_load("idx", NN_SPLIT_TRAIN);
    idx_check(&ds, 7, 5, 2);
    nn_dataset_free(&ds);
    DP_ASSERT_NO_LEAKS();
}

Test(data, idx_bad_magic)
{
    static const struct {
        uint32_t img_magic, lab_magic;
        const char *file, *msg;
    } cases[] = {
        {0x801, 0x801, "train-images-idx3-ubyte", "bad magic 0x00000801 (expected 0x00000803"},
        {0x12345678, 0x801, "train-images-idx3-ubyte", "bad magic 0x12345678"},
        {0x803, 0x803, "train-labels-idx1-ubyte", "bad magic 0x00000803 (expected 0x00000801"},
        {0x03080000, 0x801, "train-images-idx3-ubyte", "bad magic 0x03080000"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct bytes im = {0}, lb = {0};
        idx_images(&im, cases[i].img_magic, 2, 2, 2);
        idx_labels(&lb, cases[i].lab_magic, 2);
        put_file("train-images-idx3-ubyte", im.p, im.len);
        put_file("train-labels-idx1-ubyte", lb.p, lb.len);
        expect_fail("idx", NN_SPLIT_TRAIN, DP_EFORMAT, cases[i].file, cases[i].msg);
        bytes_free(&im);
        bytes_free(&lb);
    }
    DP_ASSERT_NO_LEAKS();
}

Test(data, idx_truncated_plain_every_offset)
{
    struct bytes im = {0}, lb = {0};
    idx_images(&im, 0x803, 3, 2, 5);
    idx_labels(&lb, 0x801, 3);
    put_file("train-labels-idx1-ubyte", lb.p, lb.len);
    for (size_t cut = 0; cut < im.len; cut++) {
        put_file("train-images-idx3-ubyte", im.p, cut);
        expect_fail("idx", NN_SPLIT_TRAIN, DP_ETRUNC, "train-images-idx3-ubyte: truncated", NULL);
    }
    /* The brief's example: the header is whole, the pixels are not. */
    put_file("train-images-idx3-ubyte", im.p, 16 + 7);
    expect_fail("idx", NN_SPLIT_TRAIN, DP_ETRUNC, "header says 3 images of 2x5",
                "data ends after 23 bytes");

    put_file("train-images-idx3-ubyte", im.p, im.len);
    for (size_t cut = 0; cut < lb.len; cut++) {
        put_file("train-labels-idx1-ubyte", lb.p, cut);
        expect_fail("idx", NN_SPLIT_TRAIN, DP_ETRUNC, "train-labels-idx1-ubyte: truncated", NULL);
    }
    bytes_free(&im);
    bytes_free(&lb);
    DP_ASSERT_NO_LEAKS();
}

Test(data, idx_truncated_inside_gzip_stream)
{
    size_t gz_len;
    idx_write("train", 4, 6, 6, 1);
    uint8_t *gz = get_file("train-images-idx3-ubyte.gz", &gz_len);
    cr_assert_gt(gz_len, 30);

    /* Every prefix of a gzip file is truncated: in its header, in the
     * deflate data, or in the CRC/length trailer. */
    for (size_t cut = 0; cut < gz_len; cut++) {
        put_file("train-images-idx3-ubyte.gz", gz, cut);
        expect_fail("idx", NN_SPLIT_TRAIN, DP_ETRUNC, "train-images-idx3-ubyte.gz: truncated",
                    NULL);
    }
    dp_free(gz);
    DP_ASSERT_NO_LEAKS();
}

Test(data, idx_corrupt_gzip_trailer)
{
    size_t gz_len;
    idx_write("train", 4, 6, 6, 1);
    uint8_t *gz = get_file("train-images-idx3-ubyte.gz", &gz_len);

    /* The CRC-32 (8 bytes from the end) and the length (4 from the end). */
    size_t at[] = {gz_len - 8, gz_len - 4};
    for (size_t i = 0; i < 2; i++) {
        gz[at[i]] ^= 0x55;
        put_file("train-images-idx3-ubyte.gz", gz, gz_len);
        expect_fail("idx", NN_SPLIT_TRAIN, DP_EFORMAT, "train-images-idx3-ubyte.gz",
                    "corrupt gzip stream");
        gz[at[i]] ^= 0x55;
    }
    dp_free(gz);
    DP_ASSERT_NO_LEAKS();
}

Test(data, idx_count_mismatch)
{
    struct bytes im = {0}, lb = {0};
    idx_images(&im, 0x803, 5, 2, 2);
    idx_labels(&lb, 0x801, 4);
    put_file("train-images-idx3-ubyte", im.p, im.len);
    put_file("train-labels-idx1-ubyte", lb.p, lb.len);
    expect_fail("idx", NN_SPLIT_TRAIN, DP_ESHAPE, "train-labels-idx1-ubyte: 4 labels",
                "train-images-idx3-ubyte has 5 images");
    bytes_free(&im);
    bytes_free(&lb);
    DP_ASSERT_NO_LEAKS();
}

Test(data, idx_trailing_data)
{
    struct bytes im = {0}, lb = {0};
    idx_images(&im, 0x803, 2, 2, 2);
    idx_labels(&lb, 0x801, 2);
    uint8_t extra = 0;
    bytes_add(&im, &extra, 1);
    put_file("train-images-idx3-ubyte", im.p, im.len);
    put_file("train-labels-idx1-ubyte", lb.p, lb.len);
    expect_fail("idx", NN_SPLIT_TRAIN, DP_EFORMAT, "train-images-idx3-ubyte",
                "unexpected data after the 24 bytes");
    bytes_free(&im);
    bytes_free(&lb);
    DP_ASSERT_NO_LEAKS();
}

/* A tiny gzip file that inflates to far more than its header announces must
 * be rejected after inflating one byte past the announced size, not after
 * inflating everything. */
Test(data, idx_gzip_bomb_is_bounded, .timeout = 20)
{
    struct bytes im = {0}, lb = {0};
    idx_images(&im, 0x803, 2, 2, 2);
    idx_labels(&lb, 0x801, 2);
    put_file("train-labels-idx1-ubyte", lb.p, lb.len);

    char path[512];
    path_of(path, sizeof(path), "train-images-idx3-ubyte.gz");
    gzFile gz = gzopen(path, "wb9");
    cr_assert_not_null(gz);
    cr_assert_eq(gzwrite(gz, im.p, (unsigned)im.len), (int)im.len);
    size_t zeros_len = (size_t)64 << 20;
    uint8_t *zeros = dp_calloc(1, zeros_len);
    cr_assert_not_null(zeros);
    cr_assert_eq(gzwrite(gz, zeros, (unsigned)zeros_len), (int)zeros_len);
    cr_assert_eq(gzclose(gz), Z_OK);
    dp_free(zeros);

    expect_fail("idx", NN_SPLIT_TRAIN, DP_EFORMAT, "train-images-idx3-ubyte.gz",
                "unexpected data after");
    bytes_free(&im);
    bytes_free(&lb);
    DP_ASSERT_NO_LEAKS();
}

Test(data, idx_bad_dimensions)
{
    static const struct {
        uint32_t n, rows, cols;
        enum dp_err want;
        const char *msg;
    } cases[] = {
        {0, 28, 28, DP_EFORMAT, "header says 0 samples"},
        {3, 0, 28, DP_EFORMAT, "implausible image size"},
        {3, 28, 5000, DP_EFORMAT, "implausible image size"},
        {0xffffffffu, 28, 28, DP_ETOOBIG, "samples (at most"},
        {200000, 4096, 4096, DP_ETOOBIG, "over the"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct bytes im = {0}, lb = {0};
        bytes_u32be(&im, 0x803);
        bytes_u32be(&im, cases[i].n);
        bytes_u32be(&im, cases[i].rows);
        bytes_u32be(&im, cases[i].cols);
        bytes_u32be(&lb, 0x801);
        bytes_u32be(&lb, cases[i].n);
        put_file("train-images-idx3-ubyte", im.p, im.len);
        put_file("train-labels-idx1-ubyte", lb.p, lb.len);
        expect_fail("idx", NN_SPLIT_TRAIN, cases[i].want, "train-images-idx3-ubyte", cases[i].msg);
        bytes_free(&im);
        bytes_free(&lb);
    }
    DP_ASSERT_NO_LEAKS();
}

/* A header announcing a large plain file fails on the file size, before allocating. */
Test(data, idx_short_plain_file_fails_before_allocating)
{
    struct bytes im = {0}, lb = {0};
    idx_images(&im, 0x803, 1, 28, 28);
    idx_labels(&lb, 0x801, 1000000);
    /* Patch the image count to match the labels: 1e6 images, 784 bytes present. */
    im.p[4] = 0x00;
    im.p[5] = 0x0f;
    im.p[6] = 0x42;
    im.p[7] = 0x40;
    put_file("train-images-idx3-ubyte", im.p, im.len);
    put_file("train-labels-idx1-ubyte", lb.p, lb.len);
    dp_alloc_fail_after(0); /* any allocation would turn this into DP_ENOMEM */
    expect_fail("idx", NN_SPLIT_TRAIN, DP_ETRUNC, "header says 1000000 images of 28x28",
                "data ends after 800 bytes");
    dp_alloc_fail_reset();
    bytes_free(&im);
    bytes_free(&lb);
    DP_ASSERT_NO_LEAKS();
}

Test(data, idx_missing_files)
{
    expect_fail("idx", NN_SPLIT_TRAIN, DP_ENOENT, "train-images-idx3-ubyte: no such file",
                "train-images-idx3-ubyte.gz");
    idx_write("train", 2, 2, 2, 0);
    rm_file("train-labels-idx1-ubyte");
    expect_fail("idx", NN_SPLIT_TRAIN, DP_ENOENT, "train-labels-idx1-ubyte", NULL);
    expect_fail("idx", NN_SPLIT_TEST, DP_ENOENT, "t10k-images-idx3-ubyte", NULL);

    struct nn_dataset ds;
    struct dp_errinfo ei = {0};
    cr_assert_eq(nn_dataset_load("idx:/nonexistent/dp-data", NN_SPLIT_TRAIN, &ds, &ei), DP_ENOENT);
    cr_assert_not_null(strstr(ei.msg, "/nonexistent/dp-data/train-images-idx3-ubyte"));
    DP_ASSERT_NO_LEAKS();
}

Test(data, bad_spec)
{
    static const char *specs[] = {"", "idx:", "idx", "mnist:/tmp", "cifar", "npy:", "IDX:/tmp"};
    for (size_t i = 0; i < sizeof(specs) / sizeof(specs[0]); i++) {
        struct nn_dataset ds;
        struct dp_errinfo ei = {0};
        cr_assert_eq(nn_dataset_load(specs[i], NN_SPLIT_TRAIN, &ds, &ei), DP_EINVAL, "'%s'",
                     specs[i]);
        cr_assert_eq(ei.code, DP_EINVAL);
        cr_assert_null(ds.u8);
    }
    struct nn_dataset ds;
    struct dp_errinfo ei = {0};
    cr_assert_eq(nn_dataset_load("idx:/tmp", (enum nn_split)7, &ds, &ei), DP_EINVAL);
    DP_ASSERT_NO_LEAKS();
}

/* ---- CIFAR-10 ------------------------------------------------------------- */

#define CIFAR_REC 3073

static uint8_t cifar_pixel(int sample, int k)
{
    return (uint8_t)(sample * 13 + k * 3);
}

/* Writes records [first, first + n) of a synthetic CIFAR set to name. */
static void cifar_write(const char *name, int first, int n)
{
    struct bytes b = {0};
    for (int s = first; s < first + n; s++) {
        uint8_t label = (uint8_t)(s % 10);
        bytes_add(&b, &label, 1);
        for (int k = 0; k < 3072; k++) {
            uint8_t v = cifar_pixel(s, k);
            bytes_add(&b, &v, 1);
        }
    }
    put_file(name, b.p, b.len);
    bytes_free(&b);
}

static void cifar_write_all(void)
{
    static const int counts[5] = {1, 2, 1, 3, 1};
    char name[64];
    int first = 0;
    for (int i = 0; i < 5; i++) {
        snprintf(name, sizeof(name), "data_batch_%d.bin", i + 1);
        cifar_write(name, first, counts[i]);
        first += counts[i];
    }
    cifar_write("test_batch.bin", 100, 3);
}

Test(data, cifar_train_and_test)
{
    cifar_write_all();
    struct nn_dataset tr = expect_load("cifar", NN_SPLIT_TRAIN);
    struct nn_dataset te = expect_load("cifar", NN_SPLIT_TEST);
    cr_assert_eq(tr.n, 8);
    cr_assert_eq(te.n, 3);
    for (int pass = 0; pass < 2; pass++) {
        const struct nn_dataset *ds = pass == 0 ? &tr : &te;
        int first = pass == 0 ? 0 : 100;
        cr_assert_eq(ds->c, 3);
        cr_assert_eq(ds->h, 32);
        cr_assert_eq(ds->w, 32);
        cr_assert_eq(ds->n_classes, 10);
        cr_assert_null(ds->f32);
        for (int i = 0; i < ds->n; i++) {
            cr_assert_eq(ds->labels[i], (first + i) % 10);
            for (int k = 0; k < 3072; k += 97)
                cr_assert_eq(ds->u8[(size_t)i * 3072 + (size_t)k], cifar_pixel(first + i, k));
        }
    }
    nn_dataset_free(&tr);
    nn_dataset_free(&te);
    DP_ASSERT_NO_LEAKS();
}

Test(data, cifar_size_not_multiple_of_record)
{
    cifar_write("test_batch.bin", 0, 2);
    size_t len;
    uint8_t *p = get_file("test_batch.bin", &len);
    size_t cuts[] = {0, 1, CIFAR_REC - 1, CIFAR_REC + 1, 2 * CIFAR_REC - 1};
    for (size_t i = 0; i < sizeof(cuts) / sizeof(cuts[0]); i++) {
        put_file("test_batch.bin", p, cuts[i]);
        expect_fail("cifar", NN_SPLIT_TEST, DP_EFORMAT, "test_batch.bin",
                    "not a positive multiple of the 3073-byte");
    }
    dp_free(p);
    DP_ASSERT_NO_LEAKS();
}

Test(data, cifar_label_out_of_range)
{
    cifar_write("test_batch.bin", 0, 3);
    size_t len;
    uint8_t *p = get_file("test_batch.bin", &len);
    p[2 * CIFAR_REC] = 10;
    put_file("test_batch.bin", p, len);
    expect_fail("cifar", NN_SPLIT_TEST, DP_EFORMAT, "test_batch.bin: record 2 has label 10", NULL);
    dp_free(p);
    DP_ASSERT_NO_LEAKS();
}

Test(data, cifar_missing_batch)
{
    cifar_write_all();
    rm_file("data_batch_3.bin");
    expect_fail("cifar", NN_SPLIT_TRAIN, DP_ENOENT, "data_batch_3.bin", NULL);
    DP_ASSERT_NO_LEAKS();
}

Test(data, cifar_gzip_is_rejected)
{
    struct bytes b = {0};
    uint8_t rec[CIFAR_REC] = {0};
    bytes_add(&b, rec, sizeof(rec));
    put_gz("test_batch.bin", b.p, b.len);
    expect_fail("cifar", NN_SPLIT_TEST, DP_EUNSUPPORTED, "test_batch.bin", "gzip");
    bytes_free(&b);
    DP_ASSERT_NO_LEAKS();
}

/* ---- NPY ------------------------------------------------------------------ */

/* Writes an .npy file: the preamble for `major`, dict padded as numpy pads it, data. */
static void npy_put(const char *name, int major, const char *dict, const void *data, size_t len)
{
    struct bytes b = {0};
    bytes_add(&b, "\x93NUMPY", 6);
    uint8_t ver[2] = {(uint8_t)major, 0};
    bytes_add(&b, ver, 2);
    size_t pre = 8 + (major == 1 ? 2 : 4);
    size_t dlen = strlen(dict);
    size_t pad = (64 - (pre + dlen + 1) % 64) % 64;
    uint32_t hlen = (uint32_t)(dlen + pad + 1);
    uint8_t l[4] = {(uint8_t)hlen, (uint8_t)(hlen >> 8), (uint8_t)(hlen >> 16),
                    (uint8_t)(hlen >> 24)};
    bytes_add(&b, l, major == 1 ? 2 : 4);
    bytes_add(&b, dict, dlen);
    for (size_t i = 0; i < pad; i++)
        bytes_add(&b, " ", 1);
    bytes_add(&b, "\n", 1);
    bytes_add(&b, data, len);
    put_file(name, b.p, b.len);
    bytes_free(&b);
}

static const uint8_t npy_u8[3 * 2 * 2] = {0, 1, 2, 3, 10, 11, 12, 13, 250, 251, 252, 255};

/* Valid train_labels.npy for 3 samples with labels 2, 0, 1 as little-endian int64. */
static void npy_put_labels_i8(int major)
{
    static const uint8_t lab[24] = {2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                                    0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0};
    npy_put("train_labels.npy", major, "{'descr': '<i8', 'fortran_order': False, 'shape': (3,), }",
            lab, sizeof(lab));
}

static void npy_put_images_u8(void)
{
    npy_put("train_images.npy", 1, "{'descr': '|u1', 'fortran_order': False, 'shape': (3, 2, 2), }",
            npy_u8, sizeof(npy_u8));
}

Test(data, npy_u8_images_int_label_dtypes)
{
    static const struct {
        const char *descr;
        int size;
    } dts[] = {{"<i8", 8}, {"<i4", 4}, {"<i2", 2}, {"|u1", 1}, {"|i1", 1}, {"<u2", 2}};
    static const int32_t labels[3] = {2, 0, 1};

    npy_put_images_u8();
    for (size_t d = 0; d < sizeof(dts) / sizeof(dts[0]); d++) {
        uint8_t raw[24] = {0};
        for (int i = 0; i < 3; i++)
            raw[i * dts[d].size] = (uint8_t)labels[i];
        char dict[128];
        snprintf(dict, sizeof(dict), "{'descr': '%s', 'fortran_order': False, 'shape': (3,), }",
                 dts[d].descr);
        npy_put("train_labels.npy", 1 + (int)d % 3, dict, raw, 3 * (size_t)dts[d].size);

        struct nn_dataset ds = expect_load("npy", NN_SPLIT_TRAIN);
        cr_assert_eq(ds.n, 3);
        cr_assert_eq(ds.c, 1);
        cr_assert_eq(ds.h, 2);
        cr_assert_eq(ds.w, 2);
        cr_assert_eq(ds.n_classes, 3);
        cr_assert_null(ds.f32);
        cr_assert_arr_eq(ds.u8, npy_u8, sizeof(npy_u8));
        for (int i = 0; i < 3; i++)
            cr_assert_eq(ds.labels[i], labels[i], "%s label %d", dts[d].descr, i);
        nn_dataset_free(&ds);
    }
    DP_ASSERT_NO_LEAKS();
}

Test(data, npy_f32_nchw_versions)
{
    float img[2 * 3 * 2 * 2];
    for (int i = 0; i < 24; i++)
        img[i] = (float)i / 24.0f;
    for (int major = 1; major <= 3; major++) {
        npy_put("test_images.npy", major,
                "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3, 2, 2), }", img,
                sizeof(img));
        uint8_t lab[2] = {4, 1};
        npy_put("test_labels.npy", major,
                "{'descr': '|u1', 'fortran_order': False, 'shape': (2,), }", lab, 2);
        struct nn_dataset ds = expect_load("npy", NN_SPLIT_TEST);
        cr_assert_eq(ds.n, 2);
        cr_assert_eq(ds.c, 3);
        cr_assert_eq(ds.h, 2);
        cr_assert_eq(ds.w, 2);
        cr_assert_eq(ds.n_classes, 5);
        cr_assert_null(ds.u8);
        cr_assert_not_null(ds.f32);
        for (int i = 0; i < 24; i++)
            cr_assert_float_eq(ds.f32[i], img[i], 0.0f);
        cr_assert_eq(ds.labels[0], 4);
        cr_assert_eq(ds.labels[1], 1);
        nn_dataset_free(&ds);
    }
    DP_ASSERT_NO_LEAKS();
}

Test(data, npy_header_variants)
{
    static const char *dicts[] = {
        "{'descr': '|u1', 'fortran_order': False, 'shape': (3, 2, 2), }",
        "{'descr': '|u1', 'fortran_order': False, 'shape': (3, 2, 2)}",
        "{\"descr\": \"|u1\", \"fortran_order\": False, \"shape\": (3, 2, 2)}",
        "{'shape': (3,2,2), 'fortran_order': False, 'descr': '|u1'}",
        "{ 'descr' :'|u1' ,\t'fortran_order':False,'shape':( 3 , 2 , 2 , ) , }",
        "{'descr': '|u1', 'fortran_order': False, 'shape': (3L, 2L, 2L), }",
        "{'descr': '<u1', 'fortran_order': False, 'shape': (3, 1, 2, 2), }",
    };
    npy_put_labels_i8(1);
    for (size_t i = 0; i < sizeof(dicts) / sizeof(dicts[0]); i++) {
        npy_put("train_images.npy", 1, dicts[i], npy_u8, sizeof(npy_u8));
        struct nn_dataset ds = expect_load("npy", NN_SPLIT_TRAIN);
        cr_assert_eq(ds.n, 3, "%s", dicts[i]);
        cr_assert_eq(ds.c, 1);
        cr_assert_eq(ds.h, 2);
        cr_assert_arr_eq(ds.u8, npy_u8, sizeof(npy_u8));
        nn_dataset_free(&ds);
    }
    DP_ASSERT_NO_LEAKS();
}

Test(data, npy_bad_image_headers)
{
    static const struct {
        const char *dict;
        enum dp_err want;
        const char *msg;
    } cases[] = {
        {"{'descr': '|u1', 'fortran_order': False, }", DP_EFORMAT, "lacks the key 'shape'"},
        {"{'descr': '|u1', 'shape': (3, 2, 2), }", DP_EFORMAT, "lacks the key 'fortran_order'"},
        {"{'descr': '|u1', 'fortran_order': False, 'shape': (3, 2, 2), 'x': 1}", DP_EFORMAT,
         "expected one of the keys"},
        {"{'descr': '|u1', 'descr': '|u1', 'fortran_order': False, 'shape': (3, 2, 2)}", DP_EFORMAT,
         "each key only once"},
        {"{'descr': '|u1', 'fortran_order': Flase, 'shape': (3, 2, 2)}", DP_EFORMAT,
         "expected True or False"},
        {"{'descr': '|u1', 'fortran_order': False, 'shape': (3, 2, 2)} x", DP_EFORMAT,
         "only padding after the dict"},
        {"{'descr': '|u1, 'fortran_order': False, 'shape': (3, 2, 2)}", DP_EFORMAT,
         "bad NPY header at offset"},
        {"{'descr': '|u1', 'fortran_order': False, 'shape': (3, -2, 2)}", DP_EFORMAT,
         "non-negative integer"},
        {"{'descr': '|u1', 'fortran_order': False, 'shape': (3, 2 2)}", DP_EFORMAT, "',' or ')'"},
        {"{'descr': '|u1' 'fortran_order': False, 'shape': (3, 2, 2)}", DP_EFORMAT, "',' or '}'"},
        {"'descr': '|u1', 'fortran_order': False, 'shape': (3, 2, 2)}", DP_EFORMAT, "'{' to start"},
        {"{'descr': '|u1', 'fortran_order': False, 'shape': (99999999999999999999, 2, 2)}",
         DP_EFORMAT, "below 2^63"},
        {"{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (3,)}", DP_EUNSUPPORTED,
         "structured dtypes"},
        {"{'descr': '|u1', 'fortran_order': True, 'shape': (3, 2, 2), }", DP_EUNSUPPORTED,
         "fortran_order is True"},
        {"{'descr': '<f8', 'fortran_order': False, 'shape': (3, 2, 2), }", DP_EUNSUPPORTED,
         "dtype '<f8' is not supported for images"},
        {"{'descr': '>f4', 'fortran_order': False, 'shape': (3, 2, 2), }", DP_EUNSUPPORTED,
         "dtype '>f4'"},
        {"{'descr': '<i4', 'fortran_order': False, 'shape': (3, 2, 2), }", DP_EUNSUPPORTED,
         "dtype '<i4'"},
        {"{'descr': 'O', 'fortran_order': False, 'shape': (3, 2, 2), }", DP_EUNSUPPORTED,
         "dtype 'O'"},
        {"{'descr': '|u1', 'fortran_order': False, 'shape': (12,), }", DP_ESHAPE,
         "is not (N, H, W) or (N, C, H, W)"},
        {"{'descr': '|u1', 'fortran_order': False, 'shape': (3, 4), }", DP_ESHAPE,
         "image shape (3, 4)"},
        {"{'descr': '|u1', 'fortran_order': False, 'shape': (4, 3, 1), }", DP_ESHAPE,
         "3 labels but"},
        {"{'descr': '|u1', 'fortran_order': False, 'shape': (3, 5, 1, 1), }", DP_EUNSUPPORTED,
         "5 channels"},
    };
    npy_put_labels_i8(1);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        npy_put("train_images.npy", 1, cases[i].dict, npy_u8, sizeof(npy_u8));
        expect_fail("npy", NN_SPLIT_TRAIN, cases[i].want, "train_images.npy", cases[i].msg);
    }
    DP_ASSERT_NO_LEAKS();
}

Test(data, npy_bad_label_headers)
{
    static const struct {
        const char *dict;
        enum dp_err want;
        const char *msg;
    } cases[] = {
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }", DP_EUNSUPPORTED,
         "not supported for labels"},
        {"{'descr': '>i8', 'fortran_order': False, 'shape': (3,), }", DP_EUNSUPPORTED,
         "not supported for labels"},
        {"{'descr': '<i8', 'fortran_order': False, 'shape': (3, 1), }", DP_ESHAPE,
         "label shape (3, 1) is not (N,)"},
        {"{'descr': '<i8', 'fortran_order': False, 'shape': (2,), }", DP_ESHAPE, "2 labels but"},
    };
    uint8_t raw[24] = {0};
    npy_put_images_u8();
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        npy_put("train_labels.npy", 1, cases[i].dict, raw, sizeof(raw));
        expect_fail("npy", NN_SPLIT_TRAIN, cases[i].want, "train_labels.npy", cases[i].msg);
    }
    DP_ASSERT_NO_LEAKS();
}

Test(data, npy_bad_preamble)
{
    npy_put_labels_i8(1);
    npy_put_images_u8();
    size_t len;
    uint8_t *good = get_file("train_images.npy", &len);
    uint8_t *p = get_file("train_images.npy", &len);

    p[1] = 'X';
    put_file("train_images.npy", p, len);
    expect_fail("npy", NN_SPLIT_TRAIN, DP_EFORMAT, "train_images.npy: bad magic", NULL);
    memcpy(p, good, len);

    p[6] = 4;
    put_file("train_images.npy", p, len);
    expect_fail("npy", NN_SPLIT_TRAIN, DP_EUNSUPPORTED, "train_images.npy", "format version 4.0");
    memcpy(p, good, len);

    /* Version 2.0 with a 4-byte header length of 16 MiB. */
    uint8_t big[12] = {0x93, 'N', 'U', 'M', 'P', 'Y', 2, 0, 0, 0, 0, 1};
    put_file("train_images.npy", big, sizeof(big));
    expect_fail("npy", NN_SPLIT_TRAIN, DP_ETOOBIG, "train_images.npy", "exceeds the");

    /* Cut inside the preamble, inside the header, and inside the data. */
    size_t cuts[] = {0, 3, 7, 9, 20, 64, len - 1};
    for (size_t i = 0; i < sizeof(cuts) / sizeof(cuts[0]); i++) {
        put_file("train_images.npy", good, cuts[i]);
        expect_fail("npy", NN_SPLIT_TRAIN, DP_ETRUNC, "train_images.npy: truncated", NULL);
    }
    put_file("train_images.npy", good, len - 2);
    expect_fail("npy", NN_SPLIT_TRAIN, DP_ETRUNC, "header says shape (3, 2, 2) of '|u1'",
                "data ends after 138 bytes");

    dp_free(good);
    dp_free(p);
    DP_ASSERT_NO_LEAKS();
}

Test(data, npy_labels_out_of_range_and_truncated)
{
    npy_put_images_u8();
    uint8_t raw[24] = {0};

    raw[8] = 0xff; /* sample 1 = -1 as int64 */
    for (int i = 9; i < 16; i++)
        raw[i] = 0xff;
    npy_put("train_labels.npy", 1, "{'descr': '<i8', 'fortran_order': False, 'shape': (3,), }", raw,
            24);
    expect_fail("npy", NN_SPLIT_TRAIN, DP_EFORMAT, "train_labels.npy: label -1 of sample 1",
                "out of range");

    memset(raw, 0, sizeof(raw));
    raw[4] = 0xe8; /* sample 2 = 1000 as int16 */
    raw[5] = 0x03;
    npy_put("train_labels.npy", 1, "{'descr': '<i2', 'fortran_order': False, 'shape': (3,), }", raw,
            6);
    expect_fail("npy", NN_SPLIT_TRAIN, DP_EFORMAT, "label 1000 of sample 2", NULL);

    memset(raw, 0, sizeof(raw));
    raw[0] = 0xfb; /* sample 0 = -5 as int16 */
    raw[1] = 0xff;
    npy_put("train_labels.npy", 1, "{'descr': '<i2', 'fortran_order': False, 'shape': (3,), }", raw,
            6);
    expect_fail("npy", NN_SPLIT_TRAIN, DP_EFORMAT, "label -5 of sample 0", NULL);

    memset(raw, 0, sizeof(raw));
    npy_put("train_labels.npy", 1, "{'descr': '<i4', 'fortran_order': False, 'shape': (3,), }", raw,
            11);
    expect_fail("npy", NN_SPLIT_TRAIN, DP_ETRUNC, "train_labels.npy: truncated",
                "header says 3 labels of '<i4'");
    DP_ASSERT_NO_LEAKS();
}

Test(data, npy_non_finite_and_trailing)
{
    float img[3 * 2 * 2] = {0};
    npy_put_labels_i8(2);
    img[5] = NAN;
    npy_put("train_images.npy", 2, "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 2, 2), }",
            img, sizeof(img));
    expect_fail("npy", NN_SPLIT_TRAIN, DP_EFORMAT, "train_images.npy: element 5 is NaN", NULL);
    img[5] = INFINITY;
    npy_put("train_images.npy", 2, "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 2, 2), }",
            img, sizeof(img));
    expect_fail("npy", NN_SPLIT_TRAIN, DP_EFORMAT, "element 5 is infinite", NULL);

    /* 12 bytes of data where the shape says 6. */
    npy_put("train_images.npy", 1, "{'descr': '|u1', 'fortran_order': False, 'shape': (3, 2, 1), }",
            npy_u8, sizeof(npy_u8));
    expect_fail("npy", NN_SPLIT_TRAIN, DP_EFORMAT, "train_images.npy", "unexpected data after");
    DP_ASSERT_NO_LEAKS();
}

Test(data, npy_gzipped_and_missing)
{
    expect_fail("npy", NN_SPLIT_TRAIN, DP_ENOENT, "train_images.npy: no such file", NULL);
    npy_put_labels_i8(1);
    npy_put_images_u8();
    size_t len;
    uint8_t *p = get_file("train_images.npy", &len);
    rm_file("train_images.npy");
    put_gz("train_images.npy.gz", p, len);
    struct nn_dataset ds = expect_load("npy", NN_SPLIT_TRAIN);
    cr_assert_arr_eq(ds.u8, npy_u8, sizeof(npy_u8));
    nn_dataset_free(&ds);
    rm_file("train_labels.npy");
    expect_fail("npy", NN_SPLIT_TRAIN, DP_ENOENT, "train_labels.npy", NULL);
    dp_free(p);
    DP_ASSERT_NO_LEAKS();
}

/* ---- Allocation failures ------------------------------------------------- */

Test(data, load_allocation_failures)
{
    static const char *kinds[] = {"idx", "cifar", "npy"};
    idx_write("train", 5, 3, 4, 1);
    cifar_write_all();
    npy_put_labels_i8(1);
    npy_put_images_u8();
    for (size_t k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++) {
        char spec[128];
        spec_of(spec, sizeof(spec), kinds[k]);
        int ok = 0;
        for (long n_ok = 0; n_ok < 50 && !ok; n_ok++) {
            struct nn_dataset ds;
            struct dp_errinfo ei = {0};
            dp_alloc_fail_after(n_ok);
            enum dp_err err = nn_dataset_load(spec, NN_SPLIT_TRAIN, &ds, &ei);
            dp_alloc_fail_reset();
            if (err == DP_OK) {
                ok = 1;
                cr_assert_gt(n_ok, 0, "%s loaded without allocating", spec);
            } else {
                cr_assert_eq(err, DP_ENOMEM, "%s after %ld allocations: %s", spec, n_ok, ei.msg);
                cr_assert_null(ds.u8);
                cr_assert_null(ds.labels);
            }
            nn_dataset_free(&ds);
        }
        cr_assert(ok, "%s never loaded", spec);
    }
    DP_ASSERT_NO_LEAKS();
}

/* ---- Synthetic, subset, limit, stats, free ------------------------------- */

Test(data, synthetic_is_deterministic_and_thread_independent)
{
    struct nn_dataset a, b, c;
    omp_set_num_threads(1);
    cr_assert_eq(nn_dataset_synthetic(&a, 300, 3, 8, 9, 7, 42), DP_OK);
    omp_set_num_threads(2);
    cr_assert_eq(nn_dataset_synthetic(&b, 300, 3, 8, 9, 7, 42), DP_OK);
    cr_assert_eq(nn_dataset_synthetic(&c, 300, 3, 8, 9, 7, 43), DP_OK);

    cr_assert_eq(a.n, 300);
    cr_assert_eq(a.c, 3);
    cr_assert_eq(a.h, 8);
    cr_assert_eq(a.w, 9);
    cr_assert_eq(a.n_classes, 7);
    cr_assert_null(a.f32);
    cr_assert_arr_eq(a.u8, b.u8, 300 * 3 * 8 * 9);
    cr_assert_arr_eq(a.labels, b.labels, 300 * sizeof(int32_t));
    cr_assert(memcmp(a.u8, c.u8, 300 * 3 * 8 * 9) != 0);

    int seen[7] = {0};
    for (int i = 0; i < a.n; i++) {
        cr_assert(a.labels[i] >= 0 && a.labels[i] < 7);
        seen[a.labels[i]]++;
    }
    for (int k = 0; k < 7; k++)
        cr_assert_gt(seen[k], 10, "class %d drawn %d times", k, seen[k]);

    /* Learnable: two images of one class are closer than images of two classes. */
    double same = 0, diff = 0;
    int n_same = 0, n_diff = 0;
    for (int i = 0; i + 1 < a.n; i++) {
        double d = 0;
        for (int k = 0; k < 216; k++) {
            double e = (double)a.u8[i * 216 + k] - a.u8[(i + 1) * 216 + k];
            d += e * e;
        }
        if (a.labels[i] == a.labels[i + 1]) {
            same += d;
            n_same++;
        } else {
            diff += d;
            n_diff++;
        }
    }
    cr_assert_gt(n_same, 0);
    cr_assert_lt(same / n_same, 0.8 * diff / n_diff);

    nn_dataset_free(&a);
    nn_dataset_free(&b);
    nn_dataset_free(&c);
    DP_ASSERT_NO_LEAKS();
}

Test(data, synthetic_invalid_arguments)
{
    struct nn_dataset ds;
    cr_assert_eq(nn_dataset_synthetic(&ds, 0, 1, 2, 2, 2, 1), DP_EINVAL);
    cr_assert_eq(nn_dataset_synthetic(&ds, 2, 0, 2, 2, 2, 1), DP_EINVAL);
    cr_assert_eq(nn_dataset_synthetic(&ds, 2, 5, 2, 2, 2, 1), DP_EINVAL);
    cr_assert_eq(nn_dataset_synthetic(&ds, 2, 1, 0, 2, 2, 1), DP_EINVAL);
    cr_assert_eq(nn_dataset_synthetic(&ds, 2, 1, 2, 5000, 2, 1), DP_EINVAL);
    cr_assert_eq(nn_dataset_synthetic(&ds, 2, 1, 2, 2, 0, 1), DP_EINVAL);
    cr_assert_eq(nn_dataset_synthetic(&ds, 2, 1, 2, 2, 1001, 1), DP_EINVAL);
    cr_assert_eq(nn_dataset_synthetic(&ds, 1 << 30, 4, 64, 64, 10, 1), DP_ETOOBIG);
    cr_assert_null(ds.u8);
    dp_alloc_fail_after(0);
    cr_assert_eq(nn_dataset_synthetic(&ds, 2, 1, 2, 2, 2, 1), DP_ENOMEM);
    dp_alloc_fail_after(1);
    cr_assert_eq(nn_dataset_synthetic(&ds, 2, 1, 2, 2, 2, 1), DP_ENOMEM);
    dp_alloc_fail_reset();
    cr_assert_null(ds.u8);
    DP_ASSERT_NO_LEAKS();
}

Test(data, split_holds_out_a_seeded_disjoint_share)
{
    struct nn_dataset ds, rest, val, rest2, val2;
    cr_assert_eq(nn_dataset_synthetic(&ds, 200, 1, 4, 4, 5, 11), DP_OK);
    cr_assert_eq(nn_dataset_split(&ds, 0.1, 7, &rest, &val), DP_OK);
    cr_assert_eq(val.n, 20);
    cr_assert_eq(rest.n, 180);
    cr_assert_eq(val.n_classes, 5);
    cr_assert_eq(rest.n_classes, 5);
    /* Every source sample is in exactly one part, in source order: walk
     * the source and match each image to the next of one part or the other. */
    int ir = 0, iv = 0, spread = 0;
    for (int i = 0; i < ds.n; i++) {
        const uint8_t *img = ds.u8 + (size_t)i * 16;
        if (iv < val.n && memcmp(img, val.u8 + (size_t)iv * 16, 16) == 0 &&
            ds.labels[i] == val.labels[iv]) {
            iv++;
            spread += i >= 20; /* not just the first 20 */
        } else {
            cr_assert_lt(ir, rest.n);
            cr_assert_arr_eq(img, rest.u8 + (size_t)ir * 16, 16, "sample %d is in neither part", i);
            cr_assert_eq(ds.labels[i], rest.labels[ir]);
            ir++;
        }
    }
    cr_assert_eq(iv, val.n);
    cr_assert_eq(ir, rest.n);
    cr_assert_gt(spread, 0, "the held-out samples are drawn, not the first ones");
    /* Same seed, same split; another seed, another one. */
    cr_assert_eq(nn_dataset_split(&ds, 0.1, 7, &rest2, &val2), DP_OK);
    cr_assert_arr_eq(val.u8, val2.u8, 20 * 16);
    nn_dataset_free(&rest2);
    nn_dataset_free(&val2);
    cr_assert_eq(nn_dataset_split(&ds, 0.1, 8, &rest2, &val2), DP_OK);
    cr_assert(memcmp(val.u8, val2.u8, 20 * 16) != 0, "seed 8 held out the same samples");
    nn_dataset_free(&rest2);
    nn_dataset_free(&val2);
    /* Bad fractions and sets too small to split. */
    cr_assert_eq(nn_dataset_split(&ds, 0.0, 7, &rest2, &val2), DP_EINVAL);
    cr_assert_eq(nn_dataset_split(&ds, 1.0, 7, &rest2, &val2), DP_EINVAL);
    cr_assert_null(val2.u8);
    nn_dataset_limit(&ds, 1);
    cr_assert_eq(nn_dataset_split(&ds, 0.5, 7, &rest2, &val2), DP_EINVAL);
    nn_dataset_free(&rest);
    nn_dataset_free(&val);
    nn_dataset_free(&ds);
    DP_ASSERT_NO_LEAKS();
}

Test(data, subset_and_limit)
{
    struct nn_dataset ds, sub;
    cr_assert_eq(nn_dataset_synthetic(&ds, 50, 2, 3, 3, 4, 9), DP_OK);

    cr_assert_eq(nn_dataset_subset(&sub, &ds, 10, 15), DP_OK);
    cr_assert_eq(sub.n, 15);
    cr_assert_eq(sub.c, 2);
    cr_assert_eq(sub.n_classes, 4);
    cr_assert_arr_eq(sub.u8, ds.u8 + 10 * 18, 15 * 18);
    cr_assert_arr_eq(sub.labels, ds.labels + 10, 15 * sizeof(int32_t));
    nn_dataset_free(&sub);

    cr_assert_eq(nn_dataset_subset(&sub, &ds, 40, 11), DP_EINVAL);
    cr_assert_eq(nn_dataset_subset(&sub, &ds, -1, 5), DP_EINVAL);
    cr_assert_eq(nn_dataset_subset(&sub, &ds, 0, 0), DP_EINVAL);
    cr_assert_null(sub.u8);
    cr_assert_eq(nn_dataset_subset(&sub, &ds, 0, 50), DP_OK);

    nn_dataset_limit(&ds, 100);
    cr_assert_eq(ds.n, 50);
    nn_dataset_limit(&ds, -1);
    cr_assert_eq(ds.n, 50);
    nn_dataset_limit(&ds, 20);
    cr_assert_eq(ds.n, 20);
    cr_assert_eq(ds.n_classes, 4);
    cr_assert_arr_eq(ds.u8, sub.u8, 20 * 18);
    cr_assert_arr_eq(ds.labels, sub.labels, 20 * sizeof(int32_t));

    /* A refused shrink keeps the data. */
    dp_alloc_fail_after(0);
    nn_dataset_limit(&ds, 10);
    dp_alloc_fail_reset();
    cr_assert_eq(ds.n, 10);
    cr_assert_arr_eq(ds.u8, sub.u8, 10 * 18);

    nn_dataset_free(&ds);
    nn_dataset_free(&sub);
    DP_ASSERT_NO_LEAKS();
}

Test(data, channel_stats)
{
    /* u8, 2 channels of 2 pixels, 2 samples: channel 0 is {0, 255, 255, 255}, channel 1 is
     * {51, 51, 102, 102}. */
    struct nn_dataset ds = {0};
    ds.n = 2;
    ds.c = 2;
    ds.h = 1;
    ds.w = 2;
    ds.u8 = dp_malloc(8);
    ds.labels = dp_calloc(2, sizeof(int32_t));
    uint8_t px[8] = {0, 255, 51, 51, 255, 255, 102, 102};
    memcpy(ds.u8, px, 8);
    float mean[2], std[2];
    nn_dataset_channel_stats(&ds, mean, std);
    cr_assert_float_eq(mean[0], 0.75f, 1e-6f);
    cr_assert_float_eq(std[0], (float)sqrt(0.1875), 1e-6f);
    cr_assert_float_eq(mean[1], 0.3f, 1e-6f);
    cr_assert_float_eq(std[1], 0.1f, 1e-6f);
    nn_dataset_free(&ds);

    /* f32, 1 channel: {1, 2, 3, 4} / 4 has mean 0.625 and population std sqrt(5)/8. */
    ds.n = 2;
    ds.c = 1;
    ds.h = 2;
    ds.w = 1;
    ds.f32 = dp_malloc(4 * sizeof(float));
    ds.labels = dp_calloc(2, sizeof(int32_t));
    for (int i = 0; i < 4; i++)
        ds.f32[i] = (float)(i + 1) / 4.0f;
    nn_dataset_channel_stats(&ds, mean, std);
    cr_assert_float_eq(mean[0], 0.625f, 1e-6f);
    cr_assert_float_eq(std[0], (float)(sqrt(5.0) / 8.0), 1e-6f);
    nn_dataset_free(&ds);

    /* Empty: zeros. */
    ds.c = 1;
    nn_dataset_channel_stats(&ds, mean, std);
    cr_assert_float_eq(mean[0], 0.0f, 0.0f);
    cr_assert_float_eq(std[0], 0.0f, 0.0f);
    DP_ASSERT_NO_LEAKS();
}

Test(data, free_accepts_null_and_zeroed)
{
    struct nn_dataset ds = {0};
    nn_dataset_free(NULL);
    nn_dataset_free(&ds);
    cr_assert_eq(nn_dataset_synthetic(&ds, 3, 1, 2, 2, 2, 5), DP_OK);
    nn_dataset_free(&ds);
    cr_assert_null(ds.u8);
    cr_assert_null(ds.labels);
    cr_assert_eq(ds.n, 0);
    nn_dataset_free(&ds);
    DP_ASSERT_NO_LEAKS();
}

/* ---- The real data ------------------------------------------------------- */

Test(data, real_fashion_mnist, .timeout = 120)
{
    if (access(FASHION_DIR, R_OK) != 0)
        cr_skip_test("%s is not installed", FASHION_DIR);

    struct nn_dataset tr, te;
    struct dp_errinfo ei = {0};
    enum dp_err err = nn_dataset_load("idx:" FASHION_DIR, NN_SPLIT_TRAIN, &tr, &ei);
    cr_assert_eq(err, DP_OK, "%s", ei.msg);
    err = nn_dataset_load("idx:" FASHION_DIR, NN_SPLIT_TEST, &te, &ei);
    cr_assert_eq(err, DP_OK, "%s", ei.msg);

    cr_assert_eq(tr.n, 60000);
    cr_assert_eq(te.n, 10000);
    for (int pass = 0; pass < 2; pass++) {
        const struct nn_dataset *ds = pass == 0 ? &tr : &te;
        cr_assert_eq(ds->c, 1);
        cr_assert_eq(ds->h, 28);
        cr_assert_eq(ds->w, 28);
        cr_assert_eq(ds->n_classes, 10);
        cr_assert_not_null(ds->u8);
        cr_assert_null(ds->f32, "Fashion-MNIST must stay uint8 in memory");
        int per_class[10] = {0};
        for (int i = 0; i < ds->n; i++)
            per_class[ds->labels[i]]++;
        for (int k = 0; k < 10; k++)
            cr_assert_eq(per_class[k], ds->n / 10, "class %d", k);
    }
    float mean, std;
    nn_dataset_channel_stats(&tr, &mean, &std);
    cr_assert_float_eq(mean, 0.2860f, 5e-4f);
    cr_assert_float_eq(std, 0.3530f, 5e-4f);

    nn_dataset_free(&tr);
    nn_dataset_free(&te);
    DP_ASSERT_NO_LEAKS();
}
