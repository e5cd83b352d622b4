/*
 * Element-wise layers (see eltwise.h). Plain parallel loops that the
 * compiler vectorises at -O3. Backward loops load the incoming gradient
 * unconditionally before selecting: `c ? dout[i] : 0` makes the load itself
 * conditional, which compiles to a branch per element that mispredicts on
 * real activations (it was 45x slower than the forward).
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
    for (size_t i = 0; i < n; i++) {
        const float g = dout[i];
        dinp[i] += inp[i] > 0.0f ? g : 0.0f;
    }
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
    for (size_t i = 0; i < n; i++) {
        const float g = dout[i], x = inp[i];
        dinp[i] += (x > 0.0f) & (x < 6.0f) ? g : 0.0f;
    }
}

void nn_clip_forward(float *out, const float *inp, size_t n, float lo, float hi)
{
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; i++) {
        const float v = inp[i] > lo ? inp[i] : lo;
        out[i] = v < hi ? v : hi;
    }
}

void nn_clip_backward(float *dinp, const float *dout, const float *inp, size_t n, float lo,
                      float hi)
{
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; i++) {
        const float g = dout[i], x = inp[i];
        dinp[i] += (x > lo) & (x < hi) ? g : 0.0f;
    }
}

void nn_copy_backward(float *dinp, const float *dout, size_t n)
{
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; i++)
        dinp[i] += dout[i];
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
    for (size_t i = 0; i < n; i++) {
        const float g = dout[i] * scale;
        dinp[i] += mask[i] ? g : 0.0f;
    }
}
