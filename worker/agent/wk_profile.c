/*
 * The profile task (see wk_profile.h).
 */
#include "worker/agent/wk_profile.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "common/alloc.h"
#include "common/file.h"
#include "common/tar_read.h"
#include "worker/agent/wk_bundle.h"
#include "worker/cmd/wk_cmd.h"

enum dp_err wk_profile_bind(struct wk_engine_job *j, const json_t *params,
                            const struct wk_task_files *f, const struct wk_run_opts *o,
                            struct dp_errinfo *ei)
{
    const json_t *p = json_object_get(params, "profile");
    if (!json_is_object(p))
        return dp_errinfo_set(ei, DP_EINVAL, "params.profile: missing or not an object");
    struct {
        const char *key;
        long *dst, min, max;
    } ints[] = {{"runs", &j->prof_runs, 1, 100000},
                {"warmup", &j->prof_warmup, 0, 100000},
                {"timeout_s", &j->prof_timeout_s, 1, 3600}};
    for (size_t i = 0; i < sizeof(ints) / sizeof(ints[0]); i++) {
        const json_t *v = json_object_get(p, ints[i].key);
        if (!json_is_integer(v) || json_integer_value(v) < ints[i].min ||
            json_integer_value(v) > ints[i].max)
            return dp_errinfo_set(ei, DP_EINVAL, "params.profile.%s: must be an integer %ld..%ld",
                                  ints[i].key, ints[i].min, ints[i].max);
        *ints[i].dst = (long)json_integer_value(v);
    }
    const json_t *threads = json_object_get(p, "threads");
    size_t n = json_array_size(threads);
    if (n == 0 || n > sizeof(j->prof_threads) / sizeof(j->prof_threads[0]))
        return dp_errinfo_set(ei, DP_EINVAL, "params.profile.threads: 1 to 8 thread counts");
    for (size_t i = 0; i < n; i++) {
        const json_t *t = json_array_get(threads, i);
        if (!json_is_integer(t) || json_integer_value(t) < 1 || json_integer_value(t) > 256)
            return dp_errinfo_set(ei, DP_EINVAL, "params.profile.threads[%zu]: 1..256", i);
        j->prof_threads[i] = (long)json_integer_value(t);
    }
    j->prof_n_threads = (int)n;
    const char *target =
        json_string_value(json_object_get(json_object_get(params, "compile"), "target"));
    j->prof_target = target ? target : "native";
    if (f->code_in == NULL || f->dense_model == NULL || f->out_profile == NULL ||
        f->work_dir == NULL)
        return dp_errinfo_set(ei, DP_EINVAL,
                              "inputs: a profile task needs the code bundle and the dense model");
    j->prof_code_in = f->code_in;
    j->prof_dense = f->dense_model;
    j->prof_out = f->out_profile;
    j->prof_work = f->work_dir;
    j->prof_device_id = f->device_id;
    j->prof_device_name = o->device_name;
    return DP_OK;
}

json_t *wk_profile_side(const json_t *bench)
{
    const json_t *layers = json_object_get(bench, "layers");
    double total = 0;
    size_t i;
    const json_t *l;
    json_array_foreach (layers, i, l)
        total += json_number_value(json_object_get(l, "ms"));
    json_t *rows = json_array();
    json_array_foreach (layers, i, l) {
        double ms = json_number_value(json_object_get(l, "ms"));
        const char *name = json_string_value(json_object_get(l, "name"));
        const char *format = json_string_value(json_object_get(l, "format"));
        if (rows != NULL &&
            json_array_append_new(rows, json_pack("{s:s, s:s, s:f, s:f}", "name", name ? name : "",
                                                  "format", format ? format : "", "ms", ms, "share",
                                                  total > 0 ? ms / total : 0.0)) != 0) {
            json_decref(rows);
            rows = NULL;
        }
    }
    if (rows == NULL)
        return NULL;
    json_t *lat = json_object_get(bench, "latency_ms");
    return json_pack("{s:O*, s:O*, s:O*, s:o}", "latency_ms", lat, "max_rel_err",
                     json_object_get(bench, "max_rel_err"), "peak_rss_kb",
                     json_object_get(bench, "peak_rss_kb"), "layers", rows);
}

/* Builds dir's bundle and times it at every thread count into *out (an
 * array of bench lines). log is the build and run log. */
static enum dp_err bench_all(const struct wk_engine_job *j, const char *dir, const char *log,
                             const struct wk_hooks *h, json_t **out, struct dp_errinfo *ei)
{
    *out = json_array();
    if (*out == NULL)
        return DP_ENOMEM;
    for (int i = 0; i < j->prof_n_threads; i++) {
        json_t *b = NULL;
        enum dp_err err = wk_bundle_bench(dir, log, j->prof_threads[i], (int)j->prof_runs,
                                          (int)j->prof_warmup, (int)j->prof_timeout_s, h, &b, ei);
        if (!err && json_array_append_new(*out, b) != 0)
            err = DP_ENOMEM;
        if (err)
            return err;
    }
    return DP_OK;
}

static void progress(const struct wk_hooks *h, const char *step, const char *msg)
{
    if (h == NULL || h->event == NULL)
        return;
    json_t *d = json_pack("{s:s, s:s}", "step", step, "message", msg);
    if (d != NULL)
        h->event(h->ctx, "profile", d);
    json_decref(d);
}

/* The end of a build or run log sent with a failure: enough for the
 * compiler's first errors, well under an event's 64 KiB. */
#define WK_PROFILE_LOG_EVENT_MAX (8 * 1024)

