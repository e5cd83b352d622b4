/*
 * dnnpress-server configuration: one table of flags (STYLE rule 23) parsed
 * once from the command line into an immutable struct srv_config, with
 * bounds checked and the result logged at startup.
 */
#ifndef DP_SERVER_CONFIG_H
#define DP_SERVER_CONFIG_H

#include "common/err.h"

struct srv_config {
    char listen[128];           /* HOST:PORT */
    char host[64];              /* parsed from listen */
    int port;                   /* parsed from listen */
    char data_dir[1024];        /* db, artifacts/, tmp/, cache/ */
    int local_workers;          /* workers to spawn and supervise */
    int max_upload_mb;          /* largest upload body */
    int lease_s;                /* lease length; heartbeats every lease_s / 4 */
    int threads;                /* libmicrohttpd thread pool size */
    int http_timeout_s;         /* an idle connection is closed after this */
    int http_max_conns;         /* connections served at once; more are refused */
    int http_conn_mem_kb;       /* per-connection buffer: request line and headers must fit */
    int http_backlog;           /* listen(2) backlog */
    int http_per_ip_conns;      /* connections at once from one address; 0: no limit */
    int http_header_timeout_s;  /* a request head must be complete this long after the
                                 * connection opened or its previous answer */
    int http_max_pending_conns; /* connections still sending a request head; the oldest goes */
    int http_body_timeout_s;    /* idle timeout while a request body arrives */
    int max_validations;        /* model uploads validated at once; more get 503 */
    char http_mode[16];         /* "epoll" or "poll" (benchmarked in docs/benchmarks.md) */
    char worker_bin[1024];      /* "" = <dir of dnnpress-server>/dnnpress-worker */
    char tls_cert[1024];        /* PEM certificate (chain) to serve https with; "" = http */
    char tls_key[1024];         /* its PEM private key; set with tls_cert or not at all */
    char web_dir[1024];         /* the built dashboard; "" = <dir of dnnpress-server>/web */
    int backoff_base_ms;        /* first retry delay of a failed task */
    int rate_limit_rps;         /* team token requests per second (agents x10); 0 = off */
    int rate_limit_burst;       /* requests a token may make at once (agents x10) */
    int quota_active_jobs;      /* a team's jobs not yet finished; 0 = no quota */
    int quota_storage_mb;       /* a team's models, datasets and artifacts; 0 = no quota */
    int quota_running_tasks;    /* a team's tasks leased at once; 0 = no quota */
    char sync[16];              /* "group" (one fsync for many commits) or "full" */
    int gc_interval_s;          /* seconds between GC passes (server/gc.c) */
    int gc_grace_s;             /* unreferenced blobs younger than this stay */
    int idempotency_ttl_s;      /* Idempotency-Key replays are kept this long */
    int events_retention_s;     /* events of jobs ended longer ago go; 0 = keep */
    int checkpoint_retention_s; /* checkpoints of tasks ended longer ago go; 0 = keep */
    int latency_max_age_s;      /* latency tables older than this are measured again */
    int print_routes;           /* print the route table and exit */
};

/* Parses argv into cfg (defaults first). DP_EINVAL with a message naming the
 * flag on a bad or out-of-range value; DP_EINTERRUPTED for --help or -h
 * (print srv_config_usage(): the text is longer than ei->msg holds). */
enum dp_err srv_config_parse(int argc, char **argv, struct srv_config *cfg, struct dp_errinfo *ei);

/* Writes every setting of the flag table as "name=value" pairs, separated
 * by spaces, into buf (cap bytes, always NUL-terminated; cut short when it
 * does not fit). Returns the length it needed, excluding the NUL, like
 * snprintf. Derived from the table, so a new flag cannot be left out. */
size_t srv_config_describe(const struct srv_config *cfg, char *buf, size_t cap);

/* Logs every setting at INFO (srv_config_describe). */
void srv_config_log(const struct srv_config *cfg);

/* The usage text: every flag with its meaning, default and bounds, from
 * the flag table. A static buffer: not thread-safe, meant for main(). */
const char *srv_config_usage(void);

#endif
