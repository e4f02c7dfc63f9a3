//! The benchmark suite's Rust tools (bench/run.sh drives them; see BENCHMARKS.md):
//!
//! - `sink`: the receiver every scheduler under test delivers to. Records the arrival time of each request with its
//!   `apsched-job-id` and `apsched-scheduled-time` headers; `GET /count` says how many arrived (with
//!   `?at_least=N&wait_ms=M`, once N have or M ms have passed), `GET /dump` returns them as CSV
//!   (`arrival_us,job_id,scheduled_us`) and forgets them.
//! - `limit`: the machine's limit, a bare tokio + reqwest loop POSTing to the sink as fast as it can.
//! - `add-jobs`: jobs added per second through `POST /v1/jobs`.
//! - `insert-rate`: the database's own single-row insert rate into the same `jobs` table, same row.
//!
//! All traffic stays on 127.0.0.1.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::routing::{any, get};
use chrono::DateTime;

/// A job row's columns besides id, trigger, action, executor and jobstore: name, coalesce, max_instances,
/// misfire_grace_time, next_run_time, paused, created_at, updated_at (times as each database keeps them).
type SqliteValues = (Option<String>, bool, i64, Option<i64>, Option<i64>, bool, i64, i64);
type Time = Option<DateTime<chrono::Utc>>;
type PostgresValues = (Option<String>, bool, i64, Option<i64>, Time, bool, Time, Time);

/// One delivery as the sink saw it.
struct Arrival {
    arrival_us: i64,
    job_id: String,
    scheduled_us: Option<i64>,
}

/// The arrivals, and their count for waiters: the suite waits for a burst's last delivery with one request
/// instead of polling, which took a fifth of a core from the scheduler under test (and none from the bare-reqwest
/// limit, whose tool times itself).
#[derive(Clone)]
struct Inbox {
    arrivals: Arc<Mutex<Vec<Arrival>>>,
    arrived: Arc<tokio::sync::watch::Sender<usize>>,
}

#[derive(serde::Deserialize)]
struct CountQuery {
    #[serde(default)]
    at_least: usize,
    #[serde(default)]
    wait_ms: u64,
}

fn now_us() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as i64).unwrap_or(0)
}

async fn record(State(inbox): State<Inbox>, headers: HeaderMap) -> &'static str {
    let arrival_us = now_us();
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let scheduled_us =
        DateTime::parse_from_rfc3339(&header("apsched-scheduled-time")).ok().map(|t| t.timestamp_micros());
    let arrival = Arrival { arrival_us, job_id: header("apsched-job-id"), scheduled_us };
    let mut arrivals = inbox.arrivals.lock().unwrap_or_else(|p| p.into_inner());
    arrivals.push(arrival);
    inbox.arrived.send_replace(arrivals.len());
    ""
}

async fn count(State(inbox): State<Inbox>, Query(query): Query<CountQuery>) -> String {
    let mut arrived = inbox.arrived.subscribe();
    let wait = arrived.wait_for(|count| *count >= query.at_least);
    let _ = tokio::time::timeout(Duration::from_millis(query.wait_ms), wait).await;
    inbox.arrivals.lock().unwrap_or_else(|p| p.into_inner()).len().to_string()
}

async fn dump(State(inbox): State<Inbox>) -> String {
    let mut arrivals = inbox.arrivals.lock().unwrap_or_else(|p| p.into_inner());
    let arrivals = std::mem::take(&mut *arrivals);
    inbox.arrived.send_replace(0);
    let mut csv = String::with_capacity(arrivals.len() * 48);
    for a in arrivals {
        let scheduled = a.scheduled_us.map(|t| t.to_string()).unwrap_or_default();
        csv.push_str(&format!("{},{},{}\n", a.arrival_us, a.job_id, scheduled));
    }
    csv
}

async fn sink(listen: SocketAddr) -> anyhow::Result<()> {
    let app = Router::new()
        .route("/count", get(count))
        .route("/dump", get(dump))
        .fallback(any(record))
        .with_state(Inbox { arrivals: Arc::default(), arrived: Arc::new(tokio::sync::watch::Sender::new(0)) });
    let listener = tokio::net::TcpListener::bind(listen).await?;
    eprintln!("sink listening on {listen}");
    axum::serve(listener, app).await?;
    Ok(())
}

