/*
 * The latency task (see wk_latency.h).
 */
#include "worker/agent/wk_latency.h"

#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/alloc.h"
#include "common/lat_table.h"
#include "common/model_io.h"
#include "common/op.h"
#include "worker/agent/wk_bundle.h"
#include "worker/agent/wk_profile.h"
#include "worker/cmd/wk_cmd.h"
#include "worker/cmd/wk_flags.h"
#include "worker/cmd/wk_model_load.h"
#include "worker/compress/constraint.h"

enum dp_err wk_latency_bind(struct wk_engine_job *j, const json_t *params,
                            const struct wk_task_files *f, const struct wk_run_opts *o,
                            struct dp_errinfo *ei)
{
    (void)o;
    const json_t *p = json_object_get(params, "latency");
    if (!json_is_object(p))
        return dp_errinfo_set(ei, DP_EINVAL, "params.latency: missing or not an object");
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
            return dp_errinfo_set(ei, DP_EINVAL, "params.latency.%s: must be an integer %ld..%ld",
                                  ints[i].key, ints[i].min, ints[i].max);
        *ints[i].dst = (long)json_integer_value(v);
    }
    const json_t *rates = json_object_get(p, "rates");
    size_t n = json_array_size(rates);
    if (n < 1 || n > DP_LAT_TABLE_MAX_POINTS)
        return dp_errinfo_set(ei, DP_EINVAL, "params.latency.rates: 1 to %d rates",
                              DP_LAT_TABLE_MAX_POINTS);
    for (size_t i = 0; i < n; i++) {
        double r = json_number_value(json_array_get(rates, i));
        if (!json_is_number(json_array_get(rates, i)) || !(r >= 1.0 && r <= 4096.0) ||
            (i > 0 && !(r > j->lat_rates[i - 1])))
            return dp_errinfo_set(ei, DP_EINVAL,
                                  "params.latency.rates[%zu]: ascending rates in 1..4096", i);
        j->lat_rates[i] = r;
    }
    j->lat_n_rates = (int)n;
    j->lat_arch = json_string_value(json_object_get(p, "arch"));
    j->lat_scheme = json_string_value(json_object_get(p, "scheme"));
    if (j->lat_arch == NULL || j->lat_scheme == NULL)
        return dp_errinfo_set(ei, DP_EINVAL, "params.latency: needs arch and scheme");
    if (f->model == NULL || f->out_latency == NULL || f->work_dir == NULL)
        return dp_errinfo_set(ei, DP_EINVAL,
                              "inputs: a latency task needs the job's model as a file");
    j->lat_model = f->model;
    j->lat_out = f->out_latency;
    j->prof_work = f->work_dir;
    return wk_engine_spec(j, params, ei);
}

enum dp_err wk_latency_add_rate(json_t *layers, const json_t *keep, double rate,
                                const json_t *bench, struct dp_errinfo *ei)
{
    size_t i;
    const json_t *l;
    json_array_foreach (json_object_get(bench, "layers"), i, l) {
        const char *name = json_string_value(json_object_get(l, "name"));
        if (name == NULL || json_object_get(keep, name) == NULL)
            continue;
        const json_t *ms = json_object_get(l, "min_ms");
        if (!json_is_number(ms))
            ms = json_object_get(l, "ms");
        double v = json_number_value(ms);
        if (!json_is_number(ms) || !isfinite(v) || v < 0)
            return dp_errinfo_set(ei, DP_EFORMAT, "bench: layer '%s' has no time at rate %g", name,
                                  rate);
        json_t *row = json_object_get(layers, name);
        if (row == NULL) {
            row = json_pack("{s:s, s:[], s:[]}", "name", name, "rates", "ms");
            if (row == NULL || json_object_set_new(layers, name, row) != 0)
                return DP_ENOMEM;
        }
        if (json_array_append_new(json_object_get(row, "rates"), json_real(rate)) != 0 ||
            json_array_append_new(json_object_get(row, "ms"), json_real(v)) != 0)
            return DP_ENOMEM;
    }
    return DP_OK;
}

