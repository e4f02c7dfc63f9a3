//! The recorder's batch with health: a run's first outcome (succeeded or failed) updates its job's health, and a
//! job with `auto_pause_after_failures` is paused, in the same transaction as the outcome, so neither is lost.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use sqlx::{Executor, FromRow, IntoArguments, Pool, Transaction};

use super::{Args, Conn, DbRow, Dialect, Param, Record, Statement, arguments, store_error};
use crate::health;
use crate::job::{Job, Run, RunStatus};
use crate::notify::{self, NotifySpec, ledger::Notification};
use crate::store::StoreResult;

const JOB_SQL: &str = "SELECT * FROM jobs WHERE id = $1";

const SUCCEEDED_SQL: &str = "UPDATE jobs SET consecutive_failures = 0, last_success_at = $2, stale = $3 WHERE id = $1";
const FAILED_SQL: &str =
    "UPDATE jobs SET consecutive_failures = consecutive_failures + 1, last_failure_at = $2 WHERE id = $1";
/// `$2` true, `$3` false: pause an unpaused job whose failures reached its `auto_pause_after_failures`.
const AUTO_PAUSE_SQL: &str = "UPDATE jobs SET paused = $2, next_run_time = NULL, paused_until = NULL, \
    paused_reason = 'auto: ' || consecutive_failures || ' consecutive failures' \
    WHERE id = $1 AND paused = $3 AND auto_pause_after_failures IS NOT NULL \
    AND consecutive_failures >= auto_pause_after_failures";

/// Paused jobs (`$2` true) whose `paused_until` is at or before `$1`, taken by clearing it.
pub const TAKE_DUE_RESUMES_SQL: &str = "UPDATE jobs SET paused_until = NULL \
    WHERE paused = $2 AND paused_until IS NOT NULL AND paused_until <= $1 RETURNING *";
/// The earliest `paused_until` of a paused job (`$1` true), from the `jobs_paused_until` index.
pub const EARLIEST_PAUSED_UNTIL_SQL: &str = "SELECT paused_until FROM jobs \
    WHERE paused_until IS NOT NULL AND paused = $1 ORDER BY paused_until LIMIT 1";

/// Active jobs (`$1` false) with `stale_after_seconds` that are not stale yet (the `jobs_stale_watch` index).
pub const STALE_CANDIDATES_SQL: &str =
    "SELECT * FROM jobs WHERE stale_after_seconds IS NOT NULL AND stale = $1 AND paused = $1";
/// Mark job `$1` stale (`$2` true, `$3` false) unless it is already, or was paused, or succeeded after `$4`.
pub const MARK_STALE_SQL: &str = "UPDATE jobs SET stale = $2 WHERE id = $1 AND stale = $3 AND paused = $3 \
    AND COALESCE(last_success_at, created_at) = $4 RETURNING *";

/// Narrow a job list to one health state, as `Health::state` decides it.
pub fn push_health_filter<D: Dialect>(sql: &mut super::Statement<D>, state: health::HealthState) -> StoreResult<()> {
    use health::HealthState::*;
    let (failing, stale) = (" AND consecutive_failures > 0", " AND consecutive_failures = 0 AND stale = ");
    match state {
        Failing => {
            sql.push(failing);
        }
        Stale => {
            sql.push(stale).param(Param::Bool(true))?;
        }
        Healthy => {
            sql.push(stale).param(Param::Bool(false))?;
            sql.push(" AND (last_success_at IS NOT NULL OR last_failure_at IS NOT NULL)");
        }
        Unknown => {
            sql.push(stale).param(Param::Bool(false))?;
            sql.push(" AND last_success_at IS NULL AND last_failure_at IS NULL");
        }
    }
    Ok(())
}

