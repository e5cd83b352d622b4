/*
 * The input normalisation travels with the model (suite "model_norm"):
 * dp_model_norm_set validates; the graph JSON and checkpoints carry it;
 * the ONNX export starts with Sub/Div nodes (or, with no_norm, only says
 * so in metadata) and the importer takes either form back into the model,
 * not into layers; a foreign model that normalises with Sub/Div is taken
 * apart the same way; the data path uses a model's own numbers and
 * records the training set's in a model that has none.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "common/model_io.h"
#include "common/onnx.h"
#include "common/onnx_export.h"
#include "common/onnx_import.h"
#include "onnx.pb-c.h"
#include "tests/unit/test_util.h"
#include "worker/nn/arch.h"
#include "worker/nn/data.h"

static char mn_dir[64];

static void mn_setup(void)
{
    dp_test_tmpdir_make(mn_dir, sizeof(mn_dir), "model_norm");
}

static void mn_teardown(void)
{
    dp_test_tmpdir_remove(mn_dir);
}

TestSuite(model_norm, .init = mn_setup, .fini = mn_teardown);

/* A small RGB network (3x8x8 in) with initialised weights and a normalisation. */
static struct dp_model *mn_model(void)
{
    struct dp_errinfo ei = {DP_OK, ""};
    struct dp_model *m = NULL;
    cr_assert_eq(nn_arch_build("lenet5", 3, 28, 28, 10, &m, &ei), DP_OK, "%s", ei.msg);
    nn_arch_init(m, 7);
    const float mean[3] = {0.485f, 0.456f, 0.406f}, std[3] = {0.229f, 0.224f, 0.225f};
    cr_assert_eq(dp_model_norm_set(m, 3, mean, std, &ei), DP_OK, "%s", ei.msg);
    return m;
}

static void mn_expect_norm(const struct dp_model *m, const struct dp_model *b, const char *what)
{
    cr_assert_eq(b->norm.n_c, m->norm.n_c, "%s: %d channels normalised, want %d", what, b->norm.n_c,
                 m->norm.n_c);
    for (int c = 0; c < m->norm.n_c; c++)
        cr_expect(b->norm.mean[c] == m->norm.mean[c] && b->norm.std[c] == m->norm.std[c],
                  "%s: channel %d is %g/%g, want %g/%g", what, c, (double)b->norm.mean[c],
                  (double)b->norm.std[c], (double)m->norm.mean[c], (double)m->norm.std[c]);
}

static int mn_count_op(const struct Onnx__ModelProto *mp, const char *op)
{
    int n = 0;
    for (size_t i = 0; i < mp->graph->n_node; i++)
        n += strcmp(mp->graph->node[i]->op_type, op) == 0;
    return n;
}

static const char *mn_meta(const struct Onnx__ModelProto *mp, const char *key)
{
    for (size_t i = 0; i < mp->n_metadata_props; i++)
        if (strcmp(mp->metadata_props[i]->key, key) == 0)
            return mp->metadata_props[i]->value;
    return NULL;
}

Test(model_norm, set_validates)
{
    struct dp_model *m = dp_model_new(3, 4, 4);
    struct dp_errinfo ei = {DP_OK, ""};
    const float mean[3] = {0.5f, 0.5f, 0.5f}, std[3] = {0.25f, 0.0f, 0.25f};
    cr_expect_eq(dp_model_norm_set(m, 3, mean, std, &ei), DP_EINVAL);
    cr_expect(strstr(ei.msg, "std[1]") != NULL, "message: %s", ei.msg);
    cr_expect_eq(dp_model_norm_set(m, 1, mean, mean, &ei), DP_EINVAL, "1 channel for 3");
    cr_expect_eq(m->norm.n_c, 0, "a refused normalisation is not recorded");
    cr_expect_eq(dp_model_norm_set(m, 3, mean, mean, &ei), DP_OK, "%s", ei.msg);
    cr_expect_eq(m->norm.n_c, 3);
    dp_model_free(m);
    DP_ASSERT_NO_LEAKS();
}

