/*
 * The FFT path of the block-circulant products (circ.h), FFTW single
 * precision, real-to-complex transforms of length k (k/2 + 1 bins).
 *
 * Layout. x rows are copied into a padded real buffer xr (max_n, ldr_q)
 * whose blocks j*k .. j*k+k-1 are the slices x_j, zero past cols, and
 * transformed into xs (max_n, ldc_q) of q spectra of kc = k/2 + 1 bins;
 * the p output spectra of a row live in ys (max_n, ldc_p), their inverse
 * in yr (max_n, ldr_p). Row strides are rounded up to 64 bytes so that
 * every row starts as aligned as row 0 (dp_malloc_aligned gives 64): the
 * one-row plans are then valid on any row through fftwf_execute_dft_*
 * ("new-array execute" requires the planned alignment).
 *
 * Plans. Each direction has a batched plan over all max_n rows and their
 * blocks (FFTW's guru interface: two howmany dimensions, rows then blocks)
 * used when n == max_n (a full training batch), and a one-row plan over
 * the blocks of a row, looped over the rows for a smaller n (the last
 * partial batch, evaluation). Plans are FFTW_ESTIMATE: they are made for
 * every layer of every net the worker builds (including each unit test),
 * where MEASURE costs seconds of timing runs per shape and, worse, picks
 * a different algorithm from run to run, so the same job would not give
 * bit-identical results twice. ESTIMATE's plans for these small
 * power-of-two lengths are the codelets MEASURE picks anyway; odd k get
 * FFTW's generic codelets either way. FFTW's planner (and plan
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

/* FFTW's planner is process-global state. */
static pthread_mutex_t circ_plan_lock = PTHREAD_MUTEX_INITIALIZER;

