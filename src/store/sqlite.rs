//! The SQLite dialect, the embedded default: jobs and the run ledger in one file (schema in `migrations/sqlite/`),
//! in typed columns a person can read with the sqlite3 CLI; a job's trigger and action are JSON text.
//!
//! Times are INTEGER microseconds since the Unix epoch (`Micros`): they sort as times do and round-trip
//! `DateTime<Utc>` exactly at microsecond precision. Anything finer than a microsecond is truncated when written.
//!
//! Transactions that read before they write (`claim_due`) start with `BEGIN IMMEDIATE`, taking SQLite's single
//! write lock up front: claimers on the same file then queue on the busy timeout instead of failing on a stale
//! read snapshot, and the ledger's unique (job_id, scheduled_time) catches whatever slips past.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::sqlite::{
    SqliteArguments, SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteQueryResult, SqliteSynchronous,
};
use sqlx::{Arguments, Row, Sqlite, SqliteConnection, SqlitePool};

use super::sql::{
    AuditRow, Claim, Dialect, JobRow, Micros, Param, RUN_PROGRESS_COLUMNS, RunRow, SqlStore, Statement, TimeColumn,
    run_columns, run_params, run_progress_params, store_error, to_json_text,
};
use super::{JobCursor, StoreError, StoreResult};
use crate::job::Run;

/// SQLite has one writer at a time; a few more connections let WAL readers (the API's lists) proceed while the
/// scheduler claims.
const MAX_CONNECTIONS: u32 = 4;
/// How long a writer waits for another before the store reports `Unavailable`; a claim holds the lock for
/// milliseconds, so reaching this means the file is stuck, not busy.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// A cursor without a next run time, in `LIST_ORDER_KEY`'s terms: i64::MAX µs, later than any time chrono
/// represents.
const NO_NEXT_RUN_TIME_KEY: i64 = i64::MAX;

/// Nothing due, as after most wake-ups for an API change: this read says so without taking the write lock.
const ANY_DUE_SQL: &str =
    "SELECT 1 FROM jobs WHERE paused = 0 AND next_run_time IS NOT NULL AND next_run_time <= ? LIMIT 1";
/// Each job's new next run time, from one JSON array of `{id, next_run_time}` (null parks the job).
const ADVANCE_JOBS_SQL: &str = "UPDATE jobs SET next_run_time = u.value ->> 'next_run_time' FROM json_each(?) AS u \
    WHERE jobs.id = u.value ->> 'id'";

/// The SQLite store.
pub type SqliteStore = SqlStore<SqliteDialect>;

/// What the SQLite store does its own way: its SQL, and one writer at a time.
#[derive(Clone, Debug)]
pub struct SqliteDialect {
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
        SqlStore::start(pool, SqliteDialect { writer: Arc::new(tokio::sync::Mutex::new(())) }).await
    }
}

fn is_in_memory(url: &str) -> bool {
    url.contains(":memory:") || url.contains("mode=memory")
}

#[async_trait]
impl Dialect for SqliteDialect {
    const KIND: super::StoreType = super::StoreType::Sqlite;
    type Db = Sqlite;
    type Time = Micros;
    type Json = String;
    type JobRow = JobRow<Micros, String>;
    type RunRow = RunRow<Micros, String, i64>;
    type AuditRow = AuditRow<Micros, String>;
    type NotificationRow = super::sql::NotificationRow<Micros, String>;

