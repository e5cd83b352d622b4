/*
 * C emission (see cg_emit.h). Every function here writes text with
 * fprintf; the caller checks the stream once at the end (ferror), which
 * is where a full disk shows up.
 */
#include "worker/codegen/cg_emit.h"

#include <ctype.h>
#include <math.h>
#include <string.h>

#include "common/alloc.h"
#include "worker/codegen/cg_circ.h"
#include "worker/codegen/cg_quant.h"
#include "worker/codegen/cg_sched.h"
#include "worker/codegen/cg_templates_gen.h"

/* ---- Schedule of a convolution ------------------------------------------ */

/* Plain arrays (portable) get tiles of 32 floats; vector tiles: cg_sched_nv_max. */
#define CG_PORTABLE_L 32

struct cg_conv_sched {
    int PHq, PWq;   /* one polyphase plane */
    size_t plane;   /* PHq * PWq */
    size_t cpl;     /* floats per channel: sh * sw planes */
    int NK;         /* flat output positions of a filter: (OH-1)*PWq + OW */
    int VL, NV, L;  /* floats per vector, vectors per tile, floats per tile */
    int S, U;       /* vector tiles: accumulator sets over taps, kernels unrolled (see below) */
    size_t scratch; /* floats of padded input, with slack for the last tile */
};

static int cg_max(int a, int b)
{
    return a > b ? a : b;
}

static void cg_conv_schedule(const struct cg_step *s, int vl, struct cg_conv_sched *c)
{
    const struct cg_geom *g = &s->g;
    c->PHq = cg_sched_phq(g);
    c->PWq = s->sched.shift ? g->OW : cg_sched_pwq(g);
    c->plane = (size_t)c->PHq * (size_t)c->PWq;
    c->cpl = c->plane * (size_t)g->sh * (size_t)(s->sched.shift ? g->kw : g->sw);
    c->NK = (g->OH - 1) * c->PWq + g->OW;
    if (vl > 0) {
        /* The tile and its FMA chains are the schedule's (cg_sched.h:
         * nv vectors, taps over `sets` accumulator sets, `unroll` kernels
         * interleaved). */
        c->VL = vl;
        c->NV = s->sched.nv > 0 ? s->sched.nv : 1;
        c->L = c->NV * vl;
        c->S = s->sched.sets > 0 ? s->sched.sets : 1;
        c->U = s->sched.unroll == 2 ? 2 : 1;
    } else {
        c->VL = 0;
        c->NV = 0;
        c->L = (c->NK + 3) / 4 * 4;
        if (c->L > CG_PORTABLE_L)
            c->L = CG_PORTABLE_L;
    }
    /* The last tile reads up to L floats (or a panel block's r) past the
     * last output plus the largest tap offset (below cpl) past the last
     * channel. */
    c->scratch = (size_t)g->C * c->cpl + (size_t)cg_max(c->L, s->sched.r) + c->cpl;
}

/* Offset of tap (ky, kx) from a flat output position in the polyphase
 * layout, or in the column-shifted one (copy (ky % sh) * kw + kx). */
static size_t cg_tap_offset(const struct cg_step *s, const struct cg_conv_sched *c, int ky, int kx)
{
    const struct cg_geom *g = &s->g;
    if (s->sched.shift)
        return (size_t)((ky % g->sh) * g->kw + kx) * c->plane +
               (size_t)(ky / g->sh) * (size_t)c->PWq;
    const size_t ph = (size_t)((ky % g->sh) * g->sw + kx % g->sw);
    return ph * c->plane + (size_t)(ky / g->sh) * (size_t)c->PWq + (size_t)(kx / g->sw);
}

/* ---- Text helpers ------------------------------------------------------- */

static void cg_emit_lines(FILE *f, const char *const *lines)
{
    for (size_t i = 0; lines[i] != NULL; i++)
        fputs(lines[i], f);
}

/* Writes s as the body of a C string literal (and a JSON string: the same
 * escapes suffice for names, which bench prints into JSON). */
static void cg_emit_str(FILE *f, const char *s)
{
    for (; *s; s++) {
        const unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            fprintf(f, "\\\\\\%c", ch); /* \\ then \" or \\: JSON sees \" or \\ */
        else if (ch < 0x20 || ch >= 0x7f)
            fputc('_', f);
        else
            fputc(ch, f);
    }
}

/* Writes s (a layer or file name, from the user's model) inside a C
 * comment: '*' and '\\' become '_' so that it can neither close the
 * comment ("*" "/") and put its own text into model.c, nor open a nested
 * one or splice lines; control and non-ASCII bytes become '_' as in
 * cg_emit_str. */
void cg_emit_cmt(FILE *f, const char *s)
{
    for (; *s; s++) {
        const unsigned char ch = (unsigned char)*s;
        fputc(ch == '*' || ch == '\\' || ch < 0x20 || ch >= 0x7f ? '_' : ch, f);
    }
}

/* The function name of step k: layer_<k>_<name with non-identifier characters as '_'>. */
void cg_emit_fn_name(FILE *f, const struct cg_plan *p, int k)
{
    fprintf(f, "layer_%d_", k);
    const char *n = p->m->layers[p->steps[k].layer].name;
    for (int i = 0; n[i] != '\0' && i < 48; i++)
        fputc(isalnum((unsigned char)n[i]) ? n[i] : '_', f);
}

/* The opening of step k's function, which every step shares: the
 * signature and, when the step reads no second input, (void)x1. */
void cg_emit_fn_open(FILE *f, const struct cg_plan *p, int k, int uses_x1)
{
    fputs("static void ", f);
    cg_emit_fn_name(f, p, k);
    fputs("(struct cg_model *m, const float *restrict x0, const float *restrict x1,\n"
          "        float *restrict y, int tid, int nth)\n{\n",
          f);
    if (!uses_x1)
        fputs("    (void)x1;\n", f);
}

static void cg_emit_float(FILE *f, float v)
{
    if (isinf(v))
        fprintf(f, "%sINFINITY", v < 0 ? "-" : "");
    else {
        /* %.9g round-trips a float; "0" or "6" need a point to take the suffix. */
        char buf[32];
        snprintf(buf, sizeof(buf), "%.9g", (double)v);
        fprintf(f, "%s%sf", buf, strpbrk(buf, ".en") ? "" : ".0");
    }
}

static const char *cg_act_macro(enum cg_act a)
{
    return a == CG_ACT_RELU ? "CG_ACT_RELU" : a == CG_ACT_CLIP ? "CG_ACT_CLIP" : "CG_ACT_NONE";
}

void cg_emit_act_args(FILE *f, const struct cg_step *s)
{
    fprintf(f, "%s, ", cg_act_macro(s->act));
    cg_emit_float(f, s->act == CG_ACT_CLIP ? s->lo : 0.0f);
    fputs(", ", f);
    cg_emit_float(f, s->act == CG_ACT_CLIP ? s->hi : 0.0f);
}

