/*
 * `dnnpress-worker compress` (see wk_compress.h).
 */
#include "worker/cmd/wk_compress.h"

#include <jansson.h>
#include <omp.h>
#include <stdio.h>
#include <string.h>

#include "common/alloc.h"
#include "common/model.h"
#include "common/model_io.h"
#include "worker/compress/admm.h"
#include "worker/compress/purify.h"
#include "worker/nn/cpu.h"
#include "worker/nn/data.h"
#include "worker/nn/train.h"
#include "worker/cmd/wk_flags.h"

void openblas_set_num_threads(int n);

struct wk_compress_opts {
    const char *spec, *model, *data, *out, *report, *method;
    const char *checkpoint, *phase, *prev_report;
    long threads, limit_train, limit_test, quiet, resume;
};

#define WK_OFF(f) offsetof(struct wk_compress_opts, f)

static const struct wk_flag wk_compress_flags[] = {
    {"spec", WK_STR, WK_OFF(spec), 0, 0, "the job spec (JSON, docs/job-spec.md)"},
    {"model", WK_STR, WK_OFF(model), 0, 0, "pretrained .safetensors checkpoint"},
    {"data", WK_STR, WK_OFF(data), 0, 0, "dataset: idx:DIR, cifar:DIR or npy:DIR"},
    {"out", WK_STR, WK_OFF(out), 0, 0, "write the compressed checkpoint here"},
    {"report", WK_STR, WK_OFF(report), 0, 0, "write the JSON report here"},
    {"method", WK_STR, WK_OFF(method), 0, 0, "override the spec's method: admm or magnitude"},
    {"threads", WK_INT, WK_OFF(threads), 1, 1024, "worker threads (default: all cores)"},
    {"limit-train", WK_INT, WK_OFF(limit_train), 1, 1e9, "use only the first N training images"},
    {"limit-test", WK_INT, WK_OFF(limit_test), 1, 1e9, "use only the first N test images"},
    {"quiet", WK_BOOL, WK_OFF(quiet), 0, 1, "no progress lines"},
    {"checkpoint", WK_STR, WK_OFF(checkpoint), 0, 0,
     "write the whole ADMM state here after every epoch"},
    {"resume", WK_BOOL, WK_OFF(resume), 0, 1,
     "continue from --checkpoint when it exists (same flags: same result)"},
    {"phase", WK_STR, WK_OFF(phase), 0, 0,
     "all (default), admm (up to the hard projection) or retrain (the masked retraining)"},
    {"prev-report", WK_STR, WK_OFF(prev_report), 0, 0,
     "--phase retrain: the admm phase's report (dense accuracy and trace carry over)"},
};

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

static int wk_write_json(const char *path, json_t *j)
{
    char tmp[4096];
    int n = snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    if (n < 0 || (size_t)n >= sizeof(tmp))
        return -1;
    if (json_dump_file(j, tmp, JSON_INDENT(1) | JSON_REAL_PRECISION(7)) != 0)
        return -1;
    return rename(tmp, path);
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
    nn_dataset_norm_stats(train, mean, std);
    double acc = 0.0, loss = 0.0;
    err = nn_evaluate(small, test, mean, std, batch, &acc, &loss, ei);
    if (err) {
        dp_model_free(small);
        json_decref(stats);
        return err;
    }
    json_object_set_new(stats, "test_accuracy", json_real(acc));
    json_object_set_new(report, "purification", stats);
    dp_model_free(*m);
    *m = small;
    return DP_OK;
}

int wk_compress_main(int argc, char **argv)
{
    return wk_compress_run(argc, argv, NULL);
}

