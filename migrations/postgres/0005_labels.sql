-- Labels (docs/api.md, "Labels and selectors"). `jobs.labels` is the job's map, read back with the job (and in
-- psql: `SELECT id, labels->>'team' FROM jobs`); `job_labels` holds the same pairs one row each, so a selector is
-- answered from a btree index, the same statements as SQLite's. The store writes both in one transaction; deleting
-- a job deletes its rows (the foreign key). Changing labels always updates `jobs` too, so the jobs_changed trigger
-- wakes the other replicas.

ALTER TABLE jobs ADD COLUMN labels JSONB NOT NULL DEFAULT '{}';

CREATE TABLE job_labels (
    job_id TEXT COLLATE "C" NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    key    TEXT NOT NULL,
    value  TEXT NOT NULL,
    -- A job's labels, for "has it not" (`!key`, `key!=value`, `notin`) and for rewriting them.
    PRIMARY KEY (job_id, key)
);

-- The jobs that have a label (`key`), with a value (`key=value`, `key in (…)`): a selector starts here.
CREATE INDEX job_labels_selection ON job_labels (key, value, job_id);
