/*
 * The generated functions of irregular layers in CSR or bitmask format
 * (cg_sparse.h). A convolution pads its input into the same polyphase
 * planes as the other kernels (cg_pad), after which weight (channel c,
 * tap t) of any output tile is one load at a constant offset from the
 * tile: CSR stores that offset per non-zero, bitmask derives it from the
 * bit's index (c = i / taps, a table of the taps' offsets). A filter's
 * tiles of L flat output positions are accumulated in registers over its
 * non-zeros (two interleaved accumulator sets for independent FMA chains)
 * and stored through the runtime's epilogue (bias, residual, activation).
 * Filters are split between threads by their non-zero counts (rowptr is
 * the cumulative cost cg_split_cost takes). Linear layers call the
 * runtime's cg_csr_linear / cg_bitmask_linear (rt/rt_sparse.c.in).
 */
#include <stdio.h>

#include "worker/codegen/cg_emit.h"
#include "worker/codegen/cg_sched.h"

#define CG_SPARSE_PORTABLE_L 32 /* the spatial kernel's portable tile */

/* The tile of flat output positions, as the spatial kernel's (cg_emit.c),
 * so the scratch it sizes holds the last tile's reads. */
static int cg_sparse_tile(int NK, int vl)
{
    if (vl > 0) {
        int nv = (NK + vl - 1) / vl;
        if (nv > cg_sched_nv_max(vl))
            nv = cg_sched_nv_max(vl);
        return nv * vl;
    }
    const int L = (NK + 3) / 4 * 4;
    return L > CG_SPARSE_PORTABLE_L ? CG_SPARSE_PORTABLE_L : L;
}

static void cg_emit_sparse_title(FILE *f, const struct cg_plan *p, const struct cg_step *s)
{
    const struct cg_geom *g = &s->g;
    fputs("/*\n * ", f);
    cg_emit_cmt(f, p->m->layers[s->layer].name);
    if (s->kind == CG_K_CONV)
        fprintf(f, ": %dx%d conv stride %dx%d pad %d,%d,%d,%d, %d -> %d channels, %dx%d -> %dx%d",
                g->kh, g->kw, g->sh, g->sw, g->pt, g->pl, g->pb, g->pr, g->C, g->F, g->H, g->W,
                g->OH, g->OW);
    else
        fprintf(f, ": linear %d -> %d", g->C * g->H * g->W, g->F);
    cg_emit_fused(f, p, s);
    fprintf(
        f,
        ".\n * Format: %s, %zu of %zu weights non-zero (density %.4f); %lld MACs (%lld dense).\n",
        s->fmt == CG_FMT_CSR ? "CSR" : "bitmask", s->n_nonzero, s->n_weights,
        s->n_weights ? (double)s->n_nonzero / (double)s->n_weights : 1.0, s->macs_nonzero,
        s->macs_dense);
    fputs(" * Why: ", f);
    cg_emit_cmt(f, s->why);
    fputs(".\n", f);
}

/* One non-zero weight w0 at input p0 (relative to the tile) into set `set`. */
static void cg_emit_sparse_fma(FILE *f, int vl, int L, const char *ind, const char *w0,
                               const char *p0, char set)
{
    if (vl > 0) {
        for (int v = 0; v < L / vl; v++)
            fprintf(f, "%s%c%d += %s * cg_ld(%s + %d);\n", ind, set, v, w0, p0, v * vl);
    } else {
        fprintf(f, "%sfor (int l = 0; l < %d; l++)\n%s    %c[l] += %s * %s[l];\n", ind, L, ind, set,
                w0, p0);
    }
}

