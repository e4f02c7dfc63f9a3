//! What happens to a due job: APScheduler's rules (`_get_run_times`, coalesce, misfire_grace_time,
//! max_instances) as a pure function the store calls inside its claim transaction.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use chrono_tz::Tz;
use rand::Rng;

use super::calendars::Lenient;
use crate::action::template::JobVars;
use crate::calendar::CalendarSet;
use crate::job::{Job, Overlap, Run, RunStatus};
use crate::store::{FirePlan, Load, Planner};

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
    /// What triggers' `exclude_calendars` name.
    calendars: Arc<CalendarSet>,
    /// Set when a job named a calendar `calendars` does not hold: the scheduler then reads them again.
    missing_calendar: AtomicBool,
    jitter: Mutex<HashMap<String, Duration>>,
    /// What templated actions see of their job, by idempotency key: taken at the claim, since a job whose trigger
    /// ended is gone by the time its last fire is delivered.
    template_jobs: Mutex<HashMap<String, JobVars>>,
    /// Jobs planned in this round that buffer fires beyond max_instances.
    buffering: Mutex<Vec<String>>,
    /// Jobs whose trigger ended in this round: the store removes them, the scheduler reports it.
    finished: Mutex<Vec<String>>,
}

impl RulesPlanner {
    /// A planner for one round; triggers that name no zone use `default_tz`.
    pub fn new(default_tz: Tz) -> RulesPlanner {
        RulesPlanner::with_calendars(default_tz, Arc::new(CalendarSet::default()))
    }

    /// A planner for one round whose triggers' `exclude_calendars` are found in `calendars`.
    pub fn with_calendars(default_tz: Tz, calendars: Arc<CalendarSet>) -> RulesPlanner {
        RulesPlanner {
            default_tz,
            calendars,
            missing_calendar: AtomicBool::new(false),
            jitter: Mutex::new(HashMap::new()),
            template_jobs: Mutex::new(HashMap::new()),
            buffering: Mutex::new(Vec::new()),
            finished: Mutex::new(Vec::new()),
        }
    }

    /// Whether a job planned in this round named a calendar the planner did not hold.
    pub fn missed_a_calendar(&self) -> bool {
        self.missing_calendar.load(Ordering::SeqCst)
    }

    /// The jitter delays drawn in this round, by idempotency key.
    pub fn take_jitter(&self) -> HashMap<String, Duration> {
        std::mem::take(&mut *self.jitter.lock().unwrap_or_else(|poisoned| poisoned.into_inner()))
    }

    /// What the templated actions of this round's pending fires see of their jobs, by idempotency key.
    pub fn take_template_jobs(&self) -> HashMap<String, JobVars> {
        std::mem::take(&mut *self.template_jobs.lock().unwrap_or_else(|poisoned| poisoned.into_inner()))
    }

    /// The jobs planned in this round that buffer fires beyond max_instances (`buffer_one`, `buffer_all`).
    pub fn take_buffering(&self) -> Vec<String> {
        std::mem::take(&mut *self.buffering.lock().unwrap_or_else(|poisoned| poisoned.into_inner()))
    }

    /// The jobs planned in this round whose trigger has no further fire time (removed by the claim).
    pub fn take_finished(&self) -> Vec<String> {
        std::mem::take(&mut *self.finished.lock().unwrap_or_else(|poisoned| poisoned.into_inner()))
    }
}

