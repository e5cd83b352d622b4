/*
 * `dnnpress-worker train` (see wk_train.h).
 *
 * Flags are described once, in a table, which drives the defaults, parsing,
 * bounds checking, --help and the fields a job may set (STYLE rule 23).
 */
#include "worker/cmd/wk_train.h"

#include <jansson.h>
#include <omp.h>
#include <stdio.h>
#include <string.h>

#include "common/model.h"
#include "common/model_io.h"
#include "worker/cmd/wk_cmd.h"
#include "worker/cmd/wk_flags.h"
#include "worker/cmd/wk_model_load.h"
#include "worker/nn/arch.h"
#include "worker/nn/cpu.h"
#include "worker/nn/data.h"
#include "worker/nn/train.h"
#include "worker/nn/train_state.h"

#define WK_OFF(f) offsetof(struct wk_train_opts, f)

/* WK_FLAG_JOB: what a job's params.pretrain may set (docs/api.md). */
static const struct wk_flag wk_flags[] = {
    {"model", WK_STR, WK_OFF(model), 0, 0, NULL, 0,
     "built-in architecture name, a .safetensors checkpoint or an .onnx model to continue from"},
    {"data", WK_STR, WK_OFF(data), 0, 0, NULL, 0,
     "dataset: idx:DIR (MNIST family), cifar:DIR (CIFAR-10 binary), npy:DIR"},
    {"synthetic", WK_INT, WK_OFF(synthetic), 1, 10000000, NULL, 0,
     "instead of --data: N random 3x32x32 images in 10 classes (speed runs)"},
    {"epochs", WK_INT, WK_OFF(epochs), 1, 100000, "20", WK_FLAG_JOB, "training epochs"},
    {"batch", WK_INT, WK_OFF(batch), 1, 65536, "64", WK_FLAG_JOB, "batch size"},
    {"optim", WK_STR, WK_OFF(optim), 0, 0, "sgd", WK_FLAG_JOB, "sgd or adam"},
    {"lr", WK_FLOAT, WK_OFF(lr), 1e-9, 100, "0.01", WK_FLAG_JOB, "learning rate"},
    {"momentum", WK_FLOAT, WK_OFF(momentum), 0, 0.999999, "0.9", WK_FLAG_JOB, "SGD momentum"},
    {"nesterov", WK_BOOL, WK_OFF(nesterov), 0, 1, NULL, WK_FLAG_JOB, "use Nesterov momentum"},
    {"wd", WK_FLOAT, WK_OFF(wd), 0, 1, "5e-4", WK_FLAG_JOB, "weight decay"},
    {"sched", WK_STR, WK_OFF(sched), 0, 0, "cosine", WK_FLAG_JOB, "const, step or cosine"},
    {"step-epochs", WK_INT, WK_OFF(step_epochs), 1, 100000, "30", 0, "step schedule period"},
    {"gamma", WK_FLOAT, WK_OFF(gamma), 1e-9, 1, "0.1", 0, "step schedule factor"},
    {"min-lr", WK_FLOAT, WK_OFF(min_lr), 0, 100, "0", 0, "cosine floor"},
    {"warmup", WK_INT, WK_OFF(warmup), 0, 100000, "0", WK_FLAG_JOB, "linear warm-up epochs"},
    {"augment", WK_BOOL, WK_OFF(augment), 0, 1, NULL, WK_FLAG_JOB,
     "random crop (pad 4) and horizontal flip"},
    {"seed", WK_INT, WK_OFF(seed), 0, 9007199254740992.0, "1", WK_FLAG_JOB, "seed"},
    {"threads", WK_INT, WK_OFF(threads), 1, 1024, NULL, 0, "worker threads (default: all cores)"},
    {"limit-train", WK_INT, WK_OFF(limit_train), 1, 1e9, NULL, 0,
     "use only the first N training images"},
    {"limit-test", WK_INT, WK_OFF(limit_test), 1, 1e9, NULL, 0, "use only the first N test images"},
    {"out", WK_STR, WK_OFF(out), 0, 0, NULL, 0,
     "write the trained model to this .safetensors file"},
    {"quiet", WK_BOOL, WK_OFF(quiet), 0, 1, NULL, 0, "no per-epoch progress lines"},
    {"profile", WK_BOOL, WK_OFF(profile), 0, 1, NULL, 0, "log per-layer forward/backward time"},
    {"im2col", WK_BOOL, WK_OFF(im2col), 0, 1, NULL, 0,
     "convolutions on im2col+OpenBLAS instead of oneDNN (comparisons)"},
    {"checkpoint", WK_STR, WK_OFF(checkpoint), 0, 0, NULL, 0,
     "write the whole training state here after every epoch"},
    {"resume", WK_BOOL, WK_OFF(resume), 0, 1, NULL, 0,
     "continue from --checkpoint when it exists (same flags: same result)"},
};

