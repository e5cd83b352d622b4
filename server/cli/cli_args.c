/*
 * Command flags (see cli_args.h).
 */
#include "server/cli/cli_args.h"

#include <stdio.h>
#include <string.h>

static const char *cli_args_find(const char *const *list, const char *name, size_t len)
{
    for (size_t i = 0; list != NULL && list[i] != NULL; i++)
        if (strlen(list[i]) == len && strncmp(list[i], name, len) == 0)
            return list[i];
    return NULL;
}

int cli_args_parse(const char *cmd, int argc, char **argv, const char *const *value_flags,
                   const char *const *bool_flags, int max_pos, struct cli_args *a)
{
    memset(a, 0, sizeof(*a));
    for (int i = 0; i < argc; i++) {
        const char *s = argv[i];
        if (strncmp(s, "--", 2) != 0 || s[2] == '\0') {
            if (a->n_pos >= max_pos || a->n_pos >= CLI_ARGS_MAX) {
                fprintf(stderr, "dnnpress %s: unexpected argument '%s' (see --help)\n", cmd, s);
                return -1;
            }
            a->pos[a->n_pos++] = s;
            continue;
        }
        const char *name = s + 2;
        const char *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        const char *vf = cli_args_find(value_flags, name, len);
        const char *bf = cli_args_find(bool_flags, name, len);
        if (vf == NULL && bf == NULL) {
            fprintf(stderr, "dnnpress %s: unknown option '--%.*s' (see --help)\n", cmd, (int)len,
                    name);
            return -1;
        }
        if (a->n_flags >= CLI_ARGS_MAX) {
            fprintf(stderr, "dnnpress %s: too many options\n", cmd);
            return -1;
        }
        const char *value = "";
        if (vf != NULL) {
            if (eq != NULL) {
                value = eq + 1;
            } else if (i + 1 < argc) {
                value = argv[++i];
            } else {
                fprintf(stderr, "dnnpress %s: --%s needs a value\n", cmd, vf);
                return -1;
            }
        } else if (eq != NULL) {
            fprintf(stderr, "dnnpress %s: --%s takes no value\n", cmd, bf);
            return -1;
        }
        a->names[a->n_flags] = vf ? vf : bf;
        a->values[a->n_flags++] = value;
    }
    return 0;
}

const char *cli_arg(const struct cli_args *a, const char *name)
{
    const char *v = NULL;
    for (int i = 0; i < a->n_flags; i++)
        if (strcmp(a->names[i], name) == 0)
            v = a->values[i]; /* the last one wins, as usual */
    return v;
}

int cli_flag(const struct cli_args *a, const char *name)
{
    return cli_arg(a, name) != NULL;
}
