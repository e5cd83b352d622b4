/*
 * The built-in architectures (worker/nn/arch.c): parameter counts,
 * errors, deterministic initialisation.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "common/alloc.h"
#include "common/model.h"
#include "tests/unit/test_util.h"
#include "worker/nn/arch.h"
#include "worker/nn/train.h"

struct arch_case {
    const char *name;
    int c, h, w;
    size_t params; /* trainable parameters, as PyTorch counts them */
};

Test(arch, builds_every_architecture_with_the_expected_parameter_count)
{
    static const struct arch_case cases[] = {
        {"lenet-300-100", 1, 28, 28, 266610},
        {"lenet5", 1, 28, 28, 431080},
        {"resnet20-cifar", 3, 32, 32, 272474},  /* torch model of tests/bench/torch_train.py */
        {"resnet20-fmnist", 1, 28, 28, 272186}, /* the same with a 1-channel stem: 2 * 144 fewer */
        {"resnet56-cifar", 3, 32, 32, 0},
        {"vgg16-cifar", 3, 32, 32, 0},
        {"mobilenetv2-cifar", 3, 32, 32, 0},
        {"lstm-fmnist", 1, 28, 28, 82186}, /* nn.LSTM(28, 128) + nn.Linear(128, 10) */
        {"gru-fmnist", 1, 28, 28, 61962},  /* nn.GRU(28, 128) + nn.Linear(128, 10) */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct dp_model *m = NULL;
        struct dp_errinfo ei = {0};
        enum dp_err err =
            nn_arch_build(cases[i].name, cases[i].c, cases[i].h, cases[i].w, 10, &m, &ei);
        cr_assert_eq(err, DP_OK, "%s: %s", cases[i].name, ei.msg);
        if (cases[i].params != 0)
            cr_assert_eq(dp_model_n_trainable(m), cases[i].params, "%s: %zu parameters",
                         cases[i].name, dp_model_n_trainable(m));
        const struct dp_layer *last = &m->layers[m->n_layers - 1];
        cr_assert_eq(last->out_c, 10);
        cr_assert_eq(last->out_h * last->out_w, 1);
        dp_model_free(m);
    }
    DP_ASSERT_NO_LEAKS();
}

Test(arch, errors_name_the_problem)
{
    struct dp_model *m = NULL;
    struct dp_errinfo ei = {0};
    cr_assert_eq(nn_arch_build("alexnet", 3, 32, 32, 10, &m, &ei), DP_EINVAL);
    cr_assert(strstr(ei.msg, "alexnet") != NULL && strstr(ei.msg, "lenet5") != NULL);
    cr_assert_eq(nn_arch_build("resnet20-fmnist", 3, 28, 28, 10, &m, &ei), DP_EINVAL);
    cr_assert(strstr(ei.msg, "1-channel") != NULL, "%s", ei.msg);
    cr_assert_eq(nn_arch_build("lstm-fmnist", 3, 28, 28, 10, &m, &ei), DP_EINVAL);
    cr_assert(strstr(ei.msg, "1-channel") != NULL, "%s", ei.msg);
    cr_assert_eq(nn_arch_build("vgg16-cifar", 1, 8, 8, 10, &m, &ei), DP_ESHAPE);
    cr_assert(strstr(ei.msg, "pool") != NULL, "names the layer: %s", ei.msg);
    cr_assert_null(m);
    DP_ASSERT_NO_LEAKS();
}

Test(arch, init_is_deterministic_and_bounded)
{
    struct dp_model *a = NULL, *b = NULL;
    cr_assert_eq(nn_arch_build("lenet5", 1, 28, 28, 10, &a, NULL), DP_OK);
    cr_assert_eq(nn_arch_build("lenet5", 1, 28, 28, 10, &b, NULL), DP_OK);
    nn_arch_init(a, 42);
    nn_arch_init(b, 42);
    cr_assert_eq(memcmp(a->data, b->data, a->n_floats * sizeof(float)), 0);
    const struct dp_param *w = dp_model_param_find(a, "fc1.weight");
    float bound = 1.0f / sqrtf(800.0f), mx = 0.0f;
    for (size_t i = 0; i < w->numel; i++)
        mx = fmaxf(mx, fabsf(a->data[w->offset + i]));
    cr_assert_leq(mx, bound);
    cr_assert_gt(mx, 0.9f * bound);
    dp_model_free(a);
    dp_model_free(b);
    DP_ASSERT_NO_LEAKS();
}

static void arch_record_loss(void *ud, const struct nn_epoch_stats *st)
{
    double *loss = ud;
    loss[st->epoch - 1] = st->train_loss;
}

Test(arch, resnet20_fmnist_trains_on_one_channel_images, .timeout = 120)
{
    struct nn_dataset ds = {0};
    cr_assert_eq(nn_dataset_synthetic(&ds, 128, 1, 28, 28, 10, 4), DP_OK);
    struct dp_model *m = NULL;
    struct dp_errinfo ei = {0};
    cr_assert_eq(nn_arch_build("resnet20-fmnist", 1, 28, 28, 10, &m, &ei), DP_OK, "%s", ei.msg);
    nn_arch_init(m, 1);
    struct nn_train_cfg cfg = nn_train_cfg_default();
    cfg.epochs = 3;
    cfg.batch = 32;
    cfg.sched.total_epochs = 3;
    cfg.sched.base_lr = 0.05f;
    double loss[3] = {0};
    struct nn_train_hooks h;
    memset(&h, 0, sizeof(h));
    h.on_epoch = arch_record_loss;
    h.ud = loss;
    struct nn_train_result r;
    cr_assert_eq(nn_train(m, &ds, NULL, &cfg, &h, &r, &ei), DP_OK, "%s", ei.msg);
    cr_assert(isfinite(loss[2]) && loss[2] < loss[0], "loss %g -> %g", loss[0], loss[2]);
    dp_model_free(m);
    nn_dataset_free(&ds);
    DP_ASSERT_NO_LEAKS();
}
