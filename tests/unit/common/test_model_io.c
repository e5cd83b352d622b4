/*
 * Tests for checkpoints and the graph JSON (common/model_io.c, suite
 * "model_io"): bit-exact round trips, graph validation, load errors and
 * allocation failure.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "common/alloc.h"
#include "common/model.h"
#include "common/model_io.h"
#include "common/safetensors.h"
#include "tests/unit/test_util.h"

#define MIO_N(a) (sizeof(a) / sizeof((a)[0]))

/* ---- Suite model_io ------------------------------------------------------------ */

static char mio_dir[64];

static void mio_setup(void)
{
    dp_test_tmpdir_make(mio_dir, sizeof(mio_dir), "mio");
}

static void mio_teardown(void)
{
    dp_test_tmpdir_remove(mio_dir);
}

TestSuite(model_io, .init = mio_setup, .fini = mio_teardown, .timeout = 60);

static void mio_path(char *buf, size_t cap, const char *name)
{
    snprintf(buf, cap, "%s/%s", mio_dir, name);
}

static void mio_set_comp(struct dp_layer *l, const char *scheme, float rate, int bits, float scale)
{
    memset(&l->comp, 0, sizeof(l->comp));
    snprintf(l->comp.scheme, sizeof(l->comp.scheme), "%s", scheme);
    l->comp.target_rate = rate;
    l->comp.bits = bits;
    l->comp.scale = scale;
}

/*
 * The test network: conv, bn, relu, a grouped dilated conv, a residual
 * add, a ceil-mode max pool, flatten, dropout and linear; filled with
 * values that include -0, a denormal, infinity and a NaN with a payload,
 * which must all come back bit for bit.
 */
static struct dp_model *mio_build(void)
{
    struct dp_errinfo ei = {DP_OK, ""};
    struct dp_model *m = dp_model_new(3, 8, 8);
    cr_assert_not_null(m);
    int c1 = dp_model_add_conv2d(m, "conv1", DP_MODEL_INPUT, 4, 3, 1, 1, 1, 1, &ei);
    int b1 = dp_model_add_bn2d(m, "bn1", c1, &ei);
    int r1 = dp_model_add_unary(m, "relu1", DP_OP_RELU, b1, &ei);
    struct dp_op_attrs a = {.kh = 3,
                            .kw = 3,
                            .sh = 1,
                            .sw = 1,
                            .pt = 2,
                            .pl = 2,
                            .pb = 2,
                            .pr = 2,
                            .dh = 2,
                            .dw = 2,
                            .out_ch = 4,
                            .groups = 2};
    int c2 = dp_model_add_layer(m, "conv2", DP_OP_CONV2D, &r1, 1, &a, &ei);
    int s = dp_model_add_add(m, "add1", r1, c2, &ei);
    struct dp_op_attrs pa = {.kh = 3,
                             .kw = 3,
                             .sh = 2,
                             .sw = 2,
                             .pt = 1,
                             .pl = 1,
                             .pb = 1,
                             .pr = 1,
                             .dh = 1,
                             .dw = 1,
                             .ceil_mode = 1};
    int p1 = dp_model_add_layer(m, "pool1", DP_OP_MAXPOOL, &s, 1, &pa, &ei);
    int fl = dp_model_add_unary(m, "flat", DP_OP_FLATTEN, p1, &ei);
    int dr = dp_model_add_unary(m, "drop", DP_OP_DROPOUT, fl, &ei);
    m->layers[dr].a.p = 0.25f;
    int fc = dp_model_add_linear(m, "fc", dr, 10, &ei);
    cr_assert_eq(fc, 8, "%s", ei.msg);
    m->layers[b1].a.eps = 1e-3f;
    m->layers[b1].a.momentum = 0.01f;
    cr_assert_eq(dp_model_finalize(m, &ei), DP_OK, "%s", ei.msg);
    cr_assert_eq(m->layers[p1].out_h, 5);
    mio_set_comp(&m->layers[c1], "pattern", 8.0f, 8, 0.0375f);
    mio_set_comp(&m->layers[fc], "irregular", 4.5f, 0, 0.0f);
    mio_set_comp(&m->layers[c2], "", 0.0f, 4, 1.0f / 3.0f);

    uint32_t x = 12345;
    for (size_t i = 0; i < m->n_floats; i++) {
        x = x * 1664525u + 1013904223u;
        m->data[i] = ((float)(x >> 8) / 16777216.0f - 0.5f) * 4.0f;
    }
    const uint32_t specials[] = {0x80000000u, 0x00000001u, 0x7f800000u, 0x7fc01234u, 0xff800000u};
    for (size_t i = 0; i < MIO_N(specials); i++)
        memcpy(&m->data[i * 7], &specials[i], sizeof(float));
    return m;
}

