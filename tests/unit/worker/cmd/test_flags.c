/*
 * The commands' option tables: one table gives the defaults, the command
 * line, --help and the JSON a job may send the same types and bounds.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "tests/unit/test_util.h"
#include "worker/cmd/wk_flags.h"
#include "worker/cmd/wk_train.h"

struct opts {
    const char *name;
    long n, on;
    double x;
};

#define OFF(f) offsetof(struct opts, f)

static const struct wk_flag flags[] = {
    {"name", WK_STR, OFF(name), 0, 0, "abc", WK_FLAG_JOB, "a name"},
    {"n", WK_INT, OFF(n), 1, 10, "3", WK_FLAG_JOB, "a count"},
    {"on", WK_BOOL, OFF(on), 0, 1, NULL, 0, "a switch"},
    {"x", WK_FLOAT, OFF(x), 0, 1, "0.5", WK_FLAG_JOB, "a fraction"},
};

#define N_FLAGS (sizeof(flags) / sizeof(flags[0]))

Test(wk_flags, defaults_parse_and_help_share_the_table)
{
    struct opts o;
    memset(&o, 0, sizeof(o));
    wk_flags_defaults(flags, N_FLAGS, &o);
    cr_assert_str_eq(o.name, "abc");
    cr_assert_eq(o.n, 3);
    cr_assert_eq(o.on, 0);
    cr_assert_float_eq(o.x, 0.5, 0);
    char *argv[] = {"cmd", "--n=7", "--on", "--x", "0.25", NULL};
    cr_assert_eq(wk_flags_parse("cmd", flags, N_FLAGS, &o, 5, argv), 0);
    cr_assert_eq(o.n, 7);
    cr_assert_eq(o.on, 1);
    cr_assert_float_eq(o.x, 0.25, 0);
    char *bad[] = {"cmd", "--n", "11", NULL};
    cr_assert_eq(wk_flags_parse("cmd", flags, N_FLAGS, &o, 3, bad), -1);

    char buf[512] = "";
    FILE *f = fmemopen(buf, sizeof(buf) - 1, "w");
    cr_assert_not_null(f);
    wk_flags_help(f, flags, N_FLAGS);
    fclose(f);
    cr_assert(strstr(buf, "  --n             a count (default 3)\n") != NULL, "%s", buf);
    cr_assert(strstr(buf, "  --on            a switch\n") != NULL, "%s", buf);
}

Test(wk_flags, json_sets_only_job_fields_within_bounds)
{
    struct opts o;
    memset(&o, 0, sizeof(o));
    wk_flags_defaults(flags, N_FLAGS, &o);
    json_t *j = json_pack("{s:i, s:f, s:s}", "n", 4, "x", 0.75, "name", "z");
    struct dp_errinfo ei = {DP_OK, ""};
    cr_assert_eq(wk_flags_from_json(flags, N_FLAGS, WK_FLAG_JOB, j, "p", &o, &ei), DP_OK, "%s",
                 ei.msg);
    cr_assert_eq(o.n, 4);
    cr_assert_float_eq(o.x, 0.75, 0);
    cr_assert_str_eq(o.name, "z");
    json_decref(j);
    static const struct {
        const char *json, *needle;
    } cases[] = {
        {"{\"on\": true}", "p.on: not a known parameter"}, /* not in the job's scope */
        {"{\"n\": 11}", "p.n: must be an integer in [1, 10], got 11"},
        {"{\"n\": 2.5}", "p.n: must be an integer"},
        {"{\"x\": 2}", "p.x: must be a number in [0, 1], got 2"},
        {"{\"name\": 1}", "p.name: must be a string"},
        {"3", "p: must be an object"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        j = json_loads(cases[i].json, JSON_DECODE_ANY, NULL);
        cr_assert_eq(wk_flags_from_json(flags, N_FLAGS, WK_FLAG_JOB, j, "p", &o, &ei), DP_EINVAL);
        cr_assert(strstr(ei.msg, cases[i].needle) != NULL, "case %zu: %s", i, ei.msg);
        json_decref(j);
    }
    cr_assert_eq(wk_flags_from_json(flags, N_FLAGS, WK_FLAG_JOB, NULL, "p", &o, &ei), DP_OK);
    DP_ASSERT_NO_LEAKS();
}

Test(wk_flags, train_defaults_and_usage_checks)
{
    struct wk_train_opts o;
    wk_train_opts_init(&o);
    cr_assert_eq(o.epochs, 20);
    cr_assert_eq(o.batch, 64);
    cr_assert_str_eq(o.optim, "sgd");
    cr_assert_str_eq(o.sched, "cosine");
    cr_assert_float_eq(o.lr, 0.01, 0);
    cr_assert_eq(o.seed, 1);
    struct dp_errinfo ei = {DP_OK, ""};
    cr_assert_eq(wk_train_check(&o, &ei), DP_EINVAL);
    cr_assert(strstr(ei.msg, "--model and exactly one of") != NULL, "%s", ei.msg);
    o.model = "lenet5";
    o.synthetic = 8;
    cr_assert_eq(wk_train_check(&o, &ei), DP_OK);
    o.sched = "linear";
    cr_assert_eq(wk_train_check(&o, &ei), DP_EINVAL);
    cr_assert(strstr(ei.msg, "--sched: ") == ei.msg, "%s", ei.msg);
}
