//! Backfills over HTTP: `POST /v1/jobs/{id}/backfill` starts one, `GET /v1/backfills/{id}` shows its progress,
//! `GET /v1/jobs/{id}/backfills` lists a job's, `DELETE /v1/backfills/{id}` cancels one.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::audit::ChangeBy;
use super::{ApiJson, AppState};
use crate::backfill::Backfill;
use crate::error::{Problem, Result};
use crate::scheduler::backfill::BackfillRequest;
use crate::scheduler::error::Error;
use crate::trigger::time::{format_time, parse_time};

/// A backfill to start.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BackfillIn {
    /// The range's start (included): RFC 3339, or a date-time or date read in the server's zone.
    pub start: String,
    /// The range's end (excluded); not after now.
    pub end: String,
    /// At most this many fires, the oldest (1–100 000; default 1000). A range with more is cut to this many.
    #[serde(default, deserialize_with = "crate::integral::optional")]
    #[schema(format = Int64, minimum = 1, maximum = 100000)]
    pub max_runs: Option<u32>,
    /// At most this many fires per second (above 0, at most 1000; default 1).
    #[schema(exclusive_minimum = 0, maximum = 1000)]
    pub rate_per_second: Option<f64>,
}

/// A backfill and its progress.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BackfillOut {
    /// Its id.
    pub id: String,
    /// The job whose fires it delivers.
    pub job_id: String,
    /// The range's start (included).
    pub start: String,
    /// The range's end (excluded).
    pub end: String,
    /// `running`, `succeeded` (all delivered, none failed), `failed` (done, some failed) or `cancelled`.
    pub state: String,
    /// The fires it takes: those of the trigger in the range, at most max_runs.
    pub total: u64,
    /// Fires delivered with success.
    pub delivered: u64,
    /// Fires whose delivery failed (after the retry policy) or was cancelled.
    pub failed: u64,
    /// Fires that already had a ledger row, so were not delivered again.
    pub skipped: u64,
    /// Fires not delivered yet (waiting or delivering).
    pub pending: u64,
    /// Fires per second, at most.
    pub rate_per_second: f64,
    /// When it was started.
    pub created_at: String,
}

impl BackfillOut {
    /// The backfill as the API shows it.
    pub fn of(backfill: &Backfill) -> BackfillOut {
        BackfillOut {
            id: backfill.id.clone(),
            job_id: backfill.job_id.clone(),
            start: format_time(backfill.start, Tz::UTC),
            end: format_time(backfill.end, Tz::UTC),
            state: backfill.shown_state().to_string(),
            total: backfill.total,
            delivered: backfill.runs.succeeded,
            failed: backfill.runs.failed,
            skipped: backfill.skipped,
            pending: backfill.pending(),
            rate_per_second: backfill.rate_per_second,
            created_at: format_time(backfill.created_at, Tz::UTC),
        }
    }
}

/// A job's backfills, newest first.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BackfillList {
    /// Newest first.
    pub backfills: Vec<BackfillOut>,
}

/// Deliver the job's fires of a past range
#[utoipa::path(post, path = "/v1/jobs/{id}/backfill", tag = "jobs", request_body = BackfillIn,
    params(("id" = String, Path, description = "The job's id", pattern = "^[A-Za-z0-9._:-]{1,200}$", min_length = 1, max_length = 200)),
    responses((status = 202, description = "The backfill, running; its fires are delivered in the background", body = BackfillOut),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No job with this id", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A field breaks a rule; `field` names it", body = Problem, content_type = "application/problem+json")))]
pub async fn start_backfill(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ChangeBy(change): ChangeBy,
    ApiJson(input): ApiJson<BackfillIn>,
) -> Result<(StatusCode, Json<BackfillOut>)> {
    let tz = state.scheduler.default_tz;
    let time =
        |field: &str, value: &str| parse_time(field, value, tz).map_err(|err| Error::invalid(err.field, err.message));
    let request = BackfillRequest {
        start: time("start", &input.start)?,
        end: time("end", &input.end)?,
        max_runs: input.max_runs,
        rate_per_second: input.rate_per_second,
    };
    let backfill = state.scheduler.backfill_as(&id, request, Some(&change)).await?;
    Ok((StatusCode::ACCEPTED, Json(BackfillOut::of(&backfill))))
}

/// A backfill's progress
#[utoipa::path(get, path = "/v1/backfills/{id}", tag = "jobs",
    params(("id" = String, Path, description = "The backfill's id")),
    responses((status = 200, description = "The backfill", body = BackfillOut),
        (status = 404, description = "No backfill with this id", body = Problem, content_type = "application/problem+json")))]
pub async fn get_backfill(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<BackfillOut>> {
    Ok(Json(BackfillOut::of(&state.scheduler.get_backfill(&id).await?)))
}

/// Cancel a backfill: fires not delivered yet are not delivered
#[utoipa::path(delete, path = "/v1/backfills/{id}", tag = "jobs",
    params(("id" = String, Path, description = "The backfill's id")),
    responses((status = 200, description = "The backfill, cancelled (or finished before)", body = BackfillOut),
        (status = 404, description = "No backfill with this id", body = Problem, content_type = "application/problem+json")))]
pub async fn cancel_backfill(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ChangeBy(change): ChangeBy,
) -> Result<Json<BackfillOut>> {
    Ok(Json(BackfillOut::of(&state.scheduler.cancel_backfill_as(&id, Some(&change)).await?)))
}

/// A job's backfills, newest first
#[utoipa::path(get, path = "/v1/jobs/{id}/backfills", tag = "jobs",
    params(("id" = String, Path, description = "The job's id", pattern = "^[A-Za-z0-9._:-]{1,200}$", min_length = 1, max_length = 200)),
    responses((status = 200, description = "The job's backfills", body = BackfillList),
        (status = 404, description = "No job with this id and no backfills of one", body = Problem, content_type = "application/problem+json")))]
pub async fn list_backfills(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<BackfillList>> {
    let backfills = state.scheduler.list_backfills(&id).await?;
    Ok(Json(BackfillList { backfills: backfills.iter().map(BackfillOut::of).collect() }))
}
