//! `/v1/jobs…`: add, list, get, modify, remove, pause, resume, run now, run history. Each handler extracts,
//! calls the scheduler's job operation, and converts.

use crate::health::HealthOut;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use base64::Engine;
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::audit::ChangeBy;
use super::{ApiJson, ApiQuery, AppState};
use crate::action::{Action, HttpAction};
use crate::error::{ApiError, Problem, Result};
use crate::job::{Job, Overlap, Run, RunKind, RunStatus};
use crate::labels::{self, Labels, Selector};
use crate::scheduler::{JobChanges, JobFilter, JobSpec};
use crate::store::{JobCursor, RunCursor, RunQuery};
use crate::trigger::TriggerSpec;
use crate::trigger::time::format_time;

/// `limit` is 1–1000, default 100.
pub const DEFAULT_PAGE: usize = 100;
pub const MAX_PAGE: usize = 1000;

/// A job to add.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JobIn {
    /// 1–200 characters of `[A-Za-z0-9._:-]`; a UUID when absent.
    #[schema(pattern = "^[A-Za-z0-9._:-]{1,200}$", min_length = 1, max_length = 200)]
    pub id: Option<String>,
    /// A name for people.
    #[schema(max_length = 500)]
    pub name: Option<String>,
    /// When absent the job runs once, now.
    pub trigger: Option<TriggerSpec>,
    /// The webhook call each fire makes.
    pub action: HttpAction,
    /// Fold a backlog of missed fires into one. Absent: the configured default.
    pub coalesce: Option<bool>,
    /// How many of its fires may be pending or running at once; a fire beyond is skipped. Absent: the
    /// configured default.
    #[serde(default, deserialize_with = "crate::integral::optional")]
    #[schema(format = Int64, minimum = 1, maximum = 4294967295.0)]
    pub max_instances: Option<u32>,
    /// Seconds a fire may be late and still run; `null`: always run. Absent: the configured default.
    #[serde(default, deserialize_with = "crate::integral::nullable")]
    #[schema(value_type = Option<u32>, nullable, format = Int64, minimum = 0, maximum = 4294967295.0)]
    pub misfire_grace_time: Option<Option<u32>>,
    /// After downtime, without coalesce: of the missed fires still within misfire_grace_time, deliver at most the
    /// newest this many and record the older ones `missed`. Absent or null: all of them.
    #[serde(default, deserialize_with = "crate::integral::optional")]
    #[schema(value_type = Option<u32>, nullable, format = Int64, minimum = 1, maximum = 100000)]
    pub max_catchup_runs: Option<u32>,
    /// What a fire that comes while `max_instances` runs are going does: `skip` (the default: recorded
    /// `skipped`), `buffer_one` (the newest kept and delivered as soon as a run ends), `buffer_all` (every one kept
    /// and delivered in order) or `cancel_other` (the oldest run aborted, recorded `cancelled`).
    pub overlap: Option<Overlap>,
    /// Overrides the first fire time (RFC 3339, or naive in the trigger's zone).
    pub next_run_time: Option<String>,
    /// The delivery pool its fires run in; default `default`.
    pub executor: Option<String>,
    /// The store to keep it in. Absent: `default`, or the first store by name when none is called that.
    #[schema(min_length = 1)]
    pub jobstore: Option<String>,
    /// Replace a job with the same id instead of answering 409.
    #[serde(default)]
    pub replace_existing: bool,
    /// Add the job paused.
    #[serde(default)]
    pub paused: bool,
    /// Labels to select the job by.
    #[serde(default)]
    #[schema(schema_with = labels::labels_schema)]
    pub labels: Labels,
    /// Pause the job after this many consecutive failed runs (`paused_reason` "auto: N consecutive failures").
    /// Absent or null: never.
    #[serde(default, deserialize_with = "crate::integral::optional")]
    #[schema(value_type = Option<u32>, nullable, format = Int64, minimum = 1, maximum = 4294967295.0)]
    pub auto_pause_after_failures: Option<u32>,
    /// The job becomes `stale` when it has had no successful run for this many seconds (from its last success,
    /// or from when it was added). Absent or null: never.
    #[serde(default, deserialize_with = "crate::integral::optional")]
    #[schema(value_type = Option<u32>, nullable, format = Int64, minimum = 1, maximum = 4294967295.0)]
    pub stale_after_seconds: Option<u32>,
    /// Where and when this job's health notifications go (docs/health.md). Absent or null: `[notify]` of the
    /// configuration, if any.
    #[serde(default)]
    pub notify: Option<crate::notify::NotifySpec>,
}

