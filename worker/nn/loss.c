/*
 * Softmax cross-entropy (see loss.h). Rows are independent; the batch mean
 * is reduced serially in row order so the loss does not depend on threads.
 */
#include "worker/nn/loss.h"

#include <math.h>
#include <stddef.h>

float nn_xent_forward(float *probs, const float *logits, const int32_t *labels, int B, int K)
{
    double total = 0.0;
    for (int b = 0; b < B; b++) {
        const float *z = logits + (size_t)b * (size_t)K;
        float *p = probs + (size_t)b * (size_t)K;
        float mx = z[0];
        for (int k = 1; k < K; k++)
            mx = z[k] > mx ? z[k] : mx;
        double s = 0.0;
        for (int k = 0; k < K; k++) {
            p[k] = expf(z[k] - mx);
            s += p[k];
        }
        const float inv = (float)(1.0 / s);
        for (int k = 0; k < K; k++)
            p[k] *= inv;
        /* log-sum-exp form keeps the loss finite even when p underflows. */
        total += (double)mx + log(s) - (double)z[labels[b]];
    }
    return (float)(total / (double)B);
}

void nn_xent_backward(float *dlogits, const float *probs, const int32_t *labels, int B, int K)
{
    const float inv = 1.0f / (float)B;
    for (int b = 0; b < B; b++) {
        const float *p = probs + (size_t)b * (size_t)K;
        float *d = dlogits + (size_t)b * (size_t)K;
        for (int k = 0; k < K; k++)
            d[k] = p[k] * inv;
        d[labels[b]] -= inv;
    }
}

int nn_xent_correct(const float *logits, const int32_t *labels, int B, int K)
{
    int correct = 0;
    for (int b = 0; b < B; b++) {
        const float *z = logits + (size_t)b * (size_t)K;
        int best = 0;
        for (int k = 1; k < K; k++) {
            if (z[k] > z[best])
                best = k;
        }
        correct += best == labels[b];
    }
    return correct;
}
