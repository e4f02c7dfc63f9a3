//! The loop's rounds driven by hand: a manual clock, direct calls to `tick`, a memory store, and Rust functions as
//! the jobs' actions. Nothing sleeps; a delivery's end is awaited on the event stream.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::json;

use super::clock::ManualClock;
use super::events::{Event, EventKind};
use super::{JobSpec, Scheduler};
use crate::action::Action;
use crate::job::RunStatus;
use crate::store::RunQuery;

/// Bounds a wait for something that does happen; generous for a loaded machine.
const PATIENCE: Duration = Duration::from_secs(20);

fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-06-01T00:00:00Z").unwrap().to_utc()
}

fn every_ten_seconds() -> crate::trigger::TriggerSpec {
    serde_json::from_value(json!({"type": "interval", "seconds": 10, "start_date": "2026-06-01T00:00:10Z"})).unwrap()
}

async fn scheduler_at(now: DateTime<Utc>) -> (Arc<Scheduler>, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(now));
    let scheduler = Scheduler::builder()
        .jobstore("default", crate::store::Memory::new())
        .executor("default", 4)
        .clock(clock.clone())
        .build()
        .await
        .unwrap();
    (scheduler, clock)
}

/// A function job counting its calls.
async fn counting_job(scheduler: &Scheduler, id: &str) -> Arc<AtomicUsize> {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    scheduler
        .add_fn_job(id, every_ten_seconds(), move |_context| {
            let counter = counter.clone();
            async move {
                counter.fetch_add(1, Ordering::SeqCst);
                Ok(())
            }
        })
        .await
        .unwrap();
    calls
}

