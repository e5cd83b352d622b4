/*
 * Knowledge distillation's loss and its gradient through the
 * cross-entropy's cache (see distill.h).
 */
#include "worker/nn/distill.h"

#include <math.h>
#include <stddef.h>

/* The largest of row[0..K) divided by T, for a stable softmax. */
static double distill_max(const float *row, int K, double T)
{
    double mx = (double)row[0] / T;
    for (int k = 1; k < K; k++)
        mx = fmax(mx, (double)row[k] / T);
    return mx;
}

/* log sum_k exp(row[k] / T - mx) */
static double distill_lse(const float *row, int K, double T, double mx)
{
    double s = 0.0;
    for (int k = 0; k < K; k++)
        s += exp((double)row[k] / T - mx);
    return log(s);
}

float nn_distill_forward(float *probs, const float *logits, const float *teacher,
                         const int32_t *labels, int B, int K, float T, float a, float ce)
{
    const double t = (double)T;
    double kl = 0.0;
    for (int b = 0; b < B; b++) {
        const float *z = logits + (size_t)b * (size_t)K;
        const float *tt = teacher + (size_t)b * (size_t)K;
        float *p = probs + (size_t)b * (size_t)K;
        const double ms = distill_max(z, K, t), mt = distill_max(tt, K, t);
        const double ls = distill_lse(z, K, t, ms), lt = distill_lse(tt, K, t, mt);
        for (int k = 0; k < K; k++) {
            const double log_qs = (double)z[k] / t - ms - ls;
            const double log_qt = (double)tt[k] / t - mt - lt;
            const double qt = exp(log_qt), qs = exp(log_qs);
            kl += qt * (log_qt - log_qs);
            const double hot = k == labels[b] ? 1.0 : 0.0;
            p[k] = (float)(hot + (1.0 - a) * ((double)p[k] - hot) + a * t * (qs - qt));
        }
    }
    return (float)((1.0 - a) * (double)ce + a * t * t * kl / (double)B);
}
