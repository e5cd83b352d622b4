/*
 * Job handlers: submit (validated completely, with the worker's own spec
 * parser), list, get, cancel, retry, report, artifacts, and artifact
 * download.
 */
#include <stdio.h>
#include <string.h>

#include "common/alloc.h"
#include "common/sha256.h"
#include "server/device_select.h"
#include "server/http_int.h"
#include "server/validate.h"
/* The one cross-tree include, on purpose: submissions are validated by the
 * exact parser the worker runs (docs/job-spec.md), linked from libnn. */
#include "common/lat_table.h"
#include "common/spec.h"

/* body.profile defaults and bounds (docs/api.md, "Devices"). */
#define SRV_PROFILE_RUNS      50
#define SRV_PROFILE_WARMUP    10
#define SRV_PROFILE_TIMEOUT_S 300
#define SRV_PROFILE_RUNS_MAX  100000

/* body.latency defaults and bounds (docs/api.md, "Latency tables"): the
 * rates a new table is measured at (1 first, ascending, as
 * common/lat_table.h wants them) and the bench runs per rate. */
#define SRV_LATENCY_RUNS      50
#define SRV_LATENCY_WARMUP    10
#define SRV_LATENCY_TIMEOUT_S 300

/* Validates body.spec with dp_spec_parse; messages name spec.<field>. */
static enum dp_err check_spec(json_t *spec, int64_t *seed, struct srv_job_body *b,
                              struct dp_errinfo *ei)
{
    if (!json_is_object(spec))
        return dp_errinfo_set(ei, DP_EINVAL, "body.spec: must be a JSON object (docs/job-spec.md)");
    size_t n = json_dumpb(spec, NULL, 0, JSON_COMPACT);
    if (n > DP_SPEC_MAX_BYTES)
        return dp_errinfo_set(ei, DP_ETOOBIG, "body.spec: larger than %d bytes", DP_SPEC_MAX_BYTES);
    char *text = dp_malloc(n + 1);
    struct dp_spec *s = dp_malloc(sizeof(*s));
    enum dp_err err = DP_ENOMEM;
    if (text && s) {
        json_dumpb(spec, text, n, JSON_COMPACT);
        struct dp_errinfo inner = {0};
        err = dp_spec_parse(text, n, s, &inner);
        if (!err)
            *seed = (int64_t)s->seed;
        if (!err && s->auto_on && s->auto_objective == DP_SPEC_OBJ_LATENCY) {
            for (int i = 0; i < s->n_rules && b->lat_scheme[0] == '\0'; i++)
                if (s->rules[i].prune != NULL)
                    snprintf(b->lat_scheme, sizeof(b->lat_scheme), "%s", s->rules[i].prune->name);
            snprintf(b->lat_device, sizeof(b->lat_device), "%s", s->auto_device);
            if (b->lat_scheme[0] == '\0')
                err = dp_errinfo_set(ei, DP_EINVAL,
                                     "body.spec.auto.objective \"latency\": needs a rule that "
                                     "prunes (the table is measured per pruning scheme)");
        } else if (strncmp(inner.msg, "spec", 4) == 0)
            dp_errinfo_set(ei, err, "body.%s", inner.msg);
        else
            dp_errinfo_set(ei, err, "body.spec.%s", inner.msg);
    }
    dp_free(text);
    dp_free(s);
    return err;
}

static enum dp_err check_pretrain(json_t *p, struct dp_errinfo *ei)
{
    static const char *const allowed[] = {"epochs", "lr", "batch", "seed", NULL};
    int64_t x;
    enum dp_err err = srv_json_only(p, "body.pretrain", allowed, ei);
    if (!err)
        err = srv_json_int(p, "body.pretrain", "epochs", 1, 1, 1000, &x, ei);
    if (!err)
        err = srv_json_int(p, "body.pretrain", "batch", 0, 1, 65536, &x, ei);
    if (!err)
        err = srv_json_int(p, "body.pretrain", "seed", 0, 0, 2147483647, &x, ei);
    json_t *lr = json_object_get(p, "lr");
    if (!err && lr &&
        (!json_is_number(lr) || json_number_value(lr) <= 0 || json_number_value(lr) > 10))
        err = dp_errinfo_set(ei, DP_EINVAL, "body.pretrain.lr: must be a number in (0, 10]");
    return err;
}

