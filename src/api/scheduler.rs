//! `/v1/scheduler`: state, configuration (read-only) and control.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::audit::ChangeBy;
use super::{AppState, OptionalJson};
use crate::error::{Problem, Result};
use crate::executor::PoolStatus;
use crate::job::JobDefaults;
use crate::scheduler::SchedulerState;
use crate::store::StoreType;

/// The scheduler's state and configuration.
#[derive(Debug, Serialize, ToSchema)]
pub struct SchedulerOut {
    /// Running, paused or stopped.
    pub state: SchedulerState,
    /// The zone of triggers that name none.
    pub timezone: String,
    /// The job stores, by name.
    pub jobstores: BTreeMap<String, JobStoreOut>,
    /// The delivery pools and what they are doing, by name.
    pub executors: BTreeMap<String, PoolStatus>,
    /// What a job gets for the fields it leaves out.
    pub job_defaults: JobDefaults,
}

/// A job store.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobStoreOut {
    /// Its kind.
    #[serde(rename = "type")]
    pub store_type: StoreType,
}

/// How to shut down.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ShutdownIn {
    /// Wait for running deliveries before answering (default true).
    pub wait: Option<bool>,
}

fn describe(state: &AppState) -> SchedulerOut {
    let scheduler = &state.scheduler;
    SchedulerOut {
        state: scheduler.state(),
        timezone: scheduler.default_tz.name().to_string(),
        jobstores: scheduler
            .stores()
            .map(|(name, store)| (name.clone(), JobStoreOut { store_type: store.kind() }))
            .collect(),
        executors: scheduler.executors.status(),
        job_defaults: scheduler.job_defaults.clone(),
    }
}

/// The scheduler's state and configuration
#[utoipa::path(get, path = "/v1/scheduler", tag = "scheduler",
    responses((status = 200, description = "The scheduler's state, stores and pools", body = SchedulerOut)))]
pub async fn get_scheduler(State(state): State<AppState>) -> Json<SchedulerOut> {
    Json(describe(&state))
}

/// Pause firing for all jobs; the API keeps serving
#[utoipa::path(post, path = "/v1/scheduler/pause", tag = "scheduler",
    responses((status = 200, description = "The scheduler, paused", body = SchedulerOut), (status = 422, description = "The `apsched-reason` header is too long", body = Problem, content_type = "application/problem+json")))]
pub async fn pause_scheduler(State(state): State<AppState>, ChangeBy(change): ChangeBy) -> Result<Json<SchedulerOut>> {
    state.scheduler.by(change).pause().await?;
    Ok(Json(describe(&state)))
}

/// Resume firing
#[utoipa::path(post, path = "/v1/scheduler/resume", tag = "scheduler",
    responses((status = 200, description = "The scheduler, running", body = SchedulerOut), (status = 422, description = "The `apsched-reason` header is too long", body = Problem, content_type = "application/problem+json")))]
pub async fn resume_scheduler(State(state): State<AppState>, ChangeBy(change): ChangeBy) -> Result<Json<SchedulerOut>> {
    state.scheduler.by(change).resume().await?;
    Ok(Json(describe(&state)))
}

/// Stop firing, optionally wait for running deliveries, answer, then exit
#[utoipa::path(post, path = "/v1/scheduler/shutdown", tag = "scheduler", request_body(content = Option<ShutdownIn>),
    responses((status = 200, description = "The scheduler, shut down; the server stops after answering", body = SchedulerOut),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"), (status = 422, description = "A field breaks a rule; `field` names it", body = Problem, content_type = "application/problem+json")))]
pub async fn shutdown_scheduler(
    State(state): State<AppState>,
    ChangeBy(change): ChangeBy,
    OptionalJson(input): OptionalJson<ShutdownIn>,
) -> Result<Json<SchedulerOut>> {
    state.scheduler.by(change).shutdown(input.wait.unwrap_or(true)).await;
    let answer = describe(&state);
    // Graceful shutdown lets this response finish before the server stops.
    state.server_shutdown.cancel();
    Ok(Json(answer))
}
