//! The job and run models shared by the API, the scheduler and the stores.
//!
//! A `Job` is stored with its *resolved* trigger spec (see `trigger::TriggerSpec::resolve`), so every replica and
//! every restart compiles the same schedule. A `Run` is one row of the run ledger:
//! one per (job id, scheduled fire time), carrying a snapshot of the action so a fire can be delivered again after
//! a crash even if its job is gone.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::action::Action;
use crate::labels::Labels;
use crate::trigger::{Trigger, TriggerError, TriggerSpec};

/// `max_catchup_runs` at most: the planner looks this many fires ahead of a claim's batch to tell whether a fire is
/// among the newest, so the bound keeps one claim's work bounded; a larger catch-up is as good as none.
pub const MAX_CATCHUP_RUNS: u32 = 100_000;
/// Ids are 1–200 characters of `[A-Za-z0-9._:-]`.
pub const MAX_ID_LENGTH: usize = 200;
/// `validate_id`'s rule as a JSON Schema pattern, for the OpenAPI document.
pub const ID_PATTERN: &str = "^[A-Za-z0-9._:-]{1,200}$";
/// A name is for people; longer than this is a mistake.
pub const MAX_NAME_LENGTH: usize = 500;

/// A job as stored: its trigger, its action and APScheduler's options.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    /// Unique across stores; 1–200 characters of `[A-Za-z0-9._:-]`.
    pub id: String,
    /// A name for people.
    pub name: Option<String>,
    /// When it fires, resolved (see `TriggerSpec::resolve`).
    pub trigger: TriggerSpec,
    /// What a fire does.
    pub action: Action,
    /// Fold a backlog of missed fires into one.
    pub coalesce: bool,
    /// How many of its fires may be pending or running at once; a fire beyond is skipped.
    pub max_instances: u32,
    /// Seconds a fire may be late and still run; `None`: always run.
    pub misfire_grace_time: Option<u32>,
    /// After downtime, without coalesce: of the missed fires still within misfire_grace_time, only the newest this
    /// many are delivered and the older ones recorded `missed`; `None`: all of them.
    pub max_catchup_runs: Option<u32>,
    /// What a fire that comes while `max_instances` runs are going does.
    pub overlap: Overlap,
    /// The delivery pool its fires run in.
    pub executor: String,
    /// The store it lives in.
    pub jobstore: String,
    /// `None` when paused (or finished and about to be removed).
    pub next_run_time: Option<DateTime<Utc>>,
    /// A paused job does not fire; resuming recomputes its next run time.
    pub paused: bool,
    /// Labels to select it by (`crate::labels`).
    pub labels: Labels,
    /// When it was added.
    pub created_at: DateTime<Utc>,
    /// When it was last changed (by a client or by firing).
    pub updated_at: DateTime<Utc>,
    /// Pause the job after this many consecutive failed runs; `None`: never.
    pub auto_pause_after_failures: Option<u32>,
    /// Stale after this many seconds without a successful run; `None`: never.
    pub stale_after_seconds: Option<u32>,
    /// Why it is paused, when it is.
    pub paused_reason: Option<String>,
    /// When a paused job resumes by itself.
    pub paused_until: Option<DateTime<Utc>>,
    /// Where and when its health notifications go; `None`: `[notify]` of the configuration, if any.
    pub notify: Option<crate::notify::NotifySpec>,
    /// How its runs went; written by the store as outcomes are recorded, never by a change to the job.
    pub health: crate::health::Health,
}

impl Job {
    /// Compile the stored trigger. The spec was validated when saved, so this fails only if the zone database or
    /// the rules changed under a stored job.
    pub fn compiled_trigger(&self, default_tz: Tz) -> Result<Trigger, TriggerError> {
        self.trigger.compile(default_tz)
    }
}

/// Check a job id: 1–200 characters of `[A-Za-z0-9._:-]`.
pub fn validate_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.chars().count() > MAX_ID_LENGTH {
        return Err(format!("must be 1–{MAX_ID_LENGTH} characters, got {}", id.chars().count()));
    }
    if let Some(bad) = id.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-'))) {
        return Err(format!("{bad:?} is not allowed; use A-Z, a-z, 0-9, '.', '_', ':' and '-'"));
    }
    Ok(())
}

/// What happens to a fire that comes while `max_instances` runs of its job are still going.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Overlap {
    /// Recorded `skipped` (event `job_max_instances`), as APScheduler does.
    #[default]
    Skip,
    /// Kept (`buffered`) and delivered as soon as a run ends; a newer such fire replaces it, the older recorded
    /// `skipped`.
    BufferOne,
    /// Every such fire kept (`buffered`) and delivered in order as runs end.
    BufferAll,
    /// The oldest running delivery is aborted (recorded `cancelled`) and the new fire starts.
    CancelOther,
}