impl Planner for RulesPlanner {
    fn plan(&self, job: &Job, load: Load, now: DateTime<Utc>) -> FirePlan {
        let calendars = Lenient { set: &self.calendars, missing: &self.missing_calendar };
        let trigger = match job.trigger.compile_with(self.default_tz, &calendars) {
            Ok(trigger) => trigger,
            Err(err) => {
                tracing::error!(job_id = %job.id, error = %err, "stored trigger does not compile; retrying later");
                return FirePlan { next_run_time: Some(now + BROKEN_TRIGGER_RETRY), ..FirePlan::default() };
            }
        };
        let tz = trigger.timezone();
        let Some(first) = job.next_run_time else {
            return FirePlan::default();
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

        // Bounded catch-up: a fire runs only if fewer than `max_catchup_runs` due fires come after it, counting those
        // beyond this claim's batch (looked ahead for, at most that many).
        let catchup = job.max_catchup_runs.filter(|_| !job.coalesce);
        let beyond_batch = match (catchup, next) {
            (Some(limit), Some(next)) if next <= now => due_from(&trigger, next, now, limit as usize),
            _ => 0,
        };

        let mut runs = Vec::with_capacity(due.len());
        let to_run = if job.coalesce {
            let latest = due.pop().expect("due starts with one time");
            runs.extend(due.into_iter().map(|t| Run::new(job, t, RunStatus::Coalesced, now, tz)));
            vec![latest]
        } else {
            due
        };
        // As in APScheduler, the fires of one claim are one instance, delivered one after another. Which of them
        // are late past the grace time or the catch-up bound is decided first; the rest are the live ones.
        let count = to_run.len();
        let fires: Vec<(DateTime<Utc>, Option<String>)> = (to_run.into_iter().enumerate())
            .map(|(index, scheduled)| {
                let late = now - scheduled;
                let newer = count - 1 - index + beyond_batch;
                let missed = if job.misfire_grace_time.is_some_and(|grace| late > TimeDelta::seconds(grace.into())) {
                    Some(format!("missed by {} s (misfire_grace_time)", late.num_seconds()))
                } else {
                    catchup.filter(|limit| newer >= *limit as usize).map(|limit| {
                        format!("older than the newest {limit} missed fires, delivered instead (max_catchup_runs)")
                    })
                };
                (scheduled, missed)
            })
            .collect();
        let newest_live = fires.iter().rposition(|(_, missed)| missed.is_none());
        let overlap = overlap_decision(job, load);
        if matches!(job.overlap, Overlap::BufferOne | Overlap::BufferAll) {
            self.buffering.lock().unwrap_or_else(|p| p.into_inner()).push(job.id.clone());
        }
        let mut plan = FirePlan { runs: Vec::new(), next_run_time: next, ..FirePlan::default() };
        for (index, (scheduled, missed)) in fires.into_iter().enumerate() {
            let (status, error) = match (missed, overlap) {
                (Some(why), _) => (RunStatus::Missed, Some(why)),
                (None, OverlapDecision::Run) => (RunStatus::Pending, None),
                (None, OverlapDecision::Skip) => {
                    (RunStatus::Skipped, Some(format!("max_instances ({}) reached", job.max_instances)))
                }
                (None, OverlapDecision::Buffer { one }) if one && Some(index) != newest_live => {
                    (RunStatus::Skipped, Some(crate::store::SUPERSEDED.to_string()))
                }
                (None, OverlapDecision::Buffer { one }) => {
                    plan.supersede_buffered |= one;
                    (RunStatus::Buffered, None)
                }
                (None, OverlapDecision::Cancel { runs }) => {
                    plan.cancel_oldest = runs;
                    (RunStatus::Pending, None)
                }
            };
            let mut run = Run::new(job, scheduled, status, now, tz);
            run.error = error;
            if status == RunStatus::Pending
                && let Some(jitter) = trigger.jitter_seconds().filter(|j| *j > 0.0)
            {
                let delay = Duration::from_secs_f64(rand::rng().random_range(0.0..=jitter));
                self.jitter.lock().unwrap_or_else(|p| p.into_inner()).insert(run.idempotency_key.clone(), delay);
            }
            if status == RunStatus::Pending && job.action.as_http().is_some_and(|action| action.template) {
                let mut jobs = self.template_jobs.lock().unwrap_or_else(|p| p.into_inner());
                jobs.insert(run.idempotency_key.clone(), JobVars::of(job));
            }
            runs.push(run);
        }
        plan.runs = runs;
        if next.is_none() {
            self.finished.lock().unwrap_or_else(|p| p.into_inner()).push(job.id.clone());
        }
        plan
    }
}

/// What the live fires of a claim do, given what the job has under way (docs/api.md, "Overlap").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OverlapDecision {
    /// Room for them: deliver.
    Run,
    /// `skip` at max_instances.
    Skip,
    /// `buffer_one` (only the newest is kept) or `buffer_all`, at max_instances or behind fires already buffered
    /// (so that buffered fires go out in order).
    Buffer { one: bool },
    /// `cancel_other` at max_instances: cancel this many of the oldest runs, then deliver.
    Cancel { runs: u32 },
}

fn overlap_decision(job: &Job, load: Load) -> OverlapDecision {
    let at_capacity = load.active >= job.max_instances;
    match job.overlap {
        Overlap::BufferOne | Overlap::BufferAll if at_capacity || load.buffered > 0 => {
            OverlapDecision::Buffer { one: job.overlap == Overlap::BufferOne }
        }
        _ if !at_capacity => OverlapDecision::Run,
        Overlap::CancelOther => OverlapDecision::Cancel { runs: load.active + 1 - job.max_instances },
        _ => OverlapDecision::Skip,
    }
}

