/*
 * ONNX reader, importer and exporter (suite "onnx"): export-then-import
 * gives identical tensors and graphs for the built-in architectures; the
 * QuantizeLinear/DequantizeLinear form of quantized weights folds back to
 * the same levels; compression metadata survives the trip; unsupported
 * operators are all named; truncated, corrupted and deeply nested input
 * and allocation failures are errors, never crashes or leaks.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "common/alloc.h"
#include "common/file.h"
#include "common/log.h"
#include "common/onnx.h"
#include "common/onnx_export.h"
#include "common/onnx_import.h"
#include "onnx.pb-c.h"
#include "tests/unit/test_util.h"
#include "worker/circulant/circ.h"
#include "worker/nn/arch.h"

static char ox_dir[64];

static void ox_setup(void)
{
    dp_test_tmpdir_make(ox_dir, sizeof(ox_dir), "onnx");
}

static void ox_teardown(void)
{
    dp_test_tmpdir_remove(ox_dir);
}

TestSuite(onnx, .init = ox_setup, .fini = ox_teardown);

/* Gives BatchNorm layers non-trivial statistics so that they are checked too. */
static void ox_randomize_bn(struct dp_model *m)
{
    uint64_t s = 12345;
    for (int i = 0; i < m->n_params; i++) {
        const struct dp_param *p = &m->params[i];
        if (m->layers[p->layer].op != DP_OP_BN2D)
            continue;
        float *d = dp_param_data(m, p);
        for (size_t k = 0; k < p->numel; k++) {
            s = s * 6364136223846793005ull + 1442695040888963407ull;
            d[k] = 0.5f + (float)(s >> 40) / (float)(1u << 24);
        }
    }
}

static void ox_expect_same(const struct dp_model *a, const struct dp_model *b, const char *what)
{
    cr_assert_eq(a->n_layers, b->n_layers, "%s: %d layers, re-imported %d", what, a->n_layers,
                 b->n_layers);
    cr_expect(a->in_c == b->in_c && a->in_h == b->in_h && a->in_w == b->in_w, "%s: input shape",
              what);
    for (int i = 0; i < a->n_layers; i++) {
        const struct dp_layer *la = &a->layers[i], *lb = &b->layers[i];
        cr_expect_str_eq(la->name, lb->name, "%s: layer %d name", what);
        cr_expect_eq(la->op, lb->op, "%s: layer '%s' op %d vs %d", what, la->name, la->op, lb->op);
        cr_expect(la->out_c == lb->out_c && la->out_h == lb->out_h && la->out_w == lb->out_w,
                  "%s: layer '%s' shape", what, la->name);
        cr_expect_str_eq(la->comp.scheme, lb->comp.scheme, "%s: layer '%s' scheme", what, la->name);
        cr_expect_eq(la->comp.bits, lb->comp.bits, "%s: layer '%s' bits", what, la->name);
        cr_expect_eq(la->comp.target_rate, lb->comp.target_rate, "%s: layer '%s' rate", what,
                     la->name);
    }
    cr_assert_eq(a->n_params, b->n_params, "%s: parameter count", what);
    for (int i = 0; i < a->n_params; i++) {
        const struct dp_param *pa = &a->params[i];
        const struct dp_param *pb = dp_model_param_find(b, pa->name);
        cr_assert_not_null(pb, "%s: parameter '%s' is missing after import", what, pa->name);
        cr_assert_eq(pa->numel, pb->numel, "%s: '%s' size", what, pa->name);
        cr_expect(memcmp(dp_param_data(a, pa), dp_param_data(b, pb), pa->numel * 4) == 0,
                  "%s: parameter '%s' differs after export and import", what, pa->name);
    }
}

Test(onnx, roundtrip_builtin_architectures)
{
    static const char *const archs[] = {"lenet5", "lenet-300-100", "resnet20-cifar",
                                        "mobilenetv2-cifar"};
    for (size_t k = 0; k < sizeof(archs) / sizeof(archs[0]); k++) {
        struct dp_model *m = NULL, *back = NULL;
        struct dp_errinfo ei = {DP_OK, ""};
        int in_c = k < 2 ? 1 : 3, in_hw = k < 2 ? 28 : 32;
        cr_assert_eq(nn_arch_build(archs[k], in_c, in_hw, in_hw, 10, &m, &ei), DP_OK, "%s", ei.msg);
        nn_arch_init(m, 7 + k);
        ox_randomize_bn(m);
        /* Compression metadata on the first layer must come back. */
        snprintf(m->layers[1].comp.scheme, sizeof(m->layers[1].comp.scheme), "irregular");
        m->layers[1].comp.target_rate = 8.0f;
        char path[128];
        snprintf(path, sizeof(path), "%s/%s.onnx", ox_dir, archs[k]);
        cr_assert_eq(dp_onnx_export_file(m, path, NULL, &ei), DP_OK, "%s: %s", archs[k], ei.msg);
        struct dp_onnx_import_info info;
        cr_assert_eq(dp_onnx_import_file(path, &back, &info, &ei), DP_OK, "%s: %s", archs[k],
                     ei.msg);
        cr_expect_eq(info.opset, DP_ONNX_EXPORT_OPSET);
        ox_expect_same(m, back, archs[k]);
        dp_model_free(back);
        back = NULL;
        /* Opset 10: Clip bounds and the dropout ratio as attributes. */
        struct dp_onnx_export_opts o10 = {0, 10, 0, NULL, 0};
        cr_assert_eq(dp_onnx_export_file(m, path, &o10, &ei), DP_OK, "%s: %s", archs[k], ei.msg);
        cr_assert_eq(dp_onnx_import_file(path, &back, &info, &ei), DP_OK, "%s: %s", archs[k],
                     ei.msg);
        cr_expect_eq(info.opset, 10);
        ox_expect_same(m, back, archs[k]);
        dp_model_free(m);
        dp_model_free(back);
    }
    DP_ASSERT_NO_LEAKS();
}

