/*
 * The compiler's irregular (CSR, bitmask) and quantized layers: models
 * pruned or quantized with worker/compress's own projections, compiled,
 * built with the system's cc and checked by the bundle's bench against
 * the engine (reference.bin, 1e-4 relative); plus the format choice and
 * the weight file's size.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/alloc.h"
#include "common/file.h"
#include "tests/unit/test_util.h"
#include "tests/unit/worker/codegen/cg_fixture.h"
#include "worker/codegen/cg_compile.h"
#include "worker/codegen/cg_plan.h"
#include "worker/codegen/cg_quant.h"
#include "worker/codegen/cg_sparse.h"
#include "worker/compress/proj.h"

/* Applies fn with p to the weight of every conv and linear layer. */
static void cg_sp_project(struct dp_model *m, proj_fn fn, const struct proj_params *p)
{
    for (int i = 0; i < m->n_layers; i++) {
        const struct dp_layer *l = &m->layers[i];
        if (l->op != DP_OP_CONV2D && l->op != DP_OP_LINEAR)
            continue;
        char name[DP_NAME_MAX * 2];
        snprintf(name, sizeof(name), "%s.weight", l->name);
        const struct dp_param *w = dp_model_param_find(m, name);
        cr_assert_not_null(w, "%s", name);
        struct proj_shape s = {w->shape[0], w->shape[1], w->ndim == 4 ? w->shape[2] : 1,
                               w->ndim == 4 ? w->shape[3] : 1};
        void *scratch = dp_malloc(proj_scratch_bytes(&s));
        cr_assert_not_null(scratch);
        fn(dp_param_data(m, w), &s, p, scratch);
        dp_free(scratch);
    }
}

/* Compiles m (sparse mode, target) into a fresh directory, builds it and
 * runs bench: its exit status (0: outputs match the engine). */
static int cg_sp_build_run(struct dp_model *m, const char *tag, const char *target,
                           const char *sparse, struct cg_compile_summary *sum, char *dir,
                           size_t cap)
{
    dp_test_tmpdir_make(dir, cap, tag);
    struct dp_errinfo ei = {DP_OK, ""};
    const struct cg_compile_opts o = {tag, "test", target, 2, 0.0, NULL, sparse};
    cr_assert_eq(cg_compile(m, dir, &o, sum, &ei), DP_OK, "%s", ei.msg);
    char cmd[1024];
    snprintf(cmd, sizeof(cmd), "make -s -C %s CC=cc > %s/build.log 2>&1", dir, dir);
    cr_assert_eq(system(cmd), 0, "make failed: see %s/build.log", dir);
    snprintf(cmd, sizeof(cmd), "%s/build.log", dir);
    struct stat st;
    cr_assert_eq(stat(cmd, &st), 0);
    cr_assert_eq(st.st_size, 0, "the bundle's build printed warnings: see %s", cmd);
    snprintf(cmd, sizeof(cmd),
             "%s/bench --runs 1 --warmup 0 --threads 2 --batch 2 > %s/bench.json 2> %s/bench.err",
             dir, dir, dir);
    return system(cmd);
}

/* Runs the native bundle in dir on every ISA path this CPU runs, forced
 * (MODEL_ISA): the sparse kernels are written once per path. */
