/*
 * The plan (see cg_plan.h): one walk over the IR that folds BatchNorm,
 * fuses activations, resolves aliases, chooses each weighted layer's
 * format from its zero structure and assigns activation slots.
 */
#include "worker/codegen/cg_plan.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "worker/codegen/cg_circ.h"

/* ---- The op table ------------------------------------------------------- */

/* What the compiler does with each IR op. */
enum cg_role {
    CG_ROLE_NONE = 0, /* no code for it: an error naming the layer */
    CG_ROLE_STEP,     /* starts a step of the given kind */
    CG_ROLE_ALIAS,    /* same values in the same memory order as its input */
};

struct cg_op_row {
    enum cg_role role;
    enum cg_kind kind;
    int takes_act;       /* a following activation can be fused into its epilogue */
    const char *why_not; /* CG_ROLE_NONE: the reason given to the user */
};

static const struct cg_op_row cg_ops[DP_OP__COUNT] = {
    [DP_OP_CONV2D] = {CG_ROLE_STEP, CG_K_CONV, 1, NULL},
    [DP_OP_LINEAR] = {CG_ROLE_STEP, CG_K_LINEAR, 1, NULL},
    [DP_OP_RELU] = {CG_ROLE_STEP, CG_K_ACT, 0, NULL},
    [DP_OP_RELU6] = {CG_ROLE_STEP, CG_K_ACT, 0, NULL},
    [DP_OP_CLIP] = {CG_ROLE_STEP, CG_K_ACT, 0, NULL},
    [DP_OP_MAXPOOL] = {CG_ROLE_STEP, CG_K_MAXPOOL, 0, NULL},
    [DP_OP_AVGPOOL] = {CG_ROLE_STEP, CG_K_AVGPOOL, 0, NULL},
    [DP_OP_GAP] = {CG_ROLE_STEP, CG_K_GAP, 0, NULL},
    [DP_OP_BN2D] = {CG_ROLE_STEP, CG_K_BN, 1, NULL},
    [DP_OP_ADD] = {CG_ROLE_STEP, CG_K_ADD, 1, NULL},
    [DP_OP_SOFTMAX] = {CG_ROLE_STEP, CG_K_SOFTMAX, 0, NULL},
    [DP_OP_FLATTEN] = {CG_ROLE_ALIAS, CG_K_ACT, 0, NULL},
    [DP_OP_DROPOUT] = {CG_ROLE_ALIAS, CG_K_ACT, 0, NULL}, /* identity in inference */
    [DP_OP_RESHAPE] = {CG_ROLE_ALIAS, CG_K_ACT, 0, NULL},
    [DP_OP_CONCAT] = {CG_ROLE_NONE, CG_K_ACT, 0, "concat has no kernel in the compiler yet"},
    [DP_OP_SIGMOID] = {CG_ROLE_NONE, CG_K_ACT, 0, "sigmoid has no kernel in the compiler yet"},
    [DP_OP_HARDSIGMOID] = {CG_ROLE_NONE, CG_K_ACT, 0,
                           "hardsigmoid has no kernel in the compiler yet"},
    [DP_OP_HARDSWISH] = {CG_ROLE_NONE, CG_K_ACT, 0, "hardswish has no kernel in the compiler yet"},
    [DP_OP_SILU] = {CG_ROLE_NONE, CG_K_ACT, 0, "silu has no kernel in the compiler yet"},
    [DP_OP_MUL] = {CG_ROLE_NONE, CG_K_ACT, 0, "mul has no kernel in the compiler yet"},
    [DP_OP_SUB] = {CG_ROLE_NONE, CG_K_ACT, 0, "sub has no kernel in the compiler yet"},
    [DP_OP_DIV] = {CG_ROLE_NONE, CG_K_ACT, 0, "div has no kernel in the compiler yet"},
    [DP_OP_SLICE] = {CG_ROLE_STEP, CG_K_SLICE, 0, NULL},
    [DP_OP_SHUFFLE] = {CG_ROLE_NONE, CG_K_ACT, 0, "shuffle has no kernel in the compiler yet"},
    [DP_OP_CONST] = {CG_ROLE_NONE, CG_K_ACT, 0, "const has no kernel in the compiler yet"},
    [DP_OP_ADD_BCAST] = {CG_ROLE_NONE, CG_K_ACT, 0, "add_bcast has no kernel in the compiler yet"},
    [DP_OP_MEAN] = {CG_ROLE_NONE, CG_K_ACT, 0, "mean has no kernel in the compiler yet"},
    /* A block that is not a power of two makes these CG_K_LINEAR or
     * CG_K_CONV steps with expanded weights (cg_step_add). */
    [DP_OP_CIRC_LINEAR] = {CG_ROLE_STEP, CG_K_CIRC_LINEAR, 1, NULL},
    [DP_OP_CIRC_CONV2D] = {CG_ROLE_STEP, CG_K_CIRC_CONV, 1, NULL},
    [DP_OP_LSTM] = {CG_ROLE_STEP, CG_K_LSTM, 0, NULL},
    [DP_OP_GRU] = {CG_ROLE_STEP, CG_K_GRU, 0, NULL},
};

