/*
 * Tests for the quantizers of proj.h (suite "quant"), following the
 * dossier's section 10.4: feasibility (every group uses at most as many
 * distinct values as its level set has), idempotence bit for bit,
 * per-channel against per-layer, keep_zeros, optimality against
 * independent references, and deterministic ties.
 *
 * DESIGN: the five quantizers are described by one table (name, function,
 * size of the level set for a bit width), so the generic properties run
 * over every quantizer, bit width, shape, mode and kind of data. The
 * optimality references are written here from the definitions, not from
 * the implementation: binary against the mean, ternary against every
 * support of a tiny tensor, kbit against a dense scan of the scale
 * interval, pow2 and pow2sum against a linear scan over every level of the
 * set at each candidate scale. Scratch is allocated with exactly
 * proj_scratch_bytes() so ASan catches any overrun.
 */
#include <criterion/criterion.h>
#include <float.h>
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "tests/unit/test_util.h"
#include "worker/compress/proj.h"

#define OPT_RTOL    1e-6
#define SCAN_POINTS 20000
#define BRUTE_MAX_N 12

/* ---- Random data ----------------------------------------------------------- */

/* Uniform in (0, 1). */
static double trng_unit(struct dp_test_rng *r)
{
    return ((double)(dp_test_rng_next(r) >> 11) + 0.5) / 9007199254740992.0;
}

enum data_kind {
    DATA_GAUSS,       /* N(0, 1) */
    DATA_GAUSS_ZEROS, /* N(0, 1) with a quarter exact zeros */
    DATA_UNIFORM,     /* U(-1, 1) */
    DATA_HEAVY,       /* a Student-like heavy tail: gauss / sqrt(uniform) */
    DATA_LEVELS,      /* {0, +-0.5, +-1, +-1.5}: ties everywhere */
};

#define N_DATA_KINDS 5

static float rnd_value(struct dp_test_rng *r, enum data_kind kind)
{
    static const float lv[] = {0.0f, 0.5f, -0.5f, 1.0f, -1.0f, 1.5f, -1.5f};
    double g = sqrt(-2.0 * log(trng_unit(r))) * cos(6.283185307179586 * trng_unit(r));

    switch (kind) {
        case DATA_GAUSS:
            return (float)g;
        case DATA_GAUSS_ZEROS:
            return trng_unit(r) < 0.25 ? 0.0f : (float)g;
        case DATA_UNIFORM:
            return (float)(2.0 * trng_unit(r) - 1.0);
        case DATA_HEAVY:
            return (float)(g / sqrt(trng_unit(r)));
        case DATA_LEVELS:
            return lv[dp_test_rng_next(r) % (sizeof lv / sizeof lv[0])];
    }
    return 0.0f;
}

static void fill(float *z, size_t n, uint64_t seed, enum data_kind kind)
{
    struct dp_test_rng r = {seed * 0x9E3779B97F4A7C15ULL + 12345};

    for (size_t j = 0; j < n; j++)
        z[j] = rnd_value(&r, kind);
}

/* ---- The quantizers -------------------------------------------------------- */

struct qdesc {
    const char *name;
    proj_fn fn;
    int uses_bits;
};

static const struct qdesc quantizers[] = {
    {"binary", quant_binary, 0}, {"ternary", quant_ternary, 0}, {"kbit", quant_kbit, 1},
    {"pow2", quant_pow2, 1},     {"pow2sum", quant_pow2sum, 1},
};

#define N_QUANT ((int)(sizeof quantizers / sizeof quantizers[0]))

static const int bit_widths[] = {2, 3, 4, 5, 8};

#define N_BITS ((int)(sizeof bit_widths / sizeof bit_widths[0]))

static int64_t level_j(int bits)
{
    return ((int64_t)1 << (bits - 1)) - 1;
}

/* Number of values in the level set, zero included (binary: 0 only for kept zeros). */
static int64_t set_size(const struct qdesc *q, int bits, int keep_zeros)
{
    int64_t j = level_j(bits);

    if (q->fn == quant_binary)
        return keep_zeros ? 3 : 2;
    if (q->fn == quant_ternary)
        return 3;
    if (q->fn == quant_kbit)
        return 2 * j + 1;
    if (q->fn == quant_pow2)
        return 2 * j + 1;
    /* pow2sum: J(J-1)/2 sums of two distinct powers, J+1 powers 2^(1-j) for j = 0..J. */
    return 2 * (j * (j - 1) / 2 + j + 1) + 1;
}

static size_t numel(const struct proj_shape *s)
{
    return (size_t)(s->o * s->i * s->kh * s->kw);
}

static void run_quant(const struct qdesc *q, float *z, const struct proj_shape *s,
                      const struct proj_params *p)
{
    void *scratch = dp_malloc(proj_scratch_bytes(s));

    cr_assert_not_null(scratch);
    q->fn(z, s, p, scratch);
    dp_free(scratch);
}

