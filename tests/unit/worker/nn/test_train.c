/*
 * The training loop (worker/nn/train.c): learning synthetic data,
 * exact repetition, shape errors.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "common/alloc.h"
#include "common/model.h"
#include "tests/unit/test_util.h"
#include "worker/nn/arch.h"
#include "worker/nn/data.h"
#include "worker/nn/net.h"
#include "worker/nn/optim.h"
#include "worker/nn/rng.h"
#include "worker/nn/sched.h"
#include "worker/nn/train.h"

Test(train, learns_synthetic_data_and_repeats_exactly, .timeout = 120)
{
    /* One synthetic set split in two: its class templates come from the seed. */
    struct nn_dataset all = {0}, tr = {0}, te = {0};
    cr_assert_eq(nn_dataset_synthetic(&all, 640, 1, 12, 12, 4, 1), DP_OK);
    cr_assert_eq(nn_dataset_subset(&tr, &all, 0, 512), DP_OK);
    cr_assert_eq(nn_dataset_subset(&te, &all, 512, 128), DP_OK);
    nn_dataset_free(&all);
    float first[2] = {0, 0};
    for (int run = 0; run < 2; run++) {
        struct dp_model *m = dp_model_new(1, 12, 12);
        int x = dp_model_add_conv2d(m, "c", DP_MODEL_INPUT, 4, 3, 1, 0, 1, 1, NULL);
        x = dp_model_add_unary(m, "r", DP_OP_RELU, x, NULL);
        x = dp_model_add_unary(m, "f", DP_OP_FLATTEN, x, NULL);
        x = dp_model_add_linear(m, "fc", x, 4, NULL);
        cr_assert_geq(x, 0);
        cr_assert_eq(dp_model_finalize(m, NULL), DP_OK);
        nn_arch_init(m, 1);
        struct nn_train_cfg cfg = nn_train_cfg_default();
        cfg.epochs = 3;
        cfg.batch = 32;
        cfg.sched.total_epochs = 3;
        cfg.sched.base_lr = 0.05f;
        struct nn_train_result res;
        struct dp_errinfo ei = {0};
        cr_assert_eq(nn_train(m, &tr, &te, &cfg, NULL, &res, &ei), DP_OK, "%s", ei.msg);
        cr_assert_gt(res.last.test_acc, 0.6, "accuracy %.3f", res.last.test_acc);
        if (run == 0) {
            first[0] = (float)res.last.train_loss;
            first[1] = (float)res.last.test_acc;
        } else {
            cr_assert_eq((float)res.last.train_loss, first[0], "same seed, same loss");
            cr_assert_eq((float)res.last.test_acc, first[1]);
        }
        dp_model_free(m);
    }
    nn_dataset_free(&tr);
    nn_dataset_free(&te);
    DP_ASSERT_NO_LEAKS();
}

Test(train, shape_mismatch_is_named)
{
    struct nn_dataset tr = {0};
    cr_assert_eq(nn_dataset_synthetic(&tr, 16, 3, 32, 32, 10, 1), DP_OK);
    struct dp_model *m = NULL;
    cr_assert_eq(nn_arch_build("lenet5", 1, 28, 28, 10, &m, NULL), DP_OK);
    struct nn_train_cfg cfg = nn_train_cfg_default();
    struct nn_train_result res;
    struct dp_errinfo ei = {0};
    cr_assert_eq(nn_train(m, &tr, NULL, &cfg, NULL, &res, &ei), DP_ESHAPE);
    cr_assert(strstr(ei.msg, "3x32x32") != NULL && strstr(ei.msg, "1x28x28") != NULL, "%s", ei.msg);
    dp_model_free(m);
    nn_dataset_free(&tr);
    DP_ASSERT_NO_LEAKS();
}

/* Every allocation of the executor and the optimizer can fail: each failure
 * is reported as DP_ENOMEM, leaves nothing allocated, and a later attempt
 * succeeds. */
