//! The scheduler in the foreground (APScheduler's BlockingScheduler): `run_until` fires jobs until its future
//! completes, then shuts down, waiting for deliveries in flight. Jobs are kept in a SQLite file, so a job added
//! by an earlier run of the program is still there; a webhook job and a Rust function job share the run ledger.
//!
//! `cargo run --example blocking -- [seconds]` runs for that long (default 5), or until Ctrl-C.

use std::time::Duration;

use apsched::{JobSpec, Scheduler, Trigger};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let seconds: u64 = std::env::args().nth(1).map(|arg| arg.parse()).transpose()?.unwrap_or(5);
    let path = std::env::temp_dir().join("apsched-blocking-example.db");
    let scheduler = Scheduler::builder()
        .jobstore("default", apsched::store::Sqlite::open(&path).await?)
        .executor("default", 10)
        .build()
        .await?;

    // A Rust function, every two seconds. Registered at every start: a stored job names its function, and the
    // program that runs it says what the name means.
    let every_two_seconds: Trigger = serde_json::from_value(serde_json::json!({"type": "interval", "seconds": 2}))?;
    scheduler
        .add_fn_job("report", every_two_seconds, |ctx| async move {
            println!("report for {} (attempt {})", ctx.scheduled_time, ctx.attempt);
            Ok(())
        })
        .await?;

    // A webhook, on a crontab schedule; its calls fail unless something listens on 127.0.0.1:9000, and the
    // ledger records the failures as it would record successes.
    let webhook: apsched::HttpAction =
        serde_json::from_value(serde_json::json!({"url": "http://127.0.0.1:9000/hook"}))?;
    let every_minute: Trigger = serde_json::from_value(serde_json::json!({"type": "cron", "crontab": "* * * * *"}))?;
    scheduler.add_job(JobSpec::new(every_minute, webhook).id("hook").replace_existing(true)).await?;

    println!(
        "jobs in {}: {:?}",
        path.display(),
        scheduler.get_jobs().await?.iter().map(|job| &job.id).collect::<Vec<_>>()
    );
    let stop = async {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(seconds)) => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    };
    scheduler.run_until(stop).await;
    let runs = scheduler.list_runs("report", &apsched::store::RunQuery { limit: 5, ..Default::default() }).await?;
    for run in runs {
        println!("run of {} at {}: {:?}", run.job_id, run.scheduled_time, run.status);
    }
    Ok(())
}
