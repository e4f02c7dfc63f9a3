//! The SQLite store, the embedded default: jobs and the run ledger in one file (schema in `migrations/sqlite/`),
//! in typed columns a person can read with the sqlite3 CLI; a job's trigger and action are JSON text.
//!
//! Times are INTEGER microseconds since the Unix epoch: they sort as times do and round-trip `DateTime<Utc>`
//! exactly at microsecond precision. Anything finer than a microsecond is truncated when written.
//!
//! Transactions that read before they write (`claim_due`) start with `BEGIN IMMEDIATE`, taking SQLite's single
//! write lock up front: claimers on the same file then queue on the busy timeout instead of failing on a stale
//! read snapshot, and the ledger's unique (job_id, scheduled_time) catches whatever slips past.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::sqlite::{SqliteArguments, SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{FromRow, QueryBuilder, Sqlite, SqlitePool};

use super::recorder::RunRecorder;
use super::{FirePlan, JobQuery, JobStore, Planner, Prune, RunQuery, StoreError, StoreResult};
use crate::job::{Job, Run, RunStatus};

/// SQLite has one writer at a time; a few more connections let WAL readers (the API's lists) proceed while the
/// scheduler claims.
const MAX_CONNECTIONS: u32 = 4;
/// How long a writer waits for another before the store reports `Unavailable`; a claim holds the lock for
/// milliseconds, so reaching this means the file is stuck, not busy.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// The list order's key, verbatim as in the `jobs_list_order` index so SQLite uses it: i64::MAX µs, later than any
/// time chrono represents, puts jobs without a next run time last.
const LIST_ORDER_KEY: &str = "IFNULL(next_run_time, 9223372036854775807)";
/// A cursor without a next run time, in `LIST_ORDER_KEY`'s terms.
const NO_NEXT_RUN_TIME_KEY: i64 = i64::MAX;

const DUE_JOBS_SQL: &str = "SELECT * FROM jobs WHERE paused = 0 AND next_run_time IS NOT NULL \
    AND next_run_time <= ? ORDER BY next_run_time, id LIMIT ?";
const ANY_DUE_SQL: &str =
    "SELECT 1 FROM jobs WHERE paused = 0 AND next_run_time IS NOT NULL AND next_run_time <= ? LIMIT 1";
const EARLIEST_NEXT_RUN_TIME_SQL: &str = "SELECT next_run_time FROM jobs WHERE paused = 0 \
    AND next_run_time IS NOT NULL ORDER BY next_run_time LIMIT 1";
/// A claim's statements take its jobs and runs as JSON arrays, so their number does not grow with the claim.
const ACTIVE_RUNS_SQL: &str = "SELECT job_id, COUNT(*) FROM runs WHERE job_id IN (SELECT value FROM json_each(?)) \
    AND status IN ('pending', 'running') GROUP BY job_id";
const PARK_JOBS_SQL: &str = "UPDATE jobs SET next_run_time = NULL WHERE id IN (SELECT value FROM json_each(?))";
const ADVANCE_JOBS_SQL: &str = "UPDATE jobs SET next_run_time = u.value ->> 'next_run_time' FROM json_each(?) AS u \
    WHERE jobs.id = u.value ->> 'id'";
const DELETE_JOBS_SQL: &str = "DELETE FROM jobs WHERE id IN (SELECT value FROM json_each(?))";
/// One statement is one transaction: two takers cannot both re-lease a run.
const TAKE_EXPIRED_RUNS_SQL: &str = "UPDATE runs SET lease_expires_at = ? WHERE status IN ('pending', 'running') \
    AND (lease_expires_at IS NULL OR lease_expires_at < ?) RETURNING *";
/// The keys travel as one JSON array, so any number of them is one statement with two parameters.
const EXTEND_LEASES_SQL: &str = "UPDATE runs SET lease_expires_at = ? WHERE status IN ('pending', 'running') \
    AND idempotency_key IN (SELECT value FROM json_each(?))";

/// Finished runs older than a cutoff; the expression is the `runs_finished_age` index's, verbatim.
const PRUNE_BY_AGE_SQL: &str = "DELETE FROM runs WHERE idempotency_key IN (SELECT idempotency_key FROM runs \
    WHERE status NOT IN ('pending', 'running') AND IFNULL(finished_at, created_at) < ? LIMIT ?)";
/// Each job's finished runs beyond its newest N by scheduled time.
const PRUNE_BY_COUNT_SQL: &str = "DELETE FROM runs WHERE idempotency_key IN (SELECT idempotency_key FROM \
    (SELECT idempotency_key, ROW_NUMBER() OVER (PARTITION BY job_id ORDER BY scheduled_time DESC) AS newer \
    FROM runs WHERE status NOT IN ('pending', 'running')) WHERE newer > ? LIMIT ?)";

#[derive(Clone, Debug)]
pub struct SqliteStore {
    pool: SqlitePool,
    /// `update_run` hands its run to the recorder, which writes all waiting ones in one statement (`save_runs`).
    recorder: RunRecorder,
    /// Writers take turns here rather than in SQLite: a writer that finds the file locked waits in SQLite's busy
    /// handler, which sleeps in steps of up to 100 ms, so under load (deliveries recording runs while a claim
    /// holds the lock) most of the time went to sleeping. Readers do not take it.
    writer: Arc<tokio::sync::Mutex<()>>,
}

