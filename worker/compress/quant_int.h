/*
 * Internal helpers shared by the quantizers (quant_*.c) only; not part of
 * the API in proj.h.
 *
 * A quantizer works on groups: the whole tensor (one scale per layer) or,
 * when p->per_channel is set, each output channel o, that is each row of
 * I*KH*KW consecutive entries. Groups are independent, so the quantizers
 * run them in parallel, and each group gets its own slice of the caller's
 * scratch.
 *
 * Zeros never shape a scale except in the binary quantizer: 0 is a level of
 * every other set, so an entry that is exactly 0 maps to 0 at no cost for
 * any scale. The helpers below therefore look at the non-zero magnitudes
 * only, and the quantizers leave exact zeros untouched (bit for bit).
 *
 * A group holding a NaN or an infinity is left exactly as it is, so the
 * caller's finiteness check still sees it (as with the pruning projections,
 * which keep a NaN unit) instead of a silently zeroed or NaN-filled group.
 */
#ifndef DP_WORKER_COMPRESS_QUANT_INT_H
#define DP_WORKER_COMPRESS_QUANT_INT_H

#include <stddef.h>
#include <stdint.h>

#include "worker/compress/proj.h"

/*
 * Most positive levels a table quantizer may have (pow2: J <= 127;
 * pow2sum: 128 powers of two and at most 127 * 24 distinct float sums of
 * two, see quant_pow2sum.c).
 */
#define QUANT__TABLE_MAX 4096

/* How a tensor splits into groups, and how much scratch each group owns. */
struct quant__groups {
    int64_t n;     /* number of groups: O when per_channel, else 1 */
    size_t len;    /* entries per group: I*KH*KW, or O*I*KH*KW */
    size_t stride; /* scratch bytes of one group: bytes_per_elem * len rounded up to 16 */
};

/*
 * Fills g for shape s. bytes_per_elem (at most 16) is what one group needs
 * per entry; the rounded stride never exceeds 16 * len, so all the groups'
 * slices fit in proj_scratch_bytes(s), and each slice starts 16-aligned when
 * the scratch does.
 */
void quant__groups_get(struct quant__groups *g, const struct proj_shape *s,
                       const struct proj_params *p, size_t bytes_per_elem);

/* 1 when every one of z[0..n) is finite (no NaN, no infinity), else 0. */
int quant__all_finite(const float *z, size_t n);

/* Copies |z[j]| of the n entries that are not exactly 0 into x; returns their count. */
size_t quant__gather_abs(float *x, const float *z, size_t n);

/*
 * Sorts the n non-negative floats in x ascending (LSD radix sort on the bit
 * patterns, stable, O(n)); tmp holds n floats and may not overlap x.
 */
void quant__sort_abs(float *x, float *tmp, size_t n);

/*
 * The power-of-two family (pow2, pow2sum). t[0..n_t) are the positive
 * levels for the scale a = 1, ascending, distinct, every one a float whose
 * products with powers of two are exact (1 <= n_t <= QUANT__TABLE_MAX). Per
 * group: a = 2^e with e in [floor(log2 max|z|) - 1, floor(log2 max|z|) + 1]
 * minimising the squared error (ties: smallest e; an e whose largest level
 * overflows float is skipped), then every non-zero entry goes to the
 * nearest of {0} U {+-a*t[j]} (binary search; ties to the larger magnitude).
 * Exact zeros stay as they are. No scratch is needed.
 */
void quant__table_project(float *z, const struct proj_shape *s, const struct proj_params *p,
                          const float *t, int n_t);

#endif
