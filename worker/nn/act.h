/*
 * The smooth and piecewise-linear activations of the mobile networks
 * (issue 17) over n floats: Sigmoid, HardSigmoid, HardSwish and SiLU.
 * Backward accumulates into dinp and reads the forward's input (and, for
 * Sigmoid, its output).
 *
 *   hardsigmoid(x) = max(0, min(1, alpha * x + beta))
 *   hardswish(x)   = x * max(0, min(1, x / 6 + 1/2))   (ONNX HardSwish)
 *   silu(x)        = x * sigmoid(x)                    (EfficientNet's swish)
 *
 * At the kinks of HardSigmoid and HardSwish the gradient is the one-sided
 * value PyTorch uses (inside the open interval only).
 */
#ifndef DP_WORKER_NN_ACT_H
#define DP_WORKER_NN_ACT_H

#include <math.h>
#include <stddef.h>

/* One element: the activations below and the recurrent gates use it. */
static inline float nn_sigmoid(float x)
{
    return 1.0f / (1.0f + expf(-x));
}

void nn_sigmoid_forward(float *out, const float *inp, size_t n);
void nn_sigmoid_backward(float *dinp, const float *dout, const float *out, size_t n);
void nn_hardsigmoid_forward(float *out, const float *inp, size_t n, float alpha, float beta);
void nn_hardsigmoid_backward(float *dinp, const float *dout, const float *inp, size_t n,
                             float alpha, float beta);
void nn_hardswish_forward(float *out, const float *inp, size_t n);
void nn_hardswish_backward(float *dinp, const float *dout, const float *inp, size_t n);
void nn_silu_forward(float *out, const float *inp, size_t n);
void nn_silu_backward(float *dinp, const float *dout, const float *inp, size_t n);

#endif
