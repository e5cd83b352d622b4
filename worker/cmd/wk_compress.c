/*
 * `dnnpress-worker compress` (see wk_compress.h).
 */
#include "worker/cmd/wk_compress.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "common/alloc.h"
#include "common/lat_table.h"
#include "common/model.h"
#include "common/model_io.h"
#include "worker/cmd/wk_cmd.h"
#include "worker/cmd/wk_flags.h"
#include "worker/cmd/wk_model_load.h"
#include "worker/compress/admm.h"
#include "worker/compress/purify.h"
#include "worker/nn/cpu.h"
#include "worker/nn/data.h"
#include "worker/nn/loader.h"
#include "worker/nn/net.h"
#include "worker/nn/train.h"

/* The command line: the options plus the files and names the CLI turns
 * into them (the task loop has its own sources for these). */
struct wk_compress_cli {
    struct wk_compress_opts o;
    const char *spec, *prev_report, *phase, *method, *latency;
};

#define WK_OFF(f) offsetof(struct wk_compress_cli, f)

static const struct wk_flag wk_compress_flags[] = {
    {"spec", WK_STR, WK_OFF(spec), 0, 0, NULL, 0, "the job spec (JSON, docs/job-spec.md)"},
    {"model", WK_STR, WK_OFF(o.model), 0, 0, NULL, 0,
     "pretrained .safetensors checkpoint or .onnx model"},
    {"data", WK_STR, WK_OFF(o.data), 0, 0, NULL, 0, "dataset: idx:DIR, cifar:DIR or npy:DIR"},
    {"out", WK_STR, WK_OFF(o.out), 0, 0, NULL, 0, "write the compressed checkpoint here"},
    {"report", WK_STR, WK_OFF(o.report), 0, 0, NULL, 0, "write the JSON report here"},
    {"method", WK_STR, WK_OFF(method), 0, 0, NULL, 0,
     "override the spec's method: admm or magnitude"},
    {"threads", WK_INT, WK_OFF(o.threads), 1, 1024, NULL, 0, "worker threads (default: all cores)"},
    {"limit-train", WK_INT, WK_OFF(o.limit_train), 1, 1e9, NULL, 0,
     "use only the first N training images"},
    {"limit-test", WK_INT, WK_OFF(o.limit_test), 1, 1e9, NULL, 0,
     "use only the first N test images"},
    {"quiet", WK_BOOL, WK_OFF(o.quiet), 0, 1, NULL, 0, "no progress lines"},
    {"checkpoint", WK_STR, WK_OFF(o.checkpoint), 0, 0, NULL, 0,
     "write the whole ADMM state here after every epoch"},
    {"resume", WK_BOOL, WK_OFF(o.resume), 0, 1, NULL, 0,
     "continue from --checkpoint when it exists (same flags: same result)"},
    {"phase", WK_STR, WK_OFF(phase), 0, 0, NULL, 0,
     "all (default), admm (up to the hard projection) or retrain (the masked retraining)"},
    {"prev-report", WK_STR, WK_OFF(prev_report), 0, 0, NULL, 0,
     "--phase retrain: the admm phase's report (dense accuracy and trace carry over)"},
    {"latency-table", WK_STR, WK_OFF(latency), 0, 0, NULL, 0,
     "auto.objective latency: the device's per-layer latency table (JSON, GET "
     "/agent/v1/latency)"},
};

#define WK_N_FLAGS (sizeof(wk_compress_flags) / sizeof(wk_compress_flags[0]))

static void wk_compress_cli_init(struct wk_compress_cli *c)
{
    memset(c, 0, sizeof(*c));
    c->o.phase = ADMM_PHASE_ALL;
    wk_flags_defaults(wk_compress_flags, WK_N_FLAGS, c);
}

void wk_compress_opts_init(struct wk_compress_opts *o)
{
    struct wk_compress_cli c;
    wk_compress_cli_init(&c);
    *o = c.o;
}

enum dp_err wk_compress_check(const struct wk_compress_opts *o, struct dp_errinfo *ei)
{
    if (o->spec == NULL || o->model == NULL || o->data == NULL)
        return dp_errinfo_set(ei, DP_EINVAL,
                              "--spec, --model and --data are required (see --help)");
    if (o->resume && o->checkpoint == NULL)
        return dp_errinfo_set(ei, DP_EINVAL, "--resume needs --checkpoint FILE");
    if (o->prev_report != NULL && o->phase != ADMM_PHASE_RETRAIN)
        return dp_errinfo_set(ei, DP_EINVAL, "--prev-report goes with --phase retrain");
    return DP_OK;
}

