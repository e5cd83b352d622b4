/*
 * weights.bin (see cg_weights.h): a bounded, growable blob of 64-byte
 * aligned sections and the hash the generated loader checks.
 */
#include "worker/codegen/cg_weights.h"

#include <string.h>

#include "common/alloc.h"
#include "worker/codegen/cg_circ.h"
#include "worker/codegen/cg_fkw.h"
#include "worker/codegen/cg_quant.h"
#include "worker/codegen/cg_sched.h"
#include "worker/codegen/cg_sparse.h"

#define CG_ALIGN 64

/* Appends n bytes (a 64-byte aligned section) and returns its offset in *off. */
static enum dp_err cg_blob_add(struct cg_weights *w, const void *src, size_t n, size_t *off,
                               struct dp_errinfo *ei)
{
    const size_t start = (w->len + CG_ALIGN - 1) / CG_ALIGN * CG_ALIGN;
    if (n > CG_WEIGHTS_MAX || start + n > CG_WEIGHTS_MAX)
        return dp_errinfo_set(ei, DP_ETOOBIG, "the weights pass %zu bytes", CG_WEIGHTS_MAX);
    if (start + n > w->cap) {
        size_t cap = w->cap ? w->cap : 1 << 16;
        while (cap < start + n)
            cap *= 2;
        unsigned char *d = dp_realloc(w->data, cap);
        if (d == NULL)
            return dp_errinfo_set(ei, DP_ENOMEM, "out of memory for the weights");
        w->data = d;
        w->cap = cap;
    }
    memset(w->data + w->len, 0, start - w->len);
    if (n > 0)
        memcpy(w->data + start, src, n);
    w->len = start + n;
    *off = start;
    return DP_OK;
}

enum dp_err cg_weights_append(struct cg_weights *w, const void *src, size_t n, size_t *off,
                              struct dp_errinfo *ei)
{
    return cg_blob_add(w, src, n, off, ei);
}

