//! Job operations, as APScheduler's scheduler offers them (`add_job`, `modify_job`, `reschedule_job`, …), with
//! the rules it keeps: ids unique across job stores, options defaulted from `job_defaults`, triggers resolved and
//! checked, a resumed job whose trigger has ended removed. The REST API is a thin shell over these.

use crate::notify::ledger::Notification;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::Scheduler;
use super::error::{Error, Result};
use super::events::{EventKind, Subject};
use crate::action::Action;
use crate::audit::{AuditAction, Change};
use crate::calendar::CalendarSet;
use crate::job::{self, Job, Overlap, Run, RunKind, RunStatus};
use crate::labels::{self, Labels, Selector};
use crate::store::{Edit, JobCursor, JobQuery, JobWrite, RunQuery, StoreError, job_order_key};
use crate::trigger::time::{format_time, parse_time};
use crate::trigger::{DateSpec, Trigger, TriggerSpec};

/// A job to add: a trigger, an action, and APScheduler's options. Options left `None` take the scheduler's
/// `job_defaults`.
#[derive(Debug, Clone)]
pub struct JobSpec {
    /// 1–200 characters of `[A-Za-z0-9._:-]`; a UUID when absent.
    pub id: Option<String>,
    /// For people.
    pub name: Option<String>,
    /// When absent the job runs once, now.
    pub trigger: Option<TriggerSpec>,
    /// What a fire does.
    pub action: Action,
    /// Fold a backlog of missed fires into one.
    pub coalesce: Option<bool>,
    /// Concurrent runs of the job at most.
    pub max_instances: Option<u32>,
    /// Seconds a fire may be late and still run; `Some(None)`: always run; `None`: the default.
    pub misfire_grace_time: Option<Option<u32>>,
    /// After downtime, without coalesce, deliver at most the newest this many missed fires; `None`: all of them.
    pub max_catchup_runs: Option<u32>,
    /// What a fire beyond `max_instances` does; `skip` when absent.
    pub overlap: Option<Overlap>,
    /// Overrides the first fire time (RFC 3339, or naive in the trigger's zone).
    pub next_run_time: Option<String>,
    /// The executor (delivery pool) to run on; `default` when absent.
    pub executor: Option<String>,
    /// The job store to keep it in; the scheduler's default store when absent.
    pub jobstore: Option<String>,
    /// Replace a job with the same id instead of failing with `Conflict`.
    pub replace_existing: bool,
    /// Add the job paused.
    pub paused: bool,
    /// Labels to select it by: at most 32, keys of 1–63 characters of `[A-Za-z0-9._/-]`, values of at most 63.
    pub labels: Labels,
    /// Pause the job after this many consecutive failed runs (at least 1); `None`: never.
    pub auto_pause_after_failures: Option<u32>,
    /// Stale after this many seconds without a success (at least 1); `None`: never.
    pub stale_after_seconds: Option<u32>,
    /// Where and when its health notifications go; `None`: `[notify]` of the configuration, if any.
    pub notify: Option<crate::notify::NotifySpec>,
}

impl JobSpec {
    /// A job firing on `trigger`, doing `action` (a webhook call or `Action::function(name)`).
    pub fn new(trigger: TriggerSpec, action: impl Into<Action>) -> JobSpec {
        JobSpec { trigger: Some(trigger), ..JobSpec::once_now(action) }
    }

    /// A job that runs once, now (APScheduler's `add_job` without a trigger).
    pub fn once_now(action: impl Into<Action>) -> JobSpec {
        JobSpec {
            id: None,
            name: None,
            trigger: None,
            action: action.into(),
            coalesce: None,
            max_instances: None,
            misfire_grace_time: None,
            max_catchup_runs: None,
            overlap: None,
            next_run_time: None,
            executor: None,
            jobstore: None,
            replace_existing: false,
            paused: false,
            labels: Labels::new(),
            auto_pause_after_failures: None,
            stale_after_seconds: None,
            notify: None,
        }
    }

    /// Set the id.
    pub fn id(mut self, id: impl Into<String>) -> JobSpec {
        self.id = Some(id.into());
        self
    }

    /// Set the name.
    pub fn name(mut self, name: impl Into<String>) -> JobSpec {
        self.name = Some(name.into());
        self
    }

    /// Set `coalesce`.
    pub fn coalesce(mut self, coalesce: bool) -> JobSpec {
        self.coalesce = Some(coalesce);
        self
    }

    /// Set `max_instances`.
    pub fn max_instances(mut self, max_instances: u32) -> JobSpec {
        self.max_instances = Some(max_instances);
        self
    }

    /// Set `misfire_grace_time` in seconds; `None`: always run however late.
    pub fn misfire_grace_time(mut self, seconds: Option<u32>) -> JobSpec {
        self.misfire_grace_time = Some(seconds);
        self
    }

    /// Set `max_catchup_runs`: after downtime, without coalesce, deliver at most the newest `runs` missed fires.
    pub fn max_catchup_runs(mut self, runs: u32) -> JobSpec {
        self.max_catchup_runs = Some(runs);
        self
    }

    /// Set `overlap`: what a fire that comes while `max_instances` runs are going does.
    pub fn overlap(mut self, overlap: Overlap) -> JobSpec {
        self.overlap = Some(overlap);
        self
    }

    /// Set the first fire time.
    pub fn next_run_time(mut self, at: DateTime<Utc>) -> JobSpec {
        self.next_run_time = Some(at.to_rfc3339());
        self
    }

