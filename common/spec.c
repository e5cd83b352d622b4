/*
 * Job spec parsing and validation (see spec.h). Every object is checked
 * against the list of its known keys first, then each field against its
 * type and range, so the first problem found is reported with its path
 * ("layers[1].prune.rate: must be a number >= 1").
 */
#include "common/spec.h"

#include <errno.h>
#include <fnmatch.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "common/alloc.h"
#include "common/utf8.h"

/* ---- Field helpers -------------------------------------------------------- */

static enum dp_err spec_keys(const json_t *obj, const char *path, const char *const *known,
                             struct dp_errinfo *ei)
{
    if (!json_is_object(obj))
        return dp_errinfo_set(ei, DP_EINVAL, "%s: must be an object", path);
    const char *key;
    json_t *v;
    json_object_foreach ((json_t *)obj, key, v) {
        int ok = 0;
        for (size_t i = 0; known[i] != NULL; i++)
            ok |= strcmp(key, known[i]) == 0;
        if (!ok) {
            /* Clipped on a character boundary: the message goes into JSON. */
            char shown[68];
            return dp_errinfo_set(ei, DP_EINVAL, "%s: unknown field '%s'", path,
                                  dp_utf8_clip(shown, sizeof(shown), key));
        }
    }
    return DP_OK;
}

static enum dp_err spec_num(const json_t *obj, const char *key, const char *path, double lo,
                            double hi, double *out, struct dp_errinfo *ei)
{
    json_t *v = json_object_get(obj, key);
    if (v == NULL)
        return DP_OK; /* keep the default */
    if (!json_is_number(v))
        return dp_errinfo_set(ei, DP_EINVAL, "%s.%s: must be a number", path, key);
    double d = json_number_value(v);
    if (!isfinite(d) || d < lo || d > hi)
        return dp_errinfo_set(ei, DP_EINVAL, "%s.%s: %g is outside [%g, %g]", path, key, d, lo, hi);
    *out = d;
    return DP_OK;
}

static enum dp_err spec_int(const json_t *obj, const char *key, const char *path, long lo, long hi,
                            int *out, struct dp_errinfo *ei)
{
    json_t *v = json_object_get(obj, key);
    if (v == NULL)
        return DP_OK;
    if (!json_is_integer(v))
        return dp_errinfo_set(ei, DP_EINVAL, "%s.%s: must be an integer", path, key);
    json_int_t d = json_integer_value(v);
    if (d < lo || d > hi)
        return dp_errinfo_set(ei, DP_EINVAL, "%s.%s: %lld is outside [%ld, %ld]", path, key,
                              (long long)d, lo, hi);
    *out = (int)d;
    return DP_OK;
}

static enum dp_err spec_bool(const json_t *obj, const char *key, const char *path, int *out,
                             struct dp_errinfo *ei)
{
    json_t *v = json_object_get(obj, key);
    if (v == NULL)
        return DP_OK;
    if (!json_is_boolean(v))
        return dp_errinfo_set(ei, DP_EINVAL, "%s.%s: must be true or false", path, key);
    *out = json_is_true(v);
    return DP_OK;
}

/* ---- Sections ------------------------------------------------------------ */

