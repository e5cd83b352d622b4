/*
 * The compiler's block-circulant and recurrent kernels (issue 15): small
 * models with circ_linear (blocks 4, 16 and 3, dimensions the block does
 * not divide), circ_conv2d (4, 3 and 8), LSTM and GRU (dense, FFT blocks
 * and an expanded block) compiled, built with the bundle's own Makefile
 * and run by its bench, whose reference check (1e-4 relative) holds the
 * generated code to outputs computed here by definition: circ_forward_ref
 * and circ_expand (worker/circulant/circ_ref.c, brute force over the
 * expanded matrix), direct convolution loops and the LSTM/GRU equations
 * in double; and the same models, lstm-fmnist and gru-fmnist against the
 * engine's forward pass (the reference `compile` writes). Plus the plan's
 * formats and FLOPs, and the OpenCL refusal.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "common/alloc.h"
#include "common/model.h"
#include "tests/unit/test_util.h"
#include "worker/circulant/circ.h"
#include "worker/codegen/cg_circ.h"
#include "worker/codegen/cg_compile.h"
#include "worker/codegen/cg_plan.h"
#include "worker/codegen/cg_tune.h"
#include "worker/nn/arch.h"

/* ---- Models ---------------------------------------------------------------- */

static int tc_add(struct dp_model *m, const char *name, enum dp_op op, int in, int out_ch,
                  int block, int has_bias)
{
    struct dp_op_attrs a = {0};
    a.out_ch = out_ch;
    a.block = block;
    a.has_bias = has_bias;
    struct dp_errinfo ei = {DP_OK, ""};
    const int i = dp_model_add_layer(m, name, op, &in, 1, &a, &ei);
    cr_assert_geq(i, 0, "%s", ei.msg);
    return i;
}

static int tc_conv(struct dp_model *m, const char *name, int in, int out_ch, int k, int stride,
                   int pad, int block)
{
    struct dp_op_attrs a = {0};
    a.out_ch = out_ch;
    a.kh = a.kw = k;
    a.sh = a.sw = stride;
    a.pt = a.pl = a.pb = a.pr = pad;
    a.dh = a.dw = 1;
    a.groups = 1;
    a.has_bias = 1;
    a.block = block;
    struct dp_errinfo ei = {DP_OK, ""};
    const int i = dp_model_add_layer(m, name, DP_OP_CIRC_CONV2D, &in, 1, &a, &ei);
    cr_assert_geq(i, 0, "%s", ei.msg);
    return i;
}

/* Finalizes m and fills every parameter with seeded values in [-a, a]. */
static void tc_finalize(struct dp_model *m, float a)
{
    struct dp_errinfo ei = {DP_OK, ""};
    cr_assert_eq(dp_model_finalize(m, &ei), DP_OK, "%s", ei.msg);
    uint64_t s = 0x9e3779b97f4a7c15ull;
    for (size_t i = 0; i < m->n_floats; i++) {
        s ^= s >> 12;
        s ^= s << 25;
        s ^= s >> 27;
        const double u = (double)((s * 2685821657736338717ull) >> 11) / 9007199254740992.0;
        m->data[i] = (float)((2.0 * u - 1.0) * a);
    }
}

/* circ_linear 63 -> 30 (block 4) -> 37 (16, no bias) -> 10 (3: expanded). */
static struct dp_model *tc_mlp(void)
{
    struct dp_model *m = dp_model_new(1, 7, 9);
    cr_assert_not_null(m);
    int x = tc_add(m, "fc1", DP_OP_CIRC_LINEAR, DP_MODEL_INPUT, 30, 4, 1);
    x = tc_add(m, "relu1", DP_OP_RELU, x, 0, 0, 0);
    x = tc_add(m, "fc2", DP_OP_CIRC_LINEAR, x, 37, 16, 0);
    x = tc_add(m, "relu2", DP_OP_RELU, x, 0, 0, 0);
    tc_add(m, "fc3", DP_OP_CIRC_LINEAR, x, 10, 3, 1);
    tc_finalize(m, 0.3f);
    return m;
}

