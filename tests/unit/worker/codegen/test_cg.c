/*
 * The compiler end to end: models compiled into a temporary bundle, the
 * bundle built with the system's cc (make) and its bench run, which checks
 * the generated code's outputs against the engine's (reference.bin, 1e-4
 * relative) and exits 1 otherwise. Plus the plan's choices, determinism
 * and the error for an op the compiler cannot handle.
 */
#define _GNU_SOURCE /* memmem */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "common/alloc.h"
#include "common/file.h"
#include "tests/unit/test_util.h"
#include "tests/unit/worker/codegen/cg_fixture.h"
#include "worker/codegen/cg_compile.h"
#include "worker/codegen/cg_plan.h"
#include "worker/codegen/cg_schedfile.h"
#include "worker/codegen/cg_tune.h"
#include "worker/compress/proj.h"
#include "worker/nn/arch.h"

/* Compiles m into a fresh directory (dir), builds it and runs bench once;
 * returns bench's exit status. */
static int cg_test_build_run_opts(struct dp_model *m, const struct cg_compile_opts *o, char *dir,
                                  size_t cap)
{
    const char *target = o->target;
    dp_test_tmpdir_make(dir, cap, o->name);
    struct dp_errinfo ei = {DP_OK, ""};
    enum dp_err err = cg_compile(m, dir, o, NULL, &ei);
    cr_assert_eq(err, DP_OK, "%s", ei.msg);
    char cmd[1024];
    snprintf(cmd, sizeof(cmd), "make -s -C %s CC=cc > %s/build.log 2>&1", dir, dir);
    cr_assert_eq(system(cmd), 0, "make failed: see %s/build.log", dir);
    snprintf(cmd, sizeof(cmd),
             "%s/bench --runs 1 --warmup 0 --threads 2 --batch 3 > %s/bench.json 2> %s/bench.err",
             dir, dir, dir);
    int rc = system(cmd);
    /* Each ISA path this CPU runs passes the reference check when forced,
     * by bench's --isa and by MODEL_ISA; a path it cannot run, or none of
     * the bundle's, is refused. */
    static const char *const isas[] = {"avx512", "avx2", "generic", "plain", "sse9"};
    int n_ran = 0;
    for (size_t i = 0; i < sizeof(isas) / sizeof(isas[0]) && rc == 0; i++) {
        const int carried = strcmp(target, "native") == 0 ? i < 3 : i == 3;
        const int want = carried && cg_tune_cpu_runs(isas[i]) ? 0 : 1;
        snprintf(cmd, sizeof(cmd),
                 "%s/bench --runs 1 --warmup 0 --threads 2 --batch 2 --isa %s > %s/bench-%s.json "
                 "2>> %s/bench.err",
                 dir, isas[i], dir, isas[i], dir);
        const int got = WEXITSTATUS(system(cmd));
        cr_expect_eq(got, want, "bench --isa %s: exit %d, want %d (see %s/bench.err)", isas[i], got,
                     want, dir);
        snprintf(cmd, sizeof(cmd),
                 "MODEL_ISA=%s %s/bench --runs 1 --warmup 0 --batch 1 > %s/bench-env.json "
                 "2>> %s/bench.err",
                 isas[i], dir, dir, dir);
        cr_expect_eq(WEXITSTATUS(system(cmd)), want, "MODEL_ISA=%s", isas[i]);
        if (want == 0) {
            /* bench says which path ran. */
            char path[512], needle[64];
            snprintf(path, sizeof(path), "%s/bench-%s.json", dir, isas[i]);
            snprintf(needle, sizeof(needle), "\"isa\":\"%s\"", isas[i]);
            unsigned char *text = NULL;
            size_t len = 0;
            struct dp_errinfo e2 = {DP_OK, ""};
            cr_assert_eq(dp_file_read(path, path, 1 << 20, &text, &len, &e2), DP_OK, "%s", e2.msg);
            cr_expect(memmem(text, len, needle, strlen(needle)) != NULL, "%s lacks %s", path,
                      needle);
            dp_free(text);
            n_ran++;
        }
    }
    cr_expect_geq(n_ran, 1, "no path ran");
    /* Every generated file must have compiled without a warning. */
    snprintf(cmd, sizeof(cmd), "%s/build.log", dir);
    FILE *f = fopen(cmd, "r");
    cr_assert_not_null(f);
    char line[512];
    cr_assert_null(fgets(line, sizeof(line), f), "the bundle's build printed: %s", line);
    fclose(f);
    return rc;
}

