/*
 * The FFT path of the block-circulant products (circ.h), FFTW single
 * precision, real-to-complex transforms of length k (kc = k/2 + 1 bins).
 *
 * Products, per row b (F = DFT of length k, * = element-wise):
 *   forward   Y_i  = sum_j F(c_ij) * F(x_j)                y_i  = F^-1(Y_i)
 *   backward  DX_j = sum_i conj(F(c_ij)) * F(g_i)          dx_j = F^-1(DX_j)
 *             DW_ij = sum_b F(g_i) * conj(F(x_j))          dw_ij = F^-1(DW_ij)
 * dw's spectrum is summed over the n rows and inverted once per block.
 *
 * Layout (struct circ_op in circ_int.h). x rows are copied into a padded
 * real buffer xr (max_nx, ldr_q) whose blocks j*k .. j*k+k-1 are the
 * slices x_j, zero past cols; their spectra go BIN-MAJOR into xs: for each
 * bin f a row-major complex matrix X_f (rows, q). Likewise Y_f (rows, p)
 * in ys and W_f (p, q) in ws. The sums over blocks are then, per bin,
 * complex matrix products, done by OpenBLAS's cgemm (which runs them near
 * the machine's peak where a loop over k/2 + 1 bins a block would not):
 *   forward   Y_f  = X_f · W_fᵀ                       (n, p)
 *   dx        DX_f = G_f · conj(W_f)                  (n, q)
 *   dw        DW_f = G_fᵀ · conj(X_f)                 (p, q)
 * CBLAS has no "conjugate, not transposed" operand, so backward
 * conjugates G once in place and takes the conjugate of the results:
 * conj(DX_f) = conj(G_f) · W_f, conj(DW_f) = conj(G_f)ᵀ · X_f.
 * The two sides (x, y) have row counts of their own because a
 * convolution (circ_conv2d.c) has one row per input pixel and one per
 * output pixel.
 *
 * Plans. FFTW's guru interface writes the bin-major layout directly: a
 * transform's bins are plane strides apart, and two howmany dimensions
 * walk the rows and the blocks. Each direction has a plan over all rows
 * of its side, used when n is that full count (a full training batch),
 * and a one-row plan, looped over the rows for a smaller n (the last
 * partial batch, evaluation); FFTW_UNALIGNED lets the one-row plans run
 * on any row. Plans are FFTW_ESTIMATE: they are made for every layer of
 * every net the worker builds (including each unit test), where MEASURE
 * costs seconds of timing runs per shape and, worse, may pick a different
 * algorithm from run to run, so the same job would not give bit-identical
 * results twice. FFTW's planner (and plan destruction) is not
 * thread-safe: one process-wide mutex serialises them; executing a plan
 * is thread-safe.
 *
 * Scaling. FFTW's inverse is unnormalised (IFFT(FFT(v)) = k v): every
 * inverse result is multiplied by 1/k when it is copied out.
 */
#include "worker/circulant/circ.h"

#include <cblas.h>
#include <fftw3.h>
#include <limits.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>

#include "common/alloc.h"
#include "common/assert.h"
#include "worker/circulant/circ_int.h"

/* FFTW's planner is process-global state. */
static pthread_mutex_t circ_plan_lock = PTHREAD_MUTEX_INITIALIZER;

static const float circ_one[2] = {1.0f, 0.0f}, circ_zero[2] = {0.0f, 0.0f};

/* n rounded up to a multiple of m. */
static size_t circ_round_up(size_t n, size_t m)
{
    return (n + m - 1) / m * m;
}

/*
 * A plan of length-k transforms over `rows` rows of `blocks` blocks: block
 * j of row r is real at r*ldr + j*k, and its bin f complex at
 * f*ldf + r*ldrow + j*ldblk. Called with circ_plan_lock held.
 */
struct circ_plan_shape {
    int rows, blocks;
    int ldr;               /* real row stride */
    int ldf, ldrow, ldblk; /* complex strides: bin plane, row, block */
};

static fftwf_plan circ_plan(int k, const struct circ_plan_shape *s, float *real, float *cplx,
                            int inverse, unsigned extra_flags)
{
    fftwf_iodim dim, how[2];
    how[0].n = s->rows;
    how[1].n = s->blocks;
    dim.n = k;
    if (inverse) {
        dim.is = s->ldf;
        dim.os = 1;
        how[0].is = s->ldrow;
        how[0].os = s->ldr;
        how[1].is = s->ldblk;
        how[1].os = k;
        /* c2r overwrites its input: fine, the spectra are scratch. */
        return fftwf_plan_guru_dft_c2r(1, &dim, 2, how, (fftwf_complex *)cplx, real,
                                       FFTW_ESTIMATE | FFTW_DESTROY_INPUT | extra_flags);
    }
    dim.is = 1;
    dim.os = s->ldf;
    how[0].is = s->ldr;
    how[0].os = s->ldrow;
    how[1].is = k;
    how[1].os = s->ldblk;
    return fftwf_plan_guru_dft_r2c(1, &dim, 2, how, real, (fftwf_complex *)cplx,
                                   FFTW_ESTIMATE | extra_flags);
}

