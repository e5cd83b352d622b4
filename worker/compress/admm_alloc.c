/*
 * Per-layer rates: the global magnitude allocation of the baseline, and
 * the automatic rates of spec.auto (sensitivity analysis, then simulated
 * annealing, after AutoCompress).
 *
 * Automatic rates. For every constrained layer k and every rate r of a
 * geometric grid, the layer alone is pruned to r with its rule's projection
 * and the loss on a sample of validation images is measured: d_k(r) = loss -
 * dense loss. Treating the damage of the layers as additive, the search
 * picks one grid rate per layer to minimise sum_k d_k(r_k) subject to
 * sum_k cost_k / r_k <= sum_k cost_k / R, cost being the layer's weights
 * (objective "params") or its multiply-accumulates ("flops"); objective
 * "latency" adds sum_k ms_k(r_k) <= sum_k ms_k(R), ms from the device's
 * measured table (common/lat_table.h), to the weight budget. Annealing
 * moves one layer a grid step, or two layers in opposite directions (which
 * keeps the budget roughly level), accepts worse states with probability
 * exp(-delta / T), and keeps the best feasible state. It searches the
 * running maximum of each measured curve (a layer pruned harder is never
 * less damaged) and starts from the better of the uniform allocation and
 * the Lagrangian one (every layer alone at the multiplier that meets the
 * budget): from the uniform start alone a one-step walk stayed where a
 * small layer's curve had saturated, and pruned lenet-300-100's output
 * layer 256x (4 weights left, 44.5 % test) at 80x. Everything is seeded
 * by spec.seed, so the choice is reproducible. Progressive runs choose
 * again at the start of every stage, on the weights the stage starts from.
 * auto.allocation "global" instead takes the rates one magnitude threshold
 * over all layers gives (what a gradual global-magnitude pass prunes to).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/lat_table.h"
#include "worker/compress/admm_int.h"
#include "worker/nn/train.h"

static int admm_alloc_cmp_desc(const void *a, const void *b)
{
    const float x = *(const float *)a, y = *(const float *)b;
    return (x < y) - (x > y);
}

enum dp_err admm_alloc_global(struct admm_ctx *c, double frac, struct dp_errinfo *ei)
{
    double n_all = 0.0, kept_all = 0.0;
    for (int k = 0; k < c->n_t; k++) {
        n_all += (double)admm_numel(c, &c->t[k]);
        kept_all += (double)admm_numel(c, &c->t[k]) / c->t[k].base_rate;
    }
    return admm_alloc_global_rate(c, pow(n_all / kept_all, frac), ei);
}

enum dp_err admm_alloc_global_rate(struct admm_ctx *c, double rate, struct dp_errinfo *ei)
{
    double n_all = 0.0;
    for (int k = 0; k < c->n_t; k++)
        n_all += (double)admm_numel(c, &c->t[k]);
    const size_t n = (size_t)n_all;
    size_t keep = (size_t)llround(n_all / rate);
    keep = keep < 1 ? 1 : keep;
    float *mag = dp_malloc(dp_size_mul(n, sizeof(float)));
    if (mag == NULL)
        return dp_errinfo_set(ei, DP_ENOMEM,
                              "out of memory sorting %zu weights for the global magnitude "
                              "threshold",
                              n);
    size_t at = 0;
    for (int k = 0; k < c->n_t; k++) {
        const float *w = admm_w(c, &c->t[k]);
        for (size_t i = 0; i < admm_numel(c, &c->t[k]); i++)
            mag[at++] = fabsf(w[i]);
    }
    qsort(mag, n, sizeof(float), admm_alloc_cmp_desc);
    const float thr = mag[keep - 1];
    size_t above = 0;
    for (size_t i = 0; i < keep; i++)
        above += mag[i] > thr;
    size_t ties = keep - above; /* entries equal to thr to keep, first layers first */
    dp_free(mag);
    for (int k = 0; k < c->n_t; k++) {
        const float *w = admm_w(c, &c->t[k]);
        const size_t cnt = admm_numel(c, &c->t[k]);
        size_t kk = 0, eq = 0;
        for (size_t i = 0; i < cnt; i++) {
            kk += fabsf(w[i]) > thr;
            eq += fabsf(w[i]) == thr;
        }
        const size_t take = eq < ties ? eq : ties;
        ties -= take;
        kk += take;
        kk = kk < 1 ? 1 : kk;
        c->t[k].p.rate = (double)cnt / (double)kk;
    }
    return DP_OK;
}

