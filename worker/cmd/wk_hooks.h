/*
 * How a long-running engine command talks to whoever runs it.
 *
 * The offline commands (`dnnpress-worker train`, `compress`) and the task
 * loop (`dnnpress-worker serve`) run the same engine code. The task loop runs
 * a command in an engine thread with hooks: it receives one structured event
 * per finished epoch (to stream to the server) and asks the engine to stop
 * (cancel, SIGTERM, lost lease). The offline commands pass NULL hooks.
 *
 * Contract:
 *   - event() is called from the engine thread; `data` is borrowed (the
 *     callee json_incref()s what it keeps). Types: "epoch" (train),
 *     "admm_epoch", "admm_iteration", "retrain_epoch", "stage" (compress),
 *     "checkpoint" ({"path": ...}: a whole-state checkpoint was durably
 *     written and may be uploaded now).
 *   - stop() is polled between training steps; once it returns nonzero the
 *     command returns WK_EXIT_STOPPED at the next step boundary. The last
 *     whole-state checkpoint (written after every epoch when --checkpoint
 *     is given) lets `--resume` continue to the same result.
 */
#ifndef DP_WORKER_CMD_WK_HOOKS_H
#define DP_WORKER_CMD_WK_HOOKS_H

#include <jansson.h>

/* Exit statuses shared by every command. */
enum {
    WK_EXIT_OK = 0,
    WK_EXIT_FAIL = 1,
    WK_EXIT_USAGE = 2,
    WK_EXIT_STOPPED = 3, /* stop() asked; the last checkpoint is on disk */
};

struct wk_hooks {
    void *ctx;
    void (*event)(void *ctx, const char *type, json_t *data); /* may be NULL */
    int (*stop)(void *ctx);                                   /* may be NULL */
};

#endif
