/*
 * wk_cache: fetch on miss, reuse on hit, refuse bytes that do not match
 * their name, evict least recently used files to stay under the cap.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/sha256.h"
#include "tests/unit/test_util.h"
#include "worker/agent/wk_cache.h"

struct fake_server {
    const char *content; /* what the fetch writes */
    int n_fetches;
};

static enum dp_err fake_fetch(void *ud, const char *sha256, FILE *out, struct dp_errinfo *ei)
{
    (void)sha256;
    (void)ei;
    struct fake_server *s = ud;
    s->n_fetches++;
    fputs(s->content, out);
    return DP_OK;
}

static void name_of(const char *content, char hex[65])
{
    uint8_t d[32];
    cr_assert_eq(dp_sha256(content, strlen(content), d), DP_OK);
    dp_sha256_hex(d, hex);
}

static void cache_dir_remove(const char *dir)
{
    char p[400];
    snprintf(p, sizeof(p), "%s/blobs", dir);
    dp_test_tmpdir_remove(p);
    snprintf(p, sizeof(p), "%s/tmp", dir);
    dp_test_tmpdir_remove(p);
    dp_test_tmpdir_remove(dir);
}

static void set_age(const char *path, time_t age_s)
{
    struct timespec ts[2];
    clock_gettime(CLOCK_REALTIME, &ts[0]);
    ts[0].tv_sec -= age_s;
    ts[1] = ts[0];
    utimensat(0, path, ts, 0);
}

Test(wk_cache, miss_then_hit_and_verification)
{
    char dir[256], hex[65], path[1200];
    dp_test_tmpdir_make(dir, sizeof(dir), "cache");
    struct wk_cache c;
    struct dp_errinfo ei = {DP_OK, ""};
    cr_assert_eq(wk_cache_open(&c, dir, 1 << 20, &ei), DP_OK, "%s", ei.msg);
    struct fake_server s = {"hello model", 0};
    name_of(s.content, hex);
    cr_assert_eq(wk_cache_get(&c, hex, 11, fake_fetch, &s, path, sizeof(path), &ei), DP_OK, "%s",
                 ei.msg);
    cr_assert_eq(s.n_fetches, 1);
    cr_assert_eq(wk_cache_get(&c, hex, 11, fake_fetch, &s, path, sizeof(path), &ei), DP_OK);
    cr_assert_eq(s.n_fetches, 1, "a hit must not fetch again");
    cr_assert_eq(wk_cache_used(&c), 11);

    /* The server sends other bytes than the name promises: refused, nothing kept. */
    struct fake_server liar = {"tampered", 0};
    char want[65];
    name_of("the real thing", want);
    cr_assert_eq(wk_cache_get(&c, want, 8, fake_fetch, &liar, path, sizeof(path), &ei), DP_EFORMAT);
    cr_assert(strstr(ei.msg, want) != NULL, "%s", ei.msg);
    struct stat st;
    cr_assert_neq(stat(path, &st), 0, "a corrupt file must not enter the cache");
    /* Right bytes, wrong size claim: refused too. */
    cr_assert_eq(wk_cache_get(&c, hex, 12, fake_fetch, &s, path, sizeof(path), &ei), DP_EFORMAT);
    /* Names that are not hashes never reach the filesystem. */
    cr_assert_eq(wk_cache_get(&c, "../../etc/passwd", 1, fake_fetch, &s, path, sizeof(path), &ei),
                 DP_EINVAL);
    cr_assert_eq(wk_cache_used(&c), 11, "the failed refetch left the good file alone");
    wk_cache_close(&c);
    cache_dir_remove(dir);
    DP_ASSERT_NO_LEAKS();
}

