//! The scheduler: one loop per process that sleeps until the earliest next run time across the job stores (or
//! until woken by a change), claims what is due through the run ledger, and hands each fire to its executor's
//! pool, where the delivery component makes the attempts and the scheduler records their outcomes. `tick` is
//! one round; `run` is the loop. Deliveries run apart from the loop (a retry never holds up a fire); a background
//! task prunes the run history. Job operations are in `jobs`; building a scheduler in `builder`.

mod audit;
pub mod backfill;
pub mod builder;
pub mod calendars;
pub mod capacity;
pub mod clock;
pub mod error;
pub mod events;
mod health;
pub mod jobs;
pub mod plan;
pub mod settings;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::Serialize;
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use utoipa::ToSchema;

use crate::backoff::Backoff;
use crate::delivery::{Delivery, Functions, Next};
use crate::executor::Executors;
use crate::job::{JobDefaults, Run, RunStatus};
use crate::metrics::Metrics;
use crate::store::{JobStore, Prune, StoreError, StoreResult};
pub use audit::Acting;
pub use builder::SchedulerBuilder;
use capacity::Capacity;
use clock::Clock;
pub use error::{Error, Result};
use events::{EVENT_BUFFER, Event, EventBus, EventKind, Subject};
pub use jobs::{JobChanges, JobFilter, JobSpec};
use plan::RulesPlanner;
use settings::RunsConfig;

/// Due jobs claimed per store in one transaction: large enough for a burst, small enough to keep the transaction
/// (and the lock it holds) short. A full batch makes the loop go round again at once.
pub const CLAIM_BATCH: usize = 500;
/// The claim out of an idle loop: a burst's first deliveries start after a claim of this many, not of a whole
/// batch (about 30 ms on PostgreSQL, with one core idle meanwhile); each claim after it takes twice the runs in
/// hand, up to `CLAIM_BATCH`.
pub const FIRST_CLAIM: usize = 64;
/// Claimed runs this process holds at most (waiting for a worker, being called, or being recorded) before the loop
/// claims more: a burst larger than the workers can take stays in the store, where other replicas can claim it,
/// instead of in this process's memory (a 100 000-job burst held 600 MiB). Runs waiting for their jitter, a
/// target's rate limit or a retry are not counted: they never hold up other jobs.
pub const MAX_BACKLOG: usize = 4 * CLAIM_BATCH;
/// While the backlog is full, the loop waits for it to drain; this bounds the wait should a wake-up be lost.
const BACKLOG_SAFETY_WAKE: Duration = Duration::from_secs(1);
/// With nothing due the loop still wakes this often, a safety net should a wake-up ever be lost.
const IDLE_SAFETY_WAKE: Duration = Duration::from_secs(300);
/// Backoff while a store is unreachable: start fast to ride out a blip, cap so an outage costs little.
const STORE_RETRY: Backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
/// A run's record is retried sooner than a claim: claims of its store wait for it (`StoreEntry::unrecorded`).
const RECORD_RETRY: Backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(1));
/// A run whose lease is older than any process could hold it: what start-up uses to take over everything an
/// exclusive store (memory, SQLite) left unfinished.
const EXCLUSIVE_TAKEOVER: chrono::TimeDelta = chrono::TimeDelta::days(365 * 100);
/// A call that has not answered within this is recorded as `running` while it goes on; a quicker one is recorded
/// once, with its outcome.
const SHOW_RUNNING_AFTER: Duration = Duration::from_millis(200);
/// Runs deleted per prune call: keeps each transaction (and SQLite's write lock) short so claims are not held up.
const PRUNE_BATCH: usize = 1000;

/// APScheduler's scheduler states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SchedulerState {
    /// Firing jobs.
    Running,
    /// Started, but firing nothing until resumed; jobs can still be added and changed.
    Paused,
    /// Not started yet, or shut down.
    Stopped,
}

/// A run counted in the scheduler's backlog until dropped, when its delivery ends (recorded, cancelled, stopping).
struct Backlogged(Arc<Scheduler>);

impl Backlogged {
    fn enter(scheduler: Arc<Scheduler>) -> Backlogged {
        scheduler.backlog.fetch_add(1, Ordering::SeqCst);
        Backlogged(scheduler)
    }
}

impl Drop for Backlogged {
    fn drop(&mut self) {
        self.0.backlog.fetch_sub(1, Ordering::SeqCst);
        self.0.backlog_drained();
    }
}

/// A backlogged run waiting of its own accord (its jitter, a target's rate limit, a retry's backoff): not counted
/// against `MAX_BACKLOG` until dropped.
struct Excused<'a>(&'a Scheduler);

impl Excused<'_> {
    fn new(scheduler: &Scheduler) -> Excused<'_> {
        scheduler.excused.fetch_add(1, Ordering::SeqCst);
        scheduler.backlog_drained();
        Excused(scheduler)
    }
}

impl Drop for Excused<'_> {
    fn drop(&mut self) {
        self.0.excused.fetch_sub(1, Ordering::SeqCst);
    }
}