/* LeNet-5 exported to ox_dir/file and read back: the file's bytes (dp_free). */
static uint8_t *ox_lenet5_bytes(const char *file, size_t *len)
{
    struct dp_model *m = NULL;
    struct dp_errinfo ei = {DP_OK, ""};
    cr_assert_eq(nn_arch_build("lenet5", 1, 28, 28, 10, &m, &ei), DP_OK, "%s", ei.msg);
    char path[128];
    snprintf(path, sizeof(path), "%s/%s", ox_dir, file);
    cr_assert_eq(dp_onnx_export_file(m, path, NULL, &ei), DP_OK, "%s", ei.msg);
    dp_model_free(m);
    uint8_t *buf = NULL;
    cr_assert_eq(dp_file_read(path, path, DP_ONNX_FILE_MAX, &buf, len, &ei), DP_OK, "%s", ei.msg);
    return buf;
}

static int ox_has_op(const Onnx__ModelProto *mp, const char *op)
{
    for (size_t i = 0; i < mp->graph->n_node; i++) {
        if (strcmp(mp->graph->node[i]->op_type, op) == 0)
            return 1;
    }
    return 0;
}

/* The name of a node that shares it with another (ONNX Runtime refuses
 * such a graph), or NULL. */
static const char *ox_dup_node_name(const Onnx__ModelProto *mp)
{
    for (size_t i = 0; i < mp->graph->n_node; i++)
        for (size_t j = 0; j < i; j++)
            if (strcmp(mp->graph->node[i]->name, mp->graph->node[j]->name) == 0)
                return mp->graph->node[i]->name;
    return NULL;
}

/* A 4-bit quantized layer as QuantizeLinear/DequantizeLinear folds back to its levels. */
Test(onnx, qdq_export_folds_back_to_levels)
{
    struct dp_model *m = NULL, *back = NULL;
    struct dp_errinfo ei = {DP_OK, ""};
    cr_assert_eq(nn_arch_build("lenet5", 1, 28, 28, 10, &m, &ei), DP_OK, "%s", ei.msg);
    nn_arch_init(m, 3);
    const float scale = 0.0125f;
    /* conv2 on a per-layer grid, fc1 on per-channel grids with no recorded scale. */
    int conv2 = dp_model_layer_find(m, "conv2"), fc1 = dp_model_layer_find(m, "fc1");
    cr_assert(conv2 >= 0 && fc1 >= 0);
    struct dp_param *w2 = &m->params[m->layers[conv2].first_param];
    struct dp_param *wf = &m->params[m->layers[fc1].first_param];
    float *d2 = dp_param_data(m, w2), *df = dp_param_data(m, wf);
    for (size_t i = 0; i < w2->numel; i++)
        d2[i] = (float)((int)(i % 15) - 7) * scale;
    const size_t per = wf->numel / (size_t)wf->shape[0];
    for (size_t i = 0; i < wf->numel; i++)
        df[i] = (float)((int)(i % 15) - 7) * (0.01f + 0.001f * (float)(i / per));
    m->layers[conv2].comp.bits = 4;
    m->layers[conv2].comp.scale = scale;
    m->layers[fc1].comp.bits = 4;
    char path[128];
    snprintf(path, sizeof(path), "%s/q.onnx", ox_dir);
    struct dp_onnx_export_opts o = {1, 0, 0, NULL, 0};
    cr_assert_eq(dp_onnx_export_file(m, path, &o, &ei), DP_OK, "%s", ei.msg);
    struct Onnx__ModelProto *mp = NULL;
    cr_assert_eq(dp_onnx_model_read(path, &mp, &ei), DP_OK, "%s", ei.msg);
    cr_expect(ox_has_op(mp, "QuantizeLinear") && ox_has_op(mp, "DequantizeLinear"),
              "the export has no Q/DQ pair");
    dp_onnx_model_free(mp);
    cr_assert_eq(dp_onnx_import_file(path, &back, NULL, &ei), DP_OK, "%s", ei.msg);
    ox_expect_same(m, back, "qdq");
    dp_model_free(m);
    dp_model_free(back);
    DP_ASSERT_NO_LEAKS();
}

struct ox_logged {
    char text[1024];
};

static void ox_capture(enum dp_log_level level, const char *msg, void *ud)
{
    struct ox_logged *lg = ud;
    size_t n = strlen(lg->text);
    if (level >= DP_LOG_ERROR && n + 1 < sizeof(lg->text))
        snprintf(lg->text + n, sizeof(lg->text) - n, "%s\n", msg);
}

