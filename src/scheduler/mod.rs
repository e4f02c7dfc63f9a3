//! The scheduler: one loop per process that sleeps until the earliest next run time across the job stores (or
//! until woken by a change), claims what is due through the run ledger, and hands each fire to its executor's
//! pool for delivery. `tick` is one round; `run` is the loop.

pub mod clock;
pub mod plan;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::Serialize;
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use utoipa::ToSchema;

use crate::action::http::{self, DeliveryHeaders};
use crate::action::policy::TargetPolicy;
use crate::action::ratelimit::RateLimits;
use crate::config::Config;
use crate::executor::Executors;
use crate::job::{Job, Run, RunStatus};
use crate::store::{JobStore, StoreError, StoreResult};
use crate::trigger::time::format_time;
use clock::Clock;
use plan::RulesPlanner;

/// Due jobs claimed per store in one transaction: large enough for a burst, small enough to keep the transaction
/// (and the lock it holds) short. A full batch makes the loop go round again at once.
pub const CLAIM_BATCH: usize = 500;
/// With nothing due the loop still wakes this often, a safety net should a wake-up ever be lost.
const IDLE_SAFETY_WAKE: Duration = Duration::from_secs(300);
/// Backoff while a store is unreachable: start fast to ride out a blip, cap so an outage costs little.
const STORE_RETRY_MIN: Duration = Duration::from_millis(200);
const STORE_RETRY_MAX: Duration = Duration::from_secs(10);
/// A run whose lease is older than any process could hold it: what start-up uses to take over everything an
/// exclusive store (memory, SQLite) left unfinished.
const EXCLUSIVE_TAKEOVER: chrono::TimeDelta = chrono::TimeDelta::days(365 * 100);