const char *cg_format_name(enum cg_format f)
{
    switch (f) {
        case CG_FMT_DENSE:
            return "dense";
        case CG_FMT_FKW:
            return "fkw";
        case CG_FMT_IRREGULAR:
            return "irregular: dense fallback";
        case CG_FMT_CSR:
            return "csr";
        case CG_FMT_BITMASK:
            return "bitmask";
        case CG_FMT_CIRC:
            return "circulant: fft";
        case CG_FMT_NONE:
            break;
    }
    return "";
}

const char *cg_kind_name(enum cg_kind k)
{
    static const char *const names[] = {"conv",      "linear", "maxpool", "avgpool", "gap",
                                        "add",       "bn",     "act",     "softmax", "circ_linear",
                                        "circ_conv", "lstm",   "gru",     "slice"};
    return (unsigned)k < sizeof(names) / sizeof(names[0]) ? names[k] : "?";
}

/* ---- Helpers ------------------------------------------------------------ */

static void cg_in_shape(const struct dp_model *m, int v, int *c, int *h, int *w)
{
    if (v == DP_MODEL_INPUT) {
        *c = m->in_c;
        *h = m->in_h;
        *w = m->in_w;
    } else {
        *c = m->layers[v].out_c;
        *h = m->layers[v].out_h;
        *w = m->layers[v].out_w;
    }
}

/* The parameter `suffix` of layer i ("weight", "bias", ...), NULL when absent. */
static const float *cg_param(const struct dp_model *m, int i, const char *suffix)
{
    const struct dp_layer *l = &m->layers[i];
    for (int k = 0; k < l->n_params; k++) {
        const struct dp_param *p = &m->params[l->first_param + k];
        const char *dot = strrchr(p->name, '.');
        if (dot != NULL && strcmp(dot + 1, suffix) == 0)
            return dp_param_data(m, p);
    }
    return NULL;
}

/* The activation of layer i when it is one (RELU, RELU6, CLIP), else NONE. */
static enum cg_act cg_act_of(const struct dp_layer *l, float *lo, float *hi)
{
    switch (l->op) {
        case DP_OP_RELU:
            *lo = 0.0f;
            *hi = INFINITY;
            return CG_ACT_RELU;
        case DP_OP_RELU6:
            *lo = 0.0f;
            *hi = 6.0f;
            return CG_ACT_CLIP;
        case DP_OP_CLIP:
            *lo = l->a.lo;
            *hi = l->a.hi;
            return CG_ACT_CLIP;
        default:
            return CG_ACT_NONE;
    }
}

/*
 * Whether softmax layer l normalises over all of a sample's values, the
 * only softmax the runtime has (cg_softmax): every axis outside [axis,
 * axis_end] has size 1. A 1x1 map is not enough by itself: a softmax over
 * H and W of a Cx1x1 map is 1 everywhere, not a softmax over C.
 */
static int cg_softmax_is_whole(const struct dp_layer *l)
{
    const int dims[4] = {0, l->out_c, l->out_h, l->out_w}; /* axis 1 = C .. 3 = W */
    for (int d = 1; d <= 3; d++)
        if ((d < l->a.axis || d > l->a.axis_end) && dims[d] != 1)
            return 0;
    return 1;
}

/* ---- Weights: folding and analysis -------------------------------------- */

/*
 * Copies the step's weights and bias, folding BN layer bn (or -1) in:
 * y = (conv(x) + b - mean) * g / sqrt(var + eps) + beta, computed in double
 * so that the fold itself adds no rounding beyond the final float.
 */
