/*
 * The store: every SQL statement of the server, over one SQLite database in
 * WAL mode (STYLE rule 34). Nothing outside store*.c sees SQL.
 *
 *   struct srv_store *st = NULL;
 *   err = srv_store_open("data/dnnpress.db", &st, &ei);   // runs migrations
 *   err = srv_store_job_create(st, &principal, &newjob, &job_json, &replayed, &ei);
 *   ...
 *   srv_store_close(st);
 *
 * DESIGN
 * - Two connections, each with every statement prepared once
 *   (SQLITE_PREPARE_PERSISTENT), named parameters only, user data only ever
 *   bound, never formatted. The writer, behind one mutex, runs every write
 *   and the reads inside write transactions: the server is the only writer
 *   and each call is short (an indexed lookup or a small transaction), so
 *   serialising them is simpler and, on 2 cores, as fast as a pool. A
 *   read-only connection behind its own mutex serves the hot reads (token
 *   lookup, job GET and list, events, blob access): in WAL mode it reads
 *   the last committed state and never waits behind a commit's fsync.
 * - Writes run in BEGIN IMMEDIATE transactions with synchronous=FULL: when a
 *   call returns DP_OK its effect is on disk (the API's "2xx means durable").
 * - The queue (srv_store_task_*): claim is one UPDATE ... RETURNING that
 *   picks the best ready task of the worker's team (any team for a shared
 *   agent) and bumps its fencing counter; every worker write names the
 *   fence it was given and is refused (DP_ESTALE, "lease lost") unless the
 *   task is still leased under that fence to a worker that the calling
 *   token registered. The reaper returns expired leases to the queue with
 *   backoff, or marks them dead.
 * - Results are jansson objects shaped as docs/api.md describes; the caller
 *   owns them (json_decref).
 *
 * Errors: DP_ENOENT (absent or another team's: both are 404), DP_EEXIST
 * (state conflict, name taken: 409), DP_ESTALE (a lease that is stale or
 * not the caller's: 409 lease_lost), DP_EINVAL (invalid
 * request, message names the field), DP_EIO (database failure), DP_ENOMEM.
 * Every call is thread-safe.
 */
#ifndef DP_SERVER_STORE_H
#define DP_SERVER_STORE_H

#include <jansson.h>
#include <stdint.h>

#include "common/err.h"
#include "server/ids.h"

struct srv_store;

/* Who is calling: the token's scope and team ("" for admin and for a shared
 * agent or device; an agent or device with a team is that team's,
 * docs/security.md). A device token is an agent token that registers a
 * device and runs only the profile tasks that target it. */
enum srv_scope { SRV_SCOPE_ADMIN, SRV_SCOPE_TEAM, SRV_SCOPE_AGENT, SRV_SCOPE_DEVICE };
struct srv_principal {
    enum srv_scope scope;
    char token_id[SRV_ID_MAX];
    char team_id[SRV_ID_MAX]; /* "" when the token has no team */
};

/* Tuning of the queue, fixed at open. */
struct srv_queue_cfg {
    int64_t lease_ms;        /* lease length granted by claim and heartbeat */
    int64_t backoff_base_ms; /* first retry delay; doubles per attempt, plus jitter */
    int64_t backoff_max_ms;
    int64_t max_running_per_team; /* leased tasks a team may hold (0: no quota) */
    int64_t latency_max_age_ms;   /* a latency table older than this is stale (0: no limit) */
};

/* ---- Lifecycle ------------------------------------------------------------ */

/* Opens (creating if needed) the database at path, sets WAL mode, applies
 * pending migrations in order, each in a transaction, and records the schema
 * version in PRAGMA user_version. A database newer than this binary is
 * refused. *out is released with srv_store_close. */
enum dp_err srv_store_open(const char *path, const struct srv_queue_cfg *cfg,
                           struct srv_store **out, struct dp_errinfo *ei);

/* Finalizes every statement and closes the database. NULL is a no-op. */
void srv_store_close(struct srv_store *st);

/* PRAGMA user_version of the open database. */
int srv_store_schema_version(struct srv_store *st);

/* Runs PRAGMA integrity_check; DP_OK when it says "ok". */
enum dp_err srv_store_integrity_check(struct srv_store *st, struct dp_errinfo *ei);

