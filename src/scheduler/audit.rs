//! The audit trail from the scheduler's side: job operations made `by` someone (`Scheduler::by`) record what they
//! changed in the same store transaction as the change (see `JobStore::write_audited`); anything else records with
//! `Scheduler::record`, one call right after the change. Reading the trail back merges every store's entries.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;

use super::error::{Error, Result};
use super::{JobChanges, JobSpec, Scheduler, SchedulerState};
use crate::audit::{AuditAction, AuditEntry, AuditQuery, Change};
use crate::calendar::Calendar;
use crate::job::{Job, Run};
use crate::labels::Selector;
use crate::store::{JobStore, JobWrite, StoreResult};

/// Audit entries deleted per prune call, as for runs: each call holds the store briefly.
const PRUNE_AUDIT_BATCH: usize = 1000;

/// The scheduler's changes made by someone, each recorded in the audit trail with who and why. From
/// [`Scheduler::by`]: `scheduler.by(Change::by("deploy-bot").because("release 4.2")).pause_job("nightly")`.
pub struct Acting<'a> {
    scheduler: &'a Arc<Scheduler>,
    change: Change,
}

impl Scheduler {
    /// Make changes as `change` says (who, and why), recorded in the audit trail. Changes made directly on the
    /// scheduler (`scheduler.pause_job(…)`) are not recorded: the program that makes them is its own record.
    pub fn by(self: &Arc<Self>, change: Change) -> Acting<'_> {
        Acting { scheduler: self, change }
    }

    /// A job as the REST API shows it (secrets masked, times in the trigger's zone): what an audit entry's
    /// `before` and `after` hold.
    pub fn job_view(&self, job: &Job) -> serde_json::Value {
        crate::api::job_view(job, self.default_tz)
    }

    /// Record a change made by `change` right after making it, in the default job store: for changes no job
    /// operation of the scheduler records by itself. `before` and `after` are what the change was made to (a job:
    /// `job_view`), `None` where it did not exist.
    pub async fn record(
        &self,
        change: &Change,
        action: AuditAction,
        job_id: Option<&str>,
        before: Option<serde_json::Value>,
        after: Option<serde_json::Value>,
    ) -> Result<()> {
        let entry = AuditEntry::new(self.now(), change, action, job_id, before, after);
        let store = self.store(self.default_jobstore()).ok_or_else(|| Error::NotFound("no job store".into()))?;
        Ok(store.record_audit(&[entry]).await?)
    }

    /// `record` for a change to a job (a bulk change records one per job): its id, and the job before and after
    /// as the API shows it.
    pub async fn record_job(
        &self,
        change: &Change,
        action: AuditAction,
        before: Option<&Job>,
        after: Option<&Job>,
    ) -> Result<()> {
        let job_id = after.or(before).map(|job| job.id.as_str());
        let (before, after) = (before.map(|job| self.job_view(job)), after.map(|job| self.job_view(job)));
        self.record(change, action, job_id, before, after).await
    }

    /// Audit entries, newest first, across stores: at most `query.limit`.
    pub async fn audit(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>> {
        let mut entries = Vec::new();
        for (_, store) in self.stores() {
            entries.extend(store.list_audit(query).await?);
        }
        entries.sort_by(AuditEntry::newest_first);
        entries.truncate(query.limit);
        Ok(entries)
    }

    /// A job's audit entries, newest first (`query.job_id` is set to `job_id`); also after the job was removed.
    /// A job with neither entries nor existence is `NotFound`.
    pub async fn job_history(&self, job_id: &str, query: &AuditQuery) -> Result<Vec<AuditEntry>> {
        let query = AuditQuery { job_id: Some(job_id.to_string()), ..query.clone() };
        let entries = self.audit(&query).await?;
        let unfiltered = query.since.is_none() && query.actor.is_none() && query.action.is_none();
        if entries.is_empty() && unfiltered && query.after.is_none() && self.find_job(job_id).await?.is_none() {
            return Err(Error::NotFound(format!("no job with id {job_id:?} and no history of one")));
        }
        Ok(entries)
    }

    /// One round of `[audit]` retention over every store, in batches; the number of entries deleted.
    pub async fn prune_audit(&self) -> u64 {
        let total = self
            .prune_before(self.audit_settings.retention_seconds, "the audit", |store, cutoff| {
                store.prune_audit(cutoff, PRUNE_AUDIT_BATCH)
            })
            .await;
        if total > 0 {
            tracing::info!(entries = total, "pruned the audit");
        }
        total
    }

    /// One round of notifications retention over every store, in batches: delivered and failed notifications
    /// are kept as long as finished runs (`[runs] retention_seconds`); pending ones until they are sent.
    pub async fn prune_notifications(&self) -> u64 {
        self.prune_before(self.retention.retention_seconds, "notifications", |store, cutoff| {
            store.prune_notifications(cutoff, PRUNE_AUDIT_BATCH)
        })
        .await
    }

    /// Delete, batch by batch (`prune` deletes one of at most `PRUNE_AUDIT_BATCH` older than the cutoff), what is
    /// older than `retention_seconds` in every store; `0` keeps everything. How many were deleted.
    async fn prune_before<'s, F>(&'s self, retention_seconds: u64, what: &str, prune: F) -> u64
    where
        F: Fn(&'s Arc<dyn JobStore>, DateTime<Utc>) -> BoxFuture<'s, StoreResult<u64>>,
    {
        let Some(cutoff) = (retention_seconds > 0)
            .then(|| self.now() - chrono::TimeDelta::seconds(i64::try_from(retention_seconds).unwrap_or(i64::MAX)))
        else {
            return 0;
        };
        let mut total = 0;
        for (name, store) in self.stores() {
            loop {
                match prune(store, cutoff).await {
                    Ok(deleted) => {
                        total += deleted;
                        if deleted < PRUNE_AUDIT_BATCH as u64 || self.stop_firing.is_cancelled() {
                            break;
                        }
                        tokio::task::yield_now().await;
                    }
                    Err(err) => {
                        tracing::warn!(store = %name, error = %err, "cannot prune {what}; next round retries");
                        break;
                    }
                }
            }
        }
        total
    }

    /// Make `write`; with `audit` (who, how, and the job before), record the change in the same transaction: an
    /// entry per job the write affected, showing each after the write, or before it when the write removes it.
    pub(super) async fn write(
        &self,
        store: &dyn JobStore,
        write: JobWrite<'_>,
        audit: Option<(&Change, AuditAction, Option<&Job>)>,
    ) -> StoreResult<Vec<Job>> {
        let Some((change, action, before)) = audit else {
            return store.write_audited(write, None).await;
        };
        let (time, removes) = (self.now(), write.removes());
        let before = before.map(|job| self.job_view(job));
        let entry = |job: &Job| {
            let view = Some(self.job_view(job));
            let (before, after) = if removes { (view, None) } else { (before.clone(), view) };
            AuditEntry::new(time, change, action, Some(&job.id), before, after)
        };
        store.write_audited(write, Some(&entry)).await
    }

    /// Record a request that changed nothing (pausing a paused job), in the job's store.
    pub(super) async fn record_unchanged(
        &self,
        store_name: &str,
        change: &Change,
        action: AuditAction,
        job: &Job,
    ) -> Result<()> {
        let view = Some(self.job_view(job));
        let entry = AuditEntry::new(self.now(), change, action, Some(&job.id), view.clone(), view);
        let store = self.store(store_name).ok_or_else(|| Error::NotFound(format!("no job store {store_name:?}")))?;
        Ok(store.record_audit(&[entry]).await?)
    }
}

