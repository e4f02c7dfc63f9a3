//! The PostgreSQL store, for production and for replicas: any number of apsched processes may share one schema
//! (schema in `migrations/postgres/`). Jobs and the run ledger are typed columns; a job's trigger and action are
//! JSONB a person can query with psql. Times are timestamptz, microsecond precision: anything finer is truncated
//! when written, so what a claim returns is exactly what the ledger holds.
//!
//! Replicas never share a fire: a claim locks the due jobs it takes (`FOR UPDATE SKIP LOCKED`, so replicas claim
//! side by side instead of queueing), and the ledger's unique (job_id, scheduled_time) admits each fire once. A
//! trigger on `jobs` NOTIFYs every change (see the migration); `watch_changes` LISTENs and wakes the scheduler.
//!
//! The search path picks the schema, e.g. `postgres://host/db?options[search_path]=apsched`.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, SubsecRound, Utc};
use sqlx::postgres::{PgArguments, PgConnectOptions, PgListener, PgPoolOptions};
use sqlx::types::Json;
use sqlx::{FromRow, PgPool, Postgres, QueryBuilder};
use tokio_util::sync::CancellationToken;

use super::recorder::RunRecorder;
use super::{FirePlan, JobQuery, JobStore, Planner, Prune, RunQuery, StoreError, StoreResult};
use crate::backoff::Backoff;
use crate::job::{Job, Run, RunStatus};

/// Connections per store unless `[jobstores.NAME] pool_size` says: the loop, lease upkeep, deliveries recording
/// their progress and the API all draw from it.
pub const DEFAULT_POOL_SIZE: u32 = 10;
/// How long a call waits for a connection: short, so an unreachable database turns into `Unavailable` (and a 503
/// from `/readyz`) quickly, and the loop's backoff, not the pool, paces the retries.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);
/// No statement of this store waits longer for a row lock: claims hold theirs for milliseconds, so a longer wait
/// means something is stuck, and the caller retries rather than hangs.
const LOCK_TIMEOUT: &str = "10s";
/// Backoff while the LISTEN connection cannot be re-established.
const LISTEN_RETRY_MIN: Duration = Duration::from_millis(200);
const LISTEN_RETRY_MAX: Duration = Duration::from_secs(10);
/// The list order's key, verbatim as in the `jobs_list_order` index so PostgreSQL uses it.
const LIST_ORDER_KEY: &str = "COALESCE(next_run_time, 'infinity'::timestamptz)";

const DUE: &str = "NOT paused AND next_run_time IS NOT NULL AND next_run_time <= $1";
/// The claim's jobs: rows another replica is claiming are skipped, not waited for.
const CLAIM_DUE_SQL: &str = "SELECT * FROM jobs WHERE NOT paused AND next_run_time IS NOT NULL \
    AND next_run_time <= $1 ORDER BY next_run_time, id LIMIT $2 FOR UPDATE SKIP LOCKED";
const EARLIEST_NEXT_RUN_TIME_SQL: &str = "SELECT next_run_time FROM jobs WHERE NOT paused \
    AND next_run_time IS NOT NULL ORDER BY next_run_time LIMIT 1";
const ACTIVE_RUNS_SQL: &str = "SELECT job_id, COUNT(*) FROM runs WHERE job_id = ANY($1) \
    AND status IN ('pending', 'running') GROUP BY job_id";
/// Every planned row in one statement (arrays, so any number of rows is 16 parameters); a fire already in the
/// ledger is left out, and RETURNING names the rows that went in.
const INSERT_RUNS_SQL: &str = "INSERT INTO runs (idempotency_key, job_id, scheduled_time, status, attempts, \
    started_at, finished_at, http_status, duration_ms, error, response_excerpt, action, executor, timezone, \
    lease_expires_at, created_at) \
    SELECT * FROM UNNEST($1::text[], $2::text[], $3::timestamptz[], $4::text[], $5::int8[], $6::timestamptz[], \
    $7::timestamptz[], $8::int4[], $9::int8[], $10::text[], $11::text[], $12::jsonb[], $13::text[], $14::text[], \
    $15::timestamptz[], $16::timestamptz[]) \
    ON CONFLICT (job_id, scheduled_time) DO NOTHING RETURNING idempotency_key";
const ADVANCE_JOBS_SQL: &str = "UPDATE jobs SET next_run_time = advanced.next_run_time \
    FROM UNNEST($1::text[], $2::timestamptz[]) AS advanced (id, next_run_time) WHERE jobs.id = advanced.id";
/// Every run of the recorder's batch found by its key and its fire, as the other stores find it, and its progress
/// (`Run::take_progress`) saved; `$1`…`$12` are arrays.
const UPDATE_RUNS_SQL: &str = "UPDATE runs SET status = u.status, attempts = u.attempts, \
    started_at = u.started_at, finished_at = u.finished_at, http_status = u.http_status, \
    duration_ms = u.duration_ms, error = u.error, response_excerpt = u.response_excerpt, \
    lease_expires_at = u.lease_expires_at \
    FROM UNNEST($1::text[], $2::text[], $3::timestamptz[], $4::text[], $5::int8[], $6::timestamptz[], \
    $7::timestamptz[], $8::int4[], $9::int8[], $10::text[], $11::text[], $12::timestamptz[]) \
    AS u (idempotency_key, job_id, scheduled_time, status, attempts, started_at, finished_at, http_status, \
    duration_ms, error, response_excerpt, lease_expires_at) \
    WHERE runs.idempotency_key = u.idempotency_key AND runs.job_id = u.job_id \
    AND runs.scheduled_time = u.scheduled_time RETURNING runs.idempotency_key";
