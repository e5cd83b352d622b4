/*
 * The opencl target end to end: models compiled with target "opencl" into
 * a fresh directory, the bundle built there with the system's cc (make,
 * -lOpenCL) and its bench run on the first OpenCL device (PoCL's CPU
 * device on the test machines, tools/deps.sh installs it), which checks
 * the kernels' outputs against the engine's (reference.bin, 1e-4
 * relative) and exits 1 otherwise. Plus the target's name in the
 * worker's checks and determinism of the emitted files.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/file.h"
#include "tests/unit/test_util.h"
#include "tests/unit/worker/codegen/cg_fixture.h"
#include "worker/cmd/wk_compile.h"
#include "worker/codegen/cg_compile.h"
#include "worker/codegen/cg_emit_ocl.h"
#include "worker/codegen/cg_plan.h"
#include "worker/nn/arch.h"

/* Compiles m for opencl into a fresh directory (dir), builds it (not a
 * line of output: warning-free) and runs bench; returns bench's exit
 * status, its stdout in dir/bench.json, stderr in dir/bench.err. */
static int cg_ocl_build_run(struct dp_model *m, const char *tag, char *dir, size_t cap)
{
    dp_test_tmpdir_make(dir, cap, tag);
    struct dp_errinfo ei = {DP_OK, ""};
    const struct cg_compile_opts o = {tag, "test", "opencl", 1, 0.0, NULL, NULL};
    enum dp_err err = cg_compile(m, dir, &o, NULL, &ei);
    cr_assert_eq(err, DP_OK, "%s", ei.msg);
    char cmd[1024];
    snprintf(cmd, sizeof(cmd), "make -s -C %s CC=cc > %s/build.log 2>&1", dir, dir);
    cr_assert_eq(system(cmd), 0, "make failed: see %s/build.log", dir);
    snprintf(cmd, sizeof(cmd),
             "%s/bench --runs 2 --warmup 0 --batch 3 > %s/bench.json 2> %s/bench.err", dir, dir,
             dir);
    const int rc = system(cmd);
    snprintf(cmd, sizeof(cmd), "%s/build.log", dir);
    FILE *f = fopen(cmd, "r");
    cr_assert_not_null(f);
    char line[512];
    cr_assert_null(fgets(line, sizeof(line), f), "the bundle's build printed: %s", line);
    fclose(f);
    return rc;
}

/* The bench's JSON line names the opencl target and every layer. */
static void cg_ocl_bench_json_check(const char *dir, const char *layer)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/bench.json", dir);
    unsigned char *d = NULL;
    size_t n = 0;
    struct dp_errinfo ei = {DP_OK, ""};
    cr_assert_eq(dp_file_read(path, path, 1 << 20, &d, &n, &ei), DP_OK, "%s", ei.msg);
    char *s = dp_malloc(n + 1);
    cr_assert_not_null(s);
    memcpy(s, d, n);
    s[n] = '\0';
    cr_assert(strstr(s, "\"target\":\"opencl\"") != NULL, "%s", s);
    cr_assert(strstr(s, layer) != NULL, "no layer %s in %s", layer, s);
    dp_free(s);
    dp_free(d);
}

/* The kernel source in dir/model.c is OpenCL C that clang accepts without
 * a warning at -Wall -Wextra (the device's compiler sees the same text):
 * a program that includes model.c prints cg_ocl_source into kernels.cl. */
static void cg_ocl_kernels_check(const char *dir)
{
    char path[512], cmd[2048];
    snprintf(path, sizeof(path), "%s/dump.c", dir);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs("#include \"model.c\"\n"
          "int main(void)\n{\n"
          "    for (int i = 0; cg_ocl_source[i] != NULL; i++)\n"
          "        fputs(cg_ocl_source[i], stdout);\n"
          "    return 0;\n}\n",
          f);
    cr_assert_eq(fclose(f), 0);
    snprintf(cmd, sizeof(cmd),
             "cd %s && cc -std=c11 -w dump.c -o dump -lOpenCL -lm && ./dump > kernels.cl && "
             "clang -x cl -cl-std=CL1.2 -Xclang -finclude-default-header -fsyntax-only -Wall "
             "-Wextra -Werror kernels.cl > kernels.log 2>&1",
             dir);
    cr_assert_eq(system(cmd), 0, "the kernels do not build cleanly: see %s/kernels.log", dir);
}