#define WK_N_FLAGS (sizeof(wk_flags) / sizeof(wk_flags[0]))

void wk_train_opts_init(struct wk_train_opts *o)
{
    memset(o, 0, sizeof(*o));
    wk_flags_defaults(wk_flags, WK_N_FLAGS, o);
}

enum dp_err wk_train_opts_from_json(struct wk_train_opts *o, const json_t *obj, const char *where,
                                    struct dp_errinfo *ei)
{
    return wk_flags_from_json(wk_flags, WK_N_FLAGS, WK_FLAG_JOB, obj, where, o, ei);
}

/* What a train run needs besides its flags: the hooks of the task loop. */
struct wk_train_run {
    const struct wk_train_opts *o;
    const struct wk_hooks *h;
    const struct dp_model *m;
    uint64_t digest;
};

/* Everything that shapes the run, so a checkpoint is only resumed by the
 * same run. */
static uint64_t wk_train_digest(const struct wk_train_opts *o)
{
    char buf[1024];
    snprintf(buf, sizeof(buf), "%s|%s|%ld|%ld|%ld|%ld|%ld|%ld|%ld|%ld|%ld|%g|%g|%g|%g|%g|%s|%s|%ld",
             o->model, o->data ? o->data : "-", o->synthetic, o->epochs, o->batch, o->seed,
             o->limit_train, o->warmup, o->step_epochs, o->nesterov, o->augment, o->lr, o->momentum,
             o->wd, o->gamma, o->min_lr, o->optim, o->sched, o->im2col);
    uint64_t h = 0xcbf29ce484222325ULL;
    for (const char *p = buf; *p; p++)
        h = (h ^ (unsigned char)*p) * 0x100000001b3ULL;
    return h;
}

static int wk_train_stop(void *ud)
{
    const struct wk_train_run *r = ud;
    return r->h != NULL && r->h->stop != NULL && r->h->stop(r->h->ctx);
}

static enum dp_err wk_train_epoch_end(void *ud, int epochs_done, const struct nn_optim *opt,
                                      struct dp_errinfo *ei)
{
    const struct wk_train_run *r = ud;
    if (r->o->checkpoint == NULL)
        return DP_OK;
    enum dp_err err = nn_train_state_save(r->o->checkpoint, r->m, opt, epochs_done, r->digest, ei);
    if (!err && r->h != NULL && r->h->event != NULL) {
        json_t *ev = json_pack("{s:s, s:i}", "path", r->o->checkpoint, "epoch", epochs_done);
        if (ev != NULL)
            r->h->event(r->h->ctx, "checkpoint", ev);
        json_decref(ev);
    }
    return err;
}

static void wk_train_help(FILE *f)
{
    fprintf(f,
            "usage: dnnpress-worker train --model NAME|FILE (--data SPEC | --synthetic N) "
            "[options]\n\n"
            "Trains a network and prints one progress line per epoch on stderr and a\n"
            "one-line JSON summary on stdout (test_accuracy, train_images_per_second,\n"
            "peak_rss_bytes, ...). Same seed and thread count give the same numbers.\n\n"
            "built-in models: %s\n\noptions:\n",
            nn_arch_names());
    wk_flags_help(f, wk_flags, WK_N_FLAGS);
}

