-- dnnpress-server schema, version 4: the compile task type.
--
-- A job with a `compile` field gains a compile task after export (docs/api.md),
-- so tasks.type's CHECK constraint takes 'compile'. SQLite cannot change a
-- CHECK constraint in place: the table is rebuilt (SQLite's "making other
-- kinds of table schema changes" procedure). The migration runner turns
-- foreign-key enforcement off around every migration and runs
-- PRAGMA foreign_key_check before COMMIT (server/store.c), so dropping the
-- old table does not cascade into task_errors, artifacts or depends_on, and
-- a rebuild that broke a reference would roll back.
--
-- The new table is the old one column for column (0002 and 0003 added no
-- column to tasks) with the wider CHECK; the rows keep their seq, the
-- AUTOINCREMENT counter keeps its high-water mark, and the indexes are
-- created again under their names.

CREATE TABLE tasks_new (
    seq              INTEGER PRIMARY KEY AUTOINCREMENT,
    id               TEXT NOT NULL UNIQUE,
    job_id           TEXT NOT NULL REFERENCES jobs(id),
    type             TEXT NOT NULL CHECK (type IN ('train', 'compress', 'retrain', 'export',
                                                   'compile')),
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
    CHECK ((state = 'leased') = (lease_expires_at IS NOT NULL))
);

INSERT INTO tasks_new (seq, id, job_id, type, state, depends_on, priority, attempts,
                       max_attempts, fence, lease_owner, lease_expires_at, run_after,
                       checkpoint_sha, outputs, created_at, finished_at)
    SELECT seq, id, job_id, type, state, depends_on, priority, attempts,
           max_attempts, fence, lease_owner, lease_expires_at, run_after,
           checkpoint_sha, outputs, created_at, finished_at
    FROM tasks ORDER BY seq;

-- The insert set tasks_new's counter to the largest seq copied (no counter
-- at all when there was nothing to copy); the old counter may be higher and
-- seq values must never repeat, so the new table starts where the old one was.
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
