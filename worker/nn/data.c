/*
 * Datasets for the training engine (see data.h): the spec dispatcher, the
 * helpers every reader shares (bounded file reading through zlib, checked
 * allocation, label validation), and the operations on loaded sets
 * (synthetic data, subsets, channel statistics).
 *
 * DESIGN
 *
 * Each format lives in its own file (data_idx.c, data_cifar.c, data_npy.c)
 * and follows the same steps: read and validate the headers of the image and
 * label files, check that the counts agree, allocate once through
 * nn_data__alloc (which applies the caps of data.h before any memory is
 * taken), then read exactly the announced number of bytes straight into the
 * dataset's arrays and insist that the file ends there. Files are read with
 * gzread, which inflates gzip files and passes plain files through, so the
 * amount of decompressed data is bounded by the header, never by the input.
 *
 * Readers leave *out zeroed on any failure and fill the caller's errinfo with
 * a message that starts with the offending path.
 */
#include "worker/nn/data.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "common/alloc.h"
#include "common/assert.h"
#include "common/dataset.h"
#include "worker/nn/data_int.h"
#include "worker/nn/rng.h"

/* gzread takes an unsigned length; larger reads are split into chunks. */
#define DATA_READ_CHUNK ((size_t)1 << 30)
#define DATA_GZ_BUFFER  (128u * 1024u)

/* ---- Bounded file reading ------------------------------------------------ */

enum dp_err nn_data__open(struct nn_data__file *f, const char *dir, const char *name, int try_gz,
                          struct dp_errinfo *ei)
{
    char errbuf[128];
    struct stat st;

    memset(f, 0, sizeof(*f));
    int len = snprintf(f->path, sizeof(f->path), "%s/%s", dir, name);
    if (len < 0 || (size_t)len + sizeof(".gz") > sizeof(f->path))
        return dp_errinfo_set(ei, DP_EINVAL, "%.200s...: path too long", dir);

    int fd = open(f->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT) {
        if (!try_gz)
            return dp_errinfo_set(ei, DP_ENOENT, "%s: no such file", f->path);
        memcpy(f->path + len, ".gz", sizeof(".gz"));
        fd = open(f->path, O_RDONLY | O_CLOEXEC);
        if (fd < 0 && errno == ENOENT) {
            f->path[len] = '\0';
            return dp_errinfo_set(ei, DP_ENOENT, "%s: no such file (also tried %s.gz)", f->path,
                                  f->path);
        }
    }
    if (fd < 0) {
        int e = errno;
        if (strerror_r(e, errbuf, sizeof(errbuf)) != 0)
            snprintf(errbuf, sizeof(errbuf), "errno %d", e);
        return dp_errinfo_set(ei, dp_err_from_errno(e), "%s: cannot open: %s", f->path, errbuf);
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return dp_errinfo_set(ei, DP_EIO, "%s: not a regular file", f->path);
    }
    f->file_len = (uint64_t)st.st_size;

    gzFile gz = gzdopen(fd, "rb");
    if (gz == NULL) {
        close(fd);
        return dp_errinfo_set(ei, DP_ENOMEM, "%s: out of memory opening the file", f->path);
    }
    gzbuffer(gz, DATA_GZ_BUFFER);
    f->gz = gz;
    return DP_OK;
}

int nn_data__is_gzip(struct nn_data__file *f)
{
    return gzdirect((gzFile)f->gz) == 0;
}

/*
 * Turns zlib's error state after a read into a dp_err. A gzip stream that
 * simply stops (Z_BUF_ERROR, "unexpected end of file") is not an error here:
 * it sets gz_cut and the caller reports the truncation with its context.
 * saved_errno is errno as it was right after the failing gzread.
 */
static enum dp_err file_gz_status(struct nn_data__file *f, int saved_errno, struct dp_errinfo *ei)
{
    char errbuf[128];
    int zerr = Z_OK;
    const char *zmsg = gzerror((gzFile)f->gz, &zerr);

