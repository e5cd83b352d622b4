/*
 * The block-circulant convolution (circ_conv2d.h) in the frequency domain.
 *
 * Layout. A pixel's channel vector is what the circulant blocks act on,
 * so the op's input side has one row per INPUT pixel, (b, h, w) in that
 * order, holding its C channels (xr, zero-padded to q*k), and the output
 * side one row per OUTPUT pixel (b, oh, ow) with its OC channels. Each
 * input pixel is transformed once (q FFTs), whatever the number of taps
 * that read it; every output pixel's spectra sum, over the taps inside
 * the input and the channel blocks,
 *     Y_i(b, oh, ow) = sum_t sum_j F(c_t,ij) * X_j(b, oh*sh - pt + u*dh, ow*sw - pl + v*dw)
 * and are inverted once (p inverse FFTs). Gathering shifted copies of the
 * input per tap (rows = B*OH*OW, one product per tap) would instead cost
 * kh*kw times the FFTs in both directions. The price is the transposition
 * between NCHW and these pixel-major rows on the way in and out.
 *
 * Backward, with G = F(dout) per output pixel:
 *     DW_t,ij = sum over output pixels of G_i * conj(X_j(source pixel))
 *     DX_j(b, h, w) = sum over (tap, output pixel) reading (b, h, w) of
 *                     sum_i conj(F(c_t,ij)) * G_i
 * DX is gathered per input pixel (the output pixels reading it are found
 * by inverting the window arithmetic), so threads split input pixels,
 * output pixels (forward) and (tap, bin) pairs (DW) and never write
 * the same spectrum; sums run in a fixed order whatever the team.
 */
#include "worker/circulant/circ_conv2d.h"

#include <stdint.h>
#include <string.h>

#include "worker/circulant/circ_int.h"

enum dp_err circ_conv2d_op_new(const struct nn_conv2d_dims *d, int k, struct circ_op **op,
                               struct dp_errinfo *ei)
{
    *op = NULL;
    if (d->groups != 1)
        return dp_errinfo_set(ei, DP_EINVAL, "circulant conv2d: groups %d must be 1", d->groups);
    size_t nx = (size_t)d->B * (size_t)d->H * (size_t)d->W;
    size_t ny = (size_t)d->B * (size_t)d->OH * (size_t)d->OW;
    if (nx > INT32_MAX || ny > INT32_MAX)
        return dp_errinfo_set(ei, DP_ETOOBIG,
                              "circulant conv2d: %d images of %dx%d pixels are too many rows", d->B,
                              d->H, d->W);
    struct circ_dims cd;
    circ_dims_init(&cd, d->OC, d->C, k);
    return circ_op_new_ex(&cd, d->kh * d->kw, (int)nx, (int)ny, op, ei);
}

/* NCHW inp into the input side's rows, zero-padded channels. */
static void conv_rows_in(struct circ_op *op, const float *inp, const struct nn_conv2d_dims *d)
{
    const int HW = d->H * d->W, C = d->C, padw = op->d.q * op->d.k;
#pragma omp parallel for schedule(static)
    for (int b = 0; b < d->B; b++) {
        for (int px = 0; px < HW; px++) {
            float *row = op->xr + ((size_t)b * HW + px) * op->ldr_q;
            for (int c = 0; c < C; c++)
                row[c] = inp[((size_t)b * C + c) * HW + px];
            memset(row + C, 0, (size_t)(padw - C) * sizeof(float));
        }
    }
}

/* The input pixel that tap (u, v) of output pixel (oh, ow) reads, -1 outside. */
static int conv_src(const struct nn_conv2d_dims *d, int oh, int ow, int u, int v)
{
    const int h = oh * d->sh - d->pt + u * d->dh, w = ow * d->sw - d->pl + v * d->dw;
    if (h < 0 || h >= d->H || w < 0 || w >= d->W)
        return -1;
    return h * d->W + w;
}

/* The output coordinate whose window's tap offset `off` (u*dh) reads input
 * coordinate x, with stride s and leading padding pad; -1 for none. */