static struct proj_params params(int bits, int per_channel, int keep_zeros)
{
    struct proj_params p = proj_params_default();

    p.bits = bits;
    p.per_channel = per_channel;
    p.keep_zeros = keep_zeros;
    return p;
}

static float *alloc_floats(size_t n)
{
    float *z = dp_malloc((n > 0 ? n : 1) * sizeof *z);

    cr_assert_not_null(z);
    return z;
}

static int float_cmp(const void *a, const void *b)
{
    float x = *(const float *)a;
    float y = *(const float *)b;
    return (x > y) - (x < y);
}

/* Distinct values of z[0..n) (+0 and -0 count as one). */
static size_t count_distinct(const float *z, size_t n)
{
    float *t = alloc_floats(n);
    size_t k = 0;

    memcpy(t, z, n * sizeof *t);
    qsort(t, n, sizeof *t, float_cmp);
    for (size_t j = 0; j < n; j++) {
        if (j == 0 || t[j] != t[j - 1])
            k++;
    }
    dp_free(t);
    return k;
}

static double sq_err(const float *z, const float *q, size_t n)
{
    double e = 0.0;

    for (size_t j = 0; j < n; j++) {
        double d = (double)z[j] - (double)q[j];
        e += d * d;
    }
    return e;
}

static double sum_sq(const float *z, size_t n)
{
    double s = 0.0;

    for (size_t j = 0; j < n; j++)
        s += (double)z[j] * (double)z[j];
    return s;
}

/* ---- Shapes and modes for the generic properties ---------------------------- */

static const struct proj_shape shapes[] = {
    {1, 1, 1, 1}, {1, 7, 1, 1}, {3, 1, 1, 1}, {4, 3, 3, 3}, {16, 8, 1, 1}, {6, 5, 2, 2},
};

#define N_SHAPES ((int)(sizeof shapes / sizeof shapes[0]))

/* One case of the generic properties. */
struct gen_case {
    const struct qdesc *q;
    int bits, per_channel, keep_zeros;
    enum data_kind kind;
    const struct proj_shape *s;
    uint64_t seed;
};

typedef void (*gen_fn)(const struct gen_case *c);

/* Calls fn for every quantizer x bit width (one for those without) x mode x data kind x shape. */
static void for_all_cases(gen_fn fn)
{
    uint64_t seed = 1;

    for (int qi = 0; qi < N_QUANT; qi++) {
        const struct qdesc *q = &quantizers[qi];
        int n_bits = q->uses_bits ? N_BITS : 1;
        for (int bi = 0; bi < n_bits; bi++) {
            for (int mode = 0; mode < 4; mode++) {
                for (int kind = 0; kind < N_DATA_KINDS; kind++) {
                    for (int si = 0; si < N_SHAPES; si++) {
                        struct gen_case c = {
                            .q = q,
                            .bits = q->uses_bits ? bit_widths[bi] : 8,
                            .per_channel = mode & 1,
                            .keep_zeros = (mode >> 1) & 1,
                            .kind = (enum data_kind)kind,
                            .s = &shapes[si],
                            .seed = seed++,
                        };
                        fn(&c);
                    }
                }
            }
        }
    }
}

/* ---- Generic properties ---------------------------------------------------- */

TestSuite(quant);

static void check_feasible(const struct gen_case *c)
{
    size_t n = numel(c->s);
    float *z = alloc_floats(n);
    float *q = alloc_floats(n);
    struct proj_params p = params(c->bits, c->per_channel, c->keep_zeros);

    fill(z, n, c->seed, c->kind);
    memcpy(q, z, n * sizeof *q);
    run_quant(c->q, q, c->s, &p);

    size_t n_groups = c->per_channel ? (size_t)c->s->o : 1;
    size_t len = n / n_groups;
    for (size_t g = 0; g < n_groups; g++) {
        size_t k = count_distinct(q + g * len, len);
        cr_assert_leq((int64_t)k, set_size(c->q, c->bits, c->keep_zeros),
                      "%s bits %d: %zu distinct values in group %zu (case %llu)", c->q->name,
                      c->bits, k, g, (unsigned long long)c->seed);
    }
    for (size_t j = 0; j < n; j++) {
        cr_assert(isfinite(q[j]), "%s: entry %zu not finite", c->q->name, j);
        /* Exact zeros stay zero, except binary without keep_zeros (sign(0) = +1). */
        if (z[j] == 0.0f && (c->keep_zeros || c->q->fn != quant_binary))
            cr_assert(q[j] == 0.0f, "%s: zero at %zu became %g", c->q->name, j, q[j]);
    }
    dp_free(z);
    dp_free(q);
}

Test(quant, feasible_and_finite)
{
    for_all_cases(check_feasible);
    DP_ASSERT_NO_LEAKS();
}

