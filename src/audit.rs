//! The audit trail: who changed what through the API, when and why. Every change is one `AuditEntry` with the
//! actor (the API token's name), the action, the request's `apsched-reason` header, and the job before and after
//! as the API showed it (secrets masked). The stores keep the entries (in the same transaction as the change they
//! record, for the changes a store makes); the scheduler records them and reads them back (`Scheduler::audit`,
//! `Scheduler::job_history`); `[audit] retention_seconds` bounds how long they are kept.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The actor of changes made through an API without tokens.
pub const ANONYMOUS: &str = "anonymous";
/// Entries are kept 90 days by default: an audit is read long after the change, when someone asks who did it.
pub const DEFAULT_AUDIT_RETENTION_SECONDS: u64 = 90 * 24 * 3600;
/// A reason longer than this is a paste, not a reason.
pub const MAX_REASON_LENGTH: usize = 1000;

/// What a change did. Names are exact: clients filter on them (`GET /v1/audit?action=pause`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AuditAction {
    /// A job was added (or replaced: `replace_existing`).
    Add,
    /// A job was changed (`PATCH /v1/jobs/{id}`).
    Modify,
    /// Jobs matching a selector were changed.
    BulkModify,
    /// A job was paused.
    Pause,
    /// A job was resumed.
    Resume,
    /// A job was run once, now.
    Run,
    /// A job was removed.
    Remove,
    /// Jobs matching a selector were removed.
    BulkRemove,
    /// Every job (of a store) was removed: one entry per job.
    RemoveAll,
    /// A backfill of a job's past fires was started.
    Backfill,
    /// A backfill was cancelled.
    CancelBackfill,
    /// A calendar was created or replaced.
    PutCalendar,
    /// A calendar was removed.
    RemoveCalendar,
    /// The scheduler was paused.
    SchedulerPause,
    /// The scheduler was resumed.
    SchedulerResume,
    /// The scheduler was shut down.
    SchedulerShutdown,
}

impl AuditAction {
    /// Every action, in the order the docs list them.
    pub const ALL: [AuditAction; 16] = [
        AuditAction::Add,
        AuditAction::Modify,
        AuditAction::BulkModify,
        AuditAction::Pause,
        AuditAction::Resume,
        AuditAction::Run,
        AuditAction::Remove,
        AuditAction::BulkRemove,
        AuditAction::RemoveAll,
        AuditAction::Backfill,
        AuditAction::CancelBackfill,
        AuditAction::PutCalendar,
        AuditAction::RemoveCalendar,
        AuditAction::SchedulerPause,
        AuditAction::SchedulerResume,
        AuditAction::SchedulerShutdown,
    ];

    /// As the API and the stores write it.
    pub fn as_str(self) -> &'static str {
        match self {
            AuditAction::Add => "add",
            AuditAction::Modify => "modify",
            AuditAction::BulkModify => "bulk_modify",
            AuditAction::Pause => "pause",
            AuditAction::Resume => "resume",
            AuditAction::Run => "run",
            AuditAction::Remove => "remove",
            AuditAction::BulkRemove => "bulk_remove",
            AuditAction::RemoveAll => "remove_all",
            AuditAction::Backfill => "backfill",
            AuditAction::CancelBackfill => "cancel_backfill",
            AuditAction::PutCalendar => "put_calendar",
            AuditAction::RemoveCalendar => "remove_calendar",
            AuditAction::SchedulerPause => "scheduler_pause",
            AuditAction::SchedulerResume => "scheduler_resume",
            AuditAction::SchedulerShutdown => "scheduler_shutdown",
        }
    }

    /// The action named `name`, if any.
    pub fn parse(name: &str) -> Option<AuditAction> {
        AuditAction::ALL.into_iter().find(|action| action.as_str() == name)
    }
}

/// Who makes a change and why: what the audit records beside the change itself. The API makes one per request
/// from the token's name and the `apsched-reason` header; a program makes its own (`Scheduler::by`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The token's name, `anonymous` without tokens, or whatever a program calls itself.
    pub actor: String,
    /// Why, in the actor's words.
    pub reason: Option<String>,
}

impl Change {
    /// A change by `actor`, with no reason given.
    pub fn by(actor: impl Into<String>) -> Change {
        Change { actor: actor.into(), reason: None }
    }

    /// With a reason.
    pub fn because(mut self, reason: impl Into<String>) -> Change {
        self.reason = Some(reason.into());
        self
    }
}

/// One recorded change.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEntry {
    /// Unique and time-ordered (a UUID v7).
    pub id: String,
    /// When the change was made, by the scheduler's clock.
    pub time: DateTime<Utc>,
    /// Who made it.
    pub actor: String,
    /// What it did.
    pub action: AuditAction,
    /// The job it changed; `None` for a change to no job (scheduler control, a calendar).
    pub job_id: Option<String>,
    /// Why, as the actor said.
    pub reason: Option<String>,
    /// The job before the change as the API showed it (secrets masked); `None` where it did not exist.
    pub before: Option<serde_json::Value>,
    /// The job after the change as the API shows it; `None` where it no longer exists.
    pub after: Option<serde_json::Value>,
}