/* circ_conv2d 6x8x8 -> 10 (block 4, 3x3 pad 1) -> 9 (block 3: expanded,
 * stride 2) -> 8 (block 8, 2x2), flatten, linear 10. */
static struct dp_model *tc_cnn(void)
{
    struct dp_model *m = dp_model_new(6, 8, 8);
    cr_assert_not_null(m);
    int x = tc_conv(m, "conv1", DP_MODEL_INPUT, 10, 3, 1, 1, 4);
    x = tc_add(m, "relu1", DP_OP_RELU, x, 0, 0, 0);
    x = tc_conv(m, "conv2", x, 9, 3, 2, 1, 3);
    x = tc_add(m, "relu2", DP_OP_RELU, x, 0, 0, 0);
    x = tc_conv(m, "conv3", x, 8, 2, 1, 0, 8);
    x = tc_add(m, "flat", DP_OP_FLATTEN, x, 0, 0, 0);
    tc_add(m, "fc", DP_OP_LINEAR, x, 10, 0, 1);
    tc_finalize(m, 0.3f);
    return m;
}

/* A sequence of 6 steps of 7 features through lstm 12 (dense), lstm 10
 * (block 4), gru 9 (block 8), gru 5 (block 3: expanded) and gru 6
 * (dense); the output is every step of the last. */
static struct dp_model *tc_rnn(void)
{
    struct dp_model *m = dp_model_new(1, 6, 7);
    cr_assert_not_null(m);
    int x = tc_add(m, "lstm1", DP_OP_LSTM, DP_MODEL_INPUT, 12, 0, 1);
    x = tc_add(m, "lstm2", DP_OP_LSTM, x, 10, 4, 1);
    x = tc_add(m, "gru1", DP_OP_GRU, x, 9, 8, 1);
    x = tc_add(m, "gru2", DP_OP_GRU, x, 5, 3, 1);
    tc_add(m, "gru3", DP_OP_GRU, x, 6, 0, 1);
    tc_finalize(m, 0.4f);
    return m;
}

/* ---- The reference: every layer by its definition -------------------------- */

static const float *tc_param(const struct dp_model *m, int layer, const char *suffix)
{
    char name[256];
    snprintf(name, sizeof(name), "%s.%s", m->layers[layer].name, suffix);
    for (int i = 0; i < m->n_params; i++)
        if (strcmp(m->params[i].name, name) == 0)
            return dp_param_data(m, &m->params[i]);
    return NULL;
}

/* The dense matrix rows x cols of a weight stored dense (k 0) or circulant. */
static float *tc_dense(const float *w, int rows, int cols, int k)
{
    float *d = dp_malloc((size_t)rows * (size_t)cols * sizeof(float));
    cr_assert_not_null(d);
    if (k == 0) {
        memcpy(d, w, (size_t)rows * (size_t)cols * sizeof(float));
    } else {
        struct circ_dims cd;
        circ_dims_init(&cd, rows, cols, k);
        circ_expand(d, w, &cd);
    }
    return d;
}

static double tc_sig(double v)
{
    return 1.0 / (1.0 + exp(-v));
}

