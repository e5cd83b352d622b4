/*
 * The engine commands the task loop can run in its engine thread, by the
 * name wk_argv_build puts in argv[0]. One table, so a build without a
 * command (e.g. no ONNX exporter yet) fails that task type with a clear
 * message instead of failing to link.
 */
#ifndef DP_WORKER_AGENT_WK_ENGINE_H
#define DP_WORKER_AGENT_WK_ENGINE_H

#include "worker/cmd/wk_hooks.h"

/* Runs a command like `dnnpress-worker NAME ...`; returns a WK_EXIT_* status. */
typedef int (*wk_engine_run_fn)(int argc, char **argv, const struct wk_hooks *h);

/* The command's run function, or NULL when this build does not have it. Any thread. */
wk_engine_run_fn wk_engine_find(const char *command);

#endif
