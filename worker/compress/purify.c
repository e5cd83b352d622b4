/*
 * Purification (see purify.h).
 *
 * DESIGN: every base channel of every layer output is named by a channel
 * id. A layer that starts channels (conv2d, linear) or that this pass does
 * not know makes new ids; one that keeps channels shares its input's ids;
 * one that joins operands (add, a per-channel product) unites the ids of
 * its operands channel by channel (union-find); one that routes channels
 * (a channel slice or concat, a shuffle) takes each output channel's id
 * from the input channel its op row says it moves. Keeping or removing is
 * decided per id, so a channel goes from every layer it passes through at
 * once, whatever order the routes put it in, and routes need no space of
 * their own. The ids of a layer's output are its "cid" array, one per
 * base channel (a flattened map has ex features per base channel).
 */
#include "worker/compress/purify.h"

#include <math.h>
#include <string.h>

#include "common/alloc.h"
#include "common/model_io.h"

struct pf_ctx {
    const struct dp_model *m;
    int n_ids;
    int *parent;          /* union-find over channel ids */
    unsigned char *pin;   /* per id: may not be removed (read at its root) */
    unsigned char *keep;  /* per root id: kept */
    int *cid_in;          /* ids of the model input's channels */
    int **cid;            /* per layer: ids of its output's base channels */
    int *nc, *ex;         /* per layer: base channels, features per base channel */
    unsigned char *route; /* per layer: its channels were routed (ROUTES, followed) */
    unsigned char **zero; /* per layer: base channel is an exact zero at its output */
};

static int pf_find(struct pf_ctx *p, int s)
{
    while (p->parent[s] != s)
        s = p->parent[s] = p->parent[p->parent[s]];
    return s;
}

static int pf_nc(const struct pf_ctx *p, int layer)
{
    return layer == DP_MODEL_INPUT ? p->m->in_c : p->nc[layer];
}

static int pf_ex(const struct pf_ctx *p, int layer)
{
    return layer == DP_MODEL_INPUT ? 1 : p->ex[layer];
}

static const int *pf_cids(const struct pf_ctx *p, int layer)
{
    return layer == DP_MODEL_INPUT ? p->cid_in : p->cid[layer];
}

/* The root id of base channel c of layer's output. */
static int pf_id(struct pf_ctx *p, int layer, int c)
{
    return pf_find(p, pf_cids(p, layer)[c]);
}

static int pf_kept_at(struct pf_ctx *p, int layer, int c)
{
    return p->keep[pf_id(p, layer, c)];
}

/* Base channels of layer's output that stay. */
static int pf_kept(struct pf_ctx *p, int layer)
{
    int kept = 0;
    for (int c = 0; c < pf_nc(p, layer); c++)
        kept += pf_kept_at(p, layer, c);
    return kept;
}

