/*
 * 2-D convolution forward and backward (see conv2d.h).
 *
 * DESIGN: the fast path lowers the whole batch at once. For each group g,
 * im2col writes col[Kg][B*P] (Kg = C/groups*kh*kw, P = OH*OW), one GEMM
 * multiplies the group's weights with it into tmp[OCg][B*P], and a
 * transposing copy scatters tmp into NCHW while adding the bias. One large
 * GEMM per group keeps BLAS efficient at small spatial sizes (LeNet's 8x8
 * maps), where per-image GEMMs would be too small to thread well.
 *
 * Backward reuses the same scratch: dout is gathered into tmp, im2col is
 * recomputed (cheaper than keeping every layer's col alive), the weight
 * gradient is tmp · colᵀ, and colᵀ is then overwritten by Wᵀ · tmp and
 * scattered back with col2im. col2im parallelises over (image, channel)
 * pairs, which own disjoint input planes, so no atomics are needed and the
 * result does not depend on the thread count.
 *
 * Depthwise convolutions (one input channel per group) skip the lowering:
 * their GEMMs would have K = kh*kw and M = 1, so direct loops win.
 */
#include "worker/nn/conv2d.h"

#include <cblas.h>
#include <string.h>

static int conv_is_direct(const struct nn_conv2d_dims *d)
{
    return d->groups > 1 && d->C / d->groups == 1;
}

size_t nn_conv2d_scratch_floats(const struct nn_conv2d_dims *d)
{
    if (conv_is_direct(d))
        return 0;
    size_t kg = (size_t)(d->C / d->groups) * (size_t)d->kh * (size_t)d->kw;
    size_t n = (size_t)d->B * (size_t)d->OH * (size_t)d->OW;
    size_t ocg = (size_t)(d->OC / d->groups);
    return kg * n + ocg * n;
}

/* ---- Lowering ------------------------------------------------------------ */

/* The range [lo, hi) of output columns whose input column ow*s + off lies
 * inside [0, W); hoisting it keeps the inner loops free of bounds tests. */
static void conv_ow_range(int OW, int W, int s, int off, int *lo, int *hi)
{
    int a = off >= 0 ? 0 : (-off + s - 1) / s;
    int b = W - off <= 0 ? 0 : (W - off + s - 1) / s;
    *lo = a;
    *hi = b < OW ? b : OW;
    if (*hi < *lo)
        *hi = *lo;
}

/* col[r][b*P + p] for rows r = (c, ki, kj) of group g. */
static void conv_im2col(float *col, const float *inp, const struct nn_conv2d_dims *d, int g)
{
    const int cg = d->C / d->groups, kk = d->kh * d->kw;
    const int rows = cg * kk, P = d->OH * d->OW;
    const size_t n = (size_t)d->B * (size_t)P;
    const size_t plane = (size_t)d->H * (size_t)d->W;
#pragma omp parallel for schedule(static)
    for (int r = 0; r < rows; r++) {
        const int c = r / kk, ki = (r % kk) / d->kw, kj = r % d->kw;
        float *dst = col + (size_t)r * n;
        for (int b = 0; b < d->B; b++) {
            const float *src = inp + ((size_t)b * (size_t)d->C + (size_t)(g * cg + c)) * plane;
            float *row = dst + (size_t)b * (size_t)P;
            for (int oh = 0; oh < d->OH; oh++) {
                const int ih = oh * d->sh - d->pt + ki * d->dh;
                float *o = row + (size_t)oh * (size_t)d->OW;
                if (ih < 0 || ih >= d->H) {
                    memset(o, 0, (size_t)d->OW * sizeof(float));
                    continue;
                }
                const float *s = src + (size_t)ih * (size_t)d->W;
                const int off = kj * d->dw - d->pl;
                if (d->sw == 1 && off >= 0 && off + d->OW <= d->W) {
                    memcpy(o, s + off, (size_t)d->OW * sizeof(float));
                    continue;
                }
                int lo, hi;
                conv_ow_range(d->OW, d->W, d->sw, off, &lo, &hi);
                for (int ow = 0; ow < lo; ow++)
                    o[ow] = 0.0f;
                for (int ow = lo; ow < hi; ow++)
                    o[ow] = s[ow * d->sw + off];
                for (int ow = hi; ow < d->OW; ow++)
                    o[ow] = 0.0f;
            }
        }
    }
}