    /* zlib prefixes its message with its own name for the file ("<fd:5>: "). */
    const char *colon = zmsg != NULL ? strstr(zmsg, ": ") : NULL;
    if (colon != NULL)
        zmsg = colon + 2;
    switch (zerr) {
        case Z_OK:
        case Z_STREAM_END:
            return DP_OK;
        case Z_BUF_ERROR:
            f->gz_cut = 1;
            return DP_OK;
        case Z_ERRNO:
            if (strerror_r(saved_errno, errbuf, sizeof(errbuf)) != 0)
                snprintf(errbuf, sizeof(errbuf), "errno %d", saved_errno);
            return dp_errinfo_set(ei, DP_EIO, "%s: read failed after %" PRIu64 " bytes: %s",
                                  f->path, f->pos, errbuf);
        case Z_MEM_ERROR:
            return dp_errinfo_set(ei, DP_ENOMEM, "%s: out of memory while inflating", f->path);
        default:
            return dp_errinfo_set(ei, DP_EFORMAT,
                                  "%s: corrupt gzip stream after %" PRIu64 " bytes: %s", f->path,
                                  f->pos, zmsg != NULL ? zmsg : "unknown zlib error");
    }
}

enum dp_err nn_data__read(struct nn_data__file *f, void *buf, size_t len, const char *what,
                          struct dp_errinfo *ei)
{
    uint8_t *p = buf;
    size_t done = 0;

    while (done < len) {
        size_t want = len - done < DATA_READ_CHUNK ? len - done : DATA_READ_CHUNK;
        errno = 0;
        int got = gzread((gzFile)f->gz, p + done, (unsigned)want);
        int saved_errno = errno;
        if (got < 0) {
            enum dp_err err = file_gz_status(f, saved_errno, ei);
            if (err != DP_OK)
                return err;
            got = 0;
        }
        done += (size_t)got;
        f->pos += (uint64_t)got;
        if ((size_t)got < want) {
            enum dp_err err = file_gz_status(f, saved_errno, ei);
            if (err != DP_OK)
                return err;
            return dp_errinfo_set(
                ei, DP_ETRUNC, "%s: truncated: %s but data ends after %" PRIu64 " bytes%s", f->path,
                what, f->pos, f->gz_cut ? " (the gzip stream is cut short)" : "");
        }
    }
    return DP_OK;
}

enum dp_err nn_data__check_len(struct nn_data__file *f, uint64_t remaining, const char *what,
                               struct dp_errinfo *ei)
{
    if (nn_data__is_gzip(f) || f->pos > f->file_len || f->file_len - f->pos >= remaining)
        return DP_OK;
    return dp_errinfo_set(ei, DP_ETRUNC, "%s: truncated: %s but data ends after %" PRIu64 " bytes",
                          f->path, what, f->file_len);
}

enum dp_err nn_data__expect_eof(struct nn_data__file *f, struct dp_errinfo *ei)
{
    uint8_t byte;

    errno = 0;
    int got = gzread((gzFile)f->gz, &byte, 1);
    int saved_errno = errno;
    if (got == 1)
        return dp_errinfo_set(
            ei, DP_EFORMAT, "%s: unexpected data after the %" PRIu64 " bytes its header describes",
            f->path, f->pos);
    enum dp_err err = file_gz_status(f, saved_errno, ei);
    if (err != DP_OK)
        return err;
    if (f->gz_cut)
        return dp_errinfo_set(
            ei, DP_ETRUNC,
            "%s: truncated: the gzip stream ends before its trailer (after %" PRIu64
            " bytes of data)",
            f->path, f->pos);
    return DP_OK;
}

void nn_data__close(struct nn_data__file *f)
{
    if (f->gz != NULL)
        gzclose_r((gzFile)f->gz);
    f->gz = NULL;
}

/* ---- Allocation and labels ----------------------------------------------- */

