/*
 * gemm_compare: OpenBLAS cblas_sgemm against oneDNN dnnl_sgemm on the exact
 * GEMM shapes of one training step (forward + backward) of LeNet-5 and
 * ResNet-20 at batch 64, lowered with a whole-batch im2col.
 *
 * For a convolution with C inputs, OC outputs, a k x k kernel, output
 * OH x OW and batch B (P = OH*OW, BP = B*P, K = C*k*k), all row-major:
 *   forward      out[OC][BP]  = W[OC][K]      * col[K][BP]      M=OC N=BP K=K
 *   weight grad  dW[OC][K]    = dout[OC][BP]  * col[K][BP]^T    M=OC N=K  K=BP
 *   input grad   dcol[K][BP]  = W[OC][K]^T    * dout[OC][BP]    M=K  N=BP K=OC
 * For a fully connected layer I -> O (W[O][I]):
 *   forward      out[B][O]    = in[B][I]      * W[O][I]^T       M=B  N=O  K=I
 *   weight grad  dW[O][I]     = dout[B][O]^T  * in[B][I]        M=O  N=I  K=B
 *   input grad   din[B][I]    = dout[B][O]    * W[O][I]         M=B  N=I  K=O
 * The first layer of each net needs no input gradient, so it has none here.
 *
 * Every result is checked against a double-precision reference before it is
 * timed. Times are the median of 9 trials of back-to-back calls (each trial
 * at least ~20 ms), after warm-up; the two libraries' trials alternate.
 *
 * Usage: gemm_compare [THREADS...]      (default: 2 1)
 * Build: tests/bench/gemm_compare.sh
 */
#define _POSIX_C_SOURCE 200809L
#include <cblas.h>
#include <dnnl.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Exported by OpenBLAS; declared here so cblas.h flavours don't matter. */
extern void openblas_set_num_threads(int num_threads);
extern char *openblas_get_corename(void);
extern char *openblas_get_config(void);

typedef struct {
    const char *net;
    const char *name;
    int m, n, k;
    int ta, tb; /* 1 = that operand is stored transposed (see above) */
    int count;  /* how many times one training step runs this GEMM */
} shape;

