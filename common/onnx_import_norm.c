/*
 * ONNX import: the model's input normalisation (see onnx_import_int.h).
 *
 * A model that normalises its own input, such as the ones
 * dp_onnx_export_file writes, starts with Sub(input, mean) and/or
 * Div(., std) by per-channel constants. Those nodes become the model's
 * struct dp_model_norm instead of layers: the engine's data path applies
 * them (so a model is never normalised twice, once by its graph and once
 * by the loader), and the exporter writes them back in front. A model
 * whose graph does not normalise but whose "dnnpress.normalization"
 * metadata says what it expects gets those numbers.
 *
 * DESIGN: the leading nodes are found on the protobuf before anything
 * else (imp__norm_find), so that the operator check and the node loop
 * skip them; once the input is bound, their output is bound to it as an
 * alias (imp__norm_bind); after the model is finalized the numbers are
 * recorded (imp__norm_apply). Only an exact pattern is taken: the input
 * read by one node only, constants of one value or one per channel, a
 * strictly positive finite std. Anything else is left to the operator
 * table.
 */
#include <jansson.h>
#include <math.h>
#include <string.h>

#include "common/alloc.h"
#include "common/log.h"
#include "common/model_io.h"
#include "common/onnx.h"
#include "common/onnx_import_int.h"
#include "onnx.pb-c.h"

/* The graph's one non-initializer input, or NULL. */
static const Onnx__ValueInfoProto *norm_graph_input(const Onnx__GraphProto *g)
{
    const Onnx__ValueInfoProto *in = NULL;
    for (size_t i = 0; i < g->n_input; i++) {
        const char *name = g->input[i]->name;
        int init = 0;
        for (size_t k = 0; name != NULL && k < g->n_initializer && !init; k++)
            init = g->initializer[k]->name != NULL && strcmp(g->initializer[k]->name, name) == 0;
        if (name == NULL || init)
            continue;
        if (in != NULL)
            return NULL;
        in = g->input[i];
    }
    return in;
}

/* How many node inputs (and graph outputs) read the value called name. */
static int norm_readers(const Onnx__GraphProto *g, const char *name)
{
    int n = 0;
    for (size_t i = 0; i < g->n_node; i++)
        for (size_t k = 0; k < g->node[i]->n_input; k++)
            n += g->node[i]->input[k] != NULL && strcmp(g->node[i]->input[k], name) == 0;
    for (size_t i = 0; i < g->n_output; i++)
        n += g->output[i]->name != NULL && strcmp(g->output[i]->name, name) == 0;
    return n;
}

/* The only node that reads name (with it as input 0), or -1. */
static int norm_reader(const Onnx__GraphProto *g, const char *name)
{
    if (norm_readers(g, name) != 1)
        return -1;
    for (size_t i = 0; i < g->n_node; i++) {
        const Onnx__NodeProto *nd = g->node[i];
        if (nd->n_input == 2 && nd->input[0] != NULL && strcmp(nd->input[0], name) == 0)
            return (int)i;
    }
    return -1;
}

/* The tensor behind a constant value: an initializer or a Constant node's 'value'. */
static const Onnx__TensorProto *norm_const(const Onnx__GraphProto *g, const char *name)
{
    if (name == NULL)
        return NULL;
    for (size_t i = 0; i < g->n_initializer; i++)
        if (g->initializer[i]->name != NULL && strcmp(g->initializer[i]->name, name) == 0)
            return g->initializer[i];
    for (size_t i = 0; i < g->n_node; i++) {
        const Onnx__NodeProto *nd = g->node[i];
        if (nd->op_type == NULL || strcmp(nd->op_type, "Constant") != 0 || nd->n_output != 1 ||
            nd->output[0] == NULL || strcmp(nd->output[0], name) != 0)
            continue;
        for (size_t k = 0; k < nd->n_attribute; k++)
            if (nd->attribute[k]->name != NULL && strcmp(nd->attribute[k]->name, "value") == 0)
                return nd->attribute[k]->t;
        return NULL;
    }
    return NULL;
}

/*
 * Reads a per-channel constant for an input of the given rank with C
 * channels into v (C floats): one value (any all-ones shape) broadcast to
 * every channel, or C values shaped like a channel axis ([C, 1, 1] or
 * [1, C, 1, 1] for images, [C] or [1, C] for vectors, [C, 1] or [1, C, 1]
 * for sequences). 0 when it is not one.
 */
static int norm_values(const Onnx__TensorProto *t, int rank, int C, float *v)
{
    if (t == NULL || C < 1 || C > DP_MODEL_NORM_MAX_C || t->n_dims > 4)
        return 0;
    float *f = NULL;
    size_t n = 0;
    if (dp_onnx_tensor_floats(t, &f, &n, NULL) != DP_OK)
        return 0;
    int ok = n == 1 || n == (size_t)C;
    if (ok && n > 1) {
        /* After leading ones, the channel axis and then as many ones as the
         * input has axes after its channel axis. */
        size_t d = 0;
        while (d < t->n_dims && t->dims[d] == 1)
            d++;
        ok = d < t->n_dims && t->dims[d] == C && (int)(t->n_dims - d) == rank - 1;
        for (size_t k = d + 1; ok && k < t->n_dims; k++)
            ok = t->dims[k] == 1;
    }
    for (int c = 0; ok && c < C; c++) {
        v[c] = f[n == 1 ? 0 : c];
        ok = isfinite(v[c]);
    }
    dp_free(f);
    return ok;
}