impl SqliteStore {
    /// Open (creating the file if missing) and migrate. `url`: `sqlite://./apsched.db`, `sqlite::memory:`.
    pub async fn connect(url: &str) -> StoreResult<SqliteStore> {
        let options: SqliteConnectOptions = url
            .parse::<SqliteConnectOptions>()
            .map_err(|err| StoreError::Unavailable(format!("bad SQLite url {url:?}: {err}")))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // With WAL, NORMAL loses at most the last commits on power loss, never consistency.
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(BUSY_TIMEOUT);
        let pool = if is_in_memory(url) {
            // An in-memory database lives as long as its last connection, and its connections share a cache with
            // table locks that the busy timeout does not cover: keep exactly one connection, forever.
            SqlitePoolOptions::new().max_connections(1).min_connections(1).idle_timeout(None).max_lifetime(None)
        } else {
            SqlitePoolOptions::new().max_connections(MAX_CONNECTIONS)
        }
        // A file's connection cannot drop the way a server's can; pinging it before each use was a round trip to
        // its thread per statement.
        .test_before_acquire(false)
        .connect_with(options)
        .await
        .map_err(store_error)?;
        let writer = Arc::new(tokio::sync::Mutex::new(()));
        let recorder = {
            let (pool, writer) = (pool.clone(), writer.clone());
            RunRecorder::spawn(move |runs| {
                let (pool, writer) = (pool.clone(), writer.clone());
                async move { save_runs(&pool, &writer, &runs).await }
            })
        };
        let store = SqliteStore { pool, writer, recorder };
        store.migrate().await?;
        Ok(store)
    }

    /// Bring the schema up to date; `connect` already does, so a fresh file just works.
    pub async fn migrate(&self) -> StoreResult<()> {
        sqlx::migrate!("migrations/sqlite").run(&self.pool).await.map_err(|err| match err {
            sqlx::migrate::MigrateError::Execute(err) => store_error(err),
            // A schema this build does not know (a newer apsched, or edited migrations).
            other => StoreError::Corrupt(format!("SQLite schema: {other}")),
        })
    }

    /// Close the pool, waiting for connections to finish (the WAL is checkpointed when the last one closes).
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

fn is_in_memory(url: &str) -> bool {
    url.contains(":memory:") || url.contains("mode=memory")
}

/// A row that does not decode is `Corrupt`; anything else means the store could not do the work now and the
/// caller retries. (Unique violations are told apart where they can happen, to say what exists.)
fn store_error(err: sqlx::Error) -> StoreError {
    match err {
        sqlx::Error::Decode(_) | sqlx::Error::ColumnDecode { .. } | sqlx::Error::ColumnNotFound(_) => {
            StoreError::Corrupt(err.to_string())
        }
        other => StoreError::Unavailable(other.to_string()),
    }
}

fn is_unique_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.is_unique_violation())
}

fn micros(time: DateTime<Utc>) -> i64 {
    time.timestamp_micros()
}

fn time_from_micros(value: i64, column: &str) -> StoreResult<DateTime<Utc>> {
    DateTime::from_timestamp_micros(value)
        .ok_or_else(|| StoreError::Corrupt(format!("{column}: {value} µs is not a representable time")))
}

fn optional_time(value: Option<i64>, column: &str) -> StoreResult<Option<DateTime<Utc>>> {
    value.map(|v| time_from_micros(v, column)).transpose()
}

fn narrow<T: TryFrom<i64>>(value: i64, column: &str) -> StoreResult<T> {
    T::try_from(value).map_err(|_| StoreError::Corrupt(format!("{column}: {value} is out of range")))
}

fn to_json<T: serde::Serialize>(value: &T, what: &str) -> StoreResult<String> {
    serde_json::to_string(value).map_err(|err| StoreError::Corrupt(format!("cannot encode {what}: {err}")))
}

fn from_json<T: serde::de::DeserializeOwned>(text: &str, what: &str) -> StoreResult<T> {
    serde_json::from_str(text).map_err(|err| StoreError::Corrupt(format!("{what}: {err}")))
}

#[derive(FromRow)]
struct JobRow {
    id: String,
    name: Option<String>,
    trigger: String,
    action: String,
    coalesce: bool,
    max_instances: i64,
    misfire_grace_time: Option<i64>,
    executor: String,
    jobstore: String,
    next_run_time: Option<i64>,
    paused: bool,
    created_at: i64,
    updated_at: i64,
}

impl TryFrom<JobRow> for Job {
    type Error = StoreError;

    fn try_from(row: JobRow) -> StoreResult<Job> {
        let what = |column: &str| format!("job {:?} {column}", row.id);
        Ok(Job {
            trigger: from_json(&row.trigger, &what("trigger"))?,
            action: from_json(&row.action, &what("action"))?,
            max_instances: narrow(row.max_instances, &what("max_instances"))?,
            misfire_grace_time: row
                .misfire_grace_time
                .map(|seconds| narrow(seconds, &what("misfire_grace_time")))
                .transpose()?,
            next_run_time: optional_time(row.next_run_time, &what("next_run_time"))?,
            created_at: time_from_micros(row.created_at, &what("created_at"))?,
            updated_at: time_from_micros(row.updated_at, &what("updated_at"))?,
            name: row.name,
            coalesce: row.coalesce,
            executor: row.executor,
            jobstore: row.jobstore,
            paused: row.paused,
            id: row.id,
        })
    }
}

