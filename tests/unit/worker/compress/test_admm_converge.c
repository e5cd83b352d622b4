/*
 * What an ADMM run decides and on what: every decision on the held-out
 * validation split (the test split cannot change the result), the loop
 * hardening once it has converged and giving the epochs left to the
 * retraining, the epoch budget both methods obey, the per-iteration
 * measures in the events, automatic rates chosen again at every stage,
 * distillation from the dense model, and checkpoints of an older format
 * refused by name.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "common/alloc.h"
#include "tests/unit/test_util.h"
#include "tests/unit/worker/compress/admm_fixture.h"
#include "worker/compress/admm.h"
#include "worker/nn/train.h"
#include "worker/nn/train_state.h"

/* What the event hook saw. */
struct admm_seen {
    int iterations, retrain_epochs, rates;
    int complete;          /* every admm_iteration event had every measure */
    double rate_target[4]; /* target_rate of the "rates" events, in order */
};

static void admm_seen_event(void *ud, const char *type, json_t *data)
{
    struct admm_seen *s = ud;
    if (strcmp(type, "retrain_epoch") == 0)
        s->retrain_epochs++;
    if (strcmp(type, "rates") == 0 && s->rates < 4)
        s->rate_target[s->rates++] = json_real_value(json_object_get(data, "target_rate"));
    if (strcmp(type, "admm_iteration") != 0 || json_object_get(data, "iter") == NULL)
        return;
    s->iterations++;
    static const char *const keys[] = {"val_accuracy", "val_accuracy_projected", "lr", "converged"};
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
        s->complete &= json_object_get(data, keys[i]) != NULL;
    s->complete &= json_real_value(json_object_get(data, "lr")) > 0.0;
    json_t *ls = json_object_get(data, "layers");
    s->complete &= json_array_size(ls) > 0;
    static const char *const lkeys[] = {"rho", "residual", "dual_residual", "support_changes",
                                        "support_change"};
    for (size_t k = 0; k < json_array_size(ls); k++) {
        for (size_t i = 0; i < sizeof(lkeys) / sizeof(lkeys[0]); i++)
            s->complete &= json_object_get(json_array_get(ls, k), lkeys[i]) != NULL;
    }
}

static json_t *admm_run_seen(struct admm_fixture *f, const char *text, struct admm_seen *seen)
{
    struct dp_spec spec;
    admm_fixture_spec(text, &spec);
    struct admm_callbacks cb;
    memset(&cb, 0, sizeof(cb));
    memset(seen, 0, sizeof(*seen));
    seen->complete = 1;
    cb.ud = seen;
    cb.event = admm_seen_event;
    struct dp_errinfo ei = {0};
    json_t *report = NULL;
    cr_assert_eq(admm_compress(f->m, &f->train, &f->test, &spec, &cb, &report, &ei), DP_OK, "%s",
                 ei.msg);
    return report;
}

static json_int_t admm_int(const json_t *o, const char *key)
{
    const json_t *v = json_object_get(o, key);
    cr_assert(json_is_integer(v), "no integer '%s'", key);
    return json_integer_value(v);
}

