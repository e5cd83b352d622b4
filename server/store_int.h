/*
 * Internal to the store module (store.c, store_jobs.c, store_queue.c): the
 * statement table, the store struct and the helpers the three files share.
 * Nothing outside those files includes this header (STYLE rules 3 and 34).
 */
#ifndef DP_SERVER_STORE_INT_H
#define DP_SERVER_STORE_INT_H

#include <jansson.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdint.h>

#include "server/store.h"

/* ---- The statements ------------------------------------------------------ */

/* Every SQL statement of the server (besides migrations/): an id and the
 * text, prepared once when the store opens. Parameters are named (:name)
 * and always bound, never formatted in. */
/* RFC 3339 UTC from integer milliseconds, as srv_time_fmt writes it. */
#define SRV_SQL_TIME(col) "strftime('%Y-%m-%dT%H:%M:%fZ', " col " / 1000.0, 'unixepoch')"
#define SRV_SQL_TIME_OR_NULL(col)                                                                  \
    "CASE WHEN " col " IS NULL THEN NULL ELSE " SRV_SQL_TIME(col) " END"

/* The job object of docs/api.md, built by SQLite's JSON functions in one
 * statement (tasks and their per-attempt errors included): a GET never
 * round-trips through jansson, which was half the cost of a job list. */
#define SRV_JOB_JSON                                                                               \
    "json_object('id', j.id, 'name', j.name, 'state', j.state, 'model_id', j.model_id, "           \
    "'dataset_id', j.dataset_id, 'priority', j.priority, 'params', json(j.params), "               \
    "'created_at', " SRV_SQL_TIME(                                                                 \
        "j.created_at") ", "                                                                       \
                        "'started_at', " SRV_SQL_TIME_OR_NULL(                                     \
                            "j.started_at") ", "                                                   \
                                            "'finished_at', " SRV_SQL_TIME_OR_NULL(                \
                                                "j.finished_at") ", "                              \
                                                                 "'progress', json(j.progress), "  \
                                                                 "'outputs', json(j.outputs), "    \
                                                                 "'error', j.error, "              \
                                                                 "'tasks', (SELECT "               \
                                                                 "json_group_array(json_object('"  \
                                                                 "id', t.id, 'type', t.type, "     \
                                                                 "  'state', t.state, "            \
                                                                 "'attempts', t.attempts, "        \
                                                                 "'max_attempts', "                \
                                                                 "t.max_attempts, "                \
                                                                 "  'depends_on', t.depends_on, "  \
                                                                 "'device_id', t.device_id, "      \
                                                                 "'errors', (SELECT "              \
                                                                 "json_group_array(json_object("   \
                                                                 "    'attempt', e.attempt, "      \
                                                                 "'message', e.message, 'kind', "  \
                                                                 "e.kind)) FROM (SELECT * "        \
                                                                 "    FROM task_errors WHERE "     \
                                                                 "task_id = t.id ORDER BY seq) "   \
                                                                 "e))) "                           \
                                                                 "  FROM (SELECT * FROM tasks "    \
                                                                 "WHERE job_id = j.id ORDER BY "   \
                                                                 "seq) t))"

/* The columns of a token as the API shows it (never the hash). */
#define SRV_TOKEN_COLS                                                                             \
    "seq, id, name, scope, team_id, origin, created_at, expires_at, revoked_at, last_used_at"

/* Tasks of the team of task t that are leased now: claims prefer the team
 * with the fewest (fair across teams within a priority) and stop at
 * --quota-running-tasks. Uses the tasks_lease index. */
#define SRV_TEAM_LEASED                                                                            \
    "(SELECT count(*) FROM tasks l JOIN jobs lj ON lj.id = l.job_id"                               \
    " WHERE l.state = 'leased' AND lj.team_id = (SELECT tj.team_id FROM jobs tj"                   \
    " WHERE tj.id = t.job_id))"

/* What a latency table depends on in a device's description (the device
 * row d): CPU model, ISA features, C compiler, machine. A table measured
 * under another fingerprint is stale (docs/operations.md, "Latency
 * tables"). json_extract of several paths is one JSON array text. */
#define SRV_DEVICE_FP(d) "json_extract(" d ".description, '$.cpu', '$.isa', '$.cc', '$.arch')"

/* Whether latency table l of device d is fresh: measured after
 * :fresh_after under the device's current fingerprint. */
#define SRV_LATENCY_FRESH                                                                          \
    "(l.measured_at >= :fresh_after AND l.device_fp IS NOT NULL AND l.device_fp = " SRV_DEVICE_FP( \
        "d") ")"

