/*
 * `dnnpress download` (a job's artifacts, or one artifact by sha256) and
 * `dnnpress report` (the compression report, summarised or raw, with the
 * compiled model's measurements when the job had a compile task). Every
 * download is written to a temporary name, checked against its sha256 and
 * only then renamed, so a file with the final name is always complete.
 */
#include "server/cli/cli.h"
#include "server/cli/cli_term.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/sha256.h"
#include "server/cli/cli_args.h"

#define CLI_DOWNLOAD_MAX ((uint64_t)16 << 30)

static enum cli_exit cli_fetch_artifact(struct cli_ctx *ctx, const char *sha, const char *dest)
{
    char path[128], tmp[1200];
    if (!dp_sha256_hex_valid(sha)) {
        char shown[80];
        fprintf(stderr, "dnnpress download: '%s' is not a sha256 (64 lowercase hex digits)\n",
                cli_term_escape(shown, sizeof(shown), sha));
        return CLI_USAGE;
    }
    snprintf(path, sizeof(path), "/api/v1/artifacts/%s", sha);
    int n = snprintf(tmp, sizeof(tmp), "%s.part", dest);
    if (n < 0 || (size_t)n >= sizeof(tmp)) {
        fprintf(stderr, "dnnpress download: path too long\n");
        return CLI_USAGE;
    }
    FILE *f = fopen(tmp, "wb");
    if (f == NULL) {
        fprintf(stderr, "dnnpress download: %s: %s\n", tmp, strerror(errno));
        return CLI_USAGE;
    }
    struct dp_http_resp r = {0};
    struct dp_errinfo ei = {DP_OK, ""};
    enum dp_err err = dp_httpc_get_file(ctx->h, path, f, CLI_DOWNLOAD_MAX, &r, &ei);
    int close_failed = fclose(f) != 0;
    enum cli_exit rc = CLI_OK;
    if (err) {
        fprintf(stderr, "dnnpress download: %s\n", dp_errinfo_msg(&ei, err));
        rc = r.status == 0 ? CLI_UNREACHABLE : CLI_SERVER_ERROR;
    } else if (r.status != 200) {
        char msg[CLI_MESSAGE_MAX];
        fprintf(stderr, "dnnpress download: %s: %ld: %s\n", sha, r.status,
                cli_resp_message(&r, msg, sizeof(msg)));
        rc = cli_exit_for_status(r.status);
    } else if (close_failed) {
        fprintf(stderr, "dnnpress download: %s: write failed\n", tmp);
        rc = CLI_USAGE;
    }
    dp_http_resp_free(&r);
    char got[65];
    if (rc == CLI_OK && dp_sha256_file(tmp, got, NULL, &ei) != DP_OK) {
        fprintf(stderr, "dnnpress download: %s\n", ei.msg);
        rc = CLI_USAGE;
    }
    if (rc == CLI_OK && strcmp(got, sha) != 0) {
        fprintf(stderr, "dnnpress download: %s arrived corrupt (hashes to %s); discarded\n", sha,
                got);
        rc = CLI_SERVER_ERROR;
    }
    if (rc == CLI_OK && rename(tmp, dest) != 0) {
        fprintf(stderr, "dnnpress download: %s: %s\n", dest, strerror(errno));
        rc = CLI_USAGE;
    }
    if (rc != CLI_OK)
        unlink(tmp);
    return rc;
}

static const char *cli_kind_ext(const char *kind)
{
    if (strcmp(kind, "report") == 0 || strcmp(kind, "compile_report") == 0)
        return "json";
    if (strcmp(kind, "code") == 0)
        return "tar"; /* the compiled C bundle (docs/compile.md) */
    if (strcmp(kind, "onnx") == 0)
        return "onnx";
    if (strcmp(kind, "log") == 0)
        return "log";
    return "safetensors"; /* model, checkpoint */
}

