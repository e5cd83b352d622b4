/*
 * dnnpress-server: the REST API, the durable job queue and the artifact
 * store of dnnpress (docs/api.md), with optional local workers.
 *
 * DESIGN
 * main() parses the flags, opens the store (running migrations), makes sure
 * an admin token exists (printing a generated one once), then starts three
 * things: the HTTP daemon (its own threads), a housekeeping thread that
 * reaps expired leases (waking parked requests when that changed anything)
 * and resumes parked requests past their deadline every 200 ms, and
 * checkpoints the WAL every 5 s, and, with
 * --local-workers, the worker supervisor. The main thread then waits for
 * SIGTERM or SIGINT and stops them in reverse order. Signals are blocked in
 * every thread and taken synchronously with sigwait, so no handler runs in
 * the middle of anything.
 */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "server/backup.h"
#include "server/blob.h"
#include "server/config.h"
#include "server/gc.h"
#include "server/http.h"
#include "server/ids.h"
#include "server/store.h"
#include "server/super.h"

#define HOUSEKEEPING_MS 200
/* The WAL is copied into the database and truncated this often. SQLite's
 * own checkpoint runs only at a commit that finds 1,000 pages of WAL and
 * gives up behind any open reader; this one holds every connection, so
 * the WAL never holds more than a few seconds of writes. */
#define CHECKPOINT_MS 5000

struct housekeeping {
    struct srv_store *st;
    struct srv_http *http;
    const struct srv_config *cfg;
    struct srv_gc_cfg gc;
    int64_t gc_every_ticks;
    struct srv_gc_stats gc_total;
    atomic_int stop;
};

static void *housekeeping_main(void *arg)
{
    struct housekeeping *hk = arg;
    int64_t n_ticks = 0;
    while (!atomic_load(&hk->stop)) {
        struct timespec ts = {0, HOUSEKEEPING_MS * 1000000L};
        nanosleep(&ts, NULL);
        int n_reaped = 0, n_ready = 0;
        struct dp_errinfo ei = {0};
        if (srv_store_reap(hk->st, &n_reaped, &n_ready, &ei) != DP_OK)
            DP_LOG(DP_LOG_ERROR, "reaper: %s", ei.msg);
        else if (n_reaped > 0 || n_ready > 0)
            srv_notify(hk->http); /* requeued or retry-ready tasks: parked claims look again */
        srv_http_tick(hk->http);
        if (++n_ticks % (CHECKPOINT_MS / HOUSEKEEPING_MS) == 0 &&
            srv_store_checkpoint(hk->st, NULL, &ei) != DP_OK)
            DP_LOG(DP_LOG_ERROR, "checkpoint: %s", ei.msg);
        if (n_ticks % hk->gc_every_ticks == 0 &&
            srv_gc_run(hk->st, hk->cfg->data_dir, &hk->gc, &hk->gc_total, &ei) != DP_OK)
            DP_LOG(DP_LOG_ERROR, "gc: %s", ei.msg);
    }
    return NULL;
}

/* <directory of this executable>/<name>: the worker binary and the built
 * dashboard sit beside the server (build/MODE/). */
static void default_beside(const char *name, char *out, size_t cap)
{
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (n <= 0) {
        snprintf(out, cap, "%s", name);
        return;
    }
    self[n] = '\0';
    char *slash = strrchr(self, '/');
    if (slash)
        *slash = '\0';
    int k = snprintf(out, cap, "%s/%s", self, name);
    if (k < 0 || (size_t)k >= cap)
        snprintf(out, cap, "%s", name);
}