/// How many fire times of `trigger` from `first` (a fire time) up to `now` there are, counting at most `limit`.
fn due_from(trigger: &crate::trigger::Trigger, first: DateTime<Utc>, now: DateTime<Utc>, limit: usize) -> usize {
    let mut count = 0;
    let mut next = Some(first);
    while let Some(t) = next
        && t <= now
        && count < limit
    {
        count += 1;
        next = trigger.next_fire_time(Some(t), now);
    }
    count
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeDelta;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
    }

    fn every_minute(coalesce: bool, grace: Option<u32>, max_instances: u32) -> Job {
        let trigger = serde_json::from_value(serde_json::json!({
            "type": "interval", "minutes": 1, "start_date": "2026-06-01T00:00:00Z"
        }))
        .unwrap();
        let action: crate::action::Action =
            serde_json::from_value(serde_json::json!({"url": "http://127.0.0.1/"})).unwrap();
        Job {
            id: "j".into(),
            name: None,
            trigger,
            action,
            coalesce,
            max_instances,
            misfire_grace_time: grace,
            max_catchup_runs: None,
            overlap: crate::job::Overlap::Skip,
            auto_pause_after_failures: None,
            stale_after_seconds: None,
            paused_reason: None,
            paused_until: None,
            notify: None,
            health: Default::default(),
            executor: "default".into(),
            jobstore: "default".into(),
            next_run_time: Some(at("2026-06-01T00:00:00Z")),
            paused: false,
            labels: Default::default(),
            created_at: at("2026-06-01T00:00:00Z"),
            updated_at: at("2026-06-01T00:00:00Z"),
        }
    }

    fn busy(active: u32) -> Load {
        Load { active, buffered: 0 }
    }

    fn statuses(plan: &FirePlan) -> Vec<RunStatus> {
        plan.runs.iter().map(|run| run.status).collect()
    }

    #[test]
    fn an_on_time_fire_is_pending_and_the_job_advances_one_step() {
        let plan = RulesPlanner::new(Tz::UTC).plan(
            &every_minute(true, Some(60), 1),
            Load::default(),
            at("2026-06-01T00:00:00.2Z"),
        );
        assert_eq!(statuses(&plan), [RunStatus::Pending]);
        assert_eq!(plan.runs[0].scheduled_time, at("2026-06-01T00:00:00Z"));
        assert_eq!(plan.next_run_time, Some(at("2026-06-01T00:01:00Z")));
    }

    #[test]
    fn coalesce_runs_the_latest_missed_fire_once() {
        let now = at("2026-06-01T00:10:30Z");
        let plan = RulesPlanner::new(Tz::UTC).plan(&every_minute(true, Some(60), 1), Load::default(), now);
        let expected: Vec<RunStatus> =
            std::iter::repeat_n(RunStatus::Coalesced, 10).chain([RunStatus::Pending]).collect();
        assert_eq!(statuses(&plan), expected);
        assert_eq!(plan.runs.last().unwrap().scheduled_time, at("2026-06-01T00:10:00Z"));
        assert_eq!(plan.next_run_time, Some(at("2026-06-01T00:11:00Z")));
    }

    #[test]
    fn without_coalesce_fires_past_the_grace_time_are_missed_and_the_rest_run() {
        let now = at("2026-06-01T00:05:30Z");
        let plan = RulesPlanner::new(Tz::UTC).plan(&every_minute(false, Some(120), 1), Load::default(), now);
        use RunStatus::{Missed, Pending};
        // Lateness 330, 270, 210, 150 s: missed; 90 and 30 s: within 120 s.
        assert_eq!(statuses(&plan), [Missed, Missed, Missed, Missed, Pending, Pending]);
        assert!(plan.runs[0].error.as_deref().unwrap().contains("misfire_grace_time"));
    }

    #[test]
    fn no_grace_limit_runs_every_missed_fire() {
        let plan =
            RulesPlanner::new(Tz::UTC).plan(&every_minute(false, None, 1), Load::default(), at("2026-06-01T03:00:00Z"));
        assert_eq!(plan.runs.len(), 181);
        assert!(plan.runs.iter().all(|run| run.status == RunStatus::Pending));
    }

    #[test]
    fn max_catchup_runs_delivers_only_the_newest_fires_within_the_grace_time() {
        use RunStatus::{Missed, Pending};
        let now = at("2026-06-01T00:05:30Z");
        let mut job = every_minute(false, Some(120), 1);
        job.max_catchup_runs = Some(2);
        // Lateness 330, 270, 210, 150 s: past the grace time; 90 and 30 s: within it, and the newest two.
        let plan = RulesPlanner::new(Tz::UTC).plan(&job, Load::default(), now);
        assert_eq!(statuses(&plan), [Missed, Missed, Missed, Missed, Pending, Pending]);
        job.max_catchup_runs = Some(1);
        let plan = RulesPlanner::new(Tz::UTC).plan(&job, Load::default(), now);
        assert_eq!(statuses(&plan), [Missed, Missed, Missed, Missed, Missed, Pending]);
        assert!(plan.runs[3].error.as_deref().unwrap().contains("misfire_grace_time"));
        assert!(plan.runs[4].error.as_deref().unwrap().contains("max_catchup_runs"), "{:?}", plan.runs[4].error);
        assert_eq!(plan.runs[5].scheduled_time, at("2026-06-01T00:05:00Z"));
        // An on-time fire is the newest: delivered.
        let plan = RulesPlanner::new(Tz::UTC).plan(&job, Load::default(), at("2026-06-01T00:00:00.1Z"));
        assert_eq!(statuses(&plan), [Pending]);
    }

    #[test]
    fn max_catchup_runs_counts_the_fires_beyond_a_claims_batch() {
        let now = at("2026-06-02T00:00:30Z");
        let mut job = every_minute(false, None, 1);
        job.max_catchup_runs = Some(3);
        let planner = RulesPlanner::new(Tz::UTC);
        let mut plans = Vec::new();
        while job.next_run_time.is_some_and(|next| next <= now) {
            let plan = planner.plan(&job, Load::default(), now);
            job.next_run_time = plan.next_run_time;
            plans.push(plan);
        }
        assert!(plans.len() > 1, "the backlog takes several claims");
        let runs: Vec<&Run> = plans.iter().flat_map(|plan| &plan.runs).collect();
        assert_eq!(runs.len(), 24 * 60 + 1);
        let pending: Vec<DateTime<Utc>> =
            runs.iter().filter(|run| run.status == RunStatus::Pending).map(|run| run.scheduled_time).collect();
        assert_eq!(pending, [at("2026-06-01T23:58:00Z"), at("2026-06-01T23:59:00Z"), at("2026-06-02T00:00:00Z")]);
        assert!(runs.iter().all(|run| run.status == RunStatus::Pending || run.status == RunStatus::Missed));
    }

    #[test]
    fn max_catchup_runs_leaves_coalescing_as_it_is() {
        let mut job = every_minute(true, None, 1);
        job.max_catchup_runs = Some(3);
        let plan = RulesPlanner::new(Tz::UTC).plan(&job, Load::default(), at("2026-06-01T00:10:30Z"));
        let expected: Vec<RunStatus> =
            std::iter::repeat_n(RunStatus::Coalesced, 10).chain([RunStatus::Pending]).collect();
        assert_eq!(statuses(&plan), expected);
    }

    #[test]
    fn overlap_decides_what_a_fire_beyond_max_instances_does() {
        let now = at("2026-06-01T00:00:01Z");
        let mut job = every_minute(true, Some(60), 1);
        let plan_with = |job: &Job, load: Load| RulesPlanner::new(Tz::UTC).plan(job, load, now);
        assert_eq!(statuses(&plan_with(&job, busy(1))), [RunStatus::Skipped]);
        job.overlap = Overlap::BufferAll;
        let plan = plan_with(&job, busy(1));
        assert_eq!((statuses(&plan), plan.supersede_buffered), (vec![RunStatus::Buffered], false));
        // Behind fires already buffered a new one queues, room or not, so they go out in order.
        let plan = plan_with(&job, Load { active: 0, buffered: 2 });
        assert_eq!(statuses(&plan), [RunStatus::Buffered]);
        assert_eq!(statuses(&plan_with(&job, Load::default())), [RunStatus::Pending]);
        job.overlap = Overlap::BufferOne;
        let plan = plan_with(&job, Load { active: 1, buffered: 1 });
        assert_eq!((statuses(&plan), plan.supersede_buffered), (vec![RunStatus::Buffered], true));
        job.overlap = Overlap::CancelOther;
        let plan = plan_with(&job, busy(1));
        assert_eq!((statuses(&plan), plan.cancel_oldest), (vec![RunStatus::Pending], 1));
        let plan = plan_with(&job, Load::default());
        assert_eq!((statuses(&plan), plan.cancel_oldest), (vec![RunStatus::Pending], 0));
        job.max_instances = 2;
        assert_eq!(plan_with(&job, busy(3)).cancel_oldest, 2, "back to one below max_instances");
    }

    #[test]
    fn buffer_one_keeps_only_the_newest_fire_of_a_backlog() {
        let mut job = every_minute(false, None, 1);
        job.overlap = Overlap::BufferOne;
        let plan = RulesPlanner::new(Tz::UTC).plan(&job, busy(1), at("2026-06-01T00:02:30Z"));
        use RunStatus::{Buffered, Skipped};
        assert_eq!(statuses(&plan), [Skipped, Skipped, Buffered]);
        assert_eq!(plan.runs[0].error.as_deref(), Some(crate::store::SUPERSEDED));
        assert!(plan.supersede_buffered);
    }

    #[test]
    fn a_busy_job_at_max_instances_is_skipped() {
        let now = at("2026-06-01T00:00:01Z");
        let plan = RulesPlanner::new(Tz::UTC).plan(&every_minute(true, Some(60), 2), busy(2), now);
        assert_eq!(statuses(&plan), [RunStatus::Skipped]);
        let plan = RulesPlanner::new(Tz::UTC).plan(&every_minute(true, Some(60), 2), busy(1), now);
        assert_eq!(statuses(&plan), [RunStatus::Pending]);
    }

    #[test]
    fn a_huge_backlog_without_coalesce_is_claimed_in_bounded_rounds() {
        let now = at("2026-06-10T00:00:00Z");
        let job = every_minute(false, None, 1);
        let plan = RulesPlanner::new(Tz::UTC).plan(&job, Load::default(), now);
        assert_eq!(plan.runs.len(), MAX_FIRES_PER_CLAIM);
        let next = plan.next_run_time.unwrap();
        assert_eq!(next, at("2026-06-01T00:00:00Z") + TimeDelta::minutes(MAX_FIRES_PER_CLAIM as i64));
        assert!(next <= now, "the job stays due for the next round");
    }

    #[test]
    fn a_huge_backlog_with_coalesce_records_a_bounded_number_of_rows() {
        let plan = RulesPlanner::new(Tz::UTC).plan(
            &every_minute(true, Some(60), 1),
            Load::default(),
            at("2026-06-10T00:00:30Z"),
        );
        assert_eq!(plan.runs.len(), MAX_COALESCED_ROWS + 1);
        assert_eq!(plan.runs.last().unwrap().scheduled_time, at("2026-06-10T00:00:00Z"));
        assert_eq!(plan.runs.last().unwrap().status, RunStatus::Pending);
    }

    #[test]
    fn a_finished_trigger_ends_the_job() {
        let mut job = every_minute(true, None, 1);
        job.trigger =
            serde_json::from_value(serde_json::json!({"type": "date", "run_date": "2026-06-01T00:00:00Z"})).unwrap();
        let plan = RulesPlanner::new(Tz::UTC).plan(&job, Load::default(), at("2026-06-01T00:00:00Z"));
        assert_eq!(statuses(&plan), [RunStatus::Pending]);
        assert_eq!(plan.next_run_time, None);
    }

    #[test]
    fn the_planner_reports_the_jobs_whose_trigger_ended() {
        let mut ending = every_minute(true, None, 1);
        ending.id = "ending".into();
        ending.trigger =
            serde_json::from_value(serde_json::json!({"type": "date", "run_date": "2026-06-01T00:00:00Z"})).unwrap();
        let planner = RulesPlanner::new(Tz::UTC);
        planner.plan(&ending, Load::default(), at("2026-06-01T00:00:00Z"));
        planner.plan(&every_minute(true, None, 1), Load::default(), at("2026-06-01T00:00:00Z"));
        assert_eq!(planner.take_finished(), ["ending"]);
        assert!(planner.take_finished().is_empty(), "taken once");
    }

    #[test]
    fn jitter_is_drawn_for_pending_fires_only_and_within_bounds() {
        let mut job = every_minute(true, Some(60), 1);
        job.trigger = serde_json::from_value(serde_json::json!({
            "type": "interval", "minutes": 1, "start_date": "2026-06-01T00:00:00Z", "jitter": 5
        }))
        .unwrap();
        let planner = RulesPlanner::new(Tz::UTC);
        let plan = planner.plan(&job, Load::default(), at("2026-06-01T00:00:00Z"));
        let jitter = planner.take_jitter();
        assert_eq!(jitter.len(), 1);
        assert!(jitter[&plan.runs[0].idempotency_key] <= Duration::from_secs(5));
        // The stored schedule itself is not jittered.
        assert_eq!(plan.next_run_time, Some(at("2026-06-01T00:01:00Z")));
    }
}