static enum dp_err spec_scheme(const json_t *obj, const char *path, enum dp_scheme_kind kind,
                               int auto_rates, struct dp_spec_rule *r, struct dp_errinfo *ei)
{
    char names[160];
    dp_scheme_names(kind, names, sizeof(names));
    static const char *const prune_keys[] = {"scheme",       "rate",         "n", "m", "balanced",
                                             "library_size", "connectivity", NULL};
    static const char *const quant_keys[] = {"scheme", "bits", "per_channel", NULL};
    enum dp_err err = spec_keys(obj, path, kind == DP_SCHEME_PRUNE ? prune_keys : quant_keys, ei);
    if (err)
        return err;
    json_t *sv = json_object_get(obj, "scheme");
    if (!json_is_string(sv))
        return dp_errinfo_set(ei, DP_EINVAL, "%s.scheme: required, one of %s", path, names);
    const struct dp_scheme *c = dp_scheme_find(json_string_value(sv));
    if (c == NULL || c->kind != kind) {
        char shown[68];
        return dp_errinfo_set(ei, DP_EINVAL, "%s.scheme: '%s' is not one of %s", path,
                              dp_utf8_clip(shown, sizeof(shown), json_string_value(sv)), names);
    }
    struct dp_spec_params *p = &r->params;
    if (kind == DP_SCHEME_PRUNE) {
        r->prune = c;
        if (c->uses_rate && !auto_rates && json_object_get(obj, "rate") == NULL)
            return dp_errinfo_set(ei, DP_EINVAL, "%s.rate: required for scheme '%s'", path,
                                  c->name);
        err = spec_num(obj, "rate", path, 1.0, 1e9, &p->rate, ei);
        if (!err)
            err = spec_int(obj, "n", path, 1, 64, &p->n, ei);
        if (!err)
            err = spec_int(obj, "m", path, 1, 64, &p->m, ei);
        if (!err && p->n > p->m)
            err = dp_errinfo_set(ei, DP_EINVAL, "%s: n (%d) must not exceed m (%d)", path, p->n,
                                 p->m);
        if (!err)
            err = spec_bool(obj, "balanced", path, &p->balanced, ei);
        if (!err)
            err = spec_int(obj, "library_size", path, 1, 56, &r->n_patterns, ei);
        if (!err && json_object_get(obj, "connectivity") != NULL && !c->needs_3x3)
            err = dp_errinfo_set(ei, DP_EINVAL,
                                 "%s.connectivity: only the pattern scheme takes a second "
                                 "(connectivity) rate",
                                 path);
        if (!err)
            err = spec_num(obj, "connectivity", path, 1.0, 1e9, &r->conn_rate, ei);
    } else {
        r->quant = c;
        err = spec_int(obj, "bits", path, 2, 8, &p->bits, ei);
        if (!err)
            err = spec_bool(obj, "per_channel", path, &p->per_channel, ei);
    }
    return err;
}

/* "circulant": {"block": k, "from": "admm" | "scratch", "spectrum_bits": b}. */
static enum dp_err spec_circulant(const json_t *obj, const char *path, struct dp_spec_rule *r,
                                  struct dp_errinfo *ei)
{
    static const char *const keys[] = {"block", "from", "spectrum_bits", NULL};
    enum dp_err err = spec_keys(obj, path, keys, ei);
    if (err)
        return err;
    if (json_object_get(obj, "block") == NULL)
        return dp_errinfo_set(ei, DP_EINVAL, "%s.block: required, the block size (2 to 256)", path);
    err = spec_int(obj, "block", path, 2, 256, &r->params.block, ei);
    if (!err)
        err = spec_int(obj, "spectrum_bits", path, 0, 16, &r->params.spectrum_bits, ei);
    /* 0 is the documented "float" default; 1 bit leaves no level but 0. */
    if (!err && r->params.spectrum_bits == 1)
        err = dp_errinfo_set(ei, DP_EINVAL,
                             "%s.spectrum_bits: 1 is outside [2, 16] (0 keeps the spectra float)",
                             path);
    json_t *fv = json_object_get(obj, "from");
    r->circ_from = DP_SPEC_CIRC_ADMM;
    if (!err && fv != NULL) {
        if (json_is_string(fv) && strcmp(json_string_value(fv), "admm") == 0)
            r->circ_from = DP_SPEC_CIRC_ADMM;
        else if (json_is_string(fv) && strcmp(json_string_value(fv), "scratch") == 0)
            r->circ_from = DP_SPEC_CIRC_SCRATCH;
        else
            err = dp_errinfo_set(ei, DP_EINVAL, "%s.from: must be \"admm\" or \"scratch\"", path);
    }
    r->circ = dp_scheme_get(DP_SCHEME_CIRCULANT);
    return err;
}