static void cg_sp_every_path(const char *dir)
{
    static const char *const isas[] = {"avx512", "avx2", "generic"};
    __builtin_cpu_init();
    const int runs[] = {__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
                            __builtin_cpu_supports("avx512bw") &&
                            __builtin_cpu_supports("avx512dq"),
                        __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"), 1};
    for (int i = 0; i < 3; i++) {
        if (!runs[i])
            continue;
        char cmd[1024];
        snprintf(cmd, sizeof(cmd),
                 "MODEL_ISA=%s %s/bench --runs 1 --warmup 0 --threads 2 --batch 2 > %s/bench.json "
                 "2> %s/bench.err",
                 isas[i], dir, dir, dir);
        cr_assert_eq(system(cmd), 0, "path %s: bench failed (see %s/bench.err)", isas[i], dir);
    }
}

static void cg_sp_cleanup(const char *dir)
{
    char cmd[1024];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
}

static long cg_sp_file_size(const char *dir, const char *name)
{
    char path[1024];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    struct stat st;
    cr_assert_eq(stat(path, &st), 0, "%s", path);
    return (long)st.st_size;
}

Test(cg_sparse, irregular_layers_in_csr_and_bitmask_match_the_engine, .timeout = 240)
{
    struct dp_errinfo ei = {DP_OK, ""};
    struct dp_model *m = NULL;
    cr_assert_eq(cg_fixture_model("resnet20-cifar", 3, 32, 32, 0, 0, &m, &ei), DP_OK, "%s", ei.msg);
    struct proj_params pp = proj_params_default();
    pp.rate = 12; /* density 0.083: sparse on every target */
    cg_sp_project(m, proj_irregular, &pp);
    static const char *const modes[][2] = {
        {"native", "auto"}, {"native", "csr"}, {"portable", "bitmask"}, {"native", "bitmask"}};
    for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
        char dir[256];
        struct cg_compile_summary sum;
        cr_assert_eq(cg_sp_build_run(m, "cg-sp", modes[i][0], modes[i][1], &sum, dir, sizeof(dir)),
                     0, "%s %s: bench failed (see %s/bench.err)", modes[i][0], modes[i][1], dir);
        /* 18 of the 3x3 convs (the stem and the 1x1 shortcuts have few enough
         * masks to be FKW) and the fc layer. */
        cr_assert_eq(sum.n_csr + sum.n_bitmask, 19, "%s %s: %d csr, %d bitmask", modes[i][0],
                     modes[i][1], sum.n_csr, sum.n_bitmask);
        if (strcmp(modes[i][0], "native") == 0)
            cg_sp_every_path(dir);
        if (strcmp(modes[i][1], "csr") == 0)
            cr_assert_eq(sum.n_bitmask, 0);
        if (strcmp(modes[i][1], "bitmask") == 0)
            cr_assert_eq(sum.n_csr, 0);
        /* The sparse weight file is smaller than the dense weights alone. */
        cr_assert_lt(cg_sp_file_size(dir, "weights.bin"), 270000 * 4 / 4, "weights.bin %ld bytes",
                     cg_sp_file_size(dir, "weights.bin"));
        cg_sp_cleanup(dir);
    }
    dp_model_free(m);
    DP_ASSERT_NO_LEAKS();
}

Test(cg_sparse, the_format_follows_the_measured_break_even)
{
    struct dp_errinfo ei = {DP_OK, ""};
    struct dp_model *m = NULL;
    cr_assert_eq(cg_fixture_model("lenet5", 1, 28, 28, 0, 0, &m, &ei), DP_OK, "%s", ei.msg);
    struct proj_params pp = proj_params_default();
    const double rates[] = {1.0, 1.5, 4.0, 50.0};
    int seen[4] = {0};
    for (int r = 0; r < 4; r++) {
        struct dp_model *c = NULL;
        cr_assert_eq(cg_fixture_model("lenet5", 1, 28, 28, 0, 0, &c, &ei), DP_OK, "%s", ei.msg);
        pp.rate = rates[r];
        cg_sp_project(c, proj_irregular, &pp);
        struct cg_plan *p = NULL;
        cr_assert_eq(cg_plan_build(c, &p, &ei), DP_OK, "%s", ei.msg);
        cg_sparse_choose(p, 8, CG_SPARSE_AUTO);
        for (int k = 0; k < p->n_steps; k++) {
            const struct cg_step *s = &p->steps[k];
            if (s->kind != CG_K_CONV && s->kind != CG_K_LINEAR)
                continue;
            const double d = (double)s->n_nonzero / (double)s->n_weights;
            cr_assert(s->fmt != CG_FMT_FKW || d <= CG_FKW_MAX_DENSITY);
            if (s->fmt == CG_FMT_FKW)
                continue;
            seen[s->fmt == CG_FMT_CSR ? 0 : s->fmt == CG_FMT_BITMASK ? 1 : 2]++;
            /* The choice is monotone in density and the reason says so. */
            if (s->fmt == CG_FMT_CSR)
                cr_assert(strstr(s->why, "the CSR/bitmask one") != NULL, "%s", s->why);
            if (s->fmt == CG_FMT_DENSE || s->fmt == CG_FMT_IRREGULAR)
                cr_assert(d >= 1.0 || strstr(s->why, "dense is faster") != NULL, "%s", s->why);
        }
        cg_plan_free(p);
        dp_model_free(c);
    }
    cr_assert_gt(seen[0], 0, "some layer in CSR");
    cr_assert_gt(seen[2], 0, "some layer dense");
    dp_model_free(m);
    DP_ASSERT_NO_LEAKS();
}