enum cli_exit cli_cmd_download(struct cli_ctx *ctx, int argc, char **argv)
{
    static const char *const vf[] = {"dir", "artifact", "out", NULL};
    static const char *const bf[] = {"checkpoints", NULL};
    struct cli_args a;
    if (cli_args_parse("download", argc, argv, vf, bf, 1, &a) != 0)
        return CLI_USAGE;
    if (cli_arg(&a, "artifact") != NULL) {
        if (cli_arg(&a, "out") == NULL || a.n_pos != 0) {
            fprintf(stderr, "usage: dnnpress download --artifact SHA256 --out FILE\n");
            return CLI_USAGE;
        }
        return cli_fetch_artifact(ctx, cli_arg(&a, "artifact"), cli_arg(&a, "out"));
    }
    const char *id = a.n_pos == 1 ? a.pos[0] : NULL;
    if (cli_require_id("download JOB_ID", id) != CLI_OK)
        return CLI_USAGE;
    const char *dir = cli_arg(&a, "dir") ? cli_arg(&a, "dir") : id;
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, "dnnpress download: cannot create %s: %s\n", dir, strerror(errno));
        return CLI_USAGE;
    }
    char path[160];
    json_t *job = NULL, *list = NULL;
    snprintf(path, sizeof(path), "/api/v1/jobs/%s", id);
    enum cli_exit rc = cli_call(ctx, "GET", path, NULL, NULL, &job, NULL);
    snprintf(path, sizeof(path), "/api/v1/jobs/%s/artifacts", id);
    if (rc == CLI_OK)
        rc = cli_call(ctx, "GET", path, NULL, NULL, &list, NULL);
    const json_t *outputs = json_object_get(job, "outputs");
    json_t *done = json_array();
    size_t i;
    json_t *it;
    json_array_foreach (json_object_get(list, "items"), i, it) {
        if (rc != CLI_OK)
            break;
        const char *sha = cli_str(it, "sha256", "");
        const char *kind = cli_str(it, "kind", "artifact");
        if (strcmp(kind, "checkpoint") == 0 && !cli_flag(&a, "checkpoints"))
            continue;
        if (strspn(kind, "abcdefghijklmnopqrstuvwxyz_") != strlen(kind) || strlen(kind) > 32) {
            char shown[48];
            fprintf(stderr, "dnnpress download: skipping an artifact of odd kind '%s'\n",
                    cli_term_escape(shown, sizeof(shown), kind));
            continue;
        }
        /* The job's final outputs get plain names; the rest carry their hash. */
        char dest[1200];
        const char *out_sha = cli_str(outputs, kind, "");
        if (strcmp(out_sha, sha) == 0)
            snprintf(dest, sizeof(dest), "%s/%s.%s", dir,
                     strcmp(kind, "onnx") == 0 ? "model" : kind, cli_kind_ext(kind));
        else
            snprintf(dest, sizeof(dest), "%s/%s-%.12s.%s", dir, kind, sha, cli_kind_ext(kind));
        rc = cli_fetch_artifact(ctx, sha, dest);
        if (rc == CLI_OK) {
            json_array_append_new(
                done, json_pack("{s:s, s:s, s:s}", "kind", kind, "sha256", sha, "path", dest));
            if (!ctx->json)
                printf("%-10s %s  %s\n", kind, sha, dest);
        }
    }
    if (rc == CLI_OK && ctx->json) {
        json_t *o = json_pack("{s:O}", "files", done);
        cli_print_json(o);
        json_decref(o);
    }
    json_decref(done);
    json_decref(job);
    json_decref(list);
    return rc;
}

/* ---- report ----------------------------------------------------------------- */

static double cli_num(const json_t *o, const char *key)
{
    const json_t *v = json_object_get(o, key);
    return json_is_number(v) ? json_number_value(v) : 0.0;
}

static void cli_fmt_bytes(char *buf, size_t cap, double b)
{
    if (b >= 1024.0 * 1024.0)
        snprintf(buf, cap, "%.2f MiB", b / (1024.0 * 1024.0));
    else if (b >= 1024.0)
        snprintf(buf, cap, "%.1f KiB", b / 1024.0);
    else
        snprintf(buf, cap, "%.0f B", b);
}

/*
 * *out = the job's compile report (the compile_report artifact), or NULL
 * when the job has none: no compile field, or its compile task has not
 * finished.
 */
static enum cli_exit cli_compile_report(struct cli_ctx *ctx, const char *id, json_t **out)
{
    char path[160];
    json_t *job = NULL;
    *out = NULL;
    snprintf(path, sizeof(path), "/api/v1/jobs/%s", id);
    enum cli_exit rc = cli_call(ctx, "GET", path, NULL, NULL, &job, NULL);
    const char *sha = cli_str(json_object_get(job, "outputs"), "compile_report", "");
    if (rc == CLI_OK && dp_sha256_hex_valid(sha)) {
        snprintf(path, sizeof(path), "/api/v1/artifacts/%s", sha);
        rc = cli_call(ctx, "GET", path, NULL, NULL, out, NULL);
    }
    json_decref(job);
    return rc;
}

