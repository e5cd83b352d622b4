/*
 * Channel pruning: units are the input channels i, each the O*KH*KW
 * entries z[:, i, :, :]. The groups are disjoint, so the Euclidean
 * projection keeps the k channels of largest L2 norm and zeroes the others
 * (dossier section 4.2). For a linear weight (O, I, 1, 1) a channel is a
 * column of the matrix, i.e. one input feature.
 */
#include "worker/compress/proj.h"

#include <string.h>

#include "worker/compress/proj_int.h"

/* Units: input channels i (O*KH*KW entries), by L2 norm; keeps max(1, round(I / rate)). */
void proj_channel(float *z, const struct proj_shape *s, const struct proj_params *p, void *scratch)
{
    size_t n_o = (size_t)s->o, n_i = (size_t)s->i;
    size_t blk = (size_t)s->kh * (size_t)s->kw; /* entries of one kernel (o, i) */
    size_t k = (size_t)proj__keep((int64_t)n_i, p->rate);

    if (k >= n_i)
        return;
    (void)proj__numel(s); /* asserts the shape */
    struct proj__pair *pr = proj__pairs(scratch);
    for (size_t i = 0; i < n_i; i++) {
        pr[i].key = 0.0;
        pr[i].idx = (int64_t)i;
    }
    /* Sums run over o, then the kernel taps, for every channel alike. */
    for (size_t o = 0; o < n_o; o++) {
        const float *row = z + o * n_i * blk;
        for (size_t i = 0; i < n_i; i++) {
            const float *ker = row + i * blk;
            for (size_t t = 0; t < blk; t++)
                pr[i].key += (double)ker[t] * (double)ker[t];
        }
    }
    for (size_t i = 0; i < n_i; i++)
        pr[i].key = proj__key(pr[i].key);
    proj__select(pr, n_i, k);
    for (size_t j = k; j < n_i; j++) {
        size_t i = (size_t)pr[j].idx;
        for (size_t o = 0; o < n_o; o++)
            memset(z + (o * n_i + i) * blk, 0, blk * sizeof *z);
    }
}
