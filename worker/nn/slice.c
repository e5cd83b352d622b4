/* Slicing one axis (see slice.h): one contiguous block copy per outer index. */
#include "worker/nn/slice.h"

#include <string.h>

void nn_slice_forward(float *out, const float *inp, size_t outer, size_t len, size_t inner,
                      size_t start, size_t end)
{
    const size_t blk = (end - start) * inner;
#pragma omp parallel for schedule(static)
    for (size_t o = 0; o < outer; o++)
        memcpy(out + o * blk, inp + (o * len + start) * inner, blk * sizeof(float));
}

void nn_slice_backward(float *dinp, const float *dout, size_t outer, size_t len, size_t inner,
                       size_t start, size_t end)
{
    const size_t blk = (end - start) * inner;
#pragma omp parallel for schedule(static)
    for (size_t o = 0; o < outer; o++) {
        float *d = dinp + (o * len + start) * inner;
        const float *g = dout + o * blk;
        for (size_t i = 0; i < blk; i++)
            d[i] += g[i];
    }
}