void wk_profile_failure_log(const struct wk_hooks *h, const char *kind, const char *log,
                            const struct dp_errinfo *ei)
{
    unsigned char *text = NULL;
    size_t len = 0;
    if (h == NULL || h->event == NULL)
        return;
    if (dp_file_read(log, log, (size_t)64 << 20, &text, &len, NULL) != DP_OK)
        len = 0;
    size_t from = len > WK_PROFILE_LOG_EVENT_MAX ? len - WK_PROFILE_LOG_EVENT_MAX : 0;
    /* jansson refuses text that is not UTF-8: the log goes byte for byte
     * where it is, else with every byte past ASCII shown as '?'. */
    json_t *tail = json_stringn(text ? (const char *)text + from : "", len - from);
    for (size_t i = from; tail == NULL && i < len; i++)
        if (text[i] >= 0x80)
            text[i] = '?';
    if (tail == NULL)
        tail = json_stringn(text ? (const char *)text + from : "", len - from);
    json_t *d = json_pack("{s:s, s:s, s:o*}", "step", "failed", "message", ei->msg, "log", tail);
    if (d != NULL)
        h->event(h->ctx, kind, d);
    json_decref(d);
    dp_free(text);
}

/* The bench binary's size under dir (0 when absent). */
static long long binary_bytes(const char *dir)
{
    char p[1300];
    struct stat st;
    snprintf(p, sizeof(p), "%s/bench", dir);
    return stat(p, &st) == 0 ? (long long)st.st_size : 0;
}

enum dp_err wk_profile_run(const struct wk_engine_job *j, const struct wk_hooks *h,
                           struct dp_errinfo *ei)
{
    char comp[1200], dense[1200], comp_log[1300], dense_log[1300];
    json_t *cb = NULL, *db = NULL, *results = NULL, *out = NULL;
    int k1 = snprintf(comp, sizeof(comp), "%s/compressed", j->prof_work);
    int k2 = snprintf(dense, sizeof(dense), "%s/dense", j->prof_work);
    if (k1 < 0 || (size_t)k1 >= sizeof(comp) || k2 < 0 || (size_t)k2 >= sizeof(dense))
        return dp_errinfo_set(ei, DP_EINVAL, "task directory path too long");
    snprintf(comp_log, sizeof(comp_log), "%s.log", comp);
    snprintf(dense_log, sizeof(dense_log), "%s.log", dense);
    if (mkdir(comp, 0700) != 0)
        return dp_errinfo_set(ei, DP_EIO, "cannot create %s: %s", comp, strerror(errno));
    enum dp_err err = dp_tar_extract_flat(j->prof_code_in, comp, WK_BUNDLE_MAX_BYTES, ei);
    if (err == DP_ETRUNC || err == DP_ETOOBIG)
        err = DP_EFORMAT; /* the artifact, not this machine: no retry */
    if (!err) {
        progress(h, "compressed", "building and timing the compressed bundle");
        err = bench_all(j, comp, comp_log, h, &cb, ei);
        if (err == DP_EFORMAT)
            wk_profile_failure_log(h, "profile", comp_log, ei);
    }
    if (!err) {
        progress(h, "dense", "compiling, building and timing the dense bundle");
        struct wk_compile_opts c;
        wk_compile_opts_init(&c);
        c.model = j->prof_dense;
        c.out = dense;
        c.name = "model";
        c.target = j->prof_target;
        c.threads = j->prof_threads[0];
        err = wk_compile(&c, h, ei);
    }
    if (!err) {
        err = bench_all(j, dense, dense_log, h, &db, ei);
        if (err == DP_EFORMAT)
            wk_profile_failure_log(h, "profile", dense_log, ei);
    }
    if (!err && (results = json_array()) == NULL)
        err = DP_ENOMEM;
    for (int i = 0; !err && i < j->prof_n_threads; i++) {
        const json_t *c = json_array_get(cb, (size_t)i), *d = json_array_get(db, (size_t)i);
        double cp = json_number_value(json_object_get(json_object_get(c, "latency_ms"), "p50"));
        double dp = json_number_value(json_object_get(json_object_get(d, "latency_ms"), "p50"));
        json_t *row = json_pack("{s:I, s:o, s:o, s:f}", "threads", (json_int_t)j->prof_threads[i],
                                "compressed", wk_profile_side(c), "dense", wk_profile_side(d),
                                "speedup", cp > 0 ? dp / cp : 0.0);
        if (row == NULL || json_array_append_new(results, row) != 0)
            err = DP_ENOMEM;
    }
    if (!err) {
        const json_t *first = json_array_get(results, 0);
        out = json_pack("{s:i, s:{s:s?, s:s?}, s:s, s:I, s:I, s:O, s:O, s:{s:I, s:I}, s:O, s:O}",
                        "version", WK_PROFILE_VERSION, "device", "id", j->prof_device_id, "name",
                        j->prof_device_name, "target", j->prof_target, "runs",
                        (json_int_t)j->prof_runs, "warmup", (json_int_t)j->prof_warmup, "speedup",
                        json_object_get(first, "speedup"), "results", results, "binary_bytes",
                        "compressed", (json_int_t)binary_bytes(comp), "dense",
                        (json_int_t)binary_bytes(dense), "bench_compressed", json_array_get(cb, 0),
                        "bench_dense", json_array_get(db, 0));
        if (out == NULL)
            err = DP_ENOMEM;
    }
    if (!err)
        err = wk_cmd_write_json(j->prof_out, out, JSON_INDENT(2) | JSON_SORT_KEYS, ei);
    if (!err) {
        char msg[160];
        snprintf(msg, sizeof(msg), "profiled: %.2fx faster than dense (%ld threads)",
                 json_number_value(json_object_get(out, "speedup")), j->prof_threads[0]);
        progress(h, "done", msg);
    }
    json_decref(cb);
    json_decref(db);
    json_decref(results);
    json_decref(out);
    return err;
}