Test(admm_converge, the_test_split_takes_no_decision, .timeout = 300)
{
    struct admm_fixture f;
    admm_fixture_init(&f);
    /* A test split whose labels are all wrong: the better the model, the
     * lower its accuracy there. A run that accepted progressive stages on
     * it would take the collapse of fc1 to a single weight (18432x, the
     * last stage) for an improvement. */
    for (int i = 0; i < f.test.n; i++)
        f.test.labels[i] = (f.test.labels[i] + 1) % 4;
    struct admm_seen seen;
    json_t *r =
        admm_run_seen(&f,
                      "{\"admm\":{\"iters\":1,\"epochs_per_iter\":1},\"retrain\":{\"epochs\":1},"
                      "\"progressive\":{\"stages\":3,\"tolerance\":0.15},\"layers\":["
                      "{\"match\":\"fc1\",\"prune\":{\"scheme\":\"irregular\",\"rate\":18432}}]}",
                      &seen);
    json_t *stages = json_object_get(r, "stages");
    const size_t ns = json_array_size(stages);
    cr_assert_geq(ns, 2u);
    json_t *last = json_array_get(stages, ns - 1);
    cr_assert(json_is_false(json_object_get(last, "accepted")),
              "the collapsed last stage was accepted (test %.3f, val %.3f)",
              json_real_value(json_object_get(last, "test_accuracy")),
              json_real_value(json_object_get(last, "val_accuracy")));
    cr_assert_lt(admm_int(r, "kept_stage"), (json_int_t)ns);
    cr_assert_gt(admm_nnz(f.m, "fc1.weight"), 1u);
    /* The split: 10 % of the 768 training images, both accuracies reported. */
    json_t *v = json_object_get(r, "validation");
    cr_assert_eq(admm_int(v, "images"), 77);
    cr_assert_eq(admm_int(v, "train_images"), 691);
    cr_assert(json_is_number(json_object_get(r, "dense_val_accuracy")));
    cr_assert(json_is_number(json_object_get(r, "final_val_accuracy")));
    cr_assert(json_is_number(json_object_get(r, "final_test_accuracy")));
    json_decref(r);
    admm_fixture_free(&f);
    DP_ASSERT_NO_LEAKS();
}

Test(admm_converge, a_converged_stage_hardens_and_retrains_with_the_rest, .timeout = 300)
{
    struct admm_fixture f;
    admm_fixture_init(&f);
    float *pre = dp_malloc(f.m->n_floats * sizeof(float));
    cr_assert_not_null(pre);
    memcpy(pre, f.m->data, f.m->n_floats * sizeof(float));
    /* A budget of 9 epochs: 8 iterations of 1 epoch fit beside 1 of
     * retraining. A residual target every layer meets at once stops the
     * loop after the first iteration; the 7 epochs left retrain. */
    struct admm_seen seen;
    json_t *r = admm_run_seen(
        &f,
        "{\"budget\":{\"epochs\":9},\"admm\":{\"epochs_per_iter\":1,\"target_residual\":0.99,"
        "\"support_change\":1},\"retrain\":{\"epochs\":1},\"layers\":["
        "{\"match\":\"fc1\",\"prune\":{\"scheme\":\"irregular\",\"rate\":4}}]}",
        &seen);
    cr_assert_eq(json_array_size(json_object_get(r, "trace")), 1u);
    cr_assert(
        json_is_true(json_object_get(json_array_get(json_object_get(r, "trace"), 0), "converged")));
    cr_assert_eq(seen.iterations, 1);
    cr_assert_eq(seen.retrain_epochs, 8, "retraining ran %d epochs, not 1 + the 7 left",
                 seen.retrain_epochs);
    cr_assert_eq(admm_int(r, "epochs"), 9);
    cr_assert_eq(admm_int(r, "budget_epochs"), 9);
    cr_assert(seen.complete, "an iteration event lacked a measure");
    cr_assert_eq(admm_nnz(f.m, "fc1.weight"), 18432u / 4);
    json_decref(r);

    /* Without a residual target the loop runs every iteration the budget
     * holds, and the report says so. */
    memcpy(f.m->data, pre, f.m->n_floats * sizeof(float));
    r = admm_run_seen(&f,
                      "{\"budget\":{\"epochs\":9},\"admm\":{\"epochs_per_iter\":1},"
                      "\"retrain\":{\"epochs\":1},\"layers\":["
                      "{\"match\":\"fc1\",\"prune\":{\"scheme\":\"irregular\",\"rate\":4}}]}",
                      &seen);
    cr_assert_eq(seen.iterations, 8);
    cr_assert_eq(seen.retrain_epochs, 1);
    cr_assert_eq(admm_int(r, "epochs"), 9);
    json_t *tr = json_object_get(r, "trace");
    cr_assert(json_is_false(json_object_get(json_array_get(tr, 7), "converged")));
    json_decref(r);

    /* The baseline spends the same budget. */
    memcpy(f.m->data, pre, f.m->n_floats * sizeof(float));
    r = admm_run_seen(&f,
                      "{\"method\":\"magnitude\",\"budget\":{\"epochs\":9},"
                      "\"admm\":{\"epochs_per_iter\":1},\"layers\":["
                      "{\"match\":\"fc1\",\"prune\":{\"scheme\":\"irregular\",\"rate\":4}}]}",
                      &seen);
    cr_assert_eq(admm_int(r, "epochs"), 9);
    cr_assert_eq(admm_int(r, "budget_epochs"), 9);
    json_decref(r);
    dp_free(pre);
    admm_fixture_free(&f);
    DP_ASSERT_NO_LEAKS();
}

