/*
 * Pieces shared by the quantizers (quant_int.h): how a tensor splits into
 * groups, gathering and sorting magnitudes, and the projection onto the
 * power-of-two level sets used by pow2 and pow2sum.
 *
 * DESIGN: the power-of-two quantizers differ only in their table of
 * positive levels for a = 1. Because a is a power of two, x / a and a * t
 * are exact in double (and a * t is exact in float for the normal range),
 * so the nearest-level decision made on x / a is the decision on x, and a
 * level written out is read back as exactly the same level: quantizing an
 * already quantized group finds zero error at its own scale and keeps it.
 * The scale candidates are compared by their squared error summed in index
 * order, ties to the smallest exponent; with that rule the choice made on a
 * quantized group is again its own scale (a smaller exponent that also
 * fits the quantized values would already have won the first time).
 * A group holding a NaN or an infinity is left as it is.
 */
#include "worker/compress/quant_int.h"

#include <float.h>
#include <math.h>
#include <string.h>

#include "common/assert.h"

/* ---- Groups, gathering, sorting ------------------------------------------ */

void quant__groups_get(struct quant__groups *g, const struct proj_shape *s,
                       const struct proj_params *p, size_t bytes_per_elem)
{
    DP_ASSERT(s->o >= 0 && s->i >= 0 && s->kh >= 0 && s->kw >= 0);
    DP_ASSERT(bytes_per_elem <= 16);
    size_t row = (size_t)s->i * (size_t)s->kh * (size_t)s->kw;

    if (p->per_channel) {
        g->n = s->o;
        g->len = row;
    } else {
        g->n = 1;
        g->len = (size_t)s->o * row;
    }
    g->stride = (bytes_per_elem * g->len + 15) & ~(size_t)15;
}

int quant__all_finite(const float *z, size_t n)
{
    int ok = 1;

    for (size_t j = 0; j < n; j++)
        ok &= isfinite(z[j]) != 0;
    return ok;
}

size_t quant__gather_abs(float *x, const float *z, size_t n)
{
    size_t k = 0;

    for (size_t j = 0; j < n; j++) {
        if (z[j] != 0.0f)
            x[k++] = fabsf(z[j]);
    }
    return k;
}

static uint32_t float_bits(float f)
{
    uint32_t u;

    memcpy(&u, &f, sizeof u);
    return u;
}

/*
 * Non-negative floats order like their bit patterns read as unsigned
 * integers, so four stable counting passes over the bytes sort them. A pass
 * whose byte is the same in every key is skipped.
 */
void quant__sort_abs(float *x, float *tmp, size_t n)
{
    float *src = x;
    float *dst = tmp;

    for (unsigned shift = 0; shift < 32; shift += 8) {
        size_t count[256];
        int trivial = 0;

        memset(count, 0, sizeof count);
        for (size_t j = 0; j < n; j++)
            count[(float_bits(src[j]) >> shift) & 0xffu]++;
        for (int b = 0; b < 256; b++) {
            if (count[b] == n)
                trivial = 1;
        }
        if (trivial)
            continue;
        size_t pos = 0;
        for (int b = 0; b < 256; b++) {
            size_t c = count[b];
            count[b] = pos;
            pos += c;
        }
        for (size_t j = 0; j < n; j++)
            dst[count[(float_bits(src[j]) >> shift) & 0xffu]++] = src[j];
        float *t = src;
        src = dst;
        dst = t;
    }
    if (src != x)
        memcpy(x, src, n * sizeof *x);
}

/* ---- Power-of-two level sets --------------------------------------------- */

/*
 * Nearest of {0} U t[0..n_t) to y > 0 (t ascending); ties go to the larger
 * level. The distances are exact: y and the levels are floats scaled by
 * powers of two, within a few binades of each other.
 */
static double table_nearest(const float *t, int n_t, double y)
{
    int lo = 0, hi = n_t;

    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;
        if ((double)t[mid] < y)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == n_t)
        return t[n_t - 1];
    double up = t[lo];
    double down = lo > 0 ? (double)t[lo - 1] : 0.0;
    return up - y <= y - down ? up : down;
}

/* The level (magnitude) that x > 0 maps to at scale 2^e. */
static float table_level(const float *t, int n_t, int e, float x)
{
    double y = ldexp((double)x, -e);
    return (float)ldexp(table_nearest(t, n_t, y), e);
}

static double table_error(const float *z, size_t len, const float *t, int n_t, int e)
{
    double err = 0.0;

    for (size_t j = 0; j < len; j++) {
        if (z[j] == 0.0f)
            continue;
        float x = fabsf(z[j]);
        double d = (double)x - (double)table_level(t, n_t, e, x);
        err += d * d;
    }
    return err;
}

static void table_group(float *z, size_t len, const float *t, int n_t)
{
    float xmax = 0.0f;

    if (!quant__all_finite(z, len))
        return;
    for (size_t j = 0; j < len; j++) {
        float x = fabsf(z[j]);
        if (x > xmax)
            xmax = x;
    }
    if (xmax == 0.0f)
        return; /* all zero: stays all zero */

    int ex;
    (void)frexpf(xmax, &ex); /* xmax = m * 2^ex, m in [0.5, 1): floor(log2 xmax) = ex - 1 */
    int f = ex - 1;
    int best_e = f - 1; /* its largest level is at most 2 * 2^(f-1) <= xmax: never overflows */
    double best_err = INFINITY;

    for (int e = f - 1; e <= f + 1; e++) {
        if (ldexp((double)t[n_t - 1], e) > (double)FLT_MAX)
            continue;
        double err = table_error(z, len, t, n_t, e);
        if (err < best_err) {
            best_err = err;
            best_e = e;
        }
    }
    for (size_t j = 0; j < len; j++) {
        if (z[j] == 0.0f)
            continue;
        float lv = table_level(t, n_t, best_e, fabsf(z[j]));
        z[j] = lv == 0.0f ? 0.0f : copysignf(lv, z[j]);
    }
}

void quant__table_project(float *z, const struct proj_shape *s, const struct proj_params *p,
                          const float *t, int n_t)
{
    struct quant__groups g;

    DP_ASSERT(n_t >= 1 && n_t <= QUANT__TABLE_MAX);
    quant__groups_get(&g, s, p, 0);
#pragma omp parallel for schedule(static) if (g.n > 1 && (size_t)g.n * g.len >= 4096)
    for (int64_t r = 0; r < g.n; r++)
        table_group(z + (size_t)r * g.len, g.len, t, n_t);
}
