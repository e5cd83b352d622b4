/*
 * Tests for worker/nn/loader.h: every sample exactly once per epoch, partial
 * last batches, deterministic and epoch-dependent shuffling, normalisation of
 * u8 and f32 data, augmentation checked against an independent crop/flip
 * reference, independence from the OpenMP thread count, and init errors.
 *
 * The datasets here label sample i with i, so y tells which sample a batch
 * row holds.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <omp.h>
#include <string.h>

#include "common/alloc.h"
#include "tests/unit/test_util.h"
#include "worker/nn/data.h"
#include "worker/nn/loader.h"

/* ---- Helpers -------------------------------------------------------------- */

static uint8_t px_of(int sample, int ch, int k)
{
    return (uint8_t)(sample * 37 + ch * 101 + k * 3);
}

/* n samples of c x h x w with labels 0..n-1 (n <= 1000), u8 or f32 (= u8 / 255). */
static struct nn_dataset make_ds(int n, int c, int h, int w, int as_f32)
{
    struct nn_dataset ds = {0};
    size_t img = (size_t)c * (size_t)h * (size_t)w;
    ds.n = n;
    ds.c = c;
    ds.h = h;
    ds.w = w;
    ds.n_classes = n;
    ds.labels = dp_malloc((size_t)n * sizeof(int32_t));
    if (as_f32)
        ds.f32 = dp_malloc((size_t)n * img * sizeof(float));
    else
        ds.u8 = dp_malloc((size_t)n * img);
    cr_assert_not_null(ds.labels);
    for (int i = 0; i < n; i++) {
        ds.labels[i] = i;
        for (int ch = 0; ch < c; ch++)
            for (int k = 0; k < h * w; k++) {
                size_t at = (size_t)i * img + (size_t)ch * (size_t)(h * w) + (size_t)k;
                if (as_f32)
                    ds.f32[at] = px_of(i, ch, k) / 255.0f;
                else
                    ds.u8[at] = px_of(i, ch, k);
            }
    }
    return ds;
}

static struct nn_loader make_loader(const struct nn_dataset *ds, int batch, int shuffle,
                                    int augment, uint64_t seed)
{
    struct nn_loader l;
    struct nn_loader_cfg cfg = {
        .batch = batch, .shuffle = shuffle, .augment = augment, .seed = seed};
    struct dp_errinfo ei = {0};
    enum dp_err err = nn_loader_init(&l, ds, &cfg, &ei);
    cr_assert_eq(err, DP_OK, "%s", ei.msg);
    return l;
}

/* The order of the current epoch, read through nn_loader_next; returns the count. */
static int epoch_order(struct nn_loader *l, int epoch, int32_t *order)
{
    const struct nn_dataset *ds = l->ds;
    float *x = dp_malloc((size_t)l->batch * (size_t)(ds->c * ds->h * ds->w) * sizeof(float));
    int32_t *y = dp_malloc((size_t)l->batch * sizeof(int32_t));
    int total = 0;
    nn_loader_start_epoch(l, epoch);
    for (;;) {
        int b = nn_loader_next(l, x, y);
        if (b == 0)
            break;
        memcpy(order + total, y, (size_t)b * sizeof(int32_t));
        total += b;
    }
    dp_free(x);
    dp_free(y);
    return total;
}

/* ---- Order ---------------------------------------------------------------- */

Test(loader, every_sample_once_per_epoch_with_partial_batch)
{
    struct nn_dataset ds = make_ds(10, 1, 2, 3, 0);
    struct nn_loader l = make_loader(&ds, 3, 1, 0, 7);
    float x[3 * 6];
    int32_t y[3];

    cr_assert_eq(nn_loader_n_batches(&l), 4);
    for (int epoch = 0; epoch < 5; epoch++) {
        int seen[10] = {0};
        static const int sizes[] = {3, 3, 3, 1, 0, 0};
        nn_loader_start_epoch(&l, epoch);
        for (int b = 0; b < 6; b++) {
            int got = nn_loader_next(&l, x, y);
            cr_assert_eq(got, sizes[b], "epoch %d batch %d", epoch, b);
            for (int i = 0; i < got; i++) {
                cr_assert(y[i] >= 0 && y[i] < 10);
                seen[y[i]]++;
                /* The row holds that sample's pixels. */
                for (int k = 0; k < 6; k++)
                    cr_assert_float_eq(x[i * 6 + k], px_of(y[i], 0, k) / 255.0f, 1e-6f);
            }
        }
        for (int s = 0; s < 10; s++)
            cr_assert_eq(seen[s], 1, "epoch %d: sample %d seen %d times", epoch, s, seen[s]);
    }
    nn_loader_free(&l);
    nn_dataset_free(&ds);
    DP_ASSERT_NO_LEAKS();
}

