/*
 * Purification on ResNet-20: dead filters leave with their BN entries and
 * the next layer's input slices, the saved shapes shrink, the network
 * computes the same logits, and channels that feed a residual sum stay
 * while the shortcut still carries them. Then a structured + pattern ADMM
 * run on ResNet-20 whose constraints hold exactly and which purifies.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "common/alloc.h"
#include "common/model_io.h"
#include "tests/unit/test_util.h"
#include "tests/unit/worker/compress/admm_fixture.h"
#include "worker/compress/admm.h"
#include "worker/compress/purify.h"
#include "worker/nn/arch.h"
#include "worker/nn/net.h"
#include "worker/nn/rng.h"

static void pf_zero_filters(struct dp_model *m, const char *param, int from, int to)
{
    const struct dp_param *w = dp_model_param_find(m, param);
    cr_assert_not_null(w, "%s", param);
    const size_t row = w->numel / (size_t)w->shape[0];
    for (int o = from; o < to; o++)
        memset(m->data + w->offset + (size_t)o * row, 0, row * sizeof(float));
}

static void pf_logits(struct dp_model *m, const float *x, int n, float *out)
{
    struct nn_net *net = NULL;
    struct dp_errinfo ei = {0};
    cr_assert_eq(nn_net_new(m, n, &net, &ei), DP_OK, "%s", ei.msg);
    const float *y = nn_net_forward(net, x, n, 0);
    cr_assert_not_null(y);
    memcpy(out, y, (size_t)n * 10 * sizeof(float));
    nn_net_free(net);
}

static int64_t pf_dim(const struct dp_model *m, const char *param, int d)
{
    const struct dp_param *p = dp_model_param_find(m, param);
    cr_assert_not_null(p, "%s", param);
    return p->shape[d];
}

Test(purify, dead_filters_shrink_resnet20_and_keep_the_logits, .timeout = 300)
{
    struct dp_model *m = NULL;
    struct dp_errinfo ei = {0};
    cr_assert_eq(nn_arch_build("resnet20-cifar", 3, 32, 32, 10, &m, &ei), DP_OK, "%s", ei.msg);
    nn_arch_init(m, 7);
    /* Non-trivial BN statistics, so a dead channel's BN output is not zero
     * unless its scale and shift are. */
    struct nn_rng rng;
    nn_rng_seed(&rng, 3);
    for (int i = 0; i < m->n_params; i++) {
        const struct dp_param *p = &m->params[i];
        if (strstr(p->name, "running_mean") != NULL || strstr(p->name, ".bias") != NULL)
            for (size_t k = 0; k < p->numel; k++)
                m->data[p->offset + k] = 0.2f * ((float)nn_rng_uniform(&rng) - 0.5f);
    }
    pf_zero_filters(m, "layer1.0.conv1.weight", 0, 8);   /* a block's inner conv */
    pf_zero_filters(m, "layer1.1.conv2.weight", 0, 16);  /* feeds a residual sum */
    pf_zero_filters(m, "layer3.2.conv1.weight", 10, 64); /* deep, 54 of 64 */
    cp_purify_zero_dead_filters(m, NULL);
    const int n = 4;
    float *x = dp_malloc((size_t)n * 3 * 32 * 32 * sizeof(float));
    float *a = dp_malloc((size_t)n * 10 * sizeof(float)),
          *b = dp_malloc((size_t)n * 10 * sizeof(float));
    for (int i = 0; i < n * 3 * 32 * 32; i++)
        x[i] = (float)nn_rng_uniform(&rng) * 2.0f - 1.0f;
    pf_logits(m, x, n, a);

    struct dp_model *q = NULL;
    json_t *stats = NULL;
    cr_assert_eq(cp_purify(m, &q, &stats, &ei), DP_OK, "%s", ei.msg);
    cr_assert_eq(pf_dim(q, "layer1.0.conv1.weight", 0), 8);
    cr_assert_eq(pf_dim(q, "layer1.0.bn1.weight", 0), 8);
    cr_assert_eq(pf_dim(q, "layer1.0.conv2.weight", 1), 8);
    cr_assert_eq(pf_dim(q, "layer3.2.conv1.weight", 0), 10);
    cr_assert_eq(pf_dim(q, "layer3.2.conv2.weight", 1), 10);
    /* The shortcut still carries layer1.1.conv2's channels into the sum. */
    cr_assert_eq(pf_dim(q, "layer1.1.conv2.weight", 0), 16);
    cr_assert_eq(pf_dim(q, "fc.weight", 0), 10);
    cr_assert_lt(dp_model_n_trainable(q), dp_model_n_trainable(m));
    /* layer1.1.conv2 reads nothing any more, so layer1.1.conv1's output is
     * unused: it keeps the one channel every layer keeps for its shape. */
    cr_assert_eq(pf_dim(q, "layer1.1.conv1.weight", 0), 1);
    cr_assert_eq(pf_dim(q, "layer1.1.conv2.weight", 1), 1);
    cr_assert_eq(json_integer_value(json_object_get(stats, "channels_removed")), 8 + 15 + 54);
    pf_logits(q, x, n, b);
    for (int i = 0; i < n * 10; i++)
        cr_assert(fabsf(a[i] - b[i]) <= 1e-4f * (1.0f + fabsf(a[i])), "logit %d: %g vs %g", i,
                  (double)a[i], (double)b[i]);
    json_decref(stats);
    dp_model_free(q);
    dp_free(x);
    dp_free(a);
    dp_free(b);
    dp_model_free(m);
    DP_ASSERT_NO_LEAKS();
}