/* What the step fuses, for its comment: ", BN 'bn1' folded, ReLU fused". */
void cg_emit_fused(FILE *f, const struct cg_plan *p, const struct cg_step *s)
{
    if (s->bn_layer >= 0 && s->bn_layer != s->layer) {
        fputs(", BN '", f);
        cg_emit_cmt(f, p->m->layers[s->bn_layer].name);
        fputs("' folded", f);
    }
    if (s->add_layer >= 0) {
        fputs(", residual add '", f);
        cg_emit_cmt(f, p->m->layers[s->add_layer].name);
        fputs("' fused (x1 added before the activation)", f);
    }
    if (s->act_layer >= 0) {
        fprintf(f, ", %s '", dp_op_name(p->m->layers[s->act_layer].op));
        cg_emit_cmt(f, p->m->layers[s->act_layer].name);
        fputs("' fused", f);
    }
}

/* ---- Convolutions ------------------------------------------------------- */

/* The first line of a convolution's comment: its geometry and what it fuses. */
static void cg_emit_conv_title(FILE *f, const struct cg_plan *p, const struct cg_step *s)
{
    const struct cg_geom *g = &s->g;
    fputs("/*\n * ", f);
    cg_emit_cmt(f, p->m->layers[s->layer].name);
    fprintf(f, ": %dx%d conv stride %dx%d pad %d,%d,%d,%d, %d -> %d channels, %dx%d -> %dx%d",
            g->kh, g->kw, g->sh, g->sw, g->pt, g->pl, g->pb, g->pr, g->C, g->F, g->H, g->W, g->OH,
            g->OW);
    cg_emit_fused(f, p, s);
}

/* The FKW arrays of a pattern layer (cg_fkw.h) as pointers into the blob. */
static void cg_emit_fkw_arrays(FILE *f, const struct cg_wsec *sec)
{
    fprintf(f, "    const uint16_t *perm = (const uint16_t *)(m->blob + %zu);\n", sec->perm);
    fprintf(f, "    const uint32_t *kptr = (const uint32_t *)(m->blob + %zu);\n", sec->kptr);
    fprintf(f, "    const uint16_t *prun = (const uint16_t *)(m->blob + %zu);\n", sec->prun);
    fprintf(f, "    const uint16_t *cin = (const uint16_t *)(m->blob + %zu);\n", sec->cin);
    fprintf(f, "    const uint32_t *woff = (const uint32_t *)(m->blob + %zu);\n", sec->woff);
}

/* The accumulation of one kernel with taps given by mask into the tile:
 * its weights are wk[wo..], ip points at its input channel; vector tiles
 * add tap i into accumulator set set0 + i % S (cg_conv_sched). */
static void cg_emit_taps(FILE *f, const struct cg_step *s, const struct cg_conv_sched *c,
                         unsigned mask, const char *indent, const char *ip, int wo, int set0)
{
    const int kw = s->g.kw, T = s->g.kh * s->g.kw;
    int n = 0;
    size_t off[CG_MAX_DENSE_TAPS];
    fprintf(f, "%sconst float", indent);
    for (int t = 0; t < T; t++) {
        if (!((mask >> t) & 1u))
            continue;
        off[n] = cg_tap_offset(s, c, t / kw, t % kw);
        fprintf(f, "%s w%d_%d = wk[%d]", n ? "," : "", set0, n, wo + n);
        n++;
    }
    fputs(";\n", f);
    if (c->VL > 0) {
        for (int t = 0; t < n; t++)
            for (int v = 0; v < c->NV; v++)
                fprintf(f, "%sa%d_%d += w%d_%d * cg_ld(%s + %zu);\n", indent, v, set0 + t % c->S,
                        set0, t, ip, off[t] + (size_t)v * (size_t)c->VL);
    } else {
        fprintf(f, "%sfor (int l = 0; l < %d; l++)\n%s    a[l] +=", indent, c->L, indent);
        for (int t = 0; t < n; t++)
            fprintf(f, "%s w%d_%d * %s[%zu + l]", t ? " +" : "", set0, t, ip, off[t]);
        fputs(";\n", f);
    }
}

static void cg_emit_mask_comment(FILE *f, const struct cg_step *s, unsigned mask)
{
    fprintf(f, "mask 0x%03x, taps", mask);
    for (int t = 0; t < s->g.kh * s->g.kw; t++)
        if ((mask >> t) & 1u)
            fprintf(f, " (%d,%d)", t / s->g.kw, t % s->g.kw);
}

static int cg_popcount(unsigned m)
{
    int n = 0;
    for (; m; m &= m - 1)
        n++;
    return n;
}

/* Threads pad a small input each into its own scratch, all channels, and
 * need no barrier before reading it (barriers dominate small layers at 2
 * threads on a shared machine); a large one is padded once, channels
 * split between threads, then a barrier. */
#define CG_PRIVATE_PAD_FLOATS CG_SCHED_PRIVATE_PAD_FLOATS

static void cg_emit_pad(FILE *f, const struct cg_step *s, const struct cg_conv_sched *c)
{
    const struct cg_geom *g = &s->g;
    const int priv = (size_t)g->C * c->cpl <= CG_PRIVATE_PAD_FLOATS;
    if (priv)
        fputs("    /* a private copy per thread (small input): no barrier */\n"
              "    float *restrict xp = m->scratch + (size_t)tid * CG_SCRATCH_FLOATS;\n",
              f);
    else
        fputs("    float *restrict xp = m->scratch;\n", f);
    const char *who = priv ? "0, 1" : "tid, nth";
    if (s->sched.shift)
        fprintf(f, "    cg_pad_shift(xp, x0, %d, %d, %d, %d, %d, %d, %d, %d, %d, %d, %zu, %s);\n",
                g->C, g->H, g->W, g->sh, g->sw, g->pt, g->pl, g->kw, c->PHq, c->PWq, c->cpl, who);
    else
        fprintf(f, "    cg_pad(xp, x0, %d, %d, %d, %d, %d, %d, %d, %d, %d, %zu, %s);\n", g->C, g->H,
                g->W, g->sh, g->sw, g->pt, g->pl, c->PHq, c->PWq, c->cpl, who);
    if (!priv)
        fputs("    CG_BARRIER(); /* every channel is padded before any thread reads it */\n", f);
}

/*
 * A pattern layer on a 2x2 output map with 4-tap patterns (sched.packed):
 * its input packed per (pattern, channel) as one vector of the pattern's
 * 4 taps x the 4 output pixels (zeros in the padding), so each kept
 * kernel is one FMA with its 4 weights expanded x4; the 4 lane groups
 * are summed per pixel at the end.
 */
