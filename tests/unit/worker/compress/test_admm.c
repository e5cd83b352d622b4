/*
 * The ADMM engine end to end on a small network and synthetic data: the
 * constraints hold exactly afterwards, pruned weights stay zero through
 * retraining, quantized weights sit on their levels, the report adds up,
 * and the magnitude baseline runs on the same budget.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "common/model.h"
#include "tests/unit/test_util.h"
#include "tests/unit/worker/compress/admm_fixture.h"
#include "worker/compress/admm.h"
#include "worker/nn/arch.h"
#include "worker/nn/train.h"

Test(admm, irregular_pruning_holds_exactly_and_reports, .timeout = 240)
{
    struct admm_fixture f;
    admm_fixture_init(&f);
    json_t *r = admm_run_spec(&f, "{\"admm\":{\"iters\":3,\"epochs_per_iter\":1},"
                                  "\"retrain\":{\"epochs\":2},\"layers\":["
                                  "{\"match\":\"conv*\",\"prune\":{\"scheme\":\"irregular\","
                                  "\"rate\":4}},{\"match\":\"fc1\",\"prune\":{\"scheme\":"
                                  "\"irregular\",\"rate\":16}}]}");
    /* conv1 72 weights / 4 = 18; conv2 1152 / 4 = 288; fc1 18432 / 16 = 1152; fc2 dense. */
    cr_assert_eq(admm_nnz(f.m, "conv1.weight"), 18u);
    cr_assert_eq(admm_nnz(f.m, "conv2.weight"), 288u);
    cr_assert_eq(admm_nnz(f.m, "fc1.weight"), 1152u);
    cr_assert_eq(admm_nnz(f.m, "fc2.weight"), 128u);
    cr_assert_eq(json_integer_value(json_object_get(r, "version")), 1);
    json_t *layers = json_object_get(r, "layers");
    cr_assert_eq(json_array_size(layers), 3u);
    json_t *tot = json_object_get(r, "totals");
    cr_assert_float_eq(json_real_value(json_object_get(tot, "nonzeros")), 18 + 288 + 1152, 0.5);
    cr_assert_eq(json_array_size(json_object_get(r, "trace")), 3u);
    double acc = json_real_value(json_object_get(r, "final_test_accuracy"));
    cr_assert_gt(acc, 0.5, "accuracy after 16x on fc1: %.3f", acc);
    cr_assert_eq(json_integer_value(json_object_get(r, "epochs")), 5);
    /* The IR records what was done, for checkpoints and the exporter. */
    int fc1 = dp_model_layer_find(f.m, "fc1"), fc2 = dp_model_layer_find(f.m, "fc2");
    cr_assert_str_eq(f.m->layers[fc1].comp.scheme, "irregular");
    cr_assert_float_eq(f.m->layers[fc1].comp.target_rate, 16.0f, 1e-6f);
    cr_assert_str_eq(f.m->layers[fc2].comp.scheme, "");
    json_decref(r);
    admm_fixture_free(&f);
    DP_ASSERT_NO_LEAKS();
}

