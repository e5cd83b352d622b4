/*
 * Supervision of local workers (dnnpress-server --local-workers N): N
 * child processes `WORKER serve --server URL --cache-dir DATA/cache/wI`
 * with the agent token in DNNPRESS_TOKEN, restarted with exponential
 * backoff when they exit, stopped with SIGTERM (then SIGKILL after a grace
 * period) on shutdown. Runs its own libuv loop on its own thread. Each
 * worker also gets `--parent-fd 3`, the read end of a pipe only the server
 * writes to, so that workers exit when the server dies without stopping
 * them (kill -9); see super.c.
 */
#ifndef DP_SERVER_SUPER_H
#define DP_SERVER_SUPER_H

#include "common/err.h"

struct srv_super;

struct srv_super_cfg {
    const char *worker_bin; /* path of dnnpress-worker */
    const char *server_url; /* http(s)://HOST:PORT */
    const char *data_dir;   /* cache dirs go under DATA/cache */
    const char *token;      /* agent token secret, passed in the environment */
    const char *ca_file;    /* https: the workers' --ca (the server's certificate), or NULL */
    int n_workers;
};

/* Starts the supervisor thread and the workers. Strings are copied. */
enum dp_err srv_super_start(const struct srv_super_cfg *cfg, struct srv_super **out,
                            struct dp_errinfo *ei);

/* Stops every worker (SIGTERM, SIGKILL after 10 s), joins the thread and
 * frees s. NULL is a no-op. */
void srv_super_stop(struct srv_super *s);

#endif
