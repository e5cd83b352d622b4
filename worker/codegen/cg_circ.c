/*
 * Block-circulant and recurrent steps: figures, expansion and weights
 * (see cg_circ.h).
 */
#include "worker/codegen/cg_circ.h"

#include <math.h>
#include <string.h>

#include "common/alloc.h"
#include "worker/circulant/circ.h"

#define CG_CIRC_PI 3.14159265358979323846

int cg_circ_fft_ok(int k)
{
    return k >= 2 && k <= 4096 && (k & (k - 1)) == 0;
}

static int cg_log2(int m)
{
    int l = 0;
    while ((1 << l) < m)
        l++;
    return l;
}

long long cg_circ_rfft_flops(int k)
{
    const long long m = k / 2;
    return 5 * m * cg_log2((int)m) + 12 * (m + 1);
}

long long cg_circ_mv_flops(int rows, int cols, int k)
{
    const long long p = (rows + k - 1) / k, q = (cols + k - 1) / k, nb = k / 2 + 1;
    return (p + q) * cg_circ_rfft_flops(k) + p * q * 8 * nb;
}

/* The parameter `suffix` of layer i, NULL when absent. */
static const struct dp_param *cg_circ_param(const struct dp_model *m, int i, const char *suffix)
{
    const struct dp_layer *l = &m->layers[i];
    for (int k = 0; k < l->n_params; k++) {
        const struct dp_param *p = &m->params[l->first_param + k];
        const char *dot = strrchr(p->name, '.');
        if (dot != NULL && strcmp(dot + 1, suffix) == 0)
            return p;
    }
    return NULL;
}

static const float *cg_circ_data(const struct dp_model *m, int i, const char *suffix)
{
    const struct dp_param *p = cg_circ_param(m, i, suffix);
    return p != NULL ? dp_param_data(m, p) : NULL;
}

void cg_circ_expand(const struct dp_model *m, const struct cg_step *s, float *dense)
{
    const struct cg_geom *g = &s->g;
    const float *w = cg_circ_data(m, s->layer, "weight");
    struct circ_dims d;
    if (m->layers[s->layer].op == DP_OP_CIRC_LINEAR) {
        circ_dims_init(&d, g->F, g->C * g->H * g->W, s->block);
        circ_expand(dense, w, &d);
        return;
    }
    /* circ_conv2d: tap t's (F, C) matrix is w[t]; dense is (F, C, kh, kw). */
    const int T = g->kh * g->kw;
    circ_dims_init(&d, g->F, g->C, s->block);
    const size_t per_tap = circ_dims_numel(&d);
    for (int t = 0; t < T; t++) {
        for (int o = 0; o < g->F; o++) {
            for (int c = 0; c < g->C; c++) {
                const int i = o / d.k, r = o % d.k, j = c / d.k, sc = c % d.k;
                dense[((size_t)o * g->C + c) * T + t] =
                    w[(size_t)t * per_tap + ((size_t)i * d.q + j) * d.k +
                      (size_t)((r - sc + d.k) % d.k)];
            }
        }
    }
}

static size_t cg_count_nonzero(const float *w, size_t n)
{
    size_t nz = 0;
    for (size_t i = 0; i < n; i++)
        nz += w[i] != 0.0f;
    return nz;
}

/* Floats of scratch per thread a step may need (the runtime allocates it
 * per thread at model_create): 1 GiB. */
#define CG_CIRC_SCRATCH_MAX ((size_t)1 << 28)

