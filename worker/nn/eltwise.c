/*
 * Element-wise layers (see eltwise.h). Plain parallel loops; the compiler
 * vectorises them at -O3.
 */
#include "worker/nn/eltwise.h"

void nn_relu_forward(float *out, const float *inp, size_t n)
{
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; i++)
        out[i] = inp[i] > 0.0f ? inp[i] : 0.0f;
}

void nn_relu_backward(float *dinp, const float *dout, const float *inp, size_t n)
{
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; i++)
        dinp[i] += inp[i] > 0.0f ? dout[i] : 0.0f;
}

void nn_relu6_forward(float *out, const float *inp, size_t n)
{
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; i++) {
        const float v = inp[i] > 0.0f ? inp[i] : 0.0f;
        out[i] = v < 6.0f ? v : 6.0f;
    }
}

void nn_relu6_backward(float *dinp, const float *dout, const float *inp, size_t n)
{
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; i++)
        dinp[i] += (inp[i] > 0.0f && inp[i] < 6.0f) ? dout[i] : 0.0f;
}

void nn_add_forward(float *out, const float *a, const float *b, size_t n)
{
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; i++)
        out[i] = a[i] + b[i];
}

void nn_add_backward(float *da, float *db, const float *dout, size_t n)
{
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; i++) {
        da[i] += dout[i];
        db[i] += dout[i];
    }
}

/* splitmix64 finaliser: a counter-based hash, so element i's draw depends
 * only on (seed, i). */
static uint64_t eltwise_hash(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

void nn_dropout_forward(float *out, uint8_t *mask, const float *inp, size_t n, float p,
                        uint64_t seed)
{
    const float scale = 1.0f / (1.0f - p);
    const uint64_t s = eltwise_hash(seed);
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) {
        const double u = (double)(eltwise_hash(s ^ (uint64_t)i) >> 11) * 0x1.0p-53;
        mask[i] = u >= (double)p;
        out[i] = mask[i] ? inp[i] * scale : 0.0f;
    }
}

void nn_dropout_backward(float *dinp, const float *dout, const uint8_t *mask, size_t n, float p)
{
    const float scale = 1.0f / (1.0f - p);
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; i++)
        dinp[i] += mask[i] ? dout[i] * scale : 0.0f;
}
