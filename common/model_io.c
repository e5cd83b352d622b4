/*
 * Model checkpoints and the graph JSON (see model_io.h).
 *
 * DESIGN: the graph JSON is generated from and parsed by two tables, one
 * for struct dp_op_attrs and one for struct dp_layer_compress, each entry
 * giving a field's JSON name, its offset, its type and the range a file may
 * hold. The ranges are wide (they are not the op's semantics, which
 * dp_model_finalize checks) but keep every value small enough that shape
 * inference cannot overflow, whatever a file says. Adding an attribute is
 * adding one table row.
 *
 * Loading parses the graph, rebuilds the model through dp_model_add_layer
 * and dp_model_finalize (so a checkpoint can never disagree with the
 * engine about a parameter's shape) and then copies the tensors in,
 * checking each against the shape finalize declared.
 */
#include "common/model_io.h"

#include <float.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/safetensors.h"
#include "common/utf8.h"

#define MIO_INPUT_NAME "input"     /* how "inputs" spells DP_MODEL_INPUT */
#define MIO_RESERVED   "dnnpress." /* metadata key prefix owned by this module */
#define MIO_DIM_MAX    65536       /* per-axis bound on the input shape */
#define MIO_NAME_SHOW  64          /* bytes of a name kept in messages */

/* ---- Field tables -------------------------------------------------------- */

enum mio_kind { MIO_INT, MIO_FLOAT, MIO_STRING };

struct mio_field {
    const char *name;
    size_t offset;
    enum mio_kind kind;
    double min, max; /* inclusive; for MIO_STRING, max is the buffer size */
};

#define MIO_ATTR(f, k, lo, hi)                                                                     \
    {                                                                                              \
#f, offsetof(struct dp_op_attrs, f), k, lo, hi                                             \
    }
static const struct mio_field mio_attr_fields[] = {
    MIO_ATTR(out_ch, MIO_INT, 0, 1 << 24),
    MIO_ATTR(kh, MIO_INT, 0, 1024),
    MIO_ATTR(kw, MIO_INT, 0, 1024),
    MIO_ATTR(sh, MIO_INT, 0, MIO_DIM_MAX),
    MIO_ATTR(sw, MIO_INT, 0, MIO_DIM_MAX),
    MIO_ATTR(pt, MIO_INT, 0, MIO_DIM_MAX),
    MIO_ATTR(pl, MIO_INT, 0, MIO_DIM_MAX),
    MIO_ATTR(pb, MIO_INT, 0, MIO_DIM_MAX),
    MIO_ATTR(pr, MIO_INT, 0, MIO_DIM_MAX),
    MIO_ATTR(dh, MIO_INT, 0, MIO_DIM_MAX),
    MIO_ATTR(dw, MIO_INT, 0, MIO_DIM_MAX),
    MIO_ATTR(groups, MIO_INT, 0, 1 << 24),
    MIO_ATTR(has_bias, MIO_INT, 0, 1),
    MIO_ATTR(ceil_mode, MIO_INT, 0, 1),
    MIO_ATTR(count_include_pad, MIO_INT, 0, 1),
    MIO_ATTR(eps, MIO_FLOAT, 0, 1),
    MIO_ATTR(momentum, MIO_FLOAT, 0, 1),
    MIO_ATTR(p, MIO_FLOAT, 0, 1),
    MIO_ATTR(axis, MIO_INT, 0, 3),
    MIO_ATTR(axis_end, MIO_INT, 0, 3),
    MIO_ATTR(lo, MIO_FLOAT, -FLT_MAX, FLT_MAX),
    MIO_ATTR(hi, MIO_FLOAT, -FLT_MAX, FLT_MAX),
    MIO_ATTR(to_c, MIO_INT, 0, 1 << 28),
    MIO_ATTR(to_h, MIO_INT, 0, MIO_DIM_MAX),
    MIO_ATTR(to_w, MIO_INT, 0, 1 << 28),
    MIO_ATTR(alpha, MIO_FLOAT, -FLT_MAX, FLT_MAX),
    MIO_ATTR(beta, MIO_FLOAT, -FLT_MAX, FLT_MAX),
    MIO_ATTR(start, MIO_INT, 0, 1 << 28),
    MIO_ATTR(end, MIO_INT, 0, 1 << 28),
    MIO_ATTR(block, MIO_INT, 0, 4096),
};
#undef MIO_ATTR

#define MIO_COMP(f, k, lo, hi)                                                                     \
    {                                                                                              \
#f, offsetof(struct dp_layer_compress, f), k, lo, hi                                       \
    }
static const struct mio_field mio_comp_fields[] = {
    MIO_COMP(scheme, MIO_STRING, 0, sizeof(((struct dp_layer_compress *)0)->scheme)),
    MIO_COMP(target_rate, MIO_FLOAT, 0, 1e9),
    MIO_COMP(bits, MIO_INT, 0, 32),
    MIO_COMP(scale, MIO_FLOAT, -1e30, 1e30),
};
#undef MIO_COMP

