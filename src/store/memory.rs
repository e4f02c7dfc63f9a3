//! The memory store: jobs and the ledger in process memory, lost on exit (APScheduler's MemoryJobStore).

mod backfills;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio::sync::Mutex;

use super::{
    AuditEntryOf, CANCELLED, Edit, Edited, Editor, FirePlan, JobQuery, JobStore, JobWrite, Load, Planner, Prune,
    RunQuery, SUPERSEDED, StoreError, StoreResult, job_order_key,
};
use crate::audit::{AuditEntry, AuditQuery};
use crate::calendar::Calendar;
use crate::job::{Job, Run, RunStatus};
use crate::labels::Selector;

#[derive(Default)]
struct State {
    jobs: HashMap<String, Job>,
    /// (next run time, id) of every unpaused job that has a next run time, as the SQL stores' `jobs_due` index:
    /// what the claim and the wake-up read, so their cost does not grow with the jobs that are not due.
    due: BTreeSet<(DateTime<Utc>, String)>,
    /// Ledger keyed by (job id, scheduled time), as the SQL stores' unique index.
    runs: BTreeMap<(String, DateTime<Utc>), Run>,
    /// The audit trail, by (time, id): oldest first.
    audit: BTreeMap<(DateTime<Utc>, String), AuditEntry>,
    calendars: BTreeMap<String, Calendar>,
    /// Counts every change to `calendars`.
    calendar_version: u64,
    /// Jobs that may have buffered runs, as the SQL stores' `runs_buffered` index: what `promote_buffered` walks,
    /// so its cost does not grow with the ledger.
    buffering: BTreeSet<String>,
    /// Backfills by id.
    backfills: BTreeMap<String, crate::backfill::Backfill>,
    /// The notifications ledger, by id.
    notifications: BTreeMap<String, crate::notify::ledger::Notification>,
}

fn due_key(job: &Job) -> Option<(DateTime<Utc>, String)> {
    job.next_run_time.filter(|_| !job.paused).map(|time| (time, job.id.clone()))
}

/// Every change to `jobs` goes through these, so `due` stays in step.
impl State {
    /// A job's health is the store's own: a write of the job keeps what is stored (as the SQL stores' statements
    /// leave its columns alone).
    fn put(&mut self, mut job: Job) {
        if let Some(existing) = self.take(&job.id) {
            job.health = existing.health;
        }
        if let Some(key) = due_key(&job) {
            self.due.insert(key);
        }
        self.jobs.insert(job.id.clone(), job);
    }

    fn take(&mut self, id: &str) -> Option<Job> {
        let job = self.jobs.remove(id)?;
        if let Some(key) = due_key(&job) {
            self.due.remove(&key);
        }
        Some(job)
    }

    fn clear(&mut self) {
        self.jobs.clear();
        self.due.clear();
    }

    fn add(&mut self, job: &Job, replace_existing: bool) -> StoreResult<Job> {
        let mut job = job.clone();
        if let Some(existing) = self.jobs.get(&job.id) {
            if !replace_existing {
                return Err(StoreError::Conflict(format!("job {:?} exists", job.id)));
            }
            job.created_at = existing.created_at;
        }
        self.put(job.clone());
        Ok(job)
    }

    fn insert_run(&mut self, run: &Run) -> StoreResult<()> {
        let key = (run.job_id.clone(), run.scheduled_time);
        if self.runs.contains_key(&key) {
            return Err(StoreError::Conflict(format!("a run of {:?} at {} exists", run.job_id, run.scheduled_time)));
        }
        if run.status == RunStatus::Buffered {
            self.buffering.insert(run.job_id.clone());
        }
        self.runs.insert(key, run.clone());
        Ok(())
    }

    fn record(&mut self, entry: AuditEntry) {
        self.audit.insert((entry.time, entry.id.clone()), entry);
    }
}

/// Jobs and runs in this process's memory, gone when it exits.
#[derive(Default)]
pub struct MemoryStore {
    state: Mutex<State>,
    /// `[notify]`, for the jobs without their own `notify`.
    notify_default: crate::notify::DefaultSpec,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }
}

/// A job's runs, oldest fire first.
fn runs_of<'a>(
    runs: &'a mut BTreeMap<(String, DateTime<Utc>), Run>,
    job_id: &'a str,
) -> impl Iterator<Item = &'a mut Run> + 'a {
    let from = (job_id.to_string(), DateTime::<Utc>::MIN_UTC);
    runs.range_mut(from..).take_while(move |((id, _), _)| id == job_id).map(|(_, run)| run)
}

