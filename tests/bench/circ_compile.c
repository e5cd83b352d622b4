/*
 * The compiled block-circulant linear layer against the compiled dense
 * linear layer (issue 15; run by tests/bench/circ_compile.sh, which says
 * how to build it). For each shape OUTxIN and block k it builds a one-layer
 * model (circ_linear, seeded weights), compiles it with the compiler's
 * FFT kernel (reference outputs from circ_forward_ref, the brute-force
 * definition, so bench's 1e-4 check holds the bundle to it), builds the
 * bundle with its Makefile and runs its bench at batch 1 on one thread;
 * the dense peer is a linear layer holding the expanded matrix of the k=4
 * weights, compiled the same way with the engine's reference. Prints one
 * table row per run: the layer's fastest image and the run's median.
 *
 *   circ_compile DIR RUNS OUTxIN[,OUTxIN...] K[,K...]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/model.h"
#include "worker/circulant/circ.h"
#include "worker/codegen/cg_circ.h"
#include "worker/codegen/cg_compile.h"

static enum dp_err bc_ref(void *ctx, const float *x, int n, float *y, struct dp_errinfo *ei)
{
    (void)ei;
    const struct dp_model *m = ctx;
    const struct dp_layer *l = &m->layers[0];
    const int cols = m->in_c * m->in_h * m->in_w, rows = l->out_c;
    const float *w = dp_param_data(m, &m->params[l->first_param]);
    const float *b = dp_param_data(m, &m->params[l->first_param + 1]);
    struct circ_dims d;
    circ_dims_init(&d, rows, cols, l->a.block);
    circ_forward_ref(y, rows, x, cols, w, &d, n, 0);
    for (int s = 0; s < n; s++)
        for (int r = 0; r < rows; r++)
            y[(size_t)s * rows + r] += b[r];
    return DP_OK;
}

static void bc_fill(float *p, size_t n, float a, uint64_t s)
{
    for (size_t i = 0; i < n; i++) {
        s ^= s >> 12;
        s ^= s << 25;
        s ^= s >> 27;
        p[i] = (float)(((double)((s * 2685821657736338717ull) >> 11) / 9007199254740992.0 * 2.0 -
                        1.0) *
                       a);
    }
}

/* A one-layer model: circ_linear rows x cols in blocks of k, or (k 0)
 * linear holding dense (rows, cols). */
static struct dp_model *bc_model(int rows, int cols, int k, const float *dense)
{
    struct dp_model *m = dp_model_new(1, 1, cols);
    struct dp_op_attrs a = {0};
    a.out_ch = rows;
    a.has_bias = 1;
    a.block = k;
    struct dp_errinfo ei = {DP_OK, ""};
    int in = DP_MODEL_INPUT;
    if (m == NULL ||
        dp_model_add_layer(m, "fc", k > 0 ? DP_OP_CIRC_LINEAR : DP_OP_LINEAR, &in, 1, &a, &ei) <
            0 ||
        dp_model_finalize(m, &ei) != DP_OK) {
        fprintf(stderr, "circ_compile: model: %s\n", ei.msg);
        exit(1);
    }
    float *w = dp_param_data(m, &m->params[0]), *b = dp_param_data(m, &m->params[1]);
    if (k > 0)
        bc_fill(w, m->params[0].numel, 0.05f, 0x1234567ull + (uint64_t)k);
    else
        memcpy(w, dense, (size_t)rows * (size_t)cols * sizeof(float));
    bc_fill(b, (size_t)rows, 0.1f, 77);
    return m;
}

