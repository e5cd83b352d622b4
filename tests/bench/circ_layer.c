/*
 * circ_layer: forward time of a block-circulant n x n layer through the
 * FFT path (worker/circulant/circ_fft.c) against OpenBLAS sgemm on the
 * expanded dense matrix, single thread, at batch 1 and 64.
 *
 * Timed: circ_op_forward (pad, q*rows forward FFTs, the spectral products,
 * p*rows inverse FFTs, copy out). The weight spectra are made once before
 * timing (circ_op_load), as inference keeps them; a training step would
 * add one transform of the p*q weight blocks per pass. Dense: cblas_sgemm
 * y (B, n) = x (B, n) · Wᵀ, which does not depend on k.
 *
 * FLOP model per input row, m = n outputs, p = q = n/k blocks:
 *   dense   2 m n
 *   FFT     (p + q) * 2.5 k log2 k         (a real FFT of length k: half of
 *                                           a complex one's 5 k log2 k)
 *         + 8 p q (k/2 + 1)                (complex multiply-add per bin)
 * The theoretical crossover is the smallest power-of-two k whose FFT
 * FLOPs are below dense; the measured one the smallest k of the table
 * whose FFT time is below sgemm's (at the same n and batch). Every result
 * is checked against the sgemm one before it is timed.
 *
 * Times are the calling thread's CPU time (CLOCK_THREAD_CPUTIME_ID; all
 * work runs in it: one OpenMP and one OpenBLAS thread), the best of 7
 * trials of back-to-back calls, each at least ~20 ms, the dense and the
 * FFT trials alternating: on a shared, oversubscribed machine wall time
 * and medians mostly measured the other tenants.
 *
 * Usage: circ-layer-bench [N...]            default: 256 512 1024
 * Build and run: tests/bench/circ_layer.sh
 */
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/alloc.h"
#include "worker/circulant/circ.h"

extern void openblas_set_num_threads(int num_threads);

static const int bench_ks[] = {4, 8, 16, 32, 64};
#define N_KS (sizeof bench_ks / sizeof bench_ks[0])
static const int bench_batches[] = {1, 64};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

struct bench_case {
    struct circ_op *op;
    const float *x, *wd;
    float *y;
    int n, batch, dense;
};

static void bench_run(const struct bench_case *c)
{
    if (c->dense)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, c->batch, c->n, c->n, 1.0f, c->x, c->n,
                    c->wd, c->n, 0.0f, c->y, c->n);
    else
        circ_op_forward(c->op, c->y, c->n, c->x, c->n, c->batch, 0);
}

/* Back-to-back calls lasting at least ~20 ms. */
static int bench_reps(const struct bench_case *c)
{
    int reps = 1;
    for (;;) {
        double t0 = now_s();
        for (int r = 0; r < reps; r++)
            bench_run(c);
        if (now_s() - t0 > 0.02)
            return reps;
        reps *= 2;
    }
}

/* Best seconds per call of 7 trials of each case, trials alternating. */
static void bench_time2(const struct bench_case *a, double *ta, const struct bench_case *b,
                        double *tb)
{
    const int ra = bench_reps(a), rb = bench_reps(b);
    *ta = *tb = INFINITY;
    for (int trial = 0; trial < 7; trial++) {
        double t0 = now_s();
        for (int r = 0; r < ra; r++)
            bench_run(a);
        *ta = fmin(*ta, (now_s() - t0) / ra);
        t0 = now_s();
        for (int r = 0; r < rb; r++)
            bench_run(b);
        *tb = fmin(*tb, (now_s() - t0) / rb);
    }
}

static double flops_dense(int n)
{
    return 2.0 * n * n;
}

static double flops_fft(int n, int k)
{
    double p = (double)(n + k - 1) / k, kd = k;
    p = floor(p);
    return 2.0 * p * 2.5 * kd * log2(kd) + 8.0 * p * p * (kd / 2.0 + 1.0);
}

static float *bench_floats(size_t n, unsigned seed)
{
    float *v = dp_malloc_aligned(n * sizeof(float));
    if (v == NULL) {
        fprintf(stderr, "circ-layer-bench: out of memory\n");
        exit(1);
    }
    srand(seed);
    for (size_t i = 0; i < n; i++)
        v[i] = (float)rand() / (float)RAND_MAX * 2.0f - 1.0f;
    return v;
}