static int cg_test_build_run(struct dp_model *m, const char *tag, const char *target, char *dir,
                             size_t cap)
{
    const struct cg_compile_opts o = {tag, "test", target, 2, 0.0, NULL, NULL};
    return cg_test_build_run_opts(m, &o, dir, cap);
}

static void cg_test_cleanup(const char *dir)
{
    char cmd[1024];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
}

/* The step of layer `name` in p. */
static const struct cg_step *cg_test_step(const struct cg_plan *p, const char *name)
{
    for (int k = 0; k < p->n_steps; k++)
        if (strcmp(p->m->layers[p->steps[k].layer].name, name) == 0)
            return &p->steps[k];
    cr_assert_fail("no step for layer %s", name);
    return NULL;
}

Test(cg, resnet20_pattern_connectivity_matches_the_engine, .timeout = 120)
{
    struct dp_errinfo ei = {DP_OK, ""};
    struct dp_model *m = NULL;
    cr_assert_eq(cg_fixture_model("resnet20-cifar", 3, 32, 32, 8, 3.6, &m, &ei), DP_OK, "%s",
                 ei.msg);
    struct cg_plan *p = NULL;
    cr_assert_eq(cg_plan_build(m, &p, &ei), DP_OK, "%s", ei.msg);
    /* Every 3x3 conv is FKW with at most 8 patterns of 4 taps, BN folded and ReLU fused. */
    const struct cg_step *s = cg_test_step(p, "layer2.0.conv1");
    cr_assert_eq(s->fmt, CG_FMT_FKW);
    cr_assert_eq(s->g.sh, 2, "a stride-2 pattern layer");
    cr_assert_leq(s->n_patterns, 8);
    cr_assert_eq(s->n_nonzero, s->n_kernels_kept * 4);
    cr_assert_geq(s->bn_layer, 0);
    cr_assert_eq(s->act, CG_ACT_RELU);
    cr_assert_eq(cg_test_step(p, "layer2.0.shortcut.conv")->fmt, CG_FMT_DENSE);
    cr_assert_lt(p->macs_nonzero * 6, p->macs_dense, "about 8x fewer MACs");
    cg_plan_free(p);
    char dir[256];
    cr_assert_eq(cg_test_build_run(m, "cg-r20", "native", dir, sizeof(dir)), 0,
                 "bench failed (see %s/bench.err)", dir);
    cg_test_cleanup(dir);
    dp_model_free(m);
    DP_ASSERT_NO_LEAKS();
}

Test(cg, lenet5_dense_matches_the_engine, .timeout = 120)
{
    struct dp_errinfo ei = {DP_OK, ""};
    struct dp_model *m = NULL;
    cr_assert_eq(cg_fixture_model("lenet5", 1, 28, 28, 0, 0, &m, &ei), DP_OK, "%s", ei.msg);
    char dir[256];
    cr_assert_eq(cg_test_build_run(m, "cg-lenet", "portable", dir, sizeof(dir)), 0,
                 "bench failed (see %s/bench.err)", dir);
    cg_test_cleanup(dir);
    dp_model_free(m);
    DP_ASSERT_NO_LEAKS();
}

/*
 * A small model with every other step kind and awkward shapes: a 9x9
 * input, a standalone BN, ReLU6, a stride-2 pattern layer on an odd map,
 * padded max pooling, average pooling, dropout, flatten, two linear layers.
 */
