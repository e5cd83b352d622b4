/*
 * Concatenation layer (see concat.h): row copies for the forward, row
 * additions for the backward.
 */
#include "worker/nn/concat.h"

#include <string.h>

void nn_concat_forward(float *out, const float *a, const float *b, size_t outer, size_t a_len,
                       size_t b_len)
{
    const size_t row = a_len + b_len;
#pragma omp parallel for schedule(static)
    for (size_t o = 0; o < outer; o++) {
        memcpy(out + o * row, a + o * a_len, a_len * sizeof(float));
        memcpy(out + o * row + a_len, b + o * b_len, b_len * sizeof(float));
    }
}

void nn_concat_backward(float *da, float *db, const float *dout, size_t outer, size_t a_len,
                        size_t b_len)
{
    const size_t row = a_len + b_len;
#pragma omp parallel for schedule(static)
    for (size_t o = 0; o < outer; o++) {
        const float *g = dout + o * row;
        if (da != NULL) {
            for (size_t i = 0; i < a_len; i++)
                da[o * a_len + i] += g[i];
        }
        if (db != NULL) {
            for (size_t i = 0; i < b_len; i++)
                db[o * b_len + i] += g[a_len + i];
        }
    }
}
