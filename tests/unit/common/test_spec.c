/*
 * Job spec parsing: defaults, every field, and errors that name the field.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "common/spec.h"
#include "common/utf8.h"
#include "tests/unit/test_util.h"

Test(spec, defaults_and_rules)
{
    static const char text[] =
        "{\"version\":1,\"method\":\"magnitude\",\"seed\":7,\"admm\":{\"iters\":3,"
        "\"epochs_per_iter\":1,\"rho\":0.01,\"rho_factor\":1.5,\"rho_max\":2,\"lr\":0.02},"
        "\"retrain\":{\"epochs\":2,\"lr\":0.005},\"magnitude\":{\"steps\":5},"
        "\"optimizer\":{\"momentum\":0.8,\"weight_decay\":0},"
        "\"layers\":[{\"match\":\"conv*\",\"prune\":{\"scheme\":\"irregular\",\"rate\":20}},"
        "{\"match\":\"fc?\",\"prune\":{\"scheme\":\"nm\",\"n\":1,\"m\":4},"
        "\"quant\":{\"scheme\":\"kbit\",\"bits\":3,\"per_channel\":true},\"rho\":0.5}]}";
    struct dp_spec s;
    struct dp_errinfo ei = {0};
    cr_assert_eq(dp_spec_parse(text, strlen(text), &s, &ei), DP_OK, "%s", ei.msg);
    cr_assert_eq(s.method, DP_SPEC_MAGNITUDE);
    cr_assert_eq(s.seed, 7u);
    cr_assert_eq(s.admm_iters, 3);
    cr_assert_eq(s.retrain_epochs, 2);
    cr_assert_eq(s.magnitude_steps, 5);
    cr_assert_eq(dp_spec_epochs(&s), 5);
    cr_assert_eq(s.n_rules, 2);
    const struct dp_spec_rule *r = dp_spec_rule_for(&s, "conv2");
    cr_assert_not_null(r);
    cr_assert_str_eq(r->prune->name, "irregular");
    cr_assert_null(r->quant);
    cr_assert_float_eq(r->params.rate, 20.0, 1e-12);
    cr_assert_lt(r->rho, 0.0, "rho inherits the global one");
    r = dp_spec_rule_for(&s, "fc1");
    cr_assert_str_eq(r->prune->name, "nm");
    cr_assert_str_eq(r->quant->name, "kbit");
    cr_assert_eq(r->params.n, 1);
    cr_assert_eq(r->params.m, 4);
    cr_assert_eq(r->params.bits, 3);
    cr_assert(r->params.per_channel);
    cr_assert(r->params.keep_zeros, "pruned zeros stay zero under the quantizer");
    cr_assert_null(dp_spec_rule_for(&s, "fc10"));
    DP_ASSERT_NO_LEAKS();
}

Test(spec, validation_budget_convergence_and_distillation)
{
    static const char text[] =
        "{\"seed\":3,\"validation\":{\"fraction\":0.2},\"budget\":{\"epochs\":30},"
        "\"admm\":{\"target_residual\":0.05,\"support_change\":0.002},"
        "\"distill\":{\"temperature\":2},\"retrain\":{\"keep_best\":true},"
        "\"auto\":{\"rate\":40,\"allocation\":\"global\"},"
        "\"layers\":[{\"prune\":{\"scheme\":\"irregular\"}}]}";
    struct dp_spec s;
    struct dp_errinfo ei = {0};
    cr_assert_eq(dp_spec_parse(text, strlen(text), &s, &ei), DP_OK, "%s", ei.msg);
    cr_assert_float_eq(s.val_fraction, 0.2, 1e-12);
    cr_assert_eq(s.val_seed, 3u, "the validation seed defaults to the spec's");
    cr_assert_eq(s.budget_epochs, 30);
    cr_assert_eq(dp_spec_epochs(&s), 30, "the budget is every epoch of the run");
    cr_assert_float_eq(s.target_residual, 0.05, 1e-12);
    cr_assert_float_eq(s.support_change, 0.002, 1e-12);
    cr_assert_float_eq(s.distill_temperature, 2.0, 1e-12);
    cr_assert_float_eq(s.distill_weight, 0.5, 1e-12);
    cr_assert_eq(s.auto_alloc, DP_SPEC_AUTO_GLOBAL);
    cr_assert(s.retrain_keep_best);
    const uint64_t d = dp_spec_digest(&s);
    s.val_seed = 4;
    cr_assert_neq(dp_spec_digest(&s), d, "another held-out split is another run");

    static const char plain[] = "{\"layers\":[{\"quant\":{\"scheme\":\"binary\"}}]}";
    cr_assert_eq(dp_spec_parse(plain, strlen(plain), &s, &ei), DP_OK, "%s", ei.msg);
    cr_assert_float_eq(s.val_fraction, 0.1, 1e-12);
    cr_assert_eq(s.budget_epochs, 0);
    cr_assert_eq(dp_spec_epochs(&s), 16);
    cr_assert_float_eq(s.target_residual, 0.0, 1e-12);
    cr_assert_float_eq(s.distill_weight, 0.0, 1e-12, "no distillation unless asked");
    cr_assert_eq(s.auto_alloc, DP_SPEC_AUTO_SENSITIVITY);
    DP_ASSERT_NO_LEAKS();
}

Test(spec, latency_objective_keeps_its_device_selector)
{
    struct dp_spec s;
    struct dp_errinfo ei = {0};
    static const char t[] = "{\"auto\":{\"rate\":8,\"objective\":\"latency\",\"device\":{"
                            "\"name\":\"pi5-*\",\"isa\":\"neon\"}},\"layers\":[{\"prune\":{"
                            "\"scheme\":\"irregular\"}}]}";
    cr_assert_eq(dp_spec_parse(t, strlen(t), &s, &ei), DP_OK, "%s", ei.msg);
    cr_assert_eq(s.auto_objective, DP_SPEC_OBJ_LATENCY);
    cr_assert_str_eq(s.auto_device, "{\"isa\":\"neon\",\"name\":\"pi5-*\"}");
    cr_assert_str_eq(dp_spec_objective_name(s.auto_objective), "latency");
    DP_ASSERT_NO_LEAKS();
}

/* optimizer.type picks Adam for every training phase (the recurrent
 * benchmarks need it); SGD specs keep their digest. */
