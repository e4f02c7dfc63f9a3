//! The backfill cases of the store contract: a backfill's row round-trips, its steps insert each fire's run at most
//! once (a fire already in the ledger is skipped), wait while the job is at max_instances, and never apply twice
//! from the same position, on one store or on replicas sharing a database.

use super::{SharedDatabase, at, job, run};
use crate::backfill::{Backfill, BackfillState, BackfillStep, RunCounts, StepOutcome};
use crate::job::{RunKind, RunStatus};
use crate::store::{JobStore, StoreError};

fn backfill(id: &str, job_id: &str, total: u64) -> Backfill {
    Backfill {
        id: id.to_string(),
        job_id: job_id.to_string(),
        start: at(-600),
        end: at(0),
        rate_per_second: 10.0,
        state: BackfillState::Running,
        total,
        position: 0,
        skipped: 0,
        cursor: None,
        next_step_at: at(1),
        created_at: at(1),
        runs: RunCounts::default(),
    }
}

/// The step taking the backfill's fire at `fire` (as read now), or finishing it.
fn step(read: &Backfill, fire: Option<i64>, now: i64) -> BackfillStep {
    let run = fire.map(|seconds| {
        let mut run = run(&read.job_id, at(seconds), RunStatus::Pending);
        run.kind = RunKind::Backfill;
        run.idempotency_key = read.run_key(read.position);
        run.lease_expires_at = Some(at(now + 30));
        run
    });
    BackfillStep { backfill: read.clone(), run, max_instances: 1, now: at(now) }
}

async fn read(store: &dyn JobStore, id: &str) -> Backfill {
    store.get_backfill(id).await.unwrap().expect("the backfill exists")
}

pub(crate) async fn backfills_round_trip_and_are_listed_per_job_newest_first(store: &dyn JobStore) {
    let first = backfill("bf-1", "a", 3);
    let second = Backfill { created_at: at(5), next_step_at: at(5), ..backfill("bf-2", "a", 2) };
    store.create_backfill(&first).await.unwrap();
    store.create_backfill(&second).await.unwrap();
    store.create_backfill(&backfill("bf-3", "b", 1)).await.unwrap();
    assert!(matches!(store.create_backfill(&first).await, Err(StoreError::Conflict(_))));
    assert_eq!(read(store, "bf-1").await, first);
    assert_eq!(store.get_backfill("nope").await.unwrap(), None);
    let listed: Vec<String> = store.list_backfills("a").await.unwrap().into_iter().map(|b| b.id).collect();
    assert_eq!(listed, ["bf-2", "bf-1"]);
    assert!(store.list_backfills("c").await.unwrap().is_empty());

    let due: Vec<String> = store.due_backfills(at(2), 10).await.unwrap().into_iter().map(|b| b.id).collect();
    assert_eq!(due, ["bf-1", "bf-3"], "bf-2 is due later");
    let cancelled = store.cancel_backfill("bf-1").await.unwrap().unwrap();
    assert_eq!(cancelled.state, BackfillState::Cancelled);
    assert_eq!(store.cancel_backfill("nope").await.unwrap(), None);
    let due: Vec<String> = store.due_backfills(at(10), 10).await.unwrap().into_iter().map(|b| b.id).collect();
    assert_eq!(due, ["bf-3", "bf-2"], "a cancelled backfill is never due");
}

