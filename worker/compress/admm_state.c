/*
 * The ADMM engine's whole-state checkpoint: one safetensors file holding
 * the weights, Z, U, the mask, the optimizer moments of the running step
 * and the last accepted progressive stage as flat F32 tensors laid out like
 * the model's block, and everything else (position in the plan, rho and
 * rates per target, pattern libraries, trace, accuracies) as JSON in the
 * metadata under "admm_state". Written atomically (dp_st_write: temporary
 * file, fsync, rename), so a crash leaves the previous checkpoint whole.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "common/alloc.h"
#include "common/safetensors.h"
#include "worker/compress/admm_int.h"
#include "worker/nn/train_state.h"

/* 2: the validation split's accuracies, the plan's step lengths (a
 * converged stage moves epochs to its retraining), per-stage automatic
 * rates, dual residuals and support changes, the best retraining epoch. */
#define ADMM_STATE_VERSION 2
#define ADMM_STATE_KEY     "admm_state"

static json_t *admm_state_targets(const struct admm_ctx *c)
{
    json_t *a = json_array();
    for (int k = 0; a != NULL && k < c->n_t; k++) {
        const struct admm_target *t = &c->t[k];
        json_t *lib = json_array();
        for (int i = 0; lib != NULL && i < t->p.n_library; i++)
            json_array_append_new(lib, json_integer(t->p.library[i]));
        json_t *sr = json_array();
        for (int i = 0; sr != NULL && i < c->spec->stages; i++)
            json_array_append_new(sr, json_real(t->stage_rate[i]));
        json_array_append_new(
            a, json_pack("{s:s, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:o, s:o}", "layer",
                         c->m->layers[t->layer].name, "rho", t->rho, "rate", t->p.rate, "base_rate",
                         t->base_rate, "conn_rate", t->conn_rate, "resid", t->resid, "dual",
                         t->dual, "moved", t->moved, "library", lib, "stage_rates", sr));
    }
    return a;
}

/* Each step's length and whether it was skipped: the plan as it stands. */
static json_t *admm_state_steps(const struct admm_ctx *c)
{
    json_t *a = json_array();
    for (int i = 0; a != NULL && i < c->n_steps; i++)
        json_array_append_new(a, json_pack("[i, b]", c->steps[i].epochs, c->steps[i].skipped));
    return a;
}

enum dp_err admm_state_save(const struct admm_ctx *c, const char *path, int si, int ep,
                            const struct nn_optim *opt, struct dp_errinfo *ei)
{
    const struct dp_model *m = c->m;
    /* Between steps, the moments the next W-step continues from. */
    struct nn_optim kept;
    if (opt == NULL && c->have_res) {
        memset(&kept, 0, sizeof(kept));
        kept.m1 = c->res_m1;
        kept.m2 = c->res_m2;
        kept.t = c->res_t;
        opt = &kept;
    }
    char digest[24];
    snprintf(digest, sizeof(digest), "%016" PRIx64, dp_spec_digest(c->spec));
    json_t *st = json_pack(
        "{s:i, s:s, s:I, s:i, s:i, s:i, s:b, s:b, s:b, s:i, s:i, s:i, s:f, s:f, s:f, s:f, s:f, "
        "s:I, s:b, s:o, s:O, s:O, s:O?, s:b, s:f, s:f, s:f, s:i, s:o, s:f, s:i}",
        "version", ADMM_STATE_VERSION, "spec_digest", digest, "n_floats", (json_int_t)m->n_floats,
        "step", si, "epoch", ep, "n_steps", c->n_steps, "mask_on", c->mask_on, "quant_on",
        c->quant_on, "halted", c->halted, "best_stage", c->best_stage, "epochs_done",
        c->epochs_done, "epochs_offset", c->epochs_offset, "dense_acc", c->dense_acc, "last_loss",
        c->last_loss, "last_train_acc", c->last_train_acc, "last_val_acc", c->last_val_acc,
        "wall_seconds", admm_wall_seconds(c), "opt_t", (json_int_t)(opt != NULL ? opt->t : 0),
        "have_opt", opt != NULL, "targets", admm_state_targets(c), "trace", c->trace, "stages",
        c->stages, "auto", c->auto_info, "shadow_on", c->shadow_on, "dense_val_acc",
        c->dense_val_acc, "last_lr", c->last_lr, "val_fraction", c->spec->val_fraction,
        "spare_epochs", c->spare_epochs, "steps", admm_state_steps(c), "rbest_acc", c->rbest_acc,
        "rbest_epoch", c->rbest_epoch);
    /* Circulant rules: whether the model is in its converted form (the
     * blocks below are laid out like the converted model then). */
    if (st != NULL && c->converted)
        json_object_set_new(st, "converted", json_true());
    const size_t flags = JSON_COMPACT | JSON_REAL_PRECISION(17);
    const size_t len = st != NULL ? json_dumpb(st, NULL, 0, flags) : 0;
    char *text = len > 0 ? dp_malloc(len + 1) : NULL;
    if (text != NULL && json_dumpb(st, text, len, flags) == len)
        text[len] = '\0';
    else {
        dp_free(text);
        text = NULL;
    }
    json_decref(st);
    json_t *meta = text != NULL ? json_pack("{s:s}", ADMM_STATE_KEY, text) : NULL;
    dp_free(text);
    if (meta == NULL)
        return dp_errinfo_set(ei, DP_ENOMEM, "out of memory for the checkpoint");
    const float *const blocks[8] = {m->data,
                                    c->z,
                                    c->u,
                                    c->mask,
                                    opt != NULL ? opt->m1 : NULL,
                                    opt != NULL ? opt->m2 : NULL,
                                    c->best,
                                    c->rbest_epoch > 0 ? c->rbest : NULL};
    const char *const names[8] = {"w", "z", "u", "mask", "m1", "m2", "best", "rbest"};
    enum dp_err err = nn_state_write_blocks(path, names, blocks, 8, m->n_floats, meta, ei);
    json_decref(meta);
    return err;
}