/* dinp += col2im(col) for group g; parallel over (image, channel) planes. */
static void conv_col2im(float *dinp, const float *col, const struct nn_conv2d_dims *d, int g)
{
    const int cg = d->C / d->groups, kk = d->kh * d->kw, P = d->OH * d->OW;
    const size_t n = (size_t)d->B * (size_t)P;
    const size_t plane = (size_t)d->H * (size_t)d->W;
#pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < d->B; b++) {
        for (int c = 0; c < cg; c++) {
            float *dst = dinp + ((size_t)b * (size_t)d->C + (size_t)(g * cg + c)) * plane;
            for (int k = 0; k < kk; k++) {
                const int ki = k / d->kw, kj = k % d->kw;
                const float *row = col + (size_t)(c * kk + k) * n + (size_t)b * (size_t)P;
                const int off = kj * d->dw - d->pl;
                int lo, hi;
                conv_ow_range(d->OW, d->W, d->sw, off, &lo, &hi);
                for (int oh = 0; oh < d->OH; oh++) {
                    const int ih = oh * d->sh - d->pt + ki * d->dh;
                    if (ih < 0 || ih >= d->H)
                        continue;
                    float *drow = dst + (size_t)ih * (size_t)d->W;
                    const float *srow = row + (size_t)oh * (size_t)d->OW;
                    if (d->sw == 1) {
                        float *dd = drow + off;
                        for (int ow = lo; ow < hi; ow++)
                            dd[ow] += srow[ow];
                    } else {
                        for (int ow = lo; ow < hi; ow++)
                            drow[ow * d->sw + off] += srow[ow];
                    }
                }
            }
        }
    }
}

/* ---- Direct depthwise path ----------------------------------------------- */

static void conv_direct_forward(float *out, const float *inp, const float *weight,
                                const float *bias, const struct nn_conv2d_dims *d)
{
    const int mult = d->OC / d->groups;
    const size_t iplane = (size_t)d->H * (size_t)d->W, oplane = (size_t)d->OH * (size_t)d->OW;
#pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < d->B; b++) {
        for (int oc = 0; oc < d->OC; oc++) {
            const float *src = inp + ((size_t)b * (size_t)d->C + (size_t)(oc / mult)) * iplane;
            const float *w = weight + (size_t)oc * (size_t)(d->kh * d->kw);
            float *dst = out + ((size_t)b * (size_t)d->OC + (size_t)oc) * oplane;
            const float b0 = bias ? bias[oc] : 0.0f;
            for (int oh = 0; oh < d->OH; oh++) {
                for (int ow = 0; ow < d->OW; ow++) {
                    float acc = b0;
                    for (int ki = 0; ki < d->kh; ki++) {
                        const int ih = oh * d->sh - d->pt + ki * d->dh;
                        if (ih < 0 || ih >= d->H)
                            continue;
                        for (int kj = 0; kj < d->kw; kj++) {
                            const int iw = ow * d->sw - d->pl + kj * d->dw;
                            if (iw >= 0 && iw < d->W)
                                acc += src[ih * d->W + iw] * w[ki * d->kw + kj];
                        }
                    }
                    dst[oh * d->OW + ow] = acc;
                }
            }
        }
    }
}

