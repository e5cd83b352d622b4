/*
 * dp_err <-> HTTP status (see http_status.h): one table read in both
 * directions, so the server's answers and the clients' reading of them
 * cannot drift apart.
 */
#include "common/http_status.h"

#include <stddef.h>
#include <string.h>

struct dp_http_status_row {
    enum dp_err err;   /* what the server failed with */
    unsigned status;   /* what it answers */
    const char *code;  /* the API error code in the body */
    enum dp_err reads; /* what a client makes of that answer */
};

/*
 * For dp_err_to_http_status the first row of an err wins; for
 * dp_err_from_http_status a row matching status and code wins, else the
 * first row with the status. So the rows of one status start with the
 * class a client should assume when the code is not one it knows (409:
 * DP_EEXIST, a conflict; only "lease_lost" means the fence is stale).
 */
static const struct dp_http_status_row dp_http_status_rows[] = {
    {DP_EINVAL, 400, "invalid_request", DP_EINVAL},
    {DP_ESHAPE, 400, "invalid_request", DP_EINVAL},
    {DP_EFORMAT, 400, "invalid_format", DP_EFORMAT},
    {DP_ETRUNC, 400, "invalid_format", DP_EFORMAT},
    {DP_EPERM, 403, "forbidden", DP_EPERM},
    {DP_EPERM, 401, "unauthorized", DP_EPERM},
    {DP_ENOENT, 404, "not_found", DP_ENOENT},
    {DP_EEXIST, 409, "conflict", DP_EEXIST},
    {DP_ESTALE, 409, "lease_lost", DP_ESTALE},
    {DP_ETOOBIG, 413, "too_large", DP_ETOOBIG},
    {DP_EUNSUPPORTED, 415, "unsupported", DP_EUNSUPPORTED},
    {DP_EIO, 500, "internal", DP_EIO},
    {DP_ENOMEM, 503, "out_of_memory", DP_EIO},
};

#define DP_HTTP_N_ROWS (sizeof(dp_http_status_rows) / sizeof(dp_http_status_rows[0]))

unsigned dp_err_to_http_status(enum dp_err err, const char **code)
{
    const struct dp_http_status_row *row = NULL;
    for (size_t i = 0; i < DP_HTTP_N_ROWS && row == NULL; i++)
        if (dp_http_status_rows[i].err == err)
            row = &dp_http_status_rows[i];
    if (code != NULL)
        *code = row != NULL ? row->code : "internal";
    return row != NULL ? row->status : 500;
}

enum dp_err dp_err_from_http_status(long status, const char *code)
{
    if (status >= 200 && status < 300)
        return DP_OK;
    if (status == 0 || (status >= 500 && status < 600))
        return DP_EIO; /* no answer, or the server erred: worth another try */
    const struct dp_http_status_row *by_status = NULL;
    for (size_t i = 0; i < DP_HTTP_N_ROWS; i++) {
        const struct dp_http_status_row *row = &dp_http_status_rows[i];
        if ((long)row->status != status)
            continue;
        if (code != NULL && strcmp(row->code, code) == 0)
            return row->reads;
        if (by_status == NULL)
            by_status = row;
    }
    if (by_status != NULL)
        return by_status->reads;
    return status >= 400 && status < 500 ? DP_EINVAL : DP_EFORMAT;
}
