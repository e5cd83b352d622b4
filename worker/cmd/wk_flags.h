/*
 * The options of the worker's commands, described once in a table per
 * command ({name, type, offset, min, max, default, scope, help}). The one
 * table fills an options struct with its defaults, parses the command line
 * into it, prints --help, and lets the task loop set the fields a job may
 * set from the task's JSON with the same types and bounds (STYLE rule 23).
 */
#ifndef DP_WORKER_CMD_WK_FLAGS_H
#define DP_WORKER_CMD_WK_FLAGS_H

#include <jansson.h>
#include <stddef.h>
#include <stdio.h>

#include "common/err.h"

enum wk_flag_type {
    WK_STR,   /* const char * (borrowed from argv or the JSON document) */
    WK_INT,   /* long, in [min, max] */
    WK_FLOAT, /* double, finite, in [min, max] */
    WK_BOOL,  /* long, 1 when the flag is present (or true in JSON) */
};

/* Scope bits: who besides the command line may set a flag. */
#define WK_FLAG_JOB 1u /* a job's parameters (e.g. params.pretrain of a train task) */

struct wk_flag {
    const char *name; /* without the leading "--"; also the JSON field name */
    enum wk_flag_type type;
    size_t offset; /* of the field in the command's options struct */
    double min, max;
    const char *def; /* the default as typed on a command line; NULL: 0 or NULL */
    unsigned scope;  /* WK_FLAG_* bits */
    const char *help;
};

/*
 * Sets every field of opts that has a default to it. A default that does
 * not parse within its own bounds is a bug in the table and aborts.
 */
void wk_flags_defaults(const struct wk_flag *flags, size_t n_flags, void *opts);

/*
 * Parses "--name value", "--name=value" and boolean "--name" into opts
 * (call wk_flags_defaults first). Returns 0 on success, 1 when --help or
 * -h was given (the caller prints its help), -1 after printing
 * "cmd: <what is wrong>" on stderr.
 */
int wk_flags_parse(const char *cmd, const struct wk_flag *flags, size_t n_flags, void *opts,
                   int argc, char **argv);

/* Prints one "  --name  help (default X)" line per flag. */
void wk_flags_help(FILE *f, const struct wk_flag *flags, size_t n_flags);

/*
 * Sets opts from the JSON object obj (borrowed; strings stay borrowed from
 * it): each member must name a flag with a scope bit in `scope` and have
 * its type (an integer, a finite number, a string, true/false) and bounds.
 * obj may be NULL or JSON null (nothing to set). where names obj in
 * messages ("params.pretrain"). DP_EINVAL naming the field otherwise.
 */
enum dp_err wk_flags_from_json(const struct wk_flag *flags, size_t n_flags, unsigned scope,
                               const json_t *obj, const char *where, void *opts,
                               struct dp_errinfo *ei);

/* Peak resident set size of this process in bytes, -1 when unknown. */
long wk_peak_rss(void);

/* Whether s ends with suffix. */
int wk_has_suffix(const char *s, const char *suffix);

#endif