enum dp_err cg_circ_step_init(const struct dp_model *m, struct cg_step *s, struct dp_errinfo *ei)
{
    const struct dp_layer *l = &m->layers[s->layer];
    const struct cg_geom *g = &s->g;
    const int k = s->block, fft = cg_circ_fft_ok(k);
    s->fmt = fft ? CG_FMT_CIRC : CG_FMT_DENSE;
    s->hidden = s->kind == CG_K_LSTM || s->kind == CG_K_GRU ? l->a.out_ch : 0;
    struct cg_circ_scr sc;
    cg_circ_scratch(s, &sc);
    if (sc.total > CG_CIRC_SCRATCH_MAX)
        return dp_errinfo_set(ei, DP_EUNSUPPORTED,
                              "layer '%s': its working arrays (%zu floats per thread) pass the "
                              "compiler's %zu",
                              l->name, sc.total, CG_CIRC_SCRATCH_MAX);
    if (s->kind == CG_K_CIRC_LINEAR || s->kind == CG_K_CIRC_CONV) {
        const struct dp_param *w = cg_circ_param(m, s->layer, "weight");
        const int conv = s->kind == CG_K_CIRC_CONV, T = conv ? g->kh * g->kw : 1;
        const int cols = conv ? g->C : g->C * g->H * g->W;
        const long long pix = conv ? (long long)g->OH * g->OW : 1;
        s->n_weights = w->numel;
        s->n_nonzero = cg_count_nonzero(dp_param_data(m, w), w->numel);
        s->n_kernels = s->n_kernels_kept = 0;
        s->macs_dense = (long long)g->F * cols * T * pix;
        if (conv) {
            const long long p = (g->F + k - 1) / k, q = (g->C + k - 1) / k, nb = k / 2 + 1;
            s->flops = (long long)g->H * g->W * q * cg_circ_rfft_flops(k) +
                       pix * (T * p * q * 8 * nb + p * cg_circ_rfft_flops(k) + g->F);
        } else {
            s->flops = cg_circ_mv_flops(g->F, cols, k) + g->F;
        }
        s->macs_nonzero = s->flops / 2;
        snprintf(s->why, sizeof(s->why),
                 "block-circulant, block %d: FFT kernel, %lld FLOPs against %lld dense", k,
                 s->flops, 2 * s->macs_dense);
        return DP_OK;
    }
    /* lstm, gru: input (1, T, F), output (1, T, H). */
    const int gates = s->kind == CG_K_LSTM ? 4 : 3, H = l->a.out_ch, Fin = g->W, T = g->H;
    const int G = gates * H;
    if (g->C != 1 || g->OW != H)
        return dp_errinfo_set(ei, DP_EUNSUPPORTED, "layer '%s': not a (1, T, F) sequence", l->name);
    s->hidden = H;
    const struct dp_param *wih = cg_circ_param(m, s->layer, "weight_ih");
    const struct dp_param *whh = cg_circ_param(m, s->layer, "weight_hh");
    s->n_weights = wih->numel + whh->numel;
    s->n_nonzero = cg_count_nonzero(dp_param_data(m, wih), wih->numel) +
                   cg_count_nonzero(dp_param_data(m, whh), whh->numel);
    s->macs_dense = (long long)T * G * (Fin + H);
    /* Per step: both products with their biases, and the cell (about 10
     * FLOPs per unit besides the exponentials). */
    const long long cell = 10LL * H + 2LL * G;
    if (fft)
        s->flops = (long long)T * (cg_circ_mv_flops(G, Fin, k) + cg_circ_mv_flops(G, H, k) + cell);
    else
        s->flops = 2 * s->macs_dense + (long long)T * cell;
    s->macs_nonzero = s->flops / 2;
    if (k > 0)
        snprintf(s->why, sizeof(s->why), "block-circulant matrices, block %d: %s", k,
                 fft ? "FFT kernel" : "not a power of two, expanded to dense rows");
    else
        snprintf(s->why, sizeof(s->why), "dense matrices");
    return DP_OK;
}

/* ---- Weights -------------------------------------------------------------- */

/*
 * The spectra of every block of w (p, q, k) as (p, q, 2, k/2 + 1): bin f
 * of block c is sum_t c[t] exp(-2 pi i f t / k) / k (the 1/k of the
 * inverse transform, which the runtime leaves unnormalised), in double.
 */
static void cg_circ_spectra(float *out, const float *w, size_t blocks, int k)
{
    const int nb = k / 2 + 1;
    for (size_t b = 0; b < blocks; b++) {
        const float *c = w + b * (size_t)k;
        float *re = out + b * 2 * (size_t)nb, *im = re + nb;
        for (int f = 0; f < nb; f++) {
            double sr = 0.0, si = 0.0;
            for (int t = 0; t < k; t++) {
                const double a = 2.0 * CG_CIRC_PI * (double)((long long)f * t % k) / (double)k;
                sr += (double)c[t] * cos(a);
                si -= (double)c[t] * sin(a);
            }
            re[f] = (float)(sr / k);
            im[f] = (float)(si / k);
        }
    }
}