    /// Verbatim as in the `jobs_list_order` index so SQLite uses it: jobs without a next run time last.
    const LIST_ORDER_KEY: &'static str = "IFNULL(next_run_time, 9223372036854775807)";
    const EARLIEST_NEXT_RUN_TIME_SQL: &'static str = "SELECT next_run_time FROM jobs WHERE paused = 0 \
        AND next_run_time IS NOT NULL ORDER BY next_run_time LIMIT 1";
    const CLAIM_DUE_SQL: &'static str = "SELECT * FROM jobs WHERE paused = 0 AND next_run_time IS NOT NULL \
        AND next_run_time <= ? ORDER BY next_run_time, id LIMIT ?";
    /// A claim's statements take its jobs and runs as JSON arrays, so their number does not grow with the claim.
    /// Each half from its partial index (`runs_unfinished`, `runs_buffered`).
    const LOAD_SQL: &'static str = "SELECT job_id, COUNT(*) FILTER (WHERE status <> 'buffered'), \
        COUNT(*) FILTER (WHERE status = 'buffered') FROM (\
        SELECT job_id, status FROM runs WHERE job_id IN (SELECT value FROM json_each(?1)) \
        AND status IN ('pending', 'running') UNION ALL \
        SELECT job_id, status FROM runs WHERE job_id IN (SELECT value FROM json_each(?1)) AND status = 'buffered') \
        GROUP BY job_id";
    const RUN_STATUSES_SQL: &'static str =
        "SELECT idempotency_key, status FROM runs WHERE idempotency_key IN (SELECT value FROM json_each(?))";
    const JOB_HEALTH_SQL: &'static str = "SELECT id, CAST(consecutive_failures AS BIGINT), notify IS NOT NULL \
        FROM jobs WHERE id IN (SELECT value FROM json_each(?))";
    const CANCELLED_AMONG_SQL: &'static str = "SELECT idempotency_key FROM runs \
        WHERE idempotency_key IN (SELECT value FROM json_each(?)) AND status = 'cancelled'";
    /// The write transaction (`BEGIN IMMEDIATE`) holds the only write lock.
    const LOCK_BUFFERED_JOBS_SQL: Option<&'static str> = None;
    const DELETE_JOBS_SQL: &'static str = "DELETE FROM jobs WHERE id IN (SELECT value FROM json_each(?))";
    const TAKE_EXPIRED_RUNS_SQL: &'static str = "UPDATE runs SET lease_expires_at = ? \
        WHERE status IN ('pending', 'running') AND (lease_expires_at IS NULL OR lease_expires_at < ?) RETURNING *";
    /// The keys travel as one JSON array, so any number of them is one statement with two parameters.
    const EXTEND_LEASES_SQL: &'static str = "UPDATE runs SET lease_expires_at = ? \
        WHERE status IN ('pending', 'running') AND idempotency_key IN (SELECT value FROM json_each(?))";
    /// The expression is the `runs_finished_age` index's, verbatim.
    const PRUNE_BY_AGE_SQL: &'static str = "DELETE FROM runs WHERE idempotency_key IN (SELECT idempotency_key \
        FROM runs WHERE status NOT IN ('pending', 'running') AND status <> 'buffered' \
        AND IFNULL(finished_at, created_at) < ? LIMIT ?)";
    const BEGIN_WRITE: &'static str = "BEGIN IMMEDIATE";
    /// SQLite's planner takes the index for these without statistics.
    const BEGIN_BY_KEY: &'static str = Self::BEGIN_WRITE;
    /// `BEGIN IMMEDIATE` holds the whole file.
    const LOCK_ROWS: &'static str = "";

    fn bind(arguments: &mut SqliteArguments, param: Param<'_, String>) -> StoreResult<()> {
        match param {
            Param::Text(text) => arguments.add(text),
            Param::Int(value) => arguments.add(value),
            Param::Int32(value) => arguments.add(value),
            Param::Bool(value) => arguments.add(value),
            Param::Time(time) => arguments.add(time.map(Micros::from_time)),
            Param::Json(text) => arguments.add(text),
            Param::NullableJson(text) => arguments.add(text),
            Param::Keys(keys) => arguments.add(to_json_text(&keys, "keys")?),
        }
        .map_err(|err| StoreError::Unavailable(format!("cannot bind a parameter: {err}")))
    }

    fn rows_affected(result: &SqliteQueryResult) -> u64 {
        result.rows_affected()
    }

    fn writer(&self) -> Option<&tokio::sync::Mutex<()>> {
        Some(&*self.writer)
    }

    fn push_after(sql: &mut Statement<Self>, cursor: &JobCursor) -> StoreResult<()> {
        let key = cursor.next_run_time.map(|time| Micros::from_time(time).0).unwrap_or(NO_NEXT_RUN_TIME_KEY);
        let order_key = Self::LIST_ORDER_KEY;
        // The row-value comparison alone would scan the index from its start; the `>=` lets SQLite seek.
        sql.push(&format!(" AND {order_key} >= ")).param(Param::Int(Some(key)))?;
        sql.push(&format!(" AND ({order_key}, id) > (")).param(Param::Int(Some(key)))?;
        sql.push(", ").param(Param::Text(Some(&cursor.id)))?.push(")");
        Ok(())
    }