static enum dp_err spec_rule(const json_t *obj, int idx, int auto_rates, struct dp_spec_rule *r,
                             struct dp_errinfo *ei)
{
    static const char *const keys[] = {"match", "prune", "quant", "circulant", "rho", NULL};
    char path[32];
    snprintf(path, sizeof(path), "layers[%d]", idx);
    enum dp_err err = spec_keys(obj, path, keys, ei);
    if (err)
        return err;
    memset(r, 0, sizeof(*r));
    r->params = (struct dp_spec_params){.rate = 1.0, .n = 2, .m = 4, .bits = 8};
    r->n_patterns = 8;
    r->rho = -1.0;
    json_t *mv = json_object_get(obj, "match");
    if (mv == NULL) {
        memcpy(r->match, "*", 2);
    } else if (!json_is_string(mv) || json_string_length(mv) == 0 ||
               json_string_length(mv) >= sizeof(r->match)) {
        return dp_errinfo_set(ei, DP_EINVAL, "%s.match: must be a glob of 1 to %zu characters",
                              path, sizeof(r->match) - 1);
    } else {
        memcpy(r->match, json_string_value(mv), json_string_length(mv) + 1);
    }
    char sub[48];
    json_t *pv = json_object_get(obj, "prune"), *qv = json_object_get(obj, "quant");
    json_t *cv = json_object_get(obj, "circulant");
    if (cv != NULL && (pv != NULL || qv != NULL))
        return dp_errinfo_set(ei, DP_EINVAL,
                              "%s: \"circulant\" does not combine with \"prune\" or \"quant\" "
                              "in one rule (circulant.spectrum_bits quantizes the spectra)",
                              path);
    if (cv != NULL) {
        snprintf(sub, sizeof(sub), "%s.circulant", path);
        err = spec_circulant(cv, sub, r, ei);
        if (!err)
            err = spec_num(obj, "rho", path, 0.0, 1e6, &r->rho, ei);
        return err;
    }
    if (pv == NULL && qv == NULL)
        return dp_errinfo_set(ei, DP_EINVAL,
                              "%s: needs \"prune\", \"quant\" or both, or \"circulant\"", path);
    if (pv != NULL) {
        snprintf(sub, sizeof(sub), "%s.prune", path);
        err = spec_scheme(pv, sub, DP_SCHEME_PRUNE, auto_rates, r, ei);
        if (err)
            return err;
    }
    if (qv != NULL) {
        snprintf(sub, sizeof(sub), "%s.quant", path);
        err = spec_scheme(qv, sub, DP_SCHEME_QUANT, auto_rates, r, ei);
        if (err)
            return err;
        r->params.keep_zeros = pv != NULL;
    }
    return spec_num(obj, "rho", path, 0.0, 1e6, &r->rho, ei);
}

/*
 * Circulant rules convert layers to another op, so the run is built around
 * them: every rule is circulant then, with one "from" (the plan is either
 * ADMM then conversion, or conversion then training), and what works on
 * dense weights of a fixed graph (the magnitude baseline, progressive
 * stages, automatic rates, purification, distillation from the dense
 * model) is refused by name.
 */
static enum dp_err spec_circ_check(struct dp_spec *s, struct dp_errinfo *ei)
{
    int first = -1;
    for (int i = 0; i < s->n_rules; i++) {
        if (s->rules[i].circ == NULL)
            continue;
        if (first < 0) {
            first = i;
            s->circ_from = s->rules[i].circ_from;
        } else if (s->rules[i].circ_from != s->circ_from) {
            return dp_errinfo_set(ei, DP_EINVAL,
                                  "layers[%d].circulant.from: every circulant rule of a spec "
                                  "takes the same path (layers[%d] has \"%s\")",
                                  i, first, s->circ_from == DP_SPEC_CIRC_ADMM ? "admm" : "scratch");
        }
    }
    if (first < 0)
        return DP_OK;
    for (int i = 0; i < s->n_rules; i++)
        if (s->rules[i].circ == NULL)
            return dp_errinfo_set(ei, DP_EINVAL,
                                  "layers[%d]: a spec with circulant rules (layers[%d]) has "
                                  "circulant rules only; pruning and quantization of other "
                                  "layers are not supported with them yet",
                                  i, first);
    const char *bad = s->method != DP_SPEC_ADMM ? "method \"magnitude\""
                      : s->stages > 1           ? "progressive stages"
                      : s->auto_on              ? "auto"
                      : s->purify               ? "purify"
                      : s->distill_weight > 0.0 ? "distill"
                                                : NULL;
    if (bad != NULL)
        return dp_errinfo_set(ei, DP_EINVAL,
                              "layers[%d].circulant: does not go with %s (circulant layers are "
                              "reached by ADMM or trained from scratch, in one stage)",
                              first, bad);
    return DP_OK;
}