int main(int argc, char **argv)
{
    int ns[16], n_ns = 0;
    for (int i = 1; i < argc && n_ns < 16; i++) {
        ns[n_ns] = (int)strtol(argv[i], NULL, 10);
        if (ns[n_ns] < 64 || ns[n_ns] > 8192) {
            fprintf(stderr, "usage: circ-layer-bench [N...]  (64 <= N <= 8192)\n");
            return 2;
        }
        n_ns++;
    }
    if (n_ns == 0) {
        ns[0] = 256, ns[1] = 512, ns[2] = 1024;
        n_ns = 3;
    }
    openblas_set_num_threads(1);
    omp_set_num_threads(1);
    printf("circ_layer: block-circulant n x n forward, FFT path vs dense sgemm, 1 thread\n");
    printf("%6s %5s %4s %12s %12s %8s %9s %9s %11s\n", "n", "batch", "k", "fft us", "sgemm us",
           "speedup", "fft GF/s", "sgemm GF/s", "flop ratio");
    char summary[16][2][160];
    for (int ni = 0; ni < n_ns; ni++) {
        const int n = ns[ni];
        for (int bi = 0; bi < 2; bi++) {
            const int batch = bench_batches[bi];
            float *x = bench_floats((size_t)batch * n, 1);
            float *y = bench_floats((size_t)batch * n, 2),
                  *y_ref = bench_floats((size_t)batch * n, 3);
            float *wd = bench_floats((size_t)n * n, 4);
            struct bench_case dc = {NULL, x, wd, y_ref, n, batch, 1};
            int measured = 0, theory = 0;
            for (size_t ki = 0; ki < N_KS; ki++) {
                const int k = bench_ks[ki];
                struct circ_dims d;
                circ_dims_init(&d, n, n, k);
                float *w = bench_floats(circ_dims_numel(&d), 5 + (unsigned)k);
                circ_expand(wd, w, &d);
                struct circ_op *op = NULL;
                struct dp_errinfo ei = {0};
                if (circ_op_new(&d, batch, &op, &ei) != DP_OK) {
                    fprintf(stderr, "circ-layer-bench: %s\n", ei.msg);
                    return 1;
                }
                circ_op_load(op, w);
                struct bench_case fc = {op, x, wd, y, n, batch, 0};
                bench_run(&dc);
                bench_run(&fc);
                double err = 0.0, scale = 0.0;
                for (size_t e = 0; e < (size_t)batch * n; e++) {
                    err = fmax(err, fabs((double)y[e] - y_ref[e]));
                    scale = fmax(scale, fabs((double)y_ref[e]));
                }
                if (err > 1e-4 * scale + 1e-4) {
                    fprintf(stderr, "circ-layer-bench: n %d k %d: FFT and sgemm differ by %g\n", n,
                            k, err);
                    return 1;
                }
                /* Dense is timed again with every k: the pair runs under the
                 * same conditions. */
                double t_fft, t_dense;
                bench_time2(&dc, &t_dense, &fc, &t_fft);
                double ff = flops_fft(n, k) * batch, fd = flops_dense(n) * batch;
                printf("%6d %5d %4d %12.2f %12.2f %8.2f %9.2f %9.2f %11.2f\n", n, batch, k,
                       t_fft * 1e6, t_dense * 1e6, t_dense / t_fft, ff / t_fft * 1e-9,
                       fd / t_dense * 1e-9, fd / ff);
                if (!measured && t_fft < t_dense)
                    measured = k;
                circ_op_free(op);
                dp_free_aligned(w);
            }
            for (int k = 2; k <= 4096 && !theory; k *= 2)
                if (flops_fft(n, k) < flops_dense(n))
                    theory = k;
            char m_str[16];
            if (measured)
                snprintf(m_str, sizeof m_str, "k = %d", measured);
            else
                snprintf(m_str, sizeof m_str, "none <= %d", bench_ks[N_KS - 1]);
            snprintf(summary[ni][bi], sizeof summary[ni][bi],
                     "%6d %5d   measured crossover %-12s theoretical (FLOPs) k = %d", n, batch,
                     m_str, theory);
            dp_free_aligned(x);
            dp_free_aligned(y);
            dp_free_aligned(y_ref);
            dp_free_aligned(wd);
        }
    }
    printf("\ncrossover: smallest block size whose FFT forward beats dense sgemm\n");
    for (int ni = 0; ni < n_ns; ni++)
        for (int bi = 0; bi < 2; bi++)
            printf("%s\n", summary[ni][bi]);
    return 0;
}
