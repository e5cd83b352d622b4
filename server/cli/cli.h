/*
 * The dnnpress command-line client: what its commands share. Each command
 * is one function `cli_cmd_<name>(ctx, argc, argv)` returning an exit code;
 * cli_main.c dispatches by name.
 *
 * Exit codes (also in `dnnpress --help`) let scripts tell failures apart:
 */
#ifndef DP_SERVER_CLI_CLI_H
#define DP_SERVER_CLI_CLI_H

#include <jansson.h>

#include "common/httpc.h"

enum cli_exit {
    CLI_OK = 0,
    CLI_JOB_FAILED = 1,   /* the job failed or was cancelled (watch, submit --watch) */
    CLI_USAGE = 2,        /* bad command line or local file */
    CLI_AUTH = 3,         /* no token, or the server refused it (401/403) */
    CLI_NOT_FOUND = 4,    /* 404: no such object for this team */
    CLI_UNREACHABLE = 5,  /* no answer from the server */
    CLI_CONFLICT = 6,     /* 409: the object's state does not allow it */
    CLI_REJECTED = 7,     /* 400/413/415/422: the server named what is wrong */
    CLI_SERVER_ERROR = 8, /* 5xx or an answer that makes no sense */
};

struct cli_ctx {
    const char *server; /* base URL */
    const char *token;  /* may be NULL (login, healthz) */
    int json;           /* --json: machine-readable output on stdout */
    struct dp_httpc *h; /* owned by main */
    const char *config_path;
    const char *ca; /* --ca, DNNPRESS_CA or the config's; NULL: the system's CA store */
};

/* Maps an HTTP status (0: no answer) to an exit code; 2xx -> CLI_OK. */
enum cli_exit cli_exit_for_status(long status);

/*
 * Sends a JSON request (body borrowed, may be NULL; headers may be NULL)
 * and returns the answer's JSON in *answer (caller decrefs; may be NULL)
 * on a 2xx. Otherwise prints "dnnpress: <what>: <server's message>" on
 * stderr and returns the exit code for it.
 */
enum cli_exit cli_call(struct cli_ctx *ctx, const char *method, const char *path, json_t *body,
                       const char *const *headers, json_t **answer, long *status);

/* Bytes kept of a server's error message when it is printed. */
#define CLI_MESSAGE_MAX 1024

/*
 * The server's error sentence of a non-2xx answer (dp_http_resp_message),
 * escaped for the terminal into buf (cap bytes). Returns buf.
 */
const char *cli_resp_message(const struct dp_http_resp *r, char *buf, size_t cap);

/* The string member key of o (borrowed), or dflt when absent or not a string. */
const char *cli_str(const json_t *o, const char *key, const char *dflt);

/* Prints j on stdout as one line of compact JSON. */
void cli_print_json(const json_t *j);

/* Prints a created object: all of ans with --json, else its string member field ("?" if none). */
void cli_print_created(const struct cli_ctx *ctx, const json_t *ans, const char *field);

/*
 * POSTs body (stolen: released here) to path like cli_call and, on a 2xx,
 * prints the answer with cli_print_created.
 */
enum cli_exit cli_post_created(struct cli_ctx *ctx, const char *path, json_t *body,
                               const char *const *headers, const char *field);

/* Percent-encodes s for a query string into out (cap bytes); -1 when it does not fit. */
int cli_url_escape(const char *s, char *out, size_t cap);

struct cli_args;

/*
 * Writes base followed by "?name=value&..." for every flag of flags (a
 * NULL-terminated list) that a holds, values percent-encoded, into path
 * (cap bytes); base alone when none is set. When it does not fit, prints
 * "dnnpress CMD: --FLAG too long" and returns CLI_USAGE.
 */
enum cli_exit cli_query_path(const char *cmd, const char *base, const struct cli_args *a,
                             const char *const *flags, char *path, size_t cap);

/* Whether id is a safe object id (letters, digits, '_' and '-', 1..64). */
int cli_id_valid(const char *id);

/* A command argument that must be an id: prints the problem and returns CLI_USAGE. */
enum cli_exit cli_require_id(const char *what, const char *id);

/*
 * The arguments of a command that takes one id and no options (`dnnpress
 * status JOB_ID`): returns the id (borrowed from argv), or NULL after
 * printing what is wrong; usage names the command line in that message.
 */
const char *cli_id_arg(const char *cmd, const char *usage, int argc, char **argv);

/* ---- commands (cli_cmds.c, cli_watch.c, cli_artifacts.c, cli_admin.c) ---- */
enum cli_exit cli_cmd_login(struct cli_ctx *ctx, int argc, char **argv);
enum cli_exit cli_cmd_devices(struct cli_ctx *ctx, int argc, char **argv);
/* *out = the job's profile results (a JSON array, one per device that ran
 * its profile task; empty when none), cli_devices.c. */
enum cli_exit cli_profiles(struct cli_ctx *ctx, const char *id, json_t **out);
/* The device table of `dnnpress report` (nothing for an empty array). */
void cli_print_profiles(const json_t *profiles);
enum cli_exit cli_cmd_upload(struct cli_ctx *ctx, int argc, char **argv);
enum cli_exit cli_cmd_submit(struct cli_ctx *ctx, int argc, char **argv);
enum cli_exit cli_cmd_list(struct cli_ctx *ctx, int argc, char **argv);
enum cli_exit cli_cmd_status(struct cli_ctx *ctx, int argc, char **argv);
enum cli_exit cli_cmd_cancel(struct cli_ctx *ctx, int argc, char **argv);
enum cli_exit cli_cmd_retry(struct cli_ctx *ctx, int argc, char **argv);
enum cli_exit cli_cmd_watch(struct cli_ctx *ctx, int argc, char **argv);
enum cli_exit cli_cmd_download(struct cli_ctx *ctx, int argc, char **argv);
enum cli_exit cli_cmd_report(struct cli_ctx *ctx, int argc, char **argv);
enum cli_exit cli_cmd_health(struct cli_ctx *ctx, int argc, char **argv);
enum cli_exit cli_cmd_team(struct cli_ctx *ctx, int argc, char **argv);
enum cli_exit cli_cmd_token(struct cli_ctx *ctx, int argc, char **argv);

/* Follows job_id's events until it ends; the exit code says how it ended. */
enum cli_exit cli_watch_job(struct cli_ctx *ctx, const char *job_id);

#endif
