/*
 * dp_dataset_extract and the dataset reader: plain tar members with the
 * format's names are extracted (NPY renamed to the engine's names); paths,
 * links, corrupt headers, truncation, duplicates and oversize totals are
 * refused by name; pax headers and gzip-compressed tars are read.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tests/unit/test_util.h"
#include <zlib.h>

#include "common/dataset.h"

struct member {
    const char *name;
    char type;
    const char *body;
};

/* Writes a ustar archive of members; corrupt != 0 breaks the first checksum. */
static void tar_write(const char *path, const struct member *m, size_t n, int corrupt, int cut)
{
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f);
    for (size_t i = 0; i < n; i++) {
        unsigned char h[512];
        memset(h, 0, sizeof(h));
        size_t len = strlen(m[i].body);
        snprintf((char *)h, 100, "%s", m[i].name);
        snprintf((char *)h + 100, 8, "%07o", 0644);
        snprintf((char *)h + 124, 12, "%011o", (unsigned)(len & 07777777));
        snprintf((char *)h + 136, 12, "%011o", 0);
        h[156] = (unsigned char)m[i].type;
        if (m[i].type == '1') /* a hard link to another member */
            snprintf((char *)h + 157, 100, "%s", "x_test.npy");
        memcpy(h + 257, "ustar", 6);
        memcpy(h + 263, "00", 2);
        memset(h + 148, ' ', 8);
        unsigned sum = 0;
        for (int k = 0; k < 512; k++)
            sum += h[k];
        snprintf((char *)h + 148, 8, "%06o", sum + (i == 0 && corrupt ? 1u : 0u));
        fwrite(h, 1, 512, f);
        fwrite(m[i].body, 1, cut && i == n - 1 ? len / 2 : len, f);
        if (cut && i == n - 1)
            break;
        static const unsigned char zero[512];
        fwrite(zero, 1, (512 - len % 512) % 512, f);
    }
    if (!cut) {
        static const unsigned char zero[1024];
        fwrite(zero, 1, sizeof(zero), f);
    }
    fclose(f);
}

static void read_file(const char *path, char *buf, size_t cap)
{
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "%s missing", path);
    size_t n = fread(buf, 1, cap - 1, f);
    buf[n] = '\0';
    fclose(f);
}

Test(dataset, extracts_allowed_members)
{
    char dir[256], tar[400], out[400], p[500], buf[64], spec[600];
    dp_test_tmpdir_make(dir, sizeof(dir), "tar");
    snprintf(tar, sizeof(tar), "%s/d.tar", dir);
    snprintf(out, sizeof(out), "%s/out", dir);
    mkdir(out, 0700);
    struct member idx[] = {{"./", '5', ""},
                           {"train-images-idx3-ubyte.gz", '0', "IMAGES"},
                           {"./t10k-labels-idx1-ubyte", '\0', "LABELS"}};
    tar_write(tar, idx, 3, 0, 0);
    struct dp_errinfo ei = {DP_OK, ""};
    cr_assert_eq(dp_dataset_extract(tar, "idx", out, 1000, spec, sizeof(spec), &ei), DP_OK, "%s",
                 ei.msg);
    snprintf(p, sizeof(p), "idx:%s", out);
    cr_assert_str_eq(spec, p);
    snprintf(p, sizeof(p), "%s/train-images-idx3-ubyte.gz", out);
    read_file(p, buf, sizeof(buf));
    cr_assert_str_eq(buf, "IMAGES");
    unlink(p);
    snprintf(p, sizeof(p), "%s/t10k-labels-idx1-ubyte", out);
    unlink(p);

    struct member npy[] = {{"x_train.npy", '0', "X"}, {"y_test.npy", '0', "Y"}};
    tar_write(tar, npy, 2, 0, 0);
    cr_assert_eq(dp_dataset_extract(tar, "npy", out, 1000, spec, sizeof(spec), &ei), DP_OK, "%s",
                 ei.msg);
    snprintf(p, sizeof(p), "%s/train_images.npy", out);
    read_file(p, buf, sizeof(buf));
    cr_assert_str_eq(buf, "X");
    cr_assert(strncmp(spec, "npy:", 4) == 0);
    dp_test_tmpdir_remove(out);
    dp_test_tmpdir_remove(dir);
    DP_ASSERT_NO_LEAKS();
}

