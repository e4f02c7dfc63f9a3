//! The store contract suite: one behaviour test per rule of the `JobStore` docs, run against every store so the
//! memory store (the reference) and the database stores cannot drift apart.
//!
//! Each case is a plain async function over `&dyn JobStore`; `store_contract_tests!(module, fixture)` expands them
//! all into `#[tokio::test]`s against a fresh store per case. Adding a store is one more invocation at the end.
//! Times are microsecond-precise, the precision every store keeps.
//!
//! The SQL stores meet a few more rules, about a database several stores (replicas, or processes on one SQLite
//! file) share and about rows as the database holds them: those cases take a `SharedDatabase` and
//! `sql_store_contract_tests!` runs them against SQLite and PostgreSQL.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use chrono::{DateTime, Duration, TimeZone, Utc};
use chrono_tz::Tz;
use serde_json::json;

mod backfills;
pub(crate) use backfills::*;

use super::memory::MemoryStore;
use super::postgres::PostgresStore;
use super::sqlite::SqliteStore;
use super::{
    Edit, Edited, FirePlan, JobCursor, JobQuery, JobStore, JobWrite, Load, Planner, Prune, RunCursor, RunQuery,
    StoreError, job_order_key,
};
use crate::audit::{AuditAction, AuditCursor, AuditEntry, AuditQuery, Change};
use crate::calendar::Calendar;
use crate::job::{Job, Run, RunKind, RunStatus};
use crate::labels::{Labels, Selector};

/// A store for one test, with whatever must live as long as it (a temporary directory, a scratch schema).
pub(crate) struct Fixture {
    store: Box<dyn JobStore>,
    _keep_alive: Option<Box<dyn std::any::Any + Send>>,
}

impl Fixture {
    pub(crate) fn new(store: impl JobStore) -> Fixture {
        Fixture { store: Box::new(store), _keep_alive: None }
    }

    pub(crate) fn keeping(mut self, resource: impl std::any::Any + Send) -> Fixture {
        self._keep_alive = Some(Box::new(resource));
        self
    }

    pub(crate) fn store(&self) -> &dyn JobStore {
        self.store.as_ref()
    }
}

pub(crate) async fn memory_fixture() -> Fixture {
    Fixture::new(MemoryStore::new())
}

pub(crate) async fn sqlite_fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("temporary directory");
    let url = format!("sqlite://{}", dir.path().join("apsched.db").display());
    let store = SqliteStore::connect(&url).await.expect("open a fresh SQLite file");
    Fixture::new(store).keeping(dir)
}

/// The test database when `APSCHED_TEST_DATABASE_URL` is unset (what CI sets): the PostgreSQL tests always run,
/// and fail when the server is unreachable.
pub(crate) const DEFAULT_TEST_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/test";
/// Connections per test store: a contract case makes one call at a time.
const TEST_POOL_SIZE: u32 = 2;

/// A schema of its own for one test, so tests run in parallel on one database; dropped with everything in it.
pub(crate) struct ScratchSchema {
    admin_url: String,
    name: String,
    /// The test database with this schema as its search path.
    pub(crate) url: String,
}

impl ScratchSchema {
    pub(crate) async fn create() -> ScratchSchema {
        let admin_url =
            std::env::var("APSCHED_TEST_DATABASE_URL").unwrap_or_else(|_| DEFAULT_TEST_DATABASE_URL.to_string());
        let name = format!("t_{}", uuid::Uuid::new_v4().simple());
        let mut admin = <sqlx::PgConnection as sqlx::Connection>::connect(&admin_url)
            .await
            .unwrap_or_else(|err| panic!("PostgreSQL at {admin_url} (APSCHED_TEST_DATABASE_URL): {err}"));
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {name}"))).execute(&mut admin).await.unwrap();
        let separator = if admin_url.contains('?') { '&' } else { '?' };
        let url = format!("{admin_url}{separator}options[search_path]={name}");
        ScratchSchema { admin_url, name, url }
    }
}

impl Drop for ScratchSchema {
    fn drop(&mut self) {
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        // Drop runs outside any async context; a thread of its own can block on the cleanup.
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async {
                let mut admin = <sqlx::PgConnection as sqlx::Connection>::connect(&admin_url).await?;
                sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {name} CASCADE"))).execute(&mut admin).await
            })
        });
        if let Ok(Err(err)) = cleanup.join() {
            eprintln!("could not drop the scratch schema {}: {err}", self.name);
        }
    }
}

pub(crate) async fn postgres_fixture() -> Fixture {
    let schema = ScratchSchema::create().await;
    let store = PostgresStore::connect(&schema.url, TEST_POOL_SIZE).await.expect("connect to a fresh schema");
    Fixture::new(store).keeping(schema)
}

/// Expands every contract case into a `#[tokio::test]` in a module `$module`, each against a fresh store from
/// `$fixture` (an expression, resolved inside `$module`, whose value is a future of a `Fixture`).
macro_rules! store_contract_tests {
    ($module:ident, $fixture:expr) => {
        store_contract_tests!(@cases $module, $fixture, [
            job_round_trips_every_field,
            add_conflicts_unless_replace_existing_which_keeps_created_at,
            update_overwrites_and_a_missing_job_is_not_found,
            remove_and_remove_all_report_what_they_removed,
            list_orders_by_next_run_time_then_id_paused_last,
            list_filters_by_paused,
            keyset_pagination_visits_every_job_once,
            labels_round_trip_and_are_replaced_whole,
            selectors_pick_exactly_the_matching_jobs,
            selectors_combine_with_the_paused_filter_and_pagination,
            remove_jobs_removes_only_the_selected_jobs_and_their_labels,
            modify_jobs_saves_or_removes_each_selected_job_once,
            modify_jobs_changes_nothing_when_the_editor_refuses,
            earliest_next_run_time_ignores_paused_jobs,
            claim_takes_only_due_unpaused_jobs_earliest_first,
            claim_respects_the_limit,
            claim_tells_the_planner_the_jobs_active_runs,
            a_plan_supersedes_buffered_fires_and_cancels_the_oldest_runs,
            a_cancelled_run_is_final_and_its_deliverer_is_told,
            promote_buffered_delivers_the_oldest_fires_where_there_is_room,
            prune_keeps_buffered_fires,
            claim_removes_a_job_whose_plan_has_no_next_run_time,
            claim_returns_every_inserted_run_and_leases_only_pending_ones,
            claim_never_inserts_a_fire_twice,
            insert_run_conflicts_on_a_taken_fire,
            a_runs_kind_is_kept,
            update_run_saves_every_progress_field,
            take_expired_runs_releases_only_expired_unfinished_runs,
            extend_leases_moves_only_the_named_unfinished_runs,
            list_runs_newest_first_filtered_and_paginated,
            prune_by_age_deletes_only_old_finished_runs,
            prune_by_count_keeps_each_jobs_newest_finished_runs,
            prune_respects_its_limit_and_needs_a_rule,
            audited_writes_record_one_entry_per_job_in_the_same_step,
            a_write_that_fails_records_nothing,
            adds_made_together_are_each_answered_alone,
            remove_all_records_each_removed_job,
            audit_entries_round_trip_every_field,
            list_audit_newest_first_filtered_and_paginated,
            prune_audit_deletes_only_old_entries_within_its_limit,
            calendars_round_trip_replace_and_list_by_id,
            the_calendar_version_counts_every_change,
            jobs_with_calendars_are_those_whose_trigger_names_one,
            health_follows_each_runs_first_outcome_and_survives_job_writes,
            outcomes_recorded_together_keep_each_jobs_health_in_finishing_order,
            auto_pause_after_failures_pauses_with_the_outcome,
            due_resumes_are_taken_once_and_the_earliest_is_known,
            a_job_without_success_for_stale_after_seconds_is_marked_stale_once,
            backfills_round_trip_and_are_listed_per_job_newest_first,
            a_backfill_step_inserts_each_fire_once_and_skips_a_taken_one,
            a_cancelled_backfill_takes_no_more_fires,
            notifications_are_claimed_once_under_a_lease,
            health_changes_write_their_notifications_with_them,
            the_outcome_of_a_removed_jobs_last_run_notifies_from_the_job_as_claimed,
        ]);
    };
    (@cases $module:ident, $fixture:expr, [$($case:ident),* $(,)?]) => {
        mod $module {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[tokio::test]
                async fn $case() {
                    let fixture = $fixture.await;
                    $crate::store::contract::$case(fixture.store()).await;
                }
            )*
        }
    };
}

/// Base of the test clock; the odd microseconds catch a store that keeps only milliseconds or seconds.
pub(crate) fn at(seconds: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 25, 10, 0, 0).unwrap() + Duration::microseconds(123_457) + Duration::seconds(seconds)
}

/// A job with every field set to something a store could lose.
pub(crate) fn job(id: &str, next_run_time: Option<DateTime<Utc>>) -> Job {
    Job {
        id: id.to_string(),
        name: Some(format!("job {id}")),
        trigger: serde_json::from_value(json!({"type": "date", "run_date": "2026-12-01T10:00:00Z"})).unwrap(),
        action: serde_json::from_value(json!({"url": format!("http://127.0.0.1:9/{id}")})).unwrap(),
        coalesce: true,
        max_instances: 1,
        misfire_grace_time: Some(60),
        max_catchup_runs: None,
        overlap: crate::job::Overlap::Skip,
        auto_pause_after_failures: None,
        stale_after_seconds: Some(86_400),
        paused_reason: None,
        paused_until: None,
        notify: None,
        health: Default::default(),
        executor: "default".to_string(),
        jobstore: "default".to_string(),
        next_run_time,
        paused: false,
        labels: Labels::new(),
        created_at: at(-3600),
        updated_at: at(-1800),
    }
}

pub(crate) fn paused_job(id: &str) -> Job {
    Job { paused: true, ..job(id, None) }
}

/// A ledger row with a key derived from its fire, so tests can name it.
pub(crate) fn run(job_id: &str, scheduled_time: DateTime<Utc>, status: RunStatus) -> Run {
    Run {
        idempotency_key: format!("{job_id}@{}", scheduled_time.timestamp_micros()),
        job_id: job_id.to_string(),
        scheduled_time,
        kind: RunKind::Scheduled,
        status,
        attempts: 0,
        started_at: None,
        finished_at: if status.is_final() { Some(scheduled_time + Duration::seconds(1)) } else { None },
        http_status: None,
        duration_ms: None,
        error: None,
        response_excerpt: None,
        action: serde_json::from_value(json!({"url": format!("http://127.0.0.1:9/{job_id}")})).unwrap(),
        executor: "default".to_string(),
        timezone: "UTC".to_string(),
        lease_expires_at: None,
        created_at: scheduled_time,
        removed_job: None,
    }
}

fn leased(mut run: Run, until: DateTime<Utc>) -> Run {
    run.lease_expires_at = Some(until);
    run
}

/// One pending run at the job's next run time; the next one `step` later.
pub(crate) struct Advance {
    pub(crate) step: Duration,
}

impl Planner for Advance {
    fn plan(&self, job: &Job, _load: Load, now: DateTime<Utc>) -> FirePlan {
        let scheduled = job.next_run_time.expect("a due job has a next run time");
        FirePlan {
            runs: vec![Run::new(job, scheduled, RunStatus::Pending, now, Tz::UTC)],
            next_run_time: Some(scheduled + self.step),
            ..FirePlan::default()
        }
    }
}

fn every_minute() -> Advance {
    Advance { step: Duration::seconds(60) }
}

/// The trigger has ended: one last pending run, then the job goes.
struct LastFire;

impl Planner for LastFire {
    fn plan(&self, job: &Job, _load: Load, now: DateTime<Utc>) -> FirePlan {
        let scheduled = job.next_run_time.expect("a due job has a next run time");
        FirePlan {
            runs: vec![Run::new(job, scheduled, RunStatus::Pending, now, Tz::UTC)],
            next_run_time: None,
            ..FirePlan::default()
        }
    }
}

/// Leaves the job's next run time where it is, so the next claim plans the same fire again (as a second
/// scheduler that read the job before the first advanced it would).
struct SameFireAgain;

impl Planner for SameFireAgain {
    fn plan(&self, job: &Job, _load: Load, now: DateTime<Utc>) -> FirePlan {
        let scheduled = job.next_run_time.expect("a due job has a next run time");
        FirePlan {
            runs: vec![Run::new(job, scheduled, RunStatus::Pending, now, Tz::UTC)],
            next_run_time: Some(scheduled),
            ..FirePlan::default()
        }
    }
}

/// A backlog: two earlier fires recorded as missed and coalesced, the latest delivered.
struct Backlog;

impl Planner for Backlog {
    fn plan(&self, job: &Job, _load: Load, now: DateTime<Utc>) -> FirePlan {
        let scheduled = job.next_run_time.expect("a due job has a next run time");
        FirePlan {
            runs: vec![
                Run::new(job, scheduled - Duration::seconds(120), RunStatus::Missed, now, Tz::UTC),
                Run::new(job, scheduled - Duration::seconds(60), RunStatus::Coalesced, now, Tz::UTC),
                Run::new(job, scheduled, RunStatus::Pending, now, Tz::UTC),
            ],
            next_run_time: Some(scheduled + Duration::seconds(60)),
            ..FirePlan::default()
        }
    }
}

/// Remembers the load it was told for each job.
#[derive(Default)]
struct RecordActiveRuns {
    seen: Mutex<Vec<(String, Load)>>,
}

impl Planner for RecordActiveRuns {
    fn plan(&self, job: &Job, load: Load, now: DateTime<Utc>) -> FirePlan {
        self.seen.lock().unwrap().push((job.id.clone(), load));
        every_minute().plan(job, load, now)
    }
}

fn ids(jobs: &[Job]) -> Vec<&str> {
    jobs.iter().map(|job| job.id.as_str()).collect()
}

fn keys(runs: &[Run]) -> Vec<&str> {
    runs.iter().map(|run| run.idempotency_key.as_str()).collect()
}

fn all_jobs() -> JobQuery {
    JobQuery { limit: 1000, ..JobQuery::default() }
}

fn all_runs() -> RunQuery {
    RunQuery { status: None, after: None, limit: 1000 }
}

async fn add_all(store: &dyn JobStore, jobs: &[Job]) {
    for job in jobs {
        store.add_job(job, false).await.unwrap();
    }
}

