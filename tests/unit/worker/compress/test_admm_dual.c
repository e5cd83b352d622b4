/*
 * The ADMM iteration on a problem solved by hand: one linear layer under
 * a loss with a constant gradient g, so the W-step has the closed form
 * W = Z - U - g / rho. With the scaled dual U = Lambda / rho rescaled when
 * rho grows, the pruned weights of every W-step are exactly 0; without the
 * rescale they settle at (f - 1) g / rho for a growth factor f.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "common/alloc.h"
#include "common/model.h"
#include "tests/unit/test_util.h"
#include "tests/unit/worker/compress/admm_fixture.h"
#include "worker/compress/admm_int.h"

#define DUAL_ITERS 6
#define DUAL_G     1e-3f /* the loss's constant gradient */

Test(admm_dual, pruned_weights_reach_zero_while_rho_grows)
{
    struct dp_errinfo ei = {0};
    struct dp_model *m = dp_model_new(1, 3, 3);
    cr_assert_not_null(m);
    int x = dp_model_add_unary(m, "flat", DP_OP_FLATTEN, DP_MODEL_INPUT, &ei);
    x = dp_model_add_linear(m, "fc", x, 4, &ei);
    cr_assert_geq(x, 0, "%s", ei.msg);
    cr_assert_eq(dp_model_finalize(m, &ei), DP_OK, "%s", ei.msg);
    const struct dp_param *wp = &m->params[m->layers[x].first_param];
    float *w = m->data + wp->offset;
    const size_t n = wp->numel; /* 36; rate 4 keeps the 9 largest */
    for (size_t i = 0; i < n; i++)
        w[i] = i % 4 == 0 ? 1.0f + (float)i : 0.001f * (float)(i + 1);

    struct dp_spec spec;
    admm_fixture_spec("{\"admm\":{\"iters\":6,\"epochs_per_iter\":1,\"rho\":0.01,"
                      "\"rho_factor\":2,\"rho_max\":100},"
                      "\"layers\":[{\"match\":\"fc\",\"prune\":{\"scheme\":\"irregular\","
                      "\"rate\":4}}]}",
                      &spec);
    struct admm_ctx c;
    memset(&c, 0, sizeof(c));
    c.m = m;
    /* The Z-step evaluates P(W) on the validation split. */
    struct nn_dataset val = {0};
    cr_assert_eq(nn_dataset_synthetic(&val, 16, 1, 3, 3, 4, 1), DP_OK);
    c.val = &val;
    nn_dataset_norm_stats(&val, c.mean, c.std);
    c.spec = &spec;
    c.trace = json_array();
    c.stages = json_array();
    cr_assert_eq(admm_targets(&c, &ei), DP_OK, "%s", ei.msg);
    c.z = dp_calloc(m->n_floats, sizeof(float));
    c.u = dp_calloc(m->n_floats, sizeof(float));
    c.mask = dp_calloc(m->n_floats, sizeof(float));
    cr_assert(c.z != NULL && c.u != NULL && c.mask != NULL && c.trace != NULL);
    const float *z = c.z + wp->offset, *u = c.u + wp->offset;

    double rho_used = 0.0;
    for (int it = 0; it < DUAL_ITERS; it++) {
        const struct admm_step sp = {ADMM_STEP_ADMM, 0, it, 0, 1, 0.01, 1, 0};
        cr_assert_eq(admm_step_begin(&c, &sp, &ei), DP_OK, "%s", ei.msg);
        /* The W-step, exactly: argmin g.W + rho/2 ||W - Z + U||^2. */
        rho_used = c.t[0].rho;
        const float r = (float)rho_used;
        for (size_t i = 0; i < n; i++)
            w[i] = z[i] - u[i] - DUAL_G / r;
        if (it > 0) {
            /* Z is 0 on the pruned entries: there the W-step must give 0. */
            for (size_t i = 0; i < n; i++) {
                if (z[i] == 0.0f)
                    cr_assert_lt(fabsf(w[i]), 1e-3f * DUAL_G / r,
                                 "iteration %d, entry %zu: pruned weight %g (g / rho = %g)", it + 1,
                                 i, (double)w[i], (double)(DUAL_G / r));
            }
        }
        cr_assert_eq(admm_step_end(&c, &sp, &ei), DP_OK, "%s", ei.msg);
    }
    cr_assert_float_eq(rho_used, 0.01 * pow(2.0, DUAL_ITERS - 1), 1e-12);
    /* The rho in the trace and the report is the one the last W-step used. */
    cr_assert_float_eq(c.t[0].rho, rho_used, 1e-12, "rho %g, the last W-step used %g", c.t[0].rho,
                       rho_used);
    const json_t *last = json_array_get(c.trace, DUAL_ITERS - 1);
    const json_t *l0 = json_array_get(json_object_get(last, "layers"), 0);
    cr_assert_float_eq(json_real_value(json_object_get(l0, "rho")), rho_used, 1e-12);

    json_decref(c.trace);
    json_decref(c.stages);
    dp_free(c.z);
    dp_free(c.u);
    dp_free(c.mask);
    dp_free_aligned(c.scratch);
    dp_free(c.t);
    dp_model_free(m);
    nn_dataset_free(&val);
    DP_ASSERT_NO_LEAKS();
}
