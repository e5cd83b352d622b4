/*
 * Option tables for the worker's commands (see wk_flags.h). The command
 * line, the defaults and a job's JSON all go through one setter per type,
 * so a value means the same and is bounded the same wherever it comes from.
 */
#include "worker/cmd/wk_flags.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "common/assert.h"

static void *wk_flag_field(void *opts, const struct wk_flag *fl)
{
    return (char *)opts + fl->offset;
}

/* Sets fl's field from its command-line text; ei says what is wrong. */
static enum dp_err wk_flag_set(void *opts, const struct wk_flag *fl, const char *val,
                               struct dp_errinfo *ei)
{
    void *field = wk_flag_field(opts, fl);
    char *end = NULL;
    errno = 0;
    switch (fl->type) {
        case WK_STR:
            *(const char **)field = val;
            return DP_OK;
        case WK_BOOL:
            *(long *)field = 1;
            return DP_OK;
        case WK_INT: {
            long v = strtol(val, &end, 10);
            if (errno || end == val || *end != '\0' || v < fl->min || v > fl->max)
                return dp_errinfo_set(ei, DP_EINVAL,
                                      "--%s must be an integer in [%.0f, %.0f], got '%s'", fl->name,
                                      fl->min, fl->max, val);
            *(long *)field = v;
            return DP_OK;
        }
        case WK_FLOAT: {
            double v = strtod(val, &end);
            if (errno || end == val || *end != '\0' || !isfinite(v) || v < fl->min || v > fl->max)
                return dp_errinfo_set(ei, DP_EINVAL, "--%s must be a number in [%g, %g], got '%s'",
                                      fl->name, fl->min, fl->max, val);
            *(double *)field = v;
            return DP_OK;
        }
    }
    return dp_errinfo_set(ei, DP_EINVAL, "--%s: unknown flag type", fl->name);
}

void wk_flags_defaults(const struct wk_flag *flags, size_t n_flags, void *opts)
{
    for (size_t i = 0; i < n_flags; i++) {
        if (flags[i].def == NULL)
            continue;
        struct dp_errinfo ei = {DP_OK, ""};
        enum dp_err err = wk_flag_set(opts, &flags[i], flags[i].def, &ei);
        DP_ASSERT(err == DP_OK);
    }
}

int wk_flags_parse(const char *cmd, const struct wk_flag *flags, size_t n_flags, void *opts,
                   int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0)
            return 1;
        if (strncmp(a, "--", 2) != 0) {
            fprintf(stderr, "%s: unexpected argument '%s' (see --help)\n", cmd, a);
            return -1;
        }
        const char *name = a + 2, *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        const struct wk_flag *fl = NULL;
        for (size_t k = 0; k < n_flags; k++) {
            if (strlen(flags[k].name) == len && strncmp(flags[k].name, name, len) == 0)
                fl = &flags[k];
        }
        if (fl == NULL) {
            fprintf(stderr, "%s: unknown option '%s' (see --help)\n", cmd, a);
            return -1;
        }
        const char *val = eq ? eq + 1 : NULL;
        if (fl->type != WK_BOOL && val == NULL) {
            if (i + 1 >= argc) {
                fprintf(stderr, "%s: --%s needs a value\n", cmd, fl->name);
                return -1;
            }
            val = argv[++i];
        }
        struct dp_errinfo ei = {DP_OK, ""};
        if (wk_flag_set(opts, fl, val ? val : "1", &ei) != DP_OK) {
            fprintf(stderr, "%s: %s\n", cmd, ei.msg);
            return -1;
        }
    }
    return 0;
}

void wk_flags_help(FILE *f, const struct wk_flag *flags, size_t n_flags)
{
    for (size_t i = 0; i < n_flags; i++) {
        fprintf(f, "  --%-13s %s", flags[i].name, flags[i].help);
        if (flags[i].def != NULL)
            fprintf(f, " (default %s)", flags[i].def);
        fputc('\n', f);
    }
}

/* Sets fl's field from the JSON value v; where.name names it in messages. */
static enum dp_err wk_flag_set_json(void *opts, const struct wk_flag *fl, const json_t *v,
                                    const char *where, struct dp_errinfo *ei)
{
    void *field = wk_flag_field(opts, fl);
    switch (fl->type) {
        case WK_STR:
            if (!json_is_string(v))
                return dp_errinfo_set(ei, DP_EINVAL, "%s.%s: must be a string", where, fl->name);
            *(const char **)field = json_string_value(v);
            return DP_OK;
        case WK_BOOL:
            if (!json_is_boolean(v))
                return dp_errinfo_set(ei, DP_EINVAL, "%s.%s: must be true or false", where,
                                      fl->name);
            *(long *)field = json_is_true(v);
            return DP_OK;
        case WK_INT: {
            if (!json_is_integer(v))
                return dp_errinfo_set(ei, DP_EINVAL, "%s.%s: must be an integer", where, fl->name);
            json_int_t x = json_integer_value(v);
            if ((double)x < fl->min || (double)x > fl->max)
                return dp_errinfo_set(ei, DP_EINVAL,
                                      "%s.%s: must be an integer in [%.0f, %.0f], got %lld", where,
                                      fl->name, fl->min, fl->max, (long long)x);
            *(long *)field = (long)x;
            return DP_OK;
        }
        case WK_FLOAT: {
            double x = json_number_value(v);
            if (!json_is_number(v) || !isfinite(x))
                return dp_errinfo_set(ei, DP_EINVAL, "%s.%s: must be a number", where, fl->name);
            if (x < fl->min || x > fl->max)
                return dp_errinfo_set(ei, DP_EINVAL, "%s.%s: must be a number in [%g, %g], got %g",
                                      where, fl->name, fl->min, fl->max, x);
            *(double *)field = x;
            return DP_OK;
        }
    }
    return dp_errinfo_set(ei, DP_EINVAL, "%s.%s: unknown flag type", where, fl->name);
}

enum dp_err wk_flags_from_json(const struct wk_flag *flags, size_t n_flags, unsigned scope,
                               const json_t *obj, const char *where, void *opts,
                               struct dp_errinfo *ei)
{
    if (obj == NULL || json_is_null(obj))
        return DP_OK;
    if (!json_is_object(obj))
        return dp_errinfo_set(ei, DP_EINVAL, "%s: must be an object", where);
    const char *key;
    json_t *v;
    json_object_foreach ((json_t *)obj, key, v) {
        const struct wk_flag *fl = NULL;
        for (size_t i = 0; i < n_flags && fl == NULL; i++)
            if ((flags[i].scope & scope) != 0 && strcmp(flags[i].name, key) == 0)
                fl = &flags[i];
        if (fl == NULL)
            return dp_errinfo_set(ei, DP_EINVAL, "%s.%.64s: not a known parameter", where, key);
        enum dp_err err = wk_flag_set_json(opts, fl, v, where, ei);
        if (err)
            return err;
    }
    return DP_OK;
}

long wk_peak_rss(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0)
        return -1;
    return ru.ru_maxrss * 1024L;
}

int wk_has_suffix(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}