#define B 64
static const shape shapes[] = {
    /* LeNet-5 (Caffe), 1x28x28 */
    {"lenet5", "conv1 1->20 5x5 24x24 fwd", 20, B * 576, 25, 0, 0, 1},
    {"lenet5", "conv1 1->20 5x5 24x24 wgrad", 20, 25, B * 576, 0, 1, 1},
    {"lenet5", "conv2 20->50 5x5 8x8 fwd", 50, B * 64, 500, 0, 0, 1},
    {"lenet5", "conv2 20->50 5x5 8x8 wgrad", 50, 500, B * 64, 0, 1, 1},
    {"lenet5", "conv2 20->50 5x5 8x8 igrad", 500, B * 64, 50, 1, 0, 1},
    {"lenet5", "fc1 800->500 fwd", B, 500, 800, 0, 1, 1},
    {"lenet5", "fc1 800->500 wgrad", 500, 800, B, 1, 0, 1},
    {"lenet5", "fc1 800->500 igrad", B, 800, 500, 0, 0, 1},
    {"lenet5", "fc2 500->10 fwd", B, 10, 500, 0, 1, 1},
    {"lenet5", "fc2 500->10 wgrad", 10, 500, B, 1, 0, 1},
    {"lenet5", "fc2 500->10 igrad", B, 500, 10, 0, 0, 1},
    /* ResNet-20 (CIFAR), 3x32x32 */
    {"resnet20", "conv 3->16 3x3 32x32 fwd", 16, B * 1024, 27, 0, 0, 1},
    {"resnet20", "conv 3->16 3x3 32x32 wgrad", 16, 27, B * 1024, 0, 1, 1},
    {"resnet20", "conv 16->16 3x3 32x32 fwd", 16, B * 1024, 144, 0, 0, 6},
    {"resnet20", "conv 16->16 3x3 32x32 wgrad", 16, 144, B * 1024, 0, 1, 6},
    {"resnet20", "conv 16->16 3x3 32x32 igrad", 144, B * 1024, 16, 1, 0, 6},
    {"resnet20", "conv 16->32 3x3 s2 16x16 fwd", 32, B * 256, 144, 0, 0, 1},
    {"resnet20", "conv 16->32 3x3 s2 16x16 wgrad", 32, 144, B * 256, 0, 1, 1},
    {"resnet20", "conv 16->32 3x3 s2 16x16 igrad", 144, B * 256, 32, 1, 0, 1},
    {"resnet20", "short 16->32 1x1 s2 16x16 fwd", 32, B * 256, 16, 0, 0, 1},
    {"resnet20", "short 16->32 1x1 s2 16x16 wgrad", 32, 16, B * 256, 0, 1, 1},
    {"resnet20", "short 16->32 1x1 s2 16x16 igrad", 16, B * 256, 32, 1, 0, 1},
    {"resnet20", "conv 32->32 3x3 16x16 fwd", 32, B * 256, 288, 0, 0, 5},
    {"resnet20", "conv 32->32 3x3 16x16 wgrad", 32, 288, B * 256, 0, 1, 5},
    {"resnet20", "conv 32->32 3x3 16x16 igrad", 288, B * 256, 32, 1, 0, 5},
    {"resnet20", "conv 32->64 3x3 s2 8x8 fwd", 64, B * 64, 288, 0, 0, 1},
    {"resnet20", "conv 32->64 3x3 s2 8x8 wgrad", 64, 288, B * 64, 0, 1, 1},
    {"resnet20", "conv 32->64 3x3 s2 8x8 igrad", 288, B * 64, 64, 1, 0, 1},
    {"resnet20", "short 32->64 1x1 s2 8x8 fwd", 64, B * 64, 32, 0, 0, 1},
    {"resnet20", "short 32->64 1x1 s2 8x8 wgrad", 64, 32, B * 64, 0, 1, 1},
    {"resnet20", "short 32->64 1x1 s2 8x8 igrad", 32, B * 64, 64, 1, 0, 1},
    {"resnet20", "conv 64->64 3x3 8x8 fwd", 64, B * 64, 576, 0, 0, 5},
    {"resnet20", "conv 64->64 3x3 8x8 wgrad", 64, 576, B * 64, 0, 1, 5},
    {"resnet20", "conv 64->64 3x3 8x8 igrad", 576, B * 64, 64, 1, 0, 5},
    {"resnet20", "fc 64->10 fwd", B, 10, 64, 0, 1, 1},
    {"resnet20", "fc 64->10 wgrad", 10, 64, B, 1, 0, 1},
    {"resnet20", "fc 64->10 igrad", B, 64, 10, 0, 0, 1},
};
#define NSHAPES (sizeof shapes / sizeof shapes[0])

enum { LIB_OPENBLAS, LIB_DNNL, NLIBS };
static const char *const lib_name[NLIBS] = {"openblas", "onednn"};

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static float *alloc_floats(size_t n)
{
    void *p = NULL;
    if (posix_memalign(&p, 64, n * sizeof(float) + 64) != 0) {
        fprintf(stderr, "gemm_compare: out of memory\n");
        exit(1);
    }
    return p;
}

/* Row-major leading dimensions of the stored operands. */
static int lda_of(const shape *s)
{
    return s->ta ? s->m : s->k;
}
static int ldb_of(const shape *s)
{
    return s->tb ? s->k : s->n;
}

static void run_gemm(int lib, const shape *s, const float *a, const float *b, float *c)
{
    if (lib == LIB_OPENBLAS) {
        cblas_sgemm(CblasRowMajor, s->ta ? CblasTrans : CblasNoTrans,
                    s->tb ? CblasTrans : CblasNoTrans, s->m, s->n, s->k, 1.0f, a, lda_of(s), b,
                    ldb_of(s), 0.0f, c, s->n);
    } else {
        dnnl_status_t st = dnnl_sgemm(s->ta ? 'T' : 'N', s->tb ? 'T' : 'N', s->m, s->n, s->k, 1.0f,
                                      a, lda_of(s), b, ldb_of(s), 0.0f, c, s->n);
        if (st != dnnl_success) {
            fprintf(stderr, "gemm_compare: dnnl_sgemm failed (%d) on %s\n", (int)st, s->name);
            exit(1);
        }
    }
}

