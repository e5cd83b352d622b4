/*
 * Purification (see purify.h).
 */
#include "worker/compress/purify.h"

#include <math.h>
#include <string.h>

#include "common/alloc.h"
#include "common/model_io.h"

struct pf_ctx {
    const struct dp_model *m;
    int n_sp;
    int *parent;          /* union-find over spaces */
    int *sp_n;            /* base channels of each space */
    int *pinned;          /* space may not lose channels */
    int *space, *ex;      /* per layer: space and expansion (features per base channel) */
    unsigned char **zero; /* per layer: base channel is an exact zero at its output */
    unsigned char **keep; /* per space root: channel kept */
};

static int pf_find(struct pf_ctx *p, int s)
{
    while (p->parent[s] != s)
        s = p->parent[s] = p->parent[p->parent[s]];
    return s;
}

static int pf_in_space(struct pf_ctx *p, int input)
{
    return input == DP_MODEL_INPUT ? pf_find(p, 0) : pf_find(p, p->space[input]);
}

static int pf_in_ex(const struct pf_ctx *p, int input)
{
    return input == DP_MODEL_INPUT ? 1 : p->ex[input];
}

static int pf_is_depthwise(const struct dp_model *m, int i)
{
    return m->layers[i].op == DP_OP_CONV2D && dp_layer_chan(m, i) == DP_OP_CHAN_KEEPS;
}

/* Does layer i start a channel space (a conv other than depthwise, or a linear)? */
static int pf_starts_space(const struct dp_model *m, int i)
{
    return dp_layer_chan(m, i) == DP_OP_CHAN_STARTS;
}

/* Channels kept in space root s. */
static int pf_kept(const struct pf_ctx *p, int s)
{
    int kept = 0;
    for (int c = 0; c < p->sp_n[s]; c++)
        kept += p->keep[s][c];
    return kept;
}

static const float *pf_param(const struct dp_model *m, const struct dp_layer *l, int k)
{
    return k < l->n_params ? m->data + m->params[l->first_param + k].offset : NULL;
}

/* Spaces, expansions and pins. */
static enum dp_err pf_spaces(struct pf_ctx *p, struct dp_errinfo *ei)
{
    const struct dp_model *m = p->m;
    const int n = m->n_layers;
    p->parent = dp_calloc((size_t)n + 1, sizeof(int));
    p->sp_n = dp_calloc((size_t)n + 1, sizeof(int));
    p->pinned = dp_calloc((size_t)n + 1, sizeof(int));
    p->space = dp_calloc((size_t)n, sizeof(int));
    p->ex = dp_calloc((size_t)n, sizeof(int));
    if (!p->parent || !p->sp_n || !p->pinned || !p->space || !p->ex)
        return dp_errinfo_set(ei, DP_ENOMEM, "out of memory for purification");
    p->n_sp = 1;
    p->parent[0] = 0;
    p->sp_n[0] = m->in_c;
    p->pinned[0] = 1;
    for (int i = 0; i < n; i++) {
        const struct dp_layer *l = &m->layers[i];
        const int in = l->inputs[0];
        /* Each op's row in common/op.c says how its channels relate to its inputs'. */
        switch (dp_layer_chan(m, i)) {
            case DP_OP_CHAN_STARTS: {
                const int s = p->n_sp++;
                p->parent[s] = s;
                p->sp_n[s] = l->out_c;
                p->space[i] = s;
                p->ex[i] = 1;
                if (l->op == DP_OP_CONV2D && l->a.groups > 1) {
                    p->pinned[s] = 1;
                    p->pinned[pf_in_space(p, in)] = 1;
                }
                break;
            }
            case DP_OP_CHAN_KEEPS: {
                /* Features per base channel scale with the per-channel size
                 * (flatten: h*w); GAP, pooling and the rest keep it. */
                const int c = in == DP_MODEL_INPUT ? m->in_c : m->layers[in].out_c;
                p->space[i] = pf_in_space(p, in);
                p->ex[i] = l->out_c / (c > 0 ? c : 1) * pf_in_ex(p, in);
                break;
            }
            case DP_OP_CHAN_JOINS: {
                const int a = pf_in_space(p, l->inputs[0]), b = pf_in_space(p, l->inputs[1]);
                if (a != b) {
                    p->parent[b] = a;
                    p->pinned[a] |= p->pinned[b];
                }
                p->space[i] = a;
                p->ex[i] = pf_in_ex(p, in);
                if (pf_in_ex(p, l->inputs[0]) != pf_in_ex(p, l->inputs[1]))
                    p->pinned[a] = 1;
                break;
            }
            case DP_OP_CHAN_OPAQUE: {
                /* An op this pass does not know: its channels stay as they are. */
                const int s = p->n_sp++;
                p->parent[s] = s;
                p->sp_n[s] = l->out_c;
                p->pinned[s] = 1;
                p->space[i] = s;
                p->ex[i] = 1;
                for (int k = 0; k < l->n_inputs; k++)
                    p->pinned[pf_in_space(p, l->inputs[k])] = 1;
                break;
            }
        }
    }
    p->pinned[pf_find(p, p->space[n - 1])] = 1; /* the model output */
    for (int s = 0; s < p->n_sp; s++)
        p->pinned[pf_find(p, s)] |= p->pinned[s];
    return DP_OK;
}

