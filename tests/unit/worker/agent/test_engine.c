/*
 * wk_engine_bind: each task type's engine options, exactly, from the
 * task's JSON (no command line in between), and errors that name the
 * parameter.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "common/alloc.h"
#include "tests/unit/test_util.h"
#include "worker/agent/wk_engine.h"

#define SPEC                                                                                       \
    "{\"admm\": {\"iters\": 2}, \"layers\": [{\"match\": \"fc1\", \"prune\": {\"scheme\": "        \
    "\"irregular\", \"rate\": 20}}]}"

/* A report file for retrain and export to read; removed by the caller. */
static void write_report(char *path, size_t cap)
{
    snprintf(path, cap, "/tmp/dp-test-engine-%d.json", (int)getpid());
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs("{\"dense_test_accuracy\": 0.9}", f);
    fclose(f);
}

static json_t *params_of(const char *text)
{
    json_t *p = json_loads(text, 0, NULL);
    cr_assert_not_null(p, "%s", text);
    return p;
}

Test(wk_engine, train_options_from_the_task)
{
    struct wk_task_files f = {.arch = "lenet5",
                              .data = "idx:/d",
                              .out_model = "T/out.safetensors",
                              .checkpoint = "T/state.safetensors"};
    struct wk_run_opts o = {2, 4096, 1000, NULL};
    json_t *params = params_of("{\"pretrain\": {\"epochs\": 3, \"lr\": 0.05, \"batch\": 128, "
                               "\"augment\": true, \"nesterov\": false, \"optim\": \"adam\"}, "
                               "\"seed\": 7}");
    struct wk_engine_job j;
    struct dp_errinfo ei = {DP_OK, ""};
    cr_assert_eq(wk_engine_bind(&j, DP_TASK_TRAIN, params, &f, &o, &ei), DP_OK, "%s", ei.msg);
    const struct wk_train_opts *t = &j.train;
    cr_assert_str_eq(j.command, "train");
    cr_assert_str_eq(t->model, "lenet5");
    cr_assert_str_eq(t->data, "idx:/d");
    cr_assert_eq(t->seed, 7);
    cr_assert_eq(t->epochs, 3);
    cr_assert_float_eq(t->lr, 0.05, 1e-15);
    cr_assert_eq(t->batch, 128);
    cr_assert_eq(t->augment, 1);
    cr_assert_eq(t->nesterov, 0);
    cr_assert_str_eq(t->optim, "adam");
    cr_assert_str_eq(t->out, "T/out.safetensors");
    cr_assert_str_eq(t->checkpoint, "T/state.safetensors");
    cr_assert_eq(t->resume, 0);
    cr_assert_eq(t->threads, 2);
    cr_assert_eq(t->limit_train, 4096);
    cr_assert_eq(t->limit_test, 1000);
    cr_assert_eq(t->quiet, 1);
    /* What the job did not set keeps train's flag-table defaults. */
    cr_assert_str_eq(t->sched, "cosine");
    cr_assert_float_eq(t->momentum, 0.9, 1e-15);
    cr_assert_float_eq(t->wd, 5e-4, 1e-15);
    cr_assert_eq(t->warmup, 0);
    wk_engine_job_free(&j);
    json_decref(params);

    /* pretrain's own seed wins over the job's; a model file over an arch. */
    f.model = "T/in.safetensors";
    f.resume = 1;
    params = params_of("{\"pretrain\": {\"seed\": 3}, \"seed\": 7}");
    cr_assert_eq(wk_engine_bind(&j, DP_TASK_TRAIN, params, &f, &o, &ei), DP_OK, "%s", ei.msg);
    cr_assert_eq(j.train.seed, 3);
    cr_assert_eq(j.train.epochs, 20);
    cr_assert_str_eq(j.train.model, "T/in.safetensors");
    cr_assert_eq(j.train.resume, 1);
    wk_engine_job_free(&j);
    json_decref(params);
    DP_ASSERT_NO_LEAKS();
}