Test(wk_cache, evicts_least_recently_used)
{
    char dir[256], path[1200];
    dp_test_tmpdir_make(dir, sizeof(dir), "cache");
    struct wk_cache c;
    struct dp_errinfo ei = {DP_OK, ""};
    cr_assert_eq(wk_cache_open(&c, dir, 25, &ei), DP_OK);
    const char *contents[3] = {"aaaaaaaaaa", "bbbbbbbbbb", "cccccccccc"}; /* 10 bytes each */
    char names[3][65], paths[3][1200];
    for (int i = 0; i < 2; i++) {
        struct fake_server s = {contents[i], 0};
        name_of(contents[i], names[i]);
        cr_assert_eq(wk_cache_get(&c, names[i], 10, fake_fetch, &s, paths[i], 1200, &ei), DP_OK);
    }
    /* a is older than b, but a hit on a makes b the least recently used. */
    set_age(paths[0], 100);
    set_age(paths[1], 50);
    struct fake_server s0 = {contents[0], 0};
    cr_assert_eq(wk_cache_get(&c, names[0], 10, fake_fetch, &s0, path, sizeof(path), &ei), DP_OK);
    cr_assert_eq(s0.n_fetches, 0);
    struct fake_server s2 = {contents[2], 0};
    name_of(contents[2], names[2]);
    cr_assert_eq(wk_cache_get(&c, names[2], 10, fake_fetch, &s2, paths[2], 1200, &ei), DP_OK);
    struct stat st;
    cr_assert_eq(stat(paths[0], &st), 0, "recently used a must stay");
    cr_assert_neq(stat(paths[1], &st), 0, "least recently used b must go");
    cr_assert_eq(stat(paths[2], &st), 0);
    cr_assert_eq(wk_cache_used(&c), 20);

    /* Larger than the whole cache: refused before fetching. */
    struct fake_server big = {"x", 0};
    char bigname[65];
    name_of("x", bigname);
    cr_assert_eq(wk_cache_get(&c, bigname, 26, fake_fetch, &big, path, sizeof(path), &ei),
                 DP_ETOOBIG);
    cr_assert_eq(big.n_fetches, 0);
    cr_assert(strstr(ei.msg, "--cache-mb") != NULL, "%s", ei.msg);

    /* A linked copy survives eviction of its blob. */
    char linked[400];
    snprintf(linked, sizeof(linked), "%s/tmp/held", dir);
    cr_assert_eq(wk_cache_link(&c, names[0], linked, &ei), DP_OK, "%s", ei.msg);
    c.max_bytes = 0;
    cr_assert_eq(wk_cache_evict(&c, 0), 2);
    cr_assert_eq(stat(linked, &st), 0);
    cr_assert_eq(st.st_size, 10);
    wk_cache_close(&c);
    cache_dir_remove(dir);
    DP_ASSERT_NO_LEAKS();
}

Test(wk_cache, one_worker_per_directory)
{
    char dir[256], tmpfile[400];
    dp_test_tmpdir_make(dir, sizeof(dir), "cache");
    struct wk_cache a, b;
    struct dp_errinfo ei = {DP_OK, ""};
    cr_assert_eq(wk_cache_open(&a, dir, 1 << 20, &ei), DP_OK, "%s", ei.msg);
    /* A download a killed worker left behind. */
    snprintf(tmpfile, sizeof(tmpfile), "%s/tmp/left.XXXXXX", dir);
    FILE *f = fopen(tmpfile, "w");
    cr_assert_not_null(f);
    fclose(f);

    /* A second open (a second worker) is refused while the first holds the lock. */
    cr_assert_eq(wk_cache_open(&b, dir, 1 << 20, &ei), DP_EEXIST);
    char pid[32];
    snprintf(pid, sizeof(pid), "pid %ld", (long)getpid());
    cr_assert(strstr(ei.msg, "in use by another worker") && strstr(ei.msg, pid) &&
                  strstr(ei.msg, dir),
              "%s", ei.msg);
    struct stat st;
    cr_assert_eq(stat(tmpfile, &st), 0, "a refused open leaves the holder's files alone");
    wk_cache_close(&b);

    /* Closed (or its process gone): the next worker takes the directory and
     * drops what the last one left in tmp/. */
    wk_cache_close(&a);
    cr_assert_eq(wk_cache_open(&b, dir, 1 << 20, &ei), DP_OK, "%s", ei.msg);
    cr_assert_neq(stat(tmpfile, &st), 0, "a dead worker's temporary is removed");
    wk_cache_close(&b);
    wk_cache_close(NULL);
    cache_dir_remove(dir);
    DP_ASSERT_NO_LEAKS();
}