#[derive(FromRow)]
struct RunRow {
    idempotency_key: String,
    job_id: String,
    scheduled_time: i64,
    status: String,
    attempts: i64,
    started_at: Option<i64>,
    finished_at: Option<i64>,
    http_status: Option<i64>,
    duration_ms: Option<i64>,
    error: Option<String>,
    response_excerpt: Option<String>,
    action: String,
    executor: String,
    timezone: String,
    lease_expires_at: Option<i64>,
    created_at: i64,
}

impl TryFrom<RunRow> for Run {
    type Error = StoreError;

    fn try_from(row: RunRow) -> StoreResult<Run> {
        let what = |column: &str| format!("run {:?} {column}", row.idempotency_key);
        Ok(Run {
            scheduled_time: time_from_micros(row.scheduled_time, &what("scheduled_time"))?,
            status: RunStatus::parse(&row.status)
                .ok_or_else(|| StoreError::Corrupt(format!("{}: unknown {:?}", what("status"), row.status)))?,
            attempts: narrow(row.attempts, &what("attempts"))?,
            started_at: optional_time(row.started_at, &what("started_at"))?,
            finished_at: optional_time(row.finished_at, &what("finished_at"))?,
            http_status: row.http_status.map(|status| narrow(status, &what("http_status"))).transpose()?,
            duration_ms: row.duration_ms.map(|ms| narrow(ms, &what("duration_ms"))).transpose()?,
            action: from_json(&row.action, &what("action"))?,
            lease_expires_at: optional_time(row.lease_expires_at, &what("lease_expires_at"))?,
            created_at: time_from_micros(row.created_at, &what("created_at"))?,
            idempotency_key: row.idempotency_key,
            job_id: row.job_id,
            error: row.error,
            response_excerpt: row.response_excerpt,
            executor: row.executor,
            timezone: row.timezone,
        })
    }
}

fn jobs_from_rows(rows: Vec<JobRow>) -> StoreResult<Vec<Job>> {
    rows.into_iter().map(Job::try_from).collect()
}

fn runs_from_rows(rows: Vec<RunRow>) -> StoreResult<Vec<Run>> {
    rows.into_iter().map(Run::try_from).collect()
}

type SqliteQuery<'q> = sqlx::query::Query<'q, Sqlite, SqliteArguments>;

/// Binds every column of `jobs` in the order of `insert_job_sql!`'s placeholders.
fn bind_job<'q>(query: SqliteQuery<'q>, job: &Job) -> StoreResult<SqliteQuery<'q>> {
    Ok(query
        .bind(job.id.clone())
        .bind(job.name.clone())
        .bind(to_json(&job.trigger, "trigger")?)
        .bind(to_json(&job.action, "action")?)
        .bind(job.coalesce)
        .bind(i64::from(job.max_instances))
        .bind(job.misfire_grace_time.map(i64::from))
        .bind(job.executor.clone())
        .bind(job.jobstore.clone())
        .bind(job.next_run_time.map(micros))
        .bind(job.paused)
        .bind(micros(job.created_at))
        .bind(micros(job.updated_at)))
}

macro_rules! insert_job_sql {
    ($tail:literal) => {
        concat!(
            "INSERT INTO jobs (id, name, trigger, action, coalesce, max_instances, misfire_grace_time, executor, ",
            "jobstore, next_run_time, paused, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            $tail
        )
    };
}

/// Binds the columns that find a run (its key and fire) and the progress before its lease, the first eleven of both
/// `insert_run_sql!` and `save_runs`.
fn bind_run_progress<'q>(query: SqliteQuery<'q>, run: &Run) -> SqliteQuery<'q> {
    query
        .bind(run.idempotency_key.clone())
        .bind(run.job_id.clone())
        .bind(micros(run.scheduled_time))
        .bind(run.status.as_str())
        .bind(i64::from(run.attempts))
        .bind(run.started_at.map(micros))
        .bind(run.finished_at.map(micros))
        .bind(run.http_status.map(i64::from))
        // Beyond i64::MAX ms (292 million years) nothing is lost by saturating.
        .bind(run.duration_ms.map(|ms| i64::try_from(ms).unwrap_or(i64::MAX)))
        .bind(run.error.clone())
        .bind(run.response_excerpt.clone())
}

/// Binds every column of `runs` in the order of `insert_run_sql!`'s placeholders.
fn bind_run<'q>(query: SqliteQuery<'q>, run: &Run) -> StoreResult<SqliteQuery<'q>> {
    Ok(bind_run_progress(query, run)
        .bind(to_json(&run.action, "run action")?)
        .bind(run.executor.clone())
        .bind(run.timezone.clone())
        .bind(run.lease_expires_at.map(micros))
        .bind(micros(run.created_at)))
}

/// The statement's head, before its rows of `bind_run`'s 16 values.
macro_rules! insert_runs_head {
    () => {
        concat!(
            "INSERT INTO runs (idempotency_key, job_id, scheduled_time, status, attempts, started_at, finished_at, ",
            "http_status, duration_ms, error, response_excerpt, action, executor, timezone, lease_expires_at, ",
            "created_at)"
        )
    };
}

