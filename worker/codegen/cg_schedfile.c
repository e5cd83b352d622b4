/*
 * schedule.json (see cg_schedfile.h), through jansson.
 */
#include "worker/codegen/cg_schedfile.h"

#include <jansson.h>
#include <string.h>

#define CG_SCHEDFILE_VERSION 1
#define CG_SCHEDFILE_CANDS   160

static json_t *cg_sched_json(const char *name, const struct cg_sched *sc)
{
    if (sc->kern == CG_KERN_PANEL)
        return json_pack("{s:s, s:s, s:i, s:i, s:i, s:i, s:b}", "layer", name, "kernel", "panel",
                         "group", sc->gw, "nb", sc->nb, "r", sc->r, "rows", sc->rows, "prefetch",
                         sc->prefetch);
    json_t *j = json_pack("{s:s, s:s}", "layer", name, "kernel", cg_kern_name(sc->kern));
    if (j != NULL && sc->vl > 0) {
        json_object_set_new(j, "nv", json_integer(sc->nv));
        json_object_set_new(j, "sets", json_integer(sc->sets));
        json_object_set_new(j, "unroll", json_integer(sc->unroll));
        json_object_set_new(j, "shift", json_boolean(sc->shift));
        json_object_set_new(j, "packed", json_boolean(sc->packed));
    }
    if (j != NULL && sc->sparse)
        json_object_set_new(j, "sparse", json_true());
    return j;
}

enum dp_err cg_schedfile_write(FILE *f, const struct cg_plan *p, const char *target,
                               const struct cg_schedule *s, struct dp_errinfo *ei)
{
    json_t *paths = json_array();
    json_t *root = json_pack("{s:i, s:s, s:i, s:o, s:o}", "version", CG_SCHEDFILE_VERSION, "target",
                             target, "threads", s->threads, "isa",
                             s->prefer >= 0 ? json_string(s->path[s->prefer].isa) : json_null(),
                             "paths", paths);
    enum dp_err err = root == NULL ? DP_ENOMEM : DP_OK;
    for (int i = 0; !err && i < s->n_paths; i++) {
        json_t *layers = json_array();
        json_t *path = json_pack("{s:s, s:i, s:o}", "isa", s->path[i].isa, "vl", s->path[i].vl,
                                 "layers", layers);
        if (path == NULL || json_array_append_new(paths, path) != 0) {
            err = DP_ENOMEM;
            break;
        }
        for (int k = 0; k < p->n_steps; k++) {
            if (p->steps[k].kind != CG_K_CONV)
                continue;
            json_t *l = cg_sched_json(p->m->layers[p->steps[k].layer].name, &s->path[i].steps[k]);
            if (l == NULL || json_array_append_new(layers, l) != 0) {
                err = DP_ENOMEM;
                break;
            }
        }
    }
    if (err) {
        json_decref(root);
        return dp_errinfo_set(ei, DP_ENOMEM, "out of memory writing schedule.json");
    }
    const int rc = json_dumpf(root, f, JSON_INDENT(1) | JSON_ENSURE_ASCII);
    json_decref(root);
    if (rc != 0 || fputc('\n', f) == EOF)
        return dp_errinfo_set(ei, DP_EIO, "writing schedule.json failed");
    return DP_OK;
}

/* An integer field of o in [lo, hi] into *v; a missing one is 0 when
 * optional. */
static enum dp_err cg_int_field(const json_t *o, const char *where, const char *key, int lo, int hi,
                                int optional, int *v, struct dp_errinfo *ei)
{
    const json_t *j = json_object_get(o, key);
    if (j == NULL && optional) {
        *v = 0;
        return DP_OK;
    }
    if (json_is_boolean(j)) {
        *v = json_is_true(j);
        return DP_OK;
    }
    if (!json_is_integer(j) || json_integer_value(j) < lo || json_integer_value(j) > hi)
        return dp_errinfo_set(ei, DP_EINVAL, "schedule: %s.%s must be an integer in [%d, %d]",
                              where, key, lo, hi);
    *v = (int)json_integer_value(j);
    return DP_OK;
}

/* Layer entry e of path i for step s into *out: one of the schedules the
 * compiler generates for s (cg_sched_candidates), else DP_EINVAL. */
