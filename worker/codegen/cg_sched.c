/*
 * Convolution schedules (see cg_sched.h): the kernel per layer and the
 * register block of the panel kernel from a small cost model.
 */
#include "worker/codegen/cg_sched.h"

#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"

/* The cost model's machine, per core: an L2 share a group's weights may
 * stay in, and bytes per cycle from L2 and from memory (a 2-core AVX-512
 * machine of the kind the issue measures: 2 MiB L2, ~16 GB/s streaming). */
#define CG_SCHED_L2_BYTES (1024.0 * 1024.0)
#define CG_SCHED_L2_BW    32.0
#define CG_SCHED_MEM_BW   6.0

static int cg_imax(int a, int b)
{
    return a > b ? a : b;
}

static int cg_imin(int a, int b)
{
    return a < b ? a : b;
}

int cg_sched_phq(const struct cg_geom *g)
{
    return cg_imax((g->H + g->pt + g->pb + g->sh - 1) / g->sh, g->OH + (g->kh - 1) / g->sh);
}

int cg_sched_pwq(const struct cg_geom *g)
{
    return cg_imax((g->W + g->pl + g->pr + g->sw - 1) / g->sw, g->OW + (g->kw - 1) / g->sw);
}

const char *cg_kern_name(enum cg_kern k)
{
    switch (k) {
        case CG_KERN_SPATIAL:
            return "spatial";
        case CG_KERN_PANEL:
            return "panel";
        case CG_KERN_NONE:
            break;
    }
    return "";
}

/* Half-cycles of one K-step of an nb x r block: two FMA and two load
 * ports, and 8 independent accumulators to cover the FMA latency. */
static double cg_step_cost(int nb, int r)
{
    double c = nb * r;
    if (nb + r > c)
        c = nb + r;
    return (c < 8 ? 8 : c) / 2.0;
}

/* Registers a block may hold: accumulators plus the nb weight vectors.
 * 32 vector registers with AVX-512 (two left for the compiler), 16 with
 * AVX2 and 128-bit targets. */
static int cg_reg_budget(int vl)
{
    return vl >= 16 ? 30 : 15;
}

/* Cycles of one tile of r pixels on a group whose weights (bytes) stream
 * at bw bytes per cycle: the K-loop is bound by the FMAs, the loads or the
 * weight stream, whichever is slowest. */
static double cg_tile_cost(long long K, int nb, int r, double bytes, double bw)
{
    const double compute = (double)K * cg_step_cost(nb, r);
    const double stream = bytes / bw;
    return compute > stream ? compute : stream;
}

/* Cycles of a whole layer for one block shape: every group's first tile
 * streams its weights from memory; later tiles re-read them from L2 when
 * a group fits there, from memory otherwise. */
static double cg_layer_cost(const struct cg_step *s, int vl, int nb, int r, int n_tiles, int tail_r)
{
    const struct cg_geom *g = &s->g;
    const int P = (g->F + vl - 1) / vl;
    const long long K = (long long)g->C * g->kh * g->kw;
    const double group_bytes = (double)K * nb * vl * sizeof(float);
    const double later_bw = group_bytes <= CG_SCHED_L2_BYTES ? CG_SCHED_L2_BW : CG_SCHED_MEM_BW;
    double c = 0.0;
    for (int t = 0; t < n_tiles; t++) {
        const int rt = t == n_tiles - 1 && tail_r > 0 ? tail_r : r;
        c += cg_tile_cost(K, nb, rt, group_bytes, t == 0 ? CG_SCHED_MEM_BW : later_bw);
    }
    return c * ((double)P / nb);
}

/* The largest register block the emitter writes (cg_store_panel's pixel
 * table and the emitter's hold 64 pixels). */
#define CG_PANEL_MAX_R 64
#define CG_MAX_CANDS   64

struct cg_cand {
    struct cg_sched s;
    double key; /* sort key: cost (panel) or distance from the default (spatial) */
    int order;  /* enumeration order, for a stable sort */
};

static int cg_cand_cmp(const void *a, const void *b)
{
    const struct cg_cand *x = a, *y = b;
    if (x->key != y->key)
        return x->key < y->key ? -1 : 1;
    return x->order - y->order;
}

/* Panel blocks of path vl: nb panels of vl channels x r pixels, flat or
 * whole-row tiles, cheapest first under the cost model. On the layout
 * path (gw 0) nb decides the weight groups (gw = nb * vl, nb dividing the
 * panels); on the others nb * vl must divide gw. */
