//! `/v1/jobs…`: add, list, get, modify, remove, pause, resume, run now, run history.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use base64::Engine;
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{ApiJson, ApiQuery, AppState};
use crate::action::HttpAction;
use crate::error::{ApiError, Problem, Result};
use crate::job::{self, Job, Run, RunStatus};
use crate::scheduler::events::{EventKind, Subject};
use crate::store::{JobCursor, JobQuery, RunCursor, RunQuery, job_order_key};
use crate::trigger::time::{format_time, parse_time};
use crate::trigger::{DateSpec, Trigger, TriggerSpec};

/// DESIGN.md: `limit` 1–1000, default 100.
pub const DEFAULT_PAGE: usize = 100;
pub const MAX_PAGE: usize = 1000;

/// A job to add (DESIGN.md "Jobs").
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JobIn {
    /// 1–200 characters of `[A-Za-z0-9._:-]`; a UUID when absent.
    pub id: Option<String>,
    pub name: Option<String>,
    /// When absent the job runs once, now.
    pub trigger: Option<TriggerSpec>,
    pub action: HttpAction,
    pub coalesce: Option<bool>,
    pub max_instances: Option<u32>,
    /// Seconds a fire may be late and still run; `null`: always run. Absent: the configured default.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<u32>, nullable)]
    pub misfire_grace_time: Option<Option<u32>>,
    /// Overrides the first fire time (RFC 3339, or naive in the trigger's zone).
    pub next_run_time: Option<String>,
    pub executor: Option<String>,
    pub jobstore: Option<String>,
    /// Replace a job with the same id instead of answering 409.
    #[serde(default)]
    pub replace_existing: bool,
    /// Add the job paused.
    #[serde(default)]
    pub paused: bool,
}

/// Fields to change; absent fields keep their value. A new `trigger` reschedules.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JobPatch {
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, nullable)]
    pub name: Option<Option<String>>,
    pub trigger: Option<TriggerSpec>,
    pub action: Option<HttpAction>,
    pub coalesce: Option<bool>,
    pub max_instances: Option<u32>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<u32>, nullable)]
    pub misfire_grace_time: Option<Option<u32>>,
    pub next_run_time: Option<String>,
    pub executor: Option<String>,
    pub paused: Option<bool>,
}

/// Tells "absent" (outer None, via `default`) from "null" (Some(None)).
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(deserializer: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(deserializer).map(Some)
}

/// A job as returned: secrets masked, times in the trigger's zone.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct JobOut {
    pub id: String,
    pub name: Option<String>,
    pub trigger: TriggerSpec,
    pub action: HttpAction,
    pub coalesce: bool,
    pub max_instances: u32,
    pub misfire_grace_time: Option<u32>,
    pub executor: String,
    pub jobstore: String,
    /// Null when paused.
    pub next_run_time: Option<String>,
    pub paused: bool,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct JobList {
    pub jobs: Vec<JobOut>,
    /// Pass as `cursor` for the next page; null on the last.
    pub next_cursor: Option<String>,
}

