/*
 * The worker's scheme -> kernel binding: every scheme the spec accepts
 * (common/scheme.h) has a projection, and the spec's parameters reach the
 * projection unchanged.
 */
#include <criterion/criterion.h>

#include "worker/compress/constraint.h"

Test(constraint, every_scheme_has_a_kernel)
{
    for (int i = 0; i < DP_SCHEME__COUNT; i++) {
        const struct dp_scheme *s = dp_scheme_get((enum dp_scheme_id)i);
        cr_assert_not_null(admm_constraint_kernel(s), "scheme '%s' has no kernel", s->name);
    }
    cr_assert_eq(admm_constraint_kernel(dp_scheme_find("kbit")), quant_kbit);
    cr_assert_eq(admm_constraint_kernel(dp_scheme_find("filter+column")), proj_filter_column);
}

Test(constraint, params_from_the_spec)
{
    struct dp_spec_params sp = {
        .rate = 7.5, .n = 1, .m = 8, .bits = 3, .per_channel = 1, .balanced = 1, .keep_zeros = 1};
    struct proj_params p = admm_constraint_params(&sp);
    cr_assert_float_eq(p.rate, 7.5, 0.0);
    cr_assert(p.n == 1 && p.m == 8 && p.bits == 3);
    cr_assert(p.per_channel && p.balanced && p.keep_zeros);
    cr_assert_eq(p.n_library, 0);
}
