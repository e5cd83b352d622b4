-- dnnpress-server schema, version 3: token lifetime and per-job event ids.
--
-- Tokens can be revoked and can expire; a row is never deleted, so the list
-- keeps who had access and until when. origin says where a token came from,
-- because the server replaces two kinds by itself at start:
--   api       POST /api/v1/tokens
--   env       DNNPRESS_ADMIN_TOKEN (a new value revokes the previous one)
--   generated the admin token printed at a first start without the variable
--   local     the agent token of --local-workers (each start revokes the last)

ALTER TABLE tokens ADD COLUMN expires_at INTEGER;   -- NULL: never
ALTER TABLE tokens ADD COLUMN revoked_at INTEGER;   -- NULL: live
ALTER TABLE tokens ADD COLUMN last_used_at INTEGER; -- recorded at most once a minute
ALTER TABLE tokens ADD COLUMN origin TEXT NOT NULL DEFAULT 'api'
    CHECK (origin IN ('api', 'env', 'generated', 'local'));

-- Version 1 told these apart only by name.
UPDATE tokens SET origin = 'env' WHERE scope = 'admin' AND name = 'env';
UPDATE tokens SET origin = 'generated' WHERE scope = 'admin' AND name = 'first-start';
UPDATE tokens SET origin = 'local'
    WHERE scope = 'agent' AND team_id IS NULL AND name = 'local-workers';

CREATE INDEX tokens_team ON tokens (team_id, seq);

-- An event's SSE id is its number within its job (1, 2, 3, ...): the global
-- row number told every team how busy the server was. Within a job job_seq
-- grows with seq, so ordering by either is the same. A client resuming
-- across this upgrade with an old (global) Last-Event-ID may skip some of
-- the job's events; its stream still ends when the job does.
ALTER TABLE events ADD COLUMN job_seq INTEGER NOT NULL DEFAULT 0;
UPDATE events SET job_seq = n.job_seq
    FROM (SELECT seq, row_number() OVER (PARTITION BY job_id ORDER BY seq) AS job_seq
          FROM events) AS n
    WHERE n.seq = events.seq;
DROP INDEX events_job;
CREATE UNIQUE INDEX events_job_seq ON events (job_id, job_seq);
