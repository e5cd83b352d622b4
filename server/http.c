/*
 * The HTTP front-end (see http.h, http_int.h).
 *
 * DESIGN
 * - libmicrohttpd runs an internal polling thread per pool thread (epoll by
 *   default; --http-mode poll for comparison, docs/benchmarks.md), with
 *   suspend/resume so that long-polls and event streams never hold a
 *   thread: a request with nothing to say parks itself in h->waiters and is
 *   resumed by srv_notify (after writes) or srv_http_tick (deadlines).
 * - Per-request state (struct srv_req) is allocated on the first callback
 *   and released in the completion callback. Each request goes through the
 *   same steps: route (404/405), auth (401/403), body limits and content
 *   type (413/415) before any byte is accepted, body accumulation (JSON,
 *   capped) or streaming to a temp file (uploads, hashed as they arrive),
 *   then the handler.
 */
#include "server/http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <openssl/crypto.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "common/alloc.h"
#include "common/file.h"
#include "common/http_status.h"
#include "common/log.h"
#include "common/sha256.h"
#include "common/utf8.h"
#include "server/http_int.h"
#include "server/ids.h"
#include "server/text.h"

/* ---- Routes ------------------------------------------------------------------ */

#define A_ADM  SRV_AUTH_ADMIN
#define A_TEAM SRV_AUTH_TEAM
/* The agent routes take device tokens too: the store tells them apart. */
#define A_AGT (SRV_AUTH_AGENT | SRV_AUTH_DEVICE)
#define A_ANY (SRV_AUTH_ADMIN | SRV_AUTH_TEAM | SRV_AUTH_AGENT | SRV_AUTH_DEVICE)
static const struct srv_route srv_routes[] = {
    {"GET", "/healthz", SRV_AUTH_NONE, SRV_BODY_NONE, srv_api_healthz, NULL},
    /* Admin only: the counts cover every team (docs/security.md). */
    {"GET", "/metrics", A_ADM, SRV_BODY_NONE, srv_api_metrics, NULL},
    {"POST", "/api/v1/teams", A_ADM, SRV_BODY_JSON, srv_api_team_create, NULL},
    {"GET", "/api/v1/teams", A_ADM, SRV_BODY_NONE, srv_api_team_list, NULL},
    {"POST", "/api/v1/tokens", A_ADM | A_TEAM, SRV_BODY_JSON, srv_api_token_create, NULL},
    {"GET", "/api/v1/tokens", A_ADM | A_TEAM, SRV_BODY_NONE, srv_api_token_list, NULL},
    {"DELETE", "/api/v1/tokens/{id}", A_ADM | A_TEAM, SRV_BODY_NONE, srv_api_token_revoke, NULL},
    {"GET", "/api/v1/me", A_ANY, SRV_BODY_NONE, srv_api_me, NULL},
    {"GET", "/api/v1/workers", A_ADM | A_TEAM, SRV_BODY_NONE, srv_api_worker_list, NULL},
    {"GET", "/api/v1/devices", A_ADM | A_TEAM, SRV_BODY_NONE, srv_api_device_list, NULL},
    {"POST", "/api/v1/devices/{id}/drain", A_ADM | A_TEAM, SRV_BODY_JSON, srv_api_device_drain,
     NULL},
    {"POST", "/api/v1/devices/{id}/undrain", A_ADM | A_TEAM, SRV_BODY_JSON, srv_api_device_undrain,
     NULL},
    {"DELETE", "/api/v1/devices/{id}", A_ADM | A_TEAM, SRV_BODY_NONE, srv_api_device_remove, NULL},
    {"POST", "/api/v1/models", A_TEAM, SRV_BODY_UPLOAD, srv_api_model_create,
     srv_api_asset_upload_begin},
    {"GET", "/api/v1/models", A_TEAM, SRV_BODY_NONE, srv_api_model_list, NULL},
    {"GET", "/api/v1/models/{id}", A_TEAM, SRV_BODY_NONE, srv_api_model_get, NULL},
    {"GET", "/api/v1/models/{id}/content", A_TEAM, SRV_BODY_NONE, srv_api_model_content, NULL},
    {"DELETE", "/api/v1/models/{id}", A_TEAM, SRV_BODY_NONE, srv_api_model_delete, NULL},
    {"POST", "/api/v1/datasets", A_TEAM, SRV_BODY_UPLOAD, srv_api_dataset_create,
     srv_api_asset_upload_begin},
    {"GET", "/api/v1/datasets", A_TEAM, SRV_BODY_NONE, srv_api_dataset_list, NULL},
    {"GET", "/api/v1/datasets/{id}", A_TEAM, SRV_BODY_NONE, srv_api_dataset_get, NULL},
    {"DELETE", "/api/v1/datasets/{id}", A_TEAM, SRV_BODY_NONE, srv_api_dataset_delete, NULL},
    {"POST", "/api/v1/jobs", A_TEAM, SRV_BODY_JSON, srv_api_job_create, NULL},
    {"GET", "/api/v1/jobs", A_TEAM, SRV_BODY_NONE, srv_api_job_list, NULL},
    {"GET", "/api/v1/jobs/{id}", A_TEAM, SRV_BODY_NONE, srv_api_job_get, NULL},
    {"DELETE", "/api/v1/jobs/{id}", A_TEAM, SRV_BODY_NONE, srv_api_job_delete, NULL},
    {"POST", "/api/v1/jobs/{id}/cancel", A_TEAM, SRV_BODY_JSON, srv_api_job_cancel, NULL},
    {"POST", "/api/v1/jobs/{id}/retry", A_TEAM, SRV_BODY_JSON, srv_api_job_retry, NULL},
    {"GET", "/api/v1/jobs/{id}/events", A_TEAM, SRV_BODY_NONE, srv_api_job_events, NULL},
    {"GET", "/api/v1/jobs/{id}/report", A_TEAM, SRV_BODY_NONE, srv_api_job_report, NULL},
    {"GET", "/api/v1/jobs/{id}/artifacts", A_TEAM, SRV_BODY_NONE, srv_api_job_artifacts, NULL},
    {"GET", "/api/v1/artifacts/{sha256}", A_ADM | A_TEAM, SRV_BODY_NONE, srv_api_artifact_get,
     NULL},
    {"POST", "/agent/v1/register", A_AGT, SRV_BODY_JSON, srv_api_agent_register, NULL},
    {"POST", "/agent/v1/claim", A_AGT, SRV_BODY_JSON, srv_api_agent_claim, NULL},
    {"POST", "/agent/v1/tasks/{id}/heartbeat", A_AGT, SRV_BODY_JSON, srv_api_agent_heartbeat, NULL},
    {"POST", "/agent/v1/tasks/{id}/events", A_AGT, SRV_BODY_JSON, srv_api_agent_events, NULL},
    {"PUT", "/agent/v1/tasks/{id}/artifacts/{kind}", A_AGT, SRV_BODY_UPLOAD, srv_api_agent_artifact,
     srv_api_agent_artifact_begin},
    {"POST", "/agent/v1/tasks/{id}/complete", A_AGT, SRV_BODY_JSON, srv_api_agent_complete, NULL},
    {"POST", "/agent/v1/tasks/{id}/fail", A_AGT, SRV_BODY_JSON, srv_api_agent_fail, NULL},
    {"POST", "/agent/v1/tasks/{id}/release", A_AGT, SRV_BODY_JSON, srv_api_agent_release, NULL},
    {"GET", "/agent/v1/blobs/{sha256}", A_AGT, SRV_BODY_NONE, srv_api_agent_blob, NULL},
    {"GET", "/agent/v1/latency", A_AGT, SRV_BODY_NONE, srv_api_agent_latency_get, NULL},
    {"PUT", "/agent/v1/latency", A_AGT, SRV_BODY_JSON, srv_api_agent_latency_put, NULL},
    /* The dashboard (web_static.c): public files; the pages call the API with a token. */
    {"GET", "/", SRV_AUTH_NONE, SRV_BODY_NONE, srv_web_index, NULL},
    {"GET", "/ui/{file}", SRV_AUTH_NONE, SRV_BODY_NONE, srv_web_asset, NULL},
};
#define N_ROUTES (sizeof(srv_routes) / sizeof(srv_routes[0]))