static enum dp_err check_export(json_t *e, struct dp_errinfo *ei)
{
    static const char *const allowed[] = {"format", "qdq", "normalization", NULL};
    const char *format = "onnx";
    enum dp_err err = srv_json_only(e, "body.export", allowed, ei);
    if (!err)
        err = srv_json_str(e, "body.export", "format", 0, &format, ei);
    if (!err && strcmp(format, "onnx") != 0)
        err = dp_errinfo_set(ei, DP_EINVAL, "body.export.format: only \"onnx\" is supported");
    json_t *q = json_object_get(e, "qdq");
    if (!err && q && !json_is_boolean(q))
        err = dp_errinfo_set(ei, DP_EINVAL, "body.export.qdq: must be true or false");
    json_t *nz = json_object_get(e, "normalization");
    if (!err && nz && !json_is_boolean(nz))
        err = dp_errinfo_set(ei, DP_EINVAL, "body.export.normalization: must be true or false");
    return err;
}

/*
 * body.compile: {"target": "native"|"portable"|"opencl", "tune_s": 0..3600},
 * both optional. The worker's compile command checks the target again
 * (wk_compile_check); the names are listed here because the server does
 * not link the compiler. tune_s > 0: the worker tunes the schedule for
 * about that many seconds (compile --tune) before it builds and times the
 * bundle; bounded as the command bounds it. The opencl target has no
 * schedules to tune, so it takes only 0.
 */
static enum dp_err check_compile(json_t *c, const char **target, int64_t *tune_s,
                                 struct dp_errinfo *ei)
{
    static const char *const allowed[] = {"target", "tune_s", NULL};
    *target = "native";
    *tune_s = 0;
    if (!json_is_object(c))
        return dp_errinfo_set(ei, DP_EINVAL,
                              "body.compile: must be an object {\"target\", \"tune_s\"}");
    enum dp_err err = srv_json_only(c, "body.compile", allowed, ei);
    if (!err)
        err = srv_json_str(c, "body.compile", "target", 0, target, ei);
    if (!err && strcmp(*target, "native") != 0 && strcmp(*target, "portable") != 0 &&
        strcmp(*target, "opencl") != 0)
        err = dp_errinfo_set(ei, DP_EINVAL,
                             "body.compile.target: must be \"native\", \"portable\" or \"opencl\"");
    if (!err)
        err = srv_json_int(c, "body.compile", "tune_s", 0, 0, 3600, tune_s, ei);
    if (!err && *tune_s > 0 && strcmp(*target, "opencl") == 0)
        err = dp_errinfo_set(ei, DP_EINVAL,
                             "body.compile.tune_s: must be 0 with target \"opencl\" (tuning "
                             "is for the native and portable targets)");
    return err;
}

/*
 * body.profile: {"devices": [selector...], "runs", "warmup", "threads",
 * "timeout_s"} (docs/api.md, "Devices"); needs body.compile, whose bundle
 * the devices run. Which devices match is the store's question, asked at
 * submission (none: 422).
 */
