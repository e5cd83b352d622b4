/*
 * Worker-facing handlers (agent scope): register, claim (long-poll),
 * heartbeat, events, artifact upload, complete, fail, release, and blob
 * download. Every call passes the caller's token to the store, which
 * binds workers to the token that registered them and leases to the
 * worker that claimed them (docs/security.md). Every write carries the
 * lease's fence; a stale one, or a lease this token's workers do not hold,
 * is 409 lease_lost, whatever the worker meant to do.
 */
#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/lat_table.h"
#include "common/sha256.h"
#include "common/task_type.h"
#include "server/device_select.h"
#include "server/http_int.h"
#include "server/ids.h"
#include "server/validate.h"

#define AGENT_MAX_EVENTS     100
#define AGENT_EVENT_DATA_MAX (64 * 1024)
#define AGENT_MESSAGE_MAX    4096

static enum dp_err check_caps(json_t *caps, const char *where, struct dp_errinfo *ei)
{
    if (!json_is_array(caps) || json_array_size(caps) == 0 || json_array_size(caps) > 16)
        return dp_errinfo_set(ei, DP_EINVAL, "%s: must be a non-empty array of task types", where);
    size_t i;
    json_t *c;
    json_array_foreach (caps, i, c) {
        enum dp_task_type t;
        if (!dp_task_type_from_name(json_string_value(c), &t)) {
            char names[128];
            dp_task_type_list(names, sizeof(names));
            return dp_errinfo_set(ei, DP_EINVAL, "%s[%zu]: not a task type (%s)", where, i, names);
        }
    }
    return DP_OK;
}

/* A device's labels: at most 16 "key": "value" pairs, keys of
 * [a-z0-9_.-] and values of printable ASCII, each 1-64 bytes (the
 * selectors of docs/api.md match them). */
static enum dp_err check_labels(json_t *labels, struct dp_errinfo *ei)
{
    if (!json_is_object(labels) || json_object_size(labels) > 16)
        return dp_errinfo_set(ei, DP_EINVAL,
                              "body.labels: must be an object of at most 16 string labels");
    const char *k;
    json_t *v;
    json_object_foreach (labels, k, v) {
        size_t n = strlen(k);
        if (n == 0 || n > 64 || strspn(k, "abcdefghijklmnopqrstuvwxyz0123456789_.-") != n)
            return dp_errinfo_set(ei, DP_EINVAL,
                                  "body.labels: key '%.64s' must be 1-64 of [a-z0-9_.-]", k);
        const char *sv = json_string_value(v);
        size_t m = sv ? strlen(sv) : 0;
        int printable = m > 0 && m <= 64 && m == json_string_length(v);
        for (size_t i = 0; printable && i < m; i++)
            printable = sv[i] > ' ' && sv[i] < 127;
        if (!printable)
            return dp_errinfo_set(
                ei, DP_EINVAL, "body.labels.%s: must be 1-64 printable ASCII bytes, no spaces", k);
    }
    return DP_OK;
}

/* A device runs profile and latency tasks and nothing else: ["profile"]
 * (a profiler built before latency tasks) or ["profile", "latency"]. */
static enum dp_err check_device_caps(json_t *caps, struct dp_errinfo *ei)
{
    size_t n = json_array_size(caps);
    const char *a = json_string_value(json_array_get(caps, 0));
    const char *b = json_string_value(json_array_get(caps, 1));
    int ok = (n == 1 || n == 2) && a != NULL && strcmp(a, "profile") == 0 &&
             (n == 1 || (b != NULL && strcmp(b, "latency") == 0));
    if (!ok)
        return dp_errinfo_set(ei, DP_EINVAL,
                              "body.capabilities: a device token's worker takes [\"profile\"] or "
                              "[\"profile\", \"latency\"] only");
    return DP_OK;
}

