/* Channel shuffle (see shuffle.h): one H*W plane copied per (sample, channel). */
#include "worker/nn/shuffle.h"

#include <string.h>

void nn_shuffle_forward(float *out, const float *inp, int n, int c, size_t hw, int groups)
{
    const int per = c / groups;
    const long rows = (long)n * c;
#pragma omp parallel for schedule(static)
    for (long r = 0; r < rows; r++) {
        const long s = r / c;
        const int oc = (int)(r % c), j = oc / groups, i = oc % groups;
        memcpy(out + (size_t)r * hw, inp + ((size_t)s * c + (size_t)i * per + j) * hw,
               hw * sizeof(float));
    }
}

void nn_shuffle_backward(float *dinp, const float *dout, int n, int c, size_t hw, int groups)
{
    const int per = c / groups;
    const long rows = (long)n * c;
#pragma omp parallel for schedule(static)
    for (long r = 0; r < rows; r++) {
        const long s = r / c;
        const int oc = (int)(r % c), j = oc / groups, i = oc % groups;
        float *d = dinp + ((size_t)s * c + (size_t)i * per + j) * hw;
        const float *g = dout + (size_t)r * hw;
        for (size_t k = 0; k < hw; k++)
            d[k] += g[k];
    }
}
