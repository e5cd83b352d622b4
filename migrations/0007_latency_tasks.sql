-- dnnpress-server schema, version 7: the service builds latency tables itself.
--
-- A job with spec.auto.objective "latency" whose device has no fresh table
-- for the job's architecture and scheme gains a `latency` task before its
-- compress task (docs/api.md, "Latency tables"): the device compiles the
-- model's layers at a few pruning rates, times them and uploads the table.
-- Two changes:
--   - tasks.type takes 'latency', and a latency task, like a profile task,
--     names the device it targets (device_id) and its candidates. The CHECK
--     changes rebuild the table (0004's procedure: foreign keys off around
--     the migration, foreign_key_check before COMMIT);
--   - latency_tables records what the table was measured on: device_fp, the
--     device description's fingerprint (CPU model, ISA features, C compiler,
--     machine) at upload, so a device whose CPU or compiler changed measures
--     again; task_id, the latency task that built it (NULL: uploaded by hand).

CREATE TABLE tasks_new (
    seq              INTEGER PRIMARY KEY AUTOINCREMENT,
    id               TEXT NOT NULL UNIQUE,
    job_id           TEXT NOT NULL REFERENCES jobs(id),
    type             TEXT NOT NULL CHECK (type IN ('train', 'compress', 'retrain', 'export',
                                                   'compile', 'profile', 'latency')),
    state            TEXT NOT NULL CHECK (state IN ('queued', 'leased', 'succeeded', 'failed',
                                                    'dead', 'cancelled')),
    depends_on       TEXT REFERENCES tasks(id),
    priority         INTEGER NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    max_attempts     INTEGER NOT NULL,
    fence            INTEGER NOT NULL DEFAULT 0,
    lease_owner      TEXT,
    lease_expires_at INTEGER,
    run_after        INTEGER NOT NULL DEFAULT 0,
    checkpoint_sha   TEXT REFERENCES blobs(sha256),
    outputs          TEXT NOT NULL DEFAULT '{}',
    created_at       INTEGER NOT NULL,
    finished_at      INTEGER,
    device_id        TEXT,          -- profile, latency: the device it targets now
    candidates       TEXT,          -- profile, latency: JSON array of device ids it may move to
    CHECK ((state = 'leased') = (lease_expires_at IS NOT NULL)),
    CHECK ((type IN ('profile', 'latency')) = (device_id IS NOT NULL))
);
INSERT INTO tasks_new (seq, id, job_id, type, state, depends_on, priority, attempts,
                       max_attempts, fence, lease_owner, lease_expires_at, run_after,
                       checkpoint_sha, outputs, created_at, finished_at, device_id, candidates)
    SELECT seq, id, job_id, type, state, depends_on, priority, attempts,
           max_attempts, fence, lease_owner, lease_expires_at, run_after,
           checkpoint_sha, outputs, created_at, finished_at, device_id, candidates
    FROM tasks ORDER BY seq;
INSERT INTO sqlite_sequence (name, seq)
    SELECT 'tasks_new', seq FROM sqlite_sequence WHERE name = 'tasks'
    AND NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'tasks_new');
UPDATE sqlite_sequence
    SET seq = max(seq, coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'tasks'), 0))
    WHERE name = 'tasks_new';
DROP TABLE tasks;
ALTER TABLE tasks_new RENAME TO tasks;
CREATE INDEX tasks_job ON tasks (job_id, seq);
CREATE INDEX tasks_ready ON tasks (state, priority, seq);
CREATE INDEX tasks_lease ON tasks (state, lease_expires_at);
CREATE INDEX tasks_device ON tasks (device_id, state);

ALTER TABLE latency_tables ADD COLUMN device_fp TEXT;
ALTER TABLE latency_tables ADD COLUMN task_id TEXT;