/// Taking over is atomic across replicas: each expired run is locked by exactly one taker.
const TAKE_EXPIRED_RUNS_SQL: &str = "UPDATE runs SET lease_expires_at = $1 WHERE idempotency_key IN (\
    SELECT idempotency_key FROM runs WHERE status IN ('pending', 'running') \
    AND (lease_expires_at IS NULL OR lease_expires_at < $2) FOR UPDATE SKIP LOCKED) RETURNING *";
/// Finished runs older than the cutoff (`finished_at`, else `created_at`), a batch at a time; SKIP LOCKED leaves
/// rows another replica's pruner holds to it.
const PRUNE_BY_AGE_SQL: &str = "DELETE FROM runs WHERE idempotency_key IN (SELECT idempotency_key FROM runs \
    WHERE status NOT IN ('pending', 'running') AND COALESCE(finished_at, created_at) < $1 LIMIT $2 \
    FOR UPDATE SKIP LOCKED)";
/// Each job's finished runs beyond its newest N by scheduled time.
const PRUNE_BY_COUNT_SQL: &str = "DELETE FROM runs WHERE idempotency_key IN (SELECT idempotency_key FROM \
    (SELECT idempotency_key, ROW_NUMBER() OVER (PARTITION BY job_id ORDER BY scheduled_time DESC) AS newer \
    FROM runs WHERE status NOT IN ('pending', 'running')) AS ranked WHERE newer > $1 LIMIT $2)";
const EXTEND_LEASES_SQL: &str = "UPDATE runs SET lease_expires_at = $1 WHERE status IN ('pending', 'running') \
    AND idempotency_key = ANY($2)";

#[derive(Clone, Debug)]
pub struct PostgresStore {
    pool: PgPool,
    options: PgConnectOptions,
    /// The NOTIFY channel of this store's schema (as the migration's trigger names it).
    channel: String,
    /// This store's connections write it into every notification they cause, so it can ignore its own.
    origin: String,
    /// `update_run` hands its run to the recorder, which writes all waiting ones in one statement (`save_runs`).
    recorder: RunRecorder,
}

impl PostgresStore {
    /// Connect with up to `pool_size` connections and migrate. `url`: `postgres://user@host:5432/db`, optionally
    /// with `?options[search_path]=SCHEMA`.
    pub async fn connect(url: &str, pool_size: u32) -> StoreResult<PostgresStore> {
        let origin = uuid::Uuid::new_v4().simple().to_string();
        let options = url
            .parse::<PgConnectOptions>()
            .map_err(|err| StoreError::Unavailable(format!("bad PostgreSQL url: {err}")))?
            .options([("lock_timeout", LOCK_TIMEOUT), ("apsched.origin", origin.as_str())]);
        let pool = PgPoolOptions::new()
            .max_connections(pool_size.max(1))
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options.clone())
            .await
            .map_err(store_error)?;
        let schema: Option<String> =
            sqlx::query_scalar("SELECT current_schema()").fetch_one(&pool).await.map_err(store_error)?;
        let schema = schema.ok_or_else(|| {
            StoreError::Unavailable("no schema to work in: the search_path names none that exists".to_string())
        })?;
        let recorder = {
            let pool = pool.clone();
            RunRecorder::spawn(move |runs| {
                let pool = pool.clone();
                async move { save_runs(&pool, &runs).await }
            })
        };
        let store = PostgresStore { pool, options, channel: channel_of(&schema), origin, recorder };
        store.migrate().await?;
        Ok(store)
    }

    /// Bring the schema up to date; `connect` already does. Replicas starting together take turns (sqlx holds an
    /// advisory lock while migrating).
    pub async fn migrate(&self) -> StoreResult<()> {
        sqlx::migrate!("migrations/postgres").run(&self.pool).await.map_err(|err| match err {
            sqlx::migrate::MigrateError::Execute(err) => store_error(err),
            other => StoreError::Corrupt(format!("PostgreSQL schema: {other}")),
        })
    }

    /// Close the pool, waiting for connections in use.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Connected and listening on this store's channel.
    async fn listen(&self, pool: &PgPool) -> Result<PgListener, sqlx::Error> {
        let mut listener = PgListener::connect_with(pool).await?;
        listener.listen(&self.channel).await?;
        Ok(listener)
    }

    /// Wait until whoever holds the lock on job `id` (another replica's claim) is done with it.
    async fn wait_for_lock_holder(&self, id: &str) -> StoreResult<()> {
        sqlx::query("SELECT 1 FROM jobs WHERE id = $1 FOR UPDATE")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(store_error)?;
        Ok(())
    }
}