/* A name clipped for a message; buf is an array (char nb[MIO_NAME_SHOW + 4]). */
#define mio__clip(buf, s) dp_utf8_clip((buf), sizeof(buf), (s))

#define MIO_N(a) ((int)(sizeof(a) / sizeof((a)[0])))

/* ---- Helpers ------------------------------------------------------------- */

/* Formats a shape as "[3, 4]" into buf (cap bytes); returns buf. */
static const char *mio_shape_str(char *buf, size_t cap, int ndim, const int64_t *shape)
{
    size_t pos = (size_t)snprintf(buf, cap, "[");
    for (int d = 0; d < ndim && pos < cap; d++)
        pos += (size_t)snprintf(buf + pos, cap - pos, "%s%lld", d ? ", " : "", (long long)shape[d]);
    if (pos < cap)
        snprintf(buf + pos, cap - pos, "]");
    return buf;
}

/*
 * The double whose shortest decimal form round-trips to f, so that the
 * JSON says 1e-05 rather than 9.9999997473787516e-06 for 1e-5f.
 */
static double mio_float_to_json(float f)
{
    char buf[32];
    for (int prec = 6; prec <= 9; prec++) {
        snprintf(buf, sizeof(buf), "%.*g", prec, (double)f);
        if (strtof(buf, NULL) == f)
            break;
    }
    return strtod(buf, NULL);
}