/* The compile section of `dnnpress report`: the bundle and its measured latency. */
static void cli_print_compile(const json_t *c)
{
    const json_t *b = json_object_get(c, "bundle");
    const json_t *lat = json_object_get(c, "latency_ms");
    char bytes[32], weights[32];
    cli_fmt_bytes(bytes, sizeof(bytes), cli_num(b, "tar_bytes"));
    cli_fmt_bytes(weights, sizeof(weights), cli_num(b, "weights_bytes"));
    printf("  compiled  %s target, %s code.tar (weights %s), %.0f threads\n",
           cli_str(c, "target", "?"), bytes, weights, cli_num(c, "threads"));
    printf("  latency   %.3f ms mean, %.3f ms p50, %.3f ms min (batch 1, %.0f runs); "
           "max rel. error %.2g\n",
           cli_num(lat, "mean"), cli_num(lat, "p50"), cli_num(lat, "min"), cli_num(c, "runs"),
           cli_num(c, "max_rel_err"));
    printf("  formats  ");
    const char *fmt;
    json_t *n;
    json_object_foreach ((json_t *)json_object_get(c, "formats"), fmt, n)
        printf(" %s %lld", fmt, (long long)json_integer_value(n));
    printf("\n");
}

enum cli_exit cli_cmd_report(struct cli_ctx *ctx, int argc, char **argv)
{
    const char *id = cli_id_arg("report", "report JOB_ID", argc, argv);
    if (id == NULL)
        return CLI_USAGE;
    char path[160];
    snprintf(path, sizeof(path), "/api/v1/jobs/%s/report", id);
    json_t *r = NULL, *compiled = NULL, *profiles = NULL;
    enum cli_exit rc = cli_call(ctx, "GET", path, NULL, NULL, &r, NULL);
    if (rc == CLI_OK)
        rc = cli_compile_report(ctx, id, &compiled);
    if (rc == CLI_OK)
        rc = cli_profiles(ctx, id, &profiles);
    if (rc != CLI_OK) {
        json_decref(r);
        json_decref(compiled);
        return rc;
    }
    if (ctx->json) {
        /* The compression report as served, plus "compile" when there is one
         * and "devices", the profile results, when any device ran one. */
        if (compiled != NULL)
            json_object_set(r, "compile", compiled);
        if (json_array_size(profiles) > 0)
            json_object_set(r, "devices", profiles);
        cli_print_json(r);
        json_decref(r);
        json_decref(compiled);
        json_decref(profiles);
        return CLI_OK;
    }
    const json_t *tot = json_object_get(r, "totals");
    char dense[32], comp[32];
    cli_fmt_bytes(dense, sizeof(dense), cli_num(tot, "storage_dense_bytes"));
    cli_fmt_bytes(comp, sizeof(comp), cli_num(tot, "storage_bytes"));
    printf("job %s: %s, %.0f epochs, %.0f s\n", id, cli_str(r, "method", "?"), cli_num(r, "epochs"),
           cli_num(r, "wall_seconds"));
    printf("  accuracy  %.2f%% dense -> %.2f%% compressed\n",
           100 * cli_num(r, "dense_test_accuracy"), 100 * cli_num(r, "final_test_accuracy"));
    printf("  weights   %.0f -> %.0f non-zero (%.1fx)\n", cli_num(tot, "params"),
           cli_num(tot, "nonzeros"), cli_num(tot, "rate"));
    printf("  storage   %s -> %s (%.1fx)\n", dense, comp, cli_num(tot, "storage_rate"));
    printf("  FLOPs     %.3g -> %.3g per image\n", cli_num(tot, "flops_dense"),
           cli_num(tot, "flops_effective"));
    const json_t *norm = json_object_get(r, "normalization");
    if (json_is_object(norm)) {
        /* What a deployment feeds the model: (x - mean) / std per channel,
         * x in [0, 1]; the returned ONNX model applies it itself. */
        printf("  input     (x - mean) / std, x in [0, 1]:");
        size_t c;
        json_t *v;
        json_array_foreach (json_object_get(norm, "mean"), c, v)
            printf("%s mean %.4g std %.4g", c ? "," : "", json_number_value(v),
                   json_number_value(json_array_get(json_object_get(norm, "std"), c)));
        printf("\n");
    }
    printf("  %-12s %10s %10s %8s %6s\n", "layer", "params", "non-zero", "rate", "bits");
    size_t i;
    json_t *l;
    json_array_foreach (json_object_get(r, "layers"), i, l)
        printf("  %-12.12s %10.0f %10.0f %7.1fx %6.0f\n", cli_str(l, "name", "?"),
               cli_num(l, "params"), cli_num(l, "nonzeros"), cli_num(l, "rate"),
               cli_num(l, "bits"));
    if (compiled != NULL)
        cli_print_compile(compiled);
    cli_print_profiles(profiles);
    json_decref(r);
    json_decref(compiled);
    json_decref(profiles);
    return CLI_OK;
}