Test(loader, shuffle_is_deterministic_per_seed_and_epoch)
{
    enum { N = 50 };
    struct nn_dataset ds = make_ds(N, 1, 1, 1, 0);
    struct nn_loader a = make_loader(&ds, 8, 1, 0, 1234);
    struct nn_loader b = make_loader(&ds, 5, 1, 0, 1234); /* batch size must not matter */
    struct nn_loader c = make_loader(&ds, 8, 1, 0, 1235);
    int32_t oa[N], ob[N], oc[N], o1[N], again[N], ident[N];

    for (int i = 0; i < N; i++)
        ident[i] = i;
    cr_assert_eq(epoch_order(&a, 0, oa), N);
    cr_assert_eq(epoch_order(&b, 0, ob), N);
    cr_assert_eq(epoch_order(&c, 0, oc), N);
    cr_assert_arr_eq(oa, ob, sizeof(oa), "same seed, same epoch: same order");
    cr_assert(memcmp(oa, oc, sizeof(oa)) != 0, "different seeds: different orders");
    cr_assert(memcmp(oa, ident, sizeof(oa)) != 0, "shuffled order is the identity");

    cr_assert_eq(epoch_order(&a, 1, o1), N);
    cr_assert(memcmp(oa, o1, sizeof(oa)) != 0, "epochs 0 and 1 have the same order");
    /* Going back to epoch 0, even after other epochs, reproduces it. */
    cr_assert_eq(epoch_order(&a, 0, again), N);
    cr_assert_arr_eq(oa, again, sizeof(oa));
    cr_assert_eq(epoch_order(&b, 1, ob), N);
    cr_assert_arr_eq(o1, ob, sizeof(o1));

    nn_loader_free(&a);
    nn_loader_free(&b);
    nn_loader_free(&c);
    nn_dataset_free(&ds);
    DP_ASSERT_NO_LEAKS();
}

Test(loader, no_shuffle_keeps_dataset_order)
{
    struct nn_dataset ds = make_ds(7, 1, 1, 2, 0);
    struct nn_loader l = make_loader(&ds, 4, 0, 0, 99);
    int32_t order[7];
    for (int epoch = 0; epoch < 3; epoch++) {
        cr_assert_eq(epoch_order(&l, epoch, order), 7);
        for (int i = 0; i < 7; i++)
            cr_assert_eq(order[i], i);
    }
    nn_loader_free(&l);
    nn_dataset_free(&ds);
    DP_ASSERT_NO_LEAKS();
}

/* ---- Normalisation -------------------------------------------------------- */

Test(loader, normalisation_u8_and_f32)
{
    const float mean[3] = {0.5f, 0.25f, 0.0f};
    const float std[3] = {0.5f, 2.0f, 0.125f};
    for (int as_f32 = 0; as_f32 < 2; as_f32++) {
        struct nn_dataset ds = make_ds(4, 3, 2, 2, as_f32);
        struct nn_loader l;
        struct nn_loader_cfg cfg = {.batch = 4, .mean = mean, .std = std, .seed = 1};
        cr_assert_eq(nn_loader_init(&l, &ds, &cfg, NULL), DP_OK);
        float x[4 * 12];
        int32_t y[4];
        cr_assert_eq(nn_loader_next(&l, x, y), 4);
        for (int i = 0; i < 4; i++)
            for (int ch = 0; ch < 3; ch++)
                for (int k = 0; k < 4; k++) {
                    float want = (px_of(y[i], ch, k) / 255.0f - mean[ch]) / std[ch];
                    cr_assert_float_eq(x[i * 12 + ch * 4 + k], want, 1e-5f,
                                       "f32=%d sample %d ch %d k %d", as_f32, y[i], ch, k);
                }
        nn_loader_free(&l);

        /* NULL mean and std: values on the [0, 1] scale as they are. */
        struct nn_loader_cfg plain = {.batch = 2, .seed = 1};
        cr_assert_eq(nn_loader_init(&l, &ds, &plain, NULL), DP_OK);
        cr_assert_eq(nn_loader_next(&l, x, NULL), 2);
        cr_assert_float_eq(x[12 + 5], px_of(1, 1, 1) / 255.0f, 1e-6f);
        nn_loader_free(&l);
        nn_dataset_free(&ds);
    }
    DP_ASSERT_NO_LEAKS();
}

/* ---- Augmentation --------------------------------------------------------- */

