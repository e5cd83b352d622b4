/*
 * The scheme table: every row is found by its name and its id, names are
 * unique, and the lists in error messages are derived from the rows.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "common/scheme.h"

Test(scheme, rows_round_trip)
{
    for (int i = 0; i < DP_SCHEME__COUNT; i++) {
        const struct dp_scheme *s = dp_scheme_get((enum dp_scheme_id)i);
        cr_assert_not_null(s);
        cr_assert_eq((int)s->id, i);
        cr_assert_eq(dp_scheme_find(s->name), s, "%s", s->name);
    }
    cr_assert_null(dp_scheme_get(DP_SCHEME__COUNT));
    cr_assert_null(dp_scheme_find("random"));
    cr_assert_null(dp_scheme_find(NULL));
    cr_assert_eq(dp_scheme_find("filter+column")->id, DP_SCHEME_FILTER_COLUMN);
    cr_assert(dp_scheme_find("pattern")->needs_3x3);
    cr_assert_not(dp_scheme_find("nm")->uses_rate);
}

Test(scheme, names_by_kind)
{
    char buf[160];
    dp_scheme_names(DP_SCHEME_PRUNE, buf, sizeof(buf));
    cr_assert_str_eq(
        buf, "irregular, filter, channel, column, filter+column, connectivity, nm, pattern");
    dp_scheme_names(DP_SCHEME_QUANT, buf, sizeof(buf));
    cr_assert_str_eq(buf, "binary, ternary, kbit, pow2, pow2sum");
    dp_scheme_names(DP_SCHEME_QUANT, buf, 20); /* cut at a whole name */
    cr_assert_str_eq(buf, "binary, ternary");
}