static void cg_ocl_run_ok(struct dp_model *m, const char *tag, const char *layer)
{
    char dir[256];
    const int rc = cg_ocl_build_run(m, tag, dir, sizeof(dir));
    cr_assert_eq(rc, 0, "bench failed (see %s/bench.err)", dir);
    cg_ocl_bench_json_check(dir, layer);
    cg_ocl_kernels_check(dir);
    dp_test_tmpdir_remove(dir);
}

Test(cg_ocl, resnet20_pattern_connectivity_matches_the_engine, .timeout = 240)
{
    struct dp_errinfo ei = {DP_OK, ""};
    struct dp_model *m = NULL;
    cr_assert_eq(cg_fixture_model("resnet20-cifar", 3, 32, 32, 8, 3.6, &m, &ei), DP_OK, "%s",
                 ei.msg);
    struct cg_plan *p = NULL;
    cr_assert_eq(cg_plan_build(m, &p, &ei), DP_OK, "%s", ei.msg);
    int n_fkw = 0;
    for (int k = 0; k < p->n_steps; k++)
        n_fkw += p->steps[k].fmt == CG_FMT_FKW;
    cr_assert_eq(n_fkw, 19, "every 3x3 conv of resnet20 is a pattern layer");
    cg_plan_free(p);
    cg_ocl_run_ok(m, "ocl-r20p", "layer3.2.conv2");
    dp_model_free(m);
    DP_ASSERT_NO_LEAKS();
}

Test(cg_ocl, resnet20_dense_matches_the_engine, .timeout = 240)
{
    struct dp_errinfo ei = {DP_OK, ""};
    struct dp_model *m = NULL;
    cr_assert_eq(cg_fixture_model("resnet20-cifar", 3, 32, 32, 0, 0, &m, &ei), DP_OK, "%s", ei.msg);
    cg_ocl_run_ok(m, "ocl-r20d", "layer2.0.shortcut.conv");
    dp_model_free(m);
    DP_ASSERT_NO_LEAKS();
}

Test(cg_ocl, lenet5_dense_matches_the_engine, .timeout = 120)
{
    struct dp_errinfo ei = {DP_OK, ""};
    struct dp_model *m = NULL;
    cr_assert_eq(cg_fixture_model("lenet5", 1, 28, 28, 0, 0, &m, &ei), DP_OK, "%s", ei.msg);
    cg_ocl_run_ok(m, "ocl-lenet", "fc2");
    dp_model_free(m);
    DP_ASSERT_NO_LEAKS();
}

/*
 * lenet5 pruned: its convolutions are 5x5, which the pattern scheme does
 * not take, so connectivity (every third kernel of conv2 zero) and
 * irregular pruning (two thirds of fc1) make its sparse layers; both run
 * as the recorded dense fallback.
 */
Test(cg_ocl, lenet5_connectivity_and_irregular_match_the_engine, .timeout = 120)
{
    struct dp_errinfo ei = {DP_OK, ""};
    struct dp_model *m = NULL;
    cr_assert_eq(cg_fixture_model("lenet5", 1, 28, 28, 0, 0, &m, &ei), DP_OK, "%s", ei.msg);
    float *w = dp_param_data(m, dp_model_param_find(m, "conv2.weight")); /* (50, 20, 5, 5) */
    for (int k = 0; k < 50 * 20; k++)
        if (k % 3 != 0)
            memset(w + (size_t)k * 25, 0, 25 * sizeof(float));
    const struct dp_param *fc1 = dp_model_param_find(m, "fc1.weight");
    w = dp_param_data(m, fc1);
    for (size_t i = 0; i < fc1->numel; i++)
        if (i % 3 != 0)
            w[i] = 0.0f;
    struct cg_plan *p = NULL;
    cr_assert_eq(cg_plan_build(m, &p, &ei), DP_OK, "%s", ei.msg);
    for (int k = 0; k < p->n_steps; k++) {
        const char *name = m->layers[p->steps[k].layer].name;
        if (strcmp(name, "conv2") == 0 || strcmp(name, "fc1") == 0)
            cr_assert_eq(p->steps[k].fmt, CG_FMT_IRREGULAR, "%s", name);
    }
    cg_plan_free(p);
    cg_ocl_run_ok(m, "ocl-lenetp", "conv2");
    dp_model_free(m);
    DP_ASSERT_NO_LEAKS();
}

