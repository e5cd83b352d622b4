/*
 * Finite-difference gradient tests for every layer of the NN engine (suite
 * "grad"), the fast-versus-naive cross-checks of STYLE rule 28, and the
 * accumulate-not-overwrite contract of rule 27.
 *
 * DESIGN: each layer's backward is compared, element by element, with
 * central differences of that layer's own forward pass on the scalar
 * objective L = sum(out * R) for a fixed random R, so dout = R (the loss
 * layer uses its own value as L). The objective is accumulated in double;
 * the forward stays float32, so the numeric estimate carries float32 noise
 * of roughly |out| * 1e-7 / eps per touched output. Layers that are linear
 * in the perturbed input (conv, linear, pooling, add, dropout, the ReLUs
 * away from their kinks) have no truncation error, so a large step
 * (1e-2) and a tight tolerance are honest; batch norm and the softmax
 * loss are smooth and get the same step with a looser tolerance for the
 * O(eps^2) truncation term. Max pooling uses distinct values spaced more
 * than twice the step, and the ReLUs keep inputs well away from their kinks,
 * so no perturbation crosses a non-differentiable point.
 *
 * Shapes are tiny so every element of every gradient is checked and the
 * whole suite stays fast under ASan. Gradient buffers are zeroed before
 * each analytic backward because backward accumulates.
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

/* Step and tolerances, see the DESIGN note above. */
#define FD_EPS         1e-2f
#define FD_RTOL_LINEAR 1e-3 /* layers linear in the perturbed input */
#define FD_RTOL_SMOOTH 1e-2 /* batch norm, softmax cross-entropy */

/* Fast kernel versus its naive twin: only summation order differs. */
#define TWIN_RTOL     1e-4
#define TWIN_ATOL_REL 1e-5 /* times max(1, max |reference|) */

/* ---- Accumulation helper ------------------------------------------------- */

typedef void (*acc_backward_fn)(void *ctx);

struct acc_grad {
    const char *name;
    float *g;
    size_t n;
};

/*
 * Checks that bw(ctx) adds to the gradient buffers in gs instead of
 * overwriting them: from zero, a second call must double the first call's
 * result, and from a random prefill P one call must give P + once.
 */
static void check_accumulates(const char *label, acc_backward_fn bw, void *ctx, struct acc_grad *gs,
                              int n_g, struct nn_test_rng *rng)
{
    float *once[8];
    char what[160];

    cr_assert(n_g <= 8);
    for (int k = 0; k < n_g; k++)
        nn_zero(gs[k].g, gs[k].n);
    bw(ctx);
    for (int k = 0; k < n_g; k++) {
        once[k] = nn_floats_copy(gs[k].g, gs[k].n);
        cr_expect(nn_maxabs(once[k], gs[k].n) > 0.0f, "%s: %s: backward produced all zeros", label,
                  gs[k].name);
    }
    bw(ctx);
    for (int k = 0; k < n_g; k++) {
        float *want = nn_floats(gs[k].n);
        for (size_t i = 0; i < gs[k].n; i++)
            want[i] = 2.0f * once[k][i];
        snprintf(what, sizeof(what), "%s: %s after two backward calls (expect 2x)", label,
                 gs[k].name);
        nn_expect_close(what, gs[k].g, want, gs[k].n, 1e-6 * nn_maxabs(want, gs[k].n), 1e-5);
        dp_free(want);
    }
    for (int k = 0; k < n_g; k++)
        nn_fill_uniform(rng, gs[k].g, gs[k].n, -1.0f, 1.0f);
    float *pre[8];
    for (int k = 0; k < n_g; k++)
        pre[k] = nn_floats_copy(gs[k].g, gs[k].n);
    bw(ctx);
    for (int k = 0; k < n_g; k++) {
        float *want = nn_floats(gs[k].n);
        for (size_t i = 0; i < gs[k].n; i++)
            want[i] = pre[k][i] + once[k][i];
        snprintf(what, sizeof(what), "%s: %s after backward onto a prefilled buffer", label,
                 gs[k].name);
        nn_expect_close(what, gs[k].g, want, gs[k].n, 1e-6 * (1.0 + nn_maxabs(want, gs[k].n)),
                        1e-5);
        dp_free(want);
        dp_free(pre[k]);
        dp_free(once[k]);
    }
}

/* ---- Conv2d -------------------------------------------------------------- */

struct conv_case {
    const char *name;
    int B, C, H, W, OC, kh, kw, sh, sw, pt, pl, pb, pr, dh, dw, groups, bias;
};

/* Small enough to check every element by finite differences. */
/* clang-format off */
static const struct conv_case conv_fd_cases[] = {
    /* name              B  C  H  W OC kh kw sh sw pt pl pb pr dh dw  g bias */
    {"k3_s1_p0",         1, 2, 5, 6, 3, 3, 3, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1},
    {"k3_s1_p1",         2, 2, 5, 5, 3, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1},
    {"k3_s2_p1",         2, 3, 6, 7, 2, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 1, 1},
    {"k3_s2_tail",       1, 2, 8, 8, 2, 3, 3, 2, 2, 0, 0, 0, 0, 1, 1, 1, 0},
    {"asym_pad",         2, 2, 5, 6, 3, 3, 3, 1, 1, 1, 0, 0, 2, 1, 1, 1, 1},
    {"asym_pad_s2",      1, 2, 6, 5, 2, 3, 3, 2, 2, 0, 2, 2, 0, 1, 1, 1, 1},
    {"dil2",             1, 2, 7, 7, 2, 3, 3, 1, 1, 2, 2, 2, 2, 2, 2, 1, 1},
    {"dil2x1_s2x1",      1, 2, 8, 6, 2, 3, 3, 2, 1, 2, 1, 2, 1, 2, 1, 1, 0},
    {"groups2",          2, 4, 5, 5, 4, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 2, 0},
    {"groups2_s2_bias",  1, 4, 6, 6, 6, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 2, 1},
    {"depthwise",        2, 3, 5, 5, 3, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 3, 1},
    {"depthwise_s2",     2, 4, 6, 6, 4, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 4, 0},
    {"depthwise_mult2",  1, 2, 5, 5, 4, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 2, 1},
    {"k1",               2, 3, 4, 4, 4, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1},
    {"k1_s2",            1, 3, 5, 5, 2, 1, 1, 2, 2, 0, 0, 0, 0, 1, 1, 1, 0},
    {"k5_p2",            1, 2, 6, 7, 2, 5, 5, 1, 1, 2, 2, 2, 2, 1, 1, 1, 1},
    {"k5_s2_p1",         1, 2, 9, 9, 3, 5, 5, 2, 2, 1, 1, 1, 1, 1, 1, 1, 0},
    {"rect_1x3",         1, 2, 5, 7, 2, 1, 3, 1, 2, 0, 1, 0, 1, 1, 1, 1, 1},
};
/* clang-format on */

/* Larger shapes for the fast-versus-naive comparison (no finite differences). */
/* clang-format off */
static const struct conv_case conv_twin_cases[] = {
    /* name              B  C   H   W  OC kh kw sh sw pt pl pb pr dh dw  g bias */
    {"lenet_c1",         4, 1, 28, 28,  6, 5, 5, 1, 1, 2, 2, 2, 2, 1, 1, 1, 1},
    {"lenet_c2",         3, 6, 14, 14, 16, 5, 5, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1},
    {"resnet_3x3",       2, 8, 12, 10, 16, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1},
    {"resnet_down",      3, 8, 11, 12, 12, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 1, 0},
    {"resnet_1x1_s2",    2, 8, 10, 10, 16, 1, 1, 2, 2, 0, 0, 0, 0, 1, 1, 1, 0},
    {"groups4",          2, 8,  9,  9, 12, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 4, 1},
    {"mbv2_dw",          3, 16, 10, 10, 16, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 16, 1},
    {"mbv2_dw_s2",       2, 16, 11, 11, 16, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 16, 0},
    {"dw_mult3",         2, 4,  8,  9, 12, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 4, 1},
    {"dil2_groups2",     2, 6, 11, 10,  4, 3, 3, 1, 2, 2, 2, 2, 2, 2, 2, 2, 1},
    {"asym_k5",          2, 3, 10,  9,  5, 5, 5, 2, 1, 2, 1, 1, 3, 1, 1, 1, 1},
};
/* clang-format on */

