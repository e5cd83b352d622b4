/*
 * Built-in architectures (see arch.h). Each builder appends layers with the
 * IR's convenience functions and threads the error through; builders never
 * spell parameter shapes, which dp_model_finalize derives.
 */
#include "worker/nn/arch.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "worker/nn/rng.h"

/* Builder state: the model, the last error, and a name buffer. */
struct arch_b {
    struct dp_model *m;
    struct dp_errinfo *ei;
    int err; /* first negative dp_err, sticky */
};

static int arch_chk(struct arch_b *b, int idx)
{
    if (idx < 0 && b->err == 0)
        b->err = idx;
    return idx;
}

static int arch_conv(struct arch_b *b, const char *name, int in, int oc, int k, int s, int pad,
                     int groups, int bias)
{
    if (b->err)
        return -1;
    return arch_chk(b, dp_model_add_conv2d(b->m, name, in, oc, k, s, pad, groups, bias, b->ei));
}

static int arch_unary(struct arch_b *b, const char *name, enum dp_op op, int in)
{
    if (b->err)
        return -1;
    return arch_chk(b, dp_model_add_unary(b->m, name, op, in, b->ei));
}

static int arch_bn(struct arch_b *b, const char *name, int in)
{
    if (b->err)
        return -1;
    return arch_chk(b, dp_model_add_bn2d(b->m, name, in, b->ei));
}

static int arch_linear(struct arch_b *b, const char *name, int in, int out)
{
    if (b->err)
        return -1;
    return arch_chk(b, dp_model_add_linear(b->m, name, in, out, b->ei));
}

static int arch_pool(struct arch_b *b, const char *name, enum dp_op op, int in, int k, int s)
{
    if (b->err)
        return -1;
    return arch_chk(b, dp_model_add_pool(b->m, name, op, in, k, s, 0, b->ei));
}

static int arch_add(struct arch_b *b, const char *name, int x, int y)
{
    if (b->err)
        return -1;
    return arch_chk(b, dp_model_add_add(b->m, name, x, y, b->ei));
}

/* Joins name parts into dst (DP_NAME_MAX bytes); a name too long is a
 * builder error rather than a silent truncation. */
static const char *arch_name(struct arch_b *b, char *dst, const char *x, const char *y,
                             const char *z)
{
    int n = snprintf(dst, DP_NAME_MAX, "%s%s%s", x, y, z);
    if ((n < 0 || n >= DP_NAME_MAX) && b->err == 0)
        b->err = dp_errinfo_set(b->ei, DP_EINVAL, "layer name '%s%s%s' too long", x, y, z);
    return dst;
}

/* conv + bn (+ activation when act != DP_OP__COUNT); names prefix.conv etc. */
static int arch_cba(struct arch_b *b, const char *prefix, const char *suffix, int in, int oc, int k,
                    int s, int groups, enum dp_op act)
{
    char n1[DP_NAME_MAX], n2[DP_NAME_MAX], n3[DP_NAME_MAX];
    char tail[DP_NAME_MAX];
    arch_name(b, tail, ".conv", suffix, "");
    arch_name(b, n1, prefix, tail, "");
    arch_name(b, tail, ".bn", suffix, "");
    arch_name(b, n2, prefix, tail, "");
    arch_name(b, tail, act == DP_OP_RELU6 ? ".relu6_" : ".relu", suffix, "");
    arch_name(b, n3, prefix, tail, "");
    int x = arch_conv(b, n1, in, oc, k, s, k / 2, groups, 0);
    x = arch_bn(b, n2, x);
    if (act != DP_OP__COUNT)
        x = arch_unary(b, n3, act, x);
    return x;
}

/* ---- The architectures --------------------------------------------------- */

static void arch_lenet300(struct arch_b *b, int n_classes)
{
    int x = arch_unary(b, "flatten", DP_OP_FLATTEN, DP_MODEL_INPUT);
    x = arch_linear(b, "fc1", x, 300);
    x = arch_unary(b, "relu1", DP_OP_RELU, x);
    x = arch_linear(b, "fc2", x, 100);
    x = arch_unary(b, "relu2", DP_OP_RELU, x);
    arch_linear(b, "fc3", x, n_classes);
}

