/*
 * Helpers shared by the engine's gradient and reference suites
 * (test_grad.c, test_reference.c): a seeded random generator, buffer
 * helpers, an element-wise comparison that reports the worst element, a
 * generic central-difference gradient checker, and the reader for the
 * PyTorch fixtures under tests/data/nn/.
 *
 * Everything here is `static inline` so that each test file can include
 * the header without unused-function warnings; failures are reported with
 * Criterion's cr_expect/cr_assert from inside the helpers, with the
 * caller's label in the message.
 *
 * FIXTURE FORMAT (written by tests/unit/worker/nn/make_fixtures.py; all
 * integers little-endian):
 *
 *     char     magic[4]     "DPFX"
 *     uint32   version      1
 *     uint32   n_arrays
 *     n_arrays times:
 *         uint32   name_len         1..63
 *         char     name[name_len]   no terminating NUL
 *         uint32   ndim             0..8
 *         int32    dims[ndim]       each >= 1; element count = product
 *         float32  data[count]      little-endian IEEE-754, C order
 *
 * and nothing after the last array. Integers (labels, pool indices, the
 * "cfg" array of layer hyper-parameters) are stored as exact float32.
 * Fixtures live in $DP_TEST_DATA/nn/<case>.bin, where DP_TEST_DATA
 * defaults to "tests/data" (the suites run from the repository root).
 */
#ifndef DP_TESTS_UNIT_WORKER_NN_NN_TEST_UTIL_H
#define DP_TESTS_UNIT_WORKER_NN_NN_TEST_UTIL_H

#include <criterion/criterion.h>
#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "common/alloc.h"

/* ---- Random numbers ------------------------------------------------------ */

/* splitmix64: small, seedable, the same sequence on every platform. */
struct nn_test_rng {
    uint64_t s;
};

static inline uint64_t nn_test_rng_next(struct nn_test_rng *r)
{
    uint64_t z = (r->s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Uniform in [lo, hi). */
static inline float nn_test_rng_uniform(struct nn_test_rng *r, float lo, float hi)
{
    double u = (double)(nn_test_rng_next(r) >> 11) * (1.0 / 9007199254740992.0);
    return (float)(lo + (hi - lo) * u);
}

/* Uniform integer in [0, n). */
static inline int nn_test_rng_int(struct nn_test_rng *r, int n)
{
    return (int)(nn_test_rng_next(r) % (uint64_t)n);
}

static inline void nn_fill_uniform(struct nn_test_rng *r, float *x, size_t n, float lo, float hi)
{
    for (size_t i = 0; i < n; i++)
        x[i] = nn_test_rng_uniform(r, lo, hi);
}

/*
 * Fills x with a shuffled ramp centred on zero: x[i] = (k_i - n/2) * step for
 * a random permutation k. No two values are within `step` of each other,
 * so a max never changes under perturbations smaller than step/2.
 */
static inline void nn_fill_distinct(struct nn_test_rng *r, float *x, size_t n, float step)
{
    for (size_t i = 0; i < n; i++)
        x[i] = ((float)i - (float)(n / 2)) * step;
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)(nn_test_rng_next(r) % i);
        float t = x[i - 1];
        x[i - 1] = x[j];
        x[j] = t;
    }
}

/* Uniform in [lo, hi) but at least `margin` away from each kink. */
static inline void nn_fill_away_from(struct nn_test_rng *r, float *x, size_t n, float lo, float hi,
                                     const float *kinks, int n_kinks, float margin)
{
    for (size_t i = 0; i < n; i++) {
        int ok;
        do {
            x[i] = nn_test_rng_uniform(r, lo, hi);
            ok = 1;
            for (int k = 0; k < n_kinks; k++)
                if (fabsf(x[i] - kinks[k]) < margin)
                    ok = 0;
        } while (!ok);
    }
}

/* ---- Buffers ------------------------------------------------------------- */

/* Zeroed float buffer of exactly n elements (so ASan sees overruns). */
static inline float *nn_floats(size_t n)
{
    float *p = dp_calloc(n ? n : 1, sizeof(float));
    cr_assert_not_null(p, "dp_calloc(%zu floats) failed", n);
    return p;
}

static inline float *nn_floats_copy(const float *src, size_t n)
{
    float *p = nn_floats(n);
    memcpy(p, src, n * sizeof(float));
    return p;
}