    async fn begin_claim(&self, pool: &SqlitePool, now: DateTime<Utc>) -> StoreResult<Option<Claim<'_, Self>>> {
        let any_due: Option<i64> = sqlx::query_scalar(ANY_DUE_SQL)
            .bind(Micros::from_time(now))
            .fetch_optional(pool)
            .await
            .map_err(store_error)?;
        if any_due.is_none() {
            return Ok(None);
        }
        let turn = self.writer.lock().await;
        let transaction = pool.begin_with(Self::BEGIN_WRITE).await.map_err(store_error)?;
        Ok(Some(Claim { transaction, turn: Some(turn) }))
    }

    async fn end_empty_claim(
        &self,
        _pool: &SqlitePool,
        claim: Claim<'_, Self>,
        _now: DateTime<Utc>,
        _limit: usize,
    ) -> StoreResult<()> {
        claim.transaction.commit().await.map_err(store_error)
    }

    /// A fresh file just works.
    async fn migrate(pool: &SqlitePool) -> StoreResult<()> {
        sqlx::migrate!("migrations/sqlite").run(pool).await.map_err(|err| match err {
            sqlx::migrate::MigrateError::Execute(err) => store_error(err),
            // A schema this build does not know (a newer apsched, or edited migrations).
            other => StoreError::Corrupt(format!("SQLite schema: {other}")),
        })
    }

    async fn save_runs(&self, connection: &mut SqliteConnection, runs: &[Run]) -> StoreResult<HashSet<String>> {
        let mut found = HashSet::with_capacity(runs.len());
        for chunk in row_chunks(runs) {
            let sql = format!(
                "WITH u (idempotency_key, job_id, scheduled_time, {columns}) AS (VALUES {values}) \
                 UPDATE runs SET {set} FROM u WHERE runs.idempotency_key = u.idempotency_key \
                 AND runs.job_id = u.job_id AND runs.scheduled_time = u.scheduled_time \
                 AND runs.status <> 'cancelled' RETURNING runs.idempotency_key",
                columns = RUN_PROGRESS_COLUMNS.join(", "),
                values = placeholders(chunk.len(), 3 + RUN_PROGRESS_COLUMNS.len()),
                set = RUN_PROGRESS_COLUMNS.map(|column| format!("{column} = u.{column}")).join(", "),
            );
            let mut arguments = SqliteArguments::default();
            for run in chunk {
                for param in run_progress_params(run).into_iter().chain([Param::Time(run.lease_expires_at)]) {
                    Self::bind(&mut arguments, param)?;
                }
            }
            let rows = sqlx::query_with(sqlx::AssertSqlSafe(sql), arguments)
                .fetch_all(&mut *connection)
                .await
                .map_err(store_error)?;
            for row in rows {
                found.insert(row.try_get(0).map_err(store_error)?);
            }
        }
        Ok(found)
    }

    async fn insert_runs_unless_taken(connection: &mut SqliteConnection, runs: Vec<Run>) -> StoreResult<Vec<Run>> {
        let mut taken = HashSet::with_capacity(runs.len());
        for chunk in row_chunks(&runs) {
            let sql = format!(
                "INSERT INTO runs ({}) VALUES {} ON CONFLICT (job_id, scheduled_time) DO NOTHING \
                 RETURNING job_id, scheduled_time",
                run_columns!(),
                placeholders(chunk.len(), RUN_COLUMN_COUNT)
            );
            let mut arguments = SqliteArguments::default();
            for run in chunk {
                for param in run_params(run)? {
                    Self::bind(&mut arguments, param)?;
                }
            }
            let rows = sqlx::query_with(sqlx::AssertSqlSafe(sql), arguments)
                .fetch_all(&mut *connection)
                .await
                .map_err(store_error)?;
            for row in rows {
                let fire: (String, i64) = (row.try_get(0).map_err(store_error)?, row.try_get(1).map_err(store_error)?);
                taken.insert(fire);
            }
        }
        // Removing each match keeps a fire planned twice from being reported twice; SQLite kept the first.
        Ok(runs
            .into_iter()
            .filter(|run| taken.remove(&(run.job_id.clone(), Micros::from_time(run.scheduled_time).0)))
            .collect())
    }

    async fn advance_jobs(
        connection: &mut SqliteConnection,
        jobs: &[(String, Option<DateTime<Utc>>)],
    ) -> StoreResult<()> {
        let advanced: Vec<serde_json::Value> = jobs
            .iter()
            .map(|(id, next)| {
                serde_json::json!({ "id": id, "next_run_time": next.map(|time| Micros::from_time(time).0) })
            })
            .collect();
        sqlx::query(ADVANCE_JOBS_SQL)
            .bind(to_json_text(&advanced, "next run times")?)
            .execute(&mut *connection)
            .await
            .map_err(store_error)?;
        Ok(())
    }
}

