/*
 * Irregular layers (see cg_sparse.h): the measured break-even, CSR and
 * bitmask packing, storage accounting and formats.json.
 */
#include "worker/codegen/cg_sparse.h"

#include <string.h>

#include "common/alloc.h"
#include "worker/codegen/cg_quant.h"
#include "worker/codegen/cg_sched.h"

/*
 * The measured break-even densities (non-zero weights / weights) per
 * target kind and layer kind: `make bench-compile` (tests/bench/
 * compile_sweep.py) times the generated dense, CSR and bitmask kernels
 * of every conv and linear layer of lenet5, resnet20-cifar and
 * vgg16-cifar at densities 0.02 to 0.7 and prints, per kind, the largest
 * density where CSR still beats bitmask and where the better sparse
 * format still beats dense, over the MACs of all layers of that kind
 * (docs/benchmarks.md, "Irregular break-even", has the run these come
 * from). Remeasure on a new machine kind and change them here.
 */
struct cg_breakeven {
    int vector;        /* 1: native target (vectors), 0: portable (plain arrays) */
    enum cg_kind kind; /* CG_K_CONV or CG_K_LINEAR */
    double csr_max;    /* CSR at or below this density */
    double sparse_max; /* bitmask up to this; dense above */
};

/* Measured 2026-12-02 (docs/benchmarks.md): 1 thread, AVX-512 (native) on
 * the shared 2-core build machine, densities 0.03 to 0.6. CSR was faster
 * than bitmask at every density on the native target (csr_max 0.60: the
 * largest density measured), so auto never picks bitmask there. */
static const struct cg_breakeven cg_breakevens[] = {
    {1, CG_K_CONV, 0.60, 0.29},
    {1, CG_K_LINEAR, 0.60, 0.38},
    {0, CG_K_CONV, 0.43, 0.46},
    {0, CG_K_LINEAR, 0.33, 0.60},
};

static const struct cg_breakeven *cg_breakeven_of(int vl, enum cg_kind kind)
{
    for (size_t i = 0; i < sizeof(cg_breakevens) / sizeof(cg_breakevens[0]); i++)
        if (cg_breakevens[i].vector == (vl > 0) && cg_breakevens[i].kind == kind)
            return &cg_breakevens[i];
    return NULL;
}

int cg_sparse_mode_parse(const char *s)
{
    static const char *const names[] = {"auto", "dense", "csr", "bitmask"};
    for (int i = 0; i < 4; i++)
        if (s != NULL && strcmp(s, names[i]) == 0)
            return i;
    return -1;
}

static double cg_density(const struct cg_step *s)
{
    return s->n_weights > 0 ? (double)s->n_nonzero / (double)s->n_weights : 1.0;
}

void cg_sparse_choose(struct cg_plan *p, int vl, enum cg_sparse_mode mode)
{
    for (int k = 0; k < p->n_steps; k++) {
        struct cg_step *s = &p->steps[k];
        if (s->kind != CG_K_CONV && s->kind != CG_K_LINEAR)
            continue;
        const double d = cg_density(s);
        if (s->fmt == CG_FMT_FKW) {
            snprintf(s->why, sizeof(s->why),
                     "pattern + connectivity: %d kernel patterns, density %.3f", s->n_patterns, d);
            continue;
        }
        if (mode != CG_SPARSE_AUTO) {
            s->fmt = mode == CG_SPARSE_CSR       ? CG_FMT_CSR
                     : mode == CG_SPARSE_BITMASK ? CG_FMT_BITMASK
                     : d < CG_IRREG_DENSITY      ? CG_FMT_IRREGULAR
                                                 : CG_FMT_DENSE;
            snprintf(s->why, sizeof(s->why), "forced by --sparse (density %.3f)", d);
            continue;
        }
        const struct cg_breakeven *be = cg_breakeven_of(vl, s->kind);
        if (d >= 1.0 || be == NULL) {
            snprintf(s->why, sizeof(s->why), "no zero weights");
            continue;
        }
        const char *tg = vl > 0 ? "native" : "portable", *kn = cg_kind_name(s->kind);
        if (d > be->sparse_max) {
            snprintf(s->why, sizeof(s->why),
                     "density %.3f > %.2f, the measured sparse/dense break-even (%s %s): dense "
                     "is faster",
                     d, be->sparse_max, tg, kn);
        } else if (d <= be->csr_max) {
            s->fmt = CG_FMT_CSR;
            snprintf(s->why, sizeof(s->why),
                     "density %.3f <= %.2f, the measured sparse/dense break-even, and <= %.2f, "
                     "the CSR/bitmask one (%s %s)",
                     d, be->sparse_max, be->csr_max, tg, kn);
        } else {
            s->fmt = CG_FMT_BITMASK;
            snprintf(s->why, sizeof(s->why),
                     "density %.3f <= %.2f, the measured sparse/dense break-even, and > %.2f, "
                     "the CSR/bitmask one (%s %s)",
                     d, be->sparse_max, be->csr_max, tg, kn);
        }
    }
    /* A circulant layer whose block has no FFT kernel runs as its expanded
     * dense matrix (cg_circ.h): say so after the format's reason. */
    for (int k = 0; k < p->n_steps; k++) {
        struct cg_step *s = &p->steps[k];
        if (s->block <= 0 || (s->kind != CG_K_CONV && s->kind != CG_K_LINEAR))
            continue;
        const size_t n = strlen(s->why);
        snprintf(s->why + n, sizeof(s->why) - n,
                 "; block-circulant, block %d (not a power of two): expanded", s->block);
    }
}

