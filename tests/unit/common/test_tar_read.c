/*
 * dp_tar_extract_flat: what dp_tar_write_dir packs comes back byte for
 * byte with its modes; members that are not plain files with plain names
 * (links, directories, paths, "..", written here with libarchive), a
 * damaged header, a cut archive, a repeated name and too many bytes are
 * refused naming the problem.
 */
#include <archive.h>
#include <archive_entry.h>
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "common/alloc.h"
#include "common/file.h"
#include "common/tar_read.h"
#include "common/tar_write.h"
#include "tests/unit/test_util.h"

static void put(const char *dir, const char *name, const char *text, mode_t mode)
{
    char p[512];
    snprintf(p, sizeof(p), "%s/%s", dir, name);
    FILE *f = fopen(p, "wb");
    cr_assert_not_null(f, "%s", p);
    fputs(text, f);
    fclose(f);
    chmod(p, mode);
}

static void expect_file(const char *dir, const char *name, const char *text, int mode)
{
    char p[512];
    snprintf(p, sizeof(p), "%s/%s", dir, name);
    unsigned char *b = NULL;
    size_t n = 0;
    cr_assert_eq(dp_file_read(p, p, 1 << 20, &b, &n, NULL), DP_OK, "%s", p);
    cr_assert_eq(n, strlen(text), "%s", p);
    cr_assert(memcmp(b, text, n) == 0, "%s", p);
    dp_free(b);
    struct stat st;
    cr_assert_eq(stat(p, &st), 0);
    cr_assert_eq(st.st_mode & 0777, mode, "%s: %o", p, st.st_mode & 0777);
}

Test(dp_tar_read, what_tar_write_packs_comes_back)
{
    char src[256], dst[256], tar[300];
    dp_test_tmpdir_make(src, sizeof(src), "trs");
    dp_test_tmpdir_make(dst, sizeof(dst), "trd");
    put(src, "Makefile", "all:\n\tcc -c model.c\n", 0644);
    put(src, "run", "#!/bin/sh\n", 0755);
    put(src, "empty", "", 0600);
    snprintf(tar, sizeof(tar), "%s.tar", src);
    struct dp_errinfo ei = {0};
    cr_assert_eq(dp_tar_write_dir(src, tar, 1 << 20, &ei), DP_OK, "%s", ei.msg);
    cr_assert_eq(dp_tar_extract_flat(tar, dst, 1 << 20, &ei), DP_OK, "%s", ei.msg);
    expect_file(dst, "Makefile", "all:\n\tcc -c model.c\n", 0644);
    expect_file(dst, "run", "#!/bin/sh\n", 0755);
    expect_file(dst, "empty", "", 0644);
    /* Over the byte bound. */
    char dst2[256];
    dp_test_tmpdir_make(dst2, sizeof(dst2), "trd2");
    cr_assert_eq(dp_tar_extract_flat(tar, dst2, 10, &ei), DP_ETOOBIG);
    /* Again into the same directory: a name that exists is refused, not overwritten. */
    cr_assert_eq(dp_tar_extract_flat(tar, dst, 1 << 20, &ei), DP_EFORMAT);
    cr_assert(strstr(ei.msg, "twice") != NULL, "%s", ei.msg);
    DP_ASSERT_NO_LEAKS();
}

/* A one-member ustar archive at path, the member as libarchive writes it. */
static void write_one(const char *path, const char *name, int type, const char *link)
{
    struct archive *a = archive_write_new();
    archive_write_set_format_ustar(a);
    cr_assert_eq(archive_write_open_filename(a, path), ARCHIVE_OK);
    struct archive_entry *e = archive_entry_new();
    archive_entry_set_pathname(e, name);
    archive_entry_set_filetype(e, (unsigned)type);
    archive_entry_set_perm(e, 0644);
    if (link)
        archive_entry_set_symlink(e, link);
    archive_entry_set_size(e, type == AE_IFREG ? 3 : 0);
    cr_assert_eq(archive_write_header(a, e), ARCHIVE_OK);
    if (type == AE_IFREG)
        archive_write_data(a, "abc", 3);
    archive_entry_free(e);
    archive_write_close(a);
    archive_write_free(a);
}

Test(dp_tar_read, anything_but_plain_files_is_refused)
{
    char dir[256], tar[300], out[300];
    dp_test_tmpdir_make(dir, sizeof(dir), "trb");
    snprintf(tar, sizeof(tar), "%s/x.tar", dir);
    static const struct {
        const char *name;
        int type;
        const char *link, *why;
    } cases[] = {
        {"sub/file", AE_IFREG, NULL, "plain file name"},
        {"..", AE_IFREG, NULL, "plain file name"},
        {"link", AE_IFLNK, "/etc/passwd", "regular file"},
        {"dir", AE_IFDIR, NULL, "plain file name"}, /* libarchive writes "dir/" */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        write_one(tar, cases[i].name, cases[i].type, cases[i].link);
        snprintf(out, sizeof(out), "%s/o%zu", dir, i);
        cr_assert_eq(mkdir(out, 0700), 0);
        struct dp_errinfo ei = {0};
        cr_assert_eq(dp_tar_extract_flat(tar, out, 1 << 20, &ei), DP_EFORMAT, "%s", cases[i].name);
        cr_assert(strstr(ei.msg, cases[i].why) != NULL, "%s: %s", cases[i].name, ei.msg);
    }
    /* A good member, then damage: a wrong checksum, a cut archive. */
    write_one(tar, "ok", AE_IFREG, NULL);
    unsigned char *b = NULL;
    size_t n = 0;
    cr_assert_eq(dp_file_read(tar, tar, 1 << 20, &b, &n, NULL), DP_OK);
    b[0] = 'p'; /* the name: the checksum no longer adds up */
    FILE *f = fopen(tar, "wb");
    fwrite(b, 1, n, f);
    fclose(f);
    struct dp_errinfo ei = {0};
    snprintf(out, sizeof(out), "%s/ck", dir);
    cr_assert_eq(mkdir(out, 0700), 0);
    cr_assert_eq(dp_tar_extract_flat(tar, out, 1 << 20, &ei), DP_EFORMAT);
    cr_assert(strstr(ei.msg, "checksum") != NULL, "%s", ei.msg);
    b[0] = 'o';
    f = fopen(tar, "wb");
    fwrite(b, 1, 512 + 1, f); /* the header and one byte of the member */
    fclose(f);
    snprintf(out, sizeof(out), "%s/cut", dir);
    cr_assert_eq(mkdir(out, 0700), 0);
    cr_assert_eq(dp_tar_extract_flat(tar, out, 1 << 20, &ei), DP_ETRUNC, "%s", ei.msg);
    dp_free(b);
    DP_ASSERT_NO_LEAKS();
}
