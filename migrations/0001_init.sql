-- dnnpress-server schema, version 1.
--
-- Times are INTEGER milliseconds since the Unix epoch (UTC); the API formats
-- them as RFC 3339. Ids are opaque text with a type prefix (team_, tok_, mdl_,
-- dst_, job_, tsk_, wkr_). Every list is ordered by an AUTOINCREMENT seq, so
-- "newest first" and cursor pagination are an index walk.

CREATE TABLE teams (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    id         TEXT NOT NULL UNIQUE,
    name       TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL
);

-- Only the SHA-256 of a token is stored; the secret is shown once.
CREATE TABLE tokens (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    id         TEXT NOT NULL UNIQUE,
    team_id    TEXT REFERENCES teams(id),
    scope      TEXT NOT NULL CHECK (scope IN ('admin', 'team', 'agent')),
    name       TEXT NOT NULL,
    hash       TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    CHECK ((scope = 'team') = (team_id IS NOT NULL) OR scope = 'agent')
);

-- Content-addressed files under DATA/artifacts/xx/<sha256>.
CREATE TABLE blobs (
    sha256     TEXT PRIMARY KEY,
    size       INTEGER NOT NULL,
    created_at INTEGER NOT NULL
) WITHOUT ROWID;

-- Models and datasets: a built-in name or an uploaded, validated file.
CREATE TABLE assets (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    id         TEXT NOT NULL UNIQUE,
    team_id    TEXT NOT NULL REFERENCES teams(id),
    kind       TEXT NOT NULL CHECK (kind IN ('model', 'dataset')),
    name       TEXT NOT NULL,
    format     TEXT NOT NULL,
    builtin    TEXT,
    sha256     TEXT REFERENCES blobs(sha256),
    size       INTEGER,
    created_at INTEGER NOT NULL,
    CHECK ((builtin IS NULL) != (sha256 IS NULL))
);
CREATE INDEX assets_team ON assets (team_id, kind, seq);

-- Idempotency-Key replays: the first object created under a key, and the
-- hash of the request that created it (a different request is refused).
CREATE TABLE idempotency (
    team_id    TEXT NOT NULL,
    route      TEXT NOT NULL,
    key        TEXT NOT NULL,
    req_hash   TEXT NOT NULL,
    object_id  TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (team_id, route, key)
) WITHOUT ROWID;

CREATE TABLE jobs (
    seq              INTEGER PRIMARY KEY AUTOINCREMENT,
    id               TEXT NOT NULL UNIQUE,
    team_id          TEXT NOT NULL REFERENCES teams(id),
    name             TEXT NOT NULL,
    state            TEXT NOT NULL
                     CHECK (state IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    model_id         TEXT NOT NULL,
    dataset_id       TEXT NOT NULL,
    priority         INTEGER NOT NULL,
    max_attempts     INTEGER NOT NULL,
    params           TEXT NOT NULL,          -- {"spec","pretrain","export","seed"}
    progress         TEXT,                   -- last progress object a worker sent
    outputs          TEXT NOT NULL DEFAULT '{}',
    error            TEXT,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    created_at       INTEGER NOT NULL,
    started_at       INTEGER,
    finished_at      INTEGER,
    -- River's finalized invariant: finished_at is set exactly for terminal states.
    CHECK ((finished_at IS NOT NULL) = (state IN ('succeeded', 'failed', 'cancelled')))
);
CREATE INDEX jobs_team ON jobs (team_id, seq);
CREATE INDEX jobs_team_state ON jobs (team_id, state, seq);

-- One row per unit of work. A task is claimable when it is queued, its
-- backoff has elapsed and the task it depends on has succeeded. fence is
-- bumped on every claim; every worker write must carry the current value.
CREATE TABLE tasks (
    seq              INTEGER PRIMARY KEY AUTOINCREMENT,
    id               TEXT NOT NULL UNIQUE,
    job_id           TEXT NOT NULL REFERENCES jobs(id),
    type             TEXT NOT NULL CHECK (type IN ('train', 'compress', 'retrain', 'export')),
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
CREATE INDEX tasks_job ON tasks (job_id, seq);
CREATE INDEX tasks_ready ON tasks (state, priority, seq);
CREATE INDEX tasks_lease ON tasks (state, lease_expires_at);

-- Per-attempt error history (Oban/River errors[]).
CREATE TABLE task_errors (
    seq       INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id   TEXT NOT NULL REFERENCES tasks(id),
    attempt   INTEGER NOT NULL,
    kind      TEXT NOT NULL,                 -- error, lease_expired, cancelled
    message   TEXT NOT NULL,
    worker_id TEXT,
    at        INTEGER NOT NULL
);
CREATE INDEX task_errors_task ON task_errors (task_id, seq);

-- Job events for Server-Sent Events; seq is the SSE id (monotonic).
CREATE TABLE events (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id     TEXT NOT NULL REFERENCES jobs(id),
    type       TEXT NOT NULL,
    data       TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX events_job ON events (job_id, seq);

CREATE TABLE artifacts (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id     TEXT NOT NULL REFERENCES jobs(id),
    task_id    TEXT NOT NULL REFERENCES tasks(id),
    team_id    TEXT NOT NULL,
    kind       TEXT NOT NULL,
    sha256     TEXT NOT NULL REFERENCES blobs(sha256),
    size       INTEGER NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX artifacts_job ON artifacts (job_id, seq);
CREATE INDEX artifacts_team_sha ON artifacts (team_id, sha256);

CREATE TABLE workers (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    id           TEXT NOT NULL UNIQUE,
    name         TEXT NOT NULL,
    version      TEXT NOT NULL,
    capabilities TEXT NOT NULL,
    device       TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    last_seen_at INTEGER NOT NULL
);