/* ---- Packing ------------------------------------------------------------ */

/* Weights per output row and, for a conv, the input offset of weight i of
 * a row (channel i / taps, tap i % taps) in the padded polyphase input
 * (the emitted code pads with cg_pad and the same PHq, PWq). */
static size_t cg_row_len(const struct cg_step *s)
{
    return s->kind == CG_K_CONV ? (size_t)s->g.C * (size_t)s->g.kh * (size_t)s->g.kw
                                : (size_t)s->g.C * (size_t)s->g.H * (size_t)s->g.W;
}

static size_t cg_input_offset(const struct cg_step *s, size_t i)
{
    if (s->kind != CG_K_CONV)
        return i;
    const struct cg_geom *g = &s->g;
    const size_t T = (size_t)g->kh * (size_t)g->kw, c = i / T, t = i % T;
    const size_t ky = t / (size_t)g->kw, kx = t % (size_t)g->kw;
    const size_t PHq = (size_t)cg_sched_phq(g), PWq = (size_t)cg_sched_pwq(g);
    const size_t plane = PHq * PWq, cpl = plane * (size_t)g->sh * (size_t)g->sw;
    const size_t ph = (ky % (size_t)g->sh) * (size_t)g->sw + kx % (size_t)g->sw;
    return c * cpl + ph * plane + (ky / (size_t)g->sh) * PWq + kx / (size_t)g->sw;
}

