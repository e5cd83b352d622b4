/*
 * Convolution schedules (see cg_sched.h): the kernel per layer and the
 * register block of the panel kernel from a small cost model.
 */
#include "worker/codegen/cg_sched.h"

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

/* Cycles of one K-step of an nb x r block: two FMA and two load ports,
 * and 8 independent accumulators to cover the FMA latency (x2, integer). */
static long long cg_step_cost(int nb, int r)
{
    int c = nb * r;
    if (nb + r > c)
        c = nb + r;
    return c < 8 ? 8 : c;
}

/* Registers a block may hold: accumulators plus the nb weight vectors.
 * 32 vector registers with AVX-512 (two left for the compiler), 16 with
 * AVX2 and 128-bit targets. */
static int cg_reg_budget(int vl)
{
    return vl >= 16 ? 30 : 15;
}

static void cg_sched_panel(struct cg_step *s, int vl)
{
    const struct cg_geom *g = &s->g;
    const int P = (g->F + vl - 1) / vl;
    const int PWq = cg_sched_pwq(g);
    const int NK = (g->OH - 1) * PWq + g->OW;
    const int budget = cg_reg_budget(vl);
    long long best = -1;
    struct cg_sched b = {CG_KERN_PANEL, vl, 1, 1, 0};
    for (int nb = 1; nb <= 4; nb++) {
        if (P % nb != 0)
            continue;
        const long long groups = P / nb;
        for (int r = 1; nb * r + nb <= budget; r++) {
            /* Flat tiles: r consecutive flat positions, padding columns included. */
            const long long tiles = (NK + r - 1) / r;
            long long cost = groups * tiles * cg_step_cost(nb, r);
            if (best < 0 || cost < best) {
                best = cost;
                b = (struct cg_sched){CG_KERN_PANEL, vl, nb, r, 0};
            }
            /* Whole rows: r = rows * OW real pixels, a shorter tail tile. */
            if (r % g->OW != 0)
                continue;
            const int rows = r / g->OW;
            if (rows > g->OH)
                continue;
            const int full = g->OH / rows, tail = g->OH % rows;
            cost =
                groups * (full * cg_step_cost(nb, r) + (tail ? cg_step_cost(nb, tail * g->OW) : 0));
            if (cost <= best) { /* ties: no padding column is stored */
                best = cost;
                b = (struct cg_sched){CG_KERN_PANEL, vl, nb, r, rows};
            }
        }
    }
    s->sched = b;
}

void cg_sched_choose(struct cg_plan *p, int vl)
{
    for (int k = 0; k < p->n_steps; k++) {
        struct cg_step *s = &p->steps[k];
        s->sched = (struct cg_sched){CG_KERN_NONE, vl, 0, 0, 0};
        if (s->kind != CG_K_CONV)
            continue;
        if (s->fmt == CG_FMT_FKW || vl <= 0)
            s->sched.kern = CG_KERN_SPATIAL;
        else
            cg_sched_panel(s, vl);
    }
}
