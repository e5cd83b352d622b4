/*
 * Command-line parsing for the CLI's commands: positional arguments and
 * "--flag value", "--flag=value" or boolean "--flag", each command naming
 * the flags it accepts so that a typo is an error, not a silent default.
 */
#ifndef DP_SERVER_CLI_CLI_ARGS_H
#define DP_SERVER_CLI_CLI_ARGS_H

#define CLI_ARGS_MAX 16

struct cli_args {
    const char *pos[CLI_ARGS_MAX]; /* borrowed from argv */
    int n_pos;
    const char *names[CLI_ARGS_MAX];  /* flags given, without "--" (borrowed from the spec) */
    const char *values[CLI_ARGS_MAX]; /* their values ("" for booleans) */
    int n_flags;
};

/*
 * Parses argv[0..argc-1] (after the command name). value_flags and
 * bool_flags are NULL-terminated lists of names without "--". Returns 0, or
 * -1 after printing "dnnpress CMD: <problem>" on stderr.
 */
int cli_args_parse(const char *cmd, int argc, char **argv, const char *const *value_flags,
                   const char *const *bool_flags, int max_pos, struct cli_args *a);

/* The value of flag name, or NULL when it was not given. */
const char *cli_arg(const struct cli_args *a, const char *name);

/* Whether boolean flag name was given. */
int cli_flag(const struct cli_args *a, const char *name);

#endif