Test(dataset, refuses_what_is_not_a_plain_dataset)
{
    char dir[256], tar[400], out[400], spec[600];
    dp_test_tmpdir_make(dir, sizeof(dir), "tar");
    snprintf(tar, sizeof(tar), "%s/d.tar", dir);
    snprintf(out, sizeof(out), "%s/out", dir);
    mkdir(out, 0700);
    static const struct {
        struct member m;
        const char *format;
        int corrupt, cut;
        uint64_t max;
        enum dp_err err;
        const char *needle;
    } cases[] = {
        {{"../train-images-idx3-ubyte", '0', "x"},
         "idx",
         0,
         0,
         100,
         DP_EFORMAT,
         "'../train-images-idx3-ubyte' is not a file name"},
        {{"/etc/passwd", '0', "x"}, "idx", 0, 0, 100, DP_EFORMAT, "'/etc/passwd'"},
        {{"train-images-idx3-ubyte", '2', ""},
         "idx",
         0,
         0,
         100,
         DP_EFORMAT,
         "not a regular file (type '2')"},
        {{"train-images-idx3-ubyte", '0', "x"}, "idx", 1, 0, 100, DP_EFORMAT, "checksum"},
        {{"train-images-idx3-ubyte", '0', "0123456789"}, "idx", 0, 1, 100, DP_ETRUNC, "truncated"},
        {{"train-images-idx3-ubyte", '0', "0123456789"}, "idx", 0, 0, 5, DP_ETOOBIG, "over 5"},
        {{"data_batch_1.bin", '0', "x"}, "idx", 0, 0, 100, DP_EFORMAT, "the idx format uses"},
        {{"data_batch_1.bin", '0', "x"}, "zip", 0, 0, 100, DP_EFORMAT, "'zip' is not"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        tar_write(tar, &cases[i].m, 1, cases[i].corrupt, cases[i].cut);
        struct dp_errinfo ei = {DP_OK, ""};
        cr_assert_eq(
            dp_dataset_extract(tar, cases[i].format, out, cases[i].max, spec, sizeof(spec), &ei),
            cases[i].err, "case %zu: %s", i, ei.msg);
        cr_assert(strstr(ei.msg, cases[i].needle) != NULL, "case %zu: %s", i, ei.msg);
        dp_test_tmpdir_remove(out);
        mkdir(out, 0700);
    }
    /* Not a tar at all. */
    FILE *f = fopen(tar, "wb");
    fputs("PK\3\4 this is a zip", f);
    fclose(f);
    struct dp_errinfo ei = {DP_OK, ""};
    cr_assert_neq(dp_dataset_extract(tar, "idx", out, 100, spec, sizeof(spec), &ei), DP_OK);
    dp_test_tmpdir_remove(out);
    dp_test_tmpdir_remove(dir);
    DP_ASSERT_NO_LEAKS();
}

/* Gzips the file at path in place (a .tar.gz under the same name). */
static void gzip_file(const char *path)
{
    char buf[65536], gzpath[600];
    FILE *in = fopen(path, "rb");
    cr_assert_not_null(in);
    size_t n = fread(buf, 1, sizeof(buf), in);
    fclose(in);
    snprintf(gzpath, sizeof(gzpath), "%s.gz", path);
    gzFile gz = gzopen(gzpath, "wb");
    cr_assert_not_null(gz);
    cr_assert_eq(gzwrite(gz, buf, (unsigned)n), (int)n);
    gzclose(gz);
    cr_assert_eq(rename(gzpath, path), 0);
}

Test(dataset, reads_gzip_compressed_and_pax_tars)
{
    char dir[256], tar[400], out[400], p[500], buf[64], spec[600];
    dp_test_tmpdir_make(dir, sizeof(dir), "tar");
    snprintf(tar, sizeof(tar), "%s/d.tar", dir);
    snprintf(out, sizeof(out), "%s/out", dir);
    mkdir(out, 0700);
    struct member npy[] = {{"x_train.npy", '0', "X"}, {"y_train.npy", '0', "YY"}};
    tar_write(tar, npy, 2, 0, 0);
    gzip_file(tar);
    struct dp_errinfo ei = {DP_OK, ""};
    cr_assert_eq(dp_dataset_extract(tar, "npy", out, 1000, spec, sizeof(spec), &ei), DP_OK, "%s",
                 ei.msg);
    snprintf(p, sizeof(p), "%s/train_labels.npy", out);
    read_file(p, buf, sizeof(buf));
    cr_assert_str_eq(buf, "YY");
    /* The bound is on what comes out, not on the compressed file. */
    cr_assert_eq(dp_dataset_extract(tar, "npy", out, 2, spec, sizeof(spec), &ei), DP_ETOOBIG);
    cr_assert(strstr(ei.msg, "'y_train.npy' takes the total over 2") != NULL, "%s", ei.msg);

    /* pax: an extended header ('x') whose path record names the member; the
     * ustar name field holds something else, as pax writers do. */
    char rec[64];
    snprintf(rec, sizeof(rec), "%d path=x_test.npy\n", 19);
    cr_assert_eq(strlen(rec), 19u); /* the length counts itself */
    struct member pax[] = {{"PaxHeaders/x", 'x', rec}, {"ignored-by-pax", '0', "PAX"}};
    tar_write(tar, pax, 2, 0, 0);
    cr_assert_eq(dp_dataset_extract(tar, "npy", out, 1000, spec, sizeof(spec), &ei), DP_OK, "%s",
                 ei.msg);
    snprintf(p, sizeof(p), "%s/test_images.npy", out);
    read_file(p, buf, sizeof(buf));
    cr_assert_str_eq(buf, "PAX");
    /* ... and a pax path that is not plain is refused like a ustar one. */
    snprintf(rec, sizeof(rec), "%d path=../x_test.npy\n", 22);
    tar_write(tar, pax, 2, 0, 0);
    cr_assert_eq(dp_dataset_extract(tar, "npy", out, 1000, spec, sizeof(spec), &ei), DP_EFORMAT);
    cr_assert(strstr(ei.msg, "'../x_test.npy' is not a file name") != NULL, "%s", ei.msg);
    dp_test_tmpdir_remove(out);
    dp_test_tmpdir_remove(dir);
    DP_ASSERT_NO_LEAKS();
}

Test(dataset, refuses_duplicates_and_hard_links)
{
    char dir[256], tar[400], out[400], spec[600];
    dp_test_tmpdir_make(dir, sizeof(dir), "tar");
    snprintf(tar, sizeof(tar), "%s/d.tar", dir);
    snprintf(out, sizeof(out), "%s/out", dir);
    mkdir(out, 0700);
    /* IDX NAME and NAME.gz are the same member. */
    struct member twice[] = {{"train-images-idx3-ubyte", '0', "A"},
                             {"./train-images-idx3-ubyte.gz", '0', "B"}};
    tar_write(tar, twice, 2, 0, 0);
    struct dp_errinfo ei = {DP_OK, ""};
    cr_assert_eq(dp_dataset_extract(tar, "idx", out, 1000, spec, sizeof(spec), &ei), DP_EFORMAT);
    cr_assert(strstr(ei.msg, "'train-images-idx3-ubyte.gz' appears twice") != NULL, "%s", ei.msg);
    struct member link[] = {{"x_train.npy", '1', ""}};
    tar_write(tar, link, 1, 0, 0);
    cr_assert_eq(dp_dataset_extract(tar, "npy", out, 1000, spec, sizeof(spec), &ei), DP_EFORMAT);
    cr_assert(strstr(ei.msg, "not a regular file (type '1')") != NULL, "%s", ei.msg);
    /* The reader (the server's side) says DP_EINVAL for what the rules refuse. */
    struct dp_dataset_reader *r = NULL;
    struct dp_dataset_member m;
    cr_assert_eq(dp_dataset_open(tar, "npy", 1000, &r, &ei), DP_OK, "%s", ei.msg);
    cr_assert_eq(dp_dataset_next(r, &m, &ei), DP_EINVAL);
    dp_dataset_close(r);
    dp_test_tmpdir_remove(out);
    dp_test_tmpdir_remove(dir);
    DP_ASSERT_NO_LEAKS();
}

/* Every member says what it holds, and the engine finds each file of a
 * split through dp_dataset_engine_files (the loaders read no other list). */
Test(dataset, engine_files_cover_every_member)
{
    static const char *const formats[] = {"idx", "cifar10", "npy"};
    for (size_t i = 0; i < sizeof(formats) / sizeof(formats[0]); i++) {
        const struct dp_dataset_format *f = dp_dataset_format_find(formats[i]);
        cr_assert_not_null(f);
        cr_assert_eq(dp_dataset_format_engine(f->engine), f);
        int total = 0;
        for (int s = DP_DATASET_TRAIN; s <= DP_DATASET_TEST; s++)
            for (int k = DP_DATASET_IMAGES; k <= DP_DATASET_RECORDS; k++)
                total += dp_dataset_engine_files(f, (enum dp_dataset_split)s,
                                                 (enum dp_dataset_kind)k, NULL, 0);
        cr_assert_eq(total, f->n_members, "%s", f->name);
    }
    const char *names[6];
    const struct dp_dataset_format *c = dp_dataset_format_engine("cifar");
    cr_assert_eq(dp_dataset_engine_files(c, DP_DATASET_TRAIN, DP_DATASET_RECORDS, names, 6), 5);
    cr_assert_str_eq(names[4], "data_batch_5.bin");
    cr_assert_eq(dp_dataset_engine_files(c, DP_DATASET_TEST, DP_DATASET_RECORDS, names, 6), 1);
    cr_assert_str_eq(names[0], "test_batch.bin");
    const struct dp_dataset_format *n = dp_dataset_format_engine("npy");
    cr_assert_eq(dp_dataset_engine_files(n, DP_DATASET_TEST, DP_DATASET_LABELS, names, 1), 1);
    cr_assert_str_eq(names[0], "test_labels.npy");
    cr_assert_null(dp_dataset_format_engine("cifar10"));
    cr_assert_null(dp_dataset_format_engine(NULL));
}