Test(admm, structured_and_quantized, .timeout = 240)
{
    struct admm_fixture f;
    admm_fixture_init(&f);
    json_t *r = admm_run_spec(&f, "{\"admm\":{\"iters\":2,\"epochs_per_iter\":1},"
                                  "\"retrain\":{\"epochs\":1},\"layers\":["
                                  "{\"match\":\"conv2\",\"prune\":{\"scheme\":\"filter\",\"rate\":"
                                  "4}},{\"match\":\"fc1\",\"prune\":{\"scheme\":\"irregular\","
                                  "\"rate\":8},\"quant\":{\"scheme\":\"kbit\",\"bits\":3}}]}");
    /* conv2: 16 filters / 4 = 4 kept, the other 12 entirely zero. */
    const struct dp_param *w = dp_model_param_find(f.m, "conv2.weight");
    int kept = 0;
    for (int o = 0; o < 16; o++) {
        int any = 0;
        for (int j = 0; j < 72; j++)
            any |= f.m->data[w->offset + (size_t)o * 72 + (size_t)j] != 0.0f;
        kept += any;
    }
    cr_assert_eq(kept, 4);
    /* fc1: at most 1/8 non-zero, and every non-zero on one of 3-bit's 6 levels. */
    const struct dp_param *q = dp_model_param_find(f.m, "fc1.weight");
    float levels[8];
    int n_levels = 0;
    size_t nnz = 0;
    for (size_t i = 0; i < q->numel; i++) {
        float v = f.m->data[q->offset + i];
        if (v == 0.0f)
            continue;
        nnz++;
        int seen = 0;
        for (int k = 0; k < n_levels; k++)
            seen |= levels[k] == v;
        if (!seen) {
            cr_assert_lt(n_levels, 6, "more than 6 distinct non-zero levels");
            levels[n_levels++] = v;
        }
    }
    cr_assert_leq(nnz, 2304u);
    json_t *l1 = json_array_get(json_object_get(r, "layers"), 1);
    cr_assert_eq(json_integer_value(json_object_get(l1, "bits")), 3);
    int fc1 = dp_model_layer_find(f.m, "fc1");
    cr_assert_str_eq(f.m->layers[fc1].comp.scheme, "irregular+kbit");
    cr_assert_eq(f.m->layers[fc1].comp.bits, 3);
    json_decref(r);
    admm_fixture_free(&f);
    DP_ASSERT_NO_LEAKS();
}

Test(admm, magnitude_baseline_on_the_same_budget, .timeout = 240)
{
    struct admm_fixture f;
    admm_fixture_init(&f);
    json_t *r = admm_run_spec(&f, "{\"method\":\"magnitude\",\"magnitude\":{\"steps\":2},"
                                  "\"admm\":{\"iters\":1,\"epochs_per_iter\":2},"
                                  "\"retrain\":{\"epochs\":1},\"layers\":["
                                  "{\"match\":\"fc1\",\"prune\":{\"scheme\":\"irregular\","
                                  "\"rate\":16}}]}");
    cr_assert_eq(admm_nnz(f.m, "fc1.weight"), 1152u);
    cr_assert_str_eq(json_string_value(json_object_get(r, "method")), "magnitude");
    cr_assert_eq(json_integer_value(json_object_get(r, "epochs")), 3);
    json_decref(r);
    admm_fixture_free(&f);
    DP_ASSERT_NO_LEAKS();
}

Test(admm, a_rule_that_fits_no_layer_is_an_error)
{
    struct admm_fixture f;
    memset(&f, 0, sizeof(f));
    f.m = NULL;
    struct dp_errinfo ei = {0};
    cr_assert_eq(nn_arch_build("lenet5", 1, 28, 28, 10, &f.m, &ei), DP_OK);
    cr_assert_eq(nn_dataset_synthetic(&f.train, 64, 1, 28, 28, 10, 1), DP_OK);
    struct dp_spec spec;
    const char *t = "{\"layers\":[{\"match\":\"nothing*\",\"prune\":{\"scheme\":\"irregular\","
                    "\"rate\":2}}]}";
    cr_assert_eq(dp_spec_parse(t, strlen(t), &spec, &ei), DP_OK);
    json_t *report = NULL;
    cr_assert_eq(admm_compress(f.m, &f.train, &f.train, &spec, NULL, &report, &ei), DP_EINVAL);
    cr_assert(strstr(ei.msg, "matches") != NULL, "%s", ei.msg);
    const char *p = "{\"layers\":[{\"match\":\"conv*\",\"prune\":{\"scheme\":\"pattern\"}}]}";
    cr_assert_eq(dp_spec_parse(p, strlen(p), &spec, &ei), DP_OK);
    cr_assert_eq(admm_compress(f.m, &f.train, &f.train, &spec, NULL, &report, &ei), DP_EINVAL);
    cr_assert(strstr(ei.msg, "3x3") != NULL, "%s", ei.msg);
    admm_fixture_free(&f);
    DP_ASSERT_NO_LEAKS();
}
