/*
 * Reference-value tests (suite "reference"): each layer's forward and
 * backward against numbers PyTorch computed for the same inputs.
 *
 * DESIGN: tests/unit/worker/nn/make_fixtures.py writes one fixture per case
 * into tests/data/nn/<case>.bin (format in nn_test_util.h). A fixture holds
 * the inputs, parameters, a random dout, and torch's outputs and autograd
 * gradients, computed in float64 from float32 inputs; its "cfg" array
 * carries the layer geometry, whose field order per layer is listed next to
 * each test here and in the script. The tests run the engine on the stored
 * inputs, with gradient buffers zeroed first (backward accumulates), and
 * compare within REF_ATOL + REF_RTOL * |expected| per element. Both the
 * fast kernels and the naive *_ref twins are checked where a twin exists.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "common/alloc.h"
#include "tests/unit/test_util.h"
#include "tests/unit/worker/nn/nn_test_util.h"
#include "worker/nn/batchnorm.h"
#include "worker/nn/conv2d.h"
#include "worker/nn/eltwise.h"
#include "worker/nn/linear.h"
#include "worker/nn/loss.h"
#include "worker/nn/pool.h"

#define REF_ATOL 1e-5
#define REF_RTOL 1e-4

#define N_OF(a) (sizeof(a) / sizeof((a)[0]))

/* Compares one engine array with the fixture's array of the same element count. */
static void expect_ref(const char *case_name, const char *what, const float *got, const float *want,
                       size_t n)
{
    char label[128];
    snprintf(label, sizeof(label), "%s: %s", case_name, what);
    nn_expect_close(label, got, want, n, REF_ATOL, REF_RTOL);
}

/* ---- Conv2d -------------------------------------------------------------- */

static const char *const conv_cases[] = {
    "conv2d_basic",    "conv2d_s2p1",     "conv2d_dil2", "conv2d_groups2", "conv2d_depthwise",
    "conv2d_dw_mult2", "conv2d_asym_pad", "conv2d_k5",   "conv2d_k1",      "conv2d_rect",
};

/* cfg: B C H W OC OH OW kh kw sh sw pt pl dh dw groups has_bias */
#define CONV_NCFG 17