/* Every unsupported operator is named, with its node, in the error and the log. */
Test(onnx, unsupported_ops_are_all_listed)
{
    struct ox_logged lg = {""};
    dp_log_set_sink(ox_capture, &lg);
    struct dp_model *m = NULL, *back = NULL;
    struct dp_errinfo ei = {DP_OK, ""};
    cr_assert_eq(nn_arch_build("lenet5", 1, 28, 28, 10, &m, &ei), DP_OK, "%s", ei.msg);
    char path[128];
    snprintf(path, sizeof(path), "%s/u.onnx", ox_dir);
    cr_assert_eq(dp_onnx_export_file(m, path, NULL, &ei), DP_OK, "%s", ei.msg);
    struct Onnx__ModelProto *mp = NULL;
    cr_assert_eq(dp_onnx_model_read(path, &mp, &ei), DP_OK, "%s", ei.msg);
    /* Rename two operators to ones the importer does not have. */
    static char lrn[] = "LRN", tanh_[] = "Tanh";
    char *saved0 = mp->graph->node[1]->op_type, *saved1 = mp->graph->node[3]->op_type;
    mp->graph->node[1]->op_type = lrn;
    mp->graph->node[3]->op_type = tanh_;
    enum dp_err err = dp_onnx_import(mp, &back, NULL, &ei);
    mp->graph->node[1]->op_type = saved0;
    mp->graph->node[3]->op_type = saved1;
    cr_expect_eq(err, DP_EUNSUPPORTED);
    cr_expect_null(back);
    cr_expect(strstr(ei.msg, "2 unsupported") != NULL, "message: %s", ei.msg);
    cr_expect(strstr(ei.msg, "LRN") != NULL && strstr(ei.msg, "Tanh") != NULL, "message: %s",
              ei.msg);
    cr_expect(strstr(ei.msg, mp->graph->node[1]->name) != NULL, "no node name in: %s", ei.msg);
    dp_log_set_sink(NULL, NULL);
    cr_expect(strstr(lg.text, "LRN in node 'pool1'") != NULL &&
                  strstr(lg.text, "Tanh in node 'pool2'") != NULL,
              "log: %s", lg.text);
    dp_onnx_model_free(mp);
    dp_model_free(m);
    DP_ASSERT_NO_LEAKS();
}

/* Every prefix of a valid file, and files with corrupted bytes, fail cleanly. */
Test(onnx, truncated_and_corrupted_files)
{
    struct dp_errinfo ei = {DP_OK, ""};
    size_t len;
    uint8_t *buf = ox_lenet5_bytes("t.onnx", &len);
    int n_ok = 0;
    for (size_t cut = 0; cut < len; cut += cut < 4096 ? 1 : 997) {
        struct Onnx__ModelProto *mp = NULL;
        struct dp_model *back = NULL;
        enum dp_err err = dp_onnx_model_parse(buf, cut, &mp, &ei);
        if (err == DP_OK) {
            err = dp_onnx_import(mp, &back, NULL, &ei);
            n_ok += err == DP_OK;
        }
        cr_expect(err != DP_OK || back != NULL);
        dp_model_free(back);
        dp_onnx_model_free(mp);
    }
    /* A prefix that ends between fields can parse, but never imports as the whole model. */
    cr_expect_eq(n_ok, 0, "%d truncated files imported", n_ok);
    uint64_t s = 99;
    for (int trial = 0; trial < 300; trial++) {
        uint8_t *c = dp_malloc(len);
        cr_assert_not_null(c);
        memcpy(c, buf, len);
        for (int k = 0; k < 4; k++) {
            s = s * 6364136223846793005ull + 1442695040888963407ull;
            c[(s >> 33) % len] ^= (uint8_t)(1u << ((s >> 20) & 7));
        }
        struct Onnx__ModelProto *mp = NULL;
        struct dp_model *back = NULL;
        if (dp_onnx_model_parse(c, len, &mp, &ei) == DP_OK)
            (void)dp_onnx_import(mp, &back, NULL, &ei);
        dp_model_free(back);
        dp_onnx_model_free(mp);
        dp_free(c);
    }
    dp_free(buf);
    DP_ASSERT_NO_LEAKS();
}

/* A FIFO (or a missing file) is an error naming the path, never a read that blocks. */
Test(onnx, read_refuses_a_fifo)
{
    char path[128];
    snprintf(path, sizeof(path), "%s/fifo.onnx", ox_dir);
    cr_assert_eq(mkfifo(path, 0600), 0);
    struct Onnx__ModelProto *mp = NULL;
    struct dp_errinfo ei = {DP_OK, ""};
    cr_expect_eq(dp_onnx_model_read(path, &mp, &ei), DP_EIO);
    cr_expect_null(mp);
    cr_expect(strstr(ei.msg, "fifo.onnx: not a regular file") != NULL, "%s", ei.msg);
    snprintf(path, sizeof(path), "%s/absent.onnx", ox_dir);
    cr_expect_eq(dp_onnx_model_read(path, &mp, &ei), DP_ENOENT);
    cr_expect(strstr(ei.msg, "absent.onnx: cannot open") != NULL, "%s", ei.msg);
    DP_ASSERT_NO_LEAKS();
}

