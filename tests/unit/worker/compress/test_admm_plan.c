/*
 * The ADMM run's plan and targets over the whole range the spec allows:
 * every step's training seed is its own (up to 16 stages of 1000
 * iterations, 1000 magnitude rounds), and a pattern rule's library is
 * chosen from every layer it matches, however many.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/model.h"
#include "tests/unit/test_util.h"
#include "tests/unit/worker/compress/admm_fixture.h"
#include "worker/compress/admm_int.h"

static int plan_cmp_u64(const void *a, const void *b)
{
    const uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Plans spec text and checks that its n_want steps have distinct seeds. */
static void plan_seeds_distinct(const char *text, int n_want)
{
    struct dp_spec spec;
    admm_fixture_spec(text, &spec);
    struct admm_ctx c;
    memset(&c, 0, sizeof(c));
    c.spec = &spec;
    struct dp_errinfo ei = {0};
    cr_assert_eq(admm_plan(&c, &ei), DP_OK, "%s", ei.msg);
    cr_assert_eq(c.n_steps, n_want);
    uint64_t *seeds = dp_malloc((size_t)c.n_steps * sizeof(uint64_t));
    cr_assert_not_null(seeds);
    for (int i = 0; i < c.n_steps; i++)
        seeds[i] = c.steps[i].seed;
    qsort(seeds, (size_t)c.n_steps, sizeof(uint64_t), plan_cmp_u64);
    for (int i = 1; i < c.n_steps; i++)
        cr_assert_neq(seeds[i], seeds[i - 1], "two steps of the plan share seed %llu",
                      (unsigned long long)seeds[i]);
    dp_free(seeds);
    dp_free(c.steps);
}

Test(admm_plan, every_step_has_its_own_seed_over_the_allowed_range)
{
    /* 16 stages of 1000 iterations, each followed by its retraining. */
    plan_seeds_distinct("{\"version\":1,\"seed\":3,\"admm\":{\"iters\":1000,\"epochs_per_iter\":1},"
                        "\"retrain\":{\"epochs\":1},\"progressive\":{\"stages\":16},"
                        "\"layers\":[{\"match\":\"*\",\"prune\":{\"scheme\":\"irregular\","
                        "\"rate\":4}}]}",
                        16 * 1001);
    /* Two stages just past the old 100-iteration assumption. */
    plan_seeds_distinct("{\"version\":1,\"admm\":{\"iters\":101,\"epochs_per_iter\":1},"
                        "\"progressive\":{\"stages\":2},"
                        "\"layers\":[{\"match\":\"*\",\"prune\":{\"scheme\":\"irregular\","
                        "\"rate\":4}}]}",
                        2 * 102);
    plan_seeds_distinct("{\"version\":1,\"method\":\"magnitude\",\"magnitude\":{\"steps\":1000},"
                        "\"retrain\":{\"epochs\":1000},"
                        "\"layers\":[{\"match\":\"*\",\"prune\":{\"scheme\":\"irregular\","
                        "\"rate\":4}}]}",
                        1000);
    DP_ASSERT_NO_LEAKS();
}

#define PLAN_N_CONV  300
#define PLAN_N_FIRST 130 /* layers voting for the top row; the other 170 vote for the bottom */

Test(admm_plan, a_pattern_library_hears_every_layer_of_its_rule)
{
    /* 300 2-to-2-channel 3x3 convolutions (patterns need more than one
     * input channel): 130 whose strongest taps are the top row (mask 0x017
     * with the centre), then 170 the bottom row (0x1d0), in all four
     * kernels. With one library entry the bottom row must win; a library
     * chosen from the first 256 layers only would pick the top row. */
    struct dp_errinfo ei = {0};
    struct dp_model *m = dp_model_new(2, 3, 3);
    cr_assert_not_null(m);
    int x = DP_MODEL_INPUT;
    char name[16];
    for (int i = 0; i < PLAN_N_CONV; i++) {
        snprintf(name, sizeof(name), "c%d", i);
        x = dp_model_add_conv2d(m, name, x, 2, 3, 1, 1, 1, 0, &ei);
    }
    x = dp_model_add_unary(m, "flat", DP_OP_FLATTEN, x, &ei);
    x = dp_model_add_linear(m, "fc", x, 2, &ei);
    cr_assert_geq(x, 0, "%s", ei.msg);
    cr_assert_eq(dp_model_finalize(m, &ei), DP_OK, "%s", ei.msg);
    static const int top[3] = {0, 1, 2}, bottom[3] = {6, 7, 8};
    for (int i = 0; i < PLAN_N_CONV; i++) {
        float *w = dp_param_data(m, &m->params[m->layers[i].first_param]);
        const int *taps = i < PLAN_N_FIRST ? top : bottom;
        for (int kern = 0; kern < 4; kern++) {
            for (int t = 0; t < 9; t++)
                w[kern * 9 + t] = 0.01f;
            for (int k = 0; k < 3; k++)
                w[kern * 9 + taps[k]] = 1.0f;
        }
    }
    struct dp_spec spec;
    admm_fixture_spec("{\"version\":1,\"layers\":[{\"match\":\"c*\",\"prune\":{\"scheme\":"
                      "\"pattern\",\"library_size\":1}}]}",
                      &spec);
    struct admm_ctx c;
    memset(&c, 0, sizeof(c));
    c.m = m;
    c.spec = &spec;
    cr_assert_eq(admm_targets(&c, &ei), DP_OK, "%s", ei.msg);
    cr_assert_eq(c.n_t, PLAN_N_CONV);
    for (int k = 0; k < c.n_t; k++) {
        cr_assert_eq(c.t[k].p.n_library, 1);
        cr_assert_eq(c.t[k].p.library[0], 0x1d0, "target %d: library pattern %#x", k,
                     c.t[k].p.library[0]);
    }
    dp_free(c.t);
    dp_free_aligned(c.scratch);
    dp_model_free(m);
    DP_ASSERT_NO_LEAKS();
}
