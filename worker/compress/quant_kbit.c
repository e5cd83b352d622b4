/*
 * k-bit uniform quantization (proj.h quant_kbit): every entry becomes
 * a*clip(round(z/a), -M, M), M = 2^(bits-1) - 1, rounding half away from
 * zero, with one scale a per layer or per output channel chosen to minimise
 * the squared error ||z - Q(z)||^2 (dossier section 3.4).
 *
 * DESIGN
 *
 * Only the non-zero magnitudes x matter (0 maps to 0 at any scale), so they
 * are radix-sorted into the group's scratch slice together with their
 * suffix sums (12 bytes per entry). With those, the assignment statistics
 * at any scale a,
 *     S1(a) = sum x*q(x),  S2(a) = sum q(x)^2,   q(x) = min(M, round(x/a)),
 * cost M binary searches: q(x) >= k exactly when x >= (k - 0.5)*a, so
 * S1 = sum_k (sum of x >= (k-0.5)a) and S2 = sum_k (2k-1)*#(x >= (k-0.5)a).
 * The error is E(a) = sum x^2 + D(a) with D(a) = a*(a*S2 - 2*S1).
 *
 * E is piecewise quadratic in a: the assignment changes only at the events
 * a = x/(k + 0.5). Over the search interval [max/(M+0.5)*0.5, max/M*1.5]
 * the search is exact where affordable: a sweep visits every event in
 * order of a (a heap merges the M per-level event streams, each already
 * sorted), keeps S1 and S2 current, and takes each piece's own optimum
 * S1/S2 clamped to the piece. That is finer than the golden-section search
 * the dossier suggests and, up to the float rounding of the outputs, never
 * worse than any scan of the interval. When the interval holds more than
 * KBIT_EVENTS_MAX events (large groups), a scan of evenly spaced scales
 * (KBIT_GRID_MIN to KBIT_GRID_MAX of them) picks the KBIT_WINDOWS best grid
 * cells and the sweep runs exactly inside those: E is smooth at the grid's
 * scale for such groups, so this finds the optimum in practice, though it
 * is no longer a proof. Then from every candidate the alternation
 * Q <- round(x/a), a <- <x,Q>/<Q,Q> runs at least KBIT_ALTERNATIONS_MIN
 * times (until the assignment stops changing, at most
 * KBIT_ALTERNATIONS_MAX), keeping the best a seen.
 *
 * Candidates are kept while their D is within 64 ulps of sum x^2 of the
 * best (several scales can fit a group exactly, e.g. one of few distinct
 * magnitudes). Each is rounded to float and tried with its two float
 * neighbours either side by the true error of the float outputs; the least
 * error wins, ties to the smaller a. On a group that is already quantized
 * with scale a0 the sweep finds the zero-error piece of a0, whose optimum
 * S1/S2 is within an ulp of a0, so the float search lands on a scale that
 * reproduces every entry bit for bit: the projection is idempotent.
 *
 * Everything is a function of the sorted magnitudes, visited in a fixed
 * order: the result is deterministic and does not depend on thread count.
 * A group holding a NaN or an infinity is left as it is (quant_int.h).
 */
#include "worker/compress/proj.h"

#include <float.h>
#include <math.h>
#include <string.h>

#include "common/assert.h"
#include "worker/compress/quant_int.h"

#define KBIT_CANDS_MAX        256
#define KBIT_EVENTS_MAX       ((size_t)1 << 16)
#define KBIT_GRID_MIN         256
#define KBIT_GRID_MAX         4096
#define KBIT_WINDOWS          4
#define KBIT_ALTERNATIONS_MIN 3
#define KBIT_ALTERNATIONS_MAX 32
#define KBIT_FLOAT_NEIGHBOURS 2
#define KBIT_SCRATCH_PER_ELEM (sizeof(double) + sizeof(float))

/* One group's sorted data. */
struct kbit_data {
    const float *x;    /* n non-zero magnitudes, ascending */
    const double *suf; /* suf[j] = x[j] + ... + x[n-1] */
    size_t n;
    int m;        /* M: the largest level index */
    double sumsq; /* sum of x^2 */
};

struct kbit_stats {
    double s1, s2; /* sum x*q and sum q^2 (an integer, exact in double) */
};

/* Scales whose D is within tol of the best seen. */
struct kbit_cands {
    int n;
    double best; /* least D seen */
    double tol;
    double a[KBIT_CANDS_MAX];
    double d[KBIT_CANDS_MAX];
};

/* Neumaier's compensated sum, so that long event sweeps do not drift. */
struct kbit_sum {
    double s, c;
};

struct kbit_event {
    double key; /* the scale at which x[j] leaves level k+1 for level k */
    size_t j;   /* current element of this level's stream */
    size_t end; /* one past the stream's last element */
    int k;
};

