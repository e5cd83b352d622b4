/*
 * How a long-running engine command talks to whoever runs it.
 *
 * The offline commands (`dnnpress-worker train`, `compress`) and the task
 * loop (`dnnpress-worker serve`) call the same typed entry points
 * (wk_train, wk_compress, ...; see wk_cmd.h). The task loop calls one in an
 * engine thread with hooks: it receives one structured event per finished
 * epoch (to stream to the server) and asks the engine to stop (cancel,
 * SIGTERM, lost lease). The offline commands pass NULL hooks.
 *
 * Contract:
 *   - event() is called from the engine thread; `data` is borrowed (the
 *     callee json_incref()s what it keeps). Types: "epoch" (train),
 *     "admm_epoch", "admm_iteration", "retrain_epoch", "stage" (compress),
 *     "checkpoint" ({"path": ...}: a whole-state checkpoint was durably
 *     written and may be uploaded now).
 *   - stop() is polled between training steps; once it returns nonzero the
 *     entry point returns DP_EINTERRUPTED at the next step boundary. The
 *     last whole-state checkpoint (written after every epoch when the
 *     options name a checkpoint) lets a run with resume set continue to
 *     the same result.
 */
#ifndef DP_WORKER_CMD_WK_HOOKS_H
#define DP_WORKER_CMD_WK_HOOKS_H

#include <jansson.h>

struct wk_hooks {
    void *ctx;
    void (*event)(void *ctx, const char *type, json_t *data); /* may be NULL */
    int (*stop)(void *ctx);                                   /* may be NULL */
};

#endif