int main(int argc, char **argv)
{
    struct srv_config cfg;
    struct dp_errinfo ei = {0};
    struct srv_store *st = NULL;
    struct srv_http *http = NULL;
    struct srv_super *super = NULL;
    struct housekeeping hk = {0};
    pthread_t hk_thread;
    int hk_started = 0, rc = 1;

    /* backup, restore, check: operator commands over a data directory. */
    if (srv_backup_is_command(argc, argv))
        return srv_backup_main(argc, argv);
    enum dp_err err = srv_config_parse(argc, argv, &cfg, &ei);
    if (err == DP_EINTERRUPTED) {
        fputs(srv_config_usage(), stdout); /* longer than an errinfo message holds */
        return 0;
    }
    if (err) {
        fprintf(stderr, "dnnpress-server: %s\n", ei.msg);
        return 2;
    }
    if (cfg.print_routes) {
        srv_http_print_routes(stdout);
        return 0;
    }
    if (cfg.web_dir[0] == '\0')
        default_beside("web", cfg.web_dir, sizeof(cfg.web_dir));
    dp_log_set_level(DP_LOG_INFO);
    srv_config_log(&cfg);

    /* Block the shutdown signals everywhere; main takes them with sigwait. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    char db_path[1100];
    snprintf(db_path, sizeof(db_path), "%s/dnnpress.db", cfg.data_dir);
    struct srv_queue_cfg qcfg = {.lease_ms = (int64_t)cfg.lease_s * 1000,
                                 .backoff_base_ms = cfg.backoff_base_ms,
                                 .backoff_max_ms = 300000,
                                 .max_running_per_team = cfg.quota_running_tasks,
                                 .latency_max_age_ms = (int64_t)cfg.latency_max_age_s * 1000};
    err = srv_blob_init_dirs(cfg.data_dir, &ei);
    if (!err)
        err = srv_store_open(db_path, &qcfg, &st, &ei);
    if (err) {
        fprintf(stderr, "dnnpress-server: %s\n", ei.msg);
        goto out;
    }

    const char *env_admin = getenv("DNNPRESS_ADMIN_TOKEN");
    char env_hash[65], secret[SRV_TOKEN_LEN];
    if (env_admin && (strlen(env_admin) < 16 || strlen(env_admin) > 256)) {
        fprintf(stderr, "dnnpress-server: DNNPRESS_ADMIN_TOKEN must be 16 to 256 characters\n");
        goto out;
    }
    if (env_admin && srv_token_hash(env_admin, env_hash) != DP_OK) {
        fprintf(stderr, "dnnpress-server: cannot hash DNNPRESS_ADMIN_TOKEN (SHA-256)\n");
        goto out;
    }
    err = srv_store_admin_ensure(st, env_admin ? env_hash : NULL, secret, &ei);
    if (err) {
        fprintf(stderr, "dnnpress-server: %s\n", ei.msg);
        goto out;
    }
    if (secret[0])
        fprintf(stderr, "dnnpress-server: first start: the admin token (shown once) is\n%s\n",
                secret);

    err = srv_http_start(&cfg, st, &http, &ei);
    if (err) {
        fprintf(stderr, "dnnpress-server: %s\n", ei.msg);
        goto out;
    }
    hk.st = st;
    hk.http = http;
    hk.cfg = &cfg;
    hk.gc =
        (struct srv_gc_cfg){.idempotency_ttl_ms = (int64_t)cfg.idempotency_ttl_s * 1000,
                            .events_retention_ms = (int64_t)cfg.events_retention_s * 1000,
                            .checkpoint_retention_ms = (int64_t)cfg.checkpoint_retention_s * 1000,
                            .grace_ms = (int64_t)cfg.gc_grace_s * 1000};
    hk.gc_every_ticks = (int64_t)cfg.gc_interval_s * 1000 / HOUSEKEEPING_MS;
    if (pthread_create(&hk_thread, NULL, housekeeping_main, &hk) != 0) {
        fprintf(stderr, "dnnpress-server: cannot start the housekeeping thread\n");
        goto out;
    }
    hk_started = 1;

    if (cfg.local_workers > 0) {
        char bin[PATH_MAX + 32], url[300], agent[SRV_TOKEN_LEN];
        if (cfg.worker_bin[0])
            snprintf(bin, sizeof(bin), "%s", cfg.worker_bin);
        else
            default_beside("dnnpress-worker", bin, sizeof(bin));
        /* Under TLS the local workers verify the server like any other
         * client: the certificate file is their trust anchor (curl accepts
         * a leaf there) and the host they dial must be a name it carries:
         * "localhost" for a server listening on every address. */
        const char *dial = strcmp(cfg.host, "0.0.0.0") == 0
                               ? (cfg.tls_cert[0] ? "localhost" : "127.0.0.1")
                               : cfg.host;
        snprintf(url, sizeof(url), "%s://%s:%d", cfg.tls_cert[0] ? "https" : "http", dial,
                 cfg.port);
        err = srv_store_agent_token_mint(st, "local-workers", agent, &ei);
        struct srv_super_cfg sc = {.worker_bin = bin,
                                   .server_url = url,
                                   .data_dir = cfg.data_dir,
                                   .token = agent,
                                   .ca_file = cfg.tls_cert[0] ? cfg.tls_cert : NULL,
                                   .n_workers = cfg.local_workers};
        if (!err)
            err = srv_super_start(&sc, &super, &ei);
        if (err) {
            fprintf(stderr, "dnnpress-server: local workers: %s\n", ei.msg);
            goto out;
        }
    }
    DP_LOG(DP_LOG_INFO, "dnnpress-server listening on %s://%s:%d (schema version %d)",
           cfg.tls_cert[0] ? "https" : "http", cfg.host, cfg.port, srv_store_schema_version(st));

    int sig = 0;
    while (sigwait(&sigs, &sig) != 0)
        ;
    DP_LOG(DP_LOG_INFO, "signal %d: shutting down", sig);
    rc = 0;
out:
    srv_super_stop(super);
    if (hk_started) {
        atomic_store(&hk.stop, 1);
        pthread_join(hk_thread, NULL);
    }
    srv_http_stop(http);
    srv_store_close(st);
    return rc;
}