static void conv_reference(const char *name, int use_ref)
{
    struct nn_fx fx;
    struct nn_conv2d_dims d;
    char tag[80];

    nn_fx_load(&fx, name);
    memset(&d, 0, sizeof(d));
    d.threads = 2; /* exercise the per-thread weight-gradient reduction */
    d.B = nn_fx_cfg(&fx, 0, CONV_NCFG);
    d.C = nn_fx_cfg(&fx, 1, CONV_NCFG);
    d.H = nn_fx_cfg(&fx, 2, CONV_NCFG);
    d.W = nn_fx_cfg(&fx, 3, CONV_NCFG);
    d.OC = nn_fx_cfg(&fx, 4, CONV_NCFG);
    d.OH = nn_fx_cfg(&fx, 5, CONV_NCFG);
    d.OW = nn_fx_cfg(&fx, 6, CONV_NCFG);
    d.kh = nn_fx_cfg(&fx, 7, CONV_NCFG);
    d.kw = nn_fx_cfg(&fx, 8, CONV_NCFG);
    d.sh = nn_fx_cfg(&fx, 9, CONV_NCFG);
    d.sw = nn_fx_cfg(&fx, 10, CONV_NCFG);
    d.pt = nn_fx_cfg(&fx, 11, CONV_NCFG);
    d.pl = nn_fx_cfg(&fx, 12, CONV_NCFG);
    d.dh = nn_fx_cfg(&fx, 13, CONV_NCFG);
    d.dw = nn_fx_cfg(&fx, 14, CONV_NCFG);
    d.groups = nn_fx_cfg(&fx, 15, CONV_NCFG);
    int has_bias = nn_fx_cfg(&fx, 16, CONV_NCFG);

    size_t n_inp = (size_t)d.B * d.C * d.H * d.W;
    size_t n_w = (size_t)d.OC * (d.C / d.groups) * d.kh * d.kw;
    size_t n_out = (size_t)d.B * d.OC * d.OH * d.OW;
    const float *inp = nn_fx_get(&fx, "inp", n_inp);
    const float *w = nn_fx_get(&fx, "weight", n_w);
    const float *b = has_bias ? nn_fx_get(&fx, "bias", (size_t)d.OC) : NULL;
    const float *want_out = nn_fx_get(&fx, "out", n_out);
    const float *dout = nn_fx_get(&fx, "dout", n_out);
    const float *want_dinp = nn_fx_get(&fx, "dinp", n_inp);
    const float *want_dw = nn_fx_get(&fx, "dweight", n_w);
    const float *want_db = has_bias ? nn_fx_get(&fx, "dbias", (size_t)d.OC) : NULL;

    float *out = nn_floats(n_out), *dinp = nn_floats(n_inp), *dw = nn_floats(n_w);
    float *db = has_bias ? nn_floats((size_t)d.OC) : NULL;
    float *scratch = nn_floats(nn_conv2d_scratch_floats(&d));

    if (use_ref) {
        nn_conv2d_forward_ref(out, inp, w, b, &d);
        nn_conv2d_backward_ref(dinp, dw, db, dout, inp, w, &d);
    } else {
        nn_conv2d_forward(out, scratch, inp, w, b, &d);
        nn_conv2d_backward(dinp, dw, db, scratch, dout, inp, w, &d);
    }
    const char *path = use_ref ? "ref" : "fast";
    snprintf(tag, sizeof(tag), "%s (%s)", name, path);
    expect_ref(tag, "out", out, want_out, n_out);
    expect_ref(tag, "dinp", dinp, want_dinp, n_inp);
    expect_ref(tag, "dweight", dw, want_dw, n_w);
    if (has_bias)
        expect_ref(tag, "dbias", db, want_db, (size_t)d.OC);

    dp_free(out);
    dp_free(dinp);
    dp_free(dw);
    dp_free(db);
    dp_free(scratch);
    nn_fx_free(&fx);
}

Test(reference, conv2d)
{
    for (size_t i = 0; i < N_OF(conv_cases); i++)
        conv_reference(conv_cases[i], 0);
    DP_ASSERT_NO_LEAKS();
}

Test(reference, conv2d_ref_twin)
{
    for (size_t i = 0; i < N_OF(conv_cases); i++)
        conv_reference(conv_cases[i], 1);
    DP_ASSERT_NO_LEAKS();
}

/* ---- Linear -------------------------------------------------------------- */

/* cfg: B I O has_bias */
#define LINEAR_NCFG 4

Test(reference, linear)
{
    static const char *const cases[] = {"linear_basic", "linear_nobias", "linear_odd"};

    for (size_t i = 0; i < N_OF(cases); i++) {
        struct nn_fx fx;
        nn_fx_load(&fx, cases[i]);
        int B = nn_fx_cfg(&fx, 0, LINEAR_NCFG), I = nn_fx_cfg(&fx, 1, LINEAR_NCFG);
        int O = nn_fx_cfg(&fx, 2, LINEAR_NCFG), has_bias = nn_fx_cfg(&fx, 3, LINEAR_NCFG);
        size_t n_inp = (size_t)B * I, n_w = (size_t)O * I, n_out = (size_t)B * O;
        const float *inp = nn_fx_get(&fx, "inp", n_inp);
        const float *w = nn_fx_get(&fx, "weight", n_w);
        const float *b = has_bias ? nn_fx_get(&fx, "bias", (size_t)O) : NULL;
        const float *dout = nn_fx_get(&fx, "dout", n_out);
        float *out = nn_floats(n_out), *out_ref = nn_floats(n_out);
        float *dinp = nn_floats(n_inp), *dw = nn_floats(n_w);
        float *db = has_bias ? nn_floats((size_t)O) : NULL;

        nn_linear_forward(out, inp, w, b, B, I, O);
        nn_linear_forward_ref(out_ref, inp, w, b, B, I, O);
        nn_linear_backward(dinp, dw, db, dout, inp, w, B, I, O);
        expect_ref(cases[i], "out", out, nn_fx_get(&fx, "out", n_out), n_out);
        expect_ref(cases[i], "out (ref twin)", out_ref, nn_fx_get(&fx, "out", n_out), n_out);
        expect_ref(cases[i], "dinp", dinp, nn_fx_get(&fx, "dinp", n_inp), n_inp);
        expect_ref(cases[i], "dweight", dw, nn_fx_get(&fx, "dweight", n_w), n_w);
        if (has_bias)
            expect_ref(cases[i], "dbias", db, nn_fx_get(&fx, "dbias", (size_t)O), (size_t)O);

        dp_free(out);
        dp_free(out_ref);
        dp_free(dinp);
        dp_free(dw);
        dp_free(db);
        nn_fx_free(&fx);
    }
    DP_ASSERT_NO_LEAKS();
}

