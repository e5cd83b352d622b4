/*
 * How an ADMM run survives and is steered: a run stopped anywhere and
 * resumed from its whole-state checkpoint ends with the very bytes of an
 * uninterrupted one; the compress and retrain phases run apart equal one
 * run; progressive stages stop at the last stage within the tolerance;
 * automatic and global rates meet their targets; pattern + connectivity
 * holds both constraints.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "common/alloc.h"
#include "common/safetensors.h"
#include "tests/unit/test_util.h"
#include "tests/unit/worker/compress/admm_fixture.h"
#include "worker/compress/admm.h"

struct admm_stopper {
    int polls, stop_at; /* stop_fn answers 1 from poll number stop_at on */
    int checkpoints;
};

static int admm_test_stop(void *ud)
{
    struct admm_stopper *s = ud;
    return ++s->polls >= s->stop_at;
}

static void admm_test_event(void *ud, const char *type, json_t *data)
{
    struct admm_stopper *s = ud;
    (void)data;
    s->checkpoints += strcmp(type, "checkpoint") == 0;
}

static float *admm_copy(const struct dp_model *m)
{
    float *c = dp_malloc(m->n_floats * sizeof(float));
    cr_assert_not_null(c);
    memcpy(c, m->data, m->n_floats * sizeof(float));
    return c;
}

static const char *const admm_resume_spec =
    "{\"admm\":{\"iters\":2,\"epochs_per_iter\":2},\"retrain\":{\"epochs\":2},"
    "\"progressive\":{\"stages\":2,\"tolerance\":1.0},\"layers\":["
    "{\"match\":\"conv2\",\"prune\":{\"scheme\":\"pattern\",\"library_size\":4}},"
    "{\"match\":\"fc1\",\"prune\":{\"scheme\":\"irregular\",\"rate\":8},"
    "\"quant\":{\"scheme\":\"kbit\",\"bits\":4}}]}";

/* The same with a loop that converges in its first iteration of each
 * stage and retrainings that end on their best epoch: the steps it skips,
 * the epochs it moves to the retraining and the best epoch so far must
 * survive an interruption too. */
static const char *const admm_resume_converging_spec =
    "{\"budget\":{\"epochs\":12},\"admm\":{\"epochs_per_iter\":1,\"target_residual\":0.99,"
    "\"support_change\":1},\"retrain\":{\"epochs\":1,\"keep_best\":true},"
    "\"progressive\":{\"stages\":2,\"tolerance\":1.0},\"layers\":["
    "{\"match\":\"fc1\",\"prune\":{\"scheme\":\"irregular\",\"rate\":8}}]}";

static void admm_resume_check(const char *spec_text)
{
    struct admm_fixture f;
    admm_fixture_init(&f);
    float *pre = admm_copy(f.m);
    struct dp_spec spec;
    admm_fixture_spec(spec_text, &spec);
    struct dp_errinfo ei = {0};
    char dir[256], ck[300];
    dp_test_tmpdir_make(dir, sizeof(dir), "admm-resume");
    snprintf(ck, sizeof(ck), "%s/state.safetensors", dir);

    /* The reference: one uninterrupted run, no checkpoint. */
    json_t *ref_report = NULL;
    cr_assert_eq(admm_compress(f.m, &f.train, &f.test, &spec, NULL, &ref_report, &ei), DP_OK, "%s",
                 ei.msg);
    float *ref = admm_copy(f.m);

    /* Stopped at several points (inside W-steps, between steps, in the
     * retraining), each time resumed from the pretrained model and the
     * checkpoint, as the worker does after a crash. 22 steps per epoch. */
    const int stops[] = {30, 49, 100, 150, 200};
    struct admm_stopper st = {0, stops[0], 0};
    struct admm_callbacks cb;
    memset(&cb, 0, sizeof(cb));
    cb.ud = &st;
    cb.stop_fn = admm_test_stop;
    cb.event = admm_test_event;
    cb.checkpoint = ck;
    cb.resume = 1;
    json_t *report = NULL;
    enum dp_err err = DP_EINTERRUPTED;
    int interruptions = 0;
    for (int k = 0; err == DP_EINTERRUPTED; k++) {
        memcpy(f.m->data, pre, f.m->n_floats * sizeof(float));
        st.polls = 0;
        st.stop_at = k < 5 ? stops[k] - (k > 0 ? stops[k - 1] : 0) : 1 << 30;
        err = admm_compress(f.m, &f.train, &f.test, &spec, &cb, &report, &ei);
        interruptions += err == DP_EINTERRUPTED;
    }
    cr_assert_eq(err, DP_OK, "%s", ei.msg);
    cr_assert_geq(interruptions, 4, "the run ended before the planned stops");
    cr_assert_gt(st.checkpoints, 8);
    cr_assert(memcmp(ref, f.m->data, f.m->n_floats * sizeof(float)) == 0,
              "resumed weights differ from the uninterrupted run's");
    cr_assert_float_eq(json_real_value(json_object_get(report, "final_test_accuracy")),
                       json_real_value(json_object_get(ref_report, "final_test_accuracy")), 0.0);
    cr_assert_eq(json_integer_value(json_object_get(report, "epochs")),
                 json_integer_value(json_object_get(ref_report, "epochs")));
    cr_assert(json_equal(json_object_get(report, "trace"), json_object_get(ref_report, "trace")));

    /* A checkpoint of another spec is refused, with the reason. */
    struct dp_spec other = spec;
    other.retrain_epochs = 3;
    memcpy(f.m->data, pre, f.m->n_floats * sizeof(float));
    json_t *none = NULL;
    cr_assert_eq(admm_compress(f.m, &f.train, &f.test, &other, &cb, &none, &ei), DP_EFORMAT);
    cr_assert(strstr(ei.msg, "different spec") != NULL, "%s", ei.msg);

    json_decref(report);
    json_decref(ref_report);
    dp_free(ref);
    dp_free(pre);
    dp_test_tmpdir_remove(dir);
    admm_fixture_free(&f);
    DP_ASSERT_NO_LEAKS();
}