static int wk_file_exists(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f != NULL)
        fclose(f);
    return f != NULL;
}

static enum dp_err wk_train_eval(struct dp_model *m, const struct nn_dataset *train,
                                 const struct nn_dataset *test, int batch,
                                 struct nn_train_result *res, struct dp_errinfo *ei)
{
    float mean[NN_DATASET_MAX_C], std[NN_DATASET_MAX_C];
    nn_dataset_model_norm(train, m, mean, std);
    res->last.train_loss = res->last.train_acc = -1.0;
    return nn_evaluate(m, test, mean, std, batch, &res->last.test_acc, &res->last.test_loss, ei);
}

static void wk_fmt_time(char *buf, size_t len, double s)
{
    long t = (long)(s + 0.5);
    if (t >= 3600)
        snprintf(buf, len, "%ldh%02ldm", t / 3600, (t / 60) % 60);
    else
        snprintf(buf, len, "%ldm%02lds", t / 60, t % 60);
}

static void wk_on_epoch(void *ud, const struct nn_epoch_stats *st)
{
    const struct wk_train_run *r = ud;
    const struct wk_train_opts *o = r->o;
    if (r->h != NULL && r->h->event != NULL) {
        json_t *ev =
            json_pack("{s:i, s:i, s:f, s:f, s:f, s:f, s:f, s:f, s:f}", "epoch", st->epoch, "epochs",
                      st->epochs, "loss", st->train_loss, "train_accuracy", st->train_acc,
                      "test_accuracy", st->test_acc, "lr", (double)st->lr, "images_per_s",
                      st->images_per_s, "elapsed_s", st->elapsed_s, "eta_s", st->eta_s);
        if (ev != NULL)
            r->h->event(r->h->ctx, "epoch", ev);
        json_decref(ev);
    }
    if (o->quiet)
        return;
    char eta[32];
    wk_fmt_time(eta, sizeof(eta), st->eta_s);
    fprintf(stderr,
            "epoch %d/%d  loss %.4f  train %.2f%%  test %.2f%%  lr %.5f  %.0f img/s  eta %s\n",
            st->epoch, st->epochs, st->train_loss, 100.0 * st->train_acc,
            st->test_acc >= 0 ? 100.0 * st->test_acc : 0.0, (double)st->lr, st->images_per_s, eta);
}

enum dp_err wk_train_check(const struct wk_train_opts *o, struct dp_errinfo *ei)
{
    if (o->model == NULL || (o->data == NULL) == (o->synthetic == 0))
        return dp_errinfo_set(ei, DP_EINVAL,
                              "--model and exactly one of --data or --synthetic are required "
                              "(see --help)");
    if (strcmp(o->optim, "sgd") != 0 && strcmp(o->optim, "adam") != 0)
        return dp_errinfo_set(ei, DP_EINVAL, "--optim must be sgd or adam, got '%s'", o->optim);
    enum nn_sched_kind kind;
    enum dp_err err = nn_sched_kind_parse(o->sched, &kind, ei);
    if (err)
        return wk_cmd_prefix(ei, DP_EINVAL, "--sched: ");
    return DP_OK;
}

/* The engine's configuration for o (checked). */
static struct nn_train_cfg wk_train_cfg(const struct wk_train_opts *o)
{
    struct nn_train_cfg cfg = nn_train_cfg_default();
    cfg.optim.kind = strcmp(o->optim, "adam") == 0 ? NN_OPTIM_ADAM : NN_OPTIM_SGD;
    nn_sched_kind_parse(o->sched, &cfg.sched.kind, NULL);
    cfg.epochs = (int)o->epochs;
    cfg.batch = (int)o->batch;
    cfg.seed = (uint64_t)o->seed;
    cfg.augment = (int)o->augment;
    cfg.profile = (int)o->profile;
    cfg.no_dnnl = (int)o->im2col;
    cfg.optim.momentum = (float)o->momentum;
    cfg.optim.nesterov = (int)o->nesterov;
    cfg.optim.weight_decay = (float)o->wd;
    cfg.sched.base_lr = (float)o->lr;
    cfg.sched.gamma = (float)o->gamma;
    cfg.sched.step_epochs = (int)o->step_epochs;
    cfg.sched.total_epochs = (int)o->epochs;
    cfg.sched.min_lr = (float)o->min_lr;
    cfg.sched.warmup_epochs = (int)o->warmup;
    return cfg;
}

