//! Events: APScheduler's `EVENT_*` kinds, published in-process on a broadcast channel. Publishing never waits: a
//! subscriber that falls more than `EVENT_BUFFER` events behind loses the oldest and is told how many. The API
//! streams them as server-sent events (`api::events`).

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;
use utoipa::ToSchema;

use crate::job::{Job, Run};

/// Events a subscriber may fall behind by before it loses some: a few seconds of a busy scheduler, and a bound on
/// the memory a stalled SSE client can pin.
pub const EVENT_BUFFER: usize = 1024;

/// What happened: APScheduler's `EVENT_*` constants in lower case (`EVENT_JOB_EXECUTED` is `job_executed`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// The scheduler started.
    SchedulerStarted,
    /// The scheduler shut down.
    SchedulerShutdown,
    /// The scheduler was paused.
    SchedulerPaused,
    /// The scheduler was resumed.
    SchedulerResumed,
    /// A job was added.
    JobAdded,
    /// A job was removed, by a client or because its trigger finished.
    JobRemoved,
    /// A job was changed, paused or resumed.
    JobModified,
    /// A fire was claimed and handed to its executor.
    JobSubmitted,
    /// A fire was delivered.
    JobExecuted,
    /// A fire failed.
    JobError,
    /// A fire was later than misfire_grace_time and not delivered.
    JobMissed,
    /// A fire was skipped: max_instances reached.
    JobMaxInstances,
    /// Every job of one store, or of all, was removed.
    AllJobsRemoved,
    /// The jobs of one store that a selector selects were changed at once.
    JobsModified,
    /// The jobs of one store that a selector selects were removed at once.
    JobsRemoved,
    /// A job was paused by `auto_pause_after_failures`.
    JobAutoPaused,
    /// A job paused until a time resumed by itself.
    JobResumed,
    /// A job had no successful run for `stale_after_seconds`.
    JobStale,
}

impl EventKind {
    /// Every kind.
    pub const ALL: [EventKind; 18] = [
        EventKind::SchedulerStarted,
        EventKind::SchedulerShutdown,
        EventKind::SchedulerPaused,
        EventKind::SchedulerResumed,
        EventKind::JobAdded,
        EventKind::JobRemoved,
        EventKind::JobModified,
        EventKind::JobSubmitted,
        EventKind::JobExecuted,
        EventKind::JobError,
        EventKind::JobMissed,
        EventKind::JobMaxInstances,
        EventKind::AllJobsRemoved,
        EventKind::JobsModified,
        EventKind::JobsRemoved,
        EventKind::JobAutoPaused,
        EventKind::JobResumed,
        EventKind::JobStale,
    ];

    /// The kind as the API writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::SchedulerStarted => "scheduler_started",
            EventKind::SchedulerShutdown => "scheduler_shutdown",
            EventKind::SchedulerPaused => "scheduler_paused",
            EventKind::SchedulerResumed => "scheduler_resumed",
            EventKind::JobAdded => "job_added",
            EventKind::JobRemoved => "job_removed",
            EventKind::JobModified => "job_modified",
            EventKind::JobSubmitted => "job_submitted",
            EventKind::JobExecuted => "job_executed",
            EventKind::JobError => "job_error",
            EventKind::JobMissed => "job_missed",
            EventKind::JobMaxInstances => "job_max_instances",
            EventKind::AllJobsRemoved => "all_jobs_removed",
            EventKind::JobsModified => "jobs_modified",
            EventKind::JobsRemoved => "jobs_removed",
            EventKind::JobAutoPaused => "job_auto_paused",
            EventKind::JobResumed => "job_resumed",
            EventKind::JobStale => "job_stale",
        }
    }

    /// A kind from its API name.
    pub fn parse(value: &str) -> Option<EventKind> {
        EventKind::ALL.into_iter().find(|kind| kind.as_str() == value)
    }
}

/// What an event is about. Jobs and runs are shared, not copied, between subscribers.
#[derive(Debug, Clone)]
pub enum Subject {
    /// The scheduler itself: started, shut down, paused or resumed.
    Scheduler,
    /// Added or modified: the job as saved.
    Job(Arc<Job>),
    /// Removed: the job is gone, so only its id.
    RemovedJob {
        /// The removed job's id.
        job_id: String,
        /// The store it was in.
        jobstore: String,
    },
    /// A fire: submitted, executed, error, missed or max_instances.
    Run {
        /// The fire's ledger row.
        run: Arc<Run>,
        /// The store of its job.
        jobstore: String,
    },
    /// `jobstore` is `None` when every store was emptied.
    AllJobs {
        /// The store emptied.
        jobstore: Option<String>,
        /// How many jobs were removed.
        removed: u64,
    },
    /// Changed or removed by a selector, in one store.
    SelectedJobs {
        /// The selector, as `Selector` writes it.
        selector: String,
        /// The store whose jobs these were.
        jobstore: String,
        /// How many jobs.
        count: u64,
    },
}

/// One event.
#[derive(Debug, Clone)]
pub struct Event {
    /// What happened.
    pub kind: EventKind,
    /// When, on the scheduler's clock.
    pub time: DateTime<Utc>,
    /// What it happened to.
    pub subject: Subject,
}

impl Event {
    /// The job the event is about, if any.
    pub fn job_id(&self) -> Option<&str> {
        match &self.subject {
            Subject::Job(job) => Some(&job.id),
            Subject::RemovedJob { job_id, .. } => Some(job_id),
            Subject::Run { run, .. } => Some(&run.job_id),
            Subject::Scheduler | Subject::AllJobs { .. } | Subject::SelectedJobs { .. } => None,
        }
    }
}

/// The in-process event bus.
pub struct EventBus {
    sender: broadcast::Sender<Event>,
}

impl EventBus {
    /// A bus that keeps up to `capacity` events for a subscriber that falls behind.
    pub fn new(capacity: usize) -> EventBus {
        EventBus { sender: broadcast::channel(capacity).0 }
    }

    /// Publish to whoever listens; with no subscriber the event is dropped.
    pub fn publish(&self, kind: EventKind, time: DateTime<Utc>, subject: Subject) {
        let _ = self.sender.send(Event { kind, time, subject });
    }

    /// Publish, building the subject only if someone listens: a fire's events carry a copy of its run, which
    /// at a burst's rate is worth not making for nobody.
    pub fn publish_with(&self, kind: EventKind, time: DateTime<Utc>, subject: impl FnOnce() -> Subject) {
        if self.sender.receiver_count() > 0 {
            self.publish(kind, time, subject());
        }
    }

    /// Every event published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.sender.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_apschedulers_constants_in_lower_case() {
        for kind in EventKind::ALL {
            assert_eq!(EventKind::parse(kind.as_str()), Some(kind));
            assert_eq!(serde_json::to_value(kind).unwrap(), kind.as_str());
        }
        assert_eq!(EventKind::JobMaxInstances.as_str(), "job_max_instances");
        assert_eq!(EventKind::parse("JOB_ADDED"), None);
    }

    #[tokio::test]
    async fn a_slow_subscriber_loses_the_oldest_and_the_publisher_never_waits() {
        let bus = EventBus::new(4);
        let mut slow = bus.subscribe();
        for _ in 0..10 {
            bus.publish(EventKind::SchedulerPaused, Utc::now(), Subject::Scheduler);
        }
        assert!(matches!(slow.recv().await, Err(broadcast::error::RecvError::Lagged(6))));
        assert_eq!(slow.recv().await.unwrap().kind, EventKind::SchedulerPaused);
    }
}