struct wk_compress_run {
    const struct wk_compress_opts *o;
    const struct wk_hooks *h;
};

static void wk_compress_progress(void *ud, const char *line)
{
    const struct wk_compress_run *r = ud;
    if (!r->o->quiet)
        fprintf(stderr, "compress: %s\n", line);
}

static void wk_compress_event(void *ud, const char *type, json_t *data)
{
    const struct wk_compress_run *r = ud;
    if (r->h != NULL && r->h->event != NULL)
        r->h->event(r->h->ctx, type, data);
}

static int wk_compress_stop(void *ud)
{
    const struct wk_compress_run *r = ud;
    return r->h != NULL && r->h->stop != NULL && r->h->stop(r->h->ctx);
}

/* The largest difference between the logits of a and b on the test set,
 * relative to 1 + |a's logit|: purification removes only exact zeros and
 * unread channels, so this stays at float rounding (the report states it,
 * the e2e tests hold it to 1e-4). */
static enum dp_err wk_compress_logit_diff(struct dp_model *a, struct dp_model *b,
                                          const struct nn_dataset *test, const float *mean,
                                          const float *std, int batch, double *out,
                                          struct dp_errinfo *ei)
{
    struct nn_net *na = NULL, *nb = NULL;
    struct nn_loader ld;
    struct nn_loader_cfg lc = {batch, 0, 0, mean, std, 0};
    float *x = NULL;
    int32_t *y = NULL;
    *out = 0.0;
    enum dp_err err = nn_net_new(a, batch, &na, ei);
    if (!err)
        err = nn_net_new(b, batch, &nb, ei);
    if (!err && na->n_classes != nb->n_classes)
        err = dp_errinfo_set(ei, DP_ESHAPE, "purification changed the output size");
    if (err)
        goto out;
    err = nn_loader_init(&ld, test, &lc, ei);
    if (err)
        goto out;
    x = dp_malloc_aligned((size_t)batch * dp_model_out_size(a, DP_MODEL_INPUT) * sizeof(float));
    y = dp_malloc((size_t)batch * sizeof(int32_t));
    if (x == NULL || y == NULL)
        err = dp_errinfo_set(ei, DP_ENOMEM, "out of memory for a purification check batch");
    nn_loader_start_epoch(&ld, 0);
    for (int n; !err && (n = nn_loader_next(&ld, x, y)) > 0;) {
        const float *la = nn_net_forward(na, x, n, 0);
        const float *lb = la == NULL ? NULL : nn_net_forward(nb, x, n, 0);
        if (lb == NULL) {
            err = dp_errinfo_set(ei, DP_ENOMEM, "out of memory checking purification");
            break;
        }
        for (size_t k = 0; k < (size_t)n * (size_t)na->n_classes; k++) {
            const double d = fabs((double)la[k] - (double)lb[k]) / (1.0 + fabs((double)la[k]));
            if (d > *out || d != d)
                *out = d;
        }
    }
    nn_loader_free(&ld);
out:
    dp_free_aligned(x);
    dp_free(y);
    nn_net_free(na);
    nn_net_free(nb);
    return err;
}

/* Replaces *m by its purified copy and records the shrinking and the
 * purified model's accuracy (which must equal the unpurified one's) in the
 * report. */
static enum dp_err wk_compress_purify(struct dp_model **m, const struct nn_dataset *train,
                                      const struct nn_dataset *test, int batch, json_t *report,
                                      struct dp_errinfo *ei)
{
    struct dp_model *small = NULL;
    json_t *stats = NULL;
    enum dp_err err = cp_purify(*m, &small, &stats, ei);
    if (err)
        return err;
    float mean[NN_DATASET_MAX_C], std[NN_DATASET_MAX_C];
    nn_dataset_model_norm(train, small, mean, std);
    double acc = 0.0, loss = 0.0;
    err = nn_evaluate(small, test, mean, std, batch, &acc, &loss, ei);
    if (err) {
        dp_model_free(small);
        json_decref(stats);
        return err;
    }
    double diff = 0.0;
    err = wk_compress_logit_diff(*m, small, test, mean, std, batch, &diff, ei);
    if (err) {
        dp_model_free(small);
        json_decref(stats);
        return err;
    }
    json_object_set_new(stats, "test_accuracy", json_real(acc));
    json_object_set_new(stats, "max_logit_diff", json_real(diff));
    json_object_set_new(report, "purification", stats);
    dp_model_free(*m);
    *m = small;
    return DP_OK;
}

