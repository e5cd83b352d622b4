/*
 * ONNX import (see onnx_import.h).
 *
 * DESIGN: one pass over the nodes, which ONNX requires to be in
 * topological order. A value table maps every ONNX value name to either a
 * constant (an initializer or a Constant output, decoded to floats or
 * int64s) or an activation (an IR layer, or the model input, plus the
 * ONNX rank it has). Each supported operator becomes zero or one IR layer:
 * Identity, Dropout-free aliases and shape-preserving Reshapes only
 * rename a value, Constants only add one. After each layer is added the
 * IR's own shape inference runs (dp_model_infer), so every shape check is
 * the engine's, and later nodes see the inferred shapes (auto_pad, Flatten,
 * Reshape, axes). Weights are laid out in the IR's order while importing
 * (transposing Gemm and MatMul right sides, folding alpha and beta) and
 * copied into the parameter block after dp_model_finalize, which checks
 * that every tensor has exactly the size the layer declares.
 *
 * Before any of that, every node's operator is checked against the
 * supported list, so an unsupported model fails with the complete list
 * of what it would need; leading input-normalisation nodes
 * (onnx_import_norm.c) are taken out first and become the model's
 * dp_model_norm.
 */
#include "common/onnx_import.h"

#include <float.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "common/alloc.h"
#include "common/log.h"
#include "common/onnx.h"
#include "common/onnx_import_int.h"
#include "onnx.pb-c.h"

/* ---- Whole graph --------------------------------------------------------- */

/* Lists every unsupported operator (each logged; as many as fit in the message). */
static enum dp_err imp_check_ops(struct imp *im)
{
    const Onnx__GraphProto *g = im->g;
    char list[200] = "";
    size_t pos = 0;
    int n_bad = 0, n_listed = 0;
    for (size_t i = 0; i < g->n_node; i++) {
        const Onnx__NodeProto *nd = g->node[i];
        if (imp__op_lookup(nd) >= 0 || imp__norm_skips(im, (int)i))
            continue;
        n_bad++;
        const char *dom = nd->domain != NULL && nd->domain[0] != '\0' ? nd->domain : "";
        DP_LOG(DP_LOG_ERROR, "ONNX import: unsupported operator %s%s%s in node '%s'", dom,
               dom[0] ? "." : "", nd->op_type != NULL ? nd->op_type : "(none)", imp__node_name(nd));
        int w = snprintf(list + pos, sizeof(list) - pos, "%s%.32s%s%.32s ('%.40s')",
                         n_bad > 1 ? ", " : "", dom, dom[0] ? "." : "",
                         nd->op_type != NULL ? nd->op_type : "(none)", imp__node_name(nd));
        if (w > 0 && pos + (size_t)w < sizeof(list) - 16) {
            pos += (size_t)w;
            n_listed++;
        }
    }
    if (n_bad == 0)
        return DP_OK;
    list[pos] = '\0';
    if (n_listed < n_bad)
        return dp_errinfo_set(im->ei, DP_EUNSUPPORTED,
                              "%d unsupported operator(s): %s and %d more (all are logged)", n_bad,
                              list, n_bad - n_listed);
    return dp_errinfo_set(im->ei, DP_EUNSUPPORTED, "%d unsupported operator(s): %s", n_bad, list);
}

static int imp_is_initializer(const Onnx__GraphProto *g, const char *name)
{
    for (size_t i = 0; i < g->n_initializer; i++) {
        if (g->initializer[i]->name != NULL && strcmp(g->initializer[i]->name, name) == 0)
            return 1;
    }
    return 0;
}