#define N_CONV_RANDOM 40

struct conv_bufs {
    struct nn_conv2d_dims d;
    int has_bias, use_ref;
    size_t n_inp, n_w, n_out, n_scratch;
    float *inp, *w, *b, *out, *scratch, *r;
    float *dinp, *dw, *db;
};

static struct nn_conv2d_dims conv_dims(const struct conv_case *c)
{
    struct nn_conv2d_dims d;
    memset(&d, 0, sizeof(d));
    d.B = c->B;
    d.C = c->C;
    d.H = c->H;
    d.W = c->W;
    d.OC = c->OC;
    d.kh = c->kh;
    d.kw = c->kw;
    d.sh = c->sh;
    d.sw = c->sw;
    d.pt = c->pt;
    d.pl = c->pl;
    d.dh = c->dh;
    d.dw = c->dw;
    d.groups = c->groups;
    d.OH = (c->H + c->pt + c->pb - c->dh * (c->kh - 1) - 1) / c->sh + 1;
    d.OW = (c->W + c->pl + c->pr - c->dw * (c->kw - 1) - 1) / c->sw + 1;
    cr_assert(d.OH >= 1 && d.OW >= 1, "bad conv case %s", c->name);
    cr_assert(c->C % c->groups == 0 && c->OC % c->groups == 0, "bad conv case %s", c->name);
    return d;
}

static void conv_bufs_init(struct conv_bufs *cb, const struct conv_case *c, struct nn_test_rng *rng)
{
    memset(cb, 0, sizeof(*cb));
    cb->d = conv_dims(c);
    cb->has_bias = c->bias;
    const struct nn_conv2d_dims *d = &cb->d;
    cb->n_inp = (size_t)d->B * d->C * d->H * d->W;
    cb->n_w = (size_t)d->OC * (d->C / d->groups) * d->kh * d->kw;
    cb->n_out = (size_t)d->B * d->OC * d->OH * d->OW;
    cb->n_scratch = nn_conv2d_scratch_floats(d);
    cb->inp = nn_floats(cb->n_inp);
    cb->w = nn_floats(cb->n_w);
    cb->b = c->bias ? nn_floats((size_t)d->OC) : NULL;
    cb->out = nn_floats(cb->n_out);
    cb->scratch = nn_floats(cb->n_scratch);
    cb->r = nn_floats(cb->n_out);
    cb->dinp = nn_floats(cb->n_inp);
    cb->dw = nn_floats(cb->n_w);
    cb->db = c->bias ? nn_floats((size_t)d->OC) : NULL;
    nn_fill_uniform(rng, cb->inp, cb->n_inp, -1.0f, 1.0f);
    nn_fill_uniform(rng, cb->w, cb->n_w, -1.0f, 1.0f);
    if (cb->b)
        nn_fill_uniform(rng, cb->b, (size_t)d->OC, -1.0f, 1.0f);
    nn_fill_uniform(rng, cb->r, cb->n_out, -1.0f, 1.0f);
}

static void conv_bufs_free(struct conv_bufs *cb)
{
    dp_free(cb->inp);
    dp_free(cb->w);
    dp_free(cb->b);
    dp_free(cb->out);
    dp_free(cb->scratch);
    dp_free(cb->r);
    dp_free(cb->dinp);
    dp_free(cb->dw);
    dp_free(cb->db);
    memset(cb, 0, sizeof(*cb));
}

static void conv_forward(struct conv_bufs *cb)
{
    if (cb->use_ref)
        nn_conv2d_forward_ref(cb->out, cb->inp, cb->w, cb->b, &cb->d);
    else
        nn_conv2d_forward(cb->out, cb->scratch, cb->inp, cb->w, cb->b, &cb->d);
}

/* Backward with dout = R into the given buffers (any may be NULL). */
static void conv_backward_into(struct conv_bufs *cb, float *dinp, float *dw, float *db)
{
    if (cb->use_ref)
        nn_conv2d_backward_ref(dinp, dw, db, cb->r, cb->inp, cb->w, &cb->d);
    else
        nn_conv2d_backward(dinp, dw, db, cb->scratch, cb->r, cb->inp, cb->w, &cb->d);
}

static void conv_backward(void *ctx)
{
    struct conv_bufs *cb = ctx;
    conv_backward_into(cb, cb->dinp, cb->dw, cb->db);
}

static double conv_objective(void *ctx)
{
    struct conv_bufs *cb = ctx;
    conv_forward(cb);
    return nn_dot(cb->out, cb->r, cb->n_out);
}

Test(grad, conv2d)
{
    struct nn_test_rng rng = {101};
    char label[160];

    for (size_t i = 0; i < sizeof(conv_fd_cases) / sizeof(conv_fd_cases[0]); i++) {
        for (int use_ref = 0; use_ref <= 1; use_ref++) {
            const struct conv_case *c = &conv_fd_cases[i];
            const char *path = use_ref ? "ref" : "fast";
            struct conv_bufs cb;
            conv_bufs_init(&cb, c, &rng);
            cb.use_ref = use_ref;

            conv_forward(&cb);
            conv_backward(&cb);

            snprintf(label, sizeof(label), "conv2d %s (%s): dinp", c->name, path);
            nn_fd_check(label, cb.inp, cb.n_inp, cb.dinp, conv_objective, &cb, FD_EPS,
                        FD_RTOL_LINEAR, 0);
            snprintf(label, sizeof(label), "conv2d %s (%s): dweight", c->name, path);
            nn_fd_check(label, cb.w, cb.n_w, cb.dw, conv_objective, &cb, FD_EPS, FD_RTOL_LINEAR, 0);
            if (cb.b) {
                snprintf(label, sizeof(label), "conv2d %s (%s): dbias", c->name, path);
                nn_fd_check(label, cb.b, (size_t)cb.d.OC, cb.db, conv_objective, &cb, FD_EPS,
                            FD_RTOL_LINEAR, 0);
            }
            conv_bufs_free(&cb);
        }
    }
    DP_ASSERT_NO_LEAKS();
}

/* A random valid geometry: groups, depthwise multipliers, odd kernels, pads. */
static void conv_random_case(struct nn_test_rng *r, struct conv_case *c)
{
    static const int ks[] = {1, 2, 3, 5};

    memset(c, 0, sizeof(*c));
    c->name = "random";
    if (nn_test_rng_int(r, 4) == 0) { /* depthwise, multiplier 1..3 */
        c->C = 1 + nn_test_rng_int(r, 6);
        c->groups = c->C;
        c->OC = c->C * (1 + nn_test_rng_int(r, 3));
    } else {
        c->groups = 1 + nn_test_rng_int(r, 3);
        c->C = c->groups * (1 + nn_test_rng_int(r, 3));
        c->OC = c->groups * (1 + nn_test_rng_int(r, 4));
    }
    c->B = 1 + nn_test_rng_int(r, 3);
    c->kh = ks[nn_test_rng_int(r, 4)];
    c->kw = ks[nn_test_rng_int(r, 4)];
    c->sh = 1 + nn_test_rng_int(r, 3);
    c->sw = 1 + nn_test_rng_int(r, 3);
    c->dh = c->kh > 1 ? 1 + nn_test_rng_int(r, 2) : 1;
    c->dw = c->kw > 1 ? 1 + nn_test_rng_int(r, 2) : 1;
    int eh = c->dh * (c->kh - 1) + 1, ew = c->dw * (c->kw - 1) + 1;
    c->pt = nn_test_rng_int(r, eh);
    c->pb = nn_test_rng_int(r, eh);
    c->pl = nn_test_rng_int(r, ew);
    c->pr = nn_test_rng_int(r, ew);
    c->H = (eh - c->pt - c->pb > 1 ? eh - c->pt - c->pb : 1) + nn_test_rng_int(r, 7);
    c->W = (ew - c->pl - c->pr > 1 ? ew - c->pl - c->pr : 1) + nn_test_rng_int(r, 7);
    c->bias = nn_test_rng_int(r, 2);
}

