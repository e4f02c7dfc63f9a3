//! The notifications ledger's statements, the same on SQLite and PostgreSQL but for the claim's row locks.

pub const INSERT_SQL: &str = "INSERT INTO notifications (id, job_id, type, payload, state, attempts, \
    next_attempt_at, lease_until, created_at, delivered_at, last_error, target) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)";

/// Lease until `$1` at most `$3` pending notifications due at `$2` whose lease (if any) ran out, counting an
/// attempt, earliest first; one statement, so two claimers cannot both take a row.
macro_rules! claim_sql {
    ($lock:literal) => {
        concat!(
            "UPDATE notifications SET lease_until = $1, attempts = attempts + 1 WHERE id IN (SELECT id FROM \
             notifications WHERE state = 'pending' AND next_attempt_at <= $2 \
             AND (lease_until IS NULL OR lease_until < $2) ORDER BY next_attempt_at LIMIT $3",
            $lock,
            ") RETURNING *"
        )
    };
}

/// Record how an attempt on `$1` ended: state `$2`, next attempt `$3` (kept when NULL), delivered at `$4` (kept when
/// NULL), error `$5` (kept when NULL); the lease is released.
pub const FINISH_SQL: &str = "UPDATE notifications SET state = $2, next_attempt_at = COALESCE($3, next_attempt_at), \
    delivered_at = COALESCE($4, delivered_at), last_error = COALESCE($5, last_error), lease_until = NULL \
    WHERE id = $1";

/// SQLite: the writer's turn keeps other claimers out.
pub const CLAIM_SQL: &str = claim_sql!("");
/// PostgreSQL: rows another replica holds are skipped, not waited for.
pub const CLAIM_LOCKED_SQL: &str = claim_sql!(" FOR UPDATE SKIP LOCKED");

/// The newest `$2` notifications about job `$1`, newest first.
pub const OF_JOB_SQL: &str = "SELECT * FROM notifications WHERE job_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2";

/// Delete at most `$2` delivered or failed notifications created before `$1`.
pub const PRUNE_SQL: &str = "DELETE FROM notifications WHERE id IN (SELECT id FROM notifications \
    WHERE state <> 'pending' AND created_at < $1 ORDER BY created_at LIMIT $2)";

/// Release every pending notification's lease (an exclusive store's start-up).
pub const RELEASE_LEASES_SQL: &str =
    "UPDATE notifications SET lease_until = NULL WHERE state = 'pending' AND lease_until IS NOT NULL";
