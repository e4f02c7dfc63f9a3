//! A job's health: how its recent runs went, kept by the store as each run's outcome is recorded (in the same
//! transaction, so it cannot be lost), and the rules that act on it (auto-pause after consecutive failures).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The actor the audit trail names for changes apsched makes by itself (auto-pause, resume at `paused_until`).
pub const SYSTEM_ACTOR: &str = "apsched";

/// What the store keeps of a job's outcomes; written only by the store as runs end, never through the job's API.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Health {
    /// Failed runs since the last success.
    pub consecutive_failures: u32,
    /// When the latest successful run ended.
    pub last_success_at: Option<DateTime<Utc>>,
    /// When the latest failed run ended.
    pub last_failure_at: Option<DateTime<Utc>>,
    /// No success for `stale_after_seconds` (cleared by the next success).
    pub stale: bool,
}

/// How a job is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum HealthState {
    /// Its latest outcome succeeded.
    Healthy,
    /// Its latest outcome failed.
    Failing,
    /// No success for `stale_after_seconds`.
    Stale,
    /// No outcome yet.
    Unknown,
}

impl HealthState {
    /// Every state.
    pub const ALL: [HealthState; 4] =
        [HealthState::Healthy, HealthState::Failing, HealthState::Stale, HealthState::Unknown];

    /// The state as the API writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            HealthState::Healthy => "healthy",
            HealthState::Failing => "failing",
            HealthState::Stale => "stale",
            HealthState::Unknown => "unknown",
        }
    }

    /// A state from its API name.
    pub fn parse(value: &str) -> Option<HealthState> {
        HealthState::ALL.into_iter().find(|state| state.as_str() == value)
    }
}

impl Health {
    /// Failing wins over stale (the failures say more), stale over healthy.
    pub fn state(&self) -> HealthState {
        if self.consecutive_failures > 0 {
            HealthState::Failing
        } else if self.stale {
            HealthState::Stale
        } else if self.last_success_at.is_some() || self.last_failure_at.is_some() {
            HealthState::Healthy
        } else {
            HealthState::Unknown
        }
    }

    /// Take one outcome: `succeeded` or not, ended at `at`.
    pub fn record(&mut self, succeeded: bool, at: DateTime<Utc>) {
        if succeeded {
            self.consecutive_failures = 0;
            self.last_success_at = Some(at);
            self.stale = false;
        } else {
            self.consecutive_failures = self.consecutive_failures.saturating_add(1);
            self.last_failure_at = Some(at);
        }
    }
}

/// A job's health as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HealthOut {
    /// healthy, failing, stale, or unknown until the first outcome.
    pub state: HealthState,
    /// Failed runs since the last success.
    pub consecutive_failures: u32,
    /// When the latest successful run ended; RFC 3339 in the trigger's zone.
    pub last_success_at: Option<String>,
    /// When the latest failed run ended; RFC 3339 in the trigger's zone.
    pub last_failure_at: Option<String>,
}

/// Does a run with this status count in its job's health (an outcome: succeeded or failed)?
pub fn counts(status: crate::job::RunStatus) -> bool {
    matches!(status, crate::job::RunStatus::Succeeded | crate::job::RunStatus::Failed)
}

/// Is `job` due to be marked stale at `now`: active, with `stale_after_seconds`, not stale yet, and no success for
/// that long (from its last success, or from when it was added)?
pub fn is_stale(job: &crate::job::Job, now: DateTime<Utc>) -> bool {
    stale_at(job).is_some_and(|at| at <= now)
}

/// When `job` becomes stale if no success comes first; `None` when it does not watch, is paused or is stale.
pub fn stale_at(job: &crate::job::Job) -> Option<DateTime<Utc>> {
    let seconds = job.stale_after_seconds.filter(|_| !job.paused && !job.health.stale)?;
    Some(job.health.last_success_at.unwrap_or(job.created_at) + chrono::TimeDelta::seconds(i64::from(seconds)))
}

/// `paused_reason` of a job paused by `auto_pause_after_failures`.
pub fn auto_pause_reason(failures: u32) -> String {
    format!("auto: {failures} consecutive failures")
}

/// Does `health` call for pausing a job with `auto_pause_after_failures` = `after`?
pub fn should_auto_pause(after: Option<u32>, health: &Health) -> bool {
    after.is_some_and(|after| health.consecutive_failures >= after)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_follows_the_outcomes() {
        let mut health = Health::default();
        assert_eq!(health.state(), HealthState::Unknown);
        let at = DateTime::UNIX_EPOCH;
        health.record(false, at);
        health.record(false, at);
        assert_eq!((health.state(), health.consecutive_failures), (HealthState::Failing, 2));
        assert!(should_auto_pause(Some(2), &health));
        assert!(!should_auto_pause(Some(3), &health) && !should_auto_pause(None, &health));
        health.stale = true;
        health.record(true, at);
        assert_eq!((health.state(), health.consecutive_failures), (HealthState::Healthy, 0));
        health.stale = true;
        assert_eq!(health.state(), HealthState::Stale);
        for state in HealthState::ALL {
            assert_eq!(HealthState::parse(state.as_str()), Some(state));
        }
        assert_eq!(auto_pause_reason(3), "auto: 3 consecutive failures");
    }
}
