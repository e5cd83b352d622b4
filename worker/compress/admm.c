/*
 * The ADMM loop, the magnitude baseline and progressive stages (see admm.h).
 *
 * DESIGN: the engine keeps Z, U and the mask as flat arrays laid out like
 * the model's parameter block, so a constrained tensor is the same [offset,
 * offset + numel) range in W, Z, U, the gradient and the mask, and every
 * update is a flat loop over the targets' ranges. Training runs through
 * nn_train with two hooks: the extra gradient term during the W-steps, and
 * the mask plus the quantizer re-projection during retraining.
 *
 * A run is a plan: a list of steps, each one nn_train call with actions
 * before (set the stage's rates, initialise Z and U, prune a magnitude
 * round) and after (the Z and U updates, the hard projection, a stage's
 * acceptance). The position in the plan is (step, epochs done in it); the
 * whole state is checkpointed after every epoch and after every step's
 * closing actions, and a resumed run re-enters the plan exactly there.
 * Everything random is a function of (seed, epoch, step), so the resumed
 * run is the uninterrupted one, bit for bit.
 */
#include "worker/compress/admm_int.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "common/alloc.h"
#include "common/assert.h"
#include "worker/compress/circ_convert.h"
#include "worker/compress/purify.h"
#include "worker/nn/train.h"

static double admm_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

double admm_wall_seconds(const struct admm_ctx *c)
{
    return c->wall_prev + admm_now() - c->t_start;
}

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

/* Hands an event to the caller and drops it (steals data). */
static void admm_event(const struct admm_ctx *c, const char *type, json_t *data)
{
    if (data != NULL && c->cb != NULL && c->cb->event != NULL)
        c->cb->event(c->cb->ud, type, data);
    json_decref(data);
}

float *admm_w(const struct admm_ctx *c, const struct admm_target *t)
{
    return c->m->data + c->m->params[t->param].offset;
}

size_t admm_numel(const struct admm_ctx *c, const struct admm_target *t)
{
    return c->m->params[t->param].numel;
}

void admm_project(const struct admm_ctx *c, const struct admm_target *t, float *x, int with_quant)
{
    /* A converted circulant target is block-circulant by construction
     * (its vectors are the free parameters): only its quantizer is left. */
    if (t->rule->circ != NULL && !t->converted)
        admm_constraint_kernel(t->rule->circ)(x, &t->shape, &t->p, c->scratch);
    if (t->rule->prune != NULL)
        admm_constraint_kernel(t->rule->prune)(x, &t->shape, &t->p, c->scratch);
    if (t->conn_rate > 1.0) {
        /* Pattern then whole kernels: each kernel keeps its best pattern,
         * and the kernels with the most energy left are kept. That is the
         * exact projection onto the intersection of the two sets. */
        struct proj_params q = t->p;
        q.rate = t->conn_rate;
        q.balanced = 0;
        proj_connectivity(x, &t->shape, &q, c->scratch);
    }
    if (with_quant && t->quant != NULL)
        t->quant(x, &t->shape, &t->p, c->scratch);
}

void admm_set_rates(struct admm_ctx *c, double f)
{
    for (int k = 0; k < c->n_t; k++) {
        struct admm_target *t = &c->t[k];
        if (t->rule->prune != NULL && t->rule->prune->uses_rate)
            t->p.rate = pow(t->base_rate, f);
        t->conn_rate = t->rule->conn_rate > 1.0 ? pow(t->rule->conn_rate, f) : 0.0;
    }
}

void admm_stage_rates(struct admm_ctx *c, int stage)
{
    admm_set_rates(c, (double)(stage + 1) / (double)c->spec->stages);
    if (!c->spec->auto_on || c->spec->method != DP_SPEC_ADMM)
        return;
    /* Automatic rates are chosen at the start of each stage (admm_step_begin). */
    for (int k = 0; k < c->n_t; k++) {
        struct admm_target *t = &c->t[k];
        if (t->rule->prune != NULL && t->rule->prune->uses_rate && t->stage_rate[stage] >= 1.0)
            t->p.rate = t->stage_rate[stage];
    }
}

double admm_sparsity(const struct admm_ctx *c)
{
    double n = 0.0, z = 0.0;
    for (int k = 0; k < c->n_t; k++) {
        const float *w = admm_w(c, &c->t[k]);
        const size_t cnt = admm_numel(c, &c->t[k]);
        for (size_t i = 0; i < cnt; i++)
            z += w[i] == 0.0f;
        n += (double)cnt;
    }
    return n > 0.0 ? z / n : 0.0;
}

/* ---- Targets -------------------------------------------------------------- */

/* The rows and columns of the matrix behind parameter pi of layer l (a
 * converted one's too: the vectors do not keep them), and its taps. */
static void admm_circ_matrix(const struct dp_model *m, const struct dp_layer *l, int pi, int *rows,
                             int *cols, int *taps)
{
    int in_c = m->in_c, in_w = m->in_w;
    if (l->inputs[0] != DP_MODEL_INPUT) {
        in_c = m->layers[l->inputs[0]].out_c;
        in_w = m->layers[l->inputs[0]].out_w;
    }
    *taps = 1;
    switch (l->op) {
        case DP_OP_LSTM:
        case DP_OP_GRU:
            *rows = (l->op == DP_OP_LSTM ? 4 : 3) * l->a.out_ch;
            *cols = pi == l->first_param ? in_w : l->a.out_ch;
            return;
        case DP_OP_CONV2D:
        case DP_OP_CIRC_CONV2D:
            *rows = l->a.out_ch;
            *cols = in_c;
            *taps = l->a.kh * l->a.kw;
            return;
        default: /* linear, circ_linear: the input flattened */
            *rows = l->a.out_ch;
            *cols = (int)dp_model_out_size(m, l->inputs[0]);
            return;
    }
}

/* A target of circulant rule r on parameter pi of layer i: the dense
 * matrix ADMM constrains, or the vectors of a converted layer. */
static struct admm_target *admm_circ_target(struct admm_ctx *c, int i, int pi,
                                            const struct dp_spec_rule *r, int converted)
{
    const struct dp_model *m = c->m;
    const struct dp_param *w = &m->params[pi];
    struct admm_target *t = &c->t[c->n_t++];
    t->layer = i;
    t->param = pi;
    t->rule = r;
    t->p = admm_constraint_params(&r->params);
    t->base_rate = 1.0;
    t->rho = r->rho >= 0 ? r->rho : c->spec->rho;
    t->converted = converted;
    int rows, cols;
    admm_circ_matrix(m, &m->layers[i], pi, &rows, &cols, &t->taps);
    circ_dims_init(&t->cd, rows, cols, r->params.block);
    if (converted) {
        /* The vectors, one after another: what quant_spectrum walks. */
        t->shape = (struct proj_shape){(int64_t)(w->numel / (size_t)t->cd.k), t->cd.k, 1, 1};
        t->p.bits = r->params.spectrum_bits;
        t->quant = r->params.spectrum_bits > 0 ? quant_spectrum : NULL;
    } else {
        t->shape.o = w->shape[0];
        t->shape.i = w->shape[1];
        t->shape.kh = w->ndim == 4 ? w->shape[2] : 1;
        t->shape.kw = w->ndim == 4 ? w->shape[3] : 1;
    }
    return t;
}

