/*
 * The recurrent layers (worker/nn/lstm.c, gru.c, rnn_mat.c; suite "rnn"):
 *
 *   - forward equals the naive *_ref twin (dense, and block-circulant
 *     against the twin on the expanded matrices, on circ.h's brute-force
 *     reference and on its FFT path);
 *   - backward through time equals central differences of the forward for
 *     the input and all four parameters, dense and block-circulant;
 *   - forward and every gradient equal torch.nn.LSTM / torch.nn.GRU on
 *     fixtures written at test time by make_rnn_fixtures.py;
 *   - the engine's rows (net.c) run a model with an lstm / gru layer and
 *     give the twin's answer; the built-in lstm-fmnist and gru-fmnist
 *     learn.
 *
 * The block sizes divide none of the matrix dimensions (4H or 3H, F, H),
 * so the zero padding of the circulant blocks is exercised; every
 * circulant check runs on both the reference and the FFT products. Shapes are
 * tiny (T >= 3) so every gradient element is checked quickly under ASan.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/alloc.h"
#include "common/model.h"
#include "tests/unit/test_util.h"
#include "tests/unit/worker/nn/nn_test_util.h"
#include "worker/circulant/circ.h"
#include "worker/nn/arch.h"
#include "worker/nn/gru.h"
#include "worker/nn/linear.h"
#include "worker/nn/lstm.h"
#include "worker/nn/net.h"
#include "worker/nn/train.h"

/* Smooth layers: the O(eps^2) truncation term needs a loose tolerance. */
#define RNN_FD_EPS  1e-2f
#define RNN_FD_RTOL 1e-2

/* One layer's tensors; weights in stored form (dense or (p, q, k)). */
struct rnn_case {
    int lstm; /* 1 = lstm, 0 = gru */
    struct nn_rnn_dims d;
    int k;
    struct nn_rnn_fft *fft; /* k > 0 on the FFT path, else NULL (reference products) */
    size_t n_x, n_wih, n_whh, n_b, n_out, n_cache;
    float *x, *w_ih, *w_hh, *b_ih, *b_hh, *out, *cache, *R;
};

static size_t rnn_numel(int rows, int cols, int k)
{
    if (k == 0)
        return (size_t)rows * cols;
    return (size_t)((rows + k - 1) / k) * (size_t)((cols + k - 1) / k) * (size_t)k;
}

static void rnn_setup(struct rnn_case *c, int lstm, int B, int T, int F, int H, int k, int fft,
                      uint64_t seed)
{
    memset(c, 0, sizeof(*c));
    c->lstm = lstm;
    c->d = (struct nn_rnn_dims){B, T, F, H};
    c->k = k;
    const int G = (lstm ? 4 : 3) * H;
    c->n_x = (size_t)B * T * F;
    c->n_wih = rnn_numel(G, F, k);
    c->n_whh = rnn_numel(G, H, k);
    c->n_b = (size_t)G;
    c->n_out = (size_t)B * T * H;
    c->n_cache = lstm ? nn_lstm_cache_floats(c->n_out) : nn_gru_cache_floats(c->n_out);
    struct nn_test_rng rng = {seed};
    c->x = nn_floats(c->n_x);
    c->w_ih = nn_floats(c->n_wih);
    c->w_hh = nn_floats(c->n_whh);
    c->b_ih = nn_floats(c->n_b);
    c->b_hh = nn_floats(c->n_b);
    c->out = nn_floats(c->n_out);
    c->cache = nn_floats(c->n_cache);
    c->R = nn_floats(c->n_out);
    nn_fill_uniform(&rng, c->x, c->n_x, -1.0f, 1.0f);
    nn_fill_uniform(&rng, c->w_ih, c->n_wih, -0.6f, 0.6f);
    nn_fill_uniform(&rng, c->w_hh, c->n_whh, -0.6f, 0.6f);
    nn_fill_uniform(&rng, c->b_ih, c->n_b, -0.4f, 0.4f);
    nn_fill_uniform(&rng, c->b_hh, c->n_b, -0.4f, 0.4f);
    nn_fill_uniform(&rng, c->R, c->n_out, -1.0f, 1.0f);
    if (fft) {
        struct dp_errinfo ei = {0};
        cr_assert_eq(nn_rnn_fft_new(&c->d, lstm ? 4 : 3, k, &c->fft, &ei), DP_OK, "%s", ei.msg);
    }
}