static enum dp_err cg_weights_fold(const struct dp_model *m, struct cg_step *s, int per_out,
                                   struct dp_errinfo *ei)
{
    const int F = s->g.F;
    const size_t n = dp_size_mul((size_t)F, (size_t)per_out);
    s->w = dp_malloc(dp_size_mul(n, sizeof(float)));
    s->b = dp_calloc((size_t)F, sizeof(float));
    if (s->w == NULL || s->b == NULL)
        return dp_errinfo_set(ei, DP_ENOMEM, "layer '%s': out of memory for its weights",
                              m->layers[s->layer].name);
    const float *w = cg_param(m, s->layer, "weight");
    const float *b = m->layers[s->layer].a.has_bias ? cg_param(m, s->layer, "bias") : NULL;
    if (s->block > 0) /* a circulant layer run dense: its expanded matrix */
        cg_circ_expand(m, s, s->w);
    else
        memcpy(s->w, w, n * sizeof(float));
    for (int f = 0; f < F; f++)
        s->b[f] = b != NULL ? b[f] : 0.0f;
    if (s->bn_layer < 0)
        return DP_OK;
    const float *g = cg_param(m, s->bn_layer, "weight");
    const float *beta = cg_param(m, s->bn_layer, "bias");
    const float *mean = cg_param(m, s->bn_layer, "running_mean");
    const float *var = cg_param(m, s->bn_layer, "running_var");
    const double eps = m->layers[s->bn_layer].a.eps;
    for (int f = 0; f < F; f++) {
        const double sc = (double)g[f] / sqrt((double)var[f] + eps);
        for (int k = 0; k < per_out; k++)
            s->w[(size_t)f * (size_t)per_out + (size_t)k] =
                (float)((double)s->w[(size_t)f * (size_t)per_out + (size_t)k] * sc);
        s->b[f] = (float)(((double)s->b[f] - (double)mean[f]) * sc + (double)beta[f]);
    }
    return DP_OK;
}

static int cg_u16_cmp(const void *a, const void *b)
{
    const uint16_t x = *(const uint16_t *)a, y = *(const uint16_t *)b;
    return (x > y) - (x < y);
}

/*
 * Counts zeros, kernels and distinct kernel masks of a conv or linear
 * step and chooses its format (see cg_plan.h).
 */
static void cg_weights_analyse(struct cg_step *s)
{
    const struct cg_geom *g = &s->g;
    const int taps = s->kind == CG_K_CONV ? g->kh * g->kw : 1;
    const size_t C = s->kind == CG_K_CONV ? (size_t)g->C : (size_t)g->C * g->H * g->W;
    s->n_kernels = (size_t)g->F * C;
    s->n_weights = s->n_kernels * (size_t)taps;
    s->n_kernels_kept = 0;
    s->n_nonzero = 0;
    s->n_patterns = 0;
    int too_many = taps > CG_MAX_TAPS || s->kind != CG_K_CONV;
    for (size_t k = 0; k < s->n_kernels; k++) {
        const float *kw = s->w + k * (size_t)taps;
        unsigned mask = 0;
        for (int t = 0; t < taps; t++) {
            if (kw[t] != 0.0f) {
                mask |= 1u << (t < 31 ? t : 31);
                s->n_nonzero++;
            }
        }
        if (mask == 0)
            continue;
        s->n_kernels_kept++;
        if (too_many)
            continue;
        int found = 0;
        for (int p = 0; p < s->n_patterns && !found; p++)
            found = s->patterns[p] == mask;
        if (!found) {
            if (s->n_patterns == CG_MAX_PATTERNS)
                too_many = 1;
            else
                s->patterns[s->n_patterns++] = (uint16_t)mask;
        }
    }
    const double density = s->n_weights > 0 ? (double)s->n_nonzero / (double)s->n_weights : 1.0;
    const long long pix = s->kind == CG_K_CONV ? (long long)g->OH * g->OW : 1;
    s->macs_dense = (long long)s->n_weights * pix;
    if (!too_many && s->n_patterns > 0 && density <= CG_FKW_MAX_DENSITY) {
        s->fmt = CG_FMT_FKW;
        qsort(s->patterns, (size_t)s->n_patterns, sizeof(uint16_t), cg_u16_cmp);
    } else {
        s->n_patterns = 0;
        s->fmt = density < CG_IRREG_DENSITY ? CG_FMT_IRREGULAR : CG_FMT_DENSE;
    }
    /* The model's own figure, whatever the format runs (a dense fallback
     * computes the zeros too): effective GFLOP/s are quoted against it. */
    s->macs_nonzero = (long long)s->n_nonzero * pix;
}