    /// Run on this executor.
    pub fn executor(mut self, executor: impl Into<String>) -> JobSpec {
        self.executor = Some(executor.into());
        self
    }

    /// Keep in this job store.
    pub fn jobstore(mut self, jobstore: impl Into<String>) -> JobSpec {
        self.jobstore = Some(jobstore.into());
        self
    }

    /// Replace a job with the same id.
    pub fn replace_existing(mut self, replace: bool) -> JobSpec {
        self.replace_existing = replace;
        self
    }

    /// Add the job paused.
    pub fn paused(mut self, paused: bool) -> JobSpec {
        self.paused = paused;
        self
    }

    /// Add a label (replacing one with the same key).
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> JobSpec {
        self.labels.insert(key.into(), value.into());
        self
    }
}

/// Changes to a job (`modify_job`); `None` fields keep their value. A new trigger reschedules.
#[derive(Debug, Clone, Default)]
pub struct JobChanges {
    /// A new name; `Some(None)` clears it.
    pub name: Option<Option<String>>,
    /// A new trigger: the next run time is recomputed from now.
    pub trigger: Option<TriggerSpec>,
    /// A new action. A webhook's header values and secret sent as the mask (`********`) keep their stored value.
    pub action: Option<Action>,
    /// New `coalesce`.
    pub coalesce: Option<bool>,
    /// New `max_instances`.
    pub max_instances: Option<u32>,
    /// New `misfire_grace_time`; `Some(None)`: always run.
    pub misfire_grace_time: Option<Option<u32>>,
    /// New `max_catchup_runs`; `Some(None)`: no bound.
    pub max_catchup_runs: Option<Option<u32>>,
    /// New `overlap`.
    pub overlap: Option<Overlap>,
    /// A new next run time (RFC 3339, or naive in the trigger's zone); ignored while paused.
    pub next_run_time: Option<String>,
    /// Another executor.
    pub executor: Option<String>,
    /// Pause (`true`) or resume (`false`).
    pub paused: Option<bool>,
    /// New labels, replacing all of the job's.
    pub labels: Option<Labels>,
    /// New `auto_pause_after_failures`; `Some(None)`: never.
    pub auto_pause_after_failures: Option<Option<u32>>,
    /// New `stale_after_seconds`; `Some(None)`: never.
    pub stale_after_seconds: Option<Option<u32>>,
    /// New `notify`; `Some(None)`: the configuration's `[notify]`.
    pub notify: Option<Option<crate::notify::NotifySpec>>,
}

impl JobChanges {
    /// What a bulk change's audit entry says of it: the fields it sets, with the values that are no secret (the
    /// action is named, not shown, as its headers and signing secret may hold secrets).
    pub fn summary(&self) -> serde_json::Value {
        let mut summary = serde_json::Map::new();
        let mut set = |field: &str, value: serde_json::Value| {
            summary.insert(field.to_string(), value);
        };
        if let Some(name) = &self.name {
            set("name", serde_json::json!(name));
        }
        if self.trigger.is_some() {
            set("trigger", serde_json::json!("changed"));
        }
        if self.action.is_some() {
            set("action", serde_json::json!("changed"));
        }
        if let Some(coalesce) = self.coalesce {
            set("coalesce", serde_json::json!(coalesce));
        }
        if let Some(max_instances) = self.max_instances {
            set("max_instances", serde_json::json!(max_instances));
        }
        if let Some(grace) = self.misfire_grace_time {
            set("misfire_grace_time", serde_json::json!(grace));
        }
        if let Some(runs) = self.max_catchup_runs {
            set("max_catchup_runs", serde_json::json!(runs));
        }
        if let Some(overlap) = self.overlap {
            set("overlap", serde_json::json!(overlap.as_str()));
        }
        if let Some(next_run_time) = &self.next_run_time {
            set("next_run_time", serde_json::json!(next_run_time));
        }
        if let Some(executor) = &self.executor {
            set("executor", serde_json::json!(executor));
        }
        if let Some(paused) = self.paused {
            set("paused", serde_json::json!(paused));
        }
        if let Some(labels) = &self.labels {
            set("labels", serde_json::json!(labels));
        }
        if let Some(after) = self.auto_pause_after_failures {
            set("auto_pause_after_failures", serde_json::json!(after));
        }
        if let Some(seconds) = self.stale_after_seconds {
            set("stale_after_seconds", serde_json::json!(seconds));
        }
        if let Some(notify) = &self.notify {
            set("notify", serde_json::json!(notify.as_ref().map(crate::notify::NotifySpec::masked)));
        }
        serde_json::Value::Object(summary)
    }
}

/// Which jobs `list_jobs` returns, in list order (by next run time, paused jobs last, then id).
#[derive(Debug, Clone, Default)]
pub struct JobFilter {
    /// Only jobs of this store.
    pub jobstore: Option<String>,
    /// Only paused (`true`) or active (`false`) jobs.
    pub paused: Option<bool>,
    /// Only jobs whose labels it selects; the empty selector selects every job.
    pub selector: Selector,
    /// Only jobs after this position.
    pub after: Option<JobCursor>,
    /// At most this many.
    pub limit: usize,
    /// Only jobs in this health state.
    pub health: Option<crate::health::HealthState>,
}

