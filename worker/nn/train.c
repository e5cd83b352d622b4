/*
 * The training loop (see train.h).
 *
 * DESIGN: one thread drives the loop; the kernels inside the executor and
 * optimizer fan out with OpenMP. Batches come from the loader, which
 * normalises uint8 images on the fly so the dataset stays compact. The only
 * allocations are made once before the first epoch.
 */
#include "worker/nn/train.h"

#include <math.h>
#include <string.h>
#include <time.h>

#include "common/alloc.h"
#include "common/log.h"
#include "worker/nn/distill.h"
#include "worker/nn/loader.h"
#include "worker/nn/net.h"

struct nn_train_cfg nn_train_cfg_default(void)
{
    struct nn_train_cfg c;
    memset(&c, 0, sizeof(c));
    c.epochs = 10;
    c.batch = 64;
    c.optim.kind = NN_OPTIM_SGD;
    c.optim.momentum = 0.9f;
    c.optim.weight_decay = 5e-4f;
    c.optim.beta1 = 0.9f;
    c.optim.beta2 = 0.999f;
    c.optim.eps = 1e-8f;
    c.sched.kind = NN_SCHED_COSINE;
    c.sched.base_lr = 0.01f;
    c.sched.gamma = 0.1f;
    c.sched.step_epochs = 30;
    c.sched.total_epochs = c.epochs;
    c.sched.warmup_start = 0.1f;
    c.seed = 1;
    return c;
}

static double train_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static enum dp_err train_check_data(const struct dp_model *m, const struct nn_dataset *ds,
                                    int n_classes, const char *what, struct dp_errinfo *ei)
{
    if (ds->c != m->in_c || ds->h != m->in_h || ds->w != m->in_w)
        return dp_errinfo_set(ei, DP_ESHAPE,
                              "the %s set has %dx%dx%d images but the model takes %dx%dx%d", what,
                              ds->c, ds->h, ds->w, m->in_c, m->in_h, m->in_w);
    if (ds->n_classes > n_classes)
        return dp_errinfo_set(ei, DP_ESHAPE,
                              "the %s set has labels up to %d but the model has %d outputs", what,
                              ds->n_classes - 1, n_classes);
    if (ds->n < 1)
        return dp_errinfo_set(ei, DP_EINVAL, "the %s set is empty", what);
    return DP_OK;
}

/* Evaluation with an existing net (no allocation). */
static enum dp_err train_eval_net(struct nn_net *net, const struct nn_dataset *ds,
                                  const float *mean, const float *std, double *acc, double *loss,
                                  struct dp_errinfo *ei)
{
    struct nn_loader ld;
    struct nn_loader_cfg lc = {net->max_batch, 0, 0, mean, std, 0};
    enum dp_err err = nn_loader_init(&ld, ds, &lc, ei);
    if (err)
        return err;
    const size_t in_n = (size_t)net->max_batch * dp_model_out_size(net->m, DP_MODEL_INPUT);
    float *x = dp_malloc_aligned(in_n * sizeof(float));
    int32_t *y = dp_malloc((size_t)net->max_batch * sizeof(int32_t));
    if (x == NULL || y == NULL) {
        err = dp_errinfo_set(ei, DP_ENOMEM, "out of memory for an evaluation batch");
        goto out;
    }
    nn_loader_start_epoch(&ld, 0);
    double loss_sum = 0.0;
    long correct = 0, seen = 0;
    for (;;) {
        const int n = nn_loader_next(&ld, x, y);
        if (n <= 0)
            break;
        int c = 0;
        if (nn_net_forward(net, x, n, 0) == NULL) {
            err = dp_errinfo_set(ei, DP_ENOMEM, "out of memory evaluating a batch of %d", n);
            goto out;
        }
        loss_sum += (double)nn_net_loss(net, y, n, &c) * n;
        correct += c;
        seen += n;
    }
    *acc = seen ? (double)correct / (double)seen : 0.0;
    *loss = seen ? loss_sum / (double)seen : 0.0;
out:
    dp_free_aligned(x);
    dp_free(y);
    nn_loader_free(&ld);
    return err;
}

enum dp_err nn_evaluate(struct dp_model *m, const struct nn_dataset *ds, const float *mean,
                        const float *std, int batch, double *acc, double *loss,
                        struct dp_errinfo *ei)
{
    struct nn_net *net = NULL;
    enum dp_err err = nn_net_new(m, batch, &net, ei);
    if (err)
        return err;
    err = train_check_data(m, ds, net->n_classes, "evaluation", ei);
    if (!err)
        err = train_eval_net(net, ds, mean, std, acc, loss, ei);
    nn_net_free(net);
    return err;
}