static int mio_has_prefix(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* Sets obj[key] = v (stolen); returns nonzero when v is NULL or the set fails. */
static int mio_set(json_t *obj, const char *key, json_t *v)
{
    return v == NULL || json_object_set_new(obj, key, v) != 0;
}

/* ---- Graph to JSON ------------------------------------------------------- */

/*
 * Adds the nonzero fields of the struct at base (described by fields) to a
 * new object; *out is NULL when every field is zero.
 */
static enum dp_err mio_fields_to_json(const struct mio_field *fields, int n_fields,
                                      const void *base, const char *lname, json_t **out,
                                      struct dp_errinfo *ei)
{
    char nb[MIO_NAME_SHOW + 4];
    json_t *obj = NULL;
    *out = NULL;
    for (int i = 0; i < n_fields; i++) {
        const struct mio_field *fd = &fields[i];
        const char *src = (const char *)base + fd->offset;
        json_t *v = NULL;
        if (fd->kind == MIO_INT) {
            int x;
            memcpy(&x, src, sizeof(x));
            if (x == 0)
                continue;
            v = json_integer(x);
        } else if (fd->kind == MIO_FLOAT) {
            float x;
            memcpy(&x, src, sizeof(x));
            if (x == 0.0f)
                continue;
            if (!isfinite(x)) {
                json_decref(obj);
                return dp_errinfo_set(ei, DP_EINVAL, "layer '%s': field '%s' is not finite",
                                      mio__clip(nb, lname), fd->name);
            }
            v = json_real(mio_float_to_json(x));
        } else {
            size_t cap = (size_t)fd->max;
            size_t len = strnlen(src, cap);
            if (len == 0)
                continue;
            if (len == cap || !dp_utf8_valid(src)) {
                json_decref(obj);
                return dp_errinfo_set(ei, DP_EINVAL,
                                      "layer '%s': field '%s' is not a terminated UTF-8 string",
                                      mio__clip(nb, lname), fd->name);
            }
            v = json_string(src);
        }
        if (obj == NULL)
            obj = json_object();
        if (obj == NULL || mio_set(obj, fd->name, v)) {
            if (obj == NULL)
                json_decref(v);
            json_decref(obj);
            return dp_errinfo_set(ei, DP_ENOMEM, "out of memory describing the graph");
        }
    }
    *out = obj;
    return DP_OK;
}

static enum dp_err mio_layer_to_json(const struct dp_model *m, int i, json_t **out,
                                     struct dp_errinfo *ei)
{
    char nb[MIO_NAME_SHOW + 4];
    const struct dp_layer *l = &m->layers[i];
    enum dp_err err = DP_OK;
    json_t *obj = NULL, *attrs = NULL, *comp = NULL, *inputs = NULL;
    *out = NULL;

    const char *op = dp_op_name(l->op);
    if (op == NULL) {
        err = dp_errinfo_set(ei, DP_EINVAL, "layer %d has an unknown op", i);
        goto out;
    }
    if (!dp_utf8_valid(l->name) || strcmp(l->name, MIO_INPUT_NAME) == 0) {
        err = dp_errinfo_set(ei, DP_EINVAL,
                             "layer %d: the name '%s' cannot be saved (it must be UTF-8 and not "
                             "'" MIO_INPUT_NAME "'); rename the layer",
                             i, mio__clip(nb, l->name));
        goto out;
    }
    err = mio_fields_to_json(mio_attr_fields, MIO_N(mio_attr_fields), &l->a, l->name, &attrs, ei);
    if (err)
        goto out;
    err = mio_fields_to_json(mio_comp_fields, MIO_N(mio_comp_fields), &l->comp, l->name, &comp, ei);
    if (err)
        goto out;
    obj = json_object();
    inputs = json_array();
    if (obj == NULL || inputs == NULL)
        goto oom;
    for (int k = 0; k < l->n_inputs && k < DP_MAX_INPUTS; k++) {
        int in = l->inputs[k];
        if (in != DP_MODEL_INPUT && (in < 0 || in >= i)) {
            err = dp_errinfo_set(ei, DP_EINVAL, "layer '%s': input %d is not an earlier layer",
                                 mio__clip(nb, l->name), k);
            goto out;
        }
        const char *iname = in == DP_MODEL_INPUT ? MIO_INPUT_NAME : m->layers[in].name;
        if (json_array_append_new(inputs, json_string(iname)) != 0)
            goto oom;
    }
    if (mio_set(obj, "name", json_string(l->name)) || mio_set(obj, "op", json_string(op)))
        goto oom;
    int bad = json_object_set_new(obj, "inputs", inputs) != 0;
    inputs = NULL;
    if (bad)
        goto oom;
    if (attrs != NULL) {
        bad = json_object_set_new(obj, "attrs", attrs) != 0;
        attrs = NULL;
        if (bad)
            goto oom;
    }
    if (comp != NULL) {
        bad = json_object_set_new(obj, "compress", comp) != 0;
        comp = NULL;
        if (bad)
            goto oom;
    }
    *out = obj;
    obj = NULL;
    goto out;
oom:
    err = dp_errinfo_set(ei, DP_ENOMEM, "out of memory describing the graph");
out:
    json_decref(obj);
    json_decref(attrs);
    json_decref(comp);
    json_decref(inputs);
    return err;
}

json_t *dp_model_norm_to_json(const struct dp_model *m)
{
    if (m->norm.n_c <= 0)
        return NULL;
    json_t *mean = json_array(), *std = json_array();
    for (int c = 0; mean != NULL && std != NULL && c < m->norm.n_c; c++) {
        if (json_array_append_new(mean, json_real(mio_float_to_json(m->norm.mean[c]))) != 0 ||
            json_array_append_new(std, json_real(mio_float_to_json(m->norm.std[c]))) != 0) {
            json_decref(mean);
            mean = NULL;
        }
    }
    if (mean == NULL || std == NULL) {
        json_decref(mean);
        json_decref(std);
        return NULL;
    }
    return json_pack("{s:o, s:o}", "mean", mean, "std", std);
}

enum dp_err dp_model_norm_from_json(const json_t *j, struct dp_model *m, struct dp_errinfo *ei)
{
    json_t *o = (json_t *)j; /* jansson's getters take non-const objects; nothing is modified */
    json_t *mean = json_object_get(o, "mean"), *std = json_object_get(o, "std");
    if (!json_is_array(mean) || !json_is_array(std) ||
        json_array_size(mean) != json_array_size(std) || json_array_size(mean) == 0 ||
        json_array_size(mean) > DP_MODEL_NORM_MAX_C)
        return dp_errinfo_set(ei, DP_EFORMAT,
                              "normalization: \"mean\" and \"std\" must be arrays of the same "
                              "length, 1 to %d numbers",
                              DP_MODEL_NORM_MAX_C);
    float mv[DP_MODEL_NORM_MAX_C], sv[DP_MODEL_NORM_MAX_C];
    const int n = (int)json_array_size(mean);
    for (int c = 0; c < n; c++) {
        json_t *a = json_array_get(mean, (size_t)c), *b = json_array_get(std, (size_t)c);
        if (!json_is_number(a) || !json_is_number(b))
            return dp_errinfo_set(ei, DP_EFORMAT, "normalization: entry %d is not a number", c);
        mv[c] = (float)json_number_value(a);
        sv[c] = (float)json_number_value(b);
    }
    enum dp_err err = dp_model_norm_set(m, n, mv, sv, ei);
    return err ? (enum dp_err)DP_EFORMAT : DP_OK;
}

enum dp_err dp_model_graph_to_json(const struct dp_model *m, json_t **out, struct dp_errinfo *ei)
{
    enum dp_err err = DP_OK;
    json_t *g = NULL, *layers = NULL, *input = NULL;
    *out = NULL;

    g = json_object();
    layers = json_array();
    input = json_array();
    if (g == NULL || layers == NULL || input == NULL)
        goto oom;
    if (json_array_append_new(input, json_integer(m->in_c)) != 0 ||
        json_array_append_new(input, json_integer(m->in_h)) != 0 ||
        json_array_append_new(input, json_integer(m->in_w)) != 0)
        goto oom;
    for (int i = 0; i < m->n_layers; i++) {
        json_t *lj = NULL;
        err = mio_layer_to_json(m, i, &lj, ei);
        if (err)
            goto out;
        if (json_array_append_new(layers, lj) != 0)
            goto oom;
    }
    if (mio_set(g, "format", json_string(DP_GRAPH_FORMAT)) ||
        mio_set(g, "version", json_integer(DP_GRAPH_VERSION)))
        goto oom;
    int bad = json_object_set_new(g, "input", input) != 0;
    input = NULL;
    if (bad)
        goto oom;
    bad = json_object_set_new(g, "layers", layers) != 0;
    layers = NULL;
    if (bad)
        goto oom;
    if (m->norm.n_c > 0 && mio_set(g, "normalization", dp_model_norm_to_json(m)))
        goto oom;
    *out = g;
    g = NULL;
    goto out;
oom:
    err = dp_errinfo_set(ei, DP_ENOMEM, "out of memory describing the graph");
out:
    json_decref(g);
    json_decref(layers);
    json_decref(input);
    return err;
}

/* ---- Graph from JSON ----------------------------------------------------- */

/* Checks that every key of obj is in the NULL-terminated list `allowed`. */
static enum dp_err mio_check_keys(json_t *obj, const char *const *allowed, const char *where,
                                  struct dp_errinfo *ei)
{
    const char *key;
    json_t *v;
    json_object_foreach (obj, key, v) {
        int ok = 0;
        for (int i = 0; allowed[i] != NULL && !ok; i++)
            ok = strcmp(key, allowed[i]) == 0;
        if (!ok) {
            char kb[MIO_NAME_SHOW + 4];
            return dp_errinfo_set(ei, DP_EFORMAT, "graph: %s: unknown field '%s'", where,
                                  mio__clip(kb, key));
        }
    }
    return DP_OK;
}

/* Fills the struct at base from obj (a JSON object or NULL) using the field table. */
static enum dp_err mio_fields_from_json(const struct mio_field *fields, int n_fields, json_t *obj,
                                        void *base, const char *where, struct dp_errinfo *ei)
{
    char kb[MIO_NAME_SHOW + 4];
    if (obj == NULL)
        return DP_OK;
    if (!json_is_object(obj))
        return dp_errinfo_set(ei, DP_EFORMAT, "graph: %s is not a JSON object", where);
    const char *key;
    json_t *v;
    json_object_foreach (obj, key, v) {
        const struct mio_field *fd = NULL;
        for (int i = 0; i < n_fields && fd == NULL; i++) {
            if (strcmp(fields[i].name, key) == 0)
                fd = &fields[i];
        }
        if (fd == NULL)
            return dp_errinfo_set(ei, DP_EFORMAT, "graph: %s: unknown field '%s'", where,
                                  mio__clip(kb, key));
        char *dst = (char *)base + fd->offset;
        if (fd->kind == MIO_INT) {
            if (!json_is_integer(v))
                return dp_errinfo_set(ei, DP_EFORMAT, "graph: %s: '%s' must be an integer", where,
                                      fd->name);
            json_int_t x = json_integer_value(v);
            if ((double)x < fd->min || (double)x > fd->max)
                return dp_errinfo_set(ei, DP_EFORMAT,
                                      "graph: %s: '%s' = %lld is out of range [%.0f, %.0f]", where,
                                      fd->name, (long long)x, fd->min, fd->max);
            int xi = (int)x;
            memcpy(dst, &xi, sizeof(xi));
        } else if (fd->kind == MIO_FLOAT) {
            if (!json_is_number(v))
                return dp_errinfo_set(ei, DP_EFORMAT, "graph: %s: '%s' must be a number", where,
                                      fd->name);
            double x = json_number_value(v);
            if (!(x >= fd->min && x <= fd->max))
                return dp_errinfo_set(ei, DP_EFORMAT,
                                      "graph: %s: '%s' = %g is out of range [%g, %g]", where,
                                      fd->name, x, fd->min, fd->max);
            float xf = (float)x;
            memcpy(dst, &xf, sizeof(xf));
        } else {
            if (!json_is_string(v))
                return dp_errinfo_set(ei, DP_EFORMAT, "graph: %s: '%s' must be a string", where,
                                      fd->name);
            size_t len = json_string_length(v);
            size_t cap = (size_t)fd->max;
            if (len >= cap || strlen(json_string_value(v)) != len)
                return dp_errinfo_set(ei, DP_EFORMAT,
                                      "graph: %s: '%s' must be a string of fewer than %zu bytes",
                                      where, fd->name, cap);
            memset(dst, 0, cap);
            memcpy(dst, json_string_value(v), len);
        }
    }
    return DP_OK;
}

/* Validates the "input" shape [C, H, W] and applies it to m. */
static enum dp_err mio_input_from_json(json_t *in, struct dp_model *m, struct dp_errinfo *ei)
{
    json_int_t d[3];
    if (!json_is_array(in) || json_array_size(in) != 3)
        return dp_errinfo_set(ei, DP_EFORMAT, "graph: \"input\" must be an array [C, H, W]");
    for (size_t i = 0; i < 3; i++) {
        json_t *v = json_array_get(in, i);
        if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > MIO_DIM_MAX)
            return dp_errinfo_set(ei, DP_EFORMAT,
                                  "graph: \"input\" entry %zu must be an integer in [1, %d]", i,
                                  MIO_DIM_MAX);
        d[i] = json_integer_value(v);
    }
    /* The same bound dp_model_finalize puts on every activation. */
    if (d[0] * d[1] * d[2] > ((json_int_t)1 << 28))
        return dp_errinfo_set(ei, DP_ETOOBIG, "graph: input %lldx%lldx%lld is too large",
                              (long long)d[0], (long long)d[1], (long long)d[2]);
    m->in_c = (int)d[0];
    m->in_h = (int)d[1];
    m->in_w = (int)d[2];
    return DP_OK;
}