/// Call `one(i)` for every i in `0..count`, `concurrency` calls at a time, and print how long that took as JSON.
async fn each_concurrently<One, Call>(count: usize, concurrency: usize, one: One) -> anyhow::Result<()>
where
    One: Fn(usize) -> Call + Clone + Send + 'static,
    Call: Future<Output = anyhow::Result<()>> + Send,
{
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (next, one) = (next.clone(), one.clone());
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= count {
                        return anyhow::Ok(());
                    }
                    one(i).await?;
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await??;
    }
    let seconds = started.elapsed().as_secs_f64();
    println!("{{\"count\": {count}, \"seconds\": {seconds}, \"per_second\": {}}}", count as f64 / seconds);
    Ok(())
}

/// POST `count` requests to `url` with `concurrency` in flight, as a scheduler's delivery pool would; the seconds
/// from the first request to the last answer.
async fn limit(url: String, count: usize, concurrency: usize) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    each_concurrently(count, concurrency, move |i| {
        let request = client
            .post(&url)
            .header("apsched-job-id", format!("limit-{i}"))
            .header("content-type", "application/json")
            .body("{}")
            .send();
        async move {
            request.await?.bytes().await?;
            Ok(())
        }
    })
    .await
}

/// POST `count` jobs built from `template` (a JSON job; `id` is set to `{prefix}{i}`) with `concurrency` in flight.
/// With `spread` (start µs, step µs), job i's trigger gets `start_date` = start + i × step (UTC).
async fn add_jobs(
    api: String,
    template: String,
    prefix: String,
    count: usize,
    concurrency: usize,
    spread: Option<(i64, i64)>,
) -> anyhow::Result<()> {
    let template: serde_json::Value = serde_json::from_str(&template)?;
    let client = reqwest::Client::new();
    let url = format!("{api}/v1/jobs");
    each_concurrently(count, concurrency, move |i| {
        let mut job = template.clone();
        job["id"] = serde_json::Value::String(format!("{prefix}{i}"));
        if let Some((start, step)) = spread {
            let start = DateTime::from_timestamp_micros(start + i as i64 * step).unwrap_or_default();
            job["trigger"]["start_date"] = serde_json::Value::String(start.to_rfc3339());
        }
        let request = client.post(&url).json(&job).send();
        async move {
            let response = request.await?;
            let status = response.status();
            let body = response.text().await?;
            anyhow::ensure!(status.as_u16() == 201, "POST /v1/jobs answered {status}: {body}");
            Ok(())
        }
    })
    .await
}