/// What one round of the loop (`tick`) did.
#[derive(Debug, Default)]
pub struct Tick {
    /// Fires claimed and handed to the executors for delivery.
    pub submitted: usize,
    /// Fires recorded `missed` (later than misfire_grace_time).
    pub missed: usize,
    /// Fires recorded `skipped` (max_instances reached).
    pub skipped: usize,
    /// Fires recorded `coalesced` into a later one.
    pub coalesced: usize,
    /// Fires recorded `buffered`, to be delivered when a run of their job ends (`overlap`).
    pub buffered: usize,
    /// Runs cancelled to start newer fires (`overlap: cancel_other`).
    pub cancelled: usize,
    /// Jobs removed because their trigger has no further fire time.
    pub finished_jobs: Vec<String>,
    /// A store had more due than one batch: the loop goes round again at once.
    pub more: bool,
    /// Stores whose claim failed, with the error; the other stores were claimed regardless.
    pub failed_stores: Vec<(String, StoreError)>,
    /// A store was not claimed: this process is still recording runs there (see `StoreEntry::unrecorded`).
    pub waiting_for_records: bool,
    /// Claims stopped at `MAX_BACKLOG`: the loop goes round again once fires in hand have finished.
    pub held_for_backlog: bool,
    /// The earliest time a job watching for staleness (`stale_after_seconds`) may become stale: the loop looks
    /// again then.
    pub next_stale_check: Option<DateTime<Utc>>,
}

/// The health sweeps (resuming jobs paused until now, marking stale ones) run at most this often, besides when one
/// is known to be due: during a burst the loop goes round many times a second, and each sweep is a query (a write,
/// on SQLite) per store.
const HEALTH_SWEEP_PERIOD: chrono::TimeDelta = chrono::TimeDelta::seconds(1);

/// When the health sweeps last ran and what they know is due next.
#[derive(Debug, Default)]
struct HealthSweeps {
    last: Option<DateTime<Utc>>,
    /// The earliest time a watched job may turn stale, as the last sweep found it.
    next_stale: Option<DateTime<Utc>>,
    /// The earliest `paused_until`, as the loop last read it.
    next_resume: Option<DateTime<Utc>>,
}

impl HealthSweeps {
    fn due(&self, now: DateTime<Utc>) -> bool {
        self.last.is_none_or(|last| now - last >= HEALTH_SWEEP_PERIOD)
            || self.next_stale.is_some_and(|at| at <= now)
            || self.next_resume.is_some_and(|at| at <= now)
    }

    /// When the loop should look again for health's sake: the next known stale time, and, after a round that
    /// skipped the sweeps, the end of the period (a job added meanwhile may be watched).
    fn next_look(&self, swept: bool) -> Option<DateTime<Utc>> {
        let period_end = if swept { None } else { self.last.map(|last| last + HEALTH_SWEEP_PERIOD) };
        [self.next_stale, period_end].into_iter().flatten().min()
    }
}

/// A named job store and whether this process is its only user.
struct StoreEntry {
    store: Arc<dyn JobStore>,
    /// Memory and SQLite stores belong to one process, so at start-up everything they left unfinished is this
    /// process's to finish; a shared store waits for leases to expire.
    exclusive: bool,
    /// Runs of this store whose record this process is still retrying (the store was unreachable). Claims wait
    /// for them: the ledger would count a finished call as still running, and `max_instances` would skip the
    /// fires that fell due meanwhile.
    unrecorded: AtomicUsize,
}

/// The scheduler: job stores, executors, the loop that fires jobs, and the job operations (`add_job`,
/// `pause_job`, …). Built with [`Scheduler::builder`]; run in the background with [`Scheduler::start`] or in the
/// foreground with [`Scheduler::run_until`].
pub struct Scheduler {
    /// The zone of triggers that name none.
    pub default_tz: Tz,
    stores: BTreeMap<String, StoreEntry>,
    /// Where jobs that name no store go.
    default_jobstore: String,
    /// The delivery pools.
    pub executors: Executors,
    clock: Arc<dyn Clock>,
    delivery: Delivery,
    /// Options of jobs that do not set them.
    pub job_defaults: JobDefaults,
    lease_seconds: u64,
    retention: RunsConfig,
    audit_settings: crate::audit::AuditSettings,
    capacity: Capacity,
    /// Set once the loop has been started; a scheduler starts once.
    started: AtomicBool,
    wake: Notify,
    /// When the loop will next read the stores of its own accord; `None` while it is reading them (or paused, or
    /// riding out an error), when any change must wake it. Lets an add due after that time skip the wake-up.
    next_look: Mutex<Option<DateTime<Utc>>>,
    /// When the health sweeps last ran, and when one is due next.
    health_sweeps: Mutex<HealthSweeps>,
    state: watch::Sender<SchedulerState>,
    /// Stops the loop and lease upkeep; deliveries in flight go on.
    stop_firing: CancellationToken,
    deliveries: TaskTracker,
    /// Runs being delivered, by idempotency key → store name, whose leases this process extends, and the token
    /// that aborts the delivery when the run is cancelled.
    in_flight: Mutex<HashMap<String, (String, CancellationToken)>>,
    /// Runs handed to delivery and not yet finished (`MAX_BACKLOG`), of them those waiting of their own accord
    /// (jitter, rate limit, retry), and whether the loop waits for the backlog to drain.
    backlog: AtomicUsize,
    excused: AtomicUsize,
    held_for_backlog: AtomicBool,
    /// Jobs seen with `overlap: buffer_one` or `buffer_all`: when one of their runs ends, buffered fires may go.
    buffering_jobs: Mutex<HashSet<String>>,
    /// What templated actions of claimed fires see of their job, by idempotency key, until delivered (see
    /// `template_job`).
    template_jobs: Mutex<HashMap<String, crate::action::template::JobVars>>,
    /// The scheduler's events, as APScheduler's listeners get them.
    pub events: EventBus,
    /// Counters and histograms for `/metrics`.
    pub metrics: Arc<Metrics>,
    /// The calendars triggers exclude, compiled.
    calendars: calendars::Calendars,
    /// `[notify]`: where notifications of jobs without their own `notify` go.
    notify_default: Option<crate::notify::NotifySpec>,
}

