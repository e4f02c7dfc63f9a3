//! Job stores: where jobs and the run ledger live. `memory` for tests and throwaway schedules, `sqlite` the
//! embedded default, `postgres` for production and replicas; the two SQL stores share `sql` and differ only in
//! their dialect.
//!
//! No SQL and no `sqlx::Error` above this module: stores speak `StoreError`. The scheduler's rules (misfire,
//! coalesce, max_instances, the next run time) are a `Planner` the store calls *inside* its claim transaction, so
//! that claiming a fire, recording it in the ledger and advancing the job are one atomic step on every store.

pub mod memory;
pub mod postgres;
mod recorder;
mod sql;
pub mod sqlite;

#[cfg(test)]
pub(crate) mod contract;

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use utoipa::ToSchema;

use crate::audit::{AuditEntry, AuditQuery};
use crate::backfill::{Backfill, BackfillStep, StepOutcome};
use crate::calendar::Calendar;
use crate::job::{Job, Run, RunStatus};
use crate::labels::Selector;

/// What a store operation can fail with.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No job or run with that key.
    #[error("not found")]
    NotFound,
    /// The key is taken: a job id, or a run of the same job and fire time.
    #[error("conflict: {0}")]
    Conflict(String),
    /// The store cannot be reached or failed; the caller retries later.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// A stored row could not be read back (corruption or an incompatible schema).
    #[error("corrupt row: {0}")]
    Corrupt(String),
}

/// A store operation's result.
pub type StoreResult<T> = Result<T, StoreError>;

/// Position in the job list, which is ordered by (next_run_time, id) with paused jobs (no next run time) last.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobCursor {
    /// The last listed job's next run time.
    pub next_run_time: Option<DateTime<Utc>>,
    /// The last listed job's id.
    pub id: String,
}

impl JobCursor {
    /// The position just after `job`.
    pub fn of(job: &Job) -> JobCursor {
        JobCursor { next_run_time: job.next_run_time, id: job.id.clone() }
    }

    /// True when `job` comes strictly after this cursor in list order.
    pub fn precedes(&self, job: &Job) -> bool {
        job_order_key(job) > (self.next_run_time.is_none(), self.next_run_time, self.id.as_str())
    }
}

/// The list order: jobs with a next run time first, by that time, then by id.
pub fn job_order_key(job: &Job) -> (bool, Option<DateTime<Utc>>, &str) {
    (job.next_run_time.is_none(), job.next_run_time, job.id.as_str())
}

/// Which jobs `list_jobs` returns.
#[derive(Debug, Clone, Default)]
pub struct JobQuery {
    /// Only paused jobs (`true`) or only unpaused ones (`false`).
    pub paused: Option<bool>,
    /// Only jobs whose labels this selects (the empty selector selects every job).
    pub selector: Selector,
    /// Only jobs strictly after this position.
    pub after: Option<JobCursor>,
    /// At most this many.
    pub limit: usize,
    /// Only jobs in this health state.
    pub health: Option<crate::health::HealthState>,
}

/// What `JobStore::modify_jobs` does with one selected job.
#[derive(Debug, Clone, PartialEq)]
#[allow(clippy::large_enum_variant)] // one lives at a time, moved straight into a batch
pub enum Edit {
    /// Save the job as changed.
    Save(Job),
    /// Remove it (a resumed job whose trigger has ended, as `resume_job` removes one).
    Remove,
}

/// Decides, for each job a bulk change selects, what becomes of it; inside the store's transaction, so it only
/// computes. An error aborts the whole change.
pub type Editor<'a> = dyn Fn(Job) -> StoreResult<Edit> + Send + Sync + 'a;

/// What a bulk change did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Edited {
    /// Jobs saved as changed.
    pub saved: u64,
    /// Jobs removed.
    pub removed: u64,
}

/// Position in a job's run history, which is ordered newest scheduled time first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunCursor {
    /// The last listed run's scheduled time.
    pub scheduled_time: DateTime<Utc>,
    /// The last listed run's idempotency key.
    pub idempotency_key: String,
}