enum dp_err nn_train(struct dp_model *m, const struct nn_dataset *train,
                     const struct nn_dataset *test, const struct nn_train_cfg *cfg,
                     const struct nn_train_hooks *hooks, struct nn_train_result *res,
                     struct dp_errinfo *ei)
{
    struct nn_net *net = NULL, *tnet = NULL;
    struct nn_optim *opt = NULL;
    struct nn_loader ld;
    int have_loader = 0;
    float *x = NULL;
    int32_t *y = NULL;
    float mean[NN_DATASET_MAX_C], std[NN_DATASET_MAX_C];
    enum dp_err err;

    memset(res, 0, sizeof(*res));
    if (cfg->epochs < 1 || cfg->epochs > 100000)
        return dp_errinfo_set(ei, DP_EINVAL, "epochs %d must be in [1, 100000]", cfg->epochs);
    err = nn_sched_validate(&cfg->sched, ei);
    if (err)
        return err;
    err = nn_net_new_ex(m, cfg->batch, !cfg->no_dnnl, &net, ei);
    if (err)
        return err;
    err = train_check_data(m, train, net->n_classes, "training", ei);
    if (!err && test != NULL)
        err = train_check_data(m, test, net->n_classes, "test", ei);
    if (err)
        goto out;
    const struct nn_distill_cfg *kd = cfg->distill;
    if (kd != NULL) {
        if (!(kd->temperature >= 1.0f) || !(kd->weight >= 0.0f && kd->weight <= 1.0f)) {
            err = dp_errinfo_set(ei, DP_EINVAL,
                                 "distillation temperature %g must be >= 1 and weight %g in [0, 1]",
                                 (double)kd->temperature, (double)kd->weight);
            goto out;
        }
        err = nn_net_new_ex(kd->teacher, cfg->batch, !cfg->no_dnnl, &tnet, ei);
        if (!err && tnet->n_classes != net->n_classes)
            err = dp_errinfo_set(ei, DP_ESHAPE, "the teacher has %d outputs, the student %d",
                                 tnet->n_classes, net->n_classes);
        if (!err)
            err = train_check_data(kd->teacher, train, tnet->n_classes, "teacher's training", ei);
        if (err)
            goto out;
    }
    err = nn_optim_new(m, &cfg->optim, &opt, ei);
    if (err)
        goto out;
    /* The caller's statistics when it trains on a share of the training set
     * (ADMM's validation split: the whole set's numbers, as every other
     * command normalises with them); otherwise the model's own, or the
     * training set's, recorded in the model (nn_dataset_model_norm). */
    if (cfg->mean != NULL && cfg->std != NULL) {
        memcpy(mean, cfg->mean, (size_t)train->c * sizeof(float));
        memcpy(std, cfg->std, (size_t)train->c * sizeof(float));
    } else {
        nn_dataset_model_norm(train, m, mean, std);
    }
    struct nn_loader_cfg lc = {cfg->batch, 1, cfg->augment, mean, std, cfg->seed};
    err = nn_loader_init(&ld, train, &lc, ei);
    if (err)
        goto out;
    have_loader = 1;
    const size_t in_n = (size_t)cfg->batch * dp_model_out_size(m, DP_MODEL_INPUT);
    x = dp_malloc_aligned(in_n * sizeof(float));
    y = dp_malloc((size_t)cfg->batch * sizeof(int32_t));
    if (x == NULL || y == NULL) {
        err = dp_errinfo_set(ei, DP_ENOMEM, "out of memory for a training batch");
        goto out;
    }
    net->dropout_seed = cfg->seed * 0x2545f4914f6cdd1dULL + 7;
    const long steps_per_epoch = (train->n + cfg->batch - 1) / cfg->batch;
    int first_epoch = 0;
    if (cfg->resume != NULL) {
        const struct nn_train_resume *r = cfg->resume;
        if (r->start_epoch < 0 || r->start_epoch > cfg->epochs || r->t < 0 || r->m1 == NULL ||
            (opt->m2 != NULL && r->m2 == NULL)) {
            err = dp_errinfo_set(ei, DP_EINVAL, "resume point (epoch %d of %d) is not valid",
                                 r->start_epoch, cfg->epochs);
            goto out;
        }
        first_epoch = r->start_epoch;
        memcpy(opt->m1, r->m1, m->n_floats * sizeof(float));
        if (opt->m2 != NULL)
            memcpy(opt->m2, r->m2, m->n_floats * sizeof(float));
        opt->t = r->t;
        net->step = (uint64_t)first_epoch * (uint64_t)steps_per_epoch;
    }
    if (cfg->profile && nn_net_profile_enable(net) != DP_OK) {
        err = dp_errinfo_set(ei, DP_ENOMEM, "out of memory for the layer profile");
        goto out;
    }