static void pf_pin_layer(struct pf_ctx *p, int layer)
{
    for (int c = 0; c < pf_nc(p, layer); c++)
        p->pin[pf_cids(p, layer)[c]] = 1;
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

static const float *pf_param(const struct dp_model *m, const struct dp_layer *l, int k)
{
    return k < l->n_params ? m->data + m->params[l->first_param + k].offset : NULL;
}

/* Layer i's output gets n new ids (pinned when pin). */
static void pf_new_ids(struct pf_ctx *p, int i, int n, int pin)
{
    for (int c = 0; c < n; c++) {
        const int id = p->n_ids++;
        p->parent[id] = id;
        p->pin[id] = (unsigned char)pin;
        p->cid[i][c] = id;
    }
    p->nc[i] = n;
    p->ex[i] = 1;
}

/* Can layer i's channels be routed: every input a map of whole channels? */
static int pf_routable(const struct pf_ctx *p, int i)
{
    const struct dp_layer *l = &p->m->layers[i];
    for (int k = 0; k < l->n_inputs; k++)
        if (pf_ex(p, l->inputs[k]) != 1)
            return 0;
    return l->out_c > 0;
}

/* Channel ids of every layer, unions and pins. */
static enum dp_err pf_spaces(struct pf_ctx *p, struct dp_errinfo *ei)
{
    const struct dp_model *m = p->m;
    const int n = m->n_layers;
    size_t total = (size_t)m->in_c;
    for (int i = 0; i < n; i++)
        total += (size_t)m->layers[i].out_c;
    p->parent = dp_calloc(total + 1, sizeof(int));
    p->pin = dp_calloc(total + 1, 1);
    p->keep = dp_malloc(total + 1);
    p->cid_in = dp_calloc((size_t)m->in_c + 1, sizeof(int));
    p->cid = dp_calloc((size_t)n, sizeof(int *));
    p->nc = dp_calloc((size_t)n, sizeof(int));
    p->ex = dp_calloc((size_t)n, sizeof(int));
    p->route = dp_calloc((size_t)n, 1);
    if (!p->parent || !p->pin || !p->keep || !p->cid_in || !p->cid || !p->nc || !p->ex || !p->route)
        return dp_errinfo_set(ei, DP_ENOMEM, "out of memory for purification");
    for (int i = 0; i < n; i++) {
        p->cid[i] = dp_calloc((size_t)m->layers[i].out_c + 1, sizeof(int));
        if (p->cid[i] == NULL)
            return dp_errinfo_set(ei, DP_ENOMEM, "out of memory for purification");
    }
    for (int c = 0; c < m->in_c; c++) {
        p->parent[c] = c;
        p->pin[c] = 1; /* the input's channels are the data's */
        p->cid_in[c] = c;
    }
    p->n_ids = m->in_c;
    for (int i = 0; i < n; i++) {
        const struct dp_layer *l = &m->layers[i];
        const int in = l->inputs[0];
        enum dp_op_chan chan = dp_layer_chan(m, i);
        /* Per-channel behaviour needs whole channels: a route over a
         * flattened map, or a "keeping" op whose output is not a whole
         * number of features per input channel, is followed no further. */
        if (chan == DP_OP_CHAN_ROUTES && !pf_routable(p, i))
            chan = DP_OP_CHAN_OPAQUE;
        if (chan == DP_OP_CHAN_KEEPS &&
            (pf_nc(p, in) < 1 || l->out_c % pf_nc(p, in) != 0 || l->out_c < pf_nc(p, in)))
            chan = DP_OP_CHAN_OPAQUE;
        /* Each op's row in common/op.c says how its channels relate to its inputs'. */
        switch (chan) {
            case DP_OP_CHAN_STARTS:
                pf_new_ids(p, i, l->out_c, 0);
                /* A grouped (not depthwise) conv mixes within groups only;
                 * a conv over a flattened map reads features, not channels. */
                if ((l->op == DP_OP_CONV2D && l->a.groups > 1) ||
                    (l->op != DP_OP_LINEAR && pf_ex(p, in) != 1)) {
                    pf_pin_layer(p, i);
                    pf_pin_layer(p, in);
                }
                break;
            case DP_OP_CHAN_KEEPS:
                /* Features per base channel scale with the per-channel size
                 * (flatten: h*w); GAP, pooling and the rest keep it. */
                p->nc[i] = pf_nc(p, in);
                p->ex[i] = l->out_c / pf_nc(p, in);
                memcpy(p->cid[i], pf_cids(p, in), (size_t)p->nc[i] * sizeof(int));
                break;
            case DP_OP_CHAN_JOINS: {
                const int a = l->inputs[0], b = l->inputs[1];
                p->nc[i] = pf_nc(p, a);
                p->ex[i] = pf_ex(p, a);
                memcpy(p->cid[i], pf_cids(p, a), (size_t)p->nc[i] * sizeof(int));
                if (pf_nc(p, a) != pf_nc(p, b) || pf_ex(p, a) != pf_ex(p, b)) {
                    pf_pin_layer(p, a);
                    pf_pin_layer(p, b);
                    break;
                }
                for (int c = 0; c < p->nc[i]; c++) {
                    const int x = pf_id(p, a, c), y = pf_id(p, b, c);
                    if (x != y) {
                        p->parent[y] = x;
                        p->pin[x] |= p->pin[y];
                    }
                }
                break;
            }
            case DP_OP_CHAN_ROUTES:
                p->route[i] = 1;
                p->nc[i] = l->out_c;
                p->ex[i] = 1;
                for (int c = 0; c < l->out_c; c++) {
                    int k = 0;
                    const int src = dp_layer_route(m, i, c, &k);
                    if (src < 0 || src >= pf_nc(p, l->inputs[k]))
                        return dp_errinfo_set(ei, DP_EINVAL,
                                              "purification: layer '%s' routes channel %d "
                                              "outside its input",
                                              l->name, c);
                    p->cid[i][c] = pf_cids(p, l->inputs[k])[src];
                }
                break;
            case DP_OP_CHAN_OPAQUE:
                /* An op this pass does not know: its channels stay as they are. */
                pf_new_ids(p, i, l->out_c, 1);
                for (int k = 0; k < l->n_inputs; k++)
                    pf_pin_layer(p, l->inputs[k]);
                break;
        }
    }
    pf_pin_layer(p, n - 1); /* the model output */
    for (int s = 0; s < p->n_ids; s++)
        p->pin[pf_find(p, s)] |= p->pin[s];
    memset(p->keep, 1, (size_t)p->n_ids);
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
        const int nb = p->nc[i];
        const float *w = pf_param(m, l, 0), *b = pf_param(m, l, 1);
        memset(z, 0, (size_t)nb);
        if (l->op == DP_OP_CONV2D && !pf_is_depthwise(m, i) && l->a.groups == 1) {
            const int I = in == DP_MODEL_INPUT ? m->in_c : m->layers[in].out_c;
            const int ex = pf_ex(p, in);
            const size_t kk = (size_t)l->a.kh * (size_t)l->a.kw;
            for (int o = 0; o < l->out_c; o++) {
                int zero = b == NULL || !l->a.has_bias || b[o] == 0.0f;
                for (int c = 0; zero && c < I; c++) {
                    if (zin != NULL && zin[c / ex])
                        continue;
                    for (size_t k = 0; zero && k < kk; k++)
                        zero = w[((size_t)o * (size_t)I + (size_t)c) * kk + k] == 0.0f;
                }
                z[o] = (unsigned char)zero;
            }
        } else if (l->op == DP_OP_CONV2D && pf_is_depthwise(m, i)) {
            const size_t kk = (size_t)l->a.kh * (size_t)l->a.kw;
            for (int c = 0; c < l->out_c && c < nb; c++) {
                int zero = b == NULL || !l->a.has_bias || b[c] == 0.0f;
                if (zero && !(zin != NULL && zin[c]))
                    for (size_t k = 0; zero && k < kk; k++)
                        zero = w[(size_t)c * kk + k] == 0.0f;
                z[c] = (unsigned char)zero;
            }
        } else if (l->op == DP_OP_LINEAR) {
            const int F = in == DP_MODEL_INPUT ? m->in_c * m->in_h * m->in_w : m->layers[in].out_c;
            const int ex = pf_ex(p, in);
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
        } else if (p->route[i]) {
            /* A moved channel is zero where its source is. */
            for (int c = 0; c < nb; c++) {
                int k = 0;
                const int src = dp_layer_route(m, i, c, &k);
                const int from = l->inputs[k];
                z[c] = (unsigned char)(from != DP_MODEL_INPUT && p->zero[from][src]);
            }
        } else if ((l->op == DP_OP_ADD || l->op == DP_OP_CONCAT) &&
                   dp_layer_chan(m, i) == DP_OP_CHAN_JOINS && nb == pf_nc(p, l->inputs[1])) {
            /* A sum, or a concat along H or W: zero where both operands are. */
            const unsigned char *z2 = l->inputs[1] == DP_MODEL_INPUT ? NULL : p->zero[l->inputs[1]];
            for (int c = 0; c < nb; c++)
                z[c] = (unsigned char)(zin != NULL && z2 != NULL && zin[c] && z2[c]);
        } else if (l->op == DP_OP_MUL && dp_layer_chan(m, i) == DP_OP_CHAN_JOINS &&
                   nb == pf_nc(p, l->inputs[1])) {
            /* A product is zero where either factor is: a block channel
             * that is zero stays zero whatever its squeeze-excitation
             * scale, and a scale that is zero silences its channel. */
            const int in2 = l->inputs[1];
            const unsigned char *z2 = in2 == DP_MODEL_INPUT ? NULL : p->zero[in2];
            for (int c = 0; c < nb; c++)
                z[c] = (unsigned char)((zin != NULL && zin[c]) || (z2 != NULL && z2[c]));
        } else if (dp_op_info(l->op)->keeps_zeros && dp_layer_chan(m, i) == DP_OP_CHAN_KEEPS &&
                   nb == pf_nc(p, in)) { /* relu, pooling, flatten, ... */
            if (zin != NULL)
                memcpy(z, zin, (size_t)nb);
        }
    }
}