/* X(ID, SQL) */
#define SRV_STMTS(X)                                                                               \
    X(BEGIN, "BEGIN IMMEDIATE")                                                                    \
    X(COMMIT, "COMMIT")                                                                            \
    X(ROLLBACK, "ROLLBACK")                                                                        \
    /* ---- tokens, teams ---- */                                                                  \
    X(TOKEN_LOOKUP, "SELECT id, scope, team_id, revoked_at, expires_at, last_used_at "             \
                    "FROM tokens WHERE hash = :hash")                                              \
    /* The live admin tokens, other than :except when it is bound. */                              \
    X(TOKEN_ADMIN_LIVE, "SELECT count(*) FROM tokens WHERE scope = 'admin' "                       \
                        "AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > :now) "    \
                        "AND (:except IS NULL OR id != :except)")                                  \
    X(TOKEN_INSERT, "INSERT INTO tokens (id, team_id, scope, name, hash, created_at, expires_at, " \
                    "origin) VALUES (:id, :team, :scope, :name, :hash, :now, :expires, :origin)")  \
    X(TOKEN_BY_HASH, "SELECT id, scope, revoked_at FROM tokens WHERE hash = :hash")                \
    /* Revokes every live token of an origin the server replaces at start. */                      \
    X(TOKEN_REVOKE_ORIGIN, "UPDATE tokens SET revoked_at = :now "                                  \
                           "WHERE origin = :origin AND revoked_at IS NULL")                        \
    X(TOKEN_REVOKE, "UPDATE tokens SET revoked_at = :now WHERE id = :id AND revoked_at IS NULL")   \
    /* At most one write a minute per token: last use is for people, not for audit. */             \
    X(TOKEN_USED, "UPDATE tokens SET last_used_at = :now WHERE id = :id "                          \
                  "AND (last_used_at IS NULL OR last_used_at <= :stale)")                          \
    /* :team NULL (admin) matches every token; a team only its own. */                             \
    X(TOKEN_GET, "SELECT " SRV_TOKEN_COLS " FROM tokens "                                          \
                 "WHERE id = :id AND (:team IS NULL OR team_id = :team)")                          \
    X(TOKEN_LIST,                                                                                  \
      "SELECT " SRV_TOKEN_COLS " FROM tokens WHERE (:team IS NULL OR team_id = :team) "            \
      "AND seq < :cursor ORDER BY seq DESC LIMIT :limit")                                          \
    X(TEAM_INSERT, "INSERT INTO teams (id, name, created_at) VALUES (:id, :name, :now)")           \
    X(TEAM_BY_NAME, "SELECT 1 FROM teams WHERE name = :name")                                      \
    X(TEAM_EXISTS, "SELECT 1 FROM teams WHERE id = :id")                                           \
    X(TEAM_LIST, "SELECT seq, id, name, created_at FROM teams WHERE seq < :cursor "                \
                 "ORDER BY seq DESC LIMIT :limit")                                                 \
    /* ---- blobs, assets, idempotency ---- */                                                     \
    X(BLOB_INSERT, "INSERT OR IGNORE INTO blobs (sha256, size, created_at) "                       \
                   "VALUES (:sha, :size, :now)")                                                   \
    X(BLOB_SIZE, "SELECT size FROM blobs WHERE sha256 = :sha")                                     \
    X(BLOB_TEAM,                                                                                   \
      "SELECT b.size FROM blobs b WHERE b.sha256 = :sha AND (:team IS NULL "                       \
      "OR EXISTS (SELECT 1 FROM assets a WHERE a.sha256 = b.sha256 AND a.team_id = :team) "        \
      "OR EXISTS (SELECT 1 FROM artifacts r WHERE r.sha256 = b.sha256 AND r.team_id = :team))")    \
    /* An agent reads a blob only while one of its token's workers holds a                         \
     * lease on a task of a job that uses it (model, dataset or artifact). */                      \
    X(BLOB_AGENT,                                                                                  \
      "SELECT b.size FROM blobs b WHERE b.sha256 = :sha AND EXISTS ("                              \
      " SELECT 1 FROM tasks t JOIN workers w ON w.id = t.lease_owner"                              \
      " JOIN jobs j ON j.id = t.job_id"                                                            \
      " WHERE t.state = 'leased' AND w.token_id = :token AND ("                                    \
      "  EXISTS (SELECT 1 FROM assets a WHERE a.id IN (j.model_id, j.dataset_id)"                  \
      "          AND a.sha256 = b.sha256)"                                                         \
      "  OR EXISTS (SELECT 1 FROM artifacts r WHERE r.job_id = j.id AND r.sha256 = b.sha256)))")   \
    X(ASSET_INSERT, "INSERT INTO assets (id, team_id, kind, name, format, builtin, sha256, size, " \
                    "created_at) VALUES (:id, :team, :kind, :name, :format, :builtin, :sha, "      \
                    ":size, :now)")                                                                \
    X(ASSET_GET, "SELECT seq, id, name, format, builtin, sha256, size, created_at, kind "          \
                 "FROM assets WHERE id = :id AND team_id = :team AND kind = :kind")                \
    X(ASSET_BY_ID, "SELECT seq, id, name, format, builtin, sha256, size, created_at, kind "        \
                   "FROM assets WHERE id = :id")                                                   \
    X(ASSET_LIST, "SELECT seq, id, name, format, builtin, sha256, size, created_at, kind "         \
                  "FROM assets WHERE team_id = :team AND kind = :kind AND seq < :cursor "          \
                  "ORDER BY seq DESC LIMIT :limit")                                                \
    X(IDEM_GET, "SELECT req_hash, object_id FROM idempotency "                                     \
                "WHERE team_id = :team AND route = :route AND key = :key")                         \
    X(IDEM_INSERT, "INSERT INTO idempotency (team_id, route, key, req_hash, object_id, "           \
                   "created_at) VALUES (:team, :route, :key, :hash, :obj, :now)")                  \
    /* ---- jobs ---- */                                                                           \
    X(JOB_INSERT, "INSERT INTO jobs (id, team_id, name, state, model_id, dataset_id, priority, "   \
                  "max_attempts, params, created_at) VALUES (:id, :team, :name, 'queued', "        \
                  ":model, :dataset, :prio, :maxatt, :params, :now)")                              \
    X(JOB_GET,                                                                                     \
      "SELECT j.seq, " SRV_JOB_JSON " FROM jobs j WHERE j.id = :id AND j.team_id = :team")         \
    X(JOB_LIST, "SELECT j.seq, " SRV_JOB_JSON " FROM jobs j WHERE j.team_id = :team "              \
                "AND j.seq < :cursor ORDER BY j.seq DESC LIMIT :limit")                            \
    X(JOB_LIST_STATE, "SELECT j.seq, " SRV_JOB_JSON " FROM jobs j WHERE j.team_id = :team "        \
                      "AND j.state = :state AND j.seq < :cursor ORDER BY j.seq DESC LIMIT :limit") \
    X(JOB_STATE, "SELECT state, cancel_requested, started_at FROM jobs WHERE id = :id")            \
    X(JOB_TEAM_STATE, "SELECT state FROM jobs WHERE id = :id AND team_id = :team")                 \
    X(JOB_SET_STATE, "UPDATE jobs SET state = :state, started_at = :started, "                     \
                     "finished_at = :finished, error = :error WHERE id = :id")                     \
    X(JOB_CANCEL, "UPDATE jobs SET cancel_requested = 1, state = 'cancelled', "                    \
                  "finished_at = :now WHERE id = :id")                                             \
    X(JOB_RETRY, "UPDATE jobs SET cancel_requested = 0, state = 'queued', finished_at = NULL, "    \
                 "started_at = NULL, "                                                             \
                 "error = NULL WHERE id = :id")                                                    \
    X(JOB_PROGRESS, "UPDATE jobs SET progress = :progress WHERE id = :id")                         \
    X(JOB_OUTPUTS, "UPDATE jobs SET outputs = json_patch(outputs, :outputs) WHERE id = :id")       \
    X(JOB_PARAMS, "SELECT params, model_id, dataset_id FROM jobs WHERE id = :id")                  \
    X(JOB_REPORT, "SELECT json_extract(outputs, '$.report') FROM jobs "                            \
                  "WHERE id = :id AND team_id = :team")                                            \
    X(JOB_COUNTS, "SELECT state, count(*) FROM jobs GROUP BY state")                               \
    /* ---- tasks ---- */                                                                          \
    X(TASK_INSERT, "INSERT INTO tasks (id, job_id, type, state, depends_on, priority, "            \
                   "max_attempts, created_at) VALUES (:id, :job, :type, 'queued', :dep, :prio, "   \
                   ":maxatt, :now)")                                                               \
    X(TASKS_OF_JOB, "SELECT id, type, state, attempts, max_attempts, depends_on FROM tasks "       \
                    "WHERE job_id = :job ORDER BY seq")                                            \
    X(ERRORS_OF_JOB, "SELECT e.task_id, e.attempt, e.message, e.kind FROM task_errors e "          \
                     "JOIN tasks t ON t.id = e.task_id WHERE t.job_id = :job ORDER BY e.seq")      \
    X(TASK_CLAIM,                                                                                  \
      "UPDATE tasks SET state = 'leased', attempts = attempts + 1, fence = fence + 1, "            \
      "lease_owner = :worker, lease_expires_at = :expires WHERE seq = ("                           \
      " SELECT t.seq FROM tasks t WHERE t.state = 'queued' AND t.run_after <= :now"                \
      " AND (:team IS NULL OR EXISTS (SELECT 1 FROM jobs j"                                        \
      "      WHERE j.id = t.job_id AND j.team_id = :team))"                                        \
      " AND t.type IN (SELECT value FROM json_each(:caps))"                                        \
      " AND t.type NOT IN ('profile', 'latency')"                                                  \
      " AND (t.depends_on IS NULL OR EXISTS (SELECT 1 FROM tasks d"                                \
      "      WHERE d.id = t.depends_on AND d.state = 'succeeded'))"                                \
      " AND (:max_running <= 0 OR " SRV_TEAM_LEASED " < :max_running)"                             \
      " ORDER BY t.priority DESC, " SRV_TEAM_LEASED ", t.seq LIMIT 1) "                            \
      "RETURNING id, job_id, type, attempts, fence, lease_expires_at, checkpoint_sha, depends_on") \
    /* The lease, only when it is held under this fence by a worker that the                       \
     * calling token registered: a fence alone proves nothing. */                                  \
    X(TASK_LEASED, "SELECT t.job_id, t.type, t.attempts, t.max_attempts, t.lease_owner "           \
                   "FROM tasks t JOIN workers w ON w.id = t.lease_owner "                          \
                   "WHERE t.id = :id AND t.state = 'leased' AND t.fence = :fence "                 \
                   "AND w.token_id = :token")                                                      \
    X(TASK_EXTEND, "UPDATE tasks SET lease_expires_at = :expires WHERE id = :id")                  \
    X(TASK_SET_STATE, "UPDATE tasks SET state = :state, lease_owner = NULL, "                      \
                      "lease_expires_at = NULL, finished_at = :finished, run_after = :run_after, " \
                      "attempts = attempts + :attempt_delta WHERE id = :id")                       \
    X(TASK_SET_OUTPUTS, "UPDATE tasks SET outputs = :outputs WHERE id = :id")                      \
    X(TASK_CHECKPOINT, "UPDATE tasks SET checkpoint_sha = :sha WHERE id = :id")                    \
    X(TASK_OUTPUTS, "SELECT outputs FROM tasks WHERE id = :id")                                    \
    X(TASK_DEPENDS_ON, "SELECT depends_on FROM tasks WHERE id = :id")                              \
    X(TASKS_CANCEL_QUEUED, "UPDATE tasks SET state = 'cancelled', finished_at = :now "             \
                           "WHERE job_id = :job AND state = 'queued'")                             \
    X(TASKS_RETRY, "UPDATE tasks SET state = 'queued', attempts = 0, run_after = 0, "              \
                   "finished_at = NULL WHERE job_id = :job "                                       \
                   "AND state IN ('failed', 'dead', 'cancelled')")                                 \
    X(TASK_STATES_OF_JOB, "SELECT state, count(*) FROM tasks WHERE job_id = :job GROUP BY state")  \
    X(TASK_EXPIRED, "SELECT id, job_id, attempts, max_attempts, lease_owner, type FROM tasks "     \
                    "WHERE state = 'leased' AND lease_expires_at < :now LIMIT 100")                \
    X(TASK_COUNTS, "SELECT state, count(*) FROM tasks GROUP BY state")                             \
    X(TASKS_BECAME_READY, "SELECT count(*) FROM tasks WHERE state = 'queued' "                     \
                          "AND run_after > :since AND run_after <= :now")                          \
    X(TASK_ERROR_INSERT, "INSERT INTO task_errors (task_id, attempt, kind, message, worker_id, "   \
                         "at) VALUES (:task, :attempt, :kind, :message, :worker, :now)")           \
    X(TASK_LAST_ERROR, "SELECT e.message FROM task_errors e JOIN tasks t ON t.id = e.task_id "     \
                       "WHERE t.job_id = :job ORDER BY e.seq DESC LIMIT 1")                        \
    /* ---- events, artifacts ---- */                                                              \
    /* job_seq numbers the job's events 1, 2, 3...: the SSE id, which must not                     \
     * reveal how many events other jobs have (writes are serialised, so max + 1 is safe). */      \
    X(EVENT_INSERT, "INSERT INTO events (job_id, job_seq, type, data, created_at) VALUES (:job, "  \
                    "(SELECT coalesce(max(job_seq), 0) + 1 FROM events WHERE job_id = :job), "     \
                    ":type, :data, :now)")                                                         \
    X(EVENTS_AFTER, "SELECT job_seq, type, data FROM events WHERE job_id = :job "                  \
                    "AND job_seq > :after ORDER BY job_seq LIMIT :limit")                          \
    X(ARTIFACT_INSERT, "INSERT INTO artifacts (job_id, task_id, team_id, kind, sha256, size, "     \
                       "created_at, fence) SELECT :job, :task, j.team_id, :kind, :sha, :size, "    \
                       ":now, :fence FROM jobs j WHERE j.id = :job")                               \
    X(ARTIFACT_OF_LEASE, "SELECT 1 FROM artifacts WHERE task_id = :task AND fence = :fence "       \
                         "AND kind = :kind AND sha256 = :sha LIMIT 1")                             \
    X(ARTIFACTS_OF_JOB, "SELECT sha256, kind, task_id, size, created_at FROM artifacts "           \
                        "WHERE job_id = :job ORDER BY seq")                                        \
    /* ---- workers ---- */                                                                        \
    X(WORKER_INSERT, "INSERT INTO workers (id, name, version, capabilities, device, created_at, "  \
                     "last_seen_at, token_id, team_id) VALUES (:id, :name, :version, :caps, "      \
                     ":device, :now, :now, :token, :team)")                                        \
    /* At most one write a second per worker: every empty long-poll claim and                      \
     * every heartbeat records the sighting, and an unchanged row commits nothing. */              \
    X(WORKER_SEEN, "UPDATE workers SET last_seen_at = :now WHERE id = :id "                        \
                   "AND last_seen_at <= :now - 1000")                                              \
    X(WORKER_OF_TOKEN, "SELECT team_id FROM workers WHERE id = :id AND token_id = :token")         \
    X(WORKER_LIST, "SELECT seq, id, name, version, capabilities, device, created_at, "             \
                   "last_seen_at, team_id, token_id IS NOT NULL AND team_id IS NULL FROM workers " \
                   "WHERE seq < :cursor ORDER BY seq DESC LIMIT :limit")                           \
    /* A team sees its own team's workers and the shared ones (registered by a                     \
     * shared agent: a token but no team). */                                                      \
    X(WORKER_LIST_TEAM, "SELECT seq, id, name, version, capabilities, device, created_at, "        \
                        "last_seen_at, team_id, token_id IS NOT NULL AND team_id IS NULL "         \
                        "FROM workers WHERE seq < :cursor AND (team_id = :team OR "                \
                        "(team_id IS NULL AND token_id IS NOT NULL)) "                             \
                        "ORDER BY seq DESC LIMIT :limit")                                          \
    X(WORKER_COUNT, "SELECT count(*) FROM workers")                                                \
    /* ---- devices (store_devices.c) ---- */                                                      \
    X(DEVICE_BY_NAME,                                                                              \
      "SELECT id, token_id FROM devices WHERE name = :name AND removed_at IS NULL")                \
    X(DEVICE_INSERT, "INSERT INTO devices (id, name, team_id, token_id, worker_id, labels, "       \
                     "description, created_at) VALUES (:id, :name, :team, :token, :worker, "       \
                     ":labels, :desc, :now)")                                                      \
    X(DEVICE_TAKEOVER, "UPDATE devices SET worker_id = :worker, labels = :labels, "                \
                       "description = :desc WHERE id = :id")                                       \
    X(DEVICE_OF_WORKER, "SELECT d.id, d.draining, EXISTS (SELECT 1 FROM tasks t WHERE "            \
                        "t.device_id = d.id AND t.state = 'leased') FROM devices d "               \
                        "WHERE d.worker_id = :worker AND d.removed_at IS NULL")                    \
    /* Every live device a team's token sees: its own and the shared ones;                         \
     * all of them for the admin (:team NULL). State is derived (docs/api.md). */                  \
    X(DEVICE_LIST,                                                                                 \
      "SELECT d.seq, d.id, d.name, d.team_id, d.labels, d.description, d.draining, d.tasks_run, "  \
      "d.created_at, w.last_seen_at, w.last_seen_at < :offline_before, "                           \
      "(SELECT count(*) FROM tasks t WHERE t.device_id = d.id AND t.state = 'leased'), "           \
      "(SELECT count(*) FROM tasks t WHERE t.device_id = d.id AND t.state = 'queued') "            \
      "FROM devices d JOIN workers w ON w.id = d.worker_id WHERE d.removed_at IS NULL "            \
      "AND (:team IS NULL OR d.team_id = :team OR d.team_id IS NULL) "                             \
      "ORDER BY d.seq DESC LIMIT 1000")                                                            \
    X(DEVICE_TEAM, "SELECT team_id FROM devices WHERE id = :id AND removed_at IS NULL")            \
    X(DEVICE_DRAIN, "UPDATE devices SET draining = :on WHERE id = :id")                            \
    X(DEVICE_REMOVE, "UPDATE devices SET removed_at = :now WHERE id = :id")                        \
    X(DEVICE_RAN, "UPDATE devices SET tasks_run = tasks_run + 1 "                                  \
                  "WHERE id = (SELECT device_id FROM tasks WHERE id = :task)")                     \
    /* Latency tables: a device's own upload replaces its previous one for the                     \
     * same arch and scheme; a read takes the newest among the devices a                           \
     * selector matched (:ids, a JSON array of device ids). */                                     \
    X(DEVICE_OF_TOKEN, "SELECT id, name FROM devices WHERE token_id = :token "                     \
                       "AND removed_at IS NULL ORDER BY seq DESC LIMIT 1")                         \
    /* The team of the job of a task one of :token's workers holds leased. */                      \
    X(TASK_LEASED_TEAM, "SELECT j.team_id FROM tasks t JOIN workers w ON w.id = t.lease_owner "    \
                        "JOIN jobs j ON j.id = t.job_id WHERE t.id = :task "                       \
                        "AND t.state = 'leased' AND w.token_id = :token")                          \
    X(LATENCY_PUT,                                                                                 \
      "INSERT OR REPLACE INTO latency_tables (device_id, arch, scheme, tbl, "                      \
      "measured_at, device_fp, task_id) SELECT :dev, :arch, :scheme, :tbl, :now, " SRV_DEVICE_FP(  \
          "d") ", :task FROM devices d WHERE d.id = :dev")                                         \
    /* The newest table among :ids, fresh ones first: fresh when measured                          \
     * after :fresh_after on the device as it describes itself now. */                             \
    X(LATENCY_GET,                                                                                 \
      "SELECT l.tbl, l.measured_at, d.id, d.name, l.task_id, " SRV_LATENCY_FRESH                   \
      " FROM latency_tables l "                                                                    \
      "JOIN devices d ON d.id = l.device_id WHERE l.arch = :arch "                                 \
      "AND l.scheme = :scheme AND l.device_id IN (SELECT value FROM json_each(:ids)) "             \
      "ORDER BY 6 DESC, l.measured_at DESC LIMIT 1")                                               \
    /* A latency task's table: uploaded by its device since the task was                           \
     * created (complete refuses a latency task without it). */                                    \
    X(LATENCY_OF_TASK, "SELECT 1 FROM latency_tables l JOIN tasks t ON t.id = :task "              \
                       "WHERE l.device_id = t.device_id AND l.arch = :arch "                       \
                       "AND l.scheme = :scheme AND l.measured_at >= t.created_at")                 \
    X(DEVICE_NAME, "SELECT name FROM devices WHERE id = :id")                                      \
    /* A task of the latency type leased to :token's workers on its device. */                     \
    X(LATENCY_TASK_OF_TOKEN,                                                                       \
      "SELECT t.job_id FROM tasks t JOIN workers w ON w.id = t.lease_owner "                       \
      "WHERE t.id = :task AND t.type = 'latency' AND t.state = 'leased' "                          \
      "AND w.token_id = :token AND t.device_id = :dev")                                            \
    /* The devices a job of :team may target: its own and the shared ones. */                      \
    X(DEVICES_SERVING, "SELECT id, name, labels, description FROM devices "                        \
                       "WHERE removed_at IS NULL AND draining = 0 "                                \
                       "AND (team_id IS NULL OR team_id = :team) ORDER BY seq LIMIT 1000")         \
    X(TASK_INSERT_PROFILE,                                                                         \
      "INSERT INTO tasks (id, job_id, type, state, depends_on, priority, max_attempts, "           \
      "created_at, device_id, candidates) VALUES (:id, :job, :type, 'queued', :dep, :prio, "       \
      ":maxatt, :now, :dev, :cands)")                                                              \
    /* A device claims a ready profile task that targets it, or one whose                          \
     * target is offline, draining or removed when it is among the task's                          \
     * candidates (then the task moves to it): its own first. */                                   \
    X(TASK_CLAIM_DEVICE,                                                                           \
      "UPDATE tasks SET state = 'leased', attempts = attempts + 1, fence = fence + 1, "            \
      "lease_owner = :worker, lease_expires_at = :expires, device_id = :dev WHERE seq = ("         \
      " SELECT t.seq FROM tasks t WHERE t.state = 'queued'"                                        \
      " AND t.type IN ('profile', 'latency') AND t.type IN (SELECT value FROM json_each(:caps))"   \
      " AND t.run_after <= :now"                                                                   \
      " AND (:team IS NULL OR EXISTS (SELECT 1 FROM jobs j"                                        \
      "      WHERE j.id = t.job_id AND j.team_id = :team))"                                        \
      " AND (t.depends_on IS NULL OR EXISTS (SELECT 1 FROM tasks d"                                \
      "      WHERE d.id = t.depends_on AND d.state = 'succeeded'))"                                \
      " AND (t.device_id = :dev OR (EXISTS (SELECT 1 FROM json_each(t.candidates) c"               \
      "      WHERE c.value = :dev) AND NOT EXISTS (SELECT 1 FROM devices o"                        \
      "      JOIN workers w ON w.id = o.worker_id WHERE o.id = t.device_id"                        \
      "      AND o.removed_at IS NULL AND o.draining = 0"                                          \
      "      AND w.last_seen_at >= :offline_before)))"                                             \
      " ORDER BY t.device_id = :dev DESC, t.priority DESC, t.seq LIMIT 1) "                        \
      "RETURNING id, job_id, type, attempts, fence, lease_expires_at, checkpoint_sha, depends_on")

