/*
 * The recurrent layers' matrix products (see rnn_mat.h): CBLAS for dense
 * weights, circ.h's reference products for block-circulant ones.
 */
#include "worker/nn/rnn_mat.h"

#include <cblas.h>

void nn_rnn_mat_init(struct nn_rnn_mat *m, const float *w, int rows, int cols, int k)
{
    m->w = w;
    if (k > 0) {
        circ_dims_init(&m->d, rows, cols, k);
    } else {
        m->d.rows = rows;
        m->d.cols = cols;
        m->d.k = 0;
        m->d.p = m->d.q = 0;
    }
}

void nn_rnn_mat_forward(const struct nn_rnn_mat *m, float *y, int ldy, const float *x, int ldx,
                        int n, int accumulate)
{
    if (n <= 0)
        return;
    if (m->d.k > 0) {
        circ_forward_ref(y, ldy, x, ldx, m->w, &m->d, n, accumulate);
        return;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, m->d.rows, m->d.cols, 1.0f, x, ldx,
                m->w, m->d.cols, accumulate ? 1.0f : 0.0f, y, ldy);
}

void nn_rnn_mat_backward(const struct nn_rnn_mat *m, float *dx, float *dw, const float *dy, int ldy,
                         const float *x, int ldx, int n)
{
    if (n <= 0 || (dx == NULL && dw == NULL))
        return;
    if (m->d.k > 0) {
        circ_backward_ref(dx, dw, dy, ldy, x, ldx, m->w, &m->d, n);
        return;
    }
    const int rows = m->d.rows, cols = m->d.cols;
    if (dx != NULL)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, cols, rows, 1.0f, dy, ldy, m->w,
                    cols, 1.0f, dx, ldx);
    if (dw != NULL)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, rows, cols, n, 1.0f, dy, ldy, x, ldx,
                    1.0f, dw, cols);
}
