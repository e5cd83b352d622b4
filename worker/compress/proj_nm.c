/*
 * N:M semi-structured pruning: along each row o of the O x (I*KH*KW) GEMM
 * view, every run of m consecutive entries (starting at column 0) keeps its
 * n entries of largest |z|; the last, shorter run of a row keeps
 * min(n, its length). The runs are disjoint, so this is the exact Euclidean
 * projection onto the n:m set. p->rate is ignored.
 */
#include "worker/compress/proj.h"

#include <math.h>

#include "common/assert.h"
#include "worker/compress/proj_int.h"

/* n of every m consecutive weights along I*KH*KW, by |z|, ties to the lower index. */
void proj_nm(float *z, const struct proj_shape *s, const struct proj_params *p, void *scratch)
{
    DP_ASSERT(p->n >= 1 && p->m >= 1);
    size_t n_o = (size_t)s->o;
    size_t row_len = (size_t)s->i * (size_t)s->kh * (size_t)s->kw;
    size_t keep = (size_t)p->n, run = (size_t)p->m;

    (void)proj__numel(s); /* asserts the shape */
    if (keep >= run || n_o == 0 || row_len == 0)
        return;
    struct proj__pair *pr = proj__pairs(scratch);
    for (size_t o = 0; o < n_o; o++) {
        float *row = z + o * row_len;
        for (size_t g0 = 0; g0 < row_len; g0 += run) {
            size_t len = row_len - g0 < run ? row_len - g0 : run;
            if (keep >= len)
                continue;
            for (size_t j = 0; j < len; j++) {
                pr[j].key = proj__key((double)fabsf(row[g0 + j]));
                pr[j].idx = (int64_t)j;
            }
            proj__select(pr, len, keep);
            for (size_t j = keep; j < len; j++)
                row[g0 + (size_t)pr[j].idx] = 0.0f;
        }
    }
}
