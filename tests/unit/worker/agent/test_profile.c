/*
 * The profile task's pieces that need no device (worker/agent/wk_profile.c):
 * a bench line becomes a side of the result with each layer's share of the
 * total, and a task's params are read as the server stores them, each bad
 * field named.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "tests/unit/test_util.h"
#include "worker/agent/wk_profile.h"

Test(wk_profile, layers_get_their_share_of_the_total)
{
    json_t *bench =
        json_pack("{s:{s:f, s:f}, s:f, s:[{s:s, s:s, s:f}, {s:s, s:s, s:f}, {s:s, s:s, s:f}]}",
                  "latency_ms", "p50", 0.5, "mean", 0.6, "max_rel_err", 1e-7, "layers", "name",
                  "conv1", "format", "fkw", "ms", 0.5, "name", "conv2", "format", "dense", "ms",
                  1.0, "name", "fc", "format", "dense", "ms", 0.5);
    json_t *side = wk_profile_side(bench);
    cr_assert_not_null(side);
    json_t *layers = json_object_get(side, "layers");
    cr_assert_eq(json_array_size(layers), 3);
    double want[] = {0.25, 0.5, 0.25};
    for (size_t i = 0; i < 3; i++)
        cr_assert_float_eq(json_real_value(json_object_get(json_array_get(layers, i), "share")),
                           want[i], 1e-12);
    cr_assert_str_eq(json_string_value(json_object_get(json_array_get(layers, 0), "format")),
                     "fkw");
    cr_assert_float_eq(json_real_value(json_object_get(json_object_get(side, "latency_ms"), "p50")),
                       0.5, 1e-12);
    json_decref(side);
    /* No layers (or all zero): shares are 0, not NaN. */
    json_t *none = json_pack("{s:[{s:s, s:f}]}", "layers", "name", "x", "ms", 0.0);
    side = wk_profile_side(none);
    cr_assert_float_eq(json_real_value(json_object_get(
                           json_array_get(json_object_get(side, "layers"), 0), "share")),
                       0.0, 1e-12);
    json_decref(side);
    json_decref(none);
    json_decref(bench);
    DP_ASSERT_NO_LEAKS();
}

Test(wk_profile, params_are_read_and_bad_ones_named)
{
    struct wk_task_files f;
    memset(&f, 0, sizeof(f));
    f.code_in = "/x/code.tar";
    f.dense_model = "/x/dense.safetensors";
    f.out_profile = "/x/profile.json";
    f.work_dir = "/x";
    f.device_id = "dev_1";
    struct wk_run_opts o = {1, 0, 0, "pi5"};
    struct wk_engine_job j;
    struct dp_errinfo ei = {0};
    json_t *p = json_pack("{s:{s:i, s:i, s:i, s:[i, i]}, s:{s:s}}", "profile", "runs", 7, "warmup",
                          2, "timeout_s", 30, "threads", 1, 4, "compile", "target", "portable");
    memset(&j, 0, sizeof(j));
    cr_assert_eq(wk_profile_bind(&j, p, &f, &o, &ei), DP_OK, "%s", ei.msg);
    cr_assert_eq(j.prof_runs, 7);
    cr_assert_eq(j.prof_n_threads, 2);
    cr_assert_eq(j.prof_threads[1], 4);
    cr_assert_str_eq(j.prof_target, "portable");
    cr_assert_str_eq(j.prof_device_name, "pi5");
    static const char *const bad[][2] = {{"runs", "params.profile.runs"},
                                         {"threads", "params.profile.threads"},
                                         {"timeout_s", "params.profile.timeout_s"}};
    for (size_t i = 0; i < 3; i++) {
        json_t *q = json_deep_copy(p);
        json_object_set_new(json_object_get(q, "profile"), bad[i][0], json_integer(0));
        memset(&j, 0, sizeof(j));
        cr_assert_eq(wk_profile_bind(&j, q, &f, &o, &ei), DP_EINVAL, "%s", bad[i][0]);
        cr_assert(strstr(ei.msg, bad[i][1]) != NULL, "%s", ei.msg);
        json_decref(q);
    }
    f.code_in = NULL;
    cr_assert_eq(wk_profile_bind(&j, p, &f, &o, &ei), DP_EINVAL);
    json_decref(p);
    DP_ASSERT_NO_LEAKS();
}
