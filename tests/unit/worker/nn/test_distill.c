/*
 * Knowledge distillation's loss (worker/nn/distill.c): the gradient the
 * rewritten cross-entropy cache carries, (probs' - onehot) / B, against
 * central differences of the loss; weight 0 is plain cross-entropy, and a
 * student equal to its teacher under weight 1 has nothing to learn.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "tests/unit/test_util.h"
#include "worker/nn/distill.h"
#include "worker/nn/loss.h"

#define KD_B 3
#define KD_K 5

/* L(z) for the fixed teacher and labels; probs receives the rewritten cache. */
static double kd_loss(const float *z, const float *t, const int32_t *y, float T, float a,
                      float *probs)
{
    const float ce = nn_xent_forward(probs, z, y, KD_B, KD_K);
    return nn_distill_forward(probs, z, t, y, KD_B, KD_K, T, a, ce);
}

Test(distill, gradient_matches_central_differences)
{
    float z[KD_B * KD_K], t[KD_B * KD_K], probs[KD_B * KD_K], scratch[KD_B * KD_K];
    const int32_t y[KD_B] = {1, 4, 0};
    for (int i = 0; i < KD_B * KD_K; i++) {
        z[i] = (float)sin(1.7 * i) * 2.0f;
        t[i] = (float)cos(0.9 * i) * 3.0f;
    }
    static const float temps[] = {1.0f, 4.0f}, weights[] = {0.0f, 0.5f, 1.0f};
    for (int ti = 0; ti < 2; ti++) {
        for (int wi = 0; wi < 3; wi++) {
            const float T = temps[ti], a = weights[wi];
            kd_loss(z, t, y, T, a, probs);
            for (int i = 0; i < KD_B * KD_K; i++) {
                const int b = i / KD_K, k = i % KD_K;
                const double grad = ((double)probs[i] - (k == y[b] ? 1.0 : 0.0)) / KD_B;
                const float keep = z[i], eps = 1e-2f;
                z[i] = keep + eps;
                const double up = kd_loss(z, t, y, T, a, scratch);
                z[i] = keep - eps;
                const double down = kd_loss(z, t, y, T, a, scratch);
                z[i] = keep;
                const double fd = (up - down) / (2.0 * eps);
                cr_assert(fabs(fd - grad) <= 2e-3 + 1e-2 * fabs(fd),
                          "T %g a %g entry %d: gradient %g, central difference %g", (double)T,
                          (double)a, i, grad, fd);
            }
        }
    }
}

Test(distill, weight_zero_is_cross_entropy_and_a_copy_of_the_teacher_learns_nothing)
{
    float z[KD_B * KD_K], p0[KD_B * KD_K], p1[KD_B * KD_K];
    const int32_t y[KD_B] = {2, 2, 3};
    for (int i = 0; i < KD_B * KD_K; i++)
        z[i] = (float)sin(2.3 * i);
    const float ce = nn_xent_forward(p0, z, y, KD_B, KD_K);
    memcpy(p1, p0, sizeof(p0));
    const float l0 = nn_distill_forward(p1, z, z, y, KD_B, KD_K, 3.0f, 0.0f, ce);
    cr_assert_float_eq(l0, ce, 1e-6);
    for (int i = 0; i < KD_B * KD_K; i++)
        cr_assert_float_eq(p1[i], p0[i], 1e-6);
    const float l1 = nn_distill_forward(p1, z, z, y, KD_B, KD_K, 3.0f, 1.0f, ce);
    cr_assert_float_eq(l1, 0.0f, 1e-6, "KL of a distribution from itself: %g", (double)l1);
    for (int i = 0; i < KD_B * KD_K; i++) {
        const float hot = i % KD_K == y[i / KD_K] ? 1.0f : 0.0f;
        cr_assert_float_eq(p1[i], hot, 1e-6, "entry %d: no gradient expected", i);
    }
}