static void check_idempotent(const struct gen_case *c)
{
    size_t n = numel(c->s);
    float *q1 = alloc_floats(n);
    float *q2 = alloc_floats(n);
    struct proj_params p = params(c->bits, c->per_channel, c->keep_zeros);

    fill(q1, n, c->seed, c->kind);
    run_quant(c->q, q1, c->s, &p);
    memcpy(q2, q1, n * sizeof *q2);
    run_quant(c->q, q2, c->s, &p);
    for (size_t j = 0; j < n; j++) {
        cr_assert(memcmp(&q1[j], &q2[j], sizeof q1[j]) == 0,
                  "%s bits %d pc %d kz %d kind %d: entry %zu %.9g -> %.9g (case %llu)", c->q->name,
                  c->bits, c->per_channel, c->keep_zeros, (int)c->kind, j, q1[j], q2[j],
                  (unsigned long long)c->seed);
    }
    dp_free(q1);
    dp_free(q2);
}

Test(quant, idempotent)
{
    for_all_cases(check_idempotent);
    DP_ASSERT_NO_LEAKS();
}

/* Quantizing -z gives -Q(z): every level set is symmetric and every tie rule is by magnitude. */
static void check_symmetric(const struct gen_case *c)
{
    size_t n = numel(c->s);
    float *a = alloc_floats(n);
    float *b = alloc_floats(n);
    struct proj_params p = params(c->bits, c->per_channel, c->keep_zeros);

    if (c->q->fn == quant_binary) { /* sign(0) = +1 is the one asymmetry */
        dp_free(a);
        dp_free(b);
        return;
    }
    fill(a, n, c->seed, c->kind);
    for (size_t j = 0; j < n; j++)
        b[j] = -a[j];
    run_quant(c->q, a, c->s, &p);
    run_quant(c->q, b, c->s, &p);
    for (size_t j = 0; j < n; j++)
        cr_assert(b[j] == -a[j], "%s: entry %zu: %g vs %g", c->q->name, j, b[j], a[j]);
    dp_free(a);
    dp_free(b);
}

Test(quant, sign_symmetric)
{
    for_all_cases(check_symmetric);
    DP_ASSERT_NO_LEAKS();
}

/* Per channel is the per-layer quantizer applied to every row on its own. */
static void check_per_channel(const struct gen_case *c)
{
    size_t n = numel(c->s);
    size_t len = n / (size_t)c->s->o;
    float *z = alloc_floats(n);
    float *row = alloc_floats(len);
    struct proj_params pc = params(c->bits, 1, c->keep_zeros);
    struct proj_params pl = params(c->bits, 0, c->keep_zeros);
    struct proj_shape rs = {1, c->s->i, c->s->kh, c->s->kw};

    if (c->per_channel) {
        dp_free(z);
        dp_free(row);
        return;
    }
    fill(z, n, c->seed, c->kind);
    /* Rows of very different scales, so that one scale per layer would not do. */
    for (size_t o = 0; o < (size_t)c->s->o; o++) {
        for (size_t j = 0; j < len; j++)
            z[o * len + j] *= (float)ldexp(1.0, (int)(o % 5) * 3 - 6);
    }
    float *zl = alloc_floats(n);
    memcpy(zl, z, n * sizeof *zl);
    run_quant(c->q, z, c->s, &pc);
    for (size_t o = 0; o < (size_t)c->s->o; o++) {
        memcpy(row, zl + o * len, len * sizeof *row);
        run_quant(c->q, row, &rs, &pl);
        cr_assert(memcmp(row, z + o * len, len * sizeof *row) == 0, "%s: row %zu differs",
                  c->q->name, o);
    }
    dp_free(z);
    dp_free(zl);
    dp_free(row);
}

Test(quant, per_channel_equals_row_by_row)
{
    for_all_cases(check_per_channel);
    DP_ASSERT_NO_LEAKS();
}

Test(quant, per_layer_and_per_channel_scales)
{
    /* Rows at scales 1, 10, 100: binary and ternary use one magnitude per group. */
    struct proj_shape s = {3, 8, 1, 1};
    float z[24];

    for (int qi = 0; qi < 2; qi++) {
        for (int pc = 0; pc < 2; pc++) {
            struct proj_params p = params(8, pc, 0);
            fill(z, 24, 77, DATA_GAUSS);
            for (int j = 0; j < 24; j++)
                z[j] = z[j] * (j < 8 ? 1.0f : j < 16 ? 10.0f : 100.0f) + (z[j] < 0 ? -0.5f : 0.5f);
            run_quant(&quantizers[qi], z, &s, &p);
            float mag[3] = {0.0f, 0.0f, 0.0f};
            for (int j = 0; j < 24; j++) {
                if (z[j] == 0.0f)
                    continue;
                int g = pc ? j / 8 : 0;
                if (mag[g] == 0.0f)
                    mag[g] = fabsf(z[j]);
                cr_assert_eq(fabsf(z[j]), mag[g], "%s pc %d: entry %d", quantizers[qi].name, pc, j);
            }
            if (pc)
                cr_assert(mag[0] < mag[1] && mag[1] < mag[2], "%s: scales %g %g %g",
                          quantizers[qi].name, mag[0], mag[1], mag[2]);
        }
    }
    DP_ASSERT_NO_LEAKS();
}