/* The one real graph input: sets the model's input shape and im->batch. */
static enum dp_err imp_input(struct imp *im)
{
    const Onnx__GraphProto *g = im->g;
    const Onnx__ValueInfoProto *in = NULL;
    for (size_t i = 0; i < g->n_input; i++) {
        const Onnx__ValueInfoProto *vi = g->input[i];
        if (vi->name == NULL || imp_is_initializer(g, vi->name))
            continue;
        if (in != NULL)
            return dp_errinfo_set(im->ei, DP_EUNSUPPORTED,
                                  "the graph has more than one input ('%.60s' and '%.60s'); "
                                  "only one is supported",
                                  in->name, vi->name);
        in = vi;
    }
    if (in == NULL)
        return dp_errinfo_set(im->ei, DP_EUNSUPPORTED, "the graph has no input");
    const Onnx__TypeProto *tp = in->type;
    if (tp == NULL || tp->value_case != ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE ||
        tp->tensor_type == NULL ||
        tp->tensor_type->elem_type != ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT ||
        tp->tensor_type->shape == NULL)
        return dp_errinfo_set(im->ei, DP_EUNSUPPORTED,
                              "input '%.60s' must be a float tensor of known rank", in->name);
    const Onnx__TensorShapeProto *sh = tp->tensor_type->shape;
    if (sh->n_dim < 1 || sh->n_dim > 4)
        return dp_errinfo_set(im->ei, DP_EUNSUPPORTED,
                              "input '%.60s' has rank %zu; ranks 1 to 4 (batch first) are "
                              "supported",
                              in->name, sh->n_dim);
    /* A sequence for an LSTM or GRU (onnx_import_rnn.c) is (1, T, F) per
     * sample; read time-major, (T, N, F), the batch is axis 1. */
    const int seq = sh->n_dim == 3 ? imp__seq_input(im, in->name) : 0;
    const size_t bax = seq == 2 ? 1 : 0;
    int64_t d[4] = {0, 1, 1, 1};
    for (size_t i = 0; i < sh->n_dim; i++) {
        const Onnx__TensorShapeProto__Dimension *dim = sh->dim[i];
        int known = dim->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
        /* d: batch first, then the other axes in order. */
        const size_t at = i == bax ? 0 : i < bax ? i + 1 : i;
        if (i == bax) {
            if (known && dim->dim_value > 65536)
                return dp_errinfo_set(im->ei, DP_EUNSUPPORTED, "input '%.60s': batch %lld",
                                      in->name, (long long)dim->dim_value);
            d[0] = known && dim->dim_value > 0 ? dim->dim_value : 0;
            continue;
        }
        if (!known || dim->dim_value < 1 || dim->dim_value > 65536)
            return dp_errinfo_set(im->ei, DP_EUNSUPPORTED,
                                  "input '%.60s': dimension %zu must be a fixed size in [1, "
                                  "65536]%s",
                                  in->name, i,
                                  seq == 2 ? " (a time-major sequence (T, N, F): T is fixed)" : "");
        d[at] = dim->dim_value;
    }
    im->batch = d[0];
    im->m->in_c = (int)d[1];
    if (seq) {
        im->m->in_c = 1;
        im->m->in_h = (int)d[1];
        im->m->in_w = (int)d[2];
    } else if (sh->n_dim == 3) {
        im->m->in_h = 1;
        im->m->in_w = (int)d[2];
    } else {
        im->m->in_h = (int)d[2];
        im->m->in_w = (int)d[3];
    }
    struct imp_val *v = imp__bind(im, in->name);
    if (v == NULL)
        return dp_errinfo_set(im->ei, DP_ENOMEM, "out of memory");
    v->kind = seq == 2 ? IMP_SEQTM : IMP_ACT;
    v->layer = DP_MODEL_INPUT;
    v->rank = (int)sh->n_dim;
    v->seq = seq == 1;
    v->seq_t = (int)d[1];
    v->seq_f = (int)d[2];
    im->in_tm = seq == 2;
    return DP_OK;
}

