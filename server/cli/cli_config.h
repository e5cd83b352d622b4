/*
 * The CLI's configuration file: the server URL and the team token that
 * `dnnpress login` stores. It holds a secret, so it is written with mode
 * 0600 (through a temporary file and a rename, never readable by others in
 * between) and a file that others can read is refused until fixed.
 */
#ifndef DP_SERVER_CLI_CLI_CONFIG_H
#define DP_SERVER_CLI_CLI_CONFIG_H

#include <stddef.h>

#include "common/err.h"

struct cli_config {
    char server[512]; /* "" when not set */
    char token[256];  /* "" when not set */
    char ca[1024];    /* PEM CA file for an https server; "" = the system's store */
};

/*
 * The config file's path: $DNNPRESS_CONFIG if set, else
 * $HOME/.config/dnnpress/config.json. DP_EINVAL when neither is set.
 */
enum dp_err cli_config_path(char *path, size_t cap, struct dp_errinfo *ei);

/*
 * Reads path into c. A missing file is not an error (c stays empty). A file
 * readable or writable by group or others is DP_EINVAL (ei says how to fix
 * it); a malformed one DP_EFORMAT naming the problem.
 */
enum dp_err cli_config_load(const char *path, struct cli_config *c, struct dp_errinfo *ei);

/* Writes c to path with mode 0600, creating the parent directory (0700) if needed. */
enum dp_err cli_config_save(const char *path, const struct cli_config *c, struct dp_errinfo *ei);

#endif
