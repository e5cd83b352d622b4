/*
 * Local worker supervision (see super.h).
 *
 * DESIGN
 * One thread runs a libuv loop that owns every handle: per worker a
 * uv_process_t and a restart uv_timer_t; one uv_async_t through which
 * srv_super_stop asks the loop to shut down, and one grace timer. A worker
 * that exits is restarted after 0.5 s * 2^(failures), capped at 30 s; a
 * worker that ran for more than a minute counts as healthy again. Handles
 * are closed with uv_close and the loop runs until all close callbacks ran.
 *
 * Workers do not outlive the server, however it dies: every worker gets
 * the read end of one lifeline pipe as fd 3 (`--parent-fd 3`), whose only
 * write end this process holds (close-on-exec, so no worker inherits it)
 * until srv_super_stop has seen every worker exit. When the server dies,
 * kill -9 included, the kernel closes that end and each worker reads end
 * of file and exits (wk_serve.c); on Linux the workers also ask for
 * SIGTERM at the death of the thread that forked them, which is this
 * supervisor thread: it spawns every worker (restarts too) and lives until
 * the last one is gone, so that signal never comes early.
 */
#include "server/super.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "common/alloc.h"
#include "common/log.h"

#define SUPER_BACKOFF_BASE_MS 500
#define SUPER_BACKOFF_MAX_MS  30000
#define SUPER_HEALTHY_MS      60000
#define SUPER_GRACE_MS        10000

extern char **environ;

struct super_worker {
    struct srv_super *s;
    int index;
    uv_process_t proc;
    uv_timer_t restart;
    int running;
    int failures;
    uint64_t started_ms;
    char cache_dir[1200];
};

struct srv_super {
    uv_loop_t loop;
    uv_async_t stop_async;
    uv_timer_t grace;
    pthread_t thread;
    int stopping;
    int n_workers;
    struct super_worker *workers;
    char worker_bin[1024];
    char server_url[256];
    char token_env[128];
    char ca_env[1100]; /* DNNPRESS_CA=<the server's certificate>, under TLS */
    char **env;        /* environ + DNNPRESS_TOKEN (+ DNNPRESS_CA) */
    uv_file life[2];   /* the lifeline: [0] each worker's fd 3, [1] held only here */
};

/* The worker's descriptor for the lifeline's read end (its --parent-fd). */
#define SUPER_LIFE_FD     3
#define SUPER_LIFE_FD_ARG "3"

static void worker_spawn(struct super_worker *w);

static void on_restart(uv_timer_t *t)
{
    struct super_worker *w = t->data;
    if (!w->s->stopping)
        worker_spawn(w);
}

static void on_proc_closed(uv_handle_t *h)
{
    (void)h;
}

static void on_exit(uv_process_t *p, int64_t status, int term_signal)
{
    struct super_worker *w = p->data;
    struct srv_super *s = w->s;
    w->running = 0;
    uv_close((uv_handle_t *)p, on_proc_closed);
    uint64_t ran = uv_now(&s->loop) - w->started_ms;
    DP_LOG(s->stopping ? DP_LOG_INFO : DP_LOG_WARN,
           "super: worker %d exited (status %lld, signal %d) after %llu ms", w->index,
           (long long)status, term_signal, (unsigned long long)ran);
    if (s->stopping)
        return;
    if (ran > SUPER_HEALTHY_MS)
        w->failures = 0;
    uint64_t delay = SUPER_BACKOFF_BASE_MS;
    for (int i = 0; i < w->failures && delay < SUPER_BACKOFF_MAX_MS; i++)
        delay *= 2;
    if (delay > SUPER_BACKOFF_MAX_MS)
        delay = SUPER_BACKOFF_MAX_MS;
    w->failures++;
    uv_timer_start(&w->restart, on_restart, delay, 0);
}

static void worker_spawn(struct super_worker *w)
{
    struct srv_super *s = w->s;
    char *args[] = {s->worker_bin, "serve",       "--server",        s->server_url, "--cache-dir",
                    w->cache_dir,  "--parent-fd", SUPER_LIFE_FD_ARG, NULL};
    uv_process_options_t o;
    memset(&o, 0, sizeof(o));
    o.file = s->worker_bin;
    o.args = args;
    o.env = s->env;
    o.exit_cb = on_exit;
    uv_stdio_container_t stdio[SUPER_LIFE_FD + 1];
    for (int i = 0; i < 3; i++) {
        stdio[i].flags = i == 0 ? UV_IGNORE : UV_INHERIT_FD;
        stdio[i].data.fd = i;
    }
    stdio[SUPER_LIFE_FD].flags = UV_INHERIT_FD;
    stdio[SUPER_LIFE_FD].data.fd = s->life[0];
    o.stdio = stdio;
    o.stdio_count = SUPER_LIFE_FD + 1;
    w->proc.data = w;
    w->started_ms = uv_now(&s->loop);
    int rc = uv_spawn(&s->loop, &w->proc, &o);
    if (rc != 0) {
        DP_LOG(DP_LOG_ERROR, "super: uv_spawn(%s) failed: %s", s->worker_bin, uv_strerror(rc));
        /* libuv still requires the handle to be closed; on_exit is not called. */
        uv_close((uv_handle_t *)&w->proc, on_proc_closed);
        w->failures++;
        uv_timer_start(&w->restart, on_restart, SUPER_BACKOFF_MAX_MS, 0);
        return;
    }
    w->running = 1;
    DP_LOG(DP_LOG_INFO, "super: worker %d started (pid %d)", w->index, w->proc.pid);
}