fn load_of(runs: &mut BTreeMap<(String, DateTime<Utc>), Run>, job_id: &str) -> Load {
    let mut load = Load::default();
    for run in runs_of(runs, job_id) {
        if run.status.is_unfinished() {
            load.active += 1;
        } else if run.status == RunStatus::Buffered {
            load.buffered += 1;
        }
    }
    load
}

/// Record a job's buffered fires skipped, or cancel its oldest `cancel` unfinished runs, as a plan says; the runs
/// changed.
fn apply_overlap(state: &mut State, job_id: &str, plan: &FirePlan, now: DateTime<Utc>) -> Vec<Run> {
    let mut changed = Vec::new();
    let mut cancel = plan.cancel_oldest;
    for run in runs_of(&mut state.runs, job_id) {
        let (status, error) = match run.status {
            RunStatus::Buffered if plan.supersede_buffered => (RunStatus::Skipped, SUPERSEDED),
            RunStatus::Pending | RunStatus::Running if cancel > 0 => {
                cancel -= 1;
                run.lease_expires_at = None;
                (RunStatus::Cancelled, CANCELLED)
            }
            _ => continue,
        };
        run.status = status;
        run.error = Some(error.to_string());
        run.finished_at = Some(now);
        changed.push(run.clone());
    }
    changed
}

#[async_trait]
impl JobStore for MemoryStore {
    fn kind(&self) -> crate::store::StoreType {
        crate::store::StoreType::Memory
    }

    async fn ping(&self) -> StoreResult<()> {
        Ok(())
    }

    async fn add_job(&self, job: &Job, replace_existing: bool) -> StoreResult<()> {
        self.state.lock().await.add(job, replace_existing).map(|_| ())
    }

    async fn update_job(&self, job: &Job) -> StoreResult<()> {
        let mut state = self.state.lock().await;
        if !state.jobs.contains_key(&job.id) {
            return Err(StoreError::NotFound);
        }
        state.put(job.clone());
        Ok(())
    }

    async fn get_job(&self, id: &str) -> StoreResult<Option<Job>> {
        Ok(self.state.lock().await.jobs.get(id).cloned())
    }

    async fn remove_job(&self, id: &str) -> StoreResult<bool> {
        Ok(self.state.lock().await.take(id).is_some())
    }

    async fn remove_all_jobs(&self) -> StoreResult<u64> {
        let mut state = self.state.lock().await;
        let removed = state.jobs.len() as u64;
        state.clear();
        Ok(removed)
    }

    async fn remove_jobs(&self, selector: &Selector) -> StoreResult<u64> {
        let mut state = self.state.lock().await;
        let doomed: Vec<String> =
            state.jobs.values().filter(|job| selector.matches(&job.labels)).map(|job| job.id.clone()).collect();
        for id in &doomed {
            state.take(id);
        }
        Ok(doomed.len() as u64)
    }

    async fn modify_jobs(&self, selector: &Selector, edit: &Editor<'_>) -> StoreResult<Edited> {
        let mut state = self.state.lock().await;
        // Every edit is decided before any is applied, so an error leaves the store as it was.
        let mut edits = Vec::new();
        for job in state.jobs.values().filter(|job| selector.matches(&job.labels)) {
            edits.push((job.id.clone(), edit(job.clone())?));
        }
        let mut edited = Edited::default();
        for (id, outcome) in edits {
            match outcome {
                Edit::Save(job) => {
                    edited.saved += 1;
                    state.put(job);
                }
                Edit::Remove => {
                    edited.removed += 1;
                    state.take(&id);
                }
            }
        }
        Ok(edited)
    }

    async fn list_jobs(&self, query: &JobQuery) -> StoreResult<Vec<Job>> {
        let state = self.state.lock().await;
        let mut jobs: Vec<&Job> = state
            .jobs
            .values()
            .filter(|job| query.paused.is_none_or(|paused| job.paused == paused))
            .filter(|job| query.health.is_none_or(|state| job.health.state() == state))
            .filter(|job| query.selector.matches(&job.labels))
            .filter(|job| query.after.as_ref().is_none_or(|cursor| cursor.precedes(job)))
            .collect();
        jobs.sort_by(|a, b| job_order_key(a).cmp(&job_order_key(b)));
        Ok(jobs.into_iter().take(query.limit).cloned().collect())
    }

