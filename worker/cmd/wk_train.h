/*
 * `dnnpress-worker train`: training. Loads data and a model (built-in name
 * or checkpoint), trains, and optionally writes a safetensors checkpoint;
 * the CLI prints a progress line per epoch on stderr and a one-line JSON
 * summary on stdout. The shape of every command is in wk_cmd.h.
 */
#ifndef DP_WORKER_CMD_WK_TRAIN_H
#define DP_WORKER_CMD_WK_TRAIN_H

#include <jansson.h>

#include "common/err.h"
#include "worker/cmd/wk_hooks.h"

/* One field per flag of `train` (same names; booleans are 0/1). */
struct wk_train_opts {
    const char *model;      /* built-in architecture, .safetensors or .onnx file */
    const char *data;       /* "idx:DIR", "cifar:DIR", "npy:DIR"; NULL with synthetic */
    long synthetic;         /* N random 3x32x32 images instead of data; 0: none */
    const char *out;        /* write the trained model here; NULL: do not */
    const char *checkpoint; /* the whole training state after every epoch; NULL: none */
    long resume;            /* continue from checkpoint when it exists */
    const char *optim;      /* "sgd" or "adam" */
    const char *sched;      /* "const", "step" or "cosine" */
    long epochs, batch, threads, seed, limit_train, limit_test, warmup, step_epochs;
    long nesterov, augment, quiet, profile, im2col;
    double lr, momentum, wd, gamma, min_lr;
};

/* Sets o to the defaults of train's flag table. */
void wk_train_opts_init(struct wk_train_opts *o);

/*
 * Sets the fields a job may choose (epochs, lr, batch, seed, optim,
 * momentum, wd, sched, warmup, augment, nesterov) from obj (borrowed; its
 * strings stay borrowed). obj may be NULL or null. DP_EINVAL naming the
 * field as "<where>.<name>" when a member is unknown, mistyped or out of
 * bounds.
 */
enum dp_err wk_train_opts_from_json(struct wk_train_opts *o, const json_t *obj, const char *where,
                                    struct dp_errinfo *ei);

/* DP_EINVAL when the options cannot make a run (a usage error); no I/O. */
enum dp_err wk_train_check(const struct wk_train_opts *o, struct dp_errinfo *ei);

/*
 * Trains as o says, with hooks h (NULL: none). *summary (may be NULL: not
 * built) receives the run's JSON summary (test_accuracy,
 * train_images_per_second, peak_rss_bytes, ...), owned by the caller.
 * Returns DP_EINVAL for usage errors (wk_train_check), DP_EINTERRUPTED when
 * h->stop asked (the last checkpoint is on disk), or the failure of the
 * run with ei naming it. Any thread; it sets that thread's OpenMP team.
 */
enum dp_err wk_train(const struct wk_train_opts *o, const struct wk_hooks *h, json_t **summary,
                     struct dp_errinfo *ei);

/* The CLI; returns the process exit status (0 ok, 1 failure, 2 usage). */
int wk_train_main(int argc, char **argv);

#endif