/*
 * lstm-fmnist, gru-fmnist: one recurrent layer of 128 units reads the
 * image row by row (a (1, T, F) map is T steps of F features: 28 x 28
 * for Fashion-MNIST), the last step's hidden state is sliced out and a
 * linear layer classifies it.
 */
static void arch_rnn(struct arch_b *b, enum dp_op op, int in_h, int n_classes)
{
    if (b->err)
        return;
    struct dp_op_attrs a = {0};
    a.out_ch = 128;
    a.has_bias = 1;
    const int in[1] = {DP_MODEL_INPUT};
    int x = arch_chk(
        b, dp_model_add_layer(b->m, op == DP_OP_LSTM ? "lstm" : "gru", op, in, 1, &a, b->ei));
    if (b->err)
        return;
    struct dp_op_attrs s = {0};
    s.axis = 2;
    s.start = in_h - 1;
    s.end = in_h;
    const int sin[1] = {x};
    x = arch_chk(b, dp_model_add_layer(b->m, "last", DP_OP_SLICE, sin, 1, &s, b->ei));
    arch_linear(b, "fc", x, n_classes);
}

static void arch_lenet5(struct arch_b *b, int n_classes)
{
    int x = arch_conv(b, "conv1", DP_MODEL_INPUT, 20, 5, 1, 0, 1, 1);
    x = arch_pool(b, "pool1", DP_OP_MAXPOOL, x, 2, 2);
    x = arch_conv(b, "conv2", x, 50, 5, 1, 0, 1, 1);
    x = arch_pool(b, "pool2", DP_OP_MAXPOOL, x, 2, 2);
    x = arch_unary(b, "flatten", DP_OP_FLATTEN, x);
    x = arch_linear(b, "fc1", x, 500);
    x = arch_unary(b, "relu1", DP_OP_RELU, x);
    arch_linear(b, "fc2", x, n_classes);
}

static void arch_vgg16(struct arch_b *b, int n_classes)
{
    static const int cfg[] = {64, 64,  0,   128, 128, 0,   256, 256, 256,
                              0,  512, 512, 512, 0,   512, 512, 512, 0};
    int x = DP_MODEL_INPUT, conv = 0, pool = 0;
    for (size_t i = 0; i < sizeof(cfg) / sizeof(cfg[0]); i++) {
        char name[DP_NAME_MAX];
        if (cfg[i] == 0) {
            snprintf(name, sizeof(name), "pool%d", ++pool);
            x = arch_pool(b, name, DP_OP_MAXPOOL, x, 2, 2);
            continue;
        }
        snprintf(name, sizeof(name), "features%d", ++conv);
        x = arch_cba(b, name, "", x, cfg[i], 3, 1, 1, DP_OP_RELU);
    }
    x = arch_unary(b, "flatten", DP_OP_FLATTEN, x);
    x = arch_linear(b, "fc1", x, 512);
    x = arch_unary(b, "fc1.relu", DP_OP_RELU, x);
    x = arch_linear(b, "fc2", x, 512);
    x = arch_unary(b, "fc2.relu", DP_OP_RELU, x);
    arch_linear(b, "fc3", x, n_classes);
}

static void arch_resnet(struct arch_b *b, int blocks_per_stage, int n_classes)
{
    int x = arch_cba(b, "stem", "", DP_MODEL_INPUT, 16, 3, 1, 1, DP_OP_RELU);
    int in_ch = 16;
    for (int st = 0; st < 3; st++) {
        int ch = 16 << st;
        for (int bl = 0; bl < blocks_per_stage; bl++) {
            char p[DP_NAME_MAX], n[DP_NAME_MAX];
            int stride = (st > 0 && bl == 0) ? 2 : 1;
            snprintf(p, sizeof(p), "layer%d.%d", st + 1, bl);
            int y = arch_cba(b, p, "1", x, ch, 3, stride, 1, DP_OP_RELU);
            y = arch_cba(b, p, "2", y, ch, 3, 1, 1, DP_OP__COUNT);
            int sc = x;
            if (stride != 1 || in_ch != ch) {
                arch_name(b, n, p, ".shortcut", "");
                sc = arch_cba(b, n, "", x, ch, 1, stride, 1, DP_OP__COUNT);
            }
            arch_name(b, n, p, ".add", "");
            y = arch_add(b, n, y, sc);
            arch_name(b, n, p, ".relu", "");
            x = arch_unary(b, n, DP_OP_RELU, y);
            in_ch = ch;
        }
    }
    x = arch_unary(b, "gap", DP_OP_GAP, x);
    x = arch_unary(b, "flatten", DP_OP_FLATTEN, x);
    arch_linear(b, "fc", x, n_classes);
}

