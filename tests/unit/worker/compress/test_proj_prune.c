/*
 * Tests for the pruning projections of proj.h and the pattern library
 * selection (suite "proj"), following the dossier's section 10.4:
 * feasibility with exact counts, idempotence, optimality against brute
 * force on tiny tensors, deterministic ties, and kept entries that equal
 * the input bit for bit.
 *
 * DESIGN: every top-k scheme is described here by an independent "unit
 * model" (which unit an element belongs to, which bucket a unit counts
 * against, how many units a bucket may keep), so feasibility, brute force
 * and a sort-based reference implementation are written once for all of
 * irregular, filter, channel, column, connectivity (both modes) and n:m.
 * Random data comes in two kinds: "generic" (never zero, so a kept unit is
 * always non-zero and counts are exact) and "levels" (few values that are
 * multiples of 0.5, so sums of squares are exact in any order and ties are
 * frequent; the reference must then match bit for bit). filter+column and
 * pattern are checked by their own tests. Scratch is allocated with exactly
 * proj_scratch_bytes() so ASan catches any overrun.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "tests/unit/test_util.h"
#include "worker/compress/proj.h"
#include "worker/compress/proj_int.h"

#define BRUTE_MAX_UNITS 12
#define OPT_RTOL        1e-6

/* ---- Helpers ------------------------------------------------------------- */

/* Uniform in (-1, 1), never 0. */
static float rnd_generic(struct dp_test_rng *r)
{
    return (float)(((double)(dp_test_rng_next(r) >> 40) + 0.5) / 8388608.0 - 1.0);
}

/* One of {0, +-0.5, +-1, +-1.5, +-2}: exact squares, many ties. */
static float rnd_level(struct dp_test_rng *r)
{
    static const float lv[] = {0.0f, 0.5f, -0.5f, 1.0f, -1.0f, 1.5f, -1.5f, 2.0f, -2.0f};
    return lv[dp_test_rng_next(r) % (sizeof lv / sizeof lv[0])];
}

enum fill { FILL_GENERIC, FILL_LEVELS, FILL_EQUAL, FILL_ZERO };

static void fill(float *z, size_t n, enum fill how, uint64_t seed)
{
    struct dp_test_rng r = {seed * 0x9E3779B97F4A7C15ULL + 1};
    for (size_t e = 0; e < n; e++) {
        switch (how) {
            case FILL_GENERIC:
                z[e] = rnd_generic(&r);
                break;
            case FILL_LEVELS:
                z[e] = rnd_level(&r);
                break;
            case FILL_EQUAL:
                z[e] = (e % 3 == 1) ? -0.75f : 0.75f; /* equal magnitudes, mixed signs */
                break;
            case FILL_ZERO:
                z[e] = 0.0f;
                break;
        }
    }
}

static size_t numel_of(const struct proj_shape *s)
{
    return (size_t)(s->o * s->i * s->kh * s->kw);
}

static float *floats_new(size_t n)
{
    float *z = dp_malloc((n ? n : 1) * sizeof *z);
    cr_assert(z != NULL);
    return z;
}

static void *scratch_new(const struct proj_shape *s)
{
    void *p = dp_malloc(proj_scratch_bytes(s));
    cr_assert(p != NULL);
    return p;
}

static int same_bits(float a, float b)
{
    return memcmp(&a, &b, sizeof a) == 0;
}

static int is_pos_zero(float a)
{
    return same_bits(a, 0.0f);
}

/* The keep count, written independently of proj__keep. */
static int64_t ref_keep(int64_t units, double rate)
{
    if (units == 0)
        return 0;
    long long k = llround((double)units / rate);
    return k < 1 ? 1 : (k > units ? units : k);
}

static double dist2(const float *a, const float *b, size_t n)
{
    double d = 0.0;
    for (size_t e = 0; e < n; e++)
        d += ((double)a[e] - b[e]) * ((double)a[e] - b[e]);
    return d;
}

/* ---- The top-k schemes and their unit model --------------------------------- */

enum kind { K_IRREGULAR, K_FILTER, K_CHANNEL, K_COLUMN, K_CONN, K_CONN_BAL, K_NM };

struct scheme {
    const char *name;
    proj_fn fn;
    enum kind kind;
};

static const struct scheme schemes[] = {
    {"irregular", proj_irregular, K_IRREGULAR},
    {"filter", proj_filter, K_FILTER},
    {"channel", proj_channel, K_CHANNEL},
    {"column", proj_column, K_COLUMN},
    {"connectivity", proj_connectivity, K_CONN},
    {"connectivity-balanced", proj_connectivity, K_CONN_BAL},
    {"nm", proj_nm, K_NM},
};
#define N_SCHEMES ((int)(sizeof schemes / sizeof schemes[0]))

static const struct proj_shape shapes[] = {
    {1, 1, 1, 1}, {3, 4, 1, 1}, {6, 10, 1, 1}, {17, 9, 1, 1}, {2, 3, 3, 3},
    {4, 3, 3, 3}, {8, 5, 3, 3}, {3, 2, 5, 5},  {5, 4, 5, 5},
};
#define N_SHAPES ((int)(sizeof shapes / sizeof shapes[0]))

/* Tiny shapes for brute force; each scheme uses those with at most 12 units. */
static const struct proj_shape tiny_shapes[] = {
    {1, 1, 1, 1}, {3, 4, 1, 1}, {2, 5, 1, 1}, {1, 12, 1, 1}, {12, 1, 1, 1}, {1, 1, 3, 3},
    {1, 2, 3, 3}, {2, 1, 3, 3}, {4, 2, 3, 3}, {3, 3, 3, 3},  {2, 2, 5, 5},  {3, 1, 5, 5},
};
#define N_TINY ((int)(sizeof tiny_shapes / sizeof tiny_shapes[0]))

static const double rates[] = {1.0, 1.5, 2.0, 3.0, 7.3, 50.0, 1e9};
#define N_RATES ((int)(sizeof rates / sizeof rates[0]))

static const int nms[][2] = {{2, 4}, {1, 3}, {3, 4}, {2, 5}, {4, 4}, {1, 1}, {2, 16}, {3, 9}};
#define N_NMS ((int)(sizeof nms / sizeof nms[0]))