/// Which runs `list_runs` returns.
#[derive(Debug, Clone, Default)]
pub struct RunQuery {
    /// Only runs with this status.
    pub status: Option<RunStatus>,
    /// Only runs strictly after (older than) this position.
    pub after: Option<RunCursor>,
    /// At most this many.
    pub limit: usize,
}

/// Which runs `prune_runs` deletes: finished ones (neither pending nor running) that are too old or beyond a job's
/// newest `keep_per_job`. Unfinished runs are never deleted and do not count towards `keep_per_job`.
#[derive(Debug, Clone, PartialEq)]
pub struct Prune {
    /// A finished run whose `finished_at` (its `created_at` if it has none) is strictly before this goes.
    pub finished_before: Option<DateTime<Utc>>,
    /// Of each job's finished runs, the newest this many by scheduled time stay; older ones go.
    pub keep_per_job: Option<u64>,
    /// At most this many are deleted in one call, so one call holds the store briefly; the caller repeats while
    /// a call deletes `limit`.
    pub limit: usize,
}

/// A change to a store's jobs that `write_audited` makes together with its audit entries.
#[derive(Debug, Clone, Copy)]
pub enum JobWrite<'a> {
    /// As `add_job`.
    Add {
        /// The job to insert.
        job: &'a Job,
        /// Replace a job with the same id (keeping its created_at) instead of failing with `Conflict`.
        replace_existing: bool,
    },
    /// As `update_job`.
    Update(&'a Job),
    /// As `remove_job`.
    Remove(&'a str),
    /// As `remove_all_jobs`.
    RemoveAll,
    /// As `insert_run`: a run of `job`, which is left as it is.
    InsertRun {
        /// The run to insert.
        run: &'a Run,
        /// Its job, as the entry shows it.
        job: &'a Job,
    },
}

impl JobWrite<'_> {
    /// Whether the jobs it affects are gone afterwards.
    pub fn removes(&self) -> bool {
        matches!(self, JobWrite::Remove(_) | JobWrite::RemoveAll)
    }
}

/// Makes the audit entry of each job a write affected (see `JobStore::write_audited`).
pub type AuditEntryOf<'a> = &'a (dyn Fn(&Job) -> AuditEntry + Send + Sync);

/// What to do with one due job, decided by the scheduler inside the store's claim transaction.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FirePlan {
    /// Ledger rows to insert: `pending` ones are delivered, `buffered` ones wait for a run of the job to end, the
    /// others (missed, skipped, coalesced) are only recorded.
    pub runs: Vec<Run>,
    /// The job's new next run time; `None`: the trigger has finished and the job is removed.
    pub next_run_time: Option<DateTime<Utc>>,
    /// Record the job's fires buffered before this claim `skipped`: a newer one replaces them (`buffer_one`).
    pub supersede_buffered: bool,
    /// Cancel this many of the job's pending or running runs, oldest fire first, to make room (`cancel_other`).
    pub cancel_oldest: u32,
}

/// What a job has under way when it is claimed: its pending or running runs (its instances, for max_instances)
/// and its buffered fires (waiting for one of them to end).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Load {
    /// Pending or running runs.
    pub active: u32,
    /// Buffered fires.
    pub buffered: u32,
}

/// The scheduler's rules for a due job, given what it has under way.
pub trait Planner: Send + Sync {
    /// What to record for `job`, due at `now`, and its next run time.
    fn plan(&self, job: &Job, load: Load, now: DateTime<Utc>) -> FirePlan;
}

/// Why the claim records a buffered fire `skipped` (`FirePlan::supersede_buffered`).
pub const SUPERSEDED: &str = "a newer fire was buffered instead (overlap: buffer_one)";
/// Why the claim records a run `cancelled` (`FirePlan::cancel_oldest`).
pub const CANCELLED: &str = "cancelled to start a newer fire (overlap: cancel_other)";