enum dp_err nn_data__check_dims(int64_t n, int64_t c, int64_t h, int64_t w, int is_f32,
                                const char *path, struct dp_errinfo *ei)
{
    if (n < 1)
        return dp_errinfo_set(ei, DP_EFORMAT, "%s: header says %" PRId64 " samples", path, n);
    if (c < 1 || h < 1 || w < 1 || h > NN_DATASET_MAX_HW || w > NN_DATASET_MAX_HW)
        return dp_errinfo_set(ei, DP_EFORMAT,
                              "%s: implausible image size %" PRId64 "x%" PRId64 "x%" PRId64
                              " (C x H x W; H and W must be 1..%d)",
                              path, c, h, w, NN_DATASET_MAX_HW);
    if (c > NN_DATASET_MAX_C)
        return dp_errinfo_set(ei, DP_EUNSUPPORTED,
                              "%s: %" PRId64 " channels (at most %d supported)", path, c,
                              NN_DATASET_MAX_C);
    if (n > INT_MAX)
        return dp_errinfo_set(ei, DP_ETOOBIG, "%s: %" PRId64 " samples (at most %d supported)",
                              path, n, INT_MAX);

    /* n < 2^31, c <= 4, h, w <= 4096 and elem <= 4: the product fits in 2^59. */
    uint64_t elem = is_f32 ? sizeof(float) : sizeof(uint8_t);
    uint64_t bytes = (uint64_t)n * (uint64_t)c * (uint64_t)h * (uint64_t)w * elem;
    if (bytes > NN_DATASET_MAX_BYTES)
        return dp_errinfo_set(ei, DP_ETOOBIG,
                              "%s: %" PRId64 " images of %" PRId64 "x%" PRId64 "x%" PRId64
                              " need %" PRIu64 " bytes, over the %" PRIu64 "-byte limit",
                              path, n, c, h, w, bytes, NN_DATASET_MAX_BYTES);
    return DP_OK;
}

enum dp_err nn_data__alloc(struct nn_dataset *out, int64_t n, int64_t c, int64_t h, int64_t w,
                           int is_f32, const char *path, struct dp_errinfo *ei)
{
    memset(out, 0, sizeof(*out));
    enum dp_err err = nn_data__check_dims(n, c, h, w, is_f32, path, ei);
    if (err != DP_OK)
        return err;
    uint64_t bytes =
        (uint64_t)n * (uint64_t)c * (uint64_t)h * (uint64_t)w * (is_f32 ? sizeof(float) : 1);

    if (is_f32)
        out->f32 = dp_malloc((size_t)bytes);
    else
        out->u8 = dp_malloc((size_t)bytes);
    out->labels = dp_malloc((size_t)n * sizeof(int32_t));
    if ((out->f32 == NULL && out->u8 == NULL) || out->labels == NULL) {
        nn_dataset_free(out);
        return dp_errinfo_set(ei, DP_ENOMEM, "%s: out of memory for %" PRIu64 " bytes of images",
                              path, bytes);
    }
    out->n = (int)n;
    out->c = (int)c;
    out->h = (int)h;
    out->w = (int)w;
    return DP_OK;
}

enum dp_err nn_data__finish_labels(struct nn_dataset *ds, const char *path, struct dp_errinfo *ei)
{
    int32_t max = -1;

    for (int i = 0; i < ds->n; i++) {
        int32_t y = ds->labels[i];
        if (y < 0 || y >= NN_DATASET_MAX_CLASSES)
            return dp_errinfo_set(ei, DP_EFORMAT,
                                  "%s: label %" PRId32 " of sample %d is out of range (0..%d)",
                                  path, y, i, NN_DATASET_MAX_CLASSES - 1);
        if (y > max)
            max = y;
    }
    ds->n_classes = (int)max + 1;
    return DP_OK;
}

/* ---- Loading ------------------------------------------------------------- */

enum dp_err nn_dataset_load(const char *spec, enum nn_split split, struct nn_dataset *out,
                            struct dp_errinfo *ei)
{
    /* The engine's side of common/dataset.c's formats: the file names
     * come from that table, the loaders from here. */
    static const struct {
        const char *engine; /* the spec prefix before ':' */
        enum dp_err (*load)(const struct dp_dataset_format *fmt, const char *dir,
                            enum nn_split split, struct nn_dataset *out, struct dp_errinfo *ei);
    } loaders[] = {
        {"idx", nn_data__load_idx},
        {"cifar", nn_data__load_cifar},
        {"npy", nn_data__load_npy},
    };

