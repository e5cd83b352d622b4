/*
 * The allocator table (see alloc.h). The only file allowed to call the C
 * library's allocator directly; tools/check-banned.sh enforces that.
 *
 * Failure injection is a countdown kept in one static struct (rule 22
 * permits the allocator table as a global).
 */
#include "common/alloc.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static struct {
    long fail_after; /* < 0: never fail */
} alloc_state = {-1};

static int alloc_should_fail(void)
{
    if (alloc_state.fail_after < 0)
        return 0;
    if (alloc_state.fail_after == 0)
        return 1;
    alloc_state.fail_after--;
    return 0;
}

void dp_alloc_fail_after(long n_ok)
{
    alloc_state.fail_after = n_ok;
}

void dp_alloc_fail_reset(void)
{
    alloc_state.fail_after = -1;
}

void *dp_malloc(size_t len)
{
    if (alloc_should_fail())
        return NULL;
    return malloc(len ? len : 1);
}

void *dp_calloc(size_t n, size_t len)
{
    if (alloc_should_fail())
        return NULL;
    return calloc(n ? n : 1, len ? len : 1);
}

void *dp_realloc(void *p, size_t len)
{
    if (alloc_should_fail())
        return NULL;
    return realloc(p, len ? len : 1);
}

void dp_free(void *p)
{
    int saved = errno;
    free(p);
    errno = saved;
}

void *dp_malloc_aligned(size_t len)
{
    if (alloc_should_fail())
        return NULL;
    void *p = NULL;
    if (posix_memalign(&p, 64, len ? len : 64) != 0)
        return NULL;
    return p;
}

void dp_free_aligned(void *p)
{
    dp_free(p);
}

char *dp_strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = dp_malloc(n);
    if (d != NULL)
        memcpy(d, s, n);
    return d;
}

size_t dp_size_mul(size_t n, size_t s)
{
    if (s != 0 && n > SIZE_MAX / s)
        return SIZE_MAX;
    return n * s;
}
