/*
 * The CLI's service and admin commands: `health` (is the server up; no
 * token needed, for scripts that wait on a starting server), `team create`
 * and `token create` (admin token: the first steps of a fresh install),
 * `token list` and `token revoke` (an admin for every token, a team for
 * its own).
 */
#include "server/cli/cli.h"

#include <errno.h>
#include <limits.h>
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

/* Seconds in "90", "90s", "15m", "12h" or "30d"; -1 when it is none of those. */
static long long cli_duration_s(const char *text)
{
    char *end = NULL;
    errno = 0;
    long long n = strtoll(text, &end, 10);
    if (errno != 0 || end == text || n <= 0)
        return -1;
    long long unit = 1;
    if (*end == 'm')
        unit = 60;
    else if (*end == 'h')
        unit = 3600;
    else if (*end == 'd')
        unit = 86400;
    else if (*end != 's' && *end != '\0')
        return -1;
    if (*end != '\0' && end[1] != '\0')
        return -1;
    if (n > LLONG_MAX / unit)
        return -1;
    return n * unit;
}

static void cli_token_usage(void)
{
    fprintf(stderr,
            "usage: dnnpress token create --team TEAM_ID [--scope team|agent|device] [--name N]\n"
            "                             [--expires-in DURATION]   (admin; prints the secret;\n"
            "                             a team may create --scope device for itself)\n"
            "       dnnpress token create --shared [--scope agent|device] [--name N]\n"
            "                             [--expires-in DURATION]\n"
            "                             (admin: an agent or device token serving every team)\n"
            "       dnnpress token list [--limit N] [--cursor C]   (admin: all; team: its own)\n"
            "       dnnpress token revoke TOKEN_ID                  (admin: any; team: its own)\n"
            "DURATION is seconds, or a number with s, m, h or d (\"90d\").\n");
}

/* One token of a listing: live, revoked or expired, from its fields. */
static const char *cli_token_state(const json_t *t)
{
    if (json_is_string(json_object_get(t, "revoked_at")))
        return "revoked";
    const char *exp = cli_str(t, "expires_at", NULL);
    if (exp != NULL) {
        /* RFC 3339 UTC strings of one format compare as times. */
        char now[32];
        time_t s = time(NULL);
        struct tm tm;
        gmtime_r(&s, &tm);
        strftime(now, sizeof(now), "%Y-%m-%dT%H:%M:%S", &tm);
        if (strncmp(exp, now, strlen(now)) <= 0)
            return "expired";
    }
    return "live";
}

static enum cli_exit cli_token_list(struct cli_ctx *ctx, const struct cli_args *a)
{
    static const char *const vf[] = {"limit", "cursor", NULL};
    char path[256];
    if (cli_query_path("token list", "/api/v1/tokens", a, vf, path, sizeof(path)) != CLI_OK)
        return CLI_USAGE;
    json_t *ans = NULL;
    enum cli_exit rc = cli_call(ctx, "GET", path, NULL, NULL, &ans, NULL);
    if (rc != CLI_OK)
        return rc;
    if (ctx->json) {
        cli_print_json(ans);
    } else {
        printf("%-28s %-6s %-29s %-8s %-20s %-24s %s\n", "ID", "SCOPE", "TEAM", "STATE", "NAME",
               "EXPIRES", "LAST USED");
        size_t i;
        json_t *t;
        json_array_foreach (json_object_get(ans, "items"), i, t)
            printf("%-28s %-6s %-29s %-8s %-20.20s %-24s %s\n", cli_str(t, "id", "?"),
                   cli_str(t, "scope", "?"), cli_str(t, "team_id", "-"), cli_token_state(t),
                   cli_str(t, "name", ""), cli_str(t, "expires_at", "never"),
                   cli_str(t, "last_used_at", "-"));
        const char *next = cli_str(ans, "next_cursor", NULL);
        if (next != NULL)
            printf("(more: dnnpress token list --cursor %s)\n", next);
    }
    json_decref(ans);
    return CLI_OK;
}

enum cli_exit cli_cmd_token(struct cli_ctx *ctx, int argc, char **argv)
{
    static const char *const vf[] = {"team",  "scope",  "name", "expires-in",
                                     "limit", "cursor", NULL};
    static const char *const bf[] = {"shared", NULL};
    struct cli_args a;
    if (cli_args_parse("token", argc, argv, vf, bf, 2, &a) != 0)
        return CLI_USAGE;
    const char *sub = a.n_pos > 0 ? a.pos[0] : "";
    if (strcmp(sub, "list") == 0 && a.n_pos == 1)
        return cli_token_list(ctx, &a);
    if (strcmp(sub, "revoke") == 0 && a.n_pos == 2) {
        if (cli_require_id("token id", a.pos[1]) != CLI_OK)
            return CLI_USAGE;
        char path[128];
        snprintf(path, sizeof(path), "/api/v1/tokens/%s", a.pos[1]);
        json_t *ans = NULL;
        enum cli_exit rc = cli_call(ctx, "DELETE", path, NULL, NULL, &ans, NULL);
        if (rc == CLI_OK) {
            if (ctx->json)
                cli_print_json(ans);
            else
                printf("%s revoked at %s\n", cli_str(ans, "id", "?"),
                       cli_str(ans, "revoked_at", "?"));
        }
        json_decref(ans);
        return rc;
    }
    const char *team = cli_arg(&a, "team");
    int shared = cli_flag(&a, "shared");
    const char *scope = cli_arg(&a, "scope") ? cli_arg(&a, "scope") : shared ? "agent" : "team";
    /* A shared agent (every team's worker) is asked for by name, never the
     * result of a missing --team. */
    if (strcmp(sub, "create") != 0 || a.n_pos != 1 || (team == NULL) == !shared ||
        (shared && strcmp(scope, "agent") != 0 && strcmp(scope, "device") != 0)) {
        cli_token_usage();
        return CLI_USAGE;
    }
    json_t *body =
        json_pack("{s:o, s:s, s:s}", "team_id", shared ? json_null() : json_string(team), "scope",
                  scope, "name", cli_arg(&a, "name") ? cli_arg(&a, "name") : "cli");
    if (body == NULL)
        return CLI_SERVER_ERROR;
    const char *exp = cli_arg(&a, "expires-in");
    if (exp != NULL) {
        long long s = cli_duration_s(exp);
        if (s < 0) {
            json_decref(body);
            fprintf(stderr,
                    "dnnpress token create: --expires-in '%s': give seconds, or a number "
                    "with s, m, h or d (\"90d\")\n",
                    exp);
            return CLI_USAGE;
        }
        json_object_set_new(body, "expires_in_s", json_integer((json_int_t)s));
    }
    return cli_post_created(ctx, "/api/v1/tokens", body, NULL, "token");
}
