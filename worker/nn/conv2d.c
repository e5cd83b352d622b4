/*
 * 2-D convolution forward and backward (see conv2d.h).
 *
 * DESIGN: the batch is split over an OpenMP team in chunks of nb images;
 * each thread lowers one chunk at a time (im2col of one group into
 * col[Kg][nb*P], Kg = C/groups*kh*kw, P = OH*OW) and calls BLAS, which runs
 * single-threaded inside a parallel region (the OpenMP build of OpenBLAS
 * checks omp_in_parallel). Per chunk and group:
 *
 *   forward   tmp      = W[g] · col;  scatter tmp to out     (OCg x nb*P)
 *   backward  tmp      = gather dout;  dW_t[g] += tmp · colᵀ  (per-thread accumulator)
 *             col      = W[g]ᵀ · tmp;  dinp += col2im(col)
 *
 * nb is chosen so that nb*P is about 256 columns: small maps (LeNet's 8x8)
 * still get GEMMs wide enough to amortise BLAS's packing, while the chunk's
 * col stays in L2 between the lowering and the GEMM. The scratch is small:
 * per thread one col, one tmp, and weight- and bias-gradient accumulators,
 * which are summed in thread order after the team finishes, so results do
 * not depend on scheduling. The team OpenMP grants may be smaller than the
 * one asked for; the reduction covers the granted threads only.
 *
 * Depthwise convolutions (one input channel per group) skip the lowering:
 * their GEMMs would have K = kh*kw and M = 1, so direct loops win.
 */
#include "worker/nn/conv2d.h"

#include <cblas.h>
#include <omp.h>
#include <string.h>

static int conv_is_direct(const struct nn_conv2d_dims *d)
{
    return d->groups > 1 && d->C / d->groups == 1;
}

static int conv_threads(const struct nn_conv2d_dims *d)
{
    int t = d->threads > 1 ? d->threads : 1;
    return t < d->B ? t : d->B;
}

/* Images per chunk: enough for about 256 GEMM columns, at most an equal
 * share of the batch per thread. */
static int conv_nb(const struct nn_conv2d_dims *d)
{
    const int P = d->OH * d->OW;
    int nb = (256 + P - 1) / P;
    int share = (d->B + conv_threads(d) - 1) / conv_threads(d);
    nb = nb < share ? nb : share;
    return nb > 0 ? nb : 1;
}

static size_t conv_kg(const struct nn_conv2d_dims *d)
{
    return (size_t)(d->C / d->groups) * (size_t)d->kh * (size_t)d->kw;
}

static size_t conv_w_floats(const struct nn_conv2d_dims *d)
{
    return (size_t)d->OC * conv_kg(d);
}

/* One thread's slice: col (Kg x nb*P), tmp (OCg x nb*P), dW and dbias accumulators. */
static size_t conv_slice_floats(const struct nn_conv2d_dims *d)
{
    const size_t cols = (size_t)conv_nb(d) * (size_t)d->OH * (size_t)d->OW;
    return conv_kg(d) * cols + (size_t)(d->OC / d->groups) * cols + conv_w_floats(d) +
           (size_t)d->OC;
}