/* ---- Automatic rates ------------------------------------------------------ */

double admm_alloc_kept(const struct admm_alloc_search *s, const int *idx)
{
    double kept = 0.0;
    for (int k = 0; k < s->n_t; k++)
        kept += s->cost[k * s->n_g + idx[k]];
    return kept;
}

static double alloc_kept2(const struct admm_alloc_search *s, const int *idx)
{
    double kept = 0.0;
    for (int k = 0; s->cost2 != NULL && k < s->n_t; k++)
        kept += s->cost2[k * s->n_g + idx[k]];
    return kept;
}

int admm_alloc_feasible(const struct admm_alloc_search *s, const int *idx)
{
    return admm_alloc_kept(s, idx) <= s->budget * (1.0 + 1e-9) &&
           (s->cost2 == NULL || alloc_kept2(s, idx) <= s->budget2 * (1.0 + 1e-9));
}

static double alloc_energy(const struct admm_alloc_search *s, const int *idx)
{
    double e = 0.0;
    for (int k = 0; k < s->n_t; k++)
        e += s->damage[k * s->n_g + idx[k]];
    /* Infeasible states are allowed during the walk but cost dearly. */
    const double over = admm_alloc_kept(s, idx) / s->budget - 1.0;
    e += over > 0.0 ? 100.0 * over : 0.0;
    if (s->cost2 != NULL) {
        const double over2 = alloc_kept2(s, idx) / s->budget2 - 1.0;
        e += over2 > 0.0 ? 100.0 * over2 : 0.0;
    }
    return e;
}

