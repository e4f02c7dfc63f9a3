//! The SQL stores' backfills: one row each, the whole backfill as JSON text (`doc`) beside the columns the steps
//! select and advance on. A step's update applies only while the row's position is still the one the step read,
//! so two processes never take the same fire; the step's run goes in within the same transaction.

use chrono::{DateTime, Utc};
use sqlx::{Executor, FromRow, IntoArguments};

use super::{Args, Conn, DbRow, Dialect, Param, SqlStore, arguments, as_stored, is_unique_violation, store_error};
use crate::backfill::{Backfill, BackfillState, BackfillStep, RunCounts, StepOutcome, advanced};
use crate::job::RunStatus;
use crate::store::{StoreError, StoreResult};

const INSERT_SQL: &str = "INSERT INTO backfills (id, job_id, state, next_step_at, position, created_at, doc) \
    VALUES ($1, $2, $3, $4, $5, $6, $7)";
const GET_SQL: &str = "SELECT doc FROM backfills WHERE id = $1";
const LIST_SQL: &str = "SELECT doc FROM backfills WHERE job_id = $1 ORDER BY created_at DESC, id DESC";
const DUE_SQL: &str = "SELECT doc FROM backfills WHERE state = 'running' AND next_step_at <= $1 \
    ORDER BY next_step_at, id LIMIT $2";
/// Advance the row (`$1` id) from position `$2` while it runs.
const ADVANCE_SQL: &str = "UPDATE backfills SET state = $3, next_step_at = $4, position = $5, doc = $6 \
    WHERE id = $1 AND position = $2 AND state = 'running'";
const CANCEL_SQL: &str = "UPDATE backfills SET state = 'cancelled', doc = $2 WHERE id = $1 AND state = 'running'";
/// The backfill's runs (`$1` job, `$2` key prefix pattern), by status.
const COUNT_RUNS_SQL: &str =
    "SELECT status, COUNT(*) FROM runs WHERE job_id = $1 AND idempotency_key LIKE $2 GROUP BY status";
const ACTIVE_RUNS_SQL: &str = "SELECT COUNT(*) FROM runs WHERE job_id = $1 AND status IN ('pending', 'running')";

fn micros(time: DateTime<Utc>) -> i64 {
    time.timestamp_micros()
}

fn encode(backfill: &Backfill) -> StoreResult<String> {
    serde_json::to_string(backfill).map_err(|err| StoreError::Corrupt(format!("backfill: {err}")))
}

fn decode(doc: &str) -> StoreResult<Backfill> {
    serde_json::from_str(doc).map_err(|err| StoreError::Corrupt(format!("backfill: {err}")))
}