/// Where jobs and the run ledger live. Every store passes the same contract tests.
#[async_trait]
pub trait JobStore: Send + Sync + 'static {
    /// Which kind of store this is: memory and SQLite belong to one process, PostgreSQL may be shared by replicas.
    fn kind(&self) -> crate::store::StoreType;

    /// Check the store answers (for `/readyz`).
    async fn ping(&self) -> StoreResult<()>;

    /// Insert a job. If a job with its id exists: `Conflict` unless `replace_existing`, in which case it is
    /// replaced (its created_at kept).
    async fn add_job(&self, job: &Job, replace_existing: bool) -> StoreResult<()>;
    /// Overwrite an existing job; `NotFound` if it is gone.
    async fn update_job(&self, job: &Job) -> StoreResult<()>;
    /// The job with this id, if any.
    async fn get_job(&self, id: &str) -> StoreResult<Option<Job>>;
    /// `true` if it existed. Its runs stay in the ledger (history) until pruned.
    async fn remove_job(&self, id: &str) -> StoreResult<bool>;
    /// Remove every job; the number removed.
    async fn remove_all_jobs(&self) -> StoreResult<u64>;
    /// Remove the jobs `selector` selects (the empty selector, every job); the number removed.
    async fn remove_jobs(&self, selector: &Selector) -> StoreResult<u64>;
    /// Jobs in list order (see `job_order_key`), filtered, at most `limit`.
    async fn list_jobs(&self, query: &JobQuery) -> StoreResult<Vec<Job>>;
    /// Hand every job `selector` selects to `edit` and save or remove it as told, in one transaction: on an error
    /// (the editor's or the store's) nothing changes. The selection is made once, so a job the edit makes
    /// selected or unselected is not visited again.
    async fn modify_jobs(&self, selector: &Selector, edit: &Editor<'_>) -> StoreResult<Edited>;
    /// How many jobs the store holds.
    async fn count_jobs(&self) -> StoreResult<u64>;
    /// The earliest next_run_time of an unpaused job: when the scheduler must next wake for this store.
    async fn earliest_next_run_time(&self) -> StoreResult<Option<DateTime<Utc>>>;

    /// In one transaction: take up to `limit` unpaused jobs whose next_run_time <= now, earliest first; for each,
    /// ask `planner`, insert its runs (a run whose (job id, scheduled time) is already in the ledger is left out:
    /// that fire was claimed before), give the `pending` ones a lease until `lease_until`, and set the job's
    /// next_run_time, or remove the job when the plan's is `None`. Before inserting, it records the job's buffered
    /// fires `skipped` (error `SUPERSEDED`) when the plan supersedes them, and its `cancel_oldest` oldest pending or
    /// running runs `cancelled` (error `CANCELLED`, finished now, lease cleared). Returns every run it inserted, in
    /// plan order per job — the `pending` ones (with their lease) to deliver, the `buffered` ones, and the missed,
    /// skipped and coalesced ones it only recorded (for events and metrics) — after the runs it superseded or
    /// cancelled, as they now are. A run left out because its fire was taken is not returned.
    async fn claim_due(
        &self,
        now: DateTime<Utc>,
        limit: usize,
        lease_until: DateTime<Utc>,
        planner: &dyn Planner,
    ) -> StoreResult<Vec<Run>>;

    /// Insert one run (run-now): `Conflict` if its (job id, scheduled time) is taken.
    async fn insert_run(&self, run: &Run) -> StoreResult<()>;
    /// Save a run's progress (`Run::take_progress`: status, attempts, times, outcome, lease), found by idempotency
    /// key and fire; the rest of the row stays as inserted. A cancelled run is final: it stays as it is, and the
    /// update is `NotFound`.
    async fn update_run(&self, run: &Run) -> StoreResult<()>;
    /// In one transaction: deliver buffered fires where their job has room. For each job with buffered runs, the
    /// oldest ones — as many as its `max_instances` (1 if the job is gone) exceeds its pending or running runs —
    /// become `pending` with a lease until `lease_until`. Returns them, oldest fire first.
    async fn promote_buffered(&self, lease_until: DateTime<Utc>) -> StoreResult<Vec<Run>>;
    /// Unfinished runs (pending or running) whose lease has expired before `now` (or that have none), re-leased
    /// until `lease_until` in the same transaction so only one taker gets each. At start-up every unfinished run
    /// of a single-process store has an expired lease.
    async fn take_expired_runs(&self, now: DateTime<Utc>, lease_until: DateTime<Utc>) -> StoreResult<Vec<Run>>;
    /// Extend the leases of runs being delivered; the keys among them whose run was cancelled meanwhile (by another
    /// process's claim), so their delivery can be aborted.
    async fn extend_leases(&self, idempotency_keys: &[String], lease_until: DateTime<Utc>) -> StoreResult<Vec<String>>;
    /// A job's runs, newest scheduled time first; also after the job was removed.
    async fn list_runs(&self, job_id: &str, query: &RunQuery) -> StoreResult<Vec<Run>>;
    /// Delete finished runs as `prune` says (see `Prune`), at most `prune.limit` of them; the number deleted. With
    /// neither `finished_before` nor `keep_per_job` nothing is deleted.
    async fn prune_runs(&self, prune: &Prune) -> StoreResult<u64>;

    /// Make `write` and, in the same transaction, record `audit(job)` for each job it affected; the jobs it
    /// affected: the job as stored (`Add`, `Update`: a replaced job keeps its created_at), the jobs removed
    /// (`Remove`, `RemoveAll`; none when there was nothing to remove), or the run's job (`InsertRun`). Fails as the
    /// plain operation does (`Conflict`, `NotFound`), and then records nothing. Without `audit` it records nothing.
    async fn write_audited(&self, write: JobWrite<'_>, audit: Option<AuditEntryOf<'_>>) -> StoreResult<Vec<Job>>;
    /// Record entries of changes the store did not make itself (scheduler control, a change of several stores).
    async fn record_audit(&self, entries: &[AuditEntry]) -> StoreResult<()>;
    /// Audit entries, newest first (by time, then id), filtered; at most `query.limit`. Also of removed jobs.
    async fn list_audit(&self, query: &AuditQuery) -> StoreResult<Vec<AuditEntry>>;
    /// Delete audit entries older than `before`, at most `limit` of them; the number deleted.
    async fn prune_audit(&self, before: DateTime<Utc>, limit: usize) -> StoreResult<u64>;

    /// Create or replace a calendar (by id) and count the change in the calendar version, in one transaction.
    async fn put_calendar(&self, calendar: &Calendar) -> StoreResult<()>;
    /// The calendar with this id, if any.
    async fn get_calendar(&self, id: &str) -> StoreResult<Option<Calendar>>;
    /// Every calendar, by id.
    async fn list_calendars(&self) -> StoreResult<Vec<Calendar>>;
    /// Remove a calendar, counting the change in the calendar version; `true` if it existed.
    async fn remove_calendar(&self, id: &str) -> StoreResult<bool>;
    /// How many changes the calendars have seen: a different number means they changed since it was read.
    async fn calendar_version(&self) -> StoreResult<u64>;
    /// Every job whose trigger (or a child of it) names a calendar in `exclude_calendars`, by id.
    async fn jobs_with_calendars(&self) -> StoreResult<Vec<Job>>;

    /// Call `wake` whenever another process (a replica sharing the store) changes its jobs or its calendars, until
    /// `stop`. A store only this process writes to has nothing to watch: the default returns at once.
    async fn watch_changes(&self, stop: CancellationToken, wake: Arc<dyn Fn() + Send + Sync>) {
        let _ = (stop, wake);
    }

    /// Take the paused jobs whose `paused_until` is at or before `now`, clearing it in one conditional write, so
    /// that of replicas sharing the store exactly one takes each (and resumes it).
    async fn take_due_resumes(&self, now: DateTime<Utc>) -> StoreResult<Vec<Job>>;
    /// `earliest_next_run_time` and the earliest `paused_until` of a paused job (when the loop must look again),
    /// in one read: the loop asks after every round, and at a thousand fires a second each round trip to a
    /// database server shows in the fires' lateness.
    async fn earliest_times(&self) -> StoreResult<(Option<DateTime<Utc>>, Option<DateTime<Utc>>)>;
    /// Mark stale every active job with `stale_after_seconds` and no success for that long at `now` (counted from
    /// its last success, or from when it was added) that is not stale yet, returning them: a conditional write, so
    /// of replicas sharing the store one marks each, once per stale period (a success ends the period).
    /// Also answers the earliest time after `now` another watched job may become stale.
    async fn mark_stale(&self, now: DateTime<Utc>) -> StoreResult<(Vec<Job>, Option<DateTime<Utc>>)>;
    /// Insert a new backfill; `Conflict` if its id is taken.
    async fn create_backfill(&self, backfill: &Backfill) -> StoreResult<()>;
    /// The backfill with this id, with its runs counted from the ledger.
    async fn get_backfill(&self, id: &str) -> StoreResult<Option<Backfill>>;
    /// A job's backfills, newest first, with their runs counted.
    async fn list_backfills(&self, job_id: &str) -> StoreResult<Vec<Backfill>>;
    /// Cancel a running backfill (a finished one stays as it is); the backfill as it now is, `None` if unknown.
    async fn cancel_backfill(&self, id: &str) -> StoreResult<Option<Backfill>>;
    /// Running backfills whose next step is due at `now`, earliest first, at most `limit`.
    async fn due_backfills(&self, now: DateTime<Utc>, limit: usize) -> StoreResult<Vec<Backfill>>;
    /// In one transaction, apply `step` if the backfill is still running at the step's position (else `Lost`):
    /// with no run, mark it done; else wait (`Full`) while the job has `max_instances` runs pending or running,
    /// else insert the run unless its fire is in the ledger already (`Skipped`), and advance the backfill.
    async fn step_backfill(&self, step: &BackfillStep) -> StoreResult<StepOutcome>;

    /// Add notifications to the ledger, all or none.
    async fn insert_notifications(&self, notifications: &[crate::notify::ledger::Notification]) -> StoreResult<()>;
    /// Lease until `lease_until` at most `limit` notifications claimable at `now` (pending, due, not leased),
    /// earliest first, counting an attempt on each: two claimers, in one process or in replicas, never get the
    /// same notification while its lease holds.
    async fn claim_notifications(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: usize,
    ) -> StoreResult<Vec<crate::notify::ledger::Notification>>;
    /// Record how an attempt on notification `id` ended, releasing its lease; `false` when there is no such row.
    async fn finish_notification(&self, id: &str, finish: &crate::notify::ledger::Finish) -> StoreResult<bool>;
    /// The newest `limit` notifications about job `job_id`, newest first.
    async fn list_notifications(
        &self,
        job_id: &str,
        limit: usize,
    ) -> StoreResult<Vec<crate::notify::ledger::Notification>>;
    /// Release every notification's lease: a store only this process uses holds no lease of a live sender at
    /// start-up, so what a killed process was sending is sent again at once rather than after its lease.
    async fn release_notification_leases(&self) -> StoreResult<u64>;
    /// Delete at most `limit` finished (delivered or failed) notifications created before `before`; how many.
    async fn prune_notifications(&self, before: DateTime<Utc>, limit: usize) -> StoreResult<u64>;
    /// `[notify]`: the notifications of jobs without their own `notify` follow it. The writes that cause
    /// notifications (a run's outcome, an auto-pause, a stale mark, a missed fire) add them to the ledger in the
    /// same transaction.
    fn set_notify_default(&self, default: Option<crate::notify::NotifySpec>);
}

