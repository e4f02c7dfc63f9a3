//! The scheduler in the background (APScheduler's BackgroundScheduler): `start` returns at once and the program
//! goes on while jobs fire. A Rust function is the job; it counts its fires in state the closure captures.
//!
//! `cargo run --example background` prints three to five fires of a job that runs every second.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let (fires, runs) = run().await?;
    println!("{fires} fires; the ledger holds {} runs of the job:", runs.len());
    for run in runs {
        println!("  {} {:?}", run.scheduled_time, run.status);
    }
    Ok(())
}

/// Fire a job every second for 3.5 s, then pause it and shut down: the fires the function counted, and the job's
/// runs in the ledger (newest first).
pub async fn run() -> anyhow::Result<(usize, Vec<apsched::Run>)> {
    let fires = Arc::new(AtomicUsize::new(0));
    let counter = fires.clone();

    let scheduler = apsched::Scheduler::builder()
        .jobstore("default", apsched::store::Memory::new())
        .executor("default", 4)
        .build()
        .await?;
    let every_second: apsched::Trigger = serde_json::from_value(serde_json::json!({"type": "interval", "seconds": 1}))?;
    scheduler
        .add_fn_job("tick", every_second, move |ctx| {
            let counter = counter.clone();
            async move {
                let fire = counter.fetch_add(1, Ordering::SeqCst) + 1;
                println!("fire {fire} of job {:?}, scheduled for {}", ctx.job_id, ctx.scheduled_time);
                Ok(())
            }
        })
        .await?;
    let _background = scheduler.start();
    tokio::time::sleep(std::time::Duration::from_millis(3500)).await;
    scheduler.pause_job("tick").await?;
    let jobs = scheduler.get_jobs().await?;
    scheduler.shutdown(true).await;

    assert!(jobs.iter().all(|job| job.paused), "the job is paused: {jobs:?}");
    let runs = scheduler.list_runs("tick", &apsched::store::RunQuery { limit: 10, ..Default::default() }).await?;
    Ok((fires.load(Ordering::SeqCst), runs))
}
