/*
 * The agent API client (see wk_agent.h): request shapes and answer checks,
 * nothing else; retry policy belongs to the task loop.
 */
#include "worker/agent/wk_agent.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "common/alloc.h"
#include "common/lat_table.h"
#include "common/sha256.h"
#include "common/utf8.h"

/* Until register answers with the server's values: a heartbeat often
 * enough for any lease a server would grant; the lease length is only
 * reported. */
#define WK_AGENT_HEARTBEAT_S 5
#define WK_AGENT_LEASE_S     30
/* What register may set: a heartbeat at most hourly and a lease of at most
 * a day; beyond these an answer is taken for garbage and the default kept. */
#define WK_AGENT_HEARTBEAT_S_MAX 3600
#define WK_AGENT_LEASE_S_MAX     86400
/* The server's ids are short (server/ids.c); a longer one is not an id. */
#define WK_AGENT_ID_MAX 64

enum dp_err wk_agent_init(struct wk_agent *a, const char *server_url, const char *token)
{
    memset(a, 0, sizeof(*a));
    a->heartbeat_s = WK_AGENT_HEARTBEAT_S;
    a->lease_s = WK_AGENT_LEASE_S;
    a->h = dp_httpc_new(server_url, token);
    return a->h != NULL ? DP_OK : DP_ENOMEM;
}

void wk_agent_free(struct wk_agent *a)
{
    if (a == NULL)
        return;
    dp_httpc_free(a->h);
    memset(a, 0, sizeof(*a));
}

/*
 * Turns an answer that is not 2xx into its dp_err (common/http_status.h)
 * carrying the server's message; err is the request's own (DP_EIO when no
 * answer came), which wins. A refused token (401, or 403: not an agent
 * token) is remembered in a->token_refused.
 */
static enum dp_err wk_agent_answer(struct wk_agent *a, enum dp_err err, const char *method,
                                   const char *path, const struct dp_http_resp *r,
                                   struct dp_errinfo *ei)
{
    if (err)
        return err;
    const char *code = json_string_value(json_object_get(r->json, "code"));
    err = dp_err_from_http_status(r->status, code);
    if (err)
        dp_errinfo_set(ei, err, "%s %s: HTTP %ld: %s", method, path, r->status,
                       dp_http_resp_message(r));
    if (err == DP_EPERM)
        a->token_refused = 1;
    return err;
}

/* Sends body (stolen: released here) and checks for a 2xx answer; *answer may be NULL. */
static enum dp_err wk_agent_call(struct wk_agent *a, const char *method, const char *path,
                                 json_t *body, json_t **answer, long *status, struct dp_errinfo *ei)
{
    struct dp_http_resp r = {0};
    if (answer != NULL)
        *answer = NULL;
    if (body == NULL && strcmp(method, "GET") != 0)
        return dp_errinfo_set(ei, DP_ENOMEM, "out of memory building %s", path);
    enum dp_err err = dp_httpc_json(a->h, method, path, body, NULL, &r, ei);
    json_decref(body);
    err = wk_agent_answer(a, err, method, path, &r, ei);
    if (status != NULL)
        *status = r.status;
    if (!err && answer != NULL) {
        *answer = r.json;
        r.json = NULL;
    }
    dp_http_resp_free(&r);
    return err;
}

/* Builds "/agent/v1/tasks/<id>/<what>", refusing ids that could escape the path. */
static enum dp_err wk_agent_task_path(char *buf, size_t cap, const char *task_id, const char *what,
                                      struct dp_errinfo *ei)
{
    size_t n = strlen(task_id);
    if (n == 0 || n > WK_AGENT_ID_MAX ||
        strspn(task_id, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                        "0123456789_-") != n)
        return dp_errinfo_set(ei, DP_EINVAL, "task id '%.80s' is not a valid id", task_id);
    int k = snprintf(buf, cap, "/agent/v1/tasks/%s/%s", task_id, what);
    if (k < 0 || (size_t)k >= cap)
        return dp_errinfo_set(ei, DP_EINVAL, "task path too long");
    return DP_OK;
}

/* POSTs body (stolen: released here) to the task's endpoint `what`; *answer as in wk_agent_call. */
static enum dp_err wk_agent_task_post(struct wk_agent *a, const char *task_id, const char *what,
                                      json_t *body, json_t **answer, struct dp_errinfo *ei)
{
    char path[160];
    enum dp_err err = wk_agent_task_path(path, sizeof(path), task_id, what, ei);
    if (err) {
        json_decref(body);
        if (answer != NULL)
            *answer = NULL;
        return err;
    }
    return wk_agent_call(a, "POST", path, body, answer, NULL, ei);
}