impl Overlap {
    /// The policy as the API writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Overlap::Skip => "skip",
            Overlap::BufferOne => "buffer_one",
            Overlap::BufferAll => "buffer_all",
            Overlap::CancelOther => "cancel_other",
        }
    }

    /// A policy from its API name.
    pub fn parse(value: &str) -> Option<Overlap> {
        [Overlap::Skip, Overlap::BufferOne, Overlap::BufferAll, Overlap::CancelOther]
            .into_iter()
            .find(|overlap| overlap.as_str() == value)
    }
}

/// Where a fire stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    /// Claimed and not yet delivered: waiting for a worker, or its call has taken under 200 ms so far.
    Pending,
    /// Being delivered: a call under way for longer than 200 ms, or a retry waiting for its next attempt.
    Running,
    /// Delivered: the webhook answered 2xx, or the function returned `Ok`.
    Succeeded,
    /// Not delivered, attempts and retries exhausted.
    Failed,
    /// Later than misfire_grace_time: not delivered.
    Missed,
    /// max_instances reached: not delivered.
    Skipped,
    /// Folded into a later fire by `coalesce`.
    Coalesced,
    /// Aborted while pending or running, to make room for a newer fire (`overlap: cancel_other`).
    Cancelled,
    /// Waiting for a run of its job to end (`overlap: buffer_one` or `buffer_all`), then delivered.
    Buffered,
}

impl RunStatus {
    /// Every status, in lifecycle order.
    pub const ALL: [RunStatus; 9] = [
        RunStatus::Pending,
        RunStatus::Running,
        RunStatus::Succeeded,
        RunStatus::Failed,
        RunStatus::Missed,
        RunStatus::Skipped,
        RunStatus::Coalesced,
        RunStatus::Cancelled,
        RunStatus::Buffered,
    ];

    /// The status as the API writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Pending => "pending",
            RunStatus::Running => "running",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Missed => "missed",
            RunStatus::Skipped => "skipped",
            RunStatus::Coalesced => "coalesced",
            RunStatus::Cancelled => "cancelled",
            RunStatus::Buffered => "buffered",
        }
    }

    /// A status from its API name.
    pub fn parse(value: &str) -> Option<RunStatus> {
        RunStatus::ALL.into_iter().find(|s| s.as_str() == value)
    }

    /// Pending and running fires are the job's live instances (max_instances) and are redelivered after a crash.
    pub fn is_unfinished(self) -> bool {
        matches!(self, RunStatus::Pending | RunStatus::Running)
    }

    /// Nothing more happens to the run: neither unfinished nor buffered (retention prunes only these).
    pub fn is_final(self) -> bool {
        !matches!(self, RunStatus::Pending | RunStatus::Running | RunStatus::Buffered)
    }
}

/// Why a run exists: a fire of the job's schedule, a client's run-now, or a backfill of a past range.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RunKind {
    /// A fire of the job's trigger, claimed by the scheduler.
    #[default]
    Scheduled,
    /// `POST /v1/jobs/{id}/run` (`run_job`): once now, outside the schedule.
    Manual,
    /// A past fire time delivered by a backfill.
    Backfill,
}

impl RunKind {
    /// Every kind.
    pub const ALL: [RunKind; 3] = [RunKind::Scheduled, RunKind::Manual, RunKind::Backfill];

    /// The kind as the API writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            RunKind::Scheduled => "scheduled",
            RunKind::Manual => "manual",
            RunKind::Backfill => "backfill",
        }
    }

    /// A kind from its API name.
    pub fn parse(value: &str) -> Option<RunKind> {
        RunKind::ALL.into_iter().find(|kind| kind.as_str() == value)
    }
}

/// One row of the run ledger.
#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    /// Unique to (job, scheduled fire time); sent as `idempotency-key`.
    pub idempotency_key: String,
    /// The job that fired; it may be gone since.
    pub job_id: String,
    /// The fire time the trigger gave, before jitter.
    pub scheduled_time: DateTime<Utc>,
    /// Why the run exists: scheduled, manual (run now) or backfill.
    pub kind: RunKind,
    /// Where the fire stands.
    pub status: RunStatus,
    /// Delivery attempts made so far.
    pub attempts: u32,
    /// When the first attempt started.
    pub started_at: Option<DateTime<Utc>>,
    /// When delivery ended; for a fire only recorded (missed, skipped, coalesced), when it was recorded.
    pub finished_at: Option<DateTime<Utc>>,
    /// The latest attempt's HTTP status, if an answer came.
    pub http_status: Option<u16>,
    /// How long the latest attempt took.
    pub duration_ms: Option<u64>,
    /// Why the latest attempt failed, or why the fire was not delivered.
    pub error: Option<String>,
    /// The start of the latest answer's body.
    pub response_excerpt: Option<String>,
    /// The job's action when the fire was claimed.
    pub action: Action,
    /// The delivery pool, as the job named it when the fire was claimed.
    pub executor: String,
    /// The trigger's zone, so times are shown as the job shows them even after the job is gone.
    pub timezone: String,
    /// An unfinished run whose lease has expired is taken over and delivered again.
    pub lease_expires_at: Option<DateTime<Utc>>,
    /// When the row was created: when the fire was claimed, or run now.
    pub created_at: DateTime<Utc>,
    /// The job as its claim found it, when that claim removed it (its trigger had finished: a one-shot job's only
    /// fire) and an outcome of this run may notify: the outcome's notification is written from it, the job's row
    /// being gone. Carried in memory with the run, not stored: a run taken over after a crash has none.
    pub removed_job: Option<std::sync::Arc<Job>>,
}

