-- Health notifications: a job's own `notify` (where and when to send them) as JSON text; NULL: the
-- configuration's `[notify]`, if any.
ALTER TABLE jobs ADD COLUMN notify TEXT;