static void arch_mobilenetv2(struct arch_b *b, int n_classes)
{
    /* expansion t, output channels c, repeats n, stride s of the first repeat */
    static const int cfg[7][4] = {{1, 16, 1, 1}, {6, 24, 2, 1},  {6, 32, 3, 2}, {6, 64, 4, 2},
                                  {6, 96, 3, 1}, {6, 160, 3, 2}, {6, 320, 1, 1}};
    int x = arch_cba(b, "stem", "", DP_MODEL_INPUT, 32, 3, 1, 1, DP_OP_RELU6);
    int in_ch = 32, blk = 0;
    for (int i = 0; i < 7; i++) {
        for (int r = 0; r < cfg[i][2]; r++) {
            char p[DP_NAME_MAX], n[DP_NAME_MAX];
            int t = cfg[i][0], oc = cfg[i][1], s = r == 0 ? cfg[i][3] : 1;
            int hid = in_ch * t;
            snprintf(p, sizeof(p), "block%d", blk++);
            int y = x;
            if (t != 1)
                y = arch_cba(b, p, "_expand", y, hid, 1, 1, 1, DP_OP_RELU6);
            y = arch_cba(b, p, "_dw", y, hid, 3, s, hid, DP_OP_RELU6);
            y = arch_cba(b, p, "_project", y, oc, 1, 1, 1, DP_OP__COUNT);
            if (s == 1 && in_ch == oc) {
                arch_name(b, n, p, ".add", "");
                y = arch_add(b, n, y, x);
            }
            x = y;
            in_ch = oc;
        }
    }
    x = arch_cba(b, "head", "", x, 1280, 1, 1, 1, DP_OP_RELU6);
    x = arch_unary(b, "gap", DP_OP_GAP, x);
    x = arch_unary(b, "flatten", DP_OP_FLATTEN, x);
    arch_linear(b, "fc", x, n_classes);
}

const char *nn_arch_names(void)
{
    return "lenet-300-100 lenet5 vgg16-cifar resnet20-cifar resnet20-fmnist resnet56-cifar "
           "mobilenetv2-cifar lstm-fmnist gru-fmnist";
}

