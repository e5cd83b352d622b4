/*
 * The ADMM loop, the magnitude baseline and the report (see admm.h).
 *
 * DESIGN: the engine keeps Z, U and the mask as flat arrays laid out like
 * the model's parameter block, so a constrained tensor is the same [offset,
 * offset + numel) range in W, Z, U, the gradient and the mask, and every
 * update is a flat loop over the targets' ranges. Training runs through
 * nn_train with two hooks: the extra gradient term during the W-steps, and
 * the mask plus the quantizer re-projection during retraining.
 */
#include "worker/compress/admm.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "common/alloc.h"
#include "worker/nn/train.h"

struct admm_target {
    int layer, param;
    const struct admm_rule *rule;
    struct proj_params p; /* the rule's, with the pattern library filled in */
    struct proj_shape shape;
    double rho;
    double resid; /* ||W - Z|| / ||W|| after the last Z-step */
};

struct admm_ctx {
    struct dp_model *m;
    const struct admm_spec *spec;
    const struct admm_callbacks *cb;
    int n_t;
    struct admm_target *t;
    float *z, *u, *mask; /* n_floats each */
    int mask_on;         /* apply the mask: after the first hard projection */
    void *scratch;
    int quant_on; /* re-project quantized targets after every step */
    int epochs_done;
};

