/*
 * The constraint registry (see constraint.h): one line per scheme.
 */
#include "worker/compress/constraint.h"

#include <string.h>

static const struct admm_constraint admm_constraints[] = {
    {"irregular", ADMM_PRUNE, proj_irregular, 1, 0},
    {"filter", ADMM_PRUNE, proj_filter, 1, 0},
    {"channel", ADMM_PRUNE, proj_channel, 1, 0},
    {"column", ADMM_PRUNE, proj_column, 1, 0},
    {"filter+column", ADMM_PRUNE, proj_filter_column, 1, 0},
    {"connectivity", ADMM_PRUNE, proj_connectivity, 1, 0},
    {"nm", ADMM_PRUNE, proj_nm, 0, 0},
    {"pattern", ADMM_PRUNE, proj_pattern, 0, 1},
    {"binary", ADMM_QUANT, quant_binary, 0, 0},
    {"ternary", ADMM_QUANT, quant_ternary, 0, 0},
    {"kbit", ADMM_QUANT, quant_kbit, 0, 0},
    {"pow2", ADMM_QUANT, quant_pow2, 0, 0},
    {"pow2sum", ADMM_QUANT, quant_pow2sum, 0, 0},
};

const struct admm_constraint *admm_constraint_find(const char *name)
{
    for (size_t i = 0; i < sizeof(admm_constraints) / sizeof(admm_constraints[0]); i++) {
        if (strcmp(admm_constraints[i].name, name) == 0)
            return &admm_constraints[i];
    }
    return NULL;
}

const char *admm_constraint_names(enum admm_kind kind)
{
    return kind == ADMM_PRUNE
               ? "irregular, filter, channel, column, filter+column, connectivity, nm, pattern"
               : "binary, ternary, kbit, pow2, pow2sum";
}
