/*
 * The latency task's pieces that need no device (worker/agent/wk_latency.c):
 * bench lines at successive rates become a table's rows (only the layers a
 * rule prunes, fastest image per layer), and a task's params.latency is read
 * as the server stores it, each bad field named.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "common/lat_table.h"
#include "tests/unit/test_util.h"
#include "worker/agent/wk_latency.h"

static json_t *bench_line(double conv1, double relu, double fc)
{
    return json_pack("{s:[{s:s, s:f, s:f}, {s:s, s:f}, {s:s, s:f, s:f}]}", "layers", "name",
                     "conv1", "ms", 9.0, "min_ms", conv1, "name", "relu1", "ms", relu, "name",
                     "fc1", "ms", 9.0, "min_ms", fc);
}

Test(wk_latency, bench_lines_become_table_rows)
{
    json_t *layers = json_object(), *keep = json_pack("{s:b, s:b}", "conv1", 1, "fc1", 1);
    struct dp_errinfo ei = {DP_OK, ""};
    const double rates[] = {1, 4, 16};
    const double conv1[] = {2.0, 1.0, 0.5}, fc[] = {0.2, 0.1, 0.05};
    for (int k = 0; k < 3; k++) {
        json_t *b = bench_line(conv1[k], 0.01, fc[k]);
        cr_assert_eq(wk_latency_add_rate(layers, keep, rates[k], b, &ei), DP_OK, "%s", ei.msg);
        json_decref(b);
    }
    /* relu1 is not pruned by a rule: not in the table. */
    cr_assert_eq(json_object_size(layers), 2);
    cr_assert_null(json_object_get(layers, "relu1"));
    json_t *row = json_object_get(layers, "conv1");
    for (size_t k = 0; k < 3; k++) {
        cr_assert_float_eq(json_number_value(json_array_get(json_object_get(row, "rates"), k)),
                           rates[k], 1e-12);
        /* The fastest image (min_ms), not the mean (ms). */
        cr_assert_float_eq(json_number_value(json_array_get(json_object_get(row, "ms"), k)),
                           conv1[k], 1e-12);
    }
    /* The rows make a table common/lat_table.h accepts and reads back. */
    json_t *table = json_pack("{s:[O, O]}", "layers", json_object_get(layers, "conv1"),
                              json_object_get(layers, "fc1"));
    cr_assert_eq(dp_lat_table_check(table, &ei), DP_OK, "%s", ei.msg);
    double ms = 0;
    cr_assert_eq(dp_lat_table_ms(table, "fc1", 16, &ms, &ei), DP_OK);
    cr_assert_float_eq(ms, 0.05, 1e-12);
    json_decref(table);
    /* A kept layer without a time is an error naming it. */
    json_t *bad = json_pack("{s:[{s:s}]}", "layers", "name", "fc1");
    cr_assert_eq(wk_latency_add_rate(layers, keep, 64, bad, &ei), DP_EFORMAT);
    cr_assert(strstr(ei.msg, "fc1") != NULL, "%s", ei.msg);
    json_decref(bad);
    json_decref(layers);
    json_decref(keep);
    DP_ASSERT_NO_LEAKS();
}

Test(wk_latency, params_are_checked_field_by_field)
{
    struct wk_task_files f = {
        .model = "T/in.safetensors", .out_latency = "T/t.json", .work_dir = "T"};
    struct wk_run_opts o = {0, 0, 0, NULL};
#define SPEC                                                                                       \
    "\"spec\": {\"layers\": [{\"match\": \"*\", \"prune\": {\"scheme\": \"irregular\", \"rate\": " \
    "4}}]}"
#define LAT(x) "{" SPEC ", \"latency\": {\"arch\": \"lenet5\", \"scheme\": \"irregular\", " x "}}"
    static const struct {
        const char *params, *needle;
    } bad[] = {
        {LAT("\"rates\": [1, 4], \"runs\": 0, \"warmup\": 1, \"timeout_s\": 5"),
         "params.latency.runs"},
        {LAT("\"rates\": [1, 4], \"runs\": 3, \"warmup\": 1"), "params.latency.timeout_s"},
        {LAT("\"rates\": [1, 4, 2], \"runs\": 3, \"warmup\": 1, \"timeout_s\": 5"),
         "params.latency.rates[2]"},
        {LAT("\"rates\": [], \"runs\": 3, \"warmup\": 1, \"timeout_s\": 5"),
         "params.latency.rates"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        json_t *params = json_loads(bad[i].params, 0, NULL);
        cr_assert_not_null(params, "case %zu", i);
        struct wk_engine_job j;
        struct dp_errinfo ei = {DP_OK, ""};
        cr_assert_eq(wk_engine_bind(&j, DP_TASK_LATENCY, params, &f, &o, &ei), DP_EINVAL,
                     "case %zu: %s", i, ei.msg);
        cr_assert(strstr(ei.msg, bad[i].needle) != NULL, "case %zu: %s", i, ei.msg);
        wk_engine_job_free(&j);
        json_decref(params);
    }
    json_t *params = json_loads(
        LAT("\"rates\": [1, 2.5, 8], \"runs\": 3, \"warmup\": 1, \"timeout_s\": 5"), 0, NULL);
    struct wk_engine_job j;
    struct dp_errinfo ei = {DP_OK, ""};
    cr_assert_eq(wk_engine_bind(&j, DP_TASK_LATENCY, params, &f, &o, &ei), DP_OK, "%s", ei.msg);
    cr_assert_eq(j.lat_n_rates, 3);
    cr_assert_float_eq(j.lat_rates[1], 2.5, 1e-12);
    cr_assert_eq(j.prof_runs, 3);
    cr_assert_str_eq(j.lat_arch, "lenet5");
    cr_assert_str_eq(j.lat_model, "T/in.safetensors");
    cr_assert_not_null(j.spec);
    wk_engine_job_free(&j);
    json_decref(params);
    DP_ASSERT_NO_LEAKS();
}
