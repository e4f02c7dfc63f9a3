-- Jobs and the run ledger (DESIGN.md "The run ledger"), shared by every replica pointed at this schema.
-- Times are timestamptz (microsecond precision, as every store keeps). `trigger` and `action` are the job's JSON
-- as the API shows it (trigger resolved, secrets unmasked): `SELECT id, trigger->>'type', action->>'url' FROM jobs`.
-- Ids and keys compare bytewise (COLLATE "C"), so list order and cursors match the other stores whatever the
-- database's collation.

CREATE TABLE jobs (
    id                 TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    name               TEXT,
    trigger            JSONB       NOT NULL,
    action             JSONB       NOT NULL,
    coalesce           BOOLEAN     NOT NULL,
    max_instances      BIGINT      NOT NULL,
    -- seconds; NULL: a late fire always runs
    misfire_grace_time BIGINT,
    executor           TEXT        NOT NULL,
    jobstore           TEXT        NOT NULL,
    -- NULL when paused (or finished)
    next_run_time      TIMESTAMPTZ,
    paused             BOOLEAN     NOT NULL,
    created_at         TIMESTAMPTZ NOT NULL,
    updated_at         TIMESTAMPTZ NOT NULL
);

-- The scheduler's hot path: unpaused due jobs earliest first (the claim), and the earliest next run time.
CREATE INDEX jobs_due ON jobs (next_run_time, id) WHERE NOT paused AND next_run_time IS NOT NULL;

-- List order and keyset pagination (store::job_order_key): by next run time, then id, jobs without one last.
-- 'infinity' is later than any time, so it stands for "none"; the store's queries repeat the expression verbatim.
CREATE INDEX jobs_list_order ON jobs ((COALESCE(next_run_time, 'infinity'::timestamptz)), id);

CREATE TABLE runs (
    -- unique to (job, scheduled fire time); sent as `idempotency-key`
    idempotency_key  TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    -- no foreign key: the history outlives its job
    job_id           TEXT COLLATE "C" NOT NULL,
    scheduled_time   TIMESTAMPTZ NOT NULL,
    -- pending, running, succeeded, failed, missed, skipped, coalesced
    status           TEXT        NOT NULL,
    attempts         BIGINT      NOT NULL,
    started_at       TIMESTAMPTZ,
    finished_at      TIMESTAMPTZ,
    http_status      INTEGER,
    duration_ms      BIGINT,
    error            TEXT,
    response_excerpt TEXT,
    -- the job's action when the fire was claimed
    action           JSONB       NOT NULL,
    executor         TEXT        NOT NULL,
    timezone         TEXT        NOT NULL,
    lease_expires_at TIMESTAMPTZ,
    created_at       TIMESTAMPTZ NOT NULL
);

-- The ledger's promise: one row per fire, so only one replica can claim it. Also a job's history newest first.
CREATE UNIQUE INDEX runs_one_per_fire ON runs (job_id, scheduled_time);

-- A job's history filtered by status, and its active (pending/running) runs for max_instances.
CREATE INDEX runs_job_status ON runs (job_id, status, scheduled_time);

-- Unfinished runs by lease: what a replica takes over when another's lease expires.
CREATE INDEX runs_unfinished_lease ON runs (lease_expires_at) WHERE status IN ('pending', 'running');

-- Every change to a job wakes the replicas sharing this schema (LISTEN/NOTIFY), whoever makes it: a replica's API
-- or a person in psql. The payload is the writer's `apsched.origin` (each store sets its own at connect) so a
-- replica can ignore its own changes. A claim only moves next_run_time, which never makes anything due sooner,
-- so it is left out: the column list keeps claims silent.
CREATE FUNCTION apsched_jobs_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify(left('apsched_jobs_' || TG_TABLE_SCHEMA, 63),
                      coalesce(current_setting('apsched.origin', true), ''));
    RETURN NULL;
END
$$;

CREATE TRIGGER jobs_changed
    AFTER INSERT OR DELETE OR TRUNCATE
    OR UPDATE OF id, name, trigger, action, coalesce, max_instances, misfire_grace_time, executor, jobstore, paused,
                 created_at, updated_at
    ON jobs FOR EACH STATEMENT EXECUTE FUNCTION apsched_jobs_changed();
