/*
 * Shared parts of the offline commands (see wk_cmd.h).
 */
#include "worker/cmd/wk_cmd.h"

#include <omp.h>
#include <stdarg.h>
#include <stdio.h>

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
