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
async fn after_downtime_max_catchup_runs_delivers_the_newest_missed_fires_in_order() {
    let (scheduler, clock) = scheduler_at(t0()).await;
    let delivered = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = delivered.clone();
    scheduler.register_fn("record", move |context| {
        let seen = seen.clone();
        async move {
            seen.lock().unwrap().push(context.scheduled_time);
            Ok(())
        }
    });
    let spec = JobSpec::new(every_ten_seconds(), Action::function("record"))
        .id("catchup")
        .coalesce(false)
        .misfire_grace_time(Some(300))
        .max_catchup_runs(2);
    scheduler.add_job(spec).await.unwrap();
    let mut events = scheduler.subscribe();
    // Down from before the first fire until 65 s: fires at 10 … 60 s are due, all within the grace time.
    clock.set(t0() + TimeDelta::seconds(65));
    let tick = scheduler.tick(t0() + TimeDelta::seconds(65)).await;
    assert_eq!((tick.submitted, tick.missed), (2, 4));
    next_event(&mut events, EventKind::JobExecuted).await;
    next_event(&mut events, EventKind::JobExecuted).await;
    let expected = [t0() + TimeDelta::seconds(50), t0() + TimeDelta::seconds(60)];
    assert_eq!(*delivered.lock().unwrap(), expected);
    use RunStatus::{Missed, Succeeded};
    assert_eq!(statuses(&scheduler, "catchup").await, [Missed, Missed, Missed, Missed, Succeeded, Succeeded]);
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

/// A function job whose first call waits until `release` is notified (or, aborted, tells `dropped`); every call
/// records its scheduled time.
struct SlowFirstCall {
    release: Arc<tokio::sync::Notify>,
    started: Arc<tokio::sync::Notify>,
    dropped: Arc<tokio::sync::Notify>,
    delivered: Arc<std::sync::Mutex<Vec<DateTime<Utc>>>>,
}

async fn slow_first_call(scheduler: &Scheduler, id: &str, overlap: crate::job::Overlap) -> SlowFirstCall {
    let job = SlowFirstCall {
        release: Arc::new(tokio::sync::Notify::new()),
        started: Arc::new(tokio::sync::Notify::new()),
        dropped: Arc::new(tokio::sync::Notify::new()),
        delivered: Arc::new(std::sync::Mutex::new(Vec::new())),
    };
    let calls = Arc::new(AtomicUsize::new(0));
    let (release, started, dropped, delivered) =
        (job.release.clone(), job.started.clone(), job.dropped.clone(), job.delivered.clone());
    scheduler.register_fn(id, move |context| {
        let (release, started, dropped, delivered, calls) =
            (release.clone(), started.clone(), dropped.clone(), delivered.clone(), calls.clone());
        async move {
            if calls.fetch_add(1, Ordering::SeqCst) == 0 {
                /// Tells `dropped` unless defused: the call was abandoned mid-way.
                struct Abandoned(Option<Arc<tokio::sync::Notify>>);
                impl Drop for Abandoned {
                    fn drop(&mut self) {
                        if let Some(dropped) = self.0.take() {
                            dropped.notify_one();
                        }
                    }
                }
                let mut abandoned = Abandoned(Some(dropped));
                started.notify_one();
                release.notified().await;
                abandoned.0 = None;
            }
            delivered.lock().unwrap().push(context.scheduled_time);
            Ok(())
        }
    });
    let spec = JobSpec::new(every_ten_seconds(), Action::function(id)).id(id).overlap(overlap);
    scheduler.add_job(spec).await.unwrap();
    job
}

#[tokio::test]
async fn buffer_one_delivers_the_newest_buffered_fire_as_soon_as_the_run_ends() {
    let (scheduler, _clock) = scheduler_at(t0()).await;
    let job = slow_first_call(&scheduler, "buffered", crate::job::Overlap::BufferOne).await;
    let mut events = scheduler.subscribe();
    assert_eq!(scheduler.tick(t0() + TimeDelta::seconds(10)).await.submitted, 1);
    tokio::time::timeout(PATIENCE, job.started.notified()).await.expect("the first run starts");
    let tick = scheduler.tick(t0() + TimeDelta::seconds(20)).await;
    assert_eq!((tick.submitted, tick.buffered, tick.skipped), (0, 1, 0));
    let tick = scheduler.tick(t0() + TimeDelta::seconds(30)).await;
    assert_eq!((tick.submitted, tick.buffered, tick.skipped), (0, 1, 1), "the newer fire replaces the buffered one");
    use RunStatus::{Buffered, Running, Skipped, Succeeded};
    assert_eq!(statuses(&scheduler, "buffered").await[1..], [Skipped, Buffered]);

    // The run ends: the buffered fire goes at once, with no round of the loop.
    job.release.notify_one();
    next_event(&mut events, EventKind::JobExecuted).await;
    next_event(&mut events, EventKind::JobExecuted).await;
    assert_eq!(*job.delivered.lock().unwrap(), [t0() + TimeDelta::seconds(10), t0() + TimeDelta::seconds(30)]);
    let after = statuses(&scheduler, "buffered").await;
    assert_eq!(after, [Succeeded, Skipped, Succeeded]);
    assert!(!after.contains(&Running));
}

#[tokio::test]
async fn skip_waits_for_the_next_fire_after_the_run_ends() {
    let (scheduler, _clock) = scheduler_at(t0()).await;
    let job = slow_first_call(&scheduler, "skipping", crate::job::Overlap::Skip).await;
    let mut events = scheduler.subscribe();
    scheduler.tick(t0() + TimeDelta::seconds(10)).await;
    tokio::time::timeout(PATIENCE, job.started.notified()).await.expect("the first run starts");
    assert_eq!(scheduler.tick(t0() + TimeDelta::seconds(20)).await.skipped, 1);
    job.release.notify_one();
    next_event(&mut events, EventKind::JobExecuted).await;
    use RunStatus::{Skipped, Succeeded};
    assert_eq!(statuses(&scheduler, "skipping").await, [Succeeded, Skipped], "nothing waits for the run to end");
    assert_eq!(scheduler.tick(t0() + TimeDelta::seconds(30)).await.submitted, 1, "the next fire runs");
    next_event(&mut events, EventKind::JobExecuted).await;
    assert_eq!(*job.delivered.lock().unwrap(), [t0() + TimeDelta::seconds(10), t0() + TimeDelta::seconds(30)]);
}

#[tokio::test]
async fn buffer_all_delivers_every_buffered_fire_in_order() {
    let (scheduler, _clock) = scheduler_at(t0()).await;
    let job = slow_first_call(&scheduler, "queued", crate::job::Overlap::BufferAll).await;
    let mut events = scheduler.subscribe();
    scheduler.tick(t0() + TimeDelta::seconds(10)).await;
    tokio::time::timeout(PATIENCE, job.started.notified()).await.expect("the first run starts");
    assert_eq!(scheduler.tick(t0() + TimeDelta::seconds(20)).await.buffered, 1);
    assert_eq!(scheduler.tick(t0() + TimeDelta::seconds(30)).await.buffered, 1);
    job.release.notify_one();
    for _ in 0..3 {
        next_event(&mut events, EventKind::JobExecuted).await;
    }
    let seconds: Vec<i64> = job.delivered.lock().unwrap().iter().map(|t| (*t - t0()).num_seconds()).collect();
    assert_eq!(seconds, [10, 20, 30]);
    assert_eq!(statuses(&scheduler, "queued").await, [RunStatus::Succeeded; 3]);
}

#[tokio::test]
async fn cancel_other_aborts_the_running_delivery_and_starts_the_new_fire() {
    let (scheduler, _clock) = scheduler_at(t0()).await;
    let job = slow_first_call(&scheduler, "impatient", crate::job::Overlap::CancelOther).await;
    let mut events = scheduler.subscribe();
    scheduler.tick(t0() + TimeDelta::seconds(10)).await;
    tokio::time::timeout(PATIENCE, job.started.notified()).await.expect("the first run starts");
    let tick = scheduler.tick(t0() + TimeDelta::seconds(20)).await;
    assert_eq!((tick.submitted, tick.cancelled), (1, 1));
    tokio::time::timeout(PATIENCE, job.dropped.notified()).await.expect("the first call is abandoned");
    next_event(&mut events, EventKind::JobExecuted).await;
    assert_eq!(*job.delivered.lock().unwrap(), [t0() + TimeDelta::seconds(20)], "the first never finished");
    let runs = scheduler.list_runs("impatient", &RunQuery { limit: 10, ..RunQuery::default() }).await.unwrap();
    assert_eq!((runs[1].status, runs[0].status), (RunStatus::Cancelled, RunStatus::Succeeded));
    assert_eq!(runs[1].error.as_deref(), Some(crate::store::CANCELLED));
}

#[tokio::test]
async fn replicas_sharing_postgresql_buffer_behind_each_others_runs() {
    let schema = crate::store::contract::ScratchSchema::create().await;
    let clock = Arc::new(ManualClock::new(t0()));
    let mut replicas = Vec::new();
    for _ in 0..2 {
        let store = crate::store::Postgres::connect(&schema.url, 4).await.expect("connect to the scratch schema");
        let scheduler = Scheduler::builder()
            .jobstore("default", store)
            .executor("default", 4)
            .clock(clock.clone())
            .build()
            .await
            .unwrap();
        replicas.push(scheduler);
    }
    let (first, second) = (&replicas[0], &replicas[1]);
    let job = slow_first_call(first, "shared", crate::job::Overlap::BufferOne).await;
    let on_second = Arc::new(AtomicUsize::new(0));
    let counter = on_second.clone();
    second.register_fn("shared", move |_context| {
        let counter = counter.clone();
        async move {
            counter.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    });
    let mut events = first.subscribe();
    assert_eq!(first.tick(t0() + TimeDelta::seconds(10)).await.submitted, 1);
    tokio::time::timeout(PATIENCE, job.started.notified()).await.expect("the first run starts");
    // The second replica sees the first one's run under way: the fire waits in the ledger.
    let tick = second.tick(t0() + TimeDelta::seconds(20)).await;
    assert_eq!((tick.submitted, tick.buffered), (0, 1));
    // The replica that records the end of the run delivers the buffered fire, with no round of either loop.
    job.release.notify_one();
    next_event(&mut events, EventKind::JobExecuted).await;
    next_event(&mut events, EventKind::JobExecuted).await;
    assert_eq!(*job.delivered.lock().unwrap(), [t0() + TimeDelta::seconds(10), t0() + TimeDelta::seconds(20)]);
    assert_eq!(on_second.load(Ordering::SeqCst), 0);
    assert_eq!(statuses(first, "shared").await, [RunStatus::Succeeded, RunStatus::Succeeded]);
}

#[tokio::test]
async fn a_replica_aborts_its_delivery_when_another_cancels_the_run_at_its_next_lease_upkeep() {
    let schema = crate::store::contract::ScratchSchema::create().await;
    let clock = Arc::new(ManualClock::new(t0()));
    let mut replicas = Vec::new();
    for _ in 0..2 {
        let store = crate::store::Postgres::connect(&schema.url, 4).await.expect("connect to the scratch schema");
        let scheduler = Scheduler::builder().jobstore("default", store).clock(clock.clone()).build().await.unwrap();
        replicas.push(scheduler);
    }
    let (first, second) = (&replicas[0], &replicas[1]);
    let job = slow_first_call(first, "shared", crate::job::Overlap::CancelOther).await;
    second.register_fn("shared", |_context| async { Ok(()) });
    let mut events = second.subscribe();
    first.tick(t0() + TimeDelta::seconds(10)).await;
    tokio::time::timeout(PATIENCE, job.started.notified()).await.expect("the first run starts");
    let tick = second.tick(t0() + TimeDelta::seconds(20)).await;
    assert_eq!((tick.submitted, tick.cancelled), (1, 1));
    next_event(&mut events, EventKind::JobExecuted).await;
    // The first replica learns of the cancel when it extends its leases, and abandons the call.
    first.keep_leases().await;
    tokio::time::timeout(PATIENCE, job.dropped.notified()).await.expect("the first call is abandoned");
    use RunStatus::{Cancelled, Succeeded};
    assert_eq!(statuses(first, "shared").await, [Cancelled, Succeeded]);
    assert!(job.delivered.lock().unwrap().is_empty(), "the first call never finished");
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

#[tokio::test]
async fn claims_stop_at_the_backlog_and_the_deliveries_that_start_wake_the_loop_for_more() {
    use super::{CLAIM_BATCH, FIRST_CLAIM, MAX_BACKLOG};
    let clock = Arc::new(ManualClock::new(t0()));
    let scheduler = Scheduler::builder()
        .jobstore("default", crate::store::Memory::new())
        .executor("default", 1)
        .clock(clock)
        .build()
        .await
        .unwrap();
    // Each call waits for a permit: until the test gives some, one run holds the only worker and the rest wait.
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let calls = Arc::new(AtomicUsize::new(0));
    let (held_gate, counter) = (gate.clone(), calls.clone());
    scheduler.register_fn("held", move |_context| {
        let (gate, counter) = (held_gate.clone(), counter.clone());
        async move {
            gate.acquire().await.expect("never closed").forget();
            counter.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    });
    let jobs = MAX_BACKLOG + CLAIM_BATCH / 5;
    for i in 0..jobs {
        let spec = JobSpec::new(every_ten_seconds(), Action::function("held")).id(format!("job-{i}"));
        scheduler.add_job(spec).await.unwrap();
    }
    let due = t0() + TimeDelta::seconds(10);
    // Claims growing from FIRST_CLAIM (twice the runs in hand each time) until the backlog is full: the run holding
    // the worker and those waiting for it. Nothing finishes meanwhile, so the sizes are exactly these.
    let mut claimed = 0;
    let mut sizes = Vec::new();
    loop {
        let tick = scheduler.tick(due).await;
        if tick.held_for_backlog {
            assert_eq!(tick.submitted, 0, "{tick:?}");
            break;
        }
        claimed += tick.submitted;
        sizes.push(tick.submitted);
        assert!(sizes.len() <= MAX_BACKLOG / FIRST_CLAIM, "claims never stopped: {sizes:?}");
    }
    assert_eq!(sizes, [FIRST_CLAIM, 2 * FIRST_CLAIM, 6 * FIRST_CLAIM, CLAIM_BATCH, CLAIM_BATCH]);
    // Every claimed run is in hand, and claims stopped short of the bound by less than a batch.
    assert_eq!(scheduler.in_hand(), claimed);
    assert!(claimed <= MAX_BACKLOG && claimed > MAX_BACKLOG - CLAIM_BATCH, "{claimed}");
    // The adds left a wake-up stored; the one awaited next must come from the deliveries.
    let _ = futures::FutureExt::now_or_never(scheduler.wake.notified());

    gate.add_permits(jobs);
    tokio::time::timeout(PATIENCE, scheduler.wake.notified()).await.expect("the deliveries wake the loop");
    tokio::time::timeout(PATIENCE, async {
        while scheduler.in_hand() > MAX_BACKLOG - CLAIM_BATCH {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the claimed runs are delivered and recorded");
    // What the backlog held back is claimed once there is room, by claims of the sizes the runs in hand allow.
    tokio::time::timeout(PATIENCE, async {
        while claimed < jobs {
            let tick = scheduler.tick(due).await;
            assert!(tick.submitted <= CLAIM_BATCH, "{tick:?}");
            assert!(tick.submitted > 0 || tick.held_for_backlog, "nothing claimed with room: {tick:?}");
            claimed += tick.submitted;
            if tick.held_for_backlog {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    })
    .await
    .expect("the rest is claimed");
    assert_eq!(claimed, jobs);
    tokio::time::timeout(PATIENCE, async {
        while calls.load(Ordering::SeqCst) < jobs {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("every job is delivered");
    assert_eq!(calls.load(Ordering::SeqCst), jobs, "each fire once");
}
