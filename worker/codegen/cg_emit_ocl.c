/*
 * OpenCL emission (see cg_emit_ocl.h). The kernels are written as plain
 * text into a temporary file first, then copied into model.c as the
 * lines of one string array (cg_ocl_source) that model_create hands to
 * clCreateProgramWithSource. Every writer uses fprintf; the streams are
 * checked once at the end (ferror).
 */
#include "worker/codegen/cg_emit_ocl.h"

#include <ctype.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "worker/codegen/cg_ocl_templates_gen.h"

/* ---- Text helpers ------------------------------------------------------- */

static void cg_ocl_lines(FILE *f, const char *const *lines)
{
    for (size_t i = 0; lines[i] != NULL; i++)
        fputs(lines[i], f);
}

/* s (a name from the user's model) inside a comment: bytes that could
 * close or nest a comment, splice lines or form a trigraph once the text
 * sits in a C string literal ('*', '/', '\\', '?') and control or
 * non-ASCII bytes become '_'. */
static void cg_ocl_cmt(FILE *f, const char *s)
{
    for (; *s; s++) {
        const unsigned char ch = (unsigned char)*s;
        const int bad =
            ch == '*' || ch == '/' || ch == '\\' || ch == '?' || ch < 0x20 || ch >= 0x7f;
        fputc(bad ? '_' : ch, f);
    }
}

/* s as the body of a C string literal that bench also prints into JSON:
 * '"' and '\\' escaped for both, '?' as "\?" (no trigraph), control and
 * non-ASCII bytes as '_'. */
static void cg_ocl_str(FILE *f, const char *s)
{
    for (; *s; s++) {
        const unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            fprintf(f, "\\\\\\%c", ch);
        else if (ch == '?')
            fputs("\\?", f);
        else if (ch < 0x20 || ch >= 0x7f)
            fputc('_', f);
        else
            fputc(ch, f);
    }
}

/* The kernel name of step k, the same as the C targets' function name:
 * layer_<k>_<name with non-identifier characters as '_'>. */
static void cg_ocl_name(FILE *f, const struct cg_plan *p, int k)
{
    fprintf(f, "layer_%d_", k);
    const char *n = p->m->layers[p->steps[k].layer].name;
    for (int i = 0; n[i] != '\0' && i < 48; i++)
        fputc(isalnum((unsigned char)n[i]) ? n[i] : '_', f);
}

static void cg_ocl_float(FILE *f, float v)
{
    if (isinf(v))
        fprintf(f, "%sINFINITY", v < 0 ? "-" : "");
    else {
        char buf[32];
        snprintf(buf, sizeof(buf), "%.9g", (double)v);
        fprintf(f, "%s%sf", buf, strpbrk(buf, ".en") ? "" : ".0");
    }
}

/* The step's activation applied to the expression expr. */
static void cg_ocl_act(FILE *f, const struct cg_step *s, const char *expr)
{
    if (s->act == CG_ACT_RELU)
        fprintf(f, "cg_relu(%s)", expr);
    else if (s->act == CG_ACT_CLIP) {
        fprintf(f, "cg_clip(%s, ", expr);
        cg_ocl_float(f, s->lo);
        fputs(", ", f);
        cg_ocl_float(f, s->hi);
        fputs(")", f);
    } else
        fputs(expr, f);
}

/* What the step fuses, for its comment. */
static void cg_ocl_fused(FILE *f, const struct cg_plan *p, const struct cg_step *s)
{
    if (s->bn_layer >= 0 && s->bn_layer != s->layer) {
        fputs(", BN '", f);
        cg_ocl_cmt(f, p->m->layers[s->bn_layer].name);
        fputs("' folded", f);
    }
    if (s->add_layer >= 0) {
        fputs(", residual add '", f);
        cg_ocl_cmt(f, p->m->layers[s->add_layer].name);
        fputs("' fused (x1 added before the activation)", f);
    }
    if (s->act_layer >= 0) {
        fprintf(f, ", %s '", dp_op_name(p->m->layers[s->act_layer].op));
        cg_ocl_cmt(f, p->m->layers[s->act_layer].name);
        fputs("' fused", f);
    }
}

/* The opening every kernel shares: its comment's first line is written
 * by the caller; the signature (weights, first input, second input or
 * the first again, output). */
