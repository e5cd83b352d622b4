/*
 * The one mapping between the project's errors and HTTP statuses, used by
 * both ends of every HTTP call: the server answers a failed request with
 * dp_err_to_http_status (status plus the API's error code, docs/api.md),
 * and the worker and the CLI read a non-2xx answer back into an enum dp_err
 * with dp_err_from_http_status, so they branch on codes, never on raw
 * statuses.
 *
 * The inverse is exact for every code a client acts on (DP_ENOENT,
 * DP_EEXIST, DP_ESTALE, DP_EPERM, DP_EINVAL, DP_EFORMAT, DP_ETOOBIG,
 * DP_EUNSUPPORTED, DP_EIO). Codes that only refine a server-side failure
 * read back as their client-side class: DP_ESHAPE as DP_EINVAL, DP_ETRUNC
 * as DP_EFORMAT, and the server's own DP_ENOMEM (503) as DP_EIO, because to
 * a client it means "the server cannot serve now, try again", not "this
 * process is out of memory".
 */
#ifndef DP_COMMON_HTTP_STATUS_H
#define DP_COMMON_HTTP_STATUS_H

#include "common/err.h"

/*
 * The HTTP status and API error code ("not_found", "lease_lost", ...) that
 * answer a request failed with err. *code receives a static string; code
 * may be NULL. Codes without a row (DP_EIO, DP_ENUMERIC, ...) are 500
 * "internal". err must not be DP_OK. Any thread.
 */
unsigned dp_err_to_http_status(enum dp_err err, const char **code);

/*
 * How a client reads an answer: DP_OK for 2xx, else the error class of
 * status refined by code (the "code" field of the JSON error body, NULL
 * when there was none). status 0 (no answer came) and 5xx are DP_EIO, the
 * only class worth another try; a 4xx without a row is DP_EINVAL; any
 * other status (1xx, 3xx) is DP_EFORMAT, an answer the client cannot use.
 * Any thread.
 */
enum dp_err dp_err_from_http_status(long status, const char *code);

#endif
