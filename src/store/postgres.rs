//! The PostgreSQL dialect, for production and for replicas: any number of apsched processes may share one schema
//! (schema in `migrations/postgres/`). Jobs and the run ledger are typed columns; a job's trigger and action are
//! JSONB a person can query with psql. Times are timestamptz, microsecond precision: anything finer is truncated
//! when written, so what a claim returns is exactly what the ledger holds.
//!
//! Replicas never share a fire: a claim locks the due jobs it takes (`FOR UPDATE SKIP LOCKED`, so replicas claim
//! side by side instead of queueing), and the ledger's unique (job_id, scheduled_time) admits each fire once. A
//! trigger on `jobs` NOTIFYs every change (see the migration); `watch_changes` LISTENs and wakes the scheduler.
//!
//! The search path picks the schema, e.g. `postgres://host/db?options[search_path]=apsched`.

use crate::backoff::Backoff;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::postgres::{PgArguments, PgConnectOptions, PgListener, PgPoolOptions, PgQueryResult};
use sqlx::{Arguments, PgConnection, PgPool, Postgres};
use tokio_util::sync::CancellationToken;

use super::sql::{
    AuditRow, Claim, Dialect, JobRow, JsonColumn, Param, RunRow, SqlStore, Statement, TimeColumn, run_columns,
    store_error,
};
use super::{JobCursor, StoreError, StoreResult};
use crate::job::Run;

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

/// The first due job, locked or not: after a claim took none, another replica's claim holds it.
const FIRST_DUE_SQL: &str = "SELECT id FROM jobs WHERE NOT paused AND next_run_time IS NOT NULL \
    AND next_run_time <= $1 ORDER BY next_run_time, id LIMIT 1";
/// Every planned row in one statement (arrays, so any number of rows is 17 parameters); a fire already in the
/// ledger is left out, and RETURNING names the rows that went in.
const INSERT_RUNS_SQL: &str = concat!(
    "INSERT INTO runs (",
    run_columns!(),
    ") SELECT * FROM UNNEST($1::text[], $2::text[], $3::timestamptz[], $4::text[], $5::int8[], $6::timestamptz[], \
     $7::timestamptz[], $8::int4[], $9::int8[], $10::text[], $11::text[], $12::jsonb[], $13::text[], $14::text[], \
     $15::timestamptz[], $16::timestamptz[], $17::text[]) \
     ON CONFLICT (job_id, scheduled_time) DO NOTHING RETURNING idempotency_key"
);
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
    AND runs.scheduled_time = u.scheduled_time AND runs.status <> 'cancelled' RETURNING runs.idempotency_key";

/// The PostgreSQL store.
pub type PostgresStore = SqlStore<PostgresDialect>;

/// What the PostgreSQL store does its own way: its SQL, and change notifications between replicas.
#[derive(Clone, Debug)]
pub struct PostgresDialect {
    options: PgConnectOptions,
    /// The NOTIFY channel of this store's schema (as the migration's trigger names it).
    channel: String,
    /// This store's connections write it into every notification they cause, so it can ignore its own.
    origin: String,
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
        SqlStore::start(pool, PostgresDialect { options, channel: channel_of(&schema), origin }).await
    }
}

impl PostgresDialect {
    /// Connected and listening on this store's channel.
    async fn listen(&self, pool: &PgPool) -> Result<PgListener, sqlx::Error> {
        let mut listener = PgListener::connect_with(pool).await?;
        listener.listen(&self.channel).await?;
        Ok(listener)
    }
}

/// As the migration's trigger computes it: `left('apsched_jobs_' || schema, 63)` (a channel name is at most 63
/// bytes; schema names are ASCII in practice).
fn channel_of(schema: &str) -> String {
    format!("apsched_jobs_{schema}").chars().take(63).collect()
}

/// timestamptz keeps microseconds; truncate here so that what is returned equals what is stored.
fn pg_time(time: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::<Utc>::from_time(time)
}

/// Wait until whoever holds the lock on job `id` (another replica's claim) is done with it.
async fn wait_for_lock_holder(pool: &PgPool, id: &str) -> StoreResult<()> {
    sqlx::query("SELECT 1 FROM jobs WHERE id = $1 FOR UPDATE")
        .bind(id)
        .fetch_optional(pool)
        .await
        .map_err(store_error)?;
    Ok(())
}