void circ_op_free(struct circ_op *op)
{
    if (op == NULL)
        return;
    fftwf_plan *plans[] = {&op->x_fwd[0], &op->x_fwd[1], &op->x_inv[0], &op->x_inv[1],
                           &op->y_fwd[0], &op->y_fwd[1], &op->y_inv[0], &op->y_inv[1],
                           &op->w_fwd,    &op->w_inv};
    pthread_mutex_lock(&circ_plan_lock);
    for (size_t i = 0; i < sizeof plans / sizeof plans[0]; i++)
        if (*plans[i] != NULL)
            fftwf_destroy_plan(*plans[i]);
    pthread_mutex_unlock(&circ_plan_lock);
    dp_free_aligned(op->xr);
    dp_free_aligned(op->xs);
    dp_free_aligned(op->yr);
    dp_free_aligned(op->ys);
    dp_free_aligned(op->wr);
    dp_free_aligned(op->ws);
    dp_free_aligned(op->dws);
    dp_free(op);
}

/* A zeroed aligned buffer of n floats (n may be 0: one is allocated). */
static float *circ_buf(size_t n)
{
    float *b = dp_malloc_aligned((n ? n : 1) * sizeof(float));
    if (b != NULL)
        memset(b, 0, (n ? n : 1) * sizeof(float));
    return b;
}

enum dp_err circ_op_new(const struct circ_dims *d, int max_n, struct circ_op **out,
                        struct dp_errinfo *ei)
{
    return circ_op_new_ex(d, 1, max_n, max_n, out, ei);
}