Test(quant, all_zero_stays_zero)
{
    struct proj_shape s = {4, 3, 3, 3};
    size_t n = numel(&s);
    float *z = alloc_floats(n);

    for (int qi = 0; qi < N_QUANT; qi++) {
        for (int bi = 0; bi < N_BITS; bi++) {
            for (int mode = 0; mode < 4; mode++) {
                struct proj_params p = params(bit_widths[bi], mode & 1, mode >> 1);
                /* All zero, and (per channel) one zero row among random ones. */
                for (int variant = 0; variant < 2; variant++) {
                    fill(z, n, 5, DATA_GAUSS);
                    for (size_t j = 0; j < n; j++) {
                        if (variant == 0 || j < n / 4)
                            z[j] = 0.0f;
                    }
                    run_quant(&quantizers[qi], z, &s, &p);
                    for (size_t j = 0; j < n; j++) {
                        cr_assert(isfinite(z[j]));
                        if (variant == 0 || (mode & 1 && j < n / 4))
                            cr_assert(z[j] == 0.0f, "%s mode %d variant %d: entry %zu = %g",
                                      quantizers[qi].name, mode, variant, j, z[j]);
                    }
                }
            }
        }
    }
    dp_free(z);
    DP_ASSERT_NO_LEAKS();
}

Test(quant, non_finite_group_is_left_alone)
{
    /* Per channel: rows 1 and 3 hold a NaN and an infinity and come back bit for bit. */
    struct proj_shape s = {4, 6, 1, 1};
    float z[24], q[24];

    for (int qi = 0; qi < N_QUANT; qi++) {
        for (int pc = 0; pc < 2; pc++) {
            struct proj_params p = params(4, pc, 0);
            fill(z, 24, 55, DATA_GAUSS);
            z[8] = NAN;
            z[20] = -INFINITY;
            memcpy(q, z, sizeof q);
            run_quant(&quantizers[qi], q, &s, &p);
            for (int j = 0; j < 24; j++) {
                int row = j / 6;
                if (!pc || row == 1 || row == 3)
                    cr_assert(memcmp(&q[j], &z[j], sizeof q[j]) == 0, "%s pc %d: entry %d changed",
                              quantizers[qi].name, pc, j);
                else
                    cr_assert(isfinite(q[j]));
            }
        }
    }
    DP_ASSERT_NO_LEAKS();
}

/*
 * keep_zeros: zeros stay zero and do not shape the scale, so the non-zero
 * entries come out exactly as when the zeros are removed from the tensor.
 */
static void check_keep_zeros(const struct gen_case *c)
{
    size_t n = numel(c->s);
    float *z = alloc_floats(n);
    float *dense = alloc_floats(n);
    struct proj_params p = params(c->bits, 0, 1);

    if (c->per_channel || c->keep_zeros || c->kind != DATA_GAUSS_ZEROS) {
        dp_free(z);
        dp_free(dense);
        return;
    }
    fill(z, n, c->seed, c->kind);
    size_t k = 0;
    for (size_t j = 0; j < n; j++) {
        if (z[j] != 0.0f)
            dense[k++] = z[j];
    }
    run_quant(c->q, z, c->s, &p);
    if (k > 0) {
        struct proj_shape ds = {1, (int64_t)k, 1, 1};
        run_quant(c->q, dense, &ds, &p);
    }
    /* Walk the entries with the original zeros. */
    float *orig = alloc_floats(n);
    fill(orig, n, c->seed, c->kind);
    size_t r = 0;
    for (size_t j = 0; j < n; j++) {
        if (orig[j] == 0.0f) {
            cr_assert(z[j] == 0.0f, "%s: zero at %zu became %g", c->q->name, j, z[j]);
            continue;
        }
        cr_assert(memcmp(&z[j], &dense[r], sizeof z[j]) == 0,
                  "%s bits %d: entry %zu is %.9g, without the zeros %.9g", c->q->name, c->bits, j,
                  z[j], dense[r]);
        r++;
    }
    dp_free(orig);
    dp_free(z);
    dp_free(dense);
}

Test(quant, keep_zeros_preserves_and_ignores_zeros)
{
    for_all_cases(check_keep_zeros);
    DP_ASSERT_NO_LEAKS();
}

/* ---- Binary ------------------------------------------------------------------ */