/// Save the recorder's batch (`Dialect::save_runs`) and the health its outcomes make, with the notifications they
/// cause (`default`: `[notify]`); the keys of the runs found.
pub async fn save_runs<D: Dialect>(
    pool: &Pool<D::Db>,
    dialect: &D,
    runs: &[Run],
    default: Option<&NotifySpec>,
) -> StoreResult<HashSet<String>>
where
    for<'c> &'c mut Conn<D>: Executor<'c, Database = D::Db>,
    Args<D>: IntoArguments<D::Db>,
    (String,): for<'r> FromRow<'r, DbRow<D>>,
    (String, String): for<'r> FromRow<'r, DbRow<D>>,
    (String, i64, bool): for<'r> FromRow<'r, DbRow<D>>,
{
    let _writer = match dialect.writer() {
        Some(writer) => Some(writer.lock().await),
        None => None,
    };
    let mut transaction = pool.begin_with(D::BEGIN_BY_KEY).await.map_err(store_error)?;
    let saved = if runs.iter().any(|run| health::counts(run.status)) {
        save_with_health(&mut *transaction, dialect, runs, default).await
    } else {
        dialect.save_runs(&mut transaction, runs).await
    };
    finish::<D, _>(transaction, saved).await
}

/// Commit when `outcome` is a success, else roll back at once: a dropped transaction is rolled back only when its
/// connection is next used, holding its row locks until then.
pub async fn finish<D: Dialect, T>(transaction: Transaction<'_, D::Db>, outcome: StoreResult<T>) -> StoreResult<T> {
    match outcome {
        Ok(value) => {
            transaction.commit().await.map_err(store_error)?;
            Ok(value)
        }
        Err(err) => {
            let _ = transaction.rollback().await;
            Err(err)
        }
    }
}