pub(crate) async fn a_backfill_step_inserts_each_fire_once_and_skips_a_taken_one(store: &dyn JobStore) {
    store.add_job(&job("a", None), false).await.unwrap();
    store.insert_run(&run("a", at(-540), RunStatus::Succeeded)).await.unwrap();
    store.create_backfill(&backfill("bf", "a", 3)).await.unwrap();

    let first = read(store, "bf").await;
    let StepOutcome::Inserted(inserted) = store.step_backfill(&step(&first, Some(-600), 2)).await.unwrap() else {
        panic!("the first fire goes in");
    };
    assert_eq!(
        (inserted.kind, inserted.scheduled_time, inserted.status),
        (RunKind::Backfill, at(-600), RunStatus::Pending)
    );
    // The same step again, from the position it read: another process took it.
    assert_eq!(store.step_backfill(&step(&first, Some(-600), 2)).await.unwrap(), StepOutcome::Lost);
    let second = read(store, "bf").await;
    assert_eq!((second.position, second.cursor, second.runs.unfinished), (1, Some(at(-600)), 1));
    assert!(second.next_step_at > at(2), "paced: the next fire waits: {second:?}");
    // The job's one instance is delivering: the next fire waits.
    assert_eq!(store.step_backfill(&step(&second, Some(-540), 3)).await.unwrap(), StepOutcome::Full);

    let mut delivered = inserted.clone();
    delivered.status = RunStatus::Succeeded;
    delivered.finished_at = Some(at(3));
    delivered.lease_expires_at = None;
    store.update_run(&delivered).await.unwrap();
    let second = read(store, "bf").await;
    assert_eq!(store.step_backfill(&step(&second, Some(-540), 4)).await.unwrap(), StepOutcome::Skipped);
    let third = read(store, "bf").await;
    assert_eq!((third.position, third.skipped, third.runs.succeeded), (2, 1, 1));
    assert_eq!(third.next_step_at, second.next_step_at, "a skipped fire sends nothing and spends no pace");
    assert!(matches!(store.step_backfill(&step(&third, Some(-480), 5)).await.unwrap(), StepOutcome::Inserted(_)));
    let done = read(store, "bf").await;
    assert_eq!((done.state, done.position, done.runs.unfinished), (BackfillState::Done, 3, 1));
    assert_eq!(done.shown_state(), "running", "a run is still delivering");
    assert_eq!(store.due_backfills(at(100), 10).await.unwrap(), Vec::new());
    let runs = store.list_runs("a", &super::all_runs()).await.unwrap();
    assert_eq!(runs.iter().filter(|run| run.kind == RunKind::Backfill).count(), 2);
}

pub(crate) async fn a_cancelled_backfill_takes_no_more_fires(store: &dyn JobStore) {
    store.add_job(&job("a", None), false).await.unwrap();
    store.create_backfill(&backfill("bf", "a", 5)).await.unwrap();
    let before = read(store, "bf").await;
    store.cancel_backfill("bf").await.unwrap();
    assert_eq!(store.step_backfill(&step(&before, Some(-600), 2)).await.unwrap(), StepOutcome::Lost);
    assert!(store.list_runs("a", &super::all_runs()).await.unwrap().is_empty());
    let cancelled = read(store, "bf").await;
    assert_eq!((cancelled.shown_state(), cancelled.pending()), ("cancelled", 0));
    // Finishing one with no fire left.
    store.create_backfill(&backfill("empty", "a", 0)).await.unwrap();
    let empty = read(store, "empty").await;
    assert_eq!(store.step_backfill(&step(&empty, None, 2)).await.unwrap(), StepOutcome::Finished);
    assert_eq!(read(store, "empty").await.shown_state(), "succeeded");
}

pub(crate) async fn replicas_never_take_the_same_backfill_fire(database: &dyn SharedDatabase) {
    let (first, second) = (database.open().await, database.open().await);
    first.add_job(&crate::job::Job { max_instances: 100, ..job("a", None) }, false).await.unwrap();
    first.create_backfill(&backfill("bf", "a", 20)).await.unwrap();
    let mut inserted = 0;
    for position in 0..20_i64 {
        let read_first = read(first.as_ref(), "bf").await;
        let read_second = read(second.as_ref(), "bf").await;
        let mut a = step(&read_first, Some(-600 + position * 10), 2 + position);
        let mut b = step(&read_second, Some(-600 + position * 10), 2 + position);
        a.max_instances = 100;
        b.max_instances = 100;
        let (x, y) = tokio::join!(first.step_backfill(&a), second.step_backfill(&b));
        let outcomes = [x.unwrap(), y.unwrap()];
        inserted += outcomes.iter().filter(|o| matches!(o, StepOutcome::Inserted(_))).count();
        assert!(outcomes.contains(&StepOutcome::Lost), "{outcomes:?}");
    }
    assert_eq!(inserted, 20);
    let done = read(second.as_ref(), "bf").await;
    assert_eq!((done.state, done.position, done.skipped, done.runs.unfinished), (BackfillState::Done, 20, 0, 20));
}
