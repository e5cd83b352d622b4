/*
 * The recurrent layers' matrix products (see rnn_mat.h): CBLAS for dense
 * weights, circ.h's FFT path or its reference products for block-circulant
 * ones.
 */
#include "worker/nn/rnn_mat.h"

#include <cblas.h>
#include <limits.h>

#include "common/alloc.h"

enum dp_err nn_rnn_fft_new(const struct nn_rnn_dims *d, int gates, int k, struct nn_rnn_fft **out,
                           struct dp_errinfo *ei)
{
    *out = NULL;
    const long long rows = (long long)gates * d->H, steps = (long long)d->B * d->T;
    if (k < 1 || d->B < 1 || d->T < 1 || d->F < 1 || d->H < 1 || rows > INT_MAX || steps > INT_MAX)
        return dp_errinfo_set(ei, DP_EINVAL,
                              "recurrent layer: %d sequences of %d steps, %d features, %d x %d "
                              "units in blocks of %d are out of range",
                              d->B, d->T, d->F, gates, d->H, k);
    struct nn_rnn_fft *f = dp_calloc(1, sizeof(*f));
    if (f == NULL)
        return dp_errinfo_set(ei, DP_ENOMEM, "out of memory");
    struct circ_dims ih, hh;
    circ_dims_init(&ih, (int)rows, d->F, k);
    circ_dims_init(&hh, (int)rows, d->H, k);
    enum dp_err err = circ_op_new(&ih, (int)steps, &f->ih, ei);
    if (!err)
        err = circ_op_new(&hh, d->B, &f->hh, ei);
    if (err) {
        nn_rnn_fft_free(f);
        return err;
    }
    *out = f;
    return DP_OK;
}

void nn_rnn_fft_free(struct nn_rnn_fft *f)
{
    if (f == NULL)
        return;
    circ_op_free(f->ih);
    circ_op_free(f->hh);
    dp_free(f);
}

void nn_rnn_mat_init(struct nn_rnn_mat *m, const float *w, int rows, int cols, int k,
                     struct circ_op *op)
{
    m->w = w;
    m->op = NULL;
    if (k > 0) {
        circ_dims_init(&m->d, rows, cols, k);
        m->op = op;
    } else {
        m->d.rows = rows;
        m->d.cols = cols;
        m->d.k = 0;
        m->d.p = m->d.q = 0;
    }
}

void nn_rnn_mat_load(const struct nn_rnn_mat *m)
{
    if (m->op != NULL)
        circ_op_load(m->op, m->w);
}

void nn_rnn_mat_forward(const struct nn_rnn_mat *m, float *y, int ldy, const float *x, int ldx,
                        int n, int accumulate)
{
    if (n <= 0)
        return;
    if (m->op != NULL) {
        circ_op_forward(m->op, y, ldy, x, ldx, n, accumulate);
        return;
    }
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
    if (m->op != NULL) {
        circ_op_backward(m->op, dx, dw, dy, ldy, x, ldx, n);
        return;
    }
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