/// Fields to change; absent fields keep their value. A new `trigger` reschedules.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JobPatch {
    /// A name for people; `null` removes it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, nullable, max_length = 500)]
    pub name: Option<Option<String>>,
    /// A new trigger; the job is rescheduled by it.
    pub trigger: Option<TriggerSpec>,
    /// A new webhook call.
    pub action: Option<HttpAction>,
    /// Fold a backlog of missed fires into one.
    pub coalesce: Option<bool>,
    /// How many of its fires may be pending or running at once.
    #[serde(default, deserialize_with = "crate::integral::optional")]
    #[schema(format = Int64, minimum = 1, maximum = 4294967295.0)]
    pub max_instances: Option<u32>,
    /// Seconds a fire may be late and still run; `null`: always run.
    #[serde(default, deserialize_with = "crate::integral::nullable")]
    #[schema(value_type = Option<u32>, nullable, format = Int64, minimum = 0, maximum = 4294967295.0)]
    pub misfire_grace_time: Option<Option<u32>>,
    /// After downtime, without coalesce, deliver at most the newest this many missed fires; `null`: all of them.
    #[serde(default, deserialize_with = "crate::integral::nullable")]
    #[schema(value_type = Option<u32>, nullable, format = Int64, minimum = 1, maximum = 100000)]
    pub max_catchup_runs: Option<Option<u32>>,
    /// What a fire beyond `max_instances` does: `skip`, `buffer_one`, `buffer_all` or `cancel_other`.
    pub overlap: Option<Overlap>,
    /// The next fire time (RFC 3339, or naive in the trigger's zone).
    pub next_run_time: Option<String>,
    /// The delivery pool its fires run in.
    pub executor: Option<String>,
    /// Pause (`true`) or resume (`false`) the job.
    pub paused: Option<bool>,
    /// New labels, replacing all of the job's (`{}` removes them).
    #[schema(schema_with = labels::optional_labels_schema)]
    pub labels: Option<Labels>,
    /// Pause the job after this many consecutive failed runs; `null`: never.
    #[serde(default, deserialize_with = "crate::integral::nullable")]
    #[schema(value_type = Option<u32>, nullable, format = Int64, minimum = 1, maximum = 4294967295.0)]
    pub auto_pause_after_failures: Option<Option<u32>>,
    /// Stale after this many seconds without a successful run; `null`: never.
    #[serde(default, deserialize_with = "crate::integral::nullable")]
    #[schema(value_type = Option<u32>, nullable, format = Int64, minimum = 1, maximum = 4294967295.0)]
    pub stale_after_seconds: Option<Option<u32>>,
    /// New health notifications (a masked secret keeps the stored one); `null`: the configuration's `[notify]`.
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable)]
    pub notify: Option<Option<crate::notify::NotifySpec>>,
}

/// Fields to change on every selected job; absent fields keep each job's value. The schedule (`trigger`,
/// `next_run_time`) is changed job by job.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JobsPatch {
    /// A name for people; `null` removes it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, nullable, max_length = 500)]
    pub name: Option<Option<String>>,
    /// A new webhook call.
    pub action: Option<HttpAction>,
    /// Fold a backlog of missed fires into one.
    pub coalesce: Option<bool>,
    /// How many of its fires may be pending or running at once.
    #[serde(default, deserialize_with = "crate::integral::optional")]
    #[schema(format = Int64, minimum = 1, maximum = 4294967295.0)]
    pub max_instances: Option<u32>,
    /// Seconds a fire may be late and still run; `null`: always run.
    #[serde(default, deserialize_with = "crate::integral::nullable")]
    #[schema(value_type = Option<u32>, nullable, format = Int64, minimum = 0, maximum = 4294967295.0)]
    pub misfire_grace_time: Option<Option<u32>>,
    /// After downtime, without coalesce, deliver at most the newest this many missed fires; `null`: all of them.
    #[serde(default, deserialize_with = "crate::integral::nullable")]
    #[schema(value_type = Option<u32>, nullable, format = Int64, minimum = 1, maximum = 100000)]
    pub max_catchup_runs: Option<Option<u32>>,
    /// What a fire beyond `max_instances` does: `skip`, `buffer_one`, `buffer_all` or `cancel_other`.
    pub overlap: Option<Overlap>,
    /// The delivery pool their fires run in.
    pub executor: Option<String>,
    /// Pause (`true`) or resume (`false`) the jobs: a resumed job's next run time is computed from now, and one
    /// whose trigger has ended is removed.
    pub paused: Option<bool>,
    /// New labels, replacing all of each job's (`{}` removes them).
    #[schema(schema_with = labels::optional_labels_schema)]
    pub labels: Option<Labels>,
    /// Pause the job after this many consecutive failed runs; `null`: never.
    #[serde(default, deserialize_with = "crate::integral::nullable")]
    #[schema(value_type = Option<u32>, nullable, format = Int64, minimum = 1, maximum = 4294967295.0)]
    pub auto_pause_after_failures: Option<Option<u32>>,
    /// Stale after this many seconds without a successful run; `null`: never.
    #[serde(default, deserialize_with = "crate::integral::nullable")]
    #[schema(value_type = Option<u32>, nullable, format = Int64, minimum = 1, maximum = 4294967295.0)]
    pub stale_after_seconds: Option<Option<u32>>,
}