/* Asserts that two models have the same graph, metadata and bit-identical parameters. */
static void mio_assert_same(const struct dp_model *a, const struct dp_model *b)
{
    cr_assert_eq(a->in_c, b->in_c);
    cr_assert_eq(a->in_h, b->in_h);
    cr_assert_eq(a->in_w, b->in_w);
    cr_assert_eq(a->n_layers, b->n_layers);
    for (int i = 0; i < a->n_layers; i++) {
        const struct dp_layer *la = &a->layers[i], *lb = &b->layers[i];
        cr_assert_str_eq(la->name, lb->name);
        cr_assert_eq(la->op, lb->op, "%s", la->name);
        cr_assert_eq(la->n_inputs, lb->n_inputs);
        for (int k = 0; k < la->n_inputs; k++)
            cr_assert_eq(la->inputs[k], lb->inputs[k]);
        cr_assert_eq(memcmp(&la->a, &lb->a, sizeof(la->a)), 0, "attrs of %s", la->name);
        cr_assert_eq(memcmp(&la->comp, &lb->comp, sizeof(la->comp)), 0, "comp of %s", la->name);
        cr_assert_eq(la->out_c, lb->out_c);
        cr_assert_eq(la->out_h, lb->out_h);
        cr_assert_eq(la->out_w, lb->out_w);
        cr_assert_eq(la->first_param, lb->first_param);
        cr_assert_eq(la->n_params, lb->n_params);
    }
    cr_assert_eq(a->n_params, b->n_params);
    for (int i = 0; i < a->n_params; i++) {
        cr_assert_str_eq(a->params[i].name, b->params[i].name);
        cr_assert_eq(a->params[i].ndim, b->params[i].ndim);
        cr_assert_eq(memcmp(a->params[i].shape, b->params[i].shape, sizeof(a->params[i].shape)), 0);
        cr_assert_eq(a->params[i].offset, b->params[i].offset);
        cr_assert_eq(a->params[i].trainable, b->params[i].trainable);
    }
    cr_assert_eq(a->n_floats, b->n_floats);
    cr_assert_eq(b->finalized, 1);
    cr_assert_eq(memcmp(a->data, b->data, a->n_floats * sizeof(float)), 0,
                 "parameters must be bit-identical");
}

Test(model_io, checkpoint_round_trip)
{
    struct dp_model *m = mio_build();
    char path[128];
    mio_path(path, sizeof(path), "ckpt.safetensors");
    json_t *extra = json_pack("{s:s, s:s}", "train.summary", "{\"epochs\":3,\"acc\":0.91}", "note",
                              "caf\xc3\xa9");
    struct dp_errinfo ei = {DP_OK, ""};
    cr_assert_eq(dp_model_save(m, path, extra, &ei), DP_OK, "%s", ei.msg);

    struct dp_model *back = NULL;
    json_t *extra_back = NULL;
    cr_assert_eq(dp_model_load(path, &back, &extra_back, &ei), DP_OK, "%s", ei.msg);
    mio_assert_same(m, back);
    cr_assert(json_equal(extra, extra_back), "extra metadata must come back unchanged");
    cr_assert_null(json_object_get(extra_back, DP_MODEL_META_GRAPH));
    json_decref(extra_back);
    dp_model_free(back);

    /* Without the extra metadata out-parameter, and without extra metadata at all. */
    cr_assert_eq(dp_model_load(path, &back, NULL, &ei), DP_OK, "%s", ei.msg);
    dp_model_free(back);
    cr_assert_eq(dp_model_save(m, path, NULL, &ei), DP_OK, "%s", ei.msg);
    cr_assert_eq(dp_model_load(path, &back, &extra_back, &ei), DP_OK, "%s", ei.msg);
    cr_assert_eq(json_object_size(extra_back), 0);
    mio_assert_same(m, back);
    json_decref(extra_back);
    dp_model_free(back);

    /* The file is an ordinary safetensors file with one F32 tensor per parameter. */
    struct dp_st_file *f = NULL;
    cr_assert_eq(dp_st_read(path, 1 << 24, &f, &ei), DP_OK, "%s", ei.msg);
    cr_assert_eq(dp_st_n_tensors(f), m->n_params);
    const struct dp_st_tensor *t = dp_st_find(f, "conv2.weight");
    cr_assert_not_null(t);
    cr_assert_eq(t->dtype, DP_ST_F32);
    cr_assert_eq(t->shape[1], 2, "grouped conv: C/groups input channels");
    const char *g = dp_st_meta_get(f, DP_MODEL_META_GRAPH);
    cr_assert_not_null(g);
    /* Floats are written in their shortest exact form. */
    cr_assert(strstr(g, "\"eps\":0.001") != NULL, "%s", g);
    cr_assert(strstr(g, "\"momentum\":0.01") != NULL, "%s", g);
    cr_assert(strstr(g, "\"p\":0.25") != NULL, "%s", g);
    cr_assert(strstr(g, "\"inputs\":[\"relu1\",\"conv2\"]") != NULL, "%s", g);
    cr_assert(strstr(g, "\"inputs\":[\"input\"]") != NULL, "%s", g);
    cr_assert(strstr(g, "\"scheme\":\"pattern\"") != NULL, "%s", g);
    dp_st_free(f);

    json_decref(extra);
    dp_model_free(m);
    DP_ASSERT_NO_LEAKS();
}