/* ---- Batch norm ---------------------------------------------------------- */

/* cfg: B C H W eps momentum */
#define BN_NCFG 6

Test(reference, bn2d_train)
{
    static const char *const cases[] = {"bn2d_train_a", "bn2d_train_b"};

    for (size_t i = 0; i < N_OF(cases); i++) {
        struct nn_fx fx;
        nn_fx_load(&fx, cases[i]);
        int B = nn_fx_cfg(&fx, 0, BN_NCFG), C = nn_fx_cfg(&fx, 1, BN_NCFG);
        int HW = nn_fx_cfg(&fx, 2, BN_NCFG) * nn_fx_cfg(&fx, 3, BN_NCFG);
        float eps = nn_fx_cfg_f(&fx, 4, BN_NCFG), momentum = nn_fx_cfg_f(&fx, 5, BN_NCFG);
        size_t n = (size_t)B * C * HW, nc = (size_t)C;
        const float *inp = nn_fx_get(&fx, "inp", n);
        const float *gamma = nn_fx_get(&fx, "gamma", nc);
        const float *beta = nn_fx_get(&fx, "beta", nc);
        float *out = nn_floats(n), *mean = nn_floats(nc), *rstd = nn_floats(nc);
        float *rmean = nn_floats_copy(nn_fx_get(&fx, "running_mean_in", nc), nc);
        float *rvar = nn_floats_copy(nn_fx_get(&fx, "running_var_in", nc), nc);
        float *dinp = nn_floats(n), *dgamma = nn_floats(nc), *dbeta = nn_floats(nc);

        nn_bn2d_forward_train(out, mean, rstd, rmean, rvar, inp, gamma, beta, B, C, HW, eps,
                              momentum);
        nn_bn2d_backward(dinp, dgamma, dbeta, nn_fx_get(&fx, "dout", n), inp, gamma, mean, rstd, B,
                         C, HW);
        expect_ref(cases[i], "out", out, nn_fx_get(&fx, "out", n), n);
        expect_ref(cases[i], "mean (cache)", mean, nn_fx_get(&fx, "mean", nc), nc);
        expect_ref(cases[i], "rstd (cache)", rstd, nn_fx_get(&fx, "rstd", nc), nc);
        expect_ref(cases[i], "running_mean", rmean, nn_fx_get(&fx, "running_mean_out", nc), nc);
        expect_ref(cases[i], "running_var (unbiased)", rvar, nn_fx_get(&fx, "running_var_out", nc),
                   nc);
        expect_ref(cases[i], "dinp", dinp, nn_fx_get(&fx, "dinp", n), n);
        expect_ref(cases[i], "dgamma", dgamma, nn_fx_get(&fx, "dgamma", nc), nc);
        expect_ref(cases[i], "dbeta", dbeta, nn_fx_get(&fx, "dbeta", nc), nc);

        float *ps[] = {out, mean, rstd, rmean, rvar, dinp, dgamma, dbeta};
        for (size_t k = 0; k < N_OF(ps); k++)
            dp_free(ps[k]);
        nn_fx_free(&fx);
    }
    DP_ASSERT_NO_LEAKS();
}

