/*
 * Softmax layer (see softmax.h). The maximum is subtracted before
 * exponentiating so that large logits do not overflow; sums run in double
 * so that long vectors keep float32 accuracy.
 */
#include "worker/nn/softmax.h"

#include <math.h>

void nn_softmax_forward(float *out, const float *inp, size_t outer, size_t len, size_t inner)
{
#pragma omp parallel for schedule(static)
    for (size_t o = 0; o < outer; o++) {
        for (size_t j = 0; j < inner; j++) {
            const float *x = inp + o * len * inner + j;
            float *y = out + o * len * inner + j;
            float mx = x[0];
            for (size_t k = 1; k < len; k++)
                mx = x[k * inner] > mx ? x[k * inner] : mx;
            double sum = 0.0;
            for (size_t k = 0; k < len; k++) {
                const float e = expf(x[k * inner] - mx);
                y[k * inner] = e;
                sum += e;
            }
            const float inv = (float)(1.0 / sum);
            for (size_t k = 0; k < len; k++)
                y[k * inner] *= inv;
        }
    }
}

void nn_softmax_backward(float *dinp, const float *dout, const float *out, size_t outer, size_t len,
                         size_t inner)
{
#pragma omp parallel for schedule(static)
    for (size_t o = 0; o < outer; o++) {
        for (size_t j = 0; j < inner; j++) {
            const size_t base = o * len * inner + j;
            double dot = 0.0;
            for (size_t k = 0; k < len; k++)
                dot += (double)dout[base + k * inner] * out[base + k * inner];
            for (size_t k = 0; k < len; k++) {
                const size_t i = base + k * inner;
                dinp[i] += out[i] * (dout[i] - (float)dot);
            }
        }
    }
}
