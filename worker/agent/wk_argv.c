/*
 * Task -> engine argv (see wk_argv.h). The train parameters a job may set
 * are one table, so what the server accepts in "pretrain" and what reaches
 * the engine are visibly the same list.
 */
#include "worker/agent/wk_argv.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "common/alloc.h"

enum wk_param_kind { WK_P_INT, WK_P_NUM, WK_P_STR, WK_P_BOOL };

struct wk_param {
    const char *field; /* in params.pretrain */
    const char *flag;  /* of `dnnpress-worker train` */
    enum wk_param_kind kind;
};

static const struct wk_param wk_pretrain_params[] = {
    {"epochs", "--epochs", WK_P_INT},
    {"lr", "--lr", WK_P_NUM},
    {"batch", "--batch", WK_P_INT},
    {"seed", "--seed", WK_P_INT},
    {"optim", "--optim", WK_P_STR},
    {"momentum", "--momentum", WK_P_NUM},
    {"wd", "--wd", WK_P_NUM},
    {"sched", "--sched", WK_P_STR},
    {"warmup", "--warmup", WK_P_INT},
    {"augment", "--augment", WK_P_BOOL},
    {"nesterov", "--nesterov", WK_P_BOOL},
};

void wk_argv_free(struct wk_argv *a)
{
    if (a == NULL)
        return;
    for (int i = 0; i < a->n; i++)
        dp_free(a->v[i]);
    dp_free(a->v);
    memset(a, 0, sizeof(*a));
}

static enum dp_err wk_argv_push(struct wk_argv *a, const char *s)
{
    if (a->n + 2 > a->cap) {
        int cap = a->cap ? 2 * a->cap : 32;
        char **nv = dp_realloc(a->v, dp_size_mul((size_t)cap, sizeof(char *)));
        if (nv == NULL)
            return DP_ENOMEM;
        a->v = nv;
        a->cap = cap;
    }
    char *copy = dp_strdup(s);
    if (copy == NULL)
        return DP_ENOMEM;
    a->v[a->n++] = copy;
    a->v[a->n] = NULL;
    return DP_OK;
}

static enum dp_err wk_argv_pair(struct wk_argv *a, const char *flag, const char *value)
{
    enum dp_err err = wk_argv_push(a, flag);
    return err ? err : wk_argv_push(a, value);
}

static enum dp_err wk_argv_long(struct wk_argv *a, const char *flag, long v)
{
    char buf[32];
    snprintf(buf, sizeof(buf), "%ld", v);
    return wk_argv_pair(a, flag, buf);
}

/* A required path: the task loop's bug, not the server's, when missing. */
static enum dp_err wk_argv_path(struct wk_argv *a, const char *flag, const char *path,
                                struct dp_errinfo *ei)
{
    if (path == NULL)
        return dp_errinfo_set(ei, DP_EINVAL, "internal: no local file for %s", flag);
    return wk_argv_pair(a, flag, path);
}

static enum dp_err wk_argv_pretrain(struct wk_argv *a, const json_t *pre, struct dp_errinfo *ei)
{
    if (pre == NULL || json_is_null(pre))
        return DP_OK;
    if (!json_is_object(pre))
        return dp_errinfo_set(ei, DP_EINVAL, "params.pretrain: must be an object");
    const char *key;
    json_t *v;
    json_object_foreach ((json_t *)pre, key, v) {
        const struct wk_param *p = NULL;
        for (size_t i = 0; i < sizeof(wk_pretrain_params) / sizeof(wk_pretrain_params[0]); i++)
            if (strcmp(wk_pretrain_params[i].field, key) == 0)
                p = &wk_pretrain_params[i];
        if (p == NULL)
            return dp_errinfo_set(ei, DP_EINVAL, "params.pretrain.%.64s: not a known parameter",
                                  key);
        char buf[64];
        enum dp_err err = DP_OK;
        switch (p->kind) {
            case WK_P_INT:
                if (!json_is_integer(v))
                    return dp_errinfo_set(ei, DP_EINVAL, "params.pretrain.%s: must be an integer",
                                          key);
                snprintf(buf, sizeof(buf), "%lld", (long long)json_integer_value(v));
                err = wk_argv_pair(a, p->flag, buf);
                break;
            case WK_P_NUM:
                if (!json_is_number(v) || !isfinite(json_number_value(v)))
                    return dp_errinfo_set(ei, DP_EINVAL, "params.pretrain.%s: must be a number",
                                          key);
                snprintf(buf, sizeof(buf), "%.17g", json_number_value(v));
                err = wk_argv_pair(a, p->flag, buf);
                break;
            case WK_P_STR:
                if (!json_is_string(v))
                    return dp_errinfo_set(ei, DP_EINVAL, "params.pretrain.%s: must be a string",
                                          key);
                err = wk_argv_pair(a, p->flag, json_string_value(v));
                break;
            case WK_P_BOOL:
                if (!json_is_boolean(v))
                    return dp_errinfo_set(ei, DP_EINVAL,
                                          "params.pretrain.%s: must be true or false", key);
                if (json_is_true(v))
                    err = wk_argv_push(a, p->flag);
                break;
        }
        if (err)
            return err;
    }
    return DP_OK;
}

static enum dp_err wk_argv_common(struct wk_argv *a, const struct wk_run_opts *o)
{
    enum dp_err err = DP_OK;
    if (o->threads > 0)
        err = wk_argv_long(a, "--threads", o->threads);
    if (!err && o->limit_train > 0)
        err = wk_argv_long(a, "--limit-train", o->limit_train);
    if (!err && o->limit_test > 0)
        err = wk_argv_long(a, "--limit-test", o->limit_test);
    if (!err)
        err = wk_argv_push(a, "--quiet");
    return err;
}