impl Scheduler {
    /// Configure a scheduler: `Scheduler::builder().jobstore(…).executor(…).build().await`.
    pub fn builder() -> SchedulerBuilder {
        SchedulerBuilder::default()
    }

    fn from_parts(parts: SchedulerBuilder) -> anyhow::Result<Arc<Scheduler>> {
        let metrics = Arc::new(Metrics::default());
        let delivery = Delivery::new(&parts.webhooks, Functions::default(), metrics.clone())
            .map_err(|(key, message)| anyhow::anyhow!("configuration: webhooks.{key}: {message}"))?;
        let default_jobstore = if parts.stores.iter().any(|(name, _)| name == "default") {
            "default".to_string()
        } else {
            parts.stores[0].0.clone()
        };
        let stores = (parts.stores.into_iter())
            .map(|(name, store)| {
                // Memory and SQLite stores belong to one process; PostgreSQL is shared by replicas.
                let exclusive = store.kind() != crate::store::StoreType::Postgres;
                (name, StoreEntry { store, exclusive, unrecorded: Default::default() })
            })
            .collect();
        let (state, _) = watch::channel(SchedulerState::Stopped);
        Ok(Arc::new(Scheduler {
            default_tz: parts.timezone,
            stores,
            default_jobstore,
            executors: Executors::with_sizes(&parts.executors),
            clock: parts.clock,
            delivery,
            job_defaults: parts.job_defaults,
            lease_seconds: parts.lease_seconds,
            retention: parts.runs,
            audit_settings: parts.audit,
            capacity: Capacity::new(parts.max_jobs_per_store),
            started: AtomicBool::new(false),
            wake: Notify::new(),
            next_look: Mutex::new(None),
            health_sweeps: Mutex::new(HealthSweeps::default()),
            state,
            stop_firing: CancellationToken::new(),
            deliveries: TaskTracker::new(),
            in_flight: Mutex::new(HashMap::new()),
            backlog: AtomicUsize::new(0),
            excused: AtomicUsize::new(0),
            held_for_backlog: AtomicBool::new(false),
            buffering_jobs: Mutex::new(HashSet::new()),
            template_jobs: Mutex::new(HashMap::new()),
            events: EventBus::new(EVENT_BUFFER),
            metrics,
            calendars: calendars::Calendars::default(),
            notify_default: parts.notify,
        }))
    }

    /// Now, by the scheduler's clock.
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// Running, paused or stopped.
    pub fn state(&self) -> SchedulerState {
        *self.state.borrow()
    }

    /// The job store named `name`.
    pub fn store(&self, name: &str) -> Option<&Arc<dyn JobStore>> {
        self.stores.get(name).map(|entry| &entry.store)
    }

    /// Every job store, by name.
    pub fn stores(&self) -> impl Iterator<Item = (&String, &Arc<dyn JobStore>)> {
        self.stores.iter().map(|(name, entry)| (name, &entry.store))
    }

    /// Where jobs that name no store go: `default`, or the first store configured.
    pub fn default_jobstore(&self) -> &str {
        &self.default_jobstore
    }

    /// Receive the scheduler's events from now on (a receiver more than a thousand events behind loses the
    /// oldest and is told how many).
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    /// A job was added or changed: recompute when to wake.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// A job was added with this next run time: wake the loop only if it would otherwise look later than that.
    /// At a few thousand adds a second, each wake-up was two reads of the store for nothing.
    pub fn wake_for(&self, next_run_time: Option<DateTime<Utc>>) {
        let Some(next_run_time) = next_run_time else { return };
        let looking_by_then =
            self.next_look.lock().unwrap_or_else(|p| p.into_inner()).is_some_and(|at| at <= next_run_time);
        if !looking_by_then {
            self.wake();
        }
    }

    fn set_next_look(&self, at: Option<DateTime<Utc>>) {
        *self.next_look.lock().unwrap_or_else(|p| p.into_inner()) = at;
    }

    /// Publish an event stamped with the scheduler's clock.
    pub fn publish(&self, kind: EventKind, subject: Subject) {
        self.events.publish(kind, self.clock.now(), subject);
    }

    /// Stop firing jobs until `resume`; jobs can still be added and changed.
    pub fn pause(&self) {
        let changed = self.state.send_if_modified(|state| {
            let change = *state == SchedulerState::Running;
            if change {
                *state = SchedulerState::Paused;
            }
            change
        });
        if changed {
            self.publish(EventKind::SchedulerPaused, Subject::Scheduler);
        }
        self.wake();
    }

    /// Fire jobs again after `pause`.
    pub fn resume(&self) {
        let changed = self.state.send_if_modified(|state| {
            let change = *state == SchedulerState::Paused;
            if change {
                *state = SchedulerState::Running;
            }
            change
        });
        if changed {
            self.publish(EventKind::SchedulerResumed, Subject::Scheduler);
        }
        self.wake();
    }

    /// Stop firing; with `wait`, return once every delivery in flight has finished. Runs not yet delivered stay in
    /// the ledger and are delivered at the next start; so do runs waiting for a retry, which stop waiting.
    pub async fn shutdown(&self, wait: bool) {
        if self.state.send_replace(SchedulerState::Stopped) != SchedulerState::Stopped {
            self.publish(EventKind::SchedulerShutdown, Subject::Scheduler);
        }
        self.stop_firing.cancel();
        self.deliveries.close();
        if wait {
            self.deliveries.wait().await;
        }
    }