static void rnn_free(struct rnn_case *c)
{
    dp_free(c->x);
    dp_free(c->w_ih);
    dp_free(c->w_hh);
    dp_free(c->b_ih);
    dp_free(c->b_hh);
    dp_free(c->out);
    dp_free(c->cache);
    dp_free(c->R);
    nn_rnn_fft_free(c->fft);
}

static void rnn_mats(const struct rnn_case *c, struct nn_rnn_mat *w_ih, struct nn_rnn_mat *w_hh)
{
    const int G = (c->lstm ? 4 : 3) * c->d.H;
    nn_rnn_mat_init(w_ih, c->w_ih, G, c->d.F, c->k, c->fft ? c->fft->ih : NULL);
    nn_rnn_mat_init(w_hh, c->w_hh, G, c->d.H, c->k, c->fft ? c->fft->hh : NULL);
}

static void rnn_forward(struct rnn_case *c)
{
    struct nn_rnn_mat a, b;
    rnn_mats(c, &a, &b);
    if (c->lstm)
        nn_lstm_forward(c->out, c->cache, c->x, &a, &b, c->b_ih, c->b_hh, &c->d);
    else
        nn_gru_forward(c->out, c->cache, c->x, &a, &b, c->b_ih, c->b_hh, &c->d);
}

static void rnn_backward(struct rnn_case *c, float *dx, float *dw_ih, float *dw_hh, float *db_ih,
                         float *db_hh, const float *dout)
{
    struct nn_rnn_mat a, b;
    rnn_mats(c, &a, &b);
    if (c->lstm)
        nn_lstm_backward(dx, dw_ih, dw_hh, db_ih, db_hh, c->cache, dout, c->x, c->out, &a, &b,
                         &c->d);
    else
        nn_gru_backward(dx, dw_ih, dw_hh, db_ih, db_hh, c->cache, dout, c->x, c->out, &a, &b,
                        &c->d);
}

/* The dense matrix behind stored weights w (a copy when k == 0). */
static float *rnn_dense(const float *w, int rows, int cols, int k)
{
    float *dense = nn_floats((size_t)rows * cols);
    if (k == 0) {
        memcpy(dense, w, (size_t)rows * cols * sizeof(float));
    } else {
        struct circ_dims d;
        circ_dims_init(&d, rows, cols, k);
        circ_expand(dense, w, &d);
    }
    return dense;
}

/* The naive twin's output for c's weights. */
static float *rnn_reference(const struct rnn_case *c)
{
    const int G = (c->lstm ? 4 : 3) * c->d.H;
    float *wi = rnn_dense(c->w_ih, G, c->d.F, c->k), *wh = rnn_dense(c->w_hh, G, c->d.H, c->k);
    float *out = nn_floats(c->n_out), *cell = nn_floats(c->n_out);
    if (c->lstm)
        nn_lstm_forward_ref(out, cell, c->x, wi, wh, c->b_ih, c->b_hh, &c->d);
    else
        nn_gru_forward_ref(out, c->x, wi, wh, c->b_ih, c->b_hh, &c->d);
    dp_free(wi);
    dp_free(wh);
    dp_free(cell);
    return out;
}

/* lstm/gru x dense/circulant (reference or FFT products); B, T, F, H, k. */
struct rnn_shape {
    int lstm, B, T, F, H, k, fft;
};

