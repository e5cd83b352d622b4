/*
 * Kernel-pattern pruning (PCONV / PatDNN, dossier sections 5.2-5.4): every
 * 3x3 kernel keeps only the taps of one pattern of a small library, and
 * the library itself is chosen from the pretrained weights.
 *
 * Projection: a pattern is a 9-bit mask (bit r*3+c = tap (r, c)). The set
 * "kernel supported on some library mask" is a union of coordinate
 * subspaces, so the Euclidean projection of one kernel is its restriction
 * to the mask that keeps the largest energy (sum of squares); kernels are
 * independent, so doing this per kernel projects the whole tensor. Ties go
 * to the lower library index. Kernel shapes other than 3x3 (1x1 convs, FC
 * layers, 5x5) and an empty library leave z unchanged: patterns are defined
 * for 3x3 kernels only, and connectivity pruning covers the other layers.
 *
 * Library selection: every kernel votes for its best 4-tap pattern with
 * the centre forced (centre, then its 3 largest |w| among the other 8 taps,
 * ties to the lower tap); the n most voted of the C(8,3) = 56 candidate
 * masks, ties to the smaller mask value, form the library, most voted
 * first (so projection ties also favour the common patterns).
 */
#include "worker/compress/proj.h"

#include <math.h>
#include <string.h>

#include "common/assert.h"
#include "worker/compress/proj_int.h"

#define PAT_TAPS         9
#define PAT_CENTRE       4     /* tap (1, 1) */
#define PAT_ALL          0x1FF /* the 9 tap bits */
#define PAT_N_CANDIDATES 56    /* C(8, 3): 4-tap masks that hold the centre */

/* ---- Projection ------------------------------------------------------------ */

/* 3x3 kernels only; z unchanged otherwise or when p->n_library == 0. Uses no scratch. */
void proj_pattern(float *z, const struct proj_shape *s, const struct proj_params *p, void *scratch)
{
    (void)scratch;
    (void)proj__numel(s); /* asserts the shape */
    if (s->kh != 3 || s->kw != 3 || p->n_library <= 0)
        return;
    DP_ASSERT(p->n_library <= PROJ_MAX_LIBRARY);

    size_t n_kernels = (size_t)s->o * (size_t)s->i;
    for (size_t u = 0; u < n_kernels; u++) {
        float *ker = z + u * PAT_TAPS;
        double sq[PAT_TAPS];
        for (int t = 0; t < PAT_TAPS; t++)
            sq[t] = (double)ker[t] * (double)ker[t];

        double best = -1.0; /* every energy is >= 0, so library[0] always enters */
        unsigned best_mask = 0;
        for (int j = 0; j < p->n_library; j++) {
            unsigned mask = p->library[j] & PAT_ALL;
            double e = 0.0;
            for (int t = 0; t < PAT_TAPS; t++) {
                if (mask >> t & 1u)
                    e += sq[t];
            }
            e = proj__key(e);
            if (e > best) {
                best = e;
                best_mask = mask;
            }
        }
        for (int t = 0; t < PAT_TAPS; t++) {
            if (!(best_mask >> t & 1u))
                ker[t] = 0.0f;
        }
    }
}

/* ---- Library selection ------------------------------------------------------ */

/* The kernel's best 4-tap mask with the centre forced; NaN counts as the largest |w|. */
static unsigned pattern_vote(const float *ker)
{
    unsigned mask = 1u << PAT_CENTRE;

    for (int pick = 0; pick < 3; pick++) {
        int best_t = -1;
        double best = -1.0;
        for (int t = 0; t < PAT_TAPS; t++) {
            if (mask >> t & 1u)
                continue;
            double a = proj__key((double)fabsf(ker[t]));
            if (a > best) { /* strict: ties stay with the lower tap */
                best = a;
                best_t = t;
            }
        }
        mask |= 1u << best_t;
    }
    return mask;
}

static int popcount9(unsigned m)
{
    int c = 0;
    for (int t = 0; t < PAT_TAPS; t++)
        c += (int)(m >> t & 1u);
    return c;
}

enum dp_err proj_pattern_select(const float *const *weights, const struct proj_shape *shapes,
                                int n_tensors, int n, struct proj_params *p, struct dp_errinfo *ei)
{
    int64_t votes[PAT_ALL + 1];

    if (n < 1 || n > PAT_N_CANDIDATES)
        return dp_errinfo_set(ei, DP_EINVAL,
                              "pattern library size %d is out of range: it must be 1..%d "
                              "(4-tap 3x3 patterns that keep the centre)",
                              n, PAT_N_CANDIDATES);
    if (n_tensors < 1 || weights == NULL || shapes == NULL)
        return dp_errinfo_set(ei, DP_EINVAL,
                              "pattern library selection needs at least one 3x3 weight tensor "
                              "(got %d)",
                              n_tensors);
    for (int w = 0; w < n_tensors; w++) {
        const struct proj_shape *s = &shapes[w];
        if (s->kh != 3 || s->kw != 3)
            return dp_errinfo_set(ei, DP_EINVAL,
                                  "pattern library selection: tensor %d has %lldx%lld kernels; "
                                  "patterns are defined for 3x3 kernels only",
                                  w, (long long)s->kh, (long long)s->kw);
        if (s->o < 0 || s->i < 0)
            return dp_errinfo_set(ei, DP_EINVAL,
                                  "pattern library selection: tensor %d has a negative dimension "
                                  "(%lld, %lld, 3, 3)",
                                  w, (long long)s->o, (long long)s->i);
        if (weights[w] == NULL && s->o > 0 && s->i > 0)
            return dp_errinfo_set(ei, DP_EINVAL, "pattern library selection: tensor %d has no data",
                                  w);
    }

    memset(votes, 0, sizeof votes);
    for (int w = 0; w < n_tensors; w++) {
        size_t n_kernels = (size_t)shapes[w].o * (size_t)shapes[w].i;
        for (size_t u = 0; u < n_kernels; u++)
            votes[pattern_vote(weights[w] + u * PAT_TAPS)]++;
    }

    /* n rounds of "most votes, then smaller mask" over the 56 candidates. */
    unsigned char taken[PAT_ALL + 1];
    memset(taken, 0, sizeof taken);
    p->n_library = n;
    memset(p->library, 0, sizeof p->library);
    for (int j = 0; j < n; j++) {
        int best_m = -1;
        for (unsigned m = 0; m <= PAT_ALL; m++) {
            if (!(m >> PAT_CENTRE & 1u) || popcount9(m) != 4 || taken[m])
                continue;
            if (best_m < 0 || votes[m] > votes[best_m])
                best_m = (int)m;
        }
        DP_ASSERT(best_m >= 0);
        taken[best_m] = 1;
        p->library[j] = (uint16_t)best_m;
    }
    return DP_OK;
}