static inline void nn_zero(float *x, size_t n)
{
    memset(x, 0, n * sizeof(float));
}

/* sum(a * b) accumulated in double: the scalar objective L = sum(out * R). */
static inline double nn_dot(const float *a, const float *b, size_t n)
{
    double s = 0.0;
    for (size_t i = 0; i < n; i++)
        s += (double)a[i] * (double)b[i];
    return s;
}

static inline float nn_maxabs(const float *x, size_t n)
{
    float m = 0.0f;
    for (size_t i = 0; i < n; i++)
        if (fabsf(x[i]) > m)
            m = fabsf(x[i]);
    return m;
}

/* ---- Comparison ---------------------------------------------------------- */

/*
 * Expects |got[i] - want[i]| <= atol + rtol * |want[i]| for every i (NaN
 * never passes). On failure one cr_expect names the label, the number of
 * bad elements and the worst one. Returns the number of bad elements.
 */
static inline size_t nn_expect_close(const char *label, const float *got, const float *want,
                                     size_t n, double atol, double rtol)
{
    size_t n_bad = 0, worst = 0;
    double worst_excess = -1.0;
    for (size_t i = 0; i < n; i++) {
        double g = got[i], w = want[i];
        double err = fabs(g - w), tol = atol + rtol * fabs(w);
        if (!(err <= tol)) {
            double excess = isnan(err) ? INFINITY : err / tol;
            n_bad++;
            if (excess > worst_excess) {
                worst_excess = excess;
                worst = i;
            }
        }
    }
    cr_expect(n_bad == 0,
              "%s: %zu of %zu elements differ; worst [%zu]: expected %.8g, got %.8g "
              "(|diff| %.3g, tol %.3g)",
              label, n_bad, n, worst, n ? (double)want[worst] : 0.0, n ? (double)got[worst] : 0.0,
              n ? fabs((double)got[worst] - want[worst]) : 0.0,
              n ? atol + rtol * fabs((double)want[worst]) : 0.0);
    return n_bad;
}

/* ---- Finite differences -------------------------------------------------- */

/*
 * Evaluates the scalar objective at the current inputs: typically runs a
 * layer's forward pass and returns nn_dot(out, R, n_out), so that the
 * gradient of the objective with respect to the output is R.
 */
typedef double (*nn_fd_objective_fn)(void *ctx);

/*
 * Central-difference check of `analytic` (n floats), the gradient of
 * f(ctx) with respect to x (n floats, perturbed in place and restored).
 * Every element is checked: numeric = (f(x+eps e_i) - f(x-eps e_i)) /
 * (x_i+eps - (x_i-eps)), using the float step actually taken.
 *
 * An element passes when |a - n| <= rtol * max(|a|, |n|, floor), with
 * floor = 0.1 * max_j |numeric_j|. The floor judges an element that is much
 * smaller than the rest of the gradient against the gradient's scale: the
 * numeric estimate's float32 noise is set by the outputs' magnitudes, not
 * by that element. The check also fails when the numeric gradient is zero
 * everywhere (it would then prove nothing); pass allow_zero = 1 where that
 * is the expected answer. Returns the number of failing elements.
 *
 * The objective runs with one OpenMP thread: the check makes thousands of
 * forward calls on tiny shapes, where a parallel region costs more than the
 * work, and when the test runner oversubscribes the cores (`--jobs=2` with
 * OMP_NUM_THREADS=2 on two cores) each region can cost a scheduler tick of
 * spinning. The analytic gradient the caller passes in was computed with
 * the default thread count, so the threaded kernels are still what is
 * checked; the twin and reference tests also run threaded.
 */