Test(wk_engine, compress_retrain_and_export_options)
{
    char report[64];
    write_report(report, sizeof(report));
    struct wk_task_files f = {
        .model = "T/in.safetensors",
        .data = "idx:/d",
        .prev_report = report,
        .out_model = "T/out.safetensors",
        .out_report = "T/report.json",
        .out_onnx = "T/model.onnx",
        .checkpoint = "T/state.safetensors",
        .resume = 1,
    };
    struct wk_run_opts o = {2, 4096, 1000, NULL};
    json_t *params = params_of("{\"spec\": " SPEC "}");
    static const enum dp_task_type types[] = {DP_TASK_COMPRESS, DP_TASK_RETRAIN};
    for (size_t i = 0; i < 2; i++) {
        struct wk_engine_job j;
        struct dp_errinfo ei = {DP_OK, ""};
        cr_assert_eq(wk_engine_bind(&j, types[i], params, &f, &o, &ei), DP_OK, "%s", ei.msg);
        const struct wk_compress_opts *c = &j.compress;
        cr_assert_str_eq(j.command, "compress");
        cr_assert_eq(c->phase, i == 0 ? ADMM_PHASE_ADMM : ADMM_PHASE_RETRAIN);
        cr_assert_not_null(c->spec);
        cr_assert_eq(c->spec->admm_iters, 2);
        cr_assert_eq(c->spec->n_rules, 1);
        cr_assert_str_eq(c->model, "T/in.safetensors");
        cr_assert_str_eq(c->data, "idx:/d");
        cr_assert_str_eq(c->out, "T/out.safetensors");
        cr_assert_str_eq(c->report, "T/report.json");
        cr_assert_str_eq(c->checkpoint, "T/state.safetensors");
        cr_assert_eq(c->resume, 1);
        cr_assert_eq(c->threads, 2);
        cr_assert_eq(c->limit_train, 4096);
        cr_assert_eq(c->limit_test, 1000);
        cr_assert_eq(c->quiet, 1);
        /* Only retrain carries the admm phase's report over. */
        if (i == 0)
            cr_assert_null(c->prev_report);
        else
            cr_assert_float_eq(
                json_real_value(json_object_get(c->prev_report, "dense_test_accuracy")), 0.9,
                1e-12);
        wk_engine_job_free(&j);
    }
    json_decref(params);

    params = params_of("{\"export\": {\"format\": \"onnx\", \"qdq\": true}}");
    struct wk_engine_job j;
    struct dp_errinfo ei = {DP_OK, ""};
    cr_assert_eq(wk_engine_bind(&j, DP_TASK_EXPORT, params, &f, &o, &ei), DP_OK, "%s", ei.msg);
    cr_assert_str_eq(j.command, "export");
    cr_assert_str_eq(j.export.model, "T/in.safetensors");
    cr_assert_str_eq(j.export.out, "T/model.onnx");
    cr_assert_eq(j.export.qdq, 1);
    cr_assert_not_null(j.export.report);
    cr_assert_eq(j.export.opset, 0);
    wk_engine_job_free(&j);
    json_decref(params);
    unlink(report);
    DP_ASSERT_NO_LEAKS();
}