/*
 * Every other step kind and awkward shapes: a 9x9 input, a standalone BN,
 * ReLU6, a stride-2 pattern layer on an odd map (a partial pixel block),
 * padded max pooling, average pooling with padding, a residual add that
 * stays an add (both inputs are read twice), dropout, flatten, two
 * linear layers and a softmax.
 */
Test(cg_ocl, every_step_kind_matches_the_engine, .timeout = 120)
{
    struct dp_errinfo ei = {DP_OK, ""};
    struct dp_model *m = dp_model_new(3, 9, 9);
    cr_assert_not_null(m);
    int x = dp_model_add_bn2d(m, "bn0", DP_MODEL_INPUT, &ei);
    x = dp_model_add_conv2d(m, "conv1", x, 8, 3, 1, 1, 1, 1, &ei);
    x = dp_model_add_bn2d(m, "bn1", x, &ei);
    x = dp_model_add_unary(m, "relu6", DP_OP_RELU6, x, &ei);
    int y = dp_model_add_conv2d(m, "conv1b", x, 8, 3, 1, 1, 1, 1, &ei);
    const int in2[2] = {x, y};
    struct dp_op_attrs none = {0};
    int s = dp_model_add_layer(m, "sum", DP_OP_ADD, in2, 2, &none, &ei);
    const int in3[2] = {s, y};
    s = dp_model_add_layer(m, "sum2", DP_OP_ADD, in3, 2, &none, &ei);
    x = dp_model_add_conv2d(m, "conv2", s, 12, 3, 2, 1, 1, 0, &ei);
    x = dp_model_add_unary(m, "relu2", DP_OP_RELU, x, &ei);
    x = dp_model_add_pool(m, "maxpool", DP_OP_MAXPOOL, x, 3, 2, 1, &ei);
    x = dp_model_add_pool(m, "avgpool", DP_OP_AVGPOOL, x, 2, 1, 1, &ei);
    x = dp_model_add_unary(m, "flatten", DP_OP_FLATTEN, x, &ei);
    x = dp_model_add_linear(m, "fc1", x, 16, &ei);
    x = dp_model_add_unary(m, "relu3", DP_OP_RELU, x, &ei);
    x = dp_model_add_linear(m, "fc2", x, 5, &ei);
    struct dp_op_attrs sm = {0};
    sm.axis = 1;
    sm.axis_end = 1;
    x = dp_model_add_layer(m, "prob", DP_OP_SOFTMAX, &x, 1, &sm, &ei);
    cr_assert_geq(x, 0, "%s", ei.msg);
    cr_assert_eq(dp_model_finalize(m, &ei), DP_OK, "%s", ei.msg);
    nn_arch_init(m, 7);
    cg_fixture_bn_randomise(m);
    /* conv1 scaled up so that ReLU6 clips at 6 as well as at 0. */
    const struct dp_param *c1 = dp_model_param_find(m, "conv1.weight");
    float *w1 = dp_param_data(m, c1);
    for (size_t i = 0; i < c1->numel; i++)
        w1[i] *= 40.0f;
    /* conv2: a pattern per kernel from a library of 3, every third kernel pruned. */
    static const uint16_t lib[3] = {0x0ba, 0x1b0, 0x032};
    float *w = dp_param_data(m, dp_model_param_find(m, "conv2.weight"));
    for (int k = 0; k < 12 * 8; k++)
        for (int t = 0; t < 9; t++)
            if (k % 3 == 2 || !((lib[k % 3 == 0 ? (k / 3) % 3 : 1] >> t) & 1u))
                w[k * 9 + t] = 0.0f;
    struct cg_plan *p = NULL;
    cr_assert_eq(cg_plan_build(m, &p, &ei), DP_OK, "%s", ei.msg);
    int kinds = 0;
    for (int k = 0; k < p->n_steps; k++)
        kinds |= 1 << p->steps[k].kind;
    const int want = 1 << CG_K_CONV | 1 << CG_K_LINEAR | 1 << CG_K_MAXPOOL | 1 << CG_K_AVGPOOL |
                     1 << CG_K_ADD | 1 << CG_K_BN | 1 << CG_K_SOFTMAX;
    cr_assert_eq(kinds & want, want, "step kinds 0x%x", kinds);
    cg_plan_free(p);
    cg_ocl_run_ok(m, "ocl-mixed", "avgpool");
    dp_model_free(m);
    DP_ASSERT_NO_LEAKS();
}

/* Layer names reach the kernel source (a C string literal in model.c) and
 * its comments: none may end a comment or a string there or form a
 * trigraph, and the bundle still builds without a warning and matches. */
