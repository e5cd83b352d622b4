/*
 * Concatenation of two tensors along one axis (ONNX Concat on channels,
 * or on H or W). Both inputs are viewed as (outer, a_len) and (outer,
 * b_len), where a_len and b_len are the joined axis times everything
 * after it; the output is (outer, a_len + b_len). Backward accumulates
 * into both input gradients.
 */
#ifndef DP_WORKER_NN_CONCAT_H
#define DP_WORKER_NN_CONCAT_H

#include <stddef.h>

/* out: (outer, a_len + b_len); a: (outer, a_len); b: (outer, b_len). */
void nn_concat_forward(float *out, const float *a, const float *b, size_t outer, size_t a_len,
                       size_t b_len);

/* da += the a part of dout, db += the b part; either may be NULL (no gradient wanted). */
void nn_concat_backward(float *da, float *db, const float *dout, size_t outer, size_t a_len,
                        size_t b_len);

#endif