static struct dp_model *cg_test_mixed(void)
{
    struct dp_errinfo ei = {DP_OK, ""};
    struct dp_model *m = dp_model_new(3, 9, 9);
    cr_assert_not_null(m);
    int x = dp_model_add_bn2d(m, "bn0", DP_MODEL_INPUT, &ei);
    x = dp_model_add_conv2d(m, "conv1", x, 8, 3, 1, 1, 1, 1, &ei);
    x = dp_model_add_bn2d(m, "bn1", x, &ei);
    x = dp_model_add_unary(m, "relu6", DP_OP_RELU6, x, &ei);
    x = dp_model_add_conv2d(m, "conv2", x, 12, 3, 2, 1, 1, 0, &ei);
    x = dp_model_add_unary(m, "relu2", DP_OP_RELU, x, &ei);
    x = dp_model_add_pool(m, "maxpool", DP_OP_MAXPOOL, x, 3, 2, 1, &ei);
    x = dp_model_add_pool(m, "avgpool", DP_OP_AVGPOOL, x, 2, 1, 1, &ei);
    x = dp_model_add_unary(m, "flatten", DP_OP_FLATTEN, x, &ei);
    x = dp_model_add_linear(m, "fc1", x, 16, &ei);
    x = dp_model_add_unary(m, "relu3", DP_OP_RELU, x, &ei);
    x = dp_model_add_linear(m, "fc2", x, 5, &ei);
    cr_assert_geq(x, 0, "%s", ei.msg);
    cr_assert_eq(dp_model_finalize(m, &ei), DP_OK, "%s", ei.msg);
    nn_arch_init(m, 7);
    cg_fixture_bn_randomise(m);
    /* conv2: a pattern per kernel from a library of 3, every third kernel pruned. */
    static const uint16_t lib[3] = {0x0ba, 0x1b0, 0x032};
    float *w = dp_param_data(m, dp_model_param_find(m, "conv2.weight"));
    for (int k = 0; k < 12 * 8; k++)
        for (int t = 0; t < 9; t++)
            if (k % 3 == 2 || !((lib[k % 3 == 0 ? (k / 3) % 3 : 1] >> t) & 1u))
                w[k * 9 + t] = 0.0f;
    return m;
}

Test(cg, mixed_ops_stride2_pattern_and_bn_match_the_engine, .timeout = 120)
{
    struct dp_model *m = cg_test_mixed();
    struct dp_errinfo ei = {DP_OK, ""};
    struct cg_plan *p = NULL;
    cr_assert_eq(cg_plan_build(m, &p, &ei), DP_OK, "%s", ei.msg);
    cr_assert_eq(cg_test_step(p, "bn0")->kind, CG_K_BN, "a BN without a conv before it stays");
    const struct cg_step *c1 = cg_test_step(p, "conv1");
    cr_assert_eq(c1->fmt, CG_FMT_DENSE);
    cr_assert_eq(c1->act, CG_ACT_CLIP);
    cr_assert_eq(c1->hi, 6.0f);
    const struct cg_step *c2 = cg_test_step(p, "conv2");
    cr_assert_eq(c2->fmt, CG_FMT_FKW);
    cr_assert_eq(c2->n_patterns, 3);
    cr_assert_eq(c2->n_kernels_kept, 64);
    cg_plan_free(p);
    char dir[256];
    cr_assert_eq(cg_test_build_run(m, "cg-mixed", "native", dir, sizeof(dir)), 0,
                 "bench failed (see %s/bench.err)", dir);
    cg_test_cleanup(dir);
    dp_model_free(m);
    DP_ASSERT_NO_LEAKS();
}

