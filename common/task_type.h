/*
 * The task types of a job, in one table shared by the server (which expands
 * a job into a chain of tasks and checks a worker's capabilities) and the
 * worker (which advertises capabilities and dispatches a claimed task).
 *
 * A type's name is what travels in the API ("compress"), its enum constant
 * is what code branches on, its outputs are what both the server's
 * `complete` check and the worker's upload read. Adding a task type: append
 * a row to DP_TASK_TYPE_MAP (values are append-only, they may be stored),
 * then give the server's job expansion and the worker's dispatch a case
 * for it.
 */
#ifndef DP_COMMON_TASK_TYPE_H
#define DP_COMMON_TASK_TYPE_H

#include <stddef.h>

/*
 * The artifact kinds a task delivers as outputs when it completes (the
 * `kind` of PUT .../artifacts/KIND and the keys of `complete`'s outputs).
 * code is the compiled C bundle as a tar; compile_report the JSON the
 * compiling worker measured it with (docs/compile.md); profile a device's
 * measurement of the compressed and the dense bundle (docs/api.md, "Devices").
 * X(constant, name)
 */
#define DP_TASK_OUTPUT_MAP(X)                                                                      \
    X(DP_TASK_OUT_MODEL, "model")                                                                  \
    X(DP_TASK_OUT_REPORT, "report")                                                                \
    X(DP_TASK_OUT_ONNX, "onnx")                                                                    \
    X(DP_TASK_OUT_CODE, "code")                                                                    \
    X(DP_TASK_OUT_COMPILE_REPORT, "compile_report")                                                \
    X(DP_TASK_OUT_PROFILE, "profile")

enum dp_task_output {
#define DP__TASK_OUT_ENUM(constant, name) constant,
    DP_TASK_OUTPUT_MAP(DP__TASK_OUT_ENUM)
#undef DP__TASK_OUT_ENUM
        DP_TASK_OUT__COUNT
};

/* Bit masks of outputs, for the table's outputs column. */
#define DP_TASK_OUTS_MODEL          (1u << DP_TASK_OUT_MODEL)
#define DP_TASK_OUTS_REPORT         (1u << DP_TASK_OUT_REPORT)
#define DP_TASK_OUTS_ONNX           (1u << DP_TASK_OUT_ONNX)
#define DP_TASK_OUTS_CODE           (1u << DP_TASK_OUT_CODE)
#define DP_TASK_OUTS_COMPILE_REPORT (1u << DP_TASK_OUT_COMPILE_REPORT)
#define DP_TASK_OUTS_PROFILE        (1u << DP_TASK_OUT_PROFILE)

/*
 * X(constant, name, outputs, what it does). outputs is the mask of the
 * artifacts a task of the type must deliver: the worker uploads exactly
 * these when its engine command succeeds, and the server refuses a
 * `complete` without any of them (the next task would get a null input).
 */
#define DP_TASK_TYPE_MAP(X)                                                                        \
    X(DP_TASK_TRAIN, "train", DP_TASK_OUTS_MODEL, "train the dense baseline")                      \
    X(DP_TASK_COMPRESS, "compress", DP_TASK_OUTS_MODEL | DP_TASK_OUTS_REPORT,                      \
      "ADMM iterations and the hard projection")                                                   \
    X(DP_TASK_RETRAIN, "retrain", DP_TASK_OUTS_MODEL | DP_TASK_OUTS_REPORT,                        \
      "masked retraining of the projected model")                                                  \
    X(DP_TASK_EXPORT, "export", DP_TASK_OUTS_ONNX, "write the compressed ONNX and the report")     \
    X(DP_TASK_COMPILE, "compile", DP_TASK_OUTS_CODE | DP_TASK_OUTS_COMPILE_REPORT,                 \
      "compile the compressed model to a C bundle, build it and time it")                          \
    X(DP_TASK_PROFILE, "profile", DP_TASK_OUTS_PROFILE,                                            \
      "build and time the compressed and the dense bundle on one registered device")               \
    X(DP_TASK_LATENCY, "latency", 0,                                                               \
      "measure a device's per-layer latency table for auto.objective latency")

enum dp_task_type {
#define DP__TASK_ENUM(constant, name, outputs, what) constant,
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

/*
 * The mask of outputs (1u << enum dp_task_output) a task of type t must
 * deliver; 0 when t is not a task type. Any thread.
 */
unsigned dp_task_type_outputs(enum dp_task_type t);

/* The name of output o ("model"); NULL when o is not an output kind. Any thread. */
const char *dp_task_output_name(enum dp_task_output o);

/* Looks up the output kind called name; 1 and *out set when found, else 0. */
int dp_task_output_from_name(const char *name, enum dp_task_output *out);

#endif