Test(model_io, graph_json_round_trip_is_deterministic)
{
    struct dp_model *m = mio_build();
    struct dp_errinfo ei = {DP_OK, ""};
    json_t *g1 = NULL, *g2 = NULL;
    cr_assert_eq(dp_model_graph_to_json(m, &g1, &ei), DP_OK, "%s", ei.msg);
    cr_assert_str_eq(json_string_value(json_object_get(g1, "format")), DP_GRAPH_FORMAT);
    cr_assert_eq(json_integer_value(json_object_get(g1, "version")), DP_GRAPH_VERSION);
    cr_assert_eq(json_array_size(json_object_get(g1, "layers")), (size_t)m->n_layers);
    /* Zero attributes are omitted; relu has none at all. */
    json_t *relu = json_array_get(json_object_get(g1, "layers"), 2);
    cr_assert_str_eq(json_string_value(json_object_get(relu, "op")), "relu");
    cr_assert_null(json_object_get(relu, "attrs"));
    cr_assert_null(json_object_get(relu, "compress"));

    struct dp_model *back = NULL;
    cr_assert_eq(dp_model_graph_from_json(g1, &back, &ei), DP_OK, "%s", ei.msg);
    cr_assert_eq(dp_model_graph_to_json(back, &g2, &ei), DP_OK, "%s", ei.msg);
    cr_assert(json_equal(g1, g2));
    /* A graph-only model has finalize's initial parameters. */
    cr_assert_eq(back->finalized, 1);
    cr_assert_eq(dp_param_data(back, dp_model_param_find(back, "bn1.weight"))[0], 1.0f);
    cr_assert_eq(dp_param_data(back, dp_model_param_find(back, "fc.weight"))[0], 0.0f);
    json_decref(g1);
    json_decref(g2);
    dp_model_free(back);

    /* An unfinalized model can be described too. */
    struct dp_model *u = dp_model_new(1, 2, 2);
    dp_model_add_unary(u, "r", DP_OP_RELU, DP_MODEL_INPUT, &ei);
    cr_assert_eq(dp_model_graph_to_json(u, &g1, &ei), DP_OK, "%s", ei.msg);
    json_decref(g1);
    dp_model_free(u);
    dp_model_free(m);
    DP_ASSERT_NO_LEAKS();
}

#define G_HEAD "{\"format\":\"dnnpress.graph\",\"version\":1,\"input\":[1,8,8],\"layers\":["
#define G_CONV(name, in, attrs)                                                                    \
    "{\"name\":\"" name "\",\"op\":\"conv2d\",\"inputs\":[\"" in "\"],\"attrs\":{" attrs "}}"
#define G_OKATTRS "\"out_ch\":2,\"kh\":3,\"kw\":3,\"sh\":1,\"sw\":1,\"dh\":1,\"dw\":1,\"groups\":1"