    async fn count_jobs(&self) -> StoreResult<u64> {
        Ok(self.state.lock().await.jobs.len() as u64)
    }

    async fn earliest_next_run_time(&self) -> StoreResult<Option<DateTime<Utc>>> {
        Ok(self.state.lock().await.due.first().map(|(time, _)| *time))
    }

    async fn claim_due(
        &self,
        now: DateTime<Utc>,
        limit: usize,
        lease_until: DateTime<Utc>,
        planner: &dyn Planner,
    ) -> StoreResult<Vec<Run>> {
        let mut state = self.state.lock().await;
        let due: Vec<String> =
            state.due.iter().take_while(|(time, _)| *time <= now).take(limit).map(|(_, id)| id.clone()).collect();
        let mut inserted = Vec::new();
        let default = self.notify_default.get();
        for id in due {
            let Some(mut job) = state.take(&id) else { continue };
            let plan = planner.plan(&job, load_of(&mut state.runs, &job.id), now);
            inserted.extend(apply_overlap(&mut state, &job.id, &plan, now));
            let FirePlan { runs, next_run_time, .. } = plan;
            let removed = crate::notify::keep_removed_job(&job, next_run_time, default.as_ref());
            for mut run in runs {
                let key = (run.job_id.clone(), run.scheduled_time);
                if state.runs.contains_key(&key) {
                    continue;
                }
                if run.status.is_unfinished() {
                    run.lease_expires_at = Some(lease_until);
                    run.removed_job = removed.clone();
                }
                if run.status == RunStatus::Buffered {
                    state.buffering.insert(run.job_id.clone());
                }
                if let Some(notification) = crate::notify::for_missed(&job, &run, default.as_ref()) {
                    state.notifications.insert(notification.id.clone(), notification);
                }
                inserted.push(run.clone());
                state.runs.insert(key, run);
            }
            // A finished trigger's job stays taken out.
            if let Some(next) = next_run_time {
                job.next_run_time = Some(next);
                state.put(job);
            }
        }
        Ok(inserted)
    }

    async fn insert_run(&self, run: &Run) -> StoreResult<()> {
        self.state.lock().await.insert_run(run)
    }

    async fn update_run(&self, run: &Run) -> StoreResult<()> {
        let mut state = self.state.lock().await;
        match state.runs.get_mut(&(run.job_id.clone(), run.scheduled_time)) {
            Some(stored) if stored.idempotency_key == run.idempotency_key && stored.status != RunStatus::Cancelled => {
                let first_outcome = !crate::health::counts(stored.status) && crate::health::counts(run.status);
                stored.take_progress(run);
                if first_outcome && let Some(job) = state.jobs.get(&run.job_id) {
                    let mut job = job.clone();
                    let before = job.health.consecutive_failures;
                    let at = run.finished_at.unwrap_or(run.created_at);
                    job.health.record(run.status == RunStatus::Succeeded, at);
                    let auto_pause =
                        !job.paused && crate::health::should_auto_pause(job.auto_pause_after_failures, &job.health);
                    if auto_pause {
                        job.paused = true;
                        job.next_run_time = None;
                        job.paused_until = None;
                        job.paused_reason = Some(crate::health::auto_pause_reason(job.health.consecutive_failures));
                    }
                    let default = self.notify_default.get();
                    for notification in crate::notify::for_outcome(&job, run, before, auto_pause, default.as_ref()) {
                        state.notifications.insert(notification.id.clone(), notification);
                    }
                    let health = job.health.clone();
                    state.put(job.clone());
                    if let Some(stored) = state.jobs.get_mut(&run.job_id) {
                        stored.health = health;
                    }
                } else if first_outcome {
                    let default = self.notify_default.get();
                    for notification in crate::notify::for_outcome_of_removed_job(run, default.as_ref()) {
                        state.notifications.insert(notification.id.clone(), notification);
                    }
                }
                Ok(())
            }
            _ => Err(StoreError::NotFound),
        }
    }

