/*
 * The task types of a job, in one table shared by the server (which expands
 * a job into a chain of tasks and checks a worker's capabilities) and the
 * worker (which advertises capabilities and dispatches a claimed task).
 *
 * A type's name is what travels in the API ("compress"), its enum constant
 * is what code branches on. Adding a task type: append a row to
 * DP_TASK_TYPE_MAP (values are append-only, they may be stored), then give
 * the server's job expansion and the worker's dispatch a case for it.
 */
#ifndef DP_COMMON_TASK_TYPE_H
#define DP_COMMON_TASK_TYPE_H

#include <stddef.h>

/* X(constant, name, what it does) */
#define DP_TASK_TYPE_MAP(X)                                                                        \
    X(DP_TASK_TRAIN, "train", "train the dense baseline")                                          \
    X(DP_TASK_COMPRESS, "compress", "ADMM iterations and the hard projection")                     \
    X(DP_TASK_RETRAIN, "retrain", "masked retraining of the projected model")                      \
    X(DP_TASK_EXPORT, "export", "write the compressed ONNX and the report")                        \
    X(DP_TASK_COMPILE, "compile", "generate code for the compressed model")                        \
    X(DP_TASK_PROFILE, "profile", "run the generated code on a device")

enum dp_task_type {
#define DP__TASK_ENUM(constant, name, what) constant,
    DP_TASK_TYPE_MAP(DP__TASK_ENUM)
#undef DP__TASK_ENUM
        DP_TASK__COUNT
};

/* The API name of t ("compress"); NULL when t is not a task type. Any thread. */
const char *dp_task_type_name(enum dp_task_type t);

/*
 * Looks up the task type called name (exact, case-sensitive). Returns 1 and
 * stores it in *out when name is a task type, else 0 (out untouched). name
 * may be NULL (not a type).
 */
int dp_task_type_from_name(const char *name, enum dp_task_type *out);

/*
 * Same for the first n bytes of s (for comma-separated lists); s need not
 * be NUL-terminated.
 */
int dp_task_type_from_namen(const char *s, size_t n, enum dp_task_type *out);

/* Writes "train, compress, ..." (every name, in table order) into buf (cap bytes, truncated). */
void dp_task_type_list(char *buf, size_t cap);

#endif
