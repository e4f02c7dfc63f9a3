-- Health and auto-pause. Options a client sets: pause after this many consecutive failed runs (NULL: never), and
-- stale after this many seconds without a success (NULL: never); why and until when a job is paused.
ALTER TABLE jobs ADD COLUMN auto_pause_after_failures BIGINT;
ALTER TABLE jobs ADD COLUMN stale_after_seconds BIGINT;
ALTER TABLE jobs ADD COLUMN paused_reason TEXT;
-- The scheduler loop looks for jobs to resume (paused_until reached) and sleeps until the earliest.
ALTER TABLE jobs ADD COLUMN paused_until TIMESTAMPTZ;

-- Health, written only as run outcomes are recorded (in the same transaction), never by a change to the job.
ALTER TABLE jobs ADD COLUMN consecutive_failures BIGINT NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN last_success_at TIMESTAMPTZ;
ALTER TABLE jobs ADD COLUMN last_failure_at TIMESTAMPTZ;
ALTER TABLE jobs ADD COLUMN stale BOOLEAN NOT NULL DEFAULT false;

CREATE INDEX jobs_paused_until ON jobs (paused_until) WHERE paused_until IS NOT NULL;
-- The stale sweep reads only the jobs that watch for staleness.
CREATE INDEX jobs_stale_watch ON jobs (id) WHERE stale_after_seconds IS NOT NULL;