void srv_http_print_routes(FILE *f)
{
    for (size_t i = 0; i < N_ROUTES; i++)
        fprintf(f, "%s %s\n", srv_routes[i].method, srv_routes[i].path);
}

int srv_http_has_route(const char *method, const char *path)
{
    for (size_t i = 0; i < N_ROUTES; i++)
        if (strcmp(srv_routes[i].method, method) == 0 && strcmp(srv_routes[i].path, path) == 0)
            return 1;
    return 0;
}

/* Matches url against pattern, copying {x} segments into params. */
static int route_match(const char *pattern, const char *url, struct srv_req *r)
{
    int n_params = 0;
    const char *p = pattern, *u = url;
    while (*p && *u) {
        if (*p == '{') {
            const char *pe = strchr(p, '}');
            const char *ue = strchr(u, '/');
            size_t len = ue ? (size_t)(ue - u) : strlen(u);
            if (len == 0 || len >= sizeof(r->params[0]) || n_params >= SRV_MAX_PARAMS)
                return 0;
            memcpy(r->params[n_params], u, len);
            r->params[n_params][len] = '\0';
            n_params++;
            p = pe + 1;
            u += len;
            continue;
        }
        if (*p != *u)
            return 0;
        p++;
        u++;
    }
    return *p == '\0' && *u == '\0';
}

/* ---- Replies ---------------------------------------------------------------------- */

static void count_status(struct srv_http *h, unsigned status)
{
    atomic_fetch_add(&h->n_requests, 1);
    if (status < 300)
        atomic_fetch_add(&h->n_2xx, 1);
    else if (status < 500)
        atomic_fetch_add(&h->n_4xx, 1);
    else
        atomic_fetch_add(&h->n_5xx, 1);
}

/* Holds resp when this request's thread committed something not yet on
 * disk (group commit): the connection is suspended until the flusher
 * reports the commit durable (http_on_durable), then on_request queues it.
 * 1 when held. */
static int hold_for_durability(struct MHD_Connection *conn, struct srv_req *r, unsigned status,
                               struct MHD_Response *resp)
{
    struct srv_http *h = r->h;
    uint64_t seq = srv_store_thread_commit();
    if (seq == 0 || !srv_store_group_commit(h->st))
        return 0;
    pthread_mutex_lock(&h->wait_mu);
    /* Checked under wait_mu: the flusher advances durable_seq before it
     * takes wait_mu to resume, so a reply is either durable here or
     * linked before the resume looks. */
    if (seq <= srv_store_durable_seq(h->st)) {
        pthread_mutex_unlock(&h->wait_mu);
        return 0;
    }
    struct srv_waiter *w = &r->waiter;
    w->commit_seq = seq;
    w->held = resp;
    w->held_status = status;
    w->flush_failed = 0;
    w->parked = 1;
    w->next = h->durable.next;
    w->prev = &h->durable;
    h->durable.next->prev = w;
    h->durable.next = w;
    MHD_suspend_connection(conn);
    pthread_mutex_unlock(&h->wait_mu);
    atomic_fetch_add(&h->n_held, 1);
    return 1;
}

/* The flusher's report (server/store_sync.c): resumes every held reply
 * whose commit is now on disk. */
static void http_on_durable(void *ctx, uint64_t seq, int ok)
{
    struct srv_http *h = ctx;
    pthread_mutex_lock(&h->wait_mu);
    struct srv_waiter *w = h->durable.next;
    while (w != &h->durable) {
        struct srv_waiter *next = w->next;
        if (w->commit_seq <= seq) {
            w->flush_failed = !ok;
            w->prev->next = w->next;
            w->next->prev = w->prev;
            w->next = w->prev = NULL;
            w->parked = 0;
            MHD_resume_connection(w->conn);
        }
        w = next;
    }
    pthread_mutex_unlock(&h->wait_mu);
}

enum MHD_Result srv_reply_response(struct MHD_Connection *conn, struct srv_req *r, unsigned status,
                                   struct MHD_Response *resp)
{
    if (resp == NULL)
        return MHD_NO;
    if (r && hold_for_durability(conn, r, status, resp))
        return MHD_YES;
    enum MHD_Result ret = MHD_queue_response(conn, status, resp);
    MHD_destroy_response(resp);
    if (r) {
        r->replied = 1;
        count_status(r->h, status);
    }
    return ret;
}

