/*
 * Softmax as a layer (ONNX Softmax), over a strided axis: the input is
 * viewed as (outer, len, inner) and each of the outer*inner vectors of len
 * values (stride inner) is normalised. ONNX's single-axis softmax (opset
 * 13) and its coerced-2D form (opsets 1-12, inner = 1) are both this shape.
 * Backward accumulates into dinp.
 */
#ifndef DP_WORKER_NN_SOFTMAX_H
#define DP_WORKER_NN_SOFTMAX_H

#include <stddef.h>

/* out, inp: (outer, len, inner). */
void nn_softmax_forward(float *out, const float *inp, size_t outer, size_t len, size_t inner);

/* dinp += out * (dout - sum_len(dout * out)); out is the forward's output. */
void nn_softmax_backward(float *dinp, const float *dout, const float *out, size_t outer, size_t len,
                         size_t inner);

#endif