static int n_variants(enum kind kind)
{
    return kind == K_NM ? N_NMS : N_RATES;
}

static struct proj_params variant_params(enum kind kind, int v)
{
    struct proj_params p = proj_params_default();
    if (kind == K_NM) {
        p.n = nms[v][0];
        p.m = nms[v][1];
        p.rate = 3.0; /* ignored by n:m */
    } else {
        p.rate = rates[v];
    }
    p.balanced = kind == K_CONN_BAL;
    return p;
}

static int64_t um_row_len(const struct proj_shape *s)
{
    return s->i * s->kh * s->kw;
}

static int64_t um_n_units(enum kind kind, const struct proj_shape *s)
{
    switch (kind) {
        case K_IRREGULAR:
        case K_NM:
            return s->o * s->i * s->kh * s->kw;
        case K_FILTER:
            return s->o;
        case K_CHANNEL:
            return s->i;
        case K_COLUMN:
            return um_row_len(s);
        case K_CONN:
        case K_CONN_BAL:
            return s->o * s->i;
    }
    return 0;
}

static int64_t um_unit_of(enum kind kind, const struct proj_shape *s, int64_t e)
{
    switch (kind) {
        case K_IRREGULAR:
        case K_NM:
            return e;
        case K_FILTER:
            return e / um_row_len(s);
        case K_CHANNEL:
            return (e / (s->kh * s->kw)) % s->i;
        case K_COLUMN:
            return e % um_row_len(s);
        case K_CONN:
        case K_CONN_BAL:
            return e / (s->kh * s->kw);
    }
    return 0;
}

static int64_t um_nm_groups(const struct proj_shape *s, const struct proj_params *p)
{
    return (um_row_len(s) + p->m - 1) / p->m;
}

static int64_t um_n_buckets(enum kind kind, const struct proj_shape *s, const struct proj_params *p)
{
    if (kind == K_CONN_BAL)
        return s->o;
    if (kind == K_NM)
        return s->o * um_nm_groups(s, p);
    return 1;
}

static int64_t um_bucket_of(enum kind kind, const struct proj_shape *s, const struct proj_params *p,
                            int64_t u)
{
    if (kind == K_CONN_BAL)
        return u / s->i;
    if (kind == K_NM) {
        int64_t row = u / um_row_len(s), col = u % um_row_len(s);
        return row * um_nm_groups(s, p) + col / p->m;
    }
    return 0;
}

static int64_t um_cap(enum kind kind, const struct proj_shape *s, const struct proj_params *p,
                      int64_t b)
{
    if (kind == K_CONN_BAL)
        return ref_keep(s->i, p->rate);
    if (kind == K_NM) {
        int64_t g = b % um_nm_groups(s, p);
        int64_t len = um_row_len(s) - g * p->m;
        len = len < p->m ? len : p->m;
        return p->n < len ? p->n : len;
    }
    return ref_keep(um_n_units(kind, s), p->rate);
}

/* Sum of squares per unit, in double. */
static double *unit_energy(enum kind kind, const struct proj_shape *s, const float *in)
{
    int64_t nu = um_n_units(kind, s);
    double *en = dp_calloc((size_t)(nu ? nu : 1), sizeof *en);
    cr_assert(en != NULL);
    for (int64_t e = 0; e < (int64_t)numel_of(s); e++)
        en[um_unit_of(kind, s, e)] += (double)in[e] * in[e];
    return en;
}

/*
 * Every unit of out is either the input's unit bit for bit or all +0.0;
 * with generic data (no zeros) each bucket then holds exactly cap non-zero
 * units.
 */
static void check_feasible(const struct scheme *sc, const struct proj_shape *s,
                           const struct proj_params *p, const float *in, const float *out,
                           const char *label)
{
    int64_t nu = um_n_units(sc->kind, s), nb = um_n_buckets(sc->kind, s, p);
    int *kept = dp_calloc((size_t)(nu ? nu : 1), sizeof *kept);
    int *zero = dp_calloc((size_t)(nu ? nu : 1), sizeof *zero);
    int64_t *count = dp_calloc((size_t)(nb ? nb : 1), sizeof *count);
    cr_assert(kept && zero && count);

    for (int64_t u = 0; u < nu; u++)
        kept[u] = zero[u] = 1;
    for (int64_t e = 0; e < (int64_t)numel_of(s); e++) {
        int64_t u = um_unit_of(sc->kind, s, e);
        if (!same_bits(out[e], in[e]))
            kept[u] = 0;
        if (!is_pos_zero(out[e]))
            zero[u] = 0;
    }
    for (int64_t u = 0; u < nu; u++) {
        cr_assert(kept[u] != zero[u], "%s: unit %lld is neither kept exactly nor zeroed", label,
                  (long long)u);
        if (kept[u])
            count[um_bucket_of(sc->kind, s, p, u)]++;
    }
    for (int64_t b = 0; b < nb; b++) {
        cr_assert_eq(count[b], um_cap(sc->kind, s, p, b),
                     "%s: bucket %lld keeps %lld units, want %lld", label, (long long)b,
                     (long long)count[b], (long long)um_cap(sc->kind, s, p, b));
    }
    dp_free(kept);
    dp_free(zero);
    dp_free(count);
}

/* Smallest squared distance to a feasible tensor, over all unit subsets. */
static double brute_min_dist(enum kind kind, const struct proj_shape *s,
                             const struct proj_params *p, const float *in)
{
    int64_t nu = um_n_units(kind, s), nb = um_n_buckets(kind, s, p);
    double *en = unit_energy(kind, s, in);
    int64_t cnt[BRUTE_MAX_UNITS];
    double best = INFINITY;

    cr_assert(nu <= BRUTE_MAX_UNITS && nb <= BRUTE_MAX_UNITS);
    for (uint32_t mask = 0; mask < (1u << nu); mask++) {
        memset(cnt, 0, sizeof cnt);
        double dropped = 0.0;
        for (int64_t u = 0; u < nu; u++) {
            if (mask >> u & 1u)
                cnt[um_bucket_of(kind, s, p, u)]++;
            else
                dropped += en[u];
        }
        int ok = 1;
        for (int64_t b = 0; b < nb; b++)
            ok &= cnt[b] <= um_cap(kind, s, p, b);
        if (ok && dropped < best)
            best = dropped;
    }
    dp_free(en);
    return best;
}