static inline size_t nn_fd_check(const char *label, float *x, size_t n, const float *analytic,
                                 nn_fd_objective_fn f, void *ctx, float eps, double rtol,
                                 int allow_zero)
{
    double *num = dp_malloc((n ? n : 1) * sizeof(double));
    cr_assert_not_null(num);
    double nmax = 0.0;
#ifdef _OPENMP
    int n_threads = omp_get_max_threads();
    omp_set_num_threads(1);
#endif
    for (size_t i = 0; i < n; i++) {
        float v = x[i];
        float vp = v + eps, vm = v - eps;
        x[i] = vp;
        double fp = f(ctx);
        x[i] = vm;
        double fm = f(ctx);
        x[i] = v;
        num[i] = (fp - fm) / ((double)vp - (double)vm);
        if (fabs(num[i]) > nmax)
            nmax = fabs(num[i]);
    }
#ifdef _OPENMP
    omp_set_num_threads(n_threads);
#endif
    double floor_ = 0.1 * nmax;
    size_t n_bad = 0, worst = 0;
    double worst_excess = -1.0;
    for (size_t i = 0; i < n; i++) {
        double a = analytic[i];
        double scale = fmax(fmax(fabs(a), fabs(num[i])), floor_);
        double err = fabs(a - num[i]);
        if (!(err <= rtol * scale)) {
            double excess = scale > 0.0 ? err / (rtol * scale) : INFINITY;
            n_bad++;
            if (!(excess <= worst_excess)) {
                worst_excess = excess;
                worst = i;
            }
        }
    }
    cr_expect(n_bad == 0,
              "%s: %zu of %zu gradient elements disagree with central differences; worst [%zu]:"
              " analytic %.7g, numeric %.7g (rtol %.1g, gradient scale %.3g)",
              label, n_bad, n, worst, n ? (double)analytic[worst] : 0.0, n ? num[worst] : 0.0, rtol,
              nmax);
    cr_expect(allow_zero || nmax > 0.0,
              "%s: numeric gradient is zero everywhere, so the check is vacuous", label);
    dp_free(num);
    return n_bad;
}

/* ---- Fixtures ------------------------------------------------------------ */

#define NN_FX_NAME_MAX 64
#define NN_FX_NDIM_MAX 8
#define NN_FX_VERSION  1u

struct nn_fx_array {
    char name[NN_FX_NAME_MAX];
    int ndim;
    int dims[NN_FX_NDIM_MAX];
    size_t n; /* element count */
    float *data;
};

struct nn_fx {
    char path[512];
    int n_arrays;
    struct nn_fx_array *arrays;
};

static inline void nn_fx_free(struct nn_fx *fx)
{
    if (fx->arrays) {
        for (int i = 0; i < fx->n_arrays; i++)
            dp_free(fx->arrays[i].data);
        dp_free(fx->arrays);
    }
    fx->arrays = NULL;
    fx->n_arrays = 0;
}

/* Bounded little-endian reader over the file's bytes. */
struct nn_fx_cursor {
    const unsigned char *p;
    size_t len, off;
};

static inline int nn_fx_u32(struct nn_fx_cursor *c, uint32_t *v)
{
    if (c->len - c->off < 4)
        return -1;
    const unsigned char *b = c->p + c->off;
    *v = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
    c->off += 4;
    return 0;
}

/*
 * Parses a fixture already read into memory. Returns NULL on success or a
 * static description of the first problem.
 */
static inline const char *nn_fx_parse(struct nn_fx *fx, const unsigned char *buf, size_t len)
{
    struct nn_fx_cursor c = {buf, len, 0};
    uint32_t version, n_arrays;
    if (len < 12 || memcmp(buf, "DPFX", 4) != 0)
        return "bad magic (expected \"DPFX\")";
    c.off = 4;
    if (nn_fx_u32(&c, &version) || version != NN_FX_VERSION)
        return "unsupported version (expected 1)";
    if (nn_fx_u32(&c, &n_arrays) || n_arrays == 0 || n_arrays > 256)
        return "bad array count";
    fx->arrays = dp_calloc(n_arrays, sizeof(*fx->arrays));
    if (!fx->arrays)
        return "out of memory";
    fx->n_arrays = (int)n_arrays;
    for (uint32_t a = 0; a < n_arrays; a++) {
        struct nn_fx_array *arr = &fx->arrays[a];
        uint32_t name_len, ndim;
        if (nn_fx_u32(&c, &name_len) || name_len == 0 || name_len >= NN_FX_NAME_MAX ||
            c.len - c.off < name_len)
            return "truncated or bad array name";
        memcpy(arr->name, c.p + c.off, name_len);
        arr->name[name_len] = '\0';
        c.off += name_len;
        if (nn_fx_u32(&c, &ndim) || ndim > NN_FX_NDIM_MAX)
            return "truncated or bad ndim";
        arr->ndim = (int)ndim;
        size_t count = 1;
        for (uint32_t k = 0; k < ndim; k++) {
            uint32_t dim;
            if (nn_fx_u32(&c, &dim) || dim == 0 || dim > (1u << 24))
                return "truncated or bad dimension";
            arr->dims[k] = (int)dim;
            count *= dim;
            if (count > (1u << 24))
                return "array too large";
        }
        arr->n = count;
        if ((c.len - c.off) / 4 < count)
            return "truncated array data";
        arr->data = dp_malloc(count * sizeof(float));
        if (!arr->data)
            return "out of memory";
        for (size_t i = 0; i < count; i++) {
            uint32_t bits = 0;
            (void)nn_fx_u32(&c, &bits); /* cannot fail: the length was checked above */
            memcpy(&arr->data[i], &bits, sizeof(float));
        }
    }
    if (c.off != c.len)
        return "trailing bytes after the last array";
    return NULL;
}

