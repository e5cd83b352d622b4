/*
 * dp_tar_write_dir: the same files give the same bytes whatever the
 * directory order, times and owners; members read back (through
 * libarchive) in name order with their contents and modes; anything but a
 * plain file, and a directory over the size bound, is refused.
 */
#include <archive.h>
#include <archive_entry.h>
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/alloc.h"
#include "common/file.h"
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

static void slurp(const char *path, unsigned char **buf, size_t *len)
{
    cr_assert_eq(dp_file_read(path, path, 1 << 20, buf, len, NULL), DP_OK, "%s", path);
}

Test(dp_tar, same_files_same_bytes_in_name_order)
{
    char d1[256], d2[256], t1[300], t2[300];
    dp_test_tmpdir_make(d1, sizeof(d1), "tar1");
    dp_test_tmpdir_make(d2, sizeof(d2), "tar2");
    /* Created in different orders, with different times. */
    put(d1, "model.c", "int x;\n", 0644);
    put(d1, "bench", "#!/bin/sh\n", 0755);
    put(d1, "Makefile", "all:\n", 0600);
    put(d2, "Makefile", "all:\n", 0640);
    sleep(1);
    put(d2, "model.c", "int x;\n", 0644);
    put(d2, "bench", "#!/bin/sh\n", 0700);
    snprintf(t1, sizeof(t1), "%s.tar", d1);
    snprintf(t2, sizeof(t2), "%s.tar", d2);
    struct dp_errinfo ei = {0};
    cr_assert_eq(dp_tar_write_dir(d1, t1, 1 << 20, &ei), DP_OK, "%s", ei.msg);
    cr_assert_eq(dp_tar_write_dir(d2, t2, 1 << 20, &ei), DP_OK, "%s", ei.msg);
    unsigned char *b1 = NULL, *b2 = NULL;
    size_t n1 = 0, n2 = 0;
    slurp(t1, &b1, &n1);
    slurp(t2, &b2, &n2);
    cr_assert_eq(n1, n2);
    cr_assert(memcmp(b1, b2, n1) == 0, "the two archives differ");

    struct archive *a = archive_read_new();
    archive_read_support_format_tar(a);
    cr_assert_eq(archive_read_open_memory(a, b1, n1), ARCHIVE_OK);
    static const char *const names[] = {"Makefile", "bench", "model.c"};
    static const int modes[] = {0644, 0755, 0644};
    struct archive_entry *e;
    int i = 0;
    while (archive_read_next_header(a, &e) == ARCHIVE_OK) {
        cr_assert_lt(i, 3);
        cr_assert_str_eq(archive_entry_pathname(e), names[i]);
        cr_assert_eq(archive_entry_perm(e), modes[i], "%s: %o", names[i], archive_entry_perm(e));
        cr_assert_eq(archive_entry_mtime(e), 0);
        cr_assert_eq(archive_entry_uid(e), 0);
        char data[64] = "";
        la_ssize_t got = archive_read_data(a, data, sizeof(data) - 1);
        cr_assert_eq(got, archive_entry_size(e));
        i++;
    }
    cr_assert_eq(i, 3);
    archive_read_free(a);
    dp_free(b1);
    dp_free(b2);
    unlink(t1);
    unlink(t2);
    dp_test_tmpdir_remove(d1);
    dp_test_tmpdir_remove(d2);
    DP_ASSERT_NO_LEAKS();
}

Test(dp_tar, only_plain_files_within_the_bound)
{
    char d[256], t[300], sub[300];
    dp_test_tmpdir_make(d, sizeof(d), "tar3");
    snprintf(t, sizeof(t), "%s.tar", d);
    put(d, "a", "0123456789", 0644);
    struct dp_errinfo ei = {0};
    cr_assert_eq(dp_tar_write_dir(d, t, 9, &ei), DP_ETOOBIG);
    cr_assert_eq(access(t, F_OK), -1, "nothing left behind");
    snprintf(sub, sizeof(sub), "%s/sub", d);
    cr_assert_eq(mkdir(sub, 0700), 0);
    cr_assert_eq(dp_tar_write_dir(d, t, 1 << 20, &ei), DP_EUNSUPPORTED);
    cr_assert(strstr(ei.msg, "sub") != NULL, "%s", ei.msg);
    rmdir(sub);
    cr_assert_eq(dp_tar_write_dir("/nonexistent-dir", t, 1 << 20, &ei), DP_EIO);
    cr_assert_eq(dp_tar_write_dir(d, t, 1 << 20, &ei), DP_OK, "%s", ei.msg);
    unlink(t);
    dp_test_tmpdir_remove(d);
    DP_ASSERT_NO_LEAKS();
}
