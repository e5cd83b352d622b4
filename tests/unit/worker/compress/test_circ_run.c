/*
 * Circulant rules through admm_compress on the fixture network (two 3x3
 * convolutions, two linear layers, all made block-circulant): the run
 * converts the model in place and trains the circulant layers; the
 * service's two phases equal one run, from ADMM and from scratch; a run
 * interrupted before and after the conversion resumes, from the dense
 * input model and its checkpoint, to the uninterrupted run's bytes.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "common/alloc.h"
#include "common/model_io.h"
#include "tests/unit/test_util.h"
#include "tests/unit/worker/compress/admm_fixture.h"
#include "worker/compress/admm.h"

static const char *const circ_admm_spec =
    "{\"admm\":{\"iters\":2,\"epochs_per_iter\":1,\"rho\":0.5},\"retrain\":{\"epochs\":2},"
    "\"layers\":[{\"match\":\"*\",\"circulant\":{\"block\":4,\"spectrum_bits\":6}}]}";
static const char *const circ_scratch_spec =
    "{\"admm\":{\"iters\":2,\"epochs_per_iter\":1},\"retrain\":{\"epochs\":1},"
    "\"layers\":[{\"match\":\"fc*\",\"circulant\":{\"block\":4,\"from\":\"scratch\"}}]}";

/* A fresh copy of the pretrained dense model saved at path. */
static struct dp_model *circ_load(const char *path)
{
    struct dp_model *m = NULL;
    struct dp_errinfo ei = {0};
    cr_assert_eq(dp_model_load(path, &m, NULL, &ei), DP_OK, "%s", ei.msg);
    return m;
}

static void circ_phases_equal_one_run(const char *text, int admm_epochs, int all_epochs)
{
    struct admm_fixture f;
    admm_fixture_init(&f);
    char dir[256], dense[300];
    dp_test_tmpdir_make(dir, sizeof(dir), "circ-run");
    snprintf(dense, sizeof(dense), "%s/dense.safetensors", dir);
    struct dp_errinfo ei = {0};
    cr_assert_eq(dp_model_save(f.m, dense, NULL, &ei), DP_OK, "%s", ei.msg);
    struct dp_spec spec;
    admm_fixture_spec(text, &spec);
    json_t *all = NULL, *r1 = NULL, *r2 = NULL;
    cr_assert_eq(admm_compress(f.m, &f.train, &f.test, &spec, NULL, &all, &ei), DP_OK, "%s",
                 ei.msg);
    cr_assert_eq(f.m->layers[dp_model_layer_find(f.m, "fc1")].op, DP_OP_CIRC_LINEAR);
    json_t *circ = json_object_get(all, "circulant");
    cr_assert(json_is_true(json_object_get(circ, "converted")));
    cr_assert_eq(json_integer_value(json_object_get(circ, "epochs")), all_epochs);
    cr_assert_gt(json_real_value(json_object_get(all, "final_test_accuracy")), 0.4,
                 "the circulant model learned nothing");

    struct dp_model *m = circ_load(dense);
    struct admm_callbacks cb;
    memset(&cb, 0, sizeof(cb));
    cb.phase = ADMM_PHASE_ADMM;
    cr_assert_eq(admm_compress(m, &f.train, &f.test, &spec, &cb, &r1, &ei), DP_OK, "%s", ei.msg);
    cr_assert_eq(json_integer_value(json_object_get(r1, "epochs")), admm_epochs);
    cr_assert_eq(m->layers[dp_model_layer_find(m, "fc1")].op, DP_OP_CIRC_LINEAR,
                 "the compress phase hands on the converted model");
    /* As the service does: the retrain task loads the compress task's checkpoint. */
    char mid[300];
    snprintf(mid, sizeof(mid), "%s/mid.safetensors", dir);
    cr_assert_eq(dp_model_save(m, mid, NULL, &ei), DP_OK, "%s", ei.msg);
    dp_model_free(m);
    m = circ_load(mid);
    cb.phase = ADMM_PHASE_RETRAIN;
    cb.prev_report = r1;
    cr_assert_eq(admm_compress(m, &f.train, &f.test, &spec, &cb, &r2, &ei), DP_OK, "%s", ei.msg);
    cr_assert_eq(m->n_floats, f.m->n_floats);
    cr_assert(memcmp(m->data, f.m->data, m->n_floats * sizeof(float)) == 0,
              "two phases differ from one run");
    cr_assert_eq(json_integer_value(json_object_get(r2, "epochs")), all_epochs);

    /* The retrain phase refuses a dense model, by layer. */
    struct dp_model *d = circ_load(dense);
    json_t *none = NULL;
    cr_assert_eq(admm_compress(d, &f.train, &f.test, &spec, &cb, &none, &ei), DP_EINVAL);
    cr_assert(strstr(ei.msg, "is dense") != NULL, "%s", ei.msg);
    dp_model_free(d);

    json_decref(all);
    json_decref(r1);
    json_decref(r2);
    dp_model_free(m);
    dp_test_tmpdir_remove(dir);
    admm_fixture_free(&f);
}

