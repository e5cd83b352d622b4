/*
 * Batching for the training engine (see loader.h): per-epoch permutations,
 * normalisation into float batches, and CIFAR-style augmentation.
 *
 * DESIGN
 *
 * Randomness comes from splitmix64 used as a hash, never from a running
 * stream shared between samples: the epoch's order is a Fisher-Yates shuffle
 * seeded by hash(seed, epoch), and a sample's crop offset and flip come from
 * hash(hash(seed, epoch), sample index). That is what makes batches
 * independent of the thread count and of how many epochs ran before.
 *
 * The batch fill is parallel over the samples of the batch (the outermost
 * independent loop, STYLE rule 30); each thread writes only its samples'
 * slices of x and y. u8 pixels go through a per-channel 256-entry table of
 * normalised values computed at init, so the hot loop is a gather.
 */
#include "worker/nn/loader.h"

#include <math.h>
#include <stddef.h>
#include <string.h>

#include "common/alloc.h"
#include "common/assert.h"

/* Domain separators so that shuffling and augmentation draw unrelated numbers. */
#define LOADER_SHUFFLE_KEY 0x73687566666c6521ull /* "shuffle!" */
#define LOADER_AUGMENT_KEY 0x6175676d656e7421ull /* "augment!" */

/*
 * Below this many output floats (1 MiB) a batch is filled by the calling thread
 * alone: a Fashion-MNIST batch of 128 takes about 0.2 ms serially, less than
 * what waking a team costs when the cores are busy with other work.
 */
#define LOADER_PARALLEL_MIN (256 * 1024)

/* ---- Random numbers ------------------------------------------------------ */

static uint64_t loader_splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint64_t loader_hash(uint64_t a, uint64_t b)
{
    uint64_t s = a ^ loader_splitmix64(&b);
    return loader_splitmix64(&s);
}

/* ---- Life cycle ---------------------------------------------------------- */

enum dp_err nn_loader_init(struct nn_loader *l, const struct nn_dataset *ds,
                           const struct nn_loader_cfg *cfg, struct dp_errinfo *ei)
{
    DP_ASSERT(l != NULL && ds != NULL && cfg != NULL);
    memset(l, 0, sizeof(*l));
    if (ds->n < 1 || ds->c < 1 || ds->c > NN_DATASET_MAX_C || ds->h < 1 || ds->w < 1 ||
        (ds->u8 == NULL) == (ds->f32 == NULL) || ds->labels == NULL)
        return dp_errinfo_set(ei, DP_EINVAL,
                              "loader: dataset is empty or malformed (n=%d, c=%d, h=%d, w=%d)",
                              ds->n, ds->c, ds->h, ds->w);
    if (cfg->batch < 1)
        return dp_errinfo_set(ei, DP_EINVAL, "loader: batch size %d is not positive", cfg->batch);
    for (int ch = 0; ch < ds->c; ch++) {
        float m = cfg->mean != NULL ? cfg->mean[ch] : 0.0f;
        float s = cfg->std != NULL ? cfg->std[ch] : 1.0f;
        if (!isfinite(m) || !isfinite(s) || !(s > 0.0f))
            return dp_errinfo_set(ei, DP_EINVAL,
                                  "loader: channel %d has mean %g and std %g; std must be "
                                  "positive and both finite",
                                  ch, (double)m, (double)s);
        l->mean[ch] = m;
        l->std[ch] = s;
        for (int v = 0; v < 256; v++)
            l->lut[ch][v] = ((float)v / 255.0f - m) / s;
    }

    l->perm = dp_malloc((size_t)ds->n * sizeof(int32_t));
    if (l->perm == NULL) {
        memset(l, 0, sizeof(*l));
        return dp_errinfo_set(ei, DP_ENOMEM, "loader: out of memory for %d indices", ds->n);
    }
    l->ds = ds;
    l->batch = cfg->batch;
    l->shuffle = cfg->shuffle != 0;
    l->augment = cfg->augment != 0;
    l->seed = cfg->seed;
    nn_loader_start_epoch(l, 0);
    return DP_OK;
}

void nn_loader_free(struct nn_loader *l)
{
    if (l == NULL)
        return;
    dp_free(l->perm);
    memset(l, 0, sizeof(*l));
}

void nn_loader_start_epoch(struct nn_loader *l, int epoch)
{
    DP_ASSERT(l != NULL && l->perm != NULL);
    int n = l->ds->n;

    for (int i = 0; i < n; i++)
        l->perm[i] = i;
    if (l->shuffle) {
        /* Fisher-Yates; 64-bit modulo bias is below n / 2^64, far below noise. */
        uint64_t state = loader_hash(l->seed ^ LOADER_SHUFFLE_KEY, (uint64_t)(int64_t)epoch);
        for (int i = n - 1; i > 0; i--) {
            int j = (int)(loader_splitmix64(&state) % (uint64_t)(i + 1));
            int32_t t = l->perm[i];
            l->perm[i] = l->perm[j];
            l->perm[j] = t;
        }
    }
    l->epoch = epoch;
    l->pos = 0;
}