enum srv_stmt_id {
#define SRV__STMT_ENUM(id, sql) STMT_##id,
    SRV_STMTS(SRV__STMT_ENUM)
#undef SRV__STMT_ENUM
        STMT__COUNT
};

struct srv_store {
    /* The writer: every write and the reads inside write transactions. */
    sqlite3 *db;
    sqlite3_stmt *stmt[STMT__COUNT];
    pthread_mutex_t mu;
    /* A read-only connection for the hot read paths (token lookup, job
     * GET and list, events, blob access): in WAL mode it reads the last
     * committed state while the writer is busy, so a GET never waits
     * behind a submission's fsync. */
    sqlite3 *rdb;
    sqlite3_stmt *rstmt[STMT__COUNT];
    pthread_mutex_t rmu;
    struct srv_queue_cfg cfg;
    char wal_path[1100];  /* "<database>-wal", for srv_store_wal_len */
    const char *txn_file; /* who opened the current transaction, for diagnostics */
    int txn_line;
    /* Set inside a write transaction by a change that parked requests wait
     * for (an event appended: every job and task state change appends one;
     * a retry delay run out); its commit then bumps generation. Other
     * writes (heartbeats, tokens, registrations, an empty reaper pass)
     * leave generation alone, so they wake nobody. Under mu. */
    int txn_wakes;
    /* The reaper has announced tasks whose retry delay ended up to here (ms). */
    int64_t reap_ready_ms;
    _Atomic uint64_t generation;
    /* Group commit (store_sync.c): with group set, COMMIT does not fsync;
     * commit_seq numbers commits, the flusher fsyncs the WAL and advances
     * durable_seq, then calls on_durable. */
    int group;
    _Atomic uint64_t commit_seq, durable_seq, n_flushes;
    pthread_mutex_t sync_mu;
    pthread_cond_t sync_cv;
    pthread_t flusher;
    int flusher_started, flusher_stop;
    int wal_fd;
    void (*on_durable)(void *ctx, uint64_t seq, int ok);
    void *on_durable_ctx;
};

