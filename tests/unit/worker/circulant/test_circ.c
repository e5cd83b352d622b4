/*
 * Block-circulant arithmetic (worker/circulant): the FFT path against the
 * brute-force reference (circ_ref.c) on odd sizes with padding and on
 * power-of-two and other block sizes, the first-column convention against
 * a matrix built from first rows, and the projection's exactness.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "common/alloc.h"
#include "tests/unit/test_util.h"
#include "tests/unit/worker/nn/nn_test_util.h"
#include "worker/circulant/circ.h"

static const int circ_test_ks[] = {1, 2, 3, 4, 5, 8, 16};

/* Tolerance of an FFT result against the double-accumulated reference:
 * a sum of `terms` products of values in [-1, 1], float rounding. */
static double circ_atol(int terms)
{
    return 2e-6 * (double)terms + 1e-5;
}

/*
 * One shape through the FFT path and the reference: forward (overwrite
 * and accumulate), backward dx and dw accumulating onto non-zero buffers,
 * with row strides wider than the rows; n rows of an op made for max_n
 * (n == max_n takes the batched plans, n < max_n the one-row plans).
 */
static void circ_check_shape(int rows, int cols, int k, int n, int max_n, uint64_t seed)
{
    struct nn_test_rng rng = {seed};
    struct circ_dims d;
    circ_dims_init(&d, rows, cols, k);
    const int ldx = cols + 3, ldy = rows + 2;
    size_t nw = circ_dims_numel(&d), nx = (size_t)n * ldx, ny = (size_t)n * ldy;
    float *w = nn_floats(nw), *x = nn_floats(nx), *dy = nn_floats(ny);
    float *y = nn_floats(ny), *y_ref = nn_floats(ny);
    float *dx = nn_floats(nx), *dx_ref = nn_floats(nx);
    float *dw = nn_floats(nw), *dw_ref = nn_floats(nw);
    nn_fill_uniform(&rng, w, nw, -1.0f, 1.0f);
    nn_fill_uniform(&rng, x, nx, -1.0f, 1.0f);
    nn_fill_uniform(&rng, dy, ny, -1.0f, 1.0f);
    char label[128];

    struct circ_op *op = NULL;
    struct dp_errinfo ei = {0};
    cr_assert_eq(circ_op_new(&d, max_n, &op, &ei), DP_OK, "circ_op_new: %s", ei.msg);
    circ_op_load(op, w);

    /* Padding columns of y must stay as they were. */
    nn_fill_uniform(&rng, y, ny, -1.0f, 1.0f);
    memcpy(y_ref, y, ny * sizeof(float));
    circ_op_forward(op, y, ldy, x, ldx, n, 0);
    circ_forward_ref(y_ref, ldy, x, ldx, w, &d, n, 0);
    snprintf(label, sizeof label, "forward %dx%d k %d n %d/%d", rows, cols, k, n, max_n);
    nn_expect_close(label, y, y_ref, ny, circ_atol(cols), 1e-5);

    circ_op_forward(op, y, ldy, x, ldx, n, 1);
    circ_forward_ref(y_ref, ldy, x, ldx, w, &d, n, 1);
    snprintf(label, sizeof label, "forward acc %dx%d k %d n %d/%d", rows, cols, k, n, max_n);
    nn_expect_close(label, y, y_ref, ny, circ_atol(2 * cols), 1e-5);

    nn_fill_uniform(&rng, dx, nx, -1.0f, 1.0f);
    memcpy(dx_ref, dx, nx * sizeof(float));
    nn_fill_uniform(&rng, dw, nw, -1.0f, 1.0f);
    memcpy(dw_ref, dw, nw * sizeof(float));
    circ_op_backward(op, dx, dw, dy, ldy, x, ldx, n);
    circ_backward_ref(dx_ref, dw_ref, dy, ldy, x, ldx, w, &d, n);
    snprintf(label, sizeof label, "backward dx %dx%d k %d n %d/%d", rows, cols, k, n, max_n);
    nn_expect_close(label, dx, dx_ref, nx, circ_atol(rows), 1e-5);
    snprintf(label, sizeof label, "backward dw %dx%d k %d n %d/%d", rows, cols, k, n, max_n);
    nn_expect_close(label, dw, dw_ref, nw, circ_atol(n * k), 1e-5);

    /* One gradient at a time (the other NULL) gives the same numbers. */
    float *dx2 = nn_floats(nx), *dw2 = nn_floats(nw);
    circ_op_backward(op, dx2, NULL, dy, ldy, x, ldx, n);
    circ_op_backward(op, NULL, dw2, dy, ldy, x, ldx, n);
    float *dx2_ref = nn_floats(nx), *dw2_ref = nn_floats(nw);
    circ_backward_ref(dx2_ref, dw2_ref, dy, ldy, x, ldx, w, &d, n);
    snprintf(label, sizeof label, "backward dx only %dx%d k %d", rows, cols, k);
    nn_expect_close(label, dx2, dx2_ref, nx, circ_atol(rows), 1e-5);
    snprintf(label, sizeof label, "backward dw only %dx%d k %d", rows, cols, k);
    nn_expect_close(label, dw2, dw2_ref, nw, circ_atol(n * k), 1e-5);

    circ_op_free(op);
    dp_free(w);
    dp_free(x);
    dp_free(dy);
    dp_free(y);
    dp_free(y_ref);
    dp_free(dx);
    dp_free(dx_ref);
    dp_free(dw);
    dp_free(dw_ref);
    dp_free(dx2);
    dp_free(dw2);
    dp_free(dx2_ref);
    dp_free(dw2_ref);
}