static void cg_emit_sparse_conv(FILE *f, const struct cg_plan *p, int k, const struct cg_wsec *sec,
                                const struct cg_emit_opts *o)
{
    const struct cg_step *s = &p->steps[k];
    const struct cg_geom *g = &s->g;
    const int vl = o->vl, T = g->kh * g->kw, K = g->C * T, NW = (K + 63) / 64;
    const int PHq = cg_sched_phq(g), PWq = cg_sched_pwq(g);
    const size_t plane = (size_t)PHq * (size_t)PWq, cpl = plane * (size_t)g->sh * (size_t)g->sw;
    const int NK = (g->OH - 1) * PWq + g->OW, L = cg_sparse_tile(NK, vl), HW = g->OH * g->OW;
    const int csr = s->fmt == CG_FMT_CSR;
    cg_emit_sparse_title(f, p, s);
    fprintf(f,
            " * Schedule: input in %d polyphase plane(s) of %dx%d per channel (channels split,\n"
            " * then a barrier); filters split by non-zeros; per filter, tiles of %d flat output\n"
            " * positions in registers, each non-zero one broadcast multiply-add per %s from\n"
            " * its input offset (%s).\n */\n",
            g->sh * g->sw, PHq, PWq, L, vl > 0 ? "vector" : "position",
            csr ? "stored per non-zero" : "channel and tap of its bit");
    cg_emit_fn_open(f, p, k, s->add_layer >= 0);
    fputs("    float *restrict xp = m->scratch;\n", f);
    fprintf(f, "    cg_pad(xp, x0, %d, %d, %d, %d, %d, %d, %d, %d, %d, %zu, tid, nth);\n", g->C,
            g->H, g->W, g->sh, g->sw, g->pt, g->pl, PHq, PWq, cpl);
    fputs("    CG_BARRIER(); /* every channel is padded before any thread reads it */\n", f);
    fprintf(f, "    const uint32_t *rp = (const uint32_t *)(m->blob + %zu);\n", sec->kptr);
    if (csr) {
        fprintf(f, "    const uint32_t *off = (const uint32_t *)(m->blob + %zu);\n", sec->koff);
    } else {
        fprintf(f, "    const uint64_t *mask = (const uint64_t *)(m->blob + %zu);\n", sec->koff);
        fprintf(f, "    static const uint32_t tapoff[%d] = {", T);
        for (int t = 0; t < T; t++) {
            const int ky = t / g->kw, kx = t % g->kw;
            const size_t ph = (size_t)((ky % g->sh) * g->sw + kx % g->sw);
            fprintf(f, "%s%zu", t ? ", " : "",
                    ph * plane + (size_t)(ky / g->sh) * (size_t)PWq + (size_t)(kx / g->sw));
        }
        fputs("};\n", f);
    }
    fprintf(f, "    const float *val = (const float *)(m->blob + %zu);\n", sec->w);
    fprintf(f, "    const float *bias = (const float *)(m->blob + %zu);\n", sec->b);
    fputs("    int j0, j1;\n", f);
    fprintf(f, "    cg_split_cost(rp, %d, tid, nth, &j0, &j1);\n", g->F);
    fputs("    for (int j = j0; j < j1; j++) {\n", f);
    fprintf(f, "        float *yj = y + (size_t)j * %d;\n", HW);
    if (s->add_layer >= 0)
        fprintf(f, "        const float *rj = x1 + (size_t)j * %d;\n", HW);
    fprintf(f, "        for (int k0 = 0; k0 < %d; k0 += %d) {\n", NK, L);
    fputs("            const float *xk = xp + k0;\n", f);
    const char *ind = "                ";
    if (vl > 0) {
        fputs("            cg_vf", f);
        for (int set = 0; set < 2; set++)
            for (int v = 0; v < L / vl; v++)
                fprintf(f, "%s %c%d = {0}", set || v ? "," : "", set ? 'b' : 'a', v);
        fputs(";\n", f);
    } else {
        fprintf(f, "            float a[%d] = {0}, b[%d] = {0};\n", L, L);
    }
    if (csr) {
        fputs("            uint32_t e = rp[j];\n            const uint32_t e1 = rp[j + 1];\n", f);
        fputs("            for (; e + 1 < e1; e += 2) {\n", f);
        fprintf(f, "%sconst float w0 = val[e], w1 = val[e + 1];\n", ind);
        fprintf(f, "%sconst float *p0 = xk + off[e], *p1 = xk + off[e + 1];\n", ind);
        cg_emit_sparse_fma(f, vl, L, ind, "w0", "p0", 'a');
        cg_emit_sparse_fma(f, vl, L, ind, "w1", "p1", 'b');
        fputs("            }\n            if (e < e1) {\n", f);
        fprintf(f, "%sconst float w0 = val[e];\n%sconst float *p0 = xk + off[e];\n", ind, ind);
        cg_emit_sparse_fma(f, vl, L, ind, "w0", "p0", 'a');
        fputs("            }\n", f);
    } else {
        fputs("            const float *vp = val + rp[j];\n", f);
        fprintf(f, "            const uint64_t *mj = mask + (size_t)j * %d;\n", NW);
        fprintf(f, "            for (int q = 0; q < %d; q++) {\n", NW);
        fprintf(f, "%suint64_t bits = mj[q];\n%swhile (bits) {\n", ind, ind);
        fprintf(f,
                "%s    const int i = q * 64 + __builtin_ctzll(bits);\n%s    bits &= bits - 1;\n"
                "%s    const int c = i / %d;\n"
                "%s    const float w0 = *vp++, *p0 = xk + (size_t)c * %zu + tapoff[i - c * %d];\n",
                ind, ind, ind, T, ind, cpl, T);
        char ind2[32];
        snprintf(ind2, sizeof(ind2), "%s    ", ind);
        cg_emit_sparse_fma(f, vl, L, ind2, "w0", "p0", 'a');
        fprintf(f, "%s    if (!bits)\n%s        break;\n", ind, ind);
        fprintf(
            f,
            "%s    const int i1 = q * 64 + __builtin_ctzll(bits);\n%s    bits &= bits - 1;\n"
            "%s    const int c1 = i1 / %d;\n"
            "%s    const float w1 = *vp++, *p1 = xk + (size_t)c1 * %zu + tapoff[i1 - c1 * %d];\n",
            ind, ind, ind, T, ind, cpl, T);
        cg_emit_sparse_fma(f, vl, L, ind2, "w1", "p1", 'b');
        fprintf(f, "%s}\n            }\n", ind);
    }
    fprintf(f, "            float t[%d];\n", L);
    if (vl > 0) {
        for (int v = 0; v < L / vl; v++)
            fprintf(f, "            cg_st(t + %d, a%d + b%d);\n", v * vl, v, v);
    } else {
        fprintf(f,
                "            for (int l = 0; l < %d; l++)\n                t[l] = a[l] + b[l];\n",
                L);
    }
    fprintf(f, "            cg_store(yj, t, k0, %d, %d, %d, %d, bias[j], %s, ", L, NK, PWq, g->OW,
            s->add_layer >= 0 ? "rj" : "NULL");
    cg_emit_act_args(f, s);
    fputs(");\n        }\n    }\n}\n\n", f);
}