static void tc_rnn_ref(const struct dp_model *m, int i, const float *x, float *y)
{
    const struct dp_layer *l = &m->layers[i];
    const int lstm = l->op == DP_OP_LSTM, H = l->a.out_ch, G = (lstm ? 4 : 3) * H;
    const int T = l->out_h;
    const int F = l->inputs[0] == DP_MODEL_INPUT ? m->in_w : m->layers[l->inputs[0]].out_w;
    float *wi = tc_dense(tc_param(m, i, "weight_ih"), G, F, l->a.block);
    float *wh = tc_dense(tc_param(m, i, "weight_hh"), G, H, l->a.block);
    const float *bi = tc_param(m, i, "bias_ih"), *bh = tc_param(m, i, "bias_hh");
    double h[64] = {0}, c[64] = {0}, gx[256], gh[256];
    cr_assert_leq(G, 256);
    for (int t = 0; t < T; t++) {
        for (int r = 0; r < G; r++) {
            gx[r] = bi[r];
            gh[r] = bh[r];
            for (int s = 0; s < F; s++)
                gx[r] += (double)wi[(size_t)r * F + s] * x[t * F + s];
            for (int s = 0; s < H; s++)
                gh[r] += (double)wh[(size_t)r * H + s] * h[s];
        }
        for (int j = 0; j < H; j++) {
            if (lstm) {
                const double ig = tc_sig(gx[j] + gh[j]), fg = tc_sig(gx[H + j] + gh[H + j]);
                const double gg = tanh(gx[2 * H + j] + gh[2 * H + j]);
                const double og = tc_sig(gx[3 * H + j] + gh[3 * H + j]);
                c[j] = fg * c[j] + ig * gg;
                y[t * H + j] = (float)(og * tanh(c[j]));
            } else {
                const double r = tc_sig(gx[j] + gh[j]), z = tc_sig(gx[H + j] + gh[H + j]);
                const double n = tanh(gx[2 * H + j] + r * gh[2 * H + j]);
                y[t * H + j] = (float)((1.0 - z) * n + z * h[j]);
            }
        }
        for (int j = 0; j < H; j++)
            h[j] = y[t * H + j];
    }
    dp_free(wi);
    dp_free(wh);
}

static void tc_conv_ref(const struct dp_model *m, int i, const float *x, float *y)
{
    const struct dp_layer *l = &m->layers[i];
    const struct dp_op_attrs *a = &l->a;
    const int in = l->inputs[0];
    const int C = in == DP_MODEL_INPUT ? m->in_c : m->layers[in].out_c;
    const int H = in == DP_MODEL_INPUT ? m->in_h : m->layers[in].out_h;
    const int W = in == DP_MODEL_INPUT ? m->in_w : m->layers[in].out_w;
    const int F = l->out_c, OH = l->out_h, OW = l->out_w, T = a->kh * a->kw;
    struct circ_dims d;
    circ_dims_init(&d, F, C, a->block);
    const float *w = tc_param(m, i, "weight"), *b = tc_param(m, i, "bias");
    float *dt = dp_malloc((size_t)T * F * C * sizeof(float));
    cr_assert_not_null(dt);
    for (int t = 0; t < T; t++)
        circ_expand(dt + (size_t)t * F * C, w + (size_t)t * circ_dims_numel(&d), &d);
    for (int o = 0; o < F; o++)
        for (int oy = 0; oy < OH; oy++)
            for (int ox = 0; ox < OW; ox++) {
                double s = b[o];
                for (int u = 0; u < a->kh; u++)
                    for (int v = 0; v < a->kw; v++) {
                        const int iy = oy * a->sh - a->pt + u, ix = ox * a->sw - a->pl + v;
                        if (iy < 0 || iy >= H || ix < 0 || ix >= W)
                            continue;
                        for (int c = 0; c < C; c++)
                            s += (double)dt[((size_t)(u * a->kw + v) * F + o) * C + c] *
                                 x[(c * H + iy) * W + ix];
                    }
                y[(o * OH + oy) * OW + ox] = (float)s;
            }
    dp_free(dt);
}