Test(purify, structured_and_pattern_admm_on_resnet20, .timeout = 900)
{
    struct dp_model *m = NULL;
    struct dp_errinfo ei = {0};
    cr_assert_eq(nn_arch_build("resnet20-cifar", 3, 32, 32, 10, &m, &ei), DP_OK, "%s", ei.msg);
    nn_arch_init(m, 7);
    struct nn_dataset all = {0}, train = {0}, test = {0};
    cr_assert_eq(nn_dataset_synthetic(&all, 160, 3, 32, 32, 10, 5), DP_OK);
    cr_assert_eq(nn_dataset_subset(&train, &all, 0, 128), DP_OK);
    cr_assert_eq(nn_dataset_subset(&test, &all, 128, 32), DP_OK);
    nn_dataset_free(&all);
    const char *text =
        "{\"batch\":32,\"admm\":{\"iters\":1,\"epochs_per_iter\":1},\"retrain\":{\"epochs\":1},"
        "\"layers\":[{\"match\":\"layer*.conv1\",\"prune\":{\"scheme\":\"filter\",\"rate\":4}},"
        "{\"match\":\"layer*.conv2\",\"prune\":{\"scheme\":\"pattern\",\"library_size\":8,"
        "\"connectivity\":2}}]}";
    struct dp_spec spec;
    cr_assert_eq(dp_spec_parse(text, strlen(text), &spec, &ei), DP_OK, "%s", ei.msg);
    json_t *r = NULL;
    cr_assert_eq(admm_compress(m, &train, &test, &spec, NULL, &r, &ei), DP_OK, "%s", ei.msg);
    /* Every conv1 keeps exactly 1/4 of its filters; every conv2 kernel is
     * empty or one of 8 four-tap patterns, half the kernels at most. */
    for (int i = 0; i < m->n_layers; i++) {
        const struct dp_layer *l = &m->layers[i];
        if (l->op != DP_OP_CONV2D || strncmp(l->name, "layer", 5) != 0 ||
            strstr(l->name, "shortcut") != NULL)
            continue;
        const struct dp_param *w = &m->params[l->first_param];
        const size_t O = (size_t)w->shape[0], I = (size_t)w->shape[1];
        if (strstr(l->name, "conv1") != NULL) {
            size_t kept = 0;
            for (size_t o = 0; o < O; o++) {
                int any = 0;
                for (size_t k = 0; k < I * 9; k++)
                    any |= m->data[w->offset + o * I * 9 + k] != 0.0f;
                kept += (size_t)any;
            }
            cr_assert_eq(kept, O / 4, "%s keeps %zu of %zu filters", l->name, kept, O);
        } else {
            const struct admm_kernel_stats ks = admm_kernel_stats(m->data + w->offset, O * I);
            cr_assert_leq(ks.max_taps, 4, "%s", l->name);
            cr_assert_leq(ks.distinct, 8, "%s uses %d patterns, more than 8", l->name, ks.distinct);
            cr_assert_leq(ks.kept, O * I / 2, "%s", l->name);
        }
    }
    struct dp_model *q = NULL;
    json_t *stats = NULL;
    cr_assert_eq(cp_purify(m, &q, &stats, &ei), DP_OK, "%s", ei.msg);
    cr_assert_eq(pf_dim(q, "layer1.0.conv1.weight", 0), 4);
    cr_assert_eq(pf_dim(q, "layer2.1.conv2.weight", 1), 8);
    cr_assert_eq(pf_dim(q, "layer3.2.bn1.running_var", 0), 16);
    /* The saved checkpoint has the smaller shapes. */
    char dir[256], path[300];
    dp_test_tmpdir_make(dir, sizeof(dir), "purify");
    snprintf(path, sizeof(path), "%s/small.safetensors", dir);
    cr_assert_eq(dp_model_save(q, path, NULL, &ei), DP_OK, "%s", ei.msg);
    struct dp_model *back = NULL;
    cr_assert_eq(dp_model_load(path, &back, NULL, &ei), DP_OK, "%s", ei.msg);
    cr_assert_eq(pf_dim(back, "layer1.0.conv1.weight", 0), 4);
    cr_assert_eq(dp_model_n_trainable(back), dp_model_n_trainable(q));
    cr_assert_lt(dp_model_n_trainable(back), dp_model_n_trainable(m));
    dp_model_free(back);
    dp_test_tmpdir_remove(dir);
    json_decref(stats);
    json_decref(r);
    dp_model_free(q);
    dp_model_free(m);
    nn_dataset_free(&train);
    nn_dataset_free(&test);
    DP_ASSERT_NO_LEAKS();
}