/* ---- Building the steps ------------------------------------------------- */

struct cg_build {
    const struct dp_model *m;
    struct cg_plan *p;
    int *n_uses;   /* per layer: readers, +1 for the model output */
    int *consumer; /* per layer: its last reader */
    int *absorbed; /* per layer: folded or fused into an earlier step */
    int *canon;    /* per layer: the layer whose step output holds its values */
};

/* The single reader of layer i when it has exactly one, else -1. */
static int cg_only_reader(const struct cg_build *b, int i)
{
    return b->n_uses[i] == 1 ? b->consumer[i] : -1;
}

/* Fuses the activation that alone reads the step's output, if any. */
static void cg_fuse_act(struct cg_build *b, struct cg_step *s)
{
    const int r = cg_only_reader(b, s->out_value);
    if (r < 0)
        return;
    float lo, hi;
    const enum cg_act act = cg_act_of(&b->m->layers[r], &lo, &hi);
    if (act == CG_ACT_NONE)
        return;
    s->act = act;
    s->lo = lo;
    s->hi = hi;
    s->act_layer = r;
    s->out_value = r;
    b->absorbed[r] = 1;
}

static enum dp_err cg_step_add(struct cg_build *b, int i, struct dp_errinfo *ei)
{
    const struct dp_model *m = b->m;
    const struct dp_layer *l = &m->layers[i];
    const struct cg_op_row *row = &cg_ops[l->op];
    struct cg_plan *p = b->p;
    struct cg_step *s = &p->steps[p->n_steps++];
    memset(s, 0, sizeof(*s));
    s->kind = row->kind;
    if (row->kind == CG_K_CIRC_LINEAR || row->kind == CG_K_CIRC_CONV || row->kind == CG_K_LSTM ||
        row->kind == CG_K_GRU)
        s->block = l->a.block;
    /* Only a power-of-two block has the FFT kernel; others run as the
     * dense layer of their expanded matrix (cg_circ.h). */
    if (row->kind == CG_K_CIRC_LINEAR && !cg_circ_fft_ok(s->block))
        s->kind = CG_K_LINEAR;
    if (row->kind == CG_K_CIRC_CONV && !cg_circ_fft_ok(s->block))
        s->kind = CG_K_CONV;
    s->layer = i;
    s->out_value = i;
    s->bn_layer = -1;
    s->act_layer = -1;
    s->add_layer = -1;
    s->n_in = l->n_inputs;
    for (int k = 0; k < l->n_inputs; k++)
        s->in_value[k] = l->inputs[k] == DP_MODEL_INPUT ? CG_VALUE_INPUT : b->canon[l->inputs[k]];
    struct cg_geom *g = &s->g;
    cg_in_shape(m, l->inputs[0], &g->C, &g->H, &g->W);
    g->F = l->out_c;
    g->OH = l->out_h;
    g->OW = l->out_w;
    const struct dp_op_attrs *a = &l->a;
    if (s->kind == CG_K_CONV || s->kind == CG_K_MAXPOOL || s->kind == CG_K_AVGPOOL ||
        s->kind == CG_K_CIRC_CONV) {
        g->kh = a->kh;
        g->kw = a->kw;
        g->sh = a->sh;
        g->sw = a->sw;
        g->pt = a->pt;
        g->pl = a->pl;
        g->pb = a->pb;
        g->pr = a->pr;
        g->ceil_mode = a->ceil_mode;
        g->count_include_pad = a->count_include_pad;
        if (a->dh != 1 || a->dw != 1)
            return dp_errinfo_set(ei, DP_EUNSUPPORTED,
                                  "layer '%s': dilation %dx%d is not supported by the compiler",
                                  l->name, a->dh, a->dw);
    }
    if (s->kind == CG_K_CONV && a->kh * a->kw > CG_MAX_DENSE_TAPS)
        return dp_errinfo_set(ei, DP_EUNSUPPORTED,
                              "layer '%s': %dx%d convolution windows (more than %d taps) are not "
                              "supported by the compiler",
                              l->name, a->kh, a->kw, CG_MAX_DENSE_TAPS);
    if (s->kind == CG_K_CONV && a->groups != 1)
        return dp_errinfo_set(ei, DP_EUNSUPPORTED,
                              "layer '%s': grouped convolution (groups=%d) is not supported by "
                              "the compiler",
                              l->name, a->groups);
    if (s->kind == CG_K_ACT)
        s->act = cg_act_of(l, &s->lo, &s->hi);
    if (s->kind == CG_K_SLICE) {
        s->axis = a->axis;
        s->start = a->start;
    }
    if (s->kind == CG_K_SOFTMAX && !cg_softmax_is_whole(l))
        return dp_errinfo_set(ei, DP_EUNSUPPORTED,
                              "layer '%s': softmax over axes [%d, %d] of a %dx%dx%d map is not "
                              "supported by the compiler (only over all per-sample values)",
                              l->name, a->axis, a->axis_end, l->out_c, l->out_h, l->out_w);
    if (s->kind == CG_K_CONV || s->kind == CG_K_LINEAR) {
        /* BN folding: the BN must be the only reader and normalise our output channels. */
        const int r = cg_only_reader(b, i);
        if (r >= 0 && m->layers[r].op == DP_OP_BN2D) {
            s->bn_layer = r;
            s->out_value = r;
            b->absorbed[r] = 1;
        }
        const int per_out = s->kind == CG_K_CONV ? g->C * g->kh * g->kw : g->C * g->H * g->W;
        enum dp_err err = cg_weights_fold(m, s, per_out, ei);
        if (err)
            return err;
        cg_weights_analyse(s);
    } else if (s->kind == CG_K_CIRC_LINEAR || s->kind == CG_K_CIRC_CONV || s->kind == CG_K_LSTM ||
               s->kind == CG_K_GRU) {
        enum dp_err err = cg_circ_step_init(m, s, ei);
        if (err)
            return err;
    } else if (s->kind == CG_K_BN) {
        /* A BN nothing could absorb: y = x * scale + shift per channel. */
        s->bn_layer = i;
        s->w = dp_malloc(dp_size_mul((size_t)g->C, sizeof(float)));
        s->b = dp_malloc(dp_size_mul((size_t)g->C, sizeof(float)));
        if (s->w == NULL || s->b == NULL)
            return dp_errinfo_set(ei, DP_ENOMEM, "layer '%s': out of memory", l->name);
        const float *gm = cg_param(m, i, "weight"), *bt = cg_param(m, i, "bias");
        const float *mu = cg_param(m, i, "running_mean"), *var = cg_param(m, i, "running_var");
        for (int c = 0; c < g->C; c++) {
            /* The engine's own formula (nn_bn2d_forward_eval), so results match closely. */
            s->w[c] = gm[c] / sqrtf(var[c] + a->eps);
            s->b[c] = bt[c] - mu[c] * s->w[c];
        }
    }
    if (row->takes_act)
        cg_fuse_act(b, s);
    return DP_OK;
}

