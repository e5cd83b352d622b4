/*
 * model.c functions of the block-circulant and recurrent steps (see
 * cg_circ.h): each sets up its FFT tables and arrays from constant blob
 * offsets and calls the runtime's kernels (rt/rt_circ.c.in) with every
 * shape a constant.
 */
#include "worker/codegen/cg_circ.h"
#include "worker/codegen/cg_emit.h"

static void cg_emit_fft(FILE *f, int k, const struct cg_wsec *sec)
{
    const int m = k / 2, h = m / 2;
    fprintf(f,
            "    const float *tw = (const float *)(m->blob + %zu);\n"
            "    const struct cg_fft ff = {%d, %d, tw, tw + %d, tw + %d, tw + %d,\n"
            "                              (const uint32_t *)(m->blob + %zu)};\n",
            sec->tw, k, m, h, 2 * h, 2 * h + m + 1, sec->rev);
}

static void cg_emit_circ_title(FILE *f, const struct cg_plan *p, const struct cg_step *s)
{
    const struct cg_geom *g = &s->g;
    fputs("/*\n * ", f);
    cg_emit_cmt(f, p->m->layers[s->layer].name);
    fprintf(f, ": %s, %dx%dx%d -> %dx%dx%d", cg_kind_name(s->kind), g->C, g->H, g->W, g->F, g->OH,
            g->OW);
    cg_emit_fused(f, p, s);
    fprintf(f, ".\n * Format: %s; %zu stored weights; %lld FLOPs per image (%lld dense MACs).\n",
            cg_format_name(s->fmt), s->n_weights, s->flops, s->macs_dense);
}

