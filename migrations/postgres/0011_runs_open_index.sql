-- What claims, cancels, promotions and lease takeovers look for among a job's runs are its unfinished ones: one
-- small partial index now serves them all, and a fire leaves it with its outcome. The two it replaces were written
-- at the claim and again at the outcome of every fire.
DROP INDEX runs_job_status;
DROP INDEX runs_unfinished_lease;
CREATE INDEX runs_unfinished ON runs (job_id, scheduled_time) WHERE status IN ('pending', 'running');
-- A job's history by status (`GET /v1/jobs/{id}/runs?status=failed`), for the statuses that are few among its
-- successes; successes are found from `runs_one_per_fire`, the buffered from `runs_buffered`.
CREATE INDEX runs_by_status ON runs (job_id, status, scheduled_time)
    WHERE status NOT IN ('pending', 'running', 'succeeded', 'buffered');