static enum dp_err admm_state_bad(struct dp_errinfo *ei, const char *path, const char *what)
{
    return dp_errinfo_set(ei, DP_EFORMAT, "%s: not a checkpoint of this run: %s", path, what);
}

static double admm_state_num(const json_t *o, const char *key)
{
    const json_t *v = json_object_get(o, key);
    return json_is_number(v) ? json_number_value(v) : 0.0;
}

enum dp_err admm_state_load(struct admm_ctx *c, const char *path, struct dp_errinfo *ei)
{
    struct dp_st_file *f = NULL;
    json_t *st = NULL;
    size_t n = c->m->n_floats; /* again after a conversion below */
    enum dp_err err = dp_st_read(path, (size_t)1 << 34, &f, ei);
    if (err)
        return err;
    const char *text = dp_st_meta_get(f, ADMM_STATE_KEY);
    st = text != NULL ? json_loads(text, JSON_REJECT_DUPLICATES, NULL) : NULL;
    char digest[24];
    snprintf(digest, sizeof(digest), "%016" PRIx64, dp_spec_digest(c->spec));
    const json_t *tg = json_object_get(st, "targets");
    if (st == NULL) {
        err = admm_state_bad(ei, path, "no readable \"admm_state\" metadata");
    } else if (admm_state_num(st, "version") != ADMM_STATE_VERSION) {
        err = dp_errinfo_set(ei, DP_EFORMAT,
                             "%s: ADMM checkpoint version %g, but this build reads version %d "
                             "only (it holds the validation split, convergence and budget "
                             "state); delete the file to start the run over",
                             path, admm_state_num(st, "version"), ADMM_STATE_VERSION);
    } else if (!json_is_string(json_object_get(st, "spec_digest")) ||
               strcmp(json_string_value(json_object_get(st, "spec_digest")), digest) != 0) {
        err = admm_state_bad(ei, path, "it was written under a different spec");
    } else if (json_is_true(json_object_get(st, "converted")) && !c->converted &&
               c->spec->circ_from == DP_SPEC_CIRC_NONE) {
        err = admm_state_bad(ei, path, "it holds circulant layers the spec does not ask for");
    } else if (json_is_true(json_object_get(st, "converted")) && !c->converted &&
               (err = admm_circ_convert(c, 1, ei)) != DP_OK) {
        /* The run had converted its model: the same conversion (weights
         * from the checkpoint below) lays the model out like the blocks. */
    } else if (admm_state_num(st, "n_floats") != (double)c->m->n_floats ||
               admm_state_num(st, "n_steps") != c->n_steps || !json_is_array(tg) ||
               json_array_size(tg) != (size_t)c->n_t) {
        err = admm_state_bad(ei, path, "the model or the plan differs");
    }
    n = c->m->n_floats;
    for (int k = 0; !err && k < c->n_t; k++) {
        struct admm_target *t = &c->t[k];
        const json_t *o = json_array_get(tg, (size_t)k);
        const json_t *nm = json_object_get(o, "layer"), *lib = json_object_get(o, "library");
        if (!json_is_string(nm) || strcmp(json_string_value(nm), c->m->layers[t->layer].name) ||
            !json_is_array(lib) || json_array_size(lib) > PROJ_MAX_LIBRARY) {
            err = admm_state_bad(ei, path, "its constrained layers differ");
            break;
        }
        t->rho = admm_state_num(o, "rho");
        t->p.rate = admm_state_num(o, "rate");
        t->base_rate = admm_state_num(o, "base_rate");
        t->conn_rate = admm_state_num(o, "conn_rate");
        t->resid = admm_state_num(o, "resid");
        t->dual = admm_state_num(o, "dual");
        t->moved = admm_state_num(o, "moved");
        const json_t *sr = json_object_get(o, "stage_rates");
        for (int i = 0; i < c->spec->stages && i < ADMM_MAX_STAGES; i++)
            t->stage_rate[i] = json_number_value(json_array_get(sr, (size_t)i));
        t->p.n_library = (int)json_array_size(lib);
        for (int i = 0; i < t->p.n_library; i++)
            t->p.library[i] = (uint16_t)json_integer_value(json_array_get(lib, (size_t)i));
        if (!(t->p.rate >= 1.0) || !(t->base_rate >= 1.0))
            err = admm_state_bad(ei, path, "a rate is below 1");
    }
    const json_t *steps = json_object_get(st, "steps");
    if (!err && (!json_is_array(steps) || json_array_size(steps) != (size_t)c->n_steps))
        err = admm_state_bad(ei, path, "its plan has another number of steps");
    for (int i = 0; !err && i < c->n_steps; i++) {
        const json_t *e = json_array_get(steps, (size_t)i);
        const json_t *ne = json_array_get(e, 0);
        if (!json_is_integer(ne) || json_integer_value(ne) < 0 || json_integer_value(ne) > 100000) {
            err = admm_state_bad(ei, path, "a step of its plan has no valid length");
            break;
        }
        c->steps[i].epochs = (int)json_integer_value(ne);
        c->steps[i].skipped = json_is_true(json_array_get(e, 1));
    }
    const int si = (int)admm_state_num(st, "step"), ep = (int)admm_state_num(st, "epoch");
    if (!err &&
        (si < 0 || si > c->n_steps || (si < c->n_steps && (ep < 0 || ep > c->steps[si].epochs))))
        err = admm_state_bad(ei, path, "its position is outside the plan");
    const int have_opt = json_is_true(json_object_get(st, "have_opt"));
    if (!err && ep > 0 && !have_opt)
        err = admm_state_bad(ei, path, "a position inside a step without optimizer state");
    if (!err)
        err = dp_st_read_f32(f, "w", c->m->data, n, ei);
    if (!err)
        err = dp_st_read_f32(f, "z", c->z, n, ei);
    if (!err)
        err = dp_st_read_f32(f, "u", c->u, n, ei);
    if (!err)
        err = dp_st_read_f32(f, "mask", c->mask, n, ei);
    if (!err && dp_st_find(f, "best") != NULL)
        err = nn_state_read_block(f, "best", &c->best, n, ei);
    c->rbest_epoch = (int)admm_state_num(st, "rbest_epoch");
    c->rbest_acc = admm_state_num(st, "rbest_acc");
    if (!err && c->rbest_epoch > 0)
        err = dp_st_find(f, "rbest") != NULL
                  ? nn_state_read_block(f, "rbest", &c->rbest, n, ei)
                  : admm_state_bad(ei, path, "a best retraining epoch without its weights");
    if (!err && have_opt) {
        err = nn_state_read_block(f, "m1", &c->res_m1, n, ei);
        if (!err && dp_st_find(f, "m2") != NULL)
            err = nn_state_read_block(f, "m2", &c->res_m2, n, ei);
        c->res_t = (long)admm_state_num(st, "opt_t");
        c->have_res = !err;
    }
    if (!err) {
        c->si = si;
        c->ep = ep;
        c->mask_on = json_is_true(json_object_get(st, "mask_on"));
        c->quant_on = json_is_true(json_object_get(st, "quant_on"));
        c->shadow_on = json_is_true(json_object_get(st, "shadow_on"));
        c->halted = json_is_true(json_object_get(st, "halted"));
        c->best_stage = (int)admm_state_num(st, "best_stage");
        c->epochs_done = (int)admm_state_num(st, "epochs_done");
        c->epochs_offset = (int)admm_state_num(st, "epochs_offset");
        c->dense_acc = admm_state_num(st, "dense_acc");
        c->last_loss = admm_state_num(st, "last_loss");
        c->last_train_acc = admm_state_num(st, "last_train_acc");
        c->last_val_acc = admm_state_num(st, "last_val_acc");
        c->last_lr = admm_state_num(st, "last_lr");
        c->dense_val_acc = admm_state_num(st, "dense_val_acc");
        c->spare_epochs = (int)admm_state_num(st, "spare_epochs");
        c->wall_prev = admm_state_num(st, "wall_seconds");
        json_t *tr = json_object_get(st, "trace"), *sg = json_object_get(st, "stages");
        json_t *au = json_object_get(st, "auto");
        json_array_clear(c->trace);
        json_array_clear(c->stages);
        if (json_is_array(tr))
            json_array_extend(c->trace, tr);
        if (json_is_array(sg))
            json_array_extend(c->stages, sg);
        json_decref(c->auto_info);
        c->auto_info = json_is_object(au) ? json_incref(au) : NULL;
    }
    json_decref(st);
    dp_st_free(f);
    return err;
}