struct ref_unit {
    double key;
    int64_t idx;
};

static int ref_unit_cmp(const void *a, const void *b)
{
    const struct ref_unit *x = a, *y = b;
    if (x->key != y->key)
        return x->key > y->key ? -1 : 1;
    return x->idx < y->idx ? -1 : (x->idx > y->idx);
}

/* Reference: full sort of every bucket by (norm desc, index asc), keep cap. */
static void reference_project(enum kind kind, const struct proj_shape *s,
                              const struct proj_params *p, const float *in, float *out)
{
    int64_t nu = um_n_units(kind, s), nb = um_n_buckets(kind, s, p);
    double *en = unit_energy(kind, s, in);
    struct ref_unit *list = dp_malloc((size_t)(nu ? nu : 1) * sizeof *list);
    int64_t *start = dp_calloc((size_t)nb + 1, sizeof *start);
    int64_t *fillp = dp_calloc((size_t)nb + 1, sizeof *fillp);
    int *keep = dp_calloc((size_t)(nu ? nu : 1), sizeof *keep);
    cr_assert(list && start && fillp && keep);

    /* Units grouped by bucket (counting sort), each bucket then fully sorted. */
    for (int64_t u = 0; u < nu; u++)
        start[um_bucket_of(kind, s, p, u) + 1]++;
    for (int64_t b = 0; b < nb; b++)
        start[b + 1] += start[b];
    memcpy(fillp, start, ((size_t)nb + 1) * sizeof *start);
    for (int64_t u = 0; u < nu; u++) {
        int64_t at = fillp[um_bucket_of(kind, s, p, u)]++;
        list[at].key = en[u];
        list[at].idx = u;
    }
    for (int64_t b = 0; b < nb; b++) {
        int64_t n = start[b + 1] - start[b];
        qsort(list + start[b], (size_t)n, sizeof *list, ref_unit_cmp);
        for (int64_t j = 0; j < n && j < um_cap(kind, s, p, b); j++)
            keep[list[start[b] + j].idx] = 1;
    }
    for (int64_t e = 0; e < (int64_t)numel_of(s); e++)
        out[e] = keep[um_unit_of(kind, s, e)] ? in[e] : 0.0f;
    dp_free(en);
    dp_free(list);
    dp_free(start);
    dp_free(fillp);
    dp_free(keep);
}

/* ---- Parameters, scratch, selection ------------------------------------------ */

Test(proj, params_default)
{
    struct proj_params p = proj_params_default();
    cr_assert_eq(p.rate, 1.0);
    cr_assert_eq(p.n, 2);
    cr_assert_eq(p.m, 4);
    cr_assert_eq(p.bits, 8);
    cr_assert_eq(p.per_channel, 0);
    cr_assert_eq(p.balanced, 0);
    cr_assert_eq(p.keep_zeros, 0);
    cr_assert_eq(p.n_library, 0);
    for (int j = 0; j < PROJ_MAX_LIBRARY; j++)
        cr_assert_eq(p.library[j], 0);
    DP_ASSERT_NO_LEAKS();
}

Test(proj, scratch_bytes)
{
    static const struct proj_shape ss[] = {
        {1, 1, 1, 1}, {6, 10, 1, 1}, {64, 32, 3, 3}, {3, 4, 0, 0}, {0, 5, 3, 3},
    };
    for (size_t j = 0; j < sizeof ss / sizeof ss[0]; j++) {
        size_t numel = numel_of(&ss[j]);
        size_t oi = (size_t)(ss[j].o * ss[j].i);
        size_t got = proj_scratch_bytes(&ss[j]);
        cr_assert_geq(got, 16 * numel + 4096, "shape %zu: %zu bytes", j, got);
        cr_assert_geq(got, 16 * oi + 4096, "shape %zu: %zu bytes", j, got);
    }
    struct proj_shape huge = {(int64_t)1 << 40, (int64_t)1 << 40, 1, 1};
    cr_assert_eq(proj_scratch_bytes(&huge), SIZE_MAX);
    DP_ASSERT_NO_LEAKS();
}

/* Fills keys of kind `how` for the selection test. */
static double select_key(int how, size_t j, size_t n, struct dp_test_rng *r)
{
    switch (how) {
        case 0:
            return (double)rnd_generic(r);
        case 1:
            return (double)j; /* ascending */
        case 2:
            return (double)(n - j); /* descending */
        case 3:
            return 1.0; /* all equal */
        case 4:
            return (double)(dp_test_rng_next(r) % 3); /* few distinct */
        case 5:
            return (double)(j < n / 2 ? j : n - j); /* organ pipe */
        default:
            return (dp_test_rng_next(r) % 7 == 0) ? INFINITY : (double)(dp_test_rng_next(r) % 5);
    }
}