static int norm_is(const Onnx__NodeProto *nd, const char *op)
{
    return nd->op_type != NULL && strcmp(nd->op_type, op) == 0 &&
           (nd->domain == NULL || nd->domain[0] == '\0' || strcmp(nd->domain, "ai.onnx") == 0) &&
           nd->n_output == 1 && nd->output[0] != NULL && nd->output[0][0] != '\0';
}

void imp__norm_find(struct imp *im)
{
    const Onnx__GraphProto *g = im->g;
    im->norm_node[0] = im->norm_node[1] = -1;
    im->norm_out = NULL;
    im->norm_c = 0;
    const Onnx__ValueInfoProto *in = norm_graph_input(g);
    if (in == NULL || in->type == NULL ||
        in->type->value_case != ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE ||
        in->type->tensor_type == NULL || in->type->tensor_type->shape == NULL)
        return;
    const Onnx__TensorShapeProto *sh = in->type->tensor_type->shape;
    if (sh->n_dim < 2 || sh->n_dim > 4 ||
        sh->dim[1]->value_case != ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE ||
        sh->dim[1]->dim_value < 1 || sh->dim[1]->dim_value > DP_MODEL_NORM_MAX_C)
        return;
    const int C = (int)sh->dim[1]->dim_value, rank = (int)sh->n_dim;
    float mean[DP_MODEL_NORM_MAX_C], std[DP_MODEL_NORM_MAX_C];
    for (int c = 0; c < C; c++) {
        mean[c] = 0.0f;
        std[c] = 1.0f;
    }
    int a = norm_reader(g, in->name), b = -1;
    if (a < 0)
        return;
    const Onnx__NodeProto *na = g->node[a];
    const char *out = NULL;
    if (norm_is(na, "Sub") && norm_values(norm_const(g, na->input[1]), rank, C, mean)) {
        out = na->output[0];
        b = norm_reader(g, out);
        if (b >= 0 && !(norm_is(g->node[b], "Div") &&
                        norm_values(norm_const(g, g->node[b]->input[1]), rank, C, std)))
            b = -1;
        if (b >= 0)
            out = g->node[b]->output[0];
    } else if (norm_is(na, "Div") && norm_values(norm_const(g, na->input[1]), rank, C, std)) {
        out = na->output[0];
    } else {
        return;
    }
    for (int c = 0; c < C; c++)
        if (!(std[c] > 0.0f))
            return; /* a division the engine's normalisation cannot express */
    im->norm_node[0] = a;
    im->norm_node[1] = b;
    im->norm_out = out;
    im->norm_c = C;
    memcpy(im->norm_mean, mean, sizeof(mean));
    memcpy(im->norm_std, std, sizeof(std));
}

int imp__norm_skips(const struct imp *im, int idx)
{
    return idx >= 0 && (idx == im->norm_node[0] || idx == im->norm_node[1]);
}

enum dp_err imp__norm_bind(struct imp *im)
{
    if (im->norm_out == NULL)
        return DP_OK;
    const Onnx__ValueInfoProto *in = norm_graph_input(im->g);
    const struct imp_val *x = in != NULL ? imp__find(im, in->name) : NULL;
    if (x == NULL)
        return DP_OK;
    const int rank = x->rank;
    struct imp_val *v = imp__bind(im, im->norm_out);
    if (v == NULL)
        return dp_errinfo_set(im->ei, DP_ENOMEM, "out of memory");
    v->kind = IMP_ACT;
    v->layer = DP_MODEL_INPUT;
    v->rank = rank;
    return DP_OK;
}

/* The "dnnpress.normalization" entry: its numbers into m when the graph
 * does not apply them. Advisory like the compression metadata: a malformed
 * entry is logged and ignored. */
static void norm_from_meta(struct dp_model *m, const Onnx__ModelProto *mp)
{
    for (size_t i = 0; i < mp->n_metadata_props; i++) {
        const Onnx__StringStringEntryProto *kv = mp->metadata_props[i];
        if (kv->key == NULL || kv->value == NULL || strcmp(kv->key, DP_MODEL_META_NORM) != 0)
            continue;
        json_t *j = json_loads(kv->value, JSON_REJECT_DUPLICATES, NULL);
        struct dp_errinfo sub = {DP_OK, ""};
        if (!json_is_object(j) || dp_model_norm_from_json(j, m, &sub) != DP_OK) {
            DP_LOG(DP_LOG_WARN,
                   "ONNX import: ignoring malformed " DP_MODEL_META_NORM " metadata (%s)", sub.msg);
        } else if (json_is_true(json_object_get(j, "in_graph"))) {
            /* The graph normalises, in a form this importer did not take
             * apart: the data path must feed it unnormalised values. */
            float zero[DP_MODEL_NORM_MAX_C] = {0}, one[DP_MODEL_NORM_MAX_C];
            for (int c = 0; c < DP_MODEL_NORM_MAX_C; c++)
                one[c] = 1.0f;
            (void)dp_model_norm_set(m, m->in_c, zero, one, NULL);
        }
        json_decref(j);
        return;
    }
}

void imp__norm_apply(struct imp *im, const struct Onnx__ModelProto *mp)
{
    if (im->norm_out != NULL && im->norm_c == im->m->in_c) {
        (void)dp_model_norm_set(im->m, im->norm_c, im->norm_mean, im->norm_std, NULL);
        return;
    }
    norm_from_meta(im->m, mp);
}