void cg_emit_circ_step(FILE *f, const struct cg_plan *p, int k, const struct cg_wsec *sec)
{
    const struct cg_step *s = &p->steps[k];
    const struct cg_geom *g = &s->g;
    const int K = s->block, fft = cg_circ_fft_ok(K);
    struct cg_circ_scr sc;
    cg_circ_scratch(s, &sc);
    cg_emit_circ_title(f, p, s);
    if (s->kind == CG_K_CIRC_LINEAR || s->kind == CG_K_CIRC_CONV) {
        const int conv = s->kind == CG_K_CIRC_CONV;
        const int cols = conv ? g->C : g->C * g->H * g->W;
        const int P = (g->F + K - 1) / K, Q = (cols + K - 1) / K;
        fprintf(f,
                " * Kernel: block-circulant %d x %d in %d x %d blocks of %d; spectra (%s%d, %d, "
                "2, %d)\n * in weights.bin; radix-2 real FFTs of %d points%s.\n */\n",
                g->F, cols, P, Q, K, conv ? "taps, " : "", P, Q, K / 2 + 1, K,
                conv ? ", every input pixel's channels transformed once, output pixels split "
                       "between threads"
                     : ", input blocks then block rows split between threads");
        cg_emit_fn_open(f, p, k, 0);
        cg_emit_fft(f, K, sec);
        fprintf(f,
                "    const float *S = (const float *)(m->blob + %zu);\n"
                "    const float *bias = (const float *)(m->blob + %zu);\n"
                "    float *xs = m->scratch + %zu;\n"
                "    float *tmp = m->scratch + (size_t)tid * CG_SCRATCH_FLOATS + %zu;\n",
                sec->w, sec->b, sc.xs1, sc.tmp);
        if (conv)
            fprintf(f,
                    "    cg_circ_conv(m, &ff, y, x0, S, bias, %d, %d, %d, %d, %d, %d, %d, %d, %d, "
                    "%d, %d, %d, %d, %d, xs, tmp, ",
                    g->C, g->H, g->W, g->F, g->OH, g->OW, g->kh, g->kw, g->sh, g->sw, g->pt, g->pl,
                    P, Q);
        else
            fprintf(f, "    cg_circ_mv(m, &ff, y, x0, S, bias, %d, %d, %d, %d, xs, tmp, 0, ", g->F,
                    cols, P, Q);
        cg_emit_act_args(f, s);
        fputs(", tid, nth);\n}\n\n", f);
        return;
    }
    /* lstm, gru */
    const int lstm = s->kind == CG_K_LSTM, H = s->hidden, G = (lstm ? 4 : 3) * H;
    const int T = g->H, Fin = g->W;
    fprintf(f,
            " * Kernel: %d steps; per step gx = W_ih x_t + b_ih (%d x %d) and gh = W_hh h + b_hh\n"
            " * (%d x %d) %s, a barrier, then the %s cell of %d units\n"
            " * split between threads and a barrier; zero initial state; y (%d, %d) holds every\n"
            " * step's h. Gates and cell in the shared scratch.\n */\n",
            T, G, Fin, G, H,
            fft        ? "by the FFT kernel"
            : s->block ? "as dense rows of the expanded circulant matrices"
                       : "as dense rows",
            lstm ? "LSTM (i, f, g, o)" : "GRU (r, z, n)", H, T, H);
    cg_emit_fn_open(f, p, k, 0);
    fprintf(f,
            "    float *const sh = m->scratch;\n"
            "    float *restrict gx = sh + %zu, *restrict gh = sh + %zu;\n"
            "    const float *wih = (const float *)(m->blob + %zu);\n"
            "    const float *whh = (const float *)(m->blob + %zu);\n"
            "    const float *bih = (const float *)(m->blob + %zu);\n"
            "    const float *bhh = (const float *)(m->blob + %zu);\n",
            sc.gx, sc.gh, sec->w, sec->w2, sec->b, sec->b2);
    if (lstm)
        fprintf(f, "    float *restrict c = sh + %zu;\n", sc.c);
    if (fft) {
        cg_emit_fft(f, K, sec);
        fprintf(f,
                "    float *xs1 = sh + %zu, *xs2 = sh + %zu;\n"
                "    float *tmp = m->scratch + (size_t)tid * CG_SCRATCH_FLOATS + %zu;\n",
                sc.xs1, sc.xs2, sc.tmp);
    }
    fprintf(f, "    int j0, j1, g0, g1;\n    cg_split_even(%d, tid, nth, &j0, &j1);\n", H);
    fprintf(f, "    cg_split_even(%d, tid, nth, &g0, &g1);\n", G);
    if (lstm)
        fputs("    for (int j = j0; j < j1; j++)\n        c[j] = 0.0f;\n", f);
    fprintf(f, "    for (int t = 0; t < %d; t++) {\n", T);
    fprintf(f, "        const float *xt = x0 + (size_t)t * %d;\n", Fin);
    fprintf(f, "        const float *hp = t > 0 ? y + (size_t)(t - 1) * %d : NULL;\n", H);
    if (fft) {
        const int P = (G + K - 1) / K;
        fprintf(f,
                "        cg_circ_mv(m, &ff, gx, xt, wih, bih, %d, %d, %d, %d, xs1, tmp, 0, "
                "CG_ACT_NONE, 0.0f, 0.0f, tid, nth);\n",
                G, Fin, P, (Fin + K - 1) / K);
        fprintf(f,
                "        if (hp != NULL)\n"
                "            cg_circ_mv(m, &ff, gh, hp, whh, bhh, %d, %d, %d, %d, xs2, tmp, 0, "
                "CG_ACT_NONE, 0.0f, 0.0f, tid, nth);\n",
                G, H, P, (H + K - 1) / K);
    } else {
        fprintf(f, "        cg_dense_mv(gx, xt, wih, bih, %d, %d, 0, tid, nth);\n", G, Fin);
        fprintf(f,
                "        if (hp != NULL)\n"
                "            cg_dense_mv(gh, hp, whh, bhh, %d, %d, 0, tid, nth);\n",
                G, H);
    }
    fputs("        if (hp == NULL) /* zero initial state: W_hh h is 0 */\n"
          "            for (int i = g0; i < g1; i++)\n"
          "                gh[i] = bhh[i];\n"
          "        CG_BARRIER(); /* every gate before any unit reads it */\n",
          f);
    fprintf(f, "        float *ht = y + (size_t)t * %d;\n", H);
    if (lstm)
        fprintf(f, "        cg_lstm_cell(ht, c, gx, gh, %d, j0, j1);\n", H);
    else
        fprintf(f, "        cg_gru_cell(ht, hp, gx, gh, %d, j0, j1);\n", H);
    fputs("        CG_BARRIER(); /* h_t whole before the next step reads it */\n    }\n}\n\n", f);
}