enum dp_err dp_spec_parse(const char *text, size_t len, struct dp_spec *out, struct dp_errinfo *ei)
{
    static const char *const top[] = {"version",    "method",      "seed",      "batch",
                                      "admm",       "retrain",     "magnitude", "optimizer",
                                      "layers",     "progressive", "auto",      "purify",
                                      "validation", "budget",      "distill",   NULL};
    static const char *const val_keys[] = {"fraction", "seed", NULL};
    static const char *const budget_keys[] = {"epochs", NULL};
    static const char *const distill_keys[] = {"temperature", "weight", NULL};
    static const char *const prog_keys[] = {"stages", "tolerance", NULL};
    static const char *const auto_keys[] = {
        "objective", "rate", "search_iters", "eval_images", "allocation", "device", NULL};
    static const char *const iter_keys[] = {"iters",           "epochs_per_iter", "rho",
                                            "rho_factor",      "rho_max",         "lr",
                                            "target_residual", "support_change",  NULL};
    static const char *const retrain_keys[] = {"epochs", "lr", "keep_best", NULL};
    static const char *const mag_keys[] = {"steps", "allocation", NULL};
    static const char *const opt_keys[] = {"type", "momentum", "weight_decay", NULL};
    memset(out, 0, sizeof(*out));
    out->method = DP_SPEC_ADMM;
    out->seed = 1;
    out->batch = 64;
    out->admm_iters = 6;
    out->epochs_per_iter = 2;
    out->rho = 1e-3;
    out->rho_factor = 1.3;
    out->rho_max = 1.0;
    out->admm_lr = 0.01;
    out->retrain_epochs = 4;
    out->retrain_lr = 0.01;
    out->magnitude_steps = 4;
    out->magnitude_alloc = DP_SPEC_ALLOC_UNIFORM;
    out->stages = 1;
    out->tolerance = 0.005;
    out->auto_objective = DP_SPEC_OBJ_PARAMS;
    out->auto_search_iters = 2000;
    out->auto_eval_images = 2000;
    out->momentum = 0.9;
    out->weight_decay = 5e-4;
    out->auto_alloc = DP_SPEC_AUTO_SENSITIVITY;
    out->val_fraction = 0.1;
    out->support_change = 0.001;
    out->distill_temperature = 4.0;
    if (len > DP_SPEC_MAX_BYTES)
        return dp_errinfo_set(ei, DP_ETOOBIG, "the spec is %zu bytes, more than the %d allowed",
                              len, DP_SPEC_MAX_BYTES);
    json_error_t jerr;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL)
        return dp_errinfo_set(ei, DP_EFORMAT, "the spec is not valid JSON: %s (line %d)", jerr.text,
                              jerr.line);
    enum dp_err err = spec_keys(root, "spec", top, ei);
    int version = 1, seed = 1;
    if (!err)
        err = spec_int(root, "version", "spec", 1, 1, &version, ei);
    json_t *mv = json_object_get(root, "method");
    if (!err && mv != NULL) {
        if (json_is_string(mv) && strcmp(json_string_value(mv), "admm") == 0)
            out->method = DP_SPEC_ADMM;
        else if (json_is_string(mv) && strcmp(json_string_value(mv), "magnitude") == 0)
            out->method = DP_SPEC_MAGNITUDE;
        else
            err = dp_errinfo_set(ei, DP_EINVAL, "spec.method: must be \"admm\" or \"magnitude\"");
    }
    if (!err)
        err = spec_int(root, "seed", "spec", 0, 2147483647, &seed, ei);
    out->seed = (uint64_t)seed;
    int val_seed = seed;
    json_t *vv = json_object_get(root, "validation");
    if (!err && vv != NULL) {
        err = spec_keys(vv, "spec.validation", val_keys, ei);
        if (!err)
            err = spec_num(vv, "fraction", "spec.validation", 0.01, 0.5, &out->val_fraction, ei);
        if (!err)
            err = spec_int(vv, "seed", "spec.validation", 0, 2147483647, &val_seed, ei);
    }
    out->val_seed = (uint64_t)val_seed;
    json_t *bv = json_object_get(root, "budget");
    if (!err && bv != NULL) {
        err = spec_keys(bv, "spec.budget", budget_keys, ei);
        if (!err && json_object_get(bv, "epochs") == NULL)
            err = dp_errinfo_set(ei, DP_EINVAL, "spec.budget.epochs: required");
        if (!err)
            err = spec_int(bv, "epochs", "spec.budget", 1, 100000, &out->budget_epochs, ei);
    }
    json_t *dv = json_object_get(root, "distill");
    if (!err && dv != NULL) {
        out->distill_weight = 0.5;
        err = spec_keys(dv, "spec.distill", distill_keys, ei);
        if (!err)
            err = spec_num(dv, "temperature", "spec.distill", 1.0, 100.0, &out->distill_temperature,
                           ei);
        if (!err)
            err = spec_num(dv, "weight", "spec.distill", 0.0, 1.0, &out->distill_weight, ei);
    }
    if (!err)
        err = spec_int(root, "batch", "spec", 1, 65536, &out->batch, ei);
    if (!err)
        err = spec_bool(root, "purify", "spec", &out->purify, ei);
    json_t *a = json_object_get(root, "admm");
    if (!err && a != NULL) {
        err = spec_keys(a, "spec.admm", iter_keys, ei);
        if (!err)
            err = spec_int(a, "iters", "spec.admm", 1, 1000, &out->admm_iters, ei);
        if (!err)
            err = spec_int(a, "epochs_per_iter", "spec.admm", 1, 1000, &out->epochs_per_iter, ei);
        if (!err)
            err = spec_num(a, "rho", "spec.admm", 0.0, 1e6, &out->rho, ei);
        if (!err)
            err = spec_num(a, "rho_factor", "spec.admm", 1.0, 100.0, &out->rho_factor, ei);
        if (!err)
            err = spec_num(a, "rho_max", "spec.admm", 0.0, 1e6, &out->rho_max, ei);
        if (!err)
            err = spec_num(a, "lr", "spec.admm", 1e-9, 100.0, &out->admm_lr, ei);
        if (!err)
            err = spec_num(a, "target_residual", "spec.admm", 0.0, 1.0, &out->target_residual, ei);
        if (!err)
            err = spec_num(a, "support_change", "spec.admm", 0.0, 1.0, &out->support_change, ei);
    }
    json_t *r = json_object_get(root, "retrain");
    if (!err && r != NULL) {
        err = spec_keys(r, "spec.retrain", retrain_keys, ei);
        if (!err)
            err = spec_int(r, "epochs", "spec.retrain", 0, 10000, &out->retrain_epochs, ei);
        if (!err)
            err = spec_num(r, "lr", "spec.retrain", 1e-9, 100.0, &out->retrain_lr, ei);
        if (!err)
            err = spec_bool(r, "keep_best", "spec.retrain", &out->retrain_keep_best, ei);
    }
    json_t *g = json_object_get(root, "magnitude");
    if (!err && g != NULL) {
        err = spec_keys(g, "spec.magnitude", mag_keys, ei);
        if (!err)
            err = spec_int(g, "steps", "spec.magnitude", 1, 1000, &out->magnitude_steps, ei);
        json_t *al = json_object_get(g, "allocation");
        if (!err && al != NULL) {
            if (json_is_string(al) && strcmp(json_string_value(al), "uniform") == 0)
                out->magnitude_alloc = DP_SPEC_ALLOC_UNIFORM;
            else if (json_is_string(al) && strcmp(json_string_value(al), "global") == 0)
                out->magnitude_alloc = DP_SPEC_ALLOC_GLOBAL;
            else
                err = dp_errinfo_set(ei, DP_EINVAL,
                                     "spec.magnitude.allocation: must be \"uniform\" or "
                                     "\"global\"");
        }
    }
    json_t *pg = json_object_get(root, "progressive");
    if (!err && pg != NULL) {
        err = spec_keys(pg, "spec.progressive", prog_keys, ei);
        if (!err)
            err = spec_int(pg, "stages", "spec.progressive", 1, 16, &out->stages, ei);
        if (!err)
            err = spec_num(pg, "tolerance", "spec.progressive", 0.0, 1.0, &out->tolerance, ei);
    }
    json_t *au = json_object_get(root, "auto");
    if (!err && au != NULL) {
        out->auto_on = 1;
        err = spec_keys(au, "spec.auto", auto_keys, ei);
        json_t *ob = json_object_get(au, "objective");
        if (!err && ob != NULL) {
            if (json_is_string(ob) && strcmp(json_string_value(ob), "params") == 0)
                out->auto_objective = DP_SPEC_OBJ_PARAMS;
            else if (json_is_string(ob) && strcmp(json_string_value(ob), "flops") == 0)
                out->auto_objective = DP_SPEC_OBJ_FLOPS;
            else if (json_is_string(ob) && strcmp(json_string_value(ob), "latency") == 0)
                out->auto_objective = DP_SPEC_OBJ_LATENCY;
            else
                err = dp_errinfo_set(ei, DP_EINVAL,
                                     "spec.auto.objective: must be \"params\", \"flops\" or "
                                     "\"latency\"");
        }
        /* The selector's own syntax is checked where devices are matched
         * (the server); here only its kind and size, and that it goes with
         * the latency objective and only with it. */
        json_t *adev = json_object_get(au, "device");
        if (!err && adev != NULL && out->auto_objective != DP_SPEC_OBJ_LATENCY)
            err = dp_errinfo_set(ei, DP_EINVAL,
                                 "spec.auto.device: only with auto.objective \"latency\"");
        if (!err && out->auto_objective == DP_SPEC_OBJ_LATENCY) {
            const size_t flags = JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY;
            const size_t n = json_is_object(adev) ? json_dumpb(adev, out->auto_device,
                                                               sizeof(out->auto_device), flags)
                                                  : 0;
            if (n == 0 || n >= sizeof(out->auto_device))
                err = dp_errinfo_set(ei, DP_EINVAL,
                                     "spec.auto.device: required with auto.objective "
                                     "\"latency\": a device selector (an object: name glob, "
                                     "labels), under %zu bytes",
                                     sizeof(out->auto_device));
            else
                out->auto_device[n] = '\0';
        }
        if (!err && json_object_get(au, "rate") == NULL)
            err = dp_errinfo_set(ei, DP_EINVAL, "spec.auto.rate: required, the global target");
        if (!err)
            err = spec_num(au, "rate", "spec.auto", 1.0, 1e6, &out->auto_rate, ei);
        if (!err)
            err =
                spec_int(au, "search_iters", "spec.auto", 1, 1000000, &out->auto_search_iters, ei);
        if (!err)
            err = spec_int(au, "eval_images", "spec.auto", 16, 1000000, &out->auto_eval_images, ei);
        json_t *aa = json_object_get(au, "allocation");
        if (!err && aa != NULL) {
            if (json_is_string(aa) && strcmp(json_string_value(aa), "sensitivity") == 0)
                out->auto_alloc = DP_SPEC_AUTO_SENSITIVITY;
            else if (json_is_string(aa) && strcmp(json_string_value(aa), "global") == 0)
                out->auto_alloc = DP_SPEC_AUTO_GLOBAL;
            else
                err = dp_errinfo_set(ei, DP_EINVAL,
                                     "spec.auto.allocation: must be \"sensitivity\" or "
                                     "\"global\"");
        }
    }
    json_t *o = json_object_get(root, "optimizer");
    if (!err && o != NULL) {
        err = spec_keys(o, "spec.optimizer", opt_keys, ei);
        json_t *tv = json_object_get(o, "type");
        if (!err && tv != NULL) {
            if (json_is_string(tv) && strcmp(json_string_value(tv), "sgd") == 0)
                out->adam = 0;
            else if (json_is_string(tv) && strcmp(json_string_value(tv), "adam") == 0)
                out->adam = 1;
            else
                err = dp_errinfo_set(ei, DP_EINVAL,
                                     "spec.optimizer.type: must be \"sgd\" or \"adam\"");
        }
        if (!err)
            err = spec_num(o, "momentum", "spec.optimizer", 0.0, 0.999, &out->momentum, ei);
        if (!err)
            err = spec_num(o, "weight_decay", "spec.optimizer", 0.0, 1.0, &out->weight_decay, ei);
    }
    json_t *layers = json_object_get(root, "layers");
    if (!err) {
        if (!json_is_array(layers) || json_array_size(layers) == 0)
            err = dp_errinfo_set(ei, DP_EINVAL,
                                 "spec.layers: required, a non-empty array of "
                                 "rules");
        else if (json_array_size(layers) > DP_SPEC_MAX_RULES)
            err = dp_errinfo_set(ei, DP_EINVAL, "spec.layers: at most %d rules", DP_SPEC_MAX_RULES);
    }
    for (size_t i = 0; !err && i < json_array_size(layers); i++) {
        err = spec_rule(json_array_get(layers, i), (int)i, out->auto_on, &out->rules[i], ei);
        out->n_rules = (int)i + 1;
    }
    if (!err)
        err = spec_circ_check(out, ei);
    for (int i = 0; !err && out->auto_on && i < out->n_rules; i++) {
        if (out->rules[i].prune == NULL || !out->rules[i].prune->uses_rate)
            err = dp_errinfo_set(ei, DP_EINVAL,
                                 "layers[%d].prune: spec.auto chooses pruning rates, so every "
                                 "rule needs a rate-based pruning scheme",
                                 i);
    }
    if (!err && out->magnitude_alloc == DP_SPEC_ALLOC_GLOBAL) {
        for (int i = 0; !err && i < out->n_rules; i++) {
            const struct dp_scheme *pc = out->rules[i].prune;
            if (pc == NULL || pc->id != DP_SCHEME_IRREGULAR)
                err = dp_errinfo_set(ei, DP_EINVAL,
                                     "layers[%d].prune.scheme: magnitude.allocation \"global\" "
                                     "needs irregular pruning in every rule",
                                     i);
        }
    }
    if (!err && out->auto_on && out->auto_alloc == DP_SPEC_AUTO_GLOBAL) {
        for (int i = 0; !err && i < out->n_rules; i++) {
            if (out->rules[i].prune->id != DP_SCHEME_IRREGULAR)
                err = dp_errinfo_set(ei, DP_EINVAL,
                                     "layers[%d].prune.scheme: auto.allocation \"global\" "
                                     "needs irregular pruning in every rule",
                                     i);
        }
    }
    if (!err && out->budget_epochs > 0 && out->method == DP_SPEC_ADMM &&
        out->budget_epochs / out->stages < out->retrain_epochs + out->epochs_per_iter)
        err = dp_errinfo_set(ei, DP_EINVAL,
                             "spec.budget.epochs: %d epochs over %d stages leave less than one "
                             "ADMM iteration (%d epochs) and the retraining (%d) per stage",
                             out->budget_epochs, out->stages, out->epochs_per_iter,
                             out->retrain_epochs);
    if (!err && out->budget_epochs > 0 && out->method == DP_SPEC_MAGNITUDE &&
        out->budget_epochs < out->magnitude_steps)
        err = dp_errinfo_set(ei, DP_EINVAL,
                             "spec.budget.epochs: %d epochs cannot cover %d magnitude steps",
                             out->budget_epochs, out->magnitude_steps);
    if (!err && dp_spec_epochs(out) > 100000)
        err = dp_errinfo_set(ei, DP_EINVAL, "spec: %d training epochs in all is too many",
                             dp_spec_epochs(out));
    json_decref(root);
    return err;
}