static int cg_panel_cands(const struct cg_step *s, int vl, int gw, struct cg_cand *c, int cap)
{
    const struct cg_geom *g = &s->g;
    const int P = (g->F + vl - 1) / vl;
    const int PWq = cg_sched_pwq(g);
    const int NK = (g->OH - 1) * PWq + g->OW;
    const int budget = cg_reg_budget(vl);
    const double layer_bytes = (double)P * vl * (double)g->C * g->kh * g->kw * sizeof(float);
    /* Weights that cannot stay in L2 come from memory at every pass:
     * prefetch them a few KiB ahead, the hardware prefetcher alone leaves
     * the stream at about half the bandwidth (measured on vgg16's 2x2 and
     * 4x4 layers: 1.55 -> 1.0 ms). */
    const int prefetch = layer_bytes > CG_SCHED_L2_BYTES;
    int n = 0;
    for (int nb = 1; nb <= (gw ? 8 : 4); nb++) {
        if (gw ? (gw % (nb * vl) != 0) : (P % nb != 0))
            continue;
        const int gwc = gw ? gw : nb * vl;
        for (int r = 1; nb * r + nb <= budget && r <= CG_PANEL_MAX_R; r++) {
            for (int rows_try = 0; rows_try < 2; rows_try++) {
                int rows = 0;
                double cost;
                if (rows_try == 0) {
                    /* Flat tiles: r consecutive flat positions, padding columns included. */
                    cost = cg_layer_cost(s, vl, nb, r, (NK + r - 1) / r, 0);
                } else {
                    /* Whole rows: r = rows * OW real pixels, a shorter tail tile. */
                    if (r % g->OW != 0 || r / g->OW > g->OH)
                        continue;
                    rows = r / g->OW;
                    const int full = g->OH / rows, tail = g->OH % rows;
                    cost = cg_layer_cost(s, vl, nb, r, full + (tail > 0), tail * g->OW);
                }
                if (n >= cap)
                    return n;
                c[n].s = (struct cg_sched){.kern = CG_KERN_PANEL,
                                           .vl = vl,
                                           .nb = nb,
                                           .r = r,
                                           .rows = rows,
                                           .prefetch = prefetch,
                                           .gw = gwc};
                /* Ties: whole rows first (no padding column is stored). */
                c[n].key = cost - (rows ? 0.5 : 0.0);
                c[n].order = n;
                n++;
            }
        }
    }
    return n;
}

/* Whether step s is an FKW layer of 4-tap patterns only. */
static int cg_all_4tap(const struct cg_step *s)
{
    int all4 = s->fmt == CG_FMT_FKW && s->n_patterns > 0;
    for (int q = 0; q < s->n_patterns; q++) {
        int n = 0;
        for (unsigned m = s->patterns[q]; m; m &= m - 1)
            n++;
        all4 = all4 && n == 4;
    }
    return all4;
}

/* The most taps of one kernel of s. */
static int cg_max_taps(const struct cg_step *s)
{
    if (s->fmt != CG_FMT_FKW)
        return s->g.kh * s->g.kw;
    int nmax = 1;
    for (int q = 0; q < s->n_patterns; q++) {
        int n = 0;
        for (unsigned m = s->patterns[q]; m; m &= m - 1)
            n++;
        nmax = cg_imax(nmax, n);
    }
    return nmax;
}

/* The spatial kernel's register tile for nv vectors: a kernel's taps go to
 * S accumulator sets (tap i to set i % S) and U kernels run interleaved,
 * so a tile keeps nv * S * U >= 8 FMA chains (latency 4, two ports): on
 * 4x4 and 2x2 maps (nv = 1) one chain would leave the FMA units idle. */
static void cg_spatial_tile(const struct cg_step *s, int nv, struct cg_sched *o)
{
    o->nv = nv;
    o->sets = (8 + nv - 1) / nv;
    if (o->sets > cg_max_taps(s))
        o->sets = cg_max_taps(s);
    o->unroll = nv * o->sets < 8 && 2 * nv * o->sets <= 16 ? 2 : 1;
}

/* Flat outputs of a filter in the spatial kernel's layout. */
static int cg_spatial_nk(const struct cg_geom *g, int shift)
{
    return (g->OH - 1) * (shift ? g->OW : cg_sched_pwq(g)) + g->OW;
}

/* Vector FMAs per kept tap of a filter over nk flat outputs: whole tiles
 * of at most nv_max vectors, the last one computed in full. */
static long long cg_spatial_vectors(int nk, int vl)
{
    int nv = (nk + vl - 1) / vl;
    if (nv > cg_sched_nv_max(vl))
        nv = cg_sched_nv_max(vl);
    const int L = nv * vl;
    return (long long)((nk + L - 1) / L) * nv;
}