SRV_HANDLER(srv_api_agent_register)
{
    static const char *const allowed[] = {"name",   "version", "capabilities",
                                          "device", "labels",  NULL};
    struct dp_errinfo ei = {0};
    const char *name = NULL, *version = "";
    json_t *out = NULL, *device = json_object_get(r->json, "device");
    json_t *labels = json_object_get(r->json, "labels");
    int as_device = r->who.scope == SRV_SCOPE_DEVICE;
    enum dp_err err = srv_json_only(r->json, "body", allowed, &ei);
    if (!err)
        err = srv_json_str(r->json, "body", "name", 1, &name, &ei);
    if (!err)
        err = srv_validate_name(name, "name", &ei);
    if (!err)
        err = srv_json_str(r->json, "body", "version", 0, &version, &ei);
    if (!err && strlen(version) > 64)
        err = dp_errinfo_set(&ei, DP_EINVAL, "body.version: longer than 64 bytes");
    if (!err)
        err = check_caps(json_object_get(r->json, "capabilities"), "body.capabilities", &ei);
    if (!err && device)
        err = srv_validate_device(device, "body.device", &ei);
    if (!err && labels && !as_device)
        err = dp_errinfo_set(&ei, DP_EINVAL, "body.labels: only a device token registers labels");
    if (!err && labels)
        err = check_labels(labels, &ei);
    if (!err && as_device)
        err = check_device_caps(json_object_get(r->json, "capabilities"), &ei);
    if (err)
        return srv_reply_err(conn, r, err, &ei);
    json_t *dev = device ? json_incref(device) : json_object();
    json_t *lab = labels ? json_incref(labels) : json_object();
    if (as_device)
        err = srv_store_device_register(h->st, &r->who, name, version,
                                        json_object_get(r->json, "capabilities"), dev, lab, &out,
                                        &ei);
    else
        err = srv_store_worker_register(h->st, &r->who, name, version,
                                        json_object_get(r->json, "capabilities"), dev, &out, &ei);
    json_decref(dev);
    json_decref(lab);
    if (err)
        return srv_reply_err(conn, r, err, &ei);
    return srv_reply_json(conn, r, 201, out);
}

SRV_HANDLER(srv_api_agent_claim)
{
    static const char *const allowed[] = {"worker_id", "capabilities", "wait_s", NULL};
    struct dp_errinfo ei = {0};
    const char *worker = NULL;
    int64_t wait_s = 0;
    json_t *caps = json_object_get(r->json, "capabilities");
    enum dp_err err = srv_json_only(r->json, "body", allowed, &ei);
    if (!err)
        err = srv_json_str(r->json, "body", "worker_id", 1, &worker, &ei);
    if (!err)
        err = check_caps(caps, "body.capabilities", &ei);
    if (!err)
        err = srv_json_int(r->json, "body", "wait_s", 0, 0, 30, &wait_s, &ei);
    if (err)
        return srv_reply_err(conn, r, err, &ei);
    if (r->poll_deadline_ms == 0)
        r->poll_deadline_ms = srv_mono_ms() + wait_s * 1000;
    for (;;) {
        uint64_t gen = srv_store_generation(h->st);
        json_t *task = NULL;
        int no_worker = 0;
        err = srv_store_task_claim(h->st, &r->who, worker, caps, &task, &no_worker, &ei);
        if (err == DP_OK) {
            srv_notify(h); /* event streams see the lease */
            return srv_reply_json(conn, r, 200, json_pack("{s:o}", "task", task));
        }
        if (err != DP_ENOENT || no_worker)
            return srv_reply_err(conn, r, err, &ei);
        if (srv_mono_ms() >= r->poll_deadline_ms)
            return srv_reply_response(
                conn, r, MHD_HTTP_NO_CONTENT,
                MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT));
        if (srv_park(h, r, gen, r->poll_deadline_ms) == 0)
            return MHD_YES; /* resumed by a write or the deadline */
    }
}

/* The "fence" of a JSON body. */
static enum dp_err body_fence(struct srv_req *r, int64_t *fence, struct dp_errinfo *ei)
{
    return srv_json_int(r->json, "body", "fence", 1, 1, INT64_MAX, fence, ei);
}

SRV_HANDLER(srv_api_agent_heartbeat)
{
    static const char *const allowed[] = {"fence", "progress", NULL};
    struct dp_errinfo ei = {0};
    int64_t fence = 0;
    json_t *out = NULL, *progress = json_object_get(r->json, "progress");
    enum dp_err err = srv_json_only(r->json, "body", allowed, &ei);
    if (!err)
        err = body_fence(r, &fence, &ei);
    if (!err && progress && !json_is_object(progress) && !json_is_null(progress))
        err = dp_errinfo_set(&ei, DP_EINVAL, "body.progress: must be an object");
    if (!err && progress && json_dumpb(progress, NULL, 0, JSON_COMPACT) > AGENT_EVENT_DATA_MAX)
        err = dp_errinfo_set(&ei, DP_ETOOBIG, "body.progress: larger than %d bytes",
                             AGENT_EVENT_DATA_MAX);
    if (!err)
        err = srv_store_task_heartbeat(h->st, &r->who, r->params[0], fence, progress, &out, &ei);
    if (err)
        return srv_reply_err(conn, r, err, &ei);
    return srv_reply_json(conn, r, 200, out);
}