Test(cg, irregular_sparsity_is_a_recorded_dense_fallback)
{
    struct dp_model *m = cg_test_mixed();
    float *w = dp_param_data(m, dp_model_param_find(m, "fc1.weight"));
    for (int i = 0; i < 16 * 12 * 4 * 4; i++) /* (16, 12x4x4) */
        if (i % 3 != 0)
            w[i] = 0.0f;
    struct dp_errinfo ei = {DP_OK, ""};
    struct cg_plan *p = NULL;
    cr_assert_eq(cg_plan_build(m, &p, &ei), DP_OK, "%s", ei.msg);
    const struct cg_step *s = cg_test_step(p, "fc1");
    cr_assert_eq(s->fmt, CG_FMT_IRREGULAR);
    cr_assert_str_eq(cg_format_name(s->fmt), "irregular: dense fallback");
    cg_plan_free(p);
    dp_model_free(m);
    DP_ASSERT_NO_LEAKS();
}

Test(cg, unsupported_op_is_an_error_naming_the_layer)
{
    struct dp_errinfo ei = {DP_OK, ""};
    struct dp_model *m = dp_model_new(3, 8, 8);
    int a = dp_model_add_conv2d(m, "a", DP_MODEL_INPUT, 4, 3, 1, 1, 1, 1, &ei);
    int b = dp_model_add_conv2d(m, "b", DP_MODEL_INPUT, 4, 3, 1, 1, 1, 1, &ei);
    struct dp_op_attrs at = {0};
    at.axis = 1;
    const int in[2] = {a, b};
    cr_assert_geq(dp_model_add_layer(m, "joined", DP_OP_CONCAT, in, 2, &at, &ei), 0, "%s", ei.msg);
    cr_assert_eq(dp_model_finalize(m, &ei), DP_OK, "%s", ei.msg);
    char dir[256];
    dp_test_tmpdir_make(dir, sizeof(dir), "cg-unsup");
    const struct cg_compile_opts o = {"x", "x", "native", 1, 0.0, NULL, NULL};
    cr_assert_eq(cg_compile(m, dir, &o, NULL, &ei), DP_EUNSUPPORTED);
    cr_assert(strstr(ei.msg, "layer 'joined'") != NULL, "%s", ei.msg);
    cr_assert(strstr(ei.msg, "concat") != NULL, "%s", ei.msg);
    dp_model_free(m);

    /* A grouped convolution too. */
    m = dp_model_new(4, 8, 8);
    cr_assert_geq(dp_model_add_conv2d(m, "dw", DP_MODEL_INPUT, 4, 3, 1, 1, 4, 1, &ei), 0);
    cr_assert_eq(dp_model_finalize(m, &ei), DP_OK, "%s", ei.msg);
    cr_assert_eq(cg_compile(m, dir, &o, NULL, &ei), DP_EUNSUPPORTED);
    cr_assert(strstr(ei.msg, "layer 'dw'") != NULL, "%s", ei.msg);
    dp_model_free(m);
    dp_test_tmpdir_remove(dir);
    DP_ASSERT_NO_LEAKS();
}

/* Layer names come from the user's model and are printed into model.c's
 * comments and strings: one that closes a comment must not put its text
 * into the code (the bundle builds without a warning and matches). */
Test(cg, layer_names_cannot_escape_the_generated_comments, .timeout = 60)
{
    struct dp_errinfo ei = {DP_OK, ""};
    struct dp_model *m = dp_model_new(1, 4, 4);
    cr_assert_not_null(m);
    int x = dp_model_add_conv2d(m, "c */ #error injected\n/* \\", DP_MODEL_INPUT, 2, 3, 1, 1, 1, 1,
                                &ei);
    x = dp_model_add_unary(m, "r /* \"q\" */", DP_OP_RELU, x, &ei);
    x = dp_model_add_unary(m, "flat", DP_OP_FLATTEN, x, &ei);
    x = dp_model_add_linear(m, "fc*/", x, 3, &ei);
    cr_assert_geq(x, 0, "%s", ei.msg);
    cr_assert_eq(dp_model_finalize(m, &ei), DP_OK, "%s", ei.msg);
    nn_arch_init(m, 3);
    char dir[256];
    cr_assert_eq(cg_test_build_run(m, "cg-names", "portable", dir, sizeof(dir)), 0,
                 "bench failed (see %s/bench.err)", dir);
    cg_test_cleanup(dir);
    dp_model_free(m);
    DP_ASSERT_NO_LEAKS();
}

