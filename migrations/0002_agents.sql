-- dnnpress-server schema, version 2: agents are bound to their token.
--
-- A worker row records the agent token that registered it and that token's
-- team (NULL: a shared agent, which serves every team). Claims, task writes
-- and blob downloads check the caller's token against the worker that holds
-- the lease (docs/security.md). token_id is not a foreign key: a worker's row
-- outlives its token, so that the history (task_errors.worker_id) still
-- names it after the token is revoked.
--
-- Workers registered before this version have no token: nobody can claim
-- as them or write to their leases any more. Their workers get 404 on the
-- next claim and register again; a task such a worker still holds goes back
-- to the queue when its lease expires.
ALTER TABLE workers ADD COLUMN token_id TEXT;
ALTER TABLE workers ADD COLUMN team_id TEXT REFERENCES teams(id);
CREATE INDEX workers_token ON workers (token_id);

-- The fence under which an artifact was uploaded: complete accepts as
-- outputs only the artifacts of the lease it ends (NULL for rows from
-- version 1, which no live lease can name).
ALTER TABLE artifacts ADD COLUMN fence INTEGER;
CREATE INDEX artifacts_task ON artifacts (task_id, fence);
