-- A job's label rows go with it, now by one statement per DELETE on jobs instead of the foreign key's ON DELETE
-- CASCADE, which ran a DELETE of its own for every deleted job: a burst of one-off jobs deletes each one as it
-- fires, and those per-row deletes were about 6 % of the server's CPU. Label rows are written only in the
-- transaction that writes their job's row, so the insert-side check the foreign key also made had nothing to catch.
ALTER TABLE job_labels DROP CONSTRAINT job_labels_job_id_fkey;

CREATE FUNCTION apsched_job_labels_cleanup() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM job_labels USING deleted_jobs WHERE job_labels.job_id = deleted_jobs.id;
    RETURN NULL;
END
$$;

CREATE TRIGGER job_labels_cleanup AFTER DELETE ON jobs REFERENCING OLD TABLE AS deleted_jobs
    FOR EACH STATEMENT EXECUTE FUNCTION apsched_job_labels_cleanup();