/* Compiles, builds and benches m in dir; prints the row. */
static void bc_run(struct dp_model *m, const char *dir, const char *label, int runs, int k)
{
    const struct cg_compile_opts o = {"circ", "bench", "native", 1, 0.0, NULL, NULL};
    struct dp_errinfo ei = {DP_OK, ""};
    enum dp_err err = k > 0 ? cg_compile_ref(m, dir, &o, bc_ref, m, NULL, &ei)
                            : cg_compile(m, dir, &o, NULL, &ei);
    if (err) {
        fprintf(stderr, "circ_compile: %s: %s\n", label, ei.msg);
        exit(1);
    }
    char cmd[2048];
    snprintf(cmd, sizeof(cmd),
             "make -s -C %s > %s/build.log 2>&1 && %s/bench --runs %d --warmup %d --threads 1 "
             "--batch 1 > %s/bench.json",
             dir, dir, dir, runs, runs / 10 + 5, dir);
    if (system(cmd) != 0) {
        fprintf(stderr, "circ_compile: %s: build or bench failed (see %s)\n", label, dir);
        exit(1);
    }
    char path[1024], buf[8192];
    snprintf(path, sizeof(path), "%s/bench.json", dir);
    FILE *f = fopen(path, "r");
    size_t n = f != NULL ? fread(buf, 1, sizeof(buf) - 1, f) : 0;
    if (f != NULL)
        fclose(f);
    buf[n] = '\0';
    const char *p50 = strstr(buf, "\"p50\":"), *mn = strstr(buf, "\"min_ms\":");
    const char *isa = strstr(buf, "\"isa\":\"");
    const char *err_s = strstr(buf, "\"max_rel_err\":");
    if (p50 == NULL || mn == NULL || isa == NULL || err_s == NULL) {
        fprintf(stderr, "circ_compile: %s: no figures in %s\n", label, path);
        exit(1);
    }
    char isab[16] = "";
    sscanf(isa + 7, "%15[^\"]", isab);
    const struct dp_layer *l = &m->layers[0];
    const int cols = m->in_c * m->in_h * m->in_w;
    const long long stored = (long long)m->params[0].numel;
    const long long flops =
        k > 0 ? cg_circ_mv_flops(l->out_c, cols, k) + l->out_c : 2LL * l->out_c * cols + l->out_c;
    printf("%-12s %-6s %10lld %12lld %10.4f %10.4f %9.2e %s\n", label, k > 0 ? "fft" : "dense",
           stored, flops, strtod(mn + 9, NULL), strtod(p50 + 6, NULL), strtod(err_s + 14, NULL),
           isab);
    fflush(stdout);
}

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: circ_compile DIR RUNS OUTxIN[,OUTxIN...] K[,K...]\n");
        return 2;
    }
    const char *dir = argv[1];
    const int runs = (int)strtol(argv[2], NULL, 10);
    printf("%-12s %-6s %10s %12s %10s %10s %9s %s\n", "layer", "kernel", "stored", "flops",
           "min_ms", "p50_ms", "rel_err", "isa");
    char shapes[256];
    snprintf(shapes, sizeof(shapes), "%s", argv[3]);
    for (char *sv = NULL, *sh = strtok_r(shapes, ",", &sv); sh != NULL;
         sh = strtok_r(NULL, ",", &sv)) {
        int rows = 0, cols = 0;
        if (sscanf(sh, "%dx%d", &rows, &cols) != 2 || rows < 1 || cols < 1) {
            fprintf(stderr, "circ_compile: bad shape '%s'\n", sh);
            return 2;
        }
        /* The dense peer: the expanded matrix of block-4 weights (any
         * matrix costs a dense kernel the same). */
        struct dp_model *c4 = bc_model(rows, cols, 4, NULL);
        float *dense = dp_malloc((size_t)rows * (size_t)cols * sizeof(float));
        if (dense == NULL)
            return 1;
        struct circ_dims d;
        circ_dims_init(&d, rows, cols, 4);
        circ_expand(dense, dp_param_data(c4, &c4->params[0]), &d);
        struct dp_model *dm = bc_model(rows, cols, 0, dense);
        char label[64], sub[1024];
        snprintf(label, sizeof(label), "%dx%d", rows, cols);
        snprintf(sub, sizeof(sub), "%s/%s-dense", dir, label);
        bc_run(dm, sub, label, runs, 0);
        dp_model_free(dm);
        dp_model_free(c4);
        dp_free(dense);
        char ks[128];
        snprintf(ks, sizeof(ks), "%s", argv[4]);
        for (char *kv = NULL, *kt = strtok_r(ks, ",", &kv); kt != NULL;
             kt = strtok_r(NULL, ",", &kv)) {
            const int k = (int)strtol(kt, NULL, 10);
            if (!cg_circ_fft_ok(k)) {
                fprintf(stderr, "circ_compile: block %d has no FFT kernel\n", k);
                return 2;
            }
            struct dp_model *cm = bc_model(rows, cols, k, NULL);
            snprintf(sub, sizeof(sub), "%s/%s-k%d", dir, label, k);
            char lk[80];
            snprintf(lk, sizeof(lk), "%s k=%d", label, k);
            bc_run(cm, sub, lk, runs, k);
            dp_model_free(cm);
        }
    }
    return 0;
}
