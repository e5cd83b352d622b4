/*
 * FKW packing (see cg_fkw.h): filter kernel reordering, kernels grouped by
 * pattern, 16-bit channel indices and one weight per kept tap.
 */
#include "worker/codegen/cg_fkw.h"

#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/assert.h"

/* One filter's sort key: its kernel count and pattern histogram. */
struct cg_fkw_key {
    int f;
    uint32_t nk;
    const uint16_t *hist; /* (P) kernels per pattern */
    int P;
};

static int cg_fkw_key_cmp(const void *pa, const void *pb)
{
    const struct cg_fkw_key *a = pa, *b = pb;
    if (a->nk != b->nk)
        return a->nk > b->nk ? -1 : 1;
    for (int p = 0; p < a->P; p++)
        if (a->hist[p] != b->hist[p])
            return a->hist[p] > b->hist[p] ? -1 : 1;
    return (a->f > b->f) - (a->f < b->f); /* ties: original order, so packing is deterministic */
}

/* Index of mask in the sorted pattern list (it is there: the plan built it). */
static int cg_fkw_pattern(const struct cg_step *s, unsigned mask)
{
    for (int p = 0; p < s->n_patterns; p++)
        if (s->patterns[p] == mask)
            return p;
    return -1;
}

void cg_fkw_free(struct cg_fkw *f)
{
    if (f == NULL)
        return;
    dp_free(f->perm);
    dp_free(f->kptr);
    dp_free(f->prun);
    dp_free(f->cin);
    dp_free(f->woff);
    dp_free(f->w);
    dp_free(f->bias);
    memset(f, 0, sizeof(*f));
}

enum dp_err cg_fkw_pack(const struct cg_step *s, const char *name, struct cg_fkw *out,
                        struct dp_errinfo *ei)
{
    const int F = s->g.F, C = s->g.C, P = s->n_patterns, T = s->g.kh * s->g.kw;
    enum dp_err err = DP_OK;
    memset(out, 0, sizeof(*out));
    uint8_t *pat = NULL; /* (F, C): pattern id + 1 of each kernel, 0 when pruned */
    uint16_t *hist = NULL;
    struct cg_fkw_key *keys = NULL;
    if (F > 65535 || C > 65535) {
        return dp_errinfo_set(ei, DP_EUNSUPPORTED,
                              "layer '%s': %d x %d channels do not fit FKW's 16-bit indices", name,
                              F, C);
    }
    if (s->n_nonzero > UINT32_MAX)
        return dp_errinfo_set(ei, DP_EUNSUPPORTED,
                              "layer '%s': %zu kept weights do not fit FKW's 32-bit offsets", name,
                              s->n_nonzero);
    const size_t FC = (size_t)F * (size_t)C;
    pat = dp_malloc(FC);
    hist = dp_calloc((size_t)F * (size_t)(P > 0 ? P : 1), sizeof(uint16_t));
    keys = dp_malloc(dp_size_mul((size_t)F, sizeof(*keys)));
    out->perm = dp_malloc(dp_size_mul((size_t)F, sizeof(uint16_t)));
    out->kptr = dp_malloc(dp_size_mul((size_t)F + 1, sizeof(uint32_t)));
    out->prun = dp_malloc(dp_size_mul((size_t)F * (size_t)(P + 1), sizeof(uint16_t)));
    out->cin = dp_malloc(dp_size_mul(s->n_kernels_kept + 1, sizeof(uint16_t)));
    out->woff = dp_malloc(dp_size_mul((size_t)F + 1, sizeof(uint32_t)));
    out->w = dp_malloc(dp_size_mul(s->n_nonzero + 1, sizeof(float)));
    out->bias = dp_malloc(dp_size_mul((size_t)F, sizeof(float)));
    if (pat == NULL || hist == NULL || keys == NULL || out->perm == NULL || out->kptr == NULL ||
        out->prun == NULL || out->cin == NULL || out->woff == NULL || out->w == NULL ||
        out->bias == NULL) {
        err = dp_errinfo_set(ei, DP_ENOMEM, "out of memory packing FKW");
        goto out;
    }
    out->F = F;
    out->C = C;
    out->n_patterns = P;
    for (int f = 0; f < F; f++) {
        uint32_t nk = 0;
        for (int c = 0; c < C; c++) {
            const float *k = s->w + ((size_t)f * (size_t)C + (size_t)c) * (size_t)T;
            unsigned mask = 0;
            for (int t = 0; t < T; t++)
                if (k[t] != 0.0f)
                    mask |= 1u << t;
            const int p = mask != 0 ? cg_fkw_pattern(s, mask) : -1;
            DP_ASSERT(mask == 0 || p >= 0); /* else the kernel would be dropped as pruned */
            pat[(size_t)f * (size_t)C + (size_t)c] = (uint8_t)(p + 1);
            if (p >= 0) {
                hist[(size_t)f * (size_t)P + (size_t)p]++;
                nk++;
            }
        }
        keys[f] = (struct cg_fkw_key){f, nk, hist + (size_t)f * (size_t)P, P};
    }
    qsort(keys, (size_t)F, sizeof(*keys), cg_fkw_key_cmp);
    uint32_t nk = 0, nw = 0;
    for (int j = 0; j < F; j++) {
        const int f = keys[j].f;
        out->perm[j] = (uint16_t)f;
        out->kptr[j] = nk;
        out->woff[j] = nw;
        out->bias[j] = s->b[f];
        uint16_t *pr = out->prun + (size_t)j * (size_t)(P + 1);
        uint16_t in_filter = 0;
        for (int p = 0; p < P; p++) {
            pr[p] = in_filter;
            for (int c = 0; c < C; c++) {
                if (pat[(size_t)f * (size_t)C + (size_t)c] != p + 1)
                    continue;
                const float *k = s->w + ((size_t)f * (size_t)C + (size_t)c) * (size_t)T;
                out->cin[nk++] = (uint16_t)c;
                in_filter++;
                for (int t = 0; t < T; t++)
                    if ((s->patterns[p] >> t) & 1u)
                        out->w[nw++] = k[t];
            }
        }
        pr[P] = in_filter;
    }
    out->kptr[F] = nk;
    out->woff[F] = nw;
    out->n_kernels = nk;
out:
    dp_free(pat);
    dp_free(hist);
    dp_free(keys);
    if (err)
        cg_fkw_free(out);
    return err;
}