Test(quant, binary_scale_is_mean_abs)
{
    static const struct proj_shape bs[] = {{1, 9, 1, 1}, {5, 4, 3, 3}, {2, 1, 1, 1}};

    for (size_t si = 0; si < sizeof bs / sizeof bs[0]; si++) {
        for (int mode = 0; mode < 4; mode++) {
            int pc = mode & 1, kz = mode >> 1;
            size_t n = numel(&bs[si]);
            size_t ng = pc ? (size_t)bs[si].o : 1, len = n / ng;
            float *z = alloc_floats(n);
            float *q = alloc_floats(n);
            struct proj_params p = params(8, pc, kz);
            fill(z, n, 100 + si * 4 + (size_t)mode, DATA_GAUSS_ZEROS);
            memcpy(q, z, n * sizeof *q);
            run_quant(&quantizers[0], q, &bs[si], &p);
            for (size_t g = 0; g < ng; g++) {
                double sum = 0.0;
                size_t cnt = 0;
                for (size_t j = g * len; j < (g + 1) * len; j++) {
                    if (kz && z[j] == 0.0f)
                        continue;
                    sum += fabs((double)z[j]);
                    cnt++;
                }
                float a = cnt ? (float)(sum / (double)cnt) : 0.0f;
                for (size_t j = g * len; j < (g + 1) * len; j++) {
                    if (kz && z[j] == 0.0f) {
                        cr_assert(q[j] == 0.0f);
                        continue;
                    }
                    /* sign(0) = +1 */
                    cr_assert_eq(q[j], z[j] < 0.0f ? -a : a, "entry %zu: %g vs a = %g", j, q[j], a);
                }
            }
            dp_free(z);
            dp_free(q);
        }
    }
    DP_ASSERT_NO_LEAKS();
}

/* ---- Ternary ----------------------------------------------------------------- */

/* Least error over every support S: a = mean |z_S|, error sum_S (|z|-a)^2 + sum_notS z^2. */
static double ternary_brute(const float *z, int n)
{
    double best = INFINITY;

    for (uint32_t mask = 0; mask < (1u << n); mask++) {
        double s = 0.0;
        int m = 0;
        for (int j = 0; j < n; j++) {
            if (mask & (1u << j)) {
                s += fabs((double)z[j]);
                m++;
            }
        }
        double a = m ? s / m : 0.0;
        double e = 0.0;
        for (int j = 0; j < n; j++) {
            double d = (mask & (1u << j)) ? fabs((double)z[j]) - a : (double)z[j];
            e += d * d;
        }
        if (e < best)
            best = e;
    }
    return best;
}

Test(quant, ternary_matches_brute_force)
{
    float z[BRUTE_MAX_N], q[BRUTE_MAX_N];
    uint64_t seed = 1000;

    for (int n = 1; n <= BRUTE_MAX_N; n++) {
        for (int kind = 0; kind < N_DATA_KINDS; kind++) {
            for (int rep = 0; rep < 6; rep++) {
                struct proj_shape s = {1, n, 1, 1};
                /* keep_zeros keeps the support (ternary_after_pruning_...). */
                struct proj_params p = params(8, 0, 0);
                fill(z, (size_t)n, seed++, kind);
                memcpy(q, z, sizeof z);
                run_quant(&quantizers[1], q, &s, &p);
                double best = ternary_brute(z, n);
                double got = sq_err(z, q, (size_t)n);
                double ss = sum_sq(z, (size_t)n);
                cr_assert_leq(got, best * (1.0 + OPT_RTOL) + 1e-12 * ss,
                              "n %d kind %d: error %.12g, brute force %.12g", n, kind, got, best);
                cr_assert_geq(got, best * (1.0 - OPT_RTOL) - 1e-12 * ss);
            }
        }
    }
    DP_ASSERT_NO_LEAKS();
}

Test(quant, ternary_ties)
{
    static const struct {
        int n;
        float in[6];
        float out[6];
    } cases[] = {
        /* S_m^2/m = 9, 8, 8.33, 9: m = 1 and m = 4 tie, the smaller wins. */
        {4, {3, 1, 1, 1}, {3, 0, 0, 0}},          {4, {1, -1, 3, 1}, {0, 0, 3, 0}},
        {4, {1, -1, 1, -1}, {1, -1, 1, -1}},      {3, {-2, 0, 2}, {-2, 0, 2}},
        {5, {4, 4, 1, 0.5f, 0}, {4, 4, 0, 0, 0}},
    };

    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        struct proj_shape s = {1, cases[c].n, 1, 1};
        {
            struct proj_params p = params(8, 0, 0);
            float z[6];
            memcpy(z, cases[c].in, sizeof z);
            run_quant(&quantizers[1], z, &s, &p);
            for (int j = 0; j < cases[c].n; j++)
                cr_assert_eq(z[j], cases[c].out[j], "case %zu entry %d: %g", c, j, z[j]);
        }
    }
    DP_ASSERT_NO_LEAKS();
}

/*
 * Pruning then ternary on one tensor (keep_zeros, as the spec sets it): the
 * pruned support is kept, every survivor becoming +-a with a the mean
 * magnitude of the survivors. The optimal ternary over the survivors may
 * zero most of them when a few are much larger (what ADMM's Z-steps breed:
 * each zeroed survivor is pulled further towards 0 by the next W-step), and
 * at 200x that took 2,122 kept weights to 85.
 */