static int event_type_ok(const char *t)
{
    size_t n = strlen(t);
    if (n == 0 || n > 32 || strcmp(t, "state") == 0)
        return 0;
    for (; *t; t++)
        if (!((*t >= 'a' && *t <= 'z') || *t == '_' || (*t >= '0' && *t <= '9')))
            return 0;
    return 1;
}

SRV_HANDLER(srv_api_agent_events)
{
    static const char *const allowed[] = {"fence", "events", NULL};
    static const char *const ev_allowed[] = {"type", "data", NULL};
    struct dp_errinfo ei = {0};
    int64_t fence = 0;
    json_t *events = json_object_get(r->json, "events");
    enum dp_err err = srv_json_only(r->json, "body", allowed, &ei);
    if (!err)
        err = body_fence(r, &fence, &ei);
    if (!err && (!json_is_array(events) || json_array_size(events) > AGENT_MAX_EVENTS))
        err = dp_errinfo_set(&ei, DP_EINVAL, "body.events: must be an array of at most %d events",
                             AGENT_MAX_EVENTS);
    size_t i;
    json_t *ev;
    json_array_foreach (events, i, ev) {
        char where[48];
        const char *type = NULL;
        snprintf(where, sizeof(where), "body.events[%zu]", i);
        if (!err)
            err = srv_json_only(ev, where, ev_allowed, &ei);
        if (!err)
            err = srv_json_str(ev, where, "type", 1, &type, &ei);
        if (!err && !event_type_ok(type))
            err =
                dp_errinfo_set(&ei, DP_EINVAL,
                               "%s.type: 1-32 of [a-z0-9_], and not the server's \"state\"", where);
        if (!err && json_dumpb(json_object_get(ev, "data"), NULL, 0,
                               JSON_COMPACT | JSON_ENCODE_ANY) > AGENT_EVENT_DATA_MAX)
            err = dp_errinfo_set(&ei, DP_ETOOBIG, "%s.data: larger than %d bytes", where,
                                 AGENT_EVENT_DATA_MAX);
    }
    if (!err)
        err = srv_store_task_events(h->st, &r->who, r->params[0], fence, events, &ei);
    if (err)
        return srv_reply_err(conn, r, err, &ei);
    srv_notify(h);
    return srv_reply_json(conn, r, 200,
                          json_pack("{s:I}", "accepted", (json_int_t)json_array_size(events)));
}

/* Artifact kinds that are never a task's output: a resume point and a log. */
static const char *const artifact_side_kinds[] = {"checkpoint", "log"};

/* PUT .../artifacts/{kind}?fence=N: checked before the body is accepted.
 * The kinds are the task outputs of common/task_type.h plus the side kinds. */
SRV_HANDLER(srv_api_agent_artifact_begin)
{
    struct dp_errinfo ei = {0};
    enum dp_task_output o;
    int ok = dp_task_output_from_name(r->params[1], &o);
    for (size_t i = 0; i < sizeof(artifact_side_kinds) / sizeof(artifact_side_kinds[0]); i++)
        ok |= strcmp(artifact_side_kinds[i], r->params[1]) == 0;
    if (!ok)
        return srv_reply_error(conn, r, 400, "invalid_request",
                               "artifact kind must be checkpoint, log or a task output (model, "
                               "report, onnx, code, compile_report, profile)");
    const char *f = srv_query(conn, "fence");
    char *end = NULL;
    long long fence = f ? strtoll(f, &end, 10) : 0;
    if (f == NULL || end == f || *end || fence < 1)
        return srv_reply_error(conn, r, 400, "invalid_request",
                               "fence: required query parameter (a positive integer)");
    r->upload_fence = (int64_t)fence;
    enum dp_err err =
        srv_store_task_fence_check(h->st, &r->who, r->params[0], r->upload_fence, &ei);
    if (err)
        return srv_reply_err(conn, r, err, &ei);
    return MHD_YES;
}

