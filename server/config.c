/*
 * The flag table (see config.h). Each entry names its field by offset, its
 * type and bounds, so parsing, bounds checks, usage and the startup log all
 * come from one list.
 */
#include "server/config.h"

#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"

enum cfg_type { CFG_INT, CFG_STR, CFG_FLAG };

struct cfg_entry {
    const char *name;
    enum cfg_type type;
    size_t offset;
    size_t cap; /* strings: buffer size */
    long def, min, max;
    const char *sdef;
    const char *help;
};

#define F(x) offsetof(struct srv_config, x)
#define S(x) sizeof(((struct srv_config *)0)->x)
static const struct cfg_entry cfg_table[] = {
    {"--listen", CFG_STR, F(listen), S(listen), 0, 0, 0, "127.0.0.1:8080", "HOST:PORT to serve on"},
    {"--data-dir", CFG_STR, F(data_dir), S(data_dir), 0, 0, 0, "var/dnnpress",
     "database, artifacts/, tmp/, cache/"},
    {"--local-workers", CFG_INT, F(local_workers), 0, 0, 0, 64, NULL,
     "dnnpress-worker processes to start and supervise"},
    {"--max-upload-mb", CFG_INT, F(max_upload_mb), 0, 1024, 1, 1 << 20, NULL,
     "largest upload (models, datasets, artifacts)"},
    {"--lease-s", CFG_INT, F(lease_s), 0, 60, 1, 3600, NULL, "task lease length"},
    {"--threads", CFG_INT, F(threads), 0, 8, 1, 256, NULL,
     "HTTP thread pool size (writes wait for the disk in their thread)"},
    /* Long-polls and event streams park their connection (suspended, no
     * timeout runs), so the idle timeout only closes silent clients. */
    {"--http-timeout-s", CFG_INT, F(http_timeout_s), 0, 120, 1, 86400, NULL,
     "close a connection idle for this long"},
    {"--http-max-conns", CFG_INT, F(http_max_conns), 0, 1000, 1, 65536, NULL,
     "connections at once, parked long-polls and event streams included"},
    /* 16 KiB holds the request line and headers of every client we know
     * (a Bearer token is 50 bytes); MHD answers 431 when they do not fit. */
    {"--http-conn-mem-kb", CFG_INT, F(http_conn_mem_kb), 0, 16, 4, 1024, NULL,
     "per-connection buffer (KiB) the request line and headers must fit in"},
    {"--http-backlog", CFG_INT, F(http_backlog), 0, 1024, 1, 65535, NULL,
     "listen backlog: connections the kernel queues before accept"},
    /* Loopback clients (tests, local workers) all come from one address:
     * a test that opens many connections raises it. */
    {"--http-per-ip-conns", CFG_INT, F(http_per_ip_conns), 0, 64, 0, 65536, NULL,
     "connections at once from one client address (0: no limit)"},
    /* The idle timeout restarts with every byte, so a client trickling a
     * header byte a minute held its connection forever; this deadline
     * does not move. */
    {"--http-header-timeout-s", CFG_INT, F(http_header_timeout_s), 0, 10, 1, 3600, NULL,
     "close a connection whose request head is not complete this long after it opened "
     "(or after its previous answer)"},
    /* Below --http-max-conns, so that connections sending their request
     * head can never take the slots of requests past it (parked claims,
     * event streams, uploads); at the cap the oldest such connection goes. */
    {"--http-max-pending-conns", CFG_INT, F(http_max_pending_conns), 0, 256, 1, 65535, NULL,
     "connections still sending a request head; beyond it the oldest is closed "
     "(lowered to --http-max-conns - 1)"},
    {"--http-body-timeout-s", CFG_INT, F(http_body_timeout_s), 0, 30, 1, 86400, NULL,
     "close a connection whose request body stalls this long"},
    /* Validating a model takes about twice its size in memory. */
    {"--max-validations", CFG_INT, F(max_validations), 0, 2, 1, 64, NULL,
     "model uploads validated at once; more are answered 503 with Retry-After"},
    {"--http-mode", CFG_STR, F(http_mode), S(http_mode), 0, 0, 0, "epoll",
     "epoll or poll (libmicrohttpd internal polling)"},
    {"--worker-bin", CFG_STR, F(worker_bin), S(worker_bin), 0, 0, 0, "",
     "worker binary for --local-workers (default: beside dnnpress-server)"},
    /* Tokens cross the network in every request: a server reached from
     * other machines serves https (docs/operations.md, "TLS"). */
    {"--tls-cert", CFG_STR, F(tls_cert), S(tls_cert), 0, 0, 0, "",
     "PEM certificate (leaf first, then its chain) to serve https with; needs --tls-key"},
    {"--tls-key", CFG_STR, F(tls_key), S(tls_key), 0, 0, 0, "", "PEM private key of --tls-cert"},
    {"--web-dir", CFG_STR, F(web_dir), S(web_dir), 0, 0, 0, "",
     "the built dashboard served at / (default: web/ beside dnnpress-server)"},
    {"--backoff-ms", CFG_INT, F(backoff_base_ms), 0, 1000, 0, 600000, NULL,
     "first retry delay of a failed task (doubles per attempt, plus jitter)"},
    /* Retention (docs/operations.md): what a GC pass may remove. */
    {"--gc-interval-s", CFG_INT, F(gc_interval_s), 0, 300, 1, 86400, NULL,
     "seconds between garbage-collection passes"},
    {"--gc-grace-s", CFG_INT, F(gc_grace_s), 0, 3600, 0, 30 * 86400, NULL,
     "unreferenced blobs (and files) younger than this are kept"},
    {"--idempotency-ttl-s", CFG_INT, F(idempotency_ttl_s), 0, 86400, 1, 365 * 86400, NULL,
     "how long an Idempotency-Key replays its first answer"},
    {"--events-retention-s", CFG_INT, F(events_retention_s), 0, 90 * 86400, 0, 2000000000, NULL,
     "events of jobs that ended longer ago are removed (0: keep forever; default 90 days)"},
    /* A month: a device's speed does not drift by itself; what changes it
     * (a new CPU, compiler) changes its fingerprint and stales the table. */
    {"--latency-max-age-s", CFG_INT, F(latency_max_age_s), 0, 30 * 86400, 1, 2000000000, NULL,
     "a device's latency table is measured again when older than this"},
    {"--checkpoint-retention-s", CFG_INT, F(checkpoint_retention_s), 0, 7 * 86400, 0, 2000000000,
     NULL, "checkpoints of tasks that ended longer ago are removed (0: keep; default 7 days)"},
    /* Limits and fairness (docs/security.md, "Limits"): 429 with Retry-After. */
    {"--rate-limit-rps", CFG_INT, F(rate_limit_rps), 0, 100, 0, 1000000, NULL,
     "requests per second a team token may make (agent tokens x10; admin unlimited; 0: off)"},
    {"--rate-limit-burst", CFG_INT, F(rate_limit_burst), 0, 400, 1, 10000000, NULL,
     "requests a token may make at once before the rate applies (agents x10)"},
    {"--quota-active-jobs", CFG_INT, F(quota_active_jobs), 0, 1000, 0, 10000000, NULL,
     "jobs a team may have queued or running (0: no quota)"},
    /* Both are durable before the reply (2xx means on disk); group frees
     * the HTTP threads and the store during the fsync (server/store_sync.c). */
    {"--sync", CFG_STR, F(sync), S(sync), 0, 0, 0, "group",
     "group (a flusher thread fsyncs many commits at once; replies wait for it) or full "
     "(SQLite fsyncs each commit in the request's thread)"},
    {"--quota-running-tasks", CFG_INT, F(quota_running_tasks), 0, 0, 0, 1000000, NULL,
     "tasks of one team that workers run at once (0: no quota; claims are fair across teams "
     "anyway)"},
    {"--quota-storage-mb", CFG_INT, F(quota_storage_mb), 0, 0, 0, 1 << 30, NULL,
     "MiB of models, datasets and artifacts a team may store (0: no quota)"},
    {"--print-routes", CFG_FLAG, F(print_routes), 0, 0, 0, 1, NULL,
     "print METHOD PATH for every route and exit"},
};
#undef F
#undef S
#define N_CFG (sizeof(cfg_table) / sizeof(cfg_table[0]))