Test(model_norm, graph_json_and_checkpoint_carry_it)
{
    struct dp_model *m = mn_model(), *back = NULL;
    struct dp_errinfo ei = {DP_OK, ""};
    json_t *g = NULL;
    cr_assert_eq(dp_model_graph_to_json(m, &g, &ei), DP_OK, "%s", ei.msg);
    cr_assert(json_is_object(json_object_get(g, "normalization")));
    cr_assert_eq(dp_model_graph_from_json(g, &back, &ei), DP_OK, "%s", ei.msg);
    mn_expect_norm(m, back, "graph JSON");
    dp_model_free(back);
    back = NULL;
    /* A bad one is refused with the field named. */
    json_t *std = json_object_get(json_object_get(g, "normalization"), "std");
    json_array_set_new(std, 1, json_real(-1.0));
    cr_expect_eq(dp_model_graph_from_json(g, &back, &ei), DP_EFORMAT);
    cr_expect(strstr(ei.msg, "std[1]") != NULL, "message: %s", ei.msg);
    json_decref(g);

    char path[128];
    snprintf(path, sizeof(path), "%s/n.safetensors", mn_dir);
    cr_assert_eq(dp_model_save(m, path, NULL, &ei), DP_OK, "%s", ei.msg);
    cr_assert_eq(dp_model_load(path, &back, NULL, &ei), DP_OK, "%s", ei.msg);
    mn_expect_norm(m, back, "checkpoint");
    dp_model_free(back);
    dp_model_free(m);
    DP_ASSERT_NO_LEAKS();
}

/* The export leads with Sub and Div and says so; the import gives the same
 * layers (none for the normalisation) and the same numbers back. */
Test(model_norm, onnx_export_leads_with_sub_div_and_import_takes_them_back)
{
    struct dp_model *m = mn_model(), *back = NULL;
    struct dp_errinfo ei = {DP_OK, ""};
    char path[128];
    snprintf(path, sizeof(path), "%s/n.onnx", mn_dir);
    cr_assert_eq(dp_onnx_export_file(m, path, NULL, &ei), DP_OK, "%s", ei.msg);
    struct Onnx__ModelProto *mp = NULL;
    cr_assert_eq(dp_onnx_model_read(path, &mp, &ei), DP_OK, "%s", ei.msg);
    cr_expect_str_eq(mp->graph->node[0]->op_type, "Sub");
    cr_expect_str_eq(mp->graph->node[1]->op_type, "Div");
    cr_expect_str_eq(mp->graph->node[0]->input[0], "input");
    const char *meta = mn_meta(mp, DP_MODEL_META_NORM);
    cr_assert_not_null(meta, "no " DP_MODEL_META_NORM " metadata");
    cr_expect(strstr(meta, "\"in_graph\":true") != NULL, "metadata: %s", meta);

    cr_assert_eq(dp_onnx_import(mp, &back, NULL, &ei), DP_OK, "%s", ei.msg);
    cr_expect_eq(back->n_layers, m->n_layers, "the normalisation became layers");
    mn_expect_norm(m, back, "Sub/Div nodes");
    dp_model_free(back);
    back = NULL;

    /* A foreign model: the same nodes without our metadata. */
    const size_t n_meta = mp->n_metadata_props;
    mp->n_metadata_props = 0;
    enum dp_err err = dp_onnx_import(mp, &back, NULL, &ei);
    mp->n_metadata_props = n_meta; /* the message as it was, for dp_onnx_model_free */
    cr_assert_eq(err, DP_OK, "%s", ei.msg);
    cr_expect_eq(back->n_layers, m->n_layers);
    mn_expect_norm(m, back, "Sub/Div nodes without metadata");
    dp_model_free(back);
    back = NULL;
    /* Sub only (a Div by one the exporter left out): mean kept, std 1. */
    Onnx__NodeProto **nodes = mp->graph->node;
    Onnx__NodeProto *sub = nodes[0], *div = nodes[1];
    char *sub_out = sub->output[0];
    sub->output[0] = div->output[0];
    nodes[1] = sub;
    mp->graph->node = nodes + 1;
    mp->graph->n_node--;
    err = dp_onnx_import(mp, &back, NULL, &ei);
    sub->output[0] = sub_out; /* the message as it was, for dp_onnx_model_free */
    nodes[1] = div;
    mp->graph->node = nodes;
    mp->graph->n_node++;
    cr_assert_eq(err, DP_OK, "%s", ei.msg);
    cr_expect_eq(back->n_layers, m->n_layers);
    cr_expect(back->norm.n_c == 3 && back->norm.mean[2] == m->norm.mean[2] &&
                  back->norm.std[2] == 1.0f,
              "Sub only: %d channels, %g/%g", back->norm.n_c, (double)back->norm.mean[2],
              (double)back->norm.std[2]);
    dp_model_free(back);
    dp_onnx_model_free(mp);
    dp_model_free(m);
    DP_ASSERT_NO_LEAKS();
}