Test(circ, fft_matches_reference_with_padding)
{
    uint64_t seed = 100;
    for (size_t i = 0; i < sizeof circ_test_ks / sizeof circ_test_ks[0]; i++) {
        int k = circ_test_ks[i];
        /* Odd sizes: neither divisible by k (but for k = 1), p != q. */
        circ_check_shape(13, 29, k, 3, 3, seed++);
        circ_check_shape(13, 29, k, 2, 5, seed++);
        circ_check_shape(37, 11, k, 4, 4, seed++);
        /* Divisible sizes: no padding at all. */
        circ_check_shape(3 * k, 2 * k, k, 1, 1, seed++);
    }
    circ_check_shape(1, 1, 16, 2, 2, seed++); /* all padding but one entry */
    circ_check_shape(70, 45, 32, 3, 8, seed++);
    DP_ASSERT_NO_LEAKS();
}

/* The op may be reloaded with a new weight and reused for any n <= max_n. */
Test(circ, reload_and_reuse)
{
    struct circ_dims d;
    circ_dims_init(&d, 9, 14, 4);
    struct nn_test_rng rng = {7};
    size_t nw = circ_dims_numel(&d);
    float *w = nn_floats(nw), *x = nn_floats(6 * 14), *y = nn_floats(6 * 9),
          *y_ref = nn_floats(6 * 9);
    nn_fill_uniform(&rng, x, 6 * 14, -1.0f, 1.0f);
    struct circ_op *op = NULL;
    struct dp_errinfo ei = {0};
    cr_assert_eq(circ_op_new(&d, 6, &op, &ei), DP_OK, "%s", ei.msg);
    for (int round = 0; round < 3; round++) {
        int n = round == 1 ? 6 : 1 + round;
        nn_fill_uniform(&rng, w, nw, -1.0f, 1.0f);
        circ_op_load(op, w);
        circ_op_forward(op, y, 9, x, 14, n, 0);
        circ_forward_ref(y_ref, 9, x, 14, w, &d, n, 0);
        nn_expect_close("reloaded forward", y, y_ref, (size_t)n * 9, circ_atol(14), 1e-5);
    }
    circ_op_free(op);
    dp_free(w);
    dp_free(x);
    dp_free(y);
    dp_free(y_ref);
    DP_ASSERT_NO_LEAKS();
}

/*
 * The convention: the stored vector is each block's FIRST COLUMN. Build
 * the matrix the other way, from random first rows r0 (C[r][s] =
 * r0[(s - r) mod k], no reference code involved), convert with
 * c[t] = r0[(-t) mod k] and expect circ_expand and the FFT product to
 * give that matrix. Storing r0 itself must NOT give it (the test could
 * not tell the conventions apart otherwise).
 */
