//! What the SQL stores share, written once: `SqlStore<D>` is the `JobStore` of every SQL database, with the claim
//! algorithm, the row conversion, the run queries, leases and pruning. A `Dialect` holds only what differs: how
//! its columns hold times and JSON, the statements tuned to its indexes, how a claim takes its lock, the ledger's
//! batched writes, and how replicas hear of each other's changes. Adding a SQL store is one file: its dialect.
//!
//! The shared statements number their parameters (`$1`); SQLite reads such names by number as PostgreSQL does.

mod adds;
mod backfills;
mod health;
mod labels;
mod notifications;
mod rows;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::{Arguments, Database, Executor, FromRow, IntoArguments, Pool, Transaction};
use tokio::sync::{Mutex, MutexGuard};
use tokio_util::sync::CancellationToken;

pub use rows::NotificationRow;
pub use rows::{
    AuditRow, JobRow, JsonColumn, Micros, Param, RUN_PROGRESS_COLUMNS, Record, RunRow, TimeColumn, is_unique_violation,
    limit_of, narrow, run_params, run_progress_params, store_error, to_json_text,
};

use super::recorder::{Batcher, RunRecorder};
use super::{
    AuditEntryOf, CANCELLED, Edit, Edited, Editor, FirePlan, JobCursor, JobQuery, JobStore, JobWrite, Load, Planner,
    Prune, RunQuery, SUPERSEDED, StoreError, StoreResult,
};
use crate::audit::{AuditEntry, AuditQuery};
use crate::calendar::Calendar;
use crate::job::{Job, Run, RunStatus};
use crate::labels::Selector;
use rows::{job_params, models};

pub type DbRow<D> = <<D as Dialect>::Db as Database>::Row;
pub type Args<D> = <<D as Dialect>::Db as Database>::Arguments;
pub type Conn<D> = <<D as Dialect>::Db as Database>::Connection;
pub type QueryResult<D> = <<D as Dialect>::Db as Database>::QueryResult;

/// The columns of `runs` in table order, as `run_params` binds them.
macro_rules! run_columns {
    () => {
        "idempotency_key, job_id, scheduled_time, status, attempts, started_at, finished_at, http_status, \
         duration_ms, error, response_excerpt, action, executor, timezone, lease_expires_at, created_at, kind"
    };
}
pub(crate) use run_columns;

/// The columns of `jobs` in the order `job_params` binds them.
macro_rules! job_columns {
    () => {
        "id, name, trigger, action, coalesce, max_instances, misfire_grace_time, executor, jobstore, next_run_time, \
         paused, created_at, updated_at, labels, max_catchup_runs, overlap, auto_pause_after_failures, \
         stale_after_seconds, paused_reason, paused_until, notify"
    };
}
pub(crate) use job_columns;

/// An insert of every column of `jobs`, as `job_params` binds them, then `$tail`.
macro_rules! insert_job_sql {
    ($tail:literal) => {
        concat!(
            "INSERT INTO jobs (",
            job_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21)",
            $tail
        )
    };
}

/// Every column but created_at, which the replaced job keeps.
const REPLACE_JOB_SQL: &str = insert_job_sql!(
    " ON CONFLICT (id) DO UPDATE SET name = excluded.name, trigger = excluded.trigger, action = excluded.action, \
     coalesce = excluded.coalesce, max_instances = excluded.max_instances, \
     misfire_grace_time = excluded.misfire_grace_time, executor = excluded.executor, jobstore = excluded.jobstore, \
     next_run_time = excluded.next_run_time, paused = excluded.paused, updated_at = excluded.updated_at, \
     labels = excluded.labels, max_catchup_runs = excluded.max_catchup_runs, overlap = excluded.overlap, \
     auto_pause_after_failures = excluded.auto_pause_after_failures, \
     stale_after_seconds = excluded.stale_after_seconds, paused_reason = excluded.paused_reason, \
     paused_until = excluded.paused_until, notify = excluded.notify"
);
const UPDATE_JOB_SQL: &str = "UPDATE jobs SET name = $2, trigger = $3, action = $4, coalesce = $5, \
    max_instances = $6, misfire_grace_time = $7, executor = $8, jobstore = $9, next_run_time = $10, paused = $11, \
    created_at = $12, updated_at = $13, labels = $14, max_catchup_runs = $15, overlap = $16, \
    auto_pause_after_failures = $17, stale_after_seconds = $18, paused_reason = $19, paused_until = $20, notify = $21 \
    WHERE id = $1";
const INSERT_RUN_SQL: &str = concat!(
    "INSERT INTO runs (",
    run_columns!(),
    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)"
);
/// The oldest entries before `$1`, at most `$2` of them, from the `audit_newest` index.
const PRUNE_AUDIT_SQL: &str =
    "DELETE FROM audit WHERE id IN (SELECT id FROM audit WHERE recorded_at < $1 ORDER BY recorded_at LIMIT $2)";
/// Each job's finished runs beyond its newest `$1` by scheduled time, at most `$2` of them.
const PRUNE_BY_COUNT_SQL: &str = "DELETE FROM runs WHERE idempotency_key IN (SELECT idempotency_key FROM \
    (SELECT idempotency_key, ROW_NUMBER() OVER (PARTITION BY job_id ORDER BY scheduled_time DESC) AS newer \
    FROM runs WHERE status NOT IN ('pending', 'running') AND status <> 'buffered') AS ranked WHERE newer > $1 LIMIT $2)";
/// Is any fire buffered? (The `runs_buffered` index answers.) Most stores have none, and then promoting is one read.
const ANY_BUFFERED_SQL: &str = "SELECT idempotency_key FROM runs WHERE status = 'buffered' LIMIT 1";
/// A job's buffered fires (`$1`) recorded skipped at `$2` with the error `$3` (`FirePlan::supersede_buffered`).
const SUPERSEDE_BUFFERED_SQL: &str = "UPDATE runs SET status = 'skipped', finished_at = $2, error = $3 \
    WHERE job_id = $1 AND status = 'buffered' RETURNING *";
/// A job's (`$1`) oldest `$2` pending or running runs cancelled at `$3` with the error `$4`, lease cleared.
const CANCEL_OLDEST_SQL: &str = "UPDATE runs SET status = 'cancelled', finished_at = $3, error = $4, \
    lease_expires_at = NULL WHERE idempotency_key IN (SELECT idempotency_key FROM runs WHERE job_id = $1 \
    AND status IN ('pending', 'running') ORDER BY scheduled_time LIMIT $2) RETURNING *";
/// Each job's oldest buffered fires, as many as its max_instances (1 if the job is gone) exceeds its pending and
/// running runs, made pending with a lease until `$1`.
const PROMOTE_BUFFERED_SQL: &str = "UPDATE runs SET status = 'pending', lease_expires_at = $1 \
    WHERE idempotency_key IN (SELECT idempotency_key FROM (SELECT b.idempotency_key, \
    ROW_NUMBER() OVER (PARTITION BY b.job_id ORDER BY b.scheduled_time) AS place, \
    COALESCE(j.max_instances, 1) - (SELECT COUNT(*) FROM runs a WHERE a.job_id = b.job_id \
    AND a.status IN ('pending', 'running')) AS room \
    FROM runs b LEFT JOIN jobs j ON j.id = b.job_id WHERE b.status = 'buffered') AS queue WHERE place <= room) \
    RETURNING *";