/* The runtime's softmax normalises over all of a sample's values: a
 * softmax over H and W of a Cx1x1 map (1 everywhere) must be refused, not
 * compiled as a softmax over C; over C it is the runtime's. */
Test(cg, softmax_over_other_axes_is_an_error_naming_the_layer)
{
    static const struct {
        int axis, axis_end;
        enum dp_err want;
    } cases[] = {{2, 3, DP_EUNSUPPORTED}, {3, 3, DP_EUNSUPPORTED}, {1, 1, DP_OK}, {1, 3, DP_OK}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct dp_errinfo ei = {DP_OK, ""};
        struct dp_model *m = dp_model_new(4, 1, 1);
        cr_assert_not_null(m);
        struct dp_op_attrs at = {0};
        at.axis = cases[i].axis;
        at.axis_end = cases[i].axis_end;
        const int in = DP_MODEL_INPUT;
        cr_assert_geq(dp_model_add_layer(m, "sm", DP_OP_SOFTMAX, &in, 1, &at, &ei), 0, "%s",
                      ei.msg);
        cr_assert_eq(dp_model_finalize(m, &ei), DP_OK, "%s", ei.msg);
        struct cg_plan *p = NULL;
        cr_assert_eq(cg_plan_build(m, &p, &ei), cases[i].want, "axes [%d, %d]: %s", cases[i].axis,
                     cases[i].axis_end, ei.msg);
        if (cases[i].want != DP_OK)
            cr_assert(strstr(ei.msg, "layer 'sm'") != NULL, "%s", ei.msg);
        cg_plan_free(p);
        dp_model_free(m);
    }
    DP_ASSERT_NO_LEAKS();
}

static void cg_test_same_file(const char *d1, const char *d2, const char *name)
{
    char p1[512], p2[512];
    snprintf(p1, sizeof(p1), "%s/%s", d1, name);
    snprintf(p2, sizeof(p2), "%s/%s", d2, name);
    unsigned char *a = NULL, *b = NULL;
    size_t na = 0, nb = 0;
    struct dp_errinfo ei = {DP_OK, ""};
    cr_assert_eq(dp_file_read(p1, p1, 1 << 28, &a, &na, &ei), DP_OK, "%s", ei.msg);
    cr_assert_eq(dp_file_read(p2, p2, 1 << 28, &b, &nb, &ei), DP_OK, "%s", ei.msg);
    cr_assert(na == nb && memcmp(a, b, na) == 0, "%s differs between two compiles", name);
    dp_free(a);
    dp_free(b);
}

Test(cg, two_compiles_give_identical_bundles, .timeout = 60)
{
    struct dp_errinfo ei = {DP_OK, ""};
    struct dp_model *m = NULL;
    cr_assert_eq(cg_fixture_model("resnet20-cifar", 3, 32, 32, 8, 3.6, &m, &ei), DP_OK, "%s",
                 ei.msg);
    char d1[256], d2[256];
    dp_test_tmpdir_make(d1, sizeof(d1), "cg-det1");
    dp_test_tmpdir_make(d2, sizeof(d2), "cg-det2");
    const struct cg_compile_opts o = {"r20", "r20.safetensors", "native", 2, 0.0, NULL, NULL};
    cr_assert_eq(cg_compile(m, d1, &o, NULL, &ei), DP_OK, "%s", ei.msg);
    cr_assert_eq(cg_compile(m, d2, &o, NULL, &ei), DP_OK, "%s", ei.msg);
    static const char *const files[] = {"model.h",       "model.c",  "weights.bin",  "bench.c",
                                        "reference.bin", "Makefile", "schedule.json"};
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++)
        cg_test_same_file(d1, d2, files[i]);
    dp_test_tmpdir_remove(d1);
    dp_test_tmpdir_remove(d2);
    dp_model_free(m);
    DP_ASSERT_NO_LEAKS();
}

