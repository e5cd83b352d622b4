/*
 * The FFT path of the block-circulant products (circ.h), FFTW single
 * precision, real-to-complex transforms of length k (k/2 + 1 bins).
 *
 * Layout (struct circ_op in circ_int.h). x rows are copied into a padded
 * real buffer xr (max_nx, ldr_q) whose blocks j*k .. j*k+k-1 are the
 * slices x_j, zero past cols, and transformed into xs (max_nx, ldc_q) of
 * q spectra of kc = k/2 + 1 bins; the p output spectra of a row live in
 * ys (max_ny, ldc_p), their inverse in yr (max_ny, ldr_p). The two sides
 * have their own row counts because a convolution (circ_conv2d.c) has
 * one row per input pixel and one per output pixel. Row strides are rounded up to 64 bytes so that
 * every row starts as aligned as row 0 (dp_malloc_aligned gives 64): the
 * one-row plans are then valid on any row through fftwf_execute_dft_*
 * ("new-array execute" requires the planned alignment).
 *
 * Plans. Each direction has a batched plan over all rows of its side and
 * their blocks (FFTW's guru interface: two howmany dimensions, rows then
 * blocks) used when n is that full count (a full training batch), and a one-row plan over
 * the blocks of a row, looped over the rows for a smaller n (the last
 * partial batch, evaluation). Plans are FFTW_ESTIMATE: they are made for
 * every layer of every net the worker builds (including each unit test),
 * where MEASURE costs seconds of timing runs per shape and, worse, picks
 * a different algorithm from run to run, so the same job would not give
 * bit-identical results twice. FFTW's planner (and plan
 * destruction) is not thread-safe: one process-wide mutex serialises
 * them; executing a plan is thread-safe.
 *
 * Scaling. FFTW's inverse is unnormalised (IFFT(FFT(v)) = k v): every
 * inverse result is multiplied by 1/k when it is copied out.
 *
 * Products, per row b (F = DFT of length k, * = element-wise):
 *   forward   Y_i  = sum_j F(c_ij) * F(x_j)                y_i  = F^-1(Y_i)
 *   backward  DX_j = sum_i conj(F(c_ij)) * F(g_i)          dx_j = F^-1(DX_j)
 *             DW_ij = sum_b F(g_i) * conj(F(x_j))          dw_ij = F^-1(DW_ij)
 * dw's spectrum is summed over the n rows and inverted once per block.
 */
#include "worker/circulant/circ.h"

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

/* n rounded up to a multiple of m. */
static size_t circ_round_up(size_t n, size_t m)
{
    return (n + m - 1) / m * m;
}

/*
 * A plan of length-k transforms: rows x blocks of them (rows 1 for the
 * one-row plan), block b of row r at real offset r*ldr + b*k and complex
 * offset r*ldc + b*kc. Called with circ_plan_lock held.
 */