static void cg_ocl_open(FILE *f, const struct cg_plan *p, int k)
{
    const struct cg_step *s = &p->steps[k];
    fputs("__kernel void ", f);
    cg_ocl_name(f, p, k);
    fputs("(__global const uchar *restrict blob, __global const float *restrict x0,\n"
          "        __global const float *restrict x1, __global float *restrict y)\n{\n",
          f);
    /* Every kernel has the same four arguments (set once by the host);
     * those a step does not read are marked, so the kernels build
     * without a warning too. */
    if (s->kind != CG_K_CONV && s->kind != CG_K_LINEAR && s->kind != CG_K_BN)
        fputs("    (void)blob;\n", f);
    if (s->kind != CG_K_ADD && s->add_layer < 0)
        fputs("    (void)x1;\n", f);
}

/* ---- Work-item layouts -------------------------------------------------- */

/* Output pixels per work-item of a convolution: CG_OCL_PX, fewer on a
 * narrower map, 1 when the registers of a row of taps would pass 64
 * columns (large strides). */
static int cg_ocl_px(const struct cg_geom *g)
{
    int px = g->OW < CG_OCL_PX ? g->OW : CG_OCL_PX;
    if ((px - 1) * g->sw + g->kw > 64)
        px = 1;
    return px;
}

/* The largest divisor of n that is at most 64: a work-group size that
 * divides the global size (OpenCL 1.2). */
static int cg_ocl_group(int n)
{
    for (int d = n < 64 ? n : 64; d > 1; d--)
        if (n % d == 0)
            return d;
    return 1;
}

struct cg_ocl_range {
    int dims;
    size_t gws[2], lws[2]; /* lws[0] 0: the runtime chooses */
};

static struct cg_ocl_range cg_ocl_range_of(const struct cg_step *s)
{
    const struct cg_geom *g = &s->g;
    struct cg_ocl_range r = {1, {1, 1}, {0, 0}};
    const size_t HW = (size_t)g->H * (size_t)g->W;
    switch (s->kind) {
        case CG_K_CONV: {
            const int px = cg_ocl_px(g), nbx = (g->OW + px - 1) / px;
            r.dims = 2;
            r.gws[0] = (size_t)g->OH * (size_t)nbx;
            r.gws[1] = (size_t)g->F;
            r.lws[0] = (size_t)cg_ocl_group(g->OH * nbx);
            r.lws[1] = 1;
            break;
        }
        case CG_K_LINEAR:
            r.gws[0] = (size_t)g->F;
            break;
        case CG_K_MAXPOOL:
        case CG_K_AVGPOOL:
            r.gws[0] = (size_t)g->C * (size_t)g->OH * (size_t)g->OW;
            break;
        case CG_K_GAP:
            r.gws[0] = (size_t)g->C;
            break;
        case CG_K_ADD:
        case CG_K_BN:
        case CG_K_ACT:
            r.gws[0] = (size_t)g->C * HW;
            break;
        case CG_K_SOFTMAX:
            r.gws[0] = 1;
            break;
        case CG_K_CIRC_LINEAR: /* refused by cg_ocl_check */
        case CG_K_CIRC_CONV:
        case CG_K_LSTM:
        case CG_K_GRU:
        case CG_K_SLICE:
            break;
    }
    return r;
}

/* ---- Convolutions ------------------------------------------------------- */

/*
 * One kernel's taps (mask over the kh x kw window, weights at wk[0..n))
 * accumulated into the px pixel accumulators a0..: per window row, the
 * input columns its taps need for the px pixels are loaded once into
 * registers r<row>_<col> and shared by the taps of that row.
 */
