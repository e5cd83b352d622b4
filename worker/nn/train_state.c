/*
 * Training checkpoints (see train_state.h).
 */
#include "worker/nn/train_state.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "common/alloc.h"
#include "common/safetensors.h"

#define TRAIN_STATE_KEY "train_state"

enum dp_err nn_train_state_save(const char *path, const struct dp_model *m,
                                const struct nn_optim *opt, int epochs_done, uint64_t digest,
                                struct dp_errinfo *ei)
{
    char meta_text[256];
    snprintf(meta_text, sizeof(meta_text),
             "{\"version\":1,\"epoch\":%d,\"opt_t\":%ld,\"n_floats\":%zu,\"digest\":\"%016" PRIx64
             "\"}",
             epochs_done, opt->t, m->n_floats, digest);
    json_t *meta = json_pack("{s:s}", TRAIN_STATE_KEY, meta_text);
    if (meta == NULL)
        return dp_errinfo_set(ei, DP_ENOMEM, "out of memory for the checkpoint");
    const float *const blocks[3] = {m->data, opt->m1, opt->m2};
    const char *const names[3] = {"w", "m1", "m2"};
    enum dp_err err = nn_state_write_blocks(path, names, blocks, 3, m->n_floats, meta, ei);
    json_decref(meta);
    return err;
}

enum dp_err nn_state_write_blocks(const char *path, const char *const *names,
                                  const float *const *blocks, int n, size_t numel,
                                  const json_t *meta, struct dp_errinfo *ei)
{
    struct dp_st_tensor ts[16];
    if (n > (int)(sizeof(ts) / sizeof(ts[0])))
        return dp_errinfo_set(ei, DP_EINVAL, "%s: %d blocks, at most 16", path, n);
    int k = 0;
    for (int i = 0; i < n; i++) {
        if (blocks[i] == NULL)
            continue;
        memset(&ts[k], 0, sizeof(ts[k]));
        ts[k].name = names[i];
        ts[k].dtype = DP_ST_F32;
        ts[k].ndim = 1;
        ts[k].shape[0] = (int64_t)numel;
        ts[k].data = blocks[i];
        k++;
    }
    return dp_st_write(path, ts, k, meta, ei);
}

enum dp_err nn_state_read_block(const struct dp_st_file *f, const char *name, float **dst,
                                size_t numel, struct dp_errinfo *ei)
{
    if (*dst == NULL) {
        *dst = dp_malloc(dp_size_mul(numel, sizeof(float)));
        if (*dst == NULL)
            return dp_errinfo_set(ei, DP_ENOMEM, "out of memory for the checkpoint's '%s'", name);
    }
    return dp_st_read_f32(f, name, *dst, numel, ei);
}

void nn_train_state_release(struct nn_train_resume *res)
{
    dp_free((void *)res->m1);
    dp_free((void *)res->m2);
    memset(res, 0, sizeof(*res));
}

enum dp_err nn_train_state_load(const char *path, struct dp_model *m, uint64_t digest,
                                struct nn_train_resume *res, struct dp_errinfo *ei)
{
    memset(res, 0, sizeof(*res));
    struct dp_st_file *f = NULL;
    enum dp_err err = dp_st_read(path, (size_t)1 << 34, &f, ei);
    if (err)
        return err;
    const char *text = dp_st_meta_get(f, TRAIN_STATE_KEY);
    json_t *st = text != NULL ? json_loads(text, 0, NULL) : NULL;
    char want[24];
    snprintf(want, sizeof(want), "%016" PRIx64, digest);
    const json_t *dg = json_object_get(st, "digest"), *ep = json_object_get(st, "epoch");
    const json_t *nf = json_object_get(st, "n_floats"), *t = json_object_get(st, "opt_t");
    if (st == NULL || !json_is_string(dg) || !json_is_integer(ep) || !json_is_integer(nf) ||
        !json_is_integer(t))
        err = dp_errinfo_set(ei, DP_EFORMAT, "%s: not a training checkpoint", path);
    else if (strcmp(json_string_value(dg), want) != 0)
        err = dp_errinfo_set(ei, DP_EFORMAT,
                             "%s: written by a run with other settings (model, data, epochs, "
                             "optimizer or seed differ)",
                             path);
    else if ((size_t)json_integer_value(nf) != m->n_floats || json_integer_value(ep) < 0 ||
             json_integer_value(t) < 0)
        err = dp_errinfo_set(ei, DP_EFORMAT, "%s: written for another model", path);
    float *m1 = NULL, *m2 = NULL;
    if (!err)
        err = dp_st_read_f32(f, "w", m->data, m->n_floats, ei);
    if (!err)
        err = nn_state_read_block(f, "m1", &m1, m->n_floats, ei);
    if (!err && dp_st_find(f, "m2") != NULL)
        err = nn_state_read_block(f, "m2", &m2, m->n_floats, ei);
    if (!err) {
        res->start_epoch = (int)json_integer_value(ep);
        res->t = (long)json_integer_value(t);
        res->m1 = m1;
        res->m2 = m2;
    } else {
        dp_free(m1);
        dp_free(m2);
    }
    json_decref(st);
    dp_st_free(f);
    return err;
}
