/*
 * The circulant scheme's side of the ADMM engine: the Z-step makes every
 * constrained matrix block-circulant (per kernel tap; both matrices of an
 * lstm or gru) and is idempotent; conversion gives a model whose expanded
 * vectors are the projected dense weights, computing the same products;
 * spectrum quantization leaves a small set of levels.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "common/alloc.h"
#include "common/model.h"
#include "tests/unit/test_util.h"
#include "worker/circulant/circ.h"
#include "worker/compress/admm_int.h"
#include "worker/compress/circ_convert.h"
#include "worker/nn/net.h"

static float circ_rand(struct dp_test_rng *r)
{
    return (float)((double)(dp_test_rng_next(r) >> 11) * 0x1.0p-53 * 2.0 - 1.0);
}

static void circ_fill(struct dp_model *m, uint64_t seed)
{
    struct dp_test_rng r = {seed};
    for (size_t i = 0; i < m->n_floats; i++)
        m->data[i] = circ_rand(&r);
}

/* Whether tap t of z (O, I, taps) is block-circulant with k x k blocks
 * (first-column convention: constant along each wrapped diagonal). */
static int circ_is_block_circulant(const float *z, int O, int I, int taps, int t, int k)
{
    for (int o = 0; o < O; o++)
        for (int i = 0; i < I; i++) {
            const int bo = o / k, bi = i / k, r = o % k, s = i % k;
            /* The diagonal's first entry inside the matrix. */
            for (int r2 = 0; r2 < k; r2++) {
                const int s2 = ((r2 - (r - s)) % k + k) % k;
                const int o2 = bo * k + r2, i2 = bi * k + s2;
                if (o2 >= O || i2 >= I)
                    continue;
                if (z[((size_t)o * I + i) * taps + t] != z[((size_t)o2 * I + i2) * taps + t])
                    return 0;
            }
        }
    return 1;
}

Test(circ_admm, zstep_is_block_circulant_per_tap_and_idempotent)
{
    /* A 3x3 conv whose channel counts the block does not divide (padding). */
    const struct proj_shape s = {10, 7, 3, 3};
    struct proj_params p = proj_params_default();
    p.block = 4;
    const size_t n = 10 * 7 * 9;
    float *z = dp_malloc(n * sizeof(float)), *z2 = dp_malloc(n * sizeof(float));
    void *scratch = dp_malloc_aligned(proj_circulant_scratch_bytes(&s, p.block));
    struct dp_test_rng r = {11};
    for (size_t i = 0; i < n; i++)
        z[i] = circ_rand(&r);
    float *orig = dp_malloc(n * sizeof(float));
    memcpy(orig, z, n * sizeof(float));
    proj_circulant(z, &s, &p, scratch);
    for (int t = 0; t < 9; t++)
        cr_assert(circ_is_block_circulant(z, 10, 7, 9, t, 4), "tap %d is not block-circulant", t);
    cr_assert_not(circ_is_block_circulant(orig, 10, 7, 9, 0, 4), "the input was not");
    memcpy(z2, z, n * sizeof(float));
    proj_circulant(z2, &s, &p, scratch);
    cr_assert_eq(memcmp(z, z2, n * sizeof(float)), 0, "projecting twice changed the weights");
    /* The closest: moving any block vector entry of the result away from
     * the diagonal mean only increases the distance to the input. */
    double d0 = 0.0;
    for (size_t i = 0; i < n; i++)
        d0 += ((double)z[i] - orig[i]) * ((double)z[i] - orig[i]);
    for (int trial = 0; trial < 20; trial++) {
        memcpy(z2, z, n * sizeof(float));
        const float eps = 0.01f * (float)(trial + 1);
        /* Shift one whole wrapped diagonal of block (0, 1) of tap 4: stays feasible. */
        const int diag = trial % 4;
        for (int rr = 0; rr < 4; rr++) {
            const int o = rr, i = 4 + ((rr - diag) % 4 + 4) % 4;
            if (i < 7)
                z2[((size_t)o * 7 + i) * 9 + 4] += trial % 2 ? eps : -eps;
        }
        double d = 0.0;
        for (size_t i = 0; i < n; i++)
            d += ((double)z2[i] - orig[i]) * ((double)z2[i] - orig[i]);
        cr_assert_gt(d, d0, "a feasible neighbour is closer than the projection");
    }
    dp_free(z);
    dp_free(z2);
    dp_free(orig);
    dp_free_aligned(scratch);
    DP_ASSERT_NO_LEAKS();
}