static enum dp_err tc_ref(void *ctx, const float *x, int n, float *y, struct dp_errinfo *ei)
{
    (void)ei;
    const struct dp_model *m = ctx;
    const int L = m->n_layers;
    const size_t in = (size_t)m->in_c * m->in_h * m->in_w, out = dp_model_out_size(m, L - 1);
    float **act = dp_calloc((size_t)L, sizeof(float *));
    cr_assert_not_null(act);
    for (int i = 0; i < L; i++) {
        act[i] = dp_calloc(dp_model_out_size(m, i), sizeof(float));
        cr_assert_not_null(act[i]);
    }
    for (int s = 0; s < n; s++) {
        for (int i = 0; i < L; i++) {
            const struct dp_layer *l = &m->layers[i];
            const float *xi =
                l->inputs[0] == DP_MODEL_INPUT ? x + (size_t)s * in : act[l->inputs[0]];
            const size_t ni =
                l->inputs[0] == DP_MODEL_INPUT ? in : dp_model_out_size(m, l->inputs[0]);
            const int no = (int)dp_model_out_size(m, i);
            float *yi = act[i];
            if (l->op == DP_OP_CIRC_LINEAR || l->op == DP_OP_LINEAR) {
                const float *w = tc_param(m, i, "weight"), *b = tc_param(m, i, "bias");
                if (l->op == DP_OP_CIRC_LINEAR) {
                    struct circ_dims d;
                    circ_dims_init(&d, no, (int)ni, l->a.block);
                    circ_forward_ref(yi, no, xi, (int)ni, w, &d, 1, 0);
                } else {
                    for (int o = 0; o < no; o++) {
                        double acc = 0.0;
                        for (size_t c = 0; c < ni; c++)
                            acc += (double)w[(size_t)o * ni + c] * xi[c];
                        yi[o] = (float)acc;
                    }
                }
                for (int o = 0; o < no && b != NULL && l->a.has_bias; o++)
                    yi[o] += b[o];
            } else if (l->op == DP_OP_CIRC_CONV2D) {
                tc_conv_ref(m, i, xi, yi);
            } else if (l->op == DP_OP_RELU) {
                for (int o = 0; o < no; o++)
                    yi[o] = xi[o] > 0.0f ? xi[o] : 0.0f;
            } else if (l->op == DP_OP_FLATTEN) {
                memcpy(yi, xi, (size_t)no * sizeof(float));
            } else if (l->op == DP_OP_LSTM || l->op == DP_OP_GRU) {
                tc_rnn_ref(m, i, xi, yi);
            } else {
                cr_assert_fail("tc_ref: op %d", l->op);
            }
        }
        memcpy(y + (size_t)s * out, act[L - 1], out * sizeof(float));
    }
    for (int i = 0; i < L; i++)
        dp_free(act[i]);
    dp_free(act);
    return DP_OK;
}

/* ---- Compile, build, run ---------------------------------------------------- */

static int tc_run(const char *cmd)
{
    const int rc = system(cmd);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : 128;
}

/* Compiles m for target with the reference above (engine: the engine's
 * forward pass, worker/nn), builds the bundle (no line of compiler output
 * allowed) and runs bench on every path this CPU runs; returns the first
 * failing bench's status, 0 when all pass. */
static int tc_build_run_ref(struct dp_model *m, const char *tag, const char *target, int engine)
{
    char dir[256], cmd[4096];
    dp_test_tmpdir_make(dir, sizeof(dir), tag);
    const struct cg_compile_opts o = {tag, "test", target, 2, 0.0, NULL, NULL};
    struct dp_errinfo ei = {DP_OK, ""};
    cr_assert_eq(cg_compile_ref(m, dir, &o, engine ? NULL : tc_ref, m, NULL, &ei), DP_OK, "%s",
                 ei.msg);
    snprintf(cmd, sizeof(cmd), "make -s -C %s CC=cc > %s/build.log 2>&1", dir, dir);
    cr_assert_eq(tc_run(cmd), 0, "make failed: see %s/build.log", dir);
    snprintf(cmd, sizeof(cmd), "test ! -s %s/build.log", dir);
    cr_assert_eq(tc_run(cmd), 0, "the bundle's build printed something: %s/build.log", dir);
    static const char *const isas[] = {"avx512", "avx2", "generic", "plain"};
    int rc = 0, ran = 0;
    for (size_t i = 0; i < sizeof(isas) / sizeof(isas[0]) && rc == 0; i++) {
        const int carried = strcmp(target, "native") == 0 ? i < 3 : i == 3;
        if (!carried || !cg_tune_cpu_runs(isas[i]))
            continue;
        /* Batch 3 at 2 threads (the barriers inside the kernels), then 1 thread. */
        snprintf(cmd, sizeof(cmd),
                 "%s/bench --runs 1 --warmup 0 --threads 2 --batch 3 --isa %s > %s/bench.json "
                 "2>> %s/bench.err && %s/bench --runs 1 --warmup 0 --threads 1 --batch 1 --isa "
                 "%s >> %s/bench.json 2>> %s/bench.err",
                 dir, isas[i], dir, dir, dir, isas[i], dir, dir);
        rc = tc_run(cmd);
        cr_expect_eq(rc, 0, "bench --isa %s failed: see %s/bench.err", isas[i], dir);
        ran++;
    }
    cr_expect_geq(ran, 1, "no path ran");
    if (rc == 0)
        dp_test_tmpdir_remove(dir);
    return rc;
}

