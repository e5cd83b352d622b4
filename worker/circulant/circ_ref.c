/*
 * Block-circulant matrices by definition: indexing, expansion, projection
 * and brute-force products (see circ.h). The FFT path lives in circ_fft.c.
 */
#include "worker/circulant/circ.h"

#include <string.h>

void circ_dims_init(struct circ_dims *d, int rows, int cols, int k)
{
    d->rows = rows;
    d->cols = cols;
    d->k = k;
    d->p = (rows + k - 1) / k;
    d->q = (cols + k - 1) / k;
}

size_t circ_dims_numel(const struct circ_dims *d)
{
    return (size_t)d->p * (size_t)d->q * (size_t)d->k;
}

/* The stored value behind W[row][col] (row < p*k, col < q*k). */
static float circ_at(const float *w, const struct circ_dims *d, int row, int col)
{
    int k = d->k, i = row / k, r = row % k, j = col / k, s = col % k;
    return w[((size_t)i * d->q + j) * k + (size_t)((r - s + k) % k)];
}

void circ_expand(float *dense, const float *w, const struct circ_dims *d)
{
    for (int r = 0; r < d->rows; r++)
        for (int c = 0; c < d->cols; c++)
            dense[(size_t)r * d->cols + c] = circ_at(w, d, r, c);
}

void circ_project(float *w, const float *dense, const struct circ_dims *d)
{
    const int k = d->k;
    for (int i = 0; i < d->p; i++) {
        for (int j = 0; j < d->q; j++) {
            float *c = w + ((size_t)i * d->q + j) * k;
            for (int t = 0; t < k; t++) {
                double sum = 0.0;
                int cnt = 0;
                for (int r = 0; r < k; r++) {
                    int row = i * k + r, col = j * k + (r - t + k) % k;
                    if (row < d->rows && col < d->cols) {
                        sum += dense[(size_t)row * d->cols + col];
                        cnt++;
                    }
                }
                c[t] = cnt ? (float)(sum / cnt) : 0.0f;
            }
        }
    }
}

void circ_forward_ref(float *y, int ldy, const float *x, int ldx, const float *w,
                      const struct circ_dims *d, int n, int accumulate)
{
    for (int b = 0; b < n; b++) {
        for (int r = 0; r < d->rows; r++) {
            double acc = accumulate ? y[(size_t)b * ldy + r] : 0.0;
            for (int c = 0; c < d->cols; c++)
                acc += (double)circ_at(w, d, r, c) * x[(size_t)b * ldx + c];
            y[(size_t)b * ldy + r] = (float)acc;
        }
    }
}

void circ_backward_ref(float *dx, float *dw, const float *dy, int ldy, const float *x, int ldx,
                       const float *w, const struct circ_dims *d, int n)
{
    const int k = d->k;
    for (int b = 0; b < n; b++) {
        for (int r = 0; r < d->rows; r++) {
            float g = dy[(size_t)b * ldy + r];
            for (int c = 0; c < d->cols; c++) {
                if (dx != NULL)
                    dx[(size_t)b * ldx + c] += g * circ_at(w, d, r, c);
                if (dw != NULL) {
                    int i = r / k, rr = r % k, j = c / k, s = c % k;
                    dw[((size_t)i * d->q + j) * k + (size_t)((rr - s + k) % k)] +=
                        g * x[(size_t)b * ldx + c];
                }
            }
        }
    }
}
