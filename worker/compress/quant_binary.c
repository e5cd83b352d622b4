/*
 * Binary quantization (proj.h quant_binary): every entry becomes +-a with
 * a = mean |z| over the counted entries, per layer or per output channel.
 * For a fixed sign pattern the squared error sum (|z| - a)^2 is smallest at
 * the mean, and the sign pattern sign(z) is optimal for any a > 0, so this
 * is the exact projection.
 *
 * sign(0) is +1, so an exact zero becomes +a; with p->keep_zeros exact
 * zeros stay zero instead and are left out of the mean. A group with no
 * counted entry, or whose mean is 0, ends up all zero. A group holding a
 * NaN or an infinity is left as it is.
 *
 * DESIGN: the mean is summed in double in index order, so a group that is
 * already +-a sums to exactly n*a and gets a back: the projection is
 * idempotent bit for bit. No scratch is used.
 */
#include "worker/compress/proj.h"

#include <math.h>

#include "worker/compress/quant_int.h"

static void binary_group(float *z, size_t len, int keep_zeros)
{
    double sum = 0.0;
    size_t n = 0;

    if (!quant__all_finite(z, len))
        return;
    for (size_t j = 0; j < len; j++) {
        if (keep_zeros && z[j] == 0.0f)
            continue;
        sum += fabs((double)z[j]);
        n++;
    }
    if (n == 0)
        return;
    float a = (float)(sum / (double)n);
    for (size_t j = 0; j < len; j++) {
        if (keep_zeros && z[j] == 0.0f)
            continue;
        z[j] = z[j] < 0.0f ? -a : a;
    }
}

void quant_binary(float *z, const struct proj_shape *s, const struct proj_params *p, void *scratch)
{
    struct quant__groups g;

    (void)scratch;
    quant__groups_get(&g, s, p, 0);
#pragma omp parallel for schedule(static) if (g.n > 1 && (size_t)g.n * g.len >= 4096)
    for (int64_t r = 0; r < g.n; r++)
        binary_group(z + (size_t)r * g.len, g.len, p->keep_zeros);
}
