/* The purification suites' shared check (purify_fixture.h). */
#include "tests/unit/worker/compress/purify_fixture.h"

#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "common/alloc.h"
#include "worker/compress/purify.h"
#include "worker/nn/net.h"
#include "worker/nn/rng.h"

/* The logits of m on x (n samples) into out (n, classes). */
static void purify_fixture_logits(struct dp_model *m, const float *x, int n, float *out,
                                  size_t classes)
{
    struct nn_net *net = NULL;
    struct dp_errinfo ei = {0};
    cr_assert_eq(nn_net_new(m, n, &net, &ei), DP_OK, "%s", ei.msg);
    const float *y = nn_net_forward(net, x, n, 0);
    cr_assert_not_null(y);
    memcpy(out, y, (size_t)n * classes * sizeof(float));
    nn_net_free(net);
}

struct dp_model *purify_fixture_same(struct dp_model *m, json_t **stats)
{
    const int n = 4;
    const size_t in = dp_model_out_size(m, DP_MODEL_INPUT);
    const size_t classes = dp_model_out_size(m, m->n_layers - 1);
    struct nn_rng rng;
    nn_rng_seed(&rng, 9);
    float *x = dp_malloc((size_t)n * in * sizeof(float));
    float *a = dp_malloc((size_t)n * classes * sizeof(float)),
          *b = dp_malloc((size_t)n * classes * sizeof(float));
    cr_assert(x != NULL && a != NULL && b != NULL);
    for (size_t i = 0; i < (size_t)n * in; i++)
        x[i] = (float)nn_rng_uniform(&rng) * 2.0f - 1.0f;
    purify_fixture_logits(m, x, n, a, classes);
    struct dp_model *q = NULL;
    struct dp_errinfo ei = {0};
    cr_assert_eq(cp_purify(m, &q, stats, &ei), DP_OK, "%s", ei.msg);
    purify_fixture_logits(q, x, n, b, classes);
    for (size_t i = 0; i < (size_t)n * classes; i++)
        cr_assert(fabsf(a[i] - b[i]) <= 1e-4f * (1.0f + fabsf(a[i])), "logit %zu: %g vs %g", i,
                  (double)a[i], (double)b[i]);
    dp_free(x);
    dp_free(a);
    dp_free(b);
    return q;
}