/* max |c - ref| / max |ref|, ref computed in double. */
static double check(const shape *s, const float *a, const float *b, const float *c)
{
    int lda = lda_of(s), ldb = ldb_of(s);
    double maxerr = 0.0, maxref = 0.0;
    double *row = calloc((size_t)s->n, sizeof *row);
    if (row == NULL) {
        fprintf(stderr, "gemm_compare: out of memory\n");
        exit(1);
    }
    for (int i = 0; i < s->m; i++) {
        memset(row, 0, (size_t)s->n * sizeof *row);
        for (int p = 0; p < s->k; p++) {
            double av = s->ta ? a[(size_t)p * lda + i] : a[(size_t)i * lda + p];
            if (s->tb) {
                for (int j = 0; j < s->n; j++)
                    row[j] += av * b[(size_t)j * ldb + p];
            } else {
                const float *br = b + (size_t)p * ldb;
                for (int j = 0; j < s->n; j++)
                    row[j] += av * br[j];
            }
        }
        for (int j = 0; j < s->n; j++) {
            double e = fabs((double)c[(size_t)i * s->n + j] - row[j]);
            if (e > maxerr)
                maxerr = e;
            if (fabs(row[j]) > maxref)
                maxref = fabs(row[j]);
        }
    }
    free(row);
    return maxref > 0.0 ? maxerr / maxref : maxerr;
}

static int cmp_double(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;
    return (a > b) - (a < b);
}

/* Median seconds per call of each library, the libraries' trials
 * interleaved so that both see the same background load. */
static void time_gemms(const shape *s, const float *a, const float *b, float *c, double out[NLIBS])
{
    enum { TRIALS = 9 };
    int reps[NLIBS];
    double t[NLIBS][TRIALS];
    for (int lib = 0; lib < NLIBS; lib++) {
        for (int w = 0; w < 3; w++)
            run_gemm(lib, s, a, b, c);
        double t0 = now();
        run_gemm(lib, s, a, b, c);
        double one = now() - t0;
        reps[lib] = one > 0.0 ? (int)(0.02 / one) + 1 : 1000;
        if (reps[lib] > 1000)
            reps[lib] = 1000;
    }
    for (int tr = 0; tr < TRIALS; tr++) {
        for (int lib = 0; lib < NLIBS; lib++) {
            double t0 = now();
            for (int r = 0; r < reps[lib]; r++)
                run_gemm(lib, s, a, b, c);
            t[lib][tr] = (now() - t0) / reps[lib];
        }
    }
    for (int lib = 0; lib < NLIBS; lib++) {
        qsort(t[lib], TRIALS, sizeof t[lib][0], cmp_double);
        out[lib] = t[lib][TRIALS / 2];
    }
}

static void set_threads(int n)
{
    omp_set_num_threads(n);
    openblas_set_num_threads(n);
}

