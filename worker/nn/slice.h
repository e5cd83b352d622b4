/*
 * A contiguous range of one axis (ONNX Slice with step 1, and each output
 * of Split). The input is viewed as (outer, len, inner) around the sliced
 * axis; the output is (outer, end - start, inner). Backward adds the
 * output gradient into the range of the input gradient.
 */
#ifndef DP_WORKER_NN_SLICE_H
#define DP_WORKER_NN_SLICE_H

#include <stddef.h>

void nn_slice_forward(float *out, const float *inp, size_t outer, size_t len, size_t inner,
                      size_t start, size_t end);
void nn_slice_backward(float *dinp, const float *dout, size_t outer, size_t len, size_t inner,
                       size_t start, size_t end);

#endif