enum dp_err nn_arch_build(const char *name, int in_c, int in_h, int in_w, int n_classes,
                          struct dp_model **out, struct dp_errinfo *ei)
{
    *out = NULL;
    if (n_classes < 2 || n_classes > 100000)
        return dp_errinfo_set(ei, DP_EINVAL, "number of classes %d must be in [2, 100000]",
                              n_classes);
    struct arch_b b = {dp_model_new(in_c, in_h, in_w), ei, 0};
    if (b.m == NULL)
        return dp_errinfo_set(ei, DP_ENOMEM, "out of memory");
    if (strcmp(name, "lenet-300-100") == 0)
        arch_lenet300(&b, n_classes);
    else if (strcmp(name, "lenet5") == 0)
        arch_lenet5(&b, n_classes);
    else if (strcmp(name, "vgg16-cifar") == 0)
        arch_vgg16(&b, n_classes);
    else if (strcmp(name, "resnet20-cifar") == 0)
        arch_resnet(&b, 3, n_classes);
    else if (strcmp(name, "resnet20-fmnist") == 0 && in_c != 1) {
        dp_model_free(b.m);
        return dp_errinfo_set(ei, DP_EINVAL,
                              "resnet20-fmnist takes 1-channel images, not %d channels "
                              "(resnet20-cifar takes any)",
                              in_c);
    } else if (strcmp(name, "resnet20-fmnist") == 0)
        arch_resnet(&b, 3, n_classes);
    else if (strcmp(name, "resnet56-cifar") == 0)
        arch_resnet(&b, 9, n_classes);
    else if (strcmp(name, "mobilenetv2-cifar") == 0)
        arch_mobilenetv2(&b, n_classes);
    else if ((strcmp(name, "lstm-fmnist") == 0 || strcmp(name, "gru-fmnist") == 0) && in_c != 1) {
        dp_model_free(b.m);
        return dp_errinfo_set(ei, DP_EINVAL,
                              "%s reads a 1-channel image row by row (a (1, T, F) sequence), "
                              "not %d channels",
                              name, in_c);
    } else if (strcmp(name, "lstm-fmnist") == 0)
        arch_rnn(&b, DP_OP_LSTM, in_h, n_classes);
    else if (strcmp(name, "gru-fmnist") == 0)
        arch_rnn(&b, DP_OP_GRU, in_h, n_classes);
    else {
        dp_model_free(b.m);
        return dp_errinfo_set(ei, DP_EINVAL, "unknown architecture '%s' (built-in: %s)", name,
                              nn_arch_names());
    }
    enum dp_err err = b.err ? (enum dp_err)b.err : dp_model_finalize(b.m, ei);
    if (err) {
        dp_model_free(b.m);
        return err;
    }
    *out = b.m;
    return DP_OK;
}

void nn_arch_init(struct dp_model *m, uint64_t seed)
{
    struct nn_rng rng;
    nn_rng_seed(&rng, seed);
    for (int pi = 0; pi < m->n_params; pi++) {
        struct dp_param *p = &m->params[pi];
        const struct dp_layer *l = &m->layers[p->layer];
        float *d = m->data + p->offset;
        if (l->op == DP_OP_CONV2D || l->op == DP_OP_LINEAR) {
            /* fan_in of the layer's weight: all dims but the first. */
            const struct dp_param *w = &m->params[l->first_param];
            double fan_in = (double)w->numel / (double)w->shape[0];
            double bound = 1.0 / sqrt(fan_in);
            for (size_t i = 0; i < p->numel; i++)
                d[i] = (float)((2.0 * nn_rng_uniform(&rng) - 1.0) * bound);
        } else if (l->op == DP_OP_CIRC_LINEAR || l->op == DP_OP_CIRC_CONV2D) {
            /* Every entry of a circulant block is one stored value, so the
             * stored values take the bound the dense layer's entries would:
             * fan_in is the input features (times the taps), not the
             * stored shape's. */
            const int src = l->inputs[0];
            const int c = src == DP_MODEL_INPUT ? m->in_c : m->layers[src].out_c;
            double fan_in = l->op == DP_OP_CIRC_LINEAR ? (double)dp_model_out_size(m, src)
                                                       : (double)c * l->a.kh * l->a.kw;
            double bound = 1.0 / sqrt(fan_in);
            for (size_t i = 0; i < p->numel; i++)
                d[i] = (float)((2.0 * nn_rng_uniform(&rng) - 1.0) * bound);
        } else if (l->op == DP_OP_LSTM || l->op == DP_OP_GRU) {
            /* PyTorch's nn.LSTM/nn.GRU: all four tensors uniform in
             * +-1/sqrt(H). A block-circulant matrix's entries are its
             * stored values (each row of a block holds each value once),
             * so the same bound gives the expanded matrix the same entry
             * variance and the same per-row sum of variances. */
            double bound = 1.0 / sqrt((double)l->a.out_ch);
            for (size_t i = 0; i < p->numel; i++)
                d[i] = (float)((2.0 * nn_rng_uniform(&rng) - 1.0) * bound);
        } else if (l->op == DP_OP_BN2D) {
            const char *dot = strrchr(p->name, '.');
            float v =
                (strcmp(dot, ".weight") == 0 || strcmp(dot, ".running_var") == 0) ? 1.0f : 0.0f;
            for (size_t i = 0; i < p->numel; i++)
                d[i] = v;
        }
    }
}