static fftwf_plan circ_plan(int k, int kc, int rows, int blocks, int ldr, int ldc, float *real,
                            float *cplx, int inverse)
{
    fftwf_iodim dim = {k, 1, 1};
    fftwf_iodim how[2];
    how[0].n = rows;
    how[1].n = blocks;
    if (inverse) {
        how[0].is = ldc;
        how[0].os = ldr;
        how[1].is = kc;
        how[1].os = k;
        /* c2r overwrites its input: fine, the spectra are scratch. */
        return fftwf_plan_guru_dft_c2r(1, &dim, 2, how, (fftwf_complex *)cplx, real,
                                       FFTW_ESTIMATE | FFTW_DESTROY_INPUT);
    }
    how[0].is = ldr;
    how[0].os = ldc;
    how[1].is = k;
    how[1].os = kc;
    return fftwf_plan_guru_dft_r2c(1, &dim, 2, how, real, (fftwf_complex *)cplx, FFTW_ESTIMATE);
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
    const size_t k = (size_t)d->k, kc = k / 2 + 1;
    /* Strides in floats, rounded to 64 bytes (16 floats); complex bins are
     * 2 floats. FFTW takes int sizes and strides: every buffer's float
     * count must fit an int (and then so do all offsets). */
    size_t ldr_q = circ_round_up((size_t)d->q * k, 16);
    size_t ldc_q = circ_round_up((size_t)d->q * kc * 2, 16);
    size_t ldr_p = circ_round_up((size_t)d->p * k, 16);
    size_t ldc_p = circ_round_up((size_t)d->p * kc * 2, 16);
    size_t tpq = dp_size_mul((size_t)taps, dp_size_mul((size_t)d->p, (size_t)d->q));
    size_t sizes[] = {dp_size_mul((size_t)max_nx, ldr_q), dp_size_mul((size_t)max_nx, ldc_q),
                      dp_size_mul((size_t)max_ny, ldr_p), dp_size_mul((size_t)max_ny, ldc_p),
                      dp_size_mul(tpq, kc * 2)};
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
    op->ldc_q = (int)(ldc_q / 2);
    op->ldr_p = (int)ldr_p;
    op->ldc_p = (int)(ldc_p / 2);
    op->xr = circ_buf(sizes[0]);
    op->xs = circ_buf(sizes[1]);
    op->yr = circ_buf(sizes[2]);
    op->ys = circ_buf(sizes[3]);
    op->wr = circ_buf(tpq * k);
    op->ws = circ_buf(sizes[4]);
    op->dws = circ_buf(sizes[4]);
    if (op->xr == NULL || op->xs == NULL || op->yr == NULL || op->ys == NULL || op->wr == NULL ||
        op->ws == NULL || op->dws == NULL) {
        circ_op_free(op);
        return dp_errinfo_set(ei, DP_ENOMEM, "circulant op: out of memory for %d and %d rows",
                              max_nx, max_ny);
    }
    const int ik = d->k, ikc = op->kc;
    pthread_mutex_lock(&circ_plan_lock);
    for (int one = 0; one < 2; one++) {
        int nx = one ? 1 : max_nx, ny = one ? 1 : max_ny;
        op->x_fwd[one] = circ_plan(ik, ikc, nx, d->q, op->ldr_q, op->ldc_q, op->xr, op->xs, 0);
        op->x_inv[one] = circ_plan(ik, ikc, nx, d->q, op->ldr_q, op->ldc_q, op->xr, op->xs, 1);
        op->y_fwd[one] = circ_plan(ik, ikc, ny, d->p, op->ldr_p, op->ldc_p, op->yr, op->ys, 0);
        op->y_inv[one] = circ_plan(ik, ikc, ny, d->p, op->ldr_p, op->ldc_p, op->yr, op->ys, 1);
    }
    op->w_fwd = circ_plan(ik, ikc, 1, (int)tpq, 0, 0, op->wr, op->ws, 0);
    op->w_inv = circ_plan(ik, ikc, 1, (int)tpq, 0, 0, op->wr, op->dws, 1);
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
 * on each of the n rows; real and complex rows have strides ldr (floats)
 * and ldc (complex bins). */
static void circ_exec(fftwf_plan plan[2], int n, int max_n, float *real, int ldr, float *cplx,
                      int ldc, int inverse)
{
    if (n == max_n) {
        fftwf_execute(plan[0]);
        return;
    }
    for (int b = 0; b < n; b++) {
        float *r = real + (size_t)b * ldr;
        fftwf_complex *c = (fftwf_complex *)(cplx + (size_t)b * ldc * 2);
        if (inverse)
            fftwf_execute_dft_c2r(plan[1], c, r);
        else
            fftwf_execute_dft_r2c(plan[1], r, c);
    }
}

void circ__x_fwd(struct circ_op *op, int n)
{
    circ_exec(op->x_fwd, n, op->max_nx, op->xr, op->ldr_q, op->xs, op->ldc_q, 0);
}

void circ__x_inv(struct circ_op *op, int n)
{
    circ_exec(op->x_inv, n, op->max_nx, op->xr, op->ldr_q, op->xs, op->ldc_q, 1);
}

void circ__y_fwd(struct circ_op *op, int n)
{
    circ_exec(op->y_fwd, n, op->max_ny, op->yr, op->ldr_p, op->ys, op->ldc_p, 0);
}

void circ__y_inv(struct circ_op *op, int n)
{
    circ_exec(op->y_inv, n, op->max_ny, op->yr, op->ldr_p, op->ys, op->ldc_p, 1);
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

/*
 * The spectral products. Threads split the block index that the result is
 * indexed by (output block i for Y, input block j for DX, the pair (i, j)
 * for DW), so no two threads write the same spectrum and every sum is
 * taken in the same order whatever the team: results do not depend on
 * the thread count. Rows go in chunks of CIRC_ROW_CHUNK so that a weight
 * spectrum is used for a chunk of rows while it is in cache.
 */
#define CIRC_ROW_CHUNK 16

void circ_op_forward(struct circ_op *op, float *y, int ldy, const float *x, int ldx, int n,
                     int accumulate)
{
    const struct circ_dims *d = &op->d;
    const int k = d->k, kc = op->kc, p = d->p, q = d->q;
    const size_t ldc_q = (size_t)op->ldc_q * 2, ldc_p = (size_t)op->ldc_p * 2, bs = (size_t)kc * 2;
    DP_ASSERT(op->taps == 1 && n <= op->max_nx && n <= op->max_ny);
    circ_pad_rows(op->xr, op->ldr_q, x, ldx, d->cols, q * k, n);
    circ__x_fwd(op, n);
#pragma omp parallel for schedule(static)
    for (int i = 0; i < p; i++) {
        for (int b0 = 0; b0 < n; b0 += CIRC_ROW_CHUNK) {
            const int b1 = b0 + CIRC_ROW_CHUNK < n ? b0 + CIRC_ROW_CHUNK : n;
            for (int b = b0; b < b1; b++)
                memset(op->ys + b * ldc_p + i * bs, 0, bs * sizeof(float));
            for (int j = 0; j < q; j++) {
                const float *wij = op->ws + ((size_t)i * q + j) * bs;
                for (int b = b0; b < b1; b++)
                    circ__cmac(op->ys + b * ldc_p + i * bs, wij, op->xs + b * ldc_q + j * bs, kc,
                               0);
            }
        }
    }
    circ__y_inv(op, n);
    circ_unpad_rows(y, ldy, op->yr, op->ldr_p, d->rows, n, 1.0f / (float)k, accumulate);
}

void circ_op_backward(struct circ_op *op, float *dx, float *dw, const float *dy, int ldy,
                      const float *x, int ldx, int n)
{
    const struct circ_dims *d = &op->d;
    const int k = d->k, kc = op->kc, p = d->p, q = d->q;
    const size_t ldc_q = (size_t)op->ldc_q * 2, ldc_p = (size_t)op->ldc_p * 2, bs = (size_t)kc * 2;
    DP_ASSERT(op->taps == 1 && n <= op->max_nx && n <= op->max_ny);
    if (dx == NULL && dw == NULL)
        return;
    /* F(g_i) into ys. */
    circ_pad_rows(op->yr, op->ldr_p, dy, ldy, d->rows, p * k, n);
    circ__y_fwd(op, n);
    if (dw != NULL) {
        /* F(x_j) into xs, DW summed over the rows, one inverse per block. */
        circ_pad_rows(op->xr, op->ldr_q, x, ldx, d->cols, q * k, n);
        circ__x_fwd(op, n);
#pragma omp parallel for schedule(static)
        for (int ij = 0; ij < p * q; ij++) {
            const int i = ij / q, j = ij % q;
            float *acc = op->dws + (size_t)ij * bs;
            memset(acc, 0, bs * sizeof(float));
            for (int b = 0; b < n; b++)
                circ__cmac(acc, op->xs + b * ldc_q + j * bs, op->ys + b * ldc_p + i * bs, kc, 1);
        }
        circ__dw_flush(op, dw);
    }
    if (dx != NULL) {
        /* DX_j into xs (F(x) is no longer needed), then q inverses a row. */
#pragma omp parallel for schedule(static)
        for (int j = 0; j < q; j++) {
            for (int b0 = 0; b0 < n; b0 += CIRC_ROW_CHUNK) {
                const int b1 = b0 + CIRC_ROW_CHUNK < n ? b0 + CIRC_ROW_CHUNK : n;
                for (int b = b0; b < b1; b++)
                    memset(op->xs + b * ldc_q + j * bs, 0, bs * sizeof(float));
                for (int i = 0; i < p; i++) {
                    const float *wij = op->ws + ((size_t)i * q + j) * bs;
                    for (int b = b0; b < b1; b++)
                        circ__cmac(op->xs + b * ldc_q + j * bs, wij, op->ys + b * ldc_p + i * bs,
                                   kc, 1);
                }
            }
        }
        circ__x_inv(op, n);
        circ_unpad_rows(dx, ldx, op->xr, op->ldr_q, d->cols, n, 1.0f / (float)k, 1);
    }
}
