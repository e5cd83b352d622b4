/*
 * What the worker's offline commands share: their exit statuses, the
 * thread setup every engine command does, and the wording of a failure.
 *
 * Each command X (train, compress, export, infer; compile and profile
 * follow the same shape) is, in worker/cmd/wk_X.h:
 *
 *     struct wk_X_opts;                   the typed options, one field per flag
 *     void wk_X_opts_init(opts);          the defaults, from the command's flag table
 *     enum dp_err wk_X_check(opts, ei);   usage errors only (DP_EINVAL): no I/O
 *     enum dp_err wk_X(opts, hooks, ..., ei);   the run itself
 *     int wk_X_main(argc, argv);          the CLI: flags -> opts -> wk_X -> exit status
 *
 * The CLI fills the options from flags, the task loop (worker/agent) from a
 * task's JSON; both call the same wk_X, which reports failures through a
 * dp_errinfo (never on stderr, never by exit status) and progress through
 * the hooks (wk_hooks.h).
 */
#ifndef DP_WORKER_CMD_WK_CMD_H
#define DP_WORKER_CMD_WK_CMD_H

#include <jansson.h>

#include "common/err.h"

/* Exit statuses shared by every command. */
enum {
    WK_EXIT_OK = 0,
    WK_EXIT_FAIL = 1,
    WK_EXIT_USAGE = 2,
    WK_EXIT_STOPPED = 3, /* hooks' stop() asked; the last checkpoint is on disk */
};

/*
 * Sets the calling thread's OpenMP team size and OpenBLAS's thread count
 * to threads; 0 leaves the defaults (all cores). OpenMP's setting belongs
 * to the calling thread, so the engine thread of the task loop calls this
 * itself: every entry point does, first thing.
 */
void wk_cmd_threads(long threads);

/*
 * The exit status for a run that ended with err: 0 for DP_OK, 3 for
 * DP_EINTERRUPTED (stopped, resumable), 1 for anything else. Usage errors
 * (wk_X_check) are reported by the CLI as 2 before the run starts.
 */
int wk_cmd_exit_status(enum dp_err err);

/*
 * Puts a prefix (printf-style) before ei's message, keeping its code:
 * "model 'x': " + "file not found". Returns err, so that a failure path
 * reads `return wk_cmd_prefix(ei, err, "writing %s: ", path);`.
 */
enum dp_err wk_cmd_prefix(struct dp_errinfo *ei, enum dp_err err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/*
 * Writes j to path with jansson's dump flags, through path.tmp and a
 * rename, so a reader never sees half a report. DP_EIO (tmp removed) or
 * DP_EINVAL for a path too long, with ei naming the file.
 */
enum dp_err wk_cmd_write_json(const char *path, const json_t *j, size_t flags,
                              struct dp_errinfo *ei);

#endif