/* input (1, 8, 12) -> conv 3x3 (6 out) -> relu -> flatten -> fc1 (20) ->
 * relu -> fc2 (5); or with rnn, an lstm (10 units) and a gru (6 units)
 * over the 8 steps of 12 features, then fc2. */
static struct dp_model *circ_model(int rnn)
{
    struct dp_errinfo ei = {0};
    struct dp_model *m = dp_model_new(1, 8, 12);
    int x;
    if (rnn) {
        struct dp_op_attrs a;
        memset(&a, 0, sizeof(a));
        a.out_ch = 10;
        a.has_bias = 1;
        const int in = DP_MODEL_INPUT;
        x = dp_model_add_layer(m, "lstm", DP_OP_LSTM, &in, 1, &a, &ei);
        a.out_ch = 6;
        if (x >= 0)
            x = dp_model_add_layer(m, "gru", DP_OP_GRU, &x, 1, &a, &ei);
    } else {
        x = dp_model_add_conv2d(m, "conv", DP_MODEL_INPUT, 6, 3, 1, 1, 1, 1, &ei);
        if (x >= 0)
            x = dp_model_add_unary(m, "relu", DP_OP_RELU, x, &ei);
    }
    if (x >= 0)
        x = dp_model_add_unary(m, "flatten", DP_OP_FLATTEN, x, &ei);
    if (x >= 0)
        x = dp_model_add_linear(m, "fc1", x, 20, &ei);
    if (x >= 0)
        x = dp_model_add_unary(m, "relu1", DP_OP_RELU, x, &ei);
    if (x >= 0)
        x = dp_model_add_linear(m, "fc2", x, 5, &ei);
    cr_assert_geq(x, 0, "%s", ei.msg);
    cr_assert_eq(dp_model_finalize(m, &ei), DP_OK, "%s", ei.msg);
    return m;
}

static void circ_spec(const char *text, struct dp_spec *s)
{
    struct dp_errinfo ei = {0};
    cr_assert_eq(dp_spec_parse(text, strlen(text), s, &ei), DP_OK, "%s", ei.msg);
}

Test(circ_admm, targets_cover_conv_taps_and_both_rnn_matrices)
{
    struct dp_spec spec;
    circ_spec("{\"layers\":[{\"match\":\"fc2\",\"prune\":{\"scheme\":\"irregular\",\"rate\":2}}]}",
              &spec);
    struct dp_model *m = circ_model(1);
    circ_fill(m, 3);
    struct dp_spec cs;
    circ_spec("{\"layers\":[{\"match\":\"*\",\"circulant\":{\"block\":4}}]}", &cs);
    struct admm_ctx c;
    memset(&c, 0, sizeof(c));
    c.m = m;
    c.spec = &cs;
    struct dp_errinfo ei = {0};
    cr_assert_eq(admm_targets(&c, &ei), DP_OK, "%s", ei.msg);
    /* lstm: weight_ih, weight_hh; gru: the same; fc1; fc2. */
    cr_assert_eq(c.n_t, 6);
    static const char *const want[] = {"lstm.weight_ih", "lstm.weight_hh", "gru.weight_ih",
                                       "gru.weight_hh",  "fc1.weight",     "fc2.weight"};
    for (int k = 0; k < c.n_t; k++) {
        struct admm_target *t = &c.t[k];
        const struct dp_param *w = &m->params[t->param];
        cr_assert_str_eq(w->name, want[k]);
        cr_assert_not(t->converted);
        cr_assert_eq(t->cd.rows, (int)w->shape[0]);
        cr_assert_eq(t->cd.cols, (int)w->shape[1]);
        float *x = admm_w(&c, t);
        admm_project(&c, t, x, 1);
        cr_assert(circ_is_block_circulant(x, t->cd.rows, t->cd.cols, 1, 0, 4), "%s", w->name);
    }
    cr_assert_eq(c.t[0].cd.rows, 40);
    cr_assert_eq(c.t[0].cd.cols, 12);
    cr_assert_eq(c.t[1].cd.cols, 10);
    cr_assert_eq(c.t[3].cd.rows, 18);
    /* Plain pruning rules leave recurrent layers alone, as before. */
    dp_free(c.t);
    dp_free_aligned(c.scratch);
    memset(&c, 0, sizeof(c));
    c.m = m;
    c.spec = &spec;
    cr_assert_eq(admm_targets(&c, &ei), DP_OK, "%s", ei.msg);
    cr_assert_eq(c.n_t, 1);
    dp_free(c.t);
    dp_free_aligned(c.scratch);
    dp_model_free(m);
    DP_ASSERT_NO_LEAKS();
}