static int conv_dst(int x, int off, int s, int pad, int n_out)
{
    const int num = x + pad - off;
    if (num < 0 || num % s != 0 || num / s >= n_out)
        return -1;
    return num / s;
}

/* y[i] (+)= sum_j a[i][j] * x[j] (conj_a: conj(a[i][j])), complex; a (p, q). */
static void conv_cmv(float *restrict y, const float *restrict a, const float *restrict x, int p,
                     int q, int conj_a)
{
    const float sg = conj_a ? -1.0f : 1.0f;
    for (int i = 0; i < p; i++) {
        const float *ai = a + (size_t)i * q * 2;
        float re = 0.0f, im = 0.0f;
        for (int j = 0; j < q; j++) {
            const float ar = ai[2 * j], aim = sg * ai[2 * j + 1], xr = x[2 * j], xi = x[2 * j + 1];
            re += ar * xr - aim * xi;
            im += ar * xi + aim * xr;
        }
        y[2 * i] += re;
        y[2 * i + 1] += im;
    }
}

/* dst[j] += conj(a[i][j]) * g[i] summed over i, complex; a (p, q): the
 * adjoint product of conv_cmv, for DX. */
static void conv_cmv_adj(float *restrict dst, const float *restrict a, const float *restrict g,
                         int p, int q)
{
    for (int i = 0; i < p; i++) {
        const float *ai = a + (size_t)i * q * 2;
        const float gr = g[2 * i], gi = g[2 * i + 1];
        for (int j = 0; j < q; j++) {
            const float ar = ai[2 * j], aim = -ai[2 * j + 1];
            dst[2 * j] += ar * gr - aim * gi;
            dst[2 * j + 1] += ar * gi + aim * gr;
        }
    }
}

void circ_conv2d_forward(struct circ_op *op, float *out, const float *inp, const float *w,
                         const float *bias, const struct nn_conv2d_dims *d)
{
    const int p = op->d.p, q = op->d.q, kc = op->kc, T = d->kh * d->kw;
    const int OHW = d->OH * d->OW, HW = d->H * d->W, OC = d->OC;
    circ_op_load(op, w);
    conv_rows_in(op, inp, d);
    circ__x_fwd(op, d->B * HW);
#pragma omp parallel for schedule(static)
    for (int P = 0; P < d->B * OHW; P++) {
        const int b = P / OHW, oh = P % OHW / d->OW, ow = P % d->OW;
        for (int f = 0; f < kc; f++)
            memset(circ__ys(op, f, (size_t)P), 0, (size_t)p * 2 * sizeof(float));
        for (int t = 0; t < T; t++) {
            const int src = conv_src(d, oh, ow, t / d->kw, t % d->kw);
            if (src < 0)
                continue;
            for (int f = 0; f < kc; f++)
                conv_cmv(circ__ys(op, f, (size_t)P), circ__ws(op, t, f),
                         circ__xs(op, f, (size_t)b * HW + (size_t)src), p, q, 0);
        }
    }
    circ__y_inv(op, d->B * OHW);
    const float scale = 1.0f / (float)op->d.k;
#pragma omp parallel for schedule(static)
    for (int bo = 0; bo < d->B * OC; bo++) {
        const int b = bo / OC, o = bo % OC;
        const float add = bias != NULL ? bias[o] : 0.0f;
        float *dst = out + (size_t)bo * OHW;
        const float *src = op->yr + (size_t)b * OHW * op->ldr_p + o;
        for (int px = 0; px < OHW; px++)
            dst[px] = src[(size_t)px * op->ldr_p] * scale + add;
    }
}