/* Exact zeros at every layer output, per base channel. */
static void pf_zeros(struct pf_ctx *p)
{
    const struct dp_model *m = p->m;
    for (int i = 0; i < m->n_layers; i++) {
        const struct dp_layer *l = &m->layers[i];
        const int in = l->inputs[0];
        const unsigned char *zin = in == DP_MODEL_INPUT ? NULL : p->zero[in];
        unsigned char *z = p->zero[i];
        const int nb = p->sp_n[pf_find(p, p->space[i])];
        const float *w = pf_param(m, l, 0), *b = pf_param(m, l, 1);
        memset(z, 0, (size_t)nb);
        if (l->op == DP_OP_CONV2D && !pf_is_depthwise(m, i) && l->a.groups == 1) {
            const int I = in == DP_MODEL_INPUT ? m->in_c : m->layers[in].out_c;
            const size_t kk = (size_t)l->a.kh * (size_t)l->a.kw;
            for (int o = 0; o < l->out_c; o++) {
                int zero = b == NULL || !l->a.has_bias || b[o] == 0.0f;
                for (int c = 0; zero && c < I; c++) {
                    if (zin != NULL && zin[c])
                        continue;
                    for (size_t k = 0; zero && k < kk; k++)
                        zero = w[((size_t)o * (size_t)I + (size_t)c) * kk + k] == 0.0f;
                }
                z[o] = (unsigned char)zero;
            }
        } else if (l->op == DP_OP_CONV2D && pf_is_depthwise(m, i)) {
            const size_t kk = (size_t)l->a.kh * (size_t)l->a.kw;
            for (int c = 0; c < l->out_c; c++) {
                int zero = b == NULL || !l->a.has_bias || b[c] == 0.0f;
                if (zero && !(zin != NULL && zin[c]))
                    for (size_t k = 0; zero && k < kk; k++)
                        zero = w[(size_t)c * kk + k] == 0.0f;
                z[c] = (unsigned char)zero;
            }
        } else if (l->op == DP_OP_LINEAR) {
            const int F = in == DP_MODEL_INPUT ? m->in_c * m->in_h * m->in_w : m->layers[in].out_c;
            const int ex = pf_in_ex(p, in);
            for (int o = 0; o < l->out_c; o++) {
                int zero = b == NULL || !l->a.has_bias || b[o] == 0.0f;
                for (int f = 0; zero && f < F; f++)
                    zero = (zin != NULL && zin[f / ex]) ||
                           w[(size_t)o * (size_t)F + (size_t)f] == 0.0f;
                z[o] = (unsigned char)zero;
            }
        } else if (l->op == DP_OP_BN2D) {
            const float *mean = pf_param(m, l, 2), *var = pf_param(m, l, 3);
            for (int c = 0; c < nb; c++) {
                const float g = w[c], be = b[c];
                const double at0 = (double)be - (double)g * (double)mean[c] /
                                                    sqrt((double)var[c] + (double)l->a.eps);
                z[c] = (unsigned char)((g == 0.0f && be == 0.0f) ||
                                       (zin != NULL && zin[c] && at0 == 0.0));
            }
        } else if (l->op == DP_OP_ADD) {
            const unsigned char *z2 = p->zero[l->inputs[1]];
            for (int c = 0; c < nb; c++)
                z[c] = (unsigned char)(zin != NULL && z2 != NULL &&
                                       l->inputs[1] != DP_MODEL_INPUT && zin[c] && z2[c]);
        } else if (l->op == DP_OP_MUL && dp_layer_chan(m, i) == DP_OP_CHAN_JOINS) {
            /* A product is zero where either factor is: a block channel
             * that is zero stays zero whatever its squeeze-excitation
             * scale, and a scale that is zero silences its channel. */
            const int in2 = l->inputs[1];
            const unsigned char *z2 = in2 == DP_MODEL_INPUT ? NULL : p->zero[in2];
            for (int c = 0; c < nb; c++)
                z[c] = (unsigned char)((zin != NULL && zin[c]) || (z2 != NULL && z2[c]));
        } else if (dp_op_info(l->op)->keeps_zeros) { /* relu, pooling, flatten, ... */
            if (zin != NULL)
                memcpy(z, zin, (size_t)nb);
        }
    }
}