/* Widens next (per root id) until every routing layer can express the
 * channels it keeps (dp_layer_reroute). */
static enum dp_err pf_close_routes(struct pf_ctx *p, unsigned char *next)
{
    const struct dp_model *m = p->m;
    int widened = 1;
    while (widened) {
        widened = 0;
        for (int i = 0; i < m->n_layers; i++) {
            const struct dp_layer *l = &m->layers[i];
            if (!p->route[i])
                continue;
            unsigned char *keep[DP_MAX_INPUTS] = {0};
            enum dp_err err = DP_OK;
            for (int k = 0; k < l->n_inputs && !err; k++) {
                const int from = l->inputs[k];
                keep[k] = dp_malloc((size_t)pf_nc(p, from) + 1);
                if (keep[k] == NULL)
                    err = DP_ENOMEM;
                for (int c = 0; !err && c < pf_nc(p, from); c++)
                    keep[k][c] = next[pf_id(p, from, c)];
            }
            if (!err && dp_layer_reroute(m, i, keep, NULL) > 0) {
                for (int k = 0; k < l->n_inputs; k++) {
                    for (int c = 0; c < pf_nc(p, l->inputs[k]); c++) {
                        const int id = pf_id(p, l->inputs[k], c);
                        if (keep[k][c] && !next[id]) {
                            next[id] = 1;
                            widened = 1;
                        }
                    }
                }
            }
            for (int k = 0; k < l->n_inputs; k++)
                dp_free(keep[k]);
            if (err)
                return err;
        }
    }
    return DP_OK;
}