/* Forward and backward of the fast path against the naive twin on one case. */
static void conv_twin_check(const struct conv_case *c, const char *name, struct nn_test_rng *rng)
{
    struct conv_bufs f, n;
    char label[200];
    const struct nn_conv2d_dims *d;

    conv_bufs_init(&f, c, rng);
    conv_bufs_init(&n, c, rng);
    d = &f.d;
    memcpy(n.inp, f.inp, f.n_inp * sizeof(float));
    memcpy(n.w, f.w, f.n_w * sizeof(float));
    if (f.b)
        memcpy(n.b, f.b, (size_t)d->OC * sizeof(float));
    memcpy(n.r, f.r, f.n_out * sizeof(float));
    n.use_ref = 1;

    conv_forward(&f);
    conv_forward(&n);
    snprintf(label, sizeof(label),
             "conv2d twin %s (B%d C%d %dx%d OC%d k%dx%d s%dx%d p%d,%d d%dx%d g%d bias%d): out",
             name, d->B, d->C, d->H, d->W, d->OC, d->kh, d->kw, d->sh, d->sw, d->pt, d->pl, d->dh,
             d->dw, d->groups, c->bias);
    double atol = TWIN_ATOL_REL * fmax(1.0, nn_maxabs(n.out, n.n_out));
    nn_expect_close(label, f.out, n.out, f.n_out, atol, TWIN_RTOL);

    /* Same random prefill in both, so the accumulating paths are compared too. */
    nn_fill_uniform(rng, f.dinp, f.n_inp, -1.0f, 1.0f);
    nn_fill_uniform(rng, f.dw, f.n_w, -1.0f, 1.0f);
    memcpy(n.dinp, f.dinp, f.n_inp * sizeof(float));
    memcpy(n.dw, f.dw, f.n_w * sizeof(float));
    if (f.db) {
        nn_fill_uniform(rng, f.db, (size_t)d->OC, -1.0f, 1.0f);
        memcpy(n.db, f.db, (size_t)d->OC * sizeof(float));
    }
    conv_backward(&f);
    conv_backward(&n);
    size_t len = strlen(label) - strlen("out");
    snprintf(label + len, sizeof(label) - len, "dinp");
    atol = TWIN_ATOL_REL * fmax(1.0, nn_maxabs(n.dinp, n.n_inp));
    nn_expect_close(label, f.dinp, n.dinp, f.n_inp, atol, TWIN_RTOL);
    snprintf(label + len, sizeof(label) - len, "dweight");
    atol = TWIN_ATOL_REL * fmax(1.0, nn_maxabs(n.dw, n.n_w));
    nn_expect_close(label, f.dw, n.dw, f.n_w, atol, TWIN_RTOL);
    if (f.db) {
        snprintf(label + len, sizeof(label) - len, "dbias");
        atol = TWIN_ATOL_REL * fmax(1.0, nn_maxabs(n.db, (size_t)d->OC));
        nn_expect_close(label, f.db, n.db, (size_t)d->OC, atol, TWIN_RTOL);
    }
    conv_bufs_free(&f);
    conv_bufs_free(&n);
}

Test(grad, conv2d_fast_matches_ref)
{
    struct nn_test_rng rng = {202};
    char name[32];

    for (size_t i = 0; i < sizeof(conv_fd_cases) / sizeof(conv_fd_cases[0]); i++)
        conv_twin_check(&conv_fd_cases[i], conv_fd_cases[i].name, &rng);
    for (size_t i = 0; i < sizeof(conv_twin_cases) / sizeof(conv_twin_cases[0]); i++)
        conv_twin_check(&conv_twin_cases[i], conv_twin_cases[i].name, &rng);
    for (int i = 0; i < N_CONV_RANDOM; i++) {
        struct conv_case c;
        conv_random_case(&rng, &c);
        snprintf(name, sizeof(name), "random%02d", i);
        conv_twin_check(&c, name, &rng);
    }
    DP_ASSERT_NO_LEAKS();
}

/* NULL gradient pointers skip that gradient and leave the others unchanged. */
Test(grad, conv2d_null_grads)
{
    static const struct conv_case cases[] = {
        {"dense", 2, 4, 6, 6, 4, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1},
        {"groups2", 2, 4, 6, 6, 4, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 2, 1},
        {"depthwise", 2, 4, 6, 6, 4, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 4, 1},
    };
    struct nn_test_rng rng = {303};
    char label[128];

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        for (int use_ref = 0; use_ref <= 1; use_ref++) {
            struct conv_bufs cb;
            conv_bufs_init(&cb, &cases[i], &rng);
            cb.use_ref = use_ref;
            size_t n_b = (size_t)cb.d.OC;
            float *gi = nn_floats(cb.n_inp), *gw = nn_floats(cb.n_w), *gb = nn_floats(n_b);

            conv_forward(&cb);
            conv_backward(&cb);
            conv_backward_into(&cb, gi, NULL, NULL);
            conv_backward_into(&cb, NULL, gw, NULL);
            conv_backward_into(&cb, NULL, NULL, gb);
            snprintf(label, sizeof(label), "conv2d %s (%s): dinp alone", cases[i].name,
                     use_ref ? "ref" : "fast");
            nn_expect_close(label, gi, cb.dinp, cb.n_inp, 1e-6, 1e-5);
            snprintf(label, sizeof(label), "conv2d %s (%s): dweight alone", cases[i].name,
                     use_ref ? "ref" : "fast");
            nn_expect_close(label, gw, cb.dw, cb.n_w, 1e-6, 1e-5);
            snprintf(label, sizeof(label), "conv2d %s (%s): dbias alone", cases[i].name,
                     use_ref ? "ref" : "fast");
            nn_expect_close(label, gb, cb.db, n_b, 1e-6, 1e-5);
            dp_free(gi);
            dp_free(gw);
            dp_free(gb);
            conv_bufs_free(&cb);
        }
    }
    DP_ASSERT_NO_LEAKS();
}

Test(grad, conv2d_backward_accumulates)
{
    static const struct conv_case cases[] = {
        {"dense", 2, 3, 6, 5, 4, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1},
        {"groups2_s2", 2, 4, 7, 6, 4, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 2, 1},
        {"depthwise", 2, 4, 6, 6, 4, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 4, 1},
    };
    struct nn_test_rng rng = {404};
    char label[128];

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        for (int use_ref = 0; use_ref <= 1; use_ref++) {
            struct conv_bufs cb;
            conv_bufs_init(&cb, &cases[i], &rng);
            cb.use_ref = use_ref;
            struct acc_grad gs[] = {{"dinp", cb.dinp, cb.n_inp},
                                    {"dweight", cb.dw, cb.n_w},
                                    {"dbias", cb.db, (size_t)cb.d.OC}};
            conv_forward(&cb);
            snprintf(label, sizeof(label), "conv2d %s (%s)", cases[i].name,
                     use_ref ? "ref" : "fast");
            check_accumulates(label, conv_backward, &cb, gs, 3, &rng);
            conv_bufs_free(&cb);
        }
    }
    DP_ASSERT_NO_LEAKS();
}