static const struct rnn_shape rnn_shapes[] = {
    {1, 3, 4, 5, 6, 0, 0}, /* lstm dense */
    {1, 2, 3, 7, 5, 3, 0}, /* lstm, 4H = 20, F = 7, H = 5 in blocks of 3 */
    {1, 2, 3, 7, 5, 3, 1}, /* ... on the FFT path */
    {0, 3, 5, 4, 6, 0, 0}, /* gru dense */
    {0, 2, 4, 5, 7, 4, 0}, /* gru, 3H = 21, F = 5, H = 7 in blocks of 4 */
    {0, 2, 4, 5, 7, 4, 1}, /* ... on the FFT path */
};
#define RNN_N_SHAPES (sizeof(rnn_shapes) / sizeof(rnn_shapes[0]))

static const char *rnn_label(char *buf, size_t n, const struct rnn_shape *s, const char *what)
{
    snprintf(buf, n, "%s k=%d%s %s", s->lstm ? "lstm" : "gru", s->k, s->fft ? " fft" : "", what);
    return buf;
}

Test(rnn, forward_equals_the_naive_twin)
{
    for (size_t i = 0; i < RNN_N_SHAPES; i++) {
        const struct rnn_shape *s = &rnn_shapes[i];
        struct rnn_case c;
        rnn_setup(&c, s->lstm, s->B, s->T, s->F, s->H, s->k, s->fft, 100 + i);
        rnn_forward(&c);
        float *want = rnn_reference(&c);
        char label[64];
        nn_expect_close(rnn_label(label, sizeof(label), s, "out"), c.out, want, c.n_out, 1e-6,
                        1e-5);
        dp_free(want);
        rnn_free(&c);
    }
    DP_ASSERT_NO_LEAKS();
}

static double rnn_objective(void *ctx)
{
    struct rnn_case *c = ctx;
    rnn_forward(c);
    return nn_dot(c->out, c->R, c->n_out);
}

Test(rnn, backward_equals_central_differences)
{
    for (size_t i = 0; i < RNN_N_SHAPES; i++) {
        const struct rnn_shape *s = &rnn_shapes[i];
        struct rnn_case c;
        rnn_setup(&c, s->lstm, s->B, s->T, s->F, s->H, s->k, s->fft, 200 + i);
        float *dx = nn_floats(c.n_x), *dwi = nn_floats(c.n_wih), *dwh = nn_floats(c.n_whh);
        float *dbi = nn_floats(c.n_b), *dbh = nn_floats(c.n_b);
        rnn_forward(&c);
        rnn_backward(&c, dx, dwi, dwh, dbi, dbh, c.R);
        char label[64];
        nn_fd_check(rnn_label(label, sizeof(label), s, "dx"), c.x, c.n_x, dx, rnn_objective, &c,
                    RNN_FD_EPS, RNN_FD_RTOL, 0);
        nn_fd_check(rnn_label(label, sizeof(label), s, "dw_ih"), c.w_ih, c.n_wih, dwi,
                    rnn_objective, &c, RNN_FD_EPS, RNN_FD_RTOL, 0);
        nn_fd_check(rnn_label(label, sizeof(label), s, "dw_hh"), c.w_hh, c.n_whh, dwh,
                    rnn_objective, &c, RNN_FD_EPS, RNN_FD_RTOL, 0);
        nn_fd_check(rnn_label(label, sizeof(label), s, "db_ih"), c.b_ih, c.n_b, dbi, rnn_objective,
                    &c, RNN_FD_EPS, RNN_FD_RTOL, 0);
        nn_fd_check(rnn_label(label, sizeof(label), s, "db_hh"), c.b_hh, c.n_b, dbh, rnn_objective,
                    &c, RNN_FD_EPS, RNN_FD_RTOL, 0);
        /* Backward accumulates: a second call on the same forward doubles. */
        float *dx2 = nn_floats_copy(dx, c.n_x), *dwh2 = nn_floats_copy(dwh, c.n_whh);
        rnn_forward(&c);
        rnn_backward(&c, dx2, NULL, dwh2, NULL, NULL, c.R);
        for (size_t j = 0; j < c.n_x; j++)
            dx[j] *= 2.0f;
        for (size_t j = 0; j < c.n_whh; j++)
            dwh[j] *= 2.0f;
        nn_expect_close(rnn_label(label, sizeof(label), s, "dx accumulates"), dx2, dx, c.n_x, 1e-6,
                        1e-5);
        nn_expect_close(rnn_label(label, sizeof(label), s, "dw_hh accumulates"), dwh2, dwh, c.n_whh,
                        1e-6, 1e-5);
        dp_free(dx2);
        dp_free(dwh2);
        dp_free(dx);
        dp_free(dwi);
        dp_free(dwh);
        dp_free(dbi);
        dp_free(dbh);
        rnn_free(&c);
    }
    DP_ASSERT_NO_LEAKS();
}

