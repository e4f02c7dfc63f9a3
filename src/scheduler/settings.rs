//! `[scheduler]` (leases) and `[runs]` (how long the run history is kept).

use serde::{Deserialize, Serialize};

/// A lease not extended expires after this many seconds and another replica takes the fire over.
pub const DEFAULT_LEASE_SECONDS: u64 = 30;
/// A lease is extended every third of its length; under two seconds that is a store round trip more often than
/// a busy store answers reliably, and a lapsed lease means a fire delivered twice.
pub const MIN_LEASE_SECONDS: u64 = 2;
/// Finished runs are kept 30 days by default: long enough to look into last month's failures, short enough that
/// the ledger of a busy job stays small.
pub const DEFAULT_RETENTION_SECONDS: u64 = 30 * 24 * 3600;
/// And at most this many finished runs per job, so a job firing every second cannot grow the ledger by millions.
pub const DEFAULT_RETENTION_PER_JOB: u64 = 1000;
/// How often the background pruner runs: retention is coarse, and each round costs a scan of finished runs.
pub const DEFAULT_PRUNE_INTERVAL_SECONDS: u64 = 300;

/// The `[scheduler]` section.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SchedulerSettings {
    /// How long a claimed fire stays leased without an extension before another replica may take it over.
    pub lease_seconds: u64,
}

impl Default for SchedulerSettings {
    fn default() -> Self {
        SchedulerSettings { lease_seconds: DEFAULT_LEASE_SECONDS }
    }
}

impl SchedulerSettings {
    /// An error is the key at fault and what is wrong with it.
    pub fn validate(&self) -> Result<(), (String, String)> {
        if self.lease_seconds < MIN_LEASE_SECONDS {
            return Err(("lease_seconds".into(), format!("must be at least {MIN_LEASE_SECONDS}")));
        }
        Ok(())
    }
}

/// Retention of the run history; unfinished runs are never pruned.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RunsConfig {
    /// Prune finished runs that finished longer ago than this; 0 keeps them regardless of age.
    pub retention_seconds: u64,
    /// Keep at most this many finished runs per job (the newest by scheduled time); 0: no limit.
    pub retention_per_job: u64,
    /// Seconds between two rounds of the background pruner.
    pub prune_interval_seconds: u64,
}

impl Default for RunsConfig {
    fn default() -> Self {
        RunsConfig {
            retention_seconds: DEFAULT_RETENTION_SECONDS,
            retention_per_job: DEFAULT_RETENTION_PER_JOB,
            prune_interval_seconds: DEFAULT_PRUNE_INTERVAL_SECONDS,
        }
    }
}

impl RunsConfig {
    /// An error is the key at fault and what is wrong with it.
    pub fn validate(&self) -> Result<(), (String, String)> {
        if self.prune_interval_seconds == 0 {
            return Err(("prune_interval_seconds".into(), "must be at least 1".into()));
        }
        Ok(())
    }
}
