/*
 * Convolution schedules (see cg_sched.h): the kernel per layer and the
 * register block of the panel kernel from a small cost model.
 */
#include "worker/codegen/cg_sched.h"

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
    return c * (P / nb);
}

static void cg_sched_panel(struct cg_step *s, int vl)
{
    const struct cg_geom *g = &s->g;
    const int P = (g->F + vl - 1) / vl;
    const int PWq = cg_sched_pwq(g);
    const int NK = (g->OH - 1) * PWq + g->OW;
    const int budget = cg_reg_budget(vl);
    double best = -1.0;
    struct cg_sched b = {CG_KERN_PANEL, vl, 1, 1, 0, 0, 0, 0};
    for (int nb = 1; nb <= 4; nb++) {
        if (P % nb != 0)
            continue;
        for (int r = 1; nb * r + nb <= budget; r++) {
            /* Flat tiles: r consecutive flat positions, padding columns included. */
            double cost = cg_layer_cost(s, vl, nb, r, (NK + r - 1) / r, 0);
            if (best < 0 || cost < best) {
                best = cost;
                b = (struct cg_sched){CG_KERN_PANEL, vl, nb, r, 0, 0, 0, 0};
            }
            /* Whole rows: r = rows * OW real pixels, a shorter tail tile. */
            if (r % g->OW != 0)
                continue;
            const int rows = r / g->OW;
            if (rows > g->OH)
                continue;
            const int full = g->OH / rows, tail = g->OH % rows;
            cost = cg_layer_cost(s, vl, nb, r, full + (tail > 0), tail * g->OW);
            if (cost <= best) { /* ties: no padding column is stored */
                best = cost;
                b = (struct cg_sched){CG_KERN_PANEL, vl, nb, r, rows, 0, 0, 0};
            }
        }
    }
    /* Weights that cannot stay in L2 come from memory at every pass:
     * prefetch them a few KiB ahead, the hardware prefetcher alone leaves
     * the stream at about half the bandwidth (measured on vgg16's 2x2 and
     * 4x4 layers: 1.55 -> 1.0 ms). */
    const double layer_bytes = (double)P * vl * (double)g->C * g->kh * g->kw * sizeof(float);
    b.prefetch = layer_bytes > CG_SCHED_L2_BYTES;
    s->sched = b;
}

int cg_sched_nv_max(int vl)
{
    return vl >= 16 ? 8 : 4;
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

/* Chooses the spatial kernel's input layout (cg_plan.h, sched.shift) by
 * vector FMAs plus the copying (a load and a store per vector). */
static void cg_sched_spatial(struct cg_step *s, int vl)
{
    const struct cg_geom *g = &s->g;
    s->sched.kern = CG_KERN_SPATIAL;
    if (vl <= 0)
        return;
    const int PHq = cg_sched_phq(g), PWq = cg_sched_pwq(g);
    const double flat_copy = (double)g->C * g->sh * g->sw * PHq * PWq;
    const double shift_copy = (double)g->C * g->sh * g->kw * PHq * g->OW;
    const double flat =
        (double)s->n_nonzero * (double)cg_spatial_vectors((g->OH - 1) * PWq + g->OW, vl) +
        2.0 * flat_copy / vl;
    const double shift = (double)s->n_nonzero * (double)cg_spatial_vectors(g->OH * g->OW, vl) +
                         2.0 * shift_copy / vl;
    s->sched.shift = shift < flat;
    /* 2x2 maps: a tile of 4 pixels would fill 4 of 16 lanes; packing a
     * 4-tap pattern's taps x pixels fills all 16 (measured on vgg16's
     * 512-channel 2x2 layers). */
    int all4 = s->fmt == CG_FMT_FKW && s->n_patterns > 0;
    for (int q = 0; q < s->n_patterns; q++) {
        int n = 0;
        for (unsigned m = s->patterns[q]; m; m &= m - 1)
            n++;
        all4 = all4 && n == 4;
    }
    s->sched.packed = vl == 16 && all4 && g->OH * g->OW == 4;
}

void cg_sched_choose(struct cg_plan *p, int vl)
{
    for (int k = 0; k < p->n_steps; k++) {
        struct cg_step *s = &p->steps[k];
        s->sched = (struct cg_sched){CG_KERN_NONE, vl, 0, 0, 0, 0, 0, 0};
        if (s->kind != CG_K_CONV)
            continue;
        if (s->fmt == CG_FMT_FKW || vl <= 0)
            cg_sched_spatial(s, vl);
        else
            cg_sched_panel(s, vl);
    }
}