Test(admm_converge, automatic_rates_are_chosen_again_at_every_stage, .timeout = 300)
{
    struct admm_fixture f;
    admm_fixture_init(&f);
    float *pre = dp_malloc(f.m->n_floats * sizeof(float));
    cr_assert_not_null(pre);
    memcpy(pre, f.m->data, f.m->n_floats * sizeof(float));
    struct admm_seen seen;
    json_t *r =
        admm_run_seen(&f,
                      "{\"admm\":{\"iters\":1,\"epochs_per_iter\":1},\"retrain\":{\"epochs\":1},"
                      "\"progressive\":{\"stages\":2,\"tolerance\":1},"
                      "\"auto\":{\"rate\":16,\"search_iters\":2000,\"eval_images\":64},\"layers\":["
                      "{\"match\":\"*\",\"prune\":{\"scheme\":\"irregular\"}}]}",
                      &seen);
    cr_assert_eq(seen.rates, 2, "%d allocations for 2 stages", seen.rates);
    cr_assert_float_eq(seen.rate_target[0], 4.0, 1e-9);
    cr_assert_float_eq(seen.rate_target[1], 16.0, 1e-9);
    json_t *au = json_object_get(r, "auto");
    cr_assert_eq(admm_int(au, "stage"), 2);
    cr_assert_eq(admm_int(au, "sample_images"), 64, "the sensitivity sample is validation images");
    const json_t *tot = json_object_get(r, "totals");
    cr_assert_geq(json_real_value(json_object_get(tot, "rate")), 16.0 * 0.99);
    json_decref(r);

    /* The other allocation: the rates one global magnitude threshold gives. */
    memcpy(f.m->data, pre, f.m->n_floats * sizeof(float));
    r = admm_run_seen(&f,
                      "{\"admm\":{\"iters\":1,\"epochs_per_iter\":1},\"retrain\":{\"epochs\":1},"
                      "\"auto\":{\"rate\":16,\"allocation\":\"global\"},\"layers\":["
                      "{\"match\":\"*\",\"prune\":{\"scheme\":\"irregular\"}}]}",
                      &seen);
    au = json_object_get(r, "auto");
    cr_assert_str_eq(json_string_value(json_object_get(au, "allocation")), "global");
    tot = json_object_get(r, "totals");
    const double rate = json_real_value(json_object_get(tot, "rate"));
    cr_assert(rate >= 16.0 * 0.99 && rate <= 16.0 * 1.01, "global allocation reached %.2fx", rate);
    json_decref(r);
    dp_free(pre);
    admm_fixture_free(&f);
    DP_ASSERT_NO_LEAKS();
}

