-- Health notifications: a job's own `notify` (where and when to send them) as JSON; NULL: the configuration's
-- `[notify]`, if any.
ALTER TABLE jobs ADD COLUMN notify JSONB;

-- The notifications ledger: a row per notification, written in the transaction of the change that causes it;
-- senders claim due pending rows with a lease (lease_until), so each is sent once.
CREATE TABLE notifications (
    id TEXT PRIMARY KEY,
    job_id TEXT NOT NULL,
    type TEXT NOT NULL,
    payload JSONB NOT NULL,
    state TEXT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMPTZ NOT NULL,
    lease_until TIMESTAMPTZ,
    created_at TIMESTAMPTZ NOT NULL,
    delivered_at TIMESTAMPTZ,
    last_error TEXT,
    -- Where it goes if its job is gone by the time it is sent: the job's `notify` (or `[notify]`) when written.
    target JSONB
);
CREATE INDEX notifications_due ON notifications (next_attempt_at) WHERE state = 'pending';
CREATE INDEX notifications_of_job ON notifications (job_id, created_at);
