/*
 * `dnnpress-worker serve` (see wk_serve.h).
 *
 * DESIGN: one thread runs this loop and every task's libuv loop in turn
 * (wk_task_run); the engine gets its own thread per task. The only state a
 * signal touches is the sig_atomic_t flag below. A server that cannot be
 * reached is waited for with capped backoff, never a reason to exit: the
 * server may be restarting, and a worker that outlives it loses nothing.
 * Two things do end the loop besides SIGTERM:
 *   - a refused token (401/403 to any call: revoked, expired, unknown):
 *     nothing this worker sends would be taken any more, so it exits
 *     instead of polling forever, and a task under way stops without
 *     another word to the server (its lease expires there);
 *   - with --parent-fd (dnnpress-server --local-workers passes it), the
 *     death of the server that started it: a watch thread blocks in poll()
 *     on that pipe, whose only write end the server holds, and end of file
 *     means the server is gone, however it died (kill -9 included). The
 *     thread sets wk_serve_server_gone and sends this process SIGTERM, so
 *     the loop stops as on SIGTERM but retries nothing: a task under way
 *     stops at its next step, its checkpoint upload and release are tried
 *     once (the new server, if one already runs, refuses the old token),
 *     and the process exits within seconds. The restarted server's reaper
 *     re-queues the task from the last checkpoint it received.
 */
#include "worker/agent/wk_serve.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif

#include "common/httpc.h"
#include "common/log.h"
#include "common/task_type.h"
#include "worker/agent/wk_agent.h"
#include "worker/agent/wk_cache.h"
#include "worker/agent/wk_device.h"
#include "worker/agent/wk_engine.h"
#include "worker/agent/wk_task.h"
#include "worker/cmd/wk_flags.h"

static volatile sig_atomic_t wk_serve_term;
/* Set by the --parent-fd watch thread when the server that started us is gone. */
static atomic_int wk_serve_server_gone;

static void wk_serve_on_signal(int sig)
{
    (void)sig;
    wk_serve_term = 1;
}

struct wk_serve_opts {
    const char *server, *cache_dir, *capabilities, *name, *datasets_dir;
    const char *ca; /* PEM CA file for an https server (env DNNPRESS_CA) */
    const char *device_name, *device_labels;
    long cache_mb, threads, limit_train, limit_test, wait_s, parent_fd, profile;
};

#define WK_OFF(f) offsetof(struct wk_serve_opts, f)

/* Reconnecting to a server that does not answer: 1, 2, 4, 8, 16, then
 * every 30 s. A restart takes seconds, so the first tries come quickly;
 * an outage of hours costs one request per half minute. */
#define WK_SERVE_BACKOFF_FIRST_S 1u
#define WK_SERVE_BACKOFF_CAP_S   16u /* doubling stops here... */
#define WK_SERVE_BACKOFF_MAX_S   30u /* ...and the next wait is this */
/* Naps are sliced so that SIGTERM ends one within this long. */
#define WK_SERVE_NAP_SLICE_MS 100

static const struct wk_flag wk_serve_flags[] = {
    {"server", WK_STR, WK_OFF(server), 0, 0, NULL, 0,
     "dnnpress-server base URL (https://host:port, or http:// on a trusted network)"},
    {"ca", WK_STR, WK_OFF(ca), 0, 0, NULL, 0,
     "PEM file of the CA that signed an https server's certificate (env DNNPRESS_CA; "
     "default: the system's CA store)"},
    {"cache-dir", WK_STR, WK_OFF(cache_dir), 0, 0, NULL, 0,
     "directory for fetched models/datasets and task files"},
    {"cache-mb", WK_INT, WK_OFF(cache_mb), 1, 1048576, "2048", 0, "cache size cap in MiB"},
    {"capabilities", WK_STR, WK_OFF(capabilities), 0, 0, "train,compress,retrain,export,compile", 0,
     "comma-separated task types to take"},
    {"name", WK_STR, WK_OFF(name), 0, 0, NULL, 0,
     "worker name shown by the server (default: hostname)"},
    {"threads", WK_INT, WK_OFF(threads), 1, 1024, NULL, 0,
     "engine threads per task (default: all cores)"},
    {"limit-train", WK_INT, WK_OFF(limit_train), 1, 1e9, NULL, 0,
     "train on the first N images only (tests and demos; env DNNPRESS_LIMIT_TRAIN)"},
    {"limit-test", WK_INT, WK_OFF(limit_test), 1, 1e9, NULL, 0,
     "evaluate on the first N images only (env DNNPRESS_LIMIT_TEST)"},
    {"datasets-dir", WK_STR, WK_OFF(datasets_dir), 0, 0, "/usr/share/datasets", 0,
     "where built-in datasets are installed"},
    {"wait-s", WK_INT, WK_OFF(wait_s), 1, 30, "5", 0, "long-poll wait per claim"},
    {"profile", WK_BOOL, WK_OFF(profile), 0, 1, NULL, 0,
     "run as a profiling device (device token): register --device-name with a detected "
     "description and take only the profile tasks that target it"},
    {"device-name", WK_STR, WK_OFF(device_name), 0, 0, NULL, 0,
     "with --profile: the device's name (selectors match it: {\"name\": \"pi5-*\"})"},
    {"device-labels", WK_STR, WK_OFF(device_labels), 0, 0, NULL, 0,
     "with --profile: k=v,k=v labels selectors match ({\"board\": \"pi5\"})"},
    {"parent-fd", WK_INT, WK_OFF(parent_fd), 3, 1048576, NULL, 0,
     "a pipe whose write end the starting process holds: at its end of file (that process "
     "died) stop the task and exit (dnnpress-server --local-workers passes it)"},
};