Test(quant, ternary_after_pruning_keeps_the_support)
{
    enum { N = 1000 };
    float z[N];
    for (int j = 0; j < N; j++)
        z[j] = 0.001f * (float)(j % 7) - 0.003f; /* pruned below */
    double sum = 0.0;
    for (int j = 0; j < N; j += 10) {
        /* 100 survivors: 5 outliers near 10, 95 near 1, signs alternating. */
        const float v = j < 50 ? 10.0f + 0.01f * (float)j : 1.0f + 0.001f * (float)j;
        z[j] = (j / 10) % 2 ? -v : v;
        sum += (double)v;
    }
    struct proj_shape s = {1, N, 1, 1};
    struct proj_params p = params(8, 0, 1);
    p.rate = 10.0;
    void *scratch = dp_malloc(proj_scratch_bytes(&s));
    cr_assert_not_null(scratch);
    proj_irregular(z, &s, &p, scratch);
    quant_ternary(z, &s, &p, scratch);
    dp_free(scratch);
    const float a = (float)(sum / 100.0);
    int nnz = 0;
    for (int j = 0; j < N; j++) {
        nnz += z[j] != 0.0f;
        if (j % 10 == 0)
            cr_assert_float_eq(z[j], (j / 10) % 2 ? -a : a, 1e-6f * a, "entry %d: %g, not +-%g", j,
                               (double)z[j], (double)a);
    }
    cr_assert_eq(nnz, 100, "%d of the 100 kept weights are non-zero", nnz);
    DP_ASSERT_NO_LEAKS();
}

/* ---- k-bit ------------------------------------------------------------------- */

/* Squared error of a * clip(round(x/a), -M, M) in real (double) arithmetic. */
static double kbit_ref_err(const float *z, size_t n, double a, int m)
{
    double e = 0.0;

    for (size_t j = 0; j < n; j++) {
        double q = round((double)z[j] / a);
        if (q > m)
            q = m;
        if (q < -m)
            q = -m;
        double d = (double)z[j] - a * q;
        e += d * d;
    }
    return e;
}

/* Least error over n_points scales evenly spread over [max/(M+0.5)*0.5, max/M*1.5]. */
static double kbit_scan(const float *z, size_t n, int m, int n_points)
{
    double xmax = 0.0;

    for (size_t j = 0; j < n; j++)
        xmax = fmax(xmax, fabs((double)z[j]));
    if (xmax == 0.0)
        return 0.0;
    double lo = xmax / (m + 0.5) * 0.5, hi = xmax / m * 1.5;
    double best = INFINITY;
    for (int s = 0; s < n_points; s++)
        best = fmin(best, kbit_ref_err(z, n, lo + (hi - lo) * s / (n_points - 1), m));
    return best;
}

/*
 * The quantizer's float outputs differ from the real levels a*q by at most
 * half an ulp each, so by the triangle inequality their error is at most
 * (sqrt(E(a)) + ||half ulps||)^2: that much is allowed on top of the best
 * real-valued scan error (relative OPT_RTOL, and 1e-12 * ||z||^2 for the
 * float rounding of the scale itself when a group fits its grid exactly).
 */
static void assert_kbit_near_scan(const float *z, const float *q, size_t n, int m, int n_points,
                                  const char *what)
{
    double got = sq_err(z, q, n);
    double scan = kbit_scan(z, n, m, n_points);
    double ulps = 0.0;

    for (size_t j = 0; j < n; j++) {
        double h = 0.5 * ((double)nextafterf(fabsf(q[j]), INFINITY) - (double)fabsf(q[j]));
        ulps += h * h;
    }
    double bound = sqrt(scan * (1.0 + OPT_RTOL) + 1e-12 * sum_sq(z, n)) + sqrt(ulps);
    cr_assert_leq(sqrt(got), bound, "%s: error %.12g, scan %.12g (bound %.12g)", what, got, scan,
                  bound * bound);
}

Test(quant, kbit_no_worse_than_dense_scan)
{
    static const int sizes[] = {1, 2, 5, 40, 300};
    uint64_t seed = 5000;

    for (int bi = 0; bi < N_BITS; bi++) {
        int m = (int)level_j(bit_widths[bi]);
        for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
            for (int kind = 0; kind < N_DATA_KINDS; kind++) {
                size_t n = (size_t)sizes[si];
                float *z = alloc_floats(n);
                float *q = alloc_floats(n);
                struct proj_shape s = {1, (int64_t)n, 1, 1};
                struct proj_params p = params(bit_widths[bi], 0, 0);
                fill(z, n, seed++, kind);
                memcpy(q, z, n * sizeof *q);
                run_quant(&quantizers[2], q, &s, &p);
                char what[64];
                snprintf(what, sizeof what, "bits %d n %zu kind %d", bit_widths[bi], n, kind);
                assert_kbit_near_scan(z, q, n, m, SCAN_POINTS, what);
                dp_free(z);
                dp_free(q);
            }
        }
    }
    DP_ASSERT_NO_LEAKS();
}

