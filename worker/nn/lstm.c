/*
 * LSTM forward and backward through time (see lstm.h).
 *
 * Cache layout, N = B * T * H floats each unit:
 *   gates (B, T, 4H)  activated i, f, g, o (forward; the input projection
 *                     and then the recurrent one are accumulated in place)
 *   cell  (B, T, H)   c_t (forward)
 *   dpre  (B, T, 4H)  dL/dpre_t (backward)
 *   dhr   (B, T, H)   dL/dh_t arriving through step t+1's W_hh (backward)
 *   dcr   (B, T, H)   dL/dc_t arriving through step t+1's forget gate (backward)
 * dhr and dcr live at h_t's row stride (T * H) so that the recurrent
 * product's dx and x (h_{t-1}) share a stride, as rnn_mat.h asks.
 */
#include "worker/nn/lstm.h"

#include <math.h>

#include "common/alloc.h"
#include "worker/nn/act.h"

/* Elementwise loops are worth a team only over many units. */
#define LSTM_PAR_MIN 8192

size_t nn_lstm_cache_floats(size_t n_units)
{
    return dp_size_mul(n_units, 11);
}

void nn_lstm_forward(float *out, float *cache, const float *x, const struct nn_rnn_mat *w_ih,
                     const struct nn_rnn_mat *w_hh, const float *b_ih, const float *b_hh,
                     const struct nn_rnn_dims *d)
{
    const int B = d->B, T = d->T, H = d->H, G = 4 * H;
    const size_t N = (size_t)B * T * H;
    float *gates = cache, *cell = cache + 4 * N;
    nn_rnn_mat_load(w_ih); /* the FFT path's weight spectra, for backward too */
    nn_rnn_mat_load(w_hh);
    nn_rnn_mat_forward(w_ih, gates, G, x, d->F, B * T, 0);
    for (int t = 0; t < T; t++) {
        /* h_{-1} = 0: step 0 has no recurrent term. */
        if (t > 0)
            nn_rnn_mat_forward(w_hh, gates + (size_t)t * G, T * G, out + (size_t)(t - 1) * H, T * H,
                               B, 1);
#pragma omp parallel for schedule(static) if ((size_t)B * H >= LSTM_PAR_MIN)
        for (int b = 0; b < B; b++) {
            const size_t row = (size_t)b * T + t;
            float *g = gates + row * G;
            float *c = cell + row * H, *h = out + row * H;
            const float *cp = t > 0 ? c - H : NULL;
            for (int j = 0; j < H; j++) {
                float vi = nn_sigmoid(g[j] + b_ih[j] + b_hh[j]);
                float vf = nn_sigmoid(g[H + j] + b_ih[H + j] + b_hh[H + j]);
                float vg = tanhf(g[2 * H + j] + b_ih[2 * H + j] + b_hh[2 * H + j]);
                float vo = nn_sigmoid(g[3 * H + j] + b_ih[3 * H + j] + b_hh[3 * H + j]);
                g[j] = vi, g[H + j] = vf, g[2 * H + j] = vg, g[3 * H + j] = vo;
                c[j] = (cp != NULL ? vf * cp[j] : 0.0f) + vi * vg;
                h[j] = vo * tanhf(c[j]);
            }
        }
    }
}

