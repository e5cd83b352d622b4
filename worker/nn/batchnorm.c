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

/* ---- NCHW16C ------------------------------------------------------------- */

/* Each thread takes whole blocks of 16 channels: a block's lanes sit side by
 * side in memory, so one sweep reads each cache line once and the lane loop
 * vectorises. Sums per lane are reduced in a fixed order (deterministic). */

void nn_bn2d_forward_train_c16(float *out, float *mean, float *rstd, float *running_mean,
                               float *running_var, const float *inp, const float *gamma,
                               const float *beta, int B, int C, int HW, float eps, float momentum)
{
    const int CB = C / 16;
    const double n = (double)B * (double)HW;
#pragma omp parallel for schedule(static)
    for (int cb = 0; cb < CB; cb++) {
        double s[16] = {0}, sq[16] = {0};
        for (int b = 0; b < B; b++) {
            const float *x = inp + ((size_t)b * (size_t)CB + (size_t)cb) * (size_t)HW * 16;
            float fs[16] = {0}, fq[16] = {0};
            for (int i = 0; i < HW; i++) {
                for (int l = 0; l < 16; l++) {
                    const float v = x[(size_t)i * 16 + (size_t)l];
                    fs[l] += v;
                    fq[l] += v * v;
                }
            }
            for (int l = 0; l < 16; l++) {
                s[l] += fs[l];
                sq[l] += fq[l];
            }
        }
        float scale[16], shift[16];
        for (int l = 0; l < 16; l++) {
            const int c = cb * 16 + l;
            const double mu = s[l] / n;
            double v = sq[l] - s[l] * mu;
            v = v > 0.0 ? v / n : 0.0;
            const float r = (float)(1.0 / sqrt(v + (double)eps));
            mean[c] = (float)mu;
            rstd[c] = r;
            scale[l] = gamma[c] * r;
            shift[l] = beta[c] - (float)mu * scale[l];
            const double unbiased = n > 1.0 ? v * n / (n - 1.0) : v;
            running_mean[c] = (1.0f - momentum) * running_mean[c] + momentum * (float)mu;
            running_var[c] = (1.0f - momentum) * running_var[c] + momentum * (float)unbiased;
        }
        for (int b = 0; b < B; b++) {
            const size_t off = ((size_t)b * (size_t)CB + (size_t)cb) * (size_t)HW * 16;
            for (int i = 0; i < HW; i++) {
                for (int l = 0; l < 16; l++) {
                    const size_t k = off + (size_t)i * 16 + (size_t)l;
                    out[k] = inp[k] * scale[l] + shift[l];
                }
            }
        }
    }
}

void nn_bn2d_forward_eval_c16(float *out, const float *inp, const float *gamma, const float *beta,
                              const float *running_mean, const float *running_var, int B, int C,
                              int HW, float eps)
{
    const int CB = C / 16;
#pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < B; b++) {
        for (int cb = 0; cb < CB; cb++) {
            float scale[16], shift[16];
            for (int l = 0; l < 16; l++) {
                const int c = cb * 16 + l;
                scale[l] = gamma[c] / sqrtf(running_var[c] + eps);
                shift[l] = beta[c] - running_mean[c] * scale[l];
            }
            const size_t off = ((size_t)b * (size_t)CB + (size_t)cb) * (size_t)HW * 16;
            for (int i = 0; i < HW; i++) {
                for (int l = 0; l < 16; l++) {
                    const size_t k = off + (size_t)i * 16 + (size_t)l;
                    out[k] = inp[k] * scale[l] + shift[l];
                }
            }
        }
    }
}

void nn_bn2d_backward_c16(float *dinp, float *dgamma, float *dbeta, const float *dout,
                          const float *inp, const float *gamma, const float *mean,
                          const float *rstd, int B, int C, int HW)
{
    const int CB = C / 16;
    const double n = (double)B * (double)HW;
#pragma omp parallel for schedule(static)
    for (int cb = 0; cb < CB; cb++) {
        float mu[16], r[16];
        for (int l = 0; l < 16; l++) {
            mu[l] = mean[cb * 16 + l];
            r[l] = rstd[cb * 16 + l];
        }
        double sg[16] = {0}, sgx[16] = {0};
        for (int b = 0; b < B; b++) {
            const size_t off = ((size_t)b * (size_t)CB + (size_t)cb) * (size_t)HW * 16;
            float fg[16] = {0}, fgx[16] = {0};
            for (int i = 0; i < HW; i++) {
                for (int l = 0; l < 16; l++) {
                    const size_t k = off + (size_t)i * 16 + (size_t)l;
                    const float g = dout[k];
                    fg[l] += g;
                    fgx[l] += g * ((inp[k] - mu[l]) * r[l]);
                }
            }
            for (int l = 0; l < 16; l++) {
                sg[l] += fg[l];
                sgx[l] += fgx[l];
            }
        }
        float kk[16], mg[16], mgx[16];
        for (int l = 0; l < 16; l++) {
            const int c = cb * 16 + l;
            if (dbeta != NULL)
                dbeta[c] += (float)sg[l];
            if (dgamma != NULL)
                dgamma[c] += (float)sgx[l];
            kk[l] = gamma[c] * r[l];
            mg[l] = (float)(sg[l] / n);
            mgx[l] = (float)(sgx[l] / n);
        }
        if (dinp == NULL)
            continue;
        for (int b = 0; b < B; b++) {
            const size_t off = ((size_t)b * (size_t)CB + (size_t)cb) * (size_t)HW * 16;
            for (int i = 0; i < HW; i++) {
                for (int l = 0; l < 16; l++) {
                    const size_t k = off + (size_t)i * 16 + (size_t)l;
                    const float xhat = (inp[k] - mu[l]) * r[l];
                    dinp[k] += kk[l] * (dout[k] - mg[l] - xhat * mgx[l]);
                }
            }
        }
    }
}