Test(circ, first_column_convention)
{
    const int rows = 11, cols = 9;
    for (size_t ki = 0; ki < sizeof circ_test_ks / sizeof circ_test_ks[0]; ki++) {
        int k = circ_test_ks[ki];
        struct circ_dims d;
        circ_dims_init(&d, rows, cols, k);
        struct nn_test_rng rng = {900 + (uint64_t)k};
        size_t nw = circ_dims_numel(&d);
        float *r0 = nn_floats(nw), *c = nn_floats(nw), *dense = nn_floats((size_t)rows * cols);
        float *got = nn_floats((size_t)rows * cols);
        nn_fill_uniform(&rng, r0, nw, -1.0f, 1.0f);
        for (int b = 0; b < d.p * d.q; b++)
            for (int t = 0; t < k; t++)
                c[(size_t)b * k + t] = r0[(size_t)b * k + (size_t)((k - t) % k)];
        for (int r = 0; r < rows; r++)
            for (int s = 0; s < cols; s++) {
                int i = r / k, j = s / k, rr = r % k, ss = s % k;
                dense[(size_t)r * cols + s] =
                    r0[((size_t)i * d.q + j) * k + (size_t)((ss - rr + k) % k)];
            }
        circ_expand(got, c, &d);
        for (size_t e = 0; e < (size_t)rows * cols; e++)
            cr_expect_eq(got[e], dense[e], "k %d: expand(first column) [%zu] %g, built %g", k, e,
                         (double)got[e], (double)dense[e]);
        if (k > 2) {
            circ_expand(got, r0, &d);
            size_t same = 0;
            for (size_t e = 0; e < (size_t)rows * cols; e++)
                same += got[e] == dense[e];
            cr_expect_lt(same, (size_t)rows * cols, "k %d: the first row read as a column", k);
        }
        /* The FFT path multiplies by the same matrix: x = e_s gives column s. */
        struct circ_op *op = NULL;
        struct dp_errinfo ei = {0};
        cr_assert_eq(circ_op_new(&d, cols, &op, &ei), DP_OK, "%s", ei.msg);
        circ_op_load(op, c);
        float *eye = nn_floats((size_t)cols * cols), *yt = nn_floats((size_t)cols * rows);
        for (int s = 0; s < cols; s++)
            eye[(size_t)s * cols + s] = 1.0f;
        circ_op_forward(op, yt, rows, eye, cols, cols, 0);
        for (int s = 0; s < cols; s++)
            for (int r = 0; r < rows; r++)
                cr_expect(fabsf(yt[(size_t)s * rows + r] - dense[(size_t)r * cols + s]) < 1e-5f,
                          "k %d: FFT W[%d][%d] = %g, built %g", k, r, s,
                          (double)yt[(size_t)s * rows + r], (double)dense[(size_t)r * cols + s]);
        circ_op_free(op);
        dp_free(eye);
        dp_free(yt);
        dp_free(r0);
        dp_free(c);
        dp_free(dense);
        dp_free(got);
    }
    DP_ASSERT_NO_LEAKS();
}

static double circ_dist2(const float *a, const float *b, size_t n)
{
    double s = 0.0;
    for (size_t i = 0; i < n; i++)
        s += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
    return s;
}

struct circ_proj_case {
    int rows, cols, k;
};

/*
 * circ_project is the orthogonal projection onto the block-circulant
 * matrices (over the entries inside the matrix):
 *  - a block-circulant matrix is a fixed point;
 *  - projecting twice changes nothing;
 *  - the residual D - P(D) is orthogonal to every basis matrix
 *    expand(e_t) (so P(D) is the closest point of the subspace), and no
 *    random block-circulant candidate, nor P(D) moved along any basis
 *    direction, is closer to D.
 */
