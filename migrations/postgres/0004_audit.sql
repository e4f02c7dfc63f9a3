-- The audit trail (docs/api.md "Audit"): one row per change made through the API, written in the same transaction
-- as the change. `job_before` and `job_after` are the job as the API showed it (secrets masked), NULL where it did
-- not exist: `SELECT recorded_at, actor, action, job_after->'trigger' FROM audit WHERE job_id = '…'`.

CREATE TABLE audit (
    -- time-ordered (UUID v7), so entries of one instant keep the order they were made in
    id          TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    recorded_at TIMESTAMPTZ NOT NULL,
    -- the API token's name, or "anonymous" when the API has no tokens
    actor       TEXT        NOT NULL,
    -- add, modify, pause, resume, run, remove, remove_all, scheduler_pause, …
    action      TEXT        NOT NULL,
    -- NULL for changes to no job (scheduler control); no foreign key: the history outlives its job
    job_id      TEXT COLLATE "C",
    -- the request's `apsched-reason` header
    reason      TEXT,
    job_before  JSONB,
    job_after   JSONB
);

-- `GET /v1/audit` newest first, and retention (`[audit] retention_seconds`) by age.
CREATE INDEX audit_newest ON audit (recorded_at, id);
-- `GET /v1/jobs/{id}/history` newest first.
CREATE INDEX audit_job_newest ON audit (job_id, recorded_at, id);