Test(admm_run, resumed_run_equals_the_uninterrupted_one, .timeout = 600)
{
    admm_resume_check(admm_resume_spec);
}

Test(admm_run, resumed_converging_run_equals_the_uninterrupted_one, .timeout = 600)
{
    admm_resume_check(admm_resume_converging_spec);
}

/* The optimizer's step count in the whole-state checkpoints written after
 * 2 epochs (between the two W-steps) and after 3 (inside the second). */
struct admm_moment_probe {
    long t_between, t_inside;
};

static void admm_probe_event(void *ud, const char *type, json_t *data)
{
    struct admm_moment_probe *p = ud;
    if (strcmp(type, "checkpoint") != 0)
        return;
    const json_int_t epoch = json_integer_value(json_object_get(data, "epoch"));
    if (epoch != 2 && epoch != 3)
        return;
    struct dp_st_file *f = NULL;
    struct dp_errinfo ei = {0};
    const char *path = json_string_value(json_object_get(data, "path"));
    cr_assert_eq(dp_st_read(path, (size_t)1 << 30, &f, &ei), DP_OK, "%s", ei.msg);
    json_t *st = json_loads(dp_st_meta_get(f, "admm_state"), 0, NULL);
    cr_assert_not_null(st);
    const int between = json_integer_value(json_object_get(st, "epoch")) == 0;
    const long t = json_is_true(json_object_get(st, "have_opt"))
                       ? (long)json_integer_value(json_object_get(st, "opt_t"))
                       : -1;
    if (epoch == 2 && between)
        p->t_between = t;
    else if (epoch == 3)
        p->t_inside = t;
    json_decref(st);
    dp_st_free(f);
}

Test(admm_run, momentum_carries_across_the_w_steps, .timeout = 300)
{
    /* A W-step is one subproblem of a sequence whose targets move a
     * little: restarting SGD's momentum at each one threw its state away
     * every epochs_per_iter epochs. 22 steps per epoch: 691 training
     * images of batch 32, the other 77 of the 768 held out for validation. */
    struct admm_fixture f;
    admm_fixture_init(&f);
    struct dp_spec spec;
    admm_fixture_spec("{\"admm\":{\"iters\":2,\"epochs_per_iter\":2},\"retrain\":{\"epochs\":1},"
                      "\"layers\":[{\"match\":\"fc1\",\"prune\":{\"scheme\":\"irregular\","
                      "\"rate\":4}}]}",
                      &spec);
    char dir[256], ck[300];
    dp_test_tmpdir_make(dir, sizeof(dir), "admm-momentum");
    snprintf(ck, sizeof(ck), "%s/state.safetensors", dir);
    struct admm_moment_probe probe = {-2, -2};
    struct admm_callbacks cb;
    memset(&cb, 0, sizeof(cb));
    cb.ud = &probe;
    cb.event = admm_probe_event;
    cb.checkpoint = ck;
    struct dp_errinfo ei = {0};
    json_t *report = NULL;
    cr_assert_eq(admm_compress(f.m, &f.train, &f.test, &spec, &cb, &report, &ei), DP_OK, "%s",
                 ei.msg);
    cr_assert_eq(probe.t_between, 44, "the state between the W-steps holds %ld optimizer steps",
                 probe.t_between);
    cr_assert_eq(probe.t_inside, 66, "the second W-step's optimizer is at step %ld, not 44 + 22",
                 probe.t_inside);
    json_decref(report);
    dp_test_tmpdir_remove(dir);
    admm_fixture_free(&f);
    DP_ASSERT_NO_LEAKS();
}