Test(circ_admm, grouped_conv_is_refused_by_name)
{
    struct dp_errinfo ei = {0};
    struct dp_model *m = dp_model_new(4, 6, 6);
    int x = dp_model_add_conv2d(m, "dw", DP_MODEL_INPUT, 4, 3, 1, 1, 2, 1, &ei);
    cr_assert_geq(x, 0);
    cr_assert_eq(dp_model_finalize(m, &ei), DP_OK, "%s", ei.msg);
    struct dp_spec cs;
    circ_spec("{\"layers\":[{\"circulant\":{\"block\":2}}]}", &cs);
    struct admm_ctx c;
    memset(&c, 0, sizeof(c));
    c.m = m;
    c.spec = &cs;
    cr_assert_eq(admm_targets(&c, &ei), DP_EINVAL);
    cr_assert(strstr(ei.msg, "'dw'") && strstr(ei.msg, "groups 1"), "%s", ei.msg);
    dp_free(c.t);
    dp_free_aligned(c.scratch);
    int block[1] = {2};
    struct dp_model *q = NULL;
    cr_assert_eq(cp_circ_convert(m, block, 0, 1, &q, &ei), DP_EINVAL);
    cr_assert(strstr(ei.msg, "grouped conv2d"), "%s", ei.msg);
    cr_assert_null(q);
    dp_model_free(m);
    DP_ASSERT_NO_LEAKS();
}

/* y = x W^T of dense (rows, cols), in double. */
static void circ_dense_mv(double *y, const float *x, const float *w, int rows, int cols)
{
    for (int r = 0; r < rows; r++) {
        double acc = 0.0;
        for (int c = 0; c < cols; c++)
            acc += (double)w[(size_t)r * cols + c] * x[c];
        y[r] = acc;
    }
}

/* Converts m (every circulant-rule layer hard-projected first) and checks
 * the converted parameters against the projected dense ones. */
