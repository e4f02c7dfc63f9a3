//! Backfills from the scheduler's side: start one (its fires counted from the job's trigger, calendars applied),
//! read and cancel them, and the loop that takes their fires at their pace, apart from the live schedule's loop so
//! a backfill never delays it. Each fire goes into the ledger as a `backfill` run and is delivered as any run is
//! (retry policy, max_instances); the store's step makes taking a fire and inserting its run one change, which a
//! restart resumes and another replica cannot repeat.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::Scheduler;
use super::error::{Error, Result};
use crate::audit::{AuditAction, Change};
use crate::backfill::{
    Backfill, BackfillState, BackfillStep, DEFAULT_MAX_RUNS, DEFAULT_RATE, MAX_MAX_RUNS, MAX_RATE, RunCounts,
    StepOutcome,
};
use crate::job::{Run, RunKind, RunStatus};
use crate::store::JobStore;
use crate::trigger::Trigger;

/// How often the loop looks for backfills when none is due sooner (new ones, another replica's).
const POLL: Duration = Duration::from_millis(200);
/// Backfills stepped per store and round.
const DUE_BATCH: usize = 32;

/// What a backfill asks for.
#[derive(Debug, Clone, Default)]
pub struct BackfillRequest {
    /// The range's start (included).
    pub start: DateTime<Utc>,
    /// The range's end (excluded); not after now.
    pub end: DateTime<Utc>,
    /// At most this many fires (1–100 000; default 1000); the oldest are taken.
    pub max_runs: Option<u32>,
    /// At most this many fires per second (above 0, at most 1000; default 1).
    pub rate_per_second: Option<f64>,
}

/// The fire times of `trigger` in [start, end), oldest first, at most `max`.
pub fn fire_times_in(trigger: &Trigger, start: DateTime<Utc>, end: DateTime<Utc>, max: u64) -> u64 {
    let mut count = 0;
    let mut next = trigger.first_at_or_after(start);
    while let Some(t) = next {
        if t >= end || count >= max {
            break;
        }
        count += 1;
        next = trigger.next_fire_time(Some(t), t).filter(|n| *n > t);
    }
    count
}

fn no_such_backfill(id: &str) -> Error {
    Error::NotFound(format!("no backfill with id {id:?}"))
}

impl Scheduler {
    /// Start delivering the fires of job `job_id` in `[start, end)`, oldest first at most `rate_per_second`. The
    /// backfill, running. Recorded in the audit when made `by` someone.
    pub async fn backfill(self: &Arc<Self>, job_id: &str, request: BackfillRequest) -> Result<Backfill> {
        self.backfill_as(job_id, request, None).await
    }

    pub(crate) async fn backfill_as(
        self: &Arc<Self>,
        job_id: &str,
        request: BackfillRequest,
        by: Option<&Change>,
    ) -> Result<Backfill> {
        let now = self.now();
        let max_runs = request.max_runs.unwrap_or(DEFAULT_MAX_RUNS);
        if !(1..=MAX_MAX_RUNS).contains(&max_runs) {
            return Err(Error::invalid("max_runs", format!("must be 1–{MAX_MAX_RUNS}, not {max_runs}")));
        }
        let rate = request.rate_per_second.unwrap_or(DEFAULT_RATE);
        if !(rate > 0.0 && rate <= MAX_RATE) {
            return Err(Error::invalid("rate_per_second", format!("must be above 0 and at most {MAX_RATE}")));
        }
        if request.start >= request.end {
            return Err(Error::invalid("end", "must be after start"));
        }
        if request.end > now {
            return Err(Error::invalid(
                "end",
                "must not be after now: a backfill delivers past fires; the live schedule delivers the later ones",
            ));
        }
        let (store_name, job) =
            self.find_job(job_id).await?.ok_or_else(|| Error::NotFound(format!("no job with id {job_id:?}")))?;
        let store = self.store(&store_name).cloned().ok_or_else(|| Error::NotFound("no job store".into()))?;
        let trigger = self.compile(&job).await?;
        let total = fire_times_in(&trigger, request.start, request.end, u64::from(max_runs));
        let backfill = Backfill {
            id: uuid::Uuid::now_v7().to_string(),
            job_id: job.id.clone(),
            start: request.start,
            end: request.end,
            rate_per_second: rate,
            state: if total == 0 { BackfillState::Done } else { BackfillState::Running },
            total,
            position: 0,
            skipped: 0,
            cursor: None,
            next_step_at: now,
            created_at: now,
            runs: RunCounts::default(),
        };
        store.create_backfill(&backfill).await?;
        if let Some(change) = by {
            let after = serde_json::to_value(&backfill).ok();
            self.record(change, AuditAction::Backfill, Some(&job.id), None, after).await?;
        }
        Ok(backfill)
    }