Test(cg_sparse, quantized_weights_are_stored_at_their_bit_width, .timeout = 240)
{
    struct dp_errinfo ei = {DP_OK, ""};
    struct dp_model *fl = NULL, *q = NULL;
    cr_assert_eq(cg_fixture_model("resnet20-cifar", 3, 32, 32, 0, 0, &fl, &ei), DP_OK, "%s",
                 ei.msg);
    cr_assert_eq(cg_fixture_model("resnet20-cifar", 3, 32, 32, 0, 0, &q, &ei), DP_OK, "%s", ei.msg);
    struct proj_params pp = proj_params_default();
    pp.bits = 4; /* a * {-7..7}, one scale per layer; BN folds make it one per channel */
    cg_sp_project(q, quant_kbit, &pp);
    char dir[256];
    struct cg_compile_summary sf, sq;
    cr_assert_eq(cg_sp_build_run(fl, "cg-q32", "native", NULL, &sf, dir, sizeof(dir)), 0);
    const long float_bytes = cg_sp_file_size(dir, "weights.bin");
    cg_sp_cleanup(dir);
    cr_assert_eq(cg_sp_build_run(q, "cg-q4", "native", NULL, &sq, dir, sizeof(dir)), 0,
                 "bench failed (see %s/bench.err)", dir);
    const long q_bytes = cg_sp_file_size(dir, "weights.bin");
    cg_sp_cleanup(dir);
    cr_assert_eq(sf.n_quantized, 0);
    cr_assert_gt(sq.n_quantized, 19, "%d arrays quantized", sq.n_quantized);
    /* 4 of 32 bits, plus per-channel codebooks and the float biases. */
    cr_assert_lt(q_bytes * 5, float_bytes, "%ld vs %ld bytes", q_bytes, float_bytes);
    cr_assert_eq(cg_sp_build_run(q, "cg-q4p", "portable", NULL, &sq, dir, sizeof(dir)), 0,
                 "bench failed (see %s/bench.err)", dir);
    cg_sp_cleanup(dir);
    dp_model_free(fl);
    dp_model_free(q);
    DP_ASSERT_NO_LEAKS();
}

Test(cg_sparse, pattern_layers_with_ternary_values_are_fkw_quantized, .timeout = 240)
{
    struct dp_errinfo ei = {DP_OK, ""};
    struct dp_model *m = NULL;
    cr_assert_eq(cg_fixture_model("resnet20-cifar", 3, 32, 32, 8, 3.6, &m, &ei), DP_OK, "%s",
                 ei.msg);
    struct proj_params pp = proj_params_default();
    pp.keep_zeros = 1; /* the pruned support stays, every kept weight +-a */
    cg_sp_project(m, quant_ternary, &pp);
    char dir[256];
    struct cg_compile_summary s;
    cr_assert_eq(cg_sp_build_run(m, "cg-pq", "native", NULL, &s, dir, sizeof(dir)), 0,
                 "bench failed (see %s/bench.err)", dir);
    cr_assert_gt(s.n_fkw, 15);
    cr_assert_gt(s.n_quantized, 15);
    /* 2 bits per kept weight (+a, -a and per-channel codebooks): far below
     * the float FKW file of the same model (about 4 bytes per kept weight). */
    cr_assert_lt(cg_sp_file_size(dir, "weights.bin"), 60000, "%ld",
                 cg_sp_file_size(dir, "weights.bin"));
    cg_sp_cleanup(dir);
    dp_model_free(m);
    DP_ASSERT_NO_LEAKS();
}

Test(cg_sparse, binary_codes_round_trip_in_every_row_layout)
{
    /* 3 rows of 5 with 2 values each (shared codebook: 1 bit). */
    const float v[15] = {1, -1, 1, 1, -1, 2, 2, -2, 2, -2, 1, 1, 1, -1, -1};
    struct cg_qmap div = {CG_QROW_DIV, 5, 0, NULL, 0, 3};
    struct cg_qplan qp;
    cr_assert_eq(cg_quant_analyse(v, 15, &div, &qp, NULL), DP_OK);
    cr_assert_eq(qp.bits, 2, "4 values in all: one shared codebook of 2 bits");
    cr_assert_eq(qp.per_row, 0);
    float big[4096];
    for (int i = 0; i < 4096; i++)
        big[i] = (float)((i * 7919 % 13) % 2 ? 0.5 : -0.25) * (float)(1 + i / 1024);
    struct cg_qmap rows = {CG_QROW_DIV, 1024, 0, NULL, 0, 4};
    cr_assert_eq(cg_quant_analyse(big, 4096, &rows, &qp, NULL), DP_OK);
    cr_assert_eq(qp.bits, 1, "two values per row");
    cr_assert_eq(qp.per_row, 1, "8 values in all: per-row codebooks of 2 are smaller");
    struct cg_weights w = {0};
    w.quantize = 1;
    w.sec = dp_calloc(1, sizeof(struct cg_wsec));
    size_t off;
    cr_assert_eq(cg_weights_append(&w, "0123456789abcdef", 16, &off, NULL), DP_OK);
    cr_assert_eq(cg_quant_add(&w, 0, big, 4096, &rows, &w.sec[0].w, NULL), DP_OK);
    cg_quant_finish(&w);
    cr_assert_eq(w.n_q, 1);
    cr_assert_geq(w.sec[0].w, w.len, "the floats live after the file");
    cr_assert_lt(w.len, 4096 / 8 + 4 * 2 * 4 + 256, "codes at 1 bit: %zu bytes", w.len);
    /* Decode as the bundle does and compare bit for bit. */
    const struct cg_qsec *q = &w.q[0];
    const float *lv = (const float *)(w.data + q->levels);
    for (size_t e = 0; e < 4096; e++) {
        const size_t bit = e * (size_t)q->bits, r = e / 1024;
        const unsigned c = ((unsigned)w.data[q->codes + bit / 8] |
                            ((unsigned)w.data[q->codes + bit / 8 + 1] << 8)) >>
                           (bit % 8);
        const float d = lv[r * (size_t)q->nlev + (c & ((1u << q->bits) - 1u))];
        cr_assert(memcmp(&d, &big[e], sizeof(d)) == 0, "element %zu", e);
    }
    cg_weights_free(&w);
    DP_ASSERT_NO_LEAKS();
}

