/*
 * Every SQL statement of the server, in one table (STYLE rule 34): an id and
 * the text, prepared once when the store opens. Internal to store.c.
 * Parameters are named (:name) and always bound, never formatted in.
 */
#ifndef DP_SERVER_STORE_STMTS_H
#define DP_SERVER_STORE_STMTS_H

/* X(ID, SQL) */
#define SRV_STMTS(X)                                                                               \
    X(BEGIN, "BEGIN IMMEDIATE")                                                                    \
    X(COMMIT, "COMMIT")                                                                            \
    X(ROLLBACK, "ROLLBACK")                                                                        \
    /* ---- tokens, teams ---- */                                                                  \
    X(TOKEN_LOOKUP, "SELECT id, scope, team_id FROM tokens WHERE hash = :hash")                    \
    X(TOKEN_ADMIN_ANY, "SELECT 1 FROM tokens WHERE scope = 'admin' LIMIT 1")                       \
    X(TOKEN_INSERT, "INSERT INTO tokens (id, team_id, scope, name, hash, created_at) "             \
                    "VALUES (:id, :team, :scope, :name, :hash, :now)")                             \
    X(TOKEN_BY_HASH, "SELECT 1 FROM tokens WHERE hash = :hash")                                    \
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
    X(BLOB_AGENT,                                                                                  \
      "SELECT b.size FROM blobs b WHERE b.sha256 = :sha AND ("                                     \
      "EXISTS (SELECT 1 FROM tasks t JOIN jobs j ON j.id = t.job_id JOIN assets a "                \
      "        ON a.id IN (j.model_id, j.dataset_id) WHERE t.state = 'leased' "                    \
      "        AND a.sha256 = b.sha256) "                                                          \
      "OR EXISTS (SELECT 1 FROM artifacts r JOIN tasks t ON t.job_id = r.job_id "                  \
      "        WHERE r.sha256 = b.sha256 AND t.state = 'leased'))")                                \
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
    X(JOB_GET, "SELECT seq, id, name, state, model_id, dataset_id, priority, created_at, "         \
               "started_at, finished_at, progress, outputs, error FROM jobs "                      \
               "WHERE id = :id AND team_id = :team")                                               \
    X(JOB_LIST, "SELECT seq, id, name, state, model_id, dataset_id, priority, created_at, "        \
                "started_at, finished_at, progress, outputs, error FROM jobs "                     \
                "WHERE team_id = :team AND seq < :cursor ORDER BY seq DESC LIMIT :limit")          \
    X(JOB_LIST_STATE, "SELECT seq, id, name, state, model_id, dataset_id, priority, created_at, "  \
                      "started_at, finished_at, progress, outputs, error FROM jobs "               \
                      "WHERE team_id = :team AND state = :state AND seq < :cursor "                \
                      "ORDER BY seq DESC LIMIT :limit")                                            \
    X(JOB_STATE, "SELECT state, cancel_requested, started_at FROM jobs WHERE id = :id")            \
    X(JOB_TEAM_STATE, "SELECT state FROM jobs WHERE id = :id AND team_id = :team")                 \
    X(JOB_SET_STATE, "UPDATE jobs SET state = :state, started_at = :started, "                     \
                     "finished_at = :finished, error = :error WHERE id = :id")                     \
    X(JOB_CANCEL, "UPDATE jobs SET cancel_requested = 1, state = 'cancelled', "                    \
                  "finished_at = :now WHERE id = :id")                                             \
    X(JOB_RETRY, "UPDATE jobs SET cancel_requested = 0, state = 'queued', finished_at = NULL, started_at = NULL, "    \
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
      " AND t.type IN (SELECT value FROM json_each(:caps))"                                        \
      " AND (t.depends_on IS NULL OR EXISTS (SELECT 1 FROM tasks d"                                \
      "      WHERE d.id = t.depends_on AND d.state = 'succeeded'))"                                \
      " ORDER BY t.priority DESC, t.seq LIMIT 1) "                                                 \
      "RETURNING id, job_id, type, attempts, fence, lease_expires_at, checkpoint_sha, depends_on") \
    X(TASK_LEASED, "SELECT job_id, type, attempts, max_attempts, lease_owner FROM tasks "          \
                   "WHERE id = :id AND state = 'leased' AND fence = :fence")                       \
    X(TASK_EXTEND, "UPDATE tasks SET lease_expires_at = :expires WHERE id = :id")                  \
    X(TASK_SET_STATE, "UPDATE tasks SET state = :state, lease_owner = NULL, "                      \
                      "lease_expires_at = NULL, finished_at = :finished, run_after = :run_after, " \
                      "attempts = attempts + :attempt_delta WHERE id = :id")                       \
    X(TASK_SET_OUTPUTS, "UPDATE tasks SET outputs = :outputs WHERE id = :id")                      \
    X(TASK_CHECKPOINT, "UPDATE tasks SET checkpoint_sha = :sha WHERE id = :id")                    \
    X(TASK_OUTPUTS, "SELECT outputs FROM tasks WHERE id = :id")                                    \
    X(TASKS_CANCEL_QUEUED, "UPDATE tasks SET state = 'cancelled', finished_at = :now "             \
                           "WHERE job_id = :job AND state = 'queued'")                             \
    X(TASKS_RETRY, "UPDATE tasks SET state = 'queued', attempts = 0, run_after = 0, "              \
                   "finished_at = NULL WHERE job_id = :job "                                       \
                   "AND state IN ('failed', 'dead', 'cancelled')")                                 \
    X(TASK_STATES_OF_JOB, "SELECT state, count(*) FROM tasks WHERE job_id = :job GROUP BY state")  \
    X(TASK_EXPIRED, "SELECT id, job_id, attempts, max_attempts, lease_owner, type FROM tasks "           \
                    "WHERE state = 'leased' AND lease_expires_at < :now LIMIT 100")                \
    X(TASK_COUNTS, "SELECT state, count(*) FROM tasks GROUP BY state")                             \
    X(TASK_ERROR_INSERT, "INSERT INTO task_errors (task_id, attempt, kind, message, worker_id, "   \
                         "at) VALUES (:task, :attempt, :kind, :message, :worker, :now)")           \
    X(TASK_LAST_ERROR, "SELECT e.message FROM task_errors e JOIN tasks t ON t.id = e.task_id "     \
                       "WHERE t.job_id = :job ORDER BY e.seq DESC LIMIT 1")                        \
    /* ---- events, artifacts ---- */                                                              \
    X(EVENT_INSERT, "INSERT INTO events (job_id, type, data, created_at) "                         \
                    "VALUES (:job, :type, :data, :now)")                                           \
    X(EVENTS_AFTER, "SELECT seq, type, data FROM events WHERE job_id = :job AND seq > :after "     \
                    "ORDER BY seq LIMIT :limit")                                                   \
    X(ARTIFACT_INSERT, "INSERT INTO artifacts (job_id, task_id, team_id, kind, sha256, size, "     \
                       "created_at) SELECT :job, :task, j.team_id, :kind, :sha, :size, :now "      \
                       "FROM jobs j WHERE j.id = :job")                                            \
    X(ARTIFACTS_OF_JOB, "SELECT sha256, kind, task_id, size, created_at FROM artifacts "           \
                        "WHERE job_id = :job ORDER BY seq")                                        \
    /* ---- workers ---- */                                                                        \
    X(WORKER_INSERT, "INSERT INTO workers (id, name, version, capabilities, device, created_at, "   \
                     "last_seen_at) VALUES (:id, :name, :version, :caps, :device, :now, :now)")    \
    X(WORKER_SEEN, "UPDATE workers SET last_seen_at = :now WHERE id = :id")                        \
    X(WORKER_EXISTS, "SELECT 1 FROM workers WHERE id = :id")                                       \
    X(WORKER_LIST, "SELECT seq, id, name, version, capabilities, device, created_at, "             \
                   "last_seen_at FROM workers WHERE seq < :cursor ORDER BY seq DESC LIMIT :limit") \
    X(WORKER_COUNT, "SELECT count(*) FROM workers")

#endif