Test(spec, optimizer_type)
{
    struct dp_spec s, g;
    struct dp_errinfo ei = {0};
    static const char a[] = "{\"optimizer\":{\"type\":\"adam\"},\"layers\":[{\"prune\":{"
                            "\"scheme\":\"irregular\",\"rate\":2}}]}";
    static const char b[] = "{\"optimizer\":{\"type\":\"sgd\"},\"layers\":[{\"prune\":{"
                            "\"scheme\":\"irregular\",\"rate\":2}}]}";
    static const char c[] = "{\"layers\":[{\"prune\":{\"scheme\":\"irregular\",\"rate\":2}}]}";
    cr_assert_eq(dp_spec_parse(a, strlen(a), &s, &ei), DP_OK, "%s", ei.msg);
    cr_assert_eq(s.adam, 1);
    cr_assert_eq(dp_spec_parse(b, strlen(b), &g, &ei), DP_OK, "%s", ei.msg);
    cr_assert_eq(g.adam, 0);
    cr_assert_neq(dp_spec_digest(&s), dp_spec_digest(&g));
    struct dp_spec d;
    cr_assert_eq(dp_spec_parse(c, strlen(c), &d, &ei), DP_OK, "%s", ei.msg);
    cr_assert_eq(dp_spec_digest(&d), dp_spec_digest(&g));
    static const char bad[] = "{\"optimizer\":{\"type\":\"rmsprop\"},\"layers\":[{\"prune\":{"
                              "\"scheme\":\"irregular\",\"rate\":2}}]}";
    cr_assert_eq(dp_spec_parse(bad, strlen(bad), &d, &ei), DP_EINVAL);
    cr_assert(strstr(ei.msg, "spec.optimizer.type") != NULL, "%s", ei.msg);
    DP_ASSERT_NO_LEAKS();
}

struct spec_bad {
    const char *text;
    const char *needle; /* the message must name this */
};