    async fn take_expired_runs(&self, now: DateTime<Utc>, lease_until: DateTime<Utc>) -> StoreResult<Vec<Run>> {
        let mut state = self.state.lock().await;
        let mut taken = Vec::new();
        for run in state.runs.values_mut() {
            if run.status.is_unfinished() && run.lease_expires_at.is_none_or(|lease| lease < now) {
                run.lease_expires_at = Some(lease_until);
                taken.push(run.clone());
            }
        }
        Ok(taken)
    }

    async fn promote_buffered(&self, lease_until: DateTime<Utc>) -> StoreResult<Vec<Run>> {
        let mut state = self.state.lock().await;
        let waiting: Vec<String> = state.buffering.iter().cloned().collect();
        let mut promoted = Vec::new();
        for job_id in waiting {
            if load_of(&mut state.runs, &job_id).buffered == 0 {
                state.buffering.remove(&job_id);
                continue;
            }
            let max_instances = state.jobs.get(&job_id).map_or(1, |job| job.max_instances);
            let mut room = max_instances.saturating_sub(load_of(&mut state.runs, &job_id).active);
            for run in runs_of(&mut state.runs, &job_id) {
                if room == 0 {
                    break;
                }
                if run.status == RunStatus::Buffered {
                    run.status = RunStatus::Pending;
                    run.lease_expires_at = Some(lease_until);
                    promoted.push(run.clone());
                    room -= 1;
                }
            }
        }
        promoted.sort_by(|a, b| (a.scheduled_time, &a.job_id).cmp(&(b.scheduled_time, &b.job_id)));
        Ok(promoted)
    }

    async fn extend_leases(&self, idempotency_keys: &[String], lease_until: DateTime<Utc>) -> StoreResult<Vec<String>> {
        let mut state = self.state.lock().await;
        let mut cancelled = Vec::new();
        for run in state.runs.values_mut() {
            if idempotency_keys.contains(&run.idempotency_key) {
                if run.status.is_unfinished() {
                    run.lease_expires_at = Some(lease_until);
                } else if run.status == RunStatus::Cancelled {
                    cancelled.push(run.idempotency_key.clone());
                }
            }
        }
        Ok(cancelled)
    }

    async fn list_runs(&self, job_id: &str, query: &RunQuery) -> StoreResult<Vec<Run>> {
        let state = self.state.lock().await;
        let from = (job_id.to_string(), DateTime::<Utc>::MIN_UTC);
        let mut runs: Vec<&Run> = state
            .runs
            .range(from..)
            .take_while(|((id, _), _)| id == job_id)
            .map(|(_, run)| run)
            .filter(|run| query.status.is_none_or(|status| run.status == status))
            .filter(|run| {
                query.after.as_ref().is_none_or(|cursor| {
                    (run.scheduled_time, run.idempotency_key.as_str())
                        < (cursor.scheduled_time, cursor.idempotency_key.as_str())
                })
            })
            .collect();
        runs.sort_by_key(|run| std::cmp::Reverse(run.scheduled_time));
        Ok(runs.into_iter().take(query.limit).cloned().collect())
    }

    async fn prune_runs(&self, prune: &Prune) -> StoreResult<u64> {
        if prune.limit == 0 {
            return Ok(0);
        }
        let mut state = self.state.lock().await;
        let mut doomed = Vec::new();
        let mut kept_of_job: (Option<&str>, u64) = (None, 0);
        // The map is ordered by (job id, scheduled time): walking it backwards meets each job's newest runs first.
        for (key, run) in state.runs.iter().rev() {
            if !run.status.is_final() {
                continue;
            }
            if kept_of_job.0 != Some(run.job_id.as_str()) {
                kept_of_job = (Some(run.job_id.as_str()), 0);
            }
            kept_of_job.1 += 1;
            let too_old =
                prune.finished_before.is_some_and(|cutoff| run.finished_at.unwrap_or(run.created_at) < cutoff);
            let too_many = prune.keep_per_job.is_some_and(|keep| kept_of_job.1 > keep);
            if too_old || too_many {
                doomed.push(key.clone());
                if doomed.len() >= prune.limit {
                    break;
                }
            }
        }
        for key in &doomed {
            state.runs.remove(key);
        }
        Ok(doomed.len() as u64)
    }