Test(admm_run, compress_then_retrain_phases_equal_one_run, .timeout = 300)
{
    struct admm_fixture f;
    admm_fixture_init(&f);
    float *pre = admm_copy(f.m);
    struct dp_spec spec;
    admm_fixture_spec(
        "{\"admm\":{\"iters\":2,\"epochs_per_iter\":1},\"retrain\":{\"epochs\":2},"
        "\"layers\":[{\"match\":\"*\",\"prune\":{\"scheme\":\"irregular\",\"rate\":6},"
        "\"quant\":{\"scheme\":\"ternary\"}}]}",
        &spec);
    struct dp_errinfo ei = {0};
    json_t *all = NULL, *r1 = NULL, *r2 = NULL;
    cr_assert_eq(admm_compress(f.m, &f.train, &f.test, &spec, NULL, &all, &ei), DP_OK);
    float *ref = admm_copy(f.m);
    memcpy(f.m->data, pre, f.m->n_floats * sizeof(float));
    struct admm_callbacks cb;
    memset(&cb, 0, sizeof(cb));
    cb.phase = ADMM_PHASE_ADMM;
    cr_assert_eq(admm_compress(f.m, &f.train, &f.test, &spec, &cb, &r1, &ei), DP_OK, "%s", ei.msg);
    cr_assert_eq(json_integer_value(json_object_get(r1, "epochs")), 2);
    cb.phase = ADMM_PHASE_RETRAIN;
    cb.prev_report = r1;
    cr_assert_eq(admm_compress(f.m, &f.train, &f.test, &spec, &cb, &r2, &ei), DP_OK, "%s", ei.msg);
    cr_assert(memcmp(ref, f.m->data, f.m->n_floats * sizeof(float)) == 0,
              "two phases differ from one run");
    cr_assert_eq(json_integer_value(json_object_get(r2, "epochs")), 4);
    cr_assert_eq(json_array_size(json_object_get(r2, "trace")), 2u);
    cr_assert_float_eq(json_real_value(json_object_get(r2, "dense_test_accuracy")),
                       json_real_value(json_object_get(all, "dense_test_accuracy")), 0.0);
    json_decref(all);
    json_decref(r1);
    json_decref(r2);
    dp_free(ref);
    dp_free(pre);
    admm_fixture_free(&f);
    DP_ASSERT_NO_LEAKS();
}