static void cg_emit_conv_packed(FILE *f, const struct cg_plan *p, int k, const struct cg_wsec *sec)
{
    const struct cg_step *s = &p->steps[k];
    const struct cg_geom *g = &s->g;
    const int P = s->n_patterns, C = g->C;
    cg_emit_conv_title(f, p, s);
    fprintf(f,
            ".\n * Format: fkw, %d patterns, %zu of %zu kernels kept, %zu weights; %lld MACs "
            "(%lld dense).\n",
            P, s->n_kernels_kept, s->n_kernels, s->n_nonzero, s->macs_nonzero, s->macs_dense);
    fputs(" * Schedule: spatial kernel, taps x pixels packed: the input as (pattern, channel)\n"
          " * vectors of 4 taps x 4 pixels (channels split between threads, then a barrier);\n"
          " * a filter's kernels one FMA each into 4 accumulators, filters split by MACs.\n */\n",
          f);
    cg_emit_fn_open(f, p, k, s->add_layer >= 0);
    fputs("    float *restrict xp = m->scratch;\n    int c0, c1;\n", f);
    fprintf(f, "    cg_split_even(%d, tid, nth, &c0, &c1);\n", C);
    fputs("    for (int c = c0; c < c1; c++) {\n", f);
    fprintf(f, "        const float *xc = x0 + (size_t)c * %d;\n", g->H * g->W);
    for (int q = 0; q < P; q++) {
        fprintf(f, "        { /* pattern %d: ", q);
        cg_emit_mask_comment(f, s, s->patterns[q]);
        fprintf(f, " */\n            float *d = xp + ((size_t)%d + (size_t)c) * 16;\n", q * C);
        int i = 0;
        for (int t = 0; t < g->kh * g->kw; t++) {
            if (!((s->patterns[q] >> t) & 1u))
                continue;
            const int ky = t / g->kw, kx = t % g->kw;
            fputs("            ", f);
            for (int px = 0; px < 4; px++) {
                const int oy = px / g->OW, ox = px % g->OW;
                const int iy = oy * g->sh - g->pt + ky, ix = ox * g->sw - g->pl + kx;
                if (iy >= 0 && iy < g->H && ix >= 0 && ix < g->W)
                    fprintf(f, "d[%d] = xc[%d]; ", i * 4 + px, iy * g->W + ix);
                else
                    fprintf(f, "d[%d] = 0.0f; ", i * 4 + px);
            }
            fputs("\n", f);
            i++;
        }
        fputs("        }\n", f);
    }
    fputs("    }\n    CG_BARRIER(); /* every packed vector before any filter reads it */\n", f);
    fprintf(f, "    const float *w = (const float *)(m->blob + %zu);\n", sec->w);
    fprintf(f, "    const float *bias = (const float *)(m->blob + %zu);\n", sec->b);
    cg_emit_fkw_arrays(f, sec);
    fputs("    int j0, j1;\n", f);
    fprintf(f, "    cg_split_cost(woff, %d, tid, nth, &j0, &j1);\n", g->F);
    fputs("    for (int j = j0; j < j1; j++) {\n", f);
    fputs("        cg_vf a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0};\n", f);
    fprintf(f, "        const uint16_t *pr = prun + (size_t)j * %d;\n", P + 1);
    fputs("        const uint16_t *ci = cin + kptr[j];\n", f);
    fputs("        const float *wk = w + woff[j];\n", f);
    for (int q = 0; q < P; q++) {
        fprintf(f, "        { /* pattern %d */\n", q);
        fprintf(f, "            const float *pq = xp + %zu;\n", (size_t)q * (size_t)C * 16);
        fprintf(f, "            int e = pr[%d];\n", q);
        fprintf(f, "            for (; e + 3 < pr[%d]; e += 4, wk += 16) {\n", q + 1);
        for (int u = 0; u < 4; u++)
            fprintf(f,
                    "                a%d += cg_expand4(wk + %d) * cg_ld(pq + (size_t)ci[e + %d] * "
                    "16);\n",
                    u, 4 * u, u);
        fputs("            }\n", f);
        fprintf(f, "            for (; e < pr[%d]; e++, wk += 4)\n", q + 1);
        fputs("                a0 += cg_expand4(wk) * cg_ld(pq + (size_t)ci[e] * 16);\n", f);
        fputs("        }\n", f);
    }
    fputs("        float t[16];\n        cg_st(t, (a0 + a1) + (a2 + a3));\n", f);
    fprintf(f, "        float *yo = y + (size_t)perm[j] * 4;\n");
    if (s->add_layer >= 0)
        fputs("        const float *ro = x1 + (size_t)perm[j] * 4;\n", f);
    fputs("        for (int px = 0; px < 4; px++)\n", f);
    fprintf(
        f,
        "            yo[px] = cg_act((t[px] + t[4 + px]) + (t[8 + px] + t[12 + px]) + bias[j]%s, ",
        s->add_layer >= 0 ? " + ro[px]" : "");
    cg_emit_act_args(f, s);
    fputs(");\n    }\n}\n\n", f);
}