/* Validates layer number i (JSON lj) and appends it to m. */
static enum dp_err mio_layer_from_json(json_t *lj, int i, struct dp_model *m, struct dp_errinfo *ei)
{
    static const char *const keys[] = {"name", "op", "inputs", "attrs", "compress", NULL};
    char nb[MIO_NAME_SHOW + 4], ib[MIO_NAME_SHOW + 4], where[MIO_NAME_SHOW + 32];
    enum dp_err err;

    snprintf(where, sizeof(where), "layer %d", i);
    if (!json_is_object(lj))
        return dp_errinfo_set(ei, DP_EFORMAT, "graph: %s is not a JSON object", where);
    json_t *jname = json_object_get(lj, "name");
    if (!json_is_string(jname))
        return dp_errinfo_set(ei, DP_EFORMAT, "graph: %s: \"name\" is missing or not a string",
                              where);
    const char *name = json_string_value(jname);
    size_t name_len = json_string_length(jname);
    if (name_len == 0 || name_len >= DP_NAME_MAX || strlen(name) != name_len)
        return dp_errinfo_set(ei, DP_EFORMAT, "graph: %s: name '%s' must be 1 to %d bytes", where,
                              mio__clip(nb, name), DP_NAME_MAX - 1);
    snprintf(where, sizeof(where), "layer '%s'", name);
    if (strcmp(name, MIO_INPUT_NAME) == 0)
        return dp_errinfo_set(ei, DP_EFORMAT,
                              "graph: %s: the name '" MIO_INPUT_NAME "' is reserved for the "
                              "model input",
                              where);
    if (dp_model_layer_find(m, name) >= 0)
        return dp_errinfo_set(ei, DP_EFORMAT, "graph: %s: duplicate layer name", where);
    err = mio_check_keys(lj, keys, where, ei);
    if (err)
        return err;