    /// The backfill with this id, with its progress.
    pub async fn get_backfill(&self, id: &str) -> Result<Backfill> {
        for (_, store) in self.stores() {
            if let Some(backfill) = store.get_backfill(id).await? {
                return Ok(backfill);
            }
        }
        Err(no_such_backfill(id))
    }

    /// A job's backfills, newest first; `NotFound` for a job that neither exists nor had any.
    pub async fn list_backfills(&self, job_id: &str) -> Result<Vec<Backfill>> {
        let mut found = Vec::new();
        for (_, store) in self.stores() {
            found.extend(store.list_backfills(job_id).await?);
        }
        if found.is_empty() && self.find_job(job_id).await?.is_none() {
            return Err(Error::NotFound(format!("no job with id {job_id:?}")));
        }
        found.sort_by(|a, b| (b.created_at, &b.id).cmp(&(a.created_at, &a.id)));
        Ok(found)
    }

    /// Cancel a backfill: its fires not taken yet are never delivered (those delivering finish). Cancelling a
    /// finished one changes nothing. The backfill as it now is.
    pub async fn cancel_backfill(&self, id: &str) -> Result<Backfill> {
        self.cancel_backfill_as(id, None).await
    }

    pub(crate) async fn cancel_backfill_as(&self, id: &str, by: Option<&Change>) -> Result<Backfill> {
        for (_, store) in self.stores() {
            if let Some(backfill) = store.cancel_backfill(id).await? {
                if let Some(change) = by {
                    let after = serde_json::to_value(&backfill).ok();
                    self.record(change, AuditAction::CancelBackfill, Some(&backfill.job_id), None, after).await?;
                }
                return Ok(backfill);
            }
        }
        Err(no_such_backfill(id))
    }

    /// Take backfills' fires as they come due, until firing stops.
    pub(super) async fn run_backfills(self: Arc<Self>) {
        while !self.stop_firing.is_cancelled() {
            let wait = match self.step_backfills(self.clock.now()).await {
                Some(next) => (next - self.clock.now()).to_std().unwrap_or(Duration::ZERO).min(POLL),
                None => POLL,
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.stop_firing.cancelled() => {}
            }
        }
    }

    /// One round: step every backfill due at `now` once in each store. When the next is due, if one stays running.
    pub async fn step_backfills(self: &Arc<Self>, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let mut next: Option<DateTime<Utc>> = None;
        for (name, store) in self.stores() {
            let due = match store.due_backfills(now, DUE_BATCH).await {
                Ok(due) => due,
                Err(err) => {
                    tracing::warn!(store = %name, error = %err, "cannot read the backfills; the next round retries");
                    continue;
                }
            };
            for backfill in due {
                match self.step_backfill(name, store, backfill, now).await {
                    Ok(Some(at)) => next = Some(next.map_or(at, |n| n.min(at))),
                    Ok(None) => {}
                    Err(err) => tracing::warn!(store = %name, error = %err, "backfill step failed; retried"),
                }
            }
        }
        next
    }

    /// Take a backfill's next fire (and the skipped ones before it); when its next step is due, if any.
    async fn step_backfill(
        self: &Arc<Self>,
        store_name: &str,
        store: &Arc<dyn JobStore>,
        mut backfill: Backfill,
        now: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>> {
        loop {
            let job = store.get_job(&backfill.job_id).await?;
            let (run, max_instances) = match &job {
                None => (None, 1),
                Some(job) => {
                    let trigger = self.compile(job).await?;
                    let next = match backfill.cursor {
                        None => trigger.first_at_or_after(backfill.start),
                        Some(cursor) => trigger.next_fire_time(Some(cursor), cursor).filter(|t| *t > cursor),
                    };
                    let run = next.filter(|t| *t < backfill.end && backfill.position < backfill.total).map(|t| {
                        let mut run = Run::new(job, t, RunStatus::Pending, now, trigger.timezone());
                        run.kind = RunKind::Backfill;
                        run.idempotency_key = backfill.run_key(backfill.position);
                        run.lease_expires_at = Some(now + self.lease());
                        run
                    });
                    (run, job.max_instances)
                }
            };
            let step = BackfillStep { backfill: backfill.clone(), run, max_instances, now };
            match store.step_backfill(&step).await? {
                StepOutcome::Inserted(run) => {
                    self.metrics.fire(run.status);
                    self.submit(store_name, store.clone(), vec![run], vec![None]);
                    let advanced = crate::backfill::advanced(&step, false);
                    return Ok((advanced.state == BackfillState::Running).then_some(advanced.next_step_at));
                }
                // Nothing was sent: go on to the next fire at once.
                StepOutcome::Skipped => {
                    backfill = crate::backfill::advanced(&step, true);
                    if backfill.state != BackfillState::Running {
                        return Ok(None);
                    }
                }
                StepOutcome::Full => return Ok(Some(now + chrono::TimeDelta::milliseconds(100))),
                StepOutcome::Finished | StepOutcome::Lost => return Ok(None),
            }
        }
    }
}