/* Copies the WAL into the database file and truncates the WAL to zero
 * bytes (SQLITE_CHECKPOINT_TRUNCATE), holding both connections so that no
 * read of ours pins an old snapshot. SQLite's automatic checkpoint only
 * runs at commits and gives up behind any open reader, so the server calls
 * this on a schedule (the housekeeping thread). *wal_len (may be NULL)
 * receives the -wal file's size afterwards, in bytes. DP_EIO when SQLite
 * refuses (message in ei). Any thread; blocks writers while it copies. */
enum dp_err srv_store_checkpoint(struct srv_store *st, int64_t *wal_len, struct dp_errinfo *ei);

/* The size of the -wal file in bytes (0 when absent), for /metrics. Any thread. */
int64_t srv_store_wal_len(struct srv_store *st);

/* ---- Tokens and teams ----------------------------------------------------- */

/* Looks a token hash up at the current time and fills *out. DP_ENOENT for
 * an unknown hash ("unknown token"), DP_EPERM for a revoked or expired one
 * (ei says "token revoked" or "token expired"); both are 401 at the API.
 * A token's last_used_at is refreshed when it is more than a minute old:
 * at most one small write per token a minute, so lookups stay reads. Any
 * thread. */
enum dp_err srv_store_token_lookup(struct srv_store *st, const char *hash,
                                   struct srv_principal *out, struct dp_errinfo *ei);

/* Ensures a live admin token exists, at start.
 * - env_hash (the hash of DNNPRESS_ADMIN_TOKEN) names a token not stored
 *   yet: it is stored (origin "env") and every earlier env-provided admin
 *   token is revoked, so changing the variable replaces the token. The
 *   same value again changes nothing. A value that is a revoked token is
 *   refused (DP_EPERM: revocation is final), and so is one that is another
 *   scope's token (DP_EINVAL).
 * - Without env_hash, when no live admin token exists, a new secret is
 *   generated (origin "generated"), stored hashed and copied to
 *   new_secret. A generated token is never replaced by the server: it
 *   stays valid, with or without the variable, until revoked through the
 *   API.
 * new_secret is "" unless a token was generated. */
enum dp_err srv_store_admin_ensure(struct srv_store *st, const char *env_hash,
                                   char new_secret[SRV_TOKEN_LEN], struct dp_errinfo *ei);

/* Mints the agent token of --local-workers: a shared agent (no team: it
 * serves every team, origin "local") named name, revoking every earlier
 * local-workers token in the same transaction: the previous start's
 * workers (and anything that kept their token) lose access, and restarts
 * never accumulate live tokens. The secret goes to secret; it is never
 * stored. */
enum dp_err srv_store_agent_token_mint(struct srv_store *st, const char *name,
                                       char secret[SRV_TOKEN_LEN], struct dp_errinfo *ei);

enum dp_err srv_store_team_create(struct srv_store *st, const char *name, json_t **out,
                                  struct dp_errinfo *ei);
enum dp_err srv_store_team_list(struct srv_store *st, int limit, int64_t cursor, json_t **out,
                                struct dp_errinfo *ei);

/* Creates a token of scope "team" or "agent" for team_id, expiring at
 * expires_at_ms (ms since the epoch; 0: never). out carries the secret
 * (shown once) and the fields of srv_store_token_list's items, "shared"
 * among them. team_id may be NULL only for an agent token: a shared agent. */
enum dp_err srv_store_token_create(struct srv_store *st, const char *team_id, const char *scope,
                                   const char *name, int64_t expires_at_ms, json_t **out,
                                   struct dp_errinfo *ei);

/* A page of tokens, newest first: every token for an admin, the caller's
 * team's tokens for a team. Items are {"id","name","scope","team_id",
 * "origin","created_at","expires_at","revoked_at","last_used_at"}, never
 * the secret or its hash. */
enum dp_err srv_store_token_list(struct srv_store *st, const struct srv_principal *who, int limit,
                                 int64_t cursor, json_t **out, struct dp_errinfo *ei);

/* Revokes token id (at once: the next request with it is refused) and
 * returns it as listed. An admin may revoke any token, a team only its
 * own team's (another's is DP_ENOENT, as if absent). Revoking a revoked
 * token returns it unchanged. The last live admin token cannot be revoked
 * (DP_EEXIST): nobody could then manage the server. */
enum dp_err srv_store_token_revoke(struct srv_store *st, const struct srv_principal *who,
                                   const char *id, json_t **out, struct dp_errinfo *ei);

/* ---- Models and datasets -------------------------------------------------- */

