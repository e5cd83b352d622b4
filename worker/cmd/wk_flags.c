/*
 * Flag tables for the worker's commands (see wk_flags.h).
 */
#include "worker/cmd/wk_flags.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

static int wk_flag_set(const char *cmd, void *opts, const struct wk_flag *fl, const char *val)
{
    char *base = (char *)opts + fl->offset;
    char *end = NULL;
    errno = 0;
    switch (fl->type) {
        case WK_STR:
            *(const char **)(void *)base = val;
            return 0;
        case WK_BOOL:
            *(long *)(void *)base = 1;
            return 0;
        case WK_INT: {
            long v = strtol(val, &end, 10);
            if (errno || end == val || *end != '\0' || v < fl->min || v > fl->max) {
                fprintf(stderr, "%s: --%s must be an integer in [%.0f, %.0f], got '%s'\n", cmd,
                        fl->name, fl->min, fl->max, val);
                return -1;
            }
            *(long *)(void *)base = v;
            return 0;
        }
        case WK_FLOAT: {
            double v = strtod(val, &end);
            if (errno || end == val || *end != '\0' || !isfinite(v) || v < fl->min || v > fl->max) {
                fprintf(stderr, "%s: --%s must be a number in [%g, %g], got '%s'\n", cmd, fl->name,
                        fl->min, fl->max, val);
                return -1;
            }
            *(double *)(void *)base = v;
            return 0;
        }
    }
    return -1;
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
        if (wk_flag_set(cmd, opts, fl, val ? val : "1") != 0)
            return -1;
    }
    return 0;
}

void wk_flags_help(FILE *f, const struct wk_flag *flags, size_t n_flags)
{
    for (size_t i = 0; i < n_flags; i++)
        fprintf(f, "  --%-13s %s\n", flags[i].name, flags[i].help);
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