/*
 * Loads $DP_TEST_DATA/nn/<name>.bin (default tests/data/nn/<name>.bin) into
 * fx, which the caller releases with nn_fx_free. Fails the test with a
 * message saying how to fix it when the file is missing or corrupt.
 */
static inline void nn_fx_load(struct nn_fx *fx, const char *name)
{
    const char *root = getenv("DP_TEST_DATA");
    unsigned char *buf = NULL;
    const char *why = NULL;
    long len = -1;
    FILE *f;

    memset(fx, 0, sizeof(*fx));
    if (!root || !*root)
        root = "tests/data";
    snprintf(fx->path, sizeof(fx->path), "%s/nn/%s.bin", root, name);
    f = fopen(fx->path, "rb");
    cr_assert_not_null(f,
                       "fixture %s: cannot open (%s). Run the suites from the repository root "
                       "or set DP_TEST_DATA to the tests/data directory; regenerate fixtures "
                       "with `python3 tests/unit/worker/nn/make_fixtures.py`",
                       fx->path, strerror(errno));
    if (fseek(f, 0, SEEK_END) == 0)
        len = ftell(f);
    if (len < 0 || len > (64L << 20) || fseek(f, 0, SEEK_SET) != 0) {
        why = "cannot determine size";
    } else {
        buf = dp_malloc(len ? (size_t)len : 1);
        if (!buf)
            why = "out of memory";
        else if (fread(buf, 1, (size_t)len, f) != (size_t)len)
            why = "short read";
        else
            why = nn_fx_parse(fx, buf, (size_t)len);
    }
    fclose(f);
    dp_free(buf);
    if (why)
        nn_fx_free(fx);
    cr_assert_null(why,
                   "fixture %s is corrupt: %s. Regenerate it with "
                   "`python3 tests/unit/worker/nn/make_fixtures.py` (from the repository root)",
                   fx->path, why ? why : "");
}

/* The array called `name`, or NULL. */
static inline const struct nn_fx_array *nn_fx_find(const struct nn_fx *fx, const char *name)
{
    for (int i = 0; i < fx->n_arrays; i++)
        if (strcmp(fx->arrays[i].name, name) == 0)
            return &fx->arrays[i];
    return NULL;
}

/*
 * The data of array `name`, which must exist and hold exactly n elements
 * (the count the test derived from the case's cfg); fails the test if not.
 */
static inline float *nn_fx_get(const struct nn_fx *fx, const char *name, size_t n)
{
    const struct nn_fx_array *a = nn_fx_find(fx, name);
    cr_assert_not_null(a, "fixture %s: no array \"%s\"; regenerate the fixtures", fx->path, name);
    cr_assert_eq(a->n, n, "fixture %s: array \"%s\" has %zu elements, the test expects %zu",
                 fx->path, name, a->n, n);
    return a->data;
}

/* cfg[i] as an int; the cfg array must have at least n_cfg entries. */
static inline int nn_fx_cfg(const struct nn_fx *fx, int i, int n_cfg)
{
    const struct nn_fx_array *a = nn_fx_find(fx, "cfg");
    cr_assert_not_null(a, "fixture %s: no \"cfg\" array", fx->path);
    cr_assert_eq(a->n, (size_t)n_cfg, "fixture %s: cfg has %zu entries, the test expects %d",
                 fx->path, a->n, n_cfg);
    cr_assert(i >= 0 && i < n_cfg);
    return (int)a->data[i];
}

/* cfg[i] as a float (epsilon, momentum). */
static inline float nn_fx_cfg_f(const struct nn_fx *fx, int i, int n_cfg)
{
    (void)nn_fx_cfg(fx, i, n_cfg);
    return nn_fx_find(fx, "cfg")->data[i];
}

#endif