static enum dp_err check_profile(json_t *p, int has_compile, struct dp_errinfo *ei)
{
    static const char *const allowed[] = {"devices", "runs",      "warmup",
                                          "threads", "timeout_s", NULL};
    int64_t v = 0;
    if (!json_is_object(p))
        return dp_errinfo_set(ei, DP_EINVAL,
                              "body.profile: must be an object {\"devices\": [...], \"runs\", "
                              "\"warmup\", \"threads\", \"timeout_s\"}");
    if (!has_compile)
        return dp_errinfo_set(ei, DP_EINVAL,
                              "body.profile: needs body.compile (the devices run its bundle)");
    enum dp_err err = srv_json_only(p, "body.profile", allowed, ei);
    if (!err)
        err = srv_device_select_check(json_object_get(p, "devices"), "body.profile.devices", ei);
    if (!err)
        err = srv_json_int(p, "body.profile", "runs", 0, 1, SRV_PROFILE_RUNS_MAX, &v, ei);
    if (!err)
        err = srv_json_int(p, "body.profile", "warmup", 0, 0, SRV_PROFILE_RUNS_MAX, &v, ei);
    if (!err)
        err = srv_json_int(p, "body.profile", "timeout_s", 0, 1, 3600, &v, ei);
    json_t *threads = json_object_get(p, "threads");
    if (!err && threads &&
        (!json_is_array(threads) || json_array_size(threads) == 0 || json_array_size(threads) > 8))
        err = dp_errinfo_set(ei, DP_EINVAL,
                             "body.profile.threads: must be an array of 1 to 8 thread counts");
    size_t i;
    json_t *t;
    if (!err && threads)
        json_array_foreach (threads, i, t) {
            if (!json_is_integer(t) || json_integer_value(t) < 1 || json_integer_value(t) > 256) {
                err = dp_errinfo_set(ei, DP_EINVAL,
                                     "body.profile.threads[%zu]: must be an integer 1..256", i);
                break;
            }
        }
    return err;
}

/* body.profile as stored for the worker: every field, defaults filled. */
static json_t *profile_params(const json_t *p)
{
    json_t *o = json_pack("{s:O, s:I, s:I, s:I}", "devices", json_object_get(p, "devices"), "runs",
                          (json_int_t)SRV_PROFILE_RUNS, "warmup", (json_int_t)SRV_PROFILE_WARMUP,
                          "timeout_s", (json_int_t)SRV_PROFILE_TIMEOUT_S);
    const char *keys[] = {"runs", "warmup", "timeout_s"};
    for (size_t i = 0; o && i < 3; i++)
        if (json_object_get(p, keys[i]))
            json_object_set(o, keys[i], json_object_get(p, keys[i]));
    json_t *threads = json_object_get(p, "threads");
    if (o)
        json_object_set_new(o, "threads", threads ? json_deep_copy(threads) : json_pack("[i]", 1));
    return o;
}

/*
 * body.latency: {"rates": [1, r2, ...], "runs", "warmup", "timeout_s"}, how
 * a table this job measures is measured; only with spec.auto.objective
 * "latency".
 */
static enum dp_err check_latency(json_t *p, int is_latency, struct dp_errinfo *ei)
{
    static const char *const allowed[] = {"rates", "runs", "warmup", "timeout_s", NULL};
    int64_t v;
    if (!json_is_object(p))
        return dp_errinfo_set(ei, DP_EINVAL,
                              "body.latency: must be an object {\"rates\", \"runs\", \"warmup\", "
                              "\"timeout_s\"}");
    if (!is_latency)
        return dp_errinfo_set(ei, DP_EINVAL,
                              "body.latency: only with spec.auto.objective \"latency\"");
    enum dp_err err = srv_json_only(p, "body.latency", allowed, ei);
    if (!err)
        err = srv_json_int(p, "body.latency", "runs", 0, 1, SRV_PROFILE_RUNS_MAX, &v, ei);
    if (!err)
        err = srv_json_int(p, "body.latency", "warmup", 0, 0, SRV_PROFILE_RUNS_MAX, &v, ei);
    if (!err)
        err = srv_json_int(p, "body.latency", "timeout_s", 0, 1, 3600, &v, ei);
    const json_t *rates = json_object_get(p, "rates");
    if (!err && rates != NULL) {
        size_t n = json_array_size(rates);
        if (n < 2 || n > DP_LAT_TABLE_MAX_POINTS)
            return dp_errinfo_set(ei, DP_EINVAL,
                                  "body.latency.rates: an array of 2 to %d rates, the first 1",
                                  DP_LAT_TABLE_MAX_POINTS);
        double prev = 0;
        for (size_t i = 0; i < n; i++) {
            const json_t *r = json_array_get(rates, i);
            double x = json_is_number(r) ? json_number_value(r) : -1;
            if ((i == 0 && x != 1.0) || (i > 0 && !(x > prev && x <= 4096)))
                return dp_errinfo_set(ei, DP_EINVAL,
                                      "body.latency.rates[%zu]: rates start at 1 and ascend, "
                                      "up to 4096",
                                      i);
            prev = x;
        }
    }
    return err;
}

