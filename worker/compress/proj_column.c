/*
 * Column (filter-shape) pruning: units are the positions (i, kh, kw), i.e.
 * the columns of the O x (I*KH*KW) GEMM view, each with O entries. The
 * groups are disjoint, so the Euclidean projection keeps the k columns of
 * largest L2 norm and zeroes the others (dossier section 4.2). For a linear
 * weight (O, I, 1, 1) this coincides with channel pruning.
 */
#include "worker/compress/proj.h"

#include "worker/compress/proj_int.h"

/* Units: columns c = (i, kh, kw) of the GEMM view, by L2; keeps max(1, round(I*KH*KW / rate)). */
void proj_column(float *z, const struct proj_shape *s, const struct proj_params *p, void *scratch)
{
    size_t n_o = (size_t)s->o;
    size_t n_c = (size_t)s->i * (size_t)s->kh * (size_t)s->kw;
    size_t k = (size_t)proj__keep((int64_t)n_c, p->rate);

    if (k >= n_c)
        return;
    (void)proj__numel(s); /* asserts the shape */
    struct proj__pair *pr = proj__pairs(scratch);
    for (size_t c = 0; c < n_c; c++) {
        pr[c].key = 0.0;
        pr[c].idx = (int64_t)c;
    }
    /* Row by row, so memory is read in order; every column sums over o ascending. */
    for (size_t o = 0; o < n_o; o++) {
        const float *row = z + o * n_c;
        for (size_t c = 0; c < n_c; c++)
            pr[c].key += (double)row[c] * (double)row[c];
    }
    for (size_t c = 0; c < n_c; c++)
        pr[c].key = proj__key(pr[c].key);
    proj__select(pr, n_c, k);
    for (size_t j = k; j < n_c; j++) {
        size_t c = (size_t)pr[j].idx;
        for (size_t o = 0; o < n_o; o++)
            z[o * n_c + c] = 0.0f;
    }
}
