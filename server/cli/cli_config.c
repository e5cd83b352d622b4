/*
 * The config file (see cli_config.h). JSON: {"server": "...", "token": "...",
 * "ca": "..."} ("ca" only when login was given --ca);
 * unknown fields are kept out (a typo should not pass silently) and named.
 */
#include "server/cli/cli_config.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum dp_err cli_config_path(char *path, size_t cap, struct dp_errinfo *ei)
{
    const char *env = getenv("DNNPRESS_CONFIG");
    const char *home = getenv("HOME");
    int n;
    if (env != NULL && *env != '\0')
        n = snprintf(path, cap, "%s", env);
    else if (home != NULL && *home != '\0')
        n = snprintf(path, cap, "%s/.config/dnnpress/config.json", home);
    else
        return dp_errinfo_set(ei, DP_EINVAL, "neither DNNPRESS_CONFIG nor HOME is set");
    if (n < 0 || (size_t)n >= cap)
        return dp_errinfo_set(ei, DP_EINVAL, "config path too long");
    return DP_OK;
}

static enum dp_err cli_config_str(json_t *root, const char *key, char *out, size_t cap,
                                  const char *path, struct dp_errinfo *ei)
{
    json_t *v = json_object_get(root, key);
    if (v == NULL)
        return DP_OK;
    if (!json_is_string(v))
        return dp_errinfo_set(ei, DP_EFORMAT, "%s: \"%s\" must be a string", path, key);
    if (json_string_length(v) >= cap)
        return dp_errinfo_set(ei, DP_EFORMAT, "%s: \"%s\" is longer than %zu bytes", path, key,
                              cap - 1);
    memcpy(out, json_string_value(v), json_string_length(v) + 1);
    return DP_OK;
}

enum dp_err cli_config_load(const char *path, struct cli_config *c, struct dp_errinfo *ei)
{
    memset(c, 0, sizeof(*c));
    struct stat st;
    if (stat(path, &st) != 0) {
        if (errno == ENOENT)
            return DP_OK;
        return dp_errinfo_set(ei, DP_EIO, "%s: %s", path, strerror(errno));
    }
    if ((st.st_mode & 077) != 0)
        return dp_errinfo_set(ei, DP_EINVAL,
                              "%s holds a token but others may read it (mode %03o); run "
                              "`chmod 600 %s`",
                              path, (unsigned)(st.st_mode & 0777), path);
    if (st.st_size > 65536)
        return dp_errinfo_set(ei, DP_ETOOBIG, "%s: larger than 64 KiB, not a config file", path);
    json_error_t je;
    json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
    if (root == NULL)
        return dp_errinfo_set(ei, DP_EFORMAT, "%s:%d: %s", path, je.line, je.text);
    enum dp_err err = DP_OK;
    if (!json_is_object(root))
        err = dp_errinfo_set(ei, DP_EFORMAT, "%s: must be a JSON object", path);
    const char *key;
    json_t *v;
    json_object_foreach (root, key, v) {
        if (!err && strcmp(key, "server") != 0 && strcmp(key, "token") != 0 &&
            strcmp(key, "ca") != 0)
            err = dp_errinfo_set(ei, DP_EFORMAT, "%s: unknown field \"%.64s\"", path, key);
    }
    if (!err)
        err = cli_config_str(root, "server", c->server, sizeof(c->server), path, ei);
    if (!err)
        err = cli_config_str(root, "token", c->token, sizeof(c->token), path, ei);
    if (!err)
        err = cli_config_str(root, "ca", c->ca, sizeof(c->ca), path, ei);
    json_decref(root);
    return err;
}

enum dp_err cli_config_save(const char *path, const struct cli_config *c, struct dp_errinfo *ei)
{
    char dir[1024], tmp[1100];
    int n = snprintf(dir, sizeof(dir), "%s", path);
    if (n < 0 || (size_t)n >= sizeof(dir))
        return dp_errinfo_set(ei, DP_EINVAL, "config path too long");
    char *slash = strrchr(dir, '/');
    if (slash != NULL && slash != dir) {
        *slash = '\0';
        /* ~/.config may not exist yet either. */
        char *p = strchr(dir + 1, '/');
        for (; p != NULL; p = strchr(p + 1, '/')) {
            *p = '\0';
            mkdir(dir, 0700);
            *p = '/';
        }
        if (mkdir(dir, 0700) != 0 && errno != EEXIST)
            return dp_errinfo_set(ei, DP_EIO, "cannot create %s: %s", dir, strerror(errno));
    }
    snprintf(tmp, sizeof(tmp), "%s.tmp%ld", path, (long)getpid());
    json_t *root = json_pack("{s:s, s:s}", "server", c->server, "token", c->token);
    if (root != NULL && c->ca[0] && json_object_set_new(root, "ca", json_string(c->ca)) != 0) {
        json_decref(root);
        root = NULL;
    }
    if (root == NULL)
        return dp_errinfo_set(ei, DP_ENOMEM, "out of memory");
    size_t len = json_dumpb(root, NULL, 0, JSON_INDENT(2));
    char buf[2048];
    enum dp_err err = DP_OK;
    if (len + 1 > sizeof(buf) || json_dumpb(root, buf, len, JSON_INDENT(2)) != len)
        err = dp_errinfo_set(ei, DP_ETOOBIG, "config too large");
    json_decref(root);
    if (err)
        return err;
    buf[len++] = '\n';
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_EXCL, 0600);
    if (fd < 0)
        return dp_errinfo_set(ei, DP_EIO, "cannot create %s: %s", tmp, strerror(errno));
    /* The umask cannot widen 0600, but an inherited ACL could: be explicit. */
    if (fchmod(fd, 0600) != 0 || write(fd, buf, len) != (ssize_t)len || fsync(fd) != 0)
        err = dp_errinfo_set(ei, DP_EIO, "cannot write %s: %s", tmp, strerror(errno));
    if (close(fd) != 0 && !err)
        err = dp_errinfo_set(ei, DP_EIO, "cannot write %s: %s", tmp, strerror(errno));
    if (!err && rename(tmp, path) != 0)
        err = dp_errinfo_set(ei, DP_EIO, "cannot replace %s: %s", path, strerror(errno));
    if (err)
        unlink(tmp);
    return err;
}