/// Wait for the next event of `kind`.
async fn next_event(events: &mut tokio::sync::broadcast::Receiver<Event>, kind: EventKind) -> Event {
    tokio::time::timeout(PATIENCE, async {
        loop {
            let event = events.recv().await.expect("the event bus stays open");
            if event.kind == kind {
                return event;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {kind:?} event"))
}

async fn statuses(scheduler: &Scheduler, job_id: &str) -> Vec<RunStatus> {
    let runs = scheduler.list_runs(job_id, &RunQuery { limit: 100, ..RunQuery::default() }).await.unwrap();
    runs.iter().rev().map(|run| run.status).collect()
}

#[tokio::test]
async fn nothing_is_claimed_before_the_first_fire_time() {
    let (scheduler, _clock) = scheduler_at(t0()).await;
    counting_job(&scheduler, "tick").await;
    let tick = scheduler.tick(t0()).await;
    assert_eq!((tick.submitted, tick.missed, tick.skipped, tick.coalesced), (0, 0, 0, 0));
    assert!(tick.failed_stores.is_empty() && !tick.more);
}

#[tokio::test]
async fn a_due_fire_is_claimed_once_delivered_and_the_job_advanced() {
    let (scheduler, clock) = scheduler_at(t0()).await;
    let calls = counting_job(&scheduler, "tick").await;
    let mut events = scheduler.subscribe();
    clock.set(t0() + TimeDelta::seconds(10));
    assert_eq!(scheduler.tick(super::clock::Clock::now(clock.as_ref())).await.submitted, 1);
    assert_eq!(
        scheduler.tick(super::clock::Clock::now(clock.as_ref())).await.submitted,
        0,
        "the same fire is not claimed twice"
    );
    next_event(&mut events, EventKind::JobExecuted).await;
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(statuses(&scheduler, "tick").await, [RunStatus::Succeeded]);
    let job = scheduler.get_job("tick").await.unwrap().unwrap();
    assert_eq!(job.next_run_time, Some(t0() + TimeDelta::seconds(20)));
}

#[tokio::test]
async fn a_backlog_is_coalesced_into_its_latest_fire() {
    let (scheduler, _clock) = scheduler_at(t0()).await;
    counting_job(&scheduler, "tick").await;
    let tick = scheduler.tick(t0() + TimeDelta::seconds(35)).await;
    assert_eq!((tick.submitted, tick.coalesced), (1, 2));
}

#[tokio::test]
async fn without_coalesce_fires_later_than_the_grace_time_are_missed() {
    let (scheduler, _clock) = scheduler_at(t0()).await;
    scheduler.register_fn("noop", |_context| async { Ok(()) });
    let spec = JobSpec::new(every_ten_seconds(), Action::function("noop"))
        .id("strict")
        .coalesce(false)
        .misfire_grace_time(Some(5));
    scheduler.add_job(spec).await.unwrap();
    // Fires at 10, 20 and 30 s, claimed at 35 s: 25 and 15 s late are missed, 5 s late is within the grace time.
    let tick = scheduler.tick(t0() + TimeDelta::seconds(35)).await;
    assert_eq!((tick.submitted, tick.missed), (1, 2));
}

#[tokio::test]
async fn a_fire_beyond_max_instances_is_skipped_while_a_run_is_in_flight() {
    let (scheduler, _clock) = scheduler_at(t0()).await;
    let release = Arc::new(tokio::sync::Notify::new());
    let started = Arc::new(tokio::sync::Notify::new());
    let (gate, begun) = (release.clone(), started.clone());
    scheduler
        .add_fn_job("busy", every_ten_seconds(), move |_context| {
            let (gate, begun) = (gate.clone(), begun.clone());
            async move {
                begun.notify_one();
                gate.notified().await;
                Ok(())
            }
        })
        .await
        .unwrap();
    assert_eq!(scheduler.tick(t0() + TimeDelta::seconds(10)).await.submitted, 1);
    tokio::time::timeout(PATIENCE, started.notified()).await.expect("the first run starts");
    let tick = scheduler.tick(t0() + TimeDelta::seconds(20)).await;
    assert_eq!((tick.submitted, tick.skipped), (0, 1));
    release.notify_one();
}

#[tokio::test]
async fn a_one_shot_job_is_removed_after_its_fire() {
    let (scheduler, _clock) = scheduler_at(t0()).await;
    scheduler.register_fn("noop", |_context| async { Ok(()) });
    let once = serde_json::from_value(json!({"type": "date", "run_date": "2026-06-01T00:00:05Z"})).unwrap();
    scheduler.add_job(JobSpec::new(once, Action::function("noop")).id("once")).await.unwrap();
    let tick = scheduler.tick(t0() + TimeDelta::seconds(5)).await;
    assert_eq!(tick.submitted, 1);
    assert_eq!(tick.finished_jobs, ["once"]);
    assert!(scheduler.get_job("once").await.unwrap().is_none());
}

#[tokio::test]
async fn a_paused_job_is_not_claimed_and_resumes_on_its_grid() {
    let (scheduler, clock) = scheduler_at(t0()).await;
    counting_job(&scheduler, "tick").await;
    scheduler.pause_job("tick").await.unwrap();
    assert_eq!(scheduler.tick(t0() + TimeDelta::seconds(30)).await.submitted, 0);
    clock.set(t0() + TimeDelta::seconds(31));
    let resumed = scheduler.resume_job("tick").await.unwrap();
    assert_eq!(resumed.next_run_time, Some(t0() + TimeDelta::seconds(40)));
}

#[tokio::test]
async fn a_failing_function_fails_its_run_with_the_error() {
    let (scheduler, _clock) = scheduler_at(t0()).await;
    let mut events = scheduler.subscribe();
    scheduler
        .add_fn_job("broken", every_ten_seconds(), |_context| async { anyhow::bail!("the disk is full") })
        .await
        .unwrap();
    scheduler.tick(t0() + TimeDelta::seconds(10)).await;
    next_event(&mut events, EventKind::JobError).await;
    let runs = scheduler.list_runs("broken", &RunQuery { limit: 10, ..RunQuery::default() }).await.unwrap();
    assert_eq!(runs[0].status, RunStatus::Failed);
    assert_eq!(runs[0].error.as_deref(), Some("the disk is full"));
}

#[tokio::test]
async fn ids_are_unique_across_stores_unless_replaced() {
    let scheduler = Scheduler::builder()
        .jobstore("default", crate::store::Memory::new())
        .jobstore("other", crate::store::Memory::new())
        .build()
        .await
        .unwrap();
    scheduler.register_fn("noop", |_context| async { Ok(()) });
    let spec = || JobSpec::new(every_ten_seconds(), Action::function("noop")).id("job");
    scheduler.add_job(spec()).await.unwrap();
    let taken = scheduler.add_job(spec().jobstore("other")).await.unwrap_err();
    assert!(matches!(taken, super::Error::Conflict(_)), "{taken:?}");
    scheduler.add_job(spec().jobstore("other").replace_existing(true)).await.unwrap();
    let (store, _) = scheduler.find_job("job").await.unwrap().unwrap();
    assert_eq!(store, "other");
    assert_eq!(scheduler.get_jobs().await.unwrap().len(), 1);
}

#[tokio::test]
async fn an_unregistered_function_is_refused_naming_the_field() {
    let (scheduler, _clock) = scheduler_at(t0()).await;
    let err = scheduler.add_job(JobSpec::new(every_ten_seconds(), Action::function("nobody"))).await.unwrap_err();
    assert!(matches!(&err, super::Error::Invalid { field, .. } if field == "action.function"), "{err:?}");
}

/// A bulk change and a bulk removal each report once per store, with the selector and the count; a paused job that
/// a bulk resume wakes fires on the next tick, as one resumed alone does.
#[tokio::test]
async fn bulk_changes_by_selector_report_their_count_and_resume_from_now() {
    let (scheduler, clock) = scheduler_at(t0()).await;
    let calls = counting_job(&scheduler, "fn").await;
    let labelled = super::JobChanges {
        labels: Some(crate::labels::Labels::from([("team".to_string(), "payments".to_string())])),
        ..Default::default()
    };
    scheduler.modify_job("fn", labelled).await.unwrap();
    let selector = crate::labels::Selector::parse("team=payments").unwrap();
    let mut events = scheduler.subscribe();

    let pause = super::JobChanges { paused: Some(true), ..Default::default() };
    assert_eq!(scheduler.modify_jobs(&selector, pause).await.unwrap(), 1);
    let event = next_event(&mut events, EventKind::JobsModified).await;
    assert!(matches!(&event.subject, super::events::Subject::SelectedJobs { selector, jobstore, count: 1 }
        if selector == "team=payments" && jobstore == "default"));
    clock.advance(TimeDelta::seconds(65));
    assert_eq!(scheduler.tick(t0() + TimeDelta::seconds(65)).await.submitted, 0, "a paused job fired");
    assert_eq!(calls.load(Ordering::SeqCst), 0);

    let resume = super::JobChanges { paused: Some(false), ..Default::default() };
    assert_eq!(scheduler.modify_jobs(&selector, resume).await.unwrap(), 1);
    // From now (t0 + 65 s) on its grid: the next fire is t0 + 70 s, not the missed ones.
    let job = scheduler.get_job("fn").await.unwrap().unwrap();
    assert_eq!(job.next_run_time, Some(t0() + TimeDelta::seconds(70)));

    let nothing = crate::labels::Selector::parse("team=billing").unwrap();
    assert_eq!(scheduler.remove_jobs(&nothing, None).await.unwrap(), 0);
    assert_eq!(scheduler.remove_jobs(&selector, None).await.unwrap(), 1);
    let event = next_event(&mut events, EventKind::JobsRemoved).await;
    assert!(matches!(event.subject, super::events::Subject::SelectedJobs { count: 1, .. }));
    assert!(scheduler.get_jobs().await.unwrap().is_empty());
    // An empty selector is refused: every job is said explicitly.
    let everything = crate::labels::Selector::default();
    let refused = scheduler.remove_jobs(&everything, None).await.unwrap_err();
    assert!(matches!(refused, super::Error::Invalid { ref field, .. } if field == "selector"), "{refused:?}");
}
