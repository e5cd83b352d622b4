/*
 * Building and timing a compiled bundle (see wk_bundle.h). The bundle's
 * own Makefile and bench run as child processes, exactly as a user runs
 * them from the code artifact, so the report measures what the user gets.
 */
/* wait4 (the child's own rusage, for bench's peak RSS) is BSD, not POSIX. */
#define _DEFAULT_SOURCE
#include "worker/agent/wk_bundle.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/alloc.h"
#include "common/file.h"

extern char **environ;

/* How often a waiting child is checked and stop() asked. */
#define WK_BUNDLE_POLL_MS 50
/* bench's output: one JSON line plus anything a libgomp warning adds. */
#define WK_BUNDLE_OUT_MAX (1 << 20)
/* The end of the build log quoted in an error: enough for the first compiler error. */
#define WK_BUNDLE_LOG_TAIL 160

/* The last bytes of the log at path, one line, into buf. */
static void wk_bundle_log_tail(const char *path, char *buf, size_t cap)
{
    unsigned char *text = NULL;
    size_t len = 0;
    buf[0] = '\0';
    if (dp_file_read(path, path, WK_BUNDLE_OUT_MAX, &text, &len, NULL) != DP_OK)
        return;
    while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == ' '))
        len--;
    size_t from = len > WK_BUNDLE_LOG_TAIL ? len - WK_BUNDLE_LOG_TAIL : 0;
    size_t n = 0;
    for (size_t i = from; i < len && n + 1 < cap; i++)
        buf[n++] = text[i] == '\n' ? ' ' : (char)text[i];
    buf[n] = '\0';
    dp_free(text);
}

/*
 * Runs argv (argv[0] looked up in PATH when it has no slash) with stdout
 * to out_path (or the log when NULL) and stderr appended to log_path, and
 * waits, at most timeout_s seconds when it is positive (then the child is
 * killed and the answer is DP_EFORMAT saying so: a hang is a failure, not a
 * wait). *status gets its exit status (-1 when a signal ended it), and
 * *maxrss_kb (may be NULL) the child's peak resident set in KiB.
 */
static enum dp_err wk_bundle_spawn(char *const argv[], const char *out_path, const char *log_path,
                                   int timeout_s, const struct wk_hooks *h, int *status,
                                   long *maxrss_kb, struct dp_errinfo *ei)
{
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    posix_spawn_file_actions_t fa;
    pid_t pid;
    if (posix_spawn_file_actions_init(&fa) != 0)
        return dp_errinfo_set(ei, DP_ENOMEM, "posix_spawn_file_actions_init failed");
    int rc = posix_spawn_file_actions_addopen(&fa, 1, out_path ? out_path : log_path,
                                              O_WRONLY | O_CREAT | (out_path ? O_TRUNC : O_APPEND),
                                              0644);
    if (rc == 0)
        rc =
            posix_spawn_file_actions_addopen(&fa, 2, log_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (rc == 0)
        rc = posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    if (rc == 0)
        rc = strchr(argv[0], '/') ? posix_spawn(&pid, argv[0], &fa, NULL, argv, environ)
                                  : posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0)
        return dp_errinfo_set(ei, DP_EIO, "cannot run %s: %s", argv[0], strerror(rc));
    int stopped = 0, ws = 0;
    for (;;) {
        struct rusage ru;
        memset(&ru, 0, sizeof(ru));
        pid_t w = wait4(pid, &ws, WNOHANG, &ru);
        if (w == pid) {
            if (maxrss_kb != NULL)
                *maxrss_kb = ru.ru_maxrss; /* Linux: KiB */
            break;
        }
        if (w < 0 && errno != EINTR)
            return dp_errinfo_set(ei, DP_EIO, "waitpid(%s): %s", argv[0], strerror(errno));
        if (!stopped && h != NULL && h->stop != NULL && h->stop(h->ctx)) {
            kill(pid, SIGTERM); /* make passes it on to the compiler it runs */
            stopped = 1;
        }
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (timeout_s > 0 && now.tv_sec - t0.tv_sec >= timeout_s) {
            kill(pid, SIGKILL);
            while (waitpid(pid, &ws, 0) < 0 && errno == EINTR)
                ;
            return dp_errinfo_set(ei, DP_EFORMAT, "%s did not finish within %d s (killed)", argv[0],
                                  timeout_s);
        }
        struct timespec ts = {0, WK_BUNDLE_POLL_MS * 1000000L};
        nanosleep(&ts, NULL);
    }
    if (stopped)
        return DP_EINTERRUPTED;
    *status = WIFEXITED(ws) ? WEXITSTATUS(ws) : -1;
    return DP_OK;
}