/// One run of the ledger.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RunOut {
    pub job_id: String,
    pub scheduled_time: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub status: RunStatus,
    pub attempts: u32,
    pub http_status: Option<u16>,
    pub duration_ms: Option<u64>,
    pub error: Option<String>,
    pub response_excerpt: Option<String>,
    pub idempotency_key: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RunList {
    pub runs: Vec<RunOut>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Removed {
    pub removed: u64,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListJobsQuery {
    /// Only jobs of this store.
    pub jobstore: Option<String>,
    pub paused: Option<bool>,
    /// 1–1000, default 100.
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
    pub cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct RemoveAllQuery {
    /// Only jobs of this store.
    pub jobstore: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListRunsQuery {
    pub status: Option<RunStatus>,
    /// 1–1000, default 100.
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
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
            executor: job.executor.clone(),
            jobstore: job.jobstore.clone(),
            next_run_time: job.next_run_time.map(|t| format_time(t, tz)),
            paused: job.paused,
            created_at: format_time(job.created_at, tz),
            updated_at: format_time(job.updated_at, tz),
        }
    }
}

impl RunOut {
    pub fn of(run: &Run) -> RunOut {
        let tz = run.timezone();
        RunOut {
            job_id: run.job_id.clone(),
            scheduled_time: format_time(run.scheduled_time, tz),
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

fn zone_of(job: &Job, default_tz: Tz) -> Tz {
    job.trigger.timezone(default_tz)
}

/// Resolve and compile a trigger from a request; errors name `trigger.<field>`.
fn prepare_trigger(spec: TriggerSpec, default_tz: Tz, now: DateTime<Utc>) -> Result<(TriggerSpec, Trigger)> {
    let to_api = |err: crate::trigger::TriggerError| ApiError::invalid(format!("trigger.{}", err.field), err.message);
    let spec = spec.resolve(default_tz, now).map_err(to_api)?;
    let trigger = spec.compile(default_tz).map_err(to_api)?;
    Ok((spec, trigger))
}

/// The first fire time of a new or rescheduled trigger; a trigger that never fires again is refused.
fn first_fire(trigger: &Trigger, now: DateTime<Utc>) -> Result<DateTime<Utc>> {
    trigger
        .next_fire_time(None, now)
        .ok_or_else(|| ApiError::invalid("trigger", "has no fire time from now on (its end or its years are past)"))
}

fn check_executor(state: &AppState, executor: &str) -> Result<()> {
    if state.scheduler.executors.contains(executor) {
        Ok(())
    } else {
        Err(ApiError::invalid("executor", format!("no executor named {executor:?} is configured")))
    }
}

fn check_name(name: Option<&str>) -> Result<()> {
    match name {
        Some(name) if name.chars().count() > job::MAX_NAME_LENGTH => {
            Err(ApiError::invalid("name", format!("is longer than {} characters", job::MAX_NAME_LENGTH)))
        }
        _ => Ok(()),
    }
}

fn check_max_instances(max_instances: u32) -> Result<()> {
    if max_instances == 0 { Err(ApiError::invalid("max_instances", "must be at least 1")) } else { Ok(()) }
}

fn check_action(state: &AppState, action: &HttpAction) -> Result<()> {
    action.validate().map_err(|(field, message)| ApiError::invalid(format!("action.{field}"), message))?;
    state.scheduler.policy.check_url(&action.url).map_err(|message| ApiError::invalid("action.url", message))
}

fn page_size(limit: Option<usize>) -> Result<usize> {
    match limit.unwrap_or(DEFAULT_PAGE) {
        limit @ 1..=MAX_PAGE => Ok(limit),
        other => Err(ApiError::invalid("limit", format!("{other} is out of range 1–{MAX_PAGE}"))),
    }
}

/// Report a saved change, then wake the scheduler: published first, so `job_modified` precedes any event of the
/// fires the change brings.
fn modified(state: &AppState, job: &Job) {
    state.scheduler.publish(EventKind::JobModified, Subject::Job(std::sync::Arc::new(job.clone())));
    state.scheduler.wake();
}

fn removed(state: &AppState, job_id: &str, jobstore: &str) {
    let subject = Subject::RemovedJob { job_id: job_id.to_string(), jobstore: jobstore.to_string() };
    state.scheduler.publish(EventKind::JobRemoved, subject);
}

async fn find(state: &AppState, id: &str) -> Result<(String, Job)> {
    state.scheduler.find_job(id).await?.ok_or_else(|| ApiError::NotFound(format!("no job with id {id:?}")))
}

async fn save(state: &AppState, job: &Job) -> Result<()> {
    let store = state.scheduler.store(&job.jobstore).ok_or_else(|| ApiError::Internal("store vanished".into()))?;
    store.update_job(job).await.map_err(|err| match err {
        crate::store::StoreError::NotFound => ApiError::NotFound(format!("no job with id {:?}", job.id)),
        other => other.into(),
    })?;
    Ok(())
}

/// Add a job
#[utoipa::path(post, path = "/v1/jobs", tag = "jobs", request_body = JobIn,
    responses((status = 201, body = JobOut), (status = 400, body = Problem, content_type = "application/problem+json"), (status = 409, body = Problem, content_type = "application/problem+json"),
        (status = 413, body = Problem, content_type = "application/problem+json"), (status = 422, body = Problem, content_type = "application/problem+json")))]
pub async fn add_job(
    State(state): State<AppState>,
    ApiJson(input): ApiJson<JobIn>,
) -> Result<(StatusCode, Json<JobOut>)> {
    let scheduler = &state.scheduler;
    let now = scheduler.now();
    let default_tz = scheduler.default_tz;
    let defaults = &scheduler.config.job_defaults;
    let id = match input.id {
        Some(id) => {
            job::validate_id(&id).map_err(|message| ApiError::invalid("id", message))?;
            id
        }
        None => uuid::Uuid::new_v4().to_string(),
    };
    check_name(input.name.as_deref())?;
    check_action(&state, &input.action)?;
    let jobstore = input.jobstore.unwrap_or_else(|| scheduler.config.default_jobstore().to_string());
    let store = scheduler.store(&jobstore).cloned().ok_or_else(|| {
        let names: Vec<&String> = scheduler.stores().map(|(name, _)| name).collect();
        ApiError::invalid("jobstore", format!("no job store named {jobstore:?}; configured: {names:?}"))
    })?;
    let executor = input.executor.unwrap_or_else(|| "default".to_string());
    check_executor(&state, &executor)?;
    let max_instances = input.max_instances.unwrap_or(defaults.max_instances);
    check_max_instances(max_instances)?;
    let spec = input
        .trigger
        .unwrap_or_else(|| TriggerSpec::Date(DateSpec { run_date: format_time(now, default_tz), timezone: None }));
    let (spec, trigger) = prepare_trigger(spec, default_tz, now)?;
    let first = first_fire(&trigger, now)?;
    let next_run_time = match (&input.next_run_time, input.paused) {
        (_, true) => None,
        (Some(given), false) => Some(
            parse_time("next_run_time", given, trigger.timezone())
                .map_err(|err| ApiError::invalid(err.field, err.message))?,
        ),
        (None, false) => Some(first),
    };
    let job = Job {
        id,
        name: input.name,
        trigger: spec,
        action: input.action,
        coalesce: input.coalesce.unwrap_or(defaults.coalesce),
        max_instances,
        misfire_grace_time: input.misfire_grace_time.unwrap_or(defaults.misfire_grace_time),
        executor,
        jobstore: jobstore.clone(),
        next_run_time,
        paused: input.paused,
        created_at: now,
        updated_at: now,
    };
    super::limits::check_store_capacity(&state, &jobstore, store.as_ref(), &job.id).await?;
    // Ids are unique across stores, as in APScheduler.
    for (name, other) in scheduler.stores() {
        if *name != jobstore && other.get_job(&job.id).await?.is_some() {
            if !input.replace_existing {
                return Err(ApiError::Conflict(format!("a job with id {:?} exists (in job store {name:?})", job.id)));
            }
            other.remove_job(&job.id).await?;
        }
    }
    store.add_job(&job, input.replace_existing).await.map_err(|err| match err {
        crate::store::StoreError::Conflict(_) => {
            ApiError::Conflict(format!("a job with id {:?} exists; set replace_existing to replace it", job.id))
        }
        other => other.into(),
    })?;
    tracing::info!(job_id = %job.id, jobstore = %job.jobstore, "job added");
    // A replaced job keeps its first created_at, which only the store knows; a new one is as built.
    let stored =
        if input.replace_existing { store.get_job(&job.id).await.map(|stored| stored.unwrap_or(job)) } else { Ok(job) };
    // Published before the wake-up, so `job_added` precedes the events of the job's first fire.
    if let Ok(stored) = &stored {
        scheduler
            .events
            .publish_with(EventKind::JobAdded, scheduler.now(), || Subject::Job(std::sync::Arc::new(stored.clone())));
    }
    scheduler.wake_for(next_run_time);
    let stored = stored?;
    Ok((StatusCode::CREATED, Json(JobOut::of(&stored, default_tz))))
}

/// List jobs, by next run time
#[utoipa::path(get, path = "/v1/jobs", tag = "jobs", params(ListJobsQuery),
    responses((status = 200, body = JobList), (status = 400, body = Problem, content_type = "application/problem+json"), (status = 422, body = Problem, content_type = "application/problem+json")))]
pub async fn list_jobs(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<ListJobsQuery>,
) -> Result<Json<JobList>> {
    let limit = page_size(query.limit)?;
    let after = query.cursor.as_deref().map(decode_job_cursor).transpose()?;
    let scheduler = &state.scheduler;
    if let Some(name) = &query.jobstore
        && scheduler.store(name).is_none()
    {
        return Err(ApiError::invalid("jobstore", format!("no job store named {name:?}")));
    }
    let store_query = JobQuery { paused: query.paused, after, limit: limit + 1 };
    let mut jobs = Vec::new();
    for (name, store) in scheduler.stores() {
        if query.jobstore.as_ref().is_none_or(|wanted| wanted == name) {
            jobs.extend(store.list_jobs(&store_query).await?);
        }
    }
    jobs.sort_by(|a, b| job_order_key(a).cmp(&job_order_key(b)));
    let next_cursor = (jobs.len() > limit).then(|| encode_job_cursor(&JobCursor::of(&jobs[limit - 1])));
    jobs.truncate(limit);
    Ok(Json(JobList { jobs: jobs.iter().map(|job| JobOut::of(job, scheduler.default_tz)).collect(), next_cursor }))
}

/// Get a job
#[utoipa::path(get, path = "/v1/jobs/{id}", tag = "jobs", params(("id" = String, Path)),
    responses((status = 200, body = JobOut), (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn get_job(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<JobOut>> {
    let (_, job) = find(&state, &id).await?;
    Ok(Json(JobOut::of(&job, state.scheduler.default_tz)))
}

/// Modify a job; a new trigger reschedules it
#[utoipa::path(patch, path = "/v1/jobs/{id}", tag = "jobs", params(("id" = String, Path)), request_body = JobPatch,
    responses((status = 200, body = JobOut), (status = 400, body = Problem, content_type = "application/problem+json"), (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json")))]
pub async fn modify_job(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiJson(patch): ApiJson<JobPatch>,
) -> Result<Json<JobOut>> {
    let (_, mut job) = find(&state, &id).await?;
    let now = state.scheduler.now();
    let default_tz = state.scheduler.default_tz;
    if let Some(name) = patch.name {
        check_name(name.as_deref())?;
        job.name = name;
    }
    if let Some(mut action) = patch.action {
        action
            .restore_masked(&job.action)
            .map_err(|(field, message)| ApiError::invalid(format!("action.{field}"), message))?;
        check_action(&state, &action)?;
        job.action = action;
    }
    if let Some(executor) = patch.executor {
        check_executor(&state, &executor)?;
        job.executor = executor;
    }
    if let Some(max_instances) = patch.max_instances {
        check_max_instances(max_instances)?;
        job.max_instances = max_instances;
    }
    if let Some(coalesce) = patch.coalesce {
        job.coalesce = coalesce;
    }
    if let Some(grace) = patch.misfire_grace_time {
        job.misfire_grace_time = grace;
    }
    let rescheduled = patch.trigger.is_some() || patch.paused == Some(false) && job.paused;
    if let Some(spec) = patch.trigger {
        let (spec, _) = prepare_trigger(spec, default_tz, now)?;
        job.trigger = spec;
    }
    if let Some(paused) = patch.paused {
        job.paused = paused;
    }
    let trigger = job.compiled_trigger(default_tz).map_err(|err| ApiError::Internal(err.to_string()))?;
    if rescheduled {
        let first = first_fire(&trigger, now)?;
        job.next_run_time = (!job.paused).then_some(first);
    }
    if job.paused {
        job.next_run_time = None;
    } else if let Some(given) = &patch.next_run_time {
        job.next_run_time = Some(
            parse_time("next_run_time", given, trigger.timezone())
                .map_err(|err| ApiError::invalid(err.field, err.message))?,
        );
    }
    job.updated_at = now;
    save(&state, &job).await?;
    modified(&state, &job);
    Ok(Json(JobOut::of(&job, default_tz)))
}

/// Remove a job
#[utoipa::path(delete, path = "/v1/jobs/{id}", tag = "jobs", params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn remove_job(State(state): State<AppState>, Path(id): Path<String>) -> Result<StatusCode> {
    for (name, store) in state.scheduler.stores() {
        if store.remove_job(&id).await? {
            state.scheduler.wake();
            removed(&state, &id, name);
            return Ok(StatusCode::NO_CONTENT);
        }
    }
    Err(ApiError::NotFound(format!("no job with id {id:?}")))
}

/// Remove all jobs (optionally of one job store)
#[utoipa::path(delete, path = "/v1/jobs", tag = "jobs", params(RemoveAllQuery),
    responses((status = 200, body = Removed), (status = 400, body = Problem, content_type = "application/problem+json"), (status = 422, body = Problem, content_type = "application/problem+json")))]
pub async fn remove_all_jobs(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<RemoveAllQuery>,
) -> Result<Json<Removed>> {
    if let Some(name) = &query.jobstore
        && state.scheduler.store(name).is_none()
    {
        return Err(ApiError::invalid("jobstore", format!("no job store named {name:?}")));
    }
    let mut removed = 0;
    for (name, store) in state.scheduler.stores() {
        if query.jobstore.as_ref().is_none_or(|wanted| wanted == name) {
            removed += store.remove_all_jobs().await?;
        }
    }
    state.scheduler.wake();
    let subject = Subject::AllJobs { jobstore: query.jobstore, removed };
    state.scheduler.publish(EventKind::AllJobsRemoved, subject);
    Ok(Json(Removed { removed }))
}

/// Pause a job: its next run time becomes null
#[utoipa::path(post, path = "/v1/jobs/{id}/pause", tag = "jobs", params(("id" = String, Path)),
    responses((status = 200, body = JobOut), (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn pause_job(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<JobOut>> {
    let (_, mut job) = find(&state, &id).await?;
    if !job.paused {
        job.paused = true;
        job.next_run_time = None;
        job.updated_at = state.scheduler.now();
        save(&state, &job).await?;
        modified(&state, &job);
    }
    Ok(Json(JobOut::of(&job, state.scheduler.default_tz)))
}

/// Resume a job: its next run time is recomputed from now
#[utoipa::path(post, path = "/v1/jobs/{id}/resume", tag = "jobs", params(("id" = String, Path)),
    responses((status = 200, body = JobOut), (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn resume_job(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<JobOut>> {
    let (store_name, mut job) = find(&state, &id).await?;
    let now = state.scheduler.now();
    let default_tz = state.scheduler.default_tz;
    if job.paused {
        let trigger = job.compiled_trigger(default_tz).map_err(|err| ApiError::Internal(err.to_string()))?;
        job.paused = false;
        job.updated_at = now;
        job.next_run_time = trigger.next_fire_time(None, now);
        if job.next_run_time.is_none() {
            // APScheduler removes a resumed job whose trigger has finished.
            if let Some(store) = state.scheduler.store(&store_name)
                && store.remove_job(&job.id).await?
            {
                removed(&state, &job.id, &store_name);
            }
        } else {
            save(&state, &job).await?;
            modified(&state, &job);
        }
    }
    Ok(Json(JobOut::of(&job, default_tz)))
}

/// Run a job once now, outside its schedule
#[utoipa::path(post, path = "/v1/jobs/{id}/run", tag = "jobs", params(("id" = String, Path)),
    responses((status = 202, body = RunOut), (status = 404, body = Problem, content_type = "application/problem+json"), (status = 409, body = Problem, content_type = "application/problem+json")))]
pub async fn run_job(State(state): State<AppState>, Path(id): Path<String>) -> Result<(StatusCode, Json<RunOut>)> {
    let (store_name, job) = find(&state, &id).await?;
    let run = state.scheduler.run_now(&store_name, &job).await?;
    Ok((StatusCode::ACCEPTED, Json(RunOut::of(&run))))
}

/// A job's run history, newest first
#[utoipa::path(get, path = "/v1/jobs/{id}/runs", tag = "jobs", params(("id" = String, Path), ListRunsQuery),
    responses((status = 200, body = RunList), (status = 400, body = Problem, content_type = "application/problem+json"), (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json")))]
pub async fn list_runs(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiQuery(query): ApiQuery<ListRunsQuery>,
) -> Result<Json<RunList>> {
    let limit = page_size(query.limit)?;
    let after = query.cursor.as_deref().map(decode_run_cursor).transpose()?;
    let store_query = RunQuery { status: query.status, after: after.clone(), limit: limit + 1 };
    let mut runs = Vec::new();
    for (_, store) in state.scheduler.stores() {
        runs.extend(store.list_runs(&id, &store_query).await?);
    }
    if runs.is_empty() && after.is_none() && state.scheduler.find_job(&id).await?.is_none() {
        return Err(ApiError::NotFound(format!("no job with id {id:?} and no runs of one")));
    }
    runs.sort_by(|a, b| (b.scheduled_time, &b.idempotency_key).cmp(&(a.scheduled_time, &a.idempotency_key)));
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

fn decode(cursor: &str) -> Result<(String, String)> {
    let bad = || ApiError::BadRequest("cursor: not a cursor given by this API".to_string());
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(cursor).map_err(|_| bad())?;
    let text = String::from_utf8(bytes).map_err(|_| bad())?;
    let (time, key) = text.split_once('|').ok_or_else(bad)?;
    Ok((time.to_string(), key.to_string()))
}

fn micros_to_time(micros: &str) -> Result<DateTime<Utc>> {
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