static enum dp_err wk_train_data(const struct wk_train_opts *o, struct nn_dataset *train,
                                 struct nn_dataset *test, struct dp_errinfo *ei)
{
    enum dp_err err;
    if (o->data != NULL) {
        err = nn_dataset_load(o->data, NN_SPLIT_TRAIN, train, ei);
        if (!err)
            err = nn_dataset_load(o->data, NN_SPLIT_TEST, test, ei);
    } else {
        /* One set split 4:1, since the class templates come from the seed. */
        struct nn_dataset all = {0};
        int n_test = (int)(o->synthetic / 4 > 0 ? o->synthetic / 4 : 1);
        err = nn_dataset_synthetic(&all, (int)o->synthetic + n_test, 3, 32, 32, 10,
                                   (uint64_t)o->seed);
        if (!err)
            err = nn_dataset_subset(train, &all, 0, (int)o->synthetic);
        if (!err)
            err = nn_dataset_subset(test, &all, (int)o->synthetic, n_test);
        nn_dataset_free(&all);
    }
    if (err)
        return err;
    if (o->limit_train > 0)
        nn_dataset_limit(train, (int)o->limit_train);
    if (o->limit_test > 0)
        nn_dataset_limit(test, (int)o->limit_test);
    return DP_OK;
}

static enum dp_err wk_train_model(const struct wk_train_opts *o, const struct nn_dataset *train,
                                  const struct nn_dataset *test, struct dp_model **m,
                                  struct dp_errinfo *ei)
{
    enum dp_err err;
    if (wk_has_suffix(o->model, ".safetensors") || wk_has_suffix(o->model, ".onnx")) {
        err = wk_model_load(o->model, m, NULL, ei);
    } else {
        int n_classes = train->n_classes > test->n_classes ? train->n_classes : test->n_classes;
        err = nn_arch_build(o->model, train->c, train->h, train->w, n_classes, m, ei);
        if (!err)
            nn_arch_init(*m, (uint64_t)o->seed);
    }
    if (err)
        return wk_cmd_prefix(ei, err, "model '%s': ", o->model);
    return DP_OK;
}

static json_t *wk_train_summary(const struct wk_train_opts *o, const struct nn_train_cfg *cfg,
                                const struct dp_model *m, const struct nn_dataset *train,
                                const struct nn_dataset *test, const struct nn_train_result *res)
{
    return json_pack(
        "{s:s, s:i, s:i, s:i, s:I, s:I, s:i, s:i, s:f, s:f, s:f, s:f, s:f, s:f, s:I}", "model",
        o->model, "epochs", cfg->epochs, "batch", cfg->batch, "threads", omp_get_max_threads(),
        "seed", (json_int_t)o->seed, "params", (json_int_t)dp_model_n_trainable(m), "train_images",
        train->n, "test_images", test->n, "train_loss", res->last.train_loss, "train_accuracy",
        res->last.train_acc, "test_loss", res->last.test_loss, "test_accuracy", res->last.test_acc,
        "train_images_per_second", res->train_images_per_s, "train_seconds", res->train_seconds,
        "peak_rss_bytes", (json_int_t)wk_peak_rss());
}

enum dp_err wk_train(const struct wk_train_opts *o, const struct wk_hooks *h, json_t **summary,
                     struct dp_errinfo *ei)
{
    if (summary != NULL)
        *summary = NULL;
    enum dp_err err = wk_train_check(o, ei);
    if (err)
        return err;
    struct nn_dataset train = {0}, test = {0};
    struct dp_model *m = NULL;
    struct nn_train_resume resume = {0};
    struct nn_train_cfg cfg = wk_train_cfg(o);