Test(proj, select_matches_full_sort)
{
    static const size_t sizes[] = {0, 1, 2, 3, 5, 16, 17, 18, 33, 100, 1000, 4097};
    struct dp_test_rng r = {12345};
    int n_checked = 0;

    for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
        size_t n = sizes[si];
        size_t ks[] = {0, 1, 2, n / 3, n / 2, n > 0 ? n - 1 : 0, n, n + 1};
        struct proj__pair *a = dp_malloc((n + 1) * sizeof *a);
        struct ref_unit *ref = dp_malloc((n + 1) * sizeof *ref);
        unsigned char *in_top = dp_malloc(n + 1);
        unsigned char *seen = dp_malloc(n + 1);
        cr_assert(a && ref && in_top && seen);
        for (int how = 0; how < 7; how++) {
            for (size_t ki = 0; ki < sizeof ks / sizeof ks[0]; ki++) {
                for (int depth = -1; depth <= 1; depth++) {
                    size_t k = ks[ki];
                    for (size_t j = 0; j < n; j++) {
                        ref[j].key = select_key(how, j, n, &r);
                        ref[j].idx = (int64_t)j;
                        a[j].key = ref[j].key;
                        a[j].idx = ref[j].idx;
                    }
                    if (depth < 0)
                        proj__select(a, n, k);
                    else
                        proj__select_depth(a, n, k, depth);
                    qsort(ref, n, sizeof *ref, ref_unit_cmp);
                    memset(in_top, 0, n + 1);
                    memset(seen, 0, n + 1);
                    for (size_t j = 0; j < n && j < k; j++)
                        in_top[ref[j].idx] = 1;
                    for (size_t j = 0; j < n; j++) {
                        cr_assert(a[j].idx >= 0 && (size_t)a[j].idx < n);
                        cr_assert(!seen[a[j].idx], "n=%zu: index %lld twice", n,
                                  (long long)a[j].idx);
                        seen[a[j].idx] = 1;
                        if (k < n)
                            cr_assert_eq(in_top[a[j].idx], j < k,
                                         "n=%zu k=%zu how=%d depth=%d: position %zu", n, k, how,
                                         depth, j);
                    }
                    n_checked++;
                }
            }
        }
        dp_free(a);
        dp_free(ref);
        dp_free(in_top);
        dp_free(seen);
    }
    cr_assert_gt(n_checked, 1000);
    DP_ASSERT_NO_LEAKS();
}

/* ---- Top-k schemes: properties over the shape x parameter table ---------------- */

Test(proj, feasible_exact_counts)
{
    char label[160];

    for (int si = 0; si < N_SCHEMES; si++) {
        const struct scheme *sc = &schemes[si];
        for (int hi = 0; hi < N_SHAPES; hi++) {
            const struct proj_shape *s = &shapes[hi];
            size_t n = numel_of(s);
            float *in = floats_new(n), *z = floats_new(n);
            void *scratch = scratch_new(s);
            for (int v = 0; v < n_variants(sc->kind); v++) {
                struct proj_params p = variant_params(sc->kind, v);
                snprintf(label, sizeof label, "%s (%lld,%lld,%lld,%lld) variant %d", sc->name,
                         (long long)s->o, (long long)s->i, (long long)s->kh, (long long)s->kw, v);
                fill(in, n, FILL_GENERIC, (uint64_t)(si * 1000 + hi * 10 + v));
                memcpy(z, in, n * sizeof *z);
                sc->fn(z, s, &p, scratch);
                check_feasible(sc, s, &p, in, z, label);
            }
            dp_free(in);
            dp_free(z);
            dp_free(scratch);
        }
    }
    DP_ASSERT_NO_LEAKS();
}

/* Projects z, then projects a copy again; the two must be bit-identical. */
static void check_idempotent(proj_fn fn, const struct proj_shape *s, const struct proj_params *p,
                             float *z, void *scratch, const char *label)
{
    size_t n = numel_of(s);
    float *again = floats_new(n);

    fn(z, s, p, scratch);
    memcpy(again, z, n * sizeof *z);
    fn(again, s, p, scratch);
    cr_assert(memcmp(again, z, n * sizeof *z) == 0, "%s: second projection changed the tensor",
              label);
    dp_free(again);
}

Test(proj, idempotent)
{
    static const enum fill fills[] = {FILL_GENERIC, FILL_LEVELS, FILL_EQUAL, FILL_ZERO};
    char label[160];

    for (int si = 0; si < N_SCHEMES; si++) {
        const struct scheme *sc = &schemes[si];
        for (int hi = 0; hi < N_SHAPES; hi++) {
            const struct proj_shape *s = &shapes[hi];
            size_t n = numel_of(s);
            float *z = floats_new(n);
            void *scratch = scratch_new(s);
            for (int v = 0; v < n_variants(sc->kind); v++) {
                for (int f = 0; f < 4; f++) {
                    struct proj_params p = variant_params(sc->kind, v);
                    snprintf(label, sizeof label, "%s shape %d variant %d fill %d", sc->name, hi, v,
                             f);
                    fill(z, n, fills[f], (uint64_t)(hi * 100 + v));
                    check_idempotent(sc->fn, s, &p, z, scratch, label);
                }
            }
            dp_free(z);
            dp_free(scratch);
        }
    }
    DP_ASSERT_NO_LEAKS();
}

Test(proj, optimal_against_brute_force)
{
    char label[160];

    for (int si = 0; si < N_SCHEMES; si++) {
        const struct scheme *sc = &schemes[si];
        int n_cases = 0, n_conv = 0;
        for (int hi = 0; hi < N_TINY; hi++) {
            const struct proj_shape *s = &tiny_shapes[hi];
            if (um_n_units(sc->kind, s) > BRUTE_MAX_UNITS)
                continue;
            size_t n = numel_of(s);
            float *in = floats_new(n), *z = floats_new(n);
            void *scratch = scratch_new(s);
            for (int v = 0; v < n_variants(sc->kind); v++) {
                for (uint64_t trial = 0; trial < 3; trial++) {
                    struct proj_params p = variant_params(sc->kind, v);
                    snprintf(label, sizeof label, "%s tiny shape %d variant %d trial %d", sc->name,
                             hi, v, (int)trial);
                    fill(in, n, trial == 2 ? FILL_LEVELS : FILL_GENERIC,
                         (uint64_t)(7 * hi + 1000 * v) + trial);
                    memcpy(z, in, n * sizeof *z);
                    sc->fn(z, s, &p, scratch);
                    double got = dist2(in, z, n);
                    double best = brute_min_dist(sc->kind, s, &p, in);
                    cr_assert(fabs(got - best) <= OPT_RTOL * fmax(best, 1e-30),
                              "%s: ||V - P(V)||^2 = %.9g, brute force %.9g", label, got, best);
                }
            }
            n_cases++;
            n_conv += s->kh > 1;
            dp_free(in);
            dp_free(z);
            dp_free(scratch);
        }
        cr_assert_geq(n_cases, 3, "%s: only %d tiny shapes brute-forced", sc->name, n_cases);
        cr_assert_geq(n_conv, 1, "%s: no conv shape brute-forced", sc->name);
    }
    DP_ASSERT_NO_LEAKS();
}

