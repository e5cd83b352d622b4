/*
 * Non-structured (irregular) pruning: the Euclidean projection onto
 * { W : at most k non-zero entries } keeps the k entries of largest |z| and
 * zeroes the rest, because the squared distance is the sum of squares of
 * the discarded entries (dossier section 2.1).
 *
 * DESIGN: one (|z|, index) pair per element in scratch, the top-k selection
 * of proj_int.h (ties to the lower index), then the losers are zeroed in
 * place. Kept entries are never written.
 */
#include "worker/compress/proj.h"

#include <math.h>

#include "worker/compress/proj_int.h"

/* Units: the O*I*KH*KW elements, ranked by |z|; keeps max(1, round(numel / rate)). */
void proj_irregular(float *z, const struct proj_shape *s, const struct proj_params *p,
                    void *scratch)
{
    size_t n = proj__numel(s);
    size_t k = (size_t)proj__keep((int64_t)n, p->rate);

    if (k >= n)
        return;
    struct proj__pair *pr = proj__pairs(scratch);
    for (size_t e = 0; e < n; e++) {
        pr[e].key = proj__key((double)fabsf(z[e]));
        pr[e].idx = (int64_t)e;
    }
    proj__select(pr, n, k);
    for (size_t j = k; j < n; j++)
        z[pr[j].idx] = 0.0f;
}