static enum dp_err wk_argv_checkpoint(struct wk_argv *a, const struct wk_task_files *f,
                                      struct dp_errinfo *ei)
{
    enum dp_err err = wk_argv_path(a, "--checkpoint", f->checkpoint, ei);
    if (!err && f->resume)
        err = wk_argv_push(a, "--resume");
    return err;
}

static enum dp_err wk_argv_train(struct wk_argv *a, const json_t *params,
                                 const struct wk_task_files *f, struct dp_errinfo *ei)
{
    const char *model = f->model != NULL ? f->model : f->arch;
    if (model == NULL)
        return dp_errinfo_set(ei, DP_EINVAL, "inputs.model: neither a file nor an arch");
    enum dp_err err = wk_argv_push(a, "train");
    if (!err)
        err = wk_argv_pair(a, "--model", model);
    if (!err)
        err = wk_argv_path(a, "--data", f->data, ei);
    if (!err) {
        const json_t *seed = json_object_get(params, "seed");
        const json_t *pre = json_object_get(params, "pretrain");
        /* The job-level seed applies unless pretrain names its own. */
        if (json_is_integer(seed) && json_object_get(pre, "seed") == NULL)
            err = wk_argv_long(a, "--seed", (long)json_integer_value(seed));
    }
    if (!err)
        err = wk_argv_pretrain(a, json_object_get(params, "pretrain"), ei);
    if (!err)
        err = wk_argv_path(a, "--out", f->out_model, ei);
    if (!err)
        err = wk_argv_checkpoint(a, f, ei);
    return err;
}

static enum dp_err wk_argv_compress(struct wk_argv *a, const char *phase,
                                    const struct wk_task_files *f, struct dp_errinfo *ei)
{
    enum dp_err err = wk_argv_push(a, "compress");
    if (!err)
        err = wk_argv_pair(a, "--phase", phase);
    if (!err)
        err = wk_argv_path(a, "--spec", f->spec, ei);
    if (!err)
        err = wk_argv_path(a, "--model", f->model, ei);
    if (!err && strcmp(phase, "retrain") == 0)
        err = wk_argv_path(a, "--prev-report", f->prev_report, ei);
    if (!err)
        err = wk_argv_path(a, "--data", f->data, ei);
    if (!err)
        err = wk_argv_path(a, "--out", f->out_model, ei);
    if (!err)
        err = wk_argv_path(a, "--report", f->out_report, ei);
    if (!err)
        err = wk_argv_checkpoint(a, f, ei);
    return err;
}

static enum dp_err wk_argv_export(struct wk_argv *a, const json_t *params,
                                  const struct wk_task_files *f, struct dp_errinfo *ei)
{
    const json_t *ex = json_object_get(params, "export");
    if (ex != NULL && !json_is_null(ex)) {
        if (!json_is_object(ex))
            return dp_errinfo_set(ei, DP_EINVAL, "params.export: must be an object");
        const char *fmt = json_string_value(json_object_get(ex, "format"));
        if (json_object_get(ex, "format") != NULL && (fmt == NULL || strcmp(fmt, "onnx") != 0))
            return dp_errinfo_set(ei, DP_EINVAL,
                                  "params.export.format: only \"onnx\" is supported");
        const json_t *qdq = json_object_get(ex, "qdq");
        if (qdq != NULL && !json_is_boolean(qdq))
            return dp_errinfo_set(ei, DP_EINVAL, "params.export.qdq: must be true or false");
    }
    enum dp_err err = wk_argv_push(a, "export");
    if (!err)
        err = wk_argv_path(a, "--model", f->model, ei);
    if (!err)
        err = wk_argv_path(a, "--out", f->out_onnx, ei);
    if (!err && json_is_true(json_object_get(ex, "qdq")))
        err = wk_argv_push(a, "--qdq");
    /* The compression report, when the task has one, goes into the ONNX metadata. */
    if (!err && f->prev_report != NULL)
        err = wk_argv_pair(a, "--report", f->prev_report);
    return err;
}

enum dp_err wk_argv_build(const char *type, const json_t *params, const struct wk_task_files *f,
                          const struct wk_run_opts *o, struct wk_argv *out, struct dp_errinfo *ei)
{
    memset(out, 0, sizeof(*out));
    if (params != NULL && !json_is_object(params))
        return dp_errinfo_set(ei, DP_EINVAL, "params: must be an object");
    enum dp_err err;
    if (strcmp(type, "train") == 0)
        err = wk_argv_train(out, params, f, ei);
    else if (strcmp(type, "compress") == 0)
        err = wk_argv_compress(out, "admm", f, ei);
    else if (strcmp(type, "retrain") == 0)
        err = wk_argv_compress(out, "retrain", f, ei);
    else if (strcmp(type, "export") == 0)
        err = wk_argv_export(out, params, f, ei);
    else
        err = dp_errinfo_set(ei, DP_EINVAL, "type: '%.32s' is not a task this worker runs", type);
    /* export runs no training: no threads/limits/--quiet flags it would refuse. */
    if (!err && strcmp(type, "export") != 0)
        err = wk_argv_common(out, o);
    if (err == DP_ENOMEM)
        dp_errinfo_set(ei, err, "out of memory building the command line");
    if (err)
        wk_argv_free(out);
    return err;
}