static void cg_ocl_taps(FILE *f, const struct cg_step *s, unsigned mask, int px, const char *ind)
{
    const struct cg_geom *g = &s->g;
    const int T = g->kh * g->kw;
    int n = 0;
    fprintf(f, "%sconst float", ind);
    for (int t = 0; t < T; t++)
        if ((mask >> t) & 1u) {
            fprintf(f, "%s w%d = wk[%d]", n ? "," : "", n, n);
            n++;
        }
    fputs(";\n", f);
    int i = 0; /* the weight index of the row's first tap */
    for (int ky = 0; ky < g->kh; ky++) {
        uint64_t cols = 0;
        int n_row = 0;
        for (int kx = 0; kx < g->kw; kx++) {
            if (!((mask >> (ky * g->kw + kx)) & 1u))
                continue;
            n_row++;
            for (int q = 0; q < px; q++)
                cols |= (uint64_t)1 << (q * g->sw + kx);
        }
        if (n_row == 0)
            continue;
        for (int c = 0; c < 64; c++)
            if ((cols >> c) & 1u)
                fprintf(f, "%sconst float r%d_%d = CG_IN(xc, iy0 + %d, ix0 + %d, %d, %d);\n", ind,
                        ky, c, ky, c, g->H, g->W);
        for (int kx = 0; kx < g->kw; kx++) {
            if (!((mask >> (ky * g->kw + kx)) & 1u))
                continue;
            fputs(ind, f);
            for (int q = 0; q < px; q++)
                fprintf(f, "%sa%d += w%d * r%d_%d;", q ? " " : "", q, i, ky, q * g->sw + kx);
            fputs("\n", f);
            i++;
        }
    }
}

static void cg_ocl_mask_comment(FILE *f, const struct cg_step *s, unsigned mask)
{
    fprintf(f, "mask 0x%03x, taps", mask);
    for (int t = 0; t < s->g.kh * s->g.kw; t++)
        if ((mask >> t) & 1u)
            fprintf(f, " (%d,%d)", t / s->g.kw, t % s->g.kw);
}

static int cg_ocl_popcount(unsigned m)
{
    int n = 0;
    for (; m; m &= m - 1)
        n++;
    return n;
}