static int tc_build_run(struct dp_model *m, const char *tag, const char *target)
{
    return tc_build_run_ref(m, tag, target, 0);
}

/* ---- Tests ------------------------------------------------------------------ */

Test(cg_circ, plan_formats_and_flops)
{
    struct dp_model *m = tc_mlp();
    struct cg_plan *p = NULL;
    struct dp_errinfo ei = {DP_OK, ""};
    cr_assert_eq(cg_plan_build(m, &p, &ei), DP_OK, "%s", ei.msg);
    cr_assert_eq(p->n_steps, 3, "ReLUs fused");
    /* fc1, fc2: FFT; fc3 (block 3): the dense linear of its expanded matrix. */
    cr_assert_eq(p->steps[0].kind, CG_K_CIRC_LINEAR);
    cr_assert_eq(p->steps[0].fmt, CG_FMT_CIRC);
    cr_assert_eq(p->steps[0].act, CG_ACT_RELU);
    cr_assert_eq(p->steps[1].kind, CG_K_CIRC_LINEAR);
    cr_assert_eq(p->steps[2].kind, CG_K_LINEAR);
    cr_assert_eq(p->steps[2].block, 3);
    cr_assert_eq(p->steps[2].n_weights, 10 * 37, "expanded: the dense matrix");
    /* fc2: 30 -> 37 in blocks of 16: p = 3, q = 2; 5 FFTs of 16 points
     * and 6 spectral products of 9 bins, plus the bias. */
    cr_assert_eq(p->steps[1].macs_dense, 37 * 30);
    cr_assert_eq(p->steps[1].flops, 5 * cg_circ_rfft_flops(16) + 6 * 8 * 9 + 37);
    cr_assert_eq(cg_circ_rfft_flops(16), 5 * 8 * 3 + 12 * 9);
    cr_assert_eq(p->steps[1].n_weights, 3 * 2 * 16);
    /* At block 64 the FFT form of a 1024 x 1024 product is far below dense. */
    cr_assert_lt(cg_circ_mv_flops(1024, 1024, 64) * 10, 2LL * 1024 * 1024);
    cg_plan_free(p);
    dp_model_free(m);
    DP_ASSERT_NO_LEAKS();
}

Test(cg_circ, circ_linear_matches_the_definition, .timeout = 120)
{
    struct dp_model *m = tc_mlp();
    cr_assert_eq(tc_build_run(m, "cgc-mlp", "native"), 0);
    cr_assert_eq(tc_build_run(m, "cgc-mlp-p", "portable"), 0);
    /* And against the engine's forward (worker/circulant through FFTW). */
    cr_assert_eq(tc_build_run_ref(m, "cgc-mlp-e", "portable", 1), 0);
    dp_model_free(m);
    DP_ASSERT_NO_LEAKS();
}

Test(cg_circ, circ_conv2d_matches_the_definition, .timeout = 120)
{
    struct dp_model *m = tc_cnn();
    struct cg_plan *p = NULL;
    struct dp_errinfo ei = {DP_OK, ""};
    cr_assert_eq(cg_plan_build(m, &p, &ei), DP_OK, "%s", ei.msg);
    cr_assert_eq(p->steps[0].kind, CG_K_CIRC_CONV);
    cr_assert_eq(p->steps[1].kind, CG_K_CONV, "block 3: expanded");
    cr_assert_eq(p->steps[2].kind, CG_K_CIRC_CONV);
    cg_plan_free(p);
    cr_assert_eq(tc_build_run(m, "cgc-cnn", "native"), 0);
    cr_assert_eq(tc_build_run(m, "cgc-cnn-p", "portable"), 0);
    cr_assert_eq(tc_build_run_ref(m, "cgc-cnn-e", "portable", 1), 0);
    dp_model_free(m);
    DP_ASSERT_NO_LEAKS();
}