/* Messages nested thousands deep are refused before protobuf-c recurses. */
Test(onnx, nesting_bomb_is_refused)
{
    /* ModelProto.graph(7) -> GraphProto.node(1) -> NodeProto.attribute(5) ->
     * AttributeProto.g(6) -> GraphProto.node(1) -> ... built inside out. */
    const int depth = 3000;
    size_t cap = (size_t)depth * 8 + 64, len = 0;
    uint8_t *a = dp_malloc(cap), *b = dp_malloc(cap);
    cr_assert(a && b);
    static const uint8_t tags[3] = {(6 << 3) | 2, (5 << 3) | 2, (1 << 3) | 2};
    for (int i = 0; i < depth; i++) {
        uint8_t tag = tags[i % 3];
        size_t n = 0;
        b[n++] = tag;
        size_t v = len;
        do {
            b[n++] = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
            v >>= 7;
        } while (v);
        memcpy(b + n, a, len);
        len += n;
        uint8_t *t = a;
        a = b;
        b = t;
    }
    /* Wrap as ModelProto.graph: the outermost must be a GraphProto. */
    struct Onnx__ModelProto *mp = NULL;
    struct dp_errinfo ei = {DP_OK, ""};
    enum dp_err err = dp_onnx_model_parse(a, len, &mp, &ei);
    cr_expect_neq(err, DP_OK);
    cr_expect_null(mp);
    dp_free(a);
    dp_free(b);
    DP_ASSERT_NO_LEAKS();
}

/* Failing the N-th allocation anywhere in parse and import is a clean error. */
Test(onnx, allocation_failures)
{
    struct dp_errinfo ei = {DP_OK, ""};
    size_t len;
    uint8_t *buf = ox_lenet5_bytes("a.onnx", &len);
    int done = 0;
    for (long n = 0; n < 20000 && !done; n++) {
        struct Onnx__ModelProto *mp = NULL;
        struct dp_model *back = NULL;
        dp_alloc_fail_after(n);
        enum dp_err err = dp_onnx_model_parse(buf, len, &mp, &ei);
        if (err == DP_OK)
            err = dp_onnx_import(mp, &back, NULL, &ei);
        dp_alloc_fail_reset();
        if (err == DP_OK)
            done = 1;
        else
            cr_expect(err == DP_ENOMEM || err == DP_EFORMAT, "n=%ld: %s", n, ei.msg);
        dp_model_free(back);
        dp_onnx_model_free(mp);
    }
    cr_expect(done, "never succeeded");
    dp_free(buf);
    DP_ASSERT_NO_LEAKS();
}

/* A model that was never finalized (no shapes, no parameters) is refused, not written. */
Test(onnx, export_refuses_unfinalized_model)
{
    struct dp_model *m = dp_model_new(1, 4, 4);
    struct dp_errinfo ei = {DP_OK, ""};
    cr_assert_not_null(m);
    char path[128];
    snprintf(path, sizeof(path), "%s/x.onnx", ox_dir);
    cr_expect_eq(dp_onnx_export_file(m, path, NULL, &ei), DP_EINVAL);
    dp_model_free(m);
    DP_ASSERT_NO_LEAKS();
}

/* The IR ops added for ONNX (clip, reshape, softmax on W, concat) survive the trip too. */
Test(onnx, roundtrip_added_ops)
{
    struct dp_errinfo ei = {DP_OK, ""};
    struct dp_model *m = dp_model_new(2, 4, 4), *back = NULL;
    cr_assert_not_null(m);
    int c1 = dp_model_add_conv2d(m, "c1", DP_MODEL_INPUT, 4, 3, 1, 1, 1, 1, &ei);
    struct dp_op_attrs a = {0};
    a.lo = -0.5f;
    a.hi = 0.7f;
    int cl = dp_model_add_layer(m, "clip", DP_OP_CLIP, &c1, 1, &a, &ei);
    memset(&a, 0, sizeof(a));
    a.to_c = 8;
    a.to_h = 2;
    a.to_w = 4;
    int r1 = dp_model_add_layer(m, "r1", DP_OP_RESHAPE, &cl, 1, &a, &ei);
    memset(&a, 0, sizeof(a));
    a.axis = a.axis_end = 3;
    int sm = dp_model_add_layer(m, "sm", DP_OP_SOFTMAX, &r1, 1, &a, &ei);
    memset(&a, 0, sizeof(a));
    a.axis = 1;
    int in[2] = {sm, r1};
    int cc = dp_model_add_layer(m, "cat", DP_OP_CONCAT, in, 2, &a, &ei);
    int fl = dp_model_add_unary(m, "flat", DP_OP_FLATTEN, cc, &ei);
    cr_assert(dp_model_add_linear(m, "fc", fl, 3, &ei) >= 0, "%s", ei.msg);
    cr_assert_eq(dp_model_finalize(m, &ei), DP_OK, "%s", ei.msg);
    for (size_t i = 0; i < m->n_floats; i++)
        m->data[i] = (float)((int)(i * 7919 % 97) - 48) / 97.0f;
    char path[128];
    snprintf(path, sizeof(path), "%s/ops.onnx", ox_dir);
    for (int opset = 13; opset >= 10; opset -= 3) {
        struct dp_onnx_export_opts o = {0, opset, 0, NULL, 0};
        cr_assert_eq(dp_onnx_export_file(m, path, &o, &ei), DP_OK, "opset %d: %s", opset, ei.msg);
        cr_assert_eq(dp_onnx_import_file(path, &back, NULL, &ei), DP_OK, "opset %d: %s", opset,
                     ei.msg);
        ox_expect_same(m, back, opset == 13 ? "added ops, opset 13" : "added ops, opset 10");
        for (int i = 0; i < m->n_layers; i++) {
            const struct dp_op_attrs *x = &m->layers[i].a, *y = &back->layers[i].a;
            cr_expect(x->lo == y->lo && x->hi == y->hi && x->axis == y->axis &&
                          x->to_c == y->to_c && x->to_h == y->to_h && x->to_w == y->to_w,
                      "layer '%s': attributes differ after the trip", m->layers[i].name);
        }
        dp_model_free(back);
        back = NULL;
    }
    dp_model_free(m);
    DP_ASSERT_NO_LEAKS();
}

