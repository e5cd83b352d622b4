/*
 * Mixed powers-of-two quantization (proj.h quant_pow2sum; REQ-YOLO): every
 * entry becomes 0 or +-a*(2^-j + 2^-k), 0 <= j <= k < J, or +-a*2^-j, with
 * J = 2^(bits-1) - 1, so a multiply is two shifts and an add. The scale a
 * is a power of two chosen as for pow2.
 *
 * DESIGN: the positive levels for a = 1 are built once per call into a
 * small sorted table on the stack (at most QUANT__TABLE_MAX floats), then
 * quant__table_project (quant_common.c) picks the scale and assigns every
 * entry to its nearest level by binary search (ties to the larger
 * magnitude). The table holds the levels as floats: 2^-j + 2^-k is exact
 * when k - j <= 23 and rounds to 2^-j when k - j >= 24 (at 24 the tie goes
 * to the even 2^-j), so only pairs with k - j <= 24 are generated and
 * duplicates are dropped. Writing a level and reading it back is then
 * exact, which keeps the projection idempotent.
 */
#include "worker/compress/proj.h"

#include <math.h>
#include <stdlib.h>

#include "common/assert.h"
#include "worker/compress/quant_int.h"

#define POW2SUM_MAX_GAP 24 /* k - j beyond which 2^-j + 2^-k rounds to 2^-j in float */

/* J <= 127: one power and at most POW2SUM_MAX_GAP + 1 sums for every j. */
_Static_assert(127 * (POW2SUM_MAX_GAP + 2) <= QUANT__TABLE_MAX, "pow2sum table too small");

static int float_cmp(const void *a, const void *b)
{
    float x = *(const float *)a;
    float y = *(const float *)b;
    return (x > y) - (x < y);
}

/* Fills t (QUANT__TABLE_MAX floats) with the distinct positive levels for a = 1; returns n_t. */
static int pow2sum_table(float *t, int n_j)
{
    int n = 0;

    for (int j = 0; j < n_j; j++) {
        t[n++] = ldexpf(1.0f, -j);
        for (int k = j; k < n_j && k - j <= POW2SUM_MAX_GAP; k++)
            t[n++] = (float)(ldexp(1.0, -j) + ldexp(1.0, -k));
    }
    qsort(t, (size_t)n, sizeof *t, float_cmp);
    int w = 0;
    for (int r = 0; r < n; r++) {
        if (w == 0 || t[r] != t[w - 1])
            t[w++] = t[r];
    }
    return w;
}

void quant_pow2sum(float *z, const struct proj_shape *s, const struct proj_params *p, void *scratch)
{
    float t[QUANT__TABLE_MAX];

    (void)scratch;
    DP_ASSERT(p->bits >= 2 && p->bits <= 8);
    int n_t = pow2sum_table(t, (1 << (p->bits - 1)) - 1);
    quant__table_project(z, s, p, t, n_t);
}