static void on_grace(uv_timer_t *t)
{
    struct srv_super *s = t->data;
    for (int i = 0; i < s->n_workers; i++)
        if (s->workers[i].running) {
            DP_LOG(DP_LOG_WARN, "super: worker %d ignored SIGTERM; SIGKILL", i);
            uv_process_kill(&s->workers[i].proc, SIGKILL);
        }
}

static void on_stop(uv_async_t *a)
{
    struct srv_super *s = a->data;
    s->stopping = 1;
    for (int i = 0; i < s->n_workers; i++) {
        uv_timer_stop(&s->workers[i].restart);
        uv_close((uv_handle_t *)&s->workers[i].restart, NULL);
        if (s->workers[i].running)
            uv_process_kill(&s->workers[i].proc, SIGTERM);
    }
    uv_close((uv_handle_t *)&s->stop_async, NULL);
    uv_timer_start(&s->grace, on_grace, SUPER_GRACE_MS, 0);
    uv_unref((uv_handle_t *)&s->grace); /* the loop ends when the processes are gone */
}

static void super_life_close(struct srv_super *s)
{
    for (int i = 0; i < 2; i++)
        if (s->life[i] >= 0)
            close(s->life[i]);
    s->life[0] = s->life[1] = -1;
}

static void *super_main(void *arg)
{
    struct srv_super *s = arg;
    for (int i = 0; i < s->n_workers; i++)
        worker_spawn(&s->workers[i]);
    uv_run(&s->loop, UV_RUN_DEFAULT);
    uv_close((uv_handle_t *)&s->grace, NULL);
    uv_run(&s->loop, UV_RUN_DEFAULT);
    return NULL;
}

enum dp_err srv_super_start(const struct srv_super_cfg *cfg, struct srv_super **out,
                            struct dp_errinfo *ei)
{
    *out = NULL;
    struct srv_super *s = dp_calloc(1, sizeof(*s));
    if (s == NULL)
        return DP_ENOMEM;
    s->n_workers = cfg->n_workers;
    s->workers = dp_calloc((size_t)cfg->n_workers, sizeof(*s->workers));
    size_t n_env = 0;
    while (environ[n_env])
        n_env++;
    s->env = dp_calloc(n_env + 3, sizeof(char *));
    if (s->workers == NULL || s->env == NULL) {
        dp_free(s->workers);
        dp_free(s->env);
        dp_free(s);
        return DP_ENOMEM;
    }
    snprintf(s->worker_bin, sizeof(s->worker_bin), "%s", cfg->worker_bin);
    snprintf(s->server_url, sizeof(s->server_url), "%s", cfg->server_url);
    snprintf(s->token_env, sizeof(s->token_env), "DNNPRESS_TOKEN=%s", cfg->token);
    if (cfg->ca_file != NULL)
        snprintf(s->ca_env, sizeof(s->ca_env), "DNNPRESS_CA=%s", cfg->ca_file);
    s->life[0] = s->life[1] = -1;
    int rc = uv_pipe(s->life, 0, 0); /* both ends close-on-exec */
    if (rc != 0) {
        dp_free(s->workers);
        dp_free(s->env);
        dp_free(s);
        return dp_errinfo_set(ei, DP_EIO, "cannot create the local workers' lifeline pipe: %s",
                              uv_strerror(rc));
    }
    size_t k = 0;
    for (size_t i = 0; i < n_env; i++)
        if (strncmp(environ[i], "DNNPRESS_TOKEN=", 15) != 0 &&
            strncmp(environ[i], "DNNPRESS_ADMIN_TOKEN=", 21) != 0 &&
            strncmp(environ[i], "DNNPRESS_CA=", 12) != 0)
            s->env[k++] = environ[i];
    s->env[k++] = s->token_env;
    if (s->ca_env[0])
        s->env[k] = s->ca_env;

    char cache[1100];
    snprintf(cache, sizeof(cache), "%s/cache", cfg->data_dir);
    mkdir(cache, 0750);
    uv_loop_init(&s->loop);
    uv_async_init(&s->loop, &s->stop_async, on_stop);
    s->stop_async.data = s;
    uv_timer_init(&s->loop, &s->grace);
    s->grace.data = s;
    for (int i = 0; i < s->n_workers; i++) {
        struct super_worker *w = &s->workers[i];
        w->s = s;
        w->index = i;
        snprintf(w->cache_dir, sizeof(w->cache_dir), "%s/w%d", cache, i);
        mkdir(w->cache_dir, 0750);
        uv_timer_init(&s->loop, &w->restart);
        w->restart.data = w;
    }
    if (pthread_create(&s->thread, NULL, super_main, s) != 0) {
        uv_loop_close(&s->loop);
        super_life_close(s);
        dp_free(s->workers);
        dp_free(s->env);
        dp_free(s);
        return dp_errinfo_set(ei, DP_EIO, "cannot start the supervisor thread");
    }
    *out = s;
    return DP_OK;
}

void srv_super_stop(struct srv_super *s)
{
    if (s == NULL)
        return;
    uv_async_send(&s->stop_async);
    pthread_join(s->thread, NULL);
    uv_loop_close(&s->loop);
    super_life_close(s); /* only now: every worker has exited after its SIGTERM */
    dp_free(s->workers);
    dp_free(s->env);
    dp_free(s);
}