void circ_conv2d_backward(struct circ_op *op, float *dinp, float *dw, float *dbias,
                          const float *dout, const float *inp, const struct nn_conv2d_dims *d)
{
    const int p = op->d.p, q = op->d.q, k = op->d.k, kc = op->kc, T = d->kh * d->kw;
    const int OHW = d->OH * d->OW, HW = d->H * d->W, OC = d->OC, C = d->C;
    if (dbias != NULL)
        for (int b = 0; b < d->B; b++)
            for (int o = 0; o < OC; o++) {
                const float *g = dout + ((size_t)b * OC + o) * OHW;
                double s = 0.0;
                for (int px = 0; px < OHW; px++)
                    s += g[px];
                dbias[o] += (float)s;
            }
    if (dinp == NULL && dw == NULL)
        return;
        /* G = F(dout) per output pixel. */
#pragma omp parallel for schedule(static)
    for (int P = 0; P < d->B * OHW; P++) {
        const int b = P / OHW, px = P % OHW;
        float *row = op->yr + (size_t)P * op->ldr_p;
        for (int o = 0; o < OC; o++)
            row[o] = dout[((size_t)b * OC + o) * OHW + px];
        memset(row + OC, 0, (size_t)(p * k - OC) * sizeof(float));
    }
    circ__y_fwd(op, d->B * OHW);
    if (dw != NULL) {
        /* DW_t,f[i][j] = sum over output pixels P of G_f[P][i] * conj(X_f[src][j]). */
        conv_rows_in(op, inp, d);
        circ__x_fwd(op, d->B * HW);
#pragma omp parallel for schedule(static)
        for (int tf = 0; tf < T * kc; tf++) {
            const int t = tf / kc, f = tf % kc, u = t / d->kw, v = t % d->kw;
            float *acc = circ__dws(op, t, f);
            memset(acc, 0, (size_t)p * q * 2 * sizeof(float));
            for (int P = 0; P < d->B * OHW; P++) {
                const int b = P / OHW, src = conv_src(d, P % OHW / d->OW, P % d->OW, u, v);
                if (src < 0)
                    continue;
                const float *xs = circ__xs(op, f, (size_t)b * HW + (size_t)src);
                const float *gs = circ__ys(op, f, (size_t)P);
                for (int i = 0; i < p; i++) {
                    const float gr = gs[2 * i], gi = gs[2 * i + 1];
                    float *a = acc + (size_t)i * q * 2;
                    for (int j = 0; j < q; j++) {
                        const float xr = xs[2 * j], xi = -xs[2 * j + 1];
                        a[2 * j] += gr * xr - gi * xi;
                        a[2 * j + 1] += gr * xi + gi * xr;
                    }
                }
            }
        }
        circ__dw_flush(op, dw);
    }
    if (dinp != NULL) {
        /* DX gathered per input pixel X from the output pixels reading it. */
#pragma omp parallel for schedule(static)
        for (int X = 0; X < d->B * HW; X++) {
            const int b = X / HW, h = X % HW / d->W, x = X % d->W;
            for (int f = 0; f < kc; f++)
                memset(circ__xs(op, f, (size_t)X), 0, (size_t)q * 2 * sizeof(float));
            for (int t = 0; t < T; t++) {
                const int oh = conv_dst(h, t / d->kw * d->dh, d->sh, d->pt, d->OH);
                const int ow = conv_dst(x, t % d->kw * d->dw, d->sw, d->pl, d->OW);
                if (oh < 0 || ow < 0)
                    continue;
                const size_t P = (size_t)b * OHW + (size_t)oh * d->OW + (size_t)ow;
                for (int f = 0; f < kc; f++)
                    conv_cmv_adj(circ__xs(op, f, (size_t)X), circ__ws(op, t, f), circ__ys(op, f, P),
                                 p, q);
            }
        }
        circ__x_inv(op, d->B * HW);
        const float scale = 1.0f / (float)k;
#pragma omp parallel for schedule(static)
        for (int bc = 0; bc < d->B * C; bc++) {
            const int b = bc / C, c = bc % C;
            float *dst = dinp + (size_t)bc * HW;
            const float *src = op->xr + (size_t)b * HW * op->ldr_q + c;
            for (int px = 0; px < HW; px++)
                dst[px] += src[(size_t)px * op->ldr_q] * scale;
        }
    }
}