/* The FFT tables of block k (rt_circ.c.in's struct cg_fft): floats twr,
 * twi (m/2 each), wr, wi (m + 1 each); uint32 rev (m). */
static enum dp_err cg_circ_tables(struct cg_weights *out, struct cg_wsec *sec, int k,
                                  struct dp_errinfo *ei)
{
    const int m = k / 2, h = m / 2, bits = cg_log2(m);
    float *tw = dp_malloc(dp_size_mul((size_t)(2 * h + 2 * (m + 1)), sizeof(float)));
    uint32_t *rev = dp_malloc(dp_size_mul((size_t)m, sizeof(uint32_t)));
    enum dp_err err = DP_OK;
    if (tw == NULL || rev == NULL) {
        err = dp_errinfo_set(ei, DP_ENOMEM, "out of memory for FFT tables");
        goto out;
    }
    for (int j = 0; j < h; j++) {
        tw[j] = (float)cos(2.0 * CG_CIRC_PI * j / m);
        tw[h + j] = (float)-sin(2.0 * CG_CIRC_PI * j / m);
    }
    for (int f = 0; f <= m; f++) {
        tw[2 * h + f] = (float)cos(2.0 * CG_CIRC_PI * f / k);
        tw[2 * h + m + 1 + f] = (float)-sin(2.0 * CG_CIRC_PI * f / k);
    }
    for (int t = 0; t < m; t++) {
        uint32_t r = 0;
        for (int b = 0; b < bits; b++)
            r |= (uint32_t)((t >> b) & 1) << (bits - 1 - b);
        rev[t] = r;
    }
    err = cg_weights_append(out, tw, (size_t)(2 * h + 2 * (m + 1)) * sizeof(float), &sec->tw, ei);
    if (!err)
        err = cg_weights_append(out, rev, (size_t)m * sizeof(uint32_t), &sec->rev, ei);
out:
    dp_free(tw);
    dp_free(rev);
    return err;
}

/* Appends a matrix rows x cols stored as w (dense (rows, cols) when k is
 * 0, else circulant vectors (p, q, k)) in the form the kernel reads:
 * spectra for an FFT block, dense rows otherwise (expanded). */
static enum dp_err cg_circ_matrix(struct cg_weights *out, const float *w, int rows, int cols, int k,
                                  size_t *off, struct dp_errinfo *ei)
{
    float *buf = NULL;
    size_t n;
    if (k == 0) {
        n = (size_t)rows * (size_t)cols;
        return cg_weights_append(out, w, n * sizeof(float), off, ei);
    }
    struct circ_dims d;
    circ_dims_init(&d, rows, cols, k);
    if (cg_circ_fft_ok(k)) {
        n = dp_size_mul((size_t)d.p * (size_t)d.q, (size_t)2 * (size_t)(k / 2 + 1));
        buf = dp_malloc(dp_size_mul(n, sizeof(float)));
        if (buf != NULL)
            cg_circ_spectra(buf, w, (size_t)d.p * (size_t)d.q, k);
    } else {
        n = dp_size_mul((size_t)rows, (size_t)cols);
        buf = dp_malloc(dp_size_mul(n, sizeof(float)));
        if (buf != NULL)
            circ_expand(buf, w, &d);
    }
    if (buf == NULL)
        return dp_errinfo_set(ei, DP_ENOMEM, "out of memory for circulant weights");
    enum dp_err err = cg_weights_append(out, buf, n * sizeof(float), off, ei);
    dp_free(buf);
    return err;
}