/* One sweep of the use analysis; returns the number of channels newly
 * dropped. A channel stays when some conv/linear outside the space reads a
 * non-zero value of it with a non-zero weight into a kept output. */
static int pf_sweep(struct pf_ctx *p)
{
    const struct dp_model *m = p->m;
    int changed = 0;
    unsigned char **used = dp_calloc((size_t)p->n_sp, sizeof(unsigned char *));
    if (used == NULL)
        return 0;
    for (int s = 0; s < p->n_sp; s++) {
        if (pf_find(p, s) == s)
            used[s] = dp_calloc((size_t)p->sp_n[s] + 1, 1);
    }
    for (int i = 0; i < m->n_layers; i++) {
        const struct dp_layer *l = &m->layers[i];
        if (!pf_starts_space(m, i))
            continue;
        const int in = l->inputs[0];
        const int s_in = pf_in_space(p, in), s_out = pf_find(p, p->space[i]);
        if (p->pinned[s_in] || used[s_in] == NULL)
            continue;
        const unsigned char *zin = in == DP_MODEL_INPUT ? NULL : p->zero[in];
        const unsigned char *kout = p->keep[s_out];
        const float *w = pf_param(m, l, 0);
        const int ex = pf_in_ex(p, in);
        const int F = in == DP_MODEL_INPUT ? m->in_c : m->layers[in].out_c; /* conv: channels */
        const size_t row =
            l->op == DP_OP_LINEAR ? (size_t)F : (size_t)F * (size_t)l->a.kh * (size_t)l->a.kw;
        const size_t per = l->op == DP_OP_LINEAR ? (size_t)ex : (size_t)l->a.kh * (size_t)l->a.kw;
        const int nb = p->sp_n[s_in];
        for (int c = 0; c < nb; c++) {
            if (used[s_in][c] || !p->keep[s_in][c] || (zin != NULL && zin[c]))
                continue;
            for (int o = 0; o < l->out_c && !used[s_in][c]; o++) {
                if (!kout[o])
                    continue;
                const float *wr = w + (size_t)o * row + (size_t)c * per;
                for (size_t k = 0; k < per; k++) {
                    if (wr[k] != 0.0f) {
                        used[s_in][c] = 1;
                        break;
                    }
                }
            }
        }
    }
    for (int s = 0; s < p->n_sp; s++) {
        if (pf_find(p, s) != s || p->pinned[s] || used[s] == NULL)
            continue;
        for (int c = 0; c < p->sp_n[s]; c++) {
            if (p->keep[s][c] && !used[s][c]) {
                p->keep[s][c] = 0;
                changed++;
            }
        }
    }
    for (int s = 0; s < p->n_sp; s++)
        dp_free(used[s]);
    dp_free(used);
    return changed;
}