enum dp_err dp_spec_load(const char *path, struct dp_spec *out, struct dp_errinfo *ei)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return dp_errinfo_set(ei, DP_ENOENT, "%s: cannot open the spec: %s", path, strerror(errno));
    char *buf = dp_malloc(DP_SPEC_MAX_BYTES + 1);
    if (buf == NULL) {
        fclose(f);
        return dp_errinfo_set(ei, DP_ENOMEM, "out of memory");
    }
    size_t n = fread(buf, 1, DP_SPEC_MAX_BYTES + 1, f);
    int bad = ferror(f);
    fclose(f);
    enum dp_err err;
    struct dp_errinfo sub = {DP_OK, ""};
    if (bad)
        err = dp_errinfo_set(ei, DP_EIO, "%s: read error", path);
    else if (n > DP_SPEC_MAX_BYTES)
        err = dp_errinfo_set(ei, DP_ETOOBIG, "%s: larger than %d bytes", path, DP_SPEC_MAX_BYTES);
    else
        err = dp_spec_parse(buf, n, out, &sub);
    if (err && !bad && n <= DP_SPEC_MAX_BYTES)
        dp_errinfo_set(ei, err, "%s: %s", path, sub.msg);
    dp_free(buf);
    return err;
}

const struct dp_spec_rule *dp_spec_rule_for(const struct dp_spec *s, const char *layer)
{
    for (int i = 0; i < s->n_rules; i++) {
        if (fnmatch(s->rules[i].match, layer, 0) == 0)
            return &s->rules[i];
    }
    return NULL;
}