enum dp_err cg_sparse_pack(const struct cg_plan *p, int k, struct cg_weights *w,
                           struct dp_errinfo *ei)
{
    const struct cg_step *s = &p->steps[k];
    struct cg_wsec *sec = &w->sec[k];
    const char *name = p->m->layers[s->layer].name;
    const size_t F = (size_t)s->g.F, K = cg_row_len(s), nnz = s->n_nonzero;
    const size_t NW = (K + 63) / 64;
    enum dp_err err = DP_OK;
    if (nnz > UINT32_MAX || cg_input_offset(s, K - 1) > UINT32_MAX)
        return dp_errinfo_set(ei, DP_EUNSUPPORTED, "layer '%s': too large for %s's 32-bit offsets",
                              name, cg_format_name(s->fmt));
    uint32_t *rp = dp_malloc(dp_size_mul(F + 1, sizeof(uint32_t)));
    uint32_t *off = dp_malloc(dp_size_mul(nnz + 1, sizeof(uint32_t)));
    uint64_t *mask = s->fmt == CG_FMT_BITMASK ? dp_calloc(F * NW, sizeof(uint64_t)) : NULL;
    float *val = dp_malloc(dp_size_mul(nnz + 1, sizeof(float)));
    if (rp == NULL || off == NULL || val == NULL || (s->fmt == CG_FMT_BITMASK && mask == NULL)) {
        err = dp_errinfo_set(ei, DP_ENOMEM, "layer '%s': out of memory packing %s", name,
                             cg_format_name(s->fmt));
        goto out;
    }
    size_t e = 0;
    for (size_t r = 0; r < F; r++) {
        rp[r] = (uint32_t)e;
        for (size_t i = 0; i < K; i++) {
            const float v = s->w[r * K + i];
            if (v == 0.0f)
                continue;
            off[e] = (uint32_t)cg_input_offset(s, i);
            val[e++] = v;
            if (mask != NULL)
                mask[r * NW + i / 64] |= (uint64_t)1 << (i % 64);
        }
    }
    rp[F] = (uint32_t)e;
    sec->n_w = nnz;
    err = cg_weights_append(w, rp, (F + 1) * sizeof(uint32_t), &sec->kptr, ei);
    if (!err && mask != NULL)
        err = cg_weights_append(w, mask, F * NW * sizeof(uint64_t), &sec->koff, ei);
    else if (!err)
        err = cg_weights_append(w, off, nnz * sizeof(uint32_t), &sec->koff, ei);
    const struct cg_qmap qm = {CG_QROW_RUNS, 0, 0, rp, sec->kptr, F};
    if (!err)
        err = cg_quant_add(w, k, val, nnz, &qm, &sec->w, ei);
    if (!err)
        err = cg_weights_append(w, s->b, F * sizeof(float), &sec->b, ei);
out:
    dp_free(rp);
    dp_free(off);
    dp_free(mask);
    dp_free(val);
    return err;
}

/* ---- Storage ------------------------------------------------------------ */

void cg_sparse_storage(const struct cg_plan *p, int k, const struct cg_weights *w,
                       struct cg_storage *st)
{
    const struct cg_step *s = &p->steps[k];
    const long long F = s->g.F, nnz = (long long)s->n_nonzero;
    const long long K = (long long)cg_row_len(s), NW = (K + 63) / 64;
    st->dense = 4 * (long long)s->n_weights;
    st->csr = 4 * (F + 1) + 4 * nnz + 4 * nnz;
    st->bitmask = 4 * (F + 1) + 8 * F * NW + 4 * nnz;
    st->fkw = -1;
    if (s->fmt == CG_FMT_FKW) {
        const long long P = s->n_patterns, NKk = (long long)s->n_kernels_kept;
        /* perm, kptr, prun, cin, woff, w; the masks are constants in model.c
         * (2 bytes each counted here). */
        st->fkw = 2 * F + 4 * (F + 1) + 2 * F * (P + 1) + 2 * NKk + 4 * (F + 1) + 4 * nnz + 2 * P;
    }
    st->q_bits = 0;
    st->fkw_q = -1;
    st->csr_q = -1;
    st->stored = (long long)w->sec[k].bytes;
    /* The non-zeros row by row, as CSR, bitmask and FKW store them. */
    const size_t Kz = (size_t)K;
    float *v = dp_malloc(dp_size_mul(s->n_nonzero + 1, sizeof(float)));
    uint32_t *rp = dp_malloc(dp_size_mul((size_t)F + 1, sizeof(uint32_t)));
    if (v != NULL && rp != NULL) {
        size_t e = 0;
        for (size_t r = 0; r < (size_t)F; r++) {
            rp[r] = (uint32_t)e;
            for (size_t i = 0; i < Kz; i++)
                if (s->w[r * Kz + i] != 0.0f)
                    v[e++] = s->w[r * Kz + i];
        }
        rp[F] = (uint32_t)e;
        const struct cg_qmap qm = {CG_QROW_RUNS, 0, 0, rp, 0, (size_t)F};
        struct cg_qplan qp;
        if (e > 0 && cg_quant_analyse(v, e, &qm, &qp, NULL) == DP_OK && qp.bits > 0) {
            st->q_bits = qp.bits;
            st->csr_q = st->csr - 4 * nnz + (long long)qp.bytes;
            if (st->fkw >= 0)
                st->fkw_q = st->fkw - 4 * nnz + (long long)qp.bytes;
        }
    }
    dp_free(v);
    dp_free(rp);
}

/* ---- formats.json ------------------------------------------------------- */