/// Create or replace a calendar.
const PUT_CALENDAR_SQL: &str =
    "INSERT INTO calendars (id, calendar) VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET calendar = excluded.calendar";
/// Counts a change to the calendars.
const BUMP_CALENDAR_VERSION_SQL: &str = "UPDATE calendar_version SET version = version + 1";
/// Jobs whose trigger names a calendar: the key appears in the trigger's JSON text only when the list is not empty
/// (an empty one is not written), in either database's rendering. A scan, but one a calendar change makes, not a
/// fire.
const JOBS_WITH_CALENDARS_SQL: &str =
    "SELECT * FROM jobs WHERE CAST(trigger AS TEXT) LIKE '%\"exclude_calendars\"%' ORDER BY id";

/// What one SQL database does its own way. The statements' parameters are listed in their docs, in order.
#[async_trait]
pub trait Dialect: Clone + fmt::Debug + Send + Sync + 'static {
    type Db: Database + sqlx::database::HasStatementCache;
    /// How its columns hold a time.
    type Time: TimeColumn + Send + Unpin;
    /// How its columns hold a JSON document.
    type Json: JsonColumn + Send + Unpin;
    type JobRow: for<'r> FromRow<'r, DbRow<Self>> + Record<Model = Job> + Send + Unpin;
    type RunRow: for<'r> FromRow<'r, DbRow<Self>> + Record<Model = Run> + Send + Unpin;
    type AuditRow: for<'r> FromRow<'r, DbRow<Self>> + Record<Model = AuditEntry> + Send + Unpin;
    type NotificationRow: for<'r> FromRow<'r, DbRow<Self>>
        + Record<Model = crate::notify::ledger::Notification>
        + Send
        + Unpin;

    /// Which store this dialect makes (PostgreSQL may be shared by replicas; SQLite belongs to one process).
    const KIND: super::StoreType;
    /// The list order's key, verbatim as in the `jobs_list_order` index so the database uses it.
    const LIST_ORDER_KEY: &'static str;
    /// The earliest next_run_time of an unpaused job, from the `jobs_due` index.
    const EARLIEST_NEXT_RUN_TIME_SQL: &'static str;
    /// The claim's jobs: unpaused, due at now (`$1`), earliest first, at most `$2`.
    const CLAIM_DUE_SQL: &'static str;
    /// (job id, how many of its runs are pending or running, how many are buffered) of the jobs whose ids are `$1`
    /// (`Param::Keys`), for those that have any.
    const LOAD_SQL: &'static str;
    /// The keys among `$1` (`Param::Keys`) whose run was cancelled.
    const CANCELLED_AMONG_SQL: &'static str;
    /// (key, status) of the runs among `$1` (`Param::Keys`).
    const RUN_STATUSES_SQL: &'static str;
    /// (id, consecutive failures, whether it has its own `notify`) of the jobs among `$1` (`Param::Keys`).
    const JOB_HEALTH_SQL: &'static str;
    /// Lock the jobs that have buffered fires, so that promoting them and claiming them take turns; `None` where a
    /// write transaction excludes the others already.
    const LOCK_BUFFERED_JOBS_SQL: Option<&'static str>;
    /// Delete the jobs whose ids are `$1` (`Param::Keys`).
    const DELETE_JOBS_SQL: &'static str;
    /// Lease until `$1` every unfinished run whose lease expired before `$2` (or that has none), returning them;
    /// one statement, so that two takers cannot both take a run.
    const TAKE_EXPIRED_RUNS_SQL: &'static str;
    /// Lease until `$1` the unfinished runs whose idempotency keys are `$2` (`Param::Keys`).
    const EXTEND_LEASES_SQL: &'static str;
    /// Delete finished runs whose `finished_at` (else `created_at`) is before `$1`, at most `$2` of them.
    const PRUNE_BY_AGE_SQL: &'static str;
    /// How a transaction that reads before it writes begins.
    const BEGIN_WRITE: &'static str;
    /// How the claim's and the recorder's transactions begin: every row they touch is found by a key or in the
    /// order of an index, so a plan that scans a whole table is never the right one for them.
    const BEGIN_BY_KEY: &'static str;
    /// Appended to a select whose rows the transaction will write, to keep other writers off them until it ends
    /// (empty where `BEGIN_WRITE` already holds the whole database).
    const LOCK_ROWS: &'static str;

    fn bind(arguments: &mut Args<Self>, param: Param<'_, Self::Json>) -> StoreResult<()>;
    fn rows_affected(result: &QueryResult<Self>) -> u64;
    /// Where the writers of a single-writer database take turns; `None` where writers proceed side by side.
    fn writer(&self) -> Option<&Mutex<()>>;
    /// Appends the condition "strictly after `cursor` in list order" to a job list.
    fn push_after(statement: &mut Statement<Self>, cursor: &JobCursor) -> StoreResult<()>;

    /// Open a claim's transaction, holding what keeps other claimers off its jobs; `None` when nothing is due at
    /// `now` and there is nothing to claim.
    async fn begin_claim(&self, pool: &Pool<Self::Db>, now: DateTime<Utc>) -> StoreResult<Option<Claim<'_, Self>>>;
    /// End a claim that took no job (its limit was 0, or another claimer holds the due ones).
    async fn end_empty_claim(
        &self,
        pool: &Pool<Self::Db>,
        claim: Claim<'_, Self>,
        now: DateTime<Utc>,
        limit: usize,
    ) -> StoreResult<()>;
    /// Bring the schema up to date (`migrations/<dialect>/`).
    async fn migrate(pool: &Pool<Self::Db>) -> StoreResult<()>;
    /// Save the progress of every run in `runs` (the recorder's batch; see `Run::take_progress`), each found by its
    /// key and its fire, as the memory store finds it; the keys of the runs found.
    /// The caller holds the writer's turn (`writer`).
    async fn save_runs(&self, connection: &mut Conn<Self>, runs: &[Run]) -> StoreResult<HashSet<String>>;
    /// Insert `runs` unless their fire is in the ledger already; those inserted, in order (a fire planned twice
    /// goes in, and is returned, once).
    async fn insert_runs_unless_taken(connection: &mut Conn<Self>, runs: Vec<Run>) -> StoreResult<Vec<Run>>;
    /// Set each job's next run time; `None` parks it.
    async fn advance_jobs(connection: &mut Conn<Self>, jobs: &[(String, Option<DateTime<Utc>>)]) -> StoreResult<()>;

    /// See `JobStore::watch_changes`; a database only this process writes to has nothing to watch.
    async fn watch_changes(&self, stop: CancellationToken, wake: Arc<dyn Fn() + Send + Sync>) {
        let _ = (stop, wake);
    }
}

/// A claim in progress: its transaction and, on a single-writer database, the writer's turn, held to the end.
pub struct Claim<'a, D: Dialect> {
    pub transaction: Transaction<'static, D::Db>,
    pub turn: Option<MutexGuard<'a, ()>>,
}