impl Run {
    /// Take `other`'s progress, what `JobStore::update_run` saves: status, attempts, times, outcome and lease. What
    /// the claim recorded of the fire (its action, executor, zone, creation) stays.
    pub fn take_progress(&mut self, other: &Run) {
        self.status = other.status;
        self.attempts = other.attempts;
        self.started_at = other.started_at;
        self.finished_at = other.finished_at;
        self.http_status = other.http_status;
        self.duration_ms = other.duration_ms;
        self.error = other.error.clone();
        self.response_excerpt = other.response_excerpt.clone();
        self.lease_expires_at = other.lease_expires_at;
    }

    /// A new ledger row for a fire of `job` at `scheduled_time`.
    pub fn new(job: &Job, scheduled_time: DateTime<Utc>, status: RunStatus, now: DateTime<Utc>, timezone: Tz) -> Run {
        Run {
            // Time-ordered (v7), so the ledger's key index grows at its end instead of splitting pages at random
            // places on every insert; its 74 random bits keep keys unique all the same.
            idempotency_key: uuid::Uuid::now_v7().to_string(),
            job_id: job.id.clone(),
            scheduled_time,
            kind: RunKind::Scheduled,
            status,
            attempts: 0,
            started_at: None,
            finished_at: if status.is_final() { Some(now) } else { None },
            http_status: None,
            duration_ms: None,
            error: None,
            response_excerpt: None,
            action: job.action.clone(),
            executor: job.executor.clone(),
            timezone: timezone.name().to_string(),
            lease_expires_at: None,
            created_at: now,
            removed_job: None,
        }
    }

    /// The zone times are shown in; UTC if the name is no longer known.
    pub fn timezone(&self) -> Tz {
        self.timezone.parse().unwrap_or(Tz::UTC)
    }
}

/// What a job gets for the fields it leaves out (the `[job_defaults]` section of the configuration).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JobDefaults {
    /// Fold a backlog of missed fires into one.
    pub coalesce: bool,
    /// How many fires of one job may be pending or running at once.
    pub max_instances: u32,
    /// Seconds; absent or null: always run however late.
    pub misfire_grace_time: Option<u32>,
}

impl Default for JobDefaults {
    fn default() -> Self {
        // One catch-up fire for many missed ones, one delivery of a job at a time, a minute's grace for a late start.
        JobDefaults { coalesce: true, max_instances: 1, misfire_grace_time: Some(60) }
    }
}

impl JobDefaults {
    /// An error is the key at fault and what is wrong with it.
    pub fn validate(&self) -> Result<(), (String, String)> {
        if self.max_instances == 0 {
            return Err(("max_instances".into(), "must be at least 1".into()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_follow_the_design_rule() {
        assert!(validate_id("nightly-report.v2:eu_1").is_ok());
        assert!(validate_id("").is_err());
        assert!(validate_id(&"a".repeat(MAX_ID_LENGTH)).is_ok());
        assert!(validate_id(&"a".repeat(MAX_ID_LENGTH + 1)).is_err());
        assert!(validate_id("a b").is_err());
        assert!(validate_id("a/b").is_err());
        assert!(validate_id("é").is_err());
    }

    #[test]
    fn statuses_and_kinds_round_trip() {
        for status in RunStatus::ALL {
            assert_eq!(RunStatus::parse(status.as_str()), Some(status));
            assert_eq!(serde_json::to_value(status).unwrap(), status.as_str());
        }
        assert_eq!(RunStatus::parse("done"), None);
        for kind in RunKind::ALL {
            assert_eq!(RunKind::parse(kind.as_str()), Some(kind));
            assert_eq!(serde_json::to_value(kind).unwrap(), kind.as_str());
        }
        assert_eq!(RunKind::parse("cron"), None);
    }
}