struct srv_asset_new {
    const char *kind;     /* "model" or "dataset" */
    const char *name;     /* validated by the caller */
    const char *format;   /* "builtin", "onnx", "safetensors", "idx", "cifar10", "npy" */
    const char *builtin;  /* arch or dataset name, or NULL for an upload */
    const char *sha256;   /* the uploaded blob (already in the blob store), or NULL */
    int64_t size;         /* bytes of the blob */
    const char *idem_key; /* Idempotency-Key or NULL */
    const char *req_hash; /* hash of the request, for key-reuse detection */
};

/* Creates the asset (and its blob row). *replayed is 1 when an earlier
 * request with the same Idempotency-Key created it (out is that object). */
enum dp_err srv_store_asset_create(struct srv_store *st, const struct srv_principal *who,
                                   const struct srv_asset_new *a, json_t **out, int *replayed,
                                   struct dp_errinfo *ei);
enum dp_err srv_store_asset_get(struct srv_store *st, const struct srv_principal *who,
                                const char *kind, const char *id, json_t **out,
                                struct dp_errinfo *ei);
enum dp_err srv_store_asset_list(struct srv_store *st, const struct srv_principal *who,
                                 const char *kind, int limit, int64_t cursor, json_t **out,
                                 struct dp_errinfo *ei);

/* ---- Jobs ----------------------------------------------------------------- */

struct srv_job_new {
    const char *name;
    const char *model_id;
    const char *dataset_id;
    json_t *params; /* {"spec","pretrain"?,"export","compile"?,"seed"} (borrowed) */
    int has_pretrain;
    int has_compile; /* a compile task follows export */
    /* profile.devices: the selectors (a JSON array, borrowed; NULL: no
     * profile). One profile task per matching device follows compile. */
    const json_t *profile_devices;
    /* spec.auto.objective "latency": {"scheme", "device": selector, "rates",
     * "runs", "warmup", "timeout_s"} (borrowed; NULL: another objective).
     * Stored as params.latency with the table's "arch" key added; a
     * latency task precedes compress when no fresh table exists. */
    const json_t *latency;
    int priority;     /* 0..9, higher runs first */
    int max_attempts; /* 1..20 */
    const char *idem_key;
    const char *req_hash;
};

/* Creates the job and its tasks (train? -> latency? -> compress -> retrain
 * -> export -> compile? -> profile*).
 * The model and dataset must be the caller's (else DP_EINVAL naming the
 * field); a built-in model needs pretrain. */
enum dp_err srv_store_job_create(struct srv_store *st, const struct srv_principal *who,
                                 const struct srv_job_new *j, json_t **out, int *replayed,
                                 struct dp_errinfo *ei);
enum dp_err srv_store_job_get(struct srv_store *st, const struct srv_principal *who, const char *id,
                              json_t **out, struct dp_errinfo *ei);
/* The same object as JSON text built by SQLite (the fast path of GET);
 * *out is dp_malloc'd and the caller dp_frees it. */
enum dp_err srv_store_job_get_text(struct srv_store *st, const struct srv_principal *who,
                                   const char *id, char **out, struct dp_errinfo *ei);
/* {"items": [...], "next_cursor": ...} as JSON text; *out is dp_malloc'd. */
enum dp_err srv_store_job_list_text(struct srv_store *st, const struct srv_principal *who,
                                    const char *state, int limit, int64_t cursor, char **out,
                                    struct dp_errinfo *ei);
/* state may be NULL (all states). */
enum dp_err srv_store_job_list(struct srv_store *st, const struct srv_principal *who,
                               const char *state, int limit, int64_t cursor, json_t **out,
                               struct dp_errinfo *ei);
enum dp_err srv_store_job_cancel(struct srv_store *st, const struct srv_principal *who,
                                 const char *id, json_t **out, struct dp_errinfo *ei);
enum dp_err srv_store_job_retry(struct srv_store *st, const struct srv_principal *who,
                                const char *id, json_t **out, struct dp_errinfo *ei);
/* The sha256 of the job's report output; DP_ENOENT "report_not_ready" before. */
enum dp_err srv_store_job_report(struct srv_store *st, const struct srv_principal *who,
                                 const char *id, char sha[65], struct dp_errinfo *ei);
enum dp_err srv_store_job_artifacts(struct srv_store *st, const struct srv_principal *who,
                                    const char *id, json_t **out, struct dp_errinfo *ei);