static void cg_ocl_conv(FILE *f, const struct cg_plan *p, int k, const struct cg_wsec *sec)
{
    const struct cg_step *s = &p->steps[k];
    const struct cg_geom *g = &s->g;
    const int px = cg_ocl_px(g), nbx = (g->OW + px - 1) / px, T = g->kh * g->kw;
    const int HW = g->H * g->W, OHW = g->OH * g->OW;
    const struct cg_ocl_range r = cg_ocl_range_of(s);
    fputs("/*\n * ", f);
    cg_ocl_cmt(f, p->m->layers[s->layer].name);
    fprintf(f, ": %dx%d conv stride %dx%d pad %d,%d,%d,%d, %d -> %d channels, %dx%d -> %dx%d",
            g->kh, g->kw, g->sh, g->sw, g->pt, g->pl, g->pb, g->pr, g->C, g->F, g->H, g->W, g->OH,
            g->OW);
    cg_ocl_fused(f, p, s);
    if (s->fmt == CG_FMT_FKW)
        fprintf(f,
                ".\n * Format: fkw, %d patterns, %zu of %zu kernels kept, %zu weights; %lld MACs "
                "(%lld dense).\n * Work-items: (%zu row blocks of %d pixels, %d filters in FKW's "
                "reordered order),\n * work-groups of %zu blocks of one filter; one loop per "
                "pattern, its taps constant.\n */\n",
                s->n_patterns, s->n_kernels_kept, s->n_kernels, s->n_nonzero, s->macs_nonzero,
                s->macs_dense, r.gws[0], px, g->F, r.lws[0]);
    else
        fprintf(f,
                ".\n * Format: %s, %zu weights (%zu non-zero), (F, C, %d, %d); %lld MACs.\n"
                " * Work-items: (%zu row blocks of %d pixels, %d filters), work-groups of %zu "
                "blocks\n * of one filter; the channel loop runs all %d taps unrolled.\n */\n",
                cg_format_name(s->fmt), s->n_weights, s->n_nonzero, g->kh, g->kw, s->macs_dense,
                r.gws[0], px, g->F, r.lws[0], T);
    cg_ocl_open(f, p, k);
    fputs("    const int blk = get_global_id(0), j = get_global_id(1);\n", f);
    fprintf(f, "    const int oy = blk / %d, ox0 = blk %% %d * %d;\n", nbx, nbx, px);
    fprintf(f, "    const int iy0 = oy * %d - %d, ix0 = ox0 * %d - %d;\n", g->sh, g->pt, g->sw,
            g->pl);
    fputs("    float", f);
    for (int q = 0; q < px; q++)
        fprintf(f, "%s a%d = 0.0f", q ? "," : "", q);
    fputs(";\n", f);
    if (s->fmt == CG_FMT_FKW) {
        const int P = s->n_patterns;
        fprintf(f, "    __global const uint *kptr = CG_U32(%zu), *woff = CG_U32(%zu);\n", sec->kptr,
                sec->woff);
        fprintf(f, "    __global const ushort *pr = CG_U16(%zu) + (size_t)j * %d;\n", sec->prun,
                P + 1);
        fprintf(f, "    __global const ushort *ci = CG_U16(%zu) + kptr[j];\n", sec->cin);
        fprintf(f, "    __global const float *wk = CG_F32(%zu) + woff[j];\n", sec->w);
        for (int q = 0; q < P; q++) {
            fprintf(f, "    /* pattern %d: ", q);
            cg_ocl_mask_comment(f, s, s->patterns[q]);
            fputs(" */\n", f);
            fprintf(f, "    for (int e = pr[%d]; e < pr[%d]; e++, wk += %d) {\n", q, q + 1,
                    cg_ocl_popcount(s->patterns[q]));
            fprintf(f, "        __global const float *xc = x0 + (size_t)ci[e] * %d;\n", HW);
            cg_ocl_taps(f, s, s->patterns[q], px, "        ");
            fputs("    }\n", f);
        }
        fprintf(f, "    const int fo = CG_U16(%zu)[j]; /* the original output channel */\n",
                sec->perm);
    } else {
        const unsigned all = T >= 32 ? ~0u : (1u << T) - 1u;
        fprintf(f, "    __global const float *wk = CG_F32(%zu) + (size_t)j * %d;\n", sec->w,
                g->C * T);
        fprintf(f, "    for (int c = 0; c < %d; c++, wk += %d) {\n", g->C, T);
        fprintf(f, "        __global const float *xc = x0 + (size_t)c * %d;\n", HW);
        cg_ocl_taps(f, s, all, px, "        ");
        fputs("    }\n    const int fo = j;\n", f);
    }
    fprintf(f, "    const float bias = CG_F32(%zu)[j];\n", sec->b);
    fprintf(f, "    const size_t o = (size_t)fo * %d + (size_t)oy * %d + (size_t)ox0;\n", OHW,
            g->OW);
    for (int q = 0; q < px; q++) {
        char expr[64];
        const int guard = q > 0 && g->OW % px != 0;
        if (guard)
            fprintf(f, "    if (ox0 + %d < %d)\n    ", q, g->OW);
        snprintf(expr, sizeof(expr), "a%d + bias%s", q, s->add_layer >= 0 ? " + x1[o + " : "");
        if (s->add_layer >= 0)
            snprintf(expr + strlen(expr), sizeof(expr) - strlen(expr), "%d]", q);
        fprintf(f, "    y[o + %d] = ", q);
        cg_ocl_act(f, s, expr);
        fputs(";\n", f);
    }
    fputs("}\n\n", f);
}

/* ---- Other steps -------------------------------------------------------- */