static void cg_emit_conv(FILE *f, const struct cg_plan *p, int k, const struct cg_wsec *sec,
                         const struct cg_emit_opts *o)
{
    const struct cg_step *s = &p->steps[k];
    const struct cg_geom *g = &s->g;
    const int fkw = s->fmt == CG_FMT_FKW, T = g->kh * g->kw;
    struct cg_conv_sched c;
    cg_conv_schedule(s, o->vl, &c);
    cg_emit_conv_title(f, p, s);
    fprintf(f, ".\n * Format: %s", cg_format_name(s->fmt));
    if (fkw)
        fprintf(f, ", %d patterns, %zu of %zu kernels kept, %zu weights", s->n_patterns,
                s->n_kernels_kept, s->n_kernels, s->n_nonzero);
    else
        fprintf(f, ", %zu weights (%zu non-zero)", s->n_weights, s->n_nonzero);
    fprintf(f, "; %lld MACs (%lld dense).\n", s->macs_nonzero, s->macs_dense);
    fprintf(f,
            " * Schedule: spatial kernel; input in %d %s of %dx%d per channel; a filter's %d "
            "flat outputs in tiles of %d",
            g->sh * (s->sched.shift ? g->kw : g->sw),
            s->sched.shift ? "column-shifted copies (no padding column)" : "polyphase plane(s)",
            c.PHq, c.PWq, c.NK, c.L);
    if (c.VL > 0)
        fprintf(f, " (%d vectors of %d in registers)", c.NV, c.VL);
    fprintf(f, ";\n * filters split between threads %s.\n */\n",
            fkw ? "by MACs in FKW order, one loop per pattern" : "evenly, all taps unrolled");
    cg_emit_fn_open(f, p, k, s->add_layer >= 0);
    cg_emit_pad(f, s, &c);
    fprintf(f, "    const float *w = (const float *)(m->blob + %zu);\n", sec->w);
    fprintf(f, "    const float *bias = (const float *)(m->blob + %zu);\n", sec->b);
    if (fkw) {
        cg_emit_fkw_arrays(f, sec);
    }
    fputs("    int j0, j1;\n", f);
    if (fkw)
        fprintf(f, "    cg_split_cost(woff, %d, tid, nth, &j0, &j1);\n", g->F);
    else
        fprintf(f, "    cg_split_even(%d, tid, nth, &j0, &j1);\n", g->F);
    fprintf(f, "    for (int k0 = 0; k0 < %d; k0 += %d) {\n", c.NK, c.L);
    fputs("        const float *xt = xp + k0;\n", f);
    fputs("        for (int j = j0; j < j1; j++) {\n", f);
    if (c.VL > 0) {
        fputs("            cg_vf", f);
        for (int v = 0; v < c.NV; v++)
            for (int q = 0; q < c.S * c.U; q++)
                fprintf(f, "%s a%d_%d = {0}", v || q ? "," : "", v, q);
        fputs(";\n", f);
    } else {
        fprintf(f, "            float a[%d] = {0};\n", c.L);
    }
    if (fkw) {
        fprintf(f, "            const uint16_t *pr = prun + (size_t)j * %d;\n", s->n_patterns + 1);
        fputs("            const uint16_t *ci = cin + kptr[j];\n", f);
        fputs("            const float *wk = w + woff[j];\n", f);
        for (int q = 0; q < s->n_patterns; q++) {
            const unsigned mask = s->patterns[q];
            fprintf(f, "            /* pattern %d: ", q);
            cg_emit_mask_comment(f, s, mask);
            fputs(" */\n", f);
            const int n = cg_popcount(mask);
            if (c.VL > 0 && c.U == 2) {
                /* Two kernels per iteration into separate accumulator sets. */
                fprintf(f, "            for (int e = pr[%d]; e < pr[%d]; e += 2, wk += %d) {\n", q,
                        q + 1, 2 * n);
                fprintf(f,
                        "                const float *ip0 = xt + (size_t)ci[e] * %zu;\n"
                        "                if (e + 1 == pr[%d]) {\n",
                        c.cpl, q + 1);
                cg_emit_taps(f, s, &c, mask, "                    ", "ip0", 0, 0);
                fprintf(f, "                    wk += %d;\n                    break;\n", n);
                fputs("                }\n", f);
                fprintf(f, "                const float *ip1 = xt + (size_t)ci[e + 1] * %zu;\n",
                        c.cpl);
                cg_emit_taps(f, s, &c, mask, "                ", "ip0", 0, 0);
                cg_emit_taps(f, s, &c, mask, "                ", "ip1", n, c.S);
                fputs("            }\n", f);
                continue;
            }
            fprintf(f, "            for (int e = pr[%d]; e < pr[%d]; e++, wk += %d) {\n", q, q + 1,
                    n);
            fprintf(f, "                const float *ip = xt + (size_t)ci[e] * %zu;\n", c.cpl);
            cg_emit_taps(f, s, &c, mask, "                ", "ip", 0, 0);
            fputs("            }\n", f);
        }
    } else {
        fprintf(f, "            const float *wk = w + (size_t)j * %zu;\n", (size_t)g->C * T);
        fprintf(f, "            for (int ch = 0; ch < %d; ch++, wk += %d) {\n", g->C, T);
        fprintf(f, "                const float *ip = xt + (size_t)ch * %zu;\n", c.cpl);
        cg_emit_taps(f, s, &c, (1u << T) - 1u, "                ", "ip", 0, 0);
        fputs("            }\n", f);
    }
    const char *t = "a";
    if (c.VL > 0) {
        fprintf(f, "            float t[%d];\n", c.L);
        for (int v = 0; v < c.NV; v++) {
            fprintf(f, "            cg_st(t + %d, a%d_0", v * c.VL, v);
            for (int q = 1; q < c.S * c.U; q++)
                fprintf(f, " + a%d_%d", v, q);
            fputs(");\n", f);
        }
        t = "t";
    }
    fprintf(f, "            cg_store(y + (size_t)%s * %zu, %s, k0, %d, %d, %d, %d, bias[j], ",
            fkw ? "perm[j]" : "j", (size_t)g->OH * (size_t)g->OW, t, c.L, c.NK, c.PWq, g->OW);
    if (s->add_layer >= 0)
        fprintf(f, "x1 + (size_t)%s * %zu, ", fkw ? "perm[j]" : "j", (size_t)g->OH * (size_t)g->OW);
    else
        fputs("NULL, ", f);
    cg_emit_act_args(f, s);
    fputs(");\n        }\n    }\n}\n\n", f);
}

/*
 * One register block of the panel kernel: nb panels x n pixels, pixel i
 * at flat offset pix[i] from xt; accumulated over every input channel and
 * tap, then handed to cg_store_panel with the output pixel indices.
 */
static void cg_emit_panel_block(FILE *f, const struct cg_step *s, int n, const int *pix,
                                const char *indent)
{
    const struct cg_geom *g = &s->g;
    const int nb = s->sched.nb, VL = s->sched.vl, T = g->kh * g->kw, gw = s->sched.gw;
    fprintf(f, "%scg_vf", indent);
    for (int b = 0; b < nb; b++)
        for (int i = 0; i < n; i++)
            fprintf(f, "%s a%d_%d = {0}", b || i ? "," : "", b, i);
    fputs(";\n", f);
    /* One (channel, tap) per iteration through the offset table: with the
     * taps unrolled instead, the compiler keeps inputs shared between
     * neighbouring taps in registers and spills the accumulators. */
    fprintf(f, "%sconst float *wk = wg;\n", indent);
    fprintf(f, "%sfor (int kk = 0; kk < %d; kk++, wk += %d) {\n", indent, g->C * T, gw);
    fprintf(f, "%s    const float *ip = xt + koff[kk];\n", indent);
    if (s->sched.prefetch) {
        /* One prefetch per cache line of this step's weights, 4 KiB ahead. */
        for (int l = 0; l < nb * VL; l += 16)
            fprintf(f, "%s    __builtin_prefetch(wk + %d);\n", indent, 1024 + l);
    }
    fprintf(f, "%s    const cg_vf", indent);
    for (int b = 0; b < nb; b++)
        fprintf(f, "%s w%d = cg_ld(wk + %d)", b ? "," : "", b, b * VL);
    fputs(";\n", f);
    /* One line per pixel: its input broadcast into every panel's accumulator. */
    for (int i = 0; i < n; i++) {
        fprintf(f, "%s    { const float x = ip[%d];", indent, pix[i]);
        for (int b = 0; b < nb; b++)
            fprintf(f, " a%d_%d += w%d * x;", b, i, b);
        fputs(" }\n", f);
    }
    fprintf(f, "%s}\n", indent);
    fprintf(f, "%sfloat t[%d];\n", indent, nb * n * VL);
    for (int b = 0; b < nb; b++)
        for (int i = 0; i < n; i++)
            fprintf(f, "%scg_st(t + %d, a%d_%d);\n", indent, (b * n + i) * VL, b, i);
}

