/*
 * cli_config: the token file is written 0600, read back, and refused when
 * others may read it or when it is malformed.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "server/cli/cli_config.h"
#include "tests/unit/test_util.h"

Test(cli_config, save_load_and_refusals)
{
    char dir[256], path[400];
    dp_test_tmpdir_make(dir, sizeof(dir), "cfg");
    snprintf(path, sizeof(path), "%s/sub/config.json", dir);
    struct cli_config c, back;
    struct dp_errinfo ei = {DP_OK, ""};
    memset(&c, 0, sizeof(c));
    snprintf(c.server, sizeof(c.server), "http://127.0.0.1:9");
    snprintf(c.token, sizeof(c.token), "dp_secret_token");

    /* Missing file: empty config, no error. */
    cr_assert_eq(cli_config_load(path, &back, &ei), DP_OK);
    cr_assert_str_eq(back.token, "");

    umask(022);
    cr_assert_eq(cli_config_save(path, &c, &ei), DP_OK, "%s", ei.msg);
    struct stat st;
    cr_assert_eq(stat(path, &st), 0);
    cr_assert_eq(st.st_mode & 0777, 0600, "mode %o", st.st_mode & 0777);
    cr_assert_eq(cli_config_load(path, &back, &ei), DP_OK, "%s", ei.msg);
    cr_assert_str_eq(back.server, c.server);
    cr_assert_str_eq(back.token, c.token);

    chmod(path, 0644);
    cr_assert_eq(cli_config_load(path, &back, &ei), DP_EINVAL);
    cr_assert(strstr(ei.msg, "chmod 600") != NULL, "%s", ei.msg);

    static const struct {
        const char *text, *needle;
    } bad[] = {
        {"{\"server\": 5}", "\"server\" must be a string"},
        {"{\"sever\": \"x\"}", "unknown field \"sever\""},
        {"[1]", "must be a JSON object"},
        {"{\"token\": ", ":1:"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        FILE *f = fopen(path, "w");
        fputs(bad[i].text, f);
        fclose(f);
        chmod(path, 0600);
        cr_assert_eq(cli_config_load(path, &back, &ei), DP_EFORMAT, "case %zu", i);
        cr_assert(strstr(ei.msg, bad[i].needle) != NULL, "case %zu: %s", i, ei.msg);
    }
    unlink(path);
    snprintf(path, sizeof(path), "%s/sub", dir);
    rmdir(path);
    dp_test_tmpdir_remove(dir);
    DP_ASSERT_NO_LEAKS();
}