/* Events of the job numbered after `after`, at most max, as a JSON array
 * of {"id","type","data"}. id is the event's number within its job (1, 2,
 * 3, ... in order), so it says nothing about other jobs; *terminal is 1 when the job is in a
 * terminal state (read in the same snapshot, so an empty answer with *terminal set means the stream
 * is complete). */
enum dp_err srv_store_events_after(struct srv_store *st, const struct srv_principal *who,
                                   const char *job_id, int64_t after, int max, json_t **out,
                                   int *terminal, struct dp_errinfo *ei);

/* Whether the caller's team may read blob sha (an asset or artifact of the
 * team; admin may read all); its size in *size. DP_ENOENT otherwise. */
enum dp_err srv_store_blob_team(struct srv_store *st, const struct srv_principal *who,
                                const char *sha, int64_t *size, struct dp_errinfo *ei);

/* Whether agent `who` may read blob sha: it is the model, dataset or an
 * artifact of a job with a task leased to one of the workers its token
 * registered. DP_ENOENT otherwise (whoever else's blob it is). */
enum dp_err srv_store_blob_agent(struct srv_store *st, const struct srv_principal *who,
                                 const char *sha, int64_t *size, struct dp_errinfo *ei);

/* ---- Workers and the queue (agent scope) ---------------------------------- */

/* Every call below takes the calling agent `who`. A worker belongs to the
 * token that registered it and serves that token's team (every team for a
 * shared agent); a lease belongs to the worker that claimed it. A task write
 * (heartbeat, events, artifact, complete, fail, release) is refused with
 * DP_ESTALE, "lease lost", unless task_id is leased under fence to a worker
 * of who's token: a stale fence, another agent's lease and an unknown task
 * all read the same, so the answer tells a caller nothing it does not hold. */

/* Registers a worker bound to who's token and team. */
enum dp_err srv_store_worker_register(struct srv_store *st, const struct srv_principal *who,
                                      const char *name, const char *version, json_t *capabilities,
                                      json_t *device, json_t **out, struct dp_errinfo *ei);
/* A page of workers, newest first, with their agent-supplied fields and
 * "team_id" and "shared" (registered by a shared agent): every worker for an
 * admin; for a team its own team's and the shared ones (docs/security.md,
 * "What each scope sees"). */
enum dp_err srv_store_worker_list(struct srv_store *st, const struct srv_principal *who, int limit,
                                  int64_t cursor, json_t **out, struct dp_errinfo *ei);

/* ---- Devices (store_devices.c) --------------------------------------------- */

/* Registers a worker for device token `who` and binds the device called
 * name to it: a new device row, or the existing one when this token
 * registered it before (a restarted profiler takes its row over, with the
 * new labels and description). A name held by another token's device is
 * DP_EEXIST. out: register's answer plus "device_id". */
enum dp_err srv_store_device_register(struct srv_store *st, const struct srv_principal *who,
                                      const char *name, const char *version, json_t *capabilities,
                                      json_t *description, json_t *labels, json_t **out,
                                      struct dp_errinfo *ei);
/* {"items": [...]}: the live devices who sees (admin: all; a team: its own
 * and the shared ones), newest first, at most 1000, each with its derived
 * state (offline, draining, busy, idle), last_seen_at, queue and tasks_run. */
enum dp_err srv_store_device_list(struct srv_store *st, const struct srv_principal *who,
                                  json_t **out, struct dp_errinfo *ei);
/* Sets or clears the device's draining flag (a draining device claims
 * nothing; its queued tasks move to other candidates), or removes it
 * (remove: its worker claims nothing any more). A team acts on its own
 * devices only, the admin on any; another's is DP_ENOENT. */
enum dp_err srv_store_device_drain(struct srv_store *st, const struct srv_principal *who,
                                   const char *id, int on, struct dp_errinfo *ei);
enum dp_err srv_store_device_remove(struct srv_store *st, const struct srv_principal *who,
                                    const char *id, struct dp_errinfo *ei);

/* Stores table (checked by the caller: common/lat_table.h) as the latency
 * table of who's device (a device token's own, live device) for arch and
 * scheme, replacing an older one, with the device's fingerprint now (what
 * staleness compares). task_id (may be NULL): the latency task that
 * measured it, which must be leased to who's worker on that device, else
 * DP_ENOENT. DP_EPERM for any other scope, DP_ENOENT when the token's
 * device is not registered (or removed). out: {"device_id", "device",
 * "arch", "scheme", "measured_at"}. */