/// Tells "absent" (outer None, via `default`) from "null" (Some(None)).
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(deserializer: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(deserializer).map(Some)
}

/// A job as returned: secrets masked, times in the trigger's zone.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct JobOut {
    /// The job's id.
    #[schema(pattern = "^[A-Za-z0-9._:-]{1,200}$", min_length = 1, max_length = 200)]
    pub id: String,
    /// A name for people.
    pub name: Option<String>,
    /// When it fires, with the start date fixed when it was added.
    pub trigger: TriggerSpec,
    /// What a fire does; secret header values masked.
    pub action: Action,
    /// Fold a backlog of missed fires into one.
    pub coalesce: bool,
    /// How many of its fires may be pending or running at once.
    pub max_instances: u32,
    /// Seconds a fire may be late and still run; null: always run.
    pub misfire_grace_time: Option<u32>,
    /// After downtime, without coalesce, at most this many of the missed fires are delivered; null: all of them.
    pub max_catchup_runs: Option<u32>,
    /// What a fire beyond `max_instances` does.
    pub overlap: Overlap,
    /// The delivery pool its fires run in.
    pub executor: String,
    /// The store it lives in.
    pub jobstore: String,
    /// Null when paused.
    pub next_run_time: Option<String>,
    /// A paused job does not fire.
    pub paused: bool,
    /// Labels to select the job by.
    #[serde(default)]
    #[schema(schema_with = labels::labels_schema)]
    pub labels: Labels,
    /// When it was added; RFC 3339 in the trigger's zone.
    pub created_at: String,
    /// When it was last changed, by a client or by firing; RFC 3339 in the trigger's zone.
    pub updated_at: String,
    /// Paused after this many consecutive failed runs; null: never.
    pub auto_pause_after_failures: Option<u32>,
    /// Stale after this many seconds without a successful run; null: never.
    pub stale_after_seconds: Option<u32>,
    /// Why the job is paused (given with the pause, or "auto: N consecutive failures"); null when not paused.
    pub paused_reason: Option<String>,
    /// When the paused job resumes by itself; RFC 3339 in the trigger's zone, null when it does not.
    pub paused_until: Option<String>,
    /// Its own health notifications, secrets masked; null: the configuration's `[notify]`, if any.
    pub notify: Option<crate::notify::NotifySpec>,
    /// How its runs went (read-only).
    pub health: HealthOut,
}

/// A page of jobs.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct JobList {
    /// Soonest next run first; paused jobs last.
    pub jobs: Vec<JobOut>,
    /// Pass as `cursor` for the next page; null on the last.
    pub next_cursor: Option<String>,
}

/// One run of the ledger.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RunOut {
    /// The job that fired; it may be gone since.
    #[schema(pattern = "^[A-Za-z0-9._:-]{1,200}$", min_length = 1, max_length = 200)]
    pub job_id: String,
    /// The fire time the trigger gave, before jitter; RFC 3339 in the trigger's zone.
    pub scheduled_time: String,
    /// Why the run exists: `scheduled` (a fire of the trigger), `manual` (run now) or `backfill`.
    pub kind: RunKind,
    /// When the first attempt started.
    pub started_at: Option<String>,
    /// When delivery ended; for a fire only recorded (missed, skipped, coalesced), when it was recorded.
    pub finished_at: Option<String>,
    /// Where the fire stands.
    pub status: RunStatus,
    /// Delivery attempts made so far.
    pub attempts: u32,
    /// The latest attempt's HTTP status, if an answer came.
    pub http_status: Option<u16>,
    /// How long the latest attempt took, in milliseconds.
    pub duration_ms: Option<u64>,
    /// Why the latest attempt failed, or why the fire was not delivered.
    pub error: Option<String>,
    /// The first 1 KiB of the latest answer's body.
    pub response_excerpt: Option<String>,
    /// Unique to this fire; sent as the `idempotency-key` header of every attempt.
    pub idempotency_key: String,
}