/* params.latency for the store: the scheme, the selector and how to
 * measure, defaults filled in. NULL when out of memory. */
static json_t *latency_params(const struct srv_job_body *b)
{
    json_t *sel = json_loads(b->lat_device, JSON_REJECT_DUPLICATES, NULL);
    const json_t *o = b->lat_opts, *rates = json_object_get(o, "rates");
    json_t *p = json_pack(
        "{s:s, s:o*, s:I, s:I, s:I}", "scheme", b->lat_scheme, "device", sel, "runs",
        json_is_integer(json_object_get(o, "runs")) ? json_integer_value(json_object_get(o, "runs"))
                                                    : SRV_LATENCY_RUNS,
        "warmup",
        json_is_integer(json_object_get(o, "warmup"))
            ? json_integer_value(json_object_get(o, "warmup"))
            : SRV_LATENCY_WARMUP,
        "timeout_s",
        json_is_integer(json_object_get(o, "timeout_s"))
            ? json_integer_value(json_object_get(o, "timeout_s"))
            : SRV_LATENCY_TIMEOUT_S);
    json_t *r = rates != NULL ? json_deep_copy(rates)
                              : json_pack("[i,i,i,i,i,i,i]", 1, 2, 4, 8, 16, 32, 64);
    if (p == NULL || r == NULL || json_object_set_new(p, "rates", r) != 0 ||
        json_object_get(p, "device") == NULL) {
        json_decref(p);
        return NULL;
    }
    return p;
}

enum dp_err srv_job_body_check(const json_t *j, struct srv_job_body *b, struct dp_errinfo *ei)
{
    static const char *const allowed[] = {"name",         "model_id", "dataset_id", "pretrain",
                                          "spec",         "export",   "compile",    "priority",
                                          "max_attempts", "profile",  "latency",    NULL};
    memset(b, 0, sizeof(*b));
    b->name = "job";
    b->priority = 5;
    b->max_attempts = 3;
    b->seed = 1;
    b->status = 400;
    b->code = "invalid_request";
    b->pretrain = json_object_get(j, "pretrain");
    b->exp = json_object_get(j, "export");
    b->spec = json_object_get(j, "spec");

    enum dp_err err = srv_json_only(j, "body", allowed, ei);
    if (!err)
        err = srv_json_str(j, "body", "name", 0, &b->name, ei);
    if (!err)
        err = srv_validate_name(b->name, "name", ei);
    if (!err)
        err = srv_json_str(j, "body", "model_id", 1, &b->model_id, ei);
    if (!err)
        err = srv_json_str(j, "body", "dataset_id", 1, &b->dataset_id, ei);
    if (!err)
        err = srv_json_int(j, "body", "priority", 0, 0, 9, &b->priority, ei);
    if (!err)
        err = srv_json_int(j, "body", "max_attempts", 0, 1, 20, &b->max_attempts, ei);
    if (!err && b->pretrain)
        err = check_pretrain(b->pretrain, ei);
    if (!err && b->exp)
        err = check_export(b->exp, ei);
    json_t *compile = json_object_get(j, "compile");
    if (!err && compile)
        err = check_compile(compile, &b->compile_target, &b->compile_tune_s, ei);
    b->profile = json_object_get(j, "profile");
    if (!err && b->profile)
        err = check_profile(b->profile, compile != NULL, ei);
    if (!err && b->spec == NULL)
        err = dp_errinfo_set(ei, DP_EINVAL, "body.spec: required (docs/job-spec.md)");
    if (!err && !json_is_object(b->spec))
        err = dp_errinfo_set(ei, DP_EINVAL, "body.spec: must be a JSON object");
    if (!err) {
        err = check_spec(b->spec, &b->seed, b, ei);
        if (err == DP_EINVAL || err == DP_EFORMAT) {
            b->status = 422; /* well-formed JSON, semantically invalid spec */
            b->code = "invalid_spec";
        }
    }
    b->lat_opts = json_object_get(j, "latency");
    if (!err && b->lat_opts != NULL)
        err = check_latency(b->lat_opts, b->lat_scheme[0] != '\0', ei);
    return err;
}

