/*
 * BatchNorm2d (see batchnorm.h). Every loop is per channel, and a channel's
 * statistics are reduced by one thread in a fixed order (double
 * accumulators), so results are identical for any thread count.
 */
#include "worker/nn/batchnorm.h"

#include <math.h>
#include <stddef.h>

void nn_bn2d_forward_train(float *out, float *mean, float *rstd, float *running_mean,
                           float *running_var, const float *inp, const float *gamma,
                           const float *beta, int B, int C, int HW, float eps, float momentum)
{
    const double n = (double)B * (double)HW;
#pragma omp parallel for schedule(static)
    for (int c = 0; c < C; c++) {
        /* One pass for both moments, in double: activations are O(1) and n is
         * at most a few million, so the cancellation in E[x^2] - E[x]^2 costs
         * far less than float precision while saving a sweep over memory. */
        double s = 0.0, sq = 0.0;
        for (int b = 0; b < B; b++) {
            const float *x = inp + ((size_t)b * (size_t)C + (size_t)c) * (size_t)HW;
            float fs = 0.0f, fq = 0.0f;
            for (int i = 0; i < HW; i++) {
                fs += x[i];
                fq += x[i] * x[i];
            }
            s += fs;
            sq += fq;
        }
        const double mu = s / n;
        double v = sq - s * mu;
        v = v > 0.0 ? v : 0.0;
        const double var = v / n;
        const float r = (float)(1.0 / sqrt(var + (double)eps));
        mean[c] = (float)mu;
        rstd[c] = r;
        const float scale = gamma[c] * r, shift = beta[c] - (float)mu * scale;
        for (int b = 0; b < B; b++) {
            const size_t off = ((size_t)b * (size_t)C + (size_t)c) * (size_t)HW;
            for (int i = 0; i < HW; i++)
                out[off + (size_t)i] = inp[off + (size_t)i] * scale + shift;
        }
        const double unbiased = n > 1.0 ? var * n / (n - 1.0) : var;
        running_mean[c] = (1.0f - momentum) * running_mean[c] + momentum * (float)mu;
        running_var[c] = (1.0f - momentum) * running_var[c] + momentum * (float)unbiased;
    }
}

void nn_bn2d_forward_eval(float *out, const float *inp, const float *gamma, const float *beta,
                          const float *running_mean, const float *running_var, int B, int C, int HW,
                          float eps)
{
#pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < B; b++) {
        for (int c = 0; c < C; c++) {
            const float scale = gamma[c] / sqrtf(running_var[c] + eps);
            const float shift = beta[c] - running_mean[c] * scale;
            const size_t off = ((size_t)b * (size_t)C + (size_t)c) * (size_t)HW;
            for (int i = 0; i < HW; i++)
                out[off + (size_t)i] = inp[off + (size_t)i] * scale + shift;
        }
    }
}

void nn_bn2d_backward(float *dinp, float *dgamma, float *dbeta, const float *dout, const float *inp,
                      const float *gamma, const float *mean, const float *rstd, int B, int C,
                      int HW)
{
    const double n = (double)B * (double)HW;
#pragma omp parallel for schedule(static)
    for (int c = 0; c < C; c++) {
        const float mu = mean[c], r = rstd[c];
        double sg = 0.0, sgx = 0.0;
        for (int b = 0; b < B; b++) {
            const size_t off = ((size_t)b * (size_t)C + (size_t)c) * (size_t)HW;
            for (int i = 0; i < HW; i++) {
                const float g = dout[off + (size_t)i];
                sg += g;
                sgx += (double)g * (double)((inp[off + (size_t)i] - mu) * r);
            }
        }
        if (dbeta != NULL)
            dbeta[c] += (float)sg;
        if (dgamma != NULL)
            dgamma[c] += (float)sgx;
        if (dinp == NULL)
            continue;
        const float k = gamma[c] * r;
        const float mg = (float)(sg / n), mgx = (float)(sgx / n);
        for (int b = 0; b < B; b++) {
            const size_t off = ((size_t)b * (size_t)C + (size_t)c) * (size_t)HW;
            for (int i = 0; i < HW; i++) {
                const float xhat = (inp[off + (size_t)i] - mu) * r;
                dinp[off + (size_t)i] += k * (dout[off + (size_t)i] - mg - xhat * mgx);
            }
        }
    }
}
