/*
 * The job spec's circulant rules: accepted with their fields, refused
 * with a message naming the field and the reason.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "common/spec.h"
#include "tests/unit/test_util.h"

static void spec_bad(const char *text, const char *want)
{
    struct dp_spec s;
    struct dp_errinfo ei = {0};
    cr_assert_eq(dp_spec_parse(text, strlen(text), &s, &ei), DP_EINVAL, "accepted: %s", text);
    cr_assert(strstr(ei.msg, want) != NULL, "message '%s' lacks '%s'", ei.msg, want);
}

Test(circ_spec, rule_fields_and_defaults)
{
    static const char text[] =
        "{\"layers\":[{\"match\":\"fc*\",\"circulant\":{\"block\":16,\"from\":\"scratch\","
        "\"spectrum_bits\":6},\"rho\":0.01},{\"match\":\"lstm\",\"circulant\":{\"block\":8,"
        "\"from\":\"scratch\"}}]}";
    struct dp_spec s;
    struct dp_errinfo ei = {0};
    cr_assert_eq(dp_spec_parse(text, strlen(text), &s, &ei), DP_OK, "%s", ei.msg);
    cr_assert_eq(s.circ_from, DP_SPEC_CIRC_SCRATCH);
    const struct dp_spec_rule *r = dp_spec_rule_for(&s, "fc1");
    cr_assert_not_null(r->circ);
    cr_assert_str_eq(r->circ->name, "circulant");
    cr_assert_eq(r->circ->kind, DP_SCHEME_CIRC);
    cr_assert_null(r->prune);
    cr_assert_null(r->quant);
    cr_assert_eq(r->params.block, 16);
    cr_assert_eq(r->params.spectrum_bits, 6);
    cr_assert_float_eq(r->rho, 0.01, 1e-12);
    cr_assert_eq(dp_spec_rule_for(&s, "lstm")->params.spectrum_bits, 0, "float by default");
    const uint64_t d = dp_spec_digest(&s);
    s.rules[0].params.block = 8;
    cr_assert_neq(dp_spec_digest(&s), d, "the block size shapes the run");
    s.rules[0].params.block = 16;
    s.rules[0].params.spectrum_bits = 5;
    cr_assert_neq(dp_spec_digest(&s), d, "so do the spectrum bits");

    static const char dflt[] = "{\"layers\":[{\"circulant\":{\"block\":4}}]}";
    cr_assert_eq(dp_spec_parse(dflt, strlen(dflt), &s, &ei), DP_OK, "%s", ei.msg);
    cr_assert_eq(s.circ_from, DP_SPEC_CIRC_ADMM, "from defaults to admm");
    static const char none[] = "{\"layers\":[{\"prune\":{\"scheme\":\"irregular\",\"rate\":2}}]}";
    cr_assert_eq(dp_spec_parse(none, strlen(none), &s, &ei), DP_OK, "%s", ei.msg);
    cr_assert_eq(s.circ_from, DP_SPEC_CIRC_NONE);
    cr_assert_null(s.rules[0].circ);
    DP_ASSERT_NO_LEAKS();
}

Test(circ_spec, bad_rules_are_named)
{
    spec_bad("{\"layers\":[{\"circulant\":{}}]}", "layers[0].circulant.block: required");
    spec_bad("{\"layers\":[{\"circulant\":{\"block\":1}}]}", "layers[0].circulant.block: 1 is "
                                                             "outside [2, 256]");
    spec_bad("{\"layers\":[{\"circulant\":{\"block\":512}}]}", "outside [2, 256]");
    spec_bad("{\"layers\":[{\"circulant\":{\"block\":4.5}}]}", "block: must be an integer");
    spec_bad("{\"layers\":[{\"circulant\":{\"block\":4,\"spectrum_bits\":1}}]}",
             "layers[0].circulant.spectrum_bits: 1 is outside [2, 16]");
    spec_bad("{\"layers\":[{\"circulant\":{\"block\":4,\"spectrum_bits\":17}}]}",
             "spectrum_bits: 17 is outside");
    spec_bad("{\"layers\":[{\"circulant\":{\"block\":4,\"from\":\"magic\"}}]}",
             "layers[0].circulant.from: must be \"admm\" or \"scratch\"");
    spec_bad("{\"layers\":[{\"circulant\":{\"block\":4,\"bits\":4}}]}",
             "layers[0].circulant: unknown field 'bits'");
    spec_bad("{\"layers\":[{\"circulant\":4}]}", "layers[0].circulant: must be an object");
    spec_bad("{\"layers\":[{\"circulant\":{\"block\":4},\"prune\":{\"scheme\":\"irregular\","
             "\"rate\":2}}]}",
             "layers[0]: \"circulant\" does not combine with \"prune\" or \"quant\"");
    spec_bad("{\"layers\":[{\"circulant\":{\"block\":4},\"quant\":{\"scheme\":\"kbit\"}}]}",
             "does not combine");
    spec_bad("{\"layers\":[{\"prune\":{\"scheme\":\"circulant\"}}]}",
             "layers[0].prune.scheme: 'circulant' is not one of");
    DP_ASSERT_NO_LEAKS();
}

Test(circ_spec, run_level_conflicts_are_named)
{
    spec_bad("{\"layers\":[{\"match\":\"fc1\",\"circulant\":{\"block\":4}},{\"match\":\"fc2\","
             "\"prune\":{\"scheme\":\"irregular\",\"rate\":2}}]}",
             "layers[1]: a spec with circulant rules (layers[0]) has circulant rules only");
    spec_bad("{\"layers\":[{\"match\":\"fc1\",\"circulant\":{\"block\":4}},{\"match\":\"fc2\","
             "\"circulant\":{\"block\":4,\"from\":\"scratch\"}}]}",
             "layers[1].circulant.from: every circulant rule of a spec takes the same path");
    spec_bad("{\"method\":\"magnitude\",\"layers\":[{\"circulant\":{\"block\":4}}]}",
             "layers[0].circulant: does not go with method \"magnitude\"");
    spec_bad("{\"progressive\":{\"stages\":2},\"layers\":[{\"circulant\":{\"block\":4}}]}",
             "does not go with progressive stages");
    spec_bad("{\"purify\":true,\"layers\":[{\"circulant\":{\"block\":4}}]}",
             "does not go with purify");
    spec_bad("{\"distill\":{},\"layers\":[{\"circulant\":{\"block\":4}}]}",
             "does not go with distill");
    spec_bad("{\"auto\":{\"rate\":4},\"layers\":[{\"circulant\":{\"block\":4}}]}",
             "does not go with auto");
    DP_ASSERT_NO_LEAKS();
}