    DP_ASSERT(spec != NULL && out != NULL);
    memset(out, 0, sizeof(*out));
    if (split != NN_SPLIT_TRAIN && split != NN_SPLIT_TEST)
        return dp_errinfo_set(ei, DP_EINVAL, "dataset split %d is neither train nor test",
                              (int)split);

    for (size_t i = 0; i < sizeof(loaders) / sizeof(loaders[0]); i++) {
        size_t plen = strlen(loaders[i].engine);
        if (strncmp(spec, loaders[i].engine, plen) != 0 || spec[plen] != ':')
            continue;
        const struct dp_dataset_format *fmt = dp_dataset_format_engine(loaders[i].engine);
        DP_ASSERT(fmt != NULL); /* a loader without a row in the table */
        const char *dir = spec + plen + 1;
        if (dir[0] == '\0')
            return dp_errinfo_set(ei, DP_EINVAL, "dataset spec '%s' names no directory", spec);
        enum dp_err err = loaders[i].load(fmt, dir, split, out, ei);
        if (err != DP_OK)
            nn_dataset_free(out);
        return err;
    }
    return dp_errinfo_set(ei, DP_EINVAL,
                          "unknown dataset spec '%.120s': expected idx:DIR, cifar:DIR or npy:DIR",
                          spec);
}

/* ---- Synthetic data ------------------------------------------------------ */

static uint64_t data_splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint64_t data_hash(uint64_t a, uint64_t b)
{
    uint64_t s = a ^ data_splitmix64(&b);
    return data_splitmix64(&s);
}

enum dp_err nn_dataset_synthetic(struct nn_dataset *out, int n, int c, int h, int w, int n_classes,
                                 uint64_t seed)
{
    DP_ASSERT(out != NULL);
    memset(out, 0, sizeof(*out));
    if (n < 1 || c < 1 || c > NN_DATASET_MAX_C || h < 1 || h > NN_DATASET_MAX_HW || w < 1 ||
        w > NN_DATASET_MAX_HW || n_classes < 1 || n_classes > NN_DATASET_MAX_CLASSES)
        return DP_EINVAL;
    enum dp_err err = nn_data__alloc(out, n, c, h, w, 0, "synthetic dataset", NULL);
    if (err != DP_OK)
        return err;
    out->n_classes = n_classes;

    /*
     * Every sample draws from its own stream keyed by (seed, index), so the
     * data does not depend on the number of threads. A class template is
     * a hash of (seed, class, block of 8 pixels): no memory for templates.
     */
    const size_t img = (size_t)c * (size_t)h * (size_t)w;
    const uint64_t tseed = data_hash(seed, 0x74656d706c617465ull); /* "template" */
#pragma omp parallel for schedule(static)
    for (int s = 0; s < n; s++) {
        uint64_t state = data_hash(seed, (uint64_t)s);
        int32_t y = (int32_t)(data_splitmix64(&state) % (uint64_t)n_classes);
        uint8_t *px = out->u8 + (size_t)s * img;
        for (size_t i = 0; i < img; i += 8) {
            uint64_t t = data_hash(tseed + (uint64_t)y, i / 8);
            uint64_t r = data_splitmix64(&state);
            for (size_t k = 0; k < 8 && i + k < img; k++) {
                unsigned tv = (unsigned)(t >> (8 * k)) & 0xffu;
                unsigned rv = (unsigned)(r >> (8 * k)) & 0xffu;
                px[i + k] = (uint8_t)((tv + rv) / 2);
            }
        }
        out->labels[s] = y;
    }
    return DP_OK;
}

/* ---- Subsets ------------------------------------------------------------- */