/* Level data has exact keys and many ties: the result must match the sort-based reference. */
Test(proj, matches_sorted_reference_with_ties)
{
    static const enum fill fills[] = {FILL_LEVELS, FILL_EQUAL, FILL_ZERO};
    static const struct proj_shape big = {64, 64, 3, 3};
    char label[160];

    for (int si = 0; si < N_SCHEMES; si++) {
        const struct scheme *sc = &schemes[si];
        for (int hi = 0; hi <= N_SHAPES; hi++) {
            const struct proj_shape *s = hi < N_SHAPES ? &shapes[hi] : &big;
            size_t n = numel_of(s);
            float *in = floats_new(n), *z = floats_new(n), *want = floats_new(n);
            void *scratch = scratch_new(s);
            for (int v = 0; v < n_variants(sc->kind); v++) {
                for (int f = 0; f < 3; f++) {
                    struct proj_params p = variant_params(sc->kind, v);
                    snprintf(label, sizeof label, "%s shape %d variant %d fill %d", sc->name, hi, v,
                             f);
                    fill(in, n, fills[f], (uint64_t)(31 * hi + v));
                    memcpy(z, in, n * sizeof *z);
                    sc->fn(z, s, &p, scratch);
                    reference_project(sc->kind, s, &p, in, want);
                    for (size_t e = 0; e < n; e++)
                        cr_assert(same_bits(z[e], want[e]), "%s: element %zu is %g, want %g", label,
                                  e, (double)z[e], (double)want[e]);
                }
            }
            dp_free(in);
            dp_free(z);
            dp_free(want);
            dp_free(scratch);
        }
    }
    DP_ASSERT_NO_LEAKS();
}

/* ---- Ties: explicit expectations ------------------------------------------------ */

struct tie_case {
    const char *name;
    proj_fn fn;
    struct proj_shape s;
    double rate;
    int balanced, n, m;
    float in[16];
    float want[16];
};

/* clang-format off */
static const struct tie_case tie_cases[] = {
    {"irregular all equal", proj_irregular, {1, 6, 1, 1}, 2.0, 0, 2, 4,
     {1, 1, 1, 1, 1, 1}, {1, 1, 1, 0, 0, 0}},
    {"irregular partial tie", proj_irregular, {1, 5, 1, 1}, 5.0 / 3.0, 0, 2, 4,
     {3, -1, 1, -1, 2}, {3, -1, 0, 0, 2}},
    {"irregular sign tie", proj_irregular, {2, 1, 1, 1}, 2.0, 0, 2, 4,
     {-2, 2}, {-2, 0}},
    {"filter all equal", proj_filter, {4, 2, 1, 1}, 2.0, 0, 2, 4,
     {1, 1, 1, 1, 1, 1, 1, 1}, {1, 1, 1, 1, 0, 0, 0, 0}},
    {"filter equal norms", proj_filter, {3, 2, 1, 1}, 3.0, 0, 2, 4,
     {0, -5, 3, 4, 5, 0}, {0, -5, 0, 0, 0, 0}},
    {"channel all equal", proj_channel, {2, 4, 1, 1}, 2.0, 0, 2, 4,
     {1, 1, 1, 1, 1, 1, 1, 1}, {1, 1, 0, 0, 1, 1, 0, 0}},
    {"channel conv all equal", proj_channel, {2, 2, 2, 1}, 2.0, 0, 2, 4,
     {1, 1, 1, 1, 1, 1, 1, 1}, {1, 1, 0, 0, 1, 1, 0, 0}},
    {"column all equal", proj_column, {2, 3, 1, 1}, 3.0, 0, 2, 4,
     {1, 1, 1, 1, 1, 1}, {1, 0, 0, 1, 0, 0}},
    {"column conv all equal", proj_column, {2, 1, 2, 2}, 2.0, 0, 2, 4,
     {1, 1, 1, 1, 1, 1, 1, 1}, {1, 1, 0, 0, 1, 1, 0, 0}},
    {"connectivity all equal", proj_connectivity, {2, 3, 1, 1}, 2.0, 0, 2, 4,
     {1, 1, 1, 1, 1, 1}, {1, 1, 1, 0, 0, 0}},
    {"connectivity balanced all equal", proj_connectivity, {2, 3, 1, 1}, 2.0, 1, 2, 4,
     {1, 1, 1, 1, 1, 1}, {1, 1, 0, 1, 1, 0}},
    {"connectivity kernels", proj_connectivity, {2, 2, 1, 2}, 4.0, 0, 2, 4,
     {1, 1, 1, 1, 1, 1, 1, 1}, {1, 1, 0, 0, 0, 0, 0, 0}},
    {"nm 2:4 all equal", proj_nm, {1, 8, 1, 1}, 1.0, 0, 2, 4,
     {1, 1, 1, 1, 1, 1, 1, 1}, {1, 1, 0, 0, 1, 1, 0, 0}},
    {"nm 2:4 partial group", proj_nm, {1, 6, 1, 1}, 1.0, 0, 2, 4,
     {1, 1, 1, 1, 1, 1}, {1, 1, 0, 0, 1, 1}},
    {"nm 1:2 rows", proj_nm, {2, 5, 1, 1}, 1.0, 0, 1, 2,
     {1, 1, 1, 1, 1, 1, 1, 1, 1, 1}, {1, 0, 1, 0, 1, 1, 0, 1, 0, 1}},
    {"nm 2:4 sign tie", proj_nm, {2, 4, 1, 1}, 1.0, 0, 2, 4,
     {-1, 2, 1, -2, 1, -1, 1, 0.5f}, {0, 2, 0, -2, 1, -1, 0, 0}},
};
/* clang-format on */

Test(proj, ties_go_to_lower_index)
{
    for (size_t c = 0; c < sizeof tie_cases / sizeof tie_cases[0]; c++) {
        const struct tie_case *tc = &tie_cases[c];
        size_t n = numel_of(&tc->s);
        struct proj_params p = proj_params_default();
        float z[16];
        void *scratch = scratch_new(&tc->s);

        cr_assert_leq(n, 16);
        p.rate = tc->rate;
        p.balanced = tc->balanced;
        p.n = tc->n;
        p.m = tc->m;
        memcpy(z, tc->in, n * sizeof *z);
        tc->fn(z, &tc->s, &p, scratch);
        for (size_t e = 0; e < n; e++)
            cr_assert(same_bits(z[e], tc->want[e]), "%s: element %zu is %g, want %g", tc->name, e,
                      (double)z[e], (double)tc->want[e]);
        dp_free(scratch);
    }
    DP_ASSERT_NO_LEAKS();
}