/* conv, silu, squeeze-excitation (gap, hardsigmoid, mul), shuffle, two
 * slices, hardswish, sigmoid, sub, div, times a constant, plus a broadcast
 * gap, mean over H, linear. */
static struct dp_model *ox_mobile_model(void)
{
    struct dp_errinfo ei = {DP_OK, ""};
    struct dp_model *m = dp_model_new(4, 4, 4);
    cr_assert_not_null(m);
    struct dp_op_attrs a = {0};
    int c1 = dp_model_add_conv2d(m, "c1", DP_MODEL_INPUT, 8, 3, 1, 1, 1, 1, &ei);
    int s = dp_model_add_unary(m, "silu", DP_OP_SILU, c1, &ei);
    int gp = dp_model_add_unary(m, "gap", DP_OP_GAP, s, &ei);
    a.alpha = 0.25f, a.beta = 0.5f;
    int g = dp_model_add_layer(m, "hsig", DP_OP_HARDSIGMOID, &gp, 1, &a, &ei);
    int in2[2] = {s, g};
    int se = dp_model_add_layer(m, "se", DP_OP_MUL, in2, 2, NULL, &ei);
    memset(&a, 0, sizeof(a));
    a.groups = 2;
    int sh = dp_model_add_layer(m, "shuf", DP_OP_SHUFFLE, &se, 1, &a, &ei);
    memset(&a, 0, sizeof(a));
    a.axis = 1, a.start = 0, a.end = 4;
    int l0 = dp_model_add_layer(m, "sl0", DP_OP_SLICE, &sh, 1, &a, &ei);
    a.start = 4, a.end = 8;
    int l1 = dp_model_add_layer(m, "sl1", DP_OP_SLICE, &sh, 1, &a, &ei);
    int h = dp_model_add_unary(m, "hswish", DP_OP_HARDSWISH, l0, &ei);
    int q = dp_model_add_unary(m, "sig", DP_OP_SIGMOID, l1, &ei);
    in2[0] = h, in2[1] = q;
    int sb = dp_model_add_layer(m, "sub", DP_OP_SUB, in2, 2, NULL, &ei);
    in2[0] = sb;
    int dv = dp_model_add_layer(m, "div", DP_OP_DIV, in2, 2, NULL, &ei);
    memset(&a, 0, sizeof(a));
    a.to_c = 4, a.to_h = 1, a.to_w = 1;
    int k = dp_model_add_layer(m, "k", DP_OP_CONST, &dv, 1, &a, &ei);
    in2[0] = dv, in2[1] = k;
    int mk = dp_model_add_layer(m, "mk", DP_OP_MUL, in2, 2, NULL, &ei);
    memset(&a, 0, sizeof(a));
    a.axis = a.axis_end = 2;
    int gq = dp_model_add_unary(m, "gq", DP_OP_GAP, q, &ei);
    in2[0] = mk, in2[1] = gq;
    int ab = dp_model_add_layer(m, "ab", DP_OP_ADD_BCAST, in2, 2, NULL, &ei);
    int mn = dp_model_add_layer(m, "mean", DP_OP_MEAN, &ab, 1, &a, &ei);
    int fl = dp_model_add_unary(m, "flat", DP_OP_FLATTEN, mn, &ei);
    cr_assert(dp_model_add_linear(m, "fc", fl, 3, &ei) >= 0, "%s", ei.msg);
    cr_assert_eq(dp_model_finalize(m, &ei), DP_OK, "%s", ei.msg);
    for (size_t i = 0; i < m->n_floats; i++)
        m->data[i] = (float)((int)(i * 7919 % 97) - 48) / 97.0f;
    return m;
}