/* One sweep of the use analysis; *dropped gets the number of channels
 * newly removed. A channel stays when some conv/linear reads a non-zero
 * value of it with a non-zero weight into a kept output, when it is
 * pinned, when its layer would otherwise keep none, or when a route needs
 * it to stay expressible. */
static enum dp_err pf_sweep(struct pf_ctx *p, int *dropped)
{
    const struct dp_model *m = p->m;
    *dropped = 0;
    unsigned char *used = dp_calloc((size_t)p->n_ids + 1, 1);
    if (used == NULL)
        return DP_ENOMEM;
    for (int i = 0; i < m->n_layers; i++) {
        const struct dp_layer *l = &m->layers[i];
        if (!pf_starts_space(m, i) || (l->op == DP_OP_CONV2D && l->a.groups > 1))
            continue;
        const int in = l->inputs[0];
        const int ex = pf_ex(p, in);
        if (l->op != DP_OP_LINEAR && ex != 1)
            continue; /* pinned */
        const unsigned char *zin = in == DP_MODEL_INPUT ? NULL : p->zero[in];
        const float *w = pf_param(m, l, 0);
        const int F = in == DP_MODEL_INPUT ? m->in_c : m->layers[in].out_c; /* conv: channels */
        const size_t row =
            l->op == DP_OP_LINEAR ? (size_t)F : (size_t)F * (size_t)l->a.kh * (size_t)l->a.kw;
        const size_t per = l->op == DP_OP_LINEAR ? (size_t)ex : (size_t)l->a.kh * (size_t)l->a.kw;
        for (int c = 0; c < pf_nc(p, in); c++) {
            const int id = pf_id(p, in, c);
            if (used[id] || !p->keep[id] || p->pin[id] || (zin != NULL && zin[c]))
                continue;
            for (int o = 0; o < l->out_c && !used[id]; o++) {
                if (!pf_kept_at(p, i, o))
                    continue;
                const float *wr = w + (size_t)o * row + (size_t)c * per;
                for (size_t k = 0; k < per; k++) {
                    if (wr[k] != 0.0f) {
                        used[id] = 1;
                        break;
                    }
                }
            }
        }
    }
    /* used becomes the next kept set. */
    for (int s = 0; s < p->n_ids; s++)
        if (pf_find(p, s) == s)
            used[s] = (unsigned char)(p->keep[s] && (used[s] || p->pin[s]));
    /* Every layer keeps a channel, so that it keeps a shape. */
    for (int i = 0; i < m->n_layers; i++) {
        int any = 0, first = -1;
        for (int c = 0; c < p->nc[i] && !any; c++) {
            const int id = pf_id(p, i, c);
            any = used[id];
            if (first < 0 && p->keep[id])
                first = id;
        }
        if (!any && first >= 0)
            used[first] = 1;
    }
    enum dp_err err = pf_close_routes(p, used);
    for (int s = 0; !err && s < p->n_ids; s++) {
        if (pf_find(p, s) == s && p->keep[s] && !used[s]) {
            p->keep[s] = 0;
            (*dropped)++;
        }
    }
    dp_free(used);
    return err;
}

