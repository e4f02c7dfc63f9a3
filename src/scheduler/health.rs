//! Health from the scheduler's side: the store keeps each job's health and pauses it after
//! `auto_pause_after_failures` as the outcome is recorded (`store::sql::health`); here the deliverer that recorded
//! that outcome tells of it (event `job_auto_paused`, an audit entry by `apsched`).

use std::sync::Arc;

use super::Scheduler;
use super::events::{EventKind, Subject};
use crate::audit::{AuditAction, Change};
use crate::health::{SYSTEM_ACTOR, auto_pause_reason};
use crate::job::{Run, RunStatus};
use crate::store::JobStore;

impl Scheduler {
    /// After `run`'s outcome was recorded: if that failure paused its job, say so, once. Only the outcome that
    /// reached the count finds the job paused with exactly that count, so one deliverer on one replica tells it.
    pub(super) async fn after_outcome(&self, store: &dyn JobStore, run: &Run) {
        if run.status == RunStatus::Failed {
            // Boxed: this future (a job read, an audit write) is larger than the rest of a delivery's together, and
            // inline it would be carried, and copied, by every delivery, though only failures reach it.
            Box::pin(self.after_failure(store, run)).await;
        }
    }

    async fn after_failure(&self, store: &dyn JobStore, run: &Run) {
        let job = match store.get_job(&run.job_id).await {
            Ok(Some(job)) => job,
            Ok(None) => return,
            Err(err) => {
                tracing::warn!(job_id = %run.job_id, error = %err, "cannot read a job's health after a failure");
                return;
            }
        };
        let failures = job.health.consecutive_failures;
        let reason = auto_pause_reason(failures);
        let paused_now = job.paused
            && job.auto_pause_after_failures == Some(failures)
            && job.paused_reason.as_deref() == Some(reason.as_str());
        if !paused_now {
            return;
        }
        tracing::warn!(job_id = %job.id, failures, "job paused after consecutive failures");
        let before = crate::job::Job { paused: false, paused_reason: None, ..job.clone() };
        let change = Change::by(SYSTEM_ACTOR).because(reason);
        if let Err(err) = self.record_job(&change, AuditAction::Pause, Some(&before), Some(&job)).await {
            tracing::warn!(job_id = %job.id, error = %err, "cannot record an auto-pause in the audit trail");
        }
        self.publish(EventKind::JobAutoPaused, Subject::Job(Arc::new(job)));
    }
}

impl Scheduler {
    /// Resume the jobs of `store` paused until `now` or before: each is taken by one replica only
    /// (`JobStore::take_due_resumes`), resumed as a client's resume would be (recorded by `apsched`), event
    /// `job_resumed`.
    pub(super) async fn resume_due(&self, store: &dyn JobStore, now: chrono::DateTime<chrono::Utc>) {
        let due = match store.take_due_resumes(now).await {
            Ok(due) => due,
            Err(err) => {
                tracing::warn!(error = %err, "cannot look for paused jobs to resume; next round retries");
                return;
            }
        };
        for job in due {
            let change = Change::by(SYSTEM_ACTOR).because("paused until reached");
            match self.resume_job_as(&job.id, Some(&change)).await {
                Ok(resumed) => {
                    tracing::info!(job_id = %job.id, "resumed: paused until reached");
                    self.publish(EventKind::JobResumed, Subject::Job(Arc::new(resumed)));
                }
                Err(err) => tracing::warn!(job_id = %job.id, error = %err, "cannot resume a job paused until now"),
            }
        }
    }
}

impl Scheduler {
    /// Mark the jobs of `store` that had no success for their `stale_after_seconds` stale (once per stale period,
    /// one replica each: `JobStore::mark_stale`), event `job_stale`.
    /// Answers when to look again: the earliest time another of its jobs may become stale.
    pub(super) async fn sweep_stale(
        &self,
        store: &dyn JobStore,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Option<chrono::DateTime<chrono::Utc>> {
        match store.mark_stale(now).await {
            Ok((marked, next)) => {
                for job in marked {
                    tracing::warn!(job_id = %job.id, "job is stale: no successful run for stale_after_seconds");
                    self.publish(EventKind::JobStale, Subject::Job(Arc::new(job)));
                }
                next
            }
            Err(err) => {
                tracing::warn!(error = %err, "cannot look for stale jobs; next round retries");
                None
            }
        }
    }
}
