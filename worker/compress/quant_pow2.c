/*
 * Power-of-two quantization (proj.h quant_pow2): every entry becomes 0 or
 * +-a*2^-j, j = 0..J-1 with J = 2^(bits-1) - 1, so a multiply by a weight
 * is a shift. The scale a is itself a power of two, chosen per layer or per
 * output channel among the three around max|z| by the squared error.
 *
 * DESIGN: the level set for a = 1 is the table {2^-(J-1), ..., 1/2, 1};
 * quant__table_project (quant_common.c) does the scale choice and the
 * nearest-level assignment (linear distance, ties to the larger magnitude:
 * the boundary between 2^-(j+1) and 2^-j is 0.75 * 2^-j, below half the
 * smallest level an entry becomes 0). All levels down to 2^-126 are normal
 * floats, so the table is exact for every bits in 2..8.
 */
#include "worker/compress/proj.h"

#include <math.h>

#include "common/assert.h"
#include "worker/compress/quant_int.h"

void quant_pow2(float *z, const struct proj_shape *s, const struct proj_params *p, void *scratch)
{
    float t[128];

    (void)scratch;
    DP_ASSERT(p->bits >= 2 && p->bits <= 8);
    int n_j = (1 << (p->bits - 1)) - 1; /* J */
    for (int j = 0; j < n_j; j++)
        t[n_j - 1 - j] = ldexpf(1.0f, -j); /* ascending */
    quant__table_project(z, s, p, t, n_j);
}
