/*
 * Connectivity pruning (PCONV / PatDNN, dossier sections 5.2-5.3): units
 * are the kernels W[o, i, :, :], i.e. the connection from input channel i
 * to filter o, ranked by L2 norm. The groups are disjoint, so keeping the k
 * largest kernels is the exact Euclidean projection.
 *
 * Unbalanced (p->balanced == 0): one top-k over all O*I kernels, k =
 * max(1, round(O*I / rate)). Balanced (PCONV's equal workload per filter):
 * a top-k per filter o over its I kernels, k = max(1, round(I / rate)),
 * which is the exact projection onto "at most k kernels in every filter".
 */
#include "worker/compress/proj.h"

#include <string.h>

#include "worker/compress/proj_int.h"

/* Keeps the k largest of the n kernels at ker (kernel j at ker + j*blk), zeroes the rest. */
static void conn_topk(float *ker, size_t n, size_t blk, size_t k, struct proj__pair *pr)
{
    if (k >= n)
        return;
    for (size_t j = 0; j < n; j++) {
        pr[j].key = proj__sumsq(ker + j * blk, blk);
        pr[j].idx = (int64_t)j;
    }
    proj__select(pr, n, k);
    for (size_t j = k; j < n; j++)
        memset(ker + (size_t)pr[j].idx * blk, 0, blk * sizeof *ker);
}

/* Units: kernels (o, i) of KH*KW entries, by L2 norm; per filter o when p->balanced. */
void proj_connectivity(float *z, const struct proj_shape *s, const struct proj_params *p,
                       void *scratch)
{
    size_t n_o = (size_t)s->o, n_i = (size_t)s->i;
    size_t blk = (size_t)s->kh * (size_t)s->kw;

    (void)proj__numel(s); /* asserts the shape */
    if (n_o == 0 || n_i == 0)
        return;
    struct proj__pair *pr = proj__pairs(scratch);
    if (p->balanced) {
        size_t k = (size_t)proj__keep((int64_t)n_i, p->rate);
        for (size_t o = 0; o < n_o; o++)
            conn_topk(z + o * n_i * blk, n_i, blk, k, pr);
    } else {
        size_t k = (size_t)proj__keep((int64_t)(n_o * n_i), p->rate);
        conn_topk(z, n_o * n_i, blk, k, pr);
    }
}