async fn save_with_health<D: Dialect>(
    transaction: &mut Conn<D>,
    dialect: &D,
    runs: &[Run],
    default: Option<&NotifySpec>,
) -> StoreResult<HashSet<String>>
where
    for<'c> &'c mut Conn<D>: Executor<'c, Database = D::Db>,
    Args<D>: IntoArguments<D::Db>,
    (String,): for<'r> FromRow<'r, DbRow<D>>,
    (String, String): for<'r> FromRow<'r, DbRow<D>>,
    (String, i64, bool): for<'r> FromRow<'r, DbRow<D>>,
{
    // A run recorded with its outcome again (a retried record) counts once: only those not yet ended count. One
    // read for the batch: a burst records thousands of outcomes a second.
    let keys: Vec<&str> =
        runs.iter().filter(|run| health::counts(run.status)).map(|run| run.idempotency_key.as_str()).collect();
    let statuses: HashMap<String, String> =
        sqlx::query_as_with(D::RUN_STATUSES_SQL, arguments::<D>([Param::Keys(keys)])?)
            .fetch_all(&mut *transaction)
            .await
            .map_err(store_error)?
            .into_iter()
            .collect();
    let mut outcomes: Vec<&Run> = (runs.iter())
        .filter(|run| health::counts(run.status))
        .filter(|run| {
            let status = statuses.get(&run.idempotency_key).map(|status| RunStatus::parse(status));
            status.is_some_and(|status| status.is_none_or(|status| !health::counts(status)))
        })
        .collect();
    let found = dialect.save_runs(transaction, runs).await?;
    outcomes.retain(|run| found.contains(&run.idempotency_key));
    if outcomes.is_empty() {
        return Ok(found);
    }
    outcomes.sort_by_key(|run| run.finished_at);
    // The jobs' failures before this batch, and whether they may notify; a job gone (a one-shot job is removed by
    // its claim) keeps no health.
    let mut job_ids: Vec<&str> = outcomes.iter().map(|run| run.job_id.as_str()).collect();
    job_ids.sort_unstable();
    job_ids.dedup();
    let mut jobs: HashMap<String, (i64, bool)> =
        sqlx::query_as_with(D::JOB_HEALTH_SQL, arguments::<D>([Param::Keys(job_ids)])?)
            .fetch_all(&mut *transaction)
            .await
            .map_err(store_error)?
            .into_iter()
            .map(|(id, failures, own_notify): (String, i64, bool)| (id, (failures, own_notify)))
            .collect();
    // A success of a job that may not notify and has no failure in this batch only resets its streak: those go in
    // one statement for the batch (one round trip each was most of a daily burst's ledger time on PostgreSQL).
    let failing: HashSet<&str> =
        outcomes.iter().filter(|run| run.status != RunStatus::Succeeded).map(|run| run.job_id.as_str()).collect();
    let quiet = |run: &Run| {
        run.status == RunStatus::Succeeded
            && !failing.contains(run.job_id.as_str())
            && default.is_none()
            && jobs.get(&run.job_id).is_some_and(|(_, own_notify)| !own_notify)
    };
    let (plain, outcomes): (Vec<&Run>, Vec<&Run>) = outcomes.into_iter().partition(|run| quiet(run));
    save_plain_successes::<D>(transaction, &plain).await?;
    for run in outcomes {
        let Some((failures, own_notify)) = jobs.get_mut(&run.job_id) else {
            // Its job is gone: a one-shot job is removed by its claim, which left the job on the run if it may notify.
            insert_notifications::<D>(transaction, &notify::for_outcome_of_removed_job(run, default)).await?;
            continue;
        };
        let before = u32::try_from(*failures).unwrap_or(u32::MAX);
        let succeeded = run.status == RunStatus::Succeeded;
        *failures = if succeeded { 0 } else { *failures + 1 };
        let at = Param::Time(Some(run.finished_at.unwrap_or(run.created_at)));
        let id = Param::Text(Some(&run.job_id));
        let mut auto_paused = false;
        if succeeded {
            sqlx::query_with(SUCCEEDED_SQL, arguments::<D>([id, at, Param::Bool(false)])?)
                .execute(&mut *transaction)
                .await
                .map_err(store_error)?;
        } else {
            sqlx::query_with(FAILED_SQL, arguments::<D>([id, at])?)
                .execute(&mut *transaction)
                .await
                .map_err(store_error)?;
            let pause = [Param::Text(Some(&run.job_id)), Param::Bool(true), Param::Bool(false)];
            let paused = sqlx::query_with(AUTO_PAUSE_SQL, arguments::<D>(pause)?)
                .execute(&mut *transaction)
                .await
                .map_err(store_error)?;
            auto_paused = D::rows_affected(&paused) > 0;
        }
        // Only a job that may notify is read whole.
        if !*own_notify && default.is_none() {
            continue;
        }
        let Some(after) = job_row::<D>(transaction, &run.job_id).await? else { continue };
        let notifications = notify::for_outcome(&after, run, before, auto_paused, default);
        insert_notifications::<D>(transaction, &notifications).await?;
    }
    Ok(found)
}

/// Reset the failure streak of each job with a success in `runs` (in finishing order, so the last success wins),
/// many jobs a statement.
async fn save_plain_successes<D: Dialect>(connection: &mut Conn<D>, runs: &[&Run]) -> StoreResult<()>
where
    for<'c> &'c mut Conn<D>: Executor<'c, Database = D::Db>,
    Args<D>: IntoArguments<D::Db>,
{
    let mut last_success: HashMap<&str, DateTime<Utc>> = HashMap::with_capacity(runs.len());
    for run in runs {
        last_success.insert(&run.job_id, run.finished_at.unwrap_or(run.created_at));
    }
    let last_success: Vec<(&str, DateTime<Utc>)> = last_success.into_iter().collect();
    for chunk in last_success.chunks(super::labels::JOBS_PER_STATEMENT) {
        // `VALUES` names its columns column1, column2… in both databases.
        let mut update = Statement::<D>::new("UPDATE jobs SET consecutive_failures = 0, stale = ");
        update.param(Param::Bool(false))?.push(", last_success_at = u.column2 FROM (VALUES ");
        for (index, (id, at)) in chunk.iter().enumerate() {
            update.push(if index > 0 { ", (" } else { "(" });
            update.param(Param::Text(Some(id)))?.push(", ").param(Param::Time(Some(*at)))?;
            update.push(")");
        }
        update.push(") AS u WHERE jobs.id = u.column1");
        super::labels::execute(connection, update).await?;
    }
    Ok(())
}

