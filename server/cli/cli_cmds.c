/*
 * The CLI's request-and-print commands: login, upload, submit, list,
 * status, cancel, retry. (watch lives in cli_watch.c, download and report
 * in cli_artifacts.c.)
 */
#include "server/cli/cli.h"
#include "server/cli/cli_term.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "server/cli/cli_args.h"
#include "server/cli/cli_config.h"
#include "server/cli/cli_progress.h"

#define CLI_JOB_FILE_MAX (1 << 20)

/* ---- login ------------------------------------------------------------------ */

enum cli_exit cli_cmd_login(struct cli_ctx *ctx, int argc, char **argv)
{
    static const char *const vf[] = {"server", "token", "ca", NULL};
    struct cli_args a;
    if (cli_args_parse("login", argc, argv, vf, NULL, 0, &a) != 0)
        return CLI_USAGE;
    struct cli_config c;
    memset(&c, 0, sizeof(c));
    const char *server = cli_arg(&a, "server") ? cli_arg(&a, "server") : ctx->server;
    const char *token = cli_arg(&a, "token");
    if (token == NULL || *token == '\0') {
        fprintf(stderr, "dnnpress login: --token TOKEN is required (a team token from "
                        "POST /api/v1/tokens)\n");
        return CLI_USAGE;
    }
    if (strlen(server) >= sizeof(c.server) || strlen(token) >= sizeof(c.token)) {
        fprintf(stderr, "dnnpress login: server URL or token too long\n");
        return CLI_USAGE;
    }
    const char *ca = cli_arg(&a, "ca") ? cli_arg(&a, "ca") : ctx->ca;
    if (ca != NULL && strlen(ca) >= sizeof(c.ca)) {
        fprintf(stderr, "dnnpress login: --ca path too long\n");
        return CLI_USAGE;
    }
    snprintf(c.server, sizeof(c.server), "%s", server);
    snprintf(c.token, sizeof(c.token), "%s", token);
    if (ca != NULL) {
        /* Stored as an absolute path: later commands run from anywhere. */
        char cwd[PATH_MAX];
        int n = ca[0] == '/' || getcwd(cwd, sizeof(cwd)) == NULL
                    ? snprintf(c.ca, sizeof(c.ca), "%s", ca)
                    : snprintf(c.ca, sizeof(c.ca), "%.*s/%s", 512, cwd, ca);
        if (n < 0 || (size_t)n >= sizeof(c.ca)) {
            fprintf(stderr, "dnnpress login: --ca path too long\n");
            return CLI_USAGE;
        }
    }
    /* Check the token (and the CA) before storing them. */
    struct dp_httpc *h = dp_httpc_new(c.server, c.token);
    if (h != NULL && dp_httpc_set_ca(h, c.ca) != DP_OK) {
        dp_httpc_free(h);
        h = NULL;
    }
    if (h == NULL)
        return CLI_SERVER_ERROR;
    struct dp_httpc *saved = ctx->h;
    ctx->h = h;
    json_t *me = NULL;
    enum cli_exit rc = cli_call(ctx, "GET", "/api/v1/me", NULL, NULL, &me, NULL);
    ctx->h = saved;
    dp_httpc_free(h);
    if (rc != CLI_OK)
        return rc;
    struct dp_errinfo ei = {DP_OK, ""};
    enum dp_err err = cli_config_save(ctx->config_path, &c, &ei);
    if (err) {
        fprintf(stderr, "dnnpress login: %s\n", dp_errinfo_msg(&ei, err));
        json_decref(me);
        return CLI_USAGE;
    }
    if (ctx->json) {
        cli_print_json(me);
    } else {
        const char *team = json_string_value(json_object_get(me, "team_id"));
        const char *scope = json_string_value(json_object_get(me, "scope"));
        printf("logged in to %s (%s token%s%s); saved in %s\n", c.server, scope ? scope : "?",
               team ? ", team " : "", team ? team : "", ctx->config_path);
    }
    json_decref(me);
    return CLI_OK;
}

/* ---- upload ----------------------------------------------------------------- */

/* The request headers of a command that takes --idempotency-key. */
struct cli_idem {
    char line[200];
    const char *headers[2]; /* NULL-terminated */
};

/*
 * Fills h with an Idempotency-Key header when key is given and returns h's
 * header list; NULL after saying why when the key is not 1 to 128
 * characters (the server's limit: a key cut to fit could match another's).
 */
