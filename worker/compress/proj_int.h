/*
 * Internal helpers shared by the projection files of worker/compress/
 * (proj_*.c, quant_*.c); not part of the API in proj.h.
 *
 * Every pruning projection works the same way: one key per unit (|z| for an
 * element, the sum of squares for a group; the square root is monotone, so
 * it is never taken), a deterministic top-k selection over (key, index)
 * pairs laid out in the caller's scratch, then the units left outside the
 * top k are zeroed. Units inside it are never written, so kept entries keep
 * their exact input bits.
 *
 * Scratch: proj_scratch_bytes() reserves PROJ__SCRATCH_PER_UNIT bytes for
 * every element (and for every kernel (o, i), which matters only when
 * KH*KW is 0) plus PROJ__SCRATCH_SLACK bytes. The buffer must be aligned for
 * double, which dp_malloc and dp_malloc_aligned guarantee.
 */
#ifndef DP_WORKER_COMPRESS_PROJ_INT_H
#define DP_WORKER_COMPRESS_PROJ_INT_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "worker/compress/proj.h"

#define PROJ__SCRATCH_PER_UNIT 16   /* bytes per element; one struct proj__pair */
#define PROJ__SCRATCH_SLACK    4096 /* bytes, for small fixed tables */

/* One unit in a selection: larger key first, then lower index. */
struct proj__pair {
    double key;  /* |z| or sum of squares; never NaN (see proj__key) */
    int64_t idx; /* unit index; distinct within one selection */
};

/*
 * Canonical key: NaN becomes +inf so that the selection order stays total,
 * and a unit holding a NaN ranks as the largest. It is then kept (and its
 * NaN survives for the caller's finiteness check) rather than silently
 * replaced by zeros.
 */
static inline double proj__key(double v)
{
    return v == v ? v : (double)INFINITY;
}

/* numel = O*I*KH*KW. Asserts that no dimension is negative. */
size_t proj__numel(const struct proj_shape *s);

/*
 * Units kept at compression rate `rate`: max(1, llround(units / rate)),
 * never more than units; 0 when units is 0. Asserts units >= 0 and
 * rate >= 1 (proj_params_check guarantees the latter; NaN fails it).
 */
int64_t proj__keep(int64_t units, double rate);

/* Sum of squares of x[0..n) accumulated in double, in index order, as a key. */
double proj__sumsq(const float *x, size_t n);

/*
 * Views scratch as an array of pairs; asserts the alignment. The caller
 * owns the bound: n pairs need n * sizeof(struct proj__pair) bytes.
 */
struct proj__pair *proj__pairs(void *scratch);

/*
 * Reorders a[0..n) so that a[0..k) holds the k first pairs in the order
 * "larger key first, then lower idx" (that is: the k largest keys, ties to
 * the lower index) and a[k..n) the rest, neither half sorted. O(n) on
 * average, O(n log n) at worst (introselect: median-of-three quickselect,
 * heapsort past 2*log2(n) partitioning rounds). k >= n or k == 0: no-op.
 */
void proj__select(struct proj__pair *a, size_t n, size_t k);

/* proj__select with an explicit partitioning budget; tests use 0 to reach the heap path. */
void proj__select_depth(struct proj__pair *a, size_t n, size_t k, int max_depth);

#endif