int main(int argc, char **argv)
{
    int threads[8] = {2, 1};
    int nthreads = 2;
    if (argc > 1) {
        nthreads = 0;
        for (int i = 1; i < argc && nthreads < 8; i++) {
            char *end = NULL;
            long v = strtol(argv[i], &end, 10);
            if (end == argv[i] || *end != '\0' || v < 1 || v > 256) {
                fprintf(stderr, "usage: %s [THREADS...]\n", argv[0]);
                return 2;
            }
            threads[nthreads++] = (int)v;
        }
    }

    const dnnl_version_t *dv = dnnl_version();
    printf("OpenBLAS: %s (core %s)\n", openblas_get_config(), openblas_get_corename());
    printf("oneDNN:   %d.%d.%d (cpu runtime %u, isa %s)\n", dv->major, dv->minor, dv->patch,
           dv->cpu_runtime, getenv("ONEDNN_MAX_CPU_ISA") ? getenv("ONEDNN_MAX_CPU_ISA") : "auto");
    const char *ct = getenv("OPENBLAS_CORETYPE"), *l2 = getenv("OPENBLAS_L2_SIZE");
    printf("env:      OPENBLAS_CORETYPE=%s OPENBLAS_L2_SIZE=%s\n", ct ? ct : "(unset)",
           l2 ? l2 : "(unset)");

    size_t maxa = 0, maxb = 0, maxc = 0;
    for (size_t i = 0; i < NSHAPES; i++) {
        const shape *s = &shapes[i];
        size_t a = (size_t)s->m * s->k, b = (size_t)s->k * s->n, c = (size_t)s->m * s->n;
        if (a > maxa)
            maxa = a;
        if (b > maxb)
            maxb = b;
        if (c > maxc)
            maxc = c;
    }
    float *a = alloc_floats(maxa), *b = alloc_floats(maxb), *c = alloc_floats(maxc);
    unsigned x = 12345u;
    for (size_t i = 0; i < maxa; i++) {
        x = x * 1664525u + 1013904223u;
        a[i] = (float)(x >> 8) / 16777216.0f - 0.5f;
    }
    for (size_t i = 0; i < maxb; i++) {
        x = x * 1664525u + 1013904223u;
        b[i] = (float)(x >> 8) / 16777216.0f - 0.5f;
    }

    /* Correctness first, single-threaded and multi-threaded. */
    double worst[NLIBS] = {0.0, 0.0};
    for (int t = 0; t < nthreads; t++) {
        set_threads(threads[t]);
        for (size_t i = 0; i < NSHAPES; i++) {
            for (int lib = 0; lib < NLIBS; lib++) {
                memset(c, 0xff, (size_t)shapes[i].m * shapes[i].n * sizeof(float)); /* NaN */
                run_gemm(lib, &shapes[i], a, b, c);
                double e = check(&shapes[i], a, b, c);
                if (!(e <= 1e-4)) {
                    printf("WRONG: %s %s threads %d: rel err %.3g\n", lib_name[lib], shapes[i].name,
                           threads[t], e);
                    return 1;
                }
                if (e > worst[lib])
                    worst[lib] = e;
            }
        }
    }
    printf("check:    all results match a double reference (max rel err openblas %.2g, onednn "
           "%.2g)\n",
           worst[0], worst[1]);

    for (int t = 0; t < nthreads; t++) {
        set_threads(threads[t]);
        printf("\n== %d thread%s ==\n", threads[t], threads[t] == 1 ? "" : "s");
        printf("%-34s %6s %6s %6s %2s %3s | %9s %7s | %9s %7s | %s\n", "shape (batch 64)", "M", "N",
               "K", "tr", "x", "obl ms", "GFLOP/s", "dnnl ms", "GFLOP/s", "faster");
        double step[2][NLIBS] = {{0}}, best[2] = {0};
        for (size_t i = 0; i < NSHAPES; i++) {
            const shape *s = &shapes[i];
            double flop = 2.0 * s->m * s->n * s->k;
            double tm[NLIBS];
            time_gemms(s, a, b, c, tm);
            best[strcmp(s->net, "lenet5") == 0 ? 0 : 1] +=
                (tm[0] < tm[1] ? tm[0] : tm[1]) * s->count;
            for (int lib = 0; lib < NLIBS; lib++)
                step[strcmp(s->net, "lenet5") == 0 ? 0 : 1][lib] += tm[lib] * s->count;
            char tr[3] = {s->ta ? 'T' : 'N', s->tb ? 'T' : 'N', 0};
            printf("%-34s %6d %6d %6d %2s %3d | %9.4f %7.1f | %9.4f %7.1f | %s %.2fx\n", s->name,
                   s->m, s->n, s->k, tr, s->count, tm[0] * 1e3, flop / tm[0] * 1e-9, tm[1] * 1e3,
                   flop / tm[1] * 1e-9, tm[0] <= tm[1] ? "openblas" : "onednn",
                   tm[0] <= tm[1] ? tm[1] / tm[0] : tm[0] / tm[1]);
        }
        for (int net = 0; net < 2; net++) {
            printf(
                "TOTAL %-8s threads %d: GEMM time per training step: openblas %.3f ms, onednn %.3f "
                "ms (onednn/openblas %.2f); faster of the two per shape %.3f ms\n",
                net == 0 ? "lenet5" : "resnet20", threads[t], step[net][0] * 1e3,
                step[net][1] * 1e3, step[net][1] / step[net][0], best[net] * 1e3);
        }
    }
    free(a);
    free(b);
    free(c);
    return 0;
}
