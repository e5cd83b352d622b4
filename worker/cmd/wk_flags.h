/*
 * Command-line flags of the worker's offline commands, described once in a
 * table per command ({name, type, offset, min, max, help}) that drives
 * parsing, bounds checking and --help (STYLE rule 23).
 */
#ifndef DP_WORKER_CMD_WK_FLAGS_H
#define DP_WORKER_CMD_WK_FLAGS_H

#include <stddef.h>
#include <stdio.h>

enum wk_flag_type {
    WK_STR,   /* const char * (borrowed from argv) */
    WK_INT,   /* long, in [min, max] */
    WK_FLOAT, /* double, finite, in [min, max] */
    WK_BOOL,  /* long set to 1 when the flag is present */
};

struct wk_flag {
    const char *name; /* without the leading "--" */
    enum wk_flag_type type;
    size_t offset; /* of the field in the command's options struct */
    double min, max;
    const char *help;
};

/*
 * Parses "--name value", "--name=value" and boolean "--name" into opts.
 * Returns 0 on success, 1 when --help or -h was given (the caller prints
 * its help), -1 after printing "cmd: <what is wrong>" on stderr.
 */
int wk_flags_parse(const char *cmd, const struct wk_flag *flags, size_t n_flags, void *opts,
                   int argc, char **argv);

/* Prints one "  --name  help" line per flag. */
void wk_flags_help(FILE *f, const struct wk_flag *flags, size_t n_flags);

/* Peak resident set size of this process in bytes, -1 when unknown. */
long wk_peak_rss(void);

/* Whether s ends with suffix. */
int wk_has_suffix(const char *s, const char *suffix);

#endif