    /// Start firing in the background (APScheduler's BackgroundScheduler): the loop, lease upkeep and pruning run
    /// on the Tokio runtime; the handle ends once the scheduler is shut down. A scheduler starts once: starting it
    /// again, or after `shutdown`, returns a handle that is already done.
    pub fn start(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        if self.started.swap(true, Ordering::SeqCst) || self.stop_firing.is_cancelled() {
            tracing::warn!("the scheduler was started before; starting it again does nothing");
            return tokio::spawn(async {});
        }
        self.state.send_if_modified(|state| {
            let starting = *state == SchedulerState::Stopped;
            if starting {
                *state = SchedulerState::Running;
            }
            starting
        });
        let scheduler = self.clone();
        tokio::spawn(async move { scheduler.run().await })
    }

    /// Fire jobs in the foreground until `until` completes (APScheduler's BlockingScheduler), then shut down,
    /// waiting for the deliveries in flight.
    pub async fn run_until(self: &Arc<Self>, until: impl std::future::Future<Output = ()>) {
        let running = self.start();
        until.await;
        self.shutdown(true).await;
        let _ = running.await;
    }

    async fn run(self: Arc<Self>) {
        self.publish(EventKind::SchedulerStarted, Subject::Scheduler);
        // Replicas sharing a store wake this loop when they change its jobs.
        let watchers: Vec<_> = (self.stores.values())
            .map(|entry| {
                let (store, stop, scheduler) = (entry.store.clone(), self.stop_firing.clone(), self.clone());
                // A replica's change may be to the calendars: read their version again before planning.
                let wake = move || {
                    scheduler.calendars.mark_stale();
                    scheduler.wake();
                };
                tokio::spawn(async move { store.watch_changes(stop, Arc::new(wake)).await })
            })
            .collect();
        self.recover_unfinished(true).await;
        let upkeep = {
            let scheduler = self.clone();
            tokio::spawn(async move { scheduler.lease_upkeep().await })
        };
        let pruner = {
            let scheduler = self.clone();
            tokio::spawn(async move { scheduler.prune_periodically().await })
        };
        let backfills = tokio::spawn(self.clone().run_backfills());
        // Each store's notifications ledger is sent by its own task: a slow alert target never delays a fire.
        let notifiers: Vec<_> = (self.stores.values())
            .map(|entry| {
                crate::notify::notifier::Notifier {
                    store: entry.store.clone(),
                    default: self.notify_default.clone(),
                    policy: self.delivery.shared_policy(),
                    client: self.delivery.http_client(),
                    metrics: self.metrics.clone(),
                    clock: self.clock.clone(),
                    exclusive: entry.exclusive,
                }
                .spawn(self.stop_firing.clone())
            })
            .collect();
        let mut backoff = STORE_RETRY;
        loop {
            // Before anything is read, so a change committed while the loop reads still wakes it.
            self.set_next_look(None);
            let notified = self.wake.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.stop_firing.is_cancelled() {
                break;
            }
            if self.state() == SchedulerState::Paused {
                // The API's checks use the calendars even while nothing fires.
                if let Err(err) = self.refresh_calendars(false).await {
                    tracing::warn!(error = %err, "cannot read the calendars; keeping the ones read before");
                }
                tokio::select! {
                    _ = notified => {}
                    _ = self.stop_firing.cancelled() => {}
                }
                continue;
            }
            let tick = self.tick(self.clock.now()).await;
            let next_stale_check = tick.next_stale_check;
            let sleep_for = match tick.failed_stores.into_iter().next() {
                None if tick.more => continue,
                // Woken as the fires in hand finish.
                None if tick.held_for_backlog => BACKLOG_SAFETY_WAKE,
                // Woken when the records are written; the backoff only paces the other stores meanwhile.
                None if tick.waiting_for_records => backoff.next_wait(),
                None => match self.earliest_next_run_time().await {
                    Ok(next) => {
                        let next = next.into_iter().chain(next_stale_check).min();
                        backoff.reset();
                        let now = self.clock.now();
                        let sleep_for = next.map_or(IDLE_SAFETY_WAKE, |next| {
                            (next - now).to_std().unwrap_or(Duration::ZERO).min(IDLE_SAFETY_WAKE)
                        });
                        self.set_next_look(chrono::TimeDelta::from_std(sleep_for).ok().map(|delta| now + delta));
                        sleep_for
                    }
                    Err(err) => {
                        let retry_in = backoff.next_wait();
                        tracing::warn!(error = %err, ?retry_in, "cannot read the next run time");
                        retry_in
                    }
                },
                // One store down must not stop the others from firing; it is retried with a backoff.
                Some((store, err)) => {
                    let retry_in = backoff.next_wait();
                    tracing::warn!(%store, error = %err, ?retry_in, "claiming due jobs failed");
                    retry_in
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(sleep_for) => {}
                _ = notified => {}
                _ = self.stop_firing.cancelled() => {}
            }
        }
        upkeep.abort();
        backfills.abort();
        notifiers.iter().for_each(tokio::task::JoinHandle::abort);
        // The pruner stops at its next await once firing stops; a batch in progress finishes first.
        let _ = pruner.await;
        watchers.iter().for_each(tokio::task::JoinHandle::abort);
    }

    /// One round: claim what is due at `now` in every store and hand it to the executors. A store that fails is
    /// reported in the result while the others are claimed regardless.
    pub async fn tick(self: &Arc<Self>, now: DateTime<Utc>) -> Tick {
        let lease_until = now + self.lease();
        let mut tick = Tick::default();
        let calendars = match self.refresh_calendars(false).await {
            Ok(calendars) => calendars,
            Err(err) => {
                tracing::warn!(error = %err, "cannot read the calendars; planning with the ones read before");
                self.calendar_set()
            }
        };
        let sweep = self.health_sweeps.lock().unwrap_or_else(|p| p.into_inner()).due(now);
        let mut next_stale: Option<DateTime<Utc>> = None;
        for (name, entry) in &self.stores {
            if sweep {
                self.resume_due(entry.store.as_ref(), now).await;
                if let Some(next) = self.sweep_stale(entry.store.as_ref(), now).await {
                    next_stale = Some(next_stale.map_or(next, |earlier| earlier.min(next)));
                }
            }
            if entry.unrecorded.load(Ordering::Acquire) > 0 {
                tick.waiting_for_records = true;
                continue;
            }
            let limit = self.claim_room();
            if limit == 0 {
                tick.held_for_backlog = true;
                continue;
            }
            let planner = RulesPlanner::with_calendars(self.default_tz, calendars.clone());
            let claiming = std::time::Instant::now();
            let runs = match entry.store.claim_due(now, limit, lease_until, &planner).await {
                Ok(runs) => runs,
                Err(err) => {
                    tick.failed_stores.push((name.clone(), err));
                    continue;
                }
            };
            tracing::debug!(store = %name, runs = runs.len(), took = ?claiming.elapsed(), "claimed");
            tick.more |= runs.len() >= limit;
            // Published only now, after the claim committed: what the planner decided is then the ledger's.
            let (to_deliver, recorded): (Vec<Run>, Vec<Run>) =
                runs.into_iter().partition(|run| run.status.is_unfinished());
            // Runs the claim cancelled to start newer fires: abort their calls here; elsewhere, lease upkeep does.
            self.abort_deliveries(
                recorded
                    .iter()
                    .filter(|run| run.status == RunStatus::Cancelled)
                    .map(|run| run.idempotency_key.as_str()),
            );
            self.buffering_jobs.lock().unwrap_or_else(|p| p.into_inner()).extend(planner.take_buffering());
            for run in recorded {
                self.metrics.fire(run.status);
                let kind = match run.status {
                    RunStatus::Buffered => {
                        tick.buffered += 1;
                        continue;
                    }
                    RunStatus::Cancelled => {
                        tick.cancelled += 1;
                        continue;
                    }
                    RunStatus::Missed => {
                        tick.missed += 1;
                        EventKind::JobMissed
                    }
                    RunStatus::Skipped => {
                        tick.skipped += 1;
                        EventKind::JobMaxInstances
                    }
                    // A coalesced fire ran as part of a later one; APScheduler reports nothing for it.
                    _ => {
                        tick.coalesced += 1;
                        continue;
                    }
                };
                self.publish(kind, Subject::Run { run: Arc::new(run), jobstore: name.clone() });
            }
            tick.submitted += to_deliver.len();
            if planner.missed_a_calendar() {
                self.calendars.mark_stale();
            }
            self.template_jobs.lock().unwrap_or_else(|p| p.into_inner()).extend(planner.take_template_jobs());
            let mut jitter = planner.take_jitter();
            for chain in chains(to_deliver) {
                chain.iter().for_each(|run| self.metrics.fire(run.status));
                let delays = chain.iter().map(|run| jitter.remove(&run.idempotency_key)).collect();
                self.submit(name, entry.store.clone(), chain, delays);
            }
            for job_id in planner.take_finished() {
                let subject = Subject::RemovedJob { job_id: job_id.clone(), jobstore: name.clone() };
                self.publish(EventKind::JobRemoved, subject);
                tick.finished_jobs.push(job_id);
            }
            // Fires buffered behind runs that have ended meanwhile (here or on another replica), or just now behind
            // none: one read when there are none.
            tick.submitted += self.promote_buffered(name, &entry.store).await;
        }
        let mut sweeps = self.health_sweeps.lock().unwrap_or_else(|p| p.into_inner());
        if sweep {
            sweeps.last = Some(now);
            sweeps.next_stale = next_stale;
        }
        tick.next_stale_check = sweeps.next_look(sweep);
        tick
    }

    async fn earliest_next_run_time(&self) -> StoreResult<Option<DateTime<Utc>>> {
        let mut earliest: Option<DateTime<Utc>> = None;
        let mut resume: Option<DateTime<Utc>> = None;
        for entry in self.stores.values() {
            let (next_run_time, paused_until) = entry.store.earliest_times().await?;
            if let Some(t) = next_run_time {
                earliest = Some(earliest.map_or(t, |e| e.min(t)));
            }
            if let Some(t) = paused_until {
                earliest = Some(earliest.map_or(t, |e| e.min(t)));
                resume = Some(resume.map_or(t, |e: DateTime<Utc>| e.min(t)));
            }
        }
        self.health_sweeps.lock().unwrap_or_else(|p| p.into_inner()).next_resume = resume;
        Ok(earliest)
    }

    fn lease(&self) -> chrono::TimeDelta {
        chrono::TimeDelta::seconds(i64::try_from(self.lease_seconds).unwrap_or(i64::MAX))
    }

    /// Deliver again what a previous process (or a replica whose lease expired) left pending or running, with the
    /// same idempotency key.
    async fn recover_unfinished(self: &Arc<Self>, at_start: bool) {
        let now = self.clock.now();
        for (name, entry) in &self.stores {
            let expired_before = if at_start && entry.exclusive { now + EXCLUSIVE_TAKEOVER } else { now };
            match entry.store.take_expired_runs(expired_before, now + self.lease()).await {
                Ok(runs) => {
                    for chain in chains(runs) {
                        tracing::info!(job_id = %chain[0].job_id, fires = chain.len(), "delivering unfinished fires again");
                        let delays = vec![None; chain.len()];
                        self.submit(name, entry.store.clone(), chain, delays);
                    }
                }
                Err(err) => tracing::warn!(store = %name, error = %err, "cannot read unfinished runs"),
            }
        }
    }

    /// Keep the leases of this process's deliveries fresh and take over fires whose leases expired elsewhere.
    async fn lease_upkeep(self: Arc<Self>) {
        let period = (self.lease() / 3).to_std().unwrap_or(Duration::from_secs(10));
        loop {
            tokio::select! {
                _ = tokio::time::sleep(period) => {}
                _ = self.stop_firing.cancelled() => return,
            }
            self.keep_leases().await;
        }
    }

    /// One round of lease upkeep: extend the leases of this process's deliveries (aborting those another replica
    /// cancelled), take over expired ones, and deliver buffered fires that have room.
    pub(crate) async fn keep_leases(self: &Arc<Self>) {
        let by_store: BTreeMap<String, Vec<String>> = {
            let in_flight = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
            let mut by_store: BTreeMap<String, Vec<String>> = BTreeMap::new();
            for (key, (store, _)) in in_flight.iter() {
                by_store.entry(store.clone()).or_default().push(key.clone());
            }
            by_store
        };
        let lease_until = self.clock.now() + self.lease();
        for (name, keys) in by_store {
            let Some(store) = self.store(&name) else { continue };
            match store.extend_leases(&keys, lease_until).await {
                // Cancelled by another replica's claim (`cancel_other`): seen here, within a third of the lease.
                Ok(cancelled) => self.abort_deliveries(cancelled.iter().map(String::as_str)),
                Err(err) => tracing::warn!(store = %name, error = %err, "cannot extend leases"),
            }
        }
        self.recover_unfinished(false).await;
        for (name, entry) in &self.stores {
            self.promote_buffered(name, &entry.store).await;
        }
    }

    /// Apply `[runs]` and `[audit]` retention every `prune_interval_seconds` until firing stops.
    async fn prune_periodically(self: Arc<Self>) {
        let period = Duration::from_secs(self.retention.prune_interval_seconds);
        loop {
            tokio::select! {
                _ = tokio::time::sleep(period) => {}
                _ = self.stop_firing.cancelled() => return,
            }
            self.prune_runs().await;
            self.prune_audit().await;
            self.prune_notifications().await;
        }
    }

    /// One round of retention over every store, in batches; the number of runs deleted.
    pub async fn prune_runs(&self) -> u64 {
        let retention = &self.retention;
        let prune = Prune {
            finished_before: (retention.retention_seconds > 0).then(|| {
                self.clock.now()
                    - chrono::TimeDelta::seconds(i64::try_from(retention.retention_seconds).unwrap_or(i64::MAX))
            }),
            keep_per_job: (retention.retention_per_job > 0).then_some(retention.retention_per_job),
            limit: PRUNE_BATCH,
        };
        let mut total = 0;
        for (name, entry) in &self.stores {
            loop {
                match entry.store.prune_runs(&prune).await {
                    Ok(deleted) => {
                        total += deleted;
                        self.metrics.pruned(deleted);
                        if deleted < PRUNE_BATCH as u64 || self.stop_firing.is_cancelled() {
                            break;
                        }
                        // Let claims and API calls in between batches.
                        tokio::task::yield_now().await;
                    }
                    Err(err) => {
                        tracing::warn!(store = %name, error = %err, "cannot prune the run history; next round retries");
                        break;
                    }
                }
            }
        }
        if total > 0 {
            tracing::info!(runs = total, "pruned the run history");
        }
        total
    }

    /// How many runs the loop may claim now: a batch twice the runs in hand, at least `FIRST_CLAIM` and at most
    /// `CLAIM_BATCH`, while the backlog has room for it (`MAX_BACKLOG`); else none, and the loop is marked as waiting
    /// for the deliveries that drain the backlog to wake it. (Claiming just the few runs that fit in a nearly full
    /// backlog would cost nearly what a whole batch costs.)
    fn claim_room(&self) -> usize {
        // Marked before counting: a delivery that ends after the count sees the mark and wakes the loop.
        self.held_for_backlog.store(true, Ordering::SeqCst);
        let in_hand = self.in_hand();
        let batch = (2 * in_hand).clamp(FIRST_CLAIM, CLAIM_BATCH);
        if MAX_BACKLOG.saturating_sub(in_hand) < batch {
            return 0;
        }
        self.held_for_backlog.store(false, Ordering::SeqCst);
        batch
    }

    /// Claimed runs in hand: handed to delivery and not finished, less those waiting of their own accord. (Read
    /// as two counters, so it can be off by a run that moves between them meanwhile.)
    fn in_hand(&self) -> usize {
        self.backlog.load(Ordering::SeqCst).saturating_sub(self.excused.load(Ordering::SeqCst))
    }

    /// A run finished (or began waiting of its own accord): wake the loop if it waits and a whole claim fits again.
    fn backlog_drained(&self) {
        if self.held_for_backlog.load(Ordering::SeqCst)
            && MAX_BACKLOG.saturating_sub(self.in_hand()) >= CLAIM_BATCH
            && self.held_for_backlog.swap(false, Ordering::SeqCst)
        {
            self.wake();
        }
    }

    /// Queue claimed runs of one job for delivery, one after another, on its executor's pool; `delays` are their
    /// jitter.
    fn submit(
        self: &Arc<Self>,
        store_name: &str,
        store: Arc<dyn JobStore>,
        chain: Vec<Run>,
        delays: Vec<Option<Duration>>,
    ) {
        {
            let mut in_flight = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
            for run in &chain {
                in_flight.insert(run.idempotency_key.clone(), (store_name.to_string(), CancellationToken::new()));
            }
        }
        let now = self.clock.now();
        for run in &chain {
            self.events.publish_with(EventKind::JobSubmitted, now, || Subject::Run {
                run: Arc::new(run.clone()),
                jobstore: store_name.to_string(),
            });
        }
        let scheduler = self.clone();
        let store_name = store_name.to_string();
        let backlogged: Vec<Backlogged> = chain.iter().map(|_| Backlogged::enter(self.clone())).collect();
        self.deliveries.spawn(async move {
            for ((run, delay), backlogged) in chain.into_iter().zip(delays).zip(backlogged) {
                scheduler.deliver(&store, &store_name, run, delay, backlogged).await;
            }
        });
    }

    /// Deliver one run: attempt, and while the action's retry policy allows, wait and attempt again. The worker
    /// slot is held only during an attempt; while waiting the run stays `running` in the ledger (so it counts
    /// against max_instances and keeps its lease), and the scheduler loop goes on firing regardless. A run cancelled
    /// meanwhile (`overlap: cancel_other`) stops at once, its call aborted; the ledger already says `cancelled`.
    async fn deliver(
        self: &Arc<Self>,
        store: &Arc<dyn JobStore>,
        store_name: &str,
        run: Run,
        delay: Option<Duration>,
        // Counted against `MAX_BACKLOG` until the delivery ends, its outcome recorded.
        _backlogged: Backlogged,
    ) {
        let cancelled = self.cancel_token(&run.idempotency_key);
        let key = run.idempotency_key.clone();
        let job_id = run.job_id.clone();
        let outcome = tokio::select! {
            biased;
            _ = cancelled.cancelled() => None,
            outcome = self.attempts(store.as_ref(), store_name, run, delay) => Some(outcome),
        };
        self.in_flight.lock().unwrap_or_else(|p| p.into_inner()).remove(&key);
        // Taken by the first attempt; still here if the run was cancelled before it.
        self.template_jobs.lock().unwrap_or_else(|p| p.into_inner()).remove(&key);
        match outcome {
            None => {
                tracing::info!(job_id = %job_id, "delivery aborted: the run was cancelled for a newer fire");
                self.metrics.delivered(RunStatus::Cancelled);
            }
            Some(Some(run)) => {
                self.metrics.delivered(run.status);
                self.after_outcome(store.as_ref(), &run).await;
                let kind =
                    if run.status == RunStatus::Succeeded { EventKind::JobExecuted } else { EventKind::JobError };
                self.publish(kind, Subject::Run { run: Arc::new(run), jobstore: store_name.to_string() });
            }
            // Stopping: left unfinished in the ledger for the next start.
            Some(None) => return,
        }
        // A run of the job ended: a fire buffered behind it may go now.
        if self.buffering_jobs.lock().unwrap_or_else(|p| p.into_inner()).contains(&job_id) {
            self.promote_buffered(store_name, store).await;
        }
    }

    /// The attempts of one run, to its outcome as recorded; `None` when the scheduler stopped first.
    async fn attempts(
        &self,
        store: &dyn JobStore,
        store_name: &str,
        mut run: Run,
        delay: Option<Duration>,
    ) -> Option<Run> {
        // Jitter is waited out before taking a worker, so a jittered fire holds none idle.
        if let Some(delay) = delay {
            let _excused = Excused::new(self);
            tokio::time::sleep(delay).await;
        }
        let pool = self.executors.pool(&run.executor);
        let job = self.template_job(store, &run).await;
        loop {
            {
                // A wait for the target's rate limit must not hold up other jobs' claims.
                let _excused = Excused::new(self);
                self.delivery.wait_turn(&run).await;
            }
            let slot = pool.slot().await;
            let started = self.clock.now();
            if run.started_at.is_none() {
                run.started_at = Some(started);
                self.metrics.lateness(started - run.scheduled_time);
            }
            run.status = RunStatus::Running;
            // A run taken over after a crash gets at least one more attempt, even if its count says it had all.
            run.attempts += 1;
            // `running` is written only once a call has taken `SHOW_RUNNING_AFTER`, never before the request goes
            // out: the fire is already in the ledger, pending and leased, so a crash in between delivers it again
            // either way, and a quick call goes from pending to its outcome in one write instead of two (a burst's
            // ledger writes halve) with no commit on its path to the receiver. A `running` write under way when
            // the call ends is queued ahead of the outcome, so the ledger never goes back to `running`.
            let attempt = {
                // Boxed, as the request's future is large: inline, every delivery task would carry it and copy it at
                // each level it is awaited through.
                let mut call = Box::pin(async {
                    let attempt = self.delivery.attempt_for(&run, &job, started).await;
                    drop(slot);
                    attempt
                });
                tokio::select! {
                    biased;
                    attempt = &mut call => attempt,
                    () = async {
                        tokio::time::sleep(SHOW_RUNNING_AFTER).await;
                        self.save_run(store, store_name, &run).await;
                    } => call.await,
                }
            };
            run.http_status = attempt.http_status;
            run.error = attempt.error.clone();
            run.response_excerpt = attempt.response_excerpt.clone();
            run.duration_ms = Some(attempt.duration.as_millis() as u64);
            let (wait, max_attempts) = match self.delivery.decide(&run, &attempt, self.clock.now()) {
                Next::Done(status) => {
                    run.status = status;
                    break;
                }
                Next::Retry { wait, max_attempts } => (wait, max_attempts),
            };
            run.error = Some(format!(
                "{} (attempt {} of {max_attempts}; next in {:.1} s)",
                attempt.error.as_deref().unwrap_or("failed"),
                run.attempts,
                wait.as_secs_f64()
            ));
            tracing::info!(job_id = %run.job_id, attempt = run.attempts, http_status = ?run.http_status, ?wait, "delivery failed; retrying");
            self.save_run(store, store_name, &run).await;
            let _waiting = (pool.waiting_to_retry(), Excused::new(self));
            tokio::select! {
                biased;
                _ = self.stop_firing.cancelled() => {
                    // Left running in the ledger: the next start delivers it again, with the same key.
                    tracing::info!(job_id = %run.job_id, attempts = run.attempts, "stopping; the retry is left for the next start");
                    return None;
                }
                _ = tokio::time::sleep(wait) => {}
            }
        }
        run.finished_at = Some(self.clock.now());
        run.lease_expires_at = None;
        // A success is routine (the ledger and metrics keep it); one log line per fire would cost more than the
        // fire itself at a burst's rate. Failures are worth a line.
        if run.status == RunStatus::Succeeded {
            tracing::debug!(job_id = %run.job_id, http_status = ?run.http_status, attempts = run.attempts, "delivered");
        } else {
            tracing::warn!(job_id = %run.job_id, http_status = ?run.http_status, error = ?run.error, attempts = run.attempts, "delivery failed");
        }
        self.save_run(store, store_name, &run).await;
        Some(run)
    }

    /// The token that aborts the delivery of the run with this key (registered by `submit`).
    fn cancel_token(&self, key: &str) -> CancellationToken {
        let in_flight = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
        in_flight.get(key).map(|(_, token)| token.clone()).unwrap_or_default()
    }

    /// Abort the deliveries of these runs, where this process is making them: their rows say `cancelled`.
    fn abort_deliveries<'a>(&self, keys: impl IntoIterator<Item = &'a str>) {
        let in_flight = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
        for key in keys {
            if let Some((_, token)) = in_flight.get(key) {
                token.cancel();
            }
        }
    }

