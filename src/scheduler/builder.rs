//! Building a scheduler: job stores, executors and settings, as APScheduler's scheduler is configured. What
//! is not set takes APScheduler's defaults: a memory store named `default` and an executor `default` of
//! `DEFAULT_MAX_WORKERS` workers.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono_tz::Tz;

use super::Scheduler;
use super::clock::{Clock, SystemClock};
use super::settings::{DEFAULT_LEASE_SECONDS, MIN_LEASE_SECONDS, RunsConfig};
use crate::audit::AuditSettings;
use crate::delivery::WebhookSettings;
use crate::executor::DEFAULT_MAX_WORKERS;
use crate::job::JobDefaults;
use crate::store::JobStore;

/// Bounds a runaway client (or a loop in one) can fill a store to; a job list this long is a mistake, not a plan.
pub const DEFAULT_MAX_JOBS_PER_STORE: u64 = 100_000;

/// Configures and builds a [`Scheduler`]; from [`Scheduler::builder`].
pub struct SchedulerBuilder {
    pub(super) stores: Vec<(String, Arc<dyn JobStore>)>,
    pub(super) executors: BTreeMap<String, usize>,
    pub(super) timezone: Tz,
    pub(super) job_defaults: JobDefaults,
    pub(super) lease_seconds: u64,
    pub(super) runs: RunsConfig,
    pub(super) audit: AuditSettings,
    pub(super) webhooks: WebhookSettings,
    pub(super) max_jobs_per_store: u64,
    pub(super) clock: Arc<dyn Clock>,
    pub(super) notify: Option<crate::notify::NotifySpec>,
}

impl Default for SchedulerBuilder {
    fn default() -> Self {
        SchedulerBuilder {
            stores: Vec::new(),
            executors: BTreeMap::new(),
            timezone: Tz::UTC,
            job_defaults: JobDefaults::default(),
            lease_seconds: DEFAULT_LEASE_SECONDS,
            runs: RunsConfig::default(),
            audit: AuditSettings::default(),
            webhooks: WebhookSettings::default(),
            max_jobs_per_store: DEFAULT_MAX_JOBS_PER_STORE,
            clock: Arc::new(SystemClock),
            notify: None,
        }
    }
}

impl SchedulerBuilder {
    /// Add a job store under `name` (`store::Memory::new()`, `store::Sqlite::open(path)`,
    /// `store::Postgres::connect(url, pool_size)`). Jobs go to `default`, or the first store added, unless a job
    /// names another.
    pub fn jobstore(self, name: impl Into<String>, store: impl JobStore) -> SchedulerBuilder {
        self.shared_jobstore(name, Arc::new(store))
    }

    /// Add a job store already behind an `Arc`.
    pub fn shared_jobstore(mut self, name: impl Into<String>, store: Arc<dyn JobStore>) -> SchedulerBuilder {
        let name = name.into();
        self.stores.retain(|(existing, _)| *existing != name);
        self.stores.push((name, store));
        self
    }

    /// Add an executor: a pool of `max_workers` concurrent deliveries. Jobs run on `default` unless they name
    /// another.
    pub fn executor(mut self, name: impl Into<String>, max_workers: usize) -> SchedulerBuilder {
        self.executors.insert(name.into(), max_workers);
        self
    }

    /// The zone of triggers that name none (default UTC).
    pub fn timezone(mut self, timezone: Tz) -> SchedulerBuilder {
        self.timezone = timezone;
        self
    }

    /// `coalesce`, `max_instances` and `misfire_grace_time` of jobs that do not set them.
    pub fn job_defaults(mut self, job_defaults: JobDefaults) -> SchedulerBuilder {
        self.job_defaults = job_defaults;
        self
    }

    /// Seconds a claimed fire's lease lasts unless extended (replicas take over expired ones).
    pub fn lease_seconds(mut self, lease_seconds: u64) -> SchedulerBuilder {
        self.lease_seconds = lease_seconds;
        self
    }

    /// Retention of the run history.
    pub fn run_retention(mut self, runs: RunsConfig) -> SchedulerBuilder {
        self.runs = runs;
        self
    }

    /// Retention of the audit trail.
    pub fn audit_retention(mut self, audit: AuditSettings) -> SchedulerBuilder {
        self.audit = audit;
        self
    }

    /// Webhook settings: signing secret, target policy, rate limits.
    pub fn webhooks(mut self, webhooks: WebhookSettings) -> SchedulerBuilder {
        self.webhooks = webhooks;
        self
    }

    /// The most jobs one store may hold; adding one more is a `Conflict`.
    pub fn max_jobs_per_store(mut self, max_jobs_per_store: u64) -> SchedulerBuilder {
        self.max_jobs_per_store = max_jobs_per_store;
        self
    }

    /// The clock the scheduler reads (tests drive a manual one).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> SchedulerBuilder {
        self.clock = clock;
        self
    }

    /// Where the health notifications of jobs without their own `notify` go (`[notify]`); none by default.
    pub fn notify(mut self, notify: Option<crate::notify::NotifySpec>) -> SchedulerBuilder {
        self.notify = notify;
        self
    }

    /// Check the settings and build the scheduler, stopped until [`Scheduler::start`] or
    /// [`Scheduler::run_until`].
    pub async fn build(mut self) -> anyhow::Result<Arc<Scheduler>> {
        if self.stores.is_empty() {
            self.stores.push(("default".to_string(), Arc::new(crate::store::memory::MemoryStore::new())));
        }
        self.executors.entry("default".to_string()).or_insert(DEFAULT_MAX_WORKERS);
        if let Some((name, _)) = self.executors.iter().find(|(_, workers)| **workers == 0) {
            anyhow::bail!("executor {name:?}: max_workers must be at least 1");
        }
        if self.lease_seconds < MIN_LEASE_SECONDS {
            anyhow::bail!("lease_seconds must be at least {MIN_LEASE_SECONDS}");
        }
        if self.job_defaults.max_instances == 0 {
            anyhow::bail!("job_defaults.max_instances must be at least 1");
        }
        if self.max_jobs_per_store == 0 {
            anyhow::bail!("max_jobs_per_store must be at least 1");
        }
        if let Some(notify) = &self.notify {
            notify.validate().map_err(|(field, message)| anyhow::anyhow!("notify.{field}: {message}"))?;
        }
        for (_, store) in &self.stores {
            store.set_notify_default(self.notify.clone());
        }
        let scheduler = Scheduler::from_parts(self)?;
        // A store that cannot be read yet leaves the calendars stale: the loop reads them once it can.
        if let Err(err) = scheduler.refresh_calendars(true).await {
            tracing::warn!(error = %err, "cannot read the calendars yet");
        }
        Ok(scheduler)
    }
}
