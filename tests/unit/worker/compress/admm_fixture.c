/*
 * The small network and synthetic data the ADMM suites share.
 */
#include "tests/unit/worker/compress/admm_fixture.h"

#include <criterion/criterion.h>
#include <string.h>

#include "worker/compress/admm.h"
#include "worker/nn/arch.h"
#include "worker/nn/train.h"

void admm_fixture_init(struct admm_fixture *f)
{
    struct nn_dataset all = {0};
    cr_assert_eq(nn_dataset_synthetic(&all, 960, 1, 12, 12, 4, 3), DP_OK);
    cr_assert_eq(nn_dataset_subset(&f->train, &all, 0, 768), DP_OK);
    cr_assert_eq(nn_dataset_subset(&f->test, &all, 768, 192), DP_OK);
    nn_dataset_free(&all);
    struct dp_errinfo ei = {0};
    f->m = dp_model_new(1, 12, 12);
    int x = dp_model_add_conv2d(f->m, "conv1", DP_MODEL_INPUT, 8, 3, 1, 1, 1, 1, &ei);
    x = dp_model_add_unary(f->m, "relu1", DP_OP_RELU, x, &ei);
    x = dp_model_add_pool(f->m, "pool1", DP_OP_MAXPOOL, x, 2, 2, 0, &ei);
    x = dp_model_add_conv2d(f->m, "conv2", x, 16, 3, 1, 1, 1, 1, &ei);
    x = dp_model_add_unary(f->m, "relu2", DP_OP_RELU, x, &ei);
    x = dp_model_add_unary(f->m, "flat", DP_OP_FLATTEN, x, &ei);
    x = dp_model_add_linear(f->m, "fc1", x, 32, &ei);
    x = dp_model_add_unary(f->m, "relu3", DP_OP_RELU, x, &ei);
    x = dp_model_add_linear(f->m, "fc2", x, 4, &ei);
    cr_assert_geq(x, 0, "%s", ei.msg);
    cr_assert_eq(dp_model_finalize(f->m, &ei), DP_OK, "%s", ei.msg);
    nn_arch_init(f->m, 5);
    struct nn_train_cfg cfg = nn_train_cfg_default();
    cfg.epochs = 3;
    cfg.batch = 32;
    cfg.sched.total_epochs = 3;
    cfg.sched.base_lr = 0.05f;
    struct nn_train_result res;
    cr_assert_eq(nn_train(f->m, &f->train, &f->test, &cfg, NULL, &res, &ei), DP_OK, "%s", ei.msg);
}

void admm_fixture_free(struct admm_fixture *f)
{
    dp_model_free(f->m);
    nn_dataset_free(&f->train);
    nn_dataset_free(&f->test);
}

size_t admm_nnz(const struct dp_model *m, const char *param)
{
    const struct dp_param *p = dp_model_param_find(m, param);
    size_t n = 0;
    for (size_t i = 0; i < p->numel; i++)
        n += m->data[p->offset + i] != 0.0f;
    return n;
}

void admm_fixture_spec(const char *text, struct dp_spec *spec)
{
    struct dp_errinfo ei = {0};
    cr_assert_eq(dp_spec_parse(text, strlen(text), spec, &ei), DP_OK, "%s", ei.msg);
    spec->batch = 32;
}

json_t *admm_run_spec(struct admm_fixture *f, const char *text)
{
    struct dp_spec spec;
    struct dp_errinfo ei = {0};
    admm_fixture_spec(text, &spec);
    json_t *report = NULL;
    cr_assert_eq(admm_compress(f->m, &f->train, &f->test, &spec, NULL, &report, &ei), DP_OK, "%s",
                 ei.msg);
    cr_assert_not_null(report);
    return report;
}

struct admm_kernel_stats admm_kernel_stats(const float *w, size_t n_kernels)
{
    struct admm_kernel_stats st = {0, 0, 0};
    unsigned char seen[512] = {0};
    for (size_t k = 0; k < n_kernels; k++) {
        unsigned mk = 0;
        for (int j = 0; j < 9; j++)
            mk |= (w[k * 9 + (size_t)j] != 0.0f ? 1u : 0u) << j;
        if (mk == 0)
            continue;
        st.kept++;
        st.distinct += !seen[mk];
        seen[mk] = 1;
        const int taps = __builtin_popcount(mk);
        st.max_taps = taps > st.max_taps ? taps : st.max_taps;
    }
    return st;
}