/* ---- Helpers (store.c) --------------------------------------------------------- */

/* Every use of a connection goes through these. The unlock resets every
 * statement of the connection still mid-row, on every path out of the
 * caller, so no statement can keep a read snapshot (which would pin the
 * WAL: no checkpoint can reset it past an open reader) once the call is
 * over; the lock asserts that this held for the previous holder. */
void srv_store__lock(struct srv_store *st); /* the writer, st->mu */
void srv_store__unlock(struct srv_store *st);
void srv_store__rlock(struct srv_store *st); /* the reader, st->rmu */
void srv_store__runlock(struct srv_store *st);

#define srv_store__begin(st, ei) srv_store__begin_at((st), (ei), __FILE__, __LINE__)
sqlite3_stmt *srv_store__stmt(struct srv_store *st, enum srv_stmt_id id);
/* The statement on the read-only connection (hold st->rmu). */
sqlite3_stmt *srv_store__rstmt(struct srv_store *st, enum srv_stmt_id id);
void srv_store__bind_text(sqlite3_stmt *s, const char *name, const char *v);
void srv_store__bind_int(sqlite3_stmt *s, const char *name, int64_t v);
enum dp_err srv_store__bind_json(sqlite3_stmt *s, const char *name, const json_t *j);
enum dp_err srv_store__exec(struct srv_store *st, sqlite3_stmt *s, struct dp_errinfo *ei);
/* Steps s once. *has_row is 1 when a row is ready to be read and 0 when the
 * statement is done; a failed step returns DP_EIO or DP_ENOMEM (message in
 * ei) with *has_row 0. Error and row are separate so that a failed read can
 * never pass for "no row" (which would, say, commit a claim without its
 * inputs). */