static const char *const *cli_idem_headers(struct cli_idem *h, const char *cmd, const char *key)
{
    h->headers[0] = h->headers[1] = NULL;
    if (key == NULL)
        return h->headers;
    if (*key == '\0' || strlen(key) > 128) {
        fprintf(stderr, "dnnpress %s: --idempotency-key must be 1 to 128 characters\n", cmd);
        return NULL;
    }
    snprintf(h->line, sizeof(h->line), "Idempotency-Key: %s", key);
    h->headers[0] = h->line;
    return h->headers;
}

static int cli_has_suffix(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

/* The file's base name without its extension, as a default object name. */
static void cli_base_name(const char *path, char *out, size_t cap)
{
    const char *b = strrchr(path, '/');
    snprintf(out, cap, "%s", b ? b + 1 : path);
    char *dot = strrchr(out, '.');
    if (dot != NULL && dot != out)
        *dot = '\0';
}

static enum cli_exit cli_upload_file(struct cli_ctx *ctx, const char *kind, const char *file,
                                     const char *name, const char *format,
                                     const char *const *headers)
{
    char ename[600], eformat[64], path[800];
    struct stat st;
    if (stat(file, &st) != 0 || !S_ISREG(st.st_mode)) {
        fprintf(stderr, "dnnpress upload: %s: not a readable file\n", file);
        return CLI_USAGE;
    }
    if (cli_url_escape(name, ename, sizeof(ename)) != 0 ||
        cli_url_escape(format, eformat, sizeof(eformat)) != 0) {
        fprintf(stderr, "dnnpress upload: --name or --format too long\n");
        return CLI_USAGE;
    }
    snprintf(path, sizeof(path), "/api/v1/%s?name=%s&format=%s", kind, ename, eformat);
    struct dp_http_resp r = {0};
    struct dp_errinfo ei = {DP_OK, ""};
    enum dp_err err = dp_httpc_send_file(ctx->h, "POST", path, file, headers, &r, &ei);
    enum cli_exit rc =
        err ? (r.status == 0 ? CLI_UNREACHABLE : CLI_SERVER_ERROR) : cli_exit_for_status(r.status);
    char msg[CLI_MESSAGE_MAX];
    if (err)
        fprintf(stderr, "dnnpress upload: %s\n", dp_errinfo_msg(&ei, err));
    else if (rc != CLI_OK)
        fprintf(stderr, "dnnpress upload: %ld: %s\n", r.status,
                cli_resp_message(&r, msg, sizeof(msg)));
    else if (!ctx->json && r.json != NULL && cli_term_json(r.json) != DP_OK) {
        fprintf(stderr, "dnnpress upload: out of memory printing the answer (the upload "
                        "itself succeeded)\n");
        rc = CLI_SERVER_ERROR;
    } else
        cli_print_created(ctx, r.json, "id");
    dp_http_resp_free(&r);
    return rc;
}

enum cli_exit cli_cmd_upload(struct cli_ctx *ctx, int argc, char **argv)
{
    static const char *const vf[] = {"name", "format", "arch", "builtin", "idempotency-key", NULL};
    struct cli_args a;
    if (cli_args_parse("upload", argc, argv, vf, NULL, 2, &a) != 0)
        return CLI_USAGE;
    const char *what = a.n_pos > 0 ? a.pos[0] : NULL;
    const char *file = a.n_pos > 1 ? a.pos[1] : NULL;
    int model = what != NULL && strcmp(what, "model") == 0;
    int dataset = what != NULL && strcmp(what, "dataset") == 0;
    const char *builtin = cli_arg(&a, model ? "arch" : "builtin");
    if ((!model && !dataset) || (file == NULL) == (builtin == NULL)) {
        fprintf(stderr, "usage: dnnpress upload model (FILE.onnx|FILE.safetensors | --arch NAME) "
                        "[--name N]\n"
                        "       dnnpress upload dataset (FILE.tar --format idx|cifar10|npy | "
                        "--builtin fashion-mnist) [--name N]\n");
        return CLI_USAGE;
    }
    char name[256];
    struct cli_idem ih;
    const char *const *headers = cli_idem_headers(&ih, "upload", cli_arg(&a, "idempotency-key"));
    if (headers == NULL)
        return CLI_USAGE;
    if (cli_arg(&a, "name") != NULL)
        snprintf(name, sizeof(name), "%s", cli_arg(&a, "name"));
    else
        cli_base_name(file ? file : builtin, name, sizeof(name));
    if (builtin != NULL) {
        json_t *body = json_pack("{s:s, s:s}", "name", name, model ? "arch" : "builtin", builtin);
        return cli_post_created(ctx, model ? "/api/v1/models" : "/api/v1/datasets", body, headers,
                                "id");
    }
    const char *format = cli_arg(&a, "format");
    if (format == NULL && model)
        format = cli_has_suffix(file, ".onnx") ? "onnx" : "safetensors";
    if (format == NULL) {
        fprintf(stderr, "dnnpress upload dataset: --format idx|cifar10|npy is required\n");
        return CLI_USAGE;
    }
    return cli_upload_file(ctx, model ? "models" : "datasets", file, name, format, headers);
}

/* ---- submit ----------------------------------------------------------------- */

enum cli_exit cli_cmd_submit(struct cli_ctx *ctx, int argc, char **argv)
{
    static const char *const vf[] = {"model", "dataset", "name", "spec", "idempotency-key", NULL};
    static const char *const bf[] = {"watch", NULL};
    struct cli_args a;
    if (cli_args_parse("submit", argc, argv, vf, bf, 1, &a) != 0)
        return CLI_USAGE;
    if (a.n_pos != 1) {
        fprintf(stderr, "usage: dnnpress submit JOB.json [--model ID] [--dataset ID] [--name N] "
                        "[--spec SPEC.json] [--idempotency-key K] [--watch]\n");
        return CLI_USAGE;
    }
    struct cli_idem ih;
    const char *const *headers = cli_idem_headers(&ih, "submit", cli_arg(&a, "idempotency-key"));
    if (headers == NULL)
        return CLI_USAGE;
    json_error_t je;
    struct stat st;
    if (stat(a.pos[0], &st) != 0 || st.st_size > CLI_JOB_FILE_MAX) {
        fprintf(stderr, "dnnpress submit: %s: missing or larger than 1 MiB\n", a.pos[0]);
        return CLI_USAGE;
    }
    json_t *job = json_load_file(a.pos[0], JSON_REJECT_DUPLICATES, &je);
    if (!json_is_object(job)) {
        fprintf(stderr, "dnnpress submit: %s:%d: %s\n", a.pos[0], je.line,
                job ? "must be a JSON object" : je.text);
        json_decref(job);
        return CLI_USAGE;
    }
    static const char *const overrides[][2] = {
        {"model", "model_id"}, {"dataset", "dataset_id"}, {"name", "name"}};
    for (size_t i = 0; i < 3; i++)
        if (cli_arg(&a, overrides[i][0]) != NULL)
            json_object_set_new(job, overrides[i][1], json_string(cli_arg(&a, overrides[i][0])));
    if (cli_arg(&a, "spec") != NULL) {
        json_t *spec = json_load_file(cli_arg(&a, "spec"), JSON_REJECT_DUPLICATES, &je);
        if (spec == NULL) {
            fprintf(stderr, "dnnpress submit: %s:%d: %s\n", cli_arg(&a, "spec"), je.line, je.text);
            json_decref(job);
            return CLI_USAGE;
        }
        json_object_set_new(job, "spec", spec);
    }
    json_t *ans = NULL;
    enum cli_exit rc = cli_call(ctx, "POST", "/api/v1/jobs", job, headers, &ans, NULL);
    json_decref(job);
    const char *id = json_string_value(json_object_get(ans, "id"));
    if (rc == CLI_OK && id == NULL) {
        fprintf(stderr, "dnnpress submit: the answer has no job id\n");
        rc = CLI_SERVER_ERROR;
    }
    if (rc == CLI_OK) {
        if (ctx->json)
            cli_print_json(ans);
        else
            printf("%s\n", id);
        fflush(stdout);
        if (cli_flag(&a, "watch"))
            rc = cli_watch_job(ctx, id);
    }
    json_decref(ans);
    return rc;
}

/* ---- list, status ------------------------------------------------------------ */

static void cli_print_progress(const json_t *job)
{
    const json_t *p = json_object_get(job, "progress");
    if (!json_is_object(p))
        return;
    struct cli_progress pr;
    cli_progress_init(&pr);
    cli_progress_update(&pr, p);
    char line[256];
    cli_progress_render(line, sizeof(line), &pr, 20);
    printf("  progress  %s\n", line);
}

enum cli_exit cli_cmd_list(struct cli_ctx *ctx, int argc, char **argv)
{
    static const char *const vf[] = {"state", "limit", "cursor", NULL};
    struct cli_args a;
    if (cli_args_parse("list", argc, argv, vf, NULL, 0, &a) != 0)
        return CLI_USAGE;
    char path[512];
    if (cli_query_path("list", "/api/v1/jobs", &a, vf, path, sizeof(path)) != CLI_OK)
        return CLI_USAGE;
    json_t *ans = NULL;
    enum cli_exit rc = cli_call(ctx, "GET", path, NULL, NULL, &ans, NULL);
    if (rc != CLI_OK)
        return rc;
    if (ctx->json) {
        cli_print_json(ans);
    } else {
        printf("%-28s %-24s %-10s %s\n", "ID", "NAME", "STATE", "CREATED");
        size_t i;
        json_t *j;
        json_array_foreach (json_object_get(ans, "items"), i, j) {
            const char *id = json_string_value(json_object_get(j, "id"));
            const char *name = json_string_value(json_object_get(j, "name"));
            const char *state = json_string_value(json_object_get(j, "state"));
            const char *created = json_string_value(json_object_get(j, "created_at"));
            printf("%-28s %-24.24s %-10s %s\n", id ? id : "?", name ? name : "",
                   state ? state : "?", created ? created : "");
        }
        const char *next = json_string_value(json_object_get(ans, "next_cursor"));
        if (next != NULL)
            printf("(more: dnnpress list --cursor %s)\n", next);
    }
    json_decref(ans);
    return CLI_OK;
}

enum cli_exit cli_cmd_status(struct cli_ctx *ctx, int argc, char **argv)
{
    const char *id = cli_id_arg("status", "status JOB_ID", argc, argv);
    if (id == NULL)
        return CLI_USAGE;
    char path[128];
    snprintf(path, sizeof(path), "/api/v1/jobs/%s", id);
    json_t *job = NULL;
    enum cli_exit rc = cli_call(ctx, "GET", path, NULL, NULL, &job, NULL);
    if (rc != CLI_OK)
        return rc;
    if (ctx->json) {
        cli_print_json(job);
        json_decref(job);
        return CLI_OK;
    }
    printf("%s  %s  %s\n", id, cli_str(job, "name", ""), cli_str(job, "state", "?"));
    size_t i;
    json_t *t;
    json_array_foreach (json_object_get(job, "tasks"), i, t) {
        const char *type = json_string_value(json_object_get(t, "type"));
        const char *state = json_string_value(json_object_get(t, "state"));
        printf("  %-9s %-10s attempts %lld/%lld\n", type ? type : "?", state ? state : "?",
               (long long)json_integer_value(json_object_get(t, "attempts")),
               (long long)json_integer_value(json_object_get(t, "max_attempts")));
        size_t k;
        json_t *e;
        json_array_foreach (json_object_get(t, "errors"), k, e)
            printf("            attempt %lld: %s\n",
                   (long long)json_integer_value(json_object_get(e, "attempt")),
                   cli_str(e, "message", ""));
    }
    cli_print_progress(job);
    const char *err = json_string_value(json_object_get(job, "error"));
    if (err != NULL)
        printf("  error     %s\n", err);
    const char *key;
    json_t *v;
    json_object_foreach (json_object_get(job, "outputs"), key, v)
        if (json_is_string(v))
            printf("  output    %-7s %s\n", key, json_string_value(v));
    json_decref(job);
    return CLI_OK;
}

/* ---- cancel, retry ----------------------------------------------------------- */

static enum cli_exit cli_job_action(struct cli_ctx *ctx, const char *cmd, int argc, char **argv)
{
    const char *id = cli_id_arg(cmd, cmd, argc, argv);
    if (id == NULL)
        return CLI_USAGE;
    char path[160];
    snprintf(path, sizeof(path), "/api/v1/jobs/%s/%s", id, cmd);
    json_t *job = NULL;
    json_t *empty = json_object();
    enum cli_exit rc = cli_call(ctx, "POST", path, empty, NULL, &job, NULL);
    json_decref(empty);
    if (rc == CLI_OK) {
        if (ctx->json) {
            cli_print_json(job);
        } else {
            const char *state = json_string_value(json_object_get(job, "state"));
            printf("%s: %s\n", id, state ? state : "?");
        }
    }
    json_decref(job);
    return rc;
}

enum cli_exit cli_cmd_cancel(struct cli_ctx *ctx, int argc, char **argv)
{
    return cli_job_action(ctx, "cancel", argc, argv);
}

enum cli_exit cli_cmd_retry(struct cli_ctx *ctx, int argc, char **argv)
{
    return cli_job_action(ctx, "retry", argc, argv);
}
