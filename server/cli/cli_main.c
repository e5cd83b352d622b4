/*
 * dnnpress: the command-line client of dnnpress-server. Global options
 * come before the command; the server URL and token come from the options,
 * then the environment (DNNPRESS_SERVER, DNNPRESS_TOKEN), then the config
 * file that `dnnpress login` writes.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/cli/cli.h"
#include "server/cli/cli_config.h"

#define CLI_DEFAULT_SERVER "http://127.0.0.1:8080"

static void cli_usage(FILE *f)
{
    fprintf(f,
            "usage: dnnpress [--server URL] [--token TOKEN] [--ca FILE] [--json] COMMAND [args]\n"
            "\n"
            "commands:\n"
            "  login --server URL --token TOKEN [--ca FILE]\n"
            "                                       check the token and store them (mode 0600)\n"
            "  upload model FILE|--arch NAME [--name N]\n"
            "  upload dataset FILE.tar --format idx|cifar10|npy | --builtin fashion-mnist\n"
            "  submit JOB.json [--model ID] [--dataset ID] [--spec FILE] [--name N]\n"
            "         [--idempotency-key K] [--watch]\n"
            "  list [--state S] [--limit N] [--cursor C]\n"
            "  status JOB       the job, its tasks, their errors and outputs\n"
            "  watch JOB        live progress until the job ends\n"
            "  cancel JOB | retry JOB\n"
            "  download JOB [--dir D] [--checkpoints] | download --artifact SHA256 --out FILE\n"
            "  report JOB       the compression report (accuracy, rates, storage, FLOPs)\n"
            "  health [--wait S]                    is the server up (no token needed)\n"
            "  team create NAME | team list         (admin token)\n"
            "  token create --team ID [--scope team|agent|device] [--name N] [--expires-in 90d]\n"
            "                                       (admin; prints the secret once)\n"
            "  token create --shared [--scope agent|device] [--name N]\n"
            "                                       a token serving every team (admin)\n"
            "  devices          the profiling devices (state, queue, runs, cpu, labels)\n"
            "  token list | token revoke TOKEN_ID   (admin: every token; team: its own)\n"
            "\n"
            "--json prints machine-readable JSON on stdout (watch: one event per line).\n"
            "Config: $DNNPRESS_CONFIG or ~/.config/dnnpress/config.json. Environment:\n"
            "DNNPRESS_SERVER, DNNPRESS_TOKEN (override the config file).\n"
            "\n"
            "exit codes:\n"
            "  0 ok                   1 the job failed or was cancelled (watch, submit --watch)\n"
            "  2 usage or local file  3 no token or refused (401/403)\n"
            "  4 not found (404)      5 server unreachable\n"
            "  6 conflict (409)       7 request rejected (400/413/415/422; the message names "
            "why)\n"
            "  8 server error (5xx)\n");
}

struct cli_command {
    const char *name;
    enum cli_exit (*run)(struct cli_ctx *ctx, int argc, char **argv);
    int needs_token;
};

static const struct cli_command cli_commands[] = {
    {"login", cli_cmd_login, 0},       {"upload", cli_cmd_upload, 1},
    {"submit", cli_cmd_submit, 1},     {"list", cli_cmd_list, 1},
    {"status", cli_cmd_status, 1},     {"watch", cli_cmd_watch, 1},
    {"cancel", cli_cmd_cancel, 1},     {"retry", cli_cmd_retry, 1},
    {"download", cli_cmd_download, 1}, {"report", cli_cmd_report, 1},
    {"health", cli_cmd_health, 0},     {"team", cli_cmd_team, 1},
    {"token", cli_cmd_token, 1},       {"devices", cli_cmd_devices, 1},
};

int main(int argc, char **argv)
{
    const char *server = NULL, *token = NULL, *ca = NULL;
    int json = 0, i = 1;
    for (; i < argc && strncmp(argv[i], "--", 2) == 0; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            cli_usage(stdout);
            return CLI_OK;
        } else if (strcmp(argv[i], "--json") == 0) {
            json = 1;
        } else if (strcmp(argv[i], "--server") == 0 && i + 1 < argc) {
            server = argv[++i];
        } else if (strcmp(argv[i], "--token") == 0 && i + 1 < argc) {
            token = argv[++i];
        } else if (strcmp(argv[i], "--ca") == 0 && i + 1 < argc) {
            ca = argv[++i];
        } else {
            fprintf(stderr, "dnnpress: unknown or incomplete option '%s'\n", argv[i]);
            cli_usage(stderr);
            return CLI_USAGE;
        }
    }
    if (i >= argc) {
        cli_usage(stderr);
        return CLI_USAGE;
    }
    const struct cli_command *cmd = NULL;
    for (size_t k = 0; k < sizeof(cli_commands) / sizeof(cli_commands[0]); k++)
        if (strcmp(cli_commands[k].name, argv[i]) == 0)
            cmd = &cli_commands[k];
    if (cmd == NULL) {
        fprintf(stderr, "dnnpress: unknown command '%s'\n", argv[i]);
        cli_usage(stderr);
        return CLI_USAGE;
    }

    char config_path[1024];
    struct cli_config cfg;
    struct dp_errinfo ei = {DP_OK, ""};
    memset(&cfg, 0, sizeof(cfg));
    enum dp_err err = cli_config_path(config_path, sizeof(config_path), &ei);
    if (!err)
        err = cli_config_load(config_path, &cfg, &ei);
    /* login replaces a broken config, every other command needs a sound one. */
    if (err && strcmp(cmd->name, "login") != 0) {
        fprintf(stderr, "dnnpress: config: %s\n", dp_errinfo_msg(&ei, err));
        return CLI_USAGE;
    }
    if (server == NULL)
        server = getenv("DNNPRESS_SERVER");
    if (server == NULL || *server == '\0')
        server = cfg.server[0] ? cfg.server : CLI_DEFAULT_SERVER;
    if (token == NULL)
        token = getenv("DNNPRESS_TOKEN");
    if (token == NULL || *token == '\0')
        token = cfg.token[0] ? cfg.token : NULL;
    if (cmd->needs_token && token == NULL) {
        fprintf(stderr, "dnnpress: no token: run `dnnpress login --server URL --token TOKEN` "
                        "or set DNNPRESS_TOKEN\n");
        return CLI_AUTH;
    }
    if (ca == NULL)
        ca = getenv("DNNPRESS_CA");
    if (ca == NULL || *ca == '\0')
        ca = cfg.ca[0] ? cfg.ca : NULL;
    if (dp_httpc_global_init() != DP_OK)
        return CLI_SERVER_ERROR;
    struct cli_ctx ctx = {server, token, json, dp_httpc_new(server, token), config_path, ca};
    if (ctx.h != NULL && dp_httpc_set_ca(ctx.h, ca) != DP_OK) {
        dp_httpc_free(ctx.h);
        ctx.h = NULL;
    }
    if (ctx.h == NULL) {
        fprintf(stderr, "dnnpress: out of memory\n");
        return CLI_SERVER_ERROR;
    }
    enum cli_exit rc = cmd->run(&ctx, argc - i - 1, argv + i + 1);
    dp_httpc_free(ctx.h);
    return (int)rc;
}