/* Copies the kept slices of every parameter of layer i from m into q. */
static void pf_copy_layer(struct pf_ctx *p, const struct dp_model *q, int i)
{
    const struct dp_model *m = p->m;
    const struct dp_layer *l = &m->layers[i];
    const int in = l->inputs[0];
    const int ex = l->op == DP_OP_LINEAR ? pf_ex(p, in) : 1;
    for (int k = 0; k < l->n_params; k++) {
        const struct dp_param *src = &m->params[l->first_param + k];
        const struct dp_param *dst = &q->params[q->layers[i].first_param + k];
        const float *s = m->data + src->offset;
        float *d = q->data + dst->offset;
        if (src->numel == dst->numel) { /* untouched (pinned layers, constants, ...) */
            memcpy(d, s, src->numel * sizeof(float));
            continue;
        }
        if (src->ndim == 1) { /* bias or BN vector, over output channels */
            size_t at = 0;
            for (int64_t c = 0; c < src->shape[0]; c++)
                if (pf_kept_at(p, i, (int)c))
                    d[at++] = s[c];
            continue;
        }
        const int64_t O = src->shape[0], I = src->shape[1];
        const size_t kk = src->ndim == 4 ? (size_t)(src->shape[2] * src->shape[3]) : 1;
        const int grouped = l->op == DP_OP_CONV2D && l->a.groups > 1;
        size_t at = 0;
        for (int64_t o = 0; o < O; o++) {
            if (!pf_kept_at(p, i, (int)o))
                continue;
            for (int64_t c = 0; c < I; c++) {
                if (!grouped && !pf_kept_at(p, in, (int)(c / ex)))
                    continue;
                memcpy(d + at, s + ((size_t)o * (size_t)I + (size_t)c) * kk, kk * sizeof(float));
                at += kk;
            }
        }
    }
}