/// As the migration's trigger computes it: `left('apsched_jobs_' || schema, 63)` (a channel name is at most 63
/// bytes; schema names are ASCII in practice).
fn channel_of(schema: &str) -> String {
    format!("apsched_jobs_{schema}").chars().take(63).collect()
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

/// timestamptz keeps microseconds; truncate here so that what is returned equals what is stored.
fn pg_time(time: DateTime<Utc>) -> DateTime<Utc> {
    time.trunc_subsecs(6)
}

fn narrow<T: TryFrom<i64>>(value: i64, column: &str) -> StoreResult<T> {
    T::try_from(value).map_err(|_| StoreError::Corrupt(format!("{column}: {value} is out of range")))
}

fn to_json<T: serde::Serialize>(value: &T, what: &str) -> StoreResult<serde_json::Value> {
    serde_json::to_value(value).map_err(|err| StoreError::Corrupt(format!("cannot encode {what}: {err}")))
}

fn from_json<T: serde::de::DeserializeOwned>(value: serde_json::Value, what: &str) -> StoreResult<T> {
    serde_json::from_value(value).map_err(|err| StoreError::Corrupt(format!("{what}: {err}")))
}

fn limit_of(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

#[derive(FromRow)]
struct JobRow {
    id: String,
    name: Option<String>,
    trigger: serde_json::Value,
    action: serde_json::Value,
    coalesce: bool,
    max_instances: i64,
    misfire_grace_time: Option<i64>,
    executor: String,
    jobstore: String,
    next_run_time: Option<DateTime<Utc>>,
    paused: bool,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl TryFrom<JobRow> for Job {
    type Error = StoreError;

    fn try_from(row: JobRow) -> StoreResult<Job> {
        let what = |column: &str| format!("job {:?} {column}", row.id);
        Ok(Job {
            trigger: from_json(row.trigger, &what("trigger"))?,
            action: from_json(row.action, &what("action"))?,
            max_instances: narrow(row.max_instances, &what("max_instances"))?,
            misfire_grace_time: row
                .misfire_grace_time
                .map(|seconds| narrow(seconds, &what("misfire_grace_time")))
                .transpose()?,
            next_run_time: row.next_run_time,
            created_at: row.created_at,
            updated_at: row.updated_at,
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
    scheduled_time: DateTime<Utc>,
    status: String,
    attempts: i64,
    started_at: Option<DateTime<Utc>>,
    finished_at: Option<DateTime<Utc>>,
    http_status: Option<i32>,
    duration_ms: Option<i64>,
    error: Option<String>,
    response_excerpt: Option<String>,
    action: serde_json::Value,
    executor: String,
    timezone: String,
    lease_expires_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
}

impl TryFrom<RunRow> for Run {
    type Error = StoreError;

    fn try_from(row: RunRow) -> StoreResult<Run> {
        let what = |column: &str| format!("run {:?} {column}", row.idempotency_key);
        Ok(Run {
            status: RunStatus::parse(&row.status)
                .ok_or_else(|| StoreError::Corrupt(format!("{}: unknown {:?}", what("status"), row.status)))?,
            attempts: narrow(row.attempts, &what("attempts"))?,
            http_status: row.http_status.map(|status| narrow(i64::from(status), &what("http_status"))).transpose()?,
            duration_ms: row.duration_ms.map(|ms| narrow(ms, &what("duration_ms"))).transpose()?,
            action: from_json(row.action, &what("action"))?,
            scheduled_time: row.scheduled_time,
            started_at: row.started_at,
            finished_at: row.finished_at,
            lease_expires_at: row.lease_expires_at,
            created_at: row.created_at,
            idempotency_key: row.idempotency_key,
            job_id: row.job_id,
            error: row.error,
            response_excerpt: row.response_excerpt,
            executor: row.executor,
            timezone: row.timezone,
        })
    }
}

fn runs_from_rows(rows: Vec<RunRow>) -> StoreResult<Vec<Run>> {
    rows.into_iter().map(Run::try_from).collect()
}

type PgQuery<'q> = sqlx::query::Query<'q, Postgres, PgArguments>;

/// Binds every column of `jobs` as $1…$13 in table order.
fn bind_job<'q>(query: PgQuery<'q>, job: &Job) -> StoreResult<PgQuery<'q>> {
    Ok(query
        .bind(job.id.clone())
        .bind(job.name.clone())
        .bind(Json(to_json(&job.trigger, "trigger")?))
        .bind(Json(to_json(&job.action, "action")?))
        .bind(job.coalesce)
        .bind(i64::from(job.max_instances))
        .bind(job.misfire_grace_time.map(i64::from))
        .bind(job.executor.clone())
        .bind(job.jobstore.clone())
        .bind(job.next_run_time.map(pg_time))
        .bind(job.paused)
        .bind(pg_time(job.created_at))
        .bind(pg_time(job.updated_at)))
}

const INSERT_JOB_SQL: &str = "INSERT INTO jobs (id, name, trigger, action, coalesce, max_instances, \
    misfire_grace_time, executor, jobstore, next_run_time, paused, created_at, updated_at) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)";
/// Every column but created_at, which the replaced job keeps.
const REPLACE_JOB_SQL: &str = "INSERT INTO jobs (id, name, trigger, action, coalesce, max_instances, \
    misfire_grace_time, executor, jobstore, next_run_time, paused, created_at, updated_at) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) \
    ON CONFLICT (id) DO UPDATE SET name = excluded.name, trigger = excluded.trigger, action = excluded.action, \
    coalesce = excluded.coalesce, max_instances = excluded.max_instances, \
    misfire_grace_time = excluded.misfire_grace_time, executor = excluded.executor, jobstore = excluded.jobstore, \
    next_run_time = excluded.next_run_time, paused = excluded.paused, updated_at = excluded.updated_at";
const UPDATE_JOB_SQL: &str = "UPDATE jobs SET name = $2, trigger = $3, action = $4, coalesce = $5, \
    max_instances = $6, misfire_grace_time = $7, executor = $8, jobstore = $9, next_run_time = $10, paused = $11, \
    created_at = $12, updated_at = $13 WHERE id = $1";

/// Binds every column of `runs` as $1…$16 in table order.
fn bind_run<'q>(query: PgQuery<'q>, run: &Run) -> StoreResult<PgQuery<'q>> {
    Ok(query
        .bind(run.idempotency_key.clone())
        .bind(run.job_id.clone())
        .bind(pg_time(run.scheduled_time))
        .bind(run.status.as_str())
        .bind(i64::from(run.attempts))
        .bind(run.started_at.map(pg_time))
        .bind(run.finished_at.map(pg_time))
        .bind(run.http_status.map(i32::from))
        // Beyond i64::MAX ms (292 million years) nothing is lost by saturating.
        .bind(run.duration_ms.map(|ms| i64::try_from(ms).unwrap_or(i64::MAX)))
        .bind(run.error.clone())
        .bind(run.response_excerpt.clone())
        .bind(Json(to_json(&run.action, "run action")?))
        .bind(run.executor.clone())
        .bind(run.timezone.clone())
        .bind(run.lease_expires_at.map(pg_time))
        .bind(pg_time(run.created_at)))
}

const INSERT_RUN_SQL: &str = "INSERT INTO runs (idempotency_key, job_id, scheduled_time, status, attempts, \
    started_at, finished_at, http_status, duration_ms, error, response_excerpt, action, executor, timezone, \
    lease_expires_at, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)";
type PgScalarQuery<'q> = sqlx::query::QueryScalar<'q, Postgres, String, PgArguments>;

/// Binds, as arrays, the columns that find each run (its key and fire) and its progress before its lease: `$1`…`$11`
/// of both `INSERT_RUNS_SQL` and `UPDATE_RUNS_SQL`.
fn bind_run_progress_arrays<'q>(query: PgScalarQuery<'q>, runs: &[Run]) -> PgScalarQuery<'q> {
    let column = |f: &dyn Fn(&Run) -> String| runs.iter().map(f).collect::<Vec<String>>();
    let times = |f: &dyn Fn(&Run) -> Option<DateTime<Utc>>| {
        runs.iter().map(|run| f(run).map(pg_time)).collect::<Vec<Option<DateTime<Utc>>>>()
    };
    query
        .bind(column(&|run| run.idempotency_key.clone()))
        .bind(column(&|run| run.job_id.clone()))
        .bind(runs.iter().map(|run| pg_time(run.scheduled_time)).collect::<Vec<_>>())
        .bind(column(&|run| run.status.as_str().to_string()))
        .bind(runs.iter().map(|run| i64::from(run.attempts)).collect::<Vec<_>>())
        .bind(times(&|run| run.started_at))
        .bind(times(&|run| run.finished_at))
        .bind(runs.iter().map(|run| run.http_status.map(i32::from)).collect::<Vec<_>>())
        // Beyond i64::MAX ms (292 million years) nothing is lost by saturating.
        .bind(
            runs.iter().map(|run| run.duration_ms.map(|ms| i64::try_from(ms).unwrap_or(i64::MAX))).collect::<Vec<_>>(),
        )
        .bind(runs.iter().map(|run| run.error.clone()).collect::<Vec<_>>())
        .bind(runs.iter().map(|run| run.response_excerpt.clone()).collect::<Vec<_>>())
}