static void circ_check_conversion(int rnn, int k)
{
    struct dp_model *m = circ_model(rnn);
    circ_fill(m, 5 + (uint64_t)rnn);
    char text[160];
    snprintf(text, sizeof(text), "{\"layers\":[{\"match\":\"*\",\"circulant\":{\"block\":%d}}]}",
             k);
    struct dp_spec cs;
    circ_spec(text, &cs);
    struct admm_ctx c;
    memset(&c, 0, sizeof(c));
    c.m = m;
    c.spec = &cs;
    struct dp_errinfo ei = {0};
    cr_assert_eq(admm_targets(&c, &ei), DP_OK, "%s", ei.msg);
    int *block = dp_calloc((size_t)m->n_layers, sizeof(int));
    for (int j = 0; j < c.n_t; j++) {
        admm_project(&c, &c.t[j], admm_w(&c, &c.t[j]), 0); /* the hard projection */
        block[c.t[j].layer] = k;
    }
    struct dp_model *q = NULL;
    cr_assert_eq(cp_circ_convert(m, block, 0, 1, &q, &ei), DP_OK, "%s", ei.msg);
    for (int i = 0; i < m->n_layers; i++) {
        const enum dp_op want = !block[i]                         ? m->layers[i].op
                                : m->layers[i].op == DP_OP_LINEAR ? DP_OP_CIRC_LINEAR
                                : m->layers[i].op == DP_OP_CONV2D ? DP_OP_CIRC_CONV2D
                                                                  : m->layers[i].op;
        cr_assert_eq(q->layers[i].op, want, "layer %s", m->layers[i].name);
        cr_assert_eq(q->layers[i].a.block, block[i]);
    }
    cr_assert_lt(q->n_floats, m->n_floats, "the vectors are smaller than the matrices");
    for (int pi = 0; pi < q->n_params; pi++) {
        const struct dp_param *d = &q->params[pi];
        const struct dp_param *s = dp_model_param_find(m, d->name);
        cr_assert_not_null(s, "%s", d->name);
        const float *dv = dp_param_data(q, d), *sv = dp_param_data(m, s);
        if (!block[d->layer] || s->ndim == 1) {
            cr_assert_eq(memcmp(dv, sv, d->numel * sizeof(float)), 0, "%s copied", d->name);
            continue;
        }
        /* Expanded vectors == the projected dense matrix, tap by tap. */
        const int rows = (int)s->shape[0], cols = (int)s->shape[1];
        const int taps = s->ndim == 4 ? (int)(s->shape[2] * s->shape[3]) : 1;
        struct circ_dims cd;
        circ_dims_init(&cd, rows, cols, k);
        cr_assert_eq(d->numel, circ_dims_numel(&cd) * (size_t)taps, "%s", d->name);
        float *mat = dp_malloc((size_t)rows * cols * sizeof(float));
        for (int t = 0; t < taps; t++) {
            circ_expand(mat, dv + (size_t)t * circ_dims_numel(&cd), &cd);
            for (int o = 0; o < rows; o++)
                for (int i = 0; i < cols; i++)
                    cr_assert_eq(mat[(size_t)o * cols + i], sv[((size_t)o * cols + i) * taps + t],
                                 "%s tap %d (%d, %d)", d->name, t, o, i);
        }
        /* The product of the circulant form (the reference the FFT layers
         * are held to) is the dense layer's with the projected weights. */
        if (taps == 1) {
            struct dp_test_rng r = {9};
            float *x = dp_malloc((size_t)cols * sizeof(float));
            float *y = dp_malloc((size_t)rows * sizeof(float));
            double *yd = dp_malloc((size_t)rows * sizeof(double));
            for (int i = 0; i < cols; i++)
                x[i] = circ_rand(&r);
            circ_forward_ref(y, rows, x, cols, dv, &cd, 1, 0);
            circ_dense_mv(yd, x, sv, rows, cols);
            for (int o = 0; o < rows; o++)
                cr_assert_float_eq(y[o], yd[o], 1e-5 * (1.0 + fabs(yd[o])), "%s row %d", d->name,
                                   o);
            dp_free(x);
            dp_free(y);
            dp_free(yd);
        }
        dp_free(mat);
    }
    dp_free(block);
    dp_free(c.t);
    dp_free_aligned(c.scratch);
    dp_model_free(q);
    dp_model_free(m);
}

Test(circ_admm, conversion_keeps_the_projected_weights)
{
    circ_check_conversion(0, 4); /* conv (6, 1) taps, fc1 (20, 576), fc2 (5, 20) */
    circ_check_conversion(0, 3); /* padding everywhere */
    circ_check_conversion(1, 4); /* lstm and gru matrices */
    DP_ASSERT_NO_LEAKS();
}