static void progress(const struct wk_hooks *h, json_t *d_take)
{
    if (h != NULL && h->event != NULL && d_take != NULL)
        h->event(h->ctx, "latency", d_take);
    json_decref(d_take);
}

/* Prunes every layer of m a rule of spec prunes to rate, in place, from
 * the dense weights in dense (m->data's copy). keep gets their names. */
static enum dp_err prune_to(struct dp_model *m, const float *dense, const struct dp_spec *spec,
                            double rate, json_t *keep, struct dp_errinfo *ei)
{
    memcpy(m->data, dense, m->n_floats * sizeof(float));
    for (int i = 0; i < m->n_layers; i++) {
        const struct dp_layer *l = &m->layers[i];
        const struct dp_spec_rule *r = dp_spec_rule_for(spec, l->name);
        if (!dp_op_info(l->op)->compressible || r == NULL || r->prune == NULL)
            continue;
        const struct dp_param *w = &m->params[l->first_param];
        struct proj_shape s = {w->shape[0], w->shape[1], w->ndim == 4 ? w->shape[2] : 1,
                               w->ndim == 4 ? w->shape[3] : 1};
        if (r->prune->needs_3x3 && (s.kh != 3 || s.kw != 3))
            continue; /* ADMM refuses such a layer for this rule; nothing to time */
        if (json_object_set_new(keep, l->name, json_true()) != 0)
            return DP_ENOMEM;
        struct proj_params p = admm_constraint_params(&r->params);
        p.rate = rate;
        float *z = m->data + w->offset;
        enum dp_err err = DP_OK;
        if (r->prune->needs_3x3) {
            const float *ws[1] = {z};
            err = proj_pattern_select(ws, &s, 1, r->n_patterns > 0 ? r->n_patterns : 8, &p, ei);
        }
        void *scratch = err ? NULL : dp_malloc(proj_scratch_bytes(&s));
        if (!err && scratch == NULL)
            err = dp_errinfo_set(ei, DP_ENOMEM, "out of memory pruning layer '%s'", l->name);
        if (!err && rate > 1.0)
            admm_constraint_kernel(r->prune)(z, &s, &p, scratch);
        dp_free(scratch);
        if (err)
            return err;
    }
    return DP_OK;
}