/*
 * The ops of the mobile networks (issue 17) go out and come back as the
 * same layers at opsets 13 and 17: SiLU written as Sigmoid and Mul, and
 * HardSwish before opset 14 as HardSigmoid and Mul, are fused again; the
 * shuffle's Reshape-Transpose-Reshape becomes one layer; the constant
 * comes back as a const layer under its own name.
 */
Test(onnx, roundtrip_mobile_ops)
{
    struct dp_errinfo ei = {DP_OK, ""};
    struct dp_model *m = ox_mobile_model(), *back = NULL;
    char path[128];
    snprintf(path, sizeof(path), "%s/mobile.onnx", ox_dir);
    for (int opset = 13; opset <= 17; opset += 4) {
        struct dp_onnx_export_opts o = {0, opset, 0, NULL, 0};
        cr_assert_eq(dp_onnx_export_file(m, path, &o, &ei), DP_OK, "opset %d: %s", opset, ei.msg);
        struct Onnx__ModelProto *mp = NULL;
        cr_assert_eq(dp_onnx_model_read(path, &mp, &ei), DP_OK, "%s", ei.msg);
        cr_expect(ox_has_op(mp, "Transpose") && ox_has_op(mp, "Slice") &&
                      ox_has_op(mp, "HardSigmoid") && ox_has_op(mp, "Div"),
                  "opset %d", opset);
        cr_expect_eq(ox_has_op(mp, "HardSwish"), opset >= 14, "opset %d", opset);
        const char *dup = ox_dup_node_name(mp);
        cr_expect_null(dup, "opset %d: two nodes named '%s'", opset, dup);
        dp_onnx_model_free(mp);
        cr_assert_eq(dp_onnx_import_file(path, &back, NULL, &ei), DP_OK, "opset %d: %s", opset,
                     ei.msg);
        ox_expect_same(m, back, opset == 13 ? "mobile ops, opset 13" : "mobile ops, opset 17");
        for (int i = 0; i < m->n_layers; i++) {
            const struct dp_op_attrs *x = &m->layers[i].a, *y = &back->layers[i].a;
            cr_expect(x->alpha == y->alpha && x->beta == y->beta && x->axis == y->axis &&
                          x->start == y->start && x->end == y->end && x->groups == y->groups,
                      "layer '%s': attributes differ after the trip", m->layers[i].name);
        }
        dp_model_free(back);
        back = NULL;
    }
    dp_model_free(m);
    DP_ASSERT_NO_LEAKS();
}

/* Transpose and rank 5 exist only inside a channel shuffle: any other use is
 * refused with a message that says so. */
Test(onnx, transpose_outside_a_shuffle_is_refused)
{
    struct dp_errinfo ei = {DP_OK, ""};
    struct dp_model *m = ox_mobile_model(), *back = NULL;
    char path[128];
    snprintf(path, sizeof(path), "%s/shuf.onnx", ox_dir);
    cr_assert_eq(dp_onnx_export_file(m, path, NULL, &ei), DP_OK, "%s", ei.msg);
    struct Onnx__ModelProto *mp = NULL;
    cr_assert_eq(dp_onnx_model_read(path, &mp, &ei), DP_OK, "%s", ei.msg);
    Onnx__NodeProto *tr = NULL;
    for (size_t i = 0; i < mp->graph->n_node; i++) {
        if (strcmp(mp->graph->node[i]->op_type, "Transpose") == 0)
            tr = mp->graph->node[i];
    }
    cr_assert_not_null(tr);
    cr_assert_eq(tr->attribute[0]->n_ints, 5);
    tr->attribute[0]->ints[1] = 1, tr->attribute[0]->ints[2] = 2;
    cr_expect_eq(dp_onnx_import(mp, &back, NULL, &ei), DP_EUNSUPPORTED);
    cr_expect_null(back);
    cr_expect(strstr(ei.msg, "only inside a channel shuffle") != NULL, "%s", ei.msg);
    dp_onnx_model_free(mp);
    dp_model_free(m);
    DP_ASSERT_NO_LEAKS();
}

/* ---- Recurrent and block-circulant layers (issue 15) --------------------- */

/* input (1, 6, 5): lstm (8) -> gru (4) -> last step -> flatten -> circ_linear (7, block 4). */
static struct dp_model *ox_rnn_model(int block)
{
    struct dp_errinfo ei = {DP_OK, ""};
    struct dp_model *m = dp_model_new(1, 6, 5);
    cr_assert_not_null(m);
    struct dp_op_attrs a = {0};
    a.out_ch = 8, a.has_bias = 1, a.block = block;
    int in = DP_MODEL_INPUT;
    int l1 = dp_model_add_layer(m, "lstm", DP_OP_LSTM, &in, 1, &a, &ei);
    cr_assert(l1 >= 0, "%s", ei.msg);
    a.out_ch = 4, a.block = 0;
    int g1 = dp_model_add_layer(m, "gru", DP_OP_GRU, &l1, 1, &a, &ei);
    cr_assert(g1 >= 0, "%s", ei.msg);
    memset(&a, 0, sizeof(a));
    a.axis = 2, a.start = 5, a.end = 6;
    int sl = dp_model_add_layer(m, "last", DP_OP_SLICE, &g1, 1, &a, &ei);
    int fl = dp_model_add_unary(m, "flat", DP_OP_FLATTEN, sl, &ei);
    memset(&a, 0, sizeof(a));
    a.out_ch = 7, a.has_bias = 1, a.block = 4;
    int cl = dp_model_add_layer(m, "fc", DP_OP_CIRC_LINEAR, &fl, 1, &a, &ei);
    cr_assert(cl >= 0, "%s", ei.msg);
    cr_assert_eq(dp_model_finalize(m, &ei), DP_OK, "%s", ei.msg);
    for (size_t i = 0; i < m->n_floats; i++)
        m->data[i] = (float)((int)(i * 7919 % 97) - 48) / 97.0f;
    return m;
}

