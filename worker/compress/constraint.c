/*
 * The scheme -> kernel table (see constraint.h): one line per scheme,
 * indexed by the scheme's id from common/scheme.h.
 */
#include "worker/compress/constraint.h"

#include "common/assert.h"

static const proj_fn admm_kernels[DP_SCHEME__COUNT] = {
    [DP_SCHEME_IRREGULAR] = proj_irregular,
    [DP_SCHEME_FILTER] = proj_filter,
    [DP_SCHEME_CHANNEL] = proj_channel,
    [DP_SCHEME_COLUMN] = proj_column,
    [DP_SCHEME_FILTER_COLUMN] = proj_filter_column,
    [DP_SCHEME_CONNECTIVITY] = proj_connectivity,
    [DP_SCHEME_NM] = proj_nm,
    [DP_SCHEME_PATTERN] = proj_pattern,
    [DP_SCHEME_BINARY] = quant_binary,
    [DP_SCHEME_TERNARY] = quant_ternary,
    [DP_SCHEME_KBIT] = quant_kbit,
    [DP_SCHEME_POW2] = quant_pow2,
    [DP_SCHEME_POW2SUM] = quant_pow2sum,
    [DP_SCHEME_CIRCULANT] = proj_circulant,
};

proj_fn admm_constraint_kernel(const struct dp_scheme *s)
{
    DP_ASSERT(s != NULL && (int)s->id >= 0 && s->id < DP_SCHEME__COUNT);
    return admm_kernels[s->id];
}

struct proj_params admm_constraint_params(const struct dp_spec_params *sp)
{
    struct proj_params p = proj_params_default();
    p.rate = sp->rate;
    p.n = sp->n;
    p.m = sp->m;
    p.bits = sp->bits;
    p.per_channel = sp->per_channel;
    p.balanced = sp->balanced;
    p.keep_zeros = sp->keep_zeros;
    p.block = sp->block;
    return p;
}