async fn job_row<D: Dialect>(connection: &mut Conn<D>, id: &str) -> StoreResult<Option<Job>>
where
    for<'c> &'c mut Conn<D>: Executor<'c, Database = D::Db>,
    Args<D>: IntoArguments<D::Db>,
{
    let row: Option<D::JobRow> = sqlx::query_as_with(JOB_SQL, arguments::<D>([Param::Text(Some(id))])?)
        .fetch_optional(&mut *connection)
        .await
        .map_err(store_error)?;
    row.map(Record::into_model).transpose()
}

/// Add notifications to the ledger inside the caller's transaction.
pub async fn insert_notifications<D: Dialect>(
    connection: &mut Conn<D>,
    notifications: &[Notification],
) -> StoreResult<()>
where
    for<'c> &'c mut Conn<D>: Executor<'c, Database = D::Db>,
    Args<D>: IntoArguments<D::Db>,
{
    for notification in notifications {
        let params = super::rows::notification_params::<D::Json>(notification)?;
        sqlx::query_with(super::notifications::INSERT_SQL, arguments::<D>(params)?)
            .execute(&mut *connection)
            .await
            .map_err(store_error)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use sqlx::sqlite::{SqliteConnectOptions, SqlitePool};

    use crate::health::{Health, HealthState};
    use crate::store::sqlite::SqliteStore;
    use crate::store::{JobStore, RunQuery};

    #[tokio::test]
    async fn upgrading_a_sqlite_file_from_0007_keeps_every_job_and_run_and_starts_their_health_unknown() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("apsched.db").display());
        let options = url.parse::<SqliteConnectOptions>().unwrap().create_if_missing(true);
        let pool = SqlitePool::connect_with(options).await.unwrap();
        let mut before = sqlx::migrate!("migrations/sqlite");
        before.migrations = before.migrations.iter().filter(|m| m.version <= 7).cloned().collect::<Vec<_>>().into();
        before.run(&pool).await.unwrap();
        sqlx::query(
            "INSERT INTO jobs (id, trigger, action, coalesce, max_instances, executor, jobstore, paused, created_at, \
             updated_at, max_catchup_runs, overlap) VALUES ('j', '{\"type\": \"date\", \"run_date\": \
             \"2026-12-01T10:00:00Z\"}', '{\"url\": \"http://127.0.0.1:9/\"}', 1, 1, 'default', 'default', 1, 0, 0, 2, \
             'buffer_one')",
        )
        .execute(&pool)
        .await
        .unwrap();
        sqlx::query(
            "INSERT INTO runs (idempotency_key, job_id, scheduled_time, status, attempts, action, executor, timezone, \
             created_at, kind) VALUES ('r', 'j', 1000000, 'failed', 3, '{\"url\": \"http://127.0.0.1:9/\"}', \
             'default', 'UTC', 1000150, 'scheduled')",
        )
        .execute(&pool)
        .await
        .unwrap();
        pool.close().await;

        let store = SqliteStore::connect(&url).await.unwrap();
        let job = store.get_job("j").await.unwrap().expect("the job is kept");
        assert_eq!((job.max_catchup_runs, job.overlap), (Some(2), crate::job::Overlap::BufferOne));
        assert_eq!((job.auto_pause_after_failures, job.stale_after_seconds), (None, None));
        assert_eq!((job.paused_reason, job.paused_until), (None, None));
        assert_eq!(job.health, Health::default());
        assert_eq!(job.health.state(), HealthState::Unknown);
        let runs = store.list_runs("j", &RunQuery { status: None, after: None, limit: 10 }).await.unwrap();
        assert_eq!(runs.len(), 1);
        assert_eq!((runs[0].idempotency_key.as_str(), runs[0].attempts), ("r", 3));
    }
}
