/*
 * Element-wise layers over n floats: ReLU, ReLU6, residual Add, Dropout.
 * Backward accumulates into the input gradients.
 *
 * Dropout is inverted dropout: kept values are scaled by 1/(1-p) in
 * training, and eval is the identity. Its keep mask comes from a
 * counter-based hash of (seed, index), so it depends on the seed and the
 * step, never on thread count or scheduling.
 */
#ifndef DP_WORKER_NN_ELTWISE_H
#define DP_WORKER_NN_ELTWISE_H

#include <stddef.h>
#include <stdint.h>

void nn_relu_forward(float *out, const float *inp, size_t n);
void nn_relu_backward(float *dinp, const float *dout, const float *inp, size_t n);
void nn_relu6_forward(float *out, const float *inp, size_t n);
void nn_relu6_backward(float *dinp, const float *dout, const float *inp, size_t n);

/* Clip (ONNX): out = min(max(inp, lo), hi); the gradient passes where lo < inp < hi. */
void nn_clip_forward(float *out, const float *inp, size_t n, float lo, float hi);
void nn_clip_backward(float *dinp, const float *dout, const float *inp, size_t n, float lo,
                      float hi);

/* The backward of a copy (Reshape): dinp += dout. */
void nn_copy_backward(float *dinp, const float *dout, size_t n);

/* out = a + b; backward adds dout to both da and db. */
void nn_add_forward(float *out, const float *a, const float *b, size_t n);
void nn_add_backward(float *da, float *db, const float *dout, size_t n);

/* mask (n bytes) is written by forward and read by backward. */
void nn_dropout_forward(float *out, uint8_t *mask, const float *inp, size_t n, float p,
                        uint64_t seed);
void nn_dropout_backward(float *dinp, const float *dout, const uint8_t *mask, size_t n, float p);

#endif
