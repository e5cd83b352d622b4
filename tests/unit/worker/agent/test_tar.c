/*
 * wk_tar_extract_dataset: plain ustar members with the format's names are
 * extracted (NPY renamed to the engine's names); paths, links, corrupt
 * headers, truncation and oversize totals are refused by name.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tests/unit/test_util.h"
#include "worker/agent/wk_tar.h"

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

Test(wk_tar, extracts_allowed_members)
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
    cr_assert_eq(wk_tar_extract_dataset(tar, "idx", out, 1000, spec, sizeof(spec), &ei), DP_OK,
                 "%s", ei.msg);
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
    cr_assert_eq(wk_tar_extract_dataset(tar, "npy", out, 1000, spec, sizeof(spec), &ei), DP_OK,
                 "%s", ei.msg);
    snprintf(p, sizeof(p), "%s/train_images.npy", out);
    read_file(p, buf, sizeof(buf));
    cr_assert_str_eq(buf, "X");
    cr_assert(strncmp(spec, "npy:", 4) == 0);
    dp_test_tmpdir_remove(out);
    dp_test_tmpdir_remove(dir);
    DP_ASSERT_NO_LEAKS();
}

Test(wk_tar, refuses_what_is_not_a_plain_dataset)
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
        cr_assert_eq(wk_tar_extract_dataset(tar, cases[i].format, out, cases[i].max, spec,
                                            sizeof(spec), &ei),
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
    cr_assert_neq(wk_tar_extract_dataset(tar, "idx", out, 100, spec, sizeof(spec), &ei), DP_OK);
    dp_test_tmpdir_remove(out);
    dp_test_tmpdir_remove(dir);
    DP_ASSERT_NO_LEAKS();
}
