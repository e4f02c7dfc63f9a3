-- Jobs and the run ledger (DESIGN.md "The run ledger").
-- Times are INTEGER microseconds since the Unix epoch (UTC): they sort as times do and round-trip exactly.
-- To read one in the sqlite3 CLI: strftime('%Y-%m-%dT%H:%M:%fZ', next_run_time / 1e6, 'unixepoch').
-- `trigger` and `action` are the job's JSON, as the API shows them (trigger resolved, secrets unmasked).

CREATE TABLE jobs (
    id                 TEXT    NOT NULL PRIMARY KEY,
    name               TEXT,
    trigger            TEXT    NOT NULL,
    action             TEXT    NOT NULL,
    coalesce           INTEGER NOT NULL,
    max_instances      INTEGER NOT NULL,
    -- seconds; NULL: a late fire always runs
    misfire_grace_time INTEGER,
    executor           TEXT    NOT NULL,
    jobstore           TEXT    NOT NULL,
    -- NULL when paused (or finished)
    next_run_time      INTEGER,
    paused             INTEGER NOT NULL,
    created_at         INTEGER NOT NULL,
    updated_at         INTEGER NOT NULL
);

-- The scheduler's hot path: unpaused due jobs earliest first, and the earliest next run time.
CREATE INDEX jobs_due ON jobs (next_run_time, id) WHERE paused = 0 AND next_run_time IS NOT NULL;

-- List order and keyset pagination (store::job_order_key): by next run time, then id, jobs without one last.
-- i64::MAX microseconds is later than any time chrono can represent, so it stands for "none" without a tie.
-- The store's queries repeat this expression verbatim so SQLite can match them to the index.
CREATE INDEX jobs_list_order ON jobs (IFNULL(next_run_time, 9223372036854775807), id);

CREATE TABLE runs (
    -- unique to (job, scheduled fire time); sent as `idempotency-key`
    idempotency_key  TEXT    NOT NULL PRIMARY KEY,
    -- no foreign key: the history outlives its job
    job_id           TEXT    NOT NULL,
    scheduled_time   INTEGER NOT NULL,
    -- pending, running, succeeded, failed, missed, skipped, coalesced
    status           TEXT    NOT NULL,
    attempts         INTEGER NOT NULL,
    started_at       INTEGER,
    finished_at      INTEGER,
    http_status      INTEGER,
    duration_ms      INTEGER,
    error            TEXT,
    response_excerpt TEXT,
    -- the job's action when the fire was claimed, JSON
    action           TEXT    NOT NULL,
    executor         TEXT    NOT NULL,
    timezone         TEXT    NOT NULL,
    lease_expires_at INTEGER,
    created_at       INTEGER NOT NULL
);

-- The ledger's promise: one row per fire, so only one claimer can take it. Also a job's history newest first.
CREATE UNIQUE INDEX runs_one_per_fire ON runs (job_id, scheduled_time);

-- A job's history newest first filtered by status, and its active (pending/running) runs for max_instances.
CREATE INDEX runs_job_status ON runs (job_id, status, scheduled_time);

-- Unfinished runs whose lease has expired or was never set (redelivery after a crash or a lost replica).
CREATE INDEX runs_unfinished_lease ON runs (lease_expires_at) WHERE status IN ('pending', 'running');