SRV_HANDLER(srv_api_job_create)
{
    struct dp_errinfo ei = {0};
    struct srv_job_body b;
    const char *idem = NULL;
    json_t *out = NULL, *params = NULL;
    int replayed = 0;

    enum dp_err err = srv_job_body_check(r->json, &b, &ei);
    if (!err)
        err = srv_idem_key(conn, &idem, &ei);
    if (err) {
        if (err == DP_EINVAL || err == DP_EFORMAT)
            return srv_reply_error(conn, r, b.status, b.code, "%s", dp_errinfo_msg(&ei, err));
        return srv_reply_err(conn, r, err, &ei);
    }

    int refused = 0;
    enum MHD_Result q = srv_quota_check(h, conn, r, 1, 0, &refused);
    if (refused)
        return q;
    params = json_pack("{s:O, s:I}", "spec", b.spec, "seed", (json_int_t)b.seed);
    if (b.pretrain)
        json_object_set(params, "pretrain", b.pretrain);
    json_object_set_new(params, "export",
                        b.exp ? json_deep_copy(b.exp)
                              : json_pack("{s:s, s:b}", "format", "onnx", "qdq", 0));
    /* Stored with its defaults filled in: the worker runs exactly this. */
    if (b.compile_target)
        json_object_set_new(params, "compile",
                            json_pack("{s:s, s:I}", "target", b.compile_target, "tune_s",
                                      (json_int_t)b.compile_tune_s));
    if (b.profile)
        json_object_set_new(params, "profile", profile_params(b.profile));
    json_t *lat = b.lat_scheme[0] ? latency_params(&b) : NULL;
    char req_hash[65];
    err =
        b.lat_scheme[0] && lat == NULL ? DP_ENOMEM : srv_idem_hash(r->body, r->body_len, req_hash);
    if (err) {
        json_decref(params);
        json_decref(lat);
        return srv_reply_err(conn, r, err, NULL);
    }
    struct srv_job_new nj = {.name = b.name,
                             .model_id = b.model_id,
                             .dataset_id = b.dataset_id,
                             .params = params,
                             .has_pretrain = b.pretrain != NULL,
                             .has_compile = b.compile_target != NULL,
                             .profile_devices =
                                 b.profile ? json_object_get(b.profile, "devices") : NULL,
                             .latency = lat,
                             .priority = (int)b.priority,
                             .max_attempts = (int)b.max_attempts,
                             .idem_key = idem,
                             .req_hash = req_hash};
    err = srv_store_job_create(h->st, &r->who, &nj, &out, &replayed, &ei);
    json_decref(params);
    json_decref(lat);
    if (err == DP_EINVAL)
        return srv_reply_error(conn, r, 422, "invalid_reference", "%s", dp_errinfo_msg(&ei, err));
    if (err)
        return srv_reply_err(conn, r, err, &ei);
    srv_notify(h);
    return srv_reply_json(conn, r, replayed ? 200 : 201, out);
}