/* ---- Linear -------------------------------------------------------------- */

struct linear_bufs {
    int B, I, O;
    float *inp, *w, *b, *out, *r, *dinp, *dw, *db;
};

static void linear_bufs_init(struct linear_bufs *lb, int B, int I, int O, int has_bias,
                             struct nn_test_rng *rng)
{
    memset(lb, 0, sizeof(*lb));
    lb->B = B;
    lb->I = I;
    lb->O = O;
    lb->inp = nn_floats((size_t)B * I);
    lb->w = nn_floats((size_t)O * I);
    lb->b = has_bias ? nn_floats((size_t)O) : NULL;
    lb->out = nn_floats((size_t)B * O);
    lb->r = nn_floats((size_t)B * O);
    lb->dinp = nn_floats((size_t)B * I);
    lb->dw = nn_floats((size_t)O * I);
    lb->db = has_bias ? nn_floats((size_t)O) : NULL;
    nn_fill_uniform(rng, lb->inp, (size_t)B * I, -1.0f, 1.0f);
    nn_fill_uniform(rng, lb->w, (size_t)O * I, -1.0f, 1.0f);
    if (lb->b)
        nn_fill_uniform(rng, lb->b, (size_t)O, -1.0f, 1.0f);
    nn_fill_uniform(rng, lb->r, (size_t)B * O, -1.0f, 1.0f);
}

static void linear_bufs_free(struct linear_bufs *lb)
{
    dp_free(lb->inp);
    dp_free(lb->w);
    dp_free(lb->b);
    dp_free(lb->out);
    dp_free(lb->r);
    dp_free(lb->dinp);
    dp_free(lb->dw);
    dp_free(lb->db);
}

static double linear_objective(void *ctx)
{
    struct linear_bufs *lb = ctx;
    nn_linear_forward(lb->out, lb->inp, lb->w, lb->b, lb->B, lb->I, lb->O);
    return nn_dot(lb->out, lb->r, (size_t)lb->B * lb->O);
}

static void linear_backward(void *ctx)
{
    struct linear_bufs *lb = ctx;
    nn_linear_backward(lb->dinp, lb->dw, lb->db, lb->r, lb->inp, lb->w, lb->B, lb->I, lb->O);
}

static const struct {
    int B, I, O, bias;
} linear_cases[] = {
    {1, 3, 2, 1}, {3, 5, 4, 1}, {2, 7, 3, 0}, {4, 16, 9, 1}, {5, 1, 3, 1}, {2, 6, 1, 0},
};

Test(grad, linear)
{
    struct nn_test_rng rng = {505};
    char label[128];

    for (size_t i = 0; i < sizeof(linear_cases) / sizeof(linear_cases[0]); i++) {
        struct linear_bufs lb;
        int B = linear_cases[i].B, I = linear_cases[i].I, O = linear_cases[i].O;
        linear_bufs_init(&lb, B, I, O, linear_cases[i].bias, &rng);
        linear_objective(&lb);
        linear_backward(&lb);
        snprintf(label, sizeof(label), "linear B%d I%d O%d: dinp", B, I, O);
        nn_fd_check(label, lb.inp, (size_t)B * I, lb.dinp, linear_objective, &lb, FD_EPS,
                    FD_RTOL_LINEAR, 0);
        snprintf(label, sizeof(label), "linear B%d I%d O%d: dweight", B, I, O);
        nn_fd_check(label, lb.w, (size_t)O * I, lb.dw, linear_objective, &lb, FD_EPS,
                    FD_RTOL_LINEAR, 0);
        if (lb.b) {
            snprintf(label, sizeof(label), "linear B%d I%d O%d: dbias", B, I, O);
            nn_fd_check(label, lb.b, (size_t)O, lb.db, linear_objective, &lb, FD_EPS,
                        FD_RTOL_LINEAR, 0);
        }
        linear_bufs_free(&lb);
    }
    DP_ASSERT_NO_LEAKS();
}

Test(grad, linear_fast_matches_ref)
{
    static const struct {
        int B, I, O, bias;
    } cases[] = {
        {1, 1, 1, 1},    {1, 3, 2, 0},    {3, 5, 4, 1},      {8, 65, 33, 1},
        {16, 84, 10, 1}, {7, 120, 84, 0}, {64, 400, 120, 1}, {2, 257, 3, 1},
    };
    struct nn_test_rng rng = {606};
    char label[128];

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct linear_bufs lb;
        int B = cases[i].B, I = cases[i].I, O = cases[i].O;
        linear_bufs_init(&lb, B, I, O, cases[i].bias, &rng);
        float *ref = nn_floats((size_t)B * O);
        nn_linear_forward(lb.out, lb.inp, lb.w, lb.b, B, I, O);
        nn_linear_forward_ref(ref, lb.inp, lb.w, lb.b, B, I, O);
        snprintf(label, sizeof(label), "linear twin B%d I%d O%d bias%d: out", B, I, O,
                 cases[i].bias);
        nn_expect_close(label, lb.out, ref, (size_t)B * O,
                        TWIN_ATOL_REL * fmax(1.0, nn_maxabs(ref, (size_t)B * O)), TWIN_RTOL);
        dp_free(ref);
        linear_bufs_free(&lb);
    }
    DP_ASSERT_NO_LEAKS();
}

Test(grad, linear_backward_accumulates)
{
    struct nn_test_rng rng = {707};
    struct linear_bufs lb;

    linear_bufs_init(&lb, 3, 6, 4, 1, &rng);
    struct acc_grad gs[] = {{"dinp", lb.dinp, 18}, {"dweight", lb.dw, 24}, {"dbias", lb.db, 4}};
    check_accumulates("linear B3 I6 O4", linear_backward, &lb, gs, 3, &rng);
    linear_bufs_free(&lb);
    DP_ASSERT_NO_LEAKS();
}

/* ---- Batch norm ---------------------------------------------------------- */

#define BN_EPS      1e-5f
#define BN_MOMENTUM 0.1f

struct bn_bufs {
    int B, C, HW;
    size_t n;
    float *inp, *gamma, *beta, *out, *mean, *rstd, *rmean, *rvar, *r;
    float *dinp, *dgamma, *dbeta;
};

static void bn_bufs_init(struct bn_bufs *bb, int B, int C, int HW, struct nn_test_rng *rng)
{
    memset(bb, 0, sizeof(*bb));
    bb->B = B;
    bb->C = C;
    bb->HW = HW;
    bb->n = (size_t)B * C * HW;
    bb->inp = nn_floats(bb->n);
    bb->gamma = nn_floats((size_t)C);
    bb->beta = nn_floats((size_t)C);
    bb->out = nn_floats(bb->n);
    bb->mean = nn_floats((size_t)C);
    bb->rstd = nn_floats((size_t)C);
    bb->rmean = nn_floats((size_t)C);
    bb->rvar = nn_floats((size_t)C);
    bb->r = nn_floats(bb->n);
    bb->dinp = nn_floats(bb->n);
    bb->dgamma = nn_floats((size_t)C);
    bb->dbeta = nn_floats((size_t)C);
    /* Channel c: values around c - 1 with spread growing with c. */
    for (int b = 0; b < B; b++)
        for (int c = 0; c < C; c++)
            for (int i = 0; i < HW; i++)
                bb->inp[((size_t)b * C + c) * HW + i] =
                    (float)(c - 1) +
                    (0.5f + 0.5f * (float)c) * nn_test_rng_uniform(rng, -1.0f, 1.0f);
    nn_fill_uniform(rng, bb->gamma, (size_t)C, 0.5f, 1.5f);
    nn_fill_uniform(rng, bb->beta, (size_t)C, -1.0f, 1.0f);
    for (int c = 0; c < C; c++)
        bb->rvar[c] = 1.0f;
    nn_fill_uniform(rng, bb->r, bb->n, -1.0f, 1.0f);
}