static const char *const cg_bundle_files[] = {
    "model.h", "model.c", "weights.bin", "bench.c", "Makefile", "reference.bin", "schedule.json"};

/* --tune for a few seconds, then --schedule with the schedule.json it
 * wrote: the same bundle, byte for byte, without tuning (the file's
 * threads win over the options'). */
Test(cg, a_tuned_schedule_reproduces_its_bundle, .timeout = 300)
{
    struct dp_model *m = cg_test_mixed();
    struct dp_errinfo ei = {DP_OK, ""};
    char d1[256], d2[256], sp[512];
    dp_test_tmpdir_make(d1, sizeof(d1), "cg-tune1");
    dp_test_tmpdir_make(d2, sizeof(d2), "cg-tune2");
    struct cg_compile_opts o = {"mixed", "mixed", "native", 2, 3.0, NULL, NULL};
    struct cg_compile_summary sum;
    cr_assert_eq(cg_compile(m, d1, &o, &sum, &ei), DP_OK, "%s", ei.msg);
    cr_assert_geq(sum.tune.rounds, 1, "at least the cost model's schedule is timed");
    cr_assert_gt(sum.tune.default_p50, 0.0);
    snprintf(sp, sizeof(sp), "%s/schedule.json", d1);
    o.tune_s = 0.0;
    o.schedule = sp;
    o.threads = sum.threads == 1 ? 2 : 1;
    cr_assert_eq(cg_compile(m, d2, &o, NULL, &ei), DP_OK, "%s", ei.msg);
    for (size_t i = 0; i < sizeof(cg_bundle_files) / sizeof(cg_bundle_files[0]); i++)
        cg_test_same_file(d1, d2, cg_bundle_files[i]);
    dp_test_tmpdir_remove(d1);
    dp_test_tmpdir_remove(d2);
    dp_model_free(m);
    DP_ASSERT_NO_LEAKS();
}

/* Writes text to path. */
static void cg_test_write(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    cr_assert_eq(fputs(text, f) >= 0, 1);
    cr_assert_eq(fclose(f), 0);
}

/* Replaces the first `from` in text (a dp_malloc'd string) with `to`. */
static char *cg_test_subst(const char *text, const char *from, const char *to)
{
    const char *at = strstr(text, from);
    cr_assert_not_null(at, "no %s in the schedule", from);
    const size_t n = strlen(text) - strlen(from) + strlen(to) + 1;
    char *out = dp_malloc(n);
    cr_assert_not_null(out);
    snprintf(out, n, "%.*s%s%s", (int)(at - text), text, to, at + strlen(from));
    return out;
}

/* A schedule file other than the cost model's is followed (the bundle's
 * code differs and still matches the engine on every path), and one that
 * does not fit the model is refused naming the field. */