Test(circ_admm, fresh_conversion_draws_within_the_dense_bound)
{
    struct dp_model *m = circ_model(0);
    circ_fill(m, 8);
    int *block = dp_calloc((size_t)m->n_layers, sizeof(int));
    const int fc1 = dp_model_layer_find(m, "fc1");
    block[fc1] = 8;
    struct dp_model *q = NULL, *q2 = NULL;
    struct dp_errinfo ei = {0};
    cr_assert_eq(cp_circ_convert(m, block, 1, 42, &q, &ei), DP_OK, "%s", ei.msg);
    cr_assert_eq(cp_circ_convert(m, block, 1, 42, &q2, &ei), DP_OK, "%s", ei.msg);
    cr_assert_eq(memcmp(q->data, q2->data, q->n_floats * sizeof(float)), 0, "seeded");
    const struct dp_param *w = dp_model_param_find(q, "fc1.weight");
    const float bound = 1.0f / sqrtf(576.0f);
    double sum = 0.0;
    for (size_t i = 0; i < w->numel; i++) {
        const float v = dp_param_data(q, w)[i];
        cr_assert_leq(fabsf(v), bound);
        sum += fabs(v);
    }
    cr_assert_gt(sum / (double)w->numel, 0.3 * bound, "drawn, not zero");
    /* The other layers keep their weights. */
    const struct dp_param *cw = dp_model_param_find(q, "conv.weight");
    cr_assert_eq(memcmp(dp_param_data(q, cw),
                        dp_param_data(m, dp_model_param_find(m, "conv.weight")),
                        cw->numel * sizeof(float)),
                 0);
    dp_free(block);
    dp_model_free(q);
    dp_model_free(q2);
    dp_model_free(m);
    DP_ASSERT_NO_LEAKS();
}

/* The real DFT of c (k values) into re, im (k/2 + 1 each), in double. */
static void circ_dft(double *re, double *im, const float *c, int k)
{
    for (int f = 0; f <= k / 2; f++) {
        re[f] = im[f] = 0.0;
        for (int t = 0; t < k; t++) {
            const double a = 2.0 * 3.14159265358979323846 * f * t / k;
            re[f] += c[t] * cos(a);
            im[f] -= c[t] * sin(a);
        }
    }
}

static void circ_check_spectrum(int k, int bits)
{
    const int n_vec = 40;
    const struct proj_shape s = {n_vec, k, 1, 1};
    struct proj_params p = proj_params_default();
    p.bits = bits;
    const size_t n = (size_t)n_vec * k;
    float *z = dp_malloc(n * sizeof(float)), *z2 = dp_malloc(n * sizeof(float));
    void *scratch = dp_malloc_aligned(proj_circulant_scratch_bytes(&s, k));
    struct dp_test_rng r = {17 + (uint64_t)k};
    for (size_t i = 0; i < n; i++)
        z[i] = circ_rand(&r);
    const double a = quant_spectrum_scale(z, &s, &p, scratch);
    cr_assert_gt(a, 0.0);
    quant_spectrum(z, &s, &p, scratch);
    const int M = (1 << (bits - 1)) - 1;
    /* Every component of every spectrum is n * a, |n| <= M: at most
     * 2^bits - 1 levels, counted. */
    char *seen = dp_calloc((size_t)(2 * M + 1), 1);
    double *re = dp_malloc((size_t)(k / 2 + 1) * sizeof(double));
    double *im = dp_malloc((size_t)(k / 2 + 1) * sizeof(double));
    int levels = 0;
    for (int v = 0; v < n_vec; v++) {
        circ_dft(re, im, z + (size_t)v * k, k);
        for (int f = 0; f <= k / 2; f++) {
            for (int part = 0; part < 2; part++) {
                const double x = (part ? im[f] : re[f]) / a;
                const double q = round(x);
                cr_assert_float_eq(x, q, 1e-3, "k %d bits %d: vector %d bin %d is %g levels", k,
                                   bits, v, f, x);
                cr_assert_leq(fabs(q), (double)M);
                if (!seen[(int)q + M]) {
                    seen[(int)q + M] = 1;
                    levels++;
                }
            }
        }
    }
    cr_assert_leq(levels, (1 << bits) - 1);
    /* Quantizing again keeps it (same scale, same levels). */
    cr_assert_float_eq(quant_spectrum_scale(z, &s, &p, scratch), a, 1e-6 * a);
    memcpy(z2, z, n * sizeof(float));
    quant_spectrum(z2, &s, &p, scratch);
    for (size_t i = 0; i < n; i++)
        cr_assert_float_eq(z2[i], z[i], 1e-5);
    dp_free(seen);
    dp_free(re);
    dp_free(im);
    dp_free(z);
    dp_free(z2);
    dp_free_aligned(scratch);
}