/* The schedule.json of a bundle with CSR layers (their one sparse
 * schedule, "sparse": true) reproduces it; the same layer scheduled dense
 * is not a schedule the compiler generates for it. */
Test(cg_sparse, a_schedule_file_reproduces_a_sparse_bundle, .timeout = 120)
{
    struct dp_errinfo ei = {DP_OK, ""};
    struct dp_model *m = NULL;
    cr_assert_eq(cg_fixture_model("lenet5", 1, 28, 28, 0, 0, &m, &ei), DP_OK, "%s", ei.msg);
    struct proj_params pp = proj_params_default();
    pp.rate = 12;
    cg_sp_project(m, proj_irregular, &pp);
    char a[256], b[256], sp[320], bad[320];
    dp_test_tmpdir_make(a, sizeof(a), "cg-sp-sa");
    dp_test_tmpdir_make(b, sizeof(b), "cg-sp-sb");
    const struct cg_compile_opts oa = {"l", "l", "native", 2, 0.0, NULL, NULL};
    struct cg_compile_summary sum;
    cr_assert_eq(cg_compile(m, a, &oa, &sum, &ei), DP_OK, "%s", ei.msg);
    cr_assert_gt(sum.n_csr + sum.n_bitmask, 0, "the fixture has sparse layers");
    snprintf(sp, sizeof(sp), "%s/schedule.json", a);
    const struct cg_compile_opts ob = {"l", "l", "native", 2, 0.0, sp, NULL};
    cr_assert_eq(cg_compile(m, b, &ob, NULL, &ei), DP_OK, "%s", ei.msg);
    static const char *const files[] = {"model.c", "weights.bin", "schedule.json"};
    for (int i = 0; i < 3; i++) {
        char pa[400], pb[400];
        snprintf(pa, sizeof(pa), "%s/%s", a, files[i]);
        snprintf(pb, sizeof(pb), "%s/%s", b, files[i]);
        unsigned char *da = NULL, *db = NULL;
        size_t na = 0, nb = 0;
        cr_assert_eq(dp_file_read(pa, pa, 1 << 26, &da, &na, &ei), DP_OK, "%s", ei.msg);
        cr_assert_eq(dp_file_read(pb, pb, 1 << 26, &db, &nb, &ei), DP_OK, "%s", ei.msg);
        cr_assert(na == nb && memcmp(da, db, na) == 0, "%s differs", files[i]);
        dp_free(da);
        dp_free(db);
    }
    /* The first sparse layer's entry without its sparse kernel: refused. */
    unsigned char *text = NULL;
    size_t len = 0;
    cr_assert_eq(dp_file_read(sp, sp, 1 << 26, &text, &len, &ei), DP_OK, "%s", ei.msg);
    char *t = dp_malloc(len + 1);
    cr_assert_not_null(t);
    memcpy(t, text, len);
    t[len] = '\0';
    char *at = strstr(t, "\"sparse\": true");
    cr_assert_not_null(at, "%s", t);
    memcpy(at, "\"sparse\":    0", strlen("\"sparse\": true"));
    snprintf(bad, sizeof(bad), "%s/bad.json", b);
    FILE *f = fopen(bad, "w");
    cr_assert_not_null(f);
    cr_assert_eq(fwrite(t, 1, len, f), len);
    cr_assert_eq(fclose(f), 0);
    const struct cg_compile_opts oc = {"l", "l", "native", 2, 0.0, bad, NULL};
    cr_assert_eq(cg_compile(m, b, &oc, NULL, &ei), DP_EINVAL);
    cr_assert(strstr(ei.msg, "not a schedule this compiler generates") != NULL, "%s", ei.msg);
    dp_free(t);
    dp_free(text);
    dp_test_tmpdir_remove(a);
    dp_test_tmpdir_remove(b);
    dp_model_free(m);
    DP_ASSERT_NO_LEAKS();
}