/// A statement built a piece at a time, each parameter's placeholder written as its database spells it.
pub struct Statement<D: Dialect> {
    pub sql: String,
    pub arguments: Args<D>,
}

impl<D: Dialect> Statement<D> {
    pub fn new(sql: impl Into<String>) -> Statement<D> {
        Statement { sql: sql.into(), arguments: Args::<D>::default() }
    }

    pub fn push(&mut self, sql: &str) -> &mut Self {
        self.sql.push_str(sql);
        self
    }

    pub fn param(&mut self, param: Param<'_, D::Json>) -> StoreResult<&mut Self> {
        D::bind(&mut self.arguments, param)?;
        // The placeholder names the parameter just added (`$3`), or is `?`. Writing to a String cannot fail.
        let _ = self.arguments.format_placeholder(&mut self.sql);
        Ok(self)
    }
}

/// The arguments of a statement whose placeholders are written in.
pub fn arguments<'a, D: Dialect>(params: impl IntoIterator<Item = Param<'a, D::Json>>) -> StoreResult<Args<D>> {
    let mut arguments = Args::<D>::default();
    for param in params {
        D::bind(&mut arguments, param)?;
    }
    Ok(arguments)
}

/// `prefix` is empty, or `EXPLAIN …` for the tests that check an index serves the query.
pub fn list_jobs_statement<D: Dialect>(prefix: &str, query: &JobQuery) -> StoreResult<Statement<D>> {
    let mut sql = Statement::new(format!("{prefix}SELECT * FROM jobs WHERE TRUE"));
    if let Some(paused) = query.paused {
        sql.push(" AND paused = ").param(Param::Bool(paused))?;
    }
    labels::push_selector(&mut sql, &query.selector)?;
    if let Some(state) = query.health {
        health::push_health_filter(&mut sql, state)?;
    }
    if let Some(cursor) = &query.after {
        D::push_after(&mut sql, cursor)?;
    }
    sql.push(&format!(" ORDER BY {}, id LIMIT ", D::LIST_ORDER_KEY)).param(Param::Int(Some(limit_of(query.limit))))?;
    Ok(sql)
}

pub fn list_runs_statement<D: Dialect>(prefix: &str, job_id: &str, query: &RunQuery) -> StoreResult<Statement<D>> {
    let mut sql = Statement::new(format!("{prefix}SELECT * FROM runs WHERE job_id = "));
    sql.param(Param::Text(Some(job_id)))?;
    if let Some(status) = query.status {
        sql.push(" AND status = ").param(Param::Text(Some(status.as_str())))?;
        // The `runs_by_status` index's condition, repeated as it is written there: a database proves it from that
        // (SQLite from nothing else), not from a status that is a parameter.
        if !matches!(status, RunStatus::Pending | RunStatus::Running | RunStatus::Succeeded | RunStatus::Buffered) {
            sql.push(" AND status NOT IN ('pending', 'running', 'succeeded', 'buffered')");
        }
    }
    if let Some(cursor) = &query.after {
        sql.push(" AND (scheduled_time, idempotency_key) < (").param(Param::Time(Some(cursor.scheduled_time)))?;
        sql.push(", ").param(Param::Text(Some(&cursor.idempotency_key)))?.push(")");
    }
    // A job has one run per scheduled time, so the time alone orders its history.
    sql.push(" ORDER BY scheduled_time DESC LIMIT ").param(Param::Int(Some(limit_of(query.limit))))?;
    Ok(sql)
}

/// The audit newest first, filtered; `prefix` as for `list_jobs_statement`.
pub fn list_audit_statement<D: Dialect>(prefix: &str, query: &AuditQuery) -> StoreResult<Statement<D>> {
    let mut sql = Statement::new(format!("{prefix}SELECT * FROM audit WHERE TRUE"));
    if let Some(job_id) = &query.job_id {
        sql.push(" AND job_id = ").param(Param::Text(Some(job_id)))?;
    }
    if let Some(since) = query.since {
        sql.push(" AND recorded_at >= ").param(Param::Time(Some(since)))?;
    }
    if let Some(actor) = &query.actor {
        sql.push(" AND actor = ").param(Param::Text(Some(actor)))?;
    }
    if let Some(action) = query.action {
        sql.push(" AND action = ").param(Param::Text(Some(action.as_str())))?;
    }
    if let Some(cursor) = &query.after {
        sql.push(" AND (recorded_at, id) < (").param(Param::Time(Some(cursor.time)))?;
        sql.push(", ").param(Param::Text(Some(&cursor.id)))?.push(")");
    }
    sql.push(" ORDER BY recorded_at DESC, id DESC LIMIT ").param(Param::Int(Some(limit_of(query.limit))))?;
    Ok(sql)
}

/// Each of the run's times as its store will hold it, so that what a claim returns equals what the ledger holds.
fn as_stored<Time: TimeColumn>(run: &mut Run) {
    run.scheduled_time = Time::stored(run.scheduled_time);
    run.started_at = run.started_at.map(Time::stored);
    run.finished_at = run.finished_at.map(Time::stored);
    run.lease_expires_at = run.lease_expires_at.map(Time::stored);
    run.created_at = Time::stored(run.created_at);
}

fn run_conflict(run: &Run) -> StoreError {
    StoreError::Conflict(format!(
        "a run of {:?} at {} (or key {:?}) exists",
        run.job_id, run.scheduled_time, run.idempotency_key
    ))
}

/// A job store over a SQL database; `D` says which (`SqliteStore`, `PostgresStore`).
#[derive(Debug)]
pub struct SqlStore<D: Dialect> {
    pub(in crate::store) pool: Pool<D::Db>,
    pub(in crate::store) dialect: D,
    /// `update_run` hands its run to the recorder, which writes all waiting ones in one statement.
    recorder: RunRecorder,
    /// New jobs (adds that replace nothing) go in many a transaction.
    adds: Batcher<adds::NewJob, StoreResult<()>>,
    /// `[notify]`, for the jobs without their own `notify`.
    notify_default: crate::notify::DefaultSpec,
}

/// By hand: a derive would ask that the database type itself be `Clone`.
impl<D: Dialect> Clone for SqlStore<D> {
    fn clone(&self) -> Self {
        SqlStore {
            pool: self.pool.clone(),
            dialect: self.dialect.clone(),
            recorder: self.recorder.clone(),
            adds: self.adds.clone(),
            notify_default: self.notify_default.clone(),
        }
    }
}