Test(cg, a_schedule_file_is_followed_and_checked, .timeout = 300)
{
    struct dp_model *m = cg_test_mixed();
    struct dp_errinfo ei = {DP_OK, ""};
    struct cg_plan *p = NULL;
    cr_assert_eq(cg_plan_build(m, &p, &ei), DP_OK, "%s", ei.msg);
    struct cg_schedule sch;
    cr_assert_eq(cg_schedule_default(p, "native", 2, &sch, &ei), DP_OK, "%s", ei.msg);
    /* Every convolution of every path takes its last candidate. */
    int changed = 0;
    for (int i = 0; i < sch.n_paths; i++) {
        for (int k = 0; k < p->n_steps; k++) {
            struct cg_sched c[64];
            const int gw = i > 0 ? sch.path[0].steps[k].gw : 0;
            const int n = cg_sched_candidates(&p->steps[k], sch.path[i].vl, gw, 2, c, 64);
            if (n > 1) {
                sch.path[i].steps[k] = c[n - 1];
                changed++;
            }
        }
    }
    cr_assert_geq(changed, 3);
    char dir[256], sp[512];
    dp_test_tmpdir_make(dir, sizeof(dir), "cg-sched");
    snprintf(sp, sizeof(sp), "%s/my-schedule.json", dir);
    FILE *f = fopen(sp, "w");
    cr_assert_not_null(f);
    cr_assert_eq(cg_schedfile_write(f, p, "native", &sch, &ei), DP_OK, "%s", ei.msg);
    cr_assert_eq(fclose(f), 0);
    cg_schedule_free(&sch);
    cg_plan_free(p);

    char built[256], plain[256];
    const struct cg_compile_opts o = {"cg-sched-b", "mixed", "native", 2, 0.0, sp, NULL};
    cr_assert_eq(cg_test_build_run_opts(m, &o, built, sizeof(built)), 0,
                 "bench failed (see %s/bench.err)", built);
    const struct cg_compile_opts od = {"cg-sched-d", "mixed", "native", 2, 0.0, NULL, NULL};
    dp_test_tmpdir_make(plain, sizeof(plain), "cg-sched-d");
    cr_assert_eq(cg_compile(m, plain, &od, NULL, &ei), DP_OK, "%s", ei.msg);
    char p1[512], p2[512];
    snprintf(p1, sizeof(p1), "%s/model.c", built);
    snprintf(p2, sizeof(p2), "%s/model.c", plain);
    unsigned char *a = NULL, *b = NULL;
    size_t na = 0, nb = 0;
    cr_assert_eq(dp_file_read(p1, p1, 1 << 26, &a, &na, &ei), DP_OK, "%s", ei.msg);
    cr_assert_eq(dp_file_read(p2, p2, 1 << 26, &b, &nb, &ei), DP_OK, "%s", ei.msg);
    cr_assert(na != nb || memcmp(a, b, na) != 0, "the schedule file changed nothing");
    dp_free(b);

    /* Refused, naming what is wrong. */
    dp_free(a);
    snprintf(p1, sizeof(p1), "%s/schedule.json", built);
    cr_assert_eq(dp_file_read(p1, p1, 1 << 26, &a, &na, &ei), DP_OK, "%s", ei.msg);
    char *good = dp_malloc(na + 1);
    cr_assert_not_null(good);
    memcpy(good, a, na);
    good[na] = '\0';
    dp_free(a);
    static const struct {
        const char *from, *to, *want;
    } bad[] = {
        {"\"layer\": \"conv1\"", "\"layer\": \"convX\"", "layers[0].layer must be \"conv1\""},
        {"\"target\": \"native\"", "\"target\": \"portable\"", "target must be \"native\""},
        {"\"threads\":", "\"threads\": 0, \"x\":", "threads must be an integer"},
        {"\"nb\": ", "\"nb\": 3", "not a schedule this compiler generates"},
        {"\"version\": 1", "\"version\": 2", "version 2"},
        {"\"isa\": \"avx2\"", "\"isa\": \"neon\"", "paths[1].isa must be \"avx2\""},
        {"{", "[", "not a JSON object"},
    };
    char bp[512], out[512];
    snprintf(bp, sizeof(bp), "%s/bad.json", dir);
    snprintf(out, sizeof(out), "%s/out", dir);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char *t = cg_test_subst(good, bad[i].from, bad[i].to);
        cg_test_write(bp, t);
        dp_free(t);
        const struct cg_compile_opts ob = {"x", "x", "native", 2, 0.0, bp, NULL};
        cr_expect_eq(cg_compile(m, out, &ob, NULL, &ei), DP_EINVAL, "case %zu", i);
        cr_expect(strstr(ei.msg, bad[i].want) != NULL, "case %zu: %s", i, ei.msg);
        cr_expect(strstr(ei.msg, "bad.json") != NULL, "case %zu names the file: %s", i, ei.msg);
    }
    dp_free(good);
    cg_test_cleanup(built);
    dp_test_tmpdir_remove(plain);
    dp_test_tmpdir_remove(dir);
    dp_model_free(m);
    DP_ASSERT_NO_LEAKS();
}
