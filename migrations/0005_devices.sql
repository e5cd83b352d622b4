-- dnnpress-server schema, version 5: the device farm.
--
-- A device is a machine that registers as a profiler (`dnnpress-worker
-- serve --profile`) with a token of the new `device` scope and runs
-- `profile` tasks that target it (docs/api.md "Devices"). Three changes:
--   - tokens.scope takes 'device'; like an agent token a device token may
--     have no team (a shared device, issued by the admin, serving every team);
--   - tasks.type takes 'profile', and a task names the device it targets
--     (device_id) and the devices it may move to when that one goes offline
--     (candidates, a JSON array of device ids matched at submission);
--   - the devices table.
-- Both CHECK changes rebuild their table (as 0004 did): see 0004's header for
-- why this is safe (foreign keys off, foreign_key_check before COMMIT).

CREATE TABLE tokens_new (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    id           TEXT NOT NULL UNIQUE,
    team_id      TEXT REFERENCES teams(id),
    scope        TEXT NOT NULL CHECK (scope IN ('admin', 'team', 'agent', 'device')),
    name         TEXT NOT NULL,
    hash         TEXT NOT NULL UNIQUE,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER,
    revoked_at   INTEGER,
    last_used_at INTEGER,
    origin       TEXT NOT NULL DEFAULT 'api'
                 CHECK (origin IN ('api', 'env', 'generated', 'local')),
    CHECK ((scope = 'team') = (team_id IS NOT NULL) OR scope IN ('agent', 'device'))
);
INSERT INTO tokens_new (seq, id, team_id, scope, name, hash, created_at, expires_at,
                        revoked_at, last_used_at, origin)
    SELECT seq, id, team_id, scope, name, hash, created_at, expires_at,
           revoked_at, last_used_at, origin
    FROM tokens ORDER BY seq;
INSERT INTO sqlite_sequence (name, seq)
    SELECT 'tokens_new', seq FROM sqlite_sequence WHERE name = 'tokens'
    AND NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'tokens_new');
UPDATE sqlite_sequence
    SET seq = max(seq, coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'tokens'), 0))
    WHERE name = 'tokens_new';
DROP TABLE tokens;
ALTER TABLE tokens_new RENAME TO tokens;
CREATE INDEX tokens_team ON tokens (team_id, seq);

CREATE TABLE tasks_new (
    seq              INTEGER PRIMARY KEY AUTOINCREMENT,
    id               TEXT NOT NULL UNIQUE,
    job_id           TEXT NOT NULL REFERENCES jobs(id),
    type             TEXT NOT NULL CHECK (type IN ('train', 'compress', 'retrain', 'export',
                                                   'compile', 'profile')),
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
    device_id        TEXT,          -- profile: the device it targets now
    candidates       TEXT,          -- profile: JSON array of the device ids it may move to
    CHECK ((state = 'leased') = (lease_expires_at IS NOT NULL)),
    CHECK ((type = 'profile') = (device_id IS NOT NULL))
);
INSERT INTO tasks_new (seq, id, job_id, type, state, depends_on, priority, attempts,
                       max_attempts, fence, lease_owner, lease_expires_at, run_after,
                       checkpoint_sha, outputs, created_at, finished_at)
    SELECT seq, id, job_id, type, state, depends_on, priority, attempts,
           max_attempts, fence, lease_owner, lease_expires_at, run_after,
           checkpoint_sha, outputs, created_at, finished_at
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

-- One row per device name. team_id NULL: a shared device (admin-issued
-- token). token_id: the token that registered it; only that token's
-- workers act as this device. worker_id: its current registration (a
-- restarted profiler registers again and takes the row over). Its state is
-- derived when listed: offline when its worker's last_seen_at (claims and
-- heartbeats refresh it) is older than the server's lease, busy while it holds a leased profile task, else idle (or
-- draining). A removed device keeps its row (tasks name it) with removed_at.
CREATE TABLE devices (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    id           TEXT NOT NULL UNIQUE,
    name         TEXT NOT NULL,
    team_id      TEXT REFERENCES teams(id),
    token_id     TEXT NOT NULL,
    worker_id    TEXT NOT NULL,
    labels       TEXT NOT NULL DEFAULT '{}',
    description  TEXT NOT NULL DEFAULT '{}',
    draining     INTEGER NOT NULL DEFAULT 0,
    tasks_run    INTEGER NOT NULL DEFAULT 0,
    created_at   INTEGER NOT NULL,
    removed_at   INTEGER
);
CREATE UNIQUE INDEX devices_name ON devices (name) WHERE removed_at IS NULL;
CREATE INDEX devices_worker ON devices (worker_id);