enum MHD_Result srv_reply_text(struct MHD_Connection *conn, struct srv_req *r, unsigned status,
                               const char *content_type, const char *text)
{
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(strlen(text), (void *)text, MHD_RESPMEM_MUST_COPY);
    if (resp == NULL)
        return MHD_NO;
    MHD_add_response_header(resp, "Content-Type", content_type);
    return srv_reply_response(conn, r, status, resp);
}

enum MHD_Result srv_reply_json_text(struct MHD_Connection *conn, struct srv_req *r, unsigned status,
                                    char *text_take)
{
    if (text_take == NULL)
        return MHD_NO;
    struct MHD_Response *resp =
        MHD_create_response_from_buffer_with_free_callback(strlen(text_take), text_take, dp_free);
    if (resp == NULL) {
        dp_free(text_take);
        return MHD_NO;
    }
    MHD_add_response_header(resp, "Content-Type", "application/json");
    return srv_reply_response(conn, r, status, resp);
}

enum MHD_Result srv_reply_json(struct MHD_Connection *conn, struct srv_req *r, unsigned status,
                               json_t *body_take)
{
    if (body_take == NULL)
        return MHD_NO; /* OOM building the body: drop the connection */
    struct srv_text b = {0};
    enum dp_err err = srv_text_add_json(&b, body_take, JSON_COMPACT);
    json_decref(body_take);
    if (!err)
        err = srv_text_add(&b, "\n", 1);
    if (err) {
        srv_text_free(&b);
        return MHD_NO;
    }
    return srv_reply_json_text(conn, r, status, b.p);
}

enum MHD_Result srv_reply_error(struct MHD_Connection *conn, struct srv_req *r, unsigned status,
                                const char *code, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    /* A message may quote what a client sent (a path, a key) or be cut
     * inside a character; jansson refuses a string that is not UTF-8, and
     * the answer would be lost (the connection dropped). */
    dp_utf8_sanitize(msg);
    return srv_reply_json(conn, r, status, json_pack("{s:s, s:s}", "code", code, "message", msg));
}

enum MHD_Result srv_reply_err(struct MHD_Connection *conn, struct srv_req *r, enum dp_err err,
                              const struct dp_errinfo *ei)
{
    const char *code = NULL;
    unsigned status = dp_err_to_http_status(err, &code);
    return srv_reply_error(conn, r, status, code, "%s", dp_errinfo_msg(ei, err));
}

enum MHD_Result srv_reply_busy(struct MHD_Connection *conn, struct srv_req *r, unsigned retry_s,
                               const char *msg)
{
    return srv_reply_retry(conn, r, MHD_HTTP_SERVICE_UNAVAILABLE, retry_s, "busy", msg);
}

enum MHD_Result srv_reply_retry(struct MHD_Connection *conn, struct srv_req *r, unsigned status,
                                unsigned retry_s, const char *code, const char *msg)
{
    json_t *body = json_pack("{s:s, s:s}", "code", code, "message", msg);
    struct srv_text b = {0};
    enum dp_err err = body ? srv_text_add_json(&b, body, JSON_COMPACT) : DP_ENOMEM;
    json_decref(body);
    if (!err)
        err = srv_text_add(&b, "\n", 1);
    if (err) {
        srv_text_free(&b);
        return MHD_NO;
    }
    struct MHD_Response *resp =
        MHD_create_response_from_buffer_with_free_callback(b.len, b.p, dp_free);
    if (resp == NULL) {
        srv_text_free(&b);
        return MHD_NO;
    }
    char retry[16];
    snprintf(retry, sizeof(retry), "%u", retry_s);
    MHD_add_response_header(resp, "Content-Type", "application/json");
    MHD_add_response_header(resp, "Retry-After", retry);
    return srv_reply_response(conn, r, status, resp);
}

enum MHD_Result srv_reply_blob(struct srv_http *h, struct MHD_Connection *conn, struct srv_req *r,
                               const char *sha, int64_t size, const char *content_type)
{
    char etag[70], path[4400];
    snprintf(etag, sizeof(etag), "\"%s\"", sha);
    const char *inm = srv_header(conn, "If-None-Match");
    if (inm && (strcmp(inm, etag) == 0 || strcmp(inm, sha) == 0 || strcmp(inm, "*") == 0)) {
        struct MHD_Response *resp =
            MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
        if (resp == NULL)
            return MHD_NO;
        MHD_add_response_header(resp, "ETag", etag);
        return srv_reply_response(conn, r, MHD_HTTP_NOT_MODIFIED, resp);
    }
    if (srv_blob_path(h->cfg->data_dir, sha, path, sizeof(path)) != DP_OK)
        return srv_reply_error(conn, r, 400, "invalid_request", "'%s' is not a sha256", sha);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return srv_reply_error(conn, r, 500, "internal", "artifact %s is missing on disk", sha);
    struct MHD_Response *resp = MHD_create_response_from_fd((uint64_t)size, fd);
    if (resp == NULL) {
        close(fd);
        return MHD_NO;
    }
    MHD_add_response_header(resp, "ETag", etag);
    MHD_add_response_header(resp, "Content-Type", content_type);
    return srv_reply_response(conn, r, MHD_HTTP_OK, resp);
}

/* ---- Request helpers ------------------------------------------------------------------ */

const char *srv_header(struct MHD_Connection *conn, const char *name)
{
    return MHD_lookup_connection_value(conn, MHD_HEADER_KIND, name);
}

const char *srv_query(struct MHD_Connection *conn, const char *name)
{
    return MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, name);
}

enum dp_err srv_json_only(const json_t *j, const char *where, const char *const *allowed,
                          struct dp_errinfo *ei)
{
    if (!json_is_object(j))
        return dp_errinfo_set(ei, DP_EINVAL, "%s: must be a JSON object", where);
    const char *key;
    json_t *v;
    json_object_foreach ((json_t *)j, key, v) {
        int ok = 0;
        for (const char *const *a = allowed; *a && !ok; a++)
            ok = strcmp(*a, key) == 0;
        if (!ok) {
            char shown[64];
            return dp_errinfo_set(ei, DP_EINVAL, "%s: unknown field '%s'", where,
                                  dp_utf8_clip(shown, sizeof(shown), key));
        }
    }
    return DP_OK;
}