/* Reference: pad by 4 with value pad, crop at (4 + dy, 4 + dx), then mirror if flip. */
static int matches_transform(const float *out, const float *plain, int c, int h, int w, int dy,
                             int dx, int flip, const float *pad)
{
    for (int ch = 0; ch < c; ch++)
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++) {
                int cx = flip ? w - 1 - x : x; /* column of the cropped image */
                int sy = y + dy, sx = cx + dx;
                float want = sy < 0 || sy >= h || sx < 0 || sx >= w ? pad[ch]
                                                                    : plain[(ch * h + sy) * w + sx];
                if (out[(ch * h + y) * w + x] != want)
                    return 0;
            }
    return 1;
}

Test(loader, augmentation_is_a_crop_and_flip_and_deterministic)
{
    enum { N = 64, C = 2, H = 6, W = 5, IMG = C * H * W };
    const float mean[C] = {0.1f, 0.2f}, std[C] = {0.3f, 0.4f};
    const float pad[C] = {(0.0f - mean[0]) / std[0], (0.0f - mean[1]) / std[1]};
    struct nn_dataset ds = make_ds(N, C, H, W, 0);
    struct nn_loader_cfg pc = {.batch = N, .mean = mean, .std = std, .seed = 5};
    struct nn_loader_cfg ac = pc;
    ac.augment = 1;
    ac.shuffle = 1;
    struct nn_loader plain, aug, aug2;
    cr_assert_eq(nn_loader_init(&plain, &ds, &pc, NULL), DP_OK);
    cr_assert_eq(nn_loader_init(&aug, &ds, &ac, NULL), DP_OK);
    cr_assert_eq(nn_loader_init(&aug2, &ds, &ac, NULL), DP_OK);

    float *xp = dp_malloc(N * IMG * sizeof(float));
    float *xa = dp_malloc(N * IMG * sizeof(float));
    float *xb = dp_malloc(N * IMG * sizeof(float));
    float *first = dp_malloc(N * IMG * sizeof(float)); /* epoch 0, indexed by sample */
    int32_t yp[N], ya[N], yb[N];
    cr_assert_eq(nn_loader_next(&plain, xp, yp), N);

    int n_flip = 0, n_shift = 0, n_changed = 0;
    for (int epoch = 0; epoch < 3; epoch++) {
        nn_loader_start_epoch(&aug, epoch);
        nn_loader_start_epoch(&aug2, epoch);
        cr_assert_eq(nn_loader_next(&aug, xa, ya), N);
        cr_assert_eq(nn_loader_next(&aug2, xb, yb), N);
        cr_assert_arr_eq(ya, yb, sizeof(ya));
        cr_assert_arr_eq(xa, xb, N * IMG * sizeof(float), "augmentation is not deterministic");
        for (int i = 0; i < N; i++) {
            const float *src = xp + (size_t)ya[i] * IMG; /* plain loader is in order */
            const float *out = xa + (size_t)i * IMG;
            int found = 0;
            for (int flip = 0; flip < 2 && !found; flip++)
                for (int dy = -4; dy <= 4 && !found; dy++)
                    for (int dx = -4; dx <= 4 && !found; dx++)
                        if (matches_transform(out, src, C, H, W, dy, dx, flip, pad)) {
                            found = 1;
                            n_flip += flip;
                            n_shift += dy != 0 || dx != 0;
                        }
            cr_assert(found, "epoch %d sample %d is no crop/flip of its image", epoch, ya[i]);
            if (epoch == 0)
                memcpy(first + (size_t)ya[i] * IMG, out, IMG * sizeof(float));
            else if (memcmp(first + (size_t)ya[i] * IMG, out, IMG * sizeof(float)) != 0)
                n_changed++;
        }
    }
    /* 192 draws: flips and shifts must both occur, and epochs must differ. */
    cr_assert(n_flip > 40 && n_flip < 150, "%d flips", n_flip);
    cr_assert_gt(n_shift, 150);
    cr_assert_gt(n_changed, 100, "augmentation does not change with the epoch");

    dp_free(xp);
    dp_free(xa);
    dp_free(xb);
    dp_free(first);
    nn_loader_free(&plain);
    nn_loader_free(&aug);
    nn_loader_free(&aug2);
    nn_dataset_free(&ds);
    DP_ASSERT_NO_LEAKS();
}

Test(loader, augmentation_f32_keeps_shape)
{
    struct nn_dataset ds = make_ds(3, 1, 4, 4, 1);
    struct nn_loader l = make_loader(&ds, 2, 0, 1, 3);
    float x[2 * 16 + 1];
    x[32] = 12345.0f; /* guard: the loader must not write past batch * C * H * W */
    cr_assert_eq(nn_loader_next(&l, x, NULL), 2);
    cr_assert_float_eq(x[32], 12345.0f, 0.0f);
    for (int i = 0; i < 32; i++)
        cr_assert(x[i] >= 0.0f && x[i] <= 1.0f);
    cr_assert_eq(nn_loader_next(&l, x, NULL), 1);
    cr_assert_eq(nn_loader_next(&l, x, NULL), 0);
    nn_loader_free(&l);
    nn_dataset_free(&ds);
    DP_ASSERT_NO_LEAKS();
}