    json_t *jop = json_object_get(lj, "op");
    enum dp_op op;
    if (!json_is_string(jop))
        return dp_errinfo_set(ei, DP_EFORMAT, "graph: %s: \"op\" is missing or not a string",
                              where);
    if (dp_op_from_name(json_string_value(jop), &op) != DP_OK)
        return dp_errinfo_set(ei, DP_EFORMAT, "graph: %s: unknown op '%s'", where,
                              mio__clip(ib, json_string_value(jop)));

    json_t *jin = json_object_get(lj, "inputs");
    const int want = dp_op_info(op)->n_inputs;
    if (!json_is_array(jin) || json_array_size(jin) != (size_t)want)
        return dp_errinfo_set(ei, DP_EFORMAT,
                              "graph: %s: \"inputs\" must be an array of %d layer name(s) (op %s)",
                              where, want, dp_op_name(op));
    int inputs[DP_MAX_INPUTS];
    for (int k = 0; k < want; k++) {
        const char *iname = json_string_value(json_array_get(jin, (size_t)k));
        if (iname == NULL)
            return dp_errinfo_set(ei, DP_EFORMAT, "graph: %s: input %d is not a string", where, k);
        inputs[k] =
            strcmp(iname, MIO_INPUT_NAME) == 0 ? DP_MODEL_INPUT : dp_model_layer_find(m, iname);
        if (inputs[k] == -1 && strcmp(iname, MIO_INPUT_NAME) != 0)
            return dp_errinfo_set(
                ei, DP_EFORMAT,
                "graph: %s: input '%s' is not an earlier layer or '" MIO_INPUT_NAME "'", where,
                mio__clip(ib, iname));
    }

    struct dp_op_attrs a;
    struct dp_layer_compress comp;
    memset(&a, 0, sizeof(a));
    memset(&comp, 0, sizeof(comp));
    char sub[MIO_NAME_SHOW + 48];
    snprintf(sub, sizeof(sub), "%s: \"attrs\"", where);
    err = mio_fields_from_json(mio_attr_fields, MIO_N(mio_attr_fields),
                               json_object_get(lj, "attrs"), &a, sub, ei);
    if (err)
        return err;
    snprintf(sub, sizeof(sub), "%s: \"compress\"", where);
    err = mio_fields_from_json(mio_comp_fields, MIO_N(mio_comp_fields),
                               json_object_get(lj, "compress"), &comp, sub, ei);
    if (err)
        return err;