async fn the_run(store: &dyn JobStore, job_id: &str, idempotency_key: &str) -> Run {
    let runs = store.list_runs(job_id, &all_runs()).await.unwrap();
    runs.into_iter().find(|run| run.idempotency_key == idempotency_key).expect("run in the ledger")
}

pub(crate) async fn job_round_trips_every_field(store: &dyn JobStore) {
    let mut full = job("full", Some(at(90)));
    full.trigger = serde_json::from_value(json!({"type": "date", "run_date": "2026-12-01T10:00:00+01:00",
        "timezone": "Europe/Berlin"}))
    .unwrap();
    full.action = serde_json::from_value(json!({
        "type": "http", "method": "PUT", "url": "https://reports.internal/run?x=1",
        "headers": {"Authorization": "Bearer s3cret", "X-Trace": "ü-ñ"},
        "json": {"kind": "nightly", "n": [1, 2.5, null], "nested": {"ok": true}},
        "timeout_seconds": 12.5
    }))
    .unwrap();
    full.coalesce = false;
    full.max_instances = 7;
    full.misfire_grace_time = Some(3600);
    full.max_catchup_runs = Some(3);
    full.auto_pause_after_failures = Some(4);
    full.stale_after_seconds = Some(600);
    full.notify = Some(
        serde_json::from_value(json!({
            "url": "https://alerts.internal/apsched", "on": ["failure", "auto_paused"],
            "headers": {"Authorization": "Bearer n0tify"}, "failure_threshold": 2,
            "signing_secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
        }))
        .unwrap(),
    );
    full.paused_reason = Some("maintenance ü".to_string());
    full.paused_until = Some(at(7200));
    full.executor = "slow".to_string();
    full.jobstore = "archive".to_string();
    full.created_at = Utc.with_ymd_and_hms(1969, 7, 20, 20, 17, 40).unwrap() + Duration::microseconds(1);
    full.updated_at = at(-1);

    let mut sparse = paused_job("sparse");
    sparse.name = None;
    sparse.misfire_grace_time = None;
    sparse.action =
        serde_json::from_value(json!({"method": "GET", "url": "http://127.0.0.1:9/", "body": "plain"})).unwrap();

    add_all(store, &[full.clone(), sparse.clone()]).await;
    assert_eq!(store.get_job("full").await.unwrap(), Some(full));
    assert_eq!(store.get_job("sparse").await.unwrap(), Some(sparse));
    assert_eq!(store.get_job("absent").await.unwrap(), None);
}

pub(crate) async fn add_conflicts_unless_replace_existing_which_keeps_created_at(store: &dyn JobStore) {
    let original = job("a", Some(at(10)));
    store.add_job(&original, false).await.unwrap();

    let mut replacement = job("a", Some(at(20)));
    replacement.name = Some("replaced".to_string());
    replacement.max_instances = 3;
    replacement.created_at = at(5);
    replacement.updated_at = at(6);
    assert!(matches!(store.add_job(&replacement, false).await, Err(StoreError::Conflict(_))));
    assert_eq!(store.get_job("a").await.unwrap(), Some(original.clone()));

    store.add_job(&replacement, true).await.unwrap();
    let expected = Job { created_at: original.created_at, ..replacement.clone() };
    assert_eq!(store.get_job("a").await.unwrap(), Some(expected));

    // replace_existing on a new id is a plain add.
    store.add_job(&job("b", None), true).await.unwrap();
    assert_eq!(store.get_job("b").await.unwrap(), Some(job("b", None)));
    assert_eq!(store.count_jobs().await.unwrap(), 2);
}

pub(crate) async fn update_overwrites_and_a_missing_job_is_not_found(store: &dyn JobStore) {
    store.add_job(&job("a", Some(at(10))), false).await.unwrap();
    let mut changed = job("a", None);
    changed.paused = true;
    changed.name = None;
    changed.misfire_grace_time = None;
    changed.updated_at = at(11);
    store.update_job(&changed).await.unwrap();
    assert_eq!(store.get_job("a").await.unwrap(), Some(changed));

    assert!(matches!(store.update_job(&job("ghost", Some(at(1)))).await, Err(StoreError::NotFound)));
    assert_eq!(store.get_job("ghost").await.unwrap(), None);
}

pub(crate) async fn remove_and_remove_all_report_what_they_removed(store: &dyn JobStore) {
    store.ping().await.unwrap();
    add_all(store, &[job("a", Some(at(1))), job("b", Some(at(2))), paused_job("c")]).await;
    assert_eq!(store.count_jobs().await.unwrap(), 3);

    assert!(store.remove_job("a").await.unwrap());
    assert!(!store.remove_job("a").await.unwrap());
    assert_eq!(store.get_job("a").await.unwrap(), None);
    assert_eq!(store.count_jobs().await.unwrap(), 2);

    assert_eq!(store.remove_all_jobs().await.unwrap(), 2);
    assert_eq!(store.count_jobs().await.unwrap(), 0);
    assert!(store.list_jobs(&all_jobs()).await.unwrap().is_empty());
    assert_eq!(store.remove_all_jobs().await.unwrap(), 0);
}

/// Ties on next_run_time, ids that sort differently by byte and by letter, a time before the epoch, unpaused
/// and paused jobs without a next run time. In list order.
fn jobs_in_list_order() -> Vec<Job> {
    let before_epoch = Utc.with_ymd_and_hms(1960, 1, 1, 0, 0, 0).unwrap() + Duration::microseconds(7);
    vec![
        job("old", Some(before_epoch)),
        job("B", Some(at(0))),
        job("a", Some(at(0))),
        job("a.1", Some(at(0))),
        job("b", Some(at(0))),
        job("z", Some(at(0) + Duration::microseconds(1))),
        job("c", Some(at(60))),
        job("d", Some(at(60))),
        job("e", Some(at(3600))),
        job("finished", None),
        paused_job("p-A"),
        paused_job("p-a"),
        paused_job("p-b"),
    ]
}

fn shuffled(mut jobs: Vec<Job>) -> Vec<Job> {
    // A fixed interleaving, so insertion order is neither list order nor its reverse.
    let mut reordered = Vec::new();
    while !jobs.is_empty() {
        reordered.push(jobs.remove(jobs.len() / 2));
    }
    reordered
}

pub(crate) async fn list_orders_by_next_run_time_then_id_paused_last(store: &dyn JobStore) {
    let expected = jobs_in_list_order();
    let mut sorted = expected.clone();
    sorted.sort_by(|a, b| job_order_key(a).cmp(&job_order_key(b)));
    assert_eq!(ids(&sorted), ids(&expected), "the fixture itself follows job_order_key");

    add_all(store, &shuffled(expected.clone())).await;
    assert_eq!(store.list_jobs(&all_jobs()).await.unwrap(), expected);
    let first_three = store.list_jobs(&JobQuery { limit: 3, ..all_jobs() }).await.unwrap();
    assert_eq!(ids(&first_three), ids(&expected[..3]));
    assert!(store.list_jobs(&JobQuery { limit: 0, ..all_jobs() }).await.unwrap().is_empty());
}

pub(crate) async fn list_filters_by_paused(store: &dyn JobStore) {
    add_all(store, &shuffled(jobs_in_list_order())).await;
    let paused = store.list_jobs(&JobQuery { paused: Some(true), ..all_jobs() }).await.unwrap();
    assert_eq!(ids(&paused), ["p-A", "p-a", "p-b"]);
    let running = store.list_jobs(&JobQuery { paused: Some(false), ..all_jobs() }).await.unwrap();
    assert_eq!(ids(&running), ["old", "B", "a", "a.1", "b", "z", "c", "d", "e", "finished"]);
}

async fn walk_job_pages(store: &dyn JobStore, paused: Option<bool>, page_size: usize, total: usize) -> Vec<String> {
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = store
            .list_jobs(&JobQuery { paused, after: after.clone(), limit: page_size, ..JobQuery::default() })
            .await
            .unwrap();
        assert!(page.len() <= page_size);
        seen.extend(page.iter().map(|job| job.id.clone()));
        assert!(seen.len() <= total, "pages of {page_size} repeat jobs: {seen:?}");
        match page.last() {
            Some(last) if page.len() == page_size => after = Some(JobCursor::of(last)),
            _ => return seen,
        }
    }
}

pub(crate) async fn keyset_pagination_visits_every_job_once(store: &dyn JobStore) {
    let expected = jobs_in_list_order();
    add_all(store, &shuffled(expected.clone())).await;
    let expected_ids: Vec<String> = expected.iter().map(|job| job.id.clone()).collect();
    for page_size in [1, 2, 3, 4, 5, expected.len(), expected.len() + 1] {
        assert_eq!(walk_job_pages(store, None, page_size, expected.len()).await, expected_ids, "page size {page_size}");
    }
    for page_size in [1, 2, 4] {
        let unpaused: Vec<String> = expected.iter().filter(|job| !job.paused).map(|job| job.id.clone()).collect();
        assert_eq!(walk_job_pages(store, Some(false), page_size, expected.len()).await, unpaused);
        assert_eq!(walk_job_pages(store, Some(true), page_size, expected.len()).await, ["p-A", "p-a", "p-b"]);
    }
    // A cursor at a position no job holds still splits the list there.
    let between = JobCursor { next_run_time: Some(at(0)), id: "a.0".to_string() };
    let rest = store.list_jobs(&JobQuery { after: Some(between), ..all_jobs() }).await.unwrap();
    assert_eq!(ids(&rest)[..2], ["a.1", "b"]);
    let among_paused = JobCursor { next_run_time: None, id: "p-A".to_string() };
    let rest = store.list_jobs(&JobQuery { after: Some(among_paused), ..all_jobs() }).await.unwrap();
    assert_eq!(ids(&rest), ["p-a", "p-b"]);
}

fn labelled(mut job: Job, labels: &[(&str, &str)]) -> Job {
    job.labels = labels.iter().map(|(key, value)| (key.to_string(), value.to_string())).collect();
    job
}

fn selected(selector: &str) -> JobQuery {
    JobQuery { selector: Selector::parse(selector).unwrap(), ..all_jobs() }
}

async fn selected_ids(store: &dyn JobStore, selector: &str) -> Vec<String> {
    let jobs = store.list_jobs(&selected(selector)).await.unwrap();
    let mut ids: Vec<String> = jobs.into_iter().map(|job| job.id).collect();
    ids.sort();
    ids
}

pub(crate) async fn labels_round_trip_and_are_replaced_whole(store: &dyn JobStore) {
    let first = labelled(job("a", Some(at(10))), &[("team", "payments"), ("k8s.io/tier", "gold"), ("empty", "")]);
    store.add_job(&first, false).await.unwrap();
    assert_eq!(store.get_job("a").await.unwrap(), Some(first.clone()));
    assert_eq!(selected_ids(store, "k8s.io/tier=gold,empty=").await, ["a"]);

    // An update replaces the whole map: a label left out is gone, also from the selection.
    let updated = labelled(first.clone(), &[("team", "billing")]);
    store.update_job(&updated).await.unwrap();
    assert_eq!(store.get_job("a").await.unwrap().unwrap().labels, updated.labels);
    assert!(selected_ids(store, "k8s.io/tier").await.is_empty());
    assert!(selected_ids(store, "team=payments").await.is_empty());
    assert_eq!(selected_ids(store, "team=billing").await, ["a"]);

    // So does replacing the job, to no labels at all.
    store.add_job(&job("a", Some(at(20))), true).await.unwrap();
    assert!(store.get_job("a").await.unwrap().unwrap().labels.is_empty());
    assert!(selected_ids(store, "team").await.is_empty());
    assert_eq!(selected_ids(store, "!team").await, ["a"]);
}

/// Jobs with and without the labels the selectors ask about.
async fn add_labelled_jobs(store: &dyn JobStore) {
    add_all(
        store,
        &[
            labelled(job("pay-gold", Some(at(1))), &[("team", "payments"), ("tier", "gold")]),
            labelled(job("pay-silver", Some(at(2))), &[("team", "payments"), ("tier", "silver")]),
            labelled(job("bill-gold", Some(at(3))), &[("team", "billing"), ("tier", "gold"), ("legacy", "")]),
            labelled(job("ops", Some(at(4))), &[("team", "ops")]),
            job("bare", Some(at(5))),
            labelled(paused_job("pay-paused"), &[("team", "payments"), ("tier", "bronze")]),
        ],
    )
    .await;
}

pub(crate) async fn selectors_pick_exactly_the_matching_jobs(store: &dyn JobStore) {
    add_labelled_jobs(store).await;
    for (selector, expected) in [
        ("", &["bare", "bill-gold", "ops", "pay-gold", "pay-paused", "pay-silver"][..]),
        ("team=payments", &["pay-gold", "pay-paused", "pay-silver"]),
        ("team==payments", &["pay-gold", "pay-paused", "pay-silver"]),
        ("team=payments,tier=gold", &["pay-gold"]),
        ("tier in (gold,silver)", &["bill-gold", "pay-gold", "pay-silver"]),
        ("tier", &["bill-gold", "pay-gold", "pay-paused", "pay-silver"]),
        ("legacy", &["bill-gold"]),
        ("legacy=", &["bill-gold"]),
        // Requirements a job without the label meets.
        ("team!=payments", &["bare", "bill-gold", "ops"]),
        ("tier notin (gold,silver)", &["bare", "ops", "pay-paused"]),
        ("!tier", &["bare", "ops"]),
        ("!legacy,tier=gold", &["pay-gold"]),
        ("team notin (payments),!legacy", &["bare", "ops"]),
        // Nothing meets contradictory requirements, or asks about a label no job has.
        ("team=payments,team=billing", &[]),
        ("tier,!tier", &[]),
        ("region=eu", &[]),
        ("region in (eu,us)", &[]),
    ] {
        assert_eq!(selected_ids(store, selector).await, expected, "{selector}");
    }
    // A selection keeps the list order.
    let jobs = store.list_jobs(&selected("team")).await.unwrap();
    assert_eq!(ids(&jobs), ["pay-gold", "pay-silver", "bill-gold", "ops", "pay-paused"]);
}