/* Copies the kept slices of every parameter of layer i from m into q. */
static void pf_copy_layer(struct pf_ctx *p, const struct dp_model *q, int i)
{
    const struct dp_model *m = p->m;
    const struct dp_layer *l = &m->layers[i];
    const int in = l->inputs[0];
    const unsigned char *kin = p->keep[pf_in_space(p, in)];
    const unsigned char *kout = p->keep[pf_find(p, p->space[i])];
    const int ex = l->op == DP_OP_LINEAR ? pf_in_ex(p, in) : 1;
    for (int k = 0; k < l->n_params; k++) {
        const struct dp_param *src = &m->params[l->first_param + k];
        const struct dp_param *dst = &q->params[q->layers[i].first_param + k];
        const float *s = m->data + src->offset;
        float *d = q->data + dst->offset;
        if (src->ndim == 1) { /* bias or BN vector, over output channels */
            size_t at = 0;
            for (int64_t c = 0; c < src->shape[0]; c++)
                if (kout[c])
                    d[at++] = s[c];
            continue;
        }
        const int64_t O = src->shape[0], I = src->shape[1];
        const size_t kk = src->ndim == 4 ? (size_t)(src->shape[2] * src->shape[3]) : 1;
        const int grouped = l->op == DP_OP_CONV2D && l->a.groups > 1;
        size_t at = 0;
        for (int64_t o = 0; o < O; o++) {
            if (!kout[o])
                continue;
            for (int64_t c = 0; c < I; c++) {
                if (!grouped && !kin[c / ex])
                    continue;
                memcpy(d + at, s + ((size_t)o * (size_t)I + (size_t)c) * kk, kk * sizeof(float));
                at += kk;
            }
        }
    }
}

enum dp_err cp_purify(const struct dp_model *m, struct dp_model **out, json_t **stats,
                      struct dp_errinfo *ei)
{
    struct pf_ctx p;
    memset(&p, 0, sizeof(p));
    p.m = m;
    *out = NULL;
    *stats = NULL;
    json_t *graph = NULL;
    struct dp_model *q = NULL;
    enum dp_err err = pf_spaces(&p, ei);
    if (!err) {
        p.zero = dp_calloc((size_t)m->n_layers, sizeof(unsigned char *));
        p.keep = dp_calloc((size_t)p.n_sp, sizeof(unsigned char *));
        if (p.zero == NULL || p.keep == NULL)
            err = dp_errinfo_set(ei, DP_ENOMEM, "out of memory for purification");
    }
    for (int i = 0; !err && i < m->n_layers; i++) {
        p.zero[i] = dp_calloc((size_t)p.sp_n[pf_find(&p, p.space[i])] + 1, 1);
        if (p.zero[i] == NULL)
            err = dp_errinfo_set(ei, DP_ENOMEM, "out of memory for purification");
    }
    for (int s = 0; !err && s < p.n_sp; s++) {
        if (pf_find(&p, s) != s)
            continue;
        p.keep[s] = dp_malloc((size_t)p.sp_n[s] + 1);
        if (p.keep[s] == NULL)
            err = dp_errinfo_set(ei, DP_ENOMEM, "out of memory for purification");
        else
            memset(p.keep[s], 1, (size_t)p.sp_n[s] + 1);
    }
    if (err)
        goto out;
    pf_zeros(&p);
    /* Channels that are zero everywhere in their space go at once; then
     * unused channels, to a fixed point (dropping filters can make their
     * inputs unused). A space keeps at least one channel so that every
     * layer keeps a shape. */
    int removed = 0;
    for (int it = 0; it < 1000; it++) {
        const int ch = pf_sweep(&p);
        removed += ch;
        if (ch == 0)
            break;
    }
    for (int s = 0; s < p.n_sp; s++) {
        if (pf_find(&p, s) != s)
            continue;
        if (pf_kept(&p, s) == 0 && p.sp_n[s] > 0) {
            p.keep[s][0] = 1;
            removed--;
        }
    }
    err = dp_model_graph_to_json(m, &graph, ei);
    if (err)
        goto out;
    json_t *gl = json_object_get(graph, "layers");
    for (int i = 0; i < m->n_layers; i++) {
        const int depthwise = pf_is_depthwise(m, i);
        if (!depthwise && !pf_starts_space(m, i))
            continue;
        const int kept = pf_kept(&p, pf_find(&p, p.space[i]));
        json_t *attrs = json_object_get(json_array_get(gl, (size_t)i), "attrs");
        json_object_set_new(attrs, "out_ch", json_integer(kept));
        if (depthwise) /* it follows its input's channels, one group each */
            json_object_set_new(attrs, "groups", json_integer(kept));
    }
    err = dp_model_graph_from_json(graph, &q, ei);
    if (err)
        goto out;
    for (int i = 0; i < m->n_layers; i++)
        pf_copy_layer(&p, q, i);
    json_t *layers = json_array();
    for (int i = 0; i < m->n_layers; i++) {
        const struct dp_layer *a = &m->layers[i], *b = &q->layers[i];
        if (a->n_params == 0 || a->n_params != b->n_params)
            continue;
        const struct dp_param *pa = &m->params[a->first_param], *pb = &q->params[b->first_param];
        if (pa->numel == pb->numel)
            continue;
        json_t *sa = json_array(), *sb = json_array();
        for (int d = 0; d < pa->ndim; d++) {
            json_array_append_new(sa, json_integer(pa->shape[d]));
            json_array_append_new(sb, json_integer(pb->shape[d]));
        }
        json_array_append_new(
            layers, json_pack("{s:s, s:o, s:o}", "name", a->name, "before", sa, "after", sb));
    }
    *stats = json_pack("{s:I, s:I, s:i, s:o}", "params_before", (json_int_t)dp_model_n_trainable(m),
                       "params_after", (json_int_t)dp_model_n_trainable(q), "channels_removed",
                       removed, "layers", layers);
    if (*stats == NULL) {
        err = dp_errinfo_set(ei, DP_ENOMEM, "out of memory for the purification report");
        goto out;
    }
    *out = q;
    q = NULL;
out:
    dp_model_free(q);
    json_decref(graph);
    for (int i = 0; p.zero != NULL && i < m->n_layers; i++)
        dp_free(p.zero[i]);
    for (int s = 0; p.keep != NULL && s < p.n_sp; s++)
        dp_free(p.keep[s]);
    dp_free(p.zero);
    dp_free(p.keep);
    dp_free(p.parent);
    dp_free(p.sp_n);
    dp_free(p.pinned);
    dp_free(p.space);
    dp_free(p.ex);
    return err;
}