/* ---- PyTorch ------------------------------------------------------------- */

static const char *const rnn_fx_cases[] = {"lstm_dense", "lstm_block3", "gru_dense", "gru_block4"};
#define RNN_N_FX (sizeof(rnn_fx_cases) / sizeof(rnn_fx_cases[0]))

/* Compares one fixture case (make_rnn_fixtures.py) with the engine, on
 * the FFT path when fft (circulant cases). */
static void rnn_check_fixture(const char *name, int fft)
{
    struct nn_fx fx;
    nn_fx_load(&fx, name);
    const int B = nn_fx_cfg(&fx, 0, 5), T = nn_fx_cfg(&fx, 1, 5), F = nn_fx_cfg(&fx, 2, 5);
    const int H = nn_fx_cfg(&fx, 3, 5), k = nn_fx_cfg(&fx, 4, 5);
    struct rnn_case c;
    if (fft && k == 0) {
        nn_fx_free(&fx);
        return;
    }
    rnn_setup(&c, strncmp(name, "lstm", 4) == 0, B, T, F, H, k, fft, 1);
    memcpy(c.x, nn_fx_get(&fx, "x", c.n_x), c.n_x * sizeof(float));
    memcpy(c.w_ih, nn_fx_get(&fx, "w_ih", c.n_wih), c.n_wih * sizeof(float));
    memcpy(c.w_hh, nn_fx_get(&fx, "w_hh", c.n_whh), c.n_whh * sizeof(float));
    memcpy(c.b_ih, nn_fx_get(&fx, "b_ih", c.n_b), c.n_b * sizeof(float));
    memcpy(c.b_hh, nn_fx_get(&fx, "b_hh", c.n_b), c.n_b * sizeof(float));
    float *dx = nn_floats(c.n_x), *dwi = nn_floats(c.n_wih), *dwh = nn_floats(c.n_whh);
    float *dbi = nn_floats(c.n_b), *dbh = nn_floats(c.n_b);
    rnn_forward(&c);
    rnn_backward(&c, dx, dwi, dwh, dbi, dbh, nn_fx_get(&fx, "dout", c.n_out));
    char label[96];
    const struct {
        const char *what;
        const float *got;
        size_t n;
    } cmp[] = {{"out", c.out, c.n_out}, {"dx", dx, c.n_x},     {"dw_ih", dwi, c.n_wih},
               {"dw_hh", dwh, c.n_whh}, {"db_ih", dbi, c.n_b}, {"db_hh", dbh, c.n_b}};
    for (size_t i = 0; i < sizeof(cmp) / sizeof(cmp[0]); i++) {
        snprintf(label, sizeof(label), "%s%s vs PyTorch: %s", name, fft ? " (fft)" : "",
                 cmp[i].what);
        nn_expect_close(label, cmp[i].got, nn_fx_get(&fx, cmp[i].what, cmp[i].n), cmp[i].n, 1e-6,
                        1e-5);
    }
    dp_free(dx);
    dp_free(dwi);
    dp_free(dwh);
    dp_free(dbi);
    dp_free(dbh);
    rnn_free(&c);
    nn_fx_free(&fx);
}

/* Writes the fixtures into a fresh temporary directory with PyTorch,
 * checks every case, and removes the directory. */