/* The targets of layer i under circulant rule r (lstm and gru: both
 * matrices); DP_EINVAL for a layer the rule cannot make circulant. */
static enum dp_err admm_circ_targets(struct admm_ctx *c, int i, const struct dp_spec_rule *r,
                                     struct dp_errinfo *ei)
{
    const struct dp_layer *l = &c->m->layers[i];
    const int k = r->params.block;
    switch (l->op) {
        case DP_OP_CONV2D:
            if (l->a.groups != 1)
                return dp_errinfo_set(ei, DP_EINVAL,
                                      "layer '%s': rule '%s' asks for block-circulant weights, "
                                      "which need a conv2d with groups 1, not %d (use a rule "
                                      "that does not match it)",
                                      l->name, r->match, l->a.groups);
            /* fall through */
        case DP_OP_LINEAR:
            admm_circ_target(c, i, l->first_param, r, 0);
            return DP_OK;
        case DP_OP_CIRC_LINEAR:
        case DP_OP_CIRC_CONV2D:
        case DP_OP_LSTM:
        case DP_OP_GRU:
            break;
        default:
            return DP_OK; /* not a layer with weights to make circulant */
    }
    const int converted = l->a.block > 0;
    if (converted && l->a.block != k)
        return dp_errinfo_set(ei, DP_EINVAL,
                              "layer '%s' is block-circulant with block %d, but rule '%s' asks "
                              "for block %d",
                              l->name, l->a.block, r->match, k);
    admm_circ_target(c, i, l->first_param, r, converted);
    if (l->op == DP_OP_LSTM || l->op == DP_OP_GRU)
        admm_circ_target(c, i, l->first_param + 1, r, converted);
    return DP_OK;
}

/* Scratch bytes target t's projections and quantizer need. */
static size_t admm_scratch_bytes(const struct admm_target *t)
{
    if (t->rule->circ != NULL)
        return proj_circulant_scratch_bytes(&t->shape, t->cd.k);
    const int64_t numel = t->shape.o * t->shape.i * t->shape.kh * t->shape.kw;
    const struct proj_shape flat = {numel, 1, 1, 1};
    return proj_scratch_bytes(&flat);
}

enum dp_err admm_targets(struct admm_ctx *c, struct dp_errinfo *ei)
{
    struct dp_model *m = c->m;
    /* Two per layer at most (lstm and gru under a circulant rule). */
    c->n_t = 0;
    c->t = dp_calloc(dp_size_mul((size_t)m->n_layers, 2), sizeof(struct admm_target));
    if (c->t == NULL)
        return dp_errinfo_set(ei, DP_ENOMEM, "out of memory");
    for (int i = 0; i < m->n_layers; i++) {
        const struct dp_layer *l = &m->layers[i];
        const struct dp_spec_rule *r = dp_spec_rule_for(c->spec, l->name);
        if (r != NULL && r->circ != NULL) {
            enum dp_err err = admm_circ_targets(c, i, r, ei);
            if (err)
                return err;
            continue;
        }
        if (!dp_op_info(l->op)->compressible)
            continue;
        if (r == NULL)
            continue;
        struct admm_target *t = &c->t[c->n_t++];
        const struct dp_param *w = &m->params[l->first_param];
        t->layer = i;
        t->param = l->first_param;
        t->rule = r;
        t->p = admm_constraint_params(&r->params);
        t->base_rate = r->params.rate;
        t->rho = r->rho >= 0 ? r->rho : c->spec->rho;
        t->quant = r->quant != NULL ? admm_constraint_kernel(r->quant) : NULL;
        t->taps = 1;
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
        /* A kernel per filter (depthwise: one input channel per group)
         * leaves nothing for connectivity to choose and patterns alone do
         * not shrink it; filter or irregular pruning fit it instead. */
        if (r->prune != NULL && r->prune->needs_3x3 && t->shape.i < 2)
            return dp_errinfo_set(ei, DP_EINVAL,
                                  "layer '%s': rule '%s' asks for patterns, which need kernels "
                                  "over more than one input channel; this %s convolution has "
                                  "one per filter (use filter or irregular pruning, or a rule "
                                  "that does not match it)",
                                  l->name, r->match, l->a.groups > 1 ? "depthwise" : "1-channel");
    }
    if (c->n_t == 0)
        return dp_errinfo_set(ei, DP_EINVAL,
                              c->spec->circ_from != DP_SPEC_CIRC_NONE
                                  ? "no linear, conv2d, lstm or gru layer matches a circulant "
                                    "rule of the spec"
                                  : "no conv2d or linear layer matches a rule of the spec");
    /* Pattern libraries come from the pretrained weights of all the layers
     * that use them (every target at most: the lists are sized for that). */
    const float **ws = dp_calloc((size_t)c->n_t, sizeof(*ws));
    struct proj_shape *ss = dp_calloc((size_t)c->n_t, sizeof(*ss));
    enum dp_err err = ws == NULL || ss == NULL ? DP_ENOMEM : DP_OK;
    if (err)
        dp_errinfo_set(ei, err, "out of memory");
    for (int k = 0; !err && k < c->n_t; k++) {
        struct admm_target *t = &c->t[k];
        if (t->rule->prune == NULL || !t->rule->prune->needs_3x3 || t->p.n_library > 0)
            continue;
        int n = 0;
        for (int j = k; j < c->n_t; j++) {
            if (c->t[j].rule == t->rule) {
                ws[n] = admm_w(c, &c->t[j]);
                ss[n++] = c->t[j].shape;
            }
        }
        struct proj_params lib = t->p;
        err = proj_pattern_select(ws, ss, n, t->rule->n_patterns, &lib, ei);
        for (int j = k; !err && j < c->n_t; j++) {
            if (c->t[j].rule == t->rule)
                c->t[j].p = lib;
        }
    }
    dp_free(ws);
    dp_free(ss);
    if (err)
        return err;
    size_t bytes = 64;
    for (int k = 0; k < c->n_t; k++) {
        const size_t b = admm_scratch_bytes(&c->t[k]);
        bytes = b > bytes ? b : bytes;
    }
    c->scratch = dp_malloc_aligned(bytes);
    if (c->scratch == NULL)
        return dp_errinfo_set(ei, DP_ENOMEM, "out of memory for projections");
    return DP_OK;
}

/* ---- The plan ------------------------------------------------------------- */

/* splitmix64's finaliser: a bijection of 64-bit values that mixes every bit. */
static uint64_t admm_mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/*
 * The training seed of one plan step. (kind, stage, iter) are packed into
 * disjoint bit fields (stage and iter each below 2^24, far above the spec's
 * 16 stages and 1000 iterations or rounds), xored into the spec's seed and
 * mixed by a bijection, so two different steps of a run can never share a
 * seed, whatever the spec allows, and neighbouring steps' shuffles are
 * unrelated. (Seeds were once seed + 100 * stage + iter: a 100th iteration
 * repeated the next stage's first one.)
 */