Test(circ_admm, spectrum_quantization_leaves_few_levels)
{
    circ_check_spectrum(8, 4);
    circ_check_spectrum(7, 3); /* odd: no Nyquist bin */
    circ_check_spectrum(16, 8);
    circ_check_spectrum(2, 2);
    DP_ASSERT_NO_LEAKS();
}

Test(circ_admm, spectrum_error_shrinks_with_bits)
{
    const int k = 16, n_vec = 30;
    const struct proj_shape s = {n_vec, k, 1, 1};
    const size_t n = (size_t)n_vec * k;
    float *z = dp_malloc(n * sizeof(float)), *orig = dp_malloc(n * sizeof(float));
    void *scratch = dp_malloc_aligned(proj_circulant_scratch_bytes(&s, k));
    struct dp_test_rng r = {23};
    for (size_t i = 0; i < n; i++)
        orig[i] = circ_rand(&r);
    double prev = INFINITY;
    for (int bits = 2; bits <= 16; bits += 2) {
        struct proj_params p = proj_params_default();
        p.bits = bits;
        memcpy(z, orig, n * sizeof(float));
        quant_spectrum(z, &s, &p, scratch);
        double e = 0.0;
        for (size_t i = 0; i < n; i++)
            e += ((double)z[i] - orig[i]) * ((double)z[i] - orig[i]);
        cr_assert_lt(e, prev, "bits %d", bits);
        prev = e;
    }
    cr_assert_lt(prev, 1e-6, "16 bits are close to float");
    dp_free(z);
    dp_free(orig);
    dp_free_aligned(scratch);
    DP_ASSERT_NO_LEAKS();
}

/* lenet-300-100's shape: input (1, 28, 28) -> fc1 300 -> relu -> fc2 100 -> relu -> fc3 10. */
static struct dp_model *circ_lenet(void)
{
    struct dp_errinfo ei = {0};
    struct dp_model *m = dp_model_new(1, 28, 28);
    int x = dp_model_add_unary(m, "flatten", DP_OP_FLATTEN, DP_MODEL_INPUT, &ei);
    static const char *const names[] = {"fc1", "fc2", "fc3"};
    static const int outs[] = {300, 100, 10};
    for (int i = 0; i < 3 && x >= 0; i++) {
        x = dp_model_add_linear(m, names[i], x, outs[i], &ei);
        if (x >= 0 && i < 2)
            x = dp_model_add_unary(m, i ? "relu2" : "relu1", DP_OP_RELU, x, &ei);
    }
    cr_assert_geq(x, 0, "%s", ei.msg);
    cr_assert_eq(dp_model_finalize(m, &ei), DP_OK, "%s", ei.msg);
    circ_fill(m, 31);
    return m;
}