/* A NaN ranks as the largest key, so it survives for the caller's finiteness check. */
Test(proj, nan_is_kept)
{
    struct proj_shape s = {3, 2, 1, 1};
    struct proj_params p = proj_params_default();
    void *scratch = scratch_new(&s);
    float z[6] = {5, 4, 0.5f, NAN, 3, 2};

    p.rate = 6.0; /* keep 1 element */
    proj_irregular(z, &s, &p, scratch);
    cr_assert(isnan(z[3]));
    for (int e = 0; e < 6; e++)
        cr_assert(e == 3 || z[e] == 0.0f);

    float w[6] = {5, 4, 0.5f, NAN, 3, 2};
    p.rate = 3.0; /* keep 1 filter */
    proj_filter(w, &s, &p, scratch);
    cr_assert(isnan(w[3]) && w[2] == 0.5f);
    cr_assert(w[0] == 0.0f && w[1] == 0.0f && w[4] == 0.0f && w[5] == 0.0f);
    dp_free(scratch);
    DP_ASSERT_NO_LEAKS();
}

/* ---- filter+column ------------------------------------------------------------ */

Test(proj, filter_column_feasible_and_idempotent)
{
    char label[160];

    for (int hi = 0; hi < N_SHAPES; hi++) {
        const struct proj_shape *s = &shapes[hi];
        size_t n = numel_of(s);
        int64_t n_c = s->i * s->kh * s->kw;
        float *in = floats_new(n), *z = floats_new(n);
        void *scratch = scratch_new(s);
        for (int v = 0; v < N_RATES; v++) {
            struct proj_params p = proj_params_default();
            p.rate = rates[v];
            snprintf(label, sizeof label, "filter+column shape %d rate %g", hi, rates[v]);
            fill(in, n, FILL_GENERIC, (uint64_t)(hi * 50 + v));
            memcpy(z, in, n * sizeof *z);
            proj_filter_column(z, s, &p, scratch);

            int64_t rows = 0, cols = 0;
            for (int64_t o = 0; o < s->o; o++) {
                int nz = 0;
                for (int64_t c = 0; c < n_c; c++)
                    nz |= z[o * n_c + c] != 0.0f;
                rows += nz;
            }
            for (int64_t c = 0; c < n_c; c++) {
                int nz = 0;
                for (int64_t o = 0; o < s->o; o++)
                    nz |= z[o * n_c + c] != 0.0f;
                cols += nz;
            }
            cr_assert_eq(rows, ref_keep(s->o, sqrt(p.rate)), "%s: %lld filters", label,
                         (long long)rows);
            cr_assert_eq(cols, ref_keep(n_c, sqrt(p.rate)), "%s: %lld columns", label,
                         (long long)cols);
            for (size_t e = 0; e < n; e++)
                cr_assert(same_bits(z[e], in[e]) || is_pos_zero(z[e]), "%s: element %zu", label, e);

            fill(z, n, FILL_GENERIC, (uint64_t)(hi * 50 + v));
            check_idempotent(proj_filter_column, s, &p, z, scratch, label);
            fill(z, n, FILL_LEVELS, (uint64_t)(hi * 50 + v));
            check_idempotent(proj_filter_column, s, &p, z, scratch, label);
        }
        dp_free(in);
        dp_free(z);
        dp_free(scratch);
    }
    DP_ASSERT_NO_LEAKS();
}

/* ---- Pattern projection ---------------------------------------------------------- */

#define CENTRE_BIT 0x10u

static int popcount9(unsigned m)
{
    int c = 0;
    for (int t = 0; t < 9; t++)
        c += (int)(m >> t & 1u);
    return c;
}

/* The 56 four-tap masks that hold the centre, ascending. */
static int candidates(uint16_t out[56])
{
    int n = 0;
    for (unsigned m = 0; m < 512; m++) {
        if ((m & CENTRE_BIT) && popcount9(m) == 4)
            out[n++] = (uint16_t)m;
    }
    return n;
}

/* Libraries: 1 pattern, 8 spread patterns, all 56, and the reverse of 12. */
static int make_library(int which, struct proj_params *p)
{
    uint16_t cand[56];
    cr_assert_eq(candidates(cand), 56);
    int n = 0;
    switch (which) {
        case 0:
            p->library[n++] = cand[17];
            break;
        case 1:
            for (int j = 0; j < 8; j++)
                p->library[n++] = cand[(j * 7 + 3) % 56];
            break;
        case 2:
            for (int j = 0; j < 56; j++)
                p->library[n++] = cand[j];
            break;
        default:
            for (int j = 11; j >= 0; j--)
                p->library[n++] = cand[j * 4];
            break;
    }
    p->n_library = n;
    return n;
}
#define N_LIBRARIES 4

static const struct proj_shape pattern_shapes[] = {
    {1, 1, 3, 3}, {2, 3, 3, 3}, {4, 3, 3, 3}, {8, 5, 3, 3}, {16, 8, 3, 3},
};
#define N_PSHAPES ((int)(sizeof pattern_shapes / sizeof pattern_shapes[0]))