static void bn_bufs_free(struct bn_bufs *bb)
{
    float *ps[] = {bb->inp,   bb->gamma, bb->beta, bb->out,  bb->mean,   bb->rstd,
                   bb->rmean, bb->rvar,  bb->r,    bb->dinp, bb->dgamma, bb->dbeta};
    for (size_t i = 0; i < sizeof(ps) / sizeof(ps[0]); i++)
        dp_free(ps[i]);
}

static void bn_forward(struct bn_bufs *bb)
{
    nn_bn2d_forward_train(bb->out, bb->mean, bb->rstd, bb->rmean, bb->rvar, bb->inp, bb->gamma,
                          bb->beta, bb->B, bb->C, bb->HW, BN_EPS, BN_MOMENTUM);
}

static double bn_objective(void *ctx)
{
    struct bn_bufs *bb = ctx;
    bn_forward(bb);
    return nn_dot(bb->out, bb->r, bb->n);
}

static void bn_backward(void *ctx)
{
    struct bn_bufs *bb = ctx;
    nn_bn2d_backward(bb->dinp, bb->dgamma, bb->dbeta, bb->r, bb->inp, bb->gamma, bb->mean, bb->rstd,
                     bb->B, bb->C, bb->HW);
}

Test(grad, bn2d_train)
{
    static const struct {
        int B, C, HW;
    } cases[] = {{2, 3, 9}, {4, 2, 4}, {1, 2, 16}, {8, 1, 1}, {3, 4, 5}};
    struct nn_test_rng rng = {808};
    char label[128];

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct bn_bufs bb;
        int B = cases[i].B, C = cases[i].C, HW = cases[i].HW;
        bn_bufs_init(&bb, B, C, HW, &rng);
        bn_forward(&bb);
        bn_backward(&bb);
        /* The cache must stay what the analytic pass used while FD reruns forward. */
        snprintf(label, sizeof(label), "bn2d train B%d C%d HW%d: dinp", B, C, HW);
        nn_fd_check(label, bb.inp, bb.n, bb.dinp, bn_objective, &bb, FD_EPS, FD_RTOL_SMOOTH, 0);
        snprintf(label, sizeof(label), "bn2d train B%d C%d HW%d: dgamma", B, C, HW);
        nn_fd_check(label, bb.gamma, (size_t)C, bb.dgamma, bn_objective, &bb, FD_EPS,
                    FD_RTOL_SMOOTH, 0);
        snprintf(label, sizeof(label), "bn2d train B%d C%d HW%d: dbeta", B, C, HW);
        nn_fd_check(label, bb.beta, (size_t)C, bb.dbeta, bn_objective, &bb, FD_EPS, FD_RTOL_SMOOTH,
                    0);
        bn_bufs_free(&bb);
    }
    DP_ASSERT_NO_LEAKS();
}

Test(grad, bn2d_backward_accumulates)
{
    struct nn_test_rng rng = {909};
    struct bn_bufs bb;

    bn_bufs_init(&bb, 2, 3, 5, &rng);
    bn_forward(&bb);
    struct acc_grad gs[] = {
        {"dinp", bb.dinp, bb.n}, {"dgamma", bb.dgamma, 3}, {"dbeta", bb.dbeta, 3}};
    check_accumulates("bn2d B2 C3 HW5", bn_backward, &bb, gs, 3, &rng);
    bn_bufs_free(&bb);
    DP_ASSERT_NO_LEAKS();
}

/* ---- Pooling ------------------------------------------------------------- */

struct pool_case {
    const char *name;
    int B, C, H, W, kh, kw, sh, sw, pt, pl, pb, pr, incl;
};

/* clang-format off */
static const struct pool_case pool_cases[] = {
    /* name            B  C  H  W kh kw sh sw pt pl pb pr incl */
    {"k2_s2",          2, 2, 6, 6, 2, 2, 2, 2, 0, 0, 0, 0, 1},
    {"k2_s2_odd",      1, 2, 7, 5, 2, 2, 2, 2, 0, 0, 0, 0, 0},
    {"k3_s2_p1",       2, 2, 7, 8, 3, 3, 2, 2, 1, 1, 1, 1, 1},
    {"k3_s2_p1_excl",  2, 2, 7, 8, 3, 3, 2, 2, 1, 1, 1, 1, 0},
    {"k3_s1_p1",       1, 2, 5, 6, 3, 3, 1, 1, 1, 1, 1, 1, 0},
    {"k3_s1_p1_incl",  1, 2, 5, 6, 3, 3, 1, 1, 1, 1, 1, 1, 1},
    {"rect_2x3",       2, 1, 6, 7, 2, 3, 1, 2, 1, 1, 0, 1, 0},
    {"asym_pad",       1, 2, 6, 6, 3, 3, 2, 2, 1, 0, 0, 1, 0},
    {"asym_pad_incl",  1, 2, 6, 6, 3, 3, 2, 2, 0, 1, 1, 0, 1},
};
/* clang-format on */

static struct nn_pool_dims pool_dims(const struct pool_case *c)
{
    struct nn_pool_dims d;
    memset(&d, 0, sizeof(d));
    d.B = c->B;
    d.C = c->C;
    d.H = c->H;
    d.W = c->W;
    d.kh = c->kh;
    d.kw = c->kw;
    d.sh = c->sh;
    d.sw = c->sw;
    d.pt = c->pt;
    d.pl = c->pl;
    d.pb = c->pb;
    d.pr = c->pr;
    d.count_include_pad = c->incl;
    d.OH = (c->H + c->pt + c->pb - c->kh) / c->sh + 1;
    d.OW = (c->W + c->pl + c->pr - c->kw) / c->sw + 1;
    return d;
}

/* Independent naive pooling for the forward values (asymmetric pads included). */
static void pool_naive(float *out, int *argmax, const float *inp, const struct nn_pool_dims *d,
                       int is_max)
{
    for (int p = 0; p < d->B * d->C; p++) {
        const float *x = inp + (size_t)p * d->H * d->W;
        for (int oy = 0; oy < d->OH; oy++) {
            for (int ox = 0; ox < d->OW; ox++) {
                double sum = 0.0;
                float best = -INFINITY;
                int best_i = -1, n_real = 0;
                for (int ky = 0; ky < d->kh; ky++) {
                    for (int kx = 0; kx < d->kw; kx++) {
                        int iy = oy * d->sh - d->pt + ky, ix = ox * d->sw - d->pl + kx;
                        if (iy < 0 || iy >= d->H || ix < 0 || ix >= d->W)
                            continue;
                        float v = x[iy * d->W + ix];
                        n_real++;
                        sum += v;
                        if (v > best) {
                            best = v;
                            best_i = iy * d->W + ix;
                        }
                    }
                }
                size_t o = ((size_t)p * d->OH + oy) * d->OW + ox;
                if (is_max) {
                    out[o] = best;
                    argmax[o] = best_i;
                } else {
                    int div = d->count_include_pad ? d->kh * d->kw : n_real;
                    out[o] = (float)(sum / div);
                }
            }
        }
    }
}

struct pool_bufs {
    struct nn_pool_dims d;
    int is_max;
    size_t n_inp, n_out;
    float *inp, *out, *r, *dinp;
    int *argmax;
};