Test(loader, batches_do_not_depend_on_thread_count)
{
    enum { N = 300, B = 128, IMG = 3 * 32 * 32 }; /* 128 x 3072 floats: the parallel path */
    struct nn_dataset ds;
    cr_assert_eq(nn_dataset_synthetic(&ds, N, 3, 32, 32, 10, 77), DP_OK);
    float mean[3], std[3];
    nn_dataset_channel_stats(&ds, mean, std);
    struct nn_loader_cfg cfg = {
        .batch = B, .shuffle = 1, .augment = 1, .mean = mean, .std = std, .seed = 11};

    float *x[2];
    int32_t y[2][N];
    for (int t = 0; t < 2; t++) {
        omp_set_num_threads(t + 1);
        struct nn_loader l;
        cr_assert_eq(nn_loader_init(&l, &ds, &cfg, NULL), DP_OK);
        nn_loader_start_epoch(&l, 3);
        x[t] = dp_malloc((size_t)N * IMG * sizeof(float));
        int done = 0;
        for (;;) {
            int b = nn_loader_next(&l, x[t] + (size_t)done * IMG, y[t] + done);
            if (b == 0)
                break;
            done += b;
        }
        cr_assert_eq(done, N);
        nn_loader_free(&l);
    }
    cr_assert_arr_eq(y[0], y[1], sizeof(y[0]));
    cr_assert_arr_eq(x[0], x[1], (size_t)N * IMG * sizeof(float));
    dp_free(x[0]);
    dp_free(x[1]);
    nn_dataset_free(&ds);
    DP_ASSERT_NO_LEAKS();
}

/* ---- Errors and life cycle ------------------------------------------------ */

Test(loader, init_rejects_bad_arguments)
{
    struct nn_dataset ds = make_ds(4, 2, 2, 2, 0);
    const float zero[2] = {0.0f, 0.0f}, neg[2] = {1.0f, -1.0f}, nan2[2] = {0.5f, NAN};
    const float inf2[2] = {INFINITY, 0.0f}, ok[2] = {1.0f, 1.0f};
    static const char *msgs[] = {"batch size 0", "std 0", "std -1", "std nan", "mean inf"};
    struct nn_loader_cfg cfgs[] = {
        {.batch = 0},
        {.batch = 2, .std = zero},
        {.batch = 2, .std = neg},
        {.batch = 2, .std = nan2},
        {.batch = 2, .mean = inf2, .std = ok},
    };
    for (size_t i = 0; i < sizeof(cfgs) / sizeof(cfgs[0]); i++) {
        struct nn_loader l;
        struct dp_errinfo ei = {0};
        cr_assert_eq(nn_loader_init(&l, &ds, &cfgs[i], &ei), DP_EINVAL, "case %zu", i);
        cr_assert_eq(ei.code, DP_EINVAL);
        cr_assert_not_null(strstr(ei.msg, msgs[i]), "'%s' lacks '%s'", ei.msg, msgs[i]);
        cr_assert_null(l.perm);
    }

    struct nn_loader_cfg cfg = {.batch = 2};
    struct nn_dataset empty = {0};
    struct nn_loader l;
    struct dp_errinfo ei = {0};
    cr_assert_eq(nn_loader_init(&l, &empty, &cfg, &ei), DP_EINVAL);
    cr_assert_not_null(strstr(ei.msg, "empty or malformed"));
    struct nn_dataset five = ds;
    five.c = 5;
    cr_assert_eq(nn_loader_init(&l, &five, &cfg, NULL), DP_EINVAL);

    dp_alloc_fail_after(0);
    cr_assert_eq(nn_loader_init(&l, &ds, &cfg, &ei), DP_ENOMEM);
    dp_alloc_fail_reset();
    cr_assert_null(l.perm);
    nn_loader_free(&l);

    nn_dataset_free(&ds);
    DP_ASSERT_NO_LEAKS();
}

Test(loader, free_accepts_null_and_zeroed)
{
    struct nn_loader l = {0};
    nn_loader_free(NULL);
    nn_loader_free(&l);
    struct nn_dataset ds = make_ds(2, 1, 1, 1, 0);
    l = make_loader(&ds, 1, 1, 1, 0);
    cr_assert_eq(nn_loader_n_batches(&l), 2);
    nn_loader_free(&l);
    cr_assert_null(l.perm);
    nn_loader_free(&l);
    nn_dataset_free(&ds);
    DP_ASSERT_NO_LEAKS();
}