/* ---- Residual adds ------------------------------------------------------ */

/* The step that produces value v, or -1 (the model input, or none yet). */
static int cg_producer(const struct cg_plan *p, int v)
{
    for (int k = 0; k < p->n_steps; k++)
        if (p->steps[k].out_value == v)
            return k;
    return -1;
}

/*
 * Fuses each add (with its activation) into the convolution producing one
 * of its inputs when that convolution's output is read by the add alone,
 * has no activation of its own and runs after the other input exists;
 * the add's step is removed (see cg_plan.h).
 */
static void cg_fuse_residuals(struct cg_build *b)
{
    struct cg_plan *p = b->p;
    for (int k = 0; k < p->n_steps; k++) {
        const struct cg_step *a = &p->steps[k];
        if (a->kind != CG_K_ADD || a->n_in != 2)
            continue;
        int pk = -1, other = -1;
        for (int j = 0; j < 2 && pk < 0; j++) {
            const int v = a->in_value[j], o = a->in_value[1 - j];
            const int q = v >= 0 ? cg_producer(p, v) : -1;
            if (q < 0 || q >= k || p->steps[q].kind != CG_K_CONV ||
                p->steps[q].act != CG_ACT_NONE || p->steps[q].add_layer >= 0 || b->n_uses[v] != 1 ||
                o == v)
                continue;
            const int qo = o >= 0 ? cg_producer(p, o) : -1;
            if (o >= 0 && (qo < 0 || qo >= q))
                continue; /* the residual must exist before the convolution runs */
            pk = q;
            other = o;
        }
        if (pk < 0)
            continue;
        struct cg_step *c = &p->steps[pk];
        c->add_layer = a->layer;
        c->n_in = 2;
        c->in_value[1] = other;
        c->act = a->act;
        c->lo = a->lo;
        c->hi = a->hi;
        c->act_layer = a->act_layer;
        c->out_value = a->out_value;
        memmove(&p->steps[k], &p->steps[k + 1], (size_t)(p->n_steps - k - 1) * sizeof(*a));
        p->n_steps--;
        k--;
    }
}