impl<D: Dialect> SqlStore<D>
where
    for<'c> &'c mut Conn<D>: Executor<'c, Database = D::Db>,
    Args<D>: IntoArguments<D::Db>,
    (i64,): for<'r> FromRow<'r, DbRow<D>>,
    (String, i64): for<'r> FromRow<'r, DbRow<D>>,
    (String,): for<'r> FromRow<'r, DbRow<D>>,
{
    async fn counted(&self, backfill: Backfill) -> StoreResult<Backfill> {
        let pattern = format!("{}%", Backfill::key_prefix(&backfill.id));
        let params = [Param::Text(Some(&backfill.job_id)), Param::Text(Some(&pattern))];
        let mut connection = self.pool.acquire().await.map_err(store_error)?;
        let rows: Vec<(String, i64)> = sqlx::query_as_with(COUNT_RUNS_SQL, arguments::<D>(params)?)
            .fetch_all(&mut *connection)
            .await
            .map_err(store_error)?;
        let mut runs = RunCounts::default();
        for (status, n) in rows {
            let status = RunStatus::parse(&status).ok_or_else(|| StoreError::Corrupt(format!("status {status:?}")))?;
            runs.add(status, u64::try_from(n).unwrap_or(0));
        }
        Ok(Backfill { runs, ..backfill })
    }

    pub(super) async fn create_backfill_in(&self, backfill: &Backfill) -> StoreResult<()> {
        let doc = encode(backfill)?;
        let params = [
            Param::Text(Some(&backfill.id)),
            Param::Text(Some(&backfill.job_id)),
            Param::Text(Some(backfill.state.as_str())),
            Param::Int(Some(micros(backfill.next_step_at))),
            Param::Int(Some(backfill.position as i64)),
            Param::Int(Some(micros(backfill.created_at))),
            Param::Text(Some(&doc)),
        ];
        let _turn = self.turn().await;
        let mut connection = self.pool.acquire().await.map_err(store_error)?;
        match sqlx::query_with(INSERT_SQL, arguments::<D>(params)?).execute(&mut *connection).await {
            Ok(_) => Ok(()),
            Err(err) if is_unique_violation(&err) => {
                Err(StoreError::Conflict(format!("backfill {:?} exists", backfill.id)))
            }
            Err(err) => Err(store_error(err)),
        }
    }

    pub(super) async fn get_backfill_in(&self, id: &str) -> StoreResult<Option<Backfill>> {
        let mut connection = self.pool.acquire().await.map_err(store_error)?;
        let row: Option<(String,)> = sqlx::query_as_with(GET_SQL, arguments::<D>([Param::Text(Some(id))])?)
            .fetch_optional(&mut *connection)
            .await
            .map_err(store_error)?;
        drop(connection);
        match row {
            Some((doc,)) => Ok(Some(self.counted(decode(&doc)?).await?)),
            None => Ok(None),
        }
    }

    pub(super) async fn list_backfills_in(&self, job_id: &str) -> StoreResult<Vec<Backfill>> {
        let mut connection = self.pool.acquire().await.map_err(store_error)?;
        let rows: Vec<(String,)> = sqlx::query_as_with(LIST_SQL, arguments::<D>([Param::Text(Some(job_id))])?)
            .fetch_all(&mut *connection)
            .await
            .map_err(store_error)?;
        drop(connection);
        let mut found = Vec::with_capacity(rows.len());
        for (doc,) in rows {
            found.push(self.counted(decode(&doc)?).await?);
        }
        Ok(found)
    }

    pub(super) async fn cancel_backfill_in(&self, id: &str) -> StoreResult<Option<Backfill>> {
        let Some(mut backfill) = self.get_backfill_in(id).await? else { return Ok(None) };
        if backfill.state != BackfillState::Running {
            return Ok(Some(backfill));
        }
        let mut cancelled = backfill.clone();
        cancelled.state = BackfillState::Cancelled;
        let doc = encode(&cancelled)?;
        let params = [Param::Text(Some(id)), Param::Text(Some(&doc))];
        {
            let _turn = self.turn().await;
            let mut connection = self.pool.acquire().await.map_err(store_error)?;
            sqlx::query_with(CANCEL_SQL, arguments::<D>(params)?)
                .execute(&mut *connection)
                .await
                .map_err(store_error)?;
        }
        // Cancelled now, or finished by a step just before: read it as it is.
        if let Some(now) = self.get_backfill_in(id).await? {
            backfill = now;
        }
        Ok(Some(backfill))
    }

    pub(super) async fn due_backfills_in(&self, now: DateTime<Utc>, limit: usize) -> StoreResult<Vec<Backfill>> {
        let params = [Param::Int(Some(micros(now))), Param::Int(Some(i64::try_from(limit).unwrap_or(i64::MAX)))];
        let mut connection = self.pool.acquire().await.map_err(store_error)?;
        let rows: Vec<(String,)> = sqlx::query_as_with(DUE_SQL, arguments::<D>(params)?)
            .fetch_all(&mut *connection)
            .await
            .map_err(store_error)?;
        rows.iter().map(|(doc,)| decode(doc)).collect()
    }

    pub(super) async fn step_backfill_in(&self, step: &BackfillStep) -> StoreResult<StepOutcome> {
        let _turn = self.turn().await;
        let mut transaction = self.pool.begin_with(D::BEGIN_WRITE).await.map_err(store_error)?;
        // The row first, locked where the database locks rows: a replica stepping it waits here, then sees the
        // position moved and steps no further.
        let lock = format!("SELECT state, position FROM backfills WHERE id = $1{}", D::LOCK_ROWS);
        let current: Option<(String, i64)> =
            sqlx::query_as_with(sqlx::AssertSqlSafe(lock), arguments::<D>([Param::Text(Some(&step.backfill.id))])?)
                .fetch_optional(&mut *transaction)
                .await
                .map_err(store_error)?;
        let still = current.is_some_and(|(state, position)| {
            state == BackfillState::Running.as_str() && position == step.backfill.position as i64
        });
        if !still {
            transaction.rollback().await.map_err(store_error)?;
            return Ok(StepOutcome::Lost);
        }
        let mut outcome = StepOutcome::Finished;
        if let Some(run) = &step.run {
            let job = [Param::Text(Some(&run.job_id))];
            let (active,): (i64,) = sqlx::query_as_with(ACTIVE_RUNS_SQL, arguments::<D>(job)?)
                .fetch_one(&mut *transaction)
                .await
                .map_err(store_error)?;
            if active >= i64::from(step.max_instances) {
                transaction.rollback().await.map_err(store_error)?;
                return Ok(StepOutcome::Full);
            }
            let mut run = run.clone();
            as_stored::<D::Time>(&mut run);
            let inserted = D::insert_runs_unless_taken(&mut transaction, vec![run]).await?;
            outcome = match inserted.into_iter().next() {
                Some(run) => StepOutcome::Inserted(run),
                None => StepOutcome::Skipped,
            };
        }
        let backfill = advanced(step, outcome == StepOutcome::Skipped);
        let doc = encode(&backfill)?;
        let params = [
            Param::Text(Some(&backfill.id)),
            Param::Int(Some(step.backfill.position as i64)),
            Param::Text(Some(backfill.state.as_str())),
            Param::Int(Some(micros(backfill.next_step_at))),
            Param::Int(Some(backfill.position as i64)),
            Param::Text(Some(&doc)),
        ];
        let result = sqlx::query_with(ADVANCE_SQL, arguments::<D>(params)?)
            .execute(&mut *transaction)
            .await
            .map_err(store_error)?;
        if D::rows_affected(&result) == 0 {
            // Another process took this step, or the backfill was cancelled: the run goes back out with it.
            transaction.rollback().await.map_err(store_error)?;
            return Ok(StepOutcome::Lost);
        }
        transaction.commit().await.map_err(store_error)?;
        Ok(outcome)
    }
}