/* The spatial kernel: the cost model's input layout and tile first, then
 * the other tiles (vectors per tile, unroll) and layout, nearest first. */
static int cg_spatial_cands(const struct cg_step *s, int vl, int threads, struct cg_cand *c,
                            int cap)
{
    const struct cg_geom *g = &s->g;
    struct cg_sched d = {.kern = CG_KERN_SPATIAL, .vl = vl};
    if (vl <= 0) {
        c[0].s = d;
        c[0].key = 0.0;
        c[0].order = 0;
        return 1;
    }
    /* The input layout: the cheaper by vector FMAs plus the copying (a
     * load and a store per vector). */
    const int PHq = cg_sched_phq(g), PWq = cg_sched_pwq(g);
    const double flat_copy = (double)g->C * g->sh * g->sw * PHq * PWq;
    const double shift_copy = (double)g->C * g->sh * g->kw * PHq * g->OW;
    const double flat =
        (double)s->n_nonzero * (double)cg_spatial_vectors((g->OH - 1) * PWq + g->OW, vl) +
        2.0 * flat_copy / vl;
    const double shift = (double)s->n_nonzero * (double)cg_spatial_vectors(g->OH * g->OW, vl) +
                         2.0 * shift_copy / vl;
    d.shift = shift < flat;
    /* With more than one thread, when both copies are small enough that
     * every thread makes its own, each thread pays the whole copy: the
     * shifted one (kw times the rows) loses. Measured on resnet20's 16x16
     * and 8x8 pattern layers: at 2 threads min 0.245 -> 0.219 ms for the
     * network on polyphase planes; at 1 thread the shifted copies stay
     * faster (0.237 against 0.295 ms), as the model above says. */
    if (threads > 1 && flat_copy <= CG_SCHED_PRIVATE_PAD_FLOATS &&
        shift_copy <= CG_SCHED_PRIVATE_PAD_FLOATS)
        d.shift = 0;
    const int nk = cg_spatial_nk(g, d.shift);
    cg_spatial_tile(s, cg_imax(1, cg_imin((nk + vl - 1) / vl, cg_sched_nv_max(vl))), &d);
    /* 2x2 maps: a tile of 4 pixels would fill 4 of 16 lanes; packing a
     * 4-tap pattern's taps x pixels fills all 16 (measured on vgg16's
     * 512-channel 2x2 layers). */
    const int can_pack = vl == 16 && cg_all_4tap(s) && g->OH * g->OW == 4;
    int n = 0;
    if (can_pack) {
        c[n].s = d;
        c[n].s.packed = 1;
        c[n].key = -1.0;
        c[n].order = n;
        n++;
    }
    for (int sh = 0; sh < 2; sh++) {
        const int nvs = cg_imin((cg_spatial_nk(g, sh) + vl - 1) / vl, 2 * cg_sched_nv_max(vl));
        for (int nv = 1; nv <= nvs; nv++) {
            for (int u = 1; u <= 2; u++) {
                struct cg_sched o = d;
                o.shift = sh;
                cg_spatial_tile(s, nv, &o);
                o.unroll = u;
                /* At most 16 accumulators (a second kernel only where they fit). */
                if (u == 2 && nv * o.sets * 2 > 16)
                    continue;
                if (n >= cap)
                    return n;
                c[n].s = o;
                c[n].key = abs(nv - d.nv) + 2.0 * (sh != d.shift) + (u != d.unroll);
                c[n].order = n;
                n++;
            }
        }
    }
    return n;
}

int cg_sched_candidates(const struct cg_step *s, int vl, int gw, int threads, struct cg_sched *out,
                        int cap)
{
    if (s->kind != CG_K_CONV || cap <= 0)
        return 0;
    if (s->fmt == CG_FMT_CSR || s->fmt == CG_FMT_BITMASK) {
        /* Past the measured break-even (cg_sparse.h) the layer runs its
         * sparse kernel over the polyphase input, one tile of up to
         * nv_max vectors (cg_emit_sparse.c): a single schedule, since its
         * weights are packed in that format for every path. */
        const struct cg_geom *g = &s->g;
        const int NK = (g->OH - 1) * cg_sched_pwq(g) + g->OW;
        int nv = vl > 0 ? (NK + vl - 1) / vl : 0;
        if (vl > 0 && nv > cg_sched_nv_max(vl))
            nv = cg_sched_nv_max(vl);
        out[0] = (struct cg_sched){.kern = CG_KERN_SPATIAL,
                                   .vl = vl,
                                   .nv = nv,
                                   .sets = vl > 0 ? 1 : 0,
                                   .unroll = vl > 0 ? 1 : 0,
                                   .sparse = 1};
        return 1;
    }
    struct cg_cand c[CG_MAX_CANDS * 2];
    int n;
    if (s->fmt == CG_FMT_FKW || vl <= 0)
        n = cg_spatial_cands(s, vl, threads, c, CG_MAX_CANDS * 2);
    else
        n = cg_panel_cands(s, vl, gw, c, CG_MAX_CANDS * 2);
    qsort(c, (size_t)n, sizeof(c[0]), cg_cand_cmp);
    if (n > cap)
        n = cap;
    for (int i = 0; i < n; i++)
        out[i] = c[i].s;
    return n;
}

