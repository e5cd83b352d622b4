/*
 * What every CLI command does with the server: one request, the answer's
 * status turned into an exit code, the server's message shown as is (it
 * names the field or the problem).
 */
#include "server/cli/cli.h"

#include <stdio.h>
#include <string.h>

#include "server/cli/cli_args.h"
#include "server/cli/cli_term.h"

enum cli_exit cli_exit_for_status(long status)
{
    if (status >= 200 && status < 300)
        return CLI_OK;
    if (status == 0)
        return CLI_UNREACHABLE;
    if (status == 401 || status == 403)
        return CLI_AUTH;
    if (status == 404)
        return CLI_NOT_FOUND;
    if (status == 409)
        return CLI_CONFLICT;
    if (status >= 400 && status < 500)
        return CLI_REJECTED;
    return CLI_SERVER_ERROR;
}

enum cli_exit cli_call(struct cli_ctx *ctx, const char *method, const char *path, json_t *body,
                       const char *const *headers, json_t **answer, long *status)
{
    struct dp_http_resp r = {0};
    struct dp_errinfo ei = {DP_OK, ""};
    if (answer != NULL)
        *answer = NULL;
    enum dp_err err = dp_httpc_json(ctx->h, method, path, body, headers, &r, &ei);
    if (status != NULL)
        *status = r.status;
    enum cli_exit rc;
    if (err) {
        fprintf(stderr, "dnnpress: %s\n", dp_errinfo_msg(&ei, err));
        rc = r.status == 0 ? CLI_UNREACHABLE : CLI_SERVER_ERROR;
    } else {
        rc = cli_exit_for_status(r.status);
        if (rc != CLI_OK) {
            const char *code = json_string_value(json_object_get(r.json, "code"));
            char code_shown[64], msg[CLI_MESSAGE_MAX];
            fprintf(stderr, "dnnpress: %s %s: %ld%s%s: %s\n", method, path, r.status,
                    code ? " " : "",
                    code ? cli_term_escape(code_shown, sizeof(code_shown), code) : "",
                    cli_resp_message(&r, msg, sizeof(msg)));
            if (rc == CLI_AUTH && ctx->token == NULL)
                fprintf(stderr, "dnnpress: no token: run `dnnpress login --server URL --token "
                                "TOKEN` or set DNNPRESS_TOKEN\n");
        } else if (answer != NULL) {
            /* Human output prints parts of the answer: make every string terminal-safe
             * (--json output is escaped by the encoder instead, see cli_print_json). */
            if (!ctx->json && r.json != NULL && cli_term_json(r.json) != DP_OK) {
                fprintf(stderr, "dnnpress: out of memory\n");
                rc = CLI_SERVER_ERROR;
            } else {
                *answer = r.json;
                r.json = NULL;
            }
        }
    }
    dp_http_resp_free(&r);
    return rc;
}

const char *cli_resp_message(const struct dp_http_resp *r, char *buf, size_t cap)
{
    return cli_term_escape(buf, cap, dp_http_resp_message(r));
}

const char *cli_str(const json_t *o, const char *key, const char *dflt)
{
    const char *v = json_string_value(json_object_get(o, key));
    return v != NULL ? v : dflt;
}

void cli_print_json(const json_t *j)
{
    /* ASCII only: control, C1 and bidi characters in strings reach the
     * terminal as \uNNNN escapes, never raw; a JSON reader decodes them. */
    json_dumpf(j, stdout, JSON_COMPACT | JSON_ENSURE_ASCII | JSON_REAL_PRECISION(7));
    fputc('\n', stdout);
    fflush(stdout);
}

void cli_print_created(const struct cli_ctx *ctx, const json_t *ans, const char *field)
{
    if (ctx->json)
        cli_print_json(ans);
    else
        printf("%s\n", cli_str(ans, field, "?"));
}

enum cli_exit cli_post_created(struct cli_ctx *ctx, const char *path, json_t *body,
                               const char *const *headers, const char *field)
{
    json_t *ans = NULL;
    enum cli_exit rc = cli_call(ctx, "POST", path, body, headers, &ans, NULL);
    json_decref(body);
    if (rc == CLI_OK)
        cli_print_created(ctx, ans, field);
    json_decref(ans);
    return rc;
}

enum cli_exit cli_query_path(const char *cmd, const char *base, const struct cli_args *a,
                             const char *const *flags, char *path, size_t cap)
{
    int n = snprintf(path, cap, "%s", base);
    for (size_t i = 0; n >= 0 && (size_t)n < cap && flags[i] != NULL; i++) {
        char esc[256];
        const char *v = cli_arg(a, flags[i]);
        if (v == NULL)
            continue;
        int k = -1;
        if (cli_url_escape(v, esc, sizeof(esc)) == 0)
            k = snprintf(path + n, cap - (size_t)n, "%c%s=%s", strchr(path, '?') ? '&' : '?',
                         flags[i], esc);
        if (k < 0 || (size_t)k >= cap - (size_t)n) {
            fprintf(stderr, "dnnpress %s: --%s too long\n", cmd, flags[i]);
            return CLI_USAGE;
        }
        n += k;
    }
    return CLI_OK;
}

int cli_url_escape(const char *s, char *out, size_t cap)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = 0;
    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;
        int plain = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '-' || c == '_' || c == '.' || c == '~';
        if (n + (plain ? 1 : 3) + 1 > cap)
            return -1;
        if (plain) {
            out[n++] = (char)c;
        } else {
            out[n++] = '%';
            out[n++] = hex[c >> 4];
            out[n++] = hex[c & 15];
        }
    }
    if (n + 1 > cap)
        return -1;
    out[n] = '\0';
    return 0;
}

int cli_id_valid(const char *id)
{
    size_t n = strlen(id);
    return n > 0 && n <= 64 &&
           strspn(id, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") == n;
}

enum cli_exit cli_require_id(const char *what, const char *id)
{
    if (id != NULL && cli_id_valid(id))
        return CLI_OK;
    fprintf(stderr, "dnnpress: %s: '%.80s' is not an id (letters, digits, '_' and '-')\n", what,
            id ? id : "");
    return CLI_USAGE;
}

const char *cli_id_arg(const char *cmd, const char *usage, int argc, char **argv)
{
    struct cli_args a;
    if (cli_args_parse(cmd, argc, argv, NULL, NULL, 1, &a) != 0)
        return NULL;
    const char *id = a.n_pos == 1 ? a.pos[0] : NULL;
    return cli_require_id(usage, id) == CLI_OK ? id : NULL;
}