enum dp_err srv_json_str(const json_t *o, const char *where, const char *key, int required,
                         const char **out, struct dp_errinfo *ei)
{
    json_t *v = json_object_get(o, key);
    if (v == NULL)
        return required ? dp_errinfo_set(ei, DP_EINVAL, "%s.%s: required", where, key) : DP_OK;
    if (!json_is_string(v))
        return dp_errinfo_set(ei, DP_EINVAL, "%s.%s: must be a string", where, key);
    if (strlen(json_string_value(v)) != json_string_length(v))
        return dp_errinfo_set(ei, DP_EINVAL, "%s.%s: must not contain NUL", where, key);
    *out = json_string_value(v);
    return DP_OK;
}

enum dp_err srv_json_int(const json_t *o, const char *where, const char *key, int required,
                         int64_t min, int64_t max, int64_t *out, struct dp_errinfo *ei)
{
    json_t *v = json_object_get(o, key);
    if (v == NULL)
        return required ? dp_errinfo_set(ei, DP_EINVAL, "%s.%s: required", where, key) : DP_OK;
    if (!json_is_integer(v))
        return dp_errinfo_set(ei, DP_EINVAL, "%s.%s: must be an integer", where, key);
    int64_t x = (int64_t)json_integer_value(v);
    if (x < min || x > max)
        return dp_errinfo_set(ei, DP_EINVAL,
                              "%s.%s: %" PRId64 " is outside [%" PRId64 ", %" PRId64 "]", where,
                              key, x, min, max);
    *out = x;
    return DP_OK;
}

enum dp_err srv_list_args(struct MHD_Connection *conn, int *limit, int64_t *cursor,
                          struct dp_errinfo *ei)
{
    const char *l = srv_query(conn, "limit"), *c = srv_query(conn, "cursor");
    *limit = 50;
    *cursor = 0;
    if (l) {
        char *end = NULL;
        errno = 0;
        long x = strtol(l, &end, 10);
        if (errno || end == l || *end || x < 1 || x > 200)
            return dp_errinfo_set(ei, DP_EINVAL, "limit: must be an integer in [1, 200]");
        *limit = (int)x;
    }
    if (c && *c) {
        char *end = NULL;
        errno = 0;
        long long x = strtoll(c, &end, 10);
        if (errno || end == c || *end || x < 1)
            return dp_errinfo_set(ei, DP_EINVAL, "cursor: not a cursor this server issued");
        *cursor = (int64_t)x;
    }
    return DP_OK;
}

enum dp_err srv_idem_key(struct MHD_Connection *conn, const char **key, struct dp_errinfo *ei)
{
    const char *k = srv_header(conn, "Idempotency-Key");
    *key = NULL;
    if (k == NULL)
        return DP_OK;
    size_t n = strlen(k);
    if (n == 0 || n > 128)
        return dp_errinfo_set(ei, DP_EINVAL, "Idempotency-Key: must be 1 to 128 characters");
    for (const unsigned char *p = (const unsigned char *)k; *p; p++)
        if (*p < 0x20 || *p > 0x7e)
            return dp_errinfo_set(ei, DP_EINVAL,
                                  "Idempotency-Key: printable ASCII (0x20 to 0x7E) only");
    *key = k;
    return DP_OK;
}

const char *srv_bearer_token(const char *authorization)
{
    /* RFC 7235: the scheme is case-insensitive, then one or more spaces. */
    if (strncasecmp(authorization, "Bearer ", 7) != 0)
        return NULL;
    const char *t = authorization + 7;
    while (*t == ' ')
        t++;
    return *t ? t : NULL;
}

int srv_media_type_is(const char *content_type, const char *type)
{
    /* RFC 9110: type/subtype are case-insensitive; parameters may follow
     * after optional whitespace and ';'. "application/jsonx" is another type. */
    size_t n = strlen(type);
    if (strncasecmp(content_type, type, n) != 0)
        return 0;
    const char *p = content_type + n;
    while (*p == ' ' || *p == '\t')
        p++;
    return *p == '\0' || *p == ';';
}

enum dp_err srv_idem_hash(const void *data, size_t n, char hash[65])
{
    uint8_t d[32];
    enum dp_err err = dp_sha256(n ? data : "", n, d);
    if (!err)
        dp_sha256_hex(d, hash);
    return err;
}

/* ---- Parking (long-poll, SSE) ---------------------------------------------------------- */

int srv_park(struct srv_http *h, struct srv_req *r, uint64_t gen, int64_t deadline_ms)
{
    pthread_mutex_lock(&h->wait_mu);
    if (h->stopping) {
        r->poll_deadline_ms = srv_mono_ms();
        pthread_mutex_unlock(&h->wait_mu);
        return SRV_PARK_STOPPING;
    }
    if (srv_store_generation(h->st) != gen) {
        pthread_mutex_unlock(&h->wait_mu);
        return SRV_PARK_CHANGED;
    }
    struct srv_waiter *w = &r->waiter;
    w->deadline_ms = deadline_ms;
    w->parked = 1;
    w->next = h->waiters.next;
    w->prev = &h->waiters;
    h->waiters.next->prev = w;
    h->waiters.next = w;
    MHD_suspend_connection(w->conn);
    pthread_mutex_unlock(&h->wait_mu);
    return SRV_PARKED;
}

static void waiter_unlink(struct srv_waiter *w)
{
    w->prev->next = w->next;
    w->next->prev = w->prev;
    w->next = w->prev = NULL;
    w->parked = 0;
}

/* Resumes parked requests: all of them, or only those past their deadline. */
static void wake(struct srv_http *h, int all)
{
    int64_t now = srv_mono_ms();
    pthread_mutex_lock(&h->wait_mu);
    struct srv_waiter *w = h->waiters.next;
    while (w != &h->waiters) {
        struct srv_waiter *next = w->next;
        if (all || w->deadline_ms <= now) {
            waiter_unlink(w);
            MHD_resume_connection(w->conn);
        }
        w = next;
    }
    pthread_mutex_unlock(&h->wait_mu);
}

void srv_notify(struct srv_http *h)
{
    wake(h, 1);
}

static void heads_expire(struct srv_http *h);

void srv_http_tick(struct srv_http *h)
{
    wake(h, 0);
    heads_expire(h);
}

/* ---- Connections: the request-head deadline ------------------------------------------- */