/// The embedded default store: a fresh machine runs with no database server.
pub const DEFAULT_SQLITE_URL: &str = "sqlite://./apsched.db";

/// The kind of job store.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum StoreType {
    /// In the server's memory: lost on restart.
    Memory,
    /// A SQLite file: one process.
    Sqlite,
    /// PostgreSQL: durable, and may be shared by replicas.
    Postgres,
}

impl StoreType {
    /// As configuration writes it.
    pub fn name(self) -> &'static str {
        match self {
            StoreType::Memory => "memory",
            StoreType::Sqlite => "sqlite",
            StoreType::Postgres => "postgres",
        }
    }
}

/// What a store url's scheme says. Only the scheme is ever shown: the rest of a PostgreSQL url may hold a password.
#[derive(Debug, PartialEq)]
enum UrlScheme<'a> {
    /// `sqlite:`, `postgres:` or `postgresql:`, as written.
    Store(StoreType, &'a str),
    Other(&'a str),
    /// A bare path such as `./apsched.db`.
    None,
}

fn url_scheme(url: &str) -> UrlScheme<'_> {
    let Some((scheme, _)) = url.split_once(':') else { return UrlScheme::None };
    let is_scheme = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    match scheme.to_ascii_lowercase().as_str() {
        "sqlite" => UrlScheme::Store(StoreType::Sqlite, scheme),
        "postgres" | "postgresql" => UrlScheme::Store(StoreType::Postgres, scheme),
        _ if is_scheme => UrlScheme::Other(scheme),
        _ => UrlScheme::None,
    }
}