Test(reference, bn2d_eval)
{
    static const char *const cases[] = {"bn2d_eval_a", "bn2d_eval_b"};

    for (size_t i = 0; i < N_OF(cases); i++) {
        struct nn_fx fx;
        nn_fx_load(&fx, cases[i]);
        int B = nn_fx_cfg(&fx, 0, BN_NCFG), C = nn_fx_cfg(&fx, 1, BN_NCFG);
        int HW = nn_fx_cfg(&fx, 2, BN_NCFG) * nn_fx_cfg(&fx, 3, BN_NCFG);
        float eps = nn_fx_cfg_f(&fx, 4, BN_NCFG);
        size_t n = (size_t)B * C * HW, nc = (size_t)C;
        float *out = nn_floats(n);

        nn_bn2d_forward_eval(out, nn_fx_get(&fx, "inp", n), nn_fx_get(&fx, "gamma", nc),
                             nn_fx_get(&fx, "beta", nc), nn_fx_get(&fx, "running_mean", nc),
                             nn_fx_get(&fx, "running_var", nc), B, C, HW, eps);
        expect_ref(cases[i], "out", out, nn_fx_get(&fx, "out", n), n);
        dp_free(out);
        nn_fx_free(&fx);
    }
    DP_ASSERT_NO_LEAKS();
}

/* ---- Pooling ------------------------------------------------------------- */

/* cfg: B C H W OH OW kh kw sh sw pt pl count_include_pad */
#define POOL_NCFG 13

static struct nn_pool_dims pool_dims_from(const struct nn_fx *fx)
{
    struct nn_pool_dims d;
    d.B = nn_fx_cfg(fx, 0, POOL_NCFG);
    d.C = nn_fx_cfg(fx, 1, POOL_NCFG);
    d.H = nn_fx_cfg(fx, 2, POOL_NCFG);
    d.W = nn_fx_cfg(fx, 3, POOL_NCFG);
    d.OH = nn_fx_cfg(fx, 4, POOL_NCFG);
    d.OW = nn_fx_cfg(fx, 5, POOL_NCFG);
    d.kh = nn_fx_cfg(fx, 6, POOL_NCFG);
    d.kw = nn_fx_cfg(fx, 7, POOL_NCFG);
    d.sh = nn_fx_cfg(fx, 8, POOL_NCFG);
    d.sw = nn_fx_cfg(fx, 9, POOL_NCFG);
    d.pt = nn_fx_cfg(fx, 10, POOL_NCFG);
    d.pl = nn_fx_cfg(fx, 11, POOL_NCFG);
    d.count_include_pad = nn_fx_cfg(fx, 12, POOL_NCFG);
    d.pb = d.pt; /* PyTorch pads symmetrically */
    d.pr = d.pl;
    return d;
}

Test(reference, maxpool)
{
    static const char *const cases[] = {"maxpool_k2s2", "maxpool_k3s2p1", "maxpool_k3s1p1",
                                        "maxpool_rect"};

    for (size_t i = 0; i < N_OF(cases); i++) {
        struct nn_fx fx;
        nn_fx_load(&fx, cases[i]);
        struct nn_pool_dims d = pool_dims_from(&fx);
        size_t n_inp = (size_t)d.B * d.C * d.H * d.W, n_out = (size_t)d.B * d.C * d.OH * d.OW;
        float *out = nn_floats(n_out), *dinp = nn_floats(n_inp);
        int *argmax = dp_calloc(n_out, sizeof(int));
        cr_assert_not_null(argmax);

        nn_maxpool_forward(out, argmax, nn_fx_get(&fx, "inp", n_inp), &d);
        nn_maxpool_backward(dinp, nn_fx_get(&fx, "dout", n_out), argmax, &d);
        expect_ref(cases[i], "out", out, nn_fx_get(&fx, "out", n_out), n_out);
        const float *want_arg = nn_fx_get(&fx, "argmax", n_out);
        size_t n_bad = 0, first = 0;
        for (size_t k = 0; k < n_out; k++) {
            if (argmax[k] != (int)want_arg[k] && n_bad++ == 0)
                first = k;
        }
        cr_expect(n_bad == 0,
                  "%s: %zu argmax entries differ from torch's indices; first [%zu]:"
                  " expected %d, got %d",
                  cases[i], n_bad, first, (int)want_arg[first], argmax[first]);
        expect_ref(cases[i], "dinp", dinp, nn_fx_get(&fx, "dinp", n_inp), n_inp);

        dp_free(out);
        dp_free(dinp);
        dp_free(argmax);
        nn_fx_free(&fx);
    }
    DP_ASSERT_NO_LEAKS();
}