Test(rnn, matches_pytorch, .timeout = 120)
{
    char dir[] = "/tmp/dp-rnn-fx-XXXXXX", cmd[512], path[600];
    cr_assert_not_null(mkdtemp(dir));
    snprintf(cmd, sizeof(cmd),
             "OMP_NUM_THREADS=2 /usr/bin/python3 tests/unit/worker/nn/make_rnn_fixtures.py %s",
             dir);
    const int rc = system(cmd);
    cr_assert_eq(rc, 0, "`%s` failed (needs python3-torch; run from the repository root)", cmd);
    cr_assert_eq(setenv("DP_TEST_DATA", dir, 1), 0);
    for (size_t i = 0; i < RNN_N_FX; i++) {
        rnn_check_fixture(rnn_fx_cases[i], 0);
        rnn_check_fixture(rnn_fx_cases[i], 1);
    }
    for (size_t i = 0; i < RNN_N_FX; i++) {
        snprintf(path, sizeof(path), "%s/nn/%s.bin", dir, rnn_fx_cases[i]);
        cr_expect_eq(unlink(path), 0, "%s", path);
    }
    snprintf(path, sizeof(path), "%s/nn", dir);
    cr_expect_eq(rmdir(path), 0);
    cr_expect_eq(rmdir(dir), 0);
    DP_ASSERT_NO_LEAKS();
}

/* ---- Through the engine -------------------------------------------------- */

struct rnn_net_fd {
    struct nn_net *net;
    const float *x;
    const int32_t *labels;
    int n;
};

/* The net's mean cross-entropy on a partial batch. */
static double rnn_net_objective(void *ctx)
{
    struct rnn_net_fd *f = ctx;
    nn_net_forward(f->net, f->x, f->n, 1);
    return nn_net_loss(f->net, f->labels, f->n, NULL);
}

/*
 * A model input (1, T, F) -> op (H units, block k) -> last step -> linear:
 * the net's logits equal the twin's last hidden state through the linear
 * layer, for a full and a partial batch (the cache is laid out per call;
 * a circulant layer runs on the FFT path with the plans of its state),
 * and the net's gradient of every parameter (the rows' wiring of params,
 * param gradients, cache and dout) equals central differences of its loss.
 */
static void rnn_net_case(enum dp_op op, int k)
{
    const int T = 4, F = 5, H = 6, NC = 3, MAXB = 3;
    struct dp_errinfo ei = {0};
    struct dp_model *m = dp_model_new(1, T, F);
    cr_assert_not_null(m);
    struct dp_op_attrs a = {0};
    a.out_ch = H;
    a.block = k;
    const int in[1] = {DP_MODEL_INPUT};
    int x = dp_model_add_layer(m, "rnn", op, in, 1, &a, &ei);
    cr_assert_geq(x, 0, "%s", ei.msg);
    struct dp_op_attrs s = {0};
    s.axis = 2, s.start = T - 1, s.end = T;
    const int sin[1] = {x};
    x = dp_model_add_layer(m, "last", DP_OP_SLICE, sin, 1, &s, &ei);
    cr_assert_geq(x, 0, "%s", ei.msg);
    cr_assert_geq(dp_model_add_linear(m, "fc", x, NC, &ei), 0, "%s", ei.msg);
    cr_assert_eq(dp_model_finalize(m, &ei), DP_OK, "%s", ei.msg);
    struct nn_test_rng rng = {7};
    nn_fill_uniform(&rng, m->data, m->n_floats, -0.5f, 0.5f);
    struct nn_net *net = NULL;
    cr_assert_eq(nn_net_new(m, MAXB, &net, &ei), DP_OK, "%s", ei.msg);

    struct rnn_case c;
    rnn_setup(&c, op == DP_OP_LSTM, MAXB, T, F, H, k, 0, 9);
    memcpy(c.w_ih, m->data + dp_model_param_find(m, "rnn.weight_ih")->offset,
           c.n_wih * sizeof(float));
    memcpy(c.w_hh, m->data + dp_model_param_find(m, "rnn.weight_hh")->offset,
           c.n_whh * sizeof(float));
    memcpy(c.b_ih, m->data + dp_model_param_find(m, "rnn.bias_ih")->offset, c.n_b * sizeof(float));
    memcpy(c.b_hh, m->data + dp_model_param_find(m, "rnn.bias_hh")->offset, c.n_b * sizeof(float));
    float *h = rnn_reference(&c), *last = nn_floats((size_t)MAXB * H);
    float *want = nn_floats((size_t)MAXB * NC);
    for (int b = 0; b < MAXB; b++)
        memcpy(last + (size_t)b * H, h + ((size_t)b * T + T - 1) * H, (size_t)H * sizeof(float));
    nn_linear_forward_ref(want, last, m->data + dp_model_param_find(m, "fc.weight")->offset,
                          m->data + dp_model_param_find(m, "fc.bias")->offset, MAXB, H, NC);
    for (int n = MAXB; n >= MAXB - 1; n--) {
        const float *got = nn_net_forward(net, c.x, n, 1);
        cr_assert_not_null(got);
        char label[64];
        snprintf(label, sizeof(label), "%s k=%d net logits, batch %d", dp_op_name(op), k, n);
        nn_expect_close(label, got, want, (size_t)n * NC, 1e-5, 1e-4);
    }
    const int32_t labels[3] = {2, 0, 1}; /* MAXB */
    struct rnn_net_fd f = {net, c.x, labels, MAXB - 1};
    nn_net_zero_grad(net);
    nn_net_forward(net, c.x, f.n, 1);
    (void)nn_net_loss(net, labels, f.n, NULL);
    nn_net_backward(net, labels, f.n);
    char label[64];
    snprintf(label, sizeof(label), "%s k=%d net parameter gradients", dp_op_name(op), k);
    nn_fd_check(label, m->data, m->n_floats, net->grad, rnn_net_objective, &f, RNN_FD_EPS,
                RNN_FD_RTOL, 0);
    dp_free(h);
    dp_free(last);
    dp_free(want);
    rnn_free(&c);
    nn_net_free(net);
    dp_model_free(m);
}