/* no_norm: no nodes, the numbers in the metadata, which the import reads. */
Test(model_norm, onnx_export_without_nodes_keeps_the_metadata)
{
    struct dp_model *m = mn_model(), *back = NULL;
    struct dp_errinfo ei = {DP_OK, ""};
    char path[128];
    snprintf(path, sizeof(path), "%s/nn.onnx", mn_dir);
    struct dp_onnx_export_opts o = {0};
    o.no_norm = 1;
    cr_assert_eq(dp_onnx_export_file(m, path, &o, &ei), DP_OK, "%s", ei.msg);
    struct Onnx__ModelProto *mp = NULL;
    cr_assert_eq(dp_onnx_model_read(path, &mp, &ei), DP_OK, "%s", ei.msg);
    cr_expect_eq(mn_count_op(mp, "Sub") + mn_count_op(mp, "Div"), 0);
    const char *meta = mn_meta(mp, DP_MODEL_META_NORM);
    cr_assert_not_null(meta);
    cr_expect(strstr(meta, "\"in_graph\":false") != NULL, "metadata: %s", meta);
    cr_assert_eq(dp_onnx_import(mp, &back, NULL, &ei), DP_OK, "%s", ei.msg);
    mn_expect_norm(m, back, "metadata only");
    dp_model_free(back);
    dp_onnx_model_free(mp);
    /* A model without a normalisation writes neither. */
    dp_model_norm_set(m, 0, NULL, NULL, NULL);
    cr_assert_eq(dp_onnx_export_file(m, path, NULL, &ei), DP_OK, "%s", ei.msg);
    cr_assert_eq(dp_onnx_model_read(path, &mp, &ei), DP_OK, "%s", ei.msg);
    cr_expect_eq(mn_count_op(mp, "Sub") + mn_count_op(mp, "Div"), 0);
    cr_expect_null(mn_meta(mp, DP_MODEL_META_NORM));
    dp_onnx_model_free(mp);
    dp_model_free(m);
    DP_ASSERT_NO_LEAKS();
}

/* The data path: a model's own numbers win over the dataset's; a model
 * without any records the dataset's. */
Test(model_norm, data_path_uses_the_models_own)
{
    struct nn_dataset ds = {0};
    struct dp_errinfo ei = {DP_OK, ""};
    cr_assert_eq(nn_dataset_synthetic(&ds, 64, 3, 28, 28, 10, 1), DP_OK, "%s", ei.msg);
    float dmean[3], dstd[3], mean[3], std[3];
    nn_dataset_norm_stats(&ds, dmean, dstd);
    struct dp_model *m = mn_model();
    nn_dataset_model_norm(&ds, m, mean, std);
    for (int c = 0; c < 3; c++)
        cr_expect(mean[c] == m->norm.mean[c] && std[c] == m->norm.std[c] && mean[c] != dmean[c],
                  "channel %d: %g/%g, the model says %g/%g", c, (double)mean[c], (double)std[c],
                  (double)m->norm.mean[c], (double)m->norm.std[c]);
    dp_model_norm_set(m, 0, NULL, NULL, NULL);
    nn_dataset_model_norm(&ds, m, mean, std);
    cr_assert_eq(m->norm.n_c, 3, "the dataset's numbers are recorded");
    for (int c = 0; c < 3; c++)
        cr_expect(mean[c] == dmean[c] && std[c] == dstd[c] && m->norm.mean[c] == dmean[c] &&
                      m->norm.std[c] == dstd[c],
                  "channel %d", c);
    dp_model_free(m);
    nn_dataset_free(&ds);
    DP_ASSERT_NO_LEAKS();
}