Test(wk_engine, errors_name_the_parameter)
{
    struct wk_task_files f = {.arch = "lenet5",
                              .data = "idx:/d",
                              .out_model = "o",
                              .checkpoint = "c",
                              .model = "m",
                              .out_onnx = "x"};
    struct wk_run_opts o = {0, 0, 0, NULL};
    static const struct {
        enum dp_task_type type;
        const char *params, *needle;
    } cases[] = {
        {DP_TASK_TRAIN, "{\"pretrain\": {\"epochz\": 3}}", "params.pretrain.epochz: not a known"},
        {DP_TASK_TRAIN, "{\"pretrain\": {\"epochs\": \"3\"}}",
         "params.pretrain.epochs: must be an integer"},
        {DP_TASK_TRAIN, "{\"pretrain\": {\"lr\": true}}", "params.pretrain.lr: must be a number"},
        {DP_TASK_TRAIN, "{\"pretrain\": [1]}", "params.pretrain: must be an object"},
        /* The flag table's bounds hold for a job as for a command line. */
        {DP_TASK_TRAIN, "{\"pretrain\": {\"epochs\": 0}}",
         "params.pretrain.epochs: must be an integer in [1, 100000], got 0"},
        /* Only the fields a job may set: not where files go. */
        {DP_TASK_TRAIN, "{\"pretrain\": {\"out\": \"/etc/x\"}}", "params.pretrain.out: not a"},
        /* The command's own usage checks run at bind time. */
        {DP_TASK_TRAIN, "{\"pretrain\": {\"optim\": \"rmsprop\"}}", "--optim must be sgd or adam"},
        {DP_TASK_TRAIN, "{\"seed\": -1}", "params.seed: must be an integer in [0, "},
        {DP_TASK_EXPORT, "{\"export\": {\"format\": \"tflite\"}}", "params.export.format"},
        {DP_TASK_EXPORT, "{\"export\": {\"qdq\": 1}}", "params.export.qdq"},
        {DP_TASK_PROFILE, "{}", "params.profile: missing or not an object"},
        {DP_TASK_LATENCY, "{}", "params.latency: missing or not an object"},
        {DP_TASK_COMPRESS, "{}", "params.spec: missing or not an object"},
        {DP_TASK_COMPRESS, "{\"spec\": {\"admm\": {\"iterz\": 1}}}", "params.spec: "},
        {DP_TASK_RETRAIN, "{\"spec\": " SPEC "}", "internal: no local file for the previous"},
        {DP_TASK_TRAIN, "[]", "params: must be an object"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        json_t *params = params_of(cases[i].params);
        struct wk_engine_job j;
        struct dp_errinfo ei = {DP_OK, ""};
        cr_assert_eq(wk_engine_bind(&j, cases[i].type, params, &f, &o, &ei), DP_EINVAL,
                     "case %zu: %s", i, ei.msg);
        cr_assert(strstr(ei.msg, cases[i].needle) != NULL, "case %zu: %s", i, ei.msg);
        cr_assert_null(j.spec);
        cr_assert_null(j.prev_report);
        wk_engine_job_free(&j);
        json_decref(params);
    }
    DP_ASSERT_NO_LEAKS();
}

/* The outputs a task uploads are common/task_type.h's (test_task_type.c). */
Test(wk_engine, capabilities_come_from_one_table)
{
    cr_assert(wk_engine_needs_data(DP_TASK_COMPRESS));
    cr_assert_not(wk_engine_needs_data(DP_TASK_EXPORT));
    cr_assert(wk_engine_supports(DP_TASK_COMPILE));
    cr_assert_not(wk_engine_needs_data(DP_TASK_COMPILE));
    cr_assert(wk_engine_supports(DP_TASK_PROFILE));
    cr_assert_not(wk_engine_needs_data(DP_TASK_PROFILE));
    char list[128];
    wk_engine_list(list, sizeof(list));
    cr_assert_str_eq(list, "train, compress, retrain, export, compile, profile, latency");
}

/* compile: target from params.compile, the worker's threads, the bundle in
 * the task directory; a bad target or tune_s is refused naming the field. */
Test(wk_engine, compile_options_from_the_task)
{
    struct wk_task_files f = {.model = "T/in.safetensors",
                              .out_code = "T/code.tar",
                              .out_compile_report = "T/compile-report.json",
                              .work_dir = "T"};
    struct wk_run_opts o = {3, 0, 0, NULL};
    json_t *params = params_of("{\"compile\": {\"target\": \"portable\", \"tune_s\": 0}}");
    struct wk_engine_job j;
    struct dp_errinfo ei = {DP_OK, ""};
    cr_assert_eq(wk_engine_bind(&j, DP_TASK_COMPILE, params, &f, &o, &ei), DP_OK, "%s", ei.msg);
    cr_assert_str_eq(j.command, "compile");
    cr_assert_str_eq(j.compile.model, "T/in.safetensors");
    cr_assert_str_eq(j.compile.out, "T/bundle");
    cr_assert_str_eq(j.compile.target, "portable");
    cr_assert_eq(j.compile.threads, 3);
    cr_assert_eq(j.compile.tune, 0);
    cr_assert_str_eq(j.code_out, "T/code.tar");
    cr_assert_str_eq(j.creport_out, "T/compile-report.json");
    wk_engine_job_free(&j);
    json_decref(params);

    /* A tuning budget reaches the command (compile --tune). */
    params = params_of("{\"compile\": {\"tune_s\": 30}}");
    cr_assert_eq(wk_engine_bind(&j, DP_TASK_COMPILE, params, &f, &o, &ei), DP_OK, "%s", ei.msg);
    cr_assert_eq(j.compile.tune, 30);
    wk_engine_job_free(&j);
    json_decref(params);

    /* No compile object: the command's defaults; no worker threads: every core. */
    o.threads = 0;
    cr_assert_eq(wk_engine_bind(&j, DP_TASK_COMPILE, NULL, &f, &o, &ei), DP_OK, "%s", ei.msg);
    cr_assert_str_eq(j.compile.target, "native");
    cr_assert_geq(j.compile.threads, 1);
    wk_engine_job_free(&j);

    static const struct {
        const char *params, *field;
    } bad[] = {
        {"{\"compile\": {\"target\": \"cuda\"}}", "--target"},
        {"{\"compile\": {\"target\": \"opencl\", \"tune_s\": 5}}", "--tune"},
        {"{\"compile\": {\"target\": 3}}", "params.compile.target"},
        {"{\"compile\": {\"tune_s\": -1}}", "params.compile.tune_s"},
        {"{\"compile\": {\"tune_s\": 3601}}", "params.compile.tune_s"},
        {"{\"compile\": {\"tune_s\": 2.5}}", "params.compile.tune_s"},
        {"{\"compile\": []}", "params.compile"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        params = params_of(bad[i].params);
        cr_assert_eq(wk_engine_bind(&j, DP_TASK_COMPILE, params, &f, &o, &ei), DP_EINVAL, "%s",
                     bad[i].params);
        cr_assert(strstr(ei.msg, bad[i].field) != NULL, "%s: %s", bad[i].params, ei.msg);
        wk_engine_job_free(&j);
        json_decref(params);
    }
    DP_ASSERT_NO_LEAKS();
}

Test(wk_engine, allocation_failures_are_clean)
{
    char report[64];
    write_report(report, sizeof(report));
    struct wk_task_files f = {.model = "m",
                              .data = "idx:/d",
                              .prev_report = report,
                              .out_model = "o",
                              .out_report = "r",
                              .checkpoint = "c",
                              .resume = 1};
    struct wk_run_opts o = {2, 100, 100, NULL};
    json_t *params = params_of("{\"spec\": " SPEC "}");
    long n;
    int n_fail = 0;
    for (n = 0; n < 1000; n++) {
        struct wk_engine_job j;
        struct dp_errinfo ei = {DP_OK, ""};
        dp_alloc_fail_after(n);
        enum dp_err err = wk_engine_bind(&j, DP_TASK_RETRAIN, params, &f, &o, &ei);
        dp_alloc_fail_reset();
        if (err == DP_OK) {
            wk_engine_job_free(&j);
            break;
        }
        cr_assert_eq(err, DP_ENOMEM, "fail after %ld: %s", n, ei.msg);
        cr_assert(strstr(ei.msg, "out of memory") != NULL, "%s", ei.msg);
        cr_assert_null(j.spec);
        n_fail++;
    }
    cr_assert_lt(n, 1000);
    cr_assert_gt(n_fail, 0, "the binder allocates; the loop must have failed some");
    json_decref(params);
    unlink(report);
    DP_ASSERT_NO_LEAKS();
}
