-- Backfills: the fires of a job's trigger in a past range, delivered at a bounded pace. `doc` holds the whole
-- backfill (JSON); the columns beside it are what the scheduler's steps select and advance on. A step advances
-- `position` only if it is still the one it read, so two replicas never take the same fire.
CREATE TABLE backfills (
    id TEXT PRIMARY KEY,
    job_id TEXT NOT NULL,
    state TEXT NOT NULL,
    next_step_at BIGINT NOT NULL,
    position BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    doc TEXT NOT NULL
);
CREATE INDEX backfills_due ON backfills (next_step_at) WHERE state = 'running';
CREATE INDEX backfills_job ON backfills (job_id, created_at);