    const double t_start = train_now();
    double train_time = 0.0;
    long images = 0;
    for (int ep = first_epoch; ep < cfg->epochs; ep++) {
        const double t0 = train_now();
        nn_loader_start_epoch(&ld, ep);
        double loss_sum = 0.0;
        long correct = 0, seen = 0, step = 0;
        for (;;) {
            const int n = nn_loader_next(&ld, x, y);
            if (n <= 0)
                break;
            if (hooks != NULL && ((hooks->stop != NULL && *hooks->stop) ||
                                  (hooks->stop_fn != NULL && hooks->stop_fn(hooks->ud)))) {
                err =
                    dp_errinfo_set(ei, DP_EINTERRUPTED, "training interrupted in epoch %d", ep + 1);
                goto out;
            }
            float lr = nn_sched_lr(&cfg->sched, ep, (double)step / (double)steps_per_epoch);
            int c = 0;
            nn_net_zero_grad(net);
            const float *logits = nn_net_forward(net, x, n, 1);
            if (logits == NULL) {
                err = dp_errinfo_set(ei, DP_ENOMEM, "out of memory for a batch of %d", n);
                goto out;
            }
            float loss = nn_net_loss(net, y, n, &c);
            if (tnet != NULL) {
                const float *soft = nn_net_forward(tnet, x, n, 0);
                if (soft == NULL) {
                    err = dp_errinfo_set(ei, DP_ENOMEM, "out of memory for the teacher's batch");
                    goto out;
                }
                loss = nn_distill_forward(net->probs, logits, soft, y, n, net->n_classes,
                                          kd->temperature, kd->weight, loss);
            }
            if (!isfinite(loss)) {
                err = dp_errinfo_set(ei, DP_ENUMERIC,
                                     "the loss became %g in epoch %d step %ld; lower the "
                                     "learning rate",
                                     (double)loss, ep + 1, step + 1);
                goto out;
            }
            nn_net_backward(net, y, n);
            nn_optim_step(opt, net->grad, lr, hooks != NULL ? &hooks->optim : NULL);
            loss_sum += (double)loss * n;
            correct += c;
            seen += n;
            step++;
        }
        const double dt = train_now() - t0;
        train_time += dt;
        images += seen;
        res->steps += step;

        struct nn_epoch_stats st;
        memset(&st, 0, sizeof(st));
        st.epoch = ep + 1;
        st.epochs = cfg->epochs;
        st.lr = nn_sched_lr(&cfg->sched, ep, 0.0);
        st.train_loss = seen ? loss_sum / (double)seen : 0.0;
        st.train_acc = seen ? (double)correct / (double)seen : 0.0;
        st.test_acc = st.test_loss = -1.0;
        if (test != NULL) {
            err = train_eval_net(net, test, mean, std, &st.test_acc, &st.test_loss, ei);
            if (err)
                goto out;
        }
        st.images_per_s = dt > 0.0 ? (double)seen / dt : 0.0;
        st.elapsed_s = train_now() - t_start;
        st.eta_s = st.elapsed_s / (double)(ep + 1 - first_epoch) * (double)(cfg->epochs - ep - 1);
        res->last = st;
        if (hooks != NULL && hooks->on_epoch != NULL)
            hooks->on_epoch(hooks->ud, &st);
        if (hooks != NULL && hooks->on_epoch_end != NULL) {
            err = hooks->on_epoch_end(hooks->ud, ep + 1, opt, ei);
            if (err)
                goto out;
        }
    }
    if (net->prof != NULL) {
        for (int i = 0; i < m->n_layers; i++)
            DP_LOG(DP_LOG_INFO, "profile %-24s %-8s forward %8.3f s  backward %8.3f s",
                   m->layers[i].name, dp_op_name(m->layers[i].op), net->prof[2 * i],
                   net->prof[2 * i + 1]);
    }
    res->train_seconds = train_time;
    res->train_images_per_s = train_time > 0.0 ? (double)images / train_time : 0.0;
out:
    dp_free_aligned(x);
    dp_free(y);
    if (have_loader)
        nn_loader_free(&ld);
    nn_optim_free(opt);
    nn_net_free(tnet);
    nn_net_free(net);
    return err;
}