const char *srv_config_usage(void)
{
    static char buf[8192];
    size_t n = (size_t)snprintf(buf, sizeof(buf),
                                "usage: dnnpress-server [flags]\n"
                                "       dnnpress-server backup|restore|check ... "
                                "(backup, restore, check a data directory: --help)\n");
    for (size_t i = 0; i < N_CFG && n < sizeof(buf); i++) {
        const struct cfg_entry *e = &cfg_table[i];
        if (e->type == CFG_INT)
            n += (size_t)snprintf(buf + n, sizeof(buf) - n, "  %-20s %s (default %ld, %ld..%ld)\n",
                                  e->name, e->help, e->def, e->min, e->max);
        else if (e->type == CFG_STR && e->sdef[0])
            n += (size_t)snprintf(buf + n, sizeof(buf) - n, "  %-20s %s (default %s)\n", e->name,
                                  e->help, e->sdef);
        else
            n += (size_t)snprintf(buf + n, sizeof(buf) - n, "  %-20s %s\n", e->name, e->help);
    }
    return buf;
}

static enum dp_err cfg_set(struct srv_config *cfg, const struct cfg_entry *e, const char *v,
                           struct dp_errinfo *ei)
{
    char *base = (char *)cfg + e->offset;
    if (e->type == CFG_STR) {
        if (strlen(v) >= e->cap)
            return dp_errinfo_set(ei, DP_EINVAL, "%s: value longer than %zu bytes", e->name,
                                  e->cap - 1);
        snprintf(base, e->cap, "%s", v);
        return DP_OK;
    }
    char *end = NULL;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (errno || end == v || *end || x < e->min || x > e->max)
        return dp_errinfo_set(ei, DP_EINVAL, "%s: '%s' is not an integer in [%ld, %ld]", e->name, v,
                              e->min, e->max);
    *(int *)(void *)base = (int)x;
    return DP_OK;
}