enum dp_err srv_store__step(struct srv_store *st, sqlite3_stmt *s, int *has_row,
                            struct dp_errinfo *ei);
const char *srv_store__col_text(sqlite3_stmt *s, int i);
int64_t srv_store__col_int(sqlite3_stmt *s, int i);
int srv_store__col_null(sqlite3_stmt *s, int i);
json_t *srv_store__col_json(sqlite3_stmt *s, int i);
json_t *srv_store__json_time(int64_t ms);
json_t *srv_store__col_time(sqlite3_stmt *s, int i);
json_t *srv_store__col_str(sqlite3_stmt *s, int i);
enum dp_err srv_store__finish(struct srv_store *st, enum dp_err err, struct dp_errinfo *ei);
/* After a COMMIT (store_sync.c): numbers it for the group commit. */
void srv_store__committed(struct srv_store *st);
int64_t srv_store__cursor_bound(int64_t cursor);
enum dp_err srv_store__event_append(struct srv_store *st, const char *job_id, const char *type,
                                    json_t *data_take, struct dp_errinfo *ei);
enum dp_err srv_store__event_task_state(struct srv_store *st, const char *job_id,
                                        const char *task_id, const char *type, const char *state,
                                        struct dp_errinfo *ei);
enum dp_err srv_store__idem_lookup(struct srv_store *st, const struct srv_principal *who,
                                   const char *route, const char *key, const char *req_hash,
                                   char found_id[SRV_ID_MAX], struct dp_errinfo *ei);