/// Single-row INSERTs of a copy of job `template_id` (ids `{prefix}{i}`) into the `jobs` table at `db`, one
/// statement (and so one transaction) each, `concurrency` connections at once: what the database itself manages.
async fn insert_rate(
    db: String,
    template_id: String,
    prefix: String,
    count: usize,
    concurrency: usize,
) -> anyhow::Result<()> {
    use sqlx::Row;
    macro_rules! columns {
        () => {
            "name, trigger, action, coalesce, max_instances, misfire_grace_time, executor, jobstore, next_run_time, \
             paused, created_at, updated_at"
        };
    }
    const SELECT: &str = concat!("SELECT ", columns!(), " FROM jobs WHERE id = ?");
    const INSERT: &str =
        concat!("INSERT INTO jobs (id, ", columns!(), ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
    if db.starts_with("sqlite:") {
        // The store's own connection settings (src/store/sqlite.rs).
        let options: sqlx::sqlite::SqliteConnectOptions = db
            .parse::<sqlx::sqlite::SqliteConnectOptions>()?
            .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
            .synchronous(sqlx::sqlite::SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(5));
        let pool =
            sqlx::sqlite::SqlitePoolOptions::new().max_connections(concurrency as u32).connect_with(options).await?;
        let row = sqlx::query(SELECT).bind(&template_id).fetch_one(&pool).await?;
        let (trigger, action): (String, String) = (row.get("trigger"), row.get("action"));
        let (executor, jobstore): (String, String) = (row.get("executor"), row.get("jobstore"));
        let values: SqliteValues = (
            row.get("name"),
            row.get("coalesce"),
            row.get("max_instances"),
            row.get("misfire_grace_time"),
            row.get("next_run_time"),
            row.get("paused"),
            row.get("created_at"),
            row.get("updated_at"),
        );
        each_concurrently(count, concurrency, move |i| {
            let insert = sqlx::query(INSERT)
                .bind(format!("{prefix}{i}"))
                .bind(values.0.clone())
                .bind(trigger.clone())
                .bind(action.clone())
                .bind(values.1)
                .bind(values.2)
                .bind(values.3)
                .bind(executor.clone())
                .bind(jobstore.clone())
                .bind(values.4)
                .bind(values.5)
                .bind(values.6)
                .bind(values.7);
            let pool = pool.clone();
            async move {
                insert.execute(&pool).await?;
                Ok(())
            }
        })
        .await
    } else if db.starts_with("postgres:") {
        const PG_INSERT: &str = concat!(
            "INSERT INTO jobs (id, ",
            columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
        );
        let pool = sqlx::postgres::PgPoolOptions::new().max_connections(concurrency as u32).connect(&db).await?;
        let row = sqlx::query(concat!("SELECT ", columns!(), " FROM jobs WHERE id = $1"))
            .bind(&template_id)
            .fetch_one(&pool)
            .await?;
        let (trigger, action): (serde_json::Value, serde_json::Value) = (row.get("trigger"), row.get("action"));
        let (executor, jobstore): (String, String) = (row.get("executor"), row.get("jobstore"));
        let values: PostgresValues = (
            row.get("name"),
            row.get("coalesce"),
            row.get("max_instances"),
            row.get("misfire_grace_time"),
            row.get("next_run_time"),
            row.get("paused"),
            row.get("created_at"),
            row.get("updated_at"),
        );
        each_concurrently(count, concurrency, move |i| {
            let insert = sqlx::query(PG_INSERT)
                .bind(format!("{prefix}{i}"))
                .bind(values.0.clone())
                .bind(trigger.clone())
                .bind(action.clone())
                .bind(values.1)
                .bind(values.2)
                .bind(values.3)
                .bind(executor.clone())
                .bind(jobstore.clone())
                .bind(values.4)
                .bind(values.5)
                .bind(values.6)
                .bind(values.7);
            let pool = pool.clone();
            async move {
                insert.execute(&pool).await?;
                Ok(())
            }
        })
        .await
    } else {
        anyhow::bail!("insert-rate: unsupported database url {db}");
    }
}

fn usage() -> ! {
    eprintln!(
        "usage: bench sink ADDR | limit URL COUNT CONCURRENCY \
         | add-jobs API TEMPLATE_JSON PREFIX COUNT CONCURRENCY [START_US STEP_US] \
         | insert-rate DB_URL TEMPLATE_ID PREFIX COUNT CONCURRENCY"
    );
    std::process::exit(2)
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let number = |i: usize| -> usize { args.get(i).and_then(|a| a.parse().ok()).unwrap_or_else(|| usage()) };
    let text = |i: usize| -> String { args.get(i).cloned().unwrap_or_else(|| usage()) };
    let runtime = tokio::runtime::Runtime::new()?;
    match args.first().map(String::as_str) {
        Some("sink") => runtime.block_on(sink(text(1).parse()?)),
        Some("limit") => runtime.block_on(limit(text(1), number(2), number(3))),
        Some("add-jobs") => {
            let spread = (args.len() > 7).then(|| (number(6) as i64, number(7) as i64));
            runtime.block_on(add_jobs(text(1), text(2), text(3), number(4), number(5), spread))
        }
        Some("insert-rate") => runtime.block_on(insert_rate(text(1), text(2), text(3), number(4), number(5))),
        _ => usage(),
    }
}