SRV_HANDLER(srv_api_job_list)
{
    static const char *const states[] = {"queued", "running", "succeeded", "failed", "cancelled"};
    struct dp_errinfo ei = {0};
    int limit;
    int64_t cursor;
    char *out = NULL;
    const char *state = srv_query(conn, "state");
    if (state && *state == '\0')
        state = NULL;
    enum dp_err err = srv_list_args(conn, &limit, &cursor, &ei);
    if (!err && state) {
        int ok = 0;
        for (size_t i = 0; i < 5; i++)
            ok |= strcmp(state, states[i]) == 0;
        if (!ok)
            err = dp_errinfo_set(&ei, DP_EINVAL,
                                 "state: must be queued, running, succeeded, failed or cancelled");
    }
    if (!err)
        err = srv_store_job_list_text(h->st, &r->who, state, limit, cursor, &out, &ei);
    if (err)
        return srv_reply_err(conn, r, err, &ei);
    return srv_reply_json_text(conn, r, 200, out);
}

SRV_HANDLER(srv_api_job_get)
{
    struct dp_errinfo ei = {0};
    char *out = NULL;
    enum dp_err err = srv_store_job_get_text(h->st, &r->who, r->params[0], &out, &ei);
    if (err)
        return srv_reply_err(conn, r, err, &ei);
    return srv_reply_json_text(conn, r, 200, out);
}

SRV_HANDLER(srv_api_job_cancel)
{
    struct dp_errinfo ei = {0};
    json_t *out = NULL;
    enum dp_err err = srv_store_job_cancel(h->st, &r->who, r->params[0], &out, &ei);
    if (err == DP_EEXIST)
        return srv_reply_error(conn, r, 409, "job_finished", "%s", dp_errinfo_msg(&ei, err));
    if (err)
        return srv_reply_err(conn, r, err, &ei);
    srv_notify(h);
    return srv_reply_json(conn, r, 202, out);
}

SRV_HANDLER(srv_api_job_retry)
{
    struct dp_errinfo ei = {0};
    json_t *out = NULL;
    enum dp_err err = srv_store_job_retry(h->st, &r->who, r->params[0], &out, &ei);
    if (err == DP_EEXIST)
        return srv_reply_error(conn, r, 409, "not_retryable", "%s", dp_errinfo_msg(&ei, err));
    if (err)
        return srv_reply_err(conn, r, err, &ei);
    srv_notify(h);
    return srv_reply_json(conn, r, 202, out);
}

SRV_HANDLER(srv_api_job_report)
{
    struct dp_errinfo ei = {0};
    char sha[65];
    int64_t size = 0;
    enum dp_err err = srv_store_job_report(h->st, &r->who, r->params[0], sha, &ei);
    if (err == DP_ENOENT && strcmp(ei.msg, "report_not_ready") == 0)
        return srv_reply_error(conn, r, 404, "report_not_ready", "job '%s' has no report yet",
                               r->params[0]);
    if (!err)
        err = srv_store_blob_team(h->st, &r->who, sha, &size, &ei);
    if (err)
        return srv_reply_err(conn, r, err, &ei);
    return srv_reply_blob(h, conn, r, sha, size, "application/json");
}

SRV_HANDLER(srv_api_job_artifacts)
{
    struct dp_errinfo ei = {0};
    json_t *out = NULL;
    enum dp_err err = srv_store_job_artifacts(h->st, &r->who, r->params[0], &out, &ei);
    if (err)
        return srv_reply_err(conn, r, err, &ei);
    return srv_reply_json(conn, r, 200, out);
}

SRV_HANDLER(srv_api_artifact_get)
{
    struct dp_errinfo ei = {0};
    int64_t size = 0;
    const char *sha = r->params[0];
    if (!dp_sha256_hex_valid(sha))
        return srv_reply_error(conn, r, 400, "invalid_request",
                               "artifact name must be 64 lowercase hex digits (a sha256)");
    enum dp_err err = srv_store_blob_team(h->st, &r->who, sha, &size, &ei);
    if (err)
        return srv_reply_err(conn, r, err, &ei);
    return srv_reply_blob(h, conn, r, sha, size, "application/octet-stream");
}