/// One `[jobstores.<name>]` section. The url of a PostgreSQL store may hold a password; it is never put in an
/// error message (see `open`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StoreSettings {
    /// Inferred from `url` when absent (`sqlite:…`, `postgres:…`), else memory.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub store_type: Option<StoreType>,
    /// `sqlite://path` or `postgres://…`; required for those two kinds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Connections to PostgreSQL (default 10); other stores ignore it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool_size: Option<u32>,
}

impl StoreSettings {
    /// The embedded SQLite file `apsched.db` in the working directory. Its type is left to its url, so a url set in
    /// the environment or a file (`APSCHED_JOBSTORES__DEFAULT__URL=postgres://…`) picks the store it names.
    pub fn embedded() -> StoreSettings {
        StoreSettings { store_type: None, url: Some(DEFAULT_SQLITE_URL.to_string()), pool_size: None }
    }

    /// `type` when set, else the url's scheme, else (no url) memory.
    pub fn resolved_type(&self) -> StoreType {
        self.store_type.unwrap_or(match self.url.as_deref().map(url_scheme) {
            Some(UrlScheme::Store(kind, _)) => kind,
            _ => StoreType::Memory,
        })
    }

    /// An error is the key at fault (`type`, `url`, `pool_size`) and what is wrong with it. A memory store keeps
    /// nothing anywhere, so it ignores a url (the embedded default's, when only `type = "memory"` is set).
    pub fn validate(&self) -> Result<(), (String, String)> {
        let url = self.url.as_deref().filter(|url| !url.is_empty());
        match (self.store_type, url.map(url_scheme)) {
            (Some(StoreType::Memory), _) | (_, None) => {}
            (Some(kind), Some(UrlScheme::Store(scheme_kind, scheme))) if kind != scheme_kind => {
                return Err((
                    "type".into(),
                    format!(
                        "{:?} contradicts the url's scheme {scheme:?}: remove type (it follows the url) or make \
                         them agree",
                        kind.name()
                    ),
                ));
            }
            (None, Some(UrlScheme::Other(scheme))) => {
                return Err((
                    "url".into(),
                    format!(
                        "the scheme {scheme:?} names no store: write sqlite://PATH or postgres://USER@HOST/DATABASE, \
                         or set type"
                    ),
                ));
            }
            (None, Some(UrlScheme::None)) => {
                return Err((
                    "url".into(),
                    "has no scheme: write sqlite://PATH or postgres://USER@HOST/DATABASE, or set type".into(),
                ));
            }
            _ => {}
        }
        let needs_url = matches!(self.resolved_type(), StoreType::Sqlite | StoreType::Postgres);
        if needs_url && url.is_none() {
            return Err(("url".into(), "is required for sqlite and postgres stores".into()));
        }
        if self.pool_size == Some(0) {
            return Err(("pool_size".into(), "must be at least 1".into()));
        }
        Ok(())
    }

