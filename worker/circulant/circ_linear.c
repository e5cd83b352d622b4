/*
 * The block-circulant fully connected layer (circ_linear.h): the FFT
 * product of circ_fft.c plus the bias.
 */
#include "worker/circulant/circ_linear.h"

#include "worker/circulant/circ_int.h"

void circ_linear_forward(struct circ_op *op, float *out, const float *inp, const float *w,
                         const float *bias, int B)
{
    const int n_out = op->d.rows, n_in = op->d.cols;
    circ_op_load(op, w);
    circ_op_forward(op, out, n_out, inp, n_in, B, 0);
    if (bias == NULL)
        return;
    for (int b = 0; b < B; b++)
        for (int o = 0; o < n_out; o++)
            out[(size_t)b * n_out + o] += bias[o];
}

void circ_linear_backward(struct circ_op *op, float *dinp, float *dw, float *dbias,
                          const float *dout, const float *inp, int B)
{
    const int n_out = op->d.rows, n_in = op->d.cols;
    if (dbias != NULL)
        for (int b = 0; b < B; b++)
            for (int o = 0; o < n_out; o++)
                dbias[o] += dout[(size_t)b * n_out + o];
    circ_op_backward(op, dinp, dw, dout, n_out, inp, n_in, B);
}
