//! The library as a user's program uses it: the crate's public API only, a Rust function as the job, the
//! scheduler in the background.

#[path = "../../examples/background.rs"]
#[allow(dead_code)]
mod background_example;

/// `examples/background.rs`, the program of the library's documentation: a job every second, watched for 3.5 s,
/// fires at 1, 2 and 3 s (a fourth and fifth would mean a second's slack in the bounds, not a bug), and each fire
/// is a succeeded run in the ledger.
#[tokio::test]
async fn the_background_example_fires_three_to_five_times_each_a_ledger_run() -> anyhow::Result<()> {
    let (fires, runs) = background_example::run().await?;
    assert!((3..=5).contains(&fires), "{fires} fires");
    assert_eq!(runs.len(), fires, "every fire is a run in the ledger");
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

/// Changes made `by` someone are in the audit with who and why; changes made directly are the program's own and
/// are not; the history of a removed job is still there.
#[tokio::test]
async fn changes_made_by_someone_are_audited_and_read_back() -> anyhow::Result<()> {
    use apsched::{AuditAction, AuditQuery, Change, JobSpec};

    let dir = tempfile::tempdir()?;
    let scheduler = apsched::Scheduler::builder()
        .jobstore("default", apsched::store::Sqlite::open(dir.path().join("jobs.db")).await?)
        .build()
        .await?;
    let hourly: apsched::Trigger = serde_json::from_value(serde_json::json!({"type": "interval", "hours": 1}))?;
    let action: apsched::HttpAction = serde_json::from_value(serde_json::json!({"url": "http://127.0.0.1:9/hook"}))?;
    scheduler.add_job(JobSpec::new(hourly.clone(), action.clone()).id("quiet")).await?;
    let deploy = scheduler.by(Change::by("deploy-bot").because("release 4.2"));
    deploy.add_job(JobSpec::new(hourly, action).id("report")).await?;
    deploy.pause_job("report").await?;
    scheduler.by(Change::by("alice")).remove_job("report").await?;

    let history = scheduler.job_history("report", &AuditQuery { limit: 10, ..AuditQuery::default() }).await?;
    let seen: Vec<(AuditAction, &str, Option<&str>)> =
        history.iter().map(|entry| (entry.action, entry.actor.as_str(), entry.reason.as_deref())).collect();
    assert_eq!(
        seen,
        [
            (AuditAction::Remove, "alice", None),
            (AuditAction::Pause, "deploy-bot", Some("release 4.2")),
            (AuditAction::Add, "deploy-bot", Some("release 4.2")),
        ]
    );
    assert_eq!(history[1].after.as_ref().unwrap()["paused"], true);
    assert_eq!(history[0].before.as_ref().unwrap()["id"], "report");
    let everything = scheduler.audit(&AuditQuery { limit: 10, ..AuditQuery::default() }).await?;
    assert_eq!(everything.len(), 3, "the direct add of `quiet` is not audited: {everything:?}");

    // A change the scheduler did not make itself is recorded with one call.
    let quiet = scheduler.get_job("quiet").await?.expect("quiet exists");
    scheduler.record_job(&Change::by("bulk-tool"), AuditAction::BulkModify, Some(&quiet), Some(&quiet)).await?;
    let quiet_history = scheduler.job_history("quiet", &AuditQuery { limit: 10, ..AuditQuery::default() }).await?;
    assert_eq!(quiet_history.len(), 1);
    assert_eq!((quiet_history[0].action, quiet_history[0].actor.as_str()), (AuditAction::BulkModify, "bulk-tool"));
    assert_eq!(quiet_history[0].after, Some(scheduler.job_view(&quiet)));
    Ok(())
}