/* The attributes of layer i over the kept channels, in a (copy of m's layers). */
static enum dp_err pf_rewrite(struct pf_ctx *p, int i, struct dp_op_attrs *a, struct dp_errinfo *ei)
{
    const struct dp_model *m = p->m;
    const struct dp_layer *l = &m->layers[i];
    if (pf_starts_space(m, i) || pf_is_depthwise(m, i)) {
        a->out_ch = pf_kept(p, i);
        if (pf_is_depthwise(m, i)) /* it follows its input's channels, one group each */
            a->groups = a->out_ch;
        return DP_OK;
    }
    if (!p->route[i])
        return DP_OK;
    unsigned char *keep[DP_MAX_INPUTS] = {0};
    enum dp_err err = DP_OK;
    for (int k = 0; k < l->n_inputs && !err; k++) {
        const int from = l->inputs[k];
        keep[k] = dp_malloc((size_t)pf_nc(p, from) + 1);
        if (keep[k] == NULL)
            err = dp_errinfo_set(ei, DP_ENOMEM, "out of memory for purification");
        for (int c = 0; !err && c < pf_nc(p, from); c++)
            keep[k][c] = (unsigned char)pf_kept_at(p, from, c);
    }
    if (!err && dp_layer_reroute(m, i, keep, a) != 0)
        err = dp_errinfo_set(ei, DP_EINVAL,
                             "purification: layer '%s' would keep channels its op cannot "
                             "express",
                             l->name);
    for (int k = 0; k < l->n_inputs; k++)
        dp_free(keep[k]);
    return err;
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
    struct dp_model shrunk = *m;
    shrunk.layers = NULL;
    enum dp_err err = pf_spaces(&p, ei);
    if (!err) {
        p.zero = dp_calloc((size_t)m->n_layers, sizeof(unsigned char *));
        if (p.zero == NULL)
            err = dp_errinfo_set(ei, DP_ENOMEM, "out of memory for purification");
    }
    for (int i = 0; !err && i < m->n_layers; i++) {
        p.zero[i] = dp_calloc((size_t)p.nc[i] + 1, 1);
        if (p.zero[i] == NULL)
            err = dp_errinfo_set(ei, DP_ENOMEM, "out of memory for purification");
    }
    if (err)
        goto out;
    pf_zeros(&p);
    /* Channels that are zero everywhere they are read go at once; then
     * unused channels, to a fixed point (dropping filters can make their
     * inputs unused). */
    int removed = 0;
    for (int it = 0; it < 1000; it++) {
        int ch = 0;
        err = pf_sweep(&p, &ch);
        if (err) {
            dp_errinfo_set(ei, err, "out of memory for purification");
            goto out;
        }
        removed += ch;
        if (ch == 0)
            break;
    }
    /* The graph of the smaller model: m's layers with attributes over the
     * kept channels; shape inference then declares the smaller tensors. */
    shrunk.layers =
        dp_malloc((size_t)(m->n_layers > 0 ? m->n_layers : 1) * sizeof(struct dp_layer));
    if (shrunk.layers == NULL) {
        err = dp_errinfo_set(ei, DP_ENOMEM, "out of memory for purification");
        goto out;
    }
    memcpy(shrunk.layers, m->layers, (size_t)m->n_layers * sizeof(struct dp_layer));
    for (int i = 0; !err && i < m->n_layers; i++)
        err = pf_rewrite(&p, i, &shrunk.layers[i].a, ei);
    if (err)
        goto out;
    err = dp_model_graph_to_json(&shrunk, &graph, ei);
    if (err)
        goto out;
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
    dp_free(shrunk.layers);
    for (int i = 0; p.zero != NULL && i < m->n_layers; i++)
        dp_free(p.zero[i]);
    for (int i = 0; p.cid != NULL && i < m->n_layers; i++)
        dp_free(p.cid[i]);
    dp_free(p.zero);
    dp_free(p.cid);
    dp_free(p.cid_in);
    dp_free(p.parent);
    dp_free(p.pin);
    dp_free(p.keep);
    dp_free(p.nc);
    dp_free(p.ex);
    dp_free(p.route);
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
 * per channel on a dead input; an add of two dead operands (or a concat
 * along H or W); a product with one dead factor (a squeeze-excitation
 * scale of a dead channel); a channel a slice, concat or shuffle moves
 * from a dead one.
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
    if (l->op == DP_OP_ADD || (l->op == DP_OP_CONCAT && dp_layer_chan(m, i) == DP_OP_CHAN_JOINS))
        return pf_dead(m, l->inputs[0], c, depth + 1) && pf_dead(m, l->inputs[1], c, depth + 1);
    if (dp_layer_chan(m, i) == DP_OP_CHAN_ROUTES) {
        int k = 0;
        const int src = dp_layer_route(m, i, (int)c, &k);
        return src >= 0 && pf_dead(m, l->inputs[k], src, depth + 1);
    }
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