static const struct {
    const char *json;
    enum dp_err want;
    const char *msg;
} mio_bad_graphs[] = {
    {"[1]", DP_EFORMAT, "graph: not a JSON object"},
    {"{\"format\":\"onnx\",\"version\":1,\"input\":[1,8,8],\"layers\":[]}", DP_EFORMAT,
     "\"format\" must be \"dnnpress.graph\""},
    {"{\"format\":\"dnnpress.graph\",\"version\":2,\"input\":[1,8,8],\"layers\":[]}",
     DP_EUNSUPPORTED, "format version 2 is newer than this build reads (1); upgrade"},
    {"{\"format\":\"dnnpress.graph\",\"version\":0,\"input\":[1,8,8],\"layers\":[]}", DP_EFORMAT,
     "\"version\" must be a positive integer"},
    {"{\"format\":\"dnnpress.graph\",\"version\":1,\"input\":[1,8,8],\"layers\":[],\"x\":1}",
     DP_EFORMAT, "graph: top level: unknown field 'x'"},
    {"{\"format\":\"dnnpress.graph\",\"version\":1,\"input\":[1,8,8],\"layers\":[]}", DP_EFORMAT,
     "\"layers\" must be a non-empty array"},
    {G_HEAD "{\"name\":\"r\",\"op\":\"relu\",\"inputs\":[\"input\"]}],\"input\":[1,8]}", DP_EFORMAT,
     "\"input\" must be an array [C, H, W]"},
    {"{\"format\":\"dnnpress.graph\",\"version\":1,\"input\":[1,0,8],\"layers\":[{}]}", DP_EFORMAT,
     "\"input\" entry 1 must be an integer in [1, 65536]"},
    {"{\"format\":\"dnnpress.graph\",\"version\":1,\"input\":[65536,65536,65536],\"layers\":"
     "[{\"name\":\"f\",\"op\":\"flatten\",\"inputs\":[\"input\"]}]}",
     DP_ETOOBIG, "input 65536x65536x65536 is too large"},
    /* Layers. */
    {G_HEAD "5]}", DP_EFORMAT, "graph: layer 0 is not a JSON object"},
    {G_HEAD "{\"op\":\"relu\",\"inputs\":[\"input\"]}]}", DP_EFORMAT,
     "layer 0: \"name\" is missing"},
    {G_HEAD "{\"name\":\"\",\"op\":\"relu\",\"inputs\":[\"input\"]}]}", DP_EFORMAT,
     "name '' must be 1 to 63 bytes"},
    {G_HEAD "{\"name\":\"input\",\"op\":\"relu\",\"inputs\":[\"input\"]}]}", DP_EFORMAT,
     "layer 'input': the name 'input' is reserved"},
    {G_HEAD "{\"name\":\"c1\",\"op\":\"conv3d\",\"inputs\":[\"input\"]}]}", DP_EFORMAT,
     "graph: layer 'c1': unknown op 'conv3d'"},
    {G_HEAD "{\"name\":\"c1\",\"inputs\":[\"input\"]}]}", DP_EFORMAT,
     "layer 'c1': \"op\" is missing"},
    {G_HEAD "{\"name\":\"r\",\"op\":\"relu\",\"inputs\":[\"input\"],\"colour\":1}]}", DP_EFORMAT,
     "layer 'r': unknown field 'colour'"},
    {G_HEAD "{\"name\":\"r\",\"op\":\"relu\",\"inputs\":[\"nope\"]}]}", DP_EFORMAT,
     "layer 'r': input 'nope' is not an earlier layer"},
    {G_HEAD "{\"name\":\"a\",\"op\":\"relu\",\"inputs\":[\"b\"]},"
            "{\"name\":\"b\",\"op\":\"relu\",\"inputs\":[\"input\"]}]}",
     DP_EFORMAT, "layer 'a': input 'b' is not an earlier layer"},
    {G_HEAD "{\"name\":\"a\",\"op\":\"relu\",\"inputs\":[\"a\"]}]}", DP_EFORMAT,
     "input 'a' is not an earlier layer"},
    {G_HEAD "{\"name\":\"r\",\"op\":\"relu\",\"inputs\":[3]}]}", DP_EFORMAT,
     "layer 'r': input 0 is not a string"},
    {G_HEAD "{\"name\":\"r\",\"op\":\"relu\",\"inputs\":\"input\"}]}", DP_EFORMAT,
     "\"inputs\" must be an array of 1 layer name(s) (op relu)"},
    {G_HEAD "{\"name\":\"s\",\"op\":\"add\",\"inputs\":[\"input\"]}]}", DP_EFORMAT,
     "layer 's': \"inputs\" must be an array of 2"},
    {G_HEAD "{\"name\":\"r\",\"op\":\"relu\",\"inputs\":[\"input\"]},"
            "{\"name\":\"r\",\"op\":\"relu\",\"inputs\":[\"r\"]}]}",
     DP_EFORMAT, "layer 'r': duplicate layer name"},
    /* Attributes. */
    {G_HEAD G_CONV("c1", "input", "\"kh\":5000") "]}", DP_EFORMAT,
     "layer 'c1': \"attrs\": 'kh' = 5000 is out of range [0, 1024]"},
    {G_HEAD G_CONV("c1", "input", "\"dh\":-1") "]}", DP_EFORMAT,
     "layer 'c1': \"attrs\": 'dh' = -1 is out of range"},
    {G_HEAD G_CONV("c1", "input", "\"pt\":2147483647") "]}", DP_EFORMAT,
     "'pt' = 2147483647 is out of range [0, 65536]"},
    {G_HEAD G_CONV("c1", "input", "\"kh\":\"3\"") "]}", DP_EFORMAT,
     "layer 'c1': \"attrs\": 'kh' must be an integer"},
    {G_HEAD G_CONV("c1", "input", "\"kh\":3.0") "]}", DP_EFORMAT, "'kh' must be an integer"},
    {G_HEAD G_CONV("c1", "input", "\"kernel\":3") "]}", DP_EFORMAT,
     "layer 'c1': \"attrs\": unknown field 'kernel'"},
    {G_HEAD G_CONV("c1", "input", G_OKATTRS ",\"has_bias\":2") "]}", DP_EFORMAT,
     "'has_bias' = 2 is out of range [0, 1]"},
    {G_HEAD "{\"name\":\"b\",\"op\":\"bn2d\",\"inputs\":[\"input\"],\"attrs\":{\"eps\":-1}}]}",
     DP_EFORMAT, "layer 'b': \"attrs\": 'eps' = -1 is out of range [0, 1]"},
    {G_HEAD "{\"name\":\"b\",\"op\":\"bn2d\",\"inputs\":[\"input\"],\"attrs\":{\"eps\":\"x\"}}]}",
     DP_EFORMAT, "'eps' must be a number"},
    {G_HEAD "{\"name\":\"b\",\"op\":\"bn2d\",\"inputs\":[\"input\"],\"attrs\":[1]}]}", DP_EFORMAT,
     "layer 'b': \"attrs\" is not a JSON object"},
    /* Compression metadata. */
    {G_HEAD G_CONV("c1", "input", G_OKATTRS) ",{\"name\":\"r\",\"op\":\"relu\",\"inputs\":"
                                             "[\"c1\"],\"compress\":{\"bits\":64}}]}",
     DP_EFORMAT, "layer 'r': \"compress\": 'bits' = 64 is out of range [0, 32]"},
    {G_HEAD "{\"name\":\"r\",\"op\":\"relu\",\"inputs\":[\"input\"],\"compress\":{\"scheme\":"
            "\"abcdefghijklmnopqrstuvwxyz0123456789\"}}]}",
     DP_EFORMAT, "'scheme' must be a string of fewer than 32 bytes"},
    {G_HEAD "{\"name\":\"r\",\"op\":\"relu\",\"inputs\":[\"input\"],\"compress\":{\"rate\":1}}]}",
     DP_EFORMAT, "layer 'r': \"compress\": unknown field 'rate'"},
    {G_HEAD "{\"name\":\"r\",\"op\":\"relu\",\"inputs\":[\"input\"],\"compress\":{"
            "\"target_rate\":-2}}]}",
     DP_EFORMAT, "'target_rate' = -2 is out of range"},
    /* Well-formed but not a valid network: finalize's errors come through. */
    {G_HEAD G_CONV("c1", "input",
                   "\"out_ch\":2,\"kh\":9,\"kw\":9,\"sh\":1,\"sw\":1,\"dh\":1,"
                   "\"dw\":1,\"groups\":1") "]}",
     DP_ESHAPE, "layer 'c1': 9x9 kernel does not fit a 8x8 input"},
    {G_HEAD G_CONV("c1", "input",
                   "\"out_ch\":3,\"kh\":3,\"kw\":3,\"sh\":1,\"sw\":1,\"dh\":1,"
                   "\"dw\":1,\"groups\":2") "]}",
     DP_ESHAPE, "not divisible by groups=2"},
    {G_HEAD G_CONV("c1", "input", "\"out_ch\":2") "]}", DP_EINVAL,
     "layer 'c1': kernel, stride and dilation must be in [1, 1024]"},
};