static void cg_emit_conv_panel(FILE *f, const struct cg_plan *p, int k, const struct cg_wsec *sec,
                               const struct cg_emit_opts *o)
{
    const struct cg_step *s = &p->steps[k];
    const struct cg_geom *g = &s->g;
    const struct cg_sched *sc = &s->sched;
    const int T = g->kh * g->kw, VL = sc->vl, nb = sc->nb, r = sc->r, gw = sc->gw;
    const int G = (g->F + gw - 1) / gw, NSUB = gw / (nb * VL), HW = g->OH * g->OW;
    struct cg_conv_sched c;
    cg_conv_schedule(s, o->vl, &c);
    const int full = sc->rows ? g->OH / sc->rows : (c.NK + r - 1) / r;
    const int tail_rows = sc->rows ? g->OH % sc->rows : 0;
    const int NT = full + (tail_rows > 0);
    cg_emit_conv_title(f, p, s);
    fprintf(f, ".\n * Format: %s, %zu weights (%zu non-zero); %lld MACs.\n", cg_format_name(s->fmt),
            s->n_weights, s->n_nonzero, s->macs_dense);
    fprintf(f,
            " * Schedule: panel kernel. Weights packed at compile time in %d group(s) of %d "
            "output\n * channels, (C, taps, %d) each; input in %d polyphase plane(s) of %dx%d "
            "per channel.\n * A register block of %d panel(s) of %d channels x %d pixels (%d "
            "accumulators), %d per\n * group, runs the K-loop over %d channels x %d taps: %d "
            "weight vector load(s) and\n * %d broadcasts per step. Tiles: ",
            G, gw, gw, g->sh * g->sw, c.PHq, c.PWq, nb, VL, r, nb * r, NSUB, g->C, T, nb, r);
    if (sc->rows)
        fprintf(f, "%d of %d whole output row(s)%s", full, sc->rows,
                tail_rows ? " and a tail" : "");
    else
        fprintf(f, "%d of %d flat positions (padding columns dropped on store)", full, r);
    fprintf(f, ";\n * the %d (group, block, tile) items split evenly between threads%s.\n */\n",
            G * NSUB * NT,
            sc->prefetch ? "; weights prefetched 4 KiB ahead (they stream from memory)" : "");
    cg_emit_fn_open(f, p, k, s->add_layer >= 0);
    cg_emit_pad(f, s, &c);
    fprintf(f, "    const float *wp = (const float *)(m->blob + %zu);\n", sec->w);
    fprintf(f, "    const float *bias = (const float *)(m->blob + %zu);\n", sec->b);
    fprintf(f, "    const uint32_t *koff = (const uint32_t *)(m->blob + %zu); /* (C, taps) */\n",
            sec->koff);
    fputs("    int i0, i1;\n", f);
    fprintf(f, "    cg_split_even(%d, tid, nth, &i0, &i1);\n", G * NSUB * NT);
    fputs("    for (int it = i0; it < i1; it++) {\n", f);
    fprintf(f, "        const int grp = it / %d, sub = it / %d %% %d, tile = it %% %d;\n",
            NSUB * NT, NT, NSUB, NT);
    fprintf(f, "        const int oc0 = grp * %d + sub * %d;\n", gw, nb * VL);
    fprintf(f, "        const float *wg = wp + (size_t)grp * %zu + (size_t)sub * %d;\n",
            (size_t)g->C * (size_t)T * (size_t)gw, nb * VL);
    int pix[64];
    if (sc->rows) {
        fprintf(f, "        const float *xt = xp + (size_t)tile * %d;\n", sc->rows * c.PWq);
        for (int pass = 0; pass < 1 + (tail_rows > 0); pass++) {
            const int rows = pass ? tail_rows : sc->rows;
            const int n = rows * g->OW;
            for (int i = 0; i < n; i++)
                pix[i] = (i / g->OW) * c.PWq + i % g->OW;
            if (tail_rows > 0)
                fprintf(f, pass ? "        else {\n" : "        if (tile < %d) {\n", full);
            else
                fputs("        {\n", f);
            cg_emit_panel_block(f, s, n, pix, "            ");
            fprintf(f,
                    "            cg_store_panel(y, t, bias, oc0, %d, %d, %d, tile * %d, "
                    "-1, 0, 0, %d, %s, ",
                    nb * VL, g->F, n, sc->rows * g->OW, HW, s->add_layer >= 0 ? "x1" : "NULL");
            cg_emit_act_args(f, s);
            fputs(");\n        }\n", f);
        }
    } else {
        for (int i = 0; i < r; i++)
            pix[i] = i;
        fprintf(f, "        const float *xt = xp + (size_t)tile * %d;\n        {\n", r);
        cg_emit_panel_block(f, s, r, pix, "            ");
        fprintf(f,
                "            cg_store_panel(y, t, bias, oc0, %d, %d, %d, tile * %d, %d, %d, "
                "%d, %d, %s, ",
                nb * VL, g->F, r, r, c.NK, c.PWq, g->OW, HW, s->add_layer >= 0 ? "x1" : "NULL");
        cg_emit_act_args(f, s);
        fputs(");\n        }\n", f);
    }
    fputs("    }\n}\n\n", f);
}

/* ---- Other steps -------------------------------------------------------- */

