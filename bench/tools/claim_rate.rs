//! How many fires per second one PostgreSQL database sustains through the postgres store, against a same-run
//! baseline: the rate of plain single-row INSERTs (autocommit, one connection) on the same database.
//!
//! `cargo run --release --example claim_rate` (reads `APSCHED_TEST_DATABASE_URL`, default the local test database;
//! works in a scratch schema it drops afterwards). Measured:
//! - claim: due jobs claimed by the scheduler's planner (ledger rows inserted, jobs advanced), by 1 and by 3
//!   replicas (separate pools) at once;
//! - fire: claim plus what a delivery writes to the ledger, the whole database work of a fire, by 1 and by 3
//!   replicas. As the scheduler does it: claims go on while the outcomes of earlier ones are written, up to
//!   `MAX_BACKLOG` fires in hand, each writing its outcome through the store's recorder as soon as it is claimed
//!   (a delivery's worker is free once the call ends, so outcomes wait only for the recorder; `running` is written
//!   only for calls that take over 200 ms, so a quick call writes once). No HTTP: the database's share alone.

use std::sync::Arc;
use std::time::{Duration, Instant};

use apsched::job::{Job, Run, RunStatus};
use apsched::scheduler::plan::RulesPlanner;
use apsched::store::JobStore;
use apsched::store::postgres::PostgresStore;
use chrono::Utc;
use serde_json::json;

const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/test";
/// Due jobs per measurement: enough for tens of claim batches, so start-up costs do not count.
const JOBS: usize = 20_000;
/// As the scheduler claims (`scheduler::CLAIM_BATCH`).
const BATCH: usize = apsched::scheduler::CLAIM_BATCH;
/// Replicas in the concurrent measurements, as in the replica test.
const REPLICAS: usize = 3;
/// Each replica's pool, as configured by default.
const POOL_SIZE: u32 = apsched::store::postgres::DEFAULT_POOL_SIZE;
/// How long the INSERT baseline runs.
const BASELINE: Duration = Duration::from_secs(5);

fn job(index: usize) -> Job {
    let now = Utc::now();
    Job {
        id: format!("job-{index:06}"),
        name: None,
        // Hourly: each claim plans one fire and advances the job, as a recurring job does.
        trigger: serde_json::from_value(
            json!({"type": "interval", "hours": 1, "start_date": "2026-01-01T00:00:00Z", "timezone": "UTC"}),
        )
        .unwrap(),
        action: serde_json::from_value(json!({"url": format!("http://127.0.0.1:9/{index}")})).unwrap(),
        coalesce: true,
        max_instances: 1,
        misfire_grace_time: None,
        max_catchup_runs: None,
        overlap: apsched::job::Overlap::Skip,
        auto_pause_after_failures: None,
        stale_after_seconds: None,
        paused_reason: None,
        paused_until: None,
        notify: None,
        health: Default::default(),
        executor: "default".to_string(),
        jobstore: "default".to_string(),
        next_run_time: Some(now - chrono::TimeDelta::seconds(1)),
        paused: false,
        labels: Default::default(),
        created_at: now,
        updated_at: now,
    }
}

/// A fresh round: no jobs, an empty ledger (a previous round's undelivered fires would count against
/// max_instances), then `JOBS` due jobs.
async fn fill(store: &PostgresStore, url: &str) {
    let mut connection = <sqlx::PgConnection as sqlx::Connection>::connect(url).await.unwrap();
    sqlx::query("TRUNCATE jobs, job_labels, runs").execute(&mut connection).await.unwrap();
    let mut adds = futures::stream::FuturesUnordered::new();
    for index in 0..JOBS {
        adds.push(async move { store.add_job(&job(index), false).await.unwrap() });
        if adds.len() >= POOL_SIZE as usize {
            futures::StreamExt::next(&mut adds).await;
        }
    }
    while futures::StreamExt::next(&mut adds).await.is_some() {}
}

/// Claim everything due with `stores.len()` replicas at once; with `record`, also write each fire's outcome as a
/// delivery does. Fires per second, counted when the last outcome is written.
async fn drain(stores: &[Arc<PostgresStore>], record: bool) -> f64 {
    let started = Instant::now();
    let claimers: Vec<_> = stores.iter().cloned().map(|store| tokio::spawn(replica(store, record))).collect();
    let mut fires = 0;
    for claimer in claimers {
        fires += claimer.await.unwrap();
    }
    assert_eq!(fires, JOBS, "every due job fired once");
    fires as f64 / started.elapsed().as_secs_f64()
}