Test(model_io, graph_validation_errors)
{
    for (size_t i = 0; i < MIO_N(mio_bad_graphs); i++) {
        json_error_t jerr;
        json_t *g = json_loads(mio_bad_graphs[i].json, 0, &jerr);
        cr_assert_not_null(g, "case %zu is not JSON: %s", i, jerr.text);
        struct dp_model *m = (struct dp_model *)&jerr; /* must be reset to NULL */
        struct dp_errinfo ei = {DP_OK, ""};
        enum dp_err err = dp_model_graph_from_json(g, &m, &ei);
        cr_assert_eq(err, mio_bad_graphs[i].want, "case %zu: %s: %s", i, dp_err_name(err), ei.msg);
        cr_assert_null(m);
        cr_assert(strstr(ei.msg, mio_bad_graphs[i].msg) != NULL, "case %zu: '%s' lacks '%s'", i,
                  ei.msg, mio_bad_graphs[i].msg);
        json_decref(g);
    }
    /* The good graph the table's variations start from. */
    json_t *g = json_loads(G_HEAD G_CONV("c1", "input", G_OKATTRS) "]}", 0, NULL);
    struct dp_model *m = NULL;
    struct dp_errinfo ei = {DP_OK, ""};
    cr_assert_eq(dp_model_graph_from_json(g, &m, &ei), DP_OK, "%s", ei.msg);
    cr_assert_eq(m->layers[0].out_h, 6);
    dp_model_free(m);
    json_decref(g);
    DP_ASSERT_NO_LEAKS();
}

/*
 * Replaces numbers in a valid graph with extreme values and checks that
 * every variation either builds or fails cleanly: the attribute bounds
 * must keep shape inference free of overflow (UBSan watches).
 */