/*
 * Groups with many events (large, 7-8 bits) take the grid-and-windows path
 * instead of one exact sweep: still no worse than a scan, and idempotent.
 */
Test(quant, kbit_large_groups)
{
    static const struct {
        struct proj_shape s;
        int bits, per_channel, n_points;
    } cases[] = {
        {{1, 8192, 1, 1}, 8, 0, 4000},
        {{1, 6000, 1, 1}, 7, 0, 4000},
        {{64, 256, 3, 3}, 8, 0, 64},
        {{4, 512, 3, 3}, 8, 1, 500},
    };

    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const struct proj_shape *s = &cases[c].s;
        size_t n = numel(s);
        int m = (int)level_j(cases[c].bits);
        float *z = alloc_floats(n);
        float *q = alloc_floats(n);
        float *q2 = alloc_floats(n);
        struct proj_params p = params(cases[c].bits, cases[c].per_channel, 0);
        for (int kind = 0; kind < 2; kind++) {
            fill(z, n, 4242 + c * 2 + (uint64_t)kind, kind == 0 ? DATA_GAUSS : DATA_HEAVY);
            memcpy(q, z, n * sizeof *q);
            run_quant(&quantizers[2], q, s, &p);
            size_t ng = cases[c].per_channel ? (size_t)s->o : 1, len = n / ng;
            for (size_t g = 0; g < ng; g++) {
                char what[64];
                snprintf(what, sizeof what, "case %zu kind %d group %zu", c, kind, g);
                cr_assert_leq((int64_t)count_distinct(q + g * len, len), 2 * m + 1, "%s", what);
                assert_kbit_near_scan(z + g * len, q + g * len, len, m, cases[c].n_points, what);
            }
            memcpy(q2, q, n * sizeof *q2);
            run_quant(&quantizers[2], q2, s, &p);
            cr_assert(memcmp(q, q2, n * sizeof *q) == 0, "case %zu kind %d: not idempotent", c,
                      kind);
        }
        dp_free(z);
        dp_free(q);
        dp_free(q2);
    }
    DP_ASSERT_NO_LEAKS();
}

Test(quant, kbit_values_are_multiples_of_one_scale)
{
    /*
     * Every output is a * k with |k| <= M for one a: with u the smallest
     * non-zero magnitude (u = a * k0), some k0 in 1..M makes every ratio
     * |v| / u * k0 an integer of at most M.
     */
    for (int bi = 0; bi < N_BITS; bi++) {
        int m = (int)level_j(bit_widths[bi]);
        struct proj_shape s = {1, 200, 1, 1};
        float z[200];
        struct proj_params p = params(bit_widths[bi], 0, 0);
        fill(z, 200, 31 + (uint64_t)bi, DATA_UNIFORM);
        run_quant(&quantizers[2], z, &s, &p);
        float u = INFINITY;
        for (int j = 0; j < 200; j++) {
            if (z[j] != 0.0f)
                u = fminf(u, fabsf(z[j]));
        }
        cr_assert(isfinite(u));
        int found = 0;
        for (int k0 = 1; k0 <= m && !found; k0++) {
            found = 1;
            for (int j = 0; j < 200 && found; j++) {
                double r = fabs((double)z[j]) / u * k0;
                found = fabs(r - round(r)) <= 1e-5 * (r + 1.0) && round(r) <= m;
            }
        }
        cr_assert(found, "bits %d: outputs are not multiples of one scale", bit_widths[bi]);
    }
    DP_ASSERT_NO_LEAKS();
}

/* ---- pow2 and pow2sum -------------------------------------------------------- */

/* Every positive level for a = 1, as exact doubles, unsorted, duplicates allowed. */
static int ref_levels(int sum_of_two, int bits, double *lv)
{
    int nj = (int)level_j(bits), n = 0;

    for (int j = 0; j < nj; j++) {
        lv[n++] = ldexp(1.0, -j);
        if (!sum_of_two)
            continue;
        for (int k = j; k < nj; k++)
            lv[n++] = ldexp(1.0, -j) + ldexp(1.0, -k);
    }
    return n;
}

/*
 * The definition, by brute force: for each a = 2^e around max|z|, every
 * entry to the nearest of 0 and the float levels +-a*lv (linear scan; ties
 * to the larger magnitude), error summed in index order; the least error
 * wins, ties to the smaller e.
 */