enum dp_err circ_op_new_ex(const struct circ_dims *d, int taps, int max_nx, int max_ny,
                           struct circ_op **out, struct dp_errinfo *ei)
{
    *out = NULL;
    if (d->k < 1 || d->rows < 1 || d->cols < 1 || d->p != (d->rows + d->k - 1) / d->k ||
        d->q != (d->cols + d->k - 1) / d->k)
        return dp_errinfo_set(ei, DP_EINVAL,
                              "circulant op: bad dims rows %d cols %d k %d p %d q %d "
                              "(circ_dims_init makes them)",
                              d->rows, d->cols, d->k, d->p, d->q);
    if (taps < 1 || max_nx < 1 || max_ny < 1)
        return dp_errinfo_set(ei, DP_EINVAL, "circulant op: taps %d and max_n %d, %d must be >= 1",
                              taps, max_nx, max_ny);
    const size_t k = (size_t)d->k, kc = k / 2 + 1, p = (size_t)d->p, q = (size_t)d->q;
    /* Real row strides and complex planes start on 64 bytes. FFTW and
     * CBLAS take int sizes and strides: every buffer's float count must
     * fit an int (and then so do all offsets). */
    size_t ldr_q = circ_round_up(q * k, 16), ldr_p = circ_round_up(p * k, 16);
    size_t ldf_x = circ_round_up(dp_size_mul((size_t)max_nx, q), 8);
    size_t ldf_y = circ_round_up(dp_size_mul((size_t)max_ny, p), 8);
    size_t tpq = dp_size_mul((size_t)taps, dp_size_mul(p, q));
    size_t sizes[] = {dp_size_mul((size_t)max_nx, ldr_q), dp_size_mul(kc * 2, ldf_x),
                      dp_size_mul((size_t)max_ny, ldr_p), dp_size_mul(kc * 2, ldf_y),
                      dp_size_mul(tpq, kc * 2),           dp_size_mul(tpq, k)};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
        if (sizes[i] > (size_t)INT_MAX)
            return dp_errinfo_set(ei, DP_ETOOBIG,
                                  "circulant op: %d x %d in blocks of %d (%d taps) for %d and %d "
                                  "rows needs buffers past FFTW's int sizes",
                                  d->rows, d->cols, d->k, taps, max_nx, max_ny);
    struct circ_op *op = dp_calloc(1, sizeof *op);
    if (op == NULL)
        return dp_errinfo_set(ei, DP_ENOMEM, "circulant op: out of memory");
    op->d = *d;
    op->taps = taps;
    op->max_nx = max_nx;
    op->max_ny = max_ny;
    op->kc = (int)kc;
    op->ldr_q = (int)ldr_q;
    op->ldr_p = (int)ldr_p;
    op->ldf_x = (int)ldf_x;
    op->ldf_y = (int)ldf_y;
    op->xr = circ_buf(sizes[0]);
    op->xs = circ_buf(sizes[1]);
    op->yr = circ_buf(sizes[2]);
    op->ys = circ_buf(sizes[3]);
    op->ws = circ_buf(sizes[4]);
    op->dws = circ_buf(sizes[4]);
    op->wr = circ_buf(sizes[5]);
    if (op->xr == NULL || op->xs == NULL || op->yr == NULL || op->ys == NULL || op->wr == NULL ||
        op->ws == NULL || op->dws == NULL) {
        circ_op_free(op);
        return dp_errinfo_set(ei, DP_ENOMEM, "circulant op: out of memory for %d and %d rows",
                              max_nx, max_ny);
    }
    const int ik = d->k;
    pthread_mutex_lock(&circ_plan_lock);
    for (int one = 0; one < 2; one++) {
        const unsigned fl = one ? FFTW_UNALIGNED : 0;
        struct circ_plan_shape xsh = {one ? 1 : max_nx, d->q, op->ldr_q, op->ldf_x, d->q, 1};
        struct circ_plan_shape ysh = {one ? 1 : max_ny, d->p, op->ldr_p, op->ldf_y, d->p, 1};
        op->x_fwd[one] = circ_plan(ik, &xsh, op->xr, op->xs, 0, fl);
        op->x_inv[one] = circ_plan(ik, &xsh, op->xr, op->xs, 1, fl);
        op->y_fwd[one] = circ_plan(ik, &ysh, op->yr, op->ys, 0, fl);
        op->y_inv[one] = circ_plan(ik, &ysh, op->yr, op->ys, 1, fl);
    }
    /* Weights: "rows" are the taps, "blocks" the p*q blocks of a tap; a
     * tap's bin plane is p*q complex, its planes kc*p*q apart. */
    const int ipq = d->p * d->q;
    struct circ_plan_shape wsh = {taps, ipq, ipq * ik, ipq, (int)kc * ipq, 1};
    op->w_fwd = circ_plan(ik, &wsh, op->wr, op->ws, 0, 0);
    op->w_inv = circ_plan(ik, &wsh, op->wr, op->dws, 1, 0);
    pthread_mutex_unlock(&circ_plan_lock);
    fftwf_plan *plans[] = {&op->x_fwd[0], &op->x_fwd[1], &op->x_inv[0], &op->x_inv[1],
                           &op->y_fwd[0], &op->y_fwd[1], &op->y_inv[0], &op->y_inv[1],
                           &op->w_fwd,    &op->w_inv};
    for (size_t i = 0; i < sizeof plans / sizeof plans[0]; i++) {
        if (*plans[i] == NULL) {
            circ_op_free(op);
            return dp_errinfo_set(ei, DP_EUNSUPPORTED,
                                  "circulant op: FFTW made no plan for length %d", d->k);
        }
    }
    *out = op;
    return DP_OK;
}

void circ_op_load(struct circ_op *op, const float *w)
{
    memcpy(op->wr, w, (size_t)op->taps * circ_dims_numel(&op->d) * sizeof(float));
    fftwf_execute(op->w_fwd);
}

/* Runs plan[0] over all rows when n is the full count max_n, else plan[1]
 * on each of the n rows: row b is real at b*ldr, complex at b*ldrow. */
static void circ_exec(fftwf_plan plan[2], int n, int max_n, float *real, int ldr, float *cplx,
                      int ldrow, int inverse)
{
    if (n == max_n) {
        fftwf_execute(plan[0]);
        return;
    }
    for (int b = 0; b < n; b++) {
        float *r = real + (size_t)b * ldr;
        fftwf_complex *c = (fftwf_complex *)(cplx + (size_t)b * ldrow * 2);
        if (inverse)
            fftwf_execute_dft_c2r(plan[1], c, r);
        else
            fftwf_execute_dft_r2c(plan[1], r, c);
    }
}

void circ__x_fwd(struct circ_op *op, int n)
{
    circ_exec(op->x_fwd, n, op->max_nx, op->xr, op->ldr_q, op->xs, op->d.q, 0);
}

void circ__x_inv(struct circ_op *op, int n)
{
    circ_exec(op->x_inv, n, op->max_nx, op->xr, op->ldr_q, op->xs, op->d.q, 1);
}

void circ__y_fwd(struct circ_op *op, int n)
{
    circ_exec(op->y_fwd, n, op->max_ny, op->yr, op->ldr_p, op->ys, op->d.p, 0);
}

void circ__y_inv(struct circ_op *op, int n)
{
    circ_exec(op->y_inv, n, op->max_ny, op->yr, op->ldr_p, op->ys, op->d.p, 1);
}