Test(model_io, extreme_numbers_in_the_graph_fail_cleanly)
{
    static const char *const values[] = {"0",    "1",          "-1",     "2",     "1024",
                                         "1025", "65536",      "65537",  "4096",  "1e9",
                                         "0.5",  "2147483647", "-65536", "1e-30", "3"};
    struct dp_model *m = mio_build();
    struct dp_errinfo ei = {DP_OK, ""};
    json_t *g = NULL;
    cr_assert_eq(dp_model_graph_to_json(m, &g, &ei), DP_OK);
    char *text = json_dumps(g, JSON_COMPACT);
    json_decref(g);
    size_t len = strlen(text);
    char *buf = dp_malloc(len + 64);
    uint32_t x = 7;
    int n_ok = 0, n_err = 0;
    for (int iter = 0; iter < 2000; iter++) {
        /* Pick a number in the text (a digit after ':' , '[' or ','). */
        x = x * 1664525u + 1013904223u;
        size_t start = (size_t)(x >> 8) % len;
        while (start < len &&
               !(text[start] >= '0' && text[start] <= '9' &&
                 (text[start - 1] == ':' || text[start - 1] == '[' || text[start - 1] == ',')))
            start++;
        if (start >= len)
            continue;
        size_t end = start;
        while (end < len && strchr("0123456789.e-+", text[end]) != NULL)
            end++;
        x = x * 1664525u + 1013904223u;
        const char *v = values[(x >> 8) % MIO_N(values)];
        size_t vl = strlen(v);
        memcpy(buf, text, start);
        memcpy(buf + start, v, vl);
        memcpy(buf + start + vl, text + end, len - end + 1);
        json_t *mut = json_loads(buf, 0, NULL);
        cr_assert_not_null(mut, "%s", buf);
        struct dp_model *out = NULL;
        enum dp_err err = dp_model_graph_from_json(mut, &out, &ei);
        if (err == DP_OK) {
            n_ok++;
            dp_model_free(out);
        } else {
            n_err++;
            cr_assert_null(out);
            cr_assert_neq(ei.msg[0], '\0');
            cr_assert(err == DP_EFORMAT || err == DP_ESHAPE || err == DP_EINVAL ||
                          err == DP_ETOOBIG || err == DP_EUNSUPPORTED,
                      "%s: %s", dp_err_name(err), ei.msg);
        }
        json_decref(mut);
    }
    cr_assert_gt(n_ok, 0);
    cr_assert_gt(n_err, 0);
    json_malloc_t ma;
    json_free_t fr;
    json_get_alloc_funcs(&ma, &fr);
    fr(text);
    dp_free(buf);
    dp_model_free(m);
    DP_ASSERT_NO_LEAKS();
}

/* Writes a checkpoint for m's graph with the given tensors instead of m's. */
static void mio_write_custom(const char *path, const struct dp_model *m,
                             const struct dp_st_tensor *ts, int n, const char *graph_override)
{
    struct dp_errinfo ei = {DP_OK, ""};
    json_t *meta = json_object();
    if (graph_override != NULL) {
        json_object_set_new(meta, DP_MODEL_META_GRAPH, json_string(graph_override));
    } else if (m != NULL) {
        json_t *g = NULL;
        cr_assert_eq(dp_model_graph_to_json(m, &g, &ei), DP_OK);
        char *text = json_dumps(g, JSON_COMPACT);
        json_object_set_new(meta, DP_MODEL_META_GRAPH, json_string(text));
        json_malloc_t ma;
        json_free_t fr;
        json_get_alloc_funcs(&ma, &fr);
        fr(text);
        json_decref(g);
    }
    cr_assert_eq(dp_st_write(path, ts, n, meta, &ei), DP_OK, "%s", ei.msg);
    json_decref(meta);
}

/* m's parameters as safetensors descriptors (the caller frees the array). */
static struct dp_st_tensor *mio_tensors(const struct dp_model *m)
{
    struct dp_st_tensor *ts = dp_calloc((size_t)m->n_params + 1, sizeof(*ts));
    for (int i = 0; i < m->n_params; i++) {
        ts[i].name = m->params[i].name;
        ts[i].dtype = DP_ST_F32;
        ts[i].ndim = m->params[i].ndim;
        for (int d = 0; d < m->params[i].ndim; d++)
            ts[i].shape[d] = m->params[i].shape[d];
        ts[i].data = dp_param_data(m, &m->params[i]);
    }
    return ts;
}

static void mio_expect_load_error(const char *path, enum dp_err want, const char *msg)
{
    struct dp_model *back = NULL;
    json_t *extra = NULL;
    struct dp_errinfo ei = {DP_OK, ""};
    enum dp_err err = dp_model_load(path, &back, &extra, &ei);
    cr_assert_eq(err, want, "%s: %s", dp_err_name(err), ei.msg);
    cr_assert_null(back);
    cr_assert_null(extra);
    cr_assert(strstr(ei.msg, msg) != NULL, "'%s' lacks '%s'", ei.msg, msg);
}