pub(crate) async fn selectors_combine_with_the_paused_filter_and_pagination(store: &dyn JobStore) {
    add_labelled_jobs(store).await;
    let paused = store.list_jobs(&JobQuery { paused: Some(true), ..selected("team=payments") }).await.unwrap();
    assert_eq!(ids(&paused), ["pay-paused"]);
    let active = store.list_jobs(&JobQuery { paused: Some(false), ..selected("team=payments") }).await.unwrap();
    assert_eq!(ids(&active), ["pay-gold", "pay-silver"]);
    let expected = ["pay-gold", "pay-silver", "bill-gold", "pay-paused"];
    for page_size in [1, 2, 3, 4, 5] {
        let mut seen = Vec::new();
        let mut after = None;
        loop {
            let page = store
                .list_jobs(&JobQuery { after: after.clone(), limit: page_size, ..selected("tier") })
                .await
                .unwrap();
            seen.extend(page.iter().map(|job| job.id.clone()));
            assert!(seen.len() <= expected.len(), "pages of {page_size} repeat jobs: {seen:?}");
            match page.last() {
                Some(last) if page.len() == page_size => after = Some(JobCursor::of(last)),
                _ => break,
            }
        }
        assert_eq!(seen, expected, "page size {page_size}");
    }
}

pub(crate) async fn remove_jobs_removes_only_the_selected_jobs_and_their_labels(store: &dyn JobStore) {
    add_labelled_jobs(store).await;
    assert_eq!(store.remove_jobs(&Selector::parse("team=payments,tier!=gold").unwrap()).await.unwrap(), 2);
    assert_eq!(selected_ids(store, "").await, ["bare", "bill-gold", "ops", "pay-gold"]);
    assert_eq!(store.remove_jobs(&Selector::parse("region").unwrap()).await.unwrap(), 0);
    assert_eq!(store.remove_jobs(&Selector::parse("!tier").unwrap()).await.unwrap(), 2);
    assert_eq!(selected_ids(store, "").await, ["bill-gold", "pay-gold"]);

    // A removed job's labels go with it, however it was removed: the same id added again without them is not
    // selected by them.
    assert!(store.remove_job("pay-gold").await.unwrap());
    store.add_job(&job("pay-gold", Some(at(1))), false).await.unwrap();
    assert_eq!(selected_ids(store, "team").await, ["bill-gold"]);
    assert_eq!(store.remove_all_jobs().await.unwrap(), 2);
    store.add_job(&job("bill-gold", Some(at(1))), false).await.unwrap();
    assert!(selected_ids(store, "team").await.is_empty());
    assert_eq!(store.count_jobs().await.unwrap(), 1);
}

pub(crate) async fn modify_jobs_saves_or_removes_each_selected_job_once(store: &dyn JobStore) {
    add_labelled_jobs(store).await;
    let visits = Mutex::new(Vec::new());
    let edit = |mut job: Job| {
        visits.lock().unwrap().push(job.id.clone());
        if job.id == "pay-silver" {
            return Ok(Edit::Remove);
        }
        // Moved to another team, which the selector does not select: each job is still visited once.
        job.labels.insert("team".into(), "platform".into());
        job.labels.remove("tier");
        job.paused = true;
        job.next_run_time = None;
        job.max_instances = 9;
        Ok(Edit::Save(job))
    };
    let edited = store.modify_jobs(&Selector::parse("team=payments").unwrap(), &edit).await.unwrap();
    assert_eq!(edited, Edited { saved: 2, removed: 1 });
    let mut visited = visits.into_inner().unwrap();
    visited.sort();
    assert_eq!(visited, ["pay-gold", "pay-paused", "pay-silver"]);

    assert_eq!(store.get_job("pay-silver").await.unwrap(), None);
    let moved = store.get_job("pay-gold").await.unwrap().unwrap();
    assert_eq!((moved.paused, moved.next_run_time, moved.max_instances), (true, None, 9));
    assert_eq!(moved.labels, labelled(job("x", None), &[("team", "platform")]).labels);
    assert_eq!(selected_ids(store, "team=platform").await, ["pay-gold", "pay-paused"]);
    assert!(selected_ids(store, "team=payments").await.is_empty());
    assert!(selected_ids(store, "tier=gold").await.iter().all(|id| id == "bill-gold"));
    // A paused job is no longer due.
    assert_eq!(store.earliest_next_run_time().await.unwrap(), Some(at(3)));

    // Many more jobs than one batch of a SQL store: each selected job is visited exactly once.
    let many: Vec<Job> = (0..1100_i64)
        .map(|i| labelled(job(&format!("m{i:04}"), Some(at(100 + i))), &[("bulk", &(i % 2).to_string())]))
        .collect();
    add_all(store, &many).await;
    let count = std::sync::atomic::AtomicU64::new(0);
    let edit = |mut job: Job| {
        count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        job.labels.insert("bulk".into(), "done".into());
        Ok(Edit::Save(job))
    };
    let edited = store.modify_jobs(&Selector::parse("bulk=1").unwrap(), &edit).await.unwrap();
    assert_eq!((edited, count.into_inner()), (Edited { saved: 550, removed: 0 }, 550));
    assert_eq!(selected_ids(store, "bulk=done").await.len(), 550);
    assert_eq!(selected_ids(store, "bulk=0").await.len(), 550);
}

pub(crate) async fn modify_jobs_changes_nothing_when_the_editor_refuses(store: &dyn JobStore) {
    add_labelled_jobs(store).await;
    let before = store.list_jobs(&all_jobs()).await.unwrap();
    let edit = |mut job: Job| {
        if job.id == "pay-silver" {
            return Err(StoreError::Conflict("refused".into()));
        }
        job.labels.clear();
        job.name = Some("changed".into());
        Ok(Edit::Save(job))
    };
    let result = store.modify_jobs(&Selector::parse("team").unwrap(), &edit).await;
    assert!(matches!(result, Err(StoreError::Conflict(_))), "{result:?}");
    assert_eq!(store.list_jobs(&all_jobs()).await.unwrap(), before);
    assert_eq!(selected_ids(store, "team=payments").await, ["pay-gold", "pay-paused", "pay-silver"]);
}

pub(crate) async fn earliest_next_run_time_ignores_paused_jobs(store: &dyn JobStore) {
    assert_eq!(store.earliest_next_run_time().await.unwrap(), None);
    store.add_job(&paused_job("p"), false).await.unwrap();
    assert_eq!(store.earliest_next_run_time().await.unwrap(), None);

    // A paused job that still carries a next run time must not wake the scheduler either.
    let paused_with_time = Job { paused: true, ..job("q", Some(at(-100))) };
    add_all(store, &[paused_with_time, job("later", Some(at(50))), job("sooner", Some(at(20)))]).await;
    assert_eq!(store.earliest_next_run_time().await.unwrap(), Some(at(20)));
    store.remove_job("sooner").await.unwrap();
    assert_eq!(store.earliest_next_run_time().await.unwrap(), Some(at(50)));
}

pub(crate) async fn claim_takes_only_due_unpaused_jobs_earliest_first(store: &dyn JobStore) {
    let paused_with_time = Job { paused: true, ..job("paused", Some(at(-30))) };
    add_all(
        store,
        &[job("due-late", Some(at(0))), job("due-early", Some(at(-10))), job("future", Some(at(1))), paused_with_time],
    )
    .await;
    let now = at(0);
    let lease_until = at(30);
    let claimed = store.claim_due(now, 10, lease_until, &every_minute()).await.unwrap();

    let fires: Vec<(&str, DateTime<Utc>)> =
        claimed.iter().map(|run| (run.job_id.as_str(), run.scheduled_time)).collect();
    assert_eq!(fires, [("due-early", at(-10)), ("due-late", at(0))]);
    for run in &claimed {
        assert_eq!(run.status, RunStatus::Pending);
        assert_eq!(run.lease_expires_at, Some(lease_until));
        assert_eq!(the_run(store, &run.job_id, &run.idempotency_key).await, *run, "the ledger holds what was returned");
    }
    assert_eq!(store.get_job("due-early").await.unwrap().unwrap().next_run_time, Some(at(50)));
    assert_eq!(store.get_job("due-late").await.unwrap().unwrap().next_run_time, Some(at(60)));
    assert_eq!(store.get_job("future").await.unwrap().unwrap().next_run_time, Some(at(1)));
    assert_eq!(store.get_job("paused").await.unwrap().unwrap().next_run_time, Some(at(-30)));
    assert!(store.list_runs("future", &all_runs()).await.unwrap().is_empty());
    assert!(store.list_runs("paused", &all_runs()).await.unwrap().is_empty());

    // Advanced past now: nothing is due any more.
    assert!(store.claim_due(now, 10, lease_until, &every_minute()).await.unwrap().is_empty());
}

pub(crate) async fn claim_respects_the_limit(store: &dyn JobStore) {
    add_all(store, &[job("c", Some(at(-1))), job("a", Some(at(-3))), job("b", Some(at(-2)))]).await;
    let hourly = Advance { step: Duration::hours(1) };
    let first = store.claim_due(at(0), 2, at(30), &hourly).await.unwrap();
    assert_eq!(first.iter().map(|run| run.job_id.as_str()).collect::<Vec<_>>(), ["a", "b"]);
    assert_eq!(store.get_job("c").await.unwrap().unwrap().next_run_time, Some(at(-1)), "c was not claimed");
    let second = store.claim_due(at(0), 2, at(30), &hourly).await.unwrap();
    assert_eq!(second.iter().map(|run| run.job_id.as_str()).collect::<Vec<_>>(), ["c"]);
    assert!(store.claim_due(at(0), 0, at(30), &hourly).await.unwrap().is_empty());
}

pub(crate) async fn claim_tells_the_planner_the_jobs_active_runs(store: &dyn JobStore) {
    add_all(store, &[job("busy", Some(at(0))), job("idle", Some(at(0)))]).await;
    for (offset, status) in [
        (-50, RunStatus::Pending),
        (-40, RunStatus::Running),
        (-30, RunStatus::Running),
        (-20, RunStatus::Succeeded),
        (-10, RunStatus::Failed),
        (-5, RunStatus::Missed),
        (-4, RunStatus::Skipped),
        (-3, RunStatus::Coalesced),
        (-2, RunStatus::Cancelled),
        (-1, RunStatus::Buffered),
        (-0, RunStatus::Buffered),
    ] {
        store.insert_run(&run("busy", at(offset) - Duration::microseconds(1), status)).await.unwrap();
    }
    store.insert_run(&run("idle", at(-50), RunStatus::Succeeded)).await.unwrap();
    // Another job's live runs are not this job's instances.
    store.insert_run(&run("elsewhere", at(-50), RunStatus::Running)).await.unwrap();

    let planner = RecordActiveRuns::default();
    store.claim_due(at(0), 10, at(30), &planner).await.unwrap();
    let mut seen = planner.seen.lock().unwrap().clone();
    seen.sort();
    assert_eq!(seen, [("busy".to_string(), Load { active: 3, buffered: 2 }), ("idle".to_string(), Load::default())]);
}

/// Plans one fire with a fixed status and overlap instructions.
struct Overlapping {
    status: RunStatus,
    supersede_buffered: bool,
    cancel_oldest: u32,
}

impl Planner for Overlapping {
    fn plan(&self, job: &Job, _load: Load, now: DateTime<Utc>) -> FirePlan {
        let scheduled = job.next_run_time.expect("a due job has a next run time");
        FirePlan {
            runs: vec![Run::new(job, scheduled, self.status, now, Tz::UTC)],
            next_run_time: Some(scheduled + Duration::seconds(60)),
            supersede_buffered: self.supersede_buffered,
            cancel_oldest: self.cancel_oldest,
        }
    }
}

fn statuses_of(runs: &[Run]) -> Vec<(DateTime<Utc>, RunStatus)> {
    let mut statuses: Vec<_> = runs.iter().map(|run| (run.scheduled_time, run.status)).collect();
    statuses.sort_by_key(|(time, _)| *time);
    statuses
}

pub(crate) async fn a_plan_supersedes_buffered_fires_and_cancels_the_oldest_runs(store: &dyn JobStore) {
    store.add_job(&job("j", Some(at(0))), false).await.unwrap();
    store.insert_run(&run("j", at(-30), RunStatus::Buffered)).await.unwrap();
    store.insert_run(&run("other", at(-30), RunStatus::Buffered)).await.unwrap();
    let buffer_one = Overlapping { status: RunStatus::Buffered, supersede_buffered: true, cancel_oldest: 0 };
    let claimed = store.claim_due(at(0), 10, at(30), &buffer_one).await.unwrap();
    assert_eq!(statuses_of(&claimed), [(at(-30), RunStatus::Skipped), (at(0), RunStatus::Buffered)]);
    let superseded = the_run(store, "j", &run("j", at(-30), RunStatus::Buffered).idempotency_key).await;
    assert_eq!((superseded.finished_at, superseded.error.as_deref()), (Some(at(0)), Some(super::SUPERSEDED)));
    assert_eq!(store.list_runs("other", &all_runs()).await.unwrap()[0].status, RunStatus::Buffered, "its own only");

    store.add_job(&job("k", Some(at(60))), false).await.unwrap();
    for (offset, status) in [(-20, RunStatus::Running), (-10, RunStatus::Pending), (-5, RunStatus::Running)] {
        store.insert_run(&leased(run("k", at(offset), status), at(90))).await.unwrap();
    }
    let cancel_other = Overlapping { status: RunStatus::Pending, supersede_buffered: false, cancel_oldest: 2 };
    let claimed = store.claim_due(at(60), 10, at(90), &cancel_other).await.unwrap();
    let k: Vec<&Run> = claimed.iter().filter(|run| run.job_id == "k").collect();
    assert_eq!(k.len(), 3, "{claimed:?}");
    assert_eq!((k[0].scheduled_time, k[0].status), (at(-20), RunStatus::Cancelled), "the oldest first");
    assert_eq!((k[1].scheduled_time, k[1].status), (at(-10), RunStatus::Cancelled));
    assert_eq!((k[0].lease_expires_at, k[0].error.as_deref()), (None, Some(super::CANCELLED)));
    assert_eq!((k[2].scheduled_time, k[2].status), (at(60), RunStatus::Pending), "then the new fire");
    let ledger = store.list_runs("k", &all_runs()).await.unwrap();
    assert_eq!(
        statuses_of(&ledger),
        [
            (at(-20), RunStatus::Cancelled),
            (at(-10), RunStatus::Cancelled),
            (at(-5), RunStatus::Running),
            (at(60), RunStatus::Pending)
        ]
    );
}