    /// The stores of an unconfigured service: `default`, the embedded SQLite file.
    pub fn default_stores() -> BTreeMap<String, StoreSettings> {
        BTreeMap::from([("default".to_string(), StoreSettings::embedded())])
    }

    /// The named stores as a whole; an error's key is `<name>.<key>`, or empty when it is about the whole set.
    pub fn validate_stores(stores: &BTreeMap<String, StoreSettings>) -> Result<(), (String, String)> {
        if stores.is_empty() {
            return Err((String::new(), "at least one job store is needed".into()));
        }
        for (name, store) in stores {
            store.validate().map_err(|(key, message)| (format!("{name}.{key}"), message))?;
        }
        Ok(())
    }
}

/// Open a configured store (running its migrations). An error names the store, the file or the server (never a
/// password) and what to check.
pub async fn open(name: &str, settings: &StoreSettings) -> anyhow::Result<Arc<dyn JobStore>> {
    Ok(match settings.resolved_type() {
        StoreType::Memory => Arc::new(memory::MemoryStore::new()),
        StoreType::Sqlite => {
            let url = settings.url.as_deref().unwrap_or(DEFAULT_SQLITE_URL);
            Arc::new(sqlite::SqliteStore::connect(url).await.map_err(|err| {
                anyhow::anyhow!(
                    "job store {name:?}: cannot open the SQLite file {file:?} ({url}): {cause}; check that its \
                     directory exists and is writable by this user",
                    file = sqlite_file(url),
                    cause = cause(&err)
                )
            })?)
        }
        StoreType::Postgres => {
            let url = settings.url.as_deref().ok_or_else(|| anyhow::anyhow!("job store {name:?}: url is required"))?;
            let pool_size = settings.pool_size.unwrap_or(postgres::DEFAULT_POOL_SIZE);
            Arc::new(postgres::PostgresStore::connect(url, pool_size).await.map_err(|err| {
                anyhow::anyhow!(
                    "job store {name:?}: cannot use PostgreSQL at {server}: {cause}; check that the server runs and \
                     accepts connections from here, and the url's user, password and database",
                    server = postgres_server(url),
                    cause = cause(&err)
                )
            })?)
        }
    })
}