enum dp_err srv_store_latency_put(struct srv_store *st, const struct srv_principal *who,
                                  const char *arch, const char *scheme, const char *task_id,
                                  const json_t *table, json_t **out, struct dp_errinfo *ei);
/* The newest latency table for arch and scheme among the devices selector
 * (an array of selectors, checked) matches that who may use: its team's
 * and the shared ones. A shared agent names the task (task_id, may be NULL)
 * it holds leased: then its job's team's and the shared ones; else the
 * shared ones only. DP_ENOENT when task_id is not leased to who's workers.
 * DP_ENOENT when no such table exists. Fresh tables (docs/operations.md,
 * "Latency tables") win over stale ones, then the newest. out: the table
 * with "device_id", "device", "arch", "scheme", "measured_at", "age_s",
 * "fresh" and "task_id" (the latency task that built it, or null) set. */
enum dp_err srv_store_latency_get(struct srv_store *st, const struct srv_principal *who,
                                  const char *arch, const char *scheme, const json_t *selector,
                                  const char *task_id, json_t **out, struct dp_errinfo *ei);

/* Leases to worker_id the best ready task of the worker's team (of any team
 * for a shared agent) whose type is in capabilities (a JSON array of
 * strings). DP_ENOENT with *no_worker set when worker_id is not a worker
 * that who's token registered (404: register again); DP_ENOENT with
 * *no_worker 0 when no task is ready (the caller may wait). out is the
 * leased task object of docs/api.md. */
enum dp_err srv_store_task_claim(struct srv_store *st, const struct srv_principal *who,
                                 const char *worker_id, json_t *capabilities, json_t **out,
                                 int *no_worker, struct dp_errinfo *ei);

/* Extends the lease; progress (may be NULL) becomes the job's progress.
 * out: {"lease_expires_at","cancel"}. */
enum dp_err srv_store_task_heartbeat(struct srv_store *st, const struct srv_principal *who,
                                     const char *task_id, int64_t fence, json_t *progress,
                                     json_t **out, struct dp_errinfo *ei);

/* Appends worker events ([{"type","data"}], validated by the caller). */
enum dp_err srv_store_task_events(struct srv_store *st, const struct srv_principal *who,
                                  const char *task_id, int64_t fence, json_t *events,
                                  struct dp_errinfo *ei);

/* DP_OK when task_id is leased under fence to a worker of who's token. */
enum dp_err srv_store_task_fence_check(struct srv_store *st, const struct srv_principal *who,
                                       const char *task_id, int64_t fence, struct dp_errinfo *ei);

/* Records an uploaded artifact of this lease (its blob must be in place); a
 * checkpoint becomes the task's resume point. */
enum dp_err srv_store_task_artifact(struct srv_store *st, const struct srv_principal *who,
                                    const char *task_id, int64_t fence, const char *kind,
                                    const char *sha, int64_t size, struct dp_errinfo *ei);

/* outputs: {"model"?,"report"?,"onnx"?}. Each must be an artifact of that
 * kind uploaded under this lease (task and fence), and every output the
 * task's type produces must be there (train: model; compress and retrain:
 * model and report; export: onnx); DP_EINVAL naming the output otherwise. */
enum dp_err srv_store_task_complete(struct srv_store *st, const struct srv_principal *who,
                                    const char *task_id, int64_t fence, json_t *outputs,
                                    struct dp_errinfo *ei);
enum dp_err srv_store_task_fail(struct srv_store *st, const struct srv_principal *who,
                                const char *task_id, int64_t fence, const char *message,
                                int retryable, struct dp_errinfo *ei);
enum dp_err srv_store_task_release(struct srv_store *st, const struct srv_principal *who,
                                   const char *task_id, int64_t fence, struct dp_errinfo *ei);

/* Returns expired leases to the queue (or marks them dead); *n_reaped says
 * how many. *n_ready counts queued tasks whose retry delay ran out since the
 * previous pass: they became claimable without a write, so the caller
 * should wake parked claims when it is not 0 (srv_notify). A pass that
 * changes nothing leaves the generation alone. Called every 200 ms by the
 * housekeeping thread. */
enum dp_err srv_store_reap(struct srv_store *st, int *n_reaped, int *n_ready,
                           struct dp_errinfo *ei);