/// Insert `runs` in one statement unless their fire is taken; the keys of those inserted.
async fn insert_runs_unless_taken(tx: &mut sqlx::PgConnection, runs: &[Run]) -> StoreResult<HashSet<String>> {
    let actions =
        runs.iter().map(|run| to_json(&run.action, "run action")).collect::<StoreResult<Vec<serde_json::Value>>>()?;
    let keys: Vec<String> = bind_run_progress_arrays(sqlx::query_scalar(INSERT_RUNS_SQL), runs)
        .bind(actions)
        .bind(runs.iter().map(|run| run.executor.clone()).collect::<Vec<_>>())
        .bind(runs.iter().map(|run| run.timezone.clone()).collect::<Vec<_>>())
        .bind(runs.iter().map(|run| run.lease_expires_at.map(pg_time)).collect::<Vec<_>>())
        .bind(runs.iter().map(|run| pg_time(run.created_at)).collect::<Vec<_>>())
        .fetch_all(&mut *tx)
        .await
        .map_err(store_error)?;
    Ok(keys.into_iter().collect())
}

/// Save the progress of every run in `runs` in one statement (the recorder's batch); the keys of the runs found.
async fn save_runs(pool: &PgPool, runs: &[Run]) -> StoreResult<HashSet<String>> {
    let keys: Vec<String> = bind_run_progress_arrays(sqlx::query_scalar(UPDATE_RUNS_SQL), runs)
        .bind(runs.iter().map(|run| run.lease_expires_at.map(pg_time)).collect::<Vec<_>>())
        .fetch_all(pool)
        .await
        .map_err(store_error)?;
    Ok(keys.into_iter().collect())
}

fn list_jobs_query(prefix: &str, query: &JobQuery) -> QueryBuilder<Postgres> {
    let mut sql = QueryBuilder::<Postgres>::new(format!("{prefix}SELECT * FROM jobs WHERE TRUE"));
    if let Some(paused) = query.paused {
        sql.push(" AND paused = ").push_bind(paused);
    }
    if let Some(cursor) = &query.after {
        // No next run time sorts as 'infinity', last, as in the index.
        sql.push(format_args!(" AND ({LIST_ORDER_KEY}, id) > (COALESCE("))
            .push_bind(cursor.next_run_time.map(pg_time))
            .push("::timestamptz, 'infinity'::timestamptz), ")
            .push_bind(cursor.id.clone())
            .push(")");
    }
    sql.push(format_args!(" ORDER BY {LIST_ORDER_KEY}, id LIMIT ")).push_bind(limit_of(query.limit));
    sql
}