/// One replica's claims until nothing is due; with `record`, its fires' outcomes written while it claims more, as
/// long as fewer than `MAX_BACKLOG` are in hand. The fires it claimed.
async fn replica(store: Arc<PostgresStore>, record: bool) -> usize {
    let in_hand = Arc::new(tokio::sync::Semaphore::new(apsched::scheduler::MAX_BACKLOG));
    let mut deliveries = tokio::task::JoinSet::new();
    let mut fires = 0usize;
    loop {
        // Room for a whole batch before claiming, as the scheduler waits for it.
        let mut room = in_hand.clone().acquire_many_owned(BATCH as u32).await.unwrap();
        let now = Utc::now();
        let planner = RulesPlanner::new(chrono_tz::Tz::UTC);
        let runs = store.claim_due(now, BATCH, now + chrono::TimeDelta::seconds(30), &planner).await.unwrap();
        if runs.is_empty() {
            break;
        }
        fires += runs.len();
        if !record {
            continue;
        }
        for run in runs {
            let held = room.split(1).expect("a permit per claimed fire");
            let store = store.clone();
            deliveries.spawn(async move {
                record_outcome(&store, run).await;
                drop(held);
            });
        }
    }
    deliveries.join_all().await;
    fires
}

/// The ledger write of a delivery whose call answered 2xx within 200 ms: the outcome, in one write.
async fn record_outcome(store: &PostgresStore, mut run: Run) {
    run.status = RunStatus::Succeeded;
    run.attempts = 1;
    run.started_at = Some(Utc::now());
    run.http_status = Some(200);
    run.finished_at = Some(Utc::now());
    run.duration_ms = Some(1);
    run.lease_expires_at = None;
    store.update_run(&run).await.unwrap();
}

async fn insert_rate(url: &str) -> f64 {
    let mut connection = <sqlx::PgConnection as sqlx::Connection>::connect(url).await.unwrap();
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS baseline (id BIGSERIAL PRIMARY KEY, job_id TEXT NOT NULL, at TIMESTAMPTZ NOT NULL)",
    )
    .execute(&mut connection)
    .await
    .unwrap();
    let started = Instant::now();
    let mut rows = 0u64;
    while started.elapsed() < BASELINE {
        sqlx::query("INSERT INTO baseline (job_id, at) VALUES ($1, now())")
            .bind(format!("job-{rows}"))
            .execute(&mut connection)
            .await
            .unwrap();
        rows += 1;
    }
    rows as f64 / started.elapsed().as_secs_f64()
}

#[tokio::main]
async fn main() {
    let base = std::env::var("APSCHED_TEST_DATABASE_URL").unwrap_or_else(|_| DEFAULT_DATABASE_URL.to_string());
    let schema = format!("bench_{}", uuid::Uuid::new_v4().simple());
    let mut admin = <sqlx::PgConnection as sqlx::Connection>::connect(&base).await.expect("the database answers");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}"))).execute(&mut admin).await.unwrap();
    let separator = if base.contains('?') { '&' } else { '?' };
    let url = format!("{base}{separator}options[search_path]={schema}");

    // The baseline is commit-bound and moves with the machine's load: measured before and after, the mean used.
    let baseline_before = insert_rate(&url).await;
    let mut replicas = Vec::new();
    for _ in 0..REPLICAS {
        replicas.push(Arc::new(PostgresStore::connect(&url, POOL_SIZE).await.unwrap()));
    }
    fill(&replicas[0], &url).await;
    let one = drain(&replicas[..1], false).await;
    fill(&replicas[0], &url).await;
    let three = drain(&replicas, false).await;
    fill(&replicas[0], &url).await;
    let fires_one = drain(&replicas[..1], true).await;
    fill(&replicas[0], &url).await;
    let fires = drain(&replicas, true).await;
    let baseline_after = insert_rate(&url).await;
    let baseline = (baseline_before + baseline_after) / 2.0;

    println!("{JOBS} due jobs, claim batch {BATCH}, pool {POOL_SIZE} per replica");
    println!(
        "baseline: single-row INSERT, autocommit, 1 connection: {baseline:>8.0} rows/s \
         (before {baseline_before:.0}, after {baseline_after:.0})"
    );
    println!("claim, 1 replica:                           {one:>8.0} fires/s  ({:.1}x baseline)", one / baseline);
    println!(
        "claim, {REPLICAS} replicas:                          {three:>8.0} fires/s  ({:.1}x baseline)",
        three / baseline
    );
    println!(
        "claim + outcome writes, 1 replica:             {fires_one:>8.0} fires/s  ({:.1}x baseline)",
        fires_one / baseline
    );
    println!(
        "claim + outcome writes, {REPLICAS} replicas:            {fires:>8.0} fires/s  ({:.1}x baseline)",
        fires / baseline
    );

    for store in &replicas {
        store.close().await;
    }
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE"))).execute(&mut admin).await.unwrap();
}
