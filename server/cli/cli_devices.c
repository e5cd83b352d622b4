/*
 * The device farm in the CLI: `dnnpress devices` (GET /api/v1/devices) and
 * the device table of `dnnpress report` (the job's profile artifacts, one
 * per device that ran its profile task; docs/api.md, "Devices"). cli_call
 * has made every string of an answer terminal-safe for human output.
 */
#include <stdio.h>
#include <string.h>

#include "common/sha256.h"
#include "server/cli/cli.h"

/* The most profile results one report fetches (a job profiles at most this many devices). */
#define CLI_PROFILES_MAX 64

static double num(const json_t *o, const char *key)
{
    const json_t *v = json_object_get(o, key);
    return json_is_number(v) ? json_number_value(v) : 0.0;
}

enum cli_exit cli_cmd_devices(struct cli_ctx *ctx, int argc, char **argv)
{
    if (argc > 1) {
        fprintf(stderr, "usage: dnnpress devices\n");
        (void)argv;
        return CLI_USAGE;
    }
    json_t *r = NULL;
    enum cli_exit rc = cli_call(ctx, "GET", "/api/v1/devices", NULL, NULL, &r, NULL);
    if (rc != CLI_OK)
        return rc;
    if (ctx->json) {
        cli_print_json(r);
        json_decref(r);
        return CLI_OK;
    }
    printf("%-24s %-9s %5s %5s  %-8s %s\n", "device", "state", "queue", "runs", "owner",
           "cpu / labels");
    size_t i;
    json_t *d;
    json_array_foreach (json_object_get(r, "items"), i, d) {
        char name[64], cpu[80], labels[160] = "";
        snprintf(name, sizeof(name), "%s", cli_str(d, "name", "?"));
        snprintf(cpu, sizeof(cpu), "%s", cli_str(json_object_get(d, "description"), "cpu", "?"));
        size_t used = 0;
        const char *k;
        json_t *v;
        json_object_foreach (json_object_get(d, "labels"), k, v) {
            char kv[140];
            snprintf(kv, sizeof(kv), "%s%s=%s", used ? "," : "", k,
                     json_is_string(v) ? json_string_value(v) : "?");
            int n = snprintf(labels + used, sizeof(labels) - used, "%s", kv);
            if (n < 0 || (size_t)n >= sizeof(labels) - used)
                break;
            used += (size_t)n;
        }
        printf("%-24s %-9s %5.0f %5.0f  %-8s %s [%s]\n", name, cli_str(d, "state", "?"),
               num(d, "queue"), num(d, "tasks_run"),
               json_is_true(json_object_get(d, "shared")) ? "shared" : "team", cpu, labels);
    }
    json_decref(r);
    return CLI_OK;
}

enum cli_exit cli_profiles(struct cli_ctx *ctx, const char *id, json_t **out)
{
    char path[160];
    json_t *list = NULL;
    *out = json_array();
    if (*out == NULL)
        return CLI_SERVER_ERROR;
    snprintf(path, sizeof(path), "/api/v1/jobs/%s/artifacts", id);
    enum cli_exit rc = cli_call(ctx, "GET", path, NULL, NULL, &list, NULL);
    size_t i;
    json_t *a;
    json_array_foreach (json_object_get(list, "items"), i, a) {
        const char *sha = cli_str(a, "sha256", "");
        if (rc != CLI_OK || json_array_size(*out) >= CLI_PROFILES_MAX)
            break;
        if (strcmp(cli_str(a, "kind", ""), "profile") != 0 || !dp_sha256_hex_valid(sha))
            continue;
        json_t *p = NULL;
        snprintf(path, sizeof(path), "/api/v1/artifacts/%s", sha);
        rc = cli_call(ctx, "GET", path, NULL, NULL, &p, NULL);
        if (rc == CLI_OK && json_is_object(p))
            json_array_append(*out, p);
        json_decref(p);
    }
    json_decref(list);
    if (rc != CLI_OK) {
        json_decref(*out);
        *out = NULL;
    }
    return rc;
}

/* One device's rows: per thread count the totals, then the first count's layers. */
static void print_one(const json_t *p)
{
    const json_t *dev = json_object_get(p, "device");
    char name[64];
    snprintf(name, sizeof(name), "%s", cli_str(dev, "name", cli_str(dev, "id", "?")));
    size_t i;
    json_t *r;
    json_array_foreach (json_object_get(p, "results"), i, r) {
        const json_t *c = json_object_get(json_object_get(r, "compressed"), "latency_ms");
        const json_t *d = json_object_get(json_object_get(r, "dense"), "latency_ms");
        printf("  %-20.20s %7.0f %10.3f ms %10.3f ms %8.2fx\n", name, num(r, "threads"),
               num(c, "p50"), num(d, "p50"), num(r, "speedup"));
    }
    const json_t *first = json_array_get(json_object_get(p, "results"), 0);
    const json_t *cl = json_object_get(json_object_get(first, "compressed"), "layers");
    const json_t *dl = json_object_get(json_object_get(first, "dense"), "layers");
    json_t *l;
    json_array_foreach (cl, i, l) {
        const json_t *dn = json_array_get(dl, i);
        char lname[40];
        snprintf(lname, sizeof(lname), "%s", cli_str(l, "name", "?"));
        printf("    %-18.18s %-9.9s %10.4f ms %5.1f%%   dense %10.4f ms %5.1f%%\n", lname,
               cli_str(l, "format", ""), num(l, "ms"), 100 * num(l, "share"), num(dn, "ms"),
               100 * num(dn, "share"));
    }
}

void cli_print_profiles(const json_t *profiles)
{
    if (json_array_size(profiles) == 0)
        return;
    printf("  devices (batch 1, p50 latency; per layer: mean time and share of the total)\n");
    printf("  %-20s %7s %13s %13s %9s\n", "device", "threads", "compressed", "dense", "speed-up");
    size_t i;
    json_t *p;
    json_array_foreach (profiles, i, p)
        print_one(p);
}
