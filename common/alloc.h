/*
 * All allocation goes through these functions (STYLE rule 17). The table
 * behind them is replaceable, which is how tests make the N-th allocation
 * fail and how accounting can be added without touching callers.
 *
 * dp_free(NULL) is a no-op, like free(NULL).
 */
#ifndef DP_COMMON_ALLOC_H
#define DP_COMMON_ALLOC_H

#include <stddef.h>

void *dp_malloc(size_t len);
void *dp_calloc(size_t n, size_t len);
void *dp_realloc(void *p, size_t len);
void dp_free(void *p);

/* 64-byte aligned allocation for tensor blocks; release with dp_free_aligned. */
void *dp_malloc_aligned(size_t len);
void dp_free_aligned(void *p);

/* Returns a copy of s that the caller must dp_free, or NULL on OOM. */
char *dp_strdup(const char *s);

/* Returns s * n or SIZE_MAX when the product overflows; use before allocating. */
size_t dp_size_mul(size_t n, size_t s);

/*
 * Test hook: after `n_ok` further successful allocations every allocation
 * fails, until dp_alloc_fail_reset(). n_ok < 0 disables failure injection.
 * Not thread-safe by design: it is for single-threaded constructor tests.
 */
void dp_alloc_fail_after(long n_ok);
void dp_alloc_fail_reset(void);

#endif