static uint64_t admm_step_seed(uint64_t seed, enum admm_step_kind kind, int stage, int iter)
{
    DP_ASSERT(stage >= 0 && stage < (1 << 24) && iter >= 0 && iter < (1 << 24));
    const uint64_t key = (uint64_t)kind << 48 | (uint64_t)stage << 24 | (uint64_t)iter;
    return admm_mix64(seed ^ key);
}

enum dp_err admm_plan(struct admm_ctx *c, struct dp_errinfo *ei)
{
    const struct dp_spec *s = c->spec;
    const enum admm_phase ph = c->cb != NULL ? c->cb->phase : ADMM_PHASE_ALL;
    /* With a budget, every stage gets its share (the first ones one more
     * when it does not divide) and runs as many ADMM iterations as fit
     * beside its retraining, which takes the rest: spec.admm.iters is then
     * unused. */
    const int most_iters =
        s->budget_epochs > 0 ? s->budget_epochs / s->epochs_per_iter + 1 : s->admm_iters;
    const int max = s->stages * (most_iters + 1) + s->magnitude_steps + 1;
    c->steps = dp_calloc((size_t)max, sizeof(struct admm_step));
    if (c->steps == NULL)
        return dp_errinfo_set(ei, DP_ENOMEM, "out of memory");
    struct admm_step *st = c->steps;
    int n = 0;
    if (s->method == DP_SPEC_MAGNITUDE) {
        const int budget = dp_spec_epochs(s), steps = s->magnitude_steps;
        for (int r = 0; r < steps; r++) {
            st[n] = (struct admm_step){ADMM_STEP_MAGNITUDE,
                                       0,
                                       r,
                                       r == steps - 1,
                                       budget / steps + (r < budget % steps ? 1 : 0),
                                       s->retrain_lr,
                                       admm_step_seed(s->seed, ADMM_STEP_MAGNITUDE, 0, r),
                                       0};
            n++;
        }
    } else if (s->circ_from == DP_SPEC_CIRC_SCRATCH) {
        /* Circulant layers from scratch: converted before the plan runs
         * (admm_compress), then one training of every epoch the ADMM path
         * would spend, with the retraining's learning rate; the compress
         * phase only converts. */
        if (ph != ADMM_PHASE_ADMM)
            st[n++] = (struct admm_step){ADMM_STEP_RETRAIN,
                                         0,
                                         0,
                                         1,
                                         dp_spec_epochs(s),
                                         s->retrain_lr,
                                         admm_step_seed(s->seed, ADMM_STEP_RETRAIN, 0, 0),
                                         0};
    } else {
        /* The compress phase stops before the last stage's retraining; the
         * retrain phase is that retraining alone. */
        const int with_admm = ph != ADMM_PHASE_RETRAIN;
        for (int sg = 0; sg < s->stages; sg++) {
            /* Stage 0 has the single-stage seeds, so a one-stage spec is
             * the plain ADMM run. */
            const int final = sg == s->stages - 1;
            int iters = s->admm_iters, retrain = s->retrain_epochs;
            if (s->budget_epochs > 0) {
                const int share =
                    s->budget_epochs / s->stages + (sg < s->budget_epochs % s->stages ? 1 : 0);
                iters = (share - s->retrain_epochs) / s->epochs_per_iter;
                retrain = share - iters * s->epochs_per_iter;
            }
            for (int it = 0; with_admm && it < iters; it++) {
                st[n] = (struct admm_step){ADMM_STEP_ADMM,
                                           sg,
                                           it,
                                           it == iters - 1,
                                           s->epochs_per_iter,
                                           s->admm_lr,
                                           admm_step_seed(s->seed, ADMM_STEP_ADMM, sg, it),
                                           0};
                n++;
            }
            if (ph == ADMM_PHASE_ALL || (ph == ADMM_PHASE_ADMM) != final) {
                st[n] = (struct admm_step){ADMM_STEP_RETRAIN,
                                           sg,
                                           0,
                                           1,
                                           retrain,
                                           s->retrain_lr,
                                           admm_step_seed(s->seed, ADMM_STEP_RETRAIN, sg, 0),
                                           0};
                n++;
            }
        }
    }
    c->n_steps = n;
    c->epochs_planned = 0;
    for (int i = 0; i < n; i++)
        c->epochs_planned += st[i].epochs;
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

/* Retraining of quantized targets: a straight-through estimator. z holds
 * the latent float weights, u the quantized weights the step's gradient
 * was taken at. The optimizer moved W from u by its update; the latent
 * weights take that update and W goes back to their quantization. Without
 * the latent copy, an update smaller than the gap between levels would be
 * undone by every re-projection, and binary weights could never flip. */
static void admm_post_step(void *ud, struct dp_model *m)
{
    struct admm_ctx *c = ud;
    (void)m;
    if (!c->quant_on)
        return;
    for (int k = 0; k < c->n_t; k++) {
        const struct admm_target *t = &c->t[k];
        if (t->quant == NULL)
            continue;
        float *w = admm_w(c, t);
        const size_t off = c->m->params[t->param].offset, n = admm_numel(c, t);
        if (c->shadow_on) {
            float *sh = c->z + off, *wq = c->u + off;
            for (size_t i = 0; i < n; i++) {
                sh[i] += w[i] - wq[i];
                w[i] = sh[i];
            }
            t->quant(w, &t->shape, &t->p, c->scratch);
            memcpy(wq, w, n * sizeof(float));
        } else {
            t->quant(w, &t->shape, &t->p, c->scratch);
        }
    }
}

/* Quantizes the (pruned) targets at the start of retraining: their float
 * weights become the latent copy, W their quantization. ADMM's last hard
 * projection leaves the weights pruned but not yet quantized, so the
 * compress phase hands float weights to the retrain phase and the two
 * phases run apart equal one run. */
static void admm_quant_start(struct admm_ctx *c)
{
    c->shadow_on = 0;
    for (int k = 0; k < c->n_t; k++) {
        const struct admm_target *t = &c->t[k];
        if (t->quant == NULL)
            continue;
        float *w = admm_w(c, t);
        const size_t off = c->m->params[t->param].offset, n = admm_numel(c, t);
        memcpy(c->z + off, w, n * sizeof(float));
        t->quant(w, &t->shape, &t->p, c->scratch);
        memcpy(c->u + off, w, n * sizeof(float));
        c->shadow_on = 1;
    }
}

static const char *const admm_step_event[] = {"admm_epoch", "retrain_epoch", "magnitude_epoch"};

static void admm_on_epoch(void *ud, const struct nn_epoch_stats *st)
{
    struct admm_ctx *c = ud;
    const struct admm_step *sp = &c->steps[c->si];
    c->epochs_done++;
    c->last_loss = st->train_loss;
    c->last_train_acc = st->train_acc;
    c->last_val_acc = st->test_acc; /* nn_train evaluates the validation split */
    c->last_lr = st->lr;
    admm_say(c, "epoch %d (phase %d/%d)  loss %.4f  train %.2f%%  val %.2f%%  lr %.5f  %.0f img/s",
             c->epochs_done, st->epoch, st->epochs, st->train_loss, 100.0 * st->train_acc,
             100.0 * st->test_acc, (double)st->lr, st->images_per_s);
    const double el = admm_now() - c->t_start;
    int left = 0;
    for (int i = c->si; i < c->n_steps; i++)
        left += c->steps[i].skipped ? 0 : c->steps[i].epochs;
    left -= st->epoch;
    const double per = st->elapsed_s / (double)(st->epoch > 0 ? st->epoch : 1);
    admm_event(c, admm_step_event[sp->kind],
               json_pack("{s:i, s:i, s:i, s:i, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f}", "epoch",
                         c->epochs_done, "epochs", c->epochs_planned, "stage", sp->stage + 1,
                         "iter", sp->iter + 1, "loss", st->train_loss, "train_accuracy",
                         st->train_acc, "val_accuracy", st->test_acc, "lr", (double)st->lr,
                         "images_per_s", st->images_per_s, "sparsity", admm_sparsity(c),
                         "elapsed_s", el, "eta_s", per * (double)(left > 0 ? left : 0)));
}

static enum dp_err admm_checkpoint(struct admm_ctx *c, int si, int ep, const struct nn_optim *opt,
                                   struct dp_errinfo *ei)
{
    if (c->cb == NULL || c->cb->checkpoint == NULL)
        return DP_OK;
    enum dp_err err = admm_state_save(c, c->cb->checkpoint, si, ep, opt, ei);
    if (!err)
        admm_event(c, "checkpoint",
                   json_pack("{s:s, s:i, s:i}", "path", c->cb->checkpoint, "epoch", c->epochs_done,
                             "step", si));
    return err;
}

/* Whether step sp hands its optimizer state to the next step: an ADMM
 * iteration before the last of its stage (see admm_train). */
static int admm_step_carries(const struct admm_step *sp)
{
    return sp->kind == ADMM_STEP_ADMM && !sp->last_iter;
}

static void admm_drop_moments(struct admm_ctx *c)
{
    dp_free(c->res_m1);
    dp_free(c->res_m2);
    c->res_m1 = c->res_m2 = NULL;
    c->res_t = 0;
    c->have_res = 0;
}

/* Copies the optimizer state into c->res_* for the next W-step. */
static enum dp_err admm_keep_moments(struct admm_ctx *c, const struct nn_optim *opt,
                                     struct dp_errinfo *ei)
{
    const size_t bytes = dp_size_mul(c->m->n_floats, sizeof(float));
    if (c->res_m1 == NULL)
        c->res_m1 = dp_malloc(bytes);
    if (opt->m2 != NULL && c->res_m2 == NULL)
        c->res_m2 = dp_malloc(bytes);
    if (c->res_m1 == NULL || (opt->m2 != NULL && c->res_m2 == NULL)) {
        admm_drop_moments(c);
        return dp_errinfo_set(ei, DP_ENOMEM, "out of memory for the optimizer state");
    }
    memcpy(c->res_m1, opt->m1, bytes);
    if (opt->m2 != NULL)
        memcpy(c->res_m2, opt->m2, bytes);
    c->res_t = opt->t;
    c->have_res = 1;
    return DP_OK;
}

/* Whether step sp ends on its best validation epoch (retrain.keep_best):
 * the retraining, and the baseline's last round, which is its retraining. */
static int admm_keeps_best(const struct admm_ctx *c, const struct admm_step *sp)
{
    return c->spec->retrain_keep_best &&
           (sp->kind == ADMM_STEP_RETRAIN || (sp->kind == ADMM_STEP_MAGNITUDE && sp->last_iter));
}

static enum dp_err admm_on_epoch_end(void *ud, int epochs_done, const struct nn_optim *opt,
                                     struct dp_errinfo *ei)
{
    struct admm_ctx *c = ud;
    const struct admm_step *sp = &c->steps[c->si];
    c->ep = epochs_done;
    if (admm_keeps_best(c, sp) && (c->rbest_epoch == 0 || c->last_val_acc > c->rbest_acc)) {
        if (c->rbest == NULL)
            c->rbest = dp_malloc(dp_size_mul(c->m->n_floats, sizeof(float)));
        if (c->rbest == NULL)
            return dp_errinfo_set(ei, DP_ENOMEM, "out of memory for the best retraining epoch");
        memcpy(c->rbest, c->m->data, c->m->n_floats * sizeof(float));
        c->rbest_acc = c->last_val_acc;
        c->rbest_epoch = epochs_done;
    }
    if (epochs_done == sp->epochs && admm_step_carries(sp)) {
        enum dp_err err = admm_keep_moments(c, opt, ei);
        if (err)
            return err;
    }
    return admm_checkpoint(c, c->si, epochs_done, opt, ei);
}

static int admm_stop_fn(void *ud)
{
    const struct admm_ctx *c = ud;
    return c->cb != NULL && c->cb->stop_fn != NULL && c->cb->stop_fn(c->cb->ud);
}

static enum dp_err admm_train(struct admm_ctx *c, const struct admm_step *sp, struct dp_errinfo *ei)
{
    struct nn_train_cfg cfg = nn_train_cfg_default();
    cfg.epochs = sp->epochs;
    cfg.batch = c->spec->batch;
    cfg.seed = sp->seed;
    cfg.optim.kind = c->spec->adam ? NN_OPTIM_ADAM : NN_OPTIM_SGD;
    cfg.optim.momentum = (float)c->spec->momentum;
    cfg.optim.weight_decay = (float)c->spec->weight_decay;
    cfg.sched.kind = NN_SCHED_COSINE;
    cfg.sched.base_lr = (float)sp->lr;
    cfg.sched.total_epochs = sp->epochs;
    cfg.mean = c->mean;
    cfg.std = c->std;
    struct nn_train_resume res = {c->ep, c->res_m1, c->res_m2, c->res_t};
    const struct nn_distill_cfg kd = {&c->teacher, (float)c->spec->distill_temperature,
                                      (float)c->spec->distill_weight};
    if (c->teacher.data != NULL)
        cfg.distill = &kd;
    if (c->ep > 0) {
        if (!c->have_res)
            return dp_errinfo_set(ei, DP_EINVAL, "resuming inside a step needs optimizer state");
        cfg.resume = &res;
    } else if (sp->kind == ADMM_STEP_ADMM && sp->iter > 0 && c->have_res) {
        /* The W-steps of a stage solve one sequence of subproblems whose
         * targets Z - U move a little each time: the optimizer continues
         * (momentum and step count) instead of restarting at every
         * iteration. The learning rate still restarts its cosine. */
        cfg.resume = &res;
    }
    struct nn_train_hooks h;
    memset(&h, 0, sizeof(h));
    h.optim.extra_grad = sp->kind == ADMM_STEP_ADMM ? admm_grad_hook : NULL;
    h.optim.ud = c;
    h.optim.mask = c->mask_on ? c->mask : NULL;
    h.optim.post_step = admm_post_step;
    h.on_epoch = admm_on_epoch;
    h.on_epoch_end = admm_on_epoch_end;
    h.stop_fn = admm_stop_fn;
    h.ud = c;
    h.stop = c->cb != NULL ? c->cb->stop : NULL;
    struct nn_train_result r;
    return nn_train(c->m, c->train, c->val, &cfg, &h, &r, ei);
}

/* The mask of the pruned targets' supports (1 everywhere else). Dead
 * filters take their bias and BN entries with them, so that the channel is
 * an exact zero that purification can drop. */
static void admm_mask_from_zeros(struct admm_ctx *c)
{
    const struct dp_model *m = c->m;
    for (size_t i = 0; i < m->n_floats; i++)
        c->mask[i] = 1.0f;
    for (int k = 0; k < c->n_t; k++) {
        const struct admm_target *t = &c->t[k];
        if (t->rule->prune == NULL)
            continue;
        const float *w = admm_w(c, t);
        float *mk = c->mask + m->params[t->param].offset;
        for (size_t i = 0; i < admm_numel(c, t); i++)
            mk[i] = w[i] != 0.0f ? 1.0f : 0.0f;
    }
    cp_purify_zero_dead_filters(c->m, c->mask);
    c->mask_on = 1;
}

/* Hard projection of every target (with quantization when asked), then
 * the mask. */
static void admm_harden(struct admm_ctx *c, int with_quant)
{
    const struct dp_model *m = c->m;
    c->shadow_on = 0;
    for (int k = 0; k < c->n_t; k++) {
        const struct admm_target *t = &c->t[k];
        float *w = admm_w(c, t);
        admm_project(c, t, w, 0);
        if (with_quant && t->quant != NULL) {
            /* The pruned float weights become the latent copy (see admm_post_step). */
            const size_t off = m->params[t->param].offset, n = admm_numel(c, t);
            memcpy(c->z + off, w, n * sizeof(float));
            t->quant(w, &t->shape, &t->p, c->scratch);
            memcpy(c->u + off, w, n * sizeof(float));
            c->shadow_on = 1;
        }
    }
    admm_mask_from_zeros(c);
}

enum dp_err admm_circ_convert(struct admm_ctx *c, int fresh, struct dp_errinfo *ei)
{
    struct dp_model *m = c->m;
    int *block = dp_calloc((size_t)m->n_layers, sizeof(int));
    if (block == NULL)
        return dp_errinfo_set(ei, DP_ENOMEM, "out of memory converting to circulant layers");
    for (int k = 0; k < c->n_t; k++)
        if (c->t[k].rule->circ != NULL && !c->t[k].converted)
            block[c->t[k].layer] = c->t[k].cd.k;
    struct dp_model *q = NULL;
    /* Fresh vectors have their own seed, apart from every step's. */
    const uint64_t seed = admm_mix64(c->spec->seed ^ 0x63697263756c616eULL);
    enum dp_err err = cp_circ_convert(m, block, fresh, seed, &q, ei);
    dp_free(block);
    if (err)
        return err;
    /* The caller's model becomes the converted one in place (the old
     * graph and block go with q). No view of the old one is left: the
     * teacher is refused with circulant rules (common/spec.c). */
    const struct dp_model old = *m;
    *m = *q;
    *q = old;
    dp_model_free(q);
    dp_free(c->z);
    dp_free(c->u);
    dp_free(c->mask);
    dp_free(c->best);
    dp_free(c->rbest);
    c->best = c->rbest = NULL;
    c->rbest_epoch = 0;
    admm_drop_moments(c);
    c->z = dp_calloc(m->n_floats, sizeof(float));
    c->u = dp_calloc(m->n_floats, sizeof(float));
    c->mask = dp_malloc(dp_size_mul(m->n_floats, sizeof(float)));
    if (c->z == NULL || c->u == NULL || c->mask == NULL)
        return dp_errinfo_set(ei, DP_ENOMEM, "out of memory for the circulant model's state");
    for (size_t i = 0; i < m->n_floats; i++)
        c->mask[i] = 1.0f;
    c->mask_on = c->shadow_on = c->quant_on = 0;
    dp_free(c->t);
    dp_free_aligned(c->scratch);
    c->t = NULL;
    c->scratch = NULL;
    c->converted = 1;
    return admm_targets(c, ei);
}

/* ---- Step actions --------------------------------------------------------- */

/*
 * Multi-rho, between two ADMM iterations: rho_new = min(rho_max, rho *
 * rho_factor). U is the scaled dual Lambda / rho, so keeping Lambda means
 * U = U * rho_old / rho_new. Without the rescale, the pull rho (W - Z + U)
 * of a pruned weight would gain (f - 1) g of the loss gradient's g it had
 * balanced, and the pruned weights would settle at (f - 1) g / rho instead
 * of 0. Growing before the W-step (not after the Z-step) keeps t->rho the
 * rho of the last W-step, which the trace and the report show.
 */
static void admm_rho_grow(struct admm_ctx *c)
{
    const struct dp_spec *s = c->spec;
    for (int k = 0; k < c->n_t; k++) {
        struct admm_target *t = &c->t[k];
        const double rho = fmin(s->rho_max, t->rho * s->rho_factor);
        if (rho == t->rho)
            continue;
        const float scale = (float)(t->rho / rho);
        float *u = c->u + c->m->params[t->param].offset;
        const size_t n = admm_numel(c, t);
        for (size_t i = 0; i < n; i++)
            u[i] *= scale;
        t->rho = rho;
    }
}

enum dp_err admm_step_begin(struct admm_ctx *c, const struct admm_step *sp, struct dp_errinfo *ei)
{
    const struct dp_spec *s = c->spec;
    const struct dp_model *m = c->m;
    switch (sp->kind) {
        case ADMM_STEP_ADMM:
            if (sp->iter != 0) {
                admm_rho_grow(c);
                break;
            }
            if (s->auto_on) {
                /* Rates recomputed on the weights this stage starts from. */
                enum dp_err err = admm_alloc_auto(c, sp->stage, ei);
                if (err)
                    return err;
                admm_event(c, "rates", json_incref(c->auto_info));
            }
            admm_stage_rates(c, sp->stage);
            c->quant_on = 0;
            for (int k = 0; k < c->n_t; k++) {
                struct admm_target *t = &c->t[k];
                const size_t off = m->params[t->param].offset;
                memcpy(c->z + off, admm_w(c, t), admm_numel(c, t) * sizeof(float));
                admm_project(c, t, c->z + off, 1);
                memset(c->u + off, 0, admm_numel(c, t) * sizeof(float));
                t->rho = t->rule->rho >= 0 ? t->rule->rho : s->rho;
            }
            if (s->stages > 1) {
                double n = 0.0, kept = 0.0;
                for (int k = 0; k < c->n_t; k++) {
                    n += (double)admm_numel(c, &c->t[k]);
                    kept += (double)admm_numel(c, &c->t[k]) / c->t[k].p.rate;
                }
                admm_say(c, "stage %d/%d: target rate %.1fx on the constrained layers",
                         sp->stage + 1, s->stages, kept > 0.0 ? n / kept : 0.0);
            }
            break;
        case ADMM_STEP_RETRAIN:
            admm_stage_rates(c, sp->stage);
            if (!c->mask_on) /* the retrain phase starts from a hard-projected model */
                admm_mask_from_zeros(c);
            admm_quant_start(c);
            c->quant_on = 1;
            break;
        case ADMM_STEP_MAGNITUDE: {
            /* Geometric targets: rate^(1/steps), rate^(2/steps), ..., rate. */
            const double f = (double)(sp->iter + 1) / (double)s->magnitude_steps;
            admm_set_rates(c, f);
            if (s->magnitude_alloc == DP_SPEC_ALLOC_GLOBAL) {
                enum dp_err err = admm_alloc_global(c, f, ei);
                if (err)
                    return err;
            }
            admm_harden(c, sp->last_iter);
            c->quant_on = sp->last_iter;
            break;
        }
    }
    return DP_OK;
}

/* Validation accuracy of P(W): every target projected (and quantized) on
 * a copy, the model evaluated, the weights put back. */
static enum dp_err admm_projected_acc(struct admm_ctx *c, double *acc, struct dp_errinfo *ei)
{
    const size_t bytes = dp_size_mul(c->m->n_floats, sizeof(float));
    float *keep = dp_malloc(bytes);
    if (keep == NULL)
        return dp_errinfo_set(ei, DP_ENOMEM, "out of memory evaluating P(W)");
    memcpy(keep, c->m->data, bytes);
    for (int k = 0; k < c->n_t; k++)
        admm_project(c, &c->t[k], admm_w(c, &c->t[k]), 1);
    double loss = 0.0;
    enum dp_err err = nn_evaluate(c->m, c->val, c->mean, c->std, c->spec->batch, acc, &loss, ei);
    memcpy(c->m->data, keep, bytes);
    dp_free(keep);
    return err;
}

/* Z = P(W + U), U += W - Z, with the convergence measures of every
 * target: the primal residual ||W - Z|| / ||W||, the dual residual
 * rho ||Z - Z_prev|| / ||W|| and the fraction of weights that entered or
 * left the support of Z. *converged: every target within
 * admm.target_residual and admm.support_change (never when
 * target_residual is 0). */
static enum dp_err admm_zu_update(struct admm_ctx *c, const struct admm_step *sp, int *converged,
                                  struct dp_errinfo *ei)
{
    const struct dp_spec *s = c->spec;
    const struct dp_model *m = c->m;
    double pacc = 0.0;
    enum dp_err err = admm_projected_acc(c, &pacc, ei);
    if (err)
        return err;
    size_t max_n = 1;
    for (int k = 0; k < c->n_t; k++)
        max_n = admm_numel(c, &c->t[k]) > max_n ? admm_numel(c, &c->t[k]) : max_n;
    float *zprev = dp_malloc(dp_size_mul(max_n, sizeof(float)));
    json_t *lt = json_array();
    if (zprev == NULL || lt == NULL) {
        dp_free(zprev);
        json_decref(lt);
        return dp_errinfo_set(ei, DP_ENOMEM, "out of memory for the Z-step");
    }
    double mean_resid = 0.0, max_resid = 0.0, max_moved = 0.0;
    for (int k = 0; k < c->n_t; k++) {
        struct admm_target *t = &c->t[k];
        const size_t off = m->params[t->param].offset, n = admm_numel(c, t);
        const float *w = m->data + off;
        float *z = c->z + off, *u = c->u + off;
        memcpy(zprev, z, n * sizeof(float));
        for (size_t i = 0; i < n; i++)
            z[i] = w[i] + u[i];
        admm_project(c, t, z, 1);
        double dw = 0.0, ww = 0.0, dz = 0.0;
        size_t moved = 0;
        for (size_t i = 0; i < n; i++) {
            const double d = (double)w[i] - (double)z[i];
            const double e = (double)z[i] - (double)zprev[i];
            u[i] += w[i] - z[i];
            dw += d * d;
            ww += (double)w[i] * (double)w[i];
            dz += e * e;
            moved += (z[i] != 0.0f) != (zprev[i] != 0.0f);
        }
        t->resid = ww > 0.0 ? sqrt(dw / ww) : 0.0;
        t->dual = ww > 0.0 ? t->rho * sqrt(dz / ww) : 0.0;
        t->moved = (double)moved / (double)n;
        mean_resid += t->resid / c->n_t;
        max_resid = fmax(max_resid, t->resid);
        max_moved = fmax(max_moved, t->moved);
        json_array_append_new(lt, json_pack("{s:s, s:f, s:f, s:f, s:I, s:f}", "name",
                                            m->layers[t->layer].name, "rho", t->rho, "residual",
                                            t->resid, "dual_residual", t->dual, "support_changes",
                                            (json_int_t)moved, "support_change", t->moved));
    }
    dp_free(zprev);
    *converged = s->target_residual > 0.0 && max_resid <= s->target_residual &&
                 max_moved <= s->support_change;
    json_t *rec =
        json_pack("{s:i, s:i, s:f, s:f, s:f, s:f, s:f, s:b, s:o}", "stage", sp->stage + 1, "iter",
                  sp->iter + 1, "train_loss", c->last_loss, "train_accuracy", c->last_train_acc,
                  "val_accuracy", c->last_val_acc, "val_accuracy_projected", pacc, "lr", c->last_lr,
                  "converged", *converged, "layers", lt);
    json_array_append(c->trace, rec);
    admm_event(c, "admm_iteration", rec);
    admm_say(c,
             "admm iteration %d: val %.2f%%, val of P(W) %.2f%%, ||W-Z||/||W|| mean %.4f max "
             "%.4f, support moved %.4f%s",
             sp->iter + 1, 100.0 * c->last_val_acc, 100.0 * pacc, mean_resid, max_resid, max_moved,
             *converged ? ", converged" : "");
    return DP_OK;
}

/* A stage that converged before its last planned iteration hardens now:
 * the epochs of its remaining iterations go to its retraining (or, when
 * the retraining is another phase's, to c->spare_epochs for it). */
static void admm_skip_rest(struct admm_ctx *c, const struct admm_step *sp)
{
    int freed = 0;
    int i = c->si + 1;
    for (; i < c->n_steps && c->steps[i].kind == ADMM_STEP_ADMM && c->steps[i].stage == sp->stage;
         i++) {
        freed += c->steps[i].epochs;
        c->steps[i].skipped = 1;
    }
    if (i < c->n_steps && c->steps[i].kind == ADMM_STEP_RETRAIN && c->steps[i].stage == sp->stage)
        c->steps[i].epochs += freed;
    else
        c->spare_epochs += freed;
    admm_say(c, "stage %d converged after %d iterations: %d epochs move to the retraining",
             sp->stage + 1, sp->iter + 1, freed);
}

/* A retrained stage: accepted within the tolerance on the validation
 * split (progressive runs), or rejected, which ends the run on the last
 * accepted stage. The test accuracy is recorded, never consulted. */
static enum dp_err admm_stage_end(struct admm_ctx *c, const struct admm_step *sp,
                                  struct dp_errinfo *ei)
{
    const struct dp_spec *s = c->spec;
    const double acc = c->last_val_acc;
    const int progressive = s->stages > 1;
    const int ok = !progressive || acc >= c->dense_val_acc - s->tolerance;
    double test_acc = 0.0, loss = 0.0;
    enum dp_err err = nn_evaluate(c->m, c->test, c->mean, c->std, s->batch, &test_acc, &loss, ei);
    if (err)
        return err;
    json_t *rec =
        json_pack("{s:i, s:f, s:f, s:f, s:b}", "stage", sp->stage + 1, "val_accuracy", acc,
                  "test_accuracy", test_acc, "sparsity", admm_sparsity(c), "accepted", ok);
    json_array_append(c->stages, rec);
    admm_event(c, "stage", rec);
    if (!progressive)
        return DP_OK;
    admm_say(c, "stage %d/%d: val %.2f%% (dense %.2f%%, tolerance %.2f) %s; test %.2f%%",
             sp->stage + 1, s->stages, 100.0 * acc, 100.0 * c->dense_val_acc, 100.0 * s->tolerance,
             ok ? "accepted" : "rejected", 100.0 * test_acc);
    if (ok) {
        if (c->best == NULL)
            c->best = dp_malloc(dp_size_mul(c->m->n_floats, sizeof(float)));
        if (c->best == NULL)
            return dp_errinfo_set(ei, DP_ENOMEM, "out of memory for the accepted stage");
        memcpy(c->best, c->m->data, c->m->n_floats * sizeof(float));
        c->best_stage = sp->stage;
    } else {
        c->halted = 1;
    }
    return DP_OK;
}

enum dp_err admm_step_end(struct admm_ctx *c, const struct admm_step *sp, struct dp_errinfo *ei)
{
    switch (sp->kind) {
        case ADMM_STEP_ADMM: {
            int converged = 0;
            enum dp_err err = admm_zu_update(c, sp, &converged, ei);
            if (err)
                return err;
            if (converged && !sp->last_iter)
                admm_skip_rest(c, sp);
            if (sp->last_iter || converged) {
                admm_harden(c, 0); /* quantization starts the retraining */
                c->quant_on = 0;
                /* Hard-projected circulant weights: on to their circulant
                 * layers, which the retraining trains. */
                if (c->spec->circ_from == DP_SPEC_CIRC_ADMM) {
                    err = admm_circ_convert(c, 0, ei);
                    if (err)
                        return err;
                    admm_say(c, "converted %d matrices to block-circulant layers (%zu floats)",
                             c->n_t, c->m->n_floats);
                }
            }
            return DP_OK;
        }
        case ADMM_STEP_RETRAIN:
            return admm_stage_end(c, sp, ei);
        case ADMM_STEP_MAGNITUDE: {
            json_t *rec = json_pack("{s:i, s:f, s:f, s:f, s:f}", "step", sp->iter + 1, "rate",
                                    c->t[0].p.rate, "train_loss", c->last_loss, "val_accuracy",
                                    c->last_val_acc, "lr", c->last_lr);
            json_array_append(c->trace, rec);
            admm_event(c, "admm_iteration", rec);
            admm_say(c, "magnitude step %d/%d: val %.2f%%", sp->iter + 1, c->spec->magnitude_steps,
                     100.0 * c->last_val_acc);
            return DP_OK;
        }
    }
    return DP_OK;
}

/* Early stopping of a retraining (retrain.keep_best): back to its epoch of
 * best validation accuracy, which is then the step's accuracy. */
static void admm_restore_best(struct admm_ctx *c, const struct admm_step *sp)
{
    if (!admm_keeps_best(c, sp) || c->rbest_epoch == 0)
        return;
    if (c->rbest_epoch != sp->epochs) {
        memcpy(c->m->data, c->rbest, c->m->n_floats * sizeof(float));
        admm_say(c, "retraining ends on its epoch %d of %d (val %.2f%%, the best)", c->rbest_epoch,
                 sp->epochs, 100.0 * c->rbest_acc);
    }
    c->last_val_acc = c->rbest_acc;
    c->rbest_epoch = 0;
    c->rbest_acc = 0.0;
}

static enum dp_err admm_run(struct admm_ctx *c, struct dp_errinfo *ei)
{
    for (; c->si < c->n_steps && !c->halted; c->si++, c->ep = 0) {
        const struct admm_step *sp = &c->steps[c->si];
        if (sp->skipped)
            continue;
        enum dp_err err = c->ep == 0 ? admm_step_begin(c, sp, ei) : DP_OK;
        if (!err && c->ep < sp->epochs)
            err = admm_train(c, sp, ei);
        if (!err)
            admm_restore_best(c, sp);
        if (!err)
            err = admm_step_end(c, sp, ei);
        /* The moments were for this step only (trained, or resumed at its
         * end from a checkpoint), unless it hands them on to the next
         * W-step (admm_on_epoch_end kept them then), which a converged
         * stage skips. */
        if (!admm_step_carries(sp) || (c->si + 1 < c->n_steps && c->steps[c->si + 1].skipped))
            admm_drop_moments(c);
        if (!err)
            err = admm_checkpoint(c, c->si + 1, 0, NULL, ei);
        if (err)
            return err;
    }
    if (c->halted && c->best != NULL) {
        /* The last stage missed the tolerance: the run ends on the best one. */
        memcpy(c->m->data, c->best, c->m->n_floats * sizeof(float));
        admm_stage_rates(c, c->best_stage);
        admm_say(c, "kept stage %d/%d, the last within the tolerance", c->best_stage + 1,
                 c->spec->stages);
    }
    return DP_OK;
}

static int admm_file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

/* The numbers the retrain phase takes over from the compress phase's report. */
static void admm_take_prev(struct admm_ctx *c, const json_t *prev)
{
    c->dense_acc = json_number_value(json_object_get(prev, "dense_test_accuracy"));
    const json_t *pv = json_object_get(prev, "dense_val_accuracy");
    c->dense_val_acc = json_is_number(pv) ? json_number_value(pv) : c->dense_acc;
    json_t *pt = json_object_get(prev, "trace");
    if (json_is_array(pt))
        json_array_extend(c->trace, pt);
    json_t *pe = json_object_get(prev, "epochs");
    c->epochs_done = json_is_integer(pe) ? (int)json_integer_value(pe) : 0;
    c->epochs_offset = c->epochs_done;
    json_t *pw = json_object_get(prev, "wall_seconds");
    c->wall_prev = json_is_number(pw) ? json_number_value(pw) : 0.0;
    /* The automatic rates were chosen in the compress phase: the report of
     * the retraining says which, and against what (a device's latency). */
    json_t *pa = json_object_get(prev, "auto");
    if (json_is_object(pa) && c->auto_info == NULL)
        c->auto_info = json_deep_copy(pa);
    /* Epochs a converged last stage saved belong to this retraining. */
    json_t *ps = json_object_get(prev, "spare_epochs");
    const json_int_t spare = json_is_integer(ps) ? json_integer_value(ps) : 0;
    if (spare > 0 && spare <= 100000 && c->n_steps > 0 &&
        c->steps[c->n_steps - 1].kind == ADMM_STEP_RETRAIN) {
        c->steps[c->n_steps - 1].epochs += (int)spare;
        c->epochs_planned += (int)spare;
    }
}

/* Circulant rules: the model's matching layers are all dense (they are
 * converted on the way) or, in the retrain phase, all converted already
 * (the compress phase's output); sets c->converted. */
static enum dp_err admm_circ_check(struct admm_ctx *c, struct dp_errinfo *ei)
{
    if (c->spec->circ_from == DP_SPEC_CIRC_NONE)
        return DP_OK;
    const int retrain = c->cb != NULL && c->cb->phase == ADMM_PHASE_RETRAIN;
    for (int k = 0; k < c->n_t; k++) {
        const struct admm_target *t = &c->t[k];
        if (t->converted != retrain)
            return dp_errinfo_set(
                ei, DP_EINVAL,
                retrain ? "layer '%s' is dense: the retrain phase of circulant rules takes the "
                          "compress phase's block-circulant model"
                        : "layer '%s' is block-circulant already: circulant rules convert a "
                          "dense model (the retrain phase retrains a converted one)",
                c->m->layers[t->layer].name);
    }
    c->converted = retrain;
    return DP_OK;
}

enum dp_err admm_compress(struct dp_model *m, const struct nn_dataset *train,
                          const struct nn_dataset *test, const struct dp_spec *spec,
                          const struct admm_callbacks *cb, json_t **report, struct dp_errinfo *ei)
{
    struct admm_ctx c;
    memset(&c, 0, sizeof(c));
    struct nn_dataset fit = {0}, val = {0};
    c.m = m;
    c.spec = spec;
    c.cb = cb;
    c.best_stage = -1;
    c.t_start = admm_now();
    *report = NULL;
    c.trace = json_array();
    c.stages = json_array();
    double final_acc = 0.0, final_val = 0.0, loss = 0.0;
    /* The held-out validation split: every decision is taken on it. */
    enum dp_err err = nn_dataset_split(train, spec->val_fraction, spec->val_seed, &fit, &val);
    if (err) {
        dp_errinfo_set(ei, err,
                       err == DP_ENOMEM ? "out of memory splitting the training set"
                                        : "cannot hold out %.0f%% of %d training images for "
                                          "validation",
                       100.0 * spec->val_fraction, train->n);
        goto out;
    }
    c.train = &fit;
    c.val = &val;
    c.test = test;
    /* The model arrives dense (a resumed run restarts from the pretrained
     * weights too), except in the retrain phase, whose input is the
     * compress phase's result: there is no teacher there. */
    if (spec->distill_weight > 0.0 && (cb == NULL || cb->phase != ADMM_PHASE_RETRAIN)) {
        c.teacher = *m;
        c.teacher.data = dp_malloc_aligned(dp_size_mul(m->n_floats, sizeof(float)));
        if (c.teacher.data == NULL) {
            err = dp_errinfo_set(ei, DP_ENOMEM, "out of memory for the teacher's weights");
            goto out;
        }
        memcpy(c.teacher.data, m->data, m->n_floats * sizeof(float));
    }
    err = admm_targets(&c, ei);
    if (!err)
        err = admm_circ_check(&c, ei);
    if (!err)
        err = admm_plan(&c, ei);
    if (err)
        goto out;
    const size_t bytes = dp_size_mul(m->n_floats, sizeof(float));
    c.z = dp_calloc(m->n_floats, sizeof(float));
    c.u = dp_calloc(m->n_floats, sizeof(float));
    c.mask = dp_malloc(bytes);
    if (c.z == NULL || c.u == NULL || c.mask == NULL || c.trace == NULL || c.stages == NULL) {
        err = dp_errinfo_set(ei, DP_ENOMEM, "out of memory for the ADMM state");
        goto out;
    }
    for (size_t i = 0; i < m->n_floats; i++)
        c.mask[i] = 1.0f;
    /* The model's own normalisation, or the whole training set's statistics
     * (recorded in the model), as every other command normalises with them. */
    nn_dataset_model_norm(train, m, c.mean, c.std);
    const int resuming =
        cb != NULL && cb->resume && cb->checkpoint != NULL && admm_file_exists(cb->checkpoint);
    if (resuming) {
        err = admm_state_load(&c, cb->checkpoint, ei);
        if (err)
            goto out;
        admm_say(&c, "resumed from %s: step %d/%d, %d epochs done", cb->checkpoint, c.si + 1,
                 c.n_steps, c.epochs_done);
    } else {
        const json_t *prev = cb != NULL ? cb->prev_report : NULL;
        if (json_is_number(json_object_get(prev, "dense_test_accuracy"))) {
            admm_take_prev(&c, prev);
        } else {
            err = nn_evaluate(m, c.test, c.mean, c.std, spec->batch, &c.dense_acc, &loss, ei);
            if (!err)
                err =
                    nn_evaluate(m, c.val, c.mean, c.std, spec->batch, &c.dense_val_acc, &loss, ei);
            if (err)
                goto out;
        }
        /* ADMM chooses its rates at the start of every stage; the
         * baseline's rounds all aim at the one final allocation. */
        if (spec->auto_on && spec->method == DP_SPEC_MAGNITUDE) {
            err = admm_alloc_auto(&c, -1, ei);
            if (err)
                goto out;
        }
        admm_say(&c,
                 "dense model: val accuracy %.2f%% (%d held-out images), test %.2f%%, %d "
                 "constrained layers, %d epochs planned",
                 100.0 * c.dense_val_acc, c.val->n, 100.0 * c.dense_acc, c.n_t, c.epochs_planned);
        if (spec->circ_from == DP_SPEC_CIRC_SCRATCH && !c.converted) {
            err = admm_circ_convert(&c, 1, ei);
            if (err)
                goto out;
            admm_say(&c, "converted %d matrices to block-circulant layers, fresh weights", c.n_t);
        }
    }
    c.epochs_planned += c.epochs_offset;
    err = admm_run(&c, ei);
    if (err)
        goto out;
    double test_loss = 0.0;
    err = nn_evaluate(m, c.test, c.mean, c.std, spec->batch, &final_acc, &test_loss, ei);
    if (!err)
        err = nn_evaluate(m, c.val, c.mean, c.std, spec->batch, &final_val, &loss, ei);
    if (err)
        goto out;
    admm_record_metadata(&c);
    *report = admm_report(&c, final_acc, final_val, admm_wall_seconds(&c));
    if (*report != NULL)
        json_object_set_new(*report, "final_test_loss", json_real(test_loss));
    if (*report == NULL)
        err = dp_errinfo_set(ei, DP_ENOMEM, "out of memory building the report");
    else
        admm_say(&c, "done: val %.2f%% (dense %.2f%%), test %.2f%% (dense %.2f%%), %d epochs",
                 100.0 * final_val, 100.0 * c.dense_val_acc, 100.0 * final_acc, 100.0 * c.dense_acc,
                 c.epochs_done);
out:
    json_decref(c.trace);
    json_decref(c.stages);
    json_decref(c.auto_info);
    dp_free(c.z);
    dp_free(c.u);
    dp_free(c.mask);
    dp_free(c.best);
    dp_free(c.rbest);
    dp_free(c.res_m1);
    dp_free(c.res_m2);
    dp_free(c.steps);
    dp_free_aligned(c.scratch);
    dp_free(c.t);
    nn_dataset_free(&fit);
    nn_dataset_free(&val);
    dp_free_aligned(c.teacher.data);
    return err;
}