/* The imported model's parameter `name` holds `want` (n floats). */
static void ox_expect_param(const struct dp_model *m, const char *name, const float *want, size_t n,
                            const char *what)
{
    const struct dp_param *p = dp_model_param_find(m, name);
    cr_assert_not_null(p, "%s: no parameter '%s'", what, name);
    cr_assert_eq(p->numel, n, "%s: '%s' has %zu values, %zu expected", what, name, p->numel, n);
    cr_expect(memcmp(dp_param_data(m, p), want, n * sizeof(float)) == 0,
              "%s: '%s' differs after export and import", what, name);
}

/*
 * lstm and gru go out as LSTM and GRU nodes (PyTorch's gates reordered to
 * ONNX's and back) between the Reshape/Transpose of the sequence, and come
 * back as the same layers and weights at every exported opset; a
 * circulant layer goes out as its expanded dense matrix (circ_expand) with
 * metadata saying so, and comes back as a dense linear with that matrix.
 */
Test(onnx, roundtrip_rnn_and_circulant)
{
    struct dp_errinfo ei = {DP_OK, ""};
    char path[128];
    snprintf(path, sizeof(path), "%s/rnn.onnx", ox_dir);
    for (int block = 0; block <= 4; block += 4) {
        struct dp_model *m = ox_rnn_model(block), *back = NULL;
        for (int opset = DP_ONNX_EXPORT_OPSET_MIN; opset <= DP_ONNX_EXPORT_OPSET_MAX; opset++) {
            struct dp_onnx_export_opts o = {0, opset, 0, NULL, 0};
            cr_assert_eq(dp_onnx_export_file(m, path, &o, &ei), DP_OK, "opset %d: %s", opset,
                         ei.msg);
            struct Onnx__ModelProto *mp = NULL;
            cr_assert_eq(dp_onnx_model_read(path, &mp, &ei), DP_OK, "%s", ei.msg);
            cr_expect(ox_has_op(mp, "LSTM") && ox_has_op(mp, "GRU") && ox_has_op(mp, "Gemm"),
                      "opset %d", opset);
            const char *dup = ox_dup_node_name(mp);
            cr_expect_null(dup, "opset %d: two nodes named '%s'", opset, dup);
            int circ_fc = 0, circ_lstm = 0;
            for (size_t i = 0; i < mp->n_metadata_props; i++) {
                const char *k = mp->metadata_props[i]->key, *v = mp->metadata_props[i]->value;
                circ_fc += strcmp(k, "dnnpress.circulant.fc") == 0 && strstr(v, "\"block\":4");
                circ_lstm += strcmp(k, "dnnpress.circulant.lstm") == 0;
            }
            cr_expect_eq(circ_fc, 1, "opset %d: metadata of the circulant fc", opset);
            cr_expect_eq(circ_lstm, block > 0, "opset %d: metadata of the lstm", opset);
            dp_onnx_model_free(mp);
            struct dp_onnx_import_info info;
            cr_assert_eq(dp_onnx_import_file(path, &back, &info, &ei), DP_OK, "opset %d: %s", opset,
                         ei.msg);
            cr_expect(back->in_c == 1 && back->in_h == 6 && back->in_w == 5, "input shape");
            cr_assert_eq(back->n_layers, m->n_layers, "opset %d: %d layers, %d back", opset,
                         m->n_layers, back->n_layers);
            for (int i = 0; i < m->n_layers; i++) {
                const struct dp_layer *x = &m->layers[i], *y = &back->layers[i];
                cr_expect_str_eq(x->name, y->name, "opset %d: layer %d", opset, i);
                enum dp_op want = x->op == DP_OP_CIRC_LINEAR ? DP_OP_LINEAR : x->op;
                cr_expect_eq(y->op, want, "opset %d: layer '%s' op %s", opset, x->name,
                             dp_op_name(y->op));
                cr_expect(x->out_c == y->out_c && x->out_h == y->out_h && x->out_w == y->out_w,
                          "opset %d: layer '%s' shape", opset, x->name);
            }
            /* Dense parameters come back bit for bit; circulant ones expanded. */
            for (int i = 0; i < m->n_params; i++) {
                const struct dp_param *p = &m->params[i];
                const struct dp_layer *l = &m->layers[p->layer];
                if (l->a.block == 0 || p->ndim == 1) {
                    ox_expect_param(back, p->name, dp_param_data(m, p), p->numel, "dense");
                    continue;
                }
                const int rows = l->op == DP_OP_CIRC_LINEAR ? l->a.out_ch : 4 * l->a.out_ch;
                const int cols = l->op == DP_OP_CIRC_LINEAR       ? 4
                                 : strstr(p->name, "_ih") != NULL ? 5
                                                                  : l->a.out_ch;
                struct circ_dims d;
                circ_dims_init(&d, rows, cols, l->a.block);
                float *dense = dp_malloc((size_t)rows * cols * sizeof(float));
                cr_assert_not_null(dense);
                circ_expand(dense, dp_param_data(m, p), &d);
                ox_expect_param(back, p->name, dense, (size_t)rows * cols, "circulant");
                dp_free(dense);
            }
            dp_model_free(back);
            back = NULL;
        }
        dp_model_free(m);
    }
    DP_ASSERT_NO_LEAKS();
}