pub(crate) async fn a_cancelled_run_is_final_and_its_deliverer_is_told(store: &dyn JobStore) {
    store.add_job(&job("j", Some(at(0))), false).await.unwrap();
    let doomed = leased(run("j", at(-10), RunStatus::Running), at(30));
    let kept = leased(run("j", at(-5), RunStatus::Running), at(30));
    store.insert_run(&doomed).await.unwrap();
    store.insert_run(&kept).await.unwrap();
    let cancel_other = Overlapping { status: RunStatus::Pending, supersede_buffered: false, cancel_oldest: 1 };
    store.claim_due(at(0), 10, at(30), &cancel_other).await.unwrap();

    let keys = [doomed.idempotency_key.clone(), kept.idempotency_key.clone()];
    assert_eq!(store.extend_leases(&keys, at(60)).await.unwrap(), [doomed.idempotency_key.as_str()]);
    assert_eq!(the_run(store, "j", &kept.idempotency_key).await.lease_expires_at, Some(at(60)));
    // The deliverer's outcome, recorded after the cancel, leaves it cancelled.
    let late = Run { status: RunStatus::Succeeded, attempts: 1, finished_at: Some(at(1)), ..doomed.clone() };
    assert!(matches!(store.update_run(&late).await, Err(StoreError::NotFound)));
    let stored = the_run(store, "j", &doomed.idempotency_key).await;
    assert_eq!((stored.status, stored.finished_at, stored.lease_expires_at), (RunStatus::Cancelled, Some(at(0)), None));
    assert_eq!(store.take_expired_runs(at(1000), at(1030)).await.unwrap().len(), 2, "not redelivered: the rest are");
}

pub(crate) async fn promote_buffered_delivers_the_oldest_fires_where_there_is_room(store: &dyn JobStore) {
    assert!(store.promote_buffered(at(30)).await.unwrap().is_empty(), "nothing buffered");
    let two = Job { max_instances: 2, ..job("two", Some(at(100))) };
    add_all(store, &[job("busy", Some(at(100))), two]).await;
    store.insert_run(&run("busy", at(-30), RunStatus::Running)).await.unwrap();
    for offset in [-20, -10] {
        store.insert_run(&run("busy", at(offset), RunStatus::Buffered)).await.unwrap();
        store.insert_run(&run("two", at(offset), RunStatus::Buffered)).await.unwrap();
        store.insert_run(&run("gone", at(offset), RunStatus::Buffered)).await.unwrap();
    }
    store.insert_run(&run("two", at(-5), RunStatus::Buffered)).await.unwrap();
    let promoted = store.promote_buffered(at(30)).await.unwrap();
    type Promoted<'a> = (&'a str, DateTime<Utc>, RunStatus, Option<DateTime<Utc>>);
    let promoted: Vec<Promoted> = promoted
        .iter()
        .map(|run| (run.job_id.as_str(), run.scheduled_time, run.status, run.lease_expires_at))
        .collect();
    assert_eq!(
        promoted,
        [
            ("gone", at(-20), RunStatus::Pending, Some(at(30))),
            ("two", at(-20), RunStatus::Pending, Some(at(30))),
            ("two", at(-10), RunStatus::Pending, Some(at(30))),
        ],
        "busy has no room; two has room for two; a removed job's fires go one at a time"
    );
    assert!(store.promote_buffered(at(30)).await.unwrap().is_empty(), "no room left");
    let mut done = the_run(store, "busy", &run("busy", at(-30), RunStatus::Running).idempotency_key).await;
    done.status = RunStatus::Succeeded;
    store.update_run(&done).await.unwrap();
    let promoted = store.promote_buffered(at(40)).await.unwrap();
    assert_eq!(
        promoted.iter().map(|run| (run.job_id.as_str(), run.scheduled_time)).collect::<Vec<_>>(),
        [("busy", at(-20))]
    );
}

pub(crate) async fn prune_keeps_buffered_fires(store: &dyn JobStore) {
    store.insert_run(&run("j", at(-100), RunStatus::Buffered)).await.unwrap();
    store.insert_run(&run("j", at(-90), RunStatus::Succeeded)).await.unwrap();
    let prune = Prune { finished_before: Some(at(0)), keep_per_job: Some(0), limit: 100 };
    assert_eq!(store.prune_runs(&prune).await.unwrap(), 1);
    assert_eq!(statuses_of(&store.list_runs("j", &all_runs()).await.unwrap()), [(at(-100), RunStatus::Buffered)]);
}

pub(crate) async fn claim_removes_a_job_whose_plan_has_no_next_run_time(store: &dyn JobStore) {
    add_all(store, &[labelled(job("once", Some(at(-1))), &[("team", "ops")]), job("other", Some(at(100)))]).await;
    let claimed = store.claim_due(at(0), 10, at(30), &LastFire).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].scheduled_time, at(-1));
    assert_eq!(store.get_job("once").await.unwrap(), None);
    assert_eq!(store.count_jobs().await.unwrap(), 1);
    assert_eq!(store.list_runs("once", &all_runs()).await.unwrap(), claimed, "its last fire is still delivered");
    // Its labels went with it: the same id added again without them is not selected by them.
    store.add_job(&job("once", Some(at(100))), false).await.unwrap();
    assert!(selected_ids(store, "team").await.is_empty());
}

pub(crate) async fn claim_returns_every_inserted_run_and_leases_only_pending_ones(store: &dyn JobStore) {
    store.add_job(&job("behind", Some(at(0))), false).await.unwrap();
    let claimed = store.claim_due(at(0), 10, at(30), &Backlog).await.unwrap();
    let returned: Vec<(RunStatus, DateTime<Utc>, Option<DateTime<Utc>>)> =
        claimed.iter().map(|run| (run.status, run.scheduled_time, run.lease_expires_at)).collect();
    assert_eq!(
        returned,
        [
            (RunStatus::Missed, at(-120), None),
            (RunStatus::Coalesced, at(-60), None),
            (RunStatus::Pending, at(0), Some(at(30))),
        ],
        "in plan order, only the pending run leased"
    );

    let mut ledger = store.list_runs("behind", &all_runs()).await.unwrap();
    ledger.reverse();
    assert_eq!(ledger, claimed, "the ledger holds what was returned");
    assert_eq!(store.get_job("behind").await.unwrap().unwrap().next_run_time, Some(at(60)));
}

pub(crate) async fn claim_never_inserts_a_fire_twice(store: &dyn JobStore) {
    store.add_job(&job("j", Some(at(0))), false).await.unwrap();
    let first = store.claim_due(at(0), 10, at(30), &SameFireAgain).await.unwrap();
    assert_eq!(first.len(), 1);

    // The job is still due at the same time; the planner makes a new row (new key) for the same fire.
    let second = store.claim_due(at(1), 10, at(31), &SameFireAgain).await.unwrap();
    assert!(second.is_empty(), "a fire already in the ledger is not delivered again: {second:?}");
    assert_eq!(store.list_runs("j", &all_runs()).await.unwrap(), first, "the first claim's row is untouched");

    // Only the taken fire is left out (and not returned): the same plan's other rows still go in.
    let third = store.claim_due(at(1), 10, at(31), &Backlog).await.unwrap();
    let statuses: Vec<RunStatus> = third.iter().map(|run| run.status).collect();
    assert_eq!(statuses, [RunStatus::Missed, RunStatus::Coalesced]);
    let statuses: Vec<RunStatus> = store.list_runs("j", &all_runs()).await.unwrap().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [RunStatus::Pending, RunStatus::Coalesced, RunStatus::Missed]);
}

pub(crate) async fn insert_run_conflicts_on_a_taken_fire(store: &dyn JobStore) {
    let original = run("j", at(0), RunStatus::Pending);
    store.insert_run(&original).await.unwrap();
    let same_fire = Run { idempotency_key: "another-key".to_string(), ..run("j", at(0), RunStatus::Pending) };
    assert!(matches!(store.insert_run(&same_fire).await, Err(StoreError::Conflict(_))));
    assert_eq!(store.list_runs("j", &all_runs()).await.unwrap(), [original]);

    // The same time for another job, or another time for this one, is another fire.
    store.insert_run(&run("k", at(0), RunStatus::Pending)).await.unwrap();
    store.insert_run(&run("j", at(0) + Duration::microseconds(1), RunStatus::Pending)).await.unwrap();
    assert_eq!(store.list_runs("j", &all_runs()).await.unwrap().len(), 2);
}

pub(crate) async fn a_runs_kind_is_kept(store: &dyn JobStore) {
    let manual = Run { kind: RunKind::Manual, ..run("j", at(-2), RunStatus::Pending) };
    let backfill = Run { kind: RunKind::Backfill, ..run("j", at(-1), RunStatus::Succeeded) };
    store.insert_run(&manual).await.unwrap();
    store.insert_run(&backfill).await.unwrap();
    store.add_job(&job("j", Some(at(0))), false).await.unwrap();
    let claimed = store.claim_due(at(0), 10, at(30), &every_minute()).await.unwrap();
    let kinds: Vec<RunKind> = store.list_runs("j", &all_runs()).await.unwrap().iter().map(|run| run.kind).collect();
    assert_eq!(kinds, [RunKind::Scheduled, RunKind::Backfill, RunKind::Manual]);
    assert_eq!(claimed[0].kind, RunKind::Scheduled);
}

pub(crate) async fn update_run_saves_every_progress_field(store: &dyn JobStore) {
    let pending = leased(run("j", at(0), RunStatus::Pending), at(30));
    store.insert_run(&pending).await.unwrap();

    let running = Run { status: RunStatus::Running, attempts: 1, started_at: Some(at(1)), ..pending.clone() };
    store.update_run(&running).await.unwrap();
    assert_eq!(the_run(store, "j", &pending.idempotency_key).await, running);

    let mut failed = running.clone();
    failed.status = RunStatus::Failed;
    failed.attempts = 5;
    failed.finished_at = Some(at(9));
    failed.http_status = Some(503);
    failed.duration_ms = Some(8_765);
    failed.error = Some("HTTP 503 after 5 attempts".to_string());
    failed.response_excerpt = Some("{\"error\": \"busy\"} ü".to_string());
    failed.action = serde_json::from_value(json!({"url": "http://127.0.0.1:9/x", "headers": {"X-Key": "k"}})).unwrap();
    failed.executor = "slow".to_string();
    failed.timezone = "Europe/Berlin".to_string();
    failed.lease_expires_at = None;
    store.update_run(&failed).await.unwrap();
    // What the claim recorded of the fire (its action, executor, zone, creation) is not progress and stays.
    let saved = Run {
        action: pending.action.clone(),
        executor: pending.executor.clone(),
        timezone: pending.timezone.clone(),
        created_at: pending.created_at,
        ..failed
    };
    assert_eq!(store.list_runs("j", &all_runs()).await.unwrap(), [saved]);

    let unknown = Run { idempotency_key: "nobody".to_string(), ..running };
    assert!(matches!(store.update_run(&unknown).await, Err(StoreError::NotFound)));
}

pub(crate) async fn take_expired_runs_releases_only_expired_unfinished_runs(store: &dyn JobStore) {
    let now = at(0);
    let never_leased = run("j", at(-60), RunStatus::Pending);
    let expired = leased(run("j", at(-50), RunStatus::Running), now - Duration::microseconds(1));
    let still_held = leased(run("j", at(-40), RunStatus::Pending), at(10));
    let expiring_now = leased(run("j", at(-30), RunStatus::Running), now);
    let finished = [
        run("j", at(-20), RunStatus::Succeeded),
        leased(run("j", at(-10), RunStatus::Failed), at(-5)),
        run("j", at(-9), RunStatus::Missed),
        run("j", at(-8), RunStatus::Skipped),
        run("j", at(-7), RunStatus::Coalesced),
    ];
    for row in [&never_leased, &expired, &still_held, &expiring_now].into_iter().chain(&finished) {
        store.insert_run(row).await.unwrap();
    }

    let lease_until = at(30);
    let mut taken = store.take_expired_runs(now, lease_until).await.unwrap();
    taken.sort_by_key(|run| run.scheduled_time);
    assert_eq!(taken, [leased(never_leased.clone(), lease_until), leased(expired.clone(), lease_until)]);
    for run in &taken {
        assert_eq!(the_run(store, "j", &run.idempotency_key).await.lease_expires_at, Some(lease_until));
    }
    assert_eq!(the_run(store, "j", &still_held.idempotency_key).await, still_held);
    assert_eq!(the_run(store, "j", &finished[1].idempotency_key).await, finished[1]);

    assert!(store.take_expired_runs(now, lease_until).await.unwrap().is_empty(), "each run has one taker");

    // When the taker's own leases lapse, everything unfinished is taken over again.
    let later = at(31);
    let mut retaken: Vec<String> =
        store.take_expired_runs(later, at(60)).await.unwrap().into_iter().map(|run| run.idempotency_key).collect();
    retaken.sort();
    let mut expected: Vec<String> =
        [&never_leased, &expired, &still_held, &expiring_now].iter().map(|run| run.idempotency_key.clone()).collect();
    expected.sort();
    assert_eq!(retaken, expected);
}

pub(crate) async fn extend_leases_moves_only_the_named_unfinished_runs(store: &dyn JobStore) {
    let first_lease = at(30);
    let pending = leased(run("j", at(-3), RunStatus::Pending), first_lease);
    let running = leased(run("j", at(-2), RunStatus::Running), first_lease);
    let unnamed = leased(run("j", at(-1), RunStatus::Running), first_lease);
    let done = run("j", at(0), RunStatus::Succeeded);
    for row in [&pending, &running, &unnamed, &done] {
        store.insert_run(row).await.unwrap();
    }

    let extended = at(60);
    let named = [&pending, &running, &done].map(|run| run.idempotency_key.clone());
    let names = [named.as_slice(), &["no-such-run".to_string()]].concat();
    store.extend_leases(&names, extended).await.unwrap();
    store.extend_leases(&[], extended).await.unwrap();

    assert_eq!(the_run(store, "j", &pending.idempotency_key).await.lease_expires_at, Some(extended));
    assert_eq!(the_run(store, "j", &running.idempotency_key).await.lease_expires_at, Some(extended));
    assert_eq!(the_run(store, "j", &unnamed.idempotency_key).await.lease_expires_at, Some(first_lease));
    assert_eq!(the_run(store, "j", &done.idempotency_key).await, done, "a finished run holds no lease");
}