static void cg_ocl_simple(FILE *f, const struct cg_plan *p, int k, const struct cg_wsec *sec)
{
    const struct cg_step *s = &p->steps[k];
    const struct cg_geom *g = &s->g;
    const int HW = g->H * g->W, OHW = g->OH * g->OW;
    fputs("/* ", f);
    cg_ocl_cmt(f, p->m->layers[s->layer].name);
    fprintf(f, ": %s, %dx%dx%d -> %dx%dx%d", cg_kind_name(s->kind), g->C, g->H, g->W, g->F, g->OH,
            g->OW);
    cg_ocl_fused(f, p, s);
    if (s->kind == CG_K_LINEAR)
        fprintf(f, "; format %s, %zu weights (%zu non-zero); a work-item per output",
                cg_format_name(s->fmt), s->n_weights, s->n_nonzero);
    fputs(" */\n", f);
    cg_ocl_open(f, p, k);
    fputs("    const int i = get_global_id(0);\n", f);
    switch (s->kind) {
        case CG_K_LINEAR:
            fprintf(f, "    __global const float *w = CG_F32(%zu) + (size_t)i * %d;\n", sec->w,
                    g->C * HW);
            fprintf(f,
                    "    float s = 0.0f;\n    for (int c = 0; c < %d; c++)\n"
                    "        s += w[c] * x0[c];\n",
                    g->C * HW);
            fputs("    y[i] = ", f);
            {
                char expr[48];
                snprintf(expr, sizeof(expr), "CG_F32(%zu)[i] + s", sec->b);
                cg_ocl_act(f, s, expr);
            }
            fputs(";\n", f);
            break;
        case CG_K_MAXPOOL:
        case CG_K_AVGPOOL:
            /* The C targets' cg_pool: padded positions never win a max; an
             * average divides by the window inside the padded extent
             * (count_include_pad) or the real positions only. */
            fprintf(f, "    const int c = i / %d, oh = i %% %d / %d, ow = i %% %d;\n", OHW, OHW,
                    g->OW, g->OW);
            fprintf(f, "    const int h0 = oh * %d - %d, w0 = ow * %d - %d;\n", g->sh, g->pt, g->sw,
                    g->pl);
            fprintf(f, "    __global const float *xc = x0 + (size_t)c * %d;\n", HW);
            fputs("    float best = -INFINITY, sum = 0.0f;\n    int seen = 0;\n", f);
            fprintf(f, "    for (int a = h0 < 0 ? 0 : h0; a < h0 + %d && a < %d; a++)\n", g->kh,
                    g->H);
            fprintf(f, "        for (int b = w0 < 0 ? 0 : w0; b < w0 + %d && b < %d; b++) {\n",
                    g->kw, g->W);
            fprintf(f, "            const float v = xc[a * %d + b];\n", g->W);
            fputs("            if (!seen || v > best || v != v)\n                best = v;\n"
                  "            sum += v;\n            seen = 1;\n        }\n",
                  f);
            if (s->kind == CG_K_MAXPOOL) {
                fputs("    (void)sum;\n    y[i] = seen ? best : 0.0f;\n", f);
                break;
            }
            fputs("    (void)best;\n", f);
            if (g->count_include_pad)
                fprintf(f, "    const int hmin = %d, wmin = %d, hmax = %d, wmax = %d;\n", -g->pt,
                        -g->pl, g->H + g->pb, g->W + g->pr);
            else
                fprintf(f, "    const int hmin = 0, wmin = 0, hmax = %d, wmax = %d;\n", g->H, g->W);
            fputs("    const int a0 = h0 > hmin ? h0 : hmin, b0 = w0 > wmin ? w0 : wmin;\n", f);
            fprintf(f, "    const int a1 = h0 + %d < hmax ? h0 + %d : hmax;\n", g->kh, g->kh);
            fprintf(f, "    const int b1 = w0 + %d < wmax ? w0 + %d : wmax;\n", g->kw, g->kw);
            fputs("    const int cnt = (a1 - a0) * (b1 - b0);\n"
                  "    y[i] = cnt > 0 ? sum / (float)cnt : 0.0f;\n",
                  f);
            break;
        case CG_K_GAP:
            fprintf(f,
                    "    float s = 0.0f;\n    for (int t = 0; t < %d; t++)\n"
                    "        s += x0[(size_t)i * %d + t];\n    y[i] = s / %d.0f;\n",
                    HW, HW, HW);
            break;
        case CG_K_ADD:
            fputs("    y[i] = ", f);
            cg_ocl_act(f, s, "x0[i] + x1[i]");
            fputs(";\n", f);
            break;
        case CG_K_BN: {
            char expr[96];
            snprintf(expr, sizeof(expr), "x0[i] * CG_F32(%zu)[i / %d] + CG_F32(%zu)[i / %d]",
                     sec->w, HW, sec->b, HW);
            fputs("    y[i] = ", f);
            cg_ocl_act(f, s, expr);
            fputs(";\n", f);
            break;
        }
        case CG_K_ACT:
            fputs("    y[i] = ", f);
            cg_ocl_act(f, s, "x0[i]");
            fputs(";\n", f);
            break;
        case CG_K_SOFTMAX:
            /* One work-item: the sums of a few logits are not worth a reduction. */
            fprintf(f,
                    "    (void)i;\n    float mx = x0[0];\n    for (int t = 1; t < %d; t++)\n"
                    "        mx = x0[t] > mx ? x0[t] : mx;\n    float s = 0.0f;\n"
                    "    for (int t = 0; t < %d; t++) {\n        y[t] = exp(x0[t] - mx);\n"
                    "        s += y[t];\n    }\n    for (int t = 0; t < %d; t++)\n"
                    "        y[t] = y[t] / s;\n",
                    g->C * HW, g->C * HW, g->C * HW);
            break;
        case CG_K_CONV:
        case CG_K_CIRC_LINEAR: /* refused by cg_ocl_check */
        case CG_K_CIRC_CONV:
        case CG_K_LSTM:
        case CG_K_GRU:
        case CG_K_SLICE:
            break;
    }
    fputs("}\n\n", f);
}

