/*
 * Projection onto block-circulant matrices (see proj.h): the Z-step and
 * the hard projection of a circulant rule. Each kernel tap's (O, I)
 * channel matrix is gathered, reduced to its block vectors by
 * circ_project (wrapped-diagonal means) and expanded back, so the one
 * definition of the convention (worker/circulant/circ_ref.c) serves the
 * projection, the conversion and the layers alike.
 */
#include <stdint.h>

#include "common/alloc.h"
#include "common/assert.h"
#include "worker/circulant/circ.h"
#include "worker/compress/proj.h"

size_t proj_circulant_scratch_bytes(const struct proj_shape *s, int k)
{
    DP_ASSERT(k >= 1);
    struct circ_dims d;
    circ_dims_init(&d, (int)s->o, (int)s->i, k);
    /* proj_circulant: one tap's matrix and its vectors; quant_spectrum:
     * a twiddle table (2k doubles) and one spectrum (k + 2 doubles). */
    const size_t mat = dp_size_mul((size_t)s->o, (size_t)s->i), vec = circ_dims_numel(&d);
    const size_t circ = mat > SIZE_MAX / 8 ? SIZE_MAX : dp_size_mul(mat + vec, sizeof(float));
    const size_t spec = dp_size_mul((size_t)(3 * k + 2), sizeof(double)) + 64;
    const size_t base = proj_scratch_bytes(s);
    const size_t need = circ > spec ? circ : spec;
    return need > base ? need : base;
}

void proj_circulant(float *z, const struct proj_shape *s, const struct proj_params *p,
                    void *scratch)
{
    DP_ASSERT(p->block >= 1 && s->o >= 1 && s->i >= 1);
    struct circ_dims d;
    circ_dims_init(&d, (int)s->o, (int)s->i, p->block);
    const size_t taps = (size_t)(s->kh * s->kw), rows = (size_t)s->o, cols = (size_t)s->i;
    float *mat = scratch, *vec = mat + rows * cols;
    for (size_t t = 0; t < taps; t++) {
        /* The tap's matrix: z is (O, I, KH, KW), so entry (o, i) is at (o * I + i) * taps + t. */
        for (size_t o = 0; o < rows; o++)
            for (size_t i = 0; i < cols; i++)
                mat[o * cols + i] = z[(o * cols + i) * taps + t];
        circ_project(vec, mat, &d);
        circ_expand(mat, vec, &d);
        for (size_t o = 0; o < rows; o++)
            for (size_t i = 0; i < cols; i++)
                z[(o * cols + i) * taps + t] = mat[o * cols + i];
    }
}