async fn walk_run_pages(store: &dyn JobStore, status: Option<RunStatus>, page_size: usize) -> Vec<String> {
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = store.list_runs("j", &RunQuery { status, after: after.clone(), limit: page_size }).await.unwrap();
        assert!(page.len() <= page_size);
        seen.extend(page.iter().map(|run| run.idempotency_key.clone()));
        assert!(seen.len() <= 100, "pages of {page_size} repeat runs: {seen:?}");
        match page.last() {
            Some(last) if page.len() == page_size => {
                after = Some(RunCursor {
                    scheduled_time: last.scheduled_time,
                    idempotency_key: last.idempotency_key.clone(),
                })
            }
            _ => return seen,
        }
    }
}

pub(crate) async fn list_runs_newest_first_filtered_and_paginated(store: &dyn JobStore) {
    store.add_job(&job("j", Some(at(100))), false).await.unwrap();
    let statuses = [
        RunStatus::Succeeded,
        RunStatus::Failed,
        RunStatus::Succeeded,
        RunStatus::Missed,
        RunStatus::Succeeded,
        RunStatus::Running,
        RunStatus::Pending,
    ];
    let mut inserted = Vec::new();
    // Inserted out of time order, so the store must sort.
    for (index, status) in statuses.into_iter().enumerate().rev() {
        let row = run("j", at(index as i64 * 10), status);
        store.insert_run(&row).await.unwrap();
        store.insert_run(&run("other", at(index as i64 * 10), status)).await.unwrap();
        inserted.push(row);
    }
    inserted.sort_by_key(|run| std::cmp::Reverse(run.scheduled_time));

    assert_eq!(store.list_runs("j", &all_runs()).await.unwrap(), inserted);
    let newest_two = store.list_runs("j", &RunQuery { limit: 2, ..all_runs() }).await.unwrap();
    assert_eq!(keys(&newest_two), keys(&inserted[..2]));

    let succeeded = store.list_runs("j", &RunQuery { status: Some(RunStatus::Succeeded), ..all_runs() }).await.unwrap();
    assert_eq!(succeeded.iter().map(|run| run.scheduled_time).collect::<Vec<_>>(), [at(40), at(20), at(0)]);

    let all_keys: Vec<String> = inserted.iter().map(|run| run.idempotency_key.clone()).collect();
    let succeeded_keys: Vec<String> = succeeded.iter().map(|run| run.idempotency_key.clone()).collect();
    for page_size in [1, 2, 3, 7, 8] {
        assert_eq!(walk_run_pages(store, None, page_size).await, all_keys, "page size {page_size}");
        assert_eq!(walk_run_pages(store, Some(RunStatus::Succeeded), page_size).await, succeeded_keys);
    }

    store.remove_job("j").await.unwrap();
    assert_eq!(store.list_runs("j", &all_runs()).await.unwrap(), inserted, "history outlives the job");
    assert!(store.list_runs("never-existed", &all_runs()).await.unwrap().is_empty());
}

fn finished_at(mut run: Run, finished: DateTime<Utc>) -> Run {
    run.finished_at = Some(finished);
    run
}

async fn ledger_keys(store: &dyn JobStore, job_id: &str) -> Vec<String> {
    store.list_runs(job_id, &all_runs()).await.unwrap().into_iter().map(|run| run.idempotency_key).collect()
}

pub(crate) async fn prune_by_age_deletes_only_old_finished_runs(store: &dyn JobStore) {
    let old_done = finished_at(run("j", at(-100), RunStatus::Succeeded), at(-99));
    let old_failed = finished_at(run("j", at(-90), RunStatus::Failed), at(-89));
    let old_pending = run("j", at(-80), RunStatus::Pending);
    let old_running = run("j", at(-70), RunStatus::Running);
    // Scheduled long ago but finished recently (a slow retry): its age counts from when it finished.
    let late_finish = finished_at(run("j", at(-60), RunStatus::Succeeded), at(-5));
    // No finished_at recorded: its creation time stands in.
    let mut unknown_finish = run("k", at(-50), RunStatus::Missed);
    unknown_finish.finished_at = None;
    let recent = finished_at(run("k", at(-3), RunStatus::Skipped), at(-2));
    for row in [&old_done, &old_failed, &old_pending, &old_running, &late_finish, &unknown_finish, &recent] {
        store.insert_run(row).await.unwrap();
    }

    let prune = Prune { finished_before: Some(at(-10)), keep_per_job: None, limit: 100 };
    assert_eq!(store.prune_runs(&prune).await.unwrap(), 3);
    let expected_j = [late_finish.idempotency_key, old_running.idempotency_key, old_pending.idempotency_key];
    assert_eq!(ledger_keys(store, "j").await, expected_j);
    assert_eq!(ledger_keys(store, "k").await, [recent.idempotency_key]);
    assert_eq!(store.prune_runs(&prune).await.unwrap(), 0, "nothing left to prune");
}

pub(crate) async fn prune_by_count_keeps_each_jobs_newest_finished_runs(store: &dyn JobStore) {
    // Job "j": five finished runs and, among them, unfinished ones that neither go nor count.
    let statuses = [
        RunStatus::Succeeded,
        RunStatus::Failed,
        RunStatus::Coalesced,
        RunStatus::Pending,
        RunStatus::Succeeded,
        RunStatus::Running,
        RunStatus::Missed,
    ];
    let rows: Vec<Run> =
        statuses.iter().enumerate().map(|(index, status)| run("j", at(index as i64 * 10), *status)).collect();
    for row in &rows {
        store.insert_run(row).await.unwrap();
    }
    store.insert_run(&run("few", at(0), RunStatus::Succeeded)).await.unwrap();

    let prune = Prune { finished_before: None, keep_per_job: Some(2), limit: 100 };
    assert_eq!(store.prune_runs(&prune).await.unwrap(), 3);
    // Newest first: missed (60), running (50), succeeded (40), pending (30); the older finished ones are gone.
    let expected: Vec<String> = [6, 5, 4, 3].iter().map(|&i| rows[i].idempotency_key.clone()).collect();
    assert_eq!(ledger_keys(store, "j").await, expected);
    assert_eq!(ledger_keys(store, "few").await.len(), 1, "a job under the limit keeps all");

    let keep_none = Prune { finished_before: None, keep_per_job: Some(0), limit: 100 };
    assert_eq!(store.prune_runs(&keep_none).await.unwrap(), 3);
    let unfinished: Vec<String> = [5, 3].iter().map(|&i| rows[i].idempotency_key.clone()).collect();
    assert_eq!(ledger_keys(store, "j").await, unfinished, "unfinished runs are never pruned");
}

pub(crate) async fn prune_respects_its_limit_and_needs_a_rule(store: &dyn JobStore) {
    for index in 0..5 {
        store.insert_run(&run("j", at(index), RunStatus::Succeeded)).await.unwrap();
    }
    let nothing = Prune { finished_before: None, keep_per_job: None, limit: 100 };
    assert_eq!(store.prune_runs(&nothing).await.unwrap(), 0);
    let all_but_one = |limit| Prune { finished_before: Some(at(100)), keep_per_job: Some(1), limit };
    assert_eq!(store.prune_runs(&all_but_one(0)).await.unwrap(), 0);
    assert_eq!(store.prune_runs(&all_but_one(2)).await.unwrap(), 2);
    assert_eq!(ledger_keys(store, "j").await.len(), 3);
    assert_eq!(store.prune_runs(&all_but_one(2)).await.unwrap(), 2);
    assert_eq!(store.prune_runs(&all_but_one(2)).await.unwrap(), 1);
    assert!(ledger_keys(store, "j").await.is_empty());
}

/// An entry as the scheduler makes it: the job's id, and the job (as a stand-in for its API view) after a write that
/// keeps it, before one that removes it.
fn entry_of(action: AuditAction, time: DateTime<Utc>, removes: bool) -> impl Fn(&Job) -> AuditEntry + Send + Sync {
    move |job: &Job| {
        let view = Some(json!({"id": job.id, "paused": job.paused, "created_at": job.created_at.to_rfc3339()}));
        let (before, after) = if removes { (view, None) } else { (None, view) };
        AuditEntry::new(time, &Change::by("ci").because("test"), action, Some(&job.id), before, after)
    }
}

fn every_entry() -> AuditQuery {
    AuditQuery { limit: 1000, ..AuditQuery::default() }
}

fn actions(entries: &[AuditEntry]) -> Vec<(AuditAction, Option<&str>)> {
    entries.iter().map(|entry| (entry.action, entry.job_id.as_deref())).collect()
}

pub(crate) async fn audited_writes_record_one_entry_per_job_in_the_same_step(store: &dyn JobStore) {
    let original = job("a", Some(at(10)));
    let add = entry_of(AuditAction::Add, at(0), false);
    let written = store.write_audited(JobWrite::Add { job: &original, replace_existing: false }, Some(&add)).await;
    assert_eq!(written.unwrap(), vec![original.clone()]);
    assert_eq!(store.get_job("a").await.unwrap(), Some(original.clone()));

    // A replaced job keeps its created_at, and the write says so.
    let replacement = Job { name: Some("replaced".into()), created_at: at(5), ..original.clone() };
    let replace = entry_of(AuditAction::Add, at(1), false);
    let written = store.write_audited(JobWrite::Add { job: &replacement, replace_existing: true }, Some(&replace));
    let kept = Job { created_at: original.created_at, ..replacement.clone() };
    assert_eq!(written.await.unwrap(), vec![kept.clone()]);

    let paused = Job { paused: true, next_run_time: None, ..kept.clone() };
    let pause = entry_of(AuditAction::Pause, at(2), false);
    assert_eq!(store.write_audited(JobWrite::Update(&paused), Some(&pause)).await.unwrap(), vec![paused.clone()]);
    assert_eq!(store.get_job("a").await.unwrap(), Some(paused.clone()));

    let now = run("a", at(3), RunStatus::Pending);
    let run_now = entry_of(AuditAction::Run, at(3), false);
    let written = store.write_audited(JobWrite::InsertRun { run: &now, job: &paused }, Some(&run_now)).await;
    assert_eq!(written.unwrap(), vec![paused.clone()]);
    assert_eq!(the_run(store, "a", &now.idempotency_key).await, now);

    // Without an entry maker, a write records nothing.
    let quiet = Job { name: Some("quiet".into()), ..paused.clone() };
    store.write_audited(JobWrite::Update(&quiet), None).await.unwrap();

    let remove = entry_of(AuditAction::Remove, at(4), true);
    assert_eq!(store.write_audited(JobWrite::Remove("a"), Some(&remove)).await.unwrap(), vec![quiet.clone()]);
    assert_eq!(store.get_job("a").await.unwrap(), None);

    let entries = store.list_audit(&every_entry()).await.unwrap();
    assert_eq!(
        actions(&entries),
        [AuditAction::Remove, AuditAction::Run, AuditAction::Pause, AuditAction::Add, AuditAction::Add]
            .map(|action| (action, Some("a")))
    );
    // The removal's entry shows the job as it was removed; the others the job as written.
    assert_eq!(entries[0].before.as_ref().unwrap()["id"], "a");
    assert_eq!(entries[0].after, None);
    assert_eq!(entries[2].after.as_ref().unwrap()["paused"], true);
    assert_eq!(entries[3].after.as_ref().unwrap()["created_at"], original.created_at.to_rfc3339());
}

pub(crate) async fn adds_made_together_are_each_answered_alone(store: &dyn JobStore) {
    let taken = job("taken", Some(at(10)));
    store.add_job(&taken, false).await.unwrap();
    let add = entry_of(AuditAction::Add, at(1), false);
    let jobs = [
        labelled(job("n1", Some(at(10))), &[("team", "a")]),
        Job { name: Some("other".into()), ..taken.clone() },
        job("n2", Some(at(20))),
        Job { name: Some("second n2".into()), ..job("n2", Some(at(30))) },
        labelled(job("n3", None), &[("team", "a"), ("tier", "gold")]),
    ];
    // join_all submits every add before any is answered: on the SQL stores they wait for the writer together.
    let written = futures::future::join_all(
        jobs.iter().map(|job| store.write_audited(JobWrite::Add { job, replace_existing: false }, Some(&add))),
    )
    .await;
    let answers: Vec<Result<Vec<Job>, String>> =
        written.into_iter().map(|result| result.map_err(|err| format!("{err:?}"))).collect();
    assert_eq!(answers[0], Ok(vec![jobs[0].clone()]));
    assert!(answers[1].as_ref().is_err_and(|err| err.starts_with("Conflict")), "{answers:?}");
    assert_eq!(answers[2], Ok(vec![jobs[2].clone()]), "the first add of an id wins");
    assert!(answers[3].as_ref().is_err_and(|err| err.starts_with("Conflict")), "{answers:?}");
    assert_eq!(answers[4], Ok(vec![jobs[4].clone()]));

    assert_eq!(store.get_job("taken").await.unwrap(), Some(taken));
    assert_eq!(store.get_job("n2").await.unwrap(), Some(jobs[2].clone()));
    assert_eq!(selected_ids(store, "team=a").await, ["n1", "n3"]);
    assert_eq!(selected_ids(store, "tier=gold").await, ["n3"]);
    let entries = store.list_audit(&every_entry()).await.unwrap();
    let mut audited: Vec<&str> = entries.iter().filter_map(|entry| entry.job_id.as_deref()).collect();
    audited.sort();
    assert_eq!(audited, ["n1", "n2", "n3"], "one entry for each job added, none for a conflict");
}