void nn_lstm_backward(float *dx, float *dw_ih, float *dw_hh, float *db_ih, float *db_hh,
                      float *cache, const float *dout, const float *x, const float *out,
                      const struct nn_rnn_mat *w_ih, const struct nn_rnn_mat *w_hh,
                      const struct nn_rnn_dims *d)
{
    const int B = d->B, T = d->T, H = d->H, G = 4 * H;
    const size_t N = (size_t)B * T * H;
    const float *gates = cache, *cell = cache + 4 * N;
    float *dpre = cache + 5 * N, *dhr = cache + 9 * N, *dcr = cache + 10 * N;
    for (int t = T - 1; t >= 0; t--) {
#pragma omp parallel for schedule(static) if ((size_t)B * H >= LSTM_PAR_MIN)
        for (int b = 0; b < B; b++) {
            const size_t row = (size_t)b * T + t;
            const float *g = gates + row * G, *c = cell + row * H;
            const float *dh_out = dout + row * H, *dh_rec = dhr + row * H, *dc_rec = dcr + row * H;
            float *dp = dpre + row * G;
            float *dh_prev = t > 0 ? dhr + (row - 1) * H : NULL;
            float *dc_prev = t > 0 ? dcr + (row - 1) * H : NULL;
            for (int j = 0; j < H; j++) {
                const float vi = g[j], vf = g[H + j], vg = g[2 * H + j], vo = g[3 * H + j];
                const float tc = tanhf(c[j]);
                const float cp = t > 0 ? c[j - H] : 0.0f;
                const float dh = dh_out[j] + (t < T - 1 ? dh_rec[j] : 0.0f);
                const float dc = (t < T - 1 ? dc_rec[j] : 0.0f) + dh * vo * (1.0f - tc * tc);
                dp[j] = dc * vg * vi * (1.0f - vi);
                dp[H + j] = dc * cp * vf * (1.0f - vf);
                dp[2 * H + j] = dc * vi * (1.0f - vg * vg);
                dp[3 * H + j] = dh * tc * vo * (1.0f - vo);
                if (dh_prev != NULL) {
                    dc_prev[j] = dc * vf;
                    dh_prev[j] = 0.0f; /* the product below accumulates into it */
                }
            }
        }
        /* dL/dh_{t-1} += dpre_t · W_hh and dW_hh += dpre_tᵀ h_{t-1}. */
        if (t > 0)
            nn_rnn_mat_backward(w_hh, dhr + (size_t)(t - 1) * H, dw_hh, dpre + (size_t)t * G, T * G,
                                out + (size_t)(t - 1) * H, T * H, B);
    }
    nn_rnn_mat_backward(w_ih, dx, dw_ih, dpre, G, x, d->F, B * T);
    for (size_t r = 0; r < (size_t)B * T; r++) {
        const float *dp = dpre + r * G;
        for (int j = 0; j < G; j++) {
            if (db_ih != NULL)
                db_ih[j] += dp[j];
            if (db_hh != NULL)
                db_hh[j] += dp[j];
        }
    }
}

static double lstm_sigmoid_d(double v)
{
    return 1.0 / (1.0 + exp(-v));
}

void nn_lstm_forward_ref(float *out, float *cell, const float *x, const float *w_ih,
                         const float *w_hh, const float *b_ih, const float *b_hh,
                         const struct nn_rnn_dims *d)
{
    const int B = d->B, T = d->T, F = d->F, H = d->H;
    for (int b = 0; b < B; b++) {
        for (int t = 0; t < T; t++) {
            const size_t row = (size_t)b * T + t;
            const float *xt = x + row * F;
            const float *hp = t > 0 ? out + (row - 1) * H : NULL;
            for (int j = 0; j < H; j++) {
                double pre[4];
                for (int q = 0; q < 4; q++) {
                    const int r = q * H + j;
                    double acc = (double)b_ih[r] + b_hh[r];
                    for (int f = 0; f < F; f++)
                        acc += (double)w_ih[(size_t)r * F + f] * xt[f];
                    for (int k = 0; hp != NULL && k < H; k++)
                        acc += (double)w_hh[(size_t)r * H + k] * hp[k];
                    pre[q] = acc;
                }
                double vi = lstm_sigmoid_d(pre[0]), vf = lstm_sigmoid_d(pre[1]);
                double vg = tanh(pre[2]), vo = lstm_sigmoid_d(pre[3]);
                double c = (t > 0 ? vf * cell[(row - 1) * H + j] : 0.0) + vi * vg;
                cell[row * H + j] = (float)c;
                out[row * H + j] = (float)(vo * tanh(c));
            }
        }
    }
}