Test(cg_ocl, layer_names_cannot_escape_the_kernel_source, .timeout = 60)
{
    struct dp_errinfo ei = {DP_OK, ""};
    struct dp_model *m = dp_model_new(1, 4, 4);
    cr_assert_not_null(m);
    int x = dp_model_add_conv2d(m, "c */ #error injected\n/* \\ \"?\?/", DP_MODEL_INPUT, 2, 3, 1, 1,
                                1, 1, &ei);
    x = dp_model_add_unary(m, "r /* \"q\" */", DP_OP_RELU, x, &ei);
    x = dp_model_add_unary(m, "flat", DP_OP_FLATTEN, x, &ei);
    x = dp_model_add_linear(m, "fc*/?\?=", x, 3, &ei);
    cr_assert_geq(x, 0, "%s", ei.msg);
    cr_assert_eq(dp_model_finalize(m, &ei), DP_OK, "%s", ei.msg);
    nn_arch_init(m, 3);
    cg_ocl_run_ok(m, "ocl-names", "\"fc*/");
    dp_model_free(m);
    DP_ASSERT_NO_LEAKS();
}

/* An unknown device choice is refused at model_create with the variable named. */
Test(cg_ocl, a_bad_device_choice_is_a_clear_error, .timeout = 60)
{
    struct dp_errinfo ei = {DP_OK, ""};
    struct dp_model *m = NULL;
    cr_assert_eq(cg_fixture_model("lenet5", 1, 28, 28, 0, 0, &m, &ei), DP_OK, "%s", ei.msg);
    char dir[256];
    cr_assert_eq(cg_ocl_build_run(m, "ocl-dev", dir, sizeof(dir)), 0,
                 "bench failed (see %s/bench.err)", dir);
    char cmd[1024];
    snprintf(cmd, sizeof(cmd), "DNNPRESS_OPENCL_DEVICE=7:0 %s/bench --runs 1 2> %s/dev.err", dir,
             dir);
    cr_assert_neq(system(cmd), 0, "bench ran on platform 7");
    snprintf(cmd, sizeof(cmd),
             "grep -q 'DNNPRESS_OPENCL_DEVICE=.7:0.: no such platform' %s/dev.err", dir);
    cr_assert_eq(system(cmd), 0, "see %s/dev.err", dir);
    snprintf(cmd, sizeof(cmd), "DNNPRESS_OPENCL_DEVICE=gpu %s/bench --runs 1 2> %s/dev.err", dir,
             dir);
    cr_assert_neq(system(cmd), 0, "bench ran with DNNPRESS_OPENCL_DEVICE=gpu");
    snprintf(cmd, sizeof(cmd), "grep -q 'expected P:D' %s/dev.err", dir);
    cr_assert_eq(system(cmd), 0, "see %s/dev.err", dir);
    snprintf(cmd, sizeof(cmd), "DNNPRESS_OPENCL_DEVICE=0:0 %s/bench --runs 1 > /dev/null", dir);
    cr_assert_eq(system(cmd), 0, "bench failed on 0:0");
    dp_test_tmpdir_remove(dir);
    dp_model_free(m);
    DP_ASSERT_NO_LEAKS();
}

Test(cg_ocl, the_target_is_accepted_by_the_worker_and_unknown_ones_are_not)
{
    struct wk_compile_opts o;
    wk_compile_opts_init(&o);
    o.model = "m.onnx";
    o.out = "out";
    o.target = "opencl";
    struct dp_errinfo ei = {DP_OK, ""};
    cr_assert_eq(wk_compile_check(&o, &ei), DP_OK, "%s", ei.msg);
    o.target = "cuda";
    cr_assert_eq(wk_compile_check(&o, &ei), DP_EINVAL);
    cr_assert(strstr(ei.msg, "opencl") != NULL, "%s", ei.msg);
    cr_assert_eq(cg_target_vl("opencl"), 0);
}

static void cg_ocl_same_file(const char *d1, const char *d2, const char *name)
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