/// Resolve and compile a trigger against the scheduler's calendars; errors name `trigger.<field>`.
async fn prepare_trigger(
    spec: TriggerSpec,
    scheduler: &Scheduler,
    now: DateTime<Utc>,
) -> Result<(TriggerSpec, Trigger)> {
    let to_error = |err: crate::trigger::TriggerError| Error::invalid(format!("trigger.{}", err.field), err.message);
    let spec = spec.resolve(scheduler.default_tz, now).map_err(to_error)?;
    let calendars = scheduler.calendars_for(&spec.calendar_ids()).await?;
    let trigger = spec.compile_with(scheduler.default_tz, calendars.as_ref()).map_err(to_error)?;
    Ok((spec, trigger))
}

/// The first fire time of a new or rescheduled trigger; a trigger that never fires again is refused.
fn first_fire(trigger: &Trigger, now: DateTime<Utc>) -> Result<DateTime<Utc>> {
    trigger.next_fire_time(None, now).ok_or_else(no_fire_time)
}

fn check_name(name: Option<&str>) -> Result<()> {
    match name {
        Some(name) if name.chars().count() > job::MAX_NAME_LENGTH => {
            Err(Error::invalid("name", format!("is longer than {} characters", job::MAX_NAME_LENGTH)))
        }
        _ => Ok(()),
    }
}

fn check_labels(labels: &Labels) -> Result<()> {
    labels::validate_labels(labels).map_err(|(field, message)| Error::invalid(field, message))
}

/// A bulk change or removal names its jobs by a selector with at least one requirement: everything is said
/// explicitly (a requirement every job meets), never by leaving the selector out.
fn check_bulk_selector(selector: &Selector) -> Result<()> {
    if selector.is_empty() {
        return Err(Error::invalid(
            "selector",
            "must have at least one requirement; to change or remove every job, say so with one they all meet",
        ));
    }
    Ok(())
}

fn check_max_instances(max_instances: u32) -> Result<()> {
    if max_instances == 0 { Err(Error::invalid("max_instances", "must be at least 1")) } else { Ok(()) }
}

/// An optional count that, when given, is at least 1.
fn check_notify(notify: Option<&crate::notify::NotifySpec>) -> Result<()> {
    match notify.map(crate::notify::NotifySpec::validate) {
        Some(Err((field, message))) => Err(Error::invalid(format!("notify.{field}"), message)),
        _ => Ok(()),
    }
}

fn check_at_least_one(field: &str, value: Option<u32>) -> Result<()> {
    match value {
        Some(0) => Err(Error::invalid(field, "must be at least 1 (leave it out, or null, for never)")),
        _ => Ok(()),
    }
}

fn check_max_catchup_runs(runs: Option<u32>) -> Result<()> {
    match runs {
        Some(0) => Err(Error::invalid("max_catchup_runs", "must be at least 1 (leave it out, or null, for no bound)")),
        Some(runs) if runs > job::MAX_CATCHUP_RUNS => Err(Error::invalid(
            "max_catchup_runs",
            format!("{runs} is more than {}; leave it out, or null, for no bound", job::MAX_CATCHUP_RUNS),
        )),
        _ => Ok(()),
    }
}

fn parse_next_run_time(given: &str, trigger: &Trigger) -> Result<DateTime<Utc>> {
    parse_time("next_run_time", given, trigger.timezone()).map_err(|err| Error::invalid(err.field, err.message))
}

fn no_fire_time() -> Error {
    Error::invalid("trigger", "has no fire time from now on (its end or its years are past)")
}

fn no_such_job(id: &str) -> Error {
    Error::NotFound(format!("no job with id {id:?}"))
}

impl Scheduler {
    fn check_executor(&self, executor: &str) -> Result<()> {
        if self.executors.contains(executor) {
            Ok(())
        } else {
            Err(Error::invalid("executor", format!("no executor named {executor:?} is configured")))
        }
    }

    fn check_action(&self, action: &Action) -> Result<()> {
        match action {
            Action::Http(action) => {
                action.validate().map_err(|(field, message)| Error::invalid(format!("action.{field}"), message))?;
                // A templated URL's host is fixed (validate checks it renders to one), so a sample shows it.
                let url = if action.template {
                    crate::action::template::sample_url(action)
                        .map_err(|message| Error::invalid("action.url", message))?
                } else {
                    action.url.clone()
                };
                self.delivery.policy().check_url(&url).map_err(|message| Error::invalid("action.url", message))
            }
            Action::Function(function) if self.delivery.functions().contains(&function.function) => Ok(()),
            Action::Function(function) => Err(Error::invalid(
                "action.function",
                format!("no function is registered as {:?}; register it first", function.function),
            )),
        }
    }

    /// The store named `name`, or `Invalid` on `jobstore` naming the configured ones.
    fn named_store(&self, name: &str) -> Result<&Arc<dyn crate::store::JobStore>> {
        self.store(name).ok_or_else(|| {
            let names: Vec<&String> = self.stores().map(|(name, _)| name).collect();
            Error::invalid("jobstore", format!("no job store named {name:?}; configured: {names:?}"))
        })
    }

    /// Add a job; the job as stored. A job with the same id in any store is a `Conflict` unless
    /// `replace_existing`, which replaces it (keeping its first `created_at`).
    pub async fn add_job(&self, spec: JobSpec) -> Result<Job> {
        self.add_job_as(spec, None).await
    }