Test(rnn, engine_rows_run_dense_and_circulant_layers)
{
    rnn_net_case(DP_OP_LSTM, 0);
    rnn_net_case(DP_OP_LSTM, 4);
    rnn_net_case(DP_OP_GRU, 0);
    rnn_net_case(DP_OP_GRU, 4);
    DP_ASSERT_NO_LEAKS();
}

static void rnn_record_loss(void *ud, const struct nn_epoch_stats *st)
{
    double *loss = ud;
    loss[st->epoch - 1] = st->train_loss;
}

/* The built-in recurrent architectures learn (synthetic 28x28 images). */
Test(rnn, builtin_lstm_and_gru_fmnist_learn, .timeout = 120)
{
    static const char *const names[] = {"lstm-fmnist", "gru-fmnist"};
    struct nn_dataset ds = {0};
    cr_assert_eq(nn_dataset_synthetic(&ds, 64, 1, 28, 28, 10, 4), DP_OK);
    for (int i = 0; i < 2; i++) {
        struct dp_model *m = NULL;
        struct dp_errinfo ei = {0};
        cr_assert_eq(nn_arch_build(names[i], 1, 28, 28, 10, &m, &ei), DP_OK, "%s", ei.msg);
        nn_arch_init(m, 1);
        struct nn_train_cfg cfg = nn_train_cfg_default();
        cfg.epochs = 3;
        cfg.batch = 16;
        cfg.sched.total_epochs = 3;
        cfg.sched.base_lr = 0.1f;
        double loss[3] = {0};
        struct nn_train_hooks hk;
        memset(&hk, 0, sizeof(hk));
        hk.on_epoch = rnn_record_loss;
        hk.ud = loss;
        struct nn_train_result r;
        cr_assert_eq(nn_train(m, &ds, NULL, &cfg, &hk, &r, &ei), DP_OK, "%s", ei.msg);
        cr_assert(isfinite(loss[2]) && loss[2] < loss[0], "%s: loss %g -> %g", names[i], loss[0],
                  loss[2]);
        dp_model_free(m);
    }
    nn_dataset_free(&ds);
    DP_ASSERT_NO_LEAKS();
}