Test(cg_ocl, two_compiles_give_identical_bundles, .timeout = 60)
{
    struct dp_errinfo ei = {DP_OK, ""};
    struct dp_model *m = NULL;
    cr_assert_eq(cg_fixture_model("resnet20-cifar", 3, 32, 32, 8, 3.6, &m, &ei), DP_OK, "%s",
                 ei.msg);
    char d1[256], d2[256];
    dp_test_tmpdir_make(d1, sizeof(d1), "ocl-det1");
    dp_test_tmpdir_make(d2, sizeof(d2), "ocl-det2");
    const struct cg_compile_opts o = {"r20", "r20.safetensors", "opencl", 1, 0.0, NULL, NULL};
    cr_assert_eq(cg_compile(m, d1, &o, NULL, &ei), DP_OK, "%s", ei.msg);
    cr_assert_eq(cg_compile(m, d2, &o, NULL, &ei), DP_OK, "%s", ei.msg);
    static const char *const files[] = {"model.h", "model.c",       "weights.bin",
                                        "bench.c", "reference.bin", "Makefile"};
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++)
        cg_ocl_same_file(d1, d2, files[i]);
    dp_test_tmpdir_remove(d1);
    dp_test_tmpdir_remove(d2);
    dp_model_free(m);
    DP_ASSERT_NO_LEAKS();
}

/* A layer the compiler cannot handle is an error naming it for this
 * target too; a plan step the OpenCL emitter has no kernel for (here a
 * format it does not know, as a new storage format would be) is refused
 * by cg_ocl_check with the layer named, never emitted as dense reads. */
Test(cg_ocl, a_layer_without_a_kernel_is_an_error_naming_it)
{
    struct dp_errinfo ei = {DP_OK, ""};
    struct dp_model *m = dp_model_new(3, 8, 8);
    cr_assert_not_null(m);
    int a = dp_model_add_conv2d(m, "a", DP_MODEL_INPUT, 4, 3, 1, 1, 1, 1, &ei);
    int b = dp_model_add_conv2d(m, "b", DP_MODEL_INPUT, 4, 3, 1, 1, 1, 1, &ei);
    struct dp_op_attrs at = {0};
    at.axis = 1;
    const int in[2] = {a, b};
    cr_assert_geq(dp_model_add_layer(m, "joined", DP_OP_CONCAT, in, 2, &at, &ei), 0, "%s", ei.msg);
    cr_assert_eq(dp_model_finalize(m, &ei), DP_OK, "%s", ei.msg);
    char dir[256];
    dp_test_tmpdir_make(dir, sizeof(dir), "ocl-unsup");
    const struct cg_compile_opts o = {"x", "x", "opencl", 1, 0.0, NULL, NULL};
    cr_assert_eq(cg_compile(m, dir, &o, NULL, &ei), DP_EUNSUPPORTED);
    cr_assert(strstr(ei.msg, "layer 'joined'") != NULL, "%s", ei.msg);
    /* Tuning and schedule files are the CPU targets' (no ISA paths here). */
    const struct cg_compile_opts ot = {"x", "x", "opencl", 1, 5.0, NULL, NULL};
    cr_assert_eq(cg_compile(m, dir, &ot, NULL, &ei), DP_EINVAL);
    cr_assert(strstr(ei.msg, "opencl") != NULL, "%s", ei.msg);
    dp_test_tmpdir_remove(dir);
    dp_model_free(m);

    cr_assert_eq(cg_fixture_model("lenet5", 1, 28, 28, 0, 0, &m, &ei), DP_OK, "%s", ei.msg);
    struct cg_plan *p = NULL;
    cr_assert_eq(cg_plan_build(m, &p, &ei), DP_OK, "%s", ei.msg);
    cg_ocl_sched(p);
    cr_assert_eq(cg_ocl_check(p, &ei), DP_OK, "%s", ei.msg);
    for (int k = 0; k < p->n_steps; k++)
        if (strcmp(m->layers[p->steps[k].layer].name, "fc1") == 0)
            p->steps[k].fmt = (enum cg_format)77;
    cr_assert_eq(cg_ocl_check(p, &ei), DP_EUNSUPPORTED);
    cr_assert(strstr(ei.msg, "layer 'fc1'") != NULL, "%s", ei.msg);
    for (int k = 0; k < p->n_steps; k++)
        if (strcmp(m->layers[p->steps[k].layer].name, "fc1") == 0)
            p->steps[k].fmt = CG_FMT_FKW; /* FKW is a convolution's format only */
    cr_assert_eq(cg_ocl_check(p, &ei), DP_EUNSUPPORTED);
    cr_assert(strstr(ei.msg, "layer 'fc1'") != NULL, "%s", ei.msg);
    cg_plan_free(p);
    dp_model_free(m);
    DP_ASSERT_NO_LEAKS();
}