/* ---- Plan checks -------------------------------------------------------- */

void cg_ocl_sched(struct cg_plan *p)
{
    for (int k = 0; k < p->n_steps; k++) {
        struct cg_step *s = &p->steps[k];
        s->sched = (struct cg_sched){.kern = s->kind == CG_K_CONV ? CG_KERN_SPATIAL : CG_KERN_NONE};
    }
}

enum dp_err cg_ocl_check(const struct cg_plan *p, struct dp_errinfo *ei)
{
    for (int k = 0; k < p->n_steps; k++) {
        const struct cg_step *s = &p->steps[k];
        const char *name = p->m->layers[s->layer].name;
        switch (s->kind) {
            case CG_K_CONV:
                if (s->g.kh * s->g.kw > CG_MAX_DENSE_TAPS || s->g.kh * s->g.kw < 1)
                    return dp_errinfo_set(ei, DP_EUNSUPPORTED,
                                          "layer '%s': a %dx%d window has no OpenCL kernel (up to "
                                          "%d taps)",
                                          name, s->g.kh, s->g.kw, CG_MAX_DENSE_TAPS);
                if (s->fmt == CG_FMT_FKW && s->g.kh * s->g.kw > CG_MAX_TAPS)
                    return dp_errinfo_set(ei, DP_EUNSUPPORTED,
                                          "layer '%s': an FKW window past %d taps has no OpenCL "
                                          "kernel",
                                          name, CG_MAX_TAPS);
                break;
            case CG_K_LINEAR:
            case CG_K_MAXPOOL:
            case CG_K_AVGPOOL:
            case CG_K_GAP:
            case CG_K_ADD:
            case CG_K_BN:
            case CG_K_ACT:
            case CG_K_SOFTMAX:
                break;
            case CG_K_CIRC_LINEAR:
            case CG_K_CIRC_CONV:
            case CG_K_LSTM:
            case CG_K_GRU:
            case CG_K_SLICE:
                return dp_errinfo_set(ei, DP_EUNSUPPORTED,
                                      "layer '%s': %s has no OpenCL kernel (block-circulant "
                                      "FFT, recurrent and slice layers compile for the native "
                                      "and portable targets)",
                                      name, cg_kind_name(s->kind));
            default:
                return dp_errinfo_set(ei, DP_EUNSUPPORTED,
                                      "layer '%s': step kind '%s' has no OpenCL kernel", name,
                                      cg_kind_name(s->kind));
        }
        /* The kernels read weights.bin in the layouts of these formats only;
         * a format added later (another layout) is refused until it has a
         * kernel here, never read as dense floats. */
        switch (s->fmt) {
            case CG_FMT_NONE:
            case CG_FMT_DENSE:
            case CG_FMT_FKW:
            case CG_FMT_IRREGULAR:
                break;
            default:
                return dp_errinfo_set(ei, DP_EUNSUPPORTED,
                                      "layer '%s': format '%s' has no OpenCL kernel", name,
                                      cg_format_name(s->fmt));
        }
        const int weighted = s->kind == CG_K_CONV || s->kind == CG_K_LINEAR;
        if ((s->fmt == CG_FMT_NONE) == weighted || (s->fmt == CG_FMT_FKW && s->kind != CG_K_CONV))
            return dp_errinfo_set(ei, DP_EUNSUPPORTED,
                                  "layer '%s': a %s step with format '%s' has no OpenCL kernel",
                                  name, cg_kind_name(s->kind), cg_format_name(s->fmt));
        /* The kernels index with int: every per-image extent must fit. */
        const struct cg_ocl_range r = cg_ocl_range_of(s);
        const double big = (double)s->g.C * s->g.H * s->g.W + (double)s->g.F * s->g.OH * s->g.OW;
        if (big > 2147483647.0 || r.gws[0] * r.gws[1] > 2147483647u)
            return dp_errinfo_set(ei, DP_EUNSUPPORTED,
                                  "layer '%s': its maps pass 2^31 floats (the OpenCL kernels index "
                                  "with int)",
                                  name);
    }
    return DP_OK;
}

