/*
 * Runs one leased task from start to end: fetches its inputs into the
 * cache, writes its files into a private task directory, runs the engine
 * command in an engine thread while a libuv loop heartbeats, streams
 * events and uploads checkpoints, then uploads the outputs and completes
 * the task (or fails, or releases it).
 *
 * DESIGN (threads): the loop thread (the caller's) owns the agent and its
 * HTTP connection, the timers and all server traffic. The engine thread
 * only runs the command; its hooks append events to a queue under a mutex
 * and wake the loop with uv_async_send, and stop() reads an atomic flag the
 * loop thread sets (cancel in a heartbeat answer, 409 lease lost, a refused
 * token, SIGTERM).
 * A checkpoint the engine reports is hard-linked to a snapshot name at once
 * (in the engine thread), so the engine may replace its checkpoint file for
 * the next epoch while the loop thread uploads the snapshot. The engine is
 * called through its typed entry point (wk_engine.h) and its failure comes
 * back as a dp_errinfo; nothing is read from its stderr.
 */
#ifndef DP_WORKER_AGENT_WK_TASK_H
#define DP_WORKER_AGENT_WK_TASK_H

#include <jansson.h>
#include <signal.h>
#include <stdatomic.h>

#include "worker/agent/wk_agent.h"
#include "worker/agent/wk_cache.h"
#include "worker/agent/wk_engine.h"

enum wk_task_outcome {
    WK_TASK_COMPLETED, /* outputs uploaded, complete accepted */
    WK_TASK_FAILED,    /* fail reported (or the task could not even start) */
    WK_TASK_RELEASED,  /* SIGTERM: checkpoint uploaded, lease released */
    WK_TASK_CANCELLED, /* the job was cancelled */
    WK_TASK_LOST,      /* the lease went to someone else; nothing more sent */
};

struct wk_task_env {
    struct wk_agent *agent;      /* borrowed; loop thread */
    struct wk_cache *cache;      /* borrowed */
    struct wk_run_opts run;      /* threads, data limits */
    const char *datasets_dir;    /* where built-in datasets live (/usr/share/datasets) */
    volatile sig_atomic_t *term; /* set by the SIGTERM handler */
    atomic_int *server_gone;     /* set with term when the server that started this worker
                                  * died (wk_serve.c, --parent-fd): nothing is retried */
};

/* Runs task (borrowed JSON of a claim answer). Loop thread only. */
enum wk_task_outcome wk_task_run(const struct wk_task_env *env, json_t *task);

/* Human name of an outcome, for logs. */
const char *wk_task_outcome_name(enum wk_task_outcome o);

#endif