#define WK_N_FLAGS (sizeof(wk_serve_flags) / sizeof(wk_serve_flags[0]))

static void wk_serve_help(FILE *f)
{
    fprintf(f, "usage: DNNPRESS_TOKEN=<agent token> dnnpress-worker serve --server URL "
               "--cache-dir DIR [options]\n\n"
               "Registers with dnnpress-server, leases tasks it can run and runs them one at a\n"
               "time; SIGTERM stops the current task at its next step, uploads its checkpoint\n"
               "and releases it. It exits when the server refuses its token (revoked, expired)\n"
               "and, with --parent-fd, when the process that started it dies. Each worker\n"
               "needs a --cache-dir of its own (locked while it runs).\n\n"
               "With --profile and a device token (scope \"device\") it is a profiling device:\n"
               "it registers --device-name with its labels and what it detects of itself, and\n"
               "runs only the profile tasks that target it (docs/api.md, \"Devices\").\n\n"
               "options:\n");
    wk_flags_help(f, wk_serve_flags, WK_N_FLAGS);
}

/* Reads a positive integer from the environment when the flag was not given. */
static long wk_env_long(const char *name, long current)
{
    const char *s = getenv(name);
    if (current > 0 || s == NULL || *s == '\0')
        return current;
    char *end = NULL;
    long v = strtol(s, &end, 10);
    return (end != NULL && *end == '\0' && v > 0) ? v : current;
}

/* The task types of list ("train,compress") as a JSON array, each one a
 * type this build runs; NULL after saying why on stderr. */
static json_t *wk_caps_parse(const char *list)
{
    json_t *caps = json_array();
    const char *p = list;
    while (caps != NULL && *p != '\0') {
        size_t n = strcspn(p, ",");
        enum dp_task_type t;
        if (!dp_task_type_from_namen(p, n, &t) || !wk_engine_supports(t)) {
            char known[128];
            wk_engine_list(known, sizeof(known));
            fprintf(stderr, "serve: --capabilities: '%.*s' is not one of %s\n", (int)n, p, known);
            json_decref(caps);
            return NULL;
        }
        json_array_append_new(caps, json_string(dp_task_type_name(t)));
        p += n;
        if (*p == ',')
            p++;
    }
    if (caps != NULL && json_array_size(caps) == 0) {
        fprintf(stderr, "serve: --capabilities is empty\n");
        json_decref(caps);
        return NULL;
    }
    return caps;
}

static unsigned wk_serve_backoff_next(unsigned backoff)
{
    return backoff < WK_SERVE_BACKOFF_CAP_S ? 2 * backoff : WK_SERVE_BACKOFF_MAX_S;
}

/* Sleeps up to s seconds, waking early on SIGTERM. */
static void wk_nap(unsigned s)
{
    struct timespec ts = {0, WK_SERVE_NAP_SLICE_MS * 1000L * 1000L};
    for (unsigned i = 0; i < s * (1000 / WK_SERVE_NAP_SLICE_MS) && !wk_serve_term; i++)
        nanosleep(&ts, NULL);
}