/// The current backoff, doubling the next one up to the cap.
fn grow(backoff: &mut Duration) -> Duration {
    let current = *backoff;
    *backoff = (current * 2).min(STORE_RETRY_MAX);
    current
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SchedulerState {
    Running,
    Paused,
    Stopped,
}

/// A named job store and whether this process is its only user.
struct StoreEntry {
    store: Arc<dyn JobStore>,
    /// Memory and SQLite stores belong to one process, so at start-up everything they left unfinished is this
    /// process's to finish; a shared store waits for leases to expire.
    exclusive: bool,
}

pub struct Scheduler {
    pub config: Arc<Config>,
    pub default_tz: Tz,
    stores: BTreeMap<String, StoreEntry>,
    pub executors: Executors,
    clock: Arc<dyn Clock>,
    http: reqwest::Client,
    /// Which targets deliveries may reach (`[webhooks] allow`/`deny`); the API checks it when a job is saved.
    pub policy: Arc<TargetPolicy>,
    rate_limits: RateLimits,
    wake: Notify,
    state: watch::Sender<SchedulerState>,
    /// Stops the loop and lease upkeep; deliveries in flight go on.
    stop_firing: CancellationToken,
    deliveries: TaskTracker,
    /// Runs being delivered, by idempotency key → store name, whose leases this process extends.
    in_flight: Mutex<HashMap<String, String>>,
}

impl Scheduler {
    /// Open the configured stores (running migrations) and build the scheduler; `run` starts it.
    pub async fn new(config: Config, clock: Arc<dyn Clock>) -> anyhow::Result<Arc<Scheduler>> {
        let default_tz = config.tz()?;
        let mut stores = BTreeMap::new();
        for (name, store_config) in &config.jobstores {
            let store = crate::store::open(name, store_config).await?;
            let exclusive = store_config.resolved_type() != crate::config::StoreType::Postgres;
            stores.insert(name.clone(), StoreEntry { store, exclusive });
        }
        let (state, _) = watch::channel(SchedulerState::Running);
        let policy = Arc::new(
            TargetPolicy::from_config(&config.webhooks)
                .map_err(|(key, message)| anyhow::anyhow!("configuration: webhooks.{key}: {message}"))?,
        );
        Ok(Arc::new(Scheduler {
            rate_limits: RateLimits::new(&config.webhooks),
            executors: Executors::new(&config.executors),
            config: Arc::new(config),
            default_tz,
            stores,
            clock,
            http: http::client(policy.clone()),
            policy,
            wake: Notify::new(),
            state,
            stop_firing: CancellationToken::new(),
            deliveries: TaskTracker::new(),
            in_flight: Mutex::new(HashMap::new()),
        }))
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    pub fn state(&self) -> SchedulerState {
        *self.state.borrow()
    }

    pub fn store(&self, name: &str) -> Option<&Arc<dyn JobStore>> {
        self.stores.get(name).map(|entry| &entry.store)
    }

    pub fn stores(&self) -> impl Iterator<Item = (&String, &Arc<dyn JobStore>)> {
        self.stores.iter().map(|(name, entry)| (name, &entry.store))
    }

    /// Find a job in whichever store holds it.
    pub async fn find_job(&self, id: &str) -> StoreResult<Option<(String, Job)>> {
        for (name, store) in self.stores() {
            if let Some(job) = store.get_job(id).await? {
                return Ok(Some((name.clone(), job)));
            }
        }
        Ok(None)
    }

    /// A job was added or changed: recompute when to wake.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    pub fn pause(&self) {
        self.state.send_if_modified(|state| {
            let change = *state == SchedulerState::Running;
            if change {
                *state = SchedulerState::Paused;
            }
            change
        });
        self.wake();
    }

    pub fn resume(&self) {
        self.state.send_if_modified(|state| {
            let change = *state == SchedulerState::Paused;
            if change {
                *state = SchedulerState::Running;
            }
            change
        });
        self.wake();
    }

    /// Stop firing; with `wait`, return once every delivery in flight has finished. Runs not yet delivered stay in
    /// the ledger and are delivered at the next start.
    pub async fn shutdown(&self, wait: bool) {
        self.state.send_replace(SchedulerState::Stopped);
        self.stop_firing.cancel();
        self.deliveries.close();
        if wait {
            self.deliveries.wait().await;
        }
    }

    /// Start the loop and lease upkeep in the background.
    pub fn spawn(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let scheduler = self.clone();
        tokio::spawn(async move { scheduler.run().await })
    }

    async fn run(self: Arc<Self>) {
        self.recover_unfinished(true).await;
        let upkeep = {
            let scheduler = self.clone();
            tokio::spawn(async move { scheduler.lease_upkeep().await })
        };
        let mut backoff = STORE_RETRY_MIN;
        loop {
            let notified = self.wake.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.stop_firing.is_cancelled() {
                break;
            }
            if self.state() == SchedulerState::Paused {
                tokio::select! {
                    _ = notified => {}
                    _ = self.stop_firing.cancelled() => {}
                }
                continue;
            }
            let sleep_for = match self.tick(self.clock.now()).await {
                Ok(true) => continue,
                Ok(false) => match self.earliest_next_run_time().await {
                    Ok(next) => {
                        backoff = STORE_RETRY_MIN;
                        next.map_or(IDLE_SAFETY_WAKE, |next| {
                            (next - self.clock.now()).to_std().unwrap_or(Duration::ZERO).min(IDLE_SAFETY_WAKE)
                        })
                    }
                    Err(err) => {
                        tracing::warn!(error = %err, retry_in = ?backoff, "cannot read the next run time");
                        grow(&mut backoff)
                    }
                },
                Err(err) => {
                    tracing::warn!(error = %err, retry_in = ?backoff, "claiming due jobs failed");
                    grow(&mut backoff)
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(sleep_for) => {}
                _ = notified => {}
                _ = self.stop_firing.cancelled() => {}
            }
        }
        upkeep.abort();
    }

    /// One round: claim what is due in every store and hand it to the executors. `true` when a store had more due
    /// than one batch, so the caller goes round again at once.
    pub async fn tick(self: &Arc<Self>, now: DateTime<Utc>) -> StoreResult<bool> {
        let lease_until = now + self.lease();
        let mut more = false;
        let mut first_error = None;
        for (name, entry) in &self.stores {
            let planner = RulesPlanner::new(self.default_tz);
            match entry.store.claim_due(now, CLAIM_BATCH, lease_until, &planner).await {
                Ok(runs) => {
                    more |= runs.len() >= CLAIM_BATCH;
                    let mut jitter = planner.take_jitter();
                    for chain in chains(runs) {
                        let delays = chain.iter().map(|run| jitter.remove(&run.idempotency_key)).collect();
                        self.submit(name, entry.store.clone(), chain, delays);
                    }
                }
                // One store down must not stop the others from firing.
                Err(err) => first_error = first_error.or(Some(err)),
            }
        }
        match first_error {
            Some(err) => Err(err),
            None => Ok(more),
        }
    }

    async fn earliest_next_run_time(&self) -> StoreResult<Option<DateTime<Utc>>> {
        let mut earliest: Option<DateTime<Utc>> = None;
        for entry in self.stores.values() {
            if let Some(t) = entry.store.earliest_next_run_time().await? {
                earliest = Some(earliest.map_or(t, |e| e.min(t)));
            }
        }
        Ok(earliest)
    }

    fn lease(&self) -> chrono::TimeDelta {
        chrono::TimeDelta::seconds(self.config.scheduler.lease_seconds as i64)
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
            let by_store: BTreeMap<String, Vec<String>> = {
                let in_flight = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
                let mut by_store: BTreeMap<String, Vec<String>> = BTreeMap::new();
                for (key, store) in in_flight.iter() {
                    by_store.entry(store.clone()).or_default().push(key.clone());
                }
                by_store
            };
            let lease_until = self.clock.now() + self.lease();
            for (name, keys) in by_store {
                if let Some(store) = self.store(&name)
                    && let Err(err) = store.extend_leases(&keys, lease_until).await
                {
                    tracing::warn!(store = %name, error = %err, "cannot extend leases");
                }
            }
            self.recover_unfinished(false).await;
        }
    }

    /// Queue claimed runs of one job for delivery, one after another, on its executor's pool; `delays` are their
    /// jitter.
    pub fn submit(
        self: &Arc<Self>,
        store_name: &str,
        store: Arc<dyn JobStore>,
        chain: Vec<Run>,
        delays: Vec<Option<Duration>>,
    ) {
        {
            let mut in_flight = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
            for run in &chain {
                in_flight.insert(run.idempotency_key.clone(), store_name.to_string());
            }
        }
        let scheduler = self.clone();
        self.deliveries.spawn(async move {
            for (run, delay) in chain.into_iter().zip(delays) {
                scheduler.deliver(store.as_ref(), run, delay).await;
            }
        });
    }

    async fn deliver(&self, store: &dyn JobStore, mut run: Run, delay: Option<Duration>) {
        // Before taking a worker, so a rate-limited target does not hold up the pool.
        self.rate_limits.acquire(&run.action.url).await;
        let pool = self.executors.pool(&run.executor);
        let _slot = pool.slot().await;
        if let Some(delay) = delay {
            tokio::time::sleep(delay).await;
        }
        let scheduled_time = format_time(run.scheduled_time, run.timezone());
        run.status = RunStatus::Running;
        run.started_at = Some(self.clock.now());
        run.attempts += 1;
        self.save_run(store, &run).await;
        // A literal address never reaches the policy's resolver; names are checked there, after resolution.
        let attempt = if let Err(reason) = self.policy.check_url(&run.action.url) {
            http::Attempt {
                succeeded: false,
                http_status: None,
                error: Some(format!("target policy: {reason}; no request was made")),
                response_excerpt: None,
                duration: Duration::ZERO,
            }
        } else {
            http::attempt(
                &self.http,
                &run.action,
                &DeliveryHeaders {
                    job_id: &run.job_id,
                    scheduled_time: &scheduled_time,
                    idempotency_key: &run.idempotency_key,
                },
            )
            .await
        };
        run.status = if attempt.succeeded { RunStatus::Succeeded } else { RunStatus::Failed };
        run.http_status = attempt.http_status;
        run.error = attempt.error;
        run.response_excerpt = attempt.response_excerpt;
        run.duration_ms = Some(attempt.duration.as_millis() as u64);
        run.finished_at = Some(self.clock.now());
        run.lease_expires_at = None;
        tracing::info!(job_id = %run.job_id, status = run.status.as_str(), http_status = ?run.http_status, "delivered");
        self.save_run(store, &run).await;
        self.in_flight.lock().unwrap_or_else(|p| p.into_inner()).remove(&run.idempotency_key);
    }

    /// Record a run's progress, riding out a store outage: the fire stays leased meanwhile, and if the process
    /// stops first the ledger still says unfinished, so the fire is delivered again (at least once).
    async fn save_run(&self, store: &dyn JobStore, run: &Run) {
        let mut backoff = STORE_RETRY_MIN;
        loop {
            match store.update_run(run).await {
                Ok(()) => return,
                Err(StoreError::Unavailable(err)) if !self.stop_firing.is_cancelled() => {
                    tracing::warn!(job_id = %run.job_id, error = %err, "cannot record a run; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(STORE_RETRY_MAX);
                }
                Err(err) => {
                    tracing::error!(job_id = %run.job_id, error = %err, "cannot record a run");
                    return;
                }
            }
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