Test(circ_admm, in_place_conversion_report_and_resume)
{
    struct dp_spec cs;
    circ_spec("{\"layers\":[{\"match\":\"fc*\",\"circulant\":{\"block\":16,\"spectrum_bits\":8}}]}",
              &cs);
    struct nn_dataset none = {0};
    struct admm_ctx c;
    memset(&c, 0, sizeof(c));
    struct dp_model *m = circ_lenet();
    c.m = m;
    c.spec = &cs;
    c.train = c.val = c.test = &none;
    c.trace = json_array();
    c.stages = json_array();
    c.z = dp_calloc(m->n_floats, sizeof(float));
    c.u = dp_calloc(m->n_floats, sizeof(float));
    c.mask = dp_calloc(m->n_floats, sizeof(float));
    struct dp_errinfo ei = {0};
    cr_assert_eq(admm_targets(&c, &ei), DP_OK, "%s", ei.msg);
    cr_assert_eq(c.n_t, 3);
    for (int k = 0; k < c.n_t; k++)
        admm_project(&c, &c.t[k], admm_w(&c, &c.t[k]), 0);
    float *fc1 = dp_malloc(300 * 784 * sizeof(float));
    memcpy(fc1, dp_param_data(m, dp_model_param_find(m, "fc1.weight")), 300 * 784 * sizeof(float));
    cr_assert_eq(admm_circ_convert(&c, 0, &ei), DP_OK, "%s", ei.msg);
    cr_assert_eq(c.m, m, "in place");
    cr_assert(c.converted);
    cr_assert_eq(m->layers[dp_model_layer_find(m, "fc1")].op, DP_OP_CIRC_LINEAR);
    cr_assert_eq(c.n_t, 3);
    for (int k = 0; k < c.n_t; k++) {
        cr_assert(c.t[k].converted);
        cr_assert_eq(c.t[k].quant, quant_spectrum, "the spectra are quantized in retraining");
    }
    /* fc1: 300 x 784 in blocks of 16: 19 x 49 blocks, 4 rows of padding. */
    const struct dp_param *w = dp_model_param_find(m, "fc1.weight");
    cr_assert_eq(w->numel, (size_t)19 * 49 * 16);
    float *back = dp_malloc(300 * 784 * sizeof(float));
    circ_expand(back, dp_param_data(m, w), &c.t[0].cd);
    cr_assert_eq(memcmp(back, fc1, 300 * 784 * sizeof(float)), 0);
    json_t *rep = admm_report(&c, 0.5, 0.5, 1.0);
    cr_assert_not_null(rep);
    json_t *l0 = json_array_get(json_object_get(rep, "layers"), 0);
    json_t *ci = json_object_get(l0, "circulant");
    cr_assert_eq(json_integer_value(json_object_get(ci, "block")), 16);
    cr_assert_eq(json_integer_value(json_object_get(ci, "padded_rows")), 4);
    cr_assert_eq(json_integer_value(json_object_get(ci, "padded_cols")), 0);
    cr_assert(json_is_true(json_object_get(ci, "padding")));
    cr_assert_float_eq(json_number_value(json_object_get(l0, "params")), 300.0 * 784, 0.0);
    cr_assert_float_eq(json_number_value(json_object_get(l0, "stored_values")), 19.0 * 49 * 16,
                       0.0);
    cr_assert_eq(json_integer_value(json_object_get(l0, "bits")), 8);
    cr_assert_float_eq(
        json_number_value(json_object_get(json_object_get(l0, "storage_bytes"), "stored")),
        19.0 * 49 * 16 + 4.0, 1e-9, "8-bit spectra and one scale");
    const double fft = (49.0 + 19.0) * 2.5 * 16 * 4 + 19.0 * 49 * 9 * 8;
    cr_assert_float_eq(json_number_value(json_object_get(json_object_get(l0, "flops"), "fft")), fft,
                       1e-6);
    cr_assert_float_eq(json_number_value(json_object_get(json_object_get(l0, "flops"), "dense")),
                       2.0 * 300 * 784, 0.0);
    json_t *tot = json_object_get(rep, "circulant");
    const double dense = 300.0 * 784 + 100.0 * 300 + 10.0 * 100;
    const double stored = 19.0 * 49 * 16 + 7.0 * 19 * 16 + 1.0 * 7 * 16;
    cr_assert_float_eq(json_number_value(json_object_get(tot, "param_reduction")), dense / stored,
                       1e-9);
    cr_assert_str_eq(json_string_value(json_object_get(tot, "from")), "admm");
    json_decref(rep);

    /* A checkpoint written after the conversion resumes onto the dense model. */
    char dir[128], path[192];
    dp_test_tmpdir_make(dir, sizeof(dir), "circ");
    snprintf(path, sizeof(path), "%s/state.safetensors", dir);
    cr_assert_eq(admm_state_save(&c, path, 0, 0, NULL, &ei), DP_OK, "%s", ei.msg);
    struct admm_ctx r;
    memset(&r, 0, sizeof(r));
    struct dp_model *m2 = circ_lenet();
    r.m = m2;
    r.spec = &cs;
    r.trace = json_array();
    r.stages = json_array();
    r.z = dp_calloc(m2->n_floats, sizeof(float));
    r.u = dp_calloc(m2->n_floats, sizeof(float));
    r.mask = dp_calloc(m2->n_floats, sizeof(float));
    cr_assert_eq(admm_targets(&r, &ei), DP_OK, "%s", ei.msg);
    cr_assert_eq(admm_state_load(&r, path, &ei), DP_OK, "%s", ei.msg);
    cr_assert(r.converted);
    cr_assert_eq(m2->n_floats, m->n_floats);
    cr_assert_eq(memcmp(m2->data, m->data, m->n_floats * sizeof(float)), 0);
    cr_assert_eq(m2->layers[dp_model_layer_find(m2, "fc3")].op, DP_OP_CIRC_LINEAR);
    dp_test_tmpdir_remove(dir);
    struct admm_ctx *all[2] = {&c, &r};
    for (int i = 0; i < 2; i++) {
        json_decref(all[i]->trace);
        json_decref(all[i]->stages);
        json_decref(all[i]->auto_info);
        dp_free(all[i]->z);
        dp_free(all[i]->u);
        dp_free(all[i]->mask);
        dp_free(all[i]->t);
        dp_free(all[i]->res_m1);
        dp_free(all[i]->res_m2);
        dp_free_aligned(all[i]->scratch);
        dp_model_free(all[i]->m);
    }
    dp_free(fc1);
    dp_free(back);
    DP_ASSERT_NO_LEAKS();
}