/* The watch thread of --parent-fd: returns when the pipe's last write end closes. */
static void wk_parent_watch(void *arg)
{
    int fd = (int)(intptr_t)arg;
    char buf[64];
    for (;;) {
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, -1) < 0 && errno == EINTR)
            continue;
        ssize_t n = read(fd, buf, sizeof(buf));
        if (n > 0 || (n < 0 && errno == EINTR))
            continue; /* nobody should write; whatever comes is ignored */
        break;        /* 0: end of file; an error: the pipe is no use either */
    }
    atomic_store(&wk_serve_server_gone, 1);
    kill(getpid(), SIGTERM);
}

/*
 * Ties this process to the one holding fd's write end (--parent-fd): a
 * watch thread for the pipe and, on Linux, PR_SET_PDEATHSIG as a second
 * line. The death signal comes when the thread that forked us exits (for a
 * local worker the server's supervisor thread, which lives until its last
 * worker is gone); a parent that died before prctl() sends none, but then
 * the pipe is at its end already and the watch fires at once. Returns 0,
 * or 2 after saying why on stderr.
 */
static int wk_parent_watch_start(long parent_fd)
{
    int fd = (int)parent_fd;
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISFIFO(st.st_mode)) {
        fprintf(stderr, "serve: --parent-fd %d is not an open pipe\n", fd);
        return 2;
    }
    if (fcntl(fd, F_SETFD, FD_CLOEXEC) != 0) {
        fprintf(stderr, "serve: --parent-fd %d: fcntl: %s\n", fd, strerror(errno));
        return 2;
    }
#ifdef __linux__
    if (prctl(PR_SET_PDEATHSIG, SIGTERM) != 0)
        DP_LOG(DP_LOG_WARN, "prctl(PR_SET_PDEATHSIG) failed: %s; the pipe alone watches",
               strerror(errno));
#endif
    uv_thread_t th; /* never joined: it ends with the process */
    int rc = uv_thread_create(&th, wk_parent_watch, (void *)(intptr_t)fd);
    if (rc != 0) {
        fprintf(stderr, "serve: cannot start the --parent-fd watch: %s\n", uv_strerror(rc));
        return 2;
    }
    return 0;
}

/* The exit of a worker whose token the server refuses (ei: the refused call). */
static void wk_serve_refused(const struct dp_errinfo *ei)
{
    DP_LOG(DP_LOG_ERROR,
           "the server refuses this worker's token (revoked, expired, unknown or not an agent "
           "token): %s; exiting",
           ei->msg);
}

