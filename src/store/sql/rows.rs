//! Rows as the SQL stores read them and write them: the columns of `jobs` and `runs` in the order the statements
//! name them, errors mapped to `StoreError`, and the conversion to and from `Job` and `Run`. A dialect only says
//! how its columns hold a time and a JSON document (`TimeColumn`, `JsonColumn`).

use std::fmt::{self, Display};

use chrono::{DateTime, SubsecRound, Utc};
use sqlx::FromRow;

use crate::audit::{AuditAction, AuditEntry};
use crate::job::{Job, Overlap, Run, RunKind, RunStatus};
use crate::store::{StoreError, StoreResult};

/// A row that does not decode is `Corrupt`; anything else means the store could not do the work now and the
/// caller retries. (Unique violations are told apart where they can happen, to say what exists.)
pub fn store_error(err: sqlx::Error) -> StoreError {
    match err {
        sqlx::Error::Decode(_) | sqlx::Error::ColumnDecode { .. } | sqlx::Error::ColumnNotFound(_) => {
            StoreError::Corrupt(err.to_string())
        }
        other => StoreError::Unavailable(other.to_string()),
    }
}

pub fn is_unique_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.is_unique_violation())
}

pub fn narrow<T: TryFrom<i64>>(value: i64, column: impl Display) -> StoreResult<T> {
    T::try_from(value).map_err(|_| StoreError::Corrupt(format!("{column}: {value} is out of range")))
}

/// A column of one stored row, as errors name it (`job "a" trigger`). Written out only for an error: a row is
/// read many times a second, and formatting each column's name up front cost more than decoding most of them.
struct RowColumn<'a> {
    record: &'static str,
    key: &'a str,
    column: &'static str,
}

impl Display for RowColumn<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {:?} {}", self.record, self.key, self.column)
    }
}

