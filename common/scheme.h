/*
 * The compression schemes a job spec may name, as data: the name the spec
 * uses, whether it prunes or quantizes, and the facts the spec validator
 * needs about it. The server validates specs with this table and the worker
 * binds each scheme to its projection kernel (worker/compress/constraint.c),
 * so neither side can know a scheme the other does not.
 *
 * Adding a scheme: append a row to DP_SCHEME_MAP (values are append-only:
 * the enum is the table index), write its projection in worker/compress/
 * and bind it in constraint.c; a unit test fails until every row has a
 * kernel.
 */
#ifndef DP_COMMON_SCHEME_H
#define DP_COMMON_SCHEME_H

#include <stddef.h>

enum dp_scheme_kind {
    DP_SCHEME_PRUNE, /* zeros entries; the support becomes the retraining mask */
    DP_SCHEME_QUANT, /* moves entries onto levels; re-applied after every retraining step */
    DP_SCHEME_CIRC,  /* makes the weight block-circulant; the layer is then converted to its
                        circulant form (circ_linear, circ_conv2d, lstm/gru with a block) */
};

/* X(constant, name, kind, uses_rate, needs_3x3)
 *   uses_rate: a pruning scheme that keeps 1/rate of its units, so the
 *              spec requires "rate" (unless automatic rates choose it);
 *   needs_3x3: applies to 3x3 kernels only; the only scheme that takes a
 *              second, connectivity rate. */
#define DP_SCHEME_MAP(X)                                                                           \
    X(DP_SCHEME_IRREGULAR, "irregular", DP_SCHEME_PRUNE, 1, 0)                                     \
    X(DP_SCHEME_FILTER, "filter", DP_SCHEME_PRUNE, 1, 0)                                           \
    X(DP_SCHEME_CHANNEL, "channel", DP_SCHEME_PRUNE, 1, 0)                                         \
    X(DP_SCHEME_COLUMN, "column", DP_SCHEME_PRUNE, 1, 0)                                           \
    X(DP_SCHEME_FILTER_COLUMN, "filter+column", DP_SCHEME_PRUNE, 1, 0)                             \
    X(DP_SCHEME_CONNECTIVITY, "connectivity", DP_SCHEME_PRUNE, 1, 0)                               \
    X(DP_SCHEME_NM, "nm", DP_SCHEME_PRUNE, 0, 0)                                                   \
    X(DP_SCHEME_PATTERN, "pattern", DP_SCHEME_PRUNE, 0, 1)                                         \
    X(DP_SCHEME_BINARY, "binary", DP_SCHEME_QUANT, 0, 0)                                           \
    X(DP_SCHEME_TERNARY, "ternary", DP_SCHEME_QUANT, 0, 0)                                         \
    X(DP_SCHEME_KBIT, "kbit", DP_SCHEME_QUANT, 0, 0)                                               \
    X(DP_SCHEME_POW2, "pow2", DP_SCHEME_QUANT, 0, 0)                                               \
    X(DP_SCHEME_POW2SUM, "pow2sum", DP_SCHEME_QUANT, 0, 0)                                         \
    X(DP_SCHEME_CIRCULANT, "circulant", DP_SCHEME_CIRC, 0, 0)

enum dp_scheme_id {
#define DP__SCHEME_ENUM(constant, name, kind, uses_rate, needs_3x3) constant,
    DP_SCHEME_MAP(DP__SCHEME_ENUM)
#undef DP__SCHEME_ENUM
        DP_SCHEME__COUNT
};

struct dp_scheme {
    enum dp_scheme_id id;
    const char *name; /* as in the job spec: "irregular", "filter", "kbit", ... */
    enum dp_scheme_kind kind;
    int uses_rate;
    int needs_3x3;
};

/* The row of scheme id; NULL when id is not a scheme. Rows live forever. Any thread. */
const struct dp_scheme *dp_scheme_get(enum dp_scheme_id id);

/* The scheme the spec calls name (exact, case-sensitive), or NULL; name may be NULL. */
const struct dp_scheme *dp_scheme_find(const char *name);

/* Writes the names of every scheme of kind, comma-separated in table order
 * ("irregular, filter, ..."), into buf (cap bytes, NUL-terminated, truncated
 * if short), for error messages. */
void dp_scheme_names(enum dp_scheme_kind kind, char *buf, size_t cap);

#endif