enum dp_err wk_agent_register(struct wk_agent *a, const char *name, json_t *capabilities,
                              json_t *device, json_t *labels, struct dp_errinfo *ei)
{
    json_t *ans = NULL;
    json_t *body =
        json_pack("{s:s, s:s, s:O}", "name", name, "version", "1", "capabilities", capabilities);
    if (body != NULL &&
        json_object_set_new(body, "device", device ? json_incref(device) : json_object()) != 0) {
        json_decref(body);
        body = NULL;
    }
    if (body != NULL && labels != NULL && json_object_set(body, "labels", labels) != 0) {
        json_decref(body);
        body = NULL;
    }
    enum dp_err err = wk_agent_call(a, "POST", "/agent/v1/register", body, &ans, NULL, ei);
    if (err)
        return err;
    const char *id = json_string_value(json_object_get(ans, "worker_id"));
    if (id == NULL || strlen(id) >= sizeof(a->worker_id)) {
        json_decref(ans);
        return dp_errinfo_set(ei, DP_EFORMAT, "register: the answer has no valid worker_id");
    }
    snprintf(a->worker_id, sizeof(a->worker_id), "%s", id);
    json_t *hb = json_object_get(ans, "heartbeat_s"), *ls = json_object_get(ans, "lease_s");
    if (json_is_integer(hb) && json_integer_value(hb) >= 1 &&
        json_integer_value(hb) <= WK_AGENT_HEARTBEAT_S_MAX)
        a->heartbeat_s = (long)json_integer_value(hb);
    if (json_is_integer(ls) && json_integer_value(ls) >= 1 &&
        json_integer_value(ls) <= WK_AGENT_LEASE_S_MAX)
        a->lease_s = (long)json_integer_value(ls);
    json_decref(ans);
    return DP_OK;
}

enum dp_err wk_agent_claim(struct wk_agent *a, json_t *capabilities, int wait_s, json_t **task,
                           struct dp_errinfo *ei)
{
    json_t *ans = NULL;
    *task = NULL;
    json_t *body = json_pack("{s:s, s:O, s:i}", "worker_id", a->worker_id, "capabilities",
                             capabilities, "wait_s", wait_s);
    long status = 0;
    enum dp_err err = wk_agent_call(a, "POST", "/agent/v1/claim", body, &ans, &status, ei);
    if (err || status == 204) { /* 204: no task within wait_s */
        json_decref(ans);
        return err;
    }
    json_t *t = json_object_get(ans, "task");
    if (!json_is_object(t)) {
        json_decref(ans);
        return dp_errinfo_set(ei, DP_EFORMAT, "claim: the answer has no task object");
    }
    *task = json_incref(t);
    json_decref(ans);
    return DP_OK;
}

enum dp_err wk_agent_heartbeat(struct wk_agent *a, const char *task_id, json_int_t fence,
                               json_t *progress, int *cancel, struct dp_errinfo *ei)
{
    json_t *ans = NULL;
    *cancel = 0;
    json_t *body = json_pack("{s:I}", "fence", fence);
    if (body != NULL && progress != NULL)
        json_object_set(body, "progress", progress);
    enum dp_err err = wk_agent_task_post(a, task_id, "heartbeat", body, &ans, ei);
    if (!err)
        *cancel = json_is_true(json_object_get(ans, "cancel"));
    json_decref(ans);
    return err;
}

enum dp_err wk_agent_events(struct wk_agent *a, const char *task_id, json_int_t fence,
                            json_t *events, struct dp_errinfo *ei)
{
    return wk_agent_task_post(a, task_id, "events",
                              json_pack("{s:I, s:O}", "fence", fence, "events", events), NULL, ei);
}

enum dp_err wk_agent_upload(struct wk_agent *a, const char *task_id, json_int_t fence,
                            const char *kind, const char *path, char sha256[65],
                            struct dp_errinfo *ei)
{
    char what[96], url[200];
    snprintf(what, sizeof(what), "artifacts/%s?fence=%lld", kind, (long long)fence);
    enum dp_err err = wk_agent_task_path(url, sizeof(url), task_id, what, ei);
    if (err)
        return err;
    char local[65];
    err = dp_sha256_file(path, local, NULL, ei);
    if (err)
        return err;
    struct dp_http_resp r = {0};
    err = dp_httpc_send_file(a->h, "PUT", url, path, NULL, &r, ei);
    err = wk_agent_answer(a, err, "PUT", url, &r, ei);
    const char *sha = json_string_value(json_object_get(r.json, "sha256"));
    if (!err && (sha == NULL || strcmp(sha, local) != 0))
        err = dp_errinfo_set(ei, DP_EFORMAT,
                             "upload of %s: the server stored %.64s, the file hashes to %s", path,
                             sha ? sha : "(nothing)", local);
    if (!err)
        memcpy(sha256, local, 65);
    dp_http_resp_free(&r);
    return err;
}