/// A page of a job's runs.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RunList {
    /// Newest scheduled time first.
    pub runs: Vec<RunOut>,
    /// Pass as `cursor` for the next page; null on the last.
    pub next_cursor: Option<String>,
}

/// What a bulk removal removed.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Removed {
    /// How many jobs.
    pub removed: u64,
}

/// What a bulk change changed.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Modified {
    /// How many jobs (a resumed job whose trigger had ended, and was removed, included).
    pub modified: u64,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListJobsQuery {
    /// Only jobs of this store.
    #[param(min_length = 1)]
    pub jobstore: Option<String>,
    /// Only paused jobs (`true`) or only active ones (`false`).
    pub paused: Option<bool>,
    /// Only jobs whose labels this Kubernetes label selector selects: comma-separated requirements, all of which
    /// must hold (`key=value`, `key==value`, `key!=value`, `key in (a,b)`, `key notin (a,b)`, `key`, `!key`).
    #[param(required = false, value_type = String, max_length = 4096)]
    pub selector: Option<String>,
    /// 1–1000, default 100.
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
    /// The `next_cursor` of the previous page.
    #[param(min_length = 1)]
    pub cursor: Option<String>,
    /// Only jobs in this health state: `healthy`, `failing`, `stale` or `unknown`.
    #[param(value_type = Option<crate::health::HealthState>)]
    pub health: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct RemoveAllQuery {
    /// Only jobs of this store.
    #[param(min_length = 1)]
    pub jobstore: Option<String>,
    /// Only the jobs this label selector selects (see `GET /v1/jobs`); it needs at least one requirement. Without
    /// it every job goes.
    #[param(required = false, value_type = String, max_length = 4096)]
    pub selector: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ModifyJobsQuery {
    /// The jobs to change: a label selector (see `GET /v1/jobs`) with at least one requirement.
    #[param(required = true, value_type = String, max_length = 4096)]
    pub selector: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListRunsQuery {
    /// Only runs with this status.
    pub status: Option<RunStatus>,
    /// 1–1000, default 100.
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
    /// The `next_cursor` of the previous page.
    #[param(min_length = 1)]
    pub cursor: Option<String>,
}

impl JobOut {
    pub fn of(job: &Job, default_tz: Tz) -> JobOut {
        let tz = zone_of(job, default_tz);
        JobOut {
            id: job.id.clone(),
            name: job.name.clone(),
            trigger: job.trigger.clone(),
            action: job.action.masked(),
            coalesce: job.coalesce,
            max_instances: job.max_instances,
            misfire_grace_time: job.misfire_grace_time,
            max_catchup_runs: job.max_catchup_runs,
            overlap: job.overlap,
            executor: job.executor.clone(),
            jobstore: job.jobstore.clone(),
            next_run_time: job.next_run_time.map(|t| format_time(t, tz)),
            paused: job.paused,
            labels: job.labels.clone(),
            created_at: format_time(job.created_at, tz),
            updated_at: format_time(job.updated_at, tz),
            auto_pause_after_failures: job.auto_pause_after_failures,
            stale_after_seconds: job.stale_after_seconds,
            paused_reason: job.paused_reason.clone(),
            paused_until: job.paused_until.map(|t| format_time(t, tz)),
            notify: job.notify.as_ref().map(crate::notify::NotifySpec::masked),
            health: HealthOut {
                state: job.health.state(),
                consecutive_failures: job.health.consecutive_failures,
                last_success_at: job.health.last_success_at.map(|t| format_time(t, tz)),
                last_failure_at: job.health.last_failure_at.map(|t| format_time(t, tz)),
            },
        }
    }
}

impl RunOut {
    pub fn of(run: &Run) -> RunOut {
        let tz = run.timezone();
        RunOut {
            job_id: run.job_id.clone(),
            scheduled_time: format_time(run.scheduled_time, tz),
            kind: run.kind,
            started_at: run.started_at.map(|t| format_time(t, tz)),
            finished_at: run.finished_at.map(|t| format_time(t, tz)),
            status: run.status,
            attempts: run.attempts,
            http_status: run.http_status,
            duration_ms: run.duration_ms,
            error: run.error.clone(),
            response_excerpt: run.response_excerpt.clone(),
            idempotency_key: run.idempotency_key.clone(),
        }
    }
}

/// A job as the API shows it, as JSON: what the audit keeps as a change's `before` and `after`.
pub fn job_view(job: &Job, default_tz: Tz) -> serde_json::Value {
    serde_json::to_value(JobOut::of(job, default_tz)).unwrap_or(serde_json::Value::Null)
}

fn zone_of(job: &Job, default_tz: Tz) -> Tz {
    job.trigger.timezone(default_tz)
}

pub(super) fn page_size(limit: Option<usize>) -> Result<usize> {
    match limit.unwrap_or(DEFAULT_PAGE) {
        limit @ 1..=MAX_PAGE => Ok(limit),
        other => Err(ApiError::invalid("limit", format!("{other} is out of range 1–{MAX_PAGE}"))),
    }
}

impl From<JobIn> for JobSpec {
    fn from(input: JobIn) -> JobSpec {
        JobSpec {
            id: input.id,
            name: input.name,
            trigger: input.trigger,
            action: Action::Http(input.action),
            coalesce: input.coalesce,
            max_instances: input.max_instances,
            misfire_grace_time: input.misfire_grace_time,
            max_catchup_runs: input.max_catchup_runs,
            overlap: input.overlap,
            next_run_time: input.next_run_time,
            executor: input.executor,
            jobstore: input.jobstore,
            replace_existing: input.replace_existing,
            paused: input.paused,
            labels: input.labels,
            auto_pause_after_failures: input.auto_pause_after_failures,
            stale_after_seconds: input.stale_after_seconds,
            notify: input.notify,
        }
    }
}

impl From<JobPatch> for JobChanges {
    fn from(patch: JobPatch) -> JobChanges {
        JobChanges {
            name: patch.name,
            trigger: patch.trigger,
            action: patch.action.map(Action::Http),
            coalesce: patch.coalesce,
            max_instances: patch.max_instances,
            misfire_grace_time: patch.misfire_grace_time,
            max_catchup_runs: patch.max_catchup_runs,
            overlap: patch.overlap,
            next_run_time: patch.next_run_time,
            executor: patch.executor,
            paused: patch.paused,
            labels: patch.labels,
            auto_pause_after_failures: patch.auto_pause_after_failures,
            stale_after_seconds: patch.stale_after_seconds,
            notify: patch.notify,
        }
    }
}

impl From<JobsPatch> for JobChanges {
    fn from(patch: JobsPatch) -> JobChanges {
        JobChanges {
            name: patch.name,
            trigger: None,
            action: patch.action.map(Action::Http),
            coalesce: patch.coalesce,
            max_instances: patch.max_instances,
            misfire_grace_time: patch.misfire_grace_time,
            max_catchup_runs: patch.max_catchup_runs,
            overlap: patch.overlap,
            next_run_time: None,
            executor: patch.executor,
            paused: patch.paused,
            labels: patch.labels,
            auto_pause_after_failures: patch.auto_pause_after_failures,
            stale_after_seconds: patch.stale_after_seconds,
            notify: None,
        }
    }
}

/// Writes the selector grammar into the spec as each `selector` parameter's pattern (an attribute takes only a
/// literal): the empty selector for a list, at least one requirement for a bulk change or removal.
pub fn document_selectors(spec: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::{RefOr, schema::Schema};
    let Some(jobs) = spec.paths.paths.get_mut("/v1/jobs") else { return };
    let operations = [(&mut jobs.get, labels::SELECTOR_PATTERN), (&mut jobs.patch, labels::NON_EMPTY_SELECTOR_PATTERN)];
    let operations = operations.into_iter().chain([(&mut jobs.delete, labels::NON_EMPTY_SELECTOR_PATTERN)]);
    for (operation, pattern) in operations {
        let parameters = operation.as_mut().and_then(|operation| operation.parameters.as_mut());
        for parameter in parameters.into_iter().flatten() {
            if let RefOr::T(parameter) = parameter
                && parameter.name == "selector"
                && let Some(RefOr::T(Schema::Object(schema))) = parameter.schema.as_mut()
            {
                schema.pattern = Some(pattern.to_string());
            }
        }
    }
}

/// A selector from the query string; a malformed one is a 422 naming `selector`.
fn parse_selector(selector: Option<&str>) -> Result<Selector> {
    selector.map_or(Ok(Selector::default()), |text| {
        Selector::parse(text).map_err(|message| ApiError::invalid("selector", message))
    })
}

/// Add a job
#[utoipa::path(post, path = "/v1/jobs", tag = "jobs", request_body = JobIn,
    responses((status = 201, description = "The job as added, its trigger resolved", body = JobOut),
        (status = 400, description = "Malformed JSON or query string, or a cursor this API did not give", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A job with this id exists and `replace_existing` is false, or the store is full", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The request body is larger than 1 MiB", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A field breaks a rule; `field` names it", body = Problem, content_type = "application/problem+json")))]
pub async fn add_job(
    State(state): State<AppState>,
    ChangeBy(change): ChangeBy,
    ApiJson(input): ApiJson<JobIn>,
) -> Result<(StatusCode, Json<JobOut>)> {
    let job = state.scheduler.by(change).add_job(input.into()).await?;
    Ok((StatusCode::CREATED, Json(JobOut::of(&job, state.scheduler.default_tz))))
}

/// List jobs, by next run time
#[utoipa::path(get, path = "/v1/jobs", tag = "jobs", params(ListJobsQuery),
    responses((status = 200, description = "A page of jobs", body = JobList), (status = 400, description = "Malformed JSON or query string, or a cursor this API did not give", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A field breaks a rule; `field` names it", body = Problem, content_type = "application/problem+json")))]
pub async fn list_jobs(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<ListJobsQuery>,
) -> Result<Json<JobList>> {
    let limit = page_size(query.limit)?;
    let after = query.cursor.as_deref().map(decode_job_cursor).transpose()?;
    let selector = parse_selector(query.selector.as_deref())?;
    let health = (query.health.as_deref())
        .map(|state| {
            crate::health::HealthState::parse(state).ok_or_else(|| {
                ApiError::invalid("health", format!("{state:?} is not one of healthy, failing, stale, unknown"))
            })
        })
        .transpose()?;
    let filter =
        JobFilter { jobstore: query.jobstore, paused: query.paused, selector, after, limit: limit + 1, health };
    let mut jobs = state.scheduler.list_jobs(&filter).await?;
    let next_cursor = (jobs.len() > limit).then(|| encode_job_cursor(&JobCursor::of(&jobs[limit - 1])));
    jobs.truncate(limit);
    let default_tz = state.scheduler.default_tz;
    Ok(Json(JobList { jobs: jobs.iter().map(|job| JobOut::of(job, default_tz)).collect(), next_cursor }))
}

/// Get a job
#[utoipa::path(get, path = "/v1/jobs/{id}", tag = "jobs", params(("id" = String, Path, description = "The job's id", pattern = "^[A-Za-z0-9._:-]{1,200}$", min_length = 1, max_length = 200)),
    responses((status = 200, description = "The job", body = JobOut), (status = 404, description = "No job with this id", body = Problem, content_type = "application/problem+json")))]
pub async fn get_job(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<JobOut>> {
    let job =
        state.scheduler.get_job(&id).await?.ok_or_else(|| ApiError::NotFound(format!("no job with id {id:?}")))?;
    Ok(Json(JobOut::of(&job, state.scheduler.default_tz)))
}

/// Modify a job; a new trigger reschedules it
#[utoipa::path(patch, path = "/v1/jobs/{id}", tag = "jobs", params(("id" = String, Path, description = "The job's id", pattern = "^[A-Za-z0-9._:-]{1,200}$", min_length = 1, max_length = 200)), request_body = JobPatch,
    responses((status = 200, description = "The job as changed", body = JobOut), (status = 400, description = "Malformed JSON or query string, or a cursor this API did not give", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No job with this id", body = Problem, content_type = "application/problem+json"), (status = 422, description = "A field breaks a rule; `field` names it", body = Problem, content_type = "application/problem+json")))]
pub async fn modify_job(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ChangeBy(change): ChangeBy,
    ApiJson(patch): ApiJson<JobPatch>,
) -> Result<Json<JobOut>> {
    let job = state.scheduler.by(change).modify_job(&id, patch.into()).await?;
    Ok(Json(JobOut::of(&job, state.scheduler.default_tz)))
}

/// Remove a job
#[utoipa::path(delete, path = "/v1/jobs/{id}", tag = "jobs", params(("id" = String, Path, description = "The job's id", pattern = "^[A-Za-z0-9._:-]{1,200}$", min_length = 1, max_length = 200)),
    responses((status = 204, description = "The job is removed; its runs stay in the ledger"), (status = 404, description = "No job with this id", body = Problem, content_type = "application/problem+json")))]
pub async fn remove_job(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ChangeBy(change): ChangeBy,
) -> Result<StatusCode> {
    state.scheduler.by(change).remove_job(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Remove all jobs, or those a selector selects (optionally of one job store)
#[utoipa::path(delete, path = "/v1/jobs", tag = "jobs", params(RemoveAllQuery),
    responses((status = 200, description = "How many jobs were removed", body = Removed), (status = 400, description = "Malformed JSON or query string, or a cursor this API did not give", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A field breaks a rule; `field` names it", body = Problem, content_type = "application/problem+json")))]
pub async fn remove_all_jobs(
    State(state): State<AppState>,
    ChangeBy(change): ChangeBy,
    ApiQuery(query): ApiQuery<RemoveAllQuery>,
) -> Result<Json<Removed>> {
    let removed = match query.selector.as_deref() {
        Some(text) => {
            let selector = parse_selector(Some(text))?;
            state.scheduler.by(change).remove_jobs(&selector, query.jobstore.as_deref()).await?
        }
        None => state.scheduler.by(change).remove_all_jobs(query.jobstore.as_deref()).await?,
    };
    Ok(Json(Removed { removed }))
}

/// Change every job a selector selects
#[utoipa::path(patch, path = "/v1/jobs", tag = "jobs", params(ModifyJobsQuery), request_body = JobsPatch,
    responses((status = 200, description = "How many jobs were changed", body = Modified), (status = 400, description = "Malformed JSON or query string, or a cursor this API did not give", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A field breaks a rule, or the selector is missing or malformed; `field` names it", body = Problem, content_type = "application/problem+json")))]
pub async fn modify_jobs(
    State(state): State<AppState>,
    ChangeBy(change): ChangeBy,
    ApiQuery(query): ApiQuery<ModifyJobsQuery>,
    ApiJson(patch): ApiJson<JobsPatch>,
) -> Result<Json<Modified>> {
    let text =
        query.selector.ok_or_else(|| ApiError::invalid("selector", "is required: it says which jobs to change"))?;
    let selector = parse_selector(Some(&text))?;
    let modified = state.scheduler.by(change).modify_jobs(&selector, patch.into()).await?;
    Ok(Json(Modified { modified }))
}

/// Pause a job: its next run time becomes null
#[utoipa::path(post, path = "/v1/jobs/{id}/pause", tag = "jobs", params(("id" = String, Path, description = "The job's id", pattern = "^[A-Za-z0-9._:-]{1,200}$", min_length = 1, max_length = 200)),
    request_body(content = Option<PauseIn>, description = "Optional: why, and until when"),
    responses((status = 200, description = "The job, paused", body = JobOut), (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"), (status = 404, description = "No job with this id", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`until` is not an RFC 3339 time in the future, or `reason` is too long; `field` names it", body = Problem, content_type = "application/problem+json")))]
pub async fn pause_job(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ChangeBy(change): ChangeBy,
    super::OptionalJson(pause): super::OptionalJson<Option<PauseIn>>,
) -> Result<Json<JobOut>> {
    // No body: a plain pause.
    let pause = pause.unwrap_or_default();
    if let Some(reason) = &pause.reason {
        crate::audit::validate_reason(reason).map_err(|message| ApiError::invalid("reason", message))?;
    }
    let until = pause
        .until
        .as_deref()
        .map(|until| {
            chrono::DateTime::parse_from_rfc3339(until)
                .map(|until| until.with_timezone(&chrono::Utc))
                .map_err(|err| ApiError::invalid("until", format!("is not an RFC 3339 time: {err}")))
        })
        .transpose()?;
    let job = state.scheduler.by(change).pause_job_until(&id, pause.reason, until).await?;
    Ok(Json(JobOut::of(&job, state.scheduler.default_tz)))
}

/// Why and until when a job is paused (`POST /v1/jobs/{id}/pause`); both optional.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PauseIn {
    /// Why: shown as the job's `paused_reason` and recorded in the audit trail.
    #[schema(max_length = 1000)]
    pub reason: Option<String>,
    /// RFC 3339, in the future: the job resumes by itself then (event `job_resumed`).
    pub until: Option<String>,
}

/// Resume a job: its next run time is recomputed from now
#[utoipa::path(post, path = "/v1/jobs/{id}/resume", tag = "jobs", params(("id" = String, Path, description = "The job's id", pattern = "^[A-Za-z0-9._:-]{1,200}$", min_length = 1, max_length = 200)),
    responses((status = 200, description = "The job, resumed", body = JobOut), (status = 404, description = "No job with this id", body = Problem, content_type = "application/problem+json")))]
pub async fn resume_job(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ChangeBy(change): ChangeBy,
) -> Result<Json<JobOut>> {
    let job = state.scheduler.by(change).resume_job(&id).await?;
    Ok(Json(JobOut::of(&job, state.scheduler.default_tz)))
}

/// Run a job once now, outside its schedule
#[utoipa::path(post, path = "/v1/jobs/{id}/run", tag = "jobs", params(("id" = String, Path, description = "The job's id", pattern = "^[A-Za-z0-9._:-]{1,200}$", min_length = 1, max_length = 200)),
    responses((status = 202, description = "The run, pending; it is delivered in the background", body = RunOut),
        (status = 404, description = "No job with this id", body = Problem, content_type = "application/problem+json"), (status = 409, description = "A run of this job at this instant exists", body = Problem, content_type = "application/problem+json")))]
pub async fn run_job(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ChangeBy(change): ChangeBy,
) -> Result<(StatusCode, Json<RunOut>)> {
    let run = state.scheduler.by(change).run_job(&id).await?;
    Ok((StatusCode::ACCEPTED, Json(RunOut::of(&run))))
}

/// A job's run history, newest first
#[utoipa::path(get, path = "/v1/jobs/{id}/runs", tag = "jobs", params(("id" = String, Path, description = "The job's id", pattern = "^[A-Za-z0-9._:-]{1,200}$", min_length = 1, max_length = 200), ListRunsQuery),
    responses((status = 200, description = "A page of the job's runs", body = RunList), (status = 400, description = "Malformed JSON or query string, or a cursor this API did not give", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No job with this id and no runs of one", body = Problem, content_type = "application/problem+json"), (status = 422, description = "A field breaks a rule; `field` names it", body = Problem, content_type = "application/problem+json")))]
pub async fn list_runs(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiQuery(query): ApiQuery<ListRunsQuery>,
) -> Result<Json<RunList>> {
    let limit = page_size(query.limit)?;
    let after = query.cursor.as_deref().map(decode_run_cursor).transpose()?;
    let mut runs = state.scheduler.list_runs(&id, &RunQuery { status: query.status, after, limit: limit + 1 }).await?;
    let next_cursor = (runs.len() > limit).then(|| {
        let last = &runs[limit - 1];
        encode_run_cursor(&RunCursor {
            scheduled_time: last.scheduled_time,
            idempotency_key: last.idempotency_key.clone(),
        })
    });
    runs.truncate(limit);
    Ok(Json(RunList { runs: runs.iter().map(RunOut::of).collect(), next_cursor }))
}

// Cursors are opaque to clients: base64 of "<µs since epoch or ->|<id>".

fn encode(text: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text)
}

/// A cursor of a time (µs since the epoch, or `-`) and a key.
pub(super) fn encode_cursor_parts(time: &str, key: &str) -> String {
    encode(&format!("{time}|{key}"))
}

pub(super) fn decode_cursor_parts(cursor: &str) -> Result<(String, String)> {
    decode(cursor)
}

fn decode(cursor: &str) -> Result<(String, String)> {
    let bad = || ApiError::BadRequest("cursor: not a cursor given by this API".to_string());
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(cursor).map_err(|_| bad())?;
    let text = String::from_utf8(bytes).map_err(|_| bad())?;
    let (time, key) = text.split_once('|').ok_or_else(bad)?;
    Ok((time.to_string(), key.to_string()))
}

pub(super) fn micros_to_time(micros: &str) -> Result<DateTime<Utc>> {
    micros
        .parse::<i64>()
        .ok()
        .and_then(DateTime::from_timestamp_micros)
        .ok_or_else(|| ApiError::BadRequest("cursor: not a cursor given by this API".to_string()))
}

fn encode_job_cursor(cursor: &JobCursor) -> String {
    let time = cursor.next_run_time.map_or("-".to_string(), |t| t.timestamp_micros().to_string());
    encode(&format!("{time}|{}", cursor.id))
}

fn decode_job_cursor(cursor: &str) -> Result<JobCursor> {
    let (time, id) = decode(cursor)?;
    let next_run_time = if time == "-" { None } else { Some(micros_to_time(&time)?) };
    Ok(JobCursor { next_run_time, id })
}

fn encode_run_cursor(cursor: &RunCursor) -> String {
    encode(&format!("{}|{}", cursor.scheduled_time.timestamp_micros(), cursor.idempotency_key))
}

fn decode_run_cursor(cursor: &str) -> Result<RunCursor> {
    let (time, key) = decode(cursor)?;
    Ok(RunCursor { scheduled_time: micros_to_time(&time)?, idempotency_key: key })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_garbage_is_rejected() {
        let t = DateTime::from_timestamp_micros(1_790_000_000_123_456).unwrap();
        let job = JobCursor { next_run_time: Some(t), id: "a|b".into() };
        assert_eq!(decode_job_cursor(&encode_job_cursor(&job)).unwrap(), job);
        let paused = JobCursor { next_run_time: None, id: "x".into() };
        assert_eq!(decode_job_cursor(&encode_job_cursor(&paused)).unwrap(), paused);
        let run = RunCursor { scheduled_time: t, idempotency_key: "k".into() };
        assert_eq!(decode_run_cursor(&encode_run_cursor(&run)).unwrap(), run);
        assert!(decode_job_cursor("!!!").is_err());
        assert!(decode_job_cursor(&encode("nonsense")).is_err());
        assert!(decode_run_cursor(&encode("-|k")).is_err());
    }
}