static void head_unlink(struct srv_http *h, struct srv_conn *c)
{
    c->prev->next = c->next;
    c->next->prev = c->prev;
    c->next = c->prev = NULL;
    c->head_since_ms = 0;
    h->n_heads--;
}

/* Closes c's socket for reading and writing: MHD sees the end at its next
 * poll and closes the connection in its own thread. Safe from any thread
 * under conn_mu, because MHD reports the close (and we unlist c) before it
 * closes the descriptor, so fd is still this connection's. */
static void head_drop(struct srv_http *h, struct srv_conn *c)
{
    head_unlink(h, c);
    if (c->fd >= 0)
        shutdown(c->fd, SHUT_RDWR);
}

/* c starts waiting for a request head (a new connection, or a kept-alive
 * one after an answer); the oldest waiter goes past the cap. */
static void head_wait(struct srv_http *h, struct srv_conn *c)
{
    if (c == NULL)
        return;
    pthread_mutex_lock(&h->conn_mu);
    if (c->head_since_ms == 0) {
        c->head_since_ms = srv_mono_ms();
        c->prev = h->heads.prev;
        c->next = &h->heads;
        h->heads.prev->next = c;
        h->heads.prev = c;
        h->n_heads++;
    }
    while (h->n_heads > h->cfg->http_max_pending_conns && h->heads.next != c) {
        head_drop(h, h->heads.next);
        atomic_fetch_add(&h->n_head_evictions, 1);
    }
    pthread_mutex_unlock(&h->conn_mu);
}

/* c's request head is complete. */
static void head_done(struct srv_http *h, struct srv_conn *c)
{
    if (c == NULL)
        return;
    pthread_mutex_lock(&h->conn_mu);
    if (c->head_since_ms != 0)
        head_unlink(h, c);
    pthread_mutex_unlock(&h->conn_mu);
}

/* Closes the connections whose request head is overdue. */
static void heads_expire(struct srv_http *h)
{
    int64_t limit = srv_mono_ms() - (int64_t)h->cfg->http_header_timeout_s * 1000;
    pthread_mutex_lock(&h->conn_mu);
    while (h->heads.next != &h->heads && h->heads.next->head_since_ms <= limit) {
        head_drop(h, h->heads.next);
        atomic_fetch_add(&h->n_head_timeouts, 1);
    }
    pthread_mutex_unlock(&h->conn_mu);
}

static struct srv_conn *conn_of(struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return ci ? ci->socket_context : NULL;
}

static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                          enum MHD_ConnectionNotificationCode code)
{
    struct srv_http *h = cls;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        struct srv_conn *c = dp_calloc(1, sizeof(*c));
        *socket_context = c;
        if (c == NULL)
            return; /* untracked: only the idle timeout applies */
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        c->fd = ci ? ci->connect_fd : -1;
        head_wait(h, c);
        return;
    }
    struct srv_conn *c = *socket_context;
    if (c == NULL)
        return;
    head_done(h, c);
    dp_free(c);
    *socket_context = NULL;
}

/* ---- Request lifecycle ------------------------------------------------------------------ */

static void req_free(struct srv_http *h, struct srv_req *r)
{
    if (r == NULL)
        return;
    if (r->waiter.parked) {
        pthread_mutex_lock(&h->wait_mu);
        if (r->waiter.parked)
            waiter_unlink(&r->waiter);
        pthread_mutex_unlock(&h->wait_mu);
    }
    if (r->waiter.held != NULL)
        MHD_destroy_response(r->waiter.held);
    dp_free(r->body);
    json_decref(r->json);
    srv_blob_free(r->blob);
    dp_free(r);
    atomic_fetch_sub(&h->n_reqs, 1);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    struct srv_http *h = cls;
    req_free(h, *con_cls);
    *con_cls = NULL;
    if (toe == MHD_REQUEST_TERMINATED_COMPLETED_OK) {
        /* Kept alive: the idle timeout is the default again, and the next
         * request head has its deadline. */
        MHD_set_connection_option(conn, MHD_CONNECTION_OPTION_TIMEOUT,
                                  (unsigned)h->cfg->http_timeout_s);
        head_wait(h, conn_of(conn));
    }
}

/* Authenticates the Bearer token against the route's scopes. */
static enum MHD_Result authorize(struct srv_http *h, struct MHD_Connection *conn, struct srv_req *r,
                                 int *ok)
{
    *ok = 0;
    if (r->route->auth == SRV_AUTH_NONE) {
        *ok = 1;
        return MHD_YES;
    }
    const char *a = srv_header(conn, "Authorization");
    const char *secret = a ? srv_bearer_token(a) : NULL;
    if (secret == NULL || strlen(secret) > 256)
        return srv_reply_error(conn, r, 401, "unauthorized",
                               "missing or malformed 'Authorization: Bearer <token>' header");
    struct dp_errinfo ei = {0};
    enum dp_err err = srv_token_hash(secret, r->token_hash);
    if (!err)
        err = srv_store_token_lookup(h->st, r->token_hash, &r->who, &ei);
    if (err == DP_ENOENT || err == DP_EPERM) /* unknown, revoked or expired */
        return srv_reply_error(conn, r, 401, "unauthorized", "%s", ei.msg);
    if (err)
        return srv_reply_err(conn, r, err, &ei);
    unsigned bit = r->who.scope == SRV_SCOPE_ADMIN    ? SRV_AUTH_ADMIN
                   : r->who.scope == SRV_SCOPE_TEAM   ? SRV_AUTH_TEAM
                   : r->who.scope == SRV_SCOPE_DEVICE ? SRV_AUTH_DEVICE
                                                      : SRV_AUTH_AGENT;
    if ((r->route->auth & bit) == 0)
        return srv_reply_error(conn, r, 403, "forbidden", "this route needs %s token",
                               r->route->auth & SRV_AUTH_TEAM    ? "a team"
                               : r->route->auth & SRV_AUTH_AGENT ? "an agent"
                                                                 : "an admin");
    /* Rates per token, after authentication: an unknown token costs a
     * lookup, not a bucket. Workers and devices get ten times a team's rate. */
    unsigned retry_s = 0;
    int mult = r->who.scope == SRV_SCOPE_ADMIN  ? 0
               : r->who.scope == SRV_SCOPE_TEAM ? 1
                                                : 10; /* agents and devices */
    if (!srv_ratelimit_take(h->rl, r->who.token_id, mult, srv_mono_ms(), &retry_s)) {
        char msg[160];
        snprintf(msg, sizeof(msg),
                 "rate limit: this token may make %d requests per second (bursts of %d); "
                 "retry in %u s",
                 h->cfg->rate_limit_rps * mult, h->cfg->rate_limit_burst * mult, retry_s);
        return srv_reply_retry(conn, r, 429, retry_s, "rate_limited", msg);
    }
    *ok = 1;
    return MHD_YES;
}