Test(reference, avgpool)
{
    static const char *const cases[] = {"avgpool_k2s2",        "avgpool_k3s2p1_incl",
                                        "avgpool_k3s2p1_excl", "avgpool_k3s1p1_excl",
                                        "avgpool_rect_excl",   "avgpool_adaptive"};

    for (size_t i = 0; i < N_OF(cases); i++) {
        struct nn_fx fx;
        nn_fx_load(&fx, cases[i]);
        struct nn_pool_dims d = pool_dims_from(&fx);
        size_t n_inp = (size_t)d.B * d.C * d.H * d.W, n_out = (size_t)d.B * d.C * d.OH * d.OW;
        float *out = nn_floats(n_out), *dinp = nn_floats(n_inp);

        nn_avgpool_forward(out, nn_fx_get(&fx, "inp", n_inp), &d);
        nn_avgpool_backward(dinp, nn_fx_get(&fx, "dout", n_out), &d);
        expect_ref(cases[i], "out", out, nn_fx_get(&fx, "out", n_out), n_out);
        expect_ref(cases[i], "dinp", dinp, nn_fx_get(&fx, "dinp", n_inp), n_inp);

        dp_free(out);
        dp_free(dinp);
        nn_fx_free(&fx);
    }
    DP_ASSERT_NO_LEAKS();
}

/* cfg: B C H W */
Test(reference, gap)
{
    static const char *const cases[] = {"gap_a", "gap_b"};

    for (size_t i = 0; i < N_OF(cases); i++) {
        struct nn_fx fx;
        nn_fx_load(&fx, cases[i]);
        int B = nn_fx_cfg(&fx, 0, 4), C = nn_fx_cfg(&fx, 1, 4);
        int HW = nn_fx_cfg(&fx, 2, 4) * nn_fx_cfg(&fx, 3, 4);
        size_t n_inp = (size_t)B * C * HW, n_out = (size_t)B * C;
        float *out = nn_floats(n_out), *dinp = nn_floats(n_inp);

        nn_gap_forward(out, nn_fx_get(&fx, "inp", n_inp), B, C, HW);
        nn_gap_backward(dinp, nn_fx_get(&fx, "dout", n_out), B, C, HW);
        expect_ref(cases[i], "out", out, nn_fx_get(&fx, "out", n_out), n_out);
        expect_ref(cases[i], "dinp", dinp, nn_fx_get(&fx, "dinp", n_inp), n_inp);

        dp_free(out);
        dp_free(dinp);
        nn_fx_free(&fx);
    }
    DP_ASSERT_NO_LEAKS();
}

/* ---- Element-wise and loss ----------------------------------------------- */

/* cfg: n */
static void act_reference(const char *name, int relu6)
{
    struct nn_fx fx;
    nn_fx_load(&fx, name);
    size_t n = (size_t)nn_fx_cfg(&fx, 0, 1);
    const float *inp = nn_fx_get(&fx, "inp", n);
    float *out = nn_floats(n), *dinp = nn_floats(n);

    if (relu6) {
        nn_relu6_forward(out, inp, n);
        nn_relu6_backward(dinp, nn_fx_get(&fx, "dout", n), inp, n);
    } else {
        nn_relu_forward(out, inp, n);
        nn_relu_backward(dinp, nn_fx_get(&fx, "dout", n), inp, n);
    }
    expect_ref(name, "out", out, nn_fx_get(&fx, "out", n), n);
    expect_ref(name, "dinp", dinp, nn_fx_get(&fx, "dinp", n), n);
    dp_free(out);
    dp_free(dinp);
    nn_fx_free(&fx);
}

Test(reference, relu)
{
    act_reference("relu", 0);
    DP_ASSERT_NO_LEAKS();
}

Test(reference, relu6)
{
    act_reference("relu6", 1);
    DP_ASSERT_NO_LEAKS();
}