enum dp_err wk_bundle_bench(const char *dir, const char *log_path, long threads, int runs,
                            int warmup, int timeout_s, const struct wk_hooks *h, json_t **out,
                            struct dp_errinfo *ei)
{
    char bench[4096], out_path[4096], s_runs[24], s_threads[24], s_warmup[24];
    char tail[WK_BUNDLE_LOG_TAIL + 1];
    long maxrss_kb = 0;
    unsigned char *text = NULL;
    size_t len = 0;
    int status = 0;
    *out = NULL;
    int k1 = snprintf(bench, sizeof(bench), "%s/bench", dir);
    int k2 = snprintf(out_path, sizeof(out_path), "%s.bench.json", log_path);
    if (k1 < 0 || (size_t)k1 >= sizeof(bench) || k2 < 0 || (size_t)k2 >= sizeof(out_path))
        return dp_errinfo_set(ei, DP_EINVAL, "bundle path too long: %s", dir);
    snprintf(s_runs, sizeof(s_runs), "%d", runs);
    snprintf(s_threads, sizeof(s_threads), "%ld", threads);
    snprintf(s_warmup, sizeof(s_warmup), "%d", warmup < 0 ? runs : warmup);

    char *make_argv[] = {"make", "-s", "-C", (char *)dir, NULL};
    enum dp_err err = wk_bundle_spawn(make_argv, NULL, log_path, timeout_s, h, &status, NULL, ei);
    if (!err && status != 0) {
        wk_bundle_log_tail(log_path, tail, sizeof(tail));
        return dp_errinfo_set(ei, DP_EFORMAT, "the bundle does not build (make exit %d): %s",
                              status, tail);
    }
    char *bench_argv[] = {bench,    "--runs",    s_runs,    "--warmup",
                          s_warmup, "--threads", s_threads, NULL};
    if (!err)
        err =
            wk_bundle_spawn(bench_argv, out_path, log_path, timeout_s, h, &status, &maxrss_kb, ei);
    if (err)
        return err;
    if (status != 0) {
        wk_bundle_log_tail(log_path, tail, sizeof(tail));
        return dp_errinfo_set(ei, DP_EFORMAT,
                              "the bundle's bench failed (exit %d; 1 is a reference check "
                              "over 1e-4): %s",
                              status, tail);
    }
    err = dp_file_read(out_path, "bench output", WK_BUNDLE_OUT_MAX, &text, &len, ei);
    if (err)
        return err;
    /* The JSON is bench's last line. */
    size_t end = len;
    while (end > 0 && (text[end - 1] == '\n' || text[end - 1] == '\r'))
        end--;
    size_t start = end;
    while (start > 0 && text[start - 1] != '\n')
        start--;
    json_error_t je;
    *out = json_loadb((const char *)text + start, end - start, 0, &je);
    dp_free(text);
    if (!json_is_object(*out)) {
        json_decref(*out);
        *out = NULL;
        return dp_errinfo_set(ei, DP_EFORMAT, "bench printed no JSON object: %s", je.text);
    }
    if (json_object_set_new(*out, "peak_rss_kb", json_integer(maxrss_kb)) != 0) {
        json_decref(*out);
        *out = NULL;
        return dp_errinfo_set(ei, DP_ENOMEM, "out of memory reading bench's output");
    }
    return DP_OK;
}