static void cg_emit_simple(FILE *f, const struct cg_plan *p, int k, const struct cg_wsec *sec)
{
    const struct cg_step *s = &p->steps[k];
    const struct cg_geom *g = &s->g;
    const int HW = g->H * g->W;
    fputs("/* ", f);
    cg_emit_cmt(f, p->m->layers[s->layer].name);
    fprintf(f, ": %s, %dx%dx%d -> %dx%dx%d", cg_kind_name(s->kind), g->C, g->H, g->W, g->F, g->OH,
            g->OW);
    cg_emit_fused(f, p, s);
    if (s->kind == CG_K_LINEAR)
        fprintf(f, "; format %s, %zu weights (%zu non-zero); rows split evenly between threads",
                cg_format_name(s->fmt), s->n_weights, s->n_nonzero);
    fputs(" */\n", f);
    cg_emit_fn_open(f, p, k, s->kind == CG_K_ADD);
    if (s->kind != CG_K_LINEAR && s->kind != CG_K_BN)
        fputs("    (void)m;\n", f);
    switch (s->kind) {
        case CG_K_LINEAR:
            fprintf(f,
                    "    cg_linear(y, x0, (const float *)(m->blob + %zu), (const float *)(m->blob "
                    "+ %zu), %d, %d, ",
                    sec->w, sec->b, g->F, g->C * HW);
            cg_emit_act_args(f, s);
            fputs(", tid, nth);\n", f);
            break;
        case CG_K_MAXPOOL:
        case CG_K_AVGPOOL:
            fprintf(
                f,
                "    cg_pool(y, x0, %d, %d, %d, %d, %d, %d, %d, %d, %d, %d, %d, %d, %d, %d, %d, "
                "tid, nth);\n",
                g->C, g->H, g->W, g->OH, g->OW, g->kh, g->kw, g->sh, g->sw, g->pt, g->pl, g->pb,
                g->pr, s->kind == CG_K_AVGPOOL, g->count_include_pad);
            break;
        case CG_K_GAP:
            fprintf(f, "    cg_gap(y, x0, %d, %d, tid, nth);\n", g->C, HW);
            break;
        case CG_K_ADD:
            fprintf(f, "    cg_add(y, x0, x1, %d, ", g->C * HW);
            cg_emit_act_args(f, s);
            fputs(", tid, nth);\n", f);
            break;
        case CG_K_BN:
            fprintf(f,
                    "    cg_affine(y, x0, (const float *)(m->blob + %zu), (const float *)(m->blob "
                    "+ %zu), %d, %d, ",
                    sec->w, sec->b, g->C, HW);
            cg_emit_act_args(f, s);
            fputs(", tid, nth);\n", f);
            break;
        case CG_K_ACT:
            fprintf(f, "    cg_affine(y, x0, NULL, NULL, %d, %d, ", g->C, HW);
            cg_emit_act_args(f, s);
            fputs(", tid, nth);\n", f);
            break;
        case CG_K_SOFTMAX:
            fprintf(f, "    (void)nth;\n    cg_softmax(y, x0, %d, tid);\n", g->C * HW);
            break;
        case CG_K_SLICE:
            fprintf(f, "    cg_slice(y, x0, %d, %d, %d, %d, %d, %d, %d, %d, tid, nth);\n", g->C,
                    g->H, g->W, g->F, g->OH, g->OW, s->axis, s->start);
            break;
        case CG_K_CONV:
        case CG_K_CIRC_LINEAR: /* cg_emit_circ_step */
        case CG_K_CIRC_CONV:
        case CG_K_LSTM:
        case CG_K_GRU:
            break;
    }
    fputs("}\n\n", f);
}

/* ---- model.c ------------------------------------------------------------ */

static void cg_emit_slot(FILE *f, int slot)
{
    if (slot < 0)
        fputs("x", f);
    else
        fprintf(f, "S + (size_t)%d * CG_SLOT_FLOATS", slot);
}

/* The compiler flags and the CPU check of an ISA path (cg_sched.h names
 * them); generic and plain need neither. */
static const struct {
    const char *isa, *cflags, *cpu;
} cg_isa_info[] = {
    {"avx512", "-mavx512f -mavx512vl -mavx512bw -mavx512dq -mavx2 -mfma",
     "__builtin_cpu_supports(\"avx512f\") && __builtin_cpu_supports(\"avx512vl\") &&\n"
     "           __builtin_cpu_supports(\"avx512bw\") && __builtin_cpu_supports(\"avx512dq\")"},
    {"avx2", "-mavx2 -mfma", "__builtin_cpu_supports(\"avx2\") && __builtin_cpu_supports(\"fma\")"},
};

static int cg_isa_index(const char *isa)
{
    for (size_t i = 0; i < sizeof(cg_isa_info) / sizeof(cg_isa_info[0]); i++)
        if (strcmp(cg_isa_info[i].isa, isa) == 0)
            return (int)i;
    return -1;
}

/* The part of the bundle (CG_PART, one compilation of model.c each) that
 * holds path i of s: generic and plain (no ISA flags) share part 0 with
 * the runtime; ISA path i gets part i + 1. */
static int cg_path_part(const struct cg_schedule *s, int i)
{
    return cg_isa_index(s->path[i].isa) < 0 ? 0 : i + 1;
}

/* The path of s in part 0, or -1 (a tuning build of one ISA path). */
static int cg_part0_path(const struct cg_schedule *s)
{
    for (int i = 0; i < s->n_paths; i++)
        if (cg_path_part(s, i) == 0)
            return i;
    return -1;
}

/* The kernel string of a step's schedule, as model_get_info and bench give it. */
static void cg_emit_kernel_str(FILE *f, const struct cg_sched *sc)
{
    if (sc->kern == CG_KERN_PANEL)
        fprintf(f, "panel %dx%d%s", sc->nb, sc->r, sc->rows ? " rows" : "");
    else if (sc->kern == CG_KERN_SPATIAL && sc->vl > 0 && !sc->packed)
        fprintf(f, "spatial %dx%d%s", sc->nv, sc->unroll, sc->shift ? " shift" : "");
    else
        fprintf(f, "%s%s", cg_kern_name(sc->kern), sc->packed ? " packed" : "");
}

/* One path's layers and its forward pass, cg_forward_<isa>: the plan's
 * steps carry the path's schedule. */
static void cg_emit_path(FILE *f, const struct cg_plan *p, const struct cg_weights *w,
                         const struct cg_emit_opts *o, const char *isa)
{
    const struct dp_model *m = p->m;
    /* One kernel per step by its schedule and format: CSR and bitmask
     * layers (sched.sparse, cg_sched_candidates) run the sparse kernels of
     * cg_emit_sparse.c on this path's vectors. */
    for (int k = 0; k < p->n_steps; k++) {
        const enum cg_kind kind = p->steps[k].kind;
        if (kind == CG_K_CIRC_LINEAR || kind == CG_K_CIRC_CONV || kind == CG_K_LSTM ||
            kind == CG_K_GRU)
            cg_emit_circ_step(f, p, k, &w->sec[k]);
        else if (p->steps[k].fmt == CG_FMT_CSR || p->steps[k].fmt == CG_FMT_BITMASK)
            cg_emit_sparse_step(f, p, k, &w->sec[k], o);
        else if (p->steps[k].kind == CG_K_CONV && p->steps[k].sched.kern == CG_KERN_PANEL)
            cg_emit_conv_panel(f, p, k, &w->sec[k], o);
        else if (p->steps[k].kind == CG_K_CONV && p->steps[k].sched.packed)
            cg_emit_conv_packed(f, p, k, &w->sec[k]);
        else if (p->steps[k].kind == CG_K_CONV)
            cg_emit_conv(f, p, k, &w->sec[k], o);
        else
            cg_emit_simple(f, p, k, &w->sec[k]);
    }
    fprintf(f,
            "/* One image of path %s: x (CG_IN_FLOATS) -> out (CG_OUT_FLOATS), run by every\n"
            " * thread of the team; each layer ends at a barrier (cg_sync). */\n"
            "void cg_forward_%s(struct cg_model *m, const float *x, float *out, int tid, int "
            "nth)\n{\n    float *const S = m->slots;\n",
            isa, isa);
    for (int k = 0; k < p->n_steps; k++) {
        const struct cg_step *s = &p->steps[k];
        fputs("    ", f);
        cg_emit_fn_name(f, p, k);
        fputs("(m, ", f);
        cg_emit_slot(f, s->in_slot[0]);
        fputs(", ", f);
        if (s->n_in > 1)
            cg_emit_slot(f, s->in_slot[1]);
        else
            fputs("NULL", f);
        fputs(", ", f);
        cg_emit_slot(f, s->out_slot);
        fprintf(f, ", tid, nth);\n    cg_sync(m, %d, tid, nth);\n", k);
    }
    fputs("    cg_copy(out, ", f);
    cg_emit_slot(f, p->value_slot[m->n_layers - 1]);
    fputs(", CG_OUT_FLOATS, tid, nth);\n    CG_BARRIER();\n}\n", f);
}