/* cfg: B K */
Test(reference, xent)
{
    static const char *const cases[] = {"xent_basic", "xent_large"};

    for (size_t i = 0; i < N_OF(cases); i++) {
        struct nn_fx fx;
        nn_fx_load(&fx, cases[i]);
        int B = nn_fx_cfg(&fx, 0, 2), K = nn_fx_cfg(&fx, 1, 2);
        size_t n = (size_t)B * K;
        const float *logits = nn_fx_get(&fx, "logits", n);
        const float *flabels = nn_fx_get(&fx, "labels", (size_t)B);
        int32_t *labels = dp_calloc((size_t)B, sizeof(int32_t));
        float *probs = nn_floats(n), *dlogits = nn_floats(n);
        cr_assert_not_null(labels);
        for (int b = 0; b < B; b++)
            labels[b] = (int32_t)flabels[b];

        float loss = nn_xent_forward(probs, logits, labels, B, K);
        nn_xent_backward(dlogits, probs, labels, B, K);
        int correct = nn_xent_correct(logits, labels, B, K);
        expect_ref(cases[i], "loss", &loss, nn_fx_get(&fx, "loss", 1), 1);
        expect_ref(cases[i], "probs", probs, nn_fx_get(&fx, "probs", n), n);
        expect_ref(cases[i], "dlogits", dlogits, nn_fx_get(&fx, "dlogits", n), n);
        cr_expect_eq(correct, (int)nn_fx_get(&fx, "correct", 1)[0], "%s: correct count %d",
                     cases[i], correct);

        dp_free(labels);
        dp_free(probs);
        dp_free(dlogits);
        nn_fx_free(&fx);
    }
    DP_ASSERT_NO_LEAKS();
}

/* ---- The fixture reader itself ------------------------------------------- */

/* The parser accepts a well-formed file and rejects each kind of corruption. */
Test(reference, fixture_parser_rejects_corruption)
{
    static const unsigned char good[] = {
        'D', 'P', 'F',  'X',       /* magic */
        1,   0,   0,    0,         /* version 1 */
        1,   0,   0,    0,         /* one array */
        1,   0,   0,    0,    'x', /* name "x" */
        1,   0,   0,    0,         /* ndim 1 */
        2,   0,   0,    0,         /* dims {2} */
        0,   0,   0x80, 0x3f,      /* 1.0f */
        0,   0,   0,    0x40,      /* 2.0f */
    };
    unsigned char bad[sizeof(good) + 1];
    struct nn_fx fx;

    memset(&fx, 0, sizeof(fx));
    cr_assert_null(nn_fx_parse(&fx, good, sizeof(good)));
    cr_expect_eq(fx.n_arrays, 1);
    cr_expect_str_eq(fx.arrays[0].name, "x");
    cr_expect_eq(fx.arrays[0].n, 2);
    cr_expect_eq(fx.arrays[0].data[0], 1.0f);
    cr_expect_eq(fx.arrays[0].data[1], 2.0f);
    nn_fx_free(&fx);

    /* Bad magic, bad version, truncated data, trailing garbage, bad ndim. */
    memcpy(bad, good, sizeof(good));
    bad[0] = 'X';
    cr_expect_not_null(nn_fx_parse(&fx, bad, sizeof(good)));
    nn_fx_free(&fx);
    memcpy(bad, good, sizeof(good));
    bad[4] = 2;
    cr_expect_not_null(nn_fx_parse(&fx, bad, sizeof(good)));
    nn_fx_free(&fx);
    cr_expect_not_null(nn_fx_parse(&fx, good, sizeof(good) - 1));
    nn_fx_free(&fx);
    memcpy(bad, good, sizeof(good));
    bad[sizeof(good)] = 0;
    cr_expect_not_null(nn_fx_parse(&fx, bad, sizeof(good) + 1));
    nn_fx_free(&fx);
    memcpy(bad, good, sizeof(good));
    bad[17] = 9;
    cr_expect_not_null(nn_fx_parse(&fx, bad, sizeof(good)));
    nn_fx_free(&fx);
    DP_ASSERT_NO_LEAKS();
}