Test(admm_run, a_converged_compress_phase_leaves_its_epochs_to_the_retrain_phase, .timeout = 300)
{
    /* A budget of 6: 5 iterations of 1 epoch beside 1 of retraining; the
     * loop converges after the first, so the compress phase spends 1 epoch
     * and hands 4 to the retrain task, which must then equal one run. */
    struct admm_fixture f;
    admm_fixture_init(&f);
    float *pre = admm_copy(f.m);
    struct dp_spec spec;
    admm_fixture_spec("{\"budget\":{\"epochs\":6},\"admm\":{\"epochs_per_iter\":1,"
                      "\"target_residual\":0.99,\"support_change\":1},\"retrain\":{\"epochs\":1},"
                      "\"layers\":[{\"match\":\"fc1\",\"prune\":{\"scheme\":\"irregular\","
                      "\"rate\":6}}]}",
                      &spec);
    struct dp_errinfo ei = {0};
    json_t *all = NULL, *r1 = NULL, *r2 = NULL;
    cr_assert_eq(admm_compress(f.m, &f.train, &f.test, &spec, NULL, &all, &ei), DP_OK);
    float *ref = admm_copy(f.m);
    memcpy(f.m->data, pre, f.m->n_floats * sizeof(float));
    struct admm_callbacks cb;
    memset(&cb, 0, sizeof(cb));
    cb.phase = ADMM_PHASE_ADMM;
    cr_assert_eq(admm_compress(f.m, &f.train, &f.test, &spec, &cb, &r1, &ei), DP_OK, "%s", ei.msg);
    cr_assert_eq(json_integer_value(json_object_get(r1, "epochs")), 1);
    cr_assert_eq(json_integer_value(json_object_get(r1, "spare_epochs")), 4);
    cb.phase = ADMM_PHASE_RETRAIN;
    cb.prev_report = r1;
    cr_assert_eq(admm_compress(f.m, &f.train, &f.test, &spec, &cb, &r2, &ei), DP_OK, "%s", ei.msg);
    cr_assert_eq(json_integer_value(json_object_get(r2, "epochs")), 6);
    cr_assert_eq(json_integer_value(json_object_get(all, "epochs")), 6);
    cr_assert(memcmp(ref, f.m->data, f.m->n_floats * sizeof(float)) == 0,
              "two phases differ from one run");
    json_decref(all);
    json_decref(r1);
    json_decref(r2);
    dp_free(ref);
    dp_free(pre);
    admm_fixture_free(&f);
    DP_ASSERT_NO_LEAKS();
}

Test(admm_run, progressive_stops_at_the_last_stage_within_tolerance, .timeout = 300)
{
    struct admm_fixture f;
    admm_fixture_init(&f);
    /* fc1 to a single weight in 3 stages (26x, 698x, 18432x): the last
     * stage cannot stay within 15 points of the dense accuracy. */
    json_t *r = admm_run_spec(
        &f, "{\"admm\":{\"iters\":1,\"epochs_per_iter\":1},\"retrain\":{\"epochs\":1},"
            "\"progressive\":{\"stages\":3,\"tolerance\":0.15},\"layers\":["
            "{\"match\":\"fc1\",\"prune\":{\"scheme\":\"irregular\",\"rate\":18432}}]}");
    json_t *stages = json_object_get(r, "stages");
    const size_t ns = json_array_size(stages);
    cr_assert_geq(ns, 2u);
    json_t *last = json_array_get(stages, ns - 1);
    cr_assert(json_is_false(json_object_get(last, "accepted")), "the last stage was accepted");
    const json_int_t kept = json_integer_value(json_object_get(r, "kept_stage"));
    cr_assert_eq(kept, (json_int_t)ns - 1, "kept %d of %zu", (int)kept, ns);
    const size_t expect[] = {709, 26, 1}; /* llround(18432 / 18432^(s/3)) */
    cr_assert_eq(admm_nnz(f.m, "fc1.weight"), expect[kept - 1]);
    double dense = json_real_value(json_object_get(r, "dense_test_accuracy"));
    double fin = json_real_value(json_object_get(r, "final_test_accuracy"));
    cr_assert_geq(fin, dense - 0.15 - 1e-9, "kept a stage outside the tolerance");
    json_decref(r);
    admm_fixture_free(&f);
    DP_ASSERT_NO_LEAKS();
}

static double admm_rate_of(const struct dp_model *m, const char *const *params, int n)
{
    double all = 0.0, nz = 0.0;
    for (int i = 0; i < n; i++) {
        all += (double)dp_model_param_find(m, params[i])->numel;
        nz += (double)admm_nnz(m, params[i]);
    }
    return all / nz;
}

Test(admm_run, automatic_rates_meet_the_global_target, .timeout = 300)
{
    struct admm_fixture f;
    admm_fixture_init(&f);
    json_t *r = admm_run_spec(
        &f, "{\"admm\":{\"iters\":1,\"epochs_per_iter\":1},\"retrain\":{\"epochs\":1},"
            "\"auto\":{\"rate\":10,\"search_iters\":3000,\"eval_images\":256},\"layers\":["
            "{\"match\":\"*\",\"prune\":{\"scheme\":\"irregular\"}}]}");
    const char *const ps[] = {"conv1.weight", "conv2.weight", "fc1.weight", "fc2.weight"};
    const double rate = admm_rate_of(f.m, ps, 4);
    cr_assert_geq(rate, 10.0 * 0.99, "achieved %.2fx, target 10x", rate);
    json_t *au = json_object_get(r, "auto");
    cr_assert_not_null(au);
    json_t *ls = json_object_get(au, "layers");
    cr_assert_eq(json_array_size(ls), 4u);
    /* The big fc1 (18432 weights) is the one to prune hardest; the 72
     * weights of conv1 barely count toward the target. */
    double r_conv1 = json_real_value(json_object_get(json_array_get(ls, 0), "rate"));
    double r_fc1 = json_real_value(json_object_get(json_array_get(ls, 2), "rate"));
    cr_assert_gt(r_fc1, r_conv1, "fc1 %.1fx, conv1 %.1fx", r_fc1, r_conv1);
    json_decref(r);
    admm_fixture_free(&f);
    DP_ASSERT_NO_LEAKS();
}

