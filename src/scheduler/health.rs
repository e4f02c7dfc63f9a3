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
        if run.status != RunStatus::Failed {
            return;
        }
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