impl<D: Dialect> SqlStore<D> {
    /// The store over `pool`, migrated.
    pub(in crate::store) async fn start(pool: Pool<D::Db>, dialect: D) -> StoreResult<SqlStore<D>>
    where
        for<'c> &'c mut Conn<D>: Executor<'c, Database = D::Db>,
        Args<D>: IntoArguments<D::Db>,
        (String,): for<'r> FromRow<'r, DbRow<D>>,
        (String, String): for<'r> FromRow<'r, DbRow<D>>,
        (String, i64, bool): for<'r> FromRow<'r, DbRow<D>>,
    {
        let notify_default = crate::notify::DefaultSpec::default();
        let recorder = {
            let (pool, dialect, notify_default) = (pool.clone(), Arc::new(dialect.clone()), notify_default.clone());
            RunRecorder::spawn(move |runs| {
                let (pool, dialect, default) = (pool.clone(), dialect.clone(), notify_default.get());
                async move { health::save_runs(&pool, &*dialect, &runs, default.as_ref()).await }
            })
        };
        let adds = {
            // Where writers proceed side by side, a few batches commit at once (PostgreSQL's adds wait on commits,
            // not on CPU); on a single-writer database they would only queue for its turn.
            let parallel = if dialect.writer().is_some() { 1 } else { adds::PARALLEL_BATCHES };
            let (pool, dialect) = (pool.clone(), Arc::new(dialect.clone()));
            Batcher::spawn(adds::BATCH, parallel, move |batch| {
                let (pool, dialect) = (pool.clone(), dialect.clone());
                async move { adds::insert_new_jobs(&pool, &*dialect, batch).await }
            })
        };
        let store = SqlStore { pool, dialect, recorder, adds, notify_default };
        store.migrate().await?;
        Ok(store)
    }

    /// Bring the schema up to date; opening the store already does, so a fresh database just works.
    pub async fn migrate(&self) -> StoreResult<()> {
        D::migrate(&self.pool).await
    }

    /// Close the pool, waiting for connections in use.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Insert `job`, whose id is not taken (else `Conflict`), with the adds waiting beside it.
    async fn insert_new_job(&self, job: &Job, audit: Option<AuditEntry>) -> StoreResult<()> {
        let add = adds::NewJob { job: job.clone(), audit };
        self.adds.submit(add).await.unwrap_or_else(|| Err(StoreError::Unavailable("the job writer has stopped".into())))
    }

    /// The writer's turn, on a single-writer database.
    async fn turn(&self) -> Option<MutexGuard<'_, ()>> {
        match self.dialect.writer() {
            Some(writer) => Some(writer.lock().await),
            None => None,
        }
    }
}