/* A counter bumped by every commit that waiters care about: one that
 * appended an event (every job and task state change does, so a task may
 * have become ready) or a reaper pass that found tasks whose retry delay
 * ran out; nothing else. A parked request compares it to what it read
 * before looking, so that a change between its look and its parking is not
 * missed (srv_park). Any thread. */
uint64_t srv_store_generation(struct srv_store *st);

/* The numbers /metrics shows: {"jobs": {state: n}, "tasks": {state: n},
 * "workers": n, "wal_bytes": n}; *out is the caller's. */
enum dp_err srv_store_metrics(struct srv_store *st, json_t **out, struct dp_errinfo *ei);

/* ---- Retention and deletion (store_retention.c) ------------------------------ */

/* What a GC pass may remove (server/gc.c; docs/operations.md, "Retention"). */
struct srv_gc_cfg {
    int64_t idempotency_ttl_ms;      /* Idempotency-Key rows older than this */
    int64_t events_retention_ms;     /* events of jobs ended longer ago; 0 = keep */
    int64_t checkpoint_retention_ms; /* checkpoints of tasks ended longer ago; 0 = keep */
    int64_t grace_ms;                /* unreferenced blobs younger than this stay */
};

/* Blobs one pass deletes at most (the next pass takes the rest). */
#define SRV_GC_MAX_BLOBS 256

struct srv_gc_result {
    int64_t idempotency_keys, events, checkpoints; /* rows removed or cleared */
    int n_blobs;                                   /* blob rows deleted: unlink these files */
    char blobs[SRV_GC_MAX_BLOBS][65];
};

/* One GC pass in one transaction. The caller holds the blob publish lock
 * exclusively (srv_blob_gc_lock) and unlinks res->blobs' files after this
 * returns DP_OK, before it lets go of that lock. */
enum dp_err srv_store_gc(struct srv_store *st, const struct srv_gc_cfg *cfg, int64_t now,
                         struct srv_gc_result *res, struct dp_errinfo *ei);

/* *known = 1 when the blobs table has sha (a file on disk without a row is
 * an orphan). */
enum dp_err srv_store_blob_known(struct srv_store *st, const char *sha, int *known,
                                 struct dp_errinfo *ei);

/* Deletes a finished job of the caller's team with its tasks, events,
 * errors and artifact rows (DP_ENOENT: none; DP_EEXIST: not finished). */
enum dp_err srv_store_job_delete(struct srv_store *st, const struct srv_principal *who,
                                 const char *id, struct dp_errinfo *ei);

/* Deletes a model or dataset (kind) of the caller's team (DP_ENOENT: none;
 * DP_EEXIST: a job still names it). */
enum dp_err srv_store_asset_delete(struct srv_store *st, const struct srv_principal *who,
                                   const char *kind, const char *id, struct dp_errinfo *ei);

/* ---- Quotas (store_quota.c) ------------------------------------------------ */

/* The team's queued and running jobs and the bytes of its models, datasets
 * and artifacts (read connection: a soft check before the write). */
enum dp_err srv_store_team_usage(struct srv_store *st, const char *team, int64_t *active_jobs,
                                 int64_t *stored_bytes, struct dp_errinfo *ei);

/* ---- Durability: group commit (store_sync.c) ---------------------------------- */

/* Switches the writer to synchronous=NORMAL and starts the flusher: from
 * here a commit is durable once srv_store_durable_seq reaches the number
 * srv_store_thread_commit gave it; on_durable(ctx, seq, ok) runs on the
 * flusher after each fsync (ok 0: it failed). Call once, after open. */
enum dp_err srv_store_group_commit_start(struct srv_store *st,
                                         void (*on_durable)(void *ctx, uint64_t seq, int ok),
                                         void *ctx, struct dp_errinfo *ei);
/* Makes every commit so far durable, reports it, stops the flusher and goes
 * back to synchronous=FULL. No-op when not started (srv_store_close calls it). */
void srv_store_group_commit_stop(struct srv_store *st);
/* 1 while group commit runs. */
int srv_store_group_commit(struct srv_store *st);
/* The calling thread's newest commit number since the reset (0: none). */
void srv_store_thread_commit_reset(void);
uint64_t srv_store_thread_commit(void);
/* Every commit up to this number is on disk. */
uint64_t srv_store_durable_seq(struct srv_store *st);
/* WAL fsyncs the flusher made (for /metrics: commits per fsync). */
uint64_t srv_store_flushes(struct srv_store *st);

#endif