macro_rules! insert_run_sql {
    ($tail:literal) => {
        concat!(insert_runs_head!(), " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", $tail)
    };
}

/// Rows per statement in the batched ledger writes, largest first: any batch is made of chunks of these sizes, so
/// a handful of statements (each prepared once per connection) serve every size, and the largest stays well under
/// SQLite's limit of 32 766 parameters. Bound parameters, not JSON: perf showed SQLite spending a quarter of a
/// burst's claim re-parsing `json_each` rows field by field.
const ROW_CHUNKS: [usize; 7] = [64, 32, 16, 8, 4, 2, 1];

/// `rows` split into chunks of `ROW_CHUNKS`' sizes, in order.
fn row_chunks<T>(mut rows: &[T]) -> impl Iterator<Item = &[T]> {
    std::iter::from_fn(move || {
        let size = ROW_CHUNKS.into_iter().find(|size| *size <= rows.len())?;
        let (chunk, rest) = rows.split_at(size);
        rows = rest;
        Some(chunk)
    })
}

/// `rows` groups of `columns` placeholders: `(?, ?), (?, ?)`.
fn placeholders(rows: usize, columns: usize) -> String {
    let row = format!("({})", vec!["?"; columns].join(", "));
    vec![row; rows].join(", ")
}

/// Insert `runs` unless their fire is in the ledger already; the (job id, scheduled time) of those inserted.
async fn insert_runs_unless_taken(
    tx: &mut sqlx::SqliteConnection,
    runs: &[Run],
) -> StoreResult<std::collections::HashSet<(String, i64)>> {
    let mut inserted = std::collections::HashSet::with_capacity(runs.len());
    for chunk in row_chunks(runs) {
        let sql = format!(
            "{} VALUES {} ON CONFLICT (job_id, scheduled_time) DO NOTHING RETURNING job_id, scheduled_time",
            insert_runs_head!(),
            placeholders(chunk.len(), 16)
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for run in chunk {
            query = bind_run(query, run)?;
        }
        for row in query.fetch_all(&mut *tx).await.map_err(store_error)? {
            use sqlx::Row;
            inserted.insert((row.try_get(0).map_err(store_error)?, row.try_get(1).map_err(store_error)?));
        }
    }
    Ok(inserted)
}

/// The columns `update_run` saves (a run's progress), after the three that find the run.
const RUN_PROGRESS_COLUMNS: [&str; 9] = [
    "status",
    "attempts",
    "started_at",
    "finished_at",
    "http_status",
    "duration_ms",
    "error",
    "response_excerpt",
    "lease_expires_at",
];

/// Save the progress of every run in `runs`, found by its key and its fire (as the memory store finds it); the keys
/// of the runs found.
async fn save_runs(
    pool: &SqlitePool,
    writer: &tokio::sync::Mutex<()>,
    runs: &[Run],
) -> StoreResult<std::collections::HashSet<String>> {
    let mut found = std::collections::HashSet::with_capacity(runs.len());
    let mut connection = pool.acquire().await.map_err(store_error)?;
    for chunk in row_chunks(runs) {
        // The write lock is taken per statement, not per batch: in a burst the claims are the critical path, and a
        // claim waiting behind a whole batch of outcomes (milliseconds) held up every fire after it.
        let _writer = writer.lock().await;
        let sql = format!(
            "WITH u (idempotency_key, job_id, scheduled_time, {columns}) AS (VALUES {values}) UPDATE runs SET {set} \
             FROM u WHERE runs.idempotency_key = u.idempotency_key AND runs.job_id = u.job_id \
             AND runs.scheduled_time = u.scheduled_time RETURNING runs.idempotency_key",
            columns = RUN_PROGRESS_COLUMNS.join(", "),
            values = placeholders(chunk.len(), 3 + RUN_PROGRESS_COLUMNS.len()),
            set = RUN_PROGRESS_COLUMNS.map(|column| format!("{column} = u.{column}")).join(", "),
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for run in chunk {
            query = bind_run_progress(query, run).bind(run.lease_expires_at.map(micros));
        }
        for row in query.fetch_all(&mut *connection).await.map_err(store_error)? {
            found.insert(sqlx::Row::try_get(&row, 0).map_err(store_error)?);
        }
    }
    Ok(found)
}

fn limit_of(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

/// `prefix` is empty, or `EXPLAIN QUERY PLAN ` for the tests that check the indexes serve the query.
fn list_jobs_query(prefix: &str, query: &JobQuery) -> QueryBuilder<Sqlite> {
    let mut sql = QueryBuilder::<Sqlite>::new(format!("{prefix}SELECT * FROM jobs WHERE 1 = 1"));
    if let Some(paused) = query.paused {
        sql.push(" AND paused = ").push_bind(paused);
    }
    if let Some(cursor) = &query.after {
        let key = cursor.next_run_time.map(micros).unwrap_or(NO_NEXT_RUN_TIME_KEY);
        // The row-value comparison alone would scan the index from its start; the `>=` lets SQLite seek.
        sql.push(format_args!(" AND {LIST_ORDER_KEY} >= ")).push_bind(key);
        sql.push(format_args!(" AND ({LIST_ORDER_KEY}, id) > (")).push_bind(key);
        sql.push(", ").push_bind(cursor.id.clone()).push(")");
    }
    sql.push(format_args!(" ORDER BY {LIST_ORDER_KEY}, id LIMIT ")).push_bind(limit_of(query.limit));
    sql
}

fn list_runs_query(prefix: &str, job_id: &str, query: &RunQuery) -> QueryBuilder<Sqlite> {
    let mut sql = QueryBuilder::<Sqlite>::new(format!("{prefix}SELECT * FROM runs WHERE job_id = "));
    sql.push_bind(job_id.to_string());
    if let Some(status) = query.status {
        sql.push(" AND status = ").push_bind(status.as_str());
    }
    if let Some(cursor) = &query.after {
        sql.push(" AND (scheduled_time, idempotency_key) < (").push_bind(micros(cursor.scheduled_time));
        sql.push(", ").push_bind(cursor.idempotency_key.clone()).push(")");
    }
    // A job has one run per scheduled time, so the time alone orders its history.
    sql.push(" ORDER BY scheduled_time DESC LIMIT ").push_bind(limit_of(query.limit));
    sql
}

#[async_trait]
impl JobStore for SqliteStore {
    fn kind(&self) -> crate::store::StoreType {
        crate::store::StoreType::Sqlite
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await.map_err(store_error)?;
        Ok(())
    }

    async fn add_job(&self, job: &Job, replace_existing: bool) -> StoreResult<()> {
        let _writer = self.writer.lock().await;
        let sql = if replace_existing {
            // Every column but created_at, which the replaced job keeps.
            insert_job_sql!(
                " ON CONFLICT (id) DO UPDATE SET name = excluded.name, trigger = excluded.trigger, \
                 action = excluded.action, coalesce = excluded.coalesce, max_instances = excluded.max_instances, \
                 misfire_grace_time = excluded.misfire_grace_time, executor = excluded.executor, \
                 jobstore = excluded.jobstore, next_run_time = excluded.next_run_time, paused = excluded.paused, \
                 updated_at = excluded.updated_at"
            )
        } else {
            insert_job_sql!("")
        };
        match bind_job(sqlx::query(sql), job)?.execute(&self.pool).await {
            Ok(_) => Ok(()),
            Err(err) if is_unique_violation(&err) => Err(StoreError::Conflict(format!("job {:?} exists", job.id))),
            Err(err) => Err(store_error(err)),
        }
    }

    async fn update_job(&self, job: &Job) -> StoreResult<()> {
        let _writer = self.writer.lock().await;
        let query = sqlx::query(
            "UPDATE jobs SET id = ?, name = ?, trigger = ?, action = ?, coalesce = ?, max_instances = ?, \
             misfire_grace_time = ?, executor = ?, jobstore = ?, next_run_time = ?, paused = ?, created_at = ?, \
             updated_at = ? WHERE id = ?",
        );
        let result = bind_job(query, job)?.bind(job.id.clone()).execute(&self.pool).await.map_err(store_error)?;
        if result.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    async fn get_job(&self, id: &str) -> StoreResult<Option<Job>> {
        let row: Option<JobRow> = sqlx::query_as("SELECT * FROM jobs WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(store_error)?;
        row.map(Job::try_from).transpose()
    }

    async fn remove_job(&self, id: &str) -> StoreResult<bool> {
        let _writer = self.writer.lock().await;
        let result =
            sqlx::query("DELETE FROM jobs WHERE id = ?").bind(id).execute(&self.pool).await.map_err(store_error)?;
        Ok(result.rows_affected() > 0)
    }

    async fn remove_all_jobs(&self) -> StoreResult<u64> {
        let _writer = self.writer.lock().await;
        let result = sqlx::query("DELETE FROM jobs").execute(&self.pool).await.map_err(store_error)?;
        Ok(result.rows_affected())
    }

    async fn list_jobs(&self, query: &JobQuery) -> StoreResult<Vec<Job>> {
        let mut sql = list_jobs_query("", query);
        let rows: Vec<JobRow> = sql.build_query_as().fetch_all(&self.pool).await.map_err(store_error)?;
        jobs_from_rows(rows)
    }

    async fn count_jobs(&self) -> StoreResult<u64> {
        let count: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM jobs").fetch_one(&self.pool).await.map_err(store_error)?;
        narrow(count, "job count")
    }

    async fn earliest_next_run_time(&self) -> StoreResult<Option<DateTime<Utc>>> {
        let earliest: Option<i64> =
            sqlx::query_scalar(EARLIEST_NEXT_RUN_TIME_SQL).fetch_optional(&self.pool).await.map_err(store_error)?;
        optional_time(earliest, "next_run_time")
    }

    async fn claim_due(
        &self,
        now: DateTime<Utc>,
        limit: usize,
        lease_until: DateTime<Utc>,
        planner: &dyn Planner,
    ) -> StoreResult<Vec<Run>> {
        // Nothing due, as after most wake-ups for an API change: a read says so without taking the write lock.
        let any_due: Option<i64> =
            sqlx::query_scalar(ANY_DUE_SQL).bind(micros(now)).fetch_optional(&self.pool).await.map_err(store_error)?;
        if any_due.is_none() {
            return Ok(Vec::new());
        }
        let _writer = self.writer.lock().await;
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(store_error)?;
        let due: Vec<JobRow> = sqlx::query_as(DUE_JOBS_SQL)
            .bind(micros(now))
            .bind(limit_of(limit))
            .fetch_all(&mut *tx)
            .await
            .map_err(store_error)?;
        let mut jobs = Vec::with_capacity(due.len());
        let mut parked = Vec::new();
        for row in due {
            let id = row.id.clone();
            match Job::try_from(row) {
                Ok(job) => jobs.push(job),
                Err(err) => {
                    // A row that cannot be read can never be planned; left due, it would hold the head of every
                    // claim and wake the scheduler in a loop. Park it (no next run time) and leave it for a person.
                    tracing::error!(job_id = %id, error = %err, "unreadable job parked: next_run_time cleared");
                    parked.push(id);
                }
            }
        }
        if !parked.is_empty() {
            sqlx::query(PARK_JOBS_SQL)
                .bind(to_json(&parked, "job ids")?)
                .execute(&mut *tx)
                .await
                .map_err(store_error)?;
        }
        let ids: Vec<&str> = jobs.iter().map(|job| job.id.as_str()).collect();
        let active: std::collections::HashMap<String, i64> = if ids.is_empty() {
            std::collections::HashMap::new()
        } else {
            sqlx::query_as::<_, (String, i64)>(ACTIVE_RUNS_SQL)
                .bind(to_json(&ids, "job ids")?)
                .fetch_all(&mut *tx)
                .await
                .map_err(store_error)?
                .into_iter()
                .collect()
        };
        let mut planned = Vec::new();
        let mut advanced = Vec::new();
        let mut deleted = Vec::new();
        for job in &jobs {
            let active_runs = active.get(&job.id).copied().unwrap_or(0);
            let FirePlan { runs, next_run_time } =
                planner.plan(job, u32::try_from(active_runs).unwrap_or(u32::MAX), now);
            for mut run in runs {
                if run.status.is_unfinished() {
                    run.lease_expires_at = Some(lease_until);
                }
                planned.push(run);
            }
            match next_run_time {
                Some(next) => advanced.push(serde_json::json!({ "id": job.id, "next_run_time": micros(next) })),
                None => deleted.push(job.id.as_str()),
            }
        }
        let mut inserted = Vec::new();
        if !planned.is_empty() {
            let mut taken = insert_runs_unless_taken(&mut tx, &planned).await?;
            // Removing each match keeps a fire planned twice from being reported twice; SQLite kept the first.
            for run in planned {
                if taken.remove(&(run.job_id.clone(), micros(run.scheduled_time))) {
                    inserted.push(run);
                }
            }
        }
        if !advanced.is_empty() {
            sqlx::query(ADVANCE_JOBS_SQL)
                .bind(to_json(&advanced, "next run times")?)
                .execute(&mut *tx)
                .await
                .map_err(store_error)?;
        }
        if !deleted.is_empty() {
            sqlx::query(DELETE_JOBS_SQL)
                .bind(to_json(&deleted, "job ids")?)
                .execute(&mut *tx)
                .await
                .map_err(store_error)?;
        }
        tx.commit().await.map_err(store_error)?;
        Ok(inserted)
    }

    async fn insert_run(&self, run: &Run) -> StoreResult<()> {
        let _writer = self.writer.lock().await;
        match bind_run(sqlx::query(insert_run_sql!("")), run)?.execute(&self.pool).await {
            Ok(_) => Ok(()),
            Err(err) if is_unique_violation(&err) => Err(StoreError::Conflict(format!(
                "a run of {:?} at {} (or key {:?}) exists",
                run.job_id, run.scheduled_time, run.idempotency_key
            ))),
            Err(err) => Err(store_error(err)),
        }
    }

    async fn update_run(&self, run: &Run) -> StoreResult<()> {
        self.recorder.record(run).await
    }

    async fn take_expired_runs(&self, now: DateTime<Utc>, lease_until: DateTime<Utc>) -> StoreResult<Vec<Run>> {
        let _writer = self.writer.lock().await;
        let rows: Vec<RunRow> = sqlx::query_as(TAKE_EXPIRED_RUNS_SQL)
            .bind(micros(lease_until))
            .bind(micros(now))
            .fetch_all(&self.pool)
            .await
            .map_err(store_error)?;
        let mut runs = runs_from_rows(rows)?;
        // RETURNING has no order; hand them back oldest fire first, as they are due.
        runs.sort_by(|a, b| (a.scheduled_time, &a.job_id).cmp(&(b.scheduled_time, &b.job_id)));
        Ok(runs)
    }

    async fn extend_leases(&self, idempotency_keys: &[String], lease_until: DateTime<Utc>) -> StoreResult<()> {
        if idempotency_keys.is_empty() {
            return Ok(());
        }
        let _writer = self.writer.lock().await;
        sqlx::query(EXTEND_LEASES_SQL)
            .bind(micros(lease_until))
            .bind(to_json(&idempotency_keys, "idempotency keys")?)
            .execute(&self.pool)
            .await
            .map_err(store_error)?;
        Ok(())
    }

    async fn list_runs(&self, job_id: &str, query: &RunQuery) -> StoreResult<Vec<Run>> {
        let mut sql = list_runs_query("", job_id, query);
        let rows: Vec<RunRow> = sql.build_query_as().fetch_all(&self.pool).await.map_err(store_error)?;
        runs_from_rows(rows)
    }

    async fn prune_runs(&self, prune: &Prune) -> StoreResult<u64> {
        let mut left = limit_of(prune.limit);
        if left == 0 || (prune.finished_before.is_none() && prune.keep_per_job.is_none()) {
            return Ok(0);
        }
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(store_error)?;
        let mut deleted = 0;
        if let Some(cutoff) = prune.finished_before {
            let result = sqlx::query(PRUNE_BY_AGE_SQL)
                .bind(micros(cutoff))
                .bind(left)
                .execute(&mut *tx)
                .await
                .map_err(store_error)?;
            deleted += result.rows_affected();
            left -= i64::try_from(result.rows_affected()).unwrap_or(left);
        }
        if let Some(keep) = prune.keep_per_job
            && left > 0
        {
            let result = sqlx::query(PRUNE_BY_COUNT_SQL)
                .bind(i64::try_from(keep).unwrap_or(i64::MAX))
                .bind(left)
                .execute(&mut *tx)
                .await
                .map_err(store_error)?;
            deleted += result.rows_affected();
        }
        tx.commit().await.map_err(store_error)?;
        Ok(deleted)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::sync::Arc;

    use chrono::Duration;
    use sqlx::AssertSqlSafe;

    use super::*;
    use crate::store::contract::{Advance, at, job, paused_job, run};
    use crate::store::{JobCursor, RunCursor};

    fn file_url(dir: &tempfile::TempDir) -> String {
        format!("sqlite://{}", dir.path().join("apsched.db").display())
    }

    fn all_jobs() -> JobQuery {
        JobQuery { paused: None, after: None, limit: 1000 }
    }

    fn all_runs() -> RunQuery {
        RunQuery { status: None, after: None, limit: 1000 }
    }

    #[tokio::test]
    async fn data_survives_reopening_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::connect(&file_url(&dir)).await.unwrap();
        for stored in [job("a", Some(at(-5))), job("b", Some(at(100))), paused_job("c")] {
            store.add_job(&stored, false).await.unwrap();
        }
        store.insert_run(&run("gone", at(-300), RunStatus::Failed)).await.unwrap();
        let claimed = store.claim_due(at(0), 10, at(30), &Advance { step: Duration::seconds(60) }).await.unwrap();
        assert_eq!(claimed.len(), 1);
        let jobs_before = store.list_jobs(&all_jobs()).await.unwrap();
        let runs_before =
            [store.list_runs("a", &all_runs()).await.unwrap(), store.list_runs("gone", &all_runs()).await.unwrap()];
        store.close().await;
        drop(store);

        let reopened = SqliteStore::connect(&file_url(&dir)).await.unwrap();
        assert_eq!(reopened.list_jobs(&all_jobs()).await.unwrap(), jobs_before);
        assert_eq!(reopened.list_runs("a", &all_runs()).await.unwrap(), runs_before[0]);
        assert_eq!(reopened.list_runs("gone", &all_runs()).await.unwrap(), runs_before[1]);
        assert_eq!(reopened.earliest_next_run_time().await.unwrap(), Some(at(55)));
    }

    #[tokio::test]
    async fn a_file_store_journals_with_wal() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::connect(&file_url(&dir)).await.unwrap();
        let mode: String = sqlx::query_scalar("PRAGMA journal_mode").fetch_one(&store.pool).await.unwrap();
        assert_eq!(mode, "wal");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_claimers_on_one_file_never_share_a_fire() {
        const JOBS: i64 = 40;
        let dir = tempfile::tempdir().unwrap();
        let first = Arc::new(SqliteStore::connect(&file_url(&dir)).await.unwrap());
        let second = Arc::new(SqliteStore::connect(&file_url(&dir)).await.unwrap());
        for index in 0..JOBS {
            first.add_job(&job(&format!("job-{index:02}"), Some(at(-index))), false).await.unwrap();
        }

        let start = Arc::new(tokio::sync::Barrier::new(2));
        let claimers = [first.clone(), second.clone()].map(|store| {
            let start = start.clone();
            tokio::spawn(async move {
                start.wait().await;
                let mut fires = Vec::new();
                loop {
                    // Small batches, so the two claimers interleave many times.
                    let batch = store.claim_due(at(0), 3, at(30), &Advance { step: Duration::hours(1) }).await.unwrap();
                    if batch.is_empty() {
                        return fires;
                    }
                    fires.extend(batch.into_iter().map(|run| (run.job_id, run.scheduled_time)));
                }
            })
        });
        let mut all_fires = Vec::new();
        for claimer in claimers {
            all_fires.extend(claimer.await.unwrap());
        }

        let distinct: HashSet<_> = all_fires.iter().cloned().collect();
        assert_eq!(distinct.len(), all_fires.len(), "a fire was claimed twice: {all_fires:?}");
        assert_eq!(all_fires.len(), JOBS as usize, "every due fire was claimed once");
        for index in 0..JOBS {
            let runs = second.list_runs(&format!("job-{index:02}"), &all_runs()).await.unwrap();
            assert_eq!(runs.len(), 1);
        }
    }

    #[tokio::test]
    async fn times_finer_than_a_microsecond_are_truncated() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::connect(&file_url(&dir)).await.unwrap();
        store.add_job(&job("a", Some(at(0) + Duration::nanoseconds(999))), false).await.unwrap();
        assert_eq!(store.get_job("a").await.unwrap().unwrap().next_run_time, Some(at(0)));
    }

    #[tokio::test]
    async fn an_unreadable_due_job_is_parked_and_the_others_still_claimed() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::connect(&file_url(&dir)).await.unwrap();
        store.add_job(&job("bad", Some(at(-10))), false).await.unwrap();
        store.add_job(&job("good", Some(at(-5))), false).await.unwrap();
        sqlx::query("UPDATE jobs SET trigger = '{\"type\": \"sundial\"}' WHERE id = 'bad'")
            .execute(&store.pool)
            .await
            .unwrap();

        let claimed = store.claim_due(at(0), 10, at(30), &Advance { step: Duration::seconds(60) }).await.unwrap();
        assert_eq!(claimed.iter().map(|run| run.job_id.as_str()).collect::<Vec<_>>(), ["good"]);
        assert!(matches!(store.get_job("bad").await, Err(StoreError::Corrupt(_))));
        let parked: Option<i64> =
            sqlx::query_scalar("SELECT next_run_time FROM jobs WHERE id = 'bad'").fetch_one(&store.pool).await.unwrap();
        assert_eq!(parked, None, "kept for a person to inspect, no longer due");
        assert_eq!(store.earliest_next_run_time().await.unwrap(), Some(at(55)));
    }

    #[tokio::test]
    async fn an_in_memory_store_keeps_its_data_across_calls() {
        let store = SqliteStore::connect("sqlite::memory:").await.unwrap();
        store.add_job(&job("a", Some(at(1))), false).await.unwrap();
        store.insert_run(&run("a", at(0), RunStatus::Pending)).await.unwrap();
        assert_eq!(store.get_job("a").await.unwrap(), Some(job("a", Some(at(1)))));
        assert_eq!(store.list_runs("a", &all_runs()).await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_file_that_cannot_be_opened_is_unavailable() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("no-such-dir").join("apsched.db").display());
        assert!(matches!(SqliteStore::connect(&url).await, Err(StoreError::Unavailable(_))));
    }

    async fn plan_of<'q>(store: &SqliteStore, query: sqlx::query::Query<'q, Sqlite, SqliteArguments>) -> String {
        let rows = query.fetch_all(&store.pool).await.unwrap();
        rows.iter().map(|row| sqlx::Row::get::<String, _>(row, "detail")).collect::<Vec<_>>().join("; ")
    }

    fn explain(sql: &str) -> sqlx::query::Query<'static, Sqlite, SqliteArguments> {
        sqlx::query(AssertSqlSafe(format!("EXPLAIN QUERY PLAN {sql}")))
    }

    /// Asserts SQLite seeks in `index` (a covering use counts) rather than walking `table`.
    fn assert_seeks(plan: &str, table: &str, index: &str) {
        assert!(plan.contains(&format!("SEARCH {table} USING")) && plan.contains(&format!("INDEX {index}")), "{plan}");
    }

    /// "Bounded" also means no hot query walks a whole table.
    #[tokio::test]
    async fn the_hot_queries_seek_in_their_indexes() {
        let store = SqliteStore::connect("sqlite::memory:").await.unwrap();
        assert_seeks(&plan_of(&store, explain(DUE_JOBS_SQL).bind(0_i64).bind(10_i64)).await, "jobs", "jobs_due");
        assert_seeks(&plan_of(&store, explain(EARLIEST_NEXT_RUN_TIME_SQL)).await, "jobs", "jobs_due");
        assert_seeks(&plan_of(&store, explain(ACTIVE_RUNS_SQL).bind("j")).await, "runs", "runs_job_status");
        // A scan, but of a partial index that holds only the unfinished runs.
        let expired = plan_of(&store, explain(TAKE_EXPIRED_RUNS_SQL).bind(0_i64).bind(0_i64)).await;
        assert!(expired.contains("INDEX runs_unfinished_lease"), "{expired}");
        let by_age = plan_of(&store, explain(PRUNE_BY_AGE_SQL).bind(0_i64).bind(10_i64)).await;
        assert!(by_age.contains("INDEX runs_finished_age"), "{by_age}");

        let cursor = JobCursor { next_run_time: Some(at(0)), id: "a".to_string() };
        let page = JobQuery { paused: Some(false), after: Some(cursor), limit: 10 };
        let mut list = list_jobs_query("EXPLAIN QUERY PLAN ", &page);
        assert_seeks(&plan_of(&store, list.build()).await, "jobs", "jobs_list_order");

        let cursor = RunCursor { scheduled_time: at(0), idempotency_key: "k".to_string() };
        let history = RunQuery { status: Some(RunStatus::Failed), after: Some(cursor.clone()), limit: 10 };
        let mut runs = list_runs_query("EXPLAIN QUERY PLAN ", "j", &history);
        assert_seeks(&plan_of(&store, runs.build()).await, "runs", "runs_job_status");
        let history = RunQuery { status: None, after: Some(cursor), limit: 10 };
        let mut runs = list_runs_query("EXPLAIN QUERY PLAN ", "j", &history);
        assert_seeks(&plan_of(&store, runs.build()).await, "runs", "runs_one_per_fire");
    }
}