enum dp_err srv_auth_recheck(struct srv_http *h, struct srv_req *r, struct dp_errinfo *ei)
{
    if (r->route->auth == SRV_AUTH_NONE)
        return DP_OK;
    struct srv_principal again;
    return srv_store_token_lookup(h->st, r->token_hash, &again, ei);
}

/* The first callback of a request: route, auth, limits. Replies early on any
 * problem; otherwise prepares to receive the body. */
static enum MHD_Result req_begin(struct srv_http *h, struct MHD_Connection *conn, struct srv_req *r,
                                 const char *url, const char *method)
{
    pthread_mutex_lock(&h->wait_mu);
    int stopping = h->stopping;
    pthread_mutex_unlock(&h->wait_mu);
    if (stopping)
        return srv_reply_error(conn, r, 503, "shutting_down", "the server is shutting down");
    int path_found = 0;
    for (size_t i = 0; i < N_ROUTES && r->route == NULL; i++) {
        if (!route_match(srv_routes[i].path, url, r))
            continue;
        path_found = 1;
        if (strcmp(srv_routes[i].method, method) == 0)
            r->route = &srv_routes[i];
    }
    if (r->route == NULL) {
        char shown[96];
        if (path_found)
            return srv_reply_error(conn, r, 405, "method_not_allowed",
                                   "%s is not allowed on this path", method);
        return srv_reply_error(conn, r, 404, "not_found", "no route %s",
                               dp_utf8_clip(shown, sizeof(shown), url));
    }
    int ok;
    enum MHD_Result ret = authorize(h, conn, r, &ok);
    if (!ok)
        return ret;

    if (r->route->body != SRV_BODY_NONE)
        /* A body that stalls holds a socket and maybe a temp file: a
         * shorter idle timeout until the answer (on_completed restores it). */
        MHD_set_connection_option(conn, MHD_CONNECTION_OPTION_TIMEOUT,
                                  (unsigned)h->cfg->http_body_timeout_s);
    const char *cl = srv_header(conn, "Content-Length");
    uint64_t len = cl ? strtoull(cl, NULL, 10) : 0;
    uint64_t upload_max = (uint64_t)h->cfg->max_upload_mb << 20;
    const char *ct = srv_header(conn, "Content-Type");
    int is_json_ct = ct && srv_media_type_is(ct, "application/json");
    switch (r->route->body) {
        case SRV_BODY_NONE:
            if (len > 0)
                return srv_reply_error(conn, r, 413, "too_large", "this route takes no body");
            break;
        case SRV_BODY_JSON:
            if (len > SRV_JSON_BODY_MAX)
                return srv_reply_error(conn, r, 413, "too_large",
                                       "JSON body of %" PRIu64 " bytes is over the limit of %u",
                                       len, SRV_JSON_BODY_MAX);
            if (ct && !is_json_ct)
                return srv_reply_error(conn, r, 415, "unsupported_media_type",
                                       "Content-Type must be application/json");
            break;
        case SRV_BODY_UPLOAD:
            /* A JSON body on an upload route (POST /models {"arch"}) is small. */
            if (is_json_ct) {
                if (len > SRV_JSON_BODY_MAX)
                    return srv_reply_error(conn, r, 413, "too_large",
                                           "JSON body over the limit of %u bytes",
                                           SRV_JSON_BODY_MAX);
                break;
            }
            if (len > upload_max)
                return srv_reply_error(conn, r, 413, "too_large",
                                       "upload of %" PRIu64 " bytes is over the limit of %" PRIu64
                                       " bytes (--max-upload-mb)",
                                       len, upload_max);
            if (r->route->upload_begin) {
                ret = r->route->upload_begin(h, conn, r);
                if (r->replied)
                    return ret;
            }
            {
                struct dp_errinfo ei = {0};
                enum dp_err err = srv_blob_begin(h->cfg->data_dir, upload_max, &r->blob, &ei);
                if (err)
                    return srv_reply_err(conn, r, err, &ei);
            }
            break;
    }
    return MHD_YES;
}

/* Accepts a chunk of body; errors are remembered and answered at the end
 * (after the client finished sending), so the reply is readable. */
static void req_body(struct srv_req *r, const char *data, size_t n)
{
    if (r->body_err)
        return;
    if (r->blob) {
        r->body_err = srv_blob_write(r->blob, data, n, &r->body_ei);
        return;
    }
    if (n > SRV_JSON_BODY_MAX - r->body_len) {
        r->body_err = dp_errinfo_set(&r->body_ei, DP_ETOOBIG,
                                     "JSON body is over the limit of %u bytes", SRV_JSON_BODY_MAX);
        return;
    }
    char *grown = dp_realloc(r->body, r->body_len + n + 1);
    if (grown == NULL) {
        r->body_err = DP_ENOMEM;
        return;
    }
    r->body = grown;
    memcpy(r->body + r->body_len, data, n);
    r->body_len += n;
    r->body[r->body_len] = '\0';
}

/* A body (chunked: its length was not announced) went over its limit.
 * Reading on would take in whatever the client sends (300 MB were pushed
 * at a 5 MB limit), and libmicrohttpd 0.9.75 queues no response before
 * the body is complete; so the 413 is written on the socket here, the
 * sending side shut, and MHD_NO makes MHD close the connection. A client
 * still sending may see the reset before it reads the answer. */