    /// Under the one lock, so the write and its entries are one step, as a transaction makes them elsewhere.
    async fn write_audited(&self, write: JobWrite<'_>, audit: Option<AuditEntryOf<'_>>) -> StoreResult<Vec<Job>> {
        let mut state = self.state.lock().await;
        let affected = match write {
            JobWrite::Add { job, replace_existing } => vec![state.add(job, replace_existing)?],
            JobWrite::Update(job) => {
                if !state.jobs.contains_key(&job.id) {
                    return Err(StoreError::NotFound);
                }
                state.put(job.clone());
                vec![job.clone()]
            }
            JobWrite::Remove(id) => state.take(id).into_iter().collect(),
            JobWrite::RemoveAll => {
                let mut removed: Vec<Job> = state.jobs.drain().map(|(_, job)| job).collect();
                state.clear();
                removed.sort_by(|a, b| a.id.cmp(&b.id));
                removed
            }
            JobWrite::InsertRun { run, job } => {
                state.insert_run(run)?;
                vec![job.clone()]
            }
        };
        if let Some(audit) = audit {
            for job in &affected {
                state.record(audit(job));
            }
        }
        Ok(affected)
    }

    async fn record_audit(&self, entries: &[AuditEntry]) -> StoreResult<()> {
        let mut state = self.state.lock().await;
        for entry in entries {
            state.record(entry.clone());
        }
        Ok(())
    }

    async fn list_audit(&self, query: &AuditQuery) -> StoreResult<Vec<AuditEntry>> {
        let state = self.state.lock().await;
        Ok(state.audit.values().rev().filter(|entry| query.matches(entry)).take(query.limit).cloned().collect())
    }

    async fn prune_audit(&self, before: DateTime<Utc>, limit: usize) -> StoreResult<u64> {
        let mut state = self.state.lock().await;
        let doomed: Vec<(DateTime<Utc>, String)> =
            state.audit.keys().take_while(|(time, _)| *time < before).take(limit).cloned().collect();
        for key in &doomed {
            state.audit.remove(key);
        }
        Ok(doomed.len() as u64)
    }

    async fn put_calendar(&self, calendar: &Calendar) -> StoreResult<()> {
        let mut state = self.state.lock().await;
        state.calendars.insert(calendar.id.clone(), calendar.clone());
        state.calendar_version += 1;
        Ok(())
    }

    async fn get_calendar(&self, id: &str) -> StoreResult<Option<Calendar>> {
        Ok(self.state.lock().await.calendars.get(id).cloned())
    }

    async fn list_calendars(&self) -> StoreResult<Vec<Calendar>> {
        Ok(self.state.lock().await.calendars.values().cloned().collect())
    }

    async fn remove_calendar(&self, id: &str) -> StoreResult<bool> {
        let mut state = self.state.lock().await;
        let removed = state.calendars.remove(id).is_some();
        if removed {
            state.calendar_version += 1;
        }
        Ok(removed)
    }

    async fn calendar_version(&self) -> StoreResult<u64> {
        Ok(self.state.lock().await.calendar_version)
    }

    async fn jobs_with_calendars(&self) -> StoreResult<Vec<Job>> {
        let state = self.state.lock().await;
        let mut jobs: Vec<Job> =
            state.jobs.values().filter(|job| !job.trigger.calendar_ids().is_empty()).cloned().collect();
        jobs.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(jobs)
    }

    async fn take_due_resumes(&self, now: DateTime<Utc>) -> StoreResult<Vec<Job>> {
        let mut state = self.state.lock().await;
        let mut taken = Vec::new();
        for job in state.jobs.values_mut() {
            if job.paused && job.paused_until.is_some_and(|until| until <= now) {
                job.paused_until = None;
                taken.push(job.clone());
            }
        }
        Ok(taken)
    }

    async fn mark_stale(&self, now: DateTime<Utc>) -> StoreResult<(Vec<Job>, Option<DateTime<Utc>>)> {
        let mut state = self.state.lock().await;
        let (mut marked, mut next) = (Vec::new(), None);
        for job in state.jobs.values_mut() {
            match crate::health::stale_at(job) {
                Some(at) if at <= now => {
                    job.health.stale = true;
                    marked.push(job.clone());
                }
                Some(at) => next = Some(next.map_or(at, |next: DateTime<Utc>| next.min(at))),
                None => {}
            }
        }
        let default = self.notify_default.get();
        for notification in marked.iter().filter_map(|job| crate::notify::for_stale(job, default.as_ref(), now)) {
            state.notifications.insert(notification.id.clone(), notification);
        }
        Ok((marked, next))
    }