Test(proj, pattern_feasible_optimal_idempotent)
{
    char label[160];

    for (int hi = 0; hi < N_PSHAPES; hi++) {
        const struct proj_shape *s = &pattern_shapes[hi];
        size_t n = numel_of(s), n_k = (size_t)(s->o * s->i);
        float *in = floats_new(n), *z = floats_new(n);
        void *scratch = scratch_new(s);
        for (int lib = 0; lib < N_LIBRARIES; lib++) {
            for (int f = 0; f < 2; f++) {
                struct proj_params p = proj_params_default();
                make_library(lib, &p);
                snprintf(label, sizeof label, "pattern shape %d library %d fill %d", hi, lib, f);
                fill(in, n, f == 0 ? FILL_GENERIC : FILL_LEVELS, (uint64_t)(hi * 10 + lib));
                memcpy(z, in, n * sizeof *z);
                proj_pattern(z, s, &p, scratch);

                double min_dist = 0.0;
                for (size_t u = 0; u < n_k; u++) {
                    const float *ki = in + 9 * u, *ko = z + 9 * u;
                    unsigned support = 0;
                    for (int t = 0; t < 9; t++) {
                        cr_assert(same_bits(ko[t], ki[t]) || is_pos_zero(ko[t]),
                                  "%s: kernel %zu tap %d changed", label, u, t);
                        if (ko[t] != 0.0f)
                            support |= 1u << t;
                    }
                    int in_library = 0;
                    for (int j = 0; j < p.n_library; j++)
                        in_library |= (support & ~(unsigned)p.library[j]) == 0;
                    cr_assert(in_library, "%s: kernel %zu support 0x%x is in no pattern", label, u,
                              support);
                    if (f == 0) { /* generic data: exactly one full library pattern, centre kept */
                        cr_assert(support & CENTRE_BIT, "%s: kernel %zu lost its centre", label, u);
                        cr_assert_eq(popcount9(support), 4, "%s: kernel %zu", label, u);
                    }
                    /* Brute force over the library: the least energy any choice drops. */
                    double best_drop = INFINITY;
                    for (int j = 0; j < p.n_library; j++) {
                        double drop = 0.0;
                        for (int t = 0; t < 9; t++) {
                            if (!(p.library[j] >> t & 1u))
                                drop += (double)ki[t] * ki[t];
                        }
                        best_drop = fmin(best_drop, drop);
                    }
                    min_dist += best_drop;
                }
                double got = dist2(in, z, n);
                cr_assert(fabs(got - min_dist) <= OPT_RTOL * fmax(min_dist, 1e-30),
                          "%s: ||V - P(V)||^2 = %.9g, brute force %.9g", label, got, min_dist);

                memcpy(z, in, n * sizeof *z);
                check_idempotent(proj_pattern, s, &p, z, scratch, label);
            }
        }
        dp_free(in);
        dp_free(z);
        dp_free(scratch);
    }
    DP_ASSERT_NO_LEAKS();
}

Test(proj, pattern_ties_go_to_lower_library_index)
{
    struct proj_shape s = {1, 1, 3, 3};
    struct proj_params p = proj_params_default();
    void *scratch = scratch_new(&s);
    const unsigned top = 0x17, bottom = 0x1D0; /* top row + centre, bottom row + centre */
    float z[9];

    for (int order = 0; order < 2; order++) {
        p.n_library = 2;
        p.library[0] = (uint16_t)(order ? top : bottom);
        p.library[1] = (uint16_t)(order ? bottom : top);
        for (int t = 0; t < 9; t++)
            z[t] = (t % 2) ? -1.0f : 1.0f;
        proj_pattern(z, &s, &p, scratch);
        for (int t = 0; t < 9; t++) {
            int want = (p.library[0] >> t & 1u) != 0;
            cr_assert_eq(z[t] != 0.0f, want, "order %d tap %d", order, t);
        }
    }
    /* A mask of other sizes is allowed; the largest kept energy still wins. */
    p.n_library = 2;
    p.library[0] = CENTRE_BIT;
    p.library[1] = 0x1FF;
    for (int t = 0; t < 9; t++)
        z[t] = (float)(t + 1);
    proj_pattern(z, &s, &p, scratch);
    for (int t = 0; t < 9; t++)
        cr_assert_eq(z[t], (float)(t + 1));
    dp_free(scratch);
    DP_ASSERT_NO_LEAKS();
}

Test(proj, pattern_leaves_other_kernels_and_empty_library_alone)
{
    static const struct proj_shape ss[] = {
        {2, 3, 1, 1}, {2, 2, 5, 5}, {2, 2, 3, 1}, {2, 2, 1, 3}, {3, 2, 3, 3},
    };
    for (size_t j = 0; j < sizeof ss / sizeof ss[0]; j++) {
        const struct proj_shape *s = &ss[j];
        size_t n = numel_of(s);
        float *in = floats_new(n), *z = floats_new(n);
        void *scratch = scratch_new(s);
        struct proj_params p = proj_params_default();
        if (s->kh != 3 || s->kw != 3)
            make_library(1, &p); /* a library, but no 3x3 kernels */
        fill(in, n, FILL_GENERIC, j);
        memcpy(z, in, n * sizeof *z);
        proj_pattern(z, s, &p, scratch);
        cr_assert(memcmp(z, in, n * sizeof *z) == 0, "shape %zu changed", j);
        dp_free(in);
        dp_free(z);
        dp_free(scratch);
    }
    DP_ASSERT_NO_LEAKS();
}

/* ---- Pattern library selection -------------------------------------------------- */

/* Writes a kernel whose best centre-forced 4-tap pattern is `mask`. */
static void plant(float *ker, unsigned mask, int variant)
{
    static const float big[] = {1.0f, -2.0f, 0.75f, -1.25f};
    int b = variant;
    for (int t = 0; t < 9; t++) {
        if (t == 4)
            ker[t] = 0.01f; /* the centre is kept whatever its size */
        else if (mask >> t & 1u)
            ker[t] = big[b++ % 4];
        else
            ker[t] = (t % 2) ? -0.1f : 0.2f;
    }
}

