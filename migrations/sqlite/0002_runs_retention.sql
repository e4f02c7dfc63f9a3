-- Retention (`[runs] retention_seconds`): finished runs by when they finished, so the pruner finds the old ones
-- without walking the ledger. Rows that never recorded finished_at fall back to created_at; the store's query
-- repeats this expression verbatim so SQLite can match it to the index.
CREATE INDEX runs_finished_age ON runs (IFNULL(finished_at, created_at)) WHERE status NOT IN ('pending', 'running');
