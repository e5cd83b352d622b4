/*
 * The worker's side of the agent API (docs/api.md, "Workers"): register,
 * claim, heartbeat, events, artifact uploads, complete, fail, release and
 * blob downloads, each one HTTP request over a dp_httpc handle.
 *
 * Every call returns DP_OK on a 2xx answer. Any other answer, or none,
 * becomes the enum dp_err of common/http_status.h with ei holding the
 * server's message: DP_EIO when no answer came or the server erred (the
 * only failure worth another try), DP_ESTALE when the fence is stale (409
 * lease_lost: the lease is someone else's now), DP_EPERM for a refused
 * token, DP_ENOENT for an unknown task or worker, and so on. Callers branch
 * on these codes, never on HTTP statuses.
 * One wk_agent belongs to one thread (the loop thread).
 */
#ifndef DP_WORKER_AGENT_WK_AGENT_H
#define DP_WORKER_AGENT_WK_AGENT_H

#include <jansson.h>
#include <stdint.h>
#include <stdio.h>

#include "common/err.h"
#include "common/http_status.h"
#include "common/httpc.h"

struct wk_agent {
    struct dp_httpc *h;  /* owned */
    char worker_id[128]; /* from register */
    long heartbeat_s;    /* from register */
    long lease_s;        /* from register */
    int token_refused;   /* set by any call the server answered 401/403 (DP_EPERM): the
                          * token is revoked, expired, unknown or not an agent's, so
                          * nothing this worker sends will be taken any more */
};

/* Connects to server_url with token (agent scope). Returns DP_ENOMEM on failure. */
enum dp_err wk_agent_init(struct wk_agent *a, const char *server_url, const char *token);
void wk_agent_free(struct wk_agent *a);

/* POST /agent/v1/register; capabilities, device (the self-description,
 * NULL: {}) and labels (a device's, NULL: none) are borrowed. Fills
 * worker_id, heartbeat_s, lease_s. */
enum dp_err wk_agent_register(struct wk_agent *a, const char *name, json_t *capabilities,
                              json_t *device, json_t *labels, struct dp_errinfo *ei);

/*
 * POST /agent/v1/claim, waiting up to wait_s seconds. *task is the leased
 * task (caller json_decref()s it), or NULL when none came (204).
 */
enum dp_err wk_agent_claim(struct wk_agent *a, json_t *capabilities, int wait_s, json_t **task,
                           struct dp_errinfo *ei);

/* POST heartbeat with progress (borrowed, may be NULL); *cancel set from the answer. */
enum dp_err wk_agent_heartbeat(struct wk_agent *a, const char *task_id, json_int_t fence,
                               json_t *progress, int *cancel, struct dp_errinfo *ei);

/* POST events: events is a borrowed array of {"type","data"} objects. */
enum dp_err wk_agent_events(struct wk_agent *a, const char *task_id, json_int_t fence,
                            json_t *events, struct dp_errinfo *ei);

/* PUT the file at path as an artifact of kind; sha256 (65 bytes) receives its name. */
enum dp_err wk_agent_upload(struct wk_agent *a, const char *task_id, json_int_t fence,
                            const char *kind, const char *path, char sha256[65],
                            struct dp_errinfo *ei);

/* POST complete with outputs (borrowed object of kind -> sha256). */
enum dp_err wk_agent_complete(struct wk_agent *a, const char *task_id, json_int_t fence,
                              json_t *outputs, struct dp_errinfo *ei);

/* POST fail with a message; retryable says whether another attempt may succeed. */
enum dp_err wk_agent_fail(struct wk_agent *a, const char *task_id, json_int_t fence,
                          const char *message, int retryable, struct dp_errinfo *ei);

/* POST release: the task goes back to the queue, this attempt not counted. */
enum dp_err wk_agent_release(struct wk_agent *a, const char *task_id, json_int_t fence,
                             struct dp_errinfo *ei);

/* GET /agent/v1/blobs/{sha256} into out, no more than max_bytes. */
/* GET /agent/v1/latency: the newest latency table for arch and scheme on
 * the devices selector (compact JSON of one selector object) matches that
 * the job of task_id (leased to this agent) may use;
 * *out owned by the caller, checked (common/lat_table.h). DP_ENOENT (404)
 * when the server has none. */
enum dp_err wk_agent_latency(struct wk_agent *a, const char *task_id, const char *arch,
                             const char *scheme, const char *selector, json_t **out,
                             struct dp_errinfo *ei);

/* PUT /agent/v1/latency: uploads table (stolen: released here) as this
 * device's table, measured by latency task task_id (leased to this
 * agent). */
enum dp_err wk_agent_latency_put(struct wk_agent *a, const char *task_id, json_t *table,
                                 struct dp_errinfo *ei);

enum dp_err wk_agent_blob(struct wk_agent *a, const char *sha256, FILE *out, uint64_t max_bytes,
                          struct dp_errinfo *ei);

#endif