static enum dp_err imp_prepare(struct imp *im)
{
    const Onnx__GraphProto *g = im->g;
    if (g->n_node > IMP_NODES_MAX)
        return dp_errinfo_set(im->ei, DP_ETOOBIG, "%zu nodes (at most %d)", g->n_node,
                              IMP_NODES_MAX);
    size_t n = g->n_input + g->n_initializer;
    for (size_t i = 0; i < g->n_node; i++)
        n += g->node[i]->n_output;
    if (n > IMP_VALUES_MAX)
        return dp_errinfo_set(im->ei, DP_ETOOBIG, "%zu values (at most %d)", n, IMP_VALUES_MAX);
    size_t cap = 16;
    while (cap < 2 * n + 2)
        cap *= 2;
    im->cap_vals = (int)n + 1;
    im->vals = dp_calloc((size_t)im->cap_vals, sizeof(struct imp_val));
    im->hash = dp_malloc(cap * sizeof(int));
    if (im->vals == NULL || im->hash == NULL)
        return dp_errinfo_set(im->ei, DP_ENOMEM, "out of memory");
    im->hash_cap = cap;
    for (size_t i = 0; i < cap; i++)
        im->hash[i] = -1;
    for (size_t i = 0; i < g->n_initializer; i++) {
        const Onnx__TensorProto *t = g->initializer[i];
        if (t->name == NULL || t->name[0] == '\0')
            return dp_errinfo_set(im->ei, DP_EFORMAT, "initializer %zu has no name", i);
        struct imp_val *v = imp__bind(im, t->name);
        if (v == NULL)
            return dp_errinfo_set(im->ei, DP_ENOMEM, "out of memory");
        v->kind = IMP_CONST;
        v->t = t;
    }
    return DP_OK;
}

/* Appends an identity layer (Dropout, p = 0) on `input`; its index or a negative dp_err. */
static int imp_identity(struct imp *im, int input)
{
    char name[DP_NAME_MAX];
    snprintf(name, sizeof(name), "output_identity");
    for (int k = 2; dp_model_layer_find(im->m, name) >= 0; k++)
        snprintf(name, sizeof(name), "output_identity_%d", k);
    struct dp_errinfo sub = {DP_OK, ""};
    struct dp_op_attrs a = {0};
    int li = dp_model_add_layer(im->m, name, DP_OP_DROPOUT, &input, 1, &a, &sub);
    if (li < 0)
        return dp_errinfo_set(im->ei, (enum dp_err)li, "%s", sub.msg);
    struct dp_errinfo sub2 = {DP_OK, ""};
    enum dp_err err = dp_model_infer(im->m, &sub2);
    if (err)
        return dp_errinfo_set(im->ei, err, "%s", sub2.msg);
    return li;
}