struct circ_op {
    struct circ_dims d;
    int max_n;
    int kc;           /* bins of a real transform of length k: k/2 + 1 */
    int ldr_q, ldc_q; /* row strides of xr (floats) and xs (complex) */
    int ldr_p, ldc_p; /* row strides of yr and ys */
    float *xr;        /* (max_n, ldr_q) padded inputs, then dx's inverse */
    float *xs;        /* (max_n, ldc_q) complex: F(x_j), then DX_j */
    float *yr;        /* (max_n, ldr_p) padded dy, then y's inverse */
    float *ys;        /* (max_n, ldc_p) complex: Y_i, then F(g_i) */
    float *wr;        /* (p, q, k) the weight, then dw's inverse */
    float *ws;        /* (p, q, kc) complex: F(c_ij) of the loaded weight */
    float *dws;       /* (p, q, kc) complex: DW_ij */
    /* [0]: all max_n rows; [1]: one row. */
    fftwf_plan x_fwd[2]; /* xr -> xs, q blocks a row */
    fftwf_plan x_inv[2]; /* xs -> xr */
    fftwf_plan y_fwd[2]; /* yr -> ys, p blocks a row */
    fftwf_plan y_inv[2]; /* ys -> yr */
    fftwf_plan w_fwd;    /* wr -> ws, p*q blocks */
    fftwf_plan w_inv;    /* dws -> wr */
};

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
    *out = NULL;
    if (d->k < 1 || d->rows < 1 || d->cols < 1 || d->p != (d->rows + d->k - 1) / d->k ||
        d->q != (d->cols + d->k - 1) / d->k)
        return dp_errinfo_set(ei, DP_EINVAL,
                              "circulant op: bad dims rows %d cols %d k %d p %d q %d "
                              "(circ_dims_init makes them)",
                              d->rows, d->cols, d->k, d->p, d->q);
    if (max_n < 1)
        return dp_errinfo_set(ei, DP_EINVAL, "circulant op: max_n %d must be >= 1", max_n);
    const size_t k = (size_t)d->k, kc = k / 2 + 1;
    /* Strides in floats, rounded to 64 bytes (16 floats); complex bins are
     * 2 floats. FFTW takes int sizes and strides: every buffer's float
     * count must fit an int (and then so do all offsets). */
    size_t ldr_q = circ_round_up((size_t)d->q * k, 16),
           ldc_q = circ_round_up((size_t)d->q * kc * 2, 16);
    size_t ldr_p = circ_round_up((size_t)d->p * k, 16),
           ldc_p = circ_round_up((size_t)d->p * kc * 2, 16);
    size_t pq = (size_t)d->p * (size_t)d->q;
    size_t sizes[] = {dp_size_mul((size_t)max_n, ldr_q), dp_size_mul((size_t)max_n, ldc_q),
                      dp_size_mul((size_t)max_n, ldr_p), dp_size_mul((size_t)max_n, ldc_p),
                      dp_size_mul(pq, kc * 2)};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
        if (sizes[i] > (size_t)INT_MAX)
            return dp_errinfo_set(ei, DP_ETOOBIG,
                                  "circulant op: %d x %d in blocks of %d for %d rows needs "
                                  "buffers past FFTW's int sizes",
                                  d->rows, d->cols, d->k, max_n);
    struct circ_op *op = dp_calloc(1, sizeof *op);
    if (op == NULL)
        return dp_errinfo_set(ei, DP_ENOMEM, "circulant op: out of memory");
    op->d = *d;
    op->max_n = max_n;
    op->kc = (int)kc;
    op->ldr_q = (int)ldr_q;
    op->ldc_q = (int)(ldc_q / 2);
    op->ldr_p = (int)ldr_p;
    op->ldc_p = (int)(ldc_p / 2);
    op->xr = circ_buf(sizes[0]);
    op->xs = circ_buf(sizes[1]);
    op->yr = circ_buf(sizes[2]);
    op->ys = circ_buf(sizes[3]);
    op->wr = circ_buf(pq * k);
    op->ws = circ_buf(sizes[4]);
    op->dws = circ_buf(sizes[4]);
    if (op->xr == NULL || op->xs == NULL || op->yr == NULL || op->ys == NULL || op->wr == NULL ||
        op->ws == NULL || op->dws == NULL) {
        circ_op_free(op);
        return dp_errinfo_set(ei, DP_ENOMEM, "circulant op: out of memory for %d rows", max_n);
    }
    const int ik = d->k, ikc = op->kc;
    pthread_mutex_lock(&circ_plan_lock);
    for (int one = 0; one < 2; one++) {
        int rows = one ? 1 : max_n;
        op->x_fwd[one] = circ_plan(ik, ikc, rows, d->q, op->ldr_q, op->ldc_q, op->xr, op->xs, 0);
        op->x_inv[one] = circ_plan(ik, ikc, rows, d->q, op->ldr_q, op->ldc_q, op->xr, op->xs, 1);
        op->y_fwd[one] = circ_plan(ik, ikc, rows, d->p, op->ldr_p, op->ldc_p, op->yr, op->ys, 0);
        op->y_inv[one] = circ_plan(ik, ikc, rows, d->p, op->ldr_p, op->ldc_p, op->yr, op->ys, 1);
    }
    op->w_fwd = circ_plan(ik, ikc, 1, (int)pq, 0, 0, op->wr, op->ws, 0);
    op->w_inv = circ_plan(ik, ikc, 1, (int)pq, 0, 0, op->wr, op->dws, 1);
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
    memcpy(op->wr, w, circ_dims_numel(&op->d) * sizeof(float));
    fftwf_execute(op->w_fwd);
}

/* Runs plan[0] over all rows when n is the full batch, else plan[1] on
 * each of the n rows; real and complex rows have strides ldr and ldc. */
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

/* dst (n, w; stride ldd) (+)= src / k (stride lds). */
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

/* acc[f] (+)= a[f] * b[f] (conj_a: conj(a[f])) over kc interleaved complex bins. */
static inline void circ_cmac(float *restrict acc, const float *restrict a, const float *restrict b,
                             int kc, int conj_a)
{
    if (conj_a) {
        for (int f = 0; f < kc; f++) {
            float ar = a[2 * f], ai = a[2 * f + 1], br = b[2 * f], bi = b[2 * f + 1];
            acc[2 * f] += ar * br + ai * bi;
            acc[2 * f + 1] += ar * bi - ai * br;
        }
    } else {
        for (int f = 0; f < kc; f++) {
            float ar = a[2 * f], ai = a[2 * f + 1], br = b[2 * f], bi = b[2 * f + 1];
            acc[2 * f] += ar * br - ai * bi;
            acc[2 * f + 1] += ar * bi + ai * br;
        }
    }
}