static uint64_t alloc_rand(uint64_t *st)
{
    uint64_t z = (*st += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static double alloc_unit(uint64_t *st)
{
    return (double)(alloc_rand(st) >> 11) * 0x1.0p-53;
}

void admm_alloc_anneal(const struct admm_alloc_search *s, int iters, uint64_t seed, int *best)
{
    int *cur = dp_calloc((size_t)s->n_t, sizeof(int));
    int *nxt = dp_calloc((size_t)s->n_t, sizeof(int));
    if (cur == NULL || nxt == NULL) {
        dp_free(cur);
        dp_free(nxt);
        return; /* best keeps the uniform start */
    }
    memcpy(cur, best, (size_t)s->n_t * sizeof(int));
    double e_cur = alloc_energy(s, cur), e_best = e_cur;
    int best_feasible = admm_alloc_feasible(s, cur);
    uint64_t rng = seed ^ 0xa11c0c8e5ULL;
    const double t0 = 0.05, t1 = 1e-5;
    for (int i = 0; i < iters; i++) {
        const double temp = t0 * pow(t1 / t0, (double)i / (double)(iters > 1 ? iters - 1 : 1));
        memcpy(nxt, cur, (size_t)s->n_t * sizeof(int));
        const int a = (int)(alloc_rand(&rng) % (uint64_t)s->n_t);
        const int up = alloc_rand(&rng) & 1;
        nxt[a] += up ? 1 : -1;
        if (s->n_t > 1 && (alloc_rand(&rng) & 1)) {
            int b = (int)(alloc_rand(&rng) % (uint64_t)(s->n_t - 1));
            b += b >= a;
            nxt[b] += up ? -1 : 1;
        }
        int ok = 1;
        for (int k = 0; k < s->n_t; k++)
            ok &= nxt[k] >= 0 && nxt[k] < s->n_g;
        if (!ok)
            continue;
        const double e = alloc_energy(s, nxt);
        if (e <= e_cur || alloc_unit(&rng) < exp(-(e - e_cur) / temp)) {
            memcpy(cur, nxt, (size_t)s->n_t * sizeof(int));
            e_cur = e;
            const int feas = admm_alloc_feasible(s, cur);
            if (feas && (!best_feasible || e < e_best)) {
                memcpy(best, cur, (size_t)s->n_t * sizeof(int));
                e_best = e;
                best_feasible = 1;
            }
        }
    }
    dp_free(cur);
    dp_free(nxt);
}

/*
 * Pruning a layer harder never counts as less damage: the search sees the
 * running maximum of the measured loss increase over increasing rate. Past
 * its breaking point a layer's measured loss wanders around the loss of
 * chance (lenet-300-100's 1,000-weight output layer measured 2.40 at 64x
 * and 1.97 at 256x), and such a dip both walls off the way back for a walk
 * of single grid steps and makes destroying the layer look cheap.
 */
static void alloc_envelope(struct admm_alloc_search *s)
{
    for (int k = 0; k < s->n_t; k++) {
        double *d = s->damage + (size_t)k * (size_t)s->n_g;
        for (int g = 1; g < s->n_g; g++)
            d[g] = d[g] > d[g - 1] ? d[g] : d[g - 1];
    }
}

/* Every target alone minimises damage + lam * (its share of the budget,
 * and of budget2 when set); ties go to the lower rate. */
static void alloc_pick(const struct admm_alloc_search *s, double lam, int *idx)
{
    for (int k = 0; k < s->n_t; k++) {
        double best = INFINITY;
        for (int g = 0; g < s->n_g; g++) {
            const size_t i = (size_t)k * (size_t)s->n_g + (size_t)g;
            double share = s->cost[i] / s->budget;
            if (s->cost2 != NULL)
                share += s->cost2[i] / s->budget2;
            const double v = s->damage[i] + lam * share;
            if (v < best) {
                best = v;
                idx[k] = g;
            }
        }
    }
}

/*
 * The Lagrangian choice: alloc_pick at the smallest multiplier whose
 * choice meets the budget(s), found by bisection on log lam. It is the
 * exact optimum whenever the budget falls on a vertex of the layers'
 * lower convex hulls of (cost, damage), and close otherwise, for any
 * number of layers; the walk starts from it. Returns 0 (idx untouched)
 * when even the largest multiplier is infeasible.
 */
static int alloc_lagrange(const struct admm_alloc_search *s, int *idx)
{
    int *try = dp_calloc((size_t)s->n_t, sizeof(int));
    if (try == NULL)
        return 0;
    double lo = -40.0, hi = 40.0; /* ln lam */
    alloc_pick(s, exp(hi), try);
    const int ok = admm_alloc_feasible(s, try);
    if (ok) {
        memcpy(idx, try, (size_t)s->n_t * sizeof(int));
        for (int i = 0; i < 100; i++) {
            const double mid = 0.5 * (lo + hi);
            alloc_pick(s, exp(mid), try);
            if (admm_alloc_feasible(s, try)) {
                hi = mid;
                memcpy(idx, try, (size_t)s->n_t * sizeof(int));
            } else {
                lo = mid;
            }
        }
    }
    dp_free(try);
    return ok;
}

/*
 * Exchange refinement of a feasible choice: for every pair of targets, the
 * best feasible pair of grid rates with the others held (every single move
 * included), repeated until no pair improves. The Lagrangian choice can
 * miss the optimum when the budget falls between hull vertices, and a walk
 * of single grid steps rarely crosses the wide trades (one layer many
 * steps down, another many up) that close that gap.
 */
static void alloc_exchange(const struct admm_alloc_search *s, int *idx)
{
    const int n = s->n_g;
    for (int pass = 0; pass < 100; pass++) {
        int improved = 0;
        for (int a = 0; a < s->n_t; a++) {
            for (int b = a + 1; b < s->n_t; b++) {
                const size_t ia = (size_t)a * (size_t)n, ib = (size_t)b * (size_t)n;
                double kept = admm_alloc_kept(s, idx) - s->cost[ia + idx[a]] - s->cost[ib + idx[b]];
                double kept2 = 0.0;
                if (s->cost2 != NULL)
                    kept2 = alloc_kept2(s, idx) - s->cost2[ia + idx[a]] - s->cost2[ib + idx[b]];
                double best = s->damage[ia + idx[a]] + s->damage[ib + idx[b]];
                int ba = idx[a], bb = idx[b];
                for (int ga = 0; ga < n; ga++) {
                    for (int gb = 0; gb < n; gb++) {
                        const double d = s->damage[ia + ga] + s->damage[ib + gb];
                        if (d >= best - 1e-12)
                            continue;
                        if (kept + s->cost[ia + ga] + s->cost[ib + gb] > s->budget * (1.0 + 1e-9))
                            continue;
                        if (s->cost2 != NULL && kept2 + s->cost2[ia + ga] + s->cost2[ib + gb] >
                                                    s->budget2 * (1.0 + 1e-9))
                            continue;
                        best = d;
                        ba = ga;
                        bb = gb;
                    }
                }
                if (ba != idx[a] || bb != idx[b]) {
                    idx[a] = ba;
                    idx[b] = bb;
                    improved = 1;
                }
            }
        }
        if (!improved)
            break;
    }
}

void admm_alloc_choose(struct admm_alloc_search *s, double target, int iters, uint64_t seed,
                       int *idx)
{
    alloc_envelope(s);
    /* The uniform allocation: the smallest grid rate >= target. */
    int g0 = 0;
    while (g0 < s->n_g - 1 && s->grid[g0] < target * (1.0 - 1e-9))
        g0++;
    for (int k = 0; k < s->n_t; k++)
        idx[k] = g0;
    int *lag = dp_calloc((size_t)s->n_t, sizeof(int));
    if (lag != NULL && alloc_lagrange(s, lag) &&
        (!admm_alloc_feasible(s, idx) || alloc_energy(s, lag) < alloc_energy(s, idx)))
        memcpy(idx, lag, (size_t)s->n_t * sizeof(int));
    dp_free(lag);
    if (admm_alloc_feasible(s, idx))
        alloc_exchange(s, idx);
    admm_alloc_anneal(s, iters, seed, idx);
}

/* Sensitivity of every target at every grid rate. */
static enum dp_err alloc_sensitivity(struct admm_ctx *c, const struct nn_dataset *sample,
                                     const float *mean, const float *std,
                                     struct admm_alloc_search *s, struct dp_errinfo *ei)
{
    double acc = 0.0, base = 0.0;
    enum dp_err err = nn_evaluate(c->m, sample, mean, std, c->spec->batch, &acc, &base, ei);
    size_t max_n = 1;
    for (int k = 0; k < c->n_t; k++)
        max_n = admm_numel(c, &c->t[k]) > max_n ? admm_numel(c, &c->t[k]) : max_n;
    float *keep = err ? NULL : dp_malloc(dp_size_mul(max_n, sizeof(float)));
    if (!err && keep == NULL)
        err = dp_errinfo_set(ei, DP_ENOMEM, "out of memory for the sensitivity analysis");
    for (int k = 0; !err && k < c->n_t; k++) {
        struct admm_target *t = &c->t[k];
        float *w = admm_w(c, t);
        const size_t n = admm_numel(c, t);
        memcpy(keep, w, n * sizeof(float));
        for (int g = 0; !err && g < s->n_g; g++) {
            struct admm_target probe = *t;
            probe.p.rate = s->grid[g];
            probe.conn_rate = 0.0;
            if (probe.rule->prune != NULL)
                admm_constraint_kernel(probe.rule->prune)(w, &probe.shape, &probe.p, c->scratch);
            double loss = 0.0;
            err = nn_evaluate(c->m, sample, mean, std, c->spec->batch, &acc, &loss, ei);
            s->damage[k * s->n_g + g] = loss - base;
            memcpy(w, keep, n * sizeof(float));
        }
    }
    dp_free(keep);
    return err;
}

/*
 * The kept cost of every target at every grid rate, its dense total and
 * the budget at `target`. params and flops: the layer's weights (times
 * its output positions) over the rate, budget total / target, so the
 * global rate is met exactly. latency: the device table's milliseconds of
 * the layer at the rate, budget what the uniform allocation at the target
 * would take on that device; the search then trades damage for time where
 * the device says time goes, not where the weights are.
 */
static enum dp_err alloc_costs(const struct admm_ctx *c, double target, struct admm_alloc_search *s,
                               double *total, struct dp_errinfo *ei)
{
    const struct dp_spec *sp = c->spec;
    *total = 0.0;
    if (sp->auto_objective == DP_SPEC_OBJ_LATENCY) {
        if (c->cb == NULL || c->cb->latency == NULL)
            return dp_errinfo_set(ei, DP_EINVAL,
                                  "spec.auto.objective \"latency\": the run has no latency table "
                                  "of the device (auto.device)");
        enum dp_err err = dp_lat_table_check(c->cb->latency, ei);
        s->budget = 0.0;
        for (int k = 0; !err && k < c->n_t; k++) {
            const char *name = c->m->layers[c->t[k].layer].name;
            double ms = 0.0;
            for (int g = 0; !err && g < s->n_g; g++)
                err =
                    dp_lat_table_ms(c->cb->latency, name, s->grid[g], &s->cost[k * s->n_g + g], ei);
            if (!err)
                err = dp_lat_table_ms(c->cb->latency, name, target, &ms, ei);
            s->budget += ms;
            *total += s->cost[k * s->n_g];
            /* The weight target stands too: auto.rate keeps its meaning,
             * the device decides only where the pruning goes. */
            const double dense = (double)admm_numel(c, &c->t[k]);
            for (int g = 0; g < s->n_g; g++)
                s->cost2[k * s->n_g + g] = dense / s->grid[g];
            s->budget2 += dense / target;
        }
        return err;
    }
    for (int k = 0; k < c->n_t; k++) {
        const struct dp_layer *l = &c->m->layers[c->t[k].layer];
        const double uses =
            sp->auto_objective == DP_SPEC_OBJ_FLOPS ? (double)l->out_h * l->out_w : 1;
        const double dense = (double)admm_numel(c, &c->t[k]) * uses;
        for (int g = 0; g < s->n_g; g++)
            s->cost[k * s->n_g + g] = dense / s->grid[g];
        *total += dense;
    }
    s->budget = *total / target;
    return DP_OK;
}

/* auto.allocation "global": the rates one magnitude threshold gives. */
static enum dp_err alloc_auto_global(struct admm_ctx *c, int stage, double target,
                                     struct dp_errinfo *ei)
{
    enum dp_err err = admm_alloc_global_rate(c, target, ei);
    if (err)
        return err;
    json_t *layers = json_array();
    for (int k = 0; k < c->n_t; k++)
        json_array_append_new(layers,
                              json_pack("{s:s, s:f}", "name", c->m->layers[c->t[k].layer].name,
                                        "rate", c->t[k].p.rate));
    json_decref(c->auto_info);
    c->auto_info = json_pack("{s:s, s:i, s:f, s:o}", "allocation", "global", "stage", stage + 1,
                             "target_rate", target, "layers", layers);
    return c->auto_info == NULL ? dp_errinfo_set(ei, DP_ENOMEM, "out of memory for the rate report")
                                : DP_OK;
}

/* auto.allocation "sensitivity": sets every target's p.rate. */
static enum dp_err alloc_auto_sensitivity(struct admm_ctx *c, int stage, double target,
                                          struct dp_errinfo *ei)
{
    const struct dp_spec *sp = c->spec;
    enum dp_err err = DP_OK;
    struct admm_alloc_search s;
    memset(&s, 0, sizeof(s));
    s.n_t = c->n_t;
    /* Rates 1, 1.5, 2, 3, 4, 6, ... (steps of about sqrt 2) up to well past
     * the final target, capped where a layer would keep a single weight;
     * every stage searches the same grid. */
    const double top = fmin(4096.0, fmax(8.0, 16.0 * sp->auto_rate));
    for (double r = 1.0; r <= top * 1.0001 && s.n_g < ALLOC_GRID_MAX; r *= 1.4142135623730951)
        s.grid[s.n_g++] = r;
    s.damage = dp_calloc((size_t)s.n_t * (size_t)s.n_g, sizeof(double));
    s.cost = dp_calloc((size_t)s.n_t * (size_t)s.n_g, sizeof(double));
    if (sp->auto_objective == DP_SPEC_OBJ_LATENCY)
        s.cost2 = dp_calloc((size_t)s.n_t * (size_t)s.n_g, sizeof(double));
    int *idx = dp_calloc((size_t)s.n_t, sizeof(int));
    double *measured = NULL;
    if (s.damage == NULL || s.cost == NULL || idx == NULL ||
        (sp->auto_objective == DP_SPEC_OBJ_LATENCY && s.cost2 == NULL)) {
        err = dp_errinfo_set(ei, DP_ENOMEM, "out of memory for the rate search");
        goto out;
    }
    double total = 0.0;
    err = alloc_costs(c, target, &s, &total, ei);
    if (err)
        goto out;
    /* The sensitivity is measured on validation images: a decision, so
     * never on the test split. */
    struct nn_dataset sample = *c->val;
    sample.n = c->val->n < sp->auto_eval_images ? c->val->n : sp->auto_eval_images;
    err = alloc_sensitivity(c, &sample, c->mean, c->std, &s, ei);
    if (err)
        goto out;
    /* The report gives the measured curves; the search sees their
     * envelope (admm_alloc_choose). */
    measured = dp_malloc(dp_size_mul((size_t)s.n_t * (size_t)s.n_g, sizeof(double)));
    if (measured == NULL) {
        err = dp_errinfo_set(ei, DP_ENOMEM, "out of memory for the rate search");
        goto out;
    }
    memcpy(measured, s.damage, (size_t)s.n_t * (size_t)s.n_g * sizeof(double));
    admm_alloc_choose(&s, target, sp->auto_search_iters, sp->seed + (uint64_t)(stage + 1), idx);
    json_t *layers = json_array();
    for (int k = 0; k < c->n_t; k++) {
        c->t[k].p.rate = s.grid[idx[k]];
        json_t *dmg = json_array();
        for (int g = 0; g < s.n_g; g++)
            json_array_append_new(dmg, json_real(measured[k * s.n_g + g]));
        json_array_append_new(layers,
                              json_pack("{s:s, s:f, s:o}", "name", c->m->layers[c->t[k].layer].name,
                                        "rate", s.grid[idx[k]], "loss_increase", dmg));
    }
    json_t *grid = json_array();
    for (int g = 0; g < s.n_g; g++)
        json_array_append_new(grid, json_real(s.grid[g]));
    json_decref(c->auto_info);
    /* achieved_rate stays the parameter (or FLOP) rate for every objective;
     * the latency one adds the device's predicted milliseconds. */
    double achieved = total / admm_alloc_kept(&s, idx);
    if (sp->auto_objective == DP_SPEC_OBJ_LATENCY) {
        double n_all = 0.0, kept = 0.0;
        for (int k = 0; k < c->n_t; k++) {
            n_all += (double)admm_numel(c, &c->t[k]);
            kept += (double)admm_numel(c, &c->t[k]) / s.grid[idx[k]];
        }
        achieved = n_all / kept;
    }
    c->auto_info =
        json_pack("{s:s, s:i, s:s, s:f, s:f, s:i, s:i, s:o, s:o}", "allocation", "sensitivity",
                  "stage", stage + 1, "objective", dp_spec_objective_name(sp->auto_objective),
                  "target_rate", target, "achieved_rate", achieved, "sample_images", sample.n,
                  "search_iters", sp->auto_search_iters, "grid", grid, "layers", layers);
    if (c->auto_info != NULL && sp->auto_objective == DP_SPEC_OBJ_LATENCY) {
        json_object_set_new(c->auto_info, "dense_ms", json_real(total));
        json_object_set_new(c->auto_info, "budget_ms", json_real(s.budget));
        json_object_set_new(c->auto_info, "predicted_ms", json_real(admm_alloc_kept(&s, idx)));
        json_object_set(c->auto_info, "device", json_object_get(c->cb->latency, "device"));
        /* Which table: device, when measured, its age, the task that built it. */
        json_object_set(c->auto_info, "table", json_object_get(c->cb->latency, "source"));
    }
    if (c->auto_info == NULL)
        err = dp_errinfo_set(ei, DP_ENOMEM, "out of memory for the rate report");
out:
    dp_free(measured);
    dp_free(s.damage);
    dp_free(s.cost);
    dp_free(s.cost2);
    dp_free(idx);
    return err;
}

enum dp_err admm_alloc_auto(struct admm_ctx *c, int stage, struct dp_errinfo *ei)
{
    const struct dp_spec *sp = c->spec;
    const double target =
        stage < 0 ? sp->auto_rate : pow(sp->auto_rate, (double)(stage + 1) / (double)sp->stages);
    enum dp_err err = sp->auto_alloc == DP_SPEC_AUTO_GLOBAL
                          ? alloc_auto_global(c, stage, target, ei)
                          : alloc_auto_sensitivity(c, stage, target, ei);
    for (int k = 0; !err && k < c->n_t; k++) {
        struct admm_target *t = &c->t[k];
        if (stage < 0)
            t->base_rate = t->p.rate;
        else
            t->stage_rate[stage] = t->p.rate;
        if (stage == c->spec->stages - 1)
            t->base_rate = t->p.rate;
    }
    return err;
}