static void conv_direct_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                                 const float *inp, const float *weight,
                                 const struct nn_conv2d_dims *d)
{
    const int mult = d->OC / d->groups, kk = d->kh * d->kw;
    const size_t iplane = (size_t)d->H * (size_t)d->W, oplane = (size_t)d->OH * (size_t)d->OW;
    if (dweight != NULL || dbias != NULL) {
#pragma omp parallel for schedule(static)
        for (int oc = 0; oc < d->OC; oc++) {
            for (int b = 0; b < d->B; b++) {
                const float *src =
                    inp + ((size_t)b * (size_t)d->C + (size_t)(oc / mult)) * iplane;
                const float *g = dout + ((size_t)b * (size_t)d->OC + (size_t)oc) * oplane;
                for (int oh = 0; oh < d->OH; oh++) {
                    for (int ow = 0; ow < d->OW; ow++) {
                        const float go = g[oh * d->OW + ow];
                        if (dbias != NULL)
                            dbias[oc] += go;
                        if (dweight == NULL)
                            continue;
                        for (int ki = 0; ki < d->kh; ki++) {
                            const int ih = oh * d->sh - d->pt + ki * d->dh;
                            if (ih < 0 || ih >= d->H)
                                continue;
                            for (int kj = 0; kj < d->kw; kj++) {
                                const int iw = ow * d->sw - d->pl + kj * d->dw;
                                if (iw >= 0 && iw < d->W)
                                    dweight[(size_t)oc * (size_t)kk + (size_t)(ki * d->kw + kj)] +=
                                        go * src[ih * d->W + iw];
                            }
                        }
                    }
                }
            }
        }
    }
    if (dinp == NULL)
        return;
#pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < d->B; b++) {
        for (int c = 0; c < d->C; c++) {
            float *dst = dinp + ((size_t)b * (size_t)d->C + (size_t)c) * iplane;
            for (int m = 0; m < mult; m++) {
                const int oc = c * mult + m;
                const float *w = weight + (size_t)oc * (size_t)kk;
                const float *g = dout + ((size_t)b * (size_t)d->OC + (size_t)oc) * oplane;
                for (int oh = 0; oh < d->OH; oh++) {
                    for (int ki = 0; ki < d->kh; ki++) {
                        const int ih = oh * d->sh - d->pt + ki * d->dh;
                        if (ih < 0 || ih >= d->H)
                            continue;
                        for (int ow = 0; ow < d->OW; ow++) {
                            const float go = g[oh * d->OW + ow];
                            for (int kj = 0; kj < d->kw; kj++) {
                                const int iw = ow * d->sw - d->pl + kj * d->dw;
                                if (iw >= 0 && iw < d->W)
                                    dst[ih * d->W + iw] += go * w[ki * d->kw + kj];
                            }
                        }
                    }
                }
            }
        }
    }
}

/* ---- Forward and backward ------------------------------------------------ */

void nn_conv2d_forward(float *out, float *scratch, const float *inp, const float *weight,
                       const float *bias, const struct nn_conv2d_dims *d)
{
    if (conv_is_direct(d)) {
        conv_direct_forward(out, inp, weight, bias, d);
        return;
    }
    const int cg = d->C / d->groups, ocg = d->OC / d->groups;
    const int kg = cg * d->kh * d->kw, P = d->OH * d->OW;
    const int n = d->B * P;
    float *col = scratch;
    float *tmp = scratch + (size_t)kg * (size_t)n;
    for (int g = 0; g < d->groups; g++) {
        conv_im2col(col, inp, d, g);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, ocg, n, kg, 1.0f,
                    weight + (size_t)g * (size_t)ocg * (size_t)kg, kg, col, n, 0.0f, tmp, n);
#pragma omp parallel for collapse(2) schedule(static)
        for (int b = 0; b < d->B; b++) {
            for (int o = 0; o < ocg; o++) {
                const int oc = g * ocg + o;
                const float b0 = bias ? bias[oc] : 0.0f;
                const float *src = tmp + (size_t)o * (size_t)n + (size_t)b * (size_t)P;
                float *dst = out + ((size_t)b * (size_t)d->OC + (size_t)oc) * (size_t)P;
                for (int p = 0; p < P; p++)
                    dst[p] = src[p] + b0;
            }
        }
    }
}

