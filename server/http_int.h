/*
 * Internal to the HTTP front-end (http.c, the api_*.c handlers, sse.c):
 * per-request state, the route table entry, and the reply helpers.
 *
 * A handler is called once the request body is complete (or, for parked
 * requests, again after each resume). It either queues a response with one
 * of the srv_reply_* helpers (which return MHD_YES/MHD_NO for MHD) or parks
 * the connection with srv_park.
 */
#ifndef DP_SERVER_HTTP_INT_H
#define DP_SERVER_HTTP_INT_H

#include <jansson.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "server/blob.h"
#include "server/config.h"
#include "server/http.h"
#include "server/ratelimit.h"
#include "server/store.h"

#define SRV_JSON_BODY_MAX (1u << 20) /* JSON bodies, bytes */
/* srv_http_stop waits up to this long for resumed long-polls and event
 * streams to finish their answer before it closes every connection. */
#define SRV_STOP_DRAIN_MS 3000
#define SRV_MAX_PARAMS    3

enum srv_body { SRV_BODY_NONE, SRV_BODY_JSON, SRV_BODY_UPLOAD };

/* Scopes allowed on a route, as a bit mask. */
enum {
    SRV_AUTH_NONE = 0,
    SRV_AUTH_ADMIN = 1,
    SRV_AUTH_TEAM = 2,
    SRV_AUTH_AGENT = 4,
    SRV_AUTH_DEVICE = 8 /* a device token: the agent routes, as a device (store.h) */
};

struct srv_http;
struct srv_req;

typedef enum MHD_Result (*srv_handler_fn)(struct srv_http *h, struct MHD_Connection *conn,
                                          struct srv_req *r);

struct srv_route {
    const char *method;
    const char *path; /* "/api/v1/jobs/{id}/cancel"; {x} matches one segment */
    unsigned auth;    /* SRV_AUTH_* mask; NONE means public */
    enum srv_body body;
    srv_handler_fn handler;
    /* For uploads: checks the request before any byte is accepted; may reply. */
    srv_handler_fn upload_begin;
};

/* A parked request (long-poll claim or event stream), in http.c's list. */
struct srv_waiter {
    struct MHD_Connection *conn;
    int64_t deadline_ms; /* monotonic */
    int parked;
    struct srv_waiter *prev, *next;
    /* A reply held for durability (h->durable): the commit it waits for,
     * the response and status to queue once it is on disk, and whether
     * the flush failed. */
    uint64_t commit_seq;
    struct MHD_Response *held;
    unsigned held_status;
    int flush_failed;
};

/* A connection from accept to close (MHD_OPTION_NOTIFY_CONNECTION). While
 * it waits for a request head it is in h->heads, oldest first: the
 * housekeeping tick closes it when the head is not complete within
 * --http-header-timeout-s (however slowly bytes trickle in), and the
 * oldest goes when more than --http-max-pending-conns wait. */
struct srv_conn {
    int fd;
    int64_t head_since_ms; /* monotonic; 0 when not waiting for a head */
    struct srv_conn *prev, *next;
};

struct srv_req {
    struct srv_http *h;
    const struct srv_route *route;
    char params[SRV_MAX_PARAMS][160]; /* path parameters, in order */
    struct srv_principal who;
    char token_hash[65]; /* of the Bearer token, to look it up again (srv_auth_recheck) */
    int handler_called;  /* the handler ran before: this call is a resume */
    /* JSON body, bounded by SRV_JSON_BODY_MAX. */
    char *body;
    size_t body_len;
    json_t *json; /* parsed on completion; owned */
    /* Upload body, streamed to a temp file. */
    struct srv_blob_writer *blob;
    /* A body error seen while reading (413 for oversize, 500 for disk). */
    enum dp_err body_err;
    struct dp_errinfo body_ei;
    int replied;
    /* Long-poll state. */
    struct srv_waiter waiter;
    int64_t poll_deadline_ms; /* 0: not started */
    int64_t upload_fence;
};