    /// `add_job`, recorded in the audit when made `by` someone.
    pub(crate) async fn add_job_as(&self, spec: JobSpec, by: Option<&Change>) -> Result<Job> {
        let now = self.now();
        let defaults = &self.job_defaults;
        let id = match spec.id {
            Some(id) => {
                job::validate_id(&id).map_err(|message| Error::invalid("id", message))?;
                id
            }
            None => uuid::Uuid::new_v4().to_string(),
        };
        check_name(spec.name.as_deref())?;
        self.check_action(&spec.action)?;
        let jobstore = spec.jobstore.unwrap_or_else(|| self.default_jobstore().to_string());
        let store = self.named_store(&jobstore)?.clone();
        let executor = spec.executor.unwrap_or_else(|| "default".to_string());
        self.check_executor(&executor)?;
        let max_instances = spec.max_instances.unwrap_or(defaults.max_instances);
        check_max_instances(max_instances)?;
        check_labels(&spec.labels)?;
        check_max_catchup_runs(spec.max_catchup_runs)?;
        check_at_least_one("auto_pause_after_failures", spec.auto_pause_after_failures)?;
        check_at_least_one("stale_after_seconds", spec.stale_after_seconds)?;
        check_notify(spec.notify.as_ref())?;
        let trigger = spec.trigger.unwrap_or_else(|| {
            TriggerSpec::Date(DateSpec {
                run_date: format_time(now, self.default_tz),
                timezone: None,
                exclude_calendars: Vec::new(),
            })
        });
        let (trigger_spec, trigger) = prepare_trigger(trigger, self, now).await?;
        let first = first_fire(&trigger, now)?;
        let next_run_time = match (&spec.next_run_time, spec.paused) {
            (_, true) => None,
            (Some(given), false) => Some(parse_next_run_time(given, &trigger)?),
            (None, false) => Some(first),
        };
        let job = Job {
            id,
            name: spec.name,
            trigger: trigger_spec,
            action: spec.action,
            coalesce: spec.coalesce.unwrap_or(defaults.coalesce),
            max_instances,
            misfire_grace_time: spec.misfire_grace_time.unwrap_or(defaults.misfire_grace_time),
            max_catchup_runs: spec.max_catchup_runs,
            overlap: spec.overlap.unwrap_or_default(),
            executor,
            jobstore: jobstore.clone(),
            next_run_time,
            paused: spec.paused,
            labels: spec.labels,
            created_at: now,
            updated_at: now,
            auto_pause_after_failures: spec.auto_pause_after_failures,
            stale_after_seconds: spec.stale_after_seconds,
            paused_reason: None,
            paused_until: None,
            health: Default::default(),
            notify: spec.notify,
        };
        self.capacity.check(&jobstore, store.as_ref(), &job.id).await?;
        // Ids are unique across stores, as in APScheduler. The job replaced, if any, is the audit's "before".
        let mut replaced = None;
        for (name, other) in self.stores() {
            if *name != jobstore
                && let Some(existing) = other.get_job(&job.id).await?
            {
                if !spec.replace_existing {
                    return Err(Error::Conflict(format!("a job with id {:?} exists (in job store {name:?})", job.id)));
                }
                other.remove_job(&job.id).await?;
                replaced = Some(existing);
            }
        }
        if by.is_some() && spec.replace_existing && replaced.is_none() {
            replaced = store.get_job(&job.id).await?;
        }
        let write = JobWrite::Add { job: &job, replace_existing: spec.replace_existing };
        let audit = by.map(|change| (change, AuditAction::Add, replaced.as_ref()));
        let written = self.write(store.as_ref(), write, audit).await.map_err(|err| match err {
            StoreError::Conflict(_) => {
                Error::Conflict(format!("a job with id {:?} exists; set replace_existing to replace it", job.id))
            }
            other => other.into(),
        })?;
        tracing::info!(job_id = %job.id, jobstore = %job.jobstore, "job added");
        // A replaced job keeps its first created_at, which only the store knows; a new one is as built.
        let stored = written.into_iter().next().unwrap_or(job);
        // Published before the wake-up, so `job_added` precedes the events of the job's first fire.
        self.events.publish_with(EventKind::JobAdded, self.now(), || Subject::Job(Arc::new(stored.clone())));
        // A job watching for staleness may need a look before its first fire.
        self.wake_for(next_run_time.into_iter().chain(crate::health::stale_at(&stored)).min());
        Ok(stored)
    }

