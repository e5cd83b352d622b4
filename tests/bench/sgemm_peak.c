/*
 * sgemm_peak: the machine's dense float32 peak as OpenBLAS reaches it, for
 * the compiler benchmark (make bench-compile) to print effective GFLOP/s
 * beside. Square row-major C = A * B at a few sizes; for each size, 5
 * trials of back-to-back calls (each trial at least ~0.15 s) after two
 * warm-up calls, and the best trial counts (a peak, not a typical figure).
 * 2*n^3 flops per call.
 *
 * Prints one JSON line: {"engine":"openblas","threads","gflops","by_size":{...},
 * "corename"}; gflops is the best size's.
 *
 * Usage: sgemm_peak [THREADS]      (default 2)
 * Build: gcc -O2 sgemm_peak.c -o sgemm_peak -lopenblas  (tests/bench/compile.sh)
 */
#define _POSIX_C_SOURCE 200809L
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

/* Exported by OpenBLAS; declared here so cblas.h flavours don't matter. */
extern void openblas_set_num_threads(int num_threads);
extern char *openblas_get_corename(void);

#define N_TRIALS 5
#define TRIAL_S  0.15

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void gemm(int n, const float *a, const float *b, float *c)
{
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
}

/* Best GFLOP/s of N_TRIALS trials at size n. */
static double peak_at(int n)
{
    size_t len = (size_t)n * (size_t)n;
    float *a = malloc(len * sizeof(*a)), *b = malloc(len * sizeof(*b));
    float *c = malloc(len * sizeof(*c));
    double best = 0.0;

    if (a == NULL || b == NULL || c == NULL) {
        fprintf(stderr, "sgemm_peak: out of memory at n=%d\n", n);
        exit(1);
    }
    for (size_t i = 0; i < len; i++) {
        a[i] = (float)((i * 7u) % 13u) / 13.0f - 0.5f;
        b[i] = (float)((i * 5u) % 11u) / 11.0f - 0.5f;
    }
    gemm(n, a, b, c);
    gemm(n, a, b, c);
    for (int t = 0; t < N_TRIALS; t++) {
        int calls = 0;
        double t0 = now_s(), dt;
        do {
            gemm(n, a, b, c);
            calls++;
            dt = now_s() - t0;
        } while (dt < TRIAL_S);
        double gf = 2.0 * (double)n * (double)n * (double)n * calls / dt / 1e9;
        best = gf > best ? gf : best;
    }
    free(a);
    free(b);
    free(c);
    return best;
}

int main(int argc, char **argv)
{
    static const int sizes[] = {512, 1024, 2048};
    int threads = argc > 1 ? (int)strtol(argv[1], NULL, 10) : 2;
    double best = 0.0;

    if (threads < 1) {
        fprintf(stderr, "usage: sgemm_peak [THREADS]\n");
        return 2;
    }
    openblas_set_num_threads(threads);
    printf("{\"engine\":\"openblas\",\"threads\":%d,\"by_size\":{", threads);
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        double gf = peak_at(sizes[i]);
        best = gf > best ? gf : best;
        printf("%s\"%d\":%.1f", i ? "," : "", sizes[i], gf);
    }
    printf("},\"gflops\":%.1f,\"corename\":\"%s\"}\n", best, openblas_get_corename());
    return 0;
}