/* The largest padded input (floats per thread) of any step on any path. */
static size_t cg_scratch_floats(struct cg_plan *q, const struct cg_schedule *sch)
{
    size_t scratch = 64;
    for (int i = 0; i < sch->n_paths; i++) {
        cg_schedule_apply(q, sch, i);
        for (int k = 0; k < q->n_steps; k++) {
            struct cg_circ_scr cs;
            cg_circ_scratch(&q->steps[k], &cs);
            if (cs.total > scratch)
                scratch = cs.total;
            if (q->steps[k].kind != CG_K_CONV)
                continue;
            struct cg_conv_sched c;
            cg_conv_schedule(&q->steps[k], sch->path[i].vl, &c);
            if (c.scratch > scratch)
                scratch = c.scratch;
            const size_t packed = (size_t)q->steps[k].n_patterns * q->steps[k].g.C * 16;
            if (q->steps[k].sched.packed && packed > scratch)
                scratch = packed;
        }
    }
    return scratch;
}

enum dp_err cg_emit_model_c(FILE *f, const struct cg_plan *p, const struct cg_weights *w,
                            const struct cg_emit_opts *o, struct dp_errinfo *ei)
{
    const struct dp_model *m = p->m;
    const struct cg_schedule *sch = o->sch;
    const int np = sch->n_paths;
    /* A private copy of the steps takes each path's schedule in turn. */
    struct cg_plan q = *p;
    q.steps = dp_malloc(dp_size_mul((size_t)(p->n_steps > 0 ? p->n_steps : 1), sizeof(*q.steps)));
    if (q.steps == NULL)
        return dp_errinfo_set(ei, DP_ENOMEM, "out of memory emitting model.c");
    memcpy(q.steps, p->steps, (size_t)p->n_steps * sizeof(*q.steps));
    const size_t scratch = cg_scratch_floats(&q, sch);
    fputs("/*\n * generated by dnnpress-worker compile from ", f);
    cg_emit_cmt(f, o->source);
    fputs(" -- do not edit\n * model ", f);
    cg_emit_cmt(f, o->name);
    fprintf(f, ", target %s; %d layers; %lld MACs per image (%lld dense).\n *\n", o->target,
            p->n_steps, p->macs_nonzero, p->macs_dense);
    fputs(" * The runtime part (memory, threads, padding, epilogues) is the same in every\n"
          " * bundle; the layers after it are generated, each a function named after\n"
          " * its IR layer with a comment giving its format and schedule. API: model.h.\n *\n"
          " * ISA paths (each a full copy of the layers, picked at model_create):",
          f);
    for (int i = 0; i < np; i++)
        fprintf(f, "%s %s (%s, part %d)", i ? "," : "", sch->path[i].isa,
                sch->path[i].vl > 0 ? "vectors" : "plain arrays", cg_path_part(sch, i));
    fputs(".\n * The Makefile compiles this file once per part (-DCG_PART=n) with that\n"
          " * part's ISA flags; part 0 holds the runtime and needs none.\n */\n",
          f);
    fputs("#define _POSIX_C_SOURCE 200809L\n#include \"model.h\"\n\n", f);
    fputs("#ifndef CG_PART\n#define CG_PART 0\n#endif\n", f);
    const int p0 = cg_part0_path(sch);
    int n_isa = 0;
    for (int i = 0; i < np; i++) {
        const int part = cg_path_part(sch, i);
        if (part == 0)
            continue;
        fprintf(f, "#%s CG_PART == %d\n#define CG_VL %d /* path %s */\n", n_isa ? "elif" : "if",
                part, sch->path[i].vl, sch->path[i].isa);
        n_isa++;
    }
    fprintf(f, "%s\n#define CG_VL %d /* %s%s; 0: plain arrays */\n%s", n_isa ? "#else" : "",
            p0 >= 0 ? sch->path[p0].vl : 0, p0 >= 0 ? "path " : "the runtime alone",
            p0 >= 0 ? sch->path[p0].isa : "", n_isa ? "#endif\n" : "");
    fputs("/* The ISA paths need x86 (the Makefile builds their parts only there). */\n"
          "#if defined(__x86_64__) || defined(__i386__)\n#define CG_ISA_PATHS 1\n#else\n"
          "#define CG_ISA_PATHS 0\n#endif\n",
          f);
    fprintf(f, "#define CG_DEFAULT_THREADS %d\n", sch->threads);
    fprintf(f, "#define CG_IN_FLOATS %zu\n#define CG_OUT_FLOATS %zu\n", p->in_floats,
            p->out_floats);
    fprintf(f, "#define CG_N_SLOTS %d\n#define CG_SLOT_FLOATS %zu\n",
            p->n_slots > 0 ? p->n_slots : 1, p->slot_floats > 0 ? p->slot_floats : 1);
    fprintf(f, "#define CG_SCRATCH_FLOATS %zu\n", scratch);
    fprintf(f, "#define CG_WEIGHTS_BYTES %zuu\n#define CG_WEIGHTS_HASH 0x%016llxull\n\n", w->len,
            (unsigned long long)w->hash);
    cg_emit_lines(f, cg_tmpl_rt_head);
    fputc('\n', f);
    /* Quantized arrays (restored in part 0's model_create) and the sparse
     * kernels every path's part may call. */
    cg_quant_emit(f, w);
    cg_emit_lines(f, cg_tmpl_rt_sparse);
    fputc('\n', f);
    cg_emit_lines(f, cg_tmpl_rt_circ);
    fputc('\n', f);
    for (int i = 0; i < np; i++)
        fprintf(f,
                "void cg_forward_%s(struct cg_model *m, const float *x, float *out, int tid, "
                "int nth);\n",
                sch->path[i].isa);
    for (int i = 0; i < np; i++) {
        const int part = cg_path_part(sch, i);
        if (part == 0)
            continue;
        fprintf(f, "\n#if CG_PART == %d /* ==== path %s ==== */\n\n", part, sch->path[i].isa);
        cg_schedule_apply(&q, sch, i);
        struct cg_emit_opts po = *o;
        po.vl = sch->path[i].vl;
        cg_emit_path(f, &q, w, &po, sch->path[i].isa);
        fprintf(f, "#endif /* path %s */\n", sch->path[i].isa);
    }
    fprintf(f, "\n#if CG_PART == 0 /* ==== %s%s, and the runtime ==== */\n\n",
            p0 >= 0 ? "path " : "no path", p0 >= 0 ? sch->path[p0].isa : "");
    if (p0 >= 0) {
        cg_schedule_apply(&q, sch, p0);
        struct cg_emit_opts po = *o;
        po.vl = sch->path[p0].vl;
        cg_emit_path(f, &q, w, &po, sch->path[p0].isa);
    }
    /* The layer table (kernels of the layout path, path 0) and the paths. */
    cg_schedule_apply(&q, sch, 0);
    fputs("\n/* ---- The network ---- */\n\nstatic const struct model_layer_info cg_layers[] = {\n",
          f);
    for (int k = 0; k < p->n_steps; k++) {
        const struct cg_step *s = &q.steps[k];
        fputs("    {\"", f);
        cg_emit_str(f, m->layers[s->layer].name);
        fprintf(f, "\", \"%s\", \"%s\", %lldLL, %lldLL, \"", cg_kind_name(s->kind),
                cg_format_name(s->fmt), s->macs_dense, s->macs_nonzero);
        cg_emit_kernel_str(f, &s->sched);
        fputs("\"},\n", f);
    }
    fputs("};\n\n", f);
    for (int i = 0; i < np; i++) {
        fprintf(f, "static const char *const cg_kernels_%s[] = {\n", sch->path[i].isa);
        for (int k = 0; k < p->n_steps; k++) {
            fputs("    \"", f);
            cg_emit_kernel_str(f, &sch->path[i].steps[k]);
            fputs("\",\n", f);
        }
        fputs("};\n", f);
    }
    fprintf(f, "\nstatic const struct model_path_info cg_path_info[] = {\n");
    for (int i = 0; i < np; i++)
        fprintf(f, "    {\"%s\", %d, cg_kernels_%s},\n", sch->path[i].isa, sch->path[i].vl,
                sch->path[i].isa);
    fputs("};\n\n", f);
    /* The CPU checks; a path whose part is not built (not x86) is never taken. */
    for (int i = 0; i < np; i++) {
        const int ii = cg_isa_index(sch->path[i].isa);
        fprintf(f, "%sstatic int cg_cpu_%s(void)\n{\n", ii < 0 ? "" : "#if CG_ISA_PATHS\n",
                sch->path[i].isa);
        if (ii < 0)
            fputs("    return 1;\n}\n", f);
        else
            fprintf(f, "    __builtin_cpu_init();\n    return %s;\n}\n#endif\n",
                    cg_isa_info[ii].cpu);
    }
    fputs("\nstatic const struct cg_path cg_paths[] = {\n", f);
    for (int i = 0; i < np; i++) {
        const int part = cg_path_part(sch, i);
        if (part != 0)
            fputs("#if CG_ISA_PATHS\n", f);
        fprintf(f, "    {%d, cg_cpu_%s, cg_forward_%s},\n", i, sch->path[i].isa, sch->path[i].isa);
        if (part != 0)
            fputs("#endif\n", f);
    }
    fputs("};\n\n", f);
    fputs("static const struct model_info cg_info = {\n    \"", f);
    cg_emit_str(f, o->name);
    fprintf(f,
            "\", \"%s\", %d, %d, %d, %zu, %d, cg_layers, %lldLL, %lldLL, %d, %d, cg_path_info,\n"
            "};\n\n",
            o->target, m->in_c, m->in_h, m->in_w, p->out_floats, p->n_steps, p->macs_dense,
            p->macs_nonzero, sch->threads, np);
    fprintf(f,
            "/* The path a tuned schedule measured fastest (-1: time them at create). */\n"
            "#define CG_PREFERRED_PATH %d\n",
            sch->prefer);
    cg_emit_lines(f, cg_tmpl_rt_tail);
    fputs("#endif /* CG_PART == 0 */\n", f);
    dp_free(q.steps);
    if (ferror(f))
        return dp_errinfo_set(ei, DP_EIO, "writing model.c failed");
    return DP_OK;
}