Test(admm_run, global_magnitude_allocation_keeps_the_total, .timeout = 300)
{
    struct admm_fixture f;
    admm_fixture_init(&f);
    json_t *r = admm_run_spec(
        &f, "{\"method\":\"magnitude\",\"magnitude\":{\"steps\":2,\"allocation\":\"global\"},"
            "\"admm\":{\"iters\":1,\"epochs_per_iter\":1},\"retrain\":{\"epochs\":1},"
            "\"layers\":[{\"match\":\"*\",\"prune\":{\"scheme\":\"irregular\",\"rate\":10}}]}");
    const char *const ps[] = {"conv1.weight", "conv2.weight", "fc1.weight", "fc2.weight"};
    size_t nz = 0, all = 0;
    for (int i = 0; i < 4; i++) {
        nz += admm_nnz(f.m, ps[i]);
        all += dp_model_param_find(f.m, ps[i])->numel;
    }
    /* 19784 weights / 10 = 1978 kept over all layers (1 more per layer at most from
     * rounding each layer's count). */
    cr_assert_geq(nz, (size_t)(all / 10) - 4);
    cr_assert_leq(nz, (size_t)(all / 10) + 4);
    /* One threshold: the layers end at different rates. */
    double r1 = (double)dp_model_param_find(f.m, "conv1.weight")->numel /
                (double)admm_nnz(f.m, "conv1.weight");
    double r3 =
        (double)dp_model_param_find(f.m, "fc1.weight")->numel / (double)admm_nnz(f.m, "fc1.weight");
    cr_assert(fabs(r1 - r3) > 0.5, "conv1 %.2fx and fc1 %.2fx: not a global allocation", r1, r3);
    json_decref(r);
    admm_fixture_free(&f);
    DP_ASSERT_NO_LEAKS();
}

Test(admm_run, pattern_and_connectivity_hold_together, .timeout = 300)
{
    struct admm_fixture f;
    admm_fixture_init(&f);
    json_t *r = admm_run_spec(
        &f, "{\"admm\":{\"iters\":2,\"epochs_per_iter\":1},\"retrain\":{\"epochs\":1},"
            "\"layers\":[{\"match\":\"conv2\",\"prune\":{\"scheme\":\"pattern\","
            "\"library_size\":6,\"connectivity\":4}}]}");
    const struct dp_param *w = dp_model_param_find(f.m, "conv2.weight");
    const struct admm_kernel_stats ks = admm_kernel_stats(f.m->data + w->offset, 16 * 8);
    cr_assert_leq(ks.max_taps, 4);
    cr_assert_leq(ks.distinct, 6, "%d patterns, more than the library's 6", ks.distinct);
    cr_assert_leq(ks.kept, 32u, "%zu kernels kept, at most 128 / 4", ks.kept);
    json_t *l = json_array_get(json_object_get(r, "layers"), 0);
    cr_assert_not_null(json_object_get(l, "pattern_histogram"));
    cr_assert_gt(json_real_value(json_object_get(json_object_get(l, "storage_bytes"), "fkw")), 0.0);
    json_decref(r);
    admm_fixture_free(&f);
    DP_ASSERT_NO_LEAKS();
}

/* A device on which the two small convolutions take nearly all the time
 * and the big fc1 almost none: ms(r) = dense * (0.2 + 0.8 / r) at r = 1,
 * 2, 4, ..., 64. */