/* ---- Slots -------------------------------------------------------------- */

static enum dp_err cg_slots_assign(struct cg_build *b, struct dp_errinfo *ei)
{
    const struct dp_model *m = b->m;
    struct cg_plan *p = b->p;
    const int L = m->n_layers;
    enum dp_err err = DP_OK;
    int *last_use = dp_malloc(dp_size_mul((size_t)L, sizeof(int)));
    int *slot_value = dp_malloc(dp_size_mul((size_t)p->n_steps + 1, sizeof(int)));
    if (last_use == NULL || slot_value == NULL) {
        err = dp_errinfo_set(ei, DP_ENOMEM, "out of memory planning activations");
        goto out;
    }
    for (int i = 0; i < L; i++)
        last_use[i] = -1;
    for (int k = 0; k < p->n_steps; k++) {
        const struct cg_step *s = &p->steps[k];
        for (int j = 0; j < s->n_in; j++)
            if (s->in_value[j] >= 0)
                last_use[s->in_value[j]] = k;
    }
    const int final = b->canon[L - 1];
    if (final >= 0)
        last_use[final] = p->n_steps; /* the output stays live to the end */
    p->n_slots = 0;
    p->slot_floats = 0;
    for (int i = 0; i < L; i++)
        p->value_slot[i] = -2;
    for (int k = 0; k < p->n_steps; k++) {
        struct cg_step *s = &p->steps[k];
        for (int j = 0; j < 2; j++)
            s->in_slot[j] = j < s->n_in && s->in_value[j] >= 0 ? p->value_slot[s->in_value[j]] : -1;
        int slot = -1;
        for (int q = 0; q < p->n_slots && slot < 0; q++) {
            if (slot_value[q] >= 0)
                continue;
            slot = q;
        }
        if (slot < 0)
            slot = p->n_slots++;
        slot_value[slot] = s->out_value;
        s->out_slot = slot;
        p->value_slot[s->out_value] = slot;
        const size_t n = (size_t)s->g.F * (size_t)s->g.OH * (size_t)s->g.OW;
        if (n > p->slot_floats)
            p->slot_floats = n;
        /* Free the slots whose value this step read last; never the output's. */
        for (int q = 0; q < p->n_slots; q++)
            if (slot_value[q] >= 0 && last_use[slot_value[q]] <= k && slot_value[q] != s->out_value)
                slot_value[q] = -1;
    }
out:
    dp_free(last_use);
    dp_free(slot_value);
    return err;
}

/* Sets the slot of every alias from its source, in layer order. */
static void cg_slots_alias(struct cg_build *b)
{
    for (int i = 0; i < b->m->n_layers; i++)
        if (b->p->value_slot[i] == -2 && b->canon[i] != i)
            b->p->value_slot[i] = b->canon[i] >= 0 ? b->p->value_slot[b->canon[i]] : -1;
}

