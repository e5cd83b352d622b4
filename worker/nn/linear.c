/*
 * Fully connected layer (see linear.h): three GEMMs through CBLAS, which
 * threads them itself; the bias loops are too small to be worth a team.
 */
#include "worker/nn/linear.h"

#include <cblas.h>

void nn_linear_forward(float *out, const float *inp, const float *weight, const float *bias, int B,
                       int n_in, int n_out)
{
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, B, n_out, n_in, 1.0f, inp, n_in, weight,
                n_in, 0.0f, out, n_out);
    if (bias == NULL)
        return;
    for (int b = 0; b < B; b++) {
        float *row = out + (size_t)b * (size_t)n_out;
        for (int o = 0; o < n_out; o++)
            row[o] += bias[o];
    }
}

void nn_linear_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                        const float *inp, const float *weight, int B, int n_in, int n_out)
{
    if (dinp != NULL)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, B, n_in, n_out, 1.0f, dout, n_out,
                    weight, n_in, 1.0f, dinp, n_in);
    if (dweight != NULL)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, n_out, n_in, B, 1.0f, dout, n_out, inp,
                    n_in, 1.0f, dweight, n_in);
    if (dbias != NULL) {
        for (int b = 0; b < B; b++) {
            const float *row = dout + (size_t)b * (size_t)n_out;
            for (int o = 0; o < n_out; o++)
                dbias[o] += row[o];
        }
    }
}

void nn_linear_forward_ref(float *out, const float *inp, const float *weight, const float *bias,
                           int B, int n_in, int n_out)
{
    for (int b = 0; b < B; b++)
        for (int o = 0; o < n_out; o++) {
            double acc = bias ? bias[o] : 0.0;
            for (int i = 0; i < n_in; i++)
                acc += (double)inp[b * n_in + i] * weight[o * n_in + i];
            out[b * n_out + o] = (float)acc;
        }
}