static json_t *conv_bound_table(void)
{
    static const char *const names[] = {"conv1", "conv2", "fc1", "fc2"};
    static const double dense[] = {2.0, 3.0, 0.05, 0.01};
    json_t *ls = json_array();
    for (int k = 0; k < 4; k++) {
        json_t *rs = json_array(), *ms = json_array();
        for (double r = 1.0; r <= 64.0; r *= 2.0) {
            json_array_append_new(rs, json_real(r));
            json_array_append_new(ms, json_real(dense[k] * (0.2 + 0.8 / r)));
        }
        json_array_append_new(
            ls, json_pack("{s:s, s:o, s:o}", "name", names[k], "rates", rs, "ms", ms));
    }
    return json_pack("{s:s, s:o}", "device", "synthetic", "layers", ls);
}

static double auto_rate_of(const json_t *report, int k)
{
    return json_real_value(json_object_get(
        json_array_get(json_object_get(json_object_get(report, "auto"), "layers"), (size_t)k),
        "rate"));
}

Test(admm_run, latency_objective_prunes_where_the_device_spends_time, .timeout = 300)
{
    static const char fmt[] =
        "{\"admm\":{\"iters\":1,\"epochs_per_iter\":1},\"retrain\":{\"epochs\":1},"
        "\"auto\":{\"rate\":6,\"search_iters\":3000,\"eval_images\":256%s},\"layers\":["
        "{\"match\":\"*\",\"prune\":{\"scheme\":\"irregular\"}}]}";
    char text[512];
    struct admm_fixture f;
    struct dp_spec spec;
    struct dp_errinfo ei = {0};
    json_t *table = conv_bound_table(), *rp = NULL, *rl = NULL;
    cr_assert_not_null(table);

    admm_fixture_init(&f);
    snprintf(text, sizeof(text), fmt, "");
    rp = admm_run_spec(&f, text);
    admm_fixture_free(&f);

    admm_fixture_init(&f);
    snprintf(text, sizeof(text), fmt,
             ",\"objective\":\"latency\",\"device\":{\"name\":\"synthetic\"}");
    admm_fixture_spec(text, &spec);
    struct admm_callbacks cb;
    memset(&cb, 0, sizeof(cb));
    /* Without the device's table the run refuses at the allocation. */
    cr_assert_eq(admm_compress(f.m, &f.train, &f.test, &spec, &cb, &rl, &ei), DP_EINVAL);
    cr_assert(strstr(ei.msg, "latency table") != NULL, "%s", ei.msg);
    cr_assert_null(rl);
    cb.latency = table;
    cr_assert_eq(admm_compress(f.m, &f.train, &f.test, &spec, &cb, &rl, &ei), DP_OK, "%s", ei.msg);
    admm_fixture_free(&f);

    const json_t *au = json_object_get(rl, "auto");
    cr_assert_str_eq(json_string_value(json_object_get(au, "objective")), "latency");
    const double pred = json_real_value(json_object_get(au, "predicted_ms"));
    const double budget = json_real_value(json_object_get(au, "budget_ms"));
    cr_assert_leq(pred, budget * (1.0 + 1e-9), "predicted %.3f ms over the budget %.3f", pred,
                  budget);
    cr_assert_float_eq(json_real_value(json_object_get(au, "dense_ms")), 5.06, 1e-9);
    /* params spends the cut on fc1 (18432 of the weights); latency also
     * on the convolutions, which hold the time. */
    const double p_c1 = auto_rate_of(rp, 0), p_c2 = auto_rate_of(rp, 1),
                 p_fc1 = auto_rate_of(rp, 2);
    const double l_c1 = auto_rate_of(rl, 0), l_c2 = auto_rate_of(rl, 1),
                 l_fc1 = auto_rate_of(rl, 2);
    cr_log_info("params: conv1 %.1f conv2 %.1f fc1 %.1f; latency: conv1 %.1f conv2 %.1f fc1 %.1f",
                p_c1, p_c2, p_fc1, l_c1, l_c2, l_fc1);
    cr_assert_gt(l_c1 + l_c2, p_c1 + p_c2, "the convolutions are pruned harder for latency");
    /* ... while the weight target stands for both. */
    cr_assert_geq(json_real_value(json_object_get(au, "achieved_rate")), 6.0 * (1.0 - 1e-9));
    cr_assert_geq(json_real_value(json_object_get(json_object_get(rp, "auto"), "achieved_rate")),
                  6.0 * (1.0 - 1e-9));
    json_decref(rp);
    json_decref(rl);
    json_decref(table);
    DP_ASSERT_NO_LEAKS();
}
