/*
 * Shared pieces of the projections (proj.h, proj_int.h): default parameters,
 * the scratch size, the keep count and the deterministic top-k selection
 * that every pruning projection uses.
 *
 * DESIGN: "keep the k largest, ties to the lower index" is made one
 * well-defined set by ranking (key, index) pairs under a strict total order
 * (larger key first, then lower index; keys are never NaN, indices are
 * distinct). The k first pairs under that order are found nth_element
 * style: quickselect with a median-of-three pivot and a Lomuto partition,
 * which is O(n) on average; after 2*log2(n) + 2 partitioning rounds it
 * heapsorts what is left, so adversarial inputs cost O(n log n), never
 * O(n^2). Small ranges finish with an insertion sort. The result depends
 * only on the keys and indices, never on the order pairs arrive in.
 */
#include "worker/compress/proj.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "common/alloc.h"
#include "common/assert.h"
#include "worker/compress/proj_int.h"

_Static_assert(sizeof(struct proj__pair) <= PROJ__SCRATCH_PER_UNIT,
               "proj_scratch_bytes reserves PROJ__SCRATCH_PER_UNIT bytes per pair");

#define PROJ_SMALL_RANGE 16 /* ranges this short are insertion-sorted */

/* ---- Parameters and scratch --------------------------------------------- */

struct proj_params proj_params_default(void)
{
    struct proj_params p;

    memset(&p, 0, sizeof p);
    p.rate = 1.0;
    p.n = 2;
    p.m = 4;
    p.bits = 8;
    p.per_channel = 0;
    p.balanced = 0;
    p.keep_zeros = 0;
    p.n_library = 0;
    return p;
}

size_t proj__numel(const struct proj_shape *s)
{
    DP_ASSERT(s->o >= 0 && s->i >= 0 && s->kh >= 0 && s->kw >= 0);
    size_t n = dp_size_mul((size_t)s->o, (size_t)s->i);
    n = dp_size_mul(n, (size_t)s->kh);
    return dp_size_mul(n, (size_t)s->kw);
}

/*
 * Pairs for every element (irregular, n:m, the quantizers' sorts) and for
 * every kernel (connectivity, which has O*I units even when KH*KW is 0).
 * Group schemes need fewer pairs than elements. SIZE_MAX on overflow.
 */
size_t proj_scratch_bytes(const struct proj_shape *s)
{
    size_t numel = proj__numel(s);
    size_t n_kernels = dp_size_mul((size_t)s->o, (size_t)s->i);
    size_t units = numel > n_kernels ? numel : n_kernels;
    size_t len = dp_size_mul(units, PROJ__SCRATCH_PER_UNIT);

    if (len > SIZE_MAX - PROJ__SCRATCH_SLACK)
        return SIZE_MAX;
    return len + PROJ__SCRATCH_SLACK;
}

int64_t proj__keep(int64_t units, double rate)
{
    DP_ASSERT(units >= 0);
    DP_ASSERT(rate >= 1.0);
    if (units == 0)
        return 0;
    long long k = llround((double)units / rate);
    if (k < 1)
        k = 1;
    if (k > units)
        k = units;
    return (int64_t)k;
}

double proj__sumsq(const float *x, size_t n)
{
    double acc = 0.0;

    for (size_t j = 0; j < n; j++)
        acc += (double)x[j] * (double)x[j];
    return proj__key(acc);
}

struct proj__pair *proj__pairs(void *scratch)
{
    DP_ASSERT(scratch != NULL);
    DP_ASSERT((uintptr_t)scratch % _Alignof(struct proj__pair) == 0);
    return scratch;
}

/* ---- Selection ------------------------------------------------------------ */

/* The strict total order: a ranks before b. */
static int pair_before(const struct proj__pair *a, const struct proj__pair *b)
{
    return a->key > b->key || (a->key == b->key && a->idx < b->idx);
}

static void pair_swap(struct proj__pair *a, struct proj__pair *b)
{
    struct proj__pair t = *a;
    *a = *b;
    *b = t;
}

static void insertion_sort(struct proj__pair *a, size_t n)
{
    for (size_t j = 1; j < n; j++) {
        struct proj__pair x = a[j];
        size_t h = j;
        while (h > 0 && pair_before(&x, &a[h - 1])) {
            a[h] = a[h - 1];
            h--;
        }
        a[h] = x;
    }
}

/* Max-heap where "larger" means later in the order, so heapsort sorts by the order. */
static void sift_down(struct proj__pair *a, size_t root, size_t n)
{
    for (;;) {
        size_t child = 2 * root + 1;
        if (child >= n)
            return;
        if (child + 1 < n && pair_before(&a[child], &a[child + 1]))
            child++;
        if (!pair_before(&a[root], &a[child]))
            return;
        pair_swap(&a[root], &a[child]);
        root = child;
    }
}

static void heap_sort(struct proj__pair *a, size_t n)
{
    if (n < 2)
        return;
    for (size_t j = n / 2; j-- > 0;)
        sift_down(a, j, n);
    for (size_t end = n - 1; end > 0; end--) {
        pair_swap(&a[0], &a[end]);
        sift_down(a, 0, end);
    }
}

/*
 * Partitions a[lo..hi) (hi - lo >= 3) around the median of a[lo], a[mid],
 * a[hi-1]; returns the pivot's final position p: a[lo..p) rank before it,
 * a[p+1..hi) after.
 */
static size_t partition(struct proj__pair *a, size_t lo, size_t hi)
{
    size_t mid = lo + (hi - lo) / 2;
    size_t last = hi - 1;

    if (pair_before(&a[mid], &a[lo]))
        pair_swap(&a[mid], &a[lo]);
    if (pair_before(&a[last], &a[lo]))
        pair_swap(&a[last], &a[lo]);
    if (pair_before(&a[last], &a[mid]))
        pair_swap(&a[last], &a[mid]);
    /* a[lo] <= a[mid] <= a[last]: move the median to the end as the pivot. */
    pair_swap(&a[mid], &a[last]);

    size_t store = lo;
    for (size_t j = lo; j < last; j++) {
        if (pair_before(&a[j], &a[last])) {
            pair_swap(&a[j], &a[store]);
            store++;
        }
    }
    pair_swap(&a[store], &a[last]);
    return store;
}

void proj__select_depth(struct proj__pair *a, size_t n, size_t k, int max_depth)
{
    if (k == 0 || k >= n)
        return;
    /* nth_element with nth = k-1: everything before it ranks before it. */
    size_t nth = k - 1;
    size_t lo = 0, hi = n;

    while (hi - lo > PROJ_SMALL_RANGE) {
        if (max_depth <= 0) {
            heap_sort(a + lo, hi - lo);
            return;
        }
        max_depth--;
        size_t p = partition(a, lo, hi);
        if (p == nth)
            return;
        if (p > nth)
            hi = p;
        else
            lo = p + 1;
    }
    insertion_sort(a + lo, hi - lo);
}

void proj__select(struct proj__pair *a, size_t n, size_t k)
{
    int depth = 2;

    for (size_t m = n; m > 1; m >>= 1)
        depth += 2;
    proj__select_depth(a, n, k, depth);
}