fn list_runs_query(prefix: &str, job_id: &str, query: &RunQuery) -> QueryBuilder<Postgres> {
    let mut sql = QueryBuilder::<Postgres>::new(format!("{prefix}SELECT * FROM runs WHERE job_id = "));
    sql.push_bind(job_id.to_string());
    if let Some(status) = query.status {
        sql.push(" AND status = ").push_bind(status.as_str());
    }
    if let Some(cursor) = &query.after {
        sql.push(" AND (scheduled_time, idempotency_key) < (").push_bind(pg_time(cursor.scheduled_time));
        sql.push(", ").push_bind(cursor.idempotency_key.clone()).push(")");
    }
    // A job has one run per scheduled time, so the time alone orders its history.
    sql.push(" ORDER BY scheduled_time DESC LIMIT ").push_bind(limit_of(query.limit));
    sql
}

#[async_trait]
impl JobStore for PostgresStore {
    fn kind(&self) -> crate::store::StoreType {
        crate::store::StoreType::Postgres
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await.map_err(store_error)?;
        Ok(())
    }

    async fn add_job(&self, job: &Job, replace_existing: bool) -> StoreResult<()> {
        let sql = if replace_existing { REPLACE_JOB_SQL } else { INSERT_JOB_SQL };
        match bind_job(sqlx::query(sql), job)?.execute(&self.pool).await {
            Ok(_) => Ok(()),
            Err(err) if is_unique_violation(&err) => Err(StoreError::Conflict(format!("job {:?} exists", job.id))),
            Err(err) => Err(store_error(err)),
        }
    }

    async fn update_job(&self, job: &Job) -> StoreResult<()> {
        let result = bind_job(sqlx::query(UPDATE_JOB_SQL), job)?.execute(&self.pool).await.map_err(store_error)?;
        if result.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    async fn get_job(&self, id: &str) -> StoreResult<Option<Job>> {
        let row: Option<JobRow> = sqlx::query_as("SELECT * FROM jobs WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(store_error)?;
        row.map(Job::try_from).transpose()
    }

    async fn remove_job(&self, id: &str) -> StoreResult<bool> {
        let result =
            sqlx::query("DELETE FROM jobs WHERE id = $1").bind(id).execute(&self.pool).await.map_err(store_error)?;
        Ok(result.rows_affected() > 0)
    }

    async fn remove_all_jobs(&self) -> StoreResult<u64> {
        let result = sqlx::query("DELETE FROM jobs").execute(&self.pool).await.map_err(store_error)?;
        Ok(result.rows_affected())
    }

    async fn list_jobs(&self, query: &JobQuery) -> StoreResult<Vec<Job>> {
        let mut sql = list_jobs_query("", query);
        let rows: Vec<JobRow> = sql.build_query_as().fetch_all(&self.pool).await.map_err(store_error)?;
        rows.into_iter().map(Job::try_from).collect()
    }

    async fn count_jobs(&self) -> StoreResult<u64> {
        let count: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM jobs").fetch_one(&self.pool).await.map_err(store_error)?;
        narrow(count, "job count")
    }

    async fn earliest_next_run_time(&self) -> StoreResult<Option<DateTime<Utc>>> {
        sqlx::query_scalar(EARLIEST_NEXT_RUN_TIME_SQL).fetch_optional(&self.pool).await.map_err(store_error)
    }

    async fn claim_due(
        &self,
        now: DateTime<Utc>,
        limit: usize,
        lease_until: DateTime<Utc>,
        planner: &dyn Planner,
    ) -> StoreResult<Vec<Run>> {
        let (now, lease_until) = (pg_time(now), pg_time(lease_until));
        let mut tx = self.pool.begin().await.map_err(store_error)?;
        let due: Vec<JobRow> = sqlx::query_as(CLAIM_DUE_SQL)
            .bind(now)
            .bind(limit_of(limit))
            .fetch_all(&mut *tx)
            .await
            .map_err(store_error)?;
        if due.is_empty() {
            // Due jobs that were skipped are another replica's claim in progress. Returning at once would have the
            // loop see them still due and spin until that claim commits; wait for it instead (it takes ms).
            let claimed_elsewhere: Option<String> = if limit == 0 {
                None
            } else {
                sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                    "SELECT id FROM jobs WHERE {DUE} ORDER BY next_run_time, id LIMIT 1"
                )))
                .bind(now)
                .fetch_optional(&mut *tx)
                .await
                .map_err(store_error)?
            };
            tx.commit().await.map_err(store_error)?;
            if let Some(id) = claimed_elsewhere {
                self.wait_for_lock_holder(&id).await?;
            }
            return Ok(Vec::new());
        }