static json_t *wk_compress_summary(const json_t *report)
{
    json_t *tot = json_object_get(report, "totals");
    json_t *sum = json_pack(
        "{s:O, s:O, s:O, s:O, s:O, s:O, s:O, s:I}", "method", json_object_get(report, "method"),
        "dense_test_accuracy", json_object_get(report, "dense_test_accuracy"), "test_accuracy",
        json_object_get(report, "final_test_accuracy"), "rate", json_object_get(tot, "rate"),
        "storage_rate", json_object_get(tot, "storage_rate"), "epochs",
        json_object_get(report, "epochs"), "wall_seconds", json_object_get(report, "wall_seconds"),
        "peak_rss_bytes", (json_int_t)wk_peak_rss());
    /* The held-out split's numbers and the budget, where the report has them. */
    static const char *const extra[] = {"dense_val_accuracy", "final_val_accuracy",
                                        "budget_epochs"};
    for (size_t i = 0; sum != NULL && i < sizeof(extra) / sizeof(extra[0]); i++) {
        json_t *v = json_object_get(report, extra[i]);
        if (v != NULL)
            json_object_set(sum, extra[i], v);
    }
    return sum;
}

enum dp_err wk_compress(const struct wk_compress_opts *o, const struct wk_hooks *h,
                        json_t **summary, struct dp_errinfo *ei)
{
    if (summary != NULL)
        *summary = NULL;
    enum dp_err err = wk_compress_check(o, ei);
    if (err)
        return err;
    struct nn_dataset train = {0}, test = {0};
    struct dp_model *m = NULL;
    json_t *report = NULL;
    wk_cmd_threads(o->threads);
    nn_cpu_flush_denormals();
    err = nn_dataset_load(o->data, NN_SPLIT_TRAIN, &train, ei);
    if (!err)
        err = nn_dataset_load(o->data, NN_SPLIT_TEST, &test, ei);
    if (!err)
        err = wk_model_load(o->model, &m, NULL, ei);
    if (err)
        goto out;
    if (o->limit_train > 0)
        nn_dataset_limit(&train, (int)o->limit_train);
    if (o->limit_test > 0)
        nn_dataset_limit(&test, (int)o->limit_test);
    struct wk_compress_run run = {o, h};
    struct admm_callbacks cb;
    memset(&cb, 0, sizeof(cb));
    cb.progress = wk_compress_progress;
    cb.ud = &run;
    cb.stop_fn = wk_compress_stop;
    cb.event = wk_compress_event;
    cb.checkpoint = o->checkpoint;
    cb.resume = (int)o->resume;
    cb.phase = o->phase;
    cb.prev_report = o->prev_report;
    cb.latency = o->latency;
    err = admm_compress(m, &train, &test, o->spec, &cb, &report, ei);
    if (err)
        goto out;
    if (o->spec->purify && o->phase != ADMM_PHASE_ADMM) {
        err = wk_compress_purify(&m, &train, &test, o->spec->batch, report, ei);
        if (err) {
            wk_cmd_prefix(ei, err, "purification: ");
            goto out;
        }
    }
    if (o->out != NULL) {
        err = dp_model_save(m, o->out, NULL, ei);
        if (err) {
            wk_cmd_prefix(ei, err, "writing %s: ", o->out);
            goto out;
        }
    }
    if (o->report != NULL) {
        err = wk_cmd_write_json(o->report, report, JSON_INDENT(1) | JSON_REAL_PRECISION(7), ei);
        if (err)
            goto out;
    }
    /* A summary that cannot be built is left out: the run itself succeeded. */
    if (summary != NULL)
        *summary = wk_compress_summary(report);
out:
    json_decref(report);
    dp_model_free(m);
    nn_dataset_free(&train);
    nn_dataset_free(&test);
    return err;
}