static void ref_pow2(const float *z, size_t n, int sum_of_two, int bits, float *out)
{
    double *lv = dp_malloc(9000 * sizeof *lv); /* J(J+1)/2 + J <= 8255 levels */
    cr_assert_not_null(lv);
    int n_lv = ref_levels(sum_of_two, bits, lv);
    float xmax = 0.0f;

    for (size_t j = 0; j < n; j++)
        xmax = fmaxf(xmax, fabsf(z[j]));
    memcpy(out, z, n * sizeof *out);
    if (xmax == 0.0f) {
        dp_free(lv);
        return;
    }
    int f = (int)floor(log2((double)xmax));
    double best_err = INFINITY;
    float *cand = alloc_floats(n);
    for (int e = f - 1; e <= f + 1; e++) {
        double err = 0.0;
        for (size_t j = 0; j < n; j++) {
            float x = fabsf(z[j]);
            float best = 0.0f;
            for (int l = 0; l < n_lv; l++) {
                float L = (float)ldexp(lv[l], e);
                double dl = fabs((double)x - L), db = fabs((double)x - best);
                if (dl < db || (dl == db && L > best))
                    best = L;
            }
            cand[j] = z[j] == 0.0f ? z[j] : best == 0.0f ? 0.0f : copysignf(best, z[j]);
            double d = (double)x - best;
            err += d * d;
        }
        if (err < best_err) {
            best_err = err;
            memcpy(out, cand, n * sizeof *out);
        }
    }
    dp_free(cand);
    dp_free(lv);
}

Test(quant, pow2_and_pow2sum_match_brute_force)
{
    static const int sizes[] = {1, 3, 17, 64};
    uint64_t seed = 9000;

    for (int which = 0; which < 2; which++) {
        const struct qdesc *q = &quantizers[3 + which];
        for (int bi = 0; bi < N_BITS; bi++) {
            for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
                for (int kind = 0; kind < N_DATA_KINDS; kind++) {
                    size_t n = (size_t)sizes[si];
                    float *z = alloc_floats(n);
                    float *want = alloc_floats(n);
                    struct proj_shape s = {1, (int64_t)n, 1, 1};
                    struct proj_params p = params(bit_widths[bi], 0, 1);
                    fill(z, n, seed++, kind);
                    ref_pow2(z, n, which, bit_widths[bi], want);
                    run_quant(q, z, &s, &p);
                    for (size_t j = 0; j < n; j++)
                        cr_assert(memcmp(&z[j], &want[j], sizeof z[j]) == 0,
                                  "%s bits %d n %zu kind %d entry %zu: %.9g, brute force %.9g",
                                  q->name, bit_widths[bi], n, kind, j, z[j], want[j]);
                    dp_free(z);
                    dp_free(want);
                }
            }
        }
    }
    DP_ASSERT_NO_LEAKS();
}

Test(quant, pow2_ties_go_to_the_larger_magnitude)
{
    static const struct {
        int which, bits, n;
        float in[4];
        float out[4];
    } cases[] = {
        /* pow2, J = 3: 0.75 is halfway between 0.5 and 1; e = 0 and e = 1 tie, e = 0 wins. */
        {0, 3, 2, {1.0f, 0.75f}, {1.0f, 1.0f}},
        /* pow2, J = 1 ({0, a}): 0.5 is halfway between 0 and 1 (a = 1: error 0.25; a = 0.5: 0.5).
         */
        {0, 2, 3, {1.0f, -0.5f, 1.0f}, {1.0f, -1.0f, 1.0f}},
        /* pow2sum, J = 1 ({0, a, 2a}): 1.5 is halfway between 1 and 2. */
        {1, 2, 2, {2.0f, -1.5f}, {2.0f, -2.0f}},
        /* pow2sum, J = 3 ({.25, .5, .75, 1, 1.25, 1.5, 2}): 1.125 and 1.75 are halfway. */
        {1, 3, 3, {2.0f, 1.125f, -1.75f}, {2.0f, 1.25f, -2.0f}},
    };

    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        struct proj_shape s = {1, cases[c].n, 1, 1};
        struct proj_params p = params(cases[c].bits, 0, 0);
        float z[4];
        memcpy(z, cases[c].in, sizeof z);
        run_quant(&quantizers[3 + cases[c].which], z, &s, &p);
        for (int j = 0; j < cases[c].n; j++)
            cr_assert_eq(z[j], cases[c].out[j], "case %zu entry %d: %g", c, j, z[j]);
    }
    DP_ASSERT_NO_LEAKS();
}

/* ---- Determinism ------------------------------------------------------------- */

Test(quant, same_result_on_one_or_two_threads)
{
    struct proj_shape s = {32, 16, 3, 3};
    size_t n = numel(&s);
    float *a = alloc_floats(n);
    float *b = alloc_floats(n);
    int saved = omp_get_max_threads();

    for (int qi = 0; qi < N_QUANT; qi++) {
        for (int pc = 0; pc < 2; pc++) {
            struct proj_params p = params(4, pc, 0);
            fill(a, n, 600 + (uint64_t)qi, DATA_GAUSS);
            memcpy(b, a, n * sizeof *b);
            omp_set_num_threads(1);
            run_quant(&quantizers[qi], a, &s, &p);
            omp_set_num_threads(2);
            run_quant(&quantizers[qi], b, &s, &p);
            cr_assert(memcmp(a, b, n * sizeof *a) == 0, "%s pc %d", quantizers[qi].name, pc);
        }
    }
    omp_set_num_threads(saved);
    dp_free(a);
    dp_free(b);
    DP_ASSERT_NO_LEAKS();
}
