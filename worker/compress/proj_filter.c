/*
 * Filter (row) pruning: units are the output channels o, i.e. the rows of
 * the O x (I*KH*KW) GEMM view. The groups are disjoint, so the Euclidean
 * projection onto "at most k non-zero rows" keeps the k rows of largest L2
 * norm and zeroes the others (dossier section 4.2).
 */
#include "worker/compress/proj.h"

#include <string.h>

#include "worker/compress/proj_int.h"

/* Units: rows o (I*KH*KW entries each), by L2 norm; keeps max(1, round(O / rate)). */
void proj_filter(float *z, const struct proj_shape *s, const struct proj_params *p, void *scratch)
{
    size_t n_rows = (size_t)s->o;
    size_t row_len = proj__numel(s) / (n_rows ? n_rows : 1);
    size_t k = (size_t)proj__keep((int64_t)n_rows, p->rate);

    if (k >= n_rows)
        return;
    struct proj__pair *pr = proj__pairs(scratch);
    for (size_t o = 0; o < n_rows; o++) {
        pr[o].key = proj__sumsq(z + o * row_len, row_len);
        pr[o].idx = (int64_t)o;
    }
    proj__select(pr, n_rows, k);
    for (size_t j = k; j < n_rows; j++)
        memset(z + (size_t)pr[j].idx * row_len, 0, row_len * sizeof *z);
}
