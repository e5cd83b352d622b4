/*
 * Combined filter + column pruning (P-RM / AutoCompress): column
 * projection at rate sqrt(rate), then filter projection at rate sqrt(rate)
 * on its result, so that the two together remove about `rate` of the
 * weights of a dense layer.
 *
 * This is NOT the Euclidean projection onto the intersection of the two
 * constraint sets, which has no closed form (dossier section 4.2): it is
 * the sequential projection the group's code applies for composite types
 * ("column+filter", projections in order). The result is feasible for both
 * sets (at most max(1, round(I*KH*KW / sqrt(rate))) non-zero columns and
 * max(1, round(O / sqrt(rate))) non-zero filters) and projecting twice
 * changes nothing, but it is not always the nearest such tensor.
 */
#include "worker/compress/proj.h"

#include <math.h>

/* Column then filter, each at rate sqrt(p->rate); see the file comment. */
void proj_filter_column(float *z, const struct proj_shape *s, const struct proj_params *p,
                        void *scratch)
{
    struct proj_params q = *p;

    q.rate = sqrt(p->rate);
    proj_column(z, s, &q, scratch);
    proj_filter(z, s, &q, scratch);
}