pub(crate) async fn a_write_that_fails_records_nothing(store: &dyn JobStore) {
    let existing = job("a", Some(at(10)));
    store.add_job(&existing, false).await.unwrap();
    store.insert_run(&run("a", at(0), RunStatus::Pending)).await.unwrap();
    let entry = entry_of(AuditAction::Modify, at(0), false);

    let duplicate = Job { name: Some("other".into()), ..existing.clone() };
    let added = store.write_audited(JobWrite::Add { job: &duplicate, replace_existing: false }, Some(&entry)).await;
    assert!(matches!(added, Err(StoreError::Conflict(_))), "{added:?}");
    let missing = job("missing", None);
    let updated = store.write_audited(JobWrite::Update(&missing), Some(&entry)).await;
    assert!(matches!(updated, Err(StoreError::NotFound)), "{updated:?}");
    let taken = run("a", at(0), RunStatus::Pending);
    let inserted = store.write_audited(JobWrite::InsertRun { run: &taken, job: &existing }, Some(&entry)).await;
    assert!(matches!(inserted, Err(StoreError::Conflict(_))), "{inserted:?}");
    let removed = store.write_audited(JobWrite::Remove("missing"), Some(&entry)).await.unwrap();
    assert!(removed.is_empty());

    assert_eq!(store.get_job("a").await.unwrap(), Some(existing));
    assert_eq!(store.get_job("missing").await.unwrap(), None);
    assert!(store.list_audit(&every_entry()).await.unwrap().is_empty());
}

pub(crate) async fn remove_all_records_each_removed_job(store: &dyn JobStore) {
    add_all(store, &[job("a", Some(at(1))), paused_job("b"), job("c", Some(at(2)))]).await;
    let entry = entry_of(AuditAction::RemoveAll, at(0), true);
    let mut removed = store.write_audited(JobWrite::RemoveAll, Some(&entry)).await.unwrap();
    removed.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(ids(&removed), ["a", "b", "c"]);
    assert_eq!(store.count_jobs().await.unwrap(), 0);
    let entries = store.list_audit(&every_entry()).await.unwrap();
    let mut recorded: Vec<&str> = entries.iter().filter_map(|entry| entry.job_id.as_deref()).collect();
    recorded.sort_unstable();
    assert_eq!(recorded, ["a", "b", "c"]);
    assert!(entries.iter().all(|entry| entry.action == AuditAction::RemoveAll && entry.after.is_none()));
    // Nothing left: nothing removed, nothing recorded.
    assert!(store.write_audited(JobWrite::RemoveAll, Some(&entry)).await.unwrap().is_empty());
    assert_eq!(store.list_audit(&every_entry()).await.unwrap().len(), 3);
}

pub(crate) async fn audit_entries_round_trip_every_field(store: &dyn JobStore) {
    let full = AuditEntry {
        id: "0190a000-0000-7000-8000-000000000001".into(),
        time: at(0),
        actor: "ci-ü".into(),
        action: AuditAction::Modify,
        job_id: Some("a".into()),
        reason: Some("rotate the key — ticket 42".into()),
        before: Some(json!({"action": {"headers": {"Authorization": "********"}}, "n": [1, 2.5, null]})),
        after: Some(json!({"name": "ü-ñ", "nested": {"ok": true}})),
    };
    let bare = AuditEntry {
        id: "0190a000-0000-7000-8000-000000000002".into(),
        time: at(-1),
        actor: "anonymous".into(),
        action: AuditAction::SchedulerShutdown,
        job_id: None,
        reason: None,
        before: None,
        after: None,
    };
    store.record_audit(&[full.clone(), bare.clone()]).await.unwrap();
    store.record_audit(&[]).await.unwrap();
    assert_eq!(store.list_audit(&every_entry()).await.unwrap(), vec![full, bare]);
}

async fn walk_audit_pages(store: &dyn JobStore, filter: AuditQuery, page_size: usize) -> Vec<String> {
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let query = AuditQuery { after: after.clone(), limit: page_size, ..filter.clone() };
        let page = store.list_audit(&query).await.unwrap();
        seen.extend(page.iter().map(|entry| entry.id.clone()));
        if page.len() < page_size {
            return seen;
        }
        after = page.last().map(AuditEntry::cursor);
    }
}

pub(crate) async fn list_audit_newest_first_filtered_and_paginated(store: &dyn JobStore) {
    // Seven entries, two of them at one instant (their ids order them), by two actors about two jobs.
    let mut entries = Vec::new();
    for (index, (seconds, actor, action, job_id)) in [
        (0, "ci", AuditAction::Add, Some("a")),
        (1, "ops", AuditAction::Pause, Some("a")),
        (2, "ci", AuditAction::Add, Some("b")),
        (2, "ci", AuditAction::Modify, Some("b")),
        (3, "ops", AuditAction::SchedulerPause, None),
        (4, "ops", AuditAction::Resume, Some("a")),
        (5, "ci", AuditAction::Remove, Some("b")),
    ]
    .into_iter()
    .enumerate()
    {
        entries.push(AuditEntry {
            id: format!("id-{index}"),
            ..AuditEntry::new(at(seconds), &Change::by(actor), action, job_id, None, None)
        });
    }
    // Recorded out of order: the store orders them.
    store.record_audit(&entries[3..]).await.unwrap();
    store.record_audit(&entries[..3]).await.unwrap();
    let id_list = |indexes: &[usize]| indexes.iter().map(|index| format!("id-{index}")).collect::<Vec<_>>();

    let newest_first = store.list_audit(&every_entry()).await.unwrap();
    assert_eq!(newest_first.iter().map(|entry| entry.id.clone()).collect::<Vec<_>>(), id_list(&[6, 5, 4, 3, 2, 1, 0]));
    for page_size in [1, 2, 3, 7, 10] {
        assert_eq!(walk_audit_pages(store, AuditQuery::default(), page_size).await, id_list(&[6, 5, 4, 3, 2, 1, 0]));
    }
    let of_job = AuditQuery { job_id: Some("a".into()), ..AuditQuery::default() };
    assert_eq!(walk_audit_pages(store, of_job, 2).await, id_list(&[5, 1, 0]));
    let since = AuditQuery { since: Some(at(2)), ..AuditQuery::default() };
    assert_eq!(walk_audit_pages(store, since, 2).await, id_list(&[6, 5, 4, 3, 2]));
    let by_ops = AuditQuery { actor: Some("ops".into()), ..AuditQuery::default() };
    assert_eq!(walk_audit_pages(store, by_ops, 1).await, id_list(&[5, 4, 1]));
    let adds = AuditQuery { action: Some(AuditAction::Add), ..AuditQuery::default() };
    assert_eq!(walk_audit_pages(store, adds, 5).await, id_list(&[2, 0]));
    let all_at_once = AuditQuery {
        job_id: Some("b".into()),
        since: Some(at(2)),
        actor: Some("ci".into()),
        action: Some(AuditAction::Modify),
        after: None,
        limit: 10,
    };
    assert_eq!(walk_audit_pages(store, all_at_once, 10).await, id_list(&[3]));
    let after_the_tie =
        AuditQuery { after: Some(AuditCursor { time: at(2), id: "id-3".into() }), limit: 10, ..AuditQuery::default() };
    let rest = store.list_audit(&after_the_tie).await.unwrap();
    assert_eq!(rest.iter().map(|entry| entry.id.clone()).collect::<Vec<_>>(), id_list(&[2, 1, 0]));
}

pub(crate) async fn prune_audit_deletes_only_old_entries_within_its_limit(store: &dyn JobStore) {
    let entries: Vec<AuditEntry> = (0..5)
        .map(|seconds| AuditEntry::new(at(seconds), &Change::by("ci"), AuditAction::Modify, Some("a"), None, None))
        .collect();
    store.record_audit(&entries).await.unwrap();
    assert_eq!(store.prune_audit(at(3), 0).await.unwrap(), 0);
    assert_eq!(store.prune_audit(at(3), 2).await.unwrap(), 2);
    assert_eq!(store.prune_audit(at(3), 2).await.unwrap(), 1);
    assert_eq!(store.prune_audit(at(3), 2).await.unwrap(), 0);
    let left = store.list_audit(&every_entry()).await.unwrap();
    assert_eq!(left.iter().map(|entry| entry.time).collect::<Vec<_>>(), [at(4), at(3)]);
}

fn calendar(value: serde_json::Value) -> Calendar {
    serde_json::from_value(value).unwrap()
}

pub(crate) async fn calendars_round_trip_replace_and_list_by_id(store: &dyn JobStore) {
    let full = calendar(json!({"id": "us-holidays", "timezone": "America/New_York",
        "exclude": {"dates": ["2026-12-25"], "ranges": [{"start": "2026-12-24T12:00:00", "end": "2026-12-27T00:00:00"}],
                    "weekdays": ["sat", "sun"]},
        "ics": "BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n", "base": "company"}));
    let bare = calendar(json!({"id": "a-first", "timezone": "UTC"}));
    store.put_calendar(&full).await.unwrap();
    store.put_calendar(&bare).await.unwrap();
    assert_eq!(store.get_calendar("us-holidays").await.unwrap(), Some(full.clone()));
    assert_eq!(store.get_calendar("nope").await.unwrap(), None);
    assert_eq!(store.list_calendars().await.unwrap(), [bare.clone(), full.clone()]);
    let replaced = Calendar { base: None, ics: None, ..full };
    store.put_calendar(&replaced).await.unwrap();
    assert_eq!(store.get_calendar("us-holidays").await.unwrap(), Some(replaced.clone()));
    assert!(store.remove_calendar("a-first").await.unwrap());
    assert!(!store.remove_calendar("a-first").await.unwrap());
    assert_eq!(store.list_calendars().await.unwrap(), [replaced]);
}

pub(crate) async fn the_calendar_version_counts_every_change(store: &dyn JobStore) {
    let start = store.calendar_version().await.unwrap();
    store.put_calendar(&calendar(json!({"id": "a"}))).await.unwrap();
    let added = store.calendar_version().await.unwrap();
    assert!(added > start);
    store.put_calendar(&calendar(json!({"id": "a", "timezone": "UTC"}))).await.unwrap();
    let replaced = store.calendar_version().await.unwrap();
    assert!(replaced > added);
    assert!(!store.remove_calendar("missing").await.unwrap());
    assert_eq!(store.calendar_version().await.unwrap(), replaced, "nothing changed");
    store.remove_calendar("a").await.unwrap();
    assert!(store.calendar_version().await.unwrap() > replaced);
    // Jobs do not count: the version says only whether calendars changed.
    let version = store.calendar_version().await.unwrap();
    store.add_job(&job("j", Some(at(0))), false).await.unwrap();
    assert_eq!(store.calendar_version().await.unwrap(), version);
}

pub(crate) async fn jobs_with_calendars_are_those_whose_trigger_names_one(store: &dyn JobStore) {
    let with_trigger = |id: &str, trigger: serde_json::Value| Job {
        trigger: serde_json::from_value(trigger).unwrap(),
        ..job(id, Some(at(0)))
    };
    store.add_job(&job("plain", Some(at(0))), false).await.unwrap();
    store
        .add_job(&with_trigger("direct", json!({"type": "cron", "hour": 9, "exclude_calendars": ["a"]})), false)
        .await
        .unwrap();
    let nested = json!({"type": "or", "triggers": [{"type": "date", "run_date": "2030-01-01T00:00:00Z"},
        {"type": "interval", "hours": 1, "start_date": "2030-01-01T00:00:00Z", "exclude_calendars": ["b", "a"]}]});
    store.add_job(&with_trigger("nested", nested), false).await.unwrap();
    store
        .add_job(
            &Job {
                paused: true,
                next_run_time: None,
                ..with_trigger("paused", json!({"type": "cron", "hour": 9, "exclude_calendars": ["a"]}))
            },
            false,
        )
        .await
        .unwrap();
    let found: Vec<String> = store.jobs_with_calendars().await.unwrap().into_iter().map(|job| job.id).collect();
    assert_eq!(found, ["direct", "nested", "paused"]);
    let nested = store.get_job("nested").await.unwrap().unwrap();
    assert_eq!(nested.trigger.calendar_ids(), ["b", "a"]);
}

/// Record `status` for a new run of `job_id` scheduled at `at(seconds)` and ended a second later.
async fn record_outcome(store: &dyn JobStore, job_id: &str, seconds: i64, status: RunStatus) -> Run {
    let pending = run(job_id, at(seconds), RunStatus::Pending);
    store.insert_run(&pending).await.unwrap();
    let ended = Run { status, attempts: 1, finished_at: Some(at(seconds + 1)), ..pending };
    store.update_run(&ended).await.unwrap();
    ended
}

pub(crate) async fn outcomes_recorded_together_keep_each_jobs_health_in_finishing_order(store: &dyn JobStore) {
    add_all(store, &[job("mixed", Some(at(600))), job("fine", Some(at(600))), job("down", Some(at(600)))]).await;
    let mut ended = Vec::new();
    for (job_id, seconds, status) in [
        ("mixed", 0, RunStatus::Succeeded),
        ("fine", 0, RunStatus::Succeeded),
        ("mixed", 10, RunStatus::Failed),
        ("down", 10, RunStatus::Failed),
        ("fine", 20, RunStatus::Succeeded),
        ("mixed", 20, RunStatus::Succeeded),
        ("down", 30, RunStatus::Failed),
    ] {
        let pending = run(job_id, at(seconds), status);
        store.insert_run(&Run { status: RunStatus::Pending, ..pending.clone() }).await.unwrap();
        ended.push(Run { attempts: 1, finished_at: Some(at(seconds + 1)), ..pending });
    }
    // join_all submits every record before any is answered: the SQL stores' recorder takes them as one batch.
    for outcome in futures::future::join_all(ended.iter().map(|run| store.update_run(run))).await {
        outcome.unwrap();
    }
    let health = |job: Option<Job>| job.expect("the job").health;
    let mixed = health(store.get_job("mixed").await.unwrap());
    assert_eq!((mixed.consecutive_failures, mixed.last_success_at), (0, Some(at(21))), "{mixed:?}");
    assert_eq!(mixed.last_failure_at, Some(at(11)));
    let fine = health(store.get_job("fine").await.unwrap());
    assert_eq!((fine.consecutive_failures, fine.last_success_at, fine.last_failure_at), (0, Some(at(21)), None));
    let down = health(store.get_job("down").await.unwrap());
    assert_eq!((down.consecutive_failures, down.last_success_at, down.last_failure_at), (2, None, Some(at(31))));
}