Test(circ_run, admm_phases_equal_one_run, .timeout = 600)
{
    circ_phases_equal_one_run(circ_admm_spec, 2, 4);
    DP_ASSERT_NO_LEAKS();
}

Test(circ_run, scratch_phases_equal_one_run, .timeout = 600)
{
    /* Scratch: the compress phase only converts; the retraining takes the
     * whole budget of the ADMM path (2 iterations of 1 epoch + 1). */
    circ_phases_equal_one_run(circ_scratch_spec, 0, 3);
    DP_ASSERT_NO_LEAKS();
}

struct circ_stopper {
    int polls, stop_at;
};

static int circ_stop(void *ud)
{
    struct circ_stopper *s = ud;
    return ++s->polls >= s->stop_at;
}

Test(circ_run, resumed_across_the_conversion_equals_the_uninterrupted_run, .timeout = 600)
{
    struct admm_fixture f;
    admm_fixture_init(&f);
    char dir[256], dense[300], ck[300];
    dp_test_tmpdir_make(dir, sizeof(dir), "circ-resume");
    snprintf(dense, sizeof(dense), "%s/dense.safetensors", dir);
    snprintf(ck, sizeof(ck), "%s/state.safetensors", dir);
    struct dp_errinfo ei = {0};
    cr_assert_eq(dp_model_save(f.m, dense, NULL, &ei), DP_OK, "%s", ei.msg);
    struct dp_spec spec;
    admm_fixture_spec(circ_admm_spec, &spec);
    json_t *ref_report = NULL;
    cr_assert_eq(admm_compress(f.m, &f.train, &f.test, &spec, NULL, &ref_report, &ei), DP_OK, "%s",
                 ei.msg);
    /* Stops inside the first W-step, between the ADMM iterations, right
     * after the conversion and inside the retraining (22 steps per epoch);
     * every attempt starts again from the dense model and the checkpoint. */
    const int stops[] = {30, 49, 70, 100};
    struct circ_stopper st = {0, 0};
    struct admm_callbacks cb;
    memset(&cb, 0, sizeof(cb));
    cb.ud = &st;
    cb.stop_fn = circ_stop;
    cb.checkpoint = ck;
    cb.resume = 1;
    json_t *report = NULL;
    enum dp_err err = DP_EINTERRUPTED;
    int interruptions = 0;
    struct dp_model *m = NULL;
    for (int k = 0; err == DP_EINTERRUPTED; k++) {
        dp_model_free(m);
        m = circ_load(dense);
        st.polls = 0;
        st.stop_at = k < 4 ? stops[k] - (k > 0 ? stops[k - 1] : 0) : 1 << 30;
        err = admm_compress(m, &f.train, &f.test, &spec, &cb, &report, &ei);
        interruptions += err == DP_EINTERRUPTED;
    }
    cr_assert_eq(err, DP_OK, "%s", ei.msg);
    cr_assert_geq(interruptions, 3, "the run ended before the planned stops");
    cr_assert_eq(m->n_floats, f.m->n_floats);
    cr_assert(memcmp(m->data, f.m->data, m->n_floats * sizeof(float)) == 0,
              "resumed weights differ from the uninterrupted run's");
    cr_assert(json_equal(json_object_get(report, "trace"), json_object_get(ref_report, "trace")));
    json_decref(report);
    json_decref(ref_report);
    dp_model_free(m);
    dp_test_tmpdir_remove(dir);
    admm_fixture_free(&f);
    DP_ASSERT_NO_LEAKS();
}