enum dp_err nn_dataset_subset(struct nn_dataset *out, const struct nn_dataset *src, int start,
                              int count)
{
    DP_ASSERT(out != NULL && src != NULL);
    memset(out, 0, sizeof(*out));
    if (count < 1 || start < 0 || start > src->n - count)
        return DP_EINVAL;
    enum dp_err err = nn_data__alloc(out, count, src->c, src->h, src->w, src->f32 != NULL,
                                     "dataset subset", NULL);
    if (err != DP_OK)
        return err;
    size_t img = (size_t)src->c * (size_t)src->h * (size_t)src->w;
    if (src->f32 != NULL)
        memcpy(out->f32, src->f32 + (size_t)start * img, (size_t)count * img * sizeof(float));
    else
        memcpy(out->u8, src->u8 + (size_t)start * img, (size_t)count * img);
    memcpy(out->labels, src->labels + start, (size_t)count * sizeof(int32_t));
    out->n_classes = src->n_classes;
    return DP_OK;
}

/* Copies the samples of src whose pick[i] equals want into out (count of them). */
static enum dp_err nn_data_pick(struct nn_dataset *out, const struct nn_dataset *src,
                                const unsigned char *pick, unsigned char want, int count)
{
    enum dp_err err =
        nn_data__alloc(out, count, src->c, src->h, src->w, src->f32 != NULL, "dataset split", NULL);
    if (err != DP_OK)
        return err;
    const size_t img = (size_t)src->c * (size_t)src->h * (size_t)src->w;
    int at = 0;
    for (int i = 0; i < src->n; i++) {
        if (pick[i] != want)
            continue;
        if (src->f32 != NULL)
            memcpy(out->f32 + (size_t)at * img, src->f32 + (size_t)i * img, img * sizeof(float));
        else
            memcpy(out->u8 + (size_t)at * img, src->u8 + (size_t)i * img, img);
        out->labels[at++] = src->labels[i];
    }
    out->n_classes = src->n_classes;
    return DP_OK;
}

enum dp_err nn_dataset_split(const struct nn_dataset *src, double fraction, uint64_t seed,
                             struct nn_dataset *rest, struct nn_dataset *val)
{
    DP_ASSERT(src != NULL && rest != NULL && val != NULL);
    memset(rest, 0, sizeof(*rest));
    memset(val, 0, sizeof(*val));
    if (!(fraction > 0.0 && fraction < 1.0) || src->n < 2)
        return DP_EINVAL;
    long n_val = lround((double)src->n * fraction);
    n_val = n_val < 1 ? 1 : n_val > src->n - 1 ? src->n - 1 : n_val;
    int *perm = dp_malloc((size_t)src->n * sizeof(int));
    unsigned char *pick = dp_calloc((size_t)src->n, 1);
    enum dp_err err = perm == NULL || pick == NULL ? DP_ENOMEM : DP_OK;
    if (!err) {
        /* A partial Fisher-Yates shuffle: its first n_val entries are the
         * validation samples. */
        struct nn_rng rng;
        nn_rng_seed(&rng, seed ^ 0x5e1ec7ed0f5a11dULL);
        for (int i = 0; i < src->n; i++)
            perm[i] = i;
        for (long i = 0; i < n_val; i++) {
            const long j = i + (long)(nn_rng_next(&rng) % (uint64_t)(src->n - i));
            const int tmp = perm[i];
            perm[i] = perm[j];
            perm[j] = tmp;
            pick[perm[i]] = 1;
        }
        err = nn_data_pick(val, src, pick, 1, (int)n_val);
    }
    if (!err)
        err = nn_data_pick(rest, src, pick, 0, src->n - (int)n_val);
    if (err) {
        nn_dataset_free(rest);
        nn_dataset_free(val);
    }
    dp_free(perm);
    dp_free(pick);
    return err;
}