static int wk_bundle_name_cmp(const void *a, const void *b)
{
    return strcmp(json_string_value(json_object_get(*(json_t *const *)a, "name")),
                  json_string_value(json_object_get(*(json_t *const *)b, "name")));
}

json_t *wk_bundle_files(const char *dir)
{
    DIR *d = opendir(dir);
    if (d == NULL)
        return NULL;
    json_t *files = json_array();
    for (struct dirent *e = readdir(d); files != NULL && e != NULL; e = readdir(d)) {
        char p[4096];
        struct stat st;
        int k = snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
        if (k < 0 || (size_t)k >= sizeof(p) || lstat(p, &st) != 0 || !S_ISREG(st.st_mode))
            continue;
        if (json_array_append_new(files, json_pack("{s:s, s:I}", "name", e->d_name, "bytes",
                                                   (json_int_t)st.st_size)) != 0) {
            json_decref(files);
            files = NULL;
        }
    }
    closedir(d);
    if (files == NULL)
        return NULL;
    /* readdir order is the filesystem's: sort, so equal bundles give equal reports. */
    size_t n = json_array_size(files);
    json_t **items = dp_malloc((n ? n : 1) * sizeof(*items));
    json_t *sorted = json_array();
    if (items == NULL || sorted == NULL) {
        dp_free(items);
        json_decref(sorted);
        json_decref(files);
        return NULL;
    }
    for (size_t i = 0; i < n; i++)
        items[i] = json_array_get(files, i);
    qsort(items, n, sizeof(*items), wk_bundle_name_cmp);
    for (size_t i = 0; i < n; i++)
        json_array_append(sorted, items[i]);
    dp_free(items);
    json_decref(files);
    return sorted;
}

json_t *wk_bundle_report(const json_t *files, const json_t *bench, const char *target, long threads,
                         int runs, long tune_s, long long tar_bytes)
{
    json_int_t bytes = 0, weights = 0;
    size_t i;
    json_t *f;
    json_array_foreach (files, i, f) {
        json_int_t b = json_integer_value(json_object_get(f, "bytes"));
        bytes += b;
        if (strcmp(json_string_value(json_object_get(f, "name")), "weights.bin") == 0)
            weights = b;
    }
    /* Layers per format ("fkw", "dense", ...) as bench names them. */
    json_t *formats = json_object();
    json_t *l;
    json_array_foreach (json_object_get(bench, "layers"), i, l) {
        const char *fmt = json_string_value(json_object_get(l, "format"));
        if (formats == NULL || fmt == NULL)
            continue;
        json_int_t n = json_integer_value(json_object_get(formats, fmt));
        json_object_set_new(formats, fmt, json_integer(n + 1));
    }
    json_t *lat = json_object_get(bench, "latency_ms");
    json_t *r = json_pack(
        "{s:i, s:s, s:i, s:i, s:i, s:{s:I, s:I, s:I, s:O}, s:o, s:O, s:O, s:O, s:O, s:O}",
        "version", 1, "target", target, "threads", (int)threads, "runs", runs, "tune_s",
        (int)tune_s, "bundle", "bytes", bytes, "weights_bytes", weights, "tar_bytes",
        (json_int_t)tar_bytes, "files", (json_t *)files, "formats", formats, "latency_ms",
        lat ? lat : json_null(), "max_rel_err",
        json_object_get(bench, "max_rel_err") ? json_object_get(bench, "max_rel_err") : json_null(),
        "macs_dense",
        json_object_get(bench, "macs_dense") ? json_object_get(bench, "macs_dense") : json_null(),
        "macs_nonzero",
        json_object_get(bench, "macs_nonzero") ? json_object_get(bench, "macs_nonzero")
                                               : json_null(),
        "bench", (json_t *)bench);
    return r;
}