int dp_spec_epochs(const struct dp_spec *s)
{
    if (s->budget_epochs > 0)
        return s->budget_epochs;
    return s->stages * (s->admm_iters * s->epochs_per_iter + s->retrain_epochs);
}

static uint64_t spec_mix(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 0x100000001b3ULL; /* FNV-1a */
    return h;
}

const char *dp_spec_objective_name(enum dp_spec_objective o)
{
    return o == DP_SPEC_OBJ_FLOPS ? "flops" : o == DP_SPEC_OBJ_LATENCY ? "latency" : "params";
}

uint64_t dp_spec_digest(const struct dp_spec *s)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    const int ints[] = {(int)s->method,
                        s->batch,
                        s->admm_iters,
                        s->epochs_per_iter,
                        s->retrain_epochs,
                        s->magnitude_steps,
                        (int)s->magnitude_alloc,
                        s->stages,
                        s->auto_on,
                        (int)s->auto_objective,
                        s->auto_search_iters,
                        s->auto_eval_images,
                        s->n_rules,
                        s->purify,
                        (int)s->auto_alloc,
                        s->budget_epochs,
                        s->retrain_keep_best};
    const double dbl[] = {s->rho,
                          s->rho_factor,
                          s->rho_max,
                          s->admm_lr,
                          s->retrain_lr,
                          s->momentum,
                          s->weight_decay,
                          s->tolerance,
                          s->auto_rate,
                          s->val_fraction,
                          s->target_residual,
                          s->support_change,
                          s->distill_temperature,
                          s->distill_weight};
    h = spec_mix(h, &s->seed, sizeof(s->seed));
    h = spec_mix(h, &s->val_seed, sizeof(s->val_seed));
    h = spec_mix(h, ints, sizeof(ints));
    h = spec_mix(h, dbl, sizeof(dbl));
    for (int i = 0; i < s->n_rules; i++) {
        const struct dp_spec_rule *r = &s->rules[i];
        h = spec_mix(h, r->match, strlen(r->match) + 1);
        const char *pn = r->prune != NULL ? r->prune->name : "-";
        const char *qn = r->quant != NULL ? r->quant->name : "-";
        h = spec_mix(h, pn, strlen(pn) + 1);
        h = spec_mix(h, qn, strlen(qn) + 1);
        const double rd[] = {r->params.rate, r->rho, r->conn_rate};
        const int ri[] = {r->params.n,           r->params.m,        r->params.bits,
                          r->params.per_channel, r->params.balanced, r->params.keep_zeros,
                          r->n_patterns};
        h = spec_mix(h, rd, sizeof(rd));
        h = spec_mix(h, ri, sizeof(ri));
        if (r->circ != NULL) { /* digests of specs without one stay as they were */
            const int ci[] = {r->params.block, r->params.spectrum_bits, (int)r->circ_from};
            h = spec_mix(h, ci, sizeof(ci));
        }
    }
    if (s->auto_device[0] != '\0') /* digests of specs without one stay as they were */
        h = spec_mix(h, s->auto_device, strlen(s->auto_device) + 1);
    if (s->adam) /* likewise: SGD specs keep their digests */
        h = spec_mix(h, "adam", 5);
    return h;
}
