//! Backfills: the fires of a job's trigger in a past range, delivered oldest first at a bounded pace as ledger runs
//! of kind `backfill`. The row keeps where the backfill stands (`position`, `cursor`), so a restart or another
//! replica goes on from there; its delivery counts are read from the ledger (the runs whose idempotency key starts
//! with the backfill's id).

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use crate::job::{Run, RunStatus};

/// At most this many fires when the request names no `max_runs`.
pub const DEFAULT_MAX_RUNS: u32 = 1000;
/// The largest `max_runs` a request may name.
pub const MAX_MAX_RUNS: u32 = 100_000;
/// Fires per second when the request names no `rate_per_second`.
pub const DEFAULT_RATE: f64 = 1.0;
/// The largest `rate_per_second`.
pub const MAX_RATE: f64 = 1000.0;

/// Where a backfill stands, as stored. `Done` is shown `succeeded` or `failed` once its last run has ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackfillState {
    /// Fires are still being taken.
    Running,
    /// Every fire was taken; its runs may still be delivering.
    Done,
    /// Cancelled: fires not taken yet are never delivered.
    Cancelled,
}

impl BackfillState {
    /// As the store writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            BackfillState::Running => "running",
            BackfillState::Done => "done",
            BackfillState::Cancelled => "cancelled",
        }
    }
}

/// One backfill, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Backfill {
    /// A UUID; the prefix of its runs' idempotency keys.
    pub id: String,
    /// The job whose fires it delivers.
    pub job_id: String,
    /// The range's start (included).
    pub start: DateTime<Utc>,
    /// The range's end (excluded).
    pub end: DateTime<Utc>,
    /// Fires per second, at most.
    pub rate_per_second: f64,
    /// Where it stands.
    pub state: BackfillState,
    /// The fires it takes: those of the trigger in the range, at most `max_runs`, as counted when it began.
    pub total: u64,
    /// Fires taken so far (delivered or skipped).
    pub position: u64,
    /// Fires taken that already had a ledger row: not delivered again.
    pub skipped: u64,
    /// The last fire time taken; the next is the trigger's first after it.
    pub cursor: Option<DateTime<Utc>>,
    /// When the next fire may be taken (the pace).
    pub next_step_at: DateTime<Utc>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// Counts of its runs by outcome, read from the ledger (not stored on the row).
    #[serde(skip)]
    pub runs: RunCounts,
}

/// A backfill's runs in the ledger, by outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunCounts {
    /// Delivered with success.
    pub succeeded: u64,
    /// Failed (after the retry policy) or cancelled.
    pub failed: u64,
    /// Pending, running or buffered.
    pub unfinished: u64,
}

impl RunCounts {
    /// Count one run of the backfill.
    pub fn add(&mut self, status: RunStatus, n: u64) {
        match status {
            RunStatus::Succeeded => self.succeeded += n,
            status if status.is_unfinished() || status == RunStatus::Buffered => self.unfinished += n,
            _ => self.failed += n,
        }
    }
}

impl Backfill {
    /// The prefix of the idempotency keys of its runs.
    pub fn key_prefix(id: &str) -> String {
        format!("{id}.")
    }

    /// The idempotency key of its fire number `position` (from 0).
    pub fn run_key(&self, position: u64) -> String {
        format!("{}{position:06}", Backfill::key_prefix(&self.id))
    }

    /// The time between two fires at its pace.
    pub fn interval(&self) -> TimeDelta {
        TimeDelta::microseconds((1_000_000.0 / self.rate_per_second).ceil() as i64)
    }

    /// The state as the API shows it: `running` until every fire was taken and delivered, then `succeeded` or
    /// `failed`; `cancelled`.
    pub fn shown_state(&self) -> &'static str {
        match self.state {
            BackfillState::Cancelled => "cancelled",
            BackfillState::Running => "running",
            BackfillState::Done if self.runs.unfinished > 0 => "running",
            BackfillState::Done if self.runs.failed > 0 => "failed",
            BackfillState::Done => "succeeded",
        }
    }

    /// Fires not delivered yet: not taken, or taken and still delivering. A cancelled backfill has none waiting.
    pub fn pending(&self) -> u64 {
        let not_taken = match self.state {
            BackfillState::Cancelled => 0,
            _ => self.total.saturating_sub(self.position),
        };
        not_taken + self.runs.unfinished
    }
}

/// One step of a backfill, as the scheduler computed it: take fire `run` (or, with `run: None`, finish).
#[derive(Debug, Clone)]
pub struct BackfillStep {
    /// The backfill as read: the step applies only if its position is still this one's.
    pub backfill: Backfill,
    /// The run of the next fire (kind backfill, pending, leased); `None`: no fire is left, it is done.
    pub run: Option<Run>,
    /// The job's max_instances: the fire waits while this many of the job's runs are pending or running.
    pub max_instances: u32,
    /// Now, for the pace.
    pub now: DateTime<Utc>,
}

/// What a step came to.
#[derive(Debug, Clone, PartialEq)]
#[allow(clippy::large_enum_variant)] // one lives at a time, moved straight to the delivery
pub enum StepOutcome {
    /// The run was inserted: deliver it.
    Inserted(Run),
    /// The fire already had a ledger row: counted skipped.
    Skipped,
    /// Done: no fire left.
    Finished,
    /// The job has max_instances runs going: try again later.
    Full,
    /// Another process took this step first, or the backfill was cancelled.
    Lost,
}

/// What a step changes on the backfill row when it applies.
pub fn advanced(step: &BackfillStep, skipped: bool) -> Backfill {
    let mut backfill = step.backfill.clone();
    match &step.run {
        None => backfill.state = BackfillState::Done,
        Some(run) => {
            backfill.position += 1;
            backfill.cursor = Some(run.scheduled_time);
            if skipped {
                // Nothing was sent: the pace counts deliveries only.
                backfill.skipped += 1;
            } else {
                // From this fire on, never from when the last was due: a late step does not bring the next forward.
                backfill.next_step_at = step.now + backfill.interval();
            }
            if backfill.position >= backfill.total {
                backfill.state = BackfillState::Done;
            }
        }
    }
    backfill
}