static void cg_json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        const unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c < 0x20 || c >= 0x7f)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}

enum dp_err cg_sparse_write_report(FILE *f, const struct cg_plan *p, const struct cg_weights *w,
                                   int vl, struct dp_errinfo *ei)
{
    /* Totals per format over the conv and linear layers; where a format
     * cannot hold a layer (FKW of a non-pattern layer, quantized values of
     * a float layer) the layer counts in its stored format instead. */
    long long t_dense = 0, t_csr = 0, t_bm = 0, t_fkw = 0, t_fkw_q = 0, t_best = 0, t_stored = 0;
    fputs("{\n \"layers\": [", f);
    int first = 1;
    for (int k = 0; k < p->n_steps; k++) {
        const struct cg_step *s = &p->steps[k];
        if (s->kind != CG_K_CONV && s->kind != CG_K_LINEAR)
            continue;
        struct cg_storage st;
        cg_sparse_storage(p, k, w, &st);
        size_t qbytes;
        int qbits;
        cg_quant_step_bytes(w, k, &qbytes, &qbits);
        const long long bias = 4LL * s->g.F;
        const long long own = st.stored - bias; /* the stored format, weights and indices */
        t_dense += st.dense;
        t_csr += st.csr;
        t_bm += st.bitmask;
        t_fkw += st.fkw >= 0 ? st.fkw : own;
        t_fkw_q += st.fkw_q >= 0 ? st.fkw_q : st.fkw >= 0 ? st.fkw : own;
        long long best = st.dense;
        const long long cands[] = {st.csr, st.bitmask, st.fkw, st.fkw_q, st.csr_q};
        for (size_t i = 0; i < sizeof(cands) / sizeof(cands[0]); i++)
            if (cands[i] >= 0 && cands[i] < best)
                best = cands[i];
        t_best += best;
        t_stored += st.stored;
        fputs(first ? "\n  {\"name\": " : ",\n  {\"name\": ", f);
        first = 0;
        cg_json_str(f, p->m->layers[s->layer].name);
        fprintf(f, ", \"kind\": \"%s\", \"format\": \"%s\", \"why\": ", cg_kind_name(s->kind),
                cg_format_name(s->fmt));
        cg_json_str(f, s->why);
        fprintf(f,
                ", \"density\": %.6f, \"weights\": %zu, \"nonzero\": %zu, \"value_bits\": %d, "
                "\"bytes\": {\"dense\": %lld, \"csr\": %lld, \"bitmask\": %lld, \"fkw\": %lld, "
                "\"fkw_q\": %lld, \"csr_q\": %lld, \"q_bits\": %lld, \"stored\": %lld, "
                "\"stored_quantized\": %zu}}",
                cg_density(s), s->n_weights, s->n_nonzero, qbits ? qbits : 32, st.dense, st.csr,
                st.bitmask, st.fkw, st.fkw_q, st.csr_q, st.q_bits, st.stored, qbytes);
    }
    fputs("\n ],\n", f);
    fprintf(f,
            " \"totals\": {\"dense\": %lld, \"csr\": %lld, \"bitmask\": %lld, \"fkw\": %lld, "
            "\"fkw_q\": %lld, \"best\": %lld, \"stored\": %lld},\n",
            t_dense, t_csr, t_bm, t_fkw, t_fkw_q, t_best, t_stored);
    fputs(" \"breakeven\": [", f);
    for (size_t i = 0; i < sizeof(cg_breakevens) / sizeof(cg_breakevens[0]); i++)
        fprintf(f,
                "%s{\"target\": \"%s\", \"kind\": \"%s\", \"csr_max\": %.3f, \"sparse_max\": %.3f}",
                i ? ", " : "", cg_breakevens[i].vector ? "native" : "portable",
                cg_kind_name(cg_breakevens[i].kind), cg_breakevens[i].csr_max,
                cg_breakevens[i].sparse_max);
    fprintf(f, "],\n \"vl\": %d, \"weights_bin_bytes\": %zu, \"loaded_bytes\": %zu\n}\n", vl,
            w->len, w->mem_len);
    return ferror(f) ? dp_errinfo_set(ei, DP_EIO, "writing formats.json failed") : DP_OK;
}
