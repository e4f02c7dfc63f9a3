//! The scheduler in the background (APScheduler's BackgroundScheduler): `start` returns at once and the program
//! goes on while jobs fire. A Rust function is the job; it counts its fires in state the closure captures.
//!
//! `cargo run --example background` prints three to five fires of a job that runs every second.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
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

    println!(
        "{} fires; jobs after the pause: {:?}",
        fires.load(Ordering::SeqCst),
        jobs.iter().map(|job| (&job.id, job.paused)).collect::<Vec<_>>()
    );
    Ok(())
}