/* The converted model through the engine's circulant layers (FFT path;
 * lstm and gru with a block) computes what the dense model with the
 * hard-projected weights does. */
Test(circ_admm, converted_model_forward_equals_the_projected_dense_model)
{
    for (int k = 2; k <= 8; k += 3) {
        /* k 2 and 8: conv, fc1, fc2; k 5: lstm, gru, fc1, fc2. */
        struct dp_model *m = circ_model(k == 5);
        circ_fill(m, 40 + (uint64_t)k);
        /* Weights at the scale of a trained layer, so the logits are O(1). */
        for (size_t i = 0; i < m->n_floats; i++)
            m->data[i] *= 0.2f;
        char text[128];
        snprintf(text, sizeof(text), "{\"layers\":[{\"circulant\":{\"block\":%d}}]}", k);
        struct dp_spec cs;
        circ_spec(text, &cs);
        struct admm_ctx c;
        memset(&c, 0, sizeof(c));
        c.m = m;
        c.spec = &cs;
        struct dp_errinfo ei = {0};
        cr_assert_eq(admm_targets(&c, &ei), DP_OK, "%s", ei.msg);
        int *block = dp_calloc((size_t)m->n_layers, sizeof(int));
        for (int j = 0; j < c.n_t; j++) {
            admm_project(&c, &c.t[j], admm_w(&c, &c.t[j]), 0);
            block[c.t[j].layer] = k;
        }
        struct dp_model *q = NULL;
        cr_assert_eq(cp_circ_convert(m, block, 0, 1, &q, &ei), DP_OK, "%s", ei.msg);
        const int n = 5;
        const size_t in = dp_model_out_size(m, DP_MODEL_INPUT);
        float *x = dp_malloc(n * in * sizeof(float));
        struct dp_test_rng r = {77};
        for (size_t i = 0; i < n * in; i++)
            x[i] = circ_rand(&r);
        struct nn_net *nd = NULL, *nc = NULL;
        cr_assert_eq(nn_net_new(m, n, &nd, &ei), DP_OK, "%s", ei.msg);
        cr_assert_eq(nn_net_new(q, n, &nc, &ei), DP_OK, "%s", ei.msg);
        const float *yd = nn_net_forward(nd, x, n, 0);
        const float *yc = nn_net_forward(nc, x, n, 0);
        cr_assert(yd != NULL && yc != NULL);
        for (int i = 0; i < n * 5; i++)
            cr_assert_float_eq(yc[i], yd[i], 1e-4 * (1.0 + fabsf(yd[i])), "k %d logit %d: %g, %g",
                               k, i, yc[i], yd[i]);
        nn_net_free(nd);
        nn_net_free(nc);
        dp_free(x);
        dp_free(block);
        dp_free(c.t);
        dp_free_aligned(c.scratch);
        dp_model_free(q);
        dp_model_free(m);
    }
    DP_ASSERT_NO_LEAKS();
}
