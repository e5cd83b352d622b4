/*
 * wk_argv_build: each task type's engine command line, exactly, and errors
 * that name the parameter.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "common/alloc.h"
#include "tests/unit/test_util.h"
#include "worker/agent/wk_argv.h"

static void join(const struct wk_argv *a, char *out, size_t cap)
{
    out[0] = '\0';
    for (int i = 0; i < a->n; i++) {
        size_t n = strlen(out);
        snprintf(out + n, cap - n, "%s%s", i ? " " : "", a->v[i]);
    }
}

Test(wk_argv, each_task_type)
{
    struct wk_task_files f = {
        .model = "T/in.safetensors",
        .data = "idx:/d",
        .spec = "T/spec.json",
        .prev_report = "T/prev.json",
        .out_model = "T/out.safetensors",
        .out_report = "T/report.json",
        .out_onnx = "T/model.onnx",
        .checkpoint = "T/state.safetensors",
    };
    struct wk_run_opts o = {2, 4096, 1000};
    static const struct {
        const char *type, *params, *want;
        int arch, resume;
    } cases[] = {
        {"train",
         "{\"pretrain\": {\"epochs\": 3, \"lr\": 0.05, \"batch\": 128, \"augment\": true,"
         " \"nesterov\": false}, \"seed\": 7}",
         "train --model lenet5 --data idx:/d --seed 7 --epochs 3 --lr 0.050000000000000003 "
         "--batch 128 --augment --out T/out.safetensors --checkpoint T/state.safetensors "
         "--threads 2 --limit-train 4096 --limit-test 1000 --quiet",
         1, 0},
        {"train", "{\"pretrain\": {\"seed\": 3}, \"seed\": 7}",
         "train --model lenet5 --data idx:/d --seed 3 --out T/out.safetensors --checkpoint "
         "T/state.safetensors --resume --threads 2 --limit-train 4096 --limit-test 1000 --quiet",
         1, 1},
        {"compress", "{\"spec\": {}}",
         "compress --phase admm --spec T/spec.json --model T/in.safetensors --data idx:/d --out "
         "T/out.safetensors --report T/report.json --checkpoint T/state.safetensors --threads 2 "
         "--limit-train 4096 --limit-test 1000 --quiet",
         0, 0},
        {"retrain", "{\"spec\": {}}",
         "compress --phase retrain --spec T/spec.json --model T/in.safetensors --prev-report "
         "T/prev.json --data idx:/d --out T/out.safetensors --report T/report.json --checkpoint "
         "T/state.safetensors --resume --threads 2 --limit-train 4096 --limit-test 1000 --quiet",
         0, 1},
        {"export", "{\"export\": {\"format\": \"onnx\", \"qdq\": true}}",
         "export --model T/in.safetensors --out T/model.onnx --qdq --report T/prev.json", 0, 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        json_t *params = json_loads(cases[i].params, 0, NULL);
        cr_assert_not_null(params, "case %zu", i);
        struct wk_task_files fi = f;
        if (cases[i].arch) {
            fi.model = NULL;
            fi.arch = "lenet5";
        }
        fi.resume = cases[i].resume;
        struct wk_argv a;
        struct dp_errinfo ei = {DP_OK, ""};
        cr_assert_eq(wk_argv_build(cases[i].type, params, &fi, &o, &a, &ei), DP_OK, "case %zu: %s",
                     i, ei.msg);
        char got[2048];
        join(&a, got, sizeof(got));
        cr_assert_str_eq(got, cases[i].want, "case %zu", i);
        cr_assert_null(a.v[a.n]);
        wk_argv_free(&a);
        json_decref(params);
    }
    DP_ASSERT_NO_LEAKS();
}

Test(wk_argv, errors_name_the_parameter)
{
    struct wk_task_files f = {.arch = "lenet5",
                              .data = "idx:/d",
                              .out_model = "o",
                              .checkpoint = "c",
                              .model = "m",
                              .out_onnx = "x"};
    struct wk_run_opts o = {0, 0, 0};
    static const struct {
        const char *type, *params, *needle;
    } cases[] = {
        {"train", "{\"pretrain\": {\"epochz\": 3}}", "params.pretrain.epochz: not a known"},
        {"train", "{\"pretrain\": {\"epochs\": \"3\"}}",
         "params.pretrain.epochs: must be an integer"},
        {"train", "{\"pretrain\": {\"lr\": true}}", "params.pretrain.lr: must be a number"},
        {"train", "{\"pretrain\": [1]}", "params.pretrain: must be an object"},
        {"export", "{\"export\": {\"format\": \"tflite\"}}", "params.export.format"},
        {"export", "{\"export\": {\"qdq\": 1}}", "params.export.qdq"},
        {"profile", "{}", "type: 'profile'"},
        {"compress", "{}", "internal: no local file for --spec"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        json_t *params = json_loads(cases[i].params, 0, NULL);
        struct wk_argv a;
        struct dp_errinfo ei = {DP_OK, ""};
        cr_assert_eq(wk_argv_build(cases[i].type, params, &f, &o, &a, &ei), DP_EINVAL, "case %zu",
                     i);
        cr_assert(strstr(ei.msg, cases[i].needle) != NULL, "case %zu: %s", i, ei.msg);
        cr_assert_null(a.v);
        json_decref(params);
    }
    DP_ASSERT_NO_LEAKS();
}

Test(wk_argv, allocation_failures_are_clean)
{
    struct wk_task_files f = {.model = "m",
                              .data = "idx:/d",
                              .spec = "s",
                              .out_model = "o",
                              .out_report = "r",
                              .checkpoint = "c",
                              .resume = 1};
    struct wk_run_opts o = {2, 100, 100};
    json_t *params = json_loads("{\"spec\": {}}", 0, NULL);
    long n;
    int n_fail = 0;
    for (n = 0; n < 1000; n++) {
        struct wk_argv a;
        struct dp_errinfo ei = {DP_OK, ""};
        dp_alloc_fail_after(n);
        enum dp_err err = wk_argv_build("compress", params, &f, &o, &a, &ei);
        dp_alloc_fail_reset();
        if (err == DP_OK) {
            wk_argv_free(&a);
            break;
        }
        cr_assert_eq(err, DP_ENOMEM, "fail after %ld: %s", n, ei.msg);
        cr_assert(strstr(ei.msg, "out of memory") != NULL, "%s", ei.msg);
        cr_assert_null(a.v);
        n_fail++;
    }
    cr_assert_lt(n, 1000);
    cr_assert_gt(n_fail, 3, "the builder allocates; the loop must have failed some");
    json_decref(params);
    DP_ASSERT_NO_LEAKS();
}