static void pool_bufs_init(struct pool_bufs *pb, const struct pool_case *c, int is_max)
{
    memset(pb, 0, sizeof(*pb));
    pb->d = pool_dims(c);
    pb->is_max = is_max;
    pb->n_inp = (size_t)c->B * c->C * c->H * c->W;
    pb->n_out = (size_t)c->B * c->C * pb->d.OH * pb->d.OW;
    pb->inp = nn_floats(pb->n_inp);
    pb->out = nn_floats(pb->n_out);
    pb->r = nn_floats(pb->n_out);
    pb->dinp = nn_floats(pb->n_inp);
    pb->argmax = dp_calloc(pb->n_out, sizeof(int));
    cr_assert_not_null(pb->argmax);
}

static void pool_bufs_free(struct pool_bufs *pb)
{
    dp_free(pb->inp);
    dp_free(pb->out);
    dp_free(pb->r);
    dp_free(pb->dinp);
    dp_free(pb->argmax);
}

static void pool_forward(struct pool_bufs *pb)
{
    if (pb->is_max)
        nn_maxpool_forward(pb->out, pb->argmax, pb->inp, &pb->d);
    else
        nn_avgpool_forward(pb->out, pb->inp, &pb->d);
}

static double pool_objective(void *ctx)
{
    struct pool_bufs *pb = ctx;
    pool_forward(pb);
    return nn_dot(pb->out, pb->r, pb->n_out);
}

static void pool_backward(void *ctx)
{
    struct pool_bufs *pb = ctx;
    if (pb->is_max)
        nn_maxpool_backward(pb->dinp, pb->r, pb->argmax, &pb->d);
    else
        nn_avgpool_backward(pb->dinp, pb->r, &pb->d);
}

/*
 * Max pooling on distinct values (spacing 0.05 > 2 * FD_EPS), once centred
 * on zero and once shifted so every value is negative: padding must never
 * win a max, which a zero-padded implementation would get wrong.
 */
Test(grad, maxpool)
{
    struct nn_test_rng rng = {1010};
    char label[128];

    for (size_t i = 0; i < sizeof(pool_cases) / sizeof(pool_cases[0]); i++) {
        for (int neg = 0; neg <= 1; neg++) {
            const struct pool_case *c = &pool_cases[i];
            struct pool_bufs pb;
            pool_bufs_init(&pb, c, 1);
            nn_fill_distinct(&rng, pb.inp, pb.n_inp, 0.05f);
            if (neg)
                for (size_t k = 0; k < pb.n_inp; k++)
                    pb.inp[k] -= 20.0f;
            nn_fill_uniform(&rng, pb.r, pb.n_out, -1.0f, 1.0f);

            float *want = nn_floats(pb.n_out);
            int *want_arg = dp_calloc(pb.n_out, sizeof(int));
            cr_assert_not_null(want_arg);
            pool_naive(want, want_arg, pb.inp, &pb.d, 1);
            pool_forward(&pb);
            snprintf(label, sizeof(label), "maxpool %s%s: out", c->name, neg ? " (negative)" : "");
            nn_expect_close(label, pb.out, want, pb.n_out, 0.0, 0.0);
            size_t n_bad = 0;
            for (size_t k = 0; k < pb.n_out; k++)
                n_bad += pb.argmax[k] != want_arg[k];
            cr_expect(n_bad == 0, "maxpool %s%s: %zu argmax entries differ from the naive scan",
                      c->name, neg ? " (negative)" : "", n_bad);
            dp_free(want);
            dp_free(want_arg);

            pool_backward(&pb);
            snprintf(label, sizeof(label), "maxpool %s%s: dinp", c->name, neg ? " (negative)" : "");
            nn_fd_check(label, pb.inp, pb.n_inp, pb.dinp, pool_objective, &pb, FD_EPS,
                        FD_RTOL_LINEAR, 0);
            pool_bufs_free(&pb);
        }
    }
    DP_ASSERT_NO_LEAKS();
}

/*
 * Ties go to the first position in scan order (pool.h), so on a constant
 * input every window's gradient lands on its first real input position.
 */
Test(grad, maxpool_ties_first)
{
    static const struct pool_case c = {"ties", 1, 2, 5, 6, 3, 2, 2, 2, 1, 1, 1, 1, 0};
    struct pool_bufs pb;
    size_t n_bad = 0;

    pool_bufs_init(&pb, &c, 1);
    for (size_t k = 0; k < pb.n_inp; k++)
        pb.inp[k] = -0.5f;
    pool_forward(&pb);
    for (int p = 0; p < c.B * c.C; p++) {
        for (int oy = 0; oy < pb.d.OH; oy++) {
            for (int ox = 0; ox < pb.d.OW; ox++) {
                int iy = oy * c.sh - c.pt, ix = ox * c.sw - c.pl;
                iy = iy < 0 ? 0 : iy;
                ix = ix < 0 ? 0 : ix;
                size_t o = ((size_t)p * pb.d.OH + oy) * pb.d.OW + ox;
                n_bad += pb.argmax[o] != iy * c.W + ix || pb.out[o] != -0.5f;
            }
        }
    }
    cr_expect_eq(n_bad, 0, "maxpool ties: %zu windows did not pick their first real position",
                 n_bad);
    pool_bufs_free(&pb);
    DP_ASSERT_NO_LEAKS();
}

Test(grad, avgpool)
{
    struct nn_test_rng rng = {1111};
    char label[128];

    for (size_t i = 0; i < sizeof(pool_cases) / sizeof(pool_cases[0]); i++) {
        const struct pool_case *c = &pool_cases[i];
        struct pool_bufs pb;
        pool_bufs_init(&pb, c, 0);
        nn_fill_uniform(&rng, pb.inp, pb.n_inp, -1.0f, 1.0f);
        nn_fill_uniform(&rng, pb.r, pb.n_out, -1.0f, 1.0f);

        float *want = nn_floats(pb.n_out);
        pool_naive(want, NULL, pb.inp, &pb.d, 0);
        pool_forward(&pb);
        snprintf(label, sizeof(label), "avgpool %s (count_include_pad=%d): out", c->name, c->incl);
        nn_expect_close(label, pb.out, want, pb.n_out, 1e-6, 1e-5);
        dp_free(want);

        pool_backward(&pb);
        snprintf(label, sizeof(label), "avgpool %s (count_include_pad=%d): dinp", c->name, c->incl);
        nn_fd_check(label, pb.inp, pb.n_inp, pb.dinp, pool_objective, &pb, FD_EPS, FD_RTOL_LINEAR,
                    0);
        pool_bufs_free(&pb);
    }
    DP_ASSERT_NO_LEAKS();
}

Test(grad, pool_backward_accumulates)
{
    struct nn_test_rng rng = {1212};
    char label[128];

    for (int is_max = 0; is_max <= 1; is_max++) {
        const struct pool_case *c = &pool_cases[2]; /* k3 s2 p1: overlapping windows */
        struct pool_bufs pb;
        pool_bufs_init(&pb, c, is_max);
        nn_fill_distinct(&rng, pb.inp, pb.n_inp, 0.05f);
        nn_fill_uniform(&rng, pb.r, pb.n_out, -1.0f, 1.0f);
        pool_forward(&pb);
        struct acc_grad gs[] = {{"dinp", pb.dinp, pb.n_inp}};
        snprintf(label, sizeof(label), "%s %s", is_max ? "maxpool" : "avgpool", c->name);
        check_accumulates(label, pool_backward, &pb, gs, 1, &rng);
        pool_bufs_free(&pb);
    }
    DP_ASSERT_NO_LEAKS();
}

struct gap_bufs {
    int B, C, HW;
    float *inp, *out, *r, *dinp;
};

static double gap_objective(void *ctx)
{
    struct gap_bufs *g = ctx;
    nn_gap_forward(g->out, g->inp, g->B, g->C, g->HW);
    return nn_dot(g->out, g->r, (size_t)g->B * g->C);
}

static void gap_backward(void *ctx)
{
    struct gap_bufs *g = ctx;
    nn_gap_backward(g->dinp, g->r, g->B, g->C, g->HW);
}