/// The bounds are what sqlx gives every database it drives but cannot state once for all (an executor on the
/// pool and connections, and the rows this code decodes beyond the dialect's own).
#[async_trait]
impl<D: Dialect> JobStore for SqlStore<D>
where
    for<'c> &'c mut Conn<D>: Executor<'c, Database = D::Db>,
    Args<D>: IntoArguments<D::Db>,
    (i64,): for<'r> FromRow<'r, DbRow<D>>,
    (D::Time,): for<'r> FromRow<'r, DbRow<D>>,
    (String, i64): for<'r> FromRow<'r, DbRow<D>>,
    (String, i64, i64): for<'r> FromRow<'r, DbRow<D>>,
    (String,): for<'r> FromRow<'r, DbRow<D>>,
    (D::Json,): for<'r> FromRow<'r, DbRow<D>>,
    (Option<D::Time>, Option<D::Time>): for<'r> FromRow<'r, DbRow<D>>,
{
    fn kind(&self) -> super::StoreType {
        D::KIND
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await.map_err(store_error)?;
        Ok(())
    }

    async fn add_job(&self, job: &Job, replace_existing: bool) -> StoreResult<()> {
        if !replace_existing {
            return self.insert_new_job(job, None).await;
        }
        let arguments = arguments::<D>(job_params(job)?)?;
        let _turn = self.turn().await;
        let mut transaction = self.pool.begin_with(D::BEGIN_WRITE).await.map_err(store_error)?;
        if let Err(err) = sqlx::query_with(REPLACE_JOB_SQL, arguments).execute(&mut *transaction).await {
            transaction.rollback().await.map_err(store_error)?;
            return Err(store_error(err));
        }
        labels::write_labels::<D>(&mut transaction, &[job]).await?;
        transaction.commit().await.map_err(store_error)
    }

    async fn update_job(&self, job: &Job) -> StoreResult<()> {
        let arguments = arguments::<D>(job_params(job)?)?;
        let _turn = self.turn().await;
        let mut transaction = self.pool.begin_with(D::BEGIN_WRITE).await.map_err(store_error)?;
        let result =
            sqlx::query_with(UPDATE_JOB_SQL, arguments).execute(&mut *transaction).await.map_err(store_error)?;
        if D::rows_affected(&result) == 0 {
            // Explicitly: a dropped transaction rolls back only when its connection is next used, and holds its
            // locks until then.
            transaction.rollback().await.map_err(store_error)?;
            return Err(StoreError::NotFound);
        }
        labels::write_labels::<D>(&mut transaction, &[job]).await?;
        transaction.commit().await.map_err(store_error)
    }

    async fn get_job(&self, id: &str) -> StoreResult<Option<Job>> {
        let arguments = arguments::<D>([Param::Text(Some(id))])?;
        let row: Option<D::JobRow> = sqlx::query_as_with("SELECT * FROM jobs WHERE id = $1", arguments)
            .fetch_optional(&self.pool)
            .await
            .map_err(store_error)?;
        row.map(Record::into_model).transpose()
    }

    async fn remove_job(&self, id: &str) -> StoreResult<bool> {
        let arguments = arguments::<D>([Param::Text(Some(id))])?;
        let _turn = self.turn().await;
        let result = sqlx::query_with("DELETE FROM jobs WHERE id = $1", arguments)
            .execute(&self.pool)
            .await
            .map_err(store_error)?;
        Ok(D::rows_affected(&result) > 0)
    }

    async fn remove_all_jobs(&self) -> StoreResult<u64> {
        let _turn = self.turn().await;
        let result = sqlx::query("DELETE FROM jobs").execute(&self.pool).await.map_err(store_error)?;
        Ok(D::rows_affected(&result))
    }

    async fn remove_jobs(&self, selector: &Selector) -> StoreResult<u64> {
        let mut sql = Statement::<D>::new("DELETE FROM jobs WHERE TRUE");
        labels::push_selector(&mut sql, selector)?;
        let _turn = self.turn().await;
        let mut connection = self.pool.acquire().await.map_err(store_error)?;
        labels::execute::<D>(&mut connection, sql).await
    }

    async fn modify_jobs(&self, selector: &Selector, edit: &Editor<'_>) -> StoreResult<Edited> {
        let _turn = self.turn().await;
        let mut transaction = self.pool.begin_with(D::BEGIN_WRITE).await.map_err(store_error)?;
        // The selection is made once, its rows locked until the end: a selector's condition is answered from an
        // index as a whole, and asking it again for every batch cost more than the changes themselves.
        let mut select = Statement::<D>::new("SELECT id FROM jobs WHERE TRUE");
        labels::push_selector(&mut select, selector)?;
        select.push(" ORDER BY id").push(D::LOCK_ROWS);
        let ids: Vec<String> = sqlx::query_scalar_with(sqlx::AssertSqlSafe(select.sql), select.arguments)
            .persistent(false)
            .fetch_all(&mut *transaction)
            .await
            .map_err(store_error)?;
        let mut edited = Edited::default();
        // A batch at a time, so memory holds one batch however many jobs match.
        for batch in ids.chunks(labels::JOBS_PER_STATEMENT) {
            let mut sql = Statement::<D>::new("SELECT * FROM jobs WHERE id IN (");
            for (index, id) in batch.iter().enumerate() {
                if index > 0 {
                    sql.push(", ");
                }
                sql.param(Param::Text(Some(id)))?;
            }
            sql.push(")");
            let rows: Vec<D::JobRow> = sqlx::query_as_with(sqlx::AssertSqlSafe(sql.sql), sql.arguments)
                .persistent(false)
                .fetch_all(&mut *transaction)
                .await
                .map_err(store_error)?;
            let (mut saved, mut relabelled, mut removed) = (Vec::new(), Vec::new(), Vec::new());
            for row in rows {
                let job = row.into_model()?;
                let (id, labels_before) = (job.id.clone(), job.labels.clone());
                match edit(job)? {
                    Edit::Save(job) => {
                        if job.labels != labels_before {
                            relabelled.push(saved.len());
                        }
                        saved.push(job);
                    }
                    Edit::Remove => removed.push(id),
                }
            }
            labels::save_jobs::<D>(&mut transaction, &saved).await?;
            let relabelled: Vec<&Job> = relabelled.into_iter().map(|index| &saved[index]).collect();
            labels::write_labels::<D>(&mut transaction, &relabelled).await?;
            if !removed.is_empty() {
                let ids = Param::Keys(removed.iter().map(String::as_str).collect());
                sqlx::query_with(D::DELETE_JOBS_SQL, arguments::<D>([ids])?)
                    .execute(&mut *transaction)
                    .await
                    .map_err(store_error)?;
            }
            edited.saved += saved.len() as u64;
            edited.removed += removed.len() as u64;
        }
        transaction.commit().await.map_err(store_error)?;
        Ok(edited)
    }

    async fn list_jobs(&self, query: &JobQuery) -> StoreResult<Vec<Job>> {
        let Statement { sql, arguments } = list_jobs_statement::<D>("", query)?;
        let rows: Vec<D::JobRow> = sqlx::query_as_with(sqlx::AssertSqlSafe(sql), arguments)
            // A selector's statement is shaped by its requirements: not worth keeping prepared.
            .persistent(query.selector.is_empty())
            .fetch_all(&self.pool)
            .await
            .map_err(store_error)?;
        models(rows)
    }

    async fn count_jobs(&self) -> StoreResult<u64> {
        let count: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM jobs").fetch_one(&self.pool).await.map_err(store_error)?;
        narrow(count, "job count")
    }

    async fn earliest_next_run_time(&self) -> StoreResult<Option<DateTime<Utc>>> {
        let earliest: Option<D::Time> =
            sqlx::query_scalar(D::EARLIEST_NEXT_RUN_TIME_SQL).fetch_optional(&self.pool).await.map_err(store_error)?;
        earliest.map(|time| time.into_time("next_run_time")).transpose()
    }

    async fn claim_due(
        &self,
        now: DateTime<Utc>,
        limit: usize,
        lease_until: DateTime<Utc>,
        planner: &dyn Planner,
    ) -> StoreResult<Vec<Run>> {
        let (now, lease_until) = (D::Time::stored(now), D::Time::stored(lease_until));
        let Some(mut claim) = self.dialect.begin_claim(&self.pool, now).await? else {
            return Ok(Vec::new());
        };
        let due: Vec<D::JobRow> = sqlx::query_as_with(
            D::CLAIM_DUE_SQL,
            arguments::<D>([Param::Time(Some(now)), Param::Int(Some(limit_of(limit)))])?,
        )
        .fetch_all(&mut *claim.transaction)
        .await
        .map_err(store_error)?;
        if due.is_empty() {
            self.dialect.end_empty_claim(&self.pool, claim, now, limit).await?;
            return Ok(Vec::new());
        }

        let mut jobs = Vec::with_capacity(due.len());
        let mut advanced = Vec::with_capacity(due.len());
        for row in due {
            let id = row.key().to_string();
            match row.into_model() {
                Ok(job) => jobs.push(job),
                Err(err) => {
                    // A row that cannot be read can never be planned; left due, it would hold the head of every
                    // claim and wake the scheduler in a loop. Park it (no next run time) and leave it for a person.
                    tracing::error!(job_id = %id, error = %err, "unreadable job parked: next_run_time cleared");
                    advanced.push((id, None));
                }
            }
        }
        let loads: HashMap<String, Load> = if jobs.is_empty() {
            HashMap::new()
        } else {
            let ids = Param::Keys(jobs.iter().map(|job| job.id.as_str()).collect());
            let rows: Vec<(String, i64, i64)> = sqlx::query_as_with(D::LOAD_SQL, arguments::<D>([ids])?)
                .fetch_all(&mut *claim.transaction)
                .await
                .map_err(store_error)?;
            let count = |n: i64| u32::try_from(n).unwrap_or(u32::MAX);
            rows.into_iter()
                .map(|(id, active, buffered)| (id, Load { active: count(active), buffered: count(buffered) }))
                .collect()
        };
        let mut planned = Vec::new();
        let mut finished = Vec::new();
        let mut changed: Vec<Run> = Vec::new();
        let default = self.notify_default.get();
        for job in &jobs {
            let plan = planner.plan(job, loads.get(&job.id).copied().unwrap_or_default(), now);
            // Before the new rows go in, so a cancel takes only runs that were there before.
            if plan.supersede_buffered {
                let arguments = arguments::<D>([
                    Param::Text(Some(&job.id)),
                    Param::Time(Some(now)),
                    Param::Text(Some(SUPERSEDED)),
                ])?;
                let rows: Vec<D::RunRow> = sqlx::query_as_with(SUPERSEDE_BUFFERED_SQL, arguments)
                    .fetch_all(&mut *claim.transaction)
                    .await
                    .map_err(store_error)?;
                changed.extend(models(rows)?);
            }
            if plan.cancel_oldest > 0 {
                let arguments = arguments::<D>([
                    Param::Text(Some(&job.id)),
                    Param::Int(Some(i64::from(plan.cancel_oldest))),
                    Param::Time(Some(now)),
                    Param::Text(Some(CANCELLED)),
                ])?;
                let rows: Vec<D::RunRow> = sqlx::query_as_with(CANCEL_OLDEST_SQL, arguments)
                    .fetch_all(&mut *claim.transaction)
                    .await
                    .map_err(store_error)?;
                changed.extend(models(rows)?);
            }
            let FirePlan { runs, next_run_time, .. } = plan;
            let removed = crate::notify::keep_removed_job(job, next_run_time, default.as_ref());
            for mut run in runs {
                if run.status.is_unfinished() {
                    run.lease_expires_at = Some(lease_until);
                    run.removed_job = removed.clone();
                }
                as_stored::<D::Time>(&mut run);
                planned.push(run);
            }
            match next_run_time {
                Some(next) => advanced.push((job.id.clone(), Some(next))),
                None => finished.push(job.id.as_str()),
            }
        }
        // Every inserted run, in plan order: the scheduler delivers the pending ones and reports the rest.
        let inserted = if planned.is_empty() {
            Vec::new()
        } else {
            D::insert_runs_unless_taken(&mut claim.transaction, planned).await?
        };
        let missed: Vec<_> = inserted
            .iter()
            .filter_map(|run| {
                let job = jobs.iter().find(|job| job.id == run.job_id)?;
                crate::notify::for_missed(job, run, default.as_ref())
            })
            .collect();
        health::insert_notifications::<D>(&mut claim.transaction, &missed).await?;
        if !advanced.is_empty() {
            D::advance_jobs(&mut claim.transaction, &advanced).await?;
        }
        if !finished.is_empty() {
            sqlx::query_with(D::DELETE_JOBS_SQL, arguments::<D>([Param::Keys(finished)])?)
                .execute(&mut *claim.transaction)
                .await
                .map_err(store_error)?;
        }
        claim.transaction.commit().await.map_err(store_error)?;
        changed.sort_by(|a, b| (a.scheduled_time, &a.job_id).cmp(&(b.scheduled_time, &b.job_id)));
        changed.extend(inserted);
        Ok(changed)
    }

    async fn promote_buffered(&self, lease_until: DateTime<Utc>) -> StoreResult<Vec<Run>> {
        let any: Option<(String,)> =
            sqlx::query_as(ANY_BUFFERED_SQL).fetch_optional(&self.pool).await.map_err(store_error)?;
        if any.is_none() {
            return Ok(Vec::new());
        }
        let lease_until = D::Time::stored(lease_until);
        let _turn = self.turn().await;
        let mut transaction = self.pool.begin_with(D::BEGIN_WRITE).await.map_err(store_error)?;
        if let Some(lock) = D::LOCK_BUFFERED_JOBS_SQL {
            sqlx::query(lock).execute(&mut *transaction).await.map_err(store_error)?;
        }
        let rows: Vec<D::RunRow> =
            sqlx::query_as_with(PROMOTE_BUFFERED_SQL, arguments::<D>([Param::Time(Some(lease_until))])?)
                .fetch_all(&mut *transaction)
                .await
                .map_err(store_error)?;
        transaction.commit().await.map_err(store_error)?;
        let mut runs = models(rows)?;
        runs.sort_by(|a, b| (a.scheduled_time, &a.job_id).cmp(&(b.scheduled_time, &b.job_id)));
        Ok(runs)
    }

    async fn insert_run(&self, run: &Run) -> StoreResult<()> {
        let arguments = arguments::<D>(run_params(run)?)?;
        let _turn = self.turn().await;
        match sqlx::query_with(INSERT_RUN_SQL, arguments).execute(&self.pool).await {
            Ok(_) => Ok(()),
            Err(err) if is_unique_violation(&err) => Err(run_conflict(run)),
            Err(err) => Err(store_error(err)),
        }
    }

    async fn update_run(&self, run: &Run) -> StoreResult<()> {
        self.recorder.record(run).await
    }

    async fn take_expired_runs(&self, now: DateTime<Utc>, lease_until: DateTime<Utc>) -> StoreResult<Vec<Run>> {
        let arguments = arguments::<D>([Param::Time(Some(lease_until)), Param::Time(Some(now))])?;
        let _turn = self.turn().await;
        let rows: Vec<D::RunRow> = sqlx::query_as_with(D::TAKE_EXPIRED_RUNS_SQL, arguments)
            .fetch_all(&self.pool)
            .await
            .map_err(store_error)?;
        let mut runs = models(rows)?;
        // RETURNING has no order; hand them back oldest fire first, as they are due.
        runs.sort_by(|a, b| (a.scheduled_time, &a.job_id).cmp(&(b.scheduled_time, &b.job_id)));
        Ok(runs)
    }

    async fn extend_leases(&self, idempotency_keys: &[String], lease_until: DateTime<Utc>) -> StoreResult<Vec<String>> {
        if idempotency_keys.is_empty() {
            return Ok(Vec::new());
        }
        let keys = || Param::Keys(idempotency_keys.iter().map(String::as_str).collect());
        {
            let extend = arguments::<D>([Param::Time(Some(lease_until)), keys()])?;
            let _turn = self.turn().await;
            sqlx::query_with(D::EXTEND_LEASES_SQL, extend).execute(&self.pool).await.map_err(store_error)?;
        }
        let cancelled: Vec<(String,)> = sqlx::query_as_with(D::CANCELLED_AMONG_SQL, arguments::<D>([keys()])?)
            .fetch_all(&self.pool)
            .await
            .map_err(store_error)?;
        Ok(cancelled.into_iter().map(|(key,)| key).collect())
    }

    async fn list_runs(&self, job_id: &str, query: &RunQuery) -> StoreResult<Vec<Run>> {
        let Statement { sql, arguments } = list_runs_statement::<D>("", job_id, query)?;
        let rows: Vec<D::RunRow> = sqlx::query_as_with(sqlx::AssertSqlSafe(sql), arguments)
            .fetch_all(&self.pool)
            .await
            .map_err(store_error)?;
        models(rows)
    }

    async fn prune_runs(&self, prune: &Prune) -> StoreResult<u64> {
        let mut left = limit_of(prune.limit);
        if left == 0 || (prune.finished_before.is_none() && prune.keep_per_job.is_none()) {
            return Ok(0);
        }
        let _turn = self.turn().await;
        let mut transaction = self.pool.begin_with(D::BEGIN_WRITE).await.map_err(store_error)?;
        let mut deleted = 0;
        if let Some(cutoff) = prune.finished_before {
            let arguments = arguments::<D>([Param::Time(Some(cutoff)), Param::Int(Some(left))])?;
            let result = sqlx::query_with(D::PRUNE_BY_AGE_SQL, arguments)
                .execute(&mut *transaction)
                .await
                .map_err(store_error)?;
            deleted += D::rows_affected(&result);
            left -= i64::try_from(D::rows_affected(&result)).unwrap_or(left);
        }
        if let Some(keep) = prune.keep_per_job
            && left > 0
        {
            let keep = i64::try_from(keep).unwrap_or(i64::MAX);
            let arguments = arguments::<D>([Param::Int(Some(keep)), Param::Int(Some(left))])?;
            let result = sqlx::query_with(PRUNE_BY_COUNT_SQL, arguments)
                .execute(&mut *transaction)
                .await
                .map_err(store_error)?;
            deleted += D::rows_affected(&result);
        }
        transaction.commit().await.map_err(store_error)?;
        Ok(deleted)
    }

    async fn write_audited(&self, write: JobWrite<'_>, audit: Option<AuditEntryOf<'_>>) -> StoreResult<Vec<Job>> {
        // The statements of the plain operations, so a column added to them is written here too.
        if let JobWrite::Add { job, replace_existing: false } = write {
            // A new job is stored as it is given.
            self.insert_new_job(job, audit.map(|audit| audit(job))).await?;
            return Ok(vec![job.clone()]);
        }
        let returning = |sql: &str| sqlx::AssertSqlSafe(format!("{sql} RETURNING *"));
        let _turn = self.turn().await;
        let mut transaction = self.pool.begin_with(D::BEGIN_WRITE).await.map_err(store_error)?;
        let rows: Vec<D::JobRow> = match write {
            // A replacement (new jobs went in above).
            JobWrite::Add { job, .. } => {
                match sqlx::query_as_with(returning(REPLACE_JOB_SQL), arguments::<D>(job_params(job)?)?)
                    .fetch_all(&mut *transaction)
                    .await
                {
                    Ok(rows) => rows,
                    Err(err) => {
                        transaction.rollback().await.map_err(store_error)?;
                        return Err(store_error(err));
                    }
                }
            }
            JobWrite::Update(job) => {
                let rows: Vec<D::JobRow> =
                    sqlx::query_as_with(returning(UPDATE_JOB_SQL), arguments::<D>(job_params(job)?)?)
                        .fetch_all(&mut *transaction)
                        .await
                        .map_err(store_error)?;
                if rows.is_empty() {
                    transaction.rollback().await.map_err(store_error)?;
                    return Err(StoreError::NotFound);
                }
                rows
            }
            JobWrite::Remove(id) => sqlx::query_as_with(
                "DELETE FROM jobs WHERE id = $1 RETURNING *",
                arguments::<D>([Param::Text(Some(id))])?,
            )
            .fetch_all(&mut *transaction)
            .await
            .map_err(store_error)?,
            JobWrite::RemoveAll => sqlx::query_as("DELETE FROM jobs RETURNING *")
                .fetch_all(&mut *transaction)
                .await
                .map_err(store_error)?,
            JobWrite::InsertRun { run, .. } => {
                match sqlx::query_with(INSERT_RUN_SQL, arguments::<D>(run_params(run)?)?)
                    .execute(&mut *transaction)
                    .await
                {
                    Ok(_) => Vec::new(),
                    Err(err) if is_unique_violation(&err) => return Err(run_conflict(run)),
                    Err(err) => return Err(store_error(err)),
                }
            }
        };
        // The label index follows every job written (removed jobs' rows go with them: by SQLite's foreign key,
        // PostgreSQL's statement trigger).
        if let JobWrite::Add { job, .. } | JobWrite::Update(job) = write {
            labels::write_labels::<D>(&mut transaction, &[job]).await?;
        }
        let affected = match write {
            JobWrite::InsertRun { job, .. } => vec![job.clone()],
            _ => models(rows)?,
        };
        if let Some(audit) = audit {
            let entries: Vec<AuditEntry> = affected.iter().map(audit).collect();
            adds::insert_audit::<D>(&mut transaction, &entries.iter().collect::<Vec<_>>()).await?;
        }
        transaction.commit().await.map_err(store_error)?;
        Ok(affected)
    }

    async fn record_audit(&self, entries: &[AuditEntry]) -> StoreResult<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let _turn = self.turn().await;
        let mut transaction = self.pool.begin_with(D::BEGIN_WRITE).await.map_err(store_error)?;
        adds::insert_audit::<D>(&mut transaction, &entries.iter().collect::<Vec<_>>()).await?;
        transaction.commit().await.map_err(store_error)
    }

    async fn list_audit(&self, query: &AuditQuery) -> StoreResult<Vec<AuditEntry>> {
        let Statement { sql, arguments } = list_audit_statement::<D>("", query)?;
        let rows: Vec<D::AuditRow> = sqlx::query_as_with(sqlx::AssertSqlSafe(sql), arguments)
            .fetch_all(&self.pool)
            .await
            .map_err(store_error)?;
        models(rows)
    }

    async fn prune_audit(&self, before: DateTime<Utc>, limit: usize) -> StoreResult<u64> {
        let arguments = arguments::<D>([Param::Time(Some(before)), Param::Int(Some(limit_of(limit)))])?;
        let _turn = self.turn().await;
        let result = sqlx::query_with(PRUNE_AUDIT_SQL, arguments).execute(&self.pool).await.map_err(store_error)?;
        Ok(D::rows_affected(&result))
    }

    async fn put_calendar(&self, calendar: &Calendar) -> StoreResult<()> {
        let json = D::Json::encode(calendar, "calendar")?;
        let arguments = arguments::<D>([Param::Text(Some(&calendar.id)), Param::Json(json)])?;
        let _turn = self.turn().await;
        let mut transaction = self.pool.begin_with(D::BEGIN_WRITE).await.map_err(store_error)?;
        sqlx::query_with(PUT_CALENDAR_SQL, arguments).execute(&mut *transaction).await.map_err(store_error)?;
        sqlx::query(BUMP_CALENDAR_VERSION_SQL).execute(&mut *transaction).await.map_err(store_error)?;
        transaction.commit().await.map_err(store_error)
    }

    async fn get_calendar(&self, id: &str) -> StoreResult<Option<Calendar>> {
        let arguments = arguments::<D>([Param::Text(Some(id))])?;
        let row: Option<(D::Json,)> = sqlx::query_as_with("SELECT calendar FROM calendars WHERE id = $1", arguments)
            .fetch_optional(&self.pool)
            .await
            .map_err(store_error)?;
        row.map(|(json,)| json.decode(format!("calendar {id:?}"))).transpose()
    }

    async fn list_calendars(&self) -> StoreResult<Vec<Calendar>> {
        let rows: Vec<(D::Json,)> = sqlx::query_as("SELECT calendar FROM calendars ORDER BY id")
            .fetch_all(&self.pool)
            .await
            .map_err(store_error)?;
        rows.into_iter().map(|(json,)| json.decode("calendar")).collect()
    }

    async fn remove_calendar(&self, id: &str) -> StoreResult<bool> {
        let arguments = arguments::<D>([Param::Text(Some(id))])?;
        let _turn = self.turn().await;
        let mut transaction = self.pool.begin_with(D::BEGIN_WRITE).await.map_err(store_error)?;
        let result = sqlx::query_with("DELETE FROM calendars WHERE id = $1", arguments)
            .execute(&mut *transaction)
            .await
            .map_err(store_error)?;
        let removed = D::rows_affected(&result) > 0;
        if removed {
            sqlx::query(BUMP_CALENDAR_VERSION_SQL).execute(&mut *transaction).await.map_err(store_error)?;
        }
        transaction.commit().await.map_err(store_error)?;
        Ok(removed)
    }

    async fn calendar_version(&self) -> StoreResult<u64> {
        let version: i64 = sqlx::query_scalar("SELECT version FROM calendar_version")
            .fetch_one(&self.pool)
            .await
            .map_err(store_error)?;
        narrow(version, "calendar version")
    }

    async fn jobs_with_calendars(&self) -> StoreResult<Vec<Job>> {
        let rows: Vec<D::JobRow> =
            sqlx::query_as(JOBS_WITH_CALENDARS_SQL).fetch_all(&self.pool).await.map_err(store_error)?;
        let jobs = models(rows)?;
        // The text match is a coarse filter (a string value could hold the key's text); the trigger says for sure.
        Ok(jobs.into_iter().filter(|job| !job.trigger.calendar_ids().is_empty()).collect())
    }

    async fn watch_changes(&self, stop: CancellationToken, wake: Arc<dyn Fn() + Send + Sync>) {
        self.dialect.watch_changes(stop, wake).await;
    }

    async fn take_due_resumes(&self, now: DateTime<Utc>) -> StoreResult<Vec<Job>> {
        let arguments = arguments::<D>([Param::Time(Some(now)), Param::Bool(true)])?;
        let _turn = self.turn().await;
        let rows: Vec<D::JobRow> = sqlx::query_as_with(health::TAKE_DUE_RESUMES_SQL, arguments)
            .fetch_all(&self.pool)
            .await
            .map_err(store_error)?;
        models(rows)
    }

    async fn mark_stale(&self, now: DateTime<Utc>) -> StoreResult<(Vec<Job>, Option<DateTime<Utc>>)> {
        let candidates: Vec<D::JobRow> =
            sqlx::query_as_with(health::STALE_CANDIDATES_SQL, arguments::<D>([Param::Bool(false)])?)
                .fetch_all(&self.pool)
                .await
                .map_err(store_error)?;
        let jobs = models(candidates)?;
        let next = jobs.iter().filter_map(crate::health::stale_at).filter(|at| *at > now).min();
        let mut marked = Vec::new();
        let default = self.notify_default.get();
        for job in jobs.into_iter().filter(|job| crate::health::is_stale(job, now)) {
            // Only if no success came meanwhile and no other replica marked it first.
            let since = job.health.last_success_at.unwrap_or(job.created_at);
            let mark = [Param::Text(Some(&job.id)), Param::Bool(true), Param::Bool(false), Param::Time(Some(since))];
            let _turn = self.turn().await;
            let mut transaction = self.pool.begin_with(D::BEGIN_WRITE).await.map_err(store_error)?;
            let mark_one = async {
                let row: Option<D::JobRow> = sqlx::query_as_with(health::MARK_STALE_SQL, arguments::<D>(mark)?)
                    .fetch_optional(&mut *transaction)
                    .await
                    .map_err(store_error)?;
                let job = row.map(Record::into_model).transpose()?;
                let notification = job.as_ref().and_then(|job| crate::notify::for_stale(job, default.as_ref(), now));
                health::insert_notifications::<D>(&mut transaction, notification.as_slice()).await?;
                Ok(job)
            }
            .await;
            marked.extend(health::finish::<D, _>(transaction, mark_one).await?);
        }
        Ok((marked, next))
    }

    async fn earliest_times(&self) -> StoreResult<(Option<DateTime<Utc>>, Option<DateTime<Utc>>)> {
        let sql = format!("SELECT ({}), ({})", D::EARLIEST_NEXT_RUN_TIME_SQL, health::EARLIEST_PAUSED_UNTIL_SQL);
        let arguments = arguments::<D>([Param::Bool(true)])?;
        let (next, resume): (Option<D::Time>, Option<D::Time>) =
            sqlx::query_as_with(sqlx::AssertSqlSafe(sql), arguments)
                .fetch_one(&self.pool)
                .await
                .map_err(store_error)?;
        Ok((
            next.map(|time| time.into_time("next_run_time")).transpose()?,
            resume.map(|time| time.into_time("paused_until")).transpose()?,
        ))
    }

    async fn create_backfill(&self, backfill: &crate::backfill::Backfill) -> StoreResult<()> {
        self.create_backfill_in(backfill).await
    }

    async fn get_backfill(&self, id: &str) -> StoreResult<Option<crate::backfill::Backfill>> {
        self.get_backfill_in(id).await
    }

    async fn list_backfills(&self, job_id: &str) -> StoreResult<Vec<crate::backfill::Backfill>> {
        self.list_backfills_in(job_id).await
    }

    async fn cancel_backfill(&self, id: &str) -> StoreResult<Option<crate::backfill::Backfill>> {
        self.cancel_backfill_in(id).await
    }

    async fn due_backfills(&self, now: DateTime<Utc>, limit: usize) -> StoreResult<Vec<crate::backfill::Backfill>> {
        self.due_backfills_in(now, limit).await
    }

    async fn step_backfill(&self, step: &crate::backfill::BackfillStep) -> StoreResult<crate::backfill::StepOutcome> {
        self.step_backfill_in(step).await
    }

    async fn insert_notifications(&self, notifications: &[crate::notify::ledger::Notification]) -> StoreResult<()> {
        if notifications.is_empty() {
            return Ok(());
        }
        let _turn = self.turn().await;
        let mut transaction = self.pool.begin_with(D::BEGIN_WRITE).await.map_err(store_error)?;
        let inserted = health::insert_notifications::<D>(&mut transaction, notifications).await;
        health::finish::<D, _>(transaction, inserted).await
    }

    async fn list_notifications(
        &self,
        job_id: &str,
        limit: usize,
    ) -> StoreResult<Vec<crate::notify::ledger::Notification>> {
        let params = [Param::Text(Some(job_id)), Param::Int(Some(limit_of(limit)))];
        let rows: Vec<D::NotificationRow> = sqlx::query_as_with(notifications::OF_JOB_SQL, arguments::<D>(params)?)
            .fetch_all(&self.pool)
            .await
            .map_err(store_error)?;
        models(rows)
    }

    async fn release_notification_leases(&self) -> StoreResult<u64> {
        let _turn = self.turn().await;
        let result = sqlx::query(notifications::RELEASE_LEASES_SQL).execute(&self.pool).await.map_err(store_error)?;
        Ok(D::rows_affected(&result))
    }

    async fn prune_notifications(&self, before: DateTime<Utc>, limit: usize) -> StoreResult<u64> {
        let arguments = arguments::<D>([Param::Time(Some(before)), Param::Int(Some(limit_of(limit)))])?;
        let _turn = self.turn().await;
        let result =
            sqlx::query_with(notifications::PRUNE_SQL, arguments).execute(&self.pool).await.map_err(store_error)?;
        Ok(D::rows_affected(&result))
    }

    fn set_notify_default(&self, default: Option<crate::notify::NotifySpec>) {
        self.notify_default.set(default);
    }

    async fn claim_notifications(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: usize,
    ) -> StoreResult<Vec<crate::notify::ledger::Notification>> {
        let sql = match D::KIND {
            super::StoreType::Postgres => notifications::CLAIM_LOCKED_SQL,
            _ => notifications::CLAIM_SQL,
        };
        let params = [Param::Time(Some(lease_until)), Param::Time(Some(now)), Param::Int(Some(limit_of(limit)))];
        let _turn = self.turn().await;
        let rows: Vec<D::NotificationRow> =
            sqlx::query_as_with(sql, arguments::<D>(params)?).fetch_all(&self.pool).await.map_err(store_error)?;
        models(rows)
    }

    async fn finish_notification(&self, id: &str, finish: &crate::notify::ledger::Finish) -> StoreResult<bool> {
        let (state, next, delivered_at, error) = finish.columns();
        let params = [
            Param::Text(Some(id)),
            Param::Text(Some(state.as_str())),
            Param::Time(next),
            Param::Time(delivered_at),
            Param::Text(error),
        ];
        let _turn = self.turn().await;
        let result = sqlx::query_with(notifications::FINISH_SQL, arguments::<D>(params)?)
            .execute(&self.pool)
            .await
            .map_err(store_error)?;
        Ok(D::rows_affected(&result) > 0)
    }
}
