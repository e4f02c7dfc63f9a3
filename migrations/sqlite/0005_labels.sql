-- Labels (docs/api.md, "Labels and selectors"). `jobs.labels` is the job's map as JSON text, read back with the job;
-- `job_labels` holds the same pairs one row each, so a selector is answered from an index instead of by reading
-- every job. The store writes both in one transaction; deleting a job deletes its rows (the foreign key).

ALTER TABLE jobs ADD COLUMN labels TEXT NOT NULL DEFAULT '{}';

CREATE TABLE job_labels (
    job_id TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    key    TEXT NOT NULL,
    value  TEXT NOT NULL,
    -- A job's labels, for "has it not" (`!key`, `key!=value`, `notin`) and for rewriting them.
    PRIMARY KEY (job_id, key)
) WITHOUT ROWID;

-- The jobs that have a label (`key`), with a value (`key=value`, `key in (…)`): a selector starts here.
CREATE INDEX job_labels_selection ON job_labels (key, value, job_id);
