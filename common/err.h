/*
 * The project's one error enum (STYLE rules 8-11).
 *
 * Every fallible function returns enum dp_err: DP_OK (0) on success, a
 * negative code on failure. Parsers and services also fill a caller-provided
 * struct dp_errinfo so that the message names what was wrong (the file, the
 * field, the offset), not only the class of failure.
 *
 * The list below is append-only: codes are never renumbered, because they
 * travel in task results and logs.
 */
#ifndef DP_COMMON_ERR_H
#define DP_COMMON_ERR_H

#include <stddef.h>

/* X(name, value, message) */
#define DP_ERR_MAP(X)                                                                              \
    X(DP_OK, 0, "success")                                                                         \
    X(DP_ENOMEM, -1, "out of memory")                                                              \
    X(DP_EINVAL, -2, "invalid argument")                                                           \
    X(DP_EIO, -3, "input/output error")                                                            \
    X(DP_ENOENT, -4, "no such file or object")                                                     \
    X(DP_EFORMAT, -5, "malformed or unsupported data format")                                      \
    X(DP_ETRUNC, -6, "truncated data")                                                             \
    X(DP_ETOOBIG, -7, "size limit exceeded")                                                       \
    X(DP_ESHAPE, -8, "tensor shape mismatch")                                                      \
    X(DP_EUNSUPPORTED, -9, "unsupported feature")                                                  \
    X(DP_EEXIST, -10, "object already exists")                                                     \
    X(DP_ENUMERIC, -11, "numerical failure (NaN or Inf)")                                          \
    X(DP_EINTERRUPTED, -12, "interrupted")                                                         \
    X(DP_ESTALE, -13, "stale lease: another attempt holds the task")                               \
    X(DP_EPERM, -14, "not permitted")

enum dp_err {
#define DP__ERR_ENUM(name, value, msg) name = value,
    DP_ERR_MAP(DP__ERR_ENUM)
#undef DP__ERR_ENUM
        DP_ERR__LAST = -15 /* one past the most negative code */
};

/* Error with context. msg is a full sentence naming what was wrong. */
struct dp_errinfo {
    enum dp_err code;
    char msg[256];
};

/* Returns the constant's name ("DP_EFORMAT"); "DP_E?" for unknown codes. Any thread. */
const char *dp_err_name(enum dp_err err);

/* Returns the generic message for err ("truncated data"). Any thread. */
const char *dp_strerror(enum dp_err err);

/*
 * Sets ei->code = code and formats the message into ei->msg (truncated to
 * fit). ei may be NULL, in which case nothing is recorded. Returns code so
 * that callers can write `return dp_errinfo_set(ei, DP_EIO, "...")`.
 */
enum dp_err dp_errinfo_set(struct dp_errinfo *ei, enum dp_err code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Maps an errno value to the nearest dp_err. */
enum dp_err dp_err_from_errno(int e);

/* The message in ei if one was set, else the generic message for code. */
const char *dp_errinfo_msg(const struct dp_errinfo *ei, enum dp_err code);

#endif