        let ids: Vec<String> = due.iter().map(|row| row.id.clone()).collect();
        let active: HashMap<String, i64> = sqlx::query_as(ACTIVE_RUNS_SQL)
            .bind(&ids)
            .fetch_all(&mut *tx)
            .await
            .map_err(store_error)?
            .into_iter()
            .collect();
        let mut planned = Vec::new();
        let (mut advanced_ids, mut advanced_times) = (Vec::new(), Vec::new());
        let mut finished_ids = Vec::new();
        for row in due {
            let id = row.id.clone();
            let job = match Job::try_from(row) {
                Ok(job) => job,
                Err(err) => {
                    // A row that cannot be read can never be planned; left due, it would hold the head of every
                    // claim and wake the scheduler in a loop. Park it (no next run time) and leave it for a person.
                    tracing::error!(job_id = %id, error = %err, "unreadable job parked: next_run_time cleared");
                    advanced_ids.push(id);
                    advanced_times.push(None);
                    continue;
                }
            };
            let active_runs = active.get(&job.id).copied().unwrap_or(0);
            let FirePlan { runs, next_run_time } =
                planner.plan(&job, u32::try_from(active_runs).unwrap_or(u32::MAX), now);
            for mut run in runs {
                if run.status.is_unfinished() {
                    run.lease_expires_at = Some(lease_until);
                }
                normalize_times(&mut run);
                planned.push(run);
            }
            match next_run_time {
                Some(next) => {
                    advanced_ids.push(job.id);
                    advanced_times.push(Some(pg_time(next)));
                }
                None => finished_ids.push(job.id),
            }
        }
        let inserted =
            if planned.is_empty() { HashSet::new() } else { insert_runs_unless_taken(&mut tx, &planned).await? };
        if !advanced_ids.is_empty() {
            sqlx::query(ADVANCE_JOBS_SQL)
                .bind(&advanced_ids)
                .bind(&advanced_times)
                .execute(&mut *tx)
                .await
                .map_err(store_error)?;
        }
        if !finished_ids.is_empty() {
            sqlx::query("DELETE FROM jobs WHERE id = ANY($1)")
                .bind(&finished_ids)
                .execute(&mut *tx)
                .await
                .map_err(store_error)?;
        }
        tx.commit().await.map_err(store_error)?;
        // Every inserted run, in plan order: the scheduler delivers the pending ones and reports the rest.
        Ok(planned.into_iter().filter(|run| inserted.contains(&run.idempotency_key)).collect())
    }

    async fn insert_run(&self, run: &Run) -> StoreResult<()> {
        match bind_run(sqlx::query(INSERT_RUN_SQL), run)?.execute(&self.pool).await {
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
        let rows: Vec<RunRow> = sqlx::query_as(TAKE_EXPIRED_RUNS_SQL)
            .bind(pg_time(lease_until))
            .bind(pg_time(now))
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
        sqlx::query(EXTEND_LEASES_SQL)
            .bind(pg_time(lease_until))
            .bind(idempotency_keys)
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
        let mut left = i64::try_from(prune.limit).unwrap_or(i64::MAX);
        if left == 0 || (prune.finished_before.is_none() && prune.keep_per_job.is_none()) {
            return Ok(0);
        }
        let mut tx = self.pool.begin().await.map_err(store_error)?;
        let mut deleted = 0;
        if let Some(cutoff) = prune.finished_before {
            let result =
                sqlx::query(PRUNE_BY_AGE_SQL).bind(cutoff).bind(left).execute(&mut *tx).await.map_err(store_error)?;
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

    /// LISTEN on the schema's channel and wake at every change another process made. A lost connection is
    /// re-established (with backoff while the database is away); what changed while nobody listened was not
    /// heard, so every (re)connection wakes the scheduler once to look again.
    async fn watch_changes(&self, stop: CancellationToken, wake: Arc<dyn Fn() + Send + Sync>) {
        // Its own connection: a listener holds one for good, which must not starve the store's pool.
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .max_lifetime(None)
            .idle_timeout(None)
            .connect_lazy_with(self.options.clone());
        let mut backoff = Backoff::new(LISTEN_RETRY_MIN, LISTEN_RETRY_MAX);
        loop {
            let connected = tokio::select! {
                _ = stop.cancelled() => return,
                connected = self.listen(&pool) => connected,
            };
            let mut listener = match connected {
                Ok(listener) => listener,
                Err(err) => {
                    let retry_in = backoff.next_wait();
                    tracing::warn!(error = %err, ?retry_in, "cannot LISTEN for job changes");
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(retry_in) => continue,
                    }
                }
            };
            backoff.reset();
            wake();
            loop {
                let received = tokio::select! {
                    _ = stop.cancelled() => return,
                    received = listener.try_recv() => received,
                };
                match received {
                    Ok(Some(notification)) => {
                        if notification.payload() != self.origin {
                            wake();
                        }
                    }
                    // Reconnected and listening again; changes in between were missed.
                    Ok(None) => wake(),
                    Err(err) => {
                        tracing::warn!(error = %err, "lost the LISTEN connection");
                        break;
                    }
                }
            }
        }
    }
}

fn normalize_times(run: &mut Run) {
    run.scheduled_time = pg_time(run.scheduled_time);
    run.started_at = run.started_at.map(pg_time);
    run.finished_at = run.finished_at.map(pg_time);
    run.lease_expires_at = run.lease_expires_at.map(pg_time);
    run.created_at = pg_time(run.created_at);
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::sync::Mutex;

    use chrono::Duration;
    use chrono_tz::Tz;
    use tokio::sync::mpsc;

    use super::*;
    use crate::store::JobCursor;
    use crate::store::contract::{Advance, ScratchSchema, at, job, run};

    /// Bound for what a test waits for (a notification, a claim finishing): generous for a loaded CI machine.
    const PATIENCE: std::time::Duration = std::time::Duration::from_secs(20);

    async fn replica(schema: &ScratchSchema) -> PostgresStore {
        PostgresStore::connect(&schema.url, 4).await.expect("connect to the scratch schema")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_replicas_never_share_a_fire() {
        const JOBS: i64 = 60;
        let schema = ScratchSchema::create().await;
        let replicas = [replica(&schema).await, replica(&schema).await, replica(&schema).await];
        for index in 0..JOBS {
            replicas[0].add_job(&job(&format!("job-{index:02}"), Some(at(-index))), false).await.unwrap();
        }
        let start = Arc::new(tokio::sync::Barrier::new(replicas.len()));
        let claimers = replicas.clone().map(|store| {
            let start = start.clone();
            tokio::spawn(async move {
                start.wait().await;
                let mut fires = Vec::new();
                loop {
                    // Small batches, so the claimers interleave many times.
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
    }

    /// Records the active runs the claim reports, and plans one pending fire.
    struct CountActive(Mutex<Vec<u32>>);

    impl Planner for CountActive {
        fn plan(&self, job: &Job, active_runs: u32, now: DateTime<Utc>) -> FirePlan {
            self.0.lock().unwrap().push(active_runs);
            let scheduled = job.next_run_time.unwrap();
            FirePlan {
                runs: vec![Run::new(job, scheduled, RunStatus::Pending, now, Tz::UTC)],
                next_run_time: Some(scheduled + Duration::seconds(1)),
            }
        }
    }

    #[tokio::test]
    async fn max_instances_counts_the_runs_every_replica_has_in_hand() {
        let schema = ScratchSchema::create().await;
        let (first, second) = (replica(&schema).await, replica(&schema).await);
        first.add_job(&job("j", Some(at(0))), false).await.unwrap();
        let planner = CountActive(Mutex::new(Vec::new()));
        assert_eq!(first.claim_due(at(0), 10, at(30), &planner).await.unwrap().len(), 1);
        assert_eq!(second.claim_due(at(1), 10, at(31), &planner).await.unwrap().len(), 1);
        assert_eq!(*planner.0.lock().unwrap(), [0, 1], "the second replica sees the first one's pending fire");
    }

    /// Counts wake-ups of one store's watcher.
    struct Watcher {
        woken: mpsc::UnboundedReceiver<()>,
        stop: CancellationToken,
    }

    impl Watcher {
        async fn start(store: &PostgresStore) -> Watcher {
            let (sender, mut woken) = mpsc::unbounded_channel();
            let stop = CancellationToken::new();
            let (watched, until) = (store.clone(), stop.clone());
            tokio::spawn(async move {
                watched
                    .watch_changes(
                        until,
                        Arc::new(move || {
                            let _ = sender.send(());
                        }),
                    )
                    .await;
            });
            // Listening: every (re)connection wakes once.
            tokio::time::timeout(PATIENCE, woken.recv()).await.expect("the watcher connects");
            Watcher { woken, stop }
        }

        async fn next(&mut self) {
            tokio::time::timeout(PATIENCE, self.woken.recv()).await.expect("woken by the change");
        }

        fn pending(&mut self) -> usize {
            std::iter::from_fn(|| self.woken.try_recv().ok()).count()
        }
    }

    impl Drop for Watcher {
        fn drop(&mut self) {
            self.stop.cancel();
        }
    }

    /// Notifications reach each listener in commit order, so once a later change has arrived, an earlier one that
    /// was going to wake a watcher would have done so already: the counts below need no sleeps.
    #[tokio::test]
    async fn a_change_wakes_the_other_replicas_not_its_own_and_a_claim_that_advances_jobs_wakes_nobody() {
        let schema = ScratchSchema::create().await;
        let (first, second) = (replica(&schema).await, replica(&schema).await);
        let (mut first_watcher, mut second_watcher) = (Watcher::start(&first).await, Watcher::start(&second).await);

        first.add_job(&job("a", Some(at(0))), false).await.unwrap();
        second_watcher.next().await;
        assert_eq!(first.claim_due(at(0), 10, at(30), &Advance { step: Duration::hours(1) }).await.unwrap().len(), 1);
        let mut paused = first.get_job("a").await.unwrap().unwrap();
        paused.paused = true;
        second.update_job(&paused).await.unwrap();
        first_watcher.next().await;
        assert_eq!(first_watcher.pending(), 0, "the first replica was woken by its own add or its claim");

        first.remove_job("a").await.unwrap();
        second_watcher.next().await;
        second.remove_all_jobs().await.unwrap();
        first_watcher.next().await;
        assert_eq!(second_watcher.pending(), 0, "the claim or the second replica's own changes woke it");
    }

    #[tokio::test]
    async fn an_empty_claim_waits_for_the_replica_whose_claim_holds_the_due_jobs() {
        let schema = ScratchSchema::create().await;
        let store = replica(&schema).await;
        store.add_job(&job("held", Some(at(-1))), false).await.unwrap();
        // Another replica's claim in progress: the due job locked in an open transaction.
        let mut other = store.pool.begin().await.unwrap();
        sqlx::query("SELECT 1 FROM jobs WHERE id = 'held' FOR UPDATE").execute(&mut *other).await.unwrap();

        let claimer = store.clone();
        let mut claim = tokio::spawn(async move {
            claimer.claim_due(at(0), 10, at(30), &Advance { step: Duration::hours(1) }).await.unwrap()
        });
        // Without the wait the claim would return (empty) in milliseconds, and the loop would spin on the job.
        let still_waiting = tokio::time::timeout(std::time::Duration::from_millis(500), &mut claim).await.is_err();
        assert!(still_waiting, "the claim returned while another replica held the due job");

        sqlx::query("UPDATE jobs SET next_run_time = $1 WHERE id = 'held'")
            .bind(at(3599))
            .execute(&mut *other)
            .await
            .unwrap();
        other.commit().await.unwrap();
        let claimed = tokio::time::timeout(PATIENCE, claim).await.expect("the claim ends").unwrap();
        assert!(claimed.is_empty(), "the other replica had claimed it: {claimed:?}");
        assert_eq!(store.earliest_next_run_time().await.unwrap(), Some(at(3599)));
    }

    #[tokio::test]
    async fn times_finer_than_a_microsecond_are_truncated() {
        let schema = ScratchSchema::create().await;
        let store = replica(&schema).await;
        store.add_job(&job("a", Some(at(0) + Duration::nanoseconds(999))), false).await.unwrap();
        assert_eq!(store.get_job("a").await.unwrap().unwrap().next_run_time, Some(at(0)));
        let late = Run { created_at: at(0) + Duration::nanoseconds(1), ..run("a", at(0), RunStatus::Pending) };
        store.insert_run(&late).await.unwrap();
        let stored = store.list_runs("a", &RunQuery { status: None, after: None, limit: 10 }).await.unwrap();
        assert_eq!(stored[0].created_at, at(0));
    }

    #[tokio::test]
    async fn a_job_is_readable_with_psql() {
        let schema = ScratchSchema::create().await;
        let store = replica(&schema).await;
        store.add_job(&job("readable", Some(at(0))), false).await.unwrap();
        let (kind, url, next): (String, String, DateTime<Utc>) =
            sqlx::query_as("SELECT trigger->>'type', action->>'url', next_run_time FROM jobs WHERE id = 'readable'")
                .fetch_one(&store.pool)
                .await
                .unwrap();
        assert_eq!((kind.as_str(), url.as_str(), next), ("date", "http://127.0.0.1:9/readable", at(0)));
    }

    #[tokio::test]
    async fn an_unreadable_due_job_is_parked_and_the_others_still_claimed() {
        let schema = ScratchSchema::create().await;
        let store = replica(&schema).await;
        store.add_job(&job("bad", Some(at(-10))), false).await.unwrap();
        store.add_job(&job("good", Some(at(-5))), false).await.unwrap();
        sqlx::query("UPDATE jobs SET trigger = '{\"type\": \"sundial\"}' WHERE id = 'bad'")
            .execute(&store.pool)
            .await
            .unwrap();

        let claimed = store.claim_due(at(0), 10, at(30), &Advance { step: Duration::seconds(60) }).await.unwrap();
        assert_eq!(claimed.iter().map(|run| run.job_id.as_str()).collect::<Vec<_>>(), ["good"]);
        assert!(matches!(store.get_job("bad").await, Err(StoreError::Corrupt(_))));
        let parked: Option<DateTime<Utc>> =
            sqlx::query_scalar("SELECT next_run_time FROM jobs WHERE id = 'bad'").fetch_one(&store.pool).await.unwrap();
        assert_eq!(parked, None, "kept for a person to inspect, no longer due");
        assert_eq!(store.earliest_next_run_time().await.unwrap(), Some(at(55)));
    }

    #[tokio::test]
    async fn an_unreachable_server_is_unavailable() {
        // Port 9 (discard) on loopback: nothing listens there.
        let result = PostgresStore::connect("postgres://postgres@127.0.0.1:9/test", 1).await;
        assert!(matches!(result, Err(StoreError::Unavailable(_))), "{result:?}");
    }

    /// The plan of `sql` with sequential scans ruled out: an index that can serve the query is then used. (The
    /// tables are empty, so the planner would otherwise rightly prefer a scan.)
    async fn plan_of(store: &PostgresStore, sql: &mut QueryBuilder<Postgres>) -> String {
        let mut connection = store.pool.acquire().await.unwrap();
        sqlx::query("SET enable_seqscan = off").execute(&mut *connection).await.unwrap();
        let rows: Vec<(String,)> = sql.build_query_as().fetch_all(&mut *connection).await.unwrap();
        sqlx::query("RESET enable_seqscan").execute(&mut *connection).await.unwrap();
        rows.into_iter().map(|(line,)| line).collect::<Vec<_>>().join("\n")
    }

    /// `sql` with its parameters written in as literals.
    fn explain(sql: &str) -> QueryBuilder<Postgres> {
        QueryBuilder::new(format!("EXPLAIN {sql}"))
    }

    #[tokio::test]
    async fn the_hot_queries_use_their_indexes() {
        let schema = ScratchSchema::create().await;
        let store = replica(&schema).await;
        let claim = CLAIM_DUE_SQL.replace("$1", "now()").replace("$2", "500");
        let plan = plan_of(&store, &mut explain(&claim)).await;
        assert!(plan.contains("jobs_due"), "{plan}");
        let plan = plan_of(&store, &mut explain(EARLIEST_NEXT_RUN_TIME_SQL)).await;
        assert!(plan.contains("jobs_due"), "{plan}");
        let expired = TAKE_EXPIRED_RUNS_SQL.replace("$1", "now()").replace("$2", "now()");
        let plan = plan_of(&store, &mut explain(&expired)).await;
        assert!(plan.contains("runs_unfinished_lease"), "{plan}");
        let page = JobQuery {
            paused: None,
            after: Some(JobCursor { next_run_time: Some(at(0)), id: "a".to_string() }),
            limit: 10,
        };
        let plan = plan_of(&store, &mut list_jobs_query("EXPLAIN ", &page)).await;
        assert!(plan.contains("jobs_list_order") && plan.contains("Index Cond"), "{plan}");
    }
}