/// The file a SQLite url names, as the person who wrote it would recognise it.
fn sqlite_file(url: &str) -> &str {
    let path = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")).unwrap_or(url);
    path.split_once('?').map_or(path, |(path, _)| path)
}

/// `host:port, database "name"` of a PostgreSQL url: where it points, without its user or password.
fn postgres_server(url: &str) -> String {
    match url.parse::<sqlx::postgres::PgConnectOptions>() {
        Ok(options) => {
            let database = options.get_database().map(|database| format!(", database {database:?}"));
            format!("{}:{}{}", options.get_host(), options.get_port(), database.unwrap_or_default())
        }
        Err(_) => "a url that does not parse".to_string(),
    }
}

/// A store error's own message, without the kind's prefix the caller's sentence already says.
fn cause(err: &StoreError) -> String {
    match err {
        StoreError::Unavailable(message) => message.clone(),
        other => other.to_string(),
    }
}

/// The memory store: jobs and runs live in this process and end with it (APScheduler's MemoryJobStore).
pub type Memory = memory::MemoryStore;
/// The SQLite store, the embedded default: one file, one process.
pub type Sqlite = sqlite::SqliteStore;
/// The PostgreSQL store: for production and for replicas sharing one database.
pub type Postgres = postgres::PostgresStore;

impl sqlite::SqliteStore {
    /// Open the SQLite file at `path`, creating it if missing, and bring its schema up to date.
    pub async fn open(path: impl AsRef<std::path::Path>) -> StoreResult<sqlite::SqliteStore> {
        sqlite::SqliteStore::connect(&format!("sqlite://{}", path.as_ref().display())).await
    }
}

#[cfg(test)]
mod settings_tests {
    use super::*;

    fn store(store_type: Option<StoreType>, url: Option<&str>) -> StoreSettings {
        StoreSettings { store_type, url: url.map(str::to_string), pool_size: None }
    }