static enum dp_err imp_finish(struct imp *im, struct dp_onnx_import_info *info)
{
    const Onnx__GraphProto *g = im->g;
    if (g->n_output != 1 || g->output[0]->name == NULL)
        return dp_errinfo_set(im->ei, DP_EUNSUPPORTED,
                              "the graph has %zu outputs; exactly one is supported", g->n_output);
    struct imp_val *o = imp__find(im, g->output[0]->name);
    if (o == NULL)
        return dp_errinfo_set(im->ei, DP_EFORMAT, "output '%.60s' is not produced by any node",
                              g->output[0]->name);
    if (o->kind != IMP_ACT && o->kind != IMP_SEQTM)
        return dp_errinfo_set(im->ei, DP_EUNSUPPORTED,
                              "output '%.60s' is a constant; the model computes nothing",
                              g->output[0]->name);
    /* A time-major output (an LSTM's Y or Y_h): the engine gives it batch-first. */
    const int out_t = o->kind == IMP_SEQTM ? o->seq_t : 0;
    /* An output that is the input, or a Flatten of it, gets an identity layer
     * (Dropout with p = 0) so that the engine has a layer to train through. */
    if (o->layer == DP_MODEL_INPUT) {
        int li = imp_identity(im, DP_MODEL_INPUT);
        if (li < 0)
            return (enum dp_err)li;
        o->layer = li;
    }
    int c, h, w;
    imp__shape(im, o->layer, &c, &h, &w);
    if (info != NULL) {
        info->out_rank = o->rank;
        info->out_seq_t = out_t;
        info->in_seq_first = im->in_tm;
        info->out_c = c;
        info->out_h = h;
        info->out_w = w;
    }
    /* The engine's logits are the last layer, a vector per sample. */
    if (o->layer != im->m->n_layers - 1 || h != 1 || w != 1) {
        char name[DP_NAME_MAX];
        snprintf(name, sizeof(name), "output_flatten");
        for (int k = 2; dp_model_layer_find(im->m, name) >= 0; k++)
            snprintf(name, sizeof(name), "output_flatten_%d", k);
        struct dp_errinfo sub = {DP_OK, ""};
        int li = dp_model_add_layer(im->m, name, DP_OP_FLATTEN, &o->layer, 1, NULL, &sub);
        if (li < 0)
            return dp_errinfo_set(im->ei, (enum dp_err)li, "%s", sub.msg);
    }
    const struct dp_layer *last = &im->m->layers[im->m->n_layers - 1];
    if (last->op == DP_OP_FLATTEN && last->inputs[0] == DP_MODEL_INPUT) {
        int li = imp_identity(im, im->m->n_layers - 1);
        if (li < 0)
            return (enum dp_err)li;
    }
    struct dp_errinfo sub = {DP_OK, ""};
    enum dp_err err = dp_model_finalize(im->m, &sub);
    if (err)
        return dp_errinfo_set(im->ei, err, "%s", sub.msg);
    for (int i = 0; i < im->n_copies; i++) {
        const struct imp_pcopy *pc = &im->copies[i];
        char pname[DP_NAME_MAX * 2];
        snprintf(pname, sizeof(pname), "%s.%s", im->m->layers[pc->layer].name, pc->suffix);
        struct dp_param *p = dp_model_param_find(im->m, pname);
        if (p == NULL)
            return dp_errinfo_set(im->ei, DP_EFORMAT, "layer '%s' has no parameter '%s'",
                                  im->m->layers[pc->layer].name, pc->suffix);
        if (p->numel != pc->n)
            return dp_errinfo_set(im->ei, DP_ESHAPE,
                                  "parameter '%s' needs %zu values, the ONNX tensor has %zu", pname,
                                  p->numel, pc->n);
        float *dst = dp_param_data(im->m, p);
        for (size_t k = 0; k < pc->n; k++) {
            if (!isfinite(pc->data[k]))
                return dp_errinfo_set(im->ei, DP_ENUMERIC,
                                      "parameter '%s' holds a NaN or infinite value at %zu", pname,
                                      k);
            dst[k] = pc->data[k];
        }
    }
    return DP_OK;
}

/*
 * Restores each layer's compression metadata from the "dnnpress.compression"
 * entry that dp_onnx_export_file writes. The entry is advisory: a malformed
 * one is logged and ignored, never trusted.
 */
static void imp_restore_compression(struct dp_model *m, const Onnx__ModelProto *mp)
{
    for (size_t i = 0; i < mp->n_metadata_props; i++) {
        const Onnx__StringStringEntryProto *kv = mp->metadata_props[i];
        if (kv->key == NULL || kv->value == NULL || strcmp(kv->key, "dnnpress.compression") != 0)
            continue;
        json_error_t je;
        json_t *root = json_loads(kv->value, JSON_REJECT_DUPLICATES, &je);
        const char *lname;
        json_t *o;
        if (!json_is_object(root)) {
            DP_LOG(DP_LOG_WARN, "ONNX import: ignoring malformed dnnpress.compression metadata");
            json_decref(root);
            return;
        }
        json_object_foreach (root, lname, o) {
            int li = dp_model_layer_find(m, lname);
            json_t *sc = json_object_get(o, "scheme"), *tr = json_object_get(o, "target_rate"),
                   *bi = json_object_get(o, "bits"), *sl = json_object_get(o, "scale");
            if (li < 0 || !json_is_string(sc) || strlen(json_string_value(sc)) >= 32 ||
                !json_is_number(tr) || !json_is_integer(bi) || !json_is_number(sl) ||
                !(json_number_value(tr) >= 0.0 && json_number_value(tr) < 1e9) ||
                json_integer_value(bi) < 0 || json_integer_value(bi) > 32 ||
                !(json_number_value(sl) >= 0.0 && json_number_value(sl) < 1e30)) {
                DP_LOG(DP_LOG_WARN, "ONNX import: ignoring bad compression metadata of '%.60s'",
                       lname);
                continue;
            }
            struct dp_layer_compress *c = &m->layers[li].comp;
            snprintf(c->scheme, sizeof(c->scheme), "%s", json_string_value(sc));
            c->target_rate = (float)json_number_value(tr);
            c->bits = (int)json_integer_value(bi);
            c->scale = (float)json_number_value(sl);
        }
        json_decref(root);
    }
}