void circ__dw_flush(struct circ_op *op, float *dw)
{
    fftwf_execute(op->w_inv);
    const float scale = 1.0f / (float)op->d.k;
    const size_t numel = (size_t)op->taps * circ_dims_numel(&op->d);
    for (size_t t = 0; t < numel; t++)
        dw[t] += op->wr[t] * scale;
}

/* n rows of src (width w, stride lds) into dst (stride ldd), zero from w
 * to pad (the padded width). */
static void circ_pad_rows(float *dst, int ldd, const float *src, int lds, int w, int pad, int n)
{
    for (int b = 0; b < n; b++) {
        float *d = dst + (size_t)b * ldd;
        memcpy(d, src + (size_t)b * lds, (size_t)w * sizeof(float));
        memset(d + w, 0, (size_t)(pad - w) * sizeof(float));
    }
}

/* dst (n, w; stride ldd) (+)= scale * src (stride lds). */
static void circ_unpad_rows(float *dst, int ldd, const float *src, int lds, int w, int n,
                            float scale, int accumulate)
{
    for (int b = 0; b < n; b++) {
        float *d = dst + (size_t)b * ldd;
        const float *s = src + (size_t)b * lds;
        if (accumulate)
            for (int c = 0; c < w; c++)
                d[c] += s[c] * scale;
        else
            for (int c = 0; c < w; c++)
                d[c] = s[c] * scale;
    }
}

/* Negates the imaginary parts of n complex numbers. */
static void circ_conj(float *z, size_t n)
{
    for (size_t i = 0; i < n; i++)
        z[2 * i + 1] = -z[2 * i + 1];
}

void circ_op_forward(struct circ_op *op, float *y, int ldy, const float *x, int ldx, int n,
                     int accumulate)
{
    const struct circ_dims *d = &op->d;
    const int p = d->p, q = d->q;
    DP_ASSERT(op->taps == 1 && n <= op->max_nx && n <= op->max_ny);
    circ_pad_rows(op->xr, op->ldr_q, x, ldx, d->cols, q * d->k, n);
    circ__x_fwd(op, n);
    for (int f = 0; f < op->kc; f++)
        cblas_cgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, p, q, circ_one, circ__xs(op, f, 0),
                    q, circ__ws(op, 0, f), q, circ_zero, circ__ys(op, f, 0), p);
    circ__y_inv(op, n);
    circ_unpad_rows(y, ldy, op->yr, op->ldr_p, d->rows, n, 1.0f / (float)d->k, accumulate);
}

void circ_op_backward(struct circ_op *op, float *dx, float *dw, const float *dy, int ldy,
                      const float *x, int ldx, int n)
{
    const struct circ_dims *d = &op->d;
    const int p = d->p, q = d->q, kc = op->kc;
    DP_ASSERT(op->taps == 1 && n <= op->max_nx && n <= op->max_ny);
    if (dx == NULL && dw == NULL)
        return;
    /* conj(F(g_i)) into ys. */
    circ_pad_rows(op->yr, op->ldr_p, dy, ldy, d->rows, p * d->k, n);
    circ__y_fwd(op, n);
    for (int f = 0; f < kc; f++)
        circ_conj(circ__ys(op, f, 0), (size_t)n * p);
    if (dw != NULL) {
        /* F(x_j) into xs; conj(DW_f) = conj(G_f)ᵀ · X_f, one inverse a block. */
        circ_pad_rows(op->xr, op->ldr_q, x, ldx, d->cols, q * d->k, n);
        circ__x_fwd(op, n);
        for (int f = 0; f < kc; f++) {
            cblas_cgemm(CblasRowMajor, CblasTrans, CblasNoTrans, p, q, n, circ_one,
                        circ__ys(op, f, 0), p, circ__xs(op, f, 0), q, circ_zero,
                        circ__dws(op, 0, f), q);
            circ_conj(circ__dws(op, 0, f), (size_t)p * q);
        }
        circ__dw_flush(op, dw);
    }
    if (dx != NULL) {
        /* conj(DX_f) = conj(G_f) · W_f into xs (F(x) is no longer needed). */
        for (int f = 0; f < kc; f++) {
            cblas_cgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, q, p, circ_one,
                        circ__ys(op, f, 0), p, circ__ws(op, 0, f), q, circ_zero, circ__xs(op, f, 0),
                        q);
            circ_conj(circ__xs(op, f, 0), (size_t)n * q);
        }
        circ__x_inv(op, n);
        circ_unpad_rows(dx, ldx, op->xr, op->ldr_q, d->cols, n, 1.0f / (float)d->k, 1);
    }
}