SRV_HANDLER(srv_api_agent_artifact)
{
    struct dp_errinfo ei = {0};
    char sha[65];
    uint64_t size = 0;
    if (r->blob == NULL)
        return srv_reply_error(conn, r, 415, "unsupported_media_type",
                               "artifacts are raw bytes (Content-Type: application/octet-stream)");
    enum dp_err err = srv_blob_finish(r->blob, sha, &size, &ei);
    if (!err)
        err = srv_blob_publish(r->blob, &ei);
    if (!err)
        err = srv_store_task_artifact(h->st, &r->who, r->params[0], r->upload_fence, r->params[1],
                                      sha, (int64_t)size, &ei);
    srv_blob_unpin(r->blob); /* the row references the blob now (or never will) */
    if (err)
        return srv_reply_err(conn, r, err, &ei);
    atomic_fetch_add(&h->n_bytes_uploaded, size);
    return srv_reply_json(conn, r, 201,
                          json_pack("{s:s, s:I}", "sha256", sha, "size", (json_int_t)size));
}

SRV_HANDLER(srv_api_agent_complete)
{
    static const char *const allowed[] = {"fence", "outputs", NULL};
    /* The output kinds of common/task_type.h, in its order. */
    const char *out_allowed[DP_TASK_OUT__COUNT + 1];
    for (int o = 0; o < DP_TASK_OUT__COUNT; o++)
        out_allowed[o] = dp_task_output_name((enum dp_task_output)o);
    out_allowed[DP_TASK_OUT__COUNT] = NULL;
    struct dp_errinfo ei = {0};
    int64_t fence = 0;
    json_t *outputs = json_object_get(r->json, "outputs");
    enum dp_err err = srv_json_only(r->json, "body", allowed, &ei);
    if (!err)
        err = body_fence(r, &fence, &ei);
    if (!err && outputs)
        err = srv_json_only(outputs, "body.outputs", out_allowed, &ei);
    const char *key;
    json_t *v;
    if (!err && outputs)
        json_object_foreach (outputs, key, v) {
            if (!json_is_string(v) || !dp_sha256_hex_valid(json_string_value(v))) {
                err = dp_errinfo_set(&ei, DP_EINVAL,
                                     "body.outputs.%s: must be a sha256 (64 lowercase hex)", key);
                break;
            }
        }
    json_t *empty = outputs ? NULL : json_object();
    if (!err)
        err = srv_store_task_complete(h->st, &r->who, r->params[0], fence,
                                      outputs ? outputs : empty, &ei);
    json_decref(empty);
    if (err)
        return srv_reply_err(conn, r, err, &ei);
    srv_notify(h);
    return srv_reply_json(conn, r, 200, json_pack("{s:s}", "state", "succeeded"));
}

SRV_HANDLER(srv_api_agent_fail)
{
    static const char *const allowed[] = {"fence", "message", "retryable", NULL};
    struct dp_errinfo ei = {0};
    int64_t fence = 0;
    const char *message = NULL;
    json_t *retry = json_object_get(r->json, "retryable");
    enum dp_err err = srv_json_only(r->json, "body", allowed, &ei);
    if (!err)
        err = body_fence(r, &fence, &ei);
    if (!err)
        err = srv_json_str(r->json, "body", "message", 1, &message, &ei);
    if (!err && strlen(message) > AGENT_MESSAGE_MAX)
        err =
            dp_errinfo_set(&ei, DP_EINVAL, "body.message: longer than %d bytes", AGENT_MESSAGE_MAX);
    if (!err && retry && !json_is_boolean(retry))
        err = dp_errinfo_set(&ei, DP_EINVAL, "body.retryable: must be true or false");
    if (!err)
        err = srv_store_task_fail(h->st, &r->who, r->params[0], fence, message,
                                  retry ? json_is_true(retry) : 1, &ei);
    if (err)
        return srv_reply_err(conn, r, err, &ei);
    srv_notify(h);
    return srv_reply_json(conn, r, 200, json_pack("{s:b}", "recorded", 1));
}

SRV_HANDLER(srv_api_agent_release)
{
    static const char *const allowed[] = {"fence", NULL};
    struct dp_errinfo ei = {0};
    int64_t fence = 0;
    enum dp_err err = srv_json_only(r->json, "body", allowed, &ei);
    if (!err)
        err = body_fence(r, &fence, &ei);
    if (!err)
        err = srv_store_task_release(h->st, &r->who, r->params[0], fence, &ei);
    if (err)
        return srv_reply_err(conn, r, err, &ei);
    srv_notify(h);
    return srv_reply_json(conn, r, 200, json_pack("{s:s}", "state", "queued"));
}