Test(admm_converge, a_checkpoint_of_the_old_format_is_refused_by_name)
{
    struct admm_fixture f;
    admm_fixture_init(&f);
    char dir[256], ck[300];
    dp_test_tmpdir_make(dir, sizeof(dir), "admm-oldstate");
    snprintf(ck, sizeof(ck), "%s/state.safetensors", dir);
    /* A version 1 state: no validation split, no step lengths. */
    json_t *meta = json_pack("{s:s}", "admm_state", "{\"version\":1,\"step\":0,\"epoch\":1}");
    const char *const names[1] = {"w"};
    const float *const blocks[1] = {f.m->data};
    struct dp_errinfo ei = {0};
    cr_assert_eq(nn_state_write_blocks(ck, names, blocks, 1, f.m->n_floats, meta, &ei), DP_OK, "%s",
                 ei.msg);
    json_decref(meta);
    struct dp_spec spec;
    admm_fixture_spec("{\"layers\":[{\"match\":\"fc1\",\"prune\":{\"scheme\":\"irregular\","
                      "\"rate\":4}}]}",
                      &spec);
    struct admm_callbacks cb;
    memset(&cb, 0, sizeof(cb));
    cb.checkpoint = ck;
    cb.resume = 1;
    json_t *r = NULL;
    cr_assert_eq(admm_compress(f.m, &f.train, &f.test, &spec, &cb, &r, &ei), DP_EFORMAT);
    cr_assert_null(r);
    cr_assert(strstr(ei.msg, "version 1") != NULL && strstr(ei.msg, "delete the file") != NULL,
              "%s", ei.msg);
    dp_test_tmpdir_remove(dir);
    admm_fixture_free(&f);
    DP_ASSERT_NO_LEAKS();
}

Test(admm_converge, distillation_from_the_dense_model_steers_the_training, .timeout = 300)
{
    struct admm_fixture f;
    admm_fixture_init(&f);
    float *pre = dp_malloc(f.m->n_floats * sizeof(float));
    cr_assert_not_null(pre);
    memcpy(pre, f.m->data, f.m->n_floats * sizeof(float));
    static const char *const base =
        "{\"admm\":{\"iters\":1,\"epochs_per_iter\":1},\"retrain\":{\"epochs\":1},%s"
        "\"layers\":[{\"match\":\"fc1\",\"prune\":{\"scheme\":\"irregular\",\"rate\":8}}]}";
    char text[512];
    snprintf(text, sizeof(text), base, "");
    struct admm_seen seen;
    json_t *r = admm_run_seen(&f, text, &seen);
    cr_assert_null(json_object_get(r, "distill"));
    json_decref(r);
    float *plain = dp_malloc(f.m->n_floats * sizeof(float));
    cr_assert_not_null(plain);
    memcpy(plain, f.m->data, f.m->n_floats * sizeof(float));

    memcpy(f.m->data, pre, f.m->n_floats * sizeof(float));
    snprintf(text, sizeof(text), base, "\"distill\":{\"temperature\":4,\"weight\":0.7},");
    r = admm_run_seen(&f, text, &seen);
    json_t *kd = json_object_get(r, "distill");
    cr_assert(json_is_true(json_object_get(kd, "applied")));
    cr_assert_float_eq(json_real_value(json_object_get(kd, "weight")), 0.7, 1e-12);
    cr_assert(memcmp(plain, f.m->data, f.m->n_floats * sizeof(float)) != 0,
              "distillation left the training unchanged");
    cr_assert_eq(admm_nnz(f.m, "fc1.weight"), 18432u / 8);
    json_decref(r);
    dp_free(plain);
    dp_free(pre);
    admm_fixture_free(&f);
    DP_ASSERT_NO_LEAKS();
}

/* The validation accuracy of every retraining epoch, in order. */
struct admm_val_log {
    int n;
    double acc[16];
};

static void admm_val_event(void *ud, const char *type, json_t *data)
{
    struct admm_val_log *l = ud;
    if (strcmp(type, "retrain_epoch") == 0 && l->n < 16)
        l->acc[l->n++] = json_real_value(json_object_get(data, "val_accuracy"));
}

