//! What happens to a due job: APScheduler's rules (`_get_run_times`, coalesce, misfire_grace_time,
//! max_instances) as a pure function the store calls inside its claim transaction.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use rand::Rng;

use crate::job::{Job, Run, RunStatus};
use crate::store::{FirePlan, Planner};

/// Fires planned for one job in one claim; a longer backlog (no coalesce) continues in the next round, so one
/// claim transaction stays short however long the scheduler was down.
pub const MAX_FIRES_PER_CLAIM: usize = 1000;
/// Coalesced fires recorded in the ledger per claim; older ones of a huge backlog are only counted in the log.
pub const MAX_COALESCED_ROWS: usize = 100;
/// A stored trigger that no longer compiles (a zone renamed in the tz database) is retried this much later
/// instead of dropping the job.
const BROKEN_TRIGGER_RETRY: chrono::TimeDelta = chrono::TimeDelta::hours(1);

/// The scheduler's planner for one claim round. It also draws each pending fire's jitter delay, which the
/// delivery applies, so the stored schedule itself stays exact.
pub struct RulesPlanner {
    default_tz: Tz,
    jitter: Mutex<HashMap<String, Duration>>,
}

impl RulesPlanner {
    pub fn new(default_tz: Tz) -> RulesPlanner {
        RulesPlanner { default_tz, jitter: Mutex::new(HashMap::new()) }
    }

    /// The jitter delays drawn in this round, by idempotency key.
    pub fn take_jitter(&self) -> HashMap<String, Duration> {
        std::mem::take(&mut *self.jitter.lock().unwrap_or_else(|poisoned| poisoned.into_inner()))
    }
}

impl Planner for RulesPlanner {
    fn plan(&self, job: &Job, active_runs: u32, now: DateTime<Utc>) -> FirePlan {
        let trigger = match job.compiled_trigger(self.default_tz) {
            Ok(trigger) => trigger,
            Err(err) => {
                tracing::error!(job_id = %job.id, error = %err, "stored trigger does not compile; retrying later");
                return FirePlan { runs: Vec::new(), next_run_time: Some(now + BROKEN_TRIGGER_RETRY) };
            }
        };
        let tz = trigger.timezone();
        let Some(first) = job.next_run_time else {
            return FirePlan { runs: Vec::new(), next_run_time: None };
        };

        // Every fire time up to now (APScheduler's _get_run_times), bounded per claim without coalesce.
        let mut due = vec![first];
        let mut next = trigger.next_fire_time(Some(first), now);
        let mut folded = 0usize;
        while let Some(t) = next {
            if t > now || (!job.coalesce && due.len() >= MAX_FIRES_PER_CLAIM) {
                break;
            }
            if job.coalesce && due.len() > MAX_COALESCED_ROWS {
                due.remove(0);
                folded += 1;
            }
            due.push(t);
            next = trigger.next_fire_time(Some(t), now);
        }
        if folded > 0 {
            tracing::info!(job_id = %job.id, folded, "coalesced a long backlog; only the latest fires are recorded");
        }

        let mut runs = Vec::with_capacity(due.len());
        let to_run = if job.coalesce {
            let latest = due.pop().expect("due starts with one time");
            runs.extend(due.into_iter().map(|t| Run::new(job, t, RunStatus::Coalesced, now, tz)));
            vec![latest]
        } else {
            due
        };
        // As in APScheduler, the fires of one claim are one instance, delivered one after another.
        let at_capacity = active_runs >= job.max_instances;
        for scheduled in to_run {
            let late = now - scheduled;
            let status = if job.misfire_grace_time.is_some_and(|grace| late > chrono::TimeDelta::seconds(grace.into()))
            {
                RunStatus::Missed
            } else if at_capacity {
                RunStatus::Skipped
            } else {
                RunStatus::Pending
            };
            let mut run = Run::new(job, scheduled, status, now, tz);
            if status == RunStatus::Missed {
                run.error = Some(format!("missed by {} s (misfire_grace_time)", late.num_seconds()));
            } else if status == RunStatus::Skipped {
                run.error = Some(format!("max_instances ({}) reached", job.max_instances));
            }
            if status == RunStatus::Pending
                && let Some(jitter) = trigger.jitter_seconds().filter(|j| *j > 0.0)
            {
                let delay = Duration::from_secs_f64(rand::rng().random_range(0.0..=jitter));
                self.jitter.lock().unwrap_or_else(|p| p.into_inner()).insert(run.idempotency_key.clone(), delay);
            }
            runs.push(run);
        }
        FirePlan { runs, next_run_time: next }
    }
}