    /// Register `function` as `id` and add a job of that id calling it on `trigger`, replacing a job of that id
    /// (as a program that adds its jobs at every start does, on a persistent store). The function gets the fire's
    /// `JobContext`; an `Err` fails the run, which the ledger records as it records a failed webhook.
    pub async fn add_fn_job<F, Fut>(&self, id: &str, trigger: TriggerSpec, function: F) -> Result<Job>
    where
        F: Fn(crate::delivery::JobContext) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        job::validate_id(id).map_err(|message| Error::invalid("id", message))?;
        self.register_fn(id, function);
        self.add_job(JobSpec::new(trigger, Action::function(id)).id(id).replace_existing(true)).await
    }

    /// Register `function` under `name`, for jobs whose action is `Action::function(name)`. Jobs kept in a
    /// persistent store find their function again after a restart once it is registered again.
    pub fn register_fn<F, Fut>(&self, name: &str, function: F)
    where
        F: Fn(crate::delivery::JobContext) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        self.delivery.functions().register(name, function);
    }

    /// Find a job in whichever store holds it, with that store's name.
    pub async fn find_job(&self, id: &str) -> Result<Option<(String, Job)>> {
        for (name, store) in self.stores() {
            if let Some(job) = store.get_job(id).await? {
                return Ok(Some((name.clone(), job)));
            }
        }
        Ok(None)
    }

    /// A job, or `None`.
    pub async fn get_job(&self, id: &str) -> Result<Option<Job>> {
        Ok(self.find_job(id).await?.map(|(_, job)| job))
    }

    /// Every job of every store, in list order (by next run time, paused jobs last).
    pub async fn get_jobs(&self) -> Result<Vec<Job>> {
        let mut jobs = Vec::new();
        for (_, store) in self.stores() {
            let mut after = None;
            loop {
                let query = JobQuery { after, limit: GET_JOBS_PAGE, ..JobQuery::default() };
                let page = store.list_jobs(&query).await?;
                let full = page.len() == GET_JOBS_PAGE;
                after = page.last().map(JobCursor::of);
                jobs.extend(page);
                if !full {
                    break;
                }
            }
        }
        jobs.sort_by(|a, b| job_order_key(a).cmp(&job_order_key(b)));
        Ok(jobs)
    }

    /// Jobs as `filter` says, in list order, across stores.
    pub async fn list_jobs(&self, filter: &JobFilter) -> Result<Vec<Job>> {
        if let Some(name) = &filter.jobstore
            && self.store(name).is_none()
        {
            return Err(Error::invalid("jobstore", format!("no job store named {name:?}")));
        }
        let query = JobQuery {
            paused: filter.paused,
            selector: filter.selector.clone(),
            after: filter.after.clone(),
            limit: filter.limit,
            health: filter.health,
        };
        let mut jobs = Vec::new();
        for (name, store) in self.stores() {
            if filter.jobstore.as_ref().is_none_or(|wanted| wanted == name) {
                jobs.extend(store.list_jobs(&query).await?);
            }
        }
        jobs.sort_by(|a, b| job_order_key(a).cmp(&job_order_key(b)));
        jobs.truncate(filter.limit);
        Ok(jobs)
    }

    /// Change a job; the job as saved.
    pub async fn modify_job(&self, id: &str, changes: JobChanges) -> Result<Job> {
        self.modify_job_as(id, changes, None).await
    }

    /// `modify_job`, recorded in the audit when made `by` someone.
    pub(crate) async fn modify_job_as(&self, id: &str, changes: JobChanges, by: Option<&Change>) -> Result<Job> {
        let (_, job) = self.find_job(id).await?.ok_or_else(|| no_such_job(id))?;
        self.check_changes(&changes)?;
        let before = job.clone();
        // Resuming a job whose trigger has ended is refused here; `resume_job` and a bulk change remove it.
        let now = self.now();
        let trigger = match &changes.trigger {
            Some(spec) => Some(prepare_trigger(spec.clone(), self, now).await?.0),
            None => None,
        };
        let calendars = self.calendars_for(&trigger.as_ref().unwrap_or(&job.trigger).calendar_ids()).await?;
        let job = self.changed(job, &changes, trigger, now, &calendars)?.ok_or_else(no_fire_time)?;
        self.save(&job, by.map(|change| (change, AuditAction::Modify, &before))).await?;
        Ok(job)
    }

    /// What `changes` say that does not depend on the job.
    fn check_changes(&self, changes: &JobChanges) -> Result<()> {
        if let Some(name) = &changes.name {
            check_name(name.as_deref())?;
        }
        if let Some(executor) = &changes.executor {
            self.check_executor(executor)?;
        }
        if let Some(max_instances) = changes.max_instances {
            check_max_instances(max_instances)?;
        }
        if let Some(labels) = &changes.labels {
            check_labels(labels)?;
        }
        if let Some(runs) = changes.max_catchup_runs {
            check_max_catchup_runs(runs)?;
        }
        if let Some(after) = changes.auto_pause_after_failures {
            check_at_least_one("auto_pause_after_failures", after)?;
        }
        if let Some(seconds) = changes.stale_after_seconds {
            check_at_least_one("stale_after_seconds", seconds)?;
        }
        if let Some(action) = &changes.action {
            // Everything but the masks, which only a stored job can fill in (`changed` checks the rest per job).
            let mut unmasked = action.clone();
            if let Action::Http(http) = &mut unmasked
                && http.signing_secret.as_deref() == Some(crate::action::MASK)
            {
                http.signing_secret = None;
            }
            self.check_action(&unmasked)?;
        }
        Ok(())
    }

    /// `job` with `changes` (checked by `check_changes`) applied at `now`; `None` when it is resumed and its
    /// trigger has no fire time left. A new trigger comes `prepared` (resolved and checked, as `prepare_trigger`
    /// does: that needs the store, and a bulk change calls this inside a store transaction); `calendars` hold every
    /// calendar the job's trigger names.
    fn changed(
        &self,
        mut job: Job,
        changes: &JobChanges,
        prepared: Option<TriggerSpec>,
        now: DateTime<Utc>,
        calendars: &CalendarSet,
    ) -> Result<Option<Job>> {
        if let Some(name) = &changes.name {
            job.name.clone_from(name);
        }
        if let Some(action) = &changes.action {
            let mut action = action.clone();
            if let (Action::Http(new), Action::Http(stored)) = (&mut action, &job.action) {
                new.restore_masked(stored)
                    .map_err(|(field, message)| Error::invalid(format!("action.{field}"), message))?;
            }
            self.check_action(&action)?;
            job.action = action;
        }
        if let Some(executor) = &changes.executor {
            job.executor.clone_from(executor);
        }
        if let Some(max_instances) = changes.max_instances {
            job.max_instances = max_instances;
        }
        if let Some(coalesce) = changes.coalesce {
            job.coalesce = coalesce;
        }
        if let Some(grace) = changes.misfire_grace_time {
            job.misfire_grace_time = grace;
        }
        if let Some(labels) = &changes.labels {
            job.labels.clone_from(labels);
        }
        if let Some(runs) = changes.max_catchup_runs {
            job.max_catchup_runs = runs;
        }
        if let Some(overlap) = changes.overlap {
            job.overlap = overlap;
        }
        if let Some(after) = changes.auto_pause_after_failures {
            job.auto_pause_after_failures = after;
        }
        if let Some(seconds) = changes.stale_after_seconds {
            job.stale_after_seconds = seconds;
        }
        if let Some(notify) = &changes.notify {
            let mut notify = notify.clone();
            if let Some(new) = &mut notify {
                new.restore_masked(job.notify.as_ref())
                    .map_err(|(field, message)| Error::invalid(format!("notify.{field}"), message))?;
            }
            check_notify(notify.as_ref())?;
            job.notify = notify;
        }
        let rescheduled = changes.trigger.is_some() || changes.paused == Some(false) && job.paused;
        if let Some(spec) = prepared {
            job.trigger = spec;
        }
        if let Some(paused) = changes.paused {
            job.paused = paused;
            if !paused {
                job.paused_reason = None;
                job.paused_until = None;
            }
        }
        // Compiled only when a time is computed from it: a bulk change of options over many jobs does not pay for it.
        if rescheduled || changes.next_run_time.is_some() {
            let trigger = self.compile_in(&job, calendars)?;
            if rescheduled {
                match trigger.next_fire_time(None, now) {
                    Some(first) => job.next_run_time = (!job.paused).then_some(first),
                    None if changes.trigger.is_none() => return Ok(None),
                    None => return Err(no_fire_time()),
                }
            }
            if let Some(given) = &changes.next_run_time
                && !job.paused
            {
                job.next_run_time = Some(parse_next_run_time(given, &trigger)?);
            }
        }
        if job.paused {
            job.next_run_time = None;
        }
        job.updated_at = now;
        Ok(Some(job))
    }

    /// Apply `changes` to every job `selector` selects, in every store, as `modify_job` applies them to one: a
    /// paused job that is resumed gets its next run time from now, and one whose trigger has ended is removed, as
    /// `resume_job` does. The schedule (`trigger`, `next_run_time`) is changed job by job, not here. The number of
    /// jobs changed (removed ones included). Each store's jobs change in one transaction: an error in one leaves it
    /// as it was.
    pub async fn modify_jobs(&self, selector: &Selector, changes: JobChanges) -> Result<u64> {
        check_bulk_selector(selector)?;
        if changes.trigger.is_some() {
            return Err(Error::invalid("trigger", "cannot be changed on many jobs at once; change each job"));
        }
        if changes.next_run_time.is_some() {
            return Err(Error::invalid("next_run_time", "cannot be changed on many jobs at once; change each job"));
        }
        self.check_changes(&changes)?;
        let now = self.now();
        // Every calendar, read before the stores' transactions: a resumed job's next run time needs its own.
        let calendars = self.calendars_for(&[]).await?;
        let mut modified = 0;
        for (name, store) in self.stores() {
            // The editor reports a refusal through the store as an error that aborts its transaction; the
            // refusal itself (which field, why) is kept here for the caller.
            let refusal = std::sync::Mutex::new(None);
            let edit = |job: Job| -> crate::store::StoreResult<Edit> {
                let id = job.id.clone();
                match self.changed(job, &changes, None, now, &calendars) {
                    Ok(Some(job)) => Ok(Edit::Save(job)),
                    Ok(None) => {
                        tracing::info!(job_id = %id, "resumed job removed: its trigger has no fire time left");
                        Ok(Edit::Remove)
                    }
                    Err(err) => {
                        let message = format!("job {id:?}: {err}");
                        *refusal.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(err);
                        Err(StoreError::Conflict(message))
                    }
                }
            };
            match store.modify_jobs(selector, &edit).await {
                Ok(edited) => {
                    modified += edited.saved + edited.removed;
                    if edited.saved + edited.removed > 0 {
                        let subject = Subject::SelectedJobs {
                            selector: selector.to_string(),
                            jobstore: name.clone(),
                            count: edited.saved + edited.removed,
                        };
                        self.publish(EventKind::JobsModified, subject);
                    }
                }
                Err(err) => {
                    let refused = refusal.into_inner().unwrap_or_else(|poisoned| poisoned.into_inner());
                    return Err(refused.unwrap_or_else(|| err.into()));
                }
            }
        }
        tracing::info!(%selector, modified, "jobs modified");
        self.wake();
        Ok(modified)
    }

    /// Remove every job `selector` selects, of every store or of the one named; the number removed. Their runs
    /// stay in the history until pruned.
    pub async fn remove_jobs(&self, selector: &Selector, jobstore: Option<&str>) -> Result<u64> {
        check_bulk_selector(selector)?;
        if let Some(name) = jobstore
            && self.store(name).is_none()
        {
            return Err(Error::invalid("jobstore", format!("no job store named {name:?}")));
        }
        let mut removed = 0;
        for (name, store) in self.stores() {
            if jobstore.is_none_or(|wanted| wanted == name) {
                let count = store.remove_jobs(selector).await?;
                removed += count;
                if count > 0 {
                    let subject =
                        Subject::SelectedJobs { selector: selector.to_string(), jobstore: name.clone(), count };
                    self.publish(EventKind::JobsRemoved, subject);
                }
            }
        }
        tracing::info!(%selector, removed, "jobs removed");
        self.wake();
        Ok(removed)
    }

    /// Give a job a new trigger; its next run time is recomputed from now.
    pub async fn reschedule_job(&self, id: &str, trigger: TriggerSpec) -> Result<Job> {
        self.modify_job(id, JobChanges { trigger: Some(trigger), ..JobChanges::default() }).await
    }

    /// Pause a job: its next run time becomes `None` until it is resumed.
    pub async fn pause_job(&self, id: &str) -> Result<Job> {
        self.pause_job_as(id, None).await
    }

    /// `pause_job`, recorded in the audit when made `by` someone (also when the job was paused already).
    pub(crate) async fn pause_job_as(&self, id: &str, by: Option<&Change>) -> Result<Job> {
        self.pause_job_noted(id, None, None, by).await
    }

    /// `pause_job_as` with why (`paused_reason`) and until when (`paused_until`, in the future: the job resumes by
    /// itself then). Pausing a paused job again with a reason or a time replaces them.
    pub(crate) async fn pause_job_noted(
        &self,
        id: &str,
        reason: Option<String>,
        until: Option<DateTime<Utc>>,
        by: Option<&Change>,
    ) -> Result<Job> {
        let (store_name, mut job) = self.find_job(id).await?.ok_or_else(|| no_such_job(id))?;
        if until.is_some_and(|until| until <= self.now()) {
            return Err(Error::invalid("until", "must be in the future"));
        }
        let noted = reason.is_some() || until.is_some();
        if !job.paused || noted {
            let before = job.clone();
            job.paused = true;
            job.next_run_time = None;
            job.paused_reason = reason;
            job.paused_until = until;
            job.updated_at = self.now();
            self.save(&job, by.map(|change| (change, AuditAction::Pause, &before))).await?;
            if until.is_some() {
                self.wake();
            }
        } else if let Some(change) = by {
            self.record_unchanged(&store_name, change, AuditAction::Pause, &job).await?;
        }
        Ok(job)
    }

    /// Resume a job: its next run time is recomputed from now. A job whose trigger has ended is removed, as
    /// APScheduler does; the job is returned as it was last.
    pub async fn resume_job(&self, id: &str) -> Result<Job> {
        self.resume_job_as(id, None).await
    }

    /// `resume_job`, recorded in the audit when made `by` someone (also when the job was not paused).
    pub(crate) async fn resume_job_as(&self, id: &str, by: Option<&Change>) -> Result<Job> {
        let (store_name, mut job) = self.find_job(id).await?.ok_or_else(|| no_such_job(id))?;
        if job.paused {
            let before = job.clone();
            let trigger = self.compile(&job).await?;
            let now = self.now();
            job.paused = false;
            job.paused_reason = None;
            job.paused_until = None;
            job.updated_at = now;
            job.next_run_time = trigger.next_fire_time(None, now);
            if job.next_run_time.is_none() {
                let audit = by.map(|change| (change, AuditAction::Resume, None));
                if let Some(store) = self.store(&store_name)
                    && !self.write(store.as_ref(), JobWrite::Remove(&job.id), audit).await?.is_empty()
                {
                    self.publish_removed(&job.id, &store_name);
                }
            } else {
                self.save(&job, by.map(|change| (change, AuditAction::Resume, &before))).await?;
            }
        } else if let Some(change) = by {
            self.record_unchanged(&store_name, change, AuditAction::Resume, &job).await?;
        }
        Ok(job)
    }

    /// Remove a job; its runs stay in the history until pruned.
    pub async fn remove_job(&self, id: &str) -> Result<()> {
        self.remove_job_as(id, None).await
    }

    /// `remove_job`, recorded in the audit when made `by` someone.
    pub(crate) async fn remove_job_as(&self, id: &str, by: Option<&Change>) -> Result<()> {
        for (name, store) in self.stores() {
            let audit = by.map(|change| (change, AuditAction::Remove, None));
            if !self.write(store.as_ref(), JobWrite::Remove(id), audit).await?.is_empty() {
                self.wake();
                self.publish_removed(id, name);
                return Ok(());
            }
        }
        Err(no_such_job(id))
    }

    /// Remove every job, or every job of one store; the number removed.
    pub async fn remove_all_jobs(&self, jobstore: Option<&str>) -> Result<u64> {
        self.remove_all_jobs_as(jobstore, None).await
    }

    /// `remove_all_jobs`, recorded in the audit (an entry per job removed) when made `by` someone.
    pub(crate) async fn remove_all_jobs_as(&self, jobstore: Option<&str>, by: Option<&Change>) -> Result<u64> {
        if let Some(name) = jobstore
            && self.store(name).is_none()
        {
            return Err(Error::invalid("jobstore", format!("no job store named {name:?}")));
        }
        let mut removed = 0;
        for (name, store) in self.stores() {
            if jobstore.is_none_or(|wanted| wanted == name) {
                removed += match by {
                    // Without an audit the removed jobs are not read back.
                    None => store.remove_all_jobs().await?,
                    Some(change) => {
                        let audit = Some((change, AuditAction::RemoveAll, None));
                        self.write(store.as_ref(), JobWrite::RemoveAll, audit).await?.len() as u64
                    }
                };
            }
        }
        self.wake();
        let subject = Subject::AllJobs { jobstore: jobstore.map(str::to_string), removed };
        self.publish(EventKind::AllJobsRemoved, subject);
        Ok(removed)
    }

    /// Run a job once now, outside its schedule: a new ledger row (its scheduled time is now, its key new),
    /// delivered at once. The pending run.
    pub async fn run_job(self: &Arc<Self>, id: &str) -> Result<Run> {
        self.run_job_as(id, None).await
    }

    /// `run_job`, recorded in the audit when made `by` someone.
    pub(crate) async fn run_job_as(self: &Arc<Self>, id: &str, by: Option<&Change>) -> Result<Run> {
        let (store_name, job) = self.find_job(id).await?.ok_or_else(|| no_such_job(id))?;
        let store = self.store(&store_name).cloned().ok_or(StoreError::NotFound)?;
        let now = self.now();
        let mut run = Run::new(&job, now, RunStatus::Pending, now, job.trigger.timezone(self.default_tz));
        run.kind = RunKind::Manual;
        if matches!(job.overlap, Overlap::BufferOne | Overlap::BufferAll) {
            self.buffering_jobs.lock().unwrap_or_else(|p| p.into_inner()).insert(job.id.clone());
        }
        run.lease_expires_at = Some(now + self.lease());
        let audit = by.map(|change| (change, AuditAction::Run, Some(&job)));
        self.write(store.as_ref(), JobWrite::InsertRun { run: &run, job: &job }, audit).await?;
        self.metrics.fire(run.status);
        self.submit(&store_name, store, vec![run.clone()], vec![None]);
        Ok(run)
    }

    /// A job's runs, newest first, across stores: at most `query.limit`. Also after the job was removed; a job
    /// with neither runs nor existence is `NotFound`.
    pub async fn list_runs(&self, job_id: &str, query: &RunQuery) -> Result<Vec<Run>> {
        let mut runs = self.runs_in_every_store(job_id, query).await?;
        if runs.is_empty() && query.after.is_none() && self.find_job(job_id).await?.is_none() {
            // A job's last claim removes it and records its run in one transaction, which may have committed
            // between the two reads: read the runs once more before saying there are none.
            runs = self.runs_in_every_store(job_id, query).await?;
            if runs.is_empty() {
                return Err(Error::NotFound(format!("no job with id {job_id:?} and no runs of one")));
            }
        }
        runs.sort_by(|a, b| (b.scheduled_time, &b.idempotency_key).cmp(&(a.scheduled_time, &a.idempotency_key)));
        runs.truncate(query.limit);
        Ok(runs)
    }

    /// The newest `limit` health notifications about job `job_id`, newest first; also after it was removed.
    pub async fn list_notifications(&self, job_id: &str, limit: usize) -> Result<Vec<Notification>> {
        let mut notifications = Vec::new();
        for (_, store) in self.stores() {
            notifications.extend(store.list_notifications(job_id, limit).await?);
        }
        if notifications.is_empty() && self.find_job(job_id).await?.is_none() {
            return Err(Error::NotFound(format!("no job with id {job_id:?} and no notifications about one")));
        }
        notifications.sort_by(|a, b| (b.created_at, &b.id).cmp(&(a.created_at, &a.id)));
        notifications.truncate(limit);
        Ok(notifications)
    }

    async fn runs_in_every_store(&self, job_id: &str, query: &RunQuery) -> Result<Vec<Run>> {
        let mut runs = Vec::new();
        for (_, store) in self.stores() {
            runs.extend(store.list_runs(job_id, query).await?);
        }
        Ok(runs)
    }

    /// `compile` with the calendars at hand.
    fn compile_in(&self, job: &Job, calendars: &CalendarSet) -> Result<Trigger> {
        job.trigger.compile_with(self.default_tz, calendars).map_err(|err| StoreError::Corrupt(err.to_string()).into())
    }

    pub(super) async fn compile(&self, job: &Job) -> Result<Trigger> {
        // Saved triggers were checked when saved; one that no longer compiles (the zone database changed) is the
        // store's problem, not the caller's input.
        let calendars = self.calendars_for(&job.trigger.calendar_ids()).await?;
        job.trigger
            .compile_with(self.default_tz, calendars.as_ref())
            .map_err(|err| StoreError::Corrupt(err.to_string()).into())
    }

    /// Save a changed job, then report it and wake the loop: published first, so `job_modified` precedes any
    /// event of the fires the change brings.
    /// `audit`: who changed it, how, and the job before the change.
    async fn save(&self, job: &Job, audit: Option<(&Change, AuditAction, &Job)>) -> Result<()> {
        let store = self.store(&job.jobstore).ok_or_else(|| no_such_job(&job.id))?;
        let audit = audit.map(|(change, action, before)| (change, action, Some(before)));
        self.write(store.as_ref(), JobWrite::Update(job), audit).await.map_err(|err| match err {
            StoreError::NotFound => no_such_job(&job.id),
            other => other.into(),
        })?;
        self.publish(EventKind::JobModified, Subject::Job(Arc::new(job.clone())));
        self.wake();
        Ok(())
    }

    fn publish_removed(&self, job_id: &str, jobstore: &str) {
        let subject = Subject::RemovedJob { job_id: job_id.to_string(), jobstore: jobstore.to_string() };
        self.publish(EventKind::JobRemoved, subject);
    }
}

/// Jobs read per store query by `get_jobs`: bounds one query's size however many jobs a store holds.
const GET_JOBS_PAGE: usize = 1000;