    async fn earliest_times(&self) -> StoreResult<(Option<DateTime<Utc>>, Option<DateTime<Utc>>)> {
        let state = self.state.lock().await;
        let next_run_time = state.due.first().map(|(time, _)| *time);
        Ok((next_run_time, state.jobs.values().filter(|job| job.paused).filter_map(|job| job.paused_until).min()))
    }

    async fn create_backfill(&self, backfill: &crate::backfill::Backfill) -> StoreResult<()> {
        self.create_backfill_in(backfill).await
    }

    async fn get_backfill(&self, id: &str) -> StoreResult<Option<crate::backfill::Backfill>> {
        self.get_backfill_in(id).await
    }

    async fn list_backfills(&self, job_id: &str) -> StoreResult<Vec<crate::backfill::Backfill>> {
        self.list_backfills_in(job_id).await
    }

    async fn cancel_backfill(&self, id: &str) -> StoreResult<Option<crate::backfill::Backfill>> {
        self.cancel_backfill_in(id).await
    }

    async fn due_backfills(&self, now: DateTime<Utc>, limit: usize) -> StoreResult<Vec<crate::backfill::Backfill>> {
        self.due_backfills_in(now, limit).await
    }

    async fn step_backfill(&self, step: &crate::backfill::BackfillStep) -> StoreResult<crate::backfill::StepOutcome> {
        self.step_backfill_in(step).await
    }

    async fn insert_notifications(&self, notifications: &[crate::notify::ledger::Notification]) -> StoreResult<()> {
        let mut state = self.state.lock().await;
        if let Some(taken) = notifications.iter().find(|n| state.notifications.contains_key(&n.id)) {
            return Err(StoreError::Corrupt(format!("notification {:?} is in the ledger already", taken.id)));
        }
        for notification in notifications {
            state.notifications.insert(notification.id.clone(), notification.clone());
        }
        Ok(())
    }

    async fn claim_notifications(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: usize,
    ) -> StoreResult<Vec<crate::notify::ledger::Notification>> {
        // The state's mutex is the lease's lock: one claimer at a time.
        let mut state = self.state.lock().await;
        let mut due: Vec<&mut crate::notify::ledger::Notification> =
            state.notifications.values_mut().filter(|n| n.claimable(now)).collect();
        due.sort_by_key(|n| n.next_attempt_at);
        Ok(due
            .into_iter()
            .take(limit)
            .map(|n| {
                n.lease_until = Some(lease_until);
                n.attempts = n.attempts.saturating_add(1);
                n.clone()
            })
            .collect())
    }

    async fn finish_notification(&self, id: &str, finish: &crate::notify::ledger::Finish) -> StoreResult<bool> {
        let mut state = self.state.lock().await;
        let Some(notification) = state.notifications.get_mut(id) else { return Ok(false) };
        finish.apply(notification);
        Ok(true)
    }

    async fn list_notifications(
        &self,
        job_id: &str,
        limit: usize,
    ) -> StoreResult<Vec<crate::notify::ledger::Notification>> {
        let state = self.state.lock().await;
        let mut of_job: Vec<_> = state.notifications.values().filter(|n| n.job_id == job_id).cloned().collect();
        of_job.sort_by(|a, b| (b.created_at, &b.id).cmp(&(a.created_at, &a.id)));
        of_job.truncate(limit);
        Ok(of_job)
    }

    async fn release_notification_leases(&self) -> StoreResult<u64> {
        let mut state = self.state.lock().await;
        let leased = state.notifications.values_mut().filter(|n| n.lease_until.is_some());
        Ok(leased.map(|n| n.lease_until = None).count() as u64)
    }

    async fn prune_notifications(&self, before: DateTime<Utc>, limit: usize) -> StoreResult<u64> {
        use crate::notify::ledger::NotificationState;
        let mut state = self.state.lock().await;
        let doomed: Vec<String> = (state.notifications.values())
            .filter(|n| n.state != NotificationState::Pending && n.created_at < before)
            .take(limit)
            .map(|n| n.id.clone())
            .collect();
        for id in &doomed {
            state.notifications.remove(id);
        }
        Ok(doomed.len() as u64)
    }

    fn set_notify_default(&self, default: Option<crate::notify::NotifySpec>) {
        self.notify_default.set(default);
    }
}