enum dp_err cg_circ_pack(const struct cg_plan *p, int k, struct cg_weights *out,
                         struct dp_errinfo *ei)
{
    const struct cg_step *s = &p->steps[k];
    const struct dp_model *m = p->m;
    const struct cg_geom *g = &s->g;
    struct cg_wsec *sec = &out->sec[k];
    const int blk = s->block, fft = cg_circ_fft_ok(blk);
    enum dp_err err = DP_OK;
    if (fft) {
        err = cg_circ_tables(out, sec, blk, ei);
        if (err)
            return err;
    }
    if (s->kind == CG_K_CIRC_LINEAR || s->kind == CG_K_CIRC_CONV) {
        const float *w = cg_circ_data(m, s->layer, "weight");
        const int T = s->kind == CG_K_CIRC_CONV ? g->kh * g->kw : 1;
        const int cols = s->kind == CG_K_CIRC_CONV ? g->C : g->C * g->H * g->W;
        struct circ_dims d;
        circ_dims_init(&d, g->F, cols, blk);
        const size_t per_tap = (size_t)d.p * (size_t)d.q * (size_t)(2 * (blk / 2 + 1));
        float *spec = dp_malloc(dp_size_mul(per_tap * (size_t)T, sizeof(float)));
        float *bias = dp_calloc((size_t)g->F, sizeof(float));
        if (spec == NULL || bias == NULL) {
            err = dp_errinfo_set(ei, DP_ENOMEM, "out of memory for circulant weights");
        } else {
            for (int t = 0; t < T; t++)
                cg_circ_spectra(spec + (size_t)t * per_tap, w + (size_t)t * circ_dims_numel(&d),
                                (size_t)d.p * (size_t)d.q, blk);
            const float *b =
                m->layers[s->layer].a.has_bias ? cg_circ_data(m, s->layer, "bias") : NULL;
            if (b != NULL)
                memcpy(bias, b, (size_t)g->F * sizeof(float));
            sec->n_w = per_tap * (size_t)T;
            err = cg_weights_append(out, spec, sec->n_w * sizeof(float), &sec->w, ei);
            if (!err)
                err = cg_weights_append(out, bias, (size_t)g->F * sizeof(float), &sec->b, ei);
        }
        dp_free(spec);
        dp_free(bias);
        return err;
    }
    /* lstm, gru */
    const int G = (s->kind == CG_K_LSTM ? 4 : 3) * s->hidden;
    err = cg_circ_matrix(out, cg_circ_data(m, s->layer, "weight_ih"), G, g->W, blk, &sec->w, ei);
    if (!err)
        err = cg_circ_matrix(out, cg_circ_data(m, s->layer, "weight_hh"), G, s->hidden, blk,
                             &sec->w2, ei);
    if (!err)
        err = cg_weights_append(out, cg_circ_data(m, s->layer, "bias_ih"),
                                (size_t)G * sizeof(float), &sec->b, ei);
    if (!err)
        err = cg_weights_append(out, cg_circ_data(m, s->layer, "bias_hh"),
                                (size_t)G * sizeof(float), &sec->b2, ei);
    return err;
}

/* ---- Scratch -------------------------------------------------------------- */

static size_t cg_round16(size_t n)
{
    return (n + 15) / 16 * 16;
}

void cg_circ_scratch(const struct cg_step *s, struct cg_circ_scr *o)
{
    const struct cg_geom *g = &s->g;
    const int k = s->block, fft = cg_circ_fft_ok(k);
    const size_t blk = fft ? (size_t)2 * (size_t)(k / 2 + 1) : 0;
    const size_t tmp = fft ? (size_t)(4 * k + 8) : 0;
    memset(o, 0, sizeof(*o));
    size_t at = 0;
    if (s->kind == CG_K_CIRC_LINEAR || s->kind == CG_K_CIRC_CONV) {
        const size_t q =
            (size_t)((s->kind == CG_K_CIRC_CONV ? g->C : g->C * g->H * g->W) + k - 1) / (size_t)k;
        const size_t pos = s->kind == CG_K_CIRC_CONV ? (size_t)g->H * (size_t)g->W : 1;
        o->xs1 = 0;
        at = cg_round16(pos * q * blk);
    } else if (s->kind == CG_K_LSTM || s->kind == CG_K_GRU) {
        const size_t H = (size_t)s->hidden, G = (s->kind == CG_K_LSTM ? 4 : 3) * H;
        o->c = 0;
        o->gx = cg_round16(H);
        o->gh = o->gx + cg_round16(G);
        at = o->gh + cg_round16(G);
        if (fft) {
            o->xs1 = at;
            at += cg_round16((size_t)(g->W + k - 1) / (size_t)k * blk);
            o->xs2 = at;
            at += cg_round16((H + (size_t)k - 1) / (size_t)k * blk);
        }
    } else {
        return;
    }
    o->tmp = at;
    o->total = at + tmp;
}