impl Acting<'_> {
    /// Who and why.
    pub fn change(&self) -> &Change {
        &self.change
    }

    /// [`Scheduler::add_job`], recorded.
    pub async fn add_job(&self, spec: JobSpec) -> Result<Job> {
        self.scheduler.add_job_as(spec, Some(&self.change)).await
    }

    /// [`Scheduler::modify_job`], recorded.
    pub async fn modify_job(&self, id: &str, changes: JobChanges) -> Result<Job> {
        self.scheduler.modify_job_as(id, changes, Some(&self.change)).await
    }

    /// [`Scheduler::pause_job`], recorded.
    pub async fn pause_job(&self, id: &str) -> Result<Job> {
        self.scheduler.pause_job_as(id, Some(&self.change)).await
    }

    /// [`Scheduler::pause_job`] with why and until when (the job resumes by itself then), recorded; the audit
    /// entry's reason is the pause's when the change gives none.
    pub async fn pause_job_until(
        &self,
        id: &str,
        reason: Option<String>,
        until: Option<chrono::DateTime<chrono::Utc>>,
    ) -> Result<Job> {
        let mut change = self.change.clone();
        if change.reason.is_none() {
            change.reason.clone_from(&reason);
        }
        self.scheduler.pause_job_noted(id, reason, until, Some(&change)).await
    }

    /// [`Scheduler::resume_job`], recorded.
    pub async fn resume_job(&self, id: &str) -> Result<Job> {
        self.scheduler.resume_job_as(id, Some(&self.change)).await
    }

    /// [`Scheduler::remove_job`], recorded.
    pub async fn remove_job(&self, id: &str) -> Result<()> {
        self.scheduler.remove_job_as(id, Some(&self.change)).await
    }

    /// [`Scheduler::remove_all_jobs`], recorded: an entry per job removed.
    pub async fn remove_all_jobs(&self, jobstore: Option<&str>) -> Result<u64> {
        self.scheduler.remove_all_jobs_as(jobstore, Some(&self.change)).await
    }

    /// [`Scheduler::modify_jobs`], recorded as one `bulk_modify` entry without a job id: its `after` holds the
    /// selector, the changes (`JobChanges::summary`) and how many jobs changed. One entry, not one per job, so
    /// a change of 100 000 jobs writes one row more, not 100 000; recorded right after the change.
    pub async fn modify_jobs(&self, selector: &Selector, changes: JobChanges) -> Result<u64> {
        let summary = changes.summary();
        let modified = self.scheduler.modify_jobs(selector, changes).await?;
        let after = serde_json::json!({"selector": selector.to_string(), "changes": summary, "modified": modified});
        self.scheduler.record(&self.change, AuditAction::BulkModify, None, None, Some(after)).await?;
        Ok(modified)
    }

    /// [`Scheduler::remove_jobs`], recorded as one `bulk_remove` entry without a job id: its `before` holds the
    /// selector and how many jobs were removed.
    pub async fn remove_jobs(&self, selector: &Selector, jobstore: Option<&str>) -> Result<u64> {
        let removed = self.scheduler.remove_jobs(selector, jobstore).await?;
        let before = serde_json::json!({"selector": selector.to_string(), "jobstore": jobstore, "removed": removed});
        self.scheduler.record(&self.change, AuditAction::BulkRemove, None, Some(before), None).await?;
        Ok(removed)
    }

    /// [`Scheduler::put_calendar`], recorded (`put_calendar`, no job id): the calendar before (if it existed) and
    /// as stored.
    pub async fn put_calendar(&self, calendar: Calendar) -> Result<Calendar> {
        let before = self.scheduler.get_calendar(&calendar.id).await?;
        let stored = self.scheduler.put_calendar(calendar).await?;
        let (before, after) = (before.map(|calendar| json_of(&calendar)), Some(json_of(&stored)));
        self.scheduler.record(&self.change, AuditAction::PutCalendar, None, before, after).await?;
        Ok(stored)
    }

    /// [`Scheduler::remove_calendar`], recorded (`remove_calendar`, no job id): the calendar removed.
    pub async fn remove_calendar(&self, id: &str) -> Result<()> {
        let before = self.scheduler.get_calendar(id).await?;
        self.scheduler.remove_calendar(id).await?;
        let before = before.map(|calendar| json_of(&calendar));
        self.scheduler.record(&self.change, AuditAction::RemoveCalendar, None, before, None).await?;
        Ok(())
    }

    /// [`Scheduler::run_job`], recorded.
    pub async fn run_job(&self, id: &str) -> Result<Run> {
        self.scheduler.run_job_as(id, Some(&self.change)).await
    }

    /// [`Scheduler::pause`], recorded.
    pub async fn pause(&self) -> Result<SchedulerState> {
        // Recorded first: if the store cannot take the entry, nothing has changed.
        self.scheduler.record(&self.change, AuditAction::SchedulerPause, None, None, None).await?;
        self.scheduler.pause();
        Ok(self.scheduler.state())
    }

    /// [`Scheduler::resume`], recorded.
    pub async fn resume(&self) -> Result<SchedulerState> {
        self.scheduler.record(&self.change, AuditAction::SchedulerResume, None, None, None).await?;
        self.scheduler.resume();
        Ok(self.scheduler.state())
    }

    /// [`Scheduler::shutdown`], recorded first. A shutdown is never refused: an entry the store cannot take is
    /// logged as an error instead.
    pub async fn shutdown(&self, wait: bool) {
        if let Err(err) = self.scheduler.record(&self.change, AuditAction::SchedulerShutdown, None, None, None).await {
            tracing::error!(actor = %self.change.actor, error = %err, "cannot record the shutdown in the audit");
        }
        self.scheduler.shutdown(wait).await;
    }
}

/// A calendar as an audit entry shows it: as the API does (it holds no secret).
fn json_of(calendar: &Calendar) -> serde_json::Value {
    serde_json::to_value(calendar).unwrap_or(serde_json::Value::Null)
}