pub(crate) async fn health_follows_each_runs_first_outcome_and_survives_job_writes(store: &dyn JobStore) {
    use crate::health::{Health, HealthState};
    let added = job("h", Some(at(600)));
    store.add_job(&added, false).await.unwrap();
    let health = |job: Option<Job>| job.expect("the job").health;
    assert_eq!(health(store.get_job("h").await.unwrap()).state(), HealthState::Unknown);

    let failed = record_outcome(store, "h", 0, RunStatus::Failed).await;
    // The same outcome recorded again (a retried record) counts once.
    store.update_run(&failed).await.unwrap();
    record_outcome(store, "h", 10, RunStatus::Failed).await;
    // Missed, skipped or cancelled runs are no outcome of a call.
    record_outcome(store, "h", 20, RunStatus::Missed).await;
    let failing = Health { consecutive_failures: 2, last_failure_at: Some(at(11)), ..Health::default() };
    assert_eq!(health(store.get_job("h").await.unwrap()), failing);
    assert_eq!(failing.state(), HealthState::Failing);

    // Writes of the job (which carry no health, or an old one) leave it as the outcomes made it.
    store.update_job(&added).await.unwrap();
    store.add_job(&added, true).await.unwrap();
    store.write_audited(JobWrite::Update(&added), None).await.unwrap();
    let every = Selector::default();
    let edited = store.modify_jobs(&every, &|job: Job| Ok(Edit::Save(Job { coalesce: false, ..job })));
    assert_eq!(edited.await.unwrap().saved, 1);
    assert_eq!(health(store.get_job("h").await.unwrap()), failing);
    assert_eq!(health(store.list_jobs(&all_jobs()).await.unwrap().pop()), failing);
    store.add_job(&job("fresh", Some(at(600))), false).await.unwrap();
    for (state, expected) in [
        (HealthState::Failing, vec!["h"]),
        (HealthState::Unknown, vec!["fresh"]),
        (HealthState::Healthy, vec![]),
        (HealthState::Stale, vec![]),
    ] {
        let query = JobQuery { health: Some(state), ..all_jobs() };
        assert_eq!(ids(&store.list_jobs(&query).await.unwrap()), expected, "{state:?}");
    }

    record_outcome(store, "h", 30, RunStatus::Succeeded).await;
    let healthy = Health { consecutive_failures: 0, last_success_at: Some(at(31)), ..failing };
    assert_eq!(health(store.get_job("h").await.unwrap()), healthy);
    assert_eq!(healthy.state(), HealthState::Healthy);
    // A run of a job that is gone is recorded all the same.
    store.remove_job("h").await.unwrap();
    record_outcome(store, "h", 40, RunStatus::Failed).await;
}

pub(crate) async fn auto_pause_after_failures_pauses_with_the_outcome(store: &dyn JobStore) {
    let mut watched = job("w", Some(at(600)));
    watched.auto_pause_after_failures = Some(2);
    store.add_job(&watched, false).await.unwrap();
    store.add_job(&job("other", Some(at(700))), false).await.unwrap();
    record_outcome(store, "w", 0, RunStatus::Failed).await;
    record_outcome(store, "other", 0, RunStatus::Failed).await;
    record_outcome(store, "other", 10, RunStatus::Failed).await;
    assert!(!store.get_job("w").await.unwrap().unwrap().paused);
    record_outcome(store, "w", 10, RunStatus::Failed).await;
    let paused = store.get_job("w").await.unwrap().unwrap();
    assert!(paused.paused && paused.next_run_time.is_none(), "{paused:?}");
    assert_eq!(paused.paused_reason.as_deref(), Some("auto: 2 consecutive failures"));
    assert_eq!(paused.health.consecutive_failures, 2);
    // The job without the option runs on; the paused one is no longer due.
    assert!(!store.get_job("other").await.unwrap().unwrap().paused);
    assert_eq!(store.earliest_next_run_time().await.unwrap(), Some(at(700)));
}

pub(crate) async fn due_resumes_are_taken_once_and_the_earliest_is_known(store: &dyn JobStore) {
    let until = |id: &str, seconds: i64| Job { paused_until: Some(at(seconds)), ..paused_job(id) };
    add_all(store, &[until("soon", 10), until("later", 20), paused_job("forever"), job("active", Some(at(30)))]).await;
    assert_eq!(store.earliest_times().await.unwrap(), (Some(at(30)), Some(at(10))));
    assert!(store.take_due_resumes(at(9)).await.unwrap().is_empty());
    assert_eq!(ids(&store.take_due_resumes(at(10)).await.unwrap()), ["soon"]);
    // Taken: no other taker gets it again.
    assert!(store.take_due_resumes(at(10)).await.unwrap().is_empty());
    assert_eq!(store.earliest_times().await.unwrap().1, Some(at(20)));
    let taken = store.take_due_resumes(at(100)).await.unwrap();
    assert_eq!(ids(&taken), ["later"]);
    assert_eq!(taken[0].paused_until, None);
    assert_eq!(store.earliest_times().await.unwrap(), (Some(at(30)), None));
    store.remove_job("active").await.unwrap();
    assert_eq!(store.earliest_times().await.unwrap(), (None, None));
}

pub(crate) async fn a_job_without_success_for_stale_after_seconds_is_marked_stale_once(store: &dyn JobStore) {
    use crate::health::HealthState;
    // Added at at(-3600) (`job`), watching for a day.
    let mut watched = job("watched", Some(at(600)));
    watched.stale_after_seconds = Some(7200);
    let paused = Job { stale_after_seconds: Some(60), ..paused_job("paused") };
    add_all(store, &[watched, paused, Job { stale_after_seconds: None, ..job("unwatched", Some(at(600))) }]).await;
    assert_eq!(store.mark_stale(at(3599)).await.unwrap(), (vec![], Some(at(3600))));
    assert_eq!(ids(&store.mark_stale(at(3600)).await.unwrap().0), ["watched"]);
    assert_eq!(store.mark_stale(at(9000)).await.unwrap(), (vec![], None), "once per stale period");
    assert_eq!(store.get_job("watched").await.unwrap().unwrap().health.state(), HealthState::Stale);
    // A success ends the period; the next starts from it.
    record_outcome(store, "watched", 9000, RunStatus::Succeeded).await;
    assert_eq!(store.get_job("watched").await.unwrap().unwrap().health.state(), HealthState::Healthy);
    assert_eq!(store.mark_stale(at(9001 + 7199)).await.unwrap(), (vec![], Some(at(9001 + 7200))));
    assert_eq!(ids(&store.mark_stale(at(9001 + 7200)).await.unwrap().0), ["watched"]);
}

/// The notifications in the ledger about `job_id`, oldest first, as (type, consecutive_failures).
async fn notified(store: &dyn JobStore, job_id: &str) -> Vec<(String, u64)> {
    let mut notifications = store.list_notifications(job_id, 100).await.unwrap();
    notifications.reverse();
    notifications.iter().map(|n| (n.kind.clone(), n.payload["consecutive_failures"].as_u64().unwrap())).collect()
}

pub(crate) async fn health_changes_write_their_notifications_with_them(store: &dyn JobStore) {
    use crate::notify::NotifyOn;
    let spec = |threshold: u32| {
        let mut spec = crate::notify::parse(json!({"url": "https://alerts.internal/n"})).unwrap();
        spec.failure_threshold = threshold;
        spec
    };
    let mut watched = job("watched", Some(at(600)));
    watched.notify = Some(spec(2));
    watched.auto_pause_after_failures = Some(3);
    watched.labels.insert("team".into(), "ops".into());
    let plain = job("plain", Some(at(600)));
    add_all(store, &[watched, plain]).await;

    // Without `[notify]`, a job without its own says nothing.
    record_outcome(store, "plain", 0, RunStatus::Failed).await;
    assert_eq!(notified(store, "plain").await, []);

    // One failure notification at the threshold, none before or after it in the streak; auto_paused with it.
    record_outcome(store, "watched", 0, RunStatus::Failed).await;
    assert_eq!(notified(store, "watched").await, []);
    let second = record_outcome(store, "watched", 10, RunStatus::Failed).await;
    store.update_run(&second).await.unwrap();
    assert_eq!(notified(store, "watched").await, [("failure".to_string(), 2)], "a record retried counts once");
    record_outcome(store, "watched", 20, RunStatus::Failed).await;
    let expected = ["failure", "auto_paused"].map(String::from).to_vec();
    let kinds = |n: Vec<(String, u64)>| n.into_iter().map(|(kind, _)| kind).collect::<Vec<_>>();
    assert_eq!(kinds(notified(store, "watched").await), expected);
    let newest = store.list_notifications("watched", 1).await.unwrap();
    let payload = &newest[0].payload;
    assert_eq!(payload["type"], "job.auto_paused");
    assert_eq!(payload["paused_reason"], "auto: 3 consecutive failures");
    assert_eq!(payload["job"], json!({"id": "watched", "name": "job watched", "labels": {"team": "ops"}}));
    assert_eq!(payload["run"]["status"], "failed");
    assert_eq!(payload["run"]["scheduled_time"], "2026-11-25T10:00:20.123457Z");
    assert!(payload["run"].get("action").is_none(), "a run's action may carry secrets");
    assert_eq!(newest[0].created_at, at(21));

    // The success that ends the streak sends one recovery.
    record_outcome(store, "watched", 30, RunStatus::Succeeded).await;
    record_outcome(store, "watched", 40, RunStatus::Succeeded).await;
    assert_eq!(notified(store, "watched").await.last().unwrap(), &("recovery".to_string(), 0));
    assert_eq!(notified(store, "watched").await.len(), 3);

    // `[notify]` covers the jobs without their own, with its own threshold and kinds.
    let mut default = spec(1);
    default.on = vec![NotifyOn::Failure, NotifyOn::Stale];
    store.set_notify_default(Some(default));
    record_outcome(store, "plain", 10, RunStatus::Failed).await;
    assert_eq!(notified(store, "plain").await, [], "the streak passed the threshold before it was set");
    record_outcome(store, "plain", 20, RunStatus::Succeeded).await;
    assert_eq!(notified(store, "plain").await, [], "recovery is not among its kinds");
    record_outcome(store, "plain", 30, RunStatus::Failed).await;
    assert_eq!(notified(store, "plain").await, [("failure".to_string(), 1)]);

    // Stale, once, with the mark.
    let mut quiet = job("quiet", Some(at(600)));
    quiet.stale_after_seconds = Some(60);
    store.add_job(&quiet, false).await.unwrap();
    assert_eq!(ids(&store.mark_stale(at(0)).await.unwrap().0), ["quiet"]);
    store.mark_stale(at(100)).await.unwrap();
    assert_eq!(notified(store, "quiet").await, [("stale".to_string(), 0)]);
    store.set_notify_default(None);

    // Every one of them is in the ledger to be sent, each once.
    let claimed = store.claim_notifications(at(10_000), at(10_060), 100).await.unwrap();
    assert_eq!(claimed.len(), 5);

    // Retention takes finished ones older than the cutoff, never a pending one.
    use crate::notify::ledger::Finish;
    // The stale one stays pending; the others (created at 11, 21, 31 and 31 s) are delivered.
    for notification in claimed.iter().filter(|n| n.job_id != "quiet") {
        store.finish_notification(&notification.id, &Finish::Delivered(at(10_001))).await.unwrap();
    }
    assert_eq!(store.prune_notifications(at(31), 100).await.unwrap(), 2, "strictly before the cutoff");
    assert_eq!(store.prune_notifications(at(20_000), 100).await.unwrap(), 2);
    let left: Vec<_> = ["watched", "plain", "quiet"].iter().map(|id| store.list_notifications(id, 100)).collect();
    let mut remaining = 0;
    for listing in left {
        remaining += listing.await.unwrap().len();
    }
    assert_eq!(remaining, 1, "the pending one stays");
}

store_contract_tests!(memory, memory_fixture());
store_contract_tests!(sqlite, sqlite_fixture());
store_contract_tests!(postgres, postgres_fixture());

/// A database several stores share, as replicas (or processes on one SQLite file) share it.
#[async_trait]
pub(crate) trait SharedDatabase: Send + Sync {
    /// One more store on the database, as another process opens it.
    async fn open(&self) -> Arc<dyn JobStore>;
    /// Run `sql` on the database itself, as a person with its CLI (or a broken writer) could.
    async fn execute(&self, sql: &str);
    /// The one boolean that `sql` selects from one row.
    async fn fetch_flag(&self, sql: &str) -> bool;
}

/// A fresh SQLite file.
struct SqliteFile {
    url: String,
    _dir: tempfile::TempDir,
}

#[async_trait]
impl SharedDatabase for SqliteFile {
    async fn open(&self) -> Arc<dyn JobStore> {
        Arc::new(SqliteStore::connect(&self.url).await.expect("open the SQLite file"))
    }

    async fn execute(&self, sql: &str) {
        let mut connection = <sqlx::SqliteConnection as sqlx::Connection>::connect(&self.url).await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(sql.to_string())).execute(&mut connection).await.unwrap();
    }

    async fn fetch_flag(&self, sql: &str) -> bool {
        let mut connection = <sqlx::SqliteConnection as sqlx::Connection>::connect(&self.url).await.unwrap();
        sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_string())).fetch_one(&mut connection).await.unwrap()
    }
}

/// Connections per replica in the shared-database cases: a case's replica makes a call or two at a time.
const REPLICA_POOL_SIZE: u32 = 4;

#[async_trait]
impl SharedDatabase for ScratchSchema {
    async fn open(&self) -> Arc<dyn JobStore> {
        Arc::new(PostgresStore::connect(&self.url, REPLICA_POOL_SIZE).await.expect("connect to the scratch schema"))
    }

    async fn execute(&self, sql: &str) {
        let mut connection = <sqlx::PgConnection as sqlx::Connection>::connect(&self.url).await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(sql.to_string())).execute(&mut connection).await.unwrap();
    }

    async fn fetch_flag(&self, sql: &str) -> bool {
        let mut connection = <sqlx::PgConnection as sqlx::Connection>::connect(&self.url).await.unwrap();
        sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_string())).fetch_one(&mut connection).await.unwrap()
    }
}

pub(crate) async fn sqlite_database() -> Box<dyn SharedDatabase> {
    let dir = tempfile::tempdir().expect("temporary directory");
    let url = format!("sqlite://{}", dir.path().join("apsched.db").display());
    Box::new(SqliteFile { url, _dir: dir })
}

pub(crate) async fn postgres_database() -> Box<dyn SharedDatabase> {
    Box::new(ScratchSchema::create().await)
}