Test(grad, gap)
{
    static const struct {
        int B, C, HW;
    } cases[] = {{2, 3, 5}, {1, 4, 1}, {3, 2, 49}};
    struct nn_test_rng rng = {1313};
    char label[128];

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct gap_bufs g = {cases[i].B, cases[i].C, cases[i].HW, NULL, NULL, NULL, NULL};
        size_t n_inp = (size_t)g.B * g.C * g.HW, n_out = (size_t)g.B * g.C;
        g.inp = nn_floats(n_inp);
        g.out = nn_floats(n_out);
        g.r = nn_floats(n_out);
        g.dinp = nn_floats(n_inp);
        nn_fill_uniform(&rng, g.inp, n_inp, -1.0f, 1.0f);
        nn_fill_uniform(&rng, g.r, n_out, -1.0f, 1.0f);

        /* Forward value: the plain mean. */
        gap_objective(&g);
        float *want = nn_floats(n_out);
        for (size_t o = 0; o < n_out; o++) {
            double s = 0.0;
            for (int k = 0; k < g.HW; k++)
                s += g.inp[o * (size_t)g.HW + (size_t)k];
            want[o] = (float)(s / g.HW);
        }
        snprintf(label, sizeof(label), "gap B%d C%d HW%d: out", g.B, g.C, g.HW);
        nn_expect_close(label, g.out, want, n_out, 1e-6, 1e-5);
        dp_free(want);

        gap_backward(&g);
        snprintf(label, sizeof(label), "gap B%d C%d HW%d: dinp", g.B, g.C, g.HW);
        nn_fd_check(label, g.inp, n_inp, g.dinp, gap_objective, &g, FD_EPS, FD_RTOL_LINEAR, 0);

        struct acc_grad gs[] = {{"dinp", g.dinp, n_inp}};
        check_accumulates(label, gap_backward, &g, gs, 1, &rng);
        dp_free(g.inp);
        dp_free(g.out);
        dp_free(g.r);
        dp_free(g.dinp);
    }
    DP_ASSERT_NO_LEAKS();
}

/* ---- Element-wise -------------------------------------------------------- */

enum ew_kind { EW_RELU, EW_RELU6, EW_DROPOUT };

struct ew_bufs {
    enum ew_kind kind;
    size_t n;
    float p;
    uint64_t seed;
    float *inp, *out, *r, *dinp;
    uint8_t *mask;
};

static void ew_forward(struct ew_bufs *e)
{
    switch (e->kind) {
        case EW_RELU:
            nn_relu_forward(e->out, e->inp, e->n);
            break;
        case EW_RELU6:
            nn_relu6_forward(e->out, e->inp, e->n);
            break;
        case EW_DROPOUT:
            nn_dropout_forward(e->out, e->mask, e->inp, e->n, e->p, e->seed);
            break;
    }
}

static double ew_objective(void *ctx)
{
    struct ew_bufs *e = ctx;
    ew_forward(e);
    return nn_dot(e->out, e->r, e->n);
}

static void ew_backward(void *ctx)
{
    struct ew_bufs *e = ctx;
    switch (e->kind) {
        case EW_RELU:
            nn_relu_backward(e->dinp, e->r, e->inp, e->n);
            break;
        case EW_RELU6:
            nn_relu6_backward(e->dinp, e->r, e->inp, e->n);
            break;
        case EW_DROPOUT:
            nn_dropout_backward(e->dinp, e->r, e->mask, e->n, e->p);
            break;
    }
}

static void ew_init(struct ew_bufs *e, enum ew_kind kind, size_t n)
{
    memset(e, 0, sizeof(*e));
    e->kind = kind;
    e->n = n;
    e->inp = nn_floats(n);
    e->out = nn_floats(n);
    e->r = nn_floats(n);
    e->dinp = nn_floats(n);
    e->mask = dp_calloc(n, 1);
    cr_assert_not_null(e->mask);
}

static void ew_free(struct ew_bufs *e)
{
    dp_free(e->inp);
    dp_free(e->out);
    dp_free(e->r);
    dp_free(e->dinp);
    dp_free(e->mask);
}

/* FD check plus accumulation for one element-wise layer. */
static void ew_check(struct ew_bufs *e, const char *label, struct nn_test_rng *rng)
{
    char what[128];

    nn_fill_uniform(rng, e->r, e->n, -1.0f, 1.0f);
    ew_forward(e);
    nn_zero(e->dinp, e->n);
    ew_backward(e);
    snprintf(what, sizeof(what), "%s: dinp", label);
    nn_fd_check(what, e->inp, e->n, e->dinp, ew_objective, e, FD_EPS, FD_RTOL_LINEAR, 0);
    struct acc_grad gs[] = {{"dinp", e->dinp, e->n}};
    check_accumulates(label, ew_backward, e, gs, 1, rng);
}

Test(grad, relu)
{
    static const float kinks[] = {0.0f};
    struct nn_test_rng rng = {1414};
    struct ew_bufs e;

    ew_init(&e, EW_RELU, 64);
    nn_fill_away_from(&rng, e.inp, e.n, -3.0f, 3.0f, kinks, 1, 0.1f);
    ew_forward(&e);
    for (size_t i = 0; i < e.n; i++)
        cr_expect_eq(e.out[i], e.inp[i] > 0.0f ? e.inp[i] : 0.0f, "relu out[%zu]", i);
    ew_check(&e, "relu", &rng);
    ew_free(&e);
    DP_ASSERT_NO_LEAKS();
}

Test(grad, relu6)
{
    static const float kinks[] = {0.0f, 6.0f};
    struct nn_test_rng rng = {1515};
    struct ew_bufs e;

    ew_init(&e, EW_RELU6, 96);
    nn_fill_away_from(&rng, e.inp, e.n, -2.0f, 8.0f, kinks, 2, 0.1f);
    ew_forward(&e);
    for (size_t i = 0; i < e.n; i++)
        cr_expect_eq(e.out[i], fminf(fmaxf(e.inp[i], 0.0f), 6.0f), "relu6 out[%zu]", i);
    ew_check(&e, "relu6", &rng);
    ew_free(&e);
    DP_ASSERT_NO_LEAKS();
}

struct add_bufs {
    size_t n;
    float *a, *b, *out, *r, *da, *db;
};

static double add_objective(void *ctx)
{
    struct add_bufs *ab = ctx;
    nn_add_forward(ab->out, ab->a, ab->b, ab->n);
    return nn_dot(ab->out, ab->r, ab->n);
}

static void add_backward(void *ctx)
{
    struct add_bufs *ab = ctx;
    nn_add_backward(ab->da, ab->db, ab->r, ab->n);
}

Test(grad, add)
{
    struct nn_test_rng rng = {1616};
    struct add_bufs ab;
    size_t n = 37;

    ab.n = n;
    ab.a = nn_floats(n);
    ab.b = nn_floats(n);
    ab.out = nn_floats(n);
    ab.r = nn_floats(n);
    ab.da = nn_floats(n);
    ab.db = nn_floats(n);
    nn_fill_uniform(&rng, ab.a, n, -2.0f, 2.0f);
    nn_fill_uniform(&rng, ab.b, n, -2.0f, 2.0f);
    nn_fill_uniform(&rng, ab.r, n, -1.0f, 1.0f);
    add_objective(&ab);
    for (size_t i = 0; i < n; i++)
        cr_expect_eq(ab.out[i], ab.a[i] + ab.b[i], "add out[%zu]", i);
    add_backward(&ab);
    nn_fd_check("add: da", ab.a, n, ab.da, add_objective, &ab, FD_EPS, FD_RTOL_LINEAR, 0);
    nn_fd_check("add: db", ab.b, n, ab.db, add_objective, &ab, FD_EPS, FD_RTOL_LINEAR, 0);
    struct acc_grad gs[] = {{"da", ab.da, n}, {"db", ab.db, n}};
    check_accumulates("add", add_backward, &ab, gs, 2, &rng);
    dp_free(ab.a);
    dp_free(ab.b);
    dp_free(ab.out);
    dp_free(ab.r);
    dp_free(ab.da);
    dp_free(ab.db);
    DP_ASSERT_NO_LEAKS();
}