Test(circ, projection_is_exact)
{
    const struct circ_proj_case cases[] = {{4, 4, 2}, {5, 7, 3}, {6, 3, 4},
                                           {7, 9, 4}, {3, 5, 1}, {9, 6, 8}};
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        const int rows = cases[ci].rows, cols = cases[ci].cols, k = cases[ci].k;
        const size_t nd = (size_t)rows * cols;
        struct circ_dims d;
        circ_dims_init(&d, rows, cols, k);
        size_t nw = circ_dims_numel(&d);
        struct nn_test_rng rng = {3000 + ci};
        float *w = nn_floats(nw), *w2 = nn_floats(nw), *dense = nn_floats(nd);
        float *z = nn_floats(nd), *z2 = nn_floats(nd), *cand = nn_floats(nd);

        /* Fixed point. */
        nn_fill_uniform(&rng, w, nw, -1.0f, 1.0f);
        circ_expand(dense, w, &d);
        circ_project(w2, dense, &d);
        circ_expand(z, w2, &d);
        for (size_t e = 0; e < nd; e++)
            cr_expect_eq(z[e], dense[e], "%dx%d k %d: circulant moved by projection at %zu", rows,
                         cols, k, e);

        /* Idempotent. */
        nn_fill_uniform(&rng, dense, nd, -1.0f, 1.0f);
        circ_project(w, dense, &d);
        circ_expand(z, w, &d);
        circ_project(w2, z, &d);
        circ_expand(z2, w2, &d);
        for (size_t e = 0; e < nd; e++)
            cr_expect_eq(z2[e], z[e], "%dx%d k %d: projecting twice moved entry %zu", rows, cols, k,
                         e);

        /* Orthogonal residual, and closest among candidates. */
        double best = circ_dist2(dense, z, nd);
        float *basis = nn_floats(nw), *bm = nn_floats(nd);
        for (size_t t = 0; t < nw; t++) {
            nn_zero(basis, nw);
            basis[t] = 1.0f;
            circ_expand(bm, basis, &d);
            double dot = 0.0;
            for (size_t e = 0; e < nd; e++)
                dot += ((double)dense[e] - z[e]) * bm[e];
            cr_expect(fabs(dot) < 1e-5, "%dx%d k %d: residual . basis %zu = %g", rows, cols, k, t,
                      dot);
            for (int sign = -1; sign <= 1; sign += 2) {
                memcpy(w2, w, nw * sizeof(float));
                w2[t] += (float)sign * 1e-2f;
                circ_expand(cand, w2, &d);
                double moved = circ_dist2(dense, cand, nd);
                int touches = 0;
                for (size_t e = 0; e < nd; e++)
                    touches |= bm[e] != 0.0f;
                /* A stored value outside the matrix (padding) changes nothing. */
                if (touches)
                    cr_expect_gt(moved, best, "%dx%d k %d: moving value %zu brings it closer", rows,
                                 cols, k, t);
            }
        }
        for (int trial = 0; trial < 200; trial++) {
            nn_fill_uniform(&rng, w2, nw, -1.0f, 1.0f);
            circ_expand(cand, w2, &d);
            cr_expect_geq(circ_dist2(dense, cand, nd), best,
                          "%dx%d k %d: a random circulant is closer than the projection", rows,
                          cols, k);
        }
        dp_free(basis);
        dp_free(bm);
        dp_free(w);
        dp_free(w2);
        dp_free(dense);
        dp_free(z);
        dp_free(z2);
        dp_free(cand);
    }
    DP_ASSERT_NO_LEAKS();
}

Test(circ, op_new_rejects_bad_arguments)
{
    struct circ_dims d;
    struct circ_op *op = (struct circ_op *)&d;
    struct dp_errinfo ei = {0};
    circ_dims_init(&d, 8, 8, 4);
    cr_expect_eq(circ_op_new(&d, 0, &op, &ei), DP_EINVAL);
    cr_expect_null(op);
    cr_expect(strstr(ei.msg, "max_n") != NULL, "message: %s", ei.msg);
    d.p = 3; /* not ceil(8 / 4) */
    cr_expect_eq(circ_op_new(&d, 1, &op, &ei), DP_EINVAL);
    cr_expect(strstr(ei.msg, "dims") != NULL, "message: %s", ei.msg);
    circ_dims_init(&d, 8, 8, 0 + 1);
    d.k = 0;
    cr_expect_eq(circ_op_new(&d, 1, &op, &ei), DP_EINVAL);
    circ_dims_init(&d, 1 << 20, 1 << 20, 1);
    cr_expect_eq(circ_op_new(&d, 4096, &op, &ei), DP_ETOOBIG, "%s", ei.msg);
    circ_op_free(NULL);
    DP_ASSERT_NO_LEAKS();
}

/* Every allocation of circ_op_new may fail: DP_ENOMEM, nothing leaked. */
Test(circ, op_new_out_of_memory)
{
    struct circ_dims d;
    circ_dims_init(&d, 10, 10, 4);
    int failed = 0;
    for (long n_ok = 0; n_ok < 20; n_ok++) {
        struct circ_op *op = NULL;
        struct dp_errinfo ei = {0};
        dp_alloc_fail_after(n_ok);
        enum dp_err err = circ_op_new(&d, 2, &op, &ei);
        dp_alloc_fail_reset();
        if (err != DP_OK) {
            cr_expect_eq(err, DP_ENOMEM, "n_ok %ld: %s", n_ok, ei.msg);
            cr_expect_null(op);
            failed++;
        }
        circ_op_free(op);
    }
    cr_expect_gt(failed, 0);
    DP_ASSERT_NO_LEAKS();
}