static enum MHD_Result reply_too_large_and_close(struct MHD_Connection *conn, struct srv_req *r)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    json_t *body = json_pack("{s:s, s:s}", "code", "too_large", "message",
                             dp_errinfo_msg(&r->body_ei, r->body_err));
    struct srv_text b = {0};
    enum dp_err err = body ? srv_text_add_json(&b, body, JSON_COMPACT) : DP_ENOMEM;
    json_decref(body);
    if (!err)
        err = srv_text_add(&b, "\n", 1);
    if (ci && !err) {
        char head[256];
        int n = snprintf(head, sizeof(head),
                         "HTTP/1.1 413 Content Too Large\r\nContent-Type: application/json\r\n"
                         "Content-Length: %zu\r\nConnection: close\r\n\r\n",
                         b.len);
        struct iovec iov[2] = {{head, (size_t)n}, {b.p, b.len}};
        struct msghdr msg = {.msg_iov = iov, .msg_iovlen = 2};
        /* A fresh socket's send buffer takes these few hundred bytes at once. */
        if (sendmsg(ci->connect_fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT) > 0)
            shutdown(ci->connect_fd, SHUT_WR);
    }
    srv_text_free(&b);
    r->replied = 1;
    count_status(r->h, 413);
    return MHD_NO;
}

/* Parses the JSON body (an empty body is {} for routes whose fields are all optional). */
static enum MHD_Result req_parse_json(struct MHD_Connection *conn, struct srv_req *r, int *ok)
{
    *ok = 0;
    if (r->body_len == 0) {
        r->json = json_object();
        *ok = 1;
        return MHD_YES;
    }
    json_error_t je;
    r->json = json_loadb(r->body, r->body_len, JSON_REJECT_DUPLICATES, &je);
    if (r->json == NULL)
        return srv_reply_error(conn, r, 400, "malformed_json",
                               "malformed JSON at line %d, column %d: %s", je.line, je.column,
                               je.text);
    if (!json_is_object(r->json))
        return srv_reply_error(conn, r, 400, "malformed_json", "the body must be a JSON object");
    *ok = 1;
    return MHD_YES;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    struct srv_http *h = cls;
    struct srv_req *r = *con_cls;
    (void)version;
    /* Whatever this call commits is what its reply may have to wait for. */
    srv_store_thread_commit_reset();
    if (r != NULL && r->waiter.held != NULL) {
        /* A reply held for durability, resumed: its commit is on disk. */
        struct MHD_Response *resp = r->waiter.held;
        r->waiter.held = NULL;
        if (r->waiter.flush_failed) {
            MHD_destroy_response(resp);
            return srv_reply_error(conn, r, 500, "internal",
                                   "the change was committed but could not be flushed to disk "
                                   "(fsync failed); it may be lost on a power failure");
        }
        return srv_reply_response(conn, r, r->waiter.held_status, resp);
    }
    if (r == NULL) {
        r = dp_calloc(1, sizeof(*r));
        if (r == NULL)
            return MHD_NO;
        head_done(h, conn_of(conn));
        atomic_fetch_add(&h->n_reqs, 1);
        atomic_fetch_add(&h->n_reqs_begun, 1);
        r->waiter.conn = conn;
        *con_cls = r;
        r->h = h;
        return req_begin(h, conn, r, url, method);
    }
    if (r->replied) {
        *upload_data_size = 0; /* an early reply: drain and ignore the body */
        return MHD_YES;
    }
    if (*upload_data_size > 0) {
        req_body(r, upload_data, *upload_data_size);
        *upload_data_size = 0;
        if (r->body_err == DP_ETOOBIG)
            return reply_too_large_and_close(conn, r);
        return MHD_YES;
    }
    /* The body is complete (or this is a resumed, parked request). */
    if (r->body_err)
        return srv_reply_err(conn, r, r->body_err, &r->body_ei);
    if (r->handler_called) {
        /* A resumed long-poll: its token may have been revoked or have
         * expired while it was parked. */
        struct dp_errinfo ei = {0};
        enum dp_err err = srv_auth_recheck(h, r, &ei);
        if (err == DP_ENOENT || err == DP_EPERM)
            return srv_reply_error(conn, r, 401, "unauthorized", "%s", ei.msg);
        if (err)
            return srv_reply_err(conn, r, err, &ei);
    }
    r->handler_called = 1;
    if (r->route->body != SRV_BODY_NONE && r->json == NULL && r->blob == NULL) {
        int ok;
        enum MHD_Result ret = req_parse_json(conn, r, &ok);
        if (!ok)
            return ret;
    }
    return r->route->handler(h, conn, r);
}

/* ---- Start and stop ------------------------------------------------------------------------ */

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char msg[512];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    size_t n = strlen(msg);
    while (n > 0 && msg[n - 1] == '\n')
        msg[--n] = '\0';
    DP_LOG(DP_LOG_WARN, "microhttpd: %s", msg);
}

/* A PEM file (certificate chain or key) as the NUL-terminated string MHD
 * takes; *out is NULL on error (ei names the flag and the file). */
static enum dp_err http_read_pem(const char *flag, const char *path, char **out,
                                 struct dp_errinfo *ei)
{
    unsigned char *raw = NULL;
    size_t len = 0;
    char label[1100];
    snprintf(label, sizeof(label), "%s %s", flag, path);
    *out = NULL;
    /* A chain of a few certificates is a few KiB; a megabyte is not PEM. */
    enum dp_err err = dp_file_read(path, label, (size_t)1 << 20, &raw, &len, ei);
    if (err)
        return err;
    char *pem = dp_malloc(len + 1);
    if (pem == NULL) {
        OPENSSL_cleanse(raw, len);
        dp_free(raw);
        return dp_errinfo_set(ei, DP_ENOMEM, "%s: out of memory", label);
    }
    memcpy(pem, raw, len);
    pem[len] = '\0';
    OPENSSL_cleanse(raw, len);
    dp_free(raw);
    if (strstr(pem, "-----BEGIN ") == NULL || strlen(pem) != len) {
        OPENSSL_cleanse(pem, len);
        dp_free(pem);
        return dp_errinfo_set(ei, DP_EFORMAT, "%s: not a PEM file (no -----BEGIN line)", label);
    }
    *out = pem;
    return DP_OK;
}

static void http_free_pem(char *pem)
{
    if (pem != NULL) {
        OPENSSL_cleanse(pem, strlen(pem));
        dp_free(pem);
    }
}

/* Frees what srv_http_start made, whatever it got to (the daemon is the
 * caller's: stopped or never started). */
