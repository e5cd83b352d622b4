/*
 * `dnnpress-worker serve`: the task loop. Registers with dnnpress-server
 * (token from DNNPRESS_TOKEN, agent scope), then long-polls for tasks it
 * has the capability for and runs them one at a time (wk_task.h) until
 * SIGTERM or SIGINT; a task running at that moment stops at its next step,
 * uploads its checkpoint and releases its lease before the process exits.
 * It also exits when the server refuses its token (401/403), and, given
 * --parent-fd, when the process holding that pipe's write end dies (the
 * local workers of dnnpress-server --local-workers). Its cache directory is
 * locked while it runs: a second worker on it refuses to start.
 */
#ifndef DP_WORKER_AGENT_WK_SERVE_H
#define DP_WORKER_AGENT_WK_SERVE_H

/* Runs the command; returns the exit status (0 after SIGTERM, 2 usage, 1 failure). */
int wk_serve_main(int argc, char **argv);

#endif
