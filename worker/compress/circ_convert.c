/*
 * Dense to block-circulant conversion (see circ_convert.h): the graph is
 * rebuilt layer by layer with the converted ops, finalized (which declares
 * the vector parameters, common/op.c), and every parameter is filled from
 * the dense parameter of the same name: copied, or reduced to its block
 * vectors by circ_project.
 */
#include "worker/compress/circ_convert.h"

#include <math.h>
#include <string.h>

#include "common/alloc.h"
#include "worker/circulant/circ.h"
#include "worker/nn/rng.h"

int cp_circ_convertible(const struct dp_model *m, int i)
{
    const struct dp_layer *l = &m->layers[i];
    switch (l->op) {
        case DP_OP_LINEAR:
            return 1;
        case DP_OP_CONV2D:
            return l->a.groups == 1;
        case DP_OP_LSTM:
        case DP_OP_GRU:
            return l->a.block == 0;
        default:
            return 0;
    }
}

/* The vectors (taps, p, q, k) of dense weight src: (rows, cols) or
 * (rows, cols, kh, kw), each tap's channel matrix projected. */
static enum dp_err cc_project(float *dst, const struct dp_param *src, const float *w, int k,
                              struct dp_errinfo *ei)
{
    const int rows = (int)src->shape[0], cols = (int)src->shape[1];
    const size_t taps = src->ndim == 4 ? (size_t)(src->shape[2] * src->shape[3]) : 1;
    struct circ_dims d;
    circ_dims_init(&d, rows, cols, k);
    if (taps == 1) {
        circ_project(dst, w, &d);
        return DP_OK;
    }
    float *mat = dp_malloc(dp_size_mul((size_t)rows * (size_t)cols, sizeof(float)));
    if (mat == NULL)
        return dp_errinfo_set(ei, DP_ENOMEM, "out of memory converting '%s'", src->name);
    for (size_t t = 0; t < taps; t++) {
        for (size_t o = 0; o < (size_t)rows; o++)
            for (size_t i = 0; i < (size_t)cols; i++)
                mat[o * (size_t)cols + i] = w[(o * (size_t)cols + i) * taps + t];
        circ_project(dst + t * circ_dims_numel(&d), mat, &d);
    }
    dp_free(mat);
    return DP_OK;
}

/* fan_in of the dense layer behind converted layer l (see circ_convert.h). */
static double cc_fan_in(const struct dp_model *m, const struct dp_layer *l)
{
    if (l->op == DP_OP_LSTM || l->op == DP_OP_GRU)
        return (double)l->a.out_ch;
    const struct dp_param *w = &m->params[l->first_param];
    return (double)w->numel / (double)w->shape[0];
}

enum dp_err cp_circ_convert(const struct dp_model *m, const int *block, int fresh, uint64_t seed,
                            struct dp_model **out, struct dp_errinfo *ei)
{
    *out = NULL;
    struct dp_model *q = dp_model_new(m->in_c, m->in_h, m->in_w);
    if (q == NULL)
        return dp_errinfo_set(ei, DP_ENOMEM, "out of memory for the circulant model");
    enum dp_err err = DP_OK;
    if (m->norm.n_c > 0)
        err = dp_model_norm_set(q, m->norm.n_c, m->norm.mean, m->norm.std, ei);
    for (int i = 0; !err && i < m->n_layers; i++) {
        const struct dp_layer *l = &m->layers[i];
        struct dp_op_attrs a = l->a;
        enum dp_op op = l->op;
        if (block[i] != 0) {
            if (!cp_circ_convertible(m, i) || block[i] < 1 || block[i] > 4096) {
                err = dp_errinfo_set(ei, DP_EINVAL,
                                     "layer '%s': a %s layer cannot be made block-circulant "
                                     "(linear, conv2d with groups 1, lstm and gru can)",
                                     l->name,
                                     l->op == DP_OP_CONV2D ? "grouped conv2d" : dp_op_name(l->op));
                break;
            }
            op = l->op == DP_OP_LINEAR   ? DP_OP_CIRC_LINEAR
                 : l->op == DP_OP_CONV2D ? DP_OP_CIRC_CONV2D
                                         : l->op;
            a.block = block[i];
        }
        const int r = dp_model_add_layer(q, l->name, op, l->inputs, l->n_inputs, &a, ei);
        if (r < 0)
            err = (enum dp_err)r;
        else
            q->layers[r].comp = l->comp;
    }
    if (!err)
        err = dp_model_finalize(q, ei);
    struct nn_rng rng;
    nn_rng_seed(&rng, seed);
    for (int pi = 0; !err && pi < q->n_params; pi++) {
        const struct dp_param *dst = &q->params[pi];
        const struct dp_param *src = dp_model_param_find(m, dst->name);
        const int k = block[dst->layer];
        float *d = dp_param_data(q, dst);
        if (src == NULL || (k == 0 && src->numel != dst->numel)) {
            err = dp_errinfo_set(ei, DP_ESHAPE, "'%s': no dense parameter of its size to convert",
                                 dst->name);
        } else if (k == 0) {
            memcpy(d, dp_param_data(m, src), dst->numel * sizeof(float));
        } else if (fresh) {
            const double bound = 1.0 / sqrt(cc_fan_in(m, &m->layers[src->layer]));
            for (size_t i = 0; i < dst->numel; i++)
                d[i] = (float)((2.0 * nn_rng_uniform(&rng) - 1.0) * bound);
        } else if (src->ndim >= 2) {
            err = cc_project(d, src, dp_param_data(m, src), k, ei);
        } else if (src->numel == dst->numel) {
            memcpy(d, dp_param_data(m, src), dst->numel * sizeof(float));
        } else {
            err = dp_errinfo_set(ei, DP_ESHAPE, "'%s': its size changed in the conversion",
                                 dst->name);
        }
    }
    if (err) {
        dp_model_free(q);
        return err;
    }
    *out = q;
    return DP_OK;
}