    #[test]
    fn the_type_follows_the_urls_scheme_unless_set() {
        assert_eq!(StoreSettings::embedded().resolved_type(), StoreType::Sqlite);
        let from_env =
            StoreSettings { url: Some("postgres://apsched@db:5432/apsched".into()), ..StoreSettings::embedded() };
        assert_eq!(from_env.resolved_type(), StoreType::Postgres);
        assert_eq!(from_env.validate(), Ok(()));
        assert_eq!(store(None, Some("postgresql://db/apsched")).resolved_type(), StoreType::Postgres);
        assert_eq!(store(None, Some("sqlite::memory:")).resolved_type(), StoreType::Sqlite);
        assert_eq!(store(None, None).resolved_type(), StoreType::Memory);
        // A memory store keeps nothing anywhere: the embedded default's url does not contradict it.
        let memory = StoreSettings { store_type: Some(StoreType::Memory), ..StoreSettings::embedded() };
        assert_eq!((memory.resolved_type(), memory.validate()), (StoreType::Memory, Ok(())));
        // A bare path is a SQLite file when the type says so.
        assert_eq!(store(Some(StoreType::Sqlite), Some("./jobs.db")).validate(), Ok(()));
    }

    #[test]
    fn a_type_that_contradicts_the_urls_scheme_names_both() {
        let (key, message) =
            store(Some(StoreType::Sqlite), Some("postgres://apsched:s3cret@db:5432/apsched")).validate().unwrap_err();
        assert_eq!(key, "type");
        assert!(message.starts_with(r#""sqlite" contradicts the url's scheme "postgres""#), "{message}");
        assert!(!message.contains("s3cret"), "{message}");
        let (key, message) = store(Some(StoreType::Postgres), Some("sqlite://./apsched.db")).validate().unwrap_err();
        assert_eq!(key, "type");
        assert!(message.starts_with(r#""postgres" contradicts the url's scheme "sqlite""#), "{message}");
    }

    #[test]
    fn a_url_that_names_no_store_is_refused_without_a_type() {
        let (key, message) = store(None, Some("mysql://root:s3cret@db/apsched")).validate().unwrap_err();
        assert_eq!(key, "url");
        assert!(message.contains(r#""mysql""#) && !message.contains("s3cret"), "{message}");
        let (key, message) = store(None, Some("./apsched.db")).validate().unwrap_err();
        assert_eq!((key.as_str(), message.contains("no scheme")), ("url", true), "{message}");
    }

    #[test]
    fn errors_name_the_file_or_the_server_never_the_password() {
        assert_eq!(sqlite_file("sqlite://./data/apsched.db?mode=rwc"), "./data/apsched.db");
        assert_eq!(sqlite_file("sqlite:jobs.db"), "jobs.db");
        assert_eq!(
            postgres_server("postgres://apsched:s3cret@db.internal:5433/jobs?options[search_path]=apsched"),
            r#"db.internal:5433, database "jobs""#
        );
    }

    #[tokio::test]
    async fn a_sqlite_file_that_cannot_be_opened_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("missing-directory").join("apsched.db");
        let settings = store(None, Some(&format!("sqlite://{}", file.display())));
        let err = open("default", &settings).await.err().expect("a file in a missing directory cannot be opened");
        let message = format!("{err:#}");
        assert!(
            message.starts_with(&format!(
                "job store \"default\": cannot open the SQLite file {:?}",
                file.display().to_string()
            )),
            "{message}"
        );
    }

    #[tokio::test]
    async fn a_postgres_server_that_cannot_be_reached_is_named_without_the_password() {
        // Port 1 on loopback: nothing listens there, so the connection is refused at once.
        let settings = store(None, Some("postgres://apsched:s3cret-password@127.0.0.1:1/jobs"));
        let err = open("main", &settings).await.err().expect("nothing listens on port 1");
        let message = format!("{err:#}");
        assert!(
            message.starts_with(r#"job store "main": cannot use PostgreSQL at 127.0.0.1:1, database "jobs""#),
            "{message}"
        );
        assert!(!message.contains("s3cret-password"), "{message}");
    }
}