Test(model_io, load_errors_name_the_tensor_and_shapes)
{
    struct dp_model *m = mio_build();
    struct dp_st_tensor *ts = mio_tensors(m);
    int n = m->n_params;
    char path[128];
    mio_path(path, sizeof(path), "bad.safetensors");
    int fcw = (int)(dp_model_param_find(m, "fc.weight") - m->params);
    int fcb = (int)(dp_model_param_find(m, "fc.bias") - m->params);
    cr_assert_eq(fcb, n - 1);

    /* A missing tensor (the last one, fc.bias). */
    mio_write_custom(path, m, ts, n - 1, NULL);
    mio_expect_load_error(path, DP_EFORMAT,
                          "bad.safetensors: tensor 'fc.bias' is missing (the graph declares it "
                          "with shape [10])");

    /* A wrong shape. */
    struct dp_st_tensor saved = ts[fcw];
    ts[fcw].shape[1] = 3;
    mio_write_custom(path, m, ts, n, NULL);
    mio_expect_load_error(path, DP_ESHAPE,
                          "bad.safetensors: tensor 'fc.weight' has shape [10, 3], the graph "
                          "needs [10, 100]");
    ts[fcw] = saved;
    ts[fcw].ndim = 1;
    ts[fcw].shape[0] = 1000;
    mio_write_custom(path, m, ts, n, NULL);
    mio_expect_load_error(path, DP_ESHAPE, "has shape [1000], the graph needs [10, 100]");
    ts[fcw] = saved;

    /* A wrong dtype with the right shape. */
    ts[fcb].dtype = DP_ST_I32;
    mio_write_custom(path, m, ts, n, NULL);
    mio_expect_load_error(path, DP_EFORMAT, "tensor 'fc.bias' is I32, expected F32");
    ts[fcb].dtype = DP_ST_F32;

    /* A tensor the graph does not declare. */
    float extra_v = 1.0f;
    ts[n] = (struct dp_st_tensor){
        .name = "ghost.weight", .dtype = DP_ST_F32, .ndim = 1, .shape = {1}, .data = &extra_v};
    mio_write_custom(path, m, ts, n + 1, NULL);
    mio_expect_load_error(path, DP_EFORMAT,
                          "tensor 'ghost.weight' is not a parameter of the graph");

    /* No graph, a graph that is not JSON, a graph that is invalid. */
    mio_write_custom(path, NULL, ts, n, NULL);
    mio_expect_load_error(path, DP_EFORMAT, "no \"dnnpress.graph\" metadata: not a dnnpress");
    mio_write_custom(path, m, ts, n, "{oops");
    mio_expect_load_error(path, DP_EFORMAT,
                          "bad.safetensors: the graph metadata is not valid JSON");
    mio_write_custom(path, m, ts, n,
                     G_HEAD "{\"name\":\"c1\",\"op\":\"conv3d\",\"inputs\":[\"input\"]}]}");
    mio_expect_load_error(path, DP_EFORMAT,
                          "bad.safetensors: graph: layer 'c1': unknown op 'conv3d'");

    /* File-level problems come from the safetensors reader. */
    mio_path(path, sizeof(path), "absent.safetensors");
    mio_expect_load_error(path, DP_ENOENT, "absent.safetensors: cannot open");
    mio_path(path, sizeof(path), "cut.safetensors");
    struct dp_errinfo ei = {DP_OK, ""};
    cr_assert_eq(dp_model_save(m, path, NULL, &ei), DP_OK, "%s", ei.msg);
    cr_assert_eq(truncate(path, 100), 0);
    mio_expect_load_error(path, DP_ETRUNC, "cut.safetensors: ");

    dp_free(ts);
    dp_model_free(m);
    DP_ASSERT_NO_LEAKS();
}

Test(model_io, save_errors)
{
    char path[128];
    mio_path(path, sizeof(path), "s.safetensors");
    struct dp_errinfo ei = {DP_OK, ""};

    struct dp_model *u = dp_model_new(1, 2, 2);
    dp_model_add_unary(u, "r", DP_OP_RELU, DP_MODEL_INPUT, &ei);
    cr_assert_eq(dp_model_save(u, path, NULL, &ei), DP_EINVAL);
    cr_assert(strstr(ei.msg, "must be finalized") != NULL, "%s", ei.msg);
    dp_model_free(u);

    struct dp_model *m = mio_build();
    json_t *bad = json_pack("{s:s}", "dnnpress.graph", "x");
    cr_assert_eq(dp_model_save(m, path, bad, &ei), DP_EINVAL);
    cr_assert(strstr(ei.msg, "extra metadata key 'dnnpress.graph' is reserved") != NULL, "%s",
              ei.msg);
    json_decref(bad);
    bad = json_pack("{s:i}", "epochs", 3);
    cr_assert_eq(dp_model_save(m, path, bad, &ei), DP_EINVAL);
    json_decref(bad);
    bad = json_array();
    cr_assert_eq(dp_model_save(m, path, bad, &ei), DP_EINVAL);
    json_decref(bad);

    /* A layer called "input" cannot be described. */
    u = dp_model_new(1, 2, 2);
    dp_model_add_unary(u, "input", DP_OP_RELU, DP_MODEL_INPUT, &ei);
    cr_assert_eq(dp_model_finalize(u, &ei), DP_OK);
    cr_assert_eq(dp_model_save(u, path, NULL, &ei), DP_EINVAL);
    cr_assert(strstr(ei.msg, "rename the layer") != NULL, "%s", ei.msg);
    dp_model_free(u);

    /* Neither can a NaN attribute. */
    m->layers[1].a.momentum = NAN;
    cr_assert_eq(dp_model_save(m, path, NULL, &ei), DP_EINVAL);
    cr_assert(strstr(ei.msg, "layer 'bn1': field 'momentum' is not finite") != NULL, "%s", ei.msg);

    /* Nothing was written by any of these. */
    cr_assert_eq(access(path, F_OK), -1);
    dp_model_free(m);
    DP_ASSERT_NO_LEAKS();
}

