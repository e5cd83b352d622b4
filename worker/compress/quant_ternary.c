/*
 * Ternary quantization (proj.h quant_ternary): every entry becomes -a, 0
 * or +a, per layer or per output channel, with the exact optimal support
 * and scale (dossier section 3.4).
 *
 * For a support of m entries the best a is their mean magnitude and the
 * error is ||z||^2 - S^2/m, where S is the sum of their magnitudes; for a
 * given m the best support is the m largest |z|. So: sort |z| descending,
 * form the prefix sums S_m, take m* = argmax S_m^2/m (ties: the smallest
 * m), a = S_m* / m*, keep the m* largest |z| as +-a (ties in |z| go to the
 * lower index) and zero the rest.
 *
 * Exact zeros never enter the support (adding one lowers S_m^2/m), so they
 * stay zero and never shape a.
 *
 * With p->keep_zeros (pruning then ternary on one tensor) the support is
 * the pruning's: every non-zero becomes sign(z) a, a their mean magnitude,
 * the exact projection onto {-a, +a} on a fixed support. The optimal
 * support above may drop most survivors when a few are much larger, and in
 * ADMM that feeds itself (a survivor zeroed in Z is pulled towards 0 by the
 * next W-step, so the next Z-step drops more): pruning at 200x then
 * ternary once kept 85 of 2,122 weights. The pruning rate is the one asked
 * for, and the zero level is spent on the pruned weights.
 *
 * A group holding a NaN or an infinity is left as it is (quant_int.h).
 *
 * DESIGN: the non-zero magnitudes of a group are radix-sorted in the
 * group's scratch slice (8 bytes per entry: the magnitudes and the sort's
 * buffer). Sums are in double: on a group that is already ternary the sums
 * of equal magnitudes are exact, so m* is the whole support and a comes
 * back bit for bit (idempotence).
 */
#include "worker/compress/proj.h"

#include <math.h>

#include "common/assert.h"
#include "worker/compress/quant_int.h"

/* keep_zeros: +-(mean magnitude of the non-zeros) on the non-zeros. */
static void ternary_group_on_support(float *z, size_t len)
{
    double sum = 0.0;
    size_t n = 0;
    for (size_t j = 0; j < len; j++) {
        if (z[j] != 0.0f) {
            sum += (double)fabsf(z[j]);
            n++;
        }
    }
    if (n == 0)
        return;
    const float a = (float)(sum / (double)n);
    for (size_t j = 0; j < len; j++) {
        if (z[j] != 0.0f)
            z[j] = copysignf(a, z[j]);
    }
}

static void ternary_group(float *z, size_t len, int keep_support, void *scratch)
{
    float *x = scratch;   /* len magnitudes */
    float *tmp = x + len; /* len floats for the sort */

    if (!quant__all_finite(z, len))
        return;
    if (keep_support) {
        ternary_group_on_support(z, len);
        return;
    }
    size_t n = quant__gather_abs(x, z, len);
    if (n == 0)
        return;
    quant__sort_abs(x, tmp, n);

    double sum = 0.0, best_score = -1.0, best_sum = 0.0;
    size_t best_m = 1;
    for (size_t m = 1; m <= n; m++) {
        sum += (double)x[n - m];
        double score = sum * sum / (double)m;
        if (score > best_score) {
            best_score = score;
            best_sum = sum;
            best_m = m;
        }
    }
    float a = (float)(best_sum / (double)best_m);
    float thr = x[n - best_m]; /* smallest kept magnitude */
    size_t n_ties = 0;         /* entries equal to thr inside the kept block */
    for (size_t j = n - best_m; j < n && x[j] == thr; j++)
        n_ties++;

    for (size_t j = 0; j < len; j++) {
        if (z[j] == 0.0f)
            continue;
        float v = fabsf(z[j]);
        if (v > thr || (v == thr && n_ties > 0)) {
            if (v == thr)
                n_ties--;
            z[j] = copysignf(a, z[j]);
        } else {
            z[j] = 0.0f;
        }
    }
}

void quant_ternary(float *z, const struct proj_shape *s, const struct proj_params *p, void *scratch)
{
    struct quant__groups g;

    DP_ASSERT(scratch != NULL);
    quant__groups_get(&g, s, p, 2 * sizeof(float));
#pragma omp parallel for schedule(static) if (g.n > 1 && (size_t)g.n * g.len >= 4096)
    for (int64_t r = 0; r < g.n; r++)
        ternary_group(z + (size_t)r * g.len, g.len, p->keep_zeros,
                      (char *)scratch + (size_t)r * g.stride);
}