size_t nn_conv2d_scratch_floats(const struct nn_conv2d_dims *d)
{
    if (conv_is_direct(d))
        return 0;
    return (size_t)conv_threads(d) * conv_slice_floats(d);
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

/* col[r][p] (row stride ld) for rows r = (c, ki, kj) of group g of one image. */
static void conv_im2col(float *col, size_t ld, const float *img, const struct nn_conv2d_dims *d,
                        int g)
{
    const int cg = d->C / d->groups, kk = d->kh * d->kw;
    const int rows = cg * kk;
    const size_t plane = (size_t)d->H * (size_t)d->W;
    for (int r = 0; r < rows; r++) {
        const int c = r / kk, ki = (r % kk) / d->kw, kj = r % d->kw;
        const float *src = img + (size_t)(g * cg + c) * plane;
        float *dst = col + (size_t)r * ld;
        const int off = kj * d->dw - d->pl;
        int lo, hi;
        conv_ow_range(d->OW, d->W, d->sw, off, &lo, &hi);
        for (int oh = 0; oh < d->OH; oh++) {
            const int ih = oh * d->sh - d->pt + ki * d->dh;
            float *o = dst + (size_t)oh * (size_t)d->OW;
            if (ih < 0 || ih >= d->H) {
                memset(o, 0, (size_t)d->OW * sizeof(float));
                continue;
            }
            const float *s = src + (size_t)ih * (size_t)d->W;
            for (int ow = 0; ow < lo; ow++)
                o[ow] = 0.0f;
            if (d->sw == 1) {
                memcpy(o + lo, s + lo + off, (size_t)(hi - lo) * sizeof(float));
            } else {
                for (int ow = lo; ow < hi; ow++)
                    o[ow] = s[ow * d->sw + off];
            }
            for (int ow = hi; ow < d->OW; ow++)
                o[ow] = 0.0f;
        }
    }
}

/* img += col2im(col) (row stride ld) for group g of one image. */
static void conv_col2im(float *img, const float *col, size_t ld, const struct nn_conv2d_dims *d,
                        int g)
{
    const int cg = d->C / d->groups, kk = d->kh * d->kw;
    const size_t plane = (size_t)d->H * (size_t)d->W;
    for (int c = 0; c < cg; c++) {
        float *dst = img + (size_t)(g * cg + c) * plane;
        for (int k = 0; k < kk; k++) {
            const int ki = k / d->kw, kj = k % d->kw;
            const float *row = col + (size_t)(c * kk + k) * ld;
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
                const float *src = inp + ((size_t)b * (size_t)d->C + (size_t)(oc / mult)) * iplane;
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
    const int ocg = d->OC / d->groups, kg = (int)conv_kg(d), P = d->OH * d->OW;
    const int nb = conv_nb(d), n_chunks = (d->B + nb - 1) / nb;
    const size_t in_img = (size_t)d->C * (size_t)d->H * (size_t)d->W;
    const size_t out_img = (size_t)d->OC * (size_t)P;
    const size_t ld = (size_t)nb * (size_t)P, slice = conv_slice_floats(d);
#pragma omp parallel num_threads(conv_threads(d))
    {
        float *col = scratch + (size_t)omp_get_thread_num() * slice;
        float *tmp = col + (size_t)kg * ld;
#pragma omp for schedule(static)
        for (int ch = 0; ch < n_chunks; ch++) {
            const int b0 = ch * nb, n = d->B - b0 < nb ? d->B - b0 : nb;
            const int cols = n * P;
            for (int g = 0; g < d->groups; g++) {
                for (int i = 0; i < n; i++)
                    conv_im2col(col + (size_t)i * (size_t)P, ld, inp + (size_t)(b0 + i) * in_img, d,
                                g);
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, ocg, cols, kg, 1.0f,
                            weight + (size_t)g * (size_t)ocg * (size_t)kg, kg, col, (int)ld, 0.0f,
                            tmp, (int)ld);
                for (int i = 0; i < n; i++) {
                    float *o = out + (size_t)(b0 + i) * out_img;
                    for (int oc = g * ocg; oc < (g + 1) * ocg; oc++) {
                        const float b = bias != NULL ? bias[oc] : 0.0f;
                        const float *src = tmp + (size_t)(oc - g * ocg) * ld + (size_t)i * P;
                        float *dst = o + (size_t)oc * (size_t)P;
                        for (int p = 0; p < P; p++)
                            dst[p] = src[p] + b;
                    }
                }
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
    const int ocg = d->OC / d->groups, kg = (int)conv_kg(d), P = d->OH * d->OW;
    const int nt = conv_threads(d), nb = conv_nb(d), n_chunks = (d->B + nb - 1) / nb;
    const size_t in_img = (size_t)d->C * (size_t)d->H * (size_t)d->W;
    const size_t out_img = (size_t)d->OC * (size_t)P;
    const size_t ld = (size_t)nb * (size_t)P, slice = conv_slice_floats(d);
    const size_t nw = conv_w_floats(d);
    const size_t acc_off = (size_t)kg * ld + (size_t)ocg * ld;
    /* OpenMP may grant fewer threads than asked (nested regions, dynamic
     * adjustment, a thread limit): only the granted threads zero and fill
     * their accumulators, so only theirs are reduced below. */
    int granted = 1;
#pragma omp parallel num_threads(nt)
    {
        if (omp_get_thread_num() == 0)
            granted = omp_get_num_threads();
        float *col = scratch + (size_t)omp_get_thread_num() * slice;
        float *tmp = col + (size_t)kg * ld;
        float *dw = col + acc_off; /* this thread's weight-gradient accumulator */
        float *db = dw + nw;
        memset(dw, 0, (nw + (size_t)d->OC) * sizeof(float));
#pragma omp for schedule(static)
        for (int ch = 0; ch < n_chunks; ch++) {
            const int b0 = ch * nb, n = d->B - b0 < nb ? d->B - b0 : nb;
            const int cols = n * P;
            for (int g = 0; g < d->groups; g++) {
                /* tmp[o][i*P + p] = dout[b0+i][g*ocg + o][p]; dbias reduces it. */
                for (int o = 0; o < ocg; o++) {
                    float s = 0.0f;
                    for (int i = 0; i < n; i++) {
                        const float *src =
                            dout + (size_t)(b0 + i) * out_img + (size_t)(g * ocg + o) * (size_t)P;
                        float *dst = tmp + (size_t)o * ld + (size_t)i * P;
                        for (int p = 0; p < P; p++) {
                            dst[p] = src[p];
                            s += src[p];
                        }
                    }
                    db[g * ocg + o] += s;
                }
                if (dweight != NULL) {
                    for (int i = 0; i < n; i++)
                        conv_im2col(col + (size_t)i * (size_t)P, ld,
                                    inp + (size_t)(b0 + i) * in_img, d, g);
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, ocg, kg, cols, 1.0f, tmp,
                                (int)ld, col, (int)ld, 1.0f,
                                dw + (size_t)g * (size_t)ocg * (size_t)kg, kg);
                }
                if (dinp != NULL) {
                    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, kg, cols, ocg, 1.0f,
                                weight + (size_t)g * (size_t)ocg * (size_t)kg, kg, tmp, (int)ld,
                                0.0f, col, (int)ld);
                    for (int i = 0; i < n; i++)
                        conv_col2im(dinp + (size_t)(b0 + i) * in_img, col + (size_t)i * P, ld, d,
                                    g);
                }
            }
        }
    }
    /* Reduce the per-thread accumulators in thread order: deterministic. */
    for (int t = 0; t < granted; t++) {
        const float *dw = scratch + (size_t)t * slice + acc_off;
        const float *db = dw + nw;
        if (dweight != NULL) {
#pragma omp parallel for simd schedule(static) if (nw > 65536)
            for (size_t i = 0; i < nw; i++)
                dweight[i] += dw[i];
        }
        if (dbias != NULL) {
            for (int oc = 0; oc < d->OC; oc++)
                dbias[oc] += db[oc];
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
                                acc +=
                                    (double)inp[((b * d->C + g * cg + c) * d->H + ih) * d->W + iw] *
                                    weight[((oc * cg + c) * d->kh + ki) * d->kw + kj];
                            }
                    out[((b * d->OC + oc) * d->OH + oh) * d->OW + ow] = (float)acc;
                }
}

void nn_conv2d_backward_ref(float *dinp, float *dweight, float *dbias, const float *dout,
                            const float *inp, const float *weight, const struct nn_conv2d_dims *d)
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
