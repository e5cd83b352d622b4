/*
 * GRU forward and backward through time (see gru.h).
 *
 * Cache layout, N = B * T * H floats each unit:
 *   gates (B, T, 3H)  activated r, z, n (forward; first the input projection)
 *   hh    (B, T, 3H)  W_hh h_{t-1} + b_hh (forward; backward reads hn)
 *   dpx   (B, T, 3H)  dL/d(W_ih x_t + b_ih) (backward)
 *   dph   (B, T, 3H)  dL/d(W_hh h_{t-1} + b_hh) (backward)
 *   dhr   (B, T, H)   dL/dh_t arriving from step t+1 (backward)
 * dhr lives at h_t's row stride (T * H) so that the recurrent product's
 * dx and x (h_{t-1}) share a stride, as rnn_mat.h asks.
 */
#include "worker/nn/gru.h"

#include <math.h>
#include <string.h>

#include "common/alloc.h"
#include "worker/nn/act.h"

/* Elementwise loops are worth a team only over many units. */
#define GRU_PAR_MIN 8192

size_t nn_gru_cache_floats(size_t n_units)
{
    return dp_size_mul(n_units, 13);
}

void nn_gru_forward(float *out, float *cache, const float *x, const struct nn_rnn_mat *w_ih,
                    const struct nn_rnn_mat *w_hh, const float *b_ih, const float *b_hh,
                    const struct nn_rnn_dims *d)
{
    const int B = d->B, T = d->T, H = d->H, G = 3 * H;
    const size_t N = (size_t)B * T * H;
    float *gates = cache, *hh = cache + 3 * N;
    nn_rnn_mat_load(w_ih); /* the FFT path's weight spectra, for backward too */
    nn_rnn_mat_load(w_hh);
    nn_rnn_mat_forward(w_ih, gates, G, x, d->F, B * T, 0);
    for (int t = 0; t < T; t++) {
        if (t > 0)
            nn_rnn_mat_forward(w_hh, hh + (size_t)t * G, T * G, out + (size_t)(t - 1) * H, T * H, B,
                               0);
#pragma omp parallel for schedule(static) if ((size_t)B * H >= GRU_PAR_MIN)
        for (int b = 0; b < B; b++) {
            const size_t row = (size_t)b * T + t;
            float *g = gates + row * G, *a = hh + row * G, *h = out + row * H;
            const float *hp = t > 0 ? h - H : NULL;
            if (hp == NULL) /* h_{-1} = 0: only the bias */
                memset(a, 0, (size_t)G * sizeof(float));
            for (int j = 0; j < H; j++) {
                a[j] += b_hh[j];
                a[H + j] += b_hh[H + j];
                a[2 * H + j] += b_hh[2 * H + j];
                float r = nn_sigmoid(g[j] + b_ih[j] + a[j]);
                float z = nn_sigmoid(g[H + j] + b_ih[H + j] + a[H + j]);
                float n = tanhf(g[2 * H + j] + b_ih[2 * H + j] + r * a[2 * H + j]);
                g[j] = r, g[H + j] = z, g[2 * H + j] = n;
                h[j] = (1.0f - z) * n + (hp != NULL ? z * hp[j] : 0.0f);
            }
        }
    }
}

void nn_gru_backward(float *dx, float *dw_ih, float *dw_hh, float *db_ih, float *db_hh,
                     float *cache, const float *dout, const float *x, const float *out,
                     const struct nn_rnn_mat *w_ih, const struct nn_rnn_mat *w_hh,
                     const struct nn_rnn_dims *d)
{
    const int B = d->B, T = d->T, H = d->H, G = 3 * H;
    const size_t N = (size_t)B * T * H;
    const float *gates = cache, *hh = cache + 3 * N;
    float *dpx = cache + 6 * N, *dph = cache + 9 * N, *dhr = cache + 12 * N;
    for (int t = T - 1; t >= 0; t--) {
#pragma omp parallel for schedule(static) if ((size_t)B * H >= GRU_PAR_MIN)
        for (int b = 0; b < B; b++) {
            const size_t row = (size_t)b * T + t;
            const float *g = gates + row * G, *a = hh + row * G;
            const float *h = out + row * H, *dh_out = dout + row * H, *dh_rec = dhr + row * H;
            const float *hp = t > 0 ? h - H : NULL;
            float *px = dpx + row * G, *ph = dph + row * G;
            float *dh_prev = t > 0 ? dhr + (row - 1) * H : NULL;
            for (int j = 0; j < H; j++) {
                const float r = g[j], z = g[H + j], n = g[2 * H + j], hn = a[2 * H + j];
                const float dh = dh_out[j] + (t < T - 1 ? dh_rec[j] : 0.0f);
                const float dan = dh * (1.0f - z) * (1.0f - n * n);
                const float dar = dan * hn * r * (1.0f - r);
                const float daz = dh * ((hp != NULL ? hp[j] : 0.0f) - n) * z * (1.0f - z);
                px[j] = ph[j] = dar;
                px[H + j] = ph[H + j] = daz;
                px[2 * H + j] = dan;
                ph[2 * H + j] = dan * r;
                if (dh_prev != NULL)
                    dh_prev[j] = dh * z; /* the product below adds W_hh's part */
            }
        }
        if (t > 0)
            nn_rnn_mat_backward(w_hh, dhr + (size_t)(t - 1) * H, dw_hh, dph + (size_t)t * G, T * G,
                                out + (size_t)(t - 1) * H, T * H, B);
    }
    nn_rnn_mat_backward(w_ih, dx, dw_ih, dpx, G, x, d->F, B * T);
    for (size_t r = 0; r < (size_t)B * T; r++) {
        const float *px = dpx + r * G, *ph = dph + r * G;
        for (int j = 0; j < G; j++) {
            if (db_ih != NULL)
                db_ih[j] += px[j];
            if (db_hh != NULL)
                db_hh[j] += ph[j];
        }
    }
}

static double gru_sigmoid_d(double v)
{
    return 1.0 / (1.0 + exp(-v));
}

/* Row r of W v + b in double. */
static double gru_dot(const float *w, const float *v, int n, int r, float bias)
{
    double acc = bias;
    for (int k = 0; k < n; k++)
        acc += (double)w[(size_t)r * n + k] * v[k];
    return acc;
}

void nn_gru_forward_ref(float *out, const float *x, const float *w_ih, const float *w_hh,
                        const float *b_ih, const float *b_hh, const struct nn_rnn_dims *d)
{
    const int B = d->B, T = d->T, F = d->F, H = d->H;
    for (int b = 0; b < B; b++) {
        for (int t = 0; t < T; t++) {
            const size_t row = (size_t)b * T + t;
            const float *xt = x + row * F;
            const float *hp = t > 0 ? out + (row - 1) * H : NULL;
            for (int j = 0; j < H; j++) {
                double hgate[3];
                for (int q = 0; q < 3; q++)
                    hgate[q] = hp != NULL ? gru_dot(w_hh, hp, H, q * H + j, b_hh[q * H + j])
                                          : (double)b_hh[q * H + j];
                double r = gru_sigmoid_d(gru_dot(w_ih, xt, F, j, b_ih[j]) + hgate[0]);
                double z = gru_sigmoid_d(gru_dot(w_ih, xt, F, H + j, b_ih[H + j]) + hgate[1]);
                double n = tanh(gru_dot(w_ih, xt, F, 2 * H + j, b_ih[2 * H + j]) + r * hgate[2]);
                out[row * H + j] = (float)((1.0 - z) * n + (hp != NULL ? z * hp[j] : 0.0));
            }
        }
    }
}