struct srv_http {
    struct MHD_Daemon *daemon;
    const struct srv_config *cfg;
    struct srv_store *st;
    pthread_mutex_t wait_mu;
    struct srv_waiter waiters; /* list head (sentinel) */
    struct srv_waiter durable; /* replies held until their commit is on disk (wait_mu) */
    _Atomic uint64_t n_held;   /* replies that were held for a group commit */
    pthread_mutex_t conn_mu;
    struct srv_conn heads;   /* connections waiting for a request head (sentinel), conn_mu */
    int n_heads;             /* their number, conn_mu */
    atomic_int n_validating; /* model validations running (--max-validations) */
    _Atomic uint64_t n_head_timeouts, n_head_evictions;
    int stopping;      /* srv_http_stop began: park nothing, refuse new requests (wait_mu) */
    atomic_int n_reqs; /* live struct srv_req: requests not yet completed */
    _Atomic uint64_t n_requests, n_2xx, n_4xx, n_5xx, n_bytes_uploaded;
    /* Requests that reached on_request; with n_requests (the answered ones)
     * the fuzz harness (tests/fuzz/fuzz_http.c) sees a request dropped
     * without an answer. */
    _Atomic uint64_t n_reqs_begun;
    int64_t started_ms;
    struct srv_ratelimit *rl;                       /* per-token request rates (--rate-limit-rps) */
    _Atomic uint64_t n_quota_jobs, n_quota_storage; /* requests refused by each quota */
    char *tls_cert_pem, *tls_key_pem; /* --tls-cert/--tls-key, NUL-terminated; MHD reads
                                       * them until it stops (wiped at free: OPENSSL_cleanse) */
};

/* ---- Replies (each returns what the MHD access handler must return) ---- */

enum MHD_Result srv_reply_json(struct MHD_Connection *conn, struct srv_req *r, unsigned status,
                               json_t *body_take);
/* Sends text_take (JSON text, dp_malloc'd; ownership passes to MHD). */
enum MHD_Result srv_reply_json_text(struct MHD_Connection *conn, struct srv_req *r, unsigned status,
                                    char *text_take);