enum dp_err wk_latency_run(const struct wk_engine_job *j, const struct wk_hooks *h,
                           struct dp_errinfo *ei)
{
    struct dp_model *m = NULL;
    float *dense = NULL;
    json_t *layers = json_object(), *keep = json_object(), *out = NULL;
    enum dp_err err = layers && keep ? DP_OK : DP_ENOMEM;
    if (!err)
        err = wk_model_load(j->lat_model, &m, NULL, ei);
    if (!err && (dense = dp_malloc(m->n_floats * sizeof(float))) == NULL)
        err = dp_errinfo_set(ei, DP_ENOMEM, "out of memory for the dense weights");
    if (!err)
        memcpy(dense, m->data, m->n_floats * sizeof(float));
    for (int k = 0; !err && k < j->lat_n_rates; k++) {
        const double rate = j->lat_rates[k];
        char dir[1200], model[1300], log[1300];
        int n = snprintf(dir, sizeof(dir), "%s/rate-%d", j->prof_work, k);
        if (n < 0 || (size_t)n >= sizeof(dir))
            err = dp_errinfo_set(ei, DP_EINVAL, "task directory path too long");
        if (!err && h != NULL && h->stop != NULL && h->stop(h->ctx))
            err = dp_errinfo_set(ei, DP_EINTERRUPTED, "latency: stopped");
        if (err)
            break;
        snprintf(model, sizeof(model), "%s.safetensors", dir);
        snprintf(log, sizeof(log), "%s.log", dir);
        char msg[160];
        snprintf(msg, sizeof(msg), "rate %g (%d of %d): pruning, compiling and timing", rate, k + 1,
                 j->lat_n_rates);
        progress(h, json_pack("{s:s, s:s, s:f, s:i, s:i}", "step", "rate", "message", msg, "rate",
                              rate, "done", k, "of", j->lat_n_rates));
        json_object_clear(keep);
        err = prune_to(m, dense, j->spec, rate, keep, ei);
        if (!err && json_object_size(keep) == 0)
            err = dp_errinfo_set(ei, DP_EINVAL,
                                 "params.spec: no layer of the model is pruned by a rule, so "
                                 "there is no latency to measure");
        if (!err)
            err = dp_model_save(m, model, NULL, ei);
        if (!err) {
            struct wk_compile_opts c;
            wk_compile_opts_init(&c);
            c.model = model;
            c.out = dir;
            c.name = "model";
            c.target = "native";
            c.threads = 1;
            err = wk_compile(&c, h, ei);
        }
        json_t *b = NULL;
        if (!err) {
            err = wk_bundle_bench(dir, log, 1, (int)j->prof_runs, (int)j->prof_warmup,
                                  (int)j->prof_timeout_s, h, &b, ei);
            if (err == DP_EFORMAT)
                wk_profile_failure_log(h, "latency", log, ei);
        }
        if (!err)
            err = wk_latency_add_rate(layers, keep, rate, b, ei);
        json_decref(b);
    }
    json_t *rows = err ? NULL : json_array();
    if (!err && rows == NULL)
        err = DP_ENOMEM;
    const char *name;
    json_t *row;
    json_object_foreach (layers, name, row)
        if (!err && json_array_append(rows, row) != 0)
            err = DP_ENOMEM;
    if (!err) {
        char method[256];
        snprintf(method, sizeof(method),
                 "%s pruning per rate, compile --target native, bench min_ms per "
                 "layer, 1 thread, %ld runs",
                 j->lat_scheme, j->prof_runs);
        out = json_pack("{s:s, s:s, s:s, s:o}", "arch", j->lat_arch, "scheme", j->lat_scheme,
                        "method", method, "layers", rows);
        rows = NULL;
        if (out == NULL)
            err = DP_ENOMEM;
    }
    if (!err)
        err = dp_lat_table_check(out, ei);
    if (!err)
        err = wk_cmd_write_json(j->lat_out, out, JSON_COMPACT, ei);
    if (!err) {
        char msg[160];
        snprintf(msg, sizeof(msg), "measured %zu layers at %d rates",
                 json_array_size(json_object_get(out, "layers")), j->lat_n_rates);
        progress(h, json_pack("{s:s, s:s}", "step", "done", "message", msg));
    }
    json_decref(rows);
    json_decref(out);
    json_decref(layers);
    json_decref(keep);
    dp_free(dense);
    dp_model_free(m);
    return err;
}

/* ---- The command line: `dnnpress-worker latency` ---------------------------- */

/* The same measurement as a latency task, offline on this machine (what
 * tests/bench/latency_objective.sh builds its table with). */
struct wk_latency_cli {
    const char *model, *spec, *rates, *arch, *work_dir, *out;
    long runs, warmup, timeout_s;
};

#define WK_OFF(f) offsetof(struct wk_latency_cli, f)

static const struct wk_flag wk_latency_flags[] = {
    {"model", WK_STR, WK_OFF(model), 0, 0, NULL, 0,
     "model: a .safetensors checkpoint or FILE.onnx"},
    {"spec", WK_STR, WK_OFF(spec), 0, 0, NULL, 0,
     "job spec (JSON, docs/job-spec.md): its rules say which layers are pruned, how"},
    {"rates", WK_STR, WK_OFF(rates), 0, 0, "1,2,4,8,16,32,64", 0,
     "comma-separated ascending rates, the first 1"},
    {"runs", WK_INT, WK_OFF(runs), 1, 100000, "50", 0, "bench runs per rate"},
    {"warmup", WK_INT, WK_OFF(warmup), 0, 100000, "10", 0, "bench warm-up runs per rate"},
    {"timeout-s", WK_INT, WK_OFF(timeout_s), 1, 3600, "300", 0, "each build and bench run"},
    {"arch", WK_STR, WK_OFF(arch), 0, 0, "local", 0, "the table's arch field"},
    {"work-dir", WK_STR, WK_OFF(work_dir), 0, 0, NULL, 0,
     "scratch directory for the pruned models and bundles (created)"},
    {"out", WK_STR, WK_OFF(out), 0, 0, NULL, 0, "write the table (JSON) here"},
};