    int idx = dp_model_add_layer(m, name, op, inputs, want, &a, ei);
    if (idx < 0)
        return (enum dp_err)idx;
    m->layers[idx].comp = comp;
    return DP_OK;
}

static enum dp_err mio_graph_from_json_capped(const json_t *graph, size_t max_floats,
                                              struct dp_model **out, struct dp_errinfo *ei);

enum dp_err dp_model_graph_from_json(const json_t *graph, struct dp_model **out,
                                     struct dp_errinfo *ei)
{
    return mio_graph_from_json_capped(graph, DP_MODEL_GRAPH_MAX_FLOATS, out, ei);
}

/* Builds the model and allocates its parameters only when they number at
 * most max_floats, so a small file cannot make the loader commit gigabytes. */
static enum dp_err mio_graph_from_json_capped(const json_t *graph, size_t max_floats,
                                              struct dp_model **out, struct dp_errinfo *ei)
{
    static const char *const keys[] = {"format", "version",       "input",
                                       "layers", "normalization", NULL};
    static const char *const norm_keys[] = {"mean", "std", NULL};
    enum dp_err err = DP_OK;
    struct dp_model *m = NULL;
    /* jansson's getters take non-const objects; nothing here modifies g. */
    json_t *g = (json_t *)graph;
    *out = NULL;

    if (!json_is_object(g)) {
        err = dp_errinfo_set(ei, DP_EFORMAT, "graph: not a JSON object");
        goto out;
    }
    const char *format = json_string_value(json_object_get(g, "format"));
    if (format == NULL || strcmp(format, DP_GRAPH_FORMAT) != 0) {
        err = dp_errinfo_set(ei, DP_EFORMAT,
                             "graph: \"format\" must be \"" DP_GRAPH_FORMAT "\"; this is not a "
                             "dnnpress graph");
        goto out;
    }
    json_t *ver = json_object_get(g, "version");
    if (!json_is_integer(ver) || json_integer_value(ver) < 1) {
        err = dp_errinfo_set(ei, DP_EFORMAT, "graph: \"version\" must be a positive integer");
        goto out;
    }
    if (json_integer_value(ver) > DP_GRAPH_VERSION) {
        err = dp_errinfo_set(ei, DP_EUNSUPPORTED,
                             "graph: format version %lld is newer than this build reads (%d); "
                             "upgrade dnnpress",
                             (long long)json_integer_value(ver), DP_GRAPH_VERSION);
        goto out;
    }
    err = mio_check_keys(g, keys, "top level", ei);
    if (err)
        goto out;
    json_t *layers = json_object_get(g, "layers");
    if (!json_is_array(layers) || json_array_size(layers) == 0) {
        err = dp_errinfo_set(ei, DP_EFORMAT, "graph: \"layers\" must be a non-empty array");
        goto out;
    }
    if (json_array_size(layers) > DP_MODEL_LAYERS_MAX) {
        err = dp_errinfo_set(ei, DP_ETOOBIG, "graph: %zu layers exceed the limit of %d",
                             json_array_size(layers), DP_MODEL_LAYERS_MAX);
        goto out;
    }
    m = dp_model_new(1, 1, 1);
    if (m == NULL) {
        err = dp_errinfo_set(ei, DP_ENOMEM, "out of memory building the model");
        goto out;
    }
    err = mio_input_from_json(json_object_get(g, "input"), m, ei);
    if (err)
        goto out;
    json_t *norm = json_object_get(g, "normalization");
    if (norm != NULL) {
        err = json_is_object(norm)
                  ? mio_check_keys(norm, norm_keys, "normalization", ei)
                  : dp_errinfo_set(ei, DP_EFORMAT, "graph: \"normalization\" must be an object");
        if (!err)
            err = dp_model_norm_from_json(norm, m, ei);
        if (err)
            goto out;
    }
    for (size_t i = 0; i < json_array_size(layers); i++) {
        err = mio_layer_from_json(json_array_get(layers, i), (int)i, m, ei);
        if (err)
            goto out;
    }
    err = dp_model_infer(m, ei);
    if (err)
        goto out;
    if (m->n_floats > max_floats) {
        err = dp_errinfo_set(ei, DP_ETOOBIG,
                             "the graph declares %zu parameters, more than the %zu allowed here",
                             m->n_floats, max_floats);
        goto out;
    }
    err = dp_model_finalize(m, ei);
    if (err)
        goto out;
    *out = m;
    m = NULL;
out:
    dp_model_free(m);
    return err;
}

/* ---- Checkpoints --------------------------------------------------------- */

/* Serialises the graph JSON of m into a new JSON string value. */
static enum dp_err mio_graph_string(const struct dp_model *m, json_t **out, struct dp_errinfo *ei)
{
    enum dp_err err = DP_OK;
    json_t *g = NULL;
    char *buf = NULL;
    *out = NULL;