void nn_dataset_limit(struct nn_dataset *ds, int n_max)
{
    DP_ASSERT(ds != NULL);
    if (n_max < 0 || ds->n <= n_max)
        return;
    ds->n = n_max;

    /* Shrinking cannot really fail; if the allocator says no, keep the block. */
    size_t img = (size_t)ds->c * (size_t)ds->h * (size_t)ds->w;
    size_t keep = (size_t)n_max * img;
    void *p;
    if (ds->u8 != NULL) {
        p = dp_realloc(ds->u8, keep);
        if (p != NULL)
            ds->u8 = p;
    }
    if (ds->f32 != NULL) {
        p = dp_realloc(ds->f32, keep * sizeof(float));
        if (p != NULL)
            ds->f32 = p;
    }
    if (ds->labels != NULL) {
        p = dp_realloc(ds->labels, (size_t)n_max * sizeof(int32_t));
        if (p != NULL)
            ds->labels = p;
    }
}

/* ---- Statistics ---------------------------------------------------------- */

void nn_dataset_norm_stats(const struct nn_dataset *ds, float *mean, float *std)
{
    nn_dataset_channel_stats(ds, mean, std);
    for (int c = 0; c < ds->c; c++) {
        if (std[c] < 1e-6f)
            std[c] = 1.0f;
    }
}

void nn_dataset_model_norm(const struct nn_dataset *ds, struct dp_model *m, float *mean, float *std)
{
    DP_ASSERT(ds != NULL && m != NULL && mean != NULL && std != NULL);
    if (m->norm.n_c > 0 && m->norm.n_c == ds->c) {
        memcpy(mean, m->norm.mean, (size_t)ds->c * sizeof(float));
        memcpy(std, m->norm.std, (size_t)ds->c * sizeof(float));
        return;
    }
    nn_dataset_norm_stats(ds, mean, std);
    if (ds->c == m->in_c && ds->c <= DP_MODEL_NORM_MAX_C) {
        /* Statistics of real data are finite and std >= 1e-6: this cannot
         * fail, and a model that cannot record them still trains. */
        (void)dp_model_norm_set(m, ds->c, mean, std, NULL);
    }
}

void nn_dataset_channel_stats(const struct nn_dataset *ds, float *mean, float *std)
{
    DP_ASSERT(ds != NULL && mean != NULL && std != NULL);
    const size_t hw = (size_t)ds->h * (size_t)ds->w;

    for (int ch = 0; ch < ds->c; ch++) {
        double m = 0.0, var = 0.0;
        size_t count = (size_t)ds->n * hw;
        if (count > 0 && ds->u8 != NULL) {
            /* A histogram makes the u8 case exact and fast. */
            uint64_t hist[256] = {0};
            for (int s = 0; s < ds->n; s++) {
                const uint8_t *p = ds->u8 + ((size_t)s * (size_t)ds->c + (size_t)ch) * hw;
                for (size_t i = 0; i < hw; i++)
                    hist[p[i]]++;
            }
            for (int v = 0; v < 256; v++)
                m += (double)hist[v] * (v / 255.0);
            m /= (double)count;
            for (int v = 0; v < 256; v++) {
                double d = v / 255.0 - m;
                var += (double)hist[v] * d * d;
            }
            var /= (double)count;
        } else if (count > 0 && ds->f32 != NULL) {
            /* Two passes: the mean first, then squared deviations from it. */
            for (int s = 0; s < ds->n; s++) {
                const float *p = ds->f32 + ((size_t)s * (size_t)ds->c + (size_t)ch) * hw;
                double acc = 0.0;
                for (size_t i = 0; i < hw; i++)
                    acc += p[i];
                m += acc;
            }
            m /= (double)count;
            for (int s = 0; s < ds->n; s++) {
                const float *p = ds->f32 + ((size_t)s * (size_t)ds->c + (size_t)ch) * hw;
                double acc = 0.0;
                for (size_t i = 0; i < hw; i++)
                    acc += (p[i] - m) * (p[i] - m);
                var += acc;
            }
            var /= (double)count;
        }
        mean[ch] = (float)m;
        std[ch] = (float)sqrt(var);
    }
}

void nn_dataset_free(struct nn_dataset *ds)
{
    if (ds == NULL)
        return;
    dp_free(ds->u8);
    dp_free(ds->f32);
    dp_free(ds->labels);
    memset(ds, 0, sizeof(*ds));
}