enum dp_err cg_emit_model_h(FILE *f, struct dp_errinfo *ei)
{
    cg_emit_lines(f, cg_tmpl_model_h);
    return ferror(f) ? dp_errinfo_set(ei, DP_EIO, "writing model.h failed") : DP_OK;
}

enum dp_err cg_emit_bench_c(FILE *f, struct dp_errinfo *ei)
{
    cg_emit_lines(f, cg_tmpl_bench_c);
    return ferror(f) ? dp_errinfo_set(ei, DP_EIO, "writing bench.c failed") : DP_OK;
}

/* The Makefile's rules for the ISA paths' parts of model.c (x86 only). */
static void cg_emit_parts(FILE *f, const struct cg_emit_opts *o)
{
    const struct cg_schedule *sch = o->sch;
    const int np = sch->n_paths;
    if (cg_part0_path(sch) == 0 && np == 1)
        return;
    fputs("ifneq ($(X86),)\nPARTS +=", f);
    for (int i = 0; i < np; i++)
        if (cg_path_part(sch, i) != 0)
            fprintf(f, " model_%s.o", sch->path[i].isa);
    fputs("\nendif\n", f);
    for (int i = 0; i < np; i++) {
        const int ii = cg_isa_index(sch->path[i].isa);
        if (cg_path_part(sch, i) == 0 || ii < 0)
            continue;
        fprintf(
            f,
            "\nmodel_%s.o: model.c model.h\n\t$(CC) $(CFLAGS) -DCG_PART=%d %s -c model.c -o $@\n",
            sch->path[i].isa, cg_path_part(sch, i), cg_isa_info[ii].cflags);
    }
}

enum dp_err cg_emit_makefile(FILE *f, const struct cg_emit_opts *o, struct dp_errinfo *ei)
{
    /* -ffp-contract=fast: ISO C mode would otherwise keep a*b + c unfused.
     * No -march: each ISA path's part adds its own flags, part 0 runs on
     * any CPU of the architecture; -mtune only schedules for this one. */
    const char *cflags =
        strcmp(o->target, "native") == 0
            ? "-std=c11 -O3 -mtune=native -ffp-contract=fast -fopenmp -Wall -Wextra"
            : "-std=c11 -O2 -fopenmp -Wall -Wextra";
    for (size_t i = 0; cg_tmpl_makefile[i] != NULL; i++) {
        const char *l = cg_tmpl_makefile[i];
        const char *at;
        while ((at = strchr(l, '@')) != NULL) {
            fwrite(l, 1, (size_t)(at - l), f);
            if (strncmp(at, "@CFLAGS@", 8) == 0) {
                fputs(cflags, f);
                l = at + 8;
            } else if (strncmp(at, "@TARGET@", 8) == 0) {
                fputs(o->target, f);
                l = at + 8;
            } else if (strncmp(at, "@PARTS@", 7) == 0) {
                cg_emit_parts(f, o);
                l = at + 7;
            } else {
                fputc('@', f);
                l = at + 1;
            }
        }
        fputs(l, f);
    }
    return ferror(f) ? dp_errinfo_set(ei, DP_EIO, "writing the Makefile failed") : DP_OK;
}
