/*
 * Auto-tuning (see cg_tune.h): candidate bundles built and timed.
 */
#define _XOPEN_SOURCE 700
#include "worker/codegen/cg_tune.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <jansson.h>
#include <math.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/alloc.h"

extern char **environ;

#define CG_TUNE_CANDS       48
#define CG_TUNE_MAX_THREADS 16
#define CG_TUNE_PATH        4096

int cg_tune_cpu_runs(const char *isa)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    if (strcmp(isa, "avx512") == 0)
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
               __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq");
    if (strcmp(isa, "avx2") == 0)
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    return 1;
#else
    return strcmp(isa, "avx512") != 0 && strcmp(isa, "avx2") != 0;
#endif
}

static double cg_tune_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cg_tune_rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

/* Runs argv with stdout to out_path and stderr to log_path (appended);
 * its exit status, or -1 when it could not start or a signal ended it. */
static int cg_tune_spawn(char *const argv[], const char *out_path, const char *log_path)
{
    posix_spawn_file_actions_t fa;
    if (posix_spawn_file_actions_init(&fa) != 0)
        return -1;
    int rc = posix_spawn_file_actions_addopen(&fa, 1, out_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (rc == 0)
        rc =
            posix_spawn_file_actions_addopen(&fa, 2, log_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
    pid_t pid;
    if (rc == 0)
        rc = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0)
        return -1;
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR)
            return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

struct cg_tune {
    const struct cg_plan *p;
    cg_tune_build_fn *build;
    void *ctx;
    char dir[CG_TUNE_PATH];         /* the temporary directory */
    char bundle[CG_TUNE_PATH + 16]; /* dir/b: the candidate bundle */
    char log[CG_TUNE_PATH + 16];    /* dir/log: make's and bench's stderr */
    char out[CG_TUNE_PATH + 16];    /* dir/out.json: bench's stdout */
    int runs;                       /* bench runs per measurement */
};

/* Writes and builds the bundle of s. */
static enum dp_err cg_tune_make(struct cg_tune *t, const struct cg_schedule *s,
                                struct dp_errinfo *ei)
{
    enum dp_err err = t->build(t->ctx, s, t->bundle, ei);
    if (err)
        return err;
    char *const argv[] = {"make", "-s", "-j2", "-C", t->bundle, NULL};
    if (cg_tune_spawn(argv, t->log, t->log) != 0)
        return dp_errinfo_set(ei, DP_EIO, "tune: a candidate bundle did not build (see %s)",
                              t->log);
    return DP_OK;
}

/* Runs the built bundle's bench on path isa with threads; its median in
 * *p50 and, when min_ms is not NULL, each step's fastest image. */
static enum dp_err cg_tune_bench(struct cg_tune *t, const char *isa, int threads, double *p50,
                                 double *min_ms, struct dp_errinfo *ei)
{
    char exe[CG_TUNE_PATH + 32], runs[16], th[16];
    snprintf(exe, sizeof(exe), "%s/bench", t->bundle);
    snprintf(runs, sizeof(runs), "%d", t->runs);
    snprintf(th, sizeof(th), "%d", threads);
    char *const argv[] = {exe, "--runs",  runs, "--warmup", "5",         "--threads",
                          th,  "--batch", "1",  "--isa",    (char *)isa, NULL};
    if (cg_tune_spawn(argv, t->out, t->log) != 0)
        return dp_errinfo_set(ei, DP_EIO,
                              "tune: a candidate bundle failed its bench on path %s (see %s)", isa,
                              t->log);
    json_error_t je;
    json_t *j = json_load_file(t->out, JSON_DISABLE_EOF_CHECK, &je);
    const json_t *lat = json_object_get(j, "latency_ms");
    const json_t *layers = json_object_get(j, "layers");
    enum dp_err err = DP_OK;
    if (!json_is_number(json_object_get(lat, "p50")) || !json_is_array(layers) ||
        (int)json_array_size(layers) != t->p->n_steps) {
        err = dp_errinfo_set(ei, DP_EIO, "tune: bench printed no timing (%s)", t->out);
    } else {
        *p50 = json_number_value(json_object_get(lat, "p50"));
        for (int k = 0; min_ms != NULL && k < t->p->n_steps; k++) {
            const json_t *v = json_object_get(json_array_get(layers, (size_t)k), "min_ms");
            min_ms[k] = json_is_number(v) ? json_number_value(v) : INFINITY;
        }
    }
    json_decref(j);
    return err;
}

/* Re-derives the panel schedules of the paths other than path 0 and tp
 * whose block no longer divides path 0's weight groups (tuning path 0
 * changes them). */
static void cg_tune_fix_paths(const struct cg_plan *p, struct cg_schedule *s, int tp)
{
    for (int i = 1; i < s->n_paths; i++) {
        if (i == tp)
            continue;
        for (int k = 0; k < p->n_steps; k++) {
            struct cg_sched *o = &s->path[i].steps[k];
            if (o->kern == CG_KERN_PANEL && o->gw != s->path[0].steps[k].gw)
                cg_sched_candidates(&p->steps[k], s->path[i].vl, s->path[0].steps[k].gw, s->threads,
                                    o, 1);
        }
    }
}

/* The rounds: each layer's candidates timed, the best kept in s. */
static enum dp_err cg_tune_rounds(struct cg_tune *t, struct cg_schedule *s, int tp, double t_end,
                                  double *round_s, struct cg_tune_report *rep,
                                  struct dp_errinfo *ei)
{
    const struct cg_plan *p = t->p;
    const int n = p->n_steps;
    struct cg_sched *cand = dp_calloc(dp_size_mul((size_t)n, CG_TUNE_CANDS), sizeof(*cand));
    int *n_cand = dp_calloc((size_t)n, sizeof(int));
    double *best = dp_calloc((size_t)n, sizeof(double)), *ms = dp_calloc((size_t)n, sizeof(double));
    struct cg_schedule trial = {0};
    enum dp_err err = DP_OK;
    if (cand == NULL || n_cand == NULL || best == NULL || ms == NULL) {
        err = dp_errinfo_set(ei, DP_ENOMEM, "out of memory tuning");
        goto out;
    }
    int most = 1;
    for (int k = 0; k < n; k++) {
        const int gw = tp > 0 ? s->path[0].steps[k].gw : 0;
        n_cand[k] = cg_sched_candidates(&p->steps[k], s->path[tp].vl, gw, s->threads,
                                        cand + (size_t)k * CG_TUNE_CANDS, CG_TUNE_CANDS);
        most = n_cand[k] > most ? n_cand[k] : most;
        best[k] = INFINITY;
    }
    /* Round 0 runs the starting schedule itself. */
    err = cg_schedule_copy(&trial, s, ei);
    if (err)
        goto out;
    double last = 0.0;
    for (int j = 0; j < most; j++) {
        const double t0 = cg_tune_now();
        if (j > 0 && t0 + last > t_end)
            break;
        for (int k = 0; k < n && j > 0; k++)
            if (n_cand[k] > j)
                trial.path[tp].steps[k] = cand[(size_t)k * CG_TUNE_CANDS + (size_t)j];
        cg_tune_fix_paths(p, &trial, tp);
        /* The candidate bundle carries the tuned path alone (a third of the
         * build time on native); its weight groups are the layout's. */
        struct cg_schedule one = {
            .n_steps = trial.n_steps, .n_paths = 1, .threads = trial.threads, .prefer = -1};
        one.path[0] = trial.path[tp];
        double p50 = 0.0;
        err = cg_tune_make(t, &one, ei);
        if (!err)
            err = cg_tune_bench(t, s->path[tp].isa, s->threads, &p50, ms, ei);
        if (err)
            goto out;
        if (j == 0) {
            rep->default_p50 = p50;
            /* About a third of a second of timed runs per measurement. */
            t->runs = p50 > 0.0 ? (int)(300.0 / p50) : 100;
            t->runs = t->runs < 10 ? 10 : t->runs > 200 ? 200 : t->runs;
        }
        for (int k = 0; k < n; k++) {
            if (p->steps[k].kind != CG_K_CONV || (j > 0 && n_cand[k] <= j) || !(ms[k] < best[k]))
                continue;
            best[k] = ms[k];
            s->path[tp].steps[k] = trial.path[tp].steps[k];
        }
        /* Layers keep their best so far in the next rounds. */
        for (int k = 0; k < n; k++)
            trial.path[tp].steps[k] = s->path[tp].steps[k];
        rep->rounds++;
        last = cg_tune_now() - t0;
        *round_s = last;
    }
    cg_tune_fix_paths(p, s, tp);
    for (int k = 0; k < n; k++)
        rep->layers_changed += n_cand[k] > 0 && !cg_sched_equal(&s->path[tp].steps[k],
                                                                &cand[(size_t)k * CG_TUNE_CANDS]);
out:
    cg_schedule_free(&trial);
    dp_free(cand);
    dp_free(n_cand);
    dp_free(best);
    dp_free(ms);
    return err;
}

/* Threads and path: bench's median on the tuned bundle. */
static enum dp_err cg_tune_threads_isa(struct cg_tune *t, struct cg_schedule *s, int tp,
                                       struct cg_tune_report *rep, struct dp_errinfo *ei)
{
    enum dp_err err = cg_tune_make(t, s, ei);
    if (err)
        return err;
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    ncpu = ncpu < 1 ? 1 : ncpu > CG_TUNE_MAX_THREADS ? CG_TUNE_MAX_THREADS : ncpu;
    double best = INFINITY;
    int best_th = s->threads;
    for (int th = 1; th <= ncpu; th++) {
        double p50 = 0.0;
        err = cg_tune_bench(t, s->path[tp].isa, th, &p50, NULL, ei);
        if (err)
            return err;
        if (p50 < best) {
            best = p50;
            best_th = th;
        }
    }
    s->threads = best_th;
    int best_path = tp;
    for (int i = 0; i < s->n_paths; i++) {
        if (i == tp || !cg_tune_cpu_runs(s->path[i].isa))
            continue;
        double p50 = 0.0;
        err = cg_tune_bench(t, s->path[i].isa, best_th, &p50, NULL, ei);
        if (err)
            return err;
        if (p50 < best) {
            best = p50;
            best_path = i;
        }
    }
    /* A bundle with one path has nothing to prefer. */
    s->prefer = s->n_paths > 1 ? best_path : -1;
    rep->tuned_p50 = best;
    return DP_OK;
}

enum dp_err cg_tune(const struct cg_plan *p, double budget_s, cg_tune_build_fn *build, void *ctx,
                    struct cg_schedule *s, struct cg_tune_report *rep, struct dp_errinfo *ei)
{
    const double t_start = cg_tune_now();
    memset(rep, 0, sizeof(*rep));
    int tp = -1;
    for (int i = 0; i < s->n_paths && tp < 0; i++)
        if (cg_tune_cpu_runs(s->path[i].isa))
            tp = i;
    if (tp < 0)
        return dp_errinfo_set(ei, DP_EUNSUPPORTED, "tune: this CPU runs none of the paths");
    rep->isa = s->path[tp].isa;
    struct cg_tune t = {.p = p, .build = build, .ctx = ctx, .runs = 20};
    const char *tmp = getenv("TMPDIR");
    if (snprintf(t.dir, sizeof(t.dir), "%s/cgtune-XXXXXX", tmp && tmp[0] ? tmp : "/tmp") >=
        (int)sizeof(t.dir))
        return dp_errinfo_set(ei, DP_EINVAL, "tune: TMPDIR is too long");
    if (mkdtemp(t.dir) == NULL)
        return dp_errinfo_set(ei, dp_err_from_errno(errno), "tune: cannot create %s: %s", t.dir,
                              strerror(errno));
    snprintf(t.bundle, sizeof(t.bundle), "%s/b", t.dir);
    snprintf(t.log, sizeof(t.log), "%s/log", t.dir);
    snprintf(t.out, sizeof(t.out), "%s/out.json", t.dir);
    /* The rounds leave about a quarter of the budget for threads and
     * paths, which take place when a build and their runs still fit (a
     * full build is about two rounds); else the bundle keeps the starting
     * threads and times its paths at create. */
    double round_s = 0.0;
    enum dp_err err = cg_tune_rounds(&t, s, tp, t_start + 0.75 * budget_s, &round_s, rep, ei);
    if (!err && cg_tune_now() + 2.0 * round_s <= t_start + budget_s)
        err = cg_tune_threads_isa(&t, s, tp, rep, ei);
    if (err) {
        /* Keep the logs for the message; the bundle is not needed. */
        nftw(t.bundle, cg_tune_rm_one, 16, FTW_DEPTH | FTW_PHYS);
    } else {
        nftw(t.dir, cg_tune_rm_one, 16, FTW_DEPTH | FTW_PHYS);
    }
    rep->seconds = cg_tune_now() - t_start;
    return err;
}