/* ---- model.c ------------------------------------------------------------ */

/* Copies the kernel text in src into f as the lines of a C string array. */
static void cg_ocl_copy_source(FILE *f, FILE *src)
{
    char line[512];
    fputs("static const char *const cg_ocl_source[] = {\n", f);
    while (fgets(line, sizeof(line), src) != NULL) {
        fputs("    \"", f);
        for (const char *c = line; *c; c++) {
            if (*c == '\n')
                fputs("\\n", f);
            else if (*c == '"' || *c == '\\')
                fprintf(f, "\\%c", *c);
            else if (*c == '?')
                fputs("\\?", f);
            else if (*c == '\t')
                fputs("\\t", f);
            else
                fputc(*c, f);
        }
        fputs("\",\n", f);
    }
    fputs("    NULL};\n\n", f);
}

static int cg_ocl_slot(int slot)
{
    return slot < 0 ? -1 : slot;
}

/* A step's kernel, as model_get_info and bench give it. */
static void cg_ocl_kernel_str(FILE *f, const struct cg_step *s)
{
    if (s->kind == CG_K_CONV)
        fprintf(f, "opencl %d px x filter", cg_ocl_px(&s->g));
    else
        fputs("opencl", f);
}

enum dp_err cg_ocl_emit_model_c(FILE *f, const struct cg_plan *p, const struct cg_weights *w,
                                const struct cg_emit_opts *o, struct dp_errinfo *ei)
{
    const struct dp_model *m = p->m;
    enum dp_err err = cg_ocl_check(p, ei);
    if (err)
        return err;
    FILE *src = tmpfile();
    if (src == NULL)
        return dp_errinfo_set(ei, DP_EIO, "cannot create a temporary file for the kernel source");
    cg_ocl_lines(src, cg_tmpl_ocl_kernels);
    for (int k = 0; k < p->n_steps; k++) {
        if (p->steps[k].kind == CG_K_CONV)
            cg_ocl_conv(src, p, k, &w->sec[k]);
        else
            cg_ocl_simple(src, p, k, &w->sec[k]);
    }
    if (ferror(src) || fflush(src) != 0 || fseek(src, 0, SEEK_SET) != 0) {
        fclose(src);
        return dp_errinfo_set(ei, DP_EIO, "writing the kernel source failed");
    }

    fputs("/*\n * generated by dnnpress-worker compile from ", f);
    cg_ocl_cmt(f, o->source);
    fputs(" -- do not edit\n * model ", f);
    cg_ocl_cmt(f, o->name);
    fprintf(f,
            ", target opencl; %d layers; %lld MACs per image (%lld dense).\n *\n"
            " * A host runner over the OpenCL ICD loader: model_create picks the device\n"
            " * (the first GPU, else the first device; DNNPRESS_OPENCL_DEVICE=P:D picks\n"
            " * platform P's device D), builds the kernels below from source, uploads\n"
            " * weights.bin once and makes the activation buffers; model_run enqueues one\n"
            " * kernel per layer per image. API: model.h.\n */\n",
            p->n_steps, p->macs_nonzero, p->macs_dense);
    fputs("#define _POSIX_C_SOURCE 200809L\n#define CL_TARGET_OPENCL_VERSION 120\n"
          "#include \"model.h\"\n\n#include <CL/cl.h>\n#include <stdint.h>\n#include <stdio.h>\n"
          "#include <stdlib.h>\n#include <string.h>\n#include <time.h>\n\n",
          f);
    const int out_slot = p->value_slot[m->n_layers - 1];
    fprintf(f, "#define CG_DEFAULT_THREADS %d\n", o->sch->threads);
    fprintf(f, "#define CG_IN_FLOATS %zu\n#define CG_OUT_FLOATS %zu\n", p->in_floats,
            p->out_floats);
    fprintf(f, "#define CG_N_SLOTS %d\n#define CG_SLOT_FLOATS %zu\n",
            p->n_slots > 0 ? p->n_slots : 1, p->slot_floats > 0 ? p->slot_floats : 1);
    fprintf(f, "#define CG_N_STEPS %d\n#define CG_OUT_SLOT %d /* -1: the input buffer */\n",
            p->n_steps, cg_ocl_slot(out_slot));
    fprintf(f, "#define CG_WEIGHTS_BYTES %zuu\n#define CG_WEIGHTS_HASH 0x%016llxull\n\n", w->len,
            (unsigned long long)w->hash);
    fputs("/* ---- The kernels: OpenCL C, built by model_create ---- */\n\n", f);
    cg_ocl_copy_source(f, src);
    const int src_err = ferror(src);
    fclose(src);
    if (src_err)
        return dp_errinfo_set(ei, DP_EIO, "reading the kernel source back failed");

    fputs("/* ---- The network ---- */\n\n"
          "/* A layer's kernel, its buffers (slot index, -1: the input) and its\n"
          " * NDRange; a local size of 0 leaves the work-group to the runtime. */\n"
          "struct cg_ocl_step {\n    const char *kernel;\n    int in0, in1, out;\n"
          "    cl_uint dims;\n    size_t gws[2], lws[2];\n};\n\n"
          "static const struct cg_ocl_step cg_steps[CG_N_STEPS] = {\n",
          f);
    for (int k = 0; k < p->n_steps; k++) {
        const struct cg_step *s = &p->steps[k];
        const struct cg_ocl_range r = cg_ocl_range_of(s);
        const int in0 = cg_ocl_slot(s->in_slot[0]);
        const int in1 = s->n_in > 1 ? cg_ocl_slot(s->in_slot[1]) : in0;
        fputs("    {\"", f);
        cg_ocl_name(f, p, k);
        fprintf(f, "\", %d, %d, %d, %d, {%zu, %zu}, {%zu, %zu}},\n", in0, in1, s->out_slot, r.dims,
                r.gws[0], r.gws[1], r.lws[0], r.lws[1]);
    }
    fputs("};\n\nstatic const struct model_layer_info cg_layers[CG_N_STEPS] = {\n", f);
    for (int k = 0; k < p->n_steps; k++) {
        const struct cg_step *s = &p->steps[k];
        fputs("    {\"", f);
        cg_ocl_str(f, m->layers[s->layer].name);
        fprintf(f, "\", \"%s\", \"%s\", %lldLL, %lldLL, \"", cg_kind_name(s->kind),
                cg_format_name(s->fmt), s->macs_dense, s->macs_nonzero);
        cg_ocl_kernel_str(f, s);
        fputs("\"},\n", f);
    }
    /* One path (model.h's ISA paths): the OpenCL kernels, "opencl". */
    fputs("};\n\nstatic const char *const cg_kernels_opencl[CG_N_STEPS] = {\n", f);
    for (int k = 0; k < p->n_steps; k++) {
        fputs("    \"", f);
        cg_ocl_kernel_str(f, &p->steps[k]);
        fputs("\",\n", f);
    }
    fputs("};\n\nstatic const struct model_path_info cg_path_info[1] = {\n"
          "    {\"opencl\", 0, cg_kernels_opencl},\n};\n",
          f);
    fputs("\nstatic const struct model_info cg_info = {\n    \"", f);
    cg_ocl_str(f, o->name);
    fprintf(f,
            "\", \"opencl\", %d, %d, %d, %zu, %d, cg_layers, %lldLL, %lldLL, %d, 1, "
            "cg_path_info,\n};\n",
            m->in_c, m->in_h, m->in_w, p->out_floats, p->n_steps, p->macs_dense, p->macs_nonzero,
            o->sch->threads);
    cg_ocl_lines(f, cg_tmpl_ocl_rt);
    if (ferror(f))
        return dp_errinfo_set(ei, DP_EIO, "writing model.c failed");
    return DP_OK;
}

enum dp_err cg_ocl_emit_makefile(FILE *f, struct dp_errinfo *ei)
{
    cg_ocl_lines(f, cg_tmpl_ocl_makefile);
    return ferror(f) ? dp_errinfo_set(ei, DP_EIO, "writing the Makefile failed") : DP_OK;
}