#[async_trait]
impl Dialect for PostgresDialect {
    const KIND: super::StoreType = super::StoreType::Postgres;
    type Db = Postgres;
    type Time = DateTime<Utc>;
    type Json = serde_json::Value;
    type JobRow = JobRow<DateTime<Utc>, serde_json::Value>;
    type RunRow = RunRow<DateTime<Utc>, serde_json::Value, i32>;
    type AuditRow = AuditRow<DateTime<Utc>, serde_json::Value>;
    type NotificationRow = super::sql::NotificationRow<DateTime<Utc>, serde_json::Value>;

    /// Verbatim as in the `jobs_list_order` index so PostgreSQL uses it.
    const LIST_ORDER_KEY: &'static str = "COALESCE(next_run_time, 'infinity'::timestamptz)";
    const EARLIEST_NEXT_RUN_TIME_SQL: &'static str = "SELECT next_run_time FROM jobs WHERE NOT paused \
        AND next_run_time IS NOT NULL ORDER BY next_run_time LIMIT 1";
    /// Rows another replica is claiming are skipped, not waited for.
    const CLAIM_DUE_SQL: &'static str = "SELECT * FROM jobs WHERE NOT paused AND next_run_time IS NOT NULL \
        AND next_run_time <= $1 ORDER BY next_run_time, id LIMIT $2 FOR UPDATE SKIP LOCKED";
    /// Each half from its partial index (`runs_unfinished`, `runs_buffered`).
    const LOAD_SQL: &'static str = "SELECT job_id, COUNT(*) FILTER (WHERE status <> 'buffered'), \
        COUNT(*) FILTER (WHERE status = 'buffered') FROM (\
        SELECT job_id, status FROM runs WHERE job_id = ANY($1) AND status IN ('pending', 'running') UNION ALL \
        SELECT job_id, status FROM runs WHERE job_id = ANY($1) AND status = 'buffered') AS open GROUP BY job_id";
    const RUN_STATUSES_SQL: &'static str = "SELECT idempotency_key, status FROM runs WHERE idempotency_key = ANY($1)";
    const JOB_HEALTH_SQL: &'static str =
        "SELECT id, consecutive_failures, notify IS NOT NULL FROM jobs WHERE id = ANY($1)";
    const CANCELLED_AMONG_SQL: &'static str =
        "SELECT idempotency_key FROM runs WHERE idempotency_key = ANY($1) AND status = 'cancelled'";
    /// In id order, as every replica takes them, so two promoting replicas queue instead of deadlocking; a claim
    /// holding one of them is waited for (it takes milliseconds).
    const LOCK_BUFFERED_JOBS_SQL: Option<&'static str> = Some(
        "SELECT id FROM jobs WHERE id IN (SELECT job_id FROM runs WHERE status = 'buffered') ORDER BY id FOR UPDATE",
    );
    const DELETE_JOBS_SQL: &'static str = "DELETE FROM jobs WHERE id = ANY($1)";
    /// Taking over is atomic across replicas: each expired run is locked by exactly one taker.
    const TAKE_EXPIRED_RUNS_SQL: &'static str = "UPDATE runs SET lease_expires_at = $1 WHERE idempotency_key IN (\
        SELECT idempotency_key FROM runs WHERE status IN ('pending', 'running') \
        AND (lease_expires_at IS NULL OR lease_expires_at < $2) FOR UPDATE SKIP LOCKED) RETURNING *";
    const EXTEND_LEASES_SQL: &'static str = "UPDATE runs SET lease_expires_at = $1 \
        WHERE status IN ('pending', 'running') AND idempotency_key = ANY($2)";
    /// A batch at a time; SKIP LOCKED leaves rows another replica's pruner holds to it.
    const PRUNE_BY_AGE_SQL: &'static str = "DELETE FROM runs WHERE idempotency_key IN (SELECT idempotency_key \
        FROM runs WHERE status NOT IN ('pending', 'running') AND status <> 'buffered' \
        AND COALESCE(finished_at, created_at) < $1 LIMIT $2 FOR UPDATE SKIP LOCKED)";
    const BEGIN_WRITE: &'static str = "BEGIN";
    /// Until autovacuum has analyzed a table that grew quickly (a burst just after its jobs were added), the planner
    /// underestimates it and scans it whole, sorting what it found: measured on 10 000 due jobs, a claim of 500 took
    /// 12 to 30 ms that way against 0.8 ms down the `jobs_due` index, and the recorder's lookups by key joined
    /// whole scans of `runs` too. For these transactions alone (SET LOCAL), scans and sorts are the last resort, and
    /// with no other plan in the running their statements are planned once per connection rather than at every
    /// execution (planning was about 7 % of the server's CPU in a burst).
    const BEGIN_BY_KEY: &'static str = concat!(
        "BEGIN; SET LOCAL enable_seqscan = off; SET LOCAL enable_sort = off; ",
        "SET LOCAL plan_cache_mode = force_generic_plan"
    );
    const LOCK_ROWS: &'static str = " FOR UPDATE";

    fn bind(arguments: &mut PgArguments, param: Param<'_, serde_json::Value>) -> StoreResult<()> {
        match param {
            Param::Text(text) => arguments.add(text),
            Param::Int(value) => arguments.add(value),
            Param::Int32(value) => arguments.add(value),
            Param::Bool(value) => arguments.add(value),
            Param::Time(time) => arguments.add(time.map(pg_time)),
            Param::Json(value) => arguments.add(value),
            Param::NullableJson(value) => arguments.add(value),
            Param::Keys(keys) => arguments.add(keys),
        }
        .map_err(|err| StoreError::Unavailable(format!("cannot bind a parameter: {err}")))
    }

    fn rows_affected(result: &PgQueryResult) -> u64 {
        result.rows_affected()
    }

    fn writer(&self) -> Option<&tokio::sync::Mutex<()>> {
        None
    }

    fn push_after(sql: &mut Statement<Self>, cursor: &JobCursor) -> StoreResult<()> {
        // No next run time sorts as 'infinity', last, as in the index.
        sql.push(&format!(" AND ({}, id) > (COALESCE(", Self::LIST_ORDER_KEY))
            .param(Param::Time(cursor.next_run_time))?;
        sql.push("::timestamptz, 'infinity'::timestamptz), ").param(Param::Text(Some(&cursor.id)))?.push(")");
        Ok(())
    }

    async fn begin_claim(&self, pool: &PgPool, _now: DateTime<Utc>) -> StoreResult<Option<Claim<'_, Self>>> {
        let transaction = pool.begin_with(Self::BEGIN_BY_KEY).await.map_err(store_error)?;
        Ok(Some(Claim { transaction, turn: None }))
    }

    async fn end_empty_claim(
        &self,
        pool: &PgPool,
        mut claim: Claim<'_, Self>,
        now: DateTime<Utc>,
        limit: usize,
    ) -> StoreResult<()> {
        // Due jobs that were skipped are another replica's claim in progress. Returning at once would have the loop
        // see them still due and spin until that claim commits; wait for it instead (it takes ms).
        let claimed_elsewhere: Option<String> = if limit == 0 {
            None
        } else {
            sqlx::query_scalar(FIRST_DUE_SQL)
                .bind(now)
                .fetch_optional(&mut *claim.transaction)
                .await
                .map_err(store_error)?
        };
        claim.transaction.commit().await.map_err(store_error)?;
        if let Some(id) = claimed_elsewhere {
            wait_for_lock_holder(pool, &id).await?;
        }
        Ok(())
    }

    /// Replicas starting together take turns (sqlx holds an advisory lock while migrating).
    async fn migrate(pool: &PgPool) -> StoreResult<()> {
        sqlx::migrate!("migrations/postgres").run(pool).await.map_err(|err| match err {
            sqlx::migrate::MigrateError::Execute(err) => store_error(err),
            other => StoreError::Corrupt(format!("PostgreSQL schema: {other}")),
        })
    }

    /// In one statement, whatever the batch's size.
    async fn save_runs(&self, connection: &mut PgConnection, runs: &[Run]) -> StoreResult<HashSet<String>> {
        let keys: Vec<String> = bind_run_progress_arrays(sqlx::query_scalar(UPDATE_RUNS_SQL), runs)
            .bind(runs.iter().map(|run| run.lease_expires_at.map(pg_time)).collect::<Vec<_>>())
            .fetch_all(&mut *connection)
            .await
            .map_err(store_error)?;
        Ok(keys.into_iter().collect())
    }

    async fn insert_runs_unless_taken(connection: &mut PgConnection, runs: Vec<Run>) -> StoreResult<Vec<Run>> {
        let actions = runs
            .iter()
            .map(|run| serde_json::Value::encode(&run.action, "run action"))
            .collect::<StoreResult<Vec<serde_json::Value>>>()?;
        let keys: Vec<String> = bind_run_progress_arrays(sqlx::query_scalar(INSERT_RUNS_SQL), &runs)
            .bind(actions)
            .bind(runs.iter().map(|run| run.executor.clone()).collect::<Vec<_>>())
            .bind(runs.iter().map(|run| run.timezone.clone()).collect::<Vec<_>>())
            .bind(runs.iter().map(|run| run.lease_expires_at.map(pg_time)).collect::<Vec<_>>())
            .bind(runs.iter().map(|run| pg_time(run.created_at)).collect::<Vec<_>>())
            .bind(runs.iter().map(|run| run.kind.as_str()).collect::<Vec<_>>())
            .fetch_all(&mut *connection)
            .await
            .map_err(store_error)?;
        let inserted: HashSet<String> = keys.into_iter().collect();
        Ok(runs.into_iter().filter(|run| inserted.contains(&run.idempotency_key)).collect())
    }

    async fn advance_jobs(connection: &mut PgConnection, jobs: &[(String, Option<DateTime<Utc>>)]) -> StoreResult<()> {
        let (ids, times): (Vec<&str>, Vec<Option<DateTime<Utc>>>) =
            jobs.iter().map(|(id, next)| (id.as_str(), next.map(pg_time))).unzip();
        sqlx::query(ADVANCE_JOBS_SQL).bind(ids).bind(times).execute(&mut *connection).await.map_err(store_error)?;
        Ok(())
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

#[cfg(test)]
mod tests {
    use chrono::Duration;
    use tokio::sync::mpsc;

    use super::*;
    use crate::job::RunStatus;
    use crate::store::contract::{Advance, ScratchSchema, at, job};
    use crate::store::sql::{list_jobs_statement, list_runs_statement};
    use crate::store::{JobQuery, JobStore, RunQuery};

    /// Bound for what a test waits for (a notification, a claim finishing): generous for a loaded CI machine.
    const PATIENCE: std::time::Duration = std::time::Duration::from_secs(20);

    async fn replica(schema: &ScratchSchema) -> PostgresStore {
        PostgresStore::connect(&schema.url, 4).await.expect("connect to the scratch schema")
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

    /// Just after many jobs are added, before autovacuum has analyzed the table, the planner takes `jobs` for a
    /// small table and would read and sort all of it for every claim; the claim's transaction walks `jobs_due`.
    #[tokio::test]
    async fn a_claim_walks_the_due_index_before_the_jobs_are_analyzed() {
        type Sql = PostgresDialect;
        let schema = ScratchSchema::create().await;
        let store = replica(&schema).await;
        store.add_job(&job("template", Some(at(0))), false).await.unwrap();
        // No analysis may come while the test looks at the plans.
        sqlx::query("ALTER TABLE jobs SET (autovacuum_enabled = false)").execute(&store.pool).await.unwrap();
        let copies = "INSERT INTO jobs SELECT (jsonb_populate_record(NULL::jobs, \
            to_jsonb(template) || jsonb_build_object('id', 'job-' || n))).* \
            FROM jobs AS template, generate_series(1, 10000) AS n";
        sqlx::query(copies).execute(&store.pool).await.unwrap();
        let claim = format!("EXPLAIN {}", Sql::CLAIM_DUE_SQL.replace("$1", "now()").replace("$2", "500"));
        let plan = |rows: Vec<(String,)>| rows.into_iter().map(|(line,)| line).collect::<Vec<_>>().join("\n");

        // What this guards against: outside the claim's transaction, the whole table is read, then sorted.
        let elsewhere: Vec<(String,)> =
            sqlx::query_as(sqlx::AssertSqlSafe(claim.clone())).fetch_all(&store.pool).await.unwrap();
        assert!(plan(elsewhere).contains("Sort"));

        let mut transaction = store.pool.begin_with(Sql::BEGIN_BY_KEY).await.unwrap();
        let claimed = plan(sqlx::query_as(sqlx::AssertSqlSafe(claim)).fetch_all(&mut *transaction).await.unwrap());
        assert!(claimed.contains("Index Scan using jobs_due") && !claimed.contains("Sort"), "{claimed}");
        // Ended here: a transaction only dropped is rolled back when its connection is next used, and until then
        // its locks would hold up the scratch schema's removal.
        transaction.rollback().await.unwrap();
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
    async fn an_unreachable_server_is_unavailable() {
        // Port 9 (discard) on loopback: nothing listens there.
        let result = PostgresStore::connect("postgres://postgres@127.0.0.1:9/test", 1).await;
        assert!(matches!(result, Err(StoreError::Unavailable(_))), "{result:?}");
    }

    /// The plan of `sql` with sequential scans ruled out: an index that can serve the query is then used. (The
    /// tables are empty, so the planner would otherwise rightly prefer a scan.)
    async fn plan_of(store: &PostgresStore, statement: Statement<PostgresDialect>) -> String {
        let mut connection = store.pool.acquire().await.unwrap();
        sqlx::query("SET enable_seqscan = off").execute(&mut *connection).await.unwrap();
        let rows: Vec<(String,)> = sqlx::query_as_with(sqlx::AssertSqlSafe(statement.sql), statement.arguments)
            .fetch_all(&mut *connection)
            .await
            .unwrap();
        sqlx::query("RESET enable_seqscan").execute(&mut *connection).await.unwrap();
        rows.into_iter().map(|(line,)| line).collect::<Vec<_>>().join("\n")
    }

    /// `sql` with its parameters written in as literals.
    fn explain(sql: &str) -> Statement<PostgresDialect> {
        Statement::new(format!("EXPLAIN {sql}"))
    }

    #[tokio::test]
    async fn the_hot_queries_use_their_indexes() {
        type Sql = PostgresDialect;
        let schema = ScratchSchema::create().await;
        let store = replica(&schema).await;
        let claim = Sql::CLAIM_DUE_SQL.replace("$1", "now()").replace("$2", "500");
        let plan = plan_of(&store, explain(&claim)).await;
        assert!(plan.contains("jobs_due"), "{plan}");
        let plan = plan_of(&store, explain(Sql::EARLIEST_NEXT_RUN_TIME_SQL)).await;
        assert!(plan.contains("jobs_due"), "{plan}");
        let expired = Sql::TAKE_EXPIRED_RUNS_SQL.replace("$1", "now()").replace("$2", "now()");
        let plan = plan_of(&store, explain(&expired)).await;
        assert!(plan.contains("runs_unfinished"), "{plan}");
        let load = Sql::LOAD_SQL.replace("$1", "ARRAY['j']");
        let plan = plan_of(&store, explain(&load)).await;
        assert!(plan.contains("runs_unfinished") && plan.contains("runs_buffered"), "{plan}");
        let page = JobQuery {
            after: Some(JobCursor { next_run_time: Some(at(0)), id: "a".to_string() }),
            limit: 10,
            ..JobQuery::default()
        };
        let plan = plan_of(&store, list_jobs_statement::<Sql>("EXPLAIN ", &page).unwrap()).await;
        assert!(plan.contains("jobs_list_order") && plan.contains("Index Cond"), "{plan}");
        // A job's failures among its successes, from the index of the runs that did not succeed.
        let failures = RunQuery { status: Some(RunStatus::Failed), after: None, limit: 10 };
        let plan = plan_of(&store, list_runs_statement::<Sql>("EXPLAIN ", "j", &failures).unwrap()).await;
        assert!(plan.contains("runs_by_status"), "{plan}");

        // A selector is answered from job_labels' indexes: (key, value) for the jobs that have a label, each job's
        // own rows (the primary key) for the jobs that have not.
        let selector = crate::labels::Selector::parse("team=payments,!legacy").unwrap();
        let page = JobQuery { selector, limit: 10, ..JobQuery::default() };
        let plan = plan_of(&store, list_jobs_statement::<Sql>("EXPLAIN ", &page).unwrap()).await;
        assert!(plan.contains("job_labels_selection") && plan.contains("job_labels_pkey"), "{plan}");
    }
}