    /// Deliver the buffered fires of `store` whose job has room now (see `JobStore::promote_buffered`).
    async fn promote_buffered(self: &Arc<Self>, store_name: &str, store: &Arc<dyn JobStore>) -> usize {
        // Stopping: they stay buffered in the ledger, and the next start delivers them.
        if self.stop_firing.is_cancelled() {
            return 0;
        }
        let lease_until = self.clock.now() + self.lease();
        match store.promote_buffered(lease_until).await {
            Ok(runs) => {
                let promoted = runs.len();
                for chain in chains(runs) {
                    chain.iter().for_each(|run| self.metrics.fire(run.status));
                    let delays = vec![None; chain.len()];
                    self.submit(store_name, store.clone(), chain, delays);
                }
                promoted
            }
            Err(err) => {
                tracing::warn!(store = %store_name, error = %err, "cannot deliver buffered fires; the next round retries");
                0
            }
        }
    }

    /// What a templated action sees of the run's job: as the claim saw it, else (a fire delivered again after a
    /// restart) as the store has it now; only for templated actions, the others need nothing of it. A job removed
    /// meanwhile is known by its id alone.
    async fn template_job(&self, store: &dyn JobStore, run: &Run) -> crate::action::template::JobVars {
        let claimed = self.template_jobs.lock().unwrap_or_else(|p| p.into_inner()).remove(&run.idempotency_key);
        if let Some(job) = claimed {
            return job;
        }
        let templated = run.action.as_http().is_some_and(|action| action.template);
        let job = if templated { store.get_job(&run.job_id).await.ok().flatten() } else { None };
        match job {
            Some(job) => crate::action::template::JobVars::of(&job),
            None => crate::action::template::JobVars { id: run.job_id.clone(), ..Default::default() },
        }
    }