SRV_HANDLER(srv_api_agent_blob)
{
    struct dp_errinfo ei = {0};
    int64_t size = 0;
    const char *sha = r->params[0];
    if (!dp_sha256_hex_valid(sha))
        return srv_reply_error(conn, r, 400, "invalid_request",
                               "blob name must be 64 lowercase hex digits (a sha256)");
    enum dp_err err = srv_store_blob_agent(h->st, &r->who, sha, &size, &ei);
    if (err)
        return srv_reply_err(conn, r, err, &ei);
    return srv_reply_blob(h, conn, r, sha, size, "application/octet-stream");
}

/* ---- Latency tables (spec.auto.objective "latency") ---------------------- */

/* An architecture or scheme name: 1..64 of [A-Za-z0-9_.+-]. */
static int latency_name_ok(const char *s)
{
    size_t n = s != NULL ? strlen(s) : 0;
    if (n == 0 || n > 64)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && strchr("_.+-", s[i]) == NULL)
            return 0;
    return 1;
}

SRV_HANDLER(srv_api_agent_latency_get)
{
    struct dp_errinfo ei = {0};
    const char *arch = srv_query(conn, "arch"), *scheme = srv_query(conn, "scheme");
    const char *device = srv_query(conn, "device"), *task = srv_query(conn, "task");
    if (!latency_name_ok(arch) || !latency_name_ok(scheme))
        return srv_reply_error(conn, r, 400, "invalid_request",
                               "arch and scheme are required: 1..64 of [A-Za-z0-9_.+-]");
    if (device == NULL || strlen(device) > 1024)
        return srv_reply_error(conn, r, 400, "invalid_request",
                               "device is required: a selector, as JSON (an object)");
    if (task != NULL && strlen(task) >= SRV_ID_MAX)
        return srv_reply_error(conn, r, 400, "invalid_request", "task: not a task id");
    json_t *sel = json_loads(device, JSON_REJECT_DUPLICATES, NULL);
    json_t *sels = json_is_object(sel) ? json_pack("[O]", sel) : NULL;
    json_decref(sel);
    enum dp_err err =
        sels != NULL ? srv_device_select_check(sels, "device", &ei)
                     : dp_errinfo_set(&ei, DP_EINVAL, "device: must be a selector, a JSON object");
    json_t *out = NULL;
    if (!err)
        err = srv_store_latency_get(h->st, &r->who, arch, scheme, sels, task, &out, &ei);
    json_decref(sels);
    if (err)
        return srv_reply_err(conn, r, err, &ei);
    return srv_reply_json(conn, r, 200, out);
}

SRV_HANDLER(srv_api_agent_latency_put)
{
    static const char *const allowed[] = {"arch", "scheme", "layers", "method", "task", NULL};
    struct dp_errinfo ei = {0};
    enum dp_err err = srv_json_only(r->json, "body", allowed, &ei);
    const char *arch = json_string_value(json_object_get(r->json, "arch"));
    const char *scheme = json_string_value(json_object_get(r->json, "scheme"));
    const json_t *method = json_object_get(r->json, "method");
    const json_t *task = json_object_get(r->json, "task");
    if (!err && (!latency_name_ok(arch) || !latency_name_ok(scheme)))
        err = dp_errinfo_set(&ei, DP_EINVAL,
                             "arch and scheme are required: 1..64 of [A-Za-z0-9_.+-]");
    if (!err && method != NULL && (!json_is_string(method) || json_string_length(method) > 256))
        err = dp_errinfo_set(&ei, DP_EINVAL, "method: a string of at most 256 bytes");
    if (!err && task != NULL && (!json_is_string(task) || json_string_length(task) >= SRV_ID_MAX))
        err = dp_errinfo_set(&ei, DP_EINVAL, "task: not a task id");
    if (!err)
        err = dp_lat_table_check(r->json, &ei);
    json_t *out = NULL;
    if (!err)
        err = srv_store_latency_put(h->st, &r->who, arch, scheme, json_string_value(task), r->json,
                                    &out, &ei);
    if (err)
        return srv_reply_err(conn, r, err, &ei);
    return srv_reply_json(conn, r, 200, out);
}