enum dp_err srv_store__idem_record(struct srv_store *st, const struct srv_principal *who,
                                   const char *route, const char *key, const char *req_hash,
                                   const char *obj_id, struct dp_errinfo *ei);
enum dp_err srv_store__asset_get_locked(struct srv_store *st, const char *team, const char *kind,
                                        const char *id, json_t **out, struct dp_errinfo *ei);
/* Inserts worker id for who (inside a transaction). */
enum dp_err srv_store__worker_insert(struct srv_store *st, const struct srv_principal *who,
                                     const char *id, const char *name, const char *version,
                                     json_t *capabilities, json_t *device, struct dp_errinfo *ei);
/* Register's answer for worker_id: {"worker_id","heartbeat_s","lease_s"}; NULL: out of memory. */
json_t *srv_store__register_answer(struct srv_store *st, const char *worker_id);
/* Appends the ids of the devices serving team that match any of selectors
 * (docs/api.md "Devices") to ids_out (a JSON array). Inside a transaction. */
enum dp_err srv_store__devices_match(struct srv_store *st, const char *team,
                                     const json_t *selectors, json_t *ids_out,
                                     struct dp_errinfo *ei);
/* The measured_at a latency table must be newer than to be fresh now
 * (0 when tables do not age: cfg.latency_max_age_ms 0). */
int64_t srv_store__latency_fresh_after(const struct srv_store *st, int64_t now);
enum dp_err srv_store__job_refresh(struct srv_store *st, const char *job_id, struct dp_errinfo *ei);
enum dp_err srv_store__exec_sql(struct srv_store *st, const char *sql, struct dp_errinfo *ei);
enum dp_err srv_store__begin_at(struct srv_store *st, struct dp_errinfo *ei, const char *file,
                                int line);

#endif