int nn_loader_n_batches(const struct nn_loader *l)
{
    DP_ASSERT(l != NULL && l->batch > 0);
    return (int)(((int64_t)l->ds->n + l->batch - 1) / l->batch);
}

/* ---- Batch fill ---------------------------------------------------------- */

/* The normalised value of raw pixel index i of channel ch of one image. */
static inline float loader_pixel(const struct nn_loader *l, const uint8_t *u8, const float *f32,
                                 int ch, size_t i)
{
    if (u8 != NULL)
        return l->lut[ch][u8[i]];
    return (f32[i] - l->mean[ch]) / l->std[ch];
}

/*
 * Writes sample s (dataset index) into out (C, H, W). Without augmentation
 * this is a straight normalising copy; with it, output pixel (y, x) reads
 * source pixel (y + dy, x' + dx) where x' is x or its mirror, and a read
 * outside the image yields the padding value, a normalised 0.
 */
static void loader_fill_one(const struct nn_loader *l, float *out, int s, uint64_t aug_seed)
{
    const struct nn_dataset *ds = l->ds;
    const int H = ds->h, W = ds->w;
    const size_t hw = (size_t)H * (size_t)W;
    const size_t off = (size_t)s * (size_t)ds->c * hw;
    const uint8_t *u8 = ds->u8 != NULL ? ds->u8 + off : NULL;
    const float *f32 = ds->f32 != NULL ? ds->f32 + off : NULL;

    if (!l->augment) {
        for (int ch = 0; ch < ds->c; ch++) {
            float *o = out + (size_t)ch * hw;
            size_t base = (size_t)ch * hw;
            if (u8 != NULL) {
                const float *lut = l->lut[ch];
                for (size_t i = 0; i < hw; i++)
                    o[i] = lut[u8[base + i]];
            } else {
                for (size_t i = 0; i < hw; i++)
                    o[i] = (f32[base + i] - l->mean[ch]) / l->std[ch];
            }
        }
        return;
    }

    const int span = 2 * NN_LOADER_PAD + 1;
    uint64_t r = loader_hash(aug_seed, (uint64_t)s);
    const int dy = (int)((r & 0xffffu) % (uint64_t)span) - NN_LOADER_PAD;
    const int dx = (int)(((r >> 16) & 0xffffu) % (uint64_t)span) - NN_LOADER_PAD;
    const int flip = (int)((r >> 32) & 1u);

    for (int ch = 0; ch < ds->c; ch++) {
        const float pad = u8 != NULL ? l->lut[ch][0] : (0.0f - l->mean[ch]) / l->std[ch];
        const size_t base = (size_t)ch * hw;
        for (int y = 0; y < H; y++) {
            float *o = out + base + (size_t)y * (size_t)W;
            const int sy = y + dy;
            if (sy < 0 || sy >= H) {
                for (int x = 0; x < W; x++)
                    o[x] = pad;
                continue;
            }
            const size_t row = base + (size_t)sy * (size_t)W;
            for (int x = 0; x < W; x++) {
                const int sx = (flip ? W - 1 - x : x) + dx;
                o[x] = sx < 0 || sx >= W ? pad : loader_pixel(l, u8, f32, ch, row + (size_t)sx);
            }
        }
    }
}

int nn_loader_next(struct nn_loader *l, float *x, int32_t *y)
{
    DP_ASSERT(l != NULL && l->perm != NULL && x != NULL);
    const struct nn_dataset *ds = l->ds;
    int count = ds->n - l->pos;
    if (count > l->batch)
        count = l->batch;
    if (count <= 0)
        return 0;

    const size_t img = (size_t)ds->c * (size_t)ds->h * (size_t)ds->w;
    const int32_t *idx = l->perm + l->pos;
    const uint64_t aug_seed =
        loader_hash(l->seed ^ LOADER_AUGMENT_KEY, (uint64_t)(int64_t)l->epoch);
    const int parallel = (size_t)count * img >= LOADER_PARALLEL_MIN;

#pragma omp parallel for schedule(static) if (parallel)
    for (int b = 0; b < count; b++) {
        int s = idx[b];
        loader_fill_one(l, x + (size_t)b * img, s, aug_seed);
        if (y != NULL)
            y[b] = ds->labels[s];
    }
    l->pos += count;
    return count;
}