static int64_t imp_opset(const Onnx__ModelProto *mp)
{
    for (size_t i = 0; i < mp->n_opset_import; i++) {
        const Onnx__OperatorSetIdProto *o = mp->opset_import[i];
        if (o->domain == NULL || o->domain[0] == '\0' || strcmp(o->domain, "ai.onnx") == 0)
            return o->has_version ? o->version : 0;
    }
    return 0;
}

enum dp_err dp_onnx_import(const struct Onnx__ModelProto *mp, struct dp_model **out,
                           struct dp_onnx_import_info *info, struct dp_errinfo *ei)
{
    struct imp im;
    enum dp_err err = DP_OK;
    *out = NULL;
    memset(&im, 0, sizeof(im));
    im.ei = ei;
    if (info != NULL)
        memset(info, 0, sizeof(*info));
    if (mp->graph == NULL)
        return dp_errinfo_set(ei, DP_EFORMAT, "the model has no graph");
    im.g = mp->graph;
    im.opset = imp_opset(mp);
    if (im.opset < DP_ONNX_OPSET_MIN || im.opset > DP_ONNX_OPSET_MAX)
        return dp_errinfo_set(ei, DP_EUNSUPPORTED,
                              "opset %lld of the default domain is outside [%d, %d]",
                              (long long)im.opset, DP_ONNX_OPSET_MIN, DP_ONNX_OPSET_MAX);
    imp__norm_find(&im);
    err = imp_check_ops(&im);
    if (err)
        return err;
    im.m = dp_model_new(1, 1, 1);
    if (im.m == NULL)
        return dp_errinfo_set(ei, DP_ENOMEM, "out of memory");
    err = imp_prepare(&im);
    if (!err)
        err = imp_input(&im);
    if (!err)
        err = imp__norm_bind(&im);
    for (size_t i = 0; !err && i < im.g->n_node; i++) {
        if (!imp__norm_skips(&im, (int)i))
            err = imp__node(&im, im.g->node[i], (int)i);
    }
    if (!err)
        err = imp_finish(&im, info);
    if (!err) {
        imp_restore_compression(im.m, mp);
        imp__norm_apply(&im, mp);
    }
    if (!err && info != NULL) {
        info->opset = im.opset;
        info->batch = im.batch;
    }
    if (!err) {
        *out = im.m;
        im.m = NULL;
    }
    dp_model_free(im.m);
    for (int i = 0; i < im.n_vals; i++) {
        dp_free(im.vals[i].f);
        dp_free(im.vals[i].iv);
    }
    dp_free(im.vals);
    dp_free(im.hash);
    for (int i = 0; i < im.n_copies; i++)
        dp_free(im.copies[i].data);
    dp_free(im.copies);
    dp_free(im.foldable);
    return err;
}

enum dp_err dp_onnx_import_file(const char *path, struct dp_model **out,
                                struct dp_onnx_import_info *info, struct dp_errinfo *ei)
{
    struct Onnx__ModelProto *mp = NULL;
    *out = NULL;
    enum dp_err err = dp_onnx_model_read(path, &mp, ei);
    if (err)
        return err;
    err = dp_onnx_import(mp, out, info, ei);
    dp_onnx_model_free(mp);
    if (err && ei != NULL) {
        char msg[sizeof(ei->msg)];
        snprintf(msg, sizeof(msg), "%s", ei->msg);
        dp_errinfo_set(ei, err, "%s: %s", path, msg);
    }
    return err;
}