static void cg_emit_sparse_linear(FILE *f, const struct cg_plan *p, int k,
                                  const struct cg_wsec *sec)
{
    const struct cg_step *s = &p->steps[k];
    const struct cg_geom *g = &s->g;
    const int I = g->C * g->H * g->W;
    cg_emit_sparse_title(f, p, s);
    fputs(" * Schedule: rows split between threads by non-zeros (rt: cg_csr_linear,\n"
          " * cg_bitmask_linear).\n */\n",
          f);
    cg_emit_fn_open(f, p, k, 0);
    if (s->fmt == CG_FMT_CSR)
        fprintf(f,
                "    cg_csr_linear(y, x0, (const uint32_t *)(m->blob + %zu), (const uint32_t "
                "*)(m->blob + %zu),\n                  (const float *)(m->blob + %zu), (const "
                "float *)(m->blob + %zu), %d, ",
                sec->kptr, sec->koff, sec->w, sec->b, g->F);
    else
        fprintf(f,
                "    cg_bitmask_linear(y, x0, (const uint32_t *)(m->blob + %zu), (const uint64_t "
                "*)(m->blob + %zu), %d,\n                      (const float *)(m->blob + %zu), "
                "(const float *)(m->blob + %zu), %d, ",
                sec->kptr, sec->koff, (I + 63) / 64, sec->w, sec->b, g->F);
    cg_emit_act_args(f, s);
    fputs(", tid, nth);\n}\n\n", f);
}

void cg_emit_sparse_step(FILE *f, const struct cg_plan *p, int k, const struct cg_wsec *sec,
                         const struct cg_emit_opts *o)
{
    if (p->steps[k].kind == CG_K_CONV)
        cg_emit_sparse_conv(f, p, k, sec, o);
    else
        cg_emit_sparse_linear(f, p, k, sec);
}