/* ---- Helpers -------------------------------------------------------------- */

static void sum_add(struct kbit_sum *s, double v)
{
    double t = s->s + v;

    if (fabs(s->s) >= fabs(v))
        s->c += (s->s - t) + v;
    else
        s->c += (v - t) + s->s;
    s->s = t;
}

static double sum_value(const struct kbit_sum *s)
{
    return s->s + s->c;
}

/* First j in [from, n) with x[j] >= v, or n. */
static size_t lower_bound(const float *x, size_t from, size_t n, double v)
{
    size_t lo = from, hi = n;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if ((double)x[mid] < v)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static struct kbit_stats stats_at(const struct kbit_data *d, double a)
{
    struct kbit_sum s1 = {0.0, 0.0};
    double s2 = 0.0;
    size_t from = 0;

    for (int k = 1; k <= d->m; k++) {
        size_t j = lower_bound(d->x, from, d->n, (k - 0.5) * a);
        if (j == d->n)
            break;
        sum_add(&s1, d->suf[j]);
        s2 += (double)(2 * k - 1) * (double)(d->n - j);
        from = j;
    }
    struct kbit_stats st = {sum_value(&s1), s2};
    return st;
}

/* First j in [from, n) with x[j] >= v, or n, by galloping from `from`: cheap for nearby v. */
static size_t gallop(const float *x, size_t from, size_t n, double v)
{
    size_t lo = from, hi = from, step = 1;

    while (hi < n && (double)x[hi] < v) {
        lo = hi + 1;
        hi = lo + step;
        step *= 2;
    }
    return lower_bound(x, lo, hi < n ? hi : n, v);
}

/*
 * stats_at for an increasing sequence of scales: idx[k-1] holds the level-k
 * boundary index of the previous scale (0 at first), so each boundary
 * gallops forward from where it was.
 */
static struct kbit_stats stats_walk(const struct kbit_data *d, double a, size_t *idx)
{
    struct kbit_sum s1 = {0.0, 0.0};
    double s2 = 0.0;

    for (int k = 1; k <= d->m; k++) {
        size_t j = gallop(d->x, idx[k - 1], d->n, (k - 0.5) * a);
        idx[k - 1] = j;
        if (j == d->n)
            break;
        sum_add(&s1, d->suf[j]);
        s2 += (double)(2 * k - 1) * (double)(d->n - j);
    }
    struct kbit_stats st = {sum_value(&s1), s2};
    return st;
}

/* D(a) = E(a) - sum x^2 for the assignment st (made at a, or any a of its piece). */
static double d_of(double a, double s1, double s2)
{
    return a * (a * s2 - 2.0 * s1);
}

static void cands_add(struct kbit_cands *c, double a, double d)
{
    if (!(d <= c->best + c->tol) || !(a > 0.0))
        return;
    if (d < c->best) {
        int w = 0;
        c->best = d;
        for (int r = 0; r < c->n; r++) {
            if (c->d[r] <= d + c->tol) {
                c->a[w] = c->a[r];
                c->d[w] = c->d[r];
                w++;
            }
        }
        c->n = w;
    }
    for (int r = 0; r < c->n; r++) {
        if (c->a[r] == a) {
            if (d < c->d[r])
                c->d[r] = d;
            return;
        }
    }
    if (c->n < KBIT_CANDS_MAX) {
        c->a[c->n] = a;
        c->d[c->n] = d;
        c->n++;
    }
}

/* The float output magnitude of x >= 0 at scale a: a * min(M, round(x/a)). */
static float kbit_level(float x, float a, int m)
{
    double q = round((double)x / (double)a);

    if (q > m)
        q = m;
    return (float)((double)a * q);
}

/* True squared error of the float outputs at scale a; stops early past limit. */
static double kbit_error(const struct kbit_data *d, float a, double limit)
{
    double err = 0.0;

    for (size_t j = 0; j < d->n; j++) {
        double e = (double)d->x[j] - (double)kbit_level(d->x[j], a, d->m);
        err += e * e;
        if (err > limit)
            return err;
    }
    return err;
}

/* ---- Exact sweep over [wa, wb] --------------------------------------------- */

static int event_before(const struct kbit_event *p, const struct kbit_event *q)
{
    return p->key < q->key || (p->key == q->key && p->k < q->k);
}

static void heap_down(struct kbit_event *h, int n, int r)
{
    for (;;) {
        int c = 2 * r + 1;
        if (c >= n)
            return;
        if (c + 1 < n && event_before(&h[c + 1], &h[c]))
            c++;
        if (!event_before(&h[c], &h[r]))
            return;
        struct kbit_event t = h[r];
        h[r] = h[c];
        h[c] = t;
        r = c;
    }
}

/* Events with a in [wa, wb): x in [(k+0.5)wa, (k+0.5)wb) for some level k < M. */
static size_t count_events(const struct kbit_data *d, double wa, double wb)
{
    size_t n_ev = 0;

    for (int k = 0; k < d->m; k++) {
        size_t j0 = lower_bound(d->x, 0, d->n, (k + 0.5) * wa);
        n_ev += lower_bound(d->x, j0, d->n, (k + 0.5) * wb) - j0;
    }
    return n_ev;
}

/* Offers the optimum of the piece [lo, hi], where the assignment gives s1, s2. */
static void piece_offer(struct kbit_cands *c, double lo, double hi, double s1, double s2)
{
    if (!(s2 > 0.0))
        return;
    double a = s1 / s2;
    if (a < lo)
        a = lo;
    if (a > hi)
        a = hi;
    cands_add(c, a, d_of(a, s1, s2));
}

/*
 * Visits every piece of E on [wa, wb] in increasing a. Going up past the
 * event x/(k+0.5), x drops from level k+1 to level k: S1 -= x, S2 -= 2k+1.
 */
static void sweep(const struct kbit_data *d, double wa, double wb, struct kbit_cands *c)
{
    struct kbit_event heap[128];
    int n_heap = 0;

    DP_ASSERT(d->m <= 128);
    for (int k = 0; k < d->m; k++) {
        size_t j0 = lower_bound(d->x, 0, d->n, (k + 0.5) * wa);
        size_t j1 = lower_bound(d->x, j0, d->n, (k + 0.5) * wb);
        if (j0 < j1) {
            struct kbit_event ev = {(double)d->x[j0] / (k + 0.5), j0, j1, k};
            heap[n_heap++] = ev;
        }
    }
    for (int r = n_heap / 2; r-- > 0;)
        heap_down(heap, n_heap, r);

    struct kbit_stats st = stats_at(d, wa);
    struct kbit_sum s1 = {st.s1, 0.0};
    double s2 = st.s2;
    double prev = wa;
    while (n_heap > 0) {
        struct kbit_event *ev = &heap[0];
        double at = ev->key;
        if (at < prev)
            at = prev;
        if (at > wb)
            at = wb;
        piece_offer(c, prev, at, sum_value(&s1), s2);
        sum_add(&s1, -(double)d->x[ev->j]);
        s2 -= (double)(2 * ev->k + 1);
        prev = at;
        ev->j++;
        if (ev->j < ev->end) {
            ev->key = (double)d->x[ev->j] / (ev->k + 0.5);
        } else {
            heap[0] = heap[--n_heap];
        }
        heap_down(heap, n_heap, 0);
    }
    piece_offer(c, prev, wb, sum_value(&s1), s2);
}

/* ---- Search ---------------------------------------------------------------- */

/*
 * Large groups: exact sweeps around the KBIT_WINDOWS best of n_grid evenly
 * spaced scales. n_grid ~ sqrt(events / 4) balances the grid (M galloping
 * searches per point) against the sweeps (events * 2 * KBIT_WINDOWS / n_grid
 * heap steps).
 */
static void grid_search(const struct kbit_data *d, double lo, double hi, size_t n_events,
                        struct kbit_cands *c)
{
    int best_i[KBIT_WINDOWS];
    double best_d[KBIT_WINDOWS];
    size_t idx[128];
    int n_best = 0;
    double g = sqrt((double)n_events / 4.0);
    int n_grid = g < KBIT_GRID_MIN ? KBIT_GRID_MIN : g > KBIT_GRID_MAX ? KBIT_GRID_MAX : (int)g;
    double step = (hi - lo) / (n_grid - 1);

    DP_ASSERT(d->m <= 128);
    memset(idx, 0, sizeof idx);
    for (int i = 0; i < n_grid; i++) {
        double a = lo + step * i;
        struct kbit_stats st = stats_walk(d, a, idx);
        double dv = d_of(a, st.s1, st.s2);
        int pos = n_best;
        while (pos > 0 && dv < best_d[pos - 1])
            pos--;
        if (pos >= KBIT_WINDOWS)
            continue;
        if (n_best < KBIT_WINDOWS)
            n_best++;
        for (int r = n_best - 1; r > pos; r--) {
            best_i[r] = best_i[r - 1];
            best_d[r] = best_d[r - 1];
        }
        best_i[pos] = i;
        best_d[pos] = dv;
    }
    for (int r = 0; r < n_best; r++) {
        int i0 = best_i[r] > 0 ? best_i[r] - 1 : 0;
        int i1 = best_i[r] < n_grid - 1 ? best_i[r] + 1 : n_grid - 1;
        sweep(d, lo + step * i0, i1 == n_grid - 1 ? hi : lo + step * i1, c);
    }
}

/* Alternation from every current candidate; the scales reached join the candidates. */
static void alternate(const struct kbit_data *d, struct kbit_cands *c)
{
    double start[KBIT_CANDS_MAX];
    int n_start = c->n;

    memcpy(start, c->a, (size_t)n_start * sizeof start[0]);
    for (int r = 0; r < n_start; r++) {
        struct kbit_stats st = stats_at(d, start[r]);
        for (int it = 0; it < KBIT_ALTERNATIONS_MAX; it++) {
            if (!(st.s2 > 0.0))
                break;
            double a = st.s1 / st.s2;
            struct kbit_stats next = stats_at(d, a);
            cands_add(c, a, d_of(a, next.s1, next.s2));
            int same = next.s1 == st.s1 && next.s2 == st.s2;
            st = next;
            if (same && it + 1 >= KBIT_ALTERNATIONS_MIN)
                break;
        }
    }
}

/*
 * The float scale with the least true error among the candidates rounded to
 * float and their KBIT_FLOAT_NEIGHBOURS neighbours either side (each float
 * tried once; close candidates share most of them). Ties go to the smaller
 * scale; an exact fit ends the search.
 */
static float pick_float(const struct kbit_data *d, const struct kbit_cands *c, double fallback)
{
    float tried[KBIT_CANDS_MAX * (2 * KBIT_FLOAT_NEIGHBOURS + 1)];
    int n_tried = 0;
    float best_a = 0.0f;
    double best_err = INFINITY;

    for (int r = 0; r < c->n; r++) {
        float a = (float)c->a[r];
        for (int s = 0; s < KBIT_FLOAT_NEIGHBOURS; s++)
            a = nextafterf(a, 0.0f);
        for (int s = 0; s <= 2 * KBIT_FLOAT_NEIGHBOURS; s++, a = nextafterf(a, INFINITY)) {
            if (!(a > 0.0f) || !(a <= FLT_MAX))
                continue;
            int seen = 0;
            for (int t = 0; t < n_tried && !seen; t++)
                seen = tried[t] == a;
            if (seen)
                continue;
            tried[n_tried++] = a;
            double err = kbit_error(d, a, best_err);
            if (err < best_err || (err == best_err && a < best_a)) {
                best_err = err;
                best_a = a;
            }
            if (best_err == 0.0)
                return best_a; /* exact: the outputs are the inputs */
        }
    }
    return best_a > 0.0f ? best_a : (float)fallback;
}

static void kbit_group(float *z, size_t len, int m, void *scratch)
{
    double *suf = scratch;           /* len doubles */
    float *x = (float *)(suf + len); /* len floats */
    float *tmp = (float *)scratch;   /* sort buffer, overwritten by suf */

    if (!quant__all_finite(z, len))
        return;
    size_t n = quant__gather_abs(x, z, len);
    if (n == 0)
        return;
    quant__sort_abs(x, tmp, n);

    struct kbit_sum acc = {0.0, 0.0};
    double sumsq = 0.0;
    for (size_t j = n; j-- > 0;) {
        sum_add(&acc, (double)x[j]);
        suf[j] = sum_value(&acc);
        sumsq += (double)x[j] * (double)x[j];
    }

    struct kbit_data d = {x, suf, n, m, sumsq};
    double xmax = x[n - 1];
    double lo = xmax / (m + 0.5) * 0.5;
    double hi = xmax / m * 1.5;
    struct kbit_cands c;
    c.n = 0;
    c.best = INFINITY;
    c.tol = 64.0 * DBL_EPSILON * sumsq;

    size_t n_events = count_events(&d, lo, hi);
    if (n_events <= KBIT_EVENTS_MAX)
        sweep(&d, lo, hi, &c);
    else
        grid_search(&d, lo, hi, n_events, &c);
    alternate(&d, &c);

    float a = pick_float(&d, &c, fmin(hi, (double)FLT_MAX));
    for (size_t j = 0; j < len; j++) {
        if (z[j] == 0.0f)
            continue;
        float lv = kbit_level(fabsf(z[j]), a, m);
        z[j] = lv == 0.0f ? 0.0f : copysignf(lv, z[j]);
    }
}

void quant_kbit(float *z, const struct proj_shape *s, const struct proj_params *p, void *scratch)
{
    struct quant__groups g;

    DP_ASSERT(p->bits >= 2 && p->bits <= 8);
    DP_ASSERT(scratch != NULL);
    int m = (1 << (p->bits - 1)) - 1;
    quant__groups_get(&g, s, p, KBIT_SCRATCH_PER_ELEM);
#pragma omp parallel for schedule(dynamic, 1) if (g.n > 1 && (size_t)g.n * g.len >= 4096)
    for (int64_t r = 0; r < g.n; r++)
        kbit_group(z + (size_t)r * g.len, g.len, m, (char *)scratch + (size_t)r * g.stride);
}