static void admm_say(const struct admm_ctx *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void admm_say(const struct admm_ctx *c, const char *fmt, ...)
{
    if (c->cb == NULL || c->cb->progress == NULL)
        return;
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    c->cb->progress(c->cb->ud, line);
}

static float *admm_w(const struct admm_ctx *c, const struct admm_target *t)
{
    return c->m->data + c->m->params[t->param].offset;
}

static size_t admm_numel(const struct admm_ctx *c, const struct admm_target *t)
{
    return c->m->params[t->param].numel;
}

/* P_i: the pruning projection, then the quantizer (which keeps the zeros). */
static void admm_project(const struct admm_ctx *c, const struct admm_target *t, float *x,
                         int with_quant)
{
    if (t->rule->prune != NULL)
        t->rule->prune->project(x, &t->shape, &t->p, c->scratch);
    if (with_quant && t->rule->quant != NULL)
        t->rule->quant->project(x, &t->shape, &t->p, c->scratch);
}

/* ---- Targets -------------------------------------------------------------- */

static enum dp_err admm_targets(struct admm_ctx *c, struct dp_errinfo *ei)
{
    struct dp_model *m = c->m;
    c->t = dp_calloc((size_t)m->n_layers, sizeof(struct admm_target));
    if (c->t == NULL)
        return dp_errinfo_set(ei, DP_ENOMEM, "out of memory");
    size_t max_numel = 1;
    for (int i = 0; i < m->n_layers; i++) {
        const struct dp_layer *l = &m->layers[i];
        if (l->op != DP_OP_CONV2D && l->op != DP_OP_LINEAR)
            continue;
        const struct admm_rule *r = admm_spec_rule_for(c->spec, l->name);
        if (r == NULL)
            continue;
        struct admm_target *t = &c->t[c->n_t++];
        const struct dp_param *w = &m->params[l->first_param];
        t->layer = i;
        t->param = l->first_param;
        t->rule = r;
        t->p = r->params;
        t->rho = r->rho >= 0 ? r->rho : c->spec->rho;
        t->shape.o = w->shape[0];
        t->shape.i = w->shape[1];
        t->shape.kh = w->ndim == 4 ? w->shape[2] : 1;
        t->shape.kw = w->ndim == 4 ? w->shape[3] : 1;
        if (r->prune != NULL && r->prune->needs_3x3 && (t->shape.kh != 3 || t->shape.kw != 3))
            return dp_errinfo_set(ei, DP_EINVAL,
                                  "layer '%s': rule '%s' asks for patterns, which need 3x3 "
                                  "kernels, not %lldx%lld",
                                  l->name, r->match, (long long)t->shape.kh,
                                  (long long)t->shape.kw);
        max_numel = w->numel > max_numel ? w->numel : max_numel;
    }
    if (c->n_t == 0)
        return dp_errinfo_set(ei, DP_EINVAL,
                              "no conv2d or linear layer matches a rule of the "
                              "spec");
    /* Pattern libraries come from the pretrained weights of the layers that use them. */
    for (int k = 0; k < c->n_t; k++) {
        struct admm_target *t = &c->t[k];
        if (t->rule->prune == NULL || !t->rule->prune->needs_3x3 || t->p.n_library > 0)
            continue;
        const float *ws[ADMM_SPEC_MAX_RULES * 4];
        struct proj_shape ss[ADMM_SPEC_MAX_RULES * 4];
        int n = 0;
        for (int j = k; j < c->n_t && n < (int)(sizeof(ws) / sizeof(ws[0])); j++) {
            if (c->t[j].rule == t->rule) {
                ws[n] = admm_w(c, &c->t[j]);
                ss[n++] = c->t[j].shape;
            }
        }
        struct proj_params lib = t->p;
        enum dp_err err = proj_pattern_select(ws, ss, n, t->rule->n_patterns, &lib, ei);
        if (err)
            return err;
        for (int j = k; j < c->n_t; j++) {
            if (c->t[j].rule == t->rule)
                c->t[j].p = lib;
        }
    }
    struct proj_shape big = {(int64_t)max_numel, 1, 1, 1};
    c->scratch = dp_malloc_aligned(proj_scratch_bytes(&big));
    if (c->scratch == NULL)
        return dp_errinfo_set(ei, DP_ENOMEM, "out of memory for projections");
    return DP_OK;
}

/* ---- Hooks ---------------------------------------------------------------- */

/* W-step: grad += rho (W - Z + U) for every target. */
static void admm_grad_hook(void *ud, const struct dp_model *m, float *grad)
{
    struct admm_ctx *c = ud;
    for (int k = 0; k < c->n_t; k++) {
        const struct admm_target *t = &c->t[k];
        const size_t off = m->params[t->param].offset, n = m->params[t->param].numel;
        const float rho = (float)t->rho;
        const float *w = m->data + off, *z = c->z + off, *u = c->u + off;
        float *g = grad + off;
        for (size_t i = 0; i < n; i++)
            g[i] += rho * (w[i] - z[i] + u[i]);
    }
}

/* Retraining: quantized weights back on their levels after every step. */
static void admm_post_step(void *ud, struct dp_model *m)
{
    struct admm_ctx *c = ud;
    (void)m;
    if (!c->quant_on)
        return;
    for (int k = 0; k < c->n_t; k++) {
        const struct admm_target *t = &c->t[k];
        if (t->rule->quant != NULL)
            t->rule->quant->project(admm_w(c, t), &t->shape, &t->p, c->scratch);
    }
}

static void admm_on_epoch(void *ud, const struct nn_epoch_stats *st)
{
    struct admm_ctx *c = ud;
    c->epochs_done++;
    admm_say(c, "epoch %d (phase %d/%d)  loss %.4f  train %.2f%%  test %.2f%%  lr %.5f  %.0f img/s",
             c->epochs_done, st->epoch, st->epochs, st->train_loss, 100.0 * st->train_acc,
             100.0 * st->test_acc, (double)st->lr, st->images_per_s);
}

static enum dp_err admm_train(struct admm_ctx *c, const struct nn_dataset *train,
                              const struct nn_dataset *test, int epochs, double lr, int with_admm,
                              uint64_t seed, struct nn_train_result *res, struct dp_errinfo *ei)
{
    struct nn_train_cfg cfg = nn_train_cfg_default();
    cfg.epochs = epochs;
    cfg.batch = c->spec->batch;
    cfg.seed = seed;
    cfg.optim.momentum = (float)c->spec->momentum;
    cfg.optim.weight_decay = (float)c->spec->weight_decay;
    cfg.sched.kind = NN_SCHED_COSINE;
    cfg.sched.base_lr = (float)lr;
    cfg.sched.total_epochs = epochs;
    struct nn_train_hooks h;
    memset(&h, 0, sizeof(h));
    h.optim.extra_grad = with_admm ? admm_grad_hook : NULL;
    h.optim.ud = c;
    h.optim.mask = c->mask_on ? c->mask : NULL;
    h.optim.post_step = admm_post_step;
    h.on_epoch = admm_on_epoch;
    h.ud = c;
    h.stop = c->cb != NULL ? c->cb->stop : NULL;
    return nn_train(c->m, train, test, &cfg, &h, res, ei);
}

/* Hard projection of every target (with quantization when asked) and the
 * mask of the pruned ones' supports. */
static void admm_harden(struct admm_ctx *c, int with_quant)
{
    const struct dp_model *m = c->m;
    for (size_t i = 0; i < m->n_floats; i++)
        c->mask[i] = 1.0f;
    for (int k = 0; k < c->n_t; k++) {
        const struct admm_target *t = &c->t[k];
        float *w = admm_w(c, t);
        admm_project(c, t, w, with_quant);
        if (t->rule->prune == NULL)
            continue;
        float *mk = c->mask + m->params[t->param].offset;
        for (size_t i = 0; i < admm_numel(c, t); i++)
            mk[i] = w[i] != 0.0f ? 1.0f : 0.0f;
    }
    c->mask_on = 1;
}

/* ---- Report --------------------------------------------------------------- */

static unsigned admm_bits_for(uint64_t n);

/* Bits per stored weight: enough for the quantizer's levels (binary 1,
 * ternary 2, k-bit and pow2 `bits`, pow2sum its larger level set), 32 when
 * the tensor is not quantized. */
static unsigned admm_value_bits(const struct admm_target *t)
{
    if (t->rule->quant == NULL)
        return 32;
    const char *q = t->rule->quant->name;
    if (strcmp(q, "binary") == 0)
        return 1;
    if (strcmp(q, "ternary") == 0)
        return 2;
    if (strcmp(q, "pow2sum") == 0) {
        /* positive levels: 2^-j and 2^-j + 2^-k for j <= k < J */
        const uint64_t J = ((uint64_t)1 << (t->p.bits - 1)) - 1;
        return admm_bits_for(2 * (J + J * (J + 1) / 2) + 1);
    }
    return (unsigned)t->p.bits;
}

/* Writes each constrained layer's compression metadata into the IR, so that
 * checkpoints, the exporter and the code generator know what was done. The
 * quantizers do not report their scale yet, so scale stays 0. */
static void admm_record_metadata(struct admm_ctx *c)
{
    for (int k = 0; k < c->n_t; k++) {
        const struct admm_target *t = &c->t[k];
        struct dp_layer_compress *lc = &c->m->layers[t->layer].comp;
        memset(lc, 0, sizeof(*lc));
        const char *name = t->rule->prune != NULL ? t->rule->prune->name : t->rule->quant->name;
        int n =
            snprintf(lc->scheme, sizeof(lc->scheme), "%s%s%s", name,
                     t->rule->prune != NULL && t->rule->quant != NULL ? "+" : "",
                     t->rule->prune != NULL && t->rule->quant != NULL ? t->rule->quant->name : "");
        if (n < 0 || (size_t)n >= sizeof(lc->scheme))
            snprintf(lc->scheme, sizeof(lc->scheme), "%s", name);
        lc->target_rate = t->rule->prune != NULL ? (float)t->p.rate : 0.0f;
        if (t->rule->quant != NULL)
            lc->bits = (int)admm_value_bits(t);
    }
}

static unsigned admm_bits_for(uint64_t n)
{
    unsigned b = 1;
    while (b < 63 && ((uint64_t)1 << b) < n)
        b++;
    return b;
}

static json_t *admm_layer_report(const struct admm_ctx *c, const struct admm_target *t, double *tot)
{
    const struct dp_model *m = c->m;
    const struct dp_layer *l = &m->layers[t->layer];
    const float *w = admm_w(c, t);
    const int64_t O = t->shape.o, I = t->shape.i, KK = t->shape.kh * t->shape.kw;
    const uint64_t n = (uint64_t)admm_numel(c, t);
    uint64_t nnz = 0, zero_f = 0, zero_c = 0, zero_col = 0, kernels = 0;
    for (uint64_t i = 0; i < n; i++)
        nnz += w[i] != 0.0f;
    for (int64_t o = 0; o < O; o++) {
        int any = 0;
        for (int64_t j = 0; j < I * KK && !any; j++)
            any = w[o * I * KK + j] != 0.0f;
        zero_f += !any;
        for (int64_t i = 0; i < I; i++) {
            int k_any = 0;
            for (int64_t k = 0; k < KK && !k_any; k++)
                k_any = w[(o * I + i) * KK + k] != 0.0f;
            kernels += k_any;
        }
    }
    for (int64_t i = 0; i < I; i++) {
        int any = 0;
        for (int64_t o = 0; o < O && !any; o++)
            for (int64_t k = 0; k < KK && !any; k++)
                any = w[(o * I + i) * KK + k] != 0.0f;
        zero_c += !any;
    }
    for (int64_t j = 0; j < I * KK; j++) {
        int any = 0;
        for (int64_t o = 0; o < O && !any; o++)
            any = w[o * I * KK + j] != 0.0f;
        zero_col += !any;
    }
    const unsigned vbits = admm_value_bits(t);
    /* Index overhead counted: CSR stores a column index per non-zero
     * (ceil(log2(columns)) bits) and a 32-bit row pointer per row plus one;
     * the bitmask stores one bit per weight. */
    const double dense = 32.0 * (double)n;
    const double csr =
        (double)nnz * (vbits + admm_bits_for((uint64_t)(I * KK))) + 32.0 * (double)(O + 1);
    const double bitmask = (double)n + (double)nnz * vbits;
    /* The smallest of the three: sparse formats lose to plain packed values
     * when little is pruned. */
    const double packed = (double)n * vbits;
    double quantized = csr < bitmask ? csr : bitmask;
    quantized = packed < quantized ? packed : quantized;
    size_t uses = (size_t)l->out_h * (size_t)l->out_w; /* MACs per weight per image */
    tot[0] += (double)n;
    tot[1] += (double)nnz;
    tot[2] += dense;
    tot[3] += quantized;
    tot[4] += (double)n * (double)uses;
    tot[5] += (double)nnz * (double)uses;
    json_t *shape = json_pack("[IIII]", (json_int_t)O, (json_int_t)I, (json_int_t)t->shape.kh,
                              (json_int_t)t->shape.kw);
    return json_pack(
        "{s:s, s:s, s:o, s:I, s:I, s:f, s:s, s:s?, s:i, s:{s:I, s:I, s:I, s:I, "
        "s:I}, s:{s:f, s:f, s:f, s:f}, s:{s:f, s:f}, s:f}",
        "name", l->name, "param", m->params[t->param].name, "shape", shape, "params", (json_int_t)n,
        "nonzeros", (json_int_t)nnz, "rate", nnz ? (double)n / (double)nnz : 0.0, "prune",
        t->rule->prune ? t->rule->prune->name : "none", "quant",
        t->rule->quant ? t->rule->quant->name : NULL, "bits", (int)vbits, "structure",
        "zero_filters", (json_int_t)zero_f, "zero_channels", (json_int_t)zero_c, "zero_columns",
        (json_int_t)zero_col, "kernels", (json_int_t)(O * I), "kernels_kept", (json_int_t)kernels,
        "storage_bytes", "dense", dense / 8, "csr", csr / 8, "bitmask", bitmask / 8, "quantized",
        quantized / 8, "flops", "dense", 2.0 * (double)n * (double)uses, "effective",
        2.0 * (double)nnz * (double)uses, "rho", t->rho);
}

static json_t *admm_report(const struct admm_ctx *c, double dense_acc, double final_acc,
                           json_t *trace, double seconds)
{
    double tot[6] = {0};
    json_t *layers = json_array();
    for (int k = 0; k < c->n_t; k++)
        json_array_append_new(layers, admm_layer_report(c, &c->t[k], tot));
    return json_pack(
        "{s:i, s:s, s:f, s:f, s:i, s:f, s:o, s:{s:f, s:f, s:f, s:f, s:f, s:f, s:f, "
        "s:f}, s:o}",
        "version", 1, "method", c->spec->method == ADMM_METHOD_ADMM ? "admm" : "magnitude",
        "dense_test_accuracy", dense_acc, "final_test_accuracy", final_acc, "epochs",
        c->epochs_done, "wall_seconds", seconds, "layers", layers, "totals", "params", tot[0],
        "nonzeros", tot[1], "rate", tot[1] > 0 ? tot[0] / tot[1] : 0.0, "storage_dense_bytes",
        tot[2] / 8, "storage_bytes", tot[3] / 8, "storage_rate", tot[3] > 0 ? tot[2] / tot[3] : 0.0,
        "flops_dense", 2 * tot[4], "flops_effective", 2 * tot[5], "trace", trace);
}

/* ---- The two methods ------------------------------------------------------ */

static enum dp_err admm_method_admm(struct admm_ctx *c, const struct nn_dataset *train,
                                    const struct nn_dataset *test, json_t *trace,
                                    struct dp_errinfo *ei)
{
    const struct admm_spec *s = c->spec;
    const struct dp_model *m = c->m;
    for (int k = 0; k < c->n_t; k++) {
        const struct admm_target *t = &c->t[k];
        const size_t off = m->params[t->param].offset;
        memcpy(c->z + off, admm_w(c, t), admm_numel(c, t) * sizeof(float));
        admm_project(c, t, c->z + off, 1);
    }
    for (int it = 0; it < s->admm_iters; it++) {
        struct nn_train_result res;
        enum dp_err err = admm_train(c, train, test, s->epochs_per_iter, s->admm_lr, 1,
                                     s->seed + (uint64_t)it, &res, ei);
        if (err)
            return err;
        json_t *lt = json_array();
        for (int k = 0; k < c->n_t; k++) {
            struct admm_target *t = &c->t[k];
            const size_t off = m->params[t->param].offset, n = admm_numel(c, t);
            const float *w = m->data + off;
            float *z = c->z + off, *u = c->u + off;
            for (size_t i = 0; i < n; i++)
                z[i] = w[i] + u[i];
            admm_project(c, t, z, 1);
            double dw = 0.0, ww = 0.0;
            for (size_t i = 0; i < n; i++) {
                const double d = (double)w[i] - (double)z[i];
                u[i] += w[i] - z[i];
                dw += d * d;
                ww += (double)w[i] * (double)w[i];
            }
            t->resid = ww > 0.0 ? sqrt(dw / ww) : 0.0;
            json_array_append_new(lt, json_pack("{s:s, s:f, s:f}", "name", m->layers[t->layer].name,
                                                "rho", t->rho, "residual", t->resid));
            t->rho = fmin(s->rho_max, t->rho * s->rho_factor);
        }
        json_array_append_new(trace,
                              json_pack("{s:i, s:f, s:f, s:f, s:o}", "iter", it + 1, "train_loss",
                                        res.last.train_loss, "train_accuracy", res.last.train_acc,
                                        "test_accuracy", res.last.test_acc, "layers", lt));
        double mean_resid = 0.0;
        for (int k = 0; k < c->n_t; k++)
            mean_resid += c->t[k].resid / c->n_t;
        admm_say(c, "admm iteration %d/%d: test %.2f%%, mean ||W-Z||/||W|| %.4f", it + 1,
                 s->admm_iters, 100.0 * res.last.test_acc, mean_resid);
    }
    admm_harden(c, 1);
    c->quant_on = 1;
    if (s->retrain_epochs > 0) {
        struct nn_train_result res;
        return admm_train(c, train, test, s->retrain_epochs, s->retrain_lr, 0, s->seed + 1000u,
                          &res, ei);
    }
    return DP_OK;
}

static enum dp_err admm_method_magnitude(struct admm_ctx *c, const struct nn_dataset *train,
                                         const struct nn_dataset *test, json_t *trace,
                                         struct dp_errinfo *ei)
{
    const struct admm_spec *s = c->spec;
    const int budget = admm_spec_epochs(s), steps = s->magnitude_steps;
    for (int st = 0; st < steps; st++) {
        /* Geometric targets: rate^(1/steps), rate^(2/steps), ..., rate. */
        for (int k = 0; k < c->n_t; k++) {
            struct admm_target *t = &c->t[k];
            t->p.rate = pow(t->rule->params.rate, (double)(st + 1) / (double)steps);
        }
        const int last = st == steps - 1;
        admm_harden(c, last);
        c->quant_on = last;
        const int epochs = budget / steps + (st < budget % steps ? 1 : 0);
        if (epochs == 0)
            continue;
        struct nn_train_result res;
        enum dp_err err =
            admm_train(c, train, test, epochs, s->retrain_lr, 0, s->seed + (uint64_t)st, &res, ei);
        if (err)
            return err;
        json_array_append_new(trace, json_pack("{s:i, s:f, s:f, s:f}", "step", st + 1, "rate",
                                               c->t[0].p.rate, "train_loss", res.last.train_loss,
                                               "test_accuracy", res.last.test_acc));
        admm_say(c, "magnitude step %d/%d: test %.2f%%", st + 1, steps, 100.0 * res.last.test_acc);
    }
    return DP_OK;
}

enum dp_err admm_compress(struct dp_model *m, const struct nn_dataset *train,
                          const struct nn_dataset *test, const struct admm_spec *spec,
                          const struct admm_callbacks *cb, json_t **report, struct dp_errinfo *ei)
{
    struct admm_ctx c;
    memset(&c, 0, sizeof(c));
    c.m = m;
    c.spec = spec;
    c.cb = cb;
    *report = NULL;
    json_t *trace = json_array();
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    float mean[NN_DATASET_MAX_C], std[NN_DATASET_MAX_C];
    double dense_acc = 0.0, final_acc = 0.0, loss = 0.0;
    enum dp_err err = admm_targets(&c, ei);
    if (err)
        goto out;
    const size_t bytes = dp_size_mul(m->n_floats, sizeof(float));
    c.z = dp_calloc(m->n_floats, sizeof(float));
    c.u = dp_calloc(m->n_floats, sizeof(float));
    c.mask = dp_malloc(bytes);
    if (c.z == NULL || c.u == NULL || c.mask == NULL || trace == NULL) {
        err = dp_errinfo_set(ei, DP_ENOMEM, "out of memory for the ADMM state");
        goto out;
    }
    nn_dataset_channel_stats(train, mean, std);
    for (int i = 0; i < train->c; i++)
        std[i] = std[i] < 1e-6f ? 1.0f : std[i];
    err = nn_evaluate(m, test, mean, std, spec->batch, &dense_acc, &loss, ei);
    if (err)
        goto out;
    admm_say(&c, "dense model: test accuracy %.2f%%, %d constrained layers", 100.0 * dense_acc,
             c.n_t);
    if (spec->method == ADMM_METHOD_ADMM)
        err = admm_method_admm(&c, train, test, trace, ei);
    else
        err = admm_method_magnitude(&c, train, test, trace, ei);
    if (err)
        goto out;
    err = nn_evaluate(m, test, mean, std, spec->batch, &final_acc, &loss, ei);
    if (err)
        goto out;
    admm_record_metadata(&c);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    *report =
        admm_report(&c, dense_acc, final_acc, trace,
                    (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec));
    trace = NULL; /* the report owns it */
    if (*report == NULL)
        err = dp_errinfo_set(ei, DP_ENOMEM, "out of memory building the report");
    else
        admm_say(&c, "done: test accuracy %.2f%% (dense %.2f%%)", 100.0 * final_acc,
                 100.0 * dense_acc);
out:
    json_decref(trace);
    dp_free(c.z);
    dp_free(c.u);
    dp_free(c.mask);
    dp_free_aligned(c.scratch);
    dp_free(c.t);
    return err;
}