/* ---- Dead filters -------------------------------------------------------- */

/* How far pf_dead looks back through elementwise ops before it gives up
 * (and says "not dead", which only keeps a channel). */
#define PF_DEAD_DEPTH 64

static int pf_row_zero(const struct dp_model *m, const struct dp_layer *l, int64_t o)
{
    const struct dp_param *w = &m->params[l->first_param];
    const size_t row = w->numel / (size_t)w->shape[0];
    const float *r = m->data + w->offset + (size_t)o * row;
    for (size_t k = 0; k < row; k++)
        if (r[k] != 0.0f)
            return 0;
    return 1;
}

static int pf_bias_zero(const struct dp_model *m, const struct dp_layer *l, int64_t o)
{
    return !l->a.has_bias || l->n_params < 2 ||
           m->data[m->params[l->first_param + 1].offset + (size_t)o] == 0.0f;
}

/*
 * Is channel c of layer i's output an exact zero whatever the input, as
 * the parameters stand? A conv or linear row of zeros without bias; a
 * BN whose scale and shift are zero; a depthwise conv whose kernel is zero
 * or whose input channel is dead, without bias; an op that keeps zeros
 * per channel on a dead input; an add of two dead operands; a product
 * with one dead factor (a squeeze-excitation scale of a dead channel).
 */
