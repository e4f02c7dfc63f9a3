-- Why each run exists: `scheduled` (a fire of the trigger), `manual` (run now) or `backfill` (a past range).
-- Existing rows: a run-now row is inserted with its scheduled time equal to its creation time, which a claimed fire
-- (claimed after its time) practically never has; everything else was scheduled.
ALTER TABLE runs ADD COLUMN kind TEXT NOT NULL DEFAULT 'scheduled';
UPDATE runs SET kind = 'manual' WHERE scheduled_time = created_at;

-- After downtime, without coalesce, at most this many of the missed fires still within misfire_grace_time are
-- delivered (the newest); the older ones are recorded missed. NULL: all of them.
ALTER TABLE jobs ADD COLUMN max_catchup_runs BIGINT;

-- What a fire that comes while max_instances runs are going does: skip, buffer_one, buffer_all, cancel_other.
ALTER TABLE jobs ADD COLUMN overlap TEXT NOT NULL DEFAULT 'skip';
-- Buffered fires (status 'buffered') wait for a run of their job to end; the claim and `promote_buffered` find
-- them here, oldest first, without walking the ledger. Runs may now also be 'cancelled'.
CREATE INDEX runs_buffered ON runs (job_id, scheduled_time) WHERE status = 'buffered';
