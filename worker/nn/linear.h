/*
 * Fully connected layer: out = inp · weightᵀ + bias.
 *
 *   inp (B, n_in)   weight (n_out, n_in)   bias (n_out) or NULL   out (B, n_out)
 *
 * (Not I and O: <complex.h>, pulled in by cblas.h, defines I.)
 *
 * Backward accumulates into dinp, dweight and dbias (any may be NULL).
 * No allocation. The *_ref twins are naive loops for tests.
 */
#ifndef DP_WORKER_NN_LINEAR_H
#define DP_WORKER_NN_LINEAR_H

void nn_linear_forward(float *out, const float *inp, const float *weight, const float *bias, int B,
                       int n_in, int n_out);
void nn_linear_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                        const float *inp, const float *weight, int B, int n_in, int n_out);

void nn_linear_forward_ref(float *out, const float *inp, const float *weight, const float *bias,
                           int B, int n_in, int n_out);

#endif