static void http_free(struct srv_http *h)
{
    http_free_pem(h->tls_cert_pem);
    http_free_pem(h->tls_key_pem);
    pthread_mutex_destroy(&h->conn_mu);
    pthread_mutex_destroy(&h->wait_mu);
    srv_ratelimit_free(h->rl);
    dp_free(h);
}

enum dp_err srv_http_start(const struct srv_config *cfg, struct srv_store *store,
                           struct srv_http **out, struct dp_errinfo *ei)
{
    *out = NULL;
    struct srv_http *h = dp_calloc(1, sizeof(*h));
    if (h == NULL)
        return DP_ENOMEM;
    h->cfg = cfg;
    h->st = store;
    h->started_ms = srv_now_ms();
    h->waiters.next = h->waiters.prev = &h->waiters;
    h->durable.next = h->durable.prev = &h->durable;
    pthread_mutex_init(&h->wait_mu, NULL);
    h->heads.next = h->heads.prev = &h->heads;
    pthread_mutex_init(&h->conn_mu, NULL);
    h->rl = srv_ratelimit_new(cfg->rate_limit_rps, cfg->rate_limit_burst);
    if (h->rl == NULL) {
        http_free(h);
        return DP_ENOMEM;
    }

    struct sockaddr_in addr;
    memset(&addr, 0, sizeof(addr));
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)cfg->port);
    if (inet_pton(AF_INET, cfg->host, &addr.sin_addr) != 1) {
        http_free(h);
        return dp_errinfo_set(ei, DP_EINVAL, "--listen: '%s' is not an IPv4 address", cfg->host);
    }
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_ALLOW_SUSPEND_RESUME |
                     MHD_USE_ERROR_LOG |
                     (strcmp(cfg->http_mode, "epoll") == 0 ? MHD_USE_EPOLL : MHD_USE_POLL);
    /* TLS options go through MHD_OPTION_ARRAY so that one call serves both
     * modes; without TLS the array is empty. Only TLS 1.2 and 1.3. */
    struct MHD_OptionItem tls_opts[4] = {{MHD_OPTION_END, 0, NULL}};
    if (cfg->tls_cert[0] != '\0') {
        enum dp_err err = DP_OK;
        if (MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES)
            err = dp_errinfo_set(ei, DP_EINVAL,
                                 "--tls-cert: this libmicrohttpd was built without TLS");
        if (!err)
            err = http_read_pem("--tls-cert", cfg->tls_cert, &h->tls_cert_pem, ei);
        if (!err)
            err = http_read_pem("--tls-key", cfg->tls_key, &h->tls_key_pem, ei);
        if (err) {
            http_free(h);
            return err;
        }
        flags |= MHD_USE_TLS;
        tls_opts[0] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_CERT, 0, h->tls_cert_pem};
        tls_opts[1] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_KEY, 0, h->tls_key_pem};
        tls_opts[2] = (struct MHD_OptionItem){
            MHD_OPTION_HTTPS_PRIORITIES, 0,
            (void *)"NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2:%SERVER_PRECEDENCE"};
        tls_opts[3] = (struct MHD_OptionItem){MHD_OPTION_END, 0, NULL};
    }
    h->daemon = MHD_start_daemon(
        flags, (uint16_t)cfg->port, NULL, NULL, on_request, h, MHD_OPTION_EXTERNAL_LOGGER,
        on_mhd_log, NULL, MHD_OPTION_SOCK_ADDR, &addr, MHD_OPTION_THREAD_POOL_SIZE,
        (unsigned)cfg->threads, MHD_OPTION_NOTIFY_COMPLETED, on_completed, h,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)cfg->http_timeout_s, MHD_OPTION_CONNECTION_LIMIT,
        (unsigned)cfg->http_max_conns, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
        (size_t)cfg->http_conn_mem_kb * 1024, MHD_OPTION_LISTEN_BACKLOG_SIZE,
        (unsigned)cfg->http_backlog, MHD_OPTION_PER_IP_CONNECTION_LIMIT,
        (unsigned)cfg->http_per_ip_conns, MHD_OPTION_NOTIFY_CONNECTION, on_connection, h,
        MHD_OPTION_ARRAY, tls_opts, MHD_OPTION_END);
    if (h->daemon == NULL) {
        http_free(h);
        return dp_errinfo_set(ei, DP_EIO,
                              cfg->tls_cert[0] ? "cannot listen on %s (address in use, or the "
                                                 "TLS certificate and key do not match?)"
                                               : "cannot listen on %s (address in use?)",
                              cfg->listen);
    }
    if (strcmp(cfg->sync, "group") == 0) {
        enum dp_err err = srv_store_group_commit_start(store, http_on_durable, h, ei);
        if (err) {
            MHD_stop_daemon(h->daemon);
            http_free(h);
            return err;
        }
    }
    *out = h;
    return DP_OK;
}

void srv_http_stop(struct srv_http *h)
{
    if (h == NULL)
        return;
    /* MHD aborts the process when it stops with a connection suspended, and
     * a resumed long-poll would park again at once. So: from here on
     * nothing parks (srv_park answers SRV_PARK_STOPPING) and new requests
     * are refused; the listening socket closes (new connections are
     * refused by the kernel); every parked request is resumed and given
     * up to SRV_STOP_DRAIN_MS to finish its answer (a claim's 204, an
     * event stream's last chunk) before the daemon closes what is left. */
    pthread_mutex_lock(&h->wait_mu);
    h->stopping = 1;
    pthread_mutex_unlock(&h->wait_mu);
    MHD_socket lfd = MHD_quiesce_daemon(h->daemon);
    if (lfd != MHD_INVALID_SOCKET)
        close(lfd);
    wake(h, 1);
    int64_t until = srv_mono_ms() + SRV_STOP_DRAIN_MS;
    while (atomic_load(&h->n_reqs) > 0 && srv_mono_ms() < until) {
        struct timespec ts = {0, 10 * 1000000L};
        nanosleep(&ts, NULL);
    }
    /* The last flush releases every reply still held for durability (none
     * may stay suspended); give them a moment to go out. */
    srv_store_group_commit_stop(h->st);
    until = srv_mono_ms() + 1000;
    while (atomic_load(&h->n_reqs) > 0 && srv_mono_ms() < until) {
        struct timespec ts = {0, 10 * 1000000L};
        nanosleep(&ts, NULL);
    }
    MHD_stop_daemon(h->daemon);
    http_free(h);
}