int cg_sched_equal(const struct cg_sched *a, const struct cg_sched *b)
{
    return a->kern == b->kern && a->vl == b->vl && a->nb == b->nb && a->r == b->r &&
           a->rows == b->rows && a->prefetch == b->prefetch && a->packed == b->packed &&
           a->shift == b->shift && a->gw == b->gw && a->nv == b->nv && a->sets == b->sets &&
           a->unroll == b->unroll && a->sparse == b->sparse;
}

int cg_sched_nv_max(int vl)
{
    return vl >= 16 ? 8 : 4;
}

/* ---- Whole schedules ------------------------------------------------------ */

static const struct {
    const char *isa;
    int vl;
} cg_native_paths[] = {{"avx512", 16}, {"avx2", 8}, {"generic", 4}};

void cg_schedule_free(struct cg_schedule *s)
{
    if (s == NULL)
        return;
    for (int i = 0; i < s->n_paths; i++)
        dp_free(s->path[i].steps);
    memset(s, 0, sizeof(*s));
}

enum dp_err cg_schedule_default(const struct cg_plan *p, const char *target, int threads,
                                struct cg_schedule *out, struct dp_errinfo *ei)
{
    memset(out, 0, sizeof(*out));
    out->n_steps = p->n_steps;
    out->threads = threads;
    out->prefer = -1;
    if (strcmp(target, "native") == 0) {
        out->n_paths = 3;
        for (int i = 0; i < 3; i++) {
            out->path[i].isa = cg_native_paths[i].isa;
            out->path[i].vl = cg_native_paths[i].vl;
        }
    } else if (strcmp(target, "portable") == 0) {
        out->n_paths = 1;
        out->path[0].isa = "plain";
        out->path[0].vl = 0;
    } else {
        return dp_errinfo_set(ei, DP_EINVAL, "unknown target '%s' (native or portable)", target);
    }
    for (int i = 0; i < out->n_paths; i++) {
        out->path[i].steps =
            dp_calloc((size_t)(p->n_steps > 0 ? p->n_steps : 1), sizeof(struct cg_sched));
        if (out->path[i].steps == NULL) {
            cg_schedule_free(out);
            return dp_errinfo_set(ei, DP_ENOMEM, "out of memory for the schedule");
        }
        for (int k = 0; k < p->n_steps; k++) {
            struct cg_sched *o = &out->path[i].steps[k];
            *o = (struct cg_sched){.kern = CG_KERN_NONE, .vl = out->path[i].vl};
            const int gw = i > 0 ? out->path[0].steps[k].gw : 0;
            cg_sched_candidates(&p->steps[k], out->path[i].vl, gw, threads, o, 1);
        }
    }
    return DP_OK;
}

enum dp_err cg_schedule_copy(struct cg_schedule *dst, const struct cg_schedule *src,
                             struct dp_errinfo *ei)
{
    *dst = *src;
    for (int i = 0; i < src->n_paths; i++) {
        const size_t n = (size_t)(src->n_steps > 0 ? src->n_steps : 1);
        dst->path[i].steps = dp_calloc(n, sizeof(struct cg_sched));
        if (dst->path[i].steps == NULL) {
            dst->n_paths = i;
            cg_schedule_free(dst);
            return dp_errinfo_set(ei, DP_ENOMEM, "out of memory for the schedule");
        }
        memcpy(dst->path[i].steps, src->path[i].steps,
               (size_t)src->n_steps * sizeof(struct cg_sched));
    }
    return DP_OK;
}

void cg_schedule_apply(struct cg_plan *p, const struct cg_schedule *s, int path)
{
    for (int k = 0; k < p->n_steps && k < s->n_steps; k++)
        p->steps[k].sched = s->path[path].steps[k];
}

int cg_schedule_path(const struct cg_schedule *s, const char *isa)
{
    for (int i = 0; i < s->n_paths; i++)
        if (strcmp(s->path[i].isa, isa) == 0)
            return i;
    return -1;
}