Test(spec, errors_name_the_field)
{
    static const struct spec_bad cases[] = {
        {"{", "not valid JSON"},
        {"[]", "spec: must be an object"},
        {"{\"layers\":[]}", "spec.layers"},
        {"{\"verison\":1,\"layers\":[{\"prune\":{\"scheme\":\"irregular\",\"rate\":2}}]}",
         "unknown field 'verison'"},
        {"{\"version\":2,\"layers\":[{\"prune\":{\"scheme\":\"irregular\",\"rate\":2}}]}",
         "spec.version"},
        {"{\"method\":\"sgd\",\"layers\":[{\"prune\":{\"scheme\":\"irregular\",\"rate\":2}}]}",
         "spec.method"},
        {"{\"admm\":{\"iters\":\"3\"},\"layers\":[{\"prune\":{\"scheme\":\"irregular\",\"rate\":2}}"
         "]}",
         "spec.admm.iters: must be an integer"},
        {"{\"admm\":{\"rho\":-1},\"layers\":[{\"prune\":{\"scheme\":\"irregular\",\"rate\":2}}]}",
         "spec.admm.rho"},
        {"{\"layers\":[{\"match\":\"x\"}]}", "layers[0]: needs"},
        {"{\"layers\":[{\"prune\":{\"scheme\":\"random\",\"rate\":2}}]}",
         "layers[0].prune.scheme: 'random'"},
        {"{\"layers\":[{\"prune\":{\"scheme\":\"kbit\"}}]}", "layers[0].prune.scheme"},
        {"{\"layers\":[{\"prune\":{\"scheme\":\"irregular\"}}]}", "layers[0].prune.rate: required"},
        {"{\"layers\":[{\"prune\":{\"scheme\":\"irregular\",\"rate\":0.5}}]}",
         "layers[0].prune.rate"},
        {"{\"layers\":[{\"prune\":{\"scheme\":\"nm\",\"n\":5,\"m\":4}}]}", "n (5) must not exceed"},
        {"{\"layers\":[{\"quant\":{\"scheme\":\"kbit\",\"bits\":9}}]}", "layers[0].quant.bits"},
        {"{\"layers\":[{\"quant\":{\"scheme\":\"kbit\",\"per_channel\":1}}]}",
         "layers[0].quant.per_channel: must be true or false"},
        {"{\"layers\":[{\"match\":\"\",\"quant\":{\"scheme\":\"binary\"}}]}", "layers[0].match"},
        {"{\"layers\":[{\"quant\":{\"scheme\":\"binary\",\"rate\":3}}]}", "unknown field 'rate'"},
        {"{\"layers\":[{\"prune\":{\"scheme\":\"irregular\",\"rate\":2}},3]}", "layers[1]"},
        {"{\"validation\":{\"fraction\":0.9},\"layers\":[{\"quant\":{\"scheme\":\"binary\"}}]}",
         "spec.validation.fraction"},
        {"{\"validation\":{\"size\":9},\"layers\":[{\"quant\":{\"scheme\":\"binary\"}}]}",
         "spec.validation: unknown field 'size'"},
        {"{\"budget\":{},\"layers\":[{\"quant\":{\"scheme\":\"binary\"}}]}",
         "spec.budget.epochs: required"},
        {"{\"budget\":{\"epochs\":5},\"layers\":[{\"quant\":{\"scheme\":\"binary\"}}]}",
         "spec.budget.epochs: 5 epochs over 1 stages"},
        {"{\"method\":\"magnitude\",\"budget\":{\"epochs\":3},\"layers\":[{\"quant\":{"
         "\"scheme\":\"binary\"}}]}",
         "cannot cover 4 magnitude steps"},
        {"{\"admm\":{\"target_residual\":2},\"layers\":[{\"quant\":{\"scheme\":\"binary\"}}]}",
         "spec.admm.target_residual"},
        {"{\"retrain\":{\"keep_best\":1},\"layers\":[{\"quant\":{\"scheme\":\"binary\"}}]}",
         "spec.retrain.keep_best: must be true or false"},
        {"{\"distill\":{\"temperature\":0.5},\"layers\":[{\"quant\":{\"scheme\":\"binary\"}}]}",
         "spec.distill.temperature"},
        {"{\"auto\":{\"rate\":4,\"allocation\":\"best\"},\"layers\":[{\"prune\":{\"scheme\":"
         "\"irregular\"}}]}",
         "spec.auto.allocation"},
        {"{\"auto\":{\"rate\":4,\"allocation\":\"global\"},\"layers\":[{\"prune\":{"
         "\"scheme\":\"filter\"}}]}",
         "auto.allocation \"global\" needs irregular"},
        {"{\"auto\":{\"rate\":4,\"objective\":\"latency\"},\"layers\":[{\"prune\":{"
         "\"scheme\":\"irregular\"}}]}",
         "spec.auto.device: required with auto.objective \"latency\""},
        {"{\"auto\":{\"rate\":4,\"device\":\"pi5\"},\"layers\":[{\"prune\":{"
         "\"scheme\":\"irregular\"}}]}",
         "spec.auto.device: only with auto.objective \"latency\""},
        {"{\"auto\":{\"rate\":4,\"objective\":\"latency\",\"device\":[1]},\"layers\":[{"
         "\"prune\":{\"scheme\":\"irregular\"}}]}",
         "spec.auto.device: required"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct dp_spec s;
        struct dp_errinfo ei = {0};
        enum dp_err err = dp_spec_parse(cases[i].text, strlen(cases[i].text), &s, &ei);
        cr_assert_neq(err, DP_OK, "case %zu accepted: %s", i, cases[i].text);
        cr_assert(strstr(ei.msg, cases[i].needle) != NULL, "case %zu: '%s' lacks '%s'", i, ei.msg,
                  cases[i].needle);
    }
    DP_ASSERT_NO_LEAKS();
}

Test(spec, missing_file_and_size_limit)
{
    struct dp_spec s;
    struct dp_errinfo ei = {0};
    cr_assert_eq(dp_spec_load("/nonexistent/spec.json", &s, &ei), DP_ENOENT);
    cr_assert(strstr(ei.msg, "/nonexistent/spec.json") != NULL);
    cr_assert_eq(dp_spec_parse("{}", DP_SPEC_MAX_BYTES + 1, &s, &ei), DP_ETOOBIG);
    DP_ASSERT_NO_LEAKS();
}

/* Found by tests/fuzz/fuzz_json.c: a long unknown key (or scheme name) of
 * multi-byte characters was cut by "%.64s" inside a character, and the
 * message, which the server puts in a JSON answer, was not UTF-8 (jansson
 * refused it and the server dropped the connection without an answer). */
Test(spec, clipped_names_stay_utf8)
{
    char key[200] = "x", scheme[200] = "x";
    for (int i = 0; i < 40; i++) {
        strcat(key, "\xc3\xa9");        /* é: the 64th byte is inside one */
        strcat(scheme, "\xe2\x82\xac"); /* € */
    }
    char text[600];
    snprintf(text, sizeof(text), "{\"%s\":1}", key);
    struct dp_spec s;
    struct dp_errinfo ei = {0};
    cr_assert_eq(dp_spec_parse(text, strlen(text), &s, &ei), DP_EINVAL);
    cr_assert(strstr(ei.msg, "unknown field 'x\xc3\xa9") != NULL, "%s", ei.msg);
    cr_assert(dp_utf8_valid(ei.msg), "not UTF-8: %s", ei.msg);
    snprintf(text, sizeof(text), "{\"layers\":[{\"prune\":{\"scheme\":\"%s\"}}]}", scheme);
    cr_assert_eq(dp_spec_parse(text, strlen(text), &s, &ei), DP_EINVAL);
    cr_assert(strstr(ei.msg, "is not one of") != NULL, "%s", ei.msg);
    cr_assert(dp_utf8_valid(ei.msg), "not UTF-8: %s", ei.msg);
    /* jansson's message quotes the input near the error, bytes as they are. */
    const char *bad = "{\"kkkkkkkk\\u0\xc3\":1}";
    cr_assert_eq(dp_spec_parse(bad, strlen(bad), &s, &ei), DP_EFORMAT);
    cr_assert(strstr(ei.msg, "not valid JSON") != NULL, "%s", ei.msg);
    cr_assert(dp_utf8_valid(ei.msg), "not UTF-8: %s", ei.msg);
    DP_ASSERT_NO_LEAKS();
}