Test(cg_circ, lstm_gru_match_the_definition, .timeout = 120)
{
    struct dp_model *m = tc_rnn();
    struct cg_plan *p = NULL;
    struct dp_errinfo ei = {DP_OK, ""};
    cr_assert_eq(cg_plan_build(m, &p, &ei), DP_OK, "%s", ei.msg);
    cr_assert_eq(p->n_steps, 5);
    cr_assert_eq(p->steps[0].kind, CG_K_LSTM);
    cr_assert_eq(p->steps[0].fmt, CG_FMT_DENSE);
    cr_assert_eq(p->steps[1].fmt, CG_FMT_CIRC);
    cr_assert_eq(p->steps[2].kind, CG_K_GRU);
    cr_assert_eq(p->steps[2].fmt, CG_FMT_CIRC);
    cr_assert_eq(p->steps[3].fmt, CG_FMT_DENSE, "block 3: expanded rows");
    cg_plan_free(p);
    cr_assert_eq(tc_build_run(m, "cgc-rnn", "native"), 0);
    cr_assert_eq(tc_build_run(m, "cgc-rnn-p", "portable"), 0);
    dp_model_free(m);
    DP_ASSERT_NO_LEAKS();
}

Test(cg_circ, opencl_refuses_naming_the_layer)
{
    struct dp_model *m = tc_rnn();
    char dir[256];
    dp_test_tmpdir_make(dir, sizeof(dir), "cgc-ocl");
    const struct cg_compile_opts o = {"x", "x", "opencl", 1, 0.0, NULL, NULL};
    struct dp_errinfo ei = {DP_OK, ""};
    cr_assert_eq(cg_compile_ref(m, dir, &o, tc_ref, m, NULL, &ei), DP_EUNSUPPORTED);
    cr_assert(strstr(ei.msg, "'lstm1'") != NULL && strstr(ei.msg, "OpenCL") != NULL, "%s", ei.msg);
    dp_test_tmpdir_remove(dir);
    dp_model_free(m);
    DP_ASSERT_NO_LEAKS();
}

/* The engine's own LSTM and GRU (worker/nn) as the reference: the built-in
 * lstm-fmnist and gru-fmnist (128 units over 28 steps, the last step
 * sliced out, a linear classifier), and both cells with block-circulant
 * matrices (blocks 8 and 4 on 28 features and 20 units, which neither
 * divides into whole gates) and a slice along the features. */
static struct dp_model *tc_arch(const char *arch)
{
    struct dp_model *m = NULL;
    struct dp_errinfo ei = {DP_OK, ""};
    cr_assert_eq(nn_arch_build(arch, 1, 28, 28, 10, &m, &ei), DP_OK, "%s", ei.msg);
    nn_arch_init(m, 42);
    return m;
}

Test(cg_circ, lstm_gru_fmnist_match_the_engine, .timeout = 180)
{
    struct dp_model *m = tc_arch("lstm-fmnist");
    cr_assert_eq(tc_build_run_ref(m, "cgc-lstm-fm", "native", 1), 0);
    dp_model_free(m);
    m = tc_arch("gru-fmnist");
    cr_assert_eq(tc_build_run_ref(m, "cgc-gru-fm", "portable", 1), 0);
    dp_model_free(m);
    m = dp_model_new(1, 28, 28);
    cr_assert_not_null(m);
    int x = tc_add(m, "lstm", DP_OP_LSTM, DP_MODEL_INPUT, 20, 8, 1);
    x = tc_add(m, "gru", DP_OP_GRU, x, 20, 4, 1);
    struct dp_op_attrs a = {0};
    a.axis = 3;
    a.start = 3;
    a.end = 17;
    struct dp_errinfo ei = {DP_OK, ""};
    x = dp_model_add_layer(m, "cut", DP_OP_SLICE, &x, 1, &a, &ei);
    cr_assert_geq(x, 0, "%s", ei.msg);
    tc_add(m, "fc", DP_OP_LINEAR, x, 10, 0, 1);
    tc_finalize(m, 0.3f);
    cr_assert_eq(tc_build_run_ref(m, "cgc-rnn-eng", "native", 1), 0);
    dp_model_free(m);
    DP_ASSERT_NO_LEAKS();
}
