/*
 * Helpers shared by the Criterion suites (see test_util.h).
 */
#include "tests/unit/test_util.h"

#include <criterion/criterion.h>
#include <dirent.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

void dp_test_tmpdir_make(char *dir, size_t cap, const char *tag)
{
    snprintf(dir, cap, "/tmp/dp-%s-XXXXXX", tag);
    cr_assert_not_null(mkdtemp(dir), "mkdtemp(%s) failed", dir);
}

void dp_test_tmpdir_remove(const char *dir)
{
    DIR *d = opendir(dir);
    if (d == NULL)
        return;
    for (;;) {
        struct dirent *e = readdir(d);
        if (e == NULL)
            break;
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        char p[512];
        snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
        if (unlink(p) != 0)
            rmdir(p);
    }
    closedir(d);
    rmdir(dir);
}

uint64_t dp_test_rng_next(struct dp_test_rng *r)
{
    r->s ^= r->s >> 12;
    r->s ^= r->s << 25;
    r->s ^= r->s >> 27;
    return r->s * 2685821657736338717ULL;
}
