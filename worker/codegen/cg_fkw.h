/*
 * FKW (filter-kernel-weight) packing of a pattern + connectivity pruned
 * convolution, the compact format its generated kernel reads
 * (../shared/research/admm-algorithms.md section 5.5, appendix A.7).
 *
 * Stored filter j (j = 0..F-1, after filter kernel reordering) is original
 * output channel perm[j]. Its kernels are [kptr[j], kptr[j+1]) in cin[],
 * grouped by pattern: the kernels of pattern p (the plan's sorted mask
 * list) are kptr[j] + [prun[j*(P+1)+p], prun[j*(P+1)+p+1]), by ascending
 * input channel. Its weights start at w[woff[j]], each kernel's taps in
 * the order of the mask bits (row-major over the window), so a kernel of
 * a 4-tap pattern holds exactly 4 weights; woff[F] is the layer's count.
 *
 * Filter kernel reordering sorts filters by kernel count (descending),
 * then by their pattern histogram, then by index: filters with the same
 * work and the same pattern mix sit together, so a split of the stored
 * order by cumulative MACs (woff) gives every thread the same work and
 * the loops of neighbouring filters run the same branches.
 */
#ifndef DP_WORKER_CODEGEN_CG_FKW_H
#define DP_WORKER_CODEGEN_CG_FKW_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "worker/codegen/cg_plan.h"

struct cg_fkw {
    int F, C, n_patterns;
    size_t n_kernels; /* kernels kept (kptr[F]) */
    uint16_t *perm;   /* (F) */
    uint32_t *kptr;   /* (F+1) */
    uint16_t *prun;   /* (F, P+1) */
    uint16_t *cin;    /* (n_kernels) */
    uint32_t *woff;   /* (F+1) */
    float *w;         /* (woff[F]) */
    float *bias;      /* (F), stored order */
};

/*
 * Packs the FKW step s (its folded weights and patterns; name is its
 * layer's, for messages) into *out (every
 * array owned, release with cg_fkw_free). DP_EUNSUPPORTED naming the layer
 * when a count does not fit the 16-bit fields (more than 65535 channels)
 * or the 32-bit offsets (2^32 kept weights), DP_ENOMEM.
 */
enum dp_err cg_fkw_pack(const struct cg_step *s, const char *name, struct cg_fkw *out,
                        struct dp_errinfo *ei);

/* Releases the arrays of f and zeroes it. NULL is a no-op. */
void cg_fkw_free(struct cg_fkw *f);

#endif