/// The columns of `runs`, as `run_columns!` names them and `run_params` binds them.
const RUN_COLUMN_COUNT: usize = 17;

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

#[cfg(test)]
mod tests {
    use chrono::Duration;
    use sqlx::AssertSqlSafe;
    use sqlx::sqlite::SqliteArguments;

    use super::*;
    use crate::audit::{AuditCursor, AuditQuery};
    use crate::job::RunStatus;
    use crate::labels::Selector;
    use crate::store::contract::{Advance, at, job, paused_job, run};
    use crate::store::sql::{list_audit_statement, list_jobs_statement, list_runs_statement};
    use crate::store::{JobQuery, JobStore, RunCursor, RunQuery};

    fn file_url(dir: &tempfile::TempDir) -> String {
        format!("sqlite://{}", dir.path().join("apsched.db").display())
    }

    fn all_jobs() -> JobQuery {
        JobQuery { limit: 1000, ..JobQuery::default() }
    }

    fn all_runs() -> RunQuery {
        RunQuery { status: None, after: None, limit: 1000 }
    }

    #[tokio::test]
    async fn upgrading_gives_existing_runs_a_kind_and_jobs_the_default_policies() {
        let dir = tempfile::tempdir().unwrap();
        // The file as the release before run kinds left it.
        let options = file_url(&dir).parse::<SqliteConnectOptions>().unwrap().create_if_missing(true);
        let pool = SqlitePool::connect_with(options).await.unwrap();
        let mut before = sqlx::migrate!("migrations/sqlite");
        before.migrations = before.migrations.iter().filter(|m| m.version < 7).cloned().collect::<Vec<_>>().into();
        before.run(&pool).await.unwrap();
        let insert = "INSERT INTO runs (idempotency_key, job_id, scheduled_time, status, attempts, action, executor, \
            timezone, created_at) VALUES (?, 'j', ?, 'succeeded', 1, '{\"url\": \"http://127.0.0.1:9/\"}', 'default', \
            'UTC', ?)";
        // A run-now is created at its scheduled time; a claimed fire after it.
        for (key, scheduled, created) in [("manual", 1_000_000, 1_000_000), ("scheduled", 2_000_000, 2_000_150)] {
            sqlx::query(insert).bind(key).bind(scheduled).bind(created).execute(&pool).await.unwrap();
        }
        sqlx::query(
            "INSERT INTO jobs (id, trigger, action, coalesce, max_instances, executor, jobstore, paused, created_at, \
             updated_at) VALUES ('j', '{\"type\": \"date\", \"run_date\": \"2026-12-01T10:00:00Z\"}', \
             '{\"url\": \"http://127.0.0.1:9/\"}', 1, 1, 'default', 'default', 1, 0, 0)",
        )
        .execute(&pool)
        .await
        .unwrap();
        pool.close().await;

        let store = SqliteStore::connect(&file_url(&dir)).await.unwrap();
        let kinds: Vec<(String, crate::job::RunKind)> = (store.list_runs("j", &all_runs()).await.unwrap().into_iter())
            .map(|run| (run.idempotency_key, run.kind))
            .collect();
        use crate::job::RunKind::{Manual, Scheduled};
        assert_eq!(kinds, [("scheduled".to_string(), Scheduled), ("manual".to_string(), Manual)]);
        let job = store.get_job("j").await.unwrap().unwrap();
        assert_eq!((job.overlap, job.max_catchup_runs), (crate::job::Overlap::Skip, None));
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

    async fn plan_of(store: &SqliteStore, query: sqlx::query::Query<'_, Sqlite, SqliteArguments>) -> String {
        let rows = query.fetch_all(&store.pool).await.unwrap();
        rows.iter().map(|row| sqlx::Row::get::<String, _>(row, "detail")).collect::<Vec<_>>().join("; ")
    }

    fn explain(sql: &str) -> sqlx::query::Query<'static, Sqlite, SqliteArguments> {
        sqlx::query(AssertSqlSafe(format!("EXPLAIN QUERY PLAN {sql}")))
    }