/// Expands every SQL-store case into a multi-threaded `#[tokio::test]` (the replicas' calls really run at once)
/// in a module `$module`, each against a fresh database from `$database`.
macro_rules! sql_store_contract_tests {
    ($module:ident, $database:expr) => {
        sql_store_contract_tests!(@cases $module, $database, [
            concurrent_replicas_never_share_a_fire,
            max_instances_counts_the_runs_every_replica_has_in_hand,
            times_finer_than_a_microsecond_are_truncated,
            an_unreadable_due_job_is_parked_and_the_others_still_claimed,
            a_calendar_change_is_seen_by_every_replica,
            an_entry_that_cannot_be_written_undoes_its_change,
            replicas_never_take_the_same_backfill_fire,
        ]);
    };
    (@cases $module:ident, $database:expr, [$($case:ident),* $(,)?]) => {
        mod $module {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let database = $database.await;
                    $crate::store::contract::$case(database.as_ref()).await;
                }
            )*
        }
    };
}

pub(crate) async fn concurrent_replicas_never_share_a_fire(database: &dyn SharedDatabase) {
    const JOBS: i64 = 60;
    let replicas = [database.open().await, database.open().await, database.open().await];
    for index in 0..JOBS {
        replicas[0].add_job(&job(&format!("job-{index:02}"), Some(at(-index))), false).await.unwrap();
    }
    let start = Arc::new(tokio::sync::Barrier::new(replicas.len()));
    let claimers = replicas.clone().map(|store| {
        let start = start.clone();
        tokio::spawn(async move {
            start.wait().await;
            let mut fires = Vec::new();
            loop {
                // Small batches, so the claimers interleave many times.
                let batch = store.claim_due(at(0), 3, at(30), &Advance { step: Duration::hours(1) }).await.unwrap();
                if batch.is_empty() {
                    return fires;
                }
                fires.extend(batch.into_iter().map(|run| (run.job_id, run.scheduled_time)));
            }
        })
    });
    let mut all_fires = Vec::new();
    for claimer in claimers {
        all_fires.extend(claimer.await.unwrap());
    }
    let distinct: HashSet<_> = all_fires.iter().cloned().collect();
    assert_eq!(distinct.len(), all_fires.len(), "a fire was claimed twice: {all_fires:?}");
    assert_eq!(all_fires.len(), JOBS as usize, "every due fire was claimed once");
    for index in 0..JOBS {
        let runs = replicas[1].list_runs(&format!("job-{index:02}"), &all_runs()).await.unwrap();
        assert_eq!(runs.len(), 1);
    }
}

/// Records the active runs the claim reports, and plans one pending fire.
struct CountActive(Mutex<Vec<u32>>);

impl Planner for CountActive {
    fn plan(&self, job: &Job, load: Load, now: DateTime<Utc>) -> FirePlan {
        self.0.lock().unwrap().push(load.active);
        let scheduled = job.next_run_time.unwrap();
        FirePlan {
            runs: vec![Run::new(job, scheduled, RunStatus::Pending, now, Tz::UTC)],
            next_run_time: Some(scheduled + Duration::seconds(1)),
            ..FirePlan::default()
        }
    }
}

pub(crate) async fn max_instances_counts_the_runs_every_replica_has_in_hand(database: &dyn SharedDatabase) {
    let (first, second) = (database.open().await, database.open().await);
    first.add_job(&job("j", Some(at(0))), false).await.unwrap();
    let planner = CountActive(Mutex::new(Vec::new()));
    assert_eq!(first.claim_due(at(0), 10, at(30), &planner).await.unwrap().len(), 1);
    assert_eq!(second.claim_due(at(1), 10, at(31), &planner).await.unwrap().len(), 1);
    assert_eq!(*planner.0.lock().unwrap(), [0, 1], "the second replica sees the first one's pending fire");
}

pub(crate) async fn times_finer_than_a_microsecond_are_truncated(database: &dyn SharedDatabase) {
    let store = database.open().await;
    store.add_job(&job("a", Some(at(0) + Duration::nanoseconds(999))), false).await.unwrap();
    assert_eq!(store.get_job("a").await.unwrap().unwrap().next_run_time, Some(at(0)));
    let late = Run { created_at: at(0) + Duration::nanoseconds(1), ..run("a", at(0), RunStatus::Pending) };
    store.insert_run(&late).await.unwrap();
    let stored = store.list_runs("a", &RunQuery { status: None, after: None, limit: 10 }).await.unwrap();
    assert_eq!(stored[0].created_at, at(0));
}

pub(crate) async fn an_unreadable_due_job_is_parked_and_the_others_still_claimed(database: &dyn SharedDatabase) {
    let store = database.open().await;
    store.add_job(&job("bad", Some(at(-10))), false).await.unwrap();
    store.add_job(&job("good", Some(at(-5))), false).await.unwrap();
    database.execute("UPDATE jobs SET trigger = '{\"type\": \"sundial\"}' WHERE id = 'bad'").await;

    let claimed = store.claim_due(at(0), 10, at(30), &every_minute()).await.unwrap();
    assert_eq!(claimed.iter().map(|run| run.job_id.as_str()).collect::<Vec<_>>(), ["good"]);
    assert!(matches!(store.get_job("bad").await, Err(StoreError::Corrupt(_))));
    let parked = database.fetch_flag("SELECT next_run_time IS NULL FROM jobs WHERE id = 'bad'").await;
    assert!(parked, "kept for a person to inspect, no longer due");
    assert_eq!(store.earliest_next_run_time().await.unwrap(), Some(at(55)));
}

pub(crate) async fn a_calendar_change_is_seen_by_every_replica(database: &dyn SharedDatabase) {
    let (first, second) = (database.open().await, database.open().await);
    let before = second.calendar_version().await.unwrap();
    first.put_calendar(&calendar(json!({"id": "shared", "exclude": {"weekdays": ["sun"]}}))).await.unwrap();
    assert!(second.calendar_version().await.unwrap() > before);
    assert_eq!(second.list_calendars().await.unwrap().len(), 1);
    let before = second.calendar_version().await.unwrap();
    first.remove_calendar("shared").await.unwrap();
    assert!(second.calendar_version().await.unwrap() > before);
    assert_eq!(second.get_calendar("shared").await.unwrap(), None);
}

/// The change and its entry are one transaction: when the entry cannot be written (here its id is taken), the
/// change is not made either. (The memory store makes both under one lock, where nothing can fail between them.)
pub(crate) async fn an_entry_that_cannot_be_written_undoes_its_change(database: &dyn SharedDatabase) {
    let store = database.open().await;
    let taken = AuditEntry::new(at(0), &Change::by("ci"), AuditAction::Modify, Some("x"), None, None);
    store.record_audit(std::slice::from_ref(&taken)).await.unwrap();
    let clashing = |job: &Job| {
        AuditEntry {
            job_id: Some(job.id.clone()),
            ..AuditEntry::new(at(1), &Change::by("ci"), AuditAction::Add, None, None, None)
        }
        .with_id(&taken.id)
    };
    let original = job("a", Some(at(10)));
    let added = store.write_audited(JobWrite::Add { job: &original, replace_existing: false }, Some(&clashing)).await;
    assert!(added.is_err(), "{added:?}");
    assert_eq!(store.get_job("a").await.unwrap(), None, "the add was kept without its entry");

    store.add_job(&original, false).await.unwrap();
    let renamed = Job { name: Some("renamed".into()), ..original.clone() };
    assert!(store.write_audited(JobWrite::Update(&renamed), Some(&clashing)).await.is_err());
    assert!(store.write_audited(JobWrite::Remove("a"), Some(&clashing)).await.is_err());
    assert!(store.write_audited(JobWrite::RemoveAll, Some(&clashing)).await.is_err());
    let now = run("a", at(3), RunStatus::Pending);
    assert!(store.write_audited(JobWrite::InsertRun { run: &now, job: &original }, Some(&clashing)).await.is_err());
    assert_eq!(store.get_job("a").await.unwrap(), Some(original), "a change was kept without its entry");
    assert!(store.list_runs("a", &all_runs()).await.unwrap().is_empty(), "the run was kept without its entry");
    assert_eq!(store.list_audit(&every_entry()).await.unwrap(), vec![taken]);
}

sql_store_contract_tests!(sqlite_shared, sqlite_database());
sql_store_contract_tests!(postgres_shared, postgres_database());

pub(crate) async fn the_outcome_of_a_removed_jobs_last_run_notifies_from_the_job_as_claimed(store: &dyn JobStore) {
    // A one-shot job is removed by the claim of its only fire: the fire's failure is told all the same.
    let alerts = |url: &str| crate::notify::parse(json!({ "url": url })).unwrap();
    let mut watched = labelled(job("once-watched", Some(at(-1))), &[("team", "ops")]);
    watched.notify = Some(alerts("https://alerts.internal/n"));
    add_all(store, &[watched, job("once-silent", Some(at(-1)))]).await;
    let claimed = store.claim_due(at(0), 10, at(30), &LastFire).await.unwrap();
    assert_eq!(store.count_jobs().await.unwrap(), 0);
    let claimed_run = |id: &str| claimed.iter().find(|run| run.job_id == id).expect("a claimed run").clone();
    assert!(claimed_run("once-silent").removed_job.is_none(), "a job that cannot notify is not kept");
    let end = |run: Run, status| Run { status, attempts: 1, finished_at: Some(at(1)), ..run };
    store.update_run(&end(claimed_run("once-watched"), RunStatus::Failed)).await.unwrap();
    store.update_run(&end(claimed_run("once-silent"), RunStatus::Failed)).await.unwrap();
    assert_eq!(notified(store, "once-watched").await, [("failure".to_string(), 1)]);
    assert_eq!(notified(store, "once-silent").await, []);
    let payload = &store.list_notifications("once-watched", 1).await.unwrap()[0].payload;
    assert_eq!(payload["job"], json!({"id": "once-watched", "name": "job once-watched", "labels": {"team": "ops"}}));
    assert_eq!(payload["run"]["status"], "failed");

    // `[notify]` covers a removed job without its own; a success that ends no streak says nothing.
    store.set_notify_default(Some(alerts("https://alerts.internal/default")));
    add_all(store, &[job("once-default", Some(at(-1))), job("once-fine", Some(at(-1)))]).await;
    let claimed = store.claim_due(at(0), 10, at(30), &LastFire).await.unwrap();
    for run in claimed {
        let status = if run.job_id == "once-fine" { RunStatus::Succeeded } else { RunStatus::Failed };
        store.update_run(&end(run, status)).await.unwrap();
    }
    store.set_notify_default(None);
    assert_eq!(notified(store, "once-default").await, [("failure".to_string(), 1)]);
    assert_eq!(notified(store, "once-fine").await, []);
}

pub(crate) async fn notifications_are_claimed_once_under_a_lease(store: &dyn JobStore) {
    use crate::notify::NotifyOn;
    use crate::notify::ledger::{Notification, NotificationState};
    let mut all: Vec<Notification> = (0..20)
        .map(|i| Notification::pending(&format!("job-{i}"), NotifyOn::Failure, json!({"n": i, "ü": [1, null]}), at(i)))
        .collect();
    let mut later = Notification::pending("later", NotifyOn::Stale, json!({}), at(1000));
    later.last_error = Some("HTTP 503".into());
    all.push(later.clone());
    store.insert_notifications(&all).await.unwrap();
    assert!(store.insert_notifications(&all[..1]).await.is_err(), "an id goes in once");

    // Two claimers at once, a few rows at a time, until nothing is left: each row once, the later one never.
    let claimer = || async {
        let mut got = Vec::new();
        loop {
            let batch = store.claim_notifications(at(100), at(160), 3).await.unwrap();
            if batch.is_empty() {
                return got;
            }
            got.extend(batch);
        }
    };
    let (first, second) = tokio::join!(claimer(), claimer());
    let mut ids: Vec<String> = first.iter().chain(&second).map(|n| n.id.clone()).collect();
    ids.sort();
    let mut expected: Vec<String> = all[..20].iter().map(|n| n.id.clone()).collect();
    expected.sort();
    assert_eq!(ids, expected, "every due row exactly once");
    let one = first.iter().chain(&second).find(|n| n.id == all[7].id).unwrap();
    assert_eq!(
        one,
        &Notification { attempts: 1, lease_until: Some(at(160)), ..all[7].clone() },
        "every field kept, the attempt counted"
    );
    assert_eq!(one.state, NotificationState::Pending);

    // Under the lease nothing is claimed again; after it, each row is, with its second attempt.
    assert!(store.claim_notifications(at(160), at(220), 100).await.unwrap().is_empty());
    let again = store.claim_notifications(at(161), at(220), 100).await.unwrap();
    assert_eq!(again.len(), 20);
    assert!(again.iter().all(|n| n.attempts == 2 && n.lease_until == Some(at(220))));
    // Once due, the later one is claimed too (its first attempt), along with the others whose lease ran out.
    let taken = store.claim_notifications(at(1000), at(1060), 100).await.unwrap();
    assert_eq!(taken.len(), 21);
    let taken_later = taken.iter().find(|n| n.id == later.id).unwrap();
    assert_eq!(taken_later, &Notification { attempts: 1, lease_until: Some(at(1060)), ..later });
    assert!(taken.iter().filter(|n| n.id != taken_later.id).all(|n| n.attempts == 3));

    // Outcomes release the lease: delivered and failed rows are never claimed again; a retry is, when due.
    use crate::notify::ledger::Finish;
    assert!(store.finish_notification(&all[0].id, &Finish::Delivered(at(1001))).await.unwrap());
    assert!(store.finish_notification(&all[1].id, &Finish::Failed("HTTP 410".into())).await.unwrap());
    assert!(store.finish_notification(&all[2].id, &Finish::Retry(at(1500), "HTTP 503".into())).await.unwrap());
    assert!(!store.finish_notification("ntf_absent", &Finish::Failed("x".into())).await.unwrap());
    let after = store.claim_notifications(at(1061), at(1100), 100).await.unwrap();
    assert_eq!(after.len(), 18, "all but the three finished");
    let retried = store.claim_notifications(at(1500), at(1560), 100).await.unwrap();
    let retried = retried.iter().find(|n| n.id == all[2].id).unwrap();
    assert_eq!((retried.attempts, retried.last_error.as_deref()), (4, Some("HTTP 503")));
    assert!(
        store
            .claim_notifications(at(5000), at(5060), 100)
            .await
            .unwrap()
            .iter()
            .all(|n| { n.id != all[0].id && n.id != all[1].id })
    );
}
