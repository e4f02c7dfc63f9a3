//! The library as a user's program uses it: the crate's public API only, a Rust function as the job, the
//! scheduler in the background.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The program of the library's documentation, with a counter the closure captures: a job every second, watched
/// for 3.5 s, fires at 1, 2 and 3 s (a fourth and fifth would mean a second's slack in the bounds, not a bug).
#[tokio::test]
async fn a_function_job_fires_in_the_background_until_paused() -> anyhow::Result<()> {
    let fires = Arc::new(AtomicUsize::new(0));
    let counter = fires.clone();
    let scheduler = apsched::Scheduler::builder()
        .jobstore("default", apsched::store::Memory::new())
        .executor("default", 4)
        .build()
        .await?;
    let every_second: apsched::Trigger = serde_json::from_value(serde_json::json!({"type": "interval", "seconds": 1}))?;
    scheduler
        .add_fn_job("tick", every_second, move |_ctx| {
            let counter = counter.clone();
            async move {
                counter.fetch_add(1, Ordering::SeqCst);
                Ok(())
            }
        })
        .await?;
    let _background = scheduler.start();
    tokio::time::sleep(std::time::Duration::from_millis(3500)).await;
    scheduler.pause_job("tick").await?;
    let jobs = scheduler.get_jobs().await?;
    scheduler.shutdown(true).await;

    let fired = fires.load(Ordering::SeqCst);
    assert!((3..=5).contains(&fired), "{fired} fires");
    assert_eq!(jobs.len(), 1);
    assert!(jobs[0].paused && jobs[0].next_run_time.is_none());
    let runs = scheduler.list_runs("tick", &apsched::store::RunQuery { limit: 10, ..Default::default() }).await?;
    assert_eq!(runs.len(), fired, "every fire is a run in the ledger");
    assert!(runs.iter().all(|run| run.status == apsched::RunStatus::Succeeded), "{runs:?}");
    Ok(())
}

/// The foreground mode: `run_until` returns once its future completes, with the scheduler shut down.
#[tokio::test]
async fn run_until_fires_until_its_future_completes_then_shuts_down() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let scheduler = apsched::Scheduler::builder()
        .jobstore("default", apsched::store::Sqlite::open(dir.path().join("jobs.db")).await?)
        .build()
        .await?;
    let (fired, mut first_fire) = tokio::sync::mpsc::unbounded_channel();
    let now: apsched::Trigger = serde_json::from_value(serde_json::json!({"type": "interval", "seconds": 1}))?;
    scheduler
        .add_fn_job("once-a-second", now, move |ctx| {
            let fired = fired.clone();
            async move {
                let _ = fired.send(ctx.job_id);
                Ok(())
            }
        })
        .await?;
    let mut events = scheduler.subscribe();
    scheduler.run_until(async { first_fire.recv().await.map(drop).unwrap_or_default() }).await;
    assert_eq!(scheduler.state(), apsched::SchedulerState::Stopped);
    let kinds: Vec<apsched::EventKind> =
        std::iter::from_fn(|| events.try_recv().ok()).map(|event| event.kind).collect();
    assert!(kinds.contains(&apsched::EventKind::SchedulerStarted), "{kinds:?}");
    assert!(kinds.contains(&apsched::EventKind::SchedulerShutdown), "{kinds:?}");
    Ok(())
}