/* With a fixed seed the dropout mask is fixed, so the layer is linear in inp. */
Test(grad, dropout)
{
    static const float ps[] = {0.1f, 0.5f, 0.8f};
    struct nn_test_rng rng = {1717};
    char label[64];

    for (size_t i = 0; i < sizeof(ps) / sizeof(ps[0]); i++) {
        struct ew_bufs e;
        ew_init(&e, EW_DROPOUT, 200);
        e.p = ps[i];
        e.seed = 12345 + i;
        nn_fill_uniform(&rng, e.inp, e.n, -2.0f, 2.0f);
        snprintf(label, sizeof(label), "dropout p=%.1f", (double)e.p);
        ew_check(&e, label, &rng);
        ew_free(&e);
    }
    DP_ASSERT_NO_LEAKS();
}

/*
 * Inverted dropout: each output is 0 or inp / (1 - p); about a fraction
 * 1 - p is kept; the mask is a function of the seed (same seed, same mask;
 * another seed, another mask); p = 0 keeps everything unchanged.
 */
Test(grad, dropout_mask)
{
    const size_t n = 20000;
    const float p = 0.25f;
    struct nn_test_rng rng = {1818};
    float *inp = nn_floats(n), *o1 = nn_floats(n), *o2 = nn_floats(n), *o3 = nn_floats(n);
    uint8_t *m1 = dp_calloc(n, 1), *m2 = dp_calloc(n, 1), *m3 = dp_calloc(n, 1);
    cr_assert(m1 && m2 && m3);

    nn_fill_uniform(&rng, inp, n, 0.5f, 1.5f);
    nn_dropout_forward(o1, m1, inp, n, p, 7);
    nn_dropout_forward(o2, m2, inp, n, p, 7);
    nn_dropout_forward(o3, m3, inp, n, p, 8);

    size_t n_kept = 0, n_bad = 0, n_diff_seed = 0;
    for (size_t i = 0; i < n; i++) {
        float scaled = inp[i] / (1.0f - p);
        if (o1[i] != 0.0f) {
            n_kept++;
            n_bad += fabsf(o1[i] - scaled) > 1e-6f * scaled;
        }
        n_diff_seed += (o1[i] != 0.0f) != (o3[i] != 0.0f);
    }
    cr_expect_eq(n_bad, 0, "dropout: %zu kept values are not inp / (1 - p)", n_bad);
    double kept = (double)n_kept / (double)n;
    cr_expect(fabs(kept - (1.0 - p)) < 0.02, "dropout p=%.2f: kept fraction %.4f", (double)p, kept);
    cr_expect(memcmp(o1, o2, n * sizeof(float)) == 0, "dropout: same seed, different output");
    cr_expect(memcmp(m1, m2, n) == 0, "dropout: same seed, different mask");
    /* Independent masks disagree on 2p(1-p) = 37.5% of positions. */
    cr_expect(n_diff_seed > n / 4,
              "dropout: seeds 7 and 8 give nearly the same mask (%zu of %zu"
              " positions differ)",
              n_diff_seed, n);

    nn_dropout_forward(o1, m1, inp, n, 0.0f, 7);
    cr_expect(memcmp(o1, inp, n * sizeof(float)) == 0, "dropout p=0 must be the identity");

    dp_free(inp);
    dp_free(o1);
    dp_free(o2);
    dp_free(o3);
    dp_free(m1);
    dp_free(m2);
    dp_free(m3);
    DP_ASSERT_NO_LEAKS();
}

/* ---- Softmax cross-entropy ----------------------------------------------- */

struct xent_bufs {
    int B, K;
    float *logits, *probs, *dlogits;
    int32_t *labels;
};

static double xent_objective(void *ctx)
{
    struct xent_bufs *x = ctx;
    return nn_xent_forward(x->probs, x->logits, x->labels, x->B, x->K);
}

static void xent_init(struct xent_bufs *x, int B, int K, float scale, struct nn_test_rng *rng)
{
    size_t n = (size_t)B * K;
    x->B = B;
    x->K = K;
    x->logits = nn_floats(n);
    x->probs = nn_floats(n);
    x->dlogits = nn_floats(n);
    x->labels = dp_calloc((size_t)B, sizeof(int32_t));
    cr_assert_not_null(x->labels);
    nn_fill_uniform(rng, x->logits, n, -scale, scale);
    for (int b = 0; b < B; b++)
        x->labels[b] = nn_test_rng_int(rng, K);
}

static void xent_free(struct xent_bufs *x)
{
    dp_free(x->logits);
    dp_free(x->probs);
    dp_free(x->dlogits);
    dp_free(x->labels);
}

Test(grad, xent)
{
    static const struct {
        int B, K;
    } cases[] = {{1, 2}, {1, 3}, {4, 5}, {8, 10}, {3, 17}};
    struct nn_test_rng rng = {1919};
    char label[64];

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct xent_bufs x;
        int B = cases[i].B, K = cases[i].K;
        xent_init(&x, B, K, 2.0f, &rng);
        xent_objective(&x);
        /* Backward writes, so a stale buffer must not leak into the result. */
        for (size_t k = 0; k < (size_t)B * K; k++)
            x.dlogits[k] = 123.0f;
        nn_xent_backward(x.dlogits, x.probs, x.labels, B, K);
        snprintf(label, sizeof(label), "xent B%d K%d: dlogits", B, K);
        nn_fd_check(label, x.logits, (size_t)B * K, x.dlogits, xent_objective, &x, FD_EPS,
                    FD_RTOL_SMOOTH, 0);
        xent_free(&x);
    }
    DP_ASSERT_NO_LEAKS();
}

/*
 * The softmax subtracts the row maximum: shifting the logits by 1000 changes
 * neither the loss nor the probabilities, and stays finite.
 */
Test(grad, xent_shift_invariant)
{
    struct nn_test_rng rng = {2020};
    struct xent_bufs x, y;
    const int B = 4, K = 6;
    size_t n = (size_t)B * K;

    xent_init(&x, B, K, 3.0f, &rng);
    xent_init(&y, B, K, 3.0f, &rng);
    memcpy(y.labels, x.labels, (size_t)B * sizeof(int32_t));
    for (size_t i = 0; i < n; i++)
        y.logits[i] = x.logits[i] + 1000.0f;
    float lx = nn_xent_forward(x.probs, x.logits, x.labels, B, K);
    float ly = nn_xent_forward(y.probs, y.logits, y.labels, B, K);
    cr_expect(isfinite(ly), "xent: loss not finite for logits near 1000");
    /* 1000 + x is exact only to ~6e-5 in float32, hence the absolute tolerance. */
    cr_expect(fabsf(lx - ly) < 1e-3f, "xent: loss %.7g vs %.7g after +1000 shift", (double)lx,
              (double)ly);
    nn_expect_close("xent: probs after +1000 shift", y.probs, x.probs, n, 1e-4, 1e-3);
    for (int b = 0; b < B; b++) {
        double s = 0.0;
        for (int k = 0; k < K; k++)
            s += x.probs[b * K + k];
        cr_expect(fabs(s - 1.0) < 1e-5, "xent: probs row %d sums to %.8g", b, s);
    }
    xent_free(&x);
    xent_free(&y);
    DP_ASSERT_NO_LEAKS();
}
