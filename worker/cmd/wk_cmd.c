/*
 * Shared parts of the offline commands (see wk_cmd.h).
 */
#include "worker/cmd/wk_cmd.h"

#include <errno.h>
#include <omp.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* OpenBLAS (the OpenMP build) declares it in cblas.h, which drags in the
 * whole BLAS API; this is all the commands need of it. */
void openblas_set_num_threads(int n);

void wk_cmd_threads(long threads)
{
    if (threads <= 0)
        return;
    omp_set_num_threads((int)threads);
    openblas_set_num_threads((int)threads);
}

int wk_cmd_exit_status(enum dp_err err)
{
    if (err == DP_OK)
        return WK_EXIT_OK;
    return err == DP_EINTERRUPTED ? WK_EXIT_STOPPED : WK_EXIT_FAIL;
}

enum dp_err wk_cmd_prefix(struct dp_errinfo *ei, enum dp_err err, const char *fmt, ...)
{
    if (ei == NULL)
        return err;
    char prefix[sizeof(ei->msg)], msg[sizeof(ei->msg)];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof(prefix), fmt, ap);
    va_end(ap);
    snprintf(msg, sizeof(msg), "%s", dp_errinfo_msg(ei, err));
    return dp_errinfo_set(ei, err, "%s%s", prefix, msg);
}

enum dp_err wk_cmd_write_json(const char *path, const json_t *j, size_t flags,
                              struct dp_errinfo *ei)
{
    char tmp[4096];
    int k = snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    if (k < 0 || (size_t)k >= sizeof(tmp))
        return dp_errinfo_set(ei, DP_EINVAL, "%s: path too long", path);
    if (json_dump_file(j, tmp, flags) != 0 || rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return dp_errinfo_set(ei, DP_EIO, "cannot write %s: %s", path, strerror(e));
    }
    return DP_OK;
}