int wk_compress_run(int argc, char **argv, const struct wk_hooks *h)
{
    struct wk_compress_opts o;
    memset(&o, 0, sizeof(o));
    size_t n_flags = sizeof(wk_compress_flags) / sizeof(wk_compress_flags[0]);
    int rc = wk_flags_parse("compress", wk_compress_flags, n_flags, &o, argc, argv);
    if (rc > 0) {
        printf("usage: dnnpress-worker compress --spec FILE --model FILE.safetensors --data SPEC "
               "[options]\n\nRuns ADMM compression (or the magnitude baseline) and writes the "
               "compressed\ncheckpoint and a JSON report.\n\noptions:\n");
        wk_flags_help(stdout, wk_compress_flags, n_flags);
        return 0;
    }
    if (rc != 0)
        return 2;
    if (o.spec == NULL || o.model == NULL || o.data == NULL) {
        fprintf(stderr, "compress: --spec, --model and --data are required (see --help)\n");
        return 2;
    }
    enum admm_phase phase = ADMM_PHASE_ALL;
    if (o.phase != NULL) {
        if (strcmp(o.phase, "all") == 0) {
            phase = ADMM_PHASE_ALL;
        } else if (strcmp(o.phase, "admm") == 0) {
            phase = ADMM_PHASE_ADMM;
        } else if (strcmp(o.phase, "retrain") == 0) {
            phase = ADMM_PHASE_RETRAIN;
        } else {
            fprintf(stderr, "compress: --phase must be all, admm or retrain, not '%s'\n", o.phase);
            return 2;
        }
    }
    if (o.resume && o.checkpoint == NULL) {
        fprintf(stderr, "compress: --resume needs --checkpoint FILE\n");
        return 2;
    }
    if (o.prev_report != NULL && phase != ADMM_PHASE_RETRAIN) {
        fprintf(stderr, "compress: --prev-report goes with --phase retrain\n");
        return 2;
    }
    json_t *prev = NULL;
    if (o.prev_report != NULL) {
        json_error_t je;
        prev = json_load_file(o.prev_report, JSON_REJECT_DUPLICATES, &je);
        if (!json_is_object(prev)) {
            fprintf(stderr, "compress: --prev-report %s: not a JSON report (%s)\n", o.prev_report,
                    je.text);
            json_decref(prev);
            return 2;
        }
    }
    struct admm_spec *spec = dp_calloc(1, sizeof(*spec));
    struct dp_errinfo ei = {DP_OK, ""};
    struct nn_dataset train = {0}, test = {0};
    struct dp_model *m = NULL;
    json_t *report = NULL;
    int status = 1;
    enum dp_err err = spec != NULL ? admm_spec_load(o.spec, spec, &ei) : DP_ENOMEM;
    if (err) {
        fprintf(stderr, "compress: %s\n", dp_errinfo_msg(&ei, err));
        status = 2;
        goto out;
    }
    if (o.method != NULL) {
        if (strcmp(o.method, "admm") == 0) {
            spec->method = ADMM_METHOD_ADMM;
        } else if (strcmp(o.method, "magnitude") == 0) {
            spec->method = ADMM_METHOD_MAGNITUDE;
        } else {
            fprintf(stderr, "compress: --method must be admm or magnitude\n");
            status = 2;
            goto out;
        }
    }
    if (o.threads > 0) {
        omp_set_num_threads((int)o.threads);
        openblas_set_num_threads((int)o.threads);
    }
    nn_cpu_flush_denormals();
    err = nn_dataset_load(o.data, NN_SPLIT_TRAIN, &train, &ei);
    if (!err)
        err = nn_dataset_load(o.data, NN_SPLIT_TEST, &test, &ei);
    if (!err)
        err = dp_model_load(o.model, &m, NULL, &ei);
    if (err) {
        fprintf(stderr, "compress: %s\n", dp_errinfo_msg(&ei, err));
        goto out;
    }
    if (o.limit_train > 0)
        nn_dataset_limit(&train, (int)o.limit_train);
    if (o.limit_test > 0)
        nn_dataset_limit(&test, (int)o.limit_test);
    struct wk_compress_run run = {&o, h};
    struct admm_callbacks cb;
    memset(&cb, 0, sizeof(cb));
    cb.progress = wk_compress_progress;
    cb.ud = &run;
    cb.stop_fn = wk_compress_stop;
    cb.event = wk_compress_event;
    cb.checkpoint = o.checkpoint;
    cb.resume = (int)o.resume;
    cb.phase = phase;
    cb.prev_report = prev;
    err = admm_compress(m, &train, &test, spec, &cb, &report, &ei);
    if (err == DP_EINTERRUPTED) {
        fprintf(stderr, "compress: stopped: %s\n", dp_errinfo_msg(&ei, err));
        status = WK_EXIT_STOPPED;
        goto out;
    }
    if (err) {
        fprintf(stderr, "compress: %s\n", dp_errinfo_msg(&ei, err));
        goto out;
    }
    if (spec->purify && phase != ADMM_PHASE_ADMM) {
        err = wk_compress_purify(&m, &train, &test, spec->batch, report, &ei);
        if (err) {
            fprintf(stderr, "compress: purification: %s\n", dp_errinfo_msg(&ei, err));
            goto out;
        }
    }
    if (o.out != NULL) {
        err = dp_model_save(m, o.out, NULL, &ei);
        if (err) {
            fprintf(stderr, "compress: writing %s: %s\n", o.out, dp_errinfo_msg(&ei, err));
            goto out;
        }
    }
    if (o.report != NULL && wk_write_json(o.report, report) != 0) {
        fprintf(stderr, "compress: cannot write the report to %s\n", o.report);
        goto out;
    }
    json_t *tot = json_object_get(report, "totals");
    json_t *sum = json_pack(
        "{s:O, s:O, s:O, s:O, s:O, s:O, s:O, s:I}", "method", json_object_get(report, "method"),
        "dense_test_accuracy", json_object_get(report, "dense_test_accuracy"), "test_accuracy",
        json_object_get(report, "final_test_accuracy"), "rate", json_object_get(tot, "rate"),
        "storage_rate", json_object_get(tot, "storage_rate"), "epochs",
        json_object_get(report, "epochs"), "wall_seconds", json_object_get(report, "wall_seconds"),
        "peak_rss_bytes", (json_int_t)wk_peak_rss());
    if (sum != NULL)
        json_dumpf(sum, stdout, JSON_COMPACT | JSON_REAL_PRECISION(7));
    json_decref(sum);
    fputc('\n', stdout);
    status = 0;
out:
    json_decref(prev);
    json_decref(report);
    dp_model_free(m);
    nn_dataset_free(&train);
    nn_dataset_free(&test);
    dp_free(spec);
    return status;
}
