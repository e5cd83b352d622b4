/*
 * The CLI's service and admin commands: `health` (is the server up; no
 * token needed, for scripts that wait on a starting server), `team create`
 * and `token create` (admin token: the first steps of a fresh install).
 */
#include "server/cli/cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "server/cli/cli_args.h"

enum cli_exit cli_cmd_health(struct cli_ctx *ctx, int argc, char **argv)
{
    static const char *const vf[] = {"wait", NULL};
    struct cli_args a;
    if (cli_args_parse("health", argc, argv, vf, NULL, 0, &a) != 0)
        return CLI_USAGE;
    long wait_s = 0;
    if (cli_arg(&a, "wait") != NULL) {
        char *end = NULL;
        wait_s = strtol(cli_arg(&a, "wait"), &end, 10);
        if (end == NULL || *end != '\0' || wait_s < 0 || wait_s > 3600) {
            fprintf(stderr, "dnnpress health: --wait takes seconds, 0 to 3600\n");
            return CLI_USAGE;
        }
    }
    time_t deadline = time(NULL) + wait_s;
    for (;;) {
        struct dp_http_resp r = {0};
        struct dp_errinfo ei = {DP_OK, ""};
        enum dp_err err = dp_httpc_json(ctx->h, "GET", "/healthz", NULL, NULL, &r, &ei);
        long status = r.status;
        dp_http_resp_free(&r);
        if (!err && status == 200) {
            if (ctx->json)
                printf("{\"status\":\"ok\"}\n");
            else
                printf("%s: ok\n", ctx->server);
            return CLI_OK;
        }
        if (time(NULL) >= deadline) {
            fprintf(stderr, "dnnpress health: %s: %s\n", ctx->server,
                    err ? dp_errinfo_msg(&ei, err) : "not healthy");
            return err ? CLI_UNREACHABLE : cli_exit_for_status(status);
        }
        struct timespec ts = {0, 200 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
}

enum cli_exit cli_cmd_team(struct cli_ctx *ctx, int argc, char **argv)
{
    struct cli_args a;
    if (cli_args_parse("team", argc, argv, NULL, NULL, 2, &a) != 0)
        return CLI_USAGE;
    if (a.n_pos == 1 && strcmp(a.pos[0], "list") == 0) {
        json_t *ans = NULL;
        enum cli_exit rc = cli_call(ctx, "GET", "/api/v1/teams", NULL, NULL, &ans, NULL);
        if (rc == CLI_OK) {
            size_t i;
            json_t *t;
            if (ctx->json)
                cli_print_json(ans);
            else
                json_array_foreach (json_object_get(ans, "items"), i, t)
                    printf("%-28s %s\n", cli_str(t, "id", "?"), cli_str(t, "name", ""));
        }
        json_decref(ans);
        return rc;
    }
    if (a.n_pos != 2 || strcmp(a.pos[0], "create") != 0) {
        fprintf(stderr, "usage: dnnpress team create NAME | dnnpress team list   (admin token)\n");
        return CLI_USAGE;
    }
    return cli_post_created(ctx, "/api/v1/teams", json_pack("{s:s}", "name", a.pos[1]), NULL, "id");
}

enum cli_exit cli_cmd_token(struct cli_ctx *ctx, int argc, char **argv)
{
    static const char *const vf[] = {"team", "scope", "name", NULL};
    static const char *const bf[] = {"shared", NULL};
    struct cli_args a;
    if (cli_args_parse("token", argc, argv, vf, bf, 1, &a) != 0)
        return CLI_USAGE;
    const char *team = cli_arg(&a, "team");
    int shared = cli_flag(&a, "shared");
    const char *scope = cli_arg(&a, "scope") ? cli_arg(&a, "scope") : shared ? "agent" : "team";
    /* A shared agent (every team's worker) is asked for by name, never the
     * result of a missing --team. */
    if (a.n_pos != 1 || strcmp(a.pos[0], "create") != 0 || (team == NULL) == !shared ||
        (shared && strcmp(scope, "agent") != 0)) {
        fprintf(stderr, "usage: dnnpress token create --team TEAM_ID [--scope team|agent] "
                        "[--name N]\n"
                        "       dnnpress token create --shared [--name N]   (an agent token "
                        "serving every team)\n"
                        "  (admin token; prints the secret once)\n");
        return CLI_USAGE;
    }
    json_t *body =
        json_pack("{s:o, s:s, s:s}", "team_id", shared ? json_null() : json_string(team), "scope",
                  scope, "name", cli_arg(&a, "name") ? cli_arg(&a, "name") : "cli");
    return cli_post_created(ctx, "/api/v1/tokens", body, NULL, "token");
}