    /// Record a run's progress, riding out a store outage: the fire stays leased meanwhile, and if the process
    /// stops first the ledger still says unfinished, so the fire is delivered again (at least once).
    async fn save_run(&self, store: &dyn JobStore, store_name: &str, run: &Run) {
        let unrecorded = self.stores.get(store_name).map(|entry| &entry.unrecorded);
        let mut counted = false;
        let mut backoff = RECORD_RETRY;
        loop {
            let error = match store.update_run(run).await {
                Ok(()) => None,
                Err(StoreError::Unavailable(err)) if !self.stop_firing.is_cancelled() => {
                    tracing::warn!(job_id = %run.job_id, error = %err, "cannot record a run; retrying");
                    if !counted {
                        if let Some(count) = unrecorded {
                            count.fetch_add(1, Ordering::AcqRel);
                        }
                        counted = true;
                    }
                    tokio::time::sleep(backoff.next_wait()).await;
                    continue;
                }
                // Cancelled for a newer fire (`cancel_other`) just as its call ended: the cancel stands.
                Err(StoreError::NotFound) => {
                    tracing::info!(job_id = %run.job_id, "run not recorded: it was cancelled (or removed) meanwhile");
                    None
                }
                Err(err) => Some(err),
            };
            if let Some(err) = error {
                tracing::error!(job_id = %run.job_id, error = %err, "cannot record a run");
            }
            if counted {
                if let Some(count) = unrecorded {
                    count.fetch_sub(1, Ordering::AcqRel);
                }
                // Claims waited for this record: go round now rather than at the next retry.
                self.wake();
            }
            return;
        }
    }
}

/// Group runs into per-job chains, keeping their order (a job's backlog is delivered oldest first).
fn chains(runs: Vec<Run>) -> Vec<Vec<Run>> {
    let mut chains: Vec<Vec<Run>> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for run in runs {
        match index.get(&run.job_id) {
            Some(&i) => chains[i].push(run),
            None => {
                index.insert(run.job_id.clone(), chains.len());
                chains.push(vec![run]);
            }
        }
    }
    for chain in &mut chains {
        chain.sort_by_key(|run| run.scheduled_time);
    }
    chains
}

#[cfg(test)]
mod tests;
