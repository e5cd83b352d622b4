/*
 * The artifact store (server/blob.c) against a temporary data directory:
 * streaming writes hashed as they arrive, the size cap, publishing by
 * rename under the content address, deduplication, temp files removed on
 * free and swept at start, and the path rules for a sha256.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "server/blob.h"
#include "tests/unit/test_util.h"

static char dir[256];

static void setup(void)
{
    dp_log_set_level(DP_LOG_WARN);
    dp_test_tmpdir_make(dir, sizeof(dir), "blob");
    cr_assert_eq(srv_blob_init_dirs(dir, NULL), DP_OK);
}

/* Removes DATA/artifacts/xx/ and the rest (dp_test_tmpdir_remove is one level). */
static void teardown(void)
{
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    cr_assert_eq(system(cmd), 0);
}

TestSuite(srv_blob, .init = setup, .fini = teardown);

static int exists(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0;
}

static size_t n_files(const char *sub)
{
    char p[400], cmd[500];
    snprintf(p, sizeof(p), "%s/%s", dir, sub);
    snprintf(cmd, sizeof(cmd), "find '%s' -type f | wc -l", p);
    FILE *f = popen(cmd, "r");
    cr_assert_not_null(f);
    size_t n = 0;
    cr_assert_eq(fscanf(f, "%zu", &n), 1);
    pclose(f);
    return n;
}

/* SHA-256("abc"), FIPS 180-2 appendix B.1. */
#define SHA_ABC "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"

/* Stores "abc" written in chunks of one byte; returns through sha. */
static void put_abc(char sha[65])
{
    struct srv_blob_writer *w = NULL;
    uint64_t size = 0;
    struct dp_errinfo ei = {0};
    cr_assert_eq(srv_blob_begin(dir, 3, &w, &ei), DP_OK, "%s", ei.msg);
    for (int i = 0; i < 3; i++)
        cr_assert_eq(srv_blob_write(w, "abc" + i, 1, &ei), DP_OK, "%s", ei.msg);
    cr_assert_eq(srv_blob_size(w), 3);
    cr_assert_eq(srv_blob_finish(w, sha, &size, &ei), DP_OK, "%s", ei.msg);
    cr_assert_eq(size, 3);
    cr_assert(exists(srv_blob_tmp_path(w)));
    cr_assert_eq(srv_blob_publish(w, &ei), DP_OK, "%s", ei.msg);
    srv_blob_free(w);
}

Test(srv_blob, a_published_blob_is_named_by_its_hash_and_the_temp_file_is_gone)
{
    char sha[65], path[512], got[8] = {0};
    put_abc(sha);
    cr_assert_str_eq(sha, SHA_ABC);
    cr_assert_eq(srv_blob_path(dir, sha, path, sizeof(path)), DP_OK);
    char want[512];
    snprintf(want, sizeof(want), "%s/artifacts/ba/%s", dir, SHA_ABC);
    cr_assert_str_eq(path, want);
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f);
    cr_assert_eq(fread(got, 1, sizeof(got), f), 3);
    fclose(f);
    cr_assert_str_eq(got, "abc");
    cr_assert_eq(n_files("tmp"), 0);
    /* The same content again is stored once. */
    put_abc(sha);
    cr_assert_eq(n_files("artifacts"), 1);
    cr_assert_eq(n_files("tmp"), 0);
    DP_ASSERT_NO_LEAKS();
}

Test(srv_blob, writes_past_the_cap_fail_and_an_unpublished_upload_leaves_nothing)
{
    struct srv_blob_writer *w = NULL;
    struct dp_errinfo ei = {0};
    cr_assert_eq(srv_blob_begin(dir, 4, &w, &ei), DP_OK);
    cr_assert_eq(srv_blob_write(w, "abcd", 4, &ei), DP_OK, "exactly the cap fits");
    cr_assert_eq(srv_blob_write(w, "e", 1, &ei), DP_ETOOBIG);
    cr_assert(strstr(ei.msg, "4 bytes") != NULL, "%s", ei.msg);
    cr_assert_eq(srv_blob_size(w), 4, "the refused chunk is not written");
    char tmp[512];
    snprintf(tmp, sizeof(tmp), "%s", srv_blob_tmp_path(w));
    cr_assert(exists(tmp));
    srv_blob_free(w);
    cr_assert(!exists(tmp), "free removes an unpublished temp file");
    cr_assert_eq(n_files("artifacts"), 0);
    srv_blob_free(NULL);
    DP_ASSERT_NO_LEAKS();
}

Test(srv_blob, start_sweeps_unfinished_uploads_only)
{
    char p[400];
    snprintf(p, sizeof(p), "%s/tmp/up_crashed", dir);
    FILE *f = fopen(p, "wb");
    cr_assert_not_null(f);
    fputs("half", f);
    fclose(f);
    snprintf(p, sizeof(p), "%s/tmp/keep.txt", dir);
    f = fopen(p, "wb");
    cr_assert_not_null(f);
    fclose(f);
    cr_assert_eq(srv_blob_init_dirs(dir, NULL), DP_OK);
    snprintf(p, sizeof(p), "%s/tmp/up_crashed", dir);
    cr_assert(!exists(p), "an interrupted upload is removed");
    snprintf(p, sizeof(p), "%s/tmp/keep.txt", dir);
    cr_assert(exists(p), "other files are not ours to remove");
    DP_ASSERT_NO_LEAKS();
}

Test(srv_blob, paths_are_only_made_from_a_valid_sha256)
{
    static const char *const bad[] = {
        "",
        "ba7816bf",
        "../../../../etc/passwd",
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015a",   /* 63 */
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad0", /* 65 */
        "ga7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f2001/ad",
    };
    char out[512];
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        cr_assert_eq(srv_blob_path(dir, bad[i], out, sizeof(out)), DP_EINVAL, "%s", bad[i]);
    cr_assert_eq(srv_blob_path(dir, SHA_ABC, out, 20), DP_ETOOBIG, "a short buffer is refused");
    cr_assert_eq(srv_blob_path("/d", SHA_ABC, out, sizeof(out)), DP_OK);
    cr_assert_str_eq(out, "/d/artifacts/ba/" SHA_ABC);
    DP_ASSERT_NO_LEAKS();
}