static int pf_dead(const struct dp_model *m, int i, int64_t c, int depth)
{
    if (i == DP_MODEL_INPUT || depth > PF_DEAD_DEPTH)
        return 0;
    const struct dp_layer *l = &m->layers[i];
    const int in = l->inputs[0];
    const int in_c = in == DP_MODEL_INPUT ? m->in_c : m->layers[in].out_c;
    if (l->op == DP_OP_CONV2D && pf_is_depthwise(m, i))
        return pf_bias_zero(m, l, c) && (pf_row_zero(m, l, c) || pf_dead(m, in, c, depth + 1));
    if (l->op == DP_OP_CONV2D || l->op == DP_OP_LINEAR)
        return pf_bias_zero(m, l, c) && pf_row_zero(m, l, c);
    if (l->op == DP_OP_BN2D)
        return m->data[m->params[l->first_param].offset + (size_t)c] == 0.0f &&
               m->data[m->params[l->first_param + 1].offset + (size_t)c] == 0.0f;
    if (l->op == DP_OP_ADD)
        return pf_dead(m, l->inputs[0], c, depth + 1) && pf_dead(m, l->inputs[1], c, depth + 1);
    if (l->op == DP_OP_MUL && dp_layer_chan(m, i) == DP_OP_CHAN_JOINS)
        return pf_dead(m, l->inputs[0], c, depth + 1) || pf_dead(m, l->inputs[1], c, depth + 1);
    if (dp_layer_chan(m, i) == DP_OP_CHAN_KEEPS && dp_op_info(l->op)->keeps_zeros &&
        l->out_c == in_c)
        return pf_dead(m, in, c, depth + 1);
    return 0;
}

static void pf_zero_at(struct dp_model *m, float *mask, const struct dp_layer *l, int k,
                       size_t from, size_t n)
{
    const size_t at = m->params[l->first_param + k].offset + from;
    memset(m->data + at, 0, n * sizeof(float));
    if (mask != NULL)
        memset(mask + at, 0, n * sizeof(float));
}

void cp_purify_zero_dead_filters(struct dp_model *m, float *mask)
{
    /* In execution order, so a layer sees its inputs' channels already
     * settled: the deadness of a pruned filter flows through BN, ReLU and
     * depthwise convs to the next layer that mixes channels. */
    for (int i = 0; i < m->n_layers; i++) {
        const struct dp_layer *l = &m->layers[i];
        if (l->op == DP_OP_CONV2D && l->n_params > 0) {
            const int dw = pf_is_depthwise(m, i);
            const size_t row = m->params[l->first_param].numel / (size_t)l->out_c;
            for (int64_t o = 0; o < l->out_c; o++) {
                /* A depthwise channel whose input is dead reads zeros: its
                 * kernel goes too, so that it is masked like a pruned one. */
                const int in_dead = dw && pf_dead(m, l->inputs[0], o, 0);
                if (in_dead)
                    pf_zero_at(m, mask, l, 0, (size_t)o * row, row);
                if ((in_dead || pf_row_zero(m, l, o)) && l->a.has_bias && l->n_params > 1)
                    pf_zero_at(m, mask, l, 1, (size_t)o, 1);
            }
        } else if (l->op == DP_OP_BN2D) {
            for (int64_t c = 0; c < l->out_c; c++) {
                if (!pf_dead(m, l->inputs[0], c, 0))
                    continue;
                pf_zero_at(m, mask, l, 0, (size_t)c, 1); /* scale */
                pf_zero_at(m, mask, l, 1, (size_t)c, 1); /* shift */
            }
        }
    }
}

/* ---- Channel shuffles ---------------------------------------------------- */

int cp_purify_shuffle_after(const struct dp_model *m, int layer)
{
    /* Forward from the layer through everything that carries its channels
     * (per-channel ops, adds, products, concat, slices) up to the next
     * layer that starts a space. */
    unsigned char *seen = dp_calloc((size_t)m->n_layers, 1);
    int *queue = dp_malloc((size_t)m->n_layers * sizeof(int));
    int found = -1, head = 0, tail = 0;
    if (seen == NULL || queue == NULL) {
        found = layer; /* out of memory: say it reaches one, which only refuses */
        goto out;
    }
    queue[tail++] = layer;
    seen[layer] = 1;
    while (head < tail && found < 0) {
        const int cur = queue[head++];
        for (int j = cur + 1; j < m->n_layers && found < 0; j++) {
            const struct dp_layer *l = &m->layers[j];
            int reads = 0;
            for (int k = 0; k < l->n_inputs; k++)
                reads |= l->inputs[k] == cur;
            if (!reads || seen[j])
                continue;
            if (l->op == DP_OP_SHUFFLE)
                found = j;
            else if (dp_layer_chan(m, j) != DP_OP_CHAN_STARTS) {
                seen[j] = 1;
                queue[tail++] = j;
            }
        }
    }
out:
    dp_free(seen);
    dp_free(queue);
    return found;
}