    err = dp_model_graph_to_json(m, &g, ei);
    if (err)
        goto out;
    /* Nine digits print every float exactly; shorter forms were chosen above. */
    const size_t flags = JSON_COMPACT | JSON_REAL_PRECISION(9);
    size_t len = json_dumpb(g, NULL, 0, flags);
    buf = len ? dp_malloc(len) : NULL;
    if (buf == NULL || json_dumpb(g, buf, len, flags) != len) {
        err = dp_errinfo_set(ei, DP_ENOMEM, "out of memory serialising the graph");
        goto out;
    }
    *out = json_stringn(buf, len);
    if (*out == NULL)
        err = dp_errinfo_set(ei, DP_ENOMEM, "out of memory serialising the graph");
out:
    dp_free(buf);
    json_decref(g);
    return err;
}

enum dp_err dp_model_save(const struct dp_model *m, const char *path, const json_t *extra_meta,
                          struct dp_errinfo *ei)
{
    char kb[MIO_NAME_SHOW + 4];
    enum dp_err err = DP_OK;
    json_t *meta = NULL, *gstr = NULL;
    struct dp_st_tensor *ts = NULL;

    if (!m->finalized || m->data == NULL) {
        err = dp_errinfo_set(ei, DP_EINVAL, "%s: the model must be finalized before saving", path);
        goto out;
    }
    if (extra_meta != NULL) {
        if (!json_is_object(extra_meta)) {
            err = dp_errinfo_set(ei, DP_EINVAL, "%s: extra metadata must be a JSON object", path);
            goto out;
        }
        const char *key;
        json_t *v;
        json_object_foreach ((json_t *)extra_meta, key, v) {
            if (mio_has_prefix(key, MIO_RESERVED) || !json_is_string(v)) {
                err = dp_errinfo_set(ei, DP_EINVAL,
                                     "%s: extra metadata key '%s' is reserved or its value is "
                                     "not a string",
                                     path, mio__clip(kb, key));
                goto out;
            }
        }
        meta = json_deep_copy(extra_meta);
    } else {
        meta = json_object();
    }
    if (meta == NULL) {
        err = dp_errinfo_set(ei, DP_ENOMEM, "%s: out of memory", path);
        goto out;
    }
    err = mio_graph_string(m, &gstr, ei);
    if (err)
        goto out;
    int bad = json_object_set_new(meta, DP_MODEL_META_GRAPH, gstr) != 0;
    gstr = NULL;
    if (!bad && m->norm.n_c > 0) {
        /* The graph holds it too; this copy is for readers of the file. */
        json_t *nj = dp_model_norm_to_json(m);
        const size_t flags = JSON_COMPACT | JSON_REAL_PRECISION(9);
        size_t len = nj != NULL ? json_dumpb(nj, NULL, 0, flags) : 0;
        char *txt = len > 0 ? dp_malloc(len) : NULL;
        bad = txt == NULL || json_dumpb(nj, txt, len, flags) != len ||
              json_object_set_new(meta, DP_MODEL_META_NORM, json_stringn(txt, len)) != 0;
        json_decref(nj);
        dp_free(txt);
    }
    if (bad) {
        err = dp_errinfo_set(ei, DP_ENOMEM, "%s: out of memory", path);
        goto out;
    }

    ts = dp_calloc(m->n_params ? (size_t)m->n_params : 1, sizeof(*ts));
    if (ts == NULL) {
        err = dp_errinfo_set(ei, DP_ENOMEM, "%s: out of memory", path);
        goto out;
    }
    for (int i = 0; i < m->n_params; i++) {
        const struct dp_param *p = &m->params[i];
        ts[i].name = p->name;
        ts[i].dtype = DP_ST_F32;
        ts[i].ndim = p->ndim;
        for (int d = 0; d < p->ndim && d < DP_MAX_DIMS; d++)
            ts[i].shape[d] = p->shape[d];
        ts[i].data = dp_param_data(m, p);
    }
    err = dp_st_write(path, ts, m->n_params, meta, ei);
out:
    dp_free(ts);
    json_decref(gstr);
    json_decref(meta);
    return err;
}

