/*
 * Activations of the mobile networks (see act.h). Plain parallel loops;
 * backward selects after loading dout unconditionally, as eltwise.c does.
 * Sigmoid is computed as 1 / (1 + exp(-x)), which saturates cleanly to 0
 * and 1 for large |x| (exp overflows to inf, giving exactly 0).
 */
#include "worker/nn/act.h"

#include <math.h>

void nn_sigmoid_forward(float *out, const float *inp, size_t n)
{
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++)
        out[i] = nn_sigmoid(inp[i]);
}

void nn_sigmoid_backward(float *dinp, const float *dout, const float *out, size_t n)
{
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; i++)
        dinp[i] += dout[i] * out[i] * (1.0f - out[i]);
}

void nn_hardsigmoid_forward(float *out, const float *inp, size_t n, float alpha, float beta)
{
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; i++) {
        const float v = alpha * inp[i] + beta;
        out[i] = v > 0.0f ? (v < 1.0f ? v : 1.0f) : 0.0f;
    }
}

void nn_hardsigmoid_backward(float *dinp, const float *dout, const float *inp, size_t n,
                             float alpha, float beta)
{
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; i++) {
        const float g = dout[i] * alpha, v = alpha * inp[i] + beta;
        dinp[i] += (v > 0.0f) & (v < 1.0f) ? g : 0.0f;
    }
}

void nn_hardswish_forward(float *out, const float *inp, size_t n)
{
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; i++) {
        const float x = inp[i], v = x / 6.0f + 0.5f;
        out[i] = x * (v > 0.0f ? (v < 1.0f ? v : 1.0f) : 0.0f);
    }
}

void nn_hardswish_backward(float *dinp, const float *dout, const float *inp, size_t n)
{
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; i++) {
        /* d/dx x * (x/6 + 1/2) = x/3 + 1/2 inside (-3, 3); 0 below, 1 above. */
        const float g = dout[i], x = inp[i];
        const float d = x <= -3.0f ? 0.0f : x >= 3.0f ? 1.0f : x / 3.0f + 0.5f;
        dinp[i] += g * d;
    }
}

void nn_silu_forward(float *out, const float *inp, size_t n)
{
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++)
        out[i] = inp[i] * nn_sigmoid(inp[i]);
}

void nn_silu_backward(float *dinp, const float *dout, const float *inp, size_t n)
{
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) {
        const float s = nn_sigmoid(inp[i]);
        dinp[i] += dout[i] * s * (1.0f + inp[i] * (1.0f - s));
    }
}