static uint64_t cg_fnv1a(const unsigned char *p, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

static void cg_put_u32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static void cg_put_u64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

/*
 * A dense convolution of the panel kernel (cg_sched.h): groups of gw
 * output channels, each group (C, T, gw), so the K-loop reads one
 * contiguous run of a block's vectors per (channel, tap); output channels
 * past F are zero. The bias is padded to the groups too.
 */
static enum dp_err cg_weights_panel(const struct cg_step *s, int k, const char *name,
                                    struct cg_weights *out, struct cg_wsec *sec,
                                    struct dp_errinfo *ei)
{
    const struct cg_sched *sc = &s->sched;
    const size_t F = (size_t)s->g.F, C = (size_t)s->g.C, T = (size_t)s->g.kh * (size_t)s->g.kw;
    /* Groups of gw channels: every ISA path's blocks divide them (cg_sched.h). */
    const size_t W = (size_t)sc->gw, G = (F + W - 1) / W;
    const size_t n = dp_size_mul(dp_size_mul(G, C * T), W);
    float *w = dp_calloc(n, sizeof(float));
    float *b = dp_calloc(G * W, sizeof(float));
    uint32_t *ko = NULL;
    enum dp_err err = DP_OK;
    if (w == NULL || b == NULL) {
        err = dp_errinfo_set(ei, DP_ENOMEM, "out of memory packing weight panels");
        goto out;
    }
    for (size_t o = 0; o < F; o++) {
        const size_t grp = o / W, lane = o % W;
        for (size_t c = 0; c < C; c++)
            for (size_t t = 0; t < T; t++)
                w[((grp * C + c) * T + t) * W + lane] = s->w[(o * C + c) * T + t];
        b[o] = s->b[o];
    }
    /* The K-loop's input offset of (channel c, tap t) in the padded
     * polyphase input: c * cpl plus the tap's plane and shift. */
    const struct cg_geom *g = &s->g;
    const size_t PHq = (size_t)cg_sched_phq(g), PWq = (size_t)cg_sched_pwq(g);
    const size_t cpl = PHq * PWq * (size_t)g->sh * (size_t)g->sw;
    ko = dp_malloc(dp_size_mul(C * T, sizeof(uint32_t)));
    if (ko == NULL) {
        err = dp_errinfo_set(ei, DP_ENOMEM, "out of memory packing weight panels");
        goto out;
    }
    if (C * cpl > UINT32_MAX) {
        err = dp_errinfo_set(ei, DP_EUNSUPPORTED,
                             "layer '%s': its padded input passes 2^32 floats (32-bit offsets)",
                             name);
        goto out;
    }
    for (size_t c = 0; c < C; c++) {
        for (size_t t = 0; t < T; t++) {
            const size_t ky = t / (size_t)g->kw, kx = t % (size_t)g->kw;
            const size_t ph = (ky % (size_t)g->sh) * (size_t)g->sw + kx % (size_t)g->sw;
            ko[c * T + t] = (uint32_t)(c * cpl + ph * PHq * PWq + (ky / (size_t)g->sh) * PWq +
                                       kx / (size_t)g->sw);
        }
    }
    sec->n_w = n;
    /* Rows of a quantized array (cg_quant.h): the output channel of a lane. */
    const struct cg_qmap qm = {CG_QROW_PANEL, C * T * W, W, NULL, 0, G * W};
    err = cg_quant_add(out, k, w, n, &qm, &sec->w, ei);
    if (!err)
        err = cg_blob_add(out, b, G * W * sizeof(float), &sec->b, ei);
    if (!err)
        err = cg_blob_add(out, ko, C * T * sizeof(uint32_t), &sec->koff, ei);
out:
    dp_free(w);
    dp_free(b);
    dp_free(ko);
    return err;
}

static enum dp_err cg_weights_step(const struct cg_plan *p, int k, struct cg_weights *out,
                                   struct dp_errinfo *ei)
{
    const struct cg_step *s = &p->steps[k];
    struct cg_wsec *sec = &out->sec[k];
    enum dp_err err = DP_OK;
    const size_t F = (size_t)s->g.F;
    if (s->kind == CG_K_BN) {
        err = cg_blob_add(out, s->w, (size_t)s->g.C * sizeof(float), &sec->w, ei);
        if (!err)
            err = cg_blob_add(out, s->b, (size_t)s->g.C * sizeof(float), &sec->b, ei);
        return err;
    }
    if (s->kind == CG_K_CIRC_LINEAR || s->kind == CG_K_CIRC_CONV || s->kind == CG_K_LSTM ||
        s->kind == CG_K_GRU)
        return cg_circ_pack(p, k, out, ei);
    if (s->kind != CG_K_CONV && s->kind != CG_K_LINEAR)
        return DP_OK;
    if (s->fmt == CG_FMT_CSR || s->fmt == CG_FMT_BITMASK)
        return cg_sparse_pack(p, k, out, ei);
    if (s->kind == CG_K_CONV && s->sched.kern == CG_KERN_PANEL)
        return cg_weights_panel(s, k, p->m->layers[s->layer].name, out, sec, ei);
    if (s->fmt != CG_FMT_FKW) {
        sec->n_w = s->n_weights;
        const struct cg_qmap qm = {CG_QROW_DIV, s->n_weights / F, 0, NULL, 0, F};
        err = cg_quant_add(out, k, s->w, s->n_weights, &qm, &sec->w, ei);
        if (!err)
            err = cg_blob_add(out, s->b, F * sizeof(float), &sec->b, ei);
        return err;
    }
    struct cg_fkw f;
    err = cg_fkw_pack(s, p->m->layers[s->layer].name, &f, ei);
    if (err)
        return err;
    const size_t P1 = (size_t)s->n_patterns + 1;
    sec->n_w = f.woff[F];
    err = cg_blob_add(out, f.perm, F * sizeof(uint16_t), &sec->perm, ei);
    if (!err)
        err = cg_blob_add(out, f.kptr, (F + 1) * sizeof(uint32_t), &sec->kptr, ei);
    if (!err)
        err = cg_blob_add(out, f.prun, F * P1 * sizeof(uint16_t), &sec->prun, ei);
    if (!err)
        err = cg_blob_add(out, f.cin, f.n_kernels * sizeof(uint16_t), &sec->cin, ei);
    if (!err)
        err = cg_blob_add(out, f.woff, (F + 1) * sizeof(uint32_t), &sec->woff, ei);
    const struct cg_qmap qm = {CG_QROW_RUNS, 0, 0, f.woff, sec->woff, F};
    if (!err)
        err = cg_quant_add(out, k, f.w, (size_t)f.woff[F], &qm, &sec->w, ei);
    if (!err)
        err = cg_blob_add(out, f.bias, F * sizeof(float), &sec->b, ei);
    cg_fkw_free(&f);
    return err;
}

enum dp_err cg_weights_build(const struct cg_plan *p, int quantize, struct cg_weights *out,
                             struct dp_errinfo *ei)
{
    memset(out, 0, sizeof(*out));
    out->quantize = quantize;
    enum dp_err err = DP_OK;
    out->sec = dp_calloc((size_t)p->n_steps, sizeof(struct cg_wsec));
    if (out->sec == NULL) {
        err = dp_errinfo_set(ei, DP_ENOMEM, "out of memory for the weights");
        goto out;
    }
    unsigned char header[CG_WEIGHTS_HEADER] = {0};
    size_t off;
    err = cg_blob_add(out, header, sizeof(header), &off, ei);
    for (int k = 0; k < p->n_steps && !err; k++) {
        const size_t before = out->len;
        err = cg_weights_step(p, k, out, ei);
        out->sec[k].bytes = out->len - before;
    }
    if (err)
        goto out;
    cg_quant_finish(out);
    out->hash = cg_fnv1a(out->data + CG_WEIGHTS_HEADER, out->len - CG_WEIGHTS_HEADER);
    memcpy(out->data, CG_WEIGHTS_MAGIC, 8);
    cg_put_u32(out->data + 8, CG_WEIGHTS_VERSION);
    cg_put_u32(out->data + 12, CG_WEIGHTS_HEADER);
    cg_put_u64(out->data + 16, (uint64_t)out->len);
    cg_put_u64(out->data + 24, out->hash);
out:
    if (err)
        cg_weights_free(out);
    return err;
}

void cg_weights_free(struct cg_weights *w)
{
    if (w == NULL)
        return;
    dp_free(w->data);
    dp_free(w->sec);
    cg_quant_free(w);
    memset(w, 0, sizeof(*w));
}