enum MHD_Result srv_reply_error(struct MHD_Connection *conn, struct srv_req *r, unsigned status,
                                const char *code, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
/* Maps err to a status and code (ENOENT 404 not_found, EEXIST 409 conflict,
 * EINVAL 400 invalid_request, ETOOBIG 413, ...) unless code/status given. */
enum MHD_Result srv_reply_err(struct MHD_Connection *conn, struct srv_req *r, enum dp_err err,
                              const struct dp_errinfo *ei);
enum MHD_Result srv_reply_text(struct MHD_Connection *conn, struct srv_req *r, unsigned status,
                               const char *content_type, const char *text);
/* Queues resp (a NULL resp, from a failed create, drops the connection),
 * releases it, marks the request replied and counts it in /metrics. Every
 * reply goes through here. */
enum MHD_Result srv_reply_response(struct MHD_Connection *conn, struct srv_req *r, unsigned status,
                                   struct MHD_Response *resp);
/* Per-team quotas (server/quota.c) for a request that adds a job (new_job)
 * or new_bytes of storage: when one is exceeded it replies 429 and sets
 * *refused; otherwise it returns MHD_YES with *refused 0. */
enum MHD_Result srv_quota_check(struct srv_http *h, struct MHD_Connection *conn, struct srv_req *r,
                                int new_job, int64_t new_bytes, int *refused);
/* status {"code":code,"message":msg} with Retry-After: retry_s (seconds). */
enum MHD_Result srv_reply_retry(struct MHD_Connection *conn, struct srv_req *r, unsigned status,
                                unsigned retry_s, const char *code, const char *msg);
/* 503 {"code":"busy","message":msg} with Retry-After: retry_s (seconds):
 * the server is at a configured limit; the same request later may pass. */
enum MHD_Result srv_reply_busy(struct MHD_Connection *conn, struct srv_req *r, unsigned retry_s,
                               const char *msg);
/* Streams a stored blob with ETag "<sha>"; 304 on a matching If-None-Match. */
enum MHD_Result srv_reply_blob(struct srv_http *h, struct MHD_Connection *conn, struct srv_req *r,
                               const char *sha, int64_t size, const char *content_type);

/* ---- Request helpers ---- */

/* The header or query argument, or NULL. */
const char *srv_header(struct MHD_Connection *conn, const char *name);
const char *srv_query(struct MHD_Connection *conn, const char *name);

/* Checks that j is an object whose keys are all in `allowed` (NULL-ended),
 * naming the first unknown one. where: "body" or "body.pretrain". */
enum dp_err srv_json_only(const json_t *j, const char *where, const char *const *allowed,
                          struct dp_errinfo *ei);

/* Typed field getters: required ones fail with a message naming the field
 * when absent or of the wrong type; optional ones leave *out alone when absent. */
enum dp_err srv_json_str(const json_t *o, const char *where, const char *key, int required,
                         const char **out, struct dp_errinfo *ei);
enum dp_err srv_json_int(const json_t *o, const char *where, const char *key, int required,
                         int64_t min, int64_t max, int64_t *out, struct dp_errinfo *ei);

/* ?limit= (1..200, default 50) and ?cursor=. */
enum dp_err srv_list_args(struct MHD_Connection *conn, int *limit, int64_t *cursor,
                          struct dp_errinfo *ei);

/* The token of an Authorization header value "Bearer <token>" (the scheme
 * in any case, RFC 7235), pointing into authorization; NULL when the
 * scheme is not Bearer or the token is empty. Pure. */
const char *srv_bearer_token(const char *authorization);

/* 1 when the Content-Type value content_type is exactly the media type
 * type (case-insensitive), optionally followed by parameters
 * ("application/json; charset=utf-8"); 0 otherwise ("application/jsonx").
 * Pure. */
int srv_media_type_is(const char *content_type, const char *type);

/* The Idempotency-Key header (validated: 1 to 128 bytes of 0x20..0x7E), or
 * NULL when absent. */
enum dp_err srv_idem_key(struct MHD_Connection *conn, const char **key, struct dp_errinfo *ei);
/* The hash (64 hex digits) a request is remembered by under its
 * Idempotency-Key: of the n bytes at data (NULL when n is 0), the body or
 * whatever else identifies the request. */
enum dp_err srv_idem_hash(const void *data, size_t n, char hash[65]); /* fails as dp_sha256 */

/* What srv_park did. */
enum srv_park_result {
    SRV_PARKED = 0,       /* suspended: return to MHD, the handler runs again on resume */
    SRV_PARK_CHANGED = 1, /* the data changed since gen was read: look again at once */
    SRV_PARK_STOPPING = 2 /* the server is stopping: answer now (r->poll_deadline_ms is set
                           * to now, so a long-poll's next look answers as at its deadline;
                           * an event stream ends) */
};

/* Parks the connection until srv_notify, or until srv_http_tick finds
 * deadline_ms (monotonic) passed. Never parks once srv_http_stop began:
 * the daemon cannot stop while a connection is suspended. */
int srv_park(struct srv_http *h, struct srv_req *r, uint64_t gen, int64_t deadline_ms);

/* Looks the request's token up again, for a request that was parked: DP_OK
 * while it is valid, DP_EPERM once revoked or expired, DP_ENOENT if gone
 * (ei says which, for a 401); DP_OK for a public route. Any thread. */
enum dp_err srv_auth_recheck(struct srv_http *h, struct srv_req *r, struct dp_errinfo *ei);

/* ---- Server-Sent Events framing (sse.c; pure, unit-tested) ---- */

struct srv_text;

/* Appends events (a JSON array of {"id","type","data"}) to out as SSE
 * frames "id: N\nevent: TYPE\ndata: JSON\n\n", data compact on one line,
 * and sets *last_id to the id of the last one framed, so that a resumed
 * stream starts after exactly what was sent. DP_ETOOBIG for a type too long
 * to frame, DP_ENOMEM; out keeps the frames appended before a failure. */
enum dp_err srv_sse_format(struct srv_text *out, const json_t *events, int64_t *last_id);

/* Parses a Last-Event-ID header or ?after= value (NULL: absent) into
 * *after, the event id to resume after (0 when absent). DP_EINVAL unless it
 * is a non-negative decimal integer with nothing after it. */
enum dp_err srv_sse_after_parse(const char *text, int64_t *after);

/* ---- Job submission (api_jobs.c) ---- */

/* A job submission body, checked; the pointers borrow from the body. */
struct srv_job_body {
    const char *name, *model_id, *dataset_id;
    int64_t priority, max_attempts, seed;
    json_t *pretrain, *exp, *spec; /* NULL when absent */
    const char *compile_target;    /* "native", "portable" or "opencl"; NULL: no compile task */
    json_t *profile;               /* body.profile, checked (borrowed); NULL: no profile task */
    int64_t compile_tune_s;        /* seconds of auto-tuning on the worker, 0..3600 */
    /* spec.auto.objective "latency": the first rule's pruning scheme and
     * spec.auto.device (a selector's JSON text); lat_scheme "" otherwise.
     * lat_opts: body.latency, checked (borrowed), NULL when absent. */
    char lat_scheme[32];
    char lat_device[256];
    json_t *lat_opts;
    unsigned status;  /* on failure: 400, or 422 for a spec that is not valid */
    const char *code; /* on failure: "invalid_request" or "invalid_spec" */
};

/* Checks a POST /api/v1/jobs body j without a connection: every field, the
 * spec with the worker's parser (common/spec.h). DP_OK and *b filled, or
 * the error with ei naming the field and b->status and b->code the answer
 * (DP_ETOOBIG and DP_ENOMEM map as srv_reply_err does). Pure but for
 * allocation; the fuzz harness tests/fuzz/fuzz_json.c calls it directly. */
enum dp_err srv_job_body_check(const json_t *j, struct srv_job_body *b, struct dp_errinfo *ei);

/* ---- Handlers (api_*.c, sse.c) ---- */

#define SRV_HANDLER(name)                                                                          \
    enum MHD_Result name(struct srv_http *h, struct MHD_Connection *conn, struct srv_req *r)

SRV_HANDLER(srv_api_healthz);
SRV_HANDLER(srv_api_metrics);
SRV_HANDLER(srv_api_team_create);
SRV_HANDLER(srv_api_team_list);
SRV_HANDLER(srv_api_token_create);
SRV_HANDLER(srv_api_token_list);
SRV_HANDLER(srv_api_token_revoke);
SRV_HANDLER(srv_api_me);
SRV_HANDLER(srv_api_worker_list);
SRV_HANDLER(srv_api_device_list);
SRV_HANDLER(srv_api_device_drain);
SRV_HANDLER(srv_api_device_undrain);
SRV_HANDLER(srv_api_device_remove);
SRV_HANDLER(srv_api_model_create);
SRV_HANDLER(srv_api_model_list);
SRV_HANDLER(srv_api_model_get);
SRV_HANDLER(srv_api_model_content);
SRV_HANDLER(srv_api_dataset_create);
SRV_HANDLER(srv_api_dataset_list);
SRV_HANDLER(srv_api_dataset_get);
SRV_HANDLER(srv_api_asset_upload_begin);
SRV_HANDLER(srv_api_job_create);
SRV_HANDLER(srv_api_job_list);
SRV_HANDLER(srv_api_job_get);
SRV_HANDLER(srv_api_job_cancel);
SRV_HANDLER(srv_api_job_retry);
SRV_HANDLER(srv_api_job_delete);
SRV_HANDLER(srv_api_model_delete);
SRV_HANDLER(srv_api_dataset_delete);
SRV_HANDLER(srv_api_job_report);
SRV_HANDLER(srv_api_job_artifacts);
SRV_HANDLER(srv_api_job_events);
SRV_HANDLER(srv_api_artifact_get);
SRV_HANDLER(srv_api_agent_register);
SRV_HANDLER(srv_api_agent_claim);
SRV_HANDLER(srv_api_agent_heartbeat);
SRV_HANDLER(srv_api_agent_events);
SRV_HANDLER(srv_api_agent_artifact_begin);
SRV_HANDLER(srv_api_agent_artifact);
SRV_HANDLER(srv_api_agent_complete);
SRV_HANDLER(srv_api_agent_fail);
SRV_HANDLER(srv_api_agent_release);
SRV_HANDLER(srv_api_agent_blob);
SRV_HANDLER(srv_api_agent_latency_get);
SRV_HANDLER(srv_api_agent_latency_put);
SRV_HANDLER(srv_web_index); /* web_static.c */
SRV_HANDLER(srv_web_asset);

#endif