void circ_op_forward(struct circ_op *op, float *y, int ldy, const float *x, int ldx, int n,
                     int accumulate)
{
    const struct circ_dims *d = &op->d;
    const int k = d->k, kc = op->kc, p = d->p, q = d->q;
    circ_pad_rows(op->xr, op->ldr_q, x, ldx, d->cols, q * k, n);
    circ_exec(op->x_fwd, n, op->max_n, op->xr, op->ldr_q, op->xs, op->ldc_q, 0);
    for (int b = 0; b < n; b++) {
        const float *xs = op->xs + (size_t)b * op->ldc_q * 2;
        float *ys = op->ys + (size_t)b * op->ldc_p * 2;
        memset(ys, 0, (size_t)p * kc * 2 * sizeof(float));
        for (int i = 0; i < p; i++)
            for (int j = 0; j < q; j++)
                circ_cmac(ys + (size_t)i * kc * 2, op->ws + ((size_t)i * q + j) * kc * 2,
                          xs + (size_t)j * kc * 2, kc, 0);
    }
    circ_exec(op->y_inv, n, op->max_n, op->yr, op->ldr_p, op->ys, op->ldc_p, 1);
    circ_unpad_rows(y, ldy, op->yr, op->ldr_p, d->rows, n, 1.0f / (float)k, accumulate);
}

void circ_op_backward(struct circ_op *op, float *dx, float *dw, const float *dy, int ldy,
                      const float *x, int ldx, int n)
{
    const struct circ_dims *d = &op->d;
    const int k = d->k, kc = op->kc, p = d->p, q = d->q;
    if (dx == NULL && dw == NULL)
        return;
    /* F(g_i) into ys. */
    circ_pad_rows(op->yr, op->ldr_p, dy, ldy, d->rows, p * k, n);
    circ_exec(op->y_fwd, n, op->max_n, op->yr, op->ldr_p, op->ys, op->ldc_p, 0);
    if (dw != NULL) {
        /* F(x_j) into xs, DW summed over the rows, one inverse per block. */
        circ_pad_rows(op->xr, op->ldr_q, x, ldx, d->cols, q * k, n);
        circ_exec(op->x_fwd, n, op->max_n, op->xr, op->ldr_q, op->xs, op->ldc_q, 0);
        memset(op->dws, 0, (size_t)p * q * kc * 2 * sizeof(float));
        for (int b = 0; b < n; b++) {
            const float *xs = op->xs + (size_t)b * op->ldc_q * 2;
            const float *gs = op->ys + (size_t)b * op->ldc_p * 2;
            for (int i = 0; i < p; i++)
                for (int j = 0; j < q; j++)
                    circ_cmac(op->dws + ((size_t)i * q + j) * kc * 2, xs + (size_t)j * kc * 2,
                              gs + (size_t)i * kc * 2, kc, 1);
        }
        fftwf_execute(op->w_inv);
        const float scale = 1.0f / (float)k;
        const size_t numel = circ_dims_numel(d);
        for (size_t t = 0; t < numel; t++)
            dw[t] += op->wr[t] * scale;
    }
    if (dx != NULL) {
        /* DX_j into xs (F(x) is no longer needed), then q inverses a row. */
        for (int b = 0; b < n; b++) {
            float *xs = op->xs + (size_t)b * op->ldc_q * 2;
            const float *gs = op->ys + (size_t)b * op->ldc_p * 2;
            memset(xs, 0, (size_t)q * kc * 2 * sizeof(float));
            for (int i = 0; i < p; i++)
                for (int j = 0; j < q; j++)
                    circ_cmac(xs + (size_t)j * kc * 2, op->ws + ((size_t)i * q + j) * kc * 2,
                              gs + (size_t)i * kc * 2, kc, 1);
        }
        circ_exec(op->x_inv, n, op->max_n, op->xr, op->ldr_q, op->xs, op->ldc_q, 1);
        circ_unpad_rows(dx, ldx, op->xr, op->ldr_q, d->cols, n, 1.0f / (float)k, 1);
    }
}