enum dp_err srv_config_parse(int argc, char **argv, struct srv_config *cfg, struct dp_errinfo *ei)
{
    memset(cfg, 0, sizeof(*cfg));
    for (size_t i = 0; i < N_CFG; i++) {
        const struct cfg_entry *e = &cfg_table[i];
        if (e->type == CFG_STR)
            snprintf((char *)cfg + e->offset, e->cap, "%s", e->sdef);
        else
            *(int *)(void *)((char *)cfg + e->offset) = (int)e->def;
    }
    for (int a = 1; a < argc; a++) {
        if (strcmp(argv[a], "--help") == 0 || strcmp(argv[a], "-h") == 0)
            return dp_errinfo_set(ei, DP_EINTERRUPTED, "usage requested (srv_config_usage)");
        const struct cfg_entry *e = NULL;
        for (size_t i = 0; i < N_CFG; i++)
            if (strcmp(argv[a], cfg_table[i].name) == 0)
                e = &cfg_table[i];
        if (e == NULL)
            return dp_errinfo_set(ei, DP_EINVAL, "unknown flag '%s' (see --help)", argv[a]);
        if (e->type == CFG_FLAG) {
            *(int *)(void *)((char *)cfg + e->offset) = 1;
            continue;
        }
        if (a + 1 >= argc)
            return dp_errinfo_set(ei, DP_EINVAL, "%s: missing value", e->name);
        enum dp_err err = cfg_set(cfg, e, argv[++a], ei);
        if (err)
            return err;
    }
    /* HOST:PORT */
    const char *colon = strrchr(cfg->listen, ':');
    char *end = NULL;
    long port = colon ? strtol(colon + 1, &end, 10) : -1;
    if (colon == NULL || colon == cfg->listen ||
        (size_t)(colon - cfg->listen) >= sizeof(cfg->host) || end == colon + 1 || *end ||
        port < 0 || port > 65535)
        return dp_errinfo_set(ei, DP_EINVAL, "--listen: '%s' is not HOST:PORT", cfg->listen);
    memcpy(cfg->host, cfg->listen, (size_t)(colon - cfg->listen));
    cfg->host[colon - cfg->listen] = '\0';
    cfg->port = (int)port;
    /* Pending connections must leave room below the connection cap (for
     * requests past their head): a pending cap at or over it is lowered,
     * so each flag stays valid on its own. */
    if (cfg->http_max_pending_conns >= cfg->http_max_conns)
        cfg->http_max_pending_conns = cfg->http_max_conns > 1 ? cfg->http_max_conns - 1 : 1;
    if (strcmp(cfg->http_mode, "epoll") != 0 && strcmp(cfg->http_mode, "poll") != 0)
        return dp_errinfo_set(ei, DP_EINVAL, "--http-mode: '%s' is not epoll or poll",
                              cfg->http_mode);
    if (strcmp(cfg->sync, "group") != 0 && strcmp(cfg->sync, "full") != 0)
        return dp_errinfo_set(ei, DP_EINVAL, "--sync: '%s' is not group or full", cfg->sync);
    if ((cfg->tls_cert[0] != '\0') != (cfg->tls_key[0] != '\0'))
        return dp_errinfo_set(ei, DP_EINVAL, "%s",
                              cfg->tls_cert[0] ? "--tls-cert needs --tls-key (its private key)"
                                               : "--tls-key needs --tls-cert (its certificate)");
    return DP_OK;
}

size_t srv_config_describe(const struct srv_config *cfg, char *buf, size_t cap)
{
    size_t n = 0;
    for (size_t i = 0; i < N_CFG; i++) {
        const struct cfg_entry *e = &cfg_table[i];
        const char *base = (const char *)cfg + e->offset;
        /* Past the end, snprintf(NULL, 0) still counts what was needed. */
        char *at = n < cap ? buf + n : NULL;
        size_t room = n < cap ? cap - n : 0;
        int k;
        if (e->type == CFG_STR)
            k = snprintf(at, room, "%s%s=%s", i ? " " : "", e->name + 2, base);
        else
            k = snprintf(at, room, "%s%s=%d", i ? " " : "", e->name + 2,
                         *(const int *)(const void *)base);
        if (k > 0)
            n += (size_t)k;
    }
    return n;
}

void srv_config_log(const struct srv_config *cfg)
{
    char line[4096];
    srv_config_describe(cfg, line, sizeof(line));
    DP_LOG(DP_LOG_INFO, "config: %s", line);
}
