/*
 * LD_PRELOAD shim for tests/e2e/durability.py: every fsync and fdatasync
 * takes SLOW_FSYNC_MS longer (a slow disk), so that the test can see which
 * requests wait for one and which do not. Test-only; never linked into the
 * product.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <time.h>

static void slow(void)
{
    const char *s = getenv("SLOW_FSYNC_MS");
    long ms = s ? atol(s) : 0;
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    if (ms > 0)
        nanosleep(&ts, NULL);
}

int fsync(int fd)
{
    int (*real)(int) = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    slow();
    return real(fd);
}

int fdatasync(int fd)
{
    int (*real)(int) = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    slow();
    return real(fd);
}
