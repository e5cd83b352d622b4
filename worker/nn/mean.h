/*
 * Mean over a contiguous range of axes (ONNX ReduceMean other than the
 * global average pool): the input viewed as (outer, len, inner) becomes
 * (outer, 1, inner). Backward spreads dout / len over the range,
 * accumulated.
 */
#ifndef DP_WORKER_NN_MEAN_H
#define DP_WORKER_NN_MEAN_H

#include <stddef.h>

void nn_mean_forward(float *out, const float *inp, size_t outer, size_t len, size_t inner);
void nn_mean_backward(float *dinp, const float *dout, size_t outer, size_t len, size_t inner);

#endif