/* Copies every parameter of m from f, checking presence, dtype and shape. */
static enum dp_err mio_params_from_file(struct dp_model *m, const struct dp_st_file *f,
                                        struct dp_errinfo *ei)
{
    const char *L = dp_st_label(f);
    char nb[MIO_NAME_SHOW + 4], s1[96], s2[96];
    for (int i = 0; i < m->n_params; i++) {
        const struct dp_param *p = &m->params[i];
        const struct dp_st_tensor *t = dp_st_find(f, p->name);
        if (t == NULL)
            return dp_errinfo_set(ei, DP_EFORMAT,
                                  "%s: tensor '%s' is missing (the graph declares it with shape "
                                  "%s)",
                                  L, mio__clip(nb, p->name),
                                  mio_shape_str(s1, sizeof(s1), p->ndim, p->shape));
        int same = t->ndim == p->ndim;
        for (int d = 0; same && d < p->ndim; d++)
            same = t->shape[d] == p->shape[d];
        if (!same)
            return dp_errinfo_set(ei, DP_ESHAPE, "%s: tensor '%s' has shape %s, the graph needs %s",
                                  L, mio__clip(nb, p->name),
                                  mio_shape_str(s1, sizeof(s1), t->ndim, t->shape),
                                  mio_shape_str(s2, sizeof(s2), p->ndim, p->shape));
        enum dp_err err =
            dp_st_tensor_copy(f, t, DP_ST_F32, dp_param_data(m, p), p->numel * sizeof(float), ei);
        if (err)
            return err;
    }
    if (dp_st_n_tensors(f) != m->n_params) {
        /* Names are unique and every parameter was found, so some tensor is unknown. */
        for (int i = 0; i < dp_st_n_tensors(f); i++) {
            const struct dp_st_tensor *t = dp_st_tensor_at(f, i);
            if (dp_model_param_find(m, t->name) == NULL)
                return dp_errinfo_set(ei, DP_EFORMAT,
                                      "%s: tensor '%s' is not a parameter of the graph", L,
                                      mio__clip(nb, t->name));
        }
    }
    return DP_OK;
}

/* Copies f's metadata, less the reserved keys, into a new object. */
static enum dp_err mio_extra_from_file(const struct dp_st_file *f, json_t **out,
                                       struct dp_errinfo *ei)
{
    json_t *extra = json_object();
    *out = NULL;
    if (extra == NULL)
        return dp_errinfo_set(ei, DP_ENOMEM, "%s: out of memory", dp_st_label(f));
    const char *key;
    json_t *v;
    json_object_foreach ((json_t *)dp_st_metadata(f), key, v) {
        if (mio_has_prefix(key, MIO_RESERVED))
            continue;
        if (mio_set(extra, key, json_deep_copy(v))) {
            json_decref(extra);
            return dp_errinfo_set(ei, DP_ENOMEM, "%s: out of memory", dp_st_label(f));
        }
    }
    *out = extra;
    return DP_OK;
}

enum dp_err dp_model_load(const char *path, struct dp_model **out, json_t **extra_meta_out,
                          struct dp_errinfo *ei)
{
    enum dp_err err = DP_OK;
    struct dp_st_file *f = NULL;
    json_t *graph = NULL, *extra = NULL;
    struct dp_model *m = NULL;
    *out = NULL;
    if (extra_meta_out != NULL)
        *extra_meta_out = NULL;

    err = dp_st_read(path, DP_MODEL_FILE_MAX, &f, ei);
    if (err)
        goto out;
    const char *L = dp_st_label(f);
    const char *gtext = dp_st_meta_get(f, DP_MODEL_META_GRAPH);
    if (gtext == NULL) {
        err = dp_errinfo_set(ei, DP_EFORMAT,
                             "%s: no \"" DP_MODEL_META_GRAPH "\" metadata: not a dnnpress "
                             "checkpoint (write it with dp_model_save, or import the model as "
                             "ONNX)",
                             L);
        goto out;
    }
    json_error_t jerr;
    memset(&jerr, 0, sizeof(jerr));
    graph = json_loads(gtext, JSON_REJECT_DUPLICATES, &jerr);
    if (graph == NULL) {
        /* jansson leaves the text empty when its lexer cannot allocate. */
        if (json_error_code(&jerr) == json_error_out_of_memory || jerr.text[0] == '\0')
            err = dp_errinfo_set(ei, DP_ENOMEM, "%s: out of memory parsing the graph", L);
        else
            err = dp_errinfo_set(ei, DP_EFORMAT, "%s: the graph metadata is not valid JSON: %s", L,
                                 jerr.text);
        goto out;
    }
    struct dp_errinfo sub = {DP_OK, ""};
    /* Every parameter is stored as F32 in the file, so the data section
     * bounds how many the graph may declare. */
    size_t have = 0;
    for (int i = 0; i < dp_st_n_tensors(f); i++)
        have += dp_st_tensor_at(f, i)->data_len / sizeof(float);
    /* Slack of 16M floats (64 MB) so a file missing a tensor still reaches
     * the per-tensor check, whose message names it. */
    err = mio_graph_from_json_capped(graph, have + ((size_t)1 << 24), &m, &sub);
    if (err) {
        dp_errinfo_set(ei, err, "%s: %s", L, dp_errinfo_msg(&sub, err));
        goto out;
    }
    err = mio_params_from_file(m, f, ei);
    if (err)
        goto out;
    if (extra_meta_out != NULL) {
        err = mio_extra_from_file(f, &extra, ei);
        if (err)
            goto out;
    }
    *out = m;
    m = NULL;
    if (extra_meta_out != NULL) {
        *extra_meta_out = extra;
        extra = NULL;
    }
out:
    json_decref(extra);
    json_decref(graph);
    dp_model_free(m);
    dp_st_free(f);
    return err;
}