enum dp_err cg_plan_build(const struct dp_model *m, struct cg_plan **out, struct dp_errinfo *ei)
{
    *out = NULL;
    enum dp_err err = DP_OK;
    const int L = m->n_layers;
    struct cg_build b = {m, NULL, NULL, NULL, NULL, NULL};
    if (L < 1)
        return dp_errinfo_set(ei, DP_EINVAL, "the model has no layers");
    b.p = dp_calloc(1, sizeof(*b.p));
    b.n_uses = dp_calloc((size_t)L, sizeof(int));
    b.consumer = dp_calloc((size_t)L, sizeof(int));
    b.absorbed = dp_calloc((size_t)L, sizeof(int));
    b.canon = dp_calloc((size_t)L, sizeof(int));
    if (b.p != NULL) {
        b.p->steps = dp_calloc((size_t)L, sizeof(struct cg_step));
        b.p->value_slot = dp_calloc((size_t)L, sizeof(int));
    }
    if (b.p == NULL || b.n_uses == NULL || b.consumer == NULL || b.absorbed == NULL ||
        b.canon == NULL || b.p->steps == NULL || b.p->value_slot == NULL) {
        err = dp_errinfo_set(ei, DP_ENOMEM, "out of memory planning the model");
        goto out;
    }
    b.p->m = m;
    for (int i = 0; i < L; i++) {
        for (int k = 0; k < m->layers[i].n_inputs; k++) {
            const int v = m->layers[i].inputs[k];
            if (v >= 0) {
                b.n_uses[v]++;
                b.consumer[v] = i;
            }
        }
    }
    b.n_uses[L - 1]++; /* the model output reads the last layer */
    b.consumer[L - 1] = -1;
    for (int i = 0; i < L; i++) {
        const struct dp_layer *l = &m->layers[i];
        b.canon[i] = i;
        if (b.absorbed[i])
            continue;
        const struct cg_op_row *row = (unsigned)l->op < DP_OP__COUNT ? &cg_ops[l->op] : NULL;
        if (row == NULL || row->role == CG_ROLE_NONE) {
            err = dp_errinfo_set(
                ei, DP_EUNSUPPORTED, "layer '%s': op %s is not supported by the compiler%s%s",
                l->name, dp_op_name(l->op) ? dp_op_name(l->op) : "?",
                row && row->why_not ? ": " : "", row && row->why_not ? row->why_not : "");
            goto out;
        }
        if (row->role == CG_ROLE_ALIAS) {
            b.canon[i] = l->inputs[0] == DP_MODEL_INPUT ? CG_VALUE_INPUT : b.canon[l->inputs[0]];
            continue;
        }
        err = cg_step_add(&b, i, ei);
        if (err)
            goto out;
    }
    cg_fuse_residuals(&b);
    /* Absorbed layers hold their step's output. */
    for (int k = 0; k < b.p->n_steps; k++) {
        const struct cg_step *s = &b.p->steps[k];
        if (s->bn_layer >= 0 && s->bn_layer != s->layer)
            b.canon[s->bn_layer] = s->out_value;
        if (s->act_layer >= 0)
            b.canon[s->act_layer] = s->out_value;
        if (s->add_layer >= 0)
            b.canon[s->add_layer] = s->out_value;
        b.canon[s->layer] = s->out_value;
    }
    if (b.canon[L - 1] < 0) {
        err = dp_errinfo_set(ei, DP_EUNSUPPORTED,
                             "the model's output is its input: nothing to compile");
        goto out;
    }
    err = cg_slots_assign(&b, ei);
    if (err)
        goto out;
    cg_slots_alias(&b);
    b.p->in_floats = (size_t)m->in_c * (size_t)m->in_h * (size_t)m->in_w;
    b.p->out_floats = dp_model_out_size(m, L - 1);
    for (int k = 0; k < b.p->n_steps; k++) {
        if (b.p->steps[k].flops == 0)
            b.p->steps[k].flops = 2 * b.p->steps[k].macs_nonzero;
        b.p->macs_dense += b.p->steps[k].macs_dense;
        b.p->macs_nonzero += b.p->steps[k].macs_nonzero;
    }
    *out = b.p;
    b.p = NULL;
out:
    cg_plan_free(b.p);
    dp_free(b.n_uses);
    dp_free(b.consumer);
    dp_free(b.absorbed);
    dp_free(b.canon);
    return err;
}

void cg_plan_free(struct cg_plan *p)
{
    if (p == NULL)
        return;
    if (p->steps != NULL) {
        for (int k = 0; k < p->n_steps; k++) {
            dp_free(p->steps[k].w);
            dp_free(p->steps[k].b);
        }
    }
    dp_free(p->steps);
    dp_free(p->value_slot);
    dp_free(p);
}