pub fn limit_of(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

pub fn to_json_text<T: serde::Serialize>(value: &T, what: &str) -> StoreResult<String> {
    serde_json::to_string(value).map_err(|err| StoreError::Corrupt(format!("cannot encode {what}: {err}")))
}

/// How a dialect's columns hold a time.
pub trait TimeColumn: Sized {
    fn from_time(time: DateTime<Utc>) -> Self;
    fn into_time(self, column: impl Display) -> StoreResult<DateTime<Utc>>;

    /// `time` as it reads back once stored: what the column keeps of it.
    fn stored(time: DateTime<Utc>) -> DateTime<Utc> {
        Self::from_time(time).into_time("time").unwrap_or(time)
    }
}

/// timestamptz (and the like) keeps microseconds; truncating when writing makes what a store returns equal what
/// it holds.
impl TimeColumn for DateTime<Utc> {
    fn from_time(time: DateTime<Utc>) -> Self {
        time.trunc_subsecs(6)
    }

    fn into_time(self, _column: impl Display) -> StoreResult<DateTime<Utc>> {
        Ok(self)
    }
}

/// Microseconds since the Unix epoch in an integer column: they sort as times do and round-trip `DateTime<Utc>`
/// exactly at microsecond precision; anything finer is truncated when written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::Type)]
#[sqlx(transparent)]
pub struct Micros(pub i64);

impl TimeColumn for Micros {
    fn from_time(time: DateTime<Utc>) -> Self {
        Micros(time.timestamp_micros())
    }

    fn into_time(self, column: impl Display) -> StoreResult<DateTime<Utc>> {
        DateTime::from_timestamp_micros(self.0)
            .ok_or_else(|| StoreError::Corrupt(format!("{column}: {} µs is not a representable time", self.0)))
    }
}

/// How a dialect's columns hold a JSON document (a job's trigger and action, a run's action).
pub trait JsonColumn: Sized {
    fn encode<T: serde::Serialize>(value: &T, what: &str) -> StoreResult<Self>;
    fn decode<T: serde::de::DeserializeOwned>(self, what: impl Display) -> StoreResult<T>;
}

/// JSON as text.
impl JsonColumn for String {
    fn encode<T: serde::Serialize>(value: &T, what: &str) -> StoreResult<Self> {
        to_json_text(value, what)
    }

    fn decode<T: serde::de::DeserializeOwned>(self, what: impl Display) -> StoreResult<T> {
        serde_json::from_str(&self).map_err(|err| StoreError::Corrupt(format!("{what}: {err}")))
    }
}

/// A JSON type of the database's own (jsonb).
impl JsonColumn for serde_json::Value {
    fn encode<T: serde::Serialize>(value: &T, what: &str) -> StoreResult<Self> {
        serde_json::to_value(value).map_err(|err| StoreError::Corrupt(format!("cannot encode {what}: {err}")))
    }

    fn decode<T: serde::de::DeserializeOwned>(self, what: impl Display) -> StoreResult<T> {
        serde_json::from_value(self).map_err(|err| StoreError::Corrupt(format!("{what}: {err}")))
    }
}

/// A stored row before it is checked: `key` names it in the errors of `into_model` and when it is unreadable.
pub trait Record: Sized {
    type Model;
    fn key(&self) -> &str;
    fn into_model(self) -> StoreResult<Self::Model>;
}

#[derive(FromRow)]
pub struct JobRow<Time, Json> {
    id: String,
    name: Option<String>,
    trigger: Json,
    action: Json,
    coalesce: bool,
    max_instances: i64,
    misfire_grace_time: Option<i64>,
    max_catchup_runs: Option<i64>,
    overlap: String,
    executor: String,
    jobstore: String,
    next_run_time: Option<Time>,
    paused: bool,
    created_at: Time,
    updated_at: Time,
    labels: Json,
    auto_pause_after_failures: Option<i64>,
    stale_after_seconds: Option<i64>,
    paused_reason: Option<String>,
    paused_until: Option<Time>,
    notify: Option<Json>,
    consecutive_failures: i64,
    last_success_at: Option<Time>,
    last_failure_at: Option<Time>,
    stale: bool,
}

impl<Time: TimeColumn, Json: JsonColumn> Record for JobRow<Time, Json> {
    type Model = Job;

    fn key(&self) -> &str {
        &self.id
    }

    fn into_model(self) -> StoreResult<Job> {
        let what = |column| RowColumn { record: "job", key: &self.id, column };
        Ok(Job {
            trigger: self.trigger.decode(what("trigger"))?,
            action: self.action.decode(what("action"))?,
            max_instances: narrow(self.max_instances, what("max_instances"))?,
            misfire_grace_time: self
                .misfire_grace_time
                .map(|seconds| narrow(seconds, what("misfire_grace_time")))
                .transpose()?,
            max_catchup_runs: self.max_catchup_runs.map(|runs| narrow(runs, what("max_catchup_runs"))).transpose()?,
            overlap: Overlap::parse(&self.overlap)
                .ok_or_else(|| StoreError::Corrupt(format!("{}: unknown {:?}", what("overlap"), self.overlap)))?,
            next_run_time: self.next_run_time.map(|time| time.into_time(what("next_run_time"))).transpose()?,
            created_at: self.created_at.into_time(what("created_at"))?,
            updated_at: self.updated_at.into_time(what("updated_at"))?,
            labels: self.labels.decode(what("labels"))?,
            auto_pause_after_failures: self
                .auto_pause_after_failures
                .map(|runs| narrow(runs, what("auto_pause_after_failures")))
                .transpose()?,
            stale_after_seconds: self
                .stale_after_seconds
                .map(|seconds| narrow(seconds, what("stale_after_seconds")))
                .transpose()?,
            paused_until: self.paused_until.map(|time| time.into_time(what("paused_until"))).transpose()?,
            health: crate::health::Health {
                consecutive_failures: narrow(self.consecutive_failures.max(0), what("consecutive_failures"))?,
                last_success_at: self
                    .last_success_at
                    .map(|time| time.into_time(what("last_success_at")))
                    .transpose()?,
                last_failure_at: self
                    .last_failure_at
                    .map(|time| time.into_time(what("last_failure_at")))
                    .transpose()?,
                stale: self.stale,
            },
            paused_reason: self.paused_reason,
            notify: self.notify.map(|notify| notify.decode(what("notify"))).transpose()?,
            name: self.name,
            coalesce: self.coalesce,
            executor: self.executor,
            jobstore: self.jobstore,
            paused: self.paused,
            id: self.id,
        })
    }
}

/// `Status` is the integer type of the `http_status` column.
#[derive(FromRow)]
pub struct RunRow<Time, Json, Status> {
    idempotency_key: String,
    job_id: String,
    scheduled_time: Time,
    status: String,
    attempts: i64,
    started_at: Option<Time>,
    finished_at: Option<Time>,
    http_status: Option<Status>,
    duration_ms: Option<i64>,
    error: Option<String>,
    response_excerpt: Option<String>,
    action: Json,
    executor: String,
    timezone: String,
    lease_expires_at: Option<Time>,
    created_at: Time,
    kind: String,
}

impl<Time: TimeColumn, Json: JsonColumn, Status: Into<i64>> Record for RunRow<Time, Json, Status> {
    type Model = Run;

    fn key(&self) -> &str {
        &self.idempotency_key
    }

    fn into_model(self) -> StoreResult<Run> {
        let what = |column| RowColumn { record: "run", key: &self.idempotency_key, column };
        let optional_time =
            |time: Option<Time>, column: &'static str| time.map(|time| time.into_time(what(column))).transpose();
        Ok(Run {
            scheduled_time: self.scheduled_time.into_time(what("scheduled_time"))?,
            status: RunStatus::parse(&self.status)
                .ok_or_else(|| StoreError::Corrupt(format!("{}: unknown {:?}", what("status"), self.status)))?,
            kind: RunKind::parse(&self.kind)
                .ok_or_else(|| StoreError::Corrupt(format!("{}: unknown {:?}", what("kind"), self.kind)))?,
            attempts: narrow(self.attempts, what("attempts"))?,
            started_at: optional_time(self.started_at, "started_at")?,
            finished_at: optional_time(self.finished_at, "finished_at")?,
            http_status: self.http_status.map(|status| narrow(status.into(), what("http_status"))).transpose()?,
            duration_ms: self.duration_ms.map(|ms| narrow(ms, what("duration_ms"))).transpose()?,
            action: self.action.decode(what("action"))?,
            lease_expires_at: optional_time(self.lease_expires_at, "lease_expires_at")?,
            created_at: self.created_at.into_time(what("created_at"))?,
            idempotency_key: self.idempotency_key,
            job_id: self.job_id,
            error: self.error,
            response_excerpt: self.response_excerpt,
            executor: self.executor,
            timezone: self.timezone,
            removed_job: None,
        })
    }
}

#[derive(FromRow)]
pub struct AuditRow<Time, Json> {
    id: String,
    recorded_at: Time,
    actor: String,
    action: String,
    job_id: Option<String>,
    reason: Option<String>,
    job_before: Option<Json>,
    job_after: Option<Json>,
}

impl<Time: TimeColumn, Json: JsonColumn> Record for AuditRow<Time, Json> {
    type Model = AuditEntry;

    fn key(&self) -> &str {
        &self.id
    }

    fn into_model(self) -> StoreResult<AuditEntry> {
        let what = |column| RowColumn { record: "audit entry", key: &self.id, column };
        Ok(AuditEntry {
            time: self.recorded_at.into_time(what("recorded_at"))?,
            action: AuditAction::parse(&self.action)
                .ok_or_else(|| StoreError::Corrupt(format!("{}: unknown {:?}", what("action"), self.action)))?,
            before: self.job_before.map(|json| json.decode(what("job_before"))).transpose()?,
            after: self.job_after.map(|json| json.decode(what("job_after"))).transpose()?,
            actor: self.actor,
            job_id: self.job_id,
            reason: self.reason,
            id: self.id,
        })
    }
}

pub fn models<R: Record>(rows: Vec<R>) -> StoreResult<Vec<R::Model>> {
    rows.into_iter().map(Record::into_model).collect()
}

/// A parameter of a statement; the dialect binds it in its own column types (`Dialect::bind`).
pub enum Param<'a, Json> {
    Text(Option<&'a str>),
    Int(Option<i64>),
    /// A 4-byte integer column (`http_status`).
    Int32(Option<i32>),
    Bool(bool),
    Time(Option<DateTime<Utc>>),
    Json(Json),
    /// A JSON document or NULL.
    NullableJson(Option<Json>),
    /// Several keys (job ids, idempotency keys) as one parameter, for `IN` or `= ANY`.
    Keys(Vec<&'a str>),
}

/// Every column of `jobs`, in the order of `job_columns!`.
pub fn job_params<Json: JsonColumn>(job: &Job) -> StoreResult<[Param<'_, Json>; 21]> {
    Ok([
        Param::Text(Some(&job.id)),
        Param::Text(job.name.as_deref()),
        Param::Json(Json::encode(&job.trigger, "trigger")?),
        Param::Json(Json::encode(&job.action, "action")?),
        Param::Bool(job.coalesce),
        Param::Int(Some(i64::from(job.max_instances))),
        Param::Int(job.misfire_grace_time.map(i64::from)),
        Param::Text(Some(&job.executor)),
        Param::Text(Some(&job.jobstore)),
        Param::Time(job.next_run_time),
        Param::Bool(job.paused),
        Param::Time(Some(job.created_at)),
        Param::Time(Some(job.updated_at)),
        Param::Json(Json::encode(&job.labels, "labels")?),
        Param::Int(job.max_catchup_runs.map(i64::from)),
        Param::Text(Some(job.overlap.as_str())),
        Param::Int(job.auto_pause_after_failures.map(i64::from)),
        Param::Int(job.stale_after_seconds.map(i64::from)),
        Param::Text(job.paused_reason.as_deref()),
        Param::Time(job.paused_until),
        Param::NullableJson(job.notify.as_ref().map(|notify| Json::encode(notify, "notify")).transpose()?),
    ])
}

/// Every column of `audit` in table order (`INSERT_AUDIT_SQL`).
pub fn audit_params<Json: JsonColumn>(entry: &AuditEntry) -> StoreResult<[Param<'_, Json>; 8]> {
    let json =
        |value: &Option<serde_json::Value>, what| value.as_ref().map(|value| Json::encode(value, what)).transpose();
    Ok([
        Param::Text(Some(&entry.id)),
        Param::Time(Some(entry.time)),
        Param::Text(Some(&entry.actor)),
        Param::Text(Some(entry.action.as_str())),
        Param::Text(entry.job_id.as_deref()),
        Param::Text(entry.reason.as_deref()),
        Param::NullableJson(json(&entry.before, "audit before")?),
        Param::NullableJson(json(&entry.after, "audit after")?),
    ])
}

/// The columns that find a run (its key and fire) and its progress before its lease: the first eleven of
/// `run_columns!`, and of what the recorder saves.
pub fn run_progress_params<Json>(run: &Run) -> [Param<'_, Json>; 11] {
    [
        Param::Text(Some(&run.idempotency_key)),
        Param::Text(Some(&run.job_id)),
        Param::Time(Some(run.scheduled_time)),
        Param::Text(Some(run.status.as_str())),
        Param::Int(Some(i64::from(run.attempts))),
        Param::Time(run.started_at),
        Param::Time(run.finished_at),
        Param::Int32(run.http_status.map(i32::from)),
        // Beyond i64::MAX ms (292 million years) nothing is lost by saturating.
        Param::Int(run.duration_ms.map(|ms| i64::try_from(ms).unwrap_or(i64::MAX))),
        Param::Text(run.error.as_deref()),
        Param::Text(run.response_excerpt.as_deref()),
    ]
}

/// Every column of `runs` in table order (`run_columns!`).
pub fn run_params<Json: JsonColumn>(run: &Run) -> StoreResult<impl Iterator<Item = Param<'_, Json>>> {
    let rest = [
        Param::Json(Json::encode(&run.action, "run action")?),
        Param::Text(Some(&run.executor)),
        Param::Text(Some(&run.timezone)),
        Param::Time(run.lease_expires_at),
        Param::Time(Some(run.created_at)),
        Param::Text(Some(run.kind.as_str())),
    ];
    Ok(run_progress_params(run).into_iter().chain(rest))
}

/// The columns of a run's progress after the three that find it (`run_progress_params` and the lease).
pub const RUN_PROGRESS_COLUMNS: [&str; 9] = [
    "status",
    "attempts",
    "started_at",
    "finished_at",
    "http_status",
    "duration_ms",
    "error",
    "response_excerpt",
    "lease_expires_at",
];

#[derive(FromRow)]
pub struct NotificationRow<Time, Json> {
    id: String,
    job_id: String,
    #[sqlx(rename = "type")]
    kind: String,
    payload: Json,
    state: String,
    attempts: i64,
    next_attempt_at: Time,
    lease_until: Option<Time>,
    created_at: Time,
    delivered_at: Option<Time>,
    last_error: Option<String>,
    target: Option<Json>,
}

impl<Time: TimeColumn, Json: JsonColumn> Record for NotificationRow<Time, Json> {
    type Model = crate::notify::ledger::Notification;

    fn key(&self) -> &str {
        &self.id
    }

    fn into_model(self) -> StoreResult<crate::notify::ledger::Notification> {
        let what = |column| RowColumn { record: "notification", key: &self.id, column };
        Ok(crate::notify::ledger::Notification {
            payload: self.payload.decode(what("payload"))?,
            state: crate::notify::ledger::NotificationState::parse(&self.state)
                .ok_or_else(|| StoreError::Corrupt(format!("{}: unknown {:?}", what("state"), self.state)))?,
            attempts: narrow(self.attempts.max(0), what("attempts"))?,
            next_attempt_at: self.next_attempt_at.into_time(what("next_attempt_at"))?,
            lease_until: self.lease_until.map(|time| time.into_time(what("lease_until"))).transpose()?,
            created_at: self.created_at.into_time(what("created_at"))?,
            delivered_at: self.delivered_at.map(|time| time.into_time(what("delivered_at"))).transpose()?,
            last_error: self.last_error,
            target: self.target.map(|target| target.decode(what("target"))).transpose()?,
            kind: self.kind,
            job_id: self.job_id,
            id: self.id,
        })
    }
}

/// Every column of `notifications` in table order (`notifications::INSERT_SQL`).
pub fn notification_params<Json: JsonColumn>(
    notification: &crate::notify::ledger::Notification,
) -> StoreResult<[Param<'_, Json>; 12]> {
    Ok([
        Param::Text(Some(&notification.id)),
        Param::Text(Some(&notification.job_id)),
        Param::Text(Some(&notification.kind)),
        Param::Json(Json::encode(&notification.payload, "payload")?),
        Param::Text(Some(notification.state.as_str())),
        Param::Int(Some(i64::from(notification.attempts))),
        Param::Time(Some(notification.next_attempt_at)),
        Param::Time(notification.lease_until),
        Param::Time(Some(notification.created_at)),
        Param::Time(notification.delivered_at),
        Param::Text(notification.last_error.as_deref()),
        Param::NullableJson(notification.target.as_ref().map(|target| Json::encode(target, "target")).transpose()?),
    ])
}
