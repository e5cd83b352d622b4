/*
 * Max, average and global average pooling (see pool.h). Every loop runs
 * over (image, channel) planes, which own disjoint outputs and input
 * gradients, so the team needs no atomics.
 */
#include "worker/nn/pool.h"

#include <float.h>
#include <stddef.h>

/* The common 2x2 stride-2 unpadded window, written so that the compiler
 * vectorises it (selects, not branches: the comparisons are unpredictable
 * on real activations). Same tie rule as the general loop: the first
 * maximum in scan order wins. NaN inputs are not propagated here, but a NaN
 * there means training has already diverged and the loss check stops it. */
__attribute__((target_clones("avx2", "default"))) static void
pool_max2x2(float *restrict y, int *restrict am, const float *restrict x, int W, int OH, int OW)
{
    for (int oh = 0; oh < OH; oh++) {
        const float *r0 = x + (size_t)(2 * oh) * (size_t)W;
        const float *r1 = r0 + W;
        const int base = 2 * oh * W;
        float *yo = y + (size_t)oh * (size_t)OW;
        int *ao = am + (size_t)oh * (size_t)OW;
#pragma omp simd
        for (int ow = 0; ow < OW; ow++) {
            const float a = r0[2 * ow], b = r0[2 * ow + 1];
            const float c = r1[2 * ow], e = r1[2 * ow + 1];
            const int g1 = b > a, g2 = e > c;
            const float m1 = g1 ? b : a, m2 = g2 ? e : c;
            const int g = m2 > m1;
            yo[ow] = g ? m2 : m1;
            ao[ow] = base + 2 * ow + (g ? W + g2 : g1);
        }
    }
}

void nn_maxpool_forward(float *out, int *argmax, const float *inp, const struct nn_pool_dims *d)
{
    const int fast = d->kh == 2 && d->kw == 2 && d->sh == 2 && d->sw == 2 && d->pt == 0 &&
                     d->pl == 0 && 2 * d->OH <= d->H && 2 * d->OW <= d->W;
    const size_t iplane = (size_t)d->H * (size_t)d->W, oplane = (size_t)d->OH * (size_t)d->OW;
    const int planes = d->B * d->C;
#pragma omp parallel for schedule(static)
    for (int pc = 0; pc < planes; pc++) {
        const float *x = inp + (size_t)pc * iplane;
        float *y = out + (size_t)pc * oplane;
        int *am = argmax + (size_t)pc * oplane;
        if (fast) {
            pool_max2x2(y, am, x, d->W, d->OH, d->OW);
            continue;
        }
        for (int oh = 0; oh < d->OH; oh++) {
            for (int ow = 0; ow < d->OW; ow++) {
                float best = -FLT_MAX;
                int besti = -1;
                for (int ki = 0; ki < d->kh; ki++) {
                    const int ih = oh * d->sh - d->pt + ki;
                    if (ih < 0 || ih >= d->H)
                        continue;
                    for (int kj = 0; kj < d->kw; kj++) {
                        const int iw = ow * d->sw - d->pl + kj;
                        if (iw < 0 || iw >= d->W)
                            continue;
                        const float v = x[ih * d->W + iw];
                        /* NaN propagates like PyTorch: a NaN wins the window. */
                        if (besti < 0 || v > best || v != v) {
                            best = v;
                            besti = ih * d->W + iw;
                        }
                    }
                }
                y[oh * d->OW + ow] = best;
                am[oh * d->OW + ow] = besti;
            }
        }
    }
}

void nn_maxpool_backward(float *dinp, const float *dout, const int *argmax,
                         const struct nn_pool_dims *d)
{
    const size_t iplane = (size_t)d->H * (size_t)d->W, oplane = (size_t)d->OH * (size_t)d->OW;
    const int planes = d->B * d->C;
#pragma omp parallel for schedule(static)
    for (int pc = 0; pc < planes; pc++) {
        float *dx = dinp + (size_t)pc * iplane;
        const float *dy = dout + (size_t)pc * oplane;
        const int *am = argmax + (size_t)pc * oplane;
        for (size_t o = 0; o < oplane; o++) {
            if (am[o] >= 0)
                dx[am[o]] += dy[o];
        }
    }
}

/* Divisor of one average window: its positions inside the padded extent,
 * or only the real input positions. */
static int pool_avg_count(const struct nn_pool_dims *d, int oh, int ow)
{
    int h0 = oh * d->sh - d->pt, w0 = ow * d->sw - d->pl;
    int h1 = h0 + d->kh, w1 = w0 + d->kw;
    int hmin = 0, wmin = 0, hmax = d->H, wmax = d->W;
    if (d->count_include_pad) {
        hmin = -d->pt;
        wmin = -d->pl;
        hmax = d->H + d->pb;
        wmax = d->W + d->pr;
    }
    h0 = h0 > hmin ? h0 : hmin;
    w0 = w0 > wmin ? w0 : wmin;
    h1 = h1 < hmax ? h1 : hmax;
    w1 = w1 < wmax ? w1 : wmax;
    return (h1 - h0) * (w1 - w0);
}