    fn built(statement: Statement<SqliteDialect>) -> sqlx::query::Query<'static, Sqlite, SqliteArguments> {
        sqlx::query_with(AssertSqlSafe(statement.sql), statement.arguments)
    }

    /// Asserts SQLite seeks in `index` (a covering use counts) rather than walking `table`.
    fn assert_seeks(plan: &str, table: &str, index: &str) {
        assert!(plan.contains(&format!("SEARCH {table} USING")) && plan.contains(&format!("INDEX {index}")), "{plan}");
    }

    /// "Bounded" also means no hot query walks a whole table.
    #[tokio::test]
    async fn the_hot_queries_seek_in_their_indexes() {
        type Sql = SqliteDialect;
        let store = SqliteStore::connect("sqlite::memory:").await.unwrap();
        assert_seeks(&plan_of(&store, explain(Sql::CLAIM_DUE_SQL).bind(0_i64).bind(10_i64)).await, "jobs", "jobs_due");
        assert_seeks(&plan_of(&store, explain(Sql::EARLIEST_NEXT_RUN_TIME_SQL)).await, "jobs", "jobs_due");
        let load = plan_of(&store, explain(Sql::LOAD_SQL).bind("[\"j\"]")).await;
        assert_seeks(&load, "runs", "runs_unfinished");
        assert_seeks(&load, "runs", "runs_buffered");
        // A scan, but of a partial index that holds only the unfinished runs.
        let expired = plan_of(&store, explain(Sql::TAKE_EXPIRED_RUNS_SQL).bind(0_i64).bind(0_i64)).await;
        assert!(expired.contains("INDEX runs_unfinished"), "{expired}");
        let by_age = plan_of(&store, explain(Sql::PRUNE_BY_AGE_SQL).bind(0_i64).bind(10_i64)).await;
        assert!(by_age.contains("INDEX runs_finished_age"), "{by_age}");

        let cursor = JobCursor { next_run_time: Some(at(0)), id: "a".to_string() };
        let page = JobQuery { paused: Some(false), after: Some(cursor), limit: 10, ..JobQuery::default() };
        let list = list_jobs_statement::<Sql>("EXPLAIN QUERY PLAN ", &page).unwrap();
        assert_seeks(&plan_of(&store, built(list)).await, "jobs", "jobs_list_order");

        let cursor = RunCursor { scheduled_time: at(0), idempotency_key: "k".to_string() };
        let history = RunQuery { status: Some(RunStatus::Failed), after: Some(cursor.clone()), limit: 10 };
        let runs = list_runs_statement::<Sql>("EXPLAIN QUERY PLAN ", "j", &history).unwrap();
        assert_seeks(&plan_of(&store, built(runs)).await, "runs", "runs_by_status");
        let history = RunQuery { status: None, after: Some(cursor), limit: 10 };
        let runs = list_runs_statement::<Sql>("EXPLAIN QUERY PLAN ", "j", &history).unwrap();
        assert_seeks(&plan_of(&store, built(runs)).await, "runs", "runs_one_per_fire");

        // A job's history of changes, a page after a cursor; and the whole audit by age (retention, `since`).
        let cursor = AuditCursor { time: at(0), id: "i".to_string() };
        let changes = AuditQuery { job_id: Some("j".into()), after: Some(cursor), limit: 10, ..AuditQuery::default() };
        let audit = list_audit_statement::<Sql>("EXPLAIN QUERY PLAN ", &changes).unwrap();
        assert_seeks(&plan_of(&store, built(audit)).await, "audit", "audit_job_newest");
        let recent = AuditQuery { since: Some(at(0)), limit: 10, ..AuditQuery::default() };
        let audit = list_audit_statement::<Sql>("EXPLAIN QUERY PLAN ", &recent).unwrap();
        assert_seeks(&plan_of(&store, built(audit)).await, "audit", "audit_newest");
    }

    /// A selector is answered from `job_labels`' indexes: the jobs that have a label from (key, value), the jobs
    /// that have not from each job's own rows (the primary key); never by reading every label.
    #[tokio::test]
    async fn selectors_seek_in_the_label_indexes() {
        let store = SqliteStore::connect("sqlite::memory:").await.unwrap();
        let selector = Selector::parse("team=payments,tier in (gold,silver),!legacy,env!=prod").unwrap();
        let page = JobQuery { selector, limit: 10, ..JobQuery::default() };
        let plan = plan_of(&store, built(list_jobs_statement::<SqliteDialect>("EXPLAIN QUERY PLAN ", &page).unwrap()));
        let plan = plan.await;
        assert!(
            plan.contains("SEARCH job_labels USING COVERING INDEX job_labels_selection (key=? AND value=?)"),
            "{plan}"
        );
        assert!(plan.contains("SEARCH job_labels USING PRIMARY KEY (job_id=? AND key=?)"), "{plan}");
        assert!(!plan.contains("SCAN job_labels"), "{plan}");
    }
}