enum dp_err wk_agent_complete(struct wk_agent *a, const char *task_id, json_int_t fence,
                              json_t *outputs, struct dp_errinfo *ei)
{
    return wk_agent_task_post(a, task_id, "complete",
                              json_pack("{s:I, s:O}", "fence", fence, "outputs", outputs), NULL,
                              ei);
}

enum dp_err wk_agent_fail(struct wk_agent *a, const char *task_id, json_int_t fence,
                          const char *message, int retryable, struct dp_errinfo *ei)
{
    /* The message quotes names from the task's files (layers, paths) and may
     * be cut inside a character; json_pack refuses text that is not UTF-8,
     * which would read as out of memory and leave the failure unsent. */
    char *text = dp_strdup(message);
    if (text == NULL)
        return dp_errinfo_set(ei, DP_ENOMEM, "out of memory building the fail call");
    dp_utf8_sanitize(text);
    enum dp_err err = wk_agent_task_post(
        a, task_id, "fail",
        json_pack("{s:I, s:s, s:b}", "fence", fence, "message", text, "retryable", retryable), NULL,
        ei);
    dp_free(text);
    return err;
}

enum dp_err wk_agent_release(struct wk_agent *a, const char *task_id, json_int_t fence,
                             struct dp_errinfo *ei)
{
    return wk_agent_task_post(a, task_id, "release", json_pack("{s:I}", "fence", fence), NULL, ei);
}

enum dp_err wk_agent_blob(struct wk_agent *a, const char *sha256, FILE *out, uint64_t max_bytes,
                          struct dp_errinfo *ei)
{
    if (!dp_sha256_hex_valid(sha256))
        return dp_errinfo_set(ei, DP_EINVAL, "not a sha256 name: '%.80s'", sha256);
    char path[128];
    snprintf(path, sizeof(path), "/agent/v1/blobs/%s", sha256);
    struct dp_http_resp r = {0};
    enum dp_err err = dp_httpc_get_file(a->h, path, out, max_bytes, &r, ei);
    err = wk_agent_answer(a, err, "GET", path, &r, ei);
    dp_http_resp_free(&r);
    return err;
}

/* Percent-encodes src into dst (RFC 3986 unreserved kept); 0 when it does
 * not fit. */
static int wk_agent_urlenc(char *dst, size_t cap, const char *src)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    for (const unsigned char *p = (const unsigned char *)src; *p; p++) {
        if (isalnum(*p) || strchr("-._~", *p) != NULL) {
            if (o + 1 >= cap)
                return 0;
            dst[o++] = (char)*p;
        } else {
            if (o + 3 >= cap)
                return 0;
            dst[o++] = '%';
            dst[o++] = hex[*p >> 4];
            dst[o++] = hex[*p & 15];
        }
    }
    dst[o] = '\0';
    return 1;
}

enum dp_err wk_agent_latency(struct wk_agent *a, const char *task_id, const char *arch,
                             const char *scheme, const char *selector, json_t **out,
                             struct dp_errinfo *ei)
{
    char ea[200], es[200], esel[800], et[200], path[1600];
    *out = NULL;
    if (!wk_agent_urlenc(ea, sizeof(ea), arch) || !wk_agent_urlenc(es, sizeof(es), scheme) ||
        !wk_agent_urlenc(esel, sizeof(esel), selector) || !wk_agent_urlenc(et, sizeof(et), task_id))
        return dp_errinfo_set(ei, DP_EINVAL, "latency table query too long");
    snprintf(path, sizeof(path), "/agent/v1/latency?arch=%s&scheme=%s&device=%s&task=%s", ea, es,
             esel, et);
    long status = 0;
    json_t *ans = NULL;
    enum dp_err err = wk_agent_call(a, "GET", path, NULL, &ans, &status, ei);
    if (!err)
        err = dp_lat_table_check(ans, ei);
    if (err) {
        json_decref(ans);
        return err;
    }
    *out = ans;
    return DP_OK;
}

enum dp_err wk_agent_latency_put(struct wk_agent *a, const char *task_id, json_t *table,
                                 struct dp_errinfo *ei)
{
    if (table == NULL || json_object_set_new(table, "task", json_string(task_id)) != 0) {
        json_decref(table);
        return dp_errinfo_set(ei, DP_ENOMEM, "out of memory building the latency table upload");
    }
    return wk_agent_call(a, "PUT", "/agent/v1/latency", table, NULL, NULL, ei);
}