void nn_conv2d_backward(float *dinp, float *dweight, float *dbias, float *scratch,
                        const float *dout, const float *inp, const float *weight,
                        const struct nn_conv2d_dims *d)
{
    if (conv_is_direct(d)) {
        conv_direct_backward(dinp, dweight, dbias, dout, inp, weight, d);
        return;
    }
    const int cg = d->C / d->groups, ocg = d->OC / d->groups;
    const int kg = cg * d->kh * d->kw, P = d->OH * d->OW;
    const int n = d->B * P;
    float *col = scratch;
    float *tmp = scratch + (size_t)kg * (size_t)n;
    for (int g = 0; g < d->groups; g++) {
        /* tmp[o][b*P + p] = dout[b][g*ocg + o][p]; dbias reduces per channel. */
#pragma omp parallel for schedule(static)
        for (int o = 0; o < ocg; o++) {
            const int oc = g * ocg + o;
            float sum = 0.0f;
            for (int b = 0; b < d->B; b++) {
                const float *src = dout + ((size_t)b * (size_t)d->OC + (size_t)oc) * (size_t)P;
                float *dst = tmp + (size_t)o * (size_t)n + (size_t)b * (size_t)P;
                for (int p = 0; p < P; p++) {
                    dst[p] = src[p];
                    sum += src[p];
                }
            }
            if (dbias != NULL)
                dbias[oc] += sum;
        }
        const float *wg = weight + (size_t)g * (size_t)ocg * (size_t)kg;
        if (dweight != NULL) {
            conv_im2col(col, inp, d, g);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, ocg, kg, n, 1.0f, tmp, n, col,
                        n, 1.0f, dweight + (size_t)g * (size_t)ocg * (size_t)kg, kg);
        }
        if (dinp != NULL) {
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, kg, n, ocg, 1.0f, wg, kg, tmp, n,
                        0.0f, col, n);
            conv_col2im(dinp, col, d, g);
        }
    }
}

/* ---- Naive reference twins ----------------------------------------------- */

void nn_conv2d_forward_ref(float *out, const float *inp, const float *weight, const float *bias,
                           const struct nn_conv2d_dims *d)
{
    const int cg = d->C / d->groups, ocg = d->OC / d->groups;
    for (int b = 0; b < d->B; b++)
        for (int oc = 0; oc < d->OC; oc++)
            for (int oh = 0; oh < d->OH; oh++)
                for (int ow = 0; ow < d->OW; ow++) {
                    const int g = oc / ocg;
                    double acc = bias ? bias[oc] : 0.0;
                    for (int c = 0; c < cg; c++)
                        for (int ki = 0; ki < d->kh; ki++)
                            for (int kj = 0; kj < d->kw; kj++) {
                                const int ih = oh * d->sh - d->pt + ki * d->dh;
                                const int iw = ow * d->sw - d->pl + kj * d->dw;
                                if (ih < 0 || ih >= d->H || iw < 0 || iw >= d->W)
                                    continue;
                                acc += (double)inp[((b * d->C + g * cg + c) * d->H + ih) * d->W +
                                                   iw] *
                                       weight[((oc * cg + c) * d->kh + ki) * d->kw + kj];
                            }
                    out[((b * d->OC + oc) * d->OH + oh) * d->OW + ow] = (float)acc;
                }
}

void nn_conv2d_backward_ref(float *dinp, float *dweight, float *dbias, const float *dout,
                            const float *inp, const float *weight,
                            const struct nn_conv2d_dims *d)
{
    const int cg = d->C / d->groups, ocg = d->OC / d->groups;
    for (int b = 0; b < d->B; b++)
        for (int oc = 0; oc < d->OC; oc++)
            for (int oh = 0; oh < d->OH; oh++)
                for (int ow = 0; ow < d->OW; ow++) {
                    const int g = oc / ocg;
                    const float go = dout[((b * d->OC + oc) * d->OH + oh) * d->OW + ow];
                    if (dbias != NULL)
                        dbias[oc] += go;
                    for (int c = 0; c < cg; c++)
                        for (int ki = 0; ki < d->kh; ki++)
                            for (int kj = 0; kj < d->kw; kj++) {
                                const int ih = oh * d->sh - d->pt + ki * d->dh;
                                const int iw = ow * d->sw - d->pl + kj * d->dw;
                                if (ih < 0 || ih >= d->H || iw < 0 || iw >= d->W)
                                    continue;
                                const int ii = ((b * d->C + g * cg + c) * d->H + ih) * d->W + iw;
                                const int wi = ((oc * cg + c) * d->kh + ki) * d->kw + kj;
                                if (dweight != NULL)
                                    dweight[wi] += go * inp[ii];
                                if (dinp != NULL)
                                    dinp[ii] += go * weight[wi];
                            }
                }
}