    wk_cmd_threads(o->threads);
    nn_cpu_flush_denormals();
    err = wk_train_data(o, &train, &test, ei);
    if (!err)
        err = wk_train_model(o, &train, &test, &m, ei);
    if (err)
        goto out;
    if (!o->quiet)
        fprintf(stderr, "train: %s, %zu parameters, %d training and %d test images, %d threads\n",
                o->model, dp_model_n_trainable(m), train.n, test.n, omp_get_max_threads());

    struct wk_train_run run = {o, h, m, wk_train_digest(o)};
    struct nn_train_hooks hooks;
    memset(&hooks, 0, sizeof(hooks));
    hooks.on_epoch = wk_on_epoch;
    hooks.on_epoch_end = wk_train_epoch_end;
    hooks.stop_fn = wk_train_stop;
    hooks.ud = &run;
    if (o->resume && o->checkpoint != NULL && wk_file_exists(o->checkpoint)) {
        err = nn_train_state_load(o->checkpoint, m, run.digest, &resume, ei);
        if (err) {
            wk_cmd_prefix(ei, err, "--resume: ");
            goto out;
        }
        if (!o->quiet)
            fprintf(stderr, "train: resumed from %s after epoch %d\n", o->checkpoint,
                    resume.start_epoch);
        cfg.resume = &resume;
    }
    struct nn_train_result res;
    err = nn_train(m, &train, &test, &cfg, &hooks, &res, ei);
    if (!err && res.steps == 0 && cfg.resume != NULL) {
        /* The checkpoint was of the last epoch: only the summary is left. */
        err = wk_train_eval(m, &train, &test, cfg.batch, &res, ei);
    }
    if (err)
        goto out;
    if (o->out != NULL) {
        json_t *meta = json_pack("{s:s}", "trained_on", o->data ? o->data : "synthetic");
        err = dp_model_save(m, o->out, meta, ei);
        json_decref(meta);
        if (err) {
            wk_cmd_prefix(ei, err, "writing %s: ", o->out);
            goto out;
        }
    }
    if (summary != NULL) {
        *summary = wk_train_summary(o, &cfg, m, &train, &test, &res);
        if (*summary == NULL)
            err = dp_errinfo_set(ei, DP_ENOMEM, "out of memory writing the summary");
    }
out:
    nn_train_state_release(&resume);
    dp_model_free(m);
    nn_dataset_free(&train);
    nn_dataset_free(&test);
    return err;
}

int wk_train_main(int argc, char **argv)
{
    struct wk_train_opts o;
    wk_train_opts_init(&o);
    int rc = wk_flags_parse("train", wk_flags, WK_N_FLAGS, &o, argc, argv);
    if (rc > 0)
        wk_train_help(stdout);
    if (rc != 0)
        return rc > 0 ? WK_EXIT_OK : WK_EXIT_USAGE;
    struct dp_errinfo ei = {DP_OK, ""};
    enum dp_err err = wk_train_check(&o, &ei);
    if (err) {
        fprintf(stderr, "train: %s\n", dp_errinfo_msg(&ei, err));
        return WK_EXIT_USAGE;
    }
    json_t *sum = NULL;
    err = wk_train(&o, NULL, &sum, &ei);
    if (!err && json_dumpf(sum, stdout, JSON_COMPACT | JSON_REAL_PRECISION(7)) != 0)
        err = dp_errinfo_set(&ei, DP_ENOMEM, "out of memory writing the summary");
    json_decref(sum);
    if (err) {
        fprintf(stderr, "train: %s%s\n", err == DP_EINTERRUPTED ? "stopped: " : "",
                dp_errinfo_msg(&ei, err));
        return wk_cmd_exit_status(err);
    }
    fputc('\n', stdout);
    fflush(stdout);
    return WK_EXIT_OK;
}