void nn_avgpool_forward(float *out, const float *inp, const struct nn_pool_dims *d)
{
    const size_t iplane = (size_t)d->H * (size_t)d->W, oplane = (size_t)d->OH * (size_t)d->OW;
    const int planes = d->B * d->C;
#pragma omp parallel for schedule(static)
    for (int pc = 0; pc < planes; pc++) {
        const float *x = inp + (size_t)pc * iplane;
        float *y = out + (size_t)pc * oplane;
        for (int oh = 0; oh < d->OH; oh++) {
            for (int ow = 0; ow < d->OW; ow++) {
                float s = 0.0f;
                for (int ki = 0; ki < d->kh; ki++) {
                    const int ih = oh * d->sh - d->pt + ki;
                    if (ih < 0 || ih >= d->H)
                        continue;
                    for (int kj = 0; kj < d->kw; kj++) {
                        const int iw = ow * d->sw - d->pl + kj;
                        if (iw >= 0 && iw < d->W)
                            s += x[ih * d->W + iw];
                    }
                }
                const int cnt = pool_avg_count(d, oh, ow);
                y[oh * d->OW + ow] = cnt > 0 ? s / (float)cnt : 0.0f;
            }
        }
    }
}

void nn_avgpool_backward(float *dinp, const float *dout, const struct nn_pool_dims *d)
{
    const size_t iplane = (size_t)d->H * (size_t)d->W, oplane = (size_t)d->OH * (size_t)d->OW;
    const int planes = d->B * d->C;
#pragma omp parallel for schedule(static)
    for (int pc = 0; pc < planes; pc++) {
        float *dx = dinp + (size_t)pc * iplane;
        const float *dy = dout + (size_t)pc * oplane;
        for (int oh = 0; oh < d->OH; oh++) {
            for (int ow = 0; ow < d->OW; ow++) {
                const int cnt = pool_avg_count(d, oh, ow);
                if (cnt <= 0)
                    continue;
                const float g = dy[oh * d->OW + ow] / (float)cnt;
                for (int ki = 0; ki < d->kh; ki++) {
                    const int ih = oh * d->sh - d->pt + ki;
                    if (ih < 0 || ih >= d->H)
                        continue;
                    for (int kj = 0; kj < d->kw; kj++) {
                        const int iw = ow * d->sw - d->pl + kj;
                        if (iw >= 0 && iw < d->W)
                            dx[ih * d->W + iw] += g;
                    }
                }
            }
        }
    }
}

void nn_gap_forward(float *out, const float *inp, int B, int C, int HW)
{
    const int planes = B * C;
#pragma omp parallel for schedule(static)
    for (int pc = 0; pc < planes; pc++) {
        const float *x = inp + (size_t)pc * (size_t)HW;
        float s = 0.0f;
        for (int i = 0; i < HW; i++)
            s += x[i];
        out[pc] = s / (float)HW;
    }
}

void nn_gap_backward(float *dinp, const float *dout, int B, int C, int HW)
{
    const int planes = B * C;
#pragma omp parallel for schedule(static)
    for (int pc = 0; pc < planes; pc++) {
        float *dx = dinp + (size_t)pc * (size_t)HW;
        const float g = dout[pc] / (float)HW;
        for (int i = 0; i < HW; i++)
            dx[i] += g;
    }
}

void nn_gap_forward_c16(float *out, const float *inp, int B, int C, int HW)
{
    const int CB = C / 16;
#pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < B; b++) {
        for (int cb = 0; cb < CB; cb++) {
            const float *x = inp + ((size_t)b * (size_t)CB + (size_t)cb) * (size_t)HW * 16;
            float s[16] = {0};
            for (int i = 0; i < HW; i++) {
                for (int l = 0; l < 16; l++)
                    s[l] += x[(size_t)i * 16 + (size_t)l];
            }
            for (int l = 0; l < 16; l++)
                out[(size_t)b * (size_t)C + (size_t)(cb * 16 + l)] = s[l] / (float)HW;
        }
    }
}

void nn_gap_backward_c16(float *dinp, const float *dout, int B, int C, int HW)
{
    const int CB = C / 16;
#pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < B; b++) {
        for (int cb = 0; cb < CB; cb++) {
            float *dx = dinp + ((size_t)b * (size_t)CB + (size_t)cb) * (size_t)HW * 16;
            float g[16];
            for (int l = 0; l < 16; l++)
                g[l] = dout[(size_t)b * (size_t)C + (size_t)(cb * 16 + l)] / (float)HW;
            for (int i = 0; i < HW; i++) {
                for (int l = 0; l < 16; l++)
                    dx[(size_t)i * 16 + (size_t)l] += g[l];
            }
        }
    }
}