Test(proj, pattern_select_most_frequent)
{
    const unsigned A = 0x1D0, B = 0x0B8, C = 0x1B0, D = 0x03A; /* B < C */
    struct proj_shape ss[2] = {{2, 3, 3, 3}, {1, 5, 3, 3}};
    float t1[6 * 9], t2[5 * 9];
    /* A x4 (two in each tensor), C x3 before B x3, D x1. */
    const unsigned plan1[6] = {A, C, A, C, B, D};
    const unsigned plan2[5] = {C, B, A, B, A};
    for (int u = 0; u < 6; u++)
        plant(t1 + 9 * u, plan1[u], u);
    for (int u = 0; u < 5; u++)
        plant(t2 + 9 * u, plan2[u], u);
    const float *ws[2] = {t1, t2};
    struct dp_errinfo ei = {0};

    struct proj_params p = proj_params_default();
    p.rate = 7.0;
    cr_assert_eq(proj_pattern_select(ws, ss, 2, 3, &p, &ei), DP_OK);
    cr_assert_eq(p.n_library, 3);
    cr_assert_eq(p.library[0], A);
    cr_assert_eq(p.library[1], B);
    cr_assert_eq(p.library[2], C);
    cr_assert_eq(p.library[3], 0);
    cr_assert_eq(p.rate, 7.0, "other parameters are left alone");

    /* Zero-vote candidates follow, smallest mask first: 0x17 is the smallest. */
    cr_assert_eq(proj_pattern_select(ws, ss, 2, 5, &p, NULL), DP_OK);
    cr_assert_eq(p.n_library, 5);
    cr_assert_eq(p.library[3], D);
    cr_assert_eq(p.library[4], 0x17);

    /* One tensor only. */
    cr_assert_eq(proj_pattern_select(ws + 1, ss + 1, 1, 2, &p, &ei), DP_OK);
    cr_assert_eq(p.n_library, 2);
    cr_assert_eq(p.library[0], B, "A and B have 2 votes each; the smaller mask comes first");
    cr_assert_eq(p.library[1], A);
    DP_ASSERT_NO_LEAKS();
}

Test(proj, pattern_select_tap_ties_and_full_library)
{
    struct proj_shape s = {1, 2, 3, 3};
    float w[18];
    struct proj_params p = proj_params_default();

    /* Kernel 0: all equal -> taps 0, 1, 2 + centre. Kernel 1: ties among 0, 1, 3, 5 -> 0, 1, 3. */
    for (int t = 0; t < 9; t++) {
        w[t] = -0.5f;
        w[9 + t] = (t == 0 || t == 1 || t == 3 || t == 5) ? 1.0f : 0.0f;
    }
    w[9 + 4] = 0.0f;
    const float *ws[1] = {w};
    cr_assert_eq(proj_pattern_select(ws, &s, 1, 2, &p, NULL), DP_OK);
    cr_assert_eq(p.library[0], 0x17);
    cr_assert_eq(p.library[1], 0x1B);

    /* n = 56 takes every candidate once; the projection then keeps each kernel's best 4. */
    uint16_t cand[56];
    cr_assert_eq(candidates(cand), 56);
    cr_assert_eq(proj_pattern_select(ws, &s, 1, 56, &p, NULL), DP_OK);
    cr_assert_eq(p.n_library, 56);
    int seen[512] = {0};
    for (int j = 0; j < 56; j++) {
        cr_assert(p.library[j] & CENTRE_BIT);
        cr_assert_eq(popcount9(p.library[j]), 4);
        cr_assert(!seen[p.library[j]], "mask 0x%x twice", p.library[j]);
        seen[p.library[j]] = 1;
    }
    DP_ASSERT_NO_LEAKS();
}

Test(proj, pattern_select_then_project)
{
    struct proj_shape s = {8, 6, 3, 3};
    size_t n = numel_of(&s);
    float *w = floats_new(n), *z = floats_new(n);
    void *scratch = scratch_new(&s);
    struct proj_params p = proj_params_default();
    const float *ws[1] = {w};

    fill(w, n, FILL_GENERIC, 99);
    cr_assert_eq(proj_pattern_select(ws, &s, 1, 8, &p, NULL), DP_OK);
    cr_assert_eq(p.n_library, 8);
    memcpy(z, w, n * sizeof *z);
    proj_pattern(z, &s, &p, scratch);
    for (size_t u = 0; u < (size_t)(s.o * s.i); u++) {
        unsigned support = 0;
        for (int t = 0; t < 9; t++)
            support |= (z[9 * u + t] != 0.0f) << t;
        int found = 0;
        for (int j = 0; j < p.n_library; j++)
            found |= support == p.library[j];
        cr_assert(found, "kernel %zu: support 0x%x is not a library pattern", u, support);
        cr_assert(support & CENTRE_BIT);
    }
    dp_free(w);
    dp_free(z);
    dp_free(scratch);
    DP_ASSERT_NO_LEAKS();
}

struct select_err_case {
    const char *name;
    struct proj_shape s;
    int n_tensors, n;
    const char *needle; /* the message must mention this */
};

static const struct select_err_case select_err_cases[] = {
    {"n = 0", {2, 2, 3, 3}, 1, 0, "1..56"},
    {"n = 57", {2, 2, 3, 3}, 1, 57, "1..56"},
    {"n < 0", {2, 2, 3, 3}, 1, -3, "1..56"},
    {"5x5 kernels", {2, 2, 5, 5}, 1, 8, "5x5"},
    {"1x1 kernels", {2, 2, 1, 1}, 1, 8, "3x3"},
    {"3x1 kernels", {2, 2, 3, 1}, 1, 8, "3x1"},
    {"no tensors", {2, 2, 3, 3}, 0, 8, "at least one"},
};

Test(proj, pattern_select_rejects_bad_input)
{
    static float w[2 * 2 * 5 * 5];
    const float *ws[1] = {w};

    for (size_t c = 0; c < sizeof select_err_cases / sizeof select_err_cases[0]; c++) {
        const struct select_err_case *ec = &select_err_cases[c];
        struct proj_params p = proj_params_default();
        struct dp_errinfo ei = {0};
        cr_assert_eq(proj_pattern_select(ws, &ec->s, ec->n_tensors, ec->n, &p, &ei), DP_EINVAL,
                     "%s", ec->name);
        cr_assert_eq(ei.code, DP_EINVAL, "%s", ec->name);
        cr_assert(strstr(ei.msg, ec->needle) != NULL, "%s: message '%s' lacks '%s'", ec->name,
                  ei.msg, ec->needle);
        cr_assert_eq(p.n_library, 0, "%s: the library was touched", ec->name);
        cr_assert_eq(proj_pattern_select(ws, &ec->s, ec->n_tensors, ec->n, &p, NULL), DP_EINVAL,
                     "%s without errinfo", ec->name);
    }
    DP_ASSERT_NO_LEAKS();
}