static enum dp_err cg_parse_layer(const json_t *e, const char *where, const struct cg_plan *p,
                                  const struct cg_step *s, int vl, int gw, int threads,
                                  struct cg_sched *out, struct dp_errinfo *ei)
{
    const char *name = p->m->layers[s->layer].name;
    const json_t *jl = json_object_get(e, "layer"), *jk = json_object_get(e, "kernel");
    if (!json_is_object(e) || !json_is_string(jl) || strcmp(json_string_value(jl), name) != 0)
        return dp_errinfo_set(ei, DP_EINVAL,
                              "schedule: %s.layer must be \"%s\" (a schedule of another model?)",
                              where, name);
    struct cg_sched c = {.vl = vl};
    enum dp_err err = DP_OK;
    if (json_is_string(jk) && strcmp(json_string_value(jk), "panel") == 0) {
        c.kern = CG_KERN_PANEL;
        err = cg_int_field(e, where, "group", 1, 1 << 16, 0, &c.gw, ei);
        if (!err)
            err = cg_int_field(e, where, "nb", 1, 64, 0, &c.nb, ei);
        if (!err)
            err = cg_int_field(e, where, "r", 1, 64, 0, &c.r, ei);
        if (!err)
            err = cg_int_field(e, where, "rows", 0, 1 << 16, 0, &c.rows, ei);
        if (!err)
            err = cg_int_field(e, where, "prefetch", 0, 1, 0, &c.prefetch, ei);
    } else if (json_is_string(jk) && strcmp(json_string_value(jk), "spatial") == 0) {
        c.kern = CG_KERN_SPATIAL;
        const int opt = vl <= 0;
        err = cg_int_field(e, where, "nv", 1, 64, opt, &c.nv, ei);
        if (!err)
            err = cg_int_field(e, where, "sets", 1, 64, opt, &c.sets, ei);
        if (!err)
            err = cg_int_field(e, where, "unroll", 1, 2, opt, &c.unroll, ei);
        if (!err)
            err = cg_int_field(e, where, "shift", 0, 1, opt, &c.shift, ei);
        if (!err)
            err = cg_int_field(e, where, "packed", 0, 1, opt, &c.packed, ei);
    } else {
        return dp_errinfo_set(ei, DP_EINVAL, "schedule: %s.kernel must be \"panel\" or \"spatial\"",
                              where);
    }
    if (!err)
        err = cg_int_field(e, where, "sparse", 0, 1, 1, &c.sparse, ei);
    if (err)
        return err;
    struct cg_sched cand[CG_SCHEDFILE_CANDS];
    const int n = cg_sched_candidates(s, vl, gw, threads, cand, CG_SCHEDFILE_CANDS);
    for (int i = 0; i < n; i++) {
        if (cg_sched_equal(&cand[i], &c)) {
            *out = c;
            return DP_OK;
        }
    }
    return dp_errinfo_set(ei, DP_EINVAL,
                          "schedule: %s (layer '%s') is not a schedule this compiler generates "
                          "for the layer on path vl %d",
                          where, name, vl);
}

static enum dp_err cg_parse_paths(const json_t *root, const struct cg_plan *p,
                                  struct cg_schedule *s, struct dp_errinfo *ei)
{
    const json_t *paths = json_object_get(root, "paths");
    if (!json_is_array(paths) || (int)json_array_size(paths) != s->n_paths)
        return dp_errinfo_set(ei, DP_EINVAL, "schedule: paths must be an array of %d path(s)",
                              s->n_paths);
    for (int i = 0; i < s->n_paths; i++) {
        const json_t *jp = json_array_get(paths, (size_t)i);
        const json_t *isa = json_object_get(jp, "isa"), *layers = json_object_get(jp, "layers");
        if (!json_is_object(jp) || !json_is_string(isa) ||
            strcmp(json_string_value(isa), s->path[i].isa) != 0)
            return dp_errinfo_set(ei, DP_EINVAL, "schedule: paths[%d].isa must be \"%s\"", i,
                                  s->path[i].isa);
        if (!json_is_array(layers))
            return dp_errinfo_set(ei, DP_EINVAL, "schedule: paths[%d].layers must be an array", i);
        size_t e = 0;
        for (int k = 0; k < p->n_steps; k++) {
            if (p->steps[k].kind != CG_K_CONV)
                continue;
            char where[64];
            snprintf(where, sizeof(where), "paths[%d].layers[%zu]", i, e);
            if (e >= json_array_size(layers))
                return dp_errinfo_set(ei, DP_EINVAL, "schedule: %s is missing", where);
            const int gw = i > 0 ? s->path[0].steps[k].gw : 0;
            enum dp_err err =
                cg_parse_layer(json_array_get(layers, e), where, p, &p->steps[k], s->path[i].vl, gw,
                               s->threads, &s->path[i].steps[k], ei);
            if (err)
                return err;
            e++;
        }
        if (e != json_array_size(layers))
            return dp_errinfo_set(ei, DP_EINVAL,
                                  "schedule: paths[%d].layers has %zu entries, the model %zu "
                                  "convolutions",
                                  i, json_array_size(layers), e);
    }
    return DP_OK;
}

enum dp_err cg_schedfile_parse(const char *text, size_t len, const struct cg_plan *p,
                               const char *target, struct cg_schedule *out, struct dp_errinfo *ei)
{
    memset(out, 0, sizeof(*out));
    if (len > CG_SCHEDFILE_MAX)
        return dp_errinfo_set(ei, DP_EINVAL, "schedule: larger than %u bytes", CG_SCHEDFILE_MAX);
    json_error_t je;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    if (!json_is_object(root)) {
        json_decref(root);
        return dp_errinfo_set(ei, DP_EINVAL, "schedule: not a JSON object (%s, line %d)",
                              root == NULL ? je.text : "another type", je.line);
    }
    int version = 0, threads = 0;
    enum dp_err err = cg_int_field(root, "schedule", "version", 1, 1 << 20, 0, &version, ei);
    if (!err && version != CG_SCHEDFILE_VERSION)
        err = dp_errinfo_set(ei, DP_EINVAL, "schedule: version %d, this compiler reads %d", version,
                             CG_SCHEDFILE_VERSION);
    const json_t *jt = json_object_get(root, "target");
    if (!err && (!json_is_string(jt) || strcmp(json_string_value(jt), target) != 0))
        err =
            dp_errinfo_set(ei, DP_EINVAL, "schedule: target must be \"%s\" (the --target)", target);
    if (!err)
        err = cg_int_field(root, "schedule", "threads", 1, 1024, 0, &threads, ei);
    if (!err)
        err = cg_schedule_default(p, target, threads, out, ei);
    if (!err)
        err = cg_parse_paths(root, p, out, ei);
    const json_t *isa = json_object_get(root, "isa");
    if (!err && !json_is_null(isa)) {
        out->prefer = json_is_string(isa) ? cg_schedule_path(out, json_string_value(isa)) : -1;
        if (out->prefer < 0)
            err = dp_errinfo_set(ei, DP_EINVAL,
                                 "schedule: isa must be null or one of the paths' isa");
    }
    json_decref(root);
    if (err)
        cg_schedule_free(out);
    return err;
}