/* Reads what the command line names into c->o; exit status 2 (usage) on failure. */
static int wk_compress_cli_load(struct wk_compress_cli *c, struct dp_spec *spec, json_t **prev,
                                json_t **lat)
{
    struct wk_compress_opts *o = &c->o;
    if (c->spec == NULL || o->model == NULL || o->data == NULL) {
        fprintf(stderr, "compress: --spec, --model and --data are required (see --help)\n");
        return WK_EXIT_USAGE;
    }
    if (c->phase != NULL) {
        if (strcmp(c->phase, "all") == 0) {
            o->phase = ADMM_PHASE_ALL;
        } else if (strcmp(c->phase, "admm") == 0) {
            o->phase = ADMM_PHASE_ADMM;
        } else if (strcmp(c->phase, "retrain") == 0) {
            o->phase = ADMM_PHASE_RETRAIN;
        } else {
            fprintf(stderr, "compress: --phase must be all, admm or retrain, not '%s'\n", c->phase);
            return WK_EXIT_USAGE;
        }
    }
    if (c->prev_report != NULL) {
        json_error_t je;
        *prev = json_load_file(c->prev_report, JSON_REJECT_DUPLICATES, &je);
        if (!json_is_object(*prev)) {
            fprintf(stderr, "compress: --prev-report %s: not a JSON report (%s)\n", c->prev_report,
                    je.text);
            return WK_EXIT_USAGE;
        }
        o->prev_report = *prev;
    }
    struct dp_errinfo ei = {DP_OK, ""};
    if (c->latency != NULL) {
        json_error_t je;
        *lat = json_load_file(c->latency, JSON_REJECT_DUPLICATES, &je);
        if (*lat == NULL || dp_lat_table_check(*lat, &ei) != DP_OK) {
            fprintf(stderr, "compress: --latency-table %s: %s\n", c->latency,
                    *lat == NULL ? je.text : ei.msg);
            return WK_EXIT_USAGE;
        }
        o->latency = *lat;
    }
    enum dp_err err = spec != NULL ? dp_spec_load(c->spec, spec, &ei) : DP_ENOMEM;
    if (err) {
        fprintf(stderr, "compress: %s\n", dp_errinfo_msg(&ei, err));
        return WK_EXIT_USAGE;
    }
    if (c->method != NULL) {
        if (strcmp(c->method, "admm") == 0) {
            spec->method = DP_SPEC_ADMM;
        } else if (strcmp(c->method, "magnitude") == 0) {
            spec->method = DP_SPEC_MAGNITUDE;
        } else {
            fprintf(stderr, "compress: --method must be admm or magnitude\n");
            return WK_EXIT_USAGE;
        }
    }
    o->spec = spec;
    err = wk_compress_check(o, &ei);
    if (err) {
        fprintf(stderr, "compress: %s\n", dp_errinfo_msg(&ei, err));
        return WK_EXIT_USAGE;
    }
    return WK_EXIT_OK;
}

int wk_compress_main(int argc, char **argv)
{
    struct wk_compress_cli c;
    wk_compress_cli_init(&c);
    int rc = wk_flags_parse("compress", wk_compress_flags, WK_N_FLAGS, &c, argc, argv);
    if (rc > 0) {
        printf("usage: dnnpress-worker compress --spec FILE --model FILE.safetensors|FILE.onnx "
               "--data SPEC "
               "[options]\n\nRuns ADMM compression (or the magnitude baseline) and writes the "
               "compressed\ncheckpoint and a JSON report.\n\noptions:\n");
        wk_flags_help(stdout, wk_compress_flags, WK_N_FLAGS);
        return WK_EXIT_OK;
    }
    if (rc != 0)
        return WK_EXIT_USAGE;
    /* The spec holds its rules inline (DP_SPEC_MAX_RULES): on the heap. */
    struct dp_spec *spec = dp_calloc(1, sizeof(*spec));
    json_t *prev = NULL, *sum = NULL, *lat = NULL;
    rc = wk_compress_cli_load(&c, spec, &prev, &lat);
    if (rc == WK_EXIT_OK) {
        struct dp_errinfo ei = {DP_OK, ""};
        enum dp_err err = wk_compress(&c.o, NULL, &sum, &ei);
        if (err) {
            fprintf(stderr, "compress: %s%s\n", err == DP_EINTERRUPTED ? "stopped: " : "",
                    dp_errinfo_msg(&ei, err));
        } else {
            if (sum != NULL)
                json_dumpf(sum, stdout, JSON_COMPACT | JSON_REAL_PRECISION(7));
            fputc('\n', stdout);
        }
        rc = wk_cmd_exit_status(err);
    }
    json_decref(sum);
    json_decref(prev);
    json_decref(lat);
    dp_free(spec);
    return rc;
}