#define WK_N_FLAGS (sizeof(wk_latency_flags) / sizeof(wk_latency_flags[0]))

/* params as a latency task gets them, from the command line. */
static enum dp_err cli_params(const struct wk_latency_cli *c, json_t **out, struct dp_errinfo *ei)
{
    json_error_t je;
    json_t *spec = json_load_file(c->spec, JSON_REJECT_DUPLICATES, &je);
    if (!json_is_object(spec)) {
        json_decref(spec);
        return dp_errinfo_set(ei, DP_EINVAL, "--spec %s: %s", c->spec,
                              spec ? "not a JSON object" : je.text);
    }
    json_t *rates = json_array();
    const char *p = c->rates;
    while (rates != NULL && *p) {
        char *end = NULL;
        double r = strtod(p, &end);
        if (end == p || (*end != ',' && *end != '\0')) {
            json_decref(rates);
            json_decref(spec);
            return dp_errinfo_set(ei, DP_EINVAL, "--rates: '%s' is not a list of numbers",
                                  c->rates);
        }
        json_array_append_new(rates, json_real(r));
        p = *end ? end + 1 : end;
    }
    const char *scheme = "";
    size_t i;
    json_t *rule;
    json_array_foreach (json_object_get(spec, "layers"), i, rule) {
        const char *s =
            json_string_value(json_object_get(json_object_get(rule, "prune"), "scheme"));
        if (s != NULL && scheme[0] == '\0')
            scheme = s;
    }
    *out = json_pack("{s:o, s:{s:s, s:s, s:o, s:I, s:I, s:I}}", "spec", spec, "latency", "arch",
                     c->arch, "scheme", scheme, "rates", rates, "runs", (json_int_t)c->runs,
                     "warmup", (json_int_t)c->warmup, "timeout_s", (json_int_t)c->timeout_s);
    return *out ? DP_OK : DP_ENOMEM;
}

int wk_latency_main(int argc, char **argv)
{
    struct wk_latency_cli c;
    memset(&c, 0, sizeof(c));
    wk_flags_defaults(wk_latency_flags, WK_N_FLAGS, &c);
    int rc = wk_flags_parse("latency", wk_latency_flags, WK_N_FLAGS, &c, argc, argv);
    if (rc > 0) {
        printf("usage: dnnpress-worker latency --model FILE --spec SPEC.json --work-dir DIR "
               "--out TABLE.json [options]\n\nMeasures this machine's per-layer latency table "
               "for auto.objective \"latency\", as a device's latency task does (docs/api.md, "
               "\"Latency tables\").\n\noptions:\n");
        wk_flags_help(stdout, wk_latency_flags, WK_N_FLAGS);
        return WK_EXIT_OK;
    }
    if (rc != 0)
        return WK_EXIT_USAGE;
    if (c.model == NULL || c.spec == NULL || c.work_dir == NULL || c.out == NULL) {
        fprintf(stderr, "latency: --model, --spec, --work-dir and --out are required\n");
        return WK_EXIT_USAGE;
    }
    struct dp_errinfo ei = {DP_OK, ""};
    json_t *params = NULL;
    struct wk_engine_job j;
    memset(&j, 0, sizeof(j));
    struct wk_task_files f = {.model = c.model, .out_latency = c.out, .work_dir = c.work_dir};
    struct wk_run_opts o = {1, 0, 0, NULL};
    enum dp_err err = cli_params(&c, &params, &ei);
    if (!err && mkdir(c.work_dir, 0700) != 0 && errno != EEXIST)
        err = dp_errinfo_set(&ei, DP_EIO, "cannot create %s: %s", c.work_dir, strerror(errno));
    if (!err)
        err = wk_engine_bind(&j, DP_TASK_LATENCY, params, &f, &o, &ei);
    if (!err)
        err = wk_latency_run(&j, NULL, &ei);
    if (err)
        fprintf(stderr, "latency: %s\n", dp_errinfo_msg(&ei, err));
    wk_engine_job_free(&j);
    json_decref(params);
    return wk_cmd_exit_status(err);
}