Test(admm_converge, retraining_stops_early_on_its_best_validation_epoch, .timeout = 300)
{
    struct admm_fixture f;
    admm_fixture_init(&f);
    /* A retraining rate (0.3) high enough that validation accuracy does not
     * simply climb: the run must end on its best epoch, not its last. */
    struct dp_spec spec;
    admm_fixture_spec("{\"admm\":{\"iters\":1,\"epochs_per_iter\":1},"
                      "\"retrain\":{\"epochs\":6,\"lr\":0.3,\"keep_best\":true},\"layers\":["
                      "{\"match\":\"fc1\",\"prune\":{\"scheme\":\"irregular\",\"rate\":8}}]}",
                      &spec);
    struct admm_val_log log = {0, {0}};
    struct admm_callbacks cb;
    memset(&cb, 0, sizeof(cb));
    cb.ud = &log;
    cb.event = admm_val_event;
    struct dp_errinfo ei = {0};
    json_t *r = NULL;
    cr_assert_eq(admm_compress(f.m, &f.train, &f.test, &spec, &cb, &r, &ei), DP_OK, "%s", ei.msg);
    cr_assert_eq(log.n, 6);
    int best = 0;
    for (int i = 1; i < log.n; i++)
        best = log.acc[i] > log.acc[best] ? i : best;
    cr_assert_lt(log.acc[log.n - 1], log.acc[best],
                 "the last epoch was among the best (%.4f %.4f %.4f %.4f %.4f %.4f): the test "
                 "proves nothing",
                 log.acc[0], log.acc[1], log.acc[2], log.acc[3], log.acc[4], log.acc[5]);
    const double fin = json_real_value(json_object_get(r, "final_val_accuracy"));
    cr_assert_float_eq(fin, log.acc[best], 1e-9, "ended at val %.4f, the best epoch (%d) had %.4f",
                       fin, best + 1, log.acc[best]);
    cr_assert_float_eq(json_real_value(json_object_get(
                           json_array_get(json_object_get(r, "stages"), 0), "val_accuracy")),
                       log.acc[best], 1e-9);
    cr_assert_eq(admm_nnz(f.m, "fc1.weight"), 18432u / 8, "the best epoch is masked too");
    json_decref(r);
    admm_fixture_free(&f);
    DP_ASSERT_NO_LEAKS();
}

Test(admm_converge, the_model_is_normalised_with_the_whole_training_set, .timeout = 300)
{
    /* Training on 90 % of the set must not change the normalisation: infer,
     * export and purification's check use the whole set's statistics, and
     * must find the accuracy the report states. */
    struct admm_fixture f;
    admm_fixture_init(&f);
    json_t *r = admm_run_spec(
        &f, "{\"validation\":{\"fraction\":0.5},\"admm\":{\"iters\":1,\"epochs_per_iter\":1},"
            "\"retrain\":{\"epochs\":1},\"layers\":["
            "{\"match\":\"fc1\",\"prune\":{\"scheme\":\"irregular\",\"rate\":8}}]}");
    float mean[NN_DATASET_MAX_C], std[NN_DATASET_MAX_C];
    nn_dataset_norm_stats(&f.train, mean, std);
    double acc = 0.0, loss = 0.0;
    struct dp_errinfo ei = {0};
    cr_assert_eq(nn_evaluate(f.m, &f.test, mean, std, 32, &acc, &loss, &ei), DP_OK, "%s", ei.msg);
    const double rl = json_real_value(json_object_get(r, "final_test_loss"));
    cr_assert_float_eq(loss, rl, 1e-9 * (1.0 + rl),
                       "the report's test loss is %.9f, the whole set's normalisation gives %.9f",
                       rl, loss);
    cr_assert_float_eq(acc, json_real_value(json_object_get(r, "final_test_accuracy")), 1e-12);
    json_decref(r);
    admm_fixture_free(&f);
    DP_ASSERT_NO_LEAKS();
}