/* The attribute called name on nd (which must have it). */
static Onnx__AttributeProto *ox_attr(Onnx__NodeProto *nd, const char *name)
{
    for (size_t k = 0; k < nd->n_attribute; k++) {
        if (strcmp(nd->attribute[k]->name, name) == 0)
            return nd->attribute[k];
    }
    cr_assert_fail("node '%s' has no attribute '%s'", nd->name, name);
    return NULL;
}

/*
 * What the engine does not compute is refused with a message that names
 * it: a reverse LSTM, ONNX's default GRU (linear_before_reset = 0), a
 * non-zero initial state, and the cell state output read by the graph.
 * Each case edits the exported file's protobuf in place and puts every
 * pointer back before it is freed.
 */
Test(onnx, rnn_features_outside_the_engine_are_refused)
{
    struct dp_errinfo ei = {DP_OK, ""};
    struct dp_model *m = ox_rnn_model(0), *back = NULL;
    char path[128];
    snprintf(path, sizeof(path), "%s/rnn_refuse.onnx", ox_dir);
    cr_assert_eq(dp_onnx_export_file(m, path, NULL, &ei), DP_OK, "%s", ei.msg);
    static const char *const want[4] = {
        "direction 'reverse' is not supported", "linear_before_reset = 0 is not supported",
        "initial_h (input 5) holds 0.5", "the cell state output Y_c is read"};
    static char empty[1] = "", dir_name[] = "direction", reverse[] = "reverse", yc[] = "lstm.y_c";
    for (int k = 0; k < 4; k++) {
        struct Onnx__ModelProto *mp = NULL;
        cr_assert_eq(dp_onnx_model_read(path, &mp, &ei), DP_OK, "%s", ei.msg);
        Onnx__NodeProto *lstm = NULL, *gru = NULL;
        for (size_t i = 0; i < mp->graph->n_node; i++) {
            Onnx__NodeProto *nd = mp->graph->node[i];
            lstm = strcmp(nd->op_type, "LSTM") == 0 ? nd : lstm;
            gru = strcmp(nd->op_type, "GRU") == 0 ? nd : gru;
        }
        cr_assert(lstm != NULL && gru != NULL);
        Onnx__AttributeProto *hs = ox_attr(lstm, "hidden_size"), hs_saved = *hs;
        Onnx__AttributeProto *lbr = ox_attr(gru, "linear_before_reset"), lbr_saved = *lbr;
        Onnx__NodeProto lstm_saved = *lstm;
        char *old_out0 = mp->graph->output[0]->name;
        char *in6[6], *out3[3];
        if (k == 0) {
            /* hidden_size stands in as a direction attribute (checked first). */
            hs->name = dir_name;
            hs->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING;
            hs->has_s = 1;
            hs->s.data = (uint8_t *)reverse;
            hs->s.len = strlen(reverse);
        } else if (k == 1) {
            lbr->i = 0;
        } else if (k == 2) {
            /* initial_h: the bias initializer, its values set to 0.5. */
            for (size_t i = 0; i < 4; i++)
                in6[i] = lstm->input[i];
            in6[4] = empty;
            in6[5] = lstm->input[3];
            lstm->input = in6;
            lstm->n_input = 6;
            for (size_t i = 0; i < mp->graph->n_initializer; i++) {
                Onnx__TensorProto *t = mp->graph->initializer[i];
                const float half = 0.5f;
                for (size_t b = 0; strcmp(t->name, "lstm.B") == 0 && b < t->raw_data.len / 4; b++)
                    memcpy(t->raw_data.data + 4 * b, &half, 4);
            }
        } else {
            /* Y_c is the graph's output. */
            out3[0] = lstm->output[0];
            out3[1] = empty;
            out3[2] = yc;
            lstm->output = out3;
            lstm->n_output = 3;
            mp->graph->output[0]->name = yc;
        }
        cr_expect_eq(dp_onnx_import(mp, &back, NULL, &ei), DP_EUNSUPPORTED, "case %d: %s", k,
                     ei.msg);
        cr_expect_null(back);
        cr_expect(strstr(ei.msg, want[k]) != NULL, "case %d: %s", k, ei.msg);
        *hs = hs_saved;
        *lbr = lbr_saved;
        *lstm = lstm_saved;
        mp->graph->output[0]->name = old_out0;
        dp_onnx_model_free(mp);
    }
    dp_model_free(m);
    DP_ASSERT_NO_LEAKS();
}
