//! The notifications ledger: one row per notification, written with the change that causes it, claimed with a
//! lease by one sender at a time, so each is sent once across replicas and none is lost in a crash.

use chrono::{DateTime, Utc};

/// A notification's state in the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotificationState {
    /// Not sent yet, or to be tried again at `next_attempt_at`.
    Pending,
    /// A 2xx answer came.
    Delivered,
    /// Given up: the target was refused, or the attempts are spent.
    Failed,
}

impl NotificationState {
    /// The state as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            NotificationState::Pending => "pending",
            NotificationState::Delivered => "delivered",
            NotificationState::Failed => "failed",
        }
    }

    /// A state from its stored name.
    pub fn parse(value: &str) -> Option<NotificationState> {
        [NotificationState::Pending, NotificationState::Delivered, NotificationState::Failed]
            .into_iter()
            .find(|state| state.as_str() == value)
    }
}

/// One notification in the ledger.
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    /// Unique; sent as `webhook-id`.
    pub id: String,
    /// The job it is about.
    pub job_id: String,
    /// `failure`, `recovery`, `missed`, `auto_paused` or `stale`.
    pub kind: String,
    /// The JSON body sent.
    pub payload: serde_json::Value,
    /// Where it stands.
    pub state: NotificationState,
    /// Attempts claimed so far.
    pub attempts: u32,
    /// When it may be (tried again) sent.
    pub next_attempt_at: DateTime<Utc>,
    /// Until when a sender holds it; another may claim it after.
    pub lease_until: Option<DateTime<Utc>>,
    /// When the change that caused it was recorded.
    pub created_at: DateTime<Utc>,
    /// When a 2xx answer came.
    pub delivered_at: Option<DateTime<Utc>>,
    /// What went wrong last.
    pub last_error: Option<String>,
    /// Where it goes if its job is gone when it is sent (else the job's `notify` then, or `[notify]`).
    pub target: Option<super::NotifySpec>,
}

impl Notification {
    /// A pending notification of `kind` about `job_id`, due at `now`.
    pub fn pending(job_id: &str, kind: super::NotifyOn, payload: serde_json::Value, now: DateTime<Utc>) -> Self {
        Notification {
            id: format!("ntf_{}", uuid::Uuid::new_v4().simple()),
            job_id: job_id.to_string(),
            kind: kind.as_str().to_string(),
            payload,
            state: NotificationState::Pending,
            attempts: 0,
            next_attempt_at: now,
            lease_until: None,
            created_at: now,
            delivered_at: None,
            last_error: None,
            target: None,
        }
    }

    /// Claimable at `now`: pending, due, and not leased to a sender (or its lease ran out).
    pub fn claimable(&self, now: DateTime<Utc>) -> bool {
        self.state == NotificationState::Pending
            && self.next_attempt_at <= now
            && self.lease_until.is_none_or(|until| until < now)
    }
}

/// (state, next attempt if it changes, delivered at, error): the columns a `Finish` writes.
pub type FinishColumns<'a> = (NotificationState, Option<DateTime<Utc>>, Option<DateTime<Utc>>, Option<&'a str>);

/// How an attempt ended, as the ledger keeps it.
#[derive(Debug, Clone, PartialEq)]
pub enum Finish {
    /// A 2xx answer came at this time.
    Delivered(DateTime<Utc>),
    /// Failed; due again at this time.
    Retry(DateTime<Utc>, String),
    /// Given up.
    Failed(String),
}

impl Finish {
    /// (state, next attempt if it changes, delivered at, error) as the store writes them; the lease is released.
    pub fn columns(&self) -> FinishColumns<'_> {
        match self {
            Finish::Delivered(at) => (NotificationState::Delivered, None, Some(*at), None),
            Finish::Retry(next, error) => (NotificationState::Pending, Some(*next), None, Some(error)),
            Finish::Failed(error) => (NotificationState::Failed, None, None, Some(error)),
        }
    }

    /// Apply to a notification as the SQL stores do.
    pub fn apply(&self, notification: &mut Notification) {
        let (state, next, delivered_at, error) = self.columns();
        notification.state = state;
        notification.lease_until = None;
        if let Some(next) = next {
            notification.next_attempt_at = next;
        }
        if delivered_at.is_some() {
            notification.delivered_at = delivered_at;
        }
        if let Some(error) = error {
            notification.last_error = Some(error.to_string());
        }
    }
}