/* ---- Allocation failure ------------------------------------------------------- */

static json_malloc_t mio_saved_malloc;
static json_free_t mio_saved_free;

static void mio_hook_jansson(void)
{
    json_get_alloc_funcs(&mio_saved_malloc, &mio_saved_free);
    json_set_alloc_funcs(dp_malloc, dp_free);
}

static void mio_unhook_jansson(void)
{
    json_set_alloc_funcs(mio_saved_malloc, mio_saved_free);
}

Test(model_io, allocation_failure_in_load)
{
    struct dp_model *m = mio_build();
    char path[128];
    mio_path(path, sizeof(path), "oom.safetensors");
    json_t *extra = json_pack("{s:s}", "k", "v");
    struct dp_errinfo ei = {DP_OK, ""};
    cr_assert_eq(dp_model_save(m, path, extra, &ei), DP_OK, "%s", ei.msg);
    json_decref(extra);

    mio_hook_jansson();
    long n;
    int n_fail = 0;
    for (n = 0; n < 100000; n++) {
        struct dp_model *back = NULL;
        json_t *meta = NULL;
        dp_alloc_fail_after(n);
        enum dp_err err = dp_model_load(path, &back, &meta, &ei);
        dp_alloc_fail_reset();
        if (err == DP_OK) {
            mio_assert_same(m, back);
            cr_assert_str_eq(json_string_value(json_object_get(meta, "k")), "v");
            json_decref(meta);
            dp_model_free(back);
            break;
        }
        /* jansson's lexer reports some allocation failures as syntax errors. */
        cr_assert(err == DP_ENOMEM || (err == DP_EFORMAT && strstr(ei.msg, "not valid JSON")),
                  "fail after %ld: %s: %s", n, dp_err_name(err), ei.msg);
        cr_assert_null(back);
        cr_assert_null(meta);
        n_fail++;
    }
    mio_unhook_jansson();
    cr_assert_lt(n, 100000);
    cr_assert_gt(n_fail, 10);
    dp_model_free(m);
    DP_ASSERT_NO_LEAKS();
}

Test(model_io, allocation_failure_in_save)
{
    struct dp_model *m = mio_build();
    char path[128];
    mio_path(path, sizeof(path), "oom-save.safetensors");
    json_t *extra = json_pack("{s:s}", "k", "v");
    mio_hook_jansson();
    long n;
    for (n = 0; n < 100000; n++) {
        struct dp_errinfo ei = {DP_OK, ""};
        dp_alloc_fail_after(n);
        enum dp_err err = dp_model_save(m, path, extra, &ei);
        dp_alloc_fail_reset();
        if (err == DP_OK)
            break;
        cr_assert_eq(err, DP_ENOMEM, "fail after %ld: %s: %s", n, dp_err_name(err), ei.msg);
        cr_assert_eq(access(path, F_OK), -1, "fail after %ld left a file", n);
    }
    mio_unhook_jansson();
    json_decref(extra);
    cr_assert_lt(n, 100000);
    struct dp_model *back = NULL;
    struct dp_errinfo ei = {DP_OK, ""};
    cr_assert_eq(dp_model_load(path, &back, NULL, &ei), DP_OK, "%s", ei.msg);
    mio_assert_same(m, back);
    dp_model_free(back);
    dp_model_free(m);
    DP_ASSERT_NO_LEAKS();
}

/* A few hundred bytes of graph must not make the parser allocate gigabytes:
 * 4096 channels in, 4096 out, 16x16 kernels declare 2^32 floats. */
Test(model_io, huge_graph_is_refused_before_allocating)
{
    json_t *g = json_loads("{\"format\":\"dnnpress.graph\",\"version\":1,\"input\":[4096,16,16],"
                           "\"layers\":[" G_CONV("c1", "input",
                                                 "\"out_ch\":262144,\"kh\":16,\"kw\":16,\"sh\":1,"
                                                 "\"sw\":1,\"dh\":1,\"dw\":1,\"groups\":1") "]}",
                           0, NULL);
    cr_assert_not_null(g);
    struct dp_model *m = NULL;
    struct dp_errinfo ei = {DP_OK, ""};
    enum dp_err err = dp_model_graph_from_json(g, &m, &ei);
    cr_assert_neq(err, DP_OK);
    cr_assert_null(m);
    cr_assert(strstr(ei.msg, "c1") != NULL || strstr(ei.msg, "parameters") != NULL, "%s", ei.msg);
    json_decref(g);
    DP_ASSERT_NO_LEAKS();
}