impl AuditEntry {
    /// An entry of `change`, made at `time`, with a new id.
    pub fn new(
        time: DateTime<Utc>,
        change: &Change,
        action: AuditAction,
        job_id: Option<&str>,
        before: Option<serde_json::Value>,
        after: Option<serde_json::Value>,
    ) -> AuditEntry {
        AuditEntry {
            id: uuid::Uuid::now_v7().to_string(),
            time,
            actor: change.actor.clone(),
            action,
            job_id: job_id.map(str::to_string),
            reason: change.reason.clone(),
            before,
            after,
        }
    }

    /// The same entry under another id (tests give entries ids they can name).
    pub fn with_id(mut self, id: &str) -> AuditEntry {
        self.id = id.to_string();
        self
    }

    /// The position just after this entry in the audit's order.
    pub fn cursor(&self) -> AuditCursor {
        AuditCursor { time: self.time, id: self.id.clone() }
    }

    /// The audit's order, newest first: by time, then by id (time-ordered), both descending.
    pub fn newest_first(a: &AuditEntry, b: &AuditEntry) -> std::cmp::Ordering {
        (b.time, &b.id).cmp(&(a.time, &a.id))
    }
}

/// Position in the audit, which is ordered newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditCursor {
    /// The last listed entry's time.
    pub time: DateTime<Utc>,
    /// The last listed entry's id.
    pub id: String,
}

impl AuditCursor {
    /// True when `entry` comes strictly after (is older than) this position.
    pub fn precedes(&self, entry: &AuditEntry) -> bool {
        (entry.time, entry.id.as_str()) < (self.time, self.id.as_str())
    }
}

/// Which entries `list_audit` returns, newest first.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    /// Only entries about this job.
    pub job_id: Option<String>,
    /// Only entries at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Only entries by this actor.
    pub actor: Option<String>,
    /// Only entries of this action.
    pub action: Option<AuditAction>,
    /// Only entries strictly after (older than) this position.
    pub after: Option<AuditCursor>,
    /// At most this many.
    pub limit: usize,
}

impl AuditQuery {
    /// True when `entry` passes every filter and comes after the cursor (the memory store's filter; the SQL
    /// stores say the same in SQL).
    pub fn matches(&self, entry: &AuditEntry) -> bool {
        self.job_id.as_ref().is_none_or(|id| entry.job_id.as_ref() == Some(id))
            && self.since.is_none_or(|since| entry.time >= since)
            && self.actor.as_ref().is_none_or(|actor| entry.actor == *actor)
            && self.action.is_none_or(|action| entry.action == action)
            && self.after.as_ref().is_none_or(|cursor| cursor.precedes(entry))
    }
}

/// The `[audit]` section.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AuditSettings {
    /// Delete entries older than this (by the background pruner of `[runs]`); 0 keeps them forever.
    pub retention_seconds: u64,
}

impl Default for AuditSettings {
    fn default() -> Self {
        AuditSettings { retention_seconds: DEFAULT_AUDIT_RETENTION_SECONDS }
    }
}

/// Check an `apsched-reason`: an error says what is wrong with it.
pub fn validate_reason(reason: &str) -> Result<(), String> {
    if reason.chars().count() > MAX_REASON_LENGTH {
        return Err(format!("is longer than {MAX_REASON_LENGTH} characters"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn action_names_round_trip_and_match_serde() {
        for action in AuditAction::ALL {
            assert_eq!(AuditAction::parse(action.as_str()), Some(action));
            assert_eq!(serde_json::to_value(action).unwrap(), serde_json::json!(action.as_str()));
        }
        assert_eq!(AuditAction::parse("delete"), None);
        assert_eq!(AuditAction::parse("Add"), None);
    }

    #[test]
    fn ids_made_one_after_another_sort_in_that_order() {
        let change = Change::by("ci");
        let time = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let first = AuditEntry::new(time, &change, AuditAction::Add, Some("a"), None, None);
        let second = AuditEntry::new(time, &change, AuditAction::Pause, Some("a"), None, None);
        assert!(second.id > first.id);
        assert_eq!(AuditEntry::newest_first(&first, &second), std::cmp::Ordering::Greater);
        assert!(first.cursor().precedes(&AuditEntry { id: "0".into(), ..first.clone() }));
        assert!(!second.cursor().precedes(&first) || first.id < second.id);
        assert!(second.cursor().precedes(&first));
    }

    #[test]
    fn a_query_filters_on_every_field() {
        let time = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let entry =
            AuditEntry::new(time, &Change::by("ci").because("deploy"), AuditAction::Pause, Some("a"), None, None);
        assert!(AuditQuery::default().matches(&entry));
        assert!(AuditQuery { job_id: Some("a".into()), ..Default::default() }.matches(&entry));
        assert!(!AuditQuery { job_id: Some("b".into()), ..Default::default() }.matches(&entry));
        assert!(AuditQuery { since: Some(time), ..Default::default() }.matches(&entry));
        assert!(
            !AuditQuery { since: Some(time + chrono::TimeDelta::microseconds(1)), ..Default::default() }
                .matches(&entry)
        );
        assert!(!AuditQuery { actor: Some("ops".into()), ..Default::default() }.matches(&entry));
        assert!(!AuditQuery { action: Some(AuditAction::Resume), ..Default::default() }.matches(&entry));
    }

    #[test]
    fn a_reason_has_a_length_limit() {
        assert!(validate_reason("rotate the key").is_ok());
        assert!(validate_reason(&"x".repeat(MAX_REASON_LENGTH + 1)).is_err());
    }
}