int wk_serve_main(int argc, char **argv)
{
    struct wk_serve_opts o;
    memset(&o, 0, sizeof(o));
    wk_flags_defaults(wk_serve_flags, WK_N_FLAGS, &o);
    int rc = wk_flags_parse("serve", wk_serve_flags, WK_N_FLAGS, &o, argc, argv);
    if (rc > 0) {
        wk_serve_help(stdout);
        return 0;
    }
    if (rc != 0)
        return 2;
    const char *token = getenv("DNNPRESS_TOKEN");
    if (o.server == NULL || o.cache_dir == NULL) {
        fprintf(stderr, "serve: --server and --cache-dir are required (see --help)\n");
        return 2;
    }
    if (token == NULL || *token == '\0') {
        fprintf(stderr, "serve: set DNNPRESS_TOKEN to an agent token (POST /api/v1/tokens "
                        "with scope \"agent\"), or a device token (scope \"device\") with "
                        "--profile\n");
        return 2;
    }
    o.limit_train = wk_env_long("DNNPRESS_LIMIT_TRAIN", o.limit_train);
    o.limit_test = wk_env_long("DNNPRESS_LIMIT_TEST", o.limit_test);
    char host[256] = "worker";
    if (o.name == NULL) {
        if (gethostname(host, sizeof(host) - 1) != 0)
            snprintf(host, sizeof(host), "worker");
        o.name = host;
    }
    json_t *description = NULL, *labels = NULL;
    if (o.profile) {
        struct dp_errinfo lei = {DP_OK, ""};
        if (o.device_name == NULL) {
            fprintf(stderr, "serve: --profile needs --device-name NAME\n");
            return 2;
        }
        if (wk_device_labels_parse(o.device_labels, &labels, &lei) != DP_OK) {
            fprintf(stderr, "serve: %s\n", dp_errinfo_msg(&lei, DP_EINVAL));
            return 2;
        }
        if (wk_device_describe(&description) != DP_OK) {
            json_decref(labels);
            fprintf(stderr, "serve: out of memory\n");
            return 2;
        }
        o.name = o.device_name;
        o.capabilities = "profile,latency";
    } else if (o.device_name != NULL || o.device_labels != NULL) {
        fprintf(stderr, "serve: --device-name and --device-labels go with --profile\n");
        return 2;
    }
    json_t *caps = wk_caps_parse(o.capabilities);
    if (caps == NULL) {
        json_decref(description);
        json_decref(labels);
        return 2;
    }

    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = wk_serve_on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    if (o.parent_fd > 0 && wk_parent_watch_start(o.parent_fd) != 0) {
        json_decref(caps);
        return 2;
    }

    struct dp_errinfo ei = {DP_OK, ""};
    struct wk_cache cache;
    struct wk_agent agent;
    int status = 1, registered = 0;
    memset(&agent, 0, sizeof(agent));
    /* Locks the directory: a second worker on it stops here (wk_cache.h). */
    enum dp_err err = wk_cache_open(&cache, o.cache_dir, (uint64_t)o.cache_mb << 20, &ei);
    if (err) {
        fprintf(stderr, "serve: cache: %s\n", dp_errinfo_msg(&ei, err));
        goto out;
    }
    if (o.ca == NULL)
        o.ca = getenv("DNNPRESS_CA");
    if (dp_httpc_global_init() != DP_OK || wk_agent_init(&agent, o.server, token) != DP_OK ||
        dp_httpc_set_ca(agent.h, o.ca) != DP_OK) {
        fprintf(stderr, "serve: out of memory\n");
        goto out;
    }
    struct wk_task_env env = {
        &agent,         &cache,         {o.threads, o.limit_train, o.limit_test, NULL},
        o.datasets_dir, &wk_serve_term, &wk_serve_server_gone};
    env.run.device_name = o.profile ? o.device_name : NULL;
    unsigned backoff = WK_SERVE_BACKOFF_FIRST_S;
    while (!wk_serve_term) {
        if (!registered) {
            err = wk_agent_register(&agent, o.name, caps, description, labels, &ei);
            if (err) {
                if (err == DP_EPERM) {
                    wk_serve_refused(&ei);
                    goto out;
                }
                /* A request the server refuses as such (a device token
                 * without --profile, --profile with an agent token, a bad
                 * label, a device name another token holds) is refused the
                 * same way next time: say so and stop. */
                if (err == DP_EINVAL || err == DP_EEXIST || err == DP_ETOOBIG) {
                    DP_LOG(DP_LOG_ERROR, "register refused: %s; exiting", ei.msg);
                    status = 2;
                    goto out;
                }
                DP_LOG(DP_LOG_WARN, "register: %s (retrying in %us)", ei.msg, backoff);
                wk_nap(backoff);
                backoff = wk_serve_backoff_next(backoff);
                continue;
            }
            registered = 1;
            backoff = WK_SERVE_BACKOFF_FIRST_S;
            DP_LOG(DP_LOG_INFO, "registered as %s with %s (heartbeat %lds, lease %lds)",
                   agent.worker_id, o.server, agent.heartbeat_s, agent.lease_s);
        }
        json_t *task = NULL;
        err = wk_agent_claim(&agent, caps, (int)o.wait_s, &task, &ei);
        if (err == DP_EPERM) {
            wk_serve_refused(&ei);
            goto out;
        }
        if (err) {
            /* An unknown worker id (e.g. a server with a fresh database) registers again. */
            if (err == DP_ENOENT || err == DP_EEXIST || err == DP_ESTALE)
                registered = 0;
            DP_LOG(DP_LOG_WARN, "claim: %s (retrying in %us)", ei.msg, backoff);
            wk_nap(backoff);
            backoff = wk_serve_backoff_next(backoff);
            continue;
        }
        backoff = WK_SERVE_BACKOFF_FIRST_S;
        if (task == NULL)
            continue;
        wk_task_run(&env, task);
        json_decref(task);
        if (agent.token_refused) {
            DP_LOG(DP_LOG_ERROR,
                   "the server refuses this worker's token (revoked, expired, unknown or not an "
                   "agent token) since the last task; exiting");
            goto out;
        }
    }
    if (atomic_load(&wk_serve_server_gone))
        DP_LOG(DP_LOG_WARN,
               "the server that started this worker is gone (--parent-fd %ld at its "
               "end): exiting",
               o.parent_fd);
    else
        DP_LOG(DP_LOG_INFO, "SIGTERM: exiting");
    status = 0;
out:
    wk_cache_close(&cache);
    wk_agent_free(&agent);
    json_decref(caps);
    json_decref(description);
    json_decref(labels);
    return status;
}
