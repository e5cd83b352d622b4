/* Mean over an axis range (see mean.h), summed in double for stable results. */
#include "worker/nn/mean.h"

void nn_mean_forward(float *out, const float *inp, size_t outer, size_t len, size_t inner)
{
#pragma omp parallel for schedule(static)
    for (size_t o = 0; o < outer; o++) {
        for (size_t j = 0; j < inner; j++) {
            double s = 0.0;
            for (size_t k = 0; k < len; k++)
                s += inp[(o * len + k) * inner + j];
            out[o * inner + j] = (float)(s / (double)len);
        }
    }
}

void nn_mean_backward(float *dinp, const float *dout, size_t outer, size_t len, size_t inner)
{
    const float r = 1.0f / (float)len;
#pragma omp parallel for schedule(static)
    for (size_t o = 0; o < outer; o++) {
        for (size_t k = 0; k < len; k++) {
            for (size_t j = 0; j < inner; j++)
                dinp[(o * len + k) * inner + j] += dout[o * inner + j] * r;
        }
    }
}
